"""The campaign on the bus: engine events out, validated commands in, through the asyncio runtime.

:class:`CampaignBus` is a thin adapter between an :class:`~dialer.live.runtime.AsyncRuntime` and an
:class:`~dialer.bus.client.MqttBus`. It watches the runtime with ``observe`` and publishes what happened (call
lifecycle, agent states, pacing decisions, records), publishes retained campaign statistics and abandonment
status on a timer, and turns commands into engine events fed with ``runtime.feed``.

Commands are handled all-or-nothing: a command is decoded and validated, mapped to an event, and only then fed;
anything wrong at any step (bad JSON, unknown type, a field out of range, an event illegal in the engine's current
state, a lead source that cannot take callbacks) produces an error reply on ``reply/<source>`` and leaves the
campaign exactly as it was, because the engine itself rejects illegal events before changing anything. Every
command gets a reply, so a backend can wait for it.

Who sent a command is read from its topic, ``from/<role>/<name>/cmd/…``, which the broker lets only that user
publish to; a ``source`` in the body that says otherwise is refused as forged, and the reply goes to the topic's
sender, never to a topic built from the body. The sender's role decides which commands it may give
(:data:`~dialer.bus.schema.COMMAND_ROLES`): a monitor may only ask for a replay, a worker for nothing.

Preview and manual dialing: the engine's ``PreviewLead``, ``PreviewWithdrawn`` and ``DialRefused`` go out as
``preview.offer``, ``preview.withdrawn`` and ``dial.refused``, for the agents' desktops; ``preview.dial``,
``preview.skip`` and ``manual.dial`` come back as the engine's ``PreviewDial``, ``PreviewSkip`` and ``ManualDial``.
A press is checked against the offer here, before the engine sees it, because the engine ignores a press on an
offer it already settled as late news: the desktop must hear that its press did nothing (``offer_closed``).

Commands are idempotent by (sender, id): a repeat (MQTT redelivery, a backend's retry) is not applied again and
gets the original reply; the same id reused for a different command is refused (``duplicate_id``), never answered
with another command's result. A retained command is refused (``retained``): the broker would hand it to every
dispatcher that ever subscribes, and a campaign.start from last week must not restart anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from dialer.bus.client import MqttBus
from dialer.bus.schema import COMMAND_ROLES, COMMANDS, Message, SchemaError, decode, is_ident, make
from dialer.engine import events as ev
from dialer.engine.actions import (
    Action,
    ConnectCall,
    DialLead,
    DialRefused,
    HangUp,
    PlayAbandonMessage,
    PreviewLead,
    PreviewWithdrawn,
    RecordCall,
)
from dialer.engine.records import CallRecord
from dialer.engine.state import AgentState
from dialer.errors import DialerError, InvalidTransition
from dialer.leads import Lead
from dialer.live.runtime import AsyncRuntime

log = logging.getLogger("dialer.bus")


@runtime_checkable
class CallbackLeads(Protocol):
    """A lead source that takes callbacks scheduled by agents or the backend."""

    def schedule_callback(self, lead_id: str, phone: str, at: float, agent_id: str | None) -> None: ...


@runtime_checkable
class OptOutLeads(Protocol):
    """A lead source that records do-not-call opt-outs (must apply at once and persist)."""

    def opt_out(self, phone: str, lead_id: str | None, reason: str | None) -> None: ...


class ReplyStore(Protocol):
    """Where command answers outlive the process (:class:`~dialer.distributed.state.DispatcherState`)."""

    def reply(self, sender: str, command_id: str) -> tuple[str, dict[str, Any]] | None: ...

    def remember(self, sender: str, command_id: str, digest: str, reply: dict[str, Any]) -> None: ...


class CommandRejected(DialerError):
    """A command that is well formed but cannot be carried out; ``code`` goes into the error reply."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


# Which policy attribute each pacing.target field sets, by policy class name. Kept here, not by reflection over
# the policy, so a command can only touch the targets listed (and documented).
PACING_TARGETS: dict[str, dict[str, str]] = {
    "abandon_rate": {"Predictive": "target", "VicidialAdaptive": "drop_limit"},
    "ratio": {"Power": "ratio"},
    "max_level": {"VicidialAdaptive": "max_level"},
}


