"""Decentralized safety filter: every robot solves its own small QP.

Wang, Ames, Egerstedt, "Safety barrier certificates for collisions-free multirobot
systems", IEEE T-RO 2017, Sec. IV-B: the pair constraint
``-2 (W e_ij)^T (u_i - u_j) <= alpha(h_ij)`` is split between the two robots,

    robot i:  -2 (W e_ij)^T u_i <= s_ij alpha(h_ij),
    robot j:  -2 (W e_ji)^T u_j <= s_ji alpha(h_ij),        s_ij + s_ji = 1,

so any pair of commands that satisfy their own halves satisfies the centralized
constraint (the halves sum to it). ``s_ij = 1/2`` by default, or ``w_i / (w_i + w_j)`` for
capability weights ``w`` (the paper uses the robots' acceleration limits; a faster robot
takes more of the avoidance). Each robot needs only the positions of the neighbours inside
its sensing radius. Its QP has ``d`` variables; it is solved exactly by the dual active-set
method of :mod:`cbf_filter.active_set` (a generic solver's per-call overhead would dominate).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from cbf_filter._checks import (
    COINCIDENT_DISTANCE,
    MAX_ABS,
    as_array,
    fallback_result,
    valid_rows,
)
from cbf_filter.active_set import INFEASIBLE, OPTIMAL, solve_projection_lists
from cbf_filter.barriers import box_bounds, box_bounds_point, find_pairs, pair_terms
from cbf_filter.errors import CBFConfigError, CBFInputError
from cbf_filter.params import CBFParams
from cbf_filter.result import CBFResult, CBFStatus, FilterStats, worst_status

_VERIFY_TOL = 1e-10
_ACTIVE_TOL = 1e-9


def _robot_rows(cols: np.ndarray) -> np.ndarray:
    """``(k, 2)`` rows ``[0, cols[k]]`` (robot 0 of a single-robot result)."""
    out = np.zeros((len(cols), 2), dtype=np.int64)
    out[:, 1] = cols
    return out


class DecentralizedCBF:
    """Per-robot safety filter (one small exact QP per robot).

    Example (the node, one robot)::

        cbf = DecentralizedCBF(dim=2, params=CBFParams(sensing_radius=1.0))
        res = cbf.filter_robot(x_i, u_hat_i, neighbour_positions)   # res.u: (d,)

    ``filter(positions, u_nominal)`` runs the same per-robot filter for a whole swarm at
    once (simulation, tests, benchmarks); robot ``i`` then sees exactly the robots inside
    its sensing radius.
    """

    def __init__(self, dim: int = 2, params: CBFParams | None = None) -> None:
        self.d = int(dim)
        self.params = params if params is not None else CBFParams()
        self.rp = self.params.resolve(self.d)
        self.stats = FilterStats()
        d = self.d
        self._none = np.zeros(0, dtype=np.int64)
        self._speed_rows = self.rp.speed_normals.tolist()
        self._speed_h = [self.rp.speed_bound] * len(self._speed_rows)
        self._unit = np.eye(d).tolist()
        self._neg_unit = (-np.eye(d)).tolist()

    # ----------------------------------------------------------------------- one robot
    def filter_robot(
        self,
        position,
        u_nominal,
        neighbor_positions,
        share: float | np.ndarray = 0.5,
    ) -> CBFResult:
        """Safe command of one robot.

        Args:
            position: ``(d,)`` own position [m, world frame].
            u_nominal: ``(d,)`` nominal velocity [m/s, world frame].
            neighbor_positions: ``(k, d)`` positions of the other robots the robot sees [m];
                those beyond ``sensing_radius`` are ignored.
            share: responsibility ``s_ij`` in (0, 1], scalar or ``(k,)`` (1 = avoid an
                uncooperative neighbour alone).

        Returns:
            :class:`CBFResult` with ``u`` of shape ``(d,)``; ``active_pairs`` rows are
            ``[0, neighbour_index]``. Braking fallback (zeros) on NaN, a coincident
            neighbour or infeasibility.
        """
        t0 = time.perf_counter()
        d = self.d
        x = as_array("position", position, (d,))
        u_hat = as_array("u_nominal", u_nominal, (d,))
        nb = np.asarray(neighbor_positions, dtype=float)
        if nb.size == 0:
            nb = nb.reshape(0, d)
        if nb.ndim != 2 or nb.shape[1] != d:
            raise CBFInputError(f"neighbor_positions: expected shape (k, {d}), got {nb.shape}")
        shares = _shares(share, nb.shape[0])
        x_l = x.tolist()
        if not (
            all(abs(v) <= MAX_ABS for v in x_l)
            and all(abs(v) <= MAX_ABS for v in u_hat.tolist())
            and (nb.size == 0 or float(np.abs(nb).max()) <= MAX_ABS)
        ):
            return self._done(
                fallback_result(
                    1,
                    d,
                    CBFStatus.INVALID_INPUT,
                    "non-finite or absurd input",
                    t0,
                    time.perf_counter(),
                    single=True,
                )
            )
        g, b, dist = pair_terms(x, nb, self.rp)
        idx = None
        rs = self.rp.sensing_radius
        if rs is not None and len(dist) and float(dist.max()) > rs:
            keep = np.flatnonzero(dist <= rs)
            g, b, dist, idx = g[keep], b[keep], dist[keep], keep
            if np.ndim(shares):
                shares = shares[keep]
        lb, ub = box_bounds_point(x_l, self.rp)
        u, status, msg, act_nb, act_face, act_speed, iters = self._solve(
            u_hat, -g, shares * b, dist, lb, ub
        )
        n_pairs = len(dist)
        if idx is not None:
            act_nb = idx[act_nb]
        result = CBFResult(
            u=u,
            found=status.ok,
            status=status,
            fallback=np.array([not status.ok]),
            active_pairs=_robot_rows(act_nb),
            active_boundary=_robot_rows(act_face),
            active_speed=np.zeros(1 if act_speed else 0, dtype=np.int64),
            n_pairs=n_pairs,
            min_distance=float(dist.min()) if n_pairs else float("inf"),
            solve_time_s=time.perf_counter() - t0,
            iterations=iters,
            message=msg,
        )
        return self._done(result)

    def _solve(self, u_hat, normals, bounds, dist, lb, ub):
        """One robot's QP: ``normals u <= bounds``, ``lb <= u <= ub`` (lists), speed polytope.

        Returns ``(u, status, message, active_neighbour_rows, active_faces, speed_active,
        iterations)``; ``u`` is zero unless the status is certified.
        """
        rp = self.rp
        none = self._none
        if len(dist) and float(dist.min()) < COINCIDENT_DISTANCE:
            return self._zeros(), CBFStatus.DEGENERATE, "coincident neighbour", none, none, False, 0
        vmax = rp.max_speed
        u_list = u_hat.tolist()
        lb_l, ub_l = lb, ub
        box_ok = all(lo <= v <= hi for lo, v, hi in zip(lb_l, u_list, ub_l))
        if len(bounds):
            res = normals @ u_hat - bounds
            pair_ok = float(res.max()) <= 0.0
        else:
            pair_ok = True
        if pair_ok and box_ok and (vmax is None or sum(v * v for v in u_list) <= vmax * vmax):
            return u_hat.copy(), CBFStatus.NOMINAL_SAFE, "", none, none, False, 0
        rows, h, live, n_live, box_index = self._rows(normals, bounds, lb_l, ub_l)
        target = u_list
        speed = math.sqrt(sum(v * v for v in u_list))
        if speed > rp.speed_bound:  # the same thresholded target as the centralized form
            target = [v * rp.speed_bound / speed for v in u_list]
        u, code, iters, lam = solve_projection_lists(rows, h, target)
        if code == INFEASIBLE:
            msg = "no command satisfies every barrier (robot overlaps a neighbour or is jammed)"
            return self._zeros(), CBFStatus.INFEASIBLE, msg, none, none, False, iters
        if code != OPTIMAL:
            msg = "active-set iteration limit"
            return self._zeros(), CBFStatus.SOLVER_ERROR, msg, none, none, False, iters
        checked = self._verify(u, lam, rows, h, live, n_live, box_index)
        if isinstance(checked, str):
            return self._zeros(), CBFStatus.SOLVER_ERROR, checked, none, none, False, iters
        act_nb, act_face, act_speed = checked
        return np.array(u), CBFStatus.SOLVED, "", act_nb, act_face, act_speed, iters

    def _rows(self, normals, bounds, lb_l, ub_l):
        """One robot's constraint rows as lists: the live pair rows, the speed polytope,
        the finite walls (``e_k . u <= ub_k``, ``-e_k . u <= -lb_k``).

        Returns ``(rows, h, live, n_live, box_index)``: ``live`` indexes the pair rows kept
        (a row whose bound exceeds ``||n|| vmax`` can never be active), ``box_index`` the
        face ``2 k`` (lower) / ``2 k + 1`` (upper) of each wall row.
        """
        vmax = self.rp.max_speed
        if len(bounds):
            if vmax is not None:
                # |n.u| <= ||n|| vmax: a row with a larger bound can never be active.
                reach = vmax * np.sqrt(np.einsum("pk,pk->p", normals, normals))
                live = np.flatnonzero(bounds <= reach)
            else:
                live = np.arange(len(bounds))
            rows = normals[live].tolist()
            h = bounds[live].tolist()
        else:
            live = self._none
            rows, h = [], []
        n_live = len(rows)
        rows += self._speed_rows
        h += self._speed_h
        box_index = []
        for k in range(self.d):
            if ub_l[k] < math.inf:
                rows.append(self._unit[k])
                h.append(ub_l[k])
                box_index.append(2 * k + 1)
            if lb_l[k] > -math.inf:
                rows.append(self._neg_unit[k])
                h.append(-lb_l[k])
                box_index.append(2 * k)
        return rows, h, live, n_live, box_index

    def _verify(self, u, lam, rows, h, live, n_live, box_index):
        """Check the active-set answer ``u`` against every row and sort its active rows.

        Returns the message of a failed check (str), else ``(active_neighbour_rows,
        active_faces, speed_active)`` (a row is active when tight or its multiplier > 0).
        """
        d = self.d
        act_nb = []
        act_face = []
        act_speed = False
        k_speed = len(self._speed_h)
        u0, u1, u2 = u[0], u[1], (u[2] if d == 3 else 0.0)
        for r_i, (row, hi) in enumerate(zip(rows, h)):
            slack = row[0] * u0 + row[1] * u1 + (row[2] * u2 if d == 3 else 0.0) - hi
            scale = 1.0 + abs(hi)
            if slack > _VERIFY_TOL * scale:
                return f"answer fails verification by {slack:.3g}"
            if slack >= -_ACTIVE_TOL * scale or lam[r_i] > 0.0:
                if r_i < n_live:
                    act_nb.append(int(live[r_i]))
                elif r_i < n_live + k_speed:
                    act_speed = True
                else:
                    act_face.append(box_index[r_i - n_live - k_speed])
        return (
            np.array(act_nb, dtype=np.int64),
            np.array(sorted(act_face), dtype=np.int64),
            act_speed,
        )

    def _zeros(self) -> np.ndarray:
        return np.zeros(self.d)

    # --------------------------------------------------------------------- whole swarm
    def filter(self, positions, u_nominal, weights=None) -> CBFResult:
        """Run every robot's own filter (what N nodes would do), vectorising the setup.

        Args:
            positions: ``(N, d)`` [m]; u_nominal: ``(N, d)`` [m/s].
            weights: ``(N,)`` positive capabilities; pair share ``w_i / (w_i + w_j)``.
                ``None``: 1/2 for every pair.

        Returns:
            :class:`CBFResult` with per-robot ``fallback``; robots with a NaN input or a
            coincident neighbour brake, the others are still filtered.
        """
        t0 = time.perf_counter()
        x, u_hat, w, bad_x, bad = self._swarm_inputs(positions, u_nominal, weights)
        n, d = x.shape
        if np.any(bad_x):
            # A robot with an unknown position cannot be avoided: everyone brakes.
            return self._done(
                fallback_result(
                    n,
                    d,
                    CBFStatus.INVALID_INPUT,
                    f"non-finite or absurd position for robots {np.flatnonzero(bad_x).tolist()}",
                    t0,
                    time.perf_counter(),
                )
            )
        pairs, normals, bounds, pair_id, dist, dist2, starts = self._rows_by_owner(x, w)
        lb, ub = box_bounds(x, self.rp)
        lb, ub = lb.tolist(), ub.tolist()
        u = np.zeros((n, d))
        fallback = np.zeros(n, dtype=bool)
        statuses = []
        messages = []
        active_pair_ids = []
        faces = []
        speed = []
        iters = 0
        for i in range(n):
            if bad[i]:
                fallback[i] = True
                statuses.append(CBFStatus.INVALID_INPUT)
                messages.append(f"robot {i}: non-finite or absurd nominal command")
                continue
            s, e = starts[i], starts[i + 1]
            ui, st, msg, act_nb, act_face, act_speed, it = self._solve(
                u_hat[i], normals[s:e], bounds[s:e], dist2[s:e], lb[i], ub[i]
            )
            iters += it
            statuses.append(st)
            if not st.ok:
                fallback[i] = True
                messages.append(f"robot {i}: {msg}")
                continue
            u[i] = ui
            active_pair_ids.append(pair_id[s:e][act_nb])
            faces.extend((i, f) for f in act_face)
            if act_speed:
                speed.append(i)
        act = np.unique(np.concatenate(active_pair_ids)) if active_pair_ids else []
        result = CBFResult(
            u=u,
            found=not np.any(fallback),
            status=worst_status(statuses),
            fallback=fallback,
            active_pairs=pairs[np.asarray(act, dtype=np.int64)],
            active_boundary=np.asarray(faces, dtype=np.int64).reshape(-1, 2),
            active_speed=np.asarray(speed, dtype=np.int64),
            n_pairs=len(pairs),
            min_distance=float(dist.min()) if len(pairs) else float("inf"),
            solve_time_s=time.perf_counter() - t0,
            iterations=iters,
            message="; ".join(messages),
        )
        return self._done(result)

    def _swarm_inputs(self, positions, u_nominal, weights):
        """Checked ``(N, d)`` positions and nominal commands, ``(N,)`` weights, and the
        ``(N,)`` masks of robots with a bad position and with a bad position or command."""
        d = self.d
        x = np.asarray(positions, dtype=float)
        if x.ndim != 2 or x.shape[1] != d:
            raise CBFInputError(f"positions: expected shape (N, {d}), got {x.shape}")
        n = x.shape[0]
        u_hat = as_array("u_nominal", u_nominal, (n, d))
        w = _weights(weights, n)
        bad_x = ~valid_rows(x)
        bad = bad_x | ~valid_rows(u_hat)
        return x, u_hat, w, bad_x, bad

    def split_constraints(self, positions, weights=None):
        """Every robot's half of every pair constraint (Wang et al. 2017, Sec. IV-B).

        Args:
            positions: ``(N, d)`` [m]; weights: ``(N,)`` capabilities or ``None`` (1/2).

        Returns:
            ``(pairs, owner, normals, bounds)``: ``pairs`` ``(P, 2)`` in range; row ``r``
            is the constraint ``normals[r] . u_owner[r] <= bounds[r]``; rows ``r`` and
            ``r + P`` are the two halves of pair ``r`` and sum to its centralized row.
        """
        x = np.asarray(positions, dtype=float)
        w = np.ones(x.shape[0]) if weights is None else np.asarray(weights, dtype=float)
        pairs, owner, normals, bounds, _, _ = self._split(x, w)
        return pairs, owner, normals, bounds

    def _rows_by_owner(self, x, w):
        """:meth:`_split` with the half-rows sorted by owner: robot ``i`` owns rows
        ``starts[i]:starts[i + 1]``; ``dist2`` is each row's pair distance."""
        pairs, owner, normals, bounds, pair_id, dist = self._split(x, w)
        dist2 = dist[pair_id]
        order = np.argsort(owner, kind="stable")
        owner, normals, bounds, pair_id, dist2 = (
            owner[order],
            normals[order],
            bounds[order],
            pair_id[order],
            dist2[order],
        )
        starts = np.searchsorted(owner, np.arange(x.shape[0] + 1))
        return pairs, normals, bounds, pair_id, dist, dist2, starts

    def _split(self, x, w):
        pairs = find_pairs(x, self.rp.sensing_radius)
        g, b, dist = pair_terms(x[pairs[:, 0]], x[pairs[:, 1]], self.rp)
        wi, wj = w[pairs[:, 0]], w[pairs[:, 1]]
        owner = np.concatenate([pairs[:, 0], pairs[:, 1]])
        normals = np.concatenate([-g, g])
        bounds = np.concatenate([wi / (wi + wj) * b, wj / (wi + wj) * b])
        pair_id = np.concatenate([np.arange(len(pairs)), np.arange(len(pairs))])
        return pairs, owner, normals, bounds, pair_id, dist

    def _done(self, result: CBFResult) -> CBFResult:
        self.stats.record(result)
        return result


