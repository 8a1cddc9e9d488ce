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

import pytest
from conftest import Broker

from dialer import Engine, Lead, ListLeads, make_policy
from dialer.bus import BusConfig, CampaignBus, Dispatcher, MqttBus
from dialer.engine import events as ev
from dialer.engine.actions import RecordCall
from dialer.engine.records import Outcome
from dialer.live.runtime import AsyncRuntime

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def workers(
    broker: Broker, ids: list[str], capacity: int, tmp_path: Path
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        for wid in ids:
            log = open(tmp_path / f"{wid}.log", "wb")  # noqa: SIM115
            procs[wid] = subprocess.Popen(
                [sys.executable, "-m", "dialer.bus.worker", "--port", str(broker.port), "--campaign", "c1",
                 "--worker-id", wid, "--capacity", str(capacity), "--stand-in"],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        yield procs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@asynccontextmanager
async def dialer(broker: Broker, leads: list[Lead]) -> AsyncIterator[tuple[AsyncRuntime, Dispatcher]]:
    engine = Engine(make_policy("progressive"), ListLeads(leads))
    runtime = AsyncRuntime(engine)
    bus = MqttBus(BusConfig(port=broker.port, client_id="pacer"), "c1")
    CampaignBus(runtime, bus, stats_interval=60)
    dispatcher = Dispatcher(runtime, bus, accept_timeout=3.0)
    async with bus:
        await bus.wait_connected(5)
        yield runtime, dispatcher
        runtime.close()


async def until(check: object, timeout: float = 20.0) -> None:
    async def poll() -> None:
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


def test_shared_subscription_spreads_dials_over_worker_processes(broker: Broker, tmp_path: Path) -> None:
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
    assert set(accepted) == {"w1", "w2", "w3"} and all(n > 0 for n in accepted.values()), accepted
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
            procs[victim].send_signal(signal.SIGKILL)  # no goodbye: only the broker's last will tells
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


def test_worker_entry_point_refuses_to_run_without_a_placer() -> None:
    proc = subprocess.run([sys.executable, "-m", "dialer.bus.worker", "--campaign", "c1", "--worker-id", "w"],
                          capture_output=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2 and b"--stand-in" in proc.stderr


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
