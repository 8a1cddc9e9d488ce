"""A campaign run live: the campaign file, the store, the compliance gates and the SIP runtime, wired together.

Three layers, each usable from Python:

* :func:`load_campaign` reads and checks a campaign TOML file into a :class:`CampaignConfig` (every key is
  known and typed; an error names the key; nothing is opened or dialed);
* :meth:`LiveCampaign.open` builds what the engine dials from: the SQLite store, the do-not-call lists (national
  registry, company lists, the store's opt-outs), the calling windows, the CSV import (rejects file), and a
  :class:`~dialer.campaign.CampaignLeads` that applies every gate at dial time;
* :class:`LiveRun` drives the engine over SIP until nothing is left to dial now (or until stopped), then drains.

Why the store rather than files: the store's attempt rows are the abandonment ledger that ``dialer report
compliance`` reads, the attempt of each dial is committed before the call is placed (so a crash never dials a lead
twice for one attempt), and an opt-out pressed on a call is committed before it takes effect, for this campaign and
every later one on the same store. The gates fail closed: a required national registry that is missing or stale
refuses the start instead of dialing unscrubbed numbers.

The file format is documented in ``docs/sip.md`` (section "dialer run").
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import logging
import math
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialer.errors import ConfigError

if TYPE_CHECKING:
    from dialer.campaign import CampaignLeads, ColumnMapping, ImportReport, RetryPolicy
    from dialer.compliance import CallingWindows, DoNotCall, NationalRegistry, RegionRules
    from dialer.compliance.evidence import EvidenceLog
    from dialer.engine.core import Engine, EngineConfig
    from dialer.engine.records import CallRecord, InboundRecord
    from dialer.leads import Lead
    from dialer.live.runtime import AsyncRuntime
    from dialer.live.sip_runtime import SipRuntime
    from dialer.live.sizing import PoolPlan
    from dialer.sip.config import PoolConfig
    from dialer.store import AnyStore

log = logging.getLogger("dialer.live.campaign")

MACHINE_ACTIONS = ("hangup", "message")  # dialer.live.sip_runtime's, repeated so loading a file stays light
DAYS = ("weekday", "saturday", "sunday")

SECTIONS = (
    "campaign",
    "leads",
    "dnc",
    "hours",
    "retry",
    "policy",
    "trunk",
    "pool",
    "amd",
    "agents",
    "agent_groups",
    "inbound",
)
#: The groups an agent may be in (``[agent_groups]``): which calls they take.
AGENT_GROUPS = ("outbound", "inbound", "blended")

#: Keys of the first file format (a CSV ledger, a DNC text file, one window in this machine's time), with where
#: their job went. An old file gets one line saying what to write instead.
RENAMED = {
    "campaign.leads": "moved to leads.file",
    "campaign.dnc": "moved to dnc.internal (opt-outs taken on calls now go to the store)",
    "campaign.ledger": "the ledger is now the store (campaign.store); export it with "
    "'dialer report compliance STORE --calls FILE'",
    "window": "replaced by [hours.REGION] (calling hours in the called party's local time)",
}

#: Regions the US national registry covers besides the states: territories on the +1 plan (PR, GU, VI, AS, MP).
#: Listing US in dnc.regions covers them too, so a number there is scrubbed (and held without a registry).
US_TERRITORIES = ("PR", "GU", "VI", "AS", "MP")

#: The oldest registry data any regime this dialer knows lets a campaign call against (US FTC: 31 days).
MAX_REGISTRY_AGE_DAYS = 31.0

#: Column names used without a [leads.columns] table when the CSV header has them.
DEFAULT_COLUMNS = (
    "lead_id",
    "name",
    "time_zone",
    "priority",
    "state",
    "consent_type",
    "consent_date",
    "consent_source",
)


# -- reading tables ------------------------------------------------------------------------------------------


class _Table:
    """One TOML table being read: typed getters that name the key on error, and a check that no key is unknown."""

    def __init__(self, data: Any, key: str, base: Path) -> None:
        if not isinstance(data, dict):
            raise ConfigError(key, "must be a table")
        self.data: dict[str, Any] = data
        self.key = key
        self.base = base
        self.used: set[str] = set()

    def k(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str) -> Any:
        self.used.add(name)
        return self.data.get(name)

    def string(self, name: str, default: str | None = None) -> str:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise ConfigError(self.k(name), "is required")
            return default
        if not isinstance(value, str):
            raise ConfigError(self.k(name), f"must be a string, not {value!r}")
        return value

    def number(self, name: str, default: float | None = None, *, minimum: float = -math.inf) -> float:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise ConfigError(self.k(name), "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(self.k(name), f"must be a number, not {value!r}")
        if value < minimum:
            raise ConfigError(self.k(name), f"must be >= {minimum:g}")
        return float(value)

    def optional_number(self, name: str) -> float | None:
        return self.number(name) if self.has(name) else self.raw(name)

    def integer(self, name: str, default: int | None = None, *, minimum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise ConfigError(self.k(name), "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.k(name), f"must be an integer, not {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(self.k(name), f"must be >= {minimum}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(self.k(name), f"must be true or false, not {value!r}")
        return value

    def path(self, name: str, *, must_exist: bool = False) -> Path | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(self.k(name), "must be a file path")
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.base / path
        if must_exist and not path.exists():
            raise ConfigError(self.k(name), f"{path} does not exist")
        return path

    def paths(self, name: str) -> tuple[Path, ...]:
        value = self.data.get(name)
        if isinstance(value, list):
            self.used.add(name)
            out = []
            for i, item in enumerate(value):
                sub = _Table({"p": item}, self.k(f"{name}[{i}]"), self.base)
                path = sub.path("p", must_exist=True)
                assert path is not None
                out.append(path)
            return tuple(out)
        path = self.path(name, must_exist=True)
        return () if path is None else (path,)

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(self.k(name), "must be a list of strings")
        return tuple(value)

    def table(self, name: str) -> _Table:
        value = self.raw(name)
        return _Table({} if value is None else value, self.k(name), self.base)

    def finish(self, accepted: set[str] | None = None) -> None:
        for name in self.data:
            if name in self.used:
                continue
            moved = RENAMED.get(self.k(name))
            if moved:
                raise ConfigError(self.k(name), moved)
            expected = ", ".join(sorted(self.used if accepted is None else accepted)) or "none"
            raise ConfigError(self.k(name), f"unknown key (this table takes: {expected})")


_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def _dataclass_args(table: _Table, cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keys of ``table`` as keyword arguments of the dataclass ``cls``, each type-checked by its field type
    (so a typo or a string where a number belongs names the key instead of failing deep inside)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not table.has(f.name):
            continue
        kind = _TYPES.get(str(f.type).replace(" | None", ""))
        if kind == "string":
            out[f.name] = table.string(f.name)
        elif kind == "integer":
            out[f.name] = table.integer(f.name)
        elif kind == "number":
            out[f.name] = table.number(f.name)
        elif kind == "boolean":
            out[f.name] = table.boolean(f.name, False)
    table.finish({f.name for f in dataclasses.fields(cls) if f.name not in skip})
    return out


def _day_hours(table: _Table, name: str) -> tuple[int, int] | str | None:
    """``"09:00-20:00"`` as minutes, ``"closed"`` as ``None``; ``"unset"`` when the key is absent."""
    from dialer.compliance import hours

    if not table.has(name):
        return "unset"
    text = table.string(name).strip()
    if text.lower() == "closed":
        return None
    start, sep, end = text.partition("-")
    if not sep:
        raise ConfigError(table.k(name), f"{text!r} is not 'HH:MM-HH:MM' or 'closed'")
    try:
        return hours(start.strip(), end.strip())
    except ConfigError as exc:
        raise ConfigError(table.k(name), exc.message) from None


@dataclass(frozen=True, slots=True)
class CampaignHours:
    """A campaign's calling hours for one region (``None``: closed that day; absent: the built-in rules').

    For a region with built-in rules (US, GB, CA, AU) these hours apply *as well*: a campaign can shorten the legal
    window, never widen it. For any other region they are the rules, and a day not given is closed.
    """

    weekday: tuple[int, int] | str | None = "unset"
    saturday: tuple[int, int] | str | None = "unset"
    sunday: tuple[int, int] | str | None = "unset"
    holidays: tuple[Path, ...] = ()


def _intersect(a: tuple[int, int] | None, b: tuple[int, int] | str | None) -> tuple[int, int] | None:
    if b == "unset":
        return a
    if a is None or b is None or isinstance(b, str):
        return None
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo < hi else None


def region_rules(hours: Mapping[str, CampaignHours]) -> dict[str, RegionRules]:
    """The calling rules of a campaign: the built-in ones, narrowed or extended by the campaign's hours."""
    from dialer.compliance import DEFAULT_RULES, RegionRules, RuleSet
    from dialer.compliance.windows import load_holidays

    rules = dict(DEFAULT_RULES)
    for region, h in hours.items():
        dates: set[Any] = set()
        for path in h.holidays:
            dates |= load_holidays(path)
        builtin = rules.get(region)
        if builtin is None:
            days = [h.weekday] * 5 + [h.saturday, h.sunday]
            week = tuple(None if isinstance(d, str) else d for d in days)
            rules[region] = RegionRules(RuleSet(f"{region} (campaign)", week, frozenset(dates)))  # type: ignore[arg-type]
            continue
        base = builtin.base
        mine = [h.weekday] * 5 + [h.saturday, h.sunday]
        week = tuple(_intersect(a, b) for a, b in zip(base.days, mine, strict=True))
        narrowed = RuleSet(f"{base.name} + campaign", week, base.holidays | frozenset(dates))  # type: ignore[arg-type]
        rules[region] = RegionRules(narrowed, builtin.overrides)
    return rules


