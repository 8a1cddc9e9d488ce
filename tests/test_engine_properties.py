"""Property tests (issue 15): random event streams, garbage included, thrown at the engine.

Hypothesis draws a stream of steps: agents coming and going, network news about dialed calls (legal or not, about
known calls or not), time passing (and sometimes going backwards), trunk capacity changes, a policy whose answer
is drawn too (garbage included), dialing stopped and resumed, events with bad values (refused when built, and
forged past ``__init__`` so the engine's own check is exercised), and things that are not events at all. After
every step the invariants must hold:

- a refused event (``InvalidTransition`` or ``InvalidEvent``) changed nothing;
- no call is dialed above what the policy asked, nor above the trunk's capacity;
- a policy answer that is not a whole number is the fail-closed ``Alert``, and nothing is dialed;
- every record names a dialed call, and no call is recorded twice;
- the engine's counters agree with its agents and calls.

At the end the stream ends every call still up: each dialed call then has exactly one record and nothing stays in
flight, and no timer is left to fire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dialer_testkit import leads, observe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.engine import events as ev
from dialer.engine.actions import Action, Alert, DialLead, RecordCall
from dialer.engine.core import Engine, EngineConfig
from dialer.engine.snapshot import Snapshot
from dialer.engine.state import AgentState, CallState
from dialer.errors import InvalidTransition
from dialer.pacing.base import PacingPolicy

AGENTS = ("a", "b", "c", "d")
GARBAGE_ANSWERS: tuple[object, ...] = (1.5, None, math.nan, math.inf, True, "3", 2.0)


class Drawn(PacingPolicy):
    """Answers what the stream set for the next decision (then 0), and remembers what it was asked to answer."""

    name = "drawn"

    def __init__(self) -> None:
        self.answer: object = 0
        self.asked: list[object] = []
        self.launches: list[tuple[int, int]] = []

    def decide(self, snap: Snapshot) -> int:
        answer, self.answer = self.answer, 0
        self.asked.append(answer)
        return answer  # type: ignore[return-value]

    def launched(self, now: float, requested: int, placed: int) -> None:
        self.launches.append((requested, placed))


def fingerprint(engine: Engine) -> dict[str, Any]:
    return {**observe(engine), "faults": list(engine.faults), "config": engine.config}


def forged(cls: type[ev.Event], **fields: Any) -> ev.Event:
    event = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(event, name, value)
    return event


# --- the stream ----------------------------------------------------------------------------------------------------

_AGENT_KINDS = (ev.AgentLoggedIn, ev.AgentReady, ev.AgentPaused, ev.AgentLoggedOut, ev.WrapUpDone)
_CALL_KINDS = (
    "ringing",
    "placed",
    "not_placed",
    "person",
    "machine",
    "failed",
    "ended",
    "bridge_failed",
    "message",
)

_answer = st.integers(-1, 5) | st.integers(1, 3) | st.integers(1, 3) | st.sampled_from(GARBAGE_ANSWERS)
_agent_step = st.tuples(st.just("agent"), st.sampled_from(_AGENT_KINDS), st.sampled_from(AGENTS), st.booleans())
_call_step = st.tuples(
    st.just("call"),
    st.sampled_from(_CALL_KINDS),
    # Which call: mostly one still up (so news is often legal), else an ended one (stale) or one never dialed.
    st.integers(0, 3) | st.integers(0, 12),
    st.sampled_from(list(ev.FailureReason)),
    st.sampled_from([0.0, 0.0, 1.0, 3.0]),  # how long before now the connect clock started
)
# The natural next event of an agent or of a call still up (the choice picks among the likely ones), so streams
# reach every state; the random steps above throw the same kinds at any agent or call, mostly illegal.
_agent_on = st.tuples(st.just("agent_on"), st.sampled_from(AGENTS), st.integers(0, 9))
_call_on = st.tuples(st.just("call_on"), st.integers(0, 3), st.integers(0, 9))
step = st.one_of(
    _agent_on,
    _agent_on,
    _call_on,
    _call_on,
    _call_on,
    _agent_step,
    _call_step,
    st.tuples(st.just("time"), st.floats(0.0, 2.0) | st.floats(0.0, 40.0)),
    st.tuples(st.just("back"), st.floats(0.001, 5.0)),
    st.tuples(st.just("policy"), _answer, st.booleans()),  # the answer, and whether an operator resumes first
    st.tuples(st.just("policy"), _answer, st.booleans()),
    st.tuples(st.just("capacity"), st.none() | st.integers(1, 8) | st.just(0)),
    st.tuples(st.just("stop"), st.booleans()),
    st.tuples(st.just("garbage"), st.integers(0, 9)),
)


def _agent_next(engine: Engine, agent: str, choice: int, t: float) -> ev.Event:
    state = engine.agent_state(agent)
    if state is AgentState.LOGGED_OUT:
        return ev.AgentLoggedIn(t, agent)
    if state is AgentState.PAUSED:
        return ev.AgentLoggedOut(t, agent) if choice == 0 else ev.AgentReady(t, agent)
    if state is AgentState.WRAP_UP:
        return ev.WrapUpDone(t, agent, pause=choice < 2)
    if choice == 0:
        return ev.AgentLoggedOut(t, agent)  # mid-call, when on a call
    if state is AgentState.READY and choice == 1:
        return ev.AgentPaused(t, agent)
    return ev.TimeAdvanced(t)


def _call_next(engine: Engine, index: int, choice: int, t: float) -> ev.Event:
    up = list(engine.calls.items())
    if not up:
        return ev.TimeAdvanced(t)
    cid, call = up[index % len(up)]
    state = call.state
    if state in (CallState.DIALING, CallState.RINGING):
        return [
            lambda: ev.CallRinging(t, cid),
            lambda: ev.CallRinging(t, cid),
            lambda: ev.CallAnsweredByPerson(t, cid),
            lambda: ev.CallAnsweredByPerson(t, cid),
            lambda: ev.CallAnsweredByPerson(t, cid, answered_at=max(call.dialed_at, t - 1.0), amd_verdict="person"),
            lambda: ev.CallAnsweredByMachine(t, cid, amd_seconds=1.5),
            lambda: ev.CallFailed(t, cid, ev.FailureReason.BUSY),
            lambda: ev.CallFailed(t, cid, "no_answer"),  # type: ignore[arg-type]  # coerced
            lambda: ev.CallPlaced(t, cid) if state is CallState.DIALING else ev.CallRinging(t, cid),
            lambda: ev.CallNotPlaced(t, cid) if state is CallState.DIALING else ev.CallRinging(t, cid),
        ][choice]()
    if state is CallState.CONNECTED and choice < 2:
        return ev.CallBridgeFailed(t, cid, 486)
    if state is CallState.ABANDONING and choice < 5:
        return ev.MessagePlayed(t, cid, t)
    return ev.CallEnded(t, cid)


def _bad_event(i: int, t: float, cid: int) -> tuple[ev.Event | object, type[Exception]]:
    """A bad thing to hand the engine, and the error it must raise. Bad values are forged past ``__init__`` (which
    refuses them too): the engine must check them before anything changes."""
    return [
        (forged(ev.CallFailed, t=t, call_id=cid, reason="bogus"), ev.InvalidEvent),
        (forged(ev.CallFailed, t=t, call_id=cid, reason=None), ev.InvalidEvent),
        (forged(ev.WrapUpDone, t=t, agent_id="a", pause="no"), ev.InvalidEvent),
        (forged(ev.AgentLoggedIn, t=t, agent_id=None), ev.InvalidEvent),
        (forged(ev.TimeAdvanced, t=math.nan), ev.InvalidEvent),
        (forged(ev.CapacityChanged, t=t, max_in_flight=1.5), ev.InvalidEvent),
        (forged(ev.MessagePlayed, t=t, call_id=cid, started_at=math.inf), ev.InvalidEvent),
        (forged(ev.CallRinging, t=t, call_id=str(cid)), ev.InvalidEvent),
        (None, ev.InvalidEvent),
        (ev.Event(t), InvalidTransition),  # the bare base class is no event the engine knows
    ][i]


@dataclass
class Run:
    engine: Engine
    policy: Drawn
    t: float = 0.0
    dialed: list[int] = field(default_factory=list)
    recorded: list[int] = field(default_factory=list)
    refused: int = 0

    def feed(self, event: Any, *, must_raise: type[Exception] | None = None) -> list[Action]:
        engine, policy = self.engine, self.policy
        before = fingerprint(engine)
        asked = len(policy.asked)
        answer = policy.answer
        cap = engine.config.max_in_flight
        try:
            actions = engine.handle(event)
        except (InvalidTransition, ev.InvalidEvent) as exc:
            assert must_raise is None or isinstance(exc, must_raise), (event, exc)
            assert fingerprint(engine) == before, event  # refused: nothing changed
            policy.answer = answer
            self.refused += 1
            return []
        assert must_raise is None, f"{event!r} was accepted"
        dials = [a.call_id for a in actions if isinstance(a, DialLead)]
        decided = len(policy.asked) > asked
        if dials:
            assert decided
            asked_for = policy.asked[-1]
            assert type(asked_for) is int and len(dials) <= asked_for  # never above what the policy asked
            cap = engine.config.max_in_flight
            assert cap is None or engine.in_flight <= cap  # never above the trunk's capacity
        if decided and type(policy.asked[-1]) is not int:
            # A garbage answer: the fail-closed alert, dialing stopped, nothing launched.
            assert any(isinstance(a, Alert) and a.kind == "fault" for a in actions), actions
            assert not engine.dialing and not dials
        for a in actions:
            if isinstance(a, RecordCall):
                assert a.record.call_id in self.dialed or a.record.call_id in dials
                self.recorded.append(a.record.call_id)
        self.dialed.extend(dials)
        assert len(self.recorded) == len(set(self.recorded))
        _counts_match(engine)
        return actions

    def call(self, index: int) -> int:
        """The ``index``-th call still up, else (counting on) one dialed before, else one never dialed."""
        up = list(self.engine.calls)
        if index < len(up):
            return up[index]
        index -= len(up)
        if index < len(self.dialed):
            return self.dialed[-1 - index]
        return 10**6 + index


def _counts_match(engine: Engine) -> None:
    for state in AgentState:
        if state is not AgentState.LOGGED_OUT:
            assert engine.agent_counts[state] == sum(a.state is state for a in engine.agents.values()), state
    for cstate in CallState:
        if cstate is not CallState.ENDED:
            assert engine.call_counts[cstate] == sum(c.state is cstate for c in engine.calls.values()), cstate


def _play(run: Run, s: tuple[Any, ...]) -> None:
    kind = s[0]
    t = run.t
    if kind == "agent":
        _, cls, agent, pause = s
        run.feed(cls(t, agent, pause) if cls is ev.WrapUpDone else cls(t, agent))
    elif kind == "call":
        _, what, index, reason, early = s
        cid = run.call(index)
        event: ev.Event = {
            "ringing": lambda: ev.CallRinging(t, cid),
            "placed": lambda: ev.CallPlaced(t, cid),
            "not_placed": lambda: ev.CallNotPlaced(t, cid, "no slot"),
            "person": lambda: ev.CallAnsweredByPerson(t, cid, answered_at=max(0.0, t - early)),
            "machine": lambda: ev.CallAnsweredByMachine(t, cid),
            "failed": lambda: ev.CallFailed(t, cid, reason.value),  # type: ignore[arg-type]  # coerced
            "ended": lambda: ev.CallEnded(t, cid),
            "bridge_failed": lambda: ev.CallBridgeFailed(t, cid, 486),
            "message": lambda: ev.MessagePlayed(t, cid, t),
        }[what]()
        run.feed(event)
    elif kind == "agent_on":
        run.feed(_agent_next(run.engine, s[1], s[2], t))
    elif kind == "call_on":
        run.feed(_call_next(run.engine, s[1], s[2], t))
    elif kind == "time":
        run.t += s[1]
        run.feed(ev.TimeAdvanced(run.t))
    elif kind == "back":
        if run.engine.now - s[1] >= 0:
            run.feed(ev.TimeAdvanced(run.engine.now - s[1]), must_raise=InvalidTransition)
    elif kind == "policy":
        run.policy.answer = s[1]
        run.feed(ev.DialingResumed(t) if s[2] else ev.TimeAdvanced(t))
    elif kind == "capacity":
        run.feed(ev.CapacityChanged(t, s[1]))
    elif kind == "stop":
        run.feed(ev.DialingStopped(t) if s[1] else ev.DialingResumed(t))
    else:
        thing, error = _bad_event(s[1], t, run.call(0))
        run.feed(thing, must_raise=error)
    run.t = max(run.t, run.engine.now)


def _end_everything(run: Run) -> None:
    """The stream ends every call still up with a legal event, as a runtime shutting down would."""
    run.feed(ev.DialingStopped(run.t))
    for _ in range(1000):
        if not run.engine.calls:
            break
        run.t += 1.0
        cid, call = next(iter(run.engine.calls.items()))
        if call.state in (CallState.DIALING, CallState.RINGING):
            run.feed(ev.CallFailed(run.t, cid, ev.FailureReason.NETWORK))
        else:
            run.feed(ev.CallEnded(run.t, cid))
        run.t = max(run.t, run.engine.now)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(step, min_size=20, max_size=150),
    connect_limit=st.sampled_from([0.0, 2.0]),
    ring_timeout=st.sampled_from([None, 15.0, 30.0]),
    cap=st.none() | st.integers(0, 6),
)
def test_random_streams_keep_the_engine_whole(
    steps: list[tuple[Any, ...]], connect_limit: float, ring_timeout: float | None, cap: int | None
) -> None:
    policy = Drawn()
    engine = Engine(
        policy, leads(400), EngineConfig(connect_limit=connect_limit, ring_timeout=ring_timeout, max_in_flight=cap)
    )
    run = Run(engine, policy)
    for s in steps:
        _play(run, s)
    for requested, placed in policy.launches:
        assert 0 <= placed <= requested
    _end_everything(run)
    assert not engine.calls and engine.in_flight == 0  # nothing in flight forever
    assert sorted(run.recorded) == sorted(run.dialed)  # every dialed call: exactly one record
    assert engine.next_timer() is None  # no call timer left (the drawn policy never asks to be woken)
    assert engine.call_counts[CallState.ENDED] == 0


@settings(max_examples=60, deadline=None)
@given(answers=st.lists(st.integers(-2, 8) | st.sampled_from(GARBAGE_ANSWERS), min_size=1, max_size=30))
def test_dials_never_exceed_the_answer_nor_the_trunk(answers: list[object]) -> None:
    """A busy floor where every call rings until its timer: dials follow only what the policy answered."""
    policy = Drawn()
    engine = Engine(policy, leads(400), EngineConfig(ring_timeout=15.0, max_in_flight=5))
    run = Run(engine, policy)
    for answer in answers:
        policy.answer = answer
        run.t += 1.0
        before = engine.in_flight
        actions = run.feed(ev.TimeAdvanced(run.t))
        if not engine.dialing:
            run.feed(ev.DialingResumed(run.t))
        n = sum(isinstance(a, DialLead) for a in actions)
        if type(answer) is int:
            ended = sum(isinstance(a, RecordCall) for a in actions)
            assert n == max(0, min(answer, 5 - (before - ended)))  # what was asked, as far as the trunk allows
        else:
            assert n == 0
    _end_everything(run)
    assert sorted(run.recorded) == sorted(run.dialed)
