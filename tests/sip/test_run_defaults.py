"""``dialer run`` defaults that work: the pool follows the agents, a Ctrl-C at start-up dials nothing, and runs end.

Each of these failed before: the pool was one worker whatever the floor (2 customer calls, so a third agent sat
idle, silently), a Ctrl-C while the pjsua2 workers were starting still placed calls once they were up, and
``--keep-going`` waited forever once every lead was final, or once a silent trunk had stopped dialing.

Live runs are ``dialer run`` in a subprocess against SIPp on loopback (customers and agents' softphones holding
standing legs), as a user would run it. The trunk that must receive nothing is a UDP socket that records every
datagram: nothing sent to it can go unseen, whatever SIPp would have logged.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from sip_helpers import finish, read_until, start_run
from sipp_peers import free_rtp_base
from test_sip_live_campaign import JP_HOURS, STEMS, customers_scenario, pick_zones
from test_sip_runtime import make_message

from dialer.live.campaign import load_campaign
from dialer.live.sizing import ADAPTIVE_LINES_PER_AGENT, lines_per_agent, plan_pool, pool_holds, size_pool
from dialer.store import Store

AGENTS = ("alice", "bob", "carol")


# -- the sizing rule ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "params", "lines"),
    [
        ("progressive", {}, 1.0),
        ("power", {}, 1.5),
        ("power", {"ratio": 2.0}, 2.0),
        ("predictive", {}, ADAPTIVE_LINES_PER_AGENT),  # its built-in ceiling (5) is a safety cap, not a size
        ("predictive", {"max_lines_per_agent": 4.0}, 4.0),  # set by the campaign: sized for it
        ("vicidial-adaptive", {}, 3.0),
        ("vicidial-adaptive", {"max_level": 2.0}, 2.0),
        ("webitel", {}, ADAPTIVE_LINES_PER_AGENT),
        ("issabel", {"min_answer_rate": 0.5}, 2.0),
        ("issabel-no-overcommit", {}, 1.0),
    ],
)
def test_lines_per_agent_follow_the_policy_ceiling(policy: str, params: dict[str, float], lines: float) -> None:
    assert lines_per_agent(policy, params) == lines


@pytest.mark.parametrize(
    ("agents", "lines", "calls_per_worker", "agent_slots", "max_calls", "workers"),
    [
        (1, 1.0, 4, 1, None, 1),  # 1 leg + 1 call x 2 = 3 slots
        (3, 1.0, 4, 1, None, 3),  # 3 + 6 = 9 slots: 3 workers (the old default, 1, held 2 calls)
        (3, 1.0, 4, 2, None, 3),  # the driver's 2 slots per agent: 12 slots
        (3, 1.0, 4, 0, None, 2),  # agents called per connect: 6 slots
        (3, 1.5, 4, 1, None, 4),  # power 1.5: 5 calls, 3 + 10 = 13 slots
        (3, 3.0, 4, 1, None, 6),  # predictive: 9 calls, 3 + 18 = 21 slots
        (20, 3.0, 4, 2, None, 40),  # 40 + 120 = 160 slots
        (20, 3.0, 4, 2, 10, 15),  # a trunk of 10 calls: 40 + 20 = 60 slots
        (20, 3.0, 2000, 2, None, 1),  # a pjproject build with 2,000 calls per process
        (5, 1.0, 4, 1, None, 5),  # 15 slots -> 4 by division, but 4 workers split them into 4 calls: 5
        (0, 1.0, 4, 1, None, 1),  # never fewer than one worker
    ],
)
def test_size_pool(
    agents: int, lines: float, calls_per_worker: int, agent_slots: int, max_calls: int | None, workers: int
) -> None:
    got = size_pool(
        agents, lines, calls_per_worker=calls_per_worker, agent_slots=agent_slots, max_calls=max_calls
    )  # fmt: skip
    assert got == workers
    wanted = min(int(agents * lines + 0.999), max_calls or 10**9)
    assert pool_holds(got, agents, calls_per_worker=calls_per_worker, agent_slots=agent_slots) >= wanted


def test_a_set_pool_too_small_for_the_agents_warns() -> None:
    # The case: one worker, agents called per connect, holds 2 customer calls for 3 agents.
    plan = plan_pool(3, "progressive", {}, workers=1, calls_per_worker=4, legs_per_call=2, agent_slots=0)
    assert plan.holds == 2 and not plan.automatic
    warning = plan.warning()
    assert warning is not None and "holds 2 customer call(s) at once for 3 agents: 1 agent(s) will sit idle" in warning
    assert "workers >= 2" in warning
    # With standing legs parked in it, the same worker has room for none.
    plan = plan_pool(3, "progressive", {}, workers=1, calls_per_worker=4, legs_per_call=2, agent_slots=1)
    assert plan.holds == 0 and "workers >= 3" in (plan.warning() or "")
    auto = plan_pool(3, "progressive", {}, workers=None, calls_per_worker=4, legs_per_call=2, agent_slots=1)
    assert auto.automatic and auto.holds >= 3 and auto.warning() is None
    assert auto.line().startswith("pool: 3 worker(s) x 4 calls, holds 3 customer call(s)")


# -- campaign files -------------------------------------------------------------------------------------------


def write_campaign(tmp_path: Path, trunk_port: int, agent_port: int, leads: list[str], *, pool: str = "") -> Path:
    rows = "".join(f"L{i},{phone}\n" for i, phone in enumerate(leads))
    (tmp_path / "leads.csv").write_text("lead_id,phone\n" + rows, encoding="utf-8")
    make_message(tmp_path)
    (tmp_path / "agent.ulaw").write_bytes(b"\xff" * 8000)  # what the agents' softphones play (silence)
    agents = "".join(f'{a} = "sip:{a}@127.0.0.1:{agent_port}"\n' for a in AGENTS)
    path = tmp_path / "floor.toml"
    path.write_text(
        f"""