def filter_batch(
    filters: Sequence[DecentralizedCBF],
    positions: Sequence,
    u_nominals: Sequence,
    neighbor_positions: Sequence,
    shares: Sequence | float = 0.5,
) -> list[CBFResult]:
    """Several robots' own filters in one call: ``filters[i].filter_robot(positions[i],
    u_nominals[i], neighbor_positions[i], shares[i])`` for every ``i``, bit for bit.

    The co-located filter nodes of one process (:mod:`cbf_filter.ros.batcher`) call this
    with their due robots. Robot ``i``'s answer depends only on its own inputs, exactly as
    alone (the per-robot QP of Wang, Ames, Egerstedt 2017, Sec. IV-B): what is shared is the
    vectorised set-up (the pair barriers of every robot's neighbours in one
    :func:`~cbf_filter.barriers.pair_terms` pass, every robot's wall bounds in one
    :func:`~cbf_filter.barriers.box_bounds` pass, the sensing-radius cut in one mask); each
    robot's QP is then solved alone by :meth:`DecentralizedCBF._solve`, and its result is
    recorded in its own filter's statistics. A robot with a non-finite or absurd input gets
    its own :meth:`~DecentralizedCBF.filter_robot` (the braking fallback).

    Args:
        filters: one filter per robot, all with the same dimension and parameters
            (:func:`batch_key`); a filter may appear once only.
        positions, u_nominals: per robot ``(d,)`` [m], ``(d,)`` [m/s].
        neighbor_positions: per robot ``(k_i, d)`` [m].
        shares: one ``s_ij`` for all, or per robot a float or ``(k_i,)``.

    Returns:
        One :class:`CBFResult` per robot, as :meth:`~DecentralizedCBF.filter_robot`;
        ``solve_time_s`` is the robot's share of the set-up plus its own solve.
    """
    n = len(filters)
    if not (len(positions) == len(u_nominals) == len(neighbor_positions) == n):
        raise CBFInputError(
            f"filter_batch: {n} filters, {len(positions)} positions, {len(u_nominals)} "
            f"nominal commands and {len(neighbor_positions)} neighbour sets: give one each"
        )
    if n == 0:
        return []
    t0 = time.perf_counter()
    key = batch_key(filters[0])
    if any(batch_key(f) != key for f in filters):
        raise CBFConfigError(
            "filters", "differ in dimension or parameters", "batch only equal filters"
        )
    results: list[CBFResult | None] = [None] * n
    rows = _batch_inputs(filters[0].d, positions, u_nominals, neighbor_positions, shares)
    rows = _own_fallbacks(filters, rows, results)
    if rows:
        _solve_together(filters, rows, results, t0)
    return results


