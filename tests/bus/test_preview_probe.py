"""Preview and manual dialing over the bus, tried as an agent desktop would, with faults.

The parts are real, as in test_bus_preview.py (whose floor this file borrows): mosquitto, ``dialer dispatch`` on
a campaign file with its own store, a ``dialer worker`` placing calls over SIP against a SIPp trunk. Each test
is a failure found by trying the feature: it failed before its fix.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from bus_sip import Sipp, SipWorkers
from mqtt_broker import Broker
from test_bus_preview import ENV, PREVIEW_LEADS, Backend, Floor, campaign_file, invites, run_backend

from dialer.store import Store

CAMPAIGN = "c1"


@pytest.fixture
def sip_floor(broker: Broker, tmp_path: Path) -> Iterator[Floor]:
    """test_bus_preview's floor: a SIPp trunk and agent phone, one SIP worker (started with the dispatcher)."""
    trunk = Sipp("customers.xml", tmp_path, "-trace_msg", "-message_file", str(tmp_path / "trunk.msg"))
    phone = Sipp("agent.xml", tmp_path, "-rtp_echo", "-trace_msg", "-message_file", str(tmp_path / "phone.msg"))
    workers = SipWorkers(broker.port, trunk.port, tmp_path, {})
    f = Floor(broker, tmp_path, trunk, phone, workers)
    try:
        yield f
    finally:
        if f.dispatch is not None and f.dispatch.poll() is None:
            f.dispatch.kill()
            f.dispatch.wait(5)
        workers.stop()
        trunk.stop()
        phone.stop()


def restart_dispatch(f: Floor, campaign: Path, tag: str) -> None:
    """``dialer dispatch`` again on the same campaign, state and store; the worker is still running."""
    env = {**os.environ, "PYTHONPATH": ENV["PYTHONPATH"] + os.pathsep + os.environ.get("PYTHONPATH", "")}
    f.dispatch = subprocess.Popen(
        [sys.executable, "-m", "dialer.cli", "dispatch", str(campaign), "--broker-port", str(f.broker.port),
         "--insecure", "--keep-going", "--quiet"],
        stdout=open(f.tmp_path / "dispatch.out", "wb"),  # noqa: SIM115
        stderr=open(f.tmp_path / f"dispatch-{tag}.err", "wb"),  # noqa: SIM115
        env=env, cwd=f.tmp_path,
    )  # fmt: skip


def compliance(store: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``dialer report compliance STORE`` (``--json`` unless ``extra`` says otherwise), from this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "dialer.cli", "report", "compliance", str(store), *(extra or ("--json",))],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": ENV["PYTHONPATH"]},
    )


