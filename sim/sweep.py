"""Frontier sweeps: many policies (and their knobs) on one scenario, talk and occupancy against abandonment.

A single simulation answers "how does this policy do"; a pacing decision needs "what does each extra point of
abandonment buy, and who gets the most for it". The sweep runs every policy point -- progressive, fixed ratios,
VICIdial's adaptive modes, Issabel- and Webitel-style rules, predictive at several targets -- over the same
replications (same seeds, so the same callers), and writes the frontier as a markdown table and a PNG plot.

Sweep files are scenario files with one optional extra table, ``[drift]``, for campaigns whose call flow moves
during the day (the simulator's scenarios are stationary)::

    [drift]
    live_answer_to = 0.10   # the live-answer probability falls linearly to this by the end of each shift
    talk_scale_to = 1.25    # talk times are stretched linearly up to this factor

Drift is applied by a thin subclass of the simulated campaign: the engine and the policies see nothing but the
calls, as they would live.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Generator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import simpy

from dialer.errors import ConfigError
from dialer.pacing import POLICIES
from sim.distributions import Sampler
from sim.metrics import pool, replication_figures
from sim.runner import Job, Progress, run_jobs
from sim.runtime import ReplicationResult, SimulatedCampaign
from sim.scenario import Scenario, scenario_from_dict

DEFAULT_RATIOS: tuple[float, ...] = (1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0, 2.5)
DEFAULT_TARGETS: tuple[float, ...] = (0.01, 0.02, 0.03)
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
class Drift:
    """Linear drift over each shift: live-answer probability toward ``live_answer_to``, talk times scaled up to
    ``talk_scale_to``. The other outcomes keep their probabilities; no-answer absorbs the difference."""

    live_answer_to: float | None = None
    talk_scale_to: float = 1.0

    def __post_init__(self) -> None:
        if self.live_answer_to is not None and not 0.0 <= self.live_answer_to <= 1.0:
            raise ConfigError("drift.live_answer_to", "must be a probability")
        if not 0.1 <= self.talk_scale_to <= 10.0:
            raise ConfigError("drift.talk_scale_to", "must be between 0.1 and 10")


@dataclass(frozen=True)
class SweepFile:
    """A scenario plus its optional drift."""

    scenario: Scenario
    drift: Drift | None = None


def load(path: str | Path) -> SweepFile:
    """Read a sweep file (a scenario file, plus an optional ``[drift]`` table); errors name file and key."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read scenario {str(p)!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"malformed TOML in {p}: {exc}") from None
    drift_table = data.pop("drift", None)
    try:
        scen = scenario_from_dict(data)
        drift = None
        if drift_table is not None:
            if not isinstance(drift_table, Mapping):
                raise ConfigError("drift", "must be a table")
            unknown = set(drift_table) - {"live_answer_to", "talk_scale_to"}
            if unknown:
                raise ConfigError(f"drift.{sorted(unknown)[0]}", "unknown key")
            for k, v in drift_table.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ConfigError(f"drift.{k}", f"must be a number, got {v!r}")
            drift = Drift(**{k: float(v) for k, v in drift_table.items()})
    except ConfigError as exc:
        raise ConfigError(exc.key, f"{exc.message} (in {p})") from None
    return SweepFile(scen, drift)


class _ScaledSampler(Sampler):
    """A sampler whose draws are stretched by a factor that can change while the campaign runs."""

    __slots__ = ("_inner", "scale")

    def __init__(self, inner: Sampler) -> None:  # the parent's slots stay unused: draws come from ``inner``
        self._inner = inner
        self.scale = 1.0

    def __call__(self) -> float:
        return self._inner() * self.scale


class DriftingCampaign(SimulatedCampaign):
    """A campaign whose live-answer rate and talk times move linearly over each shift."""

    def __init__(self, scenario: Scenario, replication: int, drift: Drift) -> None:
        super().__init__(scenario, replication)
        self.drift = drift
        self._live0 = scenario.live_answer_probability
        self._talk = _ScaledSampler(self.talk_time)
        self.talk_time = self._talk

    def drifter(self, step: float = 60.0) -> Generator[simpy.Event, Any, None]:
        s = self.scenario
        while True:
            frac = min(1.0, (self.env.now % 86400.0) / s.shift_seconds)
            d = self.drift
            live = self._live0 if d.live_answer_to is None else self._live0 + (d.live_answer_to - self._live0) * frac
            self._cum = (live, live + s.machine_probability, live + s.machine_probability + s.busy_probability)
            self._talk.scale = 1.0 + (d.talk_scale_to - 1.0) * frac
            yield self.env.timeout(step)

    def run(self) -> ReplicationResult:
        self.env.process(self.drifter())
        return super().run()


def run_one(scenario: Scenario, index: int, drift: Drift | None = None) -> ReplicationResult:
    """One replication, drifting or not (a top-level function so process pools can pickle it)."""
    if drift is None:
        return SimulatedCampaign(scenario, index).run()
    return DriftingCampaign(scenario, index, drift).run()


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
) -> SweepResult:
    """Simulate every point over ``base.replications`` replications (shared seeds) and pool them."""
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
        rows.append(Row(p, pool(per_rep, cap)))
    return SweepResult(base, cap, rows, drift)


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
        + (f" Drift: {result.drift}." if result.drift else ""),
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
