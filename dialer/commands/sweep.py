"""``dialer sweep``: the pacing frontier of your own scenario, as a markdown table and a PNG plot.

This is the offline tuning the library promises: before a campaign goes live, simulate it under every pacing
policy and setting, and see what each point of abandonment buys in talk time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dialer.commands import cluster
from dialer.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sweep",
        help="simulate many pacing policies on a scenario and write the frontier (table + plot)",
        description="Simulate progressive, fixed ratios, VICIdial adaptive, Issabel, Webitel and predictive pacing "
        "on SCENARIO.toml (same seeds for all), and write talk time and occupancy against abandonment as "
        "OUT/STEM.md and OUT/STEM.png. A [drift] table in the file makes the call flow change over each shift; "
        "--vary sweeps the call flow too (a period's answer rate, inbound rate, talk scale or staffing, the inbound "
        "settings), running every policy at every combination.",
    )
    p.add_argument("scenario", metavar="SCENARIO.toml", help="scenario file (optionally with a [drift] table)")
    p.add_argument("--policies", nargs="+", metavar="NAME", help="policies to sweep (default: all baselines)")
    p.add_argument("--targets", nargs="+", type=float, metavar="RATE", help="abandonment targets (0.03 = 3%%)")
    p.add_argument("--ratios", nargs="+", type=float, metavar="LEVEL", help="fixed ratios for the power policy")
    p.add_argument(
        "--refine",
        type=int,
        default=3,
        metavar="N",
        help="bisection rounds between the best fixed ratio under the cap and the next over it (default: 3; 0: off)",
    )
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a scenario axis (repeatable): periods.<name|index|*>.<live_answer_probability|inbound_rate_per_hour|"
        "talk_scale|outbound|inbound|blended>, inbound.<rate_per_hour|busyness_shape|service_level_target|...>, "
        "calls.<live_answer_probability|...>; a value is a number to set or xF to scale the scenario's value "
        "(e.g. periods.lunch.live_answer_probability=x0.5,x1)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document (per point: the figures dialer simulate --json has, with per-period figures) "
        "instead of the table; the table and plot are still written to --out",
    )
    p.add_argument("--replications", type=int, help="replications per policy (default: the scenario's)")
    p.add_argument("--days", type=int, help="campaign days per replication (default: the scenario's)")
    p.add_argument("--out", default=".", metavar="DIR", help="directory for the table and plot (default: .)")
    p.add_argument("--stem", help="file name stem (default: SCENARIO's stem + '-frontier')")
    p.add_argument("--workers", type=int, help="parallel worker processes (default: one per core)")
    cluster.add_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dialer.progress import ProgressBar
    from sim import sweep

    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers", "must be >= 1")
    if args.replications is not None and args.replications < 1:
        raise ConfigError("--replications", "must be >= 1")
    if args.days is not None and args.days < 1:
        raise ConfigError("--days", "must be >= 1")
    if not 0 <= args.refine <= 10:
        raise ConfigError("--refine", "must be between 0 and 10")
    spec = sweep.load(args.scenario)
    base = spec.scenario.replace(replications=args.replications, days=args.days)
    pts = sweep.points(
        args.policies or sweep.DEFAULT_POLICIES,
        args.targets or sweep.DEFAULT_TARGETS,
        args.ratios or sweep.DEFAULT_RATIOS,
    )
    axes = [sweep.parse_axis(text) for text in args.vary]
    combos = sweep.combinations(base, axes)  # every bad axis value stops here, before a pool or a bar starts
    what = f"{len(pts)} policies" + (f" x {len(combos)} settings" if axes else "")
    bar = ProgressBar(f"sweeping {what}", enabled=not args.quiet and not args.json)
    try:
        with cluster.executor(args.scheduler) as pool:
            result = sweep.run(
                base,
                pts,
                drift=spec.drift,
                workers=args.workers,
                progress=bar,
                refine=args.refine,
                executor=pool,
                axes=axes,
            )
    finally:
        bar.close()
    stem = args.stem or f"{Path(args.scenario).stem}-frontier"
    md, png = sweep.write(result, args.out, stem)
    where = f"Table written to {md}" + (f", plot to {png}" if png else " (no plot: matplotlib missing)")
    if args.json:
        from dialer.commands.simulate import _json_safe

        json.dump(_json_safe(sweep.to_json(result)), sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")
        print(where, file=sys.stderr)
        return 0
    print(sweep.markdown(result), end="")
    print(f"\n{where}")
    return 0
