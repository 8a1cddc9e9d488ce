"""Answering-machine detection against the 2-second rule, live over SIP with agent sessions.

An ``unsure`` verdict (here: a line that says nothing) must reach a free agent, not the message: before the
detection budget was made to fit inside the connect limit, a 2.0-s budget equal to the 2.0-s limit abandoned
every such person even with agents free. And where the campaign's regime starts the clock later (the end of the
greeting, US; the first word, UK), the ledger's ``answered_at`` is that moment and ``picked_up_at`` the 200 OK.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from amd_corpus import PEOPLE, speak, to_ulaw
from sip_helpers import agent_audio, pool, run

from dialer import Engine, EngineConfig, Lead, ListLeads, Outcome, make_policy
from dialer.errors import ConfigError
from dialer.live.runtime import AsyncRuntime
from dialer.live.sip_runtime import SipRuntime
from dialer.sip import AmdConfig


def _campaign(customers_port: int, agent_port: int, number: str, **changes: object) -> SipRuntime:
    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), ListLeads([Lead("p", number)]), EngineConfig(connect_limit=2.0))
        config = pool(customers_port, agent_legs=True, amd=AmdConfig(enabled=True), **changes)
        sip = SipRuntime(AsyncRuntime(engine), config, agents={"alice": f"sip:hash@127.0.0.1:{agent_port}"})
        await sip.start()
        try:
            while not sip.records:
                sip._idle.clear()
                await asyncio.wait_for(sip._idle.wait(), 30)
            assert await sip.drain(10)
        finally:
            await sip.close()
        return sip

    return run(scenario(), 60)


def test_an_unsure_verdict_reaches_a_free_agent_within_the_limit(sipp_factory: type, tmp_path: Path) -> None:
    """A silent line: detection cannot tell, says ``unsure`` within its budget, and the person is put through to
    the free agent (who ends the call with the hang-up key), never abandoned."""
    agent_audio(tmp_path)
    customers = sipp_factory("customers.xml")
    agent = sipp_factory("agent_session.xml")
    sip = _campaign(customers.port, agent.port, "2000001")  # answers and says nothing
    (record,) = sip.records
    assert record.amd_verdict == "unsure" and record.amd_seconds is not None
    assert record.amd_seconds <= AmdConfig().budget + 0.1
    assert record.outcome is Outcome.CONNECTED and not record.abandoned, record
    assert record.connected_at is not None and record.answered_at is not None
    assert record.connected_at - record.answered_at <= 2.0


def test_a_person_is_timed_from_the_end_of_their_greeting_where_the_regime_says_so(
    sipp_factory: type, tmp_path: Path
) -> None:
    """``connect_clock = "greeting_end"`` (US): the ledger's clock starts where the person's "Hello?" ended (after
    the 200 OK by about the greeting's length), and the 200 OK itself is kept as ``picked_up_at``."""
    agent_audio(tmp_path)
    hello = speak(PEOPLE[0], tmp_path, 100)
    to_ulaw(bytes(3200) + hello, tmp_path, "person.ulaw")  # 0.2 s of silence, then "Hello?"
    customers = sipp_factory("customers.xml")
    agent = sipp_factory("agent_session.xml")
    sip = _campaign(customers.port, agent.port, "2020001", connect_clock="greeting_end")
    (record,) = sip.records
    assert record.amd_verdict == "person" and record.outcome is Outcome.CONNECTED and not record.abandoned
    assert record.picked_up_at is not None and record.answered_at is not None
    spoken = len(hello) / 16000
    # The clock started after the greeting began and no later than it ended (never late: conservative).
    assert 0.2 <= record.answered_at - record.picked_up_at <= 0.2 + spoken + 0.1
    assert record.connected_at is not None and record.connected_at - record.answered_at <= 2.0


@pytest.mark.parametrize(("clock", "key"), [("answer", "amd.budget"), ("greeting_end", "amd.initial_silence")])
def test_detection_that_cannot_fit_the_connect_limit_is_refused_at_start(clock: str, key: str) -> None:
    engine = Engine(make_policy("progressive"), ListLeads([]), EngineConfig(connect_limit=2.0))
    amd = AmdConfig(enabled=True, budget=2.0, initial_silence=2.0)

    async def build() -> None:
        SipRuntime(AsyncRuntime(engine), pool(5060, amd=amd, connect_clock=clock), agents={})

    with pytest.raises(ConfigError) as info:
        asyncio.run(build())
    assert info.value.key == key
