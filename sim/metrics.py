"""From raw replication counts to the figures a report shows, with 95% confidence intervals.

Definitions (also in docs/simulation.md):

* ``abandon_rate`` = abandoned / live answers (the US and UK numerator and denominator).
* ``talk_fraction`` = time on calls / logged-in time; ``agent_occupancy`` = (talk + wrap) / logged-in time.
* ``idle_between_calls`` = mean seconds an agent waited, ready, for the next call.
* ``connects_per_agent_hour`` = calls connected to agents / logged-in hours.
* Abandonment per campaign day, and over rolling windows of 30 days (the whole campaign when shorter: the FTC's
  rule for campaigns under 30 days), with the worst window and the share of windows over the target.

Pooled figures are the mean over replications with a Student-t 95% interval: each replication is one independent
campaign, so the spread between replications is the honest measure of uncertainty. Intervals are clipped to what
the figure can be (:data:`BOUNDS`: rates and fractions in [0, 1], counts, times and hours >= 0): the symmetric
t-interval of a rate near 0 would otherwise reach below 0 (``Abandoned -7.4 .. 38.7``). ``half_width`` stays the
unclipped t half-width; ``low`` and ``high`` are the clipped ends and ``clipped`` says whether either moved.

Intervals from fewer than :data:`MIN_REPLICATIONS` (10) replications are flagged (``too_few`` in ``ci95``,
``too_few_replications`` in the pooled figures, a note under the report): the interval needs the spread between
replications, and from n values its estimate is itself rough -- the standard deviation's relative standard error
is about 1/sqrt(2(n-1)), 50% at 3 replications and 35% at 5 against 24% at 10 -- while the t quantile that pays
for that (12.7 at 2, 4.3 at 3, 2.78 at 5, 2.26 at 10) makes few-replication intervals wide and, for rates near 0,
clipped. Per-replication abandonment is a small count, so its distribution is skewed and the t-interval's
normality also needs replications to average out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.runtime import SERIES_BIN, ReplicationResult

if TYPE_CHECKING:
    from sim.scenario import Scenario

WINDOW_DAYS = 30

# The figures reported per replication and pooled, in report order.
FIGURES: tuple[str, ...] = (
    "agent_occupancy",
    "talk_fraction",
    "abandon_rate",
    "dials",
    "live_answers",
    "machine_answers",
    "abandoned",
    "connects",
    "connects_per_agent_hour",
    "idle_between_calls",
    "worst_day_abandon_rate",
    "worst_window_abandon_rate",
    "agent_hours",
)


# What each figure can be: (low, high); None: unbounded. Rates and fractions are in [0, 1]; everything else is a
# count, a time or hours, never negative.
BOUNDS: dict[str, tuple[float, float | None]] = {
    name: (0.0, 1.0) if name.endswith(("_rate", "_fraction", "_occupancy")) else (0.0, None) for name in FIGURES
}
MIN_REPLICATIONS = 10


def _rate(num: float, den: float) -> float:
    return num / den if den else 0.0


def rolling_windows(answers: Sequence[tuple[float, bool]], hours: float, step: float = 900.0) -> list[dict[str, Any]]:
    """Abandonment over the last ``hours`` (Amazon Connect-style rolling windows), evaluated every ``step``
    seconds while answers come in; windows with no live answer are not windows anyone is judged on."""
    import bisect

    if not answers:
        return []
    times = [t for t, _ in answers]
    abandoned_before = [0]
    for _, was_abandoned in answers:
        abandoned_before.append(abandoned_before[-1] + was_abandoned)
    span = hours * 3600.0
    out = []
    end = (times[0] // step + 1) * step
    last = times[-1] + step
    while end <= last:
        lo = bisect.bisect_left(times, end - span)
        hi = bisect.bisect_left(times, end)
        live = hi - lo
        if live:
            ab = abandoned_before[hi] - abandoned_before[lo]
            out.append({"end": end, "live_answers": live, "abandoned": ab, "abandon_rate": ab / live})
        end += step
    return out


def replication_figures(r: ReplicationResult, cap: float, rolling_hours: float | None = None) -> dict[str, Any]:
    """Per-replication figures, as listed in :data:`FIGURES`, plus per-day and per-window detail (and rolling
    windows of ``rolling_hours`` when the campaign is judged on those)."""
    t = r.totals
    secs = r.agent_seconds
    logged = sum(secs.values())
    talk = secs.get("on_call", 0.0)
    wrap = secs.get("wrap_up", 0.0)
    days = [{**d, "abandon_rate": _rate(d["abandoned"], d["live_answers"])} for d in r.days]
    span = min(WINDOW_DAYS, len(days))
    windows = []
    for start in range(len(days) - span + 1):
        chunk = days[start : start + span]
        ab = sum(d["abandoned"] for d in chunk)
        live = sum(d["live_answers"] for d in chunk)
        windows.append(
            {"first_day": start, "days": span, "abandoned": ab, "live_answers": live, "abandon_rate": _rate(ab, live)}
        )
    rolling = rolling_windows(r.answers, rolling_hours) if rolling_hours else []
    extra: dict[str, Any] = {}
    if rolling_hours:
        extra = {
            "rolling_window_hours": rolling_hours,
            "worst_rolling_abandon_rate": max((w["abandon_rate"] for w in rolling), default=0.0),
            "rolling_windows_over_target": sum(w["abandon_rate"] > cap for w in rolling),
            "rolling_windows": len(rolling),
        }
    return {
        **extra,
        "replication": r.index,
        "agent_occupancy": _rate(talk + wrap, logged),
        "talk_fraction": _rate(talk, logged),
        "abandon_rate": _rate(t["abandoned"], t["live_answers"]),
        "dials": t["dials"],
        "live_answers": t["live_answers"],
        "machine_answers": t["machine_answers"],
        "busy": t["busy"],
        "no_answer": t["no_answer"],
        "abandoned": t["abandoned"],
        "connects": t["connects"],
        "connects_per_agent_hour": _rate(t["connects"], logged / 3600.0),
        "idle_between_calls": _rate(r.idle_gap_seconds, r.idle_gaps),
        "worst_day_abandon_rate": max((d["abandon_rate"] for d in days), default=0.0),
        "worst_window_abandon_rate": max((w["abandon_rate"] for w in windows), default=0.0),
        "days_over_target": sum(d["abandon_rate"] > cap for d in days),
        "windows_over_target": sum(w["abandon_rate"] > cap for w in windows),
        "agent_hours": logged / 3600.0,
        "days": days,
        "windows": windows,
    }


@dataclass(frozen=True)
class Interval:
    """A pooled mean with its 95% confidence interval (``half_width`` is 0 with a single replication).

    ``low`` and ``high`` are clipped to the figure's possible range (``clipped`` says whether they were);
    ``half_width`` is the t half-width before clipping. ``too_few`` flags fewer than :data:`MIN_REPLICATIONS`."""

    mean: float
    low: float
    high: float
    half_width: float
    n: int
    clipped: bool = False

    @property
    def too_few(self) -> bool:
        return self.n < MIN_REPLICATIONS

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "half_width": self.half_width,
            "n": self.n,
            "clipped": self.clipped,
            "too_few": self.too_few,
        }


def t_quantile(df: int, q: float = 0.975) -> float:
    from scipy import stats  # heavy: loaded only when intervals are computed

    return float(stats.t.ppf(q, df))


def mean_interval(values: Sequence[float], low: float | None = None, high: float | None = None) -> Interval:
    """The mean of ``values`` with its Student-t 95% interval, clipped to [``low``, ``high``] (either may be
    ``None``: unbounded on that side)."""
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, mean, mean, 0.0, 1)
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_quantile(n - 1) * math.sqrt(var / n)
    lo, hi = mean - half, mean + half
    clipped_lo = lo if low is None else max(low, lo)
    clipped_hi = hi if high is None else min(high, hi)
    return Interval(mean, clipped_lo, clipped_hi, half, n, clipped_lo != lo or clipped_hi != hi)


def pool(per_rep: Sequence[dict[str, Any]], cap: float) -> dict[str, Any]:
    """Pooled figures over replications: means with intervals, plus campaign-day and window shares."""
    pooled: dict[str, Any] = {}
    intervals: dict[str, Interval] = {}
    for name in FIGURES:
        iv = mean_interval([float(r[name]) for r in per_rep], *BOUNDS[name])
        intervals[name] = iv
        pooled[name] = iv.mean
    all_days = [d for r in per_rep for d in r["days"]]
    all_windows = [w for r in per_rep for w in r["windows"]]
    pooled["campaign_days"] = len(all_days)
    pooled["share_days_over_target"] = _rate(sum(d["abandon_rate"] > cap for d in all_days), len(all_days))
    pooled["share_windows_over_target"] = _rate(sum(w["abandon_rate"] > cap for w in all_windows), len(all_windows))
    pooled["worst_day_abandon_rate"] = max((d["abandon_rate"] for d in all_days), default=0.0)
    pooled["worst_window_abandon_rate"] = max((w["abandon_rate"] for w in all_windows), default=0.0)
    if per_rep and "rolling_windows" in per_rep[0]:
        count = sum(r["rolling_windows"] for r in per_rep)
        pooled["rolling_window_hours"] = per_rep[0]["rolling_window_hours"]
        pooled["share_rolling_windows_over_target"] = _rate(
            sum(r["rolling_windows_over_target"] for r in per_rep), count
        )
        pooled["worst_rolling_abandon_rate"] = max(r["worst_rolling_abandon_rate"] for r in per_rep)
    total_ab = sum(r["abandoned"] for r in per_rep)
    total_live = sum(r["live_answers"] for r in per_rep)
    pooled["abandon_rate_all_calls"] = _rate(total_ab, total_live)
    pooled["ci95"] = {name: iv.to_dict() for name, iv in intervals.items()}
    pooled["too_few_replications"] = len(per_rep) < MIN_REPLICATIONS
    return pooled


# -- over the day: per 15-minute bin, the mean over replications and its 95% band --------------------------------


def bin_intervals(values: np.ndarray, low: float | None = None, high: float | None = None) -> dict[str, list[Any]]:
    """Per column of ``values`` (replications x bins; NaN where a replication has no value for that bin, e.g. no
    live answer to take a rate of): the mean over the replications that have one, its Student-t 95% interval
    clipped to [``low``, ``high``], and ``n``, how many replications the bin's figure rests on. A bin with one
    value has the value as its interval, a bin with none has NaN throughout."""
    values = np.asarray(values, dtype=float)
    have = ~np.isnan(values)
    n = have.sum(axis=0)
    total = np.where(have, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / n, np.nan)
        squares = np.where(have, (values - mean) ** 2, 0.0).sum(axis=0)
        var = np.where(n > 1, squares / np.maximum(n - 1, 1), 0.0)
        quantiles = {int(k): t_quantile(int(k) - 1) for k in set(n.tolist()) if k > 1}
        t = np.array([quantiles.get(int(k), 0.0) for k in n])
        half = np.where(n > 0, t * np.sqrt(var / np.maximum(n, 1)), np.nan)
    lo, hi = mean - half, mean + half
    if low is not None:
        lo = np.maximum(lo, low)
    if high is not None:
        hi = np.minimum(hi, high)
    return {"mean": mean.tolist(), "low": lo.tolist(), "high": hi.tolist(), "n": n.tolist()}


def configured_live_answer(scenario: Scenario, bins: int, step: float = 60.0) -> list[float]:
    """The live-answer probability the scenario sets in each bin: its ``[drift]`` averaged over the bin at the
    drift process's once-a-minute steps, its ``[[periods]]`` averaged exactly over the bin, or the constant
    ``live_answer_probability`` with neither.

    Periods are read from the day's stretches (:func:`sim.inbound_periods.segments`, the values the simulator
    applies at each period's hour): without them an analyst comparing the realised answer rate with the one set
    would see a lunch-hour dip reported as drift."""
    live0 = scenario.live_answer_probability
    drift = scenario.drift
    if scenario.periods:
        from sim.inbound_periods import segments
        from sim.runtime import DAY

        # Piecewise constant over the day: each stretch's value from its start to the next one's (the last holds
        # to midnight, through the drain; the next day starts again from the first), averaged exactly over a bin.
        segs = segments(scenario)
        starts = [seg.start_hour * 3600.0 for seg in segs] + [DAY]
        values = [float(seg.values["live_answer_probability"]) for seg in segs]  # segs[0] starts at hour 0

        def mean_over(lo: float, hi: float) -> float:
            day = math.floor(lo / DAY) * DAY
            total = 0.0
            for k, value in enumerate(values):
                a, b = max(lo, day + starts[k]), min(hi, day + starts[k + 1])
                if b > a:
                    total += (b - a) * value
            return total / (hi - lo)

        return [mean_over(b * SERIES_BIN, (b + 1) * SERIES_BIN) for b in range(bins)]
    if drift is None:
        return [live0] * bins
    per_bin = int(SERIES_BIN // step)
    out = []
    for b in range(bins):
        start = b * SERIES_BIN
        steps = [
            drift.live_answer(live0, drift.fraction(start + k * step, scenario.shift_seconds)) for k in range(per_bin)
        ]
        out.append(sum(steps) / len(steps))
    return out


def _answers_per_bin(r: ReplicationResult, bins: int) -> tuple[np.ndarray, np.ndarray]:
    if not r.answers:
        return np.zeros(bins), np.zeros(bins)
    answers = np.asarray(r.answers, dtype=float)  # (answered_at, abandoned) per live answer
    where = np.minimum((answers[:, 0] // SERIES_BIN).astype(int), bins - 1)
    live = np.bincount(where, minlength=bins).astype(float)
    abandoned = np.bincount(where, weights=answers[:, 1], minlength=bins)
    return live, abandoned


def _padded(rows: Sequence[Sequence[float]], bins: int, fill: float) -> np.ndarray:
    out = np.full((len(rows), bins), fill)
    for i, row in enumerate(rows):
        k = min(len(row), bins)
        out[i, :k] = row[:k]
    return out


def time_series(results: Sequence[ReplicationResult], scenario: Scenario) -> dict[str, Any]:
    """The day as the replications saw it, per 15-minute bin: each figure's mean over replications with its
    clipped 95% band (:func:`bin_intervals`), from the first bin to the last one with anyone logged in or any call.

    * ``occupancy``, ``talk``: share of logged-in agents busy (talk + wrap) and talking (sampled each minute).
    * ``dials``, ``live_answers``, ``abandoned``: counts per bin; live answers and abandonments are binned by the
      time the person answered, so each replication's bins sum to its totals, and the means of the bins sum to the
      pooled means of ``live_answers`` and ``abandoned``.
    * ``abandon_rate``: abandoned / live answers within the bin (a replication with no live answer in the bin has
      no rate there); ``abandon_rate_cumulative``: from the campaign's start to the bin's end, whose last bin is
      each replication's ``abandon_rate``.
    * ``live_answer_rate``: live answers / dials per bin, against ``live_answer_configured``, the probability the
      scenario (and its ``[drift]``) sets: where a drifting list shows, and how far the realised rate trails it.
    """
    if not results:
        return {}
    bins = max(len(r.series.get("occupancy", [])) for r in results)
    occ = _padded([r.series.get("occupancy", []) for r in results], bins, math.nan)
    talk = _padded([r.series.get("talk", []) for r in results], bins, math.nan)
    dials = _padded([r.series.get("dials", []) for r in results], bins, 0.0)
    per_rep = [_answers_per_bin(r, bins) for r in results]
    live = np.array([lv for lv, _ in per_rep]).reshape(len(results), bins)
    abandoned = np.array([ab for _, ab in per_rep]).reshape(len(results), bins)
    used = ~np.isnan(occ) | (dials > 0) | (live > 0)
    columns = np.flatnonzero(used.any(axis=0))
    span = int(columns[-1]) + 1 if columns.size else 0
    occ, talk, dials, live, abandoned = (a[:, :span] for a in (occ, talk, dials, live, abandoned))
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(live > 0, abandoned / live, np.nan)
        cum_live, cum_ab = np.cumsum(live, axis=1), np.cumsum(abandoned, axis=1)
        cumulative = np.where(cum_live > 0, cum_ab / cum_live, np.nan)
        answer_rate = np.where(dials > 0, live / dials, np.nan)
    return {
        "bin_seconds": SERIES_BIN,
        "hours": [(b + 0.5) * SERIES_BIN / 3600.0 for b in range(span)],
        "occupancy": bin_intervals(occ, 0.0, 1.0),
        "talk": bin_intervals(talk, 0.0, 1.0),
        "dials": bin_intervals(dials, 0.0),
        "live_answers": bin_intervals(live, 0.0),
        "abandoned": bin_intervals(abandoned, 0.0),
        "abandon_rate": bin_intervals(rate, 0.0, 1.0),
        "abandon_rate_cumulative": bin_intervals(cumulative, 0.0, 1.0),
        "live_answer_rate": bin_intervals(answer_rate, 0.0, 1.0),
        "live_answer_configured": configured_live_answer(scenario, span),
    }
