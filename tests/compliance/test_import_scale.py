"""Lead import at scale and without data loss (issue 13, item 7).

Resumable after a SIGKILL, an unchanged file skipped, duplicate header columns refused, extensions kept or the row
rejected (never merged into the main number), premium-rate numbers rejected, UTF-16 and BOM files read, and a huge
line refused with bounded memory. No wall-clock assertions: the speed is benchmarks/lead_import.py's job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dialer.campaign import ColumnMapping, LeadImportError, import_csv
from dialer.campaign.importer import read_header
from dialer.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _numbers(n: int) -> list[str]:
    """``n`` distinct valid US numbers (area codes that phonenumbers knows, exchanges 200-999)."""
    areas = [202, 212, 312, 415, 512, 617, 713, 305]
    out = []
    for i in range(n):
        a = areas[i % len(areas)]
        rest = i // len(areas)
        out.append(f"+1{a}{200 + rest // 10000:03d}{rest % 10000:04d}")
    return out


def _write_list(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("id,phone,name\n")
        for i, phone in enumerate(_numbers(n)):
            fh.write(f"L{i},{phone},Person {i}\n")


_KILLABLE = textwrap.dedent(
    """
    import sys, time
    from dialer.campaign import ColumnMapping, import_csv
    from dialer.store import Store, imports

    store = Store(sys.argv[2], synchronous="NORMAL")
    original = imports.LeadBulk.progress

    def slow_progress(self, *args, **kwargs):  # after each committed chunk, give the test time to kill us
        original(self, *args, **kwargs)
        print("chunk", flush=True)
        time.sleep(0.3)

    imports.LeadBulk.progress = slow_progress
    import_csv(sys.argv[1], store, "c", ColumnMapping(phone="phone", lead_id="id", name="name"), chunk_rows=2000,
               workers=int(sys.argv[3]))
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_mid_import_keeps_committed_chunks_and_resumes(tmp_path: Path, workers: int) -> None:
    src = tmp_path / "leads.csv"
    _write_list(src, 20_000)
    db = tmp_path / "s.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(src), str(db), str(workers)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    chunks = 0
    for line in proc.stdout:
        chunks += line.startswith("chunk")
        if chunks == 3:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.1)

    store = Store(db)
    kept = store.count_leads("c").get("ready", 0)
    assert 4000 <= kept < 20_000  # the committed chunks survived the kill (the third was mid-commit)
    report = import_csv(src, store, "c", ColumnMapping(phone="phone", lead_id="id", name="name"), chunk_rows=2000)
    assert report.resumed_at > 0 and not report.skipped
    assert report.rows == 20_000 and report.accounted
    assert report.accepted == 20_000 and not report.merged and not report.rejected
    leads = store.leads("c")
    assert len(leads) == 20_000
    assert [lead.lead_id for lead in leads] == [f"L{i}" for i in range(20_000)]  # list order kept across the kill
    assert [lead.source_line for lead in leads] == list(range(2, 20_002))


def test_unchanged_file_is_skipped_and_a_changed_one_imported(tmp_path: Path) -> None:
    src = tmp_path / "leads.csv"
    _write_list(src, 50)
    store = Store(tmp_path / "s.sqlite")
    mapping = ColumnMapping(phone="phone", lead_id="id")
    first = import_csv(src, store, "c", mapping, rejects=tmp_path / "r.csv")
    assert first.accepted == 50 and not first.skipped
    again = import_csv(src, store, "c", mapping, rejects=tmp_path / "r.csv")
    assert again.skipped and again.rows == 50 and again.accepted == 50 and again.accounted
    assert "not read again" in again.summary()
    with open(src, "a", encoding="utf-8") as fh:
        fh.write("L50,+12025550150,New\n")
    third = import_csv(src, store, "c", mapping)
    assert not third.skipped and third.accepted == 1 and len(third.merged) == 50
    assert len(store.leads("c")) == 51


def test_duplicate_header_columns_are_an_error_naming_them(tmp_path: Path) -> None:
    src = tmp_path / "dup.csv"
    src.write_text("Phone,Name,Phone\n2025550101,A,2025550102\n", encoding="utf-8")
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(LeadImportError, match=r"duplicate header column.*'Phone' in columns 1, 3"):
        import_csv(src, store, "c", ColumnMapping(phone="Phone"))
    assert store.leads("c") == []


