"""Engine behaviour beyond single transitions: the connect limit, abandonment accounting, lost agents, timers,
matching order, dialing control, trunk capacity, per-day statistics, and a random walk proving that every dial
ends in exactly one record whatever a runtime throws at the engine.
"""

from __future__ import annotations

import math
import random

import pytest
from dialer_testkit import dial, leads, make_engine, observe, records

from dialer.engine import events as ev
from dialer.engine.actions import ConnectCall, DialLead, HangUp, PlayAbandonMessage, RecordCall
from dialer.engine.core import Engine, EngineConfig
from dialer.engine.records import Outcome
from dialer.engine.state import AgentState, CallState
from dialer.errors import ConfigError, InvalidTransition
from dialer.leads import Lead
from dialer.pacing import make_policy

# --- the connect limit and abandonment --------------------------------------------------------------------------


def test_connect_within_the_limit_is_not_abandoned() -> None:
    engine, policy, source = make_engine(connect_limit=2.0)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    (cid,) = dial(engine, policy, 0.0)
    assert engine.handle(ev.CallAnsweredByPerson(10.0, cid)) == []
    assert engine.call_state(cid) is CallState.QUEUED
    assert engine.next_timer() == 12.0
    assert engine.handle(ev.AgentReady(11.5, "a")) == [ConnectCall(cid, "a")]
    (rec,) = records(engine.handle(ev.CallEnded(100.0, cid)))
    assert rec.outcome is Outcome.CONNECTED and not rec.abandoned
    assert rec.wait == pytest.approx(1.5)
    assert rec.connected_at == 11.5 and rec.talk_seconds == pytest.approx(88.5)
    assert engine.stats.totals.abandoned == 0 and engine.stats.totals.connects == 1
    assert source.records == [rec]


def test_abandonment_fires_exactly_at_the_limit_before_an_agent_freed_at_the_same_instant() -> None:
    engine, policy, source = make_engine(connect_limit=2.0)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    (cid,) = dial(engine, policy, 0.0)
    engine.handle(ev.CallAnsweredByPerson(10.0, cid))
    # The agent comes free exactly when the person's 2 s are up: too late, the timer fires first.
    actions = engine.handle(ev.AgentReady(12.0, "a"))
    assert actions == [PlayAbandonMessage(cid)]
    assert engine.agent_state("a") is AgentState.READY
    assert engine.stats.totals.abandoned == 1 and engine.stats.abandon_rate == 1.0
    (rec,) = records(engine.handle(ev.CallEnded(20.0, cid)))
    assert rec.outcome is Outcome.ABANDONED and rec.abandoned and not rec.customer_hung_up
    assert rec.message_at == 12.0 and rec.wait == pytest.approx(2.0)
    assert source.records == [rec]


def test_a_late_runtime_still_gets_the_abandonment_at_the_deadline() -> None:
    engine, policy, _ = make_engine(connect_limit=2.0)
    (cid,) = dial(engine, policy, 0.0)
    engine.handle(ev.CallAnsweredByPerson(10.0, cid))
    assert engine.handle(ev.TimeAdvanced(11.9)) == []
    assert engine.handle(ev.TimeAdvanced(30.0)) == [PlayAbandonMessage(cid)]
    (rec,) = records(engine.handle(ev.CallEnded(40.0, cid)))
    assert rec.message_at == 12.0  # stamped when it was owed, not when the runtime woke up


def test_answered_at_earlier_than_now_eats_into_the_limit() -> None:
    engine, policy, _ = make_engine(connect_limit=2.0)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentReady(0.0, "a"))
    c1, c2 = dial(engine, policy, 0.0, n=2)
    # Detection took 1.5 s: 0.5 s of the limit left, an agent is free, so it connects with a 1.5-s wait.
    assert engine.handle(ev.CallAnsweredByPerson(11.5, c1, answered_at=10.0)) == [ConnectCall(c1, "a")]
    # Detection took 2.5 s: the limit is gone before the engine even hears of the person.
    assert engine.handle(ev.CallAnsweredByPerson(12.5, c2, answered_at=10.0)) == [PlayAbandonMessage(c2)]
    assert engine.stats.totals.abandoned == 1 and engine.stats.totals.live_answers == 2


