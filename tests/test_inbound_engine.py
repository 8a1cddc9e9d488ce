"""Inbound calls and agent groups in the engine (issue 16, item 1).

Each test builds a floor by hand with the scripted policy and checks what the engine decides: who answers whom,
in which order, what the pacing sees, what is counted, and that bad or illegal input changes nothing.
"""

from __future__ import annotations

import math
import random

import pytest
from dialer_testkit import dial, make_engine, observe
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.engine import events as ev
from dialer.engine.actions import (
    Action,
    ConnectCall,
    ConnectInbound,
    HangUpInbound,
    PlayAbandonMessage,
    RecordInbound,
)
from dialer.engine.core import Engine, EngineConfig
from dialer.engine.events import AgentGroup
from dialer.engine.records import InboundOutcome, InboundRecord
from dialer.engine.state import AGENT_INBOUND_TRANSITIONS, INBOUND_TRANSITIONS, AgentState, InboundState, Trigger
from dialer.errors import ConfigError, InvalidTransition


def login(engine: Engine, t: float, agent_id: str, group: str = "outbound") -> list[Action]:
    engine.handle(ev.AgentLoggedIn(t, agent_id, group))  # type: ignore[arg-type]
    return engine.handle(ev.AgentReady(t, agent_id))


def connects(actions: list[Action]) -> list[tuple[str, str]]:
    out = []
    for a in actions:
        if isinstance(a, ConnectInbound):
            out.append((a.inbound_id, a.agent_id))
        elif isinstance(a, ConnectCall):
            out.append((str(a.call_id), a.agent_id))
    return out


def inbound_records(actions: list[Action]) -> list[InboundRecord]:
    return [a.record for a in actions if isinstance(a, RecordInbound)]


def test_an_inbound_caller_is_answered_talks_and_is_recorded_once() -> None:
    engine, _, _ = make_engine()
    login(engine, 0.0, "in", "inbound")
    actions = engine.handle(ev.InboundArrived(10.0, "c1"))
    assert connects(actions) == [("c1", "in")]
    assert engine.agent_state("in") is AgentState.ON_CALL
    assert engine.inbound_state("c1") is InboundState.CONNECTED
    (record,) = inbound_records(engine.handle(ev.InboundEnded(100.0, "c1")))
    assert (record.outcome, record.wait, record.answered_at, record.agent_id) == (InboundOutcome.ANSWERED, 0, 10, "in")
    assert (record.group, record.talk_seconds) == ("inbound", 90.0)
    assert engine.agent_state("in") is AgentState.WRAP_UP
    engine.handle(ev.WrapUpDone(110.0, "in"))
    s = engine.stats.inbound
    assert (s.arrived, s.answered, s.abandoned, s.service_level, s.average_speed_of_answer) == (1, 1, 0, 1.0, 0.0)
    assert s.handle_time == pytest.approx(100.0)  # 90 s talk + 10 s wrap-up
    assert engine.inbound == {}


def test_the_queue_is_longest_waiting_first_and_the_figures_follow() -> None:
    engine, _, _ = make_engine(service_level_seconds=20.0)
    login(engine, 0.0, "in", "inbound")
    engine.handle(ev.InboundArrived(1.0, "a"))  # answered at once
    assert engine.handle(ev.InboundArrived(2.0, "b")) == []
    assert engine.handle(ev.InboundArrived(3.0, "c")) == []
    assert engine.snapshot().inbound_queued == 2
    assert list(engine.snapshot().inbound_waits()) == [1.0, 0.0]
    (gone,) = inbound_records(engine.handle(ev.InboundAbandoned(40.0, "b")))
    assert (gone.outcome, gone.wait, gone.agent_id, gone.answered_at) == (InboundOutcome.ABANDONED, 38.0, None, None)
    engine.handle(ev.InboundEnded(60.0, "a"))
    assert connects(engine.handle(ev.WrapUpDone(61.0, "in"))) == [("c", "in")]  # waited 58 s: outside T
    s = engine.stats.inbound
    assert (s.arrived, s.answered, s.answered_within, s.abandoned) == (3, 2, 1, 1)
    assert s.service_level == pytest.approx(1 / 3)  # abandoned callers count against it
    assert s.average_speed_of_answer == pytest.approx(29.0)  # (0 + 58) / 2
    assert s.abandon_rate == pytest.approx(1 / 3)


