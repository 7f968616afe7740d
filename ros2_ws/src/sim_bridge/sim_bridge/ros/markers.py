"""``/swarm/markers`` builder: arrays in, ``visualization_msgs/MarkerArray`` out.

Pure functions (message types, no rclpy node), so any node can add its own layer: call
:func:`swarm_markers` for the world's layers and append your markers under your own
namespace (``ns``), e.g. the policy node's cluster colours or the CBF's filtered velocity.

Layers (marker ``ns``): ``robots`` (one SPHERE_LIST, colour by mode), ``names`` (text),
``safety`` (LINE_LIST circles of radius ``Ds / 2`` around each robot, so touching circles
mean distance ``Ds``), ``consumers`` (cylinder per consumer, height and opacity scale with
the remaining fraction of demand), ``demand`` (text of remaining demand per type),
``comm`` (LINE_LIST of links within the communication radius C).

Routing missions (:func:`routing_markers`, published by the world next to those layers):
``routing_grid`` (LINE_LIST: the cell lines, or only the outline above
:data:`MAX_GRID_LINES` lines a side), ``routing_obstacles`` (CUBE_LIST, one cube per obstacle
cell), ``routing_tasks`` (SPHERE_LIST of the open tasks, orange) and
``routing_visited`` (the visited tasks, greyed). :func:`cluster_markers` is the layer a DMAR
agent node publishes for its robot (``dmar_cluster``: a SPHERE coloured by cluster id, marker
``id`` = robot index, as the policy nodes' ``lgtc_cluster``). :func:`arrow_markers` draws one
arrow per robot (the policy nodes' ``lgtc_nominal`` / ``lgtc_filtered`` commands).
"""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from sim_bridge.routing import Grid
from sim_bridge.topics import WORLD_FRAME

#: RGBA per sim mode index (grounded, taking_off, flying, landing, failed).
MODE_COLORS = (
    (0.6, 0.6, 0.6, 1.0),
    (0.2, 0.6, 1.0, 1.0),
    (0.1, 0.4, 0.9, 1.0),
    (0.9, 0.6, 0.1, 1.0),
    (0.9, 0.1, 0.1, 1.0),
)
_CIRCLE = np.stack(
    [np.cos(np.linspace(0, 2 * math.pi, 17)), np.sin(np.linspace(0, 2 * math.pi, 17))], axis=1
)


def _rgba(r: float, g: float, b: float, a: float) -> ColorRGBA:
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a))


def _marker(ns: str, mid: int, mtype: int, stamp: Time, frame: str) -> Marker:
    m = Marker()
    m.header.frame_id = frame
    m.header.stamp = stamp
    m.ns = ns
    m.id = mid
    m.type = mtype
    m.action = Marker.ADD
    m.pose.orientation.w = 1.0
    return m


def _points(xyz: np.ndarray) -> list[Point]:
    return [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in xyz]


def swarm_markers(
    *,
    names: list[str] | tuple[str, ...],
    positions: np.ndarray,
    modes: np.ndarray,
    body_radius: np.ndarray,
    safety_distance: float,
    consumer_names: list[str] | tuple[str, ...],
    consumer_positions: np.ndarray,
    consumer_radius: np.ndarray,
    remaining: np.ndarray,
    initial_demand: np.ndarray,
    resource_types: tuple[str, ...],
    comm_radius: float | None,
    stamp: Time | None = None,
    frame: str = WORLD_FRAME,
) -> MarkerArray:
    """MarkerArray of the swarm.

    Args:
        names: ``N`` robot names.
        positions: ``(N, 3)`` [m]; rows with NaN (unknown pose) are skipped.
        modes: ``(N,)`` sim mode indices (see :data:`MODE_COLORS`).
        body_radius: ``(N,)`` [m].
        safety_distance: CBF ``Ds`` [m].
        consumer_names, consumer_positions, consumer_radius: ``M`` consumers, ``(M, 2)`` and
            ``(M,)`` [m].
        remaining, initial_demand: ``(M, R)`` remaining and initial demand.
        resource_types: ``R`` names.
        comm_radius: draw links between robots within it [m]; ``None`` for no links.
        stamp: header stamp (zero time if omitted).
        frame: fixed frame.
    """
    stamp = stamp if stamp is not None else Time()
    pos = np.asarray(positions, dtype=float).reshape(-1, 3)
    known = np.isfinite(pos).all(axis=1)
    out = MarkerArray()
    out.markers.extend(
        _robot_layers(names, pos, known, modes, body_radius, safety_distance, stamp, frame)
    )
    init = np.asarray(initial_demand, dtype=float)
    rem = np.asarray(remaining, dtype=float)
    for m, cname in enumerate(consumer_names):
        out.markers.extend(
            _consumer_layers(
                m,
                cname,
                consumer_positions[m],
                float(consumer_radius[m]),
                rem[m],
                init[m] if init.size else init,
                resource_types,
                stamp,
                frame,
            )
        )
    out.markers.append(_comm_layer(pos, known, comm_radius, stamp, frame))
    return out


