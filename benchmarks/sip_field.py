"""The 2-second rule on the wire: answer to the agent's audio, and answer to the abandonment message, from packets.

    python -m benchmarks.sip_field            # 400 calls at 20 setups/s, held 10 s: a 200-concurrent target
    python -m benchmarks.sip_field --quick    # 40 calls at 5/s, held 4 s, 12 workers (~40 s)

Why from packets: the driver's events say when something was *ordered*; the person hears the first RTP packet
that carries sound. So a raw capture of ``lo`` (:mod:`benchmarks.wire_capture`, the same parser the tests use)
times, for each call, the customer's 200 OK and the first audible RTP packet the customer receives:

- **connect latency** (odd call ids): on ``Answered`` the call is bridged (:meth:`SipDriver.bridge`) to a SIPp
  agent that talks without pause; measured is 200 OK -> first packet of that talk reaching the customer.
- **message start** (even call ids): ``--message-after`` seconds after ``Answered`` (default 0: the driver's own
  delay; the runtime adds its connect limit) the message is played (:meth:`SipDriver.play_message`); measured is
  200 OK -> first packet of the message reaching the customer.

Calls are offered at ``--rate`` per second and each is held ``--hold`` seconds (default: the concurrency target
over the rate), so about ``rate * hold`` customer calls are up at once. Every process it starts is stopped.
Needs root (the capture), SIPp (Debian ``sip-tester``), sox and ``pjsua2-python``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import describe
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

HERE = Path(__file__).resolve().parent
NUMBER_BASE = 1_000_000  # call id n dials 1000000+n, so the INVITE's Request-URI names the call on the wire
RTP_SPAN = 20  # RTP ports per worker: 4 calls x (RTP + RTCP), with room for ports in their 500-ms reuse delay


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_range(span: int) -> int:
    """A base port with ``span`` free UDP ports after it, for the pool's RTP ranges."""
    for base in range(20000, 60000 - span, span):
        socks = []
        try:
            for p in range(base, base + span):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


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
    message: bool  # the abandonment path (message) rather than the agent path (bridge)
    answered: float | None = None
    bridged: bool = False
    message_started: bool = False
    hung_up: bool = False
    outcome: str = ""  # "" while up; "ended local/remote/crash", or "failed ..."


@dataclass
class Run:
    calls: dict[int, Call] = field(default_factory=dict)
    up: int = 0
    peak: int = 0
    first_dial: float = 0.0
    last_answer: float = 0.0
    problems: list[str] = field(default_factory=list)


