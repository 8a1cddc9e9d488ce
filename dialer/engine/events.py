"""Input events: what a runtime tells the engine happened, and when.

Every event carries ``t``, the time in seconds on the runtime's clock (simulated seconds under SimPy, epoch
seconds live). The engine has no clock of its own: time only moves when an event says so, and it may never move
backwards. Events are small frozen dataclasses so they can be logged, replayed and compared in tests.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

from dialer.errors import DialerError
from dialer.leads import Lead


class InvalidEvent(DialerError, ValueError):
    """An event field holds a value no runtime can mean (a NaN time, ``reason="bogus"``, ``agent_id=None``).

    Raised when the event is built, so a bad event never reaches an engine: nothing has changed (and by
    :meth:`Engine.handle <dialer.engine.core.Engine.handle>`, before it changes anything, for an event built past
    ``__init__`` or for something that is no event). ``event`` names the event type, ``field`` the offending field
    and ``value`` the value given.

    It is deliberately *not* an :class:`~dialer.errors.InvalidTransition`: runtimes drop those as stale news (a
    report overtaken by a timer), and a bad value is a bug in whoever built the event, which must not be dropped
    with them. It is a :class:`ValueError` and a :class:`~dialer.errors.DialerError`, so either catches it.
    """

    def __init__(self, event: str, field: str, value: object, message: str) -> None:
        self.event = event
        self.field = field
        self.value = value
        self.message = message
        super().__init__(f"{event}.{field}={value!r}: {message}")


class FailureReason(StrEnum):
    """Why a dial did not reach anybody; each maps to a lead disposition and a retry rule."""

    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    INVALID_NUMBER = "invalid_number"
    NETWORK = "network"


_FAILURE_VALUES = frozenset(r.value for r in FailureReason)


class AgentGroup(StrEnum):
    """Which calls an agent takes: outbound dials only (the default), inbound callers only, or both (blended)."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"
    BLENDED = "blended"

    @property
    def takes_outbound(self) -> bool:
        return self is not AgentGroup.INBOUND

    @property
    def takes_inbound(self) -> bool:
        return self is not AgentGroup.OUTBOUND


_GROUP_VALUES = frozenset(g.value for g in AgentGroup)


class BlockedReason(StrEnum):
    """Why an inbound caller was turned away before joining the queue (:class:`InboundBlocked`).

    ``busy``: no room to take the call (no free slot on a worker, a Call-ID already in the queue, the dialer did
    not answer its worker in time); ``queue_full``: the queue already held its maximum of waiting callers;
    ``stopping``: the dialer was draining or closing; ``balked``: the caller heard how long the queue was and hung
    up at once (the simulator's ``balk_at``).
    """

    BUSY = "busy"
    QUEUE_FULL = "queue_full"
    STOPPING = "stopping"
    BALKED = "balked"


_BLOCKED_VALUES = frozenset(r.value for r in BlockedReason)


def _refuse(event: Event, field: str, value: object, message: str) -> NoReturn:
    raise InvalidEvent(type(event).__name__, field, value, message)


def _member(
    event: Event, field: str, value: Any, kind: type[StrEnum], values: frozenset[str], article: str = "a"
) -> None:
    """A :class:`StrEnum` field given as a member or as its string value (then stored as the member)."""
    if type(value) is not kind:
        if not isinstance(value, str) or value not in values:
            _refuse(event, field, value, f"must be {article} {kind.__name__} ({', '.join(sorted(values))})")
        object.__setattr__(event, field, kind(value))


