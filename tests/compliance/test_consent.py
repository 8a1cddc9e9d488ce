"""Consent and exemptions (issue 13, item 6).

Before: a number on the national registry was rejected at import and held at dial time whatever the lead's
relationship with the seller, and a charity campaign could not call registry numbers at all; nothing recorded on
what basis a registry number was called. Now an established business relationship within its window (18 months
after a purchase, 3 after an inquiry), express written consent, or an exempt campaign purpose lets a REGISTRY
number be dialed, with the basis on the attempt and in the call's evidence, and nothing exempts a number on the
company list or one that opted out.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import struct
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from dialer.campaign import ColumnMapping, import_csv
from dialer.campaign.source import CampaignLeads
from dialer.compliance import DoNotCall, NationalRegistry
from dialer.compliance.consent import (
    Consent,
    ConsentType,
    Purpose,
    add_months,
    call_date,
    registry_exemption,
)
from dialer.compliance.evidence import entries
from dialer.engine.records import CallRecord, Outcome
from dialer.errors import ConfigError
from dialer.live.campaign import LiveCampaign, load_campaign
from dialer.store.consents import ConsentStore

DAY = 86400.0
NY = ZoneInfo("America/New_York")
# Wednesday 2026-03-04 12:00 in New York: inside calling hours
NOON = dt.datetime(2026, 3, 4, 12, 0, tzinfo=NY).timestamp()
TODAY = dt.date(2026, 3, 4)
REG = ["+12025550101", "+12025550102", "+12025550103", "+12025550104"]  # on the national registry
FREE = "+12025550199"  # on no list
CONSENT = ColumnMapping(
    lead_id="lead_id", consent_type="consent_type", consent_date="consent_date", consent_source="consent_source"
)


def _dnc(tmp_path: Path, as_of: float = NOON, clock: list[float] | None = None) -> DoNotCall:
    src = tmp_path / "full.txt"
    src.write_text("".join(f"{n[2:5]},{n[5:]}\n" for n in REG), encoding="ascii")
    registry = NationalRegistry.prepare(tmp_path / "reg", [src], as_of=as_of)
    now = clock or [NOON]
    return DoNotCall(registry, clock=lambda: now[0])


def _csv(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["lead_id,phone,consent_type,consent_date,consent_source"]
    lines += [f"{lead},{phone},{kind},{date},{source}" for lead, phone, kind, date, source in rows]
    return "\n".join(lines) + "\n"


def _campaign(
    new_store: Callable[[], Any],
    tmp_path: Path,
    rows: list[tuple[str, str, str, str]],
    *,
    purpose: str = "telemarketing",
    clock: list[float] | None = None,
    as_of: float = NOON,
) -> CampaignLeads:
    store = new_store()
    dnc = _dnc(tmp_path, as_of, clock)
    report = import_csv(io.StringIO(_csv(rows)), store, "c", CONSENT, dnc=dnc, purpose=purpose, now=NOON)
    assert report.accounted
    return CampaignLeads(store, "c", dnc=dnc, purpose=purpose)


def _dial_all(src: CampaignLeads, epoch: float) -> dict[str, dict[str, str]]:
    """Every lead dialable at ``epoch``: lead id -> the fields handed to the engine."""
    out: dict[str, dict[str, str]] = {}
    while (lead := src.next_lead(epoch)) is not None:
        out[lead.lead_id] = dict(lead.fields)
    return out


def _ago(months: int) -> str:
    return add_months(TODAY, -months).isoformat()


# -- the windows ----------------------------------------------------------------------------------------------


def test_ebr_purchase_17_months_ago_dials_a_registry_number_19_months_ago_does_not(
    tmp_path: Path, fresh_store: Callable[[], Any]
) -> None:
    src = _campaign(
        fresh_store,
        tmp_path,
        [
            ("recent", REG[0], "ebr_purchase", _ago(17), "order 881"),
            ("old", REG[1], "ebr_purchase", _ago(19), "order 112"),
        ],
    )
    dialed = _dial_all(src, NOON)
    assert list(dialed) == ["recent"]
    assert dialed["recent"]["registry_basis"] == f"ebr_purchase {_ago(17)} (order 881), until {add_months(TODAY, 1)}"
    assert src.store.find_lead("c", lead_id="old") is None  # rejected at import: no basis on the registry


def test_ebr_expiring_between_import_and_dial_is_held_at_dial_time(
    tmp_path: Path, fresh_store: Callable[[], Any]
) -> None:
    later = NOON + 62 * DAY  # 2026-05-05: the purchase of 17 months before the import is now 19 months old
    clock = [NOON]
    held: list[dict[str, object]] = []
    src = _campaign(
        fresh_store,
        tmp_path,
        [("recent", REG[0], "ebr_purchase", _ago(17), "order 881")],
        clock=clock,
        as_of=later - DAY,
    )
    src._on_hold = held.append
    clock[0] = later
    assert src.next_lead(later) is None
    lead = src.store.find_lead("c", lead_id="recent")
    assert lead is not None and (lead.status, lead.disposition) == ("done", "do_not_call")
    assert held[0]["rule"] == "do-not-call: national registry"
    assert "ebr_purchase 2024-10-04 expired 2026-04-04" in str(held[0]["note"])


def test_ebr_inquiry_2_months_ago_dials_4_months_ago_does_not(tmp_path: Path, fresh_store: Callable[[], Any]) -> None:
    src = _campaign(
        fresh_store,
        tmp_path,
        [
            ("asked", REG[0], "ebr_inquiry", _ago(2), "web form"),
            ("stale", REG[1], "ebr_inquiry", _ago(4), "web form"),
        ],
    )
    assert list(_dial_all(src, NOON)) == ["asked"]
    rejected = {r.line: r.reason for r in import_csv(
        io.StringIO(_csv([("stale", REG[1], "ebr_inquiry", _ago(4), "web form")])),
        fresh_store(), "c", CONSENT, dnc=src.dnc, now=NOON,
    ).rejected}  # fmt: skip
    assert rejected == {2: f"do-not-call (national registry; ebr_inquiry of {_ago(4)} is no basis today)"}


def test_express_written_consent_dials_a_registry_number_never_a_company_listed_or_opted_out_one(
    tmp_path: Path, fresh_store: Callable[[], Any]
) -> None:
    src = _campaign(
        fresh_store,
        tmp_path,
        [
            ("signed", REG[0], "express_written", "2020-01-15", "signed form 7"),
            ("listed", REG[1], "express_written", "2020-01-15", "signed form 8"),
            ("optout", REG[2], "express_written", "2020-01-15", "signed form 9"),
            ("free", FREE, "express_written", "2020-01-15", "signed form 10"),
        ],
    )
    src.dnc.add_internal([REG[1]])  # the company list since the import
    src.opt_out(REG[2])  # the person asked not to be called: withdraws any consent
    dialed = _dial_all(src, NOON)
    assert set(dialed) == {"signed", "free"}
    assert dialed["signed"]["registry_basis"] == "express_written 2020-01-15 (signed form 7)"
    assert "registry_basis" not in dialed["free"]  # not on the registry: no exemption needed, none recorded
    assert src.held_by_rule["do-not-call: internal list"] == 2
    # and at import: the same rows against lists that already hold them are rejected, consent or not
    report = import_csv(
        io.StringIO(_csv([("listed", REG[1], "express_written", "2020-01-15", "form")])),
        fresh_store(), "c", CONSENT, dnc=src.dnc, now=NOON,
    )  # fmt: skip
    assert [r.reason for r in report.rejected] == ["do-not-call"]


def test_charity_purpose_dials_registry_numbers_never_company_list_or_opt_out_numbers(
    tmp_path: Path, fresh_store: Callable[[], Any]
) -> None:
    rows = [(f"r{i}", n, "", "", "") for i, n in enumerate(REG)]
    src = _campaign(fresh_store, tmp_path, rows, purpose="charity")
    assert src.store.count_leads("c") == {"ready": 4}  # registry numbers kept at import for a charity
    src.dnc.add_internal([REG[1]])  # the charity's own do-not-call list
    src.opt_out(REG[2])
    dialed = _dial_all(src, NOON)
    assert set(dialed) == {"r0", "r3"}
    assert {f["registry_basis"] for f in dialed.values()} == {"charity purpose"}
    assert src.exempted == {"charity purpose": 2}
    # the same store under a telemarketing campaign: the registry applies again
    plain = fresh_store()
    import_csv(io.StringIO(_csv(rows)), plain, "c", CONSENT, dnc=src.dnc, purpose="charity", now=NOON)
    assert _dial_all(CampaignLeads(plain, "c", dnc=src.dnc), NOON) == {}


def test_a_bad_consent_row_is_rejected_with_its_reason(tmp_path: Path, fresh_store: Callable[[], Any]) -> None:
    rows = [
        ("a", FREE, "ebr_lunch", "2025-01-01", ""),
        ("b", REG[0], "ebr_purchase", "2025-13-01", ""),
        ("c", REG[1], "ebr_purchase", "03/04/2025", ""),
        ("d", REG[2], "express_written", "", "form"),
        ("e", REG[3], "ebr_inquiry", "2026-03-10", "web"),
        ("f", "+12025550198", "", "2025-01-01", ""),
        ("g", "+12025550197", "EBR_Purchase", "2025-06-01", "till 4"),  # case-insensitive type: accepted
    ]
    store = fresh_store()
    report = import_csv(io.StringIO(_csv(rows)), store, "c", CONSENT, dnc=_dnc(tmp_path), now=NOON)
    reasons = {r.line: r.reason for r in report.rejected}
    assert reasons[2].startswith("unknown consent type 'ebr_lunch'")
    assert reasons[3] == "consent date '2025-13-01' is not a date (YYYY-MM-DD)"
    assert reasons[4] == "consent date '03/04/2025' is not a date (YYYY-MM-DD)"
    assert reasons[5] == "consent type express_written without a consent date"
    assert reasons[6] == "consent date 2026-03-10 is in the future"
    assert reasons[7].startswith("unknown consent type ''")
    assert report.accepted == 1 and report.accounted
    assert ConsentStore(store).of_lead("c", "g") == [Consent(ConsentType.EBR_PURCHASE, dt.date(2025, 6, 1), "till 4")]


def test_merged_rows_keep_every_consent_record(tmp_path: Path, fresh_store: Callable[[], Any]) -> None:
    src = _campaign(
        fresh_store,
        tmp_path,
        [
            ("x", REG[0], "ebr_inquiry", _ago(2), "web"),
            ("x2", REG[0].replace("+1", ""), "ebr_purchase", _ago(5), "order 9"),
        ],
    )
    kinds = [c.kind for c in src.consents.of_lead("c", "x")]
    assert kinds == [ConsentType.EBR_PURCHASE, ConsentType.EBR_INQUIRY]
    basis = _dial_all(src, NOON)["x"]["registry_basis"]
    assert basis.startswith("ebr_purchase")  # the record that lasts longest is the one named


def test_the_basis_is_on_the_attempt_row(tmp_path: Path, fresh_store: Callable[[], Any]) -> None:
    src = _campaign(fresh_store, tmp_path, [("recent", REG[0], "ebr_purchase", _ago(1), "order 5")])
    assert src.next_lead(NOON) is not None
    assert src.consents.attempt_basis("c", "recent", 1) == f"ebr_purchase {_ago(1)} (order 5), until {_ago(-17)}"


# -- the rules themselves -------------------------------------------------------------------------------------


def test_month_arithmetic_clamps_to_the_end_of_the_month() -> None:
    assert add_months(dt.date(2024, 8, 31), 18) == dt.date(2026, 2, 28)
    assert add_months(dt.date(2023, 8, 31), 6) == dt.date(2024, 2, 29)
    assert add_months(dt.date(2025, 11, 30), 3) == dt.date(2026, 2, 28)
    assert add_months(dt.date(2025, 1, 15), -13) == dt.date(2023, 12, 15)


def test_windows_are_inclusive_of_their_last_day_judged_on_the_persons_latest_date() -> None:
    bought = Consent(ConsentType.EBR_PURCHASE, dt.date(2024, 9, 4), "o")
    assert bought.expires == dt.date(2026, 3, 4)
    ny, two_zones = ["America/New_York"], ["America/Chicago", "America/New_York"]
    assert registry_exemption([bought], epoch=NOON, zones=ny) is not None  # the last day in New York
    # 23:30 in Chicago is the 5th in New York: a number that may ring in either is judged on the 5th
    late = dt.datetime(2026, 3, 4, 23, 30, tzinfo=ZoneInfo("America/Chicago")).timestamp()
    assert call_date(late, ["America/Chicago"]) == dt.date(2026, 3, 4)
    assert registry_exemption([bought], epoch=late, zones=two_zones) is None
    # no zone known (the import's scrub): the latest date anywhere, already the 5th at noon in New York
    assert call_date(NOON) == dt.date(2026, 3, 5)
    assert registry_exemption([bought], epoch=NOON) is None
    assert registry_exemption([], Purpose.TELEMARKETING, NOON) is None
    for purpose in ("charity", "political", "survey"):
        basis = registry_exemption([], purpose, NOON)
        assert basis is not None and basis.rule == f"{purpose} purpose"


# -- the campaign file and the evidence ---------------------------------------------------------------------------


def _wav(path: Path) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 10))) for i in range(8000)))


def _campaign_file(tmp_path: Path, *, purpose: str = "", leads: str = "") -> Path:
    _wav(tmp_path / "abandon.wav")
    (tmp_path / "leads.csv").write_text(leads or "lead_id,phone\nx,+12127362001\n", encoding="utf-8")
    path = tmp_path / "c.toml"
    path.write_text(
        f"""
