"""Every (state, event) pair of the agent and call transition tables, walked from the tables themselves.

Legal pairs must land in the state the table documents and emit the documented actions; illegal pairs must raise
:class:`InvalidTransition` and leave every observable bit of the engine as it was. Because the parameters come from
``AGENT_TRANSITIONS`` and ``CALL_TRANSITIONS``, a new table entry without a stimulus or an expected-actions line
here makes the suite fail rather than go untested.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from dialer_testkit import Scripted, dial, make_engine, observe

from dialer.engine import events as ev
from dialer.engine.actions import Action, ConnectCall, DialLead, HangUp, PlayAbandonMessage, RecordCall
from dialer.engine.core import Engine
from dialer.engine.state import AGENT_TRANSITIONS, CALL_TRANSITIONS, AgentState, CallState, Key, Trigger
from dialer.errors import InvalidTransition

AGENT_EVENTS: tuple[type[ev.Event], ...] = (
    ev.AgentLoggedIn,
    ev.AgentReady,
    ev.AgentPaused,
    ev.AgentLoggedOut,
    ev.WrapUpDone,
)
CALL_EVENTS: tuple[type[ev.Event], ...] = (
    ev.CallRinging,
    ev.CallAnsweredByPerson,
    ev.CallAnsweredByMachine,
    ev.CallFailed,
    ev.CallEnded,
    ev.CallBridgeFailed,
    ev.CallPlaced,
    ev.CallNotPlaced,
    ev.MessagePlayed,
)


def summary(actions: list[Action]) -> list[str]:
    """Actions as short comparable strings (``HangUp:machine``, ``RecordCall:no_answer``)."""
    out = []
    for a in actions:
        if isinstance(a, HangUp):
            out.append(f"HangUp:{a.reason}")
        elif isinstance(a, RecordCall):
            out.append(f"RecordCall:{a.record.outcome.value}")
        elif isinstance(a, ConnectCall):
            out.append(f"ConnectCall:{a.agent_id}")
        else:
            out.append(type(a).__name__)
    return out


def name(key: Key) -> str:
    return key.value if isinstance(key, Trigger) else key.__name__


# --- agents ---------------------------------------------------------------------------------------------------


class AgentCase:
    """Engine with agent ``a`` in a given state (and, when on a call or in wrap-up, the call id)."""

    def __init__(self, state: AgentState) -> None:
        self.engine, self.policy, _ = make_engine()
        e = self.engine
        self.call_id: int | None = None
        if state is AgentState.LOGGED_OUT:
            e.handle(ev.AgentLoggedIn(0.0, "a"))
            e.handle(ev.AgentLoggedOut(0.5, "a"))
            return
        e.handle(ev.AgentLoggedIn(0.0, "a"))
        if state is AgentState.PAUSED:
            return
        e.handle(ev.AgentReady(0.5, "a"))
        if state is AgentState.READY:
            return
        (self.call_id,) = dial(e, self.policy, 1.0)
        e.handle(ev.CallAnsweredByPerson(5.0, self.call_id))
        if state is AgentState.ON_CALL:
            return
        e.handle(ev.CallEnded(30.0, self.call_id))
        assert state is AgentState.WRAP_UP

    def stimulus(self, key: Key) -> ev.Event | Callable[[], list[Action]]:
        t = self.engine.now + 1.0
        if key is ev.WrapUpDone:
            return ev.WrapUpDone(t, "a")
        if key in AGENT_EVENTS:
            assert isinstance(key, type)
            return key(t, "a")  # type: ignore[call-arg]
        if key is ev.CallEnded:
            assert self.call_id is not None
            return ev.CallEnded(t, self.call_id)
        if key is ev.CallBridgeFailed:
            assert self.call_id is not None
            return ev.CallBridgeFailed(t, self.call_id, 486)
        if key is Trigger.CONNECT:

            def connect() -> list[Action]:
                (cid,) = dial(self.engine, self.policy, t)
                return self.engine.handle(ev.CallAnsweredByPerson(t + 5.0, cid))

            return connect
        raise AssertionError(f"no stimulus for agent key {key!r}: add one to this test")


def run(stimulus: ev.Event | Callable[[], list[Action]], engine: Engine) -> list[Action]:
    return engine.handle(stimulus) if isinstance(stimulus, ev.Event) else stimulus()


AGENT_ACTIONS: dict[tuple[AgentState, Key], list[str]] = {
    (AgentState.LOGGED_OUT, ev.AgentLoggedIn): [],
    (AgentState.PAUSED, ev.AgentReady): [],
    (AgentState.PAUSED, ev.AgentLoggedOut): [],
    (AgentState.READY, ev.AgentPaused): [],
    (AgentState.READY, ev.AgentLoggedOut): [],
    (AgentState.READY, Trigger.CONNECT): ["ConnectCall:a"],
    (AgentState.ON_CALL, ev.CallEnded): ["RecordCall:connected"],
    (AgentState.ON_CALL, ev.AgentLoggedOut): ["HangUp:agent_lost", "RecordCall:connected"],
    (AgentState.ON_CALL, ev.CallBridgeFailed): ["PlayAbandonMessage"],
    (AgentState.WRAP_UP, ev.WrapUpDone): [],
    (AgentState.WRAP_UP, ev.AgentPaused): [],
    (AgentState.WRAP_UP, ev.AgentLoggedOut): [],
}

LEGAL_AGENT = [(s, k, target) for s, row in AGENT_TRANSITIONS.items() for k, target in row.items()]
ILLEGAL_AGENT = [(s, k) for s in AgentState for k in AGENT_EVENTS if k not in AGENT_TRANSITIONS[s]]


def test_agent_table_covers_every_state() -> None:
    assert set(AGENT_TRANSITIONS) == set(AgentState)
    assert len(ILLEGAL_AGENT) > 0 and len(LEGAL_AGENT) == len(AGENT_ACTIONS)


@pytest.mark.parametrize(
    ("state", "key", "target"), LEGAL_AGENT, ids=[f"{s.value}-{name(k)}" for s, k, _ in LEGAL_AGENT]
)
def test_legal_agent_transition(state: AgentState, key: Key, target: AgentState) -> None:
    case = AgentCase(state)
    assert case.engine.agent_state("a") is state
    actions = run(case.stimulus(key), case.engine)
    assert case.engine.agent_state("a") is target
    assert summary(actions) == AGENT_ACTIONS[(state, key)]
    counts = case.engine.agent_counts
    live = [s for s in AgentState if s is not AgentState.LOGGED_OUT]
    assert {s: counts[s] for s in live} == {s: int(s is target) for s in live}


@pytest.mark.parametrize(("state", "key"), ILLEGAL_AGENT, ids=[f"{s.value}-{name(k)}" for s, k in ILLEGAL_AGENT])
def test_illegal_agent_event_raises_and_changes_nothing(state: AgentState, key: Key) -> None:
    case = AgentCase(state)
    before = observe(case.engine)
    stimulus = case.stimulus(key)
    assert isinstance(stimulus, ev.Event)
    with pytest.raises(InvalidTransition):
        case.engine.handle(stimulus)
    assert observe(case.engine) == before


def test_wrap_up_done_with_pause_goes_to_paused() -> None:
    case = AgentCase(AgentState.WRAP_UP)
    assert case.engine.handle(ev.WrapUpDone(31.0, "a", pause=True)) == []
    assert case.engine.agent_state("a") is AgentState.PAUSED


def test_unknown_agent_and_unknown_event_type_are_rejected() -> None:
    case = AgentCase(AgentState.READY)
    before = observe(case.engine)
    with pytest.raises(InvalidTransition, match="unknown agent 'zed'"):
        case.engine.handle(ev.AgentReady(2.0, "zed"))
    with pytest.raises(InvalidTransition, match="unknown event type"):
        case.engine.handle(ev.Event(2.0))
    assert observe(case.engine) == before


# --- calls ----------------------------------------------------------------------------------------------------


class CallCase:
    """Engine with call 1 in a given state. Agents ``a`` and ``b`` are logged in; ``b`` is always paused."""

    def __init__(self, state: CallState) -> None:
        self.engine, self.policy, self.leads = make_engine(connect_limit=2.0, ring_timeout=20.0)
        e = self.engine
        e.handle(ev.AgentLoggedIn(0.0, "a"))
        e.handle(ev.AgentLoggedIn(0.0, "b"))
        (self.call_id,) = dial(e, self.policy, 0.0)
        cid = self.call_id
        if state is CallState.DIALING:
            return
        if state is CallState.RINGING:
            e.handle(ev.CallRinging(1.0, cid))
        elif state is CallState.QUEUED:
            e.handle(ev.CallAnsweredByPerson(1.0, cid))
        elif state is CallState.CONNECTED:
            e.handle(ev.AgentReady(0.5, "a"))
            e.handle(ev.CallAnsweredByPerson(1.0, cid))
        elif state is CallState.ABANDONING:
            e.handle(ev.CallAnsweredByPerson(1.0, cid))
            e.handle(ev.TimeAdvanced(3.0))
        else:
            assert state is CallState.ENDED
            e.handle(ev.CallFailed(1.0, cid, ev.FailureReason.BUSY))
        assert e.call_state(cid) is state

    def stimulus(self, key: Key) -> ev.Event:
        t = self.engine.now + 0.5
        cid = self.call_id
        if key is ev.CallFailed:
            return ev.CallFailed(t, cid, ev.FailureReason.NO_ANSWER)
        if key in CALL_EVENTS:
            assert isinstance(key, type)
            return key(t, cid)  # type: ignore[call-arg]
        if key is Trigger.CONNECT:
            return ev.AgentReady(t, "b")
        if key is Trigger.CONNECT_LIMIT:
            return ev.TimeAdvanced(self.engine.now + 2.5)
        if key is Trigger.RING_TIMEOUT:
            return ev.TimeAdvanced(20.0)
        if key is Trigger.AGENT_LOST:
            return ev.AgentLoggedOut(t, "a")
        raise AssertionError(f"no stimulus for call key {key!r}: add one to this test")


UNANSWERED_ACTIONS: dict[Key, list[str]] = {
    ev.CallRinging: [],
    ev.CallAnsweredByPerson: [],
    ev.CallAnsweredByMachine: ["HangUp:machine", "RecordCall:machine"],
    ev.CallFailed: ["RecordCall:no_answer"],
    Trigger.RING_TIMEOUT: ["HangUp:ring_timeout", "RecordCall:no_answer"],
}
CALL_ACTIONS: dict[tuple[CallState, Key], list[str]] = {
    **{(s, k): v for s in (CallState.DIALING, CallState.RINGING) for k, v in UNANSWERED_ACTIONS.items()},
    (CallState.DIALING, ev.CallPlaced): [],
    (CallState.DIALING, ev.CallNotPlaced): ["RecordCall:network"],
    (CallState.ABANDONING, ev.MessagePlayed): [],
    (CallState.QUEUED, Trigger.CONNECT): ["ConnectCall:b"],
    (CallState.QUEUED, Trigger.CONNECT_LIMIT): ["PlayAbandonMessage"],
    (CallState.QUEUED, ev.CallEnded): ["RecordCall:abandoned"],
    (CallState.CONNECTED, ev.CallEnded): ["RecordCall:connected"],
    (CallState.CONNECTED, Trigger.AGENT_LOST): ["HangUp:agent_lost", "RecordCall:connected"],
    (CallState.CONNECTED, ev.CallBridgeFailed): ["PlayAbandonMessage"],
    (CallState.ABANDONING, ev.CallEnded): ["RecordCall:abandoned"],
}

# The action that proves a trigger fired for the call.
TRIGGER_SIGNS: dict[Trigger, Callable[[Action, int], bool]] = {
    Trigger.CONNECT: lambda a, cid: isinstance(a, ConnectCall) and a.call_id == cid,
    Trigger.CONNECT_LIMIT: lambda a, cid: isinstance(a, PlayAbandonMessage) and a.call_id == cid,
    Trigger.RING_TIMEOUT: lambda a, cid: isinstance(a, HangUp) and a.call_id == cid and a.reason == "ring_timeout",
    Trigger.AGENT_LOST: lambda a, cid: isinstance(a, HangUp) and a.call_id == cid and a.reason == "agent_lost",
}

LEGAL_CALL = [(s, k, target) for s, row in CALL_TRANSITIONS.items() for k, target in row.items()]
ILLEGAL_CALL = [(s, k) for s in CallState for k in CALL_EVENTS if k not in CALL_TRANSITIONS[s]]
ABSENT_TRIGGERS = [(s, k) for s in CallState for k in Trigger if k not in CALL_TRANSITIONS[s]]


def test_call_table_covers_every_state() -> None:
    assert set(CALL_TRANSITIONS) == set(CallState)
    assert CALL_TRANSITIONS[CallState.ENDED] == {}
    assert len(LEGAL_CALL) == len(CALL_ACTIONS)


@pytest.mark.parametrize(("state", "key", "target"), LEGAL_CALL, ids=[f"{s.value}-{name(k)}" for s, k, _ in LEGAL_CALL])
def test_legal_call_transition(state: CallState, key: Key, target: CallState) -> None:
    case = CallCase(state)
    actions = case.engine.handle(case.stimulus(key))
    assert case.engine.call_state(case.call_id) is target
    assert summary(actions) == CALL_ACTIONS[(state, key)]
    if target is CallState.ENDED:
        # Over means gone from the engine, recorded once, and handed back to the lead source.
        assert case.call_id not in case.engine.calls
        assert [r.call_id for r in case.leads.records] == [case.call_id]
        assert case.policy.observed == case.leads.records
    else:
        assert case.engine.call_counts[target] == 1
        assert case.leads.records == []


@pytest.mark.parametrize(("state", "key"), ILLEGAL_CALL, ids=[f"{s.value}-{name(k)}" for s, k in ILLEGAL_CALL])
def test_illegal_call_event_raises_and_changes_nothing(state: CallState, key: Key) -> None:
    case = CallCase(state)
    before = observe(case.engine)
    with pytest.raises(InvalidTransition):
        case.engine.handle(case.stimulus(key))
    assert observe(case.engine) == before


@pytest.mark.parametrize(
    ("state", "trigger"), ABSENT_TRIGGERS, ids=[f"{s.value}-{k.value}" for s, k in ABSENT_TRIGGERS]
)
def test_trigger_absent_from_the_table_never_fires(state: CallState, trigger: Trigger) -> None:
    case = CallCase(state)
    actions = case.engine.handle(case.stimulus(trigger))
    sign = TRIGGER_SIGNS[trigger]
    assert not any(sign(a, case.call_id) for a in actions), summary(actions)


def test_scripted_policy_dials_only_when_told() -> None:
    """The harness itself: without this, 'no actions' above could mean 'dialed something unexpected'."""
    engine, policy, _ = make_engine()
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    assert engine.handle(ev.AgentReady(0.0, "a")) == []
    policy.pending = 2
    assert [type(a) for a in engine.handle(ev.TimeAdvanced(1.0))] == [DialLead, DialLead]
    assert isinstance(policy, Scripted) and policy.decisions == 3


# --- the documented tables ------------------------------------------------------------------------------------


def test_docs_list_every_legal_transition_in_table_order() -> None:
    """docs/engine.md says its tables are generated from state.py: hold it to that."""
    from dialer_testkit import doc_table, table_rows

    assert doc_table("| agent state | on | goes to |") == table_rows(AGENT_TRANSITIONS)
    assert doc_table("| call state | on | goes to |") == table_rows(CALL_TRANSITIONS)