def test_a_free_agent_does_not_rescue_a_person_whose_limit_already_ran_out() -> None:
    """Fail closed: a connect after the limit is still an abandonment in the regulators' count."""
    engine, policy, _ = make_engine(connect_limit=2.0)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentReady(0.0, "a"))
    (cid,) = dial(engine, policy, 0.0)
    assert engine.handle(ev.CallAnsweredByPerson(13.0, cid, answered_at=10.0)) == [PlayAbandonMessage(cid)]
    assert engine.agent_state("a") is AgentState.READY
    assert engine.stats.totals.abandoned == 1


def test_answered_at_outside_dial_and_now_is_rejected() -> None:
    engine, policy, _ = make_engine()
    engine.handle(ev.TimeAdvanced(5.0))
    (cid,) = dial(engine, policy, 5.0)
    before = observe(engine)
    for bad in (4.0, 9.0):
        with pytest.raises(InvalidTransition, match="answered_at"):
            engine.handle(ev.CallAnsweredByPerson(8.0, cid, answered_at=bad))
        assert observe(engine) == before


def test_connect_limit_zero_abandons_at_once_unless_an_agent_is_ready() -> None:
    engine, policy, _ = make_engine(connect_limit=0.0)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    c1, c2 = dial(engine, policy, 0.0, n=2)
    assert engine.handle(ev.CallAnsweredByPerson(5.0, c1)) == [PlayAbandonMessage(c1)]
    engine.handle(ev.AgentReady(6.0, "a"))
    assert engine.handle(ev.CallAnsweredByPerson(7.0, c2)) == [ConnectCall(c2, "a")]
    (rec,) = records(engine.handle(ev.CallEnded(60.0, c2)))
    assert rec.wait == 0.0 and not rec.abandoned
    assert engine.stats.totals.abandoned == 1


def test_customer_hanging_up_while_queued_is_abandoned() -> None:
    engine, policy, source = make_engine(connect_limit=5.0)
    (cid,) = dial(engine, policy, 0.0)
    engine.handle(ev.CallAnsweredByPerson(10.0, cid))
    (rec,) = records(engine.handle(ev.CallEnded(11.0, cid)))
    assert rec.outcome is Outcome.ABANDONED and rec.abandoned and rec.customer_hung_up
    assert rec.wait == pytest.approx(1.0) and rec.message_at is None
    totals = engine.stats.totals
    assert totals.abandoned == 1 and totals.customer_hung_up == 1
    # The dead connect-limit timer neither fires nor keeps the runtime waking up.
    assert engine.handle(ev.TimeAdvanced(20.0)) == []
    assert engine.next_timer() is None
    assert source.records == [rec]


def test_agent_logging_out_mid_call_hangs_up_and_records_everything() -> None:
    engine, policy, source = make_engine()
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentReady(0.0, "a"))
    (cid,) = dial(engine, policy, 0.0)
    engine.handle(ev.CallAnsweredByPerson(10.0, cid))
    actions = engine.handle(ev.AgentLoggedOut(50.0, "a"))
    assert [type(a) for a in actions] == [HangUp, RecordCall]
    assert actions[0] == HangUp(cid, "agent_lost")
    (rec,) = records(actions)
    assert rec.agent_lost and rec.outcome is Outcome.CONNECTED and rec.agent_id == "a"
    assert rec.connected_at == 10.0 and rec.ended_at == 50.0 and not rec.abandoned
    assert engine.agent_state("a") is AgentState.LOGGED_OUT and engine.calls == {}
    assert engine.stats.totals.agent_lost == 1
    assert engine.stats.agent_seconds[AgentState.ON_CALL] == pytest.approx(40.0)
    assert source.records == [rec]
    # The far end's BYE races our hang-up: stale news, not an error, and not a second record.
    assert engine.handle(ev.CallEnded(50.5, cid)) == []
    assert engine.stale_events == 1 and len(source.records) == 1


