"""Compliance gates: do-not-call lists, calling windows, and the abandonment ledger.

Every gate fails closed: when a gate cannot tell (no registry, stale registry, unknown time zone, unknown region),
the answer is *do not dial*, and the reason is returned so it can be counted. The gates are plain objects with no
I/O of their own at check time, so the simulator and the live runtime ask exactly the same questions.
"""

from dialer.compliance.dnc import DncError, DncFormatError, DoNotCall, NationalRegistry, load_internal_list
from dialer.compliance.numbers import NumberError, normalize
from dialer.compliance.windows import DEFAULT_RULES, CallingWindows, RegionRules, RuleSet, hours, us_rules

__all__ = [
    "DEFAULT_RULES",
    "CallingWindows",
    "DncError",
    "DncFormatError",
    "DoNotCall",
    "NationalRegistry",
    "NumberError",
    "RegionRules",
    "RuleSet",
    "hours",
    "load_internal_list",
    "normalize",
    "us_rules",
]
