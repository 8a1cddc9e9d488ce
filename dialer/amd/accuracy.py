"""Scoring a detector on a labelled corpus: the figures a regulator asks for, each with a 95% Wilson interval.

Shared by ``benchmarks/amd_accuracy.py`` and the accuracy test so both count the same way. ``unsure`` counts as
"not machine" everywhere: the runtime sends an unsure call to an agent, so it can never hang up on a person.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from dialer.amd._common import MACHINE, PERSON, UNSURE


def wilson(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for ``hits`` of ``n``: unlike the normal approximation it stays inside [0, 1] and
    gives an honest upper bound when nothing went wrong in the sample (0 of n is not "exactly 0%")."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One call's verdict: its true label, its category, what the detector said and when (seconds from answer).

    ``speech_start`` and ``greeting_end`` are the detector's at the verdict (``None``: no word heard), kept so
    the time from each connect clock's start to the verdict can be scored (:func:`clock_lags`).
    """

    label: str
    category: str
    verdict: str
    seconds: float
    speech_start: float | None = None
    greeting_end: float | None = None

    def clock_start(self, clock: str) -> float:
        """Seconds after the answer when ``clock``'s 2-s connect clock started; the answer if no word was heard."""
        if clock == "answer":
            return 0.0
        at = self.speech_start if clock == "speech_start" else self.greeting_end
        return 0.0 if at is None else at


@dataclass(frozen=True, slots=True)
class Score:
    """Counts and timings of a set of outcomes. ``rate`` is people taken for machines (people rows) or machines
    caught (machine rows); ``unsure`` the share left to an agent undecided."""

    label: str
    n: int
    machine: int
    unsure: int
    median: float
    p90: float

    @property
    def rate(self) -> float:
        return self.machine / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.machine, self.n)

    @property
    def unsure_share(self) -> float:
        return self.unsure / self.n if self.n else 0.0

    @property
    def unsure_interval(self) -> tuple[float, float]:
        return wilson(self.unsure, self.n)


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)] if ordered else math.nan


def score(outcomes: Iterable[Outcome], label: str) -> Score:
    """Score the outcomes whose true label is ``label`` (``person`` or ``machine``)."""
    mine = [o for o in outcomes if o.label == label]
    times = [o.seconds for o in mine]
    return Score(
        label=label,
        n=len(mine),
        machine=sum(o.verdict == MACHINE for o in mine),
        unsure=sum(o.verdict == UNSURE for o in mine),
        median=statistics.median(times) if times else math.nan,
        p90=_p90(times),
    )


def by_category(outcomes: list[Outcome]) -> dict[str, Score]:
    """One score per category, in the order categories first appear."""
    out: dict[str, Score] = {}
    for category in dict.fromkeys(o.category for o in outcomes):
        rows = [o for o in outcomes if o.category == category]
        out[category] = score(rows, rows[0].label)
    return out


@dataclass(frozen=True, slots=True)
class ClockLag:
    """For people: seconds from the connect clock's start to the verdict, which with the bridge must fit in 2 s.

    ``spoke`` covers people the detector heard say a word (the clock starts at the moment the detector gives);
    ``silent`` those it did not (the clock runs from the answer), whose verdict comes at ``initial_silence``.
    """

    n: int
    median: float
    p99: float
    max: float
    silent: int
    silent_max: float


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] if ordered else math.nan


def clock_lags(outcomes: Iterable[Outcome], clock: str) -> ClockLag:
    """How long after ``clock``'s start (``answer``, ``speech_start``, ``greeting_end``) people got a verdict."""
    people = [o for o in outcomes if o.label == PERSON]
    spoke = [o.seconds - o.clock_start(clock) for o in people if o.speech_start is not None]
    silent = [o.seconds for o in people if o.speech_start is None]
    return ClockLag(
        n=len(spoke),
        median=statistics.median(spoke) if spoke else math.nan,
        p99=_p99(spoke),
        max=max(spoke, default=math.nan),
        silent=len(silent),
        silent_max=max(silent, default=math.nan),
    )


def all_times(outcomes: list[Outcome]) -> tuple[float, float]:
    """Median and p90 decision time over every call, people and machines alike."""
    times = [o.seconds for o in outcomes]
    return statistics.median(times), _p90(times)


__all__ = [
    "MACHINE",
    "PERSON",
    "UNSURE",
    "ClockLag",
    "Outcome",
    "Score",
    "all_times",
    "by_category",
    "clock_lags",
    "score",
    "wilson",
]
