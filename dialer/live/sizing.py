"""How many SIP workers a campaign needs: the pool follows the agents and the pacing ceiling.

Why this exists: PyPI's pjsua2 wheel holds 4 calls per process, and every customer call takes two of them (the
customer's leg and the leg that bridges it to an agent), while each logged-in agent keeps a standing leg. A fixed
``workers = 1`` therefore holds 2 customer calls at most (1 once an agent's leg is parked there), and a 3-agent
campaign left agents idle without a word. So, unless the campaign file sets ``[pool] workers``, ``dialer run``
sizes the pool here, and it warns at start when a set size cannot give every agent even one call.

The rule (:func:`size_pool`)::

    slots   = agents x agent_slots + customer_calls x legs_per_call
    workers = ceil(slots / calls_per_worker)       (raised until the per-worker split really holds them)

with ``customer_calls = ceil(agents x lines_per_agent(policy))``, at most the trunk's ``max_calls``.
``agent_slots`` is what the driver reserves per agent on its host worker (:data:`dialer.sip.driver.AGENT_SLOTS`
when agents hold standing legs, 0 when the agent is called per connect). :func:`lines_per_agent` is the most
customer calls per agent the pacing policy may keep in flight: 1 for progressive, ``ratio`` for power, the
policy's ceiling parameter when the campaign sets it, else :data:`ADAPTIVE_LINES_PER_AGENT` (3) for the adaptive
policies, whose built-in ceilings (5 lines per agent) are safety caps rather than what a floor runs at.

A pool smaller than the ceiling is not wrong, only slower: the driver reports its real capacity and pacing never
launches more calls than it holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Lines per agent the pool is sized for under an adaptive policy (predictive, VICIdial, Webitel, Issabel with
#: over-commit) whose ceiling parameter the campaign leaves at its default. Three lines per agent keep a floor
#: busy down to an answer rate of about one in three; the built-in ceilings (5) exist to stop a runaway
#: estimate, and sizing for them would start two thirds more pjsua2 processes (about 40 MB each) that a normal
#: campaign never fills. Set the policy's ceiling (``max_lines_per_agent``, ``max_level``) or ``[pool] workers``
#: to size for more.
ADAPTIVE_LINES_PER_AGENT = 3.0

#: The parameter that caps each policy's lines per agent (``None``: the policy has none of its own).
CEILINGS: dict[str, str | None] = {
    "predictive": "max_lines_per_agent",
    "vicidial-adaptive": "max_level",
    "vicidial-hard-limit": "max_level",
    "vicidial-tapered": "max_level",
    "vicidial-average": "max_level",
    "webitel": "max_level",
    "issabel": None,
    "issabel-no-overcommit": None,
}


def lines_per_agent(policy: str, params: Mapping[str, Any] | None = None) -> float:
    """The most customer calls per agent ``policy`` (with ``params``) may keep in flight, to size the pool for.

    Progressive dials one call per ready agent, power ``ratio`` per agent. The adaptive policies are sized for
    their ceiling parameter when the campaign sets it, else for :data:`ADAPTIVE_LINES_PER_AGENT` (at most their
    built-in ceiling). Issabel over-commits by the answer rate, floored at ``min_answer_rate``: its ceiling is
    ``1 / min_answer_rate`` lines per agent, and without over-commit it dials one per agent.
    """
    from dialer.pacing import make_policy

    params = dict(params or {})
    built = make_policy(policy, **params)
    if policy == "progressive" or (policy.startswith("issabel") and not getattr(built, "overcommit", False)):
        return 1.0
    if policy == "power":
        return float(built.ratio)  # type: ignore[attr-defined]
    if policy.startswith("issabel"):
        floor = float(getattr(built, "min_answer_rate", 1.0 / ADAPTIVE_LINES_PER_AGENT))
        ceiling = 1.0 / floor
        return ceiling if "min_answer_rate" in params else min(ceiling, ADAPTIVE_LINES_PER_AGENT)
    name = CEILINGS.get(policy)
    if name is None or not hasattr(built, name):
        return ADAPTIVE_LINES_PER_AGENT  # a policy this table does not know: the documented default
    ceiling = float(getattr(built, name))
    return ceiling if name in params else min(ceiling, ADAPTIVE_LINES_PER_AGENT)


def customer_calls(agents: int, lines: float, max_calls: int | None = None) -> int:
    """Customer calls the pool must hold at once: ``agents x lines`` rounded up, at most the trunk's limit."""
    calls = math.ceil(agents * lines - 1e-9)
    return calls if max_calls is None else min(calls, max_calls)


