"""Audio really flows: through the agent bridge both ways, and into a machine's mailbox after its greeting.

SIPp cannot record, so the far end that must hear something is the pjsua2 softphone of ``pj_peer.py`` (its own
process and endpoint), and what it recorded is checked for the tone we sent, by frequency.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from amd_corpus import MACHINES, speak
from audio_check import first_run, pcm_wav, tone_frames, tone_wav
from sip_helpers import Recorder, pool, run, started

from dialer import Engine, EngineConfig, Lead, ListLeads, Outcome, make_policy
from dialer.live.runtime import AsyncRuntime
from dialer.live.sip_runtime import SipRuntime
from dialer.sip import AmdConfig, Bridged, Ended


def test_audio_crosses_the_bridge_both_ways(sipp_factory: type, pj_peer: type, tmp_path: Path) -> None:
    """The agent plays a 600-Hz tone; the customer (SIPp) echoes what it hears; the agent must hear its tone
    back. That path exists only if the worker's bridge carries agent->customer and customer->agent audio.

    The tone loops and we hang up 3 s after the bridge is up: how much of the recording holds the tone then
    depends on the bridge alone, not on how the peer's timers and our call setup happen to line up."""
    customer = sipp_factory("customers.xml", "-rtp_echo")
    agent = pj_peer(play=tone_wav(tmp_path / "tone600.wav", 600, 1.0), loop=True)

    async def scenario() -> Recorder:
        rec = Recorder()
        driver = await started(pool(customer.port, agent_legs=True), rec)
        try:
            await driver.dial(1, "2000001", 20)  # answers and stays until we hang up
            await rec.wait(lambda e: e.call_id == 1 and type(e).__name__ == "Answered")
            driver.bridge(1, f"sip:alice@127.0.0.1:{agent.port}")
            await rec.wait(lambda e: isinstance(e, Bridged))
            await asyncio.sleep(3.0)  # let audio flow
            driver.hangup(1)  # both legs
            await rec.wait(lambda e: isinstance(e, Ended), timeout=15)
        finally:
            await driver.close()
        return rec

    rec = run(scenario())
    assert rec.of(1)[-1] == Ended(1, "local")
    frames = tone_frames(agent.recording(1), 600)
    assert first_run(frames) is not None, "the agent never heard its tone come back through the bridge"
    pattern = "".join("#" if f else "." for f in frames)
    print(f"\nbridge: {sum(frames)} of {len(frames)} recorded 20-ms frames hold the echoed tone")
    assert sum(frames) >= 50, pattern  # at least 1 s of the 3 s made the round trip


def test_machine_gets_the_voicemail_after_its_greeting(pj_peer: type, tmp_path: Path) -> None:
    """Detection says machine; with ``machine="message"`` the worker waits out the greeting, plays the campaign's
    voicemail (an 800-Hz tone here) and hangs up. The machine's recording holds the tone, after the greeting."""
    greeting = speak(MACHINES[5], tmp_path, 0)  # "Hey, it's Dave, can't talk now, you know what to do."
    greeting_seconds = len(greeting) / 16000
    machine = pj_peer(play=pcm_wav(tmp_path / "greeting.wav", greeting))
    voicemail = tone_wav(tmp_path / "vm800.wav", 800, 1.0)
    leads = ListLeads([Lead("vm", "3000001")])

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), leads, EngineConfig(connect_limit=2.0))
        sip = SipRuntime(
            AsyncRuntime(engine),
            pool(
                machine.port,
                agent_legs=True,
                amd=AmdConfig(enabled=True),
                voicemail_wav=str(voicemail),
                agent_sessions=False,
            ),
            agents={"bob": "sip:bob@127.0.0.1:9"},  # never called: a machine is not put through
            machine="message",
        )
        await sip.start()
        try:
            while not sip.records or sip.driver.active:
                sip._idle.clear()
                await asyncio.wait_for(sip._idle.wait(), 20)
        finally:
            await sip.close()
        return sip

    sip = run(scenario())
    (record,) = sip.records
    assert record.outcome is Outcome.MACHINE
    assert record.call_id in sip.voicemail_started
    frames = tone_frames(machine.recording(1), 800)
    start = first_run(frames)
    assert start is not None, "the machine never recorded our message"
    print(f"\ngreeting {greeting_seconds:.2f} s; our message reached the machine at {start * 0.02:.2f} s")
    assert start * 0.02 >= greeting_seconds  # not talked over the greeting: it starts once the greeting is over
    assert sum(frames) >= 40  # the 1-s message played out before we hung up
