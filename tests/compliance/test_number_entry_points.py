"""One number normaliser at every entry point (issue 13, item 1).

Every list is matched on the exact E.164 string, so a number that enters in another spelling (an opt-out typed as
``(212) 510-4860``, a company-list line ``6175550143``) must be normalised where it enters, or refused there with
the input named; and the do-not-call check must fail closed on anything that is not E.164.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.bus.bridge import CampaignBus, CommandRejected
from dialer.bus.schema import Message
from dialer.campaign import import_csv
from dialer.campaign.source import CampaignLeads
from dialer.compliance.dnc import DncFormatError, DoNotCall, load_internal_list
from dialer.compliance.numbers import NumberError, is_e164, normalize
from dialer.store import Store, StoredLead

SPELLINGS_617 = ["6175550143", "+1 617-555-0143", "001 617 555 0143", "(617) 555-0143", "1.617.555.0143"]


def _leads(phones: str = "phone\n6175550143\n2125104860\n") -> CampaignLeads:
    store = Store(":memory:")
    import_csv(io.StringIO(phones), store, "c")
    return CampaignLeads(store, "c", dnc=DoNotCall(require_registry=False))


def test_every_spelling_normalises_to_one_e164() -> None:
    assert {normalize(s, "US") for s in SPELLINGS_617} == {"+16175550143"}
    assert normalize("(212) 510-4860", "US") == "+12125104860"
    assert normalize("00 44 20 7946 0958", "US") == "+442079460958"
    with pytest.raises(NumberError, match="call me maybe"):
        normalize("call me maybe", "US")


@pytest.mark.parametrize("spelling", ["(212) 510-4860", "2125104860", "+1 212 510 4860", "001 212 510 4860"])
def test_opt_out_in_any_spelling_blocks_the_number(spelling: str) -> None:
    src = _leads()
    assert src.opt_out(spelling, source="agent") == "+12125104860"
    assert src.dnc.check("+12125104860") == "internal list"
    assert src.store.opt_outs() == ["+12125104860"]  # persisted as E.164, so every campaign's list matches it


def test_opt_out_that_names_no_number_raises_naming_it_and_stores_nothing() -> None:
    src = _leads()
    with pytest.raises(NumberError, match="not-a-number"):
        src.opt_out("not-a-number")
    assert src.store.opt_outs() == []
    with pytest.raises(NumberError, match="12"):
        src.dnc.opt_out("12", persist=lambda p: pytest.fail("persisted an unnormalisable opt-out"))


def test_opt_out_stored_in_an_old_spelling_still_blocks_at_start() -> None:
    store = Store(":memory:")
    import_csv(io.StringIO("phone\n6175550143\n"), store, "c")
    store.add_opt_out("(617) 555-0143")  # written by an older version, as typed
    src = CampaignLeads(store, "c", dnc=DoNotCall(require_registry=False))
    assert src.dnc.check("+16175550143") == "internal list"


@pytest.mark.parametrize("spelling", [*SPELLINGS_617, "+16175550143"])
def test_company_list_entries_in_any_spelling_block(spelling: str, tmp_path: Path) -> None:
    assert DoNotCall(internal=[spelling], require_registry=False).check("+16175550143") == "internal list"
    dnc = DoNotCall(require_registry=False)
    dnc.add_internal([spelling])
    assert dnc.check("+16175550143") == "internal list"
    path = tmp_path / "company.txt"
    path.write_text(f"# our list\n{spelling}\n")
    assert load_internal_list(path) == ["+16175550143"]


def test_company_list_entry_that_is_not_a_number_is_refused_whole(tmp_path: Path) -> None:
    dnc = DoNotCall(require_registry=False)
    with pytest.raises(NumberError, match="n/a"):
        dnc.add_internal(["2125104860", "n/a"])
    assert dnc.check("+12125104860") is None  # all or none: nothing was added
    path = tmp_path / "company.txt"
    path.write_text("6175550143\nunknown\n")
    with pytest.raises(DncFormatError, match="line 2"):
        load_internal_list(path)


@pytest.mark.parametrize(
    "raw",
    ["(212) 510-4860", "2125104860", "+1 212 510 4860", "+4402079460958", "+12005550100", "", "+", "banana"],
)
def test_check_fails_closed_on_anything_but_e164(raw: str) -> None:
    dnc = DoNotCall(require_registry=False)  # nothing listed: today's check answers "may dial" to all of these
    reason = dnc.check(raw)
    assert reason is not None and reason.startswith("not an E.164 number")
    assert dnc.check("+12125104860") is None and dnc.check("+442079460958") is None


def test_dial_time_gate_never_dials_a_stored_non_e164_number() -> None:
    src = _leads("phone\n2125104860\n")
    src.store.insert_lead(StoredLead("c", "old", "617 555 0143"))  # a row stored before the normaliser
    src.epoch_offset = 1_772_643_600.0  # Wednesday 2026-03-04 12:00 New York
    dialed = [lead.phone for lead in iter(lambda: src.next_lead(0.0), None)]
    assert dialed == ["+12125104860"]
    assert src.held.get("invalid number") == 1


def test_import_reads_every_spelling_and_rejects_with_the_input_named() -> None:
    store = Store(":memory:")
    report = import_csv(io.StringIO("phone\n001 617 555 0143\n(617) 555-0143\nsee notes\n"), store, "c")
    assert report.accepted == 1 and len(report.merged) == 1
    assert [lead.phone for lead in store.leads("c")] == ["+16175550143"]
    (reject,) = report.rejected
    assert "see notes" in reject.reason


def _bridge(leads: Any) -> CampaignBus:
    """The bus bridge's command handler alone (no broker): what ``lead.opt_out`` does with its phone."""
    bridge = CampaignBus.__new__(CampaignBus)
    bridge.runtime = SimpleNamespace(now=lambda: 0.0, feed=lambda e: None)  # type: ignore[assignment]
    bridge.engine = SimpleNamespace(leads=leads)  # type: ignore[assignment]
    return bridge


