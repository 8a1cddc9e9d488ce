"""The dispatcher's durable state: the calls it has in flight and the answers it gave to commands.

Why a file: the engine's state lives in memory, and a dispatcher that is killed takes it along, while its
workers still hold the calls it dialed (people on the line, agents talking). What the next dispatcher needs to
close those calls honestly is small, so it is written as it happens, one row per call, in SQLite (WAL, one
transaction per change): the lead and number, the worker that took the call, and the facts the workers reported
(placed, ringing, answered and by whom, bridged, message) with their wall-clock times. A restarted dispatcher
reads the rows left over (:meth:`DispatcherState.open_calls`), asks each worker to finish those calls safely and to
tell it what happened (``work.release``), and writes each one's record to the lead source: no lead is lost or
dialed twice, and no abandoned call goes uncounted.

The command answers (``replies``) make commands idempotent across restarts too: a backend that retries a command
after the dispatcher restarted gets the original answer, not a second application.

The leads on agents' screens (``on_screen``: preview offers not yet dialed, skipped or withdrawn) were claimed from
the store but sent no INVITE: a dispatcher killed with some on screen leaves their attempts open, and the next one
gives them back undialed (``dialer dispatch``'s ``release_shown``) instead of closing them as interrupted calls.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialer.errors import DialerError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id INTEGER PRIMARY KEY,
    lead_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    fields TEXT NOT NULL DEFAULT '{}',
    epoch TEXT NOT NULL,
    dialed_at REAL NOT NULL,
    worker TEXT,
    placed_at REAL,
    ringing_at REAL,
    answered_at REAL,
    answered_by TEXT,
    agent_id TEXT,
    connected_at REAL,
    message_at REAL,
    bridge_failed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS replies (
    sender TEXT NOT NULL,
    id TEXT NOT NULL,
    digest TEXT NOT NULL,
    reply TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (sender, id)
);
CREATE INDEX IF NOT EXISTS replies_at ON replies (at);
CREATE TABLE IF NOT EXISTS on_screen (call_id INTEGER PRIMARY KEY, lead_id TEXT NOT NULL, owner TEXT NOT NULL);
"""

_FACTS = frozenset(
    {"worker", "placed_at", "ringing_at", "answered_at", "answered_by", "agent_id", "connected_at", "message_at",
     "bridge_failed"}
)  # fmt: skip


_COLUMNS = (
    "call_id", "lead_id", "phone", "fields", "epoch", "dialed_at", "worker", "placed_at", "ringing_at", "answered_at",
    "answered_by", "agent_id", "connected_at", "message_at", "bridge_failed",
)  # fmt: skip


class StateError(DialerError):
    """The dispatcher's state file cannot be opened or written."""


@dataclass(slots=True)
class OpenCall:
    """A call a dispatcher had in flight, with what its worker had reported (wall-clock times)."""

    call_id: int
    lead_id: str
    phone: str
    fields: dict[str, Any]
    epoch: str
    dialed_at: float
    worker: str | None = None
    placed_at: float | None = None
    ringing_at: float | None = None
    answered_at: float | None = None
    answered_by: str | None = None
    agent_id: str | None = None
    connected_at: float | None = None
    message_at: float | None = None
    bridge_failed: bool = False


class DispatcherState:
    """The rows described in the module docstring, in the SQLite file ``path`` (``":memory:"``: none kept)."""

    def __init__(self, path: str | Path = ":memory:", *, keep_replies: int = 100_000) -> None:
        self.path = str(path)
        self.keep_replies = keep_replies
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the dispatcher's state {self.path}: {exc}") from exc

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        try:
            self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the dispatcher's state {self.path}: {exc}") from exc

    # -- calls -------------------------------------------------------------------------------------------

    def dialed(self, call_id: int, lead_id: str, phone: str, fields: dict[str, Any], epoch: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO calls (call_id, lead_id, phone, fields, epoch, dialed_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (call_id, lead_id, phone, json.dumps(fields), epoch, time.time()),
        )

    def update(self, call_id: int, **facts: Any) -> None:
        """Record facts about a call (names as in :class:`OpenCall`); unknown names are a programming error."""
        unknown = set(facts) - _FACTS
        if unknown:
            raise ValueError(f"unknown call facts {sorted(unknown)}")
        if not facts:
            return
        sets = ", ".join(f"{name} = ?" for name in facts)
        self._write(f"UPDATE calls SET {sets} WHERE call_id = ?", (*facts.values(), call_id))

    def closed(self, call_id: int) -> None:
        """The call's record is with the lead source: nothing is left to recover."""
        self._write("DELETE FROM calls WHERE call_id = ?", (call_id,))

    def open_calls(self) -> list[OpenCall]:
        rows = self._db.execute(
            "SELECT call_id, lead_id, phone, fields, epoch, dialed_at, worker, placed_at, ringing_at, answered_at, "
            "answered_by, agent_id, connected_at, message_at, bridge_failed FROM calls ORDER BY call_id"
        ).fetchall()
        out = []
        for r in rows:
            facts = dict(zip(_COLUMNS, r, strict=True))
            facts["fields"] = json.loads(facts["fields"])
            facts["bridge_failed"] = bool(facts["bridge_failed"])
            out.append(OpenCall(**facts))
        return out

    # -- leads on agents' screens -------------------------------------------------------------------------

    def shown(self, call_id: int, lead_id: str, owner: str) -> None:
        """A lead offered to an agent as ``call_id``, claimed by the lead source ``owner``."""
        self._write("INSERT OR REPLACE INTO on_screen VALUES (?, ?, ?)", (call_id, lead_id, owner))

    def unshown(self, call_id: int) -> None:
        """The offer was dialed (the call is in ``calls`` by then) or recorded as not placed."""
        self._write("DELETE FROM on_screen WHERE call_id = ?", (call_id,))

    def on_screen(self) -> list[tuple[int, str, str]]:
        """(call_id, lead_id, owner) of every lead left on a screen."""
        return [(int(c), str(lead), str(o)) for c, lead, o in self._db.execute("SELECT * FROM on_screen")]

    def clear_on_screen(self) -> None:
        self._write("DELETE FROM on_screen", ())

    # -- command answers ---------------------------------------------------------------------------------

    def reply(self, sender: str, command_id: str) -> tuple[str, dict[str, Any]] | None:
        """The digest of the command and the reply given to ``sender``'s command ``command_id``, if any."""
        row = self._db.execute(
            "SELECT digest, reply FROM replies WHERE sender = ? AND id = ?", (sender, command_id)
        ).fetchone()
        return None if row is None else (str(row[0]), json.loads(row[1]))

    def remember(self, sender: str, command_id: str, digest: str, reply: dict[str, Any]) -> None:
        now = time.time()
        self._write(
            "INSERT OR REPLACE INTO replies (sender, id, digest, reply, at) VALUES (?, ?, ?, ?, ?)",
            (sender, command_id, digest, json.dumps(reply), now),
        )
        if self.keep_replies and int(now * 1000) % 997 == 0:  # now and then, not on every command
            self._write(
                "DELETE FROM replies WHERE at < (SELECT at FROM replies ORDER BY at DESC LIMIT 1 OFFSET ?)",
                (self.keep_replies,),
            )

    def close(self) -> None:
        self._db.close()
