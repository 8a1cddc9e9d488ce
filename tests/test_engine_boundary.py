"""The engine's boundary (issue 15): every event and configuration value is checked before anything changes.

A bad value is refused with a typed error naming the field and the value, and the engine is left exactly as it
was; a pacing policy that answers something other than a whole number of calls trips the fail-closed ``Alert``
instead of breaking every later ``handle()``. Each defect the issue lists has its test here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dialer_testkit import Scripted, dial, make_engine, observe, records

import dialer
from dialer.engine import events as ev
from dialer.engine.actions import Alert, DialLead, RecordCall
from dialer.engine.core import Engine, EngineConfig
from dialer.engine.records import Outcome
from dialer.engine.snapshot import Snapshot
from dialer.engine.state import AgentState, CallState
from dialer.errors import ConfigError, DialerError, InvalidTransition
from dialer.leads import Lead, ListLeads


def fingerprint(engine: Engine) -> dict[str, Any]:
    """:func:`observe`, plus what a fault or a configuration change would touch."""
    return {**observe(engine), "faults": list(engine.faults), "config": engine.config, "unreported": engine.unreported}


def forged(cls: type[ev.Event], **fields: Any) -> ev.Event:
    """An event built without its ``__init__`` (as a careless deserialiser might): the engine must check it too."""
    event = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(event, name, value)
    return event


# --- defect: CallFailed(reason="bogus") / reason=None moved the call to ended, then raised KeyError ------------


@pytest.mark.parametrize("reason", ["bogus", None, 3, "BUSY", ""])
def test_a_bad_failure_reason_is_refused_and_the_call_still_ends_with_one_record(reason: object) -> None:
    engine, policy, source = make_engine()
    (cid,) = dial(engine, policy, 1.0)
    before = fingerprint(engine)
    with pytest.raises(ev.InvalidEvent) as info:
        engine.handle(ev.CallFailed(2.0, cid, reason))  # type: ignore[arg-type]
    assert (info.value.event, info.value.field, info.value.value) == ("CallFailed", "reason", reason)
    assert fingerprint(engine) == before  # still in flight, still holding its slot, still owed its record
    assert engine.call_state(cid) is CallState.DIALING and engine.in_flight == 1
    (rec,) = records(engine.handle(ev.CallFailed(2.0, cid, ev.FailureReason.BUSY)))
    assert rec.call_id == cid and rec.outcome is Outcome.BUSY
    assert engine.in_flight == 0 and source.records == [rec]


def test_a_failure_reason_given_as_its_string_value_is_coerced() -> None:
    engine, policy, _ = make_engine()
    (cid,) = dial(engine, policy, 1.0)
    event = ev.CallFailed(2.0, cid, "no_answer")  # type: ignore[arg-type]
    assert event.reason is ev.FailureReason.NO_ANSWER
    assert event == ev.CallFailed(2.0, cid, ev.FailureReason.NO_ANSWER)
    (rec,) = records(engine.handle(event))
    assert rec.outcome is Outcome.NO_ANSWER


def test_a_forged_bad_event_is_refused_by_the_engine_before_anything_changes() -> None:
    engine, policy, _ = make_engine()
    (cid,) = dial(engine, policy, 1.0)
    before = fingerprint(engine)
    for event in (
        forged(ev.CallFailed, t=2.0, call_id=cid, reason="bogus"),
        forged(ev.CallFailed, t=2.0, call_id=cid, reason=None),
        forged(ev.CallEnded, t=math.nan, call_id=cid),
        forged(ev.CallRinging, t=2.0, call_id="7"),
        forged(ev.CallRinging, t=2.0),  # call_id never set
    ):
        with pytest.raises(ev.InvalidEvent):
            engine.handle(event)
        assert fingerprint(engine) == before


def test_a_bad_event_is_a_typed_error_never_taken_for_stale_news() -> None:
    """Runtimes drop ``InvalidTransition`` as news overtaken by a timer; a bad value is a bug and must surface."""
    with pytest.raises(ev.InvalidEvent) as info:
        ev.CallFailed(1.0, 1, "bogus")  # type: ignore[arg-type]
    assert isinstance(info.value, DialerError) and isinstance(info.value, ValueError)
    assert not isinstance(info.value, InvalidTransition)
    assert "CallFailed.reason='bogus'" in str(info.value)


def test_something_that_is_not_an_event_is_refused() -> None:
    engine, _, _ = make_engine()
    before = fingerprint(engine)
    for thing in (None, "AgentReady", 3.0, {"t": 1.0}):
        with pytest.raises(ev.InvalidEvent) as info:
            engine.handle(thing)  # type: ignore[arg-type]
        assert info.value.field == "event" and info.value.value is thing
    assert fingerprint(engine) == before


# --- defect: WrapUpDone(pause="no") paused the agent; agent_id=None was accepted --------------------------------


@pytest.mark.parametrize("pause", ["no", "", None, 0, 1, np.bool_(True)])
def test_wrap_up_pause_must_be_a_bool(pause: object) -> None:
    engine, policy, _ = make_engine()
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentReady(0.0, "a"))
    (cid,) = dial(engine, policy, 1.0)
    engine.handle(ev.CallAnsweredByPerson(2.0, cid))
    engine.handle(ev.CallEnded(3.0, cid))
    assert engine.agent_state("a") is AgentState.WRAP_UP
    before = fingerprint(engine)
    with pytest.raises(ev.InvalidEvent) as info:
        engine.handle(ev.WrapUpDone(4.0, "a", pause=pause))  # type: ignore[arg-type]
    assert info.value.field == "pause" and info.value.value is pause
    assert fingerprint(engine) == before
    engine.handle(ev.WrapUpDone(4.0, "a", pause=False))
    assert engine.agent_state("a") is AgentState.READY


@pytest.mark.parametrize("agent_id", [None, "", 7, b"a", ("a",)])
@pytest.mark.parametrize("kind", [ev.AgentLoggedIn, ev.AgentReady, ev.AgentPaused, ev.AgentLoggedOut, ev.WrapUpDone])
def test_agent_id_must_be_a_non_empty_str(kind: type[ev.Event], agent_id: object) -> None:
    engine, _, _ = make_engine()
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    before = fingerprint(engine)
    with pytest.raises(ev.InvalidEvent) as info:
        engine.handle(kind(1.0, agent_id))  # type: ignore[call-arg]
    assert info.value.field == "agent_id" and info.value.value == agent_id
    assert fingerprint(engine) == before
    assert list(engine.agents) == ["a"]


# --- every other field -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ev.TimeAdvanced(math.nan), "t"),
        (lambda: ev.TimeAdvanced(-math.inf), "t"),
        (lambda: ev.TimeAdvanced("1.0"), "t"),
        (lambda: ev.TimeAdvanced(None), "t"),
        (lambda: ev.DialingStopped(True), "t"),
        (lambda: ev.CallRinging(1.0, 1.0), "call_id"),
        (lambda: ev.CallRinging(1.0, True), "call_id"),
        (lambda: ev.CallRinging(1.0, -1), "call_id"),
        (lambda: ev.CallRinging(1.0, None), "call_id"),
        (lambda: ev.CallPlaced(1.0, "1"), "call_id"),
        (lambda: ev.CallEnded(1.0, 2.5), "call_id"),
        (lambda: ev.CallAnsweredByPerson(1.0, 1, answered_at=math.inf), "answered_at"),
        (lambda: ev.CallAnsweredByPerson(1.0, 1, answered_at="0.5"), "answered_at"),
        (lambda: ev.CallAnsweredByPerson(1.0, 1, amd_verdict=1), "amd_verdict"),
        (lambda: ev.CallAnsweredByPerson(1.0, 1, amd_seconds=-0.5), "amd_seconds"),
        (lambda: ev.CallAnsweredByPerson(1.0, 1, amd_seconds=math.nan), "amd_seconds"),
        (lambda: ev.CallAnsweredByPerson(1.0, 1, picked_up_at=math.nan), "picked_up_at"),
        (lambda: ev.CallAnsweredByMachine(1.0, 1, amd_seconds=math.inf), "amd_seconds"),
        (lambda: ev.CallNotPlaced(1.0, 1, None), "why"),
        (lambda: ev.MessagePlayed(1.0, 1, started_at=math.nan), "started_at"),
        (lambda: ev.CallBridgeFailed(1.0, 1, "486"), "status"),
        (lambda: ev.CallBridgeFailed(1.0, 1, 486.0), "status"),
        (lambda: ev.CallBridgeFailed(1.0, 1, -1), "status"),
        (lambda: ev.CapacityChanged(1.0, 1.5), "max_in_flight"),
        (lambda: ev.CapacityChanged(1.0, True), "max_in_flight"),
        (lambda: ev.CapacityChanged(1.0, -1), "max_in_flight"),
        (lambda: ev.CapacityChanged(1.0, "3"), "max_in_flight"),
    ],
)
def test_every_bad_field_is_refused_with_its_name_and_value(make: Any, field: str) -> None:
    with pytest.raises(ev.InvalidEvent) as info:
        make()
    assert info.value.field == field


def test_numbers_of_other_numeric_types_are_accepted() -> None:
    """Times from numpy or plain ints are real numbers; numpy's integers are integers."""
    engine, policy, _ = make_engine()
    engine.handle(ev.TimeAdvanced(np.float64(1.0)))
    engine.handle(ev.CapacityChanged(2, np.int64(3)))
    (cid,) = dial(engine, policy, 3.0)
    ringing = ev.CallRinging(4.0, np.int64(cid))
    assert type(ringing.call_id) is int  # carried as a plain int
    engine.handle(ringing)
    assert engine.call_state(cid) is CallState.RINGING
    assert type(engine.config.max_in_flight) is int


