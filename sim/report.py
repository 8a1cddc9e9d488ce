"""Human-readable reports and plots of a simulation."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    if s.inbound is not None:
        lines.append(f"Inbound: {s.inbound.describe()}")
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
    inbound = p.get("inbound", {})
    for key, label, kind in (
        ("service_level", "Inbound service level", "pct"),
        ("asa", "Inbound avg speed of answer (s)", "f1"),
        ("abandon_rate", "Inbound abandoned", "pct"),
        ("outbound_talk_fraction", "Outbound talk fraction", "pct"),
    ):
        if key in inbound:  # on a blended floor "Talk fraction" above includes inbound talk; this line does not
            iv = inbound[key]
            rows.append((label, _fmt(iv["mean"], kind), f"{_fmt(iv['low'], kind)} .. {_fmt(iv['high'], kind)}"))
    w0 = max(len(r[0]) for r in [header, *rows])
    w1 = max(len(r[1]) for r in [header, *rows])
    fmt = f"{{:<{w0}}}  {{:>{w1}}}  {{}}"
    lines.append(fmt.format(*header))
    lines.append(fmt.format("-" * w0, "-" * w1, "-" * 22))
    lines.extend(fmt.format(*r) for r in rows)
    lines.append("")
    if p.get("periods"):
        lines.extend(period_lines(p["periods"]))
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


def period_lines(periods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each stretch of the shift (``pooled["periods"]``, :func:`sim.inbound_periods.period_figures`) as one line
    of a text table: its hours, the live-answer probability set against the rate measured, abandonment,
    occupancy, and the inbound service level when there are inbound callers. Means over replications; the
    intervals are in ``--json``."""
    inbound = any("inbound_service_level" in seg for seg in periods)
    header = ["Period", "Hours", "Answer rate (set)", "Abandonment", "Occupancy"] + (["Inbound SL"] if inbound else [])
    rows = [header]
    for seg in periods:
        name = seg["name"] or ("(before the first period)" if seg["index"] is None else f"#{seg['index']}")
        row = [
            name,
            f"{seg['start_hour']:g}-{seg['end_hour']:g}",
            f"{_fmt(seg['live_answer_rate']['mean'], 'pct')} "
            f"({_fmt(seg['configured']['live_answer_probability'], 'pct')})",
            _fmt(seg["abandon_rate"]["mean"], "pct2"),
            _fmt(seg["occupancy"]["mean"], "pct"),
        ]
        if inbound:
            row.append(_fmt(seg["inbound_service_level"]["mean"], "pct"))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    out = ["Per period (means over replications):"]
    for r in rows:
        out.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
    return out


def _floats(values: Sequence[Any]) -> list[float]:
    """JSON's ``null`` (a NaN in the report) back to NaN, so a plot from ``--json`` is the plot from the report."""
    return [math.nan if v is None else float(v) for v in values]


def _band(ax: Any, hours: list[float], iv: Mapping[str, Any], *, scale: float, label: str, color: str) -> None:
    """The mean as a line and its 95% band (clipped, as the interval is) as a shaded area; empty bins are gaps."""
    mean = [scale * v for v in _floats(iv["mean"])]
    low = [scale * v for v in _floats(iv["low"])]
    high = [scale * v for v in _floats(iv["high"])]
    ax.fill_between(hours, low, high, color=color, alpha=0.2, linewidth=0)
    ax.plot(hours, mean, color=color, label=label)


