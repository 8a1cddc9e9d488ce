"""The baseline pacing policies against their formulas: progressive, power (VICIdial RATIO, half-up rounding) and
VICIdial's adaptive level (HARD_LIMIT, TAPERED, AVERAGE, emergency halving), from hand-built floors.

A "floor" here is a real engine whose agent and call counters are set directly, so the policy reads a real
:class:`Snapshot` of exactly the situation under test.
"""

from __future__ import annotations

import pytest
from dialer_testkit import Scripted, leads

from dialer.engine import events as ev
from dialer.engine.core import Engine
from dialer.engine.snapshot import Snapshot
from dialer.engine.state import AgentState, CallState
from dialer.errors import ConfigError
from dialer.pacing import POLICIES, make_policy
from dialer.pacing.ratio import Power, Progressive, ratio_launches
from dialer.pacing.vicidial import VicidialAdaptive


class Floor:
    """An engine whose counters the test sets; ``snap(t)`` moves its clock and returns a snapshot."""

    def __init__(self) -> None:
        self.engine = Engine(Scripted(), leads(0))

    def set(
        self,
        *,
        ready: int = 0,
        paused: int = 0,
        on_call: int = 0,
        wrap_up: int = 0,
        ringing: int = 0,
        queued: int = 0,
        connected: int = 0,
    ) -> Floor:
        a = self.engine.agent_counts
        a[AgentState.READY], a[AgentState.PAUSED], a[AgentState.ON_CALL], a[AgentState.WRAP_UP] = (
            ready,
            paused,
            on_call,
            wrap_up,
        )
        c = self.engine.call_counts
        c[CallState.RINGING], c[CallState.QUEUED], c[CallState.CONNECTED] = ringing, queued, connected
        return self

    def snap(self, t: float | None = None) -> Snapshot:
        if t is not None:
            self.engine.now = t
        return Snapshot(self.engine)


def floor(**counts: int) -> Snapshot:
    return Floor().set(**counts).snap()


# --- progressive and power ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "want"),
    [
        ({"ready": 5}, 5),
        ({"ready": 5, "ringing": 2}, 3),
        ({"ready": 5, "ringing": 4, "queued": 1}, 0),
        ({"ready": 1, "ringing": 3}, 0),  # never negative
        ({"ready": 0, "on_call": 10, "paused": 3}, 0),
    ],
)
def test_progressive_is_one_call_per_uncovered_ready_agent(counts: dict[str, int], want: int) -> None:
    assert Progressive().decide(floor(**counts)) == want


@pytest.mark.parametrize(
    ("level", "counts", "want"),
    [
        (1.5, {"ready": 3}, 5),  # 4.5 rounds half-up to 5 (Python's round would say 4)
        (2.5, {"ready": 1}, 3),  # 2.5 -> 3 (round() -> 2)
        (1.5, {"ready": 1, "on_call": 2}, 5),  # non-paused = ready + on call
        (1.5, {"ready": 1, "on_call": 2, "paused": 7, "wrap_up": 4}, 5),  # paused and wrap-up do not count
        (2.0, {"ready": 2, "on_call": 2, "ringing": 3, "queued": 1, "connected": 2}, 2),  # 8 - in flight 6
        (1.2, {"ready": 2, "on_call": 3, "ringing": 9}, 0),  # never negative
        (1.0, {"ready": 4, "on_call": 6, "connected": 6, "ringing": 1}, 3),  # level 1 is progressive-like
        (1.3, {"ready": 5}, 7),  # 6.5 -> 7
        (1.1, {"ready": 5}, 6),  # 5.5 -> 6
    ],
)
def test_ratio_launches_follow_vicidial(level: float, counts: dict[str, int], want: int) -> None:
    snap = floor(**counts)
    assert ratio_launches(level, snap) == want
    if level > 1.0:
        assert Power(ratio=level).decide(snap) == want


@pytest.mark.parametrize("ratio", [0.9, 10.5])
def test_power_ratio_out_of_range_is_a_config_error(ratio: float) -> None:
    with pytest.raises(ConfigError) as info:
        Power(ratio=ratio)
    assert info.value.key == "ratio"


