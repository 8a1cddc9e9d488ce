"""Frontier sweeps: many policies (and their knobs) on one scenario, talk and occupancy against abandonment.

A single simulation answers "how does this policy do"; a pacing decision needs "what does each extra point of
abandonment buy, and who gets the most for it". The sweep runs every policy point -- progressive, fixed ratios,
VICIdial's adaptive modes, Issabel- and Webitel-style rules, predictive at several targets -- over the same
replications (same seeds, so the same callers), and writes the frontier as a markdown table and a PNG plot.

Sweep files are scenario files. An optional ``[drift]`` table (docs/scenarios.md) makes the call flow move over
each shift, in sweeps as in ``dialer simulate``; the simulated campaign applies it itself, so the engine and the
policies see nothing but the calls, as they would live.

The summary ratios ("predictive's talk time over the best fixed ratio's") carry 95% intervals by the delta method
on paired replications: replication *k* of every point shares its seed, so the two talk fractions of a pair meet
the same callers and are positively correlated; the ratio of means R = mean(a) / mean(b) has standard error
sd(a_k - R b_k) / (sqrt(n) mean(b)), and the interval is R +- t(n-1) times that (clipped at 0). Pairing counts the
correlation in, so the interval is narrower than treating the points as independent would give, and honest.

"The best fixed ratio" is found by search, not read off the grid: after the grid, a few bisection rounds between
the best ratio under the cap and the next one over it (``refine``), since a comparison against a ratio picked
too low would flatter predictive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialer.errors import ConfigError
from dialer.pacing import POLICIES
from sim.metrics import FIGURES, MIN_REPLICATIONS, pool, replication_figures, t_quantile
from sim.runner import Job, Progress, run_jobs
from sim.runtime import ReplicationResult, SimulatedCampaign
from sim.scenario import Drift, Scenario
from sim.scenario import load as scenario_load

DEFAULT_RATIOS: tuple[float, ...] = (1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0, 2.5)
DEFAULT_TARGETS: tuple[float, ...] = (0.01, 0.02, 0.03)
DEFAULT_REFINE = 3  # bisection rounds for the best fixed ratio under the cap: the grid step over 8
DEFAULT_POLICIES: tuple[str, ...] = (
    "progressive",
    "power",
    "vicidial-hard-limit",
    "vicidial-tapered",
    "vicidial-average",
    "issabel",
    "issabel-no-overcommit",
    "webitel",
    "predictive",
)
# Policies whose knob is a target abandonment rate (swept over ``targets``); ``power`` is swept over ``ratios``.
TARGETED: frozenset[str] = frozenset({"predictive", "webitel"})


@dataclass(frozen=True)
class SweepFile:
    """A scenario plus its drift (kept for callers written when the drift lived outside the scenario)."""

    scenario: Scenario
    drift: Drift | None = None


def load(path: str | Path) -> SweepFile:
    """Read a sweep file, which is just a scenario file: ``[drift]`` is part of the scenario everywhere now."""
    scen = scenario_load(path)
    return SweepFile(scen, scen.drift)


def run_one(scenario: Scenario, index: int, drift: Drift | None = None) -> ReplicationResult:
    """One replication; a ``drift`` given here overrides the scenario's own (a top-level function so process
    pools can pickle it)."""
    if drift is not None:
        scenario = scenario.replace(drift=drift)
    return SimulatedCampaign(scenario, index).run()


@dataclass(frozen=True)
class Point:
    """One policy setting on the frontier."""

    label: str
    policy: str
    target: float | None = None
    ratio: float | None = None

    def apply(self, base: Scenario) -> Scenario:
        changes: dict[str, Any] = {"policy": self.policy}
        if self.target is not None:
            changes["target_abandon_rate"] = self.target
        if self.ratio is not None:
            changes["ratio"] = self.ratio
        pacing = base.pacing if self.policy == base.policy else ()
        return base.replace(**changes, pacing=pacing)


def points(
    policies: Sequence[str] = DEFAULT_POLICIES,
    targets: Sequence[float] = DEFAULT_TARGETS,
    ratios: Sequence[float] = DEFAULT_RATIOS,
) -> list[Point]:
    """The frontier's points: one per policy, one per ratio for ``power``, one per target for targeted ones."""
    out: list[Point] = []
    for name in policies:
        if name not in POLICIES:
            raise ConfigError("--policies", f"unknown policy {name!r} (choose from {', '.join(POLICIES)})")
        if name == "power":
            for r in ratios:
                if not 1.0 <= r <= 10.0:
                    raise ConfigError("--ratios", f"must be between 1 and 10, got {r:g}")
                out.append(Point(f"power {r:g}", "power", ratio=r))
        elif name in TARGETED:
            for t in targets:
                if not 0.0 <= t < 1.0:
                    raise ConfigError("--targets", f"must be in [0, 1), got {t:g}")
                out.append(Point(f"{name} {100 * t:g}%", name, target=t))
        else:
            out.append(Point(name, name))
    if not out:
        raise ConfigError("--policies", "nothing to sweep")
    return out


