"""The audit export and the retention purge: what a compliance officer reads and signs, and what the law lets go.

Why an export and not "send them the store": an auditor wants the records in a form any tool reads (CSV), the
figures a regulator asks about on one page (abandonment per regime window, ring time, the 2-s rule, caller ID),
and a way to know the records were not edited afterwards. The last is the evidence log's job
(:mod:`dialer.compliance.evidence`): the export verifies its chain and prints its HEAD (last sequence number and
hash). The officer signs that head; a later copy of the log that does not hold that hash at that number was cut or
rewritten, and no edit of the store can change what the chain says about a call.

Two sources, and why both: the store's attempt rows are what the abandonment ledger counts (they hold the agent's
disposition and the outcome of calls a crash cut, which never reached the log), and the log is what proves the
calls. The export joins them call by call and says where they disagree: a call in the log with no attempt (removed
by a recorded purge, or unexplained) and an attempt with no call in the log. Inbound callers likewise: the store's
``inbound_calls`` rows (schema 7) are joined to the log's ``inbound`` entries, written to ``inbound.csv`` (only
when the audited campaigns had inbound calls, so an outbound-only export is as it was) and counted in the summary
with their figures (callers, answered, abandoned, blocked, service level, ASA).

Retention (:func:`purge`): the store's attempt rows older than the law requires are deleted, and its inbound call
rows by the same rule (by arrival time; they hold callers' numbers as attempts hold the numbers dialed); the
log's lines are never touched. A ``purge`` entry appended to the chain records what went (counts per campaign, the
range of dial times, a SHA-256 of the removed rows) and when, in the same store transaction as the deletion, so
rows are never gone without a record of it. The log file itself is not rotated: campaign processes hold it open
and append to it, and a renamed file would keep receiving their entries (see docs/compliance.md, "Retention").
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dialer.amd import PEOPLE_TAKEN_FOR_MACHINES, FalseMachineEstimate
from dialer.compliance import ledger
from dialer.compliance.evidence import EvidenceLog, Verdict, verify
from dialer.errors import ConfigError
from dialer.store import AttemptRow, InboundRow, not_a_store, open_store

#: Exit statuses of ``dialer report compliance --audit`` (and of ``dialer purge``): 0 everything in order; 1 a
#: ledger window over its cap in the worst case (as without ``--audit``); 2 a usage or configuration error (the CLI's
#: own); 3 the evidence chain is broken or missing while the store holds calls, which outranks 1: figures whose
#: records cannot be shown unedited are not worth signing.
EXIT_OK = 0
EXIT_OVER_CAP = 1
EXIT_USAGE = 2
EXIT_CHAIN = 3

#: Months of records the law requires: FTC TSR record keeping is 24 months (verify), Canada's CRTC 3 years
#: (verify). The default keeps the longest, so one setting is lawful for every regime the dialer knows.
MIN_KEEP_MONTHS = 24
DEFAULT_KEEP_MONTHS = 36

#: The fields of a ``call`` entry, in the order ``calls.csv`` gives them (what ``LiveCampaign.evidence`` writes);
#: fields a later version adds follow, sorted, so an export never drops one.
CALL_FIELDS = (
    "campaign_id",
    "call_id",
    "lead_id",
    "phone",
    "caller_id",
    "sip_call_id",
    "sip_status",
    "placed",
    "placed_at",
    "ringing_at",
    "ring_seconds",
    "picked_up_at",
    "answered_at",
    "amd_verdict",
    "amd_seconds",
    "connected_at",
    "agent_id",
    "message_at",
    "message_played",
    "wait",
    "outcome",
    "abandoned",
    "bridge_failed",
    "agent_lost",
    "customer_hung_up",
    "ended_at",
)
HOLD_FIELDS = ("campaign_id", "lead_id", "phone", "rule", "reason", "source", "version", "until", "final")
#: How many windows of one regime the one-page summary lists (the over-cap ones first); windows.csv has them all.
SUMMARY_WINDOWS = 8


@dataclass(frozen=True, slots=True)
class Logged:
    """One entry read from the log: its position (1-based, among non-blank lines), the entry, and whether the
    chain verified up to and including it (entries from the first break on are exported but not vouched for)."""

    position: int
    entry: Mapping[str, Any]
    verified: bool

    @property
    def data(self) -> Mapping[str, Any]:
        data = self.entry.get("data")
        return data if isinstance(data, Mapping) else {}


@dataclass(frozen=True, slots=True)
class RingCheck:
    """The ring-time rule (ring at least 15 s before giving up) over the calls the dialer cancelled while ringing
    (outcome ``no_answer``): how many, the shortest ring measured from the first 180/183, how many rang less than
    the minimum, and how many have no ring measured (cancelled before any ringing was signalled)."""

    cancelled: int = 0
    shortest: float | None = None
    shortest_call: str = ""
    under: int = 0
    unmeasured: int = 0
    minimum: float = 15.0

    @property
    def ok(self) -> bool:
        return self.under == 0


@dataclass(frozen=True, slots=True)
class WaitCheck:
    """The 2-s rule over the live answers the ledger counts: the longest measured wait to an agent and to the
    message's start, how many of each were over 2 s, and how many connects had no measured wait at all (the ledger
    counts those abandoned too, as ``late_connects``)."""

    live: int = 0
    max_to_agent: float | None = None
    max_to_message: float | None = None
    connects_over: int = 0
    connects_unmeasured: int = 0
    messages_over: int = 0

    @property
    def over(self) -> int:
        return self.connects_over + self.messages_over


@dataclass(slots=True)
class Audit:
    """Everything the export writes, gathered once (see :func:`collect`)."""

    store: str  # the store file's path, or a PostgreSQL URL without its password
    evidence: Path
    campaigns: tuple[str, ...]
    generated_at: float
    verdict: Verdict | None  # None: no log file
    unreadable_lines: int
    calls: list[Logged]
    holds: list[Logged]
    imports: list[Logged]
    purges: list[Logged]
    attempts: dict[str, list[AttemptRow]]
    ledgers: dict[str, dict[str, list[ledger.Window]]]
    matched: dict[int, AttemptRow]  # a call entry's position -> its store attempt
    ring: RingCheck
    waits: WaitCheck
    caller_ids: Counter[str]
    invalid_caller_ids: dict[str, str]
    calls_purged: int  # placed calls in the log whose attempt a recorded purge removed
    calls_unexplained: list[Logged]  # placed calls in the log with no attempt and no purge to explain it
    attempts_without_call: list[AttemptRow]  # closed, not interrupted attempts with no call in the log
    amd: FalseMachineEstimate = PEOPLE_TAKEN_FOR_MACHINES
    entry_counts: Counter[str] = field(default_factory=Counter)
    #: The store's inbound callers per audited campaign (schema 7), the log's ``inbound`` entries of those
    #: campaigns, and the pairs: an entry's position -> its store row.
    inbound: dict[str, list[InboundRow]] = field(default_factory=dict)
    inbound_logged: list[Logged] = field(default_factory=list)
    inbound_matched: dict[int, InboundRow] = field(default_factory=dict)
    inbound_purged: int = 0  # inbound entries in the log whose store row a recorded purge removed
    inbound_unexplained: list[Logged] = field(default_factory=list)  # ... with no row and no purge to explain it

    @property
    def placed(self) -> int:
        return sum(len(rows) for rows in self.attempts.values())

    @property
    def inbound_calls(self) -> int:
        """Inbound callers in the store, over the audited campaigns."""
        return sum(len(rows) for rows in self.inbound.values())

    @property
    def chain(self) -> str:
        """``OK``, ``BROKEN``, ``MISSING`` (no log although the store holds calls, placed or inbound) or ``EMPTY``
        (neither has any)."""
        if self.verdict is None:
            return "MISSING" if self.placed or self.inbound_calls else "EMPTY"
        return "OK" if self.verdict.ok else "BROKEN"

    @property
    def windows(self) -> list[ledger.Window]:
        return [w for by_regime in self.ledgers.values() for rows in by_regime.values() for w in rows]

    @property
    def over_cap(self) -> bool:
        return any(w.over_cap for w in self.windows)

    @property
    def exit_status(self) -> int:
        if self.chain in ("BROKEN", "MISSING"):
            return EXIT_CHAIN
        return EXIT_OVER_CAP if self.over_cap else EXIT_OK

    @property
    def period(self) -> tuple[float, float] | None:
        """First and last dial on record: store attempts and the log's placed calls."""
        times = [a.dialed_at for rows in self.attempts.values() for a in rows]
        times += [t for c in self.calls if (t := _num(c.data.get("placed_at"))) is not None]
        return (min(times), max(times)) if times else None


