"""The pacing frontier on the realistic scenarios (2-4 of docs/pacing.md), written as tables and plots.

Run: ``python benchmarks/pacing_frontier.py [--scenarios realistic small-team-10 ...] [--replications N]
[--days D] [--out docs/frontier] [--large] [--policies ...] [--targets ...]``

For every scenario file in ``benchmarks/scenarios`` (``--large`` adds the 1,000-agent floor, which takes long),
the sweep runs progressive, fixed ratios, VICIdial's three adaptive modes, Issabel- and Webitel-style rules and
predictive at 1/2/3% over the same replications (same seeds), writes ``OUT/NAME.md`` and ``OUT/NAME.png``, and
prints the issue's targets as ratios measured in this run:

* predictive at 3% vs the best fixed ratio under the cap (target >= 1.10x talk time);
* predictive at 3% vs VICIdial adaptive (hard limit, the default mode; target >= 1.40x);
* share of predictive's campaign-days at or under 3% abandonment (target >= 99%).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dialer.progress import ProgressBar
from sim import sweep

HERE = Path(__file__).resolve().parent
DEFAULT = ("realistic", "small-team-5", "small-team-10", "large-floor-200", "drift")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=list(DEFAULT))
    ap.add_argument("--large", action="store_true", help="also the 1,000-agent floor")
    ap.add_argument("--replications", type=int, help="override the files' replications")
    ap.add_argument("--days", type=int, help="override the files' days per replication")
    # Never over tracked files by default: refreshing the figures in docs/ is a choice (--out docs/frontier).
    ap.add_argument("--out", default=str(HERE / "results" / "frontier"), help="default benchmarks/results/frontier")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--policies", nargs="+", default=list(sweep.DEFAULT_POLICIES), help="a subset, for big floors")
    ap.add_argument("--targets", nargs="+", type=float, default=list(sweep.DEFAULT_TARGETS))
    args = ap.parse_args()
    names = list(args.scenarios) + (["large-floor-1000"] if args.large else [])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    summary = []
    for name in names:
        spec = sweep.load(HERE / "scenarios" / f"{name}.toml")
        base = spec.scenario.replace(replications=args.replications, days=args.days)
        pts = sweep.points(args.policies, args.targets)
        bar = ProgressBar(name)
        t0 = time.perf_counter()
        try:
            result = sweep.run(base, pts, drift=spec.drift, workers=args.workers, progress=bar)
        finally:
            bar.close()
        md, png = sweep.write(result, args.out, name)
        pred = result.best_predictive()
        fixed = result.best_fixed_ratio()
        vici = result.row("vicidial-hard-limit")
        if pred is None:
            print(f"{name}: written {md}; no predictive point, no targets to report")
            continue
        talk = pred.pooled["talk_fraction"]
        vs_fixed = talk / fixed.pooled["talk_fraction"] if fixed else float("nan")
        vs_vici = talk / vici.pooled["talk_fraction"] if vici else float("nan")
        under = 1.0 - pred.pooled["share_days_over_target"]
        days = pred.pooled["campaign_days"]
        summary.append((name, base.agents, vs_fixed, fixed.point.label if fixed else "none", vs_vici, under, days))
        print(f"{name}: written {md}{' and ' + str(png) if png else ''} in {time.perf_counter() - t0:.0f} s")
    print("\n| scenario | agents | predictive 3% / best fixed ratio | / VICIdial adaptive | days <= 3% |")
    print("|---|---|---|---|---|")
    for name, agents, vf, fl, vv, under, days in summary:
        print(f"| {name} | {agents} | {vf:.3f}x ({fl}) | {vv:.3f}x | {100 * under:.1f}% of {days} |")
    print("\ntargets: >= 1.10x best fixed ratio, >= 1.40x VICIdial adaptive, >= 99% of campaign-days at or under 3%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
