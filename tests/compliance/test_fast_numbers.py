"""The import's fast paths give exactly phonenumbers' answers (issue 13, item 7).

* ``normalize``'s NANP fast path and the per-prefix verdict cache (:func:`~dialer.compliance.numbers.nanp_verdict`)
  agree with phonenumbers' full parse on a large random sample, on every area code, and on the known traps
  (Antigua's pagers ``26840[69]``, Barbados ``246-521`` where valid and invalid lines share the exchange).
* ``DoNotCall.check_many`` answers what ``check`` answers, number by number, over a mixed list.
* A company list prepared as a sorted array is rebuilt when its file changes and only then, and blocks every
  spelling of a number it lists.

No wall-clock assertions: the speed is benchmarks/lead_import.py's job.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import phonenumbers as pn
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.compliance import numbers
from dialer.compliance.dnc import CompanyList, DncFormatError, DoNotCall, NationalRegistry, load_internal_list
from dialer.compliance.numbers import NumberError, is_e164, nanp_key, nanp_verdict, normalize, region_of

DAY = 86400.0
NOW = 1_000 * DAY

SPELLINGS = [
    "{a}{b}{c}",
    "1{a}{b}{c}",
    "+1{a}{b}{c}",
    "({a}) {b}-{c}",
    "{a}-{b}-{c}",
    "{a}.{b}.{c}",
    "+1 {a} {b} {c}",
    "+1-{a}-{b}-{c}",
    "1 ({a}) {b}-{c}",
    "1-{a}-{b}-{c}",
    " ({a}){b}-{c} ",
    "+1 ({a}) {b}.{c}",
    "({a} {b} {c}",
    "{a} {b}  {c}.",
    "001 {a} {b} {c}",
    "+{a}{b}{c}",  # no country code after '+': another country's number, never the NANP one
    "1{a}{b}{c}0",  # twelve digits
]
REGIONS = ["US", "US", "US", "CA", "AG", "BB", "PR", "GU", "GB", "DE"]


def _spell(ten: str, fmt: str) -> str:
    return fmt.format(a=ten[:3], b=ten[3:6], c=ten[6:])


def _reference(raw: str, region: str) -> str | None:
    """What ``normalize`` answers with the fast path switched off: phonenumbers' full parse, or None if refused."""
    saved = numbers._nanp_fast
    numbers._nanp_fast = lambda text, default_region: None
    try:
        return normalize(raw, region)
    except NumberError:
        return None
    finally:
        numbers._nanp_fast = saved


def _phonenumbers_verdict(ten: str) -> tuple[bool, str, int]:
    number = pn.parse("+1" + ten, None)
    return bool(pn.is_valid_number(number)), str(pn.region_code_for_number(number) or ""), int(pn.number_type(number))


def _tricky() -> list[str]:
    out = [f"26840{d}{line:04d}" for d in range(10) for line in (0, 1234, 9999)]  # Antigua: pagers 26840[69]
    out += [f"246521{d}{line:03d}" for d in range(10) for line in (0, 456, 999)]  # Barbados: 246-521-[0369] fixed
    out += [f"2465{x:02d}{y:04d}" for x in range(0, 100, 3) for y in (0, 5555)]
    out += [f"{npa}{nxx}{line}" for npa in range(200, 1000) for nxx in (200, 555, 911) for line in ("0100", "4567")]
    return out


def test_the_key_covers_every_digit_a_pattern_distinguishes() -> None:
    assert len(nanp_key("2684061234")) >= 6  # Antigua's pagers differ from its fixed lines in the sixth digit
    assert len(nanp_key("2465213456")) >= 7  # Barbados 246-521-[0369] is a fixed line, 246-521-[147] mobile
    assert len(nanp_key("2125550143")) < 10  # most area codes: a few digits, so the cache is small


