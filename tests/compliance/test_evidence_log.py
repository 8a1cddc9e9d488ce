"""The chained evidence log: any change, removal or reordering of an entry is found; processes share one chain."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from dialer.compliance.evidence import GENESIS, EvidenceError, EvidenceLog, entries, verify


def _write(path: Path, n: int) -> None:
    with EvidenceLog(path, fsync=False) as log:
        for i in range(n):
            log.append("call", {"call_id": i + 1, "outcome": "no_answer", "sip_status": 487})


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_a_fresh_chain_verifies_and_names_its_head(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    _write(path, 5)
    verdict = verify(path)
    assert verdict.ok and verdict.count == 5 and verdict.head_seq == 5
    assert verdict.head_hash == list(entries(path))[-1]["hash"]
    assert next(iter(entries(path)))["prev"] == GENESIS


@pytest.mark.parametrize("tamper", ["edit", "remove", "swap", "rehash_one"])
def test_any_tampering_is_found_where_it_happened(tmp_path: Path, tamper: str) -> None:
    path = tmp_path / "e.jsonl"
    _write(path, 6)
    lines = _lines(path)
    if tamper == "edit":  # an abandoned call rewritten as connected
        lines[2] = lines[2].replace('"no_answer"', '"connected"')
    elif tamper == "remove":
        del lines[3]
    elif tamper == "swap":
        lines[1], lines[4] = lines[4], lines[1]
    else:  # edited, and its own hash recomputed: the next entry no longer follows it
        from dialer.compliance.evidence import entry_hash

        entry = json.loads(lines[2])
        entry["data"]["outcome"] = "connected"
        body = {k: v for k, v in entry.items() if k != "hash"}
        entry["hash"] = entry_hash(entry["prev"], body)
        lines[2] = json.dumps(entry)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    verdict = verify(path)
    assert not verdict.ok and verdict.broken_at is not None and verdict.broken_at <= 5, verdict
    assert verdict.why


def test_a_line_that_is_not_json_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    _write(path, 3)
    with open(path, "a", encoding="utf-8") as f:
        f.write("garbage\n")
    verdict = verify(path)
    assert not verdict.ok and verdict.count == 3 and verdict.head_seq == 3


def _append_many(path: str, worker: int, n: int) -> None:
    with EvidenceLog(path, fsync=False) as log:
        for i in range(n):
            log.append("hold", {"worker": worker, "i": i, "rule": "hours"})


def test_processes_appending_at_once_keep_one_unbroken_chain(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 200)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    verdict = verify(path)
    assert verdict.ok and verdict.count == 600, verdict


def test_bad_entries_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    with EvidenceLog(path) as log:
        with pytest.raises(ValueError):
            log.append("gossip", {})
        with pytest.raises(EvidenceError):
            log.append("call", {"wait": float("nan")})  # not JSON: an auditor's tools could not read it
    assert path.read_text() == ""