def test_make_policy_names_and_errors() -> None:
    for name in ("progressive", "power", "vicidial-adaptive", "predictive"):
        assert name in POLICIES
    assert isinstance(make_policy("power", ratio=2.0), Power)
    tapered = make_policy("vicidial-tapered")
    assert isinstance(tapered, VicidialAdaptive) and tapered.mode == "tapered"
    with pytest.raises(ConfigError) as info:
        make_policy("nope")
    assert info.value.key == "policy"
    with pytest.raises(ConfigError) as info:
        make_policy("progressive", ratio=2.0)
    assert info.value.key == "policy"


# --- VICIdial adaptive -------------------------------------------------------------------------------------


def run_interval(policy: VicidialAdaptive, fl: Floor, start: float, seconds: int) -> float:
    """Let the policy see the same floor once a second for ``seconds`` seconds, starting at ``start``."""
    for i in range(seconds + 1):
        policy.decide(fl.snap(start + i))
    return start + seconds


def test_level_rises_with_idle_agents() -> None:
    fl = Floor().set(ready=4, on_call=6)
    p = VicidialAdaptive("hard_limit")
    run_interval(p, fl, 0.0, 15)
    # D = 4 - 0, m = 4 / 10 = 0.4: L = 1.0 x 1.4
    assert p.level == pytest.approx(1.4)
    run_interval(p, fl, 16.0, 15)
    assert p.level == pytest.approx(1.4 * 1.4)


def test_level_falls_with_waiting_calls_and_never_below_one() -> None:
    fl = Floor().set(ready=0, on_call=10, queued=2)
    p = VicidialAdaptive("hard_limit", initial_level=2.0)
    run_interval(p, fl, 0.0, 15)
    assert p.level == pytest.approx(2.0 * (1 - 0.2))
    fl.set(ready=0, on_call=10, queued=9)
    for k in range(5):
        run_interval(p, fl, 16.0 * (k + 1), 15)
    assert p.level == 1.0


def test_level_is_capped_at_max_level() -> None:
    fl = Floor().set(ready=10)
    p = VicidialAdaptive("average", max_level=2.5, initial_level=2.0)
    run_interval(p, fl, 0.0, 15)  # m = 1: would double
    assert p.level == 2.5


@pytest.mark.parametrize(
    ("intensity", "ready", "queued", "factor"), [(20, 4, 0, 1 + 0.4 * 1.2), (20, 0, 2, 1 - 0.2 * 0.8)]
)
def test_adaptive_intensity_scales_the_step(intensity: float, ready: int, queued: int, factor: float) -> None:
    fl = Floor().set(ready=ready, on_call=10 - ready, queued=queued)
    p = VicidialAdaptive("hard_limit", adaptive_intensity=intensity, initial_level=2.0)
    run_interval(p, fl, 0.0, 15)
    assert p.level == pytest.approx(2.0 * factor)


def test_diff_target_shifts_the_balance() -> None:
    fl = Floor().set(ready=0, on_call=10)
    p = VicidialAdaptive("hard_limit", diff_target=1.0)
    run_interval(p, fl, 0.0, 15)
    assert p.level == pytest.approx(1.1)


def _day_stats(fl: Floor, t: float, dials: int, live: int, abandoned: int) -> None:
    stats = fl.engine.stats
    for _ in range(dials):
        stats.dialed(t)
    for _ in range(live):
        stats.live_answer(t, t)
    for _ in range(abandoned):
        stats.abandon(t, t)


def _balanced(mode: str, level: float, **kw: float) -> tuple[VicidialAdaptive, Floor]:
    """A policy at ``level`` on a floor where the balance term is zero, so only the kill switches act."""
    fl = Floor().set(ready=2, on_call=6, queued=2)
    return VicidialAdaptive(mode, initial_level=level, **kw), fl  # type: ignore[arg-type]


def test_hard_limit_drops_to_one_when_the_day_is_over_the_drop_limit() -> None:
    p, fl = _balanced("hard_limit", 2.5)
    _day_stats(fl, 0.0, dials=60, live=20, abandoned=1)  # 5% > 3%, but spread over > 1 minute
    t = run_interval(p, fl, 100.0, 15)
    assert p.level == 1.0
    assert t == 115.0


