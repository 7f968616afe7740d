"""Exact dual active-set solver for the tiny projection QPs of the decentralized filter.

Problem: ``min 1/2 ||u - u_hat||^2  s.t.  G u <= b`` with ``u`` in R^d, d <= 3, and a few
dozen rows. This is the Goldfarb-Idnani dual method (Math. Programming 27, 1983) with
``H = I``: start from the unconstrained minimiser ``u_hat``, add the most violated
constraint, step along its projection onto the null space of the active normals, drop an
active constraint whose multiplier would turn negative. Every iterate is dual feasible; the
first primal-feasible one is optimal, and the method ends in finitely many steps.

At most ``d <= 3`` normals can be linearly independent, so every linear-algebra step is a
k x k system with k <= 3. It is written in plain Python floats: for d = 2 or 3, numpy's
per-call overhead (and a generic solver's setup) would cost more than the arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

OPTIMAL = 0
INFEASIBLE = 1
MAX_ITER = 2

_EPS_DEP = 1e-14  # relative size of a null-space step treated as zero (dependent normal)


def _solve_small(M: list[list[float]], rhs: list[float]) -> list[float] | None:
    """Solve a k x k system (k <= 3) by Gaussian elimination with partial pivoting."""
    k = len(rhs)
    A = [row[:] + [rhs[i]] for i, row in enumerate(M)]
    for c in range(k):
        piv = max(range(c, k), key=lambda r: abs(A[r][c]))
        if abs(A[piv][c]) < 1e-300:
            return None
        A[c], A[piv] = A[piv], A[c]
        for r in range(c + 1, k):
            f = A[r][c] / A[c][c]
            if f:
                for cc in range(c, k + 1):
                    A[r][cc] -= f * A[c][cc]
    out = [0.0] * k
    for r in range(k - 1, -1, -1):
        s = A[r][k] - sum(A[r][cc] * out[cc] for cc in range(r + 1, k))
        out[r] = s / A[r][r]
    return out


def solve_projection(
    G: np.ndarray,
    b: np.ndarray,
    u_hat: np.ndarray,
    tol: float = 1e-12,
    max_iter: int = 100,
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Project ``u_hat`` onto ``{u : G u <= b}`` exactly.

    Args:
        G: ``(m, d)`` constraint normals, d = 2 or 3.
        b: ``(m,)`` finite bounds.
        u_hat: ``(d,)`` point to project.
        tol: a row counts as satisfied when ``G_i u - b_i <= tol * (1 + |b_i|)``.
        max_iter: limit on add/drop steps.

    Returns:
        ``(u, code, iterations, lam)`` with ``code`` one of ``OPTIMAL``, ``INFEASIBLE``,
        ``MAX_ITER`` and ``lam`` the ``(m,)`` multipliers (zero for inactive rows).
    """
    u, code, it, lam = solve_projection_lists(
        G.tolist(), b.tolist(), [float(v) for v in u_hat], tol, max_iter
    )
    return np.array(u), code, it, np.array(lam)


def solve_projection_lists(
    rows: list[list[float]],
    bounds: list[float],
    u_hat: list[float],
    tol: float = 1e-12,
    max_iter: int = 100,
) -> tuple[list[float], int, int, list[float]]:
    """:func:`solve_projection` on plain lists (no numpy conversion on the hot path).

    Kept whole: one loop on purpose: it is the per-robot filter's inner loop (every tick of
    every node), written with unrolled 2-D / 3-D dot products in local variables; splitting
    the add / drop steps into functions would add calls on that path and hide the line-by-line
    correspondence with :func:`solve_projection`, whose numerics it must reproduce.
    """
    thr = [bi + tol * (1.0 + abs(bi)) for bi in bounds]
    u = list(u_hat)
    d = len(u)
    m = len(rows)
    lam = [0.0] * m
    active: list[int] = []
    it = 0
    while True:
        # Most violated row at the current iterate.
        p = -1
        worst = 0.0
        u0, u1 = u[0], u[1]
        if d == 3:
            u2 = u[2]
            for i, r in enumerate(rows):
                v = r[0] * u0 + r[1] * u1 + r[2] * u2 - thr[i]
                if v > worst:
                    worst, p = v, i
        else:
            for i, r in enumerate(rows):
                v = r[0] * u0 + r[1] * u1 - thr[i]
                if v > worst:
                    worst, p = v, i
        if p < 0:
            return u, OPTIMAL, it, lam
        a = rows[p]
        aa = sum(x * x for x in a)
        while True:
            it += 1
            if it > max_iter:
                return u, MAX_ITER, it, lam
            if active:
                N = [rows[j] for j in active]
                M = [[sum(x * y for x, y in zip(ni, nj)) for nj in N] for ni in N]
                r = _solve_small(M, [sum(x * y for x, y in zip(ni, a)) for ni in N])
                if r is None:
                    return u, MAX_ITER, it, lam
                z = [a[c] - sum(r[k] * N[k][c] for k in range(len(N))) for c in range(d)]
            else:
                r = []
                z = list(a)
            # Largest dual step keeping the active multipliers non-negative.
            t1 = math.inf
            drop = -1
            for k, rk in enumerate(r):
                if rk > 1e-14:
                    ratio = lam[active[k]] / rk
                    if ratio < t1:
                        t1, drop = ratio, k
            zz = sum(x * x for x in z)
            dependent = zz <= _EPS_DEP * aa
            if dependent:
                if t1 == math.inf:
                    return u, INFEASIBLE, it, lam
                t = t1
            else:
                s = sum(x * y for x, y in zip(a, u)) - bounds[p]
                t2 = s / zz
                if t2 <= t1:
                    for c in range(d):
                        u[c] -= t2 * z[c]
                    for k, j in enumerate(active):
                        lam[j] -= t2 * r[k]
                    lam[p] += t2
                    active.append(p)
                    break
                t = t1
                for c in range(d):
                    u[c] -= t * z[c]
            # Partial step: the blocking constraint leaves the active set, then retry p.
            for k, j in enumerate(active):
                lam[j] -= t * r[k]
            lam[p] += t
            lam[active[drop]] = 0.0
            del active[drop]
