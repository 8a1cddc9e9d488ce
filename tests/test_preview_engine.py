"""Preview and manual dialing in the engine (issue 16 item 3).

Every move of ``AGENT_PREVIEW_TRANSITIONS`` and ``OFFER_TRANSITIONS`` is walked from the tables themselves (a new
entry without a stimulus here fails the suite); illegal and malformed events change nothing; the timeout dials by
itself and an agent's press that crosses it is stale; skips, logouts and a stop send the lead back undialed with
its one record; manual dials pass the lead source's gate or are refused. A hypothesis stream of whatever a runtime
could send keeps one record per call id and never abandons anybody whose agent was still there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from dialer_testkit import observe
from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st

from dialer import Engine, EngineConfig, Lead, ListLeads, make_policy
from dialer.engine import events as ev
from dialer.engine.actions import (
    Action,
    ConnectCall,
    DialLead,
    DialRefused,
    HangUp,
    PlayAbandonMessage,
    PreviewLead,
    PreviewWithdrawn,
    RecordCall,
)
from dialer.engine.events import InvalidEvent
from dialer.engine.records import CallRecord, Outcome
from dialer.engine.state import (
    AGENT_PREVIEW_TRANSITIONS,
    OFFER_TRANSITIONS,
    AgentState,
    AnyAgentState,
    CallState,
    Key,
    OfferState,
    PreviewState,
    PreviewTrigger,
    Trigger,
)
from dialer.errors import InvalidTransition


def lead_list(n: int = 40) -> ListLeads:
    return ListLeads(Lead(str(i), f"+1555{i:07d}") for i in range(1, n + 1))


def preview_engine(
    timeout: float | None = None, *, policy: str = "preview", leads: ListLeads | None = None, **config: Any
) -> tuple[Engine, ListLeads]:
    source = leads if leads is not None else lead_list()
    params = {"timeout": timeout} if policy == "preview" else {}
    engine = Engine(make_policy(policy, **params), source, EngineConfig(ring_timeout=20.0, **config))
    return engine, source


def fingerprint(engine: Engine) -> dict[str, Any]:
    """The shared fingerprint plus what preview dialing adds (offers, closed offers, preview counts)."""
    snap = engine.snapshot()
    return {
        **observe(engine),
        "offers": {o.call_id: (o.agent_id, o.lead, o.offered_at, o.deadline) for o in engine.offers.values()},
        "closed": list(engine._offers_closed),
        "preview": (snap.previewing, snap.reserved),
        "skips": list(engine._skips),
    }


def kinds(actions: list[Action]) -> list[str]:
    out = []
    for a in actions:
        if isinstance(a, RecordCall):
            r = a.record
            out.append(f"RecordCall:{r.outcome.value}" + ("" if r.placed else ":unplaced"))
        elif isinstance(a, HangUp):
            out.append(f"HangUp:{a.reason}")
        elif isinstance(a, ConnectCall):
            out.append(f"ConnectCall:{a.agent_id}")
        elif isinstance(a, PreviewWithdrawn):
            out.append(f"PreviewWithdrawn:{a.reason}")
        else:
            out.append(type(a).__name__)
    return out


def offer_of(actions: list[Action]) -> PreviewLead:
    (offer,) = [a for a in actions if isinstance(a, PreviewLead)]
    return offer


# --- every documented move ------------------------------------------------------------------------------------


class Case:
    """Agent ``a`` in a given state on a preview floor (timeout 30 s); ``b`` logged in and paused."""

    def __init__(self, state: AnyAgentState) -> None:
        self.engine, self.leads = preview_engine(30.0)
        e = self.engine
        e.handle(ev.AgentLoggedIn(0.0, "a"))
        e.handle(ev.AgentLoggedIn(0.0, "b"))
        self.call_id = -1
        if state is AgentState.READY:  # ready with nothing to offer: the list is empty
            self.engine, self.leads = preview_engine(30.0, leads=ListLeads([]))
            self.engine.handle(ev.AgentLoggedIn(0.0, "a"))
            self.engine.handle(ev.AgentLoggedIn(0.0, "b"))
            self.engine.handle(ev.AgentReady(0.5, "a"))
            return
        self.call_id = offer_of(e.handle(ev.AgentReady(0.5, "a"))).call_id
        if state is PreviewState.PREVIEWING:
            return
        assert state is PreviewState.RESERVED
        e.handle(ev.PreviewDial(2.0, "a", self.call_id))

    def stimulus(self, key: Key) -> Callable[[], list[Action]]:
        e = self.engine
        t = e.now + 1.0
        cid = self.call_id
        events: dict[Key, Callable[[], ev.Event]] = {
            ev.PreviewDial: lambda: ev.PreviewDial(t, "a", cid),
            ev.PreviewSkip: lambda: ev.PreviewSkip(t, "a", cid, "wrong contact"),
            ev.AgentPaused: lambda: ev.AgentPaused(t, "a"),
            ev.AgentLoggedOut: lambda: ev.AgentLoggedOut(t, "a"),
            ev.CallAnsweredByMachine: lambda: ev.CallAnsweredByMachine(t, cid),
            ev.CallFailed: lambda: ev.CallFailed(t, cid, "busy"),
            ev.CallNotPlaced: lambda: ev.CallNotPlaced(t, cid),
            ev.ManualDial: lambda: ev.ManualDial(t, "a", Lead("m1", "+15550009999")),
            PreviewTrigger.PREVIEW_TIMEOUT: lambda: ev.TimeAdvanced(0.5 + 30.0),
            PreviewTrigger.WITHDRAWN: lambda: ev.DialingStopped(t),
            Trigger.CONNECT: lambda: ev.CallAnsweredByPerson(t, cid),
            Trigger.CONNECT_LIMIT: lambda: ev.CallAnsweredByPerson(t + 4.0, cid, answered_at=t + 1.0),
            Trigger.RING_TIMEOUT: lambda: ev.TimeAdvanced(2.0 + 20.0),
        }
        if key is PreviewTrigger.OFFER:
            return lambda: self._refill(t)
        if key is ev.ManualDial:
            e.leads.manual_lead = lambda lead, now: lead  # type: ignore[attr-defined]
        if key not in events:
            raise AssertionError(f"no stimulus for {key!r}: add one to this test")
        build = events[key]
        return lambda: e.handle(build())

    def _refill(self, t: float) -> list[Action]:
        self.leads._queue.append(Lead("new", "+15550000777"))
        return self.engine.handle(ev.TimeAdvanced(t))


AGENT_ACTIONS: dict[tuple[AnyAgentState, Key], list[str]] = {
    (AgentState.READY, PreviewTrigger.OFFER): ["PreviewLead"],
    (AgentState.READY, ev.ManualDial): ["DialLead"],
    (PreviewState.PREVIEWING, ev.PreviewDial): ["DialLead"],
    (PreviewState.PREVIEWING, PreviewTrigger.PREVIEW_TIMEOUT): ["DialLead"],
    (PreviewState.PREVIEWING, ev.PreviewSkip): ["PreviewLead", "RecordCall:network:unplaced"],
    (PreviewState.PREVIEWING, PreviewTrigger.WITHDRAWN): [
        "PreviewWithdrawn:dialing_stopped",
        "RecordCall:network:unplaced",
    ],
    (PreviewState.PREVIEWING, ev.AgentPaused): ["PreviewWithdrawn:agent_paused", "RecordCall:network:unplaced"],
    (PreviewState.PREVIEWING, ev.AgentLoggedOut): [
        "PreviewWithdrawn:agent_logged_out",
        "RecordCall:network:unplaced",
    ],
    (PreviewState.RESERVED, Trigger.CONNECT): ["ConnectCall:a"],
    (PreviewState.RESERVED, Trigger.CONNECT_LIMIT): ["PlayAbandonMessage", "PreviewLead"],
    (PreviewState.RESERVED, ev.CallAnsweredByMachine): ["HangUp:machine", "RecordCall:machine", "PreviewLead"],
    (PreviewState.RESERVED, ev.CallFailed): ["RecordCall:busy", "PreviewLead"],
    (PreviewState.RESERVED, ev.CallNotPlaced): ["RecordCall:network:unplaced", "PreviewLead"],
    (PreviewState.RESERVED, Trigger.RING_TIMEOUT): ["HangUp:ring_timeout", "RecordCall:no_answer", "PreviewLead"],
    (PreviewState.RESERVED, ev.AgentLoggedOut): [],
}
LEGAL = [(s, k, target) for s, row in AGENT_PREVIEW_TRANSITIONS.items() for k, target in row.items()]


def _name(key: Key) -> str:
    return key.value if isinstance(key, (Trigger, PreviewTrigger)) else key.__name__


def test_every_preview_move_has_a_case() -> None:
    assert len(LEGAL) == len(AGENT_ACTIONS)
    assert {(s, k) for s, k, _ in LEGAL} == set(AGENT_ACTIONS)


@pytest.mark.parametrize(("state", "key", "target"), LEGAL, ids=[f"{s.value}-{_name(k)}" for s, k, _ in LEGAL])
def test_legal_preview_move(state: AnyAgentState, key: Key, target: AnyAgentState) -> None:
    case = Case(state)
    e = case.engine
    assert (e.preview_state("a") or e.agent_state("a")) is state
    actions = case.stimulus(key)()
    assert kinds(actions) == AGENT_ACTIONS[(state, key)]
    now = e.preview_state("a") or e.agent_state("a")
    # A move back to ready offers the next lead at once: the agent is previewing again.
    expect = PreviewState.PREVIEWING if "PreviewLead" in kinds(actions) else target
    assert now is expect
    counts = e.agent_counts
    assert sum(counts.values()) - counts[AgentState.LOGGED_OUT] == (2 if target is not AgentState.LOGGED_OUT else 1)
    assert e.stats.totals.abandoned == (1 if key is Trigger.CONNECT_LIMIT else 0)


def test_offer_table_targets_are_what_the_engine_does() -> None:
    row = OFFER_TRANSITIONS[OfferState.OFFERED]
    for key, target in row.items():
        case = Case(PreviewState.PREVIEWING)
        cid = case.call_id
        case.stimulus(key)()
        assert case.engine.call_state(cid) is target
        assert (cid in case.engine.offers) is False
        placed = [r for r in case.leads.records if r.call_id == cid]
        assert len(placed) == (1 if target is CallState.ENDED else 0)


# --- refused: illegal moves and bad values change nothing ----------------------------------------------------


@pytest.mark.parametrize("state", [AgentState.PAUSED, AgentState.READY, PreviewState.PREVIEWING, PreviewState.RESERVED])
def test_illegal_preview_events_raise_and_change_nothing(state: AnyAgentState) -> None:
    if state is AgentState.PAUSED:
        engine, _ = preview_engine(30.0)
        engine.handle(ev.AgentLoggedIn(0.0, "a"))
        cid = 1
    else:
        case = Case(state)
        engine, cid = case.engine, max(case.call_id, 1)
    t = engine.now + 1.0
    row = AGENT_PREVIEW_TRANSITIONS.get(state, {})
    candidates: list[ev.Event] = [
        ev.PreviewDial(t, "a", cid + 50),  # an offer that does not exist
        ev.PreviewSkip(t, "b", cid),  # somebody else's offer (or an unknown agent)
        ev.PreviewDial(t, "zed", cid),
        ev.ManualDial(t, "zed", Lead("x", "+15550001111")),
        ev.AgentReady(t, "a"),
        ev.WrapUpDone(t, "a"),
    ]
    for key in (ev.PreviewDial, ev.PreviewSkip, ev.ManualDial):
        if key not in row:
            candidates.append(
                key(t, "a", Lead("x", "+15550001111")) if key is ev.ManualDial else key(t, "a", cid)  # type: ignore[call-arg]
            )
    for event in candidates:
        if type(event) in row and getattr(event, "agent_id", "") == "a" and getattr(event, "call_id", cid) == cid:
            continue
        if state is AgentState.PAUSED and isinstance(event, ev.AgentReady):
            continue
        before = fingerprint(engine)
        with pytest.raises(InvalidTransition):
            engine.handle(event)
        assert fingerprint(engine) == before, event


@pytest.mark.parametrize(
    "build",
    [
        lambda: ev.PreviewDial(1.0, "", 1),
        lambda: ev.PreviewDial(1.0, "a", -1),
        lambda: ev.PreviewDial(1.0, "a", 1.5),
        lambda: ev.PreviewDial(math.nan, "a", 1),
        lambda: ev.PreviewSkip(1.0, "a", 1, reason=3),
        lambda: ev.PreviewSkip(1.0, None, 1),
        lambda: ev.ManualDial(1.0, "a", "+15550001111"),
        lambda: ev.ManualDial(1.0, "a", Lead("", "+15550001111")),
        lambda: ev.ManualDial(1.0, "a", Lead("x", "")),
    ],
)
def test_bad_values_are_refused_when_built(build: Callable[[], ev.Event]) -> None:
    with pytest.raises(InvalidEvent):
        build()


def test_bad_values_past_init_are_refused_by_the_engine_with_nothing_changed() -> None:
    case = Case(PreviewState.PREVIEWING)
    before = fingerprint(case.engine)
    for cls, fields in (
        (ev.PreviewDial, {"t": 5.0, "agent_id": "a", "call_id": "1"}),
        (ev.PreviewSkip, {"t": 5.0, "agent_id": "a", "call_id": case.call_id, "reason": None}),
        (ev.ManualDial, {"t": 5.0, "agent_id": "b", "lead": None}),
    ):
        event = object.__new__(cls)
        for name, value in fields.items():
            object.__setattr__(event, name, value)
        with pytest.raises(InvalidEvent):
            case.engine.handle(event)
    assert fingerprint(case.engine) == before


# --- behaviour ------------------------------------------------------------------------------------------------


def test_a_preview_call_connects_to_its_agent_even_with_another_agent_idle_longer() -> None:
    engine, _ = preview_engine(None)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    cid = offer_of(engine.handle(ev.AgentReady(0.0, "a"))).call_id
    assert engine.next_timer() is None  # no timeout: the engine waits for the agent
    assert kinds(engine.handle(ev.PreviewDial(100.0, "a", cid))) == ["DialLead"]
    assert engine.in_flight == 1 and engine.snapshot().reserved == 1 and engine.snapshot().ready == 0
    actions = engine.handle(ev.CallAnsweredByPerson(110.0, cid))
    assert actions == [ConnectCall(cid, "a")]
    (record,) = [a.record for a in engine.handle(ev.CallEnded(200.0, cid)) if isinstance(a, RecordCall)]
    assert record.reserved_for == "a" and record.agent_id == "a" and record.wait == 0.0
    assert record.offered_at == 0.0 and record.dialed_at == 100.0 and not record.abandoned
    secs = engine.stats.agent_seconds
    assert secs[PreviewState.PREVIEWING] == pytest.approx(100.0)
    assert secs[PreviewState.RESERVED] == pytest.approx(10.0)
    assert secs[AgentState.ON_CALL] == pytest.approx(90.0)


def test_the_timeout_dials_by_itself_and_a_press_crossing_it_is_stale() -> None:
    engine, _ = preview_engine(12.0)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    offer = offer_of(engine.handle(ev.AgentReady(3.0, "a")))
    assert offer.dial_at == 15.0 and engine.next_timer() == 15.0
    assert engine.handle(ev.TimeAdvanced(14.9)) == []
    actions = engine.handle(ev.TimeAdvanced(15.0))
    assert actions == [DialLead(offer.call_id, offer.lead, 20.0)]
    assert engine.preview_state("a") is PreviewState.RESERVED
    # The agent's press crossed the timer: late news, not an error, and not applied to anything else.
    assert engine.handle(ev.PreviewDial(15.5, "a", offer.call_id)) == []
    assert engine.handle(ev.PreviewSkip(15.6, "a", offer.call_id)) == []
    assert engine.stale_events == 2 and engine.in_flight == 1
    # A press arriving with the timer due in the same handle: the timer first, the press stale.
    engine.handle(ev.CallFailed(16.0, offer.call_id, "busy"))
    nxt = next(iter(engine.offers.values()))
    assert nxt.deadline == 28.0
    assert kinds(engine.handle(ev.PreviewDial(30.0, "a", nxt.call_id))) == ["DialLead"]
    assert engine.stale_events == 3


def test_a_skipped_lead_goes_back_undialed_and_is_not_shown_to_its_skipper_at_once() -> None:
    engine, source = preview_engine(None, leads=lead_list(3))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    first = offer_of(engine.handle(ev.AgentReady(0.0, "a")))
    actions = engine.handle(ev.PreviewSkip(4.0, "a", first.call_id, "wrong contact"))
    second = offer_of(actions)
    assert second.lead != first.lead  # the agent gets the next lead, the skipped one goes back behind it
    (record,) = source.records
    assert record.call_id == first.call_id and not record.placed and record.skipped == "wrong contact"
    assert record.reserved_for == "a" and record.outcome is Outcome.NETWORK
    assert engine.stats.totals.dials == 0 and engine.in_flight == 0
    # Back in the list, first: the next agent to come free is shown it.
    engine.handle(ev.AgentLoggedIn(5.0, "b"))
    assert offer_of(engine.handle(ev.AgentReady(5.0, "b"))).lead == first.lead


def test_logging_out_while_previewing_returns_the_lead_and_while_reserved_keeps_the_call_legal() -> None:
    engine, source = preview_engine(None)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentLoggedIn(0.0, "b"))
    offer = offer_of(engine.handle(ev.AgentReady(0.0, "a")))
    actions = engine.handle(ev.AgentLoggedOut(2.0, "a"))
    assert kinds(actions) == ["PreviewWithdrawn:agent_logged_out", "RecordCall:network:unplaced"]
    assert source.records[-1].skipped == "withdrawn: agent_logged_out" and offer.call_id not in engine.offers
    assert engine.agent_state("a") is AgentState.LOGGED_OUT
    assert engine.handle(ev.PreviewDial(2.5, "a", offer.call_id)) == [] and engine.stale_events == 1
    # Reserved: the call rings on to the regulators' 15 s after its first ring, then the engine gives it up.
    engine.handle(ev.AgentLoggedIn(3.0, "a"))
    cid = offer_of(engine.handle(ev.AgentReady(3.0, "a"))).call_id
    engine.handle(ev.PreviewDial(4.0, "a", cid))
    engine.handle(ev.CallRinging(5.0, cid))
    assert engine.handle(ev.AgentLoggedOut(6.0, "a")) == []
    assert engine.call_state(cid) is CallState.RINGING and engine.next_timer() == 20.0
    assert kinds(engine.handle(ev.TimeAdvanced(20.0))) == ["HangUp:ring_timeout", "RecordCall:no_answer"]
    assert source.records[-1].reserved_for == "a" and not source.records[-1].abandoned


def test_an_orphaned_call_answered_goes_to_a_free_agent_or_is_abandoned() -> None:
    engine, _ = preview_engine(None, leads=lead_list(1))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    cid = offer_of(engine.handle(ev.AgentReady(0.0, "a"))).call_id
    engine.handle(ev.PreviewDial(1.0, "a", cid))
    engine.handle(ev.AgentLoggedOut(2.0, "a"))
    engine.handle(ev.AgentLoggedIn(3.0, "b"))
    engine.handle(ev.AgentReady(3.0, "b"))  # nothing left to offer: b is ready
    assert engine.handle(ev.CallAnsweredByPerson(8.0, cid)) == [ConnectCall(cid, "b")]
    engine2, _ = preview_engine(None, leads=lead_list(1))
    engine2.handle(ev.AgentLoggedIn(0.0, "a"))
    cid = offer_of(engine2.handle(ev.AgentReady(0.0, "a"))).call_id
    engine2.handle(ev.PreviewDial(1.0, "a", cid))
    engine2.handle(ev.AgentLoggedOut(2.0, "a"))
    assert engine2.handle(ev.CallAnsweredByPerson(8.0, cid)) == []
    assert kinds(engine2.handle(ev.TimeAdvanced(10.0))) == ["PlayAbandonMessage"]


def test_pausing_while_previewing_and_stopping_withdraw_and_resuming_offers_again() -> None:
    engine, source = preview_engine(30.0)
    for agent in ("a", "b"):
        engine.handle(ev.AgentLoggedIn(0.0, agent))
        engine.handle(ev.AgentReady(0.0, agent))
    assert len(engine.offers) == 2
    assert kinds(engine.handle(ev.AgentPaused(1.0, "a"))) == [
        "PreviewWithdrawn:agent_paused",
        "RecordCall:network:unplaced",
    ]
    assert engine.agent_state("a") is AgentState.PAUSED and len(engine.offers) == 1
    assert kinds(engine.handle(ev.DialingStopped(2.0))) == [
        "PreviewWithdrawn:dialing_stopped",
        "RecordCall:network:unplaced",
    ]
    assert engine.offers == {} and engine.agent_state("b") is AgentState.READY and engine.next_timer() is None
    refused = engine.handle(ev.ManualDial(3.0, "b", Lead("m", "+15550002222")))
    assert refused == [DialRefused("b", Lead("m", "+15550002222"), "dialing stopped")]
    assert kinds(engine.handle(ev.DialingResumed(4.0))) == ["PreviewLead"]
    assert all(not r.placed for r in source.records) and engine.stats.totals.dials == 0


def test_offers_hold_trunk_slots_and_never_outnumber_ready_agents() -> None:
    engine, _ = preview_engine(None, max_in_flight=2)
    for agent in "abc":
        engine.handle(ev.AgentLoggedIn(0.0, agent))
        engine.handle(ev.AgentReady(0.0, agent))
    assert len(engine.offers) == 2 and engine.agent_state("c") is AgentState.READY
    cid = next(iter(engine.offers))
    engine.handle(ev.PreviewDial(1.0, engine.offers[cid].agent_id, cid))
    assert len(engine.offers) == 1 and engine.in_flight == 1 and engine.agent_state("c") is AgentState.READY
    engine.handle(ev.CapacityChanged(2.0, None))
    assert len(engine.offers) == 2 and engine.snapshot().ready == 0


class GatedLeads(ListLeads):
    """A source whose manual dials pass a gate: known leads only, never the blocked number."""

    def __init__(self) -> None:
        super().__init__([])
        self.asked: list[str] = []

    def manual_lead(self, lead: Lead, now: float) -> Lead | None:
        self.asked.append(lead.lead_id)
        if lead.phone == "+15550000666":
            return None
        if lead.phone == "+15550000999":
            raise RuntimeError("registry unreachable")
        return Lead(lead.lead_id, lead.phone, fields={"checked": "yes"})


@pytest.mark.parametrize("policy", ["manual", "progressive"])
def test_manual_dials_pass_the_source_gate_carry_their_agent_and_fail_closed(policy: str) -> None:
    source = GatedLeads()
    engine = Engine(make_policy(policy), source, EngineConfig(ring_timeout=20.0))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentLoggedIn(0.0, "b"))
    engine.handle(ev.AgentReady(0.0, "a"))
    engine.handle(ev.AgentReady(0.0, "b"))
    blocked = Lead("x", "+15550000666")
    assert engine.handle(ev.ManualDial(1.0, "a", blocked)) == [DialRefused("a", blocked, "refused by the lead source")]
    assert engine.agent_state("a") is AgentState.READY and engine.in_flight == 0
    (dial,) = engine.handle(ev.ManualDial(2.0, "b", Lead("y", "+15550000123")))
    assert isinstance(dial, DialLead) and dial.lead.fields == {"checked": "yes"}  # what the source returned
    assert engine.preview_state("b") is PreviewState.RESERVED
    # Agent a is idle longer, yet the person b dialed is b's.
    assert engine.handle(ev.CallAnsweredByPerson(6.0, dial.call_id)) == [ConnectCall(dial.call_id, "b")]
    (dial2,) = engine.handle(ev.ManualDial(7.0, "a", Lead("z", "+15550000124")))
    engine.handle(ev.CallFailed(9.0, dial2.call_id, "no_answer"))
    assert engine.agent_state("a") is AgentState.READY
    # A gate that fails is a fault: refused, and dialing stops until resumed.
    broken = Lead("w", "+15550000999")
    actions = engine.handle(ev.ManualDial(10.0, "a", broken))
    assert kinds(actions) == ["Alert", "DialRefused"] and not engine.dialing
    assert source.asked == ["x", "y", "z", "w"]


def test_a_source_without_the_hook_refuses_every_manual_dial() -> None:
    engine, source = preview_engine(None, policy="manual")
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    assert engine.handle(ev.AgentReady(0.0, "a")) == []  # manual: the engine offers nothing
    lead = Lead("1", "+15550000001")
    (refused,) = engine.handle(ev.ManualDial(1.0, "a", lead))
    assert isinstance(refused, DialRefused) and "manual_lead" in refused.reason
    assert engine.agent_state("a") is AgentState.READY and source.records == [] and engine.stats.totals.dials == 0


def test_a_floor_that_never_previews_keeps_its_counters_as_they_were() -> None:
    engine, _ = preview_engine(policy="progressive")
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentReady(0.0, "a"))
    assert set(engine.agent_counts) == set(AgentState) and set(engine.stats.agent_seconds) == set(AgentState) - {
        AgentState.LOGGED_OUT
    }


# --- a stream of whatever a runtime could send ---------------------------------------------------------------

AGENT_MOVES = ("login", "ready", "pause", "logout", "wrap", "wrap_pause")
CALL_MOVES = (
    "ringing",
    "person",
    "person",
    "person_late",
    "machine",
    "failed",
    "not_placed",
    "ended",
    "ended",
    "bridge",
)
KINDS = ("agent", "agent", "offer", "offer", "offer", "call", "call", "call", "call", "call", "manual", "time", "stop")
STEP = st.tuples(st.sampled_from(KINDS), st.integers(0, 9), st.integers(0, 3), st.floats(0.1, 40.0))


class ManualSource(ListLeads):
    def manual_lead(self, lead: Lead, now: float) -> Lead | None:
        return lead if lead.phone.endswith("1") else None


def agent_event(move: str, t: float, agent: str) -> ev.Event:
    if move == "login":
        return ev.AgentLoggedIn(t, agent)
    if move == "ready":
        return ev.AgentReady(t, agent)
    if move == "pause":
        return ev.AgentPaused(t, agent)
    if move == "logout":
        return ev.AgentLoggedOut(t, agent)
    return ev.WrapUpDone(t, agent, pause=move == "wrap_pause")


def call_event(move: str, t: float, cid: int, dialed_at: float) -> ev.Event:
    if move == "ringing":
        return ev.CallRinging(t, cid)
    if move == "person":
        return ev.CallAnsweredByPerson(t, cid)
    if move == "person_late":  # detection took 3 s: past the connect limit
        return ev.CallAnsweredByPerson(t, cid, answered_at=max(dialed_at, t - 3.0))
    if move == "machine":
        return ev.CallAnsweredByMachine(t, cid)
    if move == "failed":
        return ev.CallFailed(t, cid, "busy")
    if move == "not_placed":
        return ev.CallNotPlaced(t, cid)
    if move == "ended":
        return ev.CallEnded(t, cid)
    return ev.CallBridgeFailed(t, cid, 486)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=20, max_size=80), timeout=st.one_of(st.none(), st.floats(1.0, 30.0)))
def test_stream_keeps_one_record_per_call_and_abandons_nobody_whose_agent_stayed(
    steps: list[tuple[Any, ...]], timeout: float | None
) -> None:
    source = ManualSource(Lead(str(i), f"+1555{i:07d}") for i in range(200))
    engine = Engine(make_policy("preview", timeout=timeout), source, EngineConfig(ring_timeout=20.0))
    agents = [f"ag{i}" for i in range(4)]
    ids: set[int] = set()
    records: list[CallRecord] = []
    orphans: set[int] = set()  # calls whose reserved agent logged out while they rang
    failed_bridges: set[int] = set()
    late: set[int] = set()  # answered after detection had used up the connect limit
    connects: dict[int, str] = {}
    reserved_for: dict[int, str] = {}
    t = 0.0
    preamble = [ev.AgentLoggedIn(0.0, a) for a in agents] + [ev.AgentReady(0.0, a) for a in agents]

    def feed(event: ev.Event) -> None:
        try:
            actions = engine.handle(event)
        except InvalidTransition:
            return
        for a in actions:
            if isinstance(a, (PreviewLead, DialLead)):
                ids.add(a.call_id)
            if isinstance(a, PreviewLead):
                reserved_for[a.call_id] = a.agent_id
            if isinstance(a, ConnectCall):
                connects[a.call_id] = a.agent_id
            if isinstance(a, RecordCall):
                records.append(a.record)
            assert not isinstance(a, PlayAbandonMessage) or a.call_id in orphans | failed_bridges | late

    for event in preamble:
        feed(event)
    for kind, what, index, pause in steps:
        t += 0.5
        if kind == "time":
            t += pause
            feed(ev.TimeAdvanced(t))
        elif kind == "stop":
            feed(ev.DialingStopped(t) if what % 3 == 0 else ev.DialingResumed(t))
        elif kind == "agent":
            agent = agents[index]
            move = AGENT_MOVES[what % len(AGENT_MOVES)]
            if move == "logout" and engine.preview_state(agent) is PreviewState.RESERVED:
                call_id = engine.agents[agent].call_id
                assert call_id is not None
                orphans.add(call_id)
            feed(agent_event(move, t, agent))
        elif kind == "offer":
            offers = list(engine.offers.values())
            if not offers:
                feed(ev.PreviewDial(t, agents[index], 10**6))
            elif what < 8:
                offer = offers[index % len(offers)]
                feed(ev.PreviewDial(t, offer.agent_id, offer.call_id))
            else:
                offer = offers[index % len(offers)]
                feed(ev.PreviewSkip(t, offer.agent_id, offer.call_id, "no"))
        elif kind == "manual":  # phones ending in 1 pass the source's gate
            feed(ev.ManualDial(t, agents[index], Lead(f"m{len(ids)}", f"+1555999000{what}")))
        else:
            calls = list(engine.calls.values())
            if calls:
                call = calls[index % len(calls)]
                move = CALL_MOVES[what % len(CALL_MOVES)]
                if move == "bridge" and call.state is CallState.CONNECTED:
                    failed_bridges.add(call.call_id)
                if move == "person_late" and max(call.dialed_at, t - 3.0) + 2.0 <= t:
                    late.add(call.call_id)  # the runtime's detection used up the connect limit: fail closed
                feed(call_event(move, t, call.call_id, call.dialed_at))
        for counts_state in (*AgentState, *PreviewState):
            if counts_state is not AgentState.LOGGED_OUT:
                n = sum(a.state is counts_state for a in engine.agents.values())
                assert engine.agent_counts.get(counts_state, 0) == n
        # One offer per previewing agent, and only theirs.
        assert len(engine.offers) == engine.agent_counts.get(PreviewState.PREVIEWING, 0)
        assert all(engine.agents[o.agent_id].call_id == o.call_id for o in engine.offers.values())
    # Drain: stop, end every call, and every call id has exactly one record.
    t += 1.0
    feed(ev.DialingStopped(t))
    for call in list(engine.calls.values()):
        t += 0.1
        if call.state in (CallState.DIALING, CallState.RINGING):
            feed(ev.CallFailed(t, call.call_id, "no_answer"))
        else:
            feed(ev.CallEnded(t, call.call_id))
    t += 100.0
    feed(ev.TimeAdvanced(t))
    for call in list(engine.calls.values()):
        feed(ev.CallEnded(t, call.call_id))
    assert engine.calls == {} and engine.offers == {}
    assert sorted(r.call_id for r in records) == sorted(ids)
    for r in records:
        assert not r.abandoned or r.call_id in orphans | failed_bridges | late, r
        if r.call_id in connects and r.call_id not in orphans:
            assert connects[r.call_id] == r.reserved_for  # a preview or manual call reaches its own agent
        if r.call_id in reserved_for:
            assert r.reserved_for == reserved_for[r.call_id]
    totals = engine.stats.totals
    assert totals.live_answers == totals.connects + totals.abandoned
    label(f"connects: {min(totals.connects, 2)}+, late answers: {bool(totals.abandoned)}, orphans: {bool(orphans)}")


def test_docs_list_every_preview_move_in_table_order() -> None:
    """docs/engine.md says its preview tables are generated from state.py: hold it to that."""
    from dialer_testkit import doc_table, table_rows

    assert doc_table("| agent state (preview, manual) | on | goes to |") == table_rows(AGENT_PREVIEW_TRANSITIONS)
    assert doc_table("| offered lead | on | goes to (call state) |") == table_rows(OFFER_TRANSITIONS)


class FailingLeads(ListLeads):
    """Hands out one lead, then its store is gone."""

    def next_lead(self, now: float) -> Lead | None:
        if self.records or len(self) < 40:
            raise RuntimeError("store gone")
        return super().next_lead(now)


def test_a_fault_while_offering_takes_every_lead_back() -> None:
    engine = Engine(make_policy("preview"), FailingLeads(lead_list()._queue), EngineConfig(ring_timeout=20.0))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentLoggedIn(0.0, "b"))
    engine.handle(ev.AgentReady(0.0, "a"))  # offered the one lead
    assert len(engine.offers) == 1
    actions = engine.handle(ev.AgentReady(1.0, "b"))  # the store fails: fault, and a's lead goes back
    assert kinds(actions) == ["Alert", "PreviewWithdrawn:dialing_stopped", "RecordCall:network:unplaced"]
    assert engine.offers == {} and not engine.dialing and engine.stats.totals.dials == 0
    assert engine.agent_state("a") is AgentState.READY


def test_a_press_after_a_fault_found_between_events_is_withdrawn_not_dialed() -> None:
    engine, _ = preview_engine(None)
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    cid = offer_of(engine.handle(ev.AgentReady(0.0, "a"))).call_id

    def broken(now: float) -> float:
        raise RuntimeError("policy broke")

    engine.policy.next_wakeup = broken  # type: ignore[method-assign]
    assert engine.next_timer() is None and not engine.dialing  # the fault, found by a query
    actions = engine.handle(ev.PreviewDial(2.0, "a", cid))
    assert kinds(actions) == ["Alert", "PreviewWithdrawn:dialing_stopped", "RecordCall:network:unplaced"]
    assert engine.stats.totals.dials == 0 and engine.in_flight == 0
