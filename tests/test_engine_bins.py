"""The entry-time histograms the engine keeps for pacing (``Snapshot.ringing_bins`` and ``Snapshot.busy_bins``).

They are updated at each transition rather than computed from a walk, so every transition that moves a call out of
ringing or an agent in or out of a busy state must move the histogram too: checked here against a walk of the
engine's own calls and agents, through a whole simulated campaign and through the rarer transitions one by one.
"""

from __future__ import annotations

import math
from collections import Counter

from scripted_policy import Scripted

from dialer import Engine, SyntheticLeads
from dialer.engine import events as ev
from dialer.engine.core import EngineConfig
from dialer.engine.snapshot import BUSY_BIN, RING_BIN
from dialer.engine.state import AgentState, CallState
from sim import scenario
from sim.runtime import SimulatedCampaign


def _walked(engine: Engine) -> tuple[Counter[int], dict[AgentState, Counter[int]]]:
    ring: Counter[int] = Counter(
        math.floor(c.dialed_at / RING_BIN)
        for c in engine.calls.values()
        if c.state in (CallState.DIALING, CallState.RINGING)
    )
    busy = {s: Counter[int]() for s in (AgentState.ON_CALL, AgentState.WRAP_UP)}
    for a in engine.agents.values():
        if a.state in busy:
            busy[a.state][math.floor(a.since / BUSY_BIN)] += 1
    return ring, busy


def _assert_consistent(engine: Engine) -> None:
    snap = engine.snapshot()
    ring, busy = _walked(engine)
    width, bins = snap.ringing_bins()
    assert width == RING_BIN
    assert dict(bins) == dict(ring)
    assert sum(bins.values()) == snap.ringing
    assert all(n > 0 for n in bins.values())  # emptied bins are dropped, so reading costs only live bins
    for state, count in ((AgentState.ON_CALL, snap.on_call), (AgentState.WRAP_UP, snap.wrap_up)):
        width, bins = snap.busy_bins(state)
        assert width == BUSY_BIN
        assert dict(bins) == dict(busy[state])
        assert sum(bins.values()) == count


def test_histograms_follow_a_whole_campaign() -> None:
    """Answers, machines, busies, ring-outs, abandonments, wrap-ups and breaks over an hour of a 30-agent floor."""
    s = scenario.default().replace(agents=30, hours=1.0, replications=1, seed=3, policy="predictive")
    campaign = SimulatedCampaign(s, 0)
    checks = []

    def check(env):  # type: ignore[no-untyped-def]
        while True:
            yield env.timeout(7.3)
            _assert_consistent(campaign.engine)
            checks.append(campaign.engine.snapshot().ringing)

    campaign.env.process(check(campaign.env))
    campaign.run()
    assert len(checks) > 400 and max(checks) > 0  # checked while calls were really ringing
    tot = campaign.engine.stats.totals
    assert tot.abandoned > 0 and tot.no_answer > 0 and tot.machine_answers > 0  # the transitions really happened


def test_rare_transitions_keep_the_histograms_exact() -> None:
    policy = Scripted()
    engine = Engine(policy, SyntheticLeads(), EngineConfig(ring_timeout=30.0))
    for i in range(3):
        engine.handle(ev.AgentLoggedIn(0.0, f"a{i}"))
    policy.pending = 6
    engine.handle(ev.TimeAdvanced(0.1))
    c = sorted(engine.calls)
    _assert_consistent(engine)
    assert sum(engine.snapshot().ringing_bins()[1].values()) == 6
    engine.handle(ev.CallRinging(0.6, c[0]))  # dialing -> ringing: still not answered, still counted
    _assert_consistent(engine)
    engine.handle(ev.CallFailed(0.7, c[1], ev.FailureReason.NETWORK))  # a network failure before any ringing
    _assert_consistent(engine)
    engine.handle(ev.AgentReady(1.0, "a0"))
    engine.handle(ev.CallAnsweredByPerson(2.0, c[0]))  # connected: out of ringing, a0 into on-call
    _assert_consistent(engine)
    assert engine.snapshot().busy_bins(AgentState.ON_CALL)[1] == {2: 1}
    engine.handle(ev.CallAnsweredByPerson(3.4, c[2]))  # nobody ready: queued, then abandoned
    _assert_consistent(engine)
    engine.handle(ev.TimeAdvanced(10.0))
    _assert_consistent(engine)
    engine.handle(ev.AgentLoggedOut(11.0, "a0"))  # the agent vanishes mid-call
    _assert_consistent(engine)
    assert engine.snapshot().busy_bins(AgentState.ON_CALL)[1] == {}
    engine.handle(ev.AgentReady(12.0, "a1"))
    engine.handle(ev.CallAnsweredByMachine(12.5, c[3]))
    _assert_consistent(engine)
    engine.handle(ev.CallAnsweredByPerson(13.2, c[4]))
    engine.handle(ev.CallEnded(80.0, c[4]))  # talk ends: a1 into wrap-up
    _assert_consistent(engine)
    assert engine.snapshot().busy_bins(AgentState.WRAP_UP)[1] == {80: 1}
    engine.handle(ev.WrapUpDone(95.0, "a1"))
    engine.handle(ev.TimeAdvanced(200.0))  # ring timeouts end whatever still rings
    _assert_consistent(engine)
    assert engine.snapshot().ringing_bins()[1] == {}


def test_a_failed_bridge_moves_the_agent_out_of_the_on_call_histogram() -> None:
    policy = Scripted()
    engine = Engine(policy, SyntheticLeads(), EngineConfig(ring_timeout=30.0))
    engine.handle(ev.AgentLoggedIn(0.0, "a0"))
    engine.handle(ev.AgentReady(0.0, "a0"))
    policy.pending = 1
    engine.handle(ev.TimeAdvanced(0.1))
    (cid,) = engine.calls
    engine.handle(ev.CallAnsweredByPerson(3.0, cid))
    assert engine.snapshot().busy_bins(AgentState.ON_CALL)[1] == {3: 1}
    engine.handle(ev.CallBridgeFailed(4.0, cid, 486))  # the agent's phone refused: paused, message plays
    _assert_consistent(engine)
    assert engine.snapshot().busy_bins(AgentState.ON_CALL)[1] == {} and engine.snapshot().paused == 1
    engine.handle(ev.CallEnded(6.0, cid))
    _assert_consistent(engine)
