"""Barrier functions and the linear constraints they put on velocity commands.

Single integrator ``x_i' = u_i`` in ``d = 2`` or ``3`` dimensions. For a pair ``(i, j)``
with ``e = x_i - x_j`` and metric ``W = diag(1 / axis_scale^2)``:

    h_ij = e^T W e - Ds^2                                     (pair barrier)
    dh_ij/dt = 2 (W e)^T (u_i - u_j) >= -alpha(h_ij)          (CBF condition)

which is the Robotarium's certificate ``-2 e^T (u_i - u_j) <= gamma h^3`` for ``W = I``
and cubic ``alpha`` (Wang, Ames, Egerstedt, "Safety barrier certificates for
collisions-free multirobot systems", IEEE T-RO 2017, eq. (12) with a single integrator).
For every wall of the (margin-shrunk) arena, ``h = x_k - lo_k`` and ``h = hi_k - x_k`` give
``-alpha_b(hi_k - x_k) <= ...``, i.e. box bounds ``-alpha_b(x_k - lo_k) <= u_k <=
alpha_b(hi_k - x_k)``.

Sampled-data guard: with the command held for ``T`` seconds, ``h`` is a convex quadratic of
the displacement, so ``h(t + T) >= h(t) + T dh/dt >= h(t) - T alpha(h)``. Capping
``alpha(h) <= h / T`` (``h >= 0``) therefore makes the discrete closed loop safe exactly.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

from cbf_filter.params import ResolvedParams

# Below this many robots a dense distance matrix beats building a k-d tree.
_BRUTE_FORCE_MAX_N = 48
# A barrier value this little below zero [m^2 or m] is floating-point round-off of h = 0:
# its bound is taken as 0 (hold, do not close in) rather than as a tiny recovery demand,
# so that the state still counts as safe and the exact-repair argument applies.
H_ROUNDOFF = 1e-12


def class_k(h: np.ndarray, gamma: float, linear: bool, sample_time: float | None) -> np.ndarray:
    """``alpha(h)``: ``gamma h`` or ``gamma h^3``, capped at ``h / sample_time`` when ``h >= 0``."""
    a = gamma * h if linear else gamma * h * h * h
    if sample_time is not None:
        # For h < 0, alpha(h) < 0 = max(h, 0) / T: the cap leaves it alone.
        a = np.minimum(a, np.maximum(h, 0.0) * (1.0 / sample_time))
    return a


@lru_cache(maxsize=8)
def _triu(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, 1)
    return i.astype(np.int64), j.astype(np.int64)


def find_pairs(positions: np.ndarray, radius: float | None) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, closer than ``radius`` (all pairs for ``None``).

    Returns ``(P, 2)`` int64, lexicographically sorted. Cost grows with the number of
    pairs found (k-d tree) for large swarms, not with ``N^2``.
    """
    n = positions.shape[0]
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    if radius is None:
        i, j = _triu(n)
        return np.stack([i, j], axis=1)
    if n <= _BRUTE_FORCE_MAX_N:
        i, j = _triu(n)
        diff = positions[i] - positions[j]
        keep = np.einsum("pk,pk->p", diff, diff) <= radius * radius
        return np.stack([i[keep], j[keep]], axis=1).astype(np.int64)
    pairs = cKDTree(positions).query_pairs(radius, output_type="ndarray").astype(np.int64)
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order]


