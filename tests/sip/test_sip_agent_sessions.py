"""Agent sessions live over SIP: each agent's phone is called once at login and the leg stays up across customers.

A connect is then a join in a conference bridge (the agent parked in the customer's worker) or a leg between two
of our own workers on loopback: the agent's phone is never rung on the person's clock. The agent is a SIPp
softphone (``scenarios/agent_session.xml``) that talks without pause, so the first sound the customer hears after
its 200 OK is the agent; the loopback capture (``wire.py``) times it from the packets.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

from sip_helpers import agent_audio, pool, run
from wire import WireCapture

from dialer import Engine, EngineConfig, Lead, ListLeads, Outcome, make_policy
from dialer.engine import events as ev
from dialer.engine.state import AgentState
from dialer.live.runtime import AsyncRuntime
from dialer.live.sip_runtime import SipRuntime


async def _until(sip: SipRuntime, done: object, timeout: float) -> None:
    async def wait() -> None:
        while not done():  # type: ignore[operator]
            sip._idle.clear()
            await sip._idle.wait()

    await asyncio.wait_for(wait(), timeout)


def test_an_agent_logs_in_once_and_takes_customer_after_customer_on_one_leg(sipp_factory: type, tmp_path: Path) -> None:
    """Three customers who hang up after 1.5 s of talk, one agent: the agent's phone gets one INVITE in all, every
    customer reaches the agent (none abandoned), and the agent's audio reaches each customer within 300 ms of
    their answer, measured on the wire, across two workers (the agent parked in one, customers in the other)."""
    agent_audio(tmp_path)
    customers = sipp_factory("customers.xml")
    agent = sipp_factory("agent_session.xml")
    leads = ListLeads([Lead(f"c{i}", f"201000{i}") for i in range(3)])
    capture = WireCapture(ports={customers.port, customers.media_port, agent.port}).start()

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), leads, EngineConfig(connect_limit=2.0))
        config = pool(customers.port, agent_legs=True, workers=2, calls_per_worker=4)
        sip = SipRuntime(AsyncRuntime(engine), config, agents={"alice": f"sip:alice@127.0.0.1:{agent.port}"})
        await sip.start()
        try:
            assert sip.engine.agent_state("alice") is AgentState.READY
            await _until(sip, lambda: len(sip.records) == 3, 60)
            hosts = [w["agents"] for w in sip.driver.workers]
            assert hosts.count(["alice"]) == 1  # parked on one worker
            assert await sip.drain(10)
            assert sip.engine.agent_state("alice") in (AgentState.READY, AgentState.WRAP_UP)
        finally:
            await sip.close()
        return sip

    try:
        sip = run(scenario(), 120)
    finally:
        capture.stop()
    assert [r.outcome for r in sip.records] == [Outcome.CONNECTED] * 3
    assert all(not r.abandoned and r.agent_id == "alice" and r.talk_seconds > 1.0 for r in sip.records)
    agent_invites = capture.messages(method="INVITE")
    to_agent = [m for m in agent_invites if m.dst[1] == agent.port]
    assert len({m.call_id for m in to_agent}) == 1  # one login, not one call per customer
    assert [e.up for e in sip.agent_log] == [True, False]  # up at login, down at our logout on close
    latencies = []
    for call_id in capture.call_ids():
        if any(m.dst[1] == agent.port for m in capture.dialog(call_id)):
            continue
        latency = capture.answer_to_audio(call_id)
        assert latency is not None, f"no agent audio reached customer {call_id}"
        latencies.append(latency)
    assert len(latencies) == 3
    print(f"\nanswer -> agent audio at the customer: {[round(x * 1000) for x in latencies]} ms")
    assert max(latencies) <= 0.3 and statistics.median(latencies) < 0.3


def test_an_agent_whose_phone_hangs_up_is_logged_out_not_left_paused(sipp_factory: type, tmp_path: Path) -> None:
    """The standing leg drops mid-call: the customer's call ends (agent lost) and the agent is logged out, with
    the reason in the agent log, instead of staying a paused ghost the pacing would count."""
    agent_audio(tmp_path)
    customers = sipp_factory("customers.xml")
    agent = sipp_factory("agent_session.xml")
    leads = ListLeads([Lead("held", "2000001")])  # answers and stays until we hang up

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), leads, EngineConfig(connect_limit=2.0))
        config = pool(customers.port, agent_legs=True)
        sip = SipRuntime(AsyncRuntime(engine), config, agents={"dave": f"sip:drop@127.0.0.1:{agent.port}"})
        await sip.start()
        try:
            await _until(sip, lambda: len(sip.records) == 1, 30)
            await _until(sip, lambda: sip.engine.agent_state("dave") is AgentState.LOGGED_OUT, 10)
            assert await sip.drain(10)
        finally:
            await sip.close()
        return sip

    sip = run(scenario(), 60)
    (record,) = sip.records
    assert record.outcome is Outcome.CONNECTED and record.agent_lost and record.agent_id == "dave"
    assert [(e.agent_id, e.up) for e in sip.agent_log] == [("dave", True), ("dave", False)]
    assert sip.agent_log[-1].status == 200 or sip.agent_log[-1].text  # the far end's BYE, with its reason


def test_the_agent_hang_up_key_ends_the_call_and_keeps_the_agent(sipp_factory: type, tmp_path: Path) -> None:
    agent_audio(tmp_path)
    customers = sipp_factory("customers.xml")
    agent = sipp_factory("agent_session.xml")
    leads = ListLeads([Lead("held", "2000001")])

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), leads, EngineConfig(connect_limit=2.0))
        config = pool(customers.port, agent_legs=True)
        sip = SipRuntime(AsyncRuntime(engine), config, agents={"hana": f"sip:hash@127.0.0.1:{agent.port}"})
        await sip.start()
        try:
            await _until(sip, lambda: len(sip.records) == 1, 30)
            assert await sip.drain(10)
            assert sip.engine.agent_state("hana") in (AgentState.READY, AgentState.WRAP_UP)
        finally:
            await sip.close()
        return sip

    sip = run(scenario(), 60)
    (record,) = sip.records
    assert record.outcome is Outcome.CONNECTED and not record.agent_lost and record.talk_seconds > 1.0
    assert [e.up for e in sip.agent_log] == [True, False]  # logged out only at close


def test_an_agent_whose_phone_refuses_the_login_never_becomes_ready(sipp_factory: type) -> None:
    customers = sipp_factory("customers.xml")
    agent = sipp_factory("agent_refuses.xml")
    leads = ListLeads([Lead("held", "2000001")])

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), leads, EngineConfig(connect_limit=2.0))
        sip = SipRuntime(AsyncRuntime(engine), pool(customers.port, agent_legs=True),
                         agents={"bob": f"sip:busy@127.0.0.1:{agent.port}"})  # fmt: skip
        await sip.start()
        try:
            assert sip.engine.agent_state("bob") is AgentState.LOGGED_OUT
            assert sip.engine.in_flight == 0 and not sip.records  # nobody to take a call: nothing dialed
        finally:
            await sip.close()
        return sip

    sip = run(scenario(), 40)
    assert [(e.agent_id, e.up, e.status) for e in sip.agent_log] == [("bob", False, 486)]


def test_an_agent_whose_softphone_calls_in_is_logged_in_and_takes_calls(sipp_factory: type, tmp_path: Path) -> None:
    """The dialer's call to the agent at start is refused (their phone was busy); the agent's softphone then
    calls the worker at ``sip:agent-ID@...`` from the agent's configured address, is logged in, and takes the
    next customer. A call-in for an agent nobody configured is refused."""
    from sipp_peers import free_port

    agent_audio(tmp_path)
    customers = sipp_factory("customers.xml")
    refuser = sipp_factory("agent_refuses.xml")
    sip_port = free_port()
    leads = ListLeads([Lead("c", "2010001")])  # answers, then hangs up after 1.5 s of talk

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), leads, EngineConfig(connect_limit=2.0))
        config = pool(customers.port, agent_legs=True, sip_port=sip_port)
        sip = SipRuntime(AsyncRuntime(engine), config, agents={"alice": f"sip:busy@127.0.0.1:{refuser.port}"})
        await sip.start(login_timeout=10)
        try:
            assert sip.engine.agent_state("alice") is AgentState.LOGGED_OUT and not sip.records
            stranger = sipp_factory("agent_callin.xml", f"127.0.0.1:{sip_port}", "-s", "agent-mallory", "-m", "1")
            agent = sipp_factory("agent_callin.xml", f"127.0.0.1:{sip_port}", "-s", "agent-alice", "-m", "1")
            await _until(sip, lambda: len(sip.records) == 1, 30)
            assert await sip.drain(10)
            assert sip.engine.agent_state("alice") in (AgentState.READY, AgentState.WRAP_UP)
            assert "mallory" not in sip.engine.agents and stranger and agent
        finally:
            await sip.close()
        return sip

    sip = run(scenario(), 90)
    (record,) = sip.records
    assert record.outcome is Outcome.CONNECTED and record.agent_id == "alice" and record.talk_seconds > 1.0
    assert [(e.up, e.status) for e in sip.agent_log][:2] == [(False, 486), (True, 0)]


def test_an_agent_whose_worker_is_killed_is_called_back_and_takes_the_next_customer(
    sipp_factory: type, tmp_path: Path
) -> None:
    """SIGKILL the pjsua2 process hosting an agent's standing leg: the agent is logged out at once (no ghost),
    called again on a live worker (it was our crash, not their phone), and takes the next customer."""
    import os
    import signal

    agent_audio(tmp_path)
    customers = sipp_factory("customers.xml")
    agent = sipp_factory("agent_session.xml")
    leads = ListLeads([Lead("c", "2010001")])  # answers, then hangs up after 1.5 s of talk

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), leads, EngineConfig(connect_limit=2.0))
        config = pool(customers.port, agent_legs=True, workers=2)
        sip = SipRuntime(AsyncRuntime(engine), config, agents={"alice": f"sip:alice@127.0.0.1:{agent.port}"})
        sip.engine.handle(ev.DialingStopped(0.0))  # hold dialing until the crash is over
        await sip.start()
        try:
            (host,) = [w for w in sip.driver.workers if w["agents"] == ["alice"]]
            os.kill(host["pid"], signal.SIGKILL)
            await _until(sip, lambda: [e.up for e in sip.agent_log] == [True, False, True], 30)
            assert sip.engine.agent_state("alice") is AgentState.READY
            sip.runtime.submit(ev.DialingResumed)
            await _until(sip, lambda: len(sip.records) == 1, 30)
            assert await sip.drain(10)
        finally:
            await sip.close()
        return sip

    sip = run(scenario(), 90)
    (record,) = sip.records
    assert record.outcome is Outcome.CONNECTED and record.agent_id == "alice" and not record.abandoned
    assert sip.agent_log[1].text == "worker died"
