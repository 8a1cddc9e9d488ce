"""The evidence log: every call and every held lead, appended to a file, each entry chained to the last by hash.

Why a chain and not only the store's rows: a row can be edited in place and nothing shows it. Here each entry
carries the SHA-256 of the previous entry's hash and its own canonical JSON, so changing, removing or reordering
any entry breaks every hash after it, and :func:`verify` says where. Truncating the tail leaves a valid but
shorter chain, which is why the audit export prints the head (the last hash and its sequence number): once a
compliance officer has signed a summary with that head, a later log that does not contain it, at that number, has
been cut.

Why a file beside the store and not a table in it: appending a line is the cheapest durable write there is, it
never contends with the dialer's own transactions, and the file is readable with no tool of ours (one JSON
object a line; ``jq`` is enough). The writer holds an exclusive lock on the file while it appends, so several
campaign processes on one store share one chain.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "calls.evidence.jsonl"
    >>> log = EvidenceLog(path)
    >>> log.append("call", {"call_id": 1, "outcome": "no_answer"})["seq"]
    1
    >>> log.append("hold", {"lead_id": "L1", "rule": "dnc", "source": "registry"})["seq"]
    2
    >>> verify(path).ok
    True
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The hash a chain starts from (64 zeros): the first entry's ``prev``.
GENESIS = "0" * 64

#: What kinds of entries the log holds. ``call``: one finished call with what was measured; ``hold``: a lead held
#: or blocked at dial time, with the rule, its source and that source's version; ``import``: one lead import's
#: counts and where its rejects were kept; ``purge``: what a retention run removed (never the chain itself);
#: ``inbound``: one finished inbound caller (arrival, wait, agent and group, outcome, the SIP Call-ID, the caller as
#: the INVITE's From gave it), callers refused before queueing included (outcome ``blocked``, with its ``reason``);
#: the store's ``inbound_calls`` row of the same call is written after it. Numbers are kept as given, not scrubbed
#: or hashed, as in ``call`` entries (a hashed number proves nothing to an auditor); the store's rows keep the same
#: string, and a purge removes those rows, never the log's lines.
KINDS = ("call", "hold", "import", "purge", "note", "inbound")


def _canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(prev: str, body: Mapping[str, Any]) -> str:
    """The hash of an entry: SHA-256 over the previous hash and the entry's canonical JSON (without ``hash``)."""
    return hashlib.sha256((prev + "\n" + _canonical(body)).encode("utf-8")).hexdigest()


class EvidenceError(Exception):
    """The evidence log cannot be written (fail closed: the caller stops dialing) or read."""


class EvidenceLog:
    """Append entries to the chained log at ``path`` (created if missing).

    ``fsync``: flush every entry to disk before returning (the default: a call's evidence must survive a crash
    that follows it; a campaign places at most a few hundred calls a second, and each append is one small write).
    """

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as exc:
            raise EvidenceError(f"cannot open the evidence log {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> EvidenceLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, kind: str, data: Mapping[str, Any], *, t: float | None = None) -> dict[str, Any]:
        """Append one entry and return it (with ``seq``, ``prev`` and ``hash``). Raises :class:`EvidenceError`."""
        if kind not in KINDS:
            raise ValueError(f"unknown evidence kind {kind!r} (one of {', '.join(KINDS)})")
        if self._fd < 0:
            raise EvidenceError("the evidence log is closed")
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # other processes on this store append to the same chain
            try:
                seq, prev = self._head()
                body = {"seq": seq + 1, "t": time.time() if t is None else t, "kind": kind, "prev": prev,
                        "data": dict(data)}  # fmt: skip
                entry = {**body, "hash": entry_hash(prev, body)}
                os.write(self._fd, (_canonical(entry) + "\n").encode("utf-8"))
                if self.fsync:
                    os.fsync(self._fd)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        except (OSError, TypeError, ValueError) as exc:
            raise EvidenceError(f"cannot append to the evidence log {self.path}: {exc}") from None
        return entry

    def _head(self) -> tuple[int, str]:
        """The last entry's number and hash, read from the file's tail (another process may have appended)."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0, GENESIS
        block = min(size, 65536)
        while True:
            data = os.pread(self._fd, block, size - block)
            lines = data.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or block == size:
                last = json.loads(lines[-1])
                return int(last["seq"]), str(last["hash"])
            block = min(size, block * 4)


def entries(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every entry of a log, in order (a line that is not JSON raises :class:`EvidenceError` with its number)."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                raise EvidenceError(f"{path}: line {number} is not an evidence entry") from None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :func:`verify` found: ``ok``, how many entries, the head (last ``seq`` and ``hash``), and where the
    chain first broke (``broken_at``: the entry's ``seq`` or line, ``why``)."""

    ok: bool
    count: int
    head_seq: int
    head_hash: str
    broken_at: int | None = None
    why: str = ""


def verify(path: str | Path) -> Verdict:
    """Walk the chain: each entry must follow the last (``seq`` + 1, ``prev`` = its hash) and hash to itself."""
    prev, seq, count = GENESIS, 0, 0
    try:
        for entry in entries(path):
            count += 1
            claimed = entry.get("hash")
            body = {k: v for k, v in entry.items() if k != "hash"}
            if entry.get("seq") != seq + 1:
                return Verdict(
                    False, count, seq, prev, count, f"entry {count} has seq {entry.get('seq')}, not {seq + 1}"
                )
            if entry.get("prev") != prev:
                return Verdict(False, count, seq, prev, seq + 1, f"entry {seq + 1} does not follow entry {seq}")
            if claimed != entry_hash(prev, body):
                return Verdict(False, count, seq, prev, seq + 1, f"entry {seq + 1} was changed after it was written")
            seq, prev = seq + 1, str(claimed)
    except EvidenceError as exc:
        return Verdict(False, count, seq, prev, count + 1, str(exc))
    except OSError as exc:
        return Verdict(False, count, seq, prev, None, f"cannot read {path}: {exc.strerror}")
    return Verdict(True, count, seq, prev)


__all__ = ["GENESIS", "KINDS", "EvidenceError", "EvidenceLog", "Verdict", "entries", "entry_hash", "verify"]
