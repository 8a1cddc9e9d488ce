"""Durable storage of campaigns, leads, attempts (the abandonment ledger), inbound calls and opt-outs.

The default is an embedded SQLite database in WAL mode (:class:`Store`); a floor whose dispatchers run on several
machines shares one PostgreSQL database instead (:class:`~dialer.store.postgres.PgStore`, same methods and
semantics). :func:`open_store` picks one from a location. Nothing else in the library talks SQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from dialer.store.schema import SCHEMA_VERSION
from dialer.store.sqlite import (
    INBOUND_OUTCOMES,
    AttemptRow,
    ClaimLost,
    InboundRow,
    NumberBlocked,
    Store,
    StoredLead,
    StoreError,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from dialer.store.postgres import PgStore

__all__ = [
    "INBOUND_OUTCOMES",
    "SCHEMA_VERSION",
    "AnyStore",
    "AttemptRow",
    "ClaimLost",
    "InboundRow",
    "NumberBlocked",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredLead",
    "not_a_store",
    "open_store",
]

# Either backend, for annotations (PgStore is imported only when a postgresql:// store is opened).
AnyStore: TypeAlias = "Store | PgStore"


def open_store(location: str | Path, **options: Any) -> AnyStore:
    """The store at ``location``: ``postgresql://...`` (or ``postgres://``) opens a :class:`PgStore`;
    ``sqlite:///path`` or a bare path (or ``:memory:``) the embedded SQLite :class:`Store`, exactly as
    ``Store(path)`` would. ``options`` go to the store's constructor (``synchronous``, ``pool_size``, ...).

    A PostgreSQL password belongs in ``PGPASSWORD`` or a password file (``~/.pgpass``, ``PGPASSFILE``), not in the
    URL: see :mod:`dialer.store.postgres`.
    """
    if isinstance(location, Path):
        return Store(location, **options)
    scheme = location.split(":", 1)[0].lower() if "://" in location else ""
    if scheme in ("postgresql", "postgres"):
        from dialer.store.postgres import PgStore

        return PgStore(location, **options)
    if scheme == "sqlite":
        path = location[len("sqlite://") :]
        if not path.startswith("/") or path == "/":
            raise StoreError(f"a sqlite store URL is sqlite:///relative/or/absolute/path, not {location!r}")
        # sqlite:///x.db names x.db (relative), sqlite:////abs/x.db an absolute path, as SQLAlchemy reads them.
        return Store(path[1:], **options)
    if scheme:
        raise StoreError(f"unknown store URL scheme {scheme!r}: use a path, sqlite:///path or postgresql://...")
    return Store(location, **options)


def not_a_store(path: Path) -> str | None:
    """Why ``path`` is not an existing SQLite campaign store (``None`` when it is), found read-only.

    Why: opening a file as a store creates the dialer's tables in it. A command that only reads or prunes a
    store (a report, an audit, a purge) must not make one, or an empty file (``touch``), another program's SQLite
    database or a mistyped path would silently gain the tables and be reported as holding nothing.
    """
    import sqlite3

    if path.is_dir():
        return f"{path} is a directory, not a campaign store (the .sqlite file in it)"
    if not path.is_file():
        return f"{path}: no such file"
    if path.stat().st_size == 0:
        return f"{path} is empty: not a campaign store"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'campaigns'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"{path} is not a campaign store: {exc}"
    if found is None:
        return f"{path} is not a campaign store: an SQLite database without the dialer's tables"
    return None
