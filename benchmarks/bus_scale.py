"""A simulated 1,000-agent floor driving stand-in dial workers over the bus, against raw aiomqtt in the same run.

    python -m benchmarks.bus_scale [--agents 1000] [--workers 8] [--seconds 60] [--speedup 5] [--ramp 20]
    python -m benchmarks.bus_scale --quick       # a smoke run: 100 agents, 2 workers, about 25 s in all

Starts its own mosquitto on a free loopback port with the deploy configuration's queueing (mosquitto's defaults:
20 messages in flight and 1000 queued per client; its notices are kept, to count messages it drops). In this
process: the engine (progressive pacing unless ``--policy``) with ``--agents`` agents who log in and get ready over
``--ramp`` seconds and finish wrap-up at once, wired as ``dialer dispatch`` wires it (``CampaignBus`` publishing
the campaign's events, ``Dispatcher`` with its default offer timeout, liveness and lease). In ``--workers`` separate
processes: the real ``DialWorker`` on its own ``MqttBus``, as ``dialer worker --stand-in`` runs it, with a stand-in
placer whose calls take as long as the lead says; their capacities add up to the floor plus 10 %.

Leads follow a realistic mix, with real-world durations divided by ``--speedup``:

    outcome          share   ring (s)   then
    person            30 %    3-15      talk 5 s + exponential of mean 90 s, with an agent
    no_answer         25 %   20-30      fails
    busy              15 %    1-4       fails
    machine           12 %    4-12      answered by a machine: the engine hangs up
    rejected          10 %    0.5-2     fails
    invalid_number     8 %    0.2-1     fails

so a floor of N agents asks for about N/39 dials a second at speed-up 1 (printed as "floor demand").

Measured in the dispatcher's process over ``--seconds`` after the log-ins and a ``--warmup`` (the acceptances of
offers made before are reported on their own line): messages published (``MqttBus.sent``: the campaign's event
stream and the orders to workers; the 4 status beats a second are not counted) and worker messages received per
second; dials, finished, connected and failed-for-want-of-a-worker calls per second; the dial-offer latency, from
``bus.publish("work.dial")`` (it enters the outbox) to the start of the dispatcher's handling of that worker's
``accepted``, both on the loop's clock, over every acceptance (also those that came after the offer was withdrawn:
leaving them out would hide exactly the slow ones), as p50/p99 with distribution-free 95 % confidence intervals
(order statistics); the dispatcher's backlogs (outbox not yet acknowledged, messages received and waiting for its
loop); CPU seconds per second of the dispatcher, the workers and the broker (2 cores is 200 %). Anything abnormal
is counted: offers withdrawn for want of an answer within ``offer_timeout``, workers marked silent, refusals by
reason, late acceptances, messages the workers played on their own because no bridge order reached them in time,
workers that lost the dispatcher's lease, the dispatcher's warnings, the broker's drop notices.

Then, through the same broker, raw aiomqtt: one client (this process) publishes ``work.dial``-sized messages at
QoS 1 to a second client (a separate process, as the workers are), which answers each with an ``accepted``-sized
message: once paced at the dispatcher's measured publish rate (latency publish -> receive -> reply at the same
message load), once with 256 round trips in flight (the transport's ceiling in messages/s). The ratios ours/raw
are printed last.

``--nodelay`` is an experiment, not the deployed configuration: ``set_tcp_nodelay true`` in the broker and
TCP_NODELAY on every client socket (patched into ``MqttBus`` in this benchmark's processes only). Neither paho nor
mosquitto sets it by default, so every small message can wait for the peer's delayed ACK (about 40 ms on Linux).
``--ramp 0`` logs the whole floor in at once: a burst of one offer per agent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import describe  # noqa: E402
from benchmarks.bus_throughput import free_port  # noqa: E402
from dialer.bus.bridge import CampaignBus  # noqa: E402
from dialer.bus.client import BusConfig, MqttBus  # noqa: E402
from dialer.bus.schema import make  # noqa: E402
from dialer.distributed.dial_worker import DialRequest, DialWorker, Report, StandInPlacer  # noqa: E402
from dialer.distributed.dispatcher import Dispatcher, fresh_call_ids  # noqa: E402
from dialer.engine import events as ev  # noqa: E402
from dialer.engine.actions import DialLead, RecordCall  # noqa: E402
from dialer.engine.core import Engine, EngineConfig  # noqa: E402
from dialer.engine.records import CallRecord, Outcome  # noqa: E402
from dialer.leads import Lead  # noqa: E402
from dialer.live.runtime import AsyncRuntime  # noqa: E402
from dialer.pacing import make_policy  # noqa: E402

CAMPAIGN = "bench"
# outcome: (share, ring range in real seconds)
MIX: dict[str, tuple[float, tuple[float, float]]] = {
    "person": (0.30, (3.0, 15.0)),
    "no_answer": (0.25, (20.0, 30.0)),
    "busy": (0.15, (1.0, 4.0)),
    "machine": (0.12, (4.0, 12.0)),
    "rejected": (0.10, (0.5, 2.0)),
    "invalid_number": (0.08, (0.2, 1.0)),
}
TALK_MEAN = 90.0  # real seconds
TALK_MIN = 5.0
STAND_IN_RING = 0.005  # the stand-in's own two ring steps, on top of the lead's ring
RAW_REQ = "dialer/v1/bench/raw/req"
RAW_REP = "dialer/v1/bench/raw/rep"
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


class WarningCounter(logging.Handler):
    """Counts the dialer's warnings and errors by message template instead of printing them (while ``active``)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.active = True
        self.seen: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if self.active:
            self.seen[f"{record.levelname.lower()}: {record.msg}"] += 1


