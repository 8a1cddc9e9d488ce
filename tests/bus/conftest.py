"""Fixtures of the bus tests: a real mosquitto per test (see mqtt_broker.py), stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mqtt_broker import Broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[type[Broker]]:
    """For tests that need their own configuration (passwords, TLS)."""
    made: list[Broker] = []

    class _Broker(Broker):
        def __init__(self, extra_config: str = "") -> None:
            d = tmp_path / f"broker{len(made)}"
            d.mkdir()
            super().__init__(d, extra_config)
            made.append(self)

    yield _Broker
    for b in made:
        b.stop()