[campaign]
id = "floor"
abandon_message = "abandon.wav"
purpose = "survey"  # exempt from the national registry, which these tests do not load
policy = "progressive"
ring_timeout = 20

[leads]
file = "leads.csv"

[dnc]
registry_required = false

[hours.JP]
{JP_HOURS}

[trunk]
port = {trunk_port}
caller_id = "+12127362000"

[pool]
rtp_port = {free_rtp_base(2000)}
{pool}

[agents]
{agents}""",
        encoding="utf-8",
    )
    return path


def test_pool_is_sized_from_the_agents_unless_set(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, 5060, 5062, ["+12127362001"])
    config = load_campaign(path)
    plan = config.pool_plan
    assert plan is not None and plan.automatic and config.pool.workers == plan.workers
    assert plan.holds >= len(AGENTS), plan  # one customer call per agent at least, standing legs parked
    path.write_text(path.read_text().replace("[pool]\n", "[pool]\nworkers = 1\n"))
    config = load_campaign(path)
    assert config.pool.workers == 1 and config.pool_plan is not None and not config.pool_plan.automatic
    assert config.pool_plan.warning() is not None


class SilentTrunk:
    """A UDP 'trunk' that answers nothing and keeps every datagram it gets (to prove none came, or that some did)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.received: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                self.received.append(self.sock.recv(65536))
            except TimeoutError:
                continue
            except OSError:
                return

    def invites(self) -> int:
        """Distinct INVITEs (by Call-ID: UDP retransmits each one unanswered INVITE)."""
        ids = set()
        for d in self.received:
            if d.startswith(b"INVITE "):
                ids.add(next((h for h in d.split(b"\r\n") if h.lower().startswith((b"call-id:", b"i:"))), d))
        return len(ids)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


# -- live -----------------------------------------------------------------------------------------------------


