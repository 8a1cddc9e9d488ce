"""``dialer run CAMPAIGN.toml``: a campaign live over SIP, with a status line; Ctrl-C drains calls gracefully.

The leads are imported from the campaign's CSV into its SQLite store at every start (re-imports merge), dialed
through the campaign package's lead source (do-not-call, calling windows, retries and lockouts checked at dial
time), and every call is stored as the abandonment ledger that ``dialer report compliance STORE`` reads. The file
format is in ``docs/sip.md``; the wiring is :mod:`dialer.live.campaign`, usable from Python.

Any error in the file, a missing required do-not-call registry, or an unreadable call list is one line naming the
key, exit status 2, and nothing is dialed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
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
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="keep running while leads wait for later (retries, calling hours) instead of stopping when none is due",
    )
    p.set_defaults(func=run)


def _status_line(s: dict[str, Any]) -> str:
    return (
        f"\rcalls {s['in_flight']:3d} (ringing {s['ringing']}, talking {s['connected']}, message {s['message']}) "
        f"agents ready {s['agents_ready']} | done {s['records']}, abandoned {s['abandoned']} | "
        f"capacity {s['capacity']}   "
    )


async def _run(campaign: LiveCampaign, args: argparse.Namespace) -> RunResult:
    from dialer.live.campaign import LiveRun

    live = LiveRun(campaign)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    presses = 0

    def interrupt() -> None:
        nonlocal presses
        presses += 1
        if not args.quiet:
            word = "draining calls in flight (Ctrl-C again to hang up)" if presses == 1 else "hanging up"
            print(f"\n{word}...", file=sys.stderr, flush=True)
        stop.set()

    def status(s: dict[str, Any]) -> None:
        print(_status_line(s), end="", file=sys.stderr, flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    try:
        return await live.run(
            stop, status=None if args.quiet else status, status_every=args.status_every, keep_going=args.keep_going
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def run(args: argparse.Namespace) -> int:
    from dialer.live.campaign import LiveCampaign, load_campaign

    config = load_campaign(args.campaign)
    campaign = LiveCampaign.open(config)
    try:
        rejected = len(campaign.imported.rejected)
        where = f" (see {config.rejects_file})" if rejected else ""
        print(f"{config.leads_file.name}: {campaign.imported.summary()}{where}")
        if config.dnc_registry is None:
            print("note: no national do-not-call registry (dnc.registry_required = false)", file=sys.stderr)
        result = asyncio.run(_run(campaign, args))
    finally:
        campaign.close()
    records = result.records
    counts: dict[str, int] = {}
    for r in records:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    live = sum(r.live_answer for r in records)
    abandoned = sum(r.abandoned for r in records)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no calls"
    print(f"\n{len(records)} calls: {summary}")
    held = ", ".join(f"{k} {v}" for k, v in sorted(result.held.items())) or "none"
    print(f"abandoned {abandoned} of {live} live answers; {len(result.opted_out)} opt-outs; held at dial time: {held}")
    leads = ", ".join(f"{v} {k}" for k, v in sorted(result.leads.items()))
    later = f"; next due {_when(result.next_due)}" if result.next_due is not None and result.leads.get("ready") else ""
    print(f"leads: {leads}{later}")
    print(f"stopped: {result.reason}{'' if result.drained else ' (calls hung up before they ended)'}")
    print(f"ledger: dialer report compliance {config.store}")
    return 130 if result.interrupted else 0
