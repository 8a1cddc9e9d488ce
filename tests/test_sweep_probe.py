"""``dialer sweep SCENARIO --vary KEY=V1,V2`` tried as a user types it: spaces, a trailing comma, a value given
twice, a staffing count scaled, an unknown key, a scenario without [[periods]], and ``--json`` parsed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dialer.cli import main
from sim import scenario, sweep

DAY = """
[campaign]
policy = "progressive"
agents = 5
hours = 1
replications = 2
[agents]
pause_probability = 0
[[periods]]
start_hour = 0.5
name = "lunch"
[[periods]]
start_hour = 0.75
name = "afternoon"
"""

FLAT = """
[campaign]
policy = "progressive"
agents = 5
hours = 1
replications = 2
"""


def _sweep(tmp_path: Path, text: str, *vary: str) -> list[str]:
    path = tmp_path / "day.toml"
    path.write_text(text, encoding="utf-8")
    args = ["sweep", str(path), "--policies", "progressive", "--quiet", "--workers", "1", "--out", str(tmp_path)]
    for v in vary:
        args += ["--vary", v]
    return args


def _error(capsys: pytest.CaptureFixture[str], args: list[str], *words: str) -> str:
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("dialer: error: "), captured
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_trailing_comma_adds_no_value_and_the_json_parses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``x0.5,x1,`` stopped with "value '' is not a number". Now the trailing comma is ignored; spaces
    around the key, the '=' and the values are too, and ``--json`` is one document with a point per value."""
    args = _sweep(tmp_path, DAY, " periods.lunch.answer_rate = x0.5 , x1,", "calls.connect_limit=x1")
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [a["key"] for a in doc["axes"]] == ["periods.lunch.answer_rate", "calls.connect_limit"]
    assert [v["scale"] for v in doc["axes"][0]["values"]] == [0.5, 1.0]
    titles = [p["label"] for p in doc["points"]]
    assert len(titles) == 2 and len(set(titles)) == 2, titles
    for point in doc["points"]:
        assert [p["name"] for p in point["periods"]][-2:] == ["lunch", "afternoon"], point["periods"]
    assert (tmp_path / "day-frontier.md").is_file()


def test_an_empty_value_or_a_value_twice_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``x1,x1`` ran every policy twice at the same setting, as two rows no one could tell apart; a
    doubled comma said "value '' is not a number". Now each is one line naming the key, before anything runs."""
    _error(capsys, _sweep(tmp_path, DAY, "periods.lunch.answer_rate=x1,x1"), "periods.lunch.answer_rate", "twice")
    _error(capsys, _sweep(tmp_path, DAY, "periods.lunch.answer_rate=0.2, 0.2"), "twice")
    _error(capsys, _sweep(tmp_path, DAY, "periods.lunch.answer_rate=x0.5,,x1"), "empty value")
    _error(capsys, _sweep(tmp_path, DAY, "periods.lunch.answer_rate=,"), "empty value")
    assert not (tmp_path / "day-frontier.md").exists()


def test_a_scaled_staffing_count_rounds_half_up() -> None:
    """Before: Python's round() gave x0.5 of 5 agents 2 (half to even) but x0.7 of 5 gave 4 (3.5 up), and x1.3 of
    5 gave 6 (6.5 down). Now halves go up, as the docs' "a scaled one is rounded" reads."""
    day = scenario.loads(DAY)
    axis = sweep.parse_axis("periods.lunch.outbound=x0.5,x0.7,x0.9")
    lunch = [s.periods[0].outbound for _, s in sweep.combinations(day, [axis])]
    assert lunch == [3, 4, 5]
    with pytest.raises(Exception, match="is 7 but the floor has 5"):
        sweep.combinations(day, [sweep.parse_axis("periods.lunch.outbound=x1.3")])
    # every stretch, the one before lunch included, at half the floor
    (_, half), = sweep.combinations(day, [sweep.parse_axis("periods.*.outbound=x0.5")])  # fmt: skip
    assert [(p.start_hour, p.outbound) for p in half.periods] == [(0.0, 3), (0.5, 3), (0.75, 3)]


def test_unknown_keys_and_a_scenario_without_periods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _error(capsys, _sweep(tmp_path, DAY, "periods.lunch.agents=x2"), "periods.lunch.agents", "cannot vary")
    _error(capsys, _sweep(tmp_path, DAY, "staffing=4"), "unknown axis")
    _error(capsys, _sweep(tmp_path, DAY, "periods.lnch.answer_rate=x0.5"), "did you mean 'lunch'")
    _error(capsys, _sweep(tmp_path, FLAT, "periods.*.answer_rate=x0.5"), "has no [[periods]]")
    _error(capsys, _sweep(tmp_path, FLAT, "periods.0.outbound=2"), "has no [[periods]]")
