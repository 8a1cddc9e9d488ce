"""Counters the engine keeps as calls finish and agents change state.

These are the facts pacing policies read (through the snapshot) and the simulator reports. They are updated
incrementally, O(1) per event, because the engine handles every call of a thousand-agent floor.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from dialer.engine.records import Outcome
from dialer.engine.state import AgentState

DAY = 86400.0


@dataclass(slots=True)
class DayCounts:
    """Abandonment numerator and denominators for one calendar day (the UK window, and VICIdial's)."""

    dials: int = 0
    live_answers: int = 0
    machine_answers: int = 0
    abandoned: int = 0


@dataclass(slots=True)
class Totals:
    """Counts since start. ``connects`` are answered calls that reached an agent: a bridge that fails takes its
    connect back and counts as abandoned (and in ``bridge_failed``), so once every call is over
    ``live_answers == connects + abandoned``. ``customer_hung_up``, ``agent_lost`` and ``bridge_failed`` are
    subsets, kept for the operator: they say why."""

    dials: int = 0
    live_answers: int = 0
    machine_answers: int = 0
    abandoned: int = 0
    connects: int = 0
    busy: int = 0
    no_answer: int = 0
    rejected: int = 0
    invalid_number: int = 0
    network: int = 0
    customer_hung_up: int = 0
    agent_lost: int = 0
    bridge_failed: int = 0


class RecentOutcomes:
    """Counts of what happened in the last ``window`` seconds (a sliding window, for adaptive pacing)."""

    __slots__ = ("_items", "abandoned", "dials", "live_answers", "machine_answers", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._items: deque[tuple[float, str]] = deque()
        self.dials = 0
        self.live_answers = 0
        self.abandoned = 0
        self.machine_answers = 0

    def add(self, t: float, kind: str) -> None:
        self._items.append((t, kind))
        setattr(self, kind, getattr(self, kind) + 1)

    def expire(self, now: float) -> None:
        cutoff = now - self.window
        items = self._items
        while items and items[0][0] < cutoff:
            _, kind = items.popleft()
            setattr(self, kind, getattr(self, kind) - 1)


@dataclass(slots=True)
class EngineStats:
    """Everything counted since the engine started.

    Events are counted when they happen, not when the call's record is written: a live answer at answer time,
    an abandonment when the message starts. Pacing reacts seconds sooner that way, and a call cut off by a crash
    after its abandonment still counts.
    """

    recent_window: float = 3600.0
    day_offset: float = 0.0
    totals: Totals = field(default_factory=Totals)
    days: dict[int, DayCounts] = field(default_factory=dict)
    agent_seconds: dict[AgentState, float] = field(
        default_factory=lambda: {s: 0.0 for s in AgentState if s is not AgentState.LOGGED_OUT}
    )
    idle_gaps: int = 0
    idle_gap_seconds: float = 0.0
    time_to_answer_sum: float = 0.0
    time_to_answer_n: int = 0
    recent: RecentOutcomes = field(init=False)
    minute: RecentOutcomes = field(init=False)

    def __post_init__(self) -> None:
        self.recent = RecentOutcomes(self.recent_window)
        self.minute = RecentOutcomes(60.0)

    def day_of(self, t: float) -> int:
        """Calendar day index of time ``t`` (``day_offset`` shifts the clock to the campaign's midnight)."""
        return int((t + self.day_offset) // DAY)

    def day(self, t: float) -> DayCounts:
        d = self.day_of(t)
        counts = self.days.get(d)
        if counts is None:
            counts = self.days[d] = DayCounts()
        return counts

    def _windowed(self, t: float, kind: str) -> None:
        self.recent.add(t, kind)
        self.minute.add(t, kind)

    def dialed(self, t: float) -> None:
        self.totals.dials += 1
        self.day(t).dials += 1
        self._windowed(t, "dials")

    def live_answer(self, t: float, dialed_at: float) -> None:
        self.totals.live_answers += 1
        self.day(t).live_answers += 1
        self.time_to_answer_sum += t - dialed_at
        self.time_to_answer_n += 1
        self._windowed(t, "live_answers")

    def machine_answer(self, t: float, dialed_at: float) -> None:
        self.totals.machine_answers += 1
        self.day(t).machine_answers += 1
        self.time_to_answer_sum += t - dialed_at
        self.time_to_answer_n += 1
        self._windowed(t, "machine_answers")

    def abandon(self, t: float, answered_at: float) -> None:
        """Counted on the day the person answered, the day the regulator attributes the call to."""
        self.totals.abandoned += 1
        self.day(answered_at).abandoned += 1
        self._windowed(t, "abandoned")

    def failed(self, outcome: Outcome) -> None:
        tot = self.totals
        setattr(tot, outcome.value, getattr(tot, outcome.value) + 1)

    def expire(self, now: float) -> None:
        self.recent.expire(now)
        self.minute.expire(now)

    @property
    def abandon_rate(self) -> float:
        """Abandoned over live answers since start (0 when nobody answered yet)."""
        t = self.totals
        return t.abandoned / t.live_answers if t.live_answers else 0.0
