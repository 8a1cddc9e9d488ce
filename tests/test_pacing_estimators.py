"""The online estimators behind predictive pacing: warm start, learning, drift, uncertainty, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dialer.errors import ConfigError
from dialer.pacing.estimators import (
    AgentModel,
    DurationEstimator,
    FloatArray,
    OutcomeEstimator,
    RingModel,
)


def test_outcomes_start_at_the_prior_and_learn_the_data() -> None:
    est = OutcomeEstimator({"live": 0.3, "machine": 0.1, "busy": 0.05}, prior_weight=50)
    assert est.probabilities() == pytest.approx([0.3, 0.1, 0.05, 0.55], abs=1e-3)
    sd0 = est.std()[0]
    rng = np.random.default_rng(1)
    for k in rng.choice(4, size=3000, p=[0.2, 0.15, 0.05, 0.6]):
        est.add(int(k))
    p = est.probabilities()
    assert p == pytest.approx([0.2, 0.15, 0.05, 0.6], abs=0.03)
    assert est.std()[0] < sd0 / 3
    lo, hi = est.interval("live")
    assert lo < 0.2 < hi
    assert hi - lo < 0.1


def test_outcomes_follow_drift_within_a_few_half_lives() -> None:
    est = OutcomeEstimator({"live": 0.3}, half_life=300)
    rng = np.random.default_rng(2)
    for live in rng.random(3000) < 0.3:
        est.add("live" if live else "no_answer")
    assert est.probabilities()[0] == pytest.approx(0.3, abs=0.05)
    for live in rng.random(1500) < 0.1:
        est.add("live" if live else "no_answer")
    assert est.probabilities()[0] == pytest.approx(0.1, abs=0.04)
    # Forgetting bounds the evidence, so the estimate stays uncertain enough to keep moving.
    assert est.effective_n < 300 / math.log(2) + 1


@pytest.mark.parametrize(
    ("prior", "key"),
    [({"live": 1.5}, "prior.live"), ({"live": 0.7, "busy": 0.5}, "prior"), ({"human": 0.3}, "prior")],
)
def test_outcome_priors_are_validated(prior: dict[str, float], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        OutcomeEstimator(prior)
    assert err.value.key == key


def test_duration_cdf_converges_to_the_truth_and_keeps_its_uncertainty() -> None:
    truth = stats.lognorm(s=0.6, scale=120 * math.exp(-0.18))
    est = DurationEstimator(100.0, prior_weight=20, window=2000)
    t = np.array([30.0, 90.0, 150.0, 300.0])
    far = np.abs(est.cdf(t) - truth.cdf(t)).max()
    for x in truth.rvs(size=2000, random_state=3):
        est.add(float(x))
    near = np.abs(est.cdf(t) - truth.cdf(t)).max()
    assert near < 0.04 < far
    assert est.mean == pytest.approx(120, rel=0.06)
    assert np.all(est.cdf_std(t) < 0.015)
    assert est.cdf_std(np.array([120.0]))[0] > 0.0


def test_duration_rejects_bad_samples_without_losing_good_ones() -> None:
    est = DurationEstimator(10.0)
    for x in (5.0, -1.0, math.nan, math.inf, 7.0):
        est.add(x)
    assert est.n == 2
    assert est.rejected == 3
    with pytest.raises(ConfigError):
        DurationEstimator("ten")
    with pytest.raises(ConfigError):
        DurationEstimator(10.0, window=0)


def test_duration_window_follows_a_shift_in_talk_time() -> None:
    est = DurationEstimator(120.0, window=300)
    rng = np.random.default_rng(4)
    for x in rng.exponential(120, 1000):
        est.add(float(x))
    for x in rng.exponential(60, 600):
        est.add(float(x))
    assert est.mean == pytest.approx(60, rel=0.15)


def _big_floor(agents: int, until: float, seed: int) -> tuple[list[tuple[float, float]], list[float]]:
    """Back-to-back lognormal calls on ``agents`` lines for ``until`` seconds: (end, duration) of the finished
    ones in end order, and the ages of those still running at ``until``."""
    rng = np.random.default_rng(seed)
    done: list[tuple[float, float]] = []
    running: list[float] = []
    for _ in range(agents):
        t = -rng.uniform(0, 600)  # lines already busy, at staggered points of their calls
        while True:
            x = float(rng.lognormal(math.log(120) - 0.18, 0.6))
            if t + x > until:
                running.append(until - max(t, 0.0) if t >= 0 else until - t)
                break
            if t + x > 0:
                done.append((t + x, x))
            t += x
    done.sort()
    return done, running


def test_censoring_on_a_big_floor_keeps_one_cohort() -> None:
    """A thousand samples are two minutes of a 1,000-agent floor: the calls still running then include long ones
    whose short contemporaries have left the window. Kaplan-Meier over both overstated talk time; over the cohort
    the window holds whole, it matches the truth."""
    truth = stats.lognorm(s=0.6, scale=120 * math.exp(-0.18))
    done, running = _big_floor(1000, 1800.0, seed=5)
    t = np.array([30.0, 60.0, 120.0, 240.0, 400.0])

    def error(window_seconds: float, now: float | None) -> FloatArray:
        est = DurationEstimator(120.0, window=1000, window_seconds=window_seconds)
        for end, x in done:
            est.add(x, end)
        est.censor(running, now)
        return np.abs(est.cdf(t) - truth.cdf(t))

    assert error(0.0, None).max() > 0.15  # the old way: the last thousand samples and every running call
    assert error(0.0, 1800.0)[:2].max() < 0.02  # the cohort alone is right as far as a two-minute window sees
    assert error(1200.0, None).max() > 0.02  # a long window alone still mixes
    assert error(1200.0, 1800.0).max() < 0.015  # both: a 20-minute window sees the long calls end too


def test_duration_window_in_time_keeps_every_sample_of_its_span() -> None:
    est = DurationEstimator(10.0, window=10, window_seconds=60.0, max_samples=500)
    for i in range(200):
        est.add(5.0, float(i))  # one a second
    assert est.n == 61  # ended within 60 s of the newest
    for _ in range(1800):
        est.add(5.0, 200.0)  # a burst: capped
    assert est.n == 500
    for _ in range(20):
        est.add(5.0)  # no end time: the count window alone
    assert est.n == 10
    with pytest.raises(ConfigError):
        DurationEstimator(10.0, window=100, max_samples=10)
    with pytest.raises(ConfigError):
        DurationEstimator(10.0, window_seconds=-1.0)


def test_conditional_end_probability_knows_how_long_it_lasted() -> None:
    # Memoryless: the chance of ending within 10 s does not depend on time already spent.
    expo = DurationEstimator(stats.expon(scale=60), prior_weight=1e9)
    p = expo.done_within(np.array([0.0, 60.0, 200.0]), 10.0)
    assert p == pytest.approx(np.full(3, 1 - math.exp(-10 / 60)), abs=1e-3)
    # Uniform 4..16: a call at 15 s ends within 1 s for sure; at 0 s it cannot end within 2 s.
    uni = DurationEstimator(stats.uniform(4, 12), prior_weight=1e9)
    p = uni.done_within(np.array([15.0, 0.0]), 1.0)
    assert p[0] == pytest.approx(1.0, abs=1e-3)
    assert uni.done_within(np.array([0.0]), 2.0)[0] == pytest.approx(0.0, abs=1e-3)
    # A fixed delay after the end (wrap-up) pushes the end out.
    assert uni.done_within(np.array([15.0]), 1.0, shift=5.0)[0] == pytest.approx(0.0, abs=1e-3)


def test_ring_model_answers_ringing_calls_by_age() -> None:
    outcomes = OutcomeEstimator({"live": 0.3, "machine": 0.0, "busy": 0.0}, prior_weight=1e9)
    live = DurationEstimator(stats.uniform(4, 12), prior_weight=1e9)
    none = DurationEstimator(stats.uniform(24.9, 0.2), prior_weight=1e9)
    model = RingModel(outcomes, [live, live, DurationEstimator(3.0), none])
    fresh = model.live_within(np.array([0.0]), 16.0)[0]
    assert fresh == pytest.approx(0.3, abs=0.01)
    # A call that has rung 17 s without an answer will not be answered by a person (they answer by 16 s).
    assert model.live_within(np.array([17.0]), 5.0)[0] == pytest.approx(0.0, abs=1e-3)
    # Halfway through the answer window the odds of a person are higher than 30% x half.
    mid = model.live_within(np.array([10.0]), 6.0)[0]
    assert mid > 0.3 * 0.5
    with pytest.raises(ConfigError):
        RingModel(outcomes, [live])


def test_agent_model_estimates_wrap_by_littles_law_and_pauses_from_the_floor() -> None:
    talk = DurationEstimator(120.0, prior_weight=1e9)
    agents = AgentModel(talk, prior_wrap=0.0, prior_pause=0.0)
    t = 0.0
    # A floor with, on average, 12 agents talking and 3 wrapping: wrap = 120 * 3 / 12 = 30 s.
    for _ in range(2000):
        agents.sample_floor(t, 12, 3, 0)
        t += 1.0
    assert agents.wrap_mean == pytest.approx(30.0, rel=0.05)
    # One wrap-up in five ends in a break.
    paused = 0
    for i in range(500):
        agents.sample_floor(t, 12, 3, paused)
        t += 0.5
        if i % 5 == 0:
            paused += 1
        agents.sample_floor(t, 12, 2, paused)
        t += 0.5
    assert agents.pause_probability == pytest.approx(0.2, abs=0.03)
    # Within 10 s nobody is free: the wrap-up alone lasts longer. Within a minute some are, minus the breaks.
    assert agents.free_within(np.array([0.0, 600.0]), 10.0) == pytest.approx([0.0, 0.0])
    free = agents.free_within(np.array([0.0]), 60.0)[0]
    expected = (1 - math.exp(-(60 - agents.wrap_mean) / 120)) * (1 - agents.pause_probability)
    assert free == pytest.approx(expected, rel=1e-3)
    with pytest.raises(ConfigError):
        AgentModel(talk, prior_wrap=-1.0)


def test_reported_wrap_ups_replace_the_floor_inference() -> None:
    """Once the engine reports wrap-ups, their exact lengths and breaks win over Little's law and floor counts,
    which would say otherwise here; a bad length is ignored but its break still counts."""
    agents = AgentModel(DurationEstimator(120.0), prior_wrap=0.0)
    rng = np.random.default_rng(3)
    for k in range(2000):
        t = float(k)
        agents.sample_floor(t, 12, 6, 0)  # the floor alone would say wrap = 120 x 6 / 12 = 60 s, no breaks
        agents.observe_wrap(float(rng.uniform(10.0, 20.0)), bool(rng.random() < 0.2))
    assert agents.wrap_mean == pytest.approx(15.0, rel=0.05)
    assert agents.pause_probability == pytest.approx(0.2, abs=0.04)
    agents.observe_wrap(float("nan"), True)
    assert agents.wrap_mean == pytest.approx(15.0, rel=0.05)
    assert agents.wrap_reports == 2001


@pytest.mark.parametrize("window_seconds", [0.0, 50.0])
def test_sorted_window_kept_incrementally_equals_a_full_sort(window_seconds: float) -> None:
    """The sorted samples are merged as the window moves (adds and evictions, by count and by time, with many
    equal values); read at irregular moments, they must always be exactly the window sorted afresh."""
    rng = np.random.default_rng(7)
    est = DurationEstimator(10.0, window=200, window_seconds=window_seconds)
    t = 0.0
    for i in range(5000):
        t += float(rng.exponential(0.05 if i % 1000 < 500 else 0.5))  # bursts turn the window over fast
        x = float(rng.integers(0, 30)) if i % 3 else float(rng.exponential(10.0))  # ties, and distinct values
        est.add(x, t)
        if rng.random() < 0.15 or i % 997 == 0:  # mostly a few moves apart: the merge, not the full sort
            expected = np.sort(np.fromiter(est.samples, float))
            assert np.array_equal(est._data(), expected)
    # An estimator never read keeps at most a window's worth of pending samples.
    assert len(est._added) <= len(est.samples)
