"""Predictive pacing against the exact optimum of the Markov model (scenario 1 of docs/pacing.md).

Run: ``python benchmarks/pacing_optimum.py [--agents 20] [--replications 10] [--hours 8] [--workers 2]``

For each answer probability, the constrained MDP is solved as an LP (HiGHS) at the 3% cap, then the predictive
policy and progressive dialing are simulated on the very same call flow. Simulated occupancy is measured in
steady state (the 15-minute occupancy bins from the second hour to half an hour before the shift ends), because
the LP's figure is a long-run average and a shift's first minutes and final drain are not. The simulated
progressive policy is checked against its exact value as a calibration of that measurement.

Printed per model: LP optimum (occupancy, abandonment), LP at the abandonment predictive actually reached,
predictive and progressive (mean and 95% CI over replications), and predictive / optimum as a ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.markov import MarkovModel, evaluate, progressive_policy, solve
from sim.metrics import mean_interval
from sim.runtime import SERIES_BIN, ReplicationResult, run_replication


def steady(result: ReplicationResult, hours: float) -> tuple[float, float]:
    """(steady-state occupancy, abandonment over the shift) of one replication."""
    occ = result.series["occupancy"]
    # Skip the warm-up (the first hour, or a quarter of a short shift) and the wind-down (the last half hour, or
    # an eighth): steady state is what the Markov optimum describes.
    warm, tail = min(3600.0, hours * 900.0), min(1800.0, hours * 450.0)
    first = int(warm // SERIES_BIN)
    last = max(first + 1, int((hours * 3600.0 - tail) // SERIES_BIN))
    vals = [v for v in occ[first:last] if v == v]
    if not vals:
        raise SystemExit(f"--hours {hours:g} leaves no steady-state window: use at least {2 * SERIES_BIN / 3600:g}")
    t = result.totals
    return sum(vals) / len(vals), (t["abandoned"] / t["live_answers"] if t["live_answers"] else 0.0)


def run_policy(scenario: Any, reps: int, workers: int) -> list[tuple[float, float]]:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(run_replication, [scenario] * reps, range(reps)))
    return [steady(r, scenario.hours) for r in results]


def fmt(values: list[float], pct: bool = True) -> str:
    iv = mean_interval(values)
    k = 100.0 if pct else 1.0
    return f"{k * iv.mean:6.2f}% ± {k * iv.half_width:4.2f}" if pct else f"{iv.mean:.4f} ± {iv.half_width:.4f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--probabilities", type=float, nargs="+", default=[0.3, 0.15])
    ap.add_argument("--alpha", type=float, default=0.03)
    ap.add_argument("--replications", type=int, default=10)
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"agents {args.agents}, cap {100 * args.alpha:g}%, {args.replications} replications x {args.hours:g} h")
    for p in args.probabilities:
        model = MarkovModel(args.agents, p)
        t0 = time.perf_counter()
        opt = solve(model, args.alpha)
        prog_exact = evaluate(model, progressive_policy(model))
        print(
            f"\n== Markov model, p = {p:g}: LP with {opt.variables} variables solved in {opt.solve_seconds:.2f} s"
            f" (truncation mass {opt.truncation_mass:.1e})"
        )
        print(f"LP optimum           occupancy {100 * opt.occupancy:6.2f}%   abandonment {100 * opt.abandon_rate:.2f}%")
        print(f"progressive (exact)  occupancy {100 * prog_exact.occupancy:6.2f}%   abandonment 0.00%")
        base = model.scenario(hours=args.hours, replications=args.replications, seed=7)
        rows = {}
        for name, scen in (
            ("progressive", base.replace(policy="progressive")),
            ("predictive", base.replace(policy="predictive", target_abandon_rate=args.alpha)),
        ):
            rows[name] = run_policy(scen, args.replications, args.workers)
            occ = [o for o, _ in rows[name]]
            ab = [a for _, a in rows[name]]
            print(f"{name:<20} occupancy {fmt(occ)}   abandonment {fmt(ab)}   (simulated, steady state)")
        prog_sim = mean_interval([o for o, _ in rows["progressive"]]).mean
        print(f"calibration: simulated progressive / exact = {prog_sim / prog_exact.occupancy:.4f}")
        pred_occ = [o for o, _ in rows["predictive"]]
        pred_ab = mean_interval([a for _, a in rows["predictive"]]).mean
        ratio = [o / opt.occupancy for o in pred_occ]
        print(f"predictive / LP optimum at {100 * args.alpha:g}%: {fmt(ratio)}  (target >= 98%)")
        if 0 < pred_ab < args.alpha:
            same = solve(model, pred_ab)
            print(
                f"LP at predictive's abandonment ({100 * pred_ab:.2f}%): occupancy {100 * same.occupancy:.2f}%;"
                f" predictive / that = {fmt([o / same.occupancy for o in pred_occ])}"
            )
        print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
