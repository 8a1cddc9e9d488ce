"""Calling hours right for every zone a number may be in, and holidays from a maintained calendar (issue 13, item 2).

The zones of an area code are read here straight from phonenumbers' prefix table, independently of the gate, so
the property below checks the gate against the package's own data.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import tzdata

from dialer.campaign import import_csv
from dialer.campaign.source import CampaignLeads
from dialer.compliance import numbers
from dialer.compliance.dnc import DoNotCall
from dialer.compliance.windows import DEFAULT_RULES, CallingWindows, RuleSet, hours, us_rules
from dialer.store import Store


def _epoch(zone: str, *args: int) -> float:
    return dt.datetime(*args, tzinfo=ZoneInfo(zone)).timestamp()  # type: ignore[misc]


@functools.cache
def _npa_zones(npa: str) -> set[str]:
    return {z for k, zs in tzdata.TIMEZONE_DATA.items() if k.startswith("1" + npa) for z in zs} - {"Etc/Unknown"}


def _offsets(zones: set[str], when: dt.datetime) -> set[dt.timedelta | None]:
    return {when.astimezone(ZoneInfo(z)).utcoffset() for z in zones}


# Every NANP area code whose zones are more than one UTC offset apart, from the package's data (not a table here).
_WHEN = dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC)
SPLIT_NPAS = sorted(
    {k[1:4] for k in tzdata.TIMEZONE_DATA if k.startswith("1") and len(k) >= 4}
    - {npa for npa in ("800", "888", "877", "866", "855", "844", "833")},
)
SPLIT_NPAS = [npa for npa in SPLIT_NPAS if len(_offsets(_npa_zones(npa), _WHEN)) > 1]


def test_the_data_has_two_zone_area_codes() -> None:
    assert {"850", "208", "605", "785"} <= set(SPLIT_NPAS)
    assert _npa_zones("850") == {"America/Chicago", "America/New_York"}
    assert numbers.prefix_time_zones("+18502345678") == ("America/Chicago",)  # the prefix alone tells one zone


def test_two_zone_area_code_is_not_dialed_while_one_zone_is_closed() -> None:
    w = CallingWindows()
    panhandle = "+18502345678"  # phonenumbers' prefix says Central; the area code also covers Eastern
    assert set(numbers.time_zones_of(panhandle)) == {"America/Chicago", "America/New_York"}
    late = _epoch("America/Chicago", 2026, 3, 4, 20, 30)  # 21:30 in Tallahassee
    assert "America/New_York" in str(w.check(panhandle, late))
    assert w.explain(panhandle, late).rule == "area-code zone"
    assert w.check(panhandle, late - 3600) is None
    idaho = "+12082345678"  # prefix says Mountain; northern Idaho is Pacific
    early = _epoch("America/Denver", 2026, 3, 4, 8, 30)  # 07:30 in Coeur d'Alene
    assert "America/Los_Angeles" in str(w.check(idaho, early))
    assert w.check(idaho, early + 3600) is None


def test_stated_state_adds_its_zones_never_replaces() -> None:
    w = CallingWindows()
    chicago = "+13125550123"
    nine = _epoch("America/Chicago", 2026, 3, 4, 9, 0)  # 07:00 in California
    assert w.check(chicago, nine) is None
    verdict = w.explain(chicago, nine, state="California")
    assert verdict.reason is not None and "Los_Angeles" in verdict.reason
    assert verdict.rule == "stated state zone"
    # and a stated state never lifts the area code's own zone: Chicago at 07:30 stays closed with state NY
    assert w.check(chicago, _epoch("America/Chicago", 2026, 3, 4, 7, 30), state="NY") is not None


def test_stated_state_adds_its_override_never_replaces_the_area_codes() -> None:
    texas_sunday = RuleSet.simple("TX", hours("09:00", "21:00"), hours("09:00", "21:00"), hours("12:00", "21:00"))
    illinois = RuleSet.simple("IL", hours("08:00", "20:00"), same_all_week=True)
    w = CallingWindows({"US": us_rules({"TX": texas_sunday, "IL": illinois})})
    sunday_10 = _epoch("America/Chicago", 2026, 3, 8, 10, 0)
    austin, chicago = "+15125550123", "+13125550123"
    assert w.explain(austin, sunday_10, state="IL").rule == "state hours: TX"  # today: Illinois replaced Texas
    assert w.check(chicago, sunday_10) is None
    assert w.explain(chicago, sunday_10, state="TX").rule == "state hours: TX"  # Texas added to Illinois
    evening = _epoch("America/Chicago", 2026, 3, 4, 20, 30)
    assert w.explain(austin, evening, state="IL").rule == "state hours: IL"


def test_australia_day_observed_on_the_monday_is_not_called() -> None:
    w = CallingWindows()
    sydney, mobile = "+61291234567", "+61412345678"
    monday = _epoch("Australia/Sydney", 2025, 1, 27, 12, 0)  # 26 January 2025 was a Sunday
    for phone in (sydney, mobile):
        reason = w.check(phone, monday)
        assert reason is not None and "Australia Day" in reason, phone
    assert w.check(sydney, monday + 86400) is None
    assert w.explain(sydney, monday).rule is not None
    assert str(w.explain(sydney, monday).rule).startswith("public holiday: AU")


def test_a_state_holiday_closes_the_day_when_the_number_does_not_tell_the_state() -> None:
    w = CallingWindows()
    cup = _epoch("Australia/Melbourne", 2025, 11, 4, 12, 0)  # Melbourne Cup: Victoria only
    verdict = w.explain("+61412345678", cup)  # a mobile could be anywhere
    assert verdict.rule == "public holiday: AU-VIC"
    assert w.check("+61412345678", cup + 86400 + 3 * 3600) is None  # 15:00 next day: 11:00 on Christmas Island


def test_us_calendar_follows_the_area_codes_state_and_the_stated_one() -> None:
    w = CallingWindows(calendars={"US": "US"})
    patriots_day = _epoch("America/New_York", 2026, 4, 20, 12, 0)  # Massachusetts and Maine only
    boston, new_york = "+16175550143", "+12125550143"
    assert w.explain(boston, patriots_day).rule == "public holiday: US-MA"
    assert w.check(new_york, patriots_day) is None
    assert w.explain(new_york, patriots_day, state="MA").rule == "public holiday: US-MA"  # added, not replaced
    assert w.check(new_york, _epoch("America/New_York", 2026, 1, 1, 12, 0)) is not None  # federal holiday


def test_campaign_holiday_files_apply_on_top_of_the_calendar() -> None:
    au = DEFAULT_RULES["AU"]
    mine = type(au)(au.base.with_holidays([dt.date(2025, 1, 28)]), au.overrides)
    w = CallingWindows({**DEFAULT_RULES, "AU": mine})
    sydney = "+61291234567"
    assert w.explain(sydney, _epoch("Australia/Sydney", 2025, 1, 28, 12, 0)).rule == "holiday file"
    assert w.check(sydney, _epoch("Australia/Sydney", 2025, 1, 27, 12, 0)) is not None  # and the package's
    assert w.check(sydney, _epoch("Australia/Sydney", 2025, 1, 29, 12, 0)) is None


def test_reach_each_rule_costs_is_counted_with_stable_held_keys() -> None:
    store = Store(":memory:")
    data = "phone,state\n8502345678,\n3125550123,CA\n3125550124,\n"
    import_csv(io.StringIO(data), store, "c")
    src = CampaignLeads(store, "c", dnc=DoNotCall(require_registry=False))
    src.epoch_offset = _epoch("America/Chicago", 2026, 3, 4, 20, 30)  # 21:30 Eastern, 18:30 Pacific
    dialed = [lead.phone for lead in iter(lambda: src.next_lead(0.0), None)]
    assert dialed == ["+13125550123", "+13125550124"]  # stated California adds a zone that is open: dialed
    assert src.held == {"outside calling hours": 1}
    assert src.held_by_rule == {"area-code zone": 1}
    src.epoch_offset = _epoch("America/Chicago", 2026, 3, 5, 9, 0)  # 07:00 Pacific
    store.update_lead("c", "+13125550123", status="ready", next_at=0.0)
    assert src.next_lead(0.0) is not None  # the 850 number (10:00 Eastern) goes; the stated-CA lead waits
    assert src.next_lead(1.0) is None
    assert dict(src.reach()) == {"area-code zone": 1, "stated state zone": 1}


# -- property: no dial when any candidate zone is closed ---------------------------------------------------------

_STATED_ZONES = ["", "America/New_York", "America/Los_Angeles", "Pacific/Honolulu", "America/Anchorage"]
_STATED_STATES = ["", "TX", "California", "ID", "FL", "ND", "Alaska"]


@functools.cache
def _state_zones(code: str) -> set[str]:
    """Every zone of every area code the geocoder places in the state, read from the data directly."""
    from phonenumbers import geodata

    return {
        z
        for k, names in geodata.GEOCODE_DATA.items()
        if len(k) == 4 and k.startswith("1") and numbers.us_state_code(names.get("en", "")) == code
        for z in _npa_zones(k[1:])
    }


def _inside(rules: RuleSet, zone: str, epoch: float) -> bool:
    return rules.allows(dt.datetime.fromtimestamp(epoch, ZoneInfo(zone)))


@settings(max_examples=400, deadline=None)
@given(
    npa=st.sampled_from(SPLIT_NPAS),
    line=st.integers(2_000_000, 9_999_999),
    epoch=st.integers(1_750_000_000, 1_850_000_000),
    zone=st.sampled_from(_STATED_ZONES),
    state=st.sampled_from(_STATED_STATES),
)
def test_property_no_dial_when_any_candidate_zone_is_closed(
    npa: str, line: int, epoch: int, zone: str, state: str
) -> None:
    phone = f"+1{npa}{line}"
    w = CallingWindows()
    candidates = _npa_zones(npa) | ({zone} if zone else set())
    if state:
        candidates |= _state_zones(numbers.us_state_code(state))
    if w.allows(phone, epoch, time_zone=zone, state=state):
        rules = DEFAULT_RULES[numbers.region_of(phone)].base  # US or Canada: the NANP shares area codes
        closed = [z for z in candidates if not _inside(rules, z, epoch)]
        assert not closed, (phone, zone, state, closed)
