"""An integrality-aware lower bound for eq. (3): Lagrangian decomposition over consumers.

Relaxing "every agent to exactly one consumer" with multipliers mu (N,) splits eq. (3) into one
subproblem per consumer m (a Dantzig-Wolfe pricing problem):

    L(mu) = sum_i mu_i + sum_m P_m(mu),
    P_m(mu) = min_{S nonempty} ||de_m - sum_{i in S} so_i||^2 + sum_{i in S} (c_im - mu_i),

and L(mu) <= optimum of eq. (3) for every mu (weak duality: the optimal assignment's groups
are feasible subsets). Unlike the convex relaxation, each consumer's load comes from whole
agents, so the bound sees integrality (its best value is the set-partitioning LP's).

P_m is a small binary quadratic program in r dimensions, solved (or bounded below) per
consumer by *reduced-cost fixing + enumeration*: for any lambda_m (r,) the objective is

    f(S) = K_m + sum_{i in S} rho_i + ||g_m - x_S||^2,   rho_i = w_i - lambda_m . so_i,
    K_m = lambda_m . de_m - |lambda_m|^2 / 4,   g_m = de_m - lambda_m / 2

(the identity of ``assign.py``). With base B = {rho_i < 0}, f(S) >= C_m + sum of |rho_i| over
the agents where S and B differ, C_m = K_m + sum_i min(0, rho_i) (the subproblem's continuous
bound). The F agents with the smallest |rho_i| are enumerated exactly (2^F subsets, with B on
the others); any S that differs from B outside them costs >= C_m + tau_m (tau_m: the smallest
|rho| left out). Hence P_m >= min(enumerated minimum, C_m + tau_m), with equality (P_m solved
exactly) when the enumerated minimum is the smaller. Every bound is valid whatever lambda, mu
and F; they only decide how tight it is. lambda_m maximises C_m approximately (dual ascent),
mu is improved by Polyak subgradient steps toward the incumbent's value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


def continuous_dual(
    supply: np.ndarray,
    demand: np.ndarray,
    w: np.ndarray,
    lam: np.ndarray,
    iters: int = 30,
    warm: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """lambda maximising C_m(lambda) = K_m + sum_i min(0, w_im - lambda_m . so_i) for all m.

    C_m is the dual of the subproblem's continuous relaxation (subsets -> [0, 1]^N): concave,
    1/2-strongly concave in lambda_m, with supergradient de_m - lambda_m / 2 - x_m(lambda), x_m
    the load of the agents whose reduced weight is negative. Subgradient steps 2 / (k + k0)
    (k0 = 2 cold, 10 from a warm start); the best lambda per consumer is returned with C_m.

    Args:
        supply: (N, r); demand: (M, r); w: (N, M) weights c_im - mu_i; lam: (M, r) start.
    """
    best_lam = lam.copy()
    best_c = np.full(demand.shape[0], -np.inf)
    k0 = 10 if warm else 2
    for k in range(iters):
        rho = w - supply @ lam.T  # (N, M)
        neg = rho < 0
        c_val = (lam * demand).sum(1) - (lam * lam).sum(1) / 4 + np.where(neg, rho, 0.0).sum(0)
        better = c_val > best_c
        best_c = np.where(better, c_val, best_c)
        best_lam[better] = lam[better]
        x = neg.T.astype(np.float64) @ supply  # (M, r)
        lam = lam + (2.0 / (k + k0)) * (2.0 * (demand - x) - lam)
    return best_lam, best_c


def pricing(
    supply: np.ndarray,
    demand: np.ndarray,
    w: np.ndarray,
    lam: np.ndarray,
    cap: int = 50_000,
    cover: bool = True,
    warm: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lower bounds on P_m for every consumer, and the best subsets found.

    Enumerates, for all consumers at once, the deviation sets D from the base B = {rho < 0}
    in increasing |rho| order, keeping only those with sum_D |rho_i| < best_m - C_m (any
    other S has f(S) >= C_m + sum_D |rho_i| >= best_m). If more than ``cap`` sets would be
    kept, it stops before agent k: the sets left out then differ from B on an agent with
    |rho| >= |rho_(k)|, so P_m >= min(best_m, C_m + |rho_(k)|).

    Args:
        supply: (N, r); demand: (M, r); w: (N, M) weights c_im - mu_i.
        lam: (M, r) start for the multipliers of the quadratic (any value: a valid bound).
        cap: most deviation sets kept over all consumers.
        cover: subsets must be nonempty (eq. 3's covering constraint).
        warm: ``lam`` is already close (fewer large steps in :func:`continuous_dual`).

    Returns:
        (lb (M,) valid lower bounds on P_m, exact (M,) bool: lb == P_m, value (M,) the best
        subset's f, subset (M, N) bool the best subsets, lam (M, r) the lambdas used).
    """
    N, M = w.shape
    lam, c_m = continuous_dual(supply, demand, w, lam, warm=warm)
    rho = w - supply @ lam.T  # (N, M)
    base = rho < 0
    order = np.argsort(np.abs(rho), axis=0, kind="stable").T  # (M, N)
    mcols = np.arange(M)
    absr = np.abs(rho.T[mcols[:, None], order])  # (M, N) ascending
    sign = np.where(base.T[mcols[:, None], order], -1.0, 1.0)  # removing or adding
    d_load = sign[..., None] * supply[order]  # (M, N, r)
    d_w = sign * w.T[mcols[:, None], order]  # (M, N)
    # deviation sets, preallocated: the base subsets (D = {}, one per consumer) first;
    # D as a bitmask over the ranks (Python ints past 62 agents)
    P = M
    cons = np.empty(cap + M, dtype=np.int64)
    cost = np.empty(cap + M)
    load = np.empty((cap + M, supply.shape[1]))
    weight = np.empty(cap + M)
    size = np.empty(cap + M, dtype=np.int64)
    mask = np.zeros(cap + M, dtype=np.int64 if N <= 62 else object)
    f = np.empty(cap + M)
    cons[:M] = mcols
    cost[:M] = 0.0
    load[:M] = base.T.astype(np.float64) @ supply
    weight[:M] = np.where(base, w, 0.0).sum(0)
    size[:M] = base.sum(0)

    def value(sl: slice) -> None:
        fv = ((demand[cons[sl]] - load[sl]) ** 2).sum(-1) + weight[sl]
        f[sl] = np.where((size[sl] == 0) & cover, np.inf, fv)

    value(slice(0, M))
    best = f[:M].copy()
    stop = np.full(M, np.inf)  # |rho| of the first agent not enumerated
    for k in range(N):
        budget = best - c_m  # per consumer
        rk = absr[:, k]
        live = rk < budget
        if not live.any():
            break
        grow = np.flatnonzero(cost[:P] + rk[cons[:P]] < budget[cons[:P]])
        n = grow.size
        if P + n > cap + M:
            stop = np.where(live, rk, stop)
            break
        if n == 0:
            continue
        new = slice(P, P + n)
        cn = cons[grow]
        cons[new] = cn
        cost[new] = cost[grow] + rk[cn]
        load[new] = load[grow] + d_load[cn, k]
        weight[new] = weight[grow] + d_w[cn, k]
        size[new] = size[grow] + sign[cn, k].astype(np.int64)
        mask[new] = mask[grow] | (mask.dtype.type(1) << k if N <= 62 else 1 << k)
        value(new)
        np.minimum.at(best, cn, f[new])
        P += n
    best_mask = [mask[int(np.argmin(np.where(cons[:P] == m, f[:P], np.inf)))] for m in mcols]
    lb = np.minimum(best, c_m + stop)
    subset = base.T.copy()  # (M, N)
    for m in range(M):
        bm = int(best_mask[m])
        ranks = [k for k in range(N) if bm >> k & 1]
        subset[m, order[m, ranks]] ^= True
    return lb, best <= c_m + stop, best, subset, lam


