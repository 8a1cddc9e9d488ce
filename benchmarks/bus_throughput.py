"""Events per second through our bus into mosquitto, against raw aiomqtt publishing, in the same run.

    python3 benchmarks/bus_throughput.py [--messages 20000] [--window 256]

Starts its own mosquitto on a free loopback port. Every variant publishes the same ``call.record``-sized
messages at QoS 1 and stops the clock when the broker has acknowledged the last one:

* raw aiomqtt, one publish awaited at a time (what naive code does);
* raw aiomqtt, ``window`` publishes in flight (the transport's ceiling);
* MqttBus with the in-memory outbox (validation, JSON, SQLite, replay bookkeeping);
* MqttBus with an outbox file (what survives a crash of the dialer).

The figure that matters is the ratio to the windowed raw run, measured on the same machine minutes apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dialer.bus import BusConfig, MqttBus

RECORD: dict[str, Any] = {
    "call_id": 1,
    "lead_id": "L000123",
    "outcome": "connected",
    "dialed_at": 1767225600.25,
    "ended_at": 1767225745.5,
    "answered_at": 1767225609.0,
    "connected_at": 1767225609.4,
    "agent_id": "agent-17",
    "message_at": None,
    "wait": 0.4,
    "abandoned": False,
    "customer_hung_up": False,
    "agent_lost": False,
}
TOPIC = "dialer/v1/bench/event/call/record"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(workdir: Path, port: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    """Our own mosquitto on 127.0.0.1, on ``port`` (0: a free one)."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = port or free_port()
    conf = workdir / "mosquitto.conf"
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\n{user}")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        if time.monotonic() > deadline:
            raise SystemExit("mosquitto did not start")
        time.sleep(0.02)


def payload(i: int) -> bytes:
    doc = {"v": 1, "id": uuid.uuid4().hex, "type": "call.record", "campaign": "bench", "source": "raw",
           "ts": time.time(), "data": {**RECORD, "call_id": i + 1}}  # fmt: skip
    return json.dumps(doc, separators=(",", ":")).encode()


async def raw_sequential(port: int, n: int) -> float:
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        start = time.perf_counter()
        for i in range(n):
            await client.publish(TOPIC, payload(i), qos=1)
        return time.perf_counter() - start


async def raw_windowed(port: int, n: int, window: int) -> float:
    async with aiomqtt.Client(
        "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, max_inflight_messages=window
    ) as client:
        client.pending_calls_threshold = window + 16
        sem = asyncio.Semaphore(window)

        async def one(i: int) -> None:
            try:
                await client.publish(TOPIC, payload(i), qos=1)
            finally:
                sem.release()

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            await sem.acquire()
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)
        return time.perf_counter() - start


async def ours(port: int, n: int, window: int, outbox: str) -> float:
    config = BusConfig(
        port=port, client_id=f"dispatcher/bench-{uuid.uuid4().hex[:8]}", window=window, outbox=outbox, insecure=True
    )
    async with MqttBus(config, "bench") as bus:
        await bus.wait_connected(10)
        start = time.perf_counter()
        for i in range(n):
            bus.publish("call.record", **{**RECORD, "call_id": i + 1})
        if not await bus.flush(600):
            raise SystemExit("bus did not flush")
        return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--broker-port", type=int, default=0, help="the port our own mosquitto listens on (default: free)")
    args = p.parse_args()
    n, window = args.messages, args.window
    version = subprocess.run(
        [shutil.which("mosquitto") or "mosquitto", "-h"], capture_output=True, text=True
    ).stdout.splitlines()[0]
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}")
    print(f"python {platform.python_version()}, aiomqtt {aiomqtt.__version__}, {version}")
    print(f"{n} call.record messages, QoS 1, window {window}\n")
    with tempfile.TemporaryDirectory() as tmp:
        broker, port = start_broker(Path(tmp), args.broker_port)
        try:
            results = {
                "raw aiomqtt, sequential": asyncio.run(raw_sequential(port, n)),
                f"raw aiomqtt, {window} in flight": asyncio.run(raw_windowed(port, n, window)),
                "MqttBus, memory outbox": asyncio.run(ours(port, n, window, ":memory:")),
                "MqttBus, file outbox (WAL)": asyncio.run(ours(port, n, window, str(Path(tmp) / "outbox.db"))),
            }
        finally:
            broker.terminate()
            broker.wait(5)
    baseline = n / results[f"raw aiomqtt, {window} in flight"]
    print(f"{'variant':34} {'msg/s':>10} {'vs raw windowed':>16}")
    for name, seconds in results.items():
        rate = n / seconds
        print(f"{name:34} {rate:10.0f} {rate / baseline:15.2f}x")


if __name__ == "__main__":
    main()
