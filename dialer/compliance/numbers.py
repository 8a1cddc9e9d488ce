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
    fast = _nanp_fast(text, default_region)
    if fast is not None:
        return fast
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


# -- the NANP fast path -----------------------------------------------------------------------------------------
#
# A lead file of a million rows is almost all NANP numbers in a handful of plain spellings, and phonenumbers' full
# parse costs ~35 us a number. Two facts make most of that work unnecessary without weakening the check:
#
# * a spelling made only of ASCII digits and ``()-.`` and spaces (an optional leading ``+``) with ten digits, or
#   eleven starting with the country code 1, is that ten-digit national number: phonenumbers strips nothing else
#   from it (no national prefix matches a ten-digit number whose first digit is 2-9, no IDD prefix, no extension);
# * whether such a number is valid, which NANP region it belongs to and its type depend only on its first ``d``
#   digits, where ``d`` is read off the metadata's own patterns for the number's first three digits (see
#   :func:`_nanp_depths`). Most area codes need four digits (NPA + first exchange digit); Barbados' 246-521-X needs
#   seven; nothing is assumed, so an update of the metadata that distinguishes more digits gets a longer key.
#
# So the answer phonenumbers gives for one number with a given key is its answer for all of them, and is cached per
# key. Only a *valid* verdict takes the fast path; everything else goes through phonenumbers (for its exact reason
# and the ``00`` international-prefix retry). tests/compliance/test_fast_numbers.py compares the two on a large
# random sample and the known traps (Antigua's pagers 26840[69], Barbados 246-521).

_NXX_FIRST = frozenset("23456789")
_FAST_SPELLING = re.compile(r"\+?[0-9 ().\-]+")
_PUNCTUATION = str.maketrans("", "", " ().-")


class NanpVerdict:
    """What phonenumbers says of a ten-digit NANP national number: valid, region (``""``: none), number type."""

    __slots__ = ("number_type", "region", "valid")

    def __init__(self, valid: bool, region: str, number_type: int) -> None:
        self.valid = valid
        self.region = region
        self.number_type = number_type


_VERDICTS: dict[str, NanpVerdict] = {}
_DEPTHS: dict[str, int] = {}
_NANP_REGIONS: frozenset[str] = frozenset()


def _nanp_fast(text: str, default_region: str | None) -> str | None:
    """The E.164 form of a plain NANP spelling that is a valid number, else ``None`` (take phonenumbers' path)."""
    if not _FAST_SPELLING.fullmatch(text) or "+" in text[1:]:
        return None
    digits = text.translate(_PUNCTUATION)
    if text[0] == "+":
        if len(digits) != 12 or digits[1] != "1":
            return None
        ten = digits[2:]
    else:
        if default_region not in nanp_regions():
            return None
        if len(digits) == 11 and digits[0] == "1":
            ten = digits[1:]
        elif len(digits) == 10:
            ten = digits
        else:
            return None
    if ten[0] not in _NXX_FIRST or not nanp_verdict(ten).valid:
        return None
    return "+1" + ten


def nanp_regions() -> frozenset[str]:
    """The regions sharing country code 1 (US, CA, the Caribbean, the Pacific territories)."""
    global _NANP_REGIONS
    if not _NANP_REGIONS:
        _NANP_REGIONS = frozenset(_pn().region_codes_for_country_code(1))
    return _NANP_REGIONS


def nanp_key(ten: str) -> str:
    """The prefix of a ten-digit NANP national number that decides its validity, region and type."""
    if not _DEPTHS:
        _DEPTHS.update(_nanp_depths())
    return ten[: _DEPTHS.get(ten[:3], 10)]


def nanp_verdict(ten: str) -> NanpVerdict:
    """phonenumbers' verdict on ``+1`` + ``ten`` (ten ASCII digits, the first 2-9), cached per :func:`nanp_key`."""
    key = nanp_key(ten)
    hit = _VERDICTS.get(key)
    if hit is None:
        pn = _pn()
        number = pn.parse("+1" + ten, None)
        hit = NanpVerdict(
            bool(pn.is_valid_number(number)), str(pn.region_code_for_number(number) or ""), int(pn.number_type(number))
        )
        _VERDICTS[key] = hit
    return hit


