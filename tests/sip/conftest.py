"""Fixtures of the SIP tests: SIPp peers started per test and stopped afterwards (see sipp_peers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sipp_peers import Sipp


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
