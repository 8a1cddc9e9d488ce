"""The engine: agents, calls in flight, pacing and abandonment accounting, as a pure state machine.

Feed it events with :meth:`Engine.handle`; it returns the actions to carry out. It never reads a clock, opens a
socket or draws a random number, so the SimPy simulator and the live asyncio runtime drive the very same logic,
and every test can replay an exact sequence of events.

Timers (the connect limit of a waiting person, the ring timeout, a policy's next decision) are the engine's only
notion of the future: :meth:`Engine.next_timer` says when the runtime should next send ``TimeAdvanced``. Timers
that are due fire before the event that carries a later time is applied, so a late runtime still gets the
abandonment it owed.

Inbound calls and agent groups. A caller who rings in (:class:`~dialer.engine.events.InboundArrived`) waits in
the inbound queue, longest-waiting first, until an agent who takes inbound calls is free; the engine then says
:class:`~dialer.engine.actions.ConnectInbound`. Each agent belongs to one group, given at login: ``outbound``
(the default: every runtime that knows nothing of inbound is unchanged), ``inbound`` or ``blended``. A person
an outbound dial reached goes to an outbound or blended agent; an inbound caller to an inbound or blended one;
specialists first, so the blended agents, who can take either, stay free the longest. Within a kind, the
longest-idle agent.

Who goes first when a freed blended agent could take either a waiting outbound person or a waiting inbound
caller: the outbound person (``EngineConfig.inbound_first`` reverses it). They answered a call *we* placed and
have at most ``connect_limit`` (2 s) left; passing them over abandons them for certain, a regulatory count, the
recorded message and a lead lost, while the inbound caller, who has minutes of patience, waits one more agent's
release. The agent is spent for one call either way. What protects the inbound service level is the pacing: a
blended policy keeps agents back from outbound dialing for the inbound forecast and dials nothing while an
inbound caller waits, so such collisions come only from calls already in flight. Agents busy on an inbound call
are invisible to the pacing's snapshot (``ready``, ``on_call`` and the busy histograms count only agents who
take outbound calls, on outbound calls or free), so an outbound policy's forecasts are not bent by inbound talk.
A caller the runtime turned away before queueing (busy, queue full, stopping, balked) is
:class:`~dialer.engine.events.InboundBlocked`: counted in ``stats.inbound.blocked`` and recorded (outcome
``blocked``), and nothing else; so the inbound figures see every caller who rang.

Preview and manual dialing (the ``preview`` and ``manual`` policies, :mod:`dialer.pacing.preview`). The engine
never dials a lead without an agent reserved for it. In preview mode it shows each ready agent a lead
(:class:`~dialer.engine.actions.PreviewLead`; the agent is ``previewing``, the lead an *offer* that holds a trunk
slot but is no call yet) and dials it when the agent presses dial (:class:`~dialer.engine.events.PreviewDial`) or
when the policy's ``timeout`` runs out; a skip (:class:`~dialer.engine.events.PreviewSkip`) sends the lead back
to its source undialed. A dialed call carries its agent (``reserved``): a person who answers is connected to that
agent at once, with no connect-limit race, and a dial that reaches nobody leaves the agent ready again. A manual
dial (:class:`~dialer.engine.events.ManualDial`, any mode) is the same with a lead the agent chose, gated by the
lead source's ``manual_lead`` hook (no hook: refused). The moves are ``AGENT_PREVIEW_TRANSITIONS`` and
``OFFER_TRANSITIONS`` in :mod:`dialer.engine.state`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from dialer.engine import events as ev
from dialer.engine.actions import (
    Action,
    Alert,
    ConnectCall,
    ConnectInbound,
    DialLead,
    DialRefused,
    HangUp,
    HangUpInbound,
    PlayAbandonMessage,
    PreviewLead,
    PreviewWithdrawn,
    RecordCall,
    RecordInbound,
)
from dialer.engine.events import AgentGroup, InvalidEvent, is_integer, is_number
from dialer.engine.records import CallRecord, InboundOutcome, InboundRecord, Outcome
from dialer.engine.snapshot import BUSY_BIN, RING_BIN, Snapshot
from dialer.engine.state import (
    AgentState,
    AnyAgentState,
    CallState,
    InboundState,
    Key,
    PreviewState,
    PreviewTrigger,
    Trigger,
    agent_next,
    call_next,
    inbound_next,
    offer_next,
)
from dialer.engine.stats import EngineStats
from dialer.errors import ConfigError, InvalidTransition
from dialer.leads import Lead, LeadSource
from dialer.pacing.base import PacingPolicy
from dialer.pacing.preview import Preview

_FAILURE_OUTCOME = {
    ev.FailureReason.BUSY: Outcome.BUSY,
    ev.FailureReason.NO_ANSWER: Outcome.NO_ANSWER,
    ev.FailureReason.REJECTED: Outcome.REJECTED,
    ev.FailureReason.INVALID_NUMBER: Outcome.INVALID_NUMBER,
    ev.FailureReason.NETWORK: Outcome.NETWORK,
}

MIN_RING_TIMEOUT = 15.0  # regulators: ring at least 15 s before giving up
# How many calls the engine hung up itself are remembered, so the network's late news about them is stale, not an
# error. The runtime learns of our HangUp only after it may already have queued an answer or a BYE.
HUNG_UP_MEMORY = 4096


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Campaign-level settings of the core.

    ``connect_limit``: seconds a person may wait for an agent before the call is abandoned (2 s in the US and
    UK; 0 abandons at once). ``ring_timeout``: give up ringing after this long (never under 15 s), ``None`` to
    leave it to the network. ``max_in_flight``: trunk capacity, the most calls ringing or answered at once.
    ``day_offset``: seconds to add to the clock to reach the campaign's local midnight (calendar-day windows).
    ``recent_window``: seconds of history in ``stats.recent``. ``lead_retry``: when pacing wants calls but the
    lead source has nothing dialable (outside calling hours, retries not yet due), ask it again after this long
    even if nothing else happens, so a campaign that starts before its window opens still starts.
    ``ring_slack``: seconds the engine's ring timer waits past the regulators' moment (``ring_timeout`` after
    :class:`~dialer.engine.events.CallPlaced`, and never under 15 s after the first ring). 0 in simulation, where
    the engine's timer is the hang-up; a live runtime whose SIP side gives up ringing on the wire sets a few
    seconds, so the engine's timer is only a backstop and can never cancel a call the wire rule still lets ring.
    ``first_call_id``: the first call's id. A dispatcher that restarts while its old calls may still be up starts
    past every id it used before (see :func:`dialer.distributed.dispatcher.fresh_call_ids`), so no report about
    an old call can be taken for a new one.
    ``service_level_seconds``: the T of the inbound service level (share of callers answered within T s).
    ``inbound_first``: a freed blended agent takes a waiting inbound caller before a waiting outbound person
    (default False: the outbound person first, since they are abandoned within ``connect_limit``; see the module
    docstring).

    Every field is checked here, types included (a number, never a bool or a string; an integer where a count is
    meant, so ``max_in_flight=1.5`` is refused now rather than crashing the pacing later): a :class:`ConfigError`
    names the field.
    """

    connect_limit: float = 2.0
    ring_timeout: float | None = None
    max_in_flight: int | None = None
    day_offset: float = 0.0
    recent_window: float = 3600.0
    lead_retry: float = 15.0
    ring_slack: float = 0.0
    first_call_id: int = 1
    service_level_seconds: float = 20.0
    inbound_first: bool = False

    def __post_init__(self) -> None:
        # Types first, so that a string or a bool is named as such instead of failing a comparison later.
        keys = ("connect_limit", "ring_timeout", "day_offset", "recent_window", "lead_retry", "ring_slack")
        for key in (*keys, "service_level_seconds"):
            value = getattr(self, key)
            if (value is not None or key != "ring_timeout") and not is_number(value):
                raise ConfigError(key, f"must be a number, got {value!r}")
        for key in ("max_in_flight", "first_call_id"):
            value = getattr(self, key)
            if (value is not None or key != "max_in_flight") and not is_integer(value):
                # A count: 1.5 calls in flight cannot be carried, and would crash the pacing loop much later.
                raise ConfigError(key, f"must be an integer, got {value!r}")
            if value is not None and type(value) is not int:
                object.__setattr__(self, key, int(value))  # numpy's integers: stored as plain ints
        # Written so that NaN fails every check: a NaN connect limit would silently never abandon anybody.
        if not 0 <= self.connect_limit < math.inf:
            raise ConfigError("connect_limit", f"must be a finite number >= 0, got {self.connect_limit!r}")
        if self.ring_timeout is not None and not MIN_RING_TIMEOUT <= self.ring_timeout < math.inf:
            raise ConfigError("ring_timeout", f"must be at least {MIN_RING_TIMEOUT:g} s (regulators' minimum)")
        if self.max_in_flight is not None and not self.max_in_flight >= 0:
            raise ConfigError("max_in_flight", "must be >= 0")
        if not 1 <= self.first_call_id < 2**53:  # 2**53: call ids travel as JSON numbers
            raise ConfigError("first_call_id", "must be 1 to 2**53 - 1")
        if not 0 < self.recent_window < math.inf:
            raise ConfigError("recent_window", "must be a finite number > 0")
        if not 0 < self.lead_retry < math.inf:
            raise ConfigError("lead_retry", "must be a finite number > 0")
        if not 0 <= self.ring_slack < math.inf:
            raise ConfigError("ring_slack", "must be a finite number >= 0")
        if not math.isfinite(self.day_offset):
            raise ConfigError("day_offset", "must be finite")
        if not 0 <= self.service_level_seconds < math.inf:
            raise ConfigError("service_level_seconds", "must be a finite number >= 0")
        if type(self.inbound_first) is not bool:
            raise ConfigError("inbound_first", f"must be a bool, got {self.inbound_first!r}")


