"""Protections that belong to the number, not the lead (issue 13, item 3).

Before: a campaign process loaded the store's opt-outs once, at its start, so an opt-out taken by another campaign
running on the same store never reached it; and the 72-h lockout after an abandoned call lived on the lead, so the
same number in another campaign was dialed an hour later. Now every claim reads the store's opt-outs and number
lockouts in its own transaction. Proven here with two campaign objects on one store, two processes driving
:class:`CampaignLeads` (a hypothesis property), and two real ``dialer run`` processes against SIPp.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dialer.campaign.lifecycle import RetryPolicy, RetryRule
from dialer.campaign.source import CampaignLeads
from dialer.compliance.dnc import DoNotCall
from dialer.engine.records import CallRecord, Outcome
from dialer.leads import Lead
from dialer.store import Store, StoredLead, open_store

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "sip"))

from store_wide_worker import always_open  # noqa: E402

HOUR = 3600.0
NUMBERS = ("+12127362101", "+12127362102", "+12127362103", "+12127362104")


def _leads(store: Store, campaign: str, numbers: tuple[str, ...] | list[str]) -> CampaignLeads:
    store.ensure_campaign(campaign)
    for i, n in enumerate(numbers):
        store.insert_lead(StoredLead(campaign, f"{campaign}{i}", n))
    policy = RetryPolicy().with_rules(busy=RetryRule(0.0))
    return CampaignLeads(store, campaign, dnc=DoNotCall(require_registry=False), windows=always_open(), policy=policy)


def _end(source: CampaignLeads, lead: Lead, outcome: Outcome, t: float) -> None:
    abandoned = outcome == Outcome.ABANDONED
    answered = None if outcome == Outcome.BUSY else t + 5
    source.report(
        CallRecord(
            1,
            lead,
            outcome,
            t,
            t + 30,
            answered_at=answered,
            connected_at=answered + 1 if answered is not None and not abandoned else None,
            message_at=answered + 1.5 if answered is not None and abandoned else None,
            wait=None if answered is None else 1.0,
            abandoned=abandoned,
        )
    )


# -- two campaigns, two connections, one store -------------------------------------------------------------


def test_an_opt_out_in_one_campaign_reaches_another_already_running(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    a = _leads(Store(path), "a", [NUMBERS[0]])
    b = _leads(Store(path), "b", [NUMBERS[0], NUMBERS[1]])  # started: it has loaded the store's opt-outs (none)
    t = time.time()
    lead = a.next_lead(t)
    assert lead is not None and lead.phone == NUMBERS[0]
    a.opt_out(lead.phone, source="call")  # the person pressed the opt-out key in campaign a
    _end(a, lead, Outcome.CONNECTED, t)
    got = b.next_lead(t + 60)
    assert got is not None and got.phone == NUMBERS[1], got  # the opted-out number is skipped
    assert b.store.lead("b", "b0").disposition == "do_not_call" and b.held.get("do-not-call") == 1
    assert [x.phone for x in b.store.attempts("b")] == [NUMBERS[1]]


def test_an_abandoned_call_locks_the_number_out_in_every_campaign(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    a = _leads(Store(path), "a", [NUMBERS[0]])
    b = _leads(Store(path), "b", [NUMBERS[0]])
    t = time.time()
    lead = a.next_lead(t)
    assert lead is not None
    _end(a, lead, Outcome.ABANDONED, t)
    assert b.next_lead(t + HOUR) is None  # an hour later, in the other campaign: still locked out
    assert b.store.number_lockout(NUMBERS[0]) == pytest.approx(t + 30 + 72 * HOUR)
    assert b.held.get("abandonment lockout") == 1
    parked = b.store.lead("b", "b0")
    assert parked.status == "ready" and parked.next_at == pytest.approx(t + 30 + 72 * HOUR)  # waits, not finished
    again = b.next_lead(t + 30 + 72 * HOUR + 1)
    assert again is not None and again.phone == NUMBERS[0]  # the lockout over, the number is dialed again


def test_a_store_from_before_keeps_its_leads_lockouts_per_number(tmp_path: Path) -> None:
    """Upgrading a store mid-campaign: the lockouts its leads already carry become the numbers' lockouts."""
    import sqlite3

    from dialer.store.schema import MIGRATIONS

    path = tmp_path / "old.sqlite"
    raw = sqlite3.connect(path)
    for script in MIGRATIONS[:2]:
        raw.executescript(script)
    raw.execute("INSERT INTO campaigns VALUES ('a', 0, '{}')")
    raw.execute("INSERT INTO leads (campaign_id, lead_id, phone, seq, lockout_until) VALUES ('a', 'L', ?, 1, 5e9)",
                (NUMBERS[2],))  # fmt: skip
    raw.execute("PRAGMA user_version=2")
    raw.commit()
    raw.close()
    with Store(path) as store:
        assert store.number_lockout(NUMBERS[2]) == 5e9
        store.ensure_campaign("b")
        store.insert_lead(StoredLead("b", "L", NUMBERS[2]))
        assert store.number_block(NUMBERS[2], 4e9) == ("abandonment lockout", 5e9)


