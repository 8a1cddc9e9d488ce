"""VICIdial's adaptive dial level (ADAPT_HARD_LIMIT, ADAPT_TAPERED, ADAPT_AVERAGE), re-implemented as a baseline.

VICIdial is the most widely deployed open-source predictive dialer, so it is the bar to beat. Its rule balances
idle agents against waiting calls and uses the day's drop rate only as a kill switch, which is why it swings
between aggressive and progressive. The cadences (sample every second, adjust every 15 s, dial every 2.5 s) are
part of its behaviour, so this policy keeps them and asks the engine to wake it accordingly.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from dialer.engine.snapshot import Snapshot
from dialer.errors import ConfigError
from dialer.pacing.base import PacingPolicy
from dialer.pacing.ratio import ratio_launches

Mode = Literal["hard_limit", "tapered", "average"]
MODES: tuple[Mode, ...] = ("hard_limit", "tapered", "average")
_TEN_HOURS = 36000.0


class VicidialAdaptive(PacingPolicy):
    """Adaptive dial level after VICIdial's ``AST_VDadapt``.

    Parameters keep VICIdial's names and defaults: ``drop_limit`` (3%), ``max_level`` (3.0), ``adaptive_intensity``
    (-40..40, 0), ``diff_target`` (0). ``dialing_day_end`` is seconds after midnight when dialing stops for the
    day (TAPERED's clock); the default is 21:00.
    """

    name = "vicidial-adaptive"

    def __init__(
        self,
        mode: Mode = "hard_limit",
        *,
        drop_limit: float = 0.03,
        max_level: float = 3.0,
        adaptive_intensity: float = 0.0,
        diff_target: float = 0.0,
        initial_level: float = 1.0,
        dialing_day_end: float = 21 * 3600.0,
        sample_interval: float = 1.0,
        samples: int = 15,
        update_interval: float = 15.0,
        dial_interval: float = 2.5,
    ) -> None:
        if mode not in MODES:
            raise ConfigError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
        if not 0.0 < drop_limit < 1.0:
            raise ConfigError("drop_limit", "must be between 0 and 1")
        if max_level < 1.0:
            raise ConfigError("max_level", "must be >= 1")
        if not -100.0 < adaptive_intensity <= 100.0:
            raise ConfigError("adaptive_intensity", "must be in (-100, 100]")
        for key, value in (
            ("sample_interval", sample_interval),
            ("update_interval", update_interval),
            ("dial_interval", dial_interval),
        ):
            if not value > 0:  # also refuses NaN
                raise ConfigError(key, "must be > 0")
        if samples < 1:
            raise ConfigError("samples", "must be >= 1")
        self.mode: Mode = mode
        self.drop_limit = drop_limit
        self.max_level = max_level
        self.intensity = adaptive_intensity / 100.0
        self.diff_target = diff_target
        self.level = max(1.0, min(initial_level, max_level))
        self.dialing_day_end = dialing_day_end
        self.sample_interval = sample_interval
        self.update_interval = update_interval
        self.dial_interval = dial_interval
        self._samples: deque[tuple[int, int, int]] = deque(maxlen=samples)
        self._next_sample: float | None = None
        self._next_update = 0.0
        self._next_dial = 0.0

    def next_wakeup(self, now: float) -> float | None:
        if self._next_sample is None:
            return now
        return min(self._next_sample, self._next_update, self._next_dial)

    def decide(self, snap: Snapshot) -> int:
        now = snap.now
        if self._next_sample is None:
            self._next_sample = now
            self._next_update = now + self.update_interval
            self._next_dial = now
        if now >= self._next_sample:
            # One sample per elapsed interval, as VICIdial's once-a-second loop would have taken.
            missed = min(int((now - self._next_sample) // self.sample_interval) + 1, self._samples.maxlen or 1)
            for _ in range(missed):
                self._samples.append((snap.ready, snap.queued, snap.logged_in))
            self._next_sample += self.sample_interval * (int((now - self._next_sample) // self.sample_interval) + 1)
        if now >= self._next_update:
            self._update_level(snap)
            self._next_update = now + self.update_interval
        if now >= self._next_dial:
            self._next_dial = now + self.dial_interval
            return ratio_launches(self.level, snap)
        return 0

    def _update_level(self, snap: Snapshot) -> None:
        n = len(self._samples)
        if n:
            avg_ready = sum(s[0] for s in self._samples) / n
            avg_waiting = sum(s[1] for s in self._samples) / n
            avg_total = sum(s[2] for s in self._samples) / n
            diff = avg_ready - avg_waiting + self.diff_target
            m = diff / avg_total if diff and avg_total else 0.0
            m *= (1.0 + self.intensity) if m >= 0 else abs(self.intensity - 1.0)
            self.level = min(self.level * (1.0 + m), self.max_level)
        minute = snap.stats.minute
        if minute.dials > 20 and minute.live_answers and minute.abandoned / minute.live_answers > 0.5:
            self.level /= 2.0
        today = snap.stats.day(snap.now)
        if today.dials > 50 and today.live_answers and today.abandoned / today.live_answers > self.drop_limit:
            if self.mode == "hard_limit":
                self.level = 1.0
            elif self.mode == "average":
                self.level /= 2.0
            else:
                left = self.dialing_day_end - (snap.now - snap.day_start)
                self.level = self.level * left / _TEN_HOURS if left > 0 else 1.0
        self.level = max(1.0, self.level)