# -- the campaign file ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignConfig:
    """A checked campaign file. Paths are absolute. Build one with :func:`load_campaign` or by hand."""

    campaign_id: str
    store: Path
    leads_file: Path
    rejects_file: Path
    abandon_message: Path
    agents: Mapping[str, str]
    pool: PoolConfig
    columns: Mapping[str, Any] | None = None  # ColumnMapping keyword arguments; None: phone + DEFAULT_COLUMNS found
    default_region: str = "US"
    delimiter: str = ","
    encoding: str = "utf-8"  # leads.encoding: the CSV's encoding when it has no BOM (UTF-16 is detected)
    dnc_registry: Path | None = None
    registry_required: bool = True
    registry_max_age_days: float = 31.0
    registry_regions: tuple[str, ...] = ("US", *US_TERRITORIES)
    dnc_internal: tuple[Path, ...] = ()
    hours: Mapping[str, CampaignHours] = field(default_factory=dict)
    retry: RetryPolicy | None = None
    policy: str = "progressive"
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    connect_limit: float = 2.0
    ring_timeout: float | None = None
    wrap_up: float = 0.0
    opt_out_digit: str = "9"
    machine: str = "hangup"
    purpose: str = "telemarketing"  # campaign.purpose: charity, political and survey calls skip the national registry
    pool_plan: PoolPlan | None = None  # how pool.workers was chosen (load_campaign sizes it unless [pool] sets it)
    # campaign.store = "postgresql://...": the shared store's URL (no password: see dialer.store.postgres). ``store``
    # is then not a database but the local path the files beside the campaign are named after (the evidence log).
    store_url: str | None = None
    # [agent_groups]: agent id -> outbound (the default for an agent not named), inbound or blended
    agent_groups: Mapping[str, str] = field(default_factory=dict)
    service_level_seconds: float = 20.0  # inbound.service_level_seconds: the T of "answered within T s"

    @property
    def inbound(self) -> bool:
        """Whether the campaign answers inbound callers (an ``[inbound]`` section)."""
        return self.pool.inbound is not None

    def engine_config(self) -> EngineConfig:
        from dialer.engine.core import EngineConfig

        try:
            return EngineConfig(
                connect_limit=self.connect_limit,
                ring_timeout=self.ring_timeout,
                service_level_seconds=self.service_level_seconds,
            )
        except ConfigError as exc:
            raise ConfigError(f"campaign.{exc.key}", exc.message) from None

    def windows(self) -> CallingWindows:
        from dialer.compliance import CallingWindows

        return CallingWindows(region_rules(self.hours))


def _store_url(value: Any) -> str | None:
    """``campaign.store`` when it is a PostgreSQL URL (``None`` for a path or ``sqlite:///path``); refused when it
    holds a password, which belongs in ``PGPASSWORD`` or a password file, never in the campaign file."""
    import urllib.parse

    if not isinstance(value, str) or "://" not in value:
        return None
    scheme = value.split("://", 1)[0].lower()
    if scheme == "sqlite":
        return None
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError("campaign.store", f"unknown store URL scheme {scheme!r}: use a path, sqlite:///path or "
                          "postgresql://user@host/dbname")  # fmt: skip
    try:
        parts = urllib.parse.urlsplit(value)
        password = parts.password
    except ValueError as exc:
        raise ConfigError("campaign.store", f"is not a valid URL: {exc}") from None
    if password is not None or any(k == "password" for k, _ in urllib.parse.parse_qsl(parts.query)):
        raise ConfigError(
            "campaign.store",
            "holds a password: put it in PGPASSWORD or a password file (~/.pgpass, or the file PGPASSFILE names), "
            "never in the campaign file",
        )
    return value