def record_data(record: CallRecord) -> dict[str, Any]:
    return {
        "call_id": record.call_id,
        "lead_id": record.lead.lead_id,
        "outcome": record.outcome.value,
        "dialed_at": record.dialed_at,
        "ended_at": record.ended_at,
        "answered_at": record.answered_at,
        "connected_at": record.connected_at,
        "agent_id": record.agent_id,
        "message_at": record.message_at,
        "wait": record.wait,
        "abandoned": record.abandoned,
        "customer_hung_up": record.customer_hung_up,
        "agent_lost": record.agent_lost,
        "bridge_failed": record.bridge_failed,
        "placed": record.placed,
        "skipped": record.skipped,
        "reserved_for": record.reserved_for,
    }


#: What stands in for the half of a ``manual.dial`` the agent did not give: the engine's ``Lead`` needs both an
#: id and a number, and the lead source looks a lead up by its id first, then by its number. ``-`` is no lead id a
#: campaign import makes and no number the normaliser accepts, so it can only ever miss.
MANUAL_UNKNOWN = "-"

#: Why an agent cannot dial by hand now, by state (a ``manual.dial`` refused ``invalid_transition``).
MANUAL_NOT_READY: dict[AgentState, str] = {
    AgentState.LOGGED_OUT: "is not logged in",
    AgentState.PAUSED: "is paused (send agent.ready first)",
    AgentState.ON_CALL: "is on a call or has a lead on screen",
    AgentState.WRAP_UP: "is in wrap-up (send agent.disposition first)",
}

#: Offers remembered after they were settled, so a press that comes too late is told so (``offer_closed``) rather
#: than that it was never offered (``no_offer``).
OFFERS_REMEMBERED = 10_000


