"""A pacing policy that launches exactly what a test tells it to, once: how tests build a floor by hand."""

from __future__ import annotations

from dialer.engine.snapshot import Snapshot
from dialer.pacing.base import PacingPolicy


class Scripted(PacingPolicy):
    """Launches ``pending`` calls at the next decision, then nothing until told again."""

    def __init__(self) -> None:
        self.pending = 0

    def decide(self, snap: Snapshot) -> int:
        n, self.pending = self.pending, 0
        return n
