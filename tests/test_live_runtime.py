"""The asyncio runtime: the engine's timers fire on the running loop, handlers get actions, observers see events.

The runtime's clock is the loop's own monotonic clock here, so engine time and loop time agree exactly and the
connect limit and policy cadences can be made a few hundredths of a second long. No test asserts how long anything
took; they assert what happened, and each waits on a condition with a generous ceiling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from dialer_testkit import Scripted, leads

from dialer.engine import events as ev
from dialer.engine.actions import Action, ConnectCall, DialLead, PlayAbandonMessage, RecordCall
from dialer.engine.core import Engine, EngineConfig
from dialer.errors import DialerError, InvalidTransition
from dialer.live import AsyncRuntime
from dialer.pacing import make_policy
from dialer.pacing.vicidial import VicidialAdaptive

LIMIT = 0.05


async def until(condition: Callable[[], bool], ceiling: float = 5.0) -> None:
    """Yield to the loop until ``condition`` holds; fail (rather than hang) after ``ceiling`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ceiling
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


class Setup:
    """A runtime on the loop clock with a scripted policy, recording what handlers and observers saw."""

    def __init__(self, *, connect_limit: float = LIMIT) -> None:
        loop = asyncio.get_running_loop()
        self.policy = Scripted()
        self.leads = leads(20)
        self.engine = Engine(self.policy, self.leads, EngineConfig(connect_limit=connect_limit))
        self.runtime = AsyncRuntime(self.engine, clock=loop.time)
        self.actions: list[Action] = []
        self.seen: list[tuple[ev.Event, list[Action]]] = []
        for kind in (DialLead, ConnectCall, PlayAbandonMessage, RecordCall):
            self.runtime.on(kind, self.actions.append)
        self.runtime.observe(lambda event, actions: self.seen.append((event, list(actions))))

    def dial(self) -> int:
        self.policy.pending = 1
        (action,) = self.runtime.submit(ev.TimeAdvanced)
        assert isinstance(action, DialLead)
        return action.call_id

    def of(self, kind: type[Any]) -> list[Any]:
        return [a for a in self.actions if isinstance(a, kind)]


def test_connect_limit_fires_on_the_loop_without_any_event() -> None:
    async def main() -> None:
        s = Setup()
        s.runtime.submit(ev.AgentLoggedIn, agent_id="a")
        cid = s.dial()
        answered = s.runtime.feed(ev.CallAnsweredByPerson(s.runtime.now(), cid))
        assert answered == []  # nobody ready: the person waits
        await until(lambda: bool(s.of(PlayAbandonMessage)))
        assert s.of(PlayAbandonMessage) == [PlayAbandonMessage(cid)]
        event, actions = s.seen[-1]
        assert isinstance(event, ev.TimeAdvanced) and actions == [PlayAbandonMessage(cid)]
        assert s.engine.stats.totals.abandoned == 1
        s.runtime.submit(ev.CallEnded, call_id=cid)
        (record,) = [a.record for a in s.of(RecordCall)]
        assert record.abandoned and record.wait == pytest.approx(LIMIT)  # stamped at the deadline itself
        s.runtime.close()

    run(main)


def test_a_connect_in_time_leaves_no_abandonment_and_no_spurious_event() -> None:
    async def main() -> None:
        s = Setup(connect_limit=0.2)
        s.runtime.submit(ev.AgentLoggedIn, agent_id="a")
        cid = s.dial()
        s.runtime.submit(ev.CallAnsweredByPerson, call_id=cid)
        s.runtime.submit(ev.AgentReady, agent_id="a")
        assert s.of(ConnectCall) == [ConnectCall(cid, "a")]
        events_before = len(s.seen)
        await asyncio.sleep(0.4)  # past the (now dead) connect-limit deadline
        assert s.of(PlayAbandonMessage) == []
        assert len(s.seen) == events_before  # the stale timer woke the runtime but fed nothing
        s.runtime.close()

    run(main)


def test_async_and_sync_handlers_get_actions_and_failures_do_not_stop_the_runtime(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        s = Setup()
        got: list[int] = []

        async def place_call(action: DialLead) -> None:
            await asyncio.sleep(0)
            got.append(action.call_id)

        def broken(action: DialLead) -> None:
            raise OSError("trunk down")

        async def broken_async(action: DialLead) -> None:
            raise OSError("trunk down, later")

        s.runtime.on(DialLead, place_call)
        s.runtime.on(DialLead, broken)
        s.runtime.on(DialLead, broken_async)

        def broken_observer(event: ev.Event, actions: list[Action]) -> None:
            raise ZeroDivisionError("observer bug")

        s.runtime.observe(broken_observer)
        with caplog.at_level(logging.ERROR, logger="dialer.live"):
            cid = s.dial()
            await until(lambda: got == [cid])
            await until(lambda: any("task failed" in r.getMessage() for r in caplog.records))
        assert s.of(DialLead)[0].call_id == cid  # the sync recorder after the broken handlers still ran
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert "handler for DialLead failed" in messages and "observer" in messages
        # The driver reports the failure as an event; the call's record is kept.
        s.runtime.submit(ev.CallFailed, call_id=cid, reason=ev.FailureReason.NETWORK)
        assert [a.record.outcome.value for a in s.of(RecordCall)] == ["network"]
        s.runtime.close()

    run(main)


def test_observers_see_every_event_with_its_actions_in_order() -> None:
    async def main() -> None:
        s = Setup()
        s.runtime.submit(ev.AgentLoggedIn, agent_id="a")
        s.runtime.submit(ev.AgentReady, agent_id="a")
        cid = s.dial()
        s.runtime.submit(ev.CallAnsweredByPerson, call_id=cid)
        kinds = [type(e).__name__ for e, _ in s.seen]
        assert kinds == ["AgentLoggedIn", "AgentReady", "TimeAdvanced", "CallAnsweredByPerson"]
        assert s.seen[-1][1] == [ConnectCall(cid, "a")]
        times = [e.t for e, _ in s.seen]
        assert times == sorted(times)
        s.runtime.close()

    run(main)


def test_policy_wakeups_drive_dialing_on_the_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        policy = VicidialAdaptive("hard_limit", sample_interval=0.01, update_interval=0.05, dial_interval=0.03)
        engine = Engine(policy, leads(200))
        runtime = AsyncRuntime(engine, clock=loop.time)
        ticks: list[float] = []
        dials: list[DialLead] = []
        runtime.on(DialLead, dials.append)
        runtime.observe(lambda e, a: ticks.append(e.t) if isinstance(e, ev.TimeAdvanced) else None)
        runtime.submit(ev.AgentLoggedIn, agent_id="a")
        runtime.submit(ev.AgentReady, agent_id="a")
        await until(lambda: len(dials) >= 1 and len(ticks) >= 10)
        assert ticks == sorted(ticks)
        runtime.close()
        n = len(ticks)
        await asyncio.sleep(0.1)
        assert len(ticks) == n  # closed: no more timer events

    run(main)


def test_the_clock_never_goes_backwards_for_the_engine() -> None:
    async def main() -> None:
        readings = iter([100.0, 50.0, 49.0])
        engine = Engine(make_policy("progressive"), leads(0))
        runtime = AsyncRuntime(engine, clock=lambda: next(readings))
        runtime.submit(ev.AgentLoggedIn, agent_id="a")
        runtime.submit(ev.AgentReady, agent_id="a")  # the system clock was stepped back
        assert engine.now == 100.0
        runtime.close()

    run(main)


def test_illegal_events_raise_and_a_closed_runtime_refuses_events() -> None:
    async def main() -> None:
        s = Setup()
        with pytest.raises(InvalidTransition):
            s.runtime.submit(ev.AgentReady, agent_id="ghost")
        assert s.seen == []  # observers hear only of events that happened
        s.runtime.submit(ev.AgentLoggedIn, agent_id="a")
        cid = s.dial()
        s.runtime.submit(ev.CallAnsweredByPerson, call_id=cid)
        s.runtime.close()
        await asyncio.sleep(3 * LIMIT)
        assert s.of(PlayAbandonMessage) == []  # the timer died with the runtime
        with pytest.raises(DialerError) as info:
            s.runtime.submit(ev.TimeAdvanced)
        assert isinstance(info.value, RuntimeError)  # drivers written against the first version catch that

    run(main)
