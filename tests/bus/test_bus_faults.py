"""The bus under the faults issue 14 found: poisoned identifiers and outboxes, forged and cross-role commands,
reused and retained commands, a frozen worker, a consumer that comes back after a broker crash.

Real mosquitto throughout (tests/bus/mqtt_broker.py). The broker here lets anyone in; what the broker's ACL adds
(a client can only publish under its own identity) is proven in test_bus_acl.py with the shipped configuration,
and here it is the receiver's half that is tested: it trusts the topic, checks the role, refuses the rest.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from mqtt_broker import Broker
from test_bus_workers import dialer, start_workers, stop_workers, until

from dialer import Engine, Lead, ListLeads, make_policy
from dialer.bus import BusConfig, CampaignBus, MqttBus, Outbox, Topics
from dialer.engine import events as ev
from dialer.engine.actions import RecordCall
from dialer.live.runtime import AsyncRuntime

T = Topics("c1")
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _doc(type_: str, data: dict[str, Any], source: str, id: str | None = None) -> dict[str, Any]:
    return {"v": 1, "id": id or uuid.uuid4().hex, "type": type_, "campaign": "c1", "source": source, "ts": 0.0,
            "data": data}  # fmt: skip


class Client:
    """A raw MQTT client with an identity: publishes commands under from/<identity>, reads its replies."""

    def __init__(self, client: aiomqtt.Client, identity: str) -> None:
        self.client = client
        self.identity = identity
        self.replies: dict[str, dict[str, Any]] = {}
        self.replayed: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def run(self) -> None:
        async for m in self.client.messages:
            doc = json.loads(m.payload)  # type: ignore[arg-type]
            if m.topic.matches(T.replay(self.identity)):
                self.replayed.append(doc)
            else:
                self.replies[doc["data"]["command_id"]] = doc["data"]
            self.changed.set()

    async def send(self, type_: str, data: dict[str, Any], *, source: str | None = None, id: str | None = None,
                   retain: bool = False, wait: bool = True) -> dict[str, Any] | None:  # fmt: skip
        doc = _doc(type_, data, source or self.identity, id)
        await self.client.publish(T.command(type_, self.identity), json.dumps(doc), qos=1, retain=retain)
        if not wait:
            return None
        return await self.wait(lambda: self.replies.get(doc["id"]))

    async def wait(self, check: Any, timeout: float = 5.0) -> Any:
        async def poll() -> Any:
            while True:
                value = check()
                if value:
                    return value
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(poll(), timeout)


@asynccontextmanager
async def as_client(port: int, identity: str) -> AsyncIterator[Client]:
    async with aiomqtt.Client("127.0.0.1", port, identifier=identity, protocol=aiomqtt.ProtocolVersion.V5) as c:
        client = Client(c, identity)
        await c.subscribe(T.reply(identity), 1)
        await c.subscribe(T.replay(identity), 1)
        reader = asyncio.create_task(client.run())
        try:
            yield client
        finally:
            reader.cancel()


@asynccontextmanager
async def campaign(port: int, **config: Any) -> AsyncIterator[tuple[AsyncRuntime, CampaignBus]]:
    runtime = AsyncRuntime(Engine(make_policy("progressive"), ListLeads([])))
    bus = MqttBus(BusConfig(port=port, client_id="dispatcher/d1", insecure=True, **config), "c1")
    cb = CampaignBus(runtime, bus, stats_interval=60)
    async with bus:
        await bus.wait_connected(5)
        try:
            yield runtime, cb
        finally:
            await bus.flush(5)
            runtime.close()


def test_each_role_may_give_only_its_commands_and_a_forged_source_is_refused(broker: Broker) -> None:
    async def main() -> None:
        async with (
            campaign(broker.port) as (runtime, cb),
            as_client(broker.port, "backend/crm") as crm,
            as_client(broker.port, "monitor/wall") as wall,
            as_client(broker.port, "worker/w1") as w1,
        ):
            assert (await crm.send("agent.login", {"agent_id": "alice"}))["ok"]  # type: ignore[index]
            for who, type_, data in [(wall, "agent.ready", {"agent_id": "alice"}),
                                     (wall, "campaign.stop", {}),
                                     (w1, "agent.logout", {"agent_id": "alice"}),
                                     (w1, "lead.opt_out", {"phone": "+12125550100"})]:  # fmt: skip
                reply = await who.send(type_, data)
                assert reply is not None and reply["ok"] is False and reply["code"] == "forbidden", reply
            # The body says backend/crm, but it was published under monitor/wall: the topic is what counts.
            forged = await wall.send("agent.ready", {"agent_id": "alice"}, source="backend/crm")
            assert forged is not None and forged["code"] == "forbidden"
            replay = await wall.send("events.replay", {"after": 0})  # read-only: a monitor may ask
            assert replay is not None and replay["ok"], replay
            assert runtime.engine.agent_state("alice").value == "paused"  # nobody above changed anything
            assert runtime.engine.dialing
            assert cb.commands_ok == 2 and cb.commands_failed == 5

    asyncio.run(main())


def test_a_reused_id_and_a_retained_command_are_refused_and_change_nothing(broker: Broker) -> None:
    async def main() -> None:
        # A retained campaign.stop, left on the broker by a careless backend before this dialer started.
        async with as_client(broker.port, "backend/crm") as early:
            await early.send("campaign.stop", {}, id="old-stop", retain=True, wait=False)
            await asyncio.sleep(0.2)
        async with as_client(broker.port, "backend/crm") as crm, campaign(broker.port) as (runtime, _cb):
            stale = await crm.wait(lambda: crm.replies.get("old-stop"))
            assert stale["ok"] is False and stale["code"] == "retained"
            assert runtime.engine.dialing  # not stopped by last week's command
            first = await crm.send("agent.login", {"agent_id": "bob"}, id="c-1")
            assert first is not None and first["ok"]
            crm.replies.pop("c-1")
            again = await crm.send("agent.login", {"agent_id": "bob"}, id="c-1")  # a retry: same answer
            assert again == first
            crm.replies.pop("c-1")
            other = await crm.send("agent.ready", {"agent_id": "bob"}, id="c-1")  # the id reused for another
            assert other is not None and other["ok"] is False and other["code"] == "duplicate_id"
            assert runtime.engine.agent_state("bob").value == "paused"  # the ready was NOT applied
            # Same id from another sender is another command.
            async with as_client(broker.port, "backend/desk") as desk:
                ready = await desk.send("agent.ready", {"agent_id": "bob"}, id="c-1")
                assert ready is not None and ready["ok"]
            assert runtime.engine.agent_state("bob").value == "ready"
            # Retained while this dispatcher listens: the broker would hand it to every future one. Refused too.
            live = await crm.send("campaign.stop", {}, retain=True)
            assert live is not None and live["code"] == "retained"
            assert runtime.engine.dialing
            newline = await crm.send("agent.login", {"agent_id": "carol\n"})
            assert newline is not None and newline["code"] == "invalid"  # matched whole: no trailing newline

    asyncio.run(main())


def test_a_poisoned_outbox_entry_is_dead_lettered_instead_of_resent_on_every_reconnect(
    broker: Broker, tmp_path: Path
) -> None:
    """An outbox written by an older version holds a reply to a topic ending in a newline: mosquitto drops the
    connection on it ('malformed packet'). It must be set aside after a few tries, and what follows delivered."""
    path = tmp_path / "outbox.sqlite"
    old = Outbox(path)
    old.put("poison", f"{T.base}/reply/crm\n", b'{"v":1}')
    old.close()

    async def main() -> tuple[int, int, list[str]]:
        got: list[str] = []
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="watcher") as watcher:
            await watcher.subscribe(T.events, 1)
            bus = MqttBus(BusConfig(port=broker.port, client_id="dispatcher/d1", outbox=path, insecure=True,
                                    reconnect_min=0.05, reconnect_max=0.2), "c1")  # fmt: skip
            async with bus:
                bus.publish("call.ended", call_id=7)

                async def read() -> None:
                    async for m in watcher.messages:
                        got.append(json.loads(m.payload)["type"])  # type: ignore[arg-type]
                        return

                await asyncio.wait_for(read(), 15)
                await asyncio.sleep(1.0)  # no further reconnects once it is set aside
                return bus.connections, bus.dead_lettered, got

    connections, dead, got = asyncio.run(main())
    assert got == ["call.ended"]
    assert dead == 1 and 2 <= connections <= 4, connections  # three tries, then one healthy connection
    box = Outbox(path)
    assert [d[1] for d in box.dead_letters()] == ["poison"]  # kept, with why, for an operator to see


def test_a_consumer_back_after_a_broker_crash_recovers_every_event_by_replay(broker: Broker, tmp_path: Path) -> None:
    """The broker (no persistence) is SIGKILLed mid-stream and the consumer's session with it; the consumer comes
    back after the dialer and asks for everything after the last seq it saw. Every event arrives, once after
    de-duplication."""
    n = 400

    async def main() -> tuple[set[int], set[int]]:
        seen: dict[int, str] = {}
        async with campaign(broker.port, retention=600.0, outbox=tmp_path / "o.sqlite",
                            reconnect_min=0.05, reconnect_max=0.3) as (_runtime, cb):  # fmt: skip
            bus = cb.bus
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="backend/crm") as c:
                await c.subscribe(T.events, 1)
                for i in range(1, n // 2 + 1):
                    bus.publish("call.ended", call_id=i)

                async def read(stop_at: int) -> None:
                    async for m in c.messages:
                        doc = json.loads(m.payload)  # type: ignore[arg-type]
                        seen[doc["seq"]] = doc["id"]
                        if len(seen) >= stop_at:
                            return

                await asyncio.wait_for(read(50), 10)
            broker.kill()  # mid-stream: the rest of the first half is somewhere between outbox and nowhere
            for i in range(n // 2 + 1, n + 1):
                bus.publish("call.ended", call_id=i)  # while the broker is down
            broker.start()
            await bus.wait_connected(10)
            await bus.flush(10)  # the dialer is back and has sent everything; the consumer was not there
            async with as_client(broker.port, "backend/crm") as crm:
                reply = await crm.send("events.replay", {"after": max(seen)})
                assert reply is not None and reply["ok"] and reply["result"]["complete"] is True, reply
                await crm.wait(lambda: len(crm.replayed) >= reply["result"]["count"], timeout=10)
                for doc in crm.replayed:
                    seen.setdefault(doc["seq"], doc["id"])
                got = {json.loads(e.payload)["data"]["call_id"] for e in bus.outbox.since(0)}
                calls = set()
                for doc in crm.replayed:
                    calls.add(doc["data"]["call_id"])
                early = {i for i in range(1, n + 1) if i not in calls}
                return got, early

    kept, early = asyncio.run(main())
    assert kept == set(range(1, n + 1))  # the outbox keeps all of them for the retention time
    # What the replay did not carry, the consumer had seen live before the crash (seq <= the last it saw).
    assert len(early) < n and all(i <= n // 2 for i in early)


def test_a_frozen_worker_gets_no_more_offers_and_the_others_carry_the_campaign(broker: Broker, tmp_path: Path) -> None:
    """SIGSTOP: the process's socket stays open, so the broker thinks it is there for a keep-alive (tens of
    seconds). The dispatcher's own liveness check takes it out of the offers within about a second."""
    leads = [Lead(f"L{i}", f"+1555{i:07d}", fields={"outcome": "person", "talk": 0.2}) for i in range(120)]

    async def main(procs: dict[str, Any]) -> tuple[float, int, int, int]:
        async with dialer(broker, leads) as (runtime, dispatcher):
            loop = asyncio.get_running_loop()
            records: list[RecordCall] = []
            runtime.on(RecordCall, records.append)

            def wrap_up(action: RecordCall) -> None:
                agent = action.record.agent_id
                if agent is not None:
                    loop.call_soon(lambda: runtime.submit(ev.WrapUpDone, agent_id=agent))

            runtime.on(RecordCall, wrap_up)
            await until(lambda: sum(dispatcher.live(w) for w in dispatcher.workers.values()) == 2)
            for i in range(6):
                runtime.submit(ev.AgentLoggedIn, agent_id=f"a{i}")
                runtime.submit(ev.AgentReady, agent_id=f"a{i}")
            await until(lambda: len(records) >= 10)
            procs["f1"].send_signal(signal.SIGSTOP)
            stopped = loop.time()
            frozen = dispatcher.workers["worker/f1"]
            await until(lambda: not dispatcher.live(frozen), timeout=10)
            out_after = loop.time() - stopped
            other = dispatcher.workers["worker/f2"]
            before = other.accepted
            await asyncio.sleep(2.0)
            carried = other.accepted - before
            procs["f1"].send_signal(signal.SIGCONT)
            return out_after, carried, dispatcher.withdrawn, len(frozen.calls)

    procs: dict[str, Any] = {}
    try:
        procs.update(start_workers(broker, ["f1", "f2"], 3, tmp_path))
        out_after, carried, withdrawn, _ = asyncio.run(main(procs))
    finally:
        stop_workers(procs)
    assert out_after < 2.0, out_after  # no more offers to it within the liveness window (plus one check)
    assert carried >= 3, carried  # the campaign went on at the other worker's capacity
    assert withdrawn <= 3  # at most the offers that were in flight when it froze


