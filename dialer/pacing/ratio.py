"""Progressive and power (fixed-ratio) dialing: the baselines every dialer ships."""

from __future__ import annotations

import math

from dialer.engine.snapshot import Snapshot
from dialer.errors import ConfigError
from dialer.pacing.base import PacingPolicy


def ratio_launches(level: float, snap: Snapshot) -> int:
    """VICIdial's auto-dial rule: ``round(level x non-paused agents) - calls in flight``, never negative.

    Non-paused agents are those ready or on a call; calls in flight are ringing, waiting or connected. Rounding
    is half-up, as in VICIdial (Python's ``round`` would round 2.5 to 2).
    """
    want = math.floor(level * snap.non_paused + 0.5)
    return max(0, want - snap.in_flight)


class Progressive(PacingPolicy):
    """One call per idle agent: a ready agent is reserved for every call ringing, so nobody is ever abandoned."""

    name = "progressive"

    def decide(self, snap: Snapshot) -> int:
        return max(0, snap.ready - snap.ringing - snap.queued)


class Power(PacingPolicy):
    """A fixed number of lines per agent (VICIdial's RATIO dial method). ``ratio=1`` is progressive."""

    name = "power"

    def __init__(self, ratio: float = 1.5) -> None:
        if not 1.0 <= ratio <= 10.0:
            raise ConfigError("ratio", f"must be between 1 and 10, got {ratio}")
        self.ratio = ratio

    def decide(self, snap: Snapshot) -> int:
        return ratio_launches(self.ratio, snap)