def test_a_dispatcher_killed_with_a_lead_on_screen_gives_it_back_undialed(sip_floor: Floor) -> None:
    """Before: a lead on an agent's screen is claimed in the store; the dispatcher SIGKILLed then left the attempt
    open, and the restarted one closed it as interrupted: a call never placed counted as placed and, in the worst
    case, abandoned (report compliance over its cap, exit 1), and the lead lost an attempt and was locked out
    for days. Now the restart gives the lead back as it was: offered again, no attempt, nothing over the cap, and
    nothing of it reached the trunk. A lead whose dial was pressed before the kill is adopted, not given back:
    one INVITE, one attempt."""
    floor = sip_floor
    path = campaign_file(floor.tmp_path, "preview", PREVIEW_LEADS, floor.phone.port)
    floor.start_dispatch(path)

    async def first(b: Backend, monitor: aiomqtt.Client) -> tuple[dict[str, Any], dict[str, Any]]:
        await b.ok("agent.login", agent_id="a1")
        await b.ok("agent.ready", agent_id="a1")
        o1 = (await b.event("preview.offer", agent_id="a1")).data
        # a2 presses dial on their own lead: a call in flight when the dispatcher dies, to be adopted, not redialed
        await b.ok("agent.login", agent_id="a2")
        await b.ok("agent.ready", agent_id="a2")
        o2 = (await b.event("preview.offer", agent_id="a2")).data
        await b.ok("preview.dial", agent_id="a2", call_id=o2["call_id"])
        await b.event("call.connected", call_id=o2["call_id"], agent_id="a2")
        return o1, o2

    o1, pressed = asyncio.run(run_backend(floor.broker.port, first, 60))
    assert floor.dispatch is not None
    floor.dispatch.send_signal(signal.SIGKILL)
    floor.dispatch.wait(5)
    restart_dispatch(floor, path, "2")

    async def second(b: Backend, monitor: aiomqtt.Client) -> dict[str, Any]:
        await b.ok("agent.login", agent_id="a1")  # a new dispatcher: log the agent in again
        await b.ok("agent.ready", agent_id="a1")
        return (await b.event("preview.offer", agent_id="a1")).data

    o2 = asyncio.run(run_backend(floor.broker.port, second, 60))
    assert o2["lead_id"] == o1["lead_id"], (o1, o2)  # the same lead, first in the list again, on screen again
    assert o2["lead_id"] != pressed["lead_id"]
    assert floor.stop_dispatch() == 0, (floor.tmp_path / "dispatch-2.err").read_text()  # SIGTERM: withdrawn
    floor.workers.stop()
    store_path = floor.tmp_path / "campaign.sqlite"
    with Store(store_path) as store:
        lead = store.lead(CAMPAIGN, o1["lead_id"])
        attempts = store.attempts(CAMPAIGN)
    # a2's call: one attempt, closed from the worker's facts; a1's lead: none at all
    assert [(a.lead_id, a.outcome) for a in attempts] == [(pressed["lead_id"], "connected")], attempts
    assert (lead.status, lead.attempts, lead.lockout_until, lead.outcome_counts) == ("ready", 0, 0.0, {}), lead
    report = compliance(store_path)
    assert report.returncode == 0, report.stdout + report.stderr
    assert '"over_cap": false' in report.stdout
    audit = compliance(store_path, "--audit", str(floor.tmp_path / "audit"))
    assert audit.returncode == 0, audit.stdout + audit.stderr  # the evidence chain and the store agree
    assert invites(floor.trunk, floor.tmp_path / "trunk.msg") == [pressed["phone"]]  # once, and only it
    err = (floor.tmp_path / "dispatch-2.err").read_text()
    assert f"1 leads on agents' screens were never dialed: back in the list ({o1['lead_id']})" in err, err


def test_a_skip_tells_the_desktop_the_next_offers_call_id(broker: Broker) -> None:
    """Before: an agent who skipped went from one offer to the next without leaving ``on_call``, so no
    ``agent.state`` went out and the desktop kept the skipped offer's ``call_id`` as the one on screen (the doc
    says the state carries the offer's). Now the state is published again with the new offer's call id."""
    from dialer import Engine, Lead, ListLeads, make_policy
    from dialer.bus import BusConfig, CampaignBus, MqttBus
    from dialer.live.runtime import AsyncRuntime

    async def main() -> None:
        leads = [Lead("L1", "+15550100001"), Lead("L2", "+15550100002")]
        runtime = AsyncRuntime(Engine(make_policy("preview"), ListLeads(leads)))
        bus = MqttBus(BusConfig(port=broker.port, client_id="dispatcher/d1", insecure=True), CAMPAIGN)
        CampaignBus(runtime, bus, stats_interval=60)
        async with bus:
            await bus.wait_connected(5)

            async def scenario(b: Backend, monitor: aiomqtt.Client) -> None:
                await b.ok("agent.login", agent_id="alice")
                await b.ok("agent.ready", agent_id="alice")
                first = await b.event("preview.offer", agent_id="alice", timeout=5)
                await b.event("agent.state", agent_id="alice", state="on_call", call_id=first.data["call_id"])
                await b.ok("preview.skip", agent_id="alice", call_id=first.data["call_id"], reason="wrong contact")
                offers = await b.wait_for(lambda: b.seen("preview.offer", agent_id="alice")[1:], 5)
                second = offers[0].data["call_id"]
                assert second != first.data["call_id"]
                state = await b.event("agent.state", agent_id="alice", call_id=second, timeout=5)
                assert state.data["state"] == "on_call"
                last = b.seen("agent.state", agent_id="alice")[-1]
                assert last.data["call_id"] == second, [e.data for e in b.seen("agent.state")]

            await run_backend(broker.port, scenario, 30)
        runtime.close()

    asyncio.run(main())