def enable_nodelay() -> None:
    """TCP_NODELAY on every MqttBus connection of this process (the benchmark's ``--nodelay`` experiment)."""
    original = MqttBus._client_kwargs

    def client_kwargs(self: MqttBus) -> dict[str, Any]:
        return {**original(self), "socket_options": NODELAY}

    MqttBus._client_kwargs = client_kwargs  # type: ignore[method-assign]


def floor_demand(agents: int, speedup: float) -> float:
    """Dials a second the floor asks for (progressive: one dial per idle agent), from the mix's means."""
    ring = sum(share * (lo + hi) / 2 for share, (lo, hi) in MIX.values())
    person = MIX["person"][0]
    talk = TALK_MIN + TALK_MEAN  # a floor plus an exponential of that mean (see FloorLeads)
    cycle = ring / person + talk  # seconds an agent takes per connected call, dials included
    return agents / (cycle * person) * speedup


# -- the floor's leads and the workers' stand-in -------------------------------------------------------------


class FloorLeads:
    """An endless, seeded lead source with the mix above; records are counted, not kept."""

    def __init__(self, speedup: float, seed: int = 14) -> None:
        self.speedup = speedup
        self.rng = random.Random(seed)
        self.kinds = list(MIX)
        self.weights = [MIX[k][0] for k in self.kinds]
        self.n = 0
        self.reported = 0

    def next_lead(self, now: float) -> Lead | None:
        self.n += 1
        kind = self.rng.choices(self.kinds, self.weights)[0]
        lo, hi = MIX[kind][1]
        fields = {"outcome": kind, "ring": f"{self.rng.uniform(lo, hi) / self.speedup:.3f}"}
        if kind == "person":
            talk = TALK_MIN + self.rng.expovariate(1 / TALK_MEAN)
            fields["talk"] = f"{talk / self.speedup:.3f}"
        return Lead(f"L{self.n}", f"+1555{self.n % 10_000_000:07d}", fields=fields)

    def report(self, record: CallRecord) -> None:
        self.reported += 1


class FloorPlacer(StandInPlacer):
    """The stand-in placer, whose calls first take the lead's ``ring`` seconds (a hang-up meanwhile cancels)."""

    def __init__(self, *, connect_deadline: float | None = None) -> None:
        super().__init__(ring=STAND_IN_RING, connect_deadline=connect_deadline)
        self._early: dict[int, tuple[asyncio.Task[Any], Report]] = {}

    async def place(self, dial: DialRequest, report: Report) -> None:
        wait = float(dial.fields.get("ring", 0.0))
        task = asyncio.current_task()
        if wait > 0 and task is not None:
            self._early[dial.call_id] = (task, report)
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                return  # hung up while ringing: hangup() reported it
            finally:
                self._early.pop(dial.call_id, None)
        await super().place(dial, report)

    async def hangup(self, call_id: int, reason: str) -> None:
        early = self._early.pop(call_id, None)
        if early is not None:
            early[0].cancel()
            early[1]("failed", call_id, reason="no_answer")  # our CANCEL before an answer
            return
        await super().hangup(call_id, reason)


