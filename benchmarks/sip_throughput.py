"""SIP throughput: call setups per second and peak concurrent calls through our driver, beside a bare pjsua2 loop
and SIPp's own UAC, all against the same SIPp UAS in one run. The ratios are the figures.

    python benchmarks/sip_throughput.py [--calls 200] [--workers 4] [--hold 8]

Needs SIPp (Debian ``sip-tester``) and ``pjsua2-python``. Loopback only; every process it starts is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialer.sip import Answered, DriverEvent, Ended, Failed, PoolConfig, SipDriver, TrunkConfig


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_uas(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    sipp = shutil.which("sipp")
    if sipp is None:
        sys.exit("sipp not found: apt-get install sip-tester")
    port = free_port()
    cmd = [sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port()), "-nostdin",
           "-buff_size", "4000000"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def sipp_uac(port: int, calls: int, rate: int, workdir: Path) -> float:
    """SIPp's own UAC: the setups/s it sustains at ``rate`` against the same UAS."""
    sipp = shutil.which("sipp")
    assert sipp is not None
    t0 = time.perf_counter()
    cmd = [sipp, "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()), "-m", str(calls),
           "-r", str(rate), "-d", "0", "-nostdin", "-buff_size", "4000000", "-timeout", "60s"]  # fmt: skip
    subprocess.run(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return calls / (time.perf_counter() - t0)


BARE = r"""
import sys, time, pjsua2 as pj
port, calls = int(sys.argv[1]), int(sys.argv[2])
ep = pj.Endpoint(); ep.libCreate(); c = pj.EpConfig()
c.uaConfig.threadCnt = 0; c.uaConfig.mainThreadOnly = True; c.logConfig.level = 0; c.logConfig.consoleLevel = 0
ep.libInit(c); tc = pj.TransportConfig(); tc.port = 0; ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc); ep.libStart()
ep.audDevManager().setNullDev()
acc = pj.Account(); ac = pj.AccountConfig(); ac.idUri = "sip:bare@127.0.0.1"; acc.create(ac)
live = {}; done = [0]; failed = [0]
class C(pj.Call):
    def onCallState(self, prm):
        i = self.getInfo()
        if i.state == pj.PJSIP_INV_STATE_CONFIRMED: self.hangup(pj.CallOpParam(True))
        elif i.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            done[0] += 1; failed[0] += i.lastStatusCode != 200; live.pop(id(self), None)
placed = 0; t0 = time.perf_counter()
while done[0] < calls:
    while placed < calls and len(live) < 4:
        call = C(acc)
        try: call.makeCall(f"sip:1@127.0.0.1:{port}", pj.CallOpParam(True))
        except pj.Error: break
        live[id(call)] = call; placed += 1
    ep.libHandleEvents(1)
print(calls / (time.perf_counter() - t0), failed[0], flush=True)
import os; os._exit(0)  # skip SWIG finalizers after the run (they abort without libDestroy)
"""


def bare_pjsua2(port: int, calls: int) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", BARE, str(port), str(calls)], capture_output=True, text=True,
                         timeout=300, check=True)  # fmt: skip
    rate, failed = out.stdout.strip().splitlines()[-1].split()
    return float(rate), int(failed)


async def driver_rate(port: int, calls: int, workers: int, rtp: int) -> tuple[float, int, float, float]:
    """Setups/s through the pool (each call hung up on answer), failures, idle CPU % and RSS MB per worker."""
    done = asyncio.Event()
    count = {"ok": 0, "failed": 0}
    drv: SipDriver | None = None

    def listener(e: DriverEvent) -> None:
        if isinstance(e, Answered) and drv is not None:
            drv.hangup(e.call_id)
        elif isinstance(e, Ended):
            count["ok"] += 1
        elif isinstance(e, Failed):
            count["failed"] += 1
        if count["ok"] + count["failed"] >= calls:
            done.set()

    cfg = PoolConfig(trunk=TrunkConfig(port=port), workers=workers, agent_legs=False, rtp_port=rtp)
    drv = SipDriver(cfg, listener)
    await drv.start()
    idle_cpu, rss = idle_cost(drv)
    t0 = time.perf_counter()
    for cid in range(1, calls + 1):
        await drv.dial(cid, "1", 20)
    await asyncio.wait_for(done.wait(), 300)
    rate = calls / (time.perf_counter() - t0)
    await drv.close()
    return rate, count["failed"], idle_cpu, rss


def idle_cost(drv: SipDriver) -> tuple[float, float]:
    pids = [int(w["pid"]) for w in drv.workers]

    def cpu(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = [cpu(p) for p in pids]
    time.sleep(2.0)
    used = [cpu(p) - b for p, b in zip(pids, before, strict=True)]
    rss = [int(Path(f"/proc/{p}/statm").read_text().split()[1]) * resource.getpagesize() / 2**20 for p in pids]
    return 100 * sum(used) / len(pids) / 2.0, sum(rss) / len(rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    uas, port = start_uas(work)
    try:
        print(
            f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}"
        )
        bare, bare_failed = bare_pjsua2(port, args.calls)
        ours, ours_failed, idle_cpu, rss = asyncio.run(driver_rate(port, args.calls, args.workers, 42000))
        uac = sipp_uac(port, args.calls * 5, 2000, work)
        print(f"bare pjsua2 (1 process, 4 calls): {bare:8.1f} setups/s  failed {bare_failed}")
        print(f"our driver ({args.workers} workers):       {ours:8.1f} setups/s  failed {ours_failed}")
        print(f"SIPp UAC:                         {uac:8.1f} setups/s")
        print(
            f"ratio ours/bare: {ours / bare:.2f} (per worker {ours / args.workers / bare:.2f}); "
            f"ours/SIPp: {ours / uac:.3f}"
        )
        print(f"idle per worker: {idle_cpu:.1f}% of a core, {rss:.0f} MB RSS")
    finally:
        uas.terminate()
        uas.wait(5)


if __name__ == "__main__":
    main()
