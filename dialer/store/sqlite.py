"""The embedded default store: one SQLite file in WAL mode.

Why SQLite: a campaign's durable facts (who was dialed, for which attempt, what happened, who opted out) must
survive a crash of the dialer process, and SQLite's WAL journal gives atomic, durable transactions with no server
to run. ``synchronous=FULL`` (the default here) also survives power loss; ``NORMAL`` survives a killed process
but may lose the last transactions on power loss, and is offered for tests and simulations.

The crash-safety contract the campaign layer builds on:

* :meth:`Store.claim` marks a lead as being dialed and inserts the attempt row in one committed transaction,
  *before* the dial is handed to the engine. After a crash the open attempt is found by :meth:`Store.open_attempts`
  and closed as interrupted: it is never dialed again under the same attempt number.
* :meth:`Store.complete` writes the call's outcome and the lead's next state in one transaction, so a record is
  either fully stored or (if the process died first) the attempt is still open and is recovered as above.

The store is used from one thread (the engine's): ``sqlite3`` connections are not shared across threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dialer.errors import DialerError
from dialer.store.schema import MIGRATIONS, SCHEMA_VERSION


class StoreError(DialerError):
    """The store cannot do what was asked (unknown campaign or lead, a database from a newer dialer, ...)."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached now (connection refused or lost, restarting, no pooled connection in
    time): the operation did not happen, or (a commit cut off mid-way) its outcome is unknown. Worth retrying
    later, unlike other :class:`StoreError` s. Only the shared PostgreSQL store raises it; the embedded SQLite file
    cannot go away under a running process."""


def _lost(lead_id: str, status: str, stored: int, next_at: float, epoch: float, judged: int | None) -> str:
    """Why a claim of a lead in this state is lost ("" when it may go ahead): both backends' rule."""
    if status != "ready":
        return f"lead {lead_id!r} is {status}, not ready"
    if judged is not None and stored != judged:
        return f"lead {lead_id!r} was dialed since it was read ({stored} attempts, not {judged})"
    if next_at > epoch:
        return f"lead {lead_id!r} is not due until {next_at}"
    return ""


class ClaimLost(StoreError):
    """A claim refused because the lead changed since the claimer read it: another dispatcher on the store claimed
    it (or is claiming it now), dialed it since (its attempts moved on), or it is no longer due. The claimer
    moves on to its next lead; the lead's own gates are asked again when it next comes up."""


class NumberBlocked(StoreError):
    """A claim refused because the lead's NUMBER is protected store-wide: an opt-out (``until`` is ``inf``) or an
    abandonment lockout (``until`` is when it ends), recorded by any campaign on the store."""

    def __init__(self, phone: str, reason: str, until: float) -> None:
        super().__init__(f"{phone}: {reason}")
        self.phone = phone
        self.reason = reason
        self.until = until


