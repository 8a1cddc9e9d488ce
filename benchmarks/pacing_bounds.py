"""How much any pacing policy can gain over progressive dialing, and how much of that our decision rule keeps.

Run: ``python benchmarks/pacing_bounds.py [--agents 5 10 20 50] [--alpha 0.03]``

Two questions the frontier alone cannot answer, both settled exactly on Markov models (sim/markov.py):

1. **What is possible.** The realistic floors of docs/pacing.md have a Markov analogue with the same means: a
   dial rings for an exponential time of the realistic floor's mean (about 19 s over live, machine, busy and
   no-answer outcomes), a person answers with probability 0.2, and handling (talk plus wrap) is exponential with
   mean 135 s. Its LP optimum at the cap, divided by progressive's exact occupancy, is the most *any* policy gains
   over dialing one call per idle agent there. VICIdial adaptive runs at progressive's pace on these floors (see
   docs/frontier/), so this ratio is the ceiling of "predictive / VICIdial adaptive" in the analogue. The real
   floors have steadier ring and talk times (uniform ring, lognormal talk), so their ceiling is somewhat higher:
   this is evidence about the target, not a proof.
2. **How good our rule's shape is.** Predictive's decision (launch while the marginal call's risk of finding no
   agent stays under a threshold) is evaluated *exactly* on the Markov model with perfect estimates, with the
   threshold searched so that abandonment is as close to the cap as a deterministic rule gets; the ratio to the
   LP optimum isolates the rule from estimation noise and the window's control loop. It uses the same normal
   approximation with continuity correction, horizon (95th percentile of the time to answer) and eight horizon
   points as :class:`dialer.pacing.predictive.Predictive`, which in the memoryless model reduces to a ringing
   threshold per number of busy agents.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dialer.pacing.predictive import marginal_risk
from sim.markov import FloatArray, MarkovModel, evaluate, progressive_policy, solve


def rule_policy(model: MarkovModel, theta: float, points: int = 8, quantile: float = 0.95) -> FloatArray:
    """Predictive's launch rule on the Markov model: ring up to the largest total whose marginal risk <= theta."""
    n, cap = model.agents, model.ringing_cap
    p, ring, handle = model.answer_probability, model.mean_ring, model.mean_handle
    horizon = -ring * math.log(1.0 - quantile)
    taus = horizon * np.arange(1, points + 1) / points
    new = p * (1.0 - np.exp(-taus / ring))  # a call ringing now is answered live by tau (memoryless: any call)
    new_var = new * (1.0 - new)
    weights = (np.diff(np.concatenate(([0.0], new))) / new[-1]).tolist()  # when the marginal call is answered
    free = 1.0 - np.exp(-taus / handle)  # a busy agent is free by tau
    nm, nv = new.tolist(), new_var.tolist()
    policy = np.zeros((n + 1, cap + 1))
    for b in range(n + 1):
        supply, supply_var = (n - b) + b * free, b * free * (1.0 - free)
        ringing = 0
        while ringing < cap:
            # ``ringing`` calls already out (memoryless: each is like a new one) before the marginal call
            gap_mu = (ringing * new - supply + 0.5).tolist()
            gap_var = (ringing * new_var + supply_var).tolist()
            if marginal_risk(1, gap_mu, gap_var, nm, nv, weights) > theta:
                break
            ringing += 1
        policy[b, : min(max(ringing, n - b), cap)] = 1.0  # never below progressive, as the policy
    return policy


def best_rule(model: MarkovModel, alpha: float) -> tuple[float, float, float]:
    """(threshold, occupancy, abandonment) of the rule with the highest threshold keeping abandonment <= alpha."""
    lo, hi = 1e-5, 0.9
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        if evaluate(model, rule_policy(model, mid)).abandon_rate > alpha:
            hi = mid
        else:
            lo = mid
    e = evaluate(model, rule_policy(model, lo))
    return lo, e.occupancy, e.abandon_rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, nargs="+", default=[5, 10, 20, 50])
    ap.add_argument("--alpha", type=float, default=0.03)
    ap.add_argument("--answer", type=float, default=0.2, help="live-answer probability of the analogue")
    ap.add_argument("--ring", type=float, default=19.0, help="mean ring time of the analogue (s)")
    ap.add_argument("--handle", type=float, default=135.0, help="mean talk + wrap of the analogue (s)")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"Markov analogue: answer {args.answer:g}, ring {args.ring:g} s, handle {args.handle:g} s,"
        f" cap {100 * args.alpha:g}%\n"
    )
    print("| agents | LP optimum | progressive | ceiling: optimum / progressive | our rule (exact) | rule / optimum |")
    print("|---|---|---|---|---|---|")
    for n in args.agents:
        model = MarkovModel(n, args.answer, mean_ring=args.ring, mean_handle=args.handle)
        opt = solve(model, args.alpha)
        prog = evaluate(model, progressive_policy(model))
        _, occ, ab = best_rule(model, args.alpha)
        print(
            f"| {n} | {100 * opt.occupancy:.2f}% | {100 * prog.occupancy:.2f}% | {opt.occupancy / prog.occupancy:.3f}x"
            f" | {100 * occ:.2f}% at {100 * ab:.2f}% | {occ / opt.occupancy:.4f} |"
        )
    print(
        "\nThe ceiling is the most any policy gains over progressive pace in the analogue (target in the issue:"
        " predictive >= 1.40x VICIdial adaptive, which paces like progressive on these floors)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
