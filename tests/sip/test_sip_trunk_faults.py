"""A trunk that misbehaves, live over SIP: silence, a phone that never rings, and the slots such calls keep.

Each test here failed on the driver before slot accounting and the worker's wire rules: INVITEs that heard
nothing were reported ``no_answer`` when the ring timeout came (or hung in pjsip with their slot taken while new
calls were routed there, their agent legs refused and the answered people abandoned), and a dead trunk burned
the whole list. The peer is SIPp playing ``scenarios/trunk_faults.xml`` (the number's prefix picks the fault).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from audio_check import tone_wav
from sip_helpers import Recorder, pool, run, started

from dialer import Engine, EngineConfig, Lead, ListLeads, Outcome, make_policy
from dialer.engine import events as ev
from dialer.live.runtime import AsyncRuntime
from dialer.live.sip_runtime import SipRuntime
from dialer.sip import Failed, NotPlaced, Placed, Ringing


def test_an_invite_that_hears_nothing_is_a_network_failure_and_a_silent_trunk_stops_dialing(
    sipp_factory: type,
) -> None:
    trunk = sipp_factory("trunk_faults.xml")
    alerts: list[tuple[str, str]] = []

    async def scenario() -> tuple[Recorder, dict[str, int], str | None, float]:
        rec = Recorder()
        config = pool(trunk.port, no_response_timeout=1.0, silent_trunk_calls=2, calls_per_worker=4)
        driver = await started(config, rec, on_alert=lambda kind, text: alerts.append((kind, text)))
        try:
            began = time.monotonic()
            await driver.dial(1, "9000001", 30.0)
            await driver.dial(2, "9000002", 30.0)
            await rec.wait(lambda e: isinstance(e, Failed) and e.call_id == 2, 10)
            took = time.monotonic() - began
            await driver.dial(3, "2000003", 30.0)  # the trunk is judged down: this one must not leave
            await rec.wait(lambda e: e.call_id == 3, 5)
            return rec, dict(driver.stats), driver.trunk_down, took
        finally:
            await driver.close()

    rec, stats, down, took = run(scenario(), 60)
    for cid in (1, 2):
        kinds = [type(e) for e in rec.of(cid)]
        assert kinds == [Placed, Failed], kinds  # no ringing was invented, and no answer
        (failed,) = [e for e in rec.of(cid) if isinstance(e, Failed)]
        assert failed.outcome.reason is ev.FailureReason.NETWORK and failed.outcome.congestion
    # Reported at the no-response timeout, not at the 30-s ring timeout nor pjsip's 32-s INVITE timeout.
    assert took < 10
    assert [type(e) for e in rec.of(3)] == [NotPlaced]
    assert stats["no_response"] == 2 and stats["dials"] == 2
    assert down is not None and alerts and alerts[0][0] == "trunk_silent"


def test_a_trunk_that_takes_the_invite_but_never_rings_is_not_a_no_answer(sipp_factory: type) -> None:
    """100 Trying and nothing else: the CANCEL leaves at the ring timeout, and the outcome is the network's."""
    trunk = sipp_factory("trunk_faults.xml")

    async def scenario() -> Recorder:
        rec = Recorder()
        driver = await started(pool(trunk.port), rec)
        try:
            await driver.dial(1, "9010001", 15.0)
            await rec.wait(lambda e: isinstance(e, Failed), 40)
        finally:
            await driver.close()
        return rec

    rec = run(scenario(), 60)
    assert Ringing not in [type(e) for e in rec.of(1)]
    (failed,) = [e for e in rec.of(1) if isinstance(e, Failed)]
    assert failed.status == 487  # we cancelled it: the trunk had answered 100, so a CANCEL could leave
    assert failed.outcome.reason is ev.FailureReason.NETWORK


def test_slots_held_by_silent_invites_are_not_given_to_answered_people(sipp_factory: type, tmp_path: Path) -> None:
    """Two silent INVITEs keep two of the worker's four slots for pjsip's 32 s; the two answered people that
    follow must each get a customer slot and an agent slot, one after the other, and reach their agent."""
    trunk = sipp_factory("trunk_faults.xml")
    agent = sipp_factory("agent.xml", "-rtp_echo")
    leads = ListLeads([Lead("s1", "9000001"), Lead("s2", "9000002"), Lead("p1", "2000001"), Lead("p2", "2000002")])

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), leads, EngineConfig(connect_limit=2.0))
        config = pool(trunk.port, agent_legs=True, abandon_wav=str(tone_wav(tmp_path / "m.wav", 440, 1.0)),
                      no_response_timeout=1.0, calls_per_worker=4, agent_sessions=False)  # fmt: skip
        agents = {"alice": f"sip:alice@127.0.0.1:{agent.port}", "bob": f"sip:bob@127.0.0.1:{agent.port}"}
        sip = SipRuntime(AsyncRuntime(engine), config, agents=agents)
        await sip.start()
        try:
            while sum(r.placed for r in sip.records) < 4:
                sip._idle.clear()
                await asyncio.wait_for(sip._idle.wait(), 45)
            assert await sip.drain(20)
        finally:
            await sip.close()
        return sip

    sip = run(scenario(), 120)
    placed = {r.lead.lead_id: r for r in sip.records if r.placed}
    assert placed["s1"].outcome is Outcome.NETWORK and placed["s2"].outcome is Outcome.NETWORK
    for lead in ("p1", "p2"):
        record = placed[lead]
        assert record.outcome is Outcome.CONNECTED and not record.abandoned and not record.bridge_failed, record
    assert not sip.bridge_failed
    assert sip.engine.stats.totals.abandoned == 0


def test_the_worker_plays_the_message_at_its_own_deadline_when_nobody_orders_it(
    sipp_factory: type, tmp_path: Path
) -> None:
    """The 2-second rule held at the edge: an answered person with no agent and no order from above (a dispatcher
    gone, a stalled loop) hears the message from the worker at its connect deadline, measured on the wire."""
    from sip_helpers import Recorder
    from wire import WireCapture

    from dialer.sip import Answered, MessageStarted

    customers = sipp_factory("customers.xml")
    capture = WireCapture(ports={customers.port, customers.media_port}).start()

    async def scenario() -> Recorder:
        rec = Recorder()
        config = pool(customers.port, abandon_wav=str(tone_wav(tmp_path / "m.wav", 440, 1.0)), connect_deadline=1.5)
        driver = await started(config, rec)
        try:
            await driver.dial(1, "2000001", 20.0)  # answers and stays: nobody here ever orders an agent or message
            await rec.wait(lambda e: isinstance(e, MessageStarted), 10)
            driver.hangup(1)
            await asyncio.sleep(0.5)
        finally:
            await driver.close()
        return rec

    try:
        rec = run(scenario(), 40)
    finally:
        capture.stop()
    answered = next(e for e in rec.of(1) if isinstance(e, Answered))
    started_ = next(e for e in rec.of(1) if isinstance(e, MessageStarted))
    assert answered.answered_at is not None and started_.at is not None
    assert 1.4 <= started_.at - answered.answered_at <= 1.7
    (call_id,) = capture.call_ids()
    heard = capture.answer_to_audio(call_id)
    assert heard is not None and 1.4 <= heard <= 2.0, heard  # the first sound of the message, from the packets
