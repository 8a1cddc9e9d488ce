"""A real PostgreSQL server on 127.0.0.1 on a free port, for the store tests (Debian's ``postgresql`` package).

A plain module rather than conftest.py, like ``tests/bus/mqtt_broker.py``: pytest swaps ``sys.modules["conftest"]``
between the suite's conftest files. The fixture lives in ``tests/compliance/conftest.py``.

PostgreSQL refuses to run as root, so when the tests run as root the cluster's directory is handed to the
``postgres`` system user (created by the Debian package) and every server command runs through ``runuser``. The
server listens on loopback only, with its unix socket in the cluster directory and ``trust`` authentication for
local connections (commits are written before they are acknowledged, as in production, so a server a test
crashes keeps them; only fsync is off): a throwaway cluster in a temporary directory, stopped (fast shutdown)
when the session ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgServer:
    """One throwaway cluster: ``start`` runs initdb and the server, ``stop`` shuts it down and removes the files."""

    def __init__(self, *, password: str | None = None) -> None:
        """``password``: a secured server instead of a trusting one: TCP connections only over TLS (a CA and a
        certificate for ``localhost`` made here, :attr:`ca`) and with a SCRAM password (the superuser's).
        The unix socket in the cluster directory still trusts, for the test's own administration."""
        self.password = password
        bindir = _bindir()
        if bindir is None:
            pytest.fail("PostgreSQL is not installed (apt-get install postgresql); CI installs it")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="dialer-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            os.chmod(self.root, 0o755)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.user = "postgres" if self.as_user else os.environ.get("USER", "postgres")

    def _run(self, *args: str) -> None:
        out = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {out.stdout}\n{out.stderr}")

    def start(self) -> None:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8",
            "--no-sync", "--locale=C",
        )  # fmt: skip
        if self.password is not None:
            self._secure()
        self.resume()
        deadline = time.monotonic() + 30
        host = str(self.root) if self.password is not None else "127.0.0.1"
        while True:
            try:
                self._run(str(self.bindir / "createdb"), "-h", host, "-p", str(self.port), "-U", self.user,
                          "dialer")  # fmt: skip
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        if self.password is not None:
            import psycopg

            with psycopg.connect(self.admin_url(), autocommit=True) as admin:
                admin.execute(f"ALTER USER {self.user} PASSWORD '{self.password}'")

    @property
    def ca(self) -> Path:
        """The CA that signed a secured server's certificate (for ``sslrootcert``)."""
        return self.root / "ca.crt"

    def _secure(self) -> None:
        """TLS with a certificate for ``localhost`` only, a password, and plain TCP refused."""
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        d = str(self.root)
        self._run("openssl", "req", "-x509", *ec, "-days", "1", "-subj", "/CN=dialer store test CA",
                  "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt")  # fmt: skip
        (self.root / "server.ext").write_text("subjectAltName=DNS:localhost\n")
        self._run("openssl", "req", *ec, "-subj", "/CN=localhost", "-keyout", f"{d}/server.key",
                  "-out", f"{d}/server.csr")  # fmt: skip
        self._run("openssl", "x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.crt",
                  "-CAkey", f"{d}/ca.key", "-CAcreateserial", "-days", "1", "-extfile", f"{d}/server.ext",
                  "-out", f"{d}/server.crt")  # fmt: skip
        self._run("chmod", "0600", f"{d}/server.key")
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"ssl = on\nssl_cert_file = '{d}/server.crt'\nssl_key_file = '{d}/server.key'\n"
                       "password_encryption = 'scram-sha-256'\n")  # fmt: skip
        hba = (
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 reject\n"  # no TLS, no entry
        )
        self._run("sh", "-c", f"printf '%s' '{hba}' > {self.data}/pg_hba.conf")

    def admin_url(self, dbname: str = "postgres") -> str:
        """A connection over the cluster's unix socket (trusted): for the test's own setup."""
        return f"postgresql://{self.user}@/{dbname}?host={self.root}&port={self.port}"

    def resume(self) -> None:
        """Start the server on its cluster (again, after :meth:`halt`): same port, same data."""
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def halt(self, mode: str = "immediate") -> None:
        """Stop the server, keeping its data: ``immediate`` is a crash (connections cut, no checkpoint),
        ``fast`` an administrator's restart (connections cut, clean shutdown)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, dbname: str = "dialer") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def pg_server() -> Iterator[PgServer]:
    """The body of a session fixture: a running server, stopped afterwards."""
    server = PgServer()
    try:
        server.start()
    except BaseException:
        shutil.rmtree(server.root, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        server.stop()