def load_campaign(path: str | Path) -> CampaignConfig:
    """Read and check a campaign file. Raises :class:`ConfigError` naming the key; opens and dials nothing."""
    from dialer.compliance.ledger import LEGAL_WAIT
    from dialer.pacing import make_policy
    from dialer.sip.config import AmdConfig, InboundConfig, PoolConfig, TrunkConfig
    from dialer.sip.message_audio import prepare_message

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
    base = path.resolve().parent
    for name in doc:
        if name in RENAMED:
            raise ConfigError(name, RENAMED[name])
        if name not in SECTIONS:
            raise ConfigError(name, f"unknown section (expected {', '.join(SECTIONS)})")
    top = _Table(doc, "", base)

    camp = top.table("campaign")
    campaign_id = camp.string("id", path.stem)
    if not campaign_id.strip():
        raise ConfigError("campaign.id", "must not be empty")
    given = camp.raw("store")
    store_url = _store_url(given)
    if store_url is not None:
        store = base / f"{path.stem}.sqlite"
    elif isinstance(given, str) and given.startswith("sqlite:///"):
        local = given[len("sqlite:///") :]
        if not local:
            raise ConfigError("campaign.store", "sqlite:/// names no file")
        store = Path(local).expanduser()
        store = store if store.is_absolute() else base / store
    else:
        store = camp.path("store") or base / f"{path.stem}.sqlite"
    message = camp.path("abandon_message")
    if message is None:
        raise ConfigError("campaign.abandon_message", "is required (the WAV played when no agent is free in time)")
    if not message.is_file():
        raise ConfigError("campaign.abandon_message", f"{message} does not exist")
    policy = camp.string("policy", "progressive")
    connect_limit = camp.number("connect_limit", 2.0, minimum=0.0)
    if connect_limit > LEGAL_WAIT:
        # Refused outright: the US (FTC/FCC), UK (Ofcom) and Canada (CRTC) all count a person left more than 2 s
        # without an agent as abandoned, and no regime we know allows longer; the ledger judges the measured wait.
        raise ConfigError(
            "campaign.connect_limit",
            f"must be at most {LEGAL_WAIT:g} s, not {connect_limit:g}: US, UK and Canadian rules count a person who "
            f"waits more than {LEGAL_WAIT:g} s for an agent as abandoned (the ledger judges the measured wait)",
        )
    ring_timeout = camp.optional_number("ring_timeout")
    wrap_up = camp.number("wrap_up", 0.0, minimum=0.0)
    digit = camp.string("opt_out_digit", "9")
    if len(digit) != 1 or digit not in "0123456789*#":
        raise ConfigError("campaign.opt_out_digit", f"must be one DTMF key (0-9, * or #), not {digit!r}")
    from dialer.sip.config import CONNECT_CLOCKS

    connect_clock = camp.string("connect_clock", "answer")
    if connect_clock not in CONNECT_CLOCKS:
        raise ConfigError(
            "campaign.connect_clock", f"must be one of {', '.join(CONNECT_CLOCKS)}, not {connect_clock!r}"
        )
    machine = camp.string("machine", "hangup")
    if machine not in MACHINE_ACTIONS:
        raise ConfigError("campaign.machine", f"must be one of {', '.join(MACHINE_ACTIONS)}, not {machine!r}")
    voicemail = camp.path("machine_message")
    from dialer.compliance.consent import ConsentError, parse_purpose

    try:  # exempts from the national registry only, never from the company list or an opt-out
        purpose = parse_purpose(camp.string("purpose", "telemarketing")).value
    except ConsentError as exc:
        raise ConfigError("campaign.purpose", str(exc)) from None
    camp.finish()

    leads = top.table("leads")
    leads_file = leads.path("file")
    if leads_file is None:
        raise ConfigError("leads.file", "is required (the CSV call list)")
    if not leads_file.is_file():
        raise ConfigError("leads.file", f"cannot read {leads_file}: no such file")
    rejects = leads.path("rejects") or leads_file.with_name(leads_file.stem + ".rejects.csv")
    region = leads.string("default_region", "US").upper()
    delimiter = leads.string("delimiter", ",")
    if len(delimiter) != 1:
        raise ConfigError("leads.delimiter", "must be one character")
    encoding = leads.string("encoding", "utf-8")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError("leads.encoding", f"unknown encoding {encoding!r}") from None
    columns: dict[str, Any] | None = None
    if leads.has("columns"):
        cols = leads.table("columns")
        columns = {"phone": cols.string("phone", "phone")}
        for name in DEFAULT_COLUMNS:
            if cols.has(name):
                columns[name] = cols.string(name)
        if cols.has("fields"):
            columns["fields"] = cols.strings("fields", ())
        cols.finish()
    leads.finish()
    _check_region(region, "leads.default_region")

    dnc = top.table("dnc")
    registry = dnc.path("registry")
    required = dnc.boolean("registry_required", True)
    max_age = dnc.number("max_age_days", MAX_REGISTRY_AGE_DAYS, minimum=0.0)
    if max_age > MAX_REGISTRY_AGE_DAYS:
        raise ConfigError(
            "dnc.max_age_days",
            f"must be at most {MAX_REGISTRY_AGE_DAYS:g}, not {max_age:g}: numbers must be scrubbed against registry "
            f"data at most {MAX_REGISTRY_AGE_DAYS:g} days old (US FTC), so an older registry cannot be used",
        )
    regions = tuple(r.upper() for r in dnc.strings("regions", ("US",)))
    if "US" in regions:  # the registry covers the territories: scrubbed like the states, never silently skipped
        regions += tuple(t for t in US_TERRITORIES if t not in regions)
    for r in regions:
        _check_region(r, "dnc.regions")
    if not required and registry is None and purpose == "telemarketing" and "US" in regions:
        # Refused, not noted: without the registry, US numbers would be dialed unscrubbed. Only calls the rules
        # exempt (charity, political, survey) or a campaign whose regions the registry does not cover may go without.
        raise ConfigError(
            "dnc.registry_required",
            "cannot be false for a telemarketing campaign calling the US: name the prepared national registry "
            "(dnc.registry), or set campaign.purpose for an exempt campaign (charity, political, survey), or set "
            "dnc.regions to the regions you call if the US registry does not cover them",
        )
    internal = dnc.paths("internal")
    dnc.finish()

    hours_table = top.table("hours")
    hours: dict[str, CampaignHours] = {}
    from dialer.compliance import DEFAULT_RULES

    for reg in list(hours_table.data):
        _check_region(reg, f"hours.{reg}")
        t = hours_table.table(reg)
        h = CampaignHours(
            _day_hours(t, "weekday"), _day_hours(t, "saturday"), _day_hours(t, "sunday"), t.paths("holidays")
        )
        if reg not in DEFAULT_RULES and h.weekday == "unset":
            raise ConfigError(f"hours.{reg}.weekday", "is required for a region without built-in calling rules")
        t.finish()
        hours[reg] = h
    hours_table.finish()

    retry = _retry(top.table("retry"))

    params_table = top.table("policy")
    params = dict(params_table.data)
    params_table.used.update(params)
    try:
        make_policy(policy, **params)  # checked now: a bad parameter is an error before anything starts
    except ConfigError as exc:
        if exc.key != "policy":
            raise ConfigError(f"policy.{exc.key}", exc.message) from None
        raise ConfigError("campaign.policy" if "unknown policy" in exc.message else "policy", exc.message) from None

    trunk = TrunkConfig(**_dataclass_args(top.table("trunk"), TrunkConfig))
    if not trunk.caller_id:
        raise ConfigError("trunk.caller_id", "is required: the number people see and can call back (like +12125550123)")
    from dialer.amd import amd_preset

    # Detection's defaults follow where the 2-s clock starts (a longer listen fits when it starts at the end of the
    # greeting); any [amd] key the file sets wins over the preset.
    amd = AmdConfig(**{**amd_preset(connect_clock), **_dataclass_args(top.table("amd"), AmdConfig)})
    voicemail_wav = ""
    if machine == "message":
        if not amd.enabled:
            raise ConfigError("amd.enabled", "must be true to leave messages on machines (campaign.machine)")
        if voicemail is None or not voicemail.is_file():
            raise ConfigError("campaign.machine_message", f"{voicemail or 'a WAV file'} is required and must exist")
        voicemail_wav = str(prepare_message(voicemail, key="campaign.machine_message").path)
    pool_args = _dataclass_args(
        top.table("pool"),
        PoolConfig,
        skip=(
            "trunk",
            "amd",
            "abandon_wav",
            "voicemail_wav",
            "connect_clock",
            "callin_agents",
            "connect_deadline",
            "inbound",
        ),
    )
    inbound_args, service_level_seconds = _inbound(top)
    pool_args["connect_clock"] = connect_clock
    set_workers: int | None = pool_args.pop("workers", None)
    # Workers play converted copies made once, now: a file pjsua2 cannot play, or one changed later, stops here.
    abandon_wav = str(prepare_message(message, key="campaign.abandon_message").path)
    inbound: InboundConfig | None = None
    if inbound_args is not None:
        queue_audio = inbound_args.pop("queue_audio")
        inbound = InboundConfig(queue_wav=str(prepare_message(queue_audio, key="inbound.queue_audio").path),
                                **inbound_args)  # fmt: skip
    pool = PoolConfig(
        trunk=trunk, amd=amd, abandon_wav=abandon_wav, voicemail_wav=voicemail_wav, inbound=inbound, **pool_args
    )

    agents_table = top.table("agents")
    agents: dict[str, str] = {}
    for name in list(agents_table.data):
        uri = agents_table.raw(name)
        if not isinstance(uri, str) or not uri.startswith(("sip:", "sips:")):
            raise ConfigError(f"agents.{name}", "must be a SIP URI like sip:alice@10.0.0.5:5060")
        agents[name] = uri
    if not agents:
        raise ConfigError("agents", "at least one agent (name = SIP URI) is required")
    groups = _agent_groups(top.table("agent_groups"), agents, inbound is not None)
    top.finish()
    plan = _plan_pool(pool, len(agents), policy, params, set_workers)
    pool = dataclasses.replace(pool, workers=plan.workers)

    config = CampaignConfig(
        campaign_id=campaign_id,
        store=store,
        leads_file=leads_file,
        rejects_file=rejects,
        abandon_message=message,
        agents=agents,
        pool=pool,
        columns=columns,
        default_region=region,
        delimiter=delimiter,
        encoding=encoding,
        dnc_registry=registry,
        registry_required=required,
        registry_max_age_days=max_age,
        registry_regions=regions,
        dnc_internal=internal,
        hours=hours,
        retry=retry,
        policy=policy,
        policy_params=params,
        connect_limit=connect_limit,
        ring_timeout=ring_timeout,
        wrap_up=wrap_up,
        purpose=purpose,
        opt_out_digit=digit,
        machine=machine,
        pool_plan=plan,
        store_url=store_url,
        agent_groups=groups,
        service_level_seconds=service_level_seconds,
    )
    config.engine_config()  # ring_timeout under 15 s and the like, named now
    try:
        config.windows()  # holiday files read and checked now
    except OSError as exc:
        raise ConfigError("hours", f"cannot read a holiday calendar: {exc}") from None
    return config