def figure(report: SimulationReport | Mapping[str, Any]) -> Any:
    """The simulation as a figure of four panels (needs the ``[plot]`` extra), from a report or its ``--json``
    document alike:

    * occupancy and talk over the day, the mean over replications with its 95% band;
    * abandonment against occupancy per replication, with the pooled means and their intervals;
    * abandonment over the day: per 15-minute bin and cumulative since the start, each with its band, against the
      target;
    * drift: the live-answer rate per bin with its band against the rate the scenario sets (its ``[drift]``), and
      the dials per bin, where the pacing answers it.

    Bands are Student-t 95% intervals across replications, per bin, clipped to [0, 100]%; a title says "rough"
    when they rest on fewer than 10 replications. Returns the matplotlib figure (:func:`plot` writes it).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = report.to_json() if isinstance(report, SimulationReport) else report
    scn = doc["scenario"]
    camp = scn["campaign"]
    target = 100 * float(doc["target_abandon_rate"])
    ts = doc.get("time_series") or {}
    hours = _floats(ts.get("hours", []))
    n = int(doc["replication_count"])
    rough = " (rough: fewer than 10 replications)" if 1 < n < MIN_REPLICATIONS else ""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.4))
    (ax1, ax2), (ax3, ax4) = axes

    if ts:
        _band(ax1, hours, ts["occupancy"], scale=100, label="occupancy (talk+wrap)", color="tab:blue")
        _band(ax1, hours, ts["talk"], scale=100, label="talk", color="tab:orange")
    else:  # a report made without time series (older JSON): the means alone
        occ = _floats(doc.get("series", {}).get("occupancy", []))
        talk = _floats(doc.get("series", {}).get("talk", []))
        hours_all = [(i + 0.5) * 0.25 for i in range(len(occ))]
        ax1.plot(hours_all, [100 * v for v in occ], label="occupancy (talk+wrap)")
        ax1.plot(hours_all, [100 * v for v in talk], label="talk")
    ax1.set_xlabel("hours since campaign start")
    ax1.set_ylabel("% of logged-in agents")
    ax1.set_ylim(0, 100)
    ax1.set_title("Agent occupancy: mean and 95% band" + rough, fontsize=10)
    ax1.legend(loc="lower right")
    ax1.grid(alpha=0.3)

    reps = doc.get("replications", [])
    rates = [100 * float(r["abandon_rate"]) for r in reps]
    occs = [100 * float(r["agent_occupancy"]) for r in reps]
    ax2.scatter(rates, occs, label="replications", alpha=0.7)
    ci = doc.get("ci95", {})
    if n > 1 and "abandon_rate" in ci and "agent_occupancy" in ci:
        a, o = ci["abandon_rate"], ci["agent_occupancy"]
        ax2.errorbar(
            [100 * a["mean"]],
            [100 * o["mean"]],
            xerr=[[100 * (a["mean"] - a["low"])], [100 * (a["high"] - a["mean"])]],
            yerr=[[100 * (o["mean"] - o["low"])], [100 * (o["high"] - o["mean"])]],
            fmt="D",
            color="black",
            capsize=4,
            label="mean, 95% CI",
        )
    ax2.axvline(target, color="red", linestyle="--", label="target")
    ax2.set_xlim(left=0)
    ax2.set_xlabel("abandonment rate (%)")
    ax2.set_ylabel("occupancy (%)")
    ax2.set_title("Abandonment vs occupancy per replication", fontsize=10)
    ax2.legend()
    ax2.grid(alpha=0.3)

    top = 3 * target
    if ts:
        _band(ax3, hours, ts["abandon_rate"], scale=100, label="per 15 min", color="tab:purple")
        _band(ax3, hours, ts["abandon_rate_cumulative"], scale=100, label="cumulative since start", color="black")
        seen = [
            v
            for v in _floats(ts["abandon_rate"]["mean"]) + _floats(ts["abandon_rate_cumulative"]["high"])
            if not math.isnan(v)
        ]
        top = max([top, *(120 * v for v in seen)])
    ax3.axhline(target, color="red", linestyle="--", label=f"target {target:g}%")
    ax3.set_ylim(0, min(100.0, top))
    ax3.set_xlabel("hours since campaign start")
    ax3.set_ylabel("abandoned / live answers (%)")
    ax3.set_title("Abandonment over the day: mean and 95% band", fontsize=10)
    ax3.legend(loc="upper left")
    ax3.grid(alpha=0.3)

    drift = scn.get("drift")
    if ts:
        _band(ax4, hours, ts["live_answer_rate"], scale=100, label="live answers / dials", color="tab:green")
        configured = [100 * v for v in _floats(ts["live_answer_configured"])]
        measured = _floats(ts["live_answer_rate"]["mean"])
        ax4.plot(
            hours,
            [c if not math.isnan(m) else math.nan for c, m in zip(configured, measured, strict=False)],
            color="tab:green",
            linestyle="--",
            label="scenario's live-answer probability",
        )
        ax4.set_ylim(
            0, min(100.0, max([10.0, *(130 * v for v in _floats(ts["live_answer_rate"]["high"]) if not math.isnan(v))]))
        )
        dials_ax = ax4.twinx()
        _band(dials_ax, hours, ts["dials"], scale=1, label="dials per 15 min", color="tab:gray")
        dials_ax.set_ylim(bottom=0)
        dials_ax.set_ylabel("dials per 15 min (gray)")
        lines, labels = ax4.get_legend_handles_labels()
        more, more_labels = dials_ax.get_legend_handles_labels()
        ax4.legend(lines + more, labels + more_labels, loc="lower left", fontsize=8)
    ax4.set_xlabel("hours since campaign start")
    ax4.set_ylabel("live-answer rate (%)")
    what = "none" if not drift else ", ".join(f"{k} {v:g}" for k, v in drift.items())
    ax4.set_title(f"Drift ({what}): answer rate and dials", fontsize=10)
    ax4.grid(alpha=0.3)

    fig.suptitle(f"{camp.get('name', '')}: {camp.get('agents')} agents, {doc.get('policy')}, {n} replication(s)")
    fig.tight_layout()
    return fig


def plot(report: SimulationReport | Mapping[str, Any], path: str | Path) -> Path:
    """Write :func:`figure` of ``report`` (a report or its ``--json`` document) to ``path`` (PNG at 110 dpi)."""
    import matplotlib.pyplot as plt

    fig = figure(report)
    out = Path(path)
    try:
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out
