"""CampaignBus: engine events out and commands in, through AsyncRuntime and a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
from mqtt_broker import Broker

from dialer import Engine, Lead, ListLeads, make_policy
from dialer.bus import BusConfig, CampaignBus, MqttBus, Topics
from dialer.bus.schema import COMMANDS, decode
from dialer.engine import events as ev
from dialer.live.runtime import AsyncRuntime

T = Topics("c1")
DESK = "backend/desk"  # the CRM's identity: its user name, client id and topic level


class Backend:
    """A call-center backend on the bus, written against the documented wire format only (raw aiomqtt)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.events: list[dict[str, Any]] = []
        self.replies: dict[str, dict[str, Any]] = {}
        self.retained: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()

    async def run(self) -> None:
        async for m in self.client.messages:
            doc = json.loads(m.payload)  # type: ignore[arg-type]
            if m.topic.matches(T.reply(DESK)):
                self.replies.setdefault(doc["data"]["command_id"], doc["data"])
                self.replies[doc["data"]["command_id"] + "#n"] = {
                    "n": self.replies.get(doc["data"]["command_id"] + "#n", {"n": 0})["n"] + 1
                }
            elif m.topic.matches(f"{T.base}/state/#"):
                self.retained[doc["type"]] = doc["data"]
            else:
                self.events.append(doc)
            self.changed.set()

    async def send(self, type_: str, data: dict[str, Any], *, id: str | None = None, topic: str | None = None,
                   raw: bytes | None = None) -> dict[str, Any]:  # fmt: skip
        mid = id or uuid.uuid4().hex
        doc = {"v": 1, "id": mid, "type": type_, "campaign": "c1", "source": DESK, "ts": 0.0, "data": data}
        await self.client.publish(topic or T.command(type_, DESK), raw or json.dumps(doc), qos=1)
        return await self.wait(lambda: self.replies.get(mid))

    async def wait(self, check: Any, timeout: float = 5.0) -> Any:
        async def poll() -> Any:
            while True:
                value = check()
                if value:
                    return value
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(poll(), timeout)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


@asynccontextmanager
async def campaign(broker: Broker, leads: list[Lead], policy: str = "progressive") -> AsyncIterator[Any]:
    engine = Engine(make_policy(policy), ListLeads(leads))
    runtime = AsyncRuntime(engine)
    bus = MqttBus(BusConfig(port=broker.port, client_id="dispatcher/d1", insecure=True), "c1")
    cb = CampaignBus(runtime, bus, stats_interval=0.2)
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=DESK, protocol=aiomqtt.ProtocolVersion.V5) as c:
        backend = Backend(c)
        await c.subscribe(T.reply(DESK), 1)
        await c.subscribe(T.events, 1)
        await c.subscribe(f"{T.base}/state/#", 1)
        reader = asyncio.create_task(backend.run())
        async with bus:
            await bus.wait_connected(5)
            cb.start()
            try:
                yield runtime, cb, backend
            finally:
                await cb.stop()
                await bus.flush(5)
                runtime.close()
        reader.cancel()


