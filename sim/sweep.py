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

Scenario axes (``--vary KEY=V1,V2``, :func:`parse_axis`) sweep the call flow as well as the pacing: a period's
live-answer probability, inbound rate, talk scale or staffing (``periods.lunch.live_answer_probability=x0.5,x1``,
a period by name or index, or ``periods.*`` for every stretch of the shift), the inbound settings
(``inbound.busyness_shape=0,4``) or the base call flow (``calls.live_answer_probability=0.2,0.3``). Every policy
point runs at every combination of the axes' values, on the same seeds; the comparisons are made within each
combination. All combinations are built and checked before anything runs, so a bad axis costs no simulation.

"The best fixed ratio" is found by search, not read off the grid: after the grid, a few bisection rounds between
the best ratio under the cap and the next one over it (``refine``), since a comparison against a ratio picked
too low would flatter predictive.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialer.errors import ConfigError
from dialer.pacing import POLICIES
from sim.inbound_periods import PERIOD_KEYS, STAFFING_KEYS, Period, segments
from sim.metrics import FIGURES, MIN_REPLICATIONS, t_quantile
from sim.runner import Job, Progress, pooled_figures, run_jobs
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


# --- scenario axes -----------------------------------------------------------------------------------------------

# Period values an axis can set or scale, with the short names the issue and users reach for first.
PERIOD_VALUES: tuple[str, ...] = ("live_answer_probability", "inbound_rate_per_hour", "talk_scale", *STAFFING_KEYS)
ALIASES: dict[str, str] = {
    "answer_rate": "live_answer_probability",
    "live_answer": "live_answer_probability",
    "inbound_rate": "inbound_rate_per_hour",
    "rate_per_hour": "inbound_rate_per_hour",
}
INBOUND_VALUES: tuple[str, ...] = (
    "rate_per_hour",
    "busyness_shape",
    "service_level_seconds",
    "service_level_target",
    "balk_at",
    "balk_probability",
)
CALLS_VALUES: tuple[str, ...] = ("live_answer_probability", "machine_probability", "busy_probability", "connect_limit")
AGENTS_VALUES: tuple[str, ...] = ("pause_probability",)
_INTEGER_VALUES = frozenset(STAFFING_KEYS)


@dataclass(frozen=True)
class Setting:
    """One value of one axis: ``key`` as the user wrote it, and either a value to set or (``scale``) a factor for
    the value the scenario has there."""

    key: str
    value: float
    scale: bool = False

    @property
    def label(self) -> str:
        return f"{self.key}={'x' if self.scale else ''}{self.value:g}"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "scale" if self.scale else "set": self.value}


@dataclass(frozen=True)
class Axis:
    """A scenario key swept over values (``periods.lunch.live_answer_probability=x0.5,x1``)."""

    key: str
    settings: tuple[Setting, ...]


