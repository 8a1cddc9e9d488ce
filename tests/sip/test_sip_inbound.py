"""Inbound calls live over SIP: a caller rings the dialer's inbound port, is answered, hears the queue audio,
and is joined to a free inbound or blended agent's standing leg, as an outbound connect is.

The callers are SIPp UACs (``scenarios/inbound_caller.xml``), one process per caller started when the test
wants them to ring; the agents are SIPp softphones (``agent_session.xml``) holding a standing leg and looping a
440-Hz tone. The queue audio is a 1000-Hz tone, so the capture on ``lo`` (``wire.py``) tells, packet by packet,
whether a caller heard the queue or an agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from audio_check import tone_wav
from sip_helpers import agent_audio, finish, pool, read_until, run, start_run
from sipp_peers import free_port
from wire import RtpPacket, WireCapture, ulaw_to_linear

from dialer import Engine, EngineConfig, Lead, ListLeads, Outcome, make_policy
from dialer.engine.records import InboundOutcome
from dialer.engine.state import AgentState
from dialer.live.runtime import AsyncRuntime
from dialer.live.sip_runtime import SipRuntime
from dialer.sip.config import InboundConfig, PoolConfig

QUEUE_HZ = 1000.0
AGENT_HZ = 440.0


def _tone_share(packet: RtpPacket, freq: float) -> float:
    """The share of a PCMU packet's energy at ``freq`` (Goertzel), 0 for silence."""
    if packet.payload_type != 0 or not packet.payload:
        return 0.0
    samples = ulaw_to_linear(packet.payload)
    n = len(samples)
    coeff = 2 * math.cos(2 * math.pi * freq / 8000)
    s1 = s2 = energy = 0.0
    for x in samples:
        s0 = x + coeff * s1 - s2
        s2, s1 = s1, s0
        energy += x * x
    if energy < 1e4 * n:
        return 0.0
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) * 2 / n / energy


def heard(capture: WireCapture, media_port: int) -> list[str]:
    """What a caller heard, packet by packet: ``queue``, ``agent`` or ``-`` (silence, anything else)."""
    out = []
    for p in capture.rtp_packets(dst_port=media_port):
        if _tone_share(p, QUEUE_HZ) > 0.5:
            out.append("queue")
        elif _tone_share(p, AGENT_HZ) > 0.5:
            out.append("agent")
        else:
            out.append("-")
    return out


def runs(labels: list[str]) -> list[str]:
    """Consecutive runs of at least 10 packets (200 ms) of one label, in order: ``["queue", "agent"]``."""
    out: list[str] = []
    count, last = 0, ""
    for label in labels:
        count = count + 1 if label == last else 1
        last = label
        if count == 10 and label != "-" and (not out or out[-1] != label):
            out.append(label)
    return out


def capture_for(config: PoolConfig) -> WireCapture:
    """A capture of what crosses ``lo`` to and from the inbound worker: its SIP port and its RTP range (other
    people's SIP traffic on this machine stays out of it)."""
    assert config.inbound is not None
    first = config.rtp_port + config.workers * config.rtp_ports_per_worker
    return WireCapture(ports={config.inbound.port, *range(first, first + config.rtp_ports_per_worker)}).start()


T = TypeVar("T")


def run_captured(config: PoolConfig, coro: Coroutine[Any, Any, T], timeout: float) -> tuple[T, WireCapture]:
    """Run a scenario with the inbound worker's traffic captured (:func:`capture_for`), the capture stopped
    whatever happens; its packets are read afterwards."""
    capture = capture_for(config)
    try:
        return run(coro, timeout), capture
    finally:
        capture.stop()


async def until(sip: SipRuntime, done: Callable[[], object], timeout: float) -> None:
    async def wait() -> None:
        while not done():
            sip._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sip._idle.wait(), 0.2)

    await asyncio.wait_for(wait(), timeout)