def test_a_lead_id_pasted_with_spaces_dials_and_blank_values_are_invalid(sip_floor: Floor) -> None:
    """Before: ``manual.dial`` with the lead id pasted as ``" M1 "`` (spaces around it, as a copy from a CRM
    field gives) was refused ("refused by the lead source"), and a phone of spaces only was refused as a dial
    rather than as no number at all. Now both fields are trimmed: the lead is dialed, and blank values are
    ``invalid``. (A phone with spaces around it was already dialed: the normaliser ignores them. A number with a
    letter in it dials nothing.) A manual dial while paused or on a call said "can't handle ManualDial for agent
    'a1' in state paused"; it now says what the agent is doing and what a manual dial needs."""
    floor = sip_floor
    leads = {"M1": "+81312342101", "M2": "+81312342104"}
    path = campaign_file(floor.tmp_path, "manual", leads, floor.phone.port)
    floor.start_dispatch(path)

    async def scenario(b: Backend, monitor: aiomqtt.Client) -> dict[str, Any]:
        await b.ok("agent.login", agent_id="a1")
        reply = await b.refused("invalid_transition", "manual.dial", agent_id="a1", lead_id="M1")
        assert "'a1' is paused (send agent.ready first)" in reply["error"], reply
        await b.ok("agent.ready", agent_id="a1")
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # until the worker is live, the trunk is full
            reply = await b.send("manual.dial", agent_id="a1", phone="+81 3 1234 21O4")  # a letter O for a 0
            assert not reply["ok"] and reply["code"] == "dial_refused", reply
            if "trunk full" not in reply["error"]:
                break
            assert asyncio.get_running_loop().time() < deadline, "the worker never came"
            await asyncio.sleep(0.2)
        await b.refused("invalid", "manual.dial", agent_id="a1", phone="   ")
        await b.refused("invalid", "manual.dial", agent_id="a1", lead_id=" ", phone="")
        reply = await b.ok("manual.dial", agent_id="a1", lead_id=" M1 ")
        assert reply["result"]["lead_id"] == "M1", reply
        await b.event("call.connected", call_id=reply["result"]["call_id"], agent_id="a1")
        busy = await b.refused("invalid_transition", "manual.dial", agent_id="a1", lead_id="M2")
        assert "a manual dial needs the agent ready" in busy["error"], busy  # talking, or in wrap-up by now
        record = await b.event("call.record", call_id=reply["result"]["call_id"])
        return record.data

    try:
        record = asyncio.run(run_backend(floor.broker.port, scenario, 60))
        assert floor.stop_dispatch() == 0, floor.log()
    finally:
        floor.workers.stop()
    assert record["lead_id"] == "M1" and record["outcome"] == "connected" and record["agent_id"] == "a1", record
    assert invites(floor.trunk, floor.tmp_path / "trunk.msg") == [leads["M1"]]


def assert_given_back(floor: Floor, lead_id: str) -> None:
    """The dispatcher stops cleanly, and the lead is back in the list as if never offered: no attempt in the
    store, ready, with none spent."""
    assert floor.stop_dispatch() == 0, floor.log()
    with Store(floor.tmp_path / "campaign.sqlite") as store:
        attempts = store.attempts(CAMPAIGN)
        lead = store.lead(CAMPAIGN, lead_id)
    assert attempts == [] and (lead.status, lead.attempts) == ("ready", 0), (attempts, lead)


