"""Settings of the SIP driver: the trunk, the worker pool, and what each worker is told at start.

Everything here is a plain frozen dataclass, so a :class:`WorkerConfig` crosses the process boundary by pickling
and the same values can later travel over MQTT to workers on other machines. Validation happens here, once, with
:class:`~dialer.errors.ConfigError` naming the key, so a worker never starts with a setting it cannot honour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from dialer.engine.core import MIN_RING_TIMEOUT
from dialer.errors import ConfigError

TRANSPORTS = ("udp", "tcp")

#: Where the regulators' connect clock starts on a call that answering-machine detection listened to: the 200 OK
#: (Canada; the strictest, and the default), the first word (UK), or the end of the greeting (US FTC/FCC).
CONNECT_CLOCKS = ("answer", "speech_start", "greeting_end")

#: Call setups per second one worker may start. PyPI's wheel polls 64 sockets with select(); each call holds two
#: and a closed one is only reused 500 ms later, so a process aborts (no exception) near 60 setups/s. 40/s leaves
#: room for the SIP sockets and for agent legs, which count as setups too.
DEFAULT_SETUPS_PER_WORKER = 40.0

#: ``PJSUA_MAX_CALLS`` of PyPI's ``pjsua2-python`` wheel. Only a default: a worker that hits the real limit
#: reports it and the pool lowers that worker's capacity, so a different build is detected, not assumed.
PYPI_WHEEL_MAX_CALLS = 4


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """The outbound SIP trunk.

    ``host``/``port``: where INVITEs go (``sip:NUMBER@host:port``). ``register``: send REGISTER to the trunk
    before dialing (needs ``username``). ``username``/``password``/``realm``: digest credentials, answered for
    any challenge (``realm`` ``*`` matches all). ``caller_id``: the number presented to the people we call, in
    E.164 (``+12125550123``): US rules want a number that can be called back, UK rules a valid diallable CLI, so a
    word or a malformed number is refused; there is no default, and a driver will not start without one.
    ``max_calls``: the trunk's limit on calls at once; ``calls_per_second``: its limit on new INVITEs per second.
    """

    host: str = "127.0.0.1"
    port: int = 5060
    transport: str = "udp"
    register: bool = False
    username: str = ""
    password: str = ""
    realm: str = "*"
    caller_id: str = ""
    max_calls: int | None = None
    calls_per_second: float | None = None

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError("trunk.transport", f"must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}")
        if not 0 < self.port < 65536:
            raise ConfigError("trunk.port", "must be a port number")
        if self.register and not self.username:
            raise ConfigError("trunk.username", "is required when trunk.register is set")
        if self.max_calls is not None and self.max_calls < 1:
            raise ConfigError("trunk.max_calls", "must be >= 1")
        if self.calls_per_second is not None and self.calls_per_second <= 0:
            raise ConfigError("trunk.calls_per_second", "must be > 0")
        if self.caller_id:
            check_caller_id(self.caller_id)

    def uri(self, number: str) -> str:
        """The Request-URI for ``number``; rejects characters that would let a lead rewrite the SIP message."""
        user = number.strip()
        if not user or any(not (c.isalnum() or c in "+-.*#_") for c in user):
            raise ConfigError("lead.phone", f"{number!r} is not a dialable number")
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{user}@{self.host}:{self.port}{suffix}"


@dataclass(frozen=True, slots=True)
class AmdConfig:
    """Answering-machine detection in the worker; see :class:`dialer.amd.Detector` for each threshold's meaning.

    ``budget`` is 1.5 s so that detection plus the bridge to an agent fits the 2.0-s connect limit; the other
    defaults were tuned on the development half of the corpus in tests/sip/amd_corpus.py (docs/amd.md).
    """

    enabled: bool = False
    budget: float = 1.5  # seconds from answer to a decision; past it the verdict is "unsure" (treated as a person)
    initial_silence: float = 1.5
    greeting: float = 1.2
    after_greeting_silence: float = 0.3
    max_person: float = 0.8
    waiting: float = 0.8
    max_words: int = 6
    word_gap: float = 0.1
    min_word: float = 0.1
    margin_db: float = 12.0
    beep: float = 0.3
    vad_mode: int = 3


@dataclass(frozen=True, slots=True)
class InboundConfig:
    """Inbound calls: worker processes that answer callers on ``port`` (worker *j* of ``workers`` on
    ``port + j``), play them ``queue_wav`` in a loop while they wait, and bridge them to agents like an outbound
    connect. Each caller keeps two of a worker's slots (their leg and the near half of the bridge), so a worker
    of the PyPI wheel (4 calls) holds 2 callers; one more is answered 486 Busy Here and counted blocked.
    ``max_waiting``: callers waiting at once (not yet with an agent) over all inbound workers; one more is refused
    with 486 too. ``None``: as many as the slots hold.
    """

    port: int
    workers: int = 1
    queue_wav: str = ""
    max_waiting: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ConfigError("inbound.port", "must be a port number (1-65535)")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError("inbound.workers", "must be an integer >= 1")
        if self.port + self.workers > 65536:
            raise ConfigError("inbound.workers", "leaves no room for one port per inbound worker")
        if self.max_waiting is not None and (not isinstance(self.max_waiting, int) or self.max_waiting < 1):
            raise ConfigError("inbound.max_waiting", "must be an integer >= 1")

    @property
    def ports(self) -> range:
        return range(self.port, self.port + self.workers)


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """The worker pool.

    ``workers``: processes to run. ``calls_per_worker``: calls each may hold (agent legs included); the PyPI
    wheel caps it at 4, and a worker that hits a lower real limit says so. ``sip_port``/``rtp_port``: the first
    worker's ports; worker *i* uses ``sip_port + i`` and ``rtp_port + i * rtp_ports_per_worker``.
    ``setups_per_worker``: the most calls (customer and agent legs) one worker starts per second; raise it only
    for a pjproject build with an epoll I/O queue. ``agent_legs``: reserve a second slot per customer call for
    the agent leg the bridge needs.
    ``abandon_wav``: the recorded message. ``voicemail_wav``: the message left on answering machines (when the
    campaign leaves one), played once ``voicemail_silence`` seconds of quiet follow the greeting or after
    ``voicemail_max_wait`` seconds at most. ``poll_ms``: how long a busy worker blocks in SIP polling.
    ``agent_answer_timeout``: seconds the agent's phone may take to answer the bridge before it counts as failed
    (the person hears silence meanwhile, so keep it short). ``bridge_failed_grace``: after a failed bridge the
    customer stays up for the abandonment message; if the runtime orders neither the message nor a hang-up
    within this many seconds, the worker hangs up by itself.
    ``no_response_timeout``: seconds an INVITE may go without any response at all (not even 100 Trying) before
    the worker reports it as the trunk's failure (``NETWORK``, back-off) instead of letting it "ring".
    ``silent_trunk_calls``: that many INVITEs in a row with no response at all, and nothing answered since,
    mean the trunk is down: the driver stops placing calls and raises an alert instead of burning the list.
    ``connect_deadline``: seconds after the answer (the 200 OK, on the worker's clock) by which a person with
    neither an agent nor the message gets the message from the worker itself; ``None`` leaves it to the runtime.
    The live runtime sets it from the campaign's connect limit less the time the first frame takes to go out.
    ``agent_sessions``: agents log in once and keep a standing leg (the dialer calls each agent's URI at start),
    so a connect is a join in a conference bridge with no call setup; ``False`` calls the agent's phone at every
    connect (the older model, kept for agents that cannot hold a line open). ``agent_hangup_digit``: the key an
    agent presses on a standing leg to end the conversation and stay logged in. ``connect_clock``: where the
    2-s clock starts when detection ran (one of :data:`CONNECT_CLOCKS`); the worker's deadline and the ledger's
    ``answered_at`` follow it. ``callin_agents``: ``(agent id, source address)`` pairs whose softphones may log
    in by calling a worker at ``sip:agent-ID@...`` from that address (the live runtime fills it from the agents'
    URIs whose host is an IP address); a call from anywhere else is refused. ``inbound``: inbound workers
    (:class:`InboundConfig`), started beside the ``workers``; ``None``: no inbound calls.
    """

    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    workers: int = 1
    calls_per_worker: int = PYPI_WHEEL_MAX_CALLS
    setups_per_worker: float = DEFAULT_SETUPS_PER_WORKER
    bind: str = "127.0.0.1"
    sip_port: int = 0
    rtp_port: int = 40000
    rtp_ports_per_worker: int = 200
    agent_legs: bool = True
    abandon_wav: str = ""
    voicemail_wav: str = ""
    voicemail_silence: float = 0.8
    voicemail_max_wait: float = 20.0
    agent_answer_timeout: float = 5.0
    bridge_failed_grace: float = 10.0
    no_response_timeout: float = 5.0
    silent_trunk_calls: int = 5
    connect_deadline: float | None = None
    agent_sessions: bool = True
    agent_hangup_digit: str = "#"
    connect_clock: str = "answer"
    callin_agents: tuple[tuple[str, str], ...] = ()
    amd: AmdConfig = field(default_factory=AmdConfig)
    poll_ms: int = 5
    idle_poll_ms: int = 20
    max_restarts: int = 5
    restart_window: float = 60.0
    pjsip_log_level: int = 0
    inbound: InboundConfig | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError("pool.workers", "must be >= 1")
        if self.calls_per_worker < 1:
            raise ConfigError("pool.calls_per_worker", "must be >= 1")
        if not self.setups_per_worker > 0:  # also refuses NaN
            raise ConfigError("pool.setups_per_worker", "must be > 0")
        if not (self.voicemail_silence > 0 and self.voicemail_max_wait > 0):
            raise ConfigError("pool.voicemail_silence", "voicemail_silence and voicemail_max_wait must be > 0")
        if not 0 < self.agent_answer_timeout < math.inf:
            raise ConfigError("pool.agent_answer_timeout", "must be a finite number > 0")
        if not 0 < self.bridge_failed_grace < math.inf:
            raise ConfigError("pool.bridge_failed_grace", "must be a finite number > 0")
        if not 0.5 <= self.no_response_timeout <= 32.0:
            raise ConfigError("pool.no_response_timeout", "must be between 0.5 and 32 s (SIP's INVITE timeout)")
        if len(self.agent_hangup_digit) != 1 or self.agent_hangup_digit not in "0123456789*#":
            raise ConfigError("pool.agent_hangup_digit", "must be one DTMF key (0-9, * or #)")
        if self.connect_clock not in CONNECT_CLOCKS:
            raise ConfigError("pool.connect_clock", f"must be one of {', '.join(CONNECT_CLOCKS)}")
        if self.silent_trunk_calls < 1:
            raise ConfigError("pool.silent_trunk_calls", "must be >= 1")
        if self.connect_deadline is not None and not 0 <= self.connect_deadline < math.inf:
            raise ConfigError("pool.connect_deadline", "must be a finite number >= 0")
        if self.agent_legs and self.calls_per_worker < 2:
            raise ConfigError("pool.calls_per_worker", "must be >= 2 when agent legs are bridged")
        if self.sip_port and not 0 < self.sip_port + self.workers <= 65536:
            raise ConfigError("pool.sip_port", "leaves no room for one port per worker")
        if self.rtp_ports_per_worker < 4 * self.calls_per_worker:
            raise ConfigError("pool.rtp_ports_per_worker", "needs at least 4 ports per call (RTP and RTCP, reuse)")
        if self.inbound is not None:
            if self.calls_per_worker < 2:
                raise ConfigError("pool.calls_per_worker", "must be >= 2 for inbound callers (leg and bridge)")
            ours = range(self.sip_port, self.sip_port + self.workers) if self.sip_port else range(0)
            if any(p in ours for p in self.inbound.ports):
                raise ConfigError("inbound.port", f"overlaps the pool's SIP ports ({ours.start}-{ours.stop - 1})")

    def worker(self, index: int, sip_port: int, *, inbound: bool = False) -> WorkerConfig:
        return WorkerConfig(
            index=index,
            trunk=self.trunk,
            bind=self.bind,
            sip_port=sip_port,
            rtp_port=self.rtp_port + index * self.rtp_ports_per_worker,
            rtp_port_range=self.rtp_ports_per_worker,
            max_calls=self.calls_per_worker,
            setups_per_second=self.setups_per_worker,
            abandon_wav=self.abandon_wav,
            voicemail_wav=self.voicemail_wav,
            voicemail_silence=self.voicemail_silence,
            voicemail_max_wait=self.voicemail_max_wait,
            agent_answer_timeout=self.agent_answer_timeout,
            bridge_failed_grace=self.bridge_failed_grace,
            no_response_timeout=self.no_response_timeout,
            connect_deadline=self.connect_deadline,
            agent_hangup_digit=self.agent_hangup_digit,
            connect_clock=self.connect_clock,
            callin_agents=self.callin_agents,
            amd=self.amd,
            poll_ms=self.poll_ms,
            idle_poll_ms=self.idle_poll_ms,
            pjsip_log_level=self.pjsip_log_level,
            inbound=inbound,
            queue_wav=self.inbound.queue_wav if inbound and self.inbound is not None else "",
        )

    def with_trunk(self, **changes: object) -> PoolConfig:
        return replace(self, trunk=replace(self.trunk, **changes))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What one worker process needs to build its endpoint."""

    index: int
    trunk: TrunkConfig
    bind: str
    sip_port: int
    rtp_port: int
    rtp_port_range: int
    max_calls: int
    setups_per_second: float = DEFAULT_SETUPS_PER_WORKER
    abandon_wav: str = ""
    voicemail_wav: str = ""
    voicemail_silence: float = 0.8
    voicemail_max_wait: float = 20.0
    agent_answer_timeout: float = 5.0
    bridge_failed_grace: float = 10.0
    no_response_timeout: float = 5.0
    connect_deadline: float | None = None
    agent_hangup_digit: str = "#"
    connect_clock: str = "answer"
    callin_agents: tuple[tuple[str, str], ...] = ()
    amd: AmdConfig = field(default_factory=AmdConfig)
    poll_ms: int = 5
    idle_poll_ms: int = 20
    pjsip_log_level: int = 0
    inbound: bool = False  # answers inbound callers on sip_port (and places no dials, hosts no agents)
    queue_wav: str = ""  # what they hear while waiting, looped


def clock_offset(clock: str, speech_start: float | None, greeting_end: float | None, decided: float) -> float:
    """Seconds after the 200 OK at which the connect clock starts under ``clock``, from detection's timings.

    One rule for the worker (its own message deadline) and the runtime (the ledger's ``answered_at``), so the two
    can never disagree: the first word or the greeting's end as detection heard it, never later than its verdict
    (``decided``), and the answer itself when detection heard no such moment.
    """
    offset = {"speech_start": speech_start, "greeting_end": greeting_end}.get(clock)
    return 0.0 if offset is None else min(offset, decided)


def check_caller_id(number: str) -> str:
    """Refuse a caller ID that is not a valid telephone number in E.164 form (the one people see and call back)."""
    import phonenumbers

    key = "trunk.caller_id"
    if not number.startswith("+") or not number[1:].isdigit():
        raise ConfigError(key, f"{number!r} is not a telephone number in E.164 form (like +12125550123)")
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise ConfigError(key, f"{number!r} is not a telephone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ConfigError(key, f"{number!r} is not a valid number: people could not call it back")
    return number


def check_ring_timeout(ring_timeout: float | None) -> float | None:
    """Refuse a ring timeout under the regulators' 15 s; ``None`` leaves it to the network."""
    if ring_timeout is not None and ring_timeout < MIN_RING_TIMEOUT:
        raise ConfigError("ring_timeout", f"must be at least {MIN_RING_TIMEOUT:g} s")
    return ring_timeout
