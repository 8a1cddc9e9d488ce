"""Calling windows: may this number be called at this instant, in the called party's local time?

The called party's local time comes from the number, and a number is dialable only when *every* candidate zone
is inside the window; no known zone: not dialed. The candidates are, together:

* every zone of the number's NANP area code, read from phonenumbers' own prefix data (an area code such as 850
  spans Central and Eastern time, although phonenumbers maps many of its exchanges to one of them), or for other
  countries the zones phonenumbers gives the number;
* the zone stated on the lead (from the CRM), *added*: the person may be at either;
* every zone of the state stated on the lead, *added* likewise.

Rule sets are per region (the number's country). The US has a federal window with per-state overrides; the
candidate states are the area code's state and the stated state, both (a stated state never replaces the area
code's); when the area code tells no state, every override applies at once (the strictest hours).

Holidays: a region may name a public-holiday calendar (:data:`DEFAULT_CALENDARS`, Australia by default), read from
the maintained ``holidays`` package, substitute and observed days included (Australia Day 2025 fell on a Sunday
and was observed on Monday 27 January). Holidays are per subdivision: the candidate subdivisions are the number's
(a US area code's state) and the stated state; when the number tells none (an Australian number: phonenumbers'
zones do not tell its state), a holiday in *any* subdivision closes the day. Campaign holiday files add fixed
dates on top (``RuleSet.holidays``).

Every refusal names its rule (:meth:`CallingWindows.explain`), and ``by_rule`` counts refusals per rule, so a
campaign can report the reach each rule costs. All hours here are defaults from ``shared/notes/regulations.md``;
items marked *verify* there are marked so in :data:`DEFAULT_RULES` too: check them with counsel before a campaign.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple
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

    def applicable_to(self, states: Iterable[str], *, number_state_known: bool) -> list[RuleSet]:
        """The rules for a person who may be in any of ``states`` (codes): base plus each one's override.

        ``number_state_known`` is whether the number itself told a state; when it did not, the person could be
        anywhere, so every override applies, whatever the lead states (a stated state adds, never narrows).
        """
        if not self.overrides:
            return [self.base]
        if not number_state_known:
            return [self.base, *self.overrides.values()]
        chosen = dict.fromkeys(s for s in states if s in self.overrides)
        return [self.base, *(self.overrides[s] for s in chosen)]


def easter(year: int) -> dt.date:
    """Gregorian Easter Sunday, from ``dateutil`` (a dependency of ``holidays``), kept for callers of the old API."""
    from dateutil.easter import easter as _easter

    return _easter(year)


#: Which public-holiday calendar (a country of the ``holidays`` package) closes calling days in each region.
#: Australia: never on a public holiday (ACMA standard). The US, UK and Canada rules name no holiday ban by
#: default; add one per campaign (``CallingWindows(calendars={"US": "US"})``) or list dates in holiday files.
DEFAULT_CALENDARS: dict[str, str] = {"AU": "AU"}


@lru_cache(maxsize=32)
def subdivisions(country: str) -> tuple[str, ...]:
    """The subdivisions the ``holidays`` package knows for ``country`` (``()`` if none or unknown country)."""
    import holidays

    return tuple(holidays.list_supported_countries().get(country, ()))


@lru_cache(maxsize=4096)
def _calendar(country: str, subdivision: str | None, year: int) -> dict[dt.date, str]:
    import holidays

    try:
        days = holidays.country_holidays(country, subdiv=subdivision, years=year)  # observed days included
    except NotImplementedError:
        raise ConfigError("holidays", f"no public-holiday calendar for {country!r}") from None
    return {d: str(name) for d, name in days.items()}


def public_holiday(country: str, day: dt.date, subdivision_candidates: Iterable[str] | None = None) -> str | None:
    """The public holiday that closes ``day`` for a person in any of ``subdivision_candidates``, or ``None``.

    ``None`` candidates (the number told no subdivision) means any subdivision: a holiday anywhere in the
    country closes the day, since the person may live there. Answers like ``"AU-NSW: Australia Day"``.
    """
    national = _calendar(country, None, day.year).get(day)
    if national is not None:
        return f"{country}: {national}"
    known = subdivisions(country)
    subs = known if subdivision_candidates is None else tuple(s for s in subdivision_candidates if s in known)
    for sub in subs:
        name = _calendar(country, sub, day.year).get(day)
        if name is not None:
            return f"{country}-{sub}: {name}"
    return None


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


#: Defaults per region, from shared/notes/regulations.md. US: federal 08:00-21:00 every day, no state overrides
#: by default (add them: ``us_rules({"TX": RuleSet...})``). UK: 08:00-21:00 (a conservative industry practice;
#: verify). Canada: 09:00-21:30 weekdays, 10:00-18:00 weekends (verify). Australia: weekdays 09:00-20:00,
#: Saturday 09:00-17:00, never on Sunday or a public holiday (from :data:`DEFAULT_CALENDARS`).
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


class Verdict(NamedTuple):
    """Why a number may not be called now (``reason``, ``None``: it may), and the rule that decided (``rule``).

    ``rule`` names what the refusal costs in reach, e.g. ``hours: US federal``, ``area-code zone``,
    ``stated zone``, ``stated state zone``, ``state hours: TX``, ``public holiday: AU-NSW``, ``holiday file``,
    ``unknown time zone``, ``no calling rules``.
    """

    reason: str | None
    rule: str | None


class CallingWindows:
    """The calling-hours gate. :meth:`check` returns why a number may not be called now, or ``None``.

    ``rules`` maps regions (``US``, ``GB``, ``CA``, ``AU``) to :class:`RegionRules`; a number of a region that has
    none is not dialed. ``calendars`` maps regions to the public-holiday calendar that closes their days
    (:data:`DEFAULT_CALENDARS` unless given). ``counts`` tallies refusals by reason (the text before ``:``) and
    ``by_rule`` by the rule that decided (see :class:`Verdict`), so a campaign can report how many leads each rule
    held back.
    """

    def __init__(
        self, rules: Mapping[str, RegionRules] | None = None, *, calendars: Mapping[str, str] | None = None
    ) -> None:
        self.rules = dict(DEFAULT_RULES if rules is None else rules)
        self.calendars = dict(DEFAULT_CALENDARS if calendars is None else calendars)
        self.counts: dict[str, int] = {}
        self.by_rule: dict[str, int] = {}
        self._next_cache: dict[tuple[object, ...], tuple[int, float | None]] = {}

    def zones(self, e164: str, time_zone: str = "", state: str = "") -> tuple[str, ...]:
        """Every candidate zone: the number's (its whole area code's, for NANP), the stated zone, the stated
        state's zones. ``()`` when the number gives none: stated ones alone are not enough to dial on."""
        own = numbers.time_zones_of(e164)
        if not own:
            return ()
        stated = numbers.state_time_zones(state) if state and e164.startswith("+1") else ()  # any NANP number
        extra = (time_zone,) if time_zone else ()
        return tuple(dict.fromkeys((*own, *extra, *stated)))

    def check(self, e164: str, epoch: float, *, time_zone: str = "", state: str = "") -> str | None:
        """Why the number may not be called at ``epoch``, or ``None``; counted in ``counts`` and ``by_rule``."""
        return self.decide(e164, epoch, time_zone=time_zone, state=state).reason

    def decide(self, e164: str, epoch: float, *, time_zone: str = "", state: str = "") -> Verdict:
        """:meth:`explain`, counted like :meth:`check`."""
        verdict = self.explain(e164, epoch, time_zone=time_zone, state=state)
        if verdict.reason is not None:
            key = verdict.reason.split(":", 1)[0]
            self.counts[key] = self.counts.get(key, 0) + 1
            rule = verdict.rule or key
            self.by_rule[rule] = self.by_rule.get(rule, 0) + 1
        return verdict

    def explain(self, e164: str, epoch: float, *, time_zone: str = "", state: str = "") -> Verdict:
        """The decision with the rule that made it (nothing counted)."""
        region = numbers.region_of(e164)
        rules = self.rules.get(region)
        if rules is None:
            return Verdict(f"no calling rules: region {region or 'unknown'}", "no calling rules")
        zones = self.zones(e164, time_zone, state)
        if not zones:
            return Verdict("unknown time zone", "unknown time zone")
        states, number_state_known = self._states(e164, region, state, rules)
        applicable: Sequence[RuleSet] = rules.applicable_to(states, number_state_known=number_state_known)
        calendar = self.calendars.get(region, "")
        subdivs = self._subdivisions(e164, region, calendar, zones, states, number_state_known) if calendar else None
        prefix_zones = set(numbers.prefix_time_zones(e164))
        area_zones = set(numbers.time_zones_of(e164))
        utc = dt.datetime.fromtimestamp(epoch, dt.UTC)
        for name in zones:
            tz = _zone(name)
            if tz is None:
                return Verdict(f"unknown time zone: {name}", "unknown time zone")
            local = utc.astimezone(tz)
            day = local.date()
            for rule in applicable:
                if day in rule.holidays:
                    return Verdict(f"outside calling hours: {rule.name} holiday {day} in {name}", "holiday file")
            if calendar:
                holiday = public_holiday(calendar, day, subdivs)
                if holiday is not None:
                    where = holiday.split(":", 1)[0]
                    return Verdict(
                        f"outside calling hours: public holiday {holiday} ({day} in {name})", f"public holiday: {where}"
                    )
            for rule in applicable:
                if not rule.allows(local):
                    if rule is not rules.base:
                        kind = f"state hours: {rule.name}"
                    elif name in prefix_zones:
                        kind = f"hours: {rule.name}"
                    elif name in area_zones:
                        kind = "area-code zone"
                    elif name == time_zone:
                        kind = "stated zone"
                    else:
                        kind = "stated state zone"
                    return Verdict(f"outside calling hours: {rule.name} in {name} at {local:%a %H:%M}", kind)
        return Verdict(None, None)

    @staticmethod
    def _states(e164: str, region: str, state: str, rules: RegionRules) -> tuple[tuple[str, ...], bool]:
        """The candidate US states (area code's, stated) and whether the number itself told one."""
        if region != "US":
            return (), True
        own = numbers.us_state_of(e164)
        stated = numbers.us_state_code(state) if state else ""
        return tuple(s for s in (own, stated) if s), bool(own)

    @staticmethod
    def _subdivisions(
        e164: str, region: str, calendar: str, zones: Sequence[str], states: Sequence[str], known: bool
    ) -> tuple[str, ...] | None:
        """Candidate holiday subdivisions; ``None``: any (the number does not tell).

        Only US area codes tell a subdivision (their state). Elsewhere the number's zones do not: phonenumbers
        gives ``Australia/Sydney`` for Melbourne's 03 as well, so a zone cannot name a state, and a holiday in any
        state closes the day (its cost shows in ``by_rule`` as ``public holiday: AU-VIC`` and the like).
        """
        if region == "US" and calendar == "US":
            return tuple(states) if known else None
        return None

    def allows(self, e164: str, epoch: float, *, time_zone: str = "", state: str = "") -> bool:
        return self.explain(e164, epoch, time_zone=time_zone, state=state).reason is None

    def next_open(self, e164: str, epoch: float, *, time_zone: str = "", state: str = "") -> float | None:
        """The first 5-minute boundary after ``epoch`` at which the number may be called, within 8 days; ``None``
        if none (unknown zone, no rules, or closed all week).

        Used to park leads until their window opens, instead of asking again at every dial. It is a hint only:
        the gate is asked again at dial time. Rule boundaries are whole minutes in practice; a rule opening off a
        5-minute mark just makes its leads wait a few minutes longer (the safe side).
        """
        region = numbers.region_of(e164)
        key: tuple[object, ...] = (
            self.zones(e164, time_zone, state),
            region,
            numbers.us_state_of(e164),
            numbers.us_state_code(state),
        )
        bucket = int(epoch // STEP) + 1
        cached = self._next_cache.get(key)
        if cached is not None and cached[0] == bucket:
            return cached[1]
        found: float | None = None
        for step in range(bucket, bucket + 8 * 86400 // STEP):
            if self.explain(e164, step * STEP, time_zone=time_zone, state=state).reason is None:
                found = float(step * STEP)
                break
        if len(self._next_cache) > 4096:
            self._next_cache.clear()
        self._next_cache[key] = (bucket, found)
        return found
