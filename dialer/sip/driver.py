"""The SIP driver: one asyncio interface over a supervised pool of pjsua2 worker processes.

Why processes: PyPI's pjsua2 wheel holds a few calls per process, allows one endpoint per process and aborts
the process (no exception) on resource exhaustion. So each worker is a spawned process with its own endpoint,
SIP port and RTP range (:mod:`dialer.sip.worker`), and this class is the only thing the runtime sees: it places
calls on the worker with the most free slots, enforces the trunk's limits (calls at once, calls per second,
back-off after congestion), turns worker messages into :class:`DriverEvent` objects, and restarts a worker that
dies, reporting each of its calls as failed (``NETWORK``) or ended so no call is ever left without an outcome.

Everything here runs on the event loop thread; pipes and process sentinels are watched with ``add_reader``, so
there is no polling and no thread in the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from dialer.engine.events import FailureReason
from dialer.errors import ConfigError, DialerError
from dialer.sip.config import PoolConfig, WorkerConfig, check_ring_timeout
from dialer.sip.outcomes import SipOutcome, classify

log = logging.getLogger("dialer.sip")


class SipError(DialerError):
    """The SIP driver could not do what was asked (no worker started, registration refused, pool closed)."""


# --- what the driver reports ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DriverEvent:
    """Something happened to call ``call_id`` (the engine's id)."""

    call_id: int


@dataclass(frozen=True, slots=True)
class Placed(DriverEvent):
    """The INVITE left at ``at`` (wall clock of the worker): ring time counts from here. ``sip_call_id`` is its
    Call-ID header, for matching the ledger with the carrier's records and packet captures."""

    at: float
    sip_call_id: str = ""


@dataclass(frozen=True, slots=True)
class NotPlaced(DriverEvent):
    """No INVITE ever left for this call (no slot in time, trunk down, hung up while waiting, worker gone before
    sending it): the lead was not dialed."""

    why: str


@dataclass(frozen=True, slots=True)
class Ringing(DriverEvent):
    status: int


@dataclass(frozen=True, slots=True)
class Answered(DriverEvent):
    """The far end answered. ``verdict`` is ``none`` without detection, else ``person``/``machine``/``unsure``;
    ``detect_seconds`` is how long detection took after the 200 OK, to back-date the connect clock."""

    verdict: str = "none"
    detect_seconds: float = 0.0
    answered_at: float | None = None  # the 200 OK's arrival on the worker's wall clock
    speech_start: float | None = None  # detection's first word, seconds after the answer (None: none heard)
    greeting_end: float | None = None  # detection's end of the greeting so far, seconds after the answer


@dataclass(frozen=True, slots=True)
class Failed(DriverEvent):
    """The dial ended without an answer; ``outcome.reason`` is the engine's failure reason."""

    outcome: SipOutcome
    status: int = 0
    text: str = ""


@dataclass(frozen=True, slots=True)
class Ended(DriverEvent):
    """An answered call is over. ``by``: ``remote`` (they hung up), ``local`` (we did), ``crash`` (worker died)."""

    by: str


@dataclass(frozen=True, slots=True)
class Bridged(DriverEvent):
    """The agent leg answered and audio flows both ways through the worker's conference bridge."""


@dataclass(frozen=True, slots=True)
class BridgeFailed(DriverEvent):
    """The agent leg failed before the bridge: the agent's phone refused (``status`` 486, 480...), did not answer
    within ``agent_answer_timeout`` (408), or could not be called. The customer is still up, waiting for
    :meth:`SipDriver.play_message` (or a hang-up): a person who reached no live agent is an abandoned call."""

    status: int


@dataclass(frozen=True, slots=True)
class MessageStarted(DriverEvent):
    """The abandonment message's first sound went out at ``at`` (the worker's media clock, wall time): the
    ledger's message time."""

    at: float | None = None


@dataclass(frozen=True, slots=True)
class VoicemailStarted(DriverEvent):
    """A machine's greeting is over and our voicemail message began to play at ``at``; the call hangs up after."""

    at: float | None = None


@dataclass(frozen=True, slots=True)
class Dtmf(DriverEvent):
    digit: str


@dataclass(frozen=True, slots=True)
class AgentSessionEvent:
    """An agent's standing leg came up (``up``) or went down (the phone hung up, refused at login: ``status``,
    ``text``; ``status`` 0 when our worker died). ``at`` is the worker's wall clock."""

    agent_id: str
    up: bool
    at: float
    status: int = 0
    text: str = ""


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """News of an inbound caller, named by ``inbound_id`` (the INVITE's Call-ID). ``kind``:

    - ``answered``: our 200 OK was confirmed; the caller hears the queue audio (``at``: the worker's wall clock);
    - ``bridged``: joined to the agent ordered by :meth:`SipDriver.connect_inbound`; the queue audio stopped;
    - ``bridge_failed``: that agent could not be joined (``status``); the caller is still up, hearing the queue;
    - ``ended``: the call is over (``by``: ``remote``, ``local`` or ``crash``);
    - ``blocked``: refused before the answer (``status`` 486: no free slot or the queue is at ``max_waiting``;
      503: the driver did not answer its worker in time); never answered, so the engine never hears of it.
    """

    inbound_id: str
    kind: str
    at: float = 0.0
    status: int = 0
    by: str = ""
    caller: str = ""
    why: str = ""


Listener = Callable[[DriverEvent], None]
AgentListener = Callable[[AgentSessionEvent], None]
InboundListener = Callable[[InboundEvent], None]

#: Slots an agent hosted on a worker takes: the standing leg, and the far half of a bridge from a customer on
#: another worker (reserved, so a join never fails for lack of a slot).
AGENT_SLOTS = 2

_NETWORK = SipOutcome(FailureReason.NETWORK)


def _worker_entry(conn: Connection, cfg: WorkerConfig) -> None:
    """Spawn target: imports pjsua2 only in the child."""
    from dialer.sip import worker

    worker.main(conn, cfg)


class _Handle:
    """The parent's view of one worker process."""

    def __init__(self, index: int, cfg: WorkerConfig) -> None:
        self.index = index
        self.cfg = cfg
        self.inbound = cfg.inbound  # answers callers only: no dials, no agents
        self.slots = cfg.max_calls
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.ready: asyncio.Future[None] | None = None
        self.calls: dict[int, bool] = {}  # call id -> answered
        self.invited: set[int] = set()  # calls whose INVITE has left (a call not in it was never placed)
        self.held: set[int] = set()  # calls reported failed whose slot pjsip still holds (INVITE never answered)
        self.agents: set[str] = set()  # agents whose standing legs this worker hosts (or is setting up)
        self.restarts: deque[float] = deque()
        self.alive = False
        self.pid = 0
        self.sip_port = 0
        self.version = ""
        self.next_setup = 0.0  # earliest time this worker may start another call (its setup-rate cap)

    def free(self, legs_per_call: int) -> int:
        """Slots not taken by calls, by pjsip's leftovers, or reserved for the agents parked here."""
        return self.slots - len(self.calls) * legs_per_call - len(self.held) - AGENT_SLOTS * len(self.agents)


@dataclass(slots=True)
class _Inbound:
    """The driver's view of one inbound caller on an inbound worker."""

    handle: _Handle
    cid: int  # the worker's (negative) id
    caller: str = ""
    answered: bool = False
    bridged: bool = False


@dataclass(slots=True)
class _Pending:
    uri: str
    ring_timeout: float | None
    amd: bool
    tries: int = 0


class SipDriver:
    """Place and control calls through a pool of worker processes.

    ``listener`` receives every :class:`DriverEvent` on the loop thread. ``on_capacity`` is told how many
    customer calls the driver can carry whenever that changes (a worker lost or back, congestion on the trunk),
    so pacing can follow the real capacity.
    """

    def __init__(
        self,
        config: PoolConfig,
        listener: Listener,
        *,
        on_capacity: Callable[[int], None] | None = None,
        on_alert: Callable[[str, str], None] | None = None,
        on_agent: AgentListener | None = None,
        on_inbound: InboundListener | None = None,
    ) -> None:
        if not config.trunk.caller_id:
            raise ConfigError(
                "trunk.caller_id",
                "is required: the number people see and can call back, in E.164 form (like +12125550123)",
            )
        self.config = config
        self._listener = listener
        self._on_capacity = on_capacity
        self._on_alert = on_alert
        self._on_agent = on_agent
        self._agent_host: dict[str, _Handle] = {}
        self._silent_in_a_row = 0
        self.trunk_down: str | None = None  # why the driver stopped placing calls, until resume_trunk()
        self._ctx = multiprocessing.get_context("spawn")
        self._workers = [
            _Handle(i, config.worker(i, config.sip_port + i if config.sip_port else 0)) for i in range(config.workers)
        ]
        self._on_inbound = on_inbound
        self._inbound: dict[str, _Inbound] = {}  # inbound id -> caller, from the offer to the end
        self._inbound_ids: dict[tuple[int, int], str] = {}  # (worker index, worker's cid) -> inbound id
        self._inbound_open = True  # False once draining: new callers are refused (486)
        if config.inbound is not None:
            first = config.workers
            self._workers += [
                _Handle(first + j, config.worker(first + j, port, inbound=True))
                for j, port in enumerate(config.inbound.ports)
            ]
        self._where: dict[int, _Handle] = {}
        self._pending: dict[int, _Pending] = {}  # waiting for a slot
        self._sent: dict[int, _Pending] = {}  # handed to a worker, kept to re-place it on "too many calls"
        self._changed: asyncio.Condition | None = None
        self._next_setup = 0.0
        self._setup_interval = 1.0 / config.setups_per_worker
        self._backoff = 0.0
        self._backoff_until = 0.0
        self._congestion_cap: int | None = None
        self._last_capacity = -1
        self._closing = False
        self._started = False
        self._tasks: set[asyncio.Future[None]] = set()
        self.stats: dict[str, int] = {
            "dials": 0,
            "restarts": 0,
            "toomany": 0,
            "congestion": 0,
            "no_response": 0,
            "not_placed": 0,
            "inbound_offered": 0,
            "inbound_blocked": 0,
        }

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def start(self, timeout: float = 30.0) -> None:
        """Start every worker and wait until each has its endpoint up (and is registered, if asked)."""
        self._changed = asyncio.Condition()
        self._started = True
        for handle in self._workers:
            self._spawn(handle)
        try:
            await asyncio.wait_for(asyncio.gather(*(h.ready for h in self._workers if h.ready)), timeout)
        except BaseException:
            await self.close()
            raise
        self._capacity_changed()

    async def __aenter__(self) -> SipDriver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, timeout: float = 10.0) -> None:
        """Hang up everything, let workers tear their endpoints down, and make sure no process outlives us."""
        self._closing = True
        for handle in self._workers:
            if handle.conn is not None and handle.alive:
                self._send(handle, ("stop",))
        deadline = time.monotonic() + timeout
        for handle in self._workers:
            proc = handle.process
            if proc is None:
                continue
            while proc.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.is_alive():
                log.warning("worker %d did not stop in time; killing it", handle.index)
                proc.kill()
                await asyncio.sleep(0.1)
            self._detach(handle)
            self._orphan_calls(handle)

    @property
    def workers(self) -> list[dict[str, Any]]:
        """Per-worker status: index, pid, alive, SIP port, slots and calls (for status lines and tests)."""
        return [
            {
                "index": h.index,
                "pid": h.pid,
                "alive": h.alive,
                "sip_port": h.sip_port,
                "slots": h.slots,
                "calls": len(h.calls),
                "held": len(h.held),
                "agents": sorted(h.agents),
                "version": h.version,
                "inbound": h.inbound,
            }
            for h in self._workers
        ]

    @property
    def running(self) -> bool:
        """Started and not closing: calls may be placed."""
        return self._changed is not None and not self._closing

    @property
    def closing(self) -> bool:
        """Closing or closed: nothing new may be started."""
        return self._closing

    @property
    def legs_per_call(self) -> int:
        return 2 if self.config.agent_legs else 1

    @property
    def capacity(self) -> int:
        """Customer calls the driver can hold at once right now."""
        if self.trunk_down is not None:
            return 0
        cap = sum(
            max(0, h.slots - AGENT_SLOTS * len(h.agents)) // self.legs_per_call
            for h in self._workers
            if h.alive and not h.inbound
        )
        if self.config.trunk.max_calls is not None:
            cap = min(cap, self.config.trunk.max_calls)
        if self._congestion_cap is not None:
            cap = min(cap, self._congestion_cap)
        return cap

    @property
    def active(self) -> int:
        return len(self._where) + len(self._pending)

    # -- commands ----------------------------------------------------------------------------------------

    async def dial(
        self, call_id: int, number: str, ring_timeout: float | None = None, *, amd: bool | None = None
    ) -> None:
        """Place a call; the outcome arrives as events. Waits for a free slot, the trunk's rate and back-off.

        A number that cannot be dialed is reported as ``INVALID_NUMBER`` without touching the network; a dial
        that finds no capacity within ``ring_timeout`` (or 30 s) is reported as ``NETWORK``: never dropped.
        """
        if self._changed is None or self._closing:
            raise SipError("driver is not running")
        check_ring_timeout(ring_timeout)
        try:
            uri = self.config.trunk.uri(number)
        except ConfigError as exc:
            self._emit(Failed(call_id, classify(404), 0, str(exc)))
            return
        use_amd = self.config.amd.enabled if amd is None else amd
        self._pending[call_id] = _Pending(uri, ring_timeout, use_amd)
        await self._launch(call_id)

    async def _launch(self, call_id: int) -> None:
        assert self._changed is not None
        pending = self._pending.get(call_id)
        if pending is None:
            return  # hung up while waiting
        wait_limit = time.monotonic() + (pending.ring_timeout or 30.0)
        async with self._changed:
            while True:
                if call_id not in self._pending:
                    return
                now = time.monotonic()
                handle, handle_at = self._pick(now)
                blocked_until = max(self._next_setup, self._backoff_until, handle_at)
                if handle is not None and now >= blocked_until:
                    break
                if now > wait_limit or self._closing or self.trunk_down is not None:
                    self._pending.pop(call_id, None)
                    why = self.trunk_down or ("driver closing" if self._closing else "no capacity in time")
                    self._not_placed(call_id, why)
                    return
                # Never sleep past the wait limit: a back-off of 30 s must not keep a dial unsent beyond its own
                # limit, or the engine's ring backstop closes it as if it had rung (it never left).
                timeout = max(0.001, blocked_until - now) if handle is not None else 0.5
                timeout = min(timeout, max(0.001, wait_limit - now))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout)
            cps = self.config.trunk.calls_per_second
            if cps:
                self._next_setup = max(now, self._next_setup) + 1.0 / cps
            del self._pending[call_id]
            self._where[call_id] = handle
            handle.next_setup = max(now, handle.next_setup) + self._setup_interval
            handle.calls[call_id] = False
            self.stats["dials"] += 1
            self._send(handle, ("dial", call_id, pending.uri, pending.ring_timeout, pending.amd))
            self._sent[call_id] = pending

    def hangup(self, call_id: int) -> None:
        """Hang up (or CANCEL) a call; a call still waiting for a slot is reported failed (``NO_ANSWER``)."""
        if self._pending.pop(call_id, None) is not None:
            self._not_placed(call_id, "hung up before dialing")
            self._wake()
            return
        handle = self._where.get(call_id)
        if handle is not None:
            self._send(handle, ("hangup", call_id))

    def play_message(self, call_id: int) -> None:
        """Play the abandonment message to an answered call, then hang up (the worker hangs up if it cannot play)."""
        handle = self._where.get(call_id)
        if handle is not None:
            self._send(handle, ("play", call_id))

    def leave_message(self, call_id: int) -> None:
        """On a machine: wait for its greeting to end, play ``voicemail_wav``, hang up (at once without a WAV)."""
        handle = self._where.get(call_id)
        if handle is not None:
            self._send(handle, ("voicemail", call_id))

    def bridge(self, call_id: int, agent_uri: str) -> None:
        """Call the agent from the customer's worker and join the two legs in its conference bridge."""
        handle = self._where.get(call_id)
        if handle is not None:
            self._send(handle, ("bridge", call_id, agent_uri))

    # -- agent sessions ----------------------------------------------------------------------------------

    def login_agent(self, agent_id: str, uri: str) -> bool:
        """Call the agent's phone and keep the leg up; ``on_agent`` hears when it is up or gone.

        The worker with the most free slots hosts it, two slots reserved (the standing leg, and the far half of
        a bridge from a customer on another worker). ``False`` when no worker has room: size the pool for it.
        """
        if self._changed is None or self._closing:
            raise SipError("driver is not running")
        if agent_id in self._agent_host:
            return True
        best: _Handle | None = None
        best_room = AGENT_SLOTS - 1
        for handle in self._workers:
            room = handle.free(self.legs_per_call)
            if handle.alive and not handle.inbound and room > best_room:
                best, best_room = handle, room
        if best is None:
            return False
        best.agents.add(agent_id)
        self._agent_host[agent_id] = best
        self._send(best, ("agent_login", agent_id, uri))
        self._capacity_changed()
        return True

    def logout_agent(self, agent_id: str) -> None:
        """Hang up the agent's standing leg (its ``down`` event follows)."""
        handle = self._agent_host.get(agent_id)
        if handle is not None:
            self._send(handle, ("agent_logout", agent_id))

    def connect(self, call_id: int, agent_id: str) -> None:
        """Join an answered customer to a logged-in agent's standing leg: in the customer's own worker when the
        agent is parked there (the conference bridge only), else through a leg between the two workers on
        loopback (our own processes answer at once; the agent's phone is not involved)."""
        handle = self._where.get(call_id)
        host = self._agent_host.get(agent_id)
        if handle is None:
            return
        if host is None or not host.alive:
            self._emit(BridgeFailed(call_id, 480))  # no session: the worker keeps the customer up for the message
            self._send(handle, ("play", call_id))
            return
        if host is handle:
            self._send(handle, ("join", call_id, agent_id))
        else:
            self._send(handle, ("bridge", call_id, f"sip:xb-{agent_id}@{self.config.bind}:{host.sip_port}"))

    # -- inbound callers ---------------------------------------------------------------------------------

    @property
    def inbound_active(self) -> int:
        """Inbound callers the workers hold (offered, waiting or talking)."""
        return len(self._inbound)

    @property
    def inbound_waiting(self) -> int:
        """Inbound callers not (yet) joined to an agent: the queue whose length ``max_waiting`` caps."""
        return sum(not c.bridged for c in self._inbound.values())

    def close_inbound(self) -> None:
        """Refuse new inbound callers from now on (486), as when draining; callers already in are kept."""
        self._inbound_open = False

    def connect_inbound(self, inbound_id: str, agent_id: str, agent_uri: str | None = None) -> None:
        """Join a waiting caller to an agent: the agent's standing leg through a leg between two of our workers
        (or in the caller's own worker when the agent is parked there), as for an outbound connect; with
        ``agent_uri`` (no agent sessions) the caller's worker calls the agent's phone instead."""
        call = self._inbound.get(inbound_id)
        if call is None:
            return
        handle = call.handle
        if agent_uri is not None:
            self._send(handle, ("bridge", call.cid, agent_uri))
            return
        host = self._agent_host.get(agent_id)
        if host is None or not host.alive:
            self._inbound_event(InboundEvent(inbound_id, "bridge_failed", time.time(), 480))
        elif host is handle:
            self._send(handle, ("join", call.cid, agent_id))
        else:
            self._send(handle, ("bridge", call.cid, f"sip:xb-{agent_id}@{self.config.bind}:{host.sip_port}"))

    def hangup_inbound(self, inbound_id: str) -> None:
        call = self._inbound.get(inbound_id)
        if call is not None:
            self._send(call.handle, ("hangup", call.cid))

    def _inbound_event(self, event: InboundEvent) -> None:
        if self._on_inbound is None:
            return
        try:
            self._on_inbound(event)
        except Exception:
            log.exception("inbound listener failed on %r", event)

    def _blocked(self, sip_call_id: str, status: int, why: str, caller: str) -> None:
        self.stats["inbound_blocked"] += 1
        log.warning("inbound caller %s refused (%d): %s", caller or sip_call_id, status, why)
        self._inbound_event(InboundEvent(sip_call_id, "blocked", time.time(), status, caller=caller, why=why))

    def _inbound_message(self, handle: _Handle, verb: str, cid: int, rest: tuple[Any, ...]) -> None:
        if verb == "inbound_offer":
            inbound_id, caller = str(rest[1]), str(rest[2])
            self.stats["inbound_offered"] += 1
            limit = self.config.inbound.max_waiting if self.config.inbound is not None else None
            why = ""
            if self._closing or not self._inbound_open:
                why = "the dialer is stopping"
            elif inbound_id in self._inbound or not inbound_id:
                why = "a Call-ID already in the queue"
            elif limit is not None and self.inbound_waiting >= limit:
                why = f"{limit} caller(s) already waiting (inbound.max_waiting)"
            if why:
                self._send(handle, ("inbound_refuse", cid, 486))
                self._blocked(inbound_id, 486, why, caller)
                return
            self._inbound[inbound_id] = _Inbound(handle, cid, caller)
            self._inbound_ids[(handle.index, cid)] = inbound_id
            self._send(handle, ("inbound_accept", cid))
            return
        key = (handle.index, cid)
        inbound_id = self._inbound_ids.get(key, "")
        call = self._inbound.get(inbound_id)
        if verb == "error":
            log.warning("worker %d inbound %s: %s", handle.index, inbound_id or cid, rest[1])
            return
        if call is None:
            return
        if verb == "inbound_answered":
            call.answered = True
            self._inbound_event(InboundEvent(inbound_id, "answered", float(rest[1]), caller=call.caller))
        elif verb == "bridged":
            call.bridged = True
            self._inbound_event(InboundEvent(inbound_id, "bridged", time.time()))
        elif verb == "bridge_failed":
            self._inbound_event(InboundEvent(inbound_id, "bridge_failed", time.time(), int(rest[1])))
        elif verb == "ended":
            del self._inbound[inbound_id]
            del self._inbound_ids[key]
            if call.answered:
                self._inbound_event(InboundEvent(inbound_id, "ended", time.time(), by=str(rest[1])))
            self._wake()

    def _agent_event(self, event: AgentSessionEvent) -> None:
        if self._on_agent is None:
            return
        try:
            self._on_agent(event)
        except Exception:
            log.exception("agent listener failed on %r", event)

    # -- worker management -------------------------------------------------------------------------------

    def _pick(self, now: float) -> tuple[_Handle | None, float]:
        """The worker for the next call and when it may start it (its per-worker setup rate); ``None`` if full.

        Among workers free now, the one with the most free slots; otherwise the one whose rate frees first.
        """
        if len(self._where) >= self.capacity:
            return None, now
        # Slots pjsip still holds for INVITEs given up as silent count as taken: routing a call (and so its agent
        # leg) there would have the agent leg refused locally and the answered person abandoned.
        best: _Handle | None = None
        best_key = (0.0, 0)
        for handle in self._workers:
            if not handle.alive or handle.inbound:
                continue
            free = handle.free(self.legs_per_call)
            if free < self.legs_per_call:
                continue
            key = (-max(now, handle.next_setup), free)  # ready soonest, then most free slots
            if best is None or key > best_key:
                best, best_key = handle, key
        return best, (now if best is None else max(now, best.next_setup))

    def _spawn(self, handle: _Handle) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_entry, args=(child, handle.cfg), name=f"sip-worker-{handle.index}", daemon=True
        )
        proc.start()
        child.close()
        handle.process = proc
        handle.conn = parent
        handle.slots = handle.cfg.max_calls
        loop = asyncio.get_running_loop()
        handle.ready = loop.create_future()
        loop.add_reader(parent.fileno(), self._readable, handle)
        loop.add_reader(proc.sentinel, self._died, handle)

    def _detach(self, handle: _Handle) -> None:
        loop = asyncio.get_running_loop()
        if handle.conn is not None:
            loop.remove_reader(handle.conn.fileno())
            handle.conn.close()
            handle.conn = None
        if handle.process is not None:
            loop.remove_reader(handle.process.sentinel)
            handle.process.join(timeout=0)
        handle.alive = False

    def _send(self, handle: _Handle, msg: tuple[Any, ...]) -> None:
        if handle.conn is None:
            return
        try:
            handle.conn.send(msg)
        except OSError:
            log.warning("worker %d pipe broken", handle.index)

    def _readable(self, handle: _Handle) -> None:
        conn = handle.conn
        if conn is None:
            return
        try:
            while conn.poll():
                self._message(handle, conn.recv())
        except (EOFError, OSError):
            self._died(handle)

    def _died(self, handle: _Handle) -> None:
        if handle.conn is None:
            return
        proc = handle.process
        code = proc.exitcode if proc is not None else None
        self._detach(handle)
        if handle.ready is not None and not handle.ready.done():
            handle.ready.set_exception(SipError(f"worker {handle.index} exited (code {code}) before it was ready"))
            return
        lost = self._orphan_calls(handle)
        self._capacity_changed()
        if self._closing:
            return
        log.error("worker %d (pid %s) died with code %s; %d calls lost", handle.index, handle.pid, code, lost)
        now = time.monotonic()
        while handle.restarts and now - handle.restarts[0] > self.config.restart_window:
            handle.restarts.popleft()
        if len(handle.restarts) >= self.config.max_restarts:
            log.error(
                "worker %d restarted %d times in %.0f s; leaving it down",
                handle.index,
                len(handle.restarts),
                self.config.restart_window,
            )
            return
        handle.restarts.append(now)
        self.stats["restarts"] += 1
        self._spawn(handle)

    def _orphan_calls(self, handle: _Handle) -> int:
        """Report every call of a dead worker so the engine closes it: unanswered fail, answered end."""
        lost = list(handle.calls.items())
        handle.calls.clear()
        handle.held.clear()
        agents = sorted(handle.agents)
        handle.agents.clear()
        for agent_id in agents:
            if self._agent_host.get(agent_id) is handle:
                del self._agent_host[agent_id]
            self._agent_event(AgentSessionEvent(agent_id, False, time.time(), 0, "worker died"))
        for key, inbound_id in list(self._inbound_ids.items()):
            if key[0] == handle.index:
                del self._inbound_ids[key]
                call = self._inbound.pop(inbound_id)
                if call.answered:
                    self._inbound_event(InboundEvent(inbound_id, "ended", time.time(), by="crash"))
        invited = handle.invited
        handle.invited = set()
        for call_id, answered in lost:
            self._where.pop(call_id, None)
            self._sent.pop(call_id, None)
            if answered:
                self._emit(Ended(call_id, "crash"))
            elif call_id in invited:
                self._emit(Failed(call_id, _NETWORK, 0, "worker died"))
            else:
                self._not_placed(call_id, "worker died before placing it")
        self._wake()
        return len(lost)

    def _message(self, handle: _Handle, msg: tuple[Any, ...]) -> None:
        verb, rest = msg[0], msg[1:]
        if verb == "ready":
            handle.pid, handle.sip_port, handle.version = rest
            handle.alive = True
            if handle.ready is not None and not handle.ready.done():
                handle.ready.set_result(None)
            self._capacity_changed()
            self._wake()
            return
        if verb == "fatal":
            log.error("worker %d: %s", handle.index, rest[0])
            if handle.ready is not None and not handle.ready.done():
                handle.ready.set_exception(SipError(f"worker {handle.index}: {rest[0]}"))
            return
        if verb == "agent_up":
            agent_id = str(rest[0])
            if self._agent_host.get(agent_id) is not handle:  # an agent who called in: hosted where they called
                handle.agents.add(agent_id)
                self._agent_host[agent_id] = handle
                self._capacity_changed()
            self._agent_event(AgentSessionEvent(agent_id, True, float(rest[1])))
            return
        if verb == "agent_down":
            agent_id = str(rest[0])
            handle.agents.discard(agent_id)
            if self._agent_host.get(agent_id) is handle:
                del self._agent_host[agent_id]
            self._capacity_changed()
            self._agent_event(AgentSessionEvent(agent_id, False, time.time(), int(rest[1]), str(rest[2])))
            return
        if verb == "inbound_blocked":
            self._blocked(str(rest[0]), int(rest[1]), str(rest[2]), str(rest[3]))
            return
        call_id = int(rest[0])
        if call_id < 0 or verb.startswith("inbound_"):
            self._inbound_message(handle, verb, call_id, rest)
            return
        if verb == "invited":
            handle.invited.add(call_id)
            self._emit(Placed(call_id, float(rest[1]), str(rest[2]) if len(rest) > 2 else ""))
        elif verb == "unplaced":
            self._release(handle, call_id)
            self._not_placed(call_id, str(rest[1]))
        elif verb == "ringing":
            self._heard()
            self._emit(Ringing(call_id, int(rest[1])))
        elif verb == "answered":
            handle.calls[call_id] = True
            self._heard()
            self._succeeded()
            self._emit(Answered(call_id, answered_at=float(rest[1])))
        elif verb == "amd":
            handle.calls[call_id] = True
            self._heard()
            self._succeeded()
            speech = None if rest[4] is None else float(rest[4])
            greeting = None if rest[5] is None else float(rest[5])
            self._emit(Answered(call_id, str(rest[1]), float(rest[2]), float(rest[3]), speech, greeting))
        elif verb == "failed":
            status, text, no_response, held = int(rest[1]), str(rest[2]), bool(rest[3]), bool(rest[4])
            self._release(handle, call_id)
            if held:
                handle.held.add(call_id)
            outcome = classify(status, local_timeout=no_response)
            if no_response:
                self._silent(call_id, text)
            else:
                self._heard()
            if outcome.congestion:
                self._congested()
            else:
                self._succeeded()
            self._emit(Failed(call_id, outcome, status, text))
        elif verb == "released":
            handle.held.discard(call_id)
            self._wake()
        elif verb == "ended":
            self._release(handle, call_id)
            self._emit(Ended(call_id, str(rest[1])))
        elif verb == "toomany":
            self._too_many(handle, call_id, int(rest[1]))
        elif verb == "bridged":
            self._emit(Bridged(call_id))
        elif verb == "bridge_failed":
            self._emit(BridgeFailed(call_id, int(rest[1])))
        elif verb == "message":
            self._emit(MessageStarted(call_id, float(rest[1])))
        elif verb == "voicemail":
            self._emit(VoicemailStarted(call_id, float(rest[1])))
        elif verb == "dtmf":
            self._emit(Dtmf(call_id, str(rest[1])))
        elif verb == "error":
            log.warning("worker %d call %d: %s", handle.index, call_id, rest[1])

    def _not_placed(self, call_id: int, why: str) -> None:
        self.stats["not_placed"] += 1
        self._emit(NotPlaced(call_id, why))

    def _silent(self, call_id: int, text: str) -> None:
        """An INVITE heard nothing back: a warning each time, and after ``silent_trunk_calls`` in a row with
        nothing heard in between, the trunk is down: stop placing calls and raise the alert."""
        self.stats["no_response"] += 1
        self._silent_in_a_row += 1
        log.warning("call %d: %s (%d in a row)", call_id, text, self._silent_in_a_row)
        if self.trunk_down is None and self._silent_in_a_row >= self.config.silent_trunk_calls:
            self.trunk_down = (
                f"the trunk answered none of the last {self._silent_in_a_row} INVITEs "
                f"({self.config.trunk.host}:{self.config.trunk.port}); no more calls are placed"
            )
            log.error("%s", self.trunk_down)
            self._capacity_changed()
            if self._on_alert is not None:
                try:
                    self._on_alert("trunk_silent", self.trunk_down)
                except Exception:
                    log.exception("alert callback failed")

    def _heard(self) -> None:
        self._silent_in_a_row = 0

    def resume_trunk(self) -> None:
        """Place calls again after the trunk was judged down (an operator saw it is back)."""
        self.trunk_down = None
        self._silent_in_a_row = 0
        self._capacity_changed()

    def _release(self, handle: _Handle, call_id: int) -> None:
        handle.invited.discard(call_id)
        handle.calls.pop(call_id, None)
        self._where.pop(call_id, None)
        self._sent.pop(call_id, None)
        self._wake()

    def _too_many(self, handle: _Handle, call_id: int, legs: int) -> None:
        """The worker's real call limit is lower than configured: learn it and place the call elsewhere."""
        self.stats["toomany"] += 1
        handle.calls.pop(call_id, None)
        self._where.pop(call_id, None)
        pending = self._sent.pop(call_id, None)
        real = max(legs, self.legs_per_call)
        if legs >= 1 and real < handle.slots:
            log.warning(
                "worker %d holds only %d calls, not %d; lowering its capacity", handle.index, real, handle.slots
            )
            handle.slots = real
            self._capacity_changed()
        if pending is None or pending.tries >= 3:
            self._not_placed(call_id, "no call slot")
            return
        pending.tries += 1
        self._pending[call_id] = pending
        loop = asyncio.get_running_loop()
        # A slot freed by a local hang-up stays busy until the BYE completes: retry shortly, not at once.
        loop.call_later(0.05, self._relaunch, call_id)

    def _relaunch(self, call_id: int) -> None:
        task = asyncio.ensure_future(self._launch(call_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _congested(self) -> None:
        """The trunk failed a call: pause new setups (exponential back-off) and cap calls at today's load."""
        self.stats["congestion"] += 1
        self._backoff = min(30.0, max(0.5, self._backoff * 2))
        self._backoff_until = time.monotonic() + self._backoff
        self._congestion_cap = max(1, min(self.capacity, len(self._where) + 1) - 1)
        self._capacity_changed()

    def _succeeded(self) -> None:
        self._backoff = 0.0
        if self._congestion_cap is not None:
            self._congestion_cap += 1
            full = sum(h.slots // self.legs_per_call for h in self._workers if h.alive and not h.inbound)
            if self._congestion_cap >= full:
                self._congestion_cap = None
            self._capacity_changed()

    def _capacity_changed(self) -> None:
        cap = self.capacity
        if cap != self._last_capacity:
            self._last_capacity = cap
            if self._on_capacity is not None and self._started and not self._closing:
                try:
                    self._on_capacity(cap)
                except Exception:
                    log.exception("capacity callback failed")
        self._wake()

    def _wake(self) -> None:
        cond = self._changed
        if cond is None:
            return

        async def notify() -> None:
            async with cond:
                cond.notify_all()

        task = asyncio.ensure_future(notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _emit(self, event: DriverEvent) -> None:
        try:
            self._listener(event)
        except Exception:
            log.exception("driver listener failed on %r", event)
