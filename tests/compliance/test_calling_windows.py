"""Calling windows: every candidate zone, unknown zones, state overrides, weekend and holiday rules."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.compliance import numbers
from dialer.compliance.windows import (
    DEFAULT_RULES,
    CallingWindows,
    RegionRules,
    RuleSet,
    easter,
    hours,
    load_holidays,
    us_rules,
)
from dialer.errors import ConfigError


def _epoch(zone: str, *args: int) -> float:
    return dt.datetime(*args, tzinfo=ZoneInfo(zone)).timestamp()  # type: ignore[misc]


def test_single_zone_us_window_edges() -> None:
    w = CallingWindows()
    dc = "+12025550123"
    assert w.check(dc, _epoch("America/New_York", 2026, 3, 4, 7, 59)) is not None
    assert w.check(dc, _epoch("America/New_York", 2026, 3, 4, 8, 0)) is None
    assert w.check(dc, _epoch("America/New_York", 2026, 3, 4, 20, 59)) is None
    assert w.check(dc, _epoch("America/New_York", 2026, 3, 4, 21, 0)) is not None


def test_number_spanning_zones_needs_every_zone_open() -> None:
    w = CallingWindows()
    alaska = "+19075550123"  # Anchorage and Adak, an hour apart
    assert set(numbers.time_zones_of(alaska)) >= {"America/Anchorage", "America/Adak"}  # every zone of 907
    t = _epoch("America/Anchorage", 2026, 3, 4, 8, 30)  # 07:30 on Adak
    assert "America/Adak" in str(w.check(alaska, t))
    assert w.check(alaska, t + 3600) is None


def test_stated_zone_is_added_to_the_candidates_not_substituted() -> None:
    w = CallingWindows()
    t = _epoch("America/New_York", 2026, 3, 4, 9, 0)  # 06:00 in Los Angeles
    assert w.check("+12025550123", t) is None
    assert "Los_Angeles" in str(w.check("+12025550123", t, time_zone="America/Los_Angeles"))


def test_unknown_zone_and_unknown_region_are_not_dialed_and_counted() -> None:
    anytime = RegionRules(RuleSet.simple("any", (0, 1440), same_all_week=True))
    w = CallingWindows({**DEFAULT_RULES, "001": anytime})
    t = _epoch("UTC", 2026, 3, 4, 12, 0)
    assert w.check("+883510012345", t) == "unknown time zone"
    assert w.check("+33142685300", t) is not None  # France: no rule set configured
    assert w.counts == {"unknown time zone": 1, "no calling rules": 1}


def test_state_overrides_and_strictest_when_state_unknown() -> None:
    texas_sunday = RuleSet.simple("TX", hours("09:00", "21:00"), hours("09:00", "21:00"), hours("12:00", "21:00"))
    w = CallingWindows({"US": us_rules({"Texas": texas_sunday})})
    sunday_10 = _epoch("America/Chicago", 2026, 3, 8, 10, 0)
    austin = "+15125550123"
    assert numbers.us_state_of(austin) == "TX"
    assert "TX" in str(w.check(austin, sunday_10))
    # the lead says Illinois: that adds Illinois, it does not remove the area code's Texas (issue 13)
    assert "TX" in str(w.check(austin, sunday_10, state="IL"))
    chicago = "+13125550123"
    assert w.check(chicago, sunday_10) is None
    assert w.check(chicago, sunday_10, state="tx") is not None
    # toll-free: no state from the area code, so Texas rules apply too (and every zone)
    assert w.check("+18885550123", _epoch("America/Chicago", 2026, 3, 8, 13, 0)) is not None
    with pytest.raises(ConfigError):
        us_rules({"Atlantis": texas_sunday})


def test_australia_weekend_and_holidays() -> None:
    w = CallingWindows()
    syd = "+61291234567"
    assert w.check(syd, _epoch("Australia/Sydney", 2026, 3, 4, 19, 30)) is None  # Wednesday
    assert w.check(syd, _epoch("Australia/Sydney", 2026, 3, 7, 17, 30)) is not None  # Saturday after 17:00
    assert w.check(syd, _epoch("Australia/Sydney", 2026, 3, 7, 16, 30)) is None
    assert w.check(syd, _epoch("Australia/Sydney", 2026, 3, 8, 12, 0)) is not None  # Sunday
    assert easter(2026) == dt.date(2026, 4, 5)
    assert w.check(syd, _epoch("Australia/Sydney", 2026, 4, 3, 12, 0)) is not None  # Good Friday
    assert w.check(syd, _epoch("Australia/Sydney", 2026, 12, 25, 12, 0)) is not None


def test_canada_weekend_hours() -> None:
    w = CallingWindows()
    toronto = "+14165550123"
    assert w.check(toronto, _epoch("America/Toronto", 2026, 3, 4, 21, 15)) is None
    assert w.check(toronto, _epoch("America/Toronto", 2026, 3, 7, 9, 30)) is not None
    assert w.check(toronto, _epoch("America/Toronto", 2026, 3, 7, 10, 30)) is None


def test_configurable_holiday_calendar(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "hol.txt"
    path.write_text("# UK bank holidays\n2026-05-04\n")
    uk = DEFAULT_RULES["GB"].base.with_holidays(load_holidays(path))
    w = CallingWindows({"GB": RegionRules(uk)})
    assert w.check("+442079460018", _epoch("Europe/London", 2026, 5, 4, 12, 0)) is not None
    assert w.check("+442079460018", _epoch("Europe/London", 2026, 5, 5, 12, 0)) is None
    path.write_text("2026-13-01\n")
    with pytest.raises(ConfigError, match="ISO date"):
        load_holidays(path)


def _any_au_holiday(day: dt.date) -> bool:
    import holidays

    subs = [None, *holidays.list_supported_countries()["AU"]]
    return any(day in holidays.country_holidays("AU", subdiv=s, years=day.year) for s in subs)


_POOL = ["+12025550123", "+19075550123", "+18885550123", "+15125550123", "+61412345678", "+14165550123"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_POOL), st.integers(1_700_000_000, 1_900_000_000))
def test_property_allowed_only_when_every_candidate_zone_is_inside(phone: str, epoch: int) -> None:
    w = CallingWindows()
    rules = DEFAULT_RULES[numbers.region_of(phone)].base
    zones = numbers.time_zones_of(phone)
    inside = []
    for z in zones:
        local = dt.datetime.fromtimestamp(epoch, ZoneInfo(z))
        window = rules.days[local.weekday()]
        minute = local.hour * 60 + local.minute
        holiday = local.date() in rules.holidays or (
            numbers.region_of(phone) == "AU" and _any_au_holiday(local.date())  # a mobile: any state's holidays
        )
        inside.append(window is not None and window[0] <= minute < window[1] and not holiday)
    assert w.allows(phone, epoch) == all(inside)
