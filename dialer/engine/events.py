"""Input events: what a runtime tells the engine happened, and when.

Every event carries ``t``, the time in seconds on the runtime's clock (simulated seconds under SimPy, epoch
seconds live). The engine has no clock of its own: time only moves when an event says so, and it may never move
backwards. Events are small frozen dataclasses so they can be logged, replayed and compared in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FailureReason(StrEnum):
    """Why a dial did not reach anybody; each maps to a lead disposition and a retry rule."""

    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    INVALID_NUMBER = "invalid_number"
    NETWORK = "network"


@dataclass(frozen=True, slots=True)
class Event:
    """Base class: every event happens at a time ``t`` (seconds)."""

    t: float


# --- agents -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentLoggedIn(Event):
    """An agent joined the campaign. Agents start paused: they take calls only after :class:`AgentReady`."""

    agent_id: str


@dataclass(frozen=True, slots=True)
class AgentReady(Event):
    """A paused agent is available for calls."""

    agent_id: str


@dataclass(frozen=True, slots=True)
class AgentPaused(Event):
    """A ready agent (or one finishing wrap-up) stops taking calls for a while."""

    agent_id: str


@dataclass(frozen=True, slots=True)
class AgentLoggedOut(Event):
    """An agent left, possibly mid-call (a vanished softphone): the call is hung up and still recorded."""

    agent_id: str


@dataclass(frozen=True, slots=True)
class WrapUpDone(Event):
    """An agent finished after-call work and is ready again (or paused, if ``pause`` is set)."""

    agent_id: str
    pause: bool = False


# --- calls ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRinging(Event):
    """The network reports the far end is alerting (SIP 180/183). Optional: a call may be answered from dialing."""

    call_id: int


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


@dataclass(frozen=True, slots=True)
class CallAnsweredByMachine(Event):
    """An answering machine or voicemail picked up (after detection, whose time is ``amd_seconds``)."""

    call_id: int
    amd_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class CallPlaced(Event):
    """The INVITE of a dialed call left for the network at ``t``.

    A runtime may take a while to place what the engine dialed (waiting for a free slot, the trunk's rate or a
    back-off after congestion). Ring time counts from here, not from the dial order, so the regulators' 15 s and
    the pacing's answer-time estimates never include the wait. Runtimes that place at once need not send it.
    """

    call_id: int


@dataclass(frozen=True, slots=True)
class CallNotPlaced(Event):
    """Nothing left the dialer for this call (no slot, trunk backed off or down, runtime stopping).

    The lead was never dialed: it goes back to its source untouched (no attempt counted, nothing in the ledger).
    The call's record says ``placed = False`` so observers can tell it from a network failure of a real INVITE.
    """

    call_id: int
    why: str = ""


@dataclass(frozen=True, slots=True)
class MessagePlayed(Event):
    """The abandonment message's first audio went out to the person at ``started_at`` (the worker's media clock).

    Without this event an abandoned call's record says ``message_played = False``: the ledger states what was
    heard, not what was ordered.
    """

    call_id: int
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class CallFailed(Event):
    """The dial ended without an answer."""

    call_id: int
    reason: FailureReason


@dataclass(frozen=True, slots=True)
class CallEnded(Event):
    """The far end or the runtime hung up an answered call (after talk, after the message, or while waiting)."""

    call_id: int


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


@dataclass(frozen=True, slots=True)
class DialingResumed(Event):
    """Launch calls again after :class:`DialingStopped`."""
