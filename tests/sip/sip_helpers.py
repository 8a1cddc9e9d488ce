"""Shared helpers of the SIP tests: a driver against a SIPp customer UAS, waiting for events, and ``dialer run``
as a subprocess (started, its stderr read up to a status, ended)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from sipp_peers import free_rtp_base

from dialer.sip import DriverEvent, PoolConfig, SipDriver, TrunkConfig

T = TypeVar("T")


#: The caller ID the tests present: a valid number, as the driver requires.
CALLER_ID = "+12127362000"


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run a test coroutine with a hard bound, so a hung SIP exchange fails instead of stalling CI."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Recorder:
    """Collects driver events and lets a test wait for one that matches."""

    def __init__(self) -> None:
        self.events: list[DriverEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: DriverEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, call_id: int) -> list[DriverEvent]:
        return [e for e in self.events if e.call_id == call_id]

    async def wait(self, pred: Callable[[DriverEvent], bool], timeout: float = 10.0) -> DriverEvent:
        async def find() -> DriverEvent:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)


def pool(port: int, **changes: Any) -> PoolConfig:
    trunk_changes = {k[6:]: changes.pop(k) for k in list(changes) if k.startswith("trunk_")}
    trunk_changes.setdefault("caller_id", CALLER_ID)
    workers = int(changes.get("workers", 1))
    span = int(changes.get("rtp_ports_per_worker", 200))
    changes.setdefault("agent_legs", False)
    return PoolConfig(trunk=TrunkConfig(port=port, **trunk_changes), rtp_port=free_rtp_base(workers * span), **changes)


async def started(config: PoolConfig, recorder: Recorder, **kw: Any) -> SipDriver:
    driver = SipDriver(config, recorder, **kw)
    await driver.start()
    return driver


def agent_audio(workdir: Path) -> None:
    """``agent.ulaw`` in SIPp's working directory: 3 s of a 440-Hz tone, raw mu-law, which the agent softphone
    scenarios (``agent_session.xml``, ``agent_callin.xml``) loop from their ACK, so a joined customer hears it."""
    sox = shutil.which("sox")
    assert sox is not None, "sox is not installed (apt-get install sox)"
    cmd = [sox, "-n", "-r", "8000", "-c", "1", "-e", "u-law", "-t", "raw", str(workdir / "agent.ulaw"),
           "synth", "3", "sine", "440", "vol", "0.5"]  # fmt: skip
    subprocess.run(cmd, check=True)


def start_run(path: Path, *args: str) -> subprocess.Popen[str]:
    """``dialer run path *args`` as a subprocess, its stdout and stderr piped as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "dialer.cli", "run", str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """stderr up to and including ``marker`` (the status line ends with a carriage return, not a newline)."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        char = proc.stderr.read(1)
        if not char:
            break
        seen += char
    return seen


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """The rest of stdout and stderr once the process ends within ``timeout``; killed if it is still running."""
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