def test_kill_switch_needs_more_than_fifty_dials() -> None:
    p, fl = _balanced("hard_limit", 2.5)
    _day_stats(fl, 0.0, dials=50, live=20, abandoned=5)
    run_interval(p, fl, 100.0, 15)
    assert p.level == pytest.approx(2.5)


def test_average_halves_on_every_update_while_over() -> None:
    p, fl = _balanced("average", 3.0)
    _day_stats(fl, 0.0, dials=60, live=20, abandoned=1)
    run_interval(p, fl, 100.0, 15)
    assert p.level == pytest.approx(1.5)
    run_interval(p, fl, 116.0, 15)
    assert p.level == 1.0  # 0.75 floored


def test_tapered_scales_by_the_time_left_in_the_dialing_day() -> None:
    day_end = 8 * 3600.0
    p, fl = _balanced("tapered", 3.0, dialing_day_end=day_end)
    _day_stats(fl, 0.0, dials=60, live=20, abandoned=1)
    start = 3 * 3600.0
    t = run_interval(p, fl, start, 15)
    # The update happens 15 s after the first sample; the factor is the time left then over ten hours.
    assert p.level == pytest.approx(3.0 * (day_end - t) / 36000.0)


def test_tapered_sets_one_after_the_end_of_the_dialing_day() -> None:
    p, fl = _balanced("tapered", 3.0, dialing_day_end=3600.0)
    _day_stats(fl, 0.0, dials=60, live=20, abandoned=1)
    run_interval(p, fl, 7200.0, 15)
    assert p.level == 1.0


def test_emergency_halving_on_a_bad_minute() -> None:
    p, fl = _balanced("hard_limit", 3.0)
    # 21 dials in the last minute, more than half of the answered ones dropped; the day is under 50 dials.
    _day_stats(fl, 90.0, dials=21, live=6, abandoned=4)
    run_interval(p, fl, 100.0, 15)
    assert p.level == pytest.approx(1.5)


def test_no_emergency_with_twenty_dials_or_fewer() -> None:
    p, fl = _balanced("hard_limit", 3.0)
    _day_stats(fl, 90.0, dials=20, live=6, abandoned=6)
    run_interval(p, fl, 100.0, 15)
    assert p.level == pytest.approx(3.0)


def test_dials_only_every_dial_interval_and_asks_to_be_woken() -> None:
    fl = Floor().set(ready=2, on_call=2)
    p = VicidialAdaptive("hard_limit", initial_level=2.0)
    assert p.next_wakeup(0.0) == 0.0
    assert p.decide(fl.snap(0.0)) == 8  # round(2 x 4) - 0
    assert p.decide(fl.snap(1.0)) == 0  # between dial ticks
    assert p.next_wakeup(1.0) == 2.0  # the next once-a-second sample
    assert p.decide(fl.snap(2.5)) == 8


def test_samples_missed_during_a_long_gap_are_filled_in() -> None:
    """A runtime that wakes late still gets the 15 samples VICIdial's once-a-second loop would have taken."""
    fl = Floor().set(ready=5, on_call=5)
    p = VicidialAdaptive("hard_limit")
    p.decide(fl.snap(0.0))
    p.decide(fl.snap(20.0))
    assert p.level == pytest.approx(1.5)


def test_vicidial_adaptive_in_an_engine_asks_for_wakeups() -> None:
    engine = Engine(make_policy("vicidial-adaptive"), leads(100))
    engine.handle(ev.AgentLoggedIn(0.0, "a"))
    engine.handle(ev.AgentReady(0.0, "a"))
    assert engine.in_flight == 0  # the login already used the dial tick at t=0, with nobody ready
    assert engine.next_timer() == 1.0
    for t in (1.0, 2.0):
        assert engine.handle(ev.TimeAdvanced(t)) == []
    assert len(engine.handle(ev.TimeAdvanced(2.5))) == 1 and engine.in_flight == 1


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"mode": "bogus"}, "mode"),
        ({"drop_limit": 0.0}, "drop_limit"),
        ({"max_level": 0.5}, "max_level"),
        ({"adaptive_intensity": 150}, "adaptive_intensity"),
        ({"dial_interval": 0}, "dial_interval"),
    ],
)
def test_vicidial_bad_parameters_name_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        VicidialAdaptive(**kwargs)  # type: ignore[arg-type]
    assert info.value.key == key
