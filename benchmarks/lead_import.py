"""Benchmark: CSV lead import at 10k, 100k and 1 M rows, scrubbed against a 250 M-number national registry.

Each size runs in a fresh process (so peak memory is that import's): a synthetic call list (NANP numbers in five
spellings, 3% repeated numbers, 1% premium-rate, 1% invalid, 1% with an extension, a time zone and two pass-through
columns) is imported into a fresh store (WAL, synchronous=FULL) by ``dialer.campaign.import_csv`` with a
``DoNotCall`` over the registry, and timed end to end. The growth exponent is the slope of log(time) on log(rows)
(1 is linear). A second import of the 1 M file shows the unchanged-file skip. Baselines in the same run: the
importer as it was before issue 13 (from git, 10k rows) and a bare ``executemany`` of the same rows into the same
table (the floor of what SQLite costs).

The registry (1.25 GB bitmap, built from synthetic numbers the way ``benchmarks/dnc_lookup.py`` does, about a
minute and 3 GB of memory) is cached under the temp directory and rebuilt when missing or older than 20 days.

    python -m benchmarks.lead_import                       # 10k, 100k, 1 M rows, 250 M registry
    python -m benchmarks.lead_import --sizes 10000 100000 --registry-size 20000000   # quicker
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._machine import describe

ROOT = Path(__file__).resolve().parents[1]
OLD_IMPORTER_COMMIT = "045001d"  # the last commit with the per-row importer


def peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def registry_dir(size: int) -> Path:
    return Path(tempfile.gettempdir()) / f"dialer-bench-registry-{size}"


def ensure_registry(size: int, seed: int) -> Path:
    from benchmarks.dnc_lookup import CHUNK, synthetic
    from dialer.compliance.dnc import META_FILE, NationalRegistry

    d = registry_dir(size)
    meta = d / META_FILE
    if meta.exists():
        raw = json.loads(meta.read_text())
        if not raw.get("applying") and time.time() - float(raw["as_of"]) < 20 * 86400:
            return d
    print(f"building a registry of {size:,} synthetic numbers in {d} (cached for later runs) ...", flush=True)
    rng = np.random.default_rng(seed)

    def batches():  # type: ignore[no-untyped-def]
        done = 0
        while done < size:
            n = min(CHUNK, size - done)
            yield synthetic(rng, n)
            done += n

    NationalRegistry.build(d, batches(), as_of=time.time()).close()
    return d


def valid_area_codes() -> list[int]:
    import phonenumbers as pn

    out = []
    for npa in range(201, 990):
        x = pn.parse(f"+1{npa}2345678")
        if pn.is_valid_number(x) and pn.region_code_for_number(x) == "US":
            out.append(npa)
    return out


def write_list(path: Path, rows: int, seed: int) -> None:
    """A call list of ``rows`` rows; numbers drawn over the valid US area codes, so most are valid."""
    rng = np.random.default_rng(seed)
    areas = np.array(valid_area_codes())
    area = rng.choice(areas, rows)
    exch = rng.integers(200, 1000, rows)
    line = rng.integers(0, 10000, rows)
    dup = rng.random(rows) < 0.03
    kind = rng.random(rows)
    spell = rng.integers(0, 5, rows)
    zones = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", ""]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("crm id,phone,name,tz,segment,notes\n")
        for i in range(rows):
            j = int(rng.integers(0, i)) if dup[i] and i else i
            a, e, n = int(area[j]), int(exch[j]), int(line[j])
            if kind[i] < 0.01:
                a = 900  # premium rate
            s = int(spell[i])
            if s == 0:
                phone = f"({a}) {e}-{n:04d}"
            elif s == 1:
                phone = f"+1 {a} {e} {n:04d}"
            elif s == 2:
                phone = f"{a}.{e}.{n:04d}"
            elif s == 3:
                phone = f"1-{a}-{e}-{n:04d}"
            else:
                phone = f"{a}{e}{n:04d}"
            if 0.01 <= kind[i] < 0.02:
                phone = f"{a}{e}"  # too short: invalid
            elif 0.02 <= kind[i] < 0.03:
                phone += f" x{100 + i % 900}"
            fh.write(f"C{i},{phone},Person {i},{zones[i % 5]},seg{i % 7},note {i}\n")


def run_one(args: argparse.Namespace) -> dict[str, float]:
    """In a fresh process: open the registry, import the list into a fresh store, time it."""
    from dialer.campaign import ColumnMapping, import_csv
    from dialer.compliance import DoNotCall, NationalRegistry
    from dialer.store import Store

    work = Path(args.work)
    store_path = work / f"store-{args.rows}.sqlite"
    for p in work.glob(f"store-{args.rows}.sqlite*"):
        p.unlink()
    mapping = ColumnMapping(phone="phone", name="name", time_zone="tz", lead_id="crm id")
    t0 = time.perf_counter()
    registry = NationalRegistry.open(args.registry)
    dnc = DoNotCall(registry)
    store = Store(store_path)
    if args.old:
        spec = importlib.util.spec_from_file_location("old_importer", args.old)
        assert spec is not None and spec.loader is not None
        old = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = old  # dataclasses look their module up while the class is being made
        spec.loader.exec_module(old)
        report = old.import_csv(args.csv, store, "bench", old.ColumnMapping(**dataclasses.asdict(mapping)), dnc=dnc)
    else:
        report = import_csv(args.csv, store, "bench", mapping, dnc=dnc)
    elapsed = time.perf_counter() - t0
    out = {
        "rows": report.rows,
        "seconds": elapsed,
        "accepted": report.accepted,
        "merged": len(report.merged),
        "rejected": len(report.rejected),
        "peak_mb": peak_mb(),
        "accounted": float(report.accounted),
    }
    if args.again:
        t0 = time.perf_counter()
        again = import_csv(args.csv, store, "bench", mapping, dnc=dnc)
        out["skip_seconds"] = time.perf_counter() - t0
        out["skipped"] = float(again.skipped)
    reasons: dict[str, int] = {}
    for r in report.rejected:
        key = re.sub(r"'[^']*'", "'...'", r.reason).split(" (")[0]
        reasons[key] = reasons.get(key, 0) + 1
    out["reasons"] = reasons  # type: ignore[assignment]
    store.close()
    return out


def executemany_floor(csv_path: Path, work: Path) -> float:
    """Rows/s of the bare minimum: csv module + one executemany into the same leads table, one transaction."""
    import csv

    from dialer.store import Store

    path = work / "floor.sqlite"
    for p in work.glob("floor.sqlite*"):
        p.unlink()
    Store(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=FULL")
    db.execute("INSERT INTO campaigns VALUES ('f', 0, '{}')")
    t0 = time.perf_counter()
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        next(rows)
        db.execute("BEGIN")
        db.executemany(
            "INSERT OR IGNORE INTO leads (campaign_id, lead_id, phone, name, time_zone, fields, seq) "
            "VALUES ('f', ?, ?, ?, ?, '{}', ?)",
            ((r[0], r[1], r[2], r[3], i) for i, r in enumerate(rows)),
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    n = db.execute("SELECT COUNT(*) FROM leads").fetchone()[0]
    db.close()
    return float(n) / elapsed


def child(args: list[str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.lead_import", "--child", *args]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--registry-size", type=int, default=250_000_000)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--csv", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--registry", help=argparse.SUPPRESS)
    p.add_argument("--old", help=argparse.SUPPRESS)
    p.add_argument("--again", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_one(args)))
        return 0

    print(f"machine: {describe()}")
    reg = ensure_registry(args.registry_size, args.seed)
    work = Path(tempfile.mkdtemp(prefix="lead-import-"))
    results: dict[int, dict[str, float]] = {}
    try:
        for n in args.sizes:
            csv_path = work / f"leads-{n}.csv"
            write_list(csv_path, n, args.seed + n)
            extra = ["--again"] if n == max(args.sizes) else []
            r = child(["--rows", str(n), "--csv", str(csv_path), "--work", str(work), "--registry", str(reg), *extra])
            results[n] = r
            print(
                f"{n:>9,} rows: {r['seconds']:7.2f} s  {n / r['seconds']:>9,.0f} rows/s  peak {r['peak_mb']:,.0f} MB  "
                f"({r['accepted']:,.0f} accepted, {r['merged']:,.0f} merged, {r['rejected']:,.0f} rejected"
                f"{', counts balance' if r['accounted'] else ', COUNTS DO NOT BALANCE'})",
                flush=True,
            )
            print(f"           rejects: {r['reasons']}")
            if "skip_seconds" in r:
                skip = r["skip_seconds"]
                print(f"           unchanged file imported again: {skip:.2f} s (skipped: {bool(r['skipped'])})")
        base_n = min(args.sizes)
        base_csv = work / f"leads-{base_n}.csv"
        old_src = work / "old_importer.py"
        src = subprocess.run(
            ["git", "show", f"{OLD_IMPORTER_COMMIT}:dialer/campaign/importer.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if src.returncode == 0:
            old_src.write_text(src.stdout)
            o = child(
                [
                    *("--rows", str(base_n), "--csv", str(base_csv), "--work", str(work)),
                    *("--registry", str(reg), "--old", str(old_src)),
                ]
            )
            speedup = o["seconds"] / results[base_n]["seconds"]
            print(
                f"baseline: the per-row importer before issue 13, {base_n:,} rows: {o['seconds']:.2f} s, "
                f"{base_n / o['seconds']:,.0f} rows/s -> now {speedup:.1f}x faster"
            )
        floor = executemany_floor(work / f"leads-{max(args.sizes)}.csv", work)
        print(f"baseline: bare csv + executemany of the same {max(args.sizes):,} rows: {floor:,.0f} rows/s (no checks)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if len(results) >= 2:
        xs = np.log([float(n) for n in results])
        ys = np.log([results[n]["seconds"] for n in results])
        slope = float(np.polyfit(xs, ys, 1)[0])
        print(f"growth exponent (log-log fit of time on rows): {slope:.2f}  (1.00 is linear)")
    big = max(results)
    ok_time = big < 1_000_000 or results[big]["seconds"] <= 60
    print(
        f"target: 1 M rows in <= 60 s with the registry loaded: "
        f"{'PASS' if ok_time else 'FAIL'} ({results[big]['seconds']:.1f} s for {big:,})"
    )
    return 0 if ok_time and all(r["accounted"] for r in results.values()) and not math.isnan(big) else 1


if __name__ == "__main__":
    sys.exit(main())