def parse_axis(text: str) -> Axis:
    """``KEY=V1,V2,...``: a value is a number to set, or ``xF`` (or ``*F``) to scale the scenario's value by F.
    Only the syntax is checked here; :func:`combinations` checks each value against the scenario."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise ConfigError(
            "--vary", f"expected KEY=V1,V2,... (e.g. periods.lunch.live_answer_probability=x0.5,x1), got {text!r}"
        )
    out: list[Setting] = []
    raws = values.split(",")
    if len(raws) > 1 and not raws[-1].strip():
        raws.pop()  # a trailing comma (x0.5,x1,) adds no value
    for raw in raws:
        v = raw.strip()
        if not v:
            raise ConfigError(key, f"an empty value in {values.strip()!r} (two commas together?)")
        scale = v[:1] in ("x", "*")
        number = v[1:] if scale else v
        try:
            value = float(number)
        except ValueError:
            raise ConfigError(key, f"value {v!r} is not a number (or xF, a factor)") from None
        if not math.isfinite(value):
            raise ConfigError(key, f"value {v!r} is not a finite number")
        setting = Setting(key, value, scale)
        if setting in out:  # the same combination twice: twice the work, and two rows no one can tell apart
            raise ConfigError(key, f"value {setting.label.partition('=')[2]} is given twice")
        out.append(setting)
    return Axis(key, tuple(out))


def _resolve_period(key: str, selector: str, periods: Sequence[Period]) -> list[float]:
    """The start hours of the periods a selector names: a name, an index into ``[[periods]]`` (by start), or
    ``*`` (every stretch of the shift, including the one before the first period, marked by -1)."""
    if not periods:
        raise ConfigError(key, "the scenario has no [[periods]] to vary")
    if selector == "*":
        before = [-1.0] if periods[0].start_hour > 0 else []
        return [*before, *(p.start_hour for p in periods)]
    named = [p for p in periods if p.name == selector]
    if named:
        return [named[0].start_hour]
    if selector.lstrip("-").isdigit():
        i = int(selector)
        if 0 <= i < len(periods):
            return [periods[i].start_hour]
        raise ConfigError(
            key, f"period index {i} is out of range (the scenario has {len(periods)} periods: 0-{len(periods) - 1})"
        )
    names = [p.name for p in periods if p.name]
    hint = difflib.get_close_matches(selector, names, n=1, cutoff=0.6)
    raise ConfigError(
        key,
        f"unknown period {selector!r}"
        + (f" (did you mean {hint[0]!r}?)" if hint else "")
        + f"; name one of {', '.join(map(repr, names)) or '(none named)'}, an index 0-{len(periods) - 1}, or *",
    )


def _new_value(setting: Setting, current: float, field_name: str) -> float | int:
    value = current * setting.value if setting.scale else setting.value
    if field_name in _INTEGER_VALUES:
        if not setting.scale and value != int(value):
            raise ConfigError(setting.key, f"{setting.label}: staffing must be a whole number of agents")
        return _whole(value)
    return float(value)


def _apply_period(s: Scenario, setting: Setting, selector: str, field_name: str) -> Scenario:
    """Set or scale a period's value. The change is kept to the period named: the next period that did not set
    the value gets the one in force before, so sweeping lunch leaves the afternoon as the file has it. ``*``
    changes every stretch, the one before the first period included (through the scenario's own value where it
    has one, else through a period added at hour 0)."""
    targets = _resolve_period(setting.key, selector, s.periods)
    by_start = {p.start_hour: p for p in s.periods}
    segs = {seg.start_hour if seg.index is not None else -1.0: seg for seg in segments(s)}
    staffing = field_name in _INTEGER_VALUES
    if field_name == "inbound_rate_per_hour" and s.inbound is None:
        raise ConfigError(setting.key, "needs an [inbound] table")

    def in_force(start: float) -> float:
        seg = segs[start] if start in segs else segs[-1.0]
        if staffing:
            return float(seg.values["staffing"].get(field_name, 0))
        return float(seg.values[field_name])

    changes: dict[float, float | int] = {t: _new_value(setting, in_force(t), field_name) for t in targets}
    periods = dict(by_start)
    if selector != "*":
        # One period: pin the next one to the value in force before, unless it sets its own.
        for t in targets:
            later = sorted(h for h in by_start if h > t)
            if later and getattr(by_start[later[0]], field_name) is None:
                pinned: dict[str, Any] = {field_name: _typed(in_force(t), staffing)}
                periods[later[0]] = dataclasses.replace(periods[later[0]], **pinned)
    out = s
    for t, value in changes.items():
        change: dict[str, Any] = {field_name: value}
        if t == -1.0:
            if field_name == "live_answer_probability":
                out = out.replace(live_answer_probability=value)
            elif field_name == "inbound_rate_per_hour":
                assert out.inbound is not None
                out = out.replace(inbound=dataclasses.replace(out.inbound, rate_per_hour=value))
            elif value != in_force(-1.0) and 0.0 not in periods:  # talk scale, staffing: a period at hour 0
                periods[0.0] = Period(start_hour=0.0, **change)
            continue
        periods[t] = dataclasses.replace(periods[t], **change)
    return out.replace(periods=tuple(periods[h] for h in sorted(periods)))


def _whole(value: float) -> int:
    """Agents, rounded half up: x0.5 of 5 agents is 3, as x0.7 is 4 (Python's round() gives 2 and 4)."""
    return math.floor(value + 0.5)


def _typed(value: float, integer: bool) -> float | int:
    return _whole(value) if integer else float(value)


def _apply_flat(s: Scenario, setting: Setting, section: str, field_name: str) -> Scenario:
    if section == "inbound":
        if s.inbound is None:
            raise ConfigError(setting.key, "the scenario has no [inbound] table")
        current = float(getattr(s.inbound, field_name))
        change: dict[str, Any] = {field_name: _new_value(setting, current, field_name)}
        return s.replace(inbound=dataclasses.replace(s.inbound, **change))
    value = _new_value(setting, float(getattr(s, field_name)), field_name)
    return s.replace(**{field_name: value})


def apply_setting(s: Scenario, setting: Setting) -> Scenario:
    """The scenario with one axis value applied; any error names the axis's key as written."""
    parts = setting.key.split(".")
    try:
        if parts[0] == "periods" and len(parts) == 3:
            field_name = ALIASES.get(parts[2], parts[2])
            if field_name not in PERIOD_VALUES:
                known = (*PERIOD_VALUES, *ALIASES)
                hint = difflib.get_close_matches(parts[2], known, n=1, cutoff=0.6)
                extra = " (a period's name and start are not swept)" if parts[2] in PERIOD_KEYS else ""
                raise ConfigError(
                    setting.key,
                    f"cannot vary {parts[2]!r}{extra}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f"; a period's values are {', '.join(PERIOD_VALUES)}",
                )
            return _apply_period(s, setting, parts[1], field_name)
        flat = {"inbound": INBOUND_VALUES, "calls": CALLS_VALUES, "agents": AGENTS_VALUES}
        if len(parts) == 2 and parts[0] in flat:
            if parts[1] not in flat[parts[0]]:
                hint = difflib.get_close_matches(parts[1], flat[parts[0]], n=1, cutoff=0.6)
                raise ConfigError(
                    setting.key,
                    f"cannot vary {parts[1]!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f"; [{parts[0]}] values that sweep: {', '.join(flat[parts[0]])}",
                )
            return _apply_flat(s, setting, parts[0], parts[1])
        raise ConfigError(
            setting.key,
            "unknown axis: vary periods.<name|index|*>.<value>, inbound.<key>, calls.<key> or agents.<key>",
        )
    except ConfigError as exc:
        if exc.key == setting.key:
            raise
        # The scenario's own check (a probability past 1, more agents than the floor has), told against the axis.
        raise ConfigError(setting.key, f"{setting.label} gives {exc.key or 'the scenario'}: {exc.message}") from None


def combinations(base: Scenario, axes: Sequence[Axis]) -> list[tuple[tuple[Setting, ...], Scenario]]:
    """Every combination of the axes' values with its scenario, built (and so checked) before anything runs; one
    combination, with no settings, when there are no axes."""
    keys = [a.key for a in axes]
    for k in keys:
        if keys.count(k) > 1:
            raise ConfigError(k, "is varied twice: give its values in one --vary")
    out = []
    for combo in itertools.product(*(a.settings for a in axes)):
        s = base
        for setting in combo:
            s = apply_setting(s, setting)
        out.append((tuple(combo), s))
    return out


@dataclass(frozen=True)
class Point:
    """One policy setting on the frontier."""

    label: str
    policy: str
    target: float | None = None
    ratio: float | None = None
    #: The scenario axes' values this point runs at (empty without ``--vary``); see :func:`combinations`.
    settings: tuple[Setting, ...] = ()

    @property
    def tag(self) -> str:
        """The axes' values, ``periods.lunch.live_answer_probability=x0.5``, or ``""`` without axes."""
        return " ".join(st.label for st in self.settings)

    @property
    def title(self) -> str:
        """The label with the axes' values, as tables and JSON name the point."""
        return f"{self.label} [{self.tag}]" if self.settings else self.label

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
    axes: tuple[Axis, ...] = ()

    def row(self, label: str) -> Row | None:
        """The row titled ``label`` (the policy label, then the axes' values in brackets when there are axes)."""
        return next((r for r in self.rows if r.point.title == label), None)

    def settings(self) -> list[tuple[Setting, ...]]:
        """The axes' combinations, in sweep order (one, empty, without axes)."""
        out: list[tuple[Setting, ...]] = []
        for r in self.rows:
            if r.point.settings not in out:
                out.append(r.point.settings)
        return out

    def _within(self, settings: tuple[Setting, ...] | None) -> list[Row]:
        if settings is None:
            settings = self.settings()[0] if self.rows else ()
        return [r for r in self.rows if r.point.settings == settings]

    def best_fixed_ratio(self, settings: tuple[Setting, ...] | None = None) -> Row | None:
        """The most productive fixed ratio whose mean abandonment stays under the cap (the practitioner's
        "best ratio found by sweep"), at one combination of the axes (default: the first); ``None`` when none
        does."""
        ok = [r for r in self._within(settings) if r.point.policy == "power" and r.pooled["abandon_rate"] <= self.cap]
        return max(ok, key=lambda r: r.pooled["talk_fraction"], default=None)

    def best_predictive(self, settings: tuple[Setting, ...] | None = None) -> Row | None:
        """Predictive at the highest target not above the cap, at one combination of the axes."""
        ok = [
            r
            for r in self._within(settings)
            if r.point.policy == "predictive" and (r.point.target or 0.0) <= self.cap + 1e-12
        ]
        return max(ok, key=lambda r: r.point.target or 0.0, default=None)

    def comparisons(self) -> list[tuple[str, float]]:
        """(description, ratio of talk time) for predictive against the baselines that matter; with their
        intervals in :meth:`comparison_intervals`."""
        return [(text, iv.ratio) for text, iv in self.comparison_intervals()]

    def comparison_intervals(self) -> list[tuple[str, RatioInterval]]:
        """(description, ratio of talk time with its 95% interval) for predictive against the baselines that
        matter: the best fixed ratio under the cap, VICIdial's modes and progressive, within each combination of
        the axes (a comparison across two call flows would measure the call flows, not the pacing)."""
        out = []
        for settings in self.settings():
            pred = self.best_predictive(settings)
            if pred is None:
                continue
            fixed = self.best_fixed_ratio(settings)
            where = f" [{pred.point.tag}]" if settings else ""
            if fixed is not None:
                out.append(
                    (
                        f"{pred.point.label} vs best fixed ratio ({fixed.point.label}){where}",
                        ratio_interval(pred, fixed),
                    )
                )
            for r in self._within(settings):
                if r.point.policy.startswith("vicidial") or r.point.policy == "progressive":
                    out.append((f"{pred.point.label} vs {r.point.label}{where}", ratio_interval(pred, r)))
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
    axes: Sequence[Axis] = (),
) -> SweepResult:
    """Simulate every point over ``base.replications`` replications (shared seeds) and pool them.

    With ``axes``, every point runs at every combination of the axes' values (:func:`combinations`, all built and
    checked before the first replication); the rows then carry the combination in ``point.settings``.

    With fixed ratios in the sweep, ``refine`` more rounds then bisect between the best ratio under the cap and
    the next one over it (see :func:`_next_ratio`), within each combination, so "the best fixed ratio" is found
    by search, not read off a coarse grid: a comparison against a ratio picked too low would flatter predictive.
    """
    combos = combinations(base, axes)
    bases = dict(combos)
    n = base.replications
    cap = base.target_abandon_rate
    refining = refine if any(p.policy == "power" for p in pts) else 0
    planned = (len(pts) + refining) * n * len(combos)
    # Apply every point to every combination now, so a point that does not fit a combination fails before any run.
    tagged = [dataclasses.replace(p, settings=settings) for settings, _ in combos for p in pts]
    for p in tagged:
        p.apply(bases[p.settings])

    def step(offset: int) -> Progress | None:
        if progress is None:
            return None
        return lambda done, _total: progress(offset + done, planned)

    rows = _run_points(bases, tagged, drift, workers, executor, step(0), cap)
    done = len(tagged) * n
    for settings, _ in combos:
        for _ in range(refining):
            mid = _next_ratio([r for r in rows if r.point.settings == settings], cap)
            if mid is None:
                break
            extra = Point(f"power {mid:g}", "power", ratio=mid, settings=settings)
            rows += _run_points(bases, [extra], drift, workers, executor, step(done), cap)
            done += n
    if progress is not None and refining:
        progress(planned, planned)
    ordered = [r for settings, _ in combos for r in _ordered([r for r in rows if r.point.settings == settings])]
    return SweepResult(base, cap, ordered, drift if drift is not None else base.drift, axes=tuple(axes))