async def serve_worker(port: int, name: str, capacity: int, nodelay: bool) -> None:
    """A stand-in worker process: ``dialer worker --stand-in`` with FloorPlacer; prints its counters on exit."""
    if nodelay:
        enable_nodelay()
    config = BusConfig(port=port, client_id=f"worker/{name}", insecure=True, heartbeat=0.25)
    bus = MqttBus(config, CAMPAIGN, capacity=capacity)
    worker = DialWorker(bus, FloorPlacer(connect_deadline=1.9), capacity)  # 1.9: as `dialer worker` sets it
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with bus:
        await stop.wait()
        await worker.close(5.0)
    print(json.dumps({"worker": name, "accepted": worker.accepted, "rejected": worker.rejected,
                      "lapses": worker.lapses, "released": worker.released_calls}), flush=True)  # fmt: skip


# -- the dispatcher, observed --------------------------------------------------------------------------------


@dataclass
class Counts:
    """What the measured dispatcher saw; all times on the loop's clock."""

    offer_at: dict[tuple[int, str], float] = field(default_factory=dict)  # (call id, worker) -> offer published
    # (offer time, seconds to the worker's acceptance, in time: before the offer was withdrawn)
    acceptances: list[tuple[float, float, bool]] = field(default_factory=list)
    offers: int = 0  # work.dial published (re-offers included)
    reports: int = 0  # work.event messages received
    statuses: int = 0  # worker dialer.status messages received
    accepted_bytes: int = 0
    late_accepts: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    silent_marks: int = 0
    records: int = 0
    connected: int = 0
    failed_network: int = 0
    abandoned: int = 0
    dials: int = 0  # DialLead actions


class MeasuredDispatcher(Dispatcher):
    """The real Dispatcher; the overrides only note times and counts around the original methods."""

    def __init__(self, runtime: AsyncRuntime, bus: MqttBus, **kwargs: Any) -> None:
        self.counts = Counts()
        super().__init__(runtime, bus, **kwargs)

    def _offer(self, call_id: int) -> None:
        call = self.calls.get(call_id)
        before = call.attempts if call is not None else 0
        super()._offer(call_id)
        if call is not None and call.attempts > before and call.offered_to is not None:
            self.counts.offer_at[call_id, call.offered_to] = self._now()
            self.counts.offers += 1

    def _offer_expired(self, call_id: int, wid: str, attempt: int) -> None:
        info = self.workers.get(wid)
        was = info is not None and info.silent
        super()._offer_expired(call_id, wid, attempt)
        if info is not None and info.silent and not was:
            self.counts.silent_marks += 1

    def _on_event(self, topic: str, payload: bytes, properties: Any) -> None:
        now = self._now()  # before our own handling: the wait in the receive queue counts
        c = self.counts
        c.reports += 1
        if b'"accepted"' not in payload and b'"rejected"' not in payload:
            super()._on_event(topic, payload, properties)
            return
        doc = json.loads(payload)["data"]
        call_id, kind = doc["call_id"], doc["kind"]
        super()._on_event(topic, payload, properties)
        sender = self.bus.topics.sender(topic) or ""
        sent = c.offer_at.pop((call_id, sender), None)
        if kind == "rejected":
            c.refusals[str(doc.get("reason"))] += 1
            return
        if kind != "accepted":
            return
        c.accepted_bytes = len(payload)
        call = self.calls.get(call_id)
        in_time = call is not None and call.worker == sender
        c.late_accepts += not in_time
        if sent is not None:
            c.acceptances.append((sent, now - sent, in_time))

    def _on_status(self, topic: str, payload: bytes, properties: Any) -> None:
        self.counts.statuses += 1
        super()._on_status(topic, payload, properties)


# -- statistics and process CPU --------------------------------------------------------------------------------


def quantile(xs: list[float], q: float) -> tuple[float, float, float]:
    """The q-quantile of sorted ``xs`` with a distribution-free 95 % confidence interval (order statistics)."""
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, math.nan
    half = 1.96 * math.sqrt(n * q * (1 - q))
    lo = max(1, round(n * q - half))
    hi = min(n, round(1 + n * q + half))
    return xs[min(n - 1, max(0, math.ceil(n * q) - 1))], xs[lo - 1], xs[hi - 1]