def pair_terms(
    xi: np.ndarray, xj: np.ndarray, rp: ResolvedParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradient and bound of the pair barriers for ``e = xi - xj``, arrays ``(P, d)``.

    Returns ``g = 2 W e`` ``(P, d)``, ``b = alpha(h)`` ``(P,)`` and the centre distance
    ``(P,)``, for the constraint ``-g . u_i + g . u_j <= b``. With ``rp.recovery`` and a
    speed limit, ``b`` is raised to at least ``-||g|| r`` (``r``: inscribed speed), i.e. an
    overlapping pair is asked to separate with at most half the inscribed speed per robot,
    which stays feasible.
    """
    g, b, dist, _ = pair_terms_norm(xi, xj, rp)
    return g, b, dist


def pair_terms_norm(
    xi: np.ndarray, xj: np.ndarray, rp: ResolvedParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pair_terms` plus ``||g||`` ``(P,)`` (same arithmetic, fewer array passes).

    With a spherical metric (``W = I``), ``g = 2 e`` and ``||g|| = 2 ||e||`` exactly
    (scaling by 2 and 4 is exact in binary floating point).
    """
    e = xi - xj
    if rp.spherical:
        ee = np.einsum("pk,pk->p", e, e)
        h = ee - rp.safety_distance**2
        g = 2.0 * e
        dist = np.sqrt(ee)
        gnorm = 2.0 * dist
    else:
        we = e * rp.metric
        h = np.einsum("pk,pk->p", e, we) - rp.safety_distance**2
        g = 2.0 * we
        dist = np.sqrt(np.einsum("pk,pk->p", e, e))
        gnorm = np.sqrt(np.einsum("pk,pk->p", g, g))
    b = class_k(h, rp.gamma, rp.linear, rp.sample_time)
    b = np.where(h >= -H_ROUNDOFF, np.maximum(b, 0.0), b)
    if rp.recovery and rp.max_speed is not None:
        b = np.maximum(b, -gnorm * rp.speed_bound)
    return g, b, dist, gnorm


def box_bounds(positions: np.ndarray, rp: ResolvedParams) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis velocity bounds ``(N, d)`` from the wall barriers (``+-inf`` without arena).

    With ``rp.recovery`` and a speed limit, a robot outside the shrunk arena is asked to
    return at no more than ``speed_bound / sqrt(d)`` per axis, which the speed polytope
    always admits.
    """
    if rp.arena_lo is None:
        inf = np.full(positions.shape, np.inf)
        return -inf, inf
    h = np.concatenate([positions - rp.arena_lo, rp.arena_hi - positions])
    a = class_k(h, rp.boundary_gamma, rp.linear, rp.sample_time)
    a = np.where(h >= -H_ROUNDOFF, np.maximum(a, 0.0), a)
    n = positions.shape[0]
    lb, ub = -a[:n], a[n:]
    if rp.recovery and rp.max_speed is not None:
        cap = rp.speed_bound / np.sqrt(rp.dim)
        lb = np.minimum(lb, cap)
        ub = np.maximum(ub, -cap)
    return lb, ub


def box_bounds_point(x: list[float], rp: ResolvedParams) -> tuple[list[float], list[float]]:
    """:func:`box_bounds` of one robot at ``x`` ``(d,)`` in plain floats (same arithmetic).

    The per-robot filter calls this on its hot path, where numpy's per-call overhead
    would cost more than the handful of flops.
    """
    d = len(x)
    if rp.arena_lo is None:
        return [-math.inf] * d, [math.inf] * d
    inv_ts = None if rp.sample_time is None else 1.0 / rp.sample_time
    gamma, linear = rp.boundary_gamma, rp.linear
    cap = None
    if rp.recovery and rp.max_speed is not None:
        cap = rp.speed_bound / math.sqrt(rp.dim)
    lo_l, hi_l = rp.arena_lo.tolist(), rp.arena_hi.tolist()
    lb, ub = [], []
    for k in range(d):
        bounds = []
        for h in (x[k] - lo_l[k], hi_l[k] - x[k]):
            a = gamma * h if linear else gamma * h * h * h
            if inv_ts is not None:
                a = min(a, max(h, 0.0) * inv_ts)
            if h >= -H_ROUNDOFF:
                a = max(a, 0.0)
            bounds.append(a)
        lo, hi = -bounds[0], bounds[1]
        if cap is not None:
            lo, hi = min(lo, cap), max(hi, -cap)
        lb.append(lo)
        ub.append(hi)
    return lb, ub


def saturate(u: np.ndarray, limit: float, squared: np.ndarray | None = None) -> np.ndarray:
    """Rows of ``u`` ``(N, d)`` scaled down to norm ``<= limit`` (unchanged for ``inf``).

    The QP's target: like the Robotarium's certificates, the nominal command is first
    thresholded to the speed limit, here to the *inscribed* radius of the speed polytope,
    so that the polytope is rarely active and OSQP converges in a few iterations.
    ``squared``: the rows' squared norms ``(N,)`` if already computed.
    """
    if not np.isfinite(limit):
        return u
    norms = np.sqrt(np.einsum("nk,nk->n", u, u) if squared is None else squared)
    over = norms > limit
    if not np.any(over):
        return u
    out = u.copy()
    out[over] *= (limit / norms[over])[:, None]
    return out