@dataclass
class Row:
    """One point's pooled figures, and its per-replication :data:`~sim.metrics.FIGURES` (in replication order, for
    paired comparisons; empty when a row is built by hand)."""

    point: Point
    pooled: dict[str, Any]
    per_rep: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class RatioInterval:
    """A ratio of two pooled means with its 95% interval (delta method; ``paired`` when computed from the
    per-replication pairs, else from the two means' own intervals as if independent, which is wider)."""

    ratio: float
    low: float
    high: float
    n: int
    paired: bool

    @property
    def too_few(self) -> bool:
        return self.n < MIN_REPLICATIONS

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "low": self.low, "high": self.high, "n": self.n, "paired": self.paired}


def ratio_interval(a: Row, b: Row, key: str = "talk_fraction") -> RatioInterval:
    """mean(a.key) / mean(b.key) with its 95% interval by the delta method (see the module's docstring)."""
    ma, mb = a.pooled[key], b.pooled[key]
    ratio = ma / mb if mb else math.nan
    xs = [r[key] for r in a.per_rep]
    ys = [r[key] for r in b.per_rep]
    n = len(xs)
    if n >= 2 and len(ys) == n and mb:
        resid = [x - ratio * y for x, y in zip(xs, ys, strict=True)]
        mean_r = sum(resid) / n
        var = sum((d - mean_r) ** 2 for d in resid) / (n - 1)
        half = t_quantile(n - 1) * math.sqrt(var / n) / abs(mb)
        return RatioInterval(ratio, max(0.0, ratio - half), ratio + half, n, True)
    ca, cb = a.pooled["ci95"][key], b.pooled["ci95"][key]
    n = min(int(ca.get("n", 0) or 0), int(cb.get("n", 0) or 0))
    if n < 2 or not ma or not mb:
        return RatioInterval(ratio, math.nan, math.nan, n, False)
    t = t_quantile(n - 1)
    rel = math.hypot(ca["half_width"] / t / ma, cb["half_width"] / t / mb)
    half = t * abs(ratio) * rel
    return RatioInterval(ratio, max(0.0, ratio - half), ratio + half, n, False)


@dataclass
class SweepResult:
    """Pooled figures per point, with the comparisons the frontier is for."""

    scenario: Scenario
    cap: float
    rows: list[Row]
    drift: Drift | None = None
    notes: list[str] = field(default_factory=list)

    def row(self, label: str) -> Row | None:
        return next((r for r in self.rows if r.point.label == label), None)

    def best_fixed_ratio(self) -> Row | None:
        """The most productive fixed ratio whose mean abandonment stays under the cap (the practitioner's
        "best ratio found by sweep"); ``None`` when none does."""
        ok = [r for r in self.rows if r.point.policy == "power" and r.pooled["abandon_rate"] <= self.cap]
        return max(ok, key=lambda r: r.pooled["talk_fraction"], default=None)

    def best_predictive(self) -> Row | None:
        """Predictive at the highest target not above the cap."""
        ok = [r for r in self.rows if r.point.policy == "predictive" and (r.point.target or 0.0) <= self.cap + 1e-12]
        return max(ok, key=lambda r: r.point.target or 0.0, default=None)

    def comparisons(self) -> list[tuple[str, float]]:
        """(description, ratio of talk time) for predictive against the baselines that matter; with their
        intervals in :meth:`comparison_intervals`."""
        return [(text, iv.ratio) for text, iv in self.comparison_intervals()]

    def comparison_intervals(self) -> list[tuple[str, RatioInterval]]:
        """(description, ratio of talk time with its 95% interval) for predictive against the baselines that
        matter: the best fixed ratio under the cap, VICIdial's modes and progressive."""
        pred = self.best_predictive()
        if pred is None:
            return []
        out = []
        fixed = self.best_fixed_ratio()
        if fixed is not None:
            out.append((f"{pred.point.label} vs best fixed ratio ({fixed.point.label})", ratio_interval(pred, fixed)))
        for r in self.rows:
            if r.point.policy.startswith("vicidial") or r.point.policy == "progressive":
                out.append((f"{pred.point.label} vs {r.point.label}", ratio_interval(pred, r)))
        return out


