"""Telephone numbers: normalising to E.164, and what a number says about where (and when) it rings.

Everything here goes through ``phonenumbers`` (Google's libphonenumber metadata), imported lazily because its
metadata is large. Results are cached per number: a campaign asks the same questions of the same numbers at every
dial-time check.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from dialer.errors import DialerError

UNKNOWN_ZONE = "Etc/Unknown"


class NumberError(DialerError, ValueError):
    """A string that is not a valid, dialable telephone number (the message says why)."""


def _pn() -> Any:
    import phonenumbers

    return phonenumbers


def normalize(raw: str, default_region: str = "US") -> str:
    """``raw`` as E.164 (``+12025550123``), or :class:`NumberError` saying why not.

    ``default_region`` is used for numbers written without a country code. Numbers that parse but are not valid
    for their region (wrong length, unassigned prefix) are refused: dialing them only costs money and abandoned
    call risk.
    """
    pn = _pn()
    text = raw.strip()
    if not text:
        raise NumberError("empty phone number")
    if len(text) > 64:
        raise NumberError("phone number too long")
    try:
        number = pn.parse(text, default_region)
    except pn.NumberParseException as exc:
        raise NumberError(f"not a phone number ({exc._msg})") from None
    if not pn.is_valid_number(number):
        raise NumberError("not a valid number for its region")
    return str(pn.format_number(number, pn.PhoneNumberFormat.E164))


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
def time_zones_of(e164: str) -> tuple[str, ...]:
    """Every IANA zone the number may ring in; ``()`` when the metadata does not know (never guessed)."""
    pn = _pn()
    from phonenumbers import timezone as pn_tz

    try:
        number = pn.parse(e164, None)
    except pn.NumberParseException:
        return ()
    zones = tuple(z for z in pn_tz.time_zones_for_number(number) if z and z != UNKNOWN_ZONE)
    return zones


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
