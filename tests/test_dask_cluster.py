"""``--scheduler``: replications on a real local Dask cluster give the same figures as the local process pool for
the same seed (each replication draws from streams seeded by (seed, i), wherever it runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
ARGS = ["simulate", "--agents", "5", "--hours", "1", "--replications", "4", "--seed", "3", "--json"]


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        pytest.fail("dask.distributed is not installed (the [dask] extra); CI installs [all]")
    return distributed


def _figures(out: bytes) -> dict[str, object]:
    doc = json.loads(out)
    doc.pop("wall_seconds")  # how long it took is the only thing allowed to differ
    return doc


def test_a_dask_cluster_gives_the_local_pools_figures(tmp_path: Path) -> None:
    distributed = _distributed()
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        remote = subprocess.run(
            [sys.executable, "-m", "dialer.cli", *ARGS, "--scheduler", cluster.scheduler_address],
            capture_output=True, env=ENV, cwd=tmp_path, timeout=300,
        )  # fmt: skip
    local = subprocess.run(
        [sys.executable, "-m", "dialer.cli", *ARGS, "--workers", "2"], capture_output=True, env=ENV, cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert remote.returncode == 0, remote.stderr.decode()[-2000:]
    assert local.returncode == 0, local.stderr.decode()[-2000:]
    assert _figures(remote.stdout) == _figures(local.stdout)


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _distributed()
    proc = subprocess.run(
        [sys.executable, "-m", "dialer.cli", *ARGS, "--scheduler", "tcp://127.0.0.1:9"],
        capture_output=True, env=ENV, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    lines = [line for line in proc.stderr.decode().splitlines() if line.startswith("dialer: error")]
    assert proc.returncode == 2 and len(lines) == 1 and "--scheduler" in lines[0], proc.stderr.decode()[-2000:]
