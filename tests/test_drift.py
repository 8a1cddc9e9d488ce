"""The ``[drift]`` table is part of a scenario: one file means the same campaign to ``dialer simulate``,
``dialer sweep`` and the Python API, drift really moves the call flow, and the stationary path is untouched."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from dialer.cli import main
from dialer.errors import ConfigError
from sim import scenario as scenarios
from sim import sweep
from sim.runner import simulate
from sim.runtime import SERIES_BIN, SimulatedCampaign
from sim.scenario import Drift, Scenario

ROOT = Path(__file__).resolve().parents[1]

# Small and fast: 5 agents, 2 h, 2 replications, progressive (no predictive model to warm up).
BASE = """
[campaign]
name = "drifty"
agents = 5
policy = "progressive"
hours = 2
replications = 2
seed = 4

[calls]
live_answer_probability = 0.30
machine_probability = 0.10
busy_probability = 0.05
"""
FALLING = BASE + "\n[drift]\nlive_answer_to = 0.05\n"
STRETCHING = BASE + "\n[drift]\ntalk_scale_to = 2.0\n"


# -- the table in the scenario ---------------------------------------------------------------------------------


def test_drift_table_round_trips_through_dicts_json_and_replace() -> None:
    s = scenarios.loads(BASE + "\n[drift]\nlive_answer_to = 0.1\ntalk_scale_to = 1.2\n")
    assert s.drift == Drift(live_answer_to=0.1, talk_scale_to=1.2)
    table = s.to_dict()
    assert table["drift"] == {"live_answer_to": 0.1, "talk_scale_to": 1.2}
    assert scenarios.scenario_from_dict(table) == s
    assert scenarios.scenario_from_dict(json.loads(json.dumps(table))) == s  # as a --json report carries it
    talk_only = scenarios.loads(STRETCHING)
    assert talk_only.drift == Drift(talk_scale_to=2.0)
    assert talk_only.to_dict()["drift"] == {"talk_scale_to": 2.0}  # TOML has no null: unset stays unset
    assert scenarios.scenario_from_dict(talk_only.to_dict()) == talk_only
    plain = scenarios.loads(BASE)
    assert plain.drift is None and "drift" not in plain.to_dict()
    moved = plain.replace(drift=Drift(0.2))
    assert moved.drift == Drift(0.2) and moved.agents == plain.agents
    assert moved.replace(agents=7).drift == Drift(0.2)  # other changes keep it
    assert dataclasses.replace(moved, drift=None) == plain
    assert sweep.Drift is Drift  # the sweep's name still works


BAD_DRIFT: list[tuple[str, str, str]] = [
    # (what is wrong, [drift] table body, the key the error must name)
    ("unknown key", "answer_to = 0.1", "drift.answer_to"),
    ("text", 'live_answer_to = "low"', "drift.live_answer_to"),
    ("boolean", "talk_scale_to = true", "drift.talk_scale_to"),
    ("not a probability", "live_answer_to = 1.5", "drift.live_answer_to"),
    ("negative", "live_answer_to = -0.1", "drift.live_answer_to"),
    ("NaN", "live_answer_to = nan", "drift.live_answer_to"),
    ("talk shrunk to nothing", "talk_scale_to = 0", "drift.talk_scale_to"),
    ("talk stretched forever", "talk_scale_to = inf", "drift.talk_scale_to"),
    ("outcomes over 1 by the shift's end", "live_answer_to = 0.9", "drift.live_answer_to"),
]


@pytest.mark.parametrize(("what", "body", "key"), BAD_DRIFT, ids=[b[0] for b in BAD_DRIFT])
def test_bad_drift_tables_name_the_key(what: str, body: str, key: str, tmp_path: Path) -> None:
    text = BASE + f"\n[drift]\n{body}\n"
    with pytest.raises(ConfigError) as info:
        scenarios.loads(text)
    assert info.value.key == key, what
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for loader in (scenarios.load, sweep.load):  # the same error, naming the file, whoever reads it
        with pytest.raises(ConfigError) as info:
            loader(path)
        assert info.value.key == key and str(path) in str(info.value)


def test_drift_that_is_not_a_table_or_not_a_drift_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        scenarios.scenario_from_dict({"drift": 0.1})
    assert info.value.key == "drift"
    with pytest.raises(ConfigError) as info:
        Scenario(drift={"live_answer_to": 0.1})  # type: ignore[arg-type]
    assert info.value.key == "drift"
    with pytest.raises(ConfigError) as info:
        Drift(live_answer_to="low")  # type: ignore[arg-type]
    assert info.value.key == "drift.live_answer_to"


def test_the_documented_example_loads() -> None:
    text = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if re.search(r"^\[drift\]", b, re.M)]
    assert blocks, "docs/scenarios.md shows no [drift] example"
    for block in blocks:
        s = scenarios.scenario_from_dict(tomllib.loads(block))
        assert s.drift is not None


# -- dialer simulate ---------------------------------------------------------------------------------------------


def _simulate(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *extra: str) -> dict[str, Any]:
    path = tmp_path / "drift.toml"
    path.write_text(text)
    capsys.readouterr()
    assert main(["simulate", str(path), "--json", "--workers", "1", *extra]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def _live_share(doc: dict[str, Any]) -> float:
    return sum(r["live_answers"] for r in doc["replications"]) / sum(r["dials"] for r in doc["replications"])


def _mean_talk(doc: dict[str, Any]) -> float:
    reps = doc["replications"]
    talk = sum(r["talk_fraction"] * r["agent_hours"] * 3600.0 for r in reps)
    return talk / sum(r["connects"] for r in reps)


def test_dialer_simulate_runs_a_drifting_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    steady = _simulate(tmp_path, capsys, BASE)
    falling = _simulate(tmp_path, capsys, FALLING)
    stretching = _simulate(tmp_path, capsys, STRETCHING)
    # The report carries the drift, and the scenario it carries reads back as the same scenario.
    assert falling["scenario"]["drift"] == {"live_answer_to": 0.05, "talk_scale_to": 1.0}
    assert scenarios.scenario_from_dict(falling["scenario"]) == scenarios.loads(FALLING)
    assert "drift" not in steady["scenario"]
    # 30% -> 5% over the shift averages well under 30%; the same callers without drift stay near 30%.
    assert _live_share(steady) > 0.25
    assert _live_share(falling) < 0.75 * _live_share(steady)
    # Talk stretched linearly to 2x by the shift's end: calls get clearly longer on average.
    assert _mean_talk(stretching) > 1.25 * _mean_talk(steady)
    assert _live_share(stretching) == pytest.approx(_live_share(steady), rel=0.15)  # answers are not what moved


def test_dialer_simulate_text_report_says_the_scenario_drifts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "drift.toml"
    path.write_text(FALLING + "talk_scale_to = 1.2\n")
    assert main(["simulate", str(path), "--workers", "1", "--replications", "1", "--hours", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "Drift: live answers 30% -> 5% over the shift, talk x1.2" in out
    path.write_text(BASE)
    assert main(["simulate", str(path), "--workers", "1", "--replications", "1", "--hours", "0.5"]) == 0
    assert "Drift" not in capsys.readouterr().out


def test_a_bad_drift_table_is_a_one_line_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BASE + "\n[drift]\nlive_answer_to = 3\n")
    assert main(["simulate", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "drift.live_answer_to" in captured.err


# -- the call flow over the day ------------------------------------------------------------------------------------


def _hourly_share(s: Scenario) -> list[float]:
    """Live answers per dial in each hour of the first day, from the replication's 15-minute bins."""
    r = SimulatedCampaign(s, 0).run()
    dials, live = r.series["dials"], r.series["live_answers"]
    assert sum(dials) == r.totals["dials"] and sum(live) == r.totals["live_answers"]  # every call in some bin
    per_hour = int(3600 / SERIES_BIN)
    hours = int(s.hours)
    return [
        sum(live[h * per_hour : (h + 1) * per_hour]) / sum(dials[h * per_hour : (h + 1) * per_hour])
        for h in range(hours)
    ]


