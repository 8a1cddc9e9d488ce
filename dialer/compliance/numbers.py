"""Telephone numbers: normalising to E.164, and what a number says about where (and when) it rings.

Everything here goes through ``phonenumbers`` (Google's libphonenumber metadata), imported lazily because its
metadata is large. Results are cached per number: a campaign asks the same questions of the same numbers at every
dial-time check.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from dialer.errors import DialerError

UNKNOWN_ZONE = "Etc/Unknown"


class NumberError(DialerError, ValueError):
    """A string that is not a valid, dialable telephone number; the message names it and says why.

    ``raw`` keeps the input as given, so a caller refusing an opt-out or a list entry can show exactly what it
    refused (an opt-out silently dropped is a person called against their wish).
    """

    def __init__(self, raw: str, reason: str) -> None:
        self.raw = raw
        self.reason = reason
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        super().__init__(f"{shown!r}: {reason}")


def _pn() -> Any:
    import phonenumbers

    return phonenumbers


def normalize(raw: str, default_region: str = "US") -> str:
    """``raw`` as E.164 (``+12025550123``), or :class:`NumberError` naming ``raw`` and saying why not.

    This is the one normaliser: leads, opt-outs, company lists, bus commands and the do-not-call check all go
    through it, because every list is matched on the exact E.164 string and a number spelt two ways would
    otherwise be two numbers. ``default_region`` is used for numbers written without a country code. A leading
    ``00`` that does not parse as a national number is read as the international prefix most of the world uses
    (``001 617 555 0143`` is ``+16175550143`` even with ``US``, whose own prefix is ``011``). Numbers that parse
    but are not valid for their region (wrong length, unassigned prefix) are refused: dialing them only costs
    money and abandoned call risk, and a list entry that is not a number blocks nothing.
    """
    if not isinstance(raw, str):
        raise NumberError(repr(raw), "not a string")
    text = raw.strip()
    if not text:
        raise NumberError(raw, "empty phone number")
    if len(text) > 64:
        raise NumberError(raw, "phone number too long")
    try:
        return _parse_e164(text, default_region)
    except NumberError as first:
        if _IDD_00.match(text):
            try:
                return _parse_e164("+" + _IDD_00.sub("", text, count=1), None)
            except NumberError:
                pass
        raise NumberError(raw, first.reason) from None


_IDD_00 = re.compile(r"0[\s.\-]*0[\s.\-]*")  # '00', '0 0', '00-': the international prefix of most countries


def _parse_e164(text: str, region: str | None) -> str:
    pn = _pn()
    try:
        number = pn.parse(text, region)
    except pn.NumberParseException as exc:
        raise NumberError(text, f"not a phone number ({exc._msg})") from None
    if not pn.is_valid_number(number):
        raise NumberError(text, "not a valid number for its region")
    return str(pn.format_number(number, pn.PhoneNumberFormat.E164))


_E164_SHAPE = re.compile(r"\+[1-9][0-9]{5,14}")


@lru_cache(maxsize=1 << 18)
def is_e164(text: str) -> bool:
    """Whether ``text`` is already a valid number in its one E.164 spelling (what every list is keyed by).

    ``+4402071234567`` has E.164's shape but is not its number's spelling (``+442071234567``): a lookup with it
    would miss the list entry, so it is not E.164 here. Cached: the do-not-call check asks at every dial.
    """
    if not _E164_SHAPE.fullmatch(text):
        return False
    try:
        return _parse_e164(text, None) == text
    except NumberError:
        return False


@lru_cache(maxsize=65536)
def region_of(e164: str) -> str:
    """The ISO region of an E.164 number (``US``, ``CA``, ``GB``, ...), or ``""`` if unknown."""
    pn = _pn()
    try:
        number = pn.parse(e164, None)
    except pn.NumberParseException:
        return ""
    return str(pn.region_code_for_number(number) or "")


@lru_cache(maxsize=65536)
def prefix_time_zones(e164: str) -> tuple[str, ...]:
    """The zones phonenumbers gives for the number's longest known prefix (often one zone of several)."""
    pn = _pn()
    from phonenumbers import timezone as pn_tz

    try:
        number = pn.parse(e164, None)
    except pn.NumberParseException:
        return ()
    return tuple(z for z in pn_tz.time_zones_for_number(number) if z and z != UNKNOWN_ZONE)