def test_a_call_from_login_to_disposition_on_the_bus(broker: Broker) -> None:
    async def main() -> None:
        leads = [Lead("L1", "+15550000001"), Lead("L2", "+15550000002")]
        async with campaign(broker, leads) as (runtime, _, backend):
            assert (await backend.send("agent.login", {"agent_id": "alice"}))["ok"]
            assert (await backend.send("agent.ready", {"agent_id": "alice"}))["ok"]
            dialed = await backend.wait(lambda: [e for e in backend.events if e["type"] == "call.dialed"])
            call_id = dialed[0]["data"]["call_id"]
            assert dialed[0]["data"]["lead_id"] == "L1"
            # The SIP driver's reports, as it would submit them.
            runtime.submit(ev.CallRinging, call_id=call_id)
            runtime.submit(ev.CallAnsweredByPerson, call_id=call_id)
            runtime.submit(ev.CallEnded, call_id=call_id)
            await backend.wait(lambda: "call.record" in backend.types())
            reply = await backend.send(
                "agent.disposition", {"agent_id": "alice", "call_id": call_id, "disposition": "sale"}
            )
            assert reply["ok"], reply
            await backend.wait(lambda: "call.disposition" in backend.types())
            await backend.wait(
                lambda: backend.retained.get("campaign.stats", {}).get("totals", {}).get("connects") == 1
            )
            # Published right after the statistics, on its own topic: it may arrive a moment later.
            await backend.wait(lambda: backend.retained.get("campaign.abandonment", {}).get("total_live_answers") == 1)
            await backend.wait(lambda: sum(e["type"] == "call.dialed" for e in backend.events) == 2)
            return_types = backend.types()
            states = [e["data"]["state"] for e in backend.events if e["type"] == "agent.state"]
            record = next(e["data"] for e in backend.events if e["type"] == "call.record")
            abandonment = backend.retained["campaign.abandonment"]
            ids = [e["id"] for e in backend.events]
        want = ["call.dialed", "call.ringing", "call.answered", "call.connected", "call.ended", "call.record"]
        assert [t for t in return_types if t in want][:6] == want
        assert "pacing.decision" in return_types
        assert states[:5] == ["paused", "ready", "on_call", "wrap_up", "ready"]
        assert record["outcome"] == "connected" and record["agent_id"] == "alice" and record["lead_id"] == "L1"
        assert abandonment["total_live_answers"] == 1 and abandonment["over_cap"] is False
        assert len(set(ids)) == len(ids)
        for e in backend.events:
            decode(json.dumps(e))  # everything we publish passes our own schema

    asyncio.run(main())


def test_a_failed_bridge_on_the_bus_is_an_abandonment_and_the_agent_shows_paused_at_once(broker: Broker) -> None:
    async def main() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with campaign(broker, [Lead("L1", "+15550000001")]) as (runtime, _, backend):
            assert (await backend.send("agent.login", {"agent_id": "alice"}))["ok"]
            assert (await backend.send("agent.ready", {"agent_id": "alice"}))["ok"]
            dialed = await backend.wait(lambda: [e for e in backend.events if e["type"] == "call.dialed"])
            call_id = dialed[0]["data"]["call_id"]
            runtime.submit(ev.CallAnsweredByPerson, call_id=call_id)
            runtime.submit(ev.CallBridgeFailed, call_id=call_id, status=486)  # the agent's phone was busy

            def paused_after_the_call() -> bool:
                states = [e["data"]["state"] for e in backend.events if e["type"] == "agent.state"]
                return "on_call" in states and "paused" in states[states.index("on_call") :]

            await backend.wait(paused_after_the_call)  # published with the failure, not only with the record
            assert "call.record" not in backend.types()
            runtime.submit(ev.CallEnded, call_id=call_id)  # the message has played
            await backend.wait(lambda: "call.record" in backend.types())
            await backend.wait(lambda: backend.retained.get("campaign.abandonment", {}).get("total_abandoned") == 1)
            return list(backend.events), backend.retained["campaign.stats"]["totals"]

    events, totals = asyncio.run(main())
    types = [e["type"] for e in events]
    assert types.index("call.connected") < types.index("call.abandoned") < types.index("call.record")
    record = next(e["data"] for e in events if e["type"] == "call.record")
    assert record["outcome"] == "abandoned" and record["abandoned"] is True and record["bridge_failed"] is True
    assert record["agent_id"] == "alice" and record["connected_at"] is None
    assert totals["bridge_failed"] == 1 and totals["abandoned"] == 1 and totals["connects"] == 0
    for e in events:
        decode(json.dumps(e))


def _engine_state(runtime: AsyncRuntime) -> tuple[Any, ...]:
    e = runtime.engine
    return (
        dict(e.agent_counts),
        dict(e.call_counts),
        e.dialing,
        e.stats.totals,
        sorted(e.agents),
        e.policy.__dict__.copy(),
    )


