"""An integrality-aware lower bound for eq. (3): Lagrangian decomposition over consumers.

Relaxing "every agent to exactly one consumer" with multipliers mu (N,) splits eq. (3) into one
subproblem per consumer m (a Dantzig-Wolfe pricing problem):

    L(mu) = sum_i mu_i + sum_m P_m(mu),
    P_m(mu) = min_{S nonempty} ||de_m - sum_{i in S} so_i||^2 + sum_{i in S} (c_im - mu_i),

and L(mu) <= optimum of eq. (3) for every mu (weak duality: the optimal assignment's groups
are feasible subsets). Unlike the convex relaxation, each consumer's load comes from whole
agents, so the bound sees integrality (its best value is the set-partitioning LP's).

P_m is a small binary quadratic program in r dimensions (supplies are continuous, drawn
from ``EnvConfig.supply_range``, so there is no load grid to run a DP on). :func:`pricing`
solves it exactly, or bounds it from below when it gives up, by *reduced-cost fixing +
pruned enumeration*: for any lambda_m (r,) the objective is

    f(S) = K_m + sum_{i in S} rho_i + ||g_m - x_S||^2,   rho_i = w_i - lambda_m . so_i,
    K_m = lambda_m . de_m - |lambda_m|^2 / 4,   g_m = de_m - lambda_m / 2

(the identity of ``assign.py``), so with base B = {rho_i < 0} every S costs at least
C_m + (sum of |rho_i| over the agents where S and B differ), C_m = K_m + sum_i min(0, rho_i)
(the subproblem's continuous bound, maximised over lambda_m by :func:`continuous_dual`).
Deviation sets are enumerated by increasing |rho| and pruned with that and a bound on the
quadratic term (see :func:`pricing`). Every bound is valid whatever lambda and mu; they
only decide how tight it is and how long the enumeration takes.

mu is improved by a few Polyak subgradient steps, then by column generation: the subsets met
so far are the columns of the set-partitioning LP, whose agent duals (smoothed toward the
best mu) are the next mu (:func:`lagrangian_bound`). The bound's best value is that LP's
optimum; on the env's N = 50, M = 10 instances it is typically within 0-1 % of the best
known assignment (the rest is the LP's integrality gap, which only branching would close).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog


def _dual_value(supply, demand, w, lam) -> np.ndarray:
    """C_m(lambda_m) = K_m + sum_i min(0, w_im - lambda_m . so_i) for every m."""
    rho = w - supply @ lam.T
    return (lam * demand).sum(1) - (lam * lam).sum(1) / 4 + np.minimum(rho, 0.0).sum(0)


def continuous_dual(
    supply: np.ndarray,
    demand: np.ndarray,
    w: np.ndarray,
    lam: np.ndarray,
    taus: tuple[float, ...] = (1.0, 0.3, 0.05, 0.01),
) -> tuple[np.ndarray, np.ndarray]:
    """lambda maximising C_m(lambda) = K_m + sum_i min(0, w_im - lambda_m . so_i) for all m.

    C_m is the dual of the subproblem's continuous relaxation (subsets -> [0, 1]^N), concave
    and piecewise quadratic. Damped Newton steps on its smoothing (min(0, -u) -> -tau
    softplus(u / tau), within N tau log 2 of it) for decreasing tau, from ``lam``; every
    iterate is scored with the exact C_m and the best per consumer is returned with it.

    Args:
        supply: (N, r); demand: (M, r); w: (N, M) weights c_im - mu_i; lam: (M, r) start.
    """
    r = supply.shape[1]
    best_lam = lam.copy()
    best_c = _dual_value(supply, demand, w, lam)
    outer = supply[:, :, None] * supply[:, None, :]  # (N, r, r)
    eye = np.eye(r)

    def smooth(lam, tau):
        u = (supply @ lam.T - w) / tau
        return (lam * demand).sum(1) - (lam * lam).sum(1) / 4 - tau * np.logaddexp(0, u).sum(0)

    for tau in taus:
        for _ in range(2):
            u = (supply @ lam.T - w) / tau  # (N, M)
            sig = 0.5 * (1.0 + np.tanh(u / 2))
            grad = demand - lam / 2 - sig.T @ supply  # (M, r)
            hess = -0.5 * eye - np.einsum("nm,nrs->mrs", sig * (1 - sig) / tau, outer)
            step = -np.linalg.solve(hess, grad[..., None])[..., 0]
            cand = [lam + t * step for t in (1.0, 0.5, 0.25, 0.1)]
            vals = np.stack([smooth(x, tau) for x in [lam, *cand]])
            pick = vals.argmax(0)
            lam = np.stack([lam, *cand])[pick, np.arange(lam.shape[0])]
            c_val = _dual_value(supply, demand, w, lam)
            better = c_val > best_c
            best_c = np.where(better, c_val, best_c)
            best_lam[better] = lam[better]
    return best_lam, best_c


def _tail_bound(h: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """min over y of ||h - y||^2 + beta ||y|| (rows of h): beta |h| - beta^2 / 4 when
    |h| >= beta / 2, else |h|^2."""
    n = np.sqrt((h * h).sum(-1))
    return np.where(n >= beta / 2, beta * n - beta * beta / 4, n * n)


def pricing(
    supply: np.ndarray,
    demand: np.ndarray,
    w: np.ndarray,
    lam: np.ndarray,
    cap: int = 50_000,
    cover: bool = True,
    hint: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lower bounds on P_m for every consumer, and the best subsets found.

    Enumerates, for all consumers at once, the deviation sets D from the base B = {rho < 0}
    by agents in increasing |rho| order (stage k decides the k-th), as a pool of partial sets.
    A set D decided up to stage k and its extensions D' (agents of rank >= k) have

        f(B xor (D + D')) = C_m + cost(D) + cost(D') + ||h_D - y||^2,

    cost = sum of |rho|, h_D = g_m - x_{B xor D}, y the load change of D'. Every agent of rank
    >= k has |rho| >= r_k and |rho_i| >= beta_k |so_i| (beta_k: the smallest |rho_i| / |so_i|
    left), so cost(D') >= beta_k |y|, and cost(D') >= r_k when D' is nonempty: the extensions
    of D cost
    >= C_m + cost(D) + max(r_k, min_y ||h_D - y||^2 + beta_k |y|). Sets whose extensions
    cannot beat the best f found are dropped. If the pool would exceed ``cap``, it stops:
    P_m >= min(best_m, that bound over the pool), else P_m = best_m exactly.

    Args:
        supply: (N, r); demand: (M, r); w: (N, M) weights c_im - mu_i.
        lam: (M, r) start for the multipliers of the quadratic (any value: a valid bound).
        cap: most partial sets in the pool over all consumers.
        cover: subsets must be nonempty (eq. 3's covering constraint).
        hint: optional (M, N) bool subsets (e.g. the previous round's): their f is the first
            best to beat (prunes more from the start).

    Returns:
        (lb (M,) valid lower bounds on P_m, exact (M,) bool: lb == P_m, value (M,) the best
        subset's f, subset (M, N) bool the best subsets, lam (M, r) the lambdas used).

    Kept whole: the stages of the enumeration share the pool's six parallel arrays (consumer,
    cost, load, weight, size, mask) and the per-consumer best values, bounds and masks, all
    filtered and grown together at every stage; split, each helper would take a dozen of them.
    """
    N, M = w.shape
    lam, c_m = continuous_dual(supply, demand, w, lam)
    rho = w - supply @ lam.T  # (N, M)
    base = rho < 0
    g = demand - lam / 2
    order = np.argsort(np.abs(rho), axis=0, kind="stable").T  # (M, N)
    mcols = np.arange(M)
    absr = np.abs(rho.T[mcols[:, None], order])  # (M, N) ascending
    sign = np.where(base.T[mcols[:, None], order], -1.0, 1.0)  # removing or adding
    d_load = sign[..., None] * supply[order]  # (M, N, r)
    d_w = sign * w.T[mcols[:, None], order]  # (M, N)
    s_norm = np.sqrt((supply * supply).sum(1))[order]  # (M, N)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(s_norm > 0, absr / s_norm, 1e100)
    ratio = np.concatenate([np.minimum(ratio, 1e100), np.full((M, 1), 1e100)], axis=1)
    beta = np.minimum.accumulate(ratio[:, ::-1], axis=1)[:, ::-1]  # min over ranks >= k
    r_k = np.concatenate([absr, np.full((M, 1), np.inf)], axis=1)
    # the pool: consumer, cost, load, weight, size, bitmask over ranks (Python ints past 62)
    cons = mcols.copy()
    cost = np.zeros(M)
    load = base.T.astype(np.float64) @ supply
    weight = np.where(base, w, 0.0).sum(0)
    size = base.sum(0)
    mtype = np.int64 if N <= 62 else object
    mask = np.zeros(M, dtype=mtype)

    def value(cn, ld, wt, sz):
        fv = ((demand[cn] - ld) ** 2).sum(-1) + wt
        return np.where((sz == 0) & cover, np.inf, fv)

    best = value(cons, load, weight, size)
    best_mask = mask.copy()
    from_hint = np.zeros(M, dtype=bool)
    if hint is not None:
        zh = hint.astype(np.float64)
        fh = value(mcols, zh @ supply, (zh * w.T).sum(1), hint.sum(1))
        from_hint = fh < best
        best = np.where(from_hint, fh, best)
    lb = best.copy()
    for k in range(N + 1):
        # drop the sets none of whose extensions (ranks >= k) can beat the best found
        ext = (
            c_m[cons] + cost + np.maximum(r_k[cons, k], _tail_bound(g[cons] - load, beta[cons, k]))
        )
        keep = ext < best[cons]
        cons, cost, load, weight, size, mask, ext = (
            x[keep] for x in (cons, cost, load, weight, size, mask, ext)
        )
        if cons.size == 0 or k == N:
            break
        # children: agent of rank k flipped
        n_cost = cost + absr[cons, k]
        n_load = load + d_load[cons, k]
        n_lb = c_m[cons] + n_cost + _tail_bound(g[cons] - n_load, beta[cons, k + 1])
        grow = n_lb < best[cons]
        n = int(grow.sum())
        if cons.size + n > cap:  # stop: the pool's extensions are bounded by ext
            np.minimum.at(lb, cons, ext)
            break
        if n == 0:
            continue
        cn = cons[grow]
        n_cost, n_load = n_cost[grow], n_load[grow]
        n_weight = weight[grow] + d_w[cn, k]
        n_size = size[grow] + sign[cn, k].astype(np.int64)
        n_mask = mask[grow] | (mtype(1) << k if N <= 62 else 1 << k)
        nf = value(cn, n_load, n_weight, n_size)
        old = best.copy()
        np.minimum.at(best, cn, nf)
        hit = np.flatnonzero((nf == best[cn]) & (nf < old[cn]))
        best_mask[cn[hit]] = n_mask[hit]
        from_hint[cn[hit]] = False
        cons = np.concatenate([cons, cn])
        cost = np.concatenate([cost, n_cost])
        load = np.concatenate([load, n_load])
        weight = np.concatenate([weight, n_weight])
        size = np.concatenate([size, n_size])
        mask = np.concatenate([mask, n_mask])
    lb = np.minimum(lb, best)
    subset = base.T.copy()  # (M, N)
    for m in range(M):
        if from_hint[m]:
            subset[m] = hint[m]
            continue
        bm = int(best_mask[m])
        ranks = [k for k in range(N) if bm >> k & 1]
        subset[m, order[m, ranks]] ^= True
    return lb, lb >= best, best, subset, lam


