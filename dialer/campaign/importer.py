"""Import call lists from CSV into the store.

The rule is *nothing is silently dropped*: every data row of the file ends up in exactly one of three places —
accepted as a new lead, merged into a lead with the same number, or rejected with its line number and the reason.
:class:`ImportReport` counts all three, and ``accepted + merged + rejected == rows``.

Rows are checked here (number valid, normalised to E.164 and of a callable type, extension kept apart, time zone
known, not on a do-not-call list: the import-time scrub) and again at dial time by the lead source, because lists
change between import and dial.

Scale (issue 13): the import is linear. Rows are read through a bounded line reader (no line, and so no field, can
take more memory than ``max_line``), checked in chunks of ``chunk_rows``, and each chunk is merged with two
set-based queries and written with ``executemany`` in one transaction together with the import's progress
(``lead_imports``: the file's identity and the byte offset / line after the last committed chunk). So a file

* killed mid-import keeps its committed chunks and the next import of the same file resumes after them;
* imported before and unchanged since (same size, mtime and first/last MiB) is not read again (``dialer run``
  imports at every start);
* that breaks midway (a broken quote, an over-long line) raises :class:`LeadImportError` naming the line; the
  chunks before it stay committed (a file smaller than one chunk is all or nothing). A text stream (not a path) is
  always imported in one transaction: it has no identity to resume from.

Numbers are normalised with :func:`dialer.compliance.numbers.normalize` and checked with the ``dnc`` callable, one
call per distinct spelling; on large files (``workers``) that work, which is most of an import's time, runs in
forked worker processes while this one reads and writes.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

from dialer.compliance.consent import Consent, ConsentError, Purpose, parse_consent, registry_exemption
from dialer.compliance.numbers import NumberError, nanp_key, normalize
from dialer.errors import ConfigError, DialerError
from dialer.store import AnyStore
from dialer.store.consents import ConsentStore
from dialer.store.imports import LeadBulk

MAX_FIELD = 1 << 20  # characters of one CSV field: more is certainly not a call list
MAX_LINE = 1 << 22  # bytes of one physical line (4 MiB): the most a line may cost in memory before it is refused
CHUNK_ROWS = 50_000  # rows per committed chunk
PARALLEL_BYTES = 4 << 20  # files at least this big have their numbers checked by worker processes
_FINGERPRINT_BLOCK = 1 << 20

#: phonenumbers number types that are never dialed, with the reason a row gets. Premium-rate numbers charge the
#: caller and reach a paid service, not a person; shared-cost and UAN (universal access) numbers are company
#: switchboard services; voicemail numbers reach a mailbox only; pagers cannot take a call. Toll-free, personal
#: (follow-me) and VoIP numbers reach people and stay callable.
NON_CALLABLE_TYPES = {
    "PREMIUM_RATE": "premium-rate number",
    "SHARED_COST": "shared-cost number",
    "UAN": "universal access number (a company service)",
    "VOICEMAIL": "voicemail-only number",
    "PAGER": "pager number",
}

#: The spellings of a NANP number the fast type check understands (anything else takes phonenumbers' own path).
_NANP_SPELLING = re.compile(r"\s*(?:\+?1[\s.-]?)?\(?(\d{3})\)?[\s.-]?(\d{3})[\s.-]?(\d{4})\s*")
_PLAIN = re.compile(r"[\d\s+().\-/]*")  # no letters, ';', '#', ',': cannot carry an extension
REGISTRY_ONLY = "do-not-call: national registry"  # a scrub verdict a consent basis may lift (never a reject reason)


class LeadImportError(DialerError):
    """The file cannot be imported (missing or duplicate column, unreadable CSV, an over-long line).

    Chunks committed before the failing line stay stored (the message says so); a file smaller than one chunk, or
    a stream, stores nothing.
    """


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Which CSV columns hold what. Only ``phone`` is required.

    ``fields``: the columns passed through to the lead untouched; ``None`` passes every column not mapped to
    something else. ``state`` (a US state name or code) lets per-state calling hours apply without guessing from
    the area code. ``priority`` must hold integers (higher is dialed first).

    ``consent_type``, ``consent_date`` and ``consent_source`` hold one consent record per row (see
    :mod:`dialer.compliance.consent`): checked here (an unknown type or a bad date rejects the row with its
    reason) and stored with the lead, several per lead when rows merge, so the dial-time gate can tell whether a
    national-registry number has a basis on the day of the call.
    """

    phone: str = "phone"
    name: str | None = None
    time_zone: str | None = None
    lead_id: str | None = None
    priority: str | None = None
    state: str | None = None
    fields: Sequence[str] | None = None
    consent_type: str | None = None
    consent_date: str | None = None
    consent_source: str | None = None

    def mapped(self) -> list[str]:
        return [c for c in (self.phone, self.name, self.time_zone, self.lead_id, self.priority, *self.consent()) if c]

    def consent(self) -> list[str]:
        """The consent columns configured (none, or some of type, date, source)."""
        return [c for c in (self.consent_type, self.consent_date, self.consent_source) if c]


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    reason: str
    row: tuple[str, ...]


