"""Preview and manual dialing live: ``dialer dispatch`` shows leads to agents whose desktops are backends on the bus.

Nothing is stood in: a real mosquitto, ``dialer dispatch`` on a campaign file with its own store, a real
``dialer worker`` placing calls with pjsua2 against a SIPp trunk, and a SIPp agent phone. The test plays the
backend (``backend/crm``): it logs agents in, reads ``preview.offer`` and answers ``preview.dial`` /
``preview.skip`` / ``manual.dial`` as a desktop would. What reached the wire is read from SIPp's own message
log (every INVITE the trunk and the agent phone received), and what the campaign kept from its store. One more
test runs the bridge in process, without SIP, for what needs no wire (an offer's fields, a retried press).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from bus_sip import ROOT, Sipp, SipWorkers, abandon_wav
from mqtt_broker import Broker

from dialer.bus.schema import COMMAND_ROLES, COMMANDS, MESSAGES
from dialer.campaign import ColumnMapping, import_csv
from dialer.store import Store

CAMPAIGN = "c1"  # SipWorkers' campaign
BASE = f"dialer/v1/{CAMPAIGN}"
ENV = {"PYTHONPATH": str(ROOT)}
# Tokyo numbers: the file opens JP all day, so nothing depends on the wall clock's hour. The SIPp trunk answers
# any number that starts with "+" after 0.1 s of ringing and stays until the dialer hangs up; the SIPp agent
# answers the bridge at once, talks 1.5 s and hangs up, which ends the customer's call.
PREVIEW_LEADS = {"P1": "+81312342001", "P2": "+81312342002", "P3": "+81312342003", "P4": "+81312342004"}
MANUAL_LEADS = {"M1": "+81312342101", "M2": "+81312342103"}  # M2 waits: the run is not over after M1
DNC_NUMBER = "+81312342102"  # lead MD: imported yesterday, on the company do-not-call list since
UNKNOWN_NUMBER = "+81312349999"
TIMEOUT = 5.0  # [policy] timeout: the engine dials an offer nobody answered after this


def campaign_file(tmp_path: Path, policy: str, leads: dict[str, str], agent_port: int, extra: str = "") -> Path:
    rows = "".join(f"{lead},{phone}\n" for lead, phone in leads.items())
    (tmp_path / "leads.csv").write_text("lead_id,phone\n" + rows, encoding="utf-8")
    abandon_wav(tmp_path)
    path = tmp_path / "campaign.toml"
    path.write_text(
        f"""
[campaign]
id = "{CAMPAIGN}"
abandon_message = "abandon.wav"
purpose = "survey"  # exempt from the national registry, which this test does not load
policy = "{policy}"
connect_limit = 2.0
ring_timeout = 20
{extra}
[leads]
file = "leads.csv"

[dnc]
registry_required = false
internal = ["dnc.txt"]

[hours.JP]
weekday = "00:00-24:00"
saturday = "00:00-24:00"
sunday = "00:00-24:00"

[trunk]
caller_id = "+12127362000"

[pool]
workers = 1

[agents]
a1 = "sip:a1@127.0.0.1:{agent_port}"
a2 = "sip:a2@127.0.0.1:{agent_port}"
""",
        encoding="utf-8",
    )
    (tmp_path / "dnc.txt").write_text(f"# company do-not-call list\n{DNC_NUMBER}\n", encoding="utf-8")
    return path


@dataclass
class Floor:
    """What runs for one test: broker, SIPp trunk and agent phone, one SIP worker, ``dialer dispatch``."""

    broker: Broker
    tmp_path: Path
    trunk: Sipp
    phone: Sipp
    workers: SipWorkers
    dispatch: subprocess.Popen[bytes] | None = None

    def start_dispatch(self, campaign: Path) -> None:
        import os

        env = {**os.environ, "PYTHONPATH": ENV["PYTHONPATH"] + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.dispatch = subprocess.Popen(
            [sys.executable, "-m", "dialer.cli", "dispatch", str(campaign), "--broker-port", str(self.broker.port),
             "--insecure", "--keep-going", "--quiet"],
            stdout=open(self.tmp_path / "dispatch.out", "wb"),  # noqa: SIM115
            stderr=open(self.tmp_path / "dispatch.err", "wb"),  # noqa: SIM115
            env=env, cwd=self.tmp_path,
        )  # fmt: skip
        self.workers.start("p1")

    def stop_dispatch(self) -> int:
        """SIGTERM (or its own end): it drains, prints the summary and exits; its status."""
        proc = self.dispatch
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise

    def log(self) -> str:
        return (self.tmp_path / "dispatch.err").read_text(errors="replace") + self.workers.log("p1")


def invites(peer: Sipp, trace: Path) -> list[str]:
    """The Request-URI users of every INVITE ``peer`` received, read from SIPp's message log after it stopped."""
    peer.stop()
    if not trace.exists():
        return []
    text = trace.read_text(errors="replace")
    # One per dialog: a retransmitted INVITE (same Call-ID) is the same call. A re-INVITE inside a dialog goes to
    # the peer's Contact, which has no user part, so it does not match.
    calls = re.findall(r"^INVITE sip:([^@\s]+)@.*?^Call-ID:\s*(\S+)", text, flags=re.M | re.S)
    return list({call_id: user for user, call_id in calls}.values())