def _inbound(top: _Table) -> tuple[dict[str, Any] | None, float]:
    """``[inbound]``: the keyword arguments of :class:`~dialer.sip.config.InboundConfig` (``queue_audio`` still
    the user's path, converted by the caller) and the service level's T; ``None`` without the section."""
    if not top.has("inbound"):
        return None, 20.0
    table = top.table("inbound")
    keys = {"port", "workers", "queue_audio", "max_waiting", "service_level_seconds"}
    table.used.update(keys & set(table.data))
    table.finish(keys)  # a misspelt key is named as such, not as the required key it was meant to be
    port = table.integer("port")
    if not 0 < port < 65536:
        raise ConfigError("inbound.port", f"must be a port number (1-65535), not {port}")
    workers = table.integer("workers", 1, minimum=1)
    if port + workers > 65536:
        raise ConfigError("inbound.workers", f"leaves no room for one port per inbound worker from {port}")
    queue_audio = table.path("queue_audio")
    if queue_audio is None:
        raise ConfigError("inbound.queue_audio", "is required (the WAV callers hear while they wait, looped)")
    if not queue_audio.is_file():
        raise ConfigError("inbound.queue_audio", f"{queue_audio} does not exist")
    max_waiting = table.integer("max_waiting", minimum=1) if table.has("max_waiting") else None
    seconds = table.number("service_level_seconds", 20.0, minimum=0.0)
    if seconds <= 0:
        raise ConfigError("inbound.service_level_seconds", "must be > 0")
    args = {"port": port, "workers": workers, "queue_audio": queue_audio, "max_waiting": max_waiting}
    return args, seconds


def _agent_groups(table: _Table, agents: Mapping[str, str], inbound: bool) -> dict[str, str]:
    """``[agent_groups]``: each named agent's group; an agent not named takes outbound calls, as before."""
    groups: dict[str, str] = {}
    for name in list(table.data):
        group = table.string(name)
        if name not in agents:
            raise ConfigError(f"agent_groups.{name}", "is not an agent of [agents]")
        if group not in AGENT_GROUPS:
            raise ConfigError(f"agent_groups.{name}", f"must be one of {', '.join(AGENT_GROUPS)}, not {group!r}")
        if group != "outbound" and not inbound:
            raise ConfigError(f"agent_groups.{name}", f"is {group}, but there is no [inbound] section to take calls")
        groups[name] = group
    if inbound and not any(g in ("inbound", "blended") for g in groups.values()):
        raise ConfigError("agent_groups", "no agent takes inbound calls: give one the group inbound or blended")
    return groups


