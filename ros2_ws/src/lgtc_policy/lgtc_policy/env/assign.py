"""Exact oracle for the agent-to-consumer assignment MIQP, eq. (3) of the paper.

    min_a  ||de - a^T so||^2 + sum_i c[i, a_i]     (c: ``costs.linear_costs``, the l2 term)
    s.t.   every agent to exactly one consumer, every consumer >= 1 agent, a binary.

Method: branch and bound over agents with a Lagrangian bound that is exact to evaluate.
For any multiplier lambda (M x r) and g = de - lambda / 2 the objective splits exactly into

    F(a) = sum_jl (lambda_jl de_jl - lambda_jl^2 / 4)          constant K(lambda)
         + sum_i (c[i, a_i] - lambda_{a_i} . so_i)             reduced costs, separable
         + sum_jl (g_jl - x_jl)^2,   x = a^T so                residual quadratic

(since (de - x)^2 = lambda (de - x) - lambda^2/4 + (de - x - lambda/2)^2). A node with agents
F fixed and U free is bounded below by K + the fixed reduced costs + sum over U of the
cheapest reduced cost (+ the cheapest extra cost of covering the consumers still empty) + the
water-filling minimum of the residual over x >= fixed loads with the right total per type.
lambda = 2 (de - x*) from the convex relaxation (OSQP) makes the root bound the relaxation's
value; it is re-used unchanged in every node, so bounds cost a few vector ops, evaluated for
whole blocks of nodes at once (depth-first over blocks). The incumbent starts from the rounded
relaxation improved by local search. ``gap`` stops with a proven relative gap; ``time_limit``
returns the best-known assignment with its proven lower bound.

When that search does not finish within a tenth of the time (large N * M: the relaxation
fits the loads with fractional agents and sits 5-10 % below the optimum), the bound comes
from the Lagrangian decomposition over consumers of ``assign_bound`` (every consumer's load
made of whole agents; its best value is the set-partitioning LP's), whose subproblems also
yield assignments; then pair re-optimisation of the incumbent and the search again with
what time is left. The bound returned is the best of those proven.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import osqp
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from lgtc_policy.env.assign_bound import lagrangian_bound
from lgtc_policy.env.costs import linear_costs, objective
from lgtc_policy.env.spec import EnvError

_SMALL = 64  # N * M up to which the free incumbent multiplier is tried first
_PROBE = 0.1  # share of the time left for the first search with the relaxation's multiplier
_LAGRANGE = 0.85  # share of the time left then for the Lagrangian decomposition's bound


class AssignmentError(EnvError, ValueError):
    """Invalid input to the assignment oracle (the message names the argument)."""


@dataclass(frozen=True)
class AssignResult:
    """Result of :func:`solve_assignment`.

    Attributes:
        assignment: (N,) int64 consumer index of each agent (best known).
        objective: l1 + l2 of ``assignment``.
        lower_bound: proven lower bound on the optimum.
        gap: proven relative gap (objective - lower_bound) / objective, >= 0; 0 when the two
            agree to 1e-12 absolute (an optimum at 0). The objective and the bound are >= 0.
        optimal: True when the search finished with ``gap <= gap_tol`` proven.
        status: 'optimal', 'gap' (stopped at the requested gap) or 'time_limit'.
        nodes: branch-and-bound nodes evaluated.
        solve_time: seconds.
    """

    assignment: np.ndarray
    objective: float
    lower_bound: float
    gap: float
    optimal: bool
    status: str
    nodes: int
    solve_time: float


# ---------------------------------------------------------------------------------------------
# input checks, relaxation, local search
# ---------------------------------------------------------------------------------------------


def _check(supply, demand, cost) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    so = np.asarray(supply, dtype=np.float64)
    de = np.asarray(demand, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    if so.ndim != 2 or de.ndim != 2 or so.shape[1] != de.shape[1]:
        raise AssignmentError(
            f"supply must be (N, r) and demand (M, r); got {so.shape} and {de.shape}"
        )
    N, M = so.shape[0], de.shape[0]
    if c.shape != (N, M):
        raise AssignmentError(f"cost must be (N, M) = ({N}, {M}); got {c.shape}")
    if N < 1 or M < 1:
        raise AssignmentError("need at least one agent and one consumer")
    for name, x in (("supply", so), ("demand", de), ("cost", c)):
        if not np.isfinite(x).all():
            raise AssignmentError(f"{name} contains NaN/inf")
    if (so < 0).any() or (de < 0).any():
        raise AssignmentError("supply and demand must be >= 0")
    return so, de, c


def relaxation_multipliers(
    supply: np.ndarray, demand: np.ndarray, cost: np.ndarray, cover: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Solve the convex relaxation of eq. (3) (a in [0, 1]) with OSQP.

    Returns (lambda (M, r) = 2 (de - x*), a* (N, M)). Any lambda gives a valid bound, so the
    solver's accuracy only affects the bound's tightness, never its validity.
    """
    N, r = supply.shape
    M = demand.shape[0]
    nA, nT = N * M, M * r
    # variables: a (N*M, row-major i, j), t (M*r, row-major j, l) = de - a^T so;
    # A is assembled from index arrays (scipy's block constructors cost milliseconds)
    ii, jj = np.meshgrid(np.arange(N), np.arange(M), indexing="ij")
    col_a = (ii * M + jj).reshape(-1)
    jl = np.arange(nT)
    rows = np.concatenate(
        [
            ii.reshape(-1),  # sum_j a_ij = 1
            N + jj.reshape(-1),  # sum_i a_ij >= 1
            N + M + (jj[:, :, None] * r + np.arange(r)).reshape(-1),  # loads
            N + M + jl,  # + t_jl
            N + M + nT + np.arange(nA),  # 0 <= a <= 1
        ]
    )
    cols = np.concatenate([col_a, col_a, np.repeat(col_a, r), nA + jl, np.arange(nA)])
    vals = np.concatenate(
        [
            np.ones(2 * nA),
            np.broadcast_to(supply[:, None, :], (N, M, r)).reshape(-1),
            np.ones(nT + nA),
        ]
    )
    A = sp.csc_matrix((vals, (rows, cols)), shape=(N + M + nT + nA, nA + nT))
    P = sp.csc_matrix((np.full(nT, 2.0), (nA + jl, nA + jl)), shape=(nA + nT, nA + nT))
    q = np.concatenate([cost.reshape(-1), np.zeros(nT)])
    de = demand.reshape(-1)
    lo = np.concatenate([np.ones(N), np.full(M, 1.0 if cover else 0.0), de, np.zeros(nA)])
    hi = np.concatenate([np.ones(N), np.full(M, np.inf), de, np.ones(nA)])
    solver = osqp.OSQP()
    solver.setup(
        P, q, A, lo, hi, verbose=False, eps_abs=1e-7, eps_rel=1e-7, max_iter=4000, polishing=True
    )
    res = solver.solve(raise_error=False)
    a = np.asarray(res.x[:nA], dtype=np.float64).reshape(N, M)
    if not np.isfinite(a).all():
        a = np.full((N, M), 1.0 / M)
    a = np.clip(a, 0.0, 1.0)
    x = a.T @ supply
    return 2.0 * (demand - x), a