_RINGING_STATES = (CallState.DIALING, CallState.RINGING)
_BUSY_STATES = (AgentState.ON_CALL, AgentState.WRAP_UP)


def _bin_add(bins: dict[int, int], key: int) -> None:
    bins[key] = bins.get(key, 0) + 1


def _bin_remove(bins: dict[int, int], key: int) -> None:
    n = bins[key] - 1
    if n:
        bins[key] = n
    else:
        del bins[key]


class _Agent:
    __slots__ = ("after_inbound", "agent_id", "call_id", "group", "inbound_id", "pooled", "since", "state")

    def __init__(self, agent_id: str, t: float, group: AgentGroup = AgentGroup.OUTBOUND) -> None:
        self.agent_id = agent_id
        self.state: AnyAgentState = AgentState.PAUSED
        self.since = t
        self.call_id: int | None = None
        self.group = group
        self.inbound_id: str | None = None  # the inbound call they are on
        self.after_inbound = False  # their wrap-up follows an inbound call
        # Counted in the pacing's view (``pool_counts``, busy bins): takes outbound calls and is not on an inbound.
        self.pooled = group.takes_outbound


class _Inbound:
    __slots__ = ("agent_id", "answered_at", "arrived_at", "bridge_failures", "inbound_id", "seq", "state", "wait")

    def __init__(self, inbound_id: str, t: float, seq: int) -> None:
        self.inbound_id = inbound_id
        self.arrived_at = t
        self.seq = seq  # arrival order, to put a caller whose bridge failed back in their place
        self.state = InboundState.QUEUED
        self.agent_id: str | None = None
        self.answered_at: float | None = None
        self.wait = 0.0
        self.bridge_failures = 0


class _Offer:
    """A lead shown to an agent (preview mode), not dialed yet: no call on the wire, a trunk slot held."""

    __slots__ = ("agent_id", "call_id", "deadline", "lead", "offered_at")

    def __init__(self, call_id: int, lead: Lead, agent_id: str, t: float, deadline: float | None) -> None:
        self.call_id = call_id
        self.lead = lead
        self.agent_id = agent_id
        self.offered_at = t
        self.deadline = deadline  # when the engine dials it itself (``None``: it waits for the agent)


class _Call:
    __slots__ = (
        "agent_id",
        "amd_seconds",
        "amd_verdict",
        "answered_at",
        "bridge_failed",
        "call_id",
        "connected_at",
        "deadline",
        "dialed_at",
        "dialed_for",
        "lead",
        "message_at",
        "message_played",
        "offered_at",
        "picked_up_at",
        "reserved_for",
        "ring_deadline",
        "ringing_at",
        "since",
        "state",
        "wait",
    )

    def __init__(self, call_id: int, lead: Lead, t: float) -> None:
        self.call_id = call_id
        self.lead = lead
        self.state = CallState.DIALING
        self.since = t
        self.dialed_at = t
        self.answered_at: float | None = None
        self.connected_at: float | None = None
        self.message_at: float | None = None
        self.agent_id: str | None = None
        self.deadline: float | None = None
        self.wait: float | None = None
        self.bridge_failed = False
        self.ringing_at: float | None = None
        self.ring_deadline: float | None = None  # the live ring timer; older ones in the heap are stale
        self.message_played: bool | None = None
        self.amd_verdict: str | None = None
        self.amd_seconds: float | None = None
        self.picked_up_at: float | None = None
        self.reserved_for: str | None = None  # the agent waiting on this dial (preview, manual), until it is settled
        self.dialed_for: str | None = None  # the same, kept for the record
        self.offered_at: float | None = None


_AGENT_EVENTS = (ev.AgentReady, ev.AgentPaused, ev.AgentLoggedOut, ev.WrapUpDone)
_CALL_EVENTS = (
    ev.CallRinging,
    ev.CallAnsweredByPerson,
    ev.CallAnsweredByMachine,
    ev.CallFailed,
    ev.CallEnded,
    ev.CallBridgeFailed,
    ev.CallPlaced,
    ev.CallNotPlaced,
    ev.MessagePlayed,
)
_INBOUND_EVENTS = (ev.InboundAbandoned, ev.InboundEnded, ev.InboundBridgeFailed)
_OFFER_EVENTS = (ev.PreviewDial, ev.PreviewSkip)


def _state_problem(
    name: str, noun: str, key: object, registry: Mapping[Any, Any], next_state: Callable[[Any, Any], Any], kind: type
) -> str | None:
    """Why an event naming ``key`` cannot be applied now: nothing of that name in ``registry`` (agents, calls,
    inbound callers), or its state's transition table has no move for ``kind``; ``None`` when it can. One rule for
    each thing an event can name, so they are refused in the same words."""
    item = registry.get(key)
    if item is None:
        return f"unknown {noun} {key!r} ({name})"
    if next_state(item.state, kind) is None:
        return f"can't handle {name} for {noun} {key!r} in state {item.state.value}"
    return None


