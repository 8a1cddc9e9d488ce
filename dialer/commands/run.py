"""``dialer run CAMPAIGN.toml``: a campaign live over SIP, with a status line; Ctrl-C drains calls gracefully.

The campaign file names everything the run needs (example in ``docs/sip.md``)::

    [campaign]
    leads = "leads.csv"          # lead_id,phone[,name] with a header row
    dnc = "dnc.txt"              # optional: one number per line; opt-outs taken on calls are appended
    abandon_message = "msg.wav"  # played when no agent is free within the connect limit
    policy = "progressive"       # any pacing policy; parameters in [policy]
    connect_limit = 2.0
    ring_timeout = 20.0
    ledger = "ledger.csv"        # optional: one row per call, written as calls end
    machine = "hangup"           # or "message": leave machine_message on answering machines ([amd] enabled)
    machine_message = "vm.wav"   # played once the machine's greeting is over, then the call hangs up

    [window]                     # optional calling window, local time of this machine
    start = "09:00"
    end = "21:00"

    [trunk]  host, port, transport, register, username, password, caller_id, max_calls, calls_per_second
    [pool]   workers, calls_per_worker, setups_per_worker, sip_port, rtp_port
    [amd]    enabled, budget
    [agents] alice = "sip:alice@10.0.0.5:5060"

Leads, do-not-call and windows are read here with deliberately small readers; the campaign and compliance packages
replace them when present. Paths are relative to the campaign file. Any error in the file is one line naming the
key, and nothing is dialed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import signal
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dialer.errors import ConfigError

MACHINE_ACTIONS = ("hangup", "message")  # the same as dialer.live.sip_runtime's, kept here so loading stays light

_TOP_KEYS = {"campaign", "window", "trunk", "pool", "amd", "agents", "policy"}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a campaign live over SIP",
        description="Run a campaign live over SIP; Ctrl-C drains calls gracefully.",
    )
    p.add_argument("campaign", type=Path, help="campaign TOML file")
    p.add_argument("--status-every", type=float, default=1.0, metavar="S", help="status line period (seconds)")
    p.add_argument("--quiet", action="store_true", help="no status line")
    p.set_defaults(func=run)


# --- reading the campaign ------------------------------------------------------------------------------------


def _table(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(name, "must be a table")
    return value


def _path(base: Path, value: Any, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be a file path")
    path = Path(value)
    return path if path.is_absolute() else base / path


def read_leads(path: Path) -> list[Any]:
    """``lead_id,phone[,name]`` with a header; a row without a phone is an error naming the line (nothing lost)."""
    from dialer.leads import Lead

    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ConfigError("campaign.leads", f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError("campaign.leads", f"{path} is not a UTF-8 CSV file: {exc}") from None
    leads = []
    for n, row in enumerate(rows, start=2):
        phone = (row.get("phone") or "").strip()
        lead_id = (row.get("lead_id") or "").strip() or str(n - 1)
        if not phone:
            raise ConfigError("campaign.leads", f"{path}, line {n}: no phone number")
        extra = {k: v for k, v in row.items() if k not in ("lead_id", "phone", "name") and k and v is not None}
        leads.append(Lead(lead_id, phone, (row.get("name") or "").strip(), fields=extra))
    return leads


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


class DncFile:
    """The company's do-not-call list as a file of numbers; opt-outs are appended at once, so none is lost."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.numbers: set[str] = set()
        if path is not None and path.exists():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError("campaign.dnc", f"cannot read {path}: {exc}") from None  # fail closed: no dialing
            self.numbers = {_digits(line) for line in text.splitlines() if _digits(line)}

    def __contains__(self, number: str) -> bool:
        return _digits(number) in self.numbers

    def add(self, number: str) -> None:
        digits = _digits(number)
        if digits in self.numbers:
            return
        self.numbers.add(digits)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(digits + "\n")


def _clock(value: Any, key: str) -> dt.time:
    try:
        return dt.time.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(key, f"{value!r} is not a time of day (HH:MM)") from None


