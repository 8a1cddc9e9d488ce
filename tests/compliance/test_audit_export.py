"""The audit export and the retention purge (issue 13, item 5).

A store and its evidence log are built directly (attempts through the Store API, entries through EvidenceLog, with
the fields ``LiveCampaign.evidence`` writes), so each case states exactly which calls it holds.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dialer.cli import main
from dialer.compliance import audit, ledger
from dialer.compliance.evidence import EvidenceLog, entries, verify
from dialer.errors import ConfigError
from dialer.store import Store, StoredLead, open_store

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
CALLER_ID = "+12125550123"


@dataclass
class Call:
    """One call to build: its outcome, measured wait, ring time; ``logged`` False leaves it out of the log."""

    lead: str
    outcome: str
    wait: float | None = None
    message: bool = False
    ring: float | None = 6.0
    amd: str | None = None
    disposition: str | None = None
    state: str = "done"
    logged: bool = True
    caller_id: str = CALLER_ID
    at: float = 0.0  # seconds after T0


def _build(tmp: Path, calls: list[Call], *, campaign: str = "spring", t0: float = T0, url: str | None = None) -> Path:
    """The store ``spring.sqlite`` (or the PostgreSQL store at ``url``) and its log ``spring.evidence.jsonl``,
    holding ``calls``, two holds and one import record."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "spring.sqlite"
    with open_store(url or path) as store, EvidenceLog(audit.evidence_path(path), fsync=False) as log:
        store.ensure_campaign(campaign)
        log.append("import", {"campaign_id": campaign, "source": "leads.csv", "rows": 10, "accepted": 9,
                              "rejected": 1, "rejects": "leads.rejects.csv"}, t=t0 - 60)  # fmt: skip
        for i, c in enumerate(calls, start=1):
            placed = t0 + c.at + i * 30
            store.insert_lead(StoredLead(campaign, c.lead, f"+1202555{i:04d}"))
            attempt = store.claim(campaign, c.lead, placed)
            if c.state == "interrupted":
                store.complete(campaign, c.lead, attempt, {"outcome": "interrupted"}, {"status": "ready"},
                               state="interrupted")  # fmt: skip
                continue
            ringing = placed + 1.0
            live = c.outcome in ("connected", "abandoned", "machine")
            answered = ringing + (c.ring or 0.0) if live else None
            ended = (answered + 60.0) if answered is not None else ringing + (c.ring or 0.0)
            connected = answered + c.wait if answered and c.wait is not None and c.outcome == "connected" else None
            message = answered + c.wait if answered and c.wait is not None and c.message else None
            result: dict[str, Any] = {
                "call_id": i,
                "outcome": c.outcome,
                "ended_at": ended,
                "answered_at": answered,
                "connected_at": connected,
                "message_at": message,
                "wait": c.wait,
                "abandoned": c.outcome == "abandoned",
                "placed_at": placed,
                "ringing_at": ringing if c.ring is not None else None,
                "message_played": True if message else None,
                "amd_verdict": c.amd,
            }
            store.complete(campaign, c.lead, attempt, result, {"status": "done"})
            if c.disposition:
                store.set_attempt_disposition(campaign, c.lead, attempt, c.disposition)
            if not c.logged:
                continue
            ring_end = answered if answered is not None else ended
            log.append("call", {
                "campaign_id": campaign, "call_id": i, "lead_id": c.lead, "phone": f"+1202555{i:04d}",
                "caller_id": c.caller_id, "sip_call_id": f"sip-{i}@dialer",
                "sip_status": 200 if live else 487, "placed": True, "placed_at": placed,
                "ringing_at": result["ringing_at"],
                "ring_seconds": None if c.ring is None else round(ring_end - ringing, 3),
                "picked_up_at": None, "answered_at": answered, "amd_verdict": c.amd, "amd_seconds": None,
                "connected_at": connected, "agent_id": "A1" if connected else None, "message_at": message,
                "message_played": result["message_played"], "wait": c.wait, "outcome": c.outcome,
                "abandoned": c.outcome == "abandoned", "bridge_failed": False, "agent_lost": False,
                "customer_hung_up": False, "ended_at": ended,
            }, t=ended)  # fmt: skip
        for lead, rule, source, version in (
            ("H1", "do-not-call: national registry", "/data/dnc", "2026-02-20, 253000000 numbers"),
            ("H2", "calling hours: US", "calling-hours rules", "holidays 0.60"),
        ):
            log.append("hold", {"campaign_id": campaign, "lead_id": lead, "phone": "+12025559999", "reason": rule,
                                "rule": rule, "source": source, "version": version, "until": None,
                                "final": True}, t=t0)  # fmt: skip
    return path


