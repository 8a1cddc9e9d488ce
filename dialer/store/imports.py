"""Bulk lead writes and the import log, for the CSV importer (``dialer.campaign.importer``).

Why a separate module: :class:`~dialer.store.Store`'s per-lead methods (``insert_lead``, ``find_lead``) cost a
statement or three each, and ``insert_lead`` asks for ``MAX(seq)`` every time, which scans the campaign: an import
built on them is quadratic (10k rows 4 s, 100k rows 394 s). Here a chunk of rows is looked up with two set-based
queries over the ``(campaign_id, phone)`` and ``(campaign_id, lead_id)`` indexes and written with ``executemany``,
inside the caller's transaction (:meth:`Store.transaction`), so a chunk and its progress record commit together.

The import log (``lead_imports``, ``lead_import_rows``, schema migration 4) remembers each import of a file: the
file's identity and the last committed chunk (so a killed import resumes, and an unchanged file is skipped), and
what happened to each merged or rejected row.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dialer.store.sqlite import Store

if TYPE_CHECKING:
    from dialer.store.postgres import PgStore


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """One row of ``lead_imports``: which file, read how, and how far the committed chunks got."""

    import_id: int
    campaign_id: str
    source: str
    size: int
    mtime_ns: int
    fingerprint: str
    settings: str
    state: str
    byte_offset: int | None
    line: int
    rows: int
    accepted: int
    started_at: float
    finished_at: float | None


_RECORD_COLUMNS = (
    "import_id, campaign_id, source, size, mtime_ns, fingerprint, settings, state, byte_offset, line, rows, "
    "accepted, started_at, finished_at"
)
_INSERT_LEAD = (
    "INSERT INTO leads (campaign_id, lead_id, phone, name, time_zone, fields, priority, seq, source_line) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class LeadBulk:
    """Set-based reads and ``executemany`` writes of leads and import records on one :class:`Store`.

    Uses the store's connection (same thread, same transactions); every write must run inside
    ``store.transaction()``. The SQL runs on both backends; only the expansion of a JSON list differs.
    """

    def __init__(self, store: Store | PgStore) -> None:
        self.store = store
        self._db: Any = store._db  # same package: the store's connection (a sqlite3 one, or PgStore's stand-in)
        sqlite = isinstance(self._db, sqlite3.Connection)
        self._json_list = "(SELECT value FROM json_each(?))" if sqlite else "(SELECT json_array_elements_text(?::json))"

    # -- leads -------------------------------------------------------------------------------------------

    def max_seq(self, campaign_id: str) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM leads WHERE campaign_id = ?", (campaign_id,))
        return int(row.fetchone()[0])

    def leads_by_phone(self, campaign_id: str, phones: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored leads among ``phones`` (one indexed lookup each, in one statement), by phone."""
        if not phones:
            return {}
        rows = self._db.execute(
            "SELECT lead_id, phone, name, time_zone, fields, priority FROM leads "
            f"WHERE campaign_id = ? AND phone IN {self._json_list}",
            (campaign_id, json.dumps(list(phones))),
        )
        return {
            r[1]: {
                "lead_id": r[0],
                "phone": r[1],
                "name": r[2],
                "time_zone": r[3],
                "fields": json.loads(r[4]),
                "priority": r[5],
            }
            for r in rows
        }

    def phones_by_lead_id(self, campaign_id: str, lead_ids: Sequence[str]) -> dict[str, str]:
        """The phone of each stored lead whose id is among ``lead_ids``."""
        if not lead_ids:
            return {}
        rows = self._db.execute(
            f"SELECT lead_id, phone FROM leads WHERE campaign_id = ? AND lead_id IN {self._json_list}",
            (campaign_id, json.dumps(list(lead_ids))),
        )
        return {r[0]: r[1] for r in rows}

    def insert_leads(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """New leads as ``(campaign_id, lead_id, phone, name, time_zone, fields_json, priority, seq, line)``."""
        self._db.executemany(_INSERT_LEAD, rows)

    def update_leads(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Merged leads as ``(name, time_zone, fields_json, priority, campaign_id, lead_id)``."""
        self._db.executemany(
            "UPDATE leads SET name = ?, time_zone = ?, fields = ?, priority = ? WHERE campaign_id = ? AND lead_id = ?",
            rows,
        )

    # -- the import log ----------------------------------------------------------------------------------

    def latest_import(self, campaign_id: str, source: str) -> ImportRecord | None:
        row = self._db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM lead_imports WHERE campaign_id = ? AND source = ? "
            "ORDER BY import_id DESC LIMIT 1",
            (campaign_id, source),
        ).fetchone()
        return None if row is None else ImportRecord(*row)

    def start_import(
        self, campaign_id: str, source: str, size: int, mtime_ns: int, fingerprint: str, settings: str, offset: int
    ) -> int:
        cur = self._db.execute(
            "INSERT INTO lead_imports (campaign_id, source, size, mtime_ns, fingerprint, settings, state, "
            "byte_offset, started_at) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?) RETURNING import_id",
            (campaign_id, source, size, mtime_ns, fingerprint, settings, offset, time.time()),
        )
        return int(cur.fetchone()[0])

    def progress(
        self, import_id: int, byte_offset: int | None, line: int, rows: int, accepted: int, *, done: bool = False
    ) -> None:
        self._db.execute(
            "UPDATE lead_imports SET byte_offset = ?, line = ?, rows = ?, accepted = ?, state = ?, finished_at = ? "
            "WHERE import_id = ?",
            (
                byte_offset,
                line,
                rows,
                accepted,
                "done" if done else "running",
                time.time() if done else None,
                import_id,
            ),
        )

    def add_rows(self, import_id: int, rows: Iterable[tuple[int, str, str, str, str]]) -> None:
        """Outcomes as ``(line, 'merged'|'rejected', lead_id, reason, row_json)``."""
        self._db.executemany(
            "INSERT INTO lead_import_rows (import_id, line, outcome, lead_id, reason, row) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (import_id, line) DO UPDATE SET outcome = excluded.outcome, lead_id = excluded.lead_id, "
            "reason = excluded.reason, row = excluded.row",
            ((import_id, *r) for r in rows),
        )

    def import_rows(self, import_id: int) -> list[tuple[int, str, str, str, list[str]]]:
        """Every merged or rejected row of one import, in line order: ``(line, outcome, lead_id, reason, row)``."""
        rows = self._db.execute(
            "SELECT line, outcome, lead_id, reason, row FROM lead_import_rows WHERE import_id = ? ORDER BY line",
            (import_id,),
        )
        return [(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]
