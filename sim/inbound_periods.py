"""Call flows that change over the shift: the ``[[periods]]`` array of a scenario.

Each period starts ``start_hour`` hours into every day's shift (0 is the shift's start) and holds until the next
one starts; before the first, the scenario's own values hold. A period may set the live-answer probability, the
inbound arrival rate, a talk-time scale (outbound and inbound talk), and the staffing of each agent group (how
many of the group's agents are on the floor: the others leave after their current call, as for a meeting, and
come back when a later period says so). Changes are instant, so a sudden change (the answer rate halving, a third
of the floor leaving) is a period of its own.

Named periods (``name = "lunch"``) are labels for reports; times are hours, not clock times, because a simulated
day starts at its shift.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dialer.errors import ConfigError

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
