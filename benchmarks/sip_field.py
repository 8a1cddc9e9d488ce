"""The 2-second rule on the wire: answer to the agent's audio, and answer to the abandonment message, from packets.

    python -m benchmarks.sip_field               # 20 setups/s, calls held 11 s: >= 200 customer calls up at once
    python -m benchmarks.sip_field --compare     # the same, half the connects on per-connect agent legs (baseline)
    python -m benchmarks.sip_field --per-connect # every connect rings an agent leg (the model before sessions)
    python -m benchmarks.sip_field --quick       # 5 setups/s, ~20 customer calls at once (~20 s)

Why from packets: the driver's events say when something was *ordered*; the person hears the first RTP packet
that carries sound. So a raw capture of ``lo`` (:mod:`benchmarks.wire_capture`, the same parser the tests use)
times, for each call, the customer's 200 OK and the first audible RTP packet the customer receives.

- **Agents** are one SIPp process (``sipp/agent_speaks.xml``: answers at once, talks without pause, looped audio),
  called as ``sip:agentN@...``. With agent sessions (the default) every agent is logged in once at start
  (:meth:`SipDriver.login_agent`: a standing leg parked in a worker) and the benchmark keeps a free-agent pool:
  an answered customer on the connect path is joined (:meth:`SipDriver.connect`) to the agent idle longest, who
  is free again ``--wrap-up`` seconds after that customer's call ends (any free agent, as the engine picks: the
  join is in the customer's worker only when the agent happens to be parked there, else a leg between workers;
  the report counts both). The agents are *sized so every customer finds one* (Little's law: setups/s x session
  share x (hold + wrap-up + 0.2 s), + 10 % + 2); a customer who still finds none gets the message at the order
  time below, and is counted (``no agent free``). ``--per-connect`` calls the agent's phone at every connect
  instead (:meth:`SipDriver.bridge`, the old model); ``--compare`` alternates the two on the connect path of the
  same run, under the same load, and prints their ratio. SIPp answers at once, so the per-connect figure has no
  ringing or answering time of a real phone in it: on loopback it is the floor of that model, not its field cost.
- **connect latency**: 200 OK -> first audible agent RTP reaching the customer.
- **message start** (``--abandon-share`` of the calls, spread evenly): no connect; the message is ordered at
  ``answer + (limit - 0.25 s)`` on the worker's answer clock (``Answered.answered_at``), as the live engine does at
  the default 2-s limit, and the worker's own deadline (``connect_deadline = limit - 0.1 s``, as
  :class:`SipRuntime` sets it) stands behind it. Measured: 200 OK -> first audible message RTP, which must be
  <= the limit in every case; compared with the worker's own measurement (``MessageStarted.at``, what the ledger
  stores) as the largest difference of the two answer -> start times, and of the two instants.

Calls are offered at ``--rate`` per second and each is held ``--hold`` seconds (default: 1.1 x the concurrency
target over the rate), so about ``rate * hold`` customer calls are up at once. The pool follows from it: each
worker holds 4 calls, a customer reserves 2 slots (its leg, and the leg to an agent elsewhere), a logged-in agent
2 (its standing leg, and the far half of a bridge from another worker). The CPU share busy with the pool up and
the agents parked, before any call, is printed: every worker runs a pjmedia clock and bridge, every parked agent
streams RTP, so on a small host the idle pool alone can fill the cores. Every process it starts is stopped.
Needs root (the capture), SIPp (Debian ``sip-tester``), sox and ``pjsua2-python``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import describe
from benchmarks.sip_throughput import free_port, free_range
from benchmarks.wire_capture import WireCapture
from dialer.sip import (
    Answered,
    Bridged,
    BridgeFailed,
    DriverEvent,
    Ended,
    Failed,
    MessageStarted,
    PoolConfig,
    SipDriver,
    TrunkConfig,
)
from dialer.sip.driver import AGENT_SLOTS, AgentSessionEvent, NotPlaced

HERE = Path(__file__).resolve().parent
NUMBER_BASE = 1_000_000  # call id n dials 1000000+n, so the INVITE's Request-URI names the call on the wire
RTP_SPAN = 20  # RTP ports per worker: 4 calls x (RTP + RTCP), with room for ports in their 500-ms reuse delay
SLOTS = 4  # calls per worker process (the PyPI pjsua2 wheel's limit)
CUSTOMER_SLOTS = 2  # a customer's leg and the leg to an agent (reserved even when the agent is parked here)
MESSAGE_MARGIN = 0.25  # the engine orders the message this long before the connect limit (dialer.live.sip_runtime)
WORKER_MARGIN = 0.1  # the worker plays it itself this long before the limit if no order came
SESSION, PER_CONNECT, MESSAGE = "agent session", "per-connect agent leg", "message"
AGENT_TARGET = 0.300  # agent audio p99, seconds after the answer (issue 12)


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        sys.exit(f"{name} not found: apt-get install {package}")
    return path


def make_audio(work: Path, message_seconds: float) -> Path:
    """The agent's talk (agent.ulaw, for SIPp's rtp_stream) and the message (an 8-kHz 16-bit WAV). Both are
    tones, loud from their first sample, so what is timed is the path, not a recording's leading silence."""
    sox = tool("sox", "sox")
    subprocess.run([sox, "-n", "-r", "8000", "-c", "1", "-t", "ul", str(work / "agent.ulaw"),
                    "synth", "3", "sine", "440", "vol", "0.5"], check=True)  # fmt: skip
    message = work / "message.wav"
    subprocess.run([sox, "-n", "-r", "8000", "-c", "1", "-b", "16", str(message),
                    "synth", f"{message_seconds:.2f}", "sine", "600", "vol", "0.5"], check=True)  # fmt: skip
    with wave.open(str(message)) as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2
    return message


