"""The MQTT connection: outbox-first publishing, subscriptions, reconnect, TLS, auth and the last will.

:class:`MqttBus` keeps one aiomqtt connection alive for as long as it runs. Publishing never touches the network
directly: :meth:`MqttBus.publish` writes the message to the :class:`~dialer.bus.outbox.Outbox` and returns at
once (so the engine's observers, which are synchronous, can publish), and a sender task drains the outbox with up
to ``window`` QoS 1 messages awaiting their PUBACK. A message leaves the outbox only once the broker has
acknowledged it; when the connection drops, everything unacknowledged is sent again, in order, after the
reconnect, and so is everything acknowledged in the last ``replay_window`` seconds, because a broker that
crashed may have acknowledged messages it never delivered (consumers drop the copies by id). Incoming messages
go to the handlers registered with :meth:`MqttBus.subscribe`, and subscriptions are renewed on every reconnect.

The broker learns of a dialer that died without saying goodbye through the MQTT last will: a retained
``dialer.status`` with ``online: false`` on the dialer's status topic. A clean :meth:`MqttBus.stop` publishes the
same message itself and disconnects normally, so the will is not sent.

Secrets: the password never appears in a log line, an exception message or ``repr`` of the configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from dialer.bus.outbox import Entry, Outbox
from dialer.bus.schema import Message, make
from dialer.bus.topics import DEFAULT_ROOT, Topics, check_identity
from dialer.errors import ConfigError, DialerError

log = logging.getLogger("dialer.bus")

Handler = Callable[[str, bytes, Any], Awaitable[None] | None]


class BusError(DialerError):
    """The bus cannot do what was asked (not started, closed, or the broker refused us for good)."""


def _no_delay(client: aiomqtt.Client) -> None:
    """Send small messages at once (TCP_NODELAY): with Nagle's algorithm each hop of an offer or a bridge order
    waits for the previous segment's ACK, some 40 ms on Linux, inside the 2 seconds a person may wait."""
    sock = client._client.socket()  # paho's socket: aiomqtt does not expose it
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class IdentityInUse(BusError):
    """Another live process already runs under our identity: two would take the session from each other (the
    broker allows one connection per client id) several times a second, and each loss reads as a death."""


def check_topic(topic: str) -> str:
    """``topic`` if a broker will take it for a PUBLISH, else :class:`BusError`.

    Checked before a message is stored, so nothing derived from unchecked input can reach the outbox and be
    resent, refused and resent again on every reconnect."""
    if (
        not topic
        or len(topic.encode("utf-8", "surrogatepass")) > 65535
        or any(c in topic for c in "+#")
        or any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in topic)
    ):
        raise BusError(f"not a topic one can publish to: {topic!r}")
    return topic


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS to the broker. ``ca_file`` verifies the broker (system CAs when ``None``); ``cert_file`` and
    ``key_file`` authenticate us with a client certificate. ``insecure`` skips hostname checks: tests only."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False

    def context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
            if self.cert_file is not None:
                ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("bus.tls", f"cannot load TLS files: {exc}") from None
        if self.insecure:
            ctx.check_hostname = False
        return ctx


