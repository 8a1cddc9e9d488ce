"""``dialer report compliance``: the abandonment ledger of a campaign, as CSV and as a readable summary (or
``--json``), with the campaign's inbound figures when it had inbound calls, and with ``--audit DIR`` the audit
export a compliance officer signs (:mod:`dialer.compliance.audit`).

Exit statuses: 0 in order; 1 a window over its cap in the worst case; 2 a usage or configuration error; 3 (with
``--audit``) the evidence chain is broken, or missing while the store holds calls.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialer.errors import ConfigError

if TYPE_CHECKING:
    from dialer.amd import FalseMachineEstimate
    from dialer.compliance import ledger

REGIMES = ("us", "uk", "ca")


def register(sub: Any) -> None:
    from dialer.amd import PEOPLE_TAKEN_FOR_MACHINES as measured

    p = sub.add_parser("report", help="reports from a campaign store", description="Reports from a campaign store.")
    kinds = p.add_subparsers(dest="report", metavar="REPORT")
    kinds.required = True
    c = kinds.add_parser(
        "compliance",
        help="abandonment on each regulator's windows",
        description="Abandonment per regulator window (US 30-day/campaign, UK calendar day with Ofcom's machine "
        "adjustment plus the estimated people answering-machine detection took for machines, Canada calendar "
        "month), from the campaign's durable ledger. A live call whose person waited more than 2 s for an agent "
        "is abandoned whatever the campaign's connect_limit was. Exits with status 1 when a window is over its cap "
        "in the worst case (calls interrupted by a crash, or still open, counted as abandoned), so a scheduled job "
        "can alert on it.",
    )
    c.add_argument("store", metavar="STORE.sqlite", help="the campaign store")
    c.add_argument("--campaign", help="campaign id (default: the only campaign in the store)")
    c.add_argument(
        "--regime", choices=(*REGIMES, "all"), default="all", help="which regulator's windows (default: all)"
    )
    c.add_argument("--csv", metavar="FILE", help="write the windows as CSV to FILE ('-' for standard output)")
    c.add_argument("--calls", metavar="FILE", help="also write every call of the ledger as CSV to FILE")
    c.add_argument(
        "--json",
        action="store_true",
        help="print the ledger as JSON instead of the summary: every window per regime, whether any is over its "
        'cap, and, when the campaign had inbound calls, their figures under "inbound" (callers, answered, '
        "abandoned, blocked, service level within T s, ASA)",
    )
    c.add_argument(
        "--amd-false-positive-rate",
        type=float,
        metavar="R",
        help="share of people answering-machine detection takes for machines, for the UK rate's estimate "
        f"(default: the measured dialer.amd.PEOPLE_TAKEN_FOR_MACHINES, {measured.point * 100:.1f}%%, upper 95%% "
        f"bound {measured.upper95 * 100:.1f}%%); given, it is used for both the estimate and its bound",
    )
    c.add_argument(
        "--audit",
        metavar="DIR",
        help="write the audit export into DIR: calls.csv (every call in the evidence log, with the attempt's "
        "disposition), holds.csv, imports.csv, windows.csv, inbound.csv (when the campaign had inbound calls) "
        "and summary.md (one page to sign: the ledger, ring time, the 2-s rule, caller ID, the evidence chain and "
        "its head); without --campaign, every campaign in the store. "
        "Exits 3 when the evidence chain is broken, or missing while the store holds calls",
    )
    c.add_argument(
        "--evidence",
        metavar="FILE",
        help="the evidence log, for --audit (default: beside the store, STORE.evidence.jsonl)",
    )
    p.set_defaults(func=run)


def _amd_estimate(rate: float | None) -> FalseMachineEstimate:
    """The share of people detection takes for machines: measured (with its bound) unless the user gives one.

    Why a user would: a deployment that measured its own detector on its own calls (Ofcom wants a reasoned
    estimate, not a vendor's claim), or a detector configured away from the defaults the constant was measured on.
    """
    from dialer.amd import PEOPLE_TAKEN_FOR_MACHINES, FalseMachineEstimate

    if rate is None:
        return PEOPLE_TAKEN_FOR_MACHINES
    if not 0.0 <= rate < 1.0:
        raise ConfigError("--amd-false-positive-rate", f"must be a share between 0 and 1 (0.036 for 3.6%), not {rate}")
    return FalseMachineEstimate(point=rate, upper95=rate, people=0, source="--amd-false-positive-rate")


def run(args: argparse.Namespace) -> int:
    from dialer.compliance import ledger
    from dialer.store import open_store

    shared = str(args.store).split("://", 1)[0].lower() in ("postgresql", "postgres")
    if not shared:
        _check_store_file(Path(args.store))
    if args.json and args.csv == "-":
        raise ConfigError("--json", "and --csv - would share standard output: write the CSV to a file")
    if args.audit:
        return _audit(args)
    with open_store(args.store) as store:
        campaigns = store.campaigns()
        campaign = args.campaign
        if campaign is None:
            if len(campaigns) != 1:
                raise ConfigError("--campaign", f"the store holds {len(campaigns)} campaigns: {campaigns}")
            campaign = campaigns[0]
        elif campaign not in campaigns:
            raise ConfigError("--campaign", f"no campaign {campaign!r} in {store.path} (has {campaigns})")
        attempts = store.attempts(campaign)
        inbound = ledger.inbound_figures(store.inbound_calls(campaign))
    amd = _amd_estimate(args.amd_false_positive_rate)
    regimes = REGIMES if args.regime == "all" else (args.regime,)
    by_regime = {r: ledger.windows(attempts, r, amd) for r in regimes}
    over = any(w.over_cap for rows in by_regime.values() for w in rows)  # worst case: a crash hides nothing
    if args.csv:
        rows = [w for r in regimes for w in by_regime[r]]
        if args.csv == "-":
            ledger.write_windows_csv(rows, sys.stdout)
        else:
            with open(args.csv, "w", newline="", encoding="utf-8") as fh:
                ledger.write_windows_csv(rows, fh)
    if args.calls:
        with open(args.calls, "w", newline="", encoding="utf-8") as fh:
            ledger.write_calls_csv(attempts, fh)
    if args.json:
        print(json.dumps(_json(campaign, by_regime, over, inbound), indent=2, allow_nan=False))
    elif args.csv != "-":
        print(ledger.summary(campaign, by_regime, amd))
        if inbound is not None:
            print("")
            print(inbound.line())
    return 1 if over else 0


def _check_store_file(path: Path) -> None:
    """A report reads a store; it must not make one (see :func:`dialer.store.not_a_store`): one line, exit 2."""
    from dialer.store import not_a_store

    problem = not_a_store(path)
    if problem is not None:
        raise ConfigError("STORE", problem)


def _json(
    campaign: str, by_regime: dict[str, list[Any]], over: bool, inbound: ledger.InboundFigures | None
) -> dict[str, Any]:
    """``--json``: the windows (every field, its label, whether it is over its cap) per regime, and the inbound
    figures under ``"inbound"`` only when the campaign had inbound calls (a campaign without keeps its document)."""
    import dataclasses

    doc: dict[str, Any] = {
        "campaign": campaign,
        "over_cap": over,
        "regimes": {
            regime: [{**dataclasses.asdict(w), "window": w.label, "over_cap": w.over_cap} for w in rows]
            for regime, rows in by_regime.items()
        },
    }
    if inbound is not None:
        doc["inbound"] = inbound.to_dict()
    return doc


def _audit(args: argparse.Namespace) -> int:
    """``--audit DIR``: the export, its summary on standard output, and the export's exit status (0 in order,
    1 a window over its cap in the worst case, 3 the evidence chain broken or missing; see
    :mod:`dialer.compliance.audit`)."""
    from dialer.compliance import audit

    regimes = REGIMES if args.regime == "all" else (args.regime,)
    found = audit.collect(
        args.store,
        campaigns=[args.campaign] if args.campaign else None,
        evidence=args.evidence,
        regimes=regimes,
        amd=_amd_estimate(args.amd_false_positive_rate),
    )
    files = audit.write(found, args.audit)
    print(files["summary.md"].read_text(encoding="utf-8"), end="")
    print(f"written: {', '.join(str(f) for f in files.values())}")
    if found.chain in ("BROKEN", "MISSING"):
        why = found.verdict.why if found.verdict is not None else f"no log at {found.evidence}"
        print(f"dialer: error: the evidence chain is {found.chain}: {why}", file=sys.stderr)
    return found.exit_status
