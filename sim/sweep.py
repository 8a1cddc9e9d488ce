"""Frontier sweeps: many policies (and their knobs) on one scenario, talk and occupancy against abandonment.

A single simulation answers "how does this policy do"; a pacing decision needs "what does each extra point of
abandonment buy, and who gets the most for it". The sweep runs every policy point -- progressive, fixed ratios,
VICIdial's adaptive modes, Issabel- and Webitel-style rules, predictive at several targets -- over the same
replications (same seeds, so the same callers), and writes the frontier as a markdown table and a PNG plot.

Sweep files are scenario files. An optional ``[drift]`` table (docs/scenarios.md) makes the call flow move over
each shift, in sweeps as in ``dialer simulate``; the simulated campaign applies it itself, so the engine and the
policies see nothing but the calls, as they would live.

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
from sim.metrics import pool, replication_figures
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
    point: Point
    pooled: dict[str, Any]


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
        """(description, ratio of talk time) for predictive against the baselines that matter."""
        pred = self.best_predictive()
        if pred is None:
            return []
        out = []
        talk = pred.pooled["talk_fraction"]
        fixed = self.best_fixed_ratio()
        if fixed is not None:
            out.append(
                (f"{pred.point.label} vs best fixed ratio ({fixed.point.label})", talk / fixed.pooled["talk_fraction"])
            )
        for r in self.rows:
            if r.point.policy.startswith("vicidial") or r.point.policy == "progressive":
                out.append((f"{pred.point.label} vs {r.point.label}", talk / r.pooled["talk_fraction"]))
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
    return [Row(p, pool([replication_figures(results[i, k], cap) for k in range(n)], cap)) for i, p in enumerate(pts)]


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


def markdown(result: SweepResult) -> str:
    """The frontier as a markdown table, then the comparisons."""
    s = result.scenario
    p0 = result.rows[0].pooled
    lines = [
        f"# Pacing frontier: {s.name}",
        "",
        f"{s.agents} agents, {s.hours:g} h x {s.days} day(s) x {s.replications} replication(s) "
        f"({p0['campaign_days']} campaign-days per policy), cap {_pct(result.cap, 0)}, seed {s.seed}."
        + (f" Drift: {result.drift.describe(s.live_answer_probability)}." if result.drift else ""),
        "Means over replications with 95% confidence half-widths; days over cap = share of campaign-days whose "
        "abandonment exceeds the cap; 30-day windows = the US campaign window (a whole replication when it is "
        "shorter than 30 days).",
        "",
        "| policy | talk | occupancy | abandonment | worst day | days over cap | 30-day windows over cap "
        "| connects/agent-h |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result.rows:
        p = r.pooled
        ci = p["ci95"]
        lines.append(
            f"| {r.point.label} | {_pct(p['talk_fraction'])} ± {_pct(ci['talk_fraction']['half_width'])} "
            f"| {_pct(p['agent_occupancy'])} ± {_pct(ci['agent_occupancy']['half_width'])} "
            f"| {_pct(p['abandon_rate'], 2)} ± {_pct(ci['abandon_rate']['half_width'], 2)} "
            f"| {_pct(p['worst_day_abandon_rate'], 2)} | {_pct(p['share_days_over_target'])} "
            f"| {_pct(p['share_windows_over_target'])} "
            f"| {p['connects_per_agent_hour']:.2f} |"
        )
    fixed = result.best_fixed_ratio()
    lines += ["", f"Best fixed ratio under the cap: {fixed.point.label if fixed else 'none'}.", ""]
    for text, ratio in result.comparisons():
        lines.append(f"- talk time, {text}: {ratio:.3f}x ({100 * (ratio - 1):+.1f}%)")
    lines.extend(result.notes)
    return "\n".join(lines) + "\n"


def plot(result: SweepResult, path: str | Path) -> Path:
    """Talk and occupancy against abandonment, one marker style per policy family (needs the ``[plot]`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    families: dict[str, list[Row]] = {}
    for r in result.rows:
        fam = r.point.policy.split("-")[0] if not r.point.policy.startswith("vicidial") else "vicidial"
        families.setdefault(fam, []).append(r)
    markers = "os^vDP*Xh<>"
    for ax, key, label in (
        (axes[0], "talk_fraction", "talk (% of logged-in time)"),
        (axes[1], "agent_occupancy", "occupancy, talk + wrap (%)"),
    ):
        for i, (fam, rows) in enumerate(families.items()):
            xs = [100 * r.pooled["abandon_rate"] for r in rows]
            ys = [100 * r.pooled[key] for r in rows]
            xerr = [100 * r.pooled["ci95"]["abandon_rate"]["half_width"] for r in rows]
            yerr = [100 * r.pooled["ci95"][key]["half_width"] for r in rows]
            line = "-" if fam in ("power", "predictive") else "none"
            ax.errorbar(
                xs, ys, xerr=xerr, yerr=yerr, marker=markers[i % len(markers)], linestyle=line, label=fam, capsize=2
            )
            if fam in ("power", "predictive", "webitel"):
                for r, x, y in zip(rows, xs, ys, strict=True):
                    ax.annotate(
                        r.point.label.split(" ")[-1], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
                    )
        ax.axvline(100 * result.cap, color="red", linestyle="--", linewidth=1, label="cap")
        ax.set_xlabel("abandonment (% of live answers)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    s = result.scenario
    fig.suptitle(f"Pacing frontier: {s.name}, {s.agents} agents ({s.replications} x {s.days} campaign-days)")
    fig.tight_layout()
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