def test_bad_commands_get_an_error_reply_and_change_nothing(broker: Broker) -> None:
    async def main() -> None:
        async with campaign(broker, [], policy="predictive") as (runtime, cb, backend):
            assert (await backend.send("agent.login", {"agent_id": "bob"}))["ok"]
            before = _engine_state(runtime)
            cases = [
                ("agent.ready", {"agent_id": "nobody"}, {}, "invalid_transition"),
                ("agent.login", {"agent_id": "bob"}, {}, "invalid_transition"),  # already logged in
                ("agent.login", {"agent_id": "a/b"}, {}, "invalid"),
                ("agent.login", {"agent": "x"}, {}, "invalid"),
                ("agent.disposition", {"agent_id": "bob", "disposition": "sale"}, {}, "invalid_transition"),
                ("agent.fly", {}, {"topic": T.command("agent.login", DESK)}, "unknown_type"),
                ("call.ended", {"call_id": 1}, {"topic": f"{T.base}/from/{DESK}/cmd/call/ended"}, "unknown_type"),
                ("agent.pause", {"agent_id": "bob"}, {"topic": T.command("agent.ready", DESK)}, "topic_mismatch"),
                ("pacing.target", {"abandon_rate": 0.2}, {}, "over_cap"),
                ("pacing.target", {"ratio": 2.0}, {}, "unsupported"),  # predictive has no ratio
                ("pacing.target", {}, {}, "invalid"),
                ("lead.opt_out", {"phone": "+15550000009"}, {}, "unsupported"),  # fails closed, sender told
                ("lead.callback", {"lead_id": "L", "phone": "+1555", "at": 5.0}, {}, "unsupported"),
            ]
            for type_, data, kw, code in cases:
                reply = await backend.send(type_, data, **kw)
                assert reply["ok"] is False and reply["code"] == code, (type_, data, reply)
                assert reply["error"]
            mid = uuid.uuid4().hex
            bad_version = json.dumps({"v": 9, "id": mid, "type": "agent.logout", "campaign": "c1", "source": DESK,
                                      "ts": 0, "data": {"agent_id": "bob"}}).encode()  # fmt: skip
            reply = await backend.send("agent.logout", {}, id=mid, raw=bad_version)
            assert reply["code"] == "version"
            # Not JSON: the topic still names the sender, so it gets a bad_json reply (with no id to quote).
            await backend.client.publish(T.command("agent.logout", DESK), b"\xff not json", qos=1)
            unreadable = await backend.wait(lambda: backend.replies.get(""))
            assert unreadable["code"] == "bad_json" and unreadable["ok"] is False
            assert _engine_state(runtime) == before
            assert (await backend.send("pacing.target", {"abandon_rate": 0.02}))["ok"]
            assert runtime.engine.policy.target == 0.02  # type: ignore[attr-defined]
            assert cb.commands_failed == len(cases) + 2

    asyncio.run(main())


def test_a_redelivered_command_is_applied_once_and_answered_twice(broker: Broker) -> None:
    async def main() -> None:
        async with campaign(broker, []) as (runtime, cb, backend):
            mid = uuid.uuid4().hex
            assert (await backend.send("agent.login", {"agent_id": "carol"}, id=mid))["ok"]
            again = await backend.send("agent.login", {"agent_id": "carol"}, id=mid)
            assert again["ok"]  # not "already logged in": it is the same command
            await backend.wait(lambda: backend.replies.get(mid + "#n", {}).get("n") == 2)
            assert cb.commands_ok == 1
            assert (await backend.send("campaign.stop", {}))["ok"]
            assert not runtime.engine.dialing
            await backend.wait(lambda: backend.retained.get("campaign.stats", {}).get("state") == "stopped")
            assert (await backend.send("campaign.start", {}))["ok"]
            assert runtime.engine.dialing

    asyncio.run(main())


def test_every_command_type_has_a_handler() -> None:
    import inspect

    from dialer.bus import bridge

    source = inspect.getsource(bridge.CampaignBus._apply)
    for type_ in COMMANDS:
        assert f'"{type_}"' in source, type_