def test_ring_timeout_hangs_up_and_a_later_answer_is_stale() -> None:
    engine, policy, source = make_engine(ring_timeout=20.0)
    c1, c2 = dial(engine, policy, 0.0, n=2)
    engine.handle(ev.CallRinging(1.0, c1))
    assert engine.next_timer() == 20.0
    actions = engine.handle(ev.TimeAdvanced(20.0))
    assert [a for a in actions if isinstance(a, HangUp)] == [HangUp(c1, "ring_timeout"), HangUp(c2, "ring_timeout")]
    assert [r.outcome for r in records(actions)] == [Outcome.NO_ANSWER, Outcome.NO_ANSWER]
    assert engine.stats.totals.no_answer == 2
    # An answer the network sends after our hang-up: ignored, counted, nothing recorded twice.
    assert engine.handle(ev.CallAnsweredByPerson(20.2, c1)) == []
    assert engine.handle(ev.CallAnsweredByMachine(20.3, c2)) == []
    assert engine.stale_events == 2
    assert engine.stats.totals.live_answers == 0 and len(source.records) == 2
    # A call the engine never hung up itself is still an error.
    with pytest.raises(InvalidTransition, match="unknown call 99"):
        engine.handle(ev.CallEnded(21.0, 99))


def test_an_answer_carried_past_the_ring_timeout_in_one_event_is_stale() -> None:
    engine, policy, _ = make_engine(ring_timeout=20.0)
    (cid,) = dial(engine, policy, 0.0)
    actions = engine.handle(ev.CallAnsweredByPerson(25.0, cid))
    assert HangUp(cid, "ring_timeout") in actions
    assert engine.stale_events == 1 and engine.stats.totals.live_answers == 0


def test_ring_timeout_below_the_regulators_minimum_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        EngineConfig(ring_timeout=10.0)
    assert info.value.key == "ring_timeout"
    with pytest.raises(ConfigError) as info:
        EngineConfig(connect_limit=-1.0)
    assert info.value.key == "connect_limit"


def test_time_going_backwards_is_rejected_and_changes_nothing() -> None:
    engine, policy, _ = make_engine()
    engine.handle(ev.AgentLoggedIn(10.0, "a"))
    (cid,) = dial(engine, policy, 10.0)
    before = observe(engine)
    for event in (ev.TimeAdvanced(9.0), ev.AgentReady(9.99, "a"), ev.CallRinging(5.0, cid)):
        with pytest.raises(InvalidTransition, match="before the engine's time"):
            engine.handle(event)
        assert observe(engine) == before
    engine.handle(ev.AgentReady(10.0, "a"))  # the same instant is fine
    assert engine.agent_state("a") is AgentState.READY


def test_non_finite_times_are_rejected_and_change_nothing() -> None:
    engine, policy, _ = make_engine()
    engine.handle(ev.AgentLoggedIn(10.0, "a"))
    (cid,) = dial(engine, policy, 10.0)
    before = observe(engine)
    for make in (
        lambda: ev.TimeAdvanced(math.nan),
        lambda: ev.TimeAdvanced(math.inf),
        lambda: ev.AgentReady(math.nan, "a"),
        lambda: ev.CallAnsweredByPerson(12.0, cid, answered_at=math.nan),
    ):
        with pytest.raises(ev.InvalidEvent):  # refused when built: a bad value, not stale news
            engine.handle(make())
        assert observe(engine) == before


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"connect_limit": math.nan}, "connect_limit"),
        ({"connect_limit": math.inf}, "connect_limit"),
        ({"ring_timeout": math.nan}, "ring_timeout"),
        ({"ring_timeout": math.inf}, "ring_timeout"),
        ({"max_in_flight": -1}, "max_in_flight"),
        ({"recent_window": 0.0}, "recent_window"),
        ({"day_offset": math.nan}, "day_offset"),
    ],
)
def test_engine_config_fails_closed_on_nonsense(kwargs: dict[str, float], key: str) -> None:
    """A NaN connect limit would make every deadline comparison false: nobody would ever be abandoned."""
    with pytest.raises(ConfigError) as info:
        EngineConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.key == key


