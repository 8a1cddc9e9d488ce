"""Clocks for :class:`~dialer.live.runtime.AsyncRuntime`: the wall clock, a manual clock and an accelerated one.

A clock does two things for a runtime: it reads the time that stamps every event, and it arms the engine's timers
(:meth:`Clock.call_at`). Both have to come from the same object. The engine's timers (a waiting person's connect
limit, a ring timeout, a policy's next decision) are deadlines on the engine's own time line, and they must fire
in the engine's order, interleaved correctly with the events a driver submits: a connect limit due at 10.0 must
fire before an answer stamped 10.5 is applied, or the engine would see a person connected who had in fact been
abandoned. A clock that stamps events in one time and schedules timers in another cannot promise that.

- :class:`WallClock`, the default, reads ``time.time()`` and arms timers on the running loop after the real delay.
- :class:`ManualClock` moves only when told to (:meth:`ManualClock.advance`, :meth:`ManualClock.advance_to`) and
  never sleeps: advancing it fires every due timer, the runtime's and the embedder's, one at a time in time order,
  with the clock reading exactly each timer's deadline as it fires. A test of a whole shift is then a loop of
  events and timers with no waiting at all, and gives the same records on every run.
- :class:`AcceleratedClock` runs ``factor`` times faster than the loop's own clock: its timers are real
  ``loop.call_at`` timers at ``1/factor`` of the delay. Use it when the code under test needs a running loop and
  real concurrency (sockets, other tasks), but a shift should still take minutes, not hours.

An embedder's own fakes (a stand-in network answering calls, agents finishing wrap-up) schedule their events with
the same clock's :meth:`Clock.call_later`, so they interleave with the engine's timers in one order.

    >>> clock = ManualClock(start=100.0)
    >>> fired = []
    >>> _ = clock.call_later(5.0, lambda: fired.append(("b", clock())))
    >>> _ = clock.call_at(102.0, lambda: fired.append(("a", clock())))
    >>> clock.advance(10.0)
    >>> fired, clock()
    ([('a', 102.0), ('b', 105.0)], 110.0)
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

__all__ = ["AcceleratedClock", "Cancellable", "Clock", "ManualClock", "WallClock"]


class Cancellable(Protocol):
    """What :meth:`Clock.call_at` returns: ``cancel()`` stops the callback if it has not run yet."""

    def cancel(self) -> None: ...


class Clock(ABC):
    """A time source that also arms timers on its own time line.

    Calling the clock reads it, in seconds (so a clock can be passed wherever a ``Callable[[], float]`` is
    expected). :meth:`call_at` runs ``callback`` once the clock reads ``when`` or later.
    """

    @abstractmethod
    def __call__(self) -> float:
        """The current time, in seconds."""

    @abstractmethod
    def call_at(self, when: float, callback: Callable[[], object]) -> Cancellable:
        """Run ``callback()`` once this clock reads ``when`` (at once, if that is already past)."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> Cancellable:
        """Run ``callback()`` ``delay`` seconds of this clock from now."""
        return self.call_at(self() + delay, callback)


class WallClock(Clock):
    """The system's wall clock (``time.time()``); timers are ``loop.call_at`` on the running loop.

    The runtime's default. A timer is armed for the real delay between now and its deadline, measured on this
    clock and waited out on the loop's monotonic clock, so a system clock stepped while waiting moves the timer's
    firing by no more than the step (and the runtime never stamps an event earlier than the engine's time).
    """

    def __call__(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], object]) -> Cancellable:
        loop = asyncio.get_running_loop()
        return loop.call_at(loop.time() + max(0.0, when - self()), callback)

    def __repr__(self) -> str:
        return "WallClock()"


