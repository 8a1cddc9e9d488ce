"""A connected call whose agent's phone never takes it (``CallBridgeFailed``) is an abandoned call.

Regulators count a live answer that reaches no live agent as abandoned, so the engine must count it, order the
message and write the record exactly as for a connect-limit abandonment, take back the connect it had counted, and
pause the agent whose phone failed. Checked here field by field against a connect-limit abandonment of the same
person, and for the stale and invalid reports a runtime can send.
"""

from __future__ import annotations

import pytest
from dialer_testkit import dial, make_engine, observe, records

from dialer.engine import events as ev
from dialer.engine.actions import ConnectCall, PlayAbandonMessage
from dialer.engine.core import Engine
from dialer.engine.records import CallRecord, Outcome
from dialer.engine.state import AgentState, CallState
from dialer.errors import InvalidTransition


def _connected(t_answer: float = 10.0) -> tuple[Engine, int]:
    """Agent ``a`` ready, one call answered at ``t_answer`` and connected to ``a`` at once."""
    engine, policy, _ = make_engine(connect_limit=2.0)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentReady(0.0, "a"))
    (cid,) = dial(engine, policy, 1.0)
    assert engine.handle(ev.CallAnsweredByPerson(t_answer, cid)) == [ConnectCall(cid, "a")]
    return engine, cid


def test_a_failed_bridge_abandons_the_call_plays_the_message_and_pauses_the_agent() -> None:
    engine, cid = _connected()
    assert engine.stats.totals.connects == 1
    actions = engine.handle(ev.CallBridgeFailed(11.5, cid, 486))
    assert actions == [PlayAbandonMessage(cid)]
    assert engine.call_state(cid) is CallState.ABANDONING
    assert engine.agent_state("a") is AgentState.PAUSED
    assert engine.agents["a"].call_id is None  # unlinked: logging the agent out no longer touches the call
    totals = engine.stats.totals
    assert totals.abandoned == 1 and totals.bridge_failed == 1 and totals.live_answers == 1
    assert totals.connects == 0  # it never reached an agent: the connect is taken back
    assert engine.stats.abandon_rate == 1.0
    assert engine.stats.day(10.0).abandoned == 1 and engine.stats.recent.abandoned == 1
    assert engine.stats.agent_seconds[AgentState.ON_CALL] == pytest.approx(1.5)
    assert engine.busy_bins[AgentState.ON_CALL] == {}  # the histogram a policy reads follows the agent out

    assert engine.handle(ev.AgentLoggedOut(12.0, "a")) == []  # not the call's agent any more
    (rec,) = records(engine.handle(ev.CallEnded(14.0, cid)))  # the message has played; the call hangs up
    assert rec.outcome is Outcome.ABANDONED and rec.abandoned and rec.bridge_failed and rec.live_answer
    assert rec.agent_id == "a" and rec.connected_at is None and rec.talk_seconds == 0.0
    assert rec.message_at == 11.5 and rec.wait == pytest.approx(1.5)
    assert not rec.customer_hung_up and not rec.agent_lost
    assert engine.leads.records == [rec]  # type: ignore[attr-defined]
    assert engine.policy.observed == [rec]  # type: ignore[attr-defined]
    assert engine.calls == {} and engine.stats.totals.agent_lost == 0


def _abandoned_by(kind: str) -> tuple[Engine, CallRecord]:
    """The same person, answered at 10 and given the message at 12, abandoned at the connect limit or after a
    failed bridge."""
    engine, policy, _ = make_engine(connect_limit=2.0)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    (cid,) = dial(engine, policy, 1.0)
    if kind == "limit":
        engine.handle(ev.CallAnsweredByPerson(10.0, cid))
        assert engine.handle(ev.TimeAdvanced(12.0)) == [PlayAbandonMessage(cid)]
    else:
        engine.handle(ev.AgentReady(5.0, "a"))
        assert engine.handle(ev.CallAnsweredByPerson(10.0, cid)) == [ConnectCall(cid, "a")]
        assert engine.handle(ev.CallBridgeFailed(12.0, cid)) == [PlayAbandonMessage(cid)]
    (rec,) = records(engine.handle(ev.CallEnded(20.0, cid)))
    return engine, rec