# --- defect: EngineConfig(max_in_flight=1.5) was accepted and crashed later --------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"max_in_flight": 1.5}, "max_in_flight"),
        ({"max_in_flight": 2.0}, "max_in_flight"),
        ({"max_in_flight": True}, "max_in_flight"),
        ({"max_in_flight": "3"}, "max_in_flight"),
        ({"first_call_id": 1.0}, "first_call_id"),
        ({"first_call_id": True}, "first_call_id"),
        ({"connect_limit": "2"}, "connect_limit"),
        ({"connect_limit": True}, "connect_limit"),
        ({"connect_limit": None}, "connect_limit"),
        ({"ring_timeout": "20"}, "ring_timeout"),
        ({"ring_slack": None}, "ring_slack"),
        ({"lead_retry": "15"}, "lead_retry"),
        ({"recent_window": math.nan}, "recent_window"),
        ({"day_offset": math.inf}, "day_offset"),
    ],
)
def test_engine_config_refuses_wrong_types_at_construction(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        EngineConfig(**kwargs)
    assert info.value.key == key


def test_engine_config_keeps_its_fields_and_accepts_plain_and_numpy_numbers() -> None:
    config = EngineConfig(connect_limit=2, ring_timeout=20, max_in_flight=np.int64(4), first_call_id=10**12)
    assert config.max_in_flight == 4 and config.first_call_id == 10**12
    assert EngineConfig().max_in_flight is None and EngineConfig().first_call_id == 1


def test_engine_start_must_be_a_finite_time() -> None:
    for start in (math.nan, math.inf, "0"):
        with pytest.raises(ConfigError) as info:
            Engine(Scripted(), ListLeads([]), start=start)  # type: ignore[arg-type]
        assert info.value.key == "start"


# --- defect: a policy answering a float, None or NaN made every handle() raise TypeError -------------------------


class Answers(Scripted):
    """Answers whatever the test set, every time it is asked."""

    def __init__(self, answer: object) -> None:
        super().__init__()
        self.answer = answer

    def decide(self, snap: Snapshot) -> int:
        self.decisions += 1
        return self.answer  # type: ignore[return-value]


@pytest.mark.parametrize("answer", [1.5, 2.0, None, math.nan, math.inf, True, False, "2", np.float64(1.0)])
def test_a_bad_policy_answer_is_the_fail_closed_alert(answer: object) -> None:
    policy = Answers(answer)
    engine = Engine(policy, ListLeads([Lead(str(i), f"+1555000{i:04d}") for i in range(10)]))
    actions = engine.handle(ev.AgentLoggedIn(0.0, "a"))
    (alert,) = actions
    assert isinstance(alert, Alert) and alert.kind == "fault" and repr(answer) in alert.message
    assert not engine.dialing and engine.in_flight == 0 and len(engine.faults) == 1
    # Later events are handled normally (no TypeError), and no call is launched while dialing is stopped.
    assert engine.handle(ev.AgentReady(1.0, "a")) == []
    assert engine.handle(ev.TimeAdvanced(2.0)) == []
    assert engine.agent_state("a") is AgentState.READY
    # An operator resumes: the policy is asked again, and a good answer dials.
    policy.answer = 2
    dials = [a for a in engine.handle(ev.DialingResumed(3.0)) if isinstance(a, DialLead)]
    assert len(dials) == 2 and engine.dialing


def test_negative_and_numpy_integer_answers_keep_their_documented_meaning() -> None:
    policy = Answers(-3)  # "negative values are treated as 0" (PacingPolicy.decide)
    engine = Engine(policy, ListLeads([Lead(str(i), f"+1555000{i:04d}") for i in range(10)]))
    assert engine.handle(ev.TimeAdvanced(1.0)) == [] and engine.dialing
    policy.answer = np.int64(2)
    assert sum(isinstance(a, DialLead) for a in engine.handle(ev.TimeAdvanced(2.0))) == 2


def test_the_alert_comes_once_per_bad_answer_while_records_still_flow() -> None:
    engine, policy, source = make_engine()
    (cid,) = dial(engine, policy, 1.0)
    policy.pending = 0.5  # type: ignore[assignment]
    actions = engine.handle(ev.CallRinging(2.0, cid))
    assert [type(a) for a in actions] == [Alert]
    actions = engine.handle(ev.CallFailed(3.0, cid, ev.FailureReason.BUSY))
    assert [type(a) for a in actions] == [RecordCall]  # dialing is stopped: the policy is not asked again
    assert engine.in_flight == 0 and len(source.records) == 1


# --- defect: a policy's next_wakeup answer was taken unchecked (NaN, a string or an exception reached the runtime) --


class Wakes(Scripted):
    """Asks to be woken at whatever the test set (or raises it)."""

    def __init__(self, wake: object) -> None:
        super().__init__()
        self.wake = wake

    def next_wakeup(self, now: float) -> float | None:
        if isinstance(self.wake, Exception):
            raise self.wake
        return self.wake  # type: ignore[return-value]


@pytest.mark.parametrize("wake", [math.nan, math.inf, "5", True, object(), RuntimeError("boom")])
def test_a_bad_next_wakeup_stops_dialing_and_alerts_with_the_next_actions(wake: object) -> None:
    policy = Wakes(wake)
    engine = Engine(policy, ListLeads([Lead(str(i), f"+1555000{i:04d}") for i in range(10)]))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    assert engine.next_timer() is None  # no timer the runtime cannot sleep on
    assert not engine.dialing and len(engine.faults) == 1
    policy.pending = 3  # the policy would dial now: it is not asked while dialing is stopped
    actions = engine.handle(ev.AgentReady(1.0, "a"))
    assert [type(a) for a in actions] == [Alert]
    assert actions[0].kind == "fault" and "next_wakeup" in actions[0].message  # type: ignore[attr-defined]
    assert engine.handle(ev.TimeAdvanced(2.0)) == []  # handed out once


@pytest.mark.parametrize("wake", [None, 7.5, 7, np.float64(7.5)])
def test_a_good_next_wakeup_is_a_timer(wake: object) -> None:
    engine = Engine(Wakes(wake), ListLeads([Lead("1", "+15550000001")]))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    expected = None if wake is None else float(wake)  # type: ignore[arg-type]
    assert engine.next_timer() == expected and engine.dialing and engine.faults == []


# --- defect: no py.typed -----------------------------------------------------------------------------------------


def test_the_package_ships_py_typed() -> None:
    assert (Path(dialer.__file__).parent / "py.typed").is_file()
