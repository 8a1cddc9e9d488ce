"""Fixtures of the SIP tests: SIPp peers started per test and stopped afterwards (see sipp_peers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sipp_peers import PjPeer, Sipp


@pytest.fixture
def sipp_factory(tmp_path: Path) -> Iterator[type[Sipp]]:
    started: list[Sipp] = []

    class _Factory(Sipp):
        def __init__(self, scenario: str, *extra: str, transport: str = "u1") -> None:
            super().__init__(scenario, tmp_path, *extra, transport=transport)
            started.append(self)

    yield _Factory
    for s in started:
        s.stop()
    aborted = [line for s in started for line in s.aborted()]
    if aborted:  # every test, whatever it asserts, must leave each SIPp peer with no call it had to abort
        pytest.fail(f"SIPp aborted calls: {aborted[:3]}")


@pytest.fixture
def pj_peer(tmp_path: Path) -> Iterator[type[PjPeer]]:
    started: list[PjPeer] = []

    class _Factory(PjPeer):
        def __init__(self, **kw: object) -> None:
            super().__init__(tmp_path, **kw)  # type: ignore[arg-type]
            started.append(self)

    yield _Factory
    for p in started:
        p.stop()
