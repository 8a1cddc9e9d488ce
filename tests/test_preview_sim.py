"""The preview policy on a simulated floor: nobody abandoned, and the agents' look at each lead paid in talk time.

Progressive dialing also reserves an agent for every call, so on the same floor and seed the two differ by one
thing: in preview, each dial cycle starts with the agent's look at the lead (``preview_seconds``). A dial cycle
(logged-in agent time per dial) must therefore be longer by about that look, and connects per agent-hour lower in
the same proportion.
"""

from __future__ import annotations

import dataclasses

import pytest

from dialer.errors import ConfigError
from sim.distributions import parse_distribution
from sim.metrics import replication_figures
from sim.runtime import ReplicationResult, SimulatedCampaign
from sim.scenario import Scenario, loads

FLOOR = """
[campaign]
agents = 8
policy = "preview"
hours = 1.5
seed = 7

[agents]
preview_seconds = { dist = "fixed", value = 10 }

[pacing]
timeout = 30
"""


def run(scenario: Scenario, replications: int = 2) -> list[ReplicationResult]:
    return [SimulatedCampaign(scenario, i).run() for i in range(replications)]


def cycle_seconds(r: ReplicationResult) -> float:
    return sum(r.agent_seconds.values()) / r.totals["dials"]


@pytest.fixture(scope="module")
def floors() -> tuple[list[ReplicationResult], list[ReplicationResult]]:
    preview = loads(FLOOR)
    progressive = dataclasses.replace(preview, policy="progressive", pacing=())
    return run(preview), run(progressive)


def test_a_preview_floor_abandons_nobody_and_reports_its_preview_time(
    floors: tuple[list[ReplicationResult], list[ReplicationResult]],
) -> None:
    preview, _ = floors
    for r in preview:
        t = r.totals
        assert t["dials"] > 300 and t["live_answers"] > 80
        assert t["abandoned"] == 0 and all(d["abandoned"] == 0 for d in r.days)
        assert t["connects"] == t["live_answers"]
        assert all(not abandoned for _, abandoned in r.answers)
        # Each dialed lead was looked at for exactly 10 s (the timeout, 30 s, never came); leads on screen when
        # the shift ended were withdrawn after less than that, one per agent at most.
        looked = r.agent_seconds["previewing"]
        assert 10.0 * t["dials"] <= looked <= 10.0 * (t["dials"] + 8) + 1e-6
        # Never idle while dialing: ready only in the shift's drain (leads withdrawn, waiting to go home).
        assert r.agent_seconds["reserved"] > 0 and r.agent_seconds["ready"] < 8 * 5.0
        assert r.stale_events == 0
        figures = replication_figures(r, 0.03)
        assert figures["abandon_rate"] == 0.0
        # The look is logged-in time, neither talk nor wrap-up.
        logged = sum(r.agent_seconds.values())
        assert figures["agent_occupancy"] == pytest.approx(
            (r.agent_seconds["on_call"] + r.agent_seconds["wrap_up"]) / logged
        )


def test_preview_costs_about_its_look_per_dial_against_progressive(
    floors: tuple[list[ReplicationResult], list[ReplicationResult]],
) -> None:
    preview, progressive = floors
    for pv, pg in zip(preview, progressive, strict=True):
        assert "previewing" not in pg.agent_seconds  # a floor that never previews reports as it always did
        extra = cycle_seconds(pv) - cycle_seconds(pg)
        assert 7.0 < extra < 13.0, extra
        hours_pv = sum(pv.agent_seconds.values()) / 3600
        hours_pg = sum(pg.agent_seconds.values()) / 3600
        per_hour_pv = pv.totals["connects"] / hours_pv
        per_hour_pg = pg.totals["connects"] / hours_pg
        # Connects per agent-hour fall in proportion to the longer cycle (live-answer chance per dial alike).
        expected = per_hour_pg * cycle_seconds(pg) / cycle_seconds(pv)
        assert per_hour_pv < per_hour_pg
        assert per_hour_pv == pytest.approx(expected, rel=0.2)


def test_the_timeout_dials_for_agents_who_look_longer() -> None:
    slow = dataclasses.replace(
        loads(FLOOR),
        hours=0.5,
        preview_seconds=parse_distribution("agents.preview_seconds", {"dist": "fixed", "value": 20}),
        pacing=(("timeout", 5),),
    )
    (r,) = run(slow, 1)
    t = r.totals
    assert t["dials"] > 50 and t["abandoned"] == 0
    # Every lead was dialed by the engine at 5 s, and the agents' late presses were never sent.
    assert 5.0 * t["dials"] <= r.agent_seconds["previewing"] <= 5.0 * (t["dials"] + 8) + 1e-6
    assert r.stale_events == 0


def test_preview_seconds_is_a_scenario_key_with_a_default() -> None:
    assert Scenario().preview_seconds.mean == 10.0
    s = loads('[campaign]\npolicy = "preview"\n[agents]\npreview_seconds = { dist = "uniform", low = 5, high = 25 }\n')
    assert s.preview_seconds.mean == 15.0 and s.build_policy().name == "preview"
    with pytest.raises(ConfigError) as info:
        loads('[campaign]\npolicy = "preview"\n[pacing]\ntimeout = -1\n')
    assert info.value.key == "pacing.timeout"