async def drive(args: argparse.Namespace, trunk_port: int, agent_port: int, message: Path) -> tuple[Run, float]:
    """Offer the calls, bridge or message each on its answer, hang up agent calls after ``hold`` seconds."""
    loop = asyncio.get_running_loop()
    run = Run()
    done = asyncio.Event()
    driver: SipDriver | None = None
    agent_uri = f"sip:agent@127.0.0.1:{agent_port}"

    def close(call: Call, outcome: str) -> None:
        if call.outcome:
            return
        call.outcome = outcome
        if call.answered is not None:
            run.up -= 1
        if all(c.outcome for c in run.calls.values()) and len(run.calls) == args.calls:
            done.set()

    def hang(call: Call) -> None:
        if not call.outcome and driver is not None:
            call.hung_up = True
            driver.hangup(call.cid)

    def listener(event: DriverEvent) -> None:
        call = run.calls.get(event.call_id)
        if call is None or driver is None:
            return
        if isinstance(event, Answered):
            call.answered = time.monotonic()
            run.up += 1
            run.peak = max(run.peak, run.up)
            run.last_answer = time.perf_counter()
            if call.message:
                if args.message_after > 0:
                    loop.call_later(args.message_after, driver.play_message, call.cid)
                else:
                    driver.play_message(call.cid)
                loop.call_later(args.hold + 15, hang, call)  # the worker hangs up when the message ends
            else:
                driver.bridge(call.cid, agent_uri)
                loop.call_later(args.hold, hang, call)
        elif isinstance(event, Bridged):
            call.bridged = True
        elif isinstance(event, BridgeFailed):
            run.problems.append(f"bridge failed {event.status}")
            hang(call)
        elif isinstance(event, MessageStarted):
            call.message_started = True
        elif isinstance(event, Ended):
            if event.by == "crash" or (event.by == "remote" and not call.message):
                run.problems.append(f"ended by {event.by}")
            close(call, f"ended {event.by}")
        elif isinstance(event, Failed):
            run.problems.append(f"failed {event.status} {event.text}")
            close(call, f"failed {event.status}")

    config = PoolConfig(
        trunk=TrunkConfig(port=trunk_port),
        workers=args.workers,
        agent_legs=True,
        rtp_port=free_range(args.workers * RTP_SPAN),
        rtp_ports_per_worker=RTP_SPAN,
        abandon_wav=str(message),
    )
    driver = SipDriver(config, listener)
    t0 = time.perf_counter()
    await driver.start(timeout=60 + 2 * args.workers)
    startup = time.perf_counter() - t0
    try:
        await asyncio.sleep(1.0)
        tasks = []
        run.first_dial = time.perf_counter()
        for cid in range(1, args.calls + 1):
            delay = run.first_dial + (cid - 1) / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            run.calls[cid] = Call(cid, message=cid % 2 == 0)
            tasks.append(asyncio.ensure_future(driver.dial(cid, str(NUMBER_BASE + cid), 20)))
        try:
            await asyncio.wait_for(done.wait(), args.hold + 60)
        except TimeoutError:
            run.problems.append(f"{sum(not c.outcome for c in run.calls.values())} calls never ended")
        await asyncio.gather(*tasks)
    finally:
        await driver.close()
    return run, startup


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th): no interpolation between two calls."""
    s = sorted(xs)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def line(name: str, xs: list[float], expected: int) -> str:
    if not xs:
        return f"{name}: no measurement (0 of {expected} calls)"
    ms = [1000 * x for x in xs]
    return (
        f"{name}: n={len(xs)} of {expected}  p50 {pct(ms, 50):.0f} ms  p99 {pct(ms, 99):.0f} ms  "
        f"max {max(ms):.0f} ms  min {min(ms):.0f} ms"
    )


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


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a quick look: 40 calls, 5/s, 4-s calls, 12 workers")
    ap.add_argument("--calls", type=int, default=400, help="calls to place (half bridged, half messaged)")
    ap.add_argument("--rate", type=float, default=20.0, help="call setups offered per second")
    ap.add_argument("--target", type=int, default=200, help="concurrent customer calls aimed at (sets --hold)")
    ap.add_argument("--hold", type=float, default=None, help="seconds each call stays up (default target/rate)")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: target / 2 + 10%%)")
    ap.add_argument("--message-after", type=float, default=0.0, help="seconds from Answered to play_message")
    args = ap.parse_args()
    if args.quick:
        args.calls, args.rate, args.target, args.workers = 40, 5.0, 20, 12
    if args.hold is None:
        args.hold = args.target / args.rate
    if args.workers is None:
        args.workers = math.ceil(args.target / 2 * 1.1)  # 4 calls per process, each customer call with its agent
    if os.geteuid() != 0:
        sys.exit("the packet capture needs root (a raw AF_PACKET socket on lo)")

    work = Path(tempfile.mkdtemp(prefix="sip-field-"))
    message = make_audio(work, max(1.0, args.hold - args.message_after))
    customers = Sipp(work, "customers", "-sn", "uas")
    agents = Sipp(work, "agents", "-sf", str(HERE / "sipp" / "agent_speaks.xml"))
    # Keep only what the customers' side sees: SIP to/from the trunk, RTP sent to the customers' media port.
    wire = WireCapture({customers.port}, dst_ports={customers.media_port}, keep_payload=False)
    load_before = os.getloadavg()
    try:
        wire.start()
        cpu0 = time.process_time()
        run, startup = asyncio.run(drive(args, customers.port, agents.port, message))
        parent_cpu = time.process_time() - cpu0
    finally:
        wire.stop()
        customers.stop()
        agents.stop()
    load_after = os.getloadavg()

    by_number = {}
    for sip_cid in wire.call_ids():
        invite = wire.first(call_id=sip_cid, method="INVITE")
        if invite is not None and invite.uri.startswith("sip:"):
            user = invite.uri[4:].split("@", 1)[0]
            if user.isdigit():
                by_number[int(user) - NUMBER_BASE] = sip_cid
    connect: list[float] = []
    msg_start: list[float] = []
    unheard: list[int] = []
    for call in run.calls.values():
        if call.answered is None:
            continue
        dialog = by_number.get(call.cid)
        delay = wire.answer_to_audio(dialog) if dialog is not None else None
        if delay is None:
            unheard.append(call.cid)
        elif call.message:
            msg_start.append(delay - args.message_after)
        else:
            connect.append(delay)

    answered = [c for c in run.calls.values() if c.answered is not None]
    n_bridge = sum(not c.message for c in answered)
    n_msg = sum(c.message for c in answered)
    span = run.last_answer - run.first_dial
    failures = len(run.problems) + len(unheard) + customers.aborted() + agents.aborted()
    print(f"machine: {describe()}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"offered: {args.calls} calls at {args.rate:g} setups/s, each held {args.hold:g} s "
          f"(target {args.target} concurrent); {args.workers} workers x 4 calls = {args.workers * 2} customer "
          f"calls with their agent legs; pool start {startup:.1f} s")  # fmt: skip
    rate = len(answered) / span if span > 0 else 0.0
    print(f"reached: {len(answered)}/{args.calls} answered, {rate:.1f} setups/s sustained, peak {run.peak} "
          f"concurrent customer calls (driver events), {wire_peak(wire)} on the wire")  # fmt: skip
    print(line("connect latency, 200 OK -> first audible agent RTP at the customer", connect, n_bridge))
    print(line(f"message start, 200 OK -> first audible message RTP (ordered {args.message_after:g} s after "
               "Answered, subtracted)", msg_start, n_msg))  # fmt: skip
    print(f"failures: {failures}  (driver: {len(run.problems)}, answered but no audible RTP on the wire: "
          f"{len(unheard)}, SIPp aborted: {customers.aborted() + agents.aborted()})")  # fmt: skip
    if run.problems:
        kinds: dict[str, int] = {}
        for p in run.problems:
            kinds[p] = kinds.get(p, 0) + 1
        print(f"  {sorted(kinds.items(), key=lambda kv: -kv[1])[:6]}")
    if unheard:
        print(f"  no audio heard on calls {unheard[:10]}{' ...' if len(unheard) > 10 else ''}")
        if wire.kernel_drops:
            print("  (the capture lost packets too, so some of these may be the instrument's loss, not the call's)")
    print(f"capture: {wire.summary()}; parent CPU {parent_cpu:.1f} s")
    if run.peak < args.target:
        print(f"note: peak {run.peak} < target {args.target}: see the load average against "
              f"{os.cpu_count()} cores (every worker runs a pjmedia clock and conference bridge)")  # fmt: skip


if __name__ == "__main__":
    main()