def caller(sipp_factory: type, port: int, hold_ms: int) -> Any:
    """One caller ringing the inbound port now, hanging up ``hold_ms`` after the answer."""
    return sipp_factory("inbound_caller.xml", "-m", "1", "-d", str(hold_ms), f"127.0.0.1:{port}")


async def finished(*callers: Any, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    for c in callers:
        code = await loop.run_in_executor(None, c.proc.wait, timeout)
        assert code == 0, f"SIPp caller failed ({code}): {c.log.read_text(errors='replace')[-1500:]}"


def test_a_caller_hears_queue_audio_then_is_bridged_to_a_free_inbound_agent(sipp_factory: type, tmp_path: Path) -> None:
    """Two callers, one inbound agent: the first is joined at once; the second waits, hearing the 1000-Hz queue
    audio on the wire, and is joined to the same agent (their 440-Hz tone) once the first hangs up. Both records
    are answered, by the agent, the second after a longer wait; each is in the evidence callback."""
    agent_audio(tmp_path)
    queue_wav = tone_wav(tmp_path / "queue.wav", QUEUE_HZ, 2.0)
    agent = sipp_factory("agent_session.xml")
    port = free_port()
    inbound = InboundConfig(port=port, queue_wav=str(queue_wav))
    kept: list[tuple[Any, dict[str, Any]]] = []

    config = pool(9, agent_legs=True, workers=1, inbound=inbound)

    async def scenario() -> tuple[SipRuntime, list[Any]]:
        engine = Engine(make_policy("progressive"), ListLeads([]), EngineConfig(connect_limit=2.0))
        sip = SipRuntime(AsyncRuntime(engine), config, agents={"alice": f"sip:alice@127.0.0.1:{agent.port}"},
                         groups={"alice": "inbound"},
                         on_inbound_record=lambda r, w: kept.append((r, dict(w))))  # fmt: skip
        await sip.start()
        try:
            assert sip.engine.agent_state("alice") is AgentState.READY
            first = caller(sipp_factory, port, 3000)
            await until(sip, lambda: len(sip.inbound_bridged) == 1, 15)
            second = caller(sipp_factory, port, 6000)
            await finished(first, second)
            await until(sip, lambda: len(sip.inbound_records) == 2, 15)
            assert await sip.drain(10)
        finally:
            await sip.close()
        return sip, [first, second]

    (sip, (first, second)), capture = run_captured(config, scenario(), 90)
    a, b = sip.inbound_records
    assert [r.outcome for r in (a, b)] == [InboundOutcome.ANSWERED] * 2
    assert [r.agent_id for r in (a, b)] == ["alice", "alice"] and b.group == "inbound"
    assert b.wait > a.wait
    assert runs(heard(capture, first.media_port))[-1:] == ["agent"]
    assert runs(heard(capture, second.media_port)) == ["queue", "agent"]
    assert [r.inbound_id for r, _ in kept] == [a.inbound_id, b.inbound_id]
    # Measured, printed, not bounded (a loaded machine only makes them longer): the 200 OK to the first packet of
    # sound the waiting caller got (the queue), and the gap between the last queue packet and the first agent one.
    answer = capture.answer_time(b.inbound_id)
    packets = capture.rtp_packets(dst_port=second.media_port)
    labels = heard(capture, second.media_port)
    first_sound = next(p.time for p in packets if p.audible())
    last_queue = max(p.time for p, label in zip(packets, labels, strict=True) if label == "queue")
    first_agent = min(p.time for p, label in zip(packets, labels, strict=True) if label == "agent")
    assert answer is not None and first_sound >= answer and first_agent > last_queue
    print(f"\n200 OK -> queue audio {1000 * (first_sound - answer):.0f} ms; queue -> agent gap "
          f"{1000 * (first_agent - last_queue):.0f} ms")  # fmt: skip
    assert all(w["sip_call_id"] == r.inbound_id and w["ended_by"] == "remote" for r, w in kept)
    assert sip.inbound_blocked == 0


def test_a_caller_who_hangs_up_while_queued_is_abandoned_and_a_full_worker_answers_busy(
    sipp_factory: type, tmp_path: Path
) -> None:
    """One inbound worker (4 calls: room for 2 callers, each keeping a slot for the bridge), one agent. Caller 1
    talks to the agent; caller 2 waits and hangs up: recorded abandoned, never given an agent. While caller 2
    waits, caller 3 finds the worker full: 486 Busy Here on the wire, counted blocked, no record (never answered).
    The worker is not restarted and takes caller 4, who reaches the agent once caller 1 is done."""
    agent_audio(tmp_path)
    queue_wav = tone_wav(tmp_path / "queue.wav", QUEUE_HZ, 2.0)
    agent = sipp_factory("agent_session.xml")
    port = free_port()
    inbound = InboundConfig(port=port, queue_wav=str(queue_wav))

    config = pool(9, agent_legs=True, workers=1, inbound=inbound)

    async def scenario() -> tuple[SipRuntime, list[Any]]:
        engine = Engine(make_policy("progressive"), ListLeads([]), EngineConfig(connect_limit=2.0))
        sip = SipRuntime(AsyncRuntime(engine), config, agents={"alice": f"sip:alice@127.0.0.1:{agent.port}"},
                         groups={"alice": "blended"})  # fmt: skip
        await sip.start()
        try:
            c1 = caller(sipp_factory, port, 5000)
            await until(sip, lambda: len(sip.inbound_bridged) == 1, 15)
            c2 = caller(sipp_factory, port, 1500)
            await until(sip, lambda: len(sip.engine.inbound) == 2, 15)
            c3 = caller(sipp_factory, port, 1000)
            await finished(c3)
            assert sip.inbound_blocked == 1
            await until(sip, lambda: len(sip.inbound_records) == 1, 15)  # caller 2 gave up
            c4 = caller(sipp_factory, port, 8000)  # outlasts caller 1: waits, then talks
            await finished(c1, c2, c4)
            await until(sip, lambda: len(sip.inbound_records) == 3, 15)
            assert await sip.drain(10)
            assert sip.driver.stats["restarts"] == 0
        finally:
            await sip.close()
        return sip, [c1, c2, c3, c4]

    (sip, callers), capture = run_captured(config, scenario(), 90)
    one, two, four = sorted(sip.inbound_records, key=lambda r: r.arrived_at)
    assert two.outcome is InboundOutcome.ABANDONED and two.agent_id is None and two.wait > 0
    assert [one.outcome, four.outcome] == [InboundOutcome.ANSWERED] * 2
    assert one.agent_id == four.agent_id == "alice" and four.group == "blended"
    assert runs(heard(capture, callers[1].media_port)) == ["queue"]  # queued, never heard an agent
    assert runs(heard(capture, callers[3].media_port)) == ["queue", "agent"]
    busy = [cid for cid in capture.call_ids() if capture.final_status(cid) == 486]
    assert len(busy) == 1 and busy[0] not in {r.inbound_id for r in sip.inbound_records}
    assert sip.inbound_blocked == 1


def test_on_a_blended_floor_an_inbound_caller_takes_the_kept_back_agent_and_outbound_keeps_going(
    sipp_factory: type, tmp_path: Path
) -> None:
    """Alice takes outbound calls only, Bob is blended; the threshold policy keeps one blended agent back for
    inbound. Six customers are dialed for Alice one after another; a caller rings in mid-way and Bob takes them
    at once. Every customer reaches Alice (no abandonment), and outbound calls go on while the caller talks."""
    agent_audio(tmp_path)
    queue_wav = tone_wav(tmp_path / "queue.wav", QUEUE_HZ, 2.0)
    customers = sipp_factory("customers.xml")
    agent = sipp_factory("agent_session.xml")
    port = free_port()
    inbound = InboundConfig(port=port, queue_wav=str(queue_wav))
    leads = ListLeads([Lead(f"c{i}", f"201000{i}") for i in range(6)])  # answer, hang up 1.5 s later

    config = pool(customers.port, agent_legs=True, workers=2, inbound=inbound)

    async def scenario() -> tuple[SipRuntime, Any]:
        engine = Engine(make_policy("threshold", k=1), leads, EngineConfig(connect_limit=2.0))
        agents = {name: f"sip:{name}@127.0.0.1:{agent.port}" for name in ("alice", "bob")}
        sip = SipRuntime(AsyncRuntime(engine), config, agents=agents,
                         groups={"alice": "outbound", "bob": "blended"})  # fmt: skip
        await sip.start()
        try:
            await until(sip, lambda: len(sip.records) == 1, 20)
            c1 = caller(sipp_factory, port, 4000)
            await finished(c1)
            await until(sip, lambda: len(sip.records) == 6 and len(sip.inbound_records) == 1, 40)
            assert await sip.drain(10)
        finally:
            await sip.close()
        return sip, c1

    (sip, c1), capture = run_captured(config, scenario(), 120)
    (call,) = sip.inbound_records
    assert call.outcome is InboundOutcome.ANSWERED and call.agent_id == "bob" and call.group == "blended"
    # Bob was kept free for it: the caller did not wait for an outbound conversation to end.
    assert call.wait < min(r.talk_seconds for r in sip.records)
    assert [r.outcome for r in sip.records] == [Outcome.CONNECTED] * 6
    assert not any(r.abandoned for r in sip.records) and {r.agent_id for r in sip.records} == {"alice"}
    assert call.answered_at is not None
    during = [
        r for r in sip.records if r.connected_at is not None and call.answered_at < r.connected_at < call.ended_at
    ]
    assert during, "no outbound call was connected while the inbound caller talked"
    assert runs(heard(capture, c1.media_port))[-1:] == ["agent"]


INBOUND = """
[inbound]
port = {port}
queue_audio = "queue.wav"
{extra}
[agent_groups]
alice = "inbound"
"""


def _inbound_campaign(tmp_path: Path, port: int, agent_port: int = 5062, extra: str = "") -> Path:
    from test_sip_run_cli import BASE, write_campaign

    tone_wav(tmp_path / "queue.wav", QUEUE_HZ, 2.0)
    body = BASE.replace("127.0.0.1:5062", f"127.0.0.1:{agent_port}") + INBOUND.format(port=port, extra=extra)
    return write_campaign(tmp_path, body)


def _dialer_run_inbound(sipp_factory: type, tmp_path: Path, ring: Callable[[int], None], extra: str = "") -> str:
    """``dialer run`` on an inbound campaign (no leads; Alice on a SIPp softphone): once Alice is ready,
    ``ring(port)`` sends the callers to the inbound port and waits for them; then Ctrl-C, which must end the run
    (status 130). Its stdout."""
    import signal
    import time

    agent_audio(tmp_path)
    agent = sipp_factory("agent_session.xml")
    port = free_port()
    path = _inbound_campaign(tmp_path, port, agent.port, extra=extra)
    (tmp_path / "leads.csv").write_text("lead_id,phone\n")
    proc = start_run(path, "--status-every", "0.2")
    try:
        seen = read_until(proc, "agents ready 1", 40)
        assert "agents ready 1" in seen, seen
        ring(port)
        time.sleep(1.0)  # the BYE's news reaches the engine in milliseconds
        proc.send_signal(signal.SIGINT)
        out, err = finish(proc, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    return out


Q = 'queue_audio = "queue.wav"'


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("port = 5070", 'port = "x"', "inbound.port: must be an integer"),
        ("port = 5070", "port = 70000", "inbound.port: must be a port number"),
        ("port = 5070\n", "", "inbound.port: is required"),
        (Q, "", "inbound.queue_audio: is required"),
        (Q, 'queue_audio = "nope.wav"', "inbound.queue_audio: "),
        (Q, 'queue_audio = "leads.csv"', "inbound.queue_audio: "),  # not a WAV
        (Q, Q + "\nmax_waiting = 0", "inbound.max_waiting: must be >= 1"),
        (Q, Q + "\nmax_waiting = 1.5", "inbound.max_waiting: must be an integer"),
        (Q, Q + "\nworkers = 0", "inbound.workers: must be >= 1"),
        (Q, Q + "\nservice_level_seconds = 0", "inbound.service_level_seconds: must be > 0"),
        (Q, 'queue_sound = "queue.wav"', "inbound.queue_sound: unknown key"),
        ('alice = "inbound"', 'alice = "both"', "agent_groups.alice: must be one of"),
        ('alice = "inbound"', 'bob = "inbound"', "agent_groups.bob: is not an agent"),
        ('alice = "inbound"', 'alice = "outbound"', "agent_groups: no agent takes inbound"),
        ("[pool]", "[pool]\nsip_port = 5070", "inbound.port: overlaps the pool's SIP ports"),
    ],
)
def test_bad_inbound_keys_name_the_key_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str
) -> None:
    from dialer.cli import main

    path = _inbound_campaign(tmp_path, 5070)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    assert main(["run", str(path), "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "calls" not in captured.out  # nothing started


def test_groups_without_inbound_are_refused_and_files_without_either_are_unchanged(tmp_path: Path) -> None:
    from test_sip_run_cli import BASE, write_campaign

    from dialer.errors import ConfigError
    from dialer.live.campaign import load_campaign

    plain = load_campaign(write_campaign(tmp_path, BASE))
    assert plain.pool.inbound is None and not plain.inbound and dict(plain.agent_groups) == {}
    with pytest.raises(ConfigError) as info:
        load_campaign(write_campaign(tmp_path, BASE + '\n[agent_groups]\nalice = "blended"\n'))
    assert info.value.key == "agent_groups.alice"
    config = load_campaign(_inbound_campaign(tmp_path, 5070, extra="max_waiting = 3\nservice_level_seconds = 30\n"))
    assert config.pool.inbound is not None and config.pool.inbound.max_waiting == 3
    assert config.pool.inbound.queue_wav != str(tmp_path / "queue.wav")  # a converted copy, made at load
    assert config.engine_config().service_level_seconds == 30 and config.agent_groups == {"alice": "inbound"}


def test_dialer_run_answers_a_caller_keeps_the_evidence_and_counts_it_in_the_summary(
    sipp_factory: type, tmp_path: Path
) -> None:
    """``dialer run`` with ``[inbound]``: a caller rings, talks to the inbound agent and hangs up; Ctrl-C ends
    the run (an inbound campaign runs until stopped). The summary counts the caller, the evidence log holds an
    ``inbound`` entry with the caller's Call-ID, and its chain verifies."""
    from dialer.compliance.evidence import entries, verify

    def ring(port: int) -> None:
        c1 = caller(sipp_factory, port, 1500)
        assert c1.proc.wait(30) == 0, c1.log.read_text(errors="replace")[-1500:]

    out = _dialer_run_inbound(sipp_factory, tmp_path, ring)
    assert "inbound: 1 callers: answered 1, abandoned 0, refused busy 0; service level 100% within 20 s" in out, out
    log = tmp_path / "campaign.evidence.jsonl"
    inbound = [e for e in entries(log) if e["kind"] == "inbound"]
    assert len(inbound) == 1 and verify(log).ok
    data = inbound[0]["data"]
    assert data["outcome"] == "answered" and data["agent_id"] == "alice" and data["group"] == "inbound"
    assert data["ended_by"] == "remote" and data["sip_call_id"] == data["inbound_id"] and data["sip_call_id"]


def test_an_agent_phone_that_refuses_sends_the_caller_back_to_the_queue(sipp_factory: type, tmp_path: Path) -> None:
    """Without agent sessions the caller's worker rings the agent's phone at the connect; a phone answering 486
    is an ``InboundBridgeFailed``: the agent is paused, the caller stays on the line hearing the queue audio (no
    message, no hang-up), and, left with no agent, hangs up: abandoned after one failed bridge."""
    queue_wav = tone_wav(tmp_path / "queue.wav", QUEUE_HZ, 2.0)
    agent = sipp_factory("agent_refuses.xml")
    port = free_port()
    inbound = InboundConfig(port=port, queue_wav=str(queue_wav))

    config = pool(9, agent_legs=True, agent_sessions=False, inbound=inbound)

    async def scenario() -> tuple[SipRuntime, Any]:
        engine = Engine(make_policy("progressive"), ListLeads([]), EngineConfig(connect_limit=2.0))
        sip = SipRuntime(AsyncRuntime(engine), config, agents={"bob": f"sip:busy@127.0.0.1:{agent.port}"},
                         groups={"bob": "inbound"})  # fmt: skip
        await sip.start()
        try:
            c1 = caller(sipp_factory, port, 3000)
            await until(sip, lambda: bool(sip.inbound_bridge_failed), 15)
            assert sip.engine.agent_state("bob") is AgentState.PAUSED
            await finished(c1)
            await until(sip, lambda: len(sip.inbound_records) == 1, 15)
            assert await sip.drain(10)
        finally:
            await sip.close()
        return sip, c1

    (sip, c1), capture = run_captured(config, scenario(), 60)
    (record,) = sip.inbound_records
    assert record.outcome is InboundOutcome.ABANDONED and record.bridge_failures == 1
    assert list(sip.inbound_bridge_failed.values()) == [486]
    assert runs(heard(capture, c1.media_port)) == ["queue"]  # queue audio before and after the failed bridge
    labels = heard(capture, c1.media_port)
    assert labels[-20:].count("queue") >= 15  # still the queue at the end, when the caller hung up


def test_a_lost_agent_cuts_the_caller_off_and_a_drain_hangs_up_those_still_waiting(
    sipp_factory: type, tmp_path: Path
) -> None:
    """Dave's phone hangs up its standing leg 2.5 s after login, while he talks to caller 1: the caller gets our
    BYE (``HangUpInbound``, agent lost) and the record says so. Caller 2, who rang after Dave was gone, waits
    with nobody to take them; draining the run hangs them up, recorded abandoned, and refuses new callers."""
    agent_audio(tmp_path)
    queue_wav = tone_wav(tmp_path / "queue.wav", QUEUE_HZ, 2.0)
    agent = sipp_factory("agent_session.xml")
    port = free_port()
    inbound = InboundConfig(port=port, queue_wav=str(queue_wav))
    config = pool(9, agent_legs=True, workers=1, inbound=inbound)

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), ListLeads([]), EngineConfig(connect_limit=2.0))
        sip = SipRuntime(AsyncRuntime(engine), config, agents={"dave": f"sip:drop@127.0.0.1:{agent.port}"},
                         groups={"dave": "inbound"})  # fmt: skip
        await sip.start()
        try:
            c1 = sipp_factory("inbound_caller_waits.xml", "-m", "1", f"127.0.0.1:{port}")
            await until(sip, lambda: len(sip.inbound_records) == 1, 15)  # cut off when Dave's leg dropped
            assert sip.engine.agent_state("dave") is AgentState.LOGGED_OUT
            c2 = sipp_factory("inbound_caller_waits.xml", "-m", "1", f"127.0.0.1:{port}")
            await until(sip, lambda: len(sip.engine.inbound) == 1, 15)
            assert await sip.drain(10)
            await finished(c1, c2)
            late = caller(sipp_factory, port, 500)  # after the drain: refused
            await finished(late)
            assert sip.inbound_blocked == 1
        finally:
            await sip.close()
        return sip

    sip = run(scenario(), 60)
    lost, left = sip.inbound_records
    assert lost.outcome is InboundOutcome.ANSWERED and lost.agent_lost and lost.agent_id == "dave"
    assert left.outcome is InboundOutcome.ABANDONED and left.agent_id is None


