"""Online estimators of a campaign's call flow, each with its uncertainty, for predictive pacing.

A predictive dialer is only as good as its forecast of two streams over the next few seconds: people answering
the calls now ringing, and agents coming free. Both depend on *how long* things have lasted already (a call that
has rung 20 s is much less likely to be answered than a fresh one; an agent 10 minutes into a call is more likely
to be near the end than one who just started, or not, depending on the talk-time distribution), so the estimators
keep whole distributions, not means.

Design choices, and why:

* **Warm start from priors.** A new campaign has seen nothing; a prior (the operator's guess, or last week's
  figures) stands in as pseudo-observations worth ``prior_weight`` samples, so the first decisions are sane and
  the data takes over smoothly as it arrives.
* **Following drift.** Lists get worked and answer rates fall through the day. Outcome counts decay exponentially
  (a half-life in observations); duration samples live in a sliding window. Both bound the effective sample size,
  so the uncertainty never collapses to zero and the estimates keep moving.
* **Uncertainty.** Outcome probabilities are the mean of a Dirichlet posterior (its standard deviation and Beta
  marginal intervals come with it). A duration CDF is the posterior mean of a Dirichlet process whose base
  measure is the prior distribution: ``F = (w F_prior + n F_emp) / (w + n)``, with pointwise variance
  ``F (1 - F) / (w + n + 1)``. That is the textbook nonparametric Bayesian estimator, and it keeps the prior's
  tail beyond the largest observation, which matters for conditional probabilities late in a call.
* **Tables, not per-call maths.** Pacing runs after every event on floors of a thousand agents, so the
  conditional probabilities are tabulated on a time grid when the estimates change and looked up with
  ``numpy.interp`` at decision time.

NumPy is imported here; SciPy (priors and intervals) only when first needed, so ``import dialer`` stays light.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from dialer.errors import ConfigError

FloatArray = npt.NDArray[np.float64]

OUTCOMES: tuple[str, ...] = ("live", "machine", "busy", "no_answer")
LIVE, MACHINE, BUSY, NO_ANSWER = range(4)


class OutcomeEstimator:
    """How dials end (live person, machine, busy, no answer): a Dirichlet posterior with forgetting.

    ``prior`` gives the four probabilities (missing ones share what is left), worth ``prior_weight`` dials. Data
    counts decay by half every ``half_life`` dials; the prior does not decay, so a long campaign still cannot
    become certain of an estimate it can no longer check.
    """

    def __init__(
        self,
        prior: Mapping[str, float] | None = None,
        *,
        prior_weight: float = 50.0,
        half_life: float = 2000.0,
    ) -> None:
        if prior_weight <= 0:
            raise ConfigError("prior_weight", "must be > 0")
        if half_life <= 0:
            raise ConfigError("half_life", "must be > 0")
        probs = _prior_probabilities(prior or {"live": 0.3})
        self.prior_counts: FloatArray = probs * prior_weight
        self.counts: FloatArray = np.zeros(len(OUTCOMES))
        self.decay = 0.5 ** (1.0 / half_life)
        self.seen = 0

    def add(self, outcome: int | str) -> None:
        """Count one finished dial (an index into :data:`OUTCOMES` or its name)."""
        i = OUTCOMES.index(outcome) if isinstance(outcome, str) else outcome
        self.counts *= self.decay
        self.counts[i] += 1.0
        self.seen += 1

    def add_counts(self, counts: Sequence[int]) -> None:
        """Count several finished dials at once, one per outcome as given, all with the same weight: dials
        learnt together (the same second's, see ``Predictive._unsettle``) must not be weighed by the order in
        which they happen to be listed."""
        c = np.asarray(counts, dtype=float)
        if c.shape != self.counts.shape or np.any(c < 0):
            raise ConfigError("counts", f"need {len(OUTCOMES)} counts >= 0")
        n = float(c.sum())
        self.counts = self.counts * self.decay**n + c
        self.seen += int(n)

    @property
    def alpha(self) -> FloatArray:
        """Dirichlet posterior parameters."""
        return self.prior_counts + self.counts

    @property
    def effective_n(self) -> float:
        """Data dials still carrying weight (at most about ``1.44 x half_life``)."""
        return float(self.counts.sum())

    def probabilities(self) -> FloatArray:
        a = self.alpha
        return a / a.sum()

    def std(self) -> FloatArray:
        """Posterior standard deviation of each probability."""
        a = self.alpha
        a0 = a.sum()
        p = a / a0
        return np.sqrt(p * (1.0 - p) / (a0 + 1.0))

    def interval(self, outcome: int | str, level: float = 0.95) -> tuple[float, float]:
        """Equal-tailed credible interval of one probability (its Beta marginal)."""
        from scipy import stats

        i = OUTCOMES.index(outcome) if isinstance(outcome, str) else outcome
        a = self.alpha
        lo, hi = stats.beta.interval(level, a[i], a.sum() - a[i])
        return float(lo), float(hi)


def _prior_probabilities(prior: Mapping[str, float]) -> FloatArray:
    unknown = set(prior) - set(OUTCOMES)
    if unknown:
        raise ConfigError("prior", f"unknown outcome {sorted(unknown)[0]!r} (choose from {', '.join(OUTCOMES)})")
    given = {k: float(v) for k, v in prior.items()}
    for k, v in given.items():
        if not 0.0 <= v <= 1.0 or math.isnan(v):
            raise ConfigError(f"prior.{k}", f"must be a probability, got {v}")
    total = sum(given.values())
    if total > 1.0 + 1e-9:
        raise ConfigError("prior", f"probabilities sum to {total:g}, more than 1")
    missing = [k for k in OUTCOMES if k not in given]
    out = np.array([given.get(k, 0.0) for k in OUTCOMES])
    if missing:
        share = (1.0 - total) / len(missing)
        for k in missing:
            out[OUTCOMES.index(k)] = share
    # Every outcome stays possible a priori: a zero pseudo-count would make it unlearnable.
    out = np.maximum(out, 1e-3)
    return out / out.sum()


def prior_distribution(spec: Any) -> Any:
    """A frozen SciPy distribution from a prior spec: a number (exponential mean) or a frozen distribution.

    Exponential is the default shape because it is the maximum-entropy guess given only a mean: it claims nothing
    about when a call ends beyond its average.
    """
    from scipy import stats

    if hasattr(spec, "cdf"):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not spec >= 0 or math.isinf(spec):
            raise ConfigError("prior", f"a mean duration must be >= 0, got {spec}")
        return stats.expon(scale=max(float(spec), 1e-6))
    raise ConfigError("prior", f"expected a mean in seconds or a scipy.stats distribution, got {spec!r}")


class DurationEstimator:
    """A duration distribution (time to answer, talk time...): Dirichlet-process posterior mean over a window.

    ``prior`` is a mean in seconds (exponential shape) or a frozen ``scipy.stats`` distribution, worth
    ``prior_weight`` samples; the data are the last ``window`` samples, or all those that ended in the last
    ``window_seconds`` when that is more (at most ``max_samples``; samples added without their end time count
    only towards ``window``). Negative or non-finite samples are ignored (counted in ``rejected``) rather than
    poisoning the estimate.

    Why a window in time as well as in samples: a thousand talk times are two hours of a 20-agent floor but two
    minutes of a 1,000-agent one, too short a span to see the long calls that end only after several minutes (and
    it makes the censoring below inconsistent, see :meth:`censor`).
    """

    def __init__(
        self,
        prior: Any,
        *,
        prior_weight: float = 20.0,
        window: int = 1000,
        window_seconds: float = 0.0,
        max_samples: int = 100_000,
    ) -> None:
        if prior_weight <= 0:
            raise ConfigError("prior_weight", "must be > 0")
        if window < 1:
            raise ConfigError("window", "must be >= 1")
        if not window_seconds >= 0:
            raise ConfigError("window_seconds", "must be >= 0")
        if max_samples < window:
            raise ConfigError("max_samples", "must be >= window")
        self.prior = prior_distribution(prior)
        # The prior CDF tabulated once: SciPy's generic cdf costs tens of microseconds a call, and tables are
        # rebuilt often. Beyond the 99.999% point the prior is taken as complete.
        top = float(self.prior.ppf(0.99999))
        self._prior_t = np.linspace(0.0, top, 4001) if top > 0 else np.array([0.0, 1e-9])
        self._prior_f = np.asarray(self.prior.cdf(self._prior_t), dtype=float)
        self._prior_mean = float(self.prior.mean())
        self.prior_weight = prior_weight
        self.window = window
        self.window_seconds = float(window_seconds)
        self.max_samples = max_samples
        self.samples: deque[float] = deque()
        self._ends: deque[float] = deque()  # when each sample ended (NaN: not said)
        # The latest end among the samples evicted: every sample that ended after it is still in the window, so
        # durations that *started* after it form a complete cohort (see censor). NaN once an end was not said.
        self._cut = -math.inf
        self._censor_now: float | None = None
        self.rejected = 0
        self.seen = 0
        # The window's samples sorted, kept up to date incrementally: the samples added and evicted since it was
        # last sorted are merged in when it is next read (see _data).
        self._sorted: FloatArray | None = None
        self._added: list[float] = []
        self._evicted: list[float] = []
        self._quantiles: dict[float, float] = {}  # pacing asks the same few quantiles at every table rebuild
        self._censored: FloatArray = np.zeros(0)
        self._km: tuple[FloatArray, FloatArray, float, int] | None = None  # times, survival, last, cohort size

    def add(self, x: float, at: float | None = None) -> None:
        """One duration, which ended at ``at`` (needed for the window in time and for censoring's cohort)."""
        if not math.isfinite(x) or x < 0:
            self.rejected += 1
            return
        end = math.nan if at is None or not math.isfinite(at) else float(at)
        x = float(x)
        self.samples.append(x)
        self._ends.append(end)
        self._added.append(x)
        samples, ends = self.samples, self._ends
        while len(samples) > self.window:
            if len(samples) <= self.max_samples and end - ends[0] <= self.window_seconds:
                break  # (NaN compares false: samples without an end leave by count alone)
            self._evicted.append(samples.popleft())
            gone = ends.popleft()
            self._cut = math.nan if math.isnan(gone) else max(self._cut, gone)
        if len(self._added) > len(samples):  # not read for a whole window: the next read sorts afresh
            self._sorted = None
            self._added.clear()
            self._evicted.clear()
        self.seen += 1
        self._km = None
        self._quantiles.clear()

    def censor(self, lasted: npt.ArrayLike, now: float | None = None) -> None:
        """Durations still running at ``now``, each known only to exceed its ``lasted`` so far (agents still
        talking).

        Why: finished durations alone are biased short whenever the floor is not in steady state. At the start of
        a shift the first calls to end are the short ones, so an estimate from them alone promises agents free
        far sooner than they will be -- on a big floor, hundreds of calls launched into nobody. Counting the
        calls still running as right-censored observations (Kaplan-Meier) removes that bias; the set replaces
        the previous one (it is a snapshot of the floor).

        Kaplan-Meier needs one cohort, finished and running alike. The window keeps only the latest samples, so
        a long call that began an hour ago is still running (censored) while the short calls that began with it
        have left the window: mixing them overstates long durations. On a 1,000-agent floor, whose thousand
        samples span two minutes, that promised about 8 fewer agents free in the next 18 s than came. With
        ``now`` and end times, the estimate keeps only durations that started after the last evicted sample
        ended, finished or running: a cohort the window holds whole.
        """
        c = np.asarray(lasted, dtype=float).ravel()
        c = c[np.isfinite(c) & (c >= 0)]
        self._censored = np.sort(c)
        self._censor_now = None if now is None or not math.isfinite(now) else float(now)
        self._km = None
        self._quantiles.clear()

    @property
    def n(self) -> int:
        return len(self.samples)

    def _data(self) -> FloatArray:
        """The window's samples, sorted. Merged incrementally: the window moves by the samples added and evicted
        since the last read, a few hundred against tens of thousands on a big floor's half-hour window, so they
        are taken out of and put into the sorted array (O(n) copies) instead of sorting it again (O(n log n)
        plus a walk of the deque). The result is the same array a full sort gives."""
        old, added, evicted = self._sorted, self._added, self._evicted
        if old is not None and not added and not evicted:
            return old
        if old is None or len(evicted) > old.size or 4 * (len(added) + len(evicted)) > len(self.samples):
            # First read, or the window turned over mostly: sort it whole. (Evicted samples are the oldest, so
            # while there are no more of them than the sorted array holds, they all come from it.)
            data = np.sort(np.fromiter(self.samples, float, len(self.samples)))
        else:
            data = old
            if evicted:
                ev = np.sort(np.asarray(evicted, dtype=float))
                # Equal values: the i-th copy of a value goes at the first copy's index + i.
                rank = np.arange(ev.size) - np.searchsorted(ev, ev, side="left")
                data = np.delete(data, np.searchsorted(data, ev, side="left") + rank)
            if added:
                new = np.sort(np.asarray(added, dtype=float))
                data = np.insert(data, np.searchsorted(data, new, side="left"), new)
        self._sorted = data
        added.clear()
        evicted.clear()
        return data

    def cdf(self, t: npt.ArrayLike) -> FloatArray:
        """Posterior mean of ``P(T <= t)``: the prior blended with the data's empirical CDF, or with the
        Kaplan-Meier estimate when durations still running are known (:meth:`censor`)."""
        t = np.asarray(t, dtype=float)
        w = self.prior_weight
        prior = np.interp(t, self._prior_t, self._prior_f, left=0.0, right=1.0)
        if self._censored.size:
            km, n = self._km_cdf(t, prior)
            return np.asarray((w * prior + n * km) / (w + n), dtype=float)
        n = self.n
        if n == 0:
            return prior
        emp = np.searchsorted(self._data(), t, side="right") / n
        return np.asarray((w * prior + n * emp) / (w + n), dtype=float)

    def _km_cdf(self, t: FloatArray, prior: FloatArray) -> tuple[FloatArray, int]:
        """Kaplan-Meier CDF of the finished and running durations of one cohort, and the cohort's size (its weight
        against the prior). Beyond the longest one seen, where the data say nothing, the survival left decays as
        the prior's conditional tail."""
        if self._km is None:
            ev, ce = self._cohort()
            times, deaths = np.unique(ev, return_counts=True)
            # At risk at an event time: finished then or later, plus running at least that long.
            at_risk = (ev.size - np.searchsorted(ev, times, side="left")) + (
                ce.size - np.searchsorted(ce, times, side="left")
            )
            surv = np.cumprod(1.0 - deaths / np.maximum(at_risk, 1))
            last = max(float(ev[-1]) if ev.size else 0.0, float(ce[-1]) if ce.size else 0.0)
            self._km = (times, surv, last, int(ev.size + ce.size))
        times, surv, last, size = self._km
        i = np.searchsorted(times, t, side="right")
        s = np.where(i > 0, surv[np.maximum(i - 1, 0)] if surv.size else 1.0, 1.0)
        s_end = float(surv[-1]) if surv.size else 1.0
        prior_last = 1.0 - float(np.interp(last, self._prior_t, self._prior_f, left=0.0, right=1.0))
        tail = s_end * np.clip((1.0 - prior) / prior_last, 0.0, 1.0) if prior_last > 1e-12 else np.zeros_like(t)
        return np.asarray(1.0 - np.where(t > last, tail, s), dtype=float), size

    def _cohort(self) -> tuple[FloatArray, FloatArray]:
        """Finished and running durations of one cohort (see :meth:`censor`), each sorted."""
        cut, now = self._cut, self._censor_now
        if now is None or not math.isfinite(cut):  # nothing evicted yet (all are in), or ends unknown
            return self._data(), self._censored
        x = np.fromiter(self.samples, float, len(self.samples))
        ends = np.fromiter(self._ends, float, len(self._ends))
        ev = np.sort(x[ends - x > cut])
        ce = self._censored
        return ev, ce[ce < now - cut]

    def sf(self, t: npt.ArrayLike) -> FloatArray:
        return 1.0 - self.cdf(t)

    def cdf_std(self, t: npt.ArrayLike) -> FloatArray:
        """Posterior standard deviation of ``P(T <= t)``: how sure we are of the CDF at ``t``."""
        f = self.cdf(t)
        return np.sqrt(f * (1.0 - f) / (self.prior_weight + self.n + 1.0))

    @property
    def mean(self) -> float:
        w, n = self.prior_weight, self.n
        m0 = self._prior_mean
        if n == 0:
            return m0
        return (w * m0 + n * float(self._data().mean())) / (w + n)

    def quantile(self, q: float) -> float:
        """Smallest tabulated ``t`` with ``cdf(t) >= q`` (searched on a grid up to the prior's 99.99% point)."""
        hit = self._quantiles.get(q)
        if hit is not None:
            return hit
        top = max(float(self._prior_t[-1]), float(self._data()[-1]) if self.n else 0.0, 1.0)
        grid = np.linspace(0.0, top, 2001)
        f = self.cdf(grid)
        i = int(np.searchsorted(f, q, side="left"))
        out = self._quantiles[q] = float(grid[min(i, len(grid) - 1)])
        return out

    def done_within(self, elapsed: npt.ArrayLike, tau: npt.ArrayLike, shift: float = 0.0) -> FloatArray:
        """``P(T + shift <= elapsed + tau | T > elapsed)``: the chance something that lasted ``elapsed`` ends soon.

        ``shift`` adds a fixed delay after ``T`` (a fixed wrap-up after talk). Where the survival is negligible
        (beyond everything seen and the prior), the thing is taken to end at once, the prior's verdict in the limit.
        A 1-d array of ``tau`` gives a table, one row per ``tau``, in one pass (pacing tabulates eight at once).
        """
        e = np.asarray(elapsed, dtype=float)
        t = np.asarray(tau, dtype=float)
        if t.ndim:
            t = t.reshape(-1, *([1] * e.ndim))
        s0 = self.sf(e)
        f1 = self.cdf(e + t - shift)
        f0 = 1.0 - s0
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(s0 > 1e-12, (f1 - f0) / s0, np.where(t >= shift, 1.0, 0.0))
        return np.asarray(np.clip(p, 0.0, 1.0), dtype=float)


class RingModel:
    """When and how ringing calls end: outcome probabilities and a ring-time distribution per outcome.

    The question it answers is the one pacing asks of every call still ringing: given that it has rung ``a``
    seconds, how likely is a live person on the line within the next ``tau`` seconds? Bayes' rule over the outcome
    classes does it: ``P(class | still ringing at a)`` is proportional to ``p_class x P(T_class > a)``.
    """

    def __init__(
        self,
        outcomes: OutcomeEstimator,
        times: Sequence[DurationEstimator],
    ) -> None:
        if len(times) != len(OUTCOMES):
            raise ConfigError("times", f"need one duration estimator per outcome ({len(OUTCOMES)})")
        self.outcomes = outcomes
        self.times = list(times)

    def live_within(self, ages: npt.ArrayLike, tau: npt.ArrayLike, p: FloatArray | None = None) -> FloatArray:
        """``P(live answer in (a, a + tau] | still ringing at a)`` for each age ``a``; ``p`` overrides the outcome
        probabilities (pacing passes a pessimistic upper bound of the live-answer rate). A 1-d array of ``tau``
        gives a table, one row per ``tau``."""
        a = np.asarray(ages, dtype=float)
        t = np.asarray(tau, dtype=float)
        if t.ndim:
            t = t.reshape(-1, *([1] * a.ndim))
        probs = self.outcomes.probabilities() if p is None else p
        alive = np.zeros_like(a)
        for i, est in enumerate(self.times):
            alive += probs[i] * est.sf(a)
        live = self.times[LIVE]
        gain = probs[LIVE] * (live.cdf(a + t) - live.cdf(a))
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(alive > 1e-12, gain / alive, 0.0)
        return np.asarray(np.clip(out, 0.0, 1.0), dtype=float)


class AgentModel:
    """When busy agents come free: the talk-time distribution plus the wrap-up that follows it.

    Wrap-up durations are not in call records. When the engine reports each wrap-up as it ends
    (:meth:`observe_wrap`, fed by the policy's ``observe_wrap_up`` hook) the mean wrap and the chance of a break
    come from those exact figures. Without that hook they are inferred from the floor itself, as a fallback: the
    mean wrap by Little's law -- on average (agents in wrap-up) / (agents on calls) = mean wrap / mean talk, the
    time-averaged counts exponentially weighted over ``wrap_memory`` seconds -- and the breaks from wrap-ups that
    end with one more paused agent. Wrap-up is modelled as a fixed delay at its mean, which is how most dialers
    implement it (an after-call-work timer).

    Breaks matter because an agent the model expects back who pauses instead is a person left waiting; their
    chance is a Beta posterior forgetting with a half-life of ``pause_half_life`` wrap-ups.
    """

    def __init__(
        self,
        talk: DurationEstimator,
        *,
        prior_wrap: float = 0.0,
        wrap_memory: float = 1800.0,
        prior_pause: float = 0.02,
        pause_half_life: float = 500.0,
    ) -> None:
        if prior_wrap < 0 or not math.isfinite(prior_wrap):
            raise ConfigError("prior_wrap", "must be >= 0")
        if wrap_memory <= 0:
            raise ConfigError("wrap_memory", "must be > 0")
        self.talk = talk
        self.prior_wrap = prior_wrap
        self.wrap_memory = wrap_memory
        self._on_call_area = 0.0
        self._wrap_area = 0.0
        self._last: float | None = None
        self._last_counts = (0, 0, 0)
        if not 0.0 <= prior_pause < 1.0:
            raise ConfigError("prior_pause", "must be in [0, 1)")
        self._pause_prior = (prior_pause * 20.0, (1.0 - prior_pause) * 20.0)
        self._pauses = 0.0
        self._exits = 0.0
        self._pause_decay = 0.5 ** (1.0 / pause_half_life)
        # Reported wrap-ups: exponentially forgotten sums (the same half-life as the breaks).
        self._wrap_n = 0.0
        self._wrap_sum = 0.0
        self._r_pauses = 0.0
        self._r_exits = 0.0
        self.wrap_reports = 0

    def observe_wrap(self, seconds: float, paused: bool) -> None:
        """One wrap-up ended after ``seconds``, followed by a break (``paused``) or not. Once any wrap-up is
        reported, these exact figures replace the floor-count inference. Non-finite or negative lengths are
        ignored (the break still counts: it happened whatever the clock said)."""
        d = self._pause_decay
        self._r_pauses = self._r_pauses * d + (1.0 if paused else 0.0)
        self._r_exits = self._r_exits * d + 1.0
        self._wrap_n *= d
        self._wrap_sum *= d
        if math.isfinite(seconds) and seconds >= 0:
            self._wrap_n += 1.0
            self._wrap_sum += seconds
        self.wrap_reports += 1

    def sample_floor(self, now: float, on_call: int, wrap_up: int, paused: int = 0) -> None:
        """Integrate the counts seen since the previous sample (piecewise constant), with forgetting, and count
        wrap-ups ending in a pause. Call it on every decision, so each change is seen on its own. Once wrap-ups
        are reported (:meth:`observe_wrap`), their figures replace these inferences for good, and it returns at
        once: the engine calls pacing after every event, a million times a day on a big floor."""
        if self.wrap_reported:
            return
        if self._last is not None:
            on0, wr0, pa0 = self._last_counts
            if now > self._last:
                dt = now - self._last
                keep = math.exp(-dt / self.wrap_memory)
                self._on_call_area = self._on_call_area * keep + on0 * dt
                self._wrap_area = self._wrap_area * keep + wr0 * dt
            left = wr0 - wrap_up
            if left > 0:
                paused_now = min(left, max(0, paused - pa0))
                self._exits = self._exits * self._pause_decay**left + left
                self._pauses = self._pauses * self._pause_decay**left + paused_now
        self._last = now
        self._last_counts = (on_call, wrap_up, paused)

    @property
    def wrap_reported(self) -> bool:
        """Wrap-ups are reported with their lengths: the floor-count inferences (:meth:`sample_floor`) are unused."""
        return self.wrap_reports > 0 and self._wrap_n > 0

    @property
    def pause_probability(self) -> float:
        """Posterior mean chance that an agent finishing wrap-up takes a break instead of taking calls."""
        a, b = self._pause_prior
        if self.wrap_reports:
            return (a + self._r_pauses) / (a + b + self._r_exits)
        return (a + self._pauses) / (a + b + self._exits)

    @property
    def wrap_mean(self) -> float:
        """Mean of reported wrap-ups, or the Little's-law estimate without reports; both blended with the prior
        while evidence is thin (the prior is worth five wrap-ups, or five calls' worth of agent-seconds)."""
        if self._wrap_n > 0:
            return (self.prior_wrap * 5.0 + self._wrap_sum) / (5.0 + self._wrap_n)
        area = self._on_call_area
        if area <= 0:
            return self.prior_wrap
        est = self.talk.mean * self._wrap_area / area
        w = 5.0 * max(self.talk.mean, 1.0)  # the prior is worth five calls' worth of agent-seconds
        return (self.prior_wrap * w + est * area) / (w + area)

    def free_within(self, on_call_elapsed: npt.ArrayLike, tau: npt.ArrayLike) -> FloatArray:
        """``P(free within tau)`` for agents that have talked ``elapsed`` seconds (wrap-up still to come)."""
        stay = 1.0 - self.pause_probability
        return self.talk.done_within(on_call_elapsed, tau, shift=self.wrap_mean) * stay

    def wrap_free_within(self, wrap_elapsed: npt.ArrayLike, tau: float) -> FloatArray:
        """``P(free within tau)`` for agents ``elapsed`` seconds into wrap-up (fixed wrap at its mean)."""
        e = np.asarray(wrap_elapsed, dtype=float)
        return np.asarray((e + tau >= self.wrap_mean).astype(float), dtype=float)
