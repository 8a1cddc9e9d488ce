"""Running replications, in parallel, through any ``concurrent.futures.Executor``.

Replications are independent campaigns with their own random streams, so they parallelise perfectly. The default
is a local process pool; pass your own executor to spread them over a cluster (for Dask,
``distributed.Client(...).get_executor()``). Results are put back in replication order, so the report does not
depend on which worker finished first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sim.metrics import pool, replication_figures, time_series
from sim.runtime import ReplicationResult, run_replication
from sim.scenario import Scenario

Progress = Callable[[int, int], None]
K = TypeVar("K", bound=Hashable)
Job = tuple[K, Callable[..., ReplicationResult], tuple[Any, ...]]


def run_jobs(
    jobs: Sequence[Job[K]],
    *,
    executor: Executor | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[K, ReplicationResult]:
    """Run ``(key, function, args)`` jobs and return their results by key.

    Jobs are submitted in the order given, so put slow ones first. With no ``executor`` they run in a local
    process pool of ``workers`` processes (default: one per core), or in this process when there is only one job
    or one worker. ``progress(done, total)`` is called as each finishes.
    """
    total = len(jobs)
    results: dict[K, ReplicationResult] = {}
    own_pool = None
    if executor is None:
        workers = workers or os.cpu_count() or 1
        if total > 1 and workers > 1:
            executor = own_pool = ProcessPoolExecutor(max_workers=min(workers, total))
    try:
        if executor is None:
            for done, (key, fn, args) in enumerate(jobs, 1):
                results[key] = fn(*args)
                if progress:
                    progress(done, total)
        else:
            futures: dict[Future[ReplicationResult], K] = {executor.submit(fn, *args): key for key, fn, args in jobs}
            for done, fut in enumerate(as_completed(futures), 1):
                results[futures[fut]] = fut.result()
                if progress:
                    progress(done, total)
    finally:
        if own_pool is not None:
            own_pool.shutdown(cancel_futures=True)
    return results


@dataclass
class SimulationReport:
    """Everything a simulation produced: the scenario, per-replication figures and pooled figures.

    ``series`` holds the mean occupancy and talk per 15-minute bin; ``time_series`` the day per bin with 95% bands
    over replications (occupancy, abandonment, the live-answer rate against the scenario's; see
    :func:`sim.metrics.time_series`), which is what :func:`sim.report.plot` draws."""

    scenario: Scenario
    replications: list[dict[str, Any]]
    pooled: dict[str, Any]
    series: dict[str, list[float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    time_series: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document: pooled figures at the top level, then the detail."""
        doc: dict[str, Any] = {k: v for k, v in self.pooled.items()}
        doc["policy"] = self.scenario.policy
        doc["target_abandon_rate"] = self.scenario.target_abandon_rate
        doc["replication_count"] = len(self.replications)
        doc["wall_seconds"] = self.wall_seconds
        doc["scenario"] = self.scenario.to_dict()
        doc["replications"] = self.replications
        doc["series"] = self.series
        doc["time_series"] = self.time_series
        return doc


def _mean_series(results: list[ReplicationResult]) -> dict[str, list[float]]:
    import math

    out: dict[str, list[float]] = {}
    for key in ("occupancy", "talk"):
        columns = list(zip(*(r.series.get(key, []) for r in results), strict=False))
        means = []
        for col in columns:
            vals = [v for v in col if not math.isnan(v)]
            means.append(sum(vals) / len(vals) if vals else math.nan)
        out[key] = means
    return out


def pooled_figures(
    scenario: Scenario, finished: Sequence[ReplicationResult], cap: float | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-replication figures and their pooled means and intervals, as a report carries them: the outbound
    figures of :func:`sim.metrics.pool`, plus ``inbound`` (service level, ASA, abandonment, occupancy per group)
    with ``[inbound]`` and ``periods`` (each stretch of the shift apart, :func:`sim.inbound_periods.period_figures`)
    with ``[[periods]]``. One function for ``dialer simulate`` and every point of ``dialer sweep``, so a sweep's
    JSON says what a simulation's says. ``cap`` (default: the scenario's target) is what days and windows are
    judged against: a sweep judges every point against its one cap, whatever target the point paces to."""
    cap = scenario.target_abandon_rate if cap is None else cap
    per_rep = [replication_figures(r, cap, scenario.rolling_window_hours) for r in finished]
    pooled = pool(per_rep, cap)
    if scenario.inbound is not None:  # a blended or inbound floor: service level, ASA, abandonment, per group
        from sim.inbound_metrics import pool_inbound

        pooled["inbound"] = pool_inbound(finished, scenario.inbound.service_level_seconds)
    if scenario.periods:  # call flows by the hour: each period's values and figures
        from sim.inbound_periods import period_figures

        pooled["periods"] = period_figures(finished, scenario)
    return per_rep, pooled


def simulate(
    scenario: Scenario,
    *,
    executor: Executor | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> SimulationReport:
    """Run every replication of ``scenario`` and pool the results.

    With no ``executor``, replications run in a local process pool of ``workers`` processes (default: one per
    core), or in this process when there is only one replication or one worker.
    """
    start = time.perf_counter()
    n = scenario.replications
    jobs: list[Job[int]] = [(i, run_replication, (scenario, i)) for i in range(n)]
    results = run_jobs(jobs, executor=executor, workers=workers, progress=progress)
    finished = [results[i] for i in range(n)]
    per_rep, pooled = pooled_figures(scenario, finished)
    return SimulationReport(
        scenario=scenario,
        replications=per_rep,
        pooled=pooled,
        series=_mean_series(finished),
        wall_seconds=time.perf_counter() - start,
        time_series=time_series(finished, scenario),
    )
