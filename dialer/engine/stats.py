"""Counters the engine keeps as calls finish and agents change state.

These are the facts pacing policies read (through the snapshot) and the simulator reports. They are updated
incrementally, O(1) per event, because the engine handles every call of a thousand-agent floor.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from dialer.engine.events import AgentGroup
from dialer.engine.records import Outcome
from dialer.engine.state import AgentState, AnyAgentState

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


class InboundStats:
    """Inbound figures since start, counted as things happen (O(1) each).

    ``answered`` counts connects (a bridge that fails or a caller who hangs up as they are connected takes it back,
    so once every call is over ``arrived == answered + abandoned``). The service level is the share of the
    callers whose fate is known who were answered within ``service_level_seconds`` (abandoned callers count
    against it, however soon they hung up: the stricter of the usual definitions, and the one Erlang-A's
    P(served within T) gives). The average speed of answer is the mean wait of answered callers. The handle
    time is talk plus the wrap-up after it, the time an inbound call takes an agent away.

    Callers turned away before queueing (:class:`~dialer.engine.events.InboundBlocked`: busy, queue full,
    stopping, balked) are counted apart, in ``blocked`` (and by reason in ``blocked_by``), and are in none of the
    figures above: ``arrived`` counts callers who queued, so the service level, the ASA and the abandonment share
    keep their meaning over them. ``offered`` is every caller who rang (``arrived + blocked``) and
    ``blocking_share`` the share of them turned away, the figure that shows a floor refusing callers to protect its
    service level.
    """

    __slots__ = (
        "_arrivals",
        "abandoned",
        "abandoned_within",
        "answered",
        "answered_within",
        "arrived",
        "blocked",
        "blocked_by",
        "first_arrival",
        "handled",
        "service_level_seconds",
        "talk_seconds",
        "wait_seconds",
        "window",
        "wrap_seconds",
        "wrapped",
    )

    def __init__(self, service_level_seconds: float = 20.0, window: float = 3600.0) -> None:
        self.service_level_seconds = service_level_seconds
        self.window = window
        self._arrivals: deque[float] = deque()
        self.first_arrival: float | None = None
        self.arrived = 0
        self.answered = 0
        self.answered_within = 0
        self.abandoned = 0
        self.abandoned_within = 0
        self.blocked = 0
        self.blocked_by: dict[str, int] = {}  # by BlockedReason value, for the operator: why callers were refused
        self.wait_seconds = 0.0  # sum of the answered callers' waits
        self.handled = 0  # answered calls that ended (talk known)
        self.talk_seconds = 0.0
        self.wrapped = 0  # wrap-ups after an inbound call
        self.wrap_seconds = 0.0

    def arrival(self, t: float) -> None:
        self.arrived += 1
        if self.first_arrival is None:
            self.first_arrival = t
        self._arrivals.append(t)

    def answer(self, wait: float, sign: int = 1) -> None:
        """A connect after ``wait`` seconds (``sign=-1`` takes one back)."""
        self.answered += sign
        self.wait_seconds += sign * wait
        if wait <= self.service_level_seconds:
            self.answered_within += sign

    def abandon(self, wait: float) -> None:
        self.abandoned += 1
        if wait <= self.service_level_seconds:
            self.abandoned_within += 1

    def block(self, reason: str) -> None:
        """A caller turned away before queueing, for ``reason`` (a BlockedReason value)."""
        self.blocked += 1
        self.blocked_by[reason] = self.blocked_by.get(reason, 0) + 1

    def ended(self, talk: float) -> None:
        self.handled += 1
        self.talk_seconds += talk

    def wrap(self, seconds: float) -> None:
        self.wrapped += 1
        self.wrap_seconds += seconds

    @property
    def service_level(self) -> float:
        """Answered within T over answered plus abandoned (NaN before any caller's fate is known)."""
        n = self.answered + self.abandoned
        return self.answered_within / n if n else math.nan

    @property
    def average_speed_of_answer(self) -> float:
        return self.wait_seconds / self.answered if self.answered else math.nan

    @property
    def abandon_rate(self) -> float:
        n = self.answered + self.abandoned
        return self.abandoned / n if n else math.nan

    @property
    def offered(self) -> int:
        """Every caller who rang: those who queued and those turned away before."""
        return self.arrived + self.blocked

    @property
    def blocking_share(self) -> float:
        """Blocked over offered (NaN before the first caller)."""
        n = self.offered
        return self.blocked / n if n else math.nan

    @property
    def handle_time(self) -> float:
        """Mean talk plus mean wrap-up of inbound calls (NaN before the first inbound call ended)."""
        if not self.handled:
            return math.nan
        return self.talk_seconds / self.handled + (self.wrap_seconds / self.wrapped if self.wrapped else 0.0)

    def arrival_rate(self, now: float) -> float:
        """Arrivals per second over the last ``window`` seconds (over the time since the first arrival, if that is
        shorter; NaN before any arrival)."""
        items = self._arrivals
        cutoff = now - self.window
        while items and items[0] < cutoff:
            items.popleft()
        if self.first_arrival is None:
            return math.nan
        span = min(self.window, now - self.first_arrival)
        return len(items) / span if span > 0 else math.nan


def _group_seconds() -> dict[AgentGroup, dict[AnyAgentState, float]]:
    return {g: {s: 0.0 for s in AgentState if s is not AgentState.LOGGED_OUT} for g in AgentGroup}


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
    #: Seconds by agent state; the preview states appear once an agent first enters one.
    agent_seconds: dict[AnyAgentState, float] = field(
        default_factory=lambda: {s: 0.0 for s in AgentState if s is not AgentState.LOGGED_OUT}
    )
    idle_gaps: int = 0
    idle_gap_seconds: float = 0.0
    time_to_answer_sum: float = 0.0
    time_to_answer_n: int = 0
    recent: RecentOutcomes = field(init=False)
    minute: RecentOutcomes = field(init=False)
    #: Agent seconds by group and state (``agent_seconds`` is their sum over groups).
    group_seconds: dict[AgentGroup, dict[AnyAgentState, float]] = field(default_factory=_group_seconds)
    service_level_seconds: float = 20.0
    inbound: InboundStats = field(init=False)

    def __post_init__(self) -> None:
        self.recent = RecentOutcomes(self.recent_window)
        self.minute = RecentOutcomes(60.0)
        self.inbound = InboundStats(self.service_level_seconds, self.recent_window)

    def occupancy(self, group: AgentGroup | str | None = None) -> float:
        """Share of logged-in time spent on calls or in wrap-up, for one group or (``None``) the whole floor.
        Time is credited when an agent leaves a state, so agents still in one are not yet counted."""
        seconds = self.agent_seconds if group is None else self.group_seconds[AgentGroup(group)]
        total = sum(seconds.values())
        return (seconds[AgentState.ON_CALL] + seconds[AgentState.WRAP_UP]) / total if total else math.nan

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
