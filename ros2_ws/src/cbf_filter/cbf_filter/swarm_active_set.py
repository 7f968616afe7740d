"""Exact dual active-set solver for the centralized safety QP (the swarm-sized projection).

Problem (the centralized QP of :mod:`cbf_filter.centralized`, ``u`` stacked ``(N, d)``)::

    min 1/2 ||u - t||^2   s.t.   g_p . (u_j - u_i) <= b_p       pair rows p = (i, j)
                                 n_k . u_i <= r                  speed polytope rows (i, k)
                                 lb_ik <= u_ik <= ub_ik          wall rows

It is the Goldfarb-Idnani dual method (Math. Programming 27, 1983) with ``H = I``, as in
:mod:`cbf_filter.active_set`, but in ``N d`` variables with rows that touch one or two robots.
Each step adds the most violated row, moves along its projection onto the null space of the
active normals and drops an active row whose multiplier would turn negative; every iterate is
dual feasible and the first primal-feasible one is the exact minimiser (the QP is strictly
convex, so it is *the* optimum OSQP approximates). The work per step is one vectorised pass
over the rows plus a ``k x k`` solve with the ``k`` active rows, so a tick costs little when
few constraints bind, whatever N is; rows of different connected components of the pair
graph are orthogonal, so the method handles the components independently without being told.

Warm start: the active set of the previous tick is re-solved as equalities first (one ``k x k``
system); rows with negative multipliers are dropped until all are non-negative, which is the
exact optimum of the QP restricted to those rows, a valid dual-feasible start. If rows are
still violated, the same is tried once with them added as a batch before single steps.
Near-dependent active normals (Gram matrix close to singular) end the call with
``DEPENDENT``; the caller then solves with OSQP, so no guarantee rests on this solver's
numerics alone.
"""

from __future__ import annotations

import math

import numpy as np

OPTIMAL = 0
INFEASIBLE = 1
MAX_ITER = 2
DEPENDENT = 3
INACCURATE = 4  # the final KKT check failed (round-off on a badly conditioned active set)

_KKT_TOL = 1e-9  # relative tolerance of the final stationarity / complementarity check

_EPS_DEP = 1e-12  # null-space step this small (relative to ||a||^2): a dependent normal
_PIVOT_MIN = 1e-10  # Cholesky pivot this small (relative to the diagonal): near dependent


