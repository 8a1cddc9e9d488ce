"""Decision cost of predictive pacing on a large floor: 1,000 agents and 3,000 calls in flight.

Run: ``python benchmarks/pacing_decision_speed.py [--agents 1000] [--ringing 3000] [--decisions 5000]``

The engine calls ``decide`` after every event, so on a big floor it must stay well under a millisecond. The floor
is built through the engine itself (agents log in, calls are launched and some answered), the predictive policy
is given a realistic history (calls drawn from the realistic scenario's distributions), and then ``decide`` is
timed on snapshots taken as the clock advances, with the estimators' tables refreshed on their normal cadence
(every 30 s of campaign time when new evidence arrived). Baselines timed on the very same snapshots: building
the snapshot and walking its ringing calls and busy agents (the least any per-call policy must do), and
VICIdial-style ratio dialing (O(1)). Figures are printed with the machine, and as ratios to those baselines.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from dialer import Engine, SyntheticLeads
from dialer.engine import events as ev
from dialer.engine.records import CallRecord, Outcome
from dialer.engine.snapshot import Snapshot
from dialer.leads import Lead
from dialer.pacing import Power, Predictive
from dialer.pacing.base import PacingPolicy
from dialer.pacing.ratio import ratio_launches


class _Hold(PacingPolicy):
    """Launches exactly what it is told to, once: how the benchmark fills the floor."""

    def __init__(self) -> None:
        self.pending = 0

    def decide(self, snap: Snapshot) -> int:
        n, self.pending = self.pending, 0
        return n


def build_floor(agents: int, ringing: int) -> Engine:
    """A mid-shift floor built through the engine's own events, in time order: every agent talking, having
    connected some time in the last ten minutes; ``ringing`` calls dialed over the last 25 s. Ages are spread as
    on a live floor, so the policy reads as many distinct histogram bins as it would there."""
    hold = _Hold()
    start = -700.0
    engine = Engine(hold, SyntheticLeads(), start=start)
    rng = np.random.default_rng(1)
    for i in range(agents):
        engine.handle(ev.AgentLoggedIn(start, f"a{i}"))
    # (time, order, what, index): launches before answers at the same instant.
    plan: list[tuple[float, int, str, int]] = []
    for i, t in enumerate(rng.uniform(-600.0, 0.0, agents)):
        ring = float(rng.uniform(4.0, 16.0))
        plan.append((float(t) - ring, 0, "dial-answered", i))
        plan.append((float(t), 1, "answer", i))
    plan += [(float(t), 0, "dial", -1) for t in rng.uniform(-25.0, 0.0, ringing)]
    plan.sort()
    call_of: dict[int, int] = {}
    for t, _, what, i in plan:
        if what == "answer":
            engine.handle(ev.AgentReady(t, f"a{i}"))
            engine.handle(ev.CallAnsweredByPerson(t, call_of[i]))
        else:
            hold.pending = 1
            engine.handle(ev.TimeAdvanced(t))
            if what == "dial-answered":
                call_of[i] = max(engine.calls)
    engine.handle(ev.TimeAdvanced(0.0))
    return engine


def history(policy: Predictive, n: int, rate: float) -> None:
    """Feed ``n`` finished calls drawn from the realistic scenario (20% live, 15% machine, 5% busy), dialed at
    ``rate`` a second up to the start: a big floor's estimators hold half an hour of samples, tens of thousands,
    and rebuilding the tables sorts them."""
    rng = np.random.default_rng(2)
    lead = Lead("x", "+15550000000")
    t = -n / rate
    for i in range(n):
        u = rng.random()
        ring = float(rng.uniform(4, 16))
        if u < 0.2:
            talk = float(rng.lognormal(np.log(120) - 0.18, 0.6))
            rec = CallRecord(i, lead, Outcome.CONNECTED, t, t + ring + talk, t + ring, t + ring, "a0", None, 0.0)
        elif u < 0.35:
            rec = CallRecord(i, lead, Outcome.MACHINE, t, t + ring, t + ring)
        elif u < 0.4:
            rec = CallRecord(i, lead, Outcome.BUSY, t, t + 3.0)
        else:
            rec = CallRecord(i, lead, Outcome.NO_ANSWER, t, t + 25.0)
        policy.observe(rec)
        t += 1.0 / rate


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--ringing", type=int, default=3000)
    ap.add_argument("--decisions", type=int, default=5000)
    ap.add_argument("--events-per-second", type=float, default=40.0, help="clock advance between decisions")
    args = ap.parse_args()
    engine = build_floor(args.agents, args.ringing)
    policy = Predictive(0.03, warmup_answers=0, prior_wrap_time=15.0)
    # The dial rate of a floor this size at 20% live answers and 135 s per call: about 37 a second for 1,000.
    rate = args.agents / 135.0 / 0.2
    history(policy, int(rate * 1800), rate)
    power = Power(1.5)
    snap0 = engine.snapshot()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"NumPy {np.__version__}"
    )
    print(f"floor: {snap0.on_call} agents on calls, {snap0.ringing} calls ringing, {snap0.in_flight} in flight")
    dt = 1.0 / args.events_per_second
    lead = Lead("x", "+15550000000")
    perf = time.perf_counter
    start = engine.now
    # Three passes over the same clock times (so one measurement's garbage does not land in another's timing).
    pred: list[float] = []
    launched: list[int] = []
    rebuilds = 0
    for i in range(args.decisions):
        engine.now = start + (i + 1) * dt
        if i % 20 == 0:  # new evidence now and then, so tables are rebuilt on their 30-s cadence
            policy.observe(CallRecord(10**6 + i, lead, Outcome.NO_ANSWER, engine.now - 25.0, engine.now))
        tables = policy._tables
        snap = engine.snapshot()
        t0 = perf()
        n = policy.decide(snap)
        pred.append(perf() - t0)
        launched.append(n)
        rebuilds += policy._tables is not tables
    walk: list[float] = []
    for i in range(args.decisions):
        engine.now = start + (i + 1) * dt
        t0 = perf()
        s = Snapshot(engine)
        sum(s.ringing_times())
        sum(t for _, t in s.busy_agent_times())
        walk.append(perf() - t0)
    ratio: list[float] = []
    for i in range(args.decisions):
        engine.now = start + (i + 1) * dt
        t0 = perf()
        ratio_launches(power.ratio, Snapshot(engine))
        ratio.append(perf() - t0)
    us = 1e6
    p50, p99, worst = percentile(pred, 50) * us, percentile(pred, 99) * us, max(pred) * us
    print(
        f"predictive decide: p50 {p50:7.1f} us   p99 {p99:7.1f} us   max {worst:7.1f} us"
        f"   (target p99 < 1000 us; {args.decisions} decisions, mean launch {statistics.mean(launched):.1f})"
    )
    print(f"  table rebuilds: {rebuilds}")
    w50, w99 = percentile(walk, 50) * us, percentile(walk, 99) * us
    r50 = percentile(ratio, 50) * us
    print(f"baseline, snapshot + walk of calls and agents: p50 {w50:7.1f} us   p99 {w99:7.1f} us")
    print(f"baseline, ratio dialing (VICIdial rule):      p50 {r50:7.1f} us")
    print(
        f"ratio predictive / snapshot walk: p50 {p50 / w50:.2f}x, p99 {p99 / w99:.2f}x;"
        f" predictive / ratio dialing: p50 {p50 / r50:.0f}x"
    )
    print("verdict:", "p99 under 1 ms" if p99 < 1000 else "p99 OVER 1 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