class CampaignBus:
    """Publish ``runtime``'s campaign on ``bus`` and take its commands.

    ``abandon_cap`` is the regulator's cap the abandonment status is reported against, and the highest
    abandonment target a ``pacing.target`` command may set (fail closed: a typo cannot raise the cap).
    ``stats_interval`` is how often retained statistics are refreshed (seconds).
    """

    def __init__(
        self,
        runtime: AsyncRuntime,
        bus: MqttBus,
        *,
        abandon_cap: float = 0.03,
        stats_interval: float = 5.0,
        clock: Callable[[], float] | None = None,
        replies: ReplyStore | None = None,
    ) -> None:
        self.runtime = runtime
        self.bus = bus
        self.engine = runtime.engine
        self.abandon_cap = abandon_cap
        self.stats_interval = stats_interval
        self.state = "running" if self.engine.dialing else "paused"
        self._clock = clock or runtime.now
        self._agent_states: dict[str, tuple[AgentState, int | None]] = {}  # published: state, call id
        # (sender, command id) -> (digest of the command, reply fields): what a repeat is answered with.
        self._replies: OrderedDict[tuple[str, str], tuple[str, dict[str, Any]]] = OrderedDict()
        self._kept = replies  # the same answers on disk, for retries that come after a restart
        self._stats_task: asyncio.Task[None] | None = None
        # Preview offers this bus published (call id -> agent), settled or not: tells a late press from a wrong one.
        self._offered: OrderedDict[int, str] = OrderedDict()
        # The manual.dial being applied (lead_id, phone as the agent gave them), for its dial.refused event.
        self._manual: tuple[str | None, str | None] | None = None
        self.commands_ok = 0
        self.commands_failed = 0
        runtime.observe(self._observe)
        bus.subscribe(bus.topics.commands, self._on_command, retain_as_published=True)

    def start(self) -> None:
        """Begin the periodic statistics (the observer and command subscription are live from construction)."""
        if self._stats_task is None:
            self._stats_task = asyncio.create_task(self._stats_loop())

    async def stop(self) -> None:
        if self._stats_task is not None:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stats_task
            self._stats_task = None
        self.publish_stats()

    # -- out ---------------------------------------------------------------------------------------------

    def _observe(self, event: ev.Event, actions: list[Action]) -> None:
        pub = self.bus.publish
        agents: list[str] = []
        if isinstance(event, ev.CallRinging):
            pub("call.ringing", call_id=event.call_id)
        elif isinstance(event, ev.CallAnsweredByPerson):
            pub("call.answered", call_id=event.call_id, by="person", answered_at=event.answered_at)
        elif isinstance(event, ev.CallAnsweredByMachine):
            pub("call.answered", call_id=event.call_id, by="machine", answered_at=None)
        elif isinstance(event, ev.CallFailed):
            pub("call.failed", call_id=event.call_id, reason=event.reason.value)
        elif isinstance(event, ev.CallEnded):
            pub("call.ended", call_id=event.call_id)
        elif isinstance(event, ev.CallBridgeFailed):
            # The engine paused the agent whose phone failed; the event does not name them, so look at every
            # agent we know (rare, and only those whose state changed are published).
            agents.extend(self._agent_states)
        agent_id = getattr(event, "agent_id", None)
        if isinstance(agent_id, str):
            agents.append(agent_id)
        dials = 0
        for action in actions:
            if isinstance(action, DialLead):
                dials += 1
                pub(
                    "call.dialed", call_id=action.call_id, lead_id=action.lead.lead_id, ring_timeout=action.ring_timeout
                )
            elif isinstance(action, ConnectCall):
                pub("call.connected", call_id=action.call_id, agent_id=action.agent_id)
                agents.append(action.agent_id)
            elif isinstance(action, PlayAbandonMessage):
                pub("call.abandoned", call_id=action.call_id)
            elif isinstance(action, HangUp):
                pub("call.hangup", call_id=action.call_id, reason=action.reason)
            elif isinstance(action, RecordCall):
                pub("call.record", **record_data(action.record))
                if action.record.agent_id is not None:
                    agents.append(action.record.agent_id)
                if action.record.reserved_for is not None:  # a reserved dial that reached nobody: agent ready
                    agents.append(action.record.reserved_for)
            elif isinstance(action, PreviewLead):
                self._offer(action)
                agents.append(action.agent_id)
            elif isinstance(action, PreviewWithdrawn):
                pub("preview.withdrawn", call_id=action.call_id, agent_id=action.agent_id, reason=action.reason)
                agents.append(action.agent_id)
            elif isinstance(action, DialRefused):
                self._refused(action)
        for agent in agents:
            self._agent_changed(agent)
        if dials:
            self._pacing(dials)

    def _offer(self, action: PreviewLead) -> None:
        """Publish a lead shown to an agent. ``dial_at`` goes out in epoch seconds whatever the runtime's clock
        (a desktop counts down on its own wall clock), and the lead's fields go with it, scalars only, so the
        desktop can show the agent who they are about to call."""
        lead = action.lead
        self._offered[action.call_id] = action.agent_id
        while len(self._offered) > OFFERS_REMEMBERED:
            self._offered.popitem(last=False)
        dial_at = None if action.dial_at is None else time.time() + (action.dial_at - self.runtime.now())
        extra: dict[str, Any] = {}
        if lead.name:
            extra["name"] = lead.name
        fields = {k: v for k, v in lead.fields.items() if isinstance(k, str) and len(k) <= 128
                  and isinstance(v, str | int | float | bool)}  # fmt: skip
        if fields:
            extra["fields"] = fields
        self.bus.publish(
            "preview.offer",
            agent_id=action.agent_id,
            call_id=action.call_id,
            lead_id=lead.lead_id,
            phone=lead.phone,
            dial_at=dial_at,
            **extra,
        )

    def _refused(self, action: DialRefused) -> None:
        """Publish a manual dial that was not made, naming the lead as the agent named it (not the stand-in for
        the half they left out)."""
        if self._manual is not None:
            lead_id, phone = self._manual
        else:  # a ManualDial fed by the embedding program itself, not by a command
            lead_id, phone = action.lead.lead_id, action.lead.phone
        self.bus.publish("dial.refused", agent_id=action.agent_id, lead_id=lead_id, phone=phone, reason=action.reason)

    def _agent_changed(self, agent_id: str) -> None:
        """Publish the agent's state when it or its call changed: a preview agent who skips a lead goes from one
        offer to the next without leaving ``on_call``, and the desktop must learn the new offer's ``call_id``."""
        state = self.engine.agent_state(agent_id)
        agent = self.engine.agents.get(agent_id)
        call_id = agent.call_id if agent is not None and state is AgentState.ON_CALL else None
        if self._agent_states.get(agent_id, (AgentState.LOGGED_OUT, None)) == (state, call_id):
            return
        if state is AgentState.LOGGED_OUT:
            self._agent_states.pop(agent_id, None)
        else:
            self._agent_states[agent_id] = (state, call_id)
        self.bus.publish("agent.state", agent_id=agent_id, state=state.value, call_id=call_id)

    def _pacing(self, launched: int) -> None:
        snap = self.engine.snapshot()
        policy = self.engine.policy
        estimates: dict[str, Any] = {}
        for name in ("target", "scale", "level", "ratio", "drop_limit"):
            value = getattr(policy, name, None)
            if isinstance(value, int | float) and not isinstance(value, bool):
                estimates[name] = value
        for name in ("answer_rate", "time_to_answer", "handle_time"):
            value = getattr(getattr(policy, name, None), "value", None)
            if isinstance(value, int | float):
                estimates[name] = value
        self.bus.publish(
            "pacing.decision",
            policy=policy.name,
            launched=launched,
            ready=snap.ready,
            ringing=snap.ringing,
            queued=snap.queued,
            connected=snap.connected,
            in_flight=snap.in_flight,
            estimates=estimates,
        )

    def publish_stats(self) -> None:
        """Publish the retained statistics and abandonment status now."""
        engine = self.engine
        stats = engine.stats
        totals = dataclasses.asdict(stats.totals)
        self.bus.publish(
            "campaign.stats",
            retain=True,
            replace=True,
            dialing=engine.dialing,
            state=self.state,
            agents={s.value: n for s, n in engine.agent_counts.items() if s is not AgentState.LOGGED_OUT},
            calls={s.value: n for s, n in engine.call_counts.items()},
            totals=totals,
        )
        now = engine.now
        day = stats.day_of(now)
        counts = stats.day(now)
        day_rate = counts.abandoned / counts.live_answers if counts.live_answers else 0.0
        total_rate = stats.totals.abandoned / stats.totals.live_answers if stats.totals.live_answers else 0.0
        self.bus.publish(
            "campaign.abandonment",
            retain=True,
            replace=True,
            cap=self.abandon_cap,
            day=day,
            day_abandoned=counts.abandoned,
            day_live_answers=counts.live_answers,
            day_rate=day_rate,
            total_abandoned=stats.totals.abandoned,
            total_live_answers=stats.totals.live_answers,
            total_rate=total_rate,
            over_cap=day_rate > self.abandon_cap or total_rate > self.abandon_cap,
        )

    async def _stats_loop(self) -> None:
        while True:
            try:
                self.publish_stats()
            except DialerError:
                log.exception("could not queue campaign statistics")
            await asyncio.sleep(self.stats_interval)

    # -- in ----------------------------------------------------------------------------------------------

    def _on_command(self, topic: str, payload: bytes, properties: Any) -> None:
        topics = self.bus.topics
        sender = topics.sender(topic)
        topic_type = topics.command_type(topic)
        if sender is None or topic_type is None:
            log.warning("dropped a command on %r: not a from/<role>/<name>/cmd/... topic", topic)
            return
        retained = self.bus.delivery_retained
        try:
            message = decode(payload, expect=COMMANDS)
        except SchemaError as exc:
            self._reply_undecodable(sender, payload, topic_type, exc)
            return
        key = (sender, message.id)
        digest = hashlib.sha256(json.dumps([message.type, dict(message.data)], sort_keys=True).encode()).hexdigest()
        cached = self._replies.get(key)
        if cached is None and self._kept is not None:
            cached = self._kept.reply(*key)
        if cached is not None:
            if cached[0] == digest:  # a repeat: never apply twice, answer the same
                self._send_reply(sender, message, cached[1])
            else:
                self._fail(sender, message, "duplicate_id", f"command id {message.id!r} was already used by "
                           f"{sender} for another command; nothing done", remember=False)  # fmt: skip
            return
        try:
            if retained:
                raise CommandRejected("retained", "a retained command is refused: publish commands with retain off")
            if message.source != sender:
                raise CommandRejected("forbidden", f"source {message.source!r} is not the sender {sender!r}")
            if message.type not in COMMAND_ROLES.get(sender.split("/", 1)[0], frozenset()):
                raise CommandRejected("forbidden", f"a {sender.split('/', 1)[0]} may not give {message.type}")
            if topic_type != message.type:
                raise CommandRejected("topic_mismatch", f"{message.type!r} sent on the topic for {topic_type!r}")
            if message.campaign != self.bus.campaign:
                raise CommandRejected("wrong_campaign", f"command for campaign {message.campaign!r}")
            result = self._apply(message, sender)
        except (SchemaError, CommandRejected) as exc:
            code = getattr(exc, "code", "invalid")
            # "unavailable" is not an answer to the command, only to this moment: a retry must be tried again.
            self._fail(sender, message, code, str(exc), digest=digest, remember=code != "unavailable")
        except InvalidTransition as exc:
            self._fail(sender, message, "invalid_transition", str(exc), digest=digest)
        except DialerError as exc:
            self._fail(sender, message, "rejected", str(exc), digest=digest)
        else:
            self.commands_ok += 1
            fields: dict[str, Any] = {"ok": True, "code": None, "error": None}
            if result is not None:
                fields["result"] = result
            self._remember(sender, message, digest, fields)

    def _fail(
        self, sender: str, message: Message, code: str, error: str, *, digest: str = "", remember: bool = True
    ) -> None:
        self.commands_failed += 1
        log.info("command %s from %s refused: %s", message.type, sender, error)
        fields = {"ok": False, "code": code, "error": error}
        if remember:
            self._remember(sender, message, digest, fields)
        else:
            self._send_reply(sender, message, fields)

    def _remember(self, sender: str, message: Message, digest: str, result: dict[str, Any]) -> None:
        self._replies[(sender, message.id)] = (digest, result)
        if self._kept is not None:
            self._kept.remember(sender, message.id, digest, result)
        if len(self._replies) > 100_000:
            self._replies.popitem(last=False)
        self._send_reply(sender, message, result)

    def _send_reply(self, sender: str, message: Message, result: dict[str, Any]) -> None:
        reply = make(
            "reply", self.bus.campaign, self.bus.source, command_id=message.id, command_type=message.type, **result
        )
        self.bus.send(reply, self.bus.topics.reply(sender))

    def _reply_undecodable(self, sender: str, payload: bytes, topic_type: str, exc: SchemaError) -> None:
        """Reply to a command we could not validate: the topic names its sender, so there is always someone."""
        self.commands_failed += 1
        command_id = ""
        command_type = topic_type[:128]
        try:
            doc = json.loads(payload)
            if isinstance(doc, dict):
                if is_ident(doc.get("id")):
                    command_id = doc["id"]
                if isinstance(doc.get("type"), str) and doc["type"] in COMMANDS:
                    command_type = doc["type"]
        except ValueError:
            pass
        log.info("command on %s from %s refused: %s", topic_type, sender, exc)
        reply = make(
            "reply",
            self.bus.campaign,
            self.bus.source,
            command_id=command_id,
            command_type=command_type,
            ok=False,
            code=exc.code,
            error=str(exc)[:1000],
        )
        self.bus.send(reply, self.bus.topics.reply(sender))

    def _apply(self, m: Message, sender: str) -> dict[str, Any] | None:
        d = m.data
        t = self.runtime.now()
        feed = self.runtime.feed
        if m.type == "agent.login":
            feed(ev.AgentLoggedIn(t, d["agent_id"]))
        elif m.type == "agent.ready":
            feed(ev.AgentReady(t, d["agent_id"]))
        elif m.type == "agent.pause":
            feed(ev.AgentPaused(t, d["agent_id"]))
        elif m.type == "agent.logout":
            feed(ev.AgentLoggedOut(t, d["agent_id"]))
        elif m.type == "agent.disposition":
            if self.engine.agent_state(d["agent_id"]) is not AgentState.WRAP_UP:
                raise CommandRejected("invalid_transition", f"agent {d['agent_id']!r} is not in wrap-up")
            feed(ev.WrapUpDone(t, d["agent_id"], pause=bool(d.get("pause", False))))
            self.bus.publish(
                "call.disposition", agent_id=d["agent_id"], call_id=d.get("call_id"), disposition=d["disposition"]
            )
        elif m.type == "campaign.start":
            if not self.engine.dialing:
                feed(ev.DialingResumed(t))
            self.state = "running"
            self.publish_stats()
        elif m.type in ("campaign.pause", "campaign.stop"):
            if self.engine.dialing:
                feed(ev.DialingStopped(t))
            self.state = "paused" if m.type == "campaign.pause" else "stopped"
            self.publish_stats()
        elif m.type == "pacing.target":
            self._retarget(dict(d))
        elif m.type == "lead.callback":
            leads = self.engine.leads
            if not isinstance(leads, CallbackLeads):
                raise CommandRejected("unsupported", "this campaign's lead source does not take callbacks")
            leads.schedule_callback(d["lead_id"], d["phone"], float(d["at"]), d.get("agent_id"))
        elif m.type == "lead.opt_out":
            leads = self.engine.leads
            if not isinstance(leads, OptOutLeads):
                # Fail closed and loud: the sender learns the opt-out was NOT recorded here.
                raise CommandRejected("unsupported", "this campaign's lead source cannot record opt-outs")
            # The one normaliser, at the boundary: an opt-out spelt '(212) 510-4860' must block +12125104860, and
            # one that names no number is refused with the input named, never stored as typed.
            from dialer.compliance.numbers import NumberError, normalize

            try:
                phone = normalize(d["phone"], getattr(leads, "default_region", "US"))
            except NumberError as exc:
                raise CommandRejected("invalid_number", f"opt-out not recorded: {exc}") from None
            leads.opt_out(phone, d.get("lead_id"), d.get("reason"))
        elif m.type == "events.replay":
            return self._replay(sender, int(d["after"]), int(d.get("limit", 10_000)))
        elif m.type in ("preview.dial", "preview.skip"):
            agent_id, call_id = d["agent_id"], int(d["call_id"])
            self._check_offer(agent_id, call_id)
            if m.type == "preview.skip":
                feed(ev.PreviewSkip(t, agent_id, call_id, d.get("reason") or ""))
                return None
            cap = self.engine.config.max_in_flight
            if cap is not None and len(self.engine.calls) + len(self.engine.offers) > cap:
                # The workers that held this offer's slot are gone (capacity lowered since it was shown): the dial
                # would wait for a worker, and the engine close it at its ring timeout as unanswered, a call never
                # placed counted as placed. Refused instead; the lead stays on screen, to press again later.
                raise CommandRejected("dial_refused", "not dialed: trunk full (no worker can take it now)")
            actions = feed(ev.PreviewDial(t, agent_id, call_id))
            if not any(isinstance(a, DialLead) and a.call_id == call_id for a in actions):  # pragma: no cover
                # The engine withdrew the offer instead (dialing stopped by a fault found between events).
                raise CommandRejected("offer_closed", f"call {call_id} was withdrawn, not dialed: dialing stopped")
            return {"call_id": call_id}
        elif m.type == "manual.dial":
            # As pasted: an id with spaces around it is the same lead (the store matches ids exactly), and a
            # blank field is no field.
            typed_id, typed_phone = (str(d.get(k) or "").strip() or None for k in ("lead_id", "phone"))
            return self._manual_dial(d["agent_id"], typed_id, typed_phone)
        else:  # pragma: no cover - COMMANDS and this switch are kept in step by the tests
            raise CommandRejected("unknown_type", f"no handler for {m.type!r}")
        return None

    def _check_offer(self, agent_id: str, call_id: int) -> None:
        """Refuse a press on an offer that is not this agent's to press, before the engine sees it.

        Why here and not in the engine's answer: the engine ignores, as late news, a press on an offer it already
        settled (dialed at the timeout, withdrawn), so feeding it would report success for a dial that this press
        did not cause. ``no_offer``: that call id is not (and was not) offered to this agent, whether it is
        another agent's offer or unknown; ``offer_closed``: it was, and is settled."""
        offer = self.engine.offers.get(call_id)
        if offer is not None and offer.agent_id == agent_id:
            return
        if offer is None and self._offered.get(call_id) == agent_id:
            raise CommandRejected(
                "offer_closed",
                f"the lead offered to agent {agent_id!r} as call {call_id} was already dialed, skipped or withdrawn",
            )
        raise CommandRejected("no_offer", f"no lead is offered to agent {agent_id!r} as call {call_id}")

    def _manual_dial(self, agent_id: str, lead_id: str | None, phone: str | None) -> dict[str, Any]:
        """Feed an agent's own dial; the lead source's ``manual_lead`` gates decide (the engine refuses it when
        there is none). A refusal is this command's error (``dial_refused``, the reason in ``error``), so the
        desktop that asked learns it in the reply as well as from the ``dial.refused`` event."""
        if lead_id is None and phone is None:
            raise CommandRejected("invalid", "manual.dial needs a lead_id or a phone")
        lead = Lead(lead_id or MANUAL_UNKNOWN, phone or MANUAL_UNKNOWN)
        self._manual = (lead_id, phone)
        try:
            actions = self.runtime.feed(ev.ManualDial(self.runtime.now(), agent_id, lead))
        except InvalidTransition:
            # The engine's words name its event ("can't handle ManualDial ... in state paused"); the desktop's
            # user needs what to do instead.
            state = self.engine.agent_state(agent_id)
            why = MANUAL_NOT_READY.get(state, f"is {state.value}")
            raise CommandRejected(
                "invalid_transition",
                f"agent {agent_id!r} {why}: a manual dial needs the agent ready, with no lead on screen",
            ) from None
        finally:
            self._manual = None
        for action in actions:
            if isinstance(action, DialRefused) and action.agent_id == agent_id:
                raise CommandRejected("dial_refused", f"not dialed: {action.reason}")
        agent = self.engine.agents.get(agent_id)
        call_id = agent.call_id if agent is not None else None
        for action in actions:
            if isinstance(action, DialLead) and action.call_id == call_id:
                return {"call_id": call_id, "lead_id": action.lead.lead_id}
        raise CommandRejected("rejected", "the engine neither dialed nor refused the dial")  # pragma: no cover

    def _replay(self, sender: str, after: int, limit: int) -> dict[str, Any]:
        """Send ``sender`` the kept events after ``after`` on its replay topic; the reply says how many, the
        oldest ``seq`` kept, and ``complete``: false when some after ``after`` were already forgotten (see
        ``BusConfig.retention``)."""
        payloads, oldest, complete = self.bus.replay(after, limit)
        topic = self.bus.topics.replay(sender)
        if payloads and not self.bus.send_now(topic, payloads):
            raise CommandRejected("unavailable", "not connected to the broker; ask again")
        return {"count": len(payloads), "oldest": oldest, "complete": complete}

    def _retarget(self, changes: dict[str, float]) -> None:
        if not changes:
            raise CommandRejected("invalid", "pacing.target needs at least one of " + ", ".join(PACING_TARGETS))
        policy = self.engine.policy
        kind = type(policy).__name__
        plan: list[tuple[str, float]] = []
        for field_name, value in changes.items():
            attr = PACING_TARGETS[field_name].get(kind)
            if attr is None:
                raise CommandRejected("unsupported", f"policy {policy.name!r} has no {field_name} target")
            if field_name == "abandon_rate" and not 0 < value <= self.abandon_cap:
                raise CommandRejected("over_cap", f"abandon_rate must be in (0, {self.abandon_cap:g}]")
            plan.append((attr, float(value)))
        for attr, value in plan:  # validated all first: all or nothing
            setattr(policy, attr, value)
