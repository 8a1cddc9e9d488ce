"""Durable storage of campaigns, leads, attempts (the abandonment ledger) and opt-outs.

The default is an embedded SQLite database in WAL mode (:class:`Store`); nothing else in the library talks SQL.
"""

from dialer.store.schema import SCHEMA_VERSION
from dialer.store.sqlite import AttemptRow, NumberBlocked, Store, StoredLead, StoreError

__all__ = ["SCHEMA_VERSION", "AttemptRow", "NumberBlocked", "Store", "StoreError", "StoredLead"]