def test_cached_verdicts_agree_with_phonenumbers_on_a_large_random_sample() -> None:
    """Each key's verdict is cached from *another* number with that key; every sampled number is then answered
    from it, by ``nanp_verdict`` and by ``normalize``'s fast path, and compared with phonenumbers' own answer."""
    rng = random.Random(1307)
    tens = {f"{rng.randint(200, 999)}{rng.randint(0, 9_999_999):07d}" for _ in range(100_000)} | set(_tricky())
    assert len(tens) >= 100_000
    numbers._VERDICTS.clear()
    for ten in tens:
        key = nanp_key(ten)
        if key not in numbers._VERDICTS:
            other = key + "".join(rng.choice("0123456789") for _ in range(10 - len(key)))
            nanp_verdict(other)
    filled = len(numbers._VERDICTS)
    mismatches = []
    for ten in sorted(tens):
        got = nanp_verdict(ten)
        want = _phonenumbers_verdict(ten)
        if (got.valid, got.region, got.number_type) != want:
            mismatches.append(ten)
        if numbers._nanp_fast(ten, "US") != ("+1" + ten if want[0] else None):
            mismatches.append(ten)
    assert len(numbers._VERDICTS) == filled  # every answer came from the entries made from other numbers
    numbers._VERDICTS.clear()
    assert mismatches == []


def test_fast_normalize_agrees_with_the_full_parse_in_every_spelling_and_region() -> None:
    rng = random.Random(2024)
    tens = [f"{rng.randint(200, 999)}{rng.randint(0, 9_999_999):07d}" for _ in range(20_000)] + _tricky()[:300]
    mismatches = []
    for ten in tens:
        raw = _spell(ten, rng.choice(SPELLINGS))
        region = rng.choice(REGIONS)
        try:
            got: str | None = normalize(raw, region)
        except NumberError:
            got = None
        if got != _reference(raw, region):
            mismatches.append((raw, region, got))
    assert mismatches == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("(268) 406-1234", None),  # Antigua pager: not callable, but a valid number
        ("268 406 1234", "+12684061234"),
        ("246 521 0123", "+12465210123"),  # Barbados fixed line
        ("246 521 2123", None),  # same exchange, no such line
        ("+1 200 555 0100", None),  # no such area code
    ],
)
def test_known_traps(raw: str, expected: str | None) -> None:
    want = _reference(raw, "US")
    if expected is not None:
        assert want == expected
    got: str | None
    try:
        got = normalize(raw, "US")
    except NumberError:
        got = None
    assert got == want
    if want is not None:
        assert is_e164(want) and region_of(want) == str(pn.region_code_for_number(pn.parse(want)))


# -- check_many ----------------------------------------------------------------------------------------------


def _mixed(tmp_path: Path) -> tuple[list[str], NationalRegistry, CompanyList]:
    rng = random.Random(99)
    valid = [f"+1212{rng.randint(2_000_000, 9_999_999)}" for _ in range(200)]
    territories = ["+17875550143", "+16715550143", "+13405550143", "+16705550143", "+16845550143"]
    caribbean = ["+12684061234", "+12465210123", "+18765550143", "+14165550143"]  # AG pager, BB, JM, CA
    invalid = ["+12005550100", "+11234567890", "+1212555014", "+442079460958", "(212) 555-0143", "", "banana", "+"]
    listed = valid[:40] + territories[:2] + caribbean[2:3]
    registry = NationalRegistry.from_numbers(
        tmp_path / "reg", np.array([int(n[2:]) for n in listed], dtype=np.uint64), as_of=NOW - DAY
    )
    company_file = tmp_path / "company.txt"
    company_file.write_text("\n".join([*valid[30:60], "+442079460958", "(416) 555-0143"]) + "\n")
    company = CompanyList.open(company_file)
    mixed = [*valid, *territories, *caribbean, *invalid, *valid[::7]]
    rng.shuffle(mixed)
    return mixed, registry, company


@pytest.mark.parametrize("variant", ["fresh", "stale", "no registry", "registry optional"])
def test_check_many_equals_check_for_every_number(tmp_path: Path, variant: str) -> None:
    mixed, registry, company = _mixed(tmp_path)
    clock_now = NOW + (40 * DAY if variant == "stale" else 0)
    dnc = DoNotCall(
        None if variant in ("no registry", "registry optional") else registry,
        internal=[mixed[3], "(212) 555-0143"],
        company_lists=[company],
        require_registry=variant != "registry optional",
        registry_regions=("US", "PR", "GU", "VI", "MP", "AS"),
        clock=lambda: clock_now,
    )
    dnc.opt_out(mixed[5])
    expected = [dnc.check(n) for n in mixed]
    assert dnc.check_many(mixed) == expected
    assert dnc.blocked_many(mixed) == [r is not None for r in expected]
    reasons = set(expected)
    assert "internal list" in reasons and any(r and r.startswith("not an E.164") for r in reasons)
    if variant == "fresh":
        assert "national registry" in reasons and None in reasons
    registry.close()


# -- prepared company lists ----------------------------------------------------------------------------------


