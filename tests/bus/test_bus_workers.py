"""Scale-out over MQTT 5 shared subscriptions with real worker processes, and a worker killed mid-call.

The worker processes run the real Worker, bus and broker; only their call placing is the StandInPlacer, which
reports the outcome named in each lead (the SIP driver is a separate issue).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiomqtt
import pytest
from mqtt_broker import Broker

from dialer import Engine, Lead, ListLeads, make_policy
from dialer.bus import BusConfig, CampaignBus, Dispatcher, MqttBus, StandInPlacer, Topics, Worker, decode
from dialer.distributed.dispatcher import fresh_call_ids
from dialer.engine import events as ev
from dialer.engine.actions import DialLead, RecordCall
from dialer.engine.core import EngineConfig
from dialer.engine.records import Outcome
from dialer.live.runtime import AsyncRuntime

ROOT = Path(__file__).resolve().parents[2]


def start_workers(broker: Broker, ids: list[str], capacity: int, tmp_path: Path) -> dict[str, subprocess.Popen[bytes]]:
    """Stand-in worker processes through the real ``dialer worker`` command."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for wid in ids:
        log = open(tmp_path / f"{wid}.log", "wb")  # noqa: SIM115
        procs[wid] = subprocess.Popen(
            [sys.executable, "-m", "dialer.cli", "worker", "--broker-port", str(broker.port), "--campaign", "c1",
             "--worker-id", wid, "--capacity", str(capacity), "--stand-in", "--insecure"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    return procs


def stop_workers(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


@contextmanager
def workers(
    broker: Broker, ids: list[str], capacity: int, tmp_path: Path
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs.update(start_workers(broker, ids, capacity, tmp_path))
        yield procs
    finally:
        stop_workers(procs)


@asynccontextmanager
async def dialer(broker: Broker, leads: list[Lead]) -> AsyncIterator[tuple[AsyncRuntime, Dispatcher]]:
    # Call ids from the clock, as `dialer dispatch` does: a restarted dispatcher never reuses an old call's id.
    engine = Engine(make_policy("progressive"), ListLeads(leads), config=EngineConfig(first_call_id=fresh_call_ids()))
    runtime = AsyncRuntime(engine)
    bus = MqttBus(BusConfig(port=broker.port, client_id="dispatcher/pacer", insecure=True, heartbeat=0.25), "c1")
    CampaignBus(runtime, bus, stats_interval=60)
    dispatcher = Dispatcher(runtime, bus)
    async with bus:
        await bus.wait_connected(5)
        yield runtime, dispatcher
        runtime.close()


async def until(check: object, timeout: float = 20.0) -> None:
    async def poll() -> None:
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


def test_dials_spread_over_worker_processes(broker: Broker, tmp_path: Path) -> None:
    kinds = ["busy", "person", "no_answer", "machine", "person", "rejected"]
    leads = [Lead(f"L{i}", f"+1555{i:07d}", fields={"outcome": kinds[i % len(kinds)]}) for i in range(36)]
    want = {"busy": Outcome.BUSY, "person": Outcome.CONNECTED, "no_answer": Outcome.NO_ANSWER,
            "machine": Outcome.MACHINE, "rejected": Outcome.REJECTED}  # fmt: skip

    async def main() -> tuple[list[RecordCall], Dispatcher]:
        async with dialer(broker, leads) as (runtime, dispatcher):
            await until(lambda: sum(w.online for w in dispatcher.workers.values()) == 3)
            records: list[RecordCall] = []
            runtime.on(RecordCall, records.append)

            def wrap_up(action: RecordCall) -> None:  # agents finish wrap-up at once and take the next call
                agent = action.record.agent_id
                if agent is not None:
                    asyncio.get_running_loop().call_soon(lambda: runtime.submit(ev.WrapUpDone, agent_id=agent))

            runtime.on(RecordCall, wrap_up)
            for i in range(4):
                runtime.submit(ev.AgentLoggedIn, agent_id=f"a{i}")
                runtime.submit(ev.AgentReady, agent_id=f"a{i}")
            await until(lambda: len(records) == len(leads))
            return records, dispatcher

    with workers(broker, ["w1", "w2", "w3"], capacity=3, tmp_path=tmp_path):
        records, dispatcher = asyncio.run(main())
    by_lead = {r.record.lead.lead_id: r.record for r in records}
    assert len(by_lead) == len(leads)  # every lead exactly one record
    for lead in leads:
        assert by_lead[lead.lead_id].outcome is want[lead.fields["outcome"]], lead
    accepted = Counter({wid: w.accepted for wid, w in dispatcher.workers.items()})
    assert set(accepted) == {"worker/w1", "worker/w2", "worker/w3"} and all(n > 0 for n in accepted.values()), accepted
    assert sum(accepted.values()) >= len(leads)
    assert not dispatcher.calls


def test_a_killed_worker_has_its_calls_closed_and_no_lead_is_lost(broker: Broker, tmp_path: Path) -> None:
    # Every call either rings forever or is answered and held: only a hang-up or a dead worker ends them.
    leads = [Lead(f"L{i}", f"+1555{i:07d}", fields={"outcome": "hold" if (i // 2) % 2 else "ring"}) for i in range(8)]

    async def main(procs: dict[str, subprocess.Popen[bytes]]) -> None:
        async with dialer(broker, leads) as (runtime, dispatcher):
            engine = runtime.engine
            await until(lambda: sum(w.online for w in dispatcher.workers.values()) == 2)
            records: list[RecordCall] = []
            runtime.on(RecordCall, records.append)
            for i in range(6):
                runtime.submit(ev.AgentLoggedIn, agent_id=f"a{i}")
                runtime.submit(ev.AgentReady, agent_id=f"a{i}")

            def mixed(worker_id: str) -> bool:  # holds a ringing and an answered call
                got = {engine.call_state(c).value for c in dispatcher.workers[worker_id].calls}
                return {"ringing", "connected"} <= got

            await until(lambda: any(mixed(w) for w in dispatcher.workers))
            victim = next(w for w in dispatcher.workers if mixed(w))
            held = set(dispatcher.workers[victim].calls)
            states = {cid: engine.call_state(cid).value for cid in held}
            survivor_calls = {cid for w, i in dispatcher.workers.items() if w != victim for cid in i.calls}
            procs[victim.split("/")[1]].send_signal(signal.SIGKILL)  # no goodbye: only the broker's last will tells
            await until(lambda: not dispatcher.workers[victim].online)
            await until(lambda: {r.record.call_id for r in records} >= held)
            closed = {r.record.call_id: r.record for r in records}
            for cid in held:
                rec = closed[cid]
                if states[cid] in ("dialing", "ringing"):
                    assert rec.outcome is Outcome.NETWORK
                else:
                    assert rec.outcome is Outcome.CONNECTED and states[cid] == "connected"
            assert not held & set(engine.calls)  # none of the dead worker's calls is left open
            assert survivor_calls <= set(engine.calls)  # the other worker's calls are untouched
            assert dispatcher.lost_worker_calls == len(held)
            reported = {r.lead.lead_id for r in engine.leads.records}  # type: ignore[attr-defined]
            assert {closed[c].lead.lead_id for c in held} <= reported  # back at the lead source: not lost

    with workers(broker, ["k1", "k2"], capacity=3, tmp_path=tmp_path) as procs:
        asyncio.run(main(procs))


def test_pacing_follows_the_workers_free_capacity(broker: Broker, tmp_path: Path) -> None:
    """The engine's max_in_flight tracks what the live workers can carry: 0 without workers, up as they join or
    grow, down when one dies; and pacing never has more calls in flight than that."""
    leads = [Lead(f"L{i}", f"+1555{i:07d}", fields={"outcome": "hold"}) for i in range(40)]

    async def main(procs: dict[str, subprocess.Popen[bytes]]) -> Dispatcher:
        async with dialer(broker, leads) as (runtime, dispatcher):
            engine = runtime.engine
            over: list[tuple[int, int | None]] = []

            def check(event: ev.Event, actions: list[object]) -> None:
                cap = engine.config.max_in_flight
                if any(isinstance(a, DialLead) for a in actions) and (cap is None or engine.in_flight > cap):
                    over.append((engine.in_flight, cap))

            runtime.observe(check)
            for i in range(10):  # ten ready agents: progressive pacing wants ten calls
                runtime.submit(ev.AgentLoggedIn, agent_id=f"a{i}")
                runtime.submit(ev.AgentReady, agent_id=f"a{i}")
            assert engine.config.max_in_flight == 0 and engine.in_flight == 0  # no worker yet: nothing dialed

            def settled(cap: int) -> bool:  # at the cap, and every call taken by a worker
                held = sum(len(w.calls) for w in dispatcher.workers.values() if w.online)
                return engine.config.max_in_flight == cap and engine.in_flight == cap and held == cap

            procs.update(start_workers(broker, ["p1", "p2"], 2, tmp_path))
            await until(lambda: settled(4))
            victim = next(w for w, info in dispatcher.workers.items() if info.calls)
            procs[victim.split("/")[1]].send_signal(signal.SIGKILL)
            await until(lambda: settled(2))
            assert engine.in_flight == 2

            bus3 = MqttBus(BusConfig(port=broker.port, client_id="worker/p3", insecure=True, heartbeat=0.25), "c1")
            local = Worker(bus3, StandInPlacer(), 3)
            async with bus3:
                await until(lambda: settled(5))
                local.set_capacity(5)  # e.g. the SIP pool got a process back
                await until(lambda: settled(7))
                local.set_capacity(4)  # below its load: no call is touched; once one ends, it holds at most 4
                call_id = min(local.active)
                agent = engine.calls[call_id].agent_id
                assert agent is not None
                runtime.submit(ev.AgentLoggedOut, agent_id=agent)  # the engine hangs that call up
                await until(lambda: engine.config.max_in_flight == 6 and call_id not in local.active)
                assert len(local.active) == 4 and sum(len(w.calls) for w in dispatcher.workers.values()) == 6
                assert dispatcher.lost_worker_calls == 2  # the killed worker's
                runtime.close()
            assert not over, over
            return dispatcher

    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        dispatcher = asyncio.run(main(procs))
    finally:
        stop_workers(procs)
    changes = dispatcher.capacity_changes
    assert changes[0] == 0 and changes[-1] == 6 and 7 in changes
    assert 2 in changes[changes.index(4) :]  # down after the kill


def test_worker_command_refuses_to_run_without_a_trunk() -> None:
    proc = subprocess.run([sys.executable, "-m", "dialer.cli", "worker", "--campaign", "c1", "--worker-id", "w"],
                          capture_output=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2 and b"--trunk-host" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "dialer.cli", "worker", "--campaign", "c1", "--worker-id", "w",
                           "--trunk-host", "127.0.0.1", "--agent", "alice=http://x"],
                          capture_output=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2 and b"--agent" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "dialer.cli", "worker", "--campaign", "c1", "--worker-id", "w",
                           "--trunk-host", "127.0.0.1", "--caller-id", "+12127362000", "--connect-limit", "5"],
                          capture_output=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2 and b"--connect-limit" in proc.stderr  # a worker never waits past the 2 s


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def test_worker_command_takes_the_password_from_the_environment_and_never_logs_it(
    make_broker: type[Broker], tmp_path: Path
) -> None:
    secret = "w0rker-S3cret"
    pwfile = tmp_path / "passwd"
    pwfile.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pwfile), "worker/pw1", secret], check=True)
    pwfile.chmod(0o600)
    b = make_broker(f"password_file {pwfile}\n")
    b.config.write_text(b.config.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    b.start()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKER_PW": secret}
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dialer.cli", "worker", "-v", "--broker-port", str(b.port), "--campaign", "c1",
             "--worker-id", "pw1", "--password-env", "WORKER_PW", "--stand-in"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip

    async def status(online: bool) -> bool:
        topic = Topics("c1").status("worker/pw1")
        async with aiomqtt.Client("127.0.0.1", b.port, username="worker/pw1", password=secret) as client:
            await client.subscribe(topic, qos=1)
            async for message in client.messages:
                if decode(bytes(message.payload)).data["online"] is online:  # type: ignore[arg-type]
                    return True
        return False

    try:
        assert asyncio.run(asyncio.wait_for(status(True), 15))
    finally:
        proc.send_signal(signal.SIGTERM)  # at once, maybe while it is still subscribing: it must still say goodbye
        assert proc.wait(10) == 0  # a clean stop
    assert asyncio.run(asyncio.wait_for(status(False), 5))  # the retained status says offline, not a phantom
    text = log.read_text()
    assert "serving campaign c1" in text and secret not in text
    missing = subprocess.run(
        [sys.executable, "-m", "dialer.cli", "worker", "--campaign", "c1", "--worker-id", "pw2", "--username", "u",
         "--password-env", "NO_SUCH_VARIABLE_SET", "--stand-in"],
        capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert missing.returncode == 2 and b"NO_SUCH_VARIABLE_SET" in missing.stderr


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (["--tls-ca", "/nonexistent/ca.pem"], "--tls-ca"),  # a missing CA: said now, not at the first reconnect
        (["--abandon-wav", "/nonexistent/abandon.wav"], "--abandon-wav"),  # said now, not at the first abandon
        (["--worker-id", "w1\n"], "--worker-id"),  # an identity with a newline never reaches a topic
        ([], "--insecure"),  # no credentials and a broker that lets anyone in: refused without --insecure
    ],
)
def test_worker_configuration_errors_stop_it_at_start_with_one_line(broker: Broker, extra: list[str], key: str) -> None:
    worker_id = "w1\n" if key == "--worker-id" else "w9"
    extra = [a for a in extra if a not in ("--worker-id", "w1\n")]
    args = ["--campaign", "c1", "--worker-id", worker_id, "--broker-port", str(broker.port), "--trunk-host",
            "127.0.0.1", "--caller-id", "+12127362000", *extra]  # fmt: skip
    if key != "--insecure":
        args.append("--insecure")
    proc = subprocess.run([sys.executable, "-m", "dialer.cli", "worker", *args], capture_output=True, cwd=ROOT,
                          timeout=60)  # fmt: skip
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and key in lines[0], proc.stderr
