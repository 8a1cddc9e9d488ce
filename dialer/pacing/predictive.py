"""Predictive pacing: launch as many calls as the expected supply of agents can absorb within an abandonment budget.

Model (first version; the estimators and horizon are deliberately simple and will deepen):

* Over the horizon of one mean time-to-answer, the agents available are the ready ones plus each busy agent that
  comes free with probability ``1 - exp(-H / mean remaining)`` (memoryless handle and wrap times).
* The people who will need an agent are those already waiting plus each unanswered call, and each new call, with
  the estimated live-answer probability.
* Abandonments expected from this cohort are ``E[(answers - agents)+]`` under a normal approximation of both sums.
  We launch the largest number of calls that keeps that expectation within ``budget x E[answers]``.

The budget is the target abandonment rate scaled by a slow integral controller on the abandonment actually
observed over ``window`` seconds, so a model error is corrected before the regulator's window closes. Until enough
answers have been seen, or with very few agents, it dials progressively: blind pacing is how dialers break the law.
"""

from __future__ import annotations

import math

from dialer.engine.records import CallRecord
from dialer.engine.snapshot import Snapshot
from dialer.errors import ConfigError
from dialer.pacing.base import PacingPolicy

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


def expected_excess(mu: float, var: float) -> float:
    """``E[max(X, 0)]`` for ``X ~ Normal(mu, var)``."""
    if var <= 1e-12:
        return max(mu, 0.0)
    sd = math.sqrt(var)
    z = mu / sd
    cdf = 0.5 * (1.0 + math.erf(z / _SQRT2))
    pdf = _INV_SQRT2PI * math.exp(-0.5 * z * z)
    return mu * cdf + sd * pdf


class _Ewma:
    """An exponentially weighted mean warm-started from a prior worth ``weight`` observations."""

    __slots__ = ("alpha", "n", "value")

    def __init__(self, prior: float, weight: float, alpha: float) -> None:
        self.value = prior
        self.alpha = alpha
        self.n = -weight  # observations beyond the prior's weight

    def add(self, x: float) -> None:
        self.n += 1
        # Plain running mean while the prior still dominates, then forget at rate alpha to follow drift.
        weight = max(self.alpha, 1.0 / (self.n + 1.0 + 2.0 * max(0.0, -self.n))) if self.n < 0 else self.alpha
        self.value += weight * (x - self.value)


class Predictive(PacingPolicy):
    """Expected-overflow predictive pacing held to ``target_abandon_rate``."""

    name = "predictive"

    def __init__(
        self,
        target_abandon_rate: float = 0.03,
        *,
        prior_answer_rate: float = 0.3,
        prior_time_to_answer: float = 15.0,
        prior_handle_time: float = 120.0,
        warmup_answers: int = 20,
        min_agents: int = 2,
        window: float = 3600.0,
        gain: float = 0.5,
        max_lines_per_agent: float = 5.0,
    ) -> None:
        if not 0.0 <= target_abandon_rate < 1.0:
            raise ConfigError("target_abandon_rate", "must be in [0, 1)")
        if not 0.0 < prior_answer_rate <= 1.0:
            raise ConfigError("prior_answer_rate", "must be in (0, 1]")
        if max_lines_per_agent < 1.0:
            raise ConfigError("max_lines_per_agent", "must be >= 1")
        self.target = target_abandon_rate
        self.warmup_answers = warmup_answers
        self.min_agents = min_agents
        self.window = window
        self.gain = gain
        self.max_lines_per_agent = max_lines_per_agent
        self.answer_rate = _Ewma(prior_answer_rate, 50.0, 0.005)
        self.time_to_answer = _Ewma(prior_time_to_answer, 10.0, 0.01)
        self.handle_time = _Ewma(prior_handle_time, 10.0, 0.01)
        self.scale = 1.0
        self._next_adjust: float | None = None
        self._answers_seen = 0

    def observe(self, record: CallRecord) -> None:
        self.answer_rate.add(1.0 if record.live_answer else 0.0)
        if record.answered_at is not None:
            self.time_to_answer.add(record.answered_at - record.dialed_at)
        if record.live_answer:
            self._answers_seen += 1
        if record.connected_at is not None and not record.agent_lost:
            self.handle_time.add(record.ended_at - record.connected_at)

    def _adjust(self, snap: Snapshot) -> None:
        """Integral control on the observed abandonment rate over the recent window."""
        now = snap.now
        if self._next_adjust is None:
            self._next_adjust = now + 30.0
            return
        if now < self._next_adjust:
            return
        self._next_adjust = now + 30.0
        recent = snap.stats.recent
        if recent.live_answers < 30 or self.target <= 0:
            return
        observed = recent.abandoned / recent.live_answers
        error = (self.target - observed) / self.target
        self.scale *= math.exp(self.gain * max(-1.0, min(1.0, error)) * 0.2)
        self.scale = min(2.0, max(0.1, self.scale))

    def decide(self, snap: Snapshot) -> int:
        progressive = max(0, snap.ready - snap.ringing - snap.queued)
        if self._answers_seen < self.warmup_answers or snap.non_paused < self.min_agents or self.target <= 0:
            return progressive
        self._adjust(snap)
        p = min(max(self.answer_rate.value, 1e-3), 1.0)
        horizon = max(self.time_to_answer.value, 1.0)
        handle = max(self.handle_time.value, 1.0)
        # Agents who will be free over the horizon.
        free_mu = float(snap.ready)
        free_var = 0.0
        f = 1.0 - math.exp(-horizon / handle)
        busy = snap.on_call + snap.wrap_up
        free_mu += busy * f
        free_var += busy * f * (1.0 - f)
        # People who will need an agent: those waiting now plus each call still ringing.
        base_mu = snap.queued + snap.ringing * p
        base_var = snap.ringing * p * (1.0 - p)
        budget = self.target * self.scale
        limit = int(self.max_lines_per_agent * snap.non_paused) - snap.in_flight
        n = 0
        while n < limit:
            k = n + 1
            mu = base_mu + k * p
            var = base_var + k * p * (1.0 - p) + free_var
            if expected_excess(mu - free_mu, var) > budget * mu:
                break
            n = k
        return max(n, progressive)