[campaign]
abandon_message = "abandon.wav"
{purpose}

[leads]
file = "leads.csv"

[leads.columns]
lead_id = "lead_id"
consent_type = "kind"
consent_date = "when"
consent_source = "where"

[dnc]
registry = "registry"

[trunk]
caller_id = "+12127362000"

[agents]
alice = "sip:alice@127.0.0.1:5062"
""",
        encoding="utf-8",
    )
    return path


def test_campaign_purpose_is_validated(tmp_path: Path) -> None:
    leads = "lead_id,phone,kind,when,where\nx,+12127362001,,,\n"
    with pytest.raises(ConfigError) as info:
        load_campaign(_campaign_file(tmp_path, purpose='purpose = "fundraising"', leads=leads))
    assert info.value.key == "campaign.purpose" and "charity" in info.value.message
    assert load_campaign(_campaign_file(tmp_path, leads=leads)).purpose == "telemarketing"
    assert load_campaign(_campaign_file(tmp_path, purpose='purpose = "survey"', leads=leads)).purpose == "survey"


def test_the_basis_appears_in_the_call_evidence(tmp_path: Path) -> None:
    now = NationalRegistry.create(tmp_path / "registry").meta.as_of
    registry = NationalRegistry.open(tmp_path / "registry", writable=True)
    registry.apply(additions=np.array([2127362001, 2127362002], dtype=np.uint64))
    registry.close()
    today = call_date(now)
    leads = (
        "lead_id,phone,kind,when,where\n"
        f"buyer,+12127362001,ebr_purchase,{add_months(today, -6).isoformat()},order 42\n"
        "nobody,+12127362002,,,\n"
    )
    campaign = LiveCampaign.open(load_campaign(_campaign_file(tmp_path, leads=leads)), now=now)
    try:
        assert campaign.imported.accepted == 1 and [r.line for r in campaign.imported.rejected] == [3]
        # the first weekday noon in New York from now on that calling hours allow
        day = dt.datetime.fromtimestamp(now, NY).date()
        for i in range(1, 15):
            epoch = dt.datetime.combine(day + dt.timedelta(days=i), dt.time(12), NY).timestamp()
            if campaign.leads.windows.decide("+12127362001", epoch).reason is None:
                break
        lead = campaign.leads.next_lead(epoch)
        assert lead is not None and lead.lead_id == "buyer"
        record = CallRecord(call_id=1, lead=lead, outcome=Outcome.NO_ANSWER, dialed_at=epoch, ended_at=epoch + 30)
        campaign.evidence(record, {"sip_status": 480, "sip_call_id": "abc"})
    finally:
        campaign.close()
    calls = [e["data"] for e in entries(campaign.evidence_path) if e["kind"] == "call"]
    basis = calls[0]["registry_basis"]
    assert basis.startswith(f"ebr_purchase {add_months(today, -6).isoformat()} (order 42), until ")
