"""The shared store going away mid-campaign (issue 17, item 3): nothing lost, nothing dialed unrecorded.

Before: a PostgreSQL server restarting under a running campaign surfaced as raw ``psycopg.OperationalError`` s.
The engine took the first failed record as a broken lead source and stopped dialing for good, the run's own
questions (``all_final``, ``due``) raised out of its loop, and a record refused by the dead connection was kept
only in ``engine.unreported``, never written. Now the store raises :class:`~dialer.store.StoreUnavailable`, and
the campaign pauses claims (so nothing is dialed that could not be recorded), keeps the records, opt-outs and
dispositions in order, asks again with back-off, writes them first when the server is back, says so in its log,
and dials on. Each test stops a real PostgreSQL server (``pg_ctl stop -m immediate``: a crash, connections cut)
and starts it again on the same data.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_server import PgServer

from dialer.campaign.lifecycle import RetryPolicy
from dialer.campaign.source import CampaignLeads
from dialer.compliance.dnc import DoNotCall
from dialer.engine.records import CallRecord, Outcome
from dialer.leads import Lead
from dialer.store import StoredLead, StoreUnavailable, open_store
from dialer.store.postgres import PgStore

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "sip"))

from store_wide_worker import always_open  # noqa: E402

NUMBERS = [f"+1212736{2100 + i}" for i in range(6)]


@pytest.fixture
def server() -> Iterator[PgServer]:
    """A server of this test's own, since the test stops and starts it."""
    srv = PgServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class Clock:
    """The campaign's monotonic clock, moved by the test past each back-off."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _campaign(store: Any, clock: Clock) -> CampaignLeads:
    store.ensure_campaign("c")
    for i, n in enumerate(NUMBERS):
        store.insert_lead(StoredLead("c", f"l{i}", n))
    return CampaignLeads(
        store, "c", dnc=DoNotCall(require_registry=False), windows=always_open(), policy=RetryPolicy(), monotonic=clock
    )


def _answered(call_id: int, lead: Lead, t: float) -> CallRecord:
    return CallRecord(call_id, lead, Outcome.CONNECTED, t, t + 30, answered_at=t + 5, connected_at=t + 5.4, wait=0.4)


def test_records_taken_while_the_server_is_down_are_written_when_it_is_back(
    server: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    now = time.time()
    clock = Clock()
    store = open_store(server.url(), wait=0.5)
    try:
        leads = _campaign(store, clock)
        a, b = leads.next_lead(now), leads.next_lead(now)
        assert a is not None and b is not None
        server.halt("immediate")  # two calls up; the server crashes
        with caplog.at_level(logging.WARNING, logger="dialer.campaign"):
            leads.report(_answered(1, a, now))  # no exception: kept
            assert leads.pending_writes == 1 and leads.outage is not None and "unavailable" in leads.outage
            assert leads.next_lead(now) is None  # no claim, so no dial, while the store cannot record it
            assert leads.opt_out(b.phone) == b.phone  # the person opts out: in force here at once...
            assert leads.dnc.check(b.phone) == "internal list"
            leads.report(_answered(2, b, now))
            assert leads.pending_writes == 3  # record, opt-out, record: in order
            clock.t += 60  # past the back-off: asked again, still down
            assert leads.next_lead(now) is None and leads.pending_writes == 3
            server.resume()
            c = None
            deadline = time.monotonic() + 60
            while c is None and time.monotonic() < deadline:  # the pool reconnects in the background
                clock.t += 60
                c = leads.next_lead(now)  # catches up first, then claims
                time.sleep(0.2)
        assert c is not None and c.phone not in (a.phone, b.phone)
        assert leads.pending_writes == 0 and leads.outage is None and leads.outages == 1
        messages = [r.getMessage() for r in caplog.records]
        assert any("dialing paused" in m for m in messages) and any("answers again" in m for m in messages)
        assert all("password" not in m for m in messages)
        done = {x.lead_id: x for x in store.attempts("c") if x.state == "done"}
        assert (done[a.lead_id].call_id, done[b.lead_id].call_id) == (1, 2)
        assert done[a.lead_id].outcome == "connected" and done[a.lead_id].connected_at == pytest.approx(now + 5.4)
        assert store.opt_outs() == [b.phone]  # ...and store-wide once the server is back
        assert [x.lead_id for x in store.open_attempts("c")] == [c.lead_id]
    finally:
        store.close()


def test_a_claim_cut_off_mid_commit_is_undone_once_the_store_is_back(server: PgServer) -> None:
    """The connection drops as the claim commits: the claim may be in the store though the engine never got the
    lead (so never dialed it). Once the store answers, an attempt that claim left open is removed."""

    class CutOff(PgStore):
        cut = 0

        def claim(self, campaign_id: str, lead_id: str, epoch: float, **kw: Any) -> int:
            attempt = super().claim(campaign_id, lead_id, epoch, **kw)
            if self.cut:
                self.cut -= 1
                raise StoreUnavailable("store unavailable: connection lost during COMMIT")
            return attempt

    now = time.time()
    clock = Clock()
    store = CutOff(server.url(), wait=0.5)
    try:
        leads = _campaign(store, clock)
        store.cut = 1
        assert leads.next_lead(now) is None  # the claim "failed": nothing handed to the engine
        assert [x.lead_id for x in store.open_attempts("c")] == ["l0"]  # yet it committed
        clock.t += 60
        lead = leads.next_lead(now)
        assert lead is not None and lead.lead_id == "l0"  # the cut claim undone, the lead offered again
        row = store.lead("c", "l0")
        assert (row.status, row.attempts) == ("dialing", 1)
        assert len(store.attempts("c", lead_id="l0")) == 1
    finally:
        store.close()


def test_a_record_written_twice_after_an_ambiguous_commit_is_taken_once(server: PgServer) -> None:
    """The connection drops as a record commits: it is kept and written again when the store is back, where the
    attempt is already closed with that call's id. That is success, not an error (and not a second record)."""

    class CutOff(PgStore):
        cut = 0

        def complete(self, *args: Any, **kw: Any) -> None:
            super().complete(*args, **kw)
            if self.cut:
                self.cut -= 1
                raise StoreUnavailable("store unavailable: connection lost during COMMIT")

    now = time.time()
    clock = Clock()
    store = CutOff(server.url(), wait=0.5)
    try:
        leads = _campaign(store, clock)
        lead = leads.next_lead(now)
        assert lead is not None
        store.cut = 1
        leads.report(_answered(7, lead, now))
        assert leads.pending_writes == 1
        clock.t += 60
        assert leads.catch_up() and leads.pending_writes == 0
        [row] = store.attempts("c", lead_id=lead.lead_id)
        assert (row.state, row.call_id, row.outcome) == ("done", 7, "connected")
    finally:
        store.close()