def test_machine_answer_hangs_up_and_counts() -> None:
    engine, policy, _ = make_engine()
    (cid,) = dial(engine, policy, 0.0)
    actions = engine.handle(ev.CallAnsweredByMachine(8.0, cid))
    assert actions[0] == HangUp(cid, "machine")
    assert records(actions)[0].outcome is Outcome.MACHINE
    assert engine.stats.totals.machine_answers == 1 and engine.stats.totals.live_answers == 0


@pytest.mark.parametrize("reason", list(ev.FailureReason))
def test_each_failure_reason_maps_to_its_outcome(reason: ev.FailureReason) -> None:
    engine, policy, _ = make_engine()
    (cid,) = dial(engine, policy, 0.0)
    (rec,) = records(engine.handle(ev.CallFailed(3.0, cid, reason)))
    assert rec.outcome.value == reason.value
    assert getattr(engine.stats.totals, reason.value) == 1


# --- matching -----------------------------------------------------------------------------------------------


def test_longest_idle_agent_gets_the_call() -> None:
    engine, policy, _ = make_engine()
    for i, agent in enumerate(("a", "b", "c")):
        engine.handle(ev.AgentLoggedIn(float(i), agent))
    engine.handle(ev.AgentReady(3.0, "b"))
    engine.handle(ev.AgentReady(4.0, "c"))
    engine.handle(ev.AgentReady(5.0, "a"))
    c1, c2, c3 = dial(engine, policy, 6.0, n=3)
    assert engine.handle(ev.CallAnsweredByPerson(10.0, c1)) == [ConnectCall(c1, "b")]
    engine.handle(ev.CallEnded(20.0, c1))
    engine.handle(ev.WrapUpDone(21.0, "b"))  # b is ready again, but now the most recently idle
    assert engine.handle(ev.CallAnsweredByPerson(22.0, c2)) == [ConnectCall(c2, "c")]
    assert engine.handle(ev.CallAnsweredByPerson(23.0, c3)) == [ConnectCall(c3, "a")]
    assert engine.stats.idle_gaps == 3
    assert engine.stats.idle_gap_seconds == pytest.approx((10 - 3) + (22 - 4) + (23 - 5))


def test_longest_waiting_person_gets_the_next_agent() -> None:
    engine, policy, _ = make_engine(connect_limit=10.0)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentLoggedIn(0.0, "b"))
    c1, c2, c3 = dial(engine, policy, 0.0, n=3)
    engine.handle(ev.CallAnsweredByPerson(5.0, c2))
    engine.handle(ev.CallAnsweredByPerson(6.0, c1))
    engine.handle(ev.CallAnsweredByPerson(7.0, c3))
    assert engine.handle(ev.AgentReady(8.0, "b")) == [ConnectCall(c2, "b")]
    assert engine.handle(ev.AgentReady(9.0, "a")) == [ConnectCall(c1, "a")]
    assert engine.call_state(c3) is CallState.QUEUED
    assert engine.next_timer() == 17.0


# --- dialing control ------------------------------------------------------------------------------------------


