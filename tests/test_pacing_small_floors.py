"""Small floors at strict caps (issue 16 item 6): a calendar day whose whole allowance is a few dozen
abandonments learns its calibration from the first few and keeps no grown reserve; big windows and rolling windows
are paced exactly as before."""

from __future__ import annotations

import math

import pytest

from dialer import Engine, SyntheticLeads
from dialer.engine import events as ev
from dialer.pacing import Predictive
from sim.markov import MarkovModel
from sim.runtime import run_replication


def _with_answers(policy: Predictive, answers_in_15_min: int) -> Predictive:
    """``policy`` after 15 minutes of live answers at the given pace (its answer rate is then known)."""
    engine = Engine(policy, SyntheticLeads())
    engine.handle(ev.AgentLoggedIn(0.0, "a0"))
    engine.handle(ev.TimeAdvanced(1.0))  # the policy starts its event-time feed on a decision
    for k in range(answers_in_15_min):
        policy._count(1.0 + 899.0 * k / answers_in_15_min, 1, 0)
    return policy


def test_a_small_strict_day_is_recognised_by_its_allowance() -> None:
    # 25 answers per 15 minutes: 800 in an 8-h day, so 8 abandonments at 1% and 24 at 3% (under 30).
    assert _with_answers(Predictive(0.01), 25).small_window(900.0)
    assert _with_answers(Predictive(0.03), 25).small_window(900.0)
    # 60 per 15 minutes at 2% (10 agents): 38 abandonments a day, small since the prior grew with the allowance.
    assert _with_answers(Predictive(0.02), 60).small_window(900.0)
    # 100 per 15 minutes at 2%: 64 abandonments a day, not small; 20 agents at 3% neither.
    assert not _with_answers(Predictive(0.02), 100).small_window(900.0)
    assert not _with_answers(Predictive(0.03), 100).small_window(900.0)
    # Rolling windows, campaign periods (30 shifts of answers) and switched off: never.
    assert not _with_answers(Predictive(0.01, window="rolling", window_hours=1.0), 25).small_window(900.0)
    assert not _with_answers(Predictive(0.01, window="campaign"), 25).small_window(900.0)
    assert not _with_answers(Predictive(0.01, small_allowance=0.0), 25).small_window(900.0)
    # Before the answer rate is known (two minutes of answers), the full reserve.
    assert not Predictive(0.01).small_window(0.0)


def test_a_small_strict_day_keeps_only_the_base_caution() -> None:
    small = _with_answers(Predictive(0.01, caution=1.0, caution_answers=6000.0), 25)
    assert small.effective_caution(900.0) == pytest.approx(1.0)
    grown = _with_answers(Predictive(0.01, caution=1.0, caution_answers=6000.0, small_allowance=0.0), 25)
    assert grown.effective_caution(900.0) == pytest.approx(math.sqrt(6000.0 / 800.0), rel=0.01)
    rolling = _with_answers(Predictive(0.01, window="rolling", window_hours=1.0, caution_answers=6000.0), 25)
    assert rolling.effective_caution(900.0) == 4.0  # a 1-h window of 100 answers keeps its whole reserve


def test_near_the_cap_a_small_strict_day_keeps_the_guards_full_reserve() -> None:
    """The guard against the cap on the next 30 answers keeps the grown caution on a small strict day: with the
    window at the cap's edge it binds, and allows less than a guard with the base caution would."""
    p = _with_answers(Predictive(0.01, caution_answers=6000.0), 25)
    p.ledger.count(900.0, 575, 6)  # 600 answers and 6 abandonments: at the cap
    assert p.small_window(900.0)
    grown = p._grown_caution(900.0)
    assert grown > 2.5
    guard = p._allowance(0.01 * (1.0 - 0.5 * p.safety), 30.0, 600, 6, grown)
    assert 0.0 < p.budget(900.0) == pytest.approx(guard)
    assert guard < 0.5 * p._allowance(0.01 * (1.0 - 0.5 * p.safety), 30.0, 600, 6, p.caution)


