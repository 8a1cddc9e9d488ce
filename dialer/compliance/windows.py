"""Calling windows: may this number be called at this instant, in the called party's local time?

The called party's local time comes from the number: ``phonenumbers`` gives every IANA zone its prefix may ring
in, and a number is dialable only when *every* candidate zone is inside the window (an area code spanning two
zones is called only when both are open). A zone stated on the lead (from the CRM) is added to the candidates,
never substituted: the person may be at either. A number with no known zone is not dialed.

Rule sets are per region (the number's country). The US has a federal window with per-state overrides; the
state comes from the lead (``state`` field) or, failing that, the area code; when neither tells, every state
override applies at once (the strictest hours), since the person could be in any of them. Holidays are local
dates from a configurable calendar. All hours here are defaults from ``shared/notes/regulations.md``; items
marked *verify* there are marked so in :data:`DEFAULT_RULES` too: check them with counsel before a campaign.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dialer.compliance import numbers
from dialer.errors import ConfigError

Hours = tuple[int, int] | None  # minutes after local midnight [start, end), or None: closed all day
STEP = 300  # seconds: the granularity of next_open


def hours(start: str, end: str) -> tuple[int, int]:
    """``hours("08:00", "21:00")`` as minutes after midnight, checked."""

    def minutes(text: str) -> int:
        try:
            h, m = text.split(":")
            value = int(h) * 60 + int(m)
        except ValueError:
            raise ConfigError("hours", f"{text!r} is not HH:MM") from None
        if not 0 <= value <= 24 * 60 or not 0 <= int(m) < 60:
            raise ConfigError("hours", f"{text!r} is not a time of day")
        return value

    a, b = minutes(start), minutes(end)
    if a >= b:
        raise ConfigError("hours", f"{start}-{end} is empty")
    return a, b


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Calling hours for each day of the week (Monday first) and local dates on which no call is made."""

    name: str
    days: tuple[Hours, Hours, Hours, Hours, Hours, Hours, Hours]
    holidays: frozenset[dt.date] = field(default_factory=frozenset)

    @classmethod
    def simple(
        cls,
        name: str,
        weekday: Hours,
        saturday: Hours | None = None,
        sunday: Hours | None = None,
        *,
        holidays: Iterable[dt.date] = (),
        same_all_week: bool = False,
    ) -> RuleSet:
        """Weekday hours and, optionally, Saturday and Sunday hours (``None`` closes the day unless
        ``same_all_week``)."""
        sat = weekday if same_all_week and saturday is None else saturday
        sun = weekday if same_all_week and sunday is None else sunday
        return cls(name, (weekday, weekday, weekday, weekday, weekday, sat, sun), frozenset(holidays))

    def allows(self, local: dt.datetime) -> bool:
        if local.date() in self.holidays:
            return False
        window = self.days[local.weekday()]
        if window is None:
            return False
        minute = local.hour * 60 + local.minute
        return window[0] <= minute < window[1]

    def with_holidays(self, dates: Iterable[dt.date]) -> RuleSet:
        return RuleSet(self.name, self.days, self.holidays | frozenset(dates))


@dataclass(frozen=True, slots=True)
class RegionRules:
    """A region's base rules and its sub-region (US state) overrides, each of which applies *on top of* base."""

    base: RuleSet
    overrides: Mapping[str, RuleSet] = field(default_factory=dict)

    def applicable(self, state: str) -> list[RuleSet]:
        if not self.overrides:
            return [self.base]
        if state in self.overrides:
            return [self.base, self.overrides[state]]
        if state:
            return [self.base]
        return [self.base, *self.overrides.values()]  # state unknown: the strictest of all


def easter(year: int) -> dt.date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month = (h + l_ - 7 * m + 114) // 31
    day = (h + l_ - 7 * m + 114) % 31 + 1
    return dt.date(year, month, day)


def australia_national_holidays(years: Iterable[int]) -> frozenset[dt.date]:
    """Australia's national public holidays (the dates themselves; state substitutes and additions are not
    included: add them through the calendar). verify"""
    out: set[dt.date] = set()
    for y in years:
        e = easter(y)
        out |= {
            dt.date(y, 1, 1),
            dt.date(y, 1, 26),
            e - dt.timedelta(days=2),
            e + dt.timedelta(days=1),
            dt.date(y, 4, 25),
            dt.date(y, 12, 25),
            dt.date(y, 12, 26),
        }
    return frozenset(out)


def load_holidays(path: str | Path) -> frozenset[dt.date]:
    """A holiday calendar file: one ISO date (``2026-12-25``) per line; ``#`` starts a comment."""
    out: set[dt.date] = set()
    for line_no, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            out.add(dt.date.fromisoformat(text))
        except ValueError:
            raise ConfigError(f"{path}:{line_no}", f"{text!r} is not an ISO date") from None
    return frozenset(out)


_YEARS = range(2020, 2041)