def test_dialing_stopped_and_resumed() -> None:
    engine = Engine(make_policy("progressive"), leads(10))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentLoggedIn(0.0, "b"))
    assert engine.handle(ev.DialingStopped(1.0)) == []
    assert engine.handle(ev.AgentReady(2.0, "a")) == []
    assert engine.handle(ev.AgentReady(2.0, "b")) == []
    assert engine.in_flight == 0
    actions = engine.handle(ev.DialingResumed(3.0))
    assert [type(a) for a in actions] == [DialLead, DialLead]
    # Calls in flight run to completion after a stop: the person who answers still reaches an agent.
    engine.handle(ev.DialingStopped(4.0))
    first = actions[0]
    assert isinstance(first, DialLead)
    assert engine.handle(ev.CallAnsweredByPerson(5.0, first.call_id)) == [ConnectCall(first.call_id, "a")]


def test_stopped_engine_does_not_ask_to_be_woken_for_pacing() -> None:
    engine = Engine(make_policy("vicidial-adaptive"), leads(10))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    assert engine.next_timer() is not None
    engine.handle(ev.DialingStopped(1.0))
    assert engine.next_timer() is None


def test_max_in_flight_caps_the_trunk() -> None:
    engine = Engine(make_policy("power", ratio=3.0), leads(20), EngineConfig(max_in_flight=4))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentLoggedIn(0.0, "b"))
    engine.handle(ev.AgentReady(0.0, "a"))
    actions = engine.handle(ev.AgentReady(0.0, "b"))  # power wants round(3 x 2) = 6
    dials = [a for a in actions if isinstance(a, DialLead)]
    # Three went out when a was alone (round(3 x 1) = 3); b's arrival would add three more, the trunk takes one.
    assert engine.in_flight == 4 and len(dials) == 1
    assert engine.handle(ev.TimeAdvanced(1.0)) == []
    more = engine.handle(ev.CallFailed(2.0, dials[0].call_id, ev.FailureReason.BUSY))
    assert len([a for a in more if isinstance(a, DialLead)]) == 1 and engine.in_flight == 4


def test_an_exhausted_lead_source_stops_dialing_without_error() -> None:
    engine = Engine(make_policy("power", ratio=3.0), leads(2))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    actions = engine.handle(ev.AgentReady(0.0, "a"))
    assert len([a for a in actions if isinstance(a, DialLead)]) == 2
    assert engine.stats.totals.dials == 2


# --- statistics -----------------------------------------------------------------------------------------------


def test_stats_per_day_attribute_abandonment_to_the_day_the_person_answered() -> None:
    day = 86400.0
    engine, policy, _ = make_engine(connect_limit=2.0, ring_timeout=None, day_offset=3600.0)
    # With a one-hour offset, local midnight is at clock 82800.
    c1, c2 = dial(engine, policy, 80000.0, n=2)
    engine.handle(ev.CallAnsweredByPerson(82799.5, c1))  # day 0, abandoned at 82801.5 (day 1)
    engine.handle(ev.CallAnsweredByPerson(82802.0, c2))  # day 1
    engine.handle(ev.TimeAdvanced(82900.0))
    (c3,) = dial(engine, policy, 82900.0)
    stats = engine.stats
    assert stats.day_of(82799.9) == 0 and stats.day_of(82800.0) == 1
    assert stats.days[0].dials == 2 and stats.days[1].dials == 1
    assert stats.days[0].live_answers == 1 and stats.days[1].live_answers == 1
    assert stats.days[0].abandoned == 1 and stats.days[1].abandoned == 1
    assert engine.snapshot().day_start == pytest.approx(day - 3600.0)
    assert engine.call_state(c3) is CallState.DIALING


def test_recent_window_forgets_old_outcomes() -> None:
    engine, policy, _ = make_engine(recent_window=60.0)
    dial(engine, policy, 0.0, n=3)
    assert engine.stats.recent.dials == 3
    dial(engine, policy, 61.0, n=1)
    assert engine.stats.recent.dials == 1 and engine.stats.totals.dials == 4


