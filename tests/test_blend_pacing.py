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
from dialer.engine.state import AgentState
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


def _blended_floor(policy: str, pacing: str = "") -> list[ReplicationResult]:
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
[pacing]
{pacing}
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


def test_the_forwarded_campaign_knobs_have_one_home() -> None:
    import inspect

    from dialer.pacing.blended import FORWARDED

    for cls in (Blended, Threshold):
        params = inspect.signature(cls).parameters
        for name, _ in FORWARDED:
            assert params[name].default is None and params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    with pytest.raises(ConfigError) as info:
        make_policy("threshold", k=1, target_abandon=0.02)
    assert info.value.key == "target_abandon"
    # A scenario maps the campaign's knobs onto both by name, and refuses a [pacing] key that is none of them.
    s = loads('[campaign]\npolicy = "threshold"\ntarget_abandon_rate = 0.02\n[pacing]\noutbound = "predictive"\n')
    policy = s.build_policy()
    assert isinstance(policy, Threshold) and isinstance(policy.outbound, Predictive)
    assert policy.outbound.target == 0.02
    with pytest.raises(ConfigError) as info:
        loads('[campaign]\npolicy = "blended"\n[pacing]\nshift_hour = 4\n')
    assert info.value.key == "pacing.shift_hour" and "shift_hours" in info.value.message


def _busy_floor(credit: float) -> tuple[Blended, Engine]:
    """20 blended agents, a fixed 12-Erlang inbound forecast: 10 outbound calls answered at 5 s (10 agents talk),
    3 of them ended at 60 s (those agents wrap up)."""
    policy = make_policy(
        "blended",
        outbound="progressive",
        arrival_rate_per_hour=240,
        handle_time=180,
        freeing_credit=credit,
    )
    assert isinstance(policy, Blended)
    engine, _ = _floor(policy, {"blended": 20})
    calls = sorted(engine.calls)[:10]
    for call_id in calls:
        engine.handle(ev.CallAnsweredByPerson(5.0, call_id))
    for call_id in calls[:3]:
        engine.handle(ev.CallEnded(60.0, call_id))
    return policy, engine


def test_agents_about_to_free_from_outbound_stand_in_for_part_of_the_reserve() -> None:
    plain, engine0 = _busy_floor(0.0)
    counted, engine1 = _busy_floor(1.0)
    snap0, snap1 = engine0.snapshot(), engine1.snapshot()
    blended = snap1.group("blended")
    talking, wrapping = blended[AgentState.ON_CALL], blended[AgentState.WRAP_UP]
    assert (talking, wrapping) == (7, 3)
    talk = (120.0 + 3 * 55.0) / 4  # the prior (120 s, worth one call) and the three 55-s calls observed
    expected = 7 * (1 - math.exp(-(20 - 15) / talk)) + 3 * (1 - math.exp(-20 / 15))
    assert counted.expected_freeing(snap1) == pytest.approx(expected)
    r0, r1 = plain.reserve(snap0), counted.reserve(snap1)
    assert plain.freeing == 0.0 and counted.freeing == pytest.approx(expected)
    assert r0 == max(0, math.ceil(plain.needed - 12 - 1e-9))
    assert r1 == max(0, math.ceil(counted.needed - 12 - expected - 1e-9))
    assert r1 <= r0 - 2  # three agents in a 15-s wrap-up are nearly two more agents for a caller within 20 s
    for bad in (-0.1, 1.5, "all"):
        with pytest.raises(ConfigError):
            make_policy("blended", freeing_credit=bad)


def test_counting_freeing_agents_on_a_floor_moves_along_the_frontier_under_the_cap() -> None:
    """With the credit, the same target keeps fewer agents back: more outbound talk, a service level a little
    lower, still above the target, and outbound abandonment still under the cap (benchmarks/blend_frontier.py
    --credits measures the frontier itself: no gain at equal service level, docs/blending.md)."""
    plain = _blended_floor("blended")
    counted = _blended_floor("blended", "freeing_credit = 1.0")
    talk_plain, _ = _outbound(plain)
    talk_counted, abandoned = _outbound(counted)
    assert talk_counted > talk_plain
    assert abandoned <= 0.03
    sl = pool_inbound(counted, 20)["service_level"]
    assert sl["low"] >= 0.8
    assert sl["mean"] <= pool_inbound(plain, 20)["service_level"]["mean"] + 0.005