def _robot_layers(names, pos, known, modes, body_radius, safety_distance, stamp, frame):
    """``robots`` (SPHERE_LIST by mode), ``safety`` (``Ds / 2`` rings), ``names`` (text)."""
    robots = _marker("robots", 0, Marker.SPHERE_LIST, stamp, frame)
    diameter = 2.0 * float(np.max(body_radius)) if len(body_radius) else 0.1
    robots.scale.x = robots.scale.y = robots.scale.z = max(diameter, 0.02)
    robots.points = _points(pos[known])
    robots.colors = [_rgba(*MODE_COLORS[int(k) % len(MODE_COLORS)]) for k in modes[known]]
    out = [robots]

    safety = _marker("safety", 0, Marker.LINE_LIST, stamp, frame)
    safety.scale.x = 0.005
    safety.color = _rgba(1.0, 0.3, 0.3, 0.5)
    ring = _CIRCLE * (safety_distance / 2.0)
    seg = np.concatenate([ring[:-1], ring[1:]], axis=1).reshape(-1, 2)  # (32, 2) endpoints
    pts = []
    for p in pos[known]:
        xyz = np.column_stack([seg + p[:2], np.full(len(seg), p[2])])
        pts.extend(_points(xyz))
    safety.points = pts
    out.append(safety)

    for i in np.nonzero(known)[0]:
        text = _marker("names", int(i), Marker.TEXT_VIEW_FACING, stamp, frame)
        text.pose.position = Point(x=pos[i, 0], y=pos[i, 1], z=pos[i, 2] + 0.12)
        text.scale.z = 0.08
        text.color = _rgba(1.0, 1.0, 1.0, 0.9)
        text.text = names[i]
        out.append(text)
    return out


def _consumer_layers(m, cname, xy, radius, rem, init, resource_types, stamp, frame):
    """Consumer ``m``'s ``consumers`` cylinder (scaled by the remaining demand fraction)
    and its ``demand`` label; ``rem`` / ``init``: its ``(R,)`` remaining / initial demand."""
    total0 = float(init.sum()) if init.size else 0.0
    frac = float(rem.sum()) / total0 if total0 > 0 else 0.0
    cyl = _marker("consumers", m, Marker.CYLINDER, stamp, frame)
    height = 0.02 + 0.3 * frac
    x, y = xy
    cyl.pose.position = Point(x=float(x), y=float(y), z=height / 2.0)
    cyl.scale.x = cyl.scale.y = 2.0 * radius
    cyl.scale.z = height
    cyl.color = _rgba(0.9, 0.15, 0.15, 0.2 + 0.6 * frac) if frac > 0 else _rgba(0.2, 0.8, 0.2, 0.3)
    label = _marker("demand", m, Marker.TEXT_VIEW_FACING, stamp, frame)
    label.pose.position = Point(x=float(x), y=float(y), z=height + 0.1)
    label.scale.z = 0.08
    label.color = _rgba(1.0, 0.9, 0.9, 1.0)
    parts = [f"{k}={rem[j]:.2f}" for j, k in enumerate(resource_types)]
    label.text = f"{cname}: " + " ".join(parts)
    return [cyl, label]


