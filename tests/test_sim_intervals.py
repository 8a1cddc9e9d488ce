"""Honest figures (issue 15 item 4): intervals stay inside what a figure can be, few replications are flagged,
the sweep's summary ratios carry intervals, and the frontier plot keeps its bars in [0, 100%] and stays readable
near the cap with every policy on it."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from sim import scenario, sweep
from sim.metrics import BOUNDS, FIGURES, MIN_REPLICATIONS, mean_interval, pool
from sim.report import format_table
from sim.runner import SimulationReport


def rep(index: int, **figs: float) -> dict[str, Any]:
    """A replication's figures, as :func:`sim.metrics.replication_figures` gives them."""
    base: dict[str, Any] = {name: 1.0 for name in FIGURES}
    base.update(figs)
    return {**base, "replication": index, "days": [], "windows": []}


# Abandonment that is mostly 0 with one bad replication: the symmetric t-interval reaches far below 0.
SKEWED = [
    rep(0, abandoned=0, abandon_rate=0.0, talk_fraction=0.95, agent_occupancy=0.99, dials=3),
    rep(1, abandoned=0, abandon_rate=0.0, talk_fraction=0.97, agent_occupancy=0.995, dials=2),
    rep(2, abandoned=30, abandon_rate=0.25, talk_fraction=0.99, agent_occupancy=1.0, dials=400),
]


def test_intervals_are_clipped_to_what_the_figure_can_be() -> None:
    raw = mean_interval([0.0, 0.0, 30.0])
    assert raw.low < 0  # the unclipped interval: "Abandoned -7.4 .. 38.7"
    pooled = pool(SKEWED, 0.03)
    for name in FIGURES:
        ci = pooled["ci95"][name]
        lo, hi = BOUNDS[name]
        assert ci["low"] >= lo, (name, ci)
        assert hi is None or ci["high"] <= hi, (name, ci)
    ab = pooled["ci95"]["abandoned"]
    assert ab["low"] == 0.0 and ab["clipped"] is True
    assert ab["half_width"] > ab["mean"]  # the t half-width itself is kept, unclipped
    assert pooled["ci95"]["agent_occupancy"]["high"] == 1.0


def test_the_report_shows_no_impossible_value() -> None:
    report = SimulationReport(scenario.default().replace(replications=3), SKEWED, pool(SKEWED, 0.03))
    table = format_table(report)
    assert not re.search(r"-\d", table), table  # no negative count, rate or time
    assert not re.search(r"\b(10[1-9]|1[1-9]\d)\.\d%", table), table  # no rate over 100%


def test_too_few_replications_are_flagged_and_the_threshold_is_said() -> None:
    few = pool(SKEWED, 0.03)
    assert few["too_few_replications"] is True and few["ci95"]["abandon_rate"]["too_few"] is True
    report = SimulationReport(scenario.default().replace(replications=3), SKEWED, few)
    text = format_table(report)
    assert f"Only 3 replications: below {MIN_REPLICATIONS}" in text and "rough" in text
    enough = [rep(i, abandon_rate=0.01 * (i % 3)) for i in range(MIN_REPLICATIONS)]
    pooled = pool(enough, 0.03)
    assert pooled["too_few_replications"] is False and pooled["ci95"]["abandon_rate"]["too_few"] is False
    assert "rough" not in format_table(SimulationReport(scenario.default(), enough, pooled))


# --- the sweep ----------------------------------------------------------------------------------------------


def row(label: str, policy: str, reps: list[dict[str, Any]], **point: Any) -> sweep.Row:
    return sweep.Row(
        sweep.Point(label, policy, **point),
        pool(reps, 0.03),
        [{name: float(r[name]) for name in FIGURES} for r in reps],
    )


def paired_result(n: int = 6) -> sweep.SweepResult:
    """Predictive talks ~10% more than the fixed ratio on every replication; replication k's callers are shared,
    so both move together from one replication to the next."""
    day = [0.60, 0.70, 0.55, 0.65, 0.62, 0.68, 0.58, 0.66][:n]
    power = [rep(k, talk_fraction=t, agent_occupancy=t, abandon_rate=0.02) for k, t in enumerate(day)]
    pred = [
        rep(k, talk_fraction=1.1 * t + 0.003 * (-1) ** k, agent_occupancy=t, abandon_rate=0.028)
        for k, t in enumerate(day)
    ]
    prog = [rep(k, talk_fraction=0.9 * t, agent_occupancy=t, abandon_rate=0.0) for k, t in enumerate(day)]
    base = scenario.default().replace(replications=n)
    rows = [
        row("progressive", "progressive", prog),
        row("power 1.2", "power", power, ratio=1.2),
        row("predictive 3%", "predictive", pred, target=0.03),
    ]
    return sweep.SweepResult(base, 0.03, rows)