class AcceleratedClock(Clock):
    """A clock running ``factor`` times faster than real time, from ``start`` (default: the wall clock now).

    It reads ``start + factor * (seconds elapsed since it was made)``, the elapsed seconds measured on ``base``
    (``time.monotonic``, the clock asyncio's loop runs on). A timer due in ``d`` seconds of this clock is a real
    ``loop.call_at`` timer ``d / factor`` seconds away, so timers keep their order and their spacing, only shorter:
    at ``factor=100`` a 30-second ring timeout takes 0.3 s, and an eight-hour shift under five minutes. The
    loop's lateness is multiplied too (a timer 10 ms late on the loop reads 1 s late on this clock at 100x), so
    keep ``factor`` where that lateness is still small against the engine's shortest timer (the connect limit).
    """

    def __init__(
        self, factor: float, start: float | None = None, *, base: Callable[[], float] = time.monotonic
    ) -> None:
        if not (isinstance(factor, int | float) and not isinstance(factor, bool) and 0 < factor < math.inf):
            raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
        if start is not None and not math.isfinite(start):
            raise ValueError(f"start must be a finite number, got {start!r}")
        self.factor = float(factor)
        self.start = time.time() if start is None else float(start)
        self._base = base
        self._origin = base()

    def __call__(self) -> float:
        return self.start + (self._base() - self._origin) * self.factor

    def call_at(self, when: float, callback: Callable[[], object]) -> Cancellable:
        loop = asyncio.get_running_loop()
        return loop.call_at(loop.time() + max(0.0, when - self()) / self.factor, callback)

    def __repr__(self) -> str:
        return f"AcceleratedClock(factor={self.factor!r}, start={self.start!r})"


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock(Clock):
    """A clock that stands still until :meth:`advance` or :meth:`advance_to` moves it; it never sleeps.

    Timers armed with :meth:`call_at` (the runtime's, and an embedder's fakes') wait in one queue. Advancing the
    clock to ``t`` runs each timer due by ``t`` in order of its deadline (ties in the order they were armed),
    with the clock reading exactly that deadline while its callback runs; a timer armed by a callback fires in
    the same advance if it falls due by ``t``. So the engine sees every deadline at its own moment, interleaved
    with the events the fakes submit, and not all at once at ``t``: the order the engine would see in
    production, without waiting for it. Runs are deterministic: the same inputs give the same events at the same
    times.

    Callbacks run synchronously inside :meth:`advance`; an exception from one propagates to the caller (the clock
    then reads that callback's deadline, and the rest stay queued). Coroutine action handlers of a runtime are
    tasks, and run when the caller next yields to the loop (``await asyncio.sleep(0)``).
    """

    def __init__(self, start: float = 0.0) -> None:
        if not math.isfinite(start):
            raise ValueError(f"start must be a finite number, got {start!r}")
        self._now = float(start)
        self._queue: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()
        self._advancing = False

    def __call__(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], object]) -> Cancellable:
        if not math.isfinite(when):
            raise ValueError(f"when must be a finite number, got {when!r}")
        timer = _ManualTimer(when, callback)
        heapq.heappush(self._queue, (when, next(self._seq), timer))
        return timer

    def next_at(self) -> float | None:
        """When the earliest pending timer is due (``None`` if none is)."""
        while self._queue and self._queue[0][2].cancelled:
            heapq.heappop(self._queue)
        return self._queue[0][0] if self._queue else None

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward, running the timers due on the way (see :meth:`advance_to`)."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        self.advance_to(self._now + seconds)

    def advance_to(self, t: float) -> None:
        """Move the clock to ``t``, running each timer due by then in deadline order, at its deadline.

        Raises ``ValueError`` for a ``t`` before the clock's time (it never goes back) and ``RuntimeError`` if
        called from inside one of its own callbacks.
        """
        if not math.isfinite(t):
            raise ValueError(f"t must be a finite number, got {t!r}")
        if t < self._now:
            raise ValueError(f"a manual clock never goes back: now {self._now!r}, asked for {t!r}")
        if self._advancing:
            raise RuntimeError("ManualClock.advance_to called from one of its own timers")
        self._advancing = True
        try:
            queue = self._queue
            while queue and queue[0][0] <= t:
                when, _, timer = heapq.heappop(queue)
                if timer.cancelled:
                    continue
                timer.cancelled = True  # fired: a late cancel() is harmless
                self._now = max(self._now, when)
                timer.callback()
            self._now = t
        finally:
            self._advancing = False

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r})"
