"""The compliance gates run identically under the simulator: a simulated campaign over a real call list, with
do-not-call numbers and two time zones, never dials a listed number or outside a called party's hours."""

from __future__ import annotations

import datetime as dt
import io
from zoneinfo import ZoneInfo

from dialer.campaign import ColumnMapping, import_csv
from dialer.campaign.source import CampaignLeads
from dialer.compliance.dnc import DoNotCall
from dialer.engine.records import CallRecord
from dialer.leads import Lead, LeadSource
from dialer.store import Store
from sim import scenario as scenarios
from sim.runtime import SimulatedCampaign

EASTERN = ZoneInfo("America/New_York")
PACIFIC = ZoneInfo("America/Los_Angeles")
# Wednesday 2026-03-04, 07:00 in Washington: nobody may be called for the first hour, Pacific for four.
START = dt.datetime(2026, 3, 4, 7, 0, tzinfo=EASTERN).timestamp()


class Recording:
    """Wraps a lead source and notes when each lead was handed out (wall-clock epoch seconds)."""

    def __init__(self, inner: LeadSource, offset: float) -> None:
        self.inner = inner
        self.offset = offset
        self.dials: list[tuple[float, str]] = []
        self.records: list[CallRecord] = []

    def next_lead(self, now: float) -> Lead | None:
        lead = self.inner.next_lead(now)
        if lead is not None:
            self.dials.append((now + self.offset, lead.phone))
        return lead

    def report(self, record: CallRecord) -> None:
        self.records.append(record)
        self.inner.report(record)


def test_simulated_campaign_keeps_dnc_and_calling_windows() -> None:
    rows = ["phone"]
    rows += [f"202555{i:04d}" for i in range(100, 250)]  # Washington DC: Eastern
    rows += [f"310555{i:04d}" for i in range(100, 250)]  # Los Angeles: Pacific
    store = Store(":memory:")
    report = import_csv(io.StringIO("\n".join(rows) + "\n"), store, "sim", ColumnMapping())
    assert report.accepted == 300
    dnc = DoNotCall(require_registry=False)
    listed = {f"+1202555{i:04d}" for i in range(100, 250, 7)} | {f"+1310555{i:04d}" for i in range(100, 250, 9)}
    for phone in listed:
        dnc.opt_out(phone)
    source = Recording(CampaignLeads(store, "sim", dnc=dnc, epoch_offset=START), START)
    scenario = scenarios.default().replace(agents=5, hours=6.0, replications=1, policy="predictive")
    result = SimulatedCampaign(scenario, 0, leads=source).run()

    assert source.dials, "the campaign dialed nobody"
    assert result.totals["dials"] == len(source.dials) == len(source.records)
    assert not {phone for _, phone in source.dials} & listed
    for when, phone in source.dials:
        zone = EASTERN if phone.startswith("+1202") else PACIFIC
        local = dt.datetime.fromtimestamp(when, zone)
        assert 8 <= local.hour < 21, (phone, local)
    first_pacific = min(when for when, phone in source.dials if phone.startswith("+1310"))
    assert dt.datetime.fromtimestamp(first_pacific, PACIFIC).hour == 8
    # Pacing never launched more calls than the source would allow: every dial has exactly one record.
    assert {r.call_id for r in source.records} == set(range(1, len(source.dials) + 1))