def test_groups_keep_outbound_people_and_inbound_callers_apart() -> None:
    engine, policy, _ = make_engine()
    login(engine, 0.0, "in", "inbound")
    login(engine, 0.0, "out", "outbound")
    engine.handle(ev.AgentPaused(0.0, "out"))
    (cid,) = dial(engine, policy, 1.0)
    # The only ready agent takes inbound calls only: the person waits, then is abandoned at the connect limit.
    assert engine.handle(ev.CallAnsweredByPerson(5.0, cid)) == []
    assert any(isinstance(a, PlayAbandonMessage) for a in engine.handle(ev.TimeAdvanced(7.5)))
    engine.handle(ev.AgentLoggedOut(8.0, "in"))
    engine.handle(ev.AgentReady(8.0, "out"))
    # And an inbound caller never goes to an outbound agent: they wait.
    assert engine.handle(ev.InboundArrived(9.0, "c")) == []
    assert engine.snapshot().ready == 1 and engine.snapshot().inbound_queued == 1


def test_specialists_are_used_before_blended_agents() -> None:
    engine, policy, _ = make_engine()
    login(engine, 0.0, "blend", "blended")  # idle the longest
    login(engine, 1.0, "out", "outbound")
    login(engine, 2.0, "in", "inbound")
    (cid,) = dial(engine, policy, 3.0)
    assert connects(engine.handle(ev.CallAnsweredByPerson(5.0, cid))) == [(str(cid), "out")]
    assert connects(engine.handle(ev.InboundArrived(6.0, "c1"))) == [("c1", "in")]
    assert connects(engine.handle(ev.InboundArrived(7.0, "c2"))) == [("c2", "blend")]


def _both_waiting(inbound_first: bool) -> tuple[Engine, int, list[Action]]:
    """One blended agent on an inbound call; an outbound person and an inbound caller both waiting; it frees."""
    engine, policy, _ = make_engine(connect_limit=2.0, inbound_first=inbound_first)
    login(engine, 0.0, "b", "blended")
    engine.handle(ev.InboundArrived(1.0, "first"))
    engine.handle(ev.InboundArrived(2.0, "waiting"))
    (cid,) = dial(engine, policy, 3.0)
    engine.handle(ev.InboundEnded(10.0, "first"))
    engine.handle(ev.CallAnsweredByPerson(10.5, cid))
    return engine, cid, engine.handle(ev.WrapUpDone(11.0, "b"))


def test_a_freed_blended_agent_takes_the_outbound_person_before_the_inbound_caller() -> None:
    engine, cid, actions = _both_waiting(inbound_first=False)
    assert connects(actions) == [(str(cid), "b")]
    assert engine.inbound_state("waiting") is InboundState.QUEUED
    assert engine.stats.totals.abandoned == 0


def test_inbound_first_reverses_the_priority_and_the_outbound_person_is_abandoned() -> None:
    engine, _, actions = _both_waiting(inbound_first=True)
    assert connects(actions) == [("waiting", "b")]
    engine.handle(ev.TimeAdvanced(13.0))  # the person's 2 s ran out
    assert engine.stats.totals.abandoned == 1


def test_the_pacing_sees_only_agents_who_take_outbound_calls_and_are_not_on_inbound_ones() -> None:
    engine, _, _ = make_engine()
    login(engine, 0.0, "in", "inbound")
    login(engine, 0.0, "b", "blended")
    login(engine, 0.0, "o", "outbound")
    snap = engine.snapshot()
    assert (snap.ready, snap.on_call, snap.logged_in) == (2, 0, 2)
    assert dict(snap.group("inbound"))[AgentState.READY] == 1
    engine.handle(ev.InboundArrived(1.0, "c1"))  # the inbound agent
    engine.handle(ev.InboundArrived(2.0, "c2"))  # the blended one: gone from the pacing's view while talking
    snap = engine.snapshot()
    assert (snap.ready, snap.on_call, snap.wrap_up, snap.inbound_connected) == (1, 0, 0, 2)
    assert engine.busy_bins[AgentState.ON_CALL] == {}
    engine.handle(ev.InboundEnded(50.0, "c2"))  # back in view for wrap-up
    snap = engine.snapshot()
    assert (snap.ready, snap.on_call, snap.wrap_up) == (1, 0, 1)
    assert sum(engine.busy_bins[AgentState.WRAP_UP].values()) == 1
    assert engine.agent_counts[AgentState.ON_CALL] == 1 and engine.agent_counts[AgentState.WRAP_UP] == 1


def test_a_failed_inbound_bridge_puts_the_caller_back_in_their_place_and_pauses_the_agent() -> None:
    engine, _, _ = make_engine()
    login(engine, 0.0, "x", "inbound")
    login(engine, 0.0, "y", "inbound")
    engine.handle(ev.InboundArrived(1.0, "early"))  # to x
    engine.handle(ev.InboundArrived(2.0, "mid"))  # to y
    engine.handle(ev.InboundArrived(3.0, "late"))  # waits
    assert engine.handle(ev.InboundBridgeFailed(4.0, "mid", 486)) == []  # nobody free: back in the queue, first
    assert engine.agent_state("y") is AgentState.PAUSED
    assert list(engine._inbound_queue) == ["mid", "late"]
    assert engine.stats.inbound.answered == 1
    engine.handle(ev.InboundEnded(30.0, "early"))
    assert connects(engine.handle(ev.WrapUpDone(31.0, "x"))) == [("mid", "x")]
    (record,) = inbound_records(engine.handle(ev.InboundEnded(90.0, "mid")))
    assert (record.wait, record.bridge_failures, record.agent_id) == (29.0, 1, "x")


