"""The shared store: PostgreSQL, for a floor whose dispatchers run on several machines.

:class:`PgStore` has the public methods and the semantics of the embedded :class:`~dialer.store.Store`, so the
campaign layer does not know which one it holds. What PostgreSQL changes, and how the semantics are kept:

* **Several writers at once.** SQLite serialises every write transaction (``BEGIN IMMEDIATE``); PostgreSQL runs
  them side by side (READ COMMITTED). :meth:`PgStore.claim` therefore locks the lead's row (``SELECT ... FOR
  UPDATE``: a second claimer waits for the first to commit, then reads the lead as ``dialing`` and is refused, so
  two dispatchers never dial one lead for one attempt) and takes a transaction-scoped advisory lock on the NUMBER
  before reading its protections. Every write of a protection (:meth:`add_opt_out`, a lockout written by
  :meth:`update_lead`) takes the same number lock, so a protection committed by one process is always seen by the
  next claim of any other, and a claim and a protection of one number never interleave.
* **Transactions.** :meth:`PgStore.transaction` holds one pooled connection for the whole block (nesting joins
  the outer one, as in SQLite); every call outside a block runs on a pooled connection in autocommit. A statement
  that fails inside a block (a duplicate lead) runs in a savepoint, so the block can go on, as it can in SQLite.
* **Connections.** A :class:`psycopg_pool.ConnectionPool` (``pool_size`` connections at most; one per thread
  inside a transaction). The store may be shared by threads: the transaction in progress is per thread.
* **Credentials** are libpq's: the password comes from ``PGPASSWORD``, or a password file (``~/.pgpass``, the file
  named by ``PGPASSFILE`` or by ``passfile=`` in the URL's query), or the URL itself (which then sits in the
  campaign file: prefer the others). TLS likewise (``sslmode=verify-full`` in the URL or ``PGSSLMODE``). The URL is
  kept and shown only with its password removed (:func:`redact`), in ``repr``, errors and logs.

``psycopg`` and ``psycopg_pool`` are imported when a :class:`PgStore` is made, not with :mod:`dialer.store`
(``pip install 'predictive-dialer[postgres]'``).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dialer.store.schema import PG_MIGRATIONS, SCHEMA_VERSION
from dialer.store.sqlite import (
    _ATTEMPT_COLUMNS,
    _ATTEMPT_RESULT,
    _INBOUND_COLUMNS,
    _LEAD_COLUMNS,
    _UPDATABLE,
    AttemptRow,
    ClaimLost,
    InboundRow,
    NumberBlocked,
    StoredLead,
    StoreError,
    StoreUnavailable,
    _encode,
    _inbound,
    _inbound_values,
    _lost,
    _older_than,
    _Row,
)

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

# The key space of the advisory locks taken on a number (pg_advisory_xact_lock(classid, objid)): "dialer numbers".
_NUMBER_LOCKS = 0x6E756D
# ... and of the session locks that keep a dispatcher's owner id alive while it runs ("dialer owners").
_OWNER_LOCKS = 0x6F776E


def redact(url: str) -> str:
    """``url`` with any password (in the netloc or a ``password=`` query parameter) replaced by ``***``; a URL
    without one comes back exactly as given (``postgresql:///db?host=/run/postgresql`` stays readable)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable store URL>"
    netloc, query, changed = parts.netloc, parts.query, False
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc, changed = f"{userinfo.split(':', 1)[0]}:***@{host}", True
    if re.search(r"(?:^|&)password=", query):
        query, changed = re.sub(r"((?:^|&)password=)[^&]*", r"\1***", query), True
    if not changed:
        return url
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _first_line(exc: BaseException) -> str:
    """libpq's message without its hints (it never holds the password), or the error's type."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _lead(d: dict[str, Any]) -> StoredLead:
    d["fields"] = json.loads(d["fields"])
    d["outcome_counts"] = json.loads(d["outcome_counts"])
    return StoredLead(**d)


def _attempt(d: dict[str, Any]) -> AttemptRow:
    d["abandoned"] = bool(d["abandoned"])
    d["customer_hung_up"] = bool(d["customer_hung_up"])
    d["bridge_failed"] = bool(d["bridge_failed"])
    if d["message_played"] is not None:
        d["message_played"] = bool(d["message_played"])
    return AttemptRow(**d)


class _Result:
    """A finished statement's rows (fetched at once, so the connection can go back to the pool), as sqlite3 gives."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int, lastrowid: int | None = None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


class _Sql:
    """The few ``sqlite3.Connection`` calls :mod:`dialer.store.consents` and :mod:`dialer.store.imports` make
    (``execute``, ``executemany``; ``?`` placeholders; rows as tuples), on the PostgreSQL store's connection of the
    transaction in progress, so those modules' portable SQL runs on either backend."""

    def __init__(self, store: PgStore) -> None:
        self._store = store

    def execute(self, sql: str, args: Any = ()) -> _Result:
        from psycopg.rows import tuple_row

        with self._store._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql.replace("?", "%s"), args)
            rows = cur.fetchall() if cur.description is not None else []
            return _Result(rows, cur.rowcount)

    def executemany(self, sql: str, rows: Any) -> _Result:
        with self._store._conn() as conn, conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), list(rows))
            return _Result([], cur.rowcount)


