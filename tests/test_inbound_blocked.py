"""Callers turned away before queueing (``InboundBlocked``): counted by the engine, recorded, nothing else moved.

Why this matters: live, a caller refused busy (no free slot, the queue at ``max_waiting``, stopping) never reached
the engine, so its inbound figures described only the callers who got in; in the simulator, a caller who balked
was an abandonment with no wait. Now both are ``InboundBlocked``: the engine counts them apart (``blocked`` and
the blocking share of callers offered) while the service level, ASA and abandonment keep their definitions over
the callers who queued, and each gets one record (outcome ``blocked``) for the ledger.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from dialer_testkit import make_engine, observe
from test_inbound_erlang import _floor as erlang_floor

from dialer.engine import events as ev
from dialer.engine.actions import ConnectInbound, RecordInbound
from dialer.engine.core import Engine
from dialer.engine.records import InboundOutcome, InboundRecord
from dialer.engine.state import AgentState, InboundState
from dialer.errors import InvalidTransition
from dialer.live.sip_runtime import blocked_reason
from sim.inbound_metrics import inbound_figures
from sim.runtime import run_replication
from sim.scenario import loads


def forged(cls: type[ev.Event], **fields: Any) -> ev.Event:
    """An event built past its ``__init__`` (as a careless deserialiser might): the engine must check it too."""
    event = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(event, name, value)
    return event


def _floor_state(engine: Engine) -> dict[str, Any]:
    """Everything an InboundBlocked must leave alone: agents, calls, the inbound queue and its ids, timers."""
    return {
        **observe(engine),
        "faults": list(engine.faults),
        "unreported": list(engine.unreported),
        "inbound": {i: (c.state, c.arrived_at, c.agent_id) for i, c in engine.inbound.items()},
        "inbound_counts": dict(engine.inbound_counts),
        "queue": list(engine._inbound_queue),
        "arrived": engine.stats.inbound.arrived,
        "answered": engine.stats.inbound.answered,
        "abandoned": engine.stats.inbound.abandoned,
        "arrivals": list(engine.stats.inbound._arrivals),
    }


def _busy_floor() -> Engine:
    """One inbound agent talking to c1, c2 waiting for them."""
    engine, _, _ = make_engine()
    engine.handle(ev.AgentLoggedIn(0.0, "in", "inbound"))  # type: ignore[arg-type]
    engine.handle(ev.AgentReady(0.0, "in"))
    engine.handle(ev.InboundArrived(1.0, "c1"))
    engine.handle(ev.InboundArrived(2.0, "c2"))
    return engine


def test_a_blocked_caller_is_counted_and_recorded_and_nothing_else_moves() -> None:
    engine = _busy_floor()
    before = {k: v for k, v in _floor_state(engine).items() if k != "now"}
    actions = engine.handle(ev.InboundBlocked(3.0, "queue_full", "c3", "sip:+15551230003@carrier"))  # type: ignore[arg-type]
    after = {k: v for k, v in _floor_state(engine).items() if k != "now"}
    assert after == before and engine.now == 3.0
    (record,) = [a.record for a in actions if isinstance(a, RecordInbound)]
    assert record == InboundRecord(
        inbound_id="c3",
        outcome=InboundOutcome.BLOCKED,
        arrived_at=3.0,
        ended_at=3.0,
        wait=0.0,
        reason="queue_full",
        caller="sip:+15551230003@carrier",
    )
    assert not [a for a in actions if isinstance(a, ConnectInbound)]
    s = engine.stats.inbound
    assert (s.blocked, s.blocked_by, s.offered, s.arrived) == (1, {"queue_full": 1}, 3, 2)
    assert s.blocking_share == pytest.approx(1 / 3)


def test_blocked_callers_leave_the_service_level_asa_and_abandonment_as_they_were() -> None:
    """The same floor with and without refusals: every figure defined over callers who queued is unchanged."""
    plain, refused = _busy_floor(), _busy_floor()
    for engine in (plain, refused):
        if engine is refused:
            for i, reason in enumerate(("busy", "stopping", "balked", "busy")):
                engine.handle(ev.InboundBlocked(3.0 + i, reason))  # type: ignore[arg-type]
        engine.handle(ev.InboundEnded(40.0, "c1"))  # c2 is connected to the freed agent at 40 s
        engine.handle(ev.InboundArrived(41.0, "c3"))
        engine.handle(ev.InboundAbandoned(50.0, "c3"))
    a, b = plain.stats.inbound, refused.stats.inbound
    for figure in ("arrived", "answered", "abandoned", "service_level", "average_speed_of_answer", "abandon_rate"):
        assert getattr(a, figure) == getattr(b, figure), figure
    assert (a.blocked, math.isnan(a.blocking_share) or a.blocking_share) == (0, 0.0)
    assert (b.blocked, b.offered, b.blocked_by) == (4, 7, {"busy": 2, "stopping": 1, "balked": 1})
    assert b.blocking_share == pytest.approx(4 / 7)
    assert a.arrival_rate(50.0) == b.arrival_rate(50.0)  # the blended pacing's forecast is of queued callers


def test_a_blocked_id_may_repeat_a_queued_callers_id_and_needs_none() -> None:
    """The id is a label for the record (a duplicate INVITE refused as such repeats the queued caller's)."""
    engine = _busy_floor()
    (record,) = [a.record for a in engine.handle(ev.InboundBlocked(3.0, "busy", "c2")) if isinstance(a, RecordInbound)]  # type: ignore[arg-type]
    assert record.inbound_id == "c2" and engine.inbound_state("c2") is InboundState.QUEUED
    (record,) = [a.record for a in engine.handle(ev.InboundBlocked(4.0, "busy")) if isinstance(a, RecordInbound)]  # type: ignore[arg-type]
    assert (record.inbound_id, record.caller, record.reason) == ("", None, "busy")
    assert engine.stats.inbound.blocked == 2


def test_a_blocked_caller_is_legal_in_every_state_of_the_floor() -> None:
    """No agent or call is touched, so no state forbids it: an empty engine, one stopped, one whose agent is on
    an inbound call."""
    engine, _, _ = make_engine()
    engine.handle(ev.InboundBlocked(1.0, "stopping"))  # type: ignore[arg-type]
    engine.handle(ev.DialingStopped(2.0))
    engine.handle(ev.InboundBlocked(3.0, ev.BlockedReason.STOPPING))
    engine = _busy_floor()
    assert engine.agent_state("in") is AgentState.ON_CALL
    engine.handle(ev.InboundBlocked(5.0, ev.BlockedReason.BUSY))
    assert engine.stats.inbound.blocked == 1 and engine.agent_state("in") is AgentState.ON_CALL


def test_a_reason_given_as_its_string_value_is_carried_as_the_enum() -> None:
    event = ev.InboundBlocked(1.0, "balked", "x")  # type: ignore[arg-type]
    assert event.reason is ev.BlockedReason.BALKED
    assert event == ev.InboundBlocked(1.0, ev.BlockedReason.BALKED, "x")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"t": 1.0, "reason": "bogus"}, "reason"),
        ({"t": 1.0, "reason": None}, "reason"),
        ({"t": 1.0, "reason": 3}, "reason"),
        ({"t": 1.0, "reason": "busy", "inbound_id": ""}, "inbound_id"),
        ({"t": 1.0, "reason": "busy", "inbound_id": 7}, "inbound_id"),
        ({"t": 1.0, "reason": "busy", "caller": 15551230003}, "caller"),
        ({"t": math.nan, "reason": "busy"}, "t"),
        ({"t": math.inf, "reason": "busy"}, "t"),
        ({"t": True, "reason": "busy"}, "t"),
    ],
)
def test_bad_fields_are_refused_when_built_and_by_the_engine_unchanged(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ev.InvalidEvent) as info:
        ev.InboundBlocked(**fields)
    assert info.value.field == field and not isinstance(info.value, InvalidTransition)
    engine = _busy_floor()
    before = _floor_state(engine)
    full = {"inbound_id": None, "caller": None, **fields}
    with pytest.raises(ev.InvalidEvent):
        engine.handle(forged(ev.InboundBlocked, **full))  # built past __init__: the engine checks again
    assert _floor_state(engine) == before and engine.stats.inbound.blocked == 0