# -- reading ---------------------------------------------------------------------------------------------------


def read_log(path: Path, verdict: Verdict | None) -> tuple[list[Logged], int]:
    """Every entry of the log that can be read, marked verified or not, and the number of lines that could not.

    Why not :func:`~dialer.compliance.evidence.entries`: it stops at the first bad line, and an export of a broken
    log must still show everything that is there (the break is what the auditor needs to see around).
    """
    if verdict is None:
        return [], 0
    out: list[Logged] = []
    bad = 0
    position = 0
    trusted = verdict.count + 1 if verdict.ok else (verdict.broken_at or 0)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            position += 1
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(entry, dict):
                out.append(Logged(position, entry, position < trusted))
            else:
                bad += 1
    return out, bad


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _for(campaigns: Sequence[str], logged: Logged) -> bool:
    """Whether an entry belongs to the audited campaigns (one that names none belongs to every campaign)."""
    campaign = logged.data.get("campaign_id")
    return campaign is None or campaign in campaigns


def _match(calls: Iterable[Logged], attempts: Iterable[AttemptRow]) -> tuple[dict[int, AttemptRow], list[Logged]]:
    """Pair each placed call in the log with its store attempt: same campaign, lead and engine call id, and, when a
    lead has several (call ids restart with each run), the attempt placed closest in time. Returns the pairs and
    the placed calls left without an attempt."""
    pool: dict[tuple[str, str, int], list[AttemptRow]] = {}
    for a in attempts:
        if a.call_id is not None:
            pool.setdefault((a.campaign_id, a.lead_id, a.call_id), []).append(a)
    matched: dict[int, AttemptRow] = {}
    orphans: list[Logged] = []
    for c in calls:
        d = c.data
        if d.get("placed") is False:
            continue  # nothing left the dialer: the store unclaimed it, there is no attempt to find
        call_id = d.get("call_id")
        candidates = (
            pool.get((str(d.get("campaign_id")), str(d.get("lead_id")), call_id), [])
            if isinstance(call_id, int)
            else []
        )
        if not candidates:
            orphans.append(c)
            continue
        placed = _num(d.get("placed_at")) or _num(c.entry.get("t")) or 0.0
        best = min(candidates, key=lambda a: abs((a.placed_at or a.dialed_at) - placed))
        candidates.remove(best)
        matched[c.position] = best
    return matched, orphans


def _match_inbound(logged: Iterable[Logged], rows: Iterable[InboundRow]) -> tuple[dict[int, InboundRow], list[Logged]]:
    """Pair each ``inbound`` entry of the log with its store row: same campaign and call id, and the row that
    arrived closest in time (a refused duplicate INVITE repeats a queued caller's Call-ID; a refused caller with
    no Call-ID has ``""``). Returns the pairs and the entries left without a row."""
    pool: dict[tuple[str, str], list[InboundRow]] = {}
    for r in rows:
        pool.setdefault((r.campaign_id, r.call_id), []).append(r)
    matched: dict[int, InboundRow] = {}
    orphans: list[Logged] = []
    for e in logged:
        d = e.data
        candidates = pool.get((str(d.get("campaign_id")), str(d.get("inbound_id") or "")), [])
        arrived = _num(d.get("arrived_at"))
        near = [r for r in candidates if arrived is not None and abs(r.arrived_at - arrived) < 1e-3]
        if not near:
            orphans.append(e)
            continue
        best = min(near, key=lambda r: abs(r.arrived_at - (arrived or 0.0)))
        candidates.remove(best)
        matched[e.position] = best
    return matched, orphans


