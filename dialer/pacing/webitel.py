"""Webitel's predictive rule, re-implemented as a baseline.

Webitel is an open-source contact-center platform whose dialer sets an over-dial ratio from the hit rate and
nudges it toward a target abandonment. It is representative of the "ratio plus feedback" controllers found in
many products, so the frontier sweep compares against it.

Rule (see docs/pacing.md): ``over_dial = 1 / hit_rate`` (live answers / attempts over the last 60 minutes). A
share ``m`` of the extra lines is used: every 30 s, ``m`` moves by ``dx * q / 100`` where ``dx`` is the target
minus the abandonment of the last 60 minutes, in percentage points, and ``q`` the load factor (10); when that
abandonment reaches the maximum, the level falls to 1 (progressive). Lines are then placed as in ratio
dialing: ``round(level x non-paused agents) - calls in flight``.
"""

from __future__ import annotations

from collections import deque

from dialer.engine.records import CallRecord, Outcome
from dialer.engine.snapshot import Snapshot
from dialer.errors import ConfigError
from dialer.pacing.base import PacingPolicy
from dialer.pacing.ratio import ratio_launches


class Webitel(PacingPolicy):
    """Webitel-style pacing: over-dial by the inverse hit rate, scaled toward the target abandonment."""

    name = "webitel"

    def __init__(
        self,
        target_abandon_rate: float = 0.03,
        *,
        max_abandon_rate: float | None = None,
        load_factor: float = 10.0,
        window: float = 3600.0,
        interval: float = 30.0,
        min_attempts: int = 20,
        max_level: float = 5.0,
    ) -> None:
        if not 0.0 <= target_abandon_rate < 1.0:
            raise ConfigError("target_abandon_rate", "must be in [0, 1)")
        top = 2.0 * target_abandon_rate if max_abandon_rate is None else max_abandon_rate
        if not target_abandon_rate <= top <= 1.0:
            raise ConfigError("max_abandon_rate", "must be between the target and 1")
        if load_factor <= 0 or window <= 0 or interval <= 0:
            raise ConfigError("load_factor", "load factor, window and interval must be > 0")
        if max_level < 1.0:
            raise ConfigError("max_level", "must be >= 1")
        self.target = target_abandon_rate
        self.max_abandon = top
        self.q = load_factor
        self.window = window
        self.interval = interval
        self.min_attempts = min_attempts
        self.max_level = max_level
        self.share = 0.0  # m: the share of the extra lines in use
        self.level = 1.0
        self._events: deque[tuple[float, bool, bool]] = deque()  # (time, live answer, abandoned)
        self._next: float | None = None

    def observe(self, record: CallRecord) -> None:
        if record.outcome in (Outcome.REJECTED, Outcome.INVALID_NUMBER, Outcome.NETWORK):
            return
        self._events.append((record.ended_at, record.live_answer, record.abandoned))

    def next_wakeup(self, now: float) -> float | None:
        return self._next if self._next is not None else now

    def _update(self, now: float) -> None:
        events = self._events
        while events and events[0][0] < now - self.window:
            events.popleft()
        attempts = len(events)
        live = sum(1 for _, lv, _ in events if lv)
        if attempts < self.min_attempts or live == 0:
            self.level = 1.0
            return
        abandoned = sum(1 for _, _, ab in events if ab)
        rate = abandoned / live
        if rate >= self.max_abandon:
            self.share = 0.0
        else:
            dx = 100.0 * (self.target - rate)
            self.share = min(1.0, max(0.0, self.share + dx * self.q / 100.0))
        over_dial = min(self.max_level, attempts / live)
        self.level = 1.0 + (over_dial - 1.0) * self.share

    def decide(self, snap: Snapshot) -> int:
        now = snap.now
        if self._next is None or now >= self._next:
            self._update(now)
            self._next = now + self.interval
        return ratio_launches(self.level, snap)