@lru_cache(maxsize=65536)
def time_zones_of(e164: str) -> tuple[str, ...]:
    """Every IANA zone the number may ring in; ``()`` when the metadata does not know (never guessed).

    For a NANP number this is every zone of its *area code*, not only the zones of its longest prefix:
    phonenumbers maps some exchanges of a two-zone area code (850, 208, 605, ...) to one zone, but numbers are
    ported and exchanges straddle the line, so the person may be in any zone the area code covers.
    """
    zones = prefix_time_zones(e164)
    if len(e164) == 12 and e164.startswith("+1") and e164[2:5].isdigit():
        zones = (*zones, *npa_time_zones(e164[2:5]))
    return tuple(sorted(set(zones)))


@lru_cache(maxsize=1024)
def npa_time_zones(npa: str) -> tuple[str, ...]:
    """Every zone phonenumbers' own prefix data gives any number of NANP area code ``npa`` (``"850"``).

    Read from the package's time-zone prefix table (every entry under ``1`` + ``npa``, at any length), so the
    answer follows libphonenumber's updates instead of a table kept here.
    """
    from phonenumbers import tzdata

    key = "1" + npa
    found: set[str] = set()
    for prefix, zones in tzdata.TIMEZONE_DATA.items():
        if prefix.startswith(key):
            found.update(zones)
    found.discard(UNKNOWN_ZONE)
    found.discard("")
    return tuple(sorted(found))


@lru_cache(maxsize=128)
def state_time_zones(state: str) -> tuple[str, ...]:
    """Every zone of every area code phonenumbers' geocoder places in US state ``state`` (a code or name).

    Used when a lead *states* a state: its zones join the number's candidates (the person may live there).
    ``()`` for something that is not a US state.
    """
    code = us_state_code(state)
    if not code:
        return ()
    from phonenumbers import geodata

    found: set[str] = set()
    for prefix, names in geodata.GEOCODE_DATA.items():
        if len(prefix) == 4 and prefix.startswith("1") and us_state_code(names.get("en", "")) == code:
            found.update(npa_time_zones(prefix[1:]))
    return tuple(sorted(found))


_US_STATES = {
    "Alabama": "AL",
    "Alaska": "AK",
    "Arizona": "AZ",
    "Arkansas": "AR",
    "California": "CA",
    "Colorado": "CO",
    "Connecticut": "CT",
    "Delaware": "DE",
    "District of Columbia": "DC",
    "Washington D.C.": "DC",
    "Washington State": "WA",  # the geocoder's name for 206, 253, 360, ...
    "Florida": "FL",
    "Georgia": "GA",
    "Hawaii": "HI",
    "Idaho": "ID",
    "Illinois": "IL",
    "Indiana": "IN",
    "Iowa": "IA",
    "Kansas": "KS",
    "Kentucky": "KY",
    "Louisiana": "LA",
    "Maine": "ME",
    "Maryland": "MD",
    "Massachusetts": "MA",
    "Michigan": "MI",
    "Minnesota": "MN",
    "Mississippi": "MS",
    "Missouri": "MO",
    "Montana": "MT",
    "Nebraska": "NE",
    "Nevada": "NV",
    "New Hampshire": "NH",
    "New Jersey": "NJ",
    "New Mexico": "NM",
    "New York": "NY",
    "North Carolina": "NC",
    "North Dakota": "ND",
    "Ohio": "OH",
    "Oklahoma": "OK",
    "Oregon": "OR",
    "Pennsylvania": "PA",
    "Rhode Island": "RI",
    "South Carolina": "SC",
    "South Dakota": "SD",
    "Tennessee": "TN",
    "Texas": "TX",
    "Utah": "UT",
    "Vermont": "VT",
    "Virginia": "VA",
    "Washington": "WA",
    "West Virginia": "WV",
    "Wisconsin": "WI",
    "Wyoming": "WY",
}
_ABBREVIATIONS = frozenset(_US_STATES.values())


def us_state_code(text: str) -> str:
    """A two-letter US state code from a name or code (``"Texas"``, ``"tx"``), or ``""`` if it is neither."""
    t = text.strip()
    if t.upper() in _ABBREVIATIONS:
        return t.upper()
    return _US_STATES.get(t.title() if t.islower() else t, "")


@lru_cache(maxsize=65536)
def us_state_of(e164: str) -> str:
    """The US state a number's area code belongs to, from phonenumbers' geocoder, or ``""`` when it cannot tell.

    The geocoder describes US prefixes as ``"Texas"`` or ``"Austin, TX"``; anything else (a non-US number, an
    unknown prefix) gives ``""`` and the caller must treat the state as unknown.
    """
    pn = _pn()
    from phonenumbers import geocoder

    try:
        number = pn.parse(e164, None)
    except pn.NumberParseException:
        return ""
    if pn.region_code_for_number(number) != "US":
        return ""
    desc = str(geocoder.description_for_number(number, "en"))
    tail = desc.rsplit(",", 1)[-1].strip()
    return us_state_code(tail)
