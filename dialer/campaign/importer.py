"""Import call lists from CSV into the store.

The rule is *nothing is silently dropped*: every data row of the file ends up in exactly one of three places —
accepted as a new lead, merged into a lead with the same number, or written to the rejects file with its line
number and the reason. :class:`ImportReport` counts all three, and ``accepted + merged + rejected == rows``.

Rows are checked here (number valid and normalised to E.164, time zone known, not on a do-not-call list: the
import-time scrub) and again at dial time by the lead source, because lists change between import and dial.
The import is one transaction: a file that cannot be read to its end (a broken quote, a decoding problem the
CSV reader cannot recover from) raises :class:`LeadImportError` naming the line, and stores nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from dialer.compliance.numbers import NumberError, normalize
from dialer.errors import ConfigError, DialerError
from dialer.store import Store, StoredLead

MAX_FIELD = 1 << 20  # bytes of one CSV field: more is certainly not a call list


class LeadImportError(DialerError):
    """The file cannot be imported at all (missing column, unreadable CSV); nothing was stored."""


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Which CSV columns hold what. Only ``phone`` is required.

    ``fields``: the columns passed through to the lead untouched; ``None`` passes every column not mapped to
    something else. ``state`` (a US state name or code) lets per-state calling hours apply without guessing from
    the area code. ``priority`` must hold integers (higher is dialed first).
    """

    phone: str = "phone"
    name: str | None = None
    time_zone: str | None = None
    lead_id: str | None = None
    priority: str | None = None
    state: str | None = None
    fields: Sequence[str] | None = None

    def mapped(self) -> list[str]:
        return [c for c in (self.phone, self.name, self.time_zone, self.lead_id, self.priority) if c]


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    reason: str
    row: tuple[str, ...]


@dataclass(slots=True)
class ImportReport:
    """What happened to every row. ``merged`` maps a row's line to the lead it was merged into."""

    rows: int = 0
    accepted: int = 0
    rejected: list[Reject] = field(default_factory=list)
    merged: dict[int, str] = field(default_factory=dict)

    @property
    def accounted(self) -> bool:
        return self.accepted + len(self.merged) + len(self.rejected) == self.rows

    def summary(self) -> str:
        return (
            f"{self.rows} rows: {self.accepted} accepted, {len(self.merged)} merged into earlier leads, "
            f"{len(self.rejected)} rejected"
        )