@pytest.mark.parametrize("bridge_sent", [True, False], ids=["agent-call-goes-on", "answered-gets-message"])
def test_a_dispatcher_that_dies_leaves_no_call_hanging_and_a_new_one_takes_over(
    broker: Broker, tmp_path: Path, bridge_sent: bool
) -> None:
    """The dispatcher vanishes without a word (its connection dropped, no goodbye, no more beats). Within its
    lease the worker finishes what it holds on its own: the ringing call is hung up, the call with an agent goes
    on, and its slot is free again. A new dispatcher's beat restores the lease: dials flow again, with call ids
    past every old one. When it died before its bridge order left, the answered person hears the message from the
    worker's own connect deadline, within the 2 seconds, and the call ends."""
    leads = [
        Lead("H", "+15550000001", fields={"outcome": "hold"}),
        Lead("R", "+15550000002", fields={"outcome": "ring"}),
    ]

    async def main() -> tuple[list[dict[str, Any]], list[int], list[int]]:
        events: list[dict[str, Any]] = []
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="monitor/m") as mon:
            await mon.subscribe(T.worker_event("worker/z1"), 1)

            async def watch() -> None:
                async for m in mon.messages:
                    events.append(json.loads(m.payload))  # type: ignore[arg-type]

            watcher = asyncio.create_task(watch())
            old_ids: list[int] = []
            async with dialer(broker, leads) as (runtime, dispatcher):
                await until(lambda: any(dispatcher.live(w) for w in dispatcher.workers.values()))
                if not bridge_sent:
                    # The dispatcher dies before its bridge order leaves: made certain by never sending it.
                    send = dispatcher._to_worker

                    def no_bridge(call_id: int, type_: str, **data: Any) -> None:
                        if type_ != "work.connect":
                            send(call_id, type_, **data)

                    dispatcher._to_worker = no_bridge  # type: ignore[method-assign]
                for agent in ("a1", "a2"):
                    runtime.submit(ev.AgentLoggedIn, agent_id=agent)
                    runtime.submit(ev.AgentReady, agent_id=agent)
                engine = runtime.engine
                await until(lambda: sorted(c.state.value for c in engine.calls.values()) == ["connected", "ringing"])
                old_ids = sorted(engine.calls)
                if bridge_sent:
                    await dispatcher.bus.flush(5)  # the bridge order has left
                    await asyncio.sleep(0.3)
                task = dispatcher.bus._task
                assert task is not None
                task.cancel()  # gone, mid-call: no offline status, no more beats
                await asyncio.gather(task, return_exceptions=True)
                dispatcher.bus._task = None
                ring_id = next(c for c, call in engine.calls.items() if call.state.value == "ringing")
                await until(lambda: any(e["data"]["call_id"] == ring_id and e["data"]["kind"] == "failed"
                                        for e in events), timeout=10)  # fmt: skip
                await asyncio.sleep(0.5)
                lapse = list(events)  # what the worker did on its own, with no dispatcher at all
                runtime.close()
            # A new dispatcher (a restart): a fresh engine, a new lead; the worker takes dials again.
            fresh = [Lead("N", "+15550000003", fields={"outcome": "busy"})]
            async with dialer(broker, fresh) as (runtime2, dispatcher2):
                await until(lambda: any(dispatcher2.live(w) for w in dispatcher2.workers.values()), timeout=10)
                records: list[RecordCall] = []
                runtime2.on(RecordCall, records.append)
                runtime2.submit(ev.AgentLoggedIn, agent_id="a3")
                runtime2.submit(ev.AgentReady, agent_id="a3")
                await until(lambda: len(records) == 1, timeout=10)
                new_ids = [r.record.call_id for r in records]
            watcher.cancel()
        return lapse, old_ids, new_ids

    procs: dict[str, Any] = {}
    try:
        procs.update(start_workers(broker, ["z1"], 3, tmp_path))
        events, old_ids, new_ids = asyncio.run(main())
    finally:
        stop_workers(procs)
    kinds = {(e["data"]["call_id"], e["data"]["kind"]) for e in events}
    held, ringing = old_ids  # H was dialed first
    assert (ringing, "failed") in kinds  # hung up by the worker itself
    if bridge_sent:
        assert (held, "ended") not in kinds and (held, "failed") not in kinds  # the agent's call goes on
    else:
        answered = next(e["data"]["answered_at"] for e in events if e["data"]["call_id"] == held
                        and e["data"]["kind"] == "answered_person")  # fmt: skip
        messages = [e["data"]["at"] for e in events if e["data"]["call_id"] == held and e["data"]["kind"] == "message"]
        assert messages, sorted(kinds)
        message = messages[0]
        assert 0 < message - answered <= 2.0  # the worker's own clock: the 2-s rule held with nobody to order it
        assert (held, "ended") in kinds
    assert min(new_ids) > max(old_ids)  # never an old call's id


