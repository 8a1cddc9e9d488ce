"""Scale-out: SIP worker processes take dial requests over MQTT; one dispatcher keeps the campaign's books.

The pacing core (engine, policy, abandonment ledger) must run in exactly one process, because abandonment is
counted per campaign; placing calls is what needs more machines. So:

* The :class:`Dispatcher` runs next to the engine. It turns ``DialLead`` actions into ``work.dial`` messages on
  ``work/dial``, which workers take through the MQTT 5 shared subscription ``$share/<group>/…/work/dial`` (the
  broker gives each message to one member of the group). It routes hang-up, bridge and message actions to the
  worker that accepted the call, feeds the workers' reports back into the engine as events, and tracks every
  worker's free capacity from its retained status. Pacing follows it: the engine's ``max_in_flight`` is kept at
  what the online workers can carry (fed as ``CapacityChanged``), so the engine never launches calls nobody can
  place, and launches none at all while no worker is online.
* A :class:`~dialer.distributed.dial_worker.DialWorker` accepts dials up to its capacity, hands them to a call
  placer, and reports what happens as ``work.event`` messages. The real placer is
  :class:`~dialer.distributed.sip_placer.SipPlacer` (the SIP driver); ``dialer worker`` runs one
  (:mod:`dialer.commands.worker`).

Failure accounting: a worker that dies is announced by its MQTT last will (``dialer.status`` online false). The
dispatcher first lowers the engine's capacity, then closes each of the worker's calls in the engine: not yet
answered -> ``CallFailed(NETWORK)``, answered -> ``CallEnded``. Either way the engine emits the call's record and
reports it to the lead source, so no lead is lost: the source decides about the retry. A dial no worker accepts
within ``accept_timeout`` is offered again, and fails as ``NETWORK`` after ``max_attempts``; a worker turning a
dial down because it is full does not count as an attempt, and the dial goes next straight to the worker with the
most room. Dial requests carry a ``deadline`` and a broker expiry, so a request that waited out an outage is never
placed after the engine has given up on it; a call the engine already closed that a worker still reports as
up (a late acceptance, a worker declared dead that was only cut off) is hung up.

:class:`StandInPlacer` is a stand-in for the SIP side, for tests and demos of the bus only: it "places" a call by
reporting the outcome named in the lead's ``outcome`` field. It makes no calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dialer.bus.client import MqttBus
from dialer.bus.schema import SchemaError, decode
from dialer.engine import events as ev
from dialer.engine.actions import ConnectCall, DialLead, HangUp, PlayAbandonMessage, RecordCall
from dialer.engine.state import CallState
from dialer.errors import DialerError, InvalidTransition
from dialer.live.runtime import AsyncRuntime, RuntimeClosed

log = logging.getLogger("dialer.distributed.dispatcher")


@dataclass(slots=True)
class _WorkerInfo:
    capacity: int = 0  # free slots, as last announced (and adjusted for reports not yet followed by a status)
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
    offered: bool = False  # a work.dial is out and nobody has taken it yet
    message: bool = False  # the abandonment message has started: an opt-out digit counts from here


class Dispatcher:
    """The campaign side of scale-out (see the module docstring): dials out to workers, their reports in.

    Pacing follows the workers: the engine's ``max_in_flight`` is kept at what the online workers can carry
    (the calls they hold for us plus their free slots, capped by the engine's own configured limit), fed as
    :class:`~dialer.engine.events.CapacityChanged` whenever a worker joins, dies or announces new capacity.
    With no worker online it is 0, so no lead is dialed into the void.

    ``agents`` maps agent ids to SIP URIs sent with each bridge request (workers may also have their own map).
    ``opt_out_digit``: a key pressed during the abandonment message that records a do-not-call opt-out through
    the lead source (``opt_out(phone, lead_id, reason)``); if the source cannot record it, that is logged as an
    error for every such call, never silently dropped.
    """

    def __init__(
        self,
        runtime: AsyncRuntime,
        bus: MqttBus,
        *,
        accept_timeout: float = 5.0,
        max_attempts: int = 3,
        dial_ttl: int = 10,
        agents: Mapping[str, str] | None = None,
        opt_out_digit: str = "9",
    ) -> None:
        self.runtime = runtime
        self.bus = bus
        self.accept_timeout = accept_timeout
        self.max_attempts = max_attempts
        self.dial_ttl = dial_ttl
        self.agents = dict(agents or {})
        self.opt_out_digit = opt_out_digit
        self.workers: dict[str, _WorkerInfo] = {}
        self.calls: dict[int, _Pending] = {}
        self._waiting: list[int] = []  # dials held until some worker has room
        self._configured_cap = runtime.engine.config.max_in_flight
        self._capacity_due = False
        self.lost_worker_calls = 0
        self.capacity_changes: list[int | None] = []  # every cap fed to the engine, in order (tests, status lines)
        self.opt_outs: list[str] = []  # lead ids opted out by DTMF during the message
        self.messages: list[int] = []  # call ids whose abandonment message a worker reported started
        runtime.on(DialLead, self._dial)
        runtime.on(HangUp, self._hangup)
        runtime.on(ConnectCall, self._connect)
        runtime.on(PlayAbandonMessage, self._message)
        runtime.on(RecordCall, self._recorded)
        bus.subscribe(bus.topics.worker_events, self._on_event)
        bus.subscribe(bus.topics.statuses, self._on_status)
        self._update_capacity()

    @property
    def free_capacity(self) -> int:
        """Calls the online workers can still take, minus dials offered and not yet accepted."""
        free = sum(max(0, w.capacity) for w in self.workers.values() if w.online)
        unassigned = sum(1 for c in self.calls.values() if c.offered and c.worker is None and not c.closed)
        return max(0, free - unassigned)

    @property
    def capacity(self) -> int:
        """Calls the online workers can carry for this campaign: those they hold for us plus their free slots."""
        cap = sum(max(0, w.capacity) + len(w.calls) for w in self.workers.values() if w.online)
        return cap if self._configured_cap is None else min(cap, self._configured_cap)

    # -- pacing capacity -------------------------------------------------------------------------------

    def _capacity_changed(self) -> None:
        """Schedule one capacity update after the current message (reports come in bursts; feed the engine once)."""
        if not self._capacity_due:
            self._capacity_due = True
            asyncio.get_running_loop().call_soon(self._update_capacity)

    def _update_capacity(self) -> None:
        self._capacity_due = False
        cap = self.capacity
        if cap == self.runtime.engine.config.max_in_flight:
            return
        if self._feed(ev.CapacityChanged(self.runtime.now(), cap)):
            self.capacity_changes.append(cap)
            log.info("workers can carry %d calls", cap)

    # -- engine actions -> workers ---------------------------------------------------------------------

    def _dial(self, action: DialLead) -> None:
        self.calls[action.call_id] = _Pending(action, self.runtime.now())
        self._offer(action.call_id)

    def _offer(self, call_id: int) -> None:
        """Offer a dial: first to the whole group (the broker picks a worker), then, after a worker turned it
        down for being full, straight to the worker with the most room (round-robin would keep hitting full
        workers). With no room anywhere the dial waits until a worker announces some."""
        call = self.calls.get(call_id)
        if call is None or call.closed:
            return
        if call.timer is not None:
            call.timer.cancel()
        call.offered = False  # deciding again: free_capacity must not hold a slot for it meanwhile
        if self.free_capacity <= 0:
            if call_id not in self._waiting:
                self._waiting.append(call_id)
            return
        topic = self.bus.topics.dial
        if call.attempts > 0:
            online = [(info.capacity, wid) for wid, info in self.workers.items() if info.online and info.capacity > 0]
            if online:
                topic = self.bus.topics.worker_cmd(max(online)[1])
        call.attempts += 1
        call.offered = True
        lead = call.dial.lead
        fields = {k: v for k, v in lead.fields.items() if isinstance(v, str | int | float | bool)}
        self.bus.publish(
            "work.dial",
            topic=topic,
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
        uri = self.agents.get(action.agent_id)
        self._to_worker(action.call_id, "work.connect", agent_id=action.agent_id, agent_uri=uri)

    def _message(self, action: PlayAbandonMessage) -> None:
        self._to_worker(action.call_id, "work.play_message")

    def _recorded(self, action: RecordCall) -> None:
        call_id = action.record.call_id
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        call.closed = True
        if call.timer is not None:
            call.timer.cancel()
        if call_id in self._waiting:
            self._waiting.remove(call_id)
        if call.worker is not None:
            info = self.workers.get(call.worker)
            if info is not None and call_id in info.calls:
                info.calls.discard(call_id)
                self._capacity_changed()  # the worker still holds the line until it reports the end

    # -- workers -> engine -----------------------------------------------------------------------------

    def _feed(self, event: ev.Event) -> bool:
        try:
            self.runtime.feed(event)
        except InvalidTransition as exc:
            # A report overtaken by the engine (ring timeout fired first, call already closed): harmless.
            log.debug("stale worker report: %s", exc)
            return False
        except RuntimeClosed:
            log.debug("runtime closed; dropped %s", type(event).__name__)
            return False
        return True

    def _on_event(self, topic: str, payload: bytes, properties: Any) -> None:
        try:
            m = decode(payload, expect=frozenset({"work.event"}))
        except SchemaError as exc:
            log.warning("dropped a bad worker report: %s", exc)
            return
        worker_id = m.source
        d = m.data
        call_id, kind = d["call_id"], d["kind"]
        info = self.workers.setdefault(worker_id, _WorkerInfo())
        call = self.calls.get(call_id)
        if call is None or call.closed:
            if kind in ("accepted", "ringing", "answered_person", "answered_machine", "bridge_failed"):
                # A call the engine already closed (or a worker we declared dead) is still up: hang it up.
                if kind == "accepted":
                    info.capacity -= 1
                self.bus.publish("work.hangup", topic=self.bus.topics.worker_cmd(worker_id), call_id=call_id,
                                 reason="cancelled")  # fmt: skip
            elif kind in ("failed", "ended", "not_placed"):
                info.capacity += 1  # its slot is free again; the worker's status follows
                self._capacity_changed()
                self._drain_waiting()
            return
        if kind == "accepted":
            if call.worker is not None and call.worker != worker_id:
                info.capacity -= 1
                self.bus.publish("work.hangup", topic=self.bus.topics.worker_cmd(worker_id), call_id=call_id,
                                 reason="duplicate")  # fmt: skip
                return
            call.worker = worker_id
            call.offered = False
            if call.timer is not None:
                call.timer.cancel()
            info.calls.add(call_id)
            info.capacity -= 1  # as the status that follows will say: the cap stays put meanwhile
            info.accepted += 1
            return
        if call.worker is not None and call.worker != worker_id:
            return  # not the owner: ignore
        if kind == "rejected":
            if call.worker is None:
                reason = d.get("reason")
                if reason in ("full", "closing"):  # no fault of the call: try elsewhere without counting it
                    info.capacity = 0
                    call.attempts -= 1
                self._retry(call_id, f"rejected by {worker_id} ({reason})")
            return
        now = self.runtime.now()
        if kind == "placed":
            call.dialed_at = now  # the engine's ring time counts from here too
            self._feed(ev.CallPlaced(now, call_id))
        elif kind == "not_placed":
            if call_id in info.calls:
                info.calls.discard(call_id)
                info.capacity += 1
                self._drain_waiting()
            log.warning("call %d was not placed by %s: %s", call_id, worker_id, d.get("reason"))
            self._feed(ev.CallNotPlaced(now, call_id, str(d.get("reason") or "")))
        elif kind == "ringing":
            self._feed(ev.CallRinging(now, call_id))
        elif kind == "answered_person":
            at = d.get("answered_at")
            answered_at = None if at is None else min(now, max(call.dialed_at, float(at)))  # other clocks drift
            self._feed(ev.CallAnsweredByPerson(now, call_id, answered_at))
        elif kind == "answered_machine":
            self._feed(ev.CallAnsweredByMachine(now, call_id))
        elif kind in ("failed", "ended"):
            if call_id in info.calls:
                info.calls.discard(call_id)
                info.capacity += 1
                self._drain_waiting()
            if kind == "failed":
                reason = d.get("reason") or "network"
                try:
                    failure = ev.FailureReason(reason)
                except ValueError:
                    failure = ev.FailureReason.NETWORK
                self._feed(ev.CallFailed(now, call_id, failure))
            else:
                self._feed(ev.CallEnded(now, call_id))
        elif kind == "bridge_failed":
            try:
                status = int(d.get("reason") or 0)
            except ValueError:
                status = 0
            self._feed(ev.CallBridgeFailed(now, call_id, status))  # abandoned: the engine orders the message
        elif kind == "message":
            if not call.message:  # repeated when the worker had started it before our order reached it
                self.messages.append(call_id)
            call.message = True
            if self.runtime.engine.call_state(call_id) is CallState.ABANDONING:
                at = d.get("at")
                started = now if at is None else min(now, float(at))
                self._feed(ev.MessagePlayed(now, call_id, started_at=started))
        elif kind == "dtmf":
            self._dtmf(call, str(d.get("reason") or ""))

    def _dtmf(self, call: _Pending, digit: str) -> None:
        if digit != self.opt_out_digit or not call.message:
            return
        lead = call.dial.lead
        self.opt_outs.append(lead.lead_id)
        opt_out = getattr(self.runtime.engine.leads, "opt_out", None)
        if opt_out is None:
            log.error("lead %s opted out by keypress, but the lead source cannot record opt-outs", lead.lead_id)
            return
        try:
            opt_out(lead.phone, lead.lead_id, "keypress during the abandonment message")
        except DialerError:  # e.g. a number the normaliser refuses: said loudly, never swallowed as recorded
            log.exception("lead %s opted out by keypress, but the opt-out could not be recorded", lead.lead_id)

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
            self._capacity_changed()
            self._drain_waiting()
            return
        was_online, info.online, info.capacity = info.online, False, 0
        self._update_capacity()  # first: closing its calls must not make room for dials nobody can carry
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
