"""The ceiling 1-h rolling windows put on any policy of the Markov model (benchmarks/pacing_rolling_bound.py): the
claims docs/pacing.md makes from it, checked on the 5-agent floor at 1% (each LP solves in well under a second)."""

from __future__ import annotations

import pytest

from benchmarks.pacing_rolling_bound import solve_cooling
from sim.markov import MarkovModel, solve

MODEL = MarkovModel(5, 0.3)


def test_the_cooldown_costs_what_the_windows_cost_and_vanishes_as_it_shrinks() -> None:
    lp = solve(MODEL, 0.01).occupancy
    windows, ab = solve_cooling(MODEL, 0.01, 45 * 60.0, 1)
    instant, _ = solve_cooling(MODEL, 0.01, 0.6, 1)
    assert windows < 0.98 * lp  # the 98% is out of reach on 1-h windows
    assert windows > 0.9468 * lp  # and progressive dialing's share (exact) is not the ceiling
    assert ab < 0.01  # the spacing, not the average cap, binds
    assert windows < instant <= lp + 1e-9
    assert instant > 0.99 * lp


def test_only_the_cooldowns_mean_matters() -> None:
    """The policy may not risk a second abandonment anywhere in the cooldown, so how its length is spread (one
    exponential phase or thirty) hardly moves the optimum."""
    one, _ = solve_cooling(MODEL, 0.01, 45 * 60.0, 1)
    thirty, _ = solve_cooling(MODEL, 0.01, 45 * 60.0, 30)
    assert thirty == pytest.approx(one, rel=1e-4)  # 0.0006% apart: a ramp in the last phases


def test_counting_timers_with_one_slot_is_the_single_cooldown() -> None:
    single, _ = solve_cooling(MODEL, 0.02, 45 * 60.0, 1, allowed=1)
    two, _ = solve_cooling(MODEL, 0.02, 45 * 60.0, 1, allowed=2)
    assert single < two <= solve(MODEL, 0.02).occupancy + 1e-9