def _valid_zone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def import_csv(
    source: str | Path | TextIO,
    store: Store,
    campaign_id: str,
    mapping: ColumnMapping | None = None,
    *,
    default_region: str = "US",
    dnc: Callable[[str], bool] | None = None,
    rejects: str | Path | TextIO | None = None,
    delimiter: str = ",",
) -> ImportReport:
    """Read a CSV call list into ``campaign_id``; see the module docstring for the guarantees.

    ``dnc`` is the import-time scrub: a callable telling whether an E.164 number must not be called (for example
    :meth:`dialer.compliance.DoNotCall.blocked`). Rows it blocks are rejected with reason ``do-not-call``.
    ``rejects`` receives the rejected rows as CSV (``line,reason`` then the original fields).
    """
    mapping = mapping or ColumnMapping()
    if not mapping.phone:
        raise ConfigError("mapping.phone", "the phone column must be named")
    if isinstance(source, (str, Path)):
        with open(source, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
            return import_csv(
                fh,
                store,
                campaign_id,
                mapping,
                default_region=default_region,
                dnc=dnc,
                rejects=rejects,
                delimiter=delimiter,
            )
    report = ImportReport()
    reader = csv.reader(source, delimiter=delimiter, strict=True)
    old_limit = csv.field_size_limit()
    csv.field_size_limit(MAX_FIELD)
    try:
        store.ensure_campaign(campaign_id)
        with store.transaction():
            _import_rows(reader, store, campaign_id, mapping, default_region, dnc, report)
    except csv.Error as exc:
        raise LeadImportError(f"line {reader.line_num}: unreadable CSV ({exc}); nothing was imported") from None
    finally:
        csv.field_size_limit(old_limit)
    if rejects is not None:
        write_rejects(report.rejected, rejects)
    return report


def _import_rows(
    reader: csv.Reader,  # type: ignore[name-defined]
    store: Store,
    campaign_id: str,
    mapping: ColumnMapping,
    region: str,
    dnc: Callable[[str], bool] | None,
    report: ImportReport,
) -> None:
    header: list[str] | None = None
    start = reader.line_num + 1
    for row in reader:
        line, start = start, reader.line_num + 1  # a quoted field may span lines: report where the row starts
        if header is None:
            if not any(cell.strip() for cell in row):
                continue
            header = [h.strip() for h in row]
            missing = [c for c in [*mapping.mapped(), mapping.state] if c and c not in header]
            if missing:
                raise LeadImportError(f"line {line}: column(s) {missing} not in the header {header}")
            if mapping.fields is not None:
                absent = [c for c in mapping.fields if c not in header]
                if absent:
                    raise LeadImportError(f"line {line}: pass-through column(s) {absent} not in the header")
            continue
        if not any(cell.strip() for cell in row):
            continue  # blank line: not a row
        report.rows += 1
        reason = _import_row(row, header, line, store, campaign_id, mapping, region, dnc, report)
        if reason is not None:
            report.rejected.append(Reject(line, reason, tuple(row)))
    if header is None:
        raise LeadImportError("the file has no header row")


def _import_row(
    row: list[str],
    header: list[str],
    line: int,
    store: Store,
    campaign_id: str,
    mapping: ColumnMapping,
    region: str,
    dnc: Callable[[str], bool] | None,
    report: ImportReport,
) -> str | None:
    """Store one row; the reason it was rejected, or ``None``."""
    if len(row) != len(header):
        return f"{len(row)} fields where the header has {len(header)}"
    if any("\udc80" <= ch <= "\udcff" for cell in row for ch in cell):
        return "not valid UTF-8"
    if any("\x00" in cell for cell in row):
        return "contains a NUL character"
    values: Mapping[str, str] = dict(zip(header, row, strict=True))
    try:
        phone = normalize(values[mapping.phone], region)
    except NumberError as exc:
        return str(exc)
    zone = values[mapping.time_zone].strip() if mapping.time_zone else ""
    if zone and not _valid_zone(zone):
        return f"unknown time zone {zone!r}"
    priority = 0
    if mapping.priority and values[mapping.priority].strip():
        try:
            priority = int(values[mapping.priority])
        except ValueError:
            return f"priority {values[mapping.priority]!r} is not an integer"
    if dnc is not None and dnc(phone):
        return "do-not-call"
    lead_id = values[mapping.lead_id].strip() if mapping.lead_id else ""
    name = values[mapping.name].strip() if mapping.name else ""
    mapped = set(mapping.mapped())
    passed = mapping.fields if mapping.fields is not None else [h for h in header if h not in mapped]
    fields = {k: values[k] for k in passed}
    if mapping.state:
        fields.setdefault("state", values[mapping.state])

    existing = store.find_lead(campaign_id, phone=phone)
    if existing is None and lead_id:
        other = store.find_lead(campaign_id, lead_id=lead_id)
        if other is not None:
            return f"lead id {lead_id!r} already used for {other.phone}"
    if existing is not None:
        # Merge: earlier values win, gaps are filled, new pass-through fields are added, and a different id the
        # row carried is kept (``merged_ids``) so the CRM records behind both rows can still be found.
        merged_fields = {**fields, **existing.fields}
        if lead_id and lead_id != existing.lead_id:
            ids = [i for i in merged_fields.get("merged_ids", "").split(";") if i]
            if lead_id not in ids:
                merged_fields["merged_ids"] = ";".join([*ids, lead_id])
        changes: dict[str, object] = {}
        if merged_fields != dict(existing.fields):
            changes["fields"] = merged_fields
        if name and not existing.name:
            changes["name"] = name
        if zone and not existing.time_zone:
            changes["time_zone"] = zone
        if priority > existing.priority:
            changes["priority"] = priority
        store.update_lead(campaign_id, existing.lead_id, **changes)
        report.merged[line] = existing.lead_id
        return None
    store.insert_lead(
        StoredLead(
            campaign_id=campaign_id,
            lead_id=lead_id or phone,
            phone=phone,
            name=name,
            time_zone=zone,
            fields=fields,
            priority=priority,
            source_line=line,
        )
    )
    report.accepted += 1
    return None


def write_rejects(rejected: Sequence[Reject], target: str | Path | TextIO) -> None:
    """Write rejected rows as CSV: ``line``, ``reason``, then the row's original fields."""
    if isinstance(target, (str, Path)):
        with open(target, "w", encoding="utf-8", errors="surrogateescape", newline="") as fh:
            write_rejects(rejected, fh)
        return
    writer = csv.writer(target)
    writer.writerow(["line", "reason", "fields..."])
    for r in rejected:
        writer.writerow([r.line, r.reason, *r.row])


def read_text(data: bytes) -> TextIO:
    """Wrap raw bytes the way :func:`import_csv` opens files (for callers holding an upload in memory)."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", errors="surrogateescape", newline="")