def test_agent_seconds_add_up_to_logged_in_time() -> None:
    engine, policy, _ = make_engine()
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentReady(10.0, "a"))
    (cid,) = dial(engine, policy, 10.0)
    engine.handle(ev.CallAnsweredByPerson(25.0, cid))
    engine.handle(ev.CallEnded(145.0, cid))
    engine.handle(ev.WrapUpDone(160.0, "a", pause=True))
    engine.handle(ev.AgentLoggedOut(200.0, "a"))
    secs = engine.stats.agent_seconds
    assert secs[AgentState.PAUSED] == pytest.approx(10.0 + 40.0)
    assert secs[AgentState.READY] == pytest.approx(15.0)
    assert secs[AgentState.ON_CALL] == pytest.approx(120.0)
    assert secs[AgentState.WRAP_UP] == pytest.approx(15.0)
    assert sum(secs.values()) == pytest.approx(200.0)


# --- a random walk: whatever the runtime sends, no call is lost or recorded twice ------------------------------


def _counts_match(engine: Engine) -> None:
    for state in AgentState:
        if state is not AgentState.LOGGED_OUT:
            assert engine.agent_counts[state] == sum(a.state is state for a in engine.agents.values()), state
    for cstate in CallState:
        if cstate is not CallState.ENDED:
            assert engine.call_counts[cstate] == sum(c.state is cstate for c in engine.calls.values()), cstate
    assert engine.call_counts[CallState.ENDED] == 0


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_walk_records_every_dial_exactly_once(seed: int) -> None:
    rng = random.Random(seed)
    source = leads(2000)
    engine = Engine(
        make_policy("power", ratio=2.0),
        source,
        EngineConfig(connect_limit=rng.choice([0.0, 2.0]), ring_timeout=20.0, max_in_flight=10),
    )
    agents = [f"a{i}" for i in range(5)]
    dialed: list[int] = []
    recorded: list[int] = []
    rejected = 0
    t = 0.0

    def feed(event: ev.Event) -> None:
        nonlocal rejected
        before = observe(engine)
        try:
            actions = engine.handle(event)
        except InvalidTransition:
            rejected += 1
            assert observe(engine) == before, event
            return
        dialed.extend(a.call_id for a in actions if isinstance(a, DialLead))
        recorded.extend(a.record.call_id for a in actions if isinstance(a, RecordCall))

    for _ in range(1500):
        t += rng.choice([0.0, rng.expovariate(0.5)])
        if rng.random() < 0.02:
            t -= 1.0  # a runtime bug: time going backwards must be refused
        roll = rng.random()
        if roll < 0.35:
            kind = rng.choice([ev.AgentLoggedIn, ev.AgentReady, ev.AgentPaused, ev.AgentLoggedOut, ev.WrapUpDone])
            feed(kind(t, rng.choice(agents)))
        elif roll < 0.9 and dialed:
            cid = rng.choice(dialed[-15:]) if rng.random() < 0.95 else 10_000
            pick = rng.random()
            if pick < 0.12:
                feed(ev.CallRinging(t, cid))
            elif pick < 0.17:
                feed(ev.CallPlaced(t, cid))
            elif pick < 0.22:
                # Mostly at a call still dialing (else it is illegal), sometimes at any call.
                new = [c for c, call in engine.calls.items() if call.state is CallState.DIALING]
                feed(ev.CallNotPlaced(t, rng.choice(new) if new and rng.random() < 0.8 else cid, "no slot"))
            elif pick < 0.45:
                feed(ev.CallAnsweredByPerson(t, cid, answered_at=t - rng.choice([0.0, 0.0, 1.0, 3.0])))
            elif pick < 0.55:
                feed(ev.CallAnsweredByMachine(t, cid))
            elif pick < 0.67:
                feed(ev.CallFailed(t, cid, rng.choice(list(ev.FailureReason))))
            elif pick < 0.74:
                # Mostly at a call that is connected (else it is rarely legal), sometimes at any call.
                up = [c for c, call in engine.calls.items() if call.state is CallState.CONNECTED]
                feed(ev.CallBridgeFailed(t, rng.choice(up) if up and rng.random() < 0.8 else cid, 486))
            elif pick < 0.78:
                playing = [c for c, call in engine.calls.items() if call.state is CallState.ABANDONING]
                feed(ev.MessagePlayed(t, rng.choice(playing) if playing and rng.random() < 0.8 else cid, t))
            else:
                feed(ev.CallEnded(t, cid))
        else:
            feed(ev.TimeAdvanced(t))
        t = max(t, engine.now)
        assert len(recorded) == len(set(recorded))
        _counts_match(engine)

    assert rejected > 100 and len(dialed) > 100  # the walk really exercised both paths
    feed(ev.DialingStopped(t))
    while engine.calls:
        t += 1.0
        for cid, call in list(engine.calls.items()):
            if call.state in (CallState.DIALING, CallState.RINGING):
                feed(ev.CallFailed(t, cid, ev.FailureReason.NETWORK))
            else:
                feed(ev.CallEnded(t, cid))
    assert sorted(recorded) == sorted(dialed) == sorted(set(dialed))
    assert [r.call_id for r in source.records] == recorded
    totals = engine.stats.totals
    assert totals.dials == len(dialed)
    assert totals.abandoned == sum(r.abandoned for r in source.records)
    assert totals.live_answers == sum(r.live_answer for r in source.records)
    assert totals.connects == sum(r.connected_at is not None for r in source.records)
    assert totals.bridge_failed == sum(r.bridge_failed for r in source.records) > 0
    assert totals.live_answers == totals.connects + totals.abandoned  # a failed bridge moved from one to the other
    unplaced = [r for r in source.records if not r.placed]
    assert unplaced and all(r.outcome.value == "network" and r.answered_at is None for r in unplaced)
    abandoned = [r for r in source.records if r.abandoned]
    # The message flag says what was heard: ordered-and-played, ordered-not-played, or never ordered (hung up).
    assert {r.message_played for r in abandoned} >= {True, False}


