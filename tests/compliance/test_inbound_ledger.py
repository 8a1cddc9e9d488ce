"""Inbound calls in the store's ledger (schema 7), on both backends.

Before, an inbound caller was written only to the evidence log: ``dialer report compliance`` and the audit export
knew nothing of them, and ``dialer purge`` left their numbers wherever they were. Now each finished inbound call
(answered, abandoned, or blocked before queueing) is a row of ``inbound_calls``, written through the campaign's
outage-tolerant path; the report prints (and ``--json`` carries) the inbound figures, the audit export writes
``inbound.csv`` beside the log's entries, and the purge removes old inbound rows as it removes attempts.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from store_wide_worker import always_open

from dialer.campaign.source import CampaignLeads
from dialer.cli import main
from dialer.compliance import audit, ledger
from dialer.compliance.dnc import DoNotCall
from dialer.compliance.evidence import EvidenceLog, verify
from dialer.engine.records import InboundOutcome, InboundRecord
from dialer.store import SCHEMA_VERSION, InboundRow, StoredLead, StoreError, StoreUnavailable, open_store
from dialer.store.schema import MIGRATIONS, PG_MIGRATIONS

DAY = 86400.0


def _row(call_id: str, arrived: float, outcome: str = "answered", **kw: Any) -> InboundRow:
    fields: dict[str, Any] = {
        "campaign_id": "c",
        "call_id": call_id,
        "arrived_at": arrived,
        "outcome": outcome,
        "wait": 0.0,
        "ended_at": arrived + 60,
        "service_level_seconds": 20.0,
        "caller": f"<sip:+1212736{len(call_id):04d}@carrier>",
        "owner": "host/1/ab",
    }
    fields.update(kw)
    return InboundRow(**fields)


def test_schema_7_keeps_inbound_rows_once_each(reopen: Callable[..., Any]) -> None:
    store = reopen()
    assert store.schema_version == SCHEMA_VERSION == 7
    store.ensure_campaign("c")
    t = 1_767_600_000.0
    rows = [
        _row("a", t, wait=3.5, answered_at=t + 3.5, agent_id="alice", agent_group="inbound", within_service_level=True),
        _row("b", t + 1, "abandoned", wait=42.0),
        _row("", t + 2, "blocked", reason="queue_full"),
        _row("b", t + 3, "blocked", reason="busy"),  # a refused duplicate INVITE: same Call-ID, its own row
    ]
    assert [store.add_inbound(r) for r in rows] == [True] * 4
    assert store.add_inbound(rows[0]) is False  # a retry that had committed: kept once
    assert store.inbound_calls("c") == rows
    assert store.inbound_calls("other") == []
    with pytest.raises(StoreError, match="outcome"):
        store.add_inbound(_row("z", t, "refused"))
    assert reopen().inbound_calls("c") == rows  # durable


def _v6(location: str) -> None:
    """A store as schema 6 left it, with a campaign, a lead and a finished attempt in it."""
    t = 1_767_600_000.0
    lead = ("c", "L1", "+12127362001", 0)
    attempt = ("c", "L1", 1, "+12127362001", "done", t, 7, "connected", t + 40, "host/1/ab")
    attempt_sql = (
        "INSERT INTO attempts (campaign_id, lead_id, attempt_no, phone, state, dialed_at, call_id, outcome, "
        "ended_at, owner) VALUES ({})"
    )
    if "://" not in location:
        db = sqlite3.connect(location, isolation_level=None)
        db.execute("BEGIN")
        for script in MIGRATIONS[:6]:
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute("PRAGMA user_version=6")
        db.execute("INSERT INTO campaigns (campaign_id, created_at) VALUES ('c', ?)", (t,))
        db.execute("INSERT INTO leads (campaign_id, lead_id, phone, seq) VALUES (?, ?, ?, ?)", lead)
        db.execute(attempt_sql.format(", ".join("?" * len(attempt))), attempt)
        db.execute("COMMIT")
        db.close()
        return
    import psycopg

    with psycopg.connect(location) as conn, conn.transaction():
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        for number, script in enumerate(PG_MIGRATIONS[:6], start=1):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement.encode())
            conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)", (number, t))
        conn.execute("INSERT INTO campaigns (campaign_id, created_at) VALUES ('c', %s)", (t,))
        conn.execute("INSERT INTO leads (campaign_id, lead_id, phone, seq) VALUES (%s, %s, %s, %s)", lead)
        conn.execute(attempt_sql.format(", ".join(["%s"] * len(attempt))).encode(), attempt)


def test_a_schema_6_store_is_migrated_and_keeps_its_data(store_location: str, reopen: Callable[..., Any]) -> None:
    _v6(store_location)
    store = reopen()
    assert store.schema_version == 7
    (a,) = store.attempts("c")
    assert (a.lead_id, a.attempt_no, a.state, a.call_id, a.outcome, a.owner) == (
        "L1",
        1,
        "done",
        7,
        "connected",
        "host/1/ab",
    )
    assert store.lead("c", "L1").phone == "+12127362001" and store.campaigns() == ["c"]
    assert store.inbound_calls("c") == []
    row = _row("x", 1_767_600_100.0)
    assert store.add_inbound(row) and reopen().inbound_calls("c") == [row]
    assert reopen().schema_version == 7  # nothing applied twice


def _leads(store: Any) -> CampaignLeads:
    store.ensure_campaign("c")
    store.insert_lead(StoredLead("c", "L1", "+12127362001"))
    return CampaignLeads(store, "c", dnc=DoNotCall(require_registry=False), windows=always_open())


def _record(iid: str, outcome: InboundOutcome, arrived: float, wait: float, **kw: Any) -> InboundRecord:
    answered = arrived + wait if outcome is InboundOutcome.ANSWERED else None
    return InboundRecord(iid, outcome, arrived, arrived + wait + 30, wait, answered_at=answered, **kw)


def test_the_campaign_writes_each_inbound_record_with_its_owner_and_flag(reopen: Callable[..., Any]) -> None:
    store = reopen()
    leads = _leads(store)
    t = time.time()
    leads.report_inbound(
        _record("in-1", InboundOutcome.ANSWERED, t, 12.0, agent_id="alice", group="blended"),
        caller="<sip:+12127360001@carrier>",
        service_level_seconds=20.0,
    )
    leads.report_inbound(_record("in-2", InboundOutcome.ANSWERED, t + 1, 25.0), service_level_seconds=20.0)
    leads.report_inbound(_record("in-3", InboundOutcome.ABANDONED, t + 2, 5.0), service_level_seconds=20.0)
    blocked = InboundRecord("in-4", InboundOutcome.BLOCKED, t + 3, t + 3, 0.0, reason="stopping", caller="x")
    leads.report_inbound(blocked, caller="x", service_level_seconds=20.0)
    rows = store.inbound_calls("c")
    assert [(r.call_id, r.outcome, r.within_service_level) for r in rows] == [
        ("in-1", "answered", True),
        ("in-2", "answered", False),  # 25 s > T
        ("in-3", "abandoned", False),
        ("in-4", "blocked", False),
    ]
    first = rows[0]
    assert (first.caller, first.agent_id, first.agent_group, first.wait) == (
        "<sip:+12127360001@carrier>",
        "alice",
        "blended",
        12.0,
    )
    assert first.answered_at == pytest.approx(t + 12) and first.owner == leads.owner
    assert rows[3].reason == "stopping" and rows[3].wait == 0.0
    figures = ledger.inbound_figures(rows)
    assert figures is not None
    assert (figures.callers, figures.answered, figures.abandoned, figures.blocked) == (4, 2, 1, 1)
    assert figures.service_level == pytest.approx(1 / 3)  # blocked callers never queued: not in it
    assert figures.asa == pytest.approx(18.5) and figures.blocking_share == pytest.approx(0.25)


def test_an_inbound_record_rides_out_an_outage_and_is_written_once(reopen: Callable[..., Any]) -> None:
    """The store goes away as the record is written, once after committing it: the write is kept, retried in
    order when the store answers, and the retry of the committed one is harmless."""
    store = reopen()
    leads = _leads(store)
    real = store.add_inbound
    failures = ["before", "after"]

    def flaky(row: InboundRow) -> bool:
        if failures:
            when = failures.pop(0)
            if when == "after":
                real(row)
            raise StoreUnavailable(f"store unavailable ({when} the commit)")
        return real(row)

    store.add_inbound = flaky
    t = time.time()
    leads.report_inbound(_record("in-1", InboundOutcome.ANSWERED, t, 1.0), service_level_seconds=20.0)
    assert leads.pending_writes == 1 and leads.outage is not None
    leads.report_inbound(_record("in-2", InboundOutcome.ABANDONED, t + 1, 9.0), service_level_seconds=20.0)
    assert leads.pending_writes == 2  # in order behind the first
    assert not leads.catch_up(force=True)  # "after": in-1 committed, the answer lost
    assert leads.catch_up(force=True) and leads.pending_writes == 0
    assert [r.call_id for r in store.inbound_calls("c")] == ["in-1", "in-2"]


def _store_with_inbound(location: str, t: float) -> None:
    store = open_store(location)
    try:
        store.ensure_campaign("c")
        for r in (
            _row("a", t, wait=4.0, answered_at=t + 4, agent_id="alice", within_service_level=True),
            _row("b", t + 10, wait=30.0, answered_at=t + 40, agent_id="alice"),
            _row("c", t + 20, "abandoned", wait=12.0),
            _row("", t + 30, "blocked", reason="queue_full"),
        ):
            store.add_inbound(r)
    finally:
        store.close()


def test_report_compliance_prints_and_json_carries_the_inbound_figures(
    store_location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    t = time.time() - 3600
    _store_with_inbound(store_location, t)
    assert main(["report", "compliance", store_location]) == 0
    out = capsys.readouterr().out
    assert (
        "inbound: 4 callers: answered 2, abandoned 1, blocked 1 (queue_full 1); service level 33% within 20 s; "
        "ASA 17.0 s" in out
    ), out
    assert main(["report", "compliance", store_location, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    inbound = doc["inbound"]
    assert (inbound["callers"], inbound["answered"], inbound["abandoned"], inbound["blocked"]) == (4, 2, 1, 1)
    assert inbound["service_level"] == pytest.approx(1 / 3) and inbound["asa"] == pytest.approx(17.0)
    assert inbound["service_level_seconds"] == 20.0 and inbound["blocked_by"] == {"queue_full": 1}
    assert doc["campaign"] == "c" and doc["over_cap"] is False and set(doc["regimes"]) == {"us", "uk", "ca"}


def test_a_campaign_without_inbound_calls_reports_as_before(
    store_location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(store_location)
    store.ensure_campaign("c")
    store.close()
    assert main(["report", "compliance", store_location]) == 0
    assert "inbound" not in capsys.readouterr().out
    assert main(["report", "compliance", store_location, "--json"]) == 0
    assert "inbound" not in json.loads(capsys.readouterr().out)


def _log(path: Path, t: float, ids: list[tuple[str, float, str]]) -> None:
    with EvidenceLog(path) as log:
        for iid, arrived, outcome in ids:
            log.append(
                "inbound",
                {"campaign_id": "c", "inbound_id": iid, "arrived_at": arrived, "outcome": outcome, "caller": "x"},
                t=arrived + 60,
            )


def test_the_audit_export_writes_inbound_csv_beside_the_log(store_location: str, tmp_path: Path) -> None:
    t = time.time() - 3600
    _store_with_inbound(store_location, t)
    log = tmp_path / "inbound.evidence.jsonl"
    _log(log, t, [("a", t, "answered"), ("b", t + 10, "answered"), ("c", t + 20, "abandoned"), ("", t + 30, "blocked"),
                  ("gone", t + 40, "answered")])  # fmt: skip
    found = audit.collect(store_location, evidence=log)
    assert found.inbound_calls == 4 and len(found.inbound_matched) == 4
    assert [e.data["inbound_id"] for e in found.inbound_unexplained] == ["gone"]
    files = audit.write(found, tmp_path / "audit")
    assert "inbound.csv" in files
    with open(files["inbound.csv"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["call_id"], r["outcome"], r["logged_outcome"], r["verified"]) for r in rows] == [
        ("a", "answered", "answered", "1"),
        ("b", "answered", "answered", "1"),
        ("c", "abandoned", "abandoned", "1"),
        ("", "blocked", "blocked", "1"),
        ("gone", "", "answered", "1"),  # in the log only
    ]
    text = files["summary.md"].read_text(encoding="utf-8")
    assert "## Inbound callers" in text and "4 callers: answered 2, abandoned 1, blocked 1" in text
    assert "1 inbound entr(y/ies) in the log have no store row" in text


def test_purge_removes_old_inbound_rows_like_attempts(store_location: str, tmp_path: Path) -> None:
    now = time.time()
    old = now - 40 * 30 * DAY  # older than the 36 months kept
    _store_with_inbound(store_location, old)
    store = open_store(store_location)
    store.add_inbound(_row("new", now - DAY))
    store.close()
    log = tmp_path / "purge.evidence.jsonl"
    _log(log, old, [("a", old, "answered")])
    dry = audit.purge(store_location, evidence=log, now=now, dry_run=True)
    assert (dry.removed, dry.inbound_removed, dry.entry) == (0, 4, None)
    done = audit.purge(store_location, evidence=log, now=now)
    assert done.inbound_removed == 4 and done.inbound_campaigns["c"]["calls"] == 4
    assert done.entry is not None and done.entry["data"]["inbound_removed"] == 4 and verify(log).ok
    store = open_store(store_location)
    try:
        assert [r.call_id for r in store.inbound_calls("c")] == ["new"]
    finally:
        store.close()
    found = audit.collect(store_location, evidence=log)  # the old entry is explained by the recorded purge
    assert found.inbound_purged == 1 and not found.inbound_unexplained
    again = audit.purge(store_location, evidence=log, now=now)
    assert again.inbound_removed == 0 and again.entry is None  # nothing left: nothing appended
