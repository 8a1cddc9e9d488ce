"""The engine live over SIP: AsyncRuntime + SipRuntime against SIPp customers and a SIPp agent softphone."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from sip_helpers import pool, run

from dialer import Engine, EngineConfig, Lead, ListLeads, Outcome, make_policy
from dialer.live.runtime import AsyncRuntime
from dialer.live.sip_runtime import SipRuntime


def make_message(tmp_path: Path, seconds: float = 1.0) -> Path:
    sox = shutil.which("sox")
    assert sox is not None, "sox is not installed"
    wav = tmp_path / "abandon.wav"
    subprocess.run(
        [sox, "-n", "-r", "8000", "-c", "1", "-b", "16", str(wav), "synth", str(seconds), "sine", "440"], check=True
    )
    return wav


def test_campaign_with_agent_bridge_abandon_message_and_opt_out(sipp_factory: type, tmp_path: Path) -> None:
    customers = sipp_factory("customers.xml")
    agent = sipp_factory("agent.xml", "-rtp_echo")
    wav = make_message(tmp_path)
    leads = ListLeads(
        [
            Lead("talk", "2000001"),  # answers first: bridged to the agent, who hangs up after 1.5 s
            Lead("optout", "2040001"),  # answers 0.5 s later: nobody free, message plays, they press 9
            Lead("busy", "4860001"),
            Lead("gone", "4040001"),
        ]
    )
    opted: list[Lead] = []

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("power", ratio=2.0), leads, EngineConfig(connect_limit=0.3))
        runtime = AsyncRuntime(engine)
        sip = SipRuntime(
            runtime,
            # The agent's phone is called at each connect (per-connect legs, the model bus workers use): this
            # SIPp agent hangs up after 1.5 s of talk, which ends a conversation, not a session.
            pool(customers.port, agent_legs=True, abandon_wav=str(wav), agent_sessions=False),
            agents={"alice": f"sip:alice@127.0.0.1:{agent.port}"},
            on_opt_out=opted.append,
        )
        await sip.start()
        try:
            while len(sip.records) < 4:
                sip._idle.clear()
                await asyncio.wait_for(sip._idle.wait(), 20)
            assert await sip.drain(10)
        finally:
            await sip.close()
        return sip

    sip = run(scenario())
    by_lead = {r.lead.lead_id: r for r in sip.records}
    assert by_lead["talk"].outcome is Outcome.CONNECTED and by_lead["talk"].agent_id == "alice"
    assert by_lead["talk"].talk_seconds > 1.0  # the agent's 1.5 s of talk, through the bridge
    abandoned = by_lead["optout"]
    assert abandoned.outcome is Outcome.ABANDONED and abandoned.abandoned
    # Ordered half the 0.3-s limit early (the margin the worker needs), heard within the limit, as measured.
    assert abandoned.message_at is not None and abandoned.wait is not None and abandoned.wait >= 0.14
    assert abandoned.message_played and abandoned.answered_at is not None
    assert 0.1 <= abandoned.message_at - abandoned.answered_at <= 0.3
    assert sip.message_started[abandoned.call_id] == abandoned.message_at
    assert abandoned.ended_at - sip.message_started[abandoned.call_id] > 0.8  # the 1-s message played out
    assert [lead.lead_id for lead in opted] == ["optout"]
    assert by_lead["busy"].outcome is Outcome.BUSY
    assert by_lead["gone"].outcome is Outcome.INVALID_NUMBER
    assert sip.engine.in_flight == 0 and sip.driver.active == 0


def test_ring_timeout_cancels_after_fifteen_seconds(sipp_factory: type) -> None:
    """The only slow test: the engine's 15-s ring timeout turns into our CANCEL, and the call is NO_ANSWER."""
    customers = sipp_factory("customers.xml")
    leads = ListLeads([Lead("ring", "1800001")])

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), leads, EngineConfig(ring_timeout=15.0))
        sip = SipRuntime(
            AsyncRuntime(engine),
            pool(customers.port, agent_legs=True, agent_sessions=False),  # bob is never called: nobody answers
            agents={"bob": "sip:bob@127.0.0.1:9"},
        )
        await sip.start()
        try:
            while not sip.records:
                sip._idle.clear()
                await asyncio.wait_for(sip._idle.wait(), 25)
            for _ in range(100):  # the CANCEL's 487 releases the worker's slot
                if not sip.driver.active:
                    break
                await asyncio.sleep(0.05)
            assert sip.driver.active == 0
        finally:
            await sip.close()
        return sip

    sip = run(scenario())
    (record,) = sip.records
    assert record.outcome is Outcome.NO_ANSWER
    assert record.ended_at - record.dialed_at >= 15.0
