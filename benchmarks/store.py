"""Benchmark: the campaign store on both backends, embedded SQLite and shared PostgreSQL (issue 17).

Three figures, each on a fresh campaign of N leads per repetition, through the campaign layer a dispatcher uses
(:class:`~dialer.campaign.source.CampaignLeads`), not bare SQL:

1. **dial-time checks per second**: ``next_lead`` with the real gates (a ``DoNotCall`` without registry over a
   prepared company list of M numbers plus the store's opt-outs, calling windows that allow every hour, attempt
   caps) and the claim (the lead's attempt committed, with the store-wide number check, in one transaction); every
   call claims one lead. One dispatcher, in this process.
2. **record writes per second**: ``report`` of a ``CallRecord`` (connected) for every lead claimed in 1.
3. **claims per second with 1, 2 and 4 concurrent dispatchers**: that many processes, each with its own store
   connection and its own ``CampaignLeads`` on one campaign, released together and racing (same dialing order) to
   claim every lead; the figure is all claims over the time from the first start to the last finish. Afterwards
   the attempts are counted per lead in the store: a lead claimed twice (or never) fails the run (exit 1). A
   claim refused because another dispatcher had just taken the lead (``ClaimLost``; on PostgreSQL also a row
   another claimer holds, ``SKIP LOCKED``) is a ``lost race``: ``CampaignLeads.lost_claims`` counts it and the
   dispatcher moves on to its next lead.

SQLite is a file in a temporary directory, opened as the embedded default opens it (WAL, ``synchronous=FULL``);
its writers take turns (one write transaction at a time), so its several-dispatcher figures show that
serialisation. PostgreSQL is the server at ``--pg-url`` or else a throwaway one started on loopback the way the
tests start it (``tests/pg_server.py``: initdb in a temporary directory, fsync off) and stopped at the end.
Figures are means over ``--repeat`` repetitions with Student-t 95 % intervals; ratios (PostgreSQL / SQLite, N
dispatchers / 1) are computed per repetition, where both sides ran back to back, and pooled the same way.

    python -m benchmarks.store                      # 500 leads, 5 repetitions (about 5 minutes on 2 cores)
    python -m benchmarks.store --quick              # 100 leads, 2 repetitions (under a minute)
    python -m benchmarks.store --pg-url postgresql://user@host/db --out /tmp/store-bench
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._machine import describe  # noqa: E402
from dialer.campaign.lifecycle import RetryPolicy  # noqa: E402
from dialer.campaign.source import CampaignLeads  # noqa: E402
from dialer.compliance.dnc import CompanyList, DoNotCall  # noqa: E402
from dialer.compliance.windows import CallingWindows, RegionRules, RuleSet, hours  # noqa: E402
from dialer.engine.records import CallRecord, Outcome  # noqa: E402
from dialer.leads import Lead  # noqa: E402
from dialer.store import AnyStore, open_store  # noqa: E402
from dialer.store.imports import LeadBulk  # noqa: E402
from sim.metrics import Interval, mean_interval  # noqa: E402

BACKENDS = ("sqlite", "postgresql")
LABEL = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
DISPATCHERS = (1, 2, 4)
# US area codes (valid, in several time zones). Leads use exchanges 700-799, the company list 200-699 and the
# stored opt-outs 800-899, so no lead is on a list and every lead is claimed: the gates are asked, never refuse.
AREAS = (212, 202, 305, 312, 415, 617, 713, 206, 303, 404, 503, 602, 702, 720, 818, 919)


def always_open() -> CallingWindows:
    """Calling hours that never hold a US lead (as in the store-wide tests): the clock must not decide."""
    return CallingWindows({"US": RegionRules(RuleSet.simple("always", hours("00:00", "24:00"), same_all_week=True))})


def lead_phone(i: int) -> str:
    area = AREAS[i % len(AREAS)]
    rest = i // len(AREAS)
    return f"+1{area}{700 + rest // 10000 % 100}{rest % 10000:04d}"


def write_company_list(path: Path, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    area = np.asarray(AREAS, dtype=np.uint64)[rng.integers(0, len(AREAS), size)]
    exchange = rng.integers(200, 700, size, dtype=np.uint64)
    line = rng.integers(0, 10000, size, dtype=np.uint64)
    numbers = (area * np.uint64(10**7) + exchange * np.uint64(10**4) + line).astype("U10")
    path.write_text("".join(f"+1{n}\n" for n in numbers.tolist()), encoding="ascii")


def opt_out_phone(i: int) -> str:
    return f"+1{AREAS[i % len(AREAS)]}{800 + i // 10000 % 100}{i % 10000:04d}"


@dataclass(frozen=True)
class Setup:
    """What every dispatcher of a run shares: where the stores are and what lists gate the leads."""

    locations: dict[str, str]
    company_list: Path
    leads: int
    run: str  # a prefix for this run's campaign ids, so a shared database can hold several runs

    def campaign(self, what: str) -> str:
        return f"{self.run}-{what}"


def gated_leads(store: AnyStore, setup: Setup, campaign: str) -> CampaignLeads:
    """A dispatcher's lead source as a campaign run builds it: DNC (company list + the store's opt-outs, no
    registry), calling windows, a retry policy."""
    dnc = DoNotCall(require_registry=False, company_lists=[CompanyList.open(setup.company_list)])
    policy = RetryPolicy(max_attempts=3, max_total_attempts=10)
    return CampaignLeads(store, campaign, dnc=dnc, windows=always_open(), policy=policy)


def fill(location: str, campaign: str, n: int) -> None:
    """A fresh campaign of ``n`` ready leads (bulk insert: the setup is not what is measured)."""
    store = open_store(location)
    try:
        store.ensure_campaign(campaign)
        rows = [(campaign, f"L{i}", lead_phone(i), f"Lead {i}", "", "{}", 0, i + 1, i + 2) for i in range(n)]
        with store.transaction():
            LeadBulk(store).insert_leads(rows)
    finally:
        store.close()


def add_opt_outs(location: str, count: int) -> None:
    store = open_store(location)
    try:
        with store.transaction():
            for i in range(count):
                store.add_opt_out(opt_out_phone(i), source="benchmark")
    finally:
        store.close()


def record_of(call_id: int, lead: Lead, now: float) -> CallRecord:
    return CallRecord(
        call_id,
        lead,
        Outcome.CONNECTED,
        now,
        now + 60.0,
        answered_at=now + 8.0,
        connected_at=now + 8.4,
        agent_id="A1",
        wait=0.4,
    )


def sequential(setup: Setup, backend: str, rep: int) -> dict[str, float]:
    """Figures 1 and 2: one dispatcher claims every lead through the gates, then reports a call for each."""
    campaign = setup.campaign(f"seq{rep}")
    location = setup.locations[backend]
    fill(location, campaign, setup.leads)
    store = open_store(location)
    try:
        source = gated_leads(store, setup, campaign)
        claimed: list[Lead] = []
        t0 = time.perf_counter()
        while (lead := source.next_lead(time.time())) is not None:
            claimed.append(lead)
        check_s = time.perf_counter() - t0
        if len(claimed) != setup.leads or source.outage is not None:
            raise SystemExit(f"{backend}: claimed {len(claimed)} of {setup.leads} leads (outage: {source.outage})")
        now = time.time()
        records = [record_of(i + 1, lead, now) for i, lead in enumerate(claimed)]
        t0 = time.perf_counter()
        for record in records:
            source.report(record)
        write_s = time.perf_counter() - t0
        if source.pending_writes:
            raise SystemExit(f"{backend}: {source.pending_writes} records not written")
        done = store.count_leads(campaign)
    finally:
        store.close()
    if done != {"done": setup.leads}:
        raise SystemExit(f"{backend}: leads after the records: {done}")
    return {"checks_per_s": len(claimed) / check_s, "writes_per_s": len(records) / write_s}


def dispatcher(setup: Setup, backend: str, campaign: str, start: Barrier, results: Any) -> None:
    """One dispatcher process: its own store and lead source, then claims until the campaign has none left."""
    try:
        store = open_store(setup.locations[backend])
        source = gated_leads(store, setup, campaign)
        start.wait(120)
        began = time.monotonic()
        claims: list[str] = []
        while True:
            lead = source.next_lead(time.time())  # a lost race (ClaimLost) is counted there and skipped
            if lead is None:
                if source.outage is not None:
                    raise RuntimeError(f"store away: {source.outage}")
                break
            claims.append(lead.lead_id)
        ended = time.monotonic()
        store.close()
        results.put({"began": began, "ended": ended, "claims": claims, "lost": source.lost_claims, "error": None})
    except BaseException as exc:  # reported to the parent, which fails the run
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def race(setup: Setup, backend: str, rep: int, k: int) -> dict[str, Any]:
    """Figure 3: ``k`` dispatcher processes race for one campaign's leads; then every lead's attempts are counted."""
    campaign = setup.campaign(f"race{rep}-{k}")
    location = setup.locations[backend]
    fill(location, campaign, setup.leads)
    ctx = mp.get_context("fork")  # no store is open in this process now: each child opens its own
    start = ctx.Barrier(k + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=dispatcher, args=(setup, backend, campaign, start, results)) for _ in range(k)]
    for p in procs:
        p.start()
    try:
        start.wait(120)
    except Exception as exc:  # a child failed before the start: its error is on the queue
        first = results.get(timeout=10) if not results.empty() else {"error": str(exc)}
        raise SystemExit(f"{backend}, {k} dispatchers: {first['error']}") from exc
    outs = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    errors = [o["error"] for o in outs if o["error"]]
    if errors:
        raise SystemExit(f"{backend}, {k} dispatchers: {errors[0]}")
    store = open_store(location)
    try:
        attempts = store.attempts(campaign)
    finally:
        store.close()
    per_lead = Counter(a.lead_id for a in attempts)
    handed = Counter(x for o in outs for x in o["claims"])  # what the dispatchers were given, as a cross-check
    twice = {lead for lead, n in per_lead.items() if n > 1} | {lead for lead, n in handed.items() if n > 1}
    missed = setup.leads - len(per_lead)
    claims = sum(len(o["claims"]) for o in outs)
    wall = max(o["ended"] for o in outs) - min(o["began"] for o in outs)
    return {
        "claims_per_s": claims / wall,
        "claims": claims,
        "per_dispatcher": [len(o["claims"]) for o in outs],
        "lost_races": sum(o["lost"] for o in outs),
        "claimed_twice": len(twice),
        "never_claimed": missed,
    }


@contextmanager
def postgres(url: str | None) -> Iterator[tuple[str, str]]:
    """The PostgreSQL URL to use, and where it came from; a throwaway server (stopped after) when none is given."""
    if url:
        yield url, "the server at --pg-url"
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_server import PgServer

    server = PgServer()
    try:
        server.start()
    except BaseException as exc:
        shutil.rmtree(server.root, ignore_errors=True)
        raise SystemExit(f"cannot start a throwaway PostgreSQL server: {exc}") from exc
    try:
        version = subprocess.run(
            [str(server.bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        yield server.url(), f"a throwaway server on 127.0.0.1 ({version or 'postgres'}, fsync off)"
    finally:
        server.stop()


def fmt_rate(iv: Interval) -> str:
    return f"{iv.mean:8,.0f} [{iv.low:,.0f}, {iv.high:,.0f}]"


def fmt_ratio(iv: Interval) -> str:
    return f"{iv.mean:5.2f}x [{iv.low:.2f}, {iv.high:.2f}]"


@dataclass
class Results:
    """Per-repetition figures: ``rates[backend][figure]`` is one value per repetition."""

    rates: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    races: list[dict[str, Any]] = field(default_factory=list)

    def add(self, backend: str, figure: str, value: float) -> None:
        self.rates.setdefault(backend, {}).setdefault(figure, []).append(value)


FIGURES = (
    ("checks_per_s", "dial-time checks/s (next_lead: gates + claim)"),
    ("writes_per_s", "record writes/s (report of a CallRecord)"),
    *((f"claims_per_s_{k}", f"claims/s, {k} dispatcher process{'es' if k > 1 else ''}") for k in DISPATCHERS),
)


def ratios(a: list[float], b: list[float]) -> Interval:
    return mean_interval([x / y for x, y in zip(a, b, strict=True)], 0.0)


def table(res: Results, backends: tuple[str, ...]) -> tuple[list[str], dict[str, Any]]:
    lines: list[str] = []
    summary: dict[str, Any] = {}
    head = f"{'figure':<48}" + "".join(f"{LABEL[b]:>28}" for b in backends)
    pg_vs = len(backends) == 2
    if pg_vs:
        head += f"{'PostgreSQL / SQLite':>26}"
    lines += [head, "-" * len(head)]
    for key, title in FIGURES:
        row = f"{title:<48}"
        for b in backends:
            iv = mean_interval(res.rates[b][key], 0.0)
            summary.setdefault(b, {})[key] = _as_dict(iv)
            row += f"{fmt_rate(iv):>28}"
        if pg_vs:
            r = ratios(res.rates["postgresql"][key], res.rates["sqlite"][key])
            summary.setdefault("postgresql_vs_sqlite", {})[key] = _as_dict(r)
            row += f"{fmt_ratio(r):>26}"
        lines.append(row)
    lines.append("")
    lines.append(f"{'scaling (same backend, same repetition)':<48}" + "".join(f"{LABEL[b]:>28}" for b in backends))
    for k in DISPATCHERS[1:]:
        row = f"{f'claims/s, {k} dispatchers / 1 dispatcher':<48}"
        for b in backends:
            r = ratios(res.rates[b][f"claims_per_s_{k}"], res.rates[b]["claims_per_s_1"])
            summary.setdefault(b, {})[f"scaling_{k}_vs_1"] = _as_dict(r)
            row += f"{fmt_ratio(r):>28}"
        lines.append(row)
    for k in DISPATCHERS[1:]:
        row = f"{f'lost races per race, {k} dispatchers':<48}"
        for b in backends:
            lost = [r["lost_races"] for r in res.races if r["backend"] == b and r["dispatchers"] == k]
            row += f"{fmt_rate(mean_interval([float(x) for x in lost], 0.0)):>28}"
        lines.append(row)
    return lines, summary


def _as_dict(iv: Interval) -> dict[str, Any]:
    return {"mean": iv.mean, "low": iv.low, "high": iv.high, "n": iv.n}


def refuse_tracked(paths: list[Path]) -> None:
    """Never write over a file git tracks (figures in the repository are refreshed by hand, deliberately)."""
    for path in paths:
        if not path.exists():
            continue
        out = subprocess.run(
            ["git", "-C", str(path.parent), "ls-files", "--error-unmatch", path.name],
            capture_output=True,
            check=False,
        )
        if out.returncode == 0:
            raise SystemExit(f"{path} is tracked by git: choose another --out directory")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.store", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--leads", type=int, default=500, help="leads per campaign (per figure, per repetition)")
    p.add_argument("--repeat", type=int, default=5, help="repetitions of every figure (the intervals' sample)")
    p.add_argument("--company-list", type=int, default=1_000_000, help="numbers on the company do-not-call list")
    p.add_argument("--opt-outs", type=int, default=10_000, help="opt-outs stored (loaded by every dispatcher)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 100 leads, 2 repetitions, small lists")
    p.add_argument(
        "--pg-url",
        help="a PostgreSQL database to write this run's campaigns into (left there); default: a throwaway "
        "server started on loopback and stopped at the end",
    )
    p.add_argument("--out", type=Path, help="also write store.json and store.md into this directory")
    p.add_argument("--seed", type=int, default=17)
    args = p.parse_args(argv)
    if args.quick:
        args.leads, args.repeat = min(args.leads, 100), min(args.repeat, 2)
        args.company_list, args.opt_outs = min(args.company_list, 10_000), min(args.opt_outs, 100)
    if args.leads < 1 or args.repeat < 1:
        p.error("--leads and --repeat must be at least 1")
    if args.out is not None:
        refuse_tracked([args.out / "store.json", args.out / "store.md"])

    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="dialer-store-bench-"))
    try:
        company = tmp / "company.txt"
        write_company_list(company, args.company_list, args.seed)
        CompanyList.prepare(company)
        with postgres(args.pg_url) as (pg_url, pg_what):
            setup = Setup(
                locations={"sqlite": str(tmp / "store.sqlite"), "postgresql": pg_url},
                company_list=company,
                leads=args.leads,
                run=f"bench{int(time.time())}",
            )
            intro = [
                f"machine: {describe()}",
                f"SQLite: a file in {tmp} (WAL, synchronous=FULL); PostgreSQL: {pg_what}",
                f"{args.leads:,} leads per campaign; DNC: company list of {args.company_list:,} numbers + "
                f"{args.opt_outs:,} stored opt-outs, no registry; calling windows open all day",
                f"{args.repeat} repetitions; mean [95% Student-t interval] per figure; ratios per repetition",
            ]
            for line in intro:
                print(line, flush=True)
            for backend in BACKENDS:
                add_opt_outs(setup.locations[backend], args.opt_outs)
            res = run(setup, args.repeat, progress=lambda s: print(s, file=sys.stderr, flush=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    lines, summary = table(res, BACKENDS)
    twice = sum(r["claimed_twice"] for r in res.races)
    never = sum(r["never_claimed"] for r in res.races)
    claims = sum(r["claims"] for r in res.races)
    verdict = (
        f"{twice} leads claimed twice, {never} never claimed, in {len(res.races)} races "
        f"({claims:,} claims; attempts counted per lead in the store after each race)"
    )
    lines += ["", verdict, f"total time {time.monotonic() - t_start:.0f} s"]
    print()
    for line in lines:
        print(line)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = {"intro": intro, "figures": summary, "races": res.races, "rates": res.rates, "verdict": verdict}
        (args.out / "store.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
        md = ["# Store benchmark (`python -m benchmarks.store`)", "", *(f"- {x}" for x in intro), "", "```"]
        (args.out / "store.md").write_text("\n".join([*md, *lines, "```", ""]), encoding="utf-8")
        print(f"written: {args.out / 'store.json'}, {args.out / 'store.md'}")
    return 0 if twice == 0 and never == 0 else 1


def run(setup: Setup, repeat: int, progress: Callable[[str], None]) -> Results:
    """Every figure, ``repeat`` times; within a repetition the backends run back to back (paired ratios)."""
    res = Results()
    for rep in range(repeat):
        for backend in BACKENDS:
            seq = sequential(setup, backend, rep)
            res.add(backend, "checks_per_s", seq["checks_per_s"])
            res.add(backend, "writes_per_s", seq["writes_per_s"])
            note = [f"checks {seq['checks_per_s']:,.0f}/s", f"writes {seq['writes_per_s']:,.0f}/s"]
            for k in DISPATCHERS:
                r = race(setup, backend, rep, k)
                res.add(backend, f"claims_per_s_{k}", r["claims_per_s"])
                res.races.append({"backend": backend, "repetition": rep, "dispatchers": k, **r})
                note.append(f"{k}x {r['claims_per_s']:,.0f}/s (twice {r['claimed_twice']}, lost {r['lost_races']})")
            progress(f"  repetition {rep + 1}/{repeat} {LABEL[backend]}: " + "; ".join(note))
    return res


if __name__ == "__main__":
    sys.exit(main())