def test_a_small_strict_day_learns_its_calibration_from_a_few_abandonments() -> None:
    """Eight hundred answers charged a 1% threshold with one abandonment: the marginal risk was eight times the
    realised one. With a prior worth 10 abandonments the scale creeps to 1.6; worth 2, it moves to about 3.3."""
    scales = {}
    for allowance in (50.0, 0.0):
        p = _with_answers(Predictive(0.01, small_allowance=allowance), 25)
        p._remember(0.0, 0.01)
        p._calibrate(900.0, 800, 1)
        scales[allowance] = p.scale
    assert scales[0.0] == pytest.approx((8.0 + 10.0) / (1.0 + 10.0), rel=0.05)
    assert scales[50.0] == pytest.approx((8.0 + 2.0) / (1.0 + 2.0), rel=0.05)


def test_the_small_days_prior_grows_with_its_allowance() -> None:
    """The calibration's prior is worth a tenth of the day's allowance, never under 2 nor over 10 abandonments: a
    day allowing 38 (10 agents at 2%) follows its first abandonments less closely than one allowing 8."""
    for per_15_min, target, prior in ((25, 0.01, 2.0), (60, 0.02, 0.1 * 0.02 * 60 * 32)):
        p = _with_answers(Predictive(target), per_15_min)
        assert p.window_allowance(900.0) == pytest.approx(target * per_15_min * 32, rel=0.01)
        p._remember(0.0, target)
        p._calibrate(900.0, 1000, 2)
        charged = target * 1000
        assert p.scale == pytest.approx((charged + prior) / (2.0 + prior), rel=0.02)
    big = _with_answers(Predictive(0.02, small_prior_share=1.0), 60)
    big._remember(0.0, 0.02)
    big._calibrate(900.0, 1000, 2)
    assert big.scale == pytest.approx((20.0 + 10.0) / (2.0 + 10.0), rel=0.02)  # capped at calibration_prior


def test_five_agents_at_one_percent_spend_the_day_without_crossing_it() -> None:
    """The Markov floor of 5 agents (p = 0.3) at a 1% cap: before this change a day ended at 0.11% (a tenth of the
    allowance); now it spends most of it, and no day ends over the cap."""
    model = MarkovModel(5, 0.3)
    scen = model.scenario(hours=8, replications=4, seed=11, policy="predictive", target_abandon_rate=0.01)
    rates = []
    for i in range(scen.replications):
        t = run_replication(scen, i).totals
        rates.append(t["abandoned"] / t["live_answers"])
    assert max(rates) <= 0.01
    assert sum(rates) / len(rates) > 0.004


def test_rolling_windows_are_paced_as_before() -> None:
    """A 1-h rolling window is not a small strict day: the same replication with the new behaviour switched off
    dials exactly the same calls."""
    model = MarkovModel(5, 0.3)
    scen = model.scenario(
        hours=3, replications=1, seed=11, policy="predictive", target_abandon_rate=0.01, rolling_window_hours=1.0
    )
    on = run_replication(scen, 0).totals
    off = run_replication(scen.replace(pacing=(("small_allowance", 0.0),)), 0).totals
    assert on == off


def test_a_window_allowing_many_abandonments_is_paced_as_before() -> None:
    """20 agents at 3% over an 8-h shift (about 120 abandonments allowed): the new behaviour never switches on,
    and the same replication dials exactly the same calls with it switched off."""
    model = MarkovModel(20, 0.3)
    scen = model.scenario(
        hours=1, replications=1, seed=11, policy="predictive", target_abandon_rate=0.03, pacing=(("shift_hours", 8.0),)
    )
    on = run_replication(scen, 0).totals
    off = run_replication(scen.replace(pacing=(("shift_hours", 8.0), ("small_allowance", 0.0))), 0).totals
    assert on["abandoned"] > 0
    assert on == off


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_small_prior_share_out_of_range_is_refused(bad: float) -> None:
    from dialer.errors import ConfigError

    with pytest.raises(ConfigError, match="small_prior_share"):
        Predictive(0.02, small_prior_share=bad)