# -- two processes: a property ------------------------------------------------------------------------------

STEPS = st.lists(
    st.tuples(st.sampled_from(["busy", "abandoned", "opt_out"]), st.sampled_from([0.0, 0.005, 0.02, 0.05])),
    min_size=1,
    max_size=8,
)
POOL = st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=4, unique=True)


def _run_two(
    store_path: Path, plans: dict[str, tuple[list[str], list[tuple[str, float]]]], url: str | None = None
) -> dict[str, list[str]]:
    """Both campaigns' leads into the store (the SQLite file, or the PostgreSQL database at ``url``), both
    workers started and let go together; their output lines."""
    with open_store(url or store_path) as store:
        for campaign, (numbers, _) in plans.items():
            store.ensure_campaign(campaign)
            for i, n in enumerate(numbers):
                store.insert_lead(StoredLead(campaign, f"{campaign}{i}", n))
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for campaign, (_, steps) in plans.items():
            plan = store_path.with_name(f"{campaign}.json")
            plan.write_text(json.dumps(steps), encoding="utf-8")
            procs[campaign] = subprocess.Popen(
                [sys.executable, str(HERE / "store_wide_worker.py"), url or str(store_path), campaign, str(plan)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        for p in procs.values():  # both have loaded their lists (the stale view a cache would keep)
            assert p.stdout is not None and p.stdout.readline().strip() == "READY"
        for p in procs.values():
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        out = {c: p.communicate(timeout=60)[0].splitlines() for c, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    for c, p in procs.items():
        assert p.returncode == 0 and out[c][-1] == "DONE", (c, out[c])
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(POOL, STEPS, POOL, STEPS)
@example([NUMBERS[0]], [("opt_out", 0.0)], [NUMBERS[0]], [("busy", 0.4)])
@example([NUMBERS[0]], [("abandoned", 0.0)], [NUMBERS[0]], [("busy", 0.4)])
def test_property_two_processes_never_dial_a_number_the_other_protected(
    numbers_a: list[str], steps_a: list[tuple[str, float]], numbers_b: list[str], steps_b: list[tuple[str, float]]
) -> None:
    """Two campaign processes on one store: no dial of a number after the other process committed its opt-out
    or its abandonment lockout (72 h, so in force for the whole run). Times are the system-wide monotonic clock:
    a dial's time is read before its claim, a protection's after its commit."""
    with tempfile.TemporaryDirectory() as tmp:
        out = _run_two(Path(tmp) / "s.sqlite", {"a": (numbers_a, steps_a), "b": (numbers_b, steps_b)})
    _no_dial_after_a_protection(out)


_pg_databases = itertools.count(1)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(POOL, STEPS, POOL, STEPS)
@example([NUMBERS[0]], [("opt_out", 0.0)], [NUMBERS[0]], [("busy", 0.4)])
@example([NUMBERS[0]], [("abandoned", 0.0)], [NUMBERS[0]], [("busy", 0.4)])
def test_property_two_processes_on_postgresql_never_dial_a_number_the_other_protected(
    postgres: Any,
    numbers_a: list[str],
    steps_a: list[tuple[str, float]],
    numbers_b: list[str],
    steps_b: list[tuple[str, float]],
) -> None:
    """The same property with both processes on one PostgreSQL database (issue 17): row locks and the number's
    advisory lock instead of SQLite's single writer."""
    url = postgres.create_database(f"prop{next(_pg_databases)}")
    with tempfile.TemporaryDirectory() as tmp:
        out = _run_two(Path(tmp) / "unused.sqlite", {"a": (numbers_a, steps_a), "b": (numbers_b, steps_b)}, url)
    _no_dial_after_a_protection(out)


def _no_dial_after_a_protection(out: dict[str, list[str]]) -> None:
    protected: dict[str, list[tuple[str, float]]] = {}
    for campaign, lines in out.items():
        for line in lines:
            if line.startswith("PROTECT "):
                _, number, t = line.split()
                protected.setdefault(number, []).append((campaign, float(t)))
    for campaign, lines in out.items():
        for line in lines:
            if line.startswith("DIAL "):
                _, number, t = line.split()
                earlier = [(c, p) for c, p in protected.get(number, []) if c != campaign and p < float(t)]
                assert not earlier, f"{campaign} dialed {number} at {t} after {earlier[0][0]} protected it"


# -- two `dialer run` processes against SIPp ---------------------------------------------------------------


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[type]:
    from sipp_peers import Sipp

    started: list[Sipp] = []

    class _Factory(Sipp):
        def __init__(self, scenario: str, *extra: str) -> None:
            super().__init__(scenario, tmp_path, *extra)
            started.append(self)

    yield _Factory
    for s in started:
        s.stop()


def _campaign_file(
    tmp_path: Path, name: str, rows: list[tuple[str, str]], body: str, store: str = "shared.sqlite"
) -> Path:
    from sipp_peers import free_rtp_base
    from test_sip_live_campaign import JP_HOURS  # the hours pick_zones judges Tokyo's numbers open by

    (tmp_path / f"{name}.csv").write_text("lead_id,phone\n" + "".join(f"{i},{p}\n" for i, p in rows), encoding="utf-8")
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"""
[campaign]
id = "{name}"
store = "{store}"
abandon_message = "abandon.wav"
purpose = "survey"  # exempt from the national registry, which these tests do not load
ring_timeout = 20
{body}

[leads]
file = "{name}.csv"

[dnc]
registry_required = false

[hours.JP]
{JP_HOURS}

[pool]
workers = 1
agent_sessions = false
rtp_port = {free_rtp_base(200)}
""",
        encoding="utf-8",
    )
    return path


def _wait(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("protection", ["opt_out", "lockout"])
def test_two_dialer_runs_on_one_store(sipp: type, tmp_path: Path, protection: str, store_location: str) -> None:
    """Campaign b runs (``--keep-going``) with a lead not yet due; campaign a, another ``dialer run`` on the same
    store, calls the same number: nobody free, the message plays, and the person either opts out (digit 9) or not
    (a's opt-out key is ``*``), so the number is locked out for 72 h. Then b's lead comes due: b never dials it.
    On both backends: one SQLite file, or one PostgreSQL database the two processes share (issue 17)."""
    from test_sip_live_campaign import STEMS, customers_scenario, pick_zones
    from test_sip_runtime import make_message

    open_zone, _ = pick_zones(time.time())
    o = STEMS[open_zone]
    shared = o + "2041"  # answers 0.6 s after ringing, presses 9 during the message
    customers = sipp(customers_scenario(tmp_path))
    agent = sipp("agent.xml", "-rtp_echo")
    make_message(tmp_path)
    common = (
        f'[trunk]\nport = {customers.port}\ncaller_id = "+12127362000"\n\n'
        f'[agents]\nalice = "sip:alice@127.0.0.1:{agent.port}"\n'
    )
    digit = "9" if protection == "opt_out" else "*"
    a = _campaign_file(
        tmp_path,
        "a",
        [("talk", o + "2001"), ("shared", shared)],  # talk takes the only agent; shared is abandoned
        f'policy = "power"\nconnect_limit = 0.1\nopt_out_digit = "{digit}"\n\n[policy]\nratio = 2.0\n\n{common}',
        store_location,
    )
    b = _campaign_file(
        tmp_path, "b", [("busy", o + "4861")], f"\n[retry.busy]\nfinal = true\n\n{common}", store_location
    )
    with open_store(store_location) as store:  # b's lead on the shared number, due only when the test says so
        store.ensure_campaign("b")
        store.insert_lead(StoredLead("b", "shared", shared))
        store.update_lead("b", "shared", next_at=time.time() + 24 * HOUR)

    run_b = subprocess.Popen(
        [sys.executable, "-m", "dialer.cli", "run", str(b), "--keep-going", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with open_store(store_location) as store:
            assert _wait(lambda: any(x.state == "done" for x in store.attempts("b")), 60), "b never dialed"
        run_a = subprocess.run(
            [sys.executable, "-m", "dialer.cli", "run", str(a), "--quiet"], capture_output=True, text=True, timeout=120
        )
        assert run_a.returncode == 0, (run_a.stdout, run_a.stderr)
        assert run_b.poll() is None, "b stopped before the shared number came due"
        with open_store(store_location) as store:
            [abandoned] = [x for x in store.attempts("a") if x.phone == shared]
            assert abandoned.outcome == "abandoned" and abandoned.message_at is not None
            assert store.opt_outs() == ([shared] if protection == "opt_out" else [])
            assert store.lead("a", "shared").lockout_until > time.time() + 71 * HOUR
            store.update_lead("b", "shared", next_at=time.time())  # due now, in the running b
            if protection == "lockout":  # b's next ask (within the engine's 15-s lead retry) parks it for 72 h
                assert _wait(lambda: store.lead("b", "shared").next_at > time.time() + 71 * HOUR, 40), store.attempts(
                    "b"
                )
                run_b.send_signal(signal.SIGINT)
        out, err = run_b.communicate(timeout=60)
    finally:
        if run_b.poll() is None:
            run_b.kill()
            run_b.wait()
    assert run_b.returncode == (0 if protection == "opt_out" else 130), (out, err)
    if protection == "opt_out":
        assert "stopped: every lead is final" in out, out
    with open_store(store_location) as store:
        assert [x.lead_id for x in store.attempts("b")] == ["busy"]  # the shared number: never dialed by b
        lead = store.lead("b", "shared")
        assert (lead.attempts, lead.disposition) == (0, "do_not_call" if protection == "opt_out" else "")
