"""Call flows that change over the shift: the ``[[periods]]`` array of a scenario.

Each period starts ``start_hour`` hours into every day's shift (0 is the shift's start) and holds until the next
one starts; before the first, the scenario's own values hold. A period may set the live-answer probability, the
inbound arrival rate, a talk-time scale (outbound and inbound talk), and the staffing of each agent group (how
many of the group's agents are on the floor: the others leave after their current call, as for a meeting, and
come back when a later period says so). Changes are instant, so a sudden change (the answer rate halving, a third
of the floor leaving) is a period of its own.

Named periods (``name = "lunch"``) are labels for reports; times are hours, not clock times, because a simulated
day starts at its shift.

:func:`period_figures` measures each stretch of the shift apart (the values in force there and what the
replications did under them, with 95% intervals), so a report can show that the lunch hour answered less, not
only that the day averaged lower. ``dialer simulate --json`` and ``dialer sweep --json`` carry it under
``periods``.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dialer.errors import ConfigError

if TYPE_CHECKING:
    from sim.runtime import ReplicationResult
    from sim.scenario import Scenario

PERIOD_KEYS: tuple[str, ...] = (
    "start_hour",
    "name",
    "live_answer_probability",
    "inbound_rate_per_hour",
    "talk_scale",
    "outbound",
    "inbound",
    "blended",
)
STAFFING_KEYS: tuple[str, ...] = ("outbound", "inbound", "blended")


@dataclass(frozen=True)
class Period:
    """One period of the shift; ``None`` leaves a value as the period before it had it."""

    start_hour: float
    name: str = ""
    live_answer_probability: float | None = None
    inbound_rate_per_hour: float | None = None
    talk_scale: float | None = None
    outbound: int | None = None
    inbound: int | None = None
    blended: int | None = None

    def __post_init__(self) -> None:
        where = f"periods[{self.name or self.start_hour}]"
        v = self.start_hour
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 24:
            raise ConfigError(f"{where}.start_hour", f"must be a number of hours from 0 to 24, got {v!r}")
        if not isinstance(self.name, str):
            raise ConfigError(f"{where}.name", "must be a string")
        for key, lo, hi in (
            ("live_answer_probability", 0.0, 1.0),
            ("inbound_rate_per_hour", 0.0, 1e6),
            ("talk_scale", 0.1, 10.0),
        ):
            x = getattr(self, key)
            if x is None:
                continue
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not lo <= x <= hi:
                raise ConfigError(f"{where}.{key}", f"must be a number from {lo:g} to {hi:g}, got {x!r}")
        for key in STAFFING_KEYS:
            n = getattr(self, key)
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                raise ConfigError(f"{where}.{key}", f"must be an integer >= 0, got {n!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in PERIOD_KEYS if getattr(self, k) not in (None, "")}

    def staffing(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in STAFFING_KEYS if getattr(self, k) is not None}


def periods_from_list(items: Any) -> tuple[Period, ...]:
    """The ``[[periods]]`` array, checked key by key and sorted by start (two periods may not start together)."""
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise ConfigError("periods", "must be an array of tables ([[periods]])")
    out = []
    for i, table in enumerate(items):
        if not isinstance(table, Mapping):
            raise ConfigError(f"periods[{i}]", "must be a table")
        for key in table:
            if key not in PERIOD_KEYS:
                near = difflib.get_close_matches(key, PERIOD_KEYS, n=1, cutoff=0.6)
                raise ConfigError(
                    f"periods[{i}].{key}", "unknown key" + (f" (did you mean {near[0]!r}?)" if near else "")
                )
        if "start_hour" not in table:
            raise ConfigError(f"periods[{i}].start_hour", "is required")
        kwargs = dict(table)
        for key in ("start_hour", "live_answer_probability", "inbound_rate_per_hour", "talk_scale"):
            x = kwargs.get(key)
            if isinstance(x, int) and not isinstance(x, bool):
                kwargs[key] = float(x)
        out.append(Period(**kwargs))
    out.sort(key=lambda p: p.start_hour)
    for a, b in itertools.pairwise(out):
        if a.start_hour == b.start_hour:
            raise ConfigError("periods", f"two periods start at hour {a.start_hour:g}")
    return tuple(out)


def check_periods(
    periods: Sequence[Period],
    hours: float,
    roster: Mapping[str, int],
    machine: float,
    busy: float,
    has_inbound: bool,
) -> None:
    """Checks across keys: periods start within the shift, staff at most the roster of each group, keep the
    outcome probabilities summing to at most 1, and set an inbound rate only for a scenario with ``[inbound]``."""
    for i, p in enumerate(periods):
        where = f"periods[{i}]"
        if p.start_hour >= hours:
            raise ConfigError(f"{where}.start_hour", f"is {p.start_hour:g}, not within the {hours:g}-hour shift")
        for group, n in p.staffing().items():
            if n > roster.get(group, 0):
                raise ConfigError(
                    f"{where}.{group}", f"is {n} but the floor has {roster.get(group, 0)} {group} agents to staff it"
                )
        live = p.live_answer_probability
        if live is not None and live + machine + busy > 1 + 1e-9:
            raise ConfigError(f"{where}.live_answer_probability", "plus machine and busy probabilities exceeds 1")
        if p.inbound_rate_per_hour is not None and not has_inbound:
            raise ConfigError(f"{where}.inbound_rate_per_hour", "needs an [inbound] table")


@dataclass(frozen=True)
class Segment:
    """A stretch of every day's shift with one set of values: from ``start_hour`` to the next one's start (the
    last runs to the end of the shift, and takes the calls that drain after it). ``index`` is the position of its
    period in ``Scenario.periods``, ``None`` for the stretch before the first period (the scenario's own values).
    ``values`` are those in force: live-answer probability, inbound rate, talk scale and staffing per group."""

    index: int | None
    name: str
    start_hour: float
    end_hour: float
    values: dict[str, Any]


def segments(scenario: Scenario) -> list[Segment]:
    """The shift cut at each period's start, each stretch with the values in force there (a value a period leaves
    unset carries on from the stretch before it, as the simulator applies it). Empty without ``[[periods]]``."""
    periods = scenario.periods
    if not periods:
        return []
    roster = scenario.groups.to_dict() if scenario.groups is not None else {"outbound": scenario.agents}
    values: dict[str, Any] = {
        "live_answer_probability": scenario.live_answer_probability,
        "talk_scale": 1.0,
        "staffing": {g: n for g, n in roster.items() if n},
    }
    if scenario.inbound is not None:
        values["inbound_rate_per_hour"] = scenario.inbound.rate_per_hour
    starts = [p.start_hour for p in periods] + [scenario.hours]
    out: list[Segment] = []
    if periods[0].start_hour > 0:
        out.append(Segment(None, "", 0.0, periods[0].start_hour, dict(values, staffing=dict(values["staffing"]))))
    for i, p in enumerate(periods):
        for key in ("live_answer_probability", "inbound_rate_per_hour", "talk_scale"):
            if getattr(p, key) is not None:
                values[key] = getattr(p, key)
        values["staffing"] = {**values["staffing"], **p.staffing()}
        out.append(Segment(i, p.name, p.start_hour, starts[i + 1], dict(values, staffing=dict(values["staffing"]))))
    return out


def _segment_of(hours_into_day: float, starts: Sequence[float]) -> int:
    """Index of the stretch holding that hour of the day: the last one started by then (the drain after the shift
    belongs to the last)."""
    k = 0
    for i, start in enumerate(starts):
        if hours_into_day + 1e-9 >= start:
            k = i
    return k


# Figures per stretch and the range each can take (for the clipped intervals).
PERIOD_FIGURES: dict[str, tuple[float | None, float | None]] = {
    "dials": (0.0, None),
    "live_answers": (0.0, None),
    "abandoned": (0.0, None),
    "live_answer_rate": (0.0, 1.0),
    "abandon_rate": (0.0, 1.0),
    "occupancy": (0.0, 1.0),
    "talk": (0.0, 1.0),
    "inbound_callers": (0.0, None),
    "inbound_service_level": (0.0, 1.0),
    "inbound_abandon_rate": (0.0, 1.0),
}


def _replication_by_segment(
    r: ReplicationResult, starts: Sequence[float], within: float | None
) -> list[dict[str, float]]:
    """One replication's figures per stretch, summed over its days. Live answers, abandonments and inbound callers
    are placed by their own time (answered, arrived); dials, talk and occupancy by their 15-minute bin's middle,
    so a period starting off the quarter hour blurs these by at most a bin."""
    from sim.runtime import SERIES_BIN

    n = len(starts)
    dials = [0.0] * n
    live = [0.0] * n
    abandoned = [0.0] * n
    busy: list[list[float]] = [[] for _ in range(n)]
    talking: list[list[float]] = [[] for _ in range(n)]

    def where(t: float) -> int:
        return _segment_of((t % 86400.0) / 3600.0, starts)

    for b, count in enumerate(r.series.get("dials", [])):
        dials[where((b + 0.5) * SERIES_BIN)] += count
    for key, sink in (("occupancy", busy), ("talk", talking)):
        for b, share in enumerate(r.series.get(key, [])):
            if not math.isnan(share):
                sink[where((b + 0.5) * SERIES_BIN)].append(share)
    for at, lost in r.answers:
        k = where(at)
        live[k] += 1
        abandoned[k] += float(lost)
    callers = [0.0] * n
    quick = [0.0] * n
    lost_in = [0.0] * n
    for arrived, wait, answered in r.inbound:
        k = where(arrived)
        callers[k] += 1
        if answered and within is not None and wait <= within:
            quick[k] += 1
        if not answered:
            lost_in[k] += 1
    out = []
    for k in range(n):
        f = {
            "dials": dials[k],
            "live_answers": live[k],
            "abandoned": abandoned[k],
            "live_answer_rate": live[k] / dials[k] if dials[k] else math.nan,
            "abandon_rate": abandoned[k] / live[k] if live[k] else math.nan,
            "occupancy": sum(busy[k]) / len(busy[k]) if busy[k] else math.nan,
            "talk": sum(talking[k]) / len(talking[k]) if talking[k] else math.nan,
        }
        if within is not None:
            f["inbound_callers"] = callers[k]
            f["inbound_service_level"] = quick[k] / callers[k] if callers[k] else math.nan
            f["inbound_abandon_rate"] = lost_in[k] / callers[k] if callers[k] else math.nan
        out.append(f)
    return out


def period_figures(results: Sequence[ReplicationResult], scenario: Scenario) -> list[dict[str, Any]]:
    """Each stretch of the shift (:func:`segments`) with the values in force there and what the replications did
    in it: dials, live answers and abandonments (counts per replication, all days), the live-answer rate and
    abandonment rate, the mean occupancy and talk share of the logged-in agents, and with ``[inbound]`` the
    inbound callers, service level and abandonment. Each figure is pooled over the replications that have it (a
    rate needs a denominator) as ``{"mean", "low", "high", "half_width", "n", "clipped", "too_few"}``, a
    Student-t 95% interval as :func:`sim.metrics.mean_interval` gives everywhere else. Empty without periods."""
    from sim.metrics import mean_interval  # sim.metrics imports the scenario, which imports this module

    segs = segments(scenario)
    if not segs:
        return []
    starts = [s.start_hour for s in segs]
    within = scenario.inbound.service_level_seconds if scenario.inbound is not None else None
    per_rep = [_replication_by_segment(r, starts, within) for r in results]
    out = []
    for k, seg in enumerate(segs):
        entry: dict[str, Any] = {
            "index": seg.index,
            "name": seg.name,
            "start_hour": seg.start_hour,
            "end_hour": seg.end_hour,
            "configured": seg.values,
        }
        for name, (lo, hi) in PERIOD_FIGURES.items():
            if within is None and name.startswith("inbound_"):
                continue
            values = [rep[k][name] for rep in per_rep if not math.isnan(rep[k][name])]
            entry[name] = mean_interval(values, lo, hi).to_dict()
        out.append(entry)
    return out