@dataclass(frozen=True)
class LagrangianResult:
    """Result of :func:`lagrangian_bound`.

    Attributes:
        bound: the best proven lower bound L(mu) found (valid for eq. 3).
        mu: (N,) the multipliers that gave it.
        exact: True when every P_m was solved exactly at that mu.
        iterations: pricing rounds (subgradient steps and column-generation rounds).
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


class _Master:
    """Restricted master LP of the set-partitioning form of eq. (3) (column generation).

        min sum_k f_k y_k  s.t.  each agent in exactly one chosen column (weight sum 1),
                                 each consumer exactly one column,  y >= 0,

    over the columns (consumer m, subset S) met so far, f_k = ||de_m - so(S)||^2 + c_m(S).
    Its agent duals are the multipliers mu of the decomposition (HiGHS via scipy).
    """

    def __init__(self, supply, demand, cost):
        self.so, self.de, self.c = supply, demand, cost
        self.cols: list[np.ndarray] = []
        self.cons: list[int] = []
        self.f: list[float] = []
        self.keys: set[bytes] = set()

    def add(self, m: int, sub: np.ndarray) -> None:
        key = int(m).to_bytes(4, "little") + np.packbits(sub).tobytes()
        if key in self.keys or not sub.any():
            return
        self.keys.add(key)
        z = sub.astype(np.float64)
        self.cols.append(sub.copy())
        self.cons.append(m)
        self.f.append(float(((self.de[m] - z @ self.so) ** 2).sum() + z @ self.c[:, m]))

    def solve(self):
        """(LP value, agent duals mu (N,), y) or None when HiGHS does not return an optimum."""
        N, M = self.c.shape
        K = len(self.cols)
        cols = np.array(self.cols)  # (K, N)
        ki, ii = np.nonzero(cols)
        rows = np.concatenate([ii, N + np.asarray(self.cons)])
        kk = np.concatenate([ki, np.arange(K)])
        A = sp.csc_matrix((np.ones(rows.size), (rows, kk)), shape=(N + M, K))
        res = linprog(
            np.asarray(self.f), A_eq=A, b_eq=np.ones(N + M), bounds=(0, None), method="highs"
        )
        if res.status != 0:
            return None
        return float(res.fun), np.asarray(res.eqlin.marginals[:N]), np.asarray(res.x)

    def assignment(self, y: np.ndarray) -> np.ndarray:
        """Subsets (M, N): per consumer the column with the largest weight in y."""
        N, M = self.c.shape
        out = np.zeros((M, N), dtype=bool)
        top = np.full(M, -1.0)
        for k, m in enumerate(self.cons):
            if y[k] > top[m]:
                top[m], out[m] = y[k], self.cols[k]
        return out


def lagrangian_bound(
    supply: np.ndarray,
    demand: np.ndarray,
    cost: np.ndarray,
    mu: np.ndarray,
    lam: np.ndarray,
    upper: float,
    deadline: float,
    *,
    incumbent: np.ndarray | None = None,
    polish=None,
    cap: int = 50_000,
    max_iters: int = 100_000,
    gap_tol: float = 0.0,
    cover: bool = True,
    alpha: float = 1.0,
    patience: int = 8,
    warm_iters: int = 10,
    smoothing: float = 0.5,
    primal_every: int = 5,
) -> LagrangianResult:
    """Maximise L(mu): Polyak subgradient steps, then column generation; every value reported
    is a proven bound (L at the mu evaluated, with :func:`pricing`'s valid P_m bounds).

    The first ``warm_iters`` steps are subgradient steps mu += alpha (upper - L) g / |g|^2,
    g_i = 1 - (number of subsets holding agent i). Their subsets (and the incumbent's groups)
    seed a restricted master LP (:class:`_Master`); from then on mu is its agent duals,
    smoothed toward the best mu so far (Wentges: mu = s mu_best + (1 - s) mu_LP), and each
    round's subsets are added as columns. When the best L meets the master's value, L is at
    its maximum (the set-partitioning LP's value) and the search stops. A round that does not
    raise the bound halves 1 - s (back to ``smoothing`` after one that does).

    Args:
        supply: (N, r); demand: (M, r); cost: (N, M) the linear l2 costs c.
        mu: (N,) start (e.g. min_j of the relaxation's reduced costs).
        lam: (M, r) start for the per-consumer quadratic multipliers.
        upper: objective of the best known assignment (the Polyak target).
        deadline: ``time.perf_counter()`` time to stop at.
        incumbent: optional (N,) assignment of value ``upper`` (its groups seed the master).
        polish: optional callable a -> (a', f(a')) turning a (possibly infeasible) assignment
            built from the subsets into a feasible, locally improved one; the best is returned
            and lowers ``upper``.
        cap: most partial sets per pricing round (see :func:`pricing`).
        max_iters: pricing rounds at most.
        gap_tol: stop as soon as upper - bound <= gap_tol * upper.
        cover: every consumer >= 1 agent (eq. 3 with N >= M).
        alpha, patience: initial Polyak factor, halved after ``patience`` steps without a
            better bound.
        warm_iters: subgradient steps before column generation (0: none, CG from the start).
        smoothing: Wentges factor s in [0, 1).
        primal_every: run ``polish`` every that many rounds.

    Kept whole: each round updates the multipliers, the best bound and its mu, the step size
    and stall count, the smoothing misses, the master LP and the incumbent together, and the
    next round's step depends on all of them; split, each helper would pass that state back.
    """
    N, M = cost.shape
    mu = np.asarray(mu, dtype=np.float64).copy()
    best, best_mu, best_exact = -np.inf, mu.copy(), False
    best_a, stall, it = None, 0, 0
    subset, miss = None, 0
    master = _Master(supply, demand, cost)
    if incumbent is not None:
        for m in range(M):
            master.add(m, incumbent == m)
    for it in range(1, max_iters + 1):
        w = cost - mu[:, None]
        lb, exact, _, subset, lam = pricing(supply, demand, w, lam, cap, cover, hint=subset)
        val = float(mu.sum() + lb.sum())
        if not val <= best + 1e-9 * max(1.0, abs(val)):
            best, best_mu, best_exact, stall = val, mu.copy(), bool(exact.all()), 0
        else:
            stall += 1
            if stall >= patience:
                alpha, stall = alpha / 2, 0
        for m in range(M):
            master.add(m, subset[m])
        g = 1.0 - subset.sum(0)
        if polish is not None and (it % primal_every == 1 or not g.any()):
            a, f = polish(subsets_to_assignment(subset, cost, w - supply @ lam.T))
            if f < upper:
                upper, best_a = f, a
        done = upper - best <= gap_tol * abs(upper) or not g.any()
        if done or time.perf_counter() > deadline:
            break
        lp = master.solve() if it >= warm_iters and cover else None
        if lp is not None:
            lp_val, mu_lp, y = lp
            if best >= lp_val - 1e-6 * max(1.0, abs(lp_val)):
                break  # L(mu) reached the master's value: the dual is at its maximum
            if polish is not None and it % primal_every == 0:
                a, f = polish(subsets_to_assignment(master.assignment(y), cost, w))
                if f < upper:
                    upper, best_a = f, a
            # a round that did not raise the bound (mispricing): move closer to the centre
            miss = 0 if val >= best else miss + 1
            s_cur = 1 - (1 - smoothing) / 2**miss
            if s_cur > 1 - 1e-3:
                break
            mu = s_cur * best_mu + (1 - s_cur) * mu_lp
        elif alpha >= 1e-4:
            mu = mu + alpha * max(upper - val, 1e-6 * max(1.0, abs(upper))) / float(g @ g) * g
        else:
            break
    return LagrangianResult(best, best_mu, best_exact, it, best_a, upper)
