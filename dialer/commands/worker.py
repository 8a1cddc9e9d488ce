"""``dialer worker``: a dial worker on the MQTT bus, placing a campaign's calls over SIP.

Run one per machine (or several per machine, with distinct ``--worker-id``, SIP and RTP ports) next to the SIP
trunk; the campaign's pacing process (``dialer dispatch``) runs the
:class:`~dialer.distributed.dispatcher.Dispatcher`. The identity is ``worker/<--worker-id>``, its MQTT user name:
the dispatcher offers dials to its inbox as soon as its status says it is online, so adding a worker adds
capacity with no configuration elsewhere. SIGTERM or Ctrl-C stops taking dials, hangs up the calls in progress
(each reported, so the pacing side closes them at once) and leaves; a worker that dies instead is announced by its
MQTT last will. Without a dispatcher's beat for its lease, the worker finishes its calls safely on its own.

Secrets never go on the command line, where ``ps`` shows them: ``--password-env`` and ``--trunk-password-env``
name environment variables that hold them.

``--stand-in`` replaces SIP with a placer that reports the outcome named in each lead's ``outcome`` field. It is
for tests and demos of the bus only and makes no calls.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

from dialer.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="place a campaign's calls for a dispatcher on the MQTT bus",
        description="A dial worker: takes dial requests from the MQTT bus and places them over SIP.",
    )
    b = p.add_argument_group("broker")
    b.add_argument("--broker", default="127.0.0.1", metavar="HOST", help="MQTT broker host (default 127.0.0.1)")
    b.add_argument("--broker-port", type=int, default=1883, metavar="PORT")
    b.add_argument("--username", help="MQTT user name (default: the identity, worker/<worker-id>)")
    b.add_argument("--password-env", metavar="VAR", help="environment variable holding the MQTT password")
    b.add_argument("--tls", action="store_true", help="connect with TLS (system CAs unless --tls-ca)")
    b.add_argument("--tls-ca", metavar="FILE", help="CA file to verify the broker (implies --tls)")
    b.add_argument("--tls-cert", metavar="FILE", help="client certificate (implies --tls)")
    b.add_argument("--tls-key", metavar="FILE", help="client certificate's key")
    b.add_argument("--root", default="dialer/v1", help="topic root (default dialer/v1)")
    b.add_argument("--outbox", default=":memory:", metavar="FILE", help="SQLite file keeping reports while offline")

    w = p.add_argument_group("worker")
    w.add_argument("--campaign", required=True, help="campaign id (as in the topic tree)")
    w.add_argument(
        "--worker-id",
        required=True,
        help="unique among workers; the identity is worker/<this>: the MQTT user name, client id and source",
    )
    w.add_argument("--group", default="workers", help="unused (offers now come to each worker's own inbox)")
    b.add_argument(
        "--insecure",
        action="store_true",
        help="lab only: run without credentials against a broker that lets anyone in",
    )
    w.add_argument("--drain-timeout", type=float, default=10.0, metavar="S", help="wait for hang-ups on stop")
    w.add_argument("--stand-in", action="store_true", help="tests only: no SIP, play each lead's 'outcome' field")
    w.add_argument("--capacity", type=int, default=10, help="calls at once with --stand-in (SIP: from the pool)")

    s = p.add_argument_group("SIP")
    s.add_argument("--trunk-host", help="SIP trunk host (required unless --stand-in)")
    s.add_argument("--trunk-port", type=int, default=5060)
    s.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    s.add_argument("--caller-id", metavar="E164", help="the number people see and can call back (required)")
    s.add_argument("--trunk-username", default="")
    s.add_argument("--trunk-password-env", metavar="VAR", help="environment variable holding the trunk password")
    s.add_argument("--register", action="store_true", help="REGISTER with the trunk before dialing")
    s.add_argument("--max-calls", type=int, help="the trunk's limit on calls at once")
    s.add_argument("--calls-per-second", type=float, help="the trunk's limit on new calls per second")
    s.add_argument("--sip-workers", type=int, default=1, metavar="N", help="pjsua2 processes (default 1)")
    s.add_argument("--calls-per-worker", type=int, default=4, metavar="N", help="call legs per process")
    s.add_argument("--bind", default="127.0.0.1", help="local address for SIP and RTP")
    s.add_argument("--sip-port", type=int, default=0, help="first process's SIP port (0: any)")
    s.add_argument("--rtp-port", type=int, default=40000, help="first process's RTP port")
    s.add_argument("--no-agent-legs", action="store_true", help="do not reserve a slot per call for the agent leg")
    s.add_argument(
        "--abandon-wav", default="", metavar="FILE", help="the abandonment message (any WAV; converted at start)"
    )
    s.add_argument("--amd", action="store_true", help="answering-machine detection")
    s.add_argument(
        "--connect-limit",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds from an answer to an agent; past it (less 0.1 s for the first frame) this worker plays the "
        "message itself, even if the dispatcher is gone (default 2.0, at most 2.0)",
    )
    s.add_argument("--agent", action="append", default=[], metavar="ID=URI", help="an agent's SIP URI (repeat)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every connection and capacity change")
    p.set_defaults(func=run)


def secret_from_env(var: str | None, key: str) -> str | None:
    """The secret held by environment variable ``var`` (``None`` if no variable was named); a variable named but
    not set is a configuration error under ``key``. Secrets never go on the command line, where ``ps`` shows them."""
    if var is None:
        return None
    value = os.environ.get(var)
    if value is None:
        raise ConfigError(key, f"environment variable {var} is not set")
    return value


def _agents(specs: list[str]) -> dict[str, str]:
    agents: dict[str, str] = {}
    for spec in specs:
        agent_id, sep, uri = spec.partition("=")
        if not sep or not agent_id or not uri.startswith(("sip:", "sips:")):
            raise ConfigError("--agent", f"{spec!r} is not ID=sip:URI")
        agents[agent_id] = uri
    return agents


def bus_config(args: argparse.Namespace) -> Any:
    from dialer.bus.client import BusConfig, TlsConfig

    tls = None
    if args.tls or args.tls_ca or args.tls_cert:
        tls = TlsConfig(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key)
    from dialer.bus.schema import is_ident

    if not is_ident(args.worker_id):
        raise ConfigError("--worker-id", f"{args.worker_id!r} must be 1-128 of A-Z a-z 0-9 _ . : @ - (whole)")
    identity = f"worker/{args.worker_id}"
    return BusConfig(
        args.broker,
        args.broker_port,
        identity,
        username=args.username if args.username is not None else (None if args.insecure else identity),
        password=secret_from_env(args.password_env, "--password-env"),
        tls=tls,
        root=args.root,
        outbox=args.outbox,
        durable=args.outbox != ":memory:",
        heartbeat=0.25,
        insecure=args.insecure,
    )


def pool_config(args: argparse.Namespace) -> Any:
    from dialer.sip.config import AmdConfig, PoolConfig, TrunkConfig

    if not args.trunk_host:
        raise ConfigError("--trunk-host", "is required to place calls (--stand-in is for tests only)")
    if not 0 < args.connect_limit <= 2.0:
        raise ConfigError("--connect-limit", "must be more than 0 and at most 2.0 s (the regulators' limit)")
    if not args.caller_id:
        raise ConfigError("--caller-id", "is required: the number people see and can call back (like +12125550123)")
    trunk = TrunkConfig(
        host=args.trunk_host,
        port=args.trunk_port,
        transport=args.transport,
        register=args.register,
        username=args.trunk_username,
        password=secret_from_env(args.trunk_password_env, "--trunk-password-env") or "",
        caller_id=args.caller_id or "",
        max_calls=args.max_calls,
        calls_per_second=args.calls_per_second,
    )
    return PoolConfig(
        trunk=trunk,
        workers=args.sip_workers,
        calls_per_worker=args.calls_per_worker,
        bind=args.bind,
        sip_port=args.sip_port,
        rtp_port=args.rtp_port,
        agent_legs=not args.no_agent_legs,
        abandon_wav=args.abandon_wav,
        amd=AmdConfig(enabled=args.amd),
        # The 2-s rule held at the edge: the person gets the message from here whatever the dispatcher does.
        connect_deadline=max(0.0, args.connect_limit - 0.1),
    )


async def serve(args: argparse.Namespace) -> int:
    from dialer.bus.client import IdentityInUse, MqttBus
    from dialer.distributed.dial_worker import DialWorker, StandInPlacer

    config = bus_config(args)
    log = logging.getLogger("dialer.worker")
    if args.stand_in:
        if args.capacity < 1:
            raise ConfigError("--capacity", "must be >= 1")
        bus = MqttBus(config, args.campaign, capacity=args.capacity)
        placer = StandInPlacer(connect_deadline=max(0.0, args.connect_limit - 0.1))
        worker = DialWorker(bus, placer, args.capacity)
        sip = None
    else:
        from dialer.distributed.sip_placer import SipPlacer

        agents = _agents(args.agent)
        pool = pool_config(args)
        bus = MqttBus(config, args.campaign, capacity=0)
        sip = SipPlacer(pool, agents=agents)
        worker = DialWorker(bus, sip, 0)
        sip.on_capacity = worker.set_capacity
        await sip.start()  # before the broker: a worker that cannot dial never offers to
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with bus:
            ready = asyncio.ensure_future(bus.wait_ready())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            stopped.cancel()
            if ready.done() and not ready.cancelled() and isinstance(ready.exception(), IdentityInUse):
                # One line and exit 2, before a slot is offered: the other process keeps the identity.
                raise ConfigError("--worker-id", str(ready.exception()))
            log.info("worker %s serving campaign %s (capacity %d)", worker.worker_id, args.campaign, worker.capacity)
            await stop.wait()
            log.info("stopping: hanging up %d calls", len(worker.active))
            if not await worker.close(args.drain_timeout):
                log.warning("some calls did not end within %.0f s; reported as failed", args.drain_timeout)
            if sip is not None:
                await sip.close()
    finally:
        if sip is not None:
            await sip.close()
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not args.stand_in:
        _agents(args.agent)  # fail on a bad setting before anything starts
        pool_config(args)
        if args.abandon_wav:
            # Converted once, before the pool or the broker: a file the workers could not play is one line and
            # exit 2 now, not silence for the first abandoned person; the copy is what plays from here on.
            from dialer.sip.message_audio import prepare_message

            args.abandon_wav = str(prepare_message(args.abandon_wav, key="--abandon-wav").path)
        if args.sip_port:
            from dialer.bus.preflight import check_port_free

            if args.transport == "tcp":
                check_port_free(args.bind, args.sip_port, "tcp", key="--sip-port", count=args.sip_workers)
            else:
                check_port_free(args.bind, args.sip_port, "udp", key="--sip-port", count=args.sip_workers)
    config = bus_config(args)
    # Every broker-side mistake (TLS files, credentials, an open broker) is one line and exit 2 now, before a
    # pjsua2 process starts or a slot is announced.
    from dialer.bus.preflight import preflight_bus

    asyncio.run(
        preflight_bus(
            host=args.broker,
            port=args.broker_port,
            identity=config.client_id,
            username=config.username,
            password=config.password,
            tls=config.tls is not None,
            ca_file=args.tls_ca,
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            insecure=args.insecure,
            expect_role="worker",
            identity_key="--worker-id",
        )
    )
    return asyncio.run(serve(args))