def run(
    base: Scenario,
    pts: Sequence[Point],
    *,
    drift: Drift | None = None,
    workers: int | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
    refine: int = DEFAULT_REFINE,
) -> SweepResult:
    """Simulate every point over ``base.replications`` replications (shared seeds) and pool them.

    With fixed ratios in the sweep, ``refine`` more rounds then bisect between the best ratio under the cap and
    the next one over it (see :func:`refine_ratios`), so "the best fixed ratio" is found by search, not read
    off a coarse grid: a comparison against a ratio picked too low would flatter predictive.
    """
    n = base.replications
    cap = base.target_abandon_rate
    refining = refine if any(p.policy == "power" for p in pts) else 0
    planned = (len(pts) + refining) * n

    def step(offset: int) -> Progress | None:
        if progress is None:
            return None
        return lambda done, _total: progress(offset + done, planned)

    rows = _run_points(base, pts, drift, workers, executor, step(0))
    done = len(pts) * n
    for _ in range(refining):
        mid = _next_ratio(rows, cap)
        if mid is None:
            break
        rows += _run_points(base, [Point(f"power {mid:g}", "power", ratio=mid)], drift, workers, executor, step(done))
        done += n
    if progress is not None and refining:
        progress(planned, planned)
    return SweepResult(base, cap, _ordered(rows), drift if drift is not None else base.drift)


def _run_points(
    base: Scenario,
    pts: Sequence[Point],
    drift: Drift | None,
    workers: int | None,
    executor: Executor | None,
    progress: Progress | None,
) -> list[Row]:
    scenarios = [p.apply(base) for p in pts]
    n = base.replications
    # Slow points (predictive, big floors) first, so a pool is not left waiting on one straggler.
    order = sorted(range(len(scenarios)), key=lambda i: scenarios[i].policy != "predictive")
    jobs: list[Job[tuple[int, int]]] = [((i, k), run_one, (scenarios[i], k, drift)) for i in order for k in range(n)]
    results = run_jobs(jobs, executor=executor, workers=workers, progress=progress)
    cap = base.target_abandon_rate
    rows = []
    for i, p in enumerate(pts):
        per_rep = [replication_figures(results[i, k], cap) for k in range(n)]
        rows.append(Row(p, pool(per_rep, cap), [{name: float(r[name]) for name in FIGURES} for r in per_rep]))
    return rows


def _next_ratio(rows: Sequence[Row], cap: float) -> float | None:
    """The midpoint (to 0.01) between the best fixed ratio under the cap and the lowest one over it, or ``None``
    when there is nothing left to bisect: no ratio over the cap, or the two are 0.01 apart. With none under the
    cap the search starts from 1 (one call per idle agent, progressive's pace)."""
    power = [(r.point.ratio, r.pooled["abandon_rate"]) for r in rows if r.point.policy == "power" and r.point.ratio]
    under = [ratio for ratio, ab in power if ab <= cap]
    lo = max(under, default=1.0)
    over = [ratio for ratio, ab in power if ab > cap and ratio > lo]
    if not over:
        return None
    hi = min(over)
    mid = round((lo + hi) / 2.0, 2)
    return mid if lo < mid < hi else None


def _ordered(rows: list[Row]) -> list[Row]:
    """Rows in sweep order, with refined ratios slotted in among the others by ratio."""
    power = sorted((r for r in rows if r.point.policy == "power"), key=lambda r: r.point.ratio or 0.0)
    if not power:
        return rows
    first = next(i for i, r in enumerate(rows) if r.point.policy == "power")
    rest = [r for r in rows if r.point.policy != "power"]
    return rest[:first] + power + rest[first:]


def _pct(v: float, digits: int = 1) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.{digits}f}%"


