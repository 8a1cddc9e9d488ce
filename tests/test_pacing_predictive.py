"""Predictive pacing: blind start, spending and tightening on the regulator's window, and whole campaigns."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

import numpy as np
import pytest
from scripted_policy import Scripted

from dialer import Engine, SyntheticLeads
from dialer.engine import events as ev
from dialer.engine.actions import DialLead
from dialer.engine.snapshot import Snapshot
from dialer.engine.state import AgentState
from dialer.errors import ConfigError
from dialer.pacing import Predictive, make_policy
from dialer.pacing.predictive import AbandonLedger
from sim import scenario, simulate

DAY = 86400.0


def _floor(policy: Predictive, ready: int) -> tuple[Engine, int]:
    """An engine with ``ready`` agents coming ready one by one; returns it and the calls launched."""
    engine = Engine(policy, SyntheticLeads())
    launched = 0
    for i in range(ready):
        engine.handle(ev.AgentLoggedIn(0.0, f"a{i}"))
    for i in range(ready):
        launched += len(engine.handle(ev.AgentReady(1.0, f"a{i}")))
    return engine, launched


def test_blind_start_is_progressive() -> None:
    _, launched = _floor(Predictive(0.03), 10)
    assert launched == 10


def test_with_evidence_and_budget_it_dials_ahead_of_the_agents() -> None:
    policy = Predictive(0.03, warmup_answers=0)
    _, launched = _floor(policy, 10)
    assert launched > 10
    assert launched <= 10 * policy.max_lines_per_agent


def test_a_window_over_the_cap_tightens_to_progressive() -> None:
    policy = Predictive(0.03, warmup_answers=0)
    for _ in range(100):
        policy.ledger.add(0.5, False)
    for _ in range(5):  # 5 / 105 abandoned: over 3% on today's window
        policy.ledger.add(0.5, True)
    assert policy.budget(1.0) == 0.0
    _, launched = _floor(policy, 10)
    assert launched == 10
    # Tomorrow is a new calendar-day window with its budget back.
    assert policy.budget(DAY + 1.0) > 0.0


def test_zero_target_never_dials_ahead() -> None:
    policy = Predictive(0.0, warmup_answers=0)
    _, launched = _floor(policy, 10)
    assert launched == 10


def test_ledger_windows() -> None:
    rolling = AbandonLedger("rolling", hours=1.0)
    rolling.add(0.0, True)
    rolling.add(1800.0, False)
    rolling.roll(3000.0)
    assert (rolling.abandoned, rolling.live) == (1, 2)
    rolling.roll(3700.0)
    assert (rolling.abandoned, rolling.live, rolling.rate) == (0, 1, 0.0)

    day = AbandonLedger("day", day_offset=3600.0)  # clock zero is 01:00 local
    day.add(DAY - 3700.0, True)  # 23:58 local
    day.add(DAY - 3500.0, False)  # 00:01 local, next day: a new window
    assert (day.abandoned, day.live) == (0, 1)
    day.add(DAY - 3650.0, True)  # a straggler from yesterday does not pollute today
    assert (day.abandoned, day.live) == (0, 1)

    campaign = AbandonLedger("campaign")
    campaign.add(0.0, True)
    campaign.add(29 * DAY, False)
    assert (campaign.abandoned, campaign.live) == (1, 2)
    campaign.add(30 * DAY + 5.0, False)  # the FTC's next 30-day period
    assert (campaign.abandoned, campaign.live) == (0, 1)

    with pytest.raises(ConfigError):
        AbandonLedger("week")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        AbandonLedger("rolling", hours=48.0)


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"target_abandon_rate": 1.5}, "target_abandon_rate"),
        ({"safety": 1.0}, "safety"),
        ({"window": "week"}, "window"),
        ({"max_lines_per_agent": 0.5}, "max_lines_per_agent"),
        ({"prior_answer_rate": 0.0}, "prior_answer_rate"),
        ({"small_allowance": -1.0}, "small_allowance"),
        ({"small_calibration_prior": 0.0}, "small_calibration_prior"),
    ],
)
def test_bad_parameters_name_the_key(params: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_policy("predictive", **params)
    assert key in str(err.value)


def test_campaign_beats_progressive_and_stays_under_the_cap_every_day() -> None:
    base = scenario.default().replace(hours=2.0, replications=2, seed=11)
    pred = simulate(base.replace(policy="predictive"), workers=2)
    prog = simulate(base.replace(policy="progressive"), workers=2)
    assert pred.pooled["talk_fraction"] > 1.1 * prog.pooled["talk_fraction"]
    for rep in pred.replications:
        for d in rep["days"]:
            assert d["abandon_rate"] <= 0.03
    assert pred.pooled["abandon_rate"] > 0.01  # it spends the budget instead of hoarding it


def test_scenario_can_choose_the_regulators_window() -> None:
    s = scenario.default().replace(
        policy="predictive", hours=1.0, replications=1, pacing=(("window", "rolling"), ("window_hours", 1.0))
    )
    policy = s.build_policy()
    assert isinstance(policy, Predictive)
    assert policy.ledger.kind == "rolling"
    report = simulate(s)
    assert report.pooled["abandon_rate"] <= 0.03


class _Hold(Predictive):
    """Predictive that launches nothing while the floor is being built, then decides normally."""

    building = True

    def decide(self, snap: Snapshot) -> int:
        return 0 if self.building else super().decide(snap)


class _Exact(Snapshot):
    """A snapshot whose histograms have millisecond bins, walked from the engine: ages as good as exact."""

    __slots__ = ()
    W = 0.001

    def ringing_bins(self) -> tuple[float, Mapping[int, int]]:
        c = Counter(math.floor((self.now - age) / self.W) for age in self.ringing_times())
        return self.W, c

    def busy_bins(self, state: AgentState) -> tuple[float, Mapping[int, int]]:
        c = Counter(math.floor((self.now - t) / self.W) for s, t in self.busy_agent_times() if s is state)
        return self.W, c


def _spread_floor(agents: int, ringing: int, rng: np.random.Generator) -> tuple[Engine, Scripted]:
    """A floor built through the engine's events in time order, as it would be mid-shift: agents connected over
    the last 150 s, each to a call that rang 4-16 s, and ``ringing`` calls dialed over the last 25 s. The engine's
    policy is a launcher that launches only what it is told to."""
    launcher = Scripted()
    engine = Engine(launcher, SyntheticLeads(), start=-700.0)
    for i in range(agents):
        engine.handle(ev.AgentLoggedIn(-700.0, f"a{i}"))
    plan: list[tuple[float, int, int]] = []  # (time, 0 = dial / 1 = answer, agent or -1)
    for i, t in enumerate(rng.uniform(-150.0, -1.0, agents)):
        plan += [(float(t) - float(rng.uniform(4.0, 16.0)), 0, i), (float(t), 1, i)]
    plan += [(float(t), 0, -1) for t in rng.uniform(-25.0, -0.5, ringing)]
    call_of: dict[int, int] = {}
    for t, what, i in sorted(plan):
        if what:
            engine.handle(ev.AgentReady(t, f"a{i}"))
            engine.handle(ev.CallAnsweredByPerson(t, call_of[i]))
        else:
            launcher.pending = 1
            engine.handle(ev.TimeAdvanced(t))
            call_of[i] = max(engine.calls)
    return engine, launcher


def _learnt_talk(rng: np.random.Generator, *policies: Predictive) -> None:
    """Calls finished before (talk ~ lognormal, mean 120 s): what the forecast of free agents comes from."""
    for x in rng.lognormal(math.log(120.0) - 0.18, 0.6, 1000):
        for p in policies:
            p.agents.talk.add(float(x))


def test_decisions_from_the_engines_histograms_match_exact_ages() -> None:
    """The policy reads the floor from the engine's binned histograms (a quarter-second for ringing calls, a
    second for agents); its decisions must match what exact ages would give, on a floor spread out in time."""
    rng = np.random.default_rng(5)
    engine, _ = _spread_floor(300, 10, rng)  # the launcher has nothing pending: both policies judge one floor
    policy = _Hold(0.03, warmup_answers=0)
    exact = _Hold(0.03, warmup_answers=0)
    _learnt_talk(rng, policy, exact)
    policy.building = exact.building = False
    seen = []
    for step in range(30):
        engine.handle(ev.TimeAdvanced(0.37 * step))
        a = policy.decide(engine.snapshot())
        b = exact.decide(_Exact(engine))
        assert abs(a - b) <= max(2, 0.03 * b), (step, a, b)
        seen.append(b)
    assert max(seen) > 0  # a real decision was compared, not two zeros


def test_calls_the_coming_decisions_will_launch_hold_back_a_launch() -> None:
    """While calls are being launched, some launched in the next seconds will be answered before a call launched
    now and take the agents it was counting on: counting them (``future_launches``) must launch fewer calls on
    the same floor, and ignoring them must give the plain forecast."""
    rng = np.random.default_rng(7)
    engine, launcher = _spread_floor(300, 0, rng)
    ahead = _Hold(0.03, warmup_answers=0, future_launches=0.5)
    plain = _Hold(0.03, warmup_answers=0, future_launches=0.0)
    _learnt_talk(rng, ahead, plain)
    ahead.building = plain.building = False
    pairs = []
    for step in range(40):  # two launches a second, as the floor's own pacing would
        launcher.pending = 2
        engine.handle(ev.TimeAdvanced(0.5 * step))
        snap = engine.snapshot()
        pairs.append((ahead.decide(snap), plain.decide(snap)))
    assert ahead._launch_rate() == pytest.approx(4.0, rel=0.1)  # dials per second, from the engine
    assert all(a <= b for a, b in pairs)
    assert any(a < b for a, b in pairs[-10:])  # once the rate is known, the coming launches count


def test_marginal_risk_treats_coming_answers_as_demand() -> None:
    from dialer.pacing.predictive import marginal_risk

    gap_mu, gap_var = [-3.0, -2.0], [4.0, 5.0]
    nm, nv, w = [0.1, 0.2], [0.09, 0.16], [0.5, 0.5]
    base = marginal_risk(3, gap_mu, gap_var, nm, nv, w)
    ahead = marginal_risk(3, gap_mu, gap_var, nm, nv, w, [0.5, 1.5])
    shifted = marginal_risk(3, [-2.5, -0.5], [4.5, 6.5], nm, nv, w)
    assert ahead > base
    assert ahead == pytest.approx(shifted)


def test_wrap_ups_reported_by_the_engine_teach_wrap_time_and_breaks() -> None:
    policy = Predictive(0.03, prior_wrap_time=0.0)
    engine = Engine(policy, SyntheticLeads())
    engine.handle(ev.AgentLoggedIn(0.0, "a0"))
    engine.handle(ev.AgentReady(0.0, "a0"))
    (call_id,) = list(engine.calls)
    engine.handle(ev.CallAnsweredByPerson(5.0, call_id))
    engine.handle(ev.CallEnded(65.0, call_id))
    before = policy.agents.pause_probability
    engine.handle(ev.WrapUpDone(80.0, "a0", pause=True))
    assert policy.agents.wrap_reports == 1
    assert policy.agents.wrap_mean == pytest.approx(15.0 / 6.0)  # one 15-s wrap against a 0-s prior worth five
    assert policy.agents.pause_probability > before


def test_window_counts_an_abandonment_when_it_happens_not_when_the_call_ends() -> None:
    """Nobody free: the person answering is abandoned at the 2-s limit; the window must know at once, not after
    the recorded message ends and the call's record arrives."""
    policy = Predictive(0.03)
    engine = Engine(policy, SyntheticLeads())
    engine.handle(ev.AgentLoggedIn(0.0, "a0"))
    engine.handle(ev.AgentReady(0.0, "a0"))
    first = next(iter(engine.calls))
    engine.handle(ev.CallAnsweredByPerson(3.0, first))  # a0 takes it
    engine.handle(ev.CallEnded(4.0, first))  # a0 now in wrap-up: nobody free
    engine.handle(ev.WrapUpDone(4.0, "a0", pause=True))
    engine.handle(ev.AgentReady(5.0, "a0"))
    second = next(c for c in engine.calls)
    engine.handle(ev.AgentPaused(5.5, "a0"))
    engine.handle(ev.CallAnsweredByPerson(6.0, second))
    engine.handle(ev.TimeAdvanced(8.5))  # the connect limit fired: abandoned, message playing
    assert engine.snapshot().abandoning == 1
    assert (policy.ledger.live, policy.ledger.abandoned) == (2, 1)
    engine.handle(ev.CallEnded(16.0, second))  # the record arrives: not counted twice
    assert (policy.ledger.live, policy.ledger.abandoned) == (2, 1)


