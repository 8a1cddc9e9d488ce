"""Scenarios: what a simulated campaign looks like, read from TOML and validated key by key.

A scenario is a frozen dataclass, so it can be shipped to worker processes and hashed into reports. Loading is
strict: an unknown key is an error (a typo silently ignored would simulate the wrong campaign) that suggests the
nearest known key, and every error names the key it is about and, read from a file, the line it is on.

Defaults have one source: :data:`KEYS` below. The dataclass's field defaults, the text ``dialer simulate
--print-default`` prints (every key with its comment) and the values a key left out of a file takes are all
made from it, so a file holding only ``agents = 20`` is the printed default with 20 agents. A file that sets no
key at all is refused: it is far likelier a wrong or truncated file than a wish for the defaults, which running
without a file gives.

The optional ``[drift]`` table belongs to the scenario, not to any one tool, so a file means the same campaign to
``dialer simulate``, ``dialer sweep``, the benchmarks and the Python API. So do the optional ``[inbound]`` and
``[groups]`` tables (:mod:`sim.inbound`), which add inbound callers and split the floor into outbound, inbound
and blended agents.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialer.errors import ConfigError
from dialer.pacing import POLICIES, PacingPolicy, make_policy
from sim.distributions import Distribution, parse_distribution
from sim.inbound import Groups, Inbound, groups_from_dict, inbound_from_dict
from sim.inbound_periods import Period, check_periods, periods_from_list

DRIFT_KEYS: tuple[str, ...] = ("live_answer_to", "talk_scale_to")


@dataclass(frozen=True)
class Drift:
    """Linear drift over each shift: live-answer probability toward ``live_answer_to``, talk times scaled up to
    ``talk_scale_to``. The other outcomes keep their probabilities; no-answer absorbs the difference.

    Real lists get worked through the day (the easy-to-reach answer first) and calls get longer as agents tire;
    a stationary scenario would flatter any policy tuned on the morning's figures.
    """

    live_answer_to: float | None = None
    talk_scale_to: float = 1.0

    def __post_init__(self) -> None:
        # Checked here, not only in the TOML loader, so the Python API cannot build a drift that crashes mid-run.
        for key in DRIFT_KEYS:
            v = getattr(self, key)
            if v is None and key == "live_answer_to":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"drift.{key}", f"must be a number, got {v!r}")
        if self.live_answer_to is not None and not 0.0 <= self.live_answer_to <= 1.0:
            raise ConfigError("drift.live_answer_to", "must be a probability")
        if not 0.1 <= self.talk_scale_to <= 10.0:
            raise ConfigError("drift.talk_scale_to", "must be between 0.1 and 10")

    def fraction(self, now: float, shift_seconds: float) -> float:
        """How far into its drift the shift is at simulated time ``now``: 0 at each day's start, 1 at its end
        (and after it, while calls drain)."""
        return min(1.0, (now % 86400.0) / shift_seconds)

    def live_answer(self, start: float, frac: float) -> float:
        """The live-answer probability ``frac`` of the way through the shift, from ``start`` at its beginning."""
        return start if self.live_answer_to is None else start + (self.live_answer_to - start) * frac

    def talk_scale(self, frac: float) -> float:
        return 1.0 + (self.talk_scale_to - 1.0) * frac

    def to_dict(self) -> dict[str, float]:
        """The ``[drift]`` table as written in TOML (which has no null: an unset ``live_answer_to`` is left out)."""
        out = {} if self.live_answer_to is None else {"live_answer_to": self.live_answer_to}
        return {**out, "talk_scale_to": self.talk_scale_to}

    def describe(self, live_answer_probability: float) -> str:
        """One line for reports, e.g. ``live answers 30% -> 10% over the shift, talk x1.2``."""
        parts = []
        if self.live_answer_to is not None:
            parts.append(
                f"live answers {100 * live_answer_probability:g}% -> {100 * self.live_answer_to:g}% over the shift"
            )
        if self.talk_scale_to != 1.0:
            parts.append(f"talk x{self.talk_scale_to:g} by the shift's end")
        return ", ".join(parts) or "none (the table changes nothing)"


def drift_from_dict(table: Any) -> Drift:
    """The ``[drift]`` table; unknown keys and non-numbers are errors naming ``drift.<key>``."""
    if not isinstance(table, Mapping):
        raise ConfigError("drift", "must be a table")
    unknown = set(table) - set(DRIFT_KEYS)
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"drift.{key}", "unknown key" + _did_you_mean(key, DRIFT_KEYS))
    for k, v in table.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"drift.{k}", f"must be a number, got {v!r}")
    return Drift(**{k: float(v) for k, v in table.items()})


@dataclass(frozen=True)
class Key:
    """One scenario key: where it goes, its default (as written in TOML; ``None``: unset, for optional keys, whose
    ``example`` is shown commented out) and the comment ``--print-default`` prints beside it."""

    section: str
    name: str
    default: Any
    comment: str
    example: Any = None


# The single source of every default: the dataclass below, ``--print-default`` and files that leave keys out.
KEYS: tuple[Key, ...] = (
    Key("campaign", "name", "default", "a label for reports and plots"),
    Key("campaign", "agents", 20, "agents logged in per shift"),
    Key(
        "campaign",
        "policy",
        "predictive",
        "progressive | power | vicidial-adaptive (vicidial-hard-limit, -tapered, -average) | issabel | webitel "
        "| predictive | preview",
    ),
    Key("campaign", "target_abandon_rate", 0.03, "predictive's target; VICIdial's drop limit; the cap reports use"),
    Key("campaign", "ratio", 1.5, "lines per non-paused agent, for power"),
    Key("campaign", "hours", 8.0, "shift length per day (0-24)"),
    Key("campaign", "days", 1, "campaign days per replication (per-day and 30-day-window figures span them)"),
    Key("campaign", "replications", 10, "independent replications; intervals from fewer than 10 are flagged"),
    Key("campaign", "seed", 1, "same seed, same numbers"),
    Key(
        "campaign",
        "rolling_window_hours",
        None,
        "optional (1-24): judged on rolling windows of this length; predictive paces to it",
        example=4,
    ),
    Key("calls", "live_answer_probability", 0.30, "a person answers"),
    Key("calls", "machine_probability", 0.10, "an answering machine answers (after detection_time)"),
    Key("calls", "busy_probability", 0.05, "busy tone; everything else rings out"),
    Key("calls", "time_to_answer", {"dist": "uniform", "low": 4, "high": 16}, "ring time before an answer"),
    Key("calls", "no_answer_after", {"dist": "fixed", "value": 25}, "ring time before an unanswered call ends"),
    Key("calls", "busy_after", {"dist": "fixed", "value": 3}, "time to a busy signal"),
    Key("calls", "talk_time", {"dist": "lognormal", "mean": 120, "sigma_log": 0.6}, "conversation length"),
    Key("calls", "wrap_time", {"dist": "fixed", "value": 15}, "after-call work"),
    Key(
        "calls",
        "detection_time",
        {"dist": "fixed", "value": 0},
        "answering-machine analysis before a person is handed over; eats into connect_limit",
    ),
    Key("calls", "message_time", {"dist": "fixed", "value": 8}, "length of the abandonment message"),
    Key("calls", "connect_limit", 2.0, "seconds a person may wait for an agent before being abandoned (0: at once)"),
    Key("calls", "ring_timeout", None, "optional (15-600): the dialer hangs up ringing calls after this", example=30),
    Key("agents", "pause_probability", 0.02, "chance an agent takes a break after a call"),
    Key("agents", "pause_time", {"dist": "exponential", "mean": 300}, "length of a break"),
    Key(
        "agents",
        "preview_seconds",
        {"dist": "fixed", "value": 10},
        "preview policy: an agent's look at a lead before pressing dial",
    ),
)
_DEFAULTS: dict[str, Any] = {k.name: k.default for k in KEYS}


def _default_dist(name: str) -> Distribution:
    return parse_distribution("", _DEFAULTS[name])


@dataclass(frozen=True)
class Scenario:
    """One simulated campaign. Every field's default is in :data:`KEYS` (``dialer simulate --print-default``
    prints them, commented); docs/scenarios.md documents each."""

    name: str = _DEFAULTS["name"]
    agents: int = _DEFAULTS["agents"]
    policy: str = _DEFAULTS["policy"]
    target_abandon_rate: float = _DEFAULTS["target_abandon_rate"]
    ratio: float = _DEFAULTS["ratio"]
    hours: float = _DEFAULTS["hours"]
    days: int = _DEFAULTS["days"]
    replications: int = _DEFAULTS["replications"]
    seed: int = _DEFAULTS["seed"]
    rolling_window_hours: float | None = _DEFAULTS["rolling_window_hours"]
    pacing: tuple[tuple[str, Any], ...] = ()
    live_answer_probability: float = _DEFAULTS["live_answer_probability"]
    machine_probability: float = _DEFAULTS["machine_probability"]
    busy_probability: float = _DEFAULTS["busy_probability"]
    time_to_answer: Distribution = field(default_factory=lambda: _default_dist("time_to_answer"))
    no_answer_after: Distribution = field(default_factory=lambda: _default_dist("no_answer_after"))
    busy_after: Distribution = field(default_factory=lambda: _default_dist("busy_after"))
    talk_time: Distribution = field(default_factory=lambda: _default_dist("talk_time"))
    wrap_time: Distribution = field(default_factory=lambda: _default_dist("wrap_time"))
    detection_time: Distribution = field(default_factory=lambda: _default_dist("detection_time"))
    message_time: Distribution = field(default_factory=lambda: _default_dist("message_time"))
    connect_limit: float = _DEFAULTS["connect_limit"]
    ring_timeout: float | None = _DEFAULTS["ring_timeout"]
    pause_probability: float = _DEFAULTS["pause_probability"]
    pause_time: Distribution = field(default_factory=lambda: _default_dist("pause_time"))
    preview_seconds: Distribution = field(default_factory=lambda: _default_dist("preview_seconds"))
    drift: Drift | None = None
    inbound: Inbound | None = None
    groups: Groups | None = None
    periods: tuple[Period, ...] = ()

    def __post_init__(self) -> None:
        _validate(self)

    def replace(self, **changes: Any) -> Scenario:
        """A copy with ``changes`` applied (and validated); ``None`` values are ignored, as unset CLI options.

        So ``replace(drift=None)`` keeps the drift; ``dataclasses.replace(s, drift=None)`` removes it."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def shift_seconds(self) -> float:
        return self.hours * 3600.0

    def policy_params(self) -> dict[str, Any]:
        """Parameters for :func:`make_policy`: the campaign's knobs mapped onto the policy, then ``[pacing]``."""
        accepted = inspect.signature(_policy_class(self.policy)).parameters
        campaign: dict[str, Any] = {
            "ratio": self.ratio,
            "target_abandon_rate": self.target_abandon_rate,
            "drop_limit": self.target_abandon_rate,
            "dialing_day_end": self.shift_seconds,
            "shift_hours": min(24.0, self.hours),
        }
        if self.inbound is not None:  # blended pacing holds the inbound service level the scenario sets
            campaign["service_level_target"] = self.inbound.service_level_target
            campaign["service_level_seconds"] = self.inbound.service_level_seconds
        if self.rolling_window_hours is not None:
            # The campaign is judged on rolling windows: a policy that tracks a window tracks that one.
            campaign["window"] = "rolling"
            campaign["window_hours"] = self.rolling_window_hours
        params: dict[str, Any] = {k: v for k, v in campaign.items() if k in accepted}
        params.update(dict(self.pacing))
        return params

    def build_policy(self) -> PacingPolicy:
        return make_policy(self.policy, **self.policy_params())

    def to_dict(self) -> dict[str, Any]:
        """The scenario as nested tables, as it would be written in TOML (used in reports)."""
        out: dict[str, Any] = {"campaign": {}, "calls": {}, "agents": {}, "pacing": dict(self.pacing)}
        for section, keys in _SECTIONS.items():
            for key in keys:
                value = getattr(self, key)
                if value is None:
                    continue
                out[section][key] = value.to_dict() if isinstance(value, Distribution) else value
        if self.drift is not None:
            out["drift"] = self.drift.to_dict()
        if self.inbound is not None:
            out["inbound"] = self.inbound.to_dict()
        if self.groups is not None:
            out["groups"] = self.groups.to_dict()
        if self.periods:
            out["periods"] = [p.to_dict() for p in self.periods]
        return out

    def agent_groups(self) -> list[tuple[str, str]]:
        """(agent id, group) for every agent of a shift: all ``outbound`` without ``[groups]``."""
        if self.groups is None:
            return [(f"agent-{i + 1}", "outbound") for i in range(self.agents)]
        return self.groups.agent_ids()


