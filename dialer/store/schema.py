"""The store's schema, as an ordered list of migrations.

The schema version lives in SQLite's ``PRAGMA user_version``. Opening a database applies every migration above its
version, each in its own transaction together with the version bump, so a crash mid-upgrade leaves the old schema
intact. A database *newer* than this code is refused rather than guessed at: an older dialer writing rows it does
not fully understand could drop a compliance fact (a lockout, an opt-out) on the floor.

Never edit a migration that has shipped; append a new one, to MIGRATIONS and its twin to PG_MIGRATIONS (the
PostgreSQL store keeps its version in a ``schema_migrations`` table instead of ``user_version``).
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: campaigns, leads, attempts (which double as the abandonment ledger), opt-outs.
    """
    CREATE TABLE campaigns (
        campaign_id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        settings TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE leads (
        campaign_id TEXT NOT NULL REFERENCES campaigns(campaign_id),
        lead_id TEXT NOT NULL,
        phone TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        time_zone TEXT NOT NULL DEFAULT '',
        fields TEXT NOT NULL DEFAULT '{}',
        priority INTEGER NOT NULL DEFAULT 0,
        seq INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'ready' CHECK (status IN ('ready', 'dialing', 'done')),
        disposition TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0,
        pass_attempts INTEGER NOT NULL DEFAULT 0,
        list_pass INTEGER NOT NULL DEFAULT 0,
        outcome_counts TEXT NOT NULL DEFAULT '{}',
        next_at REAL NOT NULL DEFAULT 0,
        lockout_until REAL NOT NULL DEFAULT 0,
        callback_at REAL,
        source_line INTEGER,
        PRIMARY KEY (campaign_id, lead_id),
        UNIQUE (campaign_id, phone)
    );
    CREATE INDEX leads_due ON leads (campaign_id, status, (callback_at IS NULL), (-priority), seq);
    CREATE TABLE attempts (
        campaign_id TEXT NOT NULL,
        lead_id TEXT NOT NULL,
        attempt_no INTEGER NOT NULL,
        phone TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('dialing', 'done', 'interrupted')),
        dialed_at REAL NOT NULL,
        call_id INTEGER,
        outcome TEXT,
        disposition TEXT,
        ended_at REAL,
        answered_at REAL,
        connected_at REAL,
        message_at REAL,
        wait REAL,
        agent_id TEXT,
        abandoned INTEGER NOT NULL DEFAULT 0,
        customer_hung_up INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (campaign_id, lead_id, attempt_no),
        FOREIGN KEY (campaign_id, lead_id) REFERENCES leads(campaign_id, lead_id)
    );
    CREATE INDEX attempts_time ON attempts (campaign_id, dialed_at);
    CREATE INDEX attempts_open ON attempts (campaign_id, state);
    CREATE TABLE opt_outs (
        phone TEXT PRIMARY KEY,
        campaign_id TEXT NOT NULL DEFAULT '',
        t REAL NOT NULL,
        source TEXT NOT NULL DEFAULT ''
    );
    """,
    # 2: the evidence an auditor needs per attempt. placed_at: when the INVITE left (dialed_at stays the claim);
    # ringing_at: first 180/183; message_played: the message's audio went out (NULL: none was needed), with
    # message_at its measured start; bridge_failed: the agent's phone never took the call; amd_verdict and
    # amd_seconds: the detector's verdict and its time after the answer; picked_up_at: the 200 OK when the connect
    # clock (answered_at) started later, at the end of the greeting or the start of speech.
    """
    ALTER TABLE attempts ADD COLUMN placed_at REAL;
    ALTER TABLE attempts ADD COLUMN ringing_at REAL;
    ALTER TABLE attempts ADD COLUMN message_played INTEGER;
    ALTER TABLE attempts ADD COLUMN bridge_failed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE attempts ADD COLUMN amd_verdict TEXT;
    ALTER TABLE attempts ADD COLUMN amd_seconds REAL;
    ALTER TABLE attempts ADD COLUMN picked_up_at REAL
    """,
    # 3: protections that belong to the NUMBER, not the lead: the end of the abandonment lockout of each number,
    # whichever campaign's call was abandoned (opt-outs were already per number, in opt_outs). Every claim in any
    # campaign on the store reads it in the claim's own transaction. Filled from the leads' lockouts, so an
    # upgraded store keeps the ones already running.
    """
    CREATE TABLE number_lockouts (
        phone TEXT PRIMARY KEY,
        until REAL NOT NULL,
        campaign_id TEXT NOT NULL DEFAULT '',
        lead_id TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO number_lockouts (phone, until, campaign_id, lead_id)
        SELECT phone, MAX(lockout_until), campaign_id, lead_id FROM leads WHERE lockout_until > 0 GROUP BY phone
    """,
    # 4: lead imports. One row per import of a file into a campaign: the file's identity (size, mtime, a hash of its
    # first and last MiB), the settings it was read with, and the progress of the last committed chunk (byte offset
    # and physical line), so a killed import resumes there and an unchanged file is not imported again at every
    # start. lead_import_rows keeps what happened to each merged or rejected row, per import (never overwritten).
    """
    CREATE TABLE lead_imports (
        import_id INTEGER PRIMARY KEY AUTOINCREMENT,
        campaign_id TEXT NOT NULL,
        source TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        settings TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'done')),
        byte_offset INTEGER,
        line INTEGER NOT NULL DEFAULT 0,
        rows INTEGER NOT NULL DEFAULT 0,
        accepted INTEGER NOT NULL DEFAULT 0,
        started_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX lead_imports_source ON lead_imports (campaign_id, source, import_id);
    CREATE TABLE lead_import_rows (
        import_id INTEGER NOT NULL REFERENCES lead_imports(import_id),
        line INTEGER NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('merged', 'rejected')),
        lead_id TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        row TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (import_id, line)
    )
    """,
    # 5: consent (issue 13, item 6). lead_consents keeps each consent record a lead file gave for a lead (type,
    # date, source, and the import and line it came from), so the dial-time gate can tell whether a national-registry
    # number has a basis on the day of the call, and an auditor can see the record. attempts.registry_basis names the
    # basis a registry number was dialed on (NULL: the number was not on the registry, or no exemption was needed).
    """
    CREATE TABLE lead_consents (
        campaign_id TEXT NOT NULL,
        lead_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        date TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT '',
        import_id INTEGER,
        line INTEGER,
        PRIMARY KEY (campaign_id, lead_id, kind, date, source)
    );
    ALTER TABLE attempts ADD COLUMN registry_basis TEXT
    """,
    # 6: who dialed an attempt (a dispatcher's owner id, held alive by a lock while it runs), so a dispatcher
    # starting on a campaign closes as interrupted only the open attempts of dispatchers that are gone.
    """
    ALTER TABLE attempts ADD COLUMN owner TEXT
    """,
    # 7: inbound calls, one row per caller who rang a campaign (answered, abandoned, or blocked: turned away before
    # queueing, ``reason`` saying why), written when the call ends, so the compliance report and the audit export
    # know the inbound callers as they know the attempts. call_id is the runtime's name for the call (the SIP
    # Call-ID; '' when a refused caller had none), caller is who rang as the evidence log keeps it, wait is the
    # wait as measured (arrival to the connect, or to hanging up), within_service_level whether the caller was
    # answered within service_level_seconds (the T the campaign ran with, kept per row since it may change), owner
    # the dispatcher that took the call (as attempts.owner). Keyed by arrival too: a refused duplicate INVITE
    # repeats the Call-ID of a caller still queued.
    """
    CREATE TABLE inbound_calls (
        campaign_id TEXT NOT NULL,
        call_id TEXT NOT NULL,
        arrived_at REAL NOT NULL,
        caller TEXT NOT NULL DEFAULT '',
        outcome TEXT NOT NULL CHECK (outcome IN ('answered', 'abandoned', 'blocked')),
        reason TEXT,
        wait REAL NOT NULL,
        answered_at REAL,
        ended_at REAL NOT NULL,
        agent_id TEXT,
        agent_group TEXT,
        within_service_level INTEGER NOT NULL DEFAULT 0,
        service_level_seconds REAL NOT NULL,
        owner TEXT,
        PRIMARY KEY (campaign_id, call_id, arrived_at)
    );
    CREATE INDEX inbound_calls_time ON inbound_calls (arrived_at)
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