def is_number(value: object) -> bool:
    """A real number, not a bool (``True`` is an int to Python, never a time or a count to a runtime)."""
    cls = type(value)
    if cls is float or cls is int:
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: object) -> bool:
    """An integer, not a bool (numpy's integers count)."""
    if type(value) is int:
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _time(event: Event, field: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    # Written so that NaN fails too: one NaN time would poison every later comparison of the engine's clock.
    if not is_number(value) or not -math.inf < value < math.inf:
        _refuse(event, field, value, "must be a finite number of seconds" + (" or None" if optional else ""))


def _seconds(event: Event, field: str, value: Any) -> None:
    """An optional duration: None, or finite and >= 0."""
    if value is not None and (not is_number(value) or not 0 <= value < math.inf):
        _refuse(event, field, value, "must be a finite number of seconds >= 0 or None")


def _agent(event: Event, value: Any) -> None:
    if type(value) is not str or not value:
        _refuse(event, "agent_id", value, "must be a non-empty str")


def _inbound(event: Event, value: Any) -> None:
    if type(value) is not str or not value:
        _refuse(event, "inbound_id", value, "must be a non-empty str")


def _call(event: Event, value: Any) -> None:
    if type(value) is not int:
        if not is_integer(value):
            _refuse(event, "call_id", value, "must be an int >= 0")
        value = int(value)
        object.__setattr__(event, "call_id", value)  # numpy's integers: carried as plain ints
    if value < 0:
        _refuse(event, "call_id", value, "must be an int >= 0")


@dataclass(frozen=True, slots=True)
class Event:
    """Base class: every event happens at a time ``t`` (seconds).

    Every field is checked when the event is built (:class:`InvalidEvent` otherwise): times are finite numbers,
    ids have their types, counts are integers, flags are bools, enums are members or their string values (which
    are converted, so ``CallFailed(t, 7, "busy")`` carries ``FailureReason.BUSY``).
    """

    t: float

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field again (:class:`InvalidEvent`); the engine does, in case one was built bypassing
        ``__init__`` (``object.__new__``, a deserialiser)."""
        try:
            _time(self, "t", self.t)
            self._check()
        except AttributeError as exc:  # a slot never set (only possible past ``__init__``)
            _refuse(self, exc.name or "?", None, "is missing")

    def _check(self) -> None:
        """Check the fields a subclass adds (raise :class:`InvalidEvent`); the base has none beyond ``t``."""


# --- agents -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentLoggedIn(Event):
    """An agent joined the campaign. Agents start paused: they take calls only after :class:`AgentReady`.

    ``group`` says which calls they take (:class:`AgentGroup`, or its string value): ``"outbound"`` (the default,
    so every runtime that predates inbound calls is unchanged), ``"inbound"`` or ``"blended"``. It holds until
    the agent logs out.
    """

    agent_id: str
    group: AgentGroup = AgentGroup.OUTBOUND

    def _check(self) -> None:
        _agent(self, self.agent_id)
        _member(self, "group", self.group, AgentGroup, _GROUP_VALUES, article="an")


@dataclass(frozen=True, slots=True)
class AgentReady(Event):
    """A paused agent is available for calls."""

    agent_id: str

    def _check(self) -> None:
        _agent(self, self.agent_id)


@dataclass(frozen=True, slots=True)
class AgentPaused(Event):
    """A ready agent (or one finishing wrap-up) stops taking calls for a while."""

    agent_id: str

    def _check(self) -> None:
        _agent(self, self.agent_id)


@dataclass(frozen=True, slots=True)
class AgentLoggedOut(Event):
    """An agent left, possibly mid-call (a vanished softphone): the call is hung up and still recorded."""

    agent_id: str

    def _check(self) -> None:
        _agent(self, self.agent_id)


@dataclass(frozen=True, slots=True)
class WrapUpDone(Event):
    """An agent finished after-call work and is ready again (or paused, if ``pause`` is set)."""

    agent_id: str
    pause: bool = False

    def _check(self) -> None:
        _agent(self, self.agent_id)
        if type(self.pause) is not bool:  # "no" is truthy: a string here would pause the agent
            _refuse(self, "pause", self.pause, "must be a bool")


# --- calls ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRinging(Event):
    """The network reports the far end is alerting (SIP 180/183). Optional: a call may be answered from dialing."""

    call_id: int

    def _check(self) -> None:
        _call(self, self.call_id)


@dataclass(frozen=True, slots=True)
class CallAnsweredByPerson(Event):
    """A live person answered.

    ``answered_at`` is when the connect clock starts (answer, end of greeting, start of speech, depending on the
    regime); it defaults to ``t``. A runtime that spent time on answering-machine detection passes the earlier
    answer time so that detection eats into the connect limit, as the regulators count it.
    """

    call_id: int
    answered_at: float | None = None
    #: Answering-machine detection's verdict (``person`` or ``unsure``; ``None`` when detection did not run) and
    #: how long after the answer it came: stored per call so an auditor sees what each decision was and cost.
    amd_verdict: str | None = None
    amd_seconds: float | None = None
    #: When the far end picked up (its 200 OK), where the runtime saw it, if the connect clock starts later
    #: (end of greeting, start of speech): kept so the record shows both moments.
    picked_up_at: float | None = None

    def _check(self) -> None:
        _call(self, self.call_id)
        _time(self, "answered_at", self.answered_at, optional=True)
        if self.amd_verdict is not None and type(self.amd_verdict) is not str:
            _refuse(self, "amd_verdict", self.amd_verdict, "must be a str or None")
        _seconds(self, "amd_seconds", self.amd_seconds)
        _time(self, "picked_up_at", self.picked_up_at, optional=True)


@dataclass(frozen=True, slots=True)
class CallAnsweredByMachine(Event):
    """An answering machine or voicemail picked up (after detection, whose time is ``amd_seconds``)."""

    call_id: int
    amd_seconds: float | None = None

    def _check(self) -> None:
        _call(self, self.call_id)
        _seconds(self, "amd_seconds", self.amd_seconds)


@dataclass(frozen=True, slots=True)
class CallPlaced(Event):
    """The INVITE of a dialed call left for the network at ``t``.

    A runtime may take a while to place what the engine dialed (waiting for a free slot, the trunk's rate or a
    back-off after congestion). Ring time counts from here, not from the dial order, so the regulators' 15 s and
    the pacing's answer-time estimates never include the wait. Runtimes that place at once need not send it.
    """

    call_id: int

    def _check(self) -> None:
        _call(self, self.call_id)


@dataclass(frozen=True, slots=True)
class CallNotPlaced(Event):
    """Nothing left the dialer for this call (no slot, trunk backed off or down, runtime stopping).

    The lead was never dialed: it goes back to its source untouched (no attempt counted, nothing in the ledger).
    The call's record says ``placed = False`` so observers can tell it from a network failure of a real INVITE.
    """

    call_id: int
    why: str = ""

    def _check(self) -> None:
        _call(self, self.call_id)
        if type(self.why) is not str:
            _refuse(self, "why", self.why, "must be a str")


@dataclass(frozen=True, slots=True)
class MessagePlayed(Event):
    """The abandonment message's first audio went out to the person at ``started_at`` (the worker's media clock).

    Without this event an abandoned call's record says ``message_played = False``: the ledger states what was
    heard, not what was ordered.
    """

    call_id: int
    started_at: float | None = None

    def _check(self) -> None:
        _call(self, self.call_id)
        _time(self, "started_at", self.started_at, optional=True)


@dataclass(frozen=True, slots=True)
class CallFailed(Event):
    """The dial ended without an answer. ``reason`` may be given as its string value (``"busy"``)."""

    call_id: int
    reason: FailureReason

    def _check(self) -> None:
        _call(self, self.call_id)
        _member(self, "reason", self.reason, FailureReason, _FAILURE_VALUES)


@dataclass(frozen=True, slots=True)
class CallEnded(Event):
    """The far end or the runtime hung up an answered call (after talk, after the message, or while waiting)."""

    call_id: int

    def _check(self) -> None:
        _call(self, self.call_id)


@dataclass(frozen=True, slots=True)
class CallBridgeFailed(Event):
    """The runtime could not bridge a connected call to its agent: the agent's phone refused or never answered.

    Regulators count a live answer that reaches no live agent as abandoned, however the agent was lost, so the
    engine handles this like a connect-limit abandonment: the person gets the recorded message and the call is
    counted abandoned. The agent goes to paused, because a phone that just failed must not be offered the next
    call; the agent or the backend makes them ready again. ``status`` is the agent leg's SIP status (486 busy,
    480 or 408 not answered...), 0 when there was none; it is for logs, the engine treats every status alike.
    """

    call_id: int
    status: int = 0

    def _check(self) -> None:
        _call(self, self.call_id)
        if not is_integer(self.status) or not 0 <= self.status < 1000:
            _refuse(self, "status", self.status, "must be an int from 0 to 999 (a SIP status, 0 for none)")


# --- inbound calls -----------------------------------------------------------------------------------------
#
# An inbound call is named by the runtime (``inbound_id``, e.g. the SIP Call-ID), since the runtime hears of it
# first; the engine never allocates one. Ids live apart from the outbound ``call_id`` integers.


@dataclass(frozen=True, slots=True)
class InboundArrived(Event):
    """A caller rang in and was answered by the dialer's queue (they hear queue audio until an agent is free).

    The engine answers with :class:`~dialer.engine.actions.ConnectInbound` now or later, when an agent who takes
    inbound calls is free; until then the caller waits. ``inbound_id`` must not name a call still in the engine.
    """

    inbound_id: str

    def _check(self) -> None:
        _inbound(self, self.inbound_id)


@dataclass(frozen=True, slots=True)
class InboundAbandoned(Event):
    """The caller hung up before talking to an agent: while queued, or just as the engine connected them (the
    runtime had not bridged them yet). Counted abandoned; an agent already given the call is ready again."""

    inbound_id: str

    def _check(self) -> None:
        _inbound(self, self.inbound_id)


@dataclass(frozen=True, slots=True)
class InboundEnded(Event):
    """A connected inbound call is over (either side hung up): the agent goes to wrap-up."""

    inbound_id: str

    def _check(self) -> None:
        _inbound(self, self.inbound_id)


@dataclass(frozen=True, slots=True)
class InboundBridgeFailed(Event):
    """The agent's phone did not take a connected inbound caller (``status`` as in :class:`CallBridgeFailed`).

    Unlike an outbound person, an inbound caller has no connect limit: they go back to the queue in their old
    place (their wait keeps counting from their arrival) and the agent is paused, as after a failed outbound
    bridge."""

    inbound_id: str
    status: int = 0

    def _check(self) -> None:
        _inbound(self, self.inbound_id)
        if not is_integer(self.status) or not 0 <= self.status < 1000:
            _refuse(self, "status", self.status, "must be an int from 0 to 999 (a SIP status, 0 for none)")


@dataclass(frozen=True, slots=True)
class InboundBlocked(Event):
    """A caller was turned away before joining the queue (``reason``: a :class:`BlockedReason` or its value).

    Why an event for a call the engine never holds: the inbound figures must count every caller who rang, not only
    those who got in, or a floor that refuses half its callers busy would show a perfect service level. So the
    engine counts it (``stats.inbound.blocked``, and the blocking share of callers offered) and emits its
    :class:`~dialer.engine.records.InboundRecord` (outcome ``blocked``), so the ledger that keeps the other callers
    keeps this one too; nothing else changes: no agent, queue or timer is touched. The service level, the average
    speed of answer and the abandonment share keep their definitions over the callers who queued.

    ``inbound_id`` names the call if the runtime knows it (the INVITE's Call-ID; ``None`` if not). It is a label
    for the record, not a call of the engine's: it may even repeat the id of a caller still queued (a duplicate
    INVITE refused as such). ``caller`` is who rang, as the runtime saw it (``None`` if unknown).
    """

    reason: BlockedReason
    inbound_id: str | None = None
    caller: str | None = None

    def _check(self) -> None:
        _member(self, "reason", self.reason, BlockedReason, _BLOCKED_VALUES)
        if self.inbound_id is not None:
            _inbound(self, self.inbound_id)
        if self.caller is not None and type(self.caller) is not str:
            _refuse(self, "caller", self.caller, "must be a str or None")


# --- preview and manual dialing ----------------------------------------------------------------------------
#
# In preview mode (the ``preview`` pacing policy) the engine shows a lead to a ready agent
# (:class:`~dialer.engine.actions.PreviewLead`, naming the future call's ``call_id``) before anything is dialed.
# The agent dials it or skips it; the engine dials it itself after the policy's ``timeout``. Both events name
# the offer's ``call_id`` as well as the agent, so a press that crosses the engine's own timeout (or an offer
# withdrawn when dialing stopped) is recognised as late news, never applied to the agent's next lead.


def _lead(event: Event, value: Any) -> None:
    if not isinstance(value, Lead):
        _refuse(event, "lead", value, "must be a dialer.leads.Lead")
    if type(value.lead_id) is not str or not value.lead_id:
        _refuse(event, "lead", value, "must have a non-empty str lead_id")
    if type(value.phone) is not str or not value.phone:
        _refuse(event, "lead", value, "must have a non-empty str phone")


@dataclass(frozen=True, slots=True)
class PreviewDial(Event):
    """The agent pressed dial on the lead offered to them as ``call_id``: the engine dials it, the agent reserved
    for it (whoever answers is theirs at once)."""

    agent_id: str
    call_id: int

    def _check(self) -> None:
        _agent(self, self.agent_id)
        _call(self, self.call_id)


@dataclass(frozen=True, slots=True)
class PreviewSkip(Event):
    """The agent will not dial the lead offered as ``call_id``: it goes back to its source undialed (its record
    says ``placed=False`` and ``skipped=reason``) and the agent is ready for the next one. ``reason`` is free
    text for the record (``"wrong contact"``, ``"called yesterday"``)."""

    agent_id: str
    call_id: int
    reason: str = ""

    def _check(self) -> None:
        _agent(self, self.agent_id)
        _call(self, self.call_id)
        if type(self.reason) is not str:
            _refuse(self, "reason", self.reason, "must be a str")


@dataclass(frozen=True, slots=True)
class ManualDial(Event):
    """A ready agent dials ``lead`` themselves (typed or chosen), in any pacing mode.

    The engine dials only what the lead source's ``manual_lead(lead, now)`` hook returns (the same gates as
    ``next_lead``: do-not-call, calling hours, attempts; the attempt claimed), with the agent reserved for the
    call. A source without the hook, or one that answers ``None`` or a ``str`` (its reason, passed on to the
    agent), refuses the dial: the engine answers :class:`~dialer.engine.actions.DialRefused` and nothing else
    changes (fail closed).
    """

    agent_id: str
    lead: Lead

    def _check(self) -> None:
        _agent(self, self.agent_id)
        _lead(self, self.lead)


# --- campaign and time ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeAdvanced(Event):
    """Nothing happened but time passed: lets the engine fire its timers (connect limit, ring timeout, pacing)."""


@dataclass(frozen=True, slots=True)
class DialingStopped(Event):
    """Stop launching new calls (end of shift, operator pause); calls in flight run to completion."""


@dataclass(frozen=True, slots=True)
class CapacityChanged(Event):
    """The trunk can carry at most ``max_in_flight`` calls now (``None``: no limit).

    Runtimes send this when a SIP trunk signals congestion (503s, timeouts) or recovers, so pacing never launches
    calls the network cannot carry. Calls already in flight are not touched.
    """

    max_in_flight: int | None

    def _check(self) -> None:
        cap = self.max_in_flight
        if cap is not None and (not is_integer(cap) or cap < 0):
            _refuse(self, "max_in_flight", cap, "must be an int >= 0 or None")
        if cap is not None and type(cap) is not int:
            object.__setattr__(self, "max_in_flight", int(cap))


@dataclass(frozen=True, slots=True)
class DialingResumed(Event):
    """Launch calls again after :class:`DialingStopped`."""
