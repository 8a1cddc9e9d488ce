"""The PostgreSQL store (issue 17): the location factory, its schema, credentials kept out of sight, transactions
equal to SQLite's, and two dispatchers' stores racing for one campaign's leads on a real server."""

from __future__ import annotations

import logging
import math
import struct
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pg_server import PgServer

from dialer.store import SCHEMA_VERSION, NumberBlocked, Store, StoredLead, StoreError, open_store
from dialer.store.postgres import PgStore, redact


def test_open_store_picks_the_backend_from_the_location(tmp_path: Path, pg_url: str) -> None:
    with open_store(tmp_path / "a.sqlite") as a, open_store(str(tmp_path / "b.sqlite")) as b:
        assert isinstance(a, Store) and isinstance(b, Store)
        assert a.path == str(tmp_path / "a.sqlite")
    with open_store(f"sqlite:///{tmp_path}/c.sqlite") as c:
        assert isinstance(c, Store) and c.path == f"{tmp_path}/c.sqlite"
    with open_store(pg_url) as pg:
        assert isinstance(pg, PgStore) and pg.schema_version == SCHEMA_VERSION
    with pytest.raises(StoreError, match="unknown store URL scheme"):
        open_store("mysql://x/y")


def test_schema_is_versioned_and_a_newer_one_refused(pg_url: str) -> None:
    import psycopg

    with PgStore(pg_url) as store:
        assert store.schema_version == SCHEMA_VERSION
    with PgStore(pg_url) as again:  # reopening applies nothing twice
        assert again.schema_version == SCHEMA_VERSION
    with psycopg.connect(pg_url, autocommit=True) as raw:
        versions = [r[0] for r in raw.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        tables = {r[0] for r in raw.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"campaigns", "leads", "attempts", "opt_outs", "number_lockouts", "lead_consents"} <= tables
        raw.execute("INSERT INTO schema_migrations VALUES (%s, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer"):
        PgStore(pg_url)


def test_the_password_never_shows(postgres: PgServer, caplog: pytest.LogCaptureFixture) -> None:
    assert redact("postgresql://u:s3cret@h:5/db?sslmode=require") == "postgresql://u:***@h:5/db?sslmode=require"
    assert "s3cret" not in redact("postgresql://u@h/db?password=s3cret")
    assert (
        redact("postgresql://h/db?sslmode=require&password=s3cret") == "postgresql://h/db?sslmode=require&password=***"
    )
    # Without a password the URL is shown as given (a socket directory was printed as postgresql:/x?host=%2F...).
    assert redact("postgresql:///x?host=/run/postgresql") == "postgresql:///x?host=/run/postgresql"
    url = f"postgresql://nobody:s3cret@127.0.0.1:{postgres.port}/no_such_db"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError) as refused:
        PgStore(url, timeout=1.0)
    assert "s3cret" not in str(refused.value) and "nobody:***@" in str(refused.value)
    assert "s3cret" not in caplog.text
    with PgStore(postgres.url()) as store:
        assert "s3cret" not in repr(store)


def _campaign(reopen: Callable[..., Any], n: int) -> Any:
    store = reopen()
    store.ensure_campaign("c")
    with store.transaction():
        for i in range(n):
            store.insert_lead(StoredLead("c", f"L{i}", f"+1202555{i:04d}"))
    return store


def test_transactions_roll_back_as_a_whole_and_nest(reopen: Callable[..., Any]) -> None:
    store = _campaign(reopen, 2)
    with pytest.raises(RuntimeError), store.transaction():
        store.claim("c", "L0", 1.0)
        with store.transaction():  # joins the outer one
            store.add_opt_out("+12025550999")
        raise RuntimeError("boom")
    assert store.open_attempts("c") == [] and store.opt_outs() == []
    with store.transaction():
        with pytest.raises(StoreError, match="conflicts"):  # a refused lead does not spoil the transaction
            store.insert_lead(StoredLead("c", "X", "+12025550000"))
        store.claim("c", "L1", 2.0)
    assert [a.lead_id for a in store.open_attempts("c")] == ["L1"]
    assert reopen().open_attempts("c")[0].lead_id == "L1"  # committed: another connection sees it


