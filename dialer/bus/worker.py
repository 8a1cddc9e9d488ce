"""Scale-out: SIP worker processes take dial requests over MQTT; one dispatcher keeps the campaign's books.

The pacing core (engine, policy, abandonment ledger) must run in exactly one process, because abandonment is
counted per campaign; placing calls is what needs more machines. So:

* The :class:`Dispatcher` runs next to the engine. It turns ``DialLead`` actions into ``work.dial`` messages on
  ``work/dial``, which workers take through the MQTT 5 shared subscription ``$share/<group>/…/work/dial`` (the
  broker gives each message to one member of the group). It routes hang-up, bridge and message actions to the
  worker that accepted the call, feeds the workers' reports back into the engine as events, and tracks every
  worker's announced capacity from its retained status.
* A :class:`Worker` accepts dials up to its capacity, hands them to a :class:`CallPlacer` (the SIP driver), and
  reports what happens as ``work.event`` messages.

Failure accounting: a worker that dies is announced by its MQTT last will (``dialer.status`` online false). The
dispatcher then closes each of its calls in the engine: not yet answered -> ``CallFailed(NETWORK)``, answered ->
``CallEnded``. Either way the engine emits the call's record and reports it to the lead source, so no lead is
lost: the source decides about the retry. A dial no worker accepts within ``accept_timeout`` is offered again, and
fails as ``NETWORK`` after ``max_attempts``. Dial requests carry a ``deadline`` and a broker expiry, so a request
that waited out an outage is never placed after the engine has given up on it; a late acceptance of a call the
engine already closed is answered with a hang-up.

:class:`StandInPlacer` is a stand-in for the SIP side only, for tests and demos: it "places" a call by reporting
the outcome named in the lead's ``outcome`` field. It is not a dialer; the SIP driver replaces it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dialer.bus.client import BusConfig, MqttBus
from dialer.bus.schema import SchemaError, decode
from dialer.engine import events as ev
from dialer.engine.actions import ConnectCall, DialLead, HangUp, PlayAbandonMessage, RecordCall
from dialer.engine.state import CallState
from dialer.errors import InvalidTransition
from dialer.live.runtime import AsyncRuntime

log = logging.getLogger("dialer.bus.worker")

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
    """The SIP side of a worker: what the SIP driver implements to be driven over the bus.

    ``place`` starts a call and reports through ``report`` (``ringing``, ``answered_person``, ``answered_machine``,
    ``failed`` with a reason, ``ended``); the other methods act on a call it placed.
    """

    async def place(self, dial: DialRequest, report: Report) -> None: ...

    async def hangup(self, call_id: int, reason: str) -> None: ...

    async def connect(self, call_id: int, agent_id: str) -> None: ...

    async def play_message(self, call_id: int) -> None: ...


class Worker:
    """Take dial requests from the shared subscription and run them on ``placer``, at most ``capacity`` at once."""

    def __init__(self, bus: MqttBus, placer: CallPlacer, capacity: int, *, group: str = "workers") -> None:
        self.bus = bus
        self.placer = placer
        self.capacity = capacity
        self.worker_id = bus.source
        self.active: set[int] = set()
        self.accepted = 0
        self.rejected = 0
        self._tasks: set[asyncio.Task[None]] = set()
        bus.role = "worker"
        bus.capacity = capacity
        bus.subscribe(bus.topics.worker_cmd(self.worker_id), self._on_command)
        bus.subscribe(bus.topics.dial_shared(group), self._on_dial)

    def report(self, kind: str, call_id: int, *, reason: str | None = None, answered_at: float | None = None) -> None:
        self.bus.publish(
            "work.event",
            topic=self.bus.topics.worker_event(self.worker_id),
            call_id=call_id,
            kind=kind,
            reason=reason,
            answered_at=answered_at,
        )
        if kind in ("failed", "ended", "rejected"):
            self._release(call_id)

    def _release(self, call_id: int) -> None:
        if call_id in self.active:
            self.active.discard(call_id)
            self.bus.set_capacity(self.capacity - len(self.active))

    def _on_dial(self, topic: str, payload: bytes, properties: Any) -> None:
        try:
            m = decode(payload, expect=frozenset({"work.dial"}))
        except SchemaError as exc:
            log.warning("dropped a bad dial request: %s", exc)
            return
        d = m.data
        call_id = d["call_id"]
        if d["deadline"] < time.time():
            self.rejected += 1
            self.bus.publish("work.event", topic=self.bus.topics.worker_event(self.worker_id), call_id=call_id,
                             kind="rejected", reason="expired")  # fmt: skip
            return
        if len(self.active) >= self.capacity or call_id in self.active:
            self.rejected += 1
            self.bus.publish("work.event", topic=self.bus.topics.worker_event(self.worker_id), call_id=call_id,
                             kind="rejected", reason="full")  # fmt: skip
            return
        self.active.add(call_id)
        self.accepted += 1
        self.report("accepted", call_id)
        self.bus.set_capacity(self.capacity - len(self.active))
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
            m = decode(payload, expect=frozenset({"work.hangup", "work.connect", "work.play_message"}))
        except SchemaError as exc:
            log.warning("dropped a bad worker command: %s", exc)
            return
        call_id = m.data["call_id"]
        if m.type == "work.hangup":
            self._spawn(self.placer.hangup(call_id, m.data["reason"]))
            self._release(call_id)
        elif m.type == "work.connect":
            self._spawn(self.placer.connect(call_id, m.data["agent_id"]))
        else:
            self._spawn(self.placer.play_message(call_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class StandInPlacer:
    """A stand-in for the SIP driver (tests and demos only): plays out the lead's ``outcome`` field.

    Outcomes: a failure reason (``busy``, ``no_answer``, …) fails after ringing; ``person`` answers and ends after
    ``talk`` seconds; ``machine`` answers as a machine; ``hold`` answers and stays up until hung up; ``ring``
    rings until hung up.
    """

    def __init__(self, ring: float = 0.02) -> None:
        self.ring = ring
        self._calls: dict[int, asyncio.Task[None]] = {}

    async def place(self, dial: DialRequest, report: Report) -> None:
        task = asyncio.ensure_future(self._play(dial, report))
        self._calls[dial.call_id] = task
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._calls.pop(dial.call_id, None)

    async def _play(self, dial: DialRequest, report: Report) -> None:
        outcome = str(dial.fields.get("outcome", "busy"))
        await asyncio.sleep(self.ring)
        report("ringing", dial.call_id)
        await asyncio.sleep(self.ring)
        if outcome in ("person", "hold"):
            report("answered_person", dial.call_id, answered_at=time.time())
            if outcome == "hold":
                await asyncio.Event().wait()
            await asyncio.sleep(float(dial.fields.get("talk", 0.05)))
            report("ended", dial.call_id)
        elif outcome == "machine":
            report("answered_machine", dial.call_id)
            await asyncio.Event().wait()
        elif outcome == "ring":
            await asyncio.Event().wait()
        else:
            report("failed", dial.call_id, reason=outcome)

    async def hangup(self, call_id: int, reason: str) -> None:
        task = self._calls.get(call_id)
        if task is not None:
            task.cancel()

    async def connect(self, call_id: int, agent_id: str) -> None:
        return None

    async def play_message(self, call_id: int) -> None:
        return None


@dataclass(slots=True)
class _WorkerInfo:
    capacity: int = 0
    online: bool = False
    calls: set[int] = field(default_factory=set)
    accepted: int = 0


@dataclass(slots=True)
class _Pending:
    dial: DialLead
    dialed_at: float
    worker: str | None = None
    attempts: int = 0
    timer: asyncio.TimerHandle | None = None
    closed: bool = False


class Dispatcher:
    """The campaign side of scale-out (see the module docstring): dials out to workers, their reports in."""

    def __init__(
        self,
        runtime: AsyncRuntime,
        bus: MqttBus,
        *,
        accept_timeout: float = 5.0,
        max_attempts: int = 3,
        dial_ttl: int = 10,
    ) -> None:
        self.runtime = runtime
        self.bus = bus
        self.accept_timeout = accept_timeout
        self.max_attempts = max_attempts
        self.dial_ttl = dial_ttl
        self.workers: dict[str, _WorkerInfo] = {}
        self.calls: dict[int, _Pending] = {}
        self._waiting: list[int] = []  # dials held until some worker has room
        self.lost_worker_calls = 0
        runtime.on(DialLead, self._dial)
        runtime.on(HangUp, self._hangup)
        runtime.on(ConnectCall, self._connect)
        runtime.on(PlayAbandonMessage, self._message)
        runtime.on(RecordCall, self._recorded)
        bus.subscribe(bus.topics.worker_events, self._on_event)
        bus.subscribe(bus.topics.statuses, self._on_status)

    @property
    def free_capacity(self) -> int:
        """Calls the online workers can still take, minus dials offered and not yet accepted."""
        free = sum(max(0, w.capacity) for w in self.workers.values() if w.online)
        unassigned = sum(1 for c in self.calls.values() if c.worker is None and c.attempts > 0 and not c.closed)
        return max(0, free - unassigned)

    # -- engine actions -> workers ---------------------------------------------------------------------

    def _dial(self, action: DialLead) -> None:
        self.calls[action.call_id] = _Pending(action, self.runtime.now())
        self._offer(action.call_id)

    def _offer(self, call_id: int) -> None:
        call = self.calls.get(call_id)
        if call is None or call.closed:
            return
        if self.free_capacity <= 0:
            if call_id not in self._waiting:
                self._waiting.append(call_id)
            return
        call.attempts += 1
        lead = call.dial.lead
        fields = {k: v for k, v in lead.fields.items() if isinstance(v, str | int | float | bool)}
        self.bus.publish(
            "work.dial",
            topic=self.bus.topics.dial,
            expiry=self.dial_ttl,
            call_id=call_id,
            lead_id=lead.lead_id,
            phone=lead.phone,
            ring_timeout=call.dial.ring_timeout,
            deadline=time.time() + self.dial_ttl,
            fields=fields,
        )
        loop = asyncio.get_running_loop()
        call.timer = loop.call_later(self.accept_timeout, self._accept_expired, call_id, call.attempts)

    def _accept_expired(self, call_id: int, attempt: int) -> None:
        call = self.calls.get(call_id)
        if call is None or call.closed or call.worker is not None or call.attempts != attempt:
            return
        self._retry(call_id, "no worker accepted the dial")

    def _retry(self, call_id: int, why: str) -> None:
        call = self.calls[call_id]
        if call.attempts >= self.max_attempts:
            log.warning("call %d: %s after %d attempts; failing it", call_id, why, call.attempts)
            self._feed(ev.CallFailed(self.runtime.now(), call_id, ev.FailureReason.NETWORK))
        else:
            self._offer(call_id)

    def _to_worker(self, call_id: int, type_: str, **data: Any) -> None:
        call = self.calls.get(call_id)
        if call is None or call.worker is None:
            return
        self.bus.publish(type_, topic=self.bus.topics.worker_cmd(call.worker), call_id=call_id, **data)

    def _hangup(self, action: HangUp) -> None:
        self._to_worker(action.call_id, "work.hangup", reason=action.reason)

    def _connect(self, action: ConnectCall) -> None:
        self._to_worker(action.call_id, "work.connect", agent_id=action.agent_id)

    def _message(self, action: PlayAbandonMessage) -> None:
        self._to_worker(action.call_id, "work.play_message")

    def _recorded(self, action: RecordCall) -> None:
        call = self.calls.pop(action.record.call_id, None)
        if call is None:
            return
        call.closed = True
        if call.timer is not None:
            call.timer.cancel()
        if call.worker is not None:
            info = self.workers.get(call.worker)
            if info is not None:
                info.calls.discard(action.record.call_id)

    # -- workers -> engine -----------------------------------------------------------------------------

    def _feed(self, event: ev.Event) -> None:
        try:
            self.runtime.feed(event)
        except InvalidTransition as exc:
            # A report overtaken by the engine (ring timeout fired first, call already closed): harmless.
            log.debug("stale worker report: %s", exc)

    def _on_event(self, topic: str, payload: bytes, properties: Any) -> None:
        try:
            m = decode(payload, expect=frozenset({"work.event"}))
        except SchemaError as exc:
            log.warning("dropped a bad worker report: %s", exc)
            return
        worker_id = m.source
        d = m.data
        call_id, kind = d["call_id"], d["kind"]
        call = self.calls.get(call_id)
        if call is None or call.closed:
            if kind == "accepted":  # accepted after we gave up on it: make sure it does not ring on
                self.bus.publish("work.hangup", topic=self.bus.topics.worker_cmd(worker_id), call_id=call_id,
                                 reason="cancelled")  # fmt: skip
            return
        if kind == "accepted":
            if call.worker is not None and call.worker != worker_id:
                self.bus.publish("work.hangup", topic=self.bus.topics.worker_cmd(worker_id), call_id=call_id,
                                 reason="duplicate")  # fmt: skip
                return
            call.worker = worker_id
            if call.timer is not None:
                call.timer.cancel()
            info = self.workers.setdefault(worker_id, _WorkerInfo())
            info.calls.add(call_id)
            info.accepted += 1
            return
        if call.worker is not None and call.worker != worker_id:
            return  # not the owner: ignore
        if kind == "rejected":
            if call.worker is None:
                self._retry(call_id, f"rejected by {worker_id} ({d.get('reason')})")
            return
        now = self.runtime.now()
        if kind == "ringing":
            self._feed(ev.CallRinging(now, call_id))
        elif kind == "answered_person":
            at = d.get("answered_at")
            answered_at = None if at is None else min(now, max(call.dialed_at, float(at)))  # other clocks drift
            self._feed(ev.CallAnsweredByPerson(now, call_id, answered_at))
        elif kind == "answered_machine":
            self._feed(ev.CallAnsweredByMachine(now, call_id))
        elif kind == "failed":
            reason = d.get("reason") or "network"
            try:
                failure = ev.FailureReason(reason)
            except ValueError:
                failure = ev.FailureReason.NETWORK
            self._feed(ev.CallFailed(now, call_id, failure))
        elif kind == "ended":
            self._feed(ev.CallEnded(now, call_id))

    def _on_status(self, topic: str, payload: bytes, properties: Any) -> None:
        try:
            m = decode(payload, expect=frozenset({"dialer.status"}))
        except SchemaError as exc:
            log.warning("dropped a bad status: %s", exc)
            return
        if m.data["role"] != "worker":
            return
        info = self.workers.setdefault(m.source, _WorkerInfo())
        if m.data["online"]:
            info.online = True
            info.capacity = int(m.data.get("capacity") or 0)
            self._drain_waiting()
            return
        was_online, info.online, info.capacity = info.online, False, 0
        self._worker_gone(m.source, info)
        if was_online:
            log.warning("worker %s went offline; its calls were closed", m.source)

    def _worker_gone(self, worker_id: str, info: _WorkerInfo) -> None:
        """Close every call the worker held, so each gets its record and the lead goes back to its source."""
        now = self.runtime.now()
        for call_id in sorted(info.calls):
            state = self.runtime.engine.call_state(call_id)
            self.lost_worker_calls += 1
            if state in (CallState.DIALING, CallState.RINGING):
                self._feed(ev.CallFailed(now, call_id, ev.FailureReason.NETWORK))
            elif state is not CallState.ENDED:
                self._feed(ev.CallEnded(now, call_id))
        info.calls.clear()

    def _drain_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for call_id in waiting:
            self._offer(call_id)


# -- worker process ------------------------------------------------------------------------------------------


async def run_worker(config: BusConfig, campaign: str, capacity: int, group: str = "workers") -> None:
    """Run a stand-in worker until SIGTERM/SIGINT (the SIP driver's worker will use the same :class:`Worker`)."""
    bus = MqttBus(config, campaign, role="worker", capacity=capacity)
    Worker(bus, StandInPlacer(), capacity, group=group)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with bus:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m dialer.bus.worker", description="A dial worker on the MQTT bus.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--campaign", required=True)
    p.add_argument("--worker-id", required=True)
    p.add_argument("--capacity", type=int, default=10)
    p.add_argument("--group", default="workers")
    p.add_argument("--username")
    p.add_argument("--password-env", help="name of an environment variable holding the password (not the password)")
    p.add_argument("--stand-in", action="store_true", required=True, help="use the stand-in placer (no SIP yet)")
    args = p.parse_args(argv)
    password = os.environ.get(args.password_env) if args.password_env else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = BusConfig(args.host, args.port, args.worker_id, username=args.username, password=password)
    asyncio.run(run_worker(config, args.campaign, args.capacity, args.group))


if __name__ == "__main__":
    main()
