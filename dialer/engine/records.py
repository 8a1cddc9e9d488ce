"""What is remembered of a call once it is over.

A :class:`CallRecord` is emitted for every call the engine dialed, whatever happened, so the abandonment ledger
and the lead history can be rebuilt from records alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dialer.leads import Lead


class Outcome(StrEnum):
    """Final disposition of a dial, from the dialer's point of view (agents add their own dispositions)."""

    CONNECTED = "connected"
    ABANDONED = "abandoned"
    MACHINE = "machine"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    INVALID_NUMBER = "invalid_number"
    NETWORK = "network"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call.

    Times are on the runtime's clock. ``answered_at`` is when the connect clock started; ``wait`` is how long a
    person waited for an agent (to connect, to the message, or to hanging up). ``abandoned`` is the compliance
    flag: a live person not connected to an agent within the connect limit, including people who hung up while
    waiting, and people whose agent's phone never took the call. ``agent_lost`` marks a connected call cut because
    its agent vanished. ``bridge_failed`` marks an abandoned call that had been matched to an agent whose phone
    then refused or did not answer: ``agent_id`` names that agent, ``connected_at`` is ``None`` (nobody talked to
    the person), ``message_at`` and ``wait`` are as for any abandonment.

    Evidence for an auditor: ``placed`` is False when nothing left the dialer (the lead went back untouched);
    ``ringing_at`` is the first 180/183 (ring time is judged from it); ``message_at`` is when the message's first
    audio went out where the runtime measured it (else when it was ordered) and ``message_played`` says whether
    it played at all (``None`` for calls that needed none); ``amd_verdict``/``amd_seconds`` are the detector's
    verdict and its time after the answer (``None`` without detection); ``picked_up_at`` is the far end's 200 OK
    when the connect clock (``answered_at``) started later, at the end of the greeting or the start of speech.

    Preview and manual dialing: ``reserved_for`` names the agent the call was dialed for (whatever became of it);
    ``offered_at`` is when a previewed lead was shown to them (``dialed_at`` is when it was dialed). A previewed
    lead that was never dialed has ``placed=False``, outcome ``network`` as for any call that never left the
    dialer, and ``skipped``: the agent's reason (``""`` if none given) or ``withdrawn: <why>``.
    """

    call_id: int
    lead: Lead
    outcome: Outcome
    dialed_at: float
    ended_at: float
    answered_at: float | None = None
    connected_at: float | None = None
    agent_id: str | None = None
    message_at: float | None = None
    wait: float | None = None
    abandoned: bool = False
    customer_hung_up: bool = False
    agent_lost: bool = False
    bridge_failed: bool = False
    placed: bool = True
    ringing_at: float | None = None
    message_played: bool | None = None
    amd_verdict: str | None = None
    amd_seconds: float | None = None
    picked_up_at: float | None = None
    reserved_for: str | None = None
    offered_at: float | None = None
    skipped: str | None = None

    @property
    def live_answer(self) -> bool:
        """A person answered (the denominator of the US and UK abandonment rates)."""
        return self.outcome in (Outcome.CONNECTED, Outcome.ABANDONED)

    @property
    def talk_seconds(self) -> float:
        if self.connected_at is None:
            return 0.0
        return self.ended_at - self.connected_at


class InboundOutcome(StrEnum):
    """How an inbound call ended: talked to an agent, hung up first, or was turned away before queueing."""

    ANSWERED = "answered"
    ABANDONED = "abandoned"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """One finished inbound call; the engine emits exactly one per :class:`~dialer.engine.events.InboundArrived`
    and one per :class:`~dialer.engine.events.InboundBlocked`.

    ``wait`` is the time from arrival to the connect (answered) or to hanging up (abandoned); ``answered_at`` is
    the connect. ``group`` is the answering agent's group (``None`` when abandoned). ``agent_lost``: the agent
    vanished mid-call (the call was answered, then cut). ``bridge_failures``: agents' phones that failed to take
    the call before one did (each sent the caller back to the queue).

    A blocked caller (outcome ``blocked``) never queued: ``arrived_at == ended_at``, ``wait`` is 0, ``reason`` says
    why (a :class:`~dialer.engine.events.BlockedReason` value), ``caller`` is who rang if the runtime said, and
    ``inbound_id`` is the runtime's label, ``""`` if it had none (it need not be unique: see the event).
    """

    inbound_id: str
    outcome: InboundOutcome
    arrived_at: float
    ended_at: float
    wait: float
    answered_at: float | None = None
    agent_id: str | None = None
    group: str | None = None
    agent_lost: bool = False
    bridge_failures: int = 0
    reason: str | None = None
    caller: str | None = None

    @property
    def talk_seconds(self) -> float:
        return 0.0 if self.answered_at is None else self.ended_at - self.answered_at

    def answered_within(self, seconds: float) -> bool:
        """Answered with a wait of at most ``seconds`` (the service level's numerator)."""
        return self.outcome is InboundOutcome.ANSWERED and self.wait <= seconds