class PgStore:
    """Campaigns, leads, attempts and opt-outs in one PostgreSQL database, shared by every dispatcher on it.

    ``url`` is a libpq URL (``postgresql://user@host:5432/dbname?sslmode=verify-full``). Opening it applies the
    migrations the database lacks (under an advisory lock, so two dispatchers starting together do not race) and
    refuses a database from a newer dialer, as :class:`~dialer.store.Store` does.
    """

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 30.0, wait: float = 2.0) -> None:
        """``timeout``: how long opening waits for the server. ``wait``: how long one operation waits for a
        connection once open; past it (the server is down or restarting) the operation raises
        :class:`~dialer.store.StoreUnavailable` instead of stalling the runtime, which pauses dialing and retries
        with back-off (:class:`~dialer.campaign.CampaignLeads`). Pooled connections are checked before use, so
        the ones a server restart cut are replaced rather than handed out."""
        try:
            import psycopg
            import psycopg_pool
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise StoreError(
                "a postgresql:// store needs psycopg 3 and psycopg_pool: pip install 'predictive-dialer[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self._url = url  # kept for the owners' connection only; never shown (``path`` is the redacted form)
        self._owner_conn: psycopg.Connection[Any] | None = None
        self._owners: set[str] = set()
        self._owners_checked = 0.0
        self.path = redact(url)  # what errors, logs and repr show: never the password
        self._local = threading.local()
        self._wait = wait
        self._unavailable: tuple[type[BaseException], ...] = (
            psycopg.OperationalError,
            psycopg.InterfaceError,
            psycopg_pool.PoolTimeout,
        )
        self._db = _Sql(self)  # what dialer.store.consents and dialer.store.imports use, as on SQLite's Store
        self._pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"autocommit": True, "row_factory": psycopg.rows.dict_row},
            timeout=timeout,
            name="dialer-store",
            open=False,
            check=psycopg_pool.ConnectionPool.check_connection,
            # The pool's own reconnection backs off without bound; giving up after a few seconds makes the next
            # operation start a fresh attempt instead, so a server back after a long outage is found at once.
            reconnect_timeout=5.0,
        )
        try:  # one plain connection first: a wrong password, a refused TLS or an unknown database is said at once
            psycopg.connect(url, connect_timeout=max(2, round(timeout)), autocommit=True).close()
        except psycopg.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {_first_line(exc)}") from None
        try:
            self._pool.open(wait=True, timeout=timeout)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            raise StoreError(f"cannot open store {self.path}: no connection within {timeout:g} s") from exc
        try:
            self._migrate()
        except psycopg.Error as exc:
            self._pool.close()
            raise StoreError(f"{self.path} is not a usable dialer store: {exc}") from exc
        except StoreError:
            self._pool.close()
            raise

    def __repr__(self) -> str:
        return f"PgStore({self.path!r})"

    # -- lifecycle ---------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._owner_conn is not None:
            self._owner_conn.close()  # the session ends: its owner locks go with it
            self._owner_conn = None
        self._pool.close()

    # -- who is dialing: owners held alive by a session lock ---------------------------------------------

    def hold_owner(self, owner: str) -> None:
        """Hold ``owner`` alive while this store is open: a session-level advisory lock on a connection of its
        own, which the server drops with the session when the process dies (or its connection does; it is
        taken again at the next claim). :meth:`owner_alive` asks that lock, from any machine."""
        self._owners.add(owner)
        self._keep_owners(force=True)

    def _keep_owners(self, *, force: bool = False) -> None:
        """(Re)take the owners' locks if their connection is gone, at most once a second unless ``force``."""
        now = time.monotonic()
        if not self._owners or (not force and now - self._owners_checked < 1.0):
            return
        self._owners_checked = now
        psycopg = self._psycopg
        held = self._owner_conn
        if held is not None and not held.closed:
            try:
                held.execute("SELECT 1")
                return
            except psycopg.Error:
                held.close()
        try:
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=max(2, round(self._wait)))
            for owner in sorted(self._owners):
                conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_OWNER_LOCKS, owner))
        except psycopg.Error as exc:
            self._owner_conn = None
            raise self._down(exc) from exc
        self._owner_conn = conn

    def owner_alive(self, owner: str) -> bool:
        """Whether the dispatcher ``owner`` still runs: its session lock is held, here or on another machine."""
        if owner in self._owners:
            return True
        with self._conn() as conn:
            got = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS got", (_OWNER_LOCKS, owner))
            row = got.fetchone()
            if row is not None and row["got"]:
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_OWNER_LOCKS, owner))
                return False
            return True

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection of the transaction in progress on this thread, or a pooled one in autocommit."""
        held = getattr(self._local, "conn", None)
        if held is not None:
            yield held
            return
        try:
            with self._pool.connection(timeout=self._wait) as conn:
                yield conn
        except self._unavailable as exc:
            raise self._down(exc) from exc

    def _down(self, exc: BaseException) -> StoreUnavailable:
        """What a lost or refused connection becomes: one error type, the URL without its password."""
        return StoreUnavailable(f"store {self.path} unavailable: {_first_line(exc)}")

    def _one(self, sql: str, args: Any = ()) -> dict[str, Any] | None:
        with self._conn() as conn:
            row: dict[str, Any] | None = conn.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, args: Any = ()) -> list[dict[str, Any]]:
        with self._conn() as conn:
            return list(conn.execute(sql, args).fetchall())

    def _run(self, sql: str, args: Any = ()) -> int:
        """Execute a write; the number of rows it touched."""
        with self._conn() as conn:
            return int(conn.execute(sql, args).rowcount)

    @property
    def schema_version(self) -> int:
        row = self._one("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        return 0 if row is None else int(row["v"])

    def _migrate(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_NUMBER_LOCKS + 1,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            row = conn.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations").fetchone()
            version = int(row["v"]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this dialer's {SCHEMA_VERSION}: upgrade "
                    "the dialer rather than risk writing records it does not understand"
                )
            for number, script in enumerate(PG_MIGRATIONS[version:], start=version + 1):
                # One transaction for the whole upgrade (PostgreSQL's DDL is transactional): all or nothing.
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)", (number, time.time())
                )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several calls into one atomic, durable transaction (nesting joins the outer one)."""
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        try:
            with self._pool.connection(timeout=self._wait) as conn:
                self._local.conn = conn
                self._local.depth = 1
                try:
                    with conn.transaction():
                        yield
                finally:
                    self._local.conn = None
                    self._local.depth = 0
        except self._unavailable as exc:
            raise self._down(exc) from exc

    def _lock_number(self, phone: str) -> None:
        """Serialise, until this transaction ends, every claim and protection of ``phone`` across processes."""
        self._run("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_NUMBER_LOCKS, phone))

    # -- campaigns ---------------------------------------------------------------------------------------

    def ensure_campaign(self, campaign_id: str, settings: Mapping[str, Any] | None = None) -> None:
        """Create the campaign if it does not exist; ``settings`` (JSON-able) replace the stored ones if given."""
        if not campaign_id:
            raise StoreError("campaign id must not be empty")
        with self.transaction():
            self._run(
                "INSERT INTO campaigns (campaign_id, created_at, settings) VALUES (%s, %s, %s) "
                "ON CONFLICT (campaign_id) DO NOTHING",
                (campaign_id, time.time(), json.dumps(dict(settings or {}), sort_keys=True)),
            )
            if settings is not None:
                self._run(
                    "UPDATE campaigns SET settings = %s WHERE campaign_id = %s",
                    (json.dumps(dict(settings), sort_keys=True), campaign_id),
                )

    def campaigns(self) -> list[str]:
        return [r["campaign_id"] for r in self._all("SELECT campaign_id FROM campaigns ORDER BY campaign_id")]

    def campaign_settings(self, campaign_id: str) -> dict[str, Any]:
        row = self._one("SELECT settings FROM campaigns WHERE campaign_id = %s", (campaign_id,))
        if row is None:
            raise StoreError(f"unknown campaign {campaign_id!r}")
        return dict(json.loads(row["settings"]))

    # -- leads -------------------------------------------------------------------------------------------

    def insert_lead(self, lead: StoredLead) -> StoredLead:
        """Add a new lead at the end of the campaign's order (``seq`` is assigned here)."""
        psycopg = self._psycopg
        with self.transaction(), self._conn() as conn:
            # The campaign's row lock orders concurrent inserts, so no two leads get one seq.
            conn.execute("SELECT 1 FROM campaigns WHERE campaign_id = %s FOR NO KEY UPDATE", (lead.campaign_id,))
            row = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM leads WHERE campaign_id = %s", (lead.campaign_id,)
            ).fetchone()
            seq = row["seq"] if row else 1
            columns = _LEAD_COLUMNS.replace(" ", "").split(",")
            values = [_encode(c, seq if c == "seq" else getattr(lead, c)) for c in columns]
            try:
                with conn.transaction():  # a savepoint: the caller's transaction survives a refused lead
                    conn.execute(
                        f"INSERT INTO leads ({_LEAD_COLUMNS}) VALUES ({', '.join(['%s'] * len(values))})", values
                    )
            except psycopg.IntegrityError as exc:
                raise StoreError(f"lead {lead.lead_id!r} ({lead.phone}) conflicts with a stored lead: {exc}") from exc
        return self.lead(lead.campaign_id, lead.lead_id)

    def lead(self, campaign_id: str, lead_id: str) -> StoredLead:
        row = self._one(
            f"SELECT {_LEAD_COLUMNS} FROM leads WHERE campaign_id = %s AND lead_id = %s", (campaign_id, lead_id)
        )
        if row is None:
            raise StoreError(f"unknown lead {lead_id!r} in campaign {campaign_id!r}")
        return _lead(row)

    def find_lead(self, campaign_id: str, *, lead_id: str | None = None, phone: str | None = None) -> StoredLead | None:
        if (lead_id is None) == (phone is None):
            raise StoreError("find_lead needs exactly one of lead_id or phone")
        column, value = ("lead_id", lead_id) if lead_id is not None else ("phone", phone)
        row = self._one(
            f"SELECT {_LEAD_COLUMNS} FROM leads WHERE campaign_id = %s AND {column} = %s", (campaign_id, value)
        )
        return None if row is None else _lead(row)

    def update_lead(self, campaign_id: str, lead_id: str, **changes: Any) -> None:
        """Change some of a lead's columns (its identity, phone and counters of dials are not changeable here)."""
        bad = set(changes) - _UPDATABLE
        if bad:
            raise StoreError(f"cannot update lead column(s) {sorted(bad)}")
        if not changes:
            return
        sets = ", ".join(f"{c} = %s" for c in changes)
        until = changes.get("lockout_until")
        with self.transaction():
            if until:  # the lead's row, then its number's lock: a claim's order, so the two never deadlock
                row = self._one(
                    "SELECT phone FROM leads WHERE campaign_id = %s AND lead_id = %s FOR UPDATE", (campaign_id, lead_id)
                )
                if row is not None:
                    self._lock_number(row["phone"])
            count = self._run(
                f"UPDATE leads SET {sets} WHERE campaign_id = %s AND lead_id = %s",
                [*(_encode(c, v) for c, v in changes.items()), campaign_id, lead_id],
            )
            if count != 1:
                raise StoreError(f"unknown lead {lead_id!r} in campaign {campaign_id!r}")
            if until:  # the lockout protects the number in every campaign, in the same transaction
                self._run(
                    "INSERT INTO number_lockouts (phone, until, campaign_id, lead_id) "
                    "SELECT phone, %s, campaign_id, lead_id FROM leads WHERE campaign_id = %s AND lead_id = %s "
                    "ON CONFLICT (phone) DO UPDATE SET until = excluded.until, campaign_id = excluded.campaign_id, "
                    "lead_id = excluded.lead_id WHERE excluded.until > number_lockouts.until",
                    (float(until), campaign_id, lead_id),
                )

    def leads(self, campaign_id: str, *, status: str | None = None) -> list[StoredLead]:
        sql = f"SELECT {_LEAD_COLUMNS} FROM leads WHERE campaign_id = %s"
        args: list[Any] = [campaign_id]
        if status is not None:
            sql += " AND status = %s"
            args.append(status)
        return [_lead(r) for r in self._all(sql + " ORDER BY seq", args)]

    def count_leads(self, campaign_id: str) -> dict[str, int]:
        rows = self._all(
            "SELECT status, COUNT(*) AS n FROM leads WHERE campaign_id = %s GROUP BY status", (campaign_id,)
        )
        return {r["status"]: int(r["n"]) for r in rows}

    def due_leads(self, campaign_id: str, epoch: float, limit: int, after: tuple[int, ...] = ()) -> list[StoredLead]:
        """Ready leads whose time has come, in dialing order: due callbacks first, then priority, then list order.

        ``after`` is the ordering key of the last lead of the previous page (see :func:`order_key`).
        """
        order = "(callback_at IS NULL), (-priority), seq"  # matches the leads_due index (false sorts before true)
        sql = (
            f"SELECT {_LEAD_COLUMNS} FROM leads WHERE campaign_id = %s AND status = 'ready' "
            "AND next_at <= %s AND lockout_until <= %s"
        )
        args: list[Any] = [campaign_id, epoch, epoch]
        if after:
            sql += " AND ((callback_at IS NULL), (-priority), seq) > (%s, %s, %s)"
            args.extend([bool(after[0]), int(after[1]), int(after[2])])
        return [_lead(r) for r in self._all(f"{sql} ORDER BY {order} LIMIT %s", [*args, limit])]

    # -- attempts ----------------------------------------------------------------------------------------

    def claim(
        self, campaign_id: str, lead_id: str, epoch: float, *, attempts: int | None = None, owner: str | None = None
    ) -> int:
        """Mark a ready lead as being dialed and open its next attempt, durably, before anything is dialed.

        Returns the attempt number. Raises :class:`ClaimLost` as :meth:`Store.claim` does, and also at once when
        another dispatcher holds the lead's row (``FOR UPDATE SKIP LOCKED``: the loser moves on to its next lead
        instead of queueing behind the winner, who will have claimed it), and :class:`NumberBlocked` if its number
        opted out or is locked out, in any campaign on the store. The number's advisory lock is held while its
        protections are read, all in the claim's transaction. ``owner`` (see :meth:`hold_owner`) is recorded on
        the attempt.
        """
        if owner is not None:
            self._keep_owners()
        with self.transaction():
            row = self._one(
                "SELECT status, attempts, phone, next_at FROM leads WHERE campaign_id = %s AND lead_id = %s "
                "FOR UPDATE SKIP LOCKED",
                (campaign_id, lead_id),
            )
            if row is None:
                known = "SELECT 1 AS x FROM leads WHERE campaign_id = %s AND lead_id = %s"
                if self._one(known, (campaign_id, lead_id)):
                    raise ClaimLost(f"lead {lead_id!r} is being claimed by another dispatcher")
                raise StoreError(f"unknown lead {lead_id!r} in campaign {campaign_id!r}")
            lost = _lost(lead_id, row["status"], int(row["attempts"]), float(row["next_at"]), epoch, attempts)
            if lost:
                raise ClaimLost(lost)
            self._lock_number(row["phone"])
            blocked = self.number_block(row["phone"], epoch)
            if blocked is not None:
                raise NumberBlocked(row["phone"], *blocked)
            attempt_no = int(row["attempts"]) + 1
            self._run(
                "UPDATE leads SET status = 'dialing', attempts = %s, pass_attempts = pass_attempts + 1, "
                "callback_at = NULL WHERE campaign_id = %s AND lead_id = %s",
                (attempt_no, campaign_id, lead_id),
            )
            self._run(
                "INSERT INTO attempts (campaign_id, lead_id, attempt_no, phone, state, dialed_at, owner) "
                "VALUES (%s, %s, %s, %s, 'dialing', %s, %s)",
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
            sets = ", ".join(["state = %s", *(f"{c} = %s" for c in result)])
            count = self._run(
                f"UPDATE attempts SET {sets} WHERE campaign_id = %s AND lead_id = %s AND attempt_no = %s "
                "AND state = 'dialing'",
                [state, *(_encode(c, v) for c, v in result.items()), campaign_id, lead_id, attempt_no],
            )
            if count != 1:
                raise StoreError(f"attempt {attempt_no} of lead {lead_id!r} is not open")
            self.update_lead(campaign_id, lead_id, **lead_changes)

    def set_attempt_disposition(self, campaign_id: str, lead_id: str, attempt_no: int, disposition: str) -> None:
        """Record the agent's disposition of a finished attempt (kept for the ledger's machine adjustment)."""
        with self.transaction():
            count = self._run(
                "UPDATE attempts SET disposition = %s WHERE campaign_id = %s AND lead_id = %s AND attempt_no = %s",
                (disposition, campaign_id, lead_id, attempt_no),
            )
            if count != 1:
                raise StoreError(f"no attempt {attempt_no} of lead {lead_id!r}")

    def unclaim(self, campaign_id: str, lead_id: str, attempt_no: int) -> None:
        """Undo :meth:`claim` for a dial that never left the dialer (no INVITE was sent), in one transaction."""
        with self.transaction():
            count = self._run(
                "DELETE FROM attempts WHERE campaign_id = %s AND lead_id = %s AND attempt_no = %s "
                "AND state = 'dialing'",
                (campaign_id, lead_id, attempt_no),
            )
            if count != 1:
                raise StoreError(f"attempt {attempt_no} of lead {lead_id!r} is not open")
            self._run(
                "UPDATE leads SET status = 'ready', attempts = attempts - 1, pass_attempts = pass_attempts - 1 "
                "WHERE campaign_id = %s AND lead_id = %s AND status = 'dialing'",
                (campaign_id, lead_id),
            )

    def purge_attempts(self, before: float, *, campaign_id: str | None = None) -> list[AttemptRow]:
        """Delete the closed attempts dialed before ``before`` (epoch) and return them, for a retention run."""
        where, args = _older_than("state != 'dialing' AND dialed_at < %s", before, campaign_id, "%s")
        rows = self._purge("attempts", _ATTEMPT_COLUMNS, where, args, _attempt)
        return sorted(rows, key=lambda a: (a.campaign_id, a.dialed_at, a.lead_id, a.attempt_no))

    def _purge(
        self, table: str, columns: str, where: str, args: list[Any], read: Callable[[dict[str, Any]], _Row]
    ) -> list[_Row]:
        """Delete ``table``'s rows that match ``where`` and return them, read by ``read``, in no order."""
        with self.transaction():  # one statement: exactly the rows deleted are returned, whatever commits meanwhile
            return [read(r) for r in self._all(f"DELETE FROM {table} WHERE {where} RETURNING {columns}", args)]

    def open_attempts(self, campaign_id: str) -> list[AttemptRow]:
        rows = self._all(
            f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE campaign_id = %s AND state = 'dialing' ORDER BY dialed_at",
            (campaign_id,),
        )
        return [_attempt(r) for r in rows]

    def attempts(self, campaign_id: str, *, lead_id: str | None = None) -> list[AttemptRow]:
        sql = f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE campaign_id = %s"
        args: list[Any] = [campaign_id]
        if lead_id is not None:
            sql += " AND lead_id = %s"
            args.append(lead_id)
        return [_attempt(r) for r in self._all(sql + " ORDER BY dialed_at, lead_id, attempt_no", args)]

    def last_attempt(self, campaign_id: str, lead_id: str) -> AttemptRow | None:
        row = self._one(
            f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE campaign_id = %s AND lead_id = %s "
            "ORDER BY attempt_no DESC LIMIT 1",
            (campaign_id, lead_id),
        )
        return None if row is None else _attempt(row)

    # -- inbound calls -----------------------------------------------------------------------------------

    def add_inbound(self, row: InboundRow) -> bool:
        """Keep one finished inbound call (committed before returning); ``False`` if it was already there (a
        write retried after an outage that had committed the first time)."""
        values = _inbound_values(row)
        placeholders = ", ".join(["%s"] * len(values))
        with self.transaction():
            n = self._run(
                f"INSERT INTO inbound_calls ({_INBOUND_COLUMNS}) VALUES ({placeholders}) "
                "ON CONFLICT (campaign_id, call_id, arrived_at) DO NOTHING",
                values,
            )
        return n == 1

    def inbound_calls(self, campaign_id: str) -> list[InboundRow]:
        """The campaign's inbound callers, by arrival."""
        rows = self._all(
            f"SELECT {_INBOUND_COLUMNS} FROM inbound_calls WHERE campaign_id = %s ORDER BY arrived_at, call_id",
            (campaign_id,),
        )
        return [_inbound(r) for r in rows]

    def purge_inbound(self, before: float, *, campaign_id: str | None = None) -> list[InboundRow]:
        """Delete the inbound calls that arrived before ``before`` (epoch) and return them, for a retention run."""
        where, args = _older_than("arrived_at < %s", before, campaign_id, "%s")
        rows = self._purge("inbound_calls", _INBOUND_COLUMNS, where, args, _inbound)
        return sorted(rows, key=lambda r: (r.campaign_id, r.arrived_at, r.call_id))

    # -- opt-outs ----------------------------------------------------------------------------------------

    def add_opt_out(self, phone: str, *, campaign_id: str = "", t: float | None = None, source: str = "") -> None:
        """Persist a do-not-call request at once (committed before returning)."""
        with self.transaction():
            self._lock_number(phone)
            self._run(
                "INSERT INTO opt_outs (phone, campaign_id, t, source) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (phone) DO NOTHING",
                (phone, campaign_id, time.time() if t is None else t, source),
            )

    def opt_outs(self) -> list[str]:
        return [r["phone"] for r in self._all("SELECT phone FROM opt_outs ORDER BY phone")]

    # -- protections of a number, store-wide ---------------------------------------------------------------

    def number_block(self, phone: str, epoch: float) -> tuple[str, float] | None:
        """Why ``phone`` must not be dialed at ``epoch`` whatever the campaign, as ``(reason, until)``, or ``None``."""
        if self._one("SELECT 1 AS x FROM opt_outs WHERE phone = %s", (phone,)) is not None:
            return ("opted out", float("inf"))
        row = self._one("SELECT until FROM number_lockouts WHERE phone = %s", (phone,))
        if row is not None and float(row["until"]) > epoch:
            return ("abandonment lockout", float(row["until"]))
        return None

    def number_lockout(self, phone: str) -> float:
        """The end of ``phone``'s abandonment lockout (epoch; 0 when it has none), whichever campaign set it."""
        row = self._one("SELECT until FROM number_lockouts WHERE phone = %s", (phone,))
        return 0.0 if row is None else float(row["until"])