def _counts(a: np.ndarray, M: int) -> np.ndarray:
    return np.bincount(a, minlength=M)


def _repair(a: np.ndarray, cost: np.ndarray, M: int) -> np.ndarray:
    """Move the cheapest agents into empty consumers (needs N >= M)."""
    a = a.copy()
    for _ in range(M):
        cnt = _counts(a, M)
        empty = np.flatnonzero(cnt == 0)
        if empty.size == 0:
            break
        j = empty[0]
        donors = cnt[a] >= 2
        extra = np.where(donors, cost[:, j] - cost[np.arange(len(a)), a], np.inf)
        a[int(np.argmin(extra))] = j
    return a


def local_search_np(
    a: np.ndarray, supply: np.ndarray, demand: np.ndarray, cost: np.ndarray, cover: bool
) -> np.ndarray:
    """Best-improvement single moves and pair swaps (same neighbourhood as assign_local)."""
    N, M = cost.shape
    a = a.copy()
    s2 = (supply * supply).sum(1)
    ar = np.arange(N)
    gram = supply @ supply.T
    dss = s2[:, None] + s2[None, :] - 2 * gram
    for _ in range(50 * N):
        load = np.zeros_like(demand)
        np.add.at(load, a, supply)
        R = demand - load
        Rs = supply @ R.T  # (N, M) R_j . s_i
        Rs_own = Rs[ar, a]
        c_own = cost[ar, a]
        cnt = _counts(a, M)
        dmove = (2 * Rs_own + 2 * s2)[:, None] - 2 * Rs + cost - c_own[:, None]
        can = (cnt[a] >= 2) if cover else np.ones(N, dtype=bool)
        dmove[~can] = np.inf
        dmove[ar, a] = np.inf
        im = np.unravel_index(np.argmin(dmove), dmove.shape)
        Rs_ik = Rs[:, a]  # [i, k] = R_{a_k} . s_i
        c_ik = cost[:, a]
        dot = Rs_own[:, None] - Rs_ik.T - Rs_ik + Rs_own[None, :]
        dswap = 2 * dot + 2 * dss + c_ik + c_ik.T - c_own[:, None] - c_own[None, :]
        dswap[a[:, None] == a[None, :]] = np.inf
        isw = np.unravel_index(np.argmin(dswap), dswap.shape)
        best_m, best_s = dmove[im], dswap[isw]
        if min(best_m, best_s) >= -1e-12:
            break
        if best_m <= best_s:
            a[im[0]] = im[1]
        else:
            i, k = isw
            a[i], a[k] = a[k], a[i]
    return a


