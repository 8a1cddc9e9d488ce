"""Simulated dial attempts per wall-second: our simulator against a minimal SimPy model of the same call flow.

Both run the same call flow in the same process, alternately, so the machine's speed cancels out of the ratio:
progressive dialing, ring exponential (mean 15 s), a person answers with probability p, talk exponential
(mean 120 s), fixed wrap, 2-s connect limit. The minimal model is what one would write in an afternoon in
idiomatic SimPy: a process per dialed number, agents as a Resource, a dialer process keeping one call per idle
agent; no engine, no pacing policy, no records or statistics. Ours pays for the engine (state machine, timers,
records, statistics) and a policy decision after every event. Target: ratio >= 0.5. A bare per-agent loop (no
calls as entities at all) is printed too, for scale.

    python -m benchmarks.sim_throughput [--agents 50] [--hours 8] [--rounds 5]

``--large`` measures pacing's own cost instead: predictive against progressive on the 1,000-agent floor
(``benchmarks/scenarios/large-floor-1000.toml``, a realistic 8-h day), alternately in the same run, with each
day's talk fraction and abandonment. Target: predictive's simulated dials per wall-second >= 0.5x progressive's.

    python -m benchmarks.sim_throughput --large [--rounds 1] [--hours 8] [--scenario PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from pathlib import Path

import simpy

from benchmarks._machine import describe
from sim import scenario as scenarios
from sim.runtime import SimulatedCampaign

RING, P_LIVE, TALK, WRAP, CONNECT_LIMIT = 15.0, 0.3, 120.0, 5.0, 2.0


def minimal_model(agents: int, hours: float, seed: int) -> int:
    """The same call flow written directly in SimPy, with no engine: returns the number of dials placed.

    Idiomatic SimPy: agents are a Resource, each dialed number a process that rings and, if a person answers,
    requests an agent and gives up after the connect limit; a dialer process keeps one call ringing per idle
    agent (progressive) and wakes whenever a call or an agent changes state.
    """
    rng = random.Random(seed)
    env = simpy.Environment()
    staff = simpy.Resource(env, capacity=agents)
    shift = hours * 3600.0
    dials = 0
    ringing = 0
    abandoned = 0
    changed = env.event()

    def poke() -> None:
        nonlocal changed
        if not changed.triggered:
            changed.succeed()

    def call() -> simpy.events.ProcessGenerator:
        nonlocal ringing, abandoned
        yield env.timeout(rng.expovariate(1.0 / RING))
        if rng.random() < P_LIVE:
            req = staff.request()
            ringing -= 1
            got = yield req | env.timeout(CONNECT_LIMIT)
            if req in got:
                poke()
                yield env.timeout(rng.expovariate(1.0 / TALK))
                yield env.timeout(WRAP)
                staff.release(req)
            else:
                req.cancel()
                abandoned += 1
        else:
            ringing -= 1
        poke()

    def dialer() -> simpy.events.ProcessGenerator:
        nonlocal dials, ringing, changed
        while env.now < shift:
            for _ in range(agents - staff.count - ringing):
                dials += 1
                ringing += 1
                env.process(call())
            changed = env.event()
            yield changed | env.timeout(shift - env.now)

    env.process(dialer())
    env.run()
    assert abandoned == 0  # progressive with reserved agents never abandons
    return dials


def bare_loop(agents: int, hours: float, seed: int) -> int:
    """A floor, not a model: one loop per agent that dials, rings and talks, with no calls as entities, no
    agent pool and no connect limit. Shown for scale only; it cannot express any pacing but progressive."""
    rng = random.Random(seed)
    env = simpy.Environment()
    shift = hours * 3600.0
    dials = 0

    def agent() -> simpy.events.ProcessGenerator:
        nonlocal dials
        while env.now < shift:
            dials += 1
            yield env.timeout(rng.expovariate(1.0 / RING))
            if rng.random() < P_LIVE:
                yield env.timeout(rng.expovariate(1.0 / TALK))
                yield env.timeout(WRAP)

    for _ in range(agents):
        env.process(agent())
    env.run()
    return dials


def our_model(agents: int, hours: float, seed: int) -> int:
    scenario = scenarios.Scenario(
        name="throughput",
        agents=agents,
        policy="progressive",
        hours=hours,
        replications=1,
        seed=seed,
        live_answer_probability=P_LIVE,
        time_to_answer=scenarios.parse_distribution("t", {"dist": "exponential", "mean": RING}),
        no_answer_after=scenarios.parse_distribution("n", {"dist": "exponential", "mean": RING}),
        talk_time=scenarios.parse_distribution("k", {"dist": "exponential", "mean": TALK}),
        wrap_time=scenarios.parse_distribution("w", {"dist": "fixed", "value": WRAP}),
        connect_limit=CONNECT_LIMIT,
        # The minimal model has neither machines, busy tones nor breaks: switch them off to compare like with like.
        machine_probability=0.0,
        busy_probability=0.0,
        pause_probability=0.0,
    )
    result = SimulatedCampaign(scenario, 0).run()
    return result.totals["dials"]


LARGE_FLOOR = Path(__file__).parent / "scenarios" / "large-floor-1000.toml"


def scenario_day(path: Path, policy: str, hours: float, replication: int) -> tuple[float, dict[str, float]]:
    """One day of the scenario at ``path`` under ``policy``: wall seconds, and dials, CPU seconds of this
    process (steadier than wall time on a shared machine), talk and abandonment."""
    scenario = dataclasses.replace(scenarios.load(path), policy=policy, hours=hours)
    t0, c0 = time.perf_counter(), time.process_time()
    result = SimulatedCampaign(scenario, replication).run()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    tot, secs = result.totals, result.agent_seconds
    logged = sum(secs.values())
    figures = {
        "dials": float(tot["dials"]),
        "cpu": cpu,
        "talk": secs.get("on_call", 0.0) / logged if logged else 0.0,
        "abandon": tot["abandoned"] / tot["live_answers"] if tot["live_answers"] else 0.0,
    }
    return elapsed, figures


def large(path: Path, hours: float, rounds: int) -> None:
    """Predictive against progressive on the same floor, alternately (order swapped each round), same seeds."""
    rates: dict[str, list[float]] = {"predictive": [], "progressive": []}
    cpu_rates: dict[str, list[float]] = {"predictive": [], "progressive": []}
    for r in range(rounds):
        order = ("predictive", "progressive") if r % 2 == 0 else ("progressive", "predictive")
        for policy in order:
            elapsed, f = scenario_day(path, policy, hours, r)
            rates[policy].append(f["dials"] / elapsed)
            cpu_rates[policy].append(f["dials"] / f["cpu"])
            print(
                f"round {r + 1} {policy:11s} {f['dials']:9,.0f} dials in {elapsed:6.1f} s = "
                f"{f['dials'] / elapsed:7,.0f} dials/s ({f['dials'] / f['cpu']:7,.0f} per CPU-second); "
                f"talk {f['talk']:.2%}, abandonment {f['abandon']:.2%}",
                flush=True,
            )
    pred, prog = statistics.median(rates["predictive"]), statistics.median(rates["progressive"])
    ratios = [a / b for a, b in zip(rates["predictive"], rates["progressive"], strict=True)]
    print()
    print(f"machine: {describe()}")
    print(f"scenario: {path.name}, {hours:g} h, replications 0-{rounds - 1}")
    print(f"predictive:  {pred:,.0f} simulated dials per wall-second (median of {rounds})")
    print(f"progressive: {prog:,.0f} simulated dials per wall-second (median of {rounds})")
    print(
        f"ratio predictive/progressive: {pred / prog:.2f} (per round: {', '.join(f'{x:.2f}' for x in ratios)}; "
        "target >= 0.5)"
    )
    cpu_pred, cpu_prog = statistics.median(cpu_rates["predictive"]), statistics.median(cpu_rates["progressive"])
    print(f"per CPU-second: predictive {cpu_pred:,.0f}, progressive {cpu_prog:,.0f}, ratio {cpu_pred / cpu_prog:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=None, help="default 5, or 1 with --large")
    parser.add_argument("--large", action="store_true", help="predictive vs progressive on the 1,000-agent floor")
    parser.add_argument("--scenario", type=Path, default=LARGE_FLOOR, help="the floor for --large")
    args = parser.parse_args()
    if args.large:
        large(args.scenario, args.hours, args.rounds or 1)
        return
    args.rounds = args.rounds or 5
    ours: list[float] = []
    base: list[float] = []
    bare: list[float] = []
    for r in range(args.rounds):
        for label, fn, sink in (("minimal", minimal_model, base), ("ours", our_model, ours), ("bare", bare_loop, bare)):
            t0 = time.perf_counter()
            dials = fn(args.agents, args.hours, r + 1)
            elapsed = time.perf_counter() - t0
            sink.append(dials / elapsed)
            print(f"round {r + 1} {label:8s} {dials:7d} dials in {elapsed:6.3f} s = {dials / elapsed:10,.0f} dials/s")
    o, b, f = statistics.median(ours), statistics.median(base), statistics.median(bare)
    print()
    print(f"machine: {describe()}")
    print(
        f"scenario: {args.agents} agents, {args.hours:g} h, progressive, p={P_LIVE}, ring {RING:g} s, talk {TALK:g} s"
    )
    print(f"minimal SimPy model: {b:,.0f} simulated dials per wall-second (median of {args.rounds})")
    print(f"our simulator:       {o:,.0f} simulated dials per wall-second (median of {args.rounds})")
    print(f"bare per-agent loop: {f:,.0f} simulated dials per wall-second (for scale, not a model of the flow)")
    print(f"ratio ours/minimal:  {o / b:.2f}  (target >= 0.5)")
    print(f"ratio ours/bare:     {o / f:.2f}")


if __name__ == "__main__":
    main()
