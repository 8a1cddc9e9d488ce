"""``python -m benchmarks.store --quick`` runs end to end on both backends and prints every figure (issue 17).

The PostgreSQL side is a fresh database on the session's throwaway server (``--pg-url``). Speeds are never
asserted: only that each figure is there, on both backends, and that no lead was claimed twice in the races.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_store_benchmark_quick_prints_every_figure_and_no_lead_claimed_twice(pg_url: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.store", "--quick", "--pg-url", pg_url, "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "machine: " in text
    header = next(line for line in text.splitlines() if line.startswith("figure"))
    assert "SQLite" in header and "PostgreSQL" in header and "PostgreSQL / SQLite" in header
    for figure in (
        "dial-time checks/s",
        "record writes/s",
        "claims/s, 1 dispatcher process",
        "claims/s, 2 dispatcher processes",
        "claims/s, 4 dispatcher processes",
        "claims/s, 2 dispatchers / 1 dispatcher",
        "claims/s, 4 dispatchers / 1 dispatcher",
    ):
        rows = [line for line in text.splitlines() if line.startswith(figure)]
        assert len(rows) == 1, figure
        assert rows[0].count("[") >= 2, rows[0]  # a value with its interval on each backend
    assert "0 leads claimed twice, 0 never claimed" in text
    assert (tmp_path / "store.json").is_file() and (tmp_path / "store.md").is_file()