def _plan_pool(pool: PoolConfig, agents: int, policy: str, params: Mapping[str, Any], workers: int | None) -> PoolPlan:
    """The pool's size: ``[pool] workers`` when set, else enough for every agent's standing leg and the policy's
    ceiling of customer calls (:mod:`dialer.live.sizing`), with the slots the driver really reserves."""
    from dialer.live.sizing import plan_pool
    from dialer.sip import driver

    sessions = bool(getattr(pool, "agent_sessions", False))
    agent_slots = int(getattr(driver, "AGENT_SLOTS", 1)) if sessions else 0
    plan = plan_pool(
        agents,
        policy,
        params,
        workers=workers,
        calls_per_worker=pool.calls_per_worker,
        legs_per_call=2 if pool.agent_legs else 1,
        agent_slots=agent_slots,
        max_calls=pool.trunk.max_calls,
    )
    if pool.sip_port and pool.sip_port + plan.workers > 65536:
        raise ConfigError("pool.sip_port", f"leaves no room for one port per worker ({plan.workers} workers)")
    return plan


def _check_region(region: str, key: str) -> None:
    import phonenumbers

    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(key, f"{region!r} is not a region code (US, GB, CA, AU, JP, ...)")


def _retry(table: _Table) -> RetryPolicy:
    from dialer.campaign import Disposition, RetryPolicy, RetryRule

    policy = RetryPolicy()
    lockout = table.number("abandon_lockout_hours", policy.abandon_lockout / 3600.0, minimum=0.0)
    if lockout < 72.0:
        # Ofcom: a number whose call was abandoned is not called again within 72 hours unless an agent is
        # guaranteed to be free, which a predictive dialer cannot promise. Longer is allowed; shorter is refused.
        raise ConfigError(
            "retry.abandon_lockout_hours",
            f"must be at least 72, not {lockout:g}: an abandoned number is not called again within 72 hours (UK)",
        )
    max_attempts = table.integer("max_attempts", policy.max_attempts, minimum=1)
    max_total = table.integer("max_total_attempts", policy.max_total_attempts, minimum=1)
    rules = dict(policy.rules)
    outcomes = {d.value for d in Disposition}
    for name in [n for n in table.data if n not in ("abandon_lockout_hours", "max_attempts", "max_total_attempts")]:
        if name not in outcomes:
            raise ConfigError(f"retry.{name}", f"unknown outcome (one of {', '.join(sorted(outcomes))})")
        t = table.table(name)
        old = policy.rule(name)
        cap = t.integer("max_attempts", 0, minimum=1) if t.has("max_attempts") else old.max_attempts
        rules[name] = RetryRule(t.number("delay", old.delay, minimum=0.0), cap, t.boolean("final", old.final))
        t.finish()
    table.finish()
    return RetryPolicy(rules, max_attempts, max_total, lockout * 3600.0, policy.max_call_seconds)


# -- the campaign, opened ------------------------------------------------------------------------------------


def _mapping(config: CampaignConfig) -> ColumnMapping:
    """The configured columns, or ``phone`` plus those of :data:`DEFAULT_COLUMNS` the file's header has."""
    from dialer.campaign import ColumnMapping, LeadImportError
    from dialer.campaign.importer import read_header

    if config.columns is not None:
        return ColumnMapping(**config.columns)
    try:  # read as the import reads it: encoding, BOM/UTF-16, bounded lines; a huge header is a clear error
        header = read_header(config.leads_file, delimiter=config.delimiter, encoding=config.encoding)
    except LeadImportError as exc:
        raise ConfigError("leads.file", f"{config.leads_file}: {exc}") from None
    except OSError as exc:
        raise ConfigError("leads.file", f"cannot read {config.leads_file}: {exc.strerror}") from None
    present = {h.strip() for h in header}
    return ColumnMapping(phone="phone", **{c: c for c in DEFAULT_COLUMNS if c in present})


HAND_DIALED: tuple[str, ...] = ("preview", "manual")


def refuse_hand_dialing(config: CampaignConfig, command: str) -> None:
    """Refuse the ``preview`` and ``manual`` policies for ``command``, which shows no agent a lead.

    Why: these policies hold a lead (or an agent) until the agent presses dial or skip. A command with no agent
    desktop on the bus would leave every offered lead waiting with its agent, so it is refused before anything is
    opened or dialed (one line naming ``campaign.policy``).
    """
    if config.policy.strip().lower() in HAND_DIALED:
        raise ConfigError(
            "campaign.policy",
            f"{config.policy!r} runs in the engine and the simulator (dialer simulate) but not in {command}: no agent "
            "phone or desktop can be shown the lead here; use progressive for lists where nobody may be abandoned",
        )


