"""Real SIP for the scale-out tests: SIPp peers and ``dialer worker`` processes on 127.0.0.1, stopped after.

SIPp (Debian ``sip-tester``) must be installed; CI installs it, so a missing binary fails the test. The scenario
files are copies kept here (customers.xml, agent.xml) so the bus tests do not move when the SIP tests change
theirs. Each worker process is started in its own session so its pjsua2 children can be stopped with it. Also
the abandon message the bus tests' campaign files name (``abandon_wav``).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import struct
import subprocess
import sys
import wave
from pathlib import Path

import sipp_runner
from sipp_runner import free_port, free_rtp_ranges

SCENARIOS = Path(__file__).parent / "scenarios"
ROOT = Path(__file__).resolve().parents[2]


free_udp_port = free_port


def abandon_wav(workdir: Path) -> Path:
    """``abandon.wav`` in ``workdir``: one second of 440 Hz, 16-bit mono at 8 kHz (a message one can hear)."""
    path = workdir / "abandon.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000)))
                               for i in range(8000)))  # fmt: skip
    return path


class Sipp(sipp_runner.Sipp):
    """A SIPp peer playing one of the bus tests' own scenario copies."""

    scenarios = SCENARIOS


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
                   "--caller-id", "+12127362000", "--trunk-port", str(self.trunk_port),
                   "--calls-per-worker", "4", "--rtp-port", str(rtp), "--insecure"]  # fmt: skip
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
