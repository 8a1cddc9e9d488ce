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