def test_bus_opt_out_command_normalises_and_refuses_non_numbers() -> None:
    src = _leads()
    bridge = _bridge(src)
    bridge._apply(
        Message("lead.opt_out", {"phone": "(212) 510-4860", "reason": "asked"}, "c", "backend/crm"), "backend/crm"
    )
    assert src.dnc.check("+12125104860") == "internal list"
    assert src.store.opt_outs() == ["+12125104860"]
    with pytest.raises(CommandRejected, match="wrong number") as info:
        bridge._apply(Message("lead.opt_out", {"phone": "wrong number"}, "c", "backend/crm"), "backend/crm")
    assert info.value.code == "invalid_number"
    assert src.store.opt_outs() == ["+12125104860"]


# -- property: no number any list holds is ever allowed, in any spelling -----------------------------------------

_NANP = st.tuples(
    st.integers(2, 9), st.integers(0, 99), st.integers(2, 9), st.integers(0, 99), st.integers(0, 9999)
).map(lambda t: f"{t[0]}{t[1]:02d}{t[2]}{t[3]:02d}{t[4]:04d}")

_FORMATS = [
    "+1{a}{b}{c}",
    "{a}{b}{c}",
    "1{a}{b}{c}",
    "({a}) {b}-{c}",
    "{a}-{b}-{c}",
    "{a}.{b}.{c}",
    "+1 {a} {b} {c}",
    "+1-{a}-{b}-{c}",
    "1 ({a}) {b}-{c}",
    "001 {a} {b} {c}",
    "011 1 {a} {b} {c}",
    " {a} {b} {c} ",
]


def _spell(ten: str, fmt: str) -> str:
    return fmt.format(a=ten[:3], b=ten[3:6], c=ten[6:])


@settings(max_examples=300, deadline=None)
@given(
    listed=st.lists(_NANP, min_size=1, max_size=5),
    opted=st.lists(_NANP, min_size=1, max_size=5),
    list_fmt=st.sampled_from(_FORMATS),
    ask_fmt=st.sampled_from(_FORMATS),
    pick=st.integers(0, 9),
)
def test_property_no_listed_number_is_allowed_in_any_spelling(
    listed: list[str], opted: list[str], list_fmt: str, ask_fmt: str, pick: int
) -> None:
    entries = [_spell(n, list_fmt) for n in listed]
    try:
        dnc = DoNotCall(internal=entries, require_registry=False)
    except NumberError:
        return  # an entry that is no valid number was refused (never silently kept): nothing to test
    for n in opted:
        try:
            dnc.opt_out(_spell(n, list_fmt))
        except NumberError:
            opted = [o for o in opted if o != n]
    held = [*listed, *opted]
    number = held[pick % len(held)]
    asked = _spell(number, ask_fmt)
    assert dnc.check(asked) is not None  # either listed, or not E.164: never "may dial"
    try:
        e164 = normalize(asked, "US")  # what the importer stores
    except NumberError:
        return  # the importer rejects it: never dialed
    assert is_e164(e164)
    assert dnc.check(e164) == "internal list"