def fmt_q(xs: list[float], q: float) -> str:
    est, lo, hi = quantile(xs, q)
    return f"{est * 1e3:8.1f} ms [{lo * 1e3:.1f}, {hi * 1e3:.1f}]"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children: none here), from /proc; NaN off Linux."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_broker(workdir: Path, nodelay: bool = False) -> tuple[subprocess.Popen[bytes], int, Path]:
    """bus_throughput's broker, with its notices kept (mosquitto says there when it drops queued messages)."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = workdir / "mosquitto.conf"
    logfile = workdir / "mosquitto.log"
    user = "user root\n" if os.geteuid() == 0 else ""
    user += "set_tcp_nodelay true\n" if nodelay else ""
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest file {logfile}\n"
                    f"log_type error\nlog_type warning\nlog_type notice\n{user}")  # fmt: skip
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port, logfile
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("mosquitto did not start")
        time.sleep(0.02)


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "benchmarks.bus_scale", *args], stdout=subprocess.PIPE,
                                stderr=err, env=env, cwd=ROOT)  # fmt: skip


def stop_procs(procs: list[subprocess.Popen[bytes]]) -> list[str]:
    """SIGTERM each, wait, and return what they printed."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    out: list[str] = []
    for p in procs:
        try:
            stdout, _ = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, _ = p.communicate(timeout=5)
        out.append(stdout.decode(errors="replace"))
    return out


# -- the floor -----------------------------------------------------------------------------------------------


@dataclass
class Snap:
    t: float
    sent: int
    reports: int
    statuses: int
    dials: int
    offers: int
    records: int
    connected: int
    failed_network: int
    cpu_self: float
    cpu_workers: float
    cpu_broker: float


@dataclass
class FloorResult:
    warm: Snap
    end: Snap
    latencies: list[float]  # every acceptance of an offer published in the interval, in time or not
    in_time: int  # of those, accepted while the offer stood
    burst: list[float]
    counts: Counts
    anomalies: dict[str, Any]  # at the end of the measured interval, counted from the start
    capacity_samples: list[int]
    in_flight_samples: list[int]
    outbox_samples: list[int]  # messages in the dispatcher's outbox not yet acknowledged by the broker
    inbox_samples: list[int]  # messages received and waiting for the dispatcher's loop
    lag_samples: list[float]  # how late a 0.25 s sleep of the dispatcher's loop woke up
    worker_lines: list[str]
    sample_dial_bytes: int
    broker_notes: list[str] = field(default_factory=list)

    def rate(self, name: str) -> float:
        return float(getattr(self.end, name) - getattr(self.warm, name)) / (self.end.t - self.warm.t)

    @property
    def sent_rate(self) -> float:
        return self.rate("sent")

    @property
    def received_rate(self) -> float:
        return (self.rate("reports") + self.rate("statuses")) if self.end.t > self.warm.t else 0.0