def _run_points(
    bases: dict[tuple[Setting, ...], Scenario],
    pts: Sequence[Point],
    drift: Drift | None,
    workers: int | None,
    executor: Executor | None,
    progress: Progress | None,
    cap: float,
) -> list[Row]:
    scenarios = [p.apply(bases[p.settings]) for p in pts]
    n = scenarios[0].replications
    # Slow points (predictive, big floors) first, so a pool is not left waiting on one straggler.
    order = sorted(range(len(scenarios)), key=lambda i: scenarios[i].policy != "predictive")
    jobs: list[Job[tuple[int, int]]] = [((i, k), run_one, (scenarios[i], k, drift)) for i in order for k in range(n)]
    results = run_jobs(jobs, executor=executor, workers=workers, progress=progress)
    rows = []
    for i, p in enumerate(pts):
        # Judged against the sweep's cap, whatever target the point paces to.
        per_rep, pooled = pooled_figures(scenarios[i], [results[i, k] for k in range(n)], cap)
        rows.append(Row(p, pooled, [{name: float(r[name]) for name in FIGURES} for r in per_rep]))
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
        + (f" Drift: {result.drift.describe(s.live_answer_probability)}." if result.drift else "")
        + (
            " Axes: "
            + "; ".join(f"{a.key} = {', '.join(st.label.split('=', 1)[1] for st in a.settings)}" for a in result.axes)
            + " (xF scales the scenario's value; each policy runs at every combination, on the same seeds)."
            if result.axes
            else ""
        ),
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
            f"| {r.point.title} | {_cell(p, 'talk_fraction')} | {_cell(p, 'agent_occupancy')} "
            f"| {_cell(p, 'abandon_rate', 2)} "
            f"| {_pct(p['worst_day_abandon_rate'], 2)} | {_pct(p['share_days_over_target'])} "
            f"| {_pct(p['share_windows_over_target'])} "
            f"| {p['connects_per_agent_hour']:.2f} |"
        )
    periods = [(r, r.pooled["periods"]) for r in result.rows if r.pooled.get("periods")]
    if periods:
        from sim.report import period_lines

        lines += ["", "Per period, for each point (means over replications; intervals in --json):"]
        for r, segs in periods:
            lines += ["", f"{r.point.title}:", "", "```", *period_lines(segs)[1:], "```"]
    lines.append("")
    for settings in result.settings():
        fixed = result.best_fixed_ratio(settings)
        where = f" at {' '.join(st.label for st in settings)}" if settings else ""
        lines.append(f"Best fixed ratio under the cap{where}: {fixed.point.label if fixed else 'none'}.")
    lines.append("")
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


