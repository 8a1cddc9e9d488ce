"""Consent records and the exemptions from the national do-not-call registry.

Why this module exists: a number on the national registry may still be called when the law exempts the call, and
a dialer that cannot say *why* it called a registry number has no defence in an audit. The exemptions it knows
(US Telemarketing Sales Rule, 16 CFR 310.4(b)(1)(iii)(B) and 310.2; FCC 47 CFR 64.1200(c)(2)):

* an **established business relationship** (EBR) with the person: up to 18 months after their last purchase or
  transaction (``ebr_purchase``), or 3 months after their last inquiry or application (``ebr_inquiry``);
* the person's **express agreement in writing** to be called by this seller (``express_written``): it does not
  lapse with time, it ends when the person withdraws it, which is an opt-out;
* the campaign's **purpose**: calls by or for a charity, political calls and surveys are outside the registry
  rules (``charity``, ``political``, ``survey``); ordinary ``telemarketing`` (the default) has no exemption.

Each exempts from the NATIONAL REGISTRY ONLY. A company's own do-not-call list and an opt-out (a person who asked
this company not to call, on a call or otherwise) are never exempted by anything here: :func:`registry_exemption`
is only asked after :class:`~dialer.compliance.dnc.DoNotCall` said "national registry", and the dial-time gate
never asks it for "internal list". A charity's callers must still honour the charity's own list, and do.

Month arithmetic is calendar math (stdlib :mod:`calendar`, no dateutil): add the months to the year and month,
keep the day, and clamp it to the last day of the target month (2024-08-31 + 18 months = 2026-02-28). A record is
a basis through its expiry date inclusive: the TSR counts the 18 months "immediately preceding the date of the
call". The date of a call is the called party's: the latest local date among every zone the number may ring in
(the dial-time gate passes them), and, when no zone is known, the latest calendar date anywhere on Earth at that
instant (UTC+14). Either way a record is never used a day past its window wherever the person is; without zones
(the import-time scrub) it may end up to a day early, never late.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from dialer.errors import DialerError

EBR_PURCHASE_MONTHS = 18
EBR_INQUIRY_MONTHS = 3

#: The zone whose date is the latest anywhere (Kiribati, UTC+14): "today" for every expiry check.
_LATEST = dt.timezone(dt.timedelta(hours=14))


class ConsentError(DialerError, ValueError):
    """A consent record that cannot be used (unknown type, unreadable or future date); the message is the reason
    an import rejects the row with."""


class ConsentType(StrEnum):
    """What the person did that lets them be called despite the national registry."""

    EXPRESS_WRITTEN = "express_written"
    EBR_PURCHASE = "ebr_purchase"
    EBR_INQUIRY = "ebr_inquiry"


#: Other spellings a lead file may use for the same types (the TSR's own words).
ALIASES = {
    "ebr_transaction": ConsentType.EBR_PURCHASE,
    "ebr_application": ConsentType.EBR_INQUIRY,
    "written": ConsentType.EXPRESS_WRITTEN,
}


class Purpose(StrEnum):
    """Why the campaign calls. Only ``telemarketing`` (the default) is subject to the national registry."""

    TELEMARKETING = "telemarketing"
    CHARITY = "charity"
    POLITICAL = "political"
    SURVEY = "survey"


EXEMPT_PURPOSES = frozenset({Purpose.CHARITY, Purpose.POLITICAL, Purpose.SURVEY})


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus ``months`` calendar months, the day clamped to the target month's length (Jan 31 + 1 = Feb 28
    or 29): the reading under which "18 months after" never lands in the month after next."""
    total = day.year * 12 + (day.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def call_date(epoch: float, zones: Iterable[str] = ()) -> dt.date:
    """The date a call at ``epoch`` is judged on: the latest local date among ``zones`` (IANA names), or the
    latest calendar date anywhere when there are none or one is unknown (see the module docstring)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    days: list[dt.date] = []
    for name in zones:
        try:
            days.append(dt.datetime.fromtimestamp(epoch, ZoneInfo(name)).date())
        except (ZoneInfoNotFoundError, ValueError, OSError):
            days = []  # one zone we cannot read: judge on the latest date anywhere instead
            break
    return max(days) if days else dt.datetime.fromtimestamp(epoch, _LATEST).date()


@dataclass(frozen=True, slots=True)
class Consent:
    """One consent record of a lead: its type, the date of the act (purchase, inquiry, signature), and where the
    record came from (an order number, a form, a file): what an auditor asks for."""

    kind: ConsentType
    date: dt.date
    source: str = ""

    @property
    def expires(self) -> dt.date | None:
        """The last date the record is a basis (inclusive); ``None``: until withdrawn (an opt-out ends it)."""
        if self.kind is ConsentType.EBR_PURCHASE:
            return add_months(self.date, EBR_PURCHASE_MONTHS)
        if self.kind is ConsentType.EBR_INQUIRY:
            return add_months(self.date, EBR_INQUIRY_MONTHS)
        return None

    def valid_on(self, day: dt.date) -> bool:
        """Whether the record is a basis for a call on ``day``: made by then, and not expired."""
        end = self.expires
        return self.date <= day and (end is None or day <= end)


def parse_consent(kind: str, date: str, source: str = "", *, today: dt.date | None = None) -> Consent:
    """A consent record from a lead file's cells, or :class:`ConsentError` saying why not.

    Checked at the boundary so a typo never becomes a basis: the type must be one this module knows, the date
    ISO ``YYYY-MM-DD`` and, when ``today`` is given, not after it (a consent dated in the future is a data error,
    and would otherwise stretch an EBR window).
    """
    key = kind.strip().lower()
    try:
        ctype = ALIASES.get(key) or ConsentType(key)
    except ValueError:
        known = ", ".join([*(t.value for t in ConsentType), *ALIASES])
        raise ConsentError(f"unknown consent type {kind!r} (one of {known})") from None
    text = date.strip()
    if not text:
        raise ConsentError(f"consent type {ctype.value} without a consent date")
    try:
        when = dt.date.fromisoformat(text)
    except ValueError:
        raise ConsentError(f"consent date {date!r} is not a date (YYYY-MM-DD)") from None
    if len(text) != 10:  # fromisoformat also reads 20250131 and 2025-W05-1: one spelling only
        raise ConsentError(f"consent date {date!r} is not a date (YYYY-MM-DD)")
    if today is not None and when > today:
        raise ConsentError(f"consent date {text} is in the future")
    return Consent(ctype, when, source.strip())


def parse_purpose(value: str) -> Purpose:
    """The campaign's purpose, or :class:`ConsentError` naming the ones allowed."""
    try:
        return Purpose(value.strip().lower())
    except ValueError:
        raise ConsentError(f"unknown purpose {value!r} (one of {', '.join(p.value for p in Purpose)})") from None


@dataclass(frozen=True, slots=True)
class Basis:
    """Why a national-registry number may be called: the rule, the record it rests on (``None`` for a campaign
    purpose) and the last date it holds (``None``: no expiry)."""

    rule: str
    record: Consent | None = None
    expires: dt.date | None = None

    def describe(self) -> str:
        """One line for the evidence log and the attempt row, e.g.
        ``ebr_purchase 2025-01-10 (order 881), until 2026-07-10``."""
        text = self.rule
        if self.record is not None:
            text += f" {self.record.date.isoformat()}"
            if self.record.source:
                text += f" ({self.record.source})"
        if self.expires is not None:
            text += f", until {self.expires.isoformat()}"
        return text


def registry_exemption(
    consents: Iterable[Consent],
    purpose: Purpose | str = Purpose.TELEMARKETING,
    epoch: float = 0.0,
    zones: Iterable[str] = (),
) -> Basis | None:
    """The recorded basis on which a number found on the NATIONAL REGISTRY may be called at ``epoch``, or ``None``.

    Never ask this for a number on the company list or one that opted out: nothing exempts those. Preference:
    express written consent (it does not lapse), then the EBR record that lasts longest, then the campaign's
    purpose; an expired or future-dated record is no basis. ``zones``: where the number may ring (see
    :func:`call_date`).
    """
    day = call_date(epoch, zones)
    valid = [c for c in consents if c.valid_on(day)]
    written = [c for c in valid if c.kind is ConsentType.EXPRESS_WRITTEN]
    if written:
        best = max(written, key=lambda c: c.date)
        return Basis(best.kind.value, best, None)
    ebr = [c for c in valid if c.expires is not None]
    if ebr:
        best = max(ebr, key=lambda c: (c.expires, c.date))
        return Basis(best.kind.value, best, best.expires)
    chosen = Purpose(purpose)
    if chosen in EXEMPT_PURPOSES:
        return Basis(f"{chosen.value} purpose")
    return None


def expired_records(consents: Iterable[Consent], epoch: float, zones: Iterable[str] = ()) -> list[Consent]:
    """The records that are no longer (or not yet) a basis at ``epoch``: named in a hold's evidence."""
    day = call_date(epoch, zones)
    return [c for c in consents if not c.valid_on(day)]
