"""``dialer simulate``: simulate a campaign and report occupancy and abandonment with confidence intervals."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from dialer.commands import cluster
from dialer.errors import ConfigError

log = logging.getLogger("dialer.simulate")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a campaign (the embedded default scenario when no file is given)",
        description="Simulate an outbound campaign and print occupancy, abandonment and throughput, pooled over "
        "replications with 95% confidence intervals (clipped to what each figure can be; flagged as rough below 10 "
        "replications). Without SCENARIO.toml, runs the default scenario (see --print-default); a key a file "
        "leaves out takes the value --print-default shows.",
    )
    p.add_argument("scenario", nargs="?", metavar="SCENARIO.toml", help="scenario file (default: embedded)")
    p.add_argument("--policy", help="pacing policy (progressive, power, vicidial-adaptive, predictive, ...)")
    p.add_argument("--agents", type=int, help="number of agents")
    p.add_argument("--hours", type=float, help="shift length in hours")
    p.add_argument("--days", type=int, help="campaign days per replication")
    p.add_argument("--replications", type=int, help="independent replications")
    p.add_argument("--seed", type=int, help="random seed (same seed, same numbers)")
    p.add_argument("--target", type=float, dest="target_abandon_rate", help="target abandonment rate (0.03 = 3%%)")
    p.add_argument("--ratio", type=float, help="lines per agent for the power policy")
    p.add_argument("--workers", type=int, help="parallel worker processes (default: one per core)")
    cluster.add_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also write a plot: occupancy, abandonment over the day against the target, and the live-answer rate "
        "against the scenario's (drift), each with its 95%% band over replications",
    )
    p.add_argument(
        "--print-default", action="store_true", help="print the default scenario, every key commented, and exit"
    )
    p.set_defaults(func=run)


def _json_safe(value: Any) -> Any:
    if hasattr(value, "item") and type(value).__module__ == "numpy":  # a numpy scalar (float64, bool_): plain
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    from dialer.progress import ProgressBar
    from sim import scenario as scenarios
    from sim.runner import simulate

    if args.print_default:
        sys.stdout.write(scenarios.default_text())
        return 0
    base = scenarios.load(args.scenario) if args.scenario else scenarios.default()
    overrides = {
        "policy": args.policy,
        "agents": args.agents,
        "hours": args.hours,
        "days": args.days,
        "replications": args.replications,
        "seed": args.seed,
        "target_abandon_rate": args.target_abandon_rate,
        "ratio": args.ratio,
    }
    try:
        scenario = base.replace(**overrides)
    except ConfigError as exc:
        option = exc.key.split(".")[-1].replace("_", "-")
        if option == "target-abandon-rate":
            option = "target"
        if overrides.get(exc.key.split(".")[-1]) is not None:
            raise ConfigError(f"--{option}", exc.message) from None
        raise
    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers", "must be >= 1")
    if args.plot:
        _check_plot_path(args.plot)
    # JSON log lines and a redrawn bar cannot share stderr: the bar stays off with --log-format json.
    bar = ProgressBar("simulating", enabled=not args.json and getattr(args, "log_format", "text") != "json")
    log.info(
        "simulating %r: %d replication(s), policy %s",
        scenario.name,
        scenario.replications,
        scenario.policy,
        extra={"scenario": scenario.name, "replications": scenario.replications, "policy": scenario.policy},
    )
    try:
        with cluster.executor(args.scheduler) as pool:
            report = simulate(scenario, workers=args.workers, progress=bar, executor=pool)
    finally:
        bar.close()
    log.info(
        "simulated %d replication(s) in %.1f s: abandonment %.2f%%, occupancy %.1f%%",
        len(report.replications),
        report.wall_seconds,
        100 * report.pooled["abandon_rate"],
        100 * report.pooled["agent_occupancy"],
        extra={
            "wall_seconds": report.wall_seconds,
            "abandon_rate": report.pooled["abandon_rate"],
            "agent_occupancy": report.pooled["agent_occupancy"],
        },
    )
    # The figures go out first: a plot that fails to write must not cost the user the run.
    if args.json:
        json.dump(_json_safe(report.to_json()), sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")
    else:
        from sim.report import format_table

        print(format_table(report))
    if args.plot:
        from sim.report import plot

        try:
            plot(report, args.plot)
        except (OSError, ValueError) as exc:
            raise ConfigError("--plot", f"cannot write {args.plot!r}: {exc}") from None
        if not args.json:
            print(f"Plot written to {args.plot}")
    return 0


def _check_plot_path(path: str) -> None:
    """Refuse a plot we could not write before spending minutes on the simulation."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise ConfigError("--plot", "needs matplotlib: pip install 'predictive-dialer[plot]'") from None
    target = Path(path)
    formats = FigureCanvasAgg.get_supported_filetypes()
    suffix = target.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise ConfigError("--plot", f"unsupported image type {target.suffix or '(none)'!r} (use .png)")
    if not target.parent.is_dir():
        raise ConfigError("--plot", f"directory {str(target.parent)!r} does not exist")
