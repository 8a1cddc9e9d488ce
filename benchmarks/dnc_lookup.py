"""Benchmark: the national do-not-call registry at full size (250 million numbers).

Generates N synthetic ten-digit NANP numbers itself, prepares the on-disk registry from them, then — in a fresh
process, so resident memory counts only the registry — opens it, reads it in, and runs batched lookups (half
listed numbers, half random ones, checked for exactness). Baselines measured in the same run on a subset of the
same numbers: a Python ``set`` of ints and a sorted NumPy array with ``searchsorted``; the registry's speed is
printed as a ratio to each. Targets from the issue: >= 5 M lookups/s, <= 2.5 GB resident, loading in seconds.

A company list is measured too (issue 13 item 7: "prepared once like the registry, load <= 1 s for 20 M
numbers"): a file of N ``+1NXXNXXXXXX`` lines is prepared once into its sorted array (``CompanyList.prepare``),
then opened in a fresh process (``CompanyList.open``: identity check + memory map) and asked batched and single
lookups through ``DoNotCall``.

    python benchmarks/dnc_lookup.py                 # 250 M numbers (about 2-4 minutes on 2 cores)
    python benchmarks/dnc_lookup.py --size 20000000 # a quicker run
    python benchmarks/dnc_lookup.py --company-only  # only the 20 M company list
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dialer.compliance.dnc import NationalRegistry

CHUNK = 5_000_000


def rss_mb() -> tuple[float, float]:
    """Resident and peak resident memory of this process, MB (from /proc: no extra dependency)."""
    cur = peak = 0.0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, {mem:.1f} GiB RAM"


def synthetic(rng: np.random.Generator, n: int) -> np.ndarray:
    """Plausible NANP numbers: area code 201-989, exchange 200-999, any line."""
    area = rng.integers(201, 990, n, dtype=np.uint64)
    rest = rng.integers(2_000_000, 10_000_000, n, dtype=np.uint64)
    return area * np.uint64(10**7) + rest


def prepare(directory: Path, size: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    sample: list[np.ndarray] = []
    per_chunk = max(1, 2_000_000 * CHUNK // size)

    def batches():  # generated chunk by chunk, so the numbers never sit in memory all at once
        done = 0
        while done < size:
            n = min(CHUNK, size - done)
            numbers = synthetic(rng, n)
            sample.append(numbers[:per_chunk])
            done += n
            print(f"  generated {done / 1e6:.0f} M numbers", file=sys.stderr, flush=True)
            yield numbers

    t0 = time.perf_counter()
    reg = NationalRegistry.build(directory, batches(), as_of=time.time())
    count = len(reg)
    reg.close()
    elapsed = time.perf_counter() - t0
    np.save(directory / "sample.npy", np.concatenate(sample))
    _, peak = rss_mb()
    return {"prepare_s": elapsed, "count": float(count), "prepare_peak_mb": peak}


def lookup_phase(directory: Path, lookups: int, batch: int, seed: int) -> dict[str, float]:
    """Run in a fresh process: open, read in, look up. Memory figures are this process's."""
    base_rss, _ = rss_mb()
    t0 = time.perf_counter()
    reg = NationalRegistry.open(directory)
    open_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bits = reg._bits
    step = 1 << 26
    for i in range(0, len(bits), step):  # touch every page: the worst case for resident memory
        int(bits[i : i + step].max())
    warm_s = time.perf_counter() - t0
    members = np.load(directory / "sample.npy")
    rng = np.random.default_rng(seed + 1)
    batches = []
    for _ in range(max(1, lookups // batch)):
        half = batch // 2
        q = np.concatenate([rng.choice(members, half), synthetic(rng, batch - half)])
        rng.shuffle(q)
        batches.append(q)
    t0 = time.perf_counter()
    hits = 0
    for q in batches:
        hits += int(reg.contains_batch(q).sum())
    lookup_s = time.perf_counter() - t0
    n = sum(len(q) for q in batches)
    found = reg.contains_batch(members)
    rss, peak = rss_mb()
    query_mb = sum(q.nbytes for q in batches) / 2**20 + members.nbytes / 2**20
    return {
        "open_s": open_s,
        "warm_s": warm_s,
        "lookups": float(n),
        "lookups_per_s": n / lookup_s,
        "hit_fraction": hits / n,
        "members_found": float(found.mean()),
        "rss_mb": rss - base_rss - query_mb,
        "peak_rss_mb": peak,
        "count": float(len(reg)),
    }


def baselines(directory: Path, subset: int, lookups: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed + 2)
    numbers = synthetic(rng, subset)
    q = np.concatenate([rng.choice(numbers, lookups // 2), synthetic(rng, lookups - lookups // 2)])
    before, _ = rss_mb()
    as_set = set(numbers.tolist())
    set_mb = rss_mb()[0] - before
    qs = q.tolist()
    t0 = time.perf_counter()
    hits_set = sum(1 for x in qs if x in as_set)
    set_rate = len(qs) / (time.perf_counter() - t0)
    srt = np.sort(numbers)
    t0 = time.perf_counter()
    idx = np.searchsorted(srt, q)
    idx[idx == len(srt)] = 0
    hits_sorted = int((srt[idx] == q).sum())
    sorted_rate = len(q) / (time.perf_counter() - t0)
    assert hits_set == hits_sorted
    return {"set_lookups_per_s": set_rate, "set_mb": set_mb, "sorted_lookups_per_s": sorted_rate}


def write_company_list(path: Path, size: int, seed: int) -> np.ndarray:
    """``size`` NANP numbers as ``+1NXXNXXXXXX`` lines, written in blocks; returns a sample of them."""
    rng = np.random.default_rng(seed)
    sample = []
    with open(path, "wb") as fh:
        done = 0
        while done < size:
            numbers = synthetic(rng, min(CHUNK, size - done))
            text = np.char.add("+1", numbers.astype("U10"))
            fh.write(("\n".join(text.tolist()) + "\n").encode("ascii"))
            sample.append(numbers[:1000])
            done += len(numbers)
    return np.concatenate(sample)


def company_phase(path: Path, lookups: int, seed: int) -> dict[str, float]:
    """In a fresh process: open the prepared list (timed), then batched and single lookups via DoNotCall."""
    from dialer.compliance.dnc import CompanyList, DoNotCall

    t0 = time.perf_counter()
    cl = CompanyList.open(path)
    load_s = time.perf_counter() - t0
    assert not cl.rebuilt, "the prepared list should have been reused"
    members = np.load(str(path) + ".sample.npy")
    rng = np.random.default_rng(seed + 3)
    half = lookups // 2
    q = np.concatenate([rng.choice(members, half), synthetic(rng, lookups - half)]) + np.uint64(10**10)
    t0 = time.perf_counter()
    hits = int(cl.contains_many(q).sum())
    batch_rate = len(q) / (time.perf_counter() - t0)
    dnc = DoNotCall(company_lists=[cl], require_registry=False)
    strings = [f"+{v}" for v in q[:200_000].tolist()]
    t0 = time.perf_counter()
    many = dnc.check_many(strings)
    check_many_rate = len(strings) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    single = [dnc.check(s) for s in strings[:50_000]]
    check_rate = len(single) / (time.perf_counter() - t0)
    assert many[: len(single)] == single
    _, peak = rss_mb()
    return {
        "load_s": load_s,
        "count": float(len(cl)),
        "batch_lookups_per_s": batch_rate,
        "hit_fraction": hits / len(q),
        "check_many_per_s": check_many_rate,
        "check_per_s": check_rate,
        "peak_rss_mb": peak,
    }


def company_list(size: int, lookups: int, seed: int) -> bool:
    from dialer.compliance.dnc import CompanyList

    tmp = Path(tempfile.mkdtemp(prefix="dnc-company-"))
    try:
        path = tmp / "company.txt"
        print(f"writing a company list of {size:,} numbers ...", flush=True)
        sample = write_company_list(path, size, seed)
        np.save(str(path) + ".sample.npy", sample)
        t0 = time.perf_counter()
        prepared = CompanyList.prepare(path)
        prepare_s = time.perf_counter() - t0
        count = len(prepared)
        del prepared
        cmd = [sys.executable, __file__, "--company-phase", str(path), "--lookups", str(lookups)]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"company list numbers (distinct) {count:,}")
    print(f"prepare (once, parse + sort)    {prepare_s:.1f} s")
    print(f"load at start (check + mmap)    {res['load_s'] * 1000:.1f} ms")
    print(f"batched lookups                 {res['batch_lookups_per_s'] / 1e6:.1f} M/s (hit {res['hit_fraction']:.0%})")
    print(f"DoNotCall.check_many            {res['check_many_per_s'] / 1e6:.2f} M numbers/s")
    print(f"DoNotCall.check, one by one     {res['check_per_s'] / 1e3:.0f} k numbers/s")
    ok = res["load_s"] <= 1.0
    print(f"target: load <= 1 s for {size:,} numbers: {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=250_000_000, help="numbers in the synthetic registry")
    p.add_argument("--lookups", type=int, default=20_000_000, help="lookups to time")
    p.add_argument("--batch", type=int, default=1_000_000, help="numbers per lookup batch")
    p.add_argument("--baseline-size", type=int, default=5_000_000, help="numbers in the set/sorted baselines")
    p.add_argument("--dir", help="where to put the registry (default: a temporary directory, removed after)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--company-size", type=int, default=20_000_000, help="numbers in the company list (0: skip)")
    p.add_argument("--company-only", action="store_true", help="measure only the company list")
    p.add_argument("--lookup-phase", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--company-phase", metavar="FILE", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.lookup_phase:
        print(json.dumps(lookup_phase(Path(args.lookup_phase), args.lookups, args.batch, args.seed)))
        return 0
    if args.company_phase:
        print(json.dumps(company_phase(Path(args.company_phase), min(args.lookups, 5_000_000), args.seed)))
        return 0
    if args.company_only:
        print(f"machine: {machine()}")
        return 0 if company_list(args.company_size, min(args.lookups, 5_000_000), args.seed) else 1

    print(f"machine: {machine()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}")
    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="dnc-bench-"))
    try:
        print(f"preparing a registry of {args.size:,} synthetic numbers in {tmp} ...", flush=True)
        prep = prepare(tmp, args.size, args.seed)
        cmd = [sys.executable, __file__, "--lookup-phase", str(tmp), "--lookups", str(args.lookups)]
        cmd += ["--batch", str(args.batch), "--seed", str(args.seed)]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        base = baselines(tmp, args.baseline_size, min(args.lookups, 2_000_000), args.seed)
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)
    rate = res["lookups_per_s"]
    print()
    print(f"registry numbers (distinct)   {res['count']:,.0f}")
    print(f"prepare (generate + build)    {prep['prepare_s']:.1f} s, peak {prep['prepare_peak_mb']:.0f} MB")
    print(f"open (mmap)                   {res['open_s'] * 1000:.1f} ms")
    print(f"read whole registry in        {res['warm_s']:.2f} s")
    print(f"batched lookups               {rate / 1e6:.1f} M/s over {res['lookups']:,.0f} (batch {args.batch:,})")
    print(f"listed numbers found          {res['members_found']:.4%}")
    print(f"registry resident memory      {res['rss_mb']:.0f} MB (process peak {res['peak_rss_mb']:.0f} MB)")
    print(
        f"baseline: Python set, {args.baseline_size:,} numbers: {base['set_lookups_per_s'] / 1e6:.2f} M/s, "
        f"{base['set_mb']:.0f} MB  -> registry is {rate / base['set_lookups_per_s']:.1f}x faster"
    )
    print(
        f"baseline: sorted uint64 + searchsorted, {args.baseline_size:,}: {base['sorted_lookups_per_s'] / 1e6:.2f} "
        f"M/s  -> registry is {rate / base['sorted_lookups_per_s']:.1f}x faster"
    )
    ok_rate = rate >= 5e6
    ok_mem = res["peak_rss_mb"] <= 2.5 * 1024
    ok_load = res["open_s"] + res["warm_s"] < 10
    ok_exact = res["members_found"] == 1.0
    print()
    print(
        f"targets: >=5 M lookups/s {'PASS' if ok_rate else 'FAIL'}; <=2.5 GB resident {'PASS' if ok_mem else 'FAIL'};"
        f" load in seconds {'PASS' if ok_load else 'FAIL'}; exact {'PASS' if ok_exact else 'FAIL'}"
    )
    ok_company = True
    if args.company_size:
        print()
        ok_company = company_list(args.company_size, min(args.lookups, 5_000_000), args.seed)
    return 0 if ok_rate and ok_mem and ok_load and ok_exact and ok_company else 1


if __name__ == "__main__":
    sys.exit(main())