class GatedLeads:
    """A lead list behind the do-not-call list and a calling window: outside the window nothing is dialable."""

    def __init__(self, leads: Iterable[Any], dnc: DncFile, window: tuple[dt.time, dt.time] | None) -> None:
        from dialer.leads import ListLeads

        self._inner = ListLeads(leads)
        self.dnc = dnc
        self.window = window
        self.skipped: list[Any] = []  # leads withheld by the DNC list, kept so the run can report them

    def _open(self, now: float) -> bool:
        if self.window is None:
            return True
        start, end = self.window
        t = dt.datetime.fromtimestamp(now).time()
        return start <= t < end if start <= end else (t >= start or t < end)

    def next_lead(self, now: float) -> Any:
        if not self._open(now):
            return None
        while True:
            lead = self._inner.next_lead(now)
            if lead is None or lead.phone not in self.dnc:
                return lead
            self.skipped.append(lead)

    def report(self, record: Any) -> None:
        self._inner.report(record)

    def __len__(self) -> int:
        return len(self._inner)


def load(path: Path) -> dict[str, Any]:
    """Parse and check a campaign file; returns everything :func:`run` needs (no network touched)."""
    from dialer.engine.core import EngineConfig
    from dialer.pacing import make_policy
    from dialer.sip.config import AmdConfig, PoolConfig, TrunkConfig

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise ConfigError(sorted(unknown)[0], f"unknown section (expected {', '.join(sorted(_TOP_KEYS))})")
    base = path.parent
    camp = _table(doc, "campaign")
    if "leads" not in camp:
        raise ConfigError("campaign.leads", "is required")
    leads = read_leads(_path(base, camp["leads"], "campaign.leads"))
    dnc = DncFile(_path(base, camp["dnc"], "campaign.dnc") if "dnc" in camp else None)
    win = _table(doc, "window")
    window = None
    if win:
        window = (_clock(win.get("start"), "window.start"), _clock(win.get("end"), "window.end"))
    agents = _table(doc, "agents")
    if not agents:
        raise ConfigError("agents", "at least one agent (name = SIP URI) is required")
    for name, uri in agents.items():
        if not isinstance(uri, str) or not uri.startswith("sip:"):
            raise ConfigError(f"agents.{name}", "must be a SIP URI like sip:alice@10.0.0.5:5060")
    message = _path(base, camp.get("abandon_message", ""), "campaign.abandon_message")
    if not message.is_file():
        raise ConfigError("campaign.abandon_message", f"{message} does not exist")

    def build(cls: Any, table: str, **extra: Any) -> Any:
        try:
            return cls(**_table(doc, table), **extra)
        except TypeError as exc:
            raise ConfigError(table, str(exc).split(".__init__() ")[-1]) from None

    trunk = build(TrunkConfig, "trunk")
    amd = build(AmdConfig, "amd")
    machine = camp.get("machine", "hangup")
    if machine not in MACHINE_ACTIONS:
        raise ConfigError("campaign.machine", f"must be one of {', '.join(MACHINE_ACTIONS)}, not {machine!r}")
    voicemail = ""
    if machine == "message":
        if not amd.enabled:
            raise ConfigError("amd.enabled", "must be true to leave messages on machines (campaign.machine)")
        vm_path = _path(base, camp.get("machine_message", ""), "campaign.machine_message")
        if not vm_path.is_file():
            raise ConfigError("campaign.machine_message", f"{vm_path} does not exist")
        voicemail = str(vm_path)
    pool = build(PoolConfig, "pool", trunk=trunk, amd=amd, abandon_wav=str(message), voicemail_wav=voicemail)
    try:
        connect_limit = float(camp.get("connect_limit", 2.0))
        ring = camp.get("ring_timeout")
        engine_config = EngineConfig(connect_limit=connect_limit, ring_timeout=None if ring is None else float(ring))
        wrap_up = float(camp.get("wrap_up", 0.0))
    except (TypeError, ValueError) as exc:
        raise ConfigError("campaign", f"bad number: {exc}") from None
    policy = make_policy(str(camp.get("policy", "progressive")), **_table(doc, "policy"))
    ledger = _path(base, camp["ledger"], "campaign.ledger") if "ledger" in camp else None
    return {
        "leads": GatedLeads(leads, dnc, window),
        "dnc": dnc,
        "agents": dict(agents),
        "pool": pool,
        "engine_config": engine_config,
        "policy": policy,
        "wrap_up": wrap_up,
        "opt_out_digit": str(camp.get("opt_out_digit", "9")),
        "ledger": ledger,
        "machine": machine,
    }