def _comm_layer(pos, known, comm_radius, stamp, frame) -> Marker:
    """``comm``: LINE_LIST of the links between known robots within ``comm_radius``."""
    comm = _marker("comm", 0, Marker.LINE_LIST, stamp, frame)
    comm.scale.x = 0.004
    comm.color = _rgba(0.3, 0.9, 0.3, 0.35)
    if comm_radius is not None and known.sum() > 1:
        idx = np.nonzero(known)[0]
        p = pos[idx]
        d = np.linalg.norm(p[:, None, :] - p[None, :, :], axis=2)
        a, b = np.nonzero(np.triu(d <= comm_radius, k=1))
        ends = np.empty((2 * len(a), 3))
        ends[0::2], ends[1::2] = p[a], p[b]
        comm.points = _points(ends)
    return comm


#: Above this many cells a side, ``routing_grid`` draws only the grid's outline.
MAX_GRID_LINES = 100
#: Cluster colours (tab10); cluster id ``c`` gets ``CLUSTER_COLORS[c % 10]``, -1 grey.
CLUSTER_COLORS = (
    (0.12, 0.47, 0.71),
    (1.0, 0.5, 0.05),
    (0.17, 0.63, 0.17),
    (0.84, 0.15, 0.16),
    (0.58, 0.4, 0.74),
    (0.55, 0.34, 0.29),
    (0.89, 0.47, 0.76),
    (0.5, 0.5, 0.5),
    (0.74, 0.74, 0.13),
    (0.09, 0.75, 0.81),
)


def routing_markers(
    *,
    grid: Grid,
    obstacles: np.ndarray,
    task_cells: np.ndarray,
    task_visited: np.ndarray,
    stamp: Time | None = None,
    frame: str = WORLD_FRAME,
) -> MarkerArray:
    """Marker layers of a routing mission (module docstring): grid, obstacles, tasks.

    Args:
        grid: the routing grid (:class:`sim_bridge.routing.Grid`).
        obstacles: ``(rows, cols)`` bool.
        task_cells: ``(T, 2)`` ``[row, col]``.
        task_visited: ``(T,)`` bool.
        stamp: header stamp (zero time if omitted).
        frame: fixed frame.
    """
    stamp = stamp if stamp is not None else Time()
    cs = grid.cell_size
    out = MarkerArray()
    (x0, x1), (y0, y1) = grid.extent
    lines = _marker("routing_grid", 0, Marker.LINE_LIST, stamp, frame)
    lines.scale.x = 0.004
    lines.color = _rgba(0.7, 0.7, 0.7, 0.6)
    fine = max(grid.rows, grid.cols) <= MAX_GRID_LINES
    xs = x0 + cs * np.arange(grid.cols + 1) if fine else np.array([x0, x1])
    ys = y0 + cs * np.arange(grid.rows + 1) if fine else np.array([y0, y1])
    ends = [((x, y0, 0.0), (x, y1, 0.0)) for x in xs] + [((x0, y, 0.0), (x1, y, 0.0)) for y in ys]
    lines.points = _points(np.array(ends, dtype=float).reshape(-1, 3))
    out.markers.append(lines)

    cubes = _marker("routing_obstacles", 0, Marker.CUBE_LIST, stamp, frame)
    cubes.scale.x = cubes.scale.y = cs
    cubes.scale.z = cs / 2.0
    cubes.color = _rgba(0.25, 0.25, 0.3, 0.9)
    cells = np.argwhere(np.asarray(obstacles, dtype=bool))
    xy = grid.centre(cells).reshape(-1, 2)
    cubes.points = _points(np.column_stack([xy, np.full(len(xy), cs / 4.0)]))
    out.markers.append(cubes)

    tasks = np.asarray(task_cells, dtype=float).reshape(-1, 2)
    seen = np.asarray(task_visited, dtype=bool).reshape(-1)
    for ns, mask, rgba in (
        ("routing_tasks", ~seen, (1.0, 0.55, 0.0, 0.95)),
        ("routing_visited", seen, (0.55, 0.55, 0.55, 0.5)),
    ):
        layer = _marker(ns, 0, Marker.SPHERE_LIST, stamp, frame)
        layer.scale.x = layer.scale.y = layer.scale.z = cs / 2.0
        layer.color = _rgba(*rgba)
        txy = grid.centre(tasks[mask]).reshape(-1, 2)
        layer.points = _points(np.column_stack([txy, np.full(len(txy), cs / 4.0)]))
        out.markers.append(layer)
    return out


