"""The asyncio runtime: the same engine core as the simulator, on the wall clock.

The runtime owns three things and nothing else: the clock (time stamps for events, clamped so they never go
backwards when the system clock is stepped), the engine's timers (one ``loop.call_at`` armed for the earliest),
and the dispatch of actions to whoever carries them out (the SIP driver for dials and bridges, the bus and the
store for records). Drivers report what happened with :meth:`AsyncRuntime.submit`.

Everything runs on the loop thread: the engine is not thread-safe, and does not need to be.

The clock can be a :class:`~dialer.live.clocks.Clock` object, which then arms the engine's timers too:
:class:`~dialer.live.clocks.ManualClock` for tests that drive a whole shift with no sleeping (timers fire as the
test advances the clock, each at its own deadline), :class:`~dialer.live.clocks.AcceleratedClock` for a shift run
``factor`` times faster on a real loop. ``async with AsyncRuntime(...) as runtime:`` closes it on the way out.

    >>> import asyncio
    >>> from dialer import Engine, ListLeads, make_policy
    >>> from dialer.engine import events as ev
    >>> from dialer.engine.actions import DialLead
    >>> async def main():
    ...     runtime = AsyncRuntime(Engine(make_policy("progressive"), ListLeads([])))
    ...     dials = []
    ...     runtime.on(DialLead, dials.append)
    ...     runtime.submit(ev.AgentLoggedIn, agent_id="alice")
    ...     runtime.submit(ev.AgentReady, agent_id="alice")
    ...     runtime.close()
    ...     return dials
    >>> asyncio.run(main())
    []
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dialer.engine import events as ev
from dialer.engine.actions import Action
from dialer.engine.core import Engine
from dialer.errors import DialerError
from dialer.live.clocks import Cancellable, Clock, WallClock

log = logging.getLogger("dialer.live")


class RuntimeClosed(DialerError, RuntimeError):
    """An event was fed to a runtime after :meth:`AsyncRuntime.close`: the library's own error type, and still a
    ``RuntimeError`` for drivers that catch that."""


A = TypeVar("A", bound=Action)
E = TypeVar("E", bound=ev.Event)
Handler = Callable[[Any], Awaitable[None] | None]
Observer = Callable[[ev.Event, list[Action]], None]

_WALL_CLOCK = WallClock()


class AsyncRuntime:
    """Drive ``engine`` on the running asyncio loop.

    ``on(ActionType, handler)`` routes each action of that type to ``handler`` (a coroutine function is scheduled
    as a task); ``observe(callback)`` sees every event with the actions it caused (for the event bus, logs, metrics).
    A handler that raises is logged and does not stop the runtime: the driver is expected to report the failure as
    an event (``CallFailed`` with ``NETWORK``), which keeps the call's record.

    ``clock`` stamps events: the wall clock by default (:class:`~dialer.live.clocks.WallClock`). A
    :class:`~dialer.live.clocks.Clock` object also arms the engine's timers, on its own time line, so timers and
    events stay in one order whatever the clock's pace: a :class:`~dialer.live.clocks.ManualClock` fires them
    when a test advances it (no running loop is needed for that, only for coroutine handlers), an
    :class:`~dialer.live.clocks.AcceleratedClock` on the loop at its scaled delay. Any other callable (``time.time``,
    ``loop.time``) only stamps events, and timers wait out the difference on the loop in real seconds.

    Used as ``async with AsyncRuntime(engine) as runtime:``, the runtime is closed on the way out (see
    :meth:`aclose`), also when the block raises.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = _WALL_CLOCK) -> None:
        self.engine = engine
        self._clock = clock
        self._handlers: dict[type[Action], list[Handler]] = {}
        self._observers: list[Observer] = []
        self._timer: Cancellable | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def clock(self) -> Callable[[], float]:
        """The clock the runtime was given (a :class:`~dialer.live.clocks.Clock`, or a plain callable)."""
        return self._clock

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called: events are refused with :class:`RuntimeClosed`."""
        return self._closed

    def now(self) -> float:
        """The clock's seconds (the wall clock's by default), never earlier than the engine's own time."""
        return max(self._clock(), self.engine.now)

    def on(self, action_type: type[A], handler: Callable[[A], Awaitable[None] | None]) -> None:
        self._handlers.setdefault(action_type, []).append(handler)

    def observe(self, callback: Observer) -> None:
        self._observers.append(callback)

    def submit(self, event_type: type[E], /, **fields: Any) -> list[Action]:
        """Build ``event_type`` stamped with the current time and feed it."""
        return self.feed(event_type(t=self.now(), **fields))

    def feed(self, event: ev.Event) -> list[Action]:
        """Apply ``event`` (raises :class:`~dialer.errors.InvalidTransition`, with nothing changed, if illegal)."""
        if self._closed:
            raise RuntimeClosed("runtime is closed")
        actions = self.engine.handle(event)
        for observer in self._observers:
            try:
                observer(event, actions)
            except Exception:
                log.exception("observer %r failed on %s", observer, type(event).__name__)
        for action in actions:
            self._dispatch(action)
        self._arm()
        return actions

    def _dispatch(self, action: Action) -> None:
        for handler in self._handlers.get(type(action), ()):
            try:
                result = handler(action)
            except Exception:
                log.exception("handler for %s failed", type(action).__name__)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("action handler task failed", exc_info=task.exception())

    def _arm(self) -> None:
        when = self.engine.next_timer()
        if when is None or self._closed:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        if isinstance(self._clock, Clock):
            # The clock arms the timer on its own time line: the engine's deadlines fire in its order, whether the
            # clock is the wall's, runs faster than the loop's, or moves only when a test advances it.
            self._timer_at = when
            self._timer = self._clock.call_at(when, self._fire)
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, when - self._clock())
        self._timer_at = when
        self._timer = loop.call_at(loop.time() + delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        nxt = self.engine.next_timer()
        if nxt is not None and nxt <= self.now():
            self.feed(ev.TimeAdvanced(self.now()))
        else:
            self._arm()

    def close(self) -> None:
        """Stop firing timers; pending handler tasks are cancelled."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()

    async def aclose(self) -> None:
        """:meth:`close`, then wait for the cancelled handler tasks to finish unwinding (their errors are logged
        by the runtime, not raised here)."""
        self.close()
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]  # a handler may close its own runtime
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> AsyncRuntime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