def test_a_status_or_report_on_another_identitys_topic_is_ignored(broker: Broker) -> None:
    """The issue's forgery: a client declared a live worker dead (its calls recorded as failed) and forged a call
    record by naming the worker in the message body. The dispatcher now reads who speaks from the topic (which the
    broker's ACL ties to the user name): a body naming someone else is dropped, and a 'worker' status published
    under a backend's own topic is not a worker."""
    from dialer.bus.schema import make
    from dialer.distributed.dial_worker import DialWorker, StandInPlacer

    leads = [Lead("H", "+15550000001", fields={"outcome": "hold"})]

    async def main() -> tuple[dict[int, str], int, list[str]]:
        async with dialer(broker, leads) as (runtime, dispatcher):
            wbus = MqttBus(BusConfig(port=broker.port, client_id="worker/w1", insecure=True, heartbeat=0.25), "c1")
            DialWorker(wbus, StandInPlacer(), 2)
            async with wbus:
                await until(lambda: any(dispatcher.live(w) for w in dispatcher.workers.values()))
                runtime.submit(ev.AgentLoggedIn, agent_id="a1")
                runtime.submit(ev.AgentReady, agent_id="a1")
                engine = runtime.engine
                await until(lambda: any(c.state.value == "connected" for c in engine.calls.values()))
                (call_id,) = list(engine.calls)
                async with aiomqtt.Client("127.0.0.1", broker.port, identifier="backend/evil") as evil:
                    offline = make("dialer.status", "c1", "worker/w1", online=False, role="worker")
                    # On the victim's topic but saying it is someone else; then as a "worker" under its own name.
                    await evil.publish(
                        T.status("worker/w1"), offline.to_json().replace(b'"worker/w1"', b'"worker/w9"'), 1
                    )
                    await evil.publish(T.status("backend/evil"), make("dialer.status", "c1", "backend/evil",
                                       online=False, role="worker").to_json(), 1)  # fmt: skip
                    # The case: w1's death and w1's call end, under the forger's own topic, naming w1.
                    await evil.publish(T.status("backend/evil"), offline.to_json(), 1)
                    await evil.publish(f"{T.base}/from/backend/evil/event", make("work.event", "c1", "worker/w1",
                                       call_id=call_id, kind="ended").to_json(), 1)  # fmt: skip
                    forged = make("work.event", "c1", "worker/w9", call_id=call_id, kind="ended")
                    await evil.publish(T.worker_event("worker/w1"), forged.to_json(), 1)
                    await evil.publish(f"{T.base}/from/backend/evil/event", make("work.event", "c1", "backend/evil",
                                       call_id=call_id, kind="ended").to_json(), 1)  # fmt: skip
                    await asyncio.sleep(1.0)
                states = {c: call.state.value for c, call in engine.calls.items()}
                runtime.close()
                return states, dispatcher.lost_worker_calls, sorted(dispatcher.workers)

    states, lost, workers = asyncio.run(main())
    assert list(states.values()) == ["connected"]  # the call is untouched: no forged end, no forged death
    assert lost == 0
    assert workers == ["worker/w1"]  # a backend calling itself a worker is not one