def test_a_press_after_the_last_worker_died_is_refused_not_recorded_as_unanswered(sip_floor: Floor) -> None:
    """Before: a lead on screen when the only worker died could still be pressed: the reply said ok, the dial
    waited for a worker that never came, and the engine closed it at its ring timeout as ``no_answer``: an attempt
    in the store (and a call placed in the compliance ledger's denominator) for a call no INVITE ever left. Now
    the press is refused (``dial_refused``, trunk full), nothing is dialed, and the lead stays on screen; the
    dispatcher's stop withdraws it and the store has no attempt."""
    floor = sip_floor
    path = campaign_file(floor.tmp_path, "preview", PREVIEW_LEADS, floor.phone.port)
    floor.start_dispatch(path)

    async def scenario(b: Backend, monitor: aiomqtt.Client) -> dict[str, Any]:
        await b.ok("agent.login", agent_id="a1")
        await b.ok("agent.ready", agent_id="a1")
        offer = (await b.event("preview.offer", agent_id="a1")).data
        floor.workers.kill("p1")  # its last will tells the dispatcher at once; the offer's slot is gone with it
        await asyncio.sleep(1.0)
        reply = await b.send("preview.dial", agent_id="a1", call_id=offer["call_id"])
        assert not reply["ok"] and reply["code"] == "dial_refused", ("dialed into the void", reply)
        assert "trunk full" in reply["error"], reply
        assert not b.seen("call.dialed")
        withdrawn = b.seen("preview.withdrawn")
        assert not withdrawn, withdrawn  # still on screen: a press once a worker is back dials it
        return offer

    offer = asyncio.run(run_backend(floor.broker.port, scenario, 60))
    assert_given_back(floor, offer["lead_id"])


def test_an_offer_dialed_at_its_timeout_with_no_worker_left_is_given_back_not_placed(sip_floor: Floor) -> None:
    """Before: with ``[policy] timeout``, a lead on screen when the only worker died was dialed by the dialer at
    its ``dial_at``; the dial waited for a worker that never came and the engine closed it at the 20-s ring
    timeout as ``no_answer`` (placed, with a placed_at): an attempt in the store and a call in the compliance
    ledger for a call no INVITE left. Now a dial no worker has held for 5 s is given back as not placed: the
    record says ``placed: false``, the store has no attempt, and the agent is ready again."""
    floor = sip_floor
    path = campaign_file(floor.tmp_path, "preview", PREVIEW_LEADS, floor.phone.port, "\n[policy]\ntimeout = 1\n")
    floor.start_dispatch(path)

    async def scenario(b: Backend, monitor: aiomqtt.Client) -> dict[str, Any]:
        await b.ok("agent.login", agent_id="a1")
        await b.ok("agent.ready", agent_id="a1")
        offer = (await b.event("preview.offer", agent_id="a1")).data
        floor.workers.kill("p1")
        await b.event("call.dialed", call_id=offer["call_id"], timeout=5)  # the dialer's own dial, at dial_at
        record = await b.event("call.record", call_id=offer["call_id"], timeout=12)  # not the 20-s ring timeout
        assert record.data["placed"] is False and record.data["outcome"] != "no_answer", record.data
        await b.event("agent.state", agent_id="a1", state="ready", timeout=5)
        return offer

    offer = asyncio.run(run_backend(floor.broker.port, scenario, 60))
    assert_given_back(floor, offer["lead_id"])
    report = compliance(floor.tmp_path / "campaign.sqlite")
    assert report.returncode == 0, report.stdout + report.stderr
    assert json.loads(report.stdout)["regimes"] == {"us": [], "uk": [], "ca": []}  # no call placed, no window