def pool_holds(
    workers: int, agents: int, *, calls_per_worker: int = 4, legs_per_call: int = 2, agent_slots: int = 1
) -> int:
    """Customer calls a pool of ``workers`` holds at once with ``agents`` standing legs parked in it.

    Placed as the driver places them: each agent's leg on the worker with the most room, then each worker
    carries ``(its slots - its agents' slots) // legs_per_call`` calls. A worker's spare slot that is less than a
    call is lost, which is why the ceiling division of :func:`size_pool` alone can come out one worker short.
    """
    room = [calls_per_worker] * workers
    if agent_slots > 0:
        for _ in range(agents):
            best = max(range(workers), key=lambda i: room[i])
            if room[best] < agent_slots:
                break  # no worker has room: that agent gets no standing leg (the driver logs it)
            room[best] -= agent_slots
    return sum(r // legs_per_call for r in room)


def size_pool(
    agents: int,
    lines: float,
    *,
    calls_per_worker: int = 4,
    legs_per_call: int = 2,
    agent_slots: int = 1,
    max_calls: int | None = None,
) -> int:
    """Workers needed for ``agents`` standing legs plus customer calls up to ``agents x lines``.

    ``calls_per_worker``: slots per process (PyPI wheel: 4). ``legs_per_call``: slots per customer call (2: the
    customer's leg and the bridge leg). ``agent_slots``: slots reserved per agent (its standing leg).
    ``max_calls``: the trunk's limit on calls at once, when it has one. Always at least one worker.
    """
    if calls_per_worker < 1 or legs_per_call < 1 or agent_slots < 0 or agents < 0 or lines < 0:
        raise ValueError("size_pool needs calls_per_worker, legs_per_call >= 1 and non-negative counts")
    calls = customer_calls(agents, lines, max_calls)
    slots = agents * agent_slots + calls * legs_per_call
    workers = max(1, math.ceil(slots / calls_per_worker))
    while pool_holds(workers, agents, calls_per_worker=calls_per_worker, legs_per_call=legs_per_call,
                     agent_slots=agent_slots) < calls:  # fmt: skip
        workers += 1
    return workers


@dataclass(frozen=True, slots=True)
class PoolPlan:
    """The pool ``dialer run`` starts, and why: what it was sized for and what it holds."""

    workers: int
    calls_per_worker: int
    agents: int
    agent_slots: int
    legs_per_call: int
    lines_per_agent: float
    wanted: int  # customer calls the pacing ceiling may ask for
    holds: int  # customer calls the pool holds with every agent's leg parked
    automatic: bool  # sized here (True) or set by [pool] workers

    def line(self) -> str:
        """One line for the start of a run."""
        how = "sized for" if self.automatic else "set by [pool] workers;"
        legs = f"{self.agents} agent legs + " if self.agent_slots else ""
        return (
            f"pool: {self.workers} worker(s) x {self.calls_per_worker} calls, holds {self.holds} customer call(s) "
            f"({how} {legs}{self.wanted} customer calls at {self.lines_per_agent:g} per agent)"
        )

    def warning(self) -> str | None:
        """A line when the pool cannot give each agent one call at once (agents would sit idle), else ``None``."""
        if self.holds >= min(self.agents, self.wanted):
            return None
        need = size_pool(
            self.agents, 1.0, calls_per_worker=self.calls_per_worker, legs_per_call=self.legs_per_call,
            agent_slots=self.agent_slots,
        )  # fmt: skip
        return (
            f"warning: [pool] workers = {self.workers} holds {self.holds} customer call(s) at once for "
            f"{self.agents} agents: {self.agents - self.holds} agent(s) will sit idle; set workers >= {need}, "
            "or leave it out to size the pool from the agents and the policy"
        )


def plan_pool(
    agents: int,
    policy: str,
    params: Mapping[str, Any] | None,
    *,
    workers: int | None,
    calls_per_worker: int,
    legs_per_call: int,
    agent_slots: int,
    max_calls: int | None = None,
) -> PoolPlan:
    """The pool for a campaign: ``workers`` when the file sets it, else :func:`size_pool`'s figure."""
    lines = lines_per_agent(policy, params)
    wanted = customer_calls(agents, lines, max_calls)
    automatic = workers is None
    if workers is None:
        workers = size_pool(
            agents, lines, calls_per_worker=calls_per_worker, legs_per_call=legs_per_call, agent_slots=agent_slots,
            max_calls=max_calls,
        )  # fmt: skip
    holds = pool_holds(
        workers, agents, calls_per_worker=calls_per_worker, legs_per_call=legs_per_call, agent_slots=agent_slots
    )
    if max_calls is not None:
        holds = min(holds, max_calls)
    return PoolPlan(workers, calls_per_worker, agents, agent_slots, legs_per_call, lines, wanted, holds, automatic)


__all__ = [
    "ADAPTIVE_LINES_PER_AGENT",
    "PoolPlan",
    "customer_calls",
    "lines_per_agent",
    "plan_pool",
    "pool_holds",
    "size_pool",
]