def test_adopted_calls_are_judged_from_the_workers_facts(broker: Broker, tmp_path: Path) -> None:
    """A restarted dispatcher's adopted calls: a person who got the message is abandoned (and counted by pacing),
    a bridge ordered without a message is connected, a call the worker forgot is interrupted; and a dispatcher
    whose call ids would not start past the adopted ones refuses to start."""
    from dialer.bus.schema import make
    from dialer.distributed.dispatcher import Dispatcher, fresh_call_ids
    from dialer.distributed.state import DispatcherState
    from dialer.engine.core import EngineConfig
    from dialer.engine.records import Outcome
    from dialer.errors import ConfigError

    state = DispatcherState(tmp_path / "d.sqlite")
    t0 = time.time() - 10
    for cid, lead in ((101, "A"), (102, "C"), (103, "F")):
        state.dialed(cid, lead, f"+1555000{cid}", {}, "old")
        state.update(cid, worker="worker/w1", answered_at=t0 + 3, answered_by="person")
    state.update(102, agent_id="a1", connected_at=t0 + 3.5)

    async def main() -> tuple[list[Any], list[int], int]:
        leads = ListLeads([])
        runtime = AsyncRuntime(Engine(make_policy("progressive"), leads, EngineConfig(first_call_id=5)))
        bus = MqttBus(BusConfig(port=broker.port, client_id="dispatcher/d1", insecure=True, heartbeat=0.25), "c1")
        with pytest.raises(ConfigError, match="first_call_id"):
            Dispatcher(runtime, bus, state=state)  # ids from 5 would meet the old 101-103
        runtime = AsyncRuntime(Engine(make_policy("progressive"), leads, EngineConfig(first_call_id=fresh_call_ids())))
        dispatcher = Dispatcher(runtime, bus, state=state)
        async with bus, aiomqtt.Client("127.0.0.1", broker.port, identifier="worker/w1") as w1:
            await bus.wait_connected(5)
            await asyncio.sleep(0.2)
            facts = [(101, "message", None, t0 + 4.9), (101, "ended", None, None), (102, "ended", None, None),
                     (103, "failed", "unknown_call", None)]  # fmt: skip
            for cid, kind, reason, at in facts:
                m = make("work.event", "c1", "worker/w1", call_id=cid, kind=kind, reason=reason, at=at)
                await w1.publish(T.worker_event("worker/w1"), m.to_json(), 1)
            await until(lambda: not dispatcher.orphans, timeout=5)
            runtime.close()
        return dispatcher.orphan_records, dispatcher.orphans_interrupted, runtime.engine.stats.totals.abandoned

    records, interrupted, abandoned = asyncio.run(main())
    by_id = {r.call_id: r for r in records}
    assert by_id[101].outcome is Outcome.ABANDONED and by_id[101].message_played is True
    assert by_id[101].message_at is not None and by_id[101].message_at - by_id[101].answered_at < 2.0  # type: ignore[operator]
    assert by_id[102].outcome is Outcome.CONNECTED and by_id[102].agent_id == "a1"
    assert interrupted == [103] and 103 not in by_id
    assert abandoned == 1  # pacing's windows count the adopted abandonment
    assert state.open_calls() == []  # nothing left to adopt next time


