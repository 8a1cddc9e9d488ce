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

Safe when blind: until ``warmup_answers`` live answers have settled (outcomes are learnt by the second they
were dialed, once every dial of it has had ``settle_seconds`` to end), or with fewer than ``min_agents`` agents,
it dials progressively, and the live-answer rate it plans with is an upper credible bound (more answers predicted
= fewer calls launched), which tightens as evidence accumulates.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from dialer.engine.records import CallRecord, Outcome
from dialer.engine.snapshot import Snapshot
from dialer.engine.state import AgentState
from dialer.errors import ConfigError
from dialer.pacing.base import PacingPolicy

if TYPE_CHECKING:
    from dialer.pacing.estimators import AgentModel, DurationEstimator, FloatArray, OutcomeEstimator, RingModel

WindowKind = Literal["rolling", "day", "campaign"]
WINDOWS: tuple[WindowKind, ...] = ("rolling", "day", "campaign")
_RING_OUTCOMES = {Outcome.MACHINE: 1, Outcome.BUSY: 2, Outcome.NO_ANSWER: 3}  # index in OUTCOMES
DAY = 86400.0


class AbandonLedger:
    """Abandonments and live answers on the regulator's window, attributed to the time the person answered.

    ``kind``: ``"rolling"`` (the last ``hours`` hours, Amazon Connect style), ``"day"`` (calendar day from the
    local midnight ``day_offset`` seconds before clock zero, Ofcom), or ``"campaign"`` (successive 30-day periods
    from the first call, FTC/FCC). Records arrive when calls end, a few seconds after the answer; that lag only
    delays the loop, it loses nothing; the policy feeds it the engine's event-time counts instead when it has
    them (:meth:`count`), which removes the lag.
    """

    def __init__(self, kind: WindowKind = "day", *, hours: float = 24.0, day_offset: float = 0.0) -> None:
        if kind not in WINDOWS:
            raise ConfigError("window", f"must be one of {', '.join(WINDOWS)}, got {kind!r}")
        if not 1.0 <= hours <= 24.0:
            raise ConfigError("window_hours", f"must be between 1 and 24, got {hours}")
        self.kind: WindowKind = kind
        self.span = hours * 3600.0
        self.day_offset = day_offset
        self._events: deque[tuple[float, int, int]] = deque()  # (time, live answers, abandonments)
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
        """One live answer at ``answered_at``, abandoned or not (from a finished call's record)."""
        self.count(answered_at, 1, int(abandoned))

    def count(self, t: float, live: int, abandoned: int) -> None:
        """``live`` answers and ``abandoned`` abandonments that happened at ``t`` (counted as they happen)."""
        if not live and not abandoned:
            return
        if self.kind == "rolling":
            self._events.append((t, live, abandoned))
        else:
            key = self._window_key(t)
            if key != self._key:
                if self._key is not None and key < self._key:
                    return  # a straggler from a closed window: already reported there
                self._key, self.live, self.abandoned = key, 0, 0
        self.live += live
        self.abandoned += abandoned

    def roll(self, now: float) -> None:
        """Drop what has left the window by ``now``."""
        if self.kind == "rolling":
            cutoff = now - self.span
            ev = self._events
            while ev and ev[0][0] < cutoff:
                _, lv, ab = ev.popleft()
                self.live -= lv
                self.abandoned -= ab
        elif self._key is not None and self._window_key(now) != self._key:
            self._key, self.live, self.abandoned = None, 0, 0

    @property
    def rate(self) -> float:
        return self.abandoned / self.live if self.live else 0.0


