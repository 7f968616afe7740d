"""Parameters of the safety filter, validated once, with errors that name the field."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cbf_filter.errors import CBFConfigError

CLASS_K_FUNCTIONS = ("linear", "cubic")
#: Fastest filter rate [Hz]: a node's re-filter timer at a faster rate rounds to a period of
#: 0 ns in rclpy, a busy loop (``control_hz:=1e300``).
MAX_CONTROL_HZ = 1e4


@dataclass(frozen=True)
class CBFParams:
    """Barrier-certificate parameters (Robotarium defaults where one exists).

    Attributes:
        gamma: class-K gain gamma of the pair barriers [1/s for linear, 1/(s m^4) cubic].
        safety_distance: Ds, minimum centre-to-centre distance [m].
        class_k: ``"cubic"`` (alpha(h) = gamma h^3, the Robotarium's) or ``"linear"``
            (alpha(h) = gamma h).
        max_speed: speed limit [m/s] per robot, or ``None`` for none.
        arena: ``((xmin, xmax), (ymin, ymax)[, (zmin, zmax)])`` [m], world frame, or ``None``
            for no walls. Extra axes beyond the filter dimension are ignored, so a 3-axis
            swarm arena serves 2-D robots too.
        boundary_margin: distance the robot centres keep from the walls [m]; a scalar, one
            value per axis ``(d,)`` or per face ``(d, 2)``. ``None``: ``safety_distance / 2``.
        boundary_gamma: class-K gain of the wall barriers; ``None``: ``gamma``.
        sensing_radius: pairs farther apart than this [m] get no constraint (what the robot
            can see); ``None``: every pair. Must exceed ``safety_distance`` by more than the
            distance two robots close in one step (``2 * max_speed * sample_time``).
        sample_time: hold time of a command [s]. When set, the class-K value is capped at
            ``h / sample_time`` for ``h >= 0`` so that the *sampled* closed loop (command held
            constant for ``sample_time``) keeps ``h >= 0`` exactly, not only in continuous
            time. ``None``: the plain continuous-time constraint.
        speed_facets: facets of the regular polygon (2-D) inscribed in the speed disc that
            stands in for ``||u|| <= max_speed`` inside the QP (3-D: a fixed 26-facet
            polyhedron). The command never exceeds ``max_speed``; in every direction at
            least ``cos(pi / speed_facets) * max_speed`` is reachable.
        axis_scale: ``(d,)`` semi-axes ratio of the safety ellipsoid (e.g. ``(1, 1, 2)`` keeps
            drones twice as far apart vertically, for downwash); distance is measured as
            ``||diag(1/axis_scale)(xi - xj)||``. ``None``: a sphere.
        recovery: when already unsafe (h < 0), ask for separation at no more than half the
            speed limit per robot, so that recovery stays feasible instead of braking.
        eps_abs, eps_rel, max_iter: OSQP tolerances and iteration limit (centralized form).
            The answer is then *polished* (an exact solve on the detected active set); only
            when polishing fails, OSQP continues to ``eps_refine`` and polishes again. Either
            way the answer is checked against the exact rows; residual round-off is removed
            by shrinking the command towards zero (counted as a *repair*).
    """

    gamma: float = 100.0
    safety_distance: float = 0.15
    class_k: str = "cubic"
    max_speed: float | None = 0.5
    arena: tuple | None = None
    boundary_margin: float | tuple | None = None
    boundary_gamma: float | None = None
    sensing_radius: float | None = None
    sample_time: float | None = None
    speed_facets: int = 16
    axis_scale: tuple | None = None
    recovery: bool = True
    eps_abs: float = 1e-3
    eps_rel: float = 1e-3
    eps_refine: float = 1e-5
    max_iter: int = 4000

    def resolve(self, dim: int) -> ResolvedParams:
        """Validate for a ``dim``-dimensional single integrator and precompute arrays."""
        return _resolve(self, dim)


@dataclass(frozen=True)
class ResolvedParams:
    """Validated, array-valued parameters for one dimension (internal)."""

    dim: int
    gamma: float
    boundary_gamma: float
    safety_distance: float
    linear: bool
    max_speed: float | None
    arena_lo: np.ndarray | None  # (d,) wall positions minus margins [m]
    arena_hi: np.ndarray | None
    sensing_radius: float | None
    sample_time: float | None
    speed_normals: np.ndarray  # (K, d) unit normals of the speed polytope (K = 0: none)
    speed_bound: float  # n_k . u <= speed_bound; also the polytope's inscribed radius
    metric: np.ndarray  # (d,) W = 1 / axis_scale^2
    spherical: bool  # W = I
    recovery: bool
    active_radius: float | None  # beyond this centre distance [m] a pair row is never active
    eps_abs: float
    eps_rel: float
    eps_refine: float
    max_iter: int


def _positive(name: str, value, fix: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CBFConfigError(name, f"expected a number, got {value!r}", fix) from None
    if not math.isfinite(v) or v <= 0.0:
        raise CBFConfigError(name, f"must be a finite number > 0, got {value!r}", fix)
    return v


def _resolve(p: CBFParams, dim: int) -> ResolvedParams:
    if dim not in (2, 3):
        raise CBFConfigError("dim", f"must be 2 or 3, got {dim!r}", "use 2 (planar) or 3")
    gamma = _positive("gamma", p.gamma, "set gamma > 0 (Robotarium: 100)")
    ds = _positive("safety_distance", p.safety_distance, "set safety_distance > 0 [m]")
    if p.class_k not in CLASS_K_FUNCTIONS:
        raise CBFConfigError(
            "class_k", f"unknown class-K function {p.class_k!r}", "use 'linear' or 'cubic'"
        )
    bgamma = _positive(
        "boundary_gamma", gamma if p.boundary_gamma is None else p.boundary_gamma, "set > 0"
    )
    vmax = _positive("max_speed", p.max_speed, "set max_speed > 0 [m/s] or None", True)
    rs = _positive("sensing_radius", p.sensing_radius, "set > safety_distance or None", True)
    if rs is not None and rs <= ds:
        raise CBFConfigError(
            "sensing_radius",
            f"{rs} m does not exceed safety_distance {ds} m",
            "robots must see each other before they are too close: raise sensing_radius",
        )
    ts = _positive("sample_time", p.sample_time, "set the command hold time [s] or None", True)
    if not isinstance(p.speed_facets, int | np.integer) or p.speed_facets < 4:
        raise CBFConfigError(
            "speed_facets", f"must be an integer >= 4, got {p.speed_facets!r}", "use 8 or 32"
        )
    metric = _metric(p, dim)
    arena_lo, arena_hi = _arena_box(p, dim, ds)
    if vmax is None:
        normals = np.zeros((0, dim))
        bound = math.inf
    else:
        normals, ratio = speed_polytope(dim, int(p.speed_facets))
        bound = vmax * ratio
    active_radius = _active_radius(gamma, p.class_k == "linear", ds, vmax, ts, metric, rs)
    return ResolvedParams(
        dim=dim,
        gamma=gamma,
        boundary_gamma=bgamma,
        safety_distance=ds,
        linear=p.class_k == "linear",
        max_speed=vmax,
        arena_lo=arena_lo,
        arena_hi=arena_hi,
        sensing_radius=rs,
        sample_time=ts,
        speed_normals=normals,
        speed_bound=bound,
        metric=metric,
        spherical=bool(np.all(metric == 1.0)),
        recovery=bool(p.recovery),
        active_radius=active_radius,
        eps_abs=_positive("eps_abs", p.eps_abs, "e.g. 1e-3"),
        eps_rel=_positive("eps_rel", p.eps_rel, "e.g. 1e-3"),
        eps_refine=_positive("eps_refine", p.eps_refine, "e.g. 1e-5"),
        max_iter=int(_positive("max_iter", p.max_iter, "e.g. 4000")),
    )


def _metric(p: CBFParams, dim: int) -> np.ndarray:
    """``(dim,)`` diagonal of the distance metric: ``1 / axis_scale**2`` (ones if None)."""
    if p.axis_scale is None:
        return np.ones(dim)
    scale = np.asarray(p.axis_scale, dtype=float)
    if scale.shape != (dim,) or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise CBFConfigError(
            "axis_scale", f"need {dim} positive numbers, got {p.axis_scale!r}", "or None"
        )
    return 1.0 / scale**2


def _arena_box(p: CBFParams, dim: int, ds: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(lo, hi)``, each ``(dim,)`` [m]: the arena shrunk by the boundary margins, or
    ``(None, None)`` without an arena."""
    if p.arena is None:
        if p.boundary_margin is not None:
            raise CBFConfigError(
                "boundary_margin",
                "set, but there is no arena to keep it from",
                "set arena too, or leave boundary_margin unset",
            )
        return None, None
    try:
        arena = np.asarray(p.arena, dtype=float)
    except (TypeError, ValueError):
        raise CBFConfigError(
            "arena", f"not a list of (min, max) pairs: {p.arena!r}", "e.g. ((-2, 2), (-2, 2))"
        ) from None
    if arena.ndim != 2 or arena.shape[1] != 2 or arena.shape[0] < dim:
        raise CBFConfigError(
            "arena",
            f"need at least {dim} (min, max) pairs, got shape {arena.shape}",
            "e.g. ((-2, 2), (-2, 2), (0, 2))",
        )
    arena = arena[:dim]
    if not np.all(np.isfinite(arena)) or np.any(arena[:, 1] <= arena[:, 0]):
        raise CBFConfigError(
            "arena",
            f"every axis needs finite min < max, got {arena.tolist()}",
            "e.g. ((-2, 2), (-2, 2)); as the node parameter [-2.0, 2.0, -2.0, 2.0]",
        )
    margin_raw = ds / 2 if p.boundary_margin is None else p.boundary_margin
    try:
        margin = np.broadcast_to(
            np.asarray(margin_raw, dtype=float).reshape(
                (dim, 1) if np.ndim(margin_raw) == 1 else np.shape(margin_raw)
            ),
            (dim, 2),
        )
    except ValueError:
        raise CBFConfigError(
            "boundary_margin",
            f"need a scalar, {dim} values or {dim}x2 values, got {margin_raw!r}",
            "e.g. 0.075",
        ) from None
    if not np.all(np.isfinite(margin)) or np.any(margin < 0):
        raise CBFConfigError("boundary_margin", "must be finite and >= 0", "e.g. 0.075")
    arena_lo = arena[:, 0] + margin[:, 0]
    arena_hi = arena[:, 1] - margin[:, 1]
    if np.any(arena_hi <= arena_lo):
        raise CBFConfigError(
            "boundary_margin", "the margins leave no room inside the arena", "shrink them"
        )
    return arena_lo, arena_hi


def _active_radius(gamma, linear, ds, vmax, ts, metric, rs) -> float | None:
    """Largest centre distance at which a pair row can still be active, or ``None``.

    A pair row ``-g.(u_i - u_j) <= alpha(h)`` can only bind when ``alpha(h) <= 2 ||g|| vmax``
    (both commands within the speed limit). With ``W`` between ``w_lo I`` and ``w_hi I``,
    ``h >= w_lo d^2 - Ds^2`` and ``||g|| <= 2 w_hi d``; ``alpha(h) / d`` grows with ``d``,
    so bisection finds the bound. Used to keep the QP's candidate pairs few.
    """
    if vmax is None:
        return rs
    w_lo, w_hi = float(np.min(metric)), float(np.max(metric))

    def may_bind(d: float) -> bool:
        h = w_lo * d * d - ds * ds
        a = gamma * h if linear else gamma * h**3
        if ts is not None and h > 0:
            a = min(a, h / ts)
        return a <= 4.0 * w_hi * d * vmax

    lo, hi = ds / math.sqrt(w_lo), 1e3
    if may_bind(hi):
        return rs
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if may_bind(mid) else (lo, mid)
    radius = hi * (1 + 1e-9)
    return radius if rs is None else min(radius, rs)


@lru_cache(maxsize=16)
def speed_polytope(dim: int, facets: int = 8) -> tuple[np.ndarray, float]:
    """Unit normals ``(K, d)`` and ratio ``r`` with ``{u : n_k . u <= r vmax}`` inside the ball.

    2-D: the regular ``facets``-gon, ``r = cos(pi / facets)``. 3-D: the 26 directions of
    ``{-1, 0, 1}^3 minus 0``; ``r`` is the reciprocal of the largest vertex norm of
    ``{n_k . u <= 1}``, found by enumerating the vertices once.
    """
    if dim == 2:
        ang = 2.0 * np.pi * np.arange(facets) / facets
        normals = np.stack([np.cos(ang), np.sin(ang)], axis=1)
        return normals, math.cos(math.pi / facets)
    grid = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij"))
    dirs = grid.reshape(3, -1).T
    dirs = dirs[np.any(dirs != 0, axis=1)].astype(float)
    normals = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    idx = np.array(
        [
            (a, b, c)
            for a in range(len(normals))
            for b in range(a + 1, len(normals))
            for c in range(b + 1, len(normals))
        ]
    )
    mats = normals[idx]  # (T, 3, 3)
    ok = np.abs(np.linalg.det(mats)) > 1e-9
    verts = np.linalg.solve(mats[ok], np.ones((int(ok.sum()), 3, 1)))[..., 0]
    inside = np.all(verts @ normals.T <= 1.0 + 1e-9, axis=1)
    rmax = float(np.max(np.linalg.norm(verts[inside], axis=1)))
    return normals, 1.0 / rmax


# ----------------------------------------------------------------- from a swarm config
def _unset(value) -> bool:
    """``None``, ``""`` and NaN mean "not set" (the node's parameter defaults)."""
    return (
        value is None
        or (isinstance(value, str) and value == "")
        or (isinstance(value, float) and math.isnan(value))
    )


def _pick(value, from_config, default):
    """Explicit value > swarm config > built-in default."""
    if not _unset(value):
        return value
    return from_config if from_config is not None else default


def control_rate(swarm=None, control_hz=None, min_hz: float = 0.0) -> float:
    """Command rate [Hz] of a robot's filter: ``control_hz`` > the swarm config's
    ``rates.control_hz`` > 20 (raises :class:`CBFConfigError` unless finite, ``> 0``, at least
    ``min_hz`` and at most :data:`MAX_CONTROL_HZ`). The node passes ``min_hz = 1 /
    CMD_TIMEOUT_S`` (a nominal is fresh that long only; ``1e-300`` Hz overflowed its timer)."""
    hz = float(_pick(control_hz, None if swarm is None else swarm.rates.control_hz, 20.0))
    if not (hz > 0.0 and min_hz <= hz <= MAX_CONTROL_HZ):
        low = f"[{min_hz:g}" if min_hz > 0.0 else "(0"
        raise CBFConfigError(
            "control_hz", f"must be in {low}, {MAX_CONTROL_HZ:g}] Hz, got {hz}", "e.g. 20"
        )
    return hz


def from_config(
    swarm=None,
    robot=None,
    dim: int = 2,
    *,
    gamma=None,
    safety_distance=None,
    class_k=None,
    max_speed=None,
    sensing_radius=None,
    arena=None,
    boundary_margin=None,
    control_hz=None,
    sample_time=None,
) -> CBFParams:
    """The :class:`CBFParams` one robot's filter runs (what ``cbf_filter.ros.node`` builds).

    Every keyword is an explicit value that wins; ``None``, ``""``, NaN (and an ``arena`` of
    ``[NaN]``) mean "not set": then the swarm config ``swarm`` (a ``sim_bridge`` ``SwarmConfig``,
    read duck-typed: ``safety.{distance, gamma, class_k}``, ``sensing_radius``,
    ``arena.{x, y, z}``, ``rates.control_hz``) and the robot's entry ``robot`` (``max_speed``)
    decide, else the built-in defaults: gamma 100, Ds 0.15 m, cubic, 0.5 m/s, sensing radius
    1.0 m, no walls, 20 Hz.

    Args:
        dim: 2 (planar point or unicycle projection point) or 3 (Crazyflie).
        arena: ``[xmin, xmax, ymin, ymax(, zmin, zmax)]`` [m] (flat, as the node parameter).
        boundary_margin: wall margin [m]; unset: ``Ds / 2``. With ``dim = 3`` there is none
            below (a drone may rest on the floor). Set without an arena: an error.
        sample_time: command hold time [s]; unset: ``1 / control_rate(swarm, control_hz)``.

    Returns:
        Parameters with tuples only (hashable: robots with equal parameters can share a filter).

    Raises:
        CBFConfigError: naming the field (the rest is validated by
        :meth:`CBFParams.resolve` when a filter is built).
    """
    sw, rc = swarm, robot
    safety = None if sw is None else sw.safety
    hz = control_rate(sw, control_hz)
    if arena is None or (len(arena) == 1 and _unset(arena[0])):
        walls = None if sw is None else (sw.arena.x, sw.arena.y, sw.arena.z)
    else:
        flat = list(arena)
        if len(flat) not in (4, 6):
            raise CBFConfigError(
                "arena", f"need 4 or 6 numbers, got {len(flat)}", "[xmin, xmax, ymin, ymax]"
            )
        walls = tuple(flat[k : k + 2] for k in range(0, len(flat), 2))
    if walls is None and not _unset(boundary_margin):
        # a margin with no walls to keep it from guarded nothing, silently
        raise CBFConfigError(
            "boundary_margin",
            "set, but there is no arena to keep it from",
            "set arena (or the swarm config's arena), or leave boundary_margin unset",
        )
    ds = float(_pick(safety_distance, None if safety is None else safety.distance, 0.15))
    margin = float(ds / 2 if _unset(boundary_margin) else boundary_margin)
    boundary = ((margin, margin),) * 2 + (((0.0, margin),) if dim == 3 else ())
    return CBFParams(
        gamma=float(_pick(gamma, None if safety is None else safety.gamma, 100.0)),
        safety_distance=ds,
        class_k=str(_pick(class_k, None if safety is None else safety.class_k, "cubic")),
        max_speed=float(_pick(max_speed, None if rc is None else rc.max_speed, 0.5)),
        arena=None if walls is None else tuple(tuple(w) for w in walls),
        boundary_margin=boundary if walls is not None else None,
        sensing_radius=float(_pick(sensing_radius, None if sw is None else sw.sensing_radius, 1.0)),
        sample_time=1.0 / hz if _unset(sample_time) else float(sample_time),
    )