def test_a_second_process_under_a_live_identity_is_refused_and_the_first_keeps_its_calls(
    broker: Broker, tmp_path: Path
) -> None:
    """Two processes with one identity would take the session from each other several times a second (the
    broker allows one connection per client id), and every loss would read as the worker's death. The second is
    refused at start, one line and exit 2, and the first keeps its calls."""
    import subprocess
    import sys

    from test_bus_workers import ROOT

    leads = [Lead("H", "+15550000001", fields={"outcome": "hold"})]

    async def main(procs: dict[str, Any]) -> tuple[subprocess.CompletedProcess[bytes], int, list[str]]:
        async with dialer(broker, leads) as (runtime, dispatcher):
            await until(lambda: any(dispatcher.live(w) for w in dispatcher.workers.values()))
            runtime.submit(ev.AgentLoggedIn, agent_id="a1")
            runtime.submit(ev.AgentReady, agent_id="a1")
            engine = runtime.engine
            await until(lambda: any(c.state.value == "connected" for c in engine.calls.values()))
            second = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "dialer.cli", "worker", "--broker-port", str(broker.port), "--campaign", "c1",
                 "--worker-id", "d1", "--capacity", "3", "--stand-in", "--insecure"],
                capture_output=True, cwd=ROOT, timeout=60,
            )  # fmt: skip
            await asyncio.sleep(2.0)  # past the dispatcher's grace for a worker that went offline
            states = [c.state.value for c in engine.calls.values()]
            lost = dispatcher.lost_worker_calls
            runtime.close()
            return second, lost, states

    procs: dict[str, Any] = {}
    try:
        procs.update(start_workers(broker, ["d1"], 3, tmp_path))
        second, lost, states = asyncio.run(main(procs))
    finally:
        stop_workers(procs)
    errors = [line for line in second.stderr.decode().splitlines() if "error" in line.lower()]
    assert second.returncode == 2 and len(errors) == 1, second.stderr  # (besides the --insecure warning)
    assert errors[0].startswith("dialer: error: --worker-id") and "already running" in errors[0], errors
    assert lost == 0 and states == ["connected"]  # the first worker's call was never closed