async def run_floor(
    port: int, args: argparse.Namespace, workdir: Path, broker: subprocess.Popen[bytes], warnings: WarningCounter
) -> FloorResult:
    capacity = math.ceil(args.agents * 1.1 / args.workers)
    flags = ["--nodelay"] if args.nodelay else []
    procs = [spawn(["--serve-worker", f"s{i}", "--port", str(port), "--capacity", str(capacity), *flags],
                   workdir / f"worker-s{i}.log") for i in range(args.workers)]  # fmt: skip
    try:
        leads = FloorLeads(args.speedup)
        engine = Engine(make_policy(args.policy), leads, config=EngineConfig(first_call_id=fresh_call_ids()))
        runtime = AsyncRuntime(engine)
        bus = MqttBus(BusConfig(port=port, client_id="dispatcher/bench", insecure=True, heartbeat=0.25), CAMPAIGN)
        campaign_bus = CampaignBus(runtime, bus)
        dispatcher = MeasuredDispatcher(
            runtime, bus
        )  # dialer dispatch's defaults: offer 0.75 s, liveness 1 s, lease 3 s
        counts = dispatcher.counts
        loop = asyncio.get_running_loop()

        def dialed(action: DialLead) -> None:
            counts.dials += 1

        def recorded(action: RecordCall) -> None:
            counts.records += 1
            rec = action.record
            counts.connected += rec.outcome is Outcome.CONNECTED
            counts.abandoned += rec.abandoned
            counts.failed_network += rec.outcome is Outcome.NETWORK
            agent = rec.agent_id
            if agent is not None:  # agents finish wrap-up at once and take the next call
                loop.call_soon(lambda: runtime.submit(ev.WrapUpDone, agent_id=agent))

        runtime.on(DialLead, dialed)
        runtime.on(RecordCall, recorded)

        def snap() -> Snap:
            return Snap(loop.time(), bus.sent, counts.reports, counts.statuses, counts.dials, counts.offers,
                        counts.records, counts.connected, counts.failed_network, time.process_time(),
                        sum(cpu_seconds(p.pid) for p in procs), cpu_seconds(broker.pid))  # fmt: skip

        async with bus:
            campaign_bus.start()
            await bus.wait_connected(10)
            deadline = loop.time() + 60
            while sum(w.online for w in dispatcher.workers.values()) < args.workers:
                if loop.time() > deadline or any(p.poll() is not None for p in procs):
                    raise SystemExit(f"workers did not come up; see {workdir}/worker-*.log")
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # every worker's first beats are in: the capacity is the whole pool
            outbox_samples: list[int] = []
            inbox_samples: list[int] = []
            lag_samples: list[float] = []
            capacity_samples: list[int] = []
            in_flight_samples: list[int] = []

            def inbox() -> int:
                client = bus._client  # the benchmark looks inside: how many received messages wait for the loop
                return len(client.messages) if client is not None else 0

            async def log_in() -> None:
                step = max(1, round(args.agents * 0.05 / args.ramp)) if args.ramp > 0 else args.agents
                for i in range(args.agents):
                    runtime.submit(ev.AgentLoggedIn, agent_id=f"a{i}")
                    runtime.submit(ev.AgentReady, agent_id=f"a{i}")
                    if (i + 1) % step == 0 and i + 1 < args.agents:
                        await asyncio.sleep(0.05)

            start = loop.time()
            login = asyncio.ensure_future(log_in())
            warm_at = start + args.ramp + args.warmup
            warm: Snap | None = None
            last = snap()
            while warm is None or loop.time() < warm.t + args.seconds:
                before = loop.time()
                await asyncio.sleep(0.25)
                now_t = loop.time()
                if warm is None and now_t >= warm_at:
                    await login
                    warm = snap()
                if warm is not None:
                    lag_samples.append(now_t - before - 0.25)
                    capacity_samples.append(dispatcher.capacity)
                    in_flight_samples.append(engine.in_flight)
                    outbox_samples.append(len(bus.outbox))
                    inbox_samples.append(inbox())
                if now_t - last.t >= 5:
                    now = snap()
                    dt = now.t - last.t
                    phase = "measuring" if warm is not None else "warm-up  "
                    print(f"  {phase} t={now.t - start:4.0f} s  dials {(now.dials - last.dials) / dt:6.1f}/s  "
                          f"published {(now.sent - last.sent) / dt:5.0f}/s  in flight {engine.in_flight:4d}  "
                          f"capacity {dispatcher.capacity:4d}  withdrawn {dispatcher.withdrawn:5d}  "
                          f"outbox {len(bus.outbox):5d}  received, waiting {inbox():5d}  "
                          f"loop lag {(now_t - before - 0.25) * 1e3:4.0f} ms",
                          file=sys.stderr, flush=True)  # fmt: skip
                    last = now
            assert warm is not None
            end = snap()
            warnings.active = False
            anomalies = {
                "withdrawn offers": dispatcher.withdrawn,
                "workers marked silent": counts.silent_marks,
                "late acceptances": counts.late_accepts,
                "refusals": ", ".join(f"{k} {v}" for k, v in sorted(counts.refusals.items())) or "none",
                "calls lost with a worker": dispatcher.lost_worker_calls,
                "abandoned": counts.abandoned,
                "messages played by workers": len(dispatcher.messages),
                "dead-lettered": bus.dead_lettered,
                "reconnects": bus.connections - 1,
            }
            runtime.close()
            worker_lines = await asyncio.to_thread(stop_procs, procs)
            await campaign_bus.stop()
        measured = [(d, ok) for t, d, ok in counts.acceptances if warm.t <= t < end.t]
        lat = sorted(d for d, _ in measured)
        in_time = sum(ok for _, ok in measured)
        burst = sorted(d for t, d, _ in counts.acceptances if start <= t < warm.t)
        sample = make("work.dial", CAMPAIGN, "dispatcher/bench", call_id=fresh_call_ids(), lead_id="L123456",
                      phone="+15550123456", ring_timeout=None, deadline=time.time() + 10,
                      fields={"outcome": "no_answer", "ring": "1.234", "talk": "12.345"})  # fmt: skip
        return FloorResult(warm, end, lat, in_time, burst, counts, anomalies, capacity_samples, in_flight_samples,
                           outbox_samples, inbox_samples, lag_samples, worker_lines, len(sample.to_json()))  # fmt: skip
    finally:
        stop_procs([p for p in procs if p.poll() is None])