def pair_reoptimise(
    a: np.ndarray,
    supply: np.ndarray,
    demand: np.ndarray,
    cost: np.ndarray,
    deadline: float,
    max_passes: int = 3,
) -> np.ndarray:
    """Large-neighbourhood improvement: for every pair of consumers (largest residual first),
    re-solve exactly the sub-problem of the agents currently at those two consumers.

    The pair's agents and loads do not affect the other consumers, so the sub-problem's
    objective differs from eq. 3's by a constant and an improvement there is one of eq. 3. It
    finds multi-agent exchanges between two consumers that single moves and swaps miss.
    Passes repeat while something improves, until ``deadline`` (``time.perf_counter``).
    """
    N, M = cost.shape
    a = a.copy()
    f = objective(a, supply, demand, cost)
    for _ in range(max_passes):
        load = np.zeros_like(demand)
        np.add.at(load, a, supply)
        res = ((demand - load) ** 2).sum(1)
        pairs = [(j, k) for j in range(M) for k in range(j + 1, M)]
        pairs.sort(key=lambda jk: -(res[jk[0]] + res[jk[1]]))
        improved = False
        for j, k in pairs:
            left = deadline - time.perf_counter()
            if left <= 0:
                return a
            S = np.flatnonzero((a == j) | (a == k))
            if S.size <= 2:  # one agent each: nothing a move or swap has not tried
                continue
            g = np.array([j, k])
            sub = solve_assignment(
                supply[S], demand[g], cost[np.ix_(S, g)], time_limit=left, restarts=4
            )
            a2 = a.copy()
            a2[S] = g[sub.assignment]
            f2 = objective(a2, supply, demand, cost)
            if f2 < f - 1e-12 * max(f, 1.0):
                a, f, improved = a2, f2, True
        if not improved:
            break
    return a


# ---------------------------------------------------------------------------------------------
# bounds
# ---------------------------------------------------------------------------------------------


def _waterfill(h: np.ndarray, R: np.ndarray) -> np.ndarray:
    """min sum_j (h_j - y_j)^2 s.t. y >= 0, sum_j y_j = R, for h (..., M), R (...)."""
    hs = -np.sort(-h, axis=-1)
    cs = np.cumsum(hs, axis=-1)
    k = np.arange(1, h.shape[-1] + 1)
    theta_k = (cs - R[..., None]) / k
    ok = hs - theta_k > 0
    rho = np.where(ok.any(-1), h.shape[-1] - 1 - np.argmax(ok[..., ::-1], axis=-1), 0)
    theta = np.take_along_axis(theta_k, rho[..., None], -1)
    y = np.maximum(h - theta, 0.0)
    y = np.where(R[..., None] > 0, y, 0.0)
    return ((h - y) ** 2).sum(-1)


@dataclass
class _Problem:
    so: np.ndarray  # (N, r) in branching order
    g: np.ndarray  # (M, r) de - lambda / 2
    red: np.ndarray  # (N, M) reduced costs
    K: float
    free_min: np.ndarray  # (N + 1,) sum of min reduced cost of agents k.. N-1
    rem_supply: np.ndarray  # (N + 1, r) supply of agents k.. N-1
    cover_pen: np.ndarray  # (N + 1, M) cheapest extra cost for a free agent to cover j
    cover: bool


