"""The end of a simulated shift: agents stay while a call may still need them, then go home after their own
last call rather than idling until the floor's longest call ends."""

from __future__ import annotations

from collections import defaultdict

from dialer.engine import events as ev
from dialer.engine.state import CallState
from sim.distributions import parse_distribution
from sim.runtime import DAY, SimulatedCampaign
from sim.scenario import default


def test_agents_go_home_once_no_call_can_need_them() -> None:
    sc = default().replace(
        policy="progressive",
        agents=10,
        hours=0.25,
        days=2,
        replications=1,
        seed=3,
        talk_time=parse_distribution("talk_time", {"dist": "lognormal", "mean": 120, "sigma_log": 1.0}),
        pause_probability=0.0,
    )
    campaign = SimulatedCampaign(sc, 0)
    engine = campaign.engine
    feed = campaign.feed
    logouts: dict[int, list[float]] = defaultdict(list)
    ends: dict[int, list[float]] = defaultdict(list)
    waiting_at_logout: list[int] = []

    def watch(event: ev.Event) -> None:
        day = int(event.t // DAY)
        if isinstance(event, ev.AgentLoggedOut):
            c = engine.call_counts
            waiting_at_logout.append(c[CallState.DIALING] + c[CallState.RINGING] + c[CallState.QUEUED])
            logouts[day].append(event.t)
        elif isinstance(event, ev.CallEnded):
            ends[day].append(event.t)
        feed(event)

    campaign.feed = watch  # type: ignore[method-assign]
    result = campaign.run()
    assert len(result.days) == 2  # every agent left on day 1, or day 2's logins would have been refused
    assert all(n == 0 for n in waiting_at_logout)  # nobody left while a call could still be answered
    assert result.totals["abandoned"] == 0  # progressive: every person answered after the bell found an agent
    shift_end = sc.hours * 3600.0
    for day in (0, 1):
        assert len(logouts[day]) == 10
        first_home, last_call = min(logouts[day]), max(ends[day])
        assert first_home < day * DAY + shift_end + 60.0  # free agents leave within a minute of the bell
        assert last_call - first_home > 120.0  # while the floor's longest call goes on for minutes more
