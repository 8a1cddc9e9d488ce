"""MqttBus against a real mosquitto: delivery, order, retained status, auth, no secret in logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from mqtt_broker import Broker

from dialer.bus import BusConfig, MqttBus, Outbox, Topics
from dialer.bus.schema import decode


async def _collect(
    port: int, topic: str, n: int, timeout: float = 10.0, ready: asyncio.Event | None = None, **kw: Any
) -> list[aiomqtt.Message]:
    """Subscribe, set ``ready``, and gather ``n`` messages (fewer if ``timeout`` runs out)."""
    got: list[aiomqtt.Message] = []
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, **kw) as sub:
        await sub.subscribe(topic, 1)
        if ready is not None:
            ready.set()

        async def read() -> None:
            async for m in sub.messages:
                got.append(m)
                if len(got) >= n:
                    return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(), timeout)
    return got


def test_publish_reaches_subscriber_in_order_and_status_is_retained(broker: Broker) -> None:
    async def main() -> tuple[list[aiomqtt.Message], list[aiomqtt.Message], int]:
        ready = asyncio.Event()
        topics = Topics("c1")
        collector = asyncio.create_task(_collect(broker.port, topics.events, 200, ready=ready))
        await ready.wait()
        bus = MqttBus(BusConfig(port=broker.port, client_id="dispatcher/d1", insecure=True), "c1")
        async with bus:
            for i in range(200):
                bus.publish("call.ended", call_id=i + 1)
            assert await bus.flush(10)
            got = await collector
            statuses = await _collect(broker.port, topics.statuses(), 1, timeout=3)
            left = len(bus.outbox)
        after = await _collect(broker.port, topics.statuses(), 1, timeout=3)
        return got, statuses + after, left

    got, statuses, left = asyncio.run(main())
    assert [decode(m.payload).data["call_id"] for m in got] == list(range(1, 201))  # type: ignore[arg-type]
    assert all(m.qos == 1 for m in got)
    assert left == 0
    online = decode(statuses[0].payload)  # type: ignore[arg-type]
    offline = decode(statuses[1].payload)  # type: ignore[arg-type]
    assert statuses[0].retain and online.data["online"] is True
    assert statuses[1].retain and offline.data["online"] is False  # clean stop says goodbye itself


def test_outbox_file_keeps_messages_until_a_broker_is_there(broker: Broker, tmp_path: Path) -> None:
    """Published while no broker listens: kept on disk, sent when the dialer restarts with one."""
    db = tmp_path / "box.db"
    broker.stop()

    async def offline() -> int:
        bus = MqttBus(BusConfig(port=broker.port, client_id="dispatcher/d1", outbox=db, insecure=True), "c1")
        async with bus:
            for i in range(20):
                bus.publish("call.ended", call_id=i + 1)
            await asyncio.sleep(0.3)
            assert not bus.connected.is_set()
            await bus.stop(flush_timeout=0.1)
        return len(Outbox(db))

    assert asyncio.run(offline()) == 20
    broker.start()

    async def online() -> list[aiomqtt.Message]:
        ready = asyncio.Event()
        collector = asyncio.create_task(_collect(broker.port, Topics("c1").events, 20, ready=ready))
        await ready.wait()
        async with MqttBus(
            BusConfig(port=broker.port, client_id="dispatcher/d1", outbox=db, insecure=True), "c1"
        ) as bus:
            assert await bus.flush(10)
            return await collector

    got = asyncio.run(online())
    assert sorted(decode(m.payload).data["call_id"] for m in got) == list(range(1, 21))  # type: ignore[arg-type]
    assert len(Outbox(db)) == 0


def test_password_auth_works_and_no_secret_reaches_the_logs(
    make_broker: type[Broker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-Pa55-word"
    pwfile = tmp_path / "passwd"
    pwfile.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pwfile), "dispatcher/d1", secret], check=True)
    pwfile.chmod(0o600)
    b = make_broker(f"password_file {pwfile}\n")
    b.config.write_text(b.config.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    b.start()
    caplog.set_level(logging.DEBUG)

    async def main() -> tuple[bool, bool]:
        bad = MqttBus(
            BusConfig(port=b.port, client_id="dispatcher/d1", username="dispatcher/d1", password="wrong-" + secret),
            "c1",
        )
        bad.start()
        await asyncio.sleep(0.5)
        refused = not bad.connected.is_set()
        await bad.stop()
        config = BusConfig(port=b.port, client_id="dispatcher/d1", username="dispatcher/d1", password=secret)
        logging.getLogger("test").info("config %r", config)
        async with MqttBus(config, "c1") as good:
            await good.wait_connected(5)
            good.publish("call.ended", call_id=1)
            return refused, await good.flush(5)

    refused, flushed = asyncio.run(main())
    assert refused and flushed
    assert "retrying" in caplog.text  # the refusal was logged...
    assert secret not in caplog.text  # ...without the password, and repr(config) hides it too
    assert secret not in repr(BusConfig(client_id="worker/u", username="worker/u", password=secret))


def test_tls_connection(make_broker: type[Broker], tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    b = make_broker(f"certfile {cert}\nkeyfile {key}\n")
    b.start()
    from dialer.bus import TlsConfig

    async def main() -> list[aiomqtt.Message]:
        ready = asyncio.Event()
        ctx = TlsConfig(ca_file=str(cert)).context()
        collector = asyncio.create_task(_collect(b.port, "dialer/v1/c1/event/#", 1, ready=ready, tls_context=ctx))
        await ready.wait()
        async with MqttBus(
            BusConfig(port=b.port, client_id="dispatcher/tls", tls=TlsConfig(ca_file=str(cert)), insecure=True), "c1"
        ) as bus:
            bus.publish("call.ended", call_id=5)
            assert await bus.flush(5)
            return await collector

    got = asyncio.run(main())
    assert json.loads(got[0].payload)["data"] == {"call_id": 5}  # type: ignore[arg-type]
