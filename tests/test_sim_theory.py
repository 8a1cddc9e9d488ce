"""The simulator checked against what theory says it must produce, and against itself (reproducibility).

The Markov check: under progressive dialing every ready agent has exactly one call ringing, each attempt lasts an
exponential time (mean 15 s whether it is answered or given up, so the outcome does not change the duration), and
an attempt reaches a person with probability p. The idle time before a connect is then a geometric number of
exponential attempts, itself exponential with mean ring / p, and with connect limit 0 the person is bridged at
once to the agent who was waiting. Each agent alternates idle (mean ring / p) and talk + wrap (mean handle), so by
renewal-reward the occupancy is handle / (handle + ring / p).
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sim.distributions import parse_distribution
from sim.metrics import mean_interval
from sim.runner import SimulationReport, simulate
from sim.scenario import Scenario

RING = 15.0
TALK = 120.0


def dist(spec: dict[str, Any]) -> Any:
    return parse_distribution("test", spec)


def markov(p: float, *, wrap: float = 0.0, **kw: Any) -> Scenario:
    base: dict[str, Any] = {
        "policy": "progressive",
        "agents": 2,
        # Long enough that the end of the shift is a small edge: agents finish the call they are on, then go
        # home, which adds a talk without its idle (about +0.001 to the talk fraction).
        "hours": 8.0,
        "replications": 20,
        "seed": 1,
        "live_answer_probability": p,
        "machine_probability": 0.0,
        "busy_probability": 0.0,
        "time_to_answer": dist({"dist": "exponential", "mean": RING}),
        "no_answer_after": dist({"dist": "exponential", "mean": RING}),
        "talk_time": dist({"dist": "exponential", "mean": TALK}),
        "wrap_time": dist({"dist": "fixed", "value": wrap}),
        "connect_limit": 0.0,
        "pause_probability": 0.0,
    }
    base.update(kw)
    return Scenario(**base)


def comparable(report: SimulationReport) -> str:
    """The JSON document minus the wall-clock time, which is the only thing allowed to vary between runs."""
    doc = report.to_json()
    doc.pop("wall_seconds")
    return json.dumps(doc, sort_keys=True, default=str)


@pytest.mark.parametrize(("p", "wrap"), [(0.3, 0.0), (0.6, 0.0), (0.3, 30.0)])
def test_progressive_occupancy_matches_renewal_theory(p: float, wrap: float) -> None:
    report = simulate(markov(p, wrap=wrap), workers=1)
    handle = TALK + wrap
    idle = RING / p
    ci = report.pooled["ci95"]
    occ = ci["agent_occupancy"]
    expected = handle / (handle + idle)
    assert occ["low"] <= expected <= occ["high"], (expected, occ)
    assert occ["half_width"] < 0.02  # tight enough that a wrong model (say ring instead of ring / p) would fail
    assert abs(expected - TALK / (TALK + RING)) > 3 * occ["half_width"]
    talk = ci["talk_fraction"]
    assert talk["low"] <= TALK / (handle + idle) <= talk["high"]
    # Secondary figures, with a looser band: per-connect means are ratios of random sums.
    gap = ci["idle_between_calls"]
    assert abs(gap["mean"] - idle) <= 2 * gap["half_width"], (idle, gap)
    cph = ci["connects_per_agent_hour"]
    assert abs(cph["mean"] - 3600.0 / (handle + idle)) <= 2 * cph["half_width"], cph
    assert report.pooled["abandoned"] == 0


SCENARIOS: list[dict[str, Any]] = [
    {"connect_limit": 2.0},
    {"connect_limit": 0.0, "wrap_time": dist({"dist": "lognormal", "mean": 20, "sigma_log": 0.8})},
    {
        "pause_probability": 0.3,
        "pause_time": dist({"dist": "exponential", "mean": 120}),
        "wrap_time": dist({"dist": "uniform", "low": 5, "high": 25}),
        "connect_limit": 0.0,
    },
    {
        "machine_probability": 0.2,
        "busy_probability": 0.1,
        "time_to_answer": dist({"dist": "empirical", "samples": [3, 5, 8, 13, 21]}),
        "talk_time": dist({"dist": "gamma", "mean": 90, "shape": 2}),
        "ring_timeout": 15.0,
        "days": 2,
    },
]


@pytest.mark.parametrize("seed", [1, 7])
@pytest.mark.parametrize("changes", SCENARIOS, ids=["limit2", "wrap", "pauses", "machines-days"])
def test_progressive_never_abandons(changes: dict[str, Any], seed: int) -> None:
    s = markov(0.35, agents=6, hours=1.0, replications=2, seed=seed).replace(**changes)
    report = simulate(s, workers=1)
    for rep in report.replications:
        assert rep["live_answers"] > 20
        assert rep["abandoned"] == 0 and rep["abandon_rate"] == 0.0
        assert rep["connects"] == rep["live_answers"]


def test_detection_that_eats_the_connect_limit_abandons_even_under_progressive() -> None:
    """Fail closed: three seconds of answering-machine analysis leave nothing of a two-second limit."""
    s = markov(0.35, agents=3, hours=0.5, replications=1, connect_limit=2.0).replace(
        detection_time=dist({"dist": "fixed", "value": 3.0})
    )
    rep = simulate(s).replications[0]
    assert rep["live_answers"] > 0 and rep["abandoned"] == rep["live_answers"] and rep["connects"] == 0


def test_power_dialing_abandons_and_the_rate_is_abandoned_over_live_answers() -> None:
    report = simulate(markov(0.3, agents=5, hours=1.0, replications=2, policy="power", ratio=2.5), workers=1)
    for rep in report.replications:
        assert rep["abandoned"] > 0
        assert rep["abandon_rate"] == pytest.approx(rep["abandoned"] / rep["live_answers"])


def test_same_seed_gives_identical_json_and_other_seeds_differ() -> None:
    s = markov(0.3, agents=4, hours=1.0, replications=3, policy="power", ratio=1.5)
    first, second = simulate(s, workers=1), simulate(s, workers=1)
    assert comparable(first) == comparable(second)
    other = simulate(s.replace(seed=2), workers=1)
    assert comparable(other) != comparable(first)
    assert [r["dials"] for r in other.replications] != [r["dials"] for r in first.replications]
    # Replications of one run are independent streams, not copies of each other.
    assert len({r["dials"] for r in first.replications}) > 1


def test_any_executor_gives_the_same_numbers_as_the_process_pool() -> None:
    s = markov(0.3, agents=4, hours=1.0, replications=4, policy="power", ratio=1.4, seed=5)
    in_process = simulate(s, workers=1)
    pooled = simulate(s, workers=2)
    with ThreadPoolExecutor(max_workers=2) as executor:
        threaded = simulate(s, executor=executor)
    assert comparable(pooled) == comparable(in_process) == comparable(threaded)
    progress: list[tuple[int, int]] = []
    with ThreadPoolExecutor(max_workers=2) as executor:
        simulate(s, executor=executor, progress=lambda done, total: progress.append((done, total)))
    assert sorted(progress) == [(i, 4) for i in range(1, 5)]


def test_multi_day_runs_report_days_and_rolling_30_day_windows() -> None:
    s = markov(0.3, agents=2, hours=0.25, days=31, replications=2, policy="power", ratio=2.0, seed=3)
    report = simulate(s, workers=1)
    for rep in report.replications:
        days, windows = rep["days"], rep["windows"]
        assert [d["day"] for d in days] == list(range(31))
        assert all(d["dials"] > 0 for d in days)
        assert sum(d["dials"] for d in days) == rep["dials"]
        assert sum(d["live_answers"] for d in days) == rep["live_answers"]
        assert sum(d["abandoned"] for d in days) == rep["abandoned"]
        assert [(w["first_day"], w["days"]) for w in windows] == [(0, 30), (1, 30)]
        for w in windows:
            chunk = days[w["first_day"] : w["first_day"] + 30]
            assert w["abandoned"] == sum(d["abandoned"] for d in chunk)
            assert w["abandon_rate"] == pytest.approx(w["abandoned"] / w["live_answers"])
        assert rep["worst_window_abandon_rate"] == max(w["abandon_rate"] for w in windows)
        assert rep["worst_day_abandon_rate"] == max(d["abandon_rate"] for d in days)
        assert rep["worst_day_abandon_rate"] >= rep["worst_window_abandon_rate"] > 0
    pooled = report.pooled
    assert pooled["campaign_days"] == 62
    assert pooled["worst_window_abandon_rate"] == max(r["worst_window_abandon_rate"] for r in report.replications)
    # Occupancy is counted over logged-in time only: the shift plus the drain of calls still up when dialing stops
    # (minutes), never the 23.75 hours between shifts.
    assert 2 * 0.25 * 31 <= pooled["agent_hours"] < 2 * 0.5 * 31


def test_short_campaign_uses_its_whole_length_as_the_window() -> None:
    report = simulate(markov(0.3, agents=2, hours=0.25, days=3, replications=1, policy="power", ratio=2.0), workers=1)
    (window,) = report.replications[0]["windows"]
    assert window["days"] == 3 and window["abandoned"] == report.replications[0]["abandoned"]


def test_every_second_of_after_call_work_is_counted() -> None:
    """With a fixed wrap-up, logged-in wrap time is exactly connects x wrap, including the last calls of a shift."""
    wrap = 15.0
    report = simulate(markov(0.4, wrap=wrap, agents=3, hours=0.5, replications=2, days=2), workers=1)
    for rep in report.replications:
        wrap_seconds = (rep["agent_occupancy"] - rep["talk_fraction"]) * rep["agent_hours"] * 3600.0
        assert wrap_seconds == pytest.approx(rep["connects"] * wrap)


def test_a_24_hour_shift_drains_into_the_next_day() -> None:
    report = simulate(markov(0.3, agents=1, hours=24.0, days=2, replications=1), workers=1)
    days = report.replications[0]["days"]
    assert [d["day"] for d in days] == [0, 1] and all(d["dials"] > 1000 for d in days)


def test_confidence_interval_is_student_t() -> None:
    iv = mean_interval([1.0, 2.0, 3.0, 4.0])
    assert iv.mean == 2.5
    assert iv.half_width == pytest.approx(3.182446305284263 * math.sqrt((5.0 / 3.0) / 4))
    one = mean_interval([7.0])
    assert (one.mean, one.half_width) == (7.0, 0.0)
    assert math.isnan(mean_interval([]).mean)
