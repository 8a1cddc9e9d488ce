"""``dialer dispatch CAMPAIGN.toml``: a campaign's pacing side for remote dial workers, over the MQTT bus.

The same campaign file, store, compliance gates and evidence log as ``dialer run`` (:func:`~dialer.live.campaign.
load_campaign` and :meth:`~dialer.live.campaign.LiveCampaign.open`, unchanged), and the same engine and policy; but
the calls are placed by ``dialer worker`` processes that take offers from this dispatcher over the bus
(:class:`~dialer.distributed.dispatcher.Dispatcher`), and the agents are the ones their backends log in and make
ready on the bus (``agent.login``, ``agent.ready``, ...; see ``docs/embedding.md``), not the file's ``[agents]``,
whose SIP URIs are only sent to the workers with each bridge request. A backend ends an agent's wrap-up with
``agent.disposition``; ``campaign.wrap_up`` is ``dialer run``'s and is not used here.

Preview and manual dialing (``[campaign] policy = "preview"`` with ``[policy] timeout``, or ``"manual"``) run here,
unlike in ``dialer run``, because here every agent has a desktop on the bus to show the lead: the backend gets
``preview.offer`` and answers ``preview.dial`` or ``preview.skip``, and sends ``manual.dial`` for a lead the agent
chose (:class:`~dialer.bus.bridge.CampaignBus`). The dial itself is an ordinary offer to a worker, and the answer
is bridged to the reserved agent as any other call is. The leads on agents' screens are kept in the state file,
so a dispatcher killed with leads on screen does not leave them to be closed as interrupted calls (see
:func:`release_shown`); a dial no worker took within :data:`STRANDED` seconds is given back as not placed (see
:func:`settle_stranded`).

The identity on the bus is ``dispatcher/<--name>``: the MQTT user name (unless ``--insecure``) and client id. The
outbox (events not yet acknowledged by the broker, and those kept ``--retention`` seconds for consumers that ask
for a replay) is a SQLite file beside the store unless ``--outbox`` says otherwise, so nothing published is lost
if this process or the broker dies.

Start-up checks, cheapest first, each one line naming the key and exit status 2 before anything connects: the
campaign file, the bus options and identity, the TLS files, the store and its gates; then the broker itself
(reachable, our credentials accepted, and refused if it lets anonymous clients in, unless ``--insecure``).

It runs until SIGTERM or Ctrl-C, or until no lead is due and no call is in flight (``--keep-going``: until every
lead is final), as ``dialer run`` decides it, except that having no agent does not end it: agents come and go on
the bus. A signal stops dialing and waits up to ``--drain-timeout`` for the calls in flight to end (a second signal
stops at once: the workers finish those calls on their own when this dispatcher's lease lapses, and the store
closes their attempts as interrupted at the next start). Then the bus is flushed and the end-of-run summary is
printed. Exit status 0, or 1 when dialing stopped on an alert (a record that could not be kept, a failed part).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialer.commands.run import add_status_options
from dialer.errors import ConfigError

if TYPE_CHECKING:
    from dialer.bus.client import BusConfig
    from dialer.distributed.dispatcher import Dispatcher
    from dialer.distributed.state import DispatcherState
    from dialer.engine.actions import Alert, RecordCall
    from dialer.engine.core import Engine
    from dialer.engine.records import CallRecord
    from dialer.live.campaign import CampaignConfig, LiveCampaign, RunResult
    from dialer.live.runtime import AsyncRuntime

log = logging.getLogger("dialer.dispatch")

#: Seconds between the dispatcher's status beats (workers judge its lease by them): well under ``--lease`` / 3.
HEARTBEAT = 0.25


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dispatch",
        help="run a campaign's pacing for remote dial workers on the MQTT bus",
        description="Run a campaign's engine, store and bus side: dial offers go to `dialer worker` processes, "
        "agents log in through their backends' bus commands. Same campaign file as `dialer run`.",
    )
    p.add_argument("campaign", type=Path, help="campaign TOML file (the format of `dialer run`)")
    b = p.add_argument_group("broker")
    b.add_argument("--broker", default="127.0.0.1", metavar="HOST", help="MQTT broker host (default 127.0.0.1)")
    b.add_argument("--broker-port", type=int, default=1883, metavar="PORT")
    b.add_argument("--username", help="MQTT user name (default: the identity, dispatcher/<name>)")
    b.add_argument("--password-env", metavar="VAR", help="environment variable holding the MQTT password")
    b.add_argument("--tls", action="store_true", help="connect with TLS (system CAs unless --tls-ca)")
    b.add_argument("--tls-ca", metavar="FILE", help="CA file to verify the broker (implies --tls)")
    b.add_argument("--tls-cert", metavar="FILE", help="client certificate (implies --tls)")
    b.add_argument("--tls-key", metavar="FILE", help="client certificate's key")
    b.add_argument("--root", default="dialer/v1", help="topic root (default dialer/v1)")
    b.add_argument(
        "--outbox",
        metavar="FILE",
        help="SQLite file keeping events until the broker has them, and for replays (default: beside the store, "
        "<store stem>.outbox.sqlite; ':memory:' loses them if this process dies)",
    )
    add_status_options(b)
    b.add_argument(
        "--state",
        metavar="FILE",
        help="SQLite file of the calls in flight and the answers to commands, so a restarted dispatcher resumes: "
        "it adopts the calls its predecessor left and records their outcomes (default: beside the store, "
        "<store stem>.dispatch.sqlite)",
    )
    b.add_argument(
        "--retention",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="how long published events stay in the outbox for consumers asking for a replay (events.replay); "
        "costs about 0.5 KB of disk per event (measured: 0.46 KB) (default 86400: one day; 0: none)",
    )
    b.add_argument(
        "--insecure",
        action="store_true",
        help="lab only: run without credentials against a broker that lets anyone in",
    )

    d = p.add_argument_group("dispatcher")
    d.add_argument(
        "--name",
        default="main",
        help="this dispatcher's name; the identity is dispatcher/<this>: the MQTT user name, client id and source "
        "(default main)",
    )
    d.add_argument(
        "--offer-timeout",
        type=float,
        default=0.75,
        metavar="S",
        help="seconds a worker has to accept a dial offer (default 0.75)",
    )
    d.add_argument(
        "--liveness",
        type=float,
        default=1.0,
        metavar="S",
        help="a worker not heard from for this long gets no offers (default 1.0)",
    )
    d.add_argument(
        "--lease",
        type=float,
        default=3.0,
        metavar="S",
        help=f"seconds workers keep dialing for us without a beat from us (default 3.0, at least {3 * HEARTBEAT:g})",
    )
    d.add_argument(
        "--keep-going",
        action="store_true",
        help="keep running while leads wait for later (retries, calling hours) instead of stopping when none is due; "
        "stops when every lead is final",
    )
    d.add_argument(
        "--drain-timeout", type=float, default=60.0, metavar="S", help="wait for calls in flight on stop (default 60)"
    )
    d.add_argument(
        "--status-every", type=float, default=10.0, metavar="S", help="status line period (seconds, default 10)"
    )
    d.add_argument("--quiet", action="store_true", help="no status line")
    p.add_argument("-v", "--verbose", action="store_true", help="log every connection and capacity change")
    p.set_defaults(func=run)


# -- configuration ----------------------------------------------------------------------------------------------


def _seconds(value: float, key: str, *, minimum: float = 0.0, strict: bool = True) -> float:
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        raise ConfigError(key, f"must be a number of seconds {'>' if strict else '>='} {minimum:g}, not {value:g}")
    return value


def check_options(args: argparse.Namespace) -> None:
    """The dispatcher's own numbers, named by option (no I/O)."""
    _seconds(args.retention, "--retention", strict=False)
    _seconds(args.offer_timeout, "--offer-timeout")
    _seconds(args.liveness, "--liveness")
    _seconds(args.lease, "--lease", minimum=3 * HEARTBEAT, strict=False)
    _seconds(args.drain_timeout, "--drain-timeout", strict=False)
    _seconds(args.status_every, "--status-every")
    if not 0 < args.broker_port < 65536:
        raise ConfigError("--broker-port", f"must be 1-65535, not {args.broker_port}")


