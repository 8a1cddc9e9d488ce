"""``dialer purge`` and ``dialer report compliance --audit`` given a file that is not a campaign store: one line,
exit 2, and the file is left exactly as it was. Opening a file as a store creates the dialer's tables in it, so
before this a purge or an audit of an empty file or of another program's SQLite database gave it those tables."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _dialer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dialer.cli", *args], capture_output=True, text=True, env=ENV, timeout=60
    )


def _foreign(tmp_path: Path) -> Path:
    path = tmp_path / "crm.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, phone TEXT)")
    db.execute("INSERT INTO contacts (phone) VALUES ('+12125550101')")
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("kind", ["empty", "foreign", "directory"])
@pytest.mark.parametrize("command", ["purge", "audit"])
def test_a_file_that_is_no_store_is_refused_untouched(tmp_path: Path, kind: str, command: str) -> None:
    if kind == "empty":
        target = tmp_path / "new.sqlite"
        target.touch()
    elif kind == "foreign":
        target = _foreign(tmp_path)
    else:
        target = tmp_path / "stores"
        target.mkdir()
    before = hashlib.sha256(target.read_bytes()).hexdigest() if target.is_file() else None
    if command == "purge":
        result = _dialer("purge", str(target), "--dry-run")
    else:
        result = _dialer("report", "compliance", str(target), "--audit", str(tmp_path / "audit"))
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "STORE" in lines[0] and "campaign store" in lines[0], result.stderr
    if before is not None:
        assert hashlib.sha256(target.read_bytes()).hexdigest() == before
    assert not (tmp_path / "audit").exists()
    if kind == "foreign":
        db = sqlite3.connect(target)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        db.close()
        assert tables == {"contacts"}
