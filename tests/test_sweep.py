"""Frontier sweeps and ``dialer sweep``: points, drift, tables and plots, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialer.cli import main
from dialer.errors import ConfigError
from sim import scenario, sweep

SMALL = """
[campaign]
name = "tiny"
agents = 5
hours = 0.5
replications = 2
seed = 3

[calls]
live_answer_probability = 0.3
"""


def test_points_expand_ratios_and_targets_and_reject_unknowns() -> None:
    pts = sweep.points(["progressive", "power", "predictive"], targets=[0.02, 0.03], ratios=[1.2, 1.5])
    assert [p.label for p in pts] == ["progressive", "power 1.2", "power 1.5", "predictive 2%", "predictive 3%"]
    base = scenario.default()
    applied = pts[2].apply(base)
    assert (applied.policy, applied.ratio) == ("power", 1.5)
    assert pts[3].apply(base).target_abandon_rate == 0.02
    with pytest.raises(ConfigError, match="unknown policy"):
        sweep.points(["telepathy"])
    with pytest.raises(ConfigError):
        sweep.points(["power"], ratios=[0.5])
    with pytest.raises(ConfigError):
        sweep.points(["predictive"], targets=[1.5])


def test_sweep_files_with_and_without_drift(tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text(SMALL)
    assert sweep.load(plain).drift is None
    drifting = tmp_path / "drift.toml"
    drifting.write_text(SMALL + "\n[drift]\nlive_answer_to = 0.1\ntalk_scale_to = 1.5\n")
    spec = sweep.load(drifting)
    assert spec.drift == sweep.Drift(0.1, 1.5)
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL + "\n[drift]\nanswer_to = 0.1\n")
    with pytest.raises(ConfigError) as err:
        sweep.load(bad)
    assert err.value.key == "drift.answer_to"
    with pytest.raises(ConfigError):
        sweep.load(tmp_path / "missing.toml")


def test_drift_changes_the_call_flow_the_same_seed_would_otherwise_give() -> None:
    base = scenario.loads(SMALL).replace(policy="progressive", hours=1.0)
    steady = sweep.run_one(base, 0)
    falling = sweep.run_one(base, 0, sweep.Drift(live_answer_to=0.0))
    assert falling.totals["live_answers"] < 0.75 * steady.totals["live_answers"]
    assert sweep.run_one(base, 0).totals == steady.totals  # same seed, same callers


def test_a_small_sweep_writes_table_and_plot(tmp_path: Path) -> None:
    base = scenario.loads(SMALL)
    pts = sweep.points(["progressive", "power", "predictive"], targets=[0.03], ratios=[1.3, 3.0])
    calls: list[tuple[int, int]] = []
    result = sweep.run(base, pts, workers=1, progress=lambda d, t: calls.append((d, t)), refine=0)
    assert calls[-1] == (len(pts) * 2, len(pts) * 2)
    assert [r.point.label for r in result.rows] == [p.label for p in pts]
    ratio3 = result.row("power 3")
    assert ratio3 is not None
    assert ratio3.pooled["abandon_rate"] > 0.03  # three lines per agent drops people
    best = result.best_fixed_ratio()
    assert best is None or best.point.label == "power 1.3"
    md, png = sweep.write(result, tmp_path, "tiny")
    text = md.read_text()
    assert "| predictive 3% |" in text
    assert "Best fixed ratio under the cap" in text
    assert png is not None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dialer_sweep_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "mine.toml"
    spec.write_text(SMALL)
    out = tmp_path / "out"
    argv = [
        "sweep",
        str(spec),
        "--policies",
        "progressive",
        "power",
        "--ratios",
        "1.2",
        "--replications",
        "1",
        "--out",
        str(out),
        "--workers",
        "1",
        "--quiet",
    ]
    assert main(argv) == 0
    assert (out / "mine-frontier.md").exists()
    assert (out / "mine-frontier.png").exists()
    assert "| power 1.2 |" in capsys.readouterr().out
    assert main(["sweep", str(spec), "--targets", "2", "--quiet", "--out", str(out)]) == 2
    assert "--targets" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "nope.toml"), "--quiet"]) == 2


def _power_row(ratio: float, abandon: float) -> sweep.Row:
    return sweep.Row(sweep.Point(f"power {ratio:g}", "power", ratio=ratio), {"abandon_rate": abandon})


def test_refinement_bisects_between_the_best_ratio_under_the_cap_and_the_next_over() -> None:
    rows = [_power_row(1.2, 0.01), _power_row(1.5, 0.02), _power_row(1.75, 0.05), _power_row(2.0, 0.2)]
    assert sweep._next_ratio(rows, 0.03) == 1.62  # between 1.5 (under) and 1.75 (over), to 0.01
    assert sweep._next_ratio([*rows, _power_row(1.62, 0.04)], 0.03) == 1.56
    assert sweep._next_ratio([_power_row(1.2, 0.01)], 0.03) is None  # nothing over the cap: nothing to find
    assert sweep._next_ratio([_power_row(1.1, 0.2)], 0.03) == 1.05  # none under: search up from 1
    assert sweep._next_ratio([_power_row(1.5, 0.02), _power_row(1.51, 0.05)], 0.03) is None  # 0.01 apart


def test_a_refined_sweep_adds_ratios_in_order_and_counts_them_in_progress() -> None:
    base = scenario.loads(SMALL)
    pts = sweep.points(["power"], ratios=[1.0, 4.0])
    calls: list[tuple[int, int]] = []
    result = sweep.run(base, pts, workers=1, progress=lambda d, t: calls.append((d, t)), refine=2)
    ratios = [r.point.ratio for r in result.rows]
    assert ratios == sorted(ratios) and len(ratios) == 4  # two bisection points slotted in between
    assert ratios[0] == 1.0 and ratios[-1] == 4.0
    assert calls[-1] == (4 * 2, 4 * 2)
