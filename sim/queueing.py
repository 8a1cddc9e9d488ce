"""Queueing theory for inbound floors: Erlang-C (callers never give up) and Erlang-A (exponential patience).

The formulas live in :mod:`dialer.pacing.blended`, where blended pacing uses them live; this module gathers them
for the simulator's tests and benchmarks, with one function that gives the figures a report compares with.

>>> round(erlang_c(5, 4.0), 4)  # 5 agents, 4 Erlangs offered: 55% of callers wait
0.5541
>>> f = theory(servers=5, rate_per_hour=80, handle=180, within=20)
>>> round(f["service_level"], 3), round(f["asa"], 1)
(0.504, 99.7)
"""

from __future__ import annotations

import math

from dialer.pacing.blended import (
    agents_needed,
    erlang_a,
    erlang_b,
    erlang_c,
    erlang_c_asa,
    erlang_c_service_level,
    service_level,
)

__all__ = [
    "agents_needed",
    "erlang_a",
    "erlang_b",
    "erlang_c",
    "erlang_c_asa",
    "erlang_c_service_level",
    "service_level",
    "theory",
]


def theory(
    servers: int, rate_per_hour: float, handle: float, within: float, patience: float | None = None
) -> dict[str, float]:
    """Stationary figures of an inbound-only floor of ``servers`` agents: ``service_level`` (answered within
    ``within`` s, abandoned callers counted against it), ``abandon`` (share who hang up first), ``wait_prob``,
    and without patience (Erlang-C) ``asa``, the mean wait of all callers (all are answered)."""
    rate = rate_per_hour / 3600.0
    out = erlang_a(servers, rate, handle, patience, within)
    if patience is None:
        out["asa"] = erlang_c_asa(servers, rate, handle)
    else:
        out["asa"] = math.nan
    return out
