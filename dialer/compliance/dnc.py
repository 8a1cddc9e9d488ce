"""Do-not-call lists: the US national registry at full size, the company's own list, and opt-outs taken on calls.

The national registry holds about 250 million NANP numbers. Every one is ten digits (area code + seven), so the
whole numbering space is 10^10 numbers and a *bitmap* of it is 1.25 GB: membership is one memory read, exact, with
no hashing and no search. The prepared on-disk form is that bitmap as a plain (sparse) file plus ``meta.json``;
opening it is an ``mmap`` (milliseconds), pages come in as lookups touch them, and the resident size can never
exceed the file's 1.25 GB. A sorted ``uint64`` array of 250 M numbers would need 2 GB and ~28 dependent memory reads
per lookup; a Python set, over 20 GB.

Registry data comes as full lists and change lists of ``area code,number`` lines. A change list line may carry a
third field, ``A`` (add) or ``D`` (delete); whole files can also be given as additions or deletions. Parsing is
strict: a line that is not a number is a :class:`DncFormatError` naming file and line, and nothing of that file is
applied (a half-loaded registry would let listed numbers through).

The registry remembers the date its data was downloaded (``as_of``); data older than 31 days may not be used to
scrub (FTC rule), and :class:`DoNotCall` then blocks every US number rather than dial on stale data.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialer.compliance.numbers import NumberError, is_e164, normalize
from dialer.errors import DialerError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

NANP_SPACE = 10**10
BITMAP_BYTES = NANP_SPACE // 8
BITMAP_FILE = "nanp.bits"
META_FILE = "meta.json"
FORMAT = 1
MAX_AGE_DAYS = 31.0
_CHUNK = 1 << 24  # bytes of registry text parsed at a time


class DncError(DialerError):
    """A do-not-call list cannot be used (missing, damaged, interrupted while changing)."""


class DncFormatError(DncError, ValueError):
    """A line of a do-not-call file is not a number; ``source`` and ``line`` say which."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        super().__init__(f"{source}, line {line}: {reason}")


# -- parsing ---------------------------------------------------------------------------------------------------


def _np() -> Any:
    import numpy

    return numpy