class Predictive(PacingPolicy):
    """Forecast-based predictive pacing held to ``target_abandon_rate`` on the regulator's window.

    Main knobs: ``window`` (``"rolling"``, ``"day"``, ``"campaign"``) and ``window_hours`` (rolling only);
    ``safety``, the share of the target kept in reserve; ``spread_answers``, the fewest coming answers the
    window's remaining budget is spread over (it is spread over all the answers the window still expects, see
    :meth:`spread_over`); ``confidence``, how many posterior standard deviations of pessimism the live-answer
    rate gets; ``caution``, how many standard deviations of bad luck the window's remaining budget keeps in
    reserve, grown on windows expecting fewer than ``caution_answers`` answers (see :meth:`effective_caution`;
    ``shift_hours`` is the length of a calendar day's shift). Priors (``prior_*``) describe the campaign before any
    call is seen. Cost knobs: ``refresh_seconds`` and ``refresh_records`` (when tables are rebuilt),
    ``quantile_every``. ``future_launches``: the share of the last minute's launch rate counted as calls the
    coming decisions will launch ahead of a new call's answer (0 ignores them). The calibration's half-life is
    ``calibration_answers`` answers, never less than ``calibration_minutes`` minutes of them. Duration estimates
    (ring, talk) keep the last ``duration_window`` samples, or the last ``duration_minutes`` minutes of them when
    that is more: on a big floor a thousand samples are a couple of minutes, too short to see long calls end.
    ``decide_every``: on floors of ``decide_every_agents`` or more non-paused agents, the seconds that must pass
    between two full decisions; an event in between launches only the progressive floor, and the full decision it
    deferred comes at the end of the interval through :meth:`next_wakeup` (a 1,000-agent floor has fifty events a
    second; a call launched up to a second later changes little against rings of 4-16 s).
    ``small_allowance``: a calendar day (or campaign period) whose whole allowance is under this many abandonments
    is a *small strict* window (5 agents at a 1-3% cap, 10 at 1-2%): its spending keeps only the base ``caution``
    and its calibration's prior is worth ``small_prior_share`` of the allowance in abandonments, at least
    ``small_calibration_prior`` and at most ``calibration_prior`` (see :meth:`small_window`; 0 switches this off).
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
        caution_answers: float = 6000.0,
        shift_hours: float = 8.0,
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
        calibration_answers: float = 1000.0,
        calibration_prior: float = 10.0,
        max_lines_per_agent: float = 5.0,
        refresh_seconds: float = 30.0,
        refresh_records: int = 50,
        quantile_every: int = 25,
        future_launches: float = 0.5,
        calibration_minutes: float = 30.0,
        duration_minutes: float = 30.0,
        settle_seconds: float = 40.0,
        decide_every: float = 1.0,
        decide_every_agents: int = 100,
        small_allowance: float = 50.0,
        small_calibration_prior: float = 2.0,
        small_prior_share: float = 0.1,
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
        if caution_answers < 0:
            raise ConfigError("caution_answers", "must be >= 0")
        if small_allowance < 0:
            raise ConfigError("small_allowance", "must be >= 0")
        if small_calibration_prior <= 0:
            raise ConfigError("small_calibration_prior", "must be > 0")
        if not 0.0 <= small_prior_share <= 1.0:
            raise ConfigError("small_prior_share", "must be between 0 and 1")
        if not 0.0 < shift_hours <= 24.0:
            raise ConfigError("shift_hours", "must be in (0, 24]")
        if max_lines_per_agent < 1.0:
            raise ConfigError("max_lines_per_agent", "must be >= 1")
        if not 0.1 <= horizon_quantile <= 0.999:
            raise ConfigError("horizon_quantile", "must be between 0.1 and 0.999")
        if not 1 <= horizon_points <= 50:
            raise ConfigError("horizon_points", "must be between 1 and 50")
        if refresh_seconds <= 0:
            raise ConfigError("refresh_seconds", "must be > 0")
        if refresh_records < 0:
            raise ConfigError("refresh_records", "must be >= 0")
        if calibration_answers < 1:
            raise ConfigError("calibration_answers", "must be >= 1")
        if calibration_prior <= 0:
            raise ConfigError("calibration_prior", "must be > 0")
        if calibration_minutes < 0:
            raise ConfigError("calibration_minutes", "must be >= 0")
        if not 0 <= duration_minutes <= 24 * 60:
            raise ConfigError("duration_minutes", "must be between 0 and 1440")
        if not 0.0 <= future_launches <= 2.0:
            raise ConfigError("future_launches", "must be between 0 and 2")
        if not 0 <= settle_seconds < 3600:
            raise ConfigError("settle_seconds", "must be in [0, 3600)")
        if quantile_every < 1:
            raise ConfigError("quantile_every", "must be >= 1")
        if not 0.0 <= decide_every <= 5.0:
            raise ConfigError("decide_every", "must be between 0 and 5 seconds")
        if decide_every_agents < 0:
            raise ConfigError("decide_every_agents", "must be >= 0")
        self.target = target_abandon_rate
        self.safety = safety
        self.spread = spread_answers
        self.confidence = confidence
        self.caution = caution
        self.caution_answers = caution_answers
        self.shift_seconds = shift_hours * 3600.0
        self.warmup_answers = warmup_answers
        self.min_agents = min_agents
        self.calibration_answers = calibration_answers
        self.calibration_prior = calibration_prior
        self.max_lines_per_agent = max_lines_per_agent
        self.refresh_seconds = refresh_seconds
        self.horizon_points = horizon_points
        self.horizon_quantile = horizon_quantile
        self._quantiles: dict[tuple[int, float], tuple[int, float]] = {}
        self.quantile_every = quantile_every
        self.future_launches = future_launches
        self.calibration_minutes = calibration_minutes
        self._dial_marks: deque[tuple[float, int]] = deque()  # (time, engine's dial total), last minute
        # Outcomes wait here, by the second they were dialed, until every dial of that second has settled (see
        # _settle): {second: [(outcome, dialed at, ring time), ...]}, and a heap of those seconds.
        self.settle_seconds = settle_seconds
        self._settle_wait = settle_seconds  # grows if a dial is seen ringing longer
        self._settled_to = -(2**62)  # every dial second before this one has been learnt
        self._unsettled: dict[int, list[tuple[int, float, float]]] = {}
        self._unsettled_keys: list[int] = []
        self.ledger = AbandonLedger(window, hours=window_hours, day_offset=day_offset)
        self.outcomes: OutcomeEstimator = est.OutcomeEstimator(
            {"live": prior_answer_rate, "machine": prior_machine_rate, "busy": prior_busy_rate},
            half_life=answer_half_life,
        )

        def duration(prior: float) -> DurationEstimator:
            return est.DurationEstimator(prior, window=duration_window, window_seconds=60.0 * duration_minutes)

        # Ring time per outcome, in OUTCOMES order: live, machine, busy, no answer.
        ring = [duration(prior_time_to_answer), duration(prior_time_to_answer), duration(3.0)]
        ring.append(duration(prior_no_answer_after))
        self.ring: RingModel = est.RingModel(self.outcomes, ring)
        self.agents: AgentModel = est.AgentModel(duration(prior_talk_time), prior_wrap=prior_wrap_time)
        # The marginal risk admitted per unit of average abandonment it produces (see _calibrate): a prior of
        # one, worth ``calibration_prior`` abandonments (``small_calibration_prior`` on a small strict window, see
        # small_window), until the floor says otherwise.
        self.scale = 1.0
        self._cal_theta = 0.0  # sum over live answers of the threshold in force, with forgetting
        self._cal_abandoned = 0.0  # abandonments over the same answers
        self.small_allowance = small_allowance
        self.small_calibration_prior = small_calibration_prior
        self.small_prior_share = small_prior_share
        self._answers_heard: float | None = None  # when observe_answer first reported a live answer
        self._theta_history: deque[tuple[float, float]] = deque()  # (since, threshold), changes only
        self._day_key: int | None = None
        self._day_start = 0.0
        self.answers_seen = 0
        self._recent: deque[tuple[float, int]] = deque()  # (time, live answers), last 15 min
        self._recent_live = 0
        # Event-time counts from the engine (snap.stats): where the feed started and what was last seen.
        self._feed_start: float | None = None
        self._seen: tuple[int, int] = (0, 0)
        self._tables: _Tables | None = None
        self._tables_at = -math.inf
        self._stale = True
        self._news = 0  # records and wrap-ups learnt since the tables were built
        self.refresh_records = refresh_records
        self.last_budget = 0.0
        self.decide_every = decide_every
        self.decide_every_agents = decide_every_agents
        self._next_full = -math.inf  # no full decision before this time (see decide)
        self._deferred = False  # an event came before _next_full: decide in full then (next_wakeup)

    # -- learning ---------------------------------------------------------------------------------------

    def observe(self, record: CallRecord) -> None:
        o = record.outcome
        ring_time = (record.answered_at if record.answered_at is not None else record.ended_at) - record.dialed_at
        settled = record.answered_at if record.answered_at is not None else record.ended_at
        if record.live_answer:
            if self._answers_heard is None or settled < self._answers_heard:
                self._unsettle(record.dialed_at, 0, ring_time)  # not heard at answer time (observe_answer)
            # Answers before the engine's counters were first read (a policy attached mid-campaign) reach the
            # window from their records; later ones are counted at event time (_feed).
            if self._feed_start is None or settled < self._feed_start:
                self._count(settled, 1, int(record.abandoned))
        elif o in _RING_OUTCOMES:
            self._unsettle(record.dialed_at, _RING_OUTCOMES[o], ring_time)
        # Rejected, invalid and network failures say nothing about people; they are not pacing evidence.
        if record.connected_at is not None and not record.agent_lost:
            self.agents.talk.add(record.ended_at - record.connected_at, record.ended_at)
            self._stale = True
            self._news += 1

    def observe_answer(self, answered_at: float, rang: float) -> None:
        if self._answers_heard is None:
            self._answers_heard = answered_at
        self._unsettle(answered_at - rang, 0, rang)

    def _unsettle(self, dialed: float, outcome: int, ring_time: float) -> None:
        """Hold a dial's outcome until every dial of its second has settled.

        Why: outcomes arrive in the order they happen, not the order dials were made. A live answer comes after
        4-16 s, a no-answer after 25 s, so counting them as they come reads 50% live in the first half-minute of
        a shift and 13% in the next, whenever dialing is bursty -- and the quick answers come first, so the time
        to answer looks short too. On a 1,000-agent floor that start cost 200 abandonments in the first minute
        (a 16% window) and 23 minutes of progressive dialing to pay them back. Counted by the second they were
        dialed, once that second is ``settle_seconds`` old, every outcome of a dial weighs the same.
        """
        if not (math.isfinite(dialed) and math.isfinite(ring_time)):
            return
        key = math.floor(dialed)
        item = (outcome, dialed, ring_time)
        if key < self._settled_to:  # rang longer than settle_seconds: learn it now, and wait longer from now on
            self._settle_wait = min(600.0, max(self._settle_wait, ring_time + 1.0))
            self._learn([item])
            return
        bucket = self._unsettled.get(key)
        if bucket is None:
            bucket = self._unsettled[key] = []
            heapq.heappush(self._unsettled_keys, key)
        bucket.append(item)

    def _settle(self, now: float) -> None:
        """Learn the dials of every second at least ``settle_seconds`` old (see :meth:`_unsettle`)."""
        to = math.floor(now - self._settle_wait)
        if to <= self._settled_to:
            return
        self._settled_to = to
        keys = self._unsettled_keys
        while keys and keys[0] < to:
            self._learn(self._unsettled.pop(heapq.heappop(keys)))

    def _learn(self, items: list[tuple[int, float, float]]) -> None:
        est = self.ring.times
        counts = [0, 0, 0, 0]
        for outcome, dialed, ring_time in items:
            counts[outcome] += 1
            est[outcome].add(ring_time, dialed + ring_time)
        self.outcomes.add_counts(counts)
        self.answers_seen += counts[0]
        self._stale = True
        self._news += len(items)

    def observe_wrap_up(self, now: float, seconds: float, paused: bool) -> None:
        self.agents.observe_wrap(seconds, paused)
        self._stale = True
        self._news += 1

    # -- the loop on the regulator's window ---------------------------------------------------------------

    def _count(self, t: float, live: int, abandoned: int) -> None:
        self.ledger.count(t, live, abandoned)
        if live:
            self._recent.append((t, live))
            self._recent_live += live

    def _feed(self, snap: Snapshot) -> None:
        """Take what the engine counted since the last decision, at event time: live answers and abandonments
        for the window (which then reacts to an abandonment as it happens, not when the call's record is
        written). Dials' outcomes are learnt by the second they were dialed instead (see :meth:`_unsettle`)."""
        self._settle(snap.now)
        tot = snap.stats.totals
        marks = self._dial_marks
        if not marks or snap.now - marks[-1][0] >= 1.0:
            marks.append((snap.now, tot.dials))
            while len(marks) > 2 and snap.now - marks[1][0] >= 60.0:
                marks.popleft()
        counts = (tot.live_answers, tot.abandoned)
        if self._feed_start is None:
            self._feed_start = snap.now
            self._seen = counts
            return
        if counts == self._seen:
            return
        live, ab = max(0, counts[0] - self._seen[0]), max(0, counts[1] - self._seen[1])
        self._seen = counts
        if live or ab:
            self._count(snap.now, live, ab)
            self._calibrate(snap.now, live, ab)

    def _calibrate(self, now: float, live: int, abandoned: int) -> None:
        """Learn how much average abandonment a marginal-risk threshold really produces on this floor.

        The threshold bounds the risk of the *last* call launched; the average over all calls is lower, by a
        factor that depends on the floor (and absorbs whatever the forecast gets wrong). Each live answer is
        charged the threshold in force, so ``sum(threshold) / abandonments`` over recent answers (a half-life of
        ``calibration_answers``, with a prior of one worth ``calibration_prior`` abandonments) is the threshold
        needed per unit of abandonment wanted. It is an average of measurements, not a feedback gain: it moves
        no faster than the evidence, so it adds no oscillation of its own; the window's loop (:meth:`budget`)
        does the correcting.
        """
        # The half-life is counted in answers, but never shorter than ``calibration_minutes`` of them: a thousand
        # answers are two hours of a 20-agent floor and a minute and a half of a 1,000-agent one, where the
        # calibration would become the fast, noisy loop it replaced (its factor swung 3.5-8 within a day).
        rate = self._answer_rate(now)
        half_life = self.calibration_answers
        if rate is not None:
            half_life = max(half_life, rate * 60.0 * self.calibration_minutes)
        d = 0.5 ** (live / half_life)
        self._cal_theta = self._cal_theta * d + live * self._charged(now)
        self._cal_abandoned = self._cal_abandoned * d + abandoned
        k = self.calibration_prior
        allowance = self.window_allowance(now)
        if allowance is not None and self.small_window(now):
            k = min(k, max(self.small_calibration_prior, self.small_prior_share * allowance))
        self.scale = min(20.0, max(0.1, (self._cal_theta + k) / (self._cal_abandoned + k)))

    def _launch_rate(self) -> float:
        """Dials per second over about the last minute (engine totals sampled once a second), 0 before 10 s."""
        marks = self._dial_marks
        if len(marks) < 2 or marks[-1][0] - marks[0][0] < 10.0:
            return 0.0
        return (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])

    def _expire_recent(self, now: float) -> None:
        recent = self._recent
        cutoff = now - 900.0
        while recent and recent[0][0] < cutoff:
            self._recent_live -= recent.popleft()[1]

    def _answer_rate(self, now: float) -> float | None:
        """Live answers per second over the last 15 minutes, or ``None`` before two minutes of evidence (or
        with no answers in them): what sizes the window's expected answers, for caution and for spreading."""
        if self._feed_start is None:
            return None
        self._expire_recent(now)
        elapsed = min(900.0, now - self._feed_start)
        if elapsed < 120.0 or self._recent_live <= 0:
            return None
        return self._recent_live / elapsed

    def effective_caution(self, now: float) -> float:
        """``caution`` grown for small windows: a window expecting few answers is noisy (a handful of
        abandonments either way is a large share of its allowance), so it keeps a reserve in proportion to its
        relative noise, ``sqrt(caution_answers / expected answers in the window)``, never less than ``caution``.
        The expected count is the answer rate of the last 15 minutes over a window's length (a shift of
        ``shift_hours`` for a calendar day, 30 shifts for a campaign period)."""
        if self.small_window(now):
            return self.caution
        return self._grown_caution(now)

    def _grown_caution(self, now: float) -> float:
        rate = self._answer_rate(now) if self.caution_answers else None
        if rate is None:
            return self.caution
        expected = rate * self._window_span()
        return self.caution * min(4.0, max(1.0, math.sqrt(self.caution_answers / max(expected, 1.0))))

    def _window_span(self) -> float:
        """The seconds of answers a window holds: a shift for a calendar day, 30 shifts for a campaign period,
        the rolling window's length (at most a shift)."""
        kind = self.ledger.kind
        if kind == "rolling":
            return min(self.ledger.span, self.shift_seconds)
        return self.shift_seconds * (30.0 if kind == "campaign" else 1.0)

    def small_window(self, now: float) -> bool:
        """Whether the window is a *small strict* one: a calendar day or campaign period whose whole allowance,
        the target times the answers it is expected to hold, is under ``small_allowance`` abandonments (a day of
        5 agents at 1-2% allows 9-18, 10 agents at 1-2% about 19-38). There the forecast's marginal risk is far
        above the risk the calls really run (measured on 5 agents at 1%: the thresholds charged per answer add up
        to about eight times the abandonments), so the calibration must learn from the first few abandonments --
        its prior of one is worth a tenth of the day's allowance (``small_prior_share``; at least
        ``small_calibration_prior``, 2) instead of ``calibration_prior``, 10: a prior of 2 on a day allowing 38
        let 1 day in 200 end a hair over its cap, as the calibration then follows a few early abandonments too
        closely -- and the caution
        of the spending is not grown: with the calibration slow to learn, the grown reserve kept 60-100% of the
        allowance unspent. The guard against the cap on the next 30 answers keeps the grown reserve. Rolling
        windows (judged every quarter hour on an hour or so of answers) keep the full reserve, and so does every
        window until its answer rate is known."""
        if self.small_allowance <= 0 or self.ledger.kind == "rolling":
            return False
        allowance = self.window_allowance(now)
        return allowance is not None and allowance < self.small_allowance

    def window_allowance(self, now: float) -> float | None:
        """The abandonments the whole window allows: the target times the answers it is expected to hold (at the
        last 15 minutes' answer rate), or ``None`` before that rate is known."""
        rate = self._answer_rate(now)
        return None if rate is None else self.target * rate * self._window_span()

    def _charged(self, now: float) -> float:
        """The threshold the calls answering now were launched under: the one in force a ring time ago (the
        95th percentile of the time to answer), or now if lower. Charging today's threshold would credit calls
        launched under a tighter one -- at the start of a shift, calls launched progressively -- and talk the
        calibration into loosening before any evidence exists."""
        hist = self._theta_history
        if not hist:
            return self.last_budget
        lag = self._tables.taus[-1] if self._tables is not None else 30.0
        cutoff = now - lag
        while len(hist) > 1 and hist[1][0] <= cutoff:
            hist.popleft()
        return min(hist[0][1], self.last_budget)

    def _remember(self, now: float, theta: float) -> None:
        hist = self._theta_history
        if not hist or hist[-1][1] != theta:
            hist.append((now, theta))
        self.last_budget = theta

    def spread_over(self, now: float) -> float:
        """How many coming live answers the window's remaining budget is spread over: all that the window still
        expects (at the last 15 minutes' answer rate), never fewer than ``spread_answers``.

        Spreading over the rest of the window keeps the threshold steady: an abandonment early in a shift moves
        it by a share of the whole shift's allowance, not of the next few minutes'. A steady threshold is worth
        occupancy, because occupancy is concave in abandonment: swinging between tight and loose pacing does worse
        than holding the average. Near the window's end the horizon shrinks and what is left is spent, or, over
        the allowance, saved. Calendar day: the rest of the shift (``shift_hours`` from the day's first
        decision); rolling window: one window's length; 30-day period: a day's shift (no need to hoard a month).
        """
        rate = self._answer_rate(now)
        if rate is None:
            return self.spread
        kind = self.ledger.kind
        if kind == "day":
            key = int((now + self.ledger.day_offset) // DAY)
            if key != self._day_key:
                self._day_key, self._day_start = key, now
            left = self._day_start + self.shift_seconds - now
            left = min(left, (key + 1) * DAY - self.ledger.day_offset - now)
        elif kind == "rolling":
            left = min(self.ledger.span, self.shift_seconds)
        else:
            left = self.shift_seconds
        return max(self.spread, rate * max(0.0, left))

    def budget(self, now: float) -> float:
        """Abandonment risk allowed per call right now: what the window has left, spent with a reserve for luck.

        For a look-ahead of ``S`` answers, launching at rate ``b`` adds about ``Poisson(b S)`` abandonments; we
        want ``spent + b S + caution x sqrt(b S)`` to stay within the cap's allowance ``rate x (answers + S)``.
        Two look-aheads are checked: the answers the window still expects (:meth:`spread_over`, aiming at the
        goal, the target less the safety share, so slack is spent evenly) and the next 30 (against the target
        itself, so a window that is near the cap now stops at once: the window may close at any moment). The
        smaller answer wins.
        """
        self.ledger.roll(now)
        self._expire_recent(now)
        led = self.ledger
        goal = self.target * (1.0 - self.safety)
        c = self.effective_caution(now)
        spend = self._allowance(goal, self.spread_over(now), led.live, led.abandoned, c)
        # The guard keeps half the safety share: riding exactly at the cap, a window would end a hair over it
        # about half the time on a big floor, where abandonments come in bursts of several at once.
        # The guard keeps the reserve grown for a small window even where the spending does not (small_window):
        # near the cap, the last few abandonments of a small day are where bad luck ends it over.
        g = self._grown_caution(now)
        guard = self._allowance(self.target * (1.0 - 0.5 * self.safety), 30.0, led.live, led.abandoned, g)
        # The guard is a hard limit in abandonments: when the forecast is, if anything, optimistic (scale at most
        # one), the marginal call's risk bounds the average, so a threshold under the guard keeps the window under
        # the cap whatever the model thinks. A forecast shown pessimistic by the evidence (scale above one) needs a
        # threshold above the guard's rate to spend the allowance at all, so the guard is converted too; near the
        # cap it still falls to zero, whatever the scale.
        return min(min(spend, 2.0 * goal) * self.scale, guard * max(1.0, self.scale))

    @staticmethod
    def _allowance(rate: float, horizon: float, live: int, abandoned: int, caution: float) -> float:
        room = rate * (live + horizon) - abandoned
        if room <= 0:
            return 0.0
        u = (-caution + math.sqrt(caution**2 + 4.0 * room)) / 2.0
        return u * u / horizon

    # -- deciding ---------------------------------------------------------------------------------------

    def _refresh(self, snap: Snapshot) -> _Tables:
        """The tables, rebuilt when the estimates have moved: at most every ``refresh_seconds``, and only once
        ``refresh_records`` new observations are in (or four periods have passed). On a small floor a few new
        records barely move distributions estimated from a thousand, and a rebuild costs about a millisecond."""
        age = snap.now - self._tables_at
        if self._tables is None or (
            self._stale
            and age >= self.refresh_seconds
            and (self._news >= self.refresh_records or age >= 4.0 * self.refresh_seconds)
        ):
            # Calls still being talked are censored talk times: without them the talk estimate is biased short
            # whenever the floor is not in steady state (the start of a shift above all).
            import numpy as np

            ages, n = _ages(snap.now, *snap.busy_bins(AgentState.ON_CALL))
            self.agents.talk.censor(np.repeat(ages, n.astype(np.intp)), snap.now)
            self._tables = _Tables.build(self, snap.connect_limit)
            self._tables_at = snap.now
            self._stale = False
            self._news = 0
        return self._tables

    def decide(self, snap: Snapshot) -> int:
        agents = self.agents
        if not agents.wrap_reported:
            agents.sample_floor(snap.now, snap.on_call, snap.wrap_up, snap.paused)
        progressive = snap.ready - snap.ringing - snap.queued
        if snap.now < self._next_full and snap.ready + snap.on_call >= self.decide_every_agents:
            # Decided in full less than ``decide_every`` ago: launch only the floor every full decision launches
            # (progressive dialing's calls), and decide in full at ``_next_full`` (next_wakeup). A deferred
            # decision launches no call the full one would not, only some of them later. The engine's counters
            # are cumulative, so the next full decision's _feed reads what happened meanwhile (its window and
            # calibration see it up to ``decide_every`` late, and nothing is lost). This path runs after most
            # events of a big floor (fifty a second on 1,000 agents): it reads as little as it can.
            self._deferred = True
            if progressive <= 0:
                return 0
            limit = int(self.max_lines_per_agent * snap.non_paused) - snap.in_flight
            return min(progressive, limit) if limit > 0 else progressive
        progressive = max(0, progressive)
        limit = int(self.max_lines_per_agent * snap.non_paused) - snap.in_flight
        floor = max(0, min(progressive, limit) if limit > 0 else progressive)
        self._feed(snap)
        if self.target <= 0 or self.answers_seen < self.warmup_answers or snap.non_paused < self.min_agents:
            self._remember(snap.now, 0.0)
            return progressive
        self._next_full = snap.now + self.decide_every
        self._deferred = False
        budget = self.budget(snap.now)
        self._remember(snap.now, budget)
        if budget <= 0.0 or limit <= progressive:
            return floor
        return max(progressive, self._tables_decide(snap, budget, limit))

    def next_wakeup(self, now: float) -> float | None:
        """The full decision an event deferred (see :meth:`decide`), else only on events."""
        return self._next_full if self._deferred else None

    def _tables_decide(self, snap: Snapshot, budget: float, limit: int) -> int:
        import numpy as np

        t = self._refresh(snap)
        K = t.taus.size
        # What is on the floor, read from the engine's entry-time histograms: the same few hundred bins whether
        # the floor has twenty agents or a thousand. A table column per bin; one matrix-vector product per side.
        demand = np.zeros(2 * K)
        demand[:K] = snap.queued
        supply = np.zeros(2 * K)
        supply[:K] = snap.ready
        now = snap.now
        ages, n = _ages(now, *snap.ringing_bins())
        if n.size:
            demand += t.ring2[:, np.minimum((ages * t.inv_ring_dt).astype(np.intp), t.ring_cap)] @ n
        ages, n = _ages(now, *snap.busy_bins(AgentState.ON_CALL))
        if n.size:
            supply += t.talk2[:, np.minimum((ages * t.inv_talk_dt).astype(np.intp), t.talk_cap)] @ n
        ages, n = _ages(now, *snap.busy_bins(AgentState.WRAP_UP))
        if n.size:
            supply[:K] += ((ages[None, :] + t.supply_taus[:, None] >= t.wrap_mean) @ n) * t.stay
        gap = demand - supply
        gap_mu = (gap[:K] + 0.5).tolist()  # continuity correction: integer demand against integer supply
        gap_var = (demand[K:] + supply[K:]).tolist()
        nm, nv, weights = t.new_mean, t.new_var, t.weights  # a new call: P(answered live by tau_k), its variance
        # Calls the coming decisions will launch before a new call is answered compete with it for the same agents
        # (one launched in 3 s and answered 4 s later is served before one launched now and answered after 12 s).
        # Ignoring them understated the risk of a launch about threefold on a 200-agent floor, where dozens are
        # launched per horizon. They are taken at ``future_launches`` times the last minute's launch rate: the
        # coming decisions launch only while risk allows, so the full rate overstates them (see docs/pacing.md).
        rate = self._launch_rate() * self.future_launches
        future = [rate * g for g in t.launch_integral] if rate > 0.0 else None
        theta = budget

        def risk(n: int) -> float:
            return marginal_risk(n, gap_mu, gap_var, nm, nv, weights, future)

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

    def quantile(self, est: DurationEstimator, q: float) -> float:
        """``est.quantile(q)``, recomputed only once ``quantile_every`` new samples have come in, or a 40th of the
        window's samples when that is more: the horizon and the tables' extents follow a window of a thousand
        samples or more, which a few dozen more barely move, while a quantile search (a sort of the window) is
        most of the cost of rebuilding the tables. On a 1,000-agent floor the window holds half an hour, some
        36,000 talk times, and 25 new ones come in every second."""
        key = (id(est), q)
        hit = self._quantiles.get(key)
        if hit is not None and est.seen - hit[0] < max(self.quantile_every, est.n // 40):
            return hit[1]
        value = est.quantile(q)
        self._quantiles[key] = (est.seen, value)
        return value

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


def marginal_risk(
    n: int,
    gap_mu: Sequence[float],
    gap_var: Sequence[float],
    new_mean: Sequence[float],
    new_var: Sequence[float],
    weights: Sequence[float],
    future: Sequence[float] | None = None,
) -> float:
    """P(the n-th new call, if answered, finds no agent): demand from everyone else against supply, at the moment
    it is answered, averaged over when that is (``weights``, one per horizon point).

    Per horizon point: ``gap_mu``/``gap_var`` are the mean (continuity-corrected) and variance of demand less supply
    before any new call, ``new_mean``/``new_var`` one new call's chance of a live answer by then and its variance,
    and ``future`` the live answers by then of the calls the coming decisions will launch (Poisson: mean and
    variance alike). Those are answered before the new call and served first.
    Plain floats and ``math``: it runs a dozen times per decision on eight points, where NumPy's call overhead would
    cost more than the arithmetic. The exact evaluation in ``benchmarks/pacing_bounds.py`` uses it too.
    """
    m = n - 1
    r = 0.0
    for k in range(len(weights)):
        f = future[k] if future is not None else 0.0
        var = gap_var[k] + m * new_var[k] + f
        mu = gap_mu[k] + m * new_mean[k] + f
        if var <= 1e-12:
            r += weights[k] * (1.0 if mu > 0 else 0.0)
        else:
            r += weights[k] * 0.5 * (1.0 + math.erf(mu / math.sqrt(2.0 * var)))
    return r


def _ages(now: float, width: float, bins: Mapping[int, int]) -> tuple[FloatArray, FloatArray]:
    """A histogram of entry times (``{i: n}``, bin ``i`` covering ``[i width, (i + 1) width)``) as ages at ``now``
    (from each bin's middle, so binning biases no age) and counts."""
    import numpy as np

    m = len(bins)
    keys = np.fromiter(bins.keys(), float, m)
    counts = np.fromiter(bins.values(), float, m)
    return np.maximum(0.0, now - (keys + 0.5) * width), counts


class _Tables:
    """Conditional probabilities tabulated on time grids, rebuilt when the estimates move."""

    __slots__ = (
        "inv_ring_dt",
        "inv_talk_dt",
        "launch_integral",
        "new_mean",
        "new_var",
        "ring",
        "ring2",
        "ring_cap",
        "stay",
        "supply_taus",
        "talk",
        "talk2",
        "talk_cap",
        "taus",
        "weights",
        "wrap_mean",
    )

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
        import numpy as np

        self.stay = stay
        self.taus = taus
        self.supply_taus = supply_taus
        self.ring = ring
        self.inv_ring_dt = 1.0 / ring_dt
        self.talk = talk
        self.inv_talk_dt = 1.0 / talk_dt
        self.wrap_mean = wrap_mean
        # Everything a decision reads that depends only on the estimates, computed once per rebuild.
        self.ring2 = np.vstack((ring, ring * (1.0 - ring)))
        self.talk2 = np.vstack((talk, talk * (1.0 - talk)))
        self.ring_cap = ring.shape[1] - 1
        self.talk_cap = talk.shape[1] - 1
        new = ring[:, 0]
        self.new_mean: list[float] = new.tolist()
        self.new_var: list[float] = (new * (1.0 - new)).tolist()
        K = new.size
        total = self.new_mean[-1]
        self.weights: list[float] = [
            (self.new_mean[k] - (self.new_mean[k - 1] if k else 0.0)) / total if total > 0 else 1.0 / K
            for k in range(K)
        ]
        # Integral of P(live by u) for u from 0 to tau_k (trapezoids on the horizon's points): the live answers by
        # tau_k of calls launched at a unit rate from now until tau_k.
        acc, prev_t, prev_f = 0.0, 0.0, 0.0
        self.launch_integral: list[float] = []
        for k in range(K):
            tk, fk = float(taus[k]), self.new_mean[k]
            acc += 0.5 * (prev_f + fk) * (tk - prev_t)
            self.launch_integral.append(acc)
            prev_t, prev_f = tk, fk

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
        horizon = max(1.0, policy.quantile(live_t, policy.horizon_quantile))
        K = policy.horizon_points
        taus = horizon * np.arange(1, K + 1) / K
        supply_taus = taus + connect_limit
        ring_top = max(horizon, *(policy.quantile(e, 0.999) for e in policy.ring.times)) + horizon
        ring_dt = max(0.25, ring_top / 400.0)
        ages = np.arange(0.0, ring_top + ring_dt, ring_dt)
        ring = policy.ring.live_within(ages, taus, p)
        talk_est = policy.agents.talk
        talk_top = max(60.0, 3.0 * policy.quantile(talk_est, 0.999))
        talk_dt = max(0.5, talk_top / 1000.0)
        elapsed = np.arange(0.0, talk_top + talk_dt, talk_dt)
        talk = policy.agents.free_within(elapsed, supply_taus)
        stay = 1.0 - policy.agents.pause_probability
        return cls(taus, supply_taus, ring, ring_dt, talk, talk_dt, policy.agents.wrap_mean, stay)
