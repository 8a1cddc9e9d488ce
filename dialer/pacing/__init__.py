"""Pacing policies: how many calls to launch now.

``make_policy(name, **params)`` builds one by name; names are the contract used by scenario files and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from dialer.errors import ConfigError
from dialer.pacing.base import PacingPolicy
from dialer.pacing.blended import Blended, Threshold
from dialer.pacing.issabel import Issabel
from dialer.pacing.predictive import Predictive
from dialer.pacing.preview import Manual, Preview
from dialer.pacing.ratio import Power, Progressive
from dialer.pacing.vicidial import VicidialAdaptive
from dialer.pacing.webitel import Webitel

POLICIES: dict[str, Callable[..., PacingPolicy]] = {
    "progressive": Progressive,
    "power": Power,
    "vicidial-adaptive": VicidialAdaptive,
    "vicidial-hard-limit": partial(VicidialAdaptive, "hard_limit"),
    "vicidial-tapered": partial(VicidialAdaptive, "tapered"),
    "vicidial-average": partial(VicidialAdaptive, "average"),
    "predictive": Predictive,
    "issabel": Issabel,
    "issabel-no-overcommit": partial(Issabel, overcommit=False),
    "webitel": Webitel,
    "blended": Blended,
    "threshold": Threshold,
    "preview": Preview,
    "manual": Manual,
}


def make_policy(name: str, **params: Any) -> PacingPolicy:
    """Build the policy called ``name``; unknown names and parameters raise :class:`ConfigError`."""
    factory = POLICIES.get(name)
    if factory is None:
        raise ConfigError("policy", f"unknown policy {name!r} (choose from {', '.join(POLICIES)})")
    try:
        return factory(**params)
    except TypeError as exc:
        raise ConfigError("policy", f"bad parameters for {name!r}: {exc}") from None


__all__ = [
    "POLICIES",
    "Issabel",
    "Manual",
    "PacingPolicy",
    "Power",
    "Predictive",
    "Preview",
    "Progressive",
    "VicidialAdaptive",
    "Webitel",
    "make_policy",
]
