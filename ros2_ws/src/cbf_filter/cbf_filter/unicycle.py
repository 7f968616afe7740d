"""Unicycles (ground robots) through the near-identity projection-point map.

A unicycle ``(x, y, theta)`` with inputs ``(v, omega)`` is not a single integrator, but the
point ``p = (x, y) + l (cos theta, sin theta)`` ahead of it is:

    p' = R(theta) diag(1, l) (v, omega)            (invertible for l > 0)

(Olfati-Saber 2002; the Robotarium's ``create_si_to_uni_mapping``). The filter therefore
certifies the projection points as 2-D single integrators and maps the result back with
``v = cos(theta) u_x + sin(theta) u_y``, ``omega = (-sin(theta) u_x + cos(theta) u_y) / l``.
Since each body centre lies within ``l`` of its projection point, the projection points
keep ``Ds + 2 l`` apart and ``margin + l`` from the walls, so the *centres* keep ``Ds`` and
``margin``. ``|v| <= ||u||`` keeps the speed limit.

:class:`AxleCBF` (the per-robot node's ground robots) keeps the same command, the projection
point's velocity, but certifies the axle itself with plain ``Ds``: nothing inflated by ``l``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import numpy as np

from cbf_filter._checks import COINCIDENT_DISTANCE, MAX_ABS, as_array, fallback_result
from cbf_filter.barriers import H_ROUNDOFF, box_bounds_point, class_k
from cbf_filter.centralized import CentralizedCBF
from cbf_filter.decentralized import DecentralizedCBF, _shares
from cbf_filter.errors import CBFConfigError, CBFInputError
from cbf_filter.params import CBFParams
from cbf_filter.result import CBFResult, CBFStatus, FilterStats

_ACTIVE_TOL = 1e-9  # a row within this of its bound at the output is active


def projection_points(poses: np.ndarray, l: float) -> np.ndarray:
    """``(N, 3)`` poses ``(x, y, theta)`` [m, rad] -> ``(N, 2)`` projection points [m]."""
    th = poses[:, 2]
    return poses[:, :2] + l * np.stack([np.cos(th), np.sin(th)], axis=1)


def uni_to_si(poses: np.ndarray, v_omega: np.ndarray, l: float) -> np.ndarray:
    """Unicycle inputs ``(N, 2)`` (v [m/s], omega [rad/s]) -> projection-point velocity."""
    c, s = np.cos(poses[:, 2]), np.sin(poses[:, 2])
    v, w = v_omega[:, 0], v_omega[:, 1]
    return np.stack([c * v - l * s * w, s * v + l * c * w], axis=1)


def si_to_uni(poses: np.ndarray, u: np.ndarray, l: float) -> np.ndarray:
    """Projection-point velocity ``(N, 2)`` [m/s] -> unicycle inputs (v, omega)."""
    c, s = np.cos(poses[:, 2]), np.sin(poses[:, 2])
    return np.stack([c * u[:, 0] + s * u[:, 1], (-s * u[:, 0] + c * u[:, 1]) / l], axis=1)


def projection_point_params(params: CBFParams, l: float) -> CBFParams:
    """Parameters for the projection points that keep the *centres* within ``params``.

    ``safety_distance + 2 l`` between points and wall margin ``+ l`` (module docstring).
    """
    spaced = dataclasses.replace(params, safety_distance=params.safety_distance + 2 * l)
    if params.arena is None:  # no walls, no margin
        return spaced
    margin = params.boundary_margin
    margin = params.safety_distance / 2 if margin is None else margin
    return dataclasses.replace(
        spaced,
        boundary_margin=tuple(np.atleast_1d(np.asarray(margin, dtype=float) + l).tolist())
        if np.ndim(margin)
        else float(margin) + l,
    )


class UnicycleCBF:
    """Safety filter for unicycles (centralized or decentralized form).

    Args:
        n_robots: N (needed by the centralized form).
        params: :class:`CBFParams` for the *body centres* (Ds, wall margin, speed).
        projection_distance: ``l`` [m] > 0.
        form: ``"centralized"`` or ``"decentralized"``.
        max_yaw_rate: ``|omega|`` limit [rad/s] or ``None``. A command over it is shrunk
            towards zero (per robot in the decentralized form, all robots by the same factor
            in the centralized form, which keeps every pair constraint satisfied).
    """

    def __init__(
        self,
        n_robots: int | None = None,
        params: CBFParams | None = None,
        projection_distance: float = 0.05,
        form: str = "centralized",
        max_yaw_rate: float | None = None,
    ) -> None:
        params = params if params is not None else CBFParams()
        if not (np.isfinite(projection_distance) and projection_distance > 0):
            raise CBFConfigError("projection_distance", "must be > 0 [m]", "e.g. 0.05")
        if max_yaw_rate is not None and not max_yaw_rate > 0:
            raise CBFConfigError("max_yaw_rate", "must be > 0 [rad/s] or None", "e.g. 1.0")
        l = float(projection_distance)
        inner = projection_point_params(params, l)
        self.l = l
        self.max_yaw_rate = max_yaw_rate
        self.form = form
        if form == "centralized":
            if n_robots is None:
                raise CBFConfigError("n_robots", "required by the centralized form", "pass N")
            self.si = CentralizedCBF(n_robots, 2, inner)
        elif form == "decentralized":
            self.si = DecentralizedCBF(2, inner)
        else:
            raise CBFConfigError("form", f"unknown form {form!r}", "centralized|decentralized")
        self.stats = self.si.stats

    def filter(self, poses, v_omega) -> CBFResult:
        """Safe ``(v, omega)`` closest (at the projection points) to the nominal ones.

        Args:
            poses: ``(N, 3)`` (x [m], y [m], theta [rad]), world frame.
            v_omega: ``(N, 2)`` nominal (v [m/s], omega [rad/s]).
        """
        t0 = time.perf_counter()
        poses = np.asarray(poses, dtype=float)
        n = poses.shape[0] if poses.ndim == 2 else -1
        poses = as_array("poses", poses, (n, 3))
        v_omega = as_array("v_omega", v_omega, (n, 2))
        p = projection_points(poses, self.l)
        u_hat = uni_to_si(poses, v_omega, self.l)
        res = self.si.filter(p, u_hat)
        u_p = res.u
        if self.max_yaw_rate is not None and res.found:
            w = np.abs(si_to_uni(poses, u_p, self.l)[:, 1])
            over = w > self.max_yaw_rate
            if np.any(over):
                scale = np.ones(n)
                scale[over] = self.max_yaw_rate / w[over]
                if self.form == "centralized":
                    scale[:] = scale.min()
                u_p = u_p * scale[:, None]
        cmd = si_to_uni(poses, u_p, self.l)
        cmd[res.fallback] = 0.0
        return dataclasses.replace(
            res, u=cmd, u_projection=u_p, solve_time_s=time.perf_counter() - t0
        )


class AxleCBF:
    """Per-robot safety filter that certifies a unicycle's *body centre* (axle point) with Ds.

    The command ``u`` is still the world-frame velocity of the projection point (the contract
    of the world and the ground bridge: ``v = e . u``, ``omega = e_perp . u / l`` with
    ``e = (cos theta, sin theta)``), but the point kept safe is the axle ``p`` itself, whose
    velocity is ``p' = v e = e e^T u``: linear in ``u``. For a neighbour at ``p_j`` the pair
    barrier ``h = ||p - p_j||^2 - Ds^2`` (Wang, Ames, Egerstedt, T-RO 2017, eq. (12), the same
    class-K function and sampled-data cap as :mod:`cbf_filter.barriers`) gives the row

        -2 (p - p_j) . e  alpha_u  <=  share * alpha(h),        alpha_u = e . u,

    and the walls give ``lb_k <= alpha_u e_k <= ub_k``: every row bounds the one scalar
    ``alpha_u``, so the minimiser of ``||u - u_hat||^2`` is closed-form: ``alpha_u`` clipped to
    the interval, the turning component ``e_perp . u`` unchanged (turning in place never moves
    the axle). Since ``0`` is in the interval whenever every ``h >= 0``, the filter is feasible
    wherever the robots are safe; with the nominal within ``max_speed`` the output is too.

    Unlike the projection-point certificate (:class:`UnicycleCBF`, points ``Ds + 2 l`` apart),
    nothing is inflated by ``l``: a ground robot keeps exactly ``Ds`` from its neighbours'
    centres, like a drone, so it can stand on a cell centre next to another robot whenever the
    cell size exceeds ``Ds``, whatever its heading. The price: a robot whose heading is
    perpendicular to a neighbour cannot help that pair (its row is ``0 <= share * alpha(h)``),
    the neighbour's own share then keeps it. Approximation: the sampled-data cap assumes a
    straight displacement over ``sample_time``; the axle moves on an arc while it turns
    (second order in ``omega * sample_time``).

    Args:
        params: :class:`CBFParams` for the body centres (planar: ``dim = 2``).
    """

    def __init__(self, params: CBFParams | None = None) -> None:
        self.params = params if params is not None else CBFParams()
        self.rp = self.params.resolve(2)
        self.stats = FilterStats()

    def filter_robot(self, pose, u_nominal, neighbor_positions, share=0.5) -> CBFResult:
        """Safe projection-point velocity of one unicycle (the node's call).

        Args:
            pose: ``(3,)`` ``(x, y, theta)`` of the axle [m, rad].
            u_nominal: ``(2,)`` nominal projection-point velocity [m/s], world frame.
            neighbor_positions: ``(k, 2)`` neighbours' centres [m] (drones and ground robots
                alike: their positions as published, nothing shifted); farther than
                ``sensing_radius`` are ignored.
            share: responsibility for each pair in (0, 1], scalar or ``(k,)``.

        Returns:
            :class:`CBFResult` as :meth:`DecentralizedCBF.filter_robot`: ``u`` ``(2,)`` the
            safe projection-point velocity; ``active_pairs`` rows ``[0, neighbour_index]``;
            ``NOMINAL_SAFE`` when ``u`` is the nominal, ``SOLVED`` when it was changed. The
            braking fallback (zeros): ``INFEASIBLE`` when no forward speed satisfies every
            barrier, ``DEGENERATE`` on a coincident neighbour, ``INVALID_INPUT`` on a
            non-finite or absurd input.
        """
        t0 = time.perf_counter()
        rp = self.rp
        pose = as_array("pose", pose, (3,))
        u_hat = as_array("u_nominal", u_nominal, (2,))
        nb = np.asarray(neighbor_positions, dtype=float)
        if nb.size == 0:
            nb = nb.reshape(0, 2)
        if nb.ndim != 2 or nb.shape[1] != 2:
            raise CBFInputError(f"neighbor_positions: expected shape (k, 2), got {nb.shape}")
        shares = _shares(share, nb.shape[0])
        if not (
            float(np.abs(pose).max()) <= MAX_ABS
            and float(np.abs(u_hat).max()) <= MAX_ABS
            and (nb.size == 0 or float(np.abs(nb).max()) <= MAX_ABS)
        ):
            return self._fallback(CBFStatus.INVALID_INPUT, "non-finite or absurd input", t0)
        p = pose[:2]
        e = np.array([math.cos(pose[2]), math.sin(pose[2])])
        n = np.array([-e[1], e[0]])
        a_hat, b_hat = float(e @ u_hat), float(n @ u_hat)
        diff = p[None, :] - nb
        dist = np.hypot(diff[:, 0], diff[:, 1])
        idx = np.arange(len(dist))
        if rp.sensing_radius is not None:
            idx = np.flatnonzero(dist <= rp.sensing_radius)
        n_pairs = len(idx)
        min_dist = float(dist[idx].min()) if n_pairs else math.inf
        if n_pairs and min_dist < COINCIDENT_DISTANCE:
            return self._fallback(CBFStatus.DEGENERATE, "coincident neighbour", t0, n_pairs)
        lo, hi, rows = self._interval(p, e, diff[idx], dist[idx], shares, idx)
        if lo > hi:
            msg = "no forward speed satisfies every barrier (robot overlaps a neighbour)"
            return self._fallback(CBFStatus.INFEASIBLE, msg, t0, n_pairs, min_dist)
        a = min(max(a_hat, lo), hi)
        b = b_hat
        vmax = rp.max_speed
        speed_active = False
        if vmax is not None:
            a_v = min(max(a, -vmax), vmax)
            room = math.sqrt(max(vmax * vmax - a_v * a_v, 0.0))
            b = min(max(b_hat, -room), room)
            speed_active = a_v != a or b != b_hat
            a = a_v
        changed = a != a_hat or b != b_hat
        act_nb = [j for c, bound, j in rows["pairs"] if abs(c * a - bound) <= _ACTIVE_TOL]
        act_face = [f for c, bound, f in rows["walls"] if abs(c * a - bound) <= _ACTIVE_TOL]
        result = CBFResult(
            u=u_hat.copy() if not changed else a * e + b * n,
            found=True,
            status=CBFStatus.SOLVED if changed else CBFStatus.NOMINAL_SAFE,
            fallback=np.array([False]),
            active_pairs=_rows(act_nb if changed else []),
            active_boundary=_rows(act_face if changed else []),
            active_speed=np.zeros(1 if speed_active else 0, dtype=np.int64),
            n_pairs=n_pairs,
            min_distance=min_dist,
            solve_time_s=time.perf_counter() - t0,
        )
        self.stats.record(result)
        return result

    def _interval(self, p, e, diff, dist, shares, idx):
        """The interval ``[lo, hi]`` of the forward component ``alpha_u = e . u`` that every
        pair row and wall allows (class docstring), and the rows ``(c, bound, index)`` that
        bound it (pairs: neighbour index; walls: face ``2 * axis + side``)."""
        rp = self.rp
        lo, hi = -math.inf, math.inf
        rows = {"pairs": [], "walls": []}
        if len(dist):
            h = dist**2 - rp.safety_distance**2
            share = shares if np.ndim(shares) == 0 else shares[idx]
            bound = share * class_k(h, rp.gamma, rp.linear, rp.sample_time)
            bound = np.where(h >= -H_ROUNDOFF, np.maximum(bound, 0.0), bound)
            c = -2.0 * (diff @ e)
            for ci, bi, j in zip(c.tolist(), bound.tolist(), idx.tolist()):
                if ci > 1e-12:
                    hi = min(hi, bi / ci)
                elif ci < -1e-12:
                    lo = max(lo, bi / ci)
                elif bi < 0.0:  # unsafe and this robot cannot move along the pair's normal
                    lo, hi = max(lo, 0.0), min(hi, 0.0)
                rows["pairs"].append((ci, bi, j))
        lb, ub = box_bounds_point(p.tolist(), rp)
        for k in range(2):
            if abs(e[k]) > 1e-12:
                a, b = lb[k] / e[k], ub[k] / e[k]
                lo, hi = max(lo, min(a, b)), min(hi, max(a, b))
                rows["walls"] += [(float(e[k]), lb[k], 2 * k), (float(e[k]), ub[k], 2 * k + 1)]
        return lo, hi, rows

    def _fallback(self, status, message, t0, n_pairs=0, min_distance=math.inf) -> CBFResult:
        result = fallback_result(
            1, 2, status, message, t0, time.perf_counter(), n_pairs, min_distance, single=True
        )
        self.stats.record(result)
        return result


def _rows(cols) -> np.ndarray:
    """``(k, 2)`` rows ``[0, cols[k]]`` (robot 0 of a single-robot result)."""
    out = np.zeros((len(cols), 2), dtype=np.int64)
    out[:, 1] = cols
    return out


def filter_batch_axle(
    filters: Sequence[AxleCBF],
    poses: Sequence,
    u_nominals: Sequence,
    neighbor_positions: Sequence,
    shares: Sequence | float = 0.5,
) -> list[CBFResult]:
    """Several ground robots' own :meth:`AxleCBF.filter_robot` calls (the batched CBF nodes,
    :mod:`cbf_filter.ros.batcher`): one call per robot, so equal to each alone by
    construction. The closed form costs a few microseconds per robot; a vectorised set-up as
    :func:`cbf_filter.decentralized.filter_batch` has would save little."""
    n = len(filters)
    if not (len(poses) == len(u_nominals) == len(neighbor_positions) == n):
        raise CBFInputError(
            f"filter_batch_axle: {n} filters, {len(poses)} poses, {len(u_nominals)} nominal "
            f"commands and {len(neighbor_positions)} neighbour sets: give one each"
        )
    if np.ndim(shares) == 0:
        shares = [shares] * n
    return [
        f.filter_robot(p, u, nb, s)
        for f, p, u, nb, s in zip(filters, poses, u_nominals, neighbor_positions, shares)
    ]


def axle_batch_key(cbf: AxleCBF) -> tuple:
    """Axle filters with equal keys can share a :func:`filter_batch_axle` (never a
    :func:`cbf_filter.decentralized.filter_batch`: the first item tells them apart)."""
    return ("axle", cbf.params)