# --- running ---------------------------------------------------------------------------------------------------

LEDGER_FIELDS = (
    "call_id", "lead_id", "phone", "outcome", "dialed_at", "answered_at", "connected_at", "message_at",
    "ended_at", "agent_id", "wait", "abandoned",
)  # fmt: skip


def _ledger_row(record: Any) -> dict[str, Any]:
    return {
        "call_id": record.call_id,
        "lead_id": record.lead.lead_id,
        "phone": record.lead.phone,
        "outcome": record.outcome.value,
        "dialed_at": record.dialed_at,
        "answered_at": record.answered_at,
        "connected_at": record.connected_at,
        "message_at": record.message_at,
        "ended_at": record.ended_at,
        "agent_id": record.agent_id,
        "wait": record.wait,
        "abandoned": int(record.abandoned),
    }


async def _run(cfg: dict[str, Any], status_every: float, quiet: bool) -> dict[str, Any]:
    from dialer.engine.core import Engine
    from dialer.live.runtime import AsyncRuntime
    from dialer.live.sip_runtime import SipRuntime

    ledger_file = None
    writer = None
    if cfg["ledger"] is not None:
        new = not cfg["ledger"].exists()
        ledger_file = open(cfg["ledger"], "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed below
        writer = csv.DictWriter(ledger_file, LEDGER_FIELDS)
        if new:
            writer.writeheader()

    def on_record(record: Any) -> None:
        if writer is not None and ledger_file is not None:
            writer.writerow(_ledger_row(record))
            ledger_file.flush()

    leads: GatedLeads = cfg["leads"]
    engine = Engine(cfg["policy"], leads, cfg["engine_config"])
    runtime = AsyncRuntime(engine)
    sip = SipRuntime(
        runtime,
        cfg["pool"],
        agents=cfg["agents"],
        wrap_up=cfg["wrap_up"],
        opt_out_digit=cfg["opt_out_digit"],
        on_opt_out=lambda lead: cfg["dnc"].add(lead.phone),
        on_record=on_record,
        machine=cfg["machine"],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    interrupted = False
    try:
        await sip.start()
        while True:
            if stop.is_set():
                interrupted = True
                break
            if len(leads) == 0 and engine.in_flight == 0 and sip.driver.active == 0:
                break
            if not quiet:
                s = sip.status()
                line = (
                    f"\rcalls {s['in_flight']:3d} (ringing {s['ringing']}, talking {s['connected']}, "
                    f"message {s['message']}) agents ready {s['agents_ready']} | done {s['records']}, "
                    f"abandoned {s['abandoned']} | capacity {s['capacity']}   "
                )
                print(line, end="", file=sys.stderr, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), status_every)
        if interrupted and not quiet:
            print("\ndraining calls in flight (Ctrl-C again to hang up)...", file=sys.stderr)
        stop.clear()
        drain = asyncio.ensure_future(sip.drain(60))
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({drain, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
        await sip.close()
        if ledger_file is not None:
            ledger_file.close()
    return {"records": sip.records, "skipped": leads.skipped, "opted_out": sip.opted_out, "interrupted": interrupted}


def run(args: argparse.Namespace) -> int:
    cfg = load(args.campaign)
    result = asyncio.run(_run(cfg, args.status_every, args.quiet))
    records = result["records"]
    counts: dict[str, int] = {}
    for r in records:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    live = sum(r.live_answer for r in records)
    abandoned = sum(r.abandoned for r in records)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no calls"
    print(f"\n{len(records)} calls: {summary}")
    print(
        f"abandoned {abandoned} of {live} live answers; {len(result['skipped'])} leads withheld by do-not-call; "
        f"{len(result['opted_out'])} opt-outs"
    )
    return 130 if result["interrupted"] else 0
