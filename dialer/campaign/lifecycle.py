"""The lead lifecycle: what an attempt's outcome does to a lead (retry when, stop when, lock out how long).

This is a pure function of the lead and the outcome (:func:`after_attempt`), so the rules can be read in one place
and property-tested without a store or an engine. Caps fail closed: a lead at its cap is finished, and the source
checks the caps again before every dial.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dialer.errors import ConfigError
from dialer.store import StoredLead

HOUR = 3600.0


class Disposition(StrEnum):
    """Outcomes of an attempt: the dialer's (the engine's ``Outcome`` values) and the agent's."""

    CONNECTED = "connected"
    ABANDONED = "abandoned"
    MACHINE = "machine"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    INVALID_NUMBER = "invalid_number"
    NETWORK = "network"
    INTERRUPTED = "interrupted"  # the dialer died while the call was in flight: outcome unknown
    # agent dispositions of a connected call
    COMPLETED = "completed"
    CALLBACK = "callback"
    DNC_REQUEST = "dnc_request"
    WRONG_NUMBER = "wrong_number"
    # set by the gates
    DO_NOT_CALL = "do_not_call"
    MAX_ATTEMPTS = "max_attempts"


#: Dispositions that end a lead for good: recycling never brings these back.
NEVER_AGAIN = frozenset({Disposition.DNC_REQUEST, Disposition.WRONG_NUMBER, Disposition.DO_NOT_CALL})


@dataclass(frozen=True, slots=True)
class RetryRule:
    """After this outcome: retry no sooner than ``delay`` seconds, and at most ``max_attempts`` attempts ending
    this way per pass (``None``: no per-outcome cap). ``final`` ends the lead."""

    delay: float = HOUR
    max_attempts: int | None = None
    final: bool = False

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ConfigError("retry.delay", "must be >= 0")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigError("retry.max_attempts", "must be >= 1")


def _default_rules() -> dict[str, RetryRule]:
    return {
        Disposition.NO_ANSWER: RetryRule(2 * HOUR, 6),
        Disposition.BUSY: RetryRule(600.0, 5),
        Disposition.MACHINE: RetryRule(4 * HOUR, 3),
        Disposition.ABANDONED: RetryRule(0.0, 3),  # the lockout sets the real delay
        Disposition.REJECTED: RetryRule(HOUR, 2),
        Disposition.NETWORK: RetryRule(300.0, 3),
        Disposition.INTERRUPTED: RetryRule(HOUR, 3),
        Disposition.INVALID_NUMBER: RetryRule(final=True),
        Disposition.CONNECTED: RetryRule(final=True),
        Disposition.COMPLETED: RetryRule(final=True),
        Disposition.DNC_REQUEST: RetryRule(final=True),
        Disposition.WRONG_NUMBER: RetryRule(final=True),
    }


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A campaign's retry rules.

    ``max_attempts``: attempts per pass of the list (recycling starts a new pass); ``max_total_attempts``: attempts
    ever, across passes and callbacks, never exceeded. ``abandon_lockout``: no call to a number within this many
    seconds after an abandoned call to it (72 h, Ofcom); a call whose outcome was lost in a crash is treated as
    possibly abandoned. ``max_call_seconds`` bounds when such a lost call could have been abandoned.
    Unknown agent dispositions (``sale``, ``not_interested``) end the lead.
    """

    rules: Mapping[str, RetryRule] = field(default_factory=_default_rules)
    max_attempts: int = 10
    max_total_attempts: int = 30
    abandon_lockout: float = 72 * HOUR
    max_call_seconds: float = HOUR

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_total_attempts < 1:
            raise ConfigError("retry.max_attempts", "must be >= 1")
        if self.abandon_lockout < 0:
            raise ConfigError("retry.abandon_lockout", "must be >= 0")

    def rule(self, disposition: str) -> RetryRule:
        return self.rules.get(disposition, RetryRule(final=True))

    def with_rules(self, **rules: RetryRule) -> RetryPolicy:
        return RetryPolicy(
            {**self.rules, **rules},
            self.max_attempts,
            self.max_total_attempts,
            self.abandon_lockout,
            self.max_call_seconds,
        )


def capped(lead: StoredLead, policy: RetryPolicy) -> bool:
    """Whether the lead has used up its attempts (checked again before every dial)."""
    return lead.pass_attempts >= policy.max_attempts or lead.attempts >= policy.max_total_attempts


def after_attempt(lead: StoredLead, disposition: str, ended_at: float, policy: RetryPolicy) -> dict[str, Any]:
    """The lead's column changes after an attempt ending with ``disposition`` at ``ended_at`` (epoch seconds).

    ``lead`` is the lead as claimed (its counters already include this attempt).
    """
    counts = dict(lead.outcome_counts)
    counts[disposition] = counts.get(disposition, 0) + 1
    rule = policy.rule(disposition)
    changes: dict[str, Any] = {"outcome_counts": counts, "disposition": disposition, "callback_at": None}
    if disposition in (Disposition.ABANDONED, Disposition.INTERRUPTED):
        end = ended_at + (policy.max_call_seconds if disposition == Disposition.INTERRUPTED else 0.0)
        changes["lockout_until"] = max(lead.lockout_until, end + policy.abandon_lockout)
    exhausted = (rule.max_attempts is not None and counts[disposition] >= rule.max_attempts) or capped(lead, policy)
    if rule.final or exhausted:
        changes["status"] = "done"
    else:
        changes["status"] = "ready"
        changes["next_at"] = max(lead.next_at, ended_at + rule.delay)
    return changes


def recyclable(dispositions: Iterable[str]) -> frozenset[str]:
    """Check a recycling selection: leads finished by a do-not-call or wrong-number outcome never come back."""
    chosen = frozenset(dispositions)
    bad = chosen & NEVER_AGAIN
    if bad:
        raise ConfigError("recycle", f"leads finished as {sorted(bad)} are never recycled")
    return chosen