def _batch_inputs(d, positions, u_nominals, neighbor_positions, shares) -> list[tuple]:
    """Per robot ``(index, x, u_hat, neighbours, share)``, checked as ``filter_robot`` does."""
    same = not isinstance(shares, (list, tuple)) and np.ndim(shares) == 0
    rows = []
    for i in range(len(positions)):
        x = as_array("position", positions[i], (d,))
        u_hat = as_array("u_nominal", u_nominals[i], (d,))
        nb = np.asarray(neighbor_positions[i], dtype=float)
        if nb.size == 0:
            nb = nb.reshape(0, d)
        if nb.ndim != 2 or nb.shape[1] != d:
            raise CBFInputError(f"neighbor_positions: expected shape (k, {d}), got {nb.shape}")
        rows.append((i, x, u_hat, nb, _shares(shares if same else shares[i], nb.shape[0])))
    return rows


def _own_fallbacks(filters, rows: list[tuple], results: list) -> list[tuple]:
    """Robots with a non-finite or absurd input get their own ``filter_robot`` (the braking
    fallback, into ``results``); returns the rows of the others."""
    sane = valid_rows(np.array([r[1] for r in rows])) & valid_rows(np.array([r[2] for r in rows]))
    counts = [len(r[3]) for r in rows]
    if sum(counts):
        own = np.repeat(np.arange(len(rows)), counts)
        bad_nb = ~valid_rows(np.concatenate([r[3] for r in rows]))
        sane &= np.bincount(own, bad_nb, minlength=len(rows)) == 0
    for k in np.flatnonzero(~sane).tolist():
        i, x, u_hat, nb, share = rows[k]
        results[i] = filters[i].filter_robot(x, u_hat, nb, share)
    return [r for r, ok in zip(rows, sane.tolist()) if ok]


