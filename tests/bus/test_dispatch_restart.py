"""A ``dialer dispatch`` SIGKILLed mid-call and started again: no lead lost, none dialed twice, every record kept.

Real processes and a real mosquitto. The dispatcher has two calls up when it is killed: one ringing, one answered
and talking to an agent. Its worker, no longer hearing it, hangs up the ringing call on its own when the lease
runs out (that report reaches nobody) and lets the agent's call go on. The new dispatcher reads the calls its
predecessor left in its state file, asks the worker for everything it knows of them (``work.release``), and
writes their records from those facts: the ringing one as no answer now, the agent's one as connected when it
ends. Their store attempts stay open meanwhile (adopted, not closed as interrupted), and the third lead is dialed
by the new dispatcher once agents log in again.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
from mqtt_broker import Broker
from test_dispatch_cli import BASE, CAMPAIGN, ENV, command, stop, write_campaign

from dialer.store import Store

LEADS = {"R1": "ring", "H1": "hold", "B1": "busy"}


def _dispatcher(path: Path, port: int, tmp_path: Path, n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dialer.cli", "dispatch", str(path), "--broker-port", str(port), "--insecure",
         "--keep-going", "--quiet"],
        stdout=open(tmp_path / f"dispatch{n}.out", "wb"), stderr=open(tmp_path / f"dispatch{n}.err", "wb"),
        env=ENV, cwd=tmp_path,
    )  # fmt: skip


async def _login(port: int, agents: list[str]) -> None:
    """Log agents in and make them ready, each command repeated (same id) until its reply comes."""
    replies: set[str] = set()
    async with aiomqtt.Client("127.0.0.1", port, identifier="backend/crm", protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe(f"{BASE}/to/backend/crm/reply", 1)

        async def read() -> None:
            async for m in c.messages:
                replies.add(json.loads(bytes(m.payload))["data"]["command_id"])

        reader = asyncio.create_task(read())
        for agent in agents:
            for type_ in ("agent.login", "agent.ready"):
                topic, payload, cid = command(type_, agent_id=agent)
                for _ in range(100):
                    await c.publish(topic, payload, 1)
                    await asyncio.sleep(0.1)
                    if cid in replies:
                        break
                else:
                    raise AssertionError(f"no reply to {type_} {agent}")
        reader.cancel()


def _attempts(tmp_path: Path) -> list[tuple[str, str | None, str, int | None]]:
    with Store(tmp_path / "campaign.sqlite") as store:
        return sorted((a.lead_id, a.outcome, a.state, a.call_id) for a in store.attempts(CAMPAIGN))


def _until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_sigkilled_dispatcher_is_resumed_by_the_next_with_every_record(broker: Broker, tmp_path: Path) -> None:
    path = write_campaign(tmp_path)
    rows = "".join(f"{lead},+8131234{3000 + i},{outcome},0.3\n" for i, (lead, outcome) in enumerate(LEADS.items()))
    (tmp_path / "leads.csv").write_text("lead_id,phone,outcome,talk\n" + rows, encoding="utf-8")
    first = _dispatcher(path, broker.port, tmp_path, 1)
    worker = subprocess.Popen(
        [sys.executable, "-m", "dialer.cli", "worker", "--stand-in", "--insecure", "--campaign", CAMPAIGN,
         "--worker-id", "w1", "--broker-port", str(broker.port), "--capacity", "3", "-v"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.err", "wb"), env=ENV,  # noqa: SIM115
    )  # fmt: skip
    second = None
    try:
        asyncio.run(_login(broker.port, ["a1", "a2"]))  # two agents: R1 and H1 are dialed, B1 waits
        state = tmp_path / "campaign.dispatch.sqlite"

        def two_calls_up() -> bool:
            import sqlite3

            with sqlite3.connect(state) as db:
                rows = db.execute("SELECT lead_id, ringing_at, connected_at FROM calls").fetchall()
            up = {r[0]: r for r in rows}
            return set(up) == {"R1", "H1"} and up["R1"][1] is not None and up["H1"][2] is not None

        _until(two_calls_up, 30, "R1 ringing and H1 with an agent")
        time.sleep(1.0)  # the bridge order reaches the worker (killed before, H1 would get the message: abandoned)
        first.send_signal(signal.SIGKILL)  # no goodbye, mid-call
        first.wait(5)
        before = _attempts(tmp_path)
        assert [(a[0], a[2]) for a in before] == [("H1", "dialing"), ("R1", "dialing")]  # open, not lost
        time.sleep(4.0)  # past the 3 s lease: the worker hangs up R1 on its own, and nobody hears of it
        second = _dispatcher(path, broker.port, tmp_path, 2)
        _until(lambda: dict((a[0], a[1]) for a in _attempts(tmp_path)).get("R1") == "no_answer", 30,
               "the adopted R1's record")  # fmt: skip
        asyncio.run(_login(broker.port, ["a3"]))  # agents log in again with the new dispatcher: B1 is dialed
        _until(lambda: dict((a[0], a[1]) for a in _attempts(tmp_path)).get("B1") == "busy", 30, "B1's call")
        assert dict((a[0], a[2]) for a in _attempts(tmp_path))["H1"] == "dialing", _attempts(tmp_path)  # still talking
        worker.send_signal(signal.SIGTERM)  # the worker stops: it hangs up H1 and reports its end
        assert worker.wait(20) == 0
        _until(lambda: dict((a[0], a[1]) for a in _attempts(tmp_path)).get("H1") == "connected", 30,
               "the adopted H1's record")  # fmt: skip
    finally:
        stop(first)
        if second is not None:
            stop(second)
        stop(worker)
    attempts = _attempts(tmp_path)
    assert [(a[0], a[1], a[2]) for a in attempts] == [
        ("B1", "busy", "done"),
        ("H1", "connected", "done"),
        ("R1", "no_answer", "done"),
    ], attempts  # one attempt per lead: none lost, none dialed twice, none left "interrupted"
    ids = [a[3] for a in attempts]
    assert len(set(ids)) == 3 and dict((a[0], a[3]) for a in attempts)["B1"] > max(
        dict((a[0], a[3]) for a in attempts)[k] for k in ("H1", "R1")
    )  # the new dispatcher's ids are past the old ones
    err = (tmp_path / "dispatch2.err").read_text()
    assert "resuming: 2 calls" in err, err


def test_a_second_dispatcher_is_refused_before_it_touches_anything(broker: Broker, tmp_path: Path) -> None:
    """On the same campaign (its state file is locked): refused before the store is opened, so it cannot adopt
    the first one's live calls or close its open attempts. Elsewhere under the same identity: refused once it
    sees the identity in use. Either way one error line, exit 2, and the first one runs on undisturbed."""
    path = write_campaign(tmp_path)
    first = _dispatcher(path, broker.port, tmp_path, 1)
    try:
        lock = tmp_path / "campaign.dispatch.sqlite.lock"
        _until(lambda: lock.exists() and lock.read_text().strip() == str(first.pid), 30, "the first dispatcher")
        time.sleep(2.5)  # connected, and beating
        same = subprocess.run(
            [sys.executable, "-m", "dialer.cli", "dispatch", str(path), "--broker-port", str(broker.port),
             "--insecure", "--keep-going", "--quiet"],
            capture_output=True, env=ENV, cwd=tmp_path, timeout=60,
        )  # fmt: skip
        other = tmp_path / "other"
        other.mkdir()
        other_path = write_campaign(other)
        elsewhere = subprocess.run(
            [sys.executable, "-m", "dialer.cli", "dispatch", str(other_path), "--broker-port", str(broker.port),
             "--insecure", "--keep-going", "--quiet"],
            capture_output=True, env=ENV, cwd=other, timeout=60,
        )  # fmt: skip
        assert first.poll() is None  # undisturbed
    finally:
        stop(first)
    for proc, key in ((same, "--state"), (elsewhere, "--name")):
        errors = [line for line in proc.stderr.decode().splitlines() if line.startswith("dialer: error")]
        assert proc.returncode == 2 and len(errors) == 1 and key in errors[0], proc.stderr
    assert "one at a time" in same.stderr.decode() and "already running" in elsewhere.stderr.decode()
    assert first.returncode == 0
