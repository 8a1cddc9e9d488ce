"""One SIP worker process: its own pjsua2 ``Endpoint``, SIP port and RTP range, driven by its parent over a pipe.

Why a process per worker: the PyPI wheel allows one endpoint per process, caps it at a handful of calls and
aborts (no exception) when it runs out of sockets, so the only safe unit of scale and of failure is a process.
This module imports pjsua2 at the top and is only ever imported inside a worker (see
:func:`dialer.sip.driver._worker_entry`), never by ``import dialer``.

Threads: the endpoint runs with ``threadCnt = 0`` and ``mainThreadOnly``, so every SIP callback runs on this
process's main thread, between ``libHandleEvents`` polls, where it may write to the pipe. Only two callbacks run
elsewhere, on pjmedia's clock thread: audio frames (answering-machine detection) and end of a played file. They
touch no pjsua2 API; they put a tuple on a queue the main loop drains.

Lifetimes (each of these was a crash or a silently lost call when done otherwise): every ``pj.Call`` is
referenced from ``self.legs`` until its DISCONNECTED callback and dropped there; audio ports are pooled and never
deleted while the clock runs; everything is released and garbage-collected before ``libDestroy``.

Protocol (tuples, first item the verb). Parent to worker: ``dial(cid, uri, ring_timeout, amd)``,
``hangup(cid)``, ``play(cid)`` (message, then hang up), ``voicemail(cid)`` (wait for the greeting to end, leave
the voicemail message, hang up), ``bridge(cid, agent_uri)``, ``stop()``. Worker to
parent: ``ready(pid, sip_port, version)``, ``fatal(text)``, ``invited(cid, wall)`` (the INVITE left),
``unplaced(cid, why)`` (no INVITE ever left), ``ringing(cid, code)``, ``answered(cid, wall)``,
``amd(cid, verdict, seconds_since_answer, answered_wall)``, ``failed(cid, code, reason, no_response, held)``,
``released(cid)`` (a call reported failed while still ``held`` has finally left pjsip), ``toomany(cid, active)``,
``ended(cid, by)``, ``bridged(cid)``, ``bridge_failed(cid, code)``, ``message(cid, started_wall)``,
``voicemail(cid, started_wall)``, ``dtmf(cid, digit)``, ``error(cid, text)``.

Inbound (a worker started with ``inbound``, listening on the campaign's inbound port): a caller's INVITE is
offered to the parent as ``inbound_offer(cid, sip_call_id, from)`` with a negative ``cid``; the parent answers
``inbound_accept(cid)`` (200 OK, then queue audio in a loop, ``inbound_answered(cid, wall)``) or
``inbound_refuse(cid, code)``. A caller finding no free slot is refused here (486) and reported
``inbound_blocked(sip_call_id, code, why, from)``. The bridge to an agent (``join``/``bridge``), ``bridged``,
``bridge_failed`` (the caller stays, queue audio playing: no message), ``hangup`` and ``ended`` are as for a
dialed call. Wall times are ``time.time()`` on
this process, taken when pjsip handed us the packet's news or the media clock played the frame.

Wire rules kept here, where the packets are, not in the parent: the CANCEL never leaves before ``ring_timeout``
after the INVITE nor before 15 s after the first 180/183; an INVITE that hears nothing at all within
``no_response_timeout`` is reported ``failed`` (no response: the trunk's fault) at once while its slot stays
``held`` (pjsip can only CANCEL after a provisional response, so it keeps the slot until the INVITE times out);
and ``connect_deadline`` after the answer a person with neither an agent nor the message gets the message from
here, whatever the parent is doing.

A bridge that fails (the agent's phone refuses, has not answered within ``agent_answer_timeout``: ``code`` 408,
or its audio cannot be joined: 500) leaves the customer up: regulators count that person as abandoned, and the
parent answers with ``play`` (the message, then the hang-up) as for any abandoned call. Should no ``play`` or
``hangup`` come within ``bridge_failed_grace`` (the parent or its link is gone), the worker hangs up itself:
nobody stays connected to nothing.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pjsua2 as pj

from dialer.sip.config import WorkerConfig, clock_offset

PJ_ETOOMANY = 70010
#: Regulators' minimum ring time, counted from the first 180/183 on the wire.
MIN_RING_SECONDS = 15.0
#: How long a dial or agent leg refused with PJ_ETOOMANY below the worker's proven capacity is retried: a slot freed
#: by a hang-up stays busy until its BYE transaction completes, which takes longer on a loaded machine.
SLOT_RETRY_SECONDS = 5.0
#: Slots an inbound caller keeps: their leg, and the near half of a bridge to an agent parked in another worker.
INBOUND_SLOTS = 2
#: Seconds the parent has to accept or refuse an inbound caller before the worker refuses them (503) itself.
INBOUND_OFFER_SECONDS = 2.0
_SILENCE = bytes(320)  # 20 ms of 8 kHz 16-bit silence, for frames that carried no audio


@contextlib.contextmanager
def _stdout_silenced(silence: bool) -> Iterator[None]:
    """Point file descriptor 1 at /dev/null for the duration (C code writes there, past ``sys.stdout``)."""
    if not silence:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


class _Leg(pj.Call):
    """A pjsua2 call that forwards its callbacks to the worker with our call id attached."""

    def __init__(self, worker: Worker, acc: pj.Account, cid: int, agent: bool, call_id: int | None = None) -> None:
        if call_id is None:
            super().__init__(acc)
        else:
            super().__init__(acc, call_id)  # an incoming call (an inbound caller)
        self.worker = worker
        self.cid = cid
        self.agent = agent

    def onCallState(self, prm: Any) -> None:
        self.worker.on_state(self, self.getInfo(), _received(prm))

    def onCallMediaState(self, prm: Any) -> None:
        self.worker.on_media(self)

    def onDtmfDigit(self, prm: Any) -> None:
        if not self.agent:
            self.worker.send("dtmf", self.cid, str(prm.digit))

    def onCallTsxState(self, prm: Any) -> None:
        if not self.agent:
            self.worker.on_tsx(self, prm)


def _received(prm: Any) -> bool:
    """Whether a call-state change was caused by a message from the far end (not a timer or our own request).

    pjsua reports the INVITE's final response to ``onCallState`` before ``onCallTsxState``, so a call refused at
    once (486, 404) would otherwise look as if it never heard anything.
    """
    try:
        e = prm.e
        return bool(e.type == pj.PJSIP_EVENT_TSX_STATE and e.body.tsxState.type == pj.PJSIP_EVENT_RX_MSG)
    except (AttributeError, pj.Error):
        return False


class _Account(pj.Account):
    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

    def onRegState(self, prm: Any) -> None:
        self.worker.on_reg(int(prm.code), str(prm.reason))

    def onIncomingCall(self, prm: Any) -> None:
        self.worker.on_incoming(prm)


def _request_user(whole_msg: str) -> str:
    """The user part of an INVITE's Request-URI (``INVITE sip:xb-alice@127.0.0.1:5062 SIP/2.0``)."""
    first = whole_msg.split("\r\n", 1)[0].split("\n", 1)[0]
    parts = first.split()
    if len(parts) < 2 or ":" not in parts[1]:
        return ""
    rest = parts[1].split(":", 1)[1]
    return rest.split("@", 1)[0] if "@" in rest else ""