def test_caution_grows_on_small_windows_only() -> None:
    def caution(answers_in_15_min: int) -> float:
        # small_allowance=0: the growth itself (small strict days skip it, see test_pacing_small_floors)
        policy = Predictive(0.03, caution=1.0, caution_answers=3000.0, small_allowance=0.0)
        engine = Engine(policy, SyntheticLeads())
        engine.handle(ev.AgentLoggedIn(0.0, "a0"))
        engine.handle(ev.TimeAdvanced(1.0))  # the policy starts its event-time feed on a decision
        for k in range(answers_in_15_min):
            policy._count(1.0 + 899.0 * k / answers_in_15_min, 1, 0)
        return policy.effective_caution(900.0)

    # 8-h day: 100 answers per 15 min is 3,200 a day (20 agents), 25 is 800 (5 agents).
    assert caution(100) == pytest.approx(1.0)
    assert caution(25) == pytest.approx(math.sqrt(3000.0 / 800.0), rel=0.01)
    assert caution(1) == 4.0  # bounded


def test_calibration_half_life_is_never_shorter_than_its_minutes_of_answers() -> None:
    """On a big floor a thousand answers pass in a minute or two; counted in answers alone the calibration would
    forget within minutes and swing. With ``calibration_minutes`` it keeps at least that long a memory."""
    policies = {m: Predictive(0.03, calibration_answers=10, calibration_minutes=m) for m in (0.0, 30.0)}
    for p in policies.values():
        p._feed_start = 0.0
        p._count(300.0, 3000, 0)  # ten answers a second: 30 minutes are 18,000 answers
        p._remember(0.0, 0.02)
        p._calibrate(300.0, 1000, 0)  # a thousand answers charged 0.02 each, no abandonment: loosen
        p._calibrate(301.0, 100, 10)  # then a burst of ten abandonments in a hundred answers
    assert policies[0.0].scale < 1.0  # forgot the thousand answers at once: the burst alone decides
    assert policies[30.0].scale > 1.2  # the burst weighs as a hundred answers among eleven hundred