MIXED = [
    Call("L1", "connected", wait=0.5, disposition="sale"),
    Call("L2", "abandoned", wait=1.5, message=True),
    Call("L3", "connected", wait=3.0),  # late: abandoned by the measured wait
    Call("L4", "no_answer", ring=20.0),
    Call("L5", "no_answer", ring=16.2),
    Call("L6", "machine", amd="machine"),
    Call("L7", "connected", state="interrupted", logged=False),
    Call("L8", "connected", wait=0.8, disposition="callback"),
]
CLEAN = [Call(f"C{i}", "connected", wait=0.4) for i in range(40)] + [Call("N1", "no_answer", ring=18.0)]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _export(store: Path, out: Path, *extra: str) -> int:
    return main(["report", "compliance", str(store), "--audit", str(out), *extra])


# -- the export ------------------------------------------------------------------------------------------------


def test_the_export_writes_every_file_with_the_right_rows(tmp_path: Path) -> None:
    store = _build(tmp_path, MIXED)
    status = _export(store, tmp_path / "audit")
    assert status == audit.EXIT_OVER_CAP  # 2 of 5 live answers abandoned: the ledger's own alert still holds
    out = tmp_path / "audit"
    assert {p.name for p in out.iterdir()} == {"calls.csv", "holds.csv", "imports.csv", "windows.csv", "summary.md"}

    calls = _rows(out / "calls.csv")
    assert [r["lead_id"] for r in calls] == ["L1", "L2", "L3", "L4", "L5", "L6", "L8"]  # L7 was cut by a crash
    by_lead = {r["lead_id"]: r for r in calls}
    assert by_lead["L1"]["disposition"] == "sale" and by_lead["L8"]["disposition"] == "callback"
    assert by_lead["L4"]["sip_status"] == "487" and by_lead["L4"]["ring_seconds"] == "20.0"
    assert by_lead["L2"]["message_played"] == "1" and by_lead["L1"]["caller_id"] == CALLER_ID
    assert all(r["verified"] == "1" and r["attempt_no"] == "1" for r in calls)
    assert set(audit.CALL_FIELDS) <= set(calls[0])  # every field of the entry is a column
    logged = [e for e in entries(store.with_name("spring.evidence.jsonl")) if e["kind"] == "call"]
    assert [r["hash"] for r in calls] == [e["hash"] for e in logged]

    holds = _rows(out / "holds.csv")
    assert [(h["lead_id"], h["rule"], h["source"], h["version"]) for h in holds] == [
        ("H1", "do-not-call: national registry", "/data/dnc", "2026-02-20, 253000000 numbers"),
        ("H2", "calling hours: US", "calling-hours rules", "holidays 0.60"),
    ]
    assert all(h["phone"] == "+12025559999" and h["time_utc"] for h in holds)
    imports = _rows(out / "imports.csv")
    assert len(imports) == 1 and imports[0]["rejects"] == "leads.rejects.csv" and imports[0]["rejected"] == "1"
    windows = _rows(out / "windows.csv")
    assert {w["regime"] for w in windows} == {"us", "uk", "ca"} and windows[0]["campaign_id"] == "spring"