# The same schema as PostgreSQL DDL, one entry per migration above, at the same version numbers (the store's
# ``schema_migrations`` table holds one row per applied version). Why its own text: SQLite's REAL is PostgreSQL's
# DOUBLE PRECISION (PostgreSQL's REAL is 4 bytes, too coarse for epoch seconds), its 64-bit INTEGER is BIGINT,
# AUTOINCREMENT is an identity column, and migration 3's fill cannot pick a row's other columns beside MAX().
# Booleans stay 0/1 integers and JSON stays text, so both backends read and write the same values.
PG_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE campaigns (
        campaign_id TEXT PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        settings TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE leads (
        campaign_id TEXT NOT NULL REFERENCES campaigns(campaign_id),
        lead_id TEXT NOT NULL,
        phone TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        time_zone TEXT NOT NULL DEFAULT '',
        fields TEXT NOT NULL DEFAULT '{}',
        priority BIGINT NOT NULL DEFAULT 0,
        seq BIGINT NOT NULL,
        status TEXT NOT NULL DEFAULT 'ready' CHECK (status IN ('ready', 'dialing', 'done')),
        disposition TEXT NOT NULL DEFAULT '',
        attempts BIGINT NOT NULL DEFAULT 0,
        pass_attempts BIGINT NOT NULL DEFAULT 0,
        list_pass BIGINT NOT NULL DEFAULT 0,
        outcome_counts TEXT NOT NULL DEFAULT '{}',
        next_at DOUBLE PRECISION NOT NULL DEFAULT 0,
        lockout_until DOUBLE PRECISION NOT NULL DEFAULT 0,
        callback_at DOUBLE PRECISION,
        source_line BIGINT,
        PRIMARY KEY (campaign_id, lead_id),
        UNIQUE (campaign_id, phone)
    );
    CREATE INDEX leads_due ON leads (campaign_id, status, (callback_at IS NULL), (-priority), seq);
    CREATE TABLE attempts (
        campaign_id TEXT NOT NULL,
        lead_id TEXT NOT NULL,
        attempt_no BIGINT NOT NULL,
        phone TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('dialing', 'done', 'interrupted')),
        dialed_at DOUBLE PRECISION NOT NULL,
        call_id BIGINT,
        outcome TEXT,
        disposition TEXT,
        ended_at DOUBLE PRECISION,
        answered_at DOUBLE PRECISION,
        connected_at DOUBLE PRECISION,
        message_at DOUBLE PRECISION,
        wait DOUBLE PRECISION,
        agent_id TEXT,
        abandoned INTEGER NOT NULL DEFAULT 0,
        customer_hung_up INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (campaign_id, lead_id, attempt_no),
        FOREIGN KEY (campaign_id, lead_id) REFERENCES leads(campaign_id, lead_id)
    );
    CREATE INDEX attempts_time ON attempts (campaign_id, dialed_at);
    CREATE INDEX attempts_open ON attempts (campaign_id, state);
    CREATE TABLE opt_outs (
        phone TEXT PRIMARY KEY,
        campaign_id TEXT NOT NULL DEFAULT '',
        t DOUBLE PRECISION NOT NULL,
        source TEXT NOT NULL DEFAULT ''
    )
    """,
    """
    ALTER TABLE attempts ADD COLUMN placed_at DOUBLE PRECISION;
    ALTER TABLE attempts ADD COLUMN ringing_at DOUBLE PRECISION;
    ALTER TABLE attempts ADD COLUMN message_played INTEGER;
    ALTER TABLE attempts ADD COLUMN bridge_failed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE attempts ADD COLUMN amd_verdict TEXT;
    ALTER TABLE attempts ADD COLUMN amd_seconds DOUBLE PRECISION;
    ALTER TABLE attempts ADD COLUMN picked_up_at DOUBLE PRECISION
    """,
    """
    CREATE TABLE number_lockouts (
        phone TEXT PRIMARY KEY,
        until DOUBLE PRECISION NOT NULL,
        campaign_id TEXT NOT NULL DEFAULT '',
        lead_id TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO number_lockouts (phone, until, campaign_id, lead_id)
        SELECT DISTINCT ON (phone) phone, lockout_until, campaign_id, lead_id FROM leads WHERE lockout_until > 0
        ORDER BY phone, lockout_until DESC
    """,
    """
    CREATE TABLE lead_imports (
        import_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        campaign_id TEXT NOT NULL,
        source TEXT NOT NULL,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        fingerprint TEXT NOT NULL,
        settings TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'done')),
        byte_offset BIGINT,
        line BIGINT NOT NULL DEFAULT 0,
        rows BIGINT NOT NULL DEFAULT 0,
        accepted BIGINT NOT NULL DEFAULT 0,
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION
    );
    CREATE INDEX lead_imports_source ON lead_imports (campaign_id, source, import_id);
    CREATE TABLE lead_import_rows (
        import_id BIGINT NOT NULL REFERENCES lead_imports(import_id),
        line BIGINT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('merged', 'rejected')),
        lead_id TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        row TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (import_id, line)
    )
    """,
    """
    CREATE TABLE lead_consents (
        campaign_id TEXT NOT NULL,
        lead_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        date TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT '',
        import_id BIGINT,
        line BIGINT,
        PRIMARY KEY (campaign_id, lead_id, kind, date, source)
    );
    ALTER TABLE attempts ADD COLUMN registry_basis TEXT
    """,
    """
    ALTER TABLE attempts ADD COLUMN owner TEXT
    """,
    """
    CREATE TABLE inbound_calls (
        campaign_id TEXT NOT NULL,
        call_id TEXT NOT NULL,
        arrived_at DOUBLE PRECISION NOT NULL,
        caller TEXT NOT NULL DEFAULT '',
        outcome TEXT NOT NULL CHECK (outcome IN ('answered', 'abandoned', 'blocked')),
        reason TEXT,
        wait DOUBLE PRECISION NOT NULL,
        answered_at DOUBLE PRECISION,
        ended_at DOUBLE PRECISION NOT NULL,
        agent_id TEXT,
        agent_group TEXT,
        within_service_level INTEGER NOT NULL DEFAULT 0,
        service_level_seconds DOUBLE PRECISION NOT NULL,
        owner TEXT,
        PRIMARY KEY (campaign_id, call_id, arrived_at)
    );
    CREATE INDEX inbound_calls_time ON inbound_calls (arrived_at)
    """,
)

assert len(PG_MIGRATIONS) == SCHEMA_VERSION, "every migration needs its PostgreSQL twin"