def cluster_markers(
    *,
    positions: np.ndarray,
    cluster_ids: np.ndarray,
    robot_ids: np.ndarray | None = None,
    stamp: Time | None = None,
    frame: str = WORLD_FRAME,
    ns: str = "dmar_cluster",
    diameter: float = 0.15,
) -> MarkerArray:
    """One SPHERE per robot coloured by its cluster (``dmar_cluster`` layer).

    Args:
        positions: ``(K, 3)`` [m] of the robots drawn (a DMAR node passes its own robot).
        cluster_ids: ``(K,)`` int cluster id (e.g. the centroid's robot index), -1 for none
            (grey, translucent).
        robot_ids: ``(K,)`` robot indices used as marker ids (default ``0..K-1``), so several
            nodes publishing one robot each never overwrite each other's markers.
        stamp: header stamp (zero time if omitted).
        frame: fixed frame.
        ns: marker namespace.
        diameter: sphere diameter [m].
    """
    stamp = stamp if stamp is not None else Time()
    pos = np.asarray(positions, dtype=float).reshape(-1, 3)
    ids = np.asarray(cluster_ids, dtype=np.int64).reshape(-1)
    rids = np.arange(len(pos)) if robot_ids is None else np.asarray(robot_ids).reshape(-1)
    out = MarkerArray()
    for p, cid, rid in zip(pos, ids.tolist(), rids.tolist()):
        m = _marker(ns, int(rid), Marker.SPHERE, stamp, frame)
        m.pose.position = Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))
        m.scale.x = m.scale.y = m.scale.z = float(diameter)
        m.color = (
            _rgba(*CLUSTER_COLORS[cid % len(CLUSTER_COLORS)], 0.8)
            if cid >= 0
            else _rgba(0.6, 0.6, 0.6, 0.3)
        )
        out.markers.append(m)
    return out


def arrow_markers(
    *,
    starts: np.ndarray,
    vectors: np.ndarray,
    robot_ids: np.ndarray,
    ns: str,
    rgba: tuple[float, float, float, float],
    stamp: Time | None = None,
    frame: str = WORLD_FRAME,
    shaft: float = 0.02,
) -> MarkerArray:
    """One ARROW per robot from ``starts`` to ``starts + vectors`` (e.g. a velocity command
    [m/s] drawn as a 1 s displacement).

    Args:
        starts: ``(K, 3)`` [m] arrow tails (the robots' positions).
        vectors: ``(K, 3)`` tail-to-tip vectors [m].
        robot_ids: ``(K,)`` marker ids (the robots' indices: one node's arrow never replaces
            another robot's).
        ns: marker namespace (one layer in rviz).
        rgba: colour of the layer.
        stamp: header stamp (zero time if omitted).
        frame: fixed frame.
        shaft: shaft diameter [m]; the head is 2.5 times wider.
    """
    stamp = stamp if stamp is not None else Time()
    tails = np.asarray(starts, dtype=float).reshape(-1, 3)
    tips = tails + np.asarray(vectors, dtype=float).reshape(-1, 3)
    out = MarkerArray()
    for tail, tip, rid in zip(tails, tips, np.asarray(robot_ids).reshape(-1).tolist()):
        m = _marker(ns, int(rid), Marker.ARROW, stamp, frame)
        m.points = _points(np.stack([tail, tip]))
        m.scale.x, m.scale.y, m.scale.z = float(shaft), 2.5 * float(shaft), 2.5 * float(shaft)
        m.color = _rgba(*rgba)
        out.markers.append(m)
    return out
