"""Output actions: what the engine asks its runtime to do.

The runtime carries each action out on its own clock and reports the consequences back as events. Actions that
concern a call name it by ``call_id``, an integer the engine allocates when it decides to dial.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialer.engine.records import CallRecord, InboundRecord
from dialer.leads import Lead


@dataclass(frozen=True, slots=True)
class Action:
    """Base class of everything the engine asks for."""


@dataclass(frozen=True, slots=True)
class DialLead(Action):
    """Place a call to ``lead``. ``ring_timeout`` (seconds, or ``None`` for the network's own) bounds ringing."""

    call_id: int
    lead: Lead
    ring_timeout: float | None


@dataclass(frozen=True, slots=True)
class ConnectCall(Action):
    """Bridge the answered call to the agent, now: the agent is already marked on the call.

    A runtime whose bridge fails (the agent's phone refuses or never answers) keeps the person on the line and
    reports :class:`~dialer.engine.events.CallBridgeFailed`: the engine answers with the abandonment message."""

    call_id: int
    agent_id: str


@dataclass(frozen=True, slots=True)
class PlayAbandonMessage(Action):
    """No live agent for this person (the connect limit ran out, or the agent's phone failed): play the recorded
    message and hang up. Already counted as abandoned."""

    call_id: int


@dataclass(frozen=True, slots=True)
class HangUp(Action):
    """Hang up the call (machine answered, ring timeout reached, or the agent vanished)."""

    call_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Alert(Action):
    """Something an operator must know. ``kind="fault"``: a part the engine relies on (the lead source, the
    policy) failed; the engine has stopped dialing (fail closed) until a ``DialingResumed`` event, and kept every
    record it could not hand over in ``engine.unreported``."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class RecordCall(Action):
    """A call is over: persist its record. Emitted exactly once per dialed call, so no outcome is ever lost."""

    record: CallRecord


@dataclass(frozen=True, slots=True)
class ConnectInbound(Action):
    """Bridge the queued inbound caller to the agent, now: the agent is already marked on the call. A bridge that
    fails is reported with :class:`~dialer.engine.events.InboundBridgeFailed` (the caller goes back to the
    queue); a caller who hung up meanwhile with :class:`~dialer.engine.events.InboundAbandoned`."""

    inbound_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class HangUpInbound(Action):
    """Hang up an inbound call (``reason="agent_lost"``: its agent vanished mid-call)."""

    inbound_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordInbound(Action):
    """An inbound call is over: persist its record. Emitted exactly once per inbound call."""

    record: InboundRecord


@dataclass(frozen=True, slots=True)
class PreviewLead(Action):
    """Preview mode: show ``lead`` to ``agent_id``, who is now reserved for it. Nothing is dialed yet.

    The agent answers with :class:`~dialer.engine.events.PreviewDial` or
    :class:`~dialer.engine.events.PreviewSkip`, naming ``call_id``; if neither comes by ``dial_at`` (engine time;
    ``None``: the engine waits for the agent), the engine dials the lead itself. Dialing is an ordinary
    :class:`DialLead` with this ``call_id``; a person who answers it gets :class:`ConnectCall` to this agent at
    once."""

    call_id: int
    agent_id: str
    lead: Lead
    dial_at: float | None


@dataclass(frozen=True, slots=True)
class PreviewWithdrawn(Action):
    """The engine took back the lead shown to ``agent_id`` as ``call_id`` without dialing it: ``reason`` is
    ``dialing_stopped``, ``agent_paused`` or ``agent_logged_out``. Clear it from the agent's screen; a dial press
    for it that crosses this action is ignored as late news."""

    call_id: int
    agent_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class DialRefused(Action):
    """An agent's :class:`~dialer.engine.events.ManualDial` was not dialed: ``reason`` says why (the lead source
    refused it or cannot check it, dialing is stopped, the trunk is full). The agent is still ready."""

    agent_id: str
    lead: Lead
    reason: str