def _purge_cutoffs(purges: Iterable[Logged], key: str = "campaigns") -> dict[str, float]:
    """Per campaign, the latest cutoff a recorded purge removed attempts before ("*" for a purge of every one);
    ``key="inbound_campaigns"``: the same for inbound call rows (a purge that removed none names no campaign)."""
    cut: dict[str, float] = {}
    for p in purges:
        before = _num(p.data.get("before"))
        if before is None:
            continue
        if key != "campaigns" and key not in p.data:
            continue
        removed = p.data.get(key)
        for campaign in removed if isinstance(removed, Mapping) else ("*",):
            cut[campaign] = max(cut.get(campaign, before), before)
    return cut


def _explained_by_purges(orphans: Iterable[Logged], cut: Mapping[str, float], at: str) -> tuple[int, list[Logged]]:
    """Of the log entries left without a store row, how many a recorded purge explains (their time, ``data[at]``
    or else the entry's ``t``, is before their campaign's cutoff in ``cut`` or the all-campaign one, ``"*"``),
    and the others, which nothing explains."""
    purged, unexplained = 0, list[Logged]()
    for orphan in orphans:
        t = _num(orphan.data.get(at)) or _num(orphan.entry.get("t")) or 0.0
        before = max(cut.get(str(orphan.data.get("campaign_id")), 0.0), cut.get("*", 0.0))
        if t < before:
            purged += 1
        else:
            unexplained.append(orphan)
    return purged, unexplained


def ring_check(calls: Iterable[Logged]) -> RingCheck:
    """The shortest ring before the dialer's CANCEL, from the log: ``ring_seconds``, else ``ended_at`` minus
    ``ringing_at`` (a no-answer call ends at the CANCEL)."""
    from dialer.engine.core import MIN_RING_TIMEOUT

    cancelled = under = unmeasured = 0
    shortest: float | None = None
    which = ""
    for c in calls:
        d = c.data
        if d.get("outcome") != "no_answer" or d.get("placed") is False:
            continue
        cancelled += 1
        ring = _num(d.get("ring_seconds"))
        rang, ended = _num(d.get("ringing_at")), _num(d.get("ended_at"))
        if ring is None and rang is not None and ended is not None:
            ring = ended - rang
        if ring is None:
            unmeasured += 1
            continue
        under += ring < MIN_RING_TIMEOUT
        if shortest is None or ring < shortest:
            shortest = ring
            which = f"lead {d.get('lead_id')}, Call-ID {d.get('sip_call_id') or '?'}, log seq {c.entry.get('seq')}"
    return RingCheck(cancelled, shortest, which, under, unmeasured, MIN_RING_TIMEOUT)


def wait_check(attempts: Iterable[AttemptRow]) -> WaitCheck:
    """The 2-s rule over the ledger's live answers, with the ledger's own measure (:func:`ledger.measured_wait`),
    so its counts are the ledger's: ``connects_over + connects_unmeasured`` is the ledger's ``late_connects``."""
    live = connects_over = unmeasured = messages_over = 0
    to_agent: float | None = None
    to_message: float | None = None
    for a in attempts:
        if a.state != "done" or a.outcome not in ("connected", "abandoned"):
            continue
        if a.outcome == "connected" and a.disposition == "machine":
            continue  # a machine the detector missed: not a live answer
        live += 1
        wait = ledger.measured_wait(a)
        if ledger.late_connect(a):
            if wait is None:
                unmeasured += 1
            else:
                connects_over += 1
        if a.connected_at is not None and wait is not None:
            to_agent = wait if to_agent is None else max(to_agent, wait)
        elif a.message_at is not None and wait is not None:
            to_message = wait if to_message is None else max(to_message, wait)
            messages_over += wait > ledger.LEGAL_WAIT
    return WaitCheck(live, to_agent, to_message, connects_over, unmeasured, messages_over)


def _check_caller_ids(ids: Iterable[str]) -> dict[str, str]:
    """The caller IDs that are not valid, callable numbers, with why (the dialer refuses them at start; a log that
    shows one anyway came from an older dialer or another tool, and the officer must know)."""
    from dialer.sip.config import check_caller_id

    bad: dict[str, str] = {}
    for number in ids:
        try:
            check_caller_id(number)
        except ConfigError as exc:
            bad[number] = exc.message
    return bad