def test_the_summary_names_the_head_and_says_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _build(tmp_path, CLEAN)
    assert _export(store, tmp_path / "audit") == audit.EXIT_OK
    verdict = verify(audit.evidence_path(store))
    text = (tmp_path / "audit" / "summary.md").read_text(encoding="utf-8")
    assert "## Evidence chain: OK" in text
    assert f"**HEAD: seq {verdict.head_seq}, hash `{verdict.head_hash}`**" in text
    assert f"head seq {verdict.head_seq}, hash `{verdict.head_hash}`" in text  # on the sign-off line too
    assert "Campaign(s): spring" in text and "Period covered: 2026-03-02" in text
    assert "No window is over its cap" in text and "Signature:" in text and "Date:" in text
    assert f"`{CALLER_ID}`: 41 call(s), a valid number" in text
    assert "BROKEN" not in text and "DO NOT SIGN" not in text
    assert "## Evidence chain: OK" in capsys.readouterr().out  # the summary goes to standard output too


@pytest.mark.parametrize("tamper", ["edit", "delete", "garbage"])
def test_a_tampered_log_says_broken_and_exits_non_zero(
    tmp_path: Path, tamper: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _build(tmp_path, CLEAN)
    log = audit.evidence_path(store)
    lines = log.read_text(encoding="utf-8").splitlines()
    if tamper == "edit":  # a connected call's wait shortened after the fact
        lines[5] = lines[5].replace('"wait":0.4', '"wait":0.1')
    elif tamper == "delete":
        del lines[5]
    else:
        lines.insert(5, "not an entry")
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    status = _export(store, tmp_path / "audit")
    assert status == audit.EXIT_CHAIN
    text = (tmp_path / "audit" / "summary.md").read_text(encoding="utf-8")
    assert "## Evidence chain: BROKEN — DO NOT SIGN" in text and "DOES NOT VERIFY" in text
    assert "Evidence chain BROKEN" in text
    assert "evidence chain is BROKEN" in capsys.readouterr().err
    calls = _rows(tmp_path / "audit" / "calls.csv")
    assert calls[0]["verified"] == "1" and calls[-1]["verified"] == "0"  # exported, but not vouched for


def test_a_missing_log_is_not_signable(tmp_path: Path) -> None:
    store = _build(tmp_path, CLEAN)
    audit.evidence_path(store).unlink()
    assert _export(store, tmp_path / "audit") == audit.EXIT_CHAIN
    assert "Evidence chain: MISSING" in (tmp_path / "audit" / "summary.md").read_text(encoding="utf-8")


def test_abandoned_and_late_counts_match_the_ledger(tmp_path: Path) -> None:
    store = _build(tmp_path, MIXED)
    found = audit.collect(store)
    with Store(store) as s:
        attempts = s.attempts("spring")
    for regime in ("us", "uk", "ca"):
        assert found.ledgers["spring"][regime] == ledger.windows(attempts, regime)
    (us,) = found.ledgers["spring"]["us"]
    assert (us.live, us.abandoned, us.message_played, us.late_connects, us.interrupted) == (4, 2, 1, 1, 1)
    assert found.waits.connects_over + found.waits.connects_unmeasured == us.late_connects
    assert found.waits.max_to_agent == pytest.approx(3.0) and found.waits.max_to_message == pytest.approx(1.5)
    text = audit.summary(found)
    # window | placed | live | machine | abandoned | with message | without message | late | interrupted/open
    assert (
        f"| {us.label} | 8 | 4 | 1 | 2 | 1 | 1 | 1 | 1 | {us.rate:.2%} | {us.worst_rate:.2%} | **OVER CAP** |" in text
    )
    assert "Over 2 s: 1 (1 connects, 0 messages)" in text
    assert "Attempts cut by a crash or still open: 1" in text


def test_the_ring_time_rule_reports_the_shortest_ring_before_our_cancel(tmp_path: Path) -> None:
    found = audit.collect(_build(tmp_path, MIXED))
    assert (found.ring.cancelled, found.ring.under, found.ring.unmeasured) == (2, 0, 0)
    assert found.ring.shortest == pytest.approx(16.2) and "lead L5" in found.ring.shortest_call
    assert "Ring at least 15 s before giving up: PASS" in audit.summary(found)

    short = audit.collect(_build(tmp_path / "short", [*CLEAN, Call("Q1", "no_answer", ring=8.0)]))
    assert short.ring.under == 1 and short.ring.shortest == pytest.approx(8.0)
    assert "Ring at least 15 s before giving up: **FAIL**" in audit.summary(short)


def test_an_invalid_caller_id_is_shown_loudly(tmp_path: Path) -> None:
    found = audit.collect(_build(tmp_path, [*CLEAN, Call("X1", "connected", wait=0.3, caller_id="dialer")]))
    assert "dialer" in found.invalid_caller_ids
    assert "`dialer`: 1 call(s) — NOT VALID" in audit.summary(found)


def test_store_attempts_with_no_call_in_the_log_are_flagged(tmp_path: Path) -> None:
    found = audit.collect(_build(tmp_path, [*CLEAN, Call("Z1", "connected", wait=0.3, logged=False)]))
    assert [a.lead_id for a in found.attempts_without_call] == ["Z1"]
    assert "1 finished store attempt(s) have no call in the log" in audit.summary(found)


# -- retention -------------------------------------------------------------------------------------------------

MONTH = 30.5 * 86400


def _aged(tmp: Path, now: float) -> Path:
    """Calls 40 months old (past every retention period) and 2 months old (inside all of them)."""
    old = [Call(f"O{i}", "connected", wait=0.5) for i in range(5)]
    new = [Call(f"R{i}", "connected", wait=0.5, at=38 * MONTH) for i in range(3)]
    return _build(tmp, old + new, t0=now - 40 * MONTH)


def test_retention_refuses_to_keep_less_than_24_months(tmp_path: Path) -> None:
    now = time.time()
    store = _aged(tmp_path, now)
    with pytest.raises(ConfigError, match="24 months"):
        audit.purge(store, keep_months=23, now=now)
    assert main(["purge", str(store), "--keep-months", "18"]) == audit.EXIT_USAGE
    # a date inside the retention period is refused too: those records are still required
    assert main(["purge", str(store), "--before", dt.date.today().isoformat()]) == audit.EXIT_USAGE
    with Store(store) as s:
        assert len(s.attempts("spring")) == 8


def test_retention_purges_old_attempts_records_it_and_the_chain_still_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    store = _aged(tmp_path, now)
    log = audit.evidence_path(store)
    before_lines = log.read_text(encoding="utf-8").splitlines()

    assert main(["purge", str(store), "--dry-run"]) == audit.EXIT_OK
    assert "would remove 5 attempt(s)" in capsys.readouterr().out
    assert log.read_text(encoding="utf-8").splitlines() == before_lines

    assert main(["purge", str(store)]) == audit.EXIT_OK
    assert "removed 5 attempt(s)" in capsys.readouterr().out
    with Store(store) as s:
        assert sorted(a.lead_id for a in s.attempts("spring")) == ["R0", "R1", "R2"]
        assert len(s.leads("spring")) == 8  # leads (and their counters, lockouts) are kept
    after = log.read_text(encoding="utf-8").splitlines()
    assert after[: len(before_lines)] == before_lines  # no existing line touched
    (entry,) = [json.loads(line) for line in after[len(before_lines) :]]
    assert entry["kind"] == "purge" and entry["data"]["removed"] == 5 and entry["data"]["keep_months"] == 36
    assert entry["data"]["campaigns"]["spring"]["attempts"] == 5
    assert entry["data"]["before"] == pytest.approx(audit.months_before(now, 36), abs=120)
    verdict = verify(log)
    assert verdict.ok and verdict.head_seq == entry["seq"]

    # the audit afterwards: the log's old calls are explained by the purge, not reported as unexplained
    found = audit.collect(store)
    assert found.chain == "OK" and found.calls_purged == 5 and not found.calls_unexplained
    assert "Calls in the log whose store attempt a recorded purge removed: 5" in audit.summary(found)

    assert main(["purge", str(store)]) == audit.EXIT_OK  # nothing left to purge: nothing appended
    assert verify(log).head_seq == entry["seq"]


def test_the_audit_and_retention_run_on_a_shared_postgresql_store(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17: a PostgreSQL store has no file beside it, so the machine's evidence log is named; a campaign
    another machine ran on the same store (not in this log) is not audited as this log's."""
    now = time.time()
    old = [Call(f"O{i}", "connected", wait=0.5) for i in range(5)]
    new = [Call(f"R{i}", "connected", wait=0.5, at=38 * MONTH) for i in range(3)]
    log = audit.evidence_path(_build(tmp_path, old + new, t0=now - 40 * MONTH, url=pg_url))
    with open_store(pg_url) as store:  # another machine's campaign, its evidence on that machine
        store.ensure_campaign("autumn")
        store.insert_lead(StoredLead("autumn", "A1", "+12025550001"))
        attempt = store.claim("autumn", "A1", now - 60)
        store.complete("autumn", "A1", attempt, {"outcome": "no_answer", "ended_at": now - 30}, {"status": "done"})
    out = tmp_path / "audit"
    assert main(["report", "compliance", pg_url, "--audit", str(out)]) == audit.EXIT_USAGE
    assert "--evidence" in capsys.readouterr().err
    assert main(["report", "compliance", pg_url, "--audit", str(out), "--evidence", str(log)]) == audit.EXIT_OK
    summary = capsys.readouterr().out
    assert "# Compliance audit: postgresql://" in summary and "autumn" not in summary
    assert len(_rows(out / "calls.csv")) == 8

    assert main(["purge", pg_url]) == audit.EXIT_USAGE
    assert main(["purge", pg_url, "--evidence", str(log)]) == audit.EXIT_OK
    assert "removed 5 attempt(s)" in capsys.readouterr().out
    with open_store(pg_url) as store:
        assert sorted(a.lead_id for a in store.attempts("spring")) == ["R0", "R1", "R2"]
    entry = json.loads(log.read_text(encoding="utf-8").splitlines()[-1])
    assert entry["kind"] == "purge" and entry["data"]["store"].startswith("postgresql://") and verify(log).ok
    found = audit.collect(pg_url, evidence=log)
    assert found.chain == "OK" and found.calls_purged == 5 and not found.calls_unexplained


def test_retention_with_an_explicit_date_removes_only_what_is_before_it(tmp_path: Path) -> None:
    now = time.time()
    store = _aged(tmp_path, now)
    t0 = now - 40 * MONTH
    done = audit.purge(store, before=t0 + 75, now=now)  # the old calls were placed at t0 + 30, 60, 90, ...
    assert done.removed == 2 and done.campaigns["spring"]["attempts"] == 2
    with pytest.raises(ConfigError, match="still required"):  # keeping 48 months, t0 + 75 is inside the period
        audit.purge(store, before=t0 + 75, keep_months=48, now=now)
    assert verify(audit.evidence_path(store)).ok


def test_retention_refuses_a_broken_chain(tmp_path: Path) -> None:
    now = time.time()
    store = _aged(tmp_path, now)
    log = audit.evidence_path(store)
    lines = log.read_text(encoding="utf-8").splitlines()
    del lines[2]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["purge", str(store)]) == audit.EXIT_CHAIN
    with Store(store) as s:
        assert len(s.attempts("spring")) == 8
