"""AsyncRuntime on a manual or accelerated clock, and as an async context manager (issue 15, item 5).

An embedder tests their integration the way these tests do: the engine on a :class:`ManualClock`, their fakes
scheduling events on the same clock, and the test advancing it. A whole eight-hour shift then takes well under a
second and gives the same records on every run. Nothing here asserts how long something took in real seconds,
except the ceiling that says the shift is fast.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from dialer_testkit import leads

from dialer import Engine, EngineConfig, make_policy
from dialer.engine import events as ev
from dialer.engine.actions import Action, ConnectCall, DialLead, HangUp, PlayAbandonMessage, RecordCall
from dialer.engine.records import CallRecord, Outcome
from dialer.live import AsyncRuntime
from dialer.live.clocks import AcceleratedClock, Clock, ManualClock, WallClock
from dialer.live.runtime import RuntimeClosed

START = 1_767_603_600.0  # Monday 5 January 2026, 09:00 UTC
SHIFT = 8 * 3600.0
RING_TIMEOUT = 25.0


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


class FakeFloor:
    """A tiny stand-in for the network and the agents' phones, scheduling its events on the runtime's clock.

    Each dialled number is busy, unanswered (the engine's ring timeout ends it), a machine or a person, drawn from
    a seeded generator; people talk to their agent for a few minutes, then the agent wraps up.
    """

    def __init__(self, runtime: AsyncRuntime, clock: Clock, seed: int) -> None:
        self.runtime = runtime
        self.clock = clock
        self.rng = random.Random(seed)
        self.hung_up: set[int] = set()
        runtime.on(DialLead, self.dial)
        runtime.on(ConnectCall, self.connect)
        runtime.on(PlayAbandonMessage, self.message)
        runtime.on(HangUp, lambda a: self.hung_up.add(a.call_id))

    def later(self, delay: float, event_type: type[ev.Event], **fields: Any) -> None:
        call_id = fields.get("call_id")

        def deliver() -> None:
            if call_id is None or call_id not in self.hung_up:  # a real network says nothing more after our BYE
                self.runtime.submit(event_type, **fields)

        self.clock.call_later(delay, deliver)

    def dial(self, action: DialLead) -> None:
        cid, roll = action.call_id, self.rng.random()
        self.later(0.2, ev.CallPlaced, call_id=cid)
        if roll < 0.15:
            self.later(3.0, ev.CallFailed, call_id=cid, reason=ev.FailureReason.BUSY)
            return
        self.later(2.0, ev.CallRinging, call_id=cid)
        if roll < 0.35:
            return  # never answered: the engine's ring timeout hangs up
        if roll < 0.5:
            self.later(2.0 + self.rng.uniform(3, 15), ev.CallAnsweredByMachine, call_id=cid, amd_seconds=2.5)
        else:
            self.later(2.0 + self.rng.uniform(3, 20), ev.CallAnsweredByPerson, call_id=cid)

    def connect(self, action: ConnectCall) -> None:
        talk = self.rng.uniform(30, 400)
        self.later(talk, ev.CallEnded, call_id=action.call_id)
        self.later(talk + self.rng.uniform(5, 30), ev.WrapUpDone, agent_id=action.agent_id)

    def message(self, action: PlayAbandonMessage) -> None:
        self.later(0.5, ev.MessagePlayed, call_id=action.call_id)
        self.later(8.0, ev.CallEnded, call_id=action.call_id)


@dataclass
class Shift:
    records: list[CallRecord]
    seen: list[tuple[str, float, int]] = field(default_factory=list)
    dialed: int = 0
    in_flight_after: int = 0
    clock_end: float = 0.0


def manual_shift(seed: int, agents: int = 5) -> Shift:
    """An eight-hour shift of a small progressive campaign on a manual clock, inside ``async with``."""

    async def main() -> Shift:
        clock = ManualClock(START)
        engine = Engine(
            make_policy("progressive"),
            leads(3000),
            EngineConfig(connect_limit=2.0, ring_timeout=RING_TIMEOUT, max_in_flight=agents * 2),
        )
        records: list[CallRecord] = []
        seen: list[tuple[str, float, int]] = []
        async with AsyncRuntime(engine, clock=clock) as runtime:
            assert runtime.clock is clock
            FakeFloor(runtime, clock, seed)
            runtime.on(RecordCall, lambda a: records.append(a.record))
            runtime.observe(lambda e, acts: seen.append((type(e).__name__, e.t, len(acts))))
            for i in range(agents):
                clock.call_at(START + 60.0 * i, functools.partial(log_in, runtime, f"agent{i}"))
            clock.call_at(START + SHIFT, lambda: runtime.submit(ev.DialingStopped))
            clock.advance_to(START + SHIFT)
            clock.advance(1800.0)  # the last calls and wrap-ups run out; nothing new is dialled
            shift = Shift(records, seen, engine.stats.totals.dials, len(engine.calls), clock())
        assert runtime.closed
        return shift

    def log_in(runtime: AsyncRuntime, agent_id: str) -> None:
        runtime.submit(ev.AgentLoggedIn, agent_id=agent_id)
        runtime.submit(ev.AgentReady, agent_id=agent_id)

    return asyncio.run(main())


def test_a_whole_shift_on_the_manual_clock_takes_no_time_and_is_the_same_every_run() -> None:
    began = time.perf_counter()
    first = manual_shift(seed=7)
    took = time.perf_counter() - began
    assert took < 5.0, f"an eight-hour shift took {took:.1f} s"  # no sleeping: a few hundred ms in practice

    assert first.clock_end == START + SHIFT + 1800.0
    assert first.dialed > 200 and len(first.records) == first.dialed  # one record per call
    assert first.in_flight_after == 0
    outcomes = {r.outcome for r in first.records}
    assert {Outcome.BUSY, Outcome.NO_ANSWER, Outcome.MACHINE} <= outcomes
    assert any(r.connected_at is not None for r in first.records)
    assert all(START <= r.dialed_at <= r.ended_at <= START + SHIFT + 1800.0 for r in first.records)
    assert max(r.dialed_at for r in first.records) <= START + SHIFT  # nothing dialled after the shift ended

    # Timers fire in the engine's order, each at its own deadline: the runtime fed TimeAdvanced exactly at every
    # ring timeout, never at the end of a big step, and no event ever went back in time.
    times = [t for _, t, _ in first.seen]
    assert times == sorted(times)
    ticks = {t for kind, t, _ in first.seen if kind == "TimeAdvanced"}
    no_answer = [r for r in first.records if r.outcome is Outcome.NO_ANSWER]
    assert no_answer and all(r.ended_at in ticks for r in no_answer)
    assert all(r.ended_at - r.dialed_at == pytest.approx(RING_TIMEOUT) for r in no_answer)

    second = manual_shift(seed=7)
    assert second.records == first.records  # deterministic: same inputs, same records
    assert second.seen == first.seen
    assert manual_shift(seed=8).records != first.records  # and the fakes' seed does matter


def test_the_manual_clock_fires_a_connect_limit_before_a_later_event_and_not_before_its_deadline() -> None:
    async def main() -> None:
        clock = ManualClock(0.0)
        engine = Engine(make_policy("progressive"), leads(5), EngineConfig(connect_limit=2.0))
        async with AsyncRuntime(engine, clock=clock) as runtime:
            got: list[tuple[float, Action]] = []
            for kind in (DialLead, ConnectCall, PlayAbandonMessage):
                runtime.on(kind, lambda a: got.append((clock(), a)))
            runtime.submit(ev.AgentLoggedIn, agent_id="a")
            runtime.submit(ev.AgentReady, agent_id="a")
            (dial,) = [a for _, a in got if isinstance(a, DialLead)]
            runtime.submit(ev.AgentPaused, agent_id="a")  # the agent steps away: nobody for the person
            clock.call_at(10.0, lambda: runtime.submit(ev.CallAnsweredByPerson, call_id=dial.call_id))
            clock.call_at(12.5, lambda: runtime.submit(ev.AgentReady, agent_id="a"))
            clock.advance_to(11.999)
            assert not any(isinstance(a, PlayAbandonMessage) for _, a in got)  # not a moment early
            clock.advance(60.0)
            (abandoned,) = [(t, a) for t, a in got if isinstance(a, PlayAbandonMessage)]
            assert abandoned == (12.0, PlayAbandonMessage(dial.call_id))  # at its deadline, before 12.5's event
            assert not any(isinstance(a, ConnectCall) for _, a in got)
            assert clock() == 71.999

    run(main)


def test_a_manual_clock_runs_due_timers_in_deadline_order_and_refuses_to_go_back() -> None:
    clock = ManualClock(5.0)
    fired: list[tuple[str, float]] = []

    def chain() -> None:
        fired.append(("chain", clock()))
        clock.call_later(1.0, lambda: fired.append(("chained", clock())))  # due within the same advance

    clock.call_at(9.0, lambda: fired.append(("late", clock())))
    clock.call_at(7.0, chain)
    clock.call_at(7.0, lambda: fired.append(("tie", clock())))
    cancelled = clock.call_at(6.0, lambda: fired.append(("cancelled", clock())))
    cancelled.cancel()
    assert clock.next_at() == 7.0
    clock.advance(3.5)
    assert fired == [("chain", 7.0), ("tie", 7.0), ("chained", 8.0)]
    assert clock() == 8.5 and clock.next_at() == 9.0
    with pytest.raises(ValueError):
        clock.advance_to(8.0)
    with pytest.raises(ValueError):
        clock.advance(-1.0)
    clock.call_at(10.0, lambda: clock.advance(1.0))
    with pytest.raises(RuntimeError):
        clock.advance(5.0)  # re-entering advance from a callback is a test bug, not a silent reordering


def test_the_accelerated_clock_runs_ring_timeouts_at_a_hundredth_of_their_time() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock = AcceleratedClock(100, start=START)
        assert clock.factor == 100.0 and START <= clock() < START + 100.0

        # The runtime's timers are real loop timers at 1/factor of the clock's delay.
        handle: Any = clock.call_later(30.0, lambda: None)
        assert handle.when() - loop.time() == pytest.approx(0.3, abs=0.01)
        handle.cancel()

        engine = Engine(make_policy("progressive"), leads(3), EngineConfig(ring_timeout=20.0))
        dialed: dict[int, float] = {}
        ended: dict[int, tuple[float, CallRecord]] = {}
        async with AsyncRuntime(engine, clock=clock) as runtime:
            runtime.on(DialLead, lambda a: dialed.__setitem__(a.call_id, clock()))
            runtime.on(RecordCall, lambda a: ended.__setitem__(a.record.call_id, (clock(), a.record)))
            runtime.submit(ev.AgentLoggedIn, agent_id="a")
            runtime.submit(ev.AgentReady, agent_id="a")  # nobody ever answers: three ring timeouts in a row
            deadline = loop.time() + 10.0  # 60 s of ringing would take a minute on the wall clock
            while len(ended) < 3:
                assert loop.time() < deadline, "ring timeouts did not fire at the accelerated pace"
                await asyncio.sleep(0.01)
        assert sorted(ended) == sorted(dialed) and len(ended) == 3
        for cid, (read_at, record) in ended.items():
            assert record.outcome is Outcome.NO_ANSWER
            assert record.ended_at == pytest.approx(dialed[cid] + 20.0)
            # On the clock's own readings: never before the deadline, and late by no more than loop jitter x 100.
            assert dialed[cid] + 20.0 <= read_at < dialed[cid] + 20.0 + 15.0

    run(main)


def test_accelerated_clock_readings_scale_its_base_and_bad_factors_are_refused() -> None:
    now = [1000.0]
    clock = AcceleratedClock(60, start=0.0, base=lambda: now[0])
    assert clock() == 0.0
    now[0] += 1.5
    assert clock() == pytest.approx(90.0)
    for bad in (0, -2, float("inf"), float("nan"), True):
        with pytest.raises(ValueError):
            AcceleratedClock(bad)
    assert isinstance(AcceleratedClock(2), Clock) and isinstance(WallClock(), Clock)


def test_async_with_closes_the_runtime_its_timer_and_its_tasks() -> None:
    async def main() -> None:
        clock = ManualClock(0.0)
        engine = Engine(make_policy("progressive"), leads(5), EngineConfig(ring_timeout=30.0))
        started = asyncio.Event()
        stopped: list[str] = []

        async def place(action: DialLead) -> None:
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                stopped.append("cancelled")
                raise

        async with AsyncRuntime(engine, clock=clock) as runtime:
            runtime.on(DialLead, place)
            runtime.submit(ev.AgentLoggedIn, agent_id="a")
            runtime.submit(ev.AgentReady, agent_id="a")
            await started.wait()
            assert clock.next_at() == 30.0  # the ring timeout, armed on the manual clock
        assert runtime.closed
        assert stopped == ["cancelled"]  # the handler task was cancelled and awaited on the way out
        assert clock.next_at() is None  # the runtime's timer was cancelled
        clock.advance(60.0)
        assert engine.stats.totals.dials == 1 and len(engine.calls) == 1  # nothing fired after close
        with pytest.raises(RuntimeClosed):
            runtime.feed(ev.TimeAdvanced(clock()))
        with pytest.raises(RuntimeClosed):
            runtime.submit(ev.AgentReady, agent_id="a")

    run(main)


def test_async_with_closes_the_runtime_when_the_block_raises() -> None:
    async def main() -> None:
        runtime = AsyncRuntime(Engine(make_policy("progressive"), leads(0)))
        assert isinstance(runtime.clock, WallClock)
        with pytest.raises(KeyError):
            async with runtime:
                runtime.submit(ev.AgentLoggedIn, agent_id="a")
                raise KeyError("embedder bug")
        assert runtime.closed
        with pytest.raises(RuntimeClosed):
            runtime.submit(ev.AgentReady, agent_id="a")

    run(main)


def test_a_handler_may_close_its_own_runtime() -> None:
    async def main() -> None:
        runtime = AsyncRuntime(Engine(make_policy("progressive"), leads(5)), clock=ManualClock(0.0))
        done = asyncio.Event()

        async def stop_on_first_dial(action: DialLead) -> None:
            await runtime.aclose()  # does not wait for itself
            done.set()

        runtime.on(DialLead, stop_on_first_dial)
        runtime.submit(ev.AgentLoggedIn, agent_id="a")
        runtime.submit(ev.AgentReady, agent_id="a")
        await asyncio.wait_for(done.wait(), 5.0)
        assert runtime.closed

    run(main)
