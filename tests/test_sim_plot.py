"""The simulation plot's figures (issue 15, item 4): bands over replications, abandonment over the day, drift.

Checked on the data behind the plot, as ``--json`` carries it and as the figure draws it: every band holds its
mean and stays in [0, 100]%, the abandonment per bin sums back to the pooled totals and its cumulative rate ends
at the pooled rate, a drifting list shows its fall, and the PNG drawn from the ``--json`` document is the PNG
drawn from the report.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dialer.cli import main
from sim import scenario as scenarios
from sim.metrics import bin_intervals, configured_live_answer
from sim.report import figure, plot
from sim.runner import SimulationReport, simulate
from sim.scenario import Drift

pytest.importorskip("matplotlib")

INTERVAL_SERIES = (
    "occupancy",
    "talk",
    "dials",
    "live_answers",
    "abandoned",
    "abandon_rate",
    "abandon_rate_cumulative",
    "live_answer_rate",
)
RATES = ("occupancy", "talk", "abandon_rate", "abandon_rate_cumulative", "live_answer_rate")

# Power dialing at 2.5 lines per agent abandons plenty, so the abandonment series has something to add up.
OVERDIALED = scenarios.default().replace(
    agents=5, hours=1.5, replications=4, policy="power", ratio=2.5, seed=3, target_abandon_rate=0.03
)
# A list worked through the day: 30% live answers at the start, 5% at the end of a two-hour shift.
FALLING = scenarios.default().replace(
    agents=5, hours=2, replications=3, policy="progressive", seed=4, drift=Drift(live_answer_to=0.05)
)


@pytest.fixture(scope="module")
def overdialed() -> SimulationReport:
    return simulate(OVERDIALED, workers=1)


@pytest.fixture(scope="module")
def falling() -> SimulationReport:
    return simulate(FALLING, workers=1)


def _nan(values: list[Any]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=float)


def test_bin_intervals_are_t_intervals_clipped_to_the_range() -> None:
    # Bin 0: mostly zeros, whose t-interval reaches below 0; bin 1: near 1; bin 2: one value; bin 3: none.
    values = np.array([[0.0, 1.0, math.nan, math.nan], [0.0, 0.9, 0.4, math.nan], [0.06, 1.0, math.nan, math.nan]])
    iv = bin_intervals(values, 0.0, 1.0)
    assert iv["n"] == [3, 3, 1, 0]
    assert iv["mean"][0] == pytest.approx(0.02)
    assert iv["low"][0] == 0.0 and iv["high"][0] == pytest.approx(0.02 + 4.302653 * 0.02, rel=1e-5)
    assert iv["high"][1] == 1.0 and iv["low"][1] < iv["mean"][1]
    assert iv["low"][2] == iv["mean"][2] == iv["high"][2] == 0.4  # one replication: no spread to speak of
    assert all(math.isnan(iv[k][3]) for k in ("mean", "low", "high"))
    unbounded = bin_intervals(values)
    assert unbounded["low"][0] < 0 < unbounded["high"][0]


def test_every_band_holds_its_mean_and_stays_in_range(overdialed: SimulationReport) -> None:
    ts = overdialed.time_series
    bins = len(ts["hours"])
    assert bins == 7  # 1.5 h of 15-minute bins and the one where the last calls drain
    assert ts["hours"][:2] == [0.125, 0.375] and ts["bin_seconds"] == 900.0
    clipped = 0
    for name in INTERVAL_SERIES:
        iv = ts[name]
        mean, low, high = (_nan(iv[k]) for k in ("mean", "low", "high"))
        assert len(mean) == len(low) == len(high) == len(iv["n"]) == bins, name
        defined = ~np.isnan(mean)
        assert defined[:6].all(), name  # every bin of the shift has a figure from every replication
        assert (low[defined] <= mean[defined] + 1e-12).all() and (mean[defined] <= high[defined] + 1e-12).all(), name
        assert (low[defined] >= 0).all(), name
        if name in RATES:
            assert (high[defined] <= 1).all(), name
        clipped += int(np.sum(low[defined] == 0) + np.sum(high[defined] == 1))
    assert clipped  # some band would have left the range unclipped (abandonment near 0 at least)
    # the occupancy series everyone relied on is unchanged: the means are the bands' means
    assert ts["occupancy"]["mean"] == pytest.approx(overdialed.series["occupancy"][:bins], nan_ok=True)


def test_abandonment_over_the_day_adds_up_to_the_totals(overdialed: SimulationReport) -> None:
    ts, pooled = overdialed.time_series, overdialed.pooled
    assert pooled["abandoned"] > 10  # power dialing abandons: the series below has something to add up
    for name in ("abandoned", "live_answers", "dials"):
        assert sum(ts[name]["mean"]) == pytest.approx(pooled[name]), name
    cumulative = ts["abandon_rate_cumulative"]
    assert cumulative["mean"][-1] == pytest.approx(pooled["abandon_rate"])  # the day's end is the day's rate
    assert cumulative["low"][-1] == pytest.approx(pooled["ci95"]["abandon_rate"]["low"])
    # the per-bin rate is the abandoned over the live answers of the bin, averaged over replications
    per_bin = _nan(ts["abandon_rate"]["mean"])
    assert np.nanmax(per_bin) > overdialed.scenario.target_abandon_rate


def test_a_drifting_list_shows_its_fall_against_the_configured_rate(falling: SimulationReport) -> None:
    ts = falling.time_series
    measured = _nan(ts["live_answer_rate"]["mean"])[:8]  # the shift's eight bins
    configured = np.array(ts["live_answer_configured"][:8])
    # the drift's once-a-minute values over each bin, averaged: minutes 0..14, then 105..119 of the 120
    assert configured[0] == pytest.approx(0.30 - 0.25 * 7 / 120)
    assert configured[-1] == pytest.approx(0.30 - 0.25 * 112 / 120)
    assert np.all(np.diff(configured) < 0)
    assert measured[:2].mean() > 0.2 and measured[-2:].mean() < 0.12  # the answer rate really falls
    assert np.abs(measured - configured).max() < 0.08  # and follows what the scenario says
    steady = configured_live_answer(dataclasses.replace(FALLING, drift=None), 4)
    assert steady == [0.30] * 4


def test_json_keeps_every_key_and_carries_the_series(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--agents", "4", "--hours", "0.5", "--replications", "2", "--seed", "5", "--json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    old_keys = {"policy", "target_abandon_rate", "replication_count", "wall_seconds", "scenario", "replications"}
    old_keys |= {"series", "ci95", "abandon_rate", "agent_occupancy", "too_few_replications"}
    assert old_keys <= set(doc)
    assert set(doc["series"]) == {"occupancy", "talk"} and len(doc["series"]["occupancy"]) == 96
    ts = doc["time_series"]
    assert set(ts) == {"bin_seconds", "hours", "live_answer_configured", *INTERVAL_SERIES}
    for name in INTERVAL_SERIES:
        assert set(ts[name]) == {"mean", "low", "high", "n"}
        assert len(ts[name]["mean"]) == len(ts["hours"]) == 3
    assert sum(ts["live_answers"]["mean"]) == pytest.approx(doc["live_answers"])


def test_the_figure_draws_the_bands_the_target_and_the_drift(falling: SimulationReport) -> None:
    import matplotlib.pyplot as plt

    fig = figure(falling)
    try:
        occupancy, _scatter, abandonment, drift, _dials = fig.axes
        ts = falling.time_series
        lines = {line.get_label(): line for line in abandonment.get_lines()}
        assert lines["target 3%"].get_ydata()[0] == pytest.approx(3.0)
        assert list(lines["cumulative since start"].get_ydata()) == pytest.approx(
            [100 * v for v in ts["abandon_rate_cumulative"]["mean"]], nan_ok=True
        )
        assert len(abandonment.collections) == 2 and len(occupancy.collections) == 2  # the bands
        lines = {line.get_label(): line for line in drift.get_lines()}
        drawn = np.array(lines["scenario's live-answer probability"].get_ydata(), dtype=float)
        assert drawn[:8] == pytest.approx(100 * np.array(ts["live_answer_configured"][:8]))
        assert list(lines["live answers / dials"].get_ydata()) == pytest.approx(
            [100 * v for v in ts["live_answer_rate"]["mean"]], nan_ok=True
        )
        assert "live_answer_to 0.05" in drift.get_title()
        assert "rough" in occupancy.get_title()  # three replications
        band = occupancy.collections[0].get_paths()[0].vertices[:, 1]
        assert band.min() >= 0 and band.max() <= 100
    finally:
        plt.close(fig)


def test_the_png_from_the_json_is_the_png_from_the_report(tmp_path: Path, falling: SimulationReport) -> None:
    import matplotlib.image as mpimg

    from dialer.commands.simulate import _json_safe

    direct = plot(falling, tmp_path / "report.png")
    doc = json.loads(json.dumps(_json_safe(falling.to_json())))  # exactly what --json prints
    again = plot(doc, tmp_path / "json.png")
    assert direct.read_bytes() == again.read_bytes()
    pixels = mpimg.imread(direct)
    assert pixels.shape[:2] == (924, 1320)  # 12 x 8.4 in at 110 dpi: four panels
    assert pixels[..., :3].std() > 0.05  # not a blank canvas


def test_cli_plot_writes_the_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim.png"
    args = ["simulate", "--agents", "3", "--hours", "0.25", "--replications", "2", "--plot", str(out)]
    assert main(args) == 0
    assert f"Plot written to {out}" in capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_configured_answer_rate_follows_the_periods() -> None:
    """A lunch hour with fewer answers is part of the scenario, not drift: ``live_answer_configured`` steps down at
    the period's hour and back at the next, each day (a period starting mid-bin averages the bin)."""
    s = scenarios.loads(
        "[campaign]\nhours = 4\ndays = 2\n[calls]\nlive_answer_probability = 0.3\n"
        "[[periods]]\nstart_hour = 2\nname = 'lunch'\nlive_answer_probability = 0.1\n"
        "[[periods]]\nstart_hour = 3.125\nname = 'afternoon'\nlive_answer_probability = 0.25\n"
    )
    per_day = 86400 // 900
    configured = configured_live_answer(s, per_day + 16)
    assert configured[:8] == pytest.approx([0.3] * 8)  # 0-2 h
    assert configured[8:12] == pytest.approx([0.1] * 4)  # 2-3 h
    assert configured[12] == pytest.approx((0.1 + 0.25) / 2)  # 3:00-3:15, the afternoon from 3:07:30
    assert configured[13:16] == pytest.approx([0.25] * 3)
    assert configured[per_day : per_day + 8] == pytest.approx([0.3] * 8)  # the next day starts afresh
    assert configured[per_day + 8] == pytest.approx(0.1)
