"""No event lost: kill mosquitto mid-campaign, restart it, and every event arrives exactly once after dedupe."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiomqtt
from mqtt_broker import Broker

from dialer import Engine, Lead, ListLeads, make_policy
from dialer.bus import BusConfig, CampaignBus, Deduplicator, Message, MqttBus, Topics
from dialer.engine import events as ev
from dialer.engine.actions import DialLead
from dialer.live.runtime import AsyncRuntime

LEADS = 150
T = Topics("c1")


class RecordingBus(MqttBus):
    """Remembers the id of every message it queued: the set the consumer must end up with."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queued: set[str] = set()
        self.log: dict[str, tuple[int, str, bool]] = {}  # id -> (order, type, connected when queued)

    def send(self, message: Message, topic: str, **kw: Any) -> None:
        super().send(message, topic, **kw)
        self.queued.add(message.id)
        self.log[message.id] = (len(self.log), message.type, self.connected.is_set())


class Consumer:
    """A backend that reconnects quickly and drops duplicates by message id."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dedupe = Deduplicator()
        self.unique: list[dict[str, Any]] = []
        self.received = 0
        self.connects = 0

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, protocol=aiomqtt.ProtocolVersion.V5) as c:
                    await c.subscribe(T.events, 1)
                    self.connects += 1
                    async for m in c.messages:
                        doc = json.loads(m.payload)  # type: ignore[arg-type]
                        self.received += 1
                        if self.dedupe.first(doc["id"]):
                            self.unique.append(doc)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.02)


def test_broker_killed_mid_campaign_loses_nothing_and_dedupe_gives_exactly_once(broker: Broker) -> None:
    async def main() -> tuple[RecordingBus, Consumer, int]:
        engine = Engine(make_policy("progressive"), ListLeads(Lead(f"L{i}", f"+1555{i:07d}") for i in range(LEADS)))
        runtime = AsyncRuntime(engine)
        # The dialer waits longer than the consumer before reconnecting, so the consumer is subscribed again
        # when the replay starts (a broker without persistence forgets subscriptions).
        bus = RecordingBus(
            BusConfig(port=broker.port, client_id="dispatcher/d1", insecure=True, reconnect_min=1.0, window=64), "c1"
        )
        CampaignBus(runtime, bus, stats_interval=60)

        async def place(dial: DialLead) -> None:  # the SIP side, reduced to "busy after a short ring"
            await asyncio.sleep(0.01)
            runtime.submit(ev.CallRinging, call_id=dial.call_id)
            await asyncio.sleep(0.01)
            runtime.submit(ev.CallFailed, call_id=dial.call_id, reason=ev.FailureReason.BUSY)

        runtime.on(DialLead, place)
        consumer = Consumer(broker.port)
        consuming = asyncio.create_task(consumer.run())
        while consumer.connects == 0:
            await asyncio.sleep(0.01)
        async with bus:
            await bus.wait_connected(5)
            for i in range(4):
                runtime.submit(ev.AgentLoggedIn, agent_id=f"a{i}")
                runtime.submit(ev.AgentReady, agent_id=f"a{i}")
            while len(engine.leads.records) < LEADS // 3:  # type: ignore[attr-defined]
                await asyncio.sleep(0.005)
            broker.kill()
            while len(engine.leads.records) < 2 * LEADS // 3:  # type: ignore[attr-defined]
                await asyncio.sleep(0.005)
            backlog = len(bus.outbox)  # the campaign kept going; its events wait on disk
            broker.start()
            while len(engine.leads.records) < LEADS:  # type: ignore[attr-defined]
                await asyncio.sleep(0.01)
            assert await bus.flush(20)
            deadline = asyncio.get_running_loop().time() + 10
            while len(consumer.unique) < len(bus.queued) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
        runtime.close()
        consuming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consuming
        return bus, consumer, backlog

    bus, consumer, backlog = asyncio.run(main())
    assert backlog > 0
    assert bus.connections == 2 and consumer.connects >= 2
    assert bus.replayed > 0  # acknowledged just before the crash: sent again, in case the broker lost them
    ids = [e["id"] for e in consumer.unique]
    missing = sorted(bus.log[m] for m in bus.queued - set(ids))
    assert not missing, f"lost {len(missing)} of {len(bus.queued)}: {missing[:10]}"
    assert set(ids) == bus.queued  # every event, after dedupe exactly once
    assert len(ids) == len(set(ids))
    records = sorted(e["data"]["call_id"] for e in consumer.unique if e["type"] == "call.record")
    assert records == list(range(1, LEADS + 1))
    assert consumer.received >= len(ids)