def _solve_together(filters, rows: list[tuple], results: list, t0: float) -> None:
    """The vectorised set-up of :func:`filter_batch`, then each robot's own QP."""
    lead = filters[0]
    rp = lead.rp
    m = len(rows)
    X = np.array([r[1] for r in rows])
    counts = np.array([len(r[3]) for r in rows], dtype=np.int64)
    own = np.repeat(np.arange(m), counts)
    g, b, dist = pair_terms(X[own], np.concatenate([r[3] for r in rows]), rp)
    share_rows = np.concatenate(
        [np.broadcast_to(r[4], (c,)) for r, c in zip(rows, counts.tolist())]
    )
    local = np.arange(len(own)) - np.repeat(np.cumsum(counts) - counts, counts)
    rs = rp.sensing_radius
    if rs is not None and len(dist):  # filter_robot's cut, for every robot at once
        inside = np.flatnonzero(dist <= rs)
        g, b, dist = g[inside], b[inside], dist[inside]
        share_rows, own, local = share_rows[inside], own[inside], local[inside]
    normals = -g
    bounds = share_rows * b
    starts = np.searchsorted(own, np.arange(m + 1)).tolist()
    lb, ub = box_bounds(X, rp)
    lb, ub = lb.tolist(), ub.tolist()
    setup = (time.perf_counter() - t0) / m
    for k, (i, _, u_hat, _, _) in enumerate(rows):
        t1 = time.perf_counter()
        s, e = starts[k], starts[k + 1]
        u, status, msg, act_nb, act_face, act_speed, iters = lead._solve(
            u_hat, normals[s:e], bounds[s:e], dist[s:e], lb[k], ub[k]
        )
        result = CBFResult(
            u=u,
            found=status.ok,
            status=status,
            fallback=np.array([not status.ok]),
            active_pairs=_robot_rows(local[s:e][act_nb]),
            active_boundary=_robot_rows(act_face),
            active_speed=np.zeros(1 if act_speed else 0, dtype=np.int64),
            n_pairs=e - s,
            min_distance=float(dist[s:e].min()) if e > s else float("inf"),
            solve_time_s=setup + time.perf_counter() - t1,
            iterations=iters,
            message=msg,
        )
        results[i] = filters[i]._done(result)


def batch_key(cbf: DecentralizedCBF) -> tuple:
    """Filters with equal keys (dimension and parameters) can share a :func:`filter_batch`."""
    return (cbf.d, cbf.params)


def _shares(share, k: int):
    """The responsibility ``s_ij`` in (0, 1]: a float, or ``(k,)`` per neighbour."""
    if np.ndim(share) == 0:
        if not 0.0 < share <= 1.0:
            raise CBFConfigError("share", f"must lie in (0, 1], got {share!r}", "use 0.5")
        return float(share)
    shares = as_array("share", share, (k,))
    if np.any(~(shares > 0.0)) or np.any(shares > 1.0):
        raise CBFConfigError("share", "every share must lie in (0, 1]", "use 0.5")
    return shares


def _weights(weights, n: int) -> np.ndarray:
    """``(n,)`` positive capabilities (ones for ``None``)."""
    if weights is None:
        return np.ones(n)
    w = as_array("weights", weights, (n,))
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise CBFConfigError("weights", "must be finite and > 0", "e.g. max speeds")
    return w
