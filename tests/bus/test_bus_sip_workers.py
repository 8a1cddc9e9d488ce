"""Scale-out over SIP: ``dialer worker`` processes take dials from the MQTT 5 shared subscription and place them
through the SIP driver against SIPp; the pacing process runs the engine and the Dispatcher. Nothing is stood in:
real broker, real worker processes, real pjsua2, real SIP peers on loopback."""

from __future__ import annotations

import asyncio
import json
import math
import struct
import wave
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest
from bus_sip import Sipp, SipWorkers
from mqtt_broker import Broker

from dialer import Engine, EngineConfig, Lead, ListLeads, make_policy
from dialer.bus import BusConfig, CampaignBus, Dispatcher, MqttBus, Topics
from dialer.engine import events as ev
from dialer.engine.records import CallRecord, Outcome
from dialer.live.runtime import AsyncRuntime


@pytest.fixture
def sip_peers(tmp_path: Path) -> tuple[Sipp, Sipp]:
    customers = Sipp("customers.xml", tmp_path)
    agent = Sipp("agent.xml", tmp_path, "-rtp_echo")
    yield customers, agent  # type: ignore[misc]
    customers.stop()
    agent.stop()


class Campaign:
    """The pacing process: engine, runtime, CampaignBus and Dispatcher; agents finish wrap-up at once."""

    def __init__(self, runtime: AsyncRuntime, dispatcher: Dispatcher) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        self.dispatcher = dispatcher
        self.records: list[CallRecord] = []

    def on_record(self, action: object) -> None:
        record: CallRecord = action.record  # type: ignore[attr-defined]
        self.records.append(record)
        agent = record.agent_id
        if agent is not None and self.engine.agent_state(agent).value == "wrap_up":
            asyncio.get_running_loop().call_soon(self._wrap_up, agent)

    def _wrap_up(self, agent: str) -> None:
        if self.engine.agent_state(agent).value == "wrap_up":
            self.runtime.submit(ev.WrapUpDone, agent_id=agent)

    def online(self) -> int:
        return sum(w.online for w in self.dispatcher.workers.values())


class OptOutLeads(ListLeads):
    """A lead source that records do-not-call opt-outs, as a real one must (at once, persistently)."""

    def __init__(self, leads: list[Lead]) -> None:
        super().__init__(leads)
        self.opted_out: list[tuple[str, str | None]] = []

    def opt_out(self, phone: str, lead_id: str | None, reason: str | None) -> None:
        self.opted_out.append((phone, lead_id))


@asynccontextmanager
async def campaign(
    broker: Broker, leads: list[Lead], agents: dict[str, str], engine: Engine | None = None
) -> AsyncIterator[Campaign]:
    from dialer.engine.actions import RecordCall

    if engine is None:
        engine = Engine(make_policy("progressive"), ListLeads(leads), EngineConfig(ring_timeout=20.0))
    runtime = AsyncRuntime(engine)
    bus = MqttBus(BusConfig(port=broker.port, client_id="dispatcher/pacer", insecure=True, heartbeat=0.25), "c1")
    CampaignBus(runtime, bus, stats_interval=60)
    dispatcher = Dispatcher(runtime, bus, agents=agents)
    c = Campaign(runtime, dispatcher)
    runtime.on(RecordCall, c.on_record)
    async with bus:
        await bus.wait_connected(5)
        yield c
        runtime.close()


async def until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


def login(c: Campaign, n: int) -> None:
    for i in range(n):
        c.runtime.submit(ev.AgentLoggedIn, agent_id=f"a{i}")
        c.runtime.submit(ev.AgentReady, agent_id=f"a{i}")


