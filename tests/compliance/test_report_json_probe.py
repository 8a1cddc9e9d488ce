"""``dialer report compliance STORE [--json]`` tried as a user would: on the command line, the JSON piped to
``python -m json.tool``, and given the wrong thing for STORE. Each error is one line and exit status 2, and a
report never writes into what it was given."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dialer.store import InboundRow, open_store

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dialer.cli", "report", "compliance", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )


def _inbound(call_id: str, arrived: float, outcome: str, **kw: Any) -> InboundRow:
    fields: dict[str, Any] = {"campaign_id": "c", "call_id": call_id, "arrived_at": arrived, "outcome": outcome,
                              "wait": 0.0, "ended_at": arrived + 60, "service_level_seconds": 20.0,
                              "caller": "<sip:+12125550101@carrier>", "owner": "host/1/ab"}  # fmt: skip
    fields.update(kw)
    return InboundRow(**fields)


def _store(path: Path, rows: list[InboundRow]) -> Path:
    store = open_store(str(path))
    try:
        store.ensure_campaign("c")
        for row in rows:
            store.add_inbound(row)
    finally:
        store.close()
    return path


def test_the_json_pipes_through_json_tool_with_and_without_inbound_calls(tmp_path: Path) -> None:
    """Inbound callers who were all blocked (no answer: no service level, no ASA) and a campaign with none: the
    document parses, with null where there is no figure, and without ``inbound`` when nobody rang."""
    t = time.time() - 3600
    blocked = _store(tmp_path / "blocked.sqlite", [_inbound("", t, "blocked", reason="queue_full")])
    quiet = _store(tmp_path / "quiet.sqlite", [])
    for path, has_inbound in ((blocked, True), (quiet, False)):
        out = report(str(path), "--json")
        assert out.returncode == 0, out.stderr
        tool = subprocess.run([sys.executable, "-m", "json.tool"], input=out.stdout, capture_output=True, text=True)
        assert tool.returncode == 0, tool.stderr
        doc = json.loads(tool.stdout)
        assert doc["over_cap"] is False and set(doc["regimes"]) == {"us", "uk", "ca"}
        assert ("inbound" in doc) is has_inbound, doc
    inbound = json.loads(report(str(blocked), "--json").stdout)["inbound"]
    assert (inbound["callers"], inbound["blocked"], inbound["service_level"], inbound["asa"]) == (1, 1, None, None)


def _one_line_error(out: subprocess.CompletedProcess[str], *words: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert out.stdout == "", out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dialer: error: "), out.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_report_does_not_turn_another_sqlite_file_into_a_store(tmp_path: Path) -> None:
    """Before: ``dialer report compliance`` opened whatever file it was given as a store, which creates the
    dialer's tables: another program's SQLite database (or a mistyped path to one) gained nine tables and the
    report said "the store holds 0 campaigns"; an empty file became a 100-KB store. Now both are refused, one line,
    exit 2, and the file is left byte for byte as it was."""
    other = tmp_path / "crm.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE contacts (name TEXT)")
    db.commit()
    db.close()
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for path, word in ((other, "not a campaign store"), (empty, "is empty")):
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        for extra in ((), ("--json",), ("--audit", str(tmp_path / "audit"))):
            _one_line_error(report(str(path), *extra), str(path), word)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not (tmp_path / "audit").exists()


def test_a_directory_a_missing_path_and_a_database_that_refuses_are_one_line_each(tmp_path: Path) -> None:
    """Before: a directory given as STORE was reported as "no such file". The others were already right."""
    _one_line_error(report(str(tmp_path), "--json"), "is a directory")
    _one_line_error(report(str(tmp_path / "nope.sqlite"), "--json"), "no such file")
    (tmp_path / "campaign.toml").write_text("[campaign]\n", encoding="utf-8")
    _one_line_error(report(str(tmp_path / "campaign.toml")), "not a campaign store")
    line = _one_line_error(report("postgresql://dialer:secret@127.0.0.1:1/dialer", "--json"), "cannot open store")
    assert "secret" not in line  # the password is not echoed


@pytest.mark.parametrize("url", ["postgres://127.0.0.1:1/x", "postgresql://localhost:1/x?connect_timeout=2"])
def test_other_spellings_of_a_refusing_postgresql_url(url: str) -> None:
    _one_line_error(report(url), "cannot open store")
