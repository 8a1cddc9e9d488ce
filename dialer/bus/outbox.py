"""A persistent local outbox: every message is written to SQLite before it is sent, and deleted once acked.

Why: the broker may be down, restarting, or unreachable for minutes, and a campaign keeps dialing meanwhile;
its call records are compliance data that may not be lost. Writing first and sending from the table means a
broker outage, a dropped connection or a crash of this process loses nothing: whatever was not acknowledged
(PUBACK at QoS 1) is sent again, in the original order, when the connection comes back. The price is that a
message may arrive twice (sent, then the connection dropped before the ack), which is why every message carries
an ``id`` and consumers drop duplicates (:class:`Deduplicator`).

A broker that crashes can lose messages it has already acknowledged (mosquitto without persistence, or any
broker between its ack and its next disk flush): acknowledged is not delivered. So acknowledged messages are kept
for a short replay window, and after a lost connection the sender hands everything acknowledged within that
window to the new connection again (:meth:`Outbox.requeue`). Consumers drop the copies by id.

Acknowledged events can also be kept longer, for ``retention`` seconds, so a consumer that was away can ask for
what it missed by sequence number (:meth:`Outbox.since`; the ``events.replay`` command). A message the
connection keeps failing on (a topic the broker refuses, say) is moved to the ``dead_letter`` table after a few
tries (:meth:`Outbox.failed`) instead of being resent on every reconnect forever: one poisoned message must not
cut the sender off the broker.

``replace`` entries are latest-value state (retained statistics): a newer one supersedes an unsent older one on
the same topic, so a long outage does not queue thousands of stale snapshots.

The outbox is used from the event-loop thread only; SQLite in WAL mode keeps a write well under a millisecond.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dialer.errors import DialerError


class OutboxError(DialerError):
    """The outbox database cannot be opened or written (disk full, permissions, corrupt file)."""


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    id: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    expiry: int | None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    expiry INTEGER,
    replace INTEGER NOT NULL DEFAULT 0,
    acked_at REAL,
    failures INTEGER NOT NULL DEFAULT 0,
    stream INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_acked ON outbox (acked_at);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    failed_at REAL NOT NULL,
    why TEXT NOT NULL
);
"""


