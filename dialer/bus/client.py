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
import inspect
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dialer.bus.outbox import Entry, Outbox
from dialer.bus.schema import Message, make
from dialer.bus.topics import DEFAULT_ROOT, Topics, check_ident
from dialer.errors import ConfigError, DialerError

log = logging.getLogger("dialer.bus")

Handler = Callable[[str, bytes, Any], Awaitable[None] | None]


class BusError(DialerError):
    """The bus cannot do what was asked (not started, closed, or the broker refused us for good)."""


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

    ``client_id`` is both the MQTT client identifier and the ``source`` of every message we send, so it must be
    unique among the dialers and workers on a broker. ``outbox`` is the SQLite file of unsent messages
    (``":memory:"`` loses them if this process dies). ``window`` bounds messages awaiting PUBACK.
    ``replay_window``: seconds of acknowledged messages sent again after a lost connection (0: none).
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

    def __post_init__(self) -> None:
        check_ident(self.client_id, "client_id")
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
        role: str = "dialer",
        capacity: int | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.config = config
        self.topics = Topics(campaign, config.root)
        self.campaign = campaign
        self.source = config.client_id
        self.role = role
        self.capacity = capacity
        self.outbox = outbox if outbox is not None else Outbox(config.outbox, durable=config.durable)
        self.connected = asyncio.Event()
        self.connections = 0  # successful connects so far (tests and health checks read it)
        self.sent = 0
        self._handlers: list[tuple[str, int, Handler]] = []
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._acked: list[int] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._send_error: BaseException | None = None
        self._stopping = False
        self._stop = asyncio.Event()
        self._lost_at: float | None = None
        self.replayed = 0  # acknowledged messages sent again after lost connections

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
        """Queue an already built message (raises :class:`~dialer.bus.outbox.OutboxError` if it cannot be kept)."""
        self.outbox.put(message.id, topic, message.to_json(), retain=retain, replace=replace, expiry=expiry)
        self._wakeup.set()

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

    # -- subscribing ------------------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None:
        """Call ``handler(topic, payload, properties)`` for every message matching ``topic_filter``.

        Subscriptions are made on every (re)connect; one added while connected is made at once. A handler that
        raises is logged and the message dropped (handlers reply with errors themselves when they can).
        """
        self._handlers.append((topic_filter, qos, handler))
        client = self._client
        if client is not None and self.connected.is_set():
            task = asyncio.ensure_future(self._subscribe_now(client, topic_filter, qos))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _subscribe_now(self, client: aiomqtt.Client, topic_filter: str, qos: int) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
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
        return make(
            "dialer.status", self.campaign, self.source, online=online, role=self.role, capacity=self.capacity
        ).to_json()

    def set_capacity(self, capacity: int) -> None:
        """Announce a new free capacity (workers): a retained status others read to plan dials."""
        self.capacity = capacity
        message = make("dialer.status", self.campaign, self.source, online=True, role=self.role, capacity=capacity)
        self.send(message, self.topics.status(self.source), retain=True, replace=True)

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
            "will": will,
            "keepalive": c.keepalive,
            "tls_context": c.tls.context() if c.tls is not None else None,
            "tls_insecure": c.tls.insecure if c.tls is not None else None,
            "max_inflight_messages": c.window,
            "timeout": 10.0,
        }

    async def _run(self) -> None:
        delay = self.config.reconnect_min
        where = f"{self.config.host}:{self.config.port}"
        while not self._stopping:
            try:
                async with aiomqtt.Client(**self._client_kwargs()) as client:
                    client.pending_calls_threshold = self.config.window + 16
                    self._client = client
                    if self._lost_at is not None and self.config.replay_window > 0:
                        self.replayed += self.outbox.requeue(self._lost_at - self.config.replay_window)
                        self._lost_at = None
                    await client.publish(self.topics.status(self.source), self._status(True), 1, True)
                    for topic_filter, qos, _ in self._handlers:
                        await client.subscribe(topic_filter, qos)
                    self.connections += 1
                    self.connected.set()
                    delay = self.config.reconnect_min
                    log.info("connected to broker %s as %s", where, self.source)
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                # paho's messages name the broker and the reason, never the credentials.
                log.warning("broker %s: %s; retrying in %.1f s", where, exc, delay)
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
        try:
            done, _ = await asyncio.wait({sender, reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    await client.publish(self.topics.status(self.source), self._status(False), 1, True, timeout=2.0)
                return
            for task in done:
                task.result()  # re-raise the MqttError that ended the connection
        finally:
            for task in (sender, reader, stopper):
                task.cancel()
            await asyncio.gather(sender, reader, stopper, return_exceptions=True)

    # -- sending ----------------------------------------------------------------------------------------

    def _cancel_inflight(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        self._inflight.clear()

    def _flush_acks(self) -> None:
        if self._acked:
            acked, self._acked = self._acked, []
            self.outbox.ack(acked, time.time(), self.config.replay_window)

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
                task.add_done_callback(self._sent)

    async def _send_one(self, client: aiomqtt.Client, entry: Entry) -> None:
        props: Properties | None = None
        if entry.expiry is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = entry.expiry
        await client.publish(entry.topic, entry.payload, entry.qos, entry.retain, props, timeout=30.0)
        self._acked.append(entry.seq)
        self.sent += 1

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._send_error = task.exception()
        self._wakeup.set()

    # -- receiving --------------------------------------------------------------------------------------

    async def _read_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            raw = payload if isinstance(payload, bytes | bytearray) else str(payload or "").encode()
            for topic_filter, _, handler in list(self._handlers):
                if not message.topic.matches(topic_filter):
                    continue
                try:
                    result = handler(message.topic.value, bytes(raw), message.properties)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("handler for %s failed", topic_filter)
