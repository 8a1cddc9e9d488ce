"""Real SIP peers for the SIP tests: SIPp processes on 127.0.0.1, started per test on free ports and stopped.

SIPp must be installed (Debian ``sip-tester``; CI installs it): a missing binary fails the tests, never skips.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import sipp_runner
from sipp_runner import free_port, free_rtp_base

SCENARIOS = Path(__file__).parent / "scenarios"

__all__ = ["SCENARIOS", "PjPeer", "Sipp", "free_port", "free_rtp_base"]


class Sipp(sipp_runner.Sipp):
    """A SIPp peer playing one of this folder's scenarios."""

    scenarios = SCENARIOS


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