def test_summary_ratios_carry_paired_delta_method_intervals() -> None:
    result = paired_result()
    got = dict(result.comparison_intervals())
    iv = got["predictive 3% vs best fixed ratio (power 1.2)"]
    assert iv.paired and iv.n == 6
    assert iv.low < iv.ratio < iv.high and iv.low < 1.1 < iv.high
    assert iv.high - iv.low < 0.02  # pairing cancels the shared day-to-day swing
    fixed, pred = result.row("power 1.2"), result.row("predictive 3%")
    assert fixed is not None and pred is not None
    unpaired = sweep.ratio_interval(
        sweep.Row(pred.point, pred.pooled), sweep.Row(fixed.point, fixed.pooled)
    )  # built by hand: no per-replication figures, so the two means are taken as independent
    assert not unpaired.paired and unpaired.ratio == pytest.approx(iv.ratio)
    assert unpaired.high - unpaired.low > 5 * (iv.high - iv.low)
    assert [t for t, _ in result.comparisons()] == list(got)  # the old API still gives the ratios
    text = sweep.markdown(result)
    assert re.search(
        r"predictive 3% vs best fixed ratio \(power 1\.2\): 1\.\d{3}x .*95% CI 1\.\d{3}x \.\. 1\.\d{3}x", text
    )
    assert "rough: 6 replications" in text  # fewer than MIN_REPLICATIONS: flagged


def test_ratio_interval_of_a_single_replication_is_no_interval() -> None:
    one = paired_result(1)
    (_, iv), *_ = one.comparison_intervals()
    assert math.isnan(iv.low) and "no interval" in sweep.markdown(one)


def test_markdown_shows_a_clipped_interval_as_its_range() -> None:
    reps = SKEWED
    result = sweep.SweepResult(scenario.default().replace(replications=3), 0.03, [row("issabel", "issabel", reps)])
    line = next(line for line in sweep.markdown(result).splitlines() if line.startswith("| issabel"))
    assert "8.33% (0.00%–" in line and "-" not in line.replace("–", "").replace("| issabel", "")


def crowded_result() -> sweep.SweepResult:
    """Every policy near the cap, with abandonment intervals reaching below 0 and talk intervals over 100%."""
    rows = []
    pts = sweep.points()
    for i, p in enumerate(pts):
        ab = 0.004 * (i % 8)
        reps = [
            rep(
                k,
                abandon_rate=ab * (3 if k == 0 else 0),
                talk_fraction=min(1.0, 0.9 + 0.1 * (k == 1)),
                agent_occupancy=0.97 + 0.03 * (k == 2),
            )
            for k in range(3)
        ]
        rows.append(sweep.Row(p, pool(reps, 0.03), [{n: float(r[n]) for n in FIGURES} for r in reps]))
    return sweep.SweepResult(scenario.default().replace(replications=3), 0.03, rows)


def test_frontier_error_bars_stay_inside_0_to_100_percent() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    fig = sweep.figure(crowded_result())
    try:
        seen = 0
        for ax in fig.axes:
            for container in ax.containers:
                if not isinstance(container, ErrorbarContainer):
                    continue
                for coll in container.lines[2]:
                    for seg in coll.get_segments():
                        seen += 1
                        assert seg.min() >= -1e-9 and seg.max() <= 100 + 1e-9, seg
        assert seen > 0
    finally:
        plt.close(fig)


def test_frontier_has_a_readable_panel_near_the_cap() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    result = crowded_result()
    fig = sweep.figure(result)
    try:
        zooms = [ax for ax in fig.axes if "near the cap" in ax.get_title()]
        assert len(zooms) == 2  # talk and occupancy
        for ax in zooms:
            lo, hi = ax.get_xlim()
            assert lo <= 3.0 <= hi and hi <= 100 * sweep.ZOOM_CAP_MULTIPLE * result.cap + 1e-9
            labels = {t.get_text() for t in ax.texts}
            inside = {r.point.label for r in result.rows if 100 * r.pooled["abandon_rate"] <= hi}
            assert inside and inside <= labels  # every point in the window is named
            # ...and no two labels sit on top of each other.
            fig.canvas.draw()
            boxes = [Text.get_window_extent(t) for t in ax.texts]  # the words, not their leader lines
            overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
            assert not overlaps
    finally:
        plt.close(fig)