def test_live_answers_fall_through_the_shift_and_start_again_each_day() -> None:
    falling = scenarios.loads(FALLING).replace(days=2)
    first, last = _hourly_share(falling)
    assert last < 0.6 * first, (first, last)
    first_steady, last_steady = _hourly_share(dataclasses.replace(falling, drift=None))
    assert 0.75 < last_steady / first_steady < 1.33, (first_steady, last_steady)
    # Day two starts again from 30%: a list worked through each day, not one drift over the whole campaign.
    r = SimulatedCampaign(falling, 0).run()
    day = int(86400 / SERIES_BIN)
    per_hour = int(3600 / SERIES_BIN)
    day2_first = sum(r.series["live_answers"][day : day + per_hour]) / sum(r.series["dials"][day : day + per_hour])
    assert day2_first > 1.5 * last, (day2_first, last)


# -- reproducibility -----------------------------------------------------------------------------------------------


def _report(s: Scenario, workers: int = 1) -> dict[str, Any]:
    doc = simulate(s, workers=workers).to_json()
    doc.pop("wall_seconds")
    return doc


def test_no_drift_gives_the_same_numbers_as_before() -> None:
    s = scenarios.loads(BASE).replace(hours=1.0)
    explicit = Scenario(**{f.name: getattr(s, f.name) for f in dataclasses.fields(s)} | {"drift": None})
    assert json.dumps(_report(s), sort_keys=True) == json.dumps(_report(explicit), sort_keys=True)
    # A drift that changes nothing runs the drift process and the scaled sampler, yet draws the same callers: the
    # drift never touches a random stream, so with and without it a seed meets the same people.
    noop = SimulatedCampaign(s.replace(drift=Drift()), 0).run()
    plain = SimulatedCampaign(s, 0).run()
    assert noop.totals == plain.totals and noop.answers == plain.answers


def test_drift_with_the_same_seed_gives_the_same_numbers_in_any_process() -> None:
    s = scenarios.loads(FALLING).replace(hours=1.0, days=2)
    s = s.replace(drift=Drift(live_answer_to=0.1, talk_scale_to=1.5))
    once = _report(s)
    assert once["live_answers"] < _report(dataclasses.replace(s, drift=None))["live_answers"]
    assert json.dumps(once, sort_keys=True) == json.dumps(_report(s, workers=2), sort_keys=True)  # pickled to a pool


def test_sweep_entry_points_agree_with_the_scenario() -> None:
    s = scenarios.loads(FALLING).replace(hours=1.0)
    # run_one without a drift argument now honours the scenario's own drift...
    assert sweep.run_one(s, 0).totals == SimulatedCampaign(s, 0).run().totals
    # ...and a drift argument overrides it, as the sweep's drift= option always did.
    other = Drift(talk_scale_to=1.5)
    assert sweep.run_one(s, 0, other).totals == SimulatedCampaign(s.replace(drift=other), 0).run().totals
    assert sweep.run_one(s, 0, other).totals != sweep.run_one(s, 0).totals
