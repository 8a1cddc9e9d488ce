"""A real mosquitto broker on 127.0.0.1 on a free port, for the bus tests and their fixtures.

A plain module rather than conftest.py: several conftest.py files exist in the suite and pytest swaps
``sys.modules["conftest"]`` between them, so ``from conftest import ...`` could pick up the wrong one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Broker:
    """One mosquitto process; ``kill`` and ``start`` again reuse the same port (a broker crash and restart)."""

    def __init__(self, workdir: Path, extra_config: str = "") -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.fail("mosquitto is not installed (apt-get install mosquitto); CI installs it")
        self.exe = exe
        self.port = free_port()
        self.workdir = workdir
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            # As root, mosquitto drops to user "mosquitto", who cannot read pytest's private tmp directory.
            + ("user root\n" if os.geteuid() == 0 else "")
            + extra_config
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        log = open(self.workdir / f"mosquitto-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([self.exe, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited: {(self.workdir / f'mosquitto-{self.starts - 1}.log').read_text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start listening")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without a goodbye, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
