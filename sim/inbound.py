"""Inbound callers and agent groups in a scenario: the ``[inbound]`` and ``[groups]`` tables.

``[inbound]`` makes callers ring in as a Poisson stream while the shift runs, each with a handle time, a wrap-up
and (optionally) a patience after which they hang up if no agent has answered. ``[groups]`` splits the floor into
outbound-only, inbound-only and blended agents. Both are checked key by key like the rest of a scenario, and mean
the same to ``dialer simulate``, ``dialer sweep``, the benchmarks and the Python API.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dialer.errors import ConfigError
from sim.distributions import Distribution, parse_distribution

INBOUND_KEYS: tuple[str, ...] = (
    "rate_per_hour",
    "handle_time",
    "wrap_time",
    "patience",
    "service_level_seconds",
    "service_level_target",
    "inbound_first",
    "busyness_shape",
    "balk_at",
    "balk_probability",
)
GROUP_KEYS: tuple[str, ...] = ("outbound", "inbound", "blended")


def _hint(word: str, candidates: tuple[str, ...]) -> str:
    near = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


@dataclass(frozen=True)
class Inbound:
    """Inbound callers: ``rate_per_hour`` Poisson arrivals during each shift; ``handle_time`` (talk) and
    ``wrap_time`` of an answered call; ``patience``, how long a caller waits before hanging up (``None``: never);
    the service level is the share answered within ``service_level_seconds``, held to ``service_level_target``
    by blended pacing; ``inbound_first`` lets a freed blended agent take an inbound caller before an outbound
    person (the engine's ``EngineConfig.inbound_first``); ``busyness_shape`` > 0 multiplies each day's arrival
    rates by a random busyness factor, gamma-distributed with mean 1 and this shape (variance 1/shape: a busy or
    a quiet day, as forecasters model it; 0, the default, leaves every day alike). Balking: a caller who finds
    ``balk_at`` or more callers already waiting hangs up at once, with probability ``balk_probability`` (0, the
    default, and nobody balks); a balk is an abandoned call with no wait in the simulator's figures, as a contact
    center's switch counts it. The engine hears it as an ``InboundBlocked`` (reason ``balked``): counted blocked,
    apart from the callers who queued, and the figures carry that count as ``blocked``."""

    rate_per_hour: float = 60.0
    handle_time: Distribution = field(
        default_factory=lambda: parse_distribution("inbound.handle_time", {"dist": "exponential", "mean": 180})
    )
    wrap_time: Distribution = field(
        default_factory=lambda: parse_distribution("inbound.wrap_time", {"dist": "fixed", "value": 15})
    )
    patience: Distribution | None = None
    service_level_seconds: float = 20.0
    service_level_target: float = 0.8
    inbound_first: bool = False
    busyness_shape: float = 0.0
    balk_at: float = 0.0
    balk_probability: float = 1.0

    def __post_init__(self) -> None:
        for key in ("rate_per_hour", "service_level_seconds", "service_level_target", "busyness_shape"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"inbound.{key}", f"must be a number >= 0, got {v!r}")
        if self.rate_per_hour > 1e6:
            raise ConfigError("inbound.rate_per_hour", "must be at most 1,000,000")
        for key in ("balk_at", "balk_probability"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"inbound.{key}", f"must be a number >= 0, got {v!r}")
        if self.balk_at != int(self.balk_at) or self.balk_at > 100_000:
            raise ConfigError("inbound.balk_at", f"must be a whole number of waiting callers, got {self.balk_at!r}")
        if self.balk_probability > 1:
            raise ConfigError("inbound.balk_probability", "must be a share from 0 to 1")
        if self.service_level_target > 1:
            raise ConfigError("inbound.service_level_target", "must be a share from 0 to 1")
        if self.service_level_seconds > 3600:
            raise ConfigError("inbound.service_level_seconds", "must be at most 3600")
        for key in ("handle_time", "wrap_time"):
            if not isinstance(getattr(self, key), Distribution):
                raise ConfigError(f"inbound.{key}", "must be a distribution table")
        if self.patience is not None and not isinstance(self.patience, Distribution):
            raise ConfigError("inbound.patience", "must be a distribution table (leave it out: nobody hangs up)")
        if type(self.inbound_first) is not bool:
            raise ConfigError("inbound.inbound_first", f"must be true or false, got {self.inbound_first!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rate_per_hour": self.rate_per_hour}
        out["handle_time"] = self.handle_time.to_dict()
        out["wrap_time"] = self.wrap_time.to_dict()
        if self.patience is not None:
            out["patience"] = self.patience.to_dict()
        out["service_level_seconds"] = self.service_level_seconds
        out["service_level_target"] = self.service_level_target
        out["inbound_first"] = self.inbound_first
        if self.busyness_shape:
            out["busyness_shape"] = self.busyness_shape
        if self.balk_at:
            out["balk_at"] = int(self.balk_at)
            out["balk_probability"] = self.balk_probability
        return out

    def describe(self) -> str:
        patience = "never hang up" if self.patience is None else f"patience ~{self.patience.mean:g} s"
        if self.balk_at:
            patience += f", {100 * self.balk_probability:g}% balk at {int(self.balk_at)} waiting"
        return (
            f"{self.rate_per_hour:g} callers/h, handle ~{self.handle_time.mean:g} s, {patience}, "
            f"target {100 * self.service_level_target:g}% in {self.service_level_seconds:g} s"
        )


def inbound_from_dict(table: Any) -> Inbound:
    if not isinstance(table, Mapping):
        raise ConfigError("inbound", "must be a table")
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in INBOUND_KEYS:
            raise ConfigError(f"inbound.{key}", "unknown key" + _hint(key, INBOUND_KEYS))
        if key in ("handle_time", "wrap_time", "patience"):
            value = parse_distribution(f"inbound.{key}", value)
        elif key != "inbound_first":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"inbound.{key}", f"must be a number, got {value!r}")
            value = float(value)
        kwargs[key] = value
    return Inbound(**kwargs)


@dataclass(frozen=True)
class Groups:
    """How many agents of each group log in per shift: outbound-only, inbound-only and blended."""

    outbound: int = 0
    inbound: int = 0
    blended: int = 0

    def __post_init__(self) -> None:
        for key in GROUP_KEYS:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 100_000:
                raise ConfigError(f"groups.{key}", f"must be an integer from 0 to 100000, got {v!r}")
        if self.total < 1:
            raise ConfigError("groups", "must put at least one agent on the floor")

    @property
    def total(self) -> int:
        return self.outbound + self.inbound + self.blended

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in GROUP_KEYS}

    def agent_ids(self) -> list[tuple[str, str]]:
        """(agent id, group) for each agent: outbound agents keep the names a floor without groups has."""
        out = [(f"agent-{i + 1}", "outbound") for i in range(self.outbound)]
        out += [(f"inbound-{i + 1}", "inbound") for i in range(self.inbound)]
        out += [(f"blended-{i + 1}", "blended") for i in range(self.blended)]
        return out


def groups_from_dict(table: Any) -> Groups:
    if not isinstance(table, Mapping):
        raise ConfigError("groups", "must be a table")
    for key in table:
        if key not in GROUP_KEYS:
            raise ConfigError(f"groups.{key}", "unknown key" + _hint(key, GROUP_KEYS))
    return Groups(**dict(table))