def collect(
    store_path: str | Path,
    *,
    campaigns: Sequence[str] | None = None,
    evidence: str | Path | None = None,
    regimes: Sequence[str] = ("us", "uk", "ca"),
    amd: FalseMachineEstimate = PEOPLE_TAKEN_FOR_MACHINES,
    now: float | None = None,
) -> Audit:
    """Read the store and its evidence log and gather what the export needs.

    ``campaigns``: the campaigns audited (default: every one in the store, since they share one log); ``evidence``:
    the log (default: beside the store, ``spring.sqlite`` -> ``spring.evidence.jsonl``).
    """
    import time

    log_path, label = _locate(store_path, evidence)
    with open_store(str(store_path)) as store:
        known = store.campaigns()
        chosen = tuple(campaigns) if campaigns else tuple(known)
        if not campaigns and _shared(store_path) and log_path.exists():
            # A shared store holds every machine's campaigns, a log only its own machine's: audit those.
            in_log = {str(e.data.get("campaign_id")) for e in read_log(log_path, verify(log_path))[0]}
            chosen = tuple(name for name in known if name in in_log)
        for name in chosen:
            if name not in known:
                raise ConfigError("--campaign", f"no campaign {name!r} in {label} (has {known})")
        attempts = {name: store.attempts(name) for name in chosen}
        inbound = {name: rows for name in chosen if (rows := store.inbound_calls(name))}
    verdict = verify(log_path) if log_path.exists() else None
    logged, unreadable = read_log(log_path, verdict)
    kinds = Counter(str(e.entry.get("kind")) for e in logged)
    mine = [e for e in logged if _for(chosen, e)]
    calls = [e for e in mine if e.entry.get("kind") == "call"]
    purges = [e for e in logged if e.entry.get("kind") == "purge"]
    every = [a for rows in attempts.values() for a in rows]
    matched, orphans = _match(calls, every)
    purged, unexplained = _explained_by_purges(orphans, _purge_cutoffs(purges), "placed_at")
    paired = {id(a) for a in matched.values()}
    without = [a for a in every if a.state == "done" and id(a) not in paired]
    presented = Counter(
        str(c.data.get("caller_id") or "") for c in calls if c.data.get("placed") is not False
    )  # "" counts calls whose caller ID was not recorded
    inbound_logged = [e for e in mine if e.entry.get("kind") == "inbound"]
    inbound_matched, inbound_orphans = _match_inbound(inbound_logged, (r for rows in inbound.values() for r in rows))
    inbound_purged, inbound_unexplained = _explained_by_purges(
        inbound_orphans, _purge_cutoffs(purges, "inbound_campaigns"), "arrived_at"
    )
    return Audit(
        store=label if _shared(store_path) else str(store_path),
        evidence=log_path,
        campaigns=chosen,
        generated_at=time.time() if now is None else now,
        verdict=verdict,
        unreadable_lines=unreadable,
        calls=calls,
        holds=[e for e in mine if e.entry.get("kind") == "hold"],
        imports=[e for e in mine if e.entry.get("kind") == "import"],
        purges=purges,
        attempts=attempts,
        ledgers={c: {r: ledger.windows(attempts[c], r, amd) for r in regimes} for c in chosen},
        matched=matched,
        ring=ring_check(calls),
        waits=wait_check(every),
        caller_ids=presented,
        invalid_caller_ids=_check_caller_ids(n for n in presented if n),
        calls_purged=purged,
        calls_unexplained=unexplained,
        attempts_without_call=without,
        amd=amd,
        entry_counts=kinds,
        inbound=inbound,
        inbound_logged=inbound_logged,
        inbound_matched=inbound_matched,
        inbound_purged=inbound_purged,
        inbound_unexplained=inbound_unexplained,
    )


def _shared(location: str | Path) -> bool:
    return str(location).split("://", 1)[0].lower() in ("postgresql", "postgres")


def _locate(location: str | Path, evidence: str | Path | None) -> tuple[Path, str]:
    """The evidence log to read for the store at ``location``, and the store's name as shown (a PostgreSQL URL
    without its password). A store file must exist; a shared store has no file beside it, so its log is named."""
    if _shared(location):
        from dialer.store.postgres import redact

        if evidence is None:
            raise ConfigError(
                "--evidence",
                "is needed with a PostgreSQL store: each machine keeps its evidence log beside its campaign file "
                "(CAMPAIGN.evidence.jsonl); name the one to audit",
            )
        return Path(evidence), redact(str(location))
    path = Path(location)
    problem = not_a_store(path)  # read-only: an audit or a purge must not make a store out of any file
    if problem is not None:
        raise ConfigError("STORE", problem)
    return (Path(evidence) if evidence is not None else evidence_path(path)), path.name


def evidence_path(store: Path) -> Path:
    """Where a store's chained evidence log lives: beside it, named after it (as ``dialer run`` writes it)."""
    return store.with_name(store.stem + ".evidence.jsonl")


# -- writing ---------------------------------------------------------------------------------------------------


