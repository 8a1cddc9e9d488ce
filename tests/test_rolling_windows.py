"""Abandonment over rolling 1-24 h windows (Amazon Connect-style pacing windows) in simulation reports."""

from __future__ import annotations

import pytest

from dialer.errors import ConfigError
from sim import scenario as scenarios
from sim import simulate
from sim.metrics import rolling_windows


def test_rolling_windows_count_the_answers_inside_each_window() -> None:
    # Answers at 10 min (abandoned), 20 min, 70 min (abandoned), 130 min; one-hour windows every 15 minutes.
    answers = [(600.0, True), (1200.0, False), (4200.0, True), (7800.0, False)]
    windows = {w["end"]: w for w in rolling_windows(answers, 1.0)}
    assert windows[900.0]["live_answers"] == 1 and windows[900.0]["abandoned"] == 1
    assert windows[3600.0]["live_answers"] == 2 and windows[3600.0]["abandon_rate"] == 0.5
    assert windows[4500.0]["live_answers"] == 2  # 1200 and 4200: the 600 answer has left the hour
    assert windows[5400.0]["live_answers"] == 1 and windows[5400.0]["abandoned"] == 1
    assert windows[8100.0]["live_answers"] == 1 and windows[8100.0]["abandoned"] == 0  # only the 7800 answer
    assert max(windows) == 8100.0  # evaluation stops once the last answer is in
    assert rolling_windows([], 4.0) == []


def test_simulation_reports_rolling_windows_when_asked() -> None:
    base = scenarios.default().replace(replications=2, hours=2.0, rolling_window_hours=1.0)
    aggressive = simulate(base.replace(policy="power", ratio=1.6), workers=1).pooled
    safe = simulate(base.replace(policy="progressive"), workers=1).pooled
    assert aggressive["rolling_window_hours"] == 1.0
    assert aggressive["share_rolling_windows_over_target"] > 0.5
    assert aggressive["worst_rolling_abandon_rate"] >= aggressive["abandon_rate"]
    assert safe["share_rolling_windows_over_target"] == 0.0 and safe["worst_rolling_abandon_rate"] == 0.0
    plain = scenarios.default().replace(replications=1, hours=1.0)
    assert "rolling_window_hours" not in simulate(plain).pooled


@pytest.mark.parametrize("bad", [0.5, 25.0])
def test_rolling_window_hours_must_be_between_1_and_24(bad: float) -> None:
    with pytest.raises(ConfigError, match=r"campaign\.rolling_window_hours"):
        scenarios.loads(f"[campaign]\nrolling_window_hours = {bad}\n")


def test_a_rolling_window_campaign_paces_predictive_to_that_window() -> None:
    s = scenarios.loads("[campaign]\npolicy = 'predictive'\nrolling_window_hours = 2\n")
    assert s.policy_params()["window"] == "rolling" and s.policy_params()["window_hours"] == 2.0
    explicit = scenarios.loads("[campaign]\nrolling_window_hours = 2\n[pacing]\nwindow = 'day'\n")
    assert explicit.policy_params()["window"] == "day"  # [pacing] has the last word
    assert "window" not in scenarios.loads("[campaign]\npolicy = 'power'\nrolling_window_hours = 2\n").policy_params()