def _prepare(so, de, c, lam, order, cover) -> _Problem:
    so = so[order]
    c = c[order]
    N, M = c.shape
    red = c - so @ lam.T
    mins = red.min(1)
    free_min = np.concatenate([np.cumsum(mins[::-1])[::-1], [0.0]])
    rem = np.concatenate([np.cumsum(so[::-1], 0)[::-1], np.zeros((1, so.shape[1]))])
    pen = red - mins[:, None]
    cover_pen = np.full((N + 1, M), np.inf)
    for k in range(N - 1, -1, -1):
        cover_pen[k] = np.minimum(cover_pen[k + 1], pen[k])
    K = float((lam * de).sum() - (lam * lam).sum() / 4)
    return _Problem(so, de - lam / 2, red, K, free_min, rem, cover_pen, cover)


def _bounds(pb: _Problem, depth: int, fixed: np.ndarray, loads: np.ndarray, covered):
    """Lower bounds of nodes whose first ``depth`` agents are fixed."""
    N, M = pb.red.shape
    h = pb.g[None] - loads  # (K, M, r)
    quad = _waterfill(np.swapaxes(h, 1, 2), np.broadcast_to(pb.rem_supply[depth], h.shape[::2]))
    b = pb.K + fixed + pb.free_min[depth] + quad.sum(-1)
    if pb.cover:
        need = ~covered
        pen = np.where(need, pb.cover_pen[depth][None], 0.0)
        b = b + pen.sum(-1)
        b = np.where(need.sum(-1) > N - depth, np.inf, b)
    return b


# ---------------------------------------------------------------------------------------------
# the oracle
# ---------------------------------------------------------------------------------------------