# -- raw aiomqtt -----------------------------------------------------------------------------------------------


def raw_payload(seq: int, size: int) -> bytes:
    head = json.dumps({"seq": seq, "pad": ""}, separators=(",", ":"))
    return head.replace('""', '"' + "x" * max(0, size - len(head)) + '"').encode()


async def raw_echo(port: int, reply_size: int, nodelay: bool) -> None:
    """The raw responder (a separate process): answers every request with a reply of ``reply_size`` bytes."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier="worker/raw",
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=256,
        socket_options=NODELAY if nodelay else (),
    ) as client:
        client.pending_calls_threshold = 10_000
        await client.subscribe(RAW_REQ, qos=1)
        print("ready", flush=True)
        tasks: set[asyncio.Task[None]] = set()

        async def serve() -> None:
            async for message in client.messages:
                seq = json.loads(bytes(message.payload))["seq"]
                task = asyncio.ensure_future(client.publish(RAW_REP, raw_payload(seq, reply_size), qos=1))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        server = asyncio.ensure_future(serve())
        await stop.wait()
        server.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)


@dataclass
class RawResult:
    seconds: float
    round_trips: int
    latencies: list[float]

    @property
    def messages_per_s(self) -> float:
        return 2 * self.round_trips / self.seconds


async def raw_round_trips(
    port: int, seconds: float, request_size: int, *, rate: float | None = None, window: int = 256, nodelay: bool
) -> RawResult:
    """Requests at ``rate`` a second (open loop), or ``window`` round trips in flight when ``rate`` is None."""
    loop = asyncio.get_running_loop()
    sent_at: dict[int, float] = {}
    latencies: list[tuple[float, float]] = []
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier="dispatcher/raw",
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=256,
        socket_options=NODELAY if nodelay else (),
    ) as client:
        client.pending_calls_threshold = 100_000
        await client.subscribe(RAW_REP, qos=1)
        tasks: set[asyncio.Task[None]] = set()
        room = asyncio.Semaphore(window)
        seq = 0

        def send() -> None:
            nonlocal seq
            seq += 1
            sent_at[seq] = loop.time()
            task = asyncio.ensure_future(client.publish(RAW_REQ, raw_payload(seq, request_size), qos=1))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        async def read() -> None:
            async for message in client.messages:
                now = loop.time()
                n = json.loads(bytes(message.payload))["seq"]
                at = sent_at.pop(n, None)
                if at is not None:
                    latencies.append((at, now - at))
                    if rate is None and n > 50:
                        room.release()

        reader = asyncio.ensure_future(read())
        for _ in range(50):  # warm the path
            send()
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.3)
        start = loop.time()
        end = start + seconds
        if rate is None:
            while loop.time() < end:
                try:
                    await asyncio.wait_for(room.acquire(), max(0.0, end - loop.time()))
                except TimeoutError:
                    break
                send()
        else:
            while (now := loop.time()) < end:
                due = int((now - start) * rate) - (seq - 50)
                for _ in range(due):
                    send()
                await asyncio.sleep(0.001)
        stopped = loop.time()
        await asyncio.sleep(0.5)  # late replies still count for latency
        reader.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    lat = sorted(d for t, d in latencies if start <= t < stopped)
    done = sum(1 for t, _ in latencies if start <= t < stopped)
    return RawResult(stopped - start, done, lat)


async def run_raw(
    port: int, workdir: Path, rate: float, seconds: float, request_size: int, reply_size: int, nodelay: bool
) -> tuple[RawResult, RawResult, float]:
    flags = ["--nodelay"] if nodelay else []
    echo = spawn(["--raw-echo", "--port", str(port), "--reply-size", str(reply_size), *flags], workdir / "raw-echo.log")
    try:
        assert echo.stdout is not None
        line = await asyncio.to_thread(echo.stdout.readline)
        if line.strip() != b"ready":
            raise SystemExit(f"raw responder did not start; see {workdir}/raw-echo.log")
        cpu0 = cpu_seconds(echo.pid)
        paced = await raw_round_trips(port, seconds, request_size, rate=rate, nodelay=nodelay)
        cpu_echo = (cpu_seconds(echo.pid) - cpu0) / paced.seconds
        ceiling = await raw_round_trips(port, seconds, request_size, nodelay=nodelay)
        return paced, ceiling, cpu_echo
    finally:
        stop_procs([echo])


# -- main --------------------------------------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    floor: FloorResult,
    paced: RawResult,
    ceiling: RawResult,
    echo_cpu: float,
    warnings: WarningCounter,
) -> None:
    w, e, c = floor.warm, floor.end, floor.counts
    dt = e.t - w.t
    pct = lambda a, b: 100 * (b - a) / dt  # noqa: E731
    print(
        f"\nfloor: {args.agents} agents, {args.policy}, {args.workers} worker processes of "
        f"{math.ceil(args.agents * 1.1 / args.workers)} slots, speed-up {args.speedup:g}x "
        f"(talk mean {(TALK_MIN + TALK_MEAN) / args.speedup:.1f} s), agents logging in over {args.ramp:g} s, "
        f"measured {dt:.1f} s after {args.warmup:g} s more"
    )
    print(f"  floor demand (model)      {floor_demand(args.agents, args.speedup):8.1f} dials/s")
    print(f"  dials                     {floor.rate('dials'):8.1f} /s   (offers {floor.rate('offers'):.1f}/s)")
    print(f"  calls finished            {floor.rate('records'):8.1f} /s   connected {floor.rate('connected'):.1f}/s, "
          f"failed for want of a worker (network) {floor.rate('failed_network'):.1f}/s")  # fmt: skip
    print(f"  published by dispatcher   {floor.sent_rate:8.0f} msg/s (events and orders; beats not counted)")
    print(f"  received from workers     {floor.received_rate:8.0f} msg/s (reports {floor.rate('reports'):.0f}, "
          f"statuses {floor.rate('statuses'):.0f})")  # fmt: skip
    print(f"  through the dispatcher    {floor.sent_rate + floor.received_rate:8.0f} msg/s")
    n = len(floor.latencies)
    late = f", {100 * (n - floor.in_time) / n:.0f} % after the offer was withdrawn" if n else ""
    print(f"  dial-offer latency  n={n}  p50 {fmt_q(floor.latencies, 0.5)}   "
          f"p99 {fmt_q(floor.latencies, 0.99)}   (every acceptance{late})")  # fmt: skip
    if floor.burst:
        print(f"  before (log-ins)    n={len(floor.burst)}  p50 {fmt_q(floor.burst, 0.5)}   "
              f"p99 {fmt_q(floor.burst, 0.99)}")  # fmt: skip
    cap, inf = floor.capacity_samples, floor.in_flight_samples
    if cap:
        print(f"  in flight           mean {sum(inf) / len(inf):.0f}, max {max(inf)}; "
              f"capacity fed to pacing min {min(cap)}, mean {sum(cap) / len(cap):.0f}")  # fmt: skip
        out, inbox, lag = floor.outbox_samples, floor.inbox_samples, sorted(floor.lag_samples)
        print(f"  dispatcher backlog  outbox mean {sum(out) / len(out):.0f}, max {max(out)}; received and waiting "
              f"mean {sum(inbox) / len(inbox):.0f}, max {max(inbox)}; loop lag p50 {lag[len(lag) // 2] * 1e3:.0f} ms, "
              f"max {lag[-1] * 1e3:.0f} ms")  # fmt: skip
    print(f"  CPU                 dispatcher {pct(w.cpu_self, e.cpu_self):.0f} %, workers "
          f"{pct(w.cpu_workers, e.cpu_workers):.0f} %, mosquitto {pct(w.cpu_broker, e.cpu_broker):.0f} % "
          f"(of {os.cpu_count()} cores = {100 * (os.cpu_count() or 1)} %)")  # fmt: skip
    print("  anomalies since the first log-in: " + ", ".join(f"{k} {v}" for k, v in floor.anomalies.items()))
    for line, count in warnings.seen.most_common(8):
        print(f"    {count:6d} x {line}")
    for line in floor.broker_notes[:3]:
        print(f"    mosquitto: {line}")
    workers = [json.loads(line) for text in floor.worker_lines for line in text.splitlines() if line.startswith("{")]
    lapses = sum(x["lapses"] for x in workers)
    released = sum(x["released"] for x in workers)
    accepted = [x["accepted"] for x in workers]
    print(f"  workers: accepted {sum(accepted)} (per worker {min(accepted, default=0)}-{max(accepted, default=0)}), "
          f"lease lapses {lapses}, calls released on their own {released}")  # fmt: skip

    print(f"\nraw aiomqtt, same broker: {floor.sample_dial_bytes} B requests, {c.accepted_bytes} B replies, QoS 1, "
          f"responder in its own process (CPU {100 * echo_cpu:.0f} % while paced)")  # fmt: skip
    print(
        f"  paced at {paced.round_trips / paced.seconds:.0f} round trips/s = {paced.messages_per_s:.0f} msg/s  "
        f"n={len(paced.latencies)}  p50 {fmt_q(paced.latencies, 0.5)}   p99 {fmt_q(paced.latencies, 0.99)}"
    )
    print(f"  256 in flight: {ceiling.messages_per_s:.0f} msg/s (ceiling)  p50 {fmt_q(ceiling.latencies, 0.5)}")

    p50, p99 = quantile(floor.latencies, 0.5)[0], quantile(floor.latencies, 0.99)[0]
    r50, r99 = quantile(paced.latencies, 0.5)[0], quantile(paced.latencies, 0.99)[0]
    through = floor.sent_rate + floor.received_rate
    print("\nours / raw")
    print(f"  offer latency p50   {p50 / r50:8.1f}x   ({p50 * 1e3:.1f} ms vs {r50 * 1e3:.1f} ms)")
    print(f"  offer latency p99   {p99 / r99:8.1f}x   ({p99 * 1e3:.1f} ms vs {r99 * 1e3:.1f} ms)")
    print(f"  msg/s               {through / ceiling.messages_per_s:8.2f}x   ({through:.0f} through the dispatcher "
          f"vs the raw ceiling {ceiling.messages_per_s:.0f})")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--workers", type=int, default=8, help="stand-in worker processes")
    p.add_argument("--seconds", type=float, default=60.0, help="measured interval, after the warm-up")
    p.add_argument("--ramp", type=float, default=20.0, help="seconds over which the agents log in (0: at once)")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds after the agents log in, not measured")
    p.add_argument("--speedup", type=float, default=5.0, help="real-world durations are divided by this")
    p.add_argument("--policy", default="progressive", choices=("progressive", "predictive"))
    p.add_argument("--raw-seconds", type=float, default=15.0, help="each raw aiomqtt run")
    p.add_argument("--quick", action="store_true", help="a smoke run: 100 agents, 2 workers, 8 s measured")
    p.add_argument(
        "--nodelay",
        action="store_true",
        help="experiment: TCP_NODELAY on every connection (broker set_tcp_nodelay, and a socket option patched into "
        "MqttBus in this benchmark's processes); the default is the deploy configuration, without",
    )
    p.add_argument("--serve-worker", metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("--raw-echo", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--capacity", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--reply-size", type=int, default=200, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_worker:
        asyncio.run(serve_worker(args.port, args.serve_worker, args.capacity, args.nodelay))
        return
    if args.raw_echo:
        asyncio.run(raw_echo(args.port, args.reply_size, args.nodelay))
        return
    if args.quick:
        args.agents, args.workers, args.seconds, args.warmup, args.raw_seconds = 100, 2, 8.0, 3.0, 3.0
        args.ramp = min(args.ramp, 2.0)
    exe = shutil.which("mosquitto") or "mosquitto"
    version = subprocess.run([exe, "-h"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"machine: {describe()}")
    nagle = "TCP_NODELAY on every connection (--nodelay)" if args.nodelay else "deploy defaults (Nagle on)"
    print(f"aiomqtt {aiomqtt.__version__}, {version}; sockets: {nagle}")
    warnings = WarningCounter()
    dialer_log = logging.getLogger("dialer")
    dialer_log.addHandler(warnings)
    dialer_log.propagate = False  # counted and summed up, not printed in the middle of the figures
    if args.nodelay:
        enable_nodelay()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker, port, broker_log = start_broker(workdir, args.nodelay)
        try:
            floor = asyncio.run(run_floor(port, args, workdir, broker, warnings))
            text = broker_log.read_text(errors="replace")
            floor.broker_notes = [line for line in text.splitlines() if "dropped" in line.lower()]
            floor.anomalies["broker drop notices"] = len(floor.broker_notes)
            paced, ceiling, echo_cpu = asyncio.run(
                run_raw(port, workdir, floor.sent_rate, args.raw_seconds, floor.sample_dial_bytes,
                        floor.counts.accepted_bytes or 200, args.nodelay)
            )  # fmt: skip
        finally:
            broker.terminate()
            broker.wait(5)
    report(args, floor, paced, ceiling, echo_cpu, warnings)


if __name__ == "__main__":
    main()
