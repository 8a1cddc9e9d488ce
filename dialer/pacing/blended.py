"""Blended pacing: outbound dialing with the agents an inbound queue does not need.

A blended floor answers inbound callers first and fills its idle time with outbound dials. Two wrappers here keep
agents back from outbound dialing and hand every other decision to an ordinary outbound policy (predictive,
progressive, power, the VICIdial modes...), which then sees a snapshot with that many fewer ready agents
(:meth:`~dialer.engine.snapshot.Snapshot.holding_back`):

- :class:`Blended` keeps back what the inbound forecast needs. From the inbound arrival rate and handle time
  (observed by the engine, or configured) it finds, by Erlang-C (or Erlang-A, given the callers' mean patience),
  the smallest number of agents N that answers the target share of callers within T seconds (80% in 20 s). The
  agents already serving inbound (inbound-only agents not on a break, blended agents on inbound calls) count
  toward N; the rest of N, plus one agent per caller already waiting, is kept idle. While the reserve is short
  no outbound call is launched for blended agents: an outbound dial that the pacing makes for an agent about to
  come free would take that agent (a person answering an outbound call goes first, see the engine), and the
  reserve would never fill.
- :class:`Threshold` is the published baseline (Bhulai & Koole 2003; Gans & Zhou 2003): keep ``k`` agents idle,
  dial outbound with the others, whatever the inbound load.

The Erlang formulas are here (not in the simulator) because the policy needs them live; ``sim.queueing``
re-exports them for tests and benchmarks. Erlang-A is computed exactly for the M/M/c+M queue: the stationary
birth-death distribution, and for P(answered within T) the tagged caller's passage through the queue by
uniformisation (no special functions, so no SciPy at run time).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from dialer.engine.events import AgentGroup
from dialer.engine.state import AgentState
from dialer.errors import ConfigError
from dialer.pacing.base import PacingPolicy

if TYPE_CHECKING:
    from dialer.engine.records import CallRecord
    from dialer.engine.snapshot import Snapshot


# --- Erlang C and Erlang A ---------------------------------------------------------------------------------


def erlang_b(servers: int, load: float) -> float:
    """Blocking probability of M/M/c/c with ``load`` Erlangs offered (the stable recursion)."""
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(servers: int, load: float) -> float:
    """P(wait > 0) in M/M/c with ``load`` = arrival rate x mean handle time Erlangs; 1 when ``load >= servers``."""
    if servers <= 0 or load >= servers:
        return 1.0
    if load <= 0:
        return 0.0
    b = erlang_b(servers, load)
    return servers * b / (servers - load * (1.0 - b))


def erlang_c_service_level(servers: int, rate: float, handle: float, within: float) -> float:
    """P(wait <= ``within`` s) in M/M/c (callers never give up): ``1 - C e^{-(c - a) T / h}``."""
    load = rate * handle
    if servers <= 0 or load >= servers:
        return 0.0
    return 1.0 - erlang_c(servers, load) * math.exp(-(servers - load) * within / handle)


def erlang_c_asa(servers: int, rate: float, handle: float) -> float:
    """Mean wait of all callers in M/M/c: ``C h / (c - a)`` (inf when unstable)."""
    load = rate * handle
    if servers <= 0 or load >= servers:
        return math.inf
    return erlang_c(servers, load) * handle / (servers - load)


def _birth_death(servers: int, rate: float, mu: float, theta: float) -> np.ndarray:
    """Stationary distribution of the number in an M/M/c+M system, truncated where the tail is negligible."""
    logs = [0.0]
    n = 0
    peak = 0.0
    while True:
        n += 1
        death = min(n, servers) * mu + max(n - servers, 0) * theta
        logs.append(logs[-1] + math.log(rate) - math.log(death))
        peak = max(peak, logs[-1])
        if n > servers and logs[-1] < peak - 40.0 and death > rate:
            break
        if n > servers + 200_000:
            raise ValueError("queue too long to compute (is it stable?)")
    p = np.exp(np.array(logs) - peak)
    return p / p.sum()


def erlang_a(servers: int, rate: float, handle: float, patience: float | None, within: float) -> dict[str, float]:
    """Figures of the M/M/c+M queue (Erlang-A): ``rate`` callers/s, mean ``handle`` s, exponential patience of
    mean ``patience`` s (``None`` or inf: nobody gives up, which is Erlang-C and needs ``rate * handle < c``).

    Returns ``service_level`` (P(answered within ``within`` s), abandoned callers counted against it),
    ``abandon`` (P(hangs up before an agent)) and ``wait_prob`` (P(any wait)).
    """
    if servers <= 0 or rate <= 0:
        return {"service_level": 1.0 if rate <= 0 else 0.0, "abandon": 0.0 if rate <= 0 else 1.0, "wait_prob": 0.0}
    mu = 1.0 / handle
    theta = 0.0 if patience is None or math.isinf(patience) else 1.0 / patience
    if theta == 0.0 and rate * handle >= servers:
        return {"service_level": 0.0, "abandon": 0.0, "wait_prob": 1.0}
    pi = _birth_death(servers, rate, mu, theta)
    queue = pi[servers:]  # arrivals who find k = 0, 1, ... callers waiting ahead of them (PASTA)
    k = np.arange(queue.size)
    abandon = theta * float((k * queue).sum()) / rate
    # The tagged caller with i ahead moves up at rate c mu + i theta (an agent frees or one ahead gives up), is
    # answered from i = 0 at rate c mu, and gives up at rate theta. Uniformise: jumps at rate lam_u.
    lam_u = servers * mu + (queue.size + 1) * theta
    advance = (servers * mu + k * theta) / lam_u
    stay = 1.0 - advance - theta / lam_u
    v = queue.copy()
    lt = lam_u * within
    steps = int(lt + 10.0 * math.sqrt(lt) + 30)
    served = 0.0
    total = 0.0
    log_w = -lt  # Poisson(lt) weight of m jumps, m = 0
    for m in range(steps + 1):
        if m:
            log_w += math.log(lt) - math.log(m)
            served += v[0] * advance[0]
            nv = v * stay
            nv[:-1] += v[1:] * advance[1:]
            v = nv
        total += math.exp(log_w) * served
    waited_within = float(total)  # P(answered after a wait of at most `within`), over arrivals who found a queue
    return {
        "service_level": float(pi[:servers].sum()) + waited_within,
        "abandon": abandon,
        "wait_prob": float(queue.sum()),
    }


def service_level(servers: int, rate: float, handle: float, within: float, patience: float | None = None) -> float:
    """P(answered within ``within`` s) with ``servers`` agents: Erlang-C without patience, Erlang-A with it."""
    if patience is None or math.isinf(patience):
        return erlang_c_service_level(servers, rate, handle, within)
    return erlang_a(servers, rate, handle, patience, within)["service_level"]


def agents_needed(
    rate: float, handle: float, within: float, target: float, patience: float | None = None, limit: int = 10_000
) -> int:
    """The fewest agents that answer the ``target`` share of callers within ``within`` s (0 with no callers).

    A target no number of agents reaches (possible with patience: callers who give up at once) gives ``limit``."""
    if rate <= 0 or handle <= 0:
        return 0
    load = rate * handle
    n = max(1, math.floor(load) + (1 if patience is None else 0))
    while n < limit:
        if service_level(n, rate, handle, within, patience) >= target:
            return n
        n += 1
    return limit


# --- the policies ------------------------------------------------------------------------------------------

#: The campaign's knobs a scenario maps onto a policy by name (``sim.scenario.Scenario.policy_params``), with
#: their types. A reserving policy takes every one (``None``: not given) and hands the outbound policy those it
#: takes. The one list both :class:`Blended` and :class:`Threshold` forward: :func:`_forwarding` writes them into
#: each class's signature, which is what the scenario loader reads to know what a policy accepts.
FORWARDED: tuple[tuple[str, str], ...] = (
    ("target_abandon_rate", "float | None"),
    ("window", "str | None"),
    ("window_hours", "float | None"),
    ("ratio", "float | None"),
    ("drop_limit", "float | None"),
    ("dialing_day_end", "float | None"),
    ("shift_hours", "float | None"),
)
_FORWARDED_NAMES = frozenset(name for name, _ in FORWARDED)

_P = TypeVar("_P", bound=type)


def _forwarding(cls: _P) -> _P:
    """Give ``cls`` (whose ``__init__`` ends in ``**campaign``) a signature that lists :data:`FORWARDED` as
    keyword parameters defaulting to ``None``, in place of ``**campaign``: ``inspect.signature(cls)`` then shows
    the knobs by name, so the scenario maps them and refuses a ``[pacing]`` key that is none of them, as it does
    for a policy that spells its parameters out."""
    own = inspect.signature(cls.__init__)  # type: ignore[misc]
    params = [p for name, p in own.parameters.items() if name != "self" and p.kind is not p.VAR_KEYWORD]
    keyword = inspect.Parameter.KEYWORD_ONLY
    params += [inspect.Parameter(name, keyword, default=None, annotation=kind) for name, kind in FORWARDED]
    cls.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    return cls


class _Reserving(PacingPolicy):
    """Keeps ``reserve(snap)`` agents back from an outbound policy and forwards every other call to it."""

    def __init__(self, outbound: str, campaign: dict[str, Any], extra: dict[str, Any] | None) -> None:
        from dialer.pacing import POLICIES, make_policy  # the registry imports this module

        if outbound in ("blended", "threshold") or outbound not in POLICIES:
            raise ConfigError("outbound", f"must name an outbound policy, got {outbound!r}")
        unknown = sorted(set(campaign) - _FORWARDED_NAMES)
        if unknown:
            raise ConfigError(unknown[0], f"unknown parameter for {type(self).name!r}")
        factory = POLICIES[outbound]
        accepted = inspect.signature(getattr(factory, "func", factory)).parameters
        params = {k: v for k, v in campaign.items() if v is not None and k in accepted}
        params.update(extra or {})
        self.outbound: PacingPolicy = make_policy(outbound, **params)
        self.held = 0  # agents kept back at the last decision (for reports and tests)

    def reserve(self, snap: Snapshot) -> int:
        raise NotImplementedError

    def decide(self, snap: Snapshot) -> int:
        reserve = max(0, self.reserve(snap))
        blended_ready = snap.group(AgentGroup.BLENDED)[AgentState.READY]
        self.held = min(reserve, blended_ready)
        if reserve > blended_ready:
            # The reserve is short: blended agents are all kept for inbound until it fills. Outbound-only agents
            # (if any) are still dialed for.
            outbound_only = snap.group(AgentGroup.OUTBOUND)
            if not (outbound_only[AgentState.READY] + outbound_only[AgentState.ON_CALL]):
                return 0
        return self.outbound.decide(snap.holding_back(self.held))

    def next_wakeup(self, now: float) -> float | None:
        return self.outbound.next_wakeup(now)

    def observe(self, record: CallRecord) -> None:
        self.outbound.observe(record)

    def observe_answer(self, answered_at: float, rang: float) -> None:
        self.outbound.observe_answer(answered_at, rang)

    def launched(self, now: float, requested: int, placed: int) -> None:
        self.outbound.launched(now, requested, placed)

    def observe_wrap_up(self, now: float, seconds: float, paused: bool) -> None:
        self.outbound.observe_wrap_up(now, seconds, paused)


def _number(name: str, value: Any, lo: float, hi: float = math.inf, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(name, f"must be a number from {lo:g} to {hi:g}, got {value!r}")


@_forwarding
class Blended(_Reserving):
    """Outbound pacing (``outbound``, predictive by default) with the agents the inbound forecast does not need.

    ``service_level_target`` of the callers answered within ``service_level_seconds``; the arrival rate and the
    handle time (talk plus wrap-up) are the engine's observations of the last ``recent_window`` (an hour by
    default), or ``arrival_rate_per_hour`` and ``handle_time`` when given (> 0). ``patience``: the callers'
    mean patience in seconds, for Erlang-A (0: Erlang-C, nobody gives up, the cautious choice). The staffing is
    recomputed when the load moves by more than 2% or every ``refresh`` seconds.

    ``reserve_rule`` says how many of the N to keep idle. ``"spare"`` (the default): N - a, where a = rate x
    handle is the load, i.e. the idle agents an Erlang-staffed team of N has on average: a threshold (as
    :class:`Threshold`'s k) derived from the target and the observed load instead of tuned by hand.
    ``"dedicated"``: N minus the agents on inbound calls right now, a team of N that serves inbound at every
    moment. It keeps more agents idle exactly when inbound is quiet, and measures worse (docs/blending.md).
    ``outbound_params`` go to the outbound policy, as do the campaign's knobs it takes (``target_abandon_rate``...).
    """

    name = "blended"

    def __init__(
        self,
        outbound: str = "predictive",
        service_level_target: float = 0.8,
        service_level_seconds: float = 20.0,
        arrival_rate_per_hour: float = 0.0,
        handle_time: float = 0.0,
        patience: float = 0.0,
        prior_handle_time: float = 180.0,
        refresh: float = 60.0,
        reserve_rule: str = "spare",
        freeing_credit: float = 0.0,
        prior_talk_time: float = 120.0,
        prior_wrap_time: float = 15.0,
        outbound_params: dict[str, Any] | None = None,
        **campaign: Any,
    ) -> None:
        _number("service_level_target", service_level_target, 0.0, 0.9999)
        _number("service_level_seconds", service_level_seconds, 0.0, 3600.0)
        _number("arrival_rate_per_hour", arrival_rate_per_hour, 0.0, 1e6)
        _number("handle_time", handle_time, 0.0, 86400.0)
        _number("patience", patience, 0.0, 86400.0)
        _number("prior_handle_time", prior_handle_time, 1.0, 86400.0)
        _number("refresh", refresh, 1.0, 86400.0)
        _number("freeing_credit", freeing_credit, 0.0, 1.0)
        _number("prior_talk_time", prior_talk_time, 1.0, 86400.0)
        _number("prior_wrap_time", prior_wrap_time, 0.0, 86400.0)
        super().__init__(outbound, campaign, outbound_params)
        self.target = float(service_level_target)
        self.within = float(service_level_seconds)
        self.rate = arrival_rate_per_hour / 3600.0
        self.handle = float(handle_time)
        self.patience = float(patience) if patience > 0 else None
        self.prior_handle = float(prior_handle_time)
        self.refresh = float(refresh)
        if reserve_rule not in ("spare", "dedicated"):
            raise ConfigError("reserve_rule", f"must be 'spare' or 'dedicated', got {reserve_rule!r}")
        self.rule = reserve_rule
        self.credit = float(freeing_credit)
        # Outbound talk and wrap-up as observed (count, sum), started from the priors as one call's worth of
        # evidence each: what the freeing estimate reads.
        self._talk = [1.0, float(prior_talk_time)]
        self._wrap = [1.0, float(prior_wrap_time)]
        self._load: float | None = None
        self._at = -math.inf
        self.needed = 0  # agents the inbound forecast needs (N), at the last recomputation
        self.freeing = 0.0  # blended agents expected free from outbound work within T, at the last decision

    def forecast(self, snap: Snapshot) -> tuple[float, float]:
        """(arrival rate per second, handle time in seconds) the staffing is computed for."""
        s = snap.stats.inbound
        rate = self.rate if self.rate > 0 else s.arrival_rate(snap.now)
        if self.handle > 0:
            handle = self.handle
        elif s.handled >= 20 and math.isfinite(s.handle_time):
            handle = s.handle_time
        else:
            handle = self.prior_handle
        return (0.0 if math.isnan(rate) else rate), handle

    def observe(self, record: CallRecord) -> None:
        if record.connected_at is not None:  # an outbound conversation: its length, for the freeing estimate
            self._talk[0] += 1.0
            self._talk[1] += max(0.0, record.ended_at - record.connected_at)
        super().observe(record)

    def observe_wrap_up(self, now: float, seconds: float, paused: bool) -> None:
        self._wrap[0] += 1.0  # the engine reports outbound wrap-ups only (inbound ones are the handle time's)
        self._wrap[1] += max(0.0, seconds)
        super().observe_wrap_up(now, seconds, paused)

    def expected_freeing(self, snap: Snapshot) -> float:
        """Blended agents busy with outbound work now that are expected to be free within T seconds: outside the
        Erlang team (which counts only inbound work), yet an inbound caller arriving now is answered within T by
        one of them as surely as by an idle agent, unless an outbound person takes it first.

        An agent talking to an outbound person frees when the rest of the call and its wrap-up are over: with the
        observed mean talk h and wrap-up w, taken as memoryless for the rest of the talk and as w for the wrap-up,
        that is within T with probability 1 - exp(-(T - w) / h) (0 when w >= T). An agent in outbound wrap-up
        frees within T with probability 1 - exp(-T / w). Blended agents in wrap-up are not told apart by the
        call they follow: the outbound share of them is taken as that of the blended agents' calls now."""
        blended = snap.group(AgentGroup.BLENDED)
        inbound_only = snap.group(AgentGroup.INBOUND)
        on_inbound = max(0, snap.inbound_connected - inbound_only[AgentState.ON_CALL])
        talking = max(0, blended[AgentState.ON_CALL] - on_inbound)
        share = talking / (talking + on_inbound) if talking + on_inbound else 1.0
        wrapping = blended[AgentState.WRAP_UP] * share
        talk = self._talk[1] / self._talk[0]
        wrap = self._wrap[1] / self._wrap[0]
        p_talk = 1.0 - math.exp(-(self.within - wrap) / talk) if self.within > wrap and talk > 0 else 0.0
        p_wrap = 1.0 - math.exp(-self.within / wrap) if wrap > 0 else 1.0
        return talking * p_talk + wrapping * p_wrap

    def reserve(self, snap: Snapshot) -> int:
        rate, handle = self.forecast(snap)
        load = rate * handle
        moved = self._load is None or abs(load - self._load) > 0.02 * max(self._load, 0.05)
        if moved or snap.now - self._at >= self.refresh:
            self.needed = agents_needed(rate, handle, self.within, self.target, self.patience)
            self._load = load
            self._at = snap.now
        inbound_only = snap.group(AgentGroup.INBOUND)
        serving = sum(inbound_only.values()) - inbound_only[AgentState.PAUSED] - inbound_only[AgentState.LOGGED_OUT]
        # Agents about to come free from outbound work stand in for part of the reserve (freeing_credit: how much
        # of each; 0 keeps the reserve as the Erlang team alone says).
        self.freeing = self.expected_freeing(snap) if self.credit > 0 else 0.0
        if self.rule == "spare":
            # N - a: the agents an Erlang staffing of N has free on average beyond the load a, kept idle. The load
            # falls first on inbound-only agents; only what they cannot carry is the blended agents' to spare.
            spare = math.ceil(self.needed - max(load, serving) - self.credit * self.freeing - 1e-9)
        else:  # dedicated: N agents serving inbound at every moment, busy on an inbound call or kept idle
            blended_on_inbound = snap.inbound_connected - inbound_only[AgentState.ON_CALL]
            spare = math.ceil(self.needed - serving - blended_on_inbound - self.credit * self.freeing - 1e-9)
        return max(0, spare) + snap.inbound_queued

    def describe(self) -> dict[str, Any]:
        return {
            "needed": self.needed,
            "held": self.held,
            "freeing": self.freeing,
            "outbound": type(self.outbound).__name__,
        }


@_forwarding
class Threshold(_Reserving):
    """The published threshold baseline: dial outbound (with ``outbound``, progressive by default) only with the
    ready agents beyond ``k``, plus one more kept back for each inbound caller already waiting."""

    name = "threshold"

    def __init__(
        self,
        k: int = 1,
        outbound: str = "progressive",
        outbound_params: dict[str, Any] | None = None,
        **campaign: Any,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 100_000:
            raise ConfigError("k", f"must be an integer >= 0, got {k!r}")
        super().__init__(outbound, campaign, outbound_params)
        self.k = k

    def reserve(self, snap: Snapshot) -> int:
        return self.k + snap.inbound_queued


#: For the registry: name -> factory.
BLENDED_POLICIES: dict[str, Callable[..., PacingPolicy]] = {"blended": Blended, "threshold": Threshold}