@dataclass(frozen=True)
class LagrangianResult:
    """Result of :func:`lagrangian_bound`.

    Attributes:
        bound: the best proven lower bound L(mu) found (valid for eq. 3).
        mu: (N,) the multipliers that gave it.
        exact: True when every P_m was solved exactly at that mu.
        iterations: subgradient steps taken.
        assignment: (N,) best assignment built from the subproblems' subsets (None if
            ``polish`` was not given), with its objective ``objective``.
    """

    bound: float
    mu: np.ndarray
    exact: bool
    iterations: int
    assignment: np.ndarray | None
    objective: float


def subsets_to_assignment(subset: np.ndarray, cost: np.ndarray, red: np.ndarray) -> np.ndarray:
    """An assignment from the subproblems' subsets (M, N): each agent to the cheapest (by
    ``cost``) consumer whose subset holds it, else to its cheapest by ``red``."""
    big = np.where(subset.T, cost, np.inf)  # (N, M)
    return np.where(subset.any(0), big.argmin(1), red.argmin(1))


def lagrangian_bound(
    supply: np.ndarray,
    demand: np.ndarray,
    cost: np.ndarray,
    mu: np.ndarray,
    lam: np.ndarray,
    upper: float,
    deadline: float,
    *,
    polish=None,
    cap: int = 50_000,
    max_iters: int = 100_000,
    gap_tol: float = 0.0,
    cover: bool = True,
    alpha: float = 1.0,
    patience: int = 8,
    deflect: float = 0.0,
    primal_every: int = 5,
) -> LagrangianResult:
    """Maximise L(mu) by Polyak subgradient steps; every value reported is a proven bound.

    Args:
        supply: (N, r); demand: (M, r); cost: (N, M) the linear l2 costs c.
        mu: (N,) start (e.g. min_j of the relaxation's reduced costs).
        lam: (M, r) start for the per-consumer quadratic multipliers.
        upper: objective of the best known assignment (the Polyak target).
        deadline: ``time.perf_counter()`` time to stop at.
        polish: optional callable a -> (a', f(a')) turning a (possibly infeasible) assignment
            built from the subsets into a feasible, locally improved one; the best is returned
            and lowers ``upper``.
        cap: most deviation sets enumerated per pricing round (see :func:`pricing`).
        max_iters: subgradient steps at most.
        gap_tol: stop as soon as upper - bound <= gap_tol * upper (``upper`` lowered when
            ``polish`` finds better).
        cover: every consumer >= 1 agent (eq. 3 with N >= M).
        alpha: initial Polyak factor, halved after ``patience`` steps without a better bound.
        deflect: direction = g + deflect * previous direction (0: plain subgradient).
        primal_every: run ``polish`` every that many steps.
    """
    mu = np.asarray(mu, dtype=np.float64).copy()
    best, best_mu, best_exact = -np.inf, mu.copy(), False
    best_a, stall, it = None, 0, 0
    d = np.zeros_like(mu)
    for it in range(1, max_iters + 1):
        w = cost - mu[:, None]
        lb, exact, _, subset, lam = pricing(supply, demand, w, lam, cap, cover, warm=it > 1)
        val = float(mu.sum() + lb.sum())
        if not val <= best + 1e-9 * max(1.0, abs(val)):
            best, best_mu, best_exact, stall = val, mu.copy(), bool(exact.all()), 0
        else:
            stall += 1
            if stall >= patience:
                alpha, stall = alpha / 2, 0
        g = 1.0 - subset.sum(0)
        if polish is not None and (it % primal_every == 1 or not g.any()):
            a, f = polish(subsets_to_assignment(subset, cost, w - supply @ lam.T))
            if f < upper:
                upper, best_a = f, a
        done = upper - best <= gap_tol * abs(upper) or not g.any()
        if done or time.perf_counter() > deadline or alpha < 1e-4:
            break
        d = g + deflect * d
        dd = float(d @ d)
        mu = mu + alpha * max(upper - val, 1e-6 * max(1.0, abs(upper))) / dd * d
    return LagrangianResult(best, best_mu, best_exact, it, best_a, upper)