def test_a_caller_who_hangs_up_as_they_are_connected_is_abandoned_and_the_agent_is_ready_again() -> None:
    engine, _, _ = make_engine()
    login(engine, 0.0, "x", "inbound")
    engine.handle(ev.InboundArrived(1.0, "c"))
    (record,) = inbound_records(engine.handle(ev.InboundAbandoned(1.2, "c")))
    assert record.outcome is InboundOutcome.ABANDONED and record.answered_at is None
    assert engine.agent_state("x") is AgentState.READY
    s = engine.stats.inbound
    assert (s.answered, s.abandoned, s.wait_seconds) == (0, 1, 0.0)


def test_an_agent_lost_mid_inbound_call_hangs_it_up_once_and_late_news_is_stale() -> None:
    engine, _, _ = make_engine()
    login(engine, 0.0, "x", "blended")
    engine.handle(ev.InboundArrived(1.0, "c"))
    actions = engine.handle(ev.AgentLoggedOut(20.0, "x"))
    assert [type(a) for a in actions] == [HangUpInbound, RecordInbound]
    (record,) = inbound_records(actions)
    assert record.agent_lost and record.outcome is InboundOutcome.ANSWERED
    assert engine.handle(ev.InboundEnded(21.0, "c")) == []
    assert engine.stale_events == 1
    assert engine.pool_counts[AgentState.ON_CALL] == 0 and engine.agent_counts[AgentState.ON_CALL] == 0


@pytest.mark.parametrize(
    "event",
    [
        ev.InboundEnded(5.0, "c"),  # still queued
        ev.InboundBridgeFailed(5.0, "c"),
        ev.InboundArrived(5.0, "c"),  # already in the engine
        ev.InboundAbandoned(5.0, "nobody"),
        ev.InboundEnded(5.0, "nobody"),
    ],
)
def test_illegal_inbound_events_raise_and_change_nothing(event: ev.Event) -> None:
    engine, _, _ = make_engine()
    login(engine, 0.0, "o", "outbound")
    engine.handle(ev.InboundArrived(1.0, "c"))
    before = observe(engine), dict(engine.inbound_counts), list(engine._inbound_queue)
    with pytest.raises(InvalidTransition):
        engine.handle(event)
    assert (observe(engine), dict(engine.inbound_counts), list(engine._inbound_queue)) == before


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ev.InboundArrived(1.0, ""), "inbound_id"),
        (lambda: ev.InboundArrived(1.0, 7), "inbound_id"),  # type: ignore[arg-type]
        (lambda: ev.InboundEnded(math.nan, "c"), "t"),
        (lambda: ev.InboundBridgeFailed(1.0, "c", 1000), "status"),
        (lambda: ev.AgentLoggedIn(1.0, "a", "supervisor"), "group"),  # type: ignore[arg-type]
        (lambda: ev.AgentLoggedIn(1.0, "a", None), "group"),  # type: ignore[arg-type]
    ],
)
def test_bad_inbound_values_are_refused_when_built(build: object, field: str) -> None:
    with pytest.raises(ev.InvalidEvent) as info:
        build()  # type: ignore[operator]
    assert info.value.field == field


