"""Live calls: the engine's actions carried out over SIP, and what the SIP driver reports fed back as events.

:class:`SipRuntime` is the glue between :class:`~dialer.live.runtime.AsyncRuntime` (engine, clock, timers) and
:class:`~dialer.sip.SipDriver` (worker processes). It adds no dialing logic of its own; it only translates, and
it copes with the one thing the engine cannot know: SIP news about a call the engine already closed (an answer
racing our ring timeout, the BYE after a machine hang-up). Such news is dropped, and an answer nobody wants is
hung up, so no call is left open on the trunk.

Agents are SIP endpoints (softphones) named by URI; the engine's ``ConnectCall`` makes the customer's worker call
the agent and join both legs in its conference bridge. When the agent's phone refuses or does not answer, the
worker keeps the customer up and the runtime reports ``CallBridgeFailed``: the engine counts the abandonment,
orders the message (played and hung up like any other) and pauses the agent.

    >>> import asyncio
    >>> from dialer import Engine, ListLeads, make_policy
    >>> from dialer.live.runtime import AsyncRuntime
    >>> from dialer.sip import PoolConfig, TrunkConfig
    >>> async def main():
    ...     runtime = AsyncRuntime(Engine(make_policy("progressive"), ListLeads([])))
    ...     sip = SipRuntime(runtime, PoolConfig(trunk=TrunkConfig(caller_id="+12125550123")), agents={})
    ...     return sip.status()
    >>> asyncio.run(main())["in_flight"]
    0
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

from dialer.engine import events as ev
from dialer.engine.actions import (
    Alert,
    ConnectCall,
    ConnectInbound,
    DialLead,
    HangUp,
    HangUpInbound,
    PlayAbandonMessage,
    RecordCall,
    RecordInbound,
)
from dialer.engine.events import AgentGroup, BlockedReason
from dialer.engine.records import CallRecord, InboundOutcome, InboundRecord
from dialer.engine.state import AgentState, CallState, InboundState
from dialer.errors import ConfigError, InvalidTransition
from dialer.leads import Lead
from dialer.live.runtime import AsyncRuntime
from dialer.sip.config import PoolConfig, clock_offset
from dialer.sip.driver import (
    AgentSessionEvent,
    Answered,
    Bridged,
    BridgeFailed,
    DriverEvent,
    Dtmf,
    Ended,
    Failed,
    InboundEvent,
    MessageStarted,
    NotPlaced,
    Placed,
    Ringing,
    SipDriver,
    VoicemailStarted,
)

log = logging.getLogger("dialer.live.sip")

#: What the campaign does when an answering machine picks up.
MACHINE_ACTIONS = ("hangup", "message")

#: Seconds before the connect limit at which the engine orders the message: the order's trip to the worker, the
#: player's start and the first 20-ms media tick all happen before the person hears it, and measured on the wire
#: they took 10-40 ms; the margin keeps the message's first sound inside the limit with room to spare.
MESSAGE_MARGIN = 0.25
#: Seconds before the connect limit at which a worker plays the message on its own (the engine's order never
#: came: a stalled loop, a lost pipe message): the last line of defence of the 2-second rule.
WORKER_MARGIN = 0.1
#: What a bridge to a ready agent may take after detection decides (the agent leg's setup, the first tick).
BRIDGE_ALLOWANCE = 0.15
#: Seconds the engine's ring timer waits beyond the wire rule the worker applies: it is only a backstop.
RING_SLACK = 5.0

_UNANSWERED = (CallState.DIALING, CallState.RINGING)
_ANSWERED = (CallState.QUEUED, CallState.CONNECTED, CallState.ABANDONING)


def blocked_reason(why: str) -> BlockedReason:
    """The engine's reason for a caller the SIP side refused, from the words the driver or worker gave.

    Why from words: the driver's and workers' messages carry them (``"the dialer is stopping"``, ``"3 caller(s)
    already waiting (inbound.max_waiting)"``, ``"no free slot"``, ``"a Call-ID already in the queue"``, ``"no
    answer from the dialer in time"``) and no code of their own; anything not stopping or the queue limit is
    ``busy``, the 486 the caller heard.
    """
    if "stopping" in why:
        return BlockedReason.STOPPING
    if "max_waiting" in why:
        return BlockedReason.QUEUE_FULL
    return BlockedReason.BUSY


def _callin_sources(agents: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The address each agent may call in from: the host of their URI, when it is an IP address (a name would
    need resolving, and an agent we cannot place is refused rather than trusted)."""
    import ipaddress

    sources = []
    for agent_id, uri in agents.items():
        host = uri.split(":", 1)[1].split("@", 1)[-1].split(";", 1)[0]
        host = host[1 : host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue
        sources.append((agent_id, host))
    return tuple(sources)


class SipRuntime:
    """Run ``runtime``'s engine over SIP.

    ``agents`` maps agent ids to SIP URIs. ``wrap_up``: seconds of after-call work before an agent is offered the
    next call. ``opt_out_digit``: the key that, pressed during the abandonment message, puts the number on the
    do-not-call list through ``on_opt_out(lead)``. ``on_record`` receives every finished call's record.
    ``machine``: what to do when detection says an answering machine took the call: ``hangup``, or ``message``
    to leave the pool's ``voicemail_wav`` once the greeting is over (the record says ``MACHINE`` either way; the
    moment the message started is kept in ``voicemail_started``).

    Inbound (``config.inbound`` set): ``groups`` maps agent ids to ``outbound`` (the default), ``inbound`` or
    ``blended``, given to the engine at login. A caller the inbound workers answered is ``InboundArrived``; the
    engine's ``ConnectInbound`` joins them to the agent as an outbound connect joins its customer; their hang-up
    is ``InboundAbandoned`` while waiting and ``InboundEnded`` after the bridge (either side); a failed join is
    ``InboundBridgeFailed`` (the caller keeps hearing the queue audio). Each ``RecordInbound`` goes to
    ``inbound_records`` and ``on_inbound_record(record, wire)``. A caller refused busy (no free slot, the queue at
    ``max_waiting``, stopping) is ``InboundBlocked``, so the engine's inbound figures count them
    (``inbound_blocked`` reads the engine's count); its record (outcome ``blocked``) goes to
    ``inbound_blocked_records`` and to ``on_inbound_record`` too, so a ledger keeps every caller who rang.
    """

    def __init__(
        self,
        runtime: AsyncRuntime,
        config: PoolConfig,
        *,
        agents: Mapping[str, str],
        wrap_up: float = 0.0,
        opt_out_digit: str = "9",
        on_opt_out: Callable[[Lead], None] | None = None,
        on_record: Callable[[CallRecord], None] | None = None,
        on_evidence: Callable[[CallRecord, Mapping[str, Any]], None] | None = None,
        machine: str = "hangup",
        groups: Mapping[str, str] | None = None,
        on_inbound_record: Callable[[InboundRecord, Mapping[str, Any]], None] | None = None,
    ) -> None:
        if wrap_up < 0:
            raise ConfigError("agents.wrap_up", "must be >= 0")
        if machine not in MACHINE_ACTIONS:
            raise ConfigError("campaign.machine", f"must be one of {', '.join(MACHINE_ACTIONS)}, not {machine!r}")
        if machine == "message" and not config.voicemail_wav:
            raise ConfigError("campaign.machine_message", "is required to leave a message on machines")
        for agent_id, uri in agents.items():
            if not uri.startswith(("sip:", "sips:")):
                raise ConfigError(f"agents.{agent_id}", f"{uri!r} is not a SIP URI")
        self.groups: dict[str, AgentGroup] = {}
        for agent_id, group in (groups or {}).items():
            if agent_id not in agents:
                raise ConfigError(f"agent_groups.{agent_id}", "is not an agent of this campaign")
            try:
                self.groups[agent_id] = AgentGroup(group)
            except ValueError:
                raise ConfigError(
                    f"agent_groups.{agent_id}", f"must be one of outbound, inbound, blended, not {group!r}"
                ) from None
        limit = runtime.engine.config.connect_limit
        margin = min(MESSAGE_MARGIN, limit / 2)  # a campaign with a tiny limit still orders before it
        # Detection counts against the connect limit up to where the clock starts: all of it from the answer or
        # (in the worst case) from the first word; from the end of the greeting, only the silence with no
        # greeting at all (initial_silence) runs on the clock before a verdict.
        greeting_clock = config.connect_clock == "greeting_end"
        key, listening = ("amd.initial_silence", config.amd.initial_silence) if greeting_clock else (
            "amd.budget", config.amd.budget)  # fmt: skip
        if config.amd.enabled and listening + BRIDGE_ALLOWANCE > limit - margin:
            raise ConfigError(
                key,
                f"{listening:g} s of detection leaves no time to reach an agent within the {limit:g}-s connect "
                f"limit counted from the {config.connect_clock.replace('_', ' ')} (at most "
                f"{max(0.0, limit - margin - BRIDGE_ALLOWANCE):.2f} s)",
            )
        self.connect_clock = config.connect_clock
        if config.agent_sessions and not config.callin_agents:
            config = dataclasses.replace(config, callin_agents=_callin_sources(agents))
        if config.connect_deadline is None:
            config = dataclasses.replace(config, connect_deadline=max(0.0, limit - min(WORKER_MARGIN, margin / 2)))
        # The engine orders the message early enough for it to be heard within the limit, and its ring timer
        # only backs up the worker's, which judges ringing from the packets.
        runtime.engine.config = dataclasses.replace(
            runtime.engine.config, connect_limit=max(0.0, limit - margin), ring_slack=RING_SLACK
        )
        self.runtime = runtime
        self.engine = runtime.engine
        self.agents = dict(agents)
        self.wrap_up = wrap_up
        self.machine = machine
        self.opt_out_digit = opt_out_digit
        self._on_opt_out = on_opt_out
        self._on_record = on_record
        self._on_evidence = on_evidence
        self._wire: dict[int, dict[str, Any]] = {}  # what the SIP side saw of each call: Call-ID, final status
        self.alerts: list[tuple[str, str]] = []
        self.sessions = config.agent_sessions
        self.agent_log: list[AgentSessionEvent] = []  # every standing leg up or down, for logs and tests
        self._agents_settled: asyncio.Event | None = None
        self._agents_pending: set[str] = set()
        self.driver = SipDriver(
            config,
            self._driver_event,
            on_capacity=self._capacity,
            on_alert=self._driver_alert,
            on_agent=self._agent_event,
            on_inbound=self._inbound_event,
        )
        self._configured_cap = self.engine.config.max_in_flight
        self._leads: dict[int, Lead] = {}
        self._dialed_at: dict[int, float] = {}
        self._agent_of: dict[int, str] = {}
        self.bridge_failed: dict[int, int] = {}  # call id -> the agent leg's SIP status, for logs and tests
        self.message_started: dict[int, float] = {}
        self._message_ordered: set[int] = set()
        self.voicemail_started: dict[int, float] = {}
        self.opted_out: list[Lead] = []
        self.records: list[CallRecord] = []
        self.bridged: set[int] = set()
        self.detections: list[tuple[int, str, float]] = []
        self._on_inbound_record = on_inbound_record
        self.inbound_records: list[InboundRecord] = []
        self.inbound_blocked_records: list[InboundRecord] = []  # callers refused busy, as the engine recorded them
        self._blocked_lost = 0  # refusals the engine never heard of (the runtime had closed)
        self._blocked_wire: dict[str, Any] | None = None  # what the SIP side saw of the refusal being submitted
        self.inbound_bridged: set[str] = set()  # callers joined to their agent now
        self.inbound_bridge_failed: dict[str, int] = {}  # caller -> the last failed join's status
        self._inbound_wire: dict[str, dict[str, Any]] = {}  # what the SIP side saw of each caller
        self._inbound_agent: dict[str, str] = {}
        self._idle = asyncio.Event()
        runtime.on(DialLead, self._dial)
        runtime.on(ConnectInbound, self._connect_inbound)
        runtime.on(HangUpInbound, self._hangup_inbound)
        runtime.on(RecordInbound, self._record_inbound)
        runtime.on(ConnectCall, self._connect)
        runtime.on(PlayAbandonMessage, self._message)
        runtime.on(Alert, self._alert)
        runtime.on(HangUp, self._hangup)
        runtime.on(RecordCall, self._record)

    @property
    def inbound_blocked(self) -> int:
        """Callers refused busy (no free slot, queue at max_waiting, stopping): the engine's count, read from
        ``engine.stats.inbound.blocked``, so this and the engine's figures cannot disagree; plus any refusal that
        came after the runtime closed, which the engine could no longer hear."""
        return self.engine.stats.inbound.blocked + self._blocked_lost

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def start(self, login_timeout: float = 30.0, *, start_driver: bool = True) -> None:
        """Start the workers, then log every agent in and make them ready (which starts dialing).

        With agent sessions each agent's phone is called first and the agent is logged in when it answers; this
        waits up to ``login_timeout`` for every phone, then goes on with those that answered (a phone answering
        later logs its agent in then; one that refused is logged, and stays out). ``start_driver=False`` when
        the caller started the driver itself (to stop between the workers' start and the first dial).
        """
        if start_driver:
            await self.driver.start()
        if not self.sessions:
            for agent_id in self.agents:
                self._login(agent_id)
                self._submit(ev.AgentReady, agent_id=agent_id)
            return
        self._agents_settled = asyncio.Event()
        for agent_id, uri in self.agents.items():
            if self.driver.login_agent(agent_id, uri):
                self._agents_pending.add(agent_id)
            else:
                log.error("agent %s: no worker has room for a standing leg; size the pool for it", agent_id)
        if not self._agents_pending:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._agents_settled.wait(), login_timeout)
        for agent_id in sorted(self._agents_pending):
            log.warning(
                "agent %s: phone not answered within %.0f s; logged in when it answers", agent_id, login_timeout
            )

    def login(self, agent_id: str) -> bool:
        """Call an agent's phone again (after their leg dropped): logged in when it answers."""
        if agent_id not in self.agents:
            raise ConfigError(f"agents.{agent_id}", "is not an agent of this campaign")
        return self.driver.login_agent(agent_id, self.agents[agent_id])

    def logout(self, agent_id: str) -> None:
        """Hang up an agent's standing leg; the engine logs them out when it is down (mid-call: the call ends)."""
        self.driver.logout_agent(agent_id)

    async def drain(self, timeout: float = 60.0) -> bool:
        """Stop launching calls and wait for those in flight to finish; ``False`` if some were still up."""
        if self.engine.dialing:
            self._submit(ev.DialingStopped)
        self.driver.close_inbound()
        for inbound_id, call in list(self.engine.inbound.items()):
            if call.state is InboundState.QUEUED:  # nobody will take them now: better told than left waiting
                self.driver.hangup_inbound(inbound_id)
        try:
            while self.engine.in_flight or self.driver.active or self.driver.inbound_active:
                self._idle.clear()
                await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Hang up whatever is left (reported like any other outcome) and stop the workers."""
        await self.driver.close()
        self.runtime.close()

    def status(self) -> dict[str, Any]:
        """Figures for a status line."""
        snap = self.engine.call_counts
        return {
            "in_flight": self.engine.in_flight,
            "ringing": snap[CallState.DIALING] + snap[CallState.RINGING],
            "queued": snap[CallState.QUEUED],
            "connected": snap[CallState.CONNECTED],
            "message": snap[CallState.ABANDONING],
            "agents_ready": self.engine.agent_counts[AgentState.READY],
            "capacity": self.driver.capacity,
            "records": len(self.records),
            "abandoned": sum(r.abandoned for r in self.records),
            "inbound_waiting": self.driver.inbound_waiting,
            "inbound_talking": len(self.inbound_bridged),
            "inbound_done": len(self.inbound_records),
            "inbound_blocked": self.inbound_blocked,
        }

    # -- engine actions -----------------------------------------------------------------------------------

    async def _dial(self, action: DialLead) -> None:
        self._leads[action.call_id] = action.lead
        self._dialed_at[action.call_id] = self.runtime.now()
        if not self.driver.running:  # ordered as we stop: the lead was never dialed
            self._submit(ev.CallNotPlaced, call_id=action.call_id, why="SIP driver not running")
            return
        await self.driver.dial(action.call_id, action.lead.phone, action.ring_timeout)

    def _connect(self, action: ConnectCall) -> None:
        self._agent_of[action.call_id] = action.agent_id
        if self.sessions:
            self.driver.connect(action.call_id, action.agent_id)  # a join: no call setup on the person's clock
        else:
            self.driver.bridge(action.call_id, self.agents[action.agent_id])

    def _message(self, action: PlayAbandonMessage) -> None:
        # The opt-out key counts from the moment we order the message: a person who presses it while the
        # worker is still starting the player has asked not to be called, and in doubt we do not call.
        self._message_ordered.add(action.call_id)
        self.driver.play_message(action.call_id)

    def _alert(self, action: Alert) -> None:
        log.error("engine %s: %s (dialing stopped)", action.kind, action.message)
        self.alerts.append((action.kind, action.message))

    def _driver_alert(self, kind: str, message: str) -> None:
        """The SIP side can no longer place calls (a silent trunk): stop dialing rather than burn the list."""
        log.error("%s: %s (dialing stopped)", kind, message)
        self.alerts.append((kind, message))
        if self.engine.dialing:
            self._submit(ev.DialingStopped)

    def _hangup(self, action: HangUp) -> None:
        if action.reason == "machine" and self.machine == "message":
            self.driver.leave_message(action.call_id)  # the worker hangs up after the message
        else:
            self.driver.hangup(action.call_id)

    def _record(self, action: RecordCall) -> None:
        record = action.record
        self.records.append(record)
        self._leads.pop(record.call_id, None)
        self._message_ordered.discard(record.call_id)
        self._dialed_at.pop(record.call_id, None)
        wire = self._wire.pop(record.call_id, {})
        try:
            if self._on_record is not None:
                self._on_record(record)
            if self._on_evidence is not None:
                self._on_evidence(record, wire)
        except Exception as exc:  # a record that cannot be kept: fail closed, no more dials until someone looks
            log.exception("the record of call %d could not be kept", record.call_id)
            self.alerts.append(("record_lost", f"call {record.call_id}: {exc}"))
            if self.engine.dialing:
                asyncio.get_running_loop().call_soon(self._submit, ev.DialingStopped)
        self._idle.set()

    # -- driver events ------------------------------------------------------------------------------------

    def _driver_event(self, event: DriverEvent) -> None:
        cid = event.call_id
        state = self.engine.call_state(cid)
        if isinstance(event, Placed):
            self._wire.setdefault(cid, {})["sip_call_id"] = event.sip_call_id
            if state is CallState.DIALING:
                self._dialed_at[cid] = self.runtime.now()
                self._submit(ev.CallPlaced, call_id=cid)
        elif isinstance(event, NotPlaced):
            if state is CallState.DIALING:
                log.warning("call %d was not placed: %s", cid, event.why)
                self._submit(ev.CallNotPlaced, call_id=cid, why=event.why)
        elif isinstance(event, Ringing):
            if state in _UNANSWERED:
                self._submit(ev.CallRinging, call_id=cid)
        elif isinstance(event, Answered):
            self._wire.setdefault(cid, {})["sip_status"] = 200
            if state not in _UNANSWERED:
                self.driver.hangup(cid)  # answered after we gave up: nobody is waiting for this call
                return
            detected = event.verdict != "none"
            if detected:
                self.detections.append((cid, event.verdict, event.detect_seconds))
            if event.verdict == "machine":
                self._submit(ev.CallAnsweredByMachine, call_id=cid, amd_seconds=event.detect_seconds)
            else:  # person, or unsure: fail closed, a maybe-person is treated as a person
                # The connect clock starts at the 200 OK as the worker saw it, not when we heard of it, or later
                # where the campaign's regime says so and detection heard the moment (never later than heard).
                now = self.runtime.now()
                wire = event.answered_at if event.answered_at is not None else now - event.detect_seconds
                picked_up = min(max(wire, self._dialed_at.get(cid, now)), now)
                offset = clock_offset(self.connect_clock, event.speech_start, event.greeting_end, event.detect_seconds)
                clock = min(picked_up + offset, now)
                self._submit(
                    ev.CallAnsweredByPerson,
                    call_id=cid,
                    answered_at=clock,
                    amd_verdict=event.verdict if detected else None,
                    amd_seconds=event.detect_seconds if detected else None,
                    picked_up_at=picked_up,
                )
        elif isinstance(event, Failed):
            self._wire.setdefault(cid, {})["sip_status"] = event.status
            if state in _UNANSWERED:
                self._submit(ev.CallFailed, call_id=cid, reason=event.outcome.reason)
        elif isinstance(event, Ended):
            self.bridged.discard(cid)
            agent_id = self._agent_of.pop(cid, None)
            if state in _ANSWERED:
                self._submit(ev.CallEnded, call_id=cid)
            elif state in _UNANSWERED:  # lost in a worker crash between answer and our news of it
                self._submit(ev.CallFailed, call_id=cid, reason=ev.FailureReason.NETWORK)
            if agent_id is not None:
                self._after_call(agent_id)
        elif isinstance(event, BridgeFailed):
            # The engine pauses the agent and abandons the call; its PlayAbandonMessage reaches the worker, which
            # kept the customer up for it. The agent is no longer this call's: its end must not wrap them up.
            agent_id = self._agent_of.pop(cid, None)
            self.bridge_failed[cid] = event.status
            log.warning("call %d: agent %s did not answer (status %d); abandoned", cid, agent_id, event.status)
            self._submit(ev.CallBridgeFailed, call_id=cid, status=event.status)
        elif isinstance(event, MessageStarted):
            started = self._heard_at(event.at)
            self.message_started[cid] = started
            if state is CallState.ABANDONING:
                self._submit(ev.MessagePlayed, call_id=cid, started_at=started)
        elif isinstance(event, VoicemailStarted):
            self.voicemail_started[cid] = self._heard_at(event.at)
        elif isinstance(event, Dtmf):
            lead = self._leads.get(cid)
            if event.digit == self.opt_out_digit and lead is not None and cid in self._message_ordered:
                self.opted_out.append(lead)
                if self._on_opt_out is not None:
                    self._on_opt_out(lead)
        elif isinstance(event, Bridged):
            self.bridged.add(cid)
        self._idle.set()

    # -- inbound callers --------------------------------------------------------------------------------

    def _login(self, agent_id: str) -> None:
        self._submit(ev.AgentLoggedIn, agent_id=agent_id, group=self.groups.get(agent_id, AgentGroup.OUTBOUND))

    def _connect_inbound(self, action: ConnectInbound) -> None:
        self._inbound_agent[action.inbound_id] = action.agent_id
        uri = None if self.sessions else self.agents[action.agent_id]
        self.driver.connect_inbound(action.inbound_id, action.agent_id, uri)

    def _hangup_inbound(self, action: HangUpInbound) -> None:
        self.driver.hangup_inbound(action.inbound_id)

    def _record_inbound(self, action: RecordInbound) -> None:
        record = action.record
        if record.outcome is InboundOutcome.BLOCKED:
            # Never a caller of ours: its id may even repeat a queued caller's, whose wire must stay theirs.
            self.inbound_blocked_records.append(record)
            wire = self._blocked_wire or {"sip_call_id": record.inbound_id, "caller": record.caller or ""}
        else:
            self.inbound_records.append(record)
            self._inbound_agent.pop(record.inbound_id, None)
            wire = self._inbound_wire.pop(record.inbound_id, {})
        try:
            if self._on_inbound_record is not None:
                self._on_inbound_record(record, wire)
        except Exception as exc:  # as for an outbound record: fail closed
            log.exception("the record of inbound call %s could not be kept", record.inbound_id)
            self.alerts.append(("record_lost", f"inbound call {record.inbound_id}: {exc}"))
            if self.engine.dialing:
                asyncio.get_running_loop().call_soon(self._submit, ev.DialingStopped)
        self._idle.set()

    def _inbound_event(self, event: InboundEvent) -> None:
        iid = event.inbound_id
        state = self.engine.inbound_state(iid)
        if event.kind == "blocked":
            self._blocked(event)
        elif event.kind == "answered":
            self._inbound_wire[iid] = {"sip_call_id": iid, "caller": event.caller, "answered_wall": event.at}
            if state is not InboundState.ENDED:  # a Call-ID the engine still holds: not a new caller
                self.driver.hangup_inbound(iid)
            else:
                self._submit(ev.InboundArrived, inbound_id=iid)
                if self.engine.inbound_state(iid) is InboundState.ENDED:
                    self.driver.hangup_inbound(iid)  # refused by the engine: nobody would ever take them
        elif event.kind == "bridged":
            self.inbound_bridged.add(iid)
            self._inbound_wire.setdefault(iid, {})["bridged_wall"] = event.at
        elif event.kind == "bridge_failed":
            self.inbound_bridge_failed[iid] = event.status
            agent_id = self._inbound_agent.pop(iid, None)
            log.warning("inbound %s: agent %s could not be joined (status %d); back in the queue", iid, agent_id,
                        event.status)  # fmt: skip
            if state is InboundState.CONNECTED:
                self._submit(ev.InboundBridgeFailed, inbound_id=iid, status=event.status)
        elif event.kind == "ended":
            was_bridged = iid in self.inbound_bridged
            self.inbound_bridged.discard(iid)
            self._inbound_wire.setdefault(iid, {})["ended_by"] = event.by
            agent_id = self._inbound_agent.get(iid)
            if state is InboundState.QUEUED or (state is InboundState.CONNECTED and not was_bridged):
                self._submit(ev.InboundAbandoned, inbound_id=iid)
            elif state is InboundState.CONNECTED:
                self._submit(ev.InboundEnded, inbound_id=iid)
                if agent_id is not None:
                    self._after_call(agent_id)
        self._idle.set()

    def _blocked(self, event: InboundEvent) -> None:
        """Tell the engine of a caller the driver or a worker refused, with the reason its words give."""
        self._blocked_wire = {
            "sip_call_id": event.inbound_id,
            "caller": event.caller,
            "sip_status": event.status,
            "why": event.why,
            "refused_wall": event.at,
        }
        try:
            self.runtime.submit(
                ev.InboundBlocked,
                reason=blocked_reason(event.why),
                inbound_id=event.inbound_id or None,
                caller=event.caller or None,
            )
        except (InvalidTransition, RuntimeError):  # closed: counted here, since the engine cannot hear it
            self._blocked_lost += 1
            log.debug("runtime closed; refusal of inbound caller %s counted outside the engine", event.inbound_id)
        finally:
            self._blocked_wire = None

    def _heard_at(self, at: float | None) -> float:
        """A moment the worker measured, on our clock: never later than now (the clocks of two processes)."""
        now = self.runtime.now()
        return now if at is None else min(at, now)

    def _agent_event(self, event: AgentSessionEvent) -> None:
        """A standing leg is up (the agent logs in, ready) or gone (logged out: no paused ghost left behind)."""
        self.agent_log.append(event)
        agent_id = event.agent_id
        self._agents_pending.discard(agent_id)
        if not self._agents_pending and self._agents_settled is not None:
            self._agents_settled.set()
        state = self.engine.agent_state(agent_id) if agent_id in self.engine.agents else AgentState.LOGGED_OUT
        if event.up:
            log.info("agent %s logged in (standing leg up)", agent_id)
            if state is AgentState.LOGGED_OUT:
                self._login(agent_id)
                self._submit(ev.AgentReady, agent_id=agent_id)
        else:
            log.warning("agent %s logged out: their leg is down (%d %s)", agent_id, event.status, event.text)
            if state is not AgentState.LOGGED_OUT:
                self._submit(ev.AgentLoggedOut, agent_id=agent_id)
            if event.status == 0 and event.text == "worker died" and not self.driver.closing:
                # Our process died, not their phone: call them again once a worker is back (a restart takes
                # about a second); the agent hears a new call instead of staying out until someone notices.
                asyncio.get_running_loop().call_later(2.0, self._relogin, agent_id)
        self._idle.set()

    def _relogin(self, agent_id: str) -> None:
        if self.engine.agent_state(agent_id) is AgentState.LOGGED_OUT and not self.driver.closing:
            try:
                if not self.login(agent_id):
                    log.error("agent %s: no worker has room to call them back after a crash", agent_id)
            except Exception as exc:  # the driver is closing: nothing to do
                log.debug("agent %s not called back: %s", agent_id, exc)

    def _after_call(self, agent_id: str) -> None:
        def done() -> None:
            if self.engine.agent_state(agent_id) is AgentState.WRAP_UP:
                self._submit(ev.WrapUpDone, agent_id=agent_id)

        asyncio.get_running_loop().call_later(self.wrap_up, done)

    def _capacity(self, capacity: int) -> None:
        """Pacing follows the driver's real capacity: a lost worker or a congested trunk lowers the cap."""
        cap = capacity if self._configured_cap is None else min(capacity, self._configured_cap)
        if cap != self.engine.config.max_in_flight:
            self.engine.config = dataclasses.replace(self.engine.config, max_in_flight=cap)
            self._submit(ev.TimeAdvanced)

    def _submit(self, event_type: type[ev.Event], **fields: Any) -> None:
        try:
            self.runtime.submit(event_type, **fields)
        except InvalidTransition as exc:  # news the engine can no longer use; never fatal for a live campaign
            log.debug("dropped %s: %s", event_type.__name__, exc)
        except RuntimeError:
            log.debug("runtime closed; dropped %s", event_type.__name__)