def test_prepared_company_list_is_rebuilt_when_its_file_changes_and_not_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "company.csv"
    path.write_text("# our own list\n+12125550143\n(617) 555-0143\n212,5104860\n+442079460958\n")
    first = CompanyList.open(path)
    assert first.rebuilt and len(first) == 4
    data, meta = CompanyList.prepared_paths(path)
    stamp = (data.stat().st_mtime_ns, meta.stat().st_mtime_ns)
    again = CompanyList.open(path)
    assert not again.rebuilt and "+16175550143" in again and "+12125104860" in again
    assert (data.stat().st_mtime_ns, meta.stat().st_mtime_ns) == stamp  # read, not written

    with open(path, "a") as fh:  # the file changes: size and mtime
        fh.write("+13125550100\n")
    changed = CompanyList.open(path)
    assert changed.rebuilt and "+13125550100" in changed
    assert not CompanyList.open(path).rebuilt

    st = path.stat()  # same size, a different number, mtime put back: the hash still sees it
    path.write_text(path.read_text().replace("+13125550100", "+13125550199"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    swapped = CompanyList.open(path)
    assert swapped.rebuilt and "+13125550199" in swapped and "+13125550100" not in swapped

    assert CompanyList.open(path, default_region="CA").rebuilt  # numbers without a country code may read otherwise
    assert not CompanyList.open(path, default_region="CA").rebuilt
    with pytest.raises(DncFormatError, match="line 3"):
        CompanyList.open(path, default_region="GB")  # '(617) 555-0143' is no British number


def test_company_list_with_a_bad_line_is_refused_and_nothing_prepared(tmp_path: Path) -> None:
    path = tmp_path / "company.csv"
    path.write_text("+12125550143\nunknown\n")
    with pytest.raises(DncFormatError, match="line 2"):
        CompanyList.open(path)
    assert not any(p.exists() for p in CompanyList.prepared_paths(path))


def test_large_uniform_files_take_the_vectorised_path_with_the_same_result(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    tens = rng.integers(2_000_000_000, 9_999_999_999, 300_000, dtype=np.uint64)
    tens = tens[(tens // np.uint64(1_000_000) % np.uint64(10)) >= 2]  # exchange not starting with 0 or 1
    e164_file = tmp_path / "e164.txt"
    e164_file.write_text("".join(f"+1{t}\n" for t in tens.tolist()))
    registry_style = tmp_path / "registry-style.txt"
    registry_style.write_text("".join(f"{t // 10_000_000},{t % 10_000_000:07d}\n" for t in tens.tolist()))
    want = np.unique(tens + np.uint64(10**10))
    for path in (e164_file, registry_style):
        cl = CompanyList.open(path)
        assert np.array_equal(np.asarray(cl.numbers), want)
    small = tmp_path / "small.txt"
    small.write_text("".join(f"+1{t}\n" for t in tens[:50].tolist()))
    assert load_internal_list(small) == [f"+1{t}" for t in tens[:50].tolist()]


_NANP = st.tuples(
    st.integers(2, 9), st.integers(0, 99), st.integers(2, 9), st.integers(0, 99), st.integers(0, 9999)
).map(lambda t: f"{t[0]}{t[1]:02d}{t[2]}{t[3]:02d}{t[4]:04d}")


@settings(max_examples=200, deadline=None)
@given(listed=st.lists(_NANP, min_size=1, max_size=6), list_fmt=st.sampled_from(SPELLINGS[:12]), data=st.data())
def test_property_any_spelling_of_a_prepared_list_number_is_blocked(
    tmp_path_factory: pytest.TempPathFactory, listed: list[str], list_fmt: str, data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("cl") / "company.txt"
    path.write_text("".join(_spell(n, list_fmt) + "\n" for n in listed))
    try:
        company = CompanyList.open(path)
    except DncFormatError:
        return  # a line that is no valid number: the list is refused whole, never half-used
    dnc = DoNotCall(company_lists=[company], require_registry=False)
    number = data.draw(st.sampled_from(listed))
    asked = _spell(number, data.draw(st.sampled_from(SPELLINGS[:12])))
    assert dnc.check(asked) is not None
    try:
        e164 = normalize(asked, "US")
    except NumberError:
        return  # the importer rejects it: never dialed
    assert dnc.check(e164) == "internal list"
    assert dnc.check_many([e164, asked]) == [dnc.check(e164), dnc.check(asked)]