# -- a real `dialer run` against SIPp, its PostgreSQL server crashed and restarted mid-campaign -----------------


def test_dialer_run_rides_out_a_database_restart(server: PgServer, tmp_path: Path) -> None:
    from sipp_peers import Sipp
    from test_sip_live_campaign import STEMS, customers_scenario, pick_zones
    from test_sip_runtime import make_message
    from test_store_wide import _campaign_file

    open_zone, _ = pick_zones(time.time())
    stem = STEMS[open_zone]
    rows = [(f"p{i:02d}", f"{stem}{2010 + i}") for i in range(16)]  # 201...: answer, talk 1.5 s, hang up
    customers = Sipp(customers_scenario(tmp_path), tmp_path)
    agent = Sipp("agent.xml", tmp_path, "-rtp_echo")
    try:
        make_message(tmp_path)
        campaign = _campaign_file(
            tmp_path,
            "r",
            rows,
            f'policy = "progressive"\n\n[trunk]\nport = {customers.port}\ncaller_id = "+12127362000"\n\n'
            f'[agents]\nalice = "sip:alice@127.0.0.1:{agent.port}"\n',
            server.url(),
        )
        run = subprocess.Popen(
            [sys.executable, "-m", "dialer.cli", "run", str(campaign), "--status-every", "0.2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        err: list[str] = []
        reader = threading.Thread(target=lambda: err.extend(run.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        try:
            with open_store(server.url()) as store:
                deadline = time.monotonic() + 90
                while sum(x.state == "done" for x in store.attempts("r")) < 4:
                    assert time.monotonic() < deadline and run.poll() is None, "".join(err)[-2000:]
                    time.sleep(0.1)
            halted = time.time()
            server.halt("immediate")
            time.sleep(4.0)  # calls up end meanwhile; nothing may be dialed
            resumed = time.time()
            server.resume()
            out, _ = run.communicate(timeout=180)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        reader.join(5)
    finally:
        customers.stop()
        agent.stop()
    stderr = "".join(err)
    assert run.returncode == 0, (out, stderr[-3000:])
    assert "dialing paused" in stderr and "answers again" in stderr, stderr[-3000:]
    assert "STORE AWAY" in stderr
    with open_store(server.url()) as store:
        attempts = store.attempts("r")
        assert store.open_attempts("r") == []
        assert sorted(x.lead_id for x in attempts) == [r[0] for r in rows]  # each lead dialed exactly once
        assert all(x.outcome == "connected" and x.call_id is not None for x in attempts)
    evidence = [json.loads(line) for line in (tmp_path / "r.evidence.jsonl").read_text().splitlines()]
    calls = [e["data"] for e in evidence if e["kind"] == "call"]
    assert sorted(c["lead_id"] for c in calls) == [r[0] for r in rows]  # the ledger and the evidence agree
    # No call was placed while the store could not have recorded it (the first second: its pool noticing).
    during = [c for c in calls if halted + 1.0 < c["placed_at"] < resumed]
    assert during == [], during
    assert "16 calls" in out and "connected 16" in out, out