def _parse_line(text: str) -> tuple[int, str]:
    """One ``area code,number[,A|D]`` line: the ten-digit number and the change kind ('' for plain lists)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise ValueError(f"expected 'area code,number' but got {len(parts)} field(s)")
    area, number = parts[0], parts[1]
    if not (len(area) == 3 and area.isascii() and area.isdigit()):
        raise ValueError(f"area code {area!r} is not three digits")
    if not (len(number) == 7 and number.isascii() and number.isdigit()):
        raise ValueError(f"number {number!r} is not seven digits")
    kind = ""
    if len(parts) == 3:
        kind = parts[2].upper()
        if kind in ("ADD", "ADDITION"):
            kind = "A"
        elif kind in ("DEL", "DELETE", "DELETION"):
            kind = "D"
        if kind not in ("A", "D"):
            raise ValueError(f"change type {parts[2]!r} is neither A (add) nor D (delete)")
    return int(area + number), kind


def _fast_chunk(buf: bytes) -> npt.NDArray[np.uint64] | None:
    """Vectorised parse of a chunk made only of ``DDD,DDDDDDD\\n`` lines; ``None`` if it is anything else."""
    np = _np()
    if not buf or len(buf) % 12:
        return None
    a = np.frombuffer(buf, dtype=np.uint8).reshape(-1, 12)
    if not ((a[:, 3] == 44).all() and (a[:, 11] == 10).all()):
        return None
    digits = np.concatenate([a[:, 0:3], a[:, 4:11]], axis=1) - 48
    if (digits > 9).any():  # uint8 wraps below '0', so this also catches bytes under '0'
        return None
    weights = (10 ** np.arange(9, -1, -1, dtype=np.uint64)).astype(np.uint64)
    return (digits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


def iter_registry_file(path: str | Path, *, changes: bool = False) -> Iterator[tuple[npt.NDArray[np.uint64], str]]:
    """Yield ``(numbers, kind)`` batches of a registry file; ``kind`` is ``''`` for plain lists, else ``A``/``D``.

    A first line without digits is taken as a header; blank lines are skipped. Anything else that is not a number
    raises :class:`DncFormatError` with its line number.
    """
    np = _np()
    source = str(path)
    line_no = 0
    with open(path, "rb") as fh:
        rest = b""
        while True:
            block = fh.read(_CHUNK)
            data = rest + block
            if not block:
                cut = len(data)
            else:
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    rest = data
                    continue
            chunk, rest = data[:cut], data[cut:]
            if not chunk:
                break
            if line_no == 0:
                first, _, tail = chunk.partition(b"\n")
                if not any(48 <= c <= 57 for c in first) and first.strip():
                    line_no, chunk = 1, tail  # a header line
            fast = None if changes else _fast_chunk(chunk)
            if fast is not None:
                line_no += len(fast)
                yield fast, ""
                continue
            out: dict[str, list[int]] = {"": [], "A": [], "D": []}
            for raw in chunk.splitlines():
                line_no += 1
                try:
                    text = raw.decode("ascii").strip()
                except UnicodeDecodeError:
                    raise DncFormatError(source, line_no, "not ASCII text") from None
                if not text:
                    continue
                try:
                    number, kind = _parse_line(text)
                except ValueError as exc:
                    raise DncFormatError(source, line_no, str(exc)) from None
                if kind and not changes:
                    raise DncFormatError(source, line_no, "a change type in a full list")
                out[kind].append(number)
            for kind, numbers in out.items():
                if numbers:
                    yield np.asarray(numbers, dtype=np.uint64), kind
            if not block:
                break


# -- the registry ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistryMeta:
    count: int
    as_of: float
    sources: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "count": self.count, "as_of": self.as_of, "sources": list(self.sources)}


class NationalRegistry:
    """The US national do-not-call registry as a memory-mapped bitmap over all ten-digit NANP numbers.

    Build it once with :meth:`prepare` (from registry files) or :meth:`from_numbers`, then :meth:`open` it in each
    process. Lookups take ten-digit numbers (``2025550123``) as NumPy arrays (:meth:`contains_batch`) or E.164
    strings (:meth:`contains`). Thread-safe for lookups; changes need the writable handle from :meth:`open`.
    """

    def __init__(self, directory: Path, mm: mmap.mmap, meta: RegistryMeta, writable: bool) -> None:
        self.directory = directory
        self._mm = mm
        self._bits = _np().frombuffer(mm, dtype=_np().uint8)
        self.meta = meta
        self.writable = writable
        self._lock = threading.Lock()

    # -- building --------------------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: str | Path, *, as_of: float | None = None) -> NationalRegistry:
        """An empty registry (a sparse 1.25 GB file that takes almost no disk until numbers are added)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = RegistryMeta(0, time.time() if as_of is None else as_of)
        _write_meta(d, meta, applying=True)
        with open(d / BITMAP_FILE, "wb") as fh:
            fh.truncate(BITMAP_BYTES)
        _write_meta(d, meta)
        return cls.open(d, writable=True)

    @classmethod
    def build(
        cls,
        directory: str | Path,
        batches: Iterable[npt.NDArray[np.uint64]],
        *,
        as_of: float | None = None,
        sources: Iterable[str] = (),
    ) -> NationalRegistry:
        """Build the on-disk form from batches of ten-digit numbers, in memory, then written out in one go.

        Setting bits in anonymous memory and writing the file sequentially is many times faster than faulting
        in pages of a fresh file at random. The file appears under its final name only when complete.
        """
        np = _np()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        bits = np.zeros(BITMAP_BYTES, dtype=np.uint8)
        for numbers in batches:
            n = _check_range(np.asarray(numbers, dtype=np.uint64))
            idx = (n >> np.uint64(3)).astype(np.int64)
            bit = (n & np.uint64(7)).astype(np.uint8)
            for b in range(8):
                bits[idx[bit == b]] |= np.uint8(1 << b)
        count = _popcount(bits)
        meta = RegistryMeta(count, time.time() if as_of is None else as_of, tuple(sources))
        _write_meta(d, meta, applying=True)
        tmp = d / (BITMAP_FILE + ".tmp")
        with open(tmp, "wb") as fh:
            step = 1 << 20
            for i in range(0, BITMAP_BYTES, step):
                block = bits[i : i + step]
                if block.any():
                    fh.seek(i)
                    fh.write(memoryview(block))
            fh.truncate(BITMAP_BYTES)  # all-zero stretches stay holes: a small list takes little disk
            fh.flush()
            os.fsync(fh.fileno())
        del bits
        os.replace(tmp, d / BITMAP_FILE)
        _write_meta(d, meta)
        return cls.open(d, writable=True)

    @classmethod
    def from_numbers(
        cls, directory: str | Path, numbers: npt.NDArray[np.uint64], *, as_of: float | None = None
    ) -> NationalRegistry:
        return cls.build(directory, [numbers], as_of=as_of)

    @classmethod
    def prepare(
        cls, directory: str | Path, full_lists: Iterable[str | Path], *, as_of: float | None = None
    ) -> NationalRegistry:
        """Build the on-disk form from full registry lists (``area code,number`` lines).

        Every file is parsed to its end before the registry is written, so a bad line leaves no registry at all
        (and any previous one in ``directory`` untouched).
        """
        sources = [str(p) for p in full_lists]
        batches = [numbers for path in sources for numbers, _ in iter_registry_file(path)]
        return cls.build(directory, batches, as_of=as_of, sources=sources)

    @classmethod
    def open(cls, directory: str | Path, *, writable: bool = False) -> NationalRegistry:
        d = Path(directory)
        try:
            raw = json.loads((d / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DncError(f"{d}: no usable registry metadata ({exc})") from None
        if raw.get("format") != FORMAT:
            raise DncError(f"{d}: registry format {raw.get('format')!r}, this dialer reads {FORMAT}")
        if raw.get("applying"):
            raise DncError(f"{d}: a change to the registry was interrupted; prepare it again from the full lists")
        meta = RegistryMeta(int(raw["count"]), float(raw["as_of"]), tuple(raw.get("sources", ())))
        path = d / BITMAP_FILE
        try:
            fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        except OSError as exc:
            raise DncError(f"{path}: {exc.strerror}") from None
        try:
            if os.fstat(fd).st_size != BITMAP_BYTES:
                raise DncError(f"{path}: size {os.fstat(fd).st_size}, expected {BITMAP_BYTES}: damaged")
            mm = mmap.mmap(fd, BITMAP_BYTES, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
        finally:
            os.close(fd)
        return cls(d, mm, meta, writable)

    def warm(self) -> None:
        """Ask the kernel to read the whole bitmap in now, so the first lookups do not wait on the disk."""
        if hasattr(mmap, "MADV_WILLNEED"):
            self._mm.madvise(mmap.MADV_WILLNEED)

    def close(self) -> None:
        del self._bits
        self._mm.close()

    # -- changes ---------------------------------------------------------------------------------------

    def apply(
        self,
        *,
        additions: npt.NDArray[np.uint64] | None = None,
        deletions: npt.NDArray[np.uint64] | None = None,
        as_of: float | None = None,
        source: str | None = None,
    ) -> None:
        """Add and delete ten-digit numbers. Marked in ``meta.json`` while in progress, so a crash is detected."""
        if not self.writable:
            raise DncError("the registry was opened read-only")
        np = _np()
        with self._lock:
            _write_meta(self.directory, self.meta, applying=True)
            count = self.meta.count
            for numbers, on in ((additions, True), (deletions, False)):
                if numbers is None or len(numbers) == 0:
                    continue
                n = _check_range(np.asarray(numbers, dtype=np.uint64))
                was = self.contains_batch(n)
                changed = np.unique(n[~was] if on else n[was])
                count += len(changed) if on else -len(changed)
                idx = (changed >> np.uint64(3)).astype(np.int64)
                bit = (changed & np.uint64(7)).astype(np.uint8)
                for b in range(8):
                    sel = idx[bit == b]
                    if on:
                        self._bits[sel] |= np.uint8(1 << b)
                    else:
                        self._bits[sel] &= np.uint8(0xFF ^ (1 << b))
            self._mm.flush()
            sources = self.meta.sources + ((source,) if source else ())
            self.meta = RegistryMeta(count, self.meta.as_of if as_of is None else as_of, sources)
            _write_meta(self.directory, self.meta)

    def apply_change_file(self, path: str | Path, *, kind: str = "", as_of: float | None = None) -> tuple[int, int]:
        """Apply a change list. ``kind`` ``A``/``D`` treats every line as an addition/deletion; ``''`` reads the
        third field of each line. Returns (additions, deletions) read."""
        np = _np()
        adds: list[Any] = []
        dels: list[Any] = []
        for numbers, line_kind in iter_registry_file(path, changes=not kind):
            k = kind or line_kind
            if k not in ("A", "D"):
                raise DncFormatError(str(path), 0, "a change list line without A or D")
            (adds if k == "A" else dels).append(numbers)
        a = np.concatenate(adds) if adds else np.zeros(0, np.uint64)
        d = np.concatenate(dels) if dels else np.zeros(0, np.uint64)
        self.apply(additions=a, deletions=d, as_of=as_of, source=str(path))
        return len(a), len(d)

    # -- lookups ---------------------------------------------------------------------------------------

    def contains_batch(self, numbers: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Membership of each ten-digit number; numbers outside the NANP space are not members."""
        np = _np()
        n = np.asarray(numbers, dtype=np.uint64)
        ok = n < np.uint64(NANP_SPACE)
        safe = np.where(ok, n, np.uint64(0))
        byte = self._bits[(safe >> np.uint64(3)).astype(np.int64)]
        hit = (byte >> (safe & np.uint64(7)).astype(np.uint8)) & np.uint8(1)
        return hit.astype(bool) & ok

    def contains(self, e164: str) -> bool:
        ten = nanp_digits(e164)
        if ten is None:
            return False
        return bool(self._bits[ten >> 3] >> (ten & 7) & 1)

    def __len__(self) -> int:
        return self.meta.count

    def age_days(self, now: float | None = None) -> float:
        return ((time.time() if now is None else now) - self.meta.as_of) / 86400.0


def _popcount(bits: npt.NDArray[np.uint8]) -> int:
    """Set bits, counted 64 MB at a time so the count does not double the builder's memory."""
    np = _np()
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    step = 1 << 26
    total = 0
    for i in range(0, len(bits), step):
        block = bits[i : i + step]
        counts = np.bitwise_count(block) if hasattr(np, "bitwise_count") else table[block]
        total += int(counts.sum(dtype=np.int64))
    return total


def _check_range(n: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    if len(n) and int(n.max()) >= NANP_SPACE:
        raise DncError(f"{int(n.max())} is not a ten-digit NANP number")
    return n


def _write_meta(d: Path, meta: RegistryMeta, *, applying: bool = False) -> None:
    body = meta.to_json()
    if applying:
        body["applying"] = True
    tmp = d / (META_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(body, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, d / META_FILE)


def nanp_digits(e164: str) -> int | None:
    """The ten digits after ``+1`` of a NANP number, or ``None`` for any other string."""
    if len(e164) == 12 and e164.startswith("+1") and e164[2:].isascii() and e164[2:].isdigit():
        return int(e164[2:])
    return None


# -- everything together ---------------------------------------------------------------------------------------


def nanp_shaped(text: str) -> bool:
    """``+1`` then an area code and exchange that do not start with 0 or 1, then four digits.

    Such a string is already its number's one E.164 spelling (NANP has no national prefix left to strip from
    it), so list keys and lookups of this shape need no parse: the company list and the check stay fast at
    registry scale.
    """
    return (
        len(text) == 12
        and text.startswith("+1")
        and text[2:].isascii()
        and text[2:].isdigit()
        and text[2] not in "01"
        and text[5] not in "01"
    )


def list_key(entry: str, default_region: str = "US") -> str:
    """A do-not-call list entry as the E.164 string it must match; :class:`NumberError` naming it if it has none.

    Every list (company list, opt-outs, entries loaded from the store) goes through here: an entry kept as
    typed (``(212) 510-4860``) would never match the E.164 numbers dialed, and the person would keep being
    called.
    """
    if nanp_shaped(entry):
        return entry
    return normalize(entry, default_region)


class DoNotCall:
    """Every do-not-call source a campaign must honour, asked as one: :meth:`check` says why a number is blocked.

    ``registry`` covers US numbers; with ``require_registry`` (the default) a US number cannot be cleared without a
    registry fresher than ``max_age_days``: fail closed. ``internal`` is the company's own list, in any spelling
    :func:`~dialer.compliance.numbers.normalize` reads with ``default_region`` (an entry that is not a number is a
    :class:`~dialer.compliance.numbers.NumberError`, never silently kept). Opt-outs taken on calls go through
    :meth:`opt_out`, which normalises, then persists them (via ``persist``) before the in-memory list changes, so an
    opt-out acknowledged to the caller survives a crash. ``company_lists`` are large company files prepared once
    (:class:`CompanyList`, memory-mapped): they are consulted together with ``internal`` and the opt-outs.

    :meth:`check_many` answers for a whole batch exactly what :meth:`check` answers for each number, with one
    vectorised registry and company-list lookup instead of a Python call per number (the lead import's scrub).
    """

    def __init__(
        self,
        registry: NationalRegistry | None = None,
        internal: Iterable[str] = (),
        *,
        require_registry: bool = True,
        max_age_days: float = MAX_AGE_DAYS,
        registry_regions: Iterable[str] = ("US",),
        clock: Any = time.time,
        default_region: str = "US",
        company_lists: Iterable[CompanyList] = (),
    ) -> None:
        self.registry = registry
        self.require_registry = require_registry
        self.max_age_days = max_age_days
        self.registry_regions = frozenset(registry_regions)
        self.default_region = default_region
        self._clock = clock
        self._internal: set[str] = {list_key(n, default_region) for n in internal}
        self._lists: list[CompanyList] = list(company_lists)
        self._lock = threading.Lock()

    def add_company_list(self, company_list: CompanyList) -> None:
        """Consult a prepared company list (see :class:`CompanyList`) from now on, next to the in-memory entries."""
        with self._lock:
            self._lists = [*self._lists, company_list]

    def _listed(self, e164: str) -> bool:
        if e164 in self._internal:
            return True
        if self._lists:
            value = int(e164[1:])
            return any(cl.contains_value(value) for cl in self._lists)
        return False

    def add_internal(self, numbers: Iterable[str]) -> None:
        """Add company-list entries (any spelling); all or none: one that is not a number raises
        :class:`~dialer.compliance.numbers.NumberError` naming it, and nothing is added."""
        keys = {list_key(n, self.default_region) for n in numbers}
        with self._lock:
            self._internal.update(keys)

    def opt_out(self, number: str, persist: Any = None) -> str:
        """Block ``number`` (any spelling) at once; returns its E.164 form.

        The number is normalised first, so a request that names no number raises
        :class:`~dialer.compliance.numbers.NumberError` (naming the input) before anything is stored: the caller
        learns it was not recorded. ``persist(e164)`` (for example a store's ``add_opt_out``) runs next.
        """
        e164 = list_key(number, self.default_region)
        if persist is not None:
            persist(e164)
        with self._lock:
            self._internal.add(e164)
        return e164

    def check(self, e164: str) -> str | None:
        """Why ``e164`` must not be dialed, or ``None`` if it may be.

        Only the exact E.164 spelling can be looked up in the lists, so anything else fails closed: a number
        given in another spelling, or one that is not a valid number, is blocked with reason
        ``not an E.164 number`` rather than answered "may dial" after missing every list.
        """
        if not (nanp_shaped(e164) or is_e164(e164)):
            return f"not an E.164 number: {e164!r}"[:80]
        if self._listed(e164):
            return "internal list"
        from dialer.compliance.numbers import region_of

        region = region_of(e164)
        if not region:  # E.164's shape, but no number of any region (an unassigned area code, say)
            return f"not an E.164 number: {e164!r} is not a valid number"
        if region in self.registry_regions:
            if self.registry is None:
                return "no national registry loaded" if self.require_registry else None
            if self.registry.age_days(self._clock()) > self.max_age_days:
                return f"national registry older than {self.max_age_days:g} days"
            if self.registry.contains(e164):
                return "national registry"
        return None

    def blocked(self, e164: str) -> bool:
        return self.check(e164) is not None

    def check_many(self, numbers: Sequence[str]) -> list[str | None]:
        """:meth:`check` of every number, in order, with the same reasons.

        NANP-shaped numbers (``+1`` and ten digits, the bulk of any US lead file) take the batch path: their
        region comes from phonenumbers' per-prefix verdict (:func:`~dialer.compliance.numbers.nanp_verdict`),
        and the company lists and the registry bitmap are asked once for the whole batch with NumPy. Anything
        else is handed to :meth:`check` one by one.
        """
        from dialer.compliance.numbers import nanp_verdict

        np = _np()
        out: list[str | None] = [None] * len(numbers)
        todo: list[int] = []
        for i, e164 in enumerate(numbers):
            if isinstance(e164, str) and nanp_shaped(e164):
                todo.append(i)
            else:
                out[i] = self.check(e164)
        if not todo:
            return out
        tens = np.fromiter((int(numbers[i][2:]) for i in todo), dtype=np.uint64, count=len(todo))
        listed = np.zeros(len(todo), dtype=bool)
        for cl in self._lists:
            listed |= cl.contains_many(tens + np.uint64(NANP_SPACE))
        internal = self._internal
        ask: list[int] = []
        stale = None
        if self.registry is not None:
            age_limit = self.max_age_days
            if self.registry.age_days(self._clock()) > age_limit:
                stale = f"national registry older than {age_limit:g} days"
        for j, i in enumerate(todo):
            e164 = numbers[i]
            if listed[j] or e164 in internal:
                out[i] = "internal list"
                continue
            region = nanp_verdict(e164[2:]).region
            if not region:
                out[i] = f"not an E.164 number: {e164!r} is not a valid number"
            elif region in self.registry_regions:
                if self.registry is None:
                    out[i] = "no national registry loaded" if self.require_registry else None
                elif stale is not None:
                    out[i] = stale
                else:
                    ask.append(j)
        if ask and self.registry is not None:
            sel = np.asarray(ask, dtype=np.int64)
            for j, hit in zip(ask, self.registry.contains_batch(tens[sel]).tolist(), strict=True):
                if hit:
                    out[todo[j]] = "national registry"
        return out

    def blocked_many(self, numbers: Sequence[str]) -> list[bool]:
        """:meth:`blocked` of every number, in order (see :meth:`check_many`)."""
        return [reason is not None for reason in self.check_many(numbers)]

    def __call__(self, e164: str) -> bool:
        return self.blocked(e164)


def load_internal_list(path: str | Path, *, default_region: str = "US") -> list[str]:
    """A company do-not-call file: one number per line (any format ``phonenumbers`` reads; ``#`` comments).

    Every line must be a number: a line that is not raises :class:`DncFormatError`, since a silently skipped
    entry is a person called against their wish. This reads the whole file into Python strings, which suits small
    lists; a large one (millions of numbers) should be opened as a :class:`CompanyList`, prepared once.
    """
    return [f"+{value}" for batch in _read_company_file(path, default_region) for value in batch.tolist()]


_COMPANY_CHUNK = 1 << 22  # bytes of a company list parsed at a time
PREPARED_SUFFIX = ".dnc.npy"
PREPARED_META_SUFFIX = ".dnc.json"
COMPANY_FORMAT = 1


def _read_company_file(path: str | Path, default_region: str) -> Iterator[npt.NDArray[np.uint64]]:
    """Batches of a company file's entries as E.164 integers (``+12025550101`` -> ``12025550101``), in file order.

    The same rules as :func:`list_key` line by line, with a vectorised path for blocks made only of
    ``+1NXXNXXXXXX`` lines or registry-style ``NPA,NXXXXXX`` lines (what exports of millions of numbers look like):
    those are exactly the lines :func:`list_key` and :func:`_parse_line` accept without a parse.
    """
    np = _np()
    source = str(path)
    line_no = 0
    with open(path, "rb") as fh:
        rest = b""
        while True:
            block = fh.read(_COMPANY_CHUNK)
            data = rest + block
            if block:
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    rest = data
                    continue
                chunk, rest = data[:cut], data[cut:]
            else:
                chunk, rest = data, b""
            if chunk:
                fast = _fast_e164_chunk(chunk)
                if fast is None:
                    registry_style = _fast_chunk(chunk)
                    if registry_style is not None:
                        fast = registry_style + np.uint64(NANP_SPACE)
                if fast is not None:
                    line_no += len(fast)
                    yield fast
                else:
                    lines = chunk.split(b"\n")
                    if chunk.endswith(b"\n"):
                        lines.pop()
                    out: list[int] = []
                    for raw in lines:
                        line_no += 1
                        value = _company_line(raw, source, line_no, default_region)
                        if value is not None:
                            out.append(value)
                    if out:
                        yield np.asarray(out, dtype=np.uint64)
            if not block:
                break


def _company_line(raw: bytes, source: str, line_no: int, default_region: str) -> int | None:
    try:
        text = raw.decode("utf-8").split("#", 1)[0].strip()
    except UnicodeDecodeError:
        raise DncFormatError(source, line_no, "not UTF-8 text") from None
    if not text:
        return None
    if "," in text:  # registry-style 'area code,number'
        try:
            number, _ = _parse_line(text)
        except ValueError as exc:
            raise DncFormatError(source, line_no, str(exc)) from None
        return NANP_SPACE + number
    try:
        return int(list_key(text, default_region)[1:])
    except NumberError as exc:
        raise DncFormatError(source, line_no, str(exc)) from None


def _fast_e164_chunk(buf: bytes) -> npt.NDArray[np.uint64] | None:
    """Vectorised parse of a chunk made only of NANP-shaped ``+1NXXNXXXXXX\\n`` lines; ``None`` otherwise."""
    np = _np()
    if not buf or len(buf) % 13:
        return None
    a = np.frombuffer(buf, dtype=np.uint8).reshape(-1, 13)
    if not ((a[:, 0] == 43).all() and (a[:, 1] == 49).all() and (a[:, 12] == 10).all()):
        return None
    digits = a[:, 2:12] - 48
    if (digits > 9).any() or (digits[:, 0] < 2).any() or (digits[:, 3] < 2).any():
        return None
    weights = (10 ** np.arange(9, -1, -1, dtype=np.uint64)).astype(np.uint64)
    return (digits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64) + np.uint64(NANP_SPACE)


class CompanyList:
    """A company do-not-call file prepared once, like the registry: its numbers as a sorted ``uint64`` array.

    Reading 20 million lines through the normaliser takes tens of seconds and the resulting Python set takes
    gigabytes, at every start. So :meth:`open` keeps the parsed list next to the file (``<file>.dnc.npy``, E.164
    numbers as integers, sorted and unique, plus ``<file>.dnc.json`` saying what it was built from) and maps it in
    (milliseconds, shared between processes through the page cache). It is rebuilt whenever the file's size, mtime
    or a hash of its first and last MiB differ from the recorded ones, or the default region (which decides how
    numbers without a country code read) changed; a file that has a line that is not a number is refused as
    :func:`load_internal_list` refuses it, and nothing is prepared. Membership is a binary search
    (``np.searchsorted``), batched in :meth:`contains_many`.
    """

    def __init__(self, source: Path, numbers: npt.NDArray[np.uint64], *, rebuilt: bool) -> None:
        self.source = source
        self.numbers = numbers
        self.rebuilt = rebuilt

    @staticmethod
    def prepared_paths(path: str | Path) -> tuple[Path, Path]:
        p = Path(path)
        return p.with_name(p.name + PREPARED_SUFFIX), p.with_name(p.name + PREPARED_META_SUFFIX)

    @classmethod
    def open(cls, path: str | Path, *, default_region: str = "US") -> CompanyList:
        """The prepared form of ``path``, prepared now if it is missing or out of date."""
        np = _np()
        source = Path(path)
        identity = _company_identity(source, default_region)
        data, meta = cls.prepared_paths(source)
        try:
            recorded = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = None
        if recorded == identity:
            try:
                numbers = np.load(data, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError):
                numbers = None
            if numbers is not None and numbers.dtype == np.uint64 and numbers.ndim == 1:
                return cls(source, numbers, rebuilt=False)
        return cls.prepare(source, default_region=default_region)

    @classmethod
    def prepare(cls, path: str | Path, *, default_region: str = "US") -> CompanyList:
        """Parse ``path`` and write its prepared form (``.dnc.json`` last, so a crash leaves it unprepared)."""
        np = _np()
        source = Path(path)
        identity = _company_identity(source, default_region)
        batches = list(_read_company_file(source, default_region))
        numbers = _sorted_unique(np.concatenate(batches)) if batches else np.zeros(0, dtype=np.uint64)
        if _company_identity(source, default_region) != identity:
            raise DncError(f"{source}: changed while it was being prepared; open it again")
        data, meta = cls.prepared_paths(source)
        try:
            meta.unlink(missing_ok=True)
            tmp = data.with_name(data.name + ".tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, numbers, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, data)
            tmp_meta = meta.with_name(meta.name + ".tmp")
            tmp_meta.write_text(json.dumps(identity), encoding="utf-8")
            os.replace(tmp_meta, meta)
        except OSError:
            pass  # a read-only directory: use the list parsed now, prepare again at the next start
        return cls(source, numbers, rebuilt=True)

    def __len__(self) -> int:
        return len(self.numbers)

    def contains_value(self, value: int) -> bool:
        """Whether the E.164 number with digits ``value`` (``12025550101``) is on the list."""
        numbers = self.numbers
        if not 0 <= value < 1 << 64:
            return False
        # An np.uint64 key: a Python int would make NumPy convert (copy) the whole array to a common type.
        i = int(numbers.searchsorted(_np().uint64(value)))
        return i < len(numbers) and int(numbers[i]) == value

    def __contains__(self, e164: object) -> bool:
        if not (isinstance(e164, str) and e164[1:].isascii() and e164[1:].isdigit() and e164.startswith("+")):
            return False
        return self.contains_value(int(e164[1:]))

    def contains_many(self, values: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Membership of each E.164 integer in ``values`` (one vectorised binary search).

        The queries are sorted first: successive searches then walk the array in order, touching each page of
        the mapping once instead of at random (several times faster on a list of millions).
        """
        np = _np()
        values = np.asarray(values, dtype=np.uint64)
        numbers = self.numbers
        out = np.zeros(len(values), dtype=bool)
        if len(numbers) == 0 or len(values) == 0:
            return out
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        idx = numbers.searchsorted(ordered)
        idx[idx == len(numbers)] = len(numbers) - 1
        out[order] = np.asarray(numbers[idx]) == ordered
        return out


def _sorted_unique(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Sorted distinct values (``np.unique`` hashes first in NumPy 2, ten times slower on 20 M integers)."""
    np = _np()
    values = np.sort(values)
    if len(values) < 2:
        return values
    keep = np.empty(len(values), dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def _company_identity(source: Path, default_region: str) -> dict[str, Any]:
    """Size, mtime and a hash of the first and last MiB: what says 'the same file' in milliseconds at any size."""
    import hashlib

    with open(source, "rb") as fh:
        st = os.fstat(fh.fileno())
        h = hashlib.blake2b(digest_size=16)
        h.update(fh.read(1 << 20))
        if st.st_size > 1 << 20:
            fh.seek(max(1 << 20, st.st_size - (1 << 20)))
            h.update(fh.read(1 << 20))
    return {
        "format": COMPANY_FORMAT,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "hash": h.hexdigest(),
        "default_region": default_region,
    }