def hold_lock(state: str) -> Any:
    """Lock ``<state>.lock`` for this process's life (the kernel drops it when the process dies, SIGKILL too).

    Why: a second ``dialer dispatch`` on the same campaign would read the first one's calls in flight as left
    behind, adopt them and close the store's other open attempts as interrupted, all before any bus check could
    notice it. ``None`` for an in-memory state (nothing to share)."""
    import fcntl

    if state == ":memory:":
        return None
    path = state + ".lock"
    try:
        handle = open(path, "a+")  # noqa: SIM115 - held open for the process's life
    except OSError as exc:
        raise ConfigError("--state", f"cannot open {path}: {exc}") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise ConfigError(
            "--state", f"another dialer dispatch (pid {pid}) is running this campaign ({state}): one at a time"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def state_path(config: CampaignConfig, state: str | None) -> str:
    """``--state``, or the store's name with ``.dispatch.sqlite`` beside it."""
    if state is not None:
        return state
    return str(config.store.with_name(config.store.stem + ".dispatch.sqlite"))


def outbox_path(config: CampaignConfig, outbox: str | None) -> str:
    """``--outbox``, or the store's name with ``.outbox.sqlite`` beside it (``spring.sqlite`` ->
    ``spring.outbox.sqlite``)."""
    if outbox is not None:
        return outbox
    return str(config.store.with_name(config.store.stem + ".outbox.sqlite"))


def bus_config(args: argparse.Namespace, config: CampaignConfig) -> BusConfig:
    """The bus client's configuration; identity, credentials and TLS files checked first (one line each)."""
    from dialer.bus.client import BusConfig, TlsConfig
    from dialer.bus.preflight import check_identity, check_tls
    from dialer.bus.schema import SchemaError
    from dialer.bus.topics import Topics

    identity = f"dispatcher/{args.name}"
    username = args.username if args.username is not None else (None if args.insecure else identity)
    from dialer.commands.worker import secret_from_env

    password = secret_from_env(args.password_env, "--password-env")
    check_identity(
        identity,
        username,
        password,
        insecure=args.insecure,
        client_cert=args.tls_cert is not None,
        expect_role="dispatcher",
        key="--name",
    )
    try:
        Topics(config.campaign_id, args.root)
    except SchemaError as exc:
        raise ConfigError("--root" if exc.path == "root" else "campaign.id", str(exc)) from None
    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        check_tls(args.tls_ca, args.tls_cert, args.tls_key)
        tls = TlsConfig(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key)
    outbox = outbox_path(config, args.outbox)
    return BusConfig(
        args.broker,
        args.broker_port,
        identity,
        username=username,
        password=password,
        tls=tls,
        root=args.root,
        outbox=outbox,
        durable=outbox != ":memory:",
        retention=args.retention,
        heartbeat=HEARTBEAT,
        insecure=args.insecure,
    )


async def probe(args: argparse.Namespace, bus: BusConfig) -> None:
    """The broker's side of the start-up checks (reachable, trusted, our credentials accepted, no anonymous
    clients unless ``--insecure``), run before our own bus client takes the identity's session."""
    from dialer.bus.preflight import check_tls, probe_broker

    contexts = check_tls(args.tls_ca, args.tls_cert, args.tls_key) if bus.tls is not None else None
    await probe_broker(
        args.broker,
        args.broker_port,
        tls_context=contexts.client if contexts is not None else None,
        anonymous_tls_context=contexts.anonymous if contexts is not None else None,
        username=bus.username,
        password=bus.password,
        identity=bus.client_id,
        insecure=args.insecure,
    )


def abandon_cap() -> float:
    """The cap the abandonment status is reported against and ``pacing.target`` may not exceed.

    A campaign file names no regime (the numbers it calls may fall under several), so the strictest regulator's
    cap applies: fail closed, a bus command can never set a target that one of them forbids."""
    from dialer.compliance.ledger import CAPS

    return min(CAPS.values())


# -- the run ----------------------------------------------------------------------------------------------------


class _Keeper:
    """What ``dialer run``'s SIP runtime does with each finished call, here for calls placed by workers: keep the
    record, close a lead opted out by keypress as a do-not-call request, append the call to the evidence log. A
    record that cannot be kept stops dialing (fail closed), as in ``dialer run``."""

    def __init__(self, campaign: LiveCampaign, runtime: AsyncRuntime, dispatcher: Dispatcher) -> None:
        self.campaign = campaign
        self.runtime = runtime
        self.dispatcher = dispatcher
        self.records: list[CallRecord] = []
        self.alerts: list[str] = []
        self._opted_out: set[str] = set()

    def record(self, action: RecordCall) -> None:
        from dialer.campaign import CampaignError, Disposition

        record = action.record
        self.records.append(record)
        lead = record.lead
        try:
            # The dispatcher recorded the keypress opt-out through the lead source already (stored and in force);
            # the lead itself is closed as a do-not-call request, as LiveCampaign.record does for `dialer run`.
            if lead.lead_id in self.dispatcher.opt_outs and lead.lead_id not in self._opted_out:
                self._opted_out.add(lead.lead_id)
                self.campaign.opted_out.append(lead.phone)
                try:
                    self.campaign.leads.disposition(lead.lead_id, Disposition.DNC_REQUEST)
                except CampaignError as exc:
                    log.warning("could not mark lead %s as a do-not-call request: %s", lead.lead_id, exc)
            self.campaign.record(record)
            self.campaign.evidence(record, {})  # the SIP details (Call-ID, status) stay on the worker's side
        except Exception as exc:
            log.exception("the record of call %d could not be kept", record.call_id)
            self.alerts.append(f"record_lost: call {record.call_id}: {exc}")
            if self.runtime.engine.dialing:
                asyncio.get_running_loop().call_soon(self._stop_dialing)

    def adopted(self, record: CallRecord) -> None:
        """The record of a call a dead predecessor dialed, closed from its worker's facts (already stored by
        the lead source): kept and logged as evidence like any other."""
        self.records.append(record)
        try:
            self.campaign.evidence(record, {})
        except Exception as exc:
            log.exception("the record of adopted call %d could not be logged", record.call_id)
            self.alerts.append(f"record_lost: call {record.call_id}: {exc}")

    def alert(self, action: Alert) -> None:
        log.error("engine %s: %s (dialing stopped)", action.kind, action.message)
        self.alerts.append(f"{action.kind}: {action.message}")

    def _stop_dialing(self) -> None:
        from dialer.engine import events as ev
        from dialer.errors import InvalidTransition
        from dialer.live.runtime import RuntimeClosed

        with contextlib.suppress(InvalidTransition, RuntimeClosed):
            if self.runtime.engine.dialing:
                self.runtime.submit(ev.DialingStopped)


def release_shown(config: CampaignConfig, state: DispatcherState, adopted: list[str]) -> list[str]:
    """Undo the claims of the leads a dead predecessor had on agents' screens and never dialed (the state's
    ``on_screen`` rows, see :mod:`dialer.distributed.state`); the leads released. Only an attempt still open,
    claimed by that predecessor (its owner on the store, no longer alive) and not adopted as a call in flight is
    undone: anything else is left to the lead source's own recovery.

    Why: a lead on an agent's screen was claimed from the store (an open attempt), but no INVITE was sent. A
    dispatcher killed then left that attempt open, and the next one used to close it as interrupted: a call that
    never happened counted as placed and, in the worst case, abandoned (``dialer report compliance`` over its
    cap), and the lead spent an attempt and was locked out."""
    from dialer.store import StoreError, open_store

    rows = state.on_screen()
    if not rows:
        return []
    released: list[str] = []
    try:
        store = open_store(config.store_url or config.store)
    except Exception as exc:  # the campaign's own open reports the store's problem in one line
        log.warning("could not release the leads left on agents' screens: %s", exc)
        return []
    try:
        opened = store.open_attempts(config.campaign_id)
        for _call_id, lead_id, owner in rows:
            if lead_id in adopted:
                continue
            for attempt in opened:
                if attempt.lead_id == lead_id and attempt.owner == owner and not store.owner_alive(owner):
                    try:
                        store.unclaim(config.campaign_id, lead_id, attempt.attempt_no)
                    except StoreError as exc:  # closed meanwhile: the lead source's recovery has the last word
                        log.warning("lead %s left on an agent's screen was not released: %s", lead_id, exc)
                        continue
                    released.append(lead_id)
        state.clear_on_screen()
    finally:
        store.close()
    return released


#: Seconds a dial may wait for a worker to take it before it is given back as not placed (well under the
#: regulators' 15-s minimum ring time, which the engine's own give-up waits for).
STRANDED = 5.0


def settle_stranded(dispatcher: Dispatcher, runtime: AsyncRuntime, limit: float = STRANDED) -> list[int]:
    """Give back, as not placed, the dials no worker has held for ``limit`` seconds; their call ids.

    Why: a dial waits in the dispatcher until a worker has room. With the workers gone (a preview lead on screen
    when they died, dialed by the agent's press or at its ``dial_at``), it waited until the engine's ring timeout
    closed it as ``no_answer``: an attempt in the store and a placed call in the compliance ledger for a call no
    INVITE left. A dial no worker holds (no offer out, none accepted) sent nothing, so ``CallNotPlaced`` is the
    truth: the lead goes back to the list untouched, and a reserved agent is ready again."""
    from dialer.engine import events as ev
    from dialer.errors import InvalidTransition
    from dialer.live.runtime import RuntimeClosed

    now = runtime.now()
    given_back: list[int] = []
    for call_id, call in list(dispatcher.calls.items()):
        if call.closed or call.worker is not None or call.offered_to is not None or now - call.dialed_at < limit:
            continue
        with contextlib.suppress(InvalidTransition, RuntimeClosed, KeyError):
            runtime.submit(ev.CallNotPlaced, call_id=call_id, why="no worker took the dial")
            given_back.append(call_id)
            log.warning("call %d: no worker took it for %.0f s; given back to the list, not placed", call_id, limit)
    return given_back


def finished(engine: Engine, campaign: LiveCampaign, now: float, alerts: list[str], keep_going: bool) -> str | None:
    """Why the run is over, or ``None`` while calls are up or leads are due: ``dialer run``'s rules (see
    :meth:`~dialer.live.campaign.LiveRun.finished`) on the same campaign questions, but having no agent ready
    ends nothing here, because agents log in over the bus whenever their backends say so. A lead shown to an
    agent (preview) is in flight too: it was claimed from the store, and its agent may yet press dial."""
    if engine.in_flight or engine.offers:
        return None
    if alerts and not engine.dialing:
        return f"dialing stopped: {alerts[-1]}"
    if campaign.all_final():
        return "every lead is final"
    if keep_going:
        return None
    if not campaign.due(now):
        return "no lead is due now"
    return None


def _status_line(engine: Engine, dispatcher: Dispatcher, records: list[CallRecord]) -> str:
    from dialer.engine.state import AgentState, CallState

    calls = engine.call_counts
    live = sum(1 for w in dispatcher.workers.values() if dispatcher.live(w))
    return (
        f"calls {engine.in_flight} (ringing {calls[CallState.DIALING] + calls[CallState.RINGING]}, "
        f"talking {calls[CallState.CONNECTED]}, message {calls[CallState.ABANDONING]}) "
        f"agents ready {engine.agent_counts[AgentState.READY]} | workers {live}, capacity {dispatcher.capacity} | "
        f"done {len(records)}, abandoned {sum(r.abandoned for r in records)}"
    )


async def _drain(
    engine: Engine, timeout: float, again: asyncio.Event, tick: Callable[[], object] | None = None
) -> bool:
    """Wait until no call is in flight; ``False`` if ``timeout`` ran out or ``again`` was set first. ``tick`` is
    called at each look (the stranded dials are given back while draining too)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while engine.in_flight:
        if tick is not None:
            tick()
        if again.is_set() or loop.time() >= deadline:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(again.wait(), min(0.1, max(0.0, deadline - loop.time())))
    return True


async def _ready_or_stopped(bus: Any, stop: asyncio.Event) -> None:
    """Wait for the broker (or a stop); a second process under our identity is one line and exit 2."""
    from dialer.bus.client import IdentityInUse

    ready = asyncio.ensure_future(bus.wait_ready())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and not ready.cancelled() and isinstance(ready.exception(), IdentityInUse):
            raise ConfigError("--name", str(ready.exception()))
    finally:
        ready.cancel()
        stopped.cancel()


async def serve(args: argparse.Namespace, config: CampaignConfig, campaign: LiveCampaign, bus_cfg: BusConfig,
                early: Any, state: DispatcherState | None = None) -> RunResult:  # fmt: skip
    from dialer.bus.bridge import CampaignBus
    from dialer.bus.client import MqttBus
    from dialer.distributed.dispatcher import Dispatcher, fresh_call_ids
    from dialer.engine import events as ev
    from dialer.engine.actions import Alert, DialLead, PreviewLead, RecordCall
    from dialer.engine.core import Engine
    from dialer.live.campaign import RunResult
    from dialer.live.runtime import AsyncRuntime
    from dialer.pacing import make_policy

    engine_config = dataclasses.replace(config.engine_config(), first_call_id=fresh_call_ids())
    engine = Engine(make_policy(config.policy, **config.policy_params), campaign.leads, engine_config)
    runtime = AsyncRuntime(engine)
    bus = MqttBus(bus_cfg, config.campaign_id)
    campaign_bus = CampaignBus(runtime, bus, abandon_cap=abandon_cap(), replies=state)
    dispatcher = Dispatcher(
        runtime,
        bus,
        offer_timeout=args.offer_timeout,
        liveness=args.liveness,
        lease=args.lease,
        agents=config.agents,
        opt_out_digit=config.opt_out_digit,
        state=state,
    )
    keeper = _Keeper(campaign, runtime, dispatcher)
    dispatcher.on_orphan = keeper.adopted
    if state is not None:  # after the dispatcher's own DialLead handler: the call is in its state by then
        kept = state
        owner = campaign.leads.owner
        runtime.on(PreviewLead, lambda a: kept.shown(a.call_id, a.lead.lead_id, owner))
        runtime.on(DialLead, lambda a: kept.unshown(a.call_id))
        runtime.on(RecordCall, lambda a: kept.unshown(a.record.call_id))
    from dialer.commands.run import start_status_page

    page = start_status_page(args, runtime, config.campaign_id, dispatcher)
    runtime.on(RecordCall, keeper.record)
    runtime.on(Alert, keeper.alert)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    presses = 0

    def interrupt() -> None:
        nonlocal presses
        presses += 1
        if not args.quiet:
            word = "stopping: draining calls in flight (signal again to stop at once)" if presses == 1 else "stopping"
            print(f"{word}...", file=sys.stderr, flush=True)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    if early.count:  # a signal before the loop's handlers were in place
        interrupt()
    reason = ""
    interrupted = False
    drained = True
    alert: str | None = None
    started = False
    try:
        if not stop.is_set():
            bus.start()
            campaign_bus.start()
            started = True
            await _ready_or_stopped(bus, stop)
            if not args.quiet:
                print(f"{bus_cfg.client_id} serving campaign {config.campaign_id} on broker "
                      f"{args.broker}:{args.broker_port}", file=sys.stderr, flush=True)  # fmt: skip
        next_status = loop.time() + args.status_every
        while True:
            if stop.is_set():
                interrupted, reason = True, "interrupted"
                break
            why = finished(engine, campaign, runtime.now(), keeper.alerts, args.keep_going)
            if why is not None:
                reason = why
                alert = keeper.alerts[-1] if keeper.alerts and not engine.dialing else None
                break
            settle_stranded(dispatcher, runtime)
            if not args.quiet and loop.time() >= next_status:
                next_status = loop.time() + args.status_every
                print(_status_line(engine, dispatcher, keeper.records), file=sys.stderr, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
        if started:
            if engine.dialing:
                runtime.submit(ev.DialingStopped)  # no new calls; those in flight end on the workers
            stop.clear()
            drained = await _drain(engine, args.drain_timeout, stop, lambda: settle_stranded(dispatcher, runtime))
            if not drained:
                log.warning("%d calls still up: left to the workers (they end them when our lease lapses)",
                            engine.in_flight)  # fmt: skip
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if started:
            await campaign_bus.stop()  # the last statistics, queued before the flush
            await bus.stop()  # flushes the outbox to the broker, then says we are offline
        if page is not None:
            await page.stop()
        runtime.close()
    return RunResult(
        records=keeper.records,
        reason=reason,
        interrupted=interrupted,
        drained=drained,
        opted_out=list(campaign.opted_out),
        held=dict(campaign.leads.held),
        leads=campaign.lead_counts(),
        next_due=campaign.next_due(),
        alert=alert,
        placed_any=started,
        unwritten=campaign.unwritten(),
    )


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def summary(
    result: RunResult,
    campaign: LiveCampaign,
    *,
    undrained: str = "calls left to the workers",
    inbound: str | None = None,
) -> list[str]:
    """The end-of-run lines of ``dialer run`` and ``dialer dispatch``, for the same store and the same questions.

    ``undrained`` says what became of the calls when the run stopped before they ended (``dialer run`` hangs them
    up, ``dialer dispatch`` leaves them to the workers); ``inbound`` is the inbound callers' line, after the
    outbound figures. A previewed lead that was skipped or withdrawn has a record (its one record, ``placed``
    false) but was never a call: it is counted on a line of its own, not as a ``network`` call."""
    previews = [r for r in result.records if r.skipped is not None]
    records = [r for r in result.records if r.skipped is None]
    counts: dict[str, int] = {}
    for r in records:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    live = sum(r.live_answer for r in records)
    abandoned = sum(r.abandoned for r in records)
    lines = [f"{len(records)} calls: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no calls")]
    if previews:
        lines.append(f"{len(previews)} previewed leads not dialed (skipped or withdrawn; back in the list)")
    held = ", ".join(f"{k} {v}" for k, v in sorted(result.held.items())) or "none"
    lines.append(f"abandoned {abandoned} of {live} live answers; {len(result.opted_out)} opt-outs; held at dial time: "
                 f"{held}")  # fmt: skip
    if inbound is not None:
        lines.append(inbound)
    reach = campaign.leads.reach()
    if reach:
        lines.append("reach lost per rule: " + ", ".join(f"{rule} {n}" for rule, n in reach))
    leads = ", ".join(f"{v} {k}" for k, v in sorted(result.leads.items()))
    later = ""
    if result.next_due is not None and result.leads.get("ready"):
        # A lead never tried (a preview skipped at the end of a run, a lead nobody was ready for) is due now.
        later = "; due now" if result.next_due <= time.time() else f"; next due {_when(result.next_due)}"
    lines.append(f"leads: {leads}{later}")
    lines.append(f"stopped: {result.reason}{'' if result.drained else f' ({undrained})'}")
    lines.append(f"ledger: dialer report compliance {campaign.config.store_url or campaign.config.store}")
    if result.unwritten:
        lines.append(unwritten_line(result.unwritten, campaign))
    return lines


def unwritten_line(count: int, campaign: LiveCampaign) -> str:
    """What ``dialer run`` and ``dialer dispatch`` say when the shared store stayed away to the end."""
    return (
        f"store: {count} writes (call records, opt-outs, dispositions) could not be made: the store stayed away; "
        f"every call is in the evidence log {campaign.evidence_path}"
    )


def run(args: argparse.Namespace) -> int:
    from dialer.commands.run import _EarlySignals
    from dialer.live.campaign import LiveCampaign, load_campaign

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    with _EarlySignals() as early:
        check_options(args)
        config = load_campaign(args.campaign)
        bus_cfg = bus_config(args, config)
        if config.wrap_up > 0:
            print("note: campaign.wrap_up is not used: backends end wrap-up with agent.disposition", file=sys.stderr)
        if config.machine == "message":
            print("note: campaign.machine = 'message' is not carried to workers: machines are hung up",
                  file=sys.stderr)  # fmt: skip
        from dialer.distributed.state import DispatcherState, StateError

        where = state_path(config, args.state)
        lock = hold_lock(where)  # before the store is touched: a second dispatcher must change nothing
        try:
            state = DispatcherState(where)
        except StateError as exc:
            raise ConfigError("--state", str(exc)) from None
        # The calls a predecessor left in flight: their attempts stay open for their real outcome.
        adopted = [call.lead_id for call in state.open_calls()]
        if adopted:
            print(f"resuming: {len(adopted)} calls of the previous dispatcher are adopted", file=sys.stderr)
        released = release_shown(config, state, adopted)
        if released:
            print(f"resuming: {len(released)} leads on agents' screens were never dialed: back in the list "
                  f"({', '.join(released)})", file=sys.stderr)  # fmt: skip
        campaign = LiveCampaign.open(config, adopt=adopted)
        try:
            rejected = len(campaign.imported.rejected)
            where = f" (see {config.rejects_file})" if rejected else ""
            print(f"{config.leads_file.name}: {campaign.imported.summary()}{where}", flush=True)
            if config.dnc_registry is None:
                print("note: no national do-not-call registry (dnc.registry_required = false)", file=sys.stderr)
            asyncio.run(probe(args, bus_cfg))  # last: the only check that waits on the network
            result = asyncio.run(serve(args, config, campaign, bus_cfg, early, state))
        finally:
            campaign.close()
            state.close()
            if lock is not None:
                lock.close()
    print()
    for line in summary(result, campaign):
        print(line)
    if result.alert is not None:
        print(f"alert: {result.alert}")
        return 1
    return 1 if result.unwritten else 0
