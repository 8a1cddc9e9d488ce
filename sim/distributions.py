"""Time distributions for scenario files, and fast samplers for them.

A scenario names a distribution as a small table (``{ dist = "exponential", mean = 15 }``). Parsing validates
every key and value; sampling draws in batches from a NumPy generator, because one NumPy call per sample would
cost more than the rest of the simulation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dialer.errors import ConfigError

# dist name -> (required keys, optional keys)
_FORMS: dict[str, list[tuple[frozenset[str], frozenset[str]]]] = {
    "fixed": [(frozenset({"value"}), frozenset())],
    "exponential": [(frozenset({"mean"}), frozenset())],
    "uniform": [(frozenset({"low", "high"}), frozenset())],
    "lognormal": [
        (frozenset({"mean", "sigma_log"}), frozenset()),
        (frozenset({"mu", "sigma"}), frozenset()),
    ],
    "gamma": [
        (frozenset({"mean", "shape"}), frozenset()),
        (frozenset({"shape", "scale"}), frozenset()),
    ],
    "empirical": [(frozenset({"samples"}), frozenset())],
}

_BATCH = 4096


@dataclass(frozen=True)
class Distribution:
    """A validated non-negative time distribution (seconds)."""

    dist: str
    params: tuple[tuple[str, Any], ...]

    @property
    def p(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def mean(self) -> float:
        p = self.p
        if self.dist == "fixed":
            return float(p["value"])
        if self.dist == "exponential":
            return float(p["mean"])
        if self.dist == "uniform":
            return (p["low"] + p["high"]) / 2.0
        if self.dist == "lognormal":
            if "mean" in p:
                return float(p["mean"])
            return math.exp(p["mu"] + p["sigma"] ** 2 / 2.0)
        if self.dist == "gamma":
            if "mean" in p:
                return float(p["mean"])
            return float(p["shape"] * p["scale"])
        return float(np.mean(p["samples"]))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"dist": self.dist}
        for k, v in self.params:
            d[k] = list(v) if isinstance(v, tuple) else v
        return d

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        p = self.p
        if self.dist == "fixed":
            return np.full(size, float(p["value"]))
        if self.dist == "exponential":
            return rng.exponential(p["mean"], size) if p["mean"] > 0 else np.zeros(size)
        if self.dist == "uniform":
            return rng.uniform(p["low"], p["high"], size)
        if self.dist == "lognormal":
            if "mean" in p:
                sigma = p["sigma_log"]
                mu = math.log(p["mean"]) - sigma * sigma / 2.0 if p["mean"] > 0 else -math.inf
            else:
                mu, sigma = p["mu"], p["sigma"]
            if mu == -math.inf:
                return np.zeros(size)
            return rng.lognormal(mu, sigma, size)
        if self.dist == "gamma":
            shape = p["shape"]
            scale = p["scale"] if "scale" in p else p["mean"] / shape
            return rng.gamma(shape, scale, size)
        samples = np.asarray(p["samples"], dtype=float)
        return samples[rng.integers(0, len(samples), size)]

    def sampler(self, rng: np.random.Generator) -> Sampler:
        return Sampler(self, rng)


class Sampler:
    """Draws one value at a time from batches, so per-sample cost is a list pop."""

    __slots__ = ("_buf", "_const", "_dist", "_rng")

    def __init__(self, dist: Distribution, rng: np.random.Generator) -> None:
        self._dist = dist
        self._rng = rng
        self._buf: list[float] = []
        self._const = float(dist.p["value"]) if dist.dist == "fixed" else None

    def __call__(self) -> float:
        if self._const is not None:
            return self._const
        buf = self._buf
        if not buf:
            buf.extend(self._dist.draw(self._rng, _BATCH).tolist())
            buf.reverse()
        return buf.pop()


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(key, "must be finite")
    return float(value)


def parse_distribution(key: str, spec: Any) -> Distribution:
    """Validate a distribution table; errors name the offending key (``calls.talk_time.mean``)."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = {"dist": "fixed", "value": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(key, f'must be a table like {{ dist = "exponential", mean = 15 }}, got {spec!r}')
    name = spec.get("dist")
    if name is None:
        raise ConfigError(f"{key}.dist", "missing (one of " + ", ".join(_FORMS) + ")")
    if name not in _FORMS:
        raise ConfigError(f"{key}.dist", f"unknown distribution {name!r} (choose from {', '.join(_FORMS)})")
    given = frozenset(spec) - {"dist"}
    form = next((f for f in _FORMS[name] if f[0] <= given and given <= f[0] | f[1]), None)
    if form is None:
        unknown = given - frozenset().union(*(r | o for r, o in _FORMS[name]))
        if unknown:
            raise ConfigError(f"{key}.{sorted(unknown)[0]}", f"unknown key for dist {name!r}")
        wanted = " or ".join("+".join(sorted(r)) for r, _ in _FORMS[name])
        raise ConfigError(key, f"dist {name!r} needs {wanted}")
    params: dict[str, Any] = {}
    for k in sorted(given):
        if k == "samples":
            raw = spec[k]
            if not isinstance(raw, list) or not raw:
                raise ConfigError(f"{key}.samples", "must be a non-empty list of numbers")
            vals = tuple(_number(f"{key}.samples[{i}]", v) for i, v in enumerate(raw))
            if any(v < 0 for v in vals):
                raise ConfigError(f"{key}.samples", "times must be >= 0")
            params[k] = vals
        else:
            params[k] = _number(f"{key}.{k}", spec[k])
    for k in ("value", "mean", "low", "high", "scale"):
        if k in params and params[k] < 0:
            raise ConfigError(f"{key}.{k}", f"must be >= 0 (times cannot be negative), got {params[k]:g}")
    for k in ("shape", "sigma_log", "sigma"):
        if k in params and params[k] <= 0 and not (k != "shape" and params[k] == 0):
            raise ConfigError(f"{key}.{k}", f"must be > 0, got {params[k]:g}")
    if name == "uniform" and params["low"] > params["high"]:
        raise ConfigError(f"{key}.low", "must not exceed high")
    if name == "lognormal" and "mu" in params and params["sigma"] < 0:
        raise ConfigError(f"{key}.sigma", "must be >= 0")
    return Distribution(name, tuple(params.items()))