class Engine:
    """One campaign's dialing core.

    >>> from dialer import Engine, ListLeads, Lead, make_policy
    >>> from dialer.engine import events as ev
    >>> engine = Engine(make_policy("progressive"), ListLeads([Lead("1", "+15550000001")]))
    >>> engine.handle(ev.AgentLoggedIn(0.0, "alice"))
    []
    >>> [type(a).__name__ for a in engine.handle(ev.AgentReady(1.0, "alice"))]
    ['DialLead']
    """

    def __init__(
        self,
        policy: PacingPolicy,
        leads: LeadSource,
        config: EngineConfig | None = None,
        *,
        start: float = 0.0,
    ) -> None:
        self.policy = policy
        self.leads = leads
        self.config = config or EngineConfig()
        if not is_number(start) or not -math.inf < start < math.inf:
            raise ConfigError("start", f"must be a finite number of seconds, got {start!r}")
        self.now = start
        self.stats = EngineStats(
            recent_window=self.config.recent_window,
            day_offset=self.config.day_offset,
            service_level_seconds=self.config.service_level_seconds,
        )
        self.agents: dict[str, _Agent] = {}
        self.calls: dict[int, _Call] = {}
        # Preview states get their keys when first used (``_preview_keys``): a floor that never previews keeps exactly
        # the dictionaries (and reports) it always had.
        self.agent_counts: dict[AnyAgentState, int] = {s: 0 for s in AgentState}
        self.call_counts: dict[CallState, int] = {s: 0 for s in CallState}
        # Agents who take outbound calls and are not on an inbound one: what the pacing sees (= agent_counts on a
        # floor of outbound agents only). And every group's agents by state, for reports and blended pacing.
        self.pool_counts: dict[AnyAgentState, int] = {s: 0 for s in AgentState}
        self.group_counts: dict[AgentGroup, dict[AnyAgentState, int]] = {
            g: {s: 0 for s in AgentState} for g in AgentGroup
        }
        self.mixed_floor = False  # an inbound or blended agent has logged in (pool_counts may differ from agent_counts)
        self.inbound: dict[str, _Inbound] = {}  # inbound calls in the engine, by id
        self.inbound_counts: dict[InboundState, int] = {s: 0 for s in InboundState}
        self._inbound_queue: dict[str, None] = {}  # insertion order = longest waiting first
        self._inbound_seq = 0
        self._inbound_dropped: dict[str, None] = {}  # inbound calls the engine ended itself (agent lost)
        # Entry times binned as entities move (O(1) each), so a policy reads the floor's ages in O(bins), not by
        # walking every call and agent: dial times of calls not yet answered; state-entry times of busy agents.
        self.ring_bins: dict[int, int] = {}
        self.busy_bins: dict[AgentState, dict[int, int]] = {s: {} for s in _BUSY_STATES}
        self.dialing = True
        self.stale_events = 0
        self._starved_until: float | None = None
        self.faults: list[tuple[float, str]] = []  # (time, what broke): each stopped dialing
        # Alerts raised where no action list exists (``next_timer`` is a query): handed out by the next ``handle``.
        self._deferred: list[Action] = []
        self.unreported: list[CallRecord] = []  # records the lead source failed to take; kept, never dropped
        self._ready: dict[str, None] = {}  # insertion order = longest idle first
        self._ready_by: dict[AgentGroup, dict[str, None]] = {g: {} for g in AgentGroup}  # the same, per group
        self._queued: dict[int, None] = {}  # insertion order = longest waiting first
        self._timers: list[tuple[float, int, Trigger | PreviewTrigger, int]] = []
        self._seq = 0
        self._next_call_id = self.config.first_call_id
        self._hung_up: dict[int, None] = {}  # calls we hung up ourselves, oldest first
        # Preview dialing: leads shown to agents and not yet dialed, by their future call id; and offers the engine
        # settled itself (dialed at the timeout, withdrawn), so an agent's press that crossed it is stale news.
        self.offers: dict[int, _Offer] = {}
        self._offers_closed: dict[int, None] = {}
        self._preview_used = False
        # Records of leads skipped during this ``handle``: handed to the lead source after the pacing has drawn the
        # next leads, so the agent who skipped one is not shown it again at once (a source offers an undialed lead
        # first).
        self._skips: list[CallRecord] = []
        self._apply: dict[type[ev.Event], Callable[[Any, list[Action]], None]] = {
            ev.AgentLoggedIn: self._logged_in,
            ev.AgentReady: self._ready_ev,
            ev.AgentPaused: self._paused,
            ev.AgentLoggedOut: self._logged_out,
            ev.WrapUpDone: self._wrap_done,
            ev.CallRinging: self._ringing,
            ev.CallAnsweredByPerson: self._person,
            ev.CallAnsweredByMachine: self._machine,
            ev.CallFailed: self._failed,
            ev.CallEnded: self._ended,
            ev.CallBridgeFailed: self._bridge_failed,
            ev.CallPlaced: self._placed,
            ev.CallNotPlaced: self._not_placed,
            ev.MessagePlayed: self._message_played,
            ev.TimeAdvanced: lambda e, out: None,
            ev.DialingStopped: self._stop,
            ev.DialingResumed: self._resume,
            ev.CapacityChanged: self._capacity,
            ev.InboundArrived: self._inbound_arrived,
            ev.InboundAbandoned: self._inbound_abandoned,
            ev.InboundEnded: self._inbound_ended,
            ev.InboundBridgeFailed: self._inbound_bridge_failed,
            ev.InboundBlocked: self._inbound_blocked,
            ev.PreviewDial: self._preview_dial,
            ev.PreviewSkip: self._preview_skip,
            ev.ManualDial: self._manual_dial,
        }

    # -- public ----------------------------------------------------------------------------------------

    def handle(self, event: ev.Event) -> list[Action]:
        """Apply one event at its time and return the actions it causes, timers and pacing included.

        Raises :class:`InvalidTransition`, with the engine unchanged, when the event is illegal now. An event made
        moot by a timer that fired first (an answer arriving after our ring timeout), or news about a call the engine
        already hung up itself (ring timeout, machine, lost agent), is ignored and counted in ``stale_events``: the
        runtime could not have known.

        Raises :class:`~dialer.engine.events.InvalidEvent` (a ``DialerError`` and a ``ValueError``, *not* an
        ``InvalidTransition``), with the engine unchanged, when ``event`` is not an event or one of its fields
        holds a value no runtime can mean. Events check their fields when built, so this is normally raised
        there; the engine checks again before touching anything. A runtime that drops ``InvalidTransition`` as
        stale news therefore never drops a bug of its own with it.
        """
        apply = self._apply.get(type(event))
        if apply is None:
            if not isinstance(event, ev.Event):
                raise InvalidEvent(type(event).__name__, "event", event, "is not a dialer.engine.events.Event")
            raise InvalidTransition(f"unknown event type {type(event).__name__}")
        event.validate()  # every field, ``t`` a finite number included, before anything changes
        if event.t < self.now:
            raise InvalidTransition(f"{type(event).__name__} at t={event.t} is before the engine's time {self.now}")
        problem = self._problem(event)
        if problem is not None and not self._late_report(event):
            raise InvalidTransition(problem)
        out: list[Action] = self._deferred
        self._deferred = []
        fired = self._run_timers(event.t, out)
        self.now = event.t
        # Only a timer that fired (or news the engine already acted on) can have made a checked event moot.
        if (problem is None and not fired) or self._problem(event) is None:
            apply(event, out)
        else:
            self.stale_events += 1
        self._pace(out)
        if self._skips:
            skips, self._skips = self._skips, []
            for record in skips:
                self._hand_over(record, out)
        return out

    def next_timer(self) -> float | None:
        """When the runtime should next send ``TimeAdvanced`` (``None``: only when something happens)."""
        timers = self._timers
        while timers and not self._timer_live(timers[0]):
            heapq.heappop(timers)
        nxt = timers[0][0] if timers else None
        if self.dialing and self._starved_until is not None and (nxt is None or self._starved_until < nxt):
            nxt = self._starved_until
        if self.dialing:
            wake = self._policy_wakeup()
            if wake is not None and (nxt is None or wake < nxt):
                nxt = max(wake, self.now)
        return nxt

    def _policy_wakeup(self) -> float | None:
        """The policy's next wake-up, or ``None``; a broken answer stops dialing (fail closed).

        A policy that raises or answers something that is not a finite time (NaN, a string, a bool) would
        otherwise hand the runtime a timer it cannot sleep on, or one that never fires, while the engine keeps
        dialing on stale decisions. The fault's ``Alert`` is handed out with the next ``handle``'s actions.
        """
        name = type(self.policy).__name__
        try:
            wake = self.policy.next_wakeup(self.now)
        except Exception as exc:
            self._fault(f"pacing policy {name} failed in next_wakeup: {exc!r}", self._deferred)
            return None
        if wake is None:
            return None
        if not is_number(wake) or not math.isfinite(wake):
            bad = f"pacing policy {name} answered next_wakeup {wake!r}, not a finite time or None"
            self._fault(bad, self._deferred)
            return None
        return float(wake)

    def snapshot(self) -> Snapshot:
        return Snapshot(self)

    @property
    def in_flight(self) -> int:
        """Calls dialed and not yet over, message playing included (what a trunk carries)."""
        return len(self.calls)

    def agent_state(self, agent_id: str) -> AgentState:
        """The agent's state in the outbound vocabulary: an agent previewing a lead or waiting on their own dial
        (see :meth:`preview_state`) is ``on_call``, busy with a lead and offered nothing else."""
        agent = self.agents.get(agent_id)
        if agent is None:
            return AgentState.LOGGED_OUT
        state = agent.state
        return state if type(state) is AgentState else AgentState.ON_CALL

    def preview_state(self, agent_id: str) -> PreviewState | None:
        """``previewing`` or ``reserved`` for an agent of preview or manual dialing between ready and a call, else
        ``None``."""
        agent = self.agents.get(agent_id)
        if agent is None:
            return None
        state = agent.state
        return state if type(state) is PreviewState else None

    def call_state(self, call_id: int) -> CallState:
        call = self.calls.get(call_id)
        return CallState.ENDED if call is None else call.state

    def inbound_state(self, inbound_id: str) -> InboundState:
        call = self.inbound.get(inbound_id)
        return InboundState.ENDED if call is None else call.state

    def agent_group(self, agent_id: str) -> AgentGroup | None:
        agent = self.agents.get(agent_id)
        return None if agent is None else agent.group

    # -- validation ------------------------------------------------------------------------------------

    def _problem(self, event: ev.Event) -> str | None:
        name = type(event).__name__
        if isinstance(event, ev.AgentLoggedIn):
            if event.agent_id in self.agents:
                return f"agent {event.agent_id!r} is already logged in"
            return None
        if isinstance(event, ev.InboundArrived):
            if event.inbound_id in self.inbound:
                return f"inbound call {event.inbound_id!r} is already in the engine"
            return None
        if isinstance(event, (*_AGENT_EVENTS, *_OFFER_EVENTS, ev.ManualDial)):
            problem = _state_problem(name, "agent", event.agent_id, self.agents, agent_next, type(event))
            if problem is None and isinstance(event, _OFFER_EVENTS):
                offer = self.offers.get(event.call_id)
                if offer is None or offer.agent_id != event.agent_id:
                    return f"no lead is offered to agent {event.agent_id!r} as call {event.call_id} ({name})"
                if offer_next(type(event)) is None:  # pragma: no cover - both events are in the table
                    return f"can't handle {name} for offer {event.call_id}"
            return problem
        if isinstance(event, _CALL_EVENTS):
            problem = _state_problem(name, "call", event.call_id, self.calls, call_next, type(event))
            answered_at = event.answered_at if isinstance(event, ev.CallAnsweredByPerson) else None
            if problem is None and answered_at is not None:
                call = self.calls[event.call_id]
                if not call.dialed_at <= answered_at <= event.t:
                    return f"answered_at={answered_at} of call {event.call_id} is not between dial and now"
            return problem
        if isinstance(event, _INBOUND_EVENTS):
            return _state_problem(name, "inbound call", event.inbound_id, self.inbound, inbound_next, type(event))
        return None

    def _late_report(self, event: ev.Event) -> bool:
        """News from the network about a call we already hung up ourselves, or an agent's press on a preview the
        engine already settled itself (dialed at the timeout, withdrawn): the runtime could not have known."""
        if isinstance(event, _OFFER_EVENTS):
            return event.call_id in self._offers_closed and event.call_id not in self.offers
        if isinstance(event, _INBOUND_EVENTS):
            return event.inbound_id in self._inbound_dropped and event.inbound_id not in self.inbound
        call_id = getattr(event, "call_id", None)
        return isinstance(event, _CALL_EVENTS) and call_id in self._hung_up and call_id not in self.calls

    def _hang_up(self, call_id: int, reason: str, out: list[Action]) -> None:
        out.append(HangUp(call_id, reason))
        self._hung_up[call_id] = None
        if len(self._hung_up) > HUNG_UP_MEMORY:
            del self._hung_up[next(iter(self._hung_up))]

    # -- transitions -----------------------------------------------------------------------------------

    def _agent_to(self, agent: _Agent, key: Key, state: AnyAgentState | None = None) -> None:
        new = state if state is not None else agent_next(agent.state, key)
        assert new is not None, (agent.state, key)
        old = agent.state
        elapsed = self.now - agent.since
        self.stats.agent_seconds[old] += elapsed
        self.stats.group_seconds[agent.group][old] += elapsed
        if old is AgentState.READY:
            del self._ready[agent.agent_id]
            del self._ready_by[agent.group][agent.agent_id]
            if new is AgentState.ON_CALL:
                self.stats.idle_gaps += 1
                self.stats.idle_gap_seconds += elapsed
        self.agent_counts[old] -= 1
        self.agent_counts[new] += 1
        groups = self.group_counts[agent.group]
        groups[old] -= 1
        groups[new] += 1
        # The pacing's view: agents who take outbound calls, except while they are on an inbound one.
        pooled = agent.group.takes_outbound and agent.inbound_id is None
        if agent.pooled:
            self.pool_counts[old] -= 1
            if old is AgentState.ON_CALL or old is AgentState.WRAP_UP:
                _bin_remove(self.busy_bins[old], math.floor(agent.since / BUSY_BIN))
        if pooled:
            self.pool_counts[new] += 1
            if new is AgentState.ON_CALL or new is AgentState.WRAP_UP:
                _bin_add(self.busy_bins[new], math.floor(self.now / BUSY_BIN))
        agent.pooled = pooled
        agent.state = new
        agent.since = self.now
        if new is AgentState.READY:
            self._ready[agent.agent_id] = None
            self._ready_by[agent.group][agent.agent_id] = None
        elif new is AgentState.LOGGED_OUT:
            del self.agents[agent.agent_id]

    def _call_to(self, call: _Call, key: Key) -> CallState:
        new = call_next(call.state, key)
        assert new is not None, (call.state, key)
        self.call_counts[call.state] -= 1
        if call.state is CallState.QUEUED:
            del self._queued[call.call_id]
        elif call.state in _RINGING_STATES and new not in _RINGING_STATES:
            _bin_remove(self.ring_bins, math.floor(call.dialed_at / RING_BIN))
        self.call_counts[new] += 1
        call.state = new
        call.since = self.now
        if new is CallState.QUEUED:
            self._queued[call.call_id] = None
        return new

    def _logged_in(self, e: ev.AgentLoggedIn, out: list[Action]) -> None:
        agent = self.agents[e.agent_id] = _Agent(e.agent_id, e.t, e.group)
        self.agent_counts[AgentState.PAUSED] += 1
        self.group_counts[e.group][AgentState.PAUSED] += 1
        if agent.pooled:
            self.pool_counts[AgentState.PAUSED] += 1
        if e.group is not AgentGroup.OUTBOUND:
            self.mixed_floor = True

    def _ready_ev(self, e: ev.AgentReady, out: list[Action]) -> None:
        self._agent_to(self.agents[e.agent_id], ev.AgentReady)
        self._match(out)

    def _paused(self, e: ev.AgentPaused, out: list[Action]) -> None:
        agent = self.agents[e.agent_id]
        if agent.state is PreviewState.PREVIEWING:  # the lead on their screen goes back to its source
            self._withdraw(agent, "agent_paused", out, move_agent=False)
        was_wrapping = agent.state is AgentState.WRAP_UP
        wrapped = self.now - agent.since
        self._agent_to(agent, ev.AgentPaused)
        if was_wrapping:
            self._wrap_observed(agent, wrapped, True, out)

    def _wrap_done(self, e: ev.WrapUpDone, out: list[Action]) -> None:
        agent = self.agents[e.agent_id]
        wrapped = self.now - agent.since
        self._agent_to(agent, ev.WrapUpDone, AgentState.PAUSED if e.pause else None)
        self._wrap_observed(agent, wrapped, e.pause, out)
        self._match(out)

    def _wrap_observed(self, agent: _Agent, seconds: float, paused: bool, out: list[Action]) -> None:
        if agent.after_inbound:  # the inbound handle time; outbound policies learn outbound wrap-ups only
            agent.after_inbound = False
            self.stats.inbound.wrap(seconds)
            return
        try:
            self.policy.observe_wrap_up(self.now, seconds, paused)
        except Exception as exc:
            self._fault(f"pacing policy failed on a wrap-up: {exc!r}", out)

    def _logged_out(self, e: ev.AgentLoggedOut, out: list[Action]) -> None:
        agent = self.agents[e.agent_id]
        if agent.state is PreviewState.PREVIEWING:
            self._withdraw(agent, "agent_logged_out", out, move_agent=False)
        elif agent.state is PreviewState.RESERVED:
            self._orphan(self.calls[agent.call_id] if agent.call_id is not None else None)
        if agent.state is AgentState.ON_CALL and agent.inbound_id is not None:
            inbound = self.inbound[agent.inbound_id]
            self._inbound_to(inbound, Trigger.AGENT_LOST)
            out.append(HangUpInbound(inbound.inbound_id, "agent_lost"))
            self._inbound_dropped[inbound.inbound_id] = None
            if len(self._inbound_dropped) > HUNG_UP_MEMORY:
                del self._inbound_dropped[next(iter(self._inbound_dropped))]
            self.stats.inbound.ended(self.now - (inbound.answered_at or self.now))
            self._finish_inbound(inbound, InboundOutcome.ANSWERED, out, agent_lost=True)
            agent.inbound_id = None
        elif agent.state is AgentState.ON_CALL and agent.call_id is not None:
            call = self.calls[agent.call_id]
            self._call_to(call, Trigger.AGENT_LOST)
            self._hang_up(call.call_id, "agent_lost", out)
            self._finish(call, Outcome.CONNECTED, out, agent_lost=True)
        agent.call_id = None
        self._agent_to(agent, ev.AgentLoggedOut)

    def _ringing(self, e: ev.CallRinging, out: list[Action]) -> None:
        call = self.calls[e.call_id]
        self._call_to(call, ev.CallRinging)
        if call.ringing_at is None:
            call.ringing_at = e.t
            # The regulators count ringing from the phone's first ring: a 180 that came late extends the wait.
            if call.ring_deadline is not None:
                self._arm_ring(call, max(call.ring_deadline, e.t + MIN_RING_TIMEOUT + self.config.ring_slack))

    def _placed(self, e: ev.CallPlaced, out: list[Action]) -> None:
        """The INVITE left now: ring time and the pacing's answer times count from here, not from the order."""
        call = self.calls[e.call_id]
        _bin_remove(self.ring_bins, math.floor(call.dialed_at / RING_BIN))
        call.dialed_at = e.t
        _bin_add(self.ring_bins, math.floor(e.t / RING_BIN))
        timeout = self.config.ring_timeout
        if timeout is not None:
            self._arm_ring(call, e.t + timeout + self.config.ring_slack)

    def _not_placed(self, e: ev.CallNotPlaced, out: list[Action]) -> None:
        """No INVITE ever left: the lead goes back to its source undialed (see :class:`ev.CallNotPlaced`)."""
        call = self.calls[e.call_id]
        self._call_to(call, ev.CallNotPlaced)
        self._release(call, ev.CallNotPlaced, out)
        self.stats.failed(Outcome.NETWORK)
        self._finish(call, Outcome.NETWORK, out, placed=False)

    def _message_played(self, e: ev.MessagePlayed, out: list[Action]) -> None:
        call = self.calls[e.call_id]
        started = e.started_at if e.started_at is not None else e.t
        if call.message_played is not True:
            call.message_at = started
            call.message_played = True

    def _arm_ring(self, call: _Call, when: float) -> None:
        if call.ring_deadline != when:
            call.ring_deadline = when
            self._push_timer(when, Trigger.RING_TIMEOUT, call.call_id)

    def _person(self, e: ev.CallAnsweredByPerson, out: list[Action]) -> None:
        call = self.calls[e.call_id]
        answered = e.answered_at if e.answered_at is not None else e.t
        call.answered_at = answered
        call.amd_verdict = e.amd_verdict
        call.amd_seconds = e.amd_seconds
        call.picked_up_at = e.picked_up_at
        self.stats.live_answer(answered, call.dialed_at)
        self._call_to(call, ev.CallAnsweredByPerson)
        try:
            self.policy.observe_answer(answered, answered - call.dialed_at)
        except Exception as exc:
            self._fault(f"pacing policy failed on an answer: {exc!r}", out)
        deadline = answered + self.config.connect_limit
        # A person whose connect clock already ran out (answering-machine detection ate the limit) is abandoned
        # even if an agent is free: the regulators count the wait from ``answered_at``, so fail closed.
        if call.reserved_for is not None:  # preview or manual: their agent waits for them and nobody else
            theirs = self.agents[call.reserved_for]
            call.reserved_for = None
            if deadline > self.now or answered == self.now:
                self._connect(call, theirs, out)
                return
            theirs.call_id = None  # detection ate the limit (fail closed, as above): abandoned, the agent free
            self._agent_to(theirs, Trigger.CONNECT_LIMIT)
            self._abandon(call, out)
            self._match(out)
            return
        agent = self._free_agent(AgentGroup.OUTBOUND)
        if agent is not None and (deadline > self.now or answered == self.now):
            self._connect(call, agent, out)
            return
        if deadline <= self.now:
            self._abandon(call, out)
        else:
            call.deadline = deadline
            self._push_timer(deadline, Trigger.CONNECT_LIMIT, call.call_id)

    def _machine(self, e: ev.CallAnsweredByMachine, out: list[Action]) -> None:
        call = self.calls[e.call_id]
        call.answered_at = e.t
        call.amd_verdict = "machine"
        call.amd_seconds = e.amd_seconds
        self.stats.machine_answer(e.t, call.dialed_at)
        self._call_to(call, ev.CallAnsweredByMachine)
        self._release(call, ev.CallAnsweredByMachine, out)
        self._hang_up(call.call_id, "machine", out)
        self._finish(call, Outcome.MACHINE, out)

    def _failed(self, e: ev.CallFailed, out: list[Action]) -> None:
        call = self.calls[e.call_id]
        self._call_to(call, ev.CallFailed)
        self._release(call, ev.CallFailed, out)
        outcome = _FAILURE_OUTCOME[e.reason]
        self.stats.failed(outcome)
        self._finish(call, outcome, out)

    def _ended(self, e: ev.CallEnded, out: list[Action]) -> None:
        call = self.calls[e.call_id]
        state = call.state
        self._call_to(call, ev.CallEnded)
        if state is CallState.QUEUED:
            # The person gave up before an agent came: abandoned all the same (fail closed).
            assert call.answered_at is not None
            call.wait = self.now - call.answered_at
            self.stats.abandon(self.now, call.answered_at)
            self._finish(call, Outcome.ABANDONED, out, customer_hung_up=True)
        elif state is CallState.CONNECTED:
            assert call.agent_id is not None
            agent = self.agents[call.agent_id]
            agent.call_id = None
            self._agent_to(agent, ev.CallEnded)
            self._finish(call, Outcome.CONNECTED, out)
        else:  # ABANDONING: the message has played
            self._finish(call, Outcome.ABANDONED, out)

    def _bridge_failed(self, e: ev.CallBridgeFailed, out: list[Action]) -> None:
        """The agent's phone never took the call: the person reached no live agent, which is an abandonment.

        The call is abandoned exactly as at the connect limit (message, counters, record), except that the
        connect it was counted as is taken back: it never reached an agent. The agent is paused and unlinked
        from the call (the record still names them, as the agent whose phone failed).
        """
        call = self.calls[e.call_id]
        assert call.agent_id is not None
        agent = self.agents[call.agent_id]
        agent.call_id = None
        self._agent_to(agent, ev.CallBridgeFailed)
        call.connected_at = None
        call.bridge_failed = True
        self.stats.totals.connects -= 1
        self.stats.totals.bridge_failed += 1
        self._abandon(call, out, ev.CallBridgeFailed)

    def _stop(self, e: ev.DialingStopped, out: list[Action]) -> None:
        self.dialing = False

    def _resume(self, e: ev.DialingResumed, out: list[Action]) -> None:
        self.dialing = True

    def _capacity(self, e: ev.CapacityChanged, out: list[Action]) -> None:
        self.config = replace(self.config, max_in_flight=e.max_in_flight)

    # -- matching, abandonment, records ----------------------------------------------------------------

    def _connect(self, call: _Call, agent: _Agent, out: list[Action]) -> None:
        assert call.answered_at is not None
        self._call_to(call, Trigger.CONNECT)
        self._agent_to(agent, Trigger.CONNECT)
        call.agent_id = agent.agent_id
        call.connected_at = self.now
        call.wait = self.now - call.answered_at
        call.deadline = None
        agent.call_id = call.call_id
        self.stats.totals.connects += 1
        out.append(ConnectCall(call.call_id, agent.agent_id))

    def _free_agent(self, kind: AgentGroup) -> _Agent | None:
        """The agent to give a call of ``kind`` (OUTBOUND or INBOUND): the longest-idle specialist, else the
        longest-idle blended agent, else ``None``."""
        ready = self._ready_by[kind]
        if not ready:
            ready = self._ready_by[AgentGroup.BLENDED]
            if not ready:
                return None
        return self.agents[next(iter(ready))]

    def _match(self, out: list[Action]) -> None:
        """Connect the longest-waiting people to the longest-idle agents: outbound people first (their connect
        limit runs), then inbound callers, unless ``inbound_first``."""
        if self.config.inbound_first:
            self._match_inbound(out)
        while self._queued:
            agent = self._free_agent(AgentGroup.OUTBOUND)
            if agent is None:
                break
            self._connect(self.calls[next(iter(self._queued))], agent, out)
        self._match_inbound(out)

    def _match_inbound(self, out: list[Action]) -> None:
        while self._inbound_queue:
            agent = self._free_agent(AgentGroup.INBOUND)
            if agent is None:
                break
            inbound = self.inbound[next(iter(self._inbound_queue))]
            self._inbound_to(inbound, Trigger.CONNECT)
            agent.inbound_id = inbound.inbound_id  # before the move, so the agent leaves the pacing's view
            self._agent_to(agent, Trigger.CONNECT)
            inbound.agent_id = agent.agent_id
            inbound.answered_at = self.now
            inbound.wait = self.now - inbound.arrived_at
            self.stats.inbound.answer(inbound.wait)
            out.append(ConnectInbound(inbound.inbound_id, agent.agent_id))

    # -- inbound calls ---------------------------------------------------------------------------------

    def _inbound_to(self, inbound: _Inbound, key: Key) -> None:
        new = inbound_next(inbound.state, key)
        assert new is not None, (inbound.state, key)
        self.inbound_counts[inbound.state] -= 1
        if inbound.state is InboundState.QUEUED:
            del self._inbound_queue[inbound.inbound_id]
        self.inbound_counts[new] += 1
        inbound.state = new
        if new is InboundState.QUEUED:
            queue = self._inbound_queue
            if queue and self.inbound[next(reversed(queue))].seq > inbound.seq:
                # Back from a failed bridge: in their old place, by arrival (rare, so rebuilding is fine).
                ordered = sorted([*queue, inbound.inbound_id], key=lambda i: self.inbound[i].seq)
                queue.clear()
                queue.update(dict.fromkeys(ordered))
            else:
                queue[inbound.inbound_id] = None

    def _inbound_arrived(self, e: ev.InboundArrived, out: list[Action]) -> None:
        self._inbound_seq += 1
        inbound = self.inbound[e.inbound_id] = _Inbound(e.inbound_id, e.t, self._inbound_seq)
        self.inbound_counts[InboundState.QUEUED] += 1
        self._inbound_queue[e.inbound_id] = None
        self.stats.inbound.arrival(e.t)
        if inbound.state is InboundState.QUEUED:
            self._match_inbound(out)

    def _inbound_abandoned(self, e: ev.InboundAbandoned, out: list[Action]) -> None:
        inbound = self.inbound[e.inbound_id]
        agent_id = None
        if inbound.state is InboundState.CONNECTED:
            # Hung up just as we connected them: the connect is taken back and the agent, who never talked, is
            # ready again.
            assert inbound.agent_id is not None and inbound.answered_at is not None
            agent = self.agents[inbound.agent_id]
            agent_id = agent.agent_id
            self.stats.inbound.answer(inbound.wait, -1)
            agent.inbound_id = None
            self._agent_to(agent, ev.InboundAbandoned)
            inbound.answered_at = None
        self._inbound_to(inbound, ev.InboundAbandoned)
        inbound.wait = self.now - inbound.arrived_at
        inbound.agent_id = agent_id
        self.stats.inbound.abandon(inbound.wait)
        self._finish_inbound(inbound, InboundOutcome.ABANDONED, out)
        self._match(out)

    def _inbound_ended(self, e: ev.InboundEnded, out: list[Action]) -> None:
        inbound = self.inbound[e.inbound_id]
        assert inbound.agent_id is not None and inbound.answered_at is not None
        agent = self.agents[inbound.agent_id]
        agent.inbound_id = None
        agent.after_inbound = True
        self._agent_to(agent, ev.InboundEnded)
        self._inbound_to(inbound, ev.InboundEnded)
        self.stats.inbound.ended(self.now - inbound.answered_at)
        self._finish_inbound(inbound, InboundOutcome.ANSWERED, out)

    def _inbound_bridge_failed(self, e: ev.InboundBridgeFailed, out: list[Action]) -> None:
        """The agent's phone did not take the caller: the caller waits again, in their place; the agent pauses."""
        inbound = self.inbound[e.inbound_id]
        assert inbound.agent_id is not None
        agent = self.agents[inbound.agent_id]
        agent.inbound_id = None
        self._agent_to(agent, ev.InboundBridgeFailed)
        self.stats.inbound.answer(inbound.wait, -1)
        inbound.agent_id = None
        inbound.answered_at = None
        inbound.bridge_failures += 1
        self._inbound_to(inbound, ev.InboundBridgeFailed)
        self._match(out)

    def _inbound_blocked(self, e: ev.InboundBlocked, out: list[Action]) -> None:
        """A caller turned away before queueing: counted, and recorded like any caller; nothing else moves (no
        queue, agent or timer), so it can never be illegal in any state and needs no transition table entry."""
        self.stats.inbound.block(e.reason.value)
        record = InboundRecord(
            inbound_id=e.inbound_id or "",
            outcome=InboundOutcome.BLOCKED,
            arrived_at=self.now,
            ended_at=self.now,
            wait=0.0,
            reason=e.reason.value,
            caller=e.caller,
        )
        out.append(RecordInbound(record))

    def _finish_inbound(
        self, inbound: _Inbound, outcome: InboundOutcome, out: list[Action], *, agent_lost: bool = False
    ) -> None:
        del self.inbound[inbound.inbound_id]
        self.inbound_counts[InboundState.ENDED] -= 1
        agent = self.agents.get(inbound.agent_id) if inbound.agent_id is not None else None
        record = InboundRecord(
            inbound_id=inbound.inbound_id,
            outcome=outcome,
            arrived_at=inbound.arrived_at,
            ended_at=self.now,
            wait=inbound.wait,
            answered_at=inbound.answered_at,
            agent_id=inbound.agent_id,
            group=agent.group.value if agent is not None and outcome is InboundOutcome.ANSWERED else None,
            agent_lost=agent_lost,
            bridge_failures=inbound.bridge_failures,
        )
        out.append(RecordInbound(record))

    def _abandon(self, call: _Call, out: list[Action], key: Key = Trigger.CONNECT_LIMIT) -> None:
        """Count the person abandoned now and order the message: the connect limit ran out, or the bridge failed."""
        assert call.answered_at is not None
        self._call_to(call, key)
        call.message_at = self.now  # when ordered; MessagePlayed replaces it with when it was heard
        call.message_played = False
        call.wait = self.now - call.answered_at
        call.deadline = None
        self.stats.abandon(self.now, call.answered_at)
        out.append(PlayAbandonMessage(call.call_id))

    def _finish(
        self,
        call: _Call,
        outcome: Outcome,
        out: list[Action],
        *,
        customer_hung_up: bool = False,
        agent_lost: bool = False,
        placed: bool = True,
    ) -> None:
        del self.calls[call.call_id]
        self.call_counts[CallState.ENDED] -= 1
        if customer_hung_up:
            self.stats.totals.customer_hung_up += 1
        if agent_lost:
            self.stats.totals.agent_lost += 1
        record = CallRecord(
            call_id=call.call_id,
            lead=call.lead,
            outcome=outcome,
            dialed_at=call.dialed_at,
            ended_at=self.now,
            answered_at=call.answered_at,
            connected_at=call.connected_at,
            agent_id=call.agent_id,
            message_at=call.message_at,
            wait=call.wait,
            abandoned=outcome is Outcome.ABANDONED,
            customer_hung_up=customer_hung_up,
            agent_lost=agent_lost,
            bridge_failed=call.bridge_failed,
            placed=placed,
            ringing_at=call.ringing_at,
            message_played=call.message_played,
            amd_verdict=call.amd_verdict,
            amd_seconds=call.amd_seconds,
            picked_up_at=call.picked_up_at,
            reserved_for=call.dialed_for,
            offered_at=call.offered_at,
        )
        self._hand_over(record, out)

    def _hand_over(self, record: CallRecord, out: list[Action]) -> None:
        """The one ``RecordCall`` of a call, and the record to the lead source and the policy."""
        out.append(RecordCall(record))
        try:
            self.leads.report(record)
        except Exception as exc:  # the store behind the lead source failed: keep the record, stop dialing
            self.unreported.append(record)
            self._fault(f"lead source could not take the record of call {record.call_id}: {exc!r}", out)
        try:
            self.policy.observe(record)
        except Exception as exc:
            self._fault(f"pacing policy failed on the record of call {record.call_id}: {exc!r}", out)

    def _fault(self, message: str, out: list[Action]) -> None:
        """Fail closed: a part the engine relies on broke, so no new calls until an operator resumes dialing."""
        self.dialing = False
        self.faults.append((self.now, message))
        out.append(Alert("fault", message))

    # -- timers ----------------------------------------------------------------------------------------

    def _push_timer(self, when: float, trigger: Trigger | PreviewTrigger, call_id: int) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, trigger, call_id))

    def _timer_live(self, timer: tuple[float, int, Trigger | PreviewTrigger, int]) -> bool:
        when, _, trigger, call_id = timer
        if trigger is PreviewTrigger.PREVIEW_TIMEOUT:
            offer = self.offers.get(call_id)
            return offer is not None and offer.deadline == when
        call = self.calls.get(call_id)
        if call is None:
            return False
        if trigger is Trigger.CONNECT_LIMIT:
            return call.state is CallState.QUEUED and call.deadline == when
        return (call.state is CallState.DIALING or call.state is CallState.RINGING) and call.ring_deadline == when

    def _run_timers(self, t: float, out: list[Action]) -> bool:
        """Fire every live timer due by ``t``; True if any fired."""
        timers = self._timers
        fired = False
        while timers and timers[0][0] <= t:
            timer = heapq.heappop(timers)
            if not self._timer_live(timer):
                continue
            fired = True
            when, _, trigger, call_id = timer
            self.now = max(self.now, when)
            if trigger is PreviewTrigger.PREVIEW_TIMEOUT:  # the agent did not press dial in time: the engine dials
                offer = self.offers[call_id]
                if self.dialing:
                    self._close_offer(call_id)
                    self._dial_offer(offer, PreviewTrigger.PREVIEW_TIMEOUT, out)
                else:  # stopped since (a fault found outside ``handle``): the lead goes back instead
                    self._withdraw(self.agents[offer.agent_id], "dialing_stopped", out)
                continue
            call = self.calls[call_id]
            if trigger is Trigger.CONNECT_LIMIT:
                self._abandon(call, out)
            else:
                self._call_to(call, Trigger.RING_TIMEOUT)
                self._release(call, Trigger.RING_TIMEOUT, out)
                self._hang_up(call_id, "ring_timeout", out)
                self.stats.failed(Outcome.NO_ANSWER)
                self._finish(call, Outcome.NO_ANSWER, out)
        return fired

    # -- pacing ----------------------------------------------------------------------------------------

    def _pace(self, out: list[Action]) -> None:
        if not self.dialing:
            if self.offers:  # stopped (by an operator, the shift's end or a fault): leads shown go back undialed
                for offer in list(self.offers.values()):
                    self._withdraw(self.agents[offer.agent_id], "dialing_stopped", out)
            return
        self.stats.expire(self.now)
        try:
            n = self.policy.decide(Snapshot(self))
        except Exception as exc:
            self._fault(f"pacing policy failed: {exc!r}", out)
            return
        if type(n) is not int:
            # A float, None, NaN or bool is a broken policy, not a number of calls: fail closed like a policy
            # that raised, rather than raise on every event (or, for True, dial). Negative stays 0 (documented).
            if not is_integer(n):
                name = type(self.policy).__name__
                self._fault(f"pacing policy {name} answered {n!r}, not a whole number of calls", out)
                return
            n = int(n)
        requested = n
        cap = self.config.max_in_flight
        if cap is not None:
            n = min(n, cap - len(self.calls) - len(self.offers))
        if isinstance(self.policy, Preview):
            self._offer_leads(n, requested, self.policy.timeout, out)
            if not self.dialing:  # the lead source or the policy failed while offering: take every lead back
                for offer in list(self.offers.values()):
                    self._withdraw(self.agents[offer.agent_id], "dialing_stopped", out)
            return
        placed = 0
        for lead in self._take_leads(n, out):
            call_id = self._next_call_id
            self._next_call_id += 1
            self._launch(call_id, lead, out)
            placed += 1
        self._launched(requested, placed, out)

    def _take_leads(self, n: int, out: list[Action]) -> Iterator[Lead]:
        """Up to ``n`` leads from the source, one at a time as the caller uses them: stops at a fault of the source
        (dialing stops) or when it has none (no asking again for ``lead_retry`` seconds)."""
        self._starved_until = None
        for _ in range(n):
            try:
                lead = self.leads.next_lead(self.now)
            except Exception as exc:
                self._fault(f"lead source failed: {exc!r}", out)
                return
            if lead is None:
                self._starved_until = self.now + self.config.lead_retry
                return
            yield lead

    def _launched(self, requested: int, placed: int, out: list[Action]) -> None:
        """Tell the policy how many of the calls it asked for were placed (or offered), if it asked for any."""
        if requested > 0:
            try:
                self.policy.launched(self.now, requested, placed)
            except Exception as exc:
                self._fault(f"pacing policy failed on launch feedback: {exc!r}", out)

    def _launch(self, call_id: int, lead: Lead, out: list[Action]) -> _Call:
        """Dial ``lead`` as call ``call_id`` now."""
        call = self.calls[call_id] = _Call(call_id, lead, self.now)
        self.call_counts[CallState.DIALING] += 1
        _bin_add(self.ring_bins, math.floor(self.now / RING_BIN))
        self.stats.dialed(self.now)
        timeout = self.config.ring_timeout
        if timeout is not None:
            self._arm_ring(call, self.now + timeout + self.config.ring_slack)
        out.append(DialLead(call_id, lead, timeout))
        return call

    # -- preview and manual dialing --------------------------------------------------------------------

    def _preview_keys(self) -> None:
        """Give the preview states their keys in the counters, the first time an agent enters one."""
        if self._preview_used:
            return
        self._preview_used = True
        for state in PreviewState:
            self.agent_counts.setdefault(state, 0)
            self.pool_counts.setdefault(state, 0)
            self.stats.agent_seconds.setdefault(state, 0.0)
            for group in AgentGroup:
                self.group_counts[group].setdefault(state, 0)
                self.stats.group_seconds[group].setdefault(state, 0.0)

    def _offer_leads(self, n: int, requested: int, timeout: float | None, out: list[Action]) -> None:
        """Preview mode: show a lead to each of up to ``n`` ready agents (never more than are ready)."""
        ready = self._ready_by
        n = min(n, len(ready[AgentGroup.OUTBOUND]) + len(ready[AgentGroup.BLENDED]))
        placed = 0
        for lead in self._take_leads(n, out):
            agent = self._free_agent(AgentGroup.OUTBOUND)
            assert agent is not None
            self._preview_keys()
            call_id = self._next_call_id
            self._next_call_id += 1
            deadline = None if timeout is None else self.now + timeout
            self.offers[call_id] = _Offer(call_id, lead, agent.agent_id, self.now, deadline)
            agent.call_id = call_id
            self._agent_to(agent, PreviewTrigger.OFFER)
            if deadline is not None:
                self._push_timer(deadline, PreviewTrigger.PREVIEW_TIMEOUT, call_id)
            out.append(PreviewLead(call_id, agent.agent_id, lead, deadline))
            placed += 1
        self._launched(requested, placed, out)

    def _close_offer(self, call_id: int) -> None:
        """Remember an offer the engine settled itself: an agent's press about it is late news from now on."""
        self._offers_closed[call_id] = None
        if len(self._offers_closed) > HUNG_UP_MEMORY:
            del self._offers_closed[next(iter(self._offers_closed))]

    def _dial_offer(self, offer: _Offer, key: Key, out: list[Action]) -> None:
        """Dial an offered lead with its agent reserved (the agent pressed dial, or the timeout ran out)."""
        del self.offers[offer.call_id]
        agent = self.agents[offer.agent_id]
        self._agent_to(agent, key)
        call = self._launch(offer.call_id, offer.lead, out)
        call.reserved_for = call.dialed_for = agent.agent_id
        call.offered_at = offer.offered_at

    def _end_offer(self, offer: _Offer, skipped: str, out: list[Action], *, later: bool = False) -> None:
        """An offered lead that will not be dialed: its one record, ``placed=False``, back to the source (``later``:
        once this event's pacing is done)."""
        del self.offers[offer.call_id]
        record = CallRecord(
            call_id=offer.call_id,
            lead=offer.lead,
            outcome=Outcome.NETWORK,
            dialed_at=offer.offered_at,
            ended_at=self.now,
            placed=False,
            reserved_for=offer.agent_id,
            offered_at=offer.offered_at,
            skipped=skipped,
        )
        if later:
            self._skips.append(record)
        else:
            self._hand_over(record, out)

    def _withdraw(self, agent: _Agent, reason: str, out: list[Action], *, move_agent: bool = True) -> None:
        """Take back the lead an agent is previewing (dialing stopped; or they pause or leave, when the caller
        moves them itself)."""
        assert agent.call_id is not None
        offer = self.offers[agent.call_id]
        self._close_offer(offer.call_id)
        agent.call_id = None
        out.append(PreviewWithdrawn(offer.call_id, agent.agent_id, reason))
        if move_agent:
            self._agent_to(agent, PreviewTrigger.WITHDRAWN)
        self._end_offer(offer, f"withdrawn: {reason}", out)
        if move_agent:
            self._match(out)

    def _preview_dial(self, e: ev.PreviewDial, out: list[Action]) -> None:
        if not self.dialing:  # stopped since the offer (a fault found between events): fail closed
            self._withdraw(self.agents[e.agent_id], "dialing_stopped", out)
            return
        self._dial_offer(self.offers[e.call_id], ev.PreviewDial, out)

    def _preview_skip(self, e: ev.PreviewSkip, out: list[Action]) -> None:
        agent = self.agents[e.agent_id]
        agent.call_id = None
        self._agent_to(agent, ev.PreviewSkip)
        self._end_offer(self.offers[e.call_id], e.reason, out, later=True)
        self._match(out)

    def _manual_dial(self, e: ev.ManualDial, out: list[Action]) -> None:
        """Dial the agent's own choice of lead, if the lead source's gates let it through (fail closed)."""
        agent = self.agents[e.agent_id]
        cap = self.config.max_in_flight
        lead: Lead | None = None
        reason = ""
        hook = getattr(self.leads, "manual_lead", None)
        if not self.dialing:
            reason = "dialing stopped"
        elif cap is not None and len(self.calls) + len(self.offers) >= cap:
            reason = "trunk full"
        elif hook is None:
            reason = "the lead source cannot check manual dials (no manual_lead)"
        else:
            try:
                lead = hook(e.lead, self.now)
            except Exception as exc:
                self._fault(f"lead source failed on a manual dial: {exc!r}", out)
                reason = "lead source failed"
            else:
                if lead is None:
                    reason = "refused by the lead source"
                elif isinstance(lead, str):  # refused, with the source's reason for the agent
                    lead, reason = None, lead or "refused by the lead source"
                elif not isinstance(lead, Lead):
                    self._fault(f"lead source answered manual_lead with {lead!r}, not a Lead, a reason or None", out)
                    lead, reason = None, "lead source failed"
        if lead is None:
            out.append(DialRefused(agent.agent_id, e.lead, reason))
            return
        self._preview_keys()
        self._agent_to(agent, ev.ManualDial)
        call_id = self._next_call_id
        self._next_call_id += 1
        call = self._launch(call_id, lead, out)
        call.reserved_for = call.dialed_for = agent.agent_id
        agent.call_id = call_id

    def _release(self, call: _Call, key: Key, out: list[Action]) -> None:
        """A reserved dial reached nobody: its agent is ready again (matched at once if somebody waits)."""
        if call.reserved_for is None:
            return
        agent = self.agents[call.reserved_for]
        call.reserved_for = None
        agent.call_id = None
        self._agent_to(agent, key)
        self._match(out)

    def _orphan(self, call: _Call | None) -> None:
        """The agent of a ringing reserved call logged out. Hanging up at once would cut a ring short of the
        regulators' 15 s, so the call rings on to the earliest moment it may be given up, and a person who
        answers before then is an ordinary outbound answer (a free agent within the connect limit, else
        abandoned): the one way a preview floor can abandon somebody, and only because the agent left."""
        if call is None:
            return
        call.reserved_for = None
        start = call.ringing_at if call.ringing_at is not None else call.dialed_at
        earliest = max(self.now, start + MIN_RING_TIMEOUT + self.config.ring_slack)
        if call.ring_deadline is None or earliest < call.ring_deadline:
            self._arm_ring(call, earliest)
