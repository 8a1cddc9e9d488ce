"""Real SIP peers for the SIP tests: SIPp processes on 127.0.0.1, started per test on free ports and stopped.

SIPp must be installed (Debian ``sip-tester``; CI installs it): a missing binary fails the tests, never skips.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

SCENARIOS = Path(__file__).parent / "scenarios"


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


def free_rtp_base(span: int) -> int:
    """An even base port with ``span`` UDP ports free after it, for a worker pool's RTP ranges."""
    for _ in range(50):
        base = free_port() & ~1
        ok = True
        socks = []
        try:
            for p in range(base, base + span, 37):  # sample the range: cheap and good enough on a quiet host
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            ok = False
        finally:
            for s in socks:
                s.close()
        if ok and base + span < 65000:
            return base
    raise RuntimeError("no free RTP range")


class Sipp:
    """One SIPp process playing ``scenario`` as a UAS on 127.0.0.1:``port``."""

    def __init__(self, scenario: str, workdir: Path, *extra: str, transport: str = "u1") -> None:
        binary = shutil.which("sipp")
        assert binary is not None, "sipp is not installed (apt-get install sip-tester)"
        self.port = free_port(socket.SOCK_STREAM if transport == "t1" else socket.SOCK_DGRAM)
        self.media_port = free_port()
        self.workdir = workdir
        self.log = workdir / f"sipp-{self.port}.log"
        for name in ("person.ulaw", "machine.ulaw"):  # SIPp loads every rtp_stream file at start
            if not (workdir / name).exists():
                (workdir / name).write_bytes(b"\xff" * 8000)  # 1 s of mu-law silence
        cmd = [
            binary,
            "-sf",
            str(SCENARIOS / scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-mp",
            str(self.media_port),
            "-t",
            transport,
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(workdir / f"sipp-{self.port}-errors.log"),
            *extra,
        ]
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


class PjPeer:
    """The pjsua2 softphone of ``pj_peer.py`` in its own process: a far end that plays a WAV and records."""

    def __init__(
        self, workdir: Path, *, play: Path | None = None, loop: bool = False, hangup_after: float = 0.0
    ) -> None:
        import sys

        self.port = free_port()
        self.record_dir = workdir / f"peer-{self.port}"
        self.record_dir.mkdir()
        cmd = [sys.executable, str(Path(__file__).parent / "pj_peer.py"), "--port", str(self.port),
               "--rtp-port", str(free_rtp_base(40)), "--record", str(self.record_dir),
               "--hangup-after", str(hangup_after)]  # fmt: skip
        if play is not None:
            cmd += ["--play", str(play), *(["--loop"] if loop else [])]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        # A thread reads the peer's lines: select() on the pipe plus a buffered readline() misses a line that
        # arrived in the same read as the previous one (pjlib's own log output comes first, unpredictably).
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.wait_line("ready", 30), f"pj_peer did not start: {self.lines}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.strip())
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<eof>")
            self._changed.notify_all()

    def wait_line(self, line: str, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: line in self.lines or "<eof>" in self.lines, timeout) and (
                line in self.lines
            )

    def recording(self, n: int = 1, timeout: float = 10.0) -> Path:
        """Call ``n``'s recording, once the peer has closed it."""
        assert self.wait_line(f"done {n}", timeout), f"no finished recording {n}: {self.lines}"
        return self.record_dir / f"call-{n}.wav"

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
