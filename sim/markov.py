"""The exact optimum of the Markov call-flow model, as a constrained MDP solved by linear programming.

Why: every pacing claim needs a yardstick. In the Markov model of docs/pacing.md (every dial rings for an
exponential time, then a person answers with probability ``p`` or nobody does; talk plus wrap is exponential; an
answer with no free agent is abandoned at once) the best possible policy can be computed, so "how far from
optimal is our pacing" has an exact answer there.

Formulation. The state is ``(b, r)``: busy agents and ringing calls. After every event the controller may launch
calls, i.e. move instantly to a *post-decision* state ``(b, r')`` with ``r' >= r``; time passes only in
post-decision states, where agents finish at rate ``b mu`` and calls stop ringing at rate ``r gamma``. The
occupation-measure LP has a variable ``x(y)`` for the share of time spent in each post-decision state ``y`` and
``z(s, y)`` for the rate of decisions taken from pre-decision state ``s`` to ``y``:

* flow out of ``y`` equals the decisions into it: ``q(y) x(y) = sum_s z(s, y)``;
* decisions taken at ``s`` equal the event flow into it: ``sum_y z(s, y) = sum_y' x(y') rate(y' -> s)``;
* ``sum x = 1``; abandonment ``sum x(y) r gamma p [b = N] <= alpha sum x(y) r gamma p``;
* maximise occupancy ``sum x(y) b / N`` (equal, by flow balance, to connections per unit time / (N mu)).

HiGHS (through :func:`scipy.optimize.linprog`) solves 20 agents in seconds. The optimal policy may randomise in
at most one state per binding constraint, as constrained MDPs do; :func:`evaluate` computes any policy's exact
long-run figures from the stationary distribution, which tests use to check the LP against brute force.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from dialer.errors import ConfigError, DialerError

FloatArray = npt.NDArray[np.float64]


class OptimumError(DialerError):
    """The LP could not be solved (infeasible, or the solver failed): no optimum to compare against."""


@dataclass(frozen=True)
class MarkovModel:
    """The Markov call-flow model (scenario 1 of the benchmark notes).

    ``max_ringing`` truncates the state space; the default leaves room well beyond what an optimal policy rings
    (:attr:`Solution.truncation_mass` tells whether it bound).
    """

    agents: int
    answer_probability: float = 0.3
    mean_ring: float = 15.0
    mean_handle: float = 120.0
    max_ringing: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.agents, bool) or not isinstance(self.agents, int) or not 1 <= self.agents <= 200:
            raise ConfigError("agents", f"must be an integer between 1 and 200, got {self.agents!r}")
        if not 0.0 < self.answer_probability <= 1.0:
            raise ConfigError("answer_probability", "must be in (0, 1]")
        if not self.mean_ring > 0 or not self.mean_handle > 0:
            raise ConfigError("mean_ring", "mean ring and handle times must be > 0")
        if self.max_ringing is not None and self.max_ringing < 1:
            raise ConfigError("max_ringing", "must be >= 1")

    @property
    def ringing_cap(self) -> int:
        if self.max_ringing is not None:
            return self.max_ringing
        return math.ceil(1.5 * self.agents / self.answer_probability) + 4

    def scenario(self, **changes: Any) -> Any:
        """The same model as a simulator scenario, so simulated policies run on exactly this call flow."""
        from sim import scenario as scenarios
        from sim.distributions import parse_distribution

        return scenarios.default().replace(
            name=f"markov-{self.agents}-p{self.answer_probability:g}",
            agents=self.agents,
            live_answer_probability=self.answer_probability,
            machine_probability=0.0,
            busy_probability=0.0,
            time_to_answer=parse_distribution("", {"dist": "exponential", "mean": self.mean_ring}),
            no_answer_after=parse_distribution("", {"dist": "exponential", "mean": self.mean_ring}),
            talk_time=parse_distribution("", {"dist": "exponential", "mean": self.mean_handle}),
            wrap_time=parse_distribution("", {"dist": "fixed", "value": 0}),
            connect_limit=0.0,
            pause_probability=0.0,
            **changes,
        )


@dataclass
class Solution:
    """The LP optimum: long-run figures and the optimal (possibly randomised) launch policy.

    ``policy[b, r, r']`` is the probability of moving to ``r'`` ringing calls from pre-decision state ``(b, r)``.
    """

    model: MarkovModel
    alpha: float
    occupancy: float
    abandon_rate: float
    answer_rate: float
    connects_per_agent_hour: float
    policy: FloatArray
    occupation: FloatArray
    truncation_mass: float
    solve_seconds: float
    variables: int


@dataclass(frozen=True)
class Evaluation:
    """Exact long-run figures of a stationary policy on the Markov model."""

    occupancy: float
    abandon_rate: float
    answer_rate: float
    occupation: FloatArray


def _events(model: MarkovModel, b: int, r: int) -> list[tuple[int, int, float, bool]]:
    """Events out of post-decision state ``(b, r)``: (next b, next r, rate, is an abandonment)."""
    n = model.agents
    mu = 1.0 / model.mean_handle
    gamma = 1.0 / model.mean_ring
    p = model.answer_probability
    out: list[tuple[int, int, float, bool]] = []
    if b:
        out.append((b - 1, r, b * mu, False))
    if r:
        if b < n:
            out.append((b + 1, r - 1, r * gamma * p, False))
        else:
            out.append((b, r - 1, r * gamma * p, True))
        if p < 1.0:
            out.append((b, r - 1, r * gamma * (1.0 - p), False))
    return out


def _figures(model: MarkovModel) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per post-decision state: busy share, live-answer rate, abandonment rate (flattened ``b * (cap+1) + r``)."""
    n, cap = model.agents, model.ringing_cap
    b, r = np.meshgrid(np.arange(n + 1), np.arange(cap + 1), indexing="ij")
    gamma_p = model.answer_probability / model.mean_ring
    answer = (r * gamma_p).ravel().astype(float)
    abandon = np.where(b == n, r * gamma_p, 0.0).ravel().astype(float)
    return (b / n).ravel().astype(float), answer, abandon


def occupation_lp(
    ny: int,
    nr: int,
    flows: list[tuple[int, int, float]],
    busy: FloatArray,
    answer: FloatArray,
    abandon: FloatArray,
    alpha: float,
    *,
    closed: list[int],
    forbidden: list[int] | None = None,
) -> Any:
    """The occupation-measure LP of a launch-by-steps Markov floor, solved by HiGHS (the ``linprog`` result).

    States are numbered so that ``y + 1`` is ``y`` with one more call ringing, ``y % nr`` the calls ringing (of at
    most ``nr - 1``). ``flows`` are the events out of each post-decision state: (from, to, rate). ``busy``,
    ``answer`` and ``abandon`` are per post-decision state; abandonment is held to ``alpha`` x answers. ``closed``:
    states where time may not pass (an empty, idle floor would stay so forever); ``forbidden``: states the policy
    may never be in. Variables: x(y) [0, ny), stop(s) [ny, 2ny), launch(s) [2ny, 3ny); :func:`solve` and
    ``benchmarks.pacing_rolling_bound`` (the same floor with a cooldown after each abandonment) share it.
    """
    from scipy import sparse
    from scipy.optimize import linprog

    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    q = np.zeros(ny)
    for y, s, rate in flows:
        q[y] += rate
        rows.append(ny + s)  # event flow into pre-decision state s
        cols.append(y)
        vals.append(-rate)
    idx = np.arange(ny)
    # Rows [0, ny): q(y) x(y) - stop(y) = 0.
    rows += idx.tolist() + idx.tolist()
    cols += idx.tolist() + (ny + idx).tolist()
    vals += q.tolist() + [-1.0] * ny
    # Rows [ny, 2ny): stop(s) + launch(s) - launch(s - one call) - event inflow(s) = 0.
    rows += (ny + idx).tolist() + (ny + idx).tolist()
    cols += (ny + idx).tolist() + (2 * ny + idx).tolist()
    vals += [1.0] * (2 * ny)
    r_of = idx % nr
    has_prev = idx[r_of > 0]
    rows += (ny + has_prev).tolist()
    cols += (2 * ny + has_prev - 1).tolist()
    vals += [-1.0] * has_prev.size
    # Row 2ny: normalisation.
    rows += [2 * ny] * ny
    cols += idx.tolist()
    vals += [1.0] * ny
    a_eq = sparse.csr_matrix((vals, (rows, cols)), shape=(2 * ny + 1, 3 * ny))
    b_eq = np.zeros(2 * ny + 1)
    b_eq[-1] = 1.0
    zeros = np.zeros(2 * ny)
    a_ub = sparse.csr_matrix(np.concatenate([abandon - alpha * answer, zeros])[None, :])
    c = np.concatenate([-busy, zeros])
    bounds = np.zeros((3 * ny, 2))
    bounds[:, 1] = np.inf
    for y in closed:
        bounds[y, 1] = 0.0
        bounds[ny + y, 1] = 0.0
    bounds[2 * ny + idx[r_of == nr - 1], 1] = 0.0  # nobody launches beyond the cap
    if forbidden:
        bounds[np.array(forbidden, dtype=int), 1] = 0.0
    return linprog(c, A_ub=a_ub, b_ub=[0.0], A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")


def solve(model: MarkovModel, alpha: float) -> Solution:
    """The policy maximising occupancy with abandoned <= ``alpha`` x answered, by HiGHS.

    Launching is modelled as a chain of one-call steps taken at once: at a pre-decision state the controller
    either stops (time starts passing there) or launches one call and decides again at ``(b, r + 1)``. That is
    the same policy class as choosing ``r'`` directly (the intermediate states are real states), with
    ``3 x states`` variables instead of ``states x cap``, which is what makes 20 agents take seconds.
    Post-decision state ``(0, 0)`` is excluded: an empty, idle floor would stay empty forever.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError("alpha", f"must be in [0, 1], got {alpha}")
    n, cap = model.agents, model.ringing_cap
    nb, nr = n + 1, cap + 1
    ny = nb * nr
    flows: list[tuple[int, int, float]] = []
    for b in range(nb):
        for r in range(nr):
            y = b * nr + r
            flows += [(y, b2 * nr + r2, rate) for b2, r2, rate, _ in _events(model, b, r)]
    busy, answer, abandon = _figures(model)
    start = time.perf_counter()
    res = occupation_lp(ny, nr, flows, busy, answer, abandon, alpha, closed=[0])
    elapsed = time.perf_counter() - start
    if res.status != 0 or res.x is None:
        raise OptimumError(f"LP not solved for {model}: {res.message}")
    x = np.maximum(res.x[:ny], 0.0)
    stop = np.maximum(res.x[ny : 2 * ny], 0.0)
    launch = np.maximum(res.x[2 * ny :], 0.0)
    flow = stop + launch
    # States the optimum (almost) never passes through get the progressive decision, a safe default.
    prog = progressive_policy(model).ravel()
    seen = flow > 1e-9 * max(float(flow.max()), 1e-300)
    decision = np.where(seen, np.divide(launch, flow, out=np.zeros_like(flow), where=flow > 0), prog)
    ans = float(answer @ x)
    occ = x.reshape(nb, nr)
    return Solution(
        model=model,
        alpha=alpha,
        occupancy=float(busy @ x),
        abandon_rate=float(abandon @ x) / ans if ans > 0 else 0.0,
        answer_rate=ans,
        connects_per_agent_hour=float((answer - abandon) @ x) * 3600.0 / n,
        policy=decision.reshape(nb, nr),
        occupation=occ,
        truncation_mass=float(occ[:, -1].sum()),
        solve_seconds=elapsed,
        variables=3 * ny,
    )


def evaluate(model: MarkovModel, policy: FloatArray) -> Evaluation:
    """Exact long-run occupancy and abandonment of a launch policy (``policy[b, r]`` = probability of launching
    one more call at pre-decision state ``(b, r)``), from the post-decision chain's stationary distribution.

    A policy that can reach the idle, empty floor and stay there has that as its long run: occupancy 0.
    """
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    n, cap = model.agents, model.ringing_cap
    nb, nr = n + 1, cap + 1
    if policy.shape != (nb, nr):
        raise ConfigError("policy", f"must have shape {(nb, nr)}, got {policy.shape}")
    lam = np.clip(policy, 0.0, 1.0).copy()
    lam[:, cap] = 0.0
    ny = nb * nr
    # Where a decision started at (b, r) stops: P(stop at k) = prod_{r<=j<k} lam(b, j) * (1 - lam(b, k)).
    stops: list[list[tuple[int, float]]] = []
    for b in range(nb):
        for r in range(nr):
            out: list[tuple[int, float]] = []
            carry = 1.0
            for k in range(r, nr):
                stay = carry * (1.0 - lam[b, k])
                if stay > 0:
                    out.append((b * nr + k, stay))
                carry *= lam[b, k]
                if carry <= 1e-15:
                    break
            stops.append(out)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for b in range(nb):
        for r in range(nr):
            y = b * nr + r
            for b2, r2, rate, _ in _events(model, b, r):
                for y2, pr in stops[b2 * nr + r2]:
                    rows.append(y)
                    cols.append(y2)
                    vals.append(rate * pr)
                rows.append(y)
                cols.append(y)
                vals.append(-rate)
    gen = sparse.csr_matrix((vals, (rows, cols)), shape=(ny, ny))
    busy, answer, abandon = _figures(model)
    # pi Q = 0 and sum pi = 1: replace one balance equation by the normalisation. States the policy cannot
    # reach from the start get probability 0 (started from its stop state at an empty floor).
    start = stops[0]
    reach = _reachable(gen, [y for y, _ in start])
    keep = np.flatnonzero(reach)
    sub = gen[keep][:, keep].T.tolil()
    sub[0, :] = 1.0
    rhs = np.zeros(keep.size)
    rhs[0] = 1.0
    pi = np.zeros(ny)
    sol = np.atleast_1d(spsolve(sub.tocsc(), rhs))
    if not np.all(np.isfinite(sol)):
        raise OptimumError("the policy's chain has no unique stationary distribution")
    pi[keep] = np.maximum(sol, 0.0)
    pi /= pi.sum()
    ans = float(answer @ pi)
    return Evaluation(
        occupancy=float(busy @ pi),
        abandon_rate=float(abandon @ pi) / ans if ans > 0 else 0.0,
        answer_rate=ans,
        occupation=pi.reshape(nb, nr),
    )


def _reachable(gen: Any, starts: list[int]) -> npt.NDArray[np.bool_]:
    from scipy.sparse.csgraph import breadth_first_order

    reach = np.zeros(gen.shape[0], dtype=bool)
    for s in starts:
        order = breadth_first_order(gen, s, directed=True, return_predecessors=False)
        reach[order] = True
    return reach


def progressive_policy(model: MarkovModel) -> FloatArray:
    """One call ringing per idle agent (launch while ``b + r < N``): the zero-abandonment baseline."""
    n, cap = model.agents, model.ringing_cap
    b, r = np.meshgrid(np.arange(n + 1), np.arange(cap + 1), indexing="ij")
    return ((b + r < n) & (r < cap)).astype(float)
