"""``dialer purge STORE``: delete the attempt records (and inbound call records) the law no longer requires, and
record that in the chain.

Why a command of its own and not a flag of ``dialer report``: a report only reads, and an operator (or a cron
job) running a report must never delete anything by a typo. ``dialer purge`` is the one command that removes
records, and it refuses whatever would remove too much (see :func:`dialer.compliance.audit.purge`).

Exit statuses: 0 done (or nothing to remove); 2 a refused setting (``--keep-months`` under 24, ``--before`` inside
the retention period, no such store); 3 the evidence chain is broken, so nothing was removed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    from dialer.compliance.audit import DEFAULT_KEEP_MONTHS, MIN_KEEP_MONTHS

    p = sub.add_parser(
        "purge",
        help="delete attempt records older than the law requires",
        description="Delete the store's finished attempts (and inbound calls, by arrival) older than the retention "
        "period (default "
        f"{DEFAULT_KEEP_MONTHS} months: Canada's 3 years, longer than the US TSR's 24) and append a 'purge' entry "
        "to the evidence log recording what was removed and when. The log's own lines are never touched, and "
        "leads, opt-outs and lockouts are kept. Refuses a --keep-months under "
        f"{MIN_KEEP_MONTHS}, a --before inside the retention period, and a store whose evidence chain is broken "
        "(exit 3).",
    )
    p.add_argument("store", metavar="STORE", help="the campaign store: a SQLite file or a postgresql:// URL")
    p.add_argument(
        "--before",
        metavar="DATE",
        help="remove attempts dialed before DATE (2024-01-31, midnight UTC, or an ISO 8601 instant); "
        "default: the retention limit itself",
    )
    p.add_argument(
        "--keep-months",
        type=int,
        default=DEFAULT_KEEP_MONTHS,
        metavar="N",
        help=f"months of records to keep (default {DEFAULT_KEEP_MONTHS}, at least {MIN_KEEP_MONTHS})",
    )
    p.add_argument("--evidence", metavar="FILE", help="the evidence log (default: STORE.evidence.jsonl beside it)")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed; remove and log nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dialer.compliance import audit

    before = None if args.before is None else audit.parse_date(args.before)
    try:
        done = audit.purge(
            args.store, before=before, keep_months=args.keep_months, evidence=args.evidence, dry_run=args.dry_run
        )
    except audit.ChainBroken as exc:
        print(f"dialer: error: {exc}", file=sys.stderr)
        return audit.EXIT_CHAIN
    verb = "would remove" if done.dry_run else "removed"
    print(f"{verb} {done.removed} attempt(s) dialed before {audit.iso_utc(done.before)} "
          f"(keep {done.keep_months} months)")  # fmt: skip
    for campaign, c in sorted(done.campaigns.items()):
        print(
            f"  {campaign}: {c['attempts']} attempt(s), dialed {audit.iso_utc(c['first_dialed_at'])} .. "
            f"{audit.iso_utc(c['last_dialed_at'])}"
        )
    if done.inbound_removed:  # said only when there were any: an outbound-only store prints what it always did
        print(f"{verb} {done.inbound_removed} inbound call(s) that arrived before {audit.iso_utc(done.before)}")
        for campaign, c in sorted(done.inbound_campaigns.items()):
            print(
                f"  {campaign}: {c['calls']} inbound call(s), arrived {audit.iso_utc(c['first_arrived_at'])} .. "
                f"{audit.iso_utc(c['last_arrived_at'])}"
            )
    if done.entry is not None:
        print(f"recorded in the evidence log at seq {done.entry['seq']}, hash {done.entry['hash']}")
    return audit.EXIT_OK