def test_every_method_agrees_on_both_backends(reopen: Callable[..., Any]) -> None:
    store = reopen()
    store.ensure_campaign("c", {"cap": 0.03})
    store.ensure_campaign("c")  # exists: settings kept
    assert store.campaign_settings("c") == {"cap": 0.03} and store.campaigns() == ["c"]
    with pytest.raises(StoreError, match="unknown campaign"):
        store.campaign_settings("nope")
    for i in range(3):
        store.insert_lead(StoredLead("c", f"L{i}", f"+1202555010{i}", fields={"i": str(i)}, priority=i))
    assert [x.seq for x in store.leads("c")] == [1, 2, 3]
    found = store.find_lead("c", phone="+12025550101")
    assert found is not None and found.lead_id == "L1" and store.find_lead("c", lead_id="zz") is None
    with pytest.raises(StoreError, match="exactly one"):
        store.find_lead("c")
    store.update_lead("c", "L0", outcome_counts={"busy": 2}, callback_at=7.5)
    assert store.lead("c", "L0").outcome_counts == {"busy": 2} and store.lead("c", "L0").callback_at == 7.5
    with pytest.raises(StoreError, match="unknown lead"):
        store.update_lead("c", "zz", status="done")
    assert store.claim("c", "L0", 10.0) == 1 and store.lead("c", "L0").callback_at is None
    store.unclaim("c", "L0", 1)  # never left the dialer: as if never claimed
    lead = store.lead("c", "L0")
    assert (lead.status, lead.attempts, lead.pass_attempts, store.attempts("c")) == ("ready", 0, 0, [])
    with pytest.raises(StoreError, match="not open"):
        store.unclaim("c", "L0", 1)
    for i, t in ((0, 10.0), (1, 20.0), (2, 30.0)):
        store.claim("c", f"L{i}", t)
    result = {"outcome": "machine", "ended_at": 40.0, "message_played": True, "amd_seconds": 1.25, "call_id": 2**40}
    store.complete("c", "L0", 1, result, {"status": "ready", "next_at": 99.0})
    store.complete("c", "L1", 1, {"outcome": "abandoned", "abandoned": True}, {"lockout_until": 500.0}, state="done")
    store.set_attempt_disposition("c", "L0", 1, "sale")
    with pytest.raises(StoreError, match="no attempt"):
        store.set_attempt_disposition("c", "L0", 9, "sale")
    last = store.last_attempt("c", "L0")
    assert last is not None and (last.disposition, last.message_played, last.amd_seconds) == ("sale", True, 1.25)
    assert last.call_id == 2**40 and store.last_attempt("c", "zz") is None
    assert store.number_lockout("+12025550101") == 500.0 and store.number_lockout("+12025550100") == 0.0
    assert store.number_block("+12025550101", 499.0) == ("abandonment lockout", 500.0)
    assert store.number_block("+12025550101", 500.0) is None
    assert store.count_leads("c") == {"ready": 1, "dialing": 2}  # complete() moves the lead only as told
    purged = store.purge_attempts(25.0, campaign_id="c")  # closed and before 25: L0 and L1, not the open L2
    assert [(a.lead_id, a.state) for a in purged] == [("L0", "done"), ("L1", "done")]
    assert [a.lead_id for a in store.attempts("c")] == ["L2"] and store.purge_attempts(1e9) == []


def test_number_protections_reach_the_other_store_at_its_next_claim(reopen: Callable[..., Any]) -> None:
    a, b = reopen(), reopen()
    for store, campaign in ((a, "a"), (b, "b")):
        store.ensure_campaign(campaign)
        store.insert_lead(StoredLead(campaign, "L1", "+12025550101"))
        store.insert_lead(StoredLead(campaign, "L2", "+12025550102"))
    a.add_opt_out("+12025550101", campaign_id="a", source="keypress")
    with pytest.raises(NumberBlocked) as blocked:
        b.claim("b", "L1", 10.0)
    assert blocked.value.reason == "opted out"
    a.claim("a", "L2", 10.0)
    a.complete("a", "L2", 1, {"outcome": "abandoned", "abandoned": True}, {"status": "ready", "lockout_until": 5000.0})
    with pytest.raises(NumberBlocked) as locked:
        b.claim("b", "L2", 20.0)
    assert (locked.value.reason, locked.value.until) == ("abandonment lockout", 5000.0)
    assert b.claim("b", "L2", 5001.0) == 1
    assert b.open_attempts("b")[0].lead_id == "L2" and b.attempts("b", lead_id="L1") == []