def _branch_and_bound(pb, order, so, de, c, best_a, best_f, gap_tol, deadline, node_limit, block):
    """Depth-first B&B over blocks of nodes; returns (a, f, lower bound, status, nodes)."""
    N, M = c.shape
    r = so.shape[1]
    eye = np.eye(M, dtype=bool)
    # stack entries: (depth, fixed reduced cost, loads, covered, path, smallest bound)
    stack = [
        (0, np.zeros(1), np.zeros((1, M, r)), np.zeros((1, M), bool), np.zeros((1, 0), int), 0.0)
    ]
    lb_pruned = np.inf
    nodes = 0
    status = "optimal"

    def thresh() -> float:
        return best_f - gap_tol * max(abs(best_f), 1e-12)

    root = float(_bounds(pb, 0, *stack[0][1:4])[0])
    stack[0] = (*stack[0][:5], root)
    if root >= thresh():
        return best_a, best_f, min(root, best_f), status, nodes
    while stack:
        if nodes > node_limit:
            status = "node_limit"
            break
        if time.perf_counter() > deadline:
            status = "time_limit"
            break
        depth, fixed, loads, covered, path, _ = stack.pop()
        K = fixed.shape[0]
        # children: agent order[depth] -> every consumer j
        s_i = pb.so[depth]
        cf = (fixed[:, None] + pb.red[depth][None]).reshape(-1)
        cl = (loads[:, None] + eye[None, :, :, None] * s_i[None, None, None, :]).reshape(
            K * M, M, r
        )
        cc = (covered[:, None] | eye[None]).reshape(K * M, M)
        cp = np.concatenate([np.repeat(path, M, axis=0), np.tile(np.arange(M), K)[:, None]], axis=1)
        b = _bounds(pb, depth + 1, cf, cl, cc)
        nodes += K * M
        th = thresh()
        keep = b < th
        near = ~keep & (b < best_f)  # pruned only thanks to the tolerance
        if near.any():
            lb_pruned = min(lb_pruned, float(b[near].min()))
        if not keep.any():
            continue
        cf, cl, cc, cp, b = cf[keep], cl[keep], cc[keep], cp[keep], b[keep]
        if depth + 1 == N:
            k = int(np.argmin(b))  # at a leaf the bound is the objective's exact value
            if b[k] < best_f:
                a = np.empty(N, dtype=np.int64)
                a[order] = cp[k]
                best_a, best_f = a, objective(a, so, de, c)
            continue
        idx = np.argsort(b, kind="stable")
        for s in range((len(idx) - 1) // block * block, -1, -block):
            sl = idx[s : s + block]
            stack.append((depth + 1, cf[sl], cl[sl], cc[sl], cp[sl], float(b[sl[0]])))
    lb = min(lb_pruned, best_f)
    for entry in stack:
        lb = min(lb, entry[-1])
    if status == "optimal":
        lb = max(lb, best_f - gap_tol * max(abs(best_f), 1e-12))
    return best_a, best_f, lb, status, nodes


def solve_assignment(
    supply: np.ndarray,
    demand: np.ndarray,
    cost: np.ndarray,
    *,
    gap_tol: float = 1e-9,
    time_limit: float = 10.0,
    block: int = 4096,
    initial: np.ndarray | None = None,
    restarts: int = 16,
) -> AssignResult:
    """Optimal assignment of eq. (3).

    Args:
        supply: (N, r) agent supplies so (>= 0).
        demand: (M, r) consumer demands de (>= 0).
        cost: (N, M) the linear l2 term, ``costs.linear_costs(so, de, d_pd, floor)``.
        gap_tol: stop when (best - bound) <= gap_tol * |best|; 1e-9 = exact up to round-off.
        time_limit: seconds; when hit, returns the best-known assignment, status 'time_limit'
            and the proven bound/gap.
        block: nodes expanded together (memory/speed trade-off).
        initial: optional (N,) starting assignment (e.g. the previous one).
        restarts: randomised roundings of the relaxation polished by local search, for the
            first incumbent when the relaxation is needed (seeded: deterministic).

    Returns:
        :class:`AssignResult`. With N < M the covering constraint is dropped (infeasible).

    Two phases: first the multiplier of the local-search incumbent, lambda = 2 (de - x_inc)
    (free, and enough for most small instances), with a node budget; if that does not close
    the gap, lambda from the convex relaxation (OSQP) and a second search, for a tenth of
    the time left; if that is not enough either, the Lagrangian-decomposition bound
    (``assign_bound.lagrangian_bound``, up to 85 % of the time left), pair re-optimisation,
    and the search again until the time limit.

    Kept whole: the phases share the incumbent (``best_a``, ``best_f``), the bound, the
    branching order, the node count and the deadline, and each phase's outcome decides whether
    the next runs; split, every helper would take and return that whole state.
    """
    t0 = time.perf_counter()
    so, de, c = _check(supply, demand, cost)
    if not (gap_tol >= 0 and time_limit > 0):
        raise AssignmentError("gap_tol must be >= 0 and time_limit > 0")
    N, M = c.shape
    cover = N >= M
    if N == M:
        # one agent per consumer: l1 = sum_i ||de_{a_i} - so_i||^2 is linear in a, so eq. 3
        # is a linear assignment problem (exact, Hungarian method)
        lin = ((de[None, :, :] - so[:, None, :]) ** 2).sum(-1) + c
        rows, cols = linear_sum_assignment(lin)
        a = np.empty(N, dtype=np.int64)
        a[rows] = cols
        f = objective(a, so, de, c)
        return AssignResult(a, f, f, 0.0, True, "optimal", 1, time.perf_counter() - t0)
    deadline = t0 + time_limit
    cands = [c.argmin(1)]
    if initial is not None:
        init = np.asarray(initial, dtype=np.int64)
        if init.shape != (N,) or init.min() < 0 or init.max() >= M:
            raise AssignmentError(f"initial must be (N,) = ({N},) consumer indices in [0, {M})")
        cands.append(init)

    def polish(a0):
        a1 = local_search_np(_repair(a0, c, M) if cover else a0, so, de, c, cover)
        return a1, objective(a1, so, de, c)

    def improve(cands, best_a, best_f):
        for a0 in cands:
            a1, f1 = polish(a0)
            if f1 < best_f:
                best_a, best_f = a1, f1
        return best_a, best_f

    best_a, best_f = improve(cands, None, np.inf)
    # branch on big suppliers first: they move the quadratic term most
    order = np.argsort(-so.sum(1), kind="stable")
    load = np.zeros_like(de)
    np.add.at(load, best_a, so)
    total = 0
    phases = [("relaxation", None, np.inf)]
    if N * M <= _SMALL:
        phases.insert(0, ("incumbent", 2.0 * (de - load), 200 * N * M))
    for name, lam, node_limit in phases:
        if name == "relaxation":
            lam, a_rel = relaxation_multipliers(so, de, c, cover)
            # rounding of the relaxation + randomised roundings (fixed seed: deterministic)
            rng = np.random.default_rng(0)
            p = np.clip(a_rel, 0.0, None) + 1e-12
            cdf = np.cumsum(p / p.sum(1, keepdims=True), axis=1)
            draws = (rng.random((restarts, N, 1)) > cdf[None]).sum(-1).clip(max=M - 1)
            best_a, best_f = improve([a_rel.argmax(1), *draws], best_a, best_f)
            # agents the relaxation splits first (that is where the bound is loose)
            split = ((a_rel > 1e-3) & (a_rel < 1 - 1e-3)).any(1)
            order = np.lexsort((-so.sum(1), ~split))
        pb = _prepare(so, de, c, lam, order, cover)
        if name == "relaxation":  # a short search first: most small instances end here
            now = time.perf_counter()
            end = now + _PROBE * (deadline - now)
            probe_block = min(block, 512)  # the time is checked between blocks: short ones
        else:
            end, probe_block = deadline, block
        best_a, best_f, lb, status, nodes = _branch_and_bound(
            pb, order, so, de, c, best_a, best_f, gap_tol, end, node_limit, probe_block
        )
        total += nodes
        if name == "relaxation" and status == "time_limit" and time.perf_counter() < deadline:
            # the Lagrangian decomposition's bound (integral loads per consumer), then the
            # search again with the incumbent it found; every bound is valid, keep the best
            now = time.perf_counter()
            ld = lagrangian_bound(
                so,
                de,
                c,
                (c - so @ lam.T).min(1),
                lam,
                best_f,
                now + _LAGRANGE * (deadline - now),
                incumbent=best_a,
                polish=polish,
                gap_tol=gap_tol,
                cover=cover,
            )
            if ld.objective < best_f:
                best_a, best_f = ld.assignment, ld.objective
            lb = max(lb, ld.bound)
            if cover and M > 2 and best_f - lb > gap_tol * max(abs(best_f), 1e-12):
                # pair re-optimisation of the incumbent (it stops when nothing improves)
                best_a = pair_reoptimise(best_a, so, de, c, deadline)
                best_f = objective(best_a, so, de, c)
            if best_f - lb <= gap_tol * max(abs(best_f), 1e-12):
                status = "optimal"
            elif time.perf_counter() < deadline:
                best_a, best_f, lb2, status, nodes = _branch_and_bound(
                    pb, order, so, de, c, best_a, best_f, gap_tol, deadline, node_limit, probe_block
                )
                total += nodes
                lb = max(lb, lb2)
        if status != "node_limit":
            break
    # eq. 3's objective is >= 0, so is the bound; an optimum at (or near) 0 has gap 0 when
    # the bound meets it to 1e-12 absolute
    lb = max(lb, 0.0)
    gap = 0.0 if best_f - lb <= 1e-12 else (best_f - lb) / best_f
    if status == "optimal" and gap > 1e-9:
        status = "gap"
    return AssignResult(
        assignment=np.asarray(best_a, dtype=np.int64),
        objective=float(best_f),
        lower_bound=float(lb),
        gap=float(gap),
        optimal=status != "time_limit",
        status=status,
        nodes=total,
        solve_time=time.perf_counter() - t0,
    )


def assignment_from_positions(
    agent_pos: np.ndarray,
    supply: np.ndarray,
    consumer_pos: np.ndarray,
    demand: np.ndarray,
    demand_floor: float = 0.1,
    **kw,
) -> AssignResult:
    """Eq. (3) from raw state: positions (N, 2), (M, 2), supply (N, r), demand (M, r)."""
    ap = np.asarray(agent_pos, dtype=np.float64)
    cp = np.asarray(consumer_pos, dtype=np.float64)
    dist = np.linalg.norm(ap[:, None, :] - cp[None, :, :], axis=-1)
    so = np.asarray(supply, dtype=np.float64)
    de = np.asarray(demand, dtype=np.float64)
    return solve_assignment(so, de, linear_costs(so, de, dist, demand_floor), **kw)
