"""How a SIP final response becomes an engine outcome.

Kept apart from pjsua2 so the table can be read and tested without a SIP stack. The mapping follows what a
dialer must *do* next, not the RFC's classes: a busy line is retried later, an invalid number marks the lead,
and a congested trunk is the network's fault (no lead penalty) and slows the whole trunk down.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialer.engine.events import FailureReason

#: Our own CANCEL (ring timeout, hang-up before answer) ends the INVITE with this code.
REQUEST_TERMINATED = 487


@dataclass(frozen=True, slots=True)
class SipOutcome:
    """What a failed dial means. ``congestion``: the trunk (not the callee) failed, back off and lower capacity."""

    reason: FailureReason
    congestion: bool = False

    @property
    def invalid_number(self) -> bool:
        return self.reason is FailureReason.INVALID_NUMBER


_BUSY = frozenset({486, 600})
_NO_ANSWER = frozenset({408, 480, REQUEST_TERMINATED})
_INVALID = frozenset({404, 410, 484, 604})
_CONGESTION = frozenset({500, 502, 503, 504})


def classify(status: int, *, local_timeout: bool = False) -> SipOutcome:
    """Map a final SIP status of an unanswered INVITE.

    ``local_timeout`` is set when no response arrived at all (transaction or transport timeout): that is the
    trunk's failure even though pjsip reports it as 408, so it counts as congestion rather than no answer.
    Unknown codes fail safe: 5xx is congestion, anything else is a rejection (the lead is not marked invalid on a
    guess).
    """
    if local_timeout or status <= 0:
        return SipOutcome(FailureReason.NETWORK, congestion=True)
    if status in _BUSY:
        return SipOutcome(FailureReason.BUSY)
    if status in _NO_ANSWER:
        return SipOutcome(FailureReason.NO_ANSWER)
    if status in _INVALID:
        return SipOutcome(FailureReason.INVALID_NUMBER)
    if status in _CONGESTION or 500 <= status < 600:
        return SipOutcome(FailureReason.NETWORK, congestion=True)
    return SipOutcome(FailureReason.REJECTED)