class Outbox:
    """Messages waiting for the broker's acknowledgement, in order.

    ``path`` ``":memory:"`` keeps them in memory only (tests, or a backend that accepts loss on crash). With
    ``durable`` each write is fsynced (survives power loss); by default WAL with ``synchronous=NORMAL`` survives a
    crash of the process, which is the failure that matters most, at a fraction of the cost.
    """

    def __init__(self, path: str | Path = ":memory:", *, durable: bool = False) -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
            for column in ("failures", "stream"):  # an outbox written by an older version
                if column not in columns:
                    self._db.execute(f"ALTER TABLE outbox ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc

    def put(
        self,
        id: str,
        topic: str,
        payload: bytes | Callable[[int], bytes],
        *,
        qos: int = 1,
        retain: bool = False,
        replace: bool = False,
        expiry: int | None = None,
        stream: bool = False,
    ) -> int:
        """Store one message; returns its sequence number. A duplicate ``id`` is ignored (returns the old seq).

        ``payload`` may be a function of the sequence number, for messages that carry their own ``seq``.
        ``stream`` marks the public stream (events, state): what :meth:`since` replays and ``retention`` keeps.
        """
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                if replace:
                    self._db.execute(
                        "DELETE FROM outbox WHERE topic = ? AND replace = 1 AND acked_at IS NULL", (topic,)
                    )
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO outbox (id, topic, payload, qos, retain, expiry, replace, stream) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        id,
                        topic,
                        payload if isinstance(payload, bytes) else b"",
                        qos,
                        int(retain),
                        expiry,
                        int(replace),
                        int(stream),
                    ),
                )
                if cur.rowcount == 0:
                    row = self._db.execute("SELECT seq FROM outbox WHERE id = ?", (id,)).fetchone()
                    return int(row[0]) if row else 0
                seq = int(cur.lastrowid or 0)
                if not isinstance(payload, bytes):
                    self._db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (payload(seq), seq))
                return seq
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write to outbox {self.path}: {exc}") from exc

    def pending(self, after: int = 0, limit: int = 500) -> list[Entry]:
        """Up to ``limit`` unacknowledged messages with ``seq > after``, oldest first."""
        rows = self._db.execute(
            "SELECT seq, id, topic, payload, qos, retain, expiry FROM outbox "
            "WHERE seq > ? AND acked_at IS NULL ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [Entry(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5]), r[6]) for r in rows]

    def ack(self, seqs: list[int], now: float, keep: float = 0.0, keep_stream: float | None = None) -> None:
        """The broker has these. They are kept ``keep`` more seconds for :meth:`requeue` (stream messages
        ``keep_stream``, for :meth:`since`), then forgotten; the highest stream ``seq`` forgotten is remembered,
        so a replay can say whether it is complete."""
        if not seqs:
            return
        keep_stream = keep if keep_stream is None else max(keep, keep_stream)
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                if keep_stream > 0:
                    self._db.executemany("UPDATE outbox SET acked_at = ? WHERE seq = ?", [(now, s) for s in seqs])
                else:
                    self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
                row = self._db.execute(
                    "SELECT MAX(seq) FROM outbox WHERE stream = 1 AND acked_at < ?", (now - keep_stream,)
                ).fetchone()
                if row is not None and row[0] is not None:
                    self._db.execute(
                        "INSERT INTO outbox_meta (key, value) VALUES ('forgotten', ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
                        (int(row[0]),),
                    )
                self._db.execute("DELETE FROM outbox WHERE stream = 1 AND acked_at < ?", (now - keep_stream,))
                self._db.execute("DELETE FROM outbox WHERE stream = 0 AND acked_at < ?", (now - keep,))
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write to outbox {self.path}: {exc}") from exc

    def requeue(self, since: float) -> int:
        """Mark messages acknowledged at or after ``since`` as unsent again; returns how many."""
        try:
            with self._db:
                cur = self._db.execute("UPDATE outbox SET acked_at = NULL WHERE acked_at >= ?", (since,))
                return cur.rowcount
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write to outbox {self.path}: {exc}") from exc

    def since(self, after: int, limit: int = 10_000) -> list[Entry]:
        """Stream messages still kept (sent or not) with ``seq > after``, oldest first."""
        rows = self._db.execute(
            "SELECT seq, id, topic, payload, qos, retain, expiry FROM outbox "
            "WHERE seq > ? AND stream = 1 ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [Entry(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5]), r[6]) for r in rows]

    def oldest(self) -> int | None:
        """The lowest stream ``seq`` still kept (what a replay can start from)."""
        row = self._db.execute("SELECT MIN(seq) FROM outbox WHERE stream = 1").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def forgotten(self) -> int:
        """The highest stream ``seq`` already forgotten (0: none): a replay from below it is incomplete."""
        row = self._db.execute("SELECT value FROM outbox_meta WHERE key = 'forgotten'").fetchone()
        return 0 if row is None else int(row[0])

    def failed(self, seq: int, why: str, now: float, limit: int) -> bool:
        """The connection failed with message ``seq`` in flight; after ``limit`` such failures it is dead-lettered.

        True if it was moved to the dead-letter table (it is then never sent again by itself)."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("UPDATE outbox SET failures = failures + 1 WHERE seq = ?", (seq,))
                row = self._db.execute(
                    "SELECT failures, id, topic, payload FROM outbox WHERE seq = ?", (seq,)
                ).fetchone()
                if row is None or row[0] < limit:
                    return False
                self._db.execute(
                    "INSERT OR REPLACE INTO dead_letter (seq, id, topic, payload, failed_at, why) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, row[1], row[2], row[3], now, why),
                )
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                return True
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write to outbox {self.path}: {exc}") from exc

    def dead_letters(self) -> list[tuple[int, str, str, str]]:
        """``(seq, id, topic, why)`` of every dead-lettered message, oldest first."""
        rows = self._db.execute("SELECT seq, id, topic, why FROM dead_letter ORDER BY seq").fetchall()
        return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    def __len__(self) -> int:
        """Messages not yet acknowledged."""
        return int(self._db.execute("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class Deduplicator:
    """Remembers the last ``size`` message ids seen, so a consumer can drop redeliveries.

    At-least-once delivery plus this filter is exactly-once processing, as long as a duplicate arrives within
    ``size`` messages of the original (replays after a reconnect arrive right away, so a few thousand is ample).
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0

    def first(self, message_id: str) -> bool:
        """True the first time an id is seen, False for a duplicate."""
        if message_id in self._seen:
            self._seen.move_to_end(message_id)
            self.duplicates += 1
            return False
        self._seen[message_id] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True