def _dial(engine: Engine, t: float, agent: str) -> list[int]:
    """Log ``agent`` in and ready at ``t``; the call ids the engine launched for it."""
    engine.handle(ev.AgentLoggedIn(t, agent))
    return [a.call_id for a in engine.handle(ev.AgentReady(t, agent)) if isinstance(a, DialLead)]


def test_outcomes_are_learnt_by_the_second_dialed_once_it_has_settled() -> None:
    """Quick outcomes must not outweigh slow ones: live answers come after seconds, no-answers after 25 s, so
    counting them as they come reads a burst as mostly live, then mostly not. Learnt by the dial's second once every
    dial of it has had ``settle_seconds`` to end, each outcome counts the same whenever it came."""
    policy = Predictive(0.03, settle_seconds=40.0)
    engine = Engine(policy, SyntheticLeads())
    calls = [c for i in range(10) for c in _dial(engine, 1.0, f"a{i}")]
    assert len(calls) == 10  # blind: progressive
    prior = policy.outcomes.probabilities().copy()
    engine.handle(ev.CallAnsweredByPerson(6.0, calls[0]))
    engine.handle(ev.CallAnsweredByMachine(7.0, calls[2]))
    engine.handle(ev.CallAnsweredByMachine(8.0, calls[3]))
    engine.handle(ev.CallAnsweredByPerson(9.0, calls[1]))
    for c in calls[4:]:
        engine.handle(ev.CallFailed(26.0, c, ev.FailureReason.NO_ANSWER))
    engine.handle(ev.TimeAdvanced(41.5))  # the dials of second 1 have not all had 40 s yet
    assert policy.outcomes.seen == 0
    assert np.allclose(policy.outcomes.probabilities(), prior)
    assert policy.answers_seen == 0  # nor does the warm-up count them yet
    engine.handle(ev.TimeAdvanced(42.5))
    assert policy.outcomes.seen == 10
    assert np.allclose(policy.outcomes.counts, [2, 2, 0, 6])  # one weight each, whatever the order they came in
    assert policy.answers_seen == 2
    assert policy.ring.times[0].n == 2 and policy.ring.times[3].n == 6
    # A dial that rang longer than settle_seconds is learnt at once when it ends (nothing is lost), and the
    # policy waits that long from then on.
    engine.handle(ev.TimeAdvanced(100.0))
    policy.observe_answer(100.0, 95.0)
    assert policy.outcomes.seen == 11
    policy.observe_answer(110.0, 5.0)
    engine.handle(ev.TimeAdvanced(150.0))  # 45 s after that dial: settled at 40 s, not at 96
    assert policy.outcomes.seen == 11
    engine.handle(ev.TimeAdvanced(202.0))
    assert policy.outcomes.seen == 12
    with pytest.raises(ConfigError):
        Predictive(settle_seconds=-1.0)


