"""Real SIP for the scale-out tests: SIPp peers and ``dialer worker`` processes on 127.0.0.1, stopped after.

SIPp (Debian ``sip-tester``) must be installed; CI installs it, so a missing binary fails the test. The scenario
files are copies kept here (customers.xml, agent.xml) so the bus tests do not move when the SIP tests change
theirs. Each worker process is started in its own session so its pjsua2 children can be stopped with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SCENARIOS = Path(__file__).parent / "scenarios"
ROOT = Path(__file__).resolve().parents[2]


def free_udp_port() -> int:
    """A port free for UDP and TCP on loopback (SIPp listens on one, pjsua may use either)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def free_rtp_ranges(count: int, span: int = 200) -> list[int]:
    """``count`` disjoint even base ports, each with ``span`` ports after it that look free (sampled)."""
    bases: list[int] = []
    while len(bases) < count:
        base = free_udp_port() & ~1
        if base + span >= 65000 or any(abs(base - b) < span for b in bases):
            continue
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + span, 23):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        bases.append(base)
    return bases


class Sipp:
    """One SIPp UAS playing ``scenario`` on 127.0.0.1 on a free UDP port."""

    def __init__(self, scenario: str, workdir: Path, *extra: str) -> None:
        exe = shutil.which("sipp")
        assert exe is not None, "sipp is not installed (apt-get install sip-tester); CI installs it"
        self.port = free_udp_port()
        self.workdir = workdir
        for name in ("person.ulaw", "machine.ulaw"):  # SIPp loads every rtp_stream file at start
            if not (workdir / name).exists():
                (workdir / name).write_bytes(b"\xff" * 8000)  # 1 s of mu-law silence
        self.log = workdir / f"sipp-{scenario}-{self.port}.log"
        cmd = [exe, "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(self.port),
               "-mp", str(free_udp_port()), "-t", "u1", "-nostdin", *extra]  # fmt: skip
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"sipp exited: {self.log.read_text(errors='replace')[-2000:]}"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", self.port))
                except OSError:
                    return  # taken: SIPp is listening
            time.sleep(0.05)
        raise AssertionError("sipp did not start listening")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class SipWorkers:
    """``dialer worker`` processes placing calls over SIP against ``trunk_port``, one pjsua2 process each."""

    def __init__(
        self, broker_port: int, trunk_port: int, workdir: Path, agents: dict[str, str], extra: tuple[str, ...] = ()
    ) -> None:
        self.extra = extra
        self.broker_port = broker_port
        self.trunk_port = trunk_port
        self.workdir = workdir
        self.agents = agents
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, *worker_ids: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        for wid, rtp in zip(worker_ids, free_rtp_ranges(len(worker_ids)), strict=True):
            cmd = [sys.executable, "-m", "dialer.cli", "worker", "-v", "--broker-port", str(self.broker_port),
                   "--campaign", "c1", "--worker-id", wid, "--trunk-host", "127.0.0.1",
                   "--trunk-port", str(self.trunk_port), "--calls-per-worker", "4", "--rtp-port", str(rtp)]  # fmt: skip
            for agent_id, uri in self.agents.items():
                cmd += ["--agent", f"{agent_id}={uri}"]
            cmd += self.extra
            log = open(self.workdir / f"{wid}.log", "wb")  # noqa: SIM115
            self.procs[wid] = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir, start_new_session=True
            )

    def kill(self, worker_id: str) -> None:
        """SIGKILL the worker process alone, as a crash would; its pjsua2 child sees the pipe close and quits."""
        self.procs[worker_id].send_signal(signal.SIGKILL)
        self.procs[worker_id].wait(5)

    def terminate(self, worker_id: str) -> None:
        self.procs[worker_id].send_signal(signal.SIGTERM)

    def log(self, worker_id: str) -> str:
        return (self.workdir / f"{worker_id}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            with contextlib.suppress(ProcessLookupError):  # whatever is left of its session (a pjsua2 child)
                os.killpg(proc.pid, signal.SIGKILL)