def test_capacity_changed_bounds_new_dials_and_rejects_nonsense() -> None:
    engine, policy, _ = make_engine()
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentReady(0.0, "a"))
    engine.handle(ev.CapacityChanged(1.0, 2))
    policy.pending = 5
    dials = [a for a in engine.handle(ev.TimeAdvanced(2.0)) if isinstance(a, DialLead)]
    assert len(dials) == 2  # the trunk carries two
    before = observe(engine)
    with pytest.raises(ev.InvalidEvent):
        engine.handle(ev.CapacityChanged(3.0, -1))
    assert observe(engine) == before
    engine.handle(ev.CapacityChanged(3.0, None))
    policy.pending = 3
    dials = [a for a in engine.handle(ev.TimeAdvanced(4.0)) if isinstance(a, DialLead)]
    assert len(dials) == 3  # limit lifted; calls in flight were not touched
    assert len(engine.calls) == 5


def test_engine_asks_an_empty_lead_source_again_after_lead_retry() -> None:
    """A campaign that starts before its calling window opens must still start when it opens."""

    class OpensAt:
        def __init__(self, at: float) -> None:
            self.at = at
            self.asked: list[float] = []

        def next_lead(self, now: float) -> Lead | None:
            self.asked.append(now)
            return Lead("1", "+15550000001") if now >= self.at else None

        def report(self, record: object) -> None:
            pass

    source = OpensAt(40.0)
    engine = Engine(make_policy("progressive"), source, EngineConfig(lead_retry=15.0))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    assert engine.handle(ev.AgentReady(0.0, "a")) == []
    t = engine.next_timer()
    assert t == 15.0
    while not any(isinstance(a, DialLead) for a in engine.handle(ev.TimeAdvanced(t))):
        t = engine.next_timer()
        assert t is not None and t <= 45.0
    assert engine.now == 45.0 and source.asked[-1] == 45.0
    engine.handle(ev.DialingStopped(46.0))
    assert engine.next_timer() is None  # nothing to wait for once dialing stops