#: Defaults per region, from shared/notes/regulations.md. US: federal 08:00-21:00 every day, no state overrides
#: by default (add them: ``us_rules({"TX": RuleSet...})``). UK: 08:00-21:00 (a conservative industry practice;
#: verify). Canada: 09:00-21:30 weekdays, 10:00-18:00 weekends (verify). Australia: weekdays 09:00-20:00,
#: Saturday 09:00-17:00, never on Sunday or a national public holiday.
DEFAULT_RULES: dict[str, RegionRules] = {
    "US": RegionRules(RuleSet.simple("US federal", hours("08:00", "21:00"), same_all_week=True)),
    "GB": RegionRules(RuleSet.simple("UK", hours("08:00", "21:00"), same_all_week=True)),
    "CA": RegionRules(
        RuleSet.simple("Canada", hours("09:00", "21:30"), hours("10:00", "18:00"), hours("10:00", "18:00"))
    ),
    "AU": RegionRules(
        RuleSet.simple(
            "Australia",
            hours("09:00", "20:00"),
            hours("09:00", "17:00"),
            None,
            holidays=australia_national_holidays(_YEARS),
        )
    ),
}


def us_rules(state_overrides: Mapping[str, RuleSet], federal: RuleSet | None = None) -> RegionRules:
    """US rules with per-state overrides keyed by two-letter code (names are accepted and converted)."""
    out: dict[str, RuleSet] = {}
    for key, rules in state_overrides.items():
        code = numbers.us_state_code(key)
        if not code:
            raise ConfigError(f"states.{key}", "not a US state")
        out[code] = rules
    return RegionRules(federal or DEFAULT_RULES["US"].base, out)


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


class CallingWindows:
    """The calling-hours gate. :meth:`check` returns why a number may not be called now, or ``None``.

    ``rules`` maps regions (``US``, ``GB``, ``CA``, ``AU``) to :class:`RegionRules`; a number of a region that has
    none is not dialed. ``counts`` tallies refusals by reason, so a campaign can report how many leads were held
    back (unknown zones above all).
    """

    def __init__(self, rules: Mapping[str, RegionRules] | None = None) -> None:
        self.rules = dict(DEFAULT_RULES if rules is None else rules)
        self.counts: dict[str, int] = {}
        self._next_cache: dict[tuple[object, ...], tuple[int, float | None]] = {}

    def zones(self, e164: str, time_zone: str = "") -> tuple[str, ...]:
        extra = (time_zone,) if time_zone else ()
        return tuple(dict.fromkeys((*numbers.time_zones_of(e164), *extra)))

    def check(self, e164: str, epoch: float, *, time_zone: str = "", state: str = "") -> str | None:
        reason = self._check(e164, epoch, time_zone, state)
        if reason is not None:
            key = reason.split(":", 1)[0]
            self.counts[key] = self.counts.get(key, 0) + 1
        return reason

    def _check(self, e164: str, epoch: float, time_zone: str, state: str) -> str | None:
        region = numbers.region_of(e164)
        rules = self.rules.get(region)
        if rules is None:
            return f"no calling rules: region {region or 'unknown'}"
        zones = self.zones(e164, time_zone)
        if not zones:
            return "unknown time zone"
        if region == "US" and rules.overrides:
            state = numbers.us_state_code(state) or numbers.us_state_of(e164)
        applicable: Sequence[RuleSet] = rules.applicable(state)
        utc = dt.datetime.fromtimestamp(epoch, dt.UTC)
        for name in zones:
            tz = _zone(name)
            if tz is None:
                return f"unknown time zone: {name}"
            local = utc.astimezone(tz)
            for rule in applicable:
                if not rule.allows(local):
                    return f"outside calling hours: {rule.name} in {name} at {local:%a %H:%M}"
        return None

    def allows(self, e164: str, epoch: float, *, time_zone: str = "", state: str = "") -> bool:
        return self._check(e164, epoch, time_zone, state) is None

    def next_open(self, e164: str, epoch: float, *, time_zone: str = "", state: str = "") -> float | None:
        """The first 5-minute boundary after ``epoch`` at which the number may be called, within 8 days; ``None``
        if none (unknown zone, no rules, or closed all week).

        Used to park leads until their window opens, instead of asking again at every dial. It is a hint only:
        the gate is asked again at dial time. Rule boundaries are whole minutes in practice; a rule opening off a
        5-minute mark just makes its leads wait a few minutes longer (the safe side).
        """
        key = (self.zones(e164, time_zone), numbers.region_of(e164), state or numbers.us_state_of(e164))
        bucket = int(epoch // STEP) + 1
        cached = self._next_cache.get(key)
        if cached is not None and cached[0] == bucket:
            return cached[1]
        found: float | None = None
        for step in range(bucket, bucket + 8 * 86400 // STEP):
            if self._check(e164, step * STEP, time_zone, state) is None:
                found = float(step * STEP)
                break
        if len(self._next_cache) > 4096:
            self._next_cache.clear()
        self._next_cache[key] = (bucket, found)
        return found
