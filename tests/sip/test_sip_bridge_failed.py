"""An agent's phone that does not take the bridge, live over SIP: the answered person is an abandoned call.

SIPp customers and a SIPp agent softphone that refuses (486) or rings on unanswered until our agent answer
timeout CANCELs it. The worker keeps the customer up, the engine counts the abandonment and orders the message,
the worker plays it to the end and hangs up, and the agent is paused.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
import wave
from pathlib import Path

import pytest
from sip_helpers import Recorder, pool, run, started

from dialer import Engine, EngineConfig, Lead, ListLeads, Outcome, make_policy
from dialer.engine.state import AgentState
from dialer.errors import ConfigError
from dialer.live.runtime import AsyncRuntime
from dialer.live.sip_runtime import SipRuntime
from dialer.sip import Answered, BridgeFailed, Ended, MessageStarted, PoolConfig


def _message(path: Path, seconds: float = 1.0) -> Path:
    """A 440-Hz tone as the abandonment message, long enough that cutting it short would show."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 8000 * 2 * math.pi * 440)))
                               for i in range(int(8000 * seconds))))  # fmt: skip
    return path


@pytest.mark.parametrize(("agent_user", "status"), [("busy", 486), ("noanswer", 408)])
def test_an_agent_phone_that_does_not_answer_is_an_abandonment_with_the_message(
    sipp_factory: type, tmp_path: Path, agent_user: str, status: int
) -> None:
    customers = sipp_factory("customers.xml")
    agent = sipp_factory("agent_refuses.xml")
    wav = _message(tmp_path / "abandon.wav")
    leads = ListLeads([Lead("held", "2000001")])  # answers, then stays on the line until the dialer hangs up

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), leads, EngineConfig(connect_limit=2.0))
        # Per-connect agent legs (the model bus workers use): the agent's phone is called at the connect.
        config = pool(customers.port, agent_legs=True, abandon_wav=str(wav), agent_answer_timeout=1.0,
                      agent_sessions=False)  # fmt: skip
        sip = SipRuntime(AsyncRuntime(engine), config, agents={"alice": f"sip:{agent_user}@127.0.0.1:{agent.port}"})
        await sip.start()
        try:
            while not sip.records:
                sip._idle.clear()
                await asyncio.wait_for(sip._idle.wait(), 30)
            assert await sip.drain(10)
        finally:
            await sip.close()
        return sip

    sip = run(scenario(), 90)
    (record,) = sip.records
    cid = record.call_id
    assert sip.bridge_failed == {cid: status} and not sip.bridged
    assert record.outcome is Outcome.ABANDONED and record.abandoned and record.bridge_failed
    assert record.agent_id == "alice" and record.connected_at is None and not record.customer_hung_up
    assert record.message_at is not None and record.answered_at is not None and record.message_played
    # The worker kept the customer up and played the message the moment the agent leg failed, without waiting
    # for the engine's order; the ledger holds when it was heard, inside the 2-s limit (the agent's ring was cut
    # short by the person's deadline), and it played to its end before our hang-up.
    assert record.message_at - record.answered_at <= 2.0
    assert sip.message_started[cid] == record.message_at
    assert record.ended_at - sip.message_started[cid] > 0.8
    totals = sip.engine.stats.totals
    assert (totals.live_answers, totals.abandoned, totals.bridge_failed, totals.connects) == (1, 1, 1, 0)
    assert sip.engine.agent_state("alice") is AgentState.PAUSED
    assert sip.engine.in_flight == 0 and sip.driver.active == 0


def test_a_customer_whose_bridge_failed_hears_the_message_even_if_the_runtime_never_orders_it(
    sipp_factory: type, tmp_path: Path
) -> None:
    """The driver alone, with nobody acting on ``BridgeFailed`` (a runtime gone, a bus cut off): the worker plays
    the message by itself and hangs up after it, so the person is neither left connected to nothing nor kept
    waiting for a round trip to the engine."""
    customers = sipp_factory("customers.xml")
    agent = sipp_factory("agent_refuses.xml")
    wav = _message(tmp_path / "abandon.wav")

    async def scenario() -> tuple[Recorder, float]:
        rec = Recorder()
        config = pool(customers.port, agent_legs=True, bridge_failed_grace=1.0, abandon_wav=str(wav))
        driver = await started(config, rec)
        try:
            await driver.dial(1, "2000001")  # answers and stays until we hang up
            await rec.wait(lambda e: isinstance(e, Answered), 20)
            driver.bridge(1, f"sip:busy@127.0.0.1:{agent.port}")
            await rec.wait(lambda e: isinstance(e, BridgeFailed), 20)
            failed_at = time.monotonic()
            await rec.wait(lambda e: isinstance(e, Ended), 20)
            held = time.monotonic() - failed_at
        finally:
            await driver.close()
        return rec, held

    rec, held = run(scenario())
    kinds = [type(e) for e in rec.of(1)]
    assert kinds.index(BridgeFailed) < kinds.index(MessageStarted) < kinds.index(Ended)
    # Kept up for the whole 1-s message (not hung up with the agent leg nor at the 1-s grace): a lower bound.
    assert held > 0.8
    failed = next(e for e in rec.of(1) if isinstance(e, BridgeFailed))
    ended = next(e for e in rec.of(1) if isinstance(e, Ended))
    assert failed.status == 486 and ended.by == "local"


@pytest.mark.parametrize("key", ["agent_answer_timeout", "bridge_failed_grace"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan])
def test_bridge_timeouts_must_be_positive_and_finite(key: str, value: float) -> None:
    with pytest.raises(ConfigError) as info:
        PoolConfig(**{key: value})  # type: ignore[arg-type]
    assert info.value.key == f"pool.{key}"