def test_lead_retry_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="lead_retry"):
        EngineConfig(lead_retry=0.0)


class _Broken:
    """A lead source whose store fails: on report, or on next_lead once ``fail_next`` is set."""

    def __init__(self) -> None:
        self.inner = leads(5)
        self.fail_next = False

    def next_lead(self, now: float) -> Lead | None:
        if self.fail_next:
            raise OSError("disk full")
        return self.inner.next_lead(now)

    def report(self, record: object) -> None:
        raise OSError("disk full")


def test_a_failing_lead_source_stops_dialing_and_loses_no_record() -> None:
    from dialer.engine.actions import Alert

    source = _Broken()
    engine = Engine(make_policy("progressive"), source)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    (dial_action,) = engine.handle(ev.AgentReady(0.0, "a"))
    assert isinstance(dial_action, DialLead)
    out = engine.handle(ev.CallFailed(5.0, dial_action.call_id, ev.FailureReason.BUSY))
    kinds = [type(a).__name__ for a in out]
    assert kinds == ["RecordCall", "Alert"]  # the record is still handed to the runtime, and nothing is redialed
    assert isinstance(out[1], Alert) and out[1].kind == "fault" and "disk full" in out[1].message
    assert not engine.dialing and len(engine.faults) == 1
    assert [r.call_id for r in engine.unreported] == [dial_action.call_id]
    # An operator resumes; now the source fails while handing out a lead: fail closed again, no exception.
    source.fail_next = True
    out = engine.handle(ev.DialingResumed(6.0))
    assert [type(a).__name__ for a in out] == ["Alert"] and not engine.dialing and not engine.calls


def test_a_failing_policy_stops_dialing() -> None:
    from dialer.pacing.base import PacingPolicy

    class Exploding(PacingPolicy):
        def decide(self, snap: object) -> int:  # type: ignore[override]
            raise ZeroDivisionError("bad estimate")

    engine = Engine(Exploding(), leads(3))
    out = engine.handle(ev.AgentLoggedIn(0.0, "a"))
    assert [type(a).__name__ for a in out] == ["Alert"] and not engine.dialing
    assert engine.agent_state("a") is AgentState.PAUSED  # the event itself was applied
    assert engine.handle(ev.AgentReady(1.0, "a")) == []  # and nothing is dialed until an operator resumes


def test_policy_hears_how_many_calls_were_placed_and_how_long_wrap_ups_took() -> None:
    from dialer.pacing.base import PacingPolicy

    class Listening(PacingPolicy):
        def __init__(self) -> None:
            self.want = 0
            self.launches: list[tuple[float, int, int]] = []
            self.wraps: list[tuple[float, float, bool]] = []

        def decide(self, snap: object) -> int:  # type: ignore[override]
            n, self.want = self.want, 0
            return n

        def launched(self, now: float, requested: int, placed: int) -> None:
            self.launches.append((now, requested, placed))

        def observe_wrap_up(self, now: float, seconds: float, paused: bool) -> None:
            self.wraps.append((now, seconds, paused))

    policy = Listening()
    engine = Engine(policy, leads(2), EngineConfig(max_in_flight=5))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentLoggedIn(0.0, "b"))
    policy.want = 4
    engine.handle(ev.AgentReady(1.0, "a"))
    assert policy.launches == [(1.0, 4, 2)]  # only two leads exist
    engine.handle(ev.AgentReady(2.0, "b"))
    engine.handle(ev.CallAnsweredByPerson(3.0, 1))
    engine.handle(ev.CallAnsweredByPerson(3.0, 2))
    engine.handle(ev.CallEnded(10.0, 1))
    engine.handle(ev.CallEnded(10.0, 2))
    engine.handle(ev.WrapUpDone(14.0, "a"))
    engine.handle(ev.AgentPaused(17.5, "b"))
    assert policy.wraps == [(14.0, 4.0, False), (17.5, 7.5, True)]
