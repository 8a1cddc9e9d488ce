"""``dialer run CAMPAIGN.toml``: a campaign live over SIP, with a status line; Ctrl-C drains calls gracefully.

The leads are imported from the campaign's CSV into its SQLite store at every start (re-imports merge), dialed
through the campaign package's lead source (do-not-call, calling windows, retries and lockouts checked at dial
time), and every call is stored as the abandonment ledger that ``dialer report compliance STORE`` reads. The file
format is in ``docs/sip.md``; the wiring is :mod:`dialer.live.campaign`, usable from Python.

Any error in the file, a missing required do-not-call registry, or an unreadable call list is one line naming the
key, exit status 2, and nothing is dialed. The pool is sized from the agents and the pacing ceiling unless
``[pool] workers`` is set (one line at start says which, and a warning when it cannot give each agent a call). A
Ctrl-C or SIGTERM before the first dial places no call (exit 130). Dialing stopped by an alert (a silent trunk)
ends the run once the last call is over, with the alert in the last line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dialer.live.campaign import LiveCampaign, RunResult


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a campaign live over SIP",
        description="Run a campaign live over SIP until no lead is due; Ctrl-C drains the calls in flight, a second "
        "Ctrl-C hangs them up. The campaign's store keeps the leads and the abandonment ledger.",
    )
    p.add_argument("campaign", type=Path, help="campaign TOML file")
    p.add_argument("--status-every", type=float, default=1.0, metavar="S", help="status line period (seconds)")
    p.add_argument("--quiet", action="store_true", help="no status line")
    add_status_options(p)
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="keep running while leads wait for later (retries, calling hours) instead of stopping when none is due; "
        "stops when every lead is final",
    )
    p.set_defaults(func=run)


def _status_line(s: dict[str, Any]) -> str:
    store = ""
    if s.get("store_outage"):
        store = f"| STORE AWAY, not dialing ({s.get('pending_writes', 0)} writes kept) "
    return (
        f"\rcalls {s['in_flight']:3d} (ringing {s['ringing']}, talking {s['connected']}, message {s['message']}) "
        f"agents ready {s['agents_ready']} | done {s['records']}, abandoned {s['abandoned']} | "
        f"capacity {s['capacity']} {store}  "
    )


class _EarlySignals:
    """SIGINT/SIGTERM caught from the moment ``dialer run`` starts, before the event loop has its own handlers.

    Why: between reading the file and the loop's handlers (the store import, the loop's creation) a Ctrl-C would
    otherwise be a KeyboardInterrupt (or SIGTERM a plain kill) at an arbitrary point. Counted here instead, it
    makes the run stop before the first dial, with the usual exit status 130.
    """

    def __init__(self) -> None:
        self.count = 0
        self._old: dict[int, Any] = {}

    def _caught(self, signum: int, frame: object) -> None:
        self.count += 1

    def __enter__(self) -> _EarlySignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._caught)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


async def _run(campaign: LiveCampaign, args: argparse.Namespace, early: _EarlySignals) -> RunResult:
    from dialer.live.campaign import LiveRun

    live = LiveRun(campaign)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    presses = 0

    def interrupt() -> None:
        nonlocal presses
        presses += 1
        if not args.quiet:
            if not live.dialing_started:
                word = "stopping before the first call (workers are starting)"
            elif presses == 1:
                word = "draining calls in flight (Ctrl-C again to hang up)"
            else:
                word = "hanging up"
            print(f"\n{word}...", file=sys.stderr, flush=True)
        stop.set()

    def status(s: dict[str, Any]) -> None:
        print(_status_line(s), end="", file=sys.stderr, flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    if early.count:  # pressed before the loop's handlers were in place: nothing has been dialed yet
        interrupt()
    page = start_status_page(args, live.runtime, campaign.config.campaign_id)
    try:
        return await live.run(
            stop, status=None if args.quiet else status, status_every=args.status_every, keep_going=args.keep_going
        )
    finally:
        if page is not None:
            await page.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def add_status_options(parser: Any) -> None:
    """``--status-port`` and ``--status-bind``, as ``dialer run`` and ``dialer dispatch`` both take them."""
    parser.add_argument(
        "--status-port",
        type=int,
        metavar="PORT",
        help="serve the live status page (/), /status.json and Prometheus /metrics on this port (0: any free)",
    )
    parser.add_argument("--status-bind", default="127.0.0.1", metavar="HOST", help="address of the status page")


def start_status_page(args: argparse.Namespace, runtime: Any, campaign: str, dispatcher: Any = None) -> Any:
    """The status page and /metrics when ``--status-port`` was given (``None`` otherwise), serving from now."""
    if getattr(args, "status_port", None) is None:
        return None
    from dialer.compliance.ledger import CAPS
    from dialer.errors import ConfigError
    from dialer.live.status import FloorStatus, StatusServer

    try:
        server = StatusServer(
            FloorStatus(runtime, campaign=campaign, cap=min(CAPS.values()), dispatcher=dispatcher),
            args.status_bind,
            args.status_port,
        )
    except OSError as exc:
        raise ConfigError("--status-port", f"cannot serve on {args.status_bind}:{args.status_port}: {exc}") from None
    server.start()
    if not getattr(args, "quiet", False):
        print(f"status page: {server.url}  metrics: {server.url}metrics", file=sys.stderr, flush=True)
    return server


def _inbound_line(records: list[Any], blocked: int, within: float) -> str:
    """The run's inbound figures: callers answered and abandoned, refused busy, the service level (answered
    within ``within`` s over answered plus abandoned, as ``engine.stats.inbound`` counts it) and the average
    speed of answer (the answered callers' mean wait)."""
    answered = [r for r in records if r.outcome.value == "answered"]
    abandoned = len(records) - len(answered)
    level = "n/a" if not records else f"{sum(r.answered_within(within) for r in records) / len(records):.0%}"
    asa = "n/a" if not answered else f"{sum(r.wait for r in answered) / len(answered):.1f} s"
    return (
        f"inbound: {len(records)} callers: answered {len(answered)}, abandoned {abandoned}, refused busy {blocked}; "
        f"service level {level} within {within:g} s; ASA {asa}"
    )


def run(args: argparse.Namespace) -> int:
    from dialer.live.campaign import LiveCampaign, load_campaign, refuse_hand_dialing

    with _EarlySignals() as early:
        config = load_campaign(args.campaign)
        refuse_hand_dialing(config, "dialer run")
        campaign = LiveCampaign.open(config)
        try:
            rejected = len(campaign.imported.rejected)
            where = f" (see {config.rejects_file})" if rejected else ""
            print(f"{config.leads_file.name}: {campaign.imported.summary()}{where}", flush=True)
            if config.dnc_registry is None:
                print("note: no national do-not-call registry (dnc.registry_required = false)", file=sys.stderr)
            plan = config.pool_plan
            if plan is not None:
                print(plan.line(), file=sys.stderr, flush=True)
                warning = plan.warning()
                if warning is not None:
                    print(warning, file=sys.stderr, flush=True)
            result = asyncio.run(_run(campaign, args, early))
        finally:
            campaign.close()
    from dialer.commands.dispatch import summary

    inbound = None
    if config.inbound:
        inbound = _inbound_line(result.inbound, result.inbound_blocked, config.service_level_seconds)
    print()
    for line in summary(result, campaign, undrained="calls hung up before they ended", inbound=inbound):
        print(line)
    if result.unwritten:  # the shared store stayed away to the end: the ledger misses calls (the evidence has them)
        return 1
    if result.interrupted:
        return 130
    if result.alert is not None:  # dialing stopped on its own: the run failed, and says why last
        print(f"alert: {result.alert}")
        return 1
    return 0