class LiveCampaign:
    """The store, gates and lead source of one campaign, opened from a :class:`CampaignConfig`.

    ``imported`` is the report of this start's CSV import (re-importing merges: a lead already in the store keeps
    its history). :meth:`opt_out` and :meth:`record` are the hooks the SIP runtime calls.
    """

    def __init__(
        self,
        config: CampaignConfig,
        store: AnyStore,
        dnc: DoNotCall,
        leads: CampaignLeads,
        imported: ImportReport,
        registry: NationalRegistry | None,
    ) -> None:
        self.config = config
        self.store = store
        self.dnc = dnc
        self.leads = leads
        self.imported = imported
        self.registry = registry
        self.opted_out: list[str] = []
        self.inbound_records: list[InboundRecord] = []  # every inbound caller this campaign answered
        self._pending_dnc: set[str] = set()
        self._evidence: EvidenceLog | None = None

    @classmethod
    def open(cls, config: CampaignConfig, *, now: float | None = None, adopt: Iterable[str] = ()) -> LiveCampaign:
        """Open the registry (required ones must be there and fresh), the store, import the list, build the gates.

        ``adopt``: leads whose open attempts a restarted dispatcher takes over (left open, not closed as
        interrupted; see :class:`~dialer.campaign.CampaignLeads`)."""
        from dialer.campaign import CampaignLeads, LeadImportError, import_csv
        from dialer.compliance import DncError, DoNotCall, NationalRegistry
        from dialer.compliance.dnc import CompanyList
        from dialer.store import StoreError, open_store

        now = time.time() if now is None else now
        registry = None
        if config.dnc_registry is not None:
            try:
                registry = NationalRegistry.open(config.dnc_registry)
            except DncError as exc:
                raise ConfigError("dnc.registry", str(exc)) from None
            age = registry.age_days(now)
            if config.registry_required and age > config.registry_max_age_days:
                registry.close()
                raise ConfigError(
                    "dnc.registry",
                    f"its data is {age:.0f} days old, more than dnc.max_age_days ({config.registry_max_age_days:g}):"
                    " download and prepare a fresh copy",
                )
        elif config.registry_required:
            raise ConfigError(
                "dnc.registry",
                "is required (dnc.registry_required = true) but not given: name the prepared national registry "
                "directory, or set dnc.registry_required = false if the campaign may skip it",
            )
        # Company lists are prepared once beside their files (a sorted array, rebuilt only when the file changes),
        # so a 20-million-number list loads in milliseconds at every start instead of being parsed again.
        lists: list[CompanyList] = []
        for path in config.dnc_internal:
            try:
                lists.append(CompanyList.open(path, default_region=config.default_region))
            except OSError as exc:
                raise ConfigError("dnc.internal", f"cannot read {path}: {exc.strerror}") from None
            except DncError as exc:
                raise ConfigError("dnc.internal", str(exc)) from None
        dnc = DoNotCall(
            registry,
            (),
            company_lists=lists,
            require_registry=config.registry_required,
            max_age_days=config.registry_max_age_days,
            registry_regions=config.registry_regions,
            default_region=config.default_region,
        )
        try:
            store = open_store(config.store_url or config.store)
        except StoreError as exc:
            raise ConfigError("campaign.store", str(exc)) from None
        from dialer.compliance.evidence import EvidenceError, EvidenceLog

        evidence: EvidenceLog | None = None
        try:
            try:
                evidence = EvidenceLog(evidence_path(config.store))
            except EvidenceError as exc:  # no evidence, no calls
                raise ConfigError("campaign.store", str(exc)) from None
            dnc.add_internal(store.opt_outs())  # before the import: a number that opted out is scrubbed there too
            mapping = _mapping(config)
            try:
                imported = import_csv(
                    config.leads_file,
                    store,
                    config.campaign_id,
                    mapping,
                    default_region=config.default_region,
                    dnc=dnc,
                    rejects=config.rejects_file,
                    delimiter=config.delimiter,
                    encoding=config.encoding,
                    scrub_key=_scrub_key(config, registry, store),
                    purpose=config.purpose,
                    now=now,
                )
            except LeadImportError as exc:
                raise ConfigError("leads.file", f"{config.leads_file}: {exc}") from None
            except OSError as exc:
                raise ConfigError("leads.file", f"cannot read {config.leads_file}: {exc.strerror}") from None
            if not imported.skipped:
                evidence.append("import", _import_evidence(config, imported))
            chain = evidence

            def log_hold(data: dict[str, Any]) -> None:
                chain.append("hold", data)

            leads = CampaignLeads(
                store,
                config.campaign_id,
                dnc=dnc,
                windows=config.windows(),
                policy=config.retry,
                on_hold=log_hold,
                purpose=config.purpose,
                adopt=adopt,
            )
        except BaseException:
            if evidence is not None:
                evidence.close()
            store.close()
            if registry is not None:
                registry.close()
            raise
        campaign = cls(config, store, dnc, leads, imported, registry)
        campaign._evidence = evidence
        return campaign

    # -- hooks of the SIP runtime ------------------------------------------------------------------------

    def opt_out(self, lead: Lead) -> None:
        """The person pressed the opt-out key: committed to the store's opt-outs, then blocked at once."""
        if lead.phone in self.opted_out:
            return  # the key pressed twice: one request
        self.leads.opt_out(lead.phone, source="call")
        self.opted_out.append(lead.phone)
        self._pending_dnc.add(lead.lead_id)

    def record(self, record: CallRecord) -> None:
        """A call's record, already stored by the lead source: an opted-out lead is closed as ``dnc_request``."""
        from dialer.campaign import CampaignError, Disposition

        lead_id = record.lead.lead_id
        if lead_id in self._pending_dnc:
            self._pending_dnc.discard(lead_id)
            try:
                self.leads.disposition(lead_id, Disposition.DNC_REQUEST)
            except CampaignError as exc:  # the opt-out itself is stored and in force either way
                log.warning("could not mark lead %s as a do-not-call request: %s", lead_id, exc)

    # -- questions of the run ----------------------------------------------------------------------------

    def all_final(self) -> bool:
        """Whether no lead can ever be dialed again: none ready (due, waiting for a retry, a callback or its
        calling hours) and none being dialed. ``--keep-going`` stops here instead of waiting forever.

        Never while the shared store is away or writes still wait for it: the run waits for it (records of the
        calls already made are written before the run may end)."""
        from dialer.store import StoreUnavailable

        if not self.leads.catch_up():
            return False
        try:
            counts = self.lead_counts(strict=True)
        except StoreUnavailable as exc:
            self.leads.went_away(exc)
            return False
        return not counts.get("ready") and not counts.get("dialing")

    def due(self, now: float) -> bool:
        """Whether some lead may be due now (the gates still decide at dial time); ``True`` while the shared
        store is away, since only it can say."""
        from dialer.store import StoreUnavailable

        if not self.leads.catch_up():
            return True
        try:
            return bool(self.store.due_leads(self.config.campaign_id, now, 1))
        except StoreUnavailable as exc:
            self.leads.went_away(exc)
            return True

    def next_due(self) -> float | None:
        """The earliest epoch at which a waiting lead comes due (retries, windows, lockouts), or ``None`` (also
        when the shared store is away)."""
        from dialer.store import StoreUnavailable

        try:
            waiting = self.store.leads(self.config.campaign_id, status="ready")
        except StoreUnavailable:
            return None
        return min((max(lead.next_at, lead.lockout_until) for lead in waiting), default=None)

    def lead_counts(self, *, strict: bool = False) -> dict[str, int]:
        """Leads by status; ``{}`` when the shared store is away (``strict``: raise
        :class:`~dialer.store.StoreUnavailable` instead)."""
        from dialer.store import StoreUnavailable

        try:
            return self.store.count_leads(self.config.campaign_id)
        except StoreUnavailable:
            if strict:
                raise
            return {}

    def unwritten(self) -> int:
        """Writes still waiting for the shared store at the end of a run, after one last try (each such call is
        in the evidence log; a non-zero count fails the run)."""
        self.leads.catch_up(force=True)
        return self.leads.pending_writes

    @property
    def evidence_path(self) -> Path:
        """The chained evidence log beside the store (``spring.sqlite`` -> ``spring.evidence.jsonl``)."""
        return evidence_path(self.config.store)

    def evidence(self, record: CallRecord, wire: Mapping[str, Any]) -> None:
        """Append what an auditor needs of one finished call to the chained evidence log.

        Raises :class:`~dialer.compliance.evidence.EvidenceError` when it cannot: the SIP runtime then stops
        dialing (a call whose evidence is lost must not be followed by more).
        """
        from dialer.compliance.evidence import EvidenceLog

        if self._evidence is None:  # a campaign built by hand rather than by open()
            self._evidence = EvidenceLog(self.evidence_path)
        ring_end = record.picked_up_at or record.answered_at or record.ended_at
        # Preview and manual dials say whom the call was dialed for and, for a lead shown but never dialed, why
        # (the agent's skip reason or "withdrawn: ..."): an auditor must tell a skipped lead from a failed call.
        # Paced calls carry neither key, so their entries read as before.
        hand: dict[str, Any] = {}
        if record.reserved_for is not None:
            hand["reserved_for"] = record.reserved_for
        if record.skipped is not None:
            hand["skipped"] = record.skipped
        self._evidence.append("call", {
            "campaign_id": self.config.campaign_id,
            "call_id": record.call_id,
            "lead_id": record.lead.lead_id,
            "phone": record.lead.phone,
            "caller_id": self.config.pool.trunk.caller_id,
            "sip_call_id": wire.get("sip_call_id", ""),
            "sip_status": wire.get("sip_status"),
            "placed": record.placed,
            "placed_at": record.dialed_at if record.placed else None,
            "ringing_at": record.ringing_at,
            "ring_seconds": None if record.ringing_at is None else round(ring_end - record.ringing_at, 3),
            "picked_up_at": record.picked_up_at,
            "answered_at": record.answered_at,
            "amd_verdict": record.amd_verdict,
            "amd_seconds": record.amd_seconds,
            "connected_at": record.connected_at,
            "agent_id": record.agent_id,
            "message_at": record.message_at,
            "message_played": record.message_played,
            "wait": record.wait,
            "outcome": record.outcome.value,
            "abandoned": record.abandoned,
            "bridge_failed": record.bridge_failed,
            "agent_lost": record.agent_lost,
            "customer_hung_up": record.customer_hung_up,
            "ended_at": record.ended_at,
            "registry_basis": record.lead.fields.get("registry_basis"),
            **hand,
        })  # fmt: skip

    def inbound_record(self, record: InboundRecord, wire: Mapping[str, Any]) -> None:
        """Keep one finished inbound call: in :attr:`inbound_records` (callers who queued), the chained evidence log
        (``inbound``) and the store's ``inbound_calls`` (every caller, refused ones too), with the caller as the
        evidence keeps it.

        Raises :class:`~dialer.compliance.evidence.EvidenceError` when the evidence cannot be written, as
        :meth:`evidence` does; the evidence goes first, so a row in the store always has its entry in the chain.
        The store write rides out a shared store's outage as the dials' records do
        (:meth:`CampaignLeads.report_inbound <dialer.campaign.source.CampaignLeads.report_inbound>`).
        """
        from dialer.compliance.evidence import EvidenceLog
        from dialer.engine.records import InboundOutcome

        if record.outcome is not InboundOutcome.BLOCKED:  # a caller refused busy was never this campaign's
            self.inbound_records.append(record)
        if self._evidence is None:
            self._evidence = EvidenceLog(self.evidence_path)
        caller = str(wire.get("caller") or record.caller or "")
        self._evidence.append("inbound", {
            "campaign_id": self.config.campaign_id,
            "inbound_id": record.inbound_id,
            "sip_call_id": wire.get("sip_call_id", record.inbound_id),
            "caller": caller,
            "outcome": record.outcome.value,
            "arrived_at": record.arrived_at,
            "wait": record.wait,
            "answered_at": record.answered_at,
            "agent_id": record.agent_id,
            "group": record.group,
            "bridge_failures": record.bridge_failures,
            "agent_lost": record.agent_lost,
            "ended_at": record.ended_at,
            "ended_by": wire.get("ended_by"),
            "reason": record.reason,
        })  # fmt: skip
        self.leads.report_inbound(record, caller=caller, service_level_seconds=self.config.service_level_seconds)

    def close(self) -> None:
        if self._evidence is not None:
            self._evidence.close()
        self.store.close()
        if self.registry is not None:
            self.registry.close()