def test_a_blocked_caller_before_the_engines_time_is_refused_unchanged() -> None:
    engine = _busy_floor()
    before = _floor_state(engine)
    with pytest.raises(InvalidTransition):
        engine.handle(ev.InboundBlocked(1.5, "busy"))  # type: ignore[arg-type]
    assert _floor_state(engine) == before and engine.stats.inbound.blocked == 0


@pytest.mark.parametrize(
    ("why", "reason"),
    [
        ("the dialer is stopping", "stopping"),
        ("stopping", "stopping"),
        ("2 caller(s) already waiting (inbound.max_waiting)", "queue_full"),
        ("no free slot", "busy"),
        ("a Call-ID already in the queue", "busy"),
        ("no answer from the dialer in time", "busy"),
    ],
)
def test_the_live_runtime_maps_the_drivers_words_to_a_reason(why: str, reason: str) -> None:
    assert blocked_reason(why) is ev.BlockedReason(reason)


def test_the_simulators_balks_are_the_engines_blocked_callers() -> None:
    """A balking floor: each balk is an InboundBlocked, so the simulator's count of balks is the engine's count of
    blocked callers, and the per-caller list still shows each balk as a caller who left with no wait."""
    scenario = loads(erlang_floor("balk_at = 2", 110))
    for i in range(3):
        r = run_replication(scenario, i)
        assert r.inbound_balked > 0
        assert r.inbound_blocked == r.inbound_balked
        assert r.inbound_blocked == sum(1 for _, wait, answered in r.inbound if not answered and wait == 0.0)
        figures = inbound_figures(r, 20)
        assert figures["blocked"] == r.inbound_blocked
        assert figures["blocking_share"] == pytest.approx(r.inbound_blocked / len(r.inbound))
    plain = run_replication(loads(erlang_floor("", 100)), 0)
    assert plain.inbound_blocked == plain.inbound_balked == 0 and inbound_figures(plain, 20)["blocked"] == 0


def test_the_simulators_figures_reconcile_with_the_engines_counts() -> None:
    """The simulator's figures count a balk among the callers and the abandoned (as the scenario documents); the
    engine counts it blocked, apart: callers = arrived + blocked and abandoned = engine abandoned + blocked."""
    from sim.runtime import SimulatedCampaign

    campaign = SimulatedCampaign(loads(erlang_floor("balk_at = 2", 110)), 0)
    r = campaign.run()
    s = campaign.engine.stats.inbound
    figures = inbound_figures(r, 20)
    assert figures["callers"] == s.offered == s.arrived + s.blocked
    assert figures["answered"] == s.answered
    assert figures["abandoned"] == s.abandoned + s.blocked
    assert s.blocked == r.inbound_blocked > 0 and s.blocked_by == {"balked": s.blocked}
