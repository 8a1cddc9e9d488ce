"""A blended floor's frontier: outbound talk time against the inbound service level and the abandonment rates.

Run: ``python -m benchmarks.blend_frontier [--out DIR] [--replications N] [--hours H] [--quick] [--credits C ...]
[--only PREFIX ...]``

One floor of blended agents answers a Poisson stream of inbound callers (exponential handle times, exponential
patience) and dials outbound with what is left. Each pacing rule is swept over its knob, on the same replications
(same seeds, so the same callers and the same dialed numbers):

* ``blended`` (predictive outbound, Erlang reserve) at inbound service-level targets from 50% to 95% in 20 s;
* ``threshold`` (the published baseline: keep k agents idle) with progressive outbound, k = 0..5;
* ``threshold`` with predictive outbound, k = 0..3;
* plain ``predictive``, which keeps nobody back.

``--credits 0 0.5 1`` runs the ``blended`` curve once per ``freeing_credit`` (how much of each agent expected to
free from outbound work within T stands in for the reserve; 0 is the Erlang team alone), on the same seeds, so
the curves compare in one run; ``--only blended`` runs the rules whose label starts so (``--only`` repeats). The
machine (architecture, cores, Python) is printed and written with the table.

Written to ``OUT/blend_frontier.md`` (the table) and ``OUT/blend_frontier.png`` (outbound talk share against the
inbound service level, and against outbound abandonment); the default OUT is ``benchmarks/results/blend``, which
git ignores, so a run never writes over tracked files.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from sim.inbound_metrics import inbound_figures, pool_inbound
from sim.metrics import mean_interval
from sim.runner import run_jobs
from sim.runtime import ReplicationResult, run_replication
from sim.scenario import Scenario, loads

HERE = Path(__file__).resolve().parent

FLOOR = """
[campaign]
name = "blended-20"
policy = "predictive"
target_abandon_rate = 0.03
hours = {hours}
replications = {replications}
seed = 16

[inbound]
rate_per_hour = {rate}                                   # 12 Erlangs on 20 agents by default
handle_time = {{ dist = "exponential", mean = 180 }}
wrap_time = {{ dist = "fixed", value = 15 }}
patience = {{ dist = "exponential", mean = 120 }}
service_level_seconds = 20
service_level_target = 0.8

