"""CSV lead import: mapping, normalisation, merges, rejects with line numbers; fuzzed for crashes and losses."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.campaign import ColumnMapping, LeadImportError, import_csv
from dialer.campaign.importer import read_text
from dialer.store import Store

LIST = """id,phone,full name,tz,crm_ref,notes
a1,(202) 555-0101,Ann,,R1,first
a2,+1 512 555 0102,Bob,America/Chicago,R2,
a3,12345,Bad Number,,R3,
a4,202.555.0101,Ann Again,America/New_York,R4,dup of a1
a5,+1 312 555 0105,Zed,Mars/Olympus,R5,
a6,+1 312 555 0106,"Multi
line",,R6,quoted
a7,+1 312 555 0107,Dnc,,R7,
a8,+1 312 555 0108,Short
"""


def test_import_maps_normalises_merges_and_rejects(tmp_path: Path, fresh_store: Callable[[], Any]) -> None:
    src = tmp_path / "list.csv"
    src.write_text(LIST, encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    store = fresh_store()
    mapping = ColumnMapping(phone="phone", name="full name", time_zone="tz", lead_id="id")
    report = import_csv(src, store, "c", mapping, dnc=lambda p: p == "+13125550107", rejects=rejects)

    assert report.rows == 8 and report.accounted
    assert report.accepted == 3  # a1, a2, a6
    assert report.merged == {5: "a1"}
    reasons = {r.line: r.reason for r in report.rejected}
    assert set(reasons) == {4, 6, 9, 10}
    assert "valid" in reasons[4] or "phone" in reasons[4]
    assert "time zone" in reasons[6]
    assert reasons[9] == "do-not-call"
    assert "fields" in reasons[10]

    leads = {lead.lead_id: lead for lead in store.leads("c")}
    assert set(leads) == {"a1", "a2", "a6"}
    a1 = leads["a1"]
    assert a1.phone == "+12025550101"
    assert a1.name == "Ann"  # earlier values win
    assert a1.time_zone == "America/New_York"  # the gap was filled by the duplicate
    assert a1.fields == {"crm_ref": "R1", "notes": "first", "merged_ids": "a4"}
    assert leads["a6"].name == "Multi\nline"
    assert leads["a6"].source_line == 7  # where the record starts

    with open(rejects, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:2] == ["line", "reason"]
    assert [int(r[0]) for r in rows[1:]] == [4, 6, 9, 10]
    assert rows[1][2:] == ["a3", "12345", "Bad Number", "", "R3", ""]


def test_reimport_merges_instead_of_duplicating(tmp_path: Path, fresh_store: Callable[[], Any]) -> None:
    store = fresh_store()
    data = "phone,extra\n2025550101,x\n"
    import_csv(io.StringIO(data), store, "c")
    report = import_csv(io.StringIO("phone,extra,more\n+12025550101,y,z\n"), store, "c")
    assert report.merged == {2: "+12025550101"}
    [lead] = store.leads("c")
    assert lead.fields == {"extra": "x", "more": "z"}


def test_default_region_applies_to_national_numbers(tmp_path: Path, fresh_store: Callable[[], Any]) -> None:
    store = fresh_store()
    report = import_csv(io.StringIO("phone\n020 7946 0018\n"), store, "uk", default_region="GB")
    assert report.accepted == 1
    assert store.leads("uk")[0].phone == "+442079460018"


def test_missing_phone_column_is_a_clear_error_and_stores_nothing(
    tmp_path: Path, fresh_store: Callable[[], Any]
) -> None:
    store = fresh_store()
    with pytest.raises(LeadImportError, match="not in the header"):
        import_csv(io.StringIO("number,name\n2025550101,A\n"), store, "c")
    assert store.leads("c") == []


def test_broken_quoting_names_the_line_and_stores_nothing(tmp_path: Path, fresh_store: Callable[[], Any]) -> None:
    store = fresh_store()
    with pytest.raises(LeadImportError, match="line"):
        import_csv(io.StringIO('phone,name\n2025550101,"A"x\n2025550102,B\n'), store, "c")
    assert store.leads("c") == []


def test_invalid_utf8_row_is_rejected_not_lost(tmp_path: Path, fresh_store: Callable[[], Any]) -> None:
    store = fresh_store()
    report = import_csv(read_text(b"phone,name\n2025550101,\xff\xfe\n2025550102,ok\n"), store, "c")
    assert report.accepted == 1
    assert [(r.line, r.reason) for r in report.rejected] == [(2, "not valid UTF-8")]


_cells = st.one_of(
    st.sampled_from(["2025550101", "+15125550102", "(312) 555-0103", "", "abc", "+44 20 7946 0018", "0"]),
    st.text(alphabet=st.sampled_from('0123456789+-() ,"\n\r\x00a\u00e9'), max_size=12),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.lists(_cells, min_size=1, max_size=4), max_size=12),
    junk=st.binary(max_size=40),
)
def test_fuzzed_csv_never_crashes_nor_loses_a_row(tmp_path: Path, rows: list[list[str]], junk: bytes) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["phone", "name", "x", "y"])
    writer.writerows(rows)
    data = buf.getvalue().encode("utf-8", "surrogateescape") + junk
    store = Store(":memory:")
    try:
        report = import_csv(read_text(data), store, "c", ColumnMapping(name="name"))
    except LeadImportError:
        assert store.leads("c") == []  # all or nothing
        return
    assert report.accounted
    assert len(store.leads("c")) == report.accepted
    # Every non-blank record the CSV module sees is one row of the report.
    records = [r for r in csv.reader(read_text(data)) if any(c.strip() for c in r)]
    assert report.rows == len(records) - 1