def _import_evidence(config: CampaignConfig, imported: ImportReport) -> dict[str, Any]:
    """One import's counts for the evidence log, its rejects kept in a file of their own (the next import writes
    ``leads.rejects_file`` anew; this copy, named by time and fingerprinted in the log, stays)."""
    import hashlib
    import shutil

    kept = ""
    digest = ""
    if imported.rejected and config.rejects_file.is_file():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = config.rejects_file.with_name(f"{config.rejects_file.stem}.{stamp}{config.rejects_file.suffix}")
        shutil.copyfile(config.rejects_file, target)
        kept = str(target)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
    return {
        "campaign_id": config.campaign_id,
        "file": str(config.leads_file),
        "rows": imported.rows,
        "accepted": imported.accepted,
        "merged": len(imported.merged),
        "rejected": len(imported.rejected),
        "rejects_file": kept,
        "rejects_sha256": digest,
        "resumed_at": imported.resumed_at,
    }


def _scrub_key(config: CampaignConfig, registry: NationalRegistry | None, store: AnyStore) -> str:
    """What the import's do-not-call scrub depended on: the registry's data, the company lists' files and the
    opt-outs on record. Cheap (no list is read); any change makes an unchanged lead file be scrubbed again."""
    import json

    files = []
    for path in config.dnc_internal:
        with contextlib.suppress(OSError):
            st = path.stat()
            files.append([str(path), st.st_size, st.st_mtime_ns])
    meta = None if registry is None else [registry.meta.count, registry.meta.as_of, list(registry.meta.sources)]
    return json.dumps({"registry": meta, "internal": files, "opt_outs": len(store.opt_outs())}, sort_keys=True)


def evidence_path(store: Path) -> Path:
    """Where a store's chained evidence log lives: beside it, named after it."""
    return store.with_name(store.stem + ".evidence.jsonl")


# -- running ---------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a live run did. ``reason`` says why it stopped."""

    records: list[CallRecord]
    reason: str
    interrupted: bool
    drained: bool
    opted_out: list[str]
    held: dict[str, int]
    leads: dict[str, int]
    next_due: float | None
    alert: str | None = None  # why dialing stopped on its own (a silent trunk, a failed part): the run failed
    placed_any: bool = True  # False when stopped before the first dial (Ctrl-C during start-up)
    unwritten: int = 0  # records, opt-outs and dispositions the shared store never took (it stayed away)
    inbound: list[InboundRecord] = field(default_factory=list)  # every inbound caller answered ([inbound])
    inbound_blocked: int = 0  # inbound callers refused busy (no free slot, queue at max_waiting, stopping)


