"""The campaign lead source: gates at dial time, retries, caps, lockouts, callbacks, recycling; with the engine."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer import Engine, make_policy
from dialer.campaign import ColumnMapping, import_csv
from dialer.campaign.lifecycle import Disposition, RetryPolicy, RetryRule
from dialer.campaign.source import CampaignError, CampaignLeads
from dialer.compliance import numbers
from dialer.compliance.dnc import DoNotCall
from dialer.compliance.windows import DEFAULT_RULES, CallingWindows
from dialer.engine import events as ev
from dialer.engine.actions import DialLead, RecordCall
from dialer.engine.records import CallRecord, Outcome
from dialer.leads import Lead
from dialer.store import Store

HOUR = 3600.0
# Wednesday 2026-03-04 12:00 in New York
NOON_NY = dt.datetime(2026, 3, 4, 12, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()


def _source(csv_text: str, store: Any = None, **kw: object) -> CampaignLeads:
    store = store if store is not None else Store(":memory:")
    import_csv(
        io.StringIO(csv_text), store, "c", ColumnMapping(priority="priority" if "priority" in csv_text else None)
    )
    dnc = kw.pop("dnc", None) or DoNotCall(require_registry=False)
    return CampaignLeads(store, "c", dnc=dnc, **kw)  # type: ignore[arg-type]


def _record(lead: Lead, outcome: Outcome, t: float, call_id: int = 1) -> CallRecord:
    live = outcome in (Outcome.CONNECTED, Outcome.ABANDONED)
    return CallRecord(
        call_id=call_id,
        lead=lead,
        outcome=outcome,
        dialed_at=t,
        ended_at=t + 30,
        answered_at=t + 10 if live or outcome is Outcome.MACHINE else None,
        connected_at=t + 11 if outcome is Outcome.CONNECTED else None,
        message_at=t + 12 if outcome is Outcome.ABANDONED else None,
        wait=1.0 if live else None,
        abandoned=outcome is Outcome.ABANDONED,
    )


def test_order_priority_and_dnc_at_dial_time(fresh_store: Callable[[], Any]) -> None:
    src = _source("phone,priority\n2025550101,0\n2025550102,5\n2025550103,0\n", fresh_store(), epoch_offset=NOON_NY)
    src.dnc.opt_out("+12025550103")  # listed after import: caught at dial time
    src.store.add_opt_out("+12025550103")
    first = src.next_lead(0.0)
    second = src.next_lead(1.0)
    assert first is not None and second is not None
    assert (first.phone, second.phone) == ("+12025550102", "+12025550101")
    assert src.next_lead(2.0) is None
    assert src.held["do-not-call"] == 1
    lead = src.store.find_lead("c", phone="+12025550103")
    assert lead is not None and (lead.status, lead.disposition) == ("done", "do_not_call")


def test_window_parks_lead_until_it_opens(fresh_store: Callable[[], Any]) -> None:
    # 06:00 in Los Angeles, 09:00 in New York
    t = dt.datetime(2026, 3, 4, 9, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
    src = _source("phone\n+13105550101\n+12025550101\n", fresh_store())
    got = src.next_lead(t)
    assert got is not None and got.phone == "+12025550101"
    assert src.next_lead(t + 1) is None
    parked = src.store.find_lead("c", phone="+13105550101")
    assert parked is not None
    opens = dt.datetime.fromtimestamp(parked.next_at, ZoneInfo("America/Los_Angeles"))
    assert (opens.hour, opens.minute) == (8, 0)
    late = src.next_lead(parked.next_at)
    assert late is not None and late.phone == "+13105550101"


def test_retry_delay_caps_and_abandon_lockout(fresh_store: Callable[[], Any]) -> None:
    policy = RetryPolicy(max_attempts=3).with_rules(busy=RetryRule(600.0, 2))
    src = _source("phone\n2025550101\n", fresh_store(), policy=policy, epoch_offset=NOON_NY)
    lead = src.next_lead(0.0)
    assert lead is not None
    src.report(_record(lead, Outcome.BUSY, 0.0))
    assert src.next_lead(100.0) is None  # retry delay
    lead = src.next_lead(700.0)
    assert lead is not None
    src.report(_record(lead, Outcome.BUSY, 700.0))
    assert src.next_lead(10 * HOUR) is None  # busy cap of 2 reached
    stored = src.store.lead("c", lead.lead_id)
    assert (stored.status, stored.disposition, stored.attempts) == ("done", "busy", 2)

    src2 = _source("phone\n2025550102\n", fresh_store(), epoch_offset=NOON_NY)
    lead = src2.next_lead(0.0)
    assert lead is not None
    src2.report(_record(lead, Outcome.ABANDONED, 0.0))
    assert src2.store.lead("c", lead.lead_id).lockout_until == pytest.approx(NOON_NY + 30 + 72 * HOUR)
    # 71 h later is still inside the lockout, even in the calling window
    assert src2.next_lead(71 * HOUR) is None
    assert src2.next_lead(72 * HOUR + 60) is not None


def test_callback_at_the_leads_local_time_and_dispositions(fresh_store: Callable[[], Any]) -> None:
    src = _source("phone\n3105550101\n2025550102\n9075550103\n", fresh_store(), epoch_offset=0.0)
    t = dt.datetime(2026, 3, 4, 13, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
    la = src.next_lead(t)
    dc = src.next_lead(t + 1)
    assert la is not None and dc is not None
    src.report(_record(la, Outcome.CONNECTED, t))
    src.report(_record(dc, Outcome.CONNECTED, t + 1))
    at = src.schedule_callback(la.lead_id, dt.datetime(2026, 3, 5, 17, 30))  # 17:30 in Los Angeles
    assert at == dt.datetime(2026, 3, 5, 17, 30, tzinfo=ZoneInfo("America/Los_Angeles")).timestamp()
    src.disposition(dc.lead_id, Disposition.DNC_REQUEST)
    assert src.dnc.blocked(dc.phone) and dc.phone in src.store.opt_outs()
    with pytest.raises(CampaignError, match="no callback"):
        src.schedule_callback(dc.lead_id, dt.datetime(2026, 3, 5, 12, 0))
    with pytest.raises(CampaignError, match="time zones"):
        src.schedule_callback("+19075550103", dt.datetime(2026, 3, 5, 12, 0))  # Alaska spans two zones
    # the callback comes first once due, ahead of the never-dialed Alaska lead
    got = src.next_lead(at)
    assert got is not None and got.lead_id == la.lead_id


def test_recycling_brings_back_exhausted_leads_but_never_dnc(fresh_store: Callable[[], Any]) -> None:
    policy = RetryPolicy(max_attempts=1)
    src = _source("phone\n2025550101\n2025550102\n", fresh_store(), policy=policy, epoch_offset=NOON_NY)
    a, b = src.next_lead(0.0), src.next_lead(1.0)
    assert a is not None and b is not None
    src.report(_record(a, Outcome.NO_ANSWER, 0.0))
    src.report(_record(b, Outcome.CONNECTED, 1.0))
    src.disposition(b.lead_id, Disposition.WRONG_NUMBER)
    assert src.next_lead(3 * HOUR) is None
    with pytest.raises(Exception, match="never recycled"):
        src.recycle([Disposition.WRONG_NUMBER])
    assert src.recycle([Disposition.NO_ANSWER]) == 1
    again = src.next_lead(3 * HOUR)
    assert again is not None and again.lead_id == a.lead_id
    assert src.store.lead("c", a.lead_id).list_pass == 1


def test_with_the_engine_every_dial_is_one_claimed_attempt(fresh_store: Callable[[], Any]) -> None:
    src = _source("phone\n" + "".join(f"20255501{i:02d}\n" for i in range(10)), fresh_store(), epoch_offset=NOON_NY)
    engine = Engine(make_policy("progressive"), src)
    out = engine.handle(ev.AgentLoggedIn(0.0, "a"))
    out = engine.handle(ev.AgentReady(0.0, "a"))
    t = 0.0
    records = 0
    while True:
        dials = [a for a in out if isinstance(a, DialLead)]
        if not dials:
            break
        t += 20.0
        out = []
        for d in dials:
            out += engine.handle(ev.CallFailed(t, d.call_id, ev.FailureReason.BUSY))
        records += sum(isinstance(a, RecordCall) for a in out)
    assert records == 10
    attempts = src.store.attempts("c")
    assert len(attempts) == 10 and {a.state for a in attempts} == {"done"}
    assert {a.outcome for a in attempts} == {"busy"}


# -- properties ------------------------------------------------------------------------------------------

_PHONES = [
    "+12025550101",
    "+13105550102",
    "+19075550103",
    "+18085550104",
    "+15125550105",
    "+14165550106",
    "+61291234567",
    "+442079460018",
    "+18885550107",
    "+12025550108",
]
_OUTCOMES = list(Outcome)


def _oracle_in_window(phone: str, epoch: float) -> bool:
    rules = DEFAULT_RULES[numbers.region_of(phone)].base
    for z in numbers.time_zones_of(phone):
        local = dt.datetime.fromtimestamp(epoch, ZoneInfo(z))
        w = rules.days[local.weekday()]
        if w is None or local.date() in rules.holidays or not w[0] <= local.hour * 60 + local.minute < w[1]:
            return False
    return True


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    phones=st.lists(st.sampled_from(_PHONES), min_size=1, max_size=10, unique=True),
    dnc=st.sets(st.sampled_from(_PHONES), max_size=3),
    start=st.integers(1_760_000_000, 1_800_000_000),
    steps=st.lists(
        st.tuples(
            st.floats(0, 20 * HOUR),
            st.sampled_from(_OUTCOMES),
            st.booleans(),
            st.sampled_from([*_PHONES, ""]),
            st.one_of(st.none(), st.floats(0, 48 * HOUR)),
        ),
        min_size=1,
        max_size=40,
    ),
    max_attempts=st.integers(1, 4),
)
def test_property_no_dnc_no_out_of_window_caps_and_lockouts_hold(
    phones: list[str],
    dnc: set[str],
    start: int,
    steps: list[tuple[float, Outcome, bool, str, float | None]],
    max_attempts: int,
) -> None:
    lockout = 72 * HOUR
    policy = RetryPolicy(max_attempts=max_attempts, max_total_attempts=max_attempts + 1, abandon_lockout=lockout)
    src = _source(
        "phone\n" + "\n".join(phones) + "\n", policy=policy, dnc=DoNotCall(internal=dnc, require_registry=False)
    )
    blocked = set(dnc)
    last_abandon: dict[str, float] = {}
    dials: dict[str, int] = {}
    t = float(start)
    for gap, outcome, opt_out, who, callback in steps:
        t += gap
        if opt_out and who:
            src.opt_out(who)
            blocked.add(who)
        lead = src.next_lead(t)
        if lead is None:
            continue
        assert lead.phone not in blocked
        assert _oracle_in_window(lead.phone, t)
        assert t >= last_abandon.get(lead.phone, -1e18) + lockout
        dials[lead.phone] = dials.get(lead.phone, 0) + 1
        assert dials[lead.phone] <= max_attempts
        record = _record(lead, outcome, t)
        src.report(record)
        if outcome is Outcome.ABANDONED:
            last_abandon[lead.phone] = record.ended_at
        if callback is not None and outcome is Outcome.CONNECTED:
            # the agent books a callback at an arbitrary time: the gates still decide when it is dialed
            try:
                src.disposition(lead.lead_id, Disposition.CALLBACK, callback_at=t + callback)
            except CampaignError:
                assert dials[lead.phone] >= max_attempts  # only refused when no attempt is left
    # every dial is exactly one closed attempt in the store
    attempts = src.store.attempts("c")
    assert len(attempts) == sum(dials.values())
    assert all(a.state == "done" for a in attempts)


def test_window_gate_counts_unknown_zone() -> None:
    w = CallingWindows()
    assert w.check("+883510012345", NOON_NY) is not None


def test_missing_registry_holds_us_leads_without_finishing_them(fresh_store: Callable[[], Any]) -> None:
    src = _source("phone\n2025550101\n+442079460018\n", fresh_store(), dnc=DoNotCall(), epoch_offset=NOON_NY)
    got = src.next_lead(0.0)
    assert got is not None and got.phone == "+442079460018"  # the UK number needs no US registry
    assert src.next_lead(1.0) is None
    assert src.held == {"no usable do-not-call registry": 1}
    us = src.store.find_lead("c", phone="+12025550101")
    assert us is not None and us.status == "ready"  # held, not finished: it is dialed once a registry is loaded