def test_a_worker_that_was_frozen_itself_does_not_cut_its_calls_on_waking(broker: Broker, tmp_path: Path) -> None:
    """SIGSTOP longer than the lease, then SIGCONT: on waking, the worker's lease clock says 'lapsed', but the
    dispatcher's beats are waiting unread in its socket. It must read them first, and keep its ringing call."""
    leads = [Lead("R", "+15550000001", fields={"outcome": "ring"})]

    async def main(procs: dict[str, Any]) -> tuple[list[str], list[str]]:
        async with dialer(broker, leads) as (runtime, dispatcher):
            await until(lambda: any(dispatcher.live(w) for w in dispatcher.workers.values()))
            records: list[RecordCall] = []
            runtime.on(RecordCall, records.append)
            runtime.submit(ev.AgentLoggedIn, agent_id="a1")
            runtime.submit(ev.AgentReady, agent_id="a1")
            engine = runtime.engine
            await until(lambda: any(c.state.value == "ringing" for c in engine.calls.values()))
            procs["z2"].send_signal(signal.SIGSTOP)
            await asyncio.sleep(4.5)  # more than the 3 s lease
            procs["z2"].send_signal(signal.SIGCONT)
            await asyncio.sleep(2.0)
            states = [c.state.value for c in engine.calls.values()]
            ended = [r.record.outcome.value for r in records]
            runtime.close()
            return states, ended

    procs: dict[str, Any] = {}
    try:
        procs.update(start_workers(broker, ["z2"], 3, tmp_path))
        states, ended = asyncio.run(main(procs))
    finally:
        stop_workers(procs)
    assert ended == [] and states == ["ringing"], (ended, states, (tmp_path / "z2.log").read_text()[-2000:])
