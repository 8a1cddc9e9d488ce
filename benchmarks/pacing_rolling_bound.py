"""How much of the LP optimum 1-h rolling windows leave to any policy, on the small Markov floors (issue 16 item 6).

Run: ``python -m benchmarks.pacing_rolling_bound [--floors 5 10] [--alphas 0.01 0.02] [--cooldown-minutes 45]``

Why: the LP optimum of :mod:`sim.markov` holds abandonment to the cap *on average*. A campaign judged on 1-h
windows (evaluated every 15 minutes, as ``sim.metrics.rolling_windows`` and the regulators' dashboards do) must
keep every window under the cap. On 5 agents at 1% a window holds about 112 answers, fewer than 200 at any
occupancy, so it may hold at most one abandonment; any two abandonments less than 45 minutes apart share some
window (a window ends every 15 minutes and spans 60). That necessary condition -- after an abandonment, none for
45 minutes (or, where a window may hold ``A``, never ``A + 1`` within 45 minutes) -- is added to the LP here, so
its optimum is what the best conceivable policy could reach while respecting it: a ceiling on any policy that
keeps every window under the cap (the windows' own answer counts are ignored, which only loosens it).

Formulation: the state of :mod:`sim.markov` gains a cooling count ``c``. Where a window may hold one
abandonment, ``c`` is 0 (free) or ``1..K``, the phases of an Erlang(K) cooldown of mean ``T`` = 45 min started by
each abandonment; while cooling, a state where an answer could find every agent busy is forbidden. The spread of
the cooldown hardly matters (K = 1 and K = 30 give the same optimum to 0.001%): the policy may not risk an
abandonment anywhere in it, so only its mean length counts. Where a window may hold ``A`` > 1, each abandonment
starts its own exponential timer of mean ``T``, ``c`` counts those running, and a state risking the ``A + 1``-th is
forbidden: an approximation of deterministic 45-min spacing, not a strict bound. ``A`` is the cap times a busy
hour's answers (the optimum's, plus three Poisson standard deviations), rounded down. As ``T`` shrinks to nothing
the ceiling returns to within a point of the LP (what is left: a launched call cannot be recalled, so a second
answer while all agents are busy must never be possible once a window is full).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import describe
from sim.markov import MarkovModel, occupation_lp, solve


def solve_cooling(
    model: MarkovModel, alpha: float, cooldown: float, phases: int, allowed: int = 1
) -> tuple[float, float]:
    """(occupancy, abandonment per answer) of the best policy with average abandonment <= ``alpha`` that never
    lets ``allowed`` + 1 abandonments fall within a cooldown of mean ``cooldown`` seconds.

    ``allowed`` = 1: each abandonment starts an Erlang(``phases``) cooldown. ``allowed`` > 1: each abandonment
    starts its own exponential timer (``phases`` is ignored), and the state counts the timers running."""
    n, cap = model.agents, model.ringing_cap
    counting = allowed > 1
    nc = allowed + 1 if counting else phases + 1
    nb, nr = n + 1, cap + 1
    ny = nc * nb * nr
    mu, gamma, p = 1.0 / model.mean_handle, 1.0 / model.mean_ring, model.answer_probability

    def at(c: int, b: int, r: int) -> int:
        return (c * nb + b) * nr + r

    flows: list[tuple[int, int, float]] = []
    busy = np.zeros(ny)
    answer = np.zeros(ny)
    abandon = np.zeros(ny)
    forbidden: list[int] = []
    for c in range(nc):
        for b in range(nb):
            for r in range(nr):
                y = at(c, b, r)
                busy[y] = b / n
                answer[y] = r * gamma * p
                if b:
                    flows.append((y, at(c, b - 1, r), b * mu))
                if r:
                    if b < n:
                        flows.append((y, at(c, b + 1, r - 1), r * gamma * p))
                    else:
                        abandon[y] = r * gamma * p
                        full = c == allowed if counting else c > 0
                        if full:  # an answer here would be one abandonment too many within the cooldown
                            forbidden.append(y)
                        after = min(c + 1, allowed) if counting else phases
                        flows.append((y, at(after, b, r - 1), r * gamma * p))
                    if p < 1.0:
                        flows.append((y, at(c, b, r - 1), r * gamma * (1.0 - p)))
                if c:  # a timer runs out: counting, any of c; else the next phase of the one cooldown
                    flows.append((y, at(c - 1, b, r), c / cooldown if counting else phases / cooldown))
    # An empty, idle, free floor would stay so forever; cooling, time passes there (the cooldown runs out).
    res = occupation_lp(ny, nr, flows, busy, answer, abandon, alpha, closed=[at(0, 0, 0)], forbidden=forbidden)
    if res.status != 0 or res.x is None:
        raise SystemExit(f"LP not solved: {res.message}")
    x = np.maximum(res.x[:ny], 0.0)
    ans = float(answer @ x)
    return float(busy @ x), (float(abandon @ x) / ans if ans > 0 else 0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--floors", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.01, 0.02])
    ap.add_argument("--probability", type=float, default=0.3)
    ap.add_argument("--cooldown-minutes", type=float, default=45.0)
    ap.add_argument("--phases", type=int, nargs="+", default=[1, 30], help="Erlang phases (one allowed per window)")
    args = ap.parse_args()
    print(f"machine: {describe()}")
    for agents in args.floors:
        model = MarkovModel(agents, args.probability)
        for alpha in args.alphas:
            plain = solve(model, alpha)
            per_hour = plain.answer_rate * 3600.0
            # What one window may hold: the cap times the answers of a busy hour (the optimum's, plus three Poisson
            # standard deviations), rounded down. More would only loosen the ceiling.
            allowed = max(1, math.floor(alpha * (per_hour + 3.0 * math.sqrt(per_hour))))
            print(
                f"{agents} agents p={args.probability:g} cap {100 * alpha:g}%: LP {100 * plain.occupancy:.2f}%, "
                f"{per_hour:.0f} answers an hour, a window may hold {allowed} abandonment(s)"
            )
            for k in args.phases if allowed == 1 else [1]:
                t0 = time.perf_counter()
                occ, ab = solve_cooling(model, alpha, 60.0 * args.cooldown_minutes, k, allowed)
                how = f"Erlang {k} cooldown" if allowed == 1 else "exponential timers"
                print(
                    f"  no {allowed + 1} abandonments within {args.cooldown_minutes:g} min ({how}): occupancy "
                    f"{100 * occ:.2f}% = {100 * occ / plain.occupancy:.2f}% of the LP, abandonment {100 * ab:.3f}% "
                    f"({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