def _iso(t: Any) -> str:
    value = _num(t)
    if value is None:
        return ""
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cell(value: Any) -> Any:
    """A value as a CSV cell: empty for none, 1/0 for booleans, JSON for anything nested, else as it is."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def _columns(known: Sequence[str], rows: Iterable[Logged]) -> list[str]:
    extra = sorted({k for r in rows for k in r.data} - set(known))
    return [*known, *extra]


def write_calls(audit: Audit, out: io.TextIOBase | Any) -> int:
    """``calls.csv``: one row per call in the log, every field of the entry, then the store's attempt (number,
    state, the agent's disposition) and the entry's place in the chain. Returns the number of rows."""
    columns = _columns(CALL_FIELDS, audit.calls)
    w = csv.writer(out)
    w.writerow(["seq", "logged_utc", *columns, "attempt_no", "attempt_state", "disposition", "verified", "hash"])
    for c in audit.calls:
        a = audit.matched.get(c.position)
        w.writerow(
            [
                _cell(c.entry.get("seq")),
                _iso(c.entry.get("t")),
                *(_cell(c.data.get(k)) for k in columns),
                "" if a is None else a.attempt_no,
                "" if a is None else a.state,
                "" if a is None else a.disposition or "",
                int(c.verified),
                _cell(c.entry.get("hash")),
            ]
        )
    return len(audit.calls)


def write_holds(audit: Audit, out: io.TextIOBase | Any) -> int:
    """``holds.csv``: every lead held or blocked at dial time, with the rule, its source and that source's
    version, and when (the entry's time; ``until_utc`` when the hold ends, empty for a final block)."""
    columns = [k for k in _columns(HOLD_FIELDS, audit.holds) if k != "until"]
    w = csv.writer(out)
    w.writerow(["seq", "time_utc", *columns, "until_utc", "verified"])
    for h in audit.holds:
        w.writerow(
            [
                _cell(h.entry.get("seq")),
                _iso(h.entry.get("t")),
                *(_cell(h.data.get(k)) for k in columns),
                _iso(h.data.get("until")),
                int(h.verified),
            ]
        )
    return len(audit.holds)


def write_imports(audit: Audit, out: io.TextIOBase | Any) -> int:
    """``imports.csv``: every lead import the log recorded, with all its fields (counts, where the rejects are)."""
    columns = _columns(("campaign_id",), audit.imports)
    w = csv.writer(out)
    w.writerow(["seq", "time_utc", *columns, "verified"])
    for e in audit.imports:
        w.writerow([_cell(e.entry.get("seq")), _iso(e.entry.get("t")), *(_cell(e.data.get(k)) for k in columns),
                    int(e.verified)])  # fmt: skip
    return len(audit.imports)


def write_windows(audit: Audit, out: io.TextIOBase | Any) -> None:
    """``windows.csv``: the ledger's windows (``dialer report compliance --csv``), with the campaign first."""
    w = csv.writer(out)
    header_written = False
    for campaign, by_regime in audit.ledgers.items():
        buf = io.StringIO()
        ledger.write_windows_csv([x for rows in by_regime.values() for x in rows], buf)
        buf.seek(0)
        rows = list(csv.reader(buf))
        if not header_written:
            w.writerow(["campaign_id", *rows[0]])
            header_written = True
        for row in rows[1:]:
            w.writerow([campaign, *row])
    if not header_written:
        w.writerow(["campaign_id", *ledger.WINDOW_COLUMNS])


INBOUND_LOG_COLUMNS = ("logged_seq", "logged_utc", "logged_caller", "logged_outcome", "verified", "hash")


def write_inbound(audit: Audit, out: io.TextIOBase | Any) -> int:
    """``inbound.csv``: every inbound caller of the audited campaigns, the store's row (as ``dialer report
    compliance`` counts it) beside the log entry it matches (its place in the chain, what it says); a log entry with
    no store row (purged, or unexplained) follows with its own fields only. Returns the number of rows."""
    by_row = {id(r): p for p, r in audit.inbound_matched.items()}
    entries = {e.position: e for e in audit.inbound_logged}
    buf = io.StringIO()
    n = ledger.write_inbound_csv([r for rows in audit.inbound.values() for r in rows], buf)
    buf.seek(0)
    rows = list(csv.reader(buf))
    w = csv.writer(out)
    w.writerow([*rows[0], *INBOUND_LOG_COLUMNS])
    order = sorted(
        (r for rs in audit.inbound.values() for r in rs), key=lambda r: (r.arrived_at, r.campaign_id, r.call_id)
    )
    for r, cells in zip(order, rows[1:], strict=True):
        e = entries.get(by_row.get(id(r), -1))
        w.writerow([*cells, *_log_cells(e)])
    for e in audit.inbound_logged:
        if e.position in audit.inbound_matched:
            continue
        d = e.data
        cells = [""] * len(ledger.INBOUND_COLUMNS)
        cells[0], cells[1] = str(d.get("campaign_id", "")), str(d.get("inbound_id", ""))
        w.writerow([*cells, *_log_cells(e)])
        n += 1
    return n


def _log_cells(e: Logged | None) -> list[Any]:
    if e is None:
        return ["", "", "", "", "", ""]
    return [
        _cell(e.entry.get("seq")),
        _iso(e.entry.get("t")),
        _cell(e.data.get("caller")),
        _cell(e.data.get("outcome")),
        int(e.verified),
        _cell(e.entry.get("hash")),
    ]


def write(audit: Audit, directory: str | Path) -> dict[str, Path]:
    """Write the export into ``directory`` (created if missing): calls.csv, holds.csv, imports.csv, windows.csv,
    inbound.csv (when the audited campaigns had inbound calls, in the store or the log) and summary.md. Returns the
    files by name."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    writers: list[tuple[str, Any]] = [
        ("calls.csv", write_calls),
        ("holds.csv", write_holds),
        ("imports.csv", write_imports),
        ("windows.csv", write_windows),
    ]
    if audit.inbound or audit.inbound_logged:
        writers.append(("inbound.csv", write_inbound))
    for name, writer in writers:
        path = out / name
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer(audit, fh)
        files[name] = path
    path = out / "summary.md"
    path.write_text(summary(audit), encoding="utf-8")
    files["summary.md"] = path
    return files


# -- the one-page summary --------------------------------------------------------------------------------------


def iso_utc(t: float) -> str:
    """An instant as people read it in a signed document: minutes, in UTC, named."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


_when = iso_utc


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _secs(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} s"


_REGIME = {"us": "US (FTC/FCC, 30-day)", "uk": "UK (Ofcom, per day)", "ca": "Canada (CRTC, per month)"}


def _chain_section(audit: Audit) -> list[str]:
    v = audit.verdict
    counts = ", ".join(f"{n} {k}" for k, n in sorted(audit.entry_counts.items())) or "none"
    if v is None:
        if audit.chain == "EMPTY":
            return ["## Evidence chain: EMPTY", "", f"No log at `{audit.evidence}` and no call in the store."]
        return [
            "## Evidence chain: MISSING — DO NOT SIGN",
            "",
            f"> **No evidence log at `{audit.evidence}`, although the store holds {audit.placed} attempts"
            + (f" and {audit.inbound_calls} inbound calls" if audit.inbound_calls else "")
            + ".** Nothing "
            "shows these records were not edited. Find the log (`--evidence FILE`) before signing.",
        ]
    if v.ok:
        return [
            "## Evidence chain: OK",
            "",
            f"`{audit.evidence.name}`: {v.count} entries ({counts}), each chained to the one before by SHA-256.",
            "",
            f"**HEAD: seq {v.head_seq}, hash `{v.head_hash}`**",
            "",
            f"Sign this head. A later copy of this log that does not hold this hash at seq {v.head_seq} has been "
            "cut or rewritten.",
        ]
    unreadable = f" {audit.unreadable_lines} line(s) could not be read at all." if audit.unreadable_lines else ""
    return [
        "## Evidence chain: BROKEN — DO NOT SIGN",
        "",
        f"> **THE EVIDENCE LOG DOES NOT VERIFY: {v.why} (at entry {v.broken_at}).** The log was edited, reordered "
        f"or damaged after it was written. Entries from there on are exported with `verified` = 0 and prove "
        f"nothing.{unreadable}",
        "",
        f"Last verified head: seq {v.head_seq}, hash `{v.head_hash}` ({v.count} entries read; {counts}).",
    ]


def _window_rows(rows: Sequence[ledger.Window]) -> tuple[list[ledger.Window], int]:
    """At most :data:`SUMMARY_WINDOWS` windows, over-cap ones first, then the highest worst-case rates, shown in
    time order, and how many were left to windows.csv."""
    if len(rows) <= SUMMARY_WINDOWS:
        return list(rows), 0
    ranked = sorted(rows, key=lambda w: (not w.over_cap, -(w.worst_rate or w.rate or 0.0), w.start))
    keep = sorted(ranked[:SUMMARY_WINDOWS], key=lambda w: w.start)
    return keep, len(rows) - len(keep)


def _ledger_section(audit: Audit) -> list[str]:
    lines = ["## Abandonment, per regulator window", ""]
    worst: tuple[float, str] | None = None
    for campaign, by_regime in audit.ledgers.items():
        for regime, rows in by_regime.items():
            lines.append(f"**{campaign}: {_REGIME[regime]}, cap {ledger.CAPS[regime]:.0%}**, {len(rows)} window(s)")
            lines.append("")
            if not rows:
                lines += ["No calls.", ""]
                continue
            amd = regime == "uk"
            head = "| window | placed | live | machine | abandoned | with message | without message | late (> 2 s) "
            head += "| interrupted/open | rate | worst case |" + (" AMD estimate |" if amd else "") + " over cap |"
            lines += [head, "|" + "---|" * (head.count("|") - 1)]
            shown, left = _window_rows(rows)
            for w in shown:
                cells = [
                    w.label,
                    w.placed,
                    w.live,
                    w.machine,
                    w.abandoned,
                    w.message_played,
                    w.abandoned - w.message_played,
                    w.late_connects,
                    w.interrupted + w.open_calls,
                    _pct(w.rate),
                    _pct(w.worst_rate),
                ]
                if amd:
                    cells.append(f"+{w.amd_people:.1f} (95%: {w.amd_people_upper:.1f})")
                cells.append("**OVER CAP**" if w.over_cap else "no")
                lines.append("| " + " | ".join(str(c) for c in cells) + " |")
                case = w.worst_rate if w.worst_rate is not None else w.rate
                if case is not None and (worst is None or case - w.cap > worst[0]):
                    worst = (case - w.cap, f"{_pct(case)} ({campaign}, {regime} {w.label}, cap {w.cap:.0%})")
            lines.append("")
            if left:
                lines += [f"{left} more window(s), none worse than those shown: windows.csv.", ""]
    over = [w for w in audit.windows if w.over_cap]
    if worst is not None:
        lines.append(f"Worst case against its cap: {worst[1]} — interrupted and open calls counted as abandoned.")
    if over:
        lines.append(f"**{len(over)} WINDOW(S) OVER THE CAP in the worst case.**")
    elif audit.windows:
        lines.append("No window is over its cap, in the worst case.")
    if any(w.regime == "uk" for w in audit.windows):
        a = audit.amd
        lines.append(
            f"UK rates include the estimated people answering-machine detection took for machines "
            f"({a.point:.1%} of people, upper 95% {a.upper95:.1%}; {a.source})."
        )
    return lines


def _rules_section(audit: Audit) -> list[str]:
    r, w = audit.ring, audit.waits
    ring = (
        f"{r.cancelled} call(s) cancelled while ringing; shortest ring {_secs(r.shortest)}"
        + (f" ({r.shortest_call})" if r.shortest_call else "")
        + f"; under {r.minimum:g} s: {r.under}; no ringing signalled before the cancel: {r.unmeasured}."
    )
    verdict = "PASS" if r.ok else "**FAIL**"
    lines = [
        "## Ring time and the 2-second rule",
        "",
        f"- Ring at least {r.minimum:g} s before giving up: {verdict}. {ring}",
        f"- Live answers: {w.live}. Longest measured wait to an agent: {_secs(w.max_to_agent)}; to the message's "
        f"start: {_secs(w.max_to_message)}.",
        f"- Over 2 s: {w.over} ({w.connects_over} connects, {w.messages_over} messages); connects with no "
        f"measured wait: {w.connects_unmeasured}. Late and unmeasured connects are counted abandoned above.",
    ]
    return lines


def _caller_id_section(audit: Audit) -> list[str]:
    lines = ["## Caller ID presented", ""]
    if not audit.caller_ids:
        return [*lines, "No placed call in the log."]
    for number, n in audit.caller_ids.most_common():
        if not number:
            lines.append(f"- **none recorded: {n} call(s)**")
        elif number in audit.invalid_caller_ids:
            lines.append(f"- **`{number}`: {n} call(s) — NOT VALID: {audit.invalid_caller_ids[number]}**")
        else:
            lines.append(f"- `{number}`: {n} call(s), a valid number")
    return lines


def _records_section(audit: Audit) -> list[str]:
    rules = Counter(str(h.data.get("rule") or h.data.get("reason") or "?") for h in audit.holds)
    by_rule = "; ".join(f"{k}: {n}" for k, n in rules.most_common(5))
    lines = [
        "## Records",
        "",
        f"- Calls in the log: {len(audit.calls)} (calls.csv), {len(audit.matched)} matched to a store attempt.",
        f"- Holds and blocks at dial time: {len(audit.holds)} (holds.csv){': ' + by_rule if by_rule else ''}.",
        f"- Lead imports recorded: {len(audit.imports)} (imports.csv).",
    ]
    if audit.calls_purged:
        lines.append(f"- Calls in the log whose store attempt a recorded purge removed: {audit.calls_purged}.")
    if audit.calls_unexplained:
        first = audit.calls_unexplained[0].entry.get("seq")
        lines.append(
            f"- **{len(audit.calls_unexplained)} call(s) in the log have no store attempt and no purge explains "
            f"it (first: seq {first}).**"
        )
    if audit.attempts_without_call:
        lines.append(
            f"- **{len(audit.attempts_without_call)} finished store attempt(s) have no call in the log** (made "
            "before the log existed, by another tool, or added to the store afterwards)."
        )
    unknown = sum(1 for rows in audit.attempts.values() for a in rows if a.state != "done")
    if unknown:
        lines.append(f"- Attempts cut by a crash or still open: {unknown} (counted abandoned in the worst case).")
    for p in audit.purges:
        d = p.data
        inbound = f" and {d['inbound_removed']} inbound call(s)" if d.get("inbound_removed") else ""
        lines.append(
            f"- Purge of {_when(_num(p.entry.get('t')) or 0.0)}: {d.get('removed', '?')} attempt(s){inbound} dialed "
            f"before {_when(_num(d.get('before')) or 0.0)} (keep {d.get('keep_months', '?')} months), log seq "
            f"{p.entry.get('seq')}."
        )
    return lines


def _inbound_section(audit: Audit) -> list[str]:
    """Inbound callers (only when the audited campaigns had any): each campaign's figures, and how the store's rows
    and the log's entries agree. No abandonment cap applies to them: they are the campaign's service record."""
    if not audit.inbound and not audit.inbound_logged:
        return []
    lines = ["## Inbound callers", ""]
    for campaign, rows in audit.inbound.items():
        figures = ledger.inbound_figures(rows)
        if figures is not None:
            lines.append(f"- {campaign}: {figures.line().removeprefix('inbound: ')}.")
    lines.append(
        f"- Inbound callers in the store: {audit.inbound_calls} (inbound.csv); in the log: "
        f"{len(audit.inbound_logged)}, {len(audit.inbound_matched)} matched to a store row."
    )
    if audit.inbound_purged:
        lines.append(f"- Inbound entries in the log whose store row a recorded purge removed: {audit.inbound_purged}.")
    if audit.inbound_unexplained:
        first = audit.inbound_unexplained[0].entry.get("seq")
        lines.append(
            f"- **{len(audit.inbound_unexplained)} inbound entr(y/ies) in the log have no store row and no purge "
            f"explains it (first: seq {first}).**"
        )
    paired = {id(r) for r in audit.inbound_matched.values()}
    alone = sum(1 for rows in audit.inbound.values() for r in rows if id(r) not in paired)
    if alone:
        lines.append(f"- **{alone} store inbound row(s) have no entry in the log.**")
    return [*lines, ""]


def summary(audit: Audit) -> str:
    """The one-page summary (Markdown): what was audited, the chain and its head, the ledger, the ring-time and
    2-s rules, caller ID, the records, and the lines to sign."""
    from dialer import __version__

    period = audit.period
    covered = "no calls" if period is None else f"{_when(period[0])} to {_when(period[1])} (first and last dial)"
    head = (
        f"seq {audit.verdict.head_seq}, hash `{audit.verdict.head_hash}`"
        if audit.verdict is not None
        else "(no evidence log)"
    )
    status = {"OK": "verified", "EMPTY": "empty", "BROKEN": "BROKEN", "MISSING": "MISSING"}[audit.chain]
    lines = [
        f"# Compliance audit: {audit.store if _shared(audit.store) else Path(audit.store).name}",
        "",
        f"- Campaign(s): {', '.join(audit.campaigns) or 'none'}",
        f"- Period covered: {covered}",
        f"- Calls placed (store): {audit.placed}",
        f"- Generated {_when(audit.generated_at)} by dialer {__version__} from `{audit.store}` and `{audit.evidence}`",
        "",
        *_chain_section(audit),
        "",
        *_ledger_section(audit),
        "",
        *_rules_section(audit),
        "",
        *_caller_id_section(audit),
        "",
        *_records_section(audit),
        "",
        *_inbound_section(audit),
        "## Sign-off",
        "",
        f"I have reviewed this audit. Evidence chain {status}; head {head}.",
        "",
        "Name: ______________________________   Role: ______________________________",
        "",
        "Signature: _________________________   Date: ______________________________",
        "",
    ]
    return "\n".join(lines)


# -- retention -------------------------------------------------------------------------------------------------


def months_before(t: float, months: int) -> float:
    """The instant ``months`` calendar months before ``t`` (UTC; the 31st becomes the month's last day)."""
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    y, m = divmod(d.year * 12 + (d.month - 1) - months, 12)
    day = min(d.day, calendar.monthrange(y, m + 1)[1])
    return d.replace(year=y, month=m + 1, day=day).timestamp()


def parse_date(text: str, key: str = "--before") -> float:
    """A date (``2024-01-31``, midnight UTC) or an ISO 8601 instant (naive means UTC), as epoch seconds."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(key, f"{text!r} is not a date (like 2024-01-31) or an ISO 8601 instant") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class Purge:
    """What a retention run removed (or, dry, would remove): attempts per campaign, their dial-time range, and
    the SHA-256 of the removed rows (so a backup of the store can later be shown to hold exactly these)."""

    before: float
    keep_months: int
    removed: int
    campaigns: dict[str, dict[str, Any]]
    digest: str
    entry: Mapping[str, Any] | None  # the purge entry appended to the log (None: dry run or nothing removed)
    dry_run: bool = False
    inbound_removed: int = 0  # inbound call rows removed (by arrival time), in the same transaction
    inbound_campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)


def _digest(rows: Sequence[AttemptRow | InboundRow]) -> str:
    """SHA-256 over the removed rows, attempts then inbound calls (with none of the latter, exactly what it was
    before inbound calls were kept)."""
    h = hashlib.sha256()
    for a in rows:
        h.update(json.dumps(asdict(a), sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n")
    return h.hexdigest()


def _per_campaign(rows: Iterable[tuple[str, float]], count: str, at: str) -> dict[str, dict[str, Any]]:
    """Per campaign of ``(campaign_id, time)`` pairs: ``{count: rows, "first_<at>": earliest, "last_<at>": latest}``."""
    first, last = f"first_{at}", f"last_{at}"
    out: dict[str, dict[str, Any]] = {}
    for campaign_id, t in rows:
        c = out.setdefault(campaign_id, {count: 0, first: t, last: 0.0})
        c[count] += 1
        c[first] = min(c[first], t)
        c[last] = max(c[last], t)
    return out


def _describe_inbound(rows: Sequence[InboundRow]) -> dict[str, dict[str, Any]]:
    return _per_campaign(((r.campaign_id, r.arrived_at) for r in rows), "calls", "arrived_at")


def _describe(rows: Sequence[AttemptRow]) -> dict[str, dict[str, Any]]:
    return _per_campaign(((a.campaign_id, a.dialed_at) for a in rows), "attempts", "dialed_at")


def purge(
    store_path: str | Path,
    *,
    before: float | None = None,
    keep_months: int = DEFAULT_KEEP_MONTHS,
    now: float | None = None,
    evidence: str | Path | None = None,
    dry_run: bool = False,
) -> Purge:
    """Delete the store's attempts dialed before ``before`` (default: the retention limit, ``keep_months`` before
    ``now``), and its inbound calls that arrived before it, and append a ``purge`` entry to the evidence log
    recording what went (``inbound_removed`` and ``inbound_campaigns`` join it when inbound rows went).

    Why inbound rows go by the same rule: they hold the callers' numbers as attempts hold the numbers dialed, and
    the law that requires keeping call records for a time does not ask to keep them longer.

    Refused with :class:`~dialer.errors.ConfigError`: a ``keep_months`` under :data:`MIN_KEEP_MONTHS` (the US TSR's
    24 months), a ``before`` later than the retention limit (it would delete records the law still requires), and
    a store whose evidence chain is broken (the store's rows may be the only unedited copy left; find out first).
    The deletion and the log entry happen in one store transaction: if the entry cannot be written, nothing is
    deleted. Leads, opt-outs and lockouts are kept: they are what keeps the next dial lawful.
    """
    import time

    if keep_months < MIN_KEEP_MONTHS:
        raise ConfigError(
            "--keep-months",
            f"{keep_months} is under {MIN_KEEP_MONTHS}: the US TSR requires 24 months of records (Canada 3 years)",
        )
    now = time.time() if now is None else now
    limit = months_before(now, keep_months)
    if before is None:
        before = limit
    elif before > limit:
        raise ConfigError(
            "--before",
            f"{_when(before)} is later than the retention limit {_when(limit)} ({keep_months} months before now): "
            "records after that limit are still required",
        )
    log_path, label = _locate(store_path, evidence)
    if log_path.exists():
        verdict = verify(log_path)
        if not verdict.ok:
            raise ChainBroken(log_path, verdict)
    entry: Mapping[str, Any] | None = None
    with open_store(str(store_path)) as store:
        try:
            with store.transaction():
                rows = store.purge_attempts(before)
                inbound = store.purge_inbound(before)
                described = _describe(rows)
                inbound_described = _describe_inbound(inbound)
                digest = _digest([*rows, *inbound])
                if dry_run:  # the same selection, then the transaction rolls back
                    raise _Rollback(
                        Purge(
                            before,
                            keep_months,
                            len(rows),
                            described,
                            digest,
                            None,
                            True,
                            len(inbound),
                            inbound_described,
                        )
                    )
                if rows or inbound:
                    body: dict[str, Any] = {
                        "store": label,
                        "before": before,
                        "keep_months": keep_months,
                        "removed": len(rows),
                        "campaigns": described,
                        "digest": digest,
                        "what": "store attempt rows; the evidence log is never purged",
                    }
                    if inbound:
                        body["inbound_removed"] = len(inbound)
                        body["inbound_campaigns"] = inbound_described
                        body["what"] = "store attempt and inbound call rows; the evidence log is never purged"
                    with EvidenceLog(log_path) as log:
                        entry = log.append("purge", body, t=now)
        except _Rollback as dry:
            return dry.result
    return Purge(before, keep_months, len(rows), described, digest, entry, False, len(inbound), inbound_described)


class ChainBroken(ConfigError):
    """The evidence chain does not verify: a purge is refused (exit status :data:`EXIT_CHAIN` from the CLI)."""

    def __init__(self, path: Path, verdict: Verdict) -> None:
        super().__init__("evidence", f"{path}: the chain is broken ({verdict.why}); nothing was purged")
        self.verdict = verdict


class _Rollback(Exception):
    """Raised inside the purge's transaction for a dry run: the transaction rolls back, the result goes out."""

    def __init__(self, result: Purge) -> None:
        super().__init__("dry run")
        self.result = result


__all__ = [
    "CALL_FIELDS",
    "DEFAULT_KEEP_MONTHS",
    "EXIT_CHAIN",
    "EXIT_OK",
    "EXIT_OVER_CAP",
    "EXIT_USAGE",
    "MIN_KEEP_MONTHS",
    "Audit",
    "ChainBroken",
    "Purge",
    "RingCheck",
    "WaitCheck",
    "collect",
    "evidence_path",
    "iso_utc",
    "months_before",
    "parse_date",
    "purge",
    "read_log",
    "ring_check",
    "summary",
    "wait_check",
    "write",
    "write_inbound",
]