def test_two_dispatchers_racing_never_claim_one_lead_twice(pg_url: str) -> None:
    """Two stores (two pools, as two dispatcher processes would have) claim from one campaign in the same order, as
    fast as they can: every lead is claimed exactly once, and each has one attempt."""
    n = 300
    with PgStore(pg_url) as setup:
        setup.ensure_campaign("c")
        with setup.transaction():
            for i in range(n):
                setup.insert_lead(StoredLead("c", f"L{i}", f"+1202555{i:04d}"))
    claimed: dict[str, list[str]] = {"one": [], "two": []}
    refused = {"one": 0, "two": 0}
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def dispatcher(name: str) -> None:
        try:
            with PgStore(pg_url, pool_size=1) as store:
                start.wait()
                while page := store.due_leads("c", 100.0, 20):
                    for lead in page:
                        try:
                            assert store.claim("c", lead.lead_id, 100.0) == 1
                        except StoreError:
                            refused[name] += 1  # the other one had it
                            continue
                        claimed[name].append(lead.lead_id)
                        time.sleep(0.002)  # as a dispatcher hands the dial on: the other gets its turn under load
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=dispatcher, args=(name,)) for name in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    every = claimed["one"] + claimed["two"]
    assert len(every) == len(set(every)) == n  # 0 duplicates, none missed
    assert claimed["one"] and claimed["two"]  # both really took part
    with PgStore(pg_url) as check:
        attempts = check.attempts("c")
        assert len(attempts) == n and {a.attempt_no for a in attempts} == {1}
        assert check.count_leads("c") == {"dialing": n}


def _campaign_file(tmp_path: Path, store: str) -> Path:
    with wave.open(str(tmp_path / "abandon.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 10))) for i in range(8000)))
    (tmp_path / "leads.csv").write_text("lead_id,phone\nx,+12127362001\ny,+12127362002\n", encoding="utf-8")
    path = tmp_path / "spring.toml"
    path.write_text(
        f"""
[campaign]
abandon_message = "abandon.wav"
purpose = "survey"
store = "{store}"

[leads]
file = "leads.csv"

[dnc]
registry_required = false

[trunk]
caller_id = "+12127362000"

[agents]
alice = "sip:alice@127.0.0.1:5062"
""",
        encoding="utf-8",
    )
    return path


def test_the_campaign_file_names_a_postgresql_store_without_its_password(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from dialer.cli import main
    from dialer.errors import ConfigError
    from dialer.live.campaign import LiveCampaign, load_campaign

    config = load_campaign(_campaign_file(tmp_path, pg_url))
    assert config.store_url == pg_url and config.store == tmp_path / "spring.sqlite"
    campaign = LiveCampaign.open(config)
    try:
        assert isinstance(campaign.store, PgStore) and campaign.imported.accepted == 2
        assert campaign.evidence_path == tmp_path / "spring.evidence.jsonl"  # the log stays beside the file
        assert campaign.evidence_path.exists()
    finally:
        campaign.close()
    assert not (tmp_path / "spring.sqlite").exists()  # no SQLite store was made beside it
    with PgStore(pg_url) as store:
        assert store.campaigns() == ["spring"] and store.count_leads("spring") == {"ready": 2}
    assert main(["report", "compliance", pg_url]) == 0  # the ledger report reads the shared store
    assert "Abandonment ledger for campaign 'spring'" in capsys.readouterr().out

    with pytest.raises(ConfigError) as refused:
        load_campaign(_campaign_file(tmp_path, pg_url.replace("postgres@", "postgres:s3cret@")))
    assert refused.value.key == "campaign.store" and "PGPASSWORD" in refused.value.message
    assert "s3cret" not in refused.value.message
    with pytest.raises(ConfigError, match="scheme"):
        load_campaign(_campaign_file(tmp_path, "mysql://h/db"))
    assert load_campaign(_campaign_file(tmp_path, "sqlite:///other.sqlite")).store == tmp_path / "other.sqlite"
    assert load_campaign(_campaign_file(tmp_path, "plain.sqlite")).store == tmp_path / "plain.sqlite"
