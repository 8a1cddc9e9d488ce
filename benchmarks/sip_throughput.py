"""SIP throughput: our driver's worker pool, a bare pjsua2 loop and SIPp's own UAC against one SIPp UAS, one run.

    python -m benchmarks.sip_throughput            # full run: 60 workers, 20 setups/s, 11-s calls (~2 min)
    python -m benchmarks.sip_throughput --short    # a quick look: 8 workers, 5 setups/s, 4-s calls (~40 s)

Phases, all against the same SIPp UAS (``sipp -sn uas``) on 127.0.0.1:

1. **bare pjsua2**: one process, the loop anyone would write by hand with PyPI's wheel. It respects the wheel's
   limits (4 calls at once, at most ``--setups-per-worker`` new calls per second, as the ~60/s abort demands), and
   each call is hung up as soon as it is answered.
2. **our driver, one worker**: the same workload through :class:`~dialer.sip.SipDriver` (spawned worker, pipe,
   asyncio parent). ``ours / bare`` is the per-worker ratio (target >= 0.5); CPU milliseconds per call (worker
   plus parent) show the overhead the rate cap would hide.
3. **our driver, the pool**: ``--workers`` workers, calls offered at ``--rate`` per second for ``--duration``
   seconds, each held ``--hold`` seconds after the answer, so about ``rate * hold`` calls are up at once (target:
   >= 200 concurrent, >= 20 setups/s sustained, 0 failed calls). Idle CPU and memory per worker are measured
   before the load.
4. **SIPp UAC**: the same offered load as phase 3, then an unpaced burst: how far the UAS itself goes.

Needs SIPp (Debian ``sip-tester``) and ``pjsua2-python``. Loopback only; every process it starts is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import describe
from dialer.sip import Answered, DriverEvent, Ended, Failed, PoolConfig, SipDriver, TrunkConfig
from dialer.sip.config import DEFAULT_SETUPS_PER_WORKER

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_range(span: int) -> int:
    """A base port with ``span`` free UDP ports after it (checked one by one), for the pool's RTP ranges."""
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


def sipp_binary() -> str:
    binary = shutil.which("sipp")
    if binary is None:
        sys.exit("sipp not found: apt-get install sip-tester")
    return binary


#: Ports chosen on the command line (0: free ones), for hosts where only some ranges are open.
PORTS = {"uas": 0, "rtp": 0}


def start_uas(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = PORTS["uas"] or free_port()
    cmd = [sipp_binary(), "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port()), "-nostdin",
           "-buff_size", "4000000", "-trace_err", "-error_file", str(workdir / "uas-errors.log")]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    if proc.poll() is not None:
        sys.exit("the SIPp UAS did not start")
    return proc, port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


# --- phase 1: the bare loop ------------------------------------------------------------------------------------


def _bare_loop(conn: Connection, port: int, calls: int, rate: float, poll_ms: int) -> None:
    """A hand-written pjsua2 dialer in one process, within the wheel's limits; sends (rate, failed, cpu s)."""
    import pjsua2 as pj

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = 4
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tc = pj.TransportConfig()
    tc.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    ep.libStart()
    ep.audDevManager().setNullDev()
    acc = pj.Account()
    acfg = pj.AccountConfig()
    acfg.idUri = "sip:bare@127.0.0.1"
    acc.create(acfg)
    live: dict[int, Any] = {}
    tally = {"done": 0, "failed": 0}

    class Call(pj.Call):
        def onCallState(self, prm: Any) -> None:
            info = self.getInfo()
            if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
                self.hangup(pj.CallOpParam(True))
            elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                tally["done"] += 1
                tally["failed"] += info.lastStatusCode != 200
                live.pop(id(self), None)  # dropped inside DISCONNECTED, as pjsua2 needs

    interval = 1.0 / rate
    placed = 0
    next_at = t0 = time.perf_counter()
    cpu0 = time.process_time()
    while tally["done"] < calls:
        now = time.perf_counter()
        if placed < calls and len(live) < 4 and now >= next_at:
            call = Call(acc)
            try:
                call.makeCall(f"sip:1@127.0.0.1:{port}", pj.CallOpParam(True))
                live[id(call)] = call
                placed += 1
                next_at = max(now, next_at) + interval
            except pj.Error:
                pass  # a slot still in teardown: try again after the next poll
        ep.libHandleEvents(poll_ms)
    elapsed = time.perf_counter() - t0
    conn.send((calls / elapsed, tally["failed"], time.process_time() - cpu0))
    conn.close()
    os._exit(0)  # pjsua2 objects abort in their finalizers without a full teardown; the run is over


def bare_pjsua2(port: int, calls: int, rate: float) -> tuple[float, int, float]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_bare_loop, args=(child, port, calls, rate, 5), daemon=True)
    proc.start()
    child.close()
    if not parent.poll(calls / rate * 4 + 60):
        proc.kill()
        sys.exit("the bare pjsua2 loop did not finish")
    result: tuple[float, int, float] = parent.recv()
    proc.join(10)
    if proc.exitcode not in (0, None):
        print(f"  (bare loop exited with code {proc.exitcode})")
    return result


