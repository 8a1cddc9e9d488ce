"""The remote dial worker: takes dial offers from the bus and runs them on a call placer.

The dispatcher side of scale-out is :mod:`dialer.distributed.dispatcher`; the overview of both is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dialer.bus.client import MqttBus
from dialer.bus.schema import Message, SchemaError, decode
from dialer.errors import ConfigError

log = logging.getLogger("dialer.distributed.worker")

#: What only a dispatcher may tell a worker (on its inbox).
ORDERS = frozenset({"work.dial", "work.hangup", "work.connect", "work.play_message", "work.release"})


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


@dataclass(slots=True)
class _HeldCall:
    """What this worker knows of a call it holds, from its own reports and the dispatcher's orders."""

    answered: str | None = None  # "person" or "machine"
    bridged: bool = False
    message: bool = False
    released: bool = False  # hung up or message ordered by the worker itself after the lease lapsed


class DialWorker:
    """Take dial offers from this worker's inbox and run them on ``placer``, at most ``capacity`` at once.

    Offers come only on ``to/worker/<name>/cmd``, which the broker lets only this worker read and only a dispatcher
    write: the dispatcher picks the worker (the one with most room among those whose heartbeat is fresh), so a
    worker that froze is skipped within a second instead of being handed dials by a broker that still thinks it
    is connected. The worker's status (free ``capacity``, ``calls`` held) goes out with every change and as a
    heartbeat (``BusConfig.heartbeat``).

    **The dispatcher's lease.** The dispatcher's status carries ``lease`` (seconds). While it keeps beating, the
    worker works for it; when no beat arrives for a lease (a SIGKILL, a network cut) or its last will says it is
    gone, the worker takes no more dials and finishes what it holds safely on its own: calls not answered are
    hung up, a person answered and not with an agent gets the abandonment message and then the hang-up (the SIP
    worker's own connect deadline has usually played it already), machines are hung up, calls with an agent go
    on until they end. Every end is reported as usual (kept in the outbox until the broker takes it), so a
    dispatcher that comes back learns each one, and the slots are free again at once.

    ``capacity`` may change while running (:meth:`set_capacity`). ``hangup_grace``: seconds after a hang-up after
    which the slot is freed even if the placer never confirmed the call's end (a placer bug must not shrink the
    pool for good). ``group`` is accepted for old callers and unused: offers no longer go through a shared
    subscription.
    """

    def __init__(
        self,
        bus: MqttBus,
        placer: CallPlacer,
        capacity: int,
        *,
        group: str | None = None,
        hangup_grace: float = 10.0,
        offline_grace: float = 1.0,
    ) -> None:
        if capacity < 0:
            raise ConfigError("worker.capacity", "must be >= 0")
        if bus.role != "worker":
            raise ConfigError("bus.client_id", f"a dial worker's identity is worker/<name>, not {bus.source!r}")
        self.bus = bus
        self.placer = placer
        self.capacity = capacity
        self.hangup_grace = hangup_grace
        self.worker_id = bus.source
        self.active: set[int] = set()
        self.held: dict[int, _HeldCall] = {}
        self.accepted = 0
        self.rejected = 0
        self.closing = False
        self.lease_until: float | None = None  # loop time the dispatcher's lease runs out; None: none seen yet
        self.lapsed = False
        self.lapses = 0
        self.released_calls = 0  # calls this worker ended or gave the message to on its own after a lapse
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.TimerHandle | None = None
        self._checked = float("inf")
        self.offline_grace = offline_grace
        # Every report per call, kept after the call ends (the last ``history_size`` calls): a restarted
        # dispatcher asks for them again (work.release), since reports sent while no dispatcher listened are gone.
        self.history: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self.history_size = 10_000
        bus.capacity = capacity
        bus.status_fields["calls"] = 0
        bus.subscribe(bus.topics.worker_cmd(self.worker_id), self._on_command, retain_as_published=True)
        bus.subscribe(bus.topics.statuses("dispatcher"), self._on_dispatcher)

    @property
    def free(self) -> int:
        if self.closing or self.lapsed:
            return 0
        return max(0, self.capacity - len(self.active))

    def set_capacity(self, capacity: int) -> None:
        """The placer can now hold ``capacity`` calls at once (in-flight calls are not touched)."""
        self.capacity = max(0, capacity)
        self._announce()

    def _announce(self) -> None:
        if self.free != self.bus.capacity or self.bus.status_fields.get("calls") != len(self.active):
            self.bus.set_capacity(self.free, calls=len(self.active))

    # -- the dispatcher's lease --------------------------------------------------------------------------

    def _on_dispatcher(self, topic: str, payload: bytes, properties: Any) -> None:
        sender = self.bus.topics.sender(topic)
        try:
            m = decode(payload, expect=frozenset({"dialer.status"}))
        except SchemaError as exc:
            log.warning("dropped a bad dispatcher status: %s", exc)
            return
        if sender is None or m.source != sender:
            return
        loop = asyncio.get_running_loop()
        if not m.data["online"]:
            if self.lease_until is not None and not self.lapsed:
                # Not at once: a dispatcher cut off for an instant (its session taken over, a network blip) comes
                # back within the grace, and its calls must not be cut for it.
                log.warning("dispatcher %s went offline: finishing our calls on our own in %.1f s unless it is back",
                            sender, self.offline_grace)  # fmt: skip
                self.lease_until = min(self.lease_until, loop.time() + self.offline_grace)
            return
        lease = m.data.get("lease")
        if lease is None:
            return
        self.lease_until = loop.time() + float(lease)
        if self.lapsed:
            log.warning("dispatcher %s is back: taking dials again", sender)
            self.lapsed = False
            self._announce()
        if self._watch is None:
            self._checked = loop.time()
            self._watch = loop.call_later(0.1, self._check_lease)

    def _check_lease(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        stalled = now - self._checked > 0.5  # this process was frozen (SIGSTOP, swapped out), not the dispatcher
        self._checked = now
        self._watch = loop.call_later(0.1, self._check_lease)
        if stalled and self.lease_until is not None and not self.lapsed:
            # The dispatcher's beats of that time are waiting in our socket, unread: give them a moment to arrive
            # before judging, or a worker that was itself frozen would cut its calls blaming the dispatcher.
            self.lease_until = max(self.lease_until, now + 0.5)
            return
        if self.lease_until is not None and not self.lapsed and now > self.lease_until:
            log.warning("no word from the dispatcher for its whole lease: finishing our calls on our own")
            self._lapse()

    def _lapse(self) -> None:
        self.lapsed = True
        self.lapses += 1
        self._announce()
        for call_id in sorted(self.active):
            self._release_orphan(call_id)

    def _release_orphan(self, call_id: int) -> None:
        """Finish one call safely with nobody to ask (see the class docstring)."""
        held = self.held.get(call_id)
        if held is None or held.released or held.bridged:
            return
        held.released = True
        self.released_calls += 1
        if held.answered == "person" and not held.message:
            self._spawn(self.placer.play_message(call_id))  # the message, then the hang-up
            loop = asyncio.get_running_loop()
            loop.call_later(self.hangup_grace + 30.0, self._hangup_overdue, call_id)
        else:
            self._hangup(call_id, "lease")

    # -- reports ---------------------------------------------------------------------------------------

    def report(
        self,
        kind: str,
        call_id: int,
        *,
        reason: str | None = None,
        answered_at: float | None = None,
        at: float | None = None,
    ) -> None:
        data: dict[str, Any] = {"kind": kind, "reason": reason, "answered_at": answered_at, "at": at}
        self.bus.publish("work.event", topic=self.bus.topics.worker_event(self.worker_id), call_id=call_id, **data)
        if kind != "rejected":
            self.history.setdefault(call_id, []).append(data)
            self.history.move_to_end(call_id)
            while len(self.history) > self.history_size:
                self.history.popitem(last=False)
        held = self.held.get(call_id)
        if held is not None:
            if kind == "answered_person":
                held.answered = "person"
            elif kind == "answered_machine":
                held.answered = "machine"
            elif kind == "message":
                held.message = True
            elif kind == "bridge_failed":
                held.bridged = False
                if self.lapsed:
                    held.released = False
                    self._release_orphan(call_id)
        if kind in ("failed", "ended", "not_placed"):
            self._release(call_id)

    def _release(self, call_id: int) -> None:
        self.held.pop(call_id, None)
        if call_id in self.active:
            self.active.discard(call_id)
            self._announce()
            if not self.active:
                self._idle.set()

    def _reject(self, call_id: int, reason: str) -> None:
        self.rejected += 1
        self.bus.publish("work.event", topic=self.bus.topics.worker_event(self.worker_id), call_id=call_id,
                         kind="rejected", reason=reason)  # fmt: skip

    # -- the dispatcher's orders -----------------------------------------------------------------------

    def _on_dial(self, m: Message) -> None:
        d = m.data
        call_id = d["call_id"]
        if d["deadline"] < time.time():
            self._reject(call_id, "expired")
            return
        if self.closing:
            self._reject(call_id, "closing")
            return
        if self.lapsed:
            self._reject(call_id, "no_lease")
            return
        if call_id in self.active:
            return  # the same offer again (a redelivery): already ours
        if len(self.active) >= self.capacity:
            self._reject(call_id, "full")
            return
        self.active.add(call_id)
        self.held[call_id] = _HeldCall()
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
        if self.bus.delivery_retained:
            log.warning("ignored a retained order on %s: orders are never retained", topic)
            return
        try:
            m = decode(payload, expect=ORDERS)
        except SchemaError as exc:
            log.warning("dropped a bad worker command: %s", exc)
            return
        if not m.source.startswith("dispatcher/"):
            log.warning("ignored an order from %s: only a dispatcher gives orders", m.source)
            return
        if m.type == "work.dial":
            self._on_dial(m)
            return
        call_id = m.data["call_id"]
        if m.type == "work.release":
            self._release_for_successor(call_id)
        elif m.type == "work.hangup":
            self._hangup(call_id, m.data["reason"])
        elif m.type == "work.connect":
            held = self.held.get(call_id)
            if held is not None:
                held.bridged = True
            self._spawn(self.placer.connect(call_id, m.data["agent_id"], m.data.get("agent_uri")))
        else:
            self._spawn(self.placer.play_message(call_id))

    def _release_for_successor(self, call_id: int) -> None:
        """A restarted dispatcher adopts a call of its predecessor: tell it all we reported, then finish the call
        safely (unless an agent has it). A call we know nothing of is reported ``failed`` so it is closed at once."""
        past = self.history.get(call_id)
        if past is None:
            # Not "not_placed": this worker may have restarted and forgotten a call it did place. The dispatcher
            # closes it as interrupted (outcome unknown, counted in the ledger's worst case), never as undialed.
            self.bus.publish("work.event", topic=self.bus.topics.worker_event(self.worker_id), call_id=call_id,
                             kind="failed", reason="unknown_call")  # fmt: skip
            return
        for data in list(past):
            self.bus.publish("work.event", topic=self.bus.topics.worker_event(self.worker_id), call_id=call_id, **data)
        if call_id in self.active:
            self._release_orphan(call_id)

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
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
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
    answered, ``failed`` (``no_answer``, our CANCEL) before. The message "plays" for ``message_seconds`` and then
    the call ends, as the SIP worker hangs up after it. ``connect_deadline``: like the SIP worker's, seconds after
    a person answers after which, with no bridge ordered, the stand-in plays the message on its own.
    """

    def __init__(
        self, ring: float = 0.02, *, message_seconds: float = 0.05, connect_deadline: float | None = None
    ) -> None:
        self.ring = ring
        self.message_seconds = message_seconds
        self.connect_deadline = connect_deadline
        self._calls: dict[int, asyncio.Task[None]] = {}
        self._answered: set[int] = set()
        self._reports: dict[int, Report] = {}
        self._bridged: set[int] = set()
        self._message: set[int] = set()

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
            if self.connect_deadline is not None:
                asyncio.get_running_loop().call_later(self.connect_deadline, self._deadline, call_id)
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

    def _deadline(self, call_id: int) -> None:
        if call_id in self._answered and call_id not in self._bridged and call_id not in self._message:
            self._spawn_message(call_id)

    def _spawn_message(self, call_id: int) -> None:
        task = asyncio.ensure_future(self.play_message(call_id))
        self._calls.setdefault(-call_id, task)

    def _final(self, call_id: int, kind: str, reason: str | None = None) -> None:
        report = self._reports.pop(call_id, None)
        self._answered.discard(call_id)
        self._bridged.discard(call_id)
        self._message.discard(call_id)
        self._calls.pop(-call_id, None)
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
        if call_id in self._reports and call_id not in self._message:
            self._bridged.add(call_id)

    async def play_message(self, call_id: int) -> None:
        report = self._reports.get(call_id)
        if report is None or call_id in self._message:
            return
        self._message.add(call_id)
        report("message", call_id, at=time.time())
        await asyncio.sleep(self.message_seconds)
        task = self._calls.get(call_id)
        if task is not None and not task.done():
            task.cancel()
        if call_id in self._reports:
            self._final(call_id, "ended")
