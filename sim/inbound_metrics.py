"""Inbound figures of simulated replications: service level, average speed of answer, abandonment, occupancy
per agent group, each pooled over replications with a Student-t 95% interval (as :mod:`sim.metrics` does for the
outbound figures).

``inbound_figures(result, within)`` gives one replication's figures; ``pool_inbound(results, within)`` the
pooled means and intervals, ready to be put in a report or ``--json`` under ``"inbound"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sim.metrics import mean_interval
from sim.runtime import ReplicationResult

_BUSY = ("on_call", "wrap_up")


def inbound_figures(r: ReplicationResult, within: float) -> dict[str, float]:
    """One replication: callers, answered within ``within`` s, service level (answered within T over callers whose
    fate is known, abandoned ones counted against it), ASA (mean wait of the answered), abandonment share, the
    inbound handle time, ``blocked`` (callers who balked: the engine's ``InboundBlocked`` count; they are among the
    callers and the abandoned, with no wait, as the scenario documents a balk) and ``blocking_share`` (blocked over
    callers), ``outbound_talk_fraction`` (time talking to outbound people over logged-in time), and
    ``occupancy_<group>`` (time on calls or in wrap-up over logged-in time) for each group on the floor."""
    calls = r.inbound
    answered = [float(wait) for _, wait, ok in calls if ok]
    n = len(calls)
    out: dict[str, float] = {
        "callers": float(n),
        "answered": float(len(answered)),
        "abandoned": float(n - len(answered)),
        "service_level": sum(1 for w in answered if w <= within) / n if n else math.nan,
        "asa": sum(answered) / len(answered) if answered else math.nan,
        "abandon_rate": (n - len(answered)) / n if n else math.nan,
        "handle_time": r.inbound_handle_time,
        "blocked": float(r.inbound_blocked),
        "blocking_share": r.inbound_blocked / n if n else math.nan,
    }
    logged = sum(r.agent_seconds.values())
    # sim.metrics' talk_fraction counts every call an agent was on; this is the outbound share of it.
    out["outbound_talk_fraction"] = (
        (r.agent_seconds.get("on_call", 0.0) - r.inbound_talk_seconds) / logged if logged else math.nan
    )
    for group, seconds in sorted(r.group_seconds.items()):
        total = sum(seconds.values())
        out[f"occupancy_{group}"] = sum(seconds.get(s, 0.0) for s in _BUSY) / total if total else math.nan
    return out


_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "service_level": (0.0, 1.0),
    "abandon_rate": (0.0, 1.0),
    "blocking_share": (0.0, 1.0),
    "asa": (0.0, None),
}


def pool_inbound(results: Sequence[ReplicationResult], within: float) -> dict[str, Any]:
    """Pooled figures: ``{name: {"mean", "low", "high", "half_width", "n", ...}}`` over the replications that
    have the figure (a replication with no inbound caller has no service level)."""
    per_rep = [inbound_figures(r, within) for r in results]
    names = sorted({k for figures in per_rep for k in figures})
    out: dict[str, Any] = {}
    for name in names:
        values = [f[name] for f in per_rep if name in f and not math.isnan(f[name])]
        low, high = _BOUNDS.get(name, (0.0, 1.0) if name.startswith("occupancy_") else (0.0, None))
        out[name] = {
            k: float(v) if isinstance(v, float) else v for k, v in mean_interval(values, low, high).to_dict().items()
        }
    return out
