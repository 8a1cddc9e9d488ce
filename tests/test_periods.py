"""Call flows by the hour (issue 16, item 4): ``[[periods]]``, the day's busyness factor, sudden changes."""

from __future__ import annotations

import statistics

import pytest

from dialer.errors import ConfigError
from sim.runtime import ReplicationResult, run_replication
from sim.scenario import loads

BASE = """
[campaign]
policy = "progressive"
agents = 20
hours = 2
[agents]
pause_probability = 0
"""


def test_periods_load_sorted_and_round_trip() -> None:
    s = loads(
        BASE
        + """
[[periods]]
start_hour = 1.5
name = "late"
talk_scale = 1.5
[[periods]]
start_hour = 0.5
live_answer_probability = 0.2
outbound = 10
"""
    )
    assert [p.start_hour for p in s.periods] == [0.5, 1.5]
    assert s.periods[0].staffing() == {"outbound": 10}
    assert s.to_dict()["periods"] == [
        {"start_hour": 0.5, "live_answer_probability": 0.2, "outbound": 10},
        {"start_hour": 1.5, "name": "late", "talk_scale": 1.5},
    ]


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[[periods]]\nstart_hour = 1\nlive_answer = 0.2\n", "periods[0].live_answer"),
        ("[[periods]]\nstart_hour = 3\n", "periods[0].start_hour"),  # past the 2-hour shift
        ("[[periods]]\nstart_hour = 1\noutbound = 21\n", "periods[0].outbound"),  # more than the floor has
        ("[[periods]]\nstart_hour = 1\ninbound = 1\n", "periods[0].inbound"),  # no inbound agents
        ("[[periods]]\nstart_hour = 1\ninbound_rate_per_hour = 5\n", "periods[0].inbound_rate_per_hour"),
        ("[[periods]]\nstart_hour = 1\nlive_answer_probability = 0.9\n", "periods[0].live_answer_probability"),
        ("[[periods]]\nname = 'x'\n", "periods[0].start_hour"),
        ("[[periods]]\nstart_hour = 1\n[[periods]]\nstart_hour = 1\n", "periods"),
        ("[drift]\ntalk_scale_to = 1.2\n[[periods]]\nstart_hour = 1\n", "periods"),
        ("[inbound]\nbusyness_shape = -1\n[groups]\ninbound = 1\n", "inbound.busyness_shape"),
    ],
)
def test_bad_periods_name_their_key(extra: str, key: str) -> None:
    text = BASE.replace("agents = 20\n", "agents = 20\n" if "[groups]" not in extra else "") + extra
    with pytest.raises(ConfigError) as info:
        loads(text)
    assert info.value.key == key, info.value
    if key.endswith("live_answer"):
        assert "live_answer_probability" in str(info.value)  # the suggestion


def _hourly(r: ReplicationResult, name: str) -> tuple[float, float]:
    """``name`` per 15-min bin summed into the shift's two hours."""
    series = r.series[name]
    return sum(series[0:4]), sum(series[4:8])


def test_the_live_answer_probability_changes_at_its_hour() -> None:
    s = loads(BASE + "[[periods]]\nstart_hour = 1\nlive_answer_probability = 0.15\n")
    r = run_replication(s, 0)
    dials, live = _hourly(r, "dials"), _hourly(r, "live_answers")
    assert live[0] / dials[0] == pytest.approx(0.30, abs=0.03)
    assert live[1] / dials[1] == pytest.approx(0.15, abs=0.03)


def test_staffing_by_period_sends_agents_away_and_back() -> None:
    s = loads(BASE + "[[periods]]\nstart_hour = 0.5\noutbound = 10\n[[periods]]\nstart_hour = 1.5\noutbound = 20\n")
    r = run_replication(s, 0)
    logged = sum(r.group_seconds["outbound"].values()) / 3600.0
    # 20 agents for 1 h, 10 for 1 h (those leaving finish their call first; the drain adds minutes).
    assert 30.0 <= logged <= 31.5
    assert r.totals["abandoned"] == 0  # progressive: nobody was left waiting as agents left


def _inbound_floor(extra: str, days: int = 1, hours: float = 2) -> str:
    return f"""
[campaign]
policy = "progressive"
hours = {hours}
days = {days}
[agents]
pause_probability = 0
[inbound]
rate_per_hour = 60
handle_time = {{ dist = "exponential", mean = 30 }}
wrap_time = 0
{extra}
[groups]
inbound = 5
"""


def test_the_inbound_rate_changes_at_its_hour() -> None:
    s = loads(_inbound_floor("") + "[[periods]]\nstart_hour = 1\ninbound_rate_per_hour = 240\n")
    counts = [0, 0]
    for i in range(3):
        for arrived, _, _ in run_replication(s, i).inbound:
            counts[int(arrived // 3600)] += 1
    # 180 and 720 expected over three replications (Poisson: sd 13 and 27).
    assert 130 <= counts[0] <= 230 and 620 <= counts[1] <= 820


def test_a_days_busyness_factor_spreads_the_daily_volumes() -> None:
    def dispersion(extra: str) -> float:
        s = loads(_inbound_floor(extra, days=24, hours=1).replace("rate_per_hour = 60", "rate_per_hour = 100"))
        r = run_replication(s, 0)
        per_day = [0] * 24
        for arrived, _, _ in r.inbound:
            per_day[int(arrived // 86400)] += 1
        assert statistics.mean(per_day) == pytest.approx(100, rel=0.25)
        return statistics.variance(per_day) / statistics.mean(per_day)

    # Poisson days: variance = mean. Gamma(4) busyness: variance = mean + mean^2 / 4, about 26x the mean.
    assert dispersion("") < 2.5
    assert dispersion("busyness_shape = 4") > 6


SUDDEN = """
[campaign]
policy = "predictive"
agents = 24
hours = 4
replications = 2
target_abandon_rate = 0.03

[[periods]]
start_hour = 1.5
name = "the list's easy numbers are used up"
live_answer_probability = 0.15   # the answer rate halves at once

[[periods]]
start_hour = 2.5
name = "team meeting"
outbound = 16                    # a third of the floor leaves after its current call

[[periods]]
start_hour = 3.25
name = "back"
outbound = 24
live_answer_probability = 0.30   # and answers double again at once
"""


def test_predictive_keeps_every_day_under_the_cap_through_sudden_changes() -> None:
    s = loads(SUDDEN)
    for i in range(s.replications):
        r = run_replication(s, i)
        for day in r.days:
            assert day["live_answers"] > 500
            assert day["abandoned"] / day["live_answers"] <= 0.03, day
