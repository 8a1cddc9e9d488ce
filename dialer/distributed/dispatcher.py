"""Scale-out: SIP worker processes take dial offers over MQTT; one dispatcher keeps the campaign's books.

The pacing core (engine, policy, abandonment ledger) must run in exactly one process, because abandonment is
counted per campaign; placing calls is what needs more machines. So:

* The :class:`Dispatcher` runs next to the engine. It turns each ``DialLead`` action into a ``work.dial`` offer
  sent to ONE worker's inbox (``to/worker/<name>/cmd``): the worker with the most room among those whose
  heartbeat is fresh. It routes hang-up, bridge and message actions to the worker that accepted the call, feeds
  the workers' reports back into the engine as events, and tracks every worker's free capacity from its status.
  Pacing follows it: the engine's ``max_in_flight`` is kept at what the live workers can carry (fed as
  ``CapacityChanged``), so the engine never launches calls nobody can place, and launches none at all while no
  worker is live.
* A :class:`~dialer.distributed.dial_worker.DialWorker` accepts offers up to its capacity, hands them to a call
  placer, and reports what happens as ``work.event`` messages on ``from/worker/<name>/event``. The real placer
  is :class:`~dialer.distributed.sip_placer.SipPlacer` (the SIP driver); ``dialer worker`` runs one.

Liveness, measured by the application, not the broker's keep-alive (which takes tens of seconds to notice a
frozen process whose socket is still open): every worker beats its status several times a second; a worker not
heard from for ``liveness`` seconds gets no new offers and its free slots leave the engine's capacity. An offer
not accepted within ``offer_timeout`` (under a second) is withdrawn and made to the next worker with the most
room; the silent worker gets no more offers until it speaks again. A worker that turns an offer down for want of
room (``full``, ``closing``, ``no_lease``) sends it straight on to the worker with the most room, without counting
an attempt; after ``max_attempts`` real failures (timeouts, other refusals) the call fails as ``NETWORK``.

Failure accounting: a worker that dies is announced by its MQTT last will (``dialer.status`` online false). The
dispatcher first lowers the engine's capacity, then closes each of the worker's calls in the engine: not yet
answered -> ``CallFailed(NETWORK)``, answered -> ``CallEnded``. Either way the engine emits the call's record and
reports it to the lead source, so no lead is lost: the source decides about the retry. Offers carry a
``deadline`` and a broker expiry, so one that waited out an outage is never placed after the engine has given
up on it; a call the engine already closed that a worker still reports as up (a late acceptance, a worker
declared dead that was only cut off) is hung up.

The dispatcher's own death: its status beats carry a ``lease``; workers that stop hearing it finish their calls
safely on their own (see :class:`~dialer.distributed.dial_worker.DialWorker`), so nobody waits on a silent line
for a dispatcher that is gone. Call ids start from the clock's microseconds (:func:`fresh_call_ids`), so a
restarted dispatcher never reuses the id of a call that may still be up.

Who is who comes from the topic (``from/worker/<name>/…``), which the broker's ACL lets only that worker publish
to; a report or status whose body names another source is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dialer.bus.client import MqttBus
from dialer.bus.schema import Message, SchemaError, decode
from dialer.distributed.state import DispatcherState, OpenCall
from dialer.engine import events as ev
from dialer.engine.actions import ConnectCall, DialLead, HangUp, PlayAbandonMessage, RecordCall
from dialer.engine.records import CallRecord, Outcome
from dialer.engine.state import CallState
from dialer.errors import ConfigError, DialerError, InvalidTransition
from dialer.leads import Lead
from dialer.live.runtime import AsyncRuntime, RuntimeClosed

log = logging.getLogger("dialer.distributed.dispatcher")


#: Seconds an acceptance may take from the worker's deadline to us (broker hops on a loaded floor).
OFFER_TRANSIT = 0.25
#: Offers of one call, of any outcome, after which it fails as a network failure.
MAX_OFFERS = 12


def fresh_call_ids(now: float | None = None) -> int:
    """The first call id for a dispatcher starting ``now``: microseconds since the epoch.

    Why: the ids of a dispatcher that crashed may still name live calls on its workers. Starting from the clock
    puts every new id past every old one as long as no run dialed more than a million calls a second, and needs
    no state that a crash could lose. The ids stay under 2**53, so JSON consumers in any language read them
    exactly."""
    return int((time.time() if now is None else now) * 1_000_000)


@dataclass(slots=True)
class _WorkerInfo:
    capacity: int = 0  # free slots, as last announced (0 after a "full" refusal until the next status)
    online: bool = False
    seen: float = float("-inf")  # loop time of its last status
    silent: bool = False  # an offer to it timed out: no more offers until it speaks again
    silent_since: float = 0.0
    calls: set[int] = field(default_factory=set)
    offers: set[int] = field(default_factory=set)  # offered to it, not yet accepted or refused
    accepted: int = 0


@dataclass(slots=True)
class _Pending:
    dial: DialLead
    dialed_at: float
    worker: str | None = None
    offered_to: str | None = None  # the worker holding the current offer
    tried: set[str] = field(default_factory=set)
    attempts: int = 0  # offers that failed for the call's sake (timeouts, refusals other than for want of room)
    offers: int = 0  # every offer made: bounded, so a call cannot circle for ever
    timer: asyncio.TimerHandle | None = None
    closed: bool = False
    message: bool = False  # the abandonment message has started: an opt-out digit counts from here


class Dispatcher:
    """The campaign side of scale-out (see the module docstring): offers out to workers, their reports in.

    Pacing follows the workers: the engine's ``max_in_flight`` is kept at what the live workers can carry (the
    calls they hold for us plus the free slots of those heard from within ``liveness`` seconds, capped by the
    engine's own configured limit), fed as :class:`~dialer.engine.events.CapacityChanged` whenever that changes.
    With no worker live it is 0, so no lead is dialed into the void.

    ``max_backlog``: received messages waiting to be read past which no new call is launched (the engine's cap
    drops to the calls in flight until the backlog is read), so a burst (a whole floor logging in at once) slows
    dialing instead of making answered people wait for bridge orders stuck behind it.
    ``offer_timeout`` (``accept_timeout`` is its old name): seconds a worker has to accept an offer (its deadline;
    ``dial_ttl`` is kept for old callers and unused). ``lease``:
    seconds workers keep dialing for us without a beat (our ``BusConfig.heartbeat`` must be well under it).
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
        offer_timeout: float = 0.75,
        liveness: float = 1.0,
        lease: float = 3.0,
        max_attempts: int = 3,
        dial_ttl: int = 10,
        agents: Mapping[str, str] | None = None,
        opt_out_digit: str = "9",
        accept_timeout: float | None = None,
        state: DispatcherState | None = None,
        on_orphan: Callable[[CallRecord], None] | None = None,
        orphan_timeout: float = 120.0,
        offline_grace: float = 1.0,
        max_backlog: int = 100,
    ) -> None:
        if bus.role != "dispatcher":
            raise ConfigError("bus.client_id", f"a dispatcher's identity is dispatcher/<name>, not {bus.source!r}")
        heartbeat = bus.config.heartbeat
        if not 0 < heartbeat <= lease / 3:
            raise ConfigError("bus.heartbeat", f"must be more than 0 and at most lease/3 ({lease / 3:g} s)")
        self.runtime = runtime
        self.bus = bus
        self.offer_timeout = accept_timeout if accept_timeout is not None else offer_timeout
        self.liveness = liveness
        self.lease = lease
        self.max_attempts = max_attempts
        self.dial_ttl = dial_ttl
        self.agents = dict(agents or {})
        self.opt_out_digit = opt_out_digit
        self.epoch = bus.instance  # one per process start
        self.workers: dict[str, _WorkerInfo] = {}
        self.calls: dict[int, _Pending] = {}
        self._waiting: list[int] = []  # dials held until some worker has room
        self._configured_cap = runtime.engine.config.max_in_flight
        self._capacity_due = False
        self._watch: asyncio.TimerHandle | None = None
        self.lost_worker_calls = 0
        self.withdrawn = 0  # offers a worker did not take in time
        self.capacity_changes: list[int | None] = []  # every cap fed to the engine, in order (tests, status lines)
        self.opt_outs: list[str] = []  # lead ids opted out by DTMF during the message
        self.messages: list[int] = []  # call ids whose abandonment message a worker reported started
        # Durable state (see dialer.distributed.state): the calls of a predecessor that died are adopted here.
        self.state = state
        self.on_orphan = on_orphan
        self.orphan_timeout = orphan_timeout
        self.offline_grace = offline_grace
        self.max_backlog = max_backlog
        self.orphans: dict[int, OpenCall] = {c.call_id: c for c in state.open_calls()} if state is not None else {}
        if self.orphans and runtime.engine.config.first_call_id <= max(self.orphans):
            raise ConfigError(
                "first_call_id",
                f"the engine's call ids start at {runtime.engine.config.first_call_id}, at or below calls still up "
                "from the last run: start them past (EngineConfig(first_call_id=fresh_call_ids()))",
            )
        self.orphan_records: list[CallRecord] = []
        self.orphans_interrupted: list[int] = []
        self._released: set[tuple[int, str]] = set()  # (orphan, worker) asked to release it
        if self.orphans:
            log.warning("adopting %d calls of a dispatcher that died; asking their workers to finish them",
                        len(self.orphans))  # fmt: skip
            asyncio.get_running_loop().call_later(orphan_timeout, self._orphans_overdue)
        bus.status_fields.update(lease=lease, epoch=self.epoch)
        runtime.on(DialLead, self._dial)
        runtime.on(HangUp, self._hangup)
        runtime.on(ConnectCall, self._connect)
        runtime.on(PlayAbandonMessage, self._message)
        runtime.on(RecordCall, self._recorded)
        runtime.observe(self._behind)
        bus.subscribe(bus.topics.worker_events, self._on_event)
        bus.subscribe(bus.topics.statuses("worker"), self._on_status)
        self._update_capacity()

    # -- liveness ----------------------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def live(self, info: _WorkerInfo) -> bool:
        """Online, heard from within ``liveness`` seconds, and not silent on an offer."""
        return info.online and not info.silent and self._now() - info.seen <= self.liveness

    def _free(self, info: _WorkerInfo) -> int:
        return max(0, info.capacity - len(info.offers))

    def _ensure_watch(self) -> None:
        if self._watch is None:
            self._watch = asyncio.get_running_loop().call_later(self.liveness / 4, self._check_liveness)

    def _behind(self, event: ev.Event, actions: list[Any]) -> None:
        """After each engine event (a burst of agent log-ins is many): once our inbox is behind, stop launching."""
        if self.bus.backlog > self.max_backlog and not self._capacity_due:
            self._capacity_changed()

    def _check_liveness(self) -> None:
        """Every quarter of ``liveness``: a worker that went quiet leaves the capacity (and the offers)."""
        self._watch = None
        if any(info.online for info in self.workers.values()):
            self._ensure_watch()
        self._update_capacity()
        if self._waiting:
            self._drain_waiting()

    @property
    def free_capacity(self) -> int:
        """Calls the live workers can still take, minus offers out and not yet answered."""
        return sum(self._free(w) for w in self.workers.values() if self.live(w))

    @property
    def capacity(self) -> int:
        """Calls the workers can carry for us: those they hold (live or not: they are in flight) plus the free
        slots of the live ones."""
        cap = sum(len(w.calls) + (self._free(w) + len(w.offers) if self.live(w) else 0)
                  for w in self.workers.values() if w.online)  # fmt: skip
        if self.bus.backlog > self.max_backlog:
            # Behind our own inbox: answers wait unread while their 2 seconds run. No new dials until we catch up,
            # or the bridges we owe arrive late and the people get the message instead of an agent.
            cap = min(cap, self.runtime.engine.in_flight)
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
        if self.state is not None:
            lead = action.lead
            fields = {k: v for k, v in lead.fields.items() if isinstance(v, str | int | float | bool)}
            self.state.dialed(action.call_id, lead.lead_id, lead.phone, fields, self.epoch)
        self._offer(action.call_id)

    def _keep(self, call_id: int, **facts: Any) -> None:
        if self.state is not None:
            self.state.update(call_id, **facts)

    def _pick(self, call: _Pending) -> str | None:
        """The live worker with the most room, preferring those this call was not yet offered to."""
        best: str | None = None
        best_key: tuple[bool, int] = (False, 0)
        for wid, info in self.workers.items():
            free = self._free(info)
            if free <= 0 or not self.live(info):
                continue
            key = (wid not in call.tried, free)
            if best is None or key > best_key:
                best, best_key = wid, key
        return best

    def _offer(self, call_id: int) -> None:
        """Offer a dial to the live worker with the most room; with room nowhere it waits for some."""
        call = self.calls.get(call_id)
        if call is None or call.closed:
            return
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        wid = self._pick(call)
        if wid is None:
            if call_id not in self._waiting:
                self._waiting.append(call_id)
            return
        info = self.workers[wid]
        info.offers.add(call_id)
        call.offered_to = wid
        call.tried.add(wid)
        call.attempts += 1
        lead = call.dial.lead
        fields = {k: v for k, v in lead.fields.items() if isinstance(v, str | int | float | bool)}
        self.bus.publish(
            "work.dial",
            topic=self.bus.topics.worker_cmd(wid),
            expiry=max(1, math.ceil(2 * self.offer_timeout)),
            call_id=call_id,
            lead_id=lead.lead_id,
            phone=lead.phone,
            ring_timeout=call.dial.ring_timeout,
            # The worker refuses the offer past this: once we give up on it, it can no longer ring anywhere.
            deadline=time.time() + self.offer_timeout,
            fields=fields,
        )
        loop = asyncio.get_running_loop()
        call.offers += 1
        # Judged a little after the worker's own deadline: an acceptance sent just in time is still on its way.
        call.timer = loop.call_later(self.offer_timeout + OFFER_TRANSIT, self._offer_expired, call_id, wid,
                                     call.attempts)  # fmt: skip

    def _withdraw(self, call: _Pending) -> str | None:
        """Take the current offer back from its worker (it answered, refused or timed out)."""
        wid, call.offered_to = call.offered_to, None
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        if wid is not None and wid in self.workers:
            self.workers[wid].offers.discard(call.dial.call_id)
        return wid

    def _offer_expired(self, call_id: int, wid: str, attempt: int) -> None:
        call = self.calls.get(call_id)
        if call is None or call.closed or call.worker is not None or call.attempts != attempt:
            return
        if self.bus.backlog > 0:
            # Messages we received and have not read yet may hold its acceptance: we are late, not the worker.
            # Judging now would blame it, offer the call again, and add load to a dispatcher already behind.
            call.timer = asyncio.get_running_loop().call_later(0.05, self._offer_expired, call_id, wid, attempt)
            return
        self._withdraw(call)
        self.withdrawn += 1
        info = self.workers.get(wid)
        if info is not None and not info.silent:
            info.silent = True
            info.silent_since = self._now()
            log.warning("worker %s did not take an offer within %.2f s: no more offers until it speaks", wid,
                        self.offer_timeout)  # fmt: skip
            self._capacity_changed()
        # If it takes the offer late after all, the acceptance is answered with a hang-up (see _on_event).
        self._retry(call_id, f"{wid} did not answer the offer")

    def _retry(self, call_id: int, why: str) -> None:
        call = self.calls[call_id]
        if call.attempts >= self.max_attempts or call.offers >= MAX_OFFERS:
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
        call = self.calls.get(action.call_id)
        if call is not None and call.worker is None and call.offered_to is not None:
            # Not accepted yet: take the offer back; should it be accepted anyway, that acceptance is hung up.
            self.bus.publish("work.hangup", topic=self.bus.topics.worker_cmd(call.offered_to),
                             call_id=action.call_id, reason=action.reason)  # fmt: skip
        self._to_worker(action.call_id, "work.hangup", reason=action.reason)

    def _connect(self, action: ConnectCall) -> None:
        self._keep(action.call_id, agent_id=action.agent_id, connected_at=time.time())
        uri = self.agents.get(action.agent_id)
        self._to_worker(action.call_id, "work.connect", agent_id=action.agent_id, agent_uri=uri)

    def _message(self, action: PlayAbandonMessage) -> None:
        self._to_worker(action.call_id, "work.play_message")

    def _recorded(self, action: RecordCall) -> None:
        call_id = action.record.call_id
        if self.state is not None:
            self.state.closed(call_id)
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        call.closed = True
        self._withdraw(call)
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

    def _sender(self, topic: str, m: Message) -> str | None:
        """The worker the broker says sent ``m`` (from the topic), or None if the body claims someone else."""
        sender = self.bus.topics.sender(topic)
        if sender is None or not sender.startswith("worker/"):
            return None
        if m.source != sender:
            log.warning("dropped a message on %s's topic claiming to be from %s", sender, m.source)
            return None
        return sender

    def _on_event(self, topic: str, payload: bytes, properties: Any) -> None:
        try:
            m = decode(payload, expect=frozenset({"work.event"}))
        except SchemaError as exc:
            log.warning("dropped a bad worker report: %s", exc)
            return
        worker_id = self._sender(topic, m)
        if worker_id is None:
            return
        d = m.data
        call_id, kind = d["call_id"], d["kind"]
        info = self.workers.setdefault(worker_id, _WorkerInfo())
        if info.silent and kind in ("accepted", "rejected"):
            info.silent = False  # it speaks again
            self._capacity_changed()
        call = self.calls.get(call_id)
        if call_id in self.orphans and call is None:
            self._orphan_event(self.orphans[call_id], worker_id, kind, d)
            return
        if call is None or call.closed:
            if kind in ("accepted", "ringing", "answered_person", "answered_machine", "bridge_failed"):
                # A call the engine already closed (or a worker we declared dead) is still up: hang it up.
                self.bus.publish("work.hangup", topic=self.bus.topics.worker_cmd(worker_id), call_id=call_id,
                                 reason="cancelled")  # fmt: skip
            elif kind in ("failed", "ended", "not_placed"):
                self._capacity_changed()
                self._drain_waiting()
            return
        if kind == "accepted":
            if call.worker == worker_id:
                return  # a repeat
            if call.worker is not None:
                # Someone else's already: it must not ring twice.
                self.bus.publish("work.hangup", topic=self.bus.topics.worker_cmd(worker_id), call_id=call_id,
                                 reason="withdrawn")  # fmt: skip
                return
            other = self._withdraw(call)
            if other is not None and other != worker_id:
                # An acceptance of an earlier offer, in time by its deadline but slow to reach us: that worker is
                # dialing already, so it keeps the call, and the newer offer is taken back.
                self.bus.publish("work.hangup", topic=self.bus.topics.worker_cmd(other), call_id=call_id,
                                 reason="withdrawn")  # fmt: skip
            call.worker = worker_id
            info.calls.add(call_id)
            info.accepted += 1
            self._keep(call_id, worker=worker_id)
            return
        if kind == "rejected":
            if call.worker is None and call.offered_to == worker_id:
                self._withdraw(call)
                reason = d.get("reason")
                if reason in ("full", "closing", "no_lease", "expired"):  # not the call's fault: elsewhere, uncounted
                    if reason != "expired":
                        info.capacity = 0
                    call.attempts -= 1
                self._retry(call_id, f"rejected by {worker_id} ({reason})")
            return
        if call.worker != worker_id:
            return  # not the owner: ignore
        now = self.runtime.now()
        self._keep_facts(call_id, kind, d)
        if kind == "placed":
            call.dialed_at = now  # the engine's ring time counts from here too
            self._feed(ev.CallPlaced(now, call_id))
        elif kind == "not_placed":
            info.calls.discard(call_id)
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
            info.calls.discard(call_id)
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

    def _keep_facts(self, call_id: int, kind: str, d: Mapping[str, Any]) -> None:
        """What a worker reported, on the wall clock, for whoever must close the call after a crash."""
        if self.state is None:
            return
        at = d.get("at")
        wall = float(at) if at is not None else time.time()
        if kind == "placed":
            self.state.update(call_id, placed_at=wall)
        elif kind == "ringing":
            self.state.update(call_id, ringing_at=wall)
        elif kind == "answered_person":
            answered = d.get("answered_at")
            self.state.update(call_id, answered_at=float(answered) if answered is not None else wall,
                              answered_by="person")  # fmt: skip
        elif kind == "answered_machine":
            self.state.update(call_id, answered_at=wall, answered_by="machine")
        elif kind == "bridge_failed":
            self.state.update(call_id, bridge_failed=True, connected_at=None)
        elif kind == "message":
            self.state.update(call_id, message_at=wall)

    # -- a predecessor's calls -------------------------------------------------------------------------

    def _release_orphans(self, worker_id: str) -> None:
        """Ask a worker that came (back) to finish our predecessor's calls it held, and to tell us about them."""
        for call_id, orphan in self.orphans.items():
            if orphan.worker not in (None, worker_id) or (call_id, worker_id) in self._released:
                continue
            self._released.add((call_id, worker_id))
            self.bus.publish("work.release", topic=self.bus.topics.worker_cmd(worker_id), call_id=call_id)

    def _orphan_event(self, orphan: OpenCall, worker_id: str, kind: str, d: Mapping[str, Any]) -> None:
        if kind == "failed" and d.get("reason") == "unknown_call":
            if orphan.worker == worker_id:  # the worker that had it forgot it (it restarted): outcome unknown
                self._orphan_interrupted(orphan)
            return
        if orphan.worker is None:
            orphan.worker = worker_id
            self._keep(orphan.call_id, worker=worker_id)
        elif orphan.worker != worker_id:
            return
        self._keep_facts(orphan.call_id, kind, d)
        at = d.get("at")
        wall = float(at) if at is not None else time.time()
        if kind == "placed":
            orphan.placed_at = wall
        elif kind == "ringing":
            orphan.ringing_at = orphan.ringing_at or wall
        elif kind == "answered_person":
            answered = d.get("answered_at")
            orphan.answered_at, orphan.answered_by = float(answered) if answered is not None else wall, "person"
        elif kind == "answered_machine":
            orphan.answered_at, orphan.answered_by = wall, "machine"
        elif kind == "bridge_failed":
            orphan.bridge_failed, orphan.connected_at = True, None
        elif kind == "message":
            orphan.message_at = orphan.message_at or wall
        elif kind in ("failed", "ended", "not_placed"):
            self._orphan_final(orphan, kind, str(d.get("reason") or ""))

    def _orphan_final(self, orphan: OpenCall, kind: str, reason: str) -> None:
        """Write the record of a predecessor's call from the facts its worker reported (wall clock), and hand it
        to the lead source as the engine would have."""
        leads = self.runtime.engine.leads
        off = float(getattr(leads, "epoch_offset", 0.0) or 0.0)

        def t(wall: float | None) -> float | None:
            return None if wall is None else wall - off

        ended = time.time()
        lead = Lead(orphan.lead_id, orphan.phone, fields=dict(orphan.fields))
        answered = orphan.answered_at
        # A bridge ordered is not a bridge made: the order may have died with our predecessor. The worker plays
        # the message only to a person with no agent, so a message (or a failed bridge) means abandoned.
        bridged = not orphan.bridge_failed and orphan.message_at is None
        connected = orphan.connected_at if bridged else None
        placed = kind != "not_placed"
        if kind == "failed":
            try:
                outcome = Outcome(reason)
            except ValueError:
                outcome = Outcome.NETWORK
            if outcome in (Outcome.CONNECTED, Outcome.ABANDONED, Outcome.MACHINE):
                outcome = Outcome.NETWORK
        elif orphan.answered_by == "machine":
            outcome = Outcome.MACHINE
        elif orphan.answered_by == "person":
            outcome = Outcome.CONNECTED if connected is not None else Outcome.ABANDONED
        else:
            outcome = Outcome.NETWORK
        abandoned = outcome is Outcome.ABANDONED
        wait = None
        if answered is not None and orphan.answered_by == "person":
            wait = (connected or orphan.message_at or ended) - answered
        record = CallRecord(
            call_id=orphan.call_id,
            lead=lead,
            outcome=outcome,
            dialed_at=t(orphan.placed_at or orphan.dialed_at) or 0.0,
            ended_at=ended - off,
            answered_at=t(answered) if orphan.answered_by == "person" else None,
            connected_at=t(connected) if outcome is Outcome.CONNECTED else None,
            agent_id=orphan.agent_id,
            message_at=t(orphan.message_at) if abandoned else None,
            wait=wait,
            abandoned=abandoned,
            bridge_failed=orphan.bridge_failed and abandoned,
            placed=placed,
            ringing_at=t(orphan.ringing_at),
            message_played=(orphan.message_at is not None) if abandoned else None,
        )
        self._close_orphan(orphan)
        self.orphan_records.append(record)
        # Pacing's abandonment windows count it too: the cap is held on every call, not only this process's.
        stats = self.runtime.engine.stats
        if record.answered_at is not None and outcome in (Outcome.CONNECTED, Outcome.ABANDONED):
            stats.live_answer(record.answered_at, record.dialed_at)
            if abandoned:
                stats.abandon(record.ended_at, record.answered_at)
        report = getattr(leads, "report", None)
        try:
            if report is not None:
                report(record)
        except DialerError:
            log.exception("call %d of a predecessor: its record could not be stored", orphan.call_id)
        if self.on_orphan is not None:
            self.on_orphan(record)
        log.warning("closed call %d of a dispatcher that died: %s", orphan.call_id, outcome.value)

    def _orphan_interrupted(self, orphan: OpenCall) -> None:
        self._close_orphan(orphan)
        self.orphans_interrupted.append(orphan.call_id)
        close = getattr(self.runtime.engine.leads, "close_interrupted", None)
        if close is not None:
            close(orphan.lead_id)
        log.warning("call %d of a dispatcher that died: nobody knows its outcome; closed as interrupted",
                    orphan.call_id)  # fmt: skip

    def _close_orphan(self, orphan: OpenCall) -> None:
        self.orphans.pop(orphan.call_id, None)
        if self.state is not None:
            self.state.closed(orphan.call_id)

    def _orphans_overdue(self) -> None:
        for orphan in list(self.orphans.values()):
            self._orphan_interrupted(orphan)

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
        worker_id = self._sender(topic, m)
        if worker_id is None or m.data["role"] != "worker":
            return
        info = self.workers.setdefault(worker_id, _WorkerInfo())
        if m.data["online"]:
            was_live = self.live(info)
            if self.orphans and not self.bus.delivery_retained:
                self._release_orphans(worker_id)
            info.online = True
            info.seen = self._now()
            if info.silent and info.seen - info.silent_since > self.liveness:
                info.silent = False  # still beating well after it missed an offer: try it again
            info.capacity = int(m.data.get("capacity") or 0)
            if self.bus.delivery_retained:
                info.seen = float("-inf")  # a retained status says nothing about now: wait for a live beat
            self._ensure_watch()
            if not was_live or self._waiting:
                self._capacity_changed()
                self._drain_waiting()
            elif info.capacity != self._free(info) + len(info.offers):
                self._capacity_changed()
            return
        was_online, info.online, info.capacity = info.online, False, 0
        self._update_capacity()  # first: closing its calls must not make room for dials nobody can carry
        for call_id in sorted(info.offers):  # offers it had not answered go elsewhere now
            call = self.calls.get(call_id)
            if call is not None and call.offered_to == worker_id:
                self._withdraw(call)
                call.attempts -= 1
                self._offer(call_id)
        if was_online and info.calls:
            # Its calls are closed after a grace, not at once: a worker cut off for an instant (its session taken
            # over by a process that then left, a network blip) is back within it, calls and all.
            log.warning("worker %s went offline; closing its %d calls in %.1f s unless it is back", worker_id,
                        len(info.calls), self.offline_grace)  # fmt: skip
            asyncio.get_running_loop().call_later(self.offline_grace, self._confirm_gone, worker_id)

    def _confirm_gone(self, worker_id: str) -> None:
        info = self.workers.get(worker_id)
        if info is None or info.online:
            return
        self._worker_gone(worker_id, info)
        log.warning("worker %s did not come back; its calls were closed", worker_id)

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