[groups]
blended = 20
"""


@dataclass(frozen=True)
class Point:
    family: str  # the curve it belongs to
    label: str
    policy: str
    pacing: tuple[tuple[str, Any], ...]


def points(credits: tuple[float, ...] = (0.0,)) -> list[Point]:
    """Every rule of the frontier; the blended curve once per ``freeing_credit`` in ``credits`` (a credit of 0
    keeps the labels the table had before the credit existed)."""
    out = [Point("predictive, no reserve", "predictive", "predictive", ())]
    for credit in credits:
        family = "blended (predictive)" + (f", credit {credit:g}" if credit else "")
        for target in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
            pacing: tuple[tuple[str, Any], ...] = (("service_level_target", target),)
            if credit:
                pacing += (("freeing_credit", credit),)
            label = f"blended {target:.0%}" + (f" credit {credit:g}" if credit else "")
            out.append(Point(family, label, "blended", pacing))
    for k in range(6):
        out.append(Point("threshold (progressive)", f"threshold k={k}", "threshold", (("k", k),)))
    for k in range(4):
        pacing = (("k", k), ("outbound", "predictive"))
        out.append(Point("threshold (predictive)", f"threshold k={k} pred", "threshold", pacing))
    return out


def figures(results: list[ReplicationResult], within: float) -> dict[str, Any]:
    """Per-point figures: means and 95% intervals over replications."""
    inbound = pool_inbound(results, within)
    talk = []
    abandon = []
    for r in results:
        logged = sum(r.agent_seconds.values())
        talk.append((r.agent_seconds["on_call"] - r.inbound_talk_seconds) / logged if logged else math.nan)
        live = r.totals["live_answers"]
        abandon.append(r.totals["abandoned"] / live if live else 0.0)
    out_talk = mean_interval(talk, 0.0, 1.0)
    out_ab = mean_interval(abandon, 0.0, 1.0)
    return {
        "outbound_talk": (out_talk.mean, out_talk.half_width),
        "outbound_abandon": (out_ab.mean, out_ab.half_width),
        "outbound_abandon_max": max(abandon),
        "service_level": (inbound["service_level"]["mean"], inbound["service_level"]["half_width"]),
        "inbound_abandon": (inbound["abandon_rate"]["mean"], inbound["abandon_rate"]["half_width"]),
        "asa": inbound["asa"]["mean"],
        "occupancy": inbound["occupancy_blended"]["mean"],
        "dials": sum(r.totals["dials"] for r in results) / len(results),
        # Per replication, in replication order (same seeds across rules): for the paired comparisons below.
        "talk_k": talk,
        "sl_k": [inbound_figures(r, within)["service_level"] for r in results],
    }


def _talk_at(sl: np.ndarray, talk: np.ndarray, level: float) -> float:
    """Outbound talk where a curve crosses the service level ``level``: linear between its two points either side
    (the points taken in order of service level); NaN when the curve does not reach it."""
    order = np.argsort(sl)
    x, y = sl[order], talk[order]
    if not x[0] <= level <= x[-1]:
        return math.nan
    return float(np.interp(level, x, y))


def matched(
    rows: list[tuple[Point, dict[str, Any]]], levels: tuple[float, ...], boots: int = 2000, seed: int = 7
) -> list[str]:
    """Each blended curve against the first (credit 0) at equal inbound service level: the outbound talk each
    curve gives at ``levels`` (interpolated), and the difference with a 95% interval from a paired bootstrap
    (replications resampled together, since replication k of every rule meets the same callers).

    Comparing at the same target would mislead: a smaller reserve gives more talk and a lower service level at
    once; only at the same service level does more talk mean a better reserve."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for point, f in rows:
        if point.policy == "blended":
            curves.setdefault(point.family, []).append(f)
    if len(curves) < 2:
        return []
    names = list(curves)
    data = {
        name: (np.array([f["sl_k"] for f in fs], dtype=float), np.array([f["talk_k"] for f in fs], dtype=float))
        for name, fs in curves.items()
    }
    n = data[names[0]][0].shape[1]
    rng = np.random.default_rng(seed)
    picks = [rng.integers(0, n, n) for _ in range(boots)]
    out = [
        "",
        f"Outbound talk at equal inbound service level (interpolated along each curve; difference against "
        f"{names[0]!r} with a 95% paired-bootstrap interval, {boots} resamples of the {n} replications):",
        "",
        "| service level | " + " | ".join(names) + " | " + " | ".join(f"{m} - base" for m in names[1:]) + " |",
        "|---" * (2 * len(names)) + "|",
    ]
    for level in levels:
        at = {m: _talk_at(sl.mean(axis=1), talk.mean(axis=1), level) for m, (sl, talk) in data.items()}
        cells = [f"{100 * at[m]:.2f}%" if math.isfinite(at[m]) else "n/a" for m in names]
        for m in names[1:]:
            diffs = []
            for idx in picks:
                base = _talk_at(data[names[0]][0][:, idx].mean(axis=1), data[names[0]][1][:, idx].mean(axis=1), level)
                other = _talk_at(data[m][0][:, idx].mean(axis=1), data[m][1][:, idx].mean(axis=1), level)
                if math.isfinite(base) and math.isfinite(other):
                    diffs.append(other - base)
            d = at[m] - at[names[0]]
            if diffs and math.isfinite(d):
                lo, hi = np.percentile(diffs, [2.5, 97.5])
                cells.append(f"{100 * d:+.2f} pts (95% CI {100 * lo:+.2f} .. {100 * hi:+.2f})")
            else:
                cells.append("n/a")
        out.append(f"| {100 * level:g}% | " + " | ".join(cells) + " |")
    return out


def _pm(pair: tuple[float, float], pct: bool = True) -> str:
    mean, half = pair
    return f"{100 * mean:.1f}% ± {100 * half:.1f}" if pct else f"{mean:.1f} ± {half:.1f}"


