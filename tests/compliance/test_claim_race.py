"""Two dispatchers on one campaign, one store (issue 17, item 2): a lost claim race is the next lead, not a fault.

Before: when another dispatcher claimed a lead between this one's read of the page and its claim, the store raised
a plain ``StoreError`` ("lead is dialing, not ready") out of ``CampaignLeads.next_lead``; the engine takes a lead
source that raises as broken and stops dialing for good. A lead the other dispatcher had dialed and put back (a
busy retry) was claimed again on the stale read, its attempt cap judged on the old count. And PostgreSQL's claim
waited on the winner's row lock (``FOR UPDATE``) instead of moving on. Now the claim refuses with ``ClaimLost``
(the lead not ready, not due, or dialed since the claimer's read; on PostgreSQL also a row another claimer holds,
``SKIP LOCKED``) and the lead source moves on. On both backends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dialer.campaign.lifecycle import RetryPolicy, RetryRule
from dialer.campaign.source import CampaignLeads
from dialer.compliance.dnc import DoNotCall
from dialer.engine.records import CallRecord, Outcome
from dialer.store import ClaimLost, StoredLead

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from store_wide_worker import always_open  # noqa: E402


def _source(store: Any, **kw: Any) -> CampaignLeads:
    policy = RetryPolicy(max_attempts=2).with_rules(busy=RetryRule(0.0))
    return CampaignLeads(store, "c", dnc=DoNotCall(require_registry=False), windows=always_open(), policy=policy, **kw)


def _setup(reopen: Callable[..., Any], n: int = 3) -> Any:
    store = reopen()
    store.ensure_campaign("c")
    for i in range(n):
        store.insert_lead(StoredLead("c", f"l{i}", f"+1212736{2200 + i}"))
    return store


class Interleaved:
    """A store whose first page read lets another dispatcher act (``meanwhile``) before the reader claims."""

    def __init__(self, store: Any, meanwhile: Callable[[], None]) -> None:
        self._store = store
        self._meanwhile: Callable[[], None] | None = meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def due_leads(self, *args: Any, **kw: Any) -> Any:
        page = self._store.due_leads(*args, **kw)
        if self._meanwhile is not None:
            act, self._meanwhile = self._meanwhile, None
            act()
        return page


def test_a_lead_claimed_by_the_other_dispatcher_meanwhile_is_skipped(reopen: Callable[..., Any]) -> None:
    now = time.time()
    _setup(reopen)
    b = _source(reopen())
    got: list[str] = []
    a = _source(Interleaved(reopen(), lambda: got.append(b.next_lead(now).lead_id)))  # type: ignore[union-attr]
    lead = a.next_lead(now)  # no exception: b claimed l0 after a read it
    assert got == ["l0"] and lead is not None and lead.lead_id == "l1" and a.lost_claims == 1


def test_a_lead_dialed_and_put_back_meanwhile_is_not_claimed_on_the_stale_read(reopen: Callable[..., Any]) -> None:
    """b dials l0, busy, back to ready at once (retry 0 s): a's page still shows l0 with no attempts. A claim on
    that read would judge the attempt cap on the old count; it is lost instead, and a takes the next lead."""
    now = time.time()
    _setup(reopen)
    b = _source(reopen())

    def b_dials_and_puts_back() -> None:
        lead = b.next_lead(now)
        assert lead is not None
        b.report(CallRecord(1, lead, Outcome.BUSY, now, now + 2))

    a = _source(Interleaved(reopen(), b_dials_and_puts_back))
    lead = a.next_lead(now + 5)
    assert lead is not None and lead.lead_id == "l1" and a.lost_claims == 1
    store = reopen()
    assert store.lead("c", "l0").attempts == 1 and store.lead("c", "l0").status == "ready"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"status": "done"}, "not ready"),
        ({"next_at": 4e9}, "not due"),
    ],
)
def test_the_claim_itself_refuses_a_lead_that_changed(
    reopen: Callable[..., Any], change: dict[str, Any], why: str
) -> None:
    store = _setup(reopen, 1)
    store.update_lead("c", "l0", **change)
    with pytest.raises(ClaimLost, match=why):
        store.claim("c", "l0", time.time())
    assert store.attempts("c") == []


def test_a_claim_judged_on_an_old_attempt_count_is_lost(reopen: Callable[..., Any]) -> None:
    store = _setup(reopen, 1)
    now = time.time()
    attempt = store.claim("c", "l0", now, attempts=0)
    store.complete("c", "l0", attempt, {"outcome": "busy", "ended_at": now + 1}, {"status": "ready"})
    with pytest.raises(ClaimLost, match="dialed since"):
        store.claim("c", "l0", now + 2, attempts=0)
    assert store.claim("c", "l0", now + 2, attempts=1) == 2


def test_postgresql_skips_a_row_another_claimer_holds(pg_url: str) -> None:
    """While one transaction holds l0's row (a claim in progress elsewhere), a second claim does not wait for it:
    it is lost at once, and the lead source takes l1."""
    import psycopg

    from dialer.store import open_store

    store = open_store(pg_url)
    try:
        store.ensure_campaign("c")
        for i in range(2):
            store.insert_lead(StoredLead("c", f"l{i}", f"+1212736{2200 + i}"))
        with psycopg.connect(pg_url) as other, other.transaction():
            other.execute("SELECT 1 FROM leads WHERE campaign_id = 'c' AND lead_id = 'l0' FOR UPDATE")
            with pytest.raises(ClaimLost, match="another dispatcher"):
                store.claim("c", "l0", time.time())
            lead = _source(store).next_lead(time.time())
            assert lead is not None and lead.lead_id == "l1"
    finally:
        store.close()


def test_a_dispatcher_starting_on_the_campaign_leaves_a_running_ones_calls_alone(reopen: Callable[..., Any]) -> None:
    """Before: every CampaignLeads closed the campaign's open attempts as interrupted when it started, so a second
    dispatcher starting on a running campaign cut the first one's calls off from the ledger (its records then
    failed with "attempt is not open" and its engine stopped dialing). Now an attempt carries its dispatcher's
    owner id, held alive by a lock the process's death releases; only the attempts of owners that are gone are
    closed."""
    now = time.time()
    _setup(reopen)
    a_store = reopen()
    a = _source(a_store)
    up = a.next_lead(now)
    assert up is not None
    b = _source(reopen())  # b starts while a's call is up
    assert b.recovered == 0
    [open_] = reopen().open_attempts("c")
    assert open_.lead_id == up.lead_id and open_.owner == a.owner
    a.report(CallRecord(1, up, Outcome.CONNECTED, now, now + 20, answered_at=now + 5, connected_at=now + 5.2, wait=0.2))
    assert reopen().attempts("c", lead_id=up.lead_id)[0].state == "done"

    lost = a.next_lead(now)  # a's next call is up when a dies
    assert lost is not None
    a_store.close()
    c = _source(reopen())
    assert c.recovered == 1  # a is gone: its call's fate is unknown, closed as interrupted
    [row] = reopen().attempts("c", lead_id=lost.lead_id)
    assert row.state == "interrupted"


# -- two `dialer run` processes on ONE campaign, one PostgreSQL store, against SIPp ------------------------------


def test_two_dialer_runs_on_one_campaign_dial_each_lead_once(pg_url: str, tmp_path: Path) -> None:
    """Two dispatchers (two machines' worth: two campaign files, the same campaign id, one store) share a list:
    the second starts while the first is dialing. Every lead is dialed exactly once between them, nothing is
    closed as interrupted, and each ledger agrees with its own evidence log."""
    import json
    import subprocess

    sys.path.insert(0, str(HERE.parent / "sip"))
    from sipp_peers import Sipp
    from test_sip_live_campaign import STEMS, customers_scenario, pick_zones
    from test_sip_runtime import make_message
    from test_store_wide import _campaign_file

    from dialer.store import open_store

    open_zone, _ = pick_zones(time.time())
    stem = STEMS[open_zone]
    rows = [(f"p{i:02d}", f"{stem}{2010 + i}") for i in range(14)]  # 201...: answer, talk 1.5 s, hang up
    customers = Sipp(customers_scenario(tmp_path), tmp_path)
    agents = [Sipp("agent.xml", tmp_path, "-rtp_echo") for _ in range(2)]
    runs: list[subprocess.Popen[str]] = []
    try:
        make_message(tmp_path)
        files = []
        for name, agent in zip(("east", "west"), agents, strict=True):
            path = _campaign_file(
                tmp_path,
                name,
                rows,
                f'policy = "progressive"\n\n[trunk]\nport = {customers.port}\ncaller_id = "+12127362000"\n\n'
                f'[agents]\nalice = "sip:alice@127.0.0.1:{agent.port}"\n',
                pg_url,
            )
            path.write_text(path.read_text().replace(f'id = "{name}"', 'id = "shared"'))
            files.append(path)
        for path in files:
            runs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "dialer.cli", "run", str(path), "--quiet"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            with open_store(pg_url) as store:  # the second starts once the first is dialing
                deadline = time.monotonic() + 90
                while not store.attempts("shared") if "shared" in store.campaigns() else True:
                    assert time.monotonic() < deadline and runs[-1].poll() is None, runs[-1].communicate()
                    time.sleep(0.1)
        outs = [run.communicate(timeout=240) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
        customers.stop()
        for agent in agents:
            agent.stop()
    for run, (out, err) in zip(runs, outs, strict=True):
        assert run.returncode == 0, (out, err[-3000:])
    with open_store(pg_url) as store:
        attempts = store.attempts("shared")
    assert sorted(a.lead_id for a in attempts) == [r[0] for r in rows]  # each lead once, between the two
    assert all(a.state == "done" and a.outcome == "connected" for a in attempts), attempts
    owners = {a.owner for a in attempts}
    assert len(owners) == 2, owners  # both dialed
    for name in ("east", "west"):
        log = [json.loads(line) for line in (tmp_path / f"{name}.evidence.jsonl").read_text().splitlines()]
        logged = sorted(e["data"]["lead_id"] for e in log if e["kind"] == "call")
        mine = sorted(a.lead_id for a in attempts if a.call_id is not None and a.lead_id in logged)
        assert logged == mine and logged, (name, logged)