def test_a_group_given_as_a_string_is_carried_as_the_enum_and_config_is_checked() -> None:
    assert ev.AgentLoggedIn(0.0, "a", "blended").group is AgentGroup.BLENDED  # type: ignore[arg-type]
    assert ev.AgentLoggedIn(0.0, "a").group is AgentGroup.OUTBOUND
    with pytest.raises(ConfigError):
        EngineConfig(inbound_first=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        EngineConfig(service_level_seconds=math.nan)


def test_every_inbound_table_entry_is_reachable_and_lands_where_the_table_says() -> None:
    """Walk INBOUND_TRANSITIONS and AGENT_INBOUND_TRANSITIONS: each legal move, from its state, by its stimulus."""
    seen = set()
    for state, row in INBOUND_TRANSITIONS.items():
        for key, target in row.items():
            engine, _, _ = make_engine()
            login(engine, 0.0, "x", "inbound")
            if state is InboundState.QUEUED:
                engine.handle(ev.AgentPaused(0.0, "x"))
            engine.handle(ev.InboundArrived(1.0, "c"))
            assert engine.inbound_state("c") is state
            if key is Trigger.CONNECT:
                engine.handle(ev.AgentReady(2.0, "x"))
            elif key is Trigger.AGENT_LOST:
                engine.handle(ev.AgentLoggedOut(2.0, "x"))
            else:
                engine.handle(key(2.0, "c"))  # type: ignore[operator, call-arg]
            assert engine.inbound_state("c") is target, (state, key)
            if state is InboundState.CONNECTED and key in AGENT_INBOUND_TRANSITIONS[AgentState.ON_CALL]:
                assert engine.agent_state("x") is AGENT_INBOUND_TRANSITIONS[AgentState.ON_CALL][key]
                seen.add(key)
    assert seen == set(AGENT_INBOUND_TRANSITIONS[AgentState.ON_CALL])


def test_occupancy_is_kept_per_group() -> None:
    engine, _, _ = make_engine()
    login(engine, 0.0, "x", "inbound")
    login(engine, 0.0, "o", "outbound")
    engine.handle(ev.InboundArrived(10.0, "c"))
    engine.handle(ev.InboundEnded(70.0, "c"))
    engine.handle(ev.WrapUpDone(80.0, "x"))
    engine.handle(ev.AgentLoggedOut(100.0, "x"))
    engine.handle(ev.AgentLoggedOut(100.0, "o"))
    assert engine.stats.occupancy("inbound") == pytest.approx(0.7)
    assert engine.stats.occupancy("outbound") == 0.0
    assert engine.stats.occupancy() == pytest.approx(0.35)
    assert math.isnan(engine.stats.occupancy("blended"))


OPS = ("arrive", "abandon", "end", "fail", "wrap", "logout", "login")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 7)), max_size=80), st.booleans())
def test_every_inbound_call_gets_exactly_one_record_and_the_counts_add_up(
    ops: list[tuple[str, int]], inbound_first: bool
) -> None:
    """Random floors of blended and inbound agents: whatever happens, one record per caller, counters consistent."""
    engine, _, _ = make_engine(inbound_first=inbound_first)
    rng = random.Random(len(ops))
    t = 0.0
    records: list[InboundRecord] = []
    arrived: list[str] = []
    for op, k in ops:
        t += rng.random() * 5
        agent = f"a{k % 4}"
        if op == "arrive":
            event: ev.Event = ev.InboundArrived(t, f"c{len(arrived)}")
            arrived.append(f"c{len(arrived)}")
        elif op in ("abandon", "end", "fail"):
            live = [i for i in engine.inbound]
            if not live:
                continue
            target = live[k % len(live)]
            kind = {"abandon": ev.InboundAbandoned, "end": ev.InboundEnded, "fail": ev.InboundBridgeFailed}[op]
            event = kind(t, target)
        elif op == "wrap":
            event = (
                ev.WrapUpDone(t, agent) if engine.agent_state(agent) is AgentState.WRAP_UP else ev.AgentReady(t, agent)
            )
        elif op == "logout":
            event = ev.AgentLoggedOut(t, agent)
        else:
            event = ev.AgentLoggedIn(t, agent, "blended" if k % 2 else "inbound")  # type: ignore[arg-type]
        try:
            records += inbound_records(engine.handle(event))
        except InvalidTransition:
            continue
        # Invariants after every event.
        s = engine.stats.inbound
        assert s.arrived == len(arrived)
        assert s.answered + s.abandoned == len(records) + engine.inbound_counts[InboundState.CONNECTED]
        assert engine.inbound_counts[InboundState.QUEUED] == len(engine._inbound_queue)
        on_inbound = sum(1 for a in engine.agents.values() if a.inbound_id is not None)
        assert on_inbound == engine.inbound_counts[InboundState.CONNECTED]
        assert all(v >= 0 for v in engine.pool_counts.values())
        ready_free = any(engine._ready_by[g] for g in (AgentGroup.INBOUND, AgentGroup.BLENDED))
        assert not (ready_free and engine._inbound_queue), "a caller waits while an agent who could take them idles"
    for inbound_id in list(engine.inbound):  # hang everyone up: each still gets one record
        state = engine.inbound_state(inbound_id)
        kind = ev.InboundAbandoned if state is InboundState.QUEUED else ev.InboundEnded
        t += 1
        records += inbound_records(engine.handle(kind(t, inbound_id)))
    assert sorted(r.inbound_id for r in records) == sorted(arrived)
    s = engine.stats.inbound
    assert s.answered + s.abandoned == s.arrived


def test_docs_list_every_inbound_transition_in_table_order() -> None:
    from dialer_testkit import doc_table, table_rows

    assert doc_table("| agent state (inbound call) | on | goes to |") == table_rows(AGENT_INBOUND_TRANSITIONS)
    assert doc_table("| inbound call state | on | goes to |") == table_rows(INBOUND_TRANSITIONS)