def _header(whole_msg: str, names: tuple[str, ...]) -> str:
    """The value of the first header among ``names`` (lower case, compact forms included) of a SIP message."""
    for line in whole_msg.split("\n")[1:]:
        line = line.rstrip("\r")
        if not line:
            break
        name, _, value = line.partition(":")
        if name.strip().lower() in names:
            return value.strip()
    return ""


class _SessionLeg(pj.Call):
    """An agent's standing leg: the agent's phone, called at login (or calling in), parked in the bridge."""

    def __init__(self, worker: Worker, acc: pj.Account, agent_id: str, call_id: int | None = None) -> None:
        if call_id is None:
            super().__init__(acc)
        else:
            super().__init__(acc, call_id)
        self.worker = worker
        self.agent_id = agent_id

    def onCallState(self, prm: Any) -> None:
        self.worker.on_session_state(self, self.getInfo())

    def onCallMediaState(self, prm: Any) -> None:
        self.worker.on_session_media(self)

    def onDtmfDigit(self, prm: Any) -> None:
        self.worker.on_session_dtmf(self, str(prm.digit))


class _CrossLeg(pj.Call):
    """The far half of a bridge across two workers: another worker's customer calls here for an agent hosted
    here (``sip:xb-AGENT@...``), and this leg is joined to that agent's standing leg."""

    def __init__(self, worker: Worker, acc: pj.Account, agent_id: str, call_id: int) -> None:
        super().__init__(acc, call_id)
        self.worker = worker
        self.agent_id = agent_id

    def onCallState(self, prm: Any) -> None:
        self.worker.on_cross_state(self, self.getInfo())

    def onCallMediaState(self, prm: Any) -> None:
        self.worker.on_cross_media(self)


class _AgentSession:
    """One agent hosted by this worker: the standing leg and what it is joined to (a local customer or a
    cross-worker leg); ``up`` once the agent's phone answered."""

    __slots__ = ("agent_id", "cross", "customer", "leg", "up", "uri")

    def __init__(self, agent_id: str, uri: str) -> None:
        self.agent_id = agent_id
        self.uri = uri
        self.leg: _SessionLeg | None = None
        self.up = False
        self.customer: int | None = None  # the local customer call joined to this agent
        self.cross: _CrossLeg | None = None  # or the leg from another worker's customer


class _FramePort(pj.AudioMediaPort):
    """Receives a call's audio on the clock thread and feeds the detector attached to it, if any."""

    def __init__(self, events: queue.SimpleQueue[tuple[Any, ...]]) -> None:
        super().__init__()
        self.events = events
        self.cid = 0
        self.kind = "amd"  # or "vm": waiting for a machine's greeting to end
        self.detector: Any = None

    def onFrameReceived(self, frame: Any) -> None:
        detector = self.detector
        if detector is None:
            return
        data = bytes(frame.buf) if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO and frame.size else _SILENCE
        verdict = detector.feed(data)
        if verdict is not None:
            self.detector = None
            self.events.put((self.kind, self.cid, verdict, detector.elapsed, time.time()))


class _FirstAudio:
    """A detector for :class:`_FramePort` that fires on the first frame carrying sound: the message's start.

    Fed on pjmedia's clock thread with the frames the player hands the conference bridge, the same tick that
    encodes them into the call's RTP, so the time it fires is the message's start on the worker's media clock.
    """

    LEVEL = 64  # peak sample (of 32767) that counts as sound: well above dither, far below speech

    def __init__(self) -> None:
        self.elapsed = 0.0

    def feed(self, frame: bytes) -> str | None:
        self.elapsed += 0.02
        samples = memoryview(frame).cast("h")
        return "heard" if max(samples, default=0) > self.LEVEL or -min(samples, default=0) > self.LEVEL else None


class _Player(pj.AudioMediaPlayer):
    def __init__(self, events: queue.SimpleQueue[tuple[Any, ...]], cid: int) -> None:
        super().__init__()
        self.events = events
        self.cid = cid

    def onEof2(self) -> None:
        self.events.put(("eof", self.cid))


class _QueuePlayer(pj.AudioMediaPlayer):
    """The queue audio an inbound caller hears while waiting: looped, so no end-of-file callback hangs up."""


class _Customer:
    """Everything the worker holds for one dialed call, or for one inbound caller (``inbound``, negative ``cid``)."""

    __slots__ = (
        "agent",
        "agent_answered",
        "agent_deadline",
        "agent_fail_code",
        "amd",
        "answered",
        "answered_mono",
        "answered_wall",
        "bridged",
        "call",
        "cid",
        "closing",
        "connect_deadline",
        "detector",
        "heard",
        "inbound",
        "invited",
        "machine",
        "message_wall",
        "orphan_deadline",
        "play_verb",
        "player",
        "port",
        "probe",
        "queue",
        "reported",
        "ring_deadline",
        "ring_expired",
        "ring_timeout",
        "ringing",
        "session",
        "vm_since",
    )

    def __init__(self, cid: int, call: _Leg, amd: bool, ring_timeout: float | None) -> None:
        self.cid = cid
        self.call: _Leg | None = call
        self.agent: _Leg | None = None
        self.amd = amd
        self.answered = False
        self.answered_mono = 0.0
        self.answered_wall = 0.0
        self.bridged = False
        self.closing = False
        self.ringing: set[int] = set()
        self.port: _FramePort | None = None
        self.player: _Player | None = None
        self.ring_timeout = ring_timeout
        self.ring_deadline: float | None = None  # CANCEL then: ring_timeout after the INVITE, >= 15 s of ringing
        self.ring_expired = False  # we cancelled it for ringing out (not the parent's hang-up)
        self.invited = 0.0  # monotonic time the INVITE left
        self.heard = False  # any response to the INVITE arrived (100 Trying included)
        self.reported = False  # its failure is already reported; the slot stays held until pjsip lets it go
        self.machine = False  # detection said machine: no connect deadline, no message of ours
        self.connect_deadline: float | None = None  # neither agent nor message by then: the message, from here
        self.probe: _FramePort | None = None  # listens to the message player for its first sound
        self.session: _AgentSession | None = None  # the local agent this customer is joined to
        self.detector: Any = None  # the answering-machine detector listening to this call, kept for its timings
        self.play_verb = ""
        self.message_wall: float | None = None  # when the message's first sound went out (wall clock)
        self.vm_since: float | None = None  # waiting for the end of a machine's greeting since then
        self.agent_answered = False  # the agent leg is confirmed (early media alone is not an agent)
        self.agent_deadline: float | None = None  # the agent leg must answer by then, or the bridge has failed
        self.agent_fail_code: int | None = None  # why we dropped the agent leg ourselves (timeout, media)
        self.orphan_deadline: float | None = None  # bridge failed: the parent must order message or hang-up by then
        self.inbound = False  # an inbound caller answered by this worker (no ring, no connect limit, no message)
        self.queue: _QueuePlayer | None = None  # the queue audio playing to an inbound caller until the bridge


