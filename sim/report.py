"""Human-readable reports and plots of a simulation."""

from __future__ import annotations

import math
from pathlib import Path

from sim.metrics import MIN_REPLICATIONS
from sim.runner import SimulationReport

_ROWS: tuple[tuple[str, str, str], ...] = (
    # (figure, label, format)
    ("agent_occupancy", "Agent occupancy (talk+wrap)", "pct"),
    ("talk_fraction", "Talk fraction", "pct"),
    ("abandon_rate", "Abandonment rate", "pct2"),
    ("worst_day_abandon_rate", "Worst day abandonment", "pct2"),
    ("worst_window_abandon_rate", "Worst 30-day-window abandonment", "pct2"),
    ("dials", "Dials", "int"),
    ("live_answers", "Live answers", "int"),
    ("machine_answers", "Machine answers", "int"),
    ("abandoned", "Abandoned", "int"),
    ("connects", "Connects", "int"),
    ("connects_per_agent_hour", "Connects per agent-hour", "f2"),
    ("idle_between_calls", "Agent idle between calls (s)", "f1"),
    ("agent_hours", "Agent hours logged in", "f1"),
)


def _fmt(value: float, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "pct2":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return f"{value:,.1f}" if value != int(value) else f"{int(value):,}"
    if kind == "f2":
        return f"{value:.2f}"
    return f"{value:.1f}"


def format_table(report: SimulationReport) -> str:
    """The report as an aligned text table: pooled mean and 95% interval per figure."""
    s = report.scenario
    p = report.pooled
    n = len(report.replications)
    lines = [
        f"Scenario {s.name!r}: {s.agents} agents, policy {s.policy}, "
        f"target abandonment {100 * s.target_abandon_rate:g}%, "
        f"{s.hours:g} h x {s.days} day(s), {n} replication(s), seed {s.seed}",
    ]
    if s.drift is not None:  # a drifting day's figures are not those of its first hour: say so up front
        lines.append(f"Drift: {s.drift.describe(s.live_answer_probability)}")
    lines.append("")
    few = 1 < n < MIN_REPLICATIONS
    header = ("Figure", "Mean", "95% CI" + (" (rough*)" if few else ""))
    rows = []
    for key, label, kind in _ROWS:
        if key in ("worst_day_abandon_rate", "worst_window_abandon_rate"):
            rows.append((label, _fmt(p[key], kind), "(worst over all replications)"))
            continue
        ci = p["ci95"][key]
        low, high = ci["low"], ci["high"]  # clipped to what the figure can be (sim.metrics.BOUNDS)
        interval = f"{_fmt(low, kind)} .. {_fmt(high, kind)}" if n > 1 else "(one replication)"
        rows.append((label, _fmt(ci["mean"], kind), interval))
    rows.append(
        (
            "Campaign-days over target",
            f"{100 * p['share_days_over_target']:.1f}%",
            f"of {p['campaign_days']} day(s)",
        )
    )
    if "rolling_window_hours" in p:
        rows.append(
            (
                f"Rolling {p['rolling_window_hours']:g}-h windows over target",
                f"{100 * p['share_rolling_windows_over_target']:.1f}%",
                f"worst {100 * p['worst_rolling_abandon_rate']:.2f}%",
            )
        )
    w0 = max(len(r[0]) for r in [header, *rows])
    w1 = max(len(r[1]) for r in [header, *rows])
    fmt = f"{{:<{w0}}}  {{:>{w1}}}  {{}}"
    lines.append(fmt.format(*header))
    lines.append(fmt.format("-" * w0, "-" * w1, "-" * 22))
    lines.extend(fmt.format(*r) for r in rows)
    lines.append("")
    if few:
        lines.append(
            f"* Only {n} replications: below {MIN_REPLICATIONS} the spread behind each interval is itself poorly "
            f"known, so the intervals are rough; use --replications {MIN_REPLICATIONS} or more."
        )
    elif n == 1:
        lines.append(f"* One replication gives no interval; use --replications {MIN_REPLICATIONS} or more.")
    lines.append(f"Simulated in {report.wall_seconds:.1f} s.")
    return "\n".join(lines)


def plot(report: SimulationReport, path: str | Path) -> Path:
    """Occupancy over the day and abandonment per replication, as a PNG (needs the ``[plot]`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report.scenario
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    occ = report.series.get("occupancy", [])
    talk = report.series.get("talk", [])
    hours = [(i + 0.5) * 0.25 for i in range(len(occ))]
    keep = [i for i, v in enumerate(occ) if not math.isnan(v)]
    ax1.plot([hours[i] for i in keep], [100 * occ[i] for i in keep], label="occupancy (talk+wrap)")
    ax1.plot([hours[i] for i in keep], [100 * talk[i] for i in keep], label="talk")
    ax1.set_xlabel("hours since campaign start")
    ax1.set_ylabel("% of logged-in agents")
    ax1.set_ylim(0, 100)
    ax1.set_title("Agent occupancy (mean over replications)")
    ax1.legend(loc="lower right")
    ax1.grid(alpha=0.3)
    rates = [100 * r["abandon_rate"] for r in report.replications]
    occs = [100 * r["agent_occupancy"] for r in report.replications]
    ax2.scatter(rates, occs, label="replications")
    ax2.axvline(100 * s.target_abandon_rate, color="red", linestyle="--", label="target")
    ax2.set_xlabel("abandonment rate (%)")
    ax2.set_ylabel("occupancy (%)")
    ax2.set_title("Abandonment vs occupancy per replication")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.suptitle(f"{s.name}: {s.agents} agents, {s.policy}")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