def test_three_agents_get_three_calls_at_once(sipp_factory: type, tmp_path: Path) -> None:
    """No [pool] workers: the pool holds a customer call per agent, so three ring together for three agents."""
    open_zone, _ = pick_zones(time.time())
    o = STEMS[open_zone]
    customers = sipp_factory(customers_scenario(tmp_path))
    (tmp_path / "agent.ulaw").write_bytes(b"\xff" * 8000)
    agents = sipp_factory("agent_session.xml")
    ringing = [f"{o}18{i:02d}" for i in range(1, 5)]  # ring until we CANCEL
    path = write_campaign(tmp_path, customers.port, agents.port, ringing)
    proc = start_run(path, "--status-every", "0.2")
    try:
        seen = read_until(proc, "ringing 3", 60)
        assert "ringing 3" in seen, seen
        seen += read_until(proc, "capacity ", 5)
        seen += read_until(proc, "   ", 5)  # the status line's figures end with spaces
        pool_line = next(line for line in seen.splitlines() if line.startswith("pool: "))
        assert "warning" not in seen, seen
        capacity = int(seen.rsplit("capacity", 1)[1].split()[0])
        assert capacity >= 3, seen
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # hang the ringing calls up
        out, err = finish(proc, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "3 worker(s) x 4 calls, holds 3 customer call(s)" in pool_line, pool_line
    assert "3 calls: no_answer 3" in out, out


@pytest.mark.parametrize(("sig", "pool"), [(signal.SIGINT, ""), (signal.SIGTERM, "workers = 1")])
def test_a_signal_during_start_up_places_no_call(tmp_path: Path, sig: signal.Signals, pool: str) -> None:
    """Sent while the pjsua2 workers start: no INVITE reaches the trunk, no attempt, the leads as imported."""
    trunk = SilentTrunk()
    try:
        path = write_campaign(tmp_path, trunk.port, 9, ["+12127362001", "+12127362002", "+12127362003"], pool=pool)
        proc = start_run(path)
        try:
            seen = read_until(proc, "pool: ", 30)
            seen += read_until(proc, "\n", 5)
            if pool:  # a pool set too small for the agents says so at start, in one line
                seen += read_until(proc, "\n", 5)
                assert "warning: [pool] workers = 1 holds 0 customer call(s) at once for 3 agents" in seen, seen
            time.sleep(0.3)  # the workers are being spawned (a pjsua2 endpoint takes about a second each)
            proc.send_signal(sig)
            out, err = finish(proc, 60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        time.sleep(0.5)  # anything sent at the last moment has arrived
        assert proc.returncode == 130, (out, err)
        assert "stopped: interrupted during start-up (no call placed)" in out and "0 calls" in out, out
        assert "Traceback" not in err, err
        assert trunk.invites() == 0, trunk.received[:3]
    finally:
        trunk.close()
    with Store(tmp_path / "floor.sqlite") as store:
        assert store.attempts("floor") == []
        leads = store.leads("floor")
        assert len(leads) == 3 and all((lead.status, lead.attempts) == ("ready", 0) for lead in leads)


def test_keep_going_stops_when_every_lead_is_final(sipp_factory: type, tmp_path: Path) -> None:
    open_zone, _ = pick_zones(time.time())
    o = STEMS[open_zone]
    customers = sipp_factory(customers_scenario(tmp_path))
    (tmp_path / "agent.ulaw").write_bytes(b"\xff" * 8000)
    agents = sipp_factory("agent_session.xml")
    path = write_campaign(tmp_path, customers.port, agents.port, [f"{o}4041", f"{o}4042"])  # 404: final
    proc = start_run(path, "--keep-going", "--quiet")
    out, err = finish(proc, 90)
    assert proc.returncode == 0, (out, err)
    assert "2 calls: invalid_number 2" in out and "stopped: every lead is final" in out, out
    assert "leads: 2 done" in out, out


def test_a_silent_trunk_ends_the_run_with_its_alert(sipp_factory: type, tmp_path: Path) -> None:
    """Dialing stopped by the driver (the trunk answered nothing): once the calls are over, the run ends, status 1."""
    (tmp_path / "agent.ulaw").write_bytes(b"\xff" * 8000)
    agents = sipp_factory("agent_session.xml")
    open_zone, _ = pick_zones(time.time())
    o = STEMS[open_zone]
    trunk = SilentTrunk()
    try:
        leads = [f"{o}{2001 + i}" for i in range(6)]
        pool = "no_response_timeout = 0.5\nsilent_trunk_calls = 2"
        path = write_campaign(tmp_path, trunk.port, agents.port, leads, pool=pool)
        proc = start_run(path, "--keep-going", "--quiet")
        out, err = finish(proc, 90)
    finally:
        trunk.close()
    assert proc.returncode == 1, (out, err)
    last = out.strip().splitlines()[-1]
    assert last.startswith("alert: trunk_silent"), out
    assert "stopped: dialing stopped: trunk_silent" in out, out
    assert 2 <= trunk.invites() < 6  # it stopped instead of burning the list