_SECTIONS: dict[str, tuple[str, ...]] = {
    section: tuple(k.name for k in KEYS if k.section == section) for section in ("campaign", "calls", "agents")
}
_KEY_SECTION = {key: section for section, keys in _SECTIONS.items() for key in keys}
_DISTRIBUTIONS = {f.name for f in dataclasses.fields(Scenario) if f.type in ("Distribution", Distribution)}


def _policy_class(name: str) -> Any:
    """The class behind a policy name (aliases such as ``vicidial-tapered`` are partials of a class)."""
    factory = POLICIES.get(name)
    if factory is None:
        raise ConfigError("campaign.policy", f"unknown policy {name!r} (choose from {', '.join(POLICIES)})")
    return getattr(factory, "func", factory)


def _where(key: str) -> str:
    return f"{_KEY_SECTION.get(key, 'campaign')}.{key}"


def _validate(s: Scenario) -> None:
    def integer(key: str, lo: int, hi: int | None = None) -> None:
        v = getattr(s, key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(_where(key), f"must be an integer, got {v!r}")
        if v < lo or (hi is not None and v > hi):
            raise ConfigError(_where(key), f"must be between {lo} and {hi}" if hi else f"must be >= {lo}, got {v}")

    def number(key: str, lo: float, hi: float | None = None, *, open_lo: bool = False) -> None:
        v = getattr(s, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(_where(key), f"must be a number, got {v!r}")
        if (v <= lo if open_lo else v < lo) or (hi is not None and v > hi):
            bound = f"> {lo:g}" if open_lo else f">= {lo:g}"
            raise ConfigError(
                _where(key), f"must be {bound}" + (f" and <= {hi:g}" if hi is not None else "") + f", got {v:g}"
            )

    if not isinstance(s.name, str):
        raise ConfigError("campaign.name", "must be a string")
    integer("agents", 1, 100_000)
    if not isinstance(s.policy, str):
        raise ConfigError("campaign.policy", "must be a string")
    _policy_class(s.policy)
    number("target_abandon_rate", 0.0, 0.99)
    number("ratio", 1.0, 10.0)
    number("hours", 0.0, 24.0, open_lo=True)
    integer("days", 1, 3660)
    integer("replications", 1, 100_000)
    integer("seed", 0)
    for key in ("live_answer_probability", "machine_probability", "busy_probability", "pause_probability"):
        number(key, 0.0, 1.0)
    total = s.live_answer_probability + s.machine_probability + s.busy_probability
    if total > 1.0 + 1e-9:
        raise ConfigError(
            "calls.busy_probability",
            f"live_answer + machine + busy probabilities sum to {total:g}, more than 1",
        )
    number("connect_limit", 0.0, 60.0)
    if s.rolling_window_hours is not None:
        number("rolling_window_hours", 1.0, 24.0)
    if s.ring_timeout is not None:
        number("ring_timeout", 15.0, 600.0)
    for key in _DISTRIBUTIONS:
        if not isinstance(getattr(s, key), Distribution):
            raise ConfigError(_where(key), "must be a distribution table")
    if s.drift is not None:
        if not isinstance(s.drift, Drift):
            raise ConfigError("drift", f"must be a sim.scenario.Drift, got {type(s.drift).__name__}")
        if s.drift.live_answer_to is not None:
            end = s.drift.live_answer_to + s.machine_probability + s.busy_probability
            if end > 1.0 + 1e-9:
                # The outcome thresholds would pass 1 and busy tones would silently stand in for machines.
                raise ConfigError(
                    "drift.live_answer_to",
                    f"live_answer_to + machine + busy probabilities sum to {end:g}, more than 1",
                )
    if s.inbound is not None and not isinstance(s.inbound, Inbound):
        raise ConfigError("inbound", f"must be a sim.inbound.Inbound, got {type(s.inbound).__name__}")
    if s.groups is not None:
        if not isinstance(s.groups, Groups):
            raise ConfigError("groups", f"must be a sim.inbound.Groups, got {type(s.groups).__name__}")
        if s.agents != s.groups.total:
            raise ConfigError(
                "campaign.agents",
                f"is {s.agents} but [groups] puts {s.groups.total} agents on the floor (leave agents out, or agree)",
            )
    if s.inbound is not None and s.inbound.rate_per_hour > 0:
        takers = 0 if s.groups is None else s.groups.inbound + s.groups.blended
        if not takers:
            raise ConfigError("groups", "inbound callers need inbound or blended agents: set [groups]")
    if s.periods:
        if not isinstance(s.periods, tuple) or not all(isinstance(p, Period) for p in s.periods):
            raise ConfigError("periods", "must be a tuple of sim.inbound_periods.Period")
        if s.drift is not None:
            raise ConfigError("periods", "a scenario has [drift] or [[periods]], not both")
        roster = s.groups.to_dict() if s.groups is not None else {"outbound": s.agents}
        check_periods(s.periods, s.hours, roster, s.machine_probability, s.busy_probability, s.inbound is not None)
    # Build the policy once so bad [pacing] parameters fail at load time, naming the key.
    cls = _policy_class(s.policy)
    params = inspect.signature(cls).parameters
    accepted = set(params) - {"self", "mode"}
    for key, value in s.pacing:
        if key not in accepted:
            raise ConfigError(
                f"pacing.{key}",
                f"unknown parameter for policy {s.policy!r} (accepted: {', '.join(sorted(accepted)) or 'none'})"
                + _did_you_mean(key, accepted),
            )
        _check_pacing_value(key, value, params[key])
    try:
        s.build_policy()
    except ConfigError as exc:
        key = exc.key if exc.key.startswith(("campaign.", "pacing.")) else f"pacing.{exc.key}"
        raise ConfigError(key, exc.message) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError("pacing", str(exc)) from None


def _check_pacing_value(key: str, value: Any, param: inspect.Parameter) -> None:
    """Type-check one ``[pacing]`` value against the policy's default, so the error names ``pacing.<key>``.

    Without this a string or NaN reaches the policy's own range checks, which either crash inside a comparison
    (reported against no particular key) or let NaN through, since every comparison with NaN is false.
    """
    default = param.default
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"pacing.{key}", f"must be a string, got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"pacing.{key}", f"must be a number, got {value!r}")
    if param.annotation in ("int", int) and not isinstance(value, int):
        raise ConfigError(f"pacing.{key}", f"must be an integer, got {value!r}")


def _did_you_mean(word: str, candidates: Any) -> str:
    """`` (did you mean 'x'?)`` for the nearest candidate (difflib), or nothing when none is near."""
    near = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _unknown_key(section: str, key: str) -> ConfigError:
    """An unknown key in ``[section]``: suggest the nearest key there, else say which table a known key goes in,
    else the nearest key anywhere."""
    hint = _did_you_mean(key, _SECTIONS[section])
    if not hint and key in _KEY_SECTION:
        hint = f" ({key} belongs in [{_KEY_SECTION[key]}])"
    if not hint:
        near = difflib.get_close_matches(key, sorted(_KEY_SECTION), n=1, cutoff=0.6)
        if near:
            hint = f" (did you mean {near[0]!r}, in [{_KEY_SECTION[near[0]]}]?)"
    return ConfigError(f"{section}.{key}", "unknown key" + hint)


def _distribution(where: str, value: Any) -> Distribution:
    """:func:`parse_distribution`, with a suggestion for a misspelt distribution or parameter."""
    from sim.distributions import _FORMS

    try:
        return parse_distribution(where, value)
    except ConfigError as exc:
        if exc.key == f"{where}.dist" and isinstance(value, Mapping) and isinstance(value.get("dist"), str):
            raise ConfigError(exc.key, exc.message + _did_you_mean(value["dist"], _FORMS)) from None
        if exc.message.startswith("unknown key for dist") and isinstance(value, Mapping):
            known = set().union(*(r | o for r, o in _FORMS[value["dist"]]))
            raise ConfigError(exc.key, exc.message + _did_you_mean(exc.key.rsplit(".", 1)[-1], known)) from None
        raise


_TABLES: tuple[str, ...] = (*_SECTIONS, "pacing", "drift", "inbound", "groups", "periods")


def scenario_from_dict(data: Mapping[str, Any]) -> Scenario:
    """Build a scenario from parsed TOML tables; keys left out take their defaults (:data:`KEYS`). Unknown tables
    and keys are errors that suggest the nearest known name."""
    kwargs: dict[str, Any] = {}
    for section, table in data.items():
        if section == "pacing":
            if not isinstance(table, Mapping):
                raise ConfigError("pacing", "must be a table")
            kwargs["pacing"] = tuple(sorted(table.items()))
            continue
        if section == "drift":
            kwargs["drift"] = drift_from_dict(table)
            continue
        if section == "inbound":
            kwargs["inbound"] = inbound_from_dict(table)
            continue
        if section == "groups":
            kwargs["groups"] = groups_from_dict(table)
            continue
        if section == "periods":
            kwargs["periods"] = periods_from_list(table)
            continue
        if section not in _SECTIONS:
            if section in _KEY_SECTION:
                raise ConfigError(section, f"is outside any table: put it under [{_KEY_SECTION[section]}]")
            raise ConfigError(
                section, f"unknown table (expected {', '.join(_TABLES)}){_did_you_mean(section, _TABLES)}"
            )
        if not isinstance(table, Mapping):
            if section == "agents" and isinstance(table, int):
                raise ConfigError(
                    section, "is outside any table: the number of agents goes under [campaign] ([agents] is a table)"
                )
            raise ConfigError(section, "must be a table")
        for key, value in table.items():
            if key not in _SECTIONS[section]:
                raise _unknown_key(section, key)
            if key in _DISTRIBUTIONS:
                value = _distribution(f"{section}.{key}", value)
            elif (
                key
                in ("hours", "target_abandon_rate", "ratio", "connect_limit", "ring_timeout", "rolling_window_hours")
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            kwargs[key] = value
    groups = kwargs.get("groups")
    if groups is not None and "agents" not in kwargs:
        kwargs["agents"] = groups.total  # [groups] says how many agents there are
    return Scenario(**kwargs)


class ScenarioFileError(ConfigError):
    """A :class:`ConfigError` from a scenario's TOML text, with the ``line`` (1-based; ``None`` when the key is
    not in the text) and the ``path`` it came from (``None`` for text given directly)."""

    def __init__(self, key: str, message: str, line: int | None = None, path: str | None = None) -> None:
        self.line = line
        self.path = path
        where = []
        if line is not None:
            where.append(f"line {line}")
        if path is not None:
            where.append(f"of {path}" if line is not None else f"in {path}")
        super().__init__(key, f"{message} ({' '.join(where)})" if where else message)
        self.message = message


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_ASSIGN = re.compile(
    r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
)
_INLINE_KEY = re.compile(r"[{,]\s*([A-Za-z0-9_-]+)\s*=")


def _dotted(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in text.split(".")]


def key_lines(text: str) -> dict[str, int]:
    """Where each dotted key (``calls.talk_time``, ``calls.talk_time.mean``) and table (``calls``) is first set in
    a TOML text, by 1-based line. A light scan, not a parser: the text has already parsed, so it only has to find
    headers and ``key =`` at the start of lines (and keys inside one-line inline tables)."""
    out: dict[str, int] = {}
    prefix: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header and not line.lstrip().startswith("[["):
            prefix = _dotted(header.group(1))
            out.setdefault(".".join(prefix), number)
            continue
        assign = _ASSIGN.match(line)
        if not assign:
            continue
        path = [*prefix, *_dotted(assign.group(1))]
        out.setdefault(".".join(path), number)
        for i in range(1, len(path)):
            out.setdefault(".".join(path[:i]), number)
        rest = line[assign.end() :]
        if rest.lstrip().startswith("{"):
            for sub in _INLINE_KEY.findall(rest):
                out.setdefault(".".join([*path, sub]), number)
    return out


def _line_of(key: str, lines: Mapping[str, int]) -> tuple[int | None, bool]:
    """The line of ``key`` (or of its nearest enclosing key or table), and whether the key itself was found."""
    path = re.sub(r"\[\d+\]$", "", key)
    exact = True
    while path:
        if path in lines:
            return lines[path], exact
        exact = False
        path = path.rpartition(".")[0]
    return None, False


def _sets_a_key(data: Mapping[str, Any]) -> bool:
    return any(not isinstance(v, Mapping) or _sets_a_key(v) for v in data.values())


def _loads(text: str, path: str | None) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioFileError("", f"malformed TOML: {exc}", path=path) from None
    if not _sets_a_key(data):
        raise ScenarioFileError(
            "",
            "the scenario sets no key (an empty file is refused: it is likelier a wrong or truncated file than a "
            "wish for the defaults); run `dialer simulate` without a file for the default scenario, or start from "
            "`dialer simulate --print-default`",
            path=path,
        )
    try:
        return scenario_from_dict(data)
    except ConfigError as exc:
        lines = key_lines(text)
        line, exact = _line_of(exc.key, lines)
        message = exc.message
        name = exc.key.rpartition(".")[2]
        if not exact and exc.key in (_where(k) for k in _DEFAULTS) and _DEFAULTS.get(name) is not None:
            # A check across keys (probabilities that sum past 1) can land on a key the file left out.
            message += f"; {exc.key} is not in the file, so its default {_toml(_DEFAULTS[name])} applies"
        raise ScenarioFileError(exc.key, message, line, path) from None


def loads(text: str) -> Scenario:
    """A scenario from TOML text; errors (:class:`ScenarioFileError`) name the key and its line."""
    return _loads(text, None)


def load(path: str | Path) -> Scenario:
    """Read a scenario file. Errors (missing file, bad TOML, bad key) raise :class:`ConfigError`; those about the
    text are :class:`ScenarioFileError` and name the key, its line and the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read scenario {str(p)!r}: {exc}") from None
    return _loads(text, str(p))


def _toml(value: Any) -> str:
    """A default as TOML source: strings quoted, distributions as inline tables."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


_PREAMBLE = """\
# The default scenario: what `dialer simulate` runs when it is given no file.
#
# A mid-sized outbound floor on one eight-hour shift: 20 agents, 30% of dials reach a person, 10% reach an
# answering machine, 5% are busy, the rest ring out. People answer after 4-16 s, unanswered calls are given up at
# 25 s (above the regulators' 15-s minimum), conversations last about two minutes (lognormal), and agents spend
# 15 s on after-call work. A person left waiting more than 2 s for an agent is abandoned, as US and UK rules
# count it. Pacing is predictive, held to a 3% abandonment target. Every key is documented in docs/scenarios.md.
#
# Every key below shows its default: a key your file leaves out takes exactly the value printed here, and an
# optional key shown commented out is unset. A file must set at least one key (an empty file is an error).
"""


def default_text() -> str:
    """The default scenario as ``--print-default`` prints it: every key with its default and a comment, made
    from :data:`KEYS` (so it cannot disagree with the defaults a file's omitted keys take)."""
    width = 30
    out = [_PREAMBLE]
    for section in _SECTIONS:
        out.append(f"[{section}]")
        for k in (k for k in KEYS if k.section == section):
            value = k.example if k.default is None else k.default
            code = f"{'# ' if k.default is None else ''}{k.name} = {_toml(value)}"
            if len(code) + 3 + len(k.comment) > 118:
                out.append(f"# {k.name}: {k.comment}")
                out.append(code)
            else:
                out.append(f"{code:<{width}} # {k.comment}" if len(code) < width else f"{code}  # {k.comment}")
        out.append("")
    out.append("[pacing]                      # optional: extra parameters of the chosen policy (none by default)")
    out.append("# max_level = 3.0             # e.g. VICIdial's maximum dial level")
    out.append("")
    out.append("# [drift]                     # optional: the call flow moves over each shift (none by default)")
    out.append("# live_answer_to = 0.10       # live-answer probability by the end of each shift")
    out.append("# talk_scale_to = 1.2         # talk times stretched up to this factor by then")
    out.append("")
    out.append("# [inbound]                   # optional: callers ring in while the shift runs (none by default)")
    out.append("# rate_per_hour = 60          # Poisson arrivals")
    out.append('# handle_time = { dist = "exponential", mean = 180 }  # talk time of an inbound call')
    out.append("#                             # (and wrap_time: after-call work after one, fixed 15 s by default)")
    out.append('# patience = { dist = "exponential", mean = 120 }     # hang up after this wait (left out: never)')
    out.append("# balk_at = 0                 # a caller finding this many already waiting hangs up at once (0: never)")
    out.append("# balk_probability = 1.0      # ...with this probability")
    out.append("# service_level_seconds = 20  # the T of the service level (share answered within T s)")
    out.append("# service_level_target = 0.8  # what blended pacing holds")
    out.append(
        "# inbound_first = false       # a freed blended agent takes an inbound caller before an outbound person"
    )
    out.append("")
    out.append("# [groups]                    # optional: agents per group (replaces campaign.agents)")
    out.append("# outbound = 0")
    out.append("# inbound = 0")
    out.append("# blended = 20")
    out.append("")
    out.append("# [[periods]]                 # optional, repeatable: values from this hour of each shift on")
    out.append("# start_hour = 4              # hours into the shift")
    out.append("# (and any of name, live_answer_probability, inbound_rate_per_hour, talk_scale, outbound, inbound,")
    out.append("#  blended: see docs/scenarios.md)")
    return "\n".join(out) + "\n"


def default() -> Scenario:
    """The default scenario: every key at its default (:data:`KEYS`)."""
    return Scenario()