def _cell(p: dict[str, Any], key: str, digits: int = 1) -> str:
    """A rate and its interval: ``mean ± half-width``, or ``mean (low-high)`` when the interval meets 0 or 100%
    (a symmetric ± would then claim rates that cannot be)."""
    ci = p["ci95"][key]
    if ci.get("clipped"):
        return f"{_pct(p[key], digits)} ({_pct(ci['low'], digits)}–{_pct(ci['high'], digits)})"
    return f"{_pct(p[key], digits)} ± {_pct(ci['half_width'], digits)}"


def markdown(result: SweepResult) -> str:
    """The frontier as a markdown table, then the comparisons with their intervals."""
    s = result.scenario
    p0 = result.rows[0].pooled
    lines = [
        f"# Pacing frontier: {s.name}",
        "",
        f"{s.agents} agents, {s.hours:g} h x {s.days} day(s) x {s.replications} replication(s) "
        f"({p0['campaign_days']} campaign-days per policy), cap {_pct(result.cap, 0)}, seed {s.seed}."
        + (f" Drift: {result.drift.describe(s.live_answer_probability)}." if result.drift else ""),
        "Means over replications with 95% confidence half-widths (the interval itself where it meets 0% or 100%); "
        "days over cap = share of campaign-days whose abandonment exceeds the cap; 30-day windows = the US "
        "campaign window (a whole replication when it is shorter than 30 days).",
    ]
    if s.replications < MIN_REPLICATIONS:
        lines.append(
            f"Only {s.replications} replication(s): below {MIN_REPLICATIONS} the spread behind each interval is "
            "itself poorly known, so the intervals are rough."
        )
    lines += [
        "",
        "| policy | talk | occupancy | abandonment | worst day | days over cap | 30-day windows over cap "
        "| connects/agent-h |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result.rows:
        p = r.pooled
        lines.append(
            f"| {r.point.label} | {_cell(p, 'talk_fraction')} | {_cell(p, 'agent_occupancy')} "
            f"| {_cell(p, 'abandon_rate', 2)} "
            f"| {_pct(p['worst_day_abandon_rate'], 2)} | {_pct(p['share_days_over_target'])} "
            f"| {_pct(p['share_windows_over_target'])} "
            f"| {p['connects_per_agent_hour']:.2f} |"
        )
    fixed = result.best_fixed_ratio()
    lines += ["", f"Best fixed ratio under the cap: {fixed.point.label if fixed else 'none'}.", ""]
    comparisons = result.comparison_intervals()
    if comparisons:
        lines.append(
            "Talk-time ratios with 95% intervals (delta method on replications paired by seed; see sim/sweep.py):"
        )
        lines.append("")
    for text, iv in comparisons:
        interval = (
            "no interval (one replication)"
            if math.isnan(iv.low)
            else f"95% CI {iv.low:.3f}x .. {iv.high:.3f}x" + (f", rough: {iv.n} replications" if iv.too_few else "")
        )
        lines.append(f"- talk time, {text}: {iv.ratio:.3f}x ({100 * (iv.ratio - 1):+.1f}%), {interval}")
    lines.extend(result.notes)
    return "\n".join(lines) + "\n"


def _family(r: Row) -> str:
    return "vicidial" if r.point.policy.startswith("vicidial") else r.point.policy.split("-")[0]


def _errors(rows: Sequence[Row], key: str) -> tuple[list[float], list[list[float]]]:
    """Means (in %) and asymmetric error bars reaching the clipped interval's ends, so no bar leaves [0, 100%]."""
    means = [100 * r.pooled[key] for r in rows]
    lows = [100 * r.pooled["ci95"][key]["low"] for r in rows]
    highs = [100 * r.pooled["ci95"][key]["high"] for r in rows]
    below = [max(0.0, m - lo) if math.isfinite(lo) else 0.0 for m, lo in zip(means, lows, strict=True)]
    above = [max(0.0, hi - m) if math.isfinite(hi) else 0.0 for m, hi in zip(means, highs, strict=True)]
    return means, [below, above]


def _label_apart(ax: Any, points: Sequence[tuple[float, float, str]]) -> None:
    """Label every point, moving a label up (with a thin leader line) until it clears those already placed, so a
    cluster of policies at the same abandonment stays readable."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    step = 0.035
    placed: list[tuple[float, float]] = []
    for x, y, label in sorted(points, key=lambda p: (p[1], p[0])):
        fx, fy = (x - x0) / (x1 - x0), (y - y0) / (y1 - y0)
        ty = fy + 0.01
        while any(abs(ty - py) < step and abs(fx - px) < 0.3 for px, py in placed):
            ty += step
        placed.append((fx, ty))
        moved = ty - fy > 0.02
        ax.annotate(
            label,
            (x, y),
            xytext=(fx + 0.015, ty),
            textcoords="axes fraction",
            fontsize=6.5,
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"} if moved else None,
        )


# Where the zoomed panels look: abandonment from 0 to this multiple of the cap, where the policies crowd.
ZOOM_CAP_MULTIPLE = 2.0


def figure(result: SweepResult) -> Any:
    """The frontier as a matplotlib figure: talk and occupancy against abandonment over the whole sweep (top), and
    the same zoomed near the cap (bottom: abandonment 0 to twice the cap, every point labelled), where every
    policy worth running ends up and the full view cannot tell them apart. Error bars are the 95% intervals,
    clipped to [0, 100%]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9.5))
    families: dict[str, list[Row]] = {}
    for r in result.rows:
        families.setdefault(_family(r), []).append(r)
    markers = "os^vDP*Xh<>"
    cap = 100 * result.cap
    zoom_hi = ZOOM_CAP_MULTIPLE * cap if cap > 0 else 1.0
    for col, (key, label) in enumerate(
        (("talk_fraction", "talk (% of logged-in time)"), ("agent_occupancy", "occupancy, talk + wrap (%)"))
    ):
        full, zoom = axes[0][col], axes[1][col]
        in_zoom: list[tuple[float, float, str]] = []  # (x, y, label) of the points inside the zoom window
        for i, (fam, rows) in enumerate(families.items()):
            xs, xerr = _errors(rows, "abandon_rate")
            ys, yerr = _errors(rows, key)
            line = "-" if fam in ("power", "predictive") else "none"
            style = {"marker": markers[i % len(markers)], "linestyle": line, "label": fam, "capsize": 2}
            full.errorbar(xs, ys, xerr=xerr, yerr=yerr, **style)
            zoom.errorbar(xs, ys, xerr=xerr, yerr=yerr, **style)
            for r, x, y in zip(rows, xs, ys, strict=True):
                if fam in ("power", "predictive", "webitel"):
                    full.annotate(
                        r.point.label.split(" ")[-1], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
                    )
                if 0.0 <= x <= zoom_hi:
                    in_zoom.append((x, y, r.point.label))
        for ax in (full, zoom):
            ax.axvline(cap, color="red", linestyle="--", linewidth=1, label="cap")
            ax.set_xlabel("abandonment (% of live answers)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        # The data never leave [0, 100%]; the axes show a sliver past 0 so markers at 0 are not cut in half.
        lo, hi = full.get_ylim()
        full.set_ylim(max(-1.0, lo), min(101.0, hi))
        right = min(100.0, full.get_xlim()[1])
        full.set_xlim(-0.01 * right, right)
        zoom.set_xlim(-0.02 * zoom_hi, zoom_hi)
        if in_zoom:  # framed on the means (bars run off the panel's edge): the zoom is for telling points apart
            ylo = min(v[1] for v in in_zoom)
            yhi = max(v[1] for v in in_zoom)
            pad = max(1.0, 0.15 * (yhi - ylo))
            zoom.set_ylim(max(-1.0, ylo - pad), min(101.0, yhi + pad))
            _label_apart(zoom, in_zoom)
        zoom.set_title(f"near the cap: abandonment 0-{zoom_hi:g}%", fontsize=9)
    axes[0][0].legend(fontsize=8, loc="lower right")
    s = result.scenario
    fig.suptitle(f"Pacing frontier: {s.name}, {s.agents} agents ({s.replications} x {s.days} campaign-days)")
    fig.tight_layout()
    return fig


def plot(result: SweepResult, path: str | Path) -> Path:
    """Write :func:`figure` as a PNG (needs the ``[plot]`` extra)."""
    import matplotlib.pyplot as plt

    fig = figure(result)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write(result: SweepResult, out_dir: str | Path, stem: str) -> tuple[Path, Path | None]:
    """Write ``STEM.md`` and, when matplotlib is installed, ``STEM.png`` into ``out_dir``."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    md = d / f"{stem}.md"
    png: Path | None = d / f"{stem}.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        png = None
        result.notes.append("\n(No plot: matplotlib is not installed; pip install 'predictive-dialer[plot]'.)")
    text = markdown(result)
    if png is not None:
        plot(result, png)
        text += f"\n![frontier]({png.name})\n"
    md.write_text(text, encoding="utf-8")
    return md, png
