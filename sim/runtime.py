"""The SimPy runtime: the engine core driven by simulated time.

This layer is deliberately thin (SimPy's ``rt.py`` changes only how time passes; we change only where events come
from). Each dialed call becomes a *customer* process that rings, answers or not, waits for the engine's decision
and talks; each agent's after-call work and breaks are an *agent* process; a *shift* process logs agents in and
out. Every sampled outcome is turned into an engine event, and every engine action back into SimPy events. The
engine decides everything else: pacing, matching, abandonment.

Random numbers come from one NumPy stream per quantity (outcome, ring, talk, ...), seeded from the scenario seed
and the replication index, so the same seed gives the same numbers and two policies see the same callers.

A scenario with a ``drift`` gets one more process that moves the outcome thresholds and stretches talk times
every simulated minute. It changes no random stream (drift moves the thresholds a uniform draw is compared with,
and scales the draws), so a drifting campaign meets the same callers, only answering less or talking longer;
the engine and the policies see nothing but the calls, as they would live.

A scenario with ``[inbound]`` gets a Poisson stream of callers while each shift runs (their own random streams,
so adding inbound callers changes no outbound draw); each caller waits for the engine's ``ConnectInbound`` or
hangs up when their patience runs out, talks, and leaves the agent to wrap up. ``[groups]`` logs agents in to
their groups. Callers still waiting when the shift ends are answered (or hang up) before the floor goes home.

With the ``preview`` policy each lead the engine shows an agent gets a process that waits the agent's look at
it (``preview_seconds``, a stream of its own, so no other draw changes) and presses dial, unless the engine has
dialed it itself by then (the policy's ``timeout``) or withdrawn it (the shift ended). The agents' time looking
at leads and waiting on their own dials is reported as the ``previewing`` and ``reserved`` agent states.

``[[periods]]`` get a process per day that applies each period at its hour: outcome thresholds, a talk scale,
the inbound rate (arrivals are then thinned from the highest rate of the day, so they stay Poisson per period),
and staffing (agents beyond a group's number leave after their current call and come back when a later period
wants them). A day's busyness factor (``inbound.busyness_shape``) scales that day's arrival rates.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import simpy

from dialer.engine import events as ev
from dialer.engine.actions import (
    Action,
    ConnectCall,
    ConnectInbound,
    DialLead,
    HangUp,
    PlayAbandonMessage,
    PreviewLead,
    RecordCall,
    RecordInbound,
)
from dialer.engine.core import Engine, EngineConfig
from dialer.engine.events import AgentGroup
from dialer.engine.records import InboundOutcome
from dialer.engine.state import AgentState, CallState, InboundState
from dialer.leads import LeadSource, SyntheticLeads
from sim.distributions import Sampler
from sim.scenario import Drift, Scenario

DAY = 86400.0
SERIES_BIN = 900.0  # seconds per bin of the time series (15 min)
_LIVE, _MACHINE, _BUSY, _NO_ANSWER = 0, 1, 2, 3


@dataclass
class ReplicationResult:
    """Raw counts of one replication; :mod:`sim.metrics` turns them into rates and intervals."""

    index: int
    totals: dict[str, int]
    agent_seconds: dict[str, float]
    idle_gaps: int
    idle_gap_seconds: float
    days: list[dict[str, int]]
    series: dict[str, list[float]] = field(default_factory=dict)
    stale_events: int = 0
    sim_seconds: float = 0.0
    answers: list[tuple[float, bool]] = field(default_factory=list)  # (answered_at, abandoned) per live answer
    #: Per inbound caller: (arrived_at, wait, answered), by arrival. Empty without ``[inbound]``.
    inbound: list[tuple[float, float, bool]] = field(default_factory=list)
    #: Agent seconds by group and state (groups with no agents are left out).
    group_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Inbound handle time observed by the engine (talk plus wrap-up, NaN without inbound calls).
    inbound_handle_time: float = float("nan")
    #: Seconds agents talked to inbound callers (``agent_seconds["on_call"]`` less this is outbound talk).
    inbound_talk_seconds: float = 0.0
    #: Callers who balked, as the simulator decided them, and the engine's count of blocked callers (each balk is
    #: an ``InboundBlocked``, so the two are equal; both are kept so a test can say so).
    inbound_balked: int = 0
    inbound_blocked: int = 0


class SimulatedCampaign:
    """One replication of a scenario, run to completion by :meth:`run`."""

    def __init__(self, scenario: Scenario, replication: int = 0, *, leads: LeadSource | None = None) -> None:
        """``leads`` replaces the endless synthetic list, e.g. with a :class:`dialer.campaign.CampaignLeads` over a
        real list, so the compliance gates (do-not-call, calling windows, retries, lockouts) run in simulation
        exactly as they run live. Engine time 0 is then the lead source's ``epoch_offset``."""
        self.scenario = scenario
        self.replication = replication
        streams = np.random.SeedSequence([scenario.seed, replication]).spawn(9)
        gens = [np.random.default_rng(s) for s in streams]
        self._outcome_u = _Uniforms(gens[0])
        self.time_to_answer = scenario.time_to_answer.sampler(gens[1])
        self.no_answer_after = scenario.no_answer_after.sampler(gens[2])
        self.busy_after = scenario.busy_after.sampler(gens[3])
        self.talk_time: Sampler = scenario.talk_time.sampler(gens[4])
        self.wrap_time = scenario.wrap_time.sampler(gens[5])
        self.detection_time = scenario.detection_time.sampler(gens[6])
        self.message_time = scenario.message_time.sampler(gens[7])
        self.pause_time = scenario.pause_time.sampler(gens[8])
        self._pause_u = _Uniforms(np.random.default_rng(np.random.SeedSequence([scenario.seed, replication, 1])))
        preview_rng = np.random.default_rng(np.random.SeedSequence([scenario.seed, replication, 4]))
        self.preview_seconds = scenario.preview_seconds.sampler(preview_rng)
        p = scenario
        self._cum = (
            p.live_answer_probability,
            p.live_answer_probability + p.machine_probability,
            p.live_answer_probability + p.machine_probability + p.busy_probability,
        )
        self.env = simpy.Environment()
        inbound = scenario.inbound
        config = EngineConfig(connect_limit=scenario.connect_limit, ring_timeout=scenario.ring_timeout)
        if inbound is not None:
            config = EngineConfig(
                connect_limit=scenario.connect_limit,
                ring_timeout=scenario.ring_timeout,
                service_level_seconds=inbound.service_level_seconds,
                inbound_first=inbound.inbound_first,
            )
        self.engine = Engine(scenario.build_policy(), leads if leads is not None else SyntheticLeads(), config)
        self.agent_groups = [(a, AgentGroup(g)) for a, g in scenario.agent_groups()]
        self.agent_ids = [a for a, _ in self.agent_groups]
        # Inbound callers draw from streams of their own: adding them changes no outbound draw.
        self._inbound_decisions: dict[str, simpy.Event] = {}
        self._inbound_agent: dict[str, str] = {}
        self._inbound: list[tuple[float, float, bool]] = []
        self._inbound_n = 0
        self._balked = 0
        if inbound is not None:
            gin = [np.random.default_rng(x) for x in np.random.SeedSequence([scenario.seed, replication, 2]).spawn(4)]
            self._arrival_u = _Uniforms(gin[0])
            self.inbound_handle = inbound.handle_time.sampler(gin[1])
            self.inbound_wrap = inbound.wrap_time.sampler(gin[2])
            self.patience = None if inbound.patience is None else inbound.patience.sampler(gin[3])
            self._busy_rng = np.random.default_rng(np.random.SeedSequence([scenario.seed, replication, 3]))
            # Balking draws from a stream of its own, so a scenario without it draws exactly as before.
            self._balk_u = _Uniforms(np.random.default_rng(np.random.SeedSequence([scenario.seed, replication, 4])))
        self._inbound_rate = 0.0 if inbound is None else inbound.rate_per_hour / 3600.0
        self._day_factor = 1.0
        self._leaving: set[str] = set()  # agents a period sent away: they log out after their current call
        self._decisions: dict[int, simpy.Event] = {}
        self._answers: list[tuple[float, bool]] = []
        self._cancelled: set[int] = set()
        self._call_agent: dict[int, str] = {}
        self._armed: set[float] = set()
        self._off_shift = False
        self._going_home = False  # dialing stopped and no call can still need an agent
        self._drained: simpy.Event | None = None
        nbins = int(np.ceil(scenario.days * DAY / SERIES_BIN))
        self._bins = nbins
        self._occ_busy = np.zeros(nbins)
        self._occ_talk = np.zeros(nbins)
        self._occ_n = np.zeros(nbins)
        # Dials and live answers per bin, read off the engine's totals by the monitor: nothing per call.
        self._dial_bins = [0] * nbins
        self._live_bins = [0] * nbins
        self._counted = (0.0, 0, 0)  # (when, dials, live answers) at the last count
        self._scaled_talk: _ScaledSampler | None = None
        self._scaled_handle: _ScaledSampler | None = None
        scaled = scenario.drift is not None or any(p.talk_scale is not None for p in scenario.periods)
        if scaled:  # the stationary path keeps its plain sampler
            self._scaled_talk = _ScaledSampler(self.talk_time)
            self.talk_time = self._scaled_talk
            if inbound is not None and scenario.drift is None:
                self._scaled_handle = _ScaledSampler(self.inbound_handle)
                self.inbound_handle = self._scaled_handle

    # -- the bridge between SimPy and the engine -------------------------------------------------------

    def feed(self, event: ev.Event) -> None:
        """Hand one event to the engine and turn its actions into SimPy happenings."""
        for action in self.engine.handle(event):
            self._act(action)
        self._arm_timer()

    def _act(self, action: Action) -> None:
        if isinstance(action, DialLead):
            self.env.process(self.customer(action.call_id))
        elif isinstance(action, ConnectCall):
            self._call_agent[action.call_id] = action.agent_id
            self._decisions.pop(action.call_id).succeed(True)
        elif isinstance(action, PlayAbandonMessage):
            self._decisions.pop(action.call_id).succeed(False)
        elif isinstance(action, HangUp) and action.reason == "ring_timeout":
            self._cancelled.add(action.call_id)
        elif isinstance(action, RecordCall):
            record = action.record
            if record.live_answer and record.answered_at is not None:
                self._answers.append((record.answered_at, record.abandoned))
            self._check_drained()
        elif isinstance(action, PreviewLead):
            self.env.process(self.previewer(action.call_id, action.agent_id))
        elif isinstance(action, ConnectInbound):
            self._inbound_agent[action.inbound_id] = action.agent_id
            self._inbound_decisions.pop(action.inbound_id).succeed(True)
        elif isinstance(action, RecordInbound):
            r = action.record
            self._inbound.append((r.arrived_at, r.wait, r.outcome is InboundOutcome.ANSWERED))
            self._check_drained()

    def _check_drained(self) -> None:
        drained = self._drained
        if drained is not None and not self.engine.calls and not self.engine.inbound and not drained.triggered:
            drained.succeed()

    def _arm_timer(self) -> None:
        when = self.engine.next_timer()
        if when is None or when in self._armed:
            return
        self._armed.add(when)
        timeout = self.env.timeout(max(0.0, when - self.env.now), value=when)
        timeout.callbacks.append(self._tick)

    def _tick(self, timeout: simpy.events.Timeout) -> None:
        when = cast(float, timeout.value)
        self._armed.discard(when)
        nxt = self.engine.next_timer()
        if nxt is not None and nxt <= self.env.now:
            self.feed(ev.TimeAdvanced(self.env.now))
        else:
            self._arm_timer()

    # -- processes -------------------------------------------------------------------------------------

    def customer(self, call_id: int) -> Generator[simpy.Event, Any, None]:
        """One dialed number: it rings, then a person, a machine, a busy tone, or nobody."""
        env = self.env
        u = self._outcome_u()
        cum = self._cum
        kind = _LIVE if u < cum[0] else _MACHINE if u < cum[1] else _BUSY if u < cum[2] else _NO_ANSWER
        if kind == _BUSY:
            yield env.timeout(self.busy_after())
        elif kind == _NO_ANSWER:
            yield env.timeout(self.no_answer_after())
        else:
            yield env.timeout(self.time_to_answer())
        if call_id in self._cancelled:  # we gave up ringing first
            self._cancelled.discard(call_id)
            return
        if kind == _BUSY:
            self.feed(ev.CallFailed(env.now, call_id, ev.FailureReason.BUSY))
            return
        if kind == _NO_ANSWER:
            self.feed(ev.CallFailed(env.now, call_id, ev.FailureReason.NO_ANSWER))
            return
        answered = env.now
        detect = self.detection_time()
        if detect > 0:
            yield env.timeout(detect)
            if call_id in self._cancelled:
                self._cancelled.discard(call_id)
                return
        if kind == _MACHINE:
            self.feed(ev.CallAnsweredByMachine(env.now, call_id))
            return
        decision = self._decisions[call_id] = env.event()
        self.feed(ev.CallAnsweredByPerson(env.now, call_id, answered_at=answered))
        connected = yield decision
        if connected:
            yield env.timeout(self.talk_time())
            agent_id = self._call_agent.pop(call_id)
            self.feed(ev.CallEnded(env.now, call_id))
            env.process(self.after_call(agent_id))
        else:
            self.feed(ev.MessagePlayed(env.now, call_id, started_at=env.now))  # simulated: heard when ordered
            yield env.timeout(self.message_time())
            self.feed(ev.CallEnded(env.now, call_id))

    def previewer(self, call_id: int, agent_id: str) -> Generator[simpy.Event, Any, None]:
        """An agent looks at the lead shown to them, then presses dial (if the engine has not dialed it itself
        at its timeout, or taken it back, meanwhile)."""
        yield self.env.timeout(self.preview_seconds())
        offer = self.engine.offers.get(call_id)
        if offer is not None and offer.agent_id == agent_id:
            self.feed(ev.PreviewDial(self.env.now, agent_id, call_id))

    def caller(self, inbound_id: str) -> Generator[simpy.Event, Any, None]:
        """One inbound caller: rings in, waits for an agent (or hangs up when their patience runs out), talks."""
        env = self.env
        decision = self._inbound_decisions[inbound_id] = env.event()
        patience = None if self.patience is None else self.patience()
        inbound = self.scenario.inbound
        assert inbound is not None
        balks = (
            inbound.balk_at > 0
            and self.engine.inbound_counts[InboundState.QUEUED] >= inbound.balk_at
            and self._balk_u() < inbound.balk_probability
        )  # decided on the queue as the caller finds it, before joining it
        if balks:
            # Hears the queue and hangs up at once, never joining it: the engine counts them blocked (not
            # abandoned) and records them with no wait, so its blocked count is the simulator's balks. No agent
            # could have been free: a queue of balk_at >= 1 callers means none is.
            del self._inbound_decisions[inbound_id]
            self._balked += 1
            self.feed(ev.InboundBlocked(env.now, ev.BlockedReason.BALKED, inbound_id))
            return
        self.feed(ev.InboundArrived(env.now, inbound_id))
        if not decision.triggered:
            if patience is None:
                yield decision
            else:
                yield decision | env.timeout(patience)
                if not decision.triggered:  # an agent taken at the very same instant still counts
                    del self._inbound_decisions[inbound_id]
                    self.feed(ev.InboundAbandoned(env.now, inbound_id))
                    return
        agent_id = self._inbound_agent.pop(inbound_id)
        yield env.timeout(self.inbound_handle())
        self.feed(ev.InboundEnded(env.now, inbound_id))
        env.process(self.after_call(agent_id, self.inbound_wrap))

    def arrivals(self, until: float) -> Generator[simpy.Event, Any, None]:
        """Inbound callers ring in as a Poisson stream until ``until`` (the end of the day's shift)."""
        env = self.env
        inbound = self.scenario.inbound
        assert inbound is not None
        rates = [inbound.rate_per_hour] + [
            p.inbound_rate_per_hour for p in self.scenario.periods if p.inbound_rate_per_hour is not None
        ]
        top = max(rates) / 3600.0 * self._day_factor  # candidates at the day's highest rate, thinned to the period's
        if top <= 0:
            return
        thin = len(set(rates)) > 1
        while True:
            gap = -np.log1p(-self._arrival_u()) / top
            if env.now + gap >= until:
                return
            yield env.timeout(gap)
            if thin and self._arrival_u() * top >= self._inbound_rate * self._day_factor:
                continue
            self._inbound_n += 1
            env.process(self.caller(f"in-{self._inbound_n}"))

    def period_changes(self, shift_start: float) -> Generator[simpy.Event, Any, None]:
        """Applies each ``[[periods]]`` entry at its hour of the day's shift."""
        for period in self.scenario.periods:
            when = shift_start + period.start_hour * 3600.0
            if when > self.env.now:
                yield self.env.timeout(when - self.env.now)
            s = self.scenario
            if period.live_answer_probability is not None:
                live = period.live_answer_probability
                self._cum = (live, live + s.machine_probability, live + s.machine_probability + s.busy_probability)
            if period.talk_scale is not None:
                for scaled in (self._scaled_talk, self._scaled_handle):
                    if scaled is not None:
                        scaled.scale = period.talk_scale
            if period.inbound_rate_per_hour is not None:
                self._inbound_rate = period.inbound_rate_per_hour / 3600.0
            for group, n in period.staffing().items():
                self._staff(AgentGroup(group), n)

    def _staff(self, group: AgentGroup, n: int) -> None:
        """Put the first ``n`` agents of ``group`` on the floor: the others leave (free ones now, busy ones after
        their call and wrap-up), and those within ``n`` who are away come back."""
        now = self.env.now
        members = [a for a, g in self.agent_groups if g is group]
        for agent_id in members[n:]:
            self._leaving.add(agent_id)
            if self.engine.agent_state(agent_id) in (AgentState.READY, AgentState.PAUSED):
                self.feed(ev.AgentLoggedOut(now, agent_id))
        for agent_id in members[:n]:
            self._leaving.discard(agent_id)
            if self.engine.agent_state(agent_id) is AgentState.LOGGED_OUT and not self._off_shift:
                self.feed(ev.AgentLoggedIn(now, agent_id, group))
                self.feed(ev.AgentReady(now, agent_id))

    def after_call(self, agent_id: str, wrap: Sampler | None = None) -> Generator[simpy.Event, Any, None]:
        """Wrap-up, then maybe a break, then ready again (or home, once no call can need an agent)."""
        env = self.env
        yield env.timeout((wrap or self.wrap_time)())
        pause = self.scenario.pause_probability > 0 and self._pause_u() < self.scenario.pause_probability
        if self._shift_done() or agent_id in self._leaving:
            self.feed(ev.WrapUpDone(env.now, agent_id, pause=True))
            self.feed(ev.AgentLoggedOut(env.now, agent_id))
            return
        self.feed(ev.WrapUpDone(env.now, agent_id, pause=pause))
        if pause:
            yield env.timeout(self.pause_time())
            if self.engine.agent_state(agent_id) is not AgentState.PAUSED:
                return
            if self._shift_done() or agent_id in self._leaving:
                self.feed(ev.AgentLoggedOut(env.now, agent_id))
            else:
                self.feed(ev.AgentReady(env.now, agent_id))

    def _shift_done(self) -> bool:
        return self._off_shift and self._going_home

    def shift(self) -> Generator[simpy.Event, Any, None]:
        """Each day: agents log in and get ready, dial for the shift, stop, and go home once no call can need
        them (each after their own last call), the next day starting once every call has ended.

        Agents leave as soon as nothing is ringing or waiting, not when the last call of the floor ends: on a
        1,000-agent floor the longest of the calls talked at the bell lasts ten minutes or more, and keeping every
        agent logged in (and idle) until then counted up to two points of talk time against every policy alike,
        varying from day to day with one long call. Real agents go home after their own last call.
        """
        env = self.env
        for day in range(self.scenario.days):
            # A 24-hour shift drains past midnight: the next day then starts as soon as the last one is over.
            yield env.timeout(max(0.0, day * DAY - env.now))
            self._off_shift = False
            self._going_home = False
            self._drained = None
            self._leaving.clear()
            if day:
                self.feed(ev.DialingResumed(env.now))
            inbound = self.scenario.inbound
            if inbound is not None:
                self._inbound_rate = inbound.rate_per_hour / 3600.0
                if inbound.busyness_shape > 0:  # a busy or a quiet day: gamma, mean 1
                    shape = inbound.busyness_shape
                    self._day_factor = float(self._busy_rng.gamma(shape, 1.0 / shape))
            if self.scenario.periods:  # each day starts from the scenario's own values
                s = self.scenario
                live = s.live_answer_probability
                self._cum = (live, live + s.machine_probability, live + s.machine_probability + s.busy_probability)
                for scaled in (self._scaled_talk, self._scaled_handle):
                    if scaled is not None:
                        scaled.scale = 1.0
            for agent_id, group in self.agent_groups:
                self.feed(ev.AgentLoggedIn(env.now, agent_id, group))
            for agent_id in self.agent_ids:
                self.feed(ev.AgentReady(env.now, agent_id))
            if self.scenario.periods:
                env.process(self.period_changes(env.now))
            if self.scenario.inbound is not None:
                env.process(self.arrivals(env.now + self.scenario.shift_seconds))
            yield env.timeout(self.scenario.shift_seconds)
            self._off_shift = True
            self._drained = env.event()
            self.feed(ev.DialingStopped(env.now))
            if not self.engine.calls and not self.engine.inbound:
                self._drained.succeed()
            # Calls still ringing may yet be answered and need an agent; once none is ringing or waiting, no call
            # can (dialing has stopped), so agents go home: the free ones now, the others after their wrap-up.
            calls = self.engine.call_counts
            waiting = self.engine.inbound_counts
            while (
                calls[CallState.DIALING]
                + calls[CallState.RINGING]
                + calls[CallState.QUEUED]
                + waiting[InboundState.QUEUED]
            ):
                yield env.timeout(1.0)
            self._going_home = True
            for agent_id in self.agent_ids:
                if self.engine.agent_state(agent_id) in (AgentState.READY, AgentState.PAUSED):
                    self.feed(ev.AgentLoggedOut(env.now, agent_id))
            yield self._drained
            # Agents still in after-call work log themselves out when it ends (see after_call). Wait for them, or
            # their wrap-up time would be missing from the occupancy and the next day's login would be refused.
            while any(self.engine.agent_state(a) is not AgentState.LOGGED_OUT for a in self.agent_ids):
                yield env.timeout(1.0)

    def drifter(self, drift: Drift, step: float = 60.0) -> Generator[simpy.Event, Any, None]:
        """Moves the live-answer threshold and the talk-time scale along the shift, once a simulated minute.

        Time within the shift is ``env.now`` within its day over ``shift_seconds``: every day starts afresh, as
        a list worked through each day would (drift then stays at its end value while calls drain)."""
        s = self.scenario
        live0 = s.live_answer_probability
        talk = self._scaled_talk
        while True:
            frac = drift.fraction(self.env.now, s.shift_seconds)
            live = drift.live_answer(live0, frac)
            self._cum = (live, live + s.machine_probability, live + s.machine_probability + s.busy_probability)
            if talk is not None:
                talk.scale = drift.talk_scale(frac)
            yield self.env.timeout(step)

    def _count(self) -> None:
        """Credit the dials and live answers since the last count to the bin that count was made in."""
        tot = self.engine.stats.totals
        since, dials, live = self._counted
        b = min(int(since // SERIES_BIN), self._bins - 1)
        self._dial_bins[b] += tot.dials - dials
        self._live_bins[b] += tot.live_answers - live
        self._counted = (self.env.now, tot.dials, tot.live_answers)

    def monitor(self, interval: float = 60.0) -> Generator[simpy.Event, Any, None]:
        """Samples the floor every minute for the occupancy time series, and counts dials and live answers."""
        env = self.env
        counts = self.engine.agent_counts
        while True:
            self._count()
            logged = sum(counts.values()) - counts[AgentState.LOGGED_OUT]
            if logged:
                b = min(int(env.now // SERIES_BIN), self._bins - 1)
                self._occ_busy[b] += (counts[AgentState.ON_CALL] + counts[AgentState.WRAP_UP]) / logged
                self._occ_talk[b] += counts[AgentState.ON_CALL] / logged
                self._occ_n[b] += 1
            yield env.timeout(interval)

    # -- running ---------------------------------------------------------------------------------------

    def run(self) -> ReplicationResult:
        env = self.env
        if self.scenario.drift is not None:
            env.process(self.drifter(self.scenario.drift))
        done = env.process(self.shift())
        env.process(self.monitor())
        env.run(until=done)
        self._count()
        stats = self.engine.stats
        tot = stats.totals
        days = [
            {
                "day": d,
                "dials": stats.days[d].dials if d in stats.days else 0,
                "live_answers": stats.days[d].live_answers if d in stats.days else 0,
                "machine_answers": stats.days[d].machine_answers if d in stats.days else 0,
                "abandoned": stats.days[d].abandoned if d in stats.days else 0,
            }
            for d in range(self.scenario.days)
        ]
        with np.errstate(invalid="ignore", divide="ignore"):
            occ = np.where(self._occ_n > 0, self._occ_busy / self._occ_n, np.nan)
            talk = np.where(self._occ_n > 0, self._occ_talk / self._occ_n, np.nan)
        return ReplicationResult(
            index=self.replication,
            totals={k: getattr(tot, k) for k in tot.__dataclass_fields__},
            agent_seconds={s.value: v for s, v in stats.agent_seconds.items()},
            idle_gaps=stats.idle_gaps,
            idle_gap_seconds=stats.idle_gap_seconds,
            days=days,
            series={
                "occupancy": occ.tolist(),
                "talk": talk.tolist(),
                "dials": [float(n) for n in self._dial_bins],
                "live_answers": [float(n) for n in self._live_bins],
            },
            stale_events=self.engine.stale_events,
            sim_seconds=env.now,
            answers=sorted(self._answers),
            inbound=sorted(self._inbound),
            group_seconds={
                g.value: {st.value: v for st, v in seconds.items()}
                for g, seconds in stats.group_seconds.items()
                if any(group is g for _, group in self.agent_groups)
            },
            inbound_handle_time=stats.inbound.handle_time,
            inbound_talk_seconds=stats.inbound.talk_seconds,
            inbound_balked=self._balked,
            inbound_blocked=stats.inbound.blocked,
        )


class _ScaledSampler(Sampler):
    """A sampler whose draws are stretched by a factor that the drift process moves while the campaign runs."""

    __slots__ = ("_inner", "scale")

    def __init__(self, inner: Sampler) -> None:  # the parent's slots stay unused: draws come from ``inner``
        self._inner = inner
        self.scale = 1.0

    def __call__(self) -> float:
        return self._inner() * self.scale


class _Uniforms:
    """Batched U(0,1) draws."""

    __slots__ = ("_buf", "_rng")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf: list[float] = []

    def __call__(self) -> float:
        if not self._buf:
            self._buf = self._rng.random(4096).tolist()
        return self._buf.pop()


def run_replication(scenario: Scenario, index: int) -> ReplicationResult:
    """Run replication ``index`` of ``scenario`` (a top-level function, so process pools can pickle it)."""
    return SimulatedCampaign(scenario, index).run()
