"""Sweeping call flows by the hour (issue 16): ``dialer sweep --vary`` over a period's values, the inbound settings
and the base call flow, and ``--json`` with each point's per-period figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dialer.cli import main
from dialer.errors import ConfigError
from sim import scenario, sweep
from sim.inbound_periods import segments

DAY = """
[campaign]
name = "by-the-hour"
policy = "progressive"
agents = 8
hours = 1.5
replications = 3
seed = 5
[agents]
pause_probability = 0

[[periods]]
start_hour = 0.5
name = "lunch"
live_answer_probability = 0.3

[[periods]]
start_hour = 1
name = "afternoon"
talk_scale = 1.2
"""

BLENDED = """
[campaign]
policy = "threshold"
hours = 1
replications = 2
[inbound]
rate_per_hour = 60
handle_time = { dist = "exponential", mean = 60 }
[groups]
outbound = 4
blended = 4
[[periods]]
start_hour = 0.5
name = "rush"
inbound_rate_per_hour = 120
blended = 2
"""


def _axis(text: str) -> sweep.Setting:
    (setting,) = sweep.parse_axis(text).settings
    return setting


def test_axis_syntax_sets_and_scales() -> None:
    axis = sweep.parse_axis("periods.lunch.answer_rate=x0.5, 0.2 ,*2")
    assert axis.key == "periods.lunch.answer_rate"
    assert [(st.value, st.scale) for st in axis.settings] == [(0.5, True), (0.2, False), (2.0, True)]
    assert [st.label for st in axis.settings] == [
        "periods.lunch.answer_rate=x0.5",
        "periods.lunch.answer_rate=0.2",
        "periods.lunch.answer_rate=x2",
    ]
    for bad in ("periods.lunch.answer_rate", "=1", "periods.lunch.answer_rate=half", "calls.x=nan"):
        with pytest.raises(ConfigError):
            sweep.parse_axis(bad)


def test_a_period_value_changes_that_period_only() -> None:
    base = scenario.loads(DAY)
    s = sweep.apply_setting(base, _axis("periods.lunch.answer_rate=x0.5"))
    assert [seg.values["live_answer_probability"] for seg in segments(s)] == [0.3, 0.15, 0.3]
    # The afternoon did not set the rate: it is pinned to the one in force before, not lunch's new one.
    assert s.periods[1].live_answer_probability == 0.3
    by_index = sweep.apply_setting(base, _axis("periods.1.talk_scale=1.5"))
    assert [seg.values["talk_scale"] for seg in segments(by_index)] == [1.0, 1.0, 1.5]
    assert by_index.live_answer_probability == base.live_answer_probability


def test_star_scales_every_stretch_including_the_one_before_the_first_period() -> None:
    base = scenario.loads(DAY)
    s = sweep.apply_setting(base, _axis("periods.*.live_answer_probability=x0.5"))
    assert [seg.values["live_answer_probability"] for seg in segments(s)] == [0.15, 0.15, 0.15]
    talk = sweep.apply_setting(base, _axis("periods.*.talk_scale=x2"))
    assert [seg.values["talk_scale"] for seg in segments(talk)] == [2.0, 2.0, 2.4]
    staffed = sweep.apply_setting(base, _axis("periods.*.outbound=x0.5"))
    assert [seg.values["staffing"]["outbound"] for seg in segments(staffed)] == [4, 4, 4]


def test_inbound_and_staffing_axes() -> None:
    base = scenario.loads(BLENDED)
    busy = sweep.apply_setting(base, _axis("inbound.busyness_shape=4"))
    assert busy.inbound is not None and busy.inbound.busyness_shape == 4.0
    rush = sweep.apply_setting(base, _axis("periods.rush.inbound_rate=x2"))
    assert [seg.values["inbound_rate_per_hour"] for seg in segments(rush)] == [60.0, 240.0]
    more = sweep.apply_setting(base, _axis("periods.rush.blended=4"))
    assert [seg.values["staffing"]["blended"] for seg in segments(more)] == [4, 4]
    combos = sweep.combinations(
        base, [sweep.parse_axis("inbound.busyness_shape=0,4"), sweep.parse_axis("periods.rush.blended=1,2,3")]
    )
    assert len(combos) == 6 and len({s for _, s in combos}) == 6


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("periods.lunhc.answer_rate=x0.5", "did you mean 'lunch'"),  # unknown period name
        ("periods.7.answer_rate=0.1", "out of range"),  # index past the periods
        ("periods.lunch.answer_rate=x5", "must be a number from 0 to 1"),  # 1.5: not a probability
        ("periods.lunch.answer_rate=0.9", "exceeds 1"),  # with machine and busy, past 1
        ("periods.lunch.outbound=9", "the floor has 8"),  # more agents than the floor
        ("periods.lunch.outbound=2.5", "whole number"),
        ("periods.lunch.start_hour=1", "not swept"),
        ("periods.lunch.inbound_rate=10", "[inbound]"),  # no inbound on this floor
        ("inbound.busyness_shape=4", "no [inbound]"),
        ("calls.talk_time=2", "cannot vary"),
        ("campaign.agents=3", "unknown axis"),
    ],
)
def test_bad_axes_are_refused_naming_the_key(text: str, needle: str) -> None:
    key = text.partition("=")[0]
    with pytest.raises(ConfigError) as info:
        sweep.combinations(scenario.loads(DAY), [sweep.parse_axis(text)])
    assert info.value.key == key
    assert needle in info.value.message


def test_the_command_refuses_a_bad_axis_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "day.toml"
    spec.write_text(DAY)

    def no_run(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a simulation ran before the axis was checked")

    monkeypatch.setattr(sweep, "run_jobs", no_run)
    argv = ["sweep", str(spec), "--policies", "progressive", "--quiet", "--out", str(tmp_path)]
    assert main([*argv, "--vary", "periods.lunch.answer_rate=x0.5", "--vary", "periods.dinner.talk_scale=2"]) == 2
    err = capsys.readouterr().err
    assert "periods.dinner.talk_scale" in err and "unknown period 'dinner'" in err
    assert err.count("error") == 1
    assert main([*argv, "--vary", "periods.lunch.answer_rate=x1", "--vary", "periods.lunch.answer_rate=x2"]) == 2
    assert "varied twice" in capsys.readouterr().err


def _segment(point: dict[str, object], name: str) -> dict[str, dict[str, float]]:
    periods = point["periods"]
    assert isinstance(periods, list)
    return next(p for p in periods if p["name"] == name)


def test_halving_lunchs_answer_rate_halves_lunchs_answers_and_json_carries_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "day.toml"
    spec.write_text(DAY)
    argv = ["sweep", str(spec), "--policies", "progressive", "--quiet", "--out", str(tmp_path), "--workers", "1"]
    assert main([*argv, "--vary", "periods.lunch.answer_rate=x0.5,x1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["axes"][0]["key"] == "periods.lunch.answer_rate"
    half, full = doc["points"]
    assert half["label"] == "progressive [periods.lunch.answer_rate=x0.5]"
    assert half["settings"] == [{"key": "periods.lunch.answer_rate", "scale": 0.5}]
    for point in (half, full):
        # The figures dialer simulate --json carries at its top level, and the per-period ones.
        for key in ("abandon_rate", "talk_fraction", "agent_occupancy", "dials", "live_answers", "ci95", "periods"):
            assert key in point, key
        assert [p["name"] for p in point["periods"]] == ["", "lunch", "afternoon"]
        for segment in point["periods"]:
            assert {
                "index",
                "start_hour",
                "end_hour",
                "configured",
                "dials",
                "live_answer_rate",
                "abandon_rate",
            } <= set(segment)
            assert set(segment["live_answer_rate"]) >= {"mean", "low", "high", "half_width", "n"}
    lunch_half, lunch_full = _segment(half, "lunch"), _segment(full, "lunch")
    assert lunch_half["configured"]["live_answer_probability"] == 0.15
    assert lunch_half["live_answer_rate"]["high"] < lunch_full["live_answer_rate"]["low"]
    assert lunch_half["live_answer_rate"]["mean"] == pytest.approx(0.15, abs=0.03)
    # Fewer people reached in lunch, though progressive dials more for its idle agents (answers fall less than half).
    assert lunch_half["live_answers"]["mean"] < 0.9 * lunch_full["live_answers"]["mean"]
    assert lunch_half["dials"]["mean"] > lunch_full["dials"]["mean"]
    # Before lunch the two points meet the same callers (same seeds, same values): the same figures.
    assert _segment(half, "")["live_answers"] == _segment(full, "")["live_answers"]
    assert _segment(half, "afternoon")["configured"]["live_answer_probability"] == 0.3
    table = (tmp_path / "day-frontier.md").read_text()
    assert "Per period" in table and "| progressive [periods.lunch.answer_rate=x0.5] |" in table
    assert "(before the first period)" in table and "(15.0%)" in table  # lunch's answer rate as set


def test_simulate_json_carries_the_same_per_period_figures(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "blended.toml"
    spec.write_text(BLENDED)
    assert main(["simulate", str(spec), "--json", "--workers", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    before, rush = doc["periods"]
    assert (before["index"], rush["index"], rush["name"]) == (None, 0, "rush")
    assert rush["configured"] == {
        "live_answer_probability": 0.3,
        "talk_scale": 1.0,
        "staffing": {"outbound": 4, "blended": 2},
        "inbound_rate_per_hour": 120.0,
    }
    for key in ("inbound_callers", "inbound_service_level", "inbound_abandon_rate"):
        assert key in rush
    # Twice the arrival rate in the rush: more callers there than in the half hour before.
    assert rush["inbound_callers"]["mean"] > before["inbound_callers"]["mean"]
    assert main(["simulate", str(spec), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "Per period" in text and "Inbound SL" in text and "rush" in text


def test_a_sweep_point_reports_what_simulate_reports_for_its_scenario() -> None:
    from sim.runner import simulate

    base = scenario.loads(DAY).replace(replications=2)
    axis = sweep.parse_axis("periods.afternoon.outbound=4")
    result = sweep.run(base, sweep.points(["progressive"]), axes=[axis], workers=1, refine=0)
    (row,) = result.rows
    report = simulate(sweep.apply_setting(base, axis.settings[0]), workers=1)
    assert row.pooled["periods"] == report.pooled["periods"]
    assert row.pooled["ci95"] == report.pooled["ci95"]
    assert [seg["configured"]["staffing"]["outbound"] for seg in row.pooled["periods"]] == [8, 8, 4]
