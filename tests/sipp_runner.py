"""SIPp on loopback for any test folder: free ports, and one SIPp process per peer, started and stopped.

Shared by the SIP tests and the bus's scale-out tests; each folder keeps its own scenario files and names the
folder they live in. SIPp must be installed (Debian ``sip-tester``; CI installs it): a missing binary fails the
test, never skips it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on loopback (SIPp and pjsua may use either)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, other) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def _range_free(base: int, span: int, step: int) -> bool:
    """Whether ``span`` UDP ports from ``base`` look free (sampled every ``step``: cheap, fine on a quiet host)."""
    socks: list[socket.socket] = []
    try:
        for p in range(base, base + span, step):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind(("127.0.0.1", p))
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()
    return True


def free_rtp_ranges(count: int, span: int = 200, step: int = 23) -> list[int]:
    """``count`` disjoint even base ports, each with ``span`` free-looking UDP ports after it (RTP ranges)."""
    bases: list[int] = []
    for _ in range(50 * count):
        base = free_port() & ~1
        if base + span >= 65000 or any(abs(base - b) < span for b in bases):
            continue
        if _range_free(base, span, step):
            bases.append(base)
            if len(bases) == count:
                return bases
    raise RuntimeError("no free RTP range")


def free_rtp_base(span: int) -> int:
    """One even base port with ``span`` UDP ports free after it, for a worker pool's RTP ranges."""
    return free_rtp_ranges(1, span, step=37)[0]


class Sipp:
    """One SIPp process playing ``scenario`` (a file in ``scenarios``) as a UAS on 127.0.0.1:``port``.

    Subclasses set ``scenarios`` to their folder. Errors go to a file that :meth:`errors` and :meth:`aborted`
    read, so a test can fail on a call SIPp gave up on.
    """

    scenarios: Path = Path(__file__).parent

    def __init__(self, scenario: str, workdir: Path, *extra: str, transport: str = "u1") -> None:
        binary = shutil.which("sipp")
        assert binary is not None, "sipp is not installed (apt-get install sip-tester); CI installs it"
        self.port = free_port(socket.SOCK_STREAM if transport == "t1" else socket.SOCK_DGRAM)
        self.media_port = free_port()
        self.workdir = workdir
        self.log = workdir / f"sipp-{self.port}.log"
        for name in ("person.ulaw", "machine.ulaw"):  # SIPp loads every rtp_stream file at start
            if not (workdir / name).exists():
                (workdir / name).write_bytes(b"\xff" * 8000)  # 1 s of mu-law silence
        cmd = [binary, "-sf", str(self.scenarios / scenario), "-i", "127.0.0.1", "-p", str(self.port),
               "-mp", str(self.media_port), "-t", transport, "-nostdin", "-trace_err",
               "-error_file", str(workdir / f"sipp-{self.port}-errors.log"), *extra]  # fmt: skip
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
        self._wait_listening(transport)

    def _wait_listening(self, transport: str) -> None:
        deadline = time.monotonic() + 10
        kind = socket.SOCK_STREAM if transport == "t1" else socket.SOCK_DGRAM
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"sipp exited: {self.log.read_text(errors='replace')[-2000:]}"
            with socket.socket(socket.AF_INET, kind) as s:
                try:
                    s.bind(("127.0.0.1", self.port))
                except OSError:
                    return  # taken: SIPp is listening
            time.sleep(0.05)
        raise AssertionError("sipp did not start listening")

    def errors(self) -> str:
        path = self.workdir / f"sipp-{self.port}-errors.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def aborted(self) -> list[str]:
        """SIPp's reports of calls it gave up on (an unexpected message, a dead call): our SIP or the scenario
        broke. Overload warnings (SIPp starved of CPU) are not failures of ours and are not returned."""
        keys = ("Aborting call", "unexpected", "Dead call")
        return [line for line in self.errors().splitlines() if any(k in line for k in keys)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