@pytest.fixture
def floor(broker: Broker, tmp_path: Path) -> Iterator[Floor]:
    trunk = Sipp("customers.xml", tmp_path, "-trace_msg", "-message_file", str(tmp_path / "trunk.msg"))
    phone = Sipp("agent.xml", tmp_path, "-rtp_echo", "-trace_msg", "-message_file", str(tmp_path / "phone.msg"))
    workers = SipWorkers(broker.port, trunk.port, tmp_path, {})  # agent URIs travel with each bridge order
    f = Floor(broker, tmp_path, trunk, phone, workers)
    try:
        yield f
    finally:
        if f.dispatch is not None and f.dispatch.poll() is None:
            f.dispatch.kill()
            f.dispatch.wait(5)
        workers.stop()
        trunk.stop()
        phone.stop()


@dataclass
class Seen:
    """One message the backend received, with the loop time it arrived."""

    type: str
    data: dict[str, Any]
    at: float
    wall: float


@dataclass
class Backend:
    """An agent desktops' server on the bus, ``backend/crm``: commands out, replies and events in."""

    client: aiomqtt.Client
    identity: str = "backend/crm"
    events: list[Seen] = field(default_factory=list)
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        async for m in self.client.messages:
            doc = json.loads(bytes(m.payload))  # type: ignore[arg-type]
            if doc["type"] == "reply":
                self.replies[doc["data"]["command_id"]] = doc["data"]
            else:
                self.events.append(Seen(doc["type"], doc["data"], loop.time(), time.time()))
            self.changed.set()

    async def wait_for(self, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        async def poll() -> Any:
            while True:
                result = check()
                if result:
                    return result
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(poll(), timeout)

    def seen(self, type_: str, **match: Any) -> list[Seen]:
        return [e for e in self.events if e.type == type_ and all(e.data.get(k) == v for k, v in match.items())]

    async def event(self, type_: str, timeout: float = 30.0, **match: Any) -> Seen:
        found: list[Seen] = await self.wait_for(lambda: self.seen(type_, **match), timeout)
        return found[0]

    async def send(self, type_: str, *, source: str | None = None, **data: Any) -> dict[str, Any]:
        """Publish one command on our topic with ``source`` in its body (default: ours too), sent again with the
        same id until its reply comes (the dispatcher may not be subscribed yet); the reply."""
        sender = self.identity
        cid = uuid.uuid4().hex
        body = {"v": 1, "id": cid, "type": type_, "campaign": CAMPAIGN, "source": source or sender, "ts": time.time(),
                "data": data}  # fmt: skip
        topic = f"{BASE}/from/{sender}/cmd/{type_.replace('.', '/')}"
        for _ in range(60):
            await self.client.publish(topic, json.dumps(body), qos=1)
            try:
                reply: dict[str, Any] = await self.wait_for(lambda: self.replies.get(cid), 0.5)
            except TimeoutError:
                continue
            assert reply["command_type"] == type_
            return reply
        raise AssertionError(f"no reply to {type_}")

    async def ok(self, type_: str, **data: Any) -> dict[str, Any]:
        reply = await self.send(type_, **data)
        assert reply["ok"], reply
        return reply

    async def refused(self, code: str, type_: str, **data: Any) -> dict[str, Any]:
        reply = await self.send(type_, **data)
        assert not reply["ok"] and reply["code"] == code, reply
        return reply


async def run_backend(port: int, scenario: Callable[[Backend, aiomqtt.Client], Any], timeout: float = 60.0) -> Any:
    """Connect ``backend/crm`` and ``monitor/m`` (a dashboard, to prove it may not press dial) and run ``scenario``."""
    v5 = aiomqtt.ProtocolVersion.V5
    async with (
        aiomqtt.Client("127.0.0.1", port, identifier="backend/crm", protocol=v5) as client,
        aiomqtt.Client("127.0.0.1", port, identifier="monitor/m", protocol=v5) as monitor,
    ):
        await client.subscribe(f"{BASE}/to/backend/crm/reply", 1)
        await client.subscribe(f"{BASE}/to/monitor/m/reply", 1)  # a lab broker: the test reads both
        await client.subscribe(f"{BASE}/event/#", 1)
        backend = Backend(client)
        reader = asyncio.create_task(backend.read())
        try:
            return await asyncio.wait_for(scenario(backend, monitor), timeout)
        finally:
            reader.cancel()


async def monitor_says(backend: Backend, monitor: aiomqtt.Client, type_: str, **data: Any) -> dict[str, Any]:
    """A command sent by ``monitor/m`` on its own topic; its reply (read by the backend's subscription)."""
    cid = uuid.uuid4().hex
    body = {"v": 1, "id": cid, "type": type_, "campaign": CAMPAIGN, "source": "monitor/m", "ts": 0, "data": data}
    await monitor.publish(f"{BASE}/from/monitor/m/cmd/{type_.replace('.', '/')}", json.dumps(body), qos=1)
    reply: dict[str, Any] = await backend.wait_for(lambda: backend.replies.get(cid), 10)
    return reply


def test_the_preview_messages_are_commands_for_backends_and_dispatchers_only() -> None:
    new = {"preview.dial", "preview.skip", "manual.dial"}
    assert new <= COMMANDS
    assert new <= COMMAND_ROLES["backend"] and new <= COMMAND_ROLES["dispatcher"]
    assert COMMAND_ROLES["monitor"] == frozenset({"events.replay"}) and COMMAND_ROLES["worker"] == frozenset()
    for type_ in ("preview.offer", "preview.withdrawn", "dial.refused"):
        assert MESSAGES[type_][0] == "out"


def test_preview_over_the_bus_dial_skip_timeout_and_refusals(floor: Floor) -> None:
    """Two agents on a preview floor with a 5-s timeout. a1's offer is dialed when the backend presses dial and
    bridged to a1; a2 skips their first lead (never dialed, back in the store) and is offered the next, which
    nobody presses: the engine dials it at the timeout and bridges it to a2. Presses on another agent's offer, on
    a settled offer or an unknown one, from a body that lies about its sender, or from a monitor, are refused
    and dial nothing; an agent who pauses with a lead on screen has it withdrawn."""
    policy = f"\n[policy]\ntimeout = {TIMEOUT}\n"  # the preview policy's parameter, as load_campaign reads it
    path = campaign_file(floor.tmp_path, "preview", PREVIEW_LEADS, floor.phone.port, policy)
    floor.start_dispatch(path)

    async def scenario(b: Backend, monitor: aiomqtt.Client) -> dict[str, Any]:
        await b.ok("agent.login", agent_id="a1")
        await b.ok("agent.ready", agent_id="a1")
        o1 = await b.event("preview.offer", agent_id="a1")  # once the worker is live: it holds a trunk slot
        assert o1.data["phone"] == PREVIEW_LEADS[o1.data["lead_id"]]
        # dial_at is epoch seconds, TIMEOUT after the offer (the dispatcher's clock and ours are this machine's)
        assert abs(o1.data["dial_at"] - (o1.wall + TIMEOUT)) < 1.0, o1
        c1 = o1.data["call_id"]
        await b.ok("agent.login", agent_id="a2")
        await b.ok("agent.ready", agent_id="a2")
        o2 = await b.event("preview.offer", agent_id="a2")
        c2 = o2.data["call_id"]
        assert o2.data["lead_id"] != o1.data["lead_id"]

        # Refused, each changing nothing: another agent's offer, an unknown call id, a forged body, a monitor.
        await b.refused("no_offer", "preview.dial", agent_id="a2", call_id=c1)
        await b.refused("no_offer", "preview.skip", agent_id="a1", call_id=c2)
        await b.refused("no_offer", "preview.dial", agent_id="a1", call_id=c1 + 10**9)
        await b.refused("forbidden", "preview.dial", source="backend/other", agent_id="a1", call_id=c1)
        reply = await monitor_says(b, monitor, "preview.dial", agent_id="a1", call_id=c1)
        assert not reply["ok"] and reply["code"] == "forbidden", reply
        reply = await monitor_says(b, monitor, "manual.dial", agent_id="a1", phone=PREVIEW_LEADS["P4"])
        assert not reply["ok"] and reply["code"] == "forbidden", reply
        assert not b.seen("call.dialed")

        # Within the timeout, a1 presses dial and a2 skips.
        reply = await b.ok("preview.dial", agent_id="a1", call_id=c1)
        assert reply["result"] == {"call_id": c1}
        await b.ok("preview.skip", agent_id="a2", call_id=c2, reason="wrong contact")

        # The skipped lead goes back undialed, its record says so, and a2 is offered the next lead.
        skipped = await b.event("call.record", call_id=c2)
        assert skipped.data["placed"] is False and skipped.data["skipped"] == "wrong contact", skipped
        offers = await b.wait_for(lambda: b.seen("preview.offer", agent_id="a2")[1:], 10)
        o3 = offers[0]
        assert o3.data["lead_id"] not in (o1.data["lead_id"], o2.data["lead_id"]), o3
        await b.refused("offer_closed", "preview.dial", agent_id="a2", call_id=c2)  # stale: already skipped

        # a1's dial went to the worker and, answered, is bridged to a1.
        await b.event("call.connected", call_id=c1, agent_id="a1")
        await b.event("agent.state", agent_id="a1", state="wrap_up")
        await b.ok("agent.disposition", agent_id="a1", call_id=c1, disposition="sale", pause=True)

        # Nobody presses o3: the engine dials it itself at dial_at, and a2 gets the answer.
        c3 = o3.data["call_id"]
        dialed = await b.event("call.dialed", call_id=c3, timeout=TIMEOUT + 10)
        assert dialed.wall >= o3.data["dial_at"] - 0.3 and dialed.at - o3.at >= TIMEOUT - 0.3, (dialed, o3)
        await b.refused("offer_closed", "preview.dial", agent_id="a2", call_id=c3)  # late: the engine dialed it
        await b.event("call.connected", call_id=c3, agent_id="a2")
        await b.event("agent.state", agent_id="a2", state="wrap_up")
        await b.ok("agent.disposition", agent_id="a2", call_id=c3, disposition="callback", pause=True)
        r1 = await b.event("call.record", call_id=c1)
        r3 = await b.event("call.record", call_id=c3)

        # An agent who pauses with a lead on screen: the offer is withdrawn, and a press on it is refused.
        await b.ok("agent.ready", agent_id="a1")
        o4 = (await b.wait_for(lambda: b.seen("preview.offer", agent_id="a1")[1:]))[0]
        await b.ok("agent.pause", agent_id="a1")
        withdrawn = await b.event("preview.withdrawn", call_id=o4.data["call_id"])
        assert withdrawn.data == {"call_id": o4.data["call_id"], "agent_id": "a1", "reason": "agent_paused"}
        await b.refused("offer_closed", "preview.dial", agent_id="a1", call_id=o4.data["call_id"])
        return {"o1": o1.data, "o2": o2.data, "o3": o3.data, "r1": r1.data, "r3": r3.data, "events": b.events}

    try:
        seen = asyncio.run(run_backend(floor.broker.port, scenario, 90))
        assert floor.stop_dispatch() == 0, floor.log()
    finally:
        floor.workers.stop()
    o1, o2, o3, r1, r3 = (seen[k] for k in ("o1", "o2", "o3", "r1", "r3"))
    for record, agent in ((r1, "a1"), (r3, "a2")):
        assert record["outcome"] == "connected" and record["agent_id"] == agent and record["reserved_for"] == agent
        assert record["placed"] is True and record["abandoned"] is False, record
    summary = (floor.tmp_path / "dispatch.out").read_text()
    assert "2 calls: connected 2" in summary and "2 previewed leads not dialed" in summary, summary
    dialed = {e.data["call_id"] for e in seen["events"] if e.type == "call.dialed"}
    assert dialed == {o1["call_id"], o3["call_id"]}  # nothing else was dialed: not the skip, not a refused press

    # On the wire: the trunk got exactly the two dialed leads' INVITEs, the agent phone one bridge per agent.
    trunk = invites(floor.trunk, floor.tmp_path / "trunk.msg")
    assert sorted(trunk) == sorted([o1["phone"], o3["phone"]]), (trunk, floor.log())
    assert o2["phone"] not in trunk
    assert sorted(invites(floor.phone, floor.tmp_path / "phone.msg")) == ["a1", "a2"]

    # The store: one connected attempt per dialed lead; the skipped lead has none and is ready to be offered again.
    with Store(floor.tmp_path / "campaign.sqlite") as store:
        attempts = store.attempts(CAMPAIGN)
        skipped_lead = store.lead(CAMPAIGN, o2["lead_id"])
    assert sorted((a.lead_id, a.outcome) for a in attempts) == sorted(
        [(o1["lead_id"], "connected"), (o3["lead_id"], "connected")]
    )
    assert skipped_lead.status == "ready"


def test_manual_dial_over_the_bus_is_gated_like_a_paced_dial(floor: Floor) -> None:
    """A manual floor: a number on the campaign's do-not-call list, a number the campaign does not hold and a
    lead id it does not know are refused (reply ``dial_refused`` and a ``dial.refused`` event) and nothing of them
    reaches the trunk; the campaign's own lead, named by id, is dialed and bridged to the agent who asked."""
    path = campaign_file(floor.tmp_path, "manual", MANUAL_LEADS, floor.phone.port)
    with Store(floor.tmp_path / "campaign.sqlite") as store:  # yesterday's import, before MD joined the list
        import_csv(io.StringIO(f"lead_id,phone\nMD,{DNC_NUMBER}\n"), store, CAMPAIGN, ColumnMapping(lead_id="lead_id"))
    floor.start_dispatch(path)

    async def scenario(b: Backend, monitor: aiomqtt.Client) -> dict[str, Any]:
        await b.ok("agent.login", agent_id="a1")
        await b.ok("agent.ready", agent_id="a1")
        # Wait for the worker: until it is live the trunk is full, and a dial is refused for that.
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            reply = await b.send("manual.dial", agent_id="a1", lead_id="nope")
            assert not reply["ok"] and reply["code"] == "dial_refused", reply
            if "trunk full" not in reply["error"]:
                break
            assert asyncio.get_running_loop().time() < deadline, "the worker never came"
            await asyncio.sleep(0.2)
        assert "not a lead of this campaign" in reply["error"], reply
        await b.event("dial.refused", agent_id="a1", lead_id="nope", phone=None)

        spelt = "+81 3-1234-2102"  # the DNC lead's number as an agent types it
        reply = await b.refused("dial_refused", "manual.dial", agent_id="a1", phone=spelt)
        refused = await b.event("dial.refused", agent_id="a1", phone=spelt)
        assert refused.data["lead_id"] is None and refused.data["reason"] == "do-not-call"
        await b.refused("dial_refused", "manual.dial", agent_id="a1", lead_id="MD")  # named by its id
        await b.event("dial.refused", agent_id="a1", lead_id="MD")
        await b.refused("dial_refused", "manual.dial", agent_id="a1", phone=UNKNOWN_NUMBER)
        await b.event("dial.refused", agent_id="a1", phone=UNKNOWN_NUMBER)
        await b.refused("invalid", "manual.dial", agent_id="a1")  # neither a lead id nor a number
        await b.refused("invalid_transition", "manual.dial", agent_id="a9", lead_id="M1")  # not logged in
        await b.refused("forbidden", "manual.dial", source="backend/other", agent_id="a1", lead_id="M1")
        assert not b.seen("call.dialed")

        reply = await b.ok("manual.dial", agent_id="a1", lead_id="M1")
        call_id = reply["result"]["call_id"]
        assert reply["result"]["lead_id"] == "M1"
        await b.event("call.connected", call_id=call_id, agent_id="a1")
        await b.event("agent.state", agent_id="a1", state="wrap_up")
        await b.ok("agent.disposition", agent_id="a1", call_id=call_id, disposition="sale", pause=True)
        record = await b.event("call.record", call_id=call_id)
        return {"record": record.data, "events": b.events}

    try:
        seen = asyncio.run(run_backend(floor.broker.port, scenario, 90))
        assert floor.stop_dispatch() == 0, floor.log()
    finally:
        floor.workers.stop()
    record = seen["record"]
    assert record["lead_id"] == "M1" and record["outcome"] == "connected" and record["agent_id"] == "a1", record
    assert record["reserved_for"] == "a1"
    assert [e.data["lead_id"] for e in seen["events"] if e.type == "call.dialed"] == ["M1"]
    trunk = invites(floor.trunk, floor.tmp_path / "trunk.msg")
    assert trunk == [MANUAL_LEADS["M1"]], (trunk, floor.log())  # the DNC and unknown numbers never left
    assert invites(floor.phone, floor.tmp_path / "phone.msg") == ["a1"]
    with Store(floor.tmp_path / "campaign.sqlite") as store:
        attempts = store.attempts(CAMPAIGN)
        listed = store.lead(CAMPAIGN, "MD")
    assert [(a.lead_id, a.outcome) for a in attempts] == [("M1", "connected")]  # no attempt of MD was claimed
    assert listed.attempts == 0, listed


def test_an_offer_without_timeout_a_repeated_press_and_a_source_without_manual_dials(broker: Broker) -> None:
    """In process, no SIP (the engine's dials go nowhere; the test reports their outcome): an offer carries the
    lead's name and fields and ``dial_at`` null when the policy has no timeout; a press sent twice with the same
    id (a retry) dials once and gets the same reply; a dial that reaches nobody makes the agent ready again on
    the bus; and a lead source with no ``manual_lead`` refuses every manual dial, named as the desktop named it."""
    from dialer import Engine, Lead, ListLeads, make_policy
    from dialer.bus import BusConfig, CampaignBus, MqttBus
    from dialer.engine import events as ev
    from dialer.live.runtime import AsyncRuntime

    async def main() -> None:
        lead = Lead("L1", "+15550100001", name="Ann Example", fields={"account": "A-1041"})
        runtime = AsyncRuntime(Engine(make_policy("preview"), ListLeads([lead])))
        bus = MqttBus(BusConfig(port=broker.port, client_id="dispatcher/d1", insecure=True), CAMPAIGN)
        CampaignBus(runtime, bus, stats_interval=60)
        async with bus:
            await bus.wait_connected(5)

            async def scenario(b: Backend, monitor: aiomqtt.Client) -> None:
                await b.ok("agent.login", agent_id="alice")
                await b.ok("agent.ready", agent_id="alice")
                offer = await b.event("preview.offer", agent_id="alice", timeout=5)
                call_id = offer.data["call_id"]
                assert offer.data == {"agent_id": "alice", "call_id": call_id, "lead_id": "L1",
                                      "phone": "+15550100001", "name": "Ann Example",
                                      "fields": {"account": "A-1041"}, "dial_at": None}  # fmt: skip
                await b.event("agent.state", agent_id="alice", state="on_call", call_id=call_id)
                body = {"v": 1, "id": "press-1", "type": "preview.dial", "campaign": CAMPAIGN,
                        "source": b.identity, "ts": 0, "data": {"agent_id": "alice", "call_id": call_id}}  # fmt: skip
                topic = f"{BASE}/from/{b.identity}/cmd/preview/dial"
                await b.client.publish(topic, json.dumps(body), qos=1)
                first = await b.wait_for(lambda: b.replies.get("press-1"), 5)
                assert first["ok"] and first["result"] == {"call_id": call_id}, first
                b.replies.pop("press-1")
                await b.client.publish(topic, json.dumps(body), qos=1)  # the same press again: a retry
                again = await b.wait_for(lambda: b.replies.get("press-1"), 5)
                assert again == first
                assert [e.data["call_id"] for e in b.seen("call.dialed")] == [call_id]  # dialed once
                assert runtime.engine.in_flight == 1

                runtime.submit(ev.CallFailed, call_id=call_id, reason=ev.FailureReason.BUSY)
                await b.event("agent.state", agent_id="alice", state="ready", timeout=5)  # the reserved agent
                record = await b.event("call.record", call_id=call_id, timeout=5)
                assert record.data["reserved_for"] == "alice" and record.data["placed"] is True

                reply = await b.refused("dial_refused", "manual.dial", agent_id="alice", lead_id="L9")
                assert "no manual_lead" in reply["error"], reply
                refused = await b.event("dial.refused", agent_id="alice", timeout=5)
                assert refused.data["lead_id"] == "L9" and refused.data["phone"] is None, refused
                assert runtime.engine.in_flight == 0

            await run_backend(broker.port, scenario, 30)
        runtime.close()

    asyncio.run(main())
