"""Scenarios: what a simulated campaign looks like, read from TOML and validated key by key.

A scenario is a frozen dataclass, so it can be shipped to worker processes and hashed into reports. Loading is
strict: an unknown key is an error (a typo silently ignored would simulate the wrong campaign), and every error
names the key it is about.

The optional ``[drift]`` table belongs to the scenario, not to any one tool, so a file means the same campaign to
``dialer simulate``, ``dialer sweep``, the benchmarks and the Python API.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from dialer.errors import ConfigError
from dialer.pacing import POLICIES, PacingPolicy, make_policy
from sim.distributions import Distribution, parse_distribution


def _fixed(value: float) -> Distribution:
    return parse_distribution("", {"dist": "fixed", "value": value})


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
        raise ConfigError(f"drift.{sorted(unknown)[0]}", "unknown key")
    for k, v in table.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"drift.{k}", f"must be a number, got {v!r}")
    return Drift(**{k: float(v) for k, v in table.items()})


@dataclass(frozen=True)
class Scenario:
    """One simulated campaign. See ``sim/scenarios/default.toml`` and docs/scenarios.md for every field."""

    name: str = "scenario"
    agents: int = 20
    policy: str = "predictive"
    target_abandon_rate: float = 0.03
    ratio: float = 1.5
    hours: float = 8.0
    days: int = 1
    replications: int = 10
    seed: int = 1
    rolling_window_hours: float | None = None
    pacing: tuple[tuple[str, Any], ...] = ()
    live_answer_probability: float = 0.30
    machine_probability: float = 0.0
    busy_probability: float = 0.0
    time_to_answer: Distribution = field(
        default_factory=lambda: parse_distribution("", {"dist": "exponential", "mean": 15})
    )
    no_answer_after: Distribution = field(
        default_factory=lambda: parse_distribution("", {"dist": "exponential", "mean": 15})
    )
    busy_after: Distribution = field(default_factory=lambda: _fixed(3.0))
    talk_time: Distribution = field(
        default_factory=lambda: parse_distribution("", {"dist": "exponential", "mean": 120})
    )
    wrap_time: Distribution = field(default_factory=lambda: _fixed(0.0))
    detection_time: Distribution = field(default_factory=lambda: _fixed(0.0))
    message_time: Distribution = field(default_factory=lambda: _fixed(8.0))
    connect_limit: float = 2.0
    ring_timeout: float | None = None
    pause_probability: float = 0.0
    pause_time: Distribution = field(default_factory=lambda: _fixed(300.0))
    drift: Drift | None = None

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
        out: dict[str, dict[str, Any]] = {"campaign": {}, "calls": {}, "agents": {}, "pacing": dict(self.pacing)}
        for section, keys in _SECTIONS.items():
            for key in keys:
                value = getattr(self, key)
                if value is None:
                    continue
                out[section][key] = value.to_dict() if isinstance(value, Distribution) else value
        if self.drift is not None:
            out["drift"] = self.drift.to_dict()
        return out


_SECTIONS: dict[str, tuple[str, ...]] = {
    "campaign": (
        "name",
        "agents",
        "policy",
        "target_abandon_rate",
        "ratio",
        "hours",
        "days",
        "replications",
        "seed",
        "rolling_window_hours",
    ),
    "calls": (
        "live_answer_probability",
        "machine_probability",
        "busy_probability",
        "time_to_answer",
        "no_answer_after",
        "busy_after",
        "talk_time",
        "wrap_time",
        "detection_time",
        "message_time",
        "connect_limit",
        "ring_timeout",
    ),
    "agents": ("pause_probability", "pause_time"),
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
    # Build the policy once so bad [pacing] parameters fail at load time, naming the key.
    cls = _policy_class(s.policy)
    params = inspect.signature(cls).parameters
    accepted = set(params) - {"self", "mode"}
    for key, value in s.pacing:
        if key not in accepted:
            raise ConfigError(
                f"pacing.{key}",
                f"unknown parameter for policy {s.policy!r} (accepted: {', '.join(sorted(accepted)) or 'none'})",
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


def scenario_from_dict(data: Mapping[str, Any]) -> Scenario:
    """Build a scenario from parsed TOML tables; unknown tables and keys are errors."""
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
        if section not in _SECTIONS:
            raise ConfigError(section, f"unknown table (expected {', '.join([*_SECTIONS, 'pacing', 'drift'])})")
        if not isinstance(table, Mapping):
            raise ConfigError(section, "must be a table")
        for key, value in table.items():
            if key not in _SECTIONS[section]:
                raise ConfigError(f"{section}.{key}", "unknown key")
            if key in _DISTRIBUTIONS:
                value = parse_distribution(f"{section}.{key}", value)
            elif (
                key
                in ("hours", "target_abandon_rate", "ratio", "connect_limit", "ring_timeout", "rolling_window_hours")
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            kwargs[key] = value
    return Scenario(**kwargs)


def loads(text: str) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"malformed TOML: {exc}") from None
    return scenario_from_dict(data)


def load(path: str | Path) -> Scenario:
    """Read a scenario file. Errors (missing file, bad TOML, bad key) raise :class:`ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read scenario {str(p)!r}: {exc}") from None
    try:
        return loads(text)
    except ConfigError as exc:
        raise ConfigError(exc.key, f"{exc.message} (in {p})") from None


def default_text() -> str:
    """The embedded default scenario, comments included."""
    return resources.files("sim").joinpath("scenarios/default.toml").read_text(encoding="utf-8")


def default() -> Scenario:
    return loads(default_text())
