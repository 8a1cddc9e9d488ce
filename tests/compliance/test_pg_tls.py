"""Credentials and TLS to a shared PostgreSQL store (issue 17, item 4), against a secured real server.

The server takes TCP connections only over TLS (its certificate names ``localhost``, signed by a CA of the test's
own) and only with a SCRAM password. The campaign file names the store without a password; the password comes
from ``PGPASSWORD`` or a password file (``PGPASSFILE``), and TLS is verified in full (``sslmode=verify-full``
with the CA). What is shown never holds the password: errors, logs, the run's own output.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import PgServer

from dialer.store import StoreError, open_store

SECRET = "s3cret-Pw_71"


@pytest.fixture(scope="module")
def secured() -> Iterator[PgServer]:
    server = PgServer(password=SECRET)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _url(server: PgServer, *, host: str = "localhost", mode: str = "verify-full") -> str:
    return f"postgresql://{server.user}@{host}:{server.port}/dialer?sslmode={mode}&sslrootcert={server.ca}"


@pytest.fixture
def no_pg_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No password or TLS settings inherited from the machine's environment."""
    for key in ("PGPASSWORD", "PGPASSFILE", "PGSSLMODE", "PGSSLROOTCERT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # and no ~/.pgpass


def test_the_password_from_the_environment_over_verified_tls(
    secured: PgServer, monkeypatch: pytest.MonkeyPatch, no_pg_env: None
) -> None:
    monkeypatch.setenv("PGPASSWORD", SECRET)
    with open_store(_url(secured)) as store:
        store.ensure_campaign("c")
        with store.transaction():  # the connection the store uses is encrypted
            row = store._one("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert row is not None and row["ssl"] is True and row["version"].startswith("TLSv1.")
        assert SECRET not in repr(store) and SECRET not in store.path


def test_the_password_from_a_password_file(secured: PgServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          no_pg_env: None) -> None:  # fmt: skip
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"localhost:{secured.port}:*:{secured.user}:{SECRET}\n", encoding="utf-8")
    passfile.chmod(0o600)  # libpq ignores a password file others can read
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    with open_store(_url(secured)) as store:
        assert store.schema_version > 0  # opened, migrated and read over TLS


@pytest.mark.parametrize(
    ("why", "url", "password", "expect"),
    [
        ("no password", "verified", None, "password"),
        ("a wrong password", "verified", "not-it", "password authentication failed"),
        ("TLS refused by the client", "disable", SECRET, "no encryption"),  # the server refuses plain TCP
        ("the certificate names another host", "by-ip", SECRET, "certificate"),  # verify-full checks the name
    ],
)
def test_a_store_that_cannot_be_reached_safely_is_refused_without_showing_the_password(
    secured: PgServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    no_pg_env: None,
    why: str,
    url: str,
    password: str | None,
    expect: str,
) -> None:
    if password is not None:
        monkeypatch.setenv("PGPASSWORD", password)
    target = {
        "verified": _url(secured),
        "disable": _url(secured, mode="disable"),
        "by-ip": _url(secured, host="127.0.0.1"),
    }[url]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError) as refused:
        open_store(target, timeout=2.0)
    message = str(refused.value)
    assert expect in message or expect in caplog.text, (why, message, caplog.text[-2000:])
    assert SECRET not in message and SECRET not in caplog.text


def test_dialer_report_reads_the_secured_store_with_the_password_from_the_environment(
    secured: PgServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = SECRET
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGPASSWORD", SECRET)
        with open_store(_url(secured)) as store:
            store.ensure_campaign("spring")
    out = subprocess.run(
        [sys.executable, "-m", "dialer.cli", "report", "compliance", _url(secured), "--campaign", "spring"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "Abandonment ledger for campaign 'spring'" in out.stdout
    assert SECRET not in out.stdout + out.stderr
    env.pop("PGPASSWORD")
    refused = subprocess.run(
        [sys.executable, "-m", "dialer.cli", "report", "compliance", _url(secured)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert refused.returncode == 2 and "password" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) <= 2  # one clear line, no traceback