@dataclass(slots=True)
class ImportReport:
    """What happened to every row. ``merged`` maps a row's line to the lead it was merged into.

    ``skipped``: the file was imported before and has not changed, so it was not read again (the counts are
    those of that import). ``resumed_at``: the line after which an interrupted import of the same file resumed.
    """

    rows: int = 0
    accepted: int = 0
    rejected: list[Reject] = field(default_factory=list)
    merged: dict[int, str] = field(default_factory=dict)
    skipped: bool = False
    resumed_at: int = 0
    import_id: int | None = None

    @property
    def accounted(self) -> bool:
        return self.accepted + len(self.merged) + len(self.rejected) == self.rows

    def summary(self) -> str:
        text = (
            f"{self.rows} rows: {self.accepted} accepted, {len(self.merged)} merged into earlier leads, "
            f"{len(self.rejected)} rejected"
        )
        if self.skipped:
            text += " (file unchanged since it was imported: not read again)"
        elif self.resumed_at:
            text += f" (resumed an interrupted import after line {self.resumed_at})"
        return text


def _valid_zone(name: str, cache: dict[str, bool] = {}) -> bool:  # noqa: B006 - a deliberate process-wide cache
    ok = cache.get(name)
    if ok is None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
            ok = True
        except (ZoneInfoNotFoundError, ValueError, OSError):
            ok = False
        cache[name] = ok
    return ok


# -- reading: encodings and bounded lines -------------------------------------------------------------------


def sniff_encoding(head: bytes, declared: str = "utf-8") -> tuple[str, int]:
    """The codec to read a file with and the length of its byte-order mark.

    A BOM wins over ``declared`` (spreadsheets write UTF-16 with one; a UTF-8 BOM is common too); a file without
    one whose first bytes have a NUL in every other position is UTF-16 (little or big endian). Otherwise
    ``declared``, which must be a codec Python knows.
    """
    for bom, name in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if head.startswith(bom):
            return name, len(bom)
    sample = head[: 4096 - 4096 % 2]
    if len(sample) >= 4:
        odd, even = sample[1::2], sample[0::2]
        if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.1 * len(even):
            return "utf-16-le", 0
        if even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.1 * len(odd):
            return "utf-16-be", 0
    try:
        return codecs.lookup(declared).name, 0
    except LookupError:
        raise ConfigError("leads.encoding", f"unknown encoding {declared!r}") from None


def _byte_lines(codec: str) -> bool:
    """Whether lines of this encoding can be split and counted on raw ``\\n`` bytes (ASCII-compatible codecs)."""
    try:
        return all(c.encode(codec) == c.encode("ascii") for c in '\n\r,;\t"0123456789az')
    except (UnicodeError, LookupError):
        return False


