"""The store: schema versioning, WAL, claim/complete semantics and durability across reopen.

The tests taking ``reopen`` run on both backends: the embedded SQLite store and PostgreSQL
(tests/compliance/conftest.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dialer.store import SCHEMA_VERSION, Store, StoredLead, StoreError


def _store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "d.sqlite")
    store.ensure_campaign("c")
    return store


def _opened(reopen: Callable[..., Any]) -> Any:
    store = reopen()
    store.ensure_campaign("c")
    return store


def test_new_store_is_wal_and_current_schema(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.schema_version == SCHEMA_VERSION
    store.close()
    raw = sqlite3.connect(tmp_path / "d.sqlite")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"campaigns", "leads", "attempts", "opt_outs"} <= tables


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    _store(tmp_path).close()
    raw = sqlite3.connect(tmp_path / "d.sqlite")
    raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        Store(tmp_path / "d.sqlite")


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable dialer store"):
        Store(path)


def test_claim_opens_one_attempt_and_refuses_a_second_claim(reopen: Callable[..., Any]) -> None:
    store = _opened(reopen)
    store.insert_lead(StoredLead("c", "L1", "+12025550101"))
    assert store.claim("c", "L1", 10.0) == 1
    with pytest.raises(StoreError, match="dialing"):
        store.claim("c", "L1", 11.0)
    [open_] = store.open_attempts("c")
    assert (open_.lead_id, open_.attempt_no, open_.state) == ("L1", 1, "dialing")
    store.complete("c", "L1", 1, {"outcome": "busy", "ended_at": 20.0}, {"status": "ready", "next_at": 99.0})
    assert store.open_attempts("c") == []
    with pytest.raises(StoreError, match="not open"):
        store.complete("c", "L1", 1, {"outcome": "busy"}, {})
    assert store.claim("c", "L1", 100.0) == 2


def test_complete_is_atomic(reopen: Callable[..., Any]) -> None:
    store = _opened(reopen)
    store.insert_lead(StoredLead("c", "L1", "+12025550101"))
    store.claim("c", "L1", 10.0)
    with pytest.raises(StoreError, match="cannot update"):
        store.complete("c", "L1", 1, {"outcome": "busy"}, {"phone": "+1999"})
    # the attempt update was rolled back with the failing lead update
    assert [a.state for a in store.attempts("c")] == ["dialing"]


def test_duplicate_phone_in_campaign_is_refused(reopen: Callable[..., Any]) -> None:
    store = _opened(reopen)
    store.insert_lead(StoredLead("c", "L1", "+12025550101"))
    with pytest.raises(StoreError, match="conflicts"):
        store.insert_lead(StoredLead("c", "L2", "+12025550101"))


def test_due_leads_order_and_paging(reopen: Callable[..., Any]) -> None:
    store = _opened(reopen)
    for i in range(5):
        store.insert_lead(StoredLead("c", f"L{i}", f"+1202555010{i}", priority=1 if i == 3 else 0))
    store.update_lead("c", "L4", callback_at=5.0, next_at=5.0)
    store.update_lead("c", "L2", lockout_until=1000.0)
    first = store.due_leads("c", 10.0, 2)
    assert [x.lead_id for x in first] == ["L4", "L3"]
    last = first[-1]
    rest = store.due_leads("c", 10.0, 10, ((last.callback_at is None), -last.priority, last.seq))
    assert [x.lead_id for x in rest] == ["L0", "L1"]


def test_records_survive_reopen(reopen: Callable[..., Any]) -> None:
    store = _opened(reopen)
    store.insert_lead(StoredLead("c", "L1", "+12025550101", fields={"k": "v"}))
    store.add_opt_out("+12025550199", campaign_id="c", t=1.0, source="call")
    store.claim("c", "L1", 10.0)
    store.close()
    again = reopen()
    assert again.opt_outs() == ["+12025550199"]
    assert again.lead("c", "L1").fields == {"k": "v"}
    assert len(again.open_attempts("c")) == 1
