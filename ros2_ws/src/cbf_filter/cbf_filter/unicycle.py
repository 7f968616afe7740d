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
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from cbf_filter._checks import as_array
from cbf_filter.barriers import H_ROUNDOFF, box_bounds_point, class_k
from cbf_filter.centralized import CentralizedCBF
from cbf_filter.decentralized import DecentralizedCBF
from cbf_filter.errors import CBFConfigError
from cbf_filter.params import CBFParams
from cbf_filter.result import CBFResult


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
    margin = params.boundary_margin
    margin = params.safety_distance / 2 if margin is None else margin
    return dataclasses.replace(
        params,
        safety_distance=params.safety_distance + 2 * l,
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

    def filter_robot(self, pose, u_nominal, neighbor_positions, share=0.5):
        """Safe projection-point velocity ``(2,)`` [m/s] of one unicycle, or zeros when no
        command satisfies every barrier (returns ``(u, found)``).

        Args:
            pose: ``(3,)`` ``(x, y, theta)`` of the axle [m, rad].
            u_nominal: ``(2,)`` nominal projection-point velocity [m/s], world frame.
            neighbor_positions: ``(k, 2)`` neighbours' centres [m]; farther than
                ``sensing_radius`` are ignored.
            share: responsibility for each pair in (0, 1], scalar or ``(k,)``.
        """
        rp = self.rp
        pose = as_array("pose", pose, (3,))
        u_hat = as_array("u_nominal", u_nominal, (2,))
        nb = np.asarray(neighbor_positions, dtype=float).reshape(-1, 2)
        p = pose[:2]
        e = np.array([np.cos(pose[2]), np.sin(pose[2])])
        n = np.array([-e[1], e[0]])
        a_hat, b_hat = float(e @ u_hat), float(n @ u_hat)
        lo, hi = -np.inf, np.inf
        if nb.size:
            diff = p[None, :] - nb
            dist = np.hypot(diff[:, 0], diff[:, 1])
            keep = dist <= (np.inf if rp.sensing_radius is None else rp.sensing_radius)
            h = dist[keep] ** 2 - rp.safety_distance**2
            share = np.broadcast_to(np.asarray(share, dtype=float), dist.shape)[keep]
            bound = share * class_k(h, rp.gamma, rp.linear, rp.sample_time)
            bound = np.where(h >= -H_ROUNDOFF, np.maximum(bound, 0.0), bound)
            c = -2.0 * (diff[keep] @ e)
            for ci, bi in zip(c.tolist(), bound.tolist()):
                if ci > 1e-12:
                    hi = min(hi, bi / ci)
                elif ci < -1e-12:
                    lo = max(lo, bi / ci)
                elif bi < 0.0:  # unsafe and this robot cannot move along the pair's normal
                    lo, hi = max(lo, 0.0), min(hi, 0.0)
        lb, ub = box_bounds_point(p.tolist(), rp)
        for k in range(2):
            if abs(e[k]) > 1e-12:
                a, b = lb[k] / e[k], ub[k] / e[k]
                lo, hi = max(lo, min(a, b)), min(hi, max(a, b))
        if lo > hi:
            return np.zeros(2), False
        a = min(max(a_hat, lo), hi)
        vmax = rp.max_speed
        if vmax is not None:
            a = min(max(a, -vmax), vmax)
            room = math.sqrt(max(vmax * vmax - a * a, 0.0))
            b_hat = min(max(b_hat, -room), room)
        return a * e + b_hat * n, True
