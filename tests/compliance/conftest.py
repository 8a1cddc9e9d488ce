"""Fixtures of the store and compliance tests: a real PostgreSQL server, and a store on either backend.

``store_location`` parametrizes a test over the embedded SQLite store and the PostgreSQL one; ``reopen`` opens (and
reopens) that one fresh store, and ``fresh_store`` makes a new, empty store at every call (a new SQLite file or a new
PostgreSQL database). Every store they open is closed at teardown.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_server import PgServer, pg_server

from dialer.store import open_store

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole session (initdb and start take about a second)."""
    yield from pg_server()


@pytest.fixture
def pg_url(postgres: PgServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres.create_database(f"t{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh store lives, on each backend: a SQLite path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "d.sqlite")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def reopen(store_location: str) -> Iterator[Callable[..., Any]]:
    """Open the test's store (again, as often as asked); every store opened is closed at teardown."""
    opened: list[Any] = []

    def _open(**options: Any) -> Any:
        store = open_store(store_location, **options)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        with contextlib.suppress(Exception):
            store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """A new, empty store at every call, on each backend."""
    opened: list[Any] = []
    made = itertools.count(1)

    def _new() -> Any:
        if request.param == "sqlite":
            location = str(tmp_path / f"s{next(made)}.sqlite")
        else:
            server: PgServer = request.getfixturevalue("postgres")
            location = server.create_database(f"t{next(_databases)}")
        store = open_store(location)
        opened.append(store)
        return store

    yield _new
    for store in opened:
        with contextlib.suppress(Exception):
            store.close()
