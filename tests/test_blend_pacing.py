"""Blended pacing (issue 16, item 2): outbound dialing with the agents the inbound forecast does not need.

Unit tests drive an engine by hand and read how many calls the wrappers let their outbound policy launch; one
simulated floor checks the point of it all: the blended policy holds the inbound service level where plain
predictive pacing lets it slip, and still dials outbound under the abandonment cap.
"""

from __future__ import annotations

import math

import pytest

from dialer import Engine, EngineConfig, Lead, ListLeads
from dialer.engine import events as ev
from dialer.engine.actions import DialLead
from dialer.errors import ConfigError
from dialer.pacing import PacingPolicy, make_policy
from dialer.pacing.blended import Blended, Threshold, agents_needed
from dialer.pacing.predictive import Predictive
from sim.inbound_metrics import pool_inbound
from sim.runtime import ReplicationResult, run_replication
from sim.scenario import loads


def _leads() -> ListLeads:
    return ListLeads(Lead(str(i), f"+1555{i:07d}") for i in range(1, 200))


def _floor(policy: PacingPolicy, groups: dict[str, int]) -> tuple[Engine, int]:
    """Agents logged in and ready by group; returns the engine and how many calls it dialed."""
    engine = Engine(policy, _leads(), EngineConfig(ring_timeout=30.0))
    dialed = 0
    for group, n in groups.items():
        for i in range(n):
            engine.handle(ev.AgentLoggedIn(0.0, f"{group}-{i}", group))  # type: ignore[arg-type]
            dialed += sum(isinstance(a, DialLead) for a in engine.handle(ev.AgentReady(0.0, f"{group}-{i}")))
    return engine, dialed


def test_threshold_keeps_k_blended_agents_idle_and_dials_for_the_rest() -> None:
    _, dialed = _floor(make_policy("threshold", k=2), {"blended": 5})
    assert dialed == 3
    _, dialed = _floor(make_policy("threshold", k=0), {"blended": 5})
    assert dialed == 5  # k = 0 is progressive


def test_outbound_only_agents_are_dialed_for_whatever_the_reserve() -> None:
    _, dialed = _floor(make_policy("threshold", k=9), {"outbound": 2, "blended": 3})
    assert dialed == 2


def test_blended_keeps_back_the_spare_agents_of_an_erlang_staffing() -> None:
    rate, handle = 240.0, 180.0  # 12 Erlangs
    needed = agents_needed(rate / 3600, handle, 20, 0.8)
    spare = math.ceil(needed - 12)
    policy = make_policy(
        "blended", outbound="progressive", arrival_rate_per_hour=rate, handle_time=handle, service_level_target=0.8
    )
    _, dialed = _floor(policy, {"blended": 20})
    assert isinstance(policy, Blended) and policy.needed == needed and spare >= 2
    assert dialed == 20 - spare
    # A stricter target keeps more agents back.
    strict = make_policy(
        "blended", outbound="progressive", arrival_rate_per_hour=rate, handle_time=handle, service_level_target=0.95
    )
    _, dialed_strict = _floor(strict, {"blended": 20})
    assert dialed_strict < dialed


def test_inbound_only_agents_carry_the_load_first() -> None:
    policy = make_policy("blended", outbound="progressive", arrival_rate_per_hour=60, handle_time=180)  # 3 Erlangs
    _, dialed = _floor(policy, {"inbound": 10, "blended": 4})
    assert dialed == 4  # ten inbound agents are more than the staffing needs: nothing held back


def test_nothing_is_dialed_for_blended_agents_while_an_inbound_caller_waits() -> None:
    engine, _ = _floor(make_policy("threshold", k=0), {"blended": 1})
    # The one agent is on the outbound call dialed at login; a caller rings in and waits.
    (call_id,) = list(engine.calls)
    engine.handle(ev.CallAnsweredByPerson(5.0, call_id))
    assert engine.handle(ev.InboundArrived(6.0, "c")) == []
    engine.handle(ev.CallEnded(60.0, call_id))
    actions = engine.handle(ev.WrapUpDone(70.0, "blended-0"))  # the caller gets the agent; no dial
    assert [type(a).__name__ for a in actions] == ["ConnectInbound"]


def test_observed_load_drives_the_staffing() -> None:
    policy = make_policy("blended", outbound="progressive")  # nothing configured: observe
    engine, dialed = _floor(policy, {"blended": 10})
    assert dialed == 10 and isinstance(policy, Blended) and policy.needed == 0  # no caller seen yet
    for i in range(30):  # a caller every 20 s: 180/h, each handled in 60 s (3 Erlangs)
        t = 100.0 + 20 * i
        engine.handle(ev.InboundArrived(t, f"c{i}"))
    rate, _ = policy.forecast(engine.snapshot())
    assert rate == pytest.approx(30 / (20 * 29), rel=1e-6)


def test_campaign_knobs_reach_the_outbound_policy_and_bad_parameters_are_refused() -> None:
    policy = make_policy("blended", target_abandon_rate=0.02, outbound_params={"safety": 0.1})
    assert isinstance(policy, Blended) and isinstance(policy.outbound, Predictive)
    assert policy.outbound.target == 0.02
    threshold = make_policy("threshold", k=1, ratio=2.0, outbound="power")
    assert isinstance(threshold, Threshold) and threshold.outbound.ratio == 2.0  # type: ignore[attr-defined]
    for bad in (
        {"outbound": "blended"},
        {"outbound": "nope"},
        {"service_level_target": 1.5},
        {"patience": -1},
        {"reserve_rule": "all"},
    ):
        with pytest.raises(ConfigError):
            make_policy("blended", **bad)
    with pytest.raises(ConfigError):
        make_policy("threshold", k=-1)


def _blended_floor(policy: str) -> list[ReplicationResult]:
    scenario = loads(f"""
[campaign]
policy = "{policy}"
hours = 4
replications = 3
seed = 3
[inbound]
rate_per_hour = 240
handle_time = {{ dist = "exponential", mean = 180 }}
patience = {{ dist = "exponential", mean = 120 }}
service_level_target = 0.8
[groups]
blended = 20
""")
    return [run_replication(scenario, i) for i in range(scenario.replications)]


def _outbound(results: list[ReplicationResult]) -> tuple[float, float]:
    """(share of logged-in time talking to outbound people, outbound abandonment) pooled over replications."""
    logged = sum(sum(r.agent_seconds.values()) for r in results)
    talk = sum(r.agent_seconds["on_call"] - r.inbound_talk_seconds for r in results) / logged
    live = sum(r.totals["live_answers"] for r in results)
    return talk, sum(r.totals["abandoned"] for r in results) / live


def test_a_blended_floor_holds_the_inbound_service_level_that_plain_predictive_lets_slip() -> None:
    blended = _blended_floor("blended")
    plain = _blended_floor("predictive")
    sl_blended = pool_inbound(blended, 20)["service_level"]
    sl_plain = pool_inbound(plain, 20)["service_level"]
    assert sl_blended["low"] >= 0.8  # the target, held in every replication's interval
    assert sl_blended["mean"] > sl_plain["mean"] + 0.03
    talk, abandoned = _outbound(blended)
    assert talk > 0.1  # it still dials outbound with a good share of the floor's time
    assert abandoned <= 0.03  # and under the cap