class _LineTooLong(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _Lines:
    """Physical lines of a file, decoded, each at most ``max_line`` bytes (or characters, for UTF-16/32).

    The csv module pulls whole lines from its iterator, so the iterator is where memory is bounded: a line longer
    than the limit raises instead of being read in. ``offset`` (bytes, ``None`` for UTF-16/32) and ``line`` count
    what was consumed, which is exactly up to the end of the last record the csv reader returned (it never reads
    ahead): the resume point of a committed chunk.
    """

    def __init__(self, raw: IO[bytes], codec: str, bom: int, max_line: int) -> None:
        self.max_line = max_line
        self.line = 0
        self.codec = codec
        self._raw = raw
        self._decode = codecs.getdecoder(codec)
        self.offset: int | None = bom
        self._split: list[bytes] = []
        self._text: TextIO | None = None
        raw.seek(bom)
        if not _byte_lines(codec):
            self._text = io.TextIOWrapper(raw, encoding=codec, errors="surrogateescape", newline="")
            self.offset = None

    def seek(self, offset: int | None, line: int) -> None:
        """Continue after ``line`` lines (at ``offset`` bytes when known, else by reading past them)."""
        if self._text is None and offset is not None:
            self._raw.seek(offset)
            self.offset, self.line = offset, line
            return
        while self.line < line:
            next(self)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._text is not None:
            text = self._text.readline(self.max_line + 1)
            if not text:
                raise StopIteration
            if len(text) > self.max_line:
                raise _LineTooLong(self.line + 1)
            self.line += 1
            return text
        if self._split:
            data = self._split.pop()
        else:
            data = self._raw.readline(self.max_line + 1)
            if not data:
                raise StopIteration
            if len(data) > self.max_line:
                raise _LineTooLong(self.line + 1)
            cr = data.find(b"\r")
            if cr != -1 and (cr < len(data) - 2 or not data.endswith(b"\r\n")):
                # A bare CR ends a line too (old Mac exports, as universal newlines read them).
                self._split = data.splitlines(keepends=True)[::-1]
                data = self._split.pop()
        self.line += 1
        self.offset += len(data)  # type: ignore[operator]
        return self._decode(data, "surrogateescape")[0]


class _StreamLines:
    """The same bounded reading over a text stream (no offsets: a stream cannot be resumed)."""

    def __init__(self, fh: TextIO, max_line: int) -> None:
        self._fh = fh
        self.max_line = max_line
        self.line = 0
        self.offset: int | None = None
        self.codec = "utf-8"

    def seek(self, offset: int | None, line: int) -> None:
        raise LeadImportError("a stream cannot resume")  # never asked: streams have no import record

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        text = self._fh.readline(self.max_line + 1)
        if not text:
            raise StopIteration
        if len(text) > self.max_line:
            raise _LineTooLong(self.line + 1)
        self.line += 1
        return text


def read_header(
    path: str | Path, *, delimiter: str = ",", encoding: str = "utf-8", max_field: int = MAX_FIELD
) -> list[str]:
    """The header row of a call list (first non-blank record), read the way :func:`import_csv` reads it.

    Raises :class:`LeadImportError` for a header that cannot be read (a field over ``max_field``, a line over
    the line limit) rather than letting the csv module's error escape.
    """
    with open(path, "rb") as raw:
        codec, bom = sniff_encoding(raw.read(4096), encoding)
        lines = _Lines(raw, codec, bom, MAX_LINE)
        with _field_limit(max_field):
            reader = csv.reader(lines, delimiter=delimiter, strict=True)
            try:
                for row in reader:
                    if any(cell.strip() for cell in row):
                        return [h.strip() for h in row]
            except csv.Error as exc:
                raise LeadImportError(f"line {lines.line}: unreadable header ({exc})") from None
            except _LineTooLong as exc:
                raise LeadImportError(f"line {exc.line}: longer than {MAX_LINE} bytes: not a call list") from None
    return []


class _field_limit:
    """Set the csv module's (process-wide) field size limit for a block and restore it after."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.old = 0

    def __enter__(self) -> None:
        self.old = csv.field_size_limit(self.limit)

    def __exit__(self, *exc: object) -> None:
        csv.field_size_limit(self.old)


# -- numbers: normalised, typed, scrubbed -------------------------------------------------------------------


class _Numbers:
    """Phone cell -> (E.164, extension, reason). One normalisation per distinct cell, the scrub batched.

    Normalising a plain NANP spelling needs no phonenumbers parse (:func:`~dialer.compliance.numbers.normalize`'s
    fast path), and the type check reuses the E.164 string instead of parsing again: for NANP numbers it matches
    the non-callable patterns of the NANP regions' metadata, and its answer is cached per
    :func:`~dialer.compliance.numbers.nanp_key`, the prefix those very patterns cannot see past (a per-NPA-NXX cache
    would be wrong: Antigua's pagers are ``26840[69]``, Barbados ``246-521`` mixes valid and invalid lines). Other
    numbers ask phonenumbers. The do-not-call scrub of a batch is one ``blocked_many`` call when the ``dnc``
    object has one (:meth:`dialer.compliance.DoNotCall.blocked_many`), else a call per number.
    """

    def __init__(self, region: str, dnc: Callable[[str], object] | None) -> None:
        import phonenumbers as pn

        self.pn = pn
        self.region = region
        self.dnc = dnc
        owner = getattr(dnc, "__self__", dnc)  # ``dnc.blocked`` as well as the DoNotCall object itself
        many = getattr(owner, "blocked_many", None)
        self.dnc_many: Callable[[Sequence[str]], list[bool]] | None = many if callable(many) else None
        # With reasons (a DoNotCall), a number blocked by the national registry ONLY is marked as such: a row with
        # a consent basis (or an exempt campaign purpose) may keep it. Anything else blocked stays "do-not-call".
        reasons = getattr(owner, "check_many", None)
        self.dnc_reasons: Callable[[Sequence[str]], list[str | None]] | None = (
            reasons if callable(reasons) and many is not None else None
        )
        self.cache: dict[str, tuple[str, str, str]] = {}
        self.nanp_cache: dict[str, str] = {}
        patterns: dict[str, list[str]] = {}
        for r in pn.region_codes_for_country_code(1):
            meta = pn.PhoneMetadata.metadata_for_region(r)
            for attr, reason in NON_CALLABLE_TYPES.items():
                desc = getattr(meta, attr.lower(), None) if meta is not None else None
                if desc is not None and desc.national_number_pattern:
                    patterns.setdefault(reason, []).append(desc.national_number_pattern)
        self.nanp_types = [(re.compile("(?:" + "|".join(p) + ")"), reason) for reason, p in patterns.items()]
        self.types = {getattr(pn.PhoneNumberType, name): reason for name, reason in NON_CALLABLE_TYPES.items()}

    def __call__(self, cell: str) -> tuple[str, str, str]:
        return self.batch([cell])[0]

    def batch(self, cells: Sequence[str]) -> list[tuple[str, str, str]]:
        """Classify ``cells`` (in order); the numbers that pass every other check are scrubbed in one batch."""
        cache = self.cache
        out: list[tuple[str, str, str] | None] = []
        fresh: dict[str, tuple[str, str, str]] = {}
        for cell in cells:
            hit = cache.get(cell)
            if hit is None:
                hit = fresh.get(cell)
                if hit is None:
                    hit = fresh[cell] = self._classify(cell)
            out.append(hit)
        if fresh:
            callable_cells = [c for c, (e164, _, reason) in fresh.items() if e164 and not reason]
            if self.dnc is not None and callable_cells:
                numbers = [fresh[c][0] for c in callable_cells]
                many = self.dnc_many
                verdicts: Sequence[str | bool | None]
                if self.dnc_reasons is not None:
                    verdicts = self.dnc_reasons(numbers)
                else:
                    verdicts = many(numbers) if many is not None else [bool(self.dnc(n)) for n in numbers]
                for cell, blocked in zip(callable_cells, verdicts, strict=True):
                    if blocked:
                        e164, ext, _ = fresh[cell]
                        fresh[cell] = (e164, ext, REGISTRY_ONLY if blocked == "national registry" else "do-not-call")
            cache.update(fresh)
            out = [cache[c] for c in cells]
        return out  # type: ignore[return-value]

    def _classify(self, cell: str) -> tuple[str, str, str]:
        """Normalised, extension, type reason: everything but the do-not-call scrub."""
        try:
            e164 = normalize(cell, self.region)
        except NumberError as exc:
            return "", "", str(exc)
        ext = ""
        if not _PLAIN.fullmatch(cell):  # letters, ';', '#': phonenumbers may have read an extension
            try:
                ext = self.pn.parse(cell, self.region).extension or ""
            except self.pn.NumberParseException:
                ext = ""
        return e164, ext, self._type_reason(e164)

    def _type_reason(self, e164: str) -> str:
        if e164.startswith("+1") and len(e164) == 12:
            national = e164[2:]
            key = nanp_key(national)
            hit = self.nanp_cache.get(key)
            if hit is None:
                hit = ""
                for pattern, reason in self.nanp_types:
                    if pattern.fullmatch(national):
                        hit = reason
                        break
                self.nanp_cache[key] = hit
            return hit
        kind = self.pn.number_type(self.pn.parse(e164, None))
        return self.types.get(kind, "")


_WORKER: _Numbers | None = None


def _worker_batch(cells: list[str]) -> list[tuple[str, str, str]]:
    assert _WORKER is not None
    return _WORKER.batch(cells)


class _Classifier:
    """Runs :class:`_Numbers` inline, or in forked worker processes (they inherit the ``dnc`` callable and the
    memory-mapped registry as they are at the start of the import)."""

    def __init__(self, numbers: _Numbers, workers: int) -> None:
        self.numbers = numbers
        self.pool: Any = None
        self.workers = workers
        if workers > 0:
            import multiprocessing

            global _WORKER
            _WORKER = numbers
            try:
                self.pool = multiprocessing.get_context("fork").Pool(workers)
            finally:
                _WORKER = None

    def submit(self, cells: list[str]) -> Callable[[], list[tuple[str, str, str]]]:
        """Start classifying ``cells``; the returned callable waits for the results."""
        if self.pool is None:
            return lambda: self.numbers.batch(cells)
        step = -(-len(cells) // self.workers) or 1
        parts = [self.pool.apply_async(_worker_batch, (cells[i : i + step],)) for i in range(0, len(cells), step)]
        return lambda: [r for p in parts for r in p.get()]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


# -- the import -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Row:
    line: int
    cells: list[str]
    lead_id: str
    name: str
    zone: str
    priority: int
    bad_priority: str
    fields: dict[str, str]
    consent: Consent | None = None
    bad_consent: str = ""


class _Chunk:
    """Rows read but not yet stored: the ones whose number is being checked, and the early rejects."""

    def __init__(self) -> None:
        self.rows: list[_Row] = []
        self.rejects: list[Reject] = []
        self.phones: list[str] = []
        self.offset: int | None = None
        self.line = 0
        self.nrows = 0


class _Import:
    def __init__(
        self,
        store: AnyStore,
        campaign_id: str,
        mapping: ColumnMapping,
        classifier: _Classifier,
        report: ImportReport,
        import_id: int | None,
        codec: str,
        purpose: Purpose = Purpose.TELEMARKETING,
        now: float = 0.0,
    ) -> None:
        self.store = store
        self.bulk = LeadBulk(store)
        self.consents = ConsentStore(store)
        self.purpose = purpose
        self.now = now
        from dialer.compliance.consent import call_date

        self.today = call_date(now)
        self.campaign_id = campaign_id
        self.mapping = mapping
        self.classifier = classifier
        self.report = report
        self.import_id = import_id
        self.header: list[str] | None = None
        self.undecodable = "not valid UTF-8" if codec in ("utf-8", "utf_8") else f"not valid {codec} text"
        self.next_seq = self.bulk.max_seq(campaign_id) + 1
        self._idx: dict[str, int] = {}
        self._passed: list[tuple[str, int]] = []

    def set_header(self, row: list[str], line: int) -> None:
        header = [h.strip() for h in row]
        seen: dict[str, list[int]] = {}
        for i, h in enumerate(header, start=1):
            seen.setdefault(h, []).append(i)
        dup = {h: cols for h, cols in seen.items() if len(cols) > 1}
        if dup:
            named = "; ".join(f"{h!r} in columns {', '.join(map(str, cols))}" for h, cols in dup.items())
            raise LeadImportError(f"line {line}: duplicate header column(s): {named}; one value would be lost")
        m = self.mapping
        missing = [c for c in [*m.mapped(), m.state] if c and c not in header]
        if m.consent() and not (m.consent_type and m.consent_date):
            raise LeadImportError(
                f"line {line}: consent columns {m.consent()} need both a type and a date column (consent_type and "
                "consent_date): a record without either cannot be a basis"
            )
        if missing:
            raise LeadImportError(f"line {line}: column(s) {missing} not in the header {header}")
        if m.fields is not None:
            absent = [c for c in m.fields if c not in header]
            if absent:
                raise LeadImportError(f"line {line}: pass-through column(s) {absent} not in the header")
        self.header = header
        self._idx = {h: i for i, h in enumerate(header)}
        mapped = set(m.mapped())
        passed = m.fields if m.fields is not None else [h for h in header if h not in mapped]
        self._passed = [(h, self._idx[h]) for h in passed]

    def read(self, row: list[str], line: int, chunk: _Chunk) -> None:
        """Check what can be checked without the number; queue the number for classification."""
        assert self.header is not None
        chunk.nrows += 1
        if len(row) != len(self.header):
            chunk.rejects.append(Reject(line, f"{len(row)} fields where the header has {len(self.header)}", tuple(row)))
            return
        joined = "".join(row)
        if not joined.isascii() and re.search("[\udc80-\udcff]", joined):
            chunk.rejects.append(Reject(line, self.undecodable, tuple(row)))
            return
        if "\x00" in joined:
            chunk.rejects.append(Reject(line, "contains a NUL character", tuple(row)))
            return
        m, idx = self.mapping, self._idx
        zone = row[idx[m.time_zone]].strip() if m.time_zone else ""
        priority, bad_priority = 0, ""
        if m.priority and row[idx[m.priority]].strip():
            try:
                priority = int(row[idx[m.priority]])
            except ValueError:  # reported after the number's own reasons, as before
                bad_priority = f"priority {row[idx[m.priority]]!r} is not an integer"
        fields = {k: row[i] for k, i in self._passed}
        if m.state:
            fields.setdefault("state", row[idx[m.state]])
        lead_id = row[idx[m.lead_id]].strip() if m.lead_id else ""
        name = row[idx[m.name]].strip() if m.name else ""
        consent: Consent | None = None
        bad_consent = ""
        if m.consent_type and m.consent_date:
            kind, date = row[idx[m.consent_type]], row[idx[m.consent_date]]
            source = row[idx[m.consent_source]] if m.consent_source else ""
            if kind.strip() or date.strip() or source.strip():
                try:
                    consent = parse_consent(kind, date, source, today=self.today)
                except ConsentError as exc:
                    bad_consent = str(exc)
        chunk.rows.append(_Row(line, row, lead_id, name, zone, priority, bad_priority, fields, consent, bad_consent))
        chunk.phones.append(row[idx[m.phone]])

    def store_chunk(self, chunk: _Chunk, results: list[tuple[str, str, str]], *, done: bool) -> None:
        """Merge and write one chunk and its progress in one transaction."""
        report = self.report
        report.rows += chunk.nrows
        rejects = list(chunk.rejects)
        good: list[tuple[_Row, str, str]] = []
        for row, (e164, ext, reason) in zip(chunk.rows, results, strict=True):
            if reason and not reason.startswith("do-not-call"):
                rejects.append(Reject(row.line, reason, tuple(row.cells)))
                continue
            if row.zone and not _valid_zone(row.zone):
                rejects.append(Reject(row.line, f"unknown time zone {row.zone!r}", tuple(row.cells)))
                continue
            if row.bad_priority:
                rejects.append(Reject(row.line, row.bad_priority, tuple(row.cells)))
                continue
            if row.bad_consent:
                rejects.append(Reject(row.line, row.bad_consent, tuple(row.cells)))
                continue
            if reason == REGISTRY_ONLY:
                # On the national registry only: kept when the row's consent (or the campaign's purpose) is a basis
                # today; the dial-time gate asks again on the day of each call. Company lists and opt-outs are
                # "do-not-call" verdicts and never reach this.
                mine = [row.consent] if row.consent is not None else []
                if registry_exemption(mine, self.purpose, self.now) is None:
                    why = "do-not-call"
                    if row.consent is not None:
                        c = row.consent
                        why += f" (national registry; {c.kind.value} of {c.date.isoformat()} is no basis today)"
                    rejects.append(Reject(row.line, why, tuple(row.cells)))
                    continue
                reason = ""
            if reason:
                rejects.append(Reject(row.line, reason, tuple(row.cells)))
                continue
            if ext:
                given = row.fields.get("extension", "").strip()
                if given and given != ext:
                    rejects.append(
                        Reject(
                            row.line,
                            f"extension {ext} in the number differs from the extension column ({given})",
                            tuple(row.cells),
                        )
                    )
                    continue
                row.fields["extension"] = ext
            good.append((row, e164, ext))

        phones = list({e164 for _, e164, _ in good})
        ids = list({r.lead_id or e164 for r, e164, _ in good})
        stored = self.bulk.leads_by_phone(self.campaign_id, phones)
        taken = self.bulk.phones_by_lead_id(self.campaign_id, ids)
        new: dict[str, dict[str, Any]] = {}
        changed: dict[str, dict[str, Any]] = {}
        merged: list[tuple[int, str]] = []
        consents: list[tuple[str, Consent, int | None, int | None]] = []
        for row, phone, ext in good:
            cur = new.get(phone) or stored.get(phone)
            if cur is None:
                lead_id = row.lead_id or phone
                other = taken.get(lead_id)
                if other is not None:
                    rejects.append(Reject(row.line, f"lead id {lead_id!r} already used for {other}", tuple(row.cells)))
                    continue
                taken[lead_id] = phone
                new[phone] = {
                    "lead_id": lead_id,
                    "name": row.name,
                    "time_zone": row.zone,
                    "fields": row.fields,
                    "priority": row.priority,
                    "seq": self.next_seq,
                    "line": row.line,
                }
                self.next_seq += 1
                report.accepted += 1
                if row.consent is not None:
                    consents.append((lead_id, row.consent, self.import_id, row.line))
                continue
            # Merge: earlier values win, gaps are filled, new pass-through fields are added, and a different id the
            # row carried is kept (``merged_ids``) so the CRM records behind both rows can still be found. Two
            # extensions of one number are two people at one switchboard: one lead cannot hold both.
            old_ext = cur["fields"].get("extension", "")
            if ext and old_ext and ext != old_ext:
                rejects.append(
                    Reject(
                        row.line,
                        f"extension {ext} of {phone} differs from lead {cur['lead_id']!r}'s extension {old_ext}: "
                        "one lead per number",
                        tuple(row.cells),
                    )
                )
                continue
            merged_fields = {**row.fields, **cur["fields"]}
            if row.lead_id and row.lead_id != cur["lead_id"]:
                merged_ids = [i for i in merged_fields.get("merged_ids", "").split(";") if i]
                if row.lead_id not in merged_ids:
                    merged_fields["merged_ids"] = ";".join([*merged_ids, row.lead_id])
            cur["fields"] = merged_fields
            if row.name and not cur["name"]:
                cur["name"] = row.name
            if row.zone and not cur["time_zone"]:
                cur["time_zone"] = row.zone
            if row.priority > cur["priority"]:
                cur["priority"] = row.priority
            if phone not in new:
                changed[cur["lead_id"]] = cur
            merged.append((row.line, cur["lead_id"]))
            report.merged[row.line] = cur["lead_id"]
            if row.consent is not None:  # every row's record is kept: a later purchase extends the EBR
                consents.append((cur["lead_id"], row.consent, self.import_id, row.line))

        rejects.sort(key=lambda r: r.line)
        report.rejected.extend(rejects)
        cid = self.campaign_id
        with self.store.transaction():
            self.bulk.insert_leads(
                (
                    cid,
                    d["lead_id"],
                    p,
                    d["name"],
                    d["time_zone"],
                    _json(d["fields"]),
                    d["priority"],
                    d["seq"],
                    d["line"],
                )
                for p, d in new.items()
            )
            self.bulk.update_leads(
                (d["name"], d["time_zone"], _json(d["fields"]), d["priority"], cid, lid) for lid, d in changed.items()
            )
            if consents:
                self.consents.add(cid, consents)
            if self.import_id is not None:
                self.bulk.add_rows(
                    self.import_id,
                    [
                        *((line, "merged", lid, "", "[]") for line, lid in merged),
                        *((r.line, "rejected", "", r.reason, json.dumps(list(r.row))) for r in rejects),
                    ],
                )
                self.bulk.progress(self.import_id, chunk.offset, chunk.line, report.rows, report.accepted, done=done)


def _fields_list(mapping: ColumnMapping) -> list[str] | None:
    return list(mapping.fields) if mapping.fields is not None else None


def _json(fields: Mapping[str, str]) -> str:
    return json.dumps(fields, sort_keys=True)


def _identity(raw: IO[bytes]) -> tuple[int, int, str]:
    """Size, mtime (ns) and a hash of the first and last MiB: what says 'the same file' cheaply at any size."""
    st = os.fstat(raw.fileno())
    h = hashlib.blake2b(digest_size=16)
    raw.seek(0)
    h.update(raw.read(_FINGERPRINT_BLOCK))
    if st.st_size > _FINGERPRINT_BLOCK:
        raw.seek(max(_FINGERPRINT_BLOCK, st.st_size - _FINGERPRINT_BLOCK))
        h.update(raw.read(_FINGERPRINT_BLOCK))
    raw.seek(0)
    return st.st_size, st.st_mtime_ns, h.hexdigest()


def import_csv(
    source: str | Path | TextIO,
    store: AnyStore,
    campaign_id: str,
    mapping: ColumnMapping | None = None,
    *,
    default_region: str = "US",
    dnc: Callable[[str], bool] | None = None,
    rejects: str | Path | TextIO | None = None,
    delimiter: str = ",",
    encoding: str = "utf-8",
    chunk_rows: int = CHUNK_ROWS,
    max_field: int = MAX_FIELD,
    max_line: int = MAX_LINE,
    workers: int | None = None,
    scrub_key: str = "",
    purpose: Purpose | str = Purpose.TELEMARKETING,
    now: float | None = None,
) -> ImportReport:
    """Read a CSV call list into ``campaign_id``; see the module docstring for the guarantees.

    ``dnc`` is the import-time scrub: a callable telling whether an E.164 number must not be called (for example
    :meth:`dialer.compliance.DoNotCall.blocked`). Rows it blocks are rejected with reason ``do-not-call``.
    ``rejects`` receives the rejected rows as CSV (``line,reason`` then the original fields). ``encoding`` is
    the file's text encoding when it has no byte-order mark (a BOM, or UTF-16 without one, is detected).
    ``workers``: processes checking numbers (``None``: two on files of 4 MiB and more, when there are two cores).
    ``scrub_key`` names the state of the do-not-call data the scrub used (registry date, company lists, opt-outs):
    an unchanged file is skipped only when it is unchanged too, so new do-not-call data scrubs the list again.
    ``purpose`` (the campaign's, see :mod:`dialer.compliance.consent`) and the rows' consent records decide whether
    a number on the national registry ONLY is kept, judged at ``now`` (epoch, default the clock); a number on a
    company list or an opt-out is rejected whatever either says.
    """
    purpose = Purpose(purpose)
    now = time.time() if now is None else now
    mapping = mapping or ColumnMapping()
    if not mapping.phone:
        raise ConfigError("mapping.phone", "the phone column must be named")
    if max_line < 2:
        raise ConfigError("max_line", "must be at least 2")
    store.ensure_campaign(campaign_id)
    bulk = LeadBulk(store)
    report = ImportReport()
    raw: IO[bytes] | None = None
    lines: _Lines | _StreamLines
    try:
        if isinstance(source, (str, Path)):
            raw = open(source, "rb")  # noqa: SIM115 - closed in the finally below
            size, mtime_ns, fingerprint = _identity(raw)
            codec, bom = sniff_encoding(raw.read(4096), encoding)
            described: dict[str, Any] = {
                "mapping": [*dataclasses.astuple(mapping)[:6], _fields_list(mapping)],
                "region": default_region,
                "delimiter": delimiter,
                "codec": codec,
                "scrub": scrub_key,
            }
            if mapping.consent():  # only when used, so a store imported before consent existed is not re-read
                described["consent"] = [mapping.consent_type, mapping.consent_date, mapping.consent_source]
            if purpose is not Purpose.TELEMARKETING:
                described["purpose"] = purpose.value
            settings = json.dumps(described)
            path = str(Path(source).resolve())
            last = bulk.latest_import(campaign_id, path)
            same = last is not None and (last.size, last.mtime_ns, last.fingerprint, last.settings) == (
                size,
                mtime_ns,
                fingerprint,
                settings,
            )
            lines = _Lines(raw, codec, bom, max_line)
            if same and last is not None:
                _restore(report, last.import_id, last.rows, last.accepted, bulk)
                if last.state == "done":
                    report.skipped = True
                    if rejects is not None:
                        write_rejects(report.rejected, rejects)
                    return report
                report.resumed_at = last.line
                import_id = last.import_id
                resume: tuple[int | None, int] | None = (last.byte_offset, last.line)
            else:
                with store.transaction():
                    import_id = bulk.start_import(campaign_id, path, size, mtime_ns, fingerprint, settings, bom)
                resume = None
            report.import_id = import_id
            if workers is None:
                workers = 2 if size >= PARALLEL_BYTES and (os.cpu_count() or 1) >= 2 else 0
            _run(
                lines,
                resume,
                store,
                campaign_id,
                mapping,
                default_region,
                dnc,
                delimiter,
                chunk_rows,
                max_field,
                workers,
                report,
                import_id,
                purpose,
                now,
            )
        else:
            lines = _StreamLines(source, max_line)
            with store.transaction():  # a stream cannot resume: all or nothing
                _run(
                    lines,
                    None,
                    store,
                    campaign_id,
                    mapping,
                    default_region,
                    dnc,
                    delimiter,
                    1 << 62,
                    max_field,
                    0,
                    report,
                    None,
                    purpose,
                    now,
                )
    finally:
        if raw is not None:
            raw.close()
    if rejects is not None:
        write_rejects(report.rejected, rejects)
    return report


def _restore(report: ImportReport, import_id: int, rows: int, accepted: int, bulk: LeadBulk) -> None:
    """The counts and outcomes of an earlier (finished or interrupted) import of the same file."""
    report.import_id = import_id
    report.rows, report.accepted = rows, accepted
    for line, outcome, lead_id, reason, cells in bulk.import_rows(import_id):
        if outcome == "merged":
            report.merged[line] = lead_id
        else:
            report.rejected.append(Reject(line, reason, tuple(cells)))


def _run(
    lines: _Lines | _StreamLines,
    resume: tuple[int | None, int] | None,
    store: AnyStore,
    campaign_id: str,
    mapping: ColumnMapping,
    region: str,
    dnc: Callable[[str], bool] | None,
    delimiter: str,
    chunk_rows: int,
    max_field: int,
    workers: int,
    report: ImportReport,
    import_id: int | None,
    purpose: Purpose = Purpose.TELEMARKETING,
    now: float = 0.0,
) -> None:
    """Read, check and store chunk by chunk; the numbers of chunk k are checked while chunk k+1 is read."""
    classifier = _Classifier(_Numbers(region, dnc), workers)
    job = _Import(store, campaign_id, mapping, classifier, report, import_id, lines.codec, purpose, now)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    pending: tuple[_Chunk, Callable[[], list[tuple[str, str, str]]]] | None = None
    chunk = _Chunk()
    start = 1
    try:
        with _field_limit(max_field):
            for row in reader:
                line, start = start, lines.line + 1  # a quoted field may span lines: report where the row starts
                if not any(cell.strip() for cell in row):
                    continue  # blank line: not a row
                if job.header is None:
                    job.set_header(row, line)
                    if resume is not None:
                        lines.seek(*resume)
                        start = lines.line + 1
                    continue
                job.read(row, line, chunk)
                if len(chunk.rows) + len(chunk.rejects) >= chunk_rows:
                    chunk.offset, chunk.line = lines.offset, lines.line
                    if pending is not None:
                        job.store_chunk(pending[0], pending[1](), done=False)
                    pending = (chunk, classifier.submit(chunk.phones))
                    chunk = _Chunk()
            if job.header is None:
                raise LeadImportError("the file has no header row")
            chunk.offset, chunk.line = lines.offset, lines.line
            if pending is not None:
                job.store_chunk(pending[0], pending[1](), done=False)
            job.store_chunk(chunk, classifier.submit(chunk.phones)(), done=True)
    except csv.Error as exc:
        raise LeadImportError(f"line {lines.line}: unreadable CSV ({exc}){_kept(report, import_id)}") from None
    except _LineTooLong as exc:
        raise LeadImportError(
            f"line {exc.line}: longer than {lines.max_line} bytes, so not read (a call list's line is never this "
            f"long){_kept(report, import_id)}"
        ) from None
    finally:
        classifier.close()


def _kept(report: ImportReport, import_id: int | None) -> str:
    if import_id is None:
        return "; nothing was imported"
    return (
        "; the chunks committed before it are kept (importing the corrected file merges with them, and the same file "
        "again resumes after them)"
    )


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