def _nanp_depths() -> dict[str, int]:
    """For each first three digits ``2xx``-``9xx``: how many leading digits any NANP pattern can look at.

    Every pattern phonenumbers consults for a ten-digit ``+1`` number — each NANP region's leading digits (which
    pick the region), general description and every number type's pattern — is expanded into its paths: a
    sequence of digit sets, one per position. On a path, positions after the last one that is not "any digit"
    constrain nothing but the length, so a ten-digit number's match depends only on its digits up to there (the
    path's *depth*). A pattern matches a number iff one of its paths does; so two numbers that agree on their first
    three digits and on the first ``max depth of the paths that admit those three digits`` digits match exactly
    the same patterns, and phonenumbers says the same of both. Anything the expansion does not understand makes the
    depth 10: an exact cache, never a wrong one.
    """
    pn = _pn()
    fullmatch: list[str] = []
    prefix: list[str] = []
    kinds: tuple[str, ...] = ("general_desc", "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost")
    kinds += ("personal_number", "voip", "pager", "uan", "voicemail")
    for region in nanp_regions():
        meta = pn.PhoneMetadata.metadata_for_region(region)
        if meta is None:
            continue
        if meta.leading_digits:
            prefix.append(meta.leading_digits)
        for kind in kinds:
            desc = getattr(meta, kind, None)
            if desc is not None and desc.national_number_pattern:
                fullmatch.append(desc.national_number_pattern)
    paths: list[tuple[frozenset[str], ...]] = []
    try:
        for pattern in fullmatch:
            paths += [p for p in _paths(pattern) if len(p) == 10]
        for pattern in prefix:
            paths += [p[:10] for p in _paths(pattern)]
    except _Unsupported:
        return {}  # nanp_key's default: all ten digits
    depths: dict[str, int] = {}
    for a in "23456789":
        for b in "0123456789":
            for c in "0123456789":
                npa = a + b + c
                deepest = 3
                for path in paths:  # a path admits the NPA (a prefix path shorter than three: its digits do)
                    if all(d in s for d, s in zip(npa, path, strict=False)):
                        deepest = max(deepest, _depth(path))
                depths[npa] = deepest
    return depths


_ANY = frozenset("0123456789")
_MAX_PATHS = 1 << 16


class _Unsupported(Exception):
    pass


def _depth(path: tuple[frozenset[str], ...]) -> int:
    for i in range(len(path) - 1, -1, -1):
        if path[i] != _ANY:
            return i + 1
    return 0


def _paths(pattern: str) -> list[tuple[frozenset[str], ...]]:
    """Every path of a digit pattern as a tuple of digit sets (paths longer than ten positions are dropped)."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - Python < 3.11
        import sre_parse
    return _seq(list(sre_parse.parse(pattern)))


def _seq(items: list[Any]) -> list[tuple[frozenset[str], ...]]:
    out: list[tuple[frozenset[str], ...]] = [()]
    for item in items:
        alts = _item(item)
        out = [p + q for p in out for q in alts if len(p) + len(q) <= 10]
        if len(out) > _MAX_PATHS:
            raise _Unsupported
    return out


def _item(item: Any) -> list[tuple[frozenset[str], ...]]:
    from re import _constants as c  # type: ignore[attr-defined]

    op, av = item
    if op is c.LITERAL:
        return [(frozenset(chr(av)) & _ANY,)]
    if op is c.IN:
        return [(_charset(av),)]
    if op is c.SUBPATTERN:
        return _seq(list(av[-1]))
    if op is c.BRANCH:
        return [p for branch in av[1] for p in _seq(list(branch))]
    if op in (c.MAX_REPEAT, c.MIN_REPEAT):
        lo, hi, sub = av
        body = _seq(list(sub))
        out: list[tuple[frozenset[str], ...]] = []
        current: list[tuple[frozenset[str], ...]] = [()]
        for count in range(0, min(hi, 10) + 1):
            if count >= lo:
                out += current
            current = [p + q for p in current for q in body if len(p) + len(q) <= 10]
            if not current or len(current) > _MAX_PATHS:
                break
        return out
    if op is c.AT:
        return [()]
    raise _Unsupported(op)


def _charset(items: list[Any]) -> frozenset[str]:
    from re import _constants as c  # type: ignore[attr-defined]

    found: set[str] = set()
    for op, av in items:
        if op is c.LITERAL:
            found.add(chr(av))
        elif op is c.RANGE:
            found.update(chr(x) for x in range(av[0], av[1] + 1))
        elif op is c.CATEGORY and av is c.CATEGORY_DIGIT:
            found.update(_ANY)
        else:
            raise _Unsupported(op)
    return frozenset(found) & _ANY


_E164_SHAPE = re.compile(r"\+[1-9][0-9]{5,14}")


@lru_cache(maxsize=1 << 18)
def is_e164(text: str) -> bool:
    """Whether ``text`` is already a valid number in its one E.164 spelling (what every list is keyed by).

    ``+4402071234567`` has E.164's shape but is not its number's spelling (``+442071234567``): a lookup with it
    would miss the list entry, so it is not E.164 here. Cached: the do-not-call check asks at every dial.
    """
    if not _E164_SHAPE.fullmatch(text):
        return False
    if len(text) == 12 and text[1] == "1" and text[2] in _NXX_FIRST:
        return nanp_verdict(text[2:]).valid
    try:
        return _parse_e164(text, None) == text
    except NumberError:
        return False


@lru_cache(maxsize=65536)
def region_of(e164: str) -> str:
    """The ISO region of an E.164 number (``US``, ``CA``, ``GB``, ...), or ``""`` if unknown."""
    if (
        len(e164) == 12
        and e164.startswith("+1")
        and e164[2] in _NXX_FIRST
        and e164[2:].isascii()
        and e164[2:].isdigit()
    ):
        return nanp_verdict(e164[2:]).region
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