# --- phases 2 and 3: our driver --------------------------------------------------------------------------------


@dataclass
class DriverRun:
    calls: int
    answered: int = 0
    ended: int = 0
    failed: int = 0
    up: int = 0
    peak: int = 0
    first_dial: float = 0.0
    last_answer: float = 0.0
    dialed_at: dict[int, float] = field(default_factory=dict)
    setup: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        span = self.last_answer - self.first_dial
        return self.answered / span if span > 0 else 0.0


async def run_driver(
    port: int, *, workers: int, calls: int, rate: float, hold: float, setups_per_worker: float
) -> tuple[DriverRun, float, float, float, float]:
    """Offer ``calls`` at ``rate``/s (``rate`` 0: as fast as the pool takes them), hold each ``hold`` s.

    Returns the run, idle CPU % of a core per worker, RSS MB per worker, CPU ms per call (workers plus parent),
    and the wall seconds it took to start the pool.
    """
    loop = asyncio.get_running_loop()
    run = DriverRun(calls)
    done = asyncio.Event()
    driver: SipDriver | None = None

    def finished() -> None:
        if run.ended + run.failed >= calls:
            done.set()

    def listener(event: DriverEvent) -> None:
        now = time.perf_counter()
        if isinstance(event, Answered):
            run.answered += 1
            run.up += 1
            run.peak = max(run.peak, run.up)
            run.last_answer = now
            run.setup.append(now - run.dialed_at[event.call_id])
            assert driver is not None
            if hold > 0:
                loop.call_later(hold, driver.hangup, event.call_id)
            else:
                driver.hangup(event.call_id)
        elif isinstance(event, Ended):
            run.up -= 1
            run.ended += 1
            finished()
        elif isinstance(event, Failed):
            run.failed += 1
            run.failures.append(f"{event.status} {event.text}")
            finished()

    span = 20  # RTP ports per worker: 4 calls x (RTP + RTCP), with room for ports in their 500-ms reuse delay
    config = PoolConfig(
        trunk=TrunkConfig(port=port, caller_id="+12127362000"),
        workers=workers,
        agent_legs=False,
        rtp_port=PORTS["rtp"] or free_range(workers * span),
        rtp_ports_per_worker=span,
        setups_per_worker=setups_per_worker,
    )
    driver = SipDriver(config, listener)
    t0 = time.perf_counter()
    await driver.start(timeout=60 + 2 * workers)
    startup = time.perf_counter() - t0
    pids = [int(w["pid"]) for w in driver.workers]
    try:
        before = [cpu_seconds(p) for p in pids]
        await asyncio.sleep(3.0)
        idle = 100 * statistics.mean(cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)) / 3.0
        rss = statistics.mean(rss_mb(p) for p in pids)

        cpu_before = sum(cpu_seconds(p) for p in pids) + time.process_time()
        tasks = []
        run.first_dial = time.perf_counter()
        for cid in range(1, calls + 1):
            if rate > 0:
                delay = run.first_dial + (cid - 1) / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            run.dialed_at[cid] = time.perf_counter()
            if rate > 0:
                tasks.append(asyncio.ensure_future(driver.dial(cid, "1", 20)))
            else:
                await driver.dial(cid, "1", 20)  # waits for a free slot: the pool's own pace
        await asyncio.wait_for(done.wait(), hold + 120)
        await asyncio.gather(*tasks)
        cpu_ms = 1000 * (sum(cpu_seconds(p) for p in pids) + time.process_time() - cpu_before) / calls
    finally:
        await driver.close()
    return run, idle, rss, cpu_ms, startup


# --- phase 4: SIPp UAC -----------------------------------------------------------------------------------------