def test_a_failed_bridge_is_counted_exactly_like_a_connect_limit_abandonment() -> None:
    by_limit, limit_rec = _abandoned_by("limit")
    by_bridge, bridge_rec = _abandoned_by("bridge")
    for engine in (by_limit, by_bridge):
        assert engine.stats.totals.abandoned == 1 and engine.stats.totals.live_answers == 1
        assert engine.stats.totals.connects == 0
    assert repr(by_bridge.stats.days) == repr(by_limit.stats.days)
    recent = [(e.stats.recent.abandoned, e.stats.minute.abandoned, e.stats.recent.live_answers) for e in
              (by_limit, by_bridge)]  # fmt: skip
    assert recent[0] == recent[1] == (1, 1, 1)
    assert by_bridge.stats.abandon_rate == by_limit.stats.abandon_rate == 1.0
    assert by_limit.stats.totals.bridge_failed == 0 and by_bridge.stats.totals.bridge_failed == 1
    # The records differ only where the failed bridge is told apart: the flag and the agent who failed.
    assert bridge_rec.bridge_failed and not limit_rec.bridge_failed
    assert bridge_rec.agent_id == "a" and limit_rec.agent_id is None
    same = ("outcome", "abandoned", "answered_at", "connected_at", "message_at", "wait", "ended_at", "dialed_at")
    assert {f: getattr(bridge_rec, f) for f in same} == {f: getattr(limit_rec, f) for f in same}


def test_the_paused_agent_is_not_offered_the_next_person_until_made_ready() -> None:
    engine, policy, _ = make_engine(connect_limit=5.0)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentReady(0.0, "a"))
    c1, c2 = dial(engine, policy, 1.0, n=2)
    assert engine.handle(ev.CallAnsweredByPerson(10.0, c1)) == [ConnectCall(c1, "a")]
    engine.handle(ev.CallBridgeFailed(10.5, c1, 480))
    assert engine.handle(ev.CallAnsweredByPerson(11.0, c2)) == []  # waits: the only agent is paused
    assert engine.call_state(c2) is CallState.QUEUED
    assert engine.handle(ev.AgentReady(12.0, "a")) == [ConnectCall(c2, "a")]  # the backend made them ready
    (rec,) = records(engine.handle(ev.CallEnded(40.0, c2)))
    assert rec.outcome is Outcome.CONNECTED and not rec.bridge_failed and rec.wait == pytest.approx(1.0)
    assert engine.stats.totals.connects == 1 and engine.stats.totals.abandoned == 1


def test_a_bridge_failure_reported_after_the_engine_hung_up_is_stale() -> None:
    """The agent logged out mid-call (the engine hung up), then the worker's report of the failed leg arrives."""
    engine, cid = _connected()
    engine.handle(ev.AgentLoggedOut(11.0, "a"))
    before = engine.stats.totals.abandoned
    assert engine.handle(ev.CallBridgeFailed(11.2, cid, 487)) == []
    assert engine.stale_events == 1 and engine.stats.totals.abandoned == before == 0


@pytest.mark.parametrize("state", ["queued", "abandoning", "twice"])
def test_a_bridge_failure_outside_a_connected_call_is_refused_and_changes_nothing(state: str) -> None:
    engine, policy, _ = make_engine(connect_limit=2.0)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    (cid,) = dial(engine, policy, 1.0)
    if state == "queued":
        engine.handle(ev.CallAnsweredByPerson(10.0, cid))
    elif state == "abandoning":
        engine.handle(ev.CallAnsweredByPerson(10.0, cid))
        engine.handle(ev.TimeAdvanced(12.0))
    else:
        engine.handle(ev.AgentReady(5.0, "a"))
        engine.handle(ev.CallAnsweredByPerson(10.0, cid))
        engine.handle(ev.CallBridgeFailed(11.0, cid))
    before = observe(engine)
    with pytest.raises(InvalidTransition, match="CallBridgeFailed"):
        engine.handle(ev.CallBridgeFailed(12.5, cid))
    assert observe(engine) == before
    with pytest.raises(InvalidTransition, match="unknown call 99"):
        engine.handle(ev.CallBridgeFailed(12.5, 99))