def table(rows: list[tuple[Point, dict[str, Any]]], base: Scenario) -> str:
    inbound = base.inbound
    assert inbound is not None
    lines = [
        f"# Blended frontier: {base.agents} blended agents, {inbound.describe()}",
        "",
        f"{base.replications} replications of {base.hours:g} h (same seeds for every rule); means ± 95% "
        "half-widths. Outbound talk: share of logged-in time talking to outbound people. Service level: inbound "
        f"callers answered within {inbound.service_level_seconds:g} s over all callers (abandoned ones count "
        "against it). Outbound abandonment: per replication, abandoned over live answers (cap 3%).",
        "",
        "| rule | outbound talk | inbound service level | inbound abandoned | ASA (s) | outbound abandoned "
        "(worst rep) | occupancy |",
        "|---|---|---|---|---|---|---|",
    ]
    for point, f in rows:
        lines.append(
            f"| {point.label} | {_pm(f['outbound_talk'])} | {_pm(f['service_level'])} | "
            f"{_pm(f['inbound_abandon'])} | {f['asa']:.1f} | {_pm(f['outbound_abandon'])} "
            f"({100 * f['outbound_abandon_max']:.1f}%) | {100 * f['occupancy']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[tuple[Point, dict[str, Any]]], path: Path, target: float) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    families: dict[str, list[tuple[Point, dict[str, Any]]]] = {}
    for point, f in rows:
        families.setdefault(point.family, []).append((point, f))
    for family, members in families.items():
        sl = [100 * f["service_level"][0] for _, f in members]
        talk = [100 * f["outbound_talk"][0] for _, f in members]
        ab = [100 * f["outbound_abandon"][0] for _, f in members]
        style = "o" if len(members) == 1 else "o-"
        left.plot(sl, talk, style, label=family)
        right.plot(ab, talk, style, label=family)
        for (point, _), x, y in zip(members, sl, talk, strict=True):
            left.annotate(point.label.split()[-1] if " " in point.label else point.label, (x, y), fontsize=7)
    left.axvline(100 * target, color="grey", linestyle=":", label=f"{target:.0%} target")
    left.set_xlabel("inbound service level (% answered within 20 s)")
    left.set_ylabel("outbound talk (% of logged-in time)")
    left.legend(fontsize=8)
    left.set_title("outbound talk vs inbound service level")
    right.axvline(3.0, color="red", linestyle=":", label="3% cap")
    right.set_xlabel("outbound abandonment (%)")
    right.set_ylabel("outbound talk (% of logged-in time)")
    right.legend(fontsize=8)
    right.set_title("outbound talk vs outbound abandonment")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "results" / "blend"), help="default benchmarks/results/blend")
    ap.add_argument("--replications", type=int, default=8)
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=240.0, help="inbound callers per hour")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="3 replications of 2 h: a smoke run")
    ap.add_argument(
        "--credits", type=float, nargs="+", default=[0.0], help="blended freeing_credit values (default: 0)"
    )
    ap.add_argument("--only", nargs="+", metavar="PREFIX", help="run only the rules whose label starts so")
    ap.add_argument(
        "--levels",
        type=float,
        nargs="+",
        default=[0.92, 0.93, 0.94, 0.95, 0.96, 0.97],
        help="service levels at which blended curves of different credits are compared",
    )
    args = ap.parse_args(argv)
    reps, hours = (3, 2.0) if args.quick else (args.replications, args.hours)
    base = loads(FLOOR.format(hours=hours, replications=reps, rate=args.rate))
    pts = [p for p in points(tuple(args.credits)) if not args.only or p.label.startswith(tuple(args.only))]
    jobs = []
    scenarios = {}
    for p in pts:
        scenarios[p.label] = s = base.replace(policy=p.policy, pacing=tuple(sorted(p.pacing)))
        jobs += [((p.label, i), run_replication, (s, i)) for i in range(reps)]
    machine = f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(machine)
    print(f"{len(pts)} rules x {reps} replications of {hours:g} h ...", flush=True)
    t0 = time.perf_counter()
    results = run_jobs(jobs, workers=args.workers)
    inbound = base.inbound
    assert inbound is not None
    rows = [(p, figures([results[(p.label, i)] for i in range(reps)], inbound.service_level_seconds)) for p in pts]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = (
        table(rows, base) + "\n".join(matched(rows, tuple(args.levels))) + f"\n\n{machine}; {args.workers} worker(s).\n"
    )
    (out / "blend_frontier.md").write_text(text, encoding="utf-8")
    png = plot(rows, out / "blend_frontier.png", inbound.service_level_target)
    print(text)
    print(f"written {out / 'blend_frontier.md'}{' and ' + str(png) if png else ''} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