def sipp_uac(port: int, workdir: Path, *, calls: int, rate: float, hold: float) -> tuple[float, bool]:
    """SIPp's UAC against the same UAS: setups/s over the dialing period, and whether every call succeeded."""
    hold_ms = int(hold * 1000)
    cmd = [sipp_binary(), "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
           "-mp", str(free_port()), "-m", str(calls), "-r", str(rate), "-d", str(hold_ms), "-nostdin",
           "-buff_size", "4000000", "-timeout", str(int(hold + calls / rate + 60)) + "s"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - t0 - hold
    return calls / max(elapsed, 1e-9), proc.returncode == 0


# --- the run ---------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="a quick run: 8 workers, 5/s, 4-s calls, 10 s")
    ap.add_argument("--workers", type=int, default=60, help="pool size for phase 3 (4 calls each)")
    ap.add_argument("--rate", type=float, default=20.0, help="calls offered per second in phase 3")
    ap.add_argument("--hold", type=float, default=11.0, help="seconds each phase-3 call stays up")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of dialing in phase 3")
    ap.add_argument("--per-worker-calls", type=int, default=400, help="calls in phases 1 and 2")
    ap.add_argument("--setups-per-worker", type=float, default=DEFAULT_SETUPS_PER_WORKER)
    ap.add_argument("--uas-port", type=int, default=0, help="the SIPp trunk's SIP port (default: a free one)")
    ap.add_argument("--rtp-port", type=int, default=0, help="the pool's first RTP port (default: a free range)")
    args = ap.parse_args()
    PORTS.update(uas=args.uas_port, rtp=args.rtp_port)
    if args.short:
        args.workers, args.rate, args.hold, args.duration, args.per_worker_calls = 8, 5.0, 4.0, 10.0, 120
    pool_calls = max(1, round(args.rate * args.duration))
    work = Path(tempfile.mkdtemp(prefix="sip-bench-"))
    uas, port = start_uas(work)
    try:
        print(f"machine: {describe()}")
        print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        cap = args.setups_per_worker
        n = args.per_worker_calls

        bare, bare_failed, bare_cpu = bare_pjsua2(port, n, cap)
        print(f"1 bare pjsua2, 1 process, <= 4 calls, <= {cap:g}/s: {bare:7.1f} setups/s  failed {bare_failed}  "
              f"CPU {1000 * bare_cpu / n:.2f} ms/call")  # fmt: skip

        one, _, _, one_cpu, _ = asyncio.run(run_driver(port, workers=1, calls=n, rate=0, hold=0, setups_per_worker=cap))
        print(f"2 our driver, 1 worker, same load:          {one.rate:7.1f} setups/s  failed {one.failed}  "
              f"CPU {one_cpu:.2f} ms/call (worker + parent)")  # fmt: skip

        pool, idle, rss, pool_cpu, startup = asyncio.run(
            run_driver(
                port, workers=args.workers, calls=pool_calls, rate=args.rate, hold=args.hold, setups_per_worker=cap
            )
        )
        setup = sorted(pool.setup) or [0.0]
        p50, p95 = 1000 * setup[len(setup) // 2], 1000 * setup[int(len(setup) * 0.95)]
        print(f"3 our driver, {args.workers} workers, {args.rate:g}/s offered, {args.hold:g}-s calls: "
              f"{pool.rate:7.1f} setups/s sustained, peak {pool.peak} concurrent, {pool.answered}/{pool_calls} "
              f"answered, failed {pool.failed}")  # fmt: skip
        print(f"  setup time p50 {p50:.0f} ms, p95 {p95:.0f} ms; CPU {pool_cpu:.2f} ms/call; "
              f"pool start {startup:.1f} s")  # fmt: skip
        print(f"  idle per worker: {idle:.2f}% of a core, {rss:.0f} MB RSS")
        if pool.failures:
            print(f"  failures: {sorted(set(pool.failures))[:5]}")

        uac_same, uac_ok = sipp_uac(port, work, calls=pool_calls, rate=args.rate, hold=args.hold)
        burst, burst_ok = sipp_uac(port, work, calls=3000, rate=3000, hold=0)
        print(f"4 SIPp UAC, same offered load:              {uac_same:7.1f} setups/s  all ok: {uac_ok}")
        print(f"  SIPp UAC, unpaced burst (3000 calls):      {burst:7.1f} setups/s  all ok: {burst_ok}")

        print("ratios:")
        print(f"  our 1 worker / bare pjsua2:  {one.rate / bare:.2f}  (target >= 0.5); CPU per call "
              f"{one_cpu / max(1000 * bare_cpu / n, 1e-9):.2f}x bare")  # fmt: skip
        print(f"  our pool / SIPp UAC at the same offered load: {pool.rate / uac_same:.2f}")
        print(f"  our pool / SIPp UAC unpaced: {pool.rate / burst:.4f}")
        ok = pool.peak >= 200 and pool.rate >= 20 and pool.failed == 0 and one.rate >= 0.5 * bare
        verdict = "met" if ok else "NOT met"
        print(f"targets (>= 200 concurrent, >= 20/s, 0 failed, >= 0.5 of bare per worker): {verdict}")
    finally:
        uas.terminate()
        uas.wait(5)
        errors = work / "uas-errors.log"
        text = errors.read_text(errors="replace") if errors.exists() else ""
        aborted = sum(text.count(k) for k in ("Aborting", "Dead call", "unexpected"))
        warnings = text.count("Overload warning")
        if aborted or warnings:
            print(f"SIPp UAS: {aborted} aborted calls, {warnings} overload warnings (CPU starved); see {errors}")


if __name__ == "__main__":
    main()
