"""Consent records of leads and the registry basis of attempts (schema migration 5).

Why a module of its own: :class:`~dialer.store.Store` keeps leads and attempts; consent is a separate fact with
its own provenance (which import, which line), several per lead, read only when a lead's number is on the national
registry. Like :mod:`dialer.store.imports` it uses the store's one connection, inside the caller's transactions; its
SQL runs on both backends (on PostgreSQL through :class:`~dialer.store.postgres.PgStore`'s ``_db``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dialer.compliance.consent import Consent, ConsentType
from dialer.store.sqlite import Store

if TYPE_CHECKING:
    from dialer.store.postgres import PgStore


class ConsentStore:
    """``lead_consents`` and ``attempts.registry_basis`` on one store (either backend)."""

    def __init__(self, store: Store | PgStore) -> None:
        self.store = store
        self._db: Any = store._db  # same package: the store's connection (a sqlite3 one, or PgStore's stand-in)

    def add(self, campaign_id: str, rows: Iterable[tuple[str, Consent, int | None, int | None]]) -> None:
        """Store ``(lead_id, consent, import_id, line)`` rows; a record already stored (same lead, type, date and
        source: the same file imported again) is kept as it was, with its first provenance. Run inside
        ``store.transaction()``."""
        self._db.executemany(
            "INSERT INTO lead_consents (campaign_id, lead_id, kind, date, source, import_id, line) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                (campaign_id, lead_id, c.kind.value, c.date.isoformat(), c.source, import_id, line)
                for lead_id, c, import_id, line in rows
            ),
        )

    def of_lead(self, campaign_id: str, lead_id: str) -> list[Consent]:
        """Every consent record of the lead, oldest first."""
        rows = self._db.execute(
            "SELECT kind, date, source FROM lead_consents WHERE campaign_id = ? AND lead_id = ? ORDER BY date, kind",
            (campaign_id, lead_id),
        ).fetchall()
        return [Consent(ConsentType(r[0]), dt.date.fromisoformat(r[1]), r[2]) for r in rows]

    def set_attempt_basis(self, campaign_id: str, lead_id: str, attempt_no: int, basis: str) -> None:
        """Name the basis a registry number was dialed on, on its attempt row (committed at once)."""
        with self.store.transaction():
            self._db.execute(
                "UPDATE attempts SET registry_basis = ? WHERE campaign_id = ? AND lead_id = ? AND attempt_no = ?",
                (basis, campaign_id, lead_id, attempt_no),
            )

    def attempt_basis(self, campaign_id: str, lead_id: str, attempt_no: int) -> str | None:
        row = self._db.execute(
            "SELECT registry_basis FROM attempts WHERE campaign_id = ? AND lead_id = ? AND attempt_no = ?",
            (campaign_id, lead_id, attempt_no),
        ).fetchone()
        return None if row is None else row[0]