class Sipp:
    """One SIPp UAS on 127.0.0.1 (the trunk's customers or the agents), stopped by :meth:`stop`."""

    def __init__(self, work: Path, name: str, *scenario: str) -> None:
        self.port, self.media_port = free_port(), free_port()
        self.errors = work / f"{name}-errors.log"
        cmd = [tool("sipp", "sip-tester"), *scenario, "-i", "127.0.0.1", "-p", str(self.port),
               "-mp", str(self.media_port), "-nostdin", "-buff_size", "4000000", "-trace_err",
               "-error_file", str(self.errors)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        if self.proc.poll() is not None:
            sys.exit(f"the SIPp {name} did not start")

    def aborted(self) -> int:
        if not self.errors.exists():
            return 0
        keys = ("Aborting call", "unexpected", "Dead call")
        return sum(any(k in line for k in keys) for line in self.errors.read_text(errors="replace").splitlines())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Call:
    cid: int
    path: str  # SESSION, PER_CONNECT or MESSAGE
    answered: float | None = None  # monotonic, when the parent heard of it
    answered_wall: float | None = None  # the 200 OK on the worker's wall clock
    agent: str | None = None  # the session agent joined
    same_worker: bool | None = None  # that agent was parked in the customer's own worker (a join, no leg)
    no_agent: bool = False  # a session customer who found no free agent (got the message)
    bridged: bool = False
    bridge_failed: int | None = None
    message_at: float | None = None  # MessageStarted.at: the worker's own measurement
    outcome: str = ""  # "" while up; "ended local/remote/crash", "failed ...", "not placed ..."


@dataclass
class Run:
    calls: dict[int, Call] = field(default_factory=dict)
    up: int = 0
    peak: int = 0
    first_dial: float = 0.0
    last_answer: float = 0.0
    agents_up: int = 0
    login_seconds: float = 0.0
    startup: float = 0.0
    problems: list[str] = field(default_factory=list)
    worker_played: int = 0  # messages the worker started at its own deadline (the order came too late)
    cpu_busy: float = 0.0  # share of all cores busy while calls were offered and held
    idle_busy: float = 0.0  # the same with the pool up, agents logged in, no customer call yet


class WorkerLines(logging.Handler):
    """Counts the worker's 'connect deadline reached here first' reports (logged by the driver)."""

    def __init__(self, run: Run) -> None:
        super().__init__(logging.WARNING)
        self.run = run

    def emit(self, record: logging.LogRecord) -> None:
        if "connect deadline reached here first" in record.getMessage():
            self.run.worker_played += 1


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [float(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    return sum(values) - idle, sum(values)


def paths(n: int, abandon_share: float, mode: str) -> list[str]:
    """Each call's path: ``abandon_share`` of them messaged, spread evenly; the rest connected, by sessions, by
    per-connect legs, or alternately (``compare``)."""
    out: list[str] = []
    connects = 0
    for i in range(1, n + 1):
        if math.floor(i * abandon_share) != math.floor((i - 1) * abandon_share):
            out.append(MESSAGE)
            continue
        connects += 1
        if mode == "compare":
            out.append(SESSION if connects % 2 else PER_CONNECT)
        else:
            out.append(PER_CONNECT if mode == "per-connect" else SESSION)
    return out


async def drive(args: argparse.Namespace, trunk_port: int, agent_port: int, message: Path) -> Run:
    """Log the agents in, offer the calls, connect or message each on its answer, hang up after ``hold``."""
    loop = asyncio.get_running_loop()
    run = Run()
    done = asyncio.Event()
    all_up = asyncio.Event()
    closing = False
    driver: SipDriver | None = None
    free: deque[str] = deque()  # agents ready for a customer, longest idle first
    logged_in: set[str] = set()
    session_agents = {f"agent{i}": f"sip:agent{i}@127.0.0.1:{agent_port}" for i in range(1, args.agents + 1)}
    leg_uri = f"sip:agent@127.0.0.1:{agent_port}"
    order_after = args.limit - MESSAGE_MARGIN

    def close(call: Call, outcome: str) -> None:
        if call.outcome:
            return
        call.outcome = outcome
        if call.answered is not None:
            run.up -= 1
        if call.agent is not None:
            agent, call.agent = call.agent, None
            loop.call_later(args.wrap_up, release, agent)
        if len(run.calls) == args.calls and all(c.outcome for c in run.calls.values()):
            done.set()

    def release(agent: str) -> None:
        if agent in logged_in and agent not in free and not closing:
            free.append(agent)

    def hang(call: Call) -> None:
        if not call.outcome and driver is not None:
            driver.hangup(call.cid)

    def order_message(call: Call) -> None:
        """The engine's order: ``limit - 0.25 s`` after the answer as the worker saw it."""
        assert driver is not None
        start = call.answered_wall if call.answered_wall is not None else time.time()
        loop.call_later(max(0.0, start + order_after - time.time()), driver.play_message, call.cid)
        loop.call_later(args.hold + 15, hang, call)  # the worker hangs up when the message ends

    def on_agent(event: AgentSessionEvent) -> None:
        if event.up:
            run.agents_up += 1
            logged_in.add(event.agent_id)
            release(event.agent_id)
            if run.agents_up == len(session_agents):
                all_up.set()
        else:
            logged_in.discard(event.agent_id)
            with_agent = [c for c in run.calls.values() if c.agent == event.agent_id]
            if event.agent_id in free:
                free.remove(event.agent_id)
            if not closing:
                run.problems.append(f"agent down {event.status} {event.text}")
                for call in with_agent:
                    call.agent = None

    def listener(event: DriverEvent) -> None:
        call = run.calls.get(event.call_id)
        if call is None or driver is None:
            return
        if isinstance(event, Answered):
            call.answered = time.monotonic()
            call.answered_wall = event.answered_at
            run.up += 1
            run.peak = max(run.peak, run.up)
            run.last_answer = time.perf_counter()
            if call.path == MESSAGE:
                order_message(call)
            elif call.path == PER_CONNECT:
                driver.bridge(call.cid, leg_uri)
                loop.call_later(args.hold, hang, call)
            elif free:
                agent = free.popleft()
                call.agent = agent
                host = driver._agent_host.get(agent)  # read only: which connects were joins in one worker
                call.same_worker = host is not None and host is driver._where.get(call.cid)
                driver.connect(call.cid, agent)
                loop.call_later(args.hold, hang, call)
            else:
                call.no_agent = True
                order_message(call)
        elif isinstance(event, Bridged):
            call.bridged = True
        elif isinstance(event, BridgeFailed):
            call.bridge_failed = event.status
            run.problems.append(f"bridge failed {event.status}")
            if call.agent is not None:
                agent, call.agent = call.agent, None
                loop.call_later(args.wrap_up, release, agent)
            # the worker already plays the message; the call then hangs up by itself
        elif isinstance(event, MessageStarted):
            call.message_at = event.at
        elif isinstance(event, Ended):
            if event.by == "crash" or (event.by == "remote" and call.path != MESSAGE and not call.no_agent):
                run.problems.append(f"ended by {event.by}")
            close(call, f"ended {event.by}")
        elif isinstance(event, Failed):
            run.problems.append(f"failed {event.status} {event.text}")
            close(call, f"failed {event.status}")
        elif isinstance(event, NotPlaced):
            run.problems.append(f"not placed: {event.why}")
            close(call, f"not placed {event.why}")

    config = PoolConfig(
        trunk=TrunkConfig(port=trunk_port, caller_id="+12127362000"),
        workers=args.workers,
        calls_per_worker=SLOTS,
        agent_legs=True,
        rtp_port=args.rtp_port or free_range(args.workers * RTP_SPAN),
        rtp_ports_per_worker=RTP_SPAN,
        abandon_wav=str(message),
        connect_deadline=args.limit - WORKER_MARGIN,
        agent_sessions=bool(session_agents),
    )
    driver = SipDriver(config, listener, on_agent=on_agent)
    handler = WorkerLines(run)
    logging.getLogger("dialer.sip").addHandler(handler)
    t0 = time.perf_counter()
    await driver.start(timeout=60 + 2 * args.workers)
    run.startup = time.perf_counter() - t0
    try:
        if session_agents:
            t0 = time.perf_counter()
            refused = [a for a, uri in session_agents.items() if not driver.login_agent(a, uri)]
            if refused:
                run.problems += [f"no room to log {a} in" for a in refused]
            try:
                await asyncio.wait_for(all_up.wait(), 60)
            except TimeoutError:
                run.problems.append(f"{len(session_agents) - run.agents_up} agents not logged in within 60 s")
            run.login_seconds = time.perf_counter() - t0
        idle0 = cpu_times()
        await asyncio.sleep(3.0)  # settle; what the idle pool (and parked agents' RTP) costs before any call
        cpu0 = cpu_times()
        run.idle_busy = (cpu0[0] - idle0[0]) / max(1.0, cpu0[1] - idle0[1])
        tasks = []
        run.first_dial = time.perf_counter()
        for cid, path in enumerate(paths(args.calls, args.abandon_share, args.mode), start=1):
            delay = run.first_dial + (cid - 1) / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            run.calls[cid] = Call(cid, path)
            tasks.append(asyncio.ensure_future(driver.dial(cid, str(NUMBER_BASE + cid), 20)))
        try:
            await asyncio.wait_for(done.wait(), args.hold + 60)
        except TimeoutError:
            run.problems.append(f"{sum(not c.outcome for c in run.calls.values())} calls never ended")
        cpu1 = cpu_times()
        run.cpu_busy = (cpu1[0] - cpu0[0]) / max(1.0, cpu1[1] - cpu0[1])
        await asyncio.gather(*tasks)
    finally:
        closing = True
        await driver.close()
        logging.getLogger("dialer.sip").removeHandler(handler)
    return run


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th): no interpolation between two calls."""
    s = sorted(xs)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def wire_peak(wire: WireCapture) -> int:
    """Most customer calls up at once on the wire: between each 200 OK (to INVITE) and the first BYE."""
    marks: list[tuple[float, int]] = []
    for cid in wire.call_ids():
        answered, bye = wire.answer_time(cid), wire.bye_time(cid)
        if answered is not None:
            marks += [(answered, 1), (bye if bye is not None else math.inf, -1)]
    up = peak = 0
    for _, step in sorted(marks):
        up += step
        peak = max(peak, up)
    return peak


@dataclass
class Measured:
    latency: dict[str, list[float]] = field(default_factory=dict)  # path -> answer -> first audible RTP, s
    unheard: list[int] = field(default_factory=list)  # answered, no audible RTP on the wire
    ledger_diff: list[float] = field(default_factory=list)  # worker's answer->start minus the wire's, s
    instant_diff: list[float] = field(default_factory=list)  # MessageStarted.at minus the packet's wall time, s
    answer_diff: list[float] = field(default_factory=list)  # Answered.answered_at minus the 200 OK's wall time, s
    message_wire: list[float] = field(default_factory=list)  # answer -> message on the wire, beside ledger_diff
    no_worker_time: int = 0  # messages heard on the wire without a MessageStarted.at


def measure(run: Run, wire: WireCapture) -> Measured:
    by_number = {}
    for sip_cid in wire.call_ids():
        invite = wire.first(call_id=sip_cid, method="INVITE")
        if invite is not None and invite.uri.startswith("sip:"):
            user = invite.uri[4:].split("@", 1)[0]
            if user.isdigit():
                by_number[int(user) - NUMBER_BASE] = sip_cid
    out = Measured()
    for call in run.calls.values():
        if call.answered is None:
            continue
        dialog = by_number.get(call.cid)
        answered = wire.answer_time(dialog) if dialog is not None else None
        heard = wire.first_audible_to(dialog, "callee") if dialog is not None else None
        if answered is None or heard is None:
            out.unheard.append(call.cid)
            continue
        delay = heard.time - answered
        ok = wire.first(call_id=dialog, status=200, cseq_method="INVITE")
        if ok is not None and call.answered_wall is not None:
            out.answer_diff.append(call.answered_wall - ok.wall)
        messaged = call.path == MESSAGE or call.no_agent
        out.latency.setdefault(MESSAGE if messaged else call.path, []).append(delay)
        if messaged:
            if call.message_at is None or call.answered_wall is None:
                out.no_worker_time += 1
            else:
                out.ledger_diff.append((call.message_at - call.answered_wall) - delay)
                out.message_wire.append(delay)
                out.instant_diff.append(call.message_at - heard.wall)
    return out


def row(name: str, xs: list[float], target: str, met: bool | None) -> str:
    if not xs:
        return f"{name:<28} {0:>5}  {'-':>7} {'-':>7} {'-':>7}  {target:<16} -"
    ms = [1000 * x for x in xs]
    verdict = "" if met is None else ("met" if met else "NOT met")
    return f"{name:<28} {len(xs):>5}  {pct(ms, 50):>7.0f} {pct(ms, 99):>7.0f} {max(ms):>7.0f}  {target:<16} {verdict}"


def sizing(args: argparse.Namespace) -> None:
    """Agents and workers from the rate, the hold and the shares (unless given)."""
    connect_share = 1.0 - args.abandon_share
    session_share = 0.0 if args.mode == "per-connect" else connect_share * (0.5 if args.mode == "compare" else 1.0)
    peak_calls = math.ceil(args.rate * args.hold)
    if args.agents is None:
        # Every session customer finds an agent: the agents talking or in wrap-up at the peak (Little's law),
        # + 10 % for the offered calls' bunching, + 2.
        busy = args.rate * session_share * (args.hold + args.wrap_up + 0.2)
        args.agents = 0 if session_share == 0 else math.ceil(busy * 1.1) + 2
    if args.workers is None:
        slots = CUSTOMER_SLOTS * (peak_calls + args.rate) + AGENT_SLOTS * args.agents  # 1 s of setups spare
        args.workers = math.ceil(slots / SLOTS)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a quick look: 5 setups/s, ~20 calls at once, 4-s calls")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--per-connect", action="store_true", help="ring an agent leg at every connect (old model)")
    mode.add_argument("--compare", action="store_true", help="alternate sessions and per-connect legs: the ratio")
    ap.add_argument("--calls", type=int, default=None, help="calls to place (default: rate x (hold + 15 s))")
    ap.add_argument("--rate", type=float, default=20.0, help="call setups offered per second")
    ap.add_argument("--target", type=int, default=200, help="concurrent customer calls aimed at (sets --hold)")
    ap.add_argument("--hold", type=float, default=None, help="seconds each call stays up (default 1.1 target/rate)")
    ap.add_argument("--abandon-share", type=float, default=0.3, help="share of calls given the message, not an agent")
    ap.add_argument("--limit", type=float, default=2.0, help="the connect limit, seconds (the message's deadline)")
    ap.add_argument("--agents", type=int, default=None, help="agents logged in (default: enough for every customer)")
    ap.add_argument("--wrap-up", type=float, default=0.5, help="seconds before an agent takes the next customer")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: from the slots needed)")
    ap.add_argument("--rtp-port", type=int, default=0, help="the pool's first RTP port (default: a free range)")
    args = ap.parse_args()
    args.mode = "per-connect" if args.per_connect else ("compare" if args.compare else "sessions")
    if args.quick:
        args.rate, args.target = 5.0, 20
    if not 0.0 <= args.abandon_share <= 1.0:
        sys.exit("--abandon-share must be within 0..1")
    if args.hold is None:
        args.hold = 1.1 * args.target / args.rate
    if args.calls is None:
        args.calls = math.ceil(args.rate * (args.hold + (4 if args.quick else 15)))
    sizing(args)
    if os.geteuid() != 0:
        sys.exit("the packet capture needs root (a raw AF_PACKET socket on lo)")

    work = Path(tempfile.mkdtemp(prefix="sip-field-"))
    message = make_audio(work, max(1.0, args.hold - (args.limit - MESSAGE_MARGIN)))
    customers = Sipp(work, "customers", "-sn", "uas")
    agents = Sipp(work, "agents", "-sf", str(HERE / "sipp" / "agent_speaks.xml"))
    # Keep only what the customers' side sees: SIP to/from the trunk, RTP sent to the customers' media port.
    wire = WireCapture({customers.port}, dst_ports={customers.media_port}, keep_payload=False)
    load_before = os.getloadavg()
    try:
        wire.start()
        cpu0 = time.process_time()
        run = asyncio.run(drive(args, customers.port, agents.port, message))
        parent_cpu = time.process_time() - cpu0
    finally:
        wire.stop()
        customers.stop()
        agents.stop()
    load_after = os.getloadavg()
    report(args, run, wire, measure(run, wire), (load_before, load_after), parent_cpu,
           customers.aborted() + agents.aborted())  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


def report(
    args: argparse.Namespace,
    run: Run,
    wire: WireCapture,
    m: Measured,
    loads: tuple[tuple[float, float, float], tuple[float, float, float]],
    parent_cpu: float,
    sipp_aborted: int,
) -> None:
    answered = [c for c in run.calls.values() if c.answered is not None]
    span = run.last_answer - run.first_dial
    rate = (len(answered) - 1) / span if span > 0 else 0.0
    peak_wire = wire_peak(wire)

    def count(path: str) -> int:
        return sum(c.path == path for c in run.calls.values())

    no_agent = sum(c.no_agent for c in run.calls.values())
    bridge_failed = sum(c.bridge_failed is not None for c in run.calls.values())
    joins = sum(bool(c.same_worker) for c in run.calls.values())
    session_calls = sum(c.path == SESSION and not c.no_agent and c.answered is not None for c in run.calls.values())
    agent_got_message = sum(
        c.path != MESSAGE and not c.no_agent and c.message_at is not None for c in run.calls.values()
    )
    failures = (len(run.calls) - len(answered)) + len(m.unheard) + len(run.problems) + sipp_aborted
    failures += agent_got_message
    print(f"machine: {describe()}")
    print(
        f"load average (1 min) before {loads[0][0]:.2f}, after {loads[1][0]:.2f}; all {os.cpu_count()} cores "
        f"{100 * run.idle_busy:.0f}% busy with the pool up and the agents parked before any call, "
        f"{100 * run.cpu_busy:.0f}% while calls were offered and held; parent CPU {parent_cpu:.1f} s"
    )
    print(
        f"mode: {args.mode}; offered {args.calls} calls at {args.rate:g} setups/s, each held {args.hold:g} s "
        f"(target {args.target} at once): {count(SESSION)} session connects, {count(PER_CONNECT)} per-connect, "
        f"{count(MESSAGE)} messaged (abandon share {args.abandon_share:g})"
    )
    print(
        f"pool: {args.workers} workers x {SLOTS} slots = {args.workers * SLOTS}; customers {CUSTOMER_SLOTS} "
        f"slots each, {args.agents} agents x {AGENT_SLOTS} = {args.agents * AGENT_SLOTS} reserved; started "
        f"in {run.startup:.1f} s; {run.agents_up}/{args.agents} agents logged in in {run.login_seconds:.1f} s"
    )
    print(
        f"reached: {len(answered)}/{len(run.calls)} answered, {rate:.1f} setups/s sustained, peak {run.peak} "
        f"customer calls up at once (driver events), {peak_wire} on the wire"
    )
    if session_calls:
        print(
            f"session connects: {joins} joins in the customer's own worker, {session_calls - joins} through a "
            f"leg between workers; {no_agent} customers found no agent free (given the message)"
        )
    print()
    limit_ms = f"<= {1000 * args.limit:.0f} ms all"
    print(
        f"{'answer -> first audible RTP':<28} {'n':>5}  {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  "
        f"{'target':<16} result"
    )
    sess, leg, msg = (m.latency.get(p, []) for p in (SESSION, PER_CONNECT, MESSAGE))
    if sess or args.mode != "per-connect":
        print(row("agent audio, sessions", sess, "p99 <= 300 ms", bool(sess) and pct(sess, 99) <= AGENT_TARGET))
    if leg or args.mode != "sessions":
        print(row("agent audio, per-connect", leg, "p99 <= 300 ms", bool(leg) and pct(leg, 99) <= AGENT_TARGET))
    print(
        row(
            f"message (ordered at {args.limit - MESSAGE_MARGIN:g} s)",
            msg,
            limit_ms,
            bool(msg) and max(msg) <= args.limit,
        )
    )
    if sess and leg:
        print(
            f"per-connect / sessions: p50 x{pct(leg, 50) / pct(sess, 50):.2f}, p99 "
            f"x{pct(leg, 99) / pct(sess, 99):.2f}, max x{max(leg) / max(sess):.2f} (same run, same load)"
        )
    if m.ledger_diff:
        worker = [d + w for d, w in zip(m.ledger_diff, m.message_wire, strict=True)]

        def spread(xs: list[float]) -> str:
            return f"{1000 * min(xs):+.1f}..{1000 * max(xs):+.1f} ms"

        print(
            f"message start as the worker measures it (MessageStarted.at - answered_at, what the ledger keeps): "
            f"p50 {1000 * pct(worker, 50):.0f} ms, max {1000 * max(worker):.0f} ms; minus the wire's: "
            f"{spread(m.ledger_diff)} (max |d| {1000 * max(map(abs, m.ledger_diff)):.1f} ms)"
        )
        print(
            f"  of which first sound (MessageStarted.at - packet) {spread(m.instant_diff)}, answer (answered_at - "
            f"200 OK packet) {spread(m.answer_diff)}; {m.no_worker_time} heard without a worker time; "
            f"{run.worker_played} started by the worker's own {args.limit - WORKER_MARGIN:g}-s deadline"
        )
    print()
    print(
        f"failures: {failures}  (not answered: {len(run.calls) - len(answered)}, answered but no audible RTP: "
        f"{len(m.unheard)}, driver problems: {len(run.problems)} of which bridge failed {bridge_failed}, connect "
        f"calls that got the message: {agent_got_message}, SIPp aborted: {sipp_aborted})"
    )
    if run.problems:
        kinds: dict[str, int] = {}
        for p in run.problems:
            kinds[p] = kinds.get(p, 0) + 1
        print(f"  {sorted(kinds.items(), key=lambda kv: -kv[1])[:6]}")
    if m.unheard:
        print(f"  no audio heard on calls {m.unheard[:10]}{' ...' if len(m.unheard) > 10 else ''}")
        if wire.kernel_drops:
            print("  (the capture lost packets too, so some of these may be the instrument's loss, not the call's)")
    print(f"capture: {wire.summary()}")
    rate_ok = rate >= 0.95 * args.rate
    print(
        f"load targets: {args.rate:g} setups/s {'met' if rate_ok else 'NOT met'} ({rate:.1f}); "
        f">= {args.target} at once {'met' if peak_wire >= args.target else 'NOT met'} ({peak_wire}); "
        f"0 failures {'met' if failures == 0 else 'NOT met'} ({failures})"
    )
    if peak_wire < args.target or not rate_ok:
        print(
            f"note: see the load against {os.cpu_count()} cores: every worker runs a pjmedia clock and "
            "conference bridge, every agent streams RTP without pause"
        )


if __name__ == "__main__":
    main()