@dataclass(frozen=True, slots=True)
class StoredLead:
    """A lead as the store keeps it, with its dialing history summarised.

    ``attempts`` counts every attempt ever; ``pass_attempts`` those since the list was last recycled (what the
    attempt caps apply to). ``outcome_counts`` counts attempts per disposition, for per-outcome caps.
    ``next_at`` is the earliest epoch second at which the lead may be dialed again; ``lockout_until`` is the end of
    a legal lockout (after an abandoned call) that no recycling or callback may shorten.
    """

    campaign_id: str
    lead_id: str
    phone: str
    name: str = ""
    time_zone: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    seq: int = 0
    status: str = "ready"
    disposition: str = ""
    attempts: int = 0
    pass_attempts: int = 0
    list_pass: int = 0
    outcome_counts: Mapping[str, int] = field(default_factory=dict)
    next_at: float = 0.0
    lockout_until: float = 0.0
    callback_at: float | None = None
    source_line: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One dial of one lead; the abandonment ledger is computed from these rows."""

    campaign_id: str
    lead_id: str
    attempt_no: int
    phone: str
    state: str
    dialed_at: float
    call_id: int | None = None
    outcome: str | None = None
    disposition: str | None = None
    ended_at: float | None = None
    answered_at: float | None = None
    connected_at: float | None = None
    message_at: float | None = None
    wait: float | None = None
    agent_id: str | None = None
    abandoned: bool = False
    customer_hung_up: bool = False
    placed_at: float | None = None
    ringing_at: float | None = None
    message_played: bool | None = None
    bridge_failed: bool = False
    amd_verdict: str | None = None
    amd_seconds: float | None = None
    picked_up_at: float | None = None
    owner: str | None = None  # the dispatcher that claimed it (see Store.hold_owner); None before schema 6


#: How an inbound call ended, as the store keeps it (the engine's InboundOutcome values).
INBOUND_OUTCOMES = ("answered", "abandoned", "blocked")


@dataclass(frozen=True, slots=True)
class InboundRow:
    """One inbound caller of a campaign, as the store keeps it once the call ended (schema 7).

    ``call_id`` is the runtime's name for the call (the SIP Call-ID; ``""`` for a refused caller it had none for);
    ``caller`` who rang, as the evidence log keeps it; ``outcome`` ``answered``, ``abandoned`` or ``blocked``
    (turned away before queueing, ``reason`` saying why); ``wait`` the measured wait (arrival to the connect, or to
    hanging up; 0 when blocked); ``within_service_level`` answered within ``service_level_seconds``; ``owner`` the
    dispatcher that took the call. Times are epoch seconds.
    """

    campaign_id: str
    call_id: str
    arrived_at: float
    outcome: str
    wait: float
    ended_at: float
    service_level_seconds: float
    within_service_level: bool = False
    caller: str = ""
    reason: str | None = None
    answered_at: float | None = None
    agent_id: str | None = None
    agent_group: str | None = None
    owner: str | None = None


_LEAD_COLUMNS = (
    "campaign_id, lead_id, phone, name, time_zone, fields, priority, seq, status, disposition, attempts, "
    "pass_attempts, list_pass, outcome_counts, next_at, lockout_until, callback_at, source_line"
)
_ATTEMPT_COLUMNS = (
    "campaign_id, lead_id, attempt_no, phone, state, dialed_at, call_id, outcome, disposition, ended_at, "
    "answered_at, connected_at, message_at, wait, agent_id, abandoned, customer_hung_up, placed_at, ringing_at, "
    "message_played, bridge_failed, amd_verdict, amd_seconds, picked_up_at, owner"
)
_INBOUND_COLUMNS = (
    "campaign_id, call_id, arrived_at, outcome, wait, ended_at, service_level_seconds, within_service_level, "
    "caller, reason, answered_at, agent_id, agent_group, owner"
)
_UPDATABLE = frozenset(
    {
        "name",
        "time_zone",
        "fields",
        "priority",
        "status",
        "disposition",
        "pass_attempts",
        "list_pass",
        "outcome_counts",
        "next_at",
        "lockout_until",
        "callback_at",
    }
)
_ATTEMPT_RESULT = frozenset(
    {
        "call_id",
        "outcome",
        "disposition",
        "ended_at",
        "answered_at",
        "connected_at",
        "message_at",
        "wait",
        "agent_id",
        "abandoned",
        "customer_hung_up",
        "placed_at",
        "ringing_at",
        "message_played",
        "bridge_failed",
        "amd_verdict",
        "amd_seconds",
        "picked_up_at",
    }
)


def _lead(row: sqlite3.Row) -> StoredLead:
    d = dict(row)
    d["fields"] = json.loads(d["fields"])
    d["outcome_counts"] = json.loads(d["outcome_counts"])
    return StoredLead(**d)


def _attempt(row: sqlite3.Row) -> AttemptRow:
    d = dict(row)
    d["abandoned"] = bool(d["abandoned"])
    d["customer_hung_up"] = bool(d["customer_hung_up"])
    d["bridge_failed"] = bool(d["bridge_failed"])
    if d["message_played"] is not None:
        d["message_played"] = bool(d["message_played"])
    return AttemptRow(**d)


def _inbound(row: Any) -> InboundRow:
    d = dict(row)
    d["within_service_level"] = bool(d["within_service_level"])
    return InboundRow(**d)


_Row = TypeVar("_Row")


def _older_than(where: str, before: float, campaign_id: str | None, mark: str) -> tuple[str, list[Any]]:
    """A purge's condition and arguments: ``where`` (whose one placeholder, ``mark``, takes ``before``), narrowed
    to ``campaign_id`` when one is given (both backends: ``mark`` is ``?`` or ``%s``)."""
    args: list[Any] = [before]
    if campaign_id is not None:
        where += f" AND campaign_id = {mark}"
        args.append(campaign_id)
    return where, args


def _inbound_values(row: InboundRow) -> tuple[Any, ...]:
    """The row's values in ``_INBOUND_COLUMNS`` order, checked: a ledger row the report could not read is refused
    here, where the writer can still be told, rather than stored."""
    if row.outcome not in INBOUND_OUTCOMES:
        raise StoreError(f"an inbound call's outcome is one of {', '.join(INBOUND_OUTCOMES)}, not {row.outcome!r}")
    return (
        row.campaign_id,
        row.call_id,
        row.arrived_at,
        row.outcome,
        row.wait,
        row.ended_at,
        row.service_level_seconds,
        int(row.within_service_level),
        row.caller,
        row.reason,
        row.answered_at,
        row.agent_id,
        row.agent_group,
        row.owner,
    )


def _encode(column: str, value: Any) -> Any:
    if column in ("fields", "outcome_counts"):
        return json.dumps(dict(value), sort_keys=True)
    if isinstance(value, bool):
        return int(value)
    return value


class Store:
    """Campaigns, leads, attempts and opt-outs in one SQLite database.

    >>> store = Store(":memory:")
    >>> store.ensure_campaign("spring")
    >>> store.schema_version == SCHEMA_VERSION
    True
    """

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", timeout: float = 30.0) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise StoreError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = str(path)
        self._owners: dict[str, int] = {}  # owner ids this process holds alive: their lock files' descriptors
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        self._db.row_factory = sqlite3.Row
        self._depth = 0
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if self.path != ":memory:" and str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: could not switch to WAL journal (got {mode})")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path} is not a usable dialer store: {exc}") from exc
        except StoreError:
            self._db.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------------------------

    def close(self) -> None:
        for owner in list(self._owners):
            self._release_owner(owner)
        self._db.close()

    # -- who is dialing: owners held alive by a lock -----------------------------------------------------

    def _owner_file(self, owner: str) -> Path | None:
        if self.path == ":memory:":
            return None  # one process only: nobody else could hold an owner
        digest = hashlib.sha256(owner.encode("utf-8")).hexdigest()[:32]
        return Path(self.path + ".owners") / f"{digest}.lock"

    def hold_owner(self, owner: str) -> None:
        """Hold ``owner`` alive for as long as this store is open (or the process lives): an exclusive lock on a
        file beside the database (``STORE.owners/``), released by the kernel when the process dies, however it
        dies. :meth:`owner_alive` asks that lock."""
        path = self._owner_file(owner)
        if owner in self._owners or path is None:
            self._owners.setdefault(owner, -1)
            return
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"owner {owner!r} is already held by another process") from exc
        self._owners[owner] = fd

    def owner_alive(self, owner: str) -> bool:
        """Whether the dispatcher ``owner`` still runs (holds its lock), in this process or another."""
        if owner in self._owners:
            return True
        path = self._owner_file(owner)
        if path is None or not path.exists():
            return False
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # releases the probe's lock, if it got it
        with contextlib.suppress(OSError):
            path.unlink()  # its holder is gone: nobody will ask again
        return False

    def _release_owner(self, owner: str) -> None:
        fd = self._owners.pop(owner)
        path = self._owner_file(owner)
        if fd >= 0:
            with contextlib.suppress(OSError):
                if path is not None:
                    path.unlink()
            os.close(fd)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this dialer's {SCHEMA_VERSION}: upgrade the "
                "dialer rather than risk writing records it does not understand"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript() commits first, so run the statements one by one inside our own transaction.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={number}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several calls into one atomic, durable transaction (nesting joins the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._db.execute("ROLLBACK")
            raise
        self._depth = 0
        self._db.execute("COMMIT")

    # -- campaigns ---------------------------------------------------------------------------------------

    def ensure_campaign(self, campaign_id: str, settings: Mapping[str, Any] | None = None) -> None:
        """Create the campaign if it does not exist; ``settings`` (JSON-able) replace the stored ones if given."""
        if not campaign_id:
            raise StoreError("campaign id must not be empty")
        with self.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO campaigns (campaign_id, created_at, settings) VALUES (?, ?, ?)",
                (campaign_id, time.time(), json.dumps(dict(settings or {}), sort_keys=True)),
            )
            if settings is not None:
                self._db.execute(
                    "UPDATE campaigns SET settings = ? WHERE campaign_id = ?",
                    (json.dumps(dict(settings), sort_keys=True), campaign_id),
                )

    def campaigns(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT campaign_id FROM campaigns ORDER BY campaign_id")]

    def campaign_settings(self, campaign_id: str) -> dict[str, Any]:
        row = self._db.execute("SELECT settings FROM campaigns WHERE campaign_id = ?", (campaign_id,)).fetchone()
        if row is None:
            raise StoreError(f"unknown campaign {campaign_id!r}")
        return dict(json.loads(row[0]))

    # -- leads -------------------------------------------------------------------------------------------

    def insert_lead(self, lead: StoredLead) -> StoredLead:
        """Add a new lead at the end of the campaign's order (``seq`` is assigned here)."""
        with self.transaction():
            seq = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM leads WHERE campaign_id = ?", (lead.campaign_id,)
            ).fetchone()[0]
            values = [
                _encode(c, seq if c == "seq" else getattr(lead, c)) for c in _LEAD_COLUMNS.replace(" ", "").split(",")
            ]
            try:
                self._db.execute(
                    f"INSERT INTO leads ({_LEAD_COLUMNS}) VALUES ({', '.join('?' * len(values))})",
                    values,
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"lead {lead.lead_id!r} ({lead.phone}) conflicts with a stored lead: {exc}") from exc
        return self.lead(lead.campaign_id, lead.lead_id)

    def lead(self, campaign_id: str, lead_id: str) -> StoredLead:
        row = self._db.execute(
            f"SELECT {_LEAD_COLUMNS} FROM leads WHERE campaign_id = ? AND lead_id = ?", (campaign_id, lead_id)
        ).fetchone()
        if row is None:
            raise StoreError(f"unknown lead {lead_id!r} in campaign {campaign_id!r}")
        return _lead(row)

    def find_lead(self, campaign_id: str, *, lead_id: str | None = None, phone: str | None = None) -> StoredLead | None:
        if (lead_id is None) == (phone is None):
            raise StoreError("find_lead needs exactly one of lead_id or phone")
        column, value = ("lead_id", lead_id) if lead_id is not None else ("phone", phone)
        row = self._db.execute(
            f"SELECT {_LEAD_COLUMNS} FROM leads WHERE campaign_id = ? AND {column} = ?", (campaign_id, value)
        ).fetchone()
        return None if row is None else _lead(row)

    def update_lead(self, campaign_id: str, lead_id: str, **changes: Any) -> None:
        """Change some of a lead's columns (its identity, phone and counters of dials are not changeable here)."""
        bad = set(changes) - _UPDATABLE
        if bad:
            raise StoreError(f"cannot update lead column(s) {sorted(bad)}")
        if not changes:
            return
        sets = ", ".join(f"{c} = ?" for c in changes)
        with self.transaction():
            cur = self._db.execute(
                f"UPDATE leads SET {sets} WHERE campaign_id = ? AND lead_id = ?",
                [*(_encode(c, v) for c, v in changes.items()), campaign_id, lead_id],
            )
            if cur.rowcount != 1:
                raise StoreError(f"unknown lead {lead_id!r} in campaign {campaign_id!r}")
            until = changes.get("lockout_until")
            if until:  # the lockout protects the number in every campaign, in the same transaction
                self._db.execute(
                    "INSERT INTO number_lockouts (phone, until, campaign_id, lead_id) "
                    "SELECT phone, ?, campaign_id, lead_id FROM leads WHERE campaign_id = ? AND lead_id = ? "
                    "ON CONFLICT (phone) DO UPDATE SET until = excluded.until, campaign_id = excluded.campaign_id, "
                    "lead_id = excluded.lead_id WHERE excluded.until > number_lockouts.until",
                    (float(until), campaign_id, lead_id),
                )

    def leads(self, campaign_id: str, *, status: str | None = None) -> list[StoredLead]:
        sql = f"SELECT {_LEAD_COLUMNS} FROM leads WHERE campaign_id = ?"
        args: list[Any] = [campaign_id]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        return [_lead(r) for r in self._db.execute(sql + " ORDER BY seq", args)]

    def count_leads(self, campaign_id: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT status, COUNT(*) FROM leads WHERE campaign_id = ? GROUP BY status", (campaign_id,)
        )
        return {r[0]: r[1] for r in rows}

    def due_leads(self, campaign_id: str, epoch: float, limit: int, after: tuple[int, ...] = ()) -> list[StoredLead]:
        """Ready leads whose time has come, in dialing order: due callbacks first, then priority, then list order.

        ``after`` is the ordering key of the last lead of the previous page (see :func:`order_key`).
        """
        order = "(callback_at IS NULL), (-priority), seq"  # matches the leads_due index: no sort per call
        sql = (
            f"SELECT {_LEAD_COLUMNS} FROM leads WHERE campaign_id = ? AND status = 'ready' "
            "AND next_at <= ? AND lockout_until <= ?"
        )
        args: list[Any] = [campaign_id, epoch, epoch]
        if after:
            sql += " AND ((callback_at IS NULL), (-priority), seq) > (?, ?, ?)"
            args.extend(after)
        rows = self._db.execute(f"{sql} ORDER BY {order} LIMIT ?", [*args, limit])
        return [_lead(r) for r in rows]

    # -- attempts ----------------------------------------------------------------------------------------

    def claim(
        self, campaign_id: str, lead_id: str, epoch: float, *, attempts: int | None = None, owner: str | None = None
    ) -> int:
        """Mark a ready lead as being dialed and open its next attempt, durably, before anything is dialed.

        Returns the attempt number. Raises :class:`ClaimLost` if the lead is not ready and due now (already
        claimed, done, waiting for a retry) or, when ``attempts`` is given (the count the claimer's gates judged),
        if it has been dialed since: so two claimers can never dial one lead for one attempt, and a cap judged on
        a stale read is never exceeded. Raises :class:`NumberBlocked` if its number opted out or is locked out
        after an abandoned call, in this campaign or any other on the store. That check runs in the claim's own
        write transaction: a protection committed by another process before it is always seen, so no process
        dials a number another one has already protected. ``owner``: the claiming dispatcher (see
        :meth:`hold_owner`), recorded on the attempt.
        """
        with self.transaction():
            row = self._db.execute(
                "SELECT status, attempts, phone, next_at FROM leads WHERE campaign_id = ? AND lead_id = ?",
                (campaign_id, lead_id),
            ).fetchone()
            if row is None:
                raise StoreError(f"unknown lead {lead_id!r} in campaign {campaign_id!r}")
            lost = _lost(lead_id, row["status"], int(row["attempts"]), float(row["next_at"]), epoch, attempts)
            if lost:
                raise ClaimLost(lost)
            blocked = self.number_block(row["phone"], epoch)
            if blocked is not None:
                raise NumberBlocked(row["phone"], *blocked)
            attempt_no = int(row["attempts"]) + 1
            self._db.execute(
                "UPDATE leads SET status = 'dialing', attempts = ?, pass_attempts = pass_attempts + 1, "
                "callback_at = NULL WHERE campaign_id = ? AND lead_id = ?",
                (attempt_no, campaign_id, lead_id),
            )
            self._db.execute(
                "INSERT INTO attempts (campaign_id, lead_id, attempt_no, phone, state, dialed_at, owner) "
                "VALUES (?, ?, ?, ?, 'dialing', ?, ?)",
                (campaign_id, lead_id, attempt_no, row["phone"], epoch, owner),
            )
        return attempt_no

    def complete(
        self,
        campaign_id: str,
        lead_id: str,
        attempt_no: int,
        result: Mapping[str, Any],
        lead_changes: Mapping[str, Any],
        *,
        state: str = "done",
    ) -> None:
        """Close an open attempt with its result and move the lead on, in one transaction."""
        bad = set(result) - _ATTEMPT_RESULT
        if bad:
            raise StoreError(f"unknown attempt column(s) {sorted(bad)}")
        if state not in ("done", "interrupted"):
            raise StoreError(f"an attempt closes as done or interrupted, not {state!r}")
        with self.transaction():
            sets = ", ".join(["state = ?", *(f"{c} = ?" for c in result)])
            cur = self._db.execute(
                f"UPDATE attempts SET {sets} WHERE campaign_id = ? AND lead_id = ? AND attempt_no = ? "
                "AND state = 'dialing'",
                [state, *(_encode(c, v) for c, v in result.items()), campaign_id, lead_id, attempt_no],
            )
            if cur.rowcount != 1:
                raise StoreError(f"attempt {attempt_no} of lead {lead_id!r} is not open")
            self.update_lead(campaign_id, lead_id, **lead_changes)

    def set_attempt_disposition(self, campaign_id: str, lead_id: str, attempt_no: int, disposition: str) -> None:
        """Record the agent's disposition of a finished attempt (kept for the ledger's machine adjustment)."""
        with self.transaction():
            cur = self._db.execute(
                "UPDATE attempts SET disposition = ? WHERE campaign_id = ? AND lead_id = ? AND attempt_no = ?",
                (disposition, campaign_id, lead_id, attempt_no),
            )
            if cur.rowcount != 1:
                raise StoreError(f"no attempt {attempt_no} of lead {lead_id!r}")

    def unclaim(self, campaign_id: str, lead_id: str, attempt_no: int) -> None:
        """Undo :meth:`claim` for a dial that never left the dialer (no INVITE was sent), in one transaction.

        The open attempt row is deleted and the lead is ready again with its counters as before: a dial the
        network never saw is neither an attempt a retry rule may count nor a call the ledger may show.
        """
        with self.transaction():
            cur = self._db.execute(
                "DELETE FROM attempts WHERE campaign_id = ? AND lead_id = ? AND attempt_no = ? AND state = 'dialing'",
                (campaign_id, lead_id, attempt_no),
            )
            if cur.rowcount != 1:
                raise StoreError(f"attempt {attempt_no} of lead {lead_id!r} is not open")
            self._db.execute(
                "UPDATE leads SET status = 'ready', attempts = attempts - 1, pass_attempts = pass_attempts - 1 "
                "WHERE campaign_id = ? AND lead_id = ? AND status = 'dialing'",
                (campaign_id, lead_id),
            )

    def purge_attempts(self, before: float, *, campaign_id: str | None = None) -> list[AttemptRow]:
        """Delete the closed attempts dialed before ``before`` (epoch) and return them, for a retention run.

        Why only attempts, and only closed ones: an open attempt is a crash not yet recovered (its lead's lockout
        depends on it), and the lead's own counters (attempts, per-outcome counts, lockouts) and the store's
        opt-outs are what keep the next dial lawful, so they stay. Run it inside :meth:`transaction` together
        with the record of the purge, so the rows are never gone without it.
        """
        where, args = _older_than("state != 'dialing' AND dialed_at < ?", before, campaign_id, "?")
        return self._purge(
            "attempts", _ATTEMPT_COLUMNS, where, args, "campaign_id, dialed_at, lead_id, attempt_no", _attempt
        )

    def _purge(
        self, table: str, columns: str, where: str, args: list[Any], order: str, read: Callable[[Any], _Row]
    ) -> list[_Row]:
        """Delete ``table``'s rows that match ``where`` and return them, read by ``read``, in ``order`` (one
        transaction: the rows returned are the rows deleted)."""
        with self.transaction():
            rows = [
                read(r) for r in self._db.execute(f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order}", args)
            ]
            self._db.execute(f"DELETE FROM {table} WHERE {where}", args)
        return rows

    def open_attempts(self, campaign_id: str) -> list[AttemptRow]:
        rows = self._db.execute(
            f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE campaign_id = ? AND state = 'dialing' ORDER BY dialed_at",
            (campaign_id,),
        )
        return [_attempt(r) for r in rows]

    def attempts(self, campaign_id: str, *, lead_id: str | None = None) -> list[AttemptRow]:
        sql = f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE campaign_id = ?"
        args: list[Any] = [campaign_id]
        if lead_id is not None:
            sql += " AND lead_id = ?"
            args.append(lead_id)
        return [_attempt(r) for r in self._db.execute(sql + " ORDER BY dialed_at, lead_id, attempt_no", args)]

    def last_attempt(self, campaign_id: str, lead_id: str) -> AttemptRow | None:
        row = self._db.execute(
            f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE campaign_id = ? AND lead_id = ? "
            "ORDER BY attempt_no DESC LIMIT 1",
            (campaign_id, lead_id),
        ).fetchone()
        return None if row is None else _attempt(row)

    # -- inbound calls -----------------------------------------------------------------------------------

    def add_inbound(self, row: InboundRow) -> bool:
        """Keep one finished inbound call (committed before returning); ``False`` if it was already there.

        Why idempotent: a write retried after an outage may have committed the first time, and the retry must
        neither fail nor write the caller twice. The key is the campaign, the call id and the arrival time.
        """
        values = _inbound_values(row)
        with self.transaction():
            cur = self._db.execute(
                f"INSERT OR IGNORE INTO inbound_calls ({_INBOUND_COLUMNS}) VALUES ({', '.join('?' * len(values))})",
                values,
            )
        return cur.rowcount == 1

    def inbound_calls(self, campaign_id: str) -> list[InboundRow]:
        """The campaign's inbound callers, by arrival."""
        rows = self._db.execute(
            f"SELECT {_INBOUND_COLUMNS} FROM inbound_calls WHERE campaign_id = ? ORDER BY arrived_at, call_id",
            (campaign_id,),
        )
        return [_inbound(r) for r in rows]

    def purge_inbound(self, before: float, *, campaign_id: str | None = None) -> list[InboundRow]:
        """Delete the inbound calls that arrived before ``before`` (epoch) and return them, for a retention run
        (as :meth:`purge_attempts`; run it in the same :meth:`transaction` as the record of the purge)."""
        where, args = _older_than("arrived_at < ?", before, campaign_id, "?")
        return self._purge("inbound_calls", _INBOUND_COLUMNS, where, args, "campaign_id, arrived_at, call_id", _inbound)

    # -- opt-outs ----------------------------------------------------------------------------------------

    def add_opt_out(self, phone: str, *, campaign_id: str = "", t: float | None = None, source: str = "") -> None:
        """Persist a do-not-call request at once (committed before returning)."""
        with self.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO opt_outs (phone, campaign_id, t, source) VALUES (?, ?, ?, ?)",
                (phone, campaign_id, time.time() if t is None else t, source),
            )

    def opt_outs(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT phone FROM opt_outs ORDER BY phone")]

    # -- protections of a number, store-wide ---------------------------------------------------------------

    def number_block(self, phone: str, epoch: float) -> tuple[str, float] | None:
        """Why ``phone`` must not be dialed at ``epoch`` whatever the campaign, as ``(reason, until)``, or ``None``.

        Why read here rather than cached: a campaign process that loaded the opt-outs at its start would miss one
        taken by another campaign running on the same store. Two primary-key lookups cost microseconds per dial.
        """
        if self._db.execute("SELECT 1 FROM opt_outs WHERE phone = ?", (phone,)).fetchone() is not None:
            return ("opted out", float("inf"))
        row = self._db.execute("SELECT until FROM number_lockouts WHERE phone = ?", (phone,)).fetchone()
        if row is not None and float(row[0]) > epoch:
            return ("abandonment lockout", float(row[0]))
        return None

    def number_lockout(self, phone: str) -> float:
        """The end of ``phone``'s abandonment lockout (epoch; 0 when it has none), whichever campaign set it."""
        row = self._db.execute("SELECT until FROM number_lockouts WHERE phone = ?", (phone,)).fetchone()
        return 0.0 if row is None else float(row[0])