class LiveRun:
    """The engine of one :class:`LiveCampaign` over SIP. Construct it inside the running event loop.

    :meth:`run` returns when no lead is due now and no call is up (``keep_going`` waits for later leads instead,
    until every lead is final), when dialing stopped on an alert and the last call ended, or when ``stop`` is set;
    the calls in flight are then drained, and setting ``stop`` again hangs them up. A ``stop`` set while the
    workers start places no call at all.
    """

    def __init__(self, campaign: LiveCampaign, *, clock: Callable[[], float] = time.time) -> None:
        from dialer.engine.core import Engine
        from dialer.live.runtime import AsyncRuntime
        from dialer.live.sip_runtime import SipRuntime
        from dialer.pacing import make_policy

        cfg = campaign.config
        self.campaign = campaign
        self.engine: Engine = Engine(make_policy(cfg.policy, **cfg.policy_params), campaign.leads, cfg.engine_config())
        self.runtime: AsyncRuntime = AsyncRuntime(self.engine, clock=clock)
        self.sip: SipRuntime = SipRuntime(
            self.runtime,
            cfg.pool,
            agents=cfg.agents,
            wrap_up=cfg.wrap_up,
            opt_out_digit=cfg.opt_out_digit,
            on_opt_out=campaign.opt_out,
            on_record=campaign.record,
            on_evidence=campaign.evidence,
            machine=cfg.machine,
            groups=cfg.agent_groups,
            on_inbound_record=campaign.inbound_record,
        )
        #: True once start-up is over and dialing was let go (a Ctrl-C before that places no call).
        self.dialing_started = False

    def status(self) -> dict[str, Any]:
        status = self.sip.status()
        status["store_outage"] = self.campaign.leads.outage  # why the shared store is away (None: it answers)
        status["pending_writes"] = self.campaign.leads.pending_writes
        return status

    def alert(self) -> str | None:
        """Why the engine stopped dialing on its own (a silent trunk, a failed part), once dialing had started."""
        if not self.dialing_started or self.engine.dialing:
            return None
        if self.sip.alerts:
            kind, message = self.sip.alerts[-1]
            return f"{kind}: {message}"
        if self.engine.faults:
            return self.engine.faults[-1][1]
        return "dialing stopped"

    def finished(self, keep_going: bool = False) -> str | None:
        """Why the run is over, or ``None`` while calls are up or leads are due.

        With ``keep_going`` only what no amount of waiting changes ends the run: dialing stopped on an alert, or
        every lead final. Leads waiting for a retry, a callback or their calling hours, and agents who are all
        paused, are waited for.
        """
        from dialer.engine.state import AgentState

        if self.engine.in_flight or self.sip.driver.active or self.sip.driver.inbound_active:
            return None
        alert = self.alert()
        if alert is not None:
            return f"dialing stopped: {alert}"
        if self.campaign.config.inbound:
            return None  # callers may ring at any time: an inbound campaign runs until it is stopped
        if self.campaign.all_final():
            return "every lead is final"
        if keep_going:
            return None
        if not self.campaign.due(self.runtime.now()):
            return "no lead is due now"
        counts = self.engine.agent_counts
        if counts[AgentState.READY] + counts[AgentState.ON_CALL] + counts[AgentState.WRAP_UP] == 0:
            return "no agent can take calls (every agent paused or logged out)"
        return None

    async def _start(self, stop: asyncio.Event) -> bool:
        """Start the workers and log the agents in with dialing held; let it go unless ``stop`` came first.

        Why held: :meth:`SipRuntime.start` makes the agents ready, and the engine dials the moment an agent is
        ready, committing the lead's attempt first. A Ctrl-C during the seconds the pjsua2 workers take to start
        must place no call and leave the store's leads as they were. So the engine is told to stop dialing before
        anything starts, and dialing resumes only after a start that ``stop`` did not interrupt. The workers'
        start itself runs to its end: a worker still loading pjsua2 does not read its pipe, so stopping it
        mid-start means waiting out the driver's close timeout and killing it, which is slower than letting it
        come up and stopping it cleanly. Agents are logged in (their phones called, with standing legs) only if
        ``stop`` has not come by then, and that wait is cut short by ``stop``. ``False`` when interrupted.
        """
        from dialer.engine import events as ev

        if stop.is_set():
            return False
        self.runtime.submit(ev.DialingStopped)
        driver = self.sip.driver
        await driver.start()
        if stop.is_set():
            return False

        logins = asyncio.ensure_future(self.sip.start(start_driver=False))  # the driver is up: log agents in
        waiting = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({logins, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            if not logins.done():
                logins.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await logins
        if logins.cancelled() or stop.is_set():
            return False
        logins.result()
        self.dialing_started = True
        if not self.sip.alerts and not self.engine.faults:  # an alert during start-up keeps dialing stopped
            self.runtime.submit(ev.DialingResumed)
        return True

    async def run(
        self,
        stop: asyncio.Event | None = None,
        *,
        status: Callable[[dict[str, Any]], None] | None = None,
        status_every: float = 1.0,
        keep_going: bool = False,
        drain_timeout: float = 60.0,
    ) -> RunResult:
        stop = stop or asyncio.Event()
        interrupted = False
        drained = True
        reason = ""
        alert: str | None = None
        try:
            if not await self._start(stop):
                interrupted, reason = True, "interrupted during start-up (no call placed)"
            while not interrupted:
                if stop.is_set():
                    interrupted, reason = True, "interrupted"
                    break
                why = self.finished(keep_going)
                if why is not None:
                    reason, alert = why, self.alert()  # now: draining stops dialing too, for no fault
                    break
                if status is not None:
                    status(self.status())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), status_every)
            if self.dialing_started:
                stop.clear()
                drain = asyncio.ensure_future(self.sip.drain(drain_timeout))
                again = asyncio.ensure_future(stop.wait())
                await asyncio.wait({drain, again}, return_when=asyncio.FIRST_COMPLETED)
                again.cancel()
                if not drain.done():
                    drain.cancel()
                    drained = False
                else:
                    drained = drain.result()
        finally:
            await self.sip.close()  # hangs up whatever is left; each call still gets its record
        return RunResult(
            records=list(self.sip.records),
            reason=reason,
            interrupted=interrupted,
            drained=drained,
            opted_out=list(self.campaign.opted_out),
            held=dict(self.campaign.leads.held),
            leads=self.campaign.lead_counts(),
            next_due=self.campaign.next_due(),
            alert=alert,
            placed_any=self.dialing_started,
            unwritten=self.campaign.unwritten(),
            inbound=list(self.sip.inbound_records),
            inbound_blocked=self.sip.inbound_blocked,
        )


__all__ = [
    "CampaignConfig",
    "CampaignHours",
    "LiveCampaign",
    "LiveRun",
    "RunResult",
    "load_campaign",
    "refuse_hand_dialing",
    "region_rules",
]
