"""Centralized safety filter: one QP over all robots (exact active set, OSQP as fallback).

    minimise    sum_i ||u_i - u_hat_i||^2
    subject to  -2 (W e_ij)^T (u_i - u_j) <= alpha(h_ij)   for pairs within sensing range
                -alpha_b(x_ik - lo_k) <= u_ik <= alpha_b(hi_k - x_ik)   (walls)
                n_k^T u_i <= r                                         (speed polytope)

This is the Robotarium's ``create_single_integrator_barrier_certificate_with_boundary``
problem (Wang, Ames, Egerstedt, IEEE T-RO 2017, eq. (12)). As there, a nominal command
over the speed limit is first thresholded (``u_hat <- sat(u_hat)``, here to the inscribed
radius ``r`` of the speed polytope); unlike there, the speed limit is also a constraint
(the polytope inscribed in the speed ball), so the output itself is certified. A nominal
command that is already safe and within ``max_speed`` is returned unchanged, and so is the
thresholded command when it satisfies every row (it is then the minimiser).

Solvers: the QP is first solved *exactly* by the dual active-set method of
:mod:`cbf_filter.swarm_active_set`, warm-started from the previous tick's active set (a
small equality solve; the answer carries a KKT certificate and is the QP's unique
minimiser). If that method cannot finish (iteration limit, near-dependent active rows, a
possibly infeasible QP, or an answer that fails the exact check), OSQP solves the same QP;
after a tick that needed many add / drop steps (dense, fast-changing active sets) the next
few ticks go to OSQP directly, and OSQP's answer is then polished to the exact minimiser by
the active-set method started from OSQP's near-active rows. ``method="osqp"`` uses OSQP
only. The OSQP problem is set
up once per *sparsity pattern*, lazily on the first tick that needs it, and then only its
values are updated (``update(q, l, u, Ax)`` + warm start).

Candidate pairs: a pair row can only bind when its bound ``alpha(h)`` is below what the
speed limits can reach (``2 ||g|| vmax``), i.e. within the *active radius* (about 0.49 m
for the Robotarium's gamma = 100, Ds = 0.15 m, 0.5 m/s). The pattern holds the pairs within
``active_radius * (1 + pattern_margin)`` when built; rows of pattern pairs that are out of
sensing range or cannot bind get bound ``+inf``, so the pattern survives while robots move.
A Verlet-list skin test keeps it while no robot moved more than half the skin; after that
it is rebuilt (``method="auto"``: one pair search, OSQP is set up only on demand) or, with
``method="osqp"``, rebuilt only when a pair that is not in it came within the active
radius. The cost thus grows with the number of close pairs, not with N^2.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import osqp
import scipy.sparse as sp

from cbf_filter._checks import (
    COINCIDENT_DISTANCE,
    MAX_ABS,
    as_array,
    fallback_result,
    valid_rows,
)
from cbf_filter.barriers import box_bounds, find_pairs, pair_terms, pair_terms_norm, saturate
from cbf_filter.errors import CBFConfigError
from cbf_filter.params import CBFParams
from cbf_filter.result import CBFResult, CBFStatus, FilterStats
from cbf_filter.swarm_active_set import OPTIMAL, SwarmProjection, single_robot_rows

_OSQP_SOLVED = ("solved",)
_OSQP_INACCURATE = ("solved inaccurate",)
_OSQP_INFEASIBLE = ("primal infeasible", "primal infeasible inaccurate")
# A certified answer may exceed a row's bound c by round-off only: 1e-14 (1 + |c|). Larger
# excesses are removed exactly by shrinking (safe state), so that repeated sub-tolerance
# violations cannot accumulate into a drift of h over a long closed loop.
_FEAS_TOL = 1e-14
# In an unsafe state (some c < 0, shrinking cannot help), a recovery row may be missed by
# this much (relative), i.e. separate marginally slower; rows with c >= 0 may not.
_RECOVERY_TOL = 1e-9
_ACTIVE_TOL = 1e-7
# OSQP rows this close to their bound (relative) seed the exact polish of its answer.
_POLISH_TOL = 1e-5
# Shared empty results (zero-size, so nothing can be written into them).
_NO_ROWS = np.zeros((0, 2), dtype=np.int64)
_NO_ROBOTS = np.zeros(0, dtype=np.int64)


@dataclass
class _Pattern:
    """One OSQP problem for a fixed set of candidate pairs."""

    pairs: np.ndarray  # (P, 2) candidate pairs (superset of the pairs that may bind)
    keys: np.ndarray  # (P,) sorted i * N + j
    anchor: np.ndarray  # (N, d) positions when the pattern was built
    solver: osqp.OSQP | None = None  # set up on the first tick that needs OSQP
    perm: np.ndarray | None = None  # CSC data position -> index into the COO value vector
    const_vals: np.ndarray | None = None  # COO values of the speed and box rows (constant)


class CentralizedCBF:
    """Filter the commands of all ``n_robots`` at once (one QP per call).

    Example (the LGTC expert, one call per environment and step)::

        cbf = CentralizedCBF(n_robots=8, dim=2, params=CBFParams(arena=((-2, 2), (-2, 2))))
        res = cbf.filter(positions, u_nominal)      # (N, 2) [m], (N, 2) [m/s]
        u_safe = res.u                               # zeros for every robot if not res.found

    Args:
        n_robots: N.
        dim: 2 or 3 (single-integrator dimension).
        params: :class:`CBFParams`.
        pattern_margin: relative skin of the candidate-pair set (see module docstring).
        cache_size: sparsity patterns kept (LRU) so that a swarm oscillating between two
            neighbour graphs does not rebuild each time.
        method: ``"auto"`` (exact active-set solver, OSQP when it cannot finish) or
            ``"osqp"`` (OSQP only). Both return the same minimiser.
    """

    def __init__(
        self,
        n_robots: int,
        dim: int = 2,
        params: CBFParams | None = None,
        pattern_margin: float = 2.0,
        cache_size: int = 4,
        method: str = "auto",
    ) -> None:
        if not isinstance(n_robots, int | np.integer) or n_robots < 1:
            raise CBFConfigError("n_robots", f"must be an integer >= 1, got {n_robots!r}", "")
        if method not in ("auto", "osqp"):
            raise CBFConfigError("method", f"unknown solver method {method!r}", "auto|osqp")
        self.method = method
        if not pattern_margin >= 0.0:
            raise CBFConfigError("pattern_margin", "must be >= 0", "e.g. 0.5")
        self.n = int(n_robots)
        self.d = int(dim)
        self.params = params if params is not None else CBFParams()
        self.rp = self.params.resolve(self.d)
        self.pattern_margin = float(pattern_margin)
        self.cache_size = max(1, int(cache_size))
        self.stats = FilterStats()
        self._patterns: OrderedDict[bytes, _Pattern] = OrderedDict()
        self._current: _Pattern | None = None
        # Active rows of the last active-set answer: pair keys i * N + j, and the other rows'
        # ids counted from the first speed row (independent of the pattern).
        self._warm_keys = np.zeros(0, dtype=np.int64)
        self._warm_other = np.zeros(0, dtype=np.int64)
        self._warm_rows: np.ndarray | None = None  # the same rows as ids of _warm_pattern
        self._warm_pattern: _Pattern | None = None
        # Dense, fast-changing active sets need many active-set steps, where OSQP is cheaper:
        # after such a tick the next ``_osqp_ticks`` go straight to OSQP (doubling backoff).
        self._switch_steps = 25 + (self.n * self.d) // 8
        self._osqp_ticks = 0
        self._backoff = 0
        k = self.rp.speed_normals.shape[0]
        n, d = self.n, self.d
        # Constant rows: speed polytope (N*K rows), then identity rows for the walls (N*d).
        self._speed_rows = np.repeat(np.arange(n * k), d)
        self._speed_cols = np.tile(np.arange(d), n * k) + np.repeat(np.arange(n) * d, k * d)
        self._speed_vals = np.tile(self.rp.speed_normals.ravel(), n)
        self._box_idx = np.arange(n * d)
        self._speed_ub = np.full(n * k, self.rp.speed_bound)
        self._singles = single_robot_rows(n, self.rp.speed_normals)

    # ------------------------------------------------------------------ pattern handling
    def _need_radius(self) -> float | None:
        """Pairs closer than this must be in the pattern (``None``: every pair)."""
        return self.rp.active_radius

    def _candidate_radius(self) -> float | None:
        need = self._need_radius()
        return None if need is None else need * (1.0 + self.pattern_margin)

    def _pattern_ok(self, pat: _Pattern, x: np.ndarray) -> bool:
        need = self._need_radius()
        if need is None:
            return True
        delta = x - pat.anchor
        moved = np.einsum("nk,nk->n", delta, delta)
        if float(moved.max()) < (0.5 * need * self.pattern_margin) ** 2:
            return True  # no pair can have closed the skin since the pattern was built
        if self.method == "auto":
            return False  # a new pattern costs one pair search: OSQP is set up only on demand
        close = find_pairs(x, need)
        if len(close) == 0:
            return True
        if len(pat.pairs) == 0:
            return False
        keys = close[:, 0] * self.n + close[:, 1]
        pos = np.searchsorted(pat.keys, keys)
        pos[pos >= len(pat.keys)] = 0
        return bool(np.all(pat.keys[pos] == keys))

    def _build_pattern(self, x: np.ndarray) -> _Pattern:
        pairs = find_pairs(x, self._candidate_radius())
        key = pairs.tobytes()
        cached = self._patterns.get(key)
        if cached is not None:
            self._patterns.move_to_end(key)
            cached.anchor = x.copy()
            return cached
        pat = _Pattern(pairs, pairs[:, 0] * self.n + pairs[:, 1], x.copy())
        self._patterns[key] = pat
        while len(self._patterns) > self.cache_size:
            self._patterns.popitem(last=False)
        return pat

    def _osqp_setup(self, pat: _Pattern) -> osqp.OSQP:
        """The pattern's OSQP problem (set up on first use, then only updated)."""
        if pat.solver is not None:
            return pat.solver
        n, d = self.n, self.d
        pairs = pat.pairs
        p = len(pairs)
        k = self.rp.speed_normals.shape[0]
        # Pair rows: d entries on robot i's columns, then d on robot j's.
        pr = np.repeat(np.arange(p), 2 * d)
        pc = (
            (np.concatenate([pairs[:, :1], pairs[:, 1:]], axis=1)[:, :, None] * d)
            + np.arange(d)[None, None, :]
        ).reshape(-1)
        rows = np.concatenate([pr, p + self._speed_rows, p + n * k + self._box_idx])
        cols = np.concatenate([pc, self._speed_cols, self._box_idx])
        m = p + n * k + n * d
        order = sp.csc_matrix(
            (np.arange(1, len(rows) + 1, dtype=float), (rows, cols)), shape=(m, n * d)
        )
        perm = order.data.astype(np.int64) - 1
        const_vals = np.concatenate([self._speed_vals, np.ones(n * d)])
        vals = np.concatenate([np.ones(p * 2 * d), const_vals])
        A = sp.csc_matrix((vals[perm], order.indices, order.indptr), shape=(m, n * d))
        solver = osqp.OSQP()
        solver.setup(
            P=sp.identity(n * d, format="csc"),
            q=np.zeros(n * d),
            A=A,
            l=np.full(m, -np.inf),
            u=np.full(m, np.inf),
            verbose=False,
            polishing=True,
            warm_starting=True,
            check_termination=5,
            rho=0.01,
            eps_abs=self.rp.eps_abs,
            eps_rel=self.rp.eps_rel,
            max_iter=self.rp.max_iter,
        )
        self.stats.setups += 1
        pat.solver, pat.perm, pat.const_vals = solver, perm, const_vals
        return solver

    # ------------------------------------------------------------------------ filtering
    def filter(self, positions, u_nominal) -> CBFResult:
        """Safe commands closest to ``u_nominal``.

        Args:
            positions: ``(N, d)`` robot positions [m, world frame].
            u_nominal: ``(N, d)`` nominal velocities [m/s, world frame].

        Returns:
            :class:`CBFResult`; on NaN/inf input, coincident robots, infeasibility or a
            solver failure every robot gets zero velocity (``found=False``). Never raises
            for numerical trouble; raises :class:`CBFInputError` for wrong shapes.
        """
        t0 = time.perf_counter()
        n, d, rp = self.n, self.d, self.rp
        x = as_array("positions", positions, (n, d))
        u_hat = as_array("u_nominal", u_nominal, (n, d))
        if not (float(np.abs(x).max()) <= MAX_ABS and float(np.abs(u_hat).max()) <= MAX_ABS):
            bad = np.flatnonzero(~(valid_rows(x) & valid_rows(u_hat)))
            return self._done(
                fallback_result(
                    n,
                    d,
                    CBFStatus.INVALID_INPUT,
                    f"non-finite or absurd position / nominal command for robots {bad.tolist()}",
                    t0,
                    time.perf_counter(),
                )
            )

        pat = self._current
        if pat is None or not self._pattern_ok(pat, x):
            pat = self._current = self._build_pattern(x)
        pairs = pat.pairs
        g, b, dist, gnorm = pair_terms_norm(x[pairs[:, 0]], x[pairs[:, 1]], rp)
        rs = rp.sensing_radius
        in_range = np.ones(len(pairs), dtype=bool) if rs is None else dist <= rs
        n_pairs = int(np.count_nonzero(in_range))
        min_dist = float(dist[in_range].min()) if n_pairs else float("inf")
        if n_pairs and min_dist < COINCIDENT_DISTANCE:
            close = pairs[in_range & (dist < COINCIDENT_DISTANCE)]
            return self._done(
                fallback_result(
                    n,
                    d,
                    CBFStatus.DEGENERATE,
                    f"coincident robots {close.tolist()}: no barrier gradient",
                    t0,
                    time.perf_counter(),
                    n_pairs,
                    min_dist,
                )
            )
        b_eff = np.where(in_range, b, np.inf)
        if rp.max_speed is not None:
            # |g.(u_j - u_i)| <= 2 ||g|| vmax: a row with a larger bound can never be active.
            reach = 2.0 * rp.max_speed * gnorm
            b_eff[b_eff > reach] = np.inf
        lb, ub = box_bounds(x, rp)
        return self._filter_rows(pat, u_hat, g, b_eff, lb, ub, n_pairs, min_dist, t0)

    def _filter_rows(self, pat, u_hat, g, b_eff, lb, ub, n_pairs, min_dist, t0) -> CBFResult:
        """:meth:`filter` once the rows are known: the nominal command if it is admissible,
        else the thresholded one if admissible, else the active-set method (``auto``), else
        :meth:`_solve_osqp`. ``g`` / ``b_eff``: pair gradients and bounds (inf: inactive)."""
        n, rp = self.n, self.rp
        pairs = pat.pairs

        # Exact feasibility of the nominal command: then it is the minimiser itself (cheap
        # tests first; the pair rows only when speed and walls pass).
        speed = np.einsum("nk,nk->n", u_hat, u_hat)
        vmax = rp.max_speed
        if (
            (vmax is None or speed.max() <= vmax * vmax)
            and np.all(u_hat >= lb)
            and np.all(u_hat <= ub)
            and (
                len(pairs) == 0
                or (np.einsum("pk,pk->p", g, u_hat[pairs[:, 1]] - u_hat[pairs[:, 0]]) - b_eff).max()
                <= 0.0
            )
        ):
            return self._done(
                CBFResult(
                    u=u_hat.copy(),
                    found=True,
                    status=CBFStatus.NOMINAL_SAFE,
                    fallback=np.zeros(n, dtype=bool),
                    n_pairs=n_pairs,
                    min_distance=min_dist,
                    solve_time_s=time.perf_counter() - t0,
                )
            )

        target = saturate(u_hat, rp.speed_bound, speed)
        rows = SwarmProjection(
            pairs, g, b_eff, rp.speed_normals, rp.speed_bound, lb, ub, self._singles
        )
        if target is not u_hat and float(rows.residuals(target).max()) <= 0.0:
            # The thresholded command is admissible: it is the QP's minimiser itself.
            return self._done(
                CBFResult(
                    u=target,
                    found=True,
                    status=CBFStatus.SOLVED,
                    fallback=np.zeros(n, dtype=bool),
                    active_speed=np.flatnonzero(
                        np.einsum("nk,nk->n", target, target) >= rp.speed_bound**2 * (1 - 1e-12)
                    ),
                    n_pairs=n_pairs,
                    min_distance=min_dist,
                    solve_time_s=time.perf_counter() - t0,
                )
            )
        if self._osqp_ticks:
            self._osqp_ticks -= 1
        elif self.method == "auto":
            exact = self._solve_active_set(pat, rows, target)
            if exact is not None:
                u, res, iters = exact
                return self._done(
                    self._certified(u, pairs, rows, res, n_pairs, min_dist, iters, t0)
                )
        return self._solve_osqp(pat, rows, target, g, b_eff, lb, ub, n_pairs, min_dist, t0)

    def _solve_osqp(self, pat, rows, target, g, b_eff, lb, ub, n_pairs, min_dist, t0) -> CBFResult:
        """The safety QP by OSQP (refined when polishing fails), made exact by the
        active-set method in ``auto``, checked; a braking fallback on failure."""
        n, d, rp = self.n, self.d, self.rp
        pairs = pat.pairs
        solver = self._osqp_setup(pat)
        self.stats.osqp_solves += 1
        vals = np.concatenate([np.concatenate([-g, g], axis=1).ravel(), pat.const_vals])
        k = rp.speed_normals.shape[0]
        upper = np.concatenate([b_eff, self._speed_ub, ub.ravel()])
        lower = np.concatenate([np.full(len(pairs) + n * k, -np.inf), lb.ravel()])
        solver.update(q=-target.ravel(), l=lower, u=upper, Ax=vals[pat.perm])
        out = solver.solve(raise_error=False)
        iters = out.info.iter
        if out.info.status in _OSQP_SOLVED + _OSQP_INACCURATE and out.info.status_polish != 1:
            # Polishing did not recover the exact active-set solution: tighten, continue.
            solver.update_settings(eps_abs=rp.eps_refine, eps_rel=rp.eps_refine)
            out = solver.solve(raise_error=False)
            iters += out.info.iter
            solver.update_settings(eps_abs=rp.eps_abs, eps_rel=rp.eps_rel)
        status = out.info.status
        if status in _OSQP_INFEASIBLE:
            return self._done(
                fallback_result(
                    n,
                    d,
                    CBFStatus.INFEASIBLE,
                    "no command satisfies every barrier (robots overlap or are jammed)",
                    t0,
                    time.perf_counter(),
                    n_pairs,
                    min_dist,
                )
            )
        if status not in _OSQP_SOLVED + _OSQP_INACCURATE or out.x is None:
            return self._done(
                fallback_result(
                    n,
                    d,
                    CBFStatus.SOLVER_ERROR,
                    f"OSQP status {status!r}",
                    t0,
                    time.perf_counter(),
                    n_pairs,
                    min_dist,
                )
            )
        u = np.array(out.x, dtype=float).reshape(n, d)
        exact = self._polish(pat, rows, target, u) if self.method == "auto" else None
        if exact is not None:
            u, res, steps = exact
            return self._done(
                self._certified(u, pairs, rows, res, n_pairs, min_dist, iters + steps, t0)
            )
        u, res, message = self._verify(u, rows)
        if res is None:
            return self._done(
                fallback_result(
                    n,
                    d,
                    CBFStatus.SOLVER_ERROR,
                    message,
                    t0,
                    time.perf_counter(),
                    n_pairs,
                    min_dist,
                )
            )
        if self.method == "auto":
            # The rows active in OSQP's answer: the warm start of the next active-set solve.
            self._set_warm(pat, np.flatnonzero(self._active_rows(rows, res)))
        return self._done(self._certified(u, pairs, rows, res, n_pairs, min_dist, iters, t0))

    def _polish(self, pat: _Pattern, rows: SwarmProjection, target, u_osqp):
        """OSQP's answer made exact: the active-set method from OSQP's (near-)active rows.

        Returns ``(u, residuals, steps)`` or ``None`` (then OSQP's answer is checked and,
        if need be, shrunk onto the feasible set as before).
        """
        near = np.flatnonzero(rows.residuals(u_osqp) >= -_POLISH_TOL * rows.scale)
        u, code, steps, active = rows.solve(target, near, max_iter=self._switch_steps)
        if code != OPTIMAL:
            return None
        u, res, _ = self._verify(u, rows, rows.last_residuals)
        if res is None:
            return None
        self._set_warm(pat, active)
        return u, res, steps

    def _solve_active_set(self, pat: _Pattern, rows: SwarmProjection, target: np.ndarray):
        """Exact minimiser by the dual active-set method, or ``None`` (then OSQP decides).

        Returns ``(u, residuals, iterations)`` for an answer that passed :meth:`_verify`.
        """
        pairs = pat.pairs
        rp = self.rp
        warm = None
        if self._warm_rows is not None and self._warm_pattern is pat:
            warm = self._warm_rows  # same pattern: the row ids are still valid
        elif len(self._warm_keys) or len(self._warm_other):
            keys = self._warm_keys
            pos = np.searchsorted(pat.keys, keys)
            ok = pos < len(pat.keys)
            ok[ok] = pat.keys[pos[ok]] == keys[ok]
            pos = pos[ok]
            warm = np.concatenate([pos, len(pairs) + self._warm_other])
        # Far more steps than variables: a dense, fast-changing active set (or round-off
        # trouble); OSQP is cheaper then.
        limit = min(rp.max_iter, 50 + self.n * self.d)
        u, code, iters, active = rows.solve(target, warm, max_iter=limit)
        self.stats.active_set_solves += 1
        if code != OPTIMAL or iters > self._switch_steps:
            self._backoff = min(64, max(4, 2 * self._backoff))
            self._osqp_ticks = self._backoff
        else:
            self._backoff = 0
        if code != OPTIMAL:
            self._set_warm(pat, active[:0])
            return None
        u, res, _ = self._verify(u, rows, rows.last_residuals)
        if res is None:
            return None
        self._set_warm(pat, active)
        return u, res, iters

    def _set_warm(self, pat: _Pattern, rows: np.ndarray) -> None:
        """Remember the active rows ``rows`` (ids in ``pat``'s row order) for the next tick."""
        is_pair = rows < len(pat.pairs)
        self._warm_keys = pat.keys[rows[is_pair]]
        self._warm_other = rows[~is_pair] - len(pat.pairs)
        self._warm_rows, self._warm_pattern = rows, pat

    def constraints(self, positions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pair constraints of the QP for ``positions`` ``(N, d)`` [m].

        Returns ``(pairs, g, b)``: pairs ``(P, 2)`` in sensing range, and the rows
        ``-g[p] . u_i + g[p] . u_j <= b[p]`` (``g = 2 W (x_i - x_j)``, ``b = alpha(h)``).
        """
        x = as_array("positions", positions, (self.n, self.d))
        pairs = find_pairs(x, self.rp.sensing_radius)
        g, b, _ = pair_terms(x[pairs[:, 0]], x[pairs[:, 1]], self.rp)
        return pairs, g, b

    def _verify(self, u: np.ndarray, rows: SwarmProjection, res: np.ndarray | None = None):
        """Check the solver's answer against the exact rows; shrink away round-off.

        In a safe state every bound is >= 0, so ``u -> s u`` with ``s`` in [0, 1] keeps the
        satisfied rows satisfied and fixes the violated ones (the admissible set is
        star-shaped around zero velocity). ``res``: ``rows.residuals(u)`` if already at
        hand. Returns ``(u, residuals, message)``; ``residuals`` (``(M,)``, row order of
        :class:`SwarmProjection`) is ``None`` when the answer cannot be certified.
        """
        bound = rows.bound
        if res is None:
            res = rows.residuals(u)
        scaled = res / rows.scale  # -inf for absent rows (no wall, pair that cannot bind)
        worst = float(scaled.max())
        if worst <= _FEAS_TOL:
            return u, res, ""
        if float(bound.min()) < 0.0:
            # Unsafe state, shrinking cannot help: recovery rows (c < 0) may be missed by
            # _RECOVERY_TOL (separate marginally slower), the others by round-off only.
            recovery = bound < 0.0
            if (
                float(scaled[~recovery].max(initial=-np.inf)) <= _FEAS_TOL
                and float(scaled[recovery].max()) <= _RECOVERY_TOL
            ):
                return u, res, ""
            return u, None, f"solver answer violates a constraint by {worst:.3g} (relative)"
        # Largest s in [0, 1] with every row a.(s u) <= c, c >= 0.
        over = res > 0.0
        s = min(1.0, float(np.min(bound[over] / (res[over] + bound[over]))))
        if s < 1.0 - 1e-9:  # count shrinks beyond round-off
            self.stats.repairs += 1
        u = u * max(s, 0.0)
        return u, rows.residuals(u), ""

    @staticmethod
    def _active_rows(rows: SwarmProjection, res: np.ndarray) -> np.ndarray:
        """``(M,)`` rows that hold with equality (to _ACTIVE_TOL); absent rows never do."""
        return res >= -_ACTIVE_TOL * rows.scale

    def _certified(self, u, pairs, rows, res, n_pairs, min_dist, iters, t0):
        n, d = self.n, self.d
        p = len(pairs)
        nk = n * self.rp.speed_normals.shape[0]
        act = self._active_rows(rows, res)
        walls = act[p + nk :]
        boundary = _NO_ROWS
        if walls.any():  # rows [robot, 2 * axis + side], sorted like np.nonzero
            faces = np.stack([walls[: n * d].reshape(n, d), walls[n * d :].reshape(n, d)], 2)
            boundary = np.stack(np.nonzero(faces.reshape(n, 2 * d)), axis=1).astype(np.int64)
        speed = _NO_ROBOTS
        if nk and float(res[p : p + nk].max()) >= -_ACTIVE_TOL:
            on = (res[p : p + nk] >= -_ACTIVE_TOL).reshape(n, nk // n)
            speed = np.flatnonzero(on.any(axis=1))
        return CBFResult(
            u=u,
            found=True,
            status=CBFStatus.SOLVED,
            fallback=np.zeros(n, dtype=bool),
            active_pairs=pairs[act[:p]],
            active_boundary=boundary,
            active_speed=speed,
            n_pairs=n_pairs,
            min_distance=min_dist,
            solve_time_s=time.perf_counter() - t0,
            iterations=int(iters),
        )

    def _done(self, result: CBFResult) -> CBFResult:
        self.stats.record(result)
        return result