def _tone(path: Path) -> Path:
    """A 1-s 440-Hz recorded message, for the workers' ``--abandon-wav``."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(
            b"".join(struct.pack("<h", int(8000 * math.sin(i / 8000 * 2 * math.pi * 440))) for i in range(8000))
        )
    return path


def test_sip_workers_place_a_campaign_offered_to_each_by_name(
    broker: Broker, sip_peers: tuple[Sipp, Sipp], tmp_path: Path
) -> None:
    customers, agent = sip_peers
    agents = {f"a{i}": f"sip:a{i}@127.0.0.1:{agent.port}" for i in range(2)}
    # The number's first digits choose what the SIPp customer does (see scenarios/customers.xml).
    want = {"2000001": Outcome.CONNECTED, "2000002": Outcome.CONNECTED, "2010001": Outcome.CONNECTED,
            "4860001": Outcome.BUSY, "4860002": Outcome.BUSY, "4040001": Outcome.INVALID_NUMBER,
            "4040002": Outcome.INVALID_NUMBER}  # fmt: skip
    leads = [Lead(f"L{phone}", phone) for phone in want]
    workers = SipWorkers(broker.port, customers.port, tmp_path, {})  # agent URIs travel with each bridge request

    async def main() -> Campaign:
        async with campaign(broker, leads, agents) as c:
            workers.start("s1", "s2")
            await until(lambda: c.online() == 2 and c.engine.config.max_in_flight == 4)
            login(c, 2)
            await until(lambda: len(c.records) == len(leads), 60)
            return c

    try:
        c = asyncio.run(main())
    finally:
        workers.stop()
    by_phone = {r.lead.phone: r for r in c.records}
    assert len(c.records) == len(leads) == len(by_phone)  # each lead exactly one record
    for phone, outcome in want.items():
        assert by_phone[phone].outcome is outcome, (phone, by_phone[phone], workers.log("s1"), workers.log("s2"))
    for phone in ("2000001", "2000002"):  # bridged to the agent SIPp, who talks 1.5 s and hangs up
        record = by_phone[phone]
        assert record.agent_id in agents and record.talk_seconds > 1.0
    accepted = {wid: w.accepted for wid, w in c.dispatcher.workers.items()}
    assert set(accepted) == {"worker/s1", "worker/s2"} and all(accepted.values()), accepted  # spread over both
    assert c.dispatcher.capacity_changes[0] == 0 and 4 in c.dispatcher.capacity_changes  # 2 per worker: agent legs
    assert not c.dispatcher.calls and c.engine.in_flight == 0


def test_a_killed_sip_worker_has_its_calls_accounted_for_and_no_lead_is_lost(
    broker: Broker, sip_peers: tuple[Sipp, Sipp], tmp_path: Path
) -> None:
    customers, _ = sip_peers
    ringing = [Lead(f"R{i}", f"180000{i}") for i in range(4)]  # ring until hung up
    busy = [Lead(f"B{i}", f"486000{i}") for i in range(2)]
    workers = SipWorkers(broker.port, customers.port, tmp_path, {})

    async def main() -> Campaign:
        async with campaign(broker, ringing + busy, {}) as c:
            workers.start("k1", "k2")
            await until(lambda: c.online() == 2 and c.engine.config.max_in_flight == 4)
            login(c, 4)
            engine, dispatcher = c.engine, c.dispatcher

            def ringing_on_both() -> bool:
                calls = [dispatcher.workers[f"worker/{w}"].calls for w in ("k1", "k2")]
                return all(len(held) == 2 for held in calls) and all(
                    engine.call_state(cid).value == "ringing" for held in calls for cid in held
                )

            await until(ringing_on_both)
            victim_calls = set(dispatcher.workers["worker/k1"].calls)
            survivor_calls = set(dispatcher.workers["worker/k2"].calls)
            workers.kill("k1")  # no goodbye: the broker's last will tells the dispatcher
            await until(lambda: {r.call_id for r in c.records} >= victim_calls)
            assert engine.config.max_in_flight == 2  # pacing knows only k2 is left ...
            assert survivor_calls <= set(engine.calls) and engine.in_flight == 2  # ... and its calls ring on
            workers.terminate("k2")  # a clean stop hangs up its calls and reports each
            await until(lambda: {r.call_id for r in c.records} >= survivor_calls)
            await until(lambda: engine.config.max_in_flight == 0)
            workers.start("k3")  # the busy leads were never dialed: a new worker takes them
            await until(lambda: len(c.records) == 6)
            return c

    try:
        c = asyncio.run(main())
    finally:
        workers.stop()
    outcomes = {r.lead.lead_id: r.outcome for r in c.records}
    assert len(c.records) == len(outcomes) == 6  # every lead exactly one record: none lost, none twice
    assert sorted(o.value for lid, o in outcomes.items() if lid.startswith("R")) == ["network"] * 2 + ["no_answer"] * 2
    assert outcomes["B0"] is Outcome.BUSY and outcomes["B1"] is Outcome.BUSY
    assert c.dispatcher.lost_worker_calls == 2
    reported = {r.lead.lead_id for r in c.engine.leads.records}  # type: ignore[attr-defined]
    assert reported == set(outcomes)  # every record went back to the lead source
    assert c.dispatcher.workers["worker/k3"].accepted == 2


def test_abandonment_message_over_a_sip_worker_and_a_keypress_opt_out(
    broker: Broker, sip_peers: tuple[Sipp, Sipp], tmp_path: Path
) -> None:
    """Two calls, one agent: the first is bridged; the second finds nobody, hears the message played by the worker
    and presses 9, which reaches the lead source as an opt-out through the bus."""
    customers, agent = sip_peers
    wav = _tone(tmp_path / "message.wav")
    leads = OptOutLeads([Lead("talk", "2000001"), Lead("optout", "2040001")])
    engine = Engine(make_policy("power", ratio=2.0), leads, EngineConfig(connect_limit=0.3, ring_timeout=20.0))
    agents = {"a0": f"sip:a0@127.0.0.1:{agent.port}"}
    workers = SipWorkers(broker.port, customers.port, tmp_path, {}, ("--abandon-wav", str(wav)))

    async def main() -> Campaign:
        async with campaign(broker, [], agents, engine) as c:
            workers.start("m1")
            await until(lambda: c.online() == 1 and c.engine.config.max_in_flight == 2)
            login(c, 1)
            await until(lambda: len(c.records) == 2)
            return c

    try:
        c = asyncio.run(main())
    finally:
        workers.stop()
    by_lead = {r.lead.lead_id: r for r in c.records}
    assert by_lead["talk"].outcome is Outcome.CONNECTED and by_lead["talk"].agent_id == "a0"
    abandoned = by_lead["optout"]
    assert abandoned.outcome is Outcome.ABANDONED and abandoned.message_at is not None
    assert leads.opted_out == [("2040001", "optout")], workers.log("m1")
    assert c.dispatcher.opt_outs == ["optout"]


def test_an_agent_phone_that_refuses_over_a_sip_worker_is_an_abandonment_with_the_message(
    broker: Broker, tmp_path: Path
) -> None:
    """The customer answers, the agent's SIPp phone answers the bridge with 486: the worker reports the failed
    bridge over MQTT and keeps the customer up, the dispatcher's engine counts the abandonment and pauses the
    agent, and the message it orders is played by the worker to the end before the hang-up."""
    customers = Sipp("customers.xml", tmp_path)
    refuser = Sipp("agent_refuses.xml", tmp_path)
    wav = _tone(tmp_path / "message.wav")
    leads = ListLeads([Lead("held", "2000001")])  # answers, then stays until the dialer hangs up
    engine = Engine(make_policy("progressive"), leads, EngineConfig(connect_limit=2.0, ring_timeout=20.0))
    agents = {"a0": f"sip:busy@127.0.0.1:{refuser.port}"}
    workers = SipWorkers(broker.port, customers.port, tmp_path, {}, ("--abandon-wav", str(wav)))

    async def main() -> Campaign:
        async with campaign(broker, [], agents, engine) as c:
            workers.start("b1")
            await until(lambda: c.online() == 1 and c.engine.config.max_in_flight == 2)
            login(c, 1)
            await until(lambda: len(c.records) == 1, 60)
            return c

    try:
        c = asyncio.run(main())
    finally:
        workers.stop()
        customers.stop()
        refuser.stop()
    (record,) = c.records
    assert record.outcome is Outcome.ABANDONED and record.abandoned and record.bridge_failed, workers.log("b1")
    assert record.agent_id == "a0" and record.connected_at is None and record.message_at is not None
    assert c.dispatcher.messages == [record.call_id]  # the worker reported the message started ...
    assert record.ended_at - record.message_at > 0.8  # ... and hung up only after the 1-s message played
    totals = c.engine.stats.totals
    assert (totals.live_answers, totals.abandoned, totals.bridge_failed, totals.connects) == (1, 1, 1, 0)
    assert c.engine.agent_state("a0").value == "paused"
    assert not customers.aborted() and not refuser.aborted()


def test_a_dispatcher_gone_after_the_answer_leaves_the_person_the_message_within_2_s_on_the_wire(
    broker: Broker, tmp_path: Path
) -> None:
    """Issue 14: the dispatcher vanishes (its connection dropped, no beat, no order) right after it ordered the
    bridge, while the agent's phone is still ringing. The SIP worker holds the 2-second rule on its own: the
    person's first sound of the message crosses the wire within 2 s of the 200 OK, the worker hangs up after it,
    and the worker's status shows it holds no call any more (it offers its slots again when a dispatcher beats:
    while the lease is lapsed its capacity reads 0). Measured from packets."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.wire_capture import WireCapture

    customers = Sipp("customers.xml", tmp_path)
    agent = Sipp("agent_refuses.xml", tmp_path)
    agents = {"a0": f"sip:noanswer0@127.0.0.1:{agent.port}"}  # rings, never answers
    wav = _tone(tmp_path / "message.wav")
    workers = SipWorkers(broker.port, customers.port, tmp_path, {}, extra=("--abandon-wav", str(wav)))
    capture = WireCapture(ports={customers.port, customers.media_port}).start()

    async def main() -> tuple[float, int]:
        free_after: list[tuple[int, int]] = []
        async with campaign(broker, [Lead("L1", "2000001")], agents) as c:
            workers.start("e1")
            await until(lambda: c.online() == 1 and (c.engine.config.max_in_flight or 0) >= 1, 60)
            full = next(iter(c.dispatcher.workers.values())).capacity
            login(c, 1)
            await until(lambda: any(call.state.value == "connected" for call in c.engine.calls.values()), 30)
            bus = c.dispatcher.bus
            await bus.flush(2)  # the bridge order is out: the agent's phone rings
            gone = asyncio.get_running_loop().time()
            task = bus._task
            assert task is not None
            task.cancel()  # the dispatcher is gone: no offline status, no more beats, no more orders
            await asyncio.gather(task, return_exceptions=True)
            bus._task = None
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="monitor/m") as mon:
                await mon.subscribe(Topics("c1").status("worker/e1"), 0)
                async for m in mon.messages:
                    data = json.loads(bytes(m.payload))["data"]  # type: ignore[arg-type]
                    free_after.append((data.get("calls", -1), data.get("capacity", -1)))
                    if data.get("calls") == 0:  # its line is free (it dials again once a dispatcher beats)
                        break
            c.runtime.close()
            return asyncio.get_running_loop().time() - gone, full

    try:
        freed_after, full = asyncio.run(asyncio.wait_for(main(), 90))
    finally:
        capture.stop()
        workers.stop()
        customers.stop()
        agent.stop()
    (call_id,) = capture.call_ids()
    heard = capture.answer_to_audio(call_id)
    assert heard is not None and heard <= 2.0, (heard, capture.summary())  # the message, from the worker alone
    bye = capture.bye_time(call_id)
    answer = capture.answer_time(call_id)
    assert bye is not None and answer is not None and bye > answer + heard  # then the hang-up, after the message
    assert full >= 1 and freed_after < 30  # and its line free again, with no dispatcher to tell it