def test_max_waiting_refuses_the_caller_beyond_it_with_busy(
    sipp_factory: type, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``max_waiting = 1`` with room for two callers in the worker: while one caller waits (no agent takes
    inbound calls), the next is refused 486 by the driver's queue limit, not for want of a slot."""
    queue_wav = tone_wav(tmp_path / "queue.wav", QUEUE_HZ, 2.0)
    port = free_port()
    inbound = InboundConfig(port=port, queue_wav=str(queue_wav), max_waiting=1)
    config = pool(9, agent_legs=True, workers=1, inbound=inbound)

    async def scenario() -> SipRuntime:
        engine = Engine(make_policy("progressive"), ListLeads([]), EngineConfig(connect_limit=2.0))
        sip = SipRuntime(AsyncRuntime(engine), config, agents={})
        await sip.start()
        try:
            c1 = caller(sipp_factory, port, 2500)
            await until(sip, lambda: len(sip.engine.inbound) == 1, 15)
            c2 = caller(sipp_factory, port, 500)
            await finished(c2, c1)
            await until(sip, lambda: len(sip.inbound_records) == 1, 15)
        finally:
            await sip.close()
        return sip

    sip, capture = run_captured(config, scenario(), 60)
    (record,) = sip.inbound_records
    assert record.outcome is InboundOutcome.ABANDONED
    assert sip.inbound_blocked == 1 and sip.driver.stats["inbound_offered"] == 2
    assert "inbound.max_waiting" in caplog.text
    assert sorted(capture.final_status(cid) for cid in capture.call_ids()) == [200, 486]


def test_dialer_run_writes_every_inbound_caller_to_the_store_as_the_evidence_has_them(
    sipp_factory: type, tmp_path: Path
) -> None:
    """``dialer run`` with ``max_waiting = 1``: caller 1 talks to Alice, caller 2 waits and hangs up (abandoned),
    caller 3 rings while caller 2 waits and is refused 486 (blocked: by the inbound worker, full with two callers,
    or by the queue limit). The store's ``inbound_calls``
    (the ledger ``dialer report compliance`` reads) holds the same three callers as the evidence log, field for
    field, and the report prints their figures."""
    import time

    from dialer.cli import main
    from dialer.compliance.evidence import entries, verify
    from dialer.store import open_store

    def ring(port: int) -> None:
        c1 = caller(sipp_factory, port, 6000)
        time.sleep(1.0)  # caller 1 is bridged to Alice
        c2 = caller(sipp_factory, port, 2500)
        time.sleep(1.0)  # caller 2 waits in the queue
        c3 = caller(sipp_factory, port, 500)
        for c in (c3, c2, c1):
            assert c.proc.wait(30) == 0, c.log.read_text(errors="replace")[-1500:]

    out = _dialer_run_inbound(sipp_factory, tmp_path, ring, extra="max_waiting = 1\n")
    assert "inbound: 2 callers: answered 1, abandoned 1, refused busy 1;" in out, out
    log = tmp_path / "campaign.evidence.jsonl"
    assert verify(log).ok
    logged = sorted((e["data"] for e in entries(log) if e["kind"] == "inbound"), key=lambda d: d["arrived_at"])
    store = open_store(tmp_path / "campaign.sqlite")
    try:
        rows = store.inbound_calls("autumn")
    finally:
        store.close()
    assert [d["outcome"] for d in logged] == ["answered", "abandoned", "blocked"]
    assert logged[2]["reason"] in ("busy", "queue_full") and logged[2]["sip_call_id"]  # whichever limit came first
    assert [
        (r.call_id, r.arrived_at, r.outcome, r.reason, r.wait, r.agent_id, r.caller, r.ended_at) for r in rows
    ] == [
        (d["inbound_id"], d["arrived_at"], d["outcome"], d["reason"], d["wait"], d["agent_id"], d["caller"],
         d["ended_at"])
        for d in logged
    ]  # fmt: skip
    assert rows[0].within_service_level and rows[0].agent_group == "inbound" and rows[0].owner
    assert main(["report", "compliance", str(tmp_path / "campaign.sqlite"), "--json"]) == 0
