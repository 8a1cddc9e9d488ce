"""Do-not-call: the registry bitmap, change lists, fail-closed rules, opt-outs; the parsers fuzzed."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.compliance.dnc import (
    META_FILE,
    DncError,
    DncFormatError,
    DoNotCall,
    NationalRegistry,
    iter_registry_file,
    load_internal_list,
)
from dialer.store import Store

DAY = 86400.0


def _registry(tmp_path: Path, lines: str, as_of: float = 1_000 * DAY) -> NationalRegistry:
    src = tmp_path / "full.txt"
    src.write_text(lines, encoding="ascii")
    return NationalRegistry.prepare(tmp_path / "reg", [src], as_of=as_of)


def test_full_list_then_change_lists(tmp_path: Path) -> None:
    reg = _registry(tmp_path, "AreaCode,PhoneNumber\n202,5550101\n202,5550102\n202,5550102\n")
    assert len(reg) == 2
    assert reg.contains("+12025550101") and not reg.contains("+12025550103")
    (tmp_path / "chg.txt").write_text("202,5550101,D\n202,5550103,A\n512,5550199,D\n")
    assert reg.apply_change_file(tmp_path / "chg.txt") == (1, 2)
    (tmp_path / "adds.txt").write_text("312,5550111\n")
    reg.apply_change_file(tmp_path / "adds.txt", kind="A")
    assert len(reg) == 3  # deleting an absent number changes nothing
    reg.close()
    again = NationalRegistry.open(tmp_path / "reg")
    hits = again.contains_batch(np.array([2025550101, 2025550102, 2025550103, 3125550111, 10**10 + 1], np.uint64))
    assert hits.tolist() == [False, True, True, True, False]
    with pytest.raises(DncError, match="read-only"):
        again.apply(additions=np.array([2025550109], np.uint64))


def test_interrupted_change_and_damaged_file_refuse_to_open(tmp_path: Path) -> None:
    reg = _registry(tmp_path, "202,5550101\n")
    reg.close()
    meta = json.loads((tmp_path / "reg" / META_FILE).read_text())
    (tmp_path / "reg" / META_FILE).write_text(json.dumps({**meta, "applying": True}))
    with pytest.raises(DncError, match="interrupted"):
        NationalRegistry.open(tmp_path / "reg")
    (tmp_path / "reg" / META_FILE).write_text(json.dumps(meta))
    with open(tmp_path / "reg" / "nanp.bits", "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(DncError, match="damaged"):
        NationalRegistry.open(tmp_path / "reg")


def test_bad_line_in_full_list_names_the_line_and_applies_nothing(tmp_path: Path) -> None:
    src = tmp_path / "full.txt"
    src.write_text("202,5550101\n202,555010\n")
    with pytest.raises(DncFormatError) as info:
        NationalRegistry.prepare(tmp_path / "reg", [src])
    assert info.value.line == 2 and "seven digits" in info.value.reason


def test_do_not_call_fails_closed(tmp_path: Path) -> None:
    reg = _registry(tmp_path, "202,5550101\n", as_of=100 * DAY)
    now = [110 * DAY]
    dnc = DoNotCall(reg, internal=["+13125550100"], clock=lambda: now[0])
    assert dnc.check("+12025550101") == "national registry"
    assert dnc.check("+12025550102") is None
    assert dnc.check("+13125550100") == "internal list"
    assert dnc.check("+442079460018") is None  # the US registry does not cover UK numbers
    now[0] = 132 * DAY  # 32 days after the download: too old to scrub with
    assert dnc.check("+12025550102") is not None and "older" in str(dnc.check("+12025550102"))
    assert DoNotCall().check("+12025550102") == "no national registry loaded"
    assert DoNotCall(require_registry=False).check("+12025550102") is None


def test_opt_out_is_persisted_before_it_is_acknowledged(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    dnc = DoNotCall(require_registry=False)
    dnc.opt_out("+12025550199", persist=lambda p: store.add_opt_out(p, campaign_id="c", source="keypress"))
    assert dnc.blocked("+12025550199")
    store.close()
    reloaded = DoNotCall(internal=Store(tmp_path / "s.sqlite").opt_outs(), require_registry=False)
    assert reloaded.blocked("+12025550199")

    def failing(_: str) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        dnc.opt_out("+12025550198", persist=failing)


def test_internal_list_file(tmp_path: Path) -> None:
    path = tmp_path / "internal.txt"
    path.write_text("# company list\n(202) 555-0101\n+44 20 7946 0018\n512,5550102\n\n")
    assert load_internal_list(path) == ["+12025550101", "+442079460018", "+15125550102"]
    path.write_text("(202) 555-0101\nnot a number\n")
    with pytest.raises(DncFormatError, match="line 2"):
        load_internal_list(path)


_LINE = re.compile(r"^\s*(\d{3})\s*,\s*(\d{7})\s*$")


def _reference(lines: list[str]) -> tuple[list[int], int | None]:
    """The numbers a strict parser must return, or the first bad line number."""
    out: list[int] = []
    for i, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if i == 1 and not any(c.isdigit() for c in text):
            continue
        m = _LINE.match(text)
        if m is None:
            return out, i
        out.append(int(m.group(1) + m.group(2)))
    return out, None


_good = st.builds(lambda a, n: f"{a:03d},{n:07d}", st.integers(0, 999), st.integers(0, 9_999_999))
_noise = st.text(alphabet=st.sampled_from("0123456789, \tAD-x\r"), max_size=14)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_good, _good, _noise), max_size=30), st.booleans())
def test_fuzzed_registry_lines_parse_exactly_or_fail_at_the_right_line(lines: list[str], header: bool) -> None:
    if header:
        lines = ["AreaCode,PhoneNumber", *lines]
    lines = [ln.replace("\r", "") for ln in lines]
    expected, bad = _reference(lines)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.txt"
        path.write_text("\n".join(lines) + "\n", encoding="ascii")
        try:
            got = [int(x) for numbers, _ in iter_registry_file(path) for x in numbers]
        except DncFormatError as exc:
            assert bad is not None and exc.line == bad
            return
    assert bad is None
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_bytes_never_crash_the_parsers(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.txt"
        path.write_bytes(data)
        try:
            list(iter_registry_file(path, changes=True))
        except DncFormatError as exc:
            assert exc.line >= 1
        try:
            load_internal_list(path)
        except DncFormatError as exc:
            assert exc.line >= 1


def test_vectorised_and_line_by_line_parsing_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    numbers = rng.integers(0, 10**10, 5000, dtype=np.uint64)
    text = "".join(f"{int(n) // 10**7:03d},{int(n) % 10**7:07d}\n" for n in numbers)
    (tmp_path / "fixed.txt").write_text(text)
    (tmp_path / "loose.txt").write_text(text.replace(",", " , "))
    fixed = np.concatenate([x for x, _ in iter_registry_file(tmp_path / "fixed.txt")])
    loose = np.concatenate([x for x, _ in iter_registry_file(tmp_path / "loose.txt")])
    assert fixed.tolist() == numbers.tolist() == loose.tolist()
