"""Predictive pacing: launch as many calls as the agents coming free can absorb, within an abandonment budget.

Theory of operation
-------------------
The decision looks a short horizon ahead: the time a new call needs to be answered (up to the 95th percentile
of the live time-to-answer). At ``K`` points ``tau_k`` of that horizon it forecasts

* **demand** ``A_k``: people needing an agent by ``tau_k`` -- those already waiting, and every ringing call with
  its own probability of a live answer given how long it has rung (:class:`~dialer.pacing.estimators.RingModel`);
* **supply** ``S_k``: agents free by ``tau_k`` plus the connect limit -- ready ones, and each busy agent with its
  own probability of being free given how long it has talked or wrapped, less the chance of a break
  (:class:`~dialer.pacing.estimators.AgentModel`).

Both are sums of independent Bernoullis, approximated as normal. The ``n``-th new call, if a person answers it
at ``tau_k``, is abandoned when everyone else answering by then has already taken the agents free by then:
its *marginal risk* is ``P(A_k + (n - 1) new - S_k >= 0)``, averaged over when it would be answered. We launch
the largest ``n`` whose marginal risk stays under a threshold. That is the shape of the exact optimum of the
Markov model (sim/markov.py): a constrained MDP's optimal policy launches while the marginal call's abandonment
cost, priced by a Lagrange multiplier, is below its value; here the threshold plays the multiplier and a
closed loop finds it. It compares a distribution of answers against a distribution of free agents over time,
not a single ratio.

The threshold closes the loop on the regulator's window (:class:`AbandonLedger`: rolling hours, calendar day,
or the FTC's successive 30-day campaign periods). What the window has left is spread over the next
``spread_answers`` live answers, with a reserve for bad luck, so a window with slack spends it and a window
near the cap tightens to progressive before crossing it; a guard on the next 30 answers against the cap itself
bounds the threshold whatever the model believes (the marginal risk bounds the average). A slow second loop
rescales the threshold when the abandonment observed differs from what was intended (model error, drift).

Safe when blind: until ``warmup_answers`` live answers have been seen, or with fewer than ``min_agents``
agents, it dials progressively, and the live-answer rate it plans with is an upper credible bound (more answers
predicted = fewer calls launched), which tightens as evidence accumulates.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any, Literal

from dialer.engine.records import CallRecord, Outcome
from dialer.engine.snapshot import Snapshot
from dialer.engine.state import AgentState
from dialer.errors import ConfigError
from dialer.pacing.base import PacingPolicy

if TYPE_CHECKING:
    from dialer.pacing.estimators import AgentModel, FloatArray, OutcomeEstimator, RingModel

WindowKind = Literal["rolling", "day", "campaign"]
WINDOWS: tuple[WindowKind, ...] = ("rolling", "day", "campaign")
DAY = 86400.0


class AbandonLedger:
    """Abandonments and live answers on the regulator's window, attributed to the time the person answered.

    ``kind``: ``"rolling"`` (the last ``hours`` hours, Amazon Connect style), ``"day"`` (calendar day from the
    local midnight ``day_offset`` seconds before clock zero, Ofcom), or ``"campaign"`` (successive 30-day periods
    from the first call, FTC/FCC). Records arrive when calls end, a few seconds after the answer; that lag only
    delays the loop, it loses nothing.
    """

    def __init__(self, kind: WindowKind = "day", *, hours: float = 24.0, day_offset: float = 0.0) -> None:
        if kind not in WINDOWS:
            raise ConfigError("window", f"must be one of {', '.join(WINDOWS)}, got {kind!r}")
        if not 1.0 <= hours <= 24.0:
            raise ConfigError("window_hours", f"must be between 1 and 24, got {hours}")
        self.kind: WindowKind = kind
        self.span = hours * 3600.0
        self.day_offset = day_offset
        self._events: deque[tuple[float, bool]] = deque()
        self._key: int | None = None
        self._start_day: int | None = None
        self.live = 0
        self.abandoned = 0

    def _window_key(self, t: float) -> int:
        day = int((t + self.day_offset) // DAY)
        if self.kind == "day":
            return day
        if self._start_day is None:
            self._start_day = day
        return (day - self._start_day) // 30

    def add(self, answered_at: float, abandoned: bool) -> None:
        if self.kind == "rolling":
            self._events.append((answered_at, abandoned))
        else:
            key = self._window_key(answered_at)
            if key != self._key:
                if self._key is not None and key < self._key:
                    return  # a straggler from a closed window: already reported there
                self._key, self.live, self.abandoned = key, 0, 0
        self.live += 1
        self.abandoned += abandoned

    def roll(self, now: float) -> None:
        """Drop what has left the window by ``now``."""
        if self.kind == "rolling":
            cutoff = now - self.span
            ev = self._events
            while ev and ev[0][0] < cutoff:
                _, ab = ev.popleft()
                self.live -= 1
                self.abandoned -= ab
        elif self._key is not None and self._window_key(now) != self._key:
            self._key, self.live, self.abandoned = None, 0, 0

    @property
    def rate(self) -> float:
        return self.abandoned / self.live if self.live else 0.0


class Predictive(PacingPolicy):
    """Forecast-based predictive pacing held to ``target_abandon_rate`` on the regulator's window.

    Main knobs: ``window`` (``"rolling"``, ``"day"``, ``"campaign"``) and ``window_hours`` (rolling only);
    ``safety``, the share of the target kept in reserve; ``spread_answers``, how many coming answers the remaining
    budget is spread over; ``confidence``, how many posterior standard deviations of pessimism the live-answer
    rate gets; ``caution``, how many standard deviations of bad luck the window's remaining budget keeps in
    reserve. Priors (``prior_*``) describe the campaign before any call is seen.
    """

    name = "predictive"

    def __init__(
        self,
        target_abandon_rate: float = 0.03,
        *,
        window: WindowKind = "day",
        window_hours: float = 24.0,
        day_offset: float = 0.0,
        safety: float = 0.05,
        spread_answers: float = 300.0,
        confidence: float = 1.0,
        caution: float = 1.0,
        prior_answer_rate: float = 0.3,
        prior_machine_rate: float = 0.1,
        prior_busy_rate: float = 0.05,
        prior_time_to_answer: float = 15.0,
        prior_no_answer_after: float = 25.0,
        prior_talk_time: float = 120.0,
        prior_wrap_time: float = 0.0,
        answer_half_life: float = 1500.0,
        duration_window: int = 1000,
        warmup_answers: int = 20,
        min_agents: int = 2,
        horizon_points: int = 8,
        horizon_quantile: float = 0.95,
        gain: float = 0.3,
        max_lines_per_agent: float = 5.0,
        refresh_seconds: float = 30.0,
        walk_threshold: int = 400,
        walk_every: int = 200,
        walk_seconds: float = 5.0,
    ) -> None:
        from dialer.pacing import estimators as est

        if not 0.0 <= target_abandon_rate < 1.0:
            raise ConfigError("target_abandon_rate", "must be in [0, 1)")
        if not 0.0 < prior_answer_rate <= 1.0:
            raise ConfigError("prior_answer_rate", "must be in (0, 1]")
        if not 0.0 <= safety < 1.0:
            raise ConfigError("safety", "must be in [0, 1)")
        if spread_answers < 1:
            raise ConfigError("spread_answers", "must be >= 1")
        if confidence < 0:
            raise ConfigError("confidence", "must be >= 0")
        if caution < 0:
            raise ConfigError("caution", "must be >= 0")
        if max_lines_per_agent < 1.0:
            raise ConfigError("max_lines_per_agent", "must be >= 1")
        if not 0.1 <= horizon_quantile <= 0.999:
            raise ConfigError("horizon_quantile", "must be between 0.1 and 0.999")
        if not 1 <= horizon_points <= 50:
            raise ConfigError("horizon_points", "must be between 1 and 50")
        if refresh_seconds <= 0:
            raise ConfigError("refresh_seconds", "must be > 0")
        if gain < 0:
            raise ConfigError("gain", "must be >= 0")
        self.target = target_abandon_rate
        self.safety = safety
        self.spread = spread_answers
        self.confidence = confidence
        self.caution = caution
        self.warmup_answers = warmup_answers
        self.min_agents = min_agents
        self.gain = gain
        self.max_lines_per_agent = max_lines_per_agent
        self.refresh_seconds = refresh_seconds
        self.horizon_points = horizon_points
        self.horizon_quantile = horizon_quantile
        self.walk_threshold = walk_threshold
        self.walk_every = walk_every
        self.walk_seconds = walk_seconds
        self._cache: _Floor | None = None
        self.ledger = AbandonLedger(window, hours=window_hours, day_offset=day_offset)
        self.outcomes: OutcomeEstimator = est.OutcomeEstimator(
            {"live": prior_answer_rate, "machine": prior_machine_rate, "busy": prior_busy_rate},
            half_life=answer_half_life,
        )
        ring = [
            est.DurationEstimator(prior_time_to_answer, window=duration_window),
            est.DurationEstimator(prior_time_to_answer, window=duration_window),
            est.DurationEstimator(3.0, window=duration_window),
            est.DurationEstimator(prior_no_answer_after, window=duration_window),
        ]
        self.ring: RingModel = est.RingModel(self.outcomes, ring)
        self.agents: AgentModel = est.AgentModel(
            est.DurationEstimator(prior_talk_time, window=duration_window), prior_wrap=prior_wrap_time
        )
        self.scale = 2.0  # the marginal risk admitted is about twice the average it produces
        self.answers_seen = 0
        self._recent: deque[tuple[float, bool]] = deque()  # (answered_at, abandoned), last 15 minutes
        self._intended = 0.0  # time-weighted mean budget recently used, what the model was asked to deliver
        self._last_t: float | None = None
        self._next_adjust: float | None = None
        self._tables: _Tables | None = None
        self._tables_at = -math.inf
        self._stale = True
        self.last_budget = 0.0

    # -- learning ---------------------------------------------------------------------------------------

    def observe(self, record: CallRecord) -> None:
        o = record.outcome
        est = self.ring.times
        ring_time = (record.answered_at if record.answered_at is not None else record.ended_at) - record.dialed_at
        if record.live_answer:
            self.outcomes.add(0)
            est[0].add(ring_time)
            self.answers_seen += 1
            answered = record.answered_at if record.answered_at is not None else record.ended_at
            self.ledger.add(answered, record.abandoned)
            self._recent.append((answered, record.abandoned))
        elif o is Outcome.MACHINE:
            self.outcomes.add(1)
            est[1].add(ring_time)
        elif o is Outcome.BUSY:
            self.outcomes.add(2)
            est[2].add(ring_time)
        elif o is Outcome.NO_ANSWER:
            self.outcomes.add(3)
            est[3].add(ring_time)
        # Rejected, invalid and network failures say nothing about people; they are not pacing evidence.
        if record.connected_at is not None and not record.agent_lost:
            self.agents.talk.add(record.ended_at - record.connected_at)
        self._stale = True

    # -- the loop on the regulator's window ---------------------------------------------------------------

    def budget(self, now: float) -> float:
        """Abandonment risk allowed per call right now: what the window has left, spent with a reserve for luck.

        For a look-ahead of ``S`` answers, launching at rate ``b`` adds about ``Poisson(b S)`` abandonments; we
        want ``spent + b S + caution x sqrt(b S)`` to stay within the cap's allowance ``rate x (answers + S)``.
        Two look-aheads are checked: the next ``spread_answers`` (aiming at the goal, the target less the safety
        share, so slack is spent gradually) and the next 30 (against the target itself, so a window that is near
        the cap now stops at once: the window may close at any moment). The smaller answer wins.
        """
        self.ledger.roll(now)
        led = self.ledger
        goal = self.target * (1.0 - self.safety)
        spend = self._allowance(goal, self.spread, led.live, led.abandoned)
        guard = self._allowance(self.target, 30.0, led.live, led.abandoned)
        # The model-error scale applies to spending; the guard is a hard limit: the marginal call's risk bounds
        # the average, so a threshold under the guard keeps the window under the cap whatever the model thinks.
        return min(min(spend, 2.0 * goal) * self.scale, guard)

    def _allowance(self, rate: float, horizon: float, live: int, abandoned: int) -> float:
        room = rate * (live + horizon) - abandoned
        if room <= 0:
            return 0.0
        u = (-self.caution + math.sqrt(self.caution**2 + 4.0 * room)) / 2.0
        return u * u / horizon

    def _adjust(self, now: float, budget: float) -> None:
        """Slow multiplicative correction of model error: observed vs intended abandonment, last 15 minutes."""
        if self._last_t is not None and now > self._last_t:
            k = math.exp(-(now - self._last_t) / 900.0)
            self._intended = self._intended * k + budget / max(self.scale, 1e-9) * (1.0 - k)
        self._last_t = now
        if self._next_adjust is None:
            self._next_adjust = now + 30.0
            self._intended = budget / max(self.scale, 1e-9)
            return
        if now < self._next_adjust:
            return
        self._next_adjust = now + 30.0
        recent = self._recent
        while recent and recent[0][0] < now - 900.0:
            recent.popleft()
        n = len(recent)
        if n < 30 or self.target <= 0:
            return
        observed = sum(ab for _, ab in recent) / n
        intended = max(self._intended, 0.1 * self.target)
        # Log-ratio error, damped by the evidence: 30 answers move the scale little, 300 move it fully.
        error = math.log((intended + 0.5 / n) / (observed + 0.5 / n))
        weight = n / (n + 100.0)
        self.scale *= math.exp(self.gain * weight * max(-1.0, min(1.0, error)))
        self.scale = min(20.0, max(0.1, self.scale))

    # -- deciding ---------------------------------------------------------------------------------------

    def _refresh(self, snap: Snapshot) -> _Tables:
        if self._tables is None or (self._stale and snap.now - self._tables_at >= self.refresh_seconds):
            self._tables = _Tables.build(self, snap.connect_limit)
            self._tables_at = snap.now
            self._stale = False
        return self._tables

    def decide(self, snap: Snapshot) -> int:
        progressive = max(0, snap.ready - snap.ringing - snap.queued)
        self.agents.sample_floor(snap.now, snap.on_call, snap.wrap_up, snap.paused)
        if self.target <= 0 or self.answers_seen < self.warmup_answers or snap.non_paused < self.min_agents:
            return progressive
        budget = self.budget(snap.now)
        self._adjust(snap.now, budget)
        self.last_budget = budget
        limit = int(self.max_lines_per_agent * snap.non_paused) - snap.in_flight
        if budget <= 0.0 or limit <= progressive:
            return max(0, min(progressive, limit) if limit > 0 else progressive)
        n = max(progressive, self._tables_decide(snap, budget, limit))
        if self._cache is not None and n:
            self._cache.launched.append((snap.now, n))
        return n

    def _floor(self, snap: Snapshot) -> _Floor:
        """The ringing calls' ages and busy agents' times, walked afresh or from the cache on big floors."""
        big = snap.in_flight + snap.on_call + snap.wrap_up >= self.walk_threshold
        c = self._cache
        if big and c is not None and c.decisions < self.walk_every and snap.now - c.at < self.walk_seconds:
            c.decisions += 1
            return c
        self._cache = _Floor.walk(snap) if big else None
        return self._cache if self._cache is not None else _Floor.walk(snap)

    def _tables_decide(self, snap: Snapshot, budget: float, limit: int) -> int:
        import numpy as np

        t = self._refresh(snap)
        K = t.taus.size
        floor = self._floor(snap)
        a_mu = np.full(K, float(snap.queued))
        a_var = np.zeros(K)
        s_mu = np.full(K, float(snap.ready))
        s_var = np.zeros(K)
        # A weight w on an entry stands for w calls (or agents) alike: mean w q, variance w q (1 - q).
        for ages, weight in ((floor.ring_ages(snap.now), floor.ring_weight(snap)), floor.launched_ages(snap.now)):
            if ages.size:
                q = t.ring[:, np.minimum((ages * t.inv_ring_dt).astype(np.intp), t.ring.shape[1] - 1)]
                wq = q * weight
                a_mu += wq.sum(axis=1)
                a_var += (wq * (1.0 - q)).sum(axis=1)
        talk, talk_weight = floor.talk_elapsed(snap)
        if talk.size:
            q = t.talk[:, np.minimum((talk * t.inv_talk_dt).astype(np.intp), t.talk.shape[1] - 1)]
            wq = q * talk_weight
            s_mu += wq.sum(axis=1)
            s_var += (wq * (1.0 - q)).sum(axis=1)
        if snap.wrap_up:
            wrap = floor.wrap_elapsed(snap)
            if wrap is None:
                # Between walks, wrap-ups in progress are taken as spread evenly over the wrap time.
                share = np.minimum(1.0, t.supply_taus / max(t.wrap_mean, 1e-9))
                s_mu += snap.wrap_up * share * t.stay
            else:
                s_mu += (wrap[None, :] + t.supply_taus[:, None] >= t.wrap_mean).sum(axis=1) * t.stay
        new = t.ring[:, 0]  # P(a new call is answered live by tau_k)
        gap_mu = (a_mu - s_mu + 0.5).tolist()  # continuity correction: integer demand against integer supply
        gap_var = (a_var + s_var).tolist()
        nm = new.tolist()
        nv = (new * (1.0 - new)).tolist()
        total = nm[-1]
        weights = [(nm[k] - (nm[k - 1] if k else 0.0)) / total if total > 0 else 1.0 / K for k in range(K)]
        theta = budget

        def risk(n: int) -> float:
            """P(the n-th new call, if answered, finds no agent): demand from everyone else against supply,
            at the moment it is answered, averaged over when that is."""
            m = n - 1
            r = 0.0
            for k in range(K):
                var = gap_var[k] + m * nv[k]
                mu = gap_mu[k] + m * nm[k]
                if var <= 1e-12:
                    r += weights[k] * (1.0 if mu > 0 else 0.0)
                else:
                    r += weights[k] * 0.5 * (1.0 + math.erf(mu / math.sqrt(2.0 * var)))
            return r

        if risk(1) > theta:
            return 0
        lo, hi = 1, 2
        while hi <= limit and risk(hi) <= theta:
            lo, hi = hi, hi * 2
        hi = min(hi, limit + 1)
        while hi - lo > 1:  # risk(lo) <= theta and (hi > limit or risk(hi) > theta)
            mid = (lo + hi) // 2
            if risk(mid) <= theta:
                lo = mid
            else:
                hi = mid
        return min(lo, limit)

    def describe(self) -> dict[str, Any]:
        """The current estimates, for logs and dashboards."""
        p = self.outcomes.probabilities()
        return {
            "live_answer_rate": float(p[0]),
            "live_answer_rate_sd": float(self.outcomes.std()[0]),
            "mean_time_to_answer": self.ring.times[0].mean,
            "mean_talk": self.agents.talk.mean,
            "mean_wrap": self.agents.wrap_mean,
            "pause_probability": self.agents.pause_probability,
            "scale": self.scale,
            "window_abandon_rate": self.ledger.rate,
            "budget": self.last_budget,
        }


class _Floor:
    """Dial times of ringing calls and state-entry times of busy agents, as of the last walk of the floor.

    Walking every call costs a Python-level loop over the engine's calls (about a microsecond each here); on a
    floor of thousands of calls that alone would blow the decision budget. So on big floors the walk is done
    every ``walk_every`` decisions or ``walk_seconds`` seconds, and in between the cached times are aged exactly,
    our own launches since the walk are added as they happened, and counts that moved otherwise (calls answered
    or failed, agents freed) rescale the cached entries. The error is bounded by a few seconds of drift on a
    floor where any single call matters little.
    """

    __slots__ = ("at", "decisions", "launched", "ring_count", "ring_dial", "talk_count", "talk_start", "wrap_start")

    def __init__(
        self,
        at: float,
        ring_dial: FloatArray,
        ring_count: FloatArray,
        talk_start: FloatArray,
        talk_count: FloatArray,
        wrap_start: FloatArray,
    ) -> None:
        self.at = at
        self.ring_dial = ring_dial
        self.ring_count = ring_count
        self.talk_start = talk_start
        self.talk_count = talk_count
        self.wrap_start = wrap_start
        self.decisions = 0
        self.launched: list[tuple[float, int]] = []

    @classmethod
    def walk(cls, snap: Snapshot, ring_dt: float = 0.25, talk_dt: float = 1.0) -> _Floor:
        """Walk the floor once. Times are binned (``ring_dt``, ``talk_dt`` seconds, finer than the tables' grids)
        so a floor of thousands costs per-decision work in the hundreds of distinct times, not thousands."""
        import numpy as np

        now = snap.now
        ring = now - np.fromiter(snap.ringing_times(), float, snap.ringing)
        talk: list[float] = []
        wrap: list[float] = []
        if snap.on_call or snap.wrap_up:
            for state, elapsed in snap.busy_agent_times():
                (talk if state is AgentState.ON_CALL else wrap).append(now - elapsed)
        ring_t, ring_n = _binned(ring, ring_dt)
        talk_t, talk_n = _binned(np.asarray(talk, dtype=float), talk_dt)
        return cls(now, ring_t, ring_n, talk_t, talk_n, np.asarray(wrap, dtype=float))

    def ring_ages(self, now: float) -> FloatArray:
        return now - self.ring_dial

    def ring_weight(self, snap: Snapshot) -> FloatArray:
        """Calls per cached dial time, rescaled to the share of them still ringing (exact right after a walk)."""
        total = float(self.ring_count.sum())
        if not self.decisions or not total:
            return self.ring_count[None, :]
        ours = sum(n for _, n in self.launched)
        return self.ring_count[None, :] * min(1.0, max(0.0, (snap.ringing - ours) / total))

    def launched_ages(self, now: float) -> tuple[FloatArray, FloatArray | float]:
        """Ages of our own launches since the walk, each weighted by how many calls it placed."""
        import numpy as np

        if not self.launched:
            return np.zeros(0), 1.0
        ages = np.array([now - t for t, _ in self.launched])
        return ages, np.array([float(n) for _, n in self.launched])[None, :]

    def talk_elapsed(self, snap: Snapshot) -> tuple[FloatArray, FloatArray]:
        total = float(self.talk_count.sum())
        share = 1.0 if not self.decisions or not total else min(1.0, snap.on_call / total)
        return snap.now - self.talk_start, self.talk_count[None, :] * share

    def wrap_elapsed(self, snap: Snapshot) -> FloatArray | None:
        return snap.now - self.wrap_start if not self.decisions else None


def _binned(times: FloatArray, dt: float) -> tuple[FloatArray, FloatArray]:
    """Distinct times rounded to ``dt`` and how many fall on each."""
    import numpy as np

    if not times.size:
        return times, times
    keys, counts = np.unique(np.round(times / dt), return_counts=True)
    return keys * dt, counts.astype(float)


class _Tables:
    """Conditional probabilities tabulated on time grids, rebuilt when the estimates move."""

    __slots__ = ("inv_ring_dt", "inv_talk_dt", "ring", "stay", "supply_taus", "talk", "taus", "wrap_mean")

    def __init__(
        self,
        taus: FloatArray,
        supply_taus: FloatArray,
        ring: FloatArray,
        ring_dt: float,
        talk: FloatArray,
        talk_dt: float,
        wrap_mean: float,
        stay: float,
    ) -> None:
        self.stay = stay
        self.taus = taus
        self.supply_taus = supply_taus
        self.ring = ring
        self.inv_ring_dt = 1.0 / ring_dt
        self.talk = talk
        self.inv_talk_dt = 1.0 / talk_dt
        self.wrap_mean = wrap_mean

    @classmethod
    def build(cls, policy: Predictive, connect_limit: float) -> _Tables:
        import numpy as np

        outcomes = policy.outcomes
        p = outcomes.probabilities().copy()
        # Pessimism where it is safe: plan with an upper credible bound of the live-answer rate.
        p_live = min(0.999, p[0] + policy.confidence * float(outcomes.std()[0]))
        rest = p[1:] * (1.0 - p_live) / max(1e-12, float(p[1:].sum()))
        p = np.concatenate(([p_live], rest))
        live_t = policy.ring.times[0]
        horizon = max(1.0, live_t.quantile(policy.horizon_quantile))
        K = policy.horizon_points
        taus = horizon * np.arange(1, K + 1) / K
        supply_taus = taus + connect_limit
        ring_top = max(horizon, *(e.quantile(0.999) for e in policy.ring.times)) + horizon
        ring_dt = max(0.25, ring_top / 400.0)
        ages = np.arange(0.0, ring_top + ring_dt, ring_dt)
        ring = np.vstack([policy.ring.live_within(ages, float(tau), p) for tau in taus])
        talk_est = policy.agents.talk
        talk_top = max(60.0, 3.0 * talk_est.quantile(0.999))
        talk_dt = max(0.5, talk_top / 1000.0)
        elapsed = np.arange(0.0, talk_top + talk_dt, talk_dt)
        talk = np.vstack([policy.agents.free_within(elapsed, float(s)) for s in supply_taus])
        stay = 1.0 - policy.agents.pause_probability
        return cls(taus, supply_taus, ring, ring_dt, talk, talk_dt, policy.agents.wrap_mean, stay)
