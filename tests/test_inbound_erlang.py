"""The simulator's inbound floors against queueing theory (issue 16, item 2's proof).

An inbound-only floor with exponential handle times and no wrap-up is an M/M/c queue: without patience its service
level and average speed of answer are Erlang-C's; with exponential patience, its service level and abandonment are
Erlang-A's. The theory's figure must lie inside the replications' 95% interval. The formulas themselves are checked
first against closed forms that do not share their code.
"""

from __future__ import annotations

import math

import pytest

from sim.inbound_metrics import inbound_figures, pool_inbound
from sim.queueing import agents_needed, erlang_a, erlang_c, erlang_c_asa, erlang_c_service_level, theory
from sim.runtime import run_replication
from sim.scenario import loads


def test_erlang_c_matches_the_textbook() -> None:
    # 5 agents, 4 Erlangs: the classic table value P(wait) = 0.5541.
    assert erlang_c(5, 4.0) == pytest.approx(0.554113, abs=1e-6)
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c_asa(1, 0.5 / 100, 100) == pytest.approx(100.0)  # M/M/1: Wq = rho / (mu - lam) = 100 s
    assert erlang_c_service_level(5, 4 / 180, 180, 0) == pytest.approx(1 - 0.554113, abs=1e-6)
    assert erlang_c(4, 4.0) == 1.0 and erlang_c_service_level(4, 4 / 180, 180, 20) == 0.0  # unstable


def test_erlang_a_without_patience_is_erlang_c() -> None:
    a = erlang_a(5, 4 / 180, 180, 1e12, 20)
    assert a["service_level"] == pytest.approx(erlang_c_service_level(5, 4 / 180, 180, 20), abs=1e-6)
    assert a["wait_prob"] == pytest.approx(erlang_c(5, 4.0), abs=1e-6)
    assert a["abandon"] < 1e-6


def test_erlang_a_with_patience_equal_to_handle_time_is_an_infinite_server_queue() -> None:
    """When callers give up at the rate agents finish (theta = mu), every caller in the system leaves at rate mu
    whatever they are doing, so the number present is Poisson(a): P(abandon) = E[(N - c)+] / a."""
    c, load, handle = 4, 5.0, 100.0
    tail = sum((n - c) * math.exp(-load) * load**n / math.factorial(n) for n in range(c + 1, 80))
    a = erlang_a(c, load / handle, handle, handle, 10)
    assert a["abandon"] == pytest.approx(tail / load, rel=1e-6)
    assert a["wait_prob"] == pytest.approx(1 - sum(math.exp(-load) * load**n / math.factorial(n) for n in range(c)))


def test_staffing_is_the_fewest_agents_reaching_the_target() -> None:
    rate, handle = 100 / 3600, 180
    n = agents_needed(rate, handle, 20, 0.8)
    assert erlang_c_service_level(n, rate, handle, 20) >= 0.8 > erlang_c_service_level(n - 1, rate, handle, 20)
    assert agents_needed(rate, handle, 20, 0.8, patience=120) <= n  # callers who give up shorten the queue
    assert agents_needed(0.0, handle, 20, 0.8) == 0


def _floor(patience: str, rate: int) -> str:
    return f"""
[campaign]
policy = "progressive"
hours = 16
replications = 10
[agents]
pause_probability = 0
[inbound]
rate_per_hour = {rate}
handle_time = {{ dist = "exponential", mean = 180 }}
wrap_time = 0
{patience}
[groups]
inbound = 5
"""


def _inside(figure: dict[str, float], value: float) -> None:
    assert figure["low"] <= value <= figure["high"], (value, figure)


def test_an_inbound_only_floor_without_patience_matches_erlang_c() -> None:
    scenario = loads(_floor("", 80))  # 4 Erlangs on 5 agents
    results = [run_replication(scenario, i) for i in range(scenario.replications)]
    pooled = pool_inbound(results, 20)
    expected = theory(5, 80, 180, 20)
    _inside(pooled["service_level"], expected["service_level"])
    _inside(pooled["asa"], expected["asa"])
    assert pooled["abandon_rate"]["high"] == 0.0
    # Occupancy is the offered load over the agents: 4 / 5.
    _inside(pooled["occupancy_inbound"], 0.8)
    # The figures are not vacuous: an interval narrow enough to tell a floor of 6 agents from one of 5.
    assert pooled["service_level"]["high"] < theory(6, 80, 180, 20)["service_level"]


def test_an_inbound_only_floor_with_exponential_patience_matches_erlang_a() -> None:
    scenario = loads(_floor('patience = { dist = "exponential", mean = 120 }', 100))  # 5 Erlangs on 5 agents
    results = [run_replication(scenario, i) for i in range(scenario.replications)]
    pooled = pool_inbound(results, 20)
    expected = theory(5, 100, 180, 20, patience=120)
    _inside(pooled["service_level"], expected["service_level"])
    _inside(pooled["abandon_rate"], expected["abandon"])
    assert pooled["abandon_rate"]["low"] > 0.15  # patience matters here: a fifth of the callers give up
    one = inbound_figures(results[0], 20)
    assert one["answered"] + one["abandoned"] == one["callers"] > 1000