def _burst(policy: Predictive, agents: int) -> tuple[Engine, list[int]]:
    """``agents`` agents logging in and coming ready at t = 1; the calls launched after each ready."""
    engine = Engine(policy, SyntheticLeads())
    for i in range(agents):
        engine.handle(ev.AgentLoggedIn(0.0, f"a{i}"))
    launched = []
    for i in range(agents):
        launched.append(sum(isinstance(a, DialLead) for a in engine.handle(ev.AgentReady(1.0, f"a{i}"))))
    return engine, launched


def test_a_big_floor_decides_in_full_at_most_every_decide_every() -> None:
    """Once 100 agents are ready, events within ``decide_every`` of a full decision launch only the progressive
    floor (here nothing: calls already ring for every ready agent), the deferred full decision is asked for
    through next_wakeup, and when it comes it catches up with what deciding at every event launched."""
    _, eager = _burst(Predictive(0.03, warmup_answers=0, decide_every=0.0), 150)
    policy = Predictive(0.03, warmup_answers=0, decide_every=0.5)
    engine, launched = _burst(policy, 150)
    assert launched[:99] == eager[:99]  # under 100 agents: a full decision after every event, as before
    assert sum(eager[99:]) > 50  # deciding at every event dialed ahead as agents came
    assert max(launched[99:]) <= 1  # deferred: at most the progressive floor
    assert policy.next_wakeup(1.0) == 1.5 and engine.next_timer() == 1.5
    ahead = sum(isinstance(a, DialLead) for a in engine.handle(ev.TimeAdvanced(1.5)))
    assert sum(launched[99:]) + ahead == pytest.approx(sum(eager[99:]), rel=0.1)
    assert policy.next_wakeup(1.5) is None  # nothing deferred any more
