"""The constrained-MDP optimum of the Markov model, checked against brute force and closed forms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dialer.errors import ConfigError
from sim.markov import MarkovModel, evaluate, progressive_policy, solve


def _all_deterministic(model: MarkovModel) -> list[tuple[float, float]]:
    """(occupancy, abandonment) of every deterministic launch policy of a tiny model."""
    nb, nr = model.agents + 1, model.ringing_cap + 1
    free = [(b, r) for b in range(nb) for r in range(nr - 1)]  # nobody launches at the cap
    out = []
    for bits in itertools.product((0.0, 1.0), repeat=len(free)):
        policy = np.zeros((nb, nr))
        for (b, r), bit in zip(free, bits, strict=True):
            policy[b, r] = bit
        e = evaluate(model, policy)
        out.append((e.occupancy, e.abandon_rate))
    return out


@pytest.fixture(scope="module")
def tiny() -> tuple[MarkovModel, list[tuple[float, float]]]:
    model = MarkovModel(2, 0.4, max_ringing=3)
    return model, _all_deterministic(model)


def test_unconstrained_lp_equals_the_best_of_all_deterministic_policies(
    tiny: tuple[MarkovModel, list[tuple[float, float]]],
) -> None:
    model, table = tiny
    best = max(o for o, _ in table)
    assert solve(model, 1.0).occupancy == pytest.approx(best, abs=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.15])
def test_constrained_lp_beats_every_feasible_deterministic_policy_and_respects_the_cap(
    tiny: tuple[MarkovModel, list[tuple[float, float]]], alpha: float
) -> None:
    model, table = tiny
    sol = solve(model, alpha)
    feasible = max(o for o, a in table if a <= alpha + 1e-12)
    unconstrained = max(o for o, _ in table)
    assert feasible - 1e-7 <= sol.occupancy <= unconstrained + 1e-7
    assert sol.abandon_rate <= alpha + 1e-7
    # The extracted policy really achieves what the LP promised (its stationary distribution, solved apart).
    check = evaluate(model, sol.policy)
    assert check.occupancy == pytest.approx(sol.occupancy, abs=1e-6)
    assert check.abandon_rate == pytest.approx(sol.abandon_rate, abs=1e-6)


def test_progressive_matches_its_closed_form_and_the_optimum_beats_it() -> None:
    model = MarkovModel(3, 0.3)
    prog = evaluate(model, progressive_policy(model))
    # Each agent cycles: rings until a person answers (15/p s on average), then talks 120 s.
    assert prog.occupancy == pytest.approx(120 / (120 + 15 / 0.3), abs=1e-9)
    assert prog.abandon_rate == pytest.approx(0.0, abs=1e-12)
    sol = solve(model, 0.03)
    assert sol.occupancy > prog.occupancy + 0.01
    assert sol.abandon_rate == pytest.approx(0.03, abs=1e-6)  # the cap binds at the optimum
    assert sol.truncation_mass < 1e-6
    assert solve(model, 0.0).occupancy >= prog.occupancy - 1e-9


def test_model_as_scenario_and_bad_input() -> None:
    scen = MarkovModel(5, 0.15).scenario(hours=1.0)
    assert (scen.agents, scen.live_answer_probability, scen.connect_limit) == (5, 0.15, 0.0)
    assert scen.machine_probability == scen.busy_probability == scen.pause_probability == 0.0
    assert (scen.time_to_answer.mean, scen.no_answer_after.mean, scen.talk_time.mean) == (15.0, 15.0, 120.0)
    with pytest.raises(ConfigError):
        MarkovModel(0)
    with pytest.raises(ConfigError):
        MarkovModel(3, 1.5)
    with pytest.raises(ConfigError):
        solve(MarkovModel(2), 1.5)
    with pytest.raises(ConfigError):
        evaluate(MarkovModel(2), np.zeros((2, 2)))
