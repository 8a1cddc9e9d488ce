"""The remote dial worker: takes dial offers from the bus and runs them on a call placer.

The dispatcher side of scale-out is :mod:`dialer.distributed.dispatcher`; the overview of both is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dialer.bus.client import MqttBus
from dialer.bus.schema import SchemaError, decode
from dialer.errors import ConfigError

log = logging.getLogger("dialer.distributed.worker")


#: Report a call's progress: ``report(kind, call_id, reason=None, answered_at=None)``; kinds as in ``work.event``.
Report = Callable[..., None]


@dataclass(frozen=True, slots=True)
class DialRequest:
    call_id: int
    lead_id: str
    phone: str
    ring_timeout: float | None
    deadline: float
    fields: dict[str, Any] = field(default_factory=dict)


class CallPlacer(Protocol):
    """The SIP side of a worker: what a call placer implements to be driven over the bus.

    ``place`` starts a call and reports through ``report`` (``placed`` with ``at`` when its INVITE left,
    ``not_placed`` with a reason when none ever did, ``ringing``, ``answered_person``, ``answered_machine``,
    ``failed`` with a reason, ``ended``; ``message`` with ``at`` and ``dtmf`` with the digit as ``reason``). Every
    call must end with exactly one ``not_placed``, ``failed`` or ``ended`` report, also after ``hangup``: that
    report is what frees the
    worker's slot, because a hung-up call holds its line until the far end confirms. ``connect`` bridges the call
    to an agent (``agent_uri`` when the dispatcher knows it); when the agent cannot be reached it reports
    ``bridge_failed`` (``reason``: the SIP status, ``"0"`` if none) and keeps the person on the line, because the
    dispatcher answers with ``play_message``: a person who reached no agent is an abandoned call. The other
    methods act on a call it placed.
    """

    async def place(self, dial: DialRequest, report: Report) -> None: ...

    async def hangup(self, call_id: int, reason: str) -> None: ...

    async def connect(self, call_id: int, agent_id: str, agent_uri: str | None) -> None: ...

    async def play_message(self, call_id: int) -> None: ...


class DialWorker:
    """Take dial requests from the shared subscription and run them on ``placer``, at most ``capacity`` at once.

    ``capacity`` may change while running (:meth:`set_capacity`: the SIP driver lost a process or the trunk is
    congested); the worker announces its free capacity in its retained status after every change, which is what
    the dispatcher paces on. ``hangup_grace``: seconds after a hang-up after which the slot is freed even if the
    placer never confirmed the call's end (a placer bug must not shrink the pool for good).
    """

    def __init__(
        self,
        bus: MqttBus,
        placer: CallPlacer,
        capacity: int,
        *,
        group: str = "workers",
        hangup_grace: float = 10.0,
    ) -> None:
        if capacity < 0:
            raise ConfigError("worker.capacity", "must be >= 0")
        self.bus = bus
        self.placer = placer
        self.capacity = capacity
        self.hangup_grace = hangup_grace
        self.worker_id = bus.source
        self.active: set[int] = set()
        self.accepted = 0
        self.rejected = 0
        self.closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        bus.role = "worker"
        bus.capacity = capacity
        bus.subscribe(bus.topics.worker_cmd(self.worker_id), self._on_command)
        bus.subscribe(bus.topics.dial_shared(group), self._on_dial)

    @property
    def free(self) -> int:
        return 0 if self.closing else max(0, self.capacity - len(self.active))

    def set_capacity(self, capacity: int) -> None:
        """The placer can now hold ``capacity`` calls at once (in-flight calls are not touched)."""
        self.capacity = max(0, capacity)
        self._announce()

    def _announce(self) -> None:
        if self.free != self.bus.capacity:
            self.bus.set_capacity(self.free)

    def report(
        self,
        kind: str,
        call_id: int,
        *,
        reason: str | None = None,
        answered_at: float | None = None,
        at: float | None = None,
    ) -> None:
        self.bus.publish(
            "work.event",
            topic=self.bus.topics.worker_event(self.worker_id),
            call_id=call_id,
            kind=kind,
            reason=reason,
            answered_at=answered_at,
            at=at,
        )
        if kind in ("failed", "ended", "not_placed"):
            self._release(call_id)

    def _release(self, call_id: int) -> None:
        if call_id in self.active:
            self.active.discard(call_id)
            self._announce()
            if not self.active:
                self._idle.set()

    def _reject(self, call_id: int, reason: str) -> None:
        self.rejected += 1
        self.bus.publish("work.event", topic=self.bus.topics.worker_event(self.worker_id), call_id=call_id,
                         kind="rejected", reason=reason)  # fmt: skip

    def _on_dial(self, topic: str, payload: bytes, properties: Any) -> None:
        try:
            m = decode(payload, expect=frozenset({"work.dial"}))
        except SchemaError as exc:
            log.warning("dropped a bad dial request: %s", exc)
            return
        d = m.data
        call_id = d["call_id"]
        if d["deadline"] < time.time():
            self._reject(call_id, "expired")
            return
        if self.closing:
            self._reject(call_id, "closing")
            return
        if len(self.active) >= self.capacity or call_id in self.active:
            self._reject(call_id, "full")
            return
        self.active.add(call_id)
        self._idle.clear()
        self.accepted += 1
        self.report("accepted", call_id)
        self._announce()
        dial = DialRequest(call_id, d["lead_id"], d["phone"], d.get("ring_timeout"), d["deadline"], d.get("fields", {}))
        self._spawn(self._place(dial))

    async def _place(self, dial: DialRequest) -> None:
        try:
            await self.placer.place(dial, self.report)
        except Exception:
            # The driver broke, not the call: report it failed so the dispatcher closes it and the lead returns.
            log.exception("placing call %d failed", dial.call_id)
            if dial.call_id in self.active:
                self.report("failed", dial.call_id, reason="network")

    def _on_command(self, topic: str, payload: bytes, properties: Any) -> None:
        try:
            m = decode(payload, expect=frozenset({"work.dial", "work.hangup", "work.connect", "work.play_message"}))
        except SchemaError as exc:
            log.warning("dropped a bad worker command: %s", exc)
            return
        if m.type == "work.dial":  # offered to this worker by name, after another one was full
            self._on_dial(topic, payload, properties)
            return
        call_id = m.data["call_id"]
        if m.type == "work.hangup":
            self._hangup(call_id, m.data["reason"])
        elif m.type == "work.connect":
            self._spawn(self.placer.connect(call_id, m.data["agent_id"], m.data.get("agent_uri")))
        else:
            self._spawn(self.placer.play_message(call_id))

    def _hangup(self, call_id: int, reason: str) -> None:
        self._spawn(self.placer.hangup(call_id, reason))
        if call_id in self.active:
            asyncio.get_running_loop().call_later(self.hangup_grace, self._hangup_overdue, call_id)

    def _hangup_overdue(self, call_id: int) -> None:
        if call_id in self.active:
            log.warning("call %d: no end reported %.0f s after hang-up; freeing its slot", call_id, self.hangup_grace)
            self.report("failed", call_id, reason="network")

    async def close(self, timeout: float = 10.0) -> bool:
        """Take no more dials, hang up the calls in progress and wait (up to ``timeout``) until each has ended.

        Each call's end is reported like any other, so the dispatcher closes it at once instead of waiting for
        this worker's last will. ``False`` if some call had not ended in time.
        """
        self.closing = True
        self._announce()
        for call_id in sorted(self.active):
            self._hangup(call_id, "shutdown")
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            for call_id in sorted(self.active):
                self.report("failed", call_id, reason="network")
            return False
        return True

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class StandInPlacer:
    """A stand-in for the SIP driver (tests and demos only): plays out the lead's ``outcome`` field.

    Outcomes: a failure reason (``busy``, ``no_answer``, …) fails after ringing; ``person`` answers and ends after
    ``talk`` seconds; ``machine`` answers as a machine; ``hold`` answers and stays up until hung up; ``ring``
    rings until hung up. A hang-up ends the call with the report a real line would give: ``ended`` once
    answered, ``failed`` (``no_answer``, our CANCEL) before.
    """

    def __init__(self, ring: float = 0.02) -> None:
        self.ring = ring
        self._calls: dict[int, asyncio.Task[None]] = {}
        self._answered: set[int] = set()
        self._reports: dict[int, Report] = {}

    async def place(self, dial: DialRequest, report: Report) -> None:
        task = asyncio.ensure_future(self._play(dial, report))
        self._calls[dial.call_id] = task
        self._reports[dial.call_id] = report
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._calls.pop(dial.call_id, None)

    async def _play(self, dial: DialRequest, report: Report) -> None:
        outcome = str(dial.fields.get("outcome", "busy"))
        call_id = dial.call_id
        await asyncio.sleep(self.ring)
        report("ringing", call_id)
        await asyncio.sleep(self.ring)
        if outcome in ("person", "hold"):
            self._answered.add(call_id)
            report("answered_person", call_id, answered_at=time.time())
            if outcome == "hold":
                await asyncio.Event().wait()
            await asyncio.sleep(float(dial.fields.get("talk", 0.05)))
            self._final(call_id, "ended")
        elif outcome == "machine":
            self._answered.add(call_id)
            report("answered_machine", call_id)
            await asyncio.Event().wait()
        elif outcome == "ring":
            await asyncio.Event().wait()
        else:
            self._final(call_id, "failed", outcome)

    def _final(self, call_id: int, kind: str, reason: str | None = None) -> None:
        report = self._reports.pop(call_id, None)
        self._answered.discard(call_id)
        if report is not None:
            report(kind, call_id, reason=reason)

    async def hangup(self, call_id: int, reason: str) -> None:
        task = self._calls.get(call_id)
        if task is None or task.done():
            return
        task.cancel()
        if call_id in self._answered:
            self._final(call_id, "ended")
        else:
            self._final(call_id, "failed", "no_answer")

    async def connect(self, call_id: int, agent_id: str, agent_uri: str | None) -> None:
        return None

    async def play_message(self, call_id: int) -> None:
        report = self._reports.get(call_id)
        if report is not None:
            report("message", call_id)
