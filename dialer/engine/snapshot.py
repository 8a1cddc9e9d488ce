"""What a pacing policy sees when it decides how many calls to launch.

A snapshot is a read-only view of the engine at one instant. The counts are kept incrementally by the engine, so
building a snapshot is O(1); the per-agent and per-call detail (time in state, time ringing) is produced only when
a policy iterates it, because a thousand-agent floor must decide in well under a millisecond.
A snapshot is valid only during the ``decide`` call that received it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dialer.engine.events import AgentGroup
from dialer.engine.state import AgentState, AnyAgentState, CallState, InboundState, PreviewState
from dialer.engine.stats import EngineStats

if TYPE_CHECKING:
    from dialer.engine.core import Engine


# Resolution of the engine's entry-time histograms (:meth:`Snapshot.ringing_bins`, :meth:`Snapshot.busy_bins`): fine
# enough that binning moves an age by a small share of a ring (seconds) or a talk (minutes), coarse enough that a
# floor of thousands is summed over a few hundred bins.
RING_BIN = 0.25
BUSY_BIN = 1.0


@dataclass(frozen=True, slots=True)
class AgentView:
    agent_id: str
    state: AnyAgentState
    time_in_state: float


@dataclass(frozen=True, slots=True)
class CallView:
    call_id: int
    state: CallState
    time_since_dial: float
    time_in_state: float


class Snapshot:
    """Agents by state, calls in flight by state, and the engine's counters, at time ``now``.

    ``ready``, ``paused``, ``on_call`` and ``wrap_up`` (and the busy histograms) count the agents outbound
    pacing may use: those in the ``outbound`` and ``blended`` groups, except while they are on an inbound call.
    On a floor of outbound agents only, that is every agent. ``inbound_queued`` and ``inbound_connected`` count
    inbound callers; :meth:`group` gives any group's agents by state, whatever they are doing. ``previewing`` and
    ``reserved`` count the same agents looking at a lead or waiting on their own dial (preview and manual dialing;
    0 otherwise).
    """

    __slots__ = (
        "_engine",
        "abandoning",
        "connect_limit",
        "connected",
        "inbound_connected",
        "inbound_queued",
        "now",
        "on_call",
        "paused",
        "previewing",
        "queued",
        "ready",
        "reserved",
        "ringing",
        "stats",
        "wrap_up",
    )

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.now: float = engine.now
        # On a floor that never had an inbound or blended agent the two are equal; the floor's own counts are read
        # then, as they always were.
        n = engine.pool_counts if engine.mixed_floor else engine.agent_counts
        self.ready: int = n[AgentState.READY]
        self.paused: int = n[AgentState.PAUSED]
        self.on_call: int = n[AgentState.ON_CALL]
        self.wrap_up: int = n[AgentState.WRAP_UP]
        self.previewing: int = n.get(PreviewState.PREVIEWING, 0)
        self.reserved: int = n.get(PreviewState.RESERVED, 0)
        c = engine.call_counts
        # Calls launched and not yet answered, whether or not the network has reported ringing.
        self.ringing: int = c[CallState.DIALING] + c[CallState.RINGING]
        self.queued: int = c[CallState.QUEUED]
        self.connected: int = c[CallState.CONNECTED]
        self.abandoning: int = c[CallState.ABANDONING]
        self.connect_limit: float = engine.config.connect_limit
        self.stats: EngineStats = engine.stats
        self.inbound_queued: int = engine.inbound_counts[InboundState.QUEUED]
        self.inbound_connected: int = engine.inbound_counts[InboundState.CONNECTED]

    def group(self, group: AgentGroup | str) -> Mapping[AnyAgentState, int]:
        """Logged-in agents of ``group`` by state, on any call (read-only)."""
        return self._engine.group_counts[AgentGroup(group)]

    def inbound_waits(self) -> Iterator[float]:
        """Seconds waited so far by each queued inbound caller, longest first."""
        now = self.now
        engine = self._engine
        for inbound_id in engine._inbound_queue:
            yield now - engine.inbound[inbound_id].arrived_at

    def holding_back(self, agents: int) -> Snapshot:
        """A copy in which ``agents`` of the ready agents are not there (never below 0 ready): what a blended
        policy shows the outbound policy it wraps, having kept agents back for inbound callers. Everything else
        (busy agents, calls, histograms, statistics) is shared with this snapshot."""
        copy = object.__new__(Snapshot)
        for slot in Snapshot.__slots__:
            object.__setattr__(copy, slot, getattr(self, slot))
        copy.ready = max(0, self.ready - agents)
        return copy

    @property
    def logged_in(self) -> int:
        return self.ready + self.paused + self.on_call + self.wrap_up + self.previewing + self.reserved

    @property
    def non_paused(self) -> int:
        """Agents counted by ratio dialing: ready or on a call (VICIdial's definition)."""
        return self.ready + self.on_call

    @property
    def in_flight(self) -> int:
        """Calls ringing, waiting for an agent or connected: what ratio dialing subtracts."""
        return self.ringing + self.queued + self.connected

    @property
    def day_start(self) -> float:
        """Clock time at which the current calendar day began."""
        s = self.stats
        return s.day_of(self.now) * 86400.0 - s.day_offset

    def agents(self) -> Iterator[AgentView]:
        """Every logged-in agent with its time in the current state."""
        now = self.now
        for agent in self._engine.agents.values():
            yield AgentView(agent.agent_id, agent.state, now - agent.since)

    def busy_agent_times(self) -> Iterator[tuple[AgentState, float]]:
        """(state, seconds in it) for agents on a call or in wrap-up: who may come free soon."""
        now = self.now
        for agent in self._engine.agents.values():
            if agent.state is AgentState.ON_CALL or agent.state is AgentState.WRAP_UP:
                yield agent.state, now - agent.since

    def calls(self) -> Iterator[CallView]:
        """Every call in flight."""
        now = self.now
        for call in self._engine.calls.values():
            yield CallView(call.call_id, call.state, now - call.dialed_at, now - call.since)

    def ringing_bins(self) -> tuple[float, Mapping[int, int]]:
        """Calls not yet answered by dial time, as ``(w, {i: n})``: ``n`` calls dialed in ``[i w, (i + 1) w)``.

        Kept by the engine as calls move, so reading it costs the number of distinct bins, not of calls: what lets
        a forecast over a floor of thousands of calls stay within a millisecond. Read-only."""
        return RING_BIN, self._engine.ring_bins

    def busy_bins(self, state: AgentState) -> tuple[float, Mapping[int, int]]:
        """Agents in ``state`` (``ON_CALL`` or ``WRAP_UP``) by when they entered it, binned as in
        :meth:`ringing_bins`. Read-only."""
        return BUSY_BIN, self._engine.busy_bins[state]

    def ringing_times(self) -> Iterator[float]:
        """Seconds since dial of each call not yet answered."""
        now = self.now
        for call in self._engine.calls.values():
            if call.state is CallState.DIALING or call.state is CallState.RINGING:
                yield now - call.dialed_at