def test_extensions_are_kept_with_the_number_or_the_row_rejected(tmp_path: Path) -> None:
    src = tmp_path / "ext.csv"
    src.write_text(
        "phone,name\n"
        "(202) 555-0101 x123,Desk A\n"
        "202-555-0102 ext. 45,Desk B\n"
        "+1 202 555 0103;ext=7,Desk C\n"
        "202 555 0101 x999,Desk D\n"
        "202 555 0104,Plain\n",
        encoding="utf-8",
    )
    store = Store(tmp_path / "s.sqlite")
    report = import_csv(src, store, "c", ColumnMapping(name="name"))
    assert report.accounted and report.accepted == 4
    leads = {lead.phone: lead for lead in store.leads("c")}
    assert leads["+12025550101"].fields["extension"] == "123"
    assert leads["+12025550102"].fields["extension"] == "45"
    assert leads["+12025550103"].fields["extension"] == "7"
    assert "extension" not in leads["+12025550104"].fields
    [(line, reason)] = [(r.line, r.reason) for r in report.rejected]
    assert line == 5 and "extension 999" in reason and "123" in reason  # not merged away into Desk A


def test_premium_rate_and_other_non_callable_types_are_rejected(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    src = tmp_path / "p.csv"
    src.write_text("phone\n+1 900 555 0101\n(900) 234-5678\n+44 909 879 0000\n2025550101\n", encoding="utf-8")
    report = import_csv(src, store, "c")
    assert report.accepted == 1 and report.accounted
    assert {r.line: r.reason for r in report.rejected} == {
        2: "premium-rate number",
        3: "premium-rate number",
        4: "premium-rate number",
    }


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-16", b""),
        ("utf-16-le", b"\xff\xfe"),
        ("utf-16-be", b"\xfe\xff"),
        ("utf-16-le", b""),
        ("utf-8", b"\xef\xbb\xbf"),
    ],
)
def test_utf16_and_bom_files_import(tmp_path: Path, encoding: str, bom: bytes) -> None:
    text = "phone,name\r\n2025550101,Zoë\r\n2025550102,Łukasz\r\n"
    src = tmp_path / "l.csv"
    src.write_bytes(bom + text.encode(encoding))
    store = Store(tmp_path / "s.sqlite")
    report = import_csv(src, store, "c", ColumnMapping(name="name"))
    assert report.accepted == 2 and not report.rejected
    assert [lead.name for lead in store.leads("c")] == ["Zoë", "Łukasz"]
    assert read_header(src) == ["phone", "name"]


def test_declared_encoding_is_used_without_a_bom(tmp_path: Path) -> None:
    src = tmp_path / "l.csv"
    src.write_bytes("phone,name\n2025550101,José\n".encode("cp1252"))
    store = Store(tmp_path / "s.sqlite")
    report = import_csv(src, store, "c", ColumnMapping(name="name"), encoding="cp1252")
    assert report.accepted == 1 and store.leads("c")[0].name == "José"


def test_huge_line_is_a_clear_error_with_bounded_memory(tmp_path: Path) -> None:
    """A 50 MB line with a 1 MB line limit: refused by line number; the process never holds the line."""
    src = tmp_path / "huge.csv"
    with open(src, "wb") as fh:
        fh.write(b"phone,notes\n2025550101,ok\n2025550102,")
        block = b"x" * (1 << 20)
        for _ in range(50):
            fh.write(block)
        fh.write(b"\n2025550103,after\n")
    script = textwrap.dedent(
        f"""
        import resource, sys
        from dialer.campaign import LeadImportError, import_csv
        from dialer.store import Store
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            import_csv({str(src)!r}, Store(":memory:"), "c", max_line=1 << 20, max_field=1 << 16)
        except LeadImportError as exc:
            print("ERROR", exc)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print("GROWN_MB", grown)
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "ERROR line 3: longer than 1048576 bytes" in res.stdout
    grown = float(res.stdout.split("GROWN_MB")[1])
    assert grown < 30, res.stdout  # the 50 MB line was never read in


def test_huge_field_in_a_quoted_multiline_record_and_in_the_header(tmp_path: Path) -> None:
    src = tmp_path / "field.csv"
    src.write_text('phone,notes\n2025550101,"' + "y\n" * 40_000 + '"\n', encoding="utf-8")
    with pytest.raises(LeadImportError, match="field larger than field limit"):
        import_csv(src, Store(":memory:"), "c", max_field=10_000)
    head = tmp_path / "head.csv"
    head.write_text('"' + "h" * 3_000_000 + '",phone\n', encoding="utf-8")
    with pytest.raises(LeadImportError, match="line 1"):
        read_header(head)
