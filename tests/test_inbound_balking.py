"""Balking (issue 16, item 4): a caller who finds ``balk_at`` callers already waiting hangs up at once.

With every such caller balking and nobody else hanging up, an inbound-only floor of c agents is the M/M/c/K queue
with K = c + balk_at places, and by PASTA the share of callers who balk is that queue's blocking probability p_K:
the simulator's share must hold it within the replications' 95% interval. A balk is an abandoned call with no
wait; a scenario without balking draws exactly as before (its own random stream).
"""

from __future__ import annotations

import math

import pytest
from test_inbound_erlang import _floor as erlang_floor

from dialer.errors import ConfigError
from sim.metrics import mean_interval
from sim.runtime import run_replication
from sim.scenario import loads

AGENTS = 5  # as test_inbound_erlang's floor


def _floor(balk: str, rate: int = 100) -> str:
    """test_inbound_erlang's 5-agent inbound-only floor, its patience line given to balking instead."""
    return erlang_floor(balk, rate)


def mmck_blocking(offered: float, c: int, k: int) -> float:
    """p_K of the M/M/c/K queue: offered load ``offered`` Erlangs, c servers, K places in all."""
    terms = []
    for n in range(k + 1):
        if n <= c:
            terms.append(offered**n / math.factorial(n))
        else:
            terms.append(offered**c / math.factorial(c) * (offered / c) ** (n - c))
    return terms[-1] / sum(terms)


def test_balking_matches_the_mmck_blocking_probability() -> None:
    balk_at = 3
    scenario = loads(_floor(f"balk_at = {balk_at}"))
    shares = []
    for i in range(scenario.replications):
        r = run_replication(scenario, i)
        balked = sum(1 for _, wait, answered in r.inbound if not answered and wait == 0.0)
        shares.append(balked / len(r.inbound))
    theory = mmck_blocking(100 * 180 / 3600, AGENTS, AGENTS + balk_at)
    figure = mean_interval(shares, 0.0, 1.0)
    assert figure.low <= theory <= figure.high, (theory, figure)
    assert 0.05 < theory < 0.3  # a floor where balking matters


def test_without_balking_nobody_leaves_and_the_draws_are_unchanged() -> None:
    plain = run_replication(loads(_floor("")), 0)
    off = run_replication(loads(_floor("balk_at = 0")), 0)
    assert plain.inbound == off.inbound and all(answered for _, _, answered in plain.inbound)
    partly = run_replication(loads(_floor("balk_at = 1\nbalk_probability = 0.5", rate=110)), 0)
    every = run_replication(loads(_floor("balk_at = 1", rate=110)), 0)
    lost = [sum(not a for _, _, a in r.inbound) for r in (partly, every)]
    assert 0 < lost[0] < lost[1]  # half as willing to balk: fewer balk


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("balk_at = -1", "inbound.balk_at"),
        ("balk_at = 1.5", "inbound.balk_at"),
        ("balk_probability = 2", "inbound.balk_probability"),
        ("balk_at = true", "inbound.balk_at"),
    ],
)
def test_bad_balking_is_refused_with_its_key(line: str, key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        loads(_floor(line))
    assert refused.value.key == key