class SwarmProjection:
    """Rows of one tick's QP and the dual active-set method over them.

    Row ids (the order of the OSQP matrix of the centralized filter): ``[0, P)`` pairs,
    ``P + i K + k`` speed facet ``k`` of robot ``i``, ``P + N K + i d + c`` lower wall of
    robot ``i`` on axis ``c``, ``P + N K + N d + i d + c`` its upper wall.

    A row is stored as robots ``R[r] = (r1, r2)`` and coefficients ``C[r] = (c1, c2)``
    ``(2, d)`` (single-robot rows: ``r2 = r1``, ``c2 = 0``). Inner products of rows are
    taken from that structure: no dense ``N d`` vectors, and no BLAS calls, whose threading
    costs milliseconds on a busy machine for these tiny products.

    Args:
        pairs: ``(P, 2)`` robot indices ``(i, j)``.
        g: ``(P, d)`` pair row coefficients (the row is ``-g.u_i + g.u_j <= b``).
        b_pair: ``(P,)`` pair bounds, ``+inf`` for rows that cannot bind.
        normals: ``(K, d)`` speed facet normals; speed_bound: their bound ``r``.
        lb, ub: ``(N, d)`` wall bounds (``-inf`` / ``+inf`` without walls).
        singles: :func:`single_robot_rows` ``(n, normals)``, precomputed by the caller.
    """

    def __init__(self, pairs, g, b_pair, normals, speed_bound, lb, ub, singles=None) -> None:
        self.n, self.d = lb.shape
        self.bound = np.concatenate(
            [b_pair, np.full(self.n * normals.shape[0], speed_bound), -lb.ravel(), ub.ravel()]
        )
        robots, coefs, cols = single_robot_rows(self.n, normals) if singles is None else singles
        d = self.d
        self.R = np.concatenate([pairs, robots])
        self.C = np.concatenate([np.concatenate([-g, g], axis=1).reshape(-1, 2, d), coefs])
        self.last_residuals: np.ndarray | None = None  # residuals(u) of the last answer
        # Flat positions in u.ravel() of each row's 2 d coefficients (a cheap gather).
        pair_cols = (pairs[:, :, None] * d + np.arange(d)).reshape(-1, 2 * d)
        self._cols = np.concatenate([pair_cols, cols])
        self._cflat = self.C.reshape(-1, 2 * d)
        # 1 + |bound| for present rows, 1 for absent ones (their residual is -inf).
        self.scale = 1.0 + np.abs(np.where(self.bound < np.inf, self.bound, 0.0))

    # ---------------------------------------------------------------------------- rows
    def values_all(self, u: np.ndarray) -> np.ndarray:
        """``(M,)`` row values ``a_r . u`` at ``u`` ``(N, d)``."""
        return np.einsum("mk,mk->m", self._cflat, u.ravel()[self._cols])

    def residuals(self, u: np.ndarray) -> np.ndarray:
        """``(M,)`` row values minus bounds at ``u`` ``(N, d)`` (``-inf`` for absent rows)."""
        return self.values_all(u) - self.bound

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Structure ``(R, C)`` of rows ``ids`` ``(k,)``: ``(k, 2)`` robots, ``(k, 2, d)``."""
        return self.R[ids], self.C[ids]

    @staticmethod
    def gram(a, b) -> np.ndarray:
        """Inner products ``(len(a), len(b))`` of two row structures."""
        ra, ca = a
        rb, cb = b
        ka, kb = len(ra), len(rb)
        d = ca.shape[2]
        fa = ca.reshape(2 * ka, d)
        fb = cb.reshape(2 * kb, d)
        # Outer products per coordinate (d <= 3): no BLAS, no generic einsum loop.
        dots = fa[:, None, 0] * fb[None, :, 0]
        for c in range(1, d):
            dots += fa[:, None, c] * fb[None, :, c]
        dots *= ra.reshape(-1)[:, None] == rb.reshape(-1)[None, :]
        return dots.reshape(ka, 2, kb, 2).sum(axis=(1, 3))

    def combine(self, rows, weights: np.ndarray) -> np.ndarray:
        """``sum_k weights[k] * row_k`` as an ``(N, d)`` array."""
        r, c = rows
        out = np.zeros((self.n, self.d))
        np.add.at(out, r.ravel(), (c * weights[:, None, None]).reshape(-1, self.d))
        return out

    @staticmethod
    def values(rows, u: np.ndarray) -> np.ndarray:
        """Row values ``a_k . u`` ``(k,)``."""
        r, c = rows
        return np.einsum("ksd,ksd->k", c, u[r])

    # -------------------------------------------------------------------------- solve
    def solve(
        self,
        target: np.ndarray,
        warm: np.ndarray | None = None,
        tol: float = 1e-14,
        max_iter: int = 4000,
    ) -> tuple[np.ndarray, int, int, np.ndarray]:
        """Project ``target`` ``(N, d)`` onto the rows exactly.

        Args:
            target: the point to project (the thresholded nominal command).
            warm: row ids to try as the initial active set (e.g. last tick's), or ``None``.
            tol: a row counts as satisfied when its residual is ``<= tol (1 + |bound|)``.
            max_iter: limit on add / drop steps.

        Returns:
            ``(u, code, iterations, active_rows)`` with ``u`` ``(N, d)`` and ``code`` one of
            ``OPTIMAL`` (KKT conditions checked), ``INFEASIBLE``, ``MAX_ITER``,
            ``DEPENDENT`` or ``INACCURATE``.

        Kept whole: one add / drop loop on purpose: the iterate ``u``, the active set, its
        multipliers and the Gram matrix (grown or shrunk by one row and column per step) are
        updated in step with each other, and the loop reads as the primal active-set method
        step by step; split into functions it would pass that whole state back and forth.
        """
        thr = tol * self.scale
        u = target.copy()
        ids = np.zeros(0, dtype=np.int64)
        lam = np.zeros(0)
        act = self.rows(ids)
        gram = np.zeros((0, 0))
        if warm is not None and len(warm):
            start = self._warm_start(target, np.asarray(warm, dtype=np.int64))
            if start is not None:
                u, ids, lam, act, gram = start
        it = 0
        batched = False
        while True:
            raw = self.residuals(u)
            res = raw - thr
            res[ids] = -np.inf
            p = int(np.argmax(res))
            if not res[p] > 0.0:
                code = OPTIMAL if self._kkt_ok(target, u, ids, act, lam, it) else INACCURATE
                self.last_residuals = raw
                return u, code, it, ids
            if not batched:
                # Once: guess that the violated rows join the active set, as a batch (one
                # equality solve instead of one step per row). Any outcome of the warm start
                # is a valid dual-feasible start; the steps below finish the job.
                batched = True
                start = self._warm_start(target, np.concatenate([ids, np.flatnonzero(res > 0)]))
                if start is not None:
                    u, ids, lam, act, gram = start
                    continue
            row = self.rows(np.array([p]))
            aa = float(np.einsum("ksd,ksd->", row[1], row[1]))
            col = self.gram(act, row)[:, 0]  # N_S a
            lam_p = 0.0
            while True:
                it += 1
                if it > max_iter:
                    return u, MAX_ITER, it, ids
                k = len(ids)
                drop, t1 = -1, math.inf
                if k:
                    try:
                        r = np.linalg.solve(gram, col)
                    except np.linalg.LinAlgError:
                        return u, DEPENDENT, it, ids
                    pos = r > 1e-14
                    if np.any(pos):
                        ratios = np.where(pos, lam / np.where(pos, r, 1.0), math.inf)
                        drop = int(np.argmin(ratios))
                        t1 = float(ratios[drop])
                else:
                    r = lam
                # z = a - N_S^T r: the step direction in u.
                both = (np.concatenate([act[0], row[0]]), np.concatenate([act[1], row[1]]))
                z = self.combine(both, np.append(-r, 1.0))
                zz = float(np.einsum("nc,nc->", z, z))
                if zz <= _EPS_DEP * aa:
                    if t1 == math.inf:
                        return u, INFEASIBLE, it, ids
                    step = t1
                else:
                    t2 = (float(self.values(row, u)[0]) - self.bound[p]) / zz
                    if t2 <= t1:
                        u = u - t2 * z
                        lam = np.append(lam - t2 * r, lam_p + t2)
                        ids = np.append(ids, p)
                        act = both
                        grown = np.empty((k + 1, k + 1))
                        grown[:k, :k] = gram
                        grown[:k, k] = col
                        grown[k, :k] = col
                        grown[k, k] = aa
                        gram = grown
                        break
                    step = t1
                    u = u - step * z
                # Partial step: the blocking row leaves the active set, then retry p.
                lam = lam - step * r
                lam_p += step
                keep = np.arange(k) != drop
                ids, lam, col = ids[keep], lam[keep], col[keep]
                act = (act[0][keep], act[1][keep])
                gram = gram[np.ix_(keep, keep)]

    def _kkt_ok(self, t, u, ids, act, lam, steps) -> bool:
        """Certificate of optimality (primal feasibility is checked by the scan and the caller).

        Stationarity ``u = t - sum_k lam_k a_k``, dual feasibility ``lam >= 0`` and
        complementarity (every active row holds with equality), to ``_KKT_TOL``. Without
        add / drop steps (``steps == 0``) the warm start built ``u`` from that very sum with
        ``lam >= 0``, so only complementarity is left to check.
        """
        if not len(ids):
            return bool(np.array_equal(u, t))
        if steps:
            scale = 1.0 + float(np.abs(t).max())
            if float(lam.min()) < -_KKT_TOL * (1.0 + float(lam.max())):
                return False
            if float(np.abs(u - (t - self.combine(act, lam))).max()) > _KKT_TOL * scale:
                return False
        bound = self.bound[ids]
        gap = np.abs(self.values(act, u) - bound)
        return bool(np.all(gap <= _KKT_TOL * (1.0 + np.abs(bound))))

    def _warm_start(self, t: np.ndarray, warm: np.ndarray):
        """Exact optimum over the rows ``warm`` (as inequalities), or ``None``.

        Solves the equality-constrained projection and drops rows with negative multipliers
        until none is left; rows with absent (infinite) bounds are skipped.
        """
        ids = warm[np.isfinite(self.bound[warm])]
        rows = self.rows(ids)
        gram = self.gram(rows, rows)
        while len(ids):
            lam = spd_solve(gram, self.values(rows, t) - self.bound[ids])
            if lam is None:
                return None
            neg = lam < 0.0
            if not np.any(neg):
                return t - self.combine(rows, lam), ids, lam, rows, gram
            keep = ~neg
            ids = ids[keep]
            rows = (rows[0][keep], rows[1][keep])
            gram = gram[np.ix_(keep, keep)]
        return None


def spd_solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """``gram^-1 rhs`` by Cholesky, or ``None`` if ``gram`` is not safely positive definite.

    A pivot ``L_ii^2`` below ``_PIVOT_MIN`` times its diagonal entry means nearly dependent
    rows. Up to 6 x 6 (the usual warm start) in plain floats: numpy's per-call overhead
    would be most of the cost.
    """
    k = len(rhs)
    if k > 6:
        try:
            low = np.linalg.cholesky(gram)
        except np.linalg.LinAlgError:
            return None
        if float((np.diag(low) ** 2 / np.diag(gram)).min()) < _PIVOT_MIN:
            return None
        return np.linalg.solve(gram, rhs)
    G = gram.tolist()
    b = rhs.tolist()
    L = [[0.0] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1):
            acc = G[i][j] - sum(L[i][m] * L[j][m] for m in range(j))
            if i == j:
                if not acc >= _PIVOT_MIN * G[i][i] or not acc > 0.0:
                    return None
                L[i][i] = math.sqrt(acc)
            else:
                L[i][j] = acc / L[j][j]
    y = [0.0] * k
    for i in range(k):
        y[i] = (b[i] - sum(L[i][m] * y[m] for m in range(i))) / L[i][i]
    x = [0.0] * k
    for i in range(k - 1, -1, -1):
        x[i] = (y[i] - sum(L[m][i] * x[m] for m in range(i + 1, k))) / L[i][i]
    return np.array(x)


def single_robot_rows(n: int, normals: np.ndarray) -> tuple[np.ndarray, ...]:
    """Speed and wall rows of ``n`` robots in :class:`SwarmProjection`'s row order.

    Returns ``(R, C, cols)``: ``(n K + 2 n d, 2)`` robots (both entries the robot),
    ``(n K + 2 n d, 2, d)`` coefficients (second one zero) and ``(n K + 2 n d, 2 d)`` their
    positions in the flattened command. Constant for a filter: compute once and pass as
    ``singles``.
    """
    k, d = normals.shape
    eye = np.eye(d)
    robot = np.concatenate(
        [np.repeat(np.arange(n), k), np.repeat(np.arange(n), d), np.repeat(np.arange(n), d)]
    )
    coef = np.zeros((len(robot), 2, d))
    coef[:, 0] = np.concatenate(
        [np.tile(normals, (n, 1)), np.tile(-eye, (n, 1)), np.tile(eye, (n, 1))]
    )
    robots = np.stack([robot, robot], axis=1)
    return robots, coef, (robots[:, :, None] * d + np.arange(d)).reshape(-1, 2 * d)