@dataclass(frozen=True, slots=True)
class BusConfig:
    """Where the broker is and how to talk to it.

    ``client_id`` is our identity, ``role/name`` (``worker/w1``): the MQTT client identifier, the ``source`` of
    every message we send and the level of the topic tree we publish under. With a ``username`` it must be the
    same string, because the broker's ACL lets a user publish only under its own name (see ``docs/deploy/``).
    A configuration with neither a user name nor a client certificate is refused unless ``insecure`` (a lab
    broker that lets anyone in: anyone who reaches it could place calls). ``outbox`` is the SQLite file of unsent
    messages (``":memory:"`` loses them if this process dies). ``window`` bounds messages awaiting PUBACK.
    ``replay_window``: seconds of acknowledged messages sent again after a lost connection (0: none).
    ``retention``: seconds acknowledged events stay in the outbox for ``events.replay`` (a consumer back from an
    outage asks for what it missed); about 0.6 KB of disk per event kept. ``heartbeat``: seconds between the
    status beats others judge our liveness by (0: none). ``session_expiry``: seconds the broker keeps our
    subscriptions and queues messages for us while we are away (0: a clean session each time).
    ``dead_letter_after``: a message the connection fails on that many times in a row is set aside (logged and
    kept in the outbox's dead-letter table) instead of being resent forever. ``exclusive``: at the first
    connection, refuse to run (:class:`IdentityInUse`) if our identity's retained status shows another instance
    beating within the last second or four heartbeats.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "dialer"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsConfig | None = None
    root: str = DEFAULT_ROOT
    keepalive: int = 30
    reconnect_min: float = 0.1
    reconnect_max: float = 5.0
    outbox: str | Path = ":memory:"
    durable: bool = False
    window: int = 256
    replay_window: float = 5.0
    retention: float = 0.0
    heartbeat: float = 0.0
    session_expiry: int = 0
    dead_letter_after: int = 3
    insecure: bool = False
    exclusive: bool = True

    @property
    def role(self) -> str:
        return self.client_id.split("/", 1)[0]

    def __post_init__(self) -> None:
        check_identity(self.client_id, "client_id")
        if self.username is not None and self.username != self.client_id:
            raise ConfigError(
                "bus.username",
                f"must be the identity {self.client_id!r}: the broker lets a user publish only under its own name",
            )
        if self.username is None and (self.tls is None or self.tls.cert_file is None) and not self.insecure:
            raise ConfigError(
                "bus.username",
                "no credentials (user name or client certificate): refused unless insecure, for a lab broker only",
            )
        if self.retention < 0 or self.heartbeat < 0 or self.session_expiry < 0:
            raise ConfigError("bus.retention", "retention, heartbeat and session_expiry must be >= 0")
        if self.dead_letter_after < 1:
            raise ConfigError("bus.dead_letter_after", "must be >= 1")
        if not 0 < self.port < 65536:
            raise ConfigError("bus.port", "must be 1-65535")
        if self.window < 1:
            raise ConfigError("bus.window", "must be >= 1")
        if self.replay_window < 0:
            raise ConfigError("bus.replay_window", "must be >= 0")
        if self.reconnect_min <= 0 or self.reconnect_max < self.reconnect_min:
            raise ConfigError("bus.reconnect_min", "need 0 < reconnect_min <= reconnect_max")
        if self.password is not None and self.username is None:
            raise ConfigError("bus.password", "a password needs a username")


class MqttBus:
    """One campaign's connection to the broker (see the module docstring for the guarantees).

    Use it as an async context manager, or call :meth:`start` and :meth:`stop`::

        async with MqttBus(BusConfig(port=1883), campaign="spring") as bus:
            bus.publish("call.ended", call_id=7)
    """

    def __init__(
        self,
        config: BusConfig,
        campaign: str,
        *,
        capacity: int | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.config = config
        self.topics = Topics(campaign, config.root)
        self.campaign = campaign
        self.source = config.client_id
        self.role = config.role
        self.capacity = capacity
        # One per process start: tells our own status from another process's under the same identity.
        self.instance = uuid.uuid4().hex[:16]
        self.status_fields: dict[str, Any] = {"epoch": self.instance}  # extra dialer.status fields, set by roles
        self.fatal: BusError | None = None  # why the bus gave up for good (IdentityInUse); see wait_ready
        self._fatal = asyncio.Event()
        self.beat = 0
        self.dead_lettered = 0
        self.outbox = outbox if outbox is not None else Outbox(config.outbox, durable=config.durable)
        self.connected = asyncio.Event()
        self.connections = 0  # successful connects so far (tests and health checks read it)
        self.sent = 0
        self._handlers: list[tuple[str, int, Handler]] = []
        self._as_published: set[str] = set()  # filters subscribed with MQTT 5 retain-as-published
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._acked: list[int] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._send_error: BaseException | None = None
        self._inflight_seq: dict[asyncio.Task[None], int] = {}
        self._broken: set[int] = set()  # seqs whose publish failed on the current connection
        self._direct: set[asyncio.Task[None]] = set()  # send_now batches
        self._stopping = False
        self._stop = asyncio.Event()
        self._lost_at: float | None = None
        self.replayed = 0  # acknowledged messages sent again after lost connections
        self.delivery_retained = False  # while a handler runs: whether the broker delivered a retained message

    # -- publishing ------------------------------------------------------------------------------------

    def publish(
        self,
        type_: str,
        /,
        *,
        topic: str | None = None,
        retain: bool = False,
        replace: bool = False,
        expiry: int | None = None,
        **data: Any,
    ) -> Message:
        """Validate, store and queue one message; returns it (its ``id`` is what consumers deduplicate on).

        ``topic`` defaults to the type's place in the tree. ``expiry`` (seconds) asks the broker to drop the
        message if nobody took it in time: for dial requests, which must not ring a phone minutes late.
        """
        message = make(type_, self.campaign, self.source, **data)
        self.send(message, topic or self.topics.event(type_), retain=retain, replace=replace, expiry=expiry)
        return message

    def send(
        self,
        message: Message,
        topic: str,
        *,
        retain: bool = False,
        replace: bool = False,
        expiry: int | None = None,
    ) -> None:
        """Queue an already built message (raises :class:`~dialer.bus.outbox.OutboxError` if it cannot be kept).

        Events and state (the dispatcher's public stream) carry their outbox sequence number as ``seq``, which is
        what a consumer resumes from with ``events.replay``."""
        check_topic(topic)
        payload: bytes | Callable[[int], bytes] = message.to_json()
        stream = topic.startswith(self._stream_prefixes)
        if stream:
            payload = lambda seq: dataclasses.replace(message, seq=seq).to_json()  # noqa: E731
        self.outbox.put(message.id, topic, payload, retain=retain, replace=replace, expiry=expiry, stream=stream)
        self._wakeup.set()

    @property
    def _stream_prefixes(self) -> tuple[str, ...]:
        return (f"{self.topics.base}/event/", f"{self.topics.base}/state/")

    def replay(self, after: int, limit: int = 10_000) -> tuple[list[bytes], int | None, bool]:
        """The events and state still kept with ``seq > after`` (payloads, oldest first), the oldest kept, and
        whether that is everything after ``after`` (nothing past it was forgotten yet)."""
        entries = self.outbox.since(after, limit)
        return [e.payload for e in entries], self.outbox.oldest(), self.outbox.forgotten() <= after

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the broker has acknowledged everything queued so far; False if ``timeout`` ran out."""

        async def drained() -> None:
            while True:
                self._flush_acks()
                if not self._inflight and len(self.outbox) == 0:
                    return
                await asyncio.sleep(0.01)

        try:
            await asyncio.wait_for(drained(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def backlog(self) -> int:
        """Messages received from the broker and not handled yet (a dispatcher behind its own inbox)."""
        client = self._client
        return len(client.messages) if client is not None else 0

    def send_now(self, topic: str, payloads: list[bytes]) -> bool:
        """Publish ``payloads`` in order on the current connection, bypassing the outbox (False if not connected).

        For what can be asked for again and must keep its original ``id``, such as replayed events: the outbox
        keys messages by ``id`` and would take a replay for a duplicate. One task sends them one after the
        other, so a long replay neither floods the client library nor takes the outbox's window."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        check_topic(topic)

        async def send_all() -> None:
            for payload in payloads:
                await client.publish(topic, payload, 1, False, timeout=30.0)

        task = asyncio.ensure_future(send_all())
        self._direct.add(task)
        task.add_done_callback(self._direct_done)
        return True

    def _direct_done(self, task: asyncio.Task[None]) -> None:
        self._direct.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("direct publish failed: %s", task.exception())

    # -- subscribing ------------------------------------------------------------------------------------

    def subscribe(
        self, topic_filter: str, handler: Handler, *, qos: int = 1, retain_as_published: bool = False
    ) -> None:
        """Call ``handler(topic, payload, properties)`` for every message matching ``topic_filter``.

        Subscriptions are made on every (re)connect; one added while connected is made at once. A handler that
        raises is logged and the message dropped (handlers reply with errors themselves when they can).
        ``retain_as_published``: :attr:`delivery_retained` says whether the sender set the retain flag, also for
        a message delivered live (without it the broker clears the flag on live deliveries, and a retained
        command would look like any other to a dispatcher that was already listening).
        """
        self._handlers.append((topic_filter, qos, handler))
        if retain_as_published:
            self._as_published.add(topic_filter)
        client = self._client
        if client is not None and self.connected.is_set():
            task = asyncio.ensure_future(self._subscribe_now(client, topic_filter, qos))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _subscribe_now(self, client: aiomqtt.Client, topic_filter: str, qos: int) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await self._subscribe(client, topic_filter, qos)

    async def _subscribe(self, client: aiomqtt.Client, topic_filter: str, qos: int) -> None:
        if topic_filter in self._as_published:
            await client.subscribe(topic_filter, options=SubscribeOptions(qos=qos, retainAsPublished=True))
        else:
            await client.subscribe(topic_filter, qos)

    # -- lifecycle --------------------------------------------------------------------------------------

    async def __aenter__(self) -> MqttBus:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        if self._task is not None:
            raise BusError("bus already started")
        self._task = asyncio.create_task(self._run(), name=f"mqtt-bus-{self.source}")

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Send what is queued (up to ``flush_timeout`` seconds), say we are offline, and disconnect.

        Messages still unsent stay in the outbox file and go out on the next start. A stop that arrives while
        the connection is still being set up waits for it, so the "online" status just published is always
        followed by "offline" (a clean disconnect sends no last will, and a stale "online" would advertise a
        worker that is gone).
        """
        task = self._task
        if task is None:
            return
        if self.connected.is_set():
            await self.flush(flush_timeout)
        self._stopping = True
        self._stop.set()
        await asyncio.wait({task}, timeout=flush_timeout + 12.0)  # the connect timeout is 10 s
        while not task.done():
            # Cancel as a last resort, repeatedly: Python 3.11's wait_for can swallow a cancellation.
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if not task.cancelled() and task.exception() is not None:
            log.error("bus connection task failed", exc_info=task.exception())
        self._task = None
        self._flush_acks()

    def _status(self, online: bool) -> bytes:
        return self._status_message(online).to_json()

    def _status_message(self, online: bool) -> Message:
        fields = dict(self.status_fields) if online else {}
        return make(
            "dialer.status",
            self.campaign,
            self.source,
            online=online,
            role=self.role,
            capacity=self.capacity if online else 0,
            beat=self.beat,
            **fields,
        )

    def set_capacity(self, capacity: int, **fields: Any) -> None:
        """Announce a new free capacity (workers): a retained status others read to plan dials."""
        self.capacity = capacity
        self.status_fields.update(fields)
        self.beat += 1
        message = self._status_message(True)
        self.send(message, self.topics.status(self.source), retain=True, replace=True)

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        """Repeat our status every ``heartbeat`` seconds, straight to the connection (not through the outbox: a
        beat is only worth something now, and must not wait behind a backlog of records)."""
        while True:
            await asyncio.sleep(self.config.heartbeat)
            self.beat += 1
            await client.publish(self.topics.status(self.source), self._status(True), 0, True, timeout=5.0)

    def _client_kwargs(self) -> dict[str, Any]:
        c = self.config
        will = aiomqtt.Will(self.topics.status(self.source), self._status(False), qos=1, retain=True)
        return {
            "hostname": c.host,
            "port": c.port,
            "username": c.username,
            "password": c.password,
            "identifier": self.source,
            "protocol": aiomqtt.ProtocolVersion.V5,
            "clean_start": c.session_expiry == 0,
            "properties": self._connect_properties(),
            "will": will,
            "keepalive": c.keepalive,
            "tls_context": c.tls.context() if c.tls is not None else None,
            "tls_insecure": c.tls.insecure if c.tls is not None else None,
            "max_inflight_messages": c.window,
            "timeout": 10.0,
        }

    def _connect_properties(self) -> Properties | None:
        if self.config.session_expiry == 0:
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry
        return props

    async def _check_identity_free(self, client: aiomqtt.Client) -> None:
        """Before saying anything at our first connection, make sure no other live process runs as us.

        Connecting under an identity in use takes the session from the process holding it (the broker allows one
        connection per client id), which reconnects within a fraction of a second and takes it back. So for one
        second we listen on our own status topic: a fresh "online" from another instance (``epoch``), or the
        broker closing our connection as the other process returns, means the identity is in use. We then leave
        without a word (no status; a clean disconnect sends no will), and the first process has seen one
        reconnect, which its peers forgive (a grace before a worker or a dispatcher that went offline counts as
        gone)."""
        topic = self.topics.status(self.source)
        window = max(1.0, 4 * self.config.heartbeat)
        await client.subscribe(topic, 1)
        try:
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    if message.topic.value != topic:
                        continue
                    try:
                        doc = json.loads(bytes(message.payload))
                        data, ts = doc["data"], float(doc["ts"])
                    except (ValueError, TypeError, KeyError):
                        continue
                    if data.get("online") is True and data.get("epoch") != self.instance:
                        age = time.time() - ts
                        if age < window:
                            raise IdentityInUse(
                                f"identity {self.source} is already running (another instance beat "
                                f"{max(age, 0.0):.1f} s ago): one process per identity; stop the other, or give "
                                "this one its own identity"
                            )
        except TimeoutError:
            pass
        except aiomqtt.MqttError:
            raise IdentityInUse(
                f"identity {self.source} is already running: the broker gave our session back to another process "
                "within a second of connecting; one process per identity"
            ) from None
        with contextlib.suppress(aiomqtt.MqttError):
            await client.unsubscribe(topic)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until connected; raise the fatal :class:`BusError` (such as :class:`IdentityInUse`) instead if the
        bus gave up, and ``TimeoutError`` if neither happened in time."""
        connected = asyncio.ensure_future(self.connected.wait())
        fatal = asyncio.ensure_future(self._fatal.wait())
        try:
            await asyncio.wait({connected, fatal}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
            fatal.cancel()
        if self.fatal is not None:
            raise self.fatal
        if not self.connected.is_set():
            raise TimeoutError("not connected to the broker in time")

    async def _run(self) -> None:
        delay = self.config.reconnect_min
        where = f"{self.config.host}:{self.config.port}"
        while not self._stopping:
            try:
                async with aiomqtt.Client(**self._client_kwargs()) as client:
                    client.pending_calls_threshold = self.config.window + 16
                    _no_delay(client)
                    self._client = client
                    if self._lost_at is not None and self.config.replay_window > 0:
                        self.replayed += self.outbox.requeue(self._lost_at - self.config.replay_window)
                        self._lost_at = None
                    if self.connections == 0 and self.config.exclusive:
                        await self._check_identity_free(client)
                    # Subscribe first: whoever reads our "online" may write to us at once (a dispatcher's offer).
                    for topic_filter, qos, _ in self._handlers:
                        await self._subscribe(client, topic_filter, qos)
                    await client.publish(self.topics.status(self.source), self._status(True), 1, True)
                    self.connections += 1
                    self.connected.set()
                    delay = self.config.reconnect_min
                    log.info("connected to broker %s as %s", where, self.source)
                    await self._serve(client)
            except IdentityInUse as exc:
                log.debug("%s", exc)  # the caller says it (wait_ready raises it), once
                self.fatal = exc
                self._fatal.set()
                self._stopping = True
            except aiomqtt.MqttError as exc:
                # paho's messages name the broker and the reason, never the credentials.
                log.warning("broker %s: %s; retrying in %.1f s", where, exc, delay)
                self._suspect(str(exc))
            finally:
                self._cancel_inflight()
                # Record acks that arrived before the loss first, so the replay below covers them too.
                self._flush_acks()
                if self.connected.is_set() and self._lost_at is None:
                    self._lost_at = time.time()
                self.connected.clear()
                self._client = None
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)  # a stop ends the wait at once
            delay = min(delay * 2, self.config.reconnect_max)

    async def _serve(self, client: aiomqtt.Client) -> None:
        sender = asyncio.create_task(self._send_loop(client))
        reader = asyncio.create_task(self._read_loop(client))
        stopper = asyncio.create_task(self._stop.wait())
        tasks = {sender, reader, stopper}
        if self.config.heartbeat > 0:
            tasks.add(asyncio.create_task(self._heartbeat(client)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    await client.publish(self.topics.status(self.source), self._status(False), 1, True, timeout=2.0)
                return
            for task in done:
                task.result()  # re-raise the MqttError that ended the connection
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- sending ----------------------------------------------------------------------------------------

    def _suspect(self, why: str) -> None:
        """The connection failed while messages were in flight: the oldest of them may be what the broker choked
        on (an invalid topic makes it disconnect us). After ``dead_letter_after`` such failures it is set aside."""
        candidates = set(self._inflight_seq.values()) | self._broken
        self._broken.clear()
        if not candidates:
            return
        seq = min(candidates)
        if self.outbox.failed(seq, why, time.time(), self.config.dead_letter_after):
            self.dead_lettered += 1
            log.error("message %d dead-lettered after %d failed connections: %s", seq, self.config.dead_letter_after,
                      why)  # fmt: skip

    def _cancel_inflight(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        self._inflight.clear()
        self._inflight_seq.clear()

    def _flush_acks(self) -> None:
        if self._acked:
            acked, self._acked = self._acked, []
            self.outbox.ack(acked, time.time(), self.config.replay_window, self.config.retention)

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        after = 0  # a fresh connection resends everything not yet acknowledged
        self._send_error = None
        window = self.config.window
        batch = max(1, window // 4)
        while True:
            if self._send_error is not None:
                raise aiomqtt.MqttError(f"publish failed: {self._send_error}")
            # Acks and refills go in batches: one SQLite transaction per message would halve the throughput.
            # Unrecorded acks are safe: at worst a crash sends those messages once more.
            if len(self._acked) >= batch or not self._inflight:
                self._flush_acks()
            room = window - len(self._inflight)
            if room < batch and self._inflight:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._wakeup.clear()
            entries = self.outbox.pending(after, room)
            if not entries:
                await self._wakeup.wait()
                continue
            for entry in entries:
                after = entry.seq
                task = asyncio.ensure_future(self._send_one(client, entry))
                self._inflight.add(task)
                self._inflight_seq[task] = entry.seq
                task.add_done_callback(self._sent)

    async def _send_one(self, client: aiomqtt.Client, entry: Entry) -> None:
        props: Properties | None = None
        if entry.expiry is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = entry.expiry
        try:
            await client.publish(entry.topic, entry.payload, entry.qos, entry.retain, props, timeout=30.0)
        except (ValueError, TypeError) as exc:  # refused by the client library itself: it will never go
            self.outbox.failed(entry.seq, str(exc), time.time(), 1)
            self.dead_lettered += 1
            log.error("message %d to %r dead-lettered: %s", entry.seq, entry.topic, exc)
            return
        self._acked.append(entry.seq)
        self.sent += 1

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        seq = self._inflight_seq.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            self._send_error = task.exception()
            if seq is not None:
                self._broken.add(seq)
        self._wakeup.set()

    # -- receiving --------------------------------------------------------------------------------------

    async def _read_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            raw = payload if isinstance(payload, bytes | bytearray) else str(payload or "").encode()
            for topic_filter, _, handler in list(self._handlers):
                if not message.topic.matches(topic_filter):
                    continue
                self.delivery_retained = bool(message.retain)
                try:
                    result = handler(message.topic.value, bytes(raw), message.properties)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("handler for %s failed", topic_filter)