def to_json(result: SweepResult) -> dict[str, Any]:
    """The sweep as one JSON document (``dialer sweep --json``): the scenario, the cap, the axes, and per point its
    policy settings, the axes' values, and the figures a ``dialer simulate --json`` document has at its top level
    (pooled means, ``ci95``, day and window shares; ``inbound`` with ``[inbound]``; ``periods``, each stretch of
    the shift with its values and figures, with ``[[periods]]``), all made by :func:`sim.runner.pooled_figures`;
    then the talk-time comparisons with their intervals. NaN is left to the caller (the command writes null)."""
    return {
        "scenario": result.scenario.to_dict(),
        "cap": result.cap,
        "replication_count": result.scenario.replications,
        "axes": [{"key": a.key, "values": [st.to_json() for st in a.settings]} for a in result.axes],
        "points": [
            {
                "label": r.point.title,
                "policy": r.point.policy,
                "target": r.point.target,
                "ratio": r.point.ratio,
                "settings": [st.to_json() for st in r.point.settings],
                **r.pooled,
                "replications": r.per_rep,
            }
            for r in result.rows
        ],
        "comparisons": [{"text": text, **iv.to_dict()} for text, iv in result.comparison_intervals()],
        "notes": list(result.notes),
    }


def _family(r: Row) -> str:
    """A plot's curve: the policy family, and with axes the combination it ran at."""
    family = "vicidial" if r.point.policy.startswith("vicidial") else r.point.policy.split("-")[0]
    return f"{family} [{r.point.tag}]" if r.point.settings else family


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
            line = "-" if fam.split(" ")[0] in ("power", "predictive") else "none"
            style = {"marker": markers[i % len(markers)], "linestyle": line, "label": fam, "capsize": 2}
            full.errorbar(xs, ys, xerr=xerr, yerr=yerr, **style)
            zoom.errorbar(xs, ys, xerr=xerr, yerr=yerr, **style)
            for r, x, y in zip(rows, xs, ys, strict=True):
                if fam.split(" ")[0] in ("power", "predictive", "webitel"):
                    full.annotate(
                        r.point.label.split(" ")[-1], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
                    )
                if 0.0 <= x <= zoom_hi:
                    in_zoom.append((x, y, r.point.title))
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
