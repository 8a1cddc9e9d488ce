"""Issabel's call-center dialer rule, re-implemented as a baseline.

Issabel (an Elastix fork) ships the call-center module many small Asterisk shops use for outbound campaigns. Its
pacing has no abandonment controller: it counts the agents that are free or "about to be free" and places that
many calls, optionally divided by the recent answer rate (over-commit). It is the typical rule of thumb of
open-source dialers, so the frontier sweep shows what it costs in abandonment and in talk time.

Rule (see docs/pacing.md): calls = free agents + busy agents judged about to free - callers already waiting -
calls still ringing. A busy agent ``t`` seconds into a call is about to free when
``1 - exp(-(t + avg_answer_time) / avg_duration) >= 0.97``. With ``overcommit``, the agent count is divided by
the answer rate of the last 30 minutes, floored at 0.2.
"""

from __future__ import annotations

import math
from collections import deque

from dialer.engine.records import CallRecord, Outcome
from dialer.engine.snapshot import Snapshot
from dialer.engine.state import AgentState
from dialer.errors import ConfigError
from dialer.pacing.base import PacingPolicy


class Issabel(PacingPolicy):
    """Issabel-style pacing: free plus about-to-free agents, optionally over-committed by the answer rate."""

    name = "issabel"

    def __init__(
        self,
        *,
        overcommit: bool = True,
        threshold: float = 0.97,
        window: float = 1800.0,
        min_answer_rate: float = 0.2,
        prior_answer_time: float = 15.0,
        prior_duration: float = 120.0,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ConfigError("threshold", "must be in (0, 1)")
        if window <= 0:
            raise ConfigError("window", "must be > 0")
        if not 0.0 < min_answer_rate <= 1.0:
            raise ConfigError("min_answer_rate", "must be in (0, 1]")
        if prior_answer_time < 0 or prior_duration <= 0:
            raise ConfigError("prior_duration", "prior times must be positive")
        self.overcommit = overcommit
        self.threshold = threshold
        self.window = window
        self.min_answer_rate = min_answer_rate
        self._dials: deque[tuple[float, bool]] = deque()  # (ended_at, answered by a person)
        self._answer_times: deque[tuple[float, float]] = deque()
        self._durations: deque[tuple[float, float]] = deque()
        self._prior = (prior_answer_time, prior_duration)

    def observe(self, record: CallRecord) -> None:
        if record.outcome in (Outcome.REJECTED, Outcome.INVALID_NUMBER, Outcome.NETWORK):
            return
        self._dials.append((record.ended_at, record.live_answer))
        if record.answered_at is not None and record.live_answer:
            self._answer_times.append((record.ended_at, record.answered_at - record.dialed_at))
        if record.connected_at is not None and not record.agent_lost:
            self._durations.append((record.ended_at, record.ended_at - record.connected_at))

    def _expire(self, now: float) -> None:
        cutoff = now - self.window
        for q in (self._dials, self._answer_times, self._durations):
            while q and q[0][0] < cutoff:
                q.popleft()

    def decide(self, snap: Snapshot) -> int:
        self._expire(snap.now)
        answer_time = _mean(self._answer_times, self._prior[0])
        duration = max(_mean(self._durations, self._prior[1]), 1e-6)
        # 1 - exp(-(t + a) / d) >= threshold  <=>  t >= -d ln(1 - threshold) - a
        soon = -duration * math.log(1.0 - self.threshold) - answer_time
        about_to_free = sum(1 for state, t in snap.busy_agent_times() if state is AgentState.ON_CALL and t >= soon)
        agents = snap.ready + about_to_free
        if self.overcommit and self._dials:
            rate = sum(live for _, live in self._dials) / len(self._dials)
            agents = math.floor(agents / max(rate, self.min_answer_rate))
        return max(0, agents - snap.queued - snap.ringing)


def _mean(items: deque[tuple[float, float]], prior: float) -> float:
    return sum(v for _, v in items) / len(items) if items else prior