class Worker:
    """The endpoint and the calls of one process; :meth:`run` is the process's whole life."""

    def __init__(self, conn: Connection, cfg: WorkerConfig) -> None:
        self.conn = conn
        self.cfg = cfg
        self.ep: pj.Endpoint | None = None
        self.acc: _Account | None = None
        self.customers: dict[int, _Customer] = {}
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.ports: list[_FramePort] = []
        self.stopping = False
        self.registered = not cfg.trunk.register
        self.sip_port = 0
        self.destroyed = False
        # Most legs this endpoint has held at once: a PJ_ETOOMANY below it is a slot still in teardown (retry),
        # at or above it is the build's real limit (tell the parent, which learns it).
        self.peak = 0
        self.deferred: dict[int, tuple[str, float | None, bool, float]] = {}  # cid -> dial waiting for a slot
        self.deferred_bridges: dict[int, tuple[str, float]] = {}  # cid -> agent leg waiting for a slot
        self.sessions: dict[str, _AgentSession] = {}  # agents whose standing legs this worker hosts
        self.cross_legs: list[_CrossLeg] = []  # referenced until DISCONNECTED, like every pj.Call
        # The rate cap is enforced here too, not only by the parent: it is this process that aborts when exceeded.
        self.setup_interval = 1.0 / cfg.setups_per_second
        self.next_setup = 0.0
        # Inbound callers are named here by negative ids (the parent's dials are >= 0), and offered to the parent,
        # which accepts (200 OK) or refuses (486) each by the queue's length; no answer by the deadline: 503.
        self.next_inbound = -1
        self.offers: dict[int, float] = {}  # cid -> the parent must accept or refuse by then

    # -- plumbing ---------------------------------------------------------------------------------------

    def send(self, *msg: Any) -> None:
        try:
            self.conn.send(msg)
        except (BrokenPipeError, OSError):
            self.stopping = True  # the parent is gone: wind down

    def legs(self) -> int:
        customers = sum((c.call is not None) + (c.agent is not None) for c in self.customers.values())
        return customers + sum(s.leg is not None for s in self.sessions.values()) + len(self.cross_legs)

    # -- life -------------------------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.cfg
        ep = pj.Endpoint()
        # pjlib announces itself on stdout from libCreate, before any log level can be set; the level set below
        # governs everything after. Kept when pjsip logging is asked for.
        with _stdout_silenced(cfg.pjsip_log_level == 0):
            ep.libCreate()
        self.ep = ep
        epc = pj.EpConfig()
        epc.uaConfig.threadCnt = 0
        epc.uaConfig.mainThreadOnly = True
        epc.uaConfig.maxCalls = cfg.max_calls
        epc.uaConfig.userAgent = "predictive-dialer"
        epc.logConfig.level = cfg.pjsip_log_level
        epc.logConfig.consoleLevel = cfg.pjsip_log_level
        epc.medConfig.noVad = True
        ep.libInit(epc)
        tc = pj.TransportConfig()
        tc.port = cfg.sip_port
        tc.boundAddress = cfg.bind
        kind = pj.PJSIP_TRANSPORT_TCP if cfg.trunk.transport == "tcp" else pj.PJSIP_TRANSPORT_UDP
        tid = ep.transportCreate(kind, tc)
        self.sip_port = int(ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])
        ep.libStart()
        ep.audDevManager().setNullDev()

        trunk = cfg.trunk
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{trunk.caller_id}@{cfg.bind}:{self.sip_port}"
        if trunk.register:
            acfg.regConfig.registrarUri = f"sip:{trunk.host}:{trunk.port}"
            acfg.regConfig.registerOnAdd = True
            acfg.regConfig.timeoutSec = 300
        if trunk.username:
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", trunk.realm, trunk.username, 0, trunk.password))
        mt = acfg.mediaConfig.transportConfig
        mt.port = cfg.rtp_port
        mt.portRange = cfg.rtp_port_range
        mt.boundAddress = cfg.bind
        self.acc = _Account(self)
        self.acc.create(acfg)
        if self.registered:
            self.send("ready", os.getpid(), self.sip_port, ep.libVersion().full)

    def on_reg(self, code: int, reason: str) -> None:
        if self.registered:
            return
        if 200 <= code < 300:
            self.registered = True
            assert self.ep is not None
            self.send("ready", os.getpid(), self.sip_port, self.ep.libVersion().full)
        elif code >= 300:
            self.send("fatal", f"registration failed: {code} {reason}")
            self.stopping = True

    def run(self) -> None:
        ep = self.ep
        assert ep is not None
        cfg = self.cfg
        while not self.stopping or self.customers or self.cross_legs or any(a.leg for a in self.sessions.values()):
            busy = bool(self.customers) or not self.registered or bool(self.deferred) or bool(self.deferred_bridges)
            ep.libHandleEvents(cfg.poll_ms if busy else cfg.idle_poll_ms)
            try:
                while self.conn.poll(0):
                    self.command(self.conn.recv())
            except (EOFError, OSError):
                self.stopping = True
                self.deferred.clear()
                for cid in list(self.customers):
                    self.hangup(cid)
            self.drain()
            self.timers()
            self.retry_deferred()
            up = bool(self.customers or self.cross_legs or any(a.leg for a in self.sessions.values()))
            if self.stopping and up and not getattr(self, "_stop_at", None):
                self._stop_at = time.monotonic() + 5.0
            if self.stopping and up and time.monotonic() > self._stop_at:
                break  # the far ends never confirmed our BYEs; give up rather than hang

    def shutdown(self) -> None:
        """Release every pjsua2 object before ``libDestroy``: one left alive aborts the process at exit."""
        ep = self.ep
        if ep is None or self.destroyed:
            return
        with contextlib.suppress(pj.Error):
            ep.hangupAllCalls()
        for customer in self.customers.values():
            customer.call = customer.agent = None
            customer.player = customer.queue = None
        self.customers.clear()
        for session in self.sessions.values():
            session.leg = None
        self.sessions.clear()
        self.cross_legs.clear()
        with contextlib.suppress(pj.Error):
            ep.audDevManager().setNoDev()
        for port in self.ports:
            port.detector = None  # ports stay referenced: deleting one that carried audio aborts in pjmedia
        if self.acc is not None:
            self.acc.shutdown()
            self.acc = None
        gc.collect()
        ep.libDestroy()
        # The Endpoint object itself stays referenced: its destructor would walk media ports pjmedia has already
        # destroyed, and abort. The process ends with os._exit right after this.
        self.destroyed = True

    # -- commands from the parent -----------------------------------------------------------------------

    def command(self, msg: tuple[Any, ...]) -> None:
        verb = msg[0]
        if verb == "dial":
            self.dial(*msg[1:])
        elif verb == "hangup":
            self.hangup(msg[1])
        elif verb == "play":
            self.play(msg[1])
        elif verb == "voicemail":
            self.voicemail(msg[1])
        elif verb == "bridge":
            self.bridge(msg[1], msg[2])
        elif verb == "join":
            self.join(msg[1], msg[2])
        elif verb == "agent_login":
            self.agent_login(msg[1], msg[2])
        elif verb == "agent_logout":
            self.agent_logout(msg[1])
        elif verb == "inbound_accept":
            self.inbound_accept(msg[1])
        elif verb == "inbound_refuse":
            self.inbound_refuse(msg[1], msg[2])
        elif verb == "stop":
            self.stopping = True
            for cid in list(self.deferred):
                del self.deferred[cid]
                self.send("unplaced", cid, "worker stopping")
            for cid in list(self.customers):
                self.hangup(cid)
            for agent_id in list(self.sessions):
                self.agent_logout(agent_id)

    def dial(self, cid: int, uri: str, ring_timeout: float | None, amd: bool) -> None:
        if self.stopping:
            self.send("unplaced", cid, "worker stopping")
            return
        if self.deferred or time.monotonic() < self.next_setup:  # keep the order; keep under the setup rate
            self.deferred[cid] = (uri, ring_timeout, amd, time.monotonic() + SLOT_RETRY_SECONDS)
            return
        if self.place(cid, uri, ring_timeout, amd) == "retry":
            self.deferred[cid] = (uri, ring_timeout, amd, time.monotonic() + SLOT_RETRY_SECONDS)

    def place(self, cid: int, uri: str, ring_timeout: float | None, amd: bool) -> str:
        """Send the INVITE; ``retry`` when refused for a slot that is only still being torn down."""
        assert self.acc is not None
        call = _Leg(self, self.acc, cid, agent=False)
        customer = _Customer(cid, call, amd and self.cfg.amd.enabled, ring_timeout)
        self.customers[cid] = customer
        try:
            call.makeCall(uri, pj.CallOpParam(True))
        except pj.Error as exc:
            self.customers.pop(cid, None)
            if exc.status != PJ_ETOOMANY:
                self.send("unplaced", cid, f"{exc.title}: {exc.reason}")
                return "failed"
            if self.legs() < self.peak:
                return "retry"
            self.send("toomany", cid, self.legs())
            return "failed"
        customer.invited = time.monotonic()
        if ring_timeout is not None:
            customer.ring_deadline = customer.invited + ring_timeout
        sip_call_id = ""
        with contextlib.suppress(pj.Error):
            sip_call_id = str(call.getInfo().callIdString)
        self.send("invited", cid, time.time(), sip_call_id)
        self.started_setup()
        return "placed"

    def started_setup(self) -> None:
        self.peak = max(self.peak, self.legs())
        self.next_setup = max(time.monotonic(), self.next_setup) + self.setup_interval

    def retry_deferred(self) -> None:
        """Start legs that waited for a slot or for the setup rate, agent legs first (a customer is waiting on
        them), each queue in order; give up on a leg refused for a slot for too long."""
        now = time.monotonic()
        for cid, (agent_uri, until) in list(self.deferred_bridges.items()):
            if now < self.next_setup:
                return
            del self.deferred_bridges[cid]
            if self.call_agent(cid, agent_uri) == "retry":
                if now < until:
                    self.deferred_bridges = {cid: (agent_uri, until), **self.deferred_bridges}
                    return
                self.agent_failed(cid, 503)
        for cid, (uri, ring_timeout, amd, until) in list(self.deferred.items()):
            if now < self.next_setup:
                return
            del self.deferred[cid]
            if self.place(cid, uri, ring_timeout, amd) == "retry":
                if now < until:
                    self.deferred = {cid: (uri, ring_timeout, amd, until), **self.deferred}
                    return
                self.send("unplaced", cid, "no call slot freed in time")

    def hangup(self, cid: int) -> None:
        if self.deferred.pop(cid, None) is not None:
            self.send("unplaced", cid, "hung up before dialing")
            return
        self.deferred_bridges.pop(cid, None)
        customer = self.customers.get(cid)
        if customer is None or customer.closing:
            return
        customer.closing = True
        for leg in (customer.agent, customer.call):
            if leg is not None:
                with contextlib.suppress(pj.Error):  # already disconnecting
                    leg.hangup(pj.CallOpParam(True))

    def play(self, cid: int, wav: str | None = None, verb: str = "message") -> None:
        """Play a message to an answered call, then hang up; hang up at once if it cannot play.

        The abandonment message by default; the voicemail message when leaving one on a machine. The parent is
        told ``message(cid, started)`` when the first sound went out (see :class:`_FirstAudio`), not when the
        play was ordered: the ledger stores what the person heard. Asked again while it plays (the worker may
        have started it on its own at the connect deadline), it repeats that report.
        """
        customer = self.customers.get(cid)
        if customer is None or customer.call is None:
            return
        if customer.player is not None:
            if customer.message_wall is not None:
                self.send(customer.play_verb, cid, customer.message_wall)
            return
        if customer.closing:
            return
        customer.connect_deadline = None
        if customer.agent is not None and not customer.bridged:
            self.drop_agent(customer, 408)  # too late for the agent: the person hears the message now
        probe = self.ports.pop() if self.ports else self.new_port()
        probe.cid = cid
        probe.kind = "probe"
        probe.detector = _FirstAudio()
        try:
            player = _Player(self.events, cid)
            player.createPlayer(self.cfg.abandon_wav if wav is None else wav, pj.PJMEDIA_FILE_NO_LOOP)
            player.startTransmit(probe)
            player.startTransmit(customer.call.getAudioMedia(-1))
        except pj.Error as exc:
            probe.detector = None
            self.ports.append(probe)
            self.send("error", cid, f"{verb}: {exc.reason}")
            self.hangup(cid)
            return
        customer.probe = probe
        customer.player = player
        customer.play_verb = verb
        customer.orphan_deadline = None

    def voicemail(self, cid: int) -> None:
        """Leave the campaign's message on a machine: listen until its greeting ends, then play and hang up."""
        customer = self.customers.get(cid)
        if customer is None or customer.call is None or customer.closing:
            return
        customer.machine = True
        customer.connect_deadline = None
        if not self.cfg.voicemail_wav or not customer.answered:
            self.hangup(cid)
            return
        from dialer.amd import GreetingEnd

        customer.amd = False
        port = customer.port or (self.ports.pop() if self.ports else self.new_port())
        port.cid = cid
        port.kind = "vm"
        port.detector = GreetingEnd(
            silence=self.cfg.voicemail_silence, max_wait=self.cfg.voicemail_max_wait, vad_mode=self.cfg.amd.vad_mode
        )
        customer.port = port
        customer.vm_since = time.monotonic()
        try:
            customer.call.getAudioMedia(-1).startTransmit(port)
        except pj.Error as exc:
            self.send("error", cid, f"voicemail: {exc.reason}")
            self.hangup(cid)

    def greeting_over(self, customer: _Customer) -> None:
        customer.vm_since = None
        port = customer.port
        if port is not None:
            port.detector = None
            if customer.call is not None:
                with contextlib.suppress(pj.Error):
                    customer.call.getAudioMedia(-1).stopTransmit(port)
        self.play(customer.cid, self.cfg.voicemail_wav, "voicemail")

    def bridge(self, cid: int, agent_uri: str) -> None:
        customer = self.customers.get(cid)
        if customer is not None and customer.player is not None and not customer.closing:
            # The message already plays (the connect deadline passed here first): no agent can have this person.
            self.send("bridge_failed", cid, 0)
            return
        if self.deferred_bridges or time.monotonic() < self.next_setup or self.call_agent(cid, agent_uri) == "retry":
            self.deferred_bridges[cid] = (agent_uri, time.monotonic() + SLOT_RETRY_SECONDS)

    def call_agent(self, cid: int, agent_uri: str) -> str:
        assert self.acc is not None
        customer = self.customers.get(cid)
        if customer is None or customer.closing or customer.agent is not None or customer.player is not None:
            return "failed"
        leg = _Leg(self, self.acc, cid, agent=True)
        customer.agent = leg
        try:
            leg.makeCall(agent_uri, pj.CallOpParam(True))
        except pj.Error as exc:
            customer.agent = None
            if exc.status == PJ_ETOOMANY and self.legs() < self.peak:
                return "retry"
            self.agent_failed(cid, exc.status)
            return "failed"
        deadline = time.monotonic() + self.cfg.agent_answer_timeout
        if customer.connect_deadline is not None:
            deadline = min(deadline, customer.connect_deadline)  # the person's 2 s outrank the agent's ring
        customer.agent_deadline = deadline
        self.started_setup()
        return "placed"

    def agent_failed(self, cid: int, code: int) -> None:
        """The agent leg failed before the bridge: report it and play the message to the customer at once.

        The parent turns the report into an abandonment (the person reached no live agent) and orders ``play``,
        which finds the message already playing: waiting for that order would cost the person a round trip.
        """
        customer = self.customers.get(cid)
        if customer is None or customer.closing:
            return
        customer.agent_deadline = None
        if customer.inbound:
            # An inbound caller has no connect limit: back to the queue (its audio never stopped), no message.
            customer.agent_fail_code = None
            if customer.queue is not None and customer.call is not None:  # a failed join stopped it: back on
                with contextlib.suppress(pj.Error):
                    customer.queue.startTransmit(customer.call.getAudioMedia(-1))
            self.send("bridge_failed", cid, code)
            return
        customer.orphan_deadline = time.monotonic() + self.cfg.bridge_failed_grace
        self.send("bridge_failed", cid, code)
        self.play(cid)

    def drop_agent(self, customer: _Customer, code: int) -> None:
        """Hang up the agent leg ourselves before the bridge; its DISCONNECTED then reports the failed bridge
        with ``code`` (its own status would only say we cancelled it)."""
        customer.agent_fail_code = code
        if customer.agent is not None:
            with contextlib.suppress(pj.Error):  # already disconnecting
                customer.agent.hangup(pj.CallOpParam(True))

    # -- agent sessions: standing legs ------------------------------------------------------------------

    def agent_login(self, agent_id: str, uri: str) -> None:
        """Call the agent's phone once; while that leg stays up the agent is parked here, ready for joins."""
        assert self.acc is not None
        if agent_id in self.sessions or self.stopping:
            return
        session = _AgentSession(agent_id, uri)
        leg = _SessionLeg(self, self.acc, agent_id)
        session.leg = leg
        self.sessions[agent_id] = session
        try:
            leg.makeCall(uri, pj.CallOpParam(True))
        except pj.Error as exc:
            session.leg = None
            del self.sessions[agent_id]
            self.send("agent_down", agent_id, exc.status, f"{exc.title}: {exc.reason}")
            return
        self.started_setup()

    def agent_logout(self, agent_id: str) -> None:
        session = self.sessions.get(agent_id)
        if session is None or session.leg is None:
            return
        with contextlib.suppress(pj.Error):
            session.leg.hangup(pj.CallOpParam(True))

    def on_incoming(self, prm: Any) -> None:
        """Accept the far half of a cross-worker bridge for an agent parked here; refuse anything else.

        Nobody else calls a dialer's worker. A refused call is hung up at once rather than left unreferenced.
        """
        assert self.acc is not None
        user = _request_user(str(prm.rdata.wholeMsg))
        if user.startswith("agent-"):
            self.agent_calls_in(prm, user[6:])
            return
        if self.cfg.inbound and not user.startswith("xb-"):
            self.inbound_offer(prm)
            return
        agent_id = user[3:] if user.startswith("xb-") else ""
        session = self.sessions.get(agent_id)
        free = session is not None and session.up and session.customer is None and session.cross is None
        if not free or self.stopping:
            call = pj.Call(self.acc, prm.callId)
            op = pj.CallOpParam()
            op.statusCode = 486 if session is not None else 404
            with contextlib.suppress(pj.Error):
                call.hangup(op)
            return
        assert session is not None
        leg = _CrossLeg(self, self.acc, agent_id, prm.callId)
        self.cross_legs.append(leg)
        session.cross = leg
        op = pj.CallOpParam()
        op.statusCode = 200
        try:
            leg.answer(op)
        except pj.Error as exc:
            self.send("error", 0, f"cross bridge for {agent_id}: {exc.reason}")
            session.cross = None
            self.cross_legs.remove(leg)

    def agent_calls_in(self, prm: Any, agent_id: str) -> None:
        """An agent's softphone logs in by calling us: accepted from the address configured for that agent, when
        it has no session yet and this worker has the two slots an agent needs; else refused (403, 486)."""
        assert self.acc is not None
        source = str(prm.rdata.srcAddress).rsplit(":", 1)[0].strip("[]")
        allowed = dict(self.cfg.callin_agents).get(agent_id)
        code = 0
        if allowed is None or allowed != source:
            code = 403
        elif agent_id in self.sessions or self.stopping or self.legs() + 2 > self.cfg.max_calls:
            code = 486
        if code:
            call = pj.Call(self.acc, prm.callId)
            op = pj.CallOpParam()
            op.statusCode = code
            with contextlib.suppress(pj.Error):
                call.hangup(op)
            self.send("error", 0, f"agent {agent_id!r} calling in from {source}: refused ({code})")
            return
        session = _AgentSession(agent_id, f"call-in from {source}")
        leg = _SessionLeg(self, self.acc, agent_id, prm.callId)
        session.leg = leg
        self.sessions[agent_id] = session
        op = pj.CallOpParam()
        op.statusCode = 200
        try:
            leg.answer(op)
        except pj.Error as exc:
            session.leg = None
            del self.sessions[agent_id]
            self.send("error", 0, f"agent {agent_id!r} calling in: {exc.reason}")

    # -- inbound callers ----------------------------------------------------------------------------------

    def inbound_offer(self, prm: Any) -> None:
        """A caller rang the inbound port: hold the call (100 Trying only) and ask the parent whether the queue
        takes them. Each inbound caller keeps two slots (their leg, and the near half of the bridge to an agent
        parked in another worker), so a bridge never fails for want of a slot; a caller who finds none is refused
        here with 486 Busy Here, and the parent counts them blocked."""
        assert self.acc is not None
        whole = str(prm.rdata.wholeMsg)
        sip_call_id = _header(whole, ("call-id", "i"))
        caller = _header(whole, ("from", "f"))
        callers = sum(c.inbound for c in self.customers.values())
        needed = INBOUND_SLOTS * (callers + 1) + 2 * len(self.sessions)  # an agent who called in here keeps two
        if self.stopping or needed > self.cfg.max_calls:
            call = pj.Call(self.acc, prm.callId)
            op = pj.CallOpParam()
            op.statusCode = 486
            with contextlib.suppress(pj.Error):
                call.hangup(op)
            self.send("inbound_blocked", sip_call_id, 486, "stopping" if self.stopping else "no free slot", caller)
            return
        cid = self.next_inbound
        self.next_inbound -= 1
        leg = _Leg(self, self.acc, cid, agent=False, call_id=prm.callId)
        customer = _Customer(cid, leg, False, None)
        customer.inbound = True
        self.customers[cid] = customer
        self.offers[cid] = time.monotonic() + INBOUND_OFFER_SECONDS
        self.send("inbound_offer", cid, sip_call_id, caller)

    def inbound_accept(self, cid: int) -> None:
        """The queue takes the caller: 200 OK; the queue audio starts when the media is up."""
        self.offers.pop(cid, None)
        customer = self.customers.get(cid)
        if customer is None or customer.call is None or customer.closing:
            return
        op = pj.CallOpParam()
        op.statusCode = 200
        try:
            customer.call.answer(op)
        except pj.Error as exc:
            self.send("error", cid, f"inbound answer: {exc.reason}")
            self.hangup(cid)

    def inbound_refuse(self, cid: int, code: int) -> None:
        """Refuse a caller not yet answered (486: the queue is full; 503: the parent did not answer)."""
        self.offers.pop(cid, None)
        customer = self.customers.get(cid)
        if customer is None or customer.call is None or customer.closing:
            return
        customer.closing = True
        if code == 503:
            self.send("inbound_blocked", "", code, "no answer from the dialer in time", "")
        op = pj.CallOpParam()
        op.statusCode = code
        with contextlib.suppress(pj.Error):
            customer.call.hangup(op)

    def start_queue(self, customer: _Customer) -> None:
        """Loop the queue audio to a waiting caller (silence if none was configured, or if it cannot play)."""
        if not self.cfg.queue_wav or customer.call is None:
            return
        player = _QueuePlayer()
        try:
            player.createPlayer(self.cfg.queue_wav, 0)  # 0: loop
            player.startTransmit(customer.call.getAudioMedia(-1))
        except pj.Error as exc:
            self.send("error", customer.cid, f"queue audio: {exc.reason}")
            return
        customer.queue = player

    def stop_queue(self, customer: _Customer) -> None:
        """The caller is about to hear an agent: the queue audio stops (the player stays referenced until the
        call ends, so it is never destroyed while the clock thread may tick it)."""
        if customer.queue is None or customer.call is None:
            return
        with contextlib.suppress(pj.Error):
            customer.queue.stopTransmit(customer.call.getAudioMedia(-1))

    def on_cross_state(self, leg: _CrossLeg, info: Any) -> None:
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            session = self.sessions.get(leg.agent_id)
            if session is not None and session.cross is leg:
                session.cross = None
            if leg in self.cross_legs:
                self.cross_legs.remove(leg)
        elif info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.on_cross_media(leg)

    def on_cross_media(self, leg: _CrossLeg) -> None:
        session = self.sessions.get(leg.agent_id)
        if session is None or session.cross is not leg or session.leg is None or not leg.hasMedia():
            return
        try:
            self.connect_audio(leg, session.leg)
        except pj.Error as exc:
            self.send("error", 0, f"cross bridge media for {leg.agent_id}: {exc.reason}")
            with contextlib.suppress(pj.Error):
                leg.hangup(pj.CallOpParam(True))

    @staticmethod
    def connect_audio(a: pj.Call, b: pj.Call) -> None:
        """Both ways through the conference bridge."""
        a_audio = a.getAudioMedia(-1)
        b_audio = b.getAudioMedia(-1)
        a_audio.startTransmit(b_audio)
        b_audio.startTransmit(a_audio)

    def on_session_state(self, leg: _SessionLeg, info: Any) -> None:
        session = self.sessions.get(leg.agent_id)
        if session is None or session.leg is not leg:
            return
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and not session.up:
            session.up = True
            self.send("agent_up", session.agent_id, time.time())
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            del self.sessions[session.agent_id]
            session.leg = None
            session.up = False
            # Reported first: a local hang-up below reports its customer's end at once, and the parent must learn
            # the agent is gone before that (the call then ends as "agent lost", not as a finished conversation).
            self.send("agent_down", session.agent_id, int(info.lastStatusCode), str(info.lastReason))
            # The agent's phone is gone: whoever they were talking to is cut off too (a call with no agent).
            if session.customer is not None:
                customer = self.customers.get(session.customer)
                if customer is not None:
                    customer.session = None
                    self.hangup(session.customer)
            if session.cross is not None:
                with contextlib.suppress(pj.Error):
                    session.cross.hangup(pj.CallOpParam(True))

    def on_session_media(self, leg: _SessionLeg) -> None:
        """Re-join after a re-INVITE renegotiated the agent's media (hold and resume on a softphone)."""
        session = self.sessions.get(leg.agent_id)
        if session is None or not leg.hasMedia():
            return
        with contextlib.suppress(pj.Error):
            if session.customer is not None:
                customer = self.customers.get(session.customer)
                if customer is not None and customer.call is not None:
                    self.connect_audio(customer.call, leg)
            elif session.cross is not None and session.cross.hasMedia():
                self.connect_audio(session.cross, leg)

    def on_session_dtmf(self, leg: _SessionLeg, digit: str) -> None:
        """The agent's hang-up key ends the conversation; the agent stays logged in, parked."""
        session = self.sessions.get(leg.agent_id)
        if session is None or digit != self.cfg.agent_hangup_digit:
            return
        if session.customer is not None:
            self.hangup(session.customer)
        elif session.cross is not None:
            with contextlib.suppress(pj.Error):
                session.cross.hangup(pj.CallOpParam(True))

    def join(self, cid: int, agent_id: str) -> None:
        """Connect an answered customer to an agent parked on this worker: no call setup, only the bridge."""
        customer = self.customers.get(cid)
        session = self.sessions.get(agent_id)
        if customer is None or customer.closing:
            return
        if customer.player is not None or customer.call is None:
            self.send("bridge_failed", cid, 0)  # the message already plays: too late for any agent
            return
        if session is None or not session.up or session.leg is None or session.customer is not None:
            self.agent_failed(cid, 480)
            return
        try:
            self.stop_queue(customer)
            self.connect_audio(customer.call, session.leg)
        except pj.Error as exc:
            self.send("error", cid, f"join: {exc.reason}")
            self.agent_failed(cid, 500)
            return
        session.customer = cid
        customer.session = session
        customer.bridged = True
        customer.connect_deadline = None
        self.send("bridged", cid)

    # -- pjsua2 callbacks (main thread) ----------------------------------------------------------------

    def on_tsx(self, leg: _Leg, prm: Any) -> None:
        """Note that the far end answered the INVITE at all (100 Trying counts): silence is the trunk's failure."""
        customer = self.customers.get(leg.cid)
        if customer is None or customer.heard:
            return
        try:
            event = prm.e.body.tsxState
            if event.type == pj.PJSIP_EVENT_RX_MSG and event.tsx.method == "INVITE" and event.tsx.statusCode >= 100:
                customer.heard = True
        except (AttributeError, pj.Error):
            return

    def on_state(self, leg: _Leg, info: Any, received: bool = False) -> None:
        customer = self.customers.get(leg.cid)
        if customer is None:
            return
        state = info.state
        if received and not leg.agent:
            customer.heard = True
        if leg.agent:
            if state == pj.PJSIP_INV_STATE_CONFIRMED:
                customer.agent_answered = True
                customer.agent_deadline = None
                self.on_media(leg)  # the 200 OK's SDP may have set the media up before this callback
            elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
                customer.agent = None
                if customer.bridged:
                    self.hangup(leg.cid)  # the agent hung up after talking: the call is over
                else:
                    code = customer.agent_fail_code
                    self.agent_failed(leg.cid, code if code is not None else int(info.lastStatusCode))
            return
        if customer.inbound and state == pj.PJSIP_INV_STATE_CONFIRMED:
            customer.answered = True
            customer.answered_mono = time.monotonic()
            self.send("inbound_answered", leg.cid, time.time())
            self.on_media(leg)  # the queue audio, if the media came up before this callback
            return
        if state == pj.PJSIP_INV_STATE_EARLY:
            customer.heard = True
            code = int(info.lastStatusCode)
            if code in (180, 183) and not customer.ringing:
                self.send("ringing", leg.cid, code)
                if customer.ring_deadline is not None:
                    # Regulators count ringing from the first ring: never CANCEL before 15 s of it.
                    customer.ring_deadline = max(customer.ring_deadline, time.monotonic() + MIN_RING_SECONDS)
            if code in (180, 183):
                customer.ringing.add(code)
        elif state == pj.PJSIP_INV_STATE_CONFIRMED:
            now = time.monotonic()
            customer.heard = True
            customer.answered = True
            customer.answered_mono = now
            customer.ring_deadline = None
            wall = time.time()
            if self.cfg.connect_deadline is not None and not customer.amd:
                customer.connect_deadline = now + self.cfg.connect_deadline  # else set by the verdict
            if customer.reported:  # answered after we gave it up as silent: nobody is waiting for it
                self.hangup(leg.cid)
            elif not customer.amd:
                self.send("answered", leg.cid, wall)
            else:
                customer.answered_wall = wall
                self.on_media(leg)  # the 200 OK's SDP usually set the media up before this callback
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            # Who ended it, judged before the agent leg is hung up below: that hang-up reports the agent leg's
            # own end at once (re-entrantly), which marks the customer as closing.
            by = "local" if customer.closing else "remote"
            self.release(customer)
            customer.call = None
            if customer.session is not None:
                if customer.session.customer == leg.cid:
                    customer.session.customer = None  # the agent stays up, parked, for the next join
                customer.session = None
            if customer.agent is not None:
                with contextlib.suppress(pj.Error):
                    customer.agent.hangup(pj.CallOpParam(True))
                customer.agent = None
            del self.customers[leg.cid]
            self.offers.pop(leg.cid, None)
            if customer.inbound:
                self.send("ended", leg.cid, by)
            elif customer.reported:
                self.send("released", leg.cid)
            elif customer.answered:
                self.send("ended", leg.cid, by)
            else:
                code = int(info.lastStatusCode)
                # Nothing came back at all, or the trunk took the INVITE and the phone never rang: the network's
                # failure (back off, no lead penalty), never a "no answer" from a person.
                no_response = (not customer.heard and not customer.closing) or (
                    customer.ring_expired and not customer.ringing
                )
                self.send("failed", leg.cid, code, str(info.lastReason), no_response, False)

    def on_media(self, leg: _Leg) -> None:
        customer = self.customers.get(leg.cid)
        if customer is None or customer.call is None:
            return
        try:
            if leg.agent:
                # Only an answered agent is bridged: early media (a 183 with SDP) would otherwise count as the
                # agent, and a phone that then refuses would look like a finished conversation.
                if customer.bridged or not customer.agent_answered or not leg.hasMedia():
                    return
                if customer.player is not None:  # the message won the race: this agent comes too late
                    self.drop_agent(customer, 408)
                    return
                self.stop_queue(customer)
                agent_audio = leg.getAudioMedia(-1)
                customer_audio = customer.call.getAudioMedia(-1)
                customer_audio.startTransmit(agent_audio)
                agent_audio.startTransmit(customer_audio)
                customer.bridged = True
                customer.connect_deadline = None
                self.send("bridged", leg.cid)
            elif customer.amd and customer.answered and customer.port is None and leg.hasMedia():
                self.attach_detector(customer)
            elif customer.inbound and not customer.bridged and customer.queue is None and leg.hasMedia():
                self.start_queue(customer)
        except pj.Error as exc:
            self.send("error", leg.cid, f"media: {exc.reason}")
            if leg.agent and not customer.bridged:
                # The agent cannot be heard: a failed bridge (reported when the leg is gone), not the customer's end.
                self.drop_agent(customer, 500)
            else:
                self.hangup(leg.cid)

    def attach_detector(self, customer: _Customer) -> None:
        from dialer.amd import Detector

        assert customer.call is not None
        port = self.ports.pop() if self.ports else self.new_port()
        port.cid = customer.cid
        port.kind = "amd"
        port.detector = customer.detector = Detector.from_config(self.cfg.amd)
        customer.port = port
        customer.call.getAudioMedia(-1).startTransmit(port)

    def new_port(self) -> _FramePort:
        port = _FramePort(self.events)
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = 8000
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = 20000
        port.createPort(f"amd{id(port)}", fmt)
        return port

    def release(self, customer: _Customer) -> None:
        """Return pooled resources when a call ends; ports are reused, never deleted mid-run."""
        for port in (customer.port, customer.probe):
            if port is not None:
                port.detector = None
                self.ports.append(port)
        customer.port = customer.probe = None
        customer.player = None
        customer.queue = None

    # -- clock-thread events and timers ------------------------------------------------------------------

    def drain(self) -> None:
        while True:
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return
            kind, cid = item[0], item[1]
            customer = self.customers.get(cid)
            if customer is None:
                continue
            if kind == "amd":
                self.amd_done(customer, item[2], item[3])
            elif kind == "vm" and customer.vm_since is not None:
                self.greeting_over(customer)
            elif kind == "probe" and customer.player is not None and customer.message_wall is None:
                customer.message_wall = float(item[4])  # the tick that fired also sent that frame's RTP
                self.send(customer.play_verb, cid, customer.message_wall)
            elif kind == "eof":
                self.hangup(cid)

    def amd_done(self, customer: _Customer, verdict: str, seconds: float) -> None:
        if not customer.amd:
            return
        customer.amd = False
        customer.machine = verdict == "machine"
        speech_start = greeting_end = None
        with contextlib.suppress(Exception):  # a detector without these timings: the clock runs from the answer
            speech_start = customer.detector.speech_start
            greeting_end = customer.detector.greeting_end
        if customer.machine:
            customer.connect_deadline = None  # a machine waits for nobody
        elif self.cfg.connect_deadline is not None:
            start = customer.answered_mono + clock_offset(self.cfg.connect_clock, speech_start, greeting_end, seconds)
            customer.connect_deadline = start + self.cfg.connect_deadline
        port = customer.port
        if port is not None and customer.call is not None:
            with contextlib.suppress(pj.Error):
                customer.call.getAudioMedia(-1).stopTransmit(port)
        self.send("amd", customer.cid, verdict, seconds, customer.answered_wall, speech_start, greeting_end)

    def timers(self) -> None:
        now = time.monotonic()
        cfg = self.cfg
        for cid, until in list(self.offers.items()):
            if now > until:  # the parent never said whether to take this caller: refuse rather than leave it ringing
                self.inbound_refuse(cid, 503)
        for customer in list(self.customers.values()):
            if not customer.answered and not customer.closing and not customer.reported and customer.invited:
                if not customer.heard and now - customer.invited > cfg.no_response_timeout:
                    # Not even a 100 Trying: the trunk is silent. Say so now (NETWORK, back-off); pjsip may only
                    # CANCEL after a provisional response, so the slot stays held until its INVITE times out.
                    customer.reported = True
                    self.send("failed", customer.cid, 0, "no response to the INVITE", True, True)
                    self.hangup(customer.cid)
                elif customer.ring_deadline is not None and now >= customer.ring_deadline:
                    customer.ring_expired = True
                    self.hangup(customer.cid)
            if customer.amd and customer.answered and now - customer.answered_mono >= cfg.amd.budget:
                # no decision within the budget (no RTP at all, media never came up): fail closed as "unsure",
                # which goes to an agent with the rest of the connect limit still ahead
                if customer.port is not None:
                    customer.port.detector = None
                self.amd_done(customer, "unsure", now - customer.answered_mono)
            if customer.vm_since is not None and now - customer.vm_since > cfg.voicemail_max_wait + 1.0:
                self.greeting_over(customer)  # no frames at all (media gone): leave the message anyway
            if customer.agent_deadline is not None and now > customer.agent_deadline and customer.agent is not None:
                # The agent's phone rings on: give up on it (CANCEL); its DISCONNECTED reports the failed bridge.
                customer.agent_deadline = None
                self.drop_agent(customer, 408)
            if (
                customer.connect_deadline is not None
                and now >= customer.connect_deadline
                and not customer.closing
                and not customer.machine
                and not customer.bridged
            ):
                # Neither an agent nor the parent's order came in time (a stalled parent, a slow agent leg): the
                # person hears the message now, from here; the parent learns it as for any abandonment.
                customer.connect_deadline = None
                self.send("error", customer.cid, "connect deadline reached here first; playing the message")
                self.play(customer.cid)
            if customer.orphan_deadline is not None and now > customer.orphan_deadline and not customer.closing:
                customer.orphan_deadline = None
                if customer.player is None:
                    self.send("error", customer.cid, "bridge failed and no message was ordered; hanging up")
                    self.hangup(customer.cid)


def main(conn: Connection, cfg: WorkerConfig) -> None:
    """Process entry point: build the endpoint, serve the pipe until told to stop or orphaned, tear down."""
    worker = Worker(conn, cfg)
    try:
        try:
            worker.start()
        except pj.Error as exc:
            worker.send("fatal", f"endpoint setup failed: {exc.title}: {exc.reason}")
            return
        worker.run()
    finally:
        worker.shutdown()
        conn.close()
        sys.stdout.flush()
        sys.stderr.flush()
        # SWIG keeps a hidden reference to a media port that has carried audio, so Python would delete it after
        # libDestroy() and pjmedia would abort at exit. Everything is already released: leave without finalizers.
        os._exit(0)
