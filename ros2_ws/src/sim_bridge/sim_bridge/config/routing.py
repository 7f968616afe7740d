"""The ``routing`` section (DMAR): the grid over the arena, the MovingAI map, and the radii a
routing mission derives from ``routing.k``. Obstacles and tasks: :mod:`.cells`."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sim_bridge.config.cells import check_reachable, check_robot_cells, obstacles, tasks
from sim_bridge.config.checks import POSITIVE, Checker, Rule, rules_of
from sim_bridge.config.files import resolve_package_path
from sim_bridge.config.limits import MAX_CELLS, MAX_MAP_BYTES
from sim_bridge.config.schema import Arena, RobotConfig
from sim_bridge.config.swarm import RoutingConfig, routing_comm_radius
from sim_bridge.routing import Grid, MapError, parse_movingai_map

ROUTING_KEYS = (
    "cell_size",
    "origin",
    "rows",
    "cols",
    "obstacles",
    "map",
    "random_obstacles",
    "tasks",
    "k",
    "psi",
    "timing",
    "tolerance",
)
#: The keys that set the grid (:class:`sim_bridge.routing.Grid`; ``origin`` is a point).
GRID_RULES = {
    "cell_size": Rule(**POSITIVE, units="m", missing="add `cell_size: <metres>` (e.g. 0.2)"),
    "rows": Rule(kind="integer", low=1, high=MAX_CELLS, help="cells along y"),
    "cols": Rule(kind="integer", low=1, high=MAX_CELLS, help="cells along x"),
}


def routing_radii(
    c: Checker,
    top: dict[str, Any],
    rc: RoutingConfig,
    comm_radius: float | None,
    sensing_radius: float | None,
) -> tuple[float, float]:
    """``comm_radius`` and ``sensing_radius`` of a routing mission: both are derived from
    ``routing.k`` (:func:`routing_comm_radius`); a file that sets another value is rejected,
    so the cells of the view and the metres of the relay and ``/neighbors`` never disagree."""
    derived = rc.comm_radius
    for key, value in (("comm_radius", comm_radius), ("sensing_radius", sensing_radius)):
        if key in top and value is not None and abs(value - derived) > 1e-9 * max(1.0, derived):
            c.err(
                key,
                f"{value} m conflicts with the routing section: a routing mission derives it "
                f"from routing.k = {rc.k} cells of {rc.grid.cell_size} m ({derived:.6g} m, every "
                "robot a view can show)",
                f"remove `{key}` (it is derived), or change routing.k",
            )
    return derived, derived


def routing(
    c: Checker, value: Any, arena: Arena, robots: list[RobotConfig], base: Path | None, seed: int
) -> RoutingConfig | None:
    """The ``routing`` section (see :class:`RoutingConfig`), checked against the arena and the
    robots' start poses; ``None`` after reporting its problems."""
    m = c.mapping(value, "routing", ROUTING_KEYS)
    if m is None:
        return None
    rules = rules_of(RoutingConfig)
    n_before = len(c.problems)
    map_name, map_blocked = None, None
    if "map" in m:
        map_name = c.string(m["map"], "routing.map")
        if map_name is not None:
            map_blocked = _map(c, map_name, base)
        if "random_obstacles" in m:
            c.err(
                "routing.random_obstacles",
                "a map and random obstacles together",
                "keep one of routing.map and routing.random_obstacles",
            )
    grid = _grid(c, m, arena, map_blocked)
    k = c.value(m["k"], "routing.k", rules["k"]) if "k" in m else None
    if "k" not in m:
        c.err("routing.k", "missing", rules["k"].missing)
    psi = c.value(m["psi"], "routing.psi", rules["psi"]) if "psi" in m else 2
    timing = (
        c.value(m["timing"], "routing.timing", rules["timing"]) if "timing" in m else "lockstep"
    )
    if grid is None or len(c.problems) > n_before:
        return None
    tolerance = grid.cell_size / 4.0
    if "tolerance" in m:
        spec = replace(rules["tolerance"], high=grid.cell_size / 2)
        tolerance = c.value(m["tolerance"], "routing.tolerance", spec)
    blocked = obstacles(c, m, grid, map_blocked, robots, seed)
    if blocked is None or tolerance is None:
        return None
    starts = check_robot_cells(c, grid, blocked, robots)
    cells = tasks(c, m.get("tasks", []), grid, blocked, starts, seed)
    if cells is None or len(c.problems) > n_before:
        return None
    check_reachable(c, grid, blocked, starts, cells, "tasks" in m and isinstance(m["tasks"], list))
    if len(c.problems) > n_before:
        return None
    height = max((r.takeoff_height for r in robots), default=0.0)
    return RoutingConfig(
        grid=grid,
        obstacle_bits=blocked.astype(np.uint8).tobytes(),
        tasks=tuple((int(r), int(cc)) for r, cc in cells),
        k=int(k),
        psi=int(psi),
        timing=timing,
        tolerance=float(tolerance),
        comm_radius=routing_comm_radius(int(k), grid.cell_size, height),
        map=map_name,
    )


def _map(c: Checker, name: str, base: Path | None) -> np.ndarray | None:
    """Obstacle mask of the MovingAI map ``routing.map`` (a plain path relative to the swarm
    file, or ``package:relative/path``)."""
    fix = "name an existing MovingAI .map file (relative to the swarm file, or package:path)"
    try:
        path = resolve_package_path(name, "routing.map")
    except FileNotFoundError as exc:
        c.err("routing.map", str(exc), fix)
        return None
    if path is None:
        path = Path(name) if os.path.isabs(name) else (base or Path.cwd()) / name
    try:
        if path.is_dir():
            c.err("routing.map", f"{str(path)!r} is a directory", fix)
            return None
        if not path.is_file():
            c.err("routing.map", f"{str(path)!r} does not exist", fix)
            return None
        with open(path, "rb") as fh:
            raw = fh.read(MAX_MAP_BYTES + 1)
    except OSError as exc:
        c.err("routing.map", f"cannot read {str(path)!r}: {exc.strerror or exc}", fix)
        return None
    if len(raw) > MAX_MAP_BYTES:
        c.err(
            "routing.map",
            f"{str(path)!r} is larger than {MAX_MAP_BYTES // 2**20} MiB",
            f"use a map of at most {MAX_CELLS} cells",
        )
        return None
    try:
        blocked = parse_movingai_map(raw.decode("ascii"), str(path))
    except UnicodeDecodeError:
        c.err("routing.map", f"{str(path)!r} is not ASCII text", "use a MovingAI .map file")
        return None
    except MapError as exc:
        c.err("routing.map", str(exc), "fix the map file (MovingAI format: . G S free, @ O T W)")
        return None
    if blocked.size > MAX_CELLS:
        c.err(
            "routing.map",
            f"{blocked.shape[0]} x {blocked.shape[1]} cells, more than the limit of {MAX_CELLS}",
            "use a smaller map",
        )
        return None
    return blocked


def _grid(
    c: Checker, m: dict[str, Any], arena: Arena, map_blocked: np.ndarray | None
) -> Grid | None:
    """Cell size, origin, rows and cols, with their defaults (module docstring of
    :mod:`sim_bridge.routing`), checked to lie inside the arena and under :data:`MAX_CELLS`."""
    span_x, span_y = arena.x[1] - arena.x[0], arena.y[1] - arena.y[0]
    if "cell_size" in m:
        cs = c.value(m["cell_size"], "routing.cell_size", GRID_RULES["cell_size"])
    elif map_blocked is not None:  # the map scaled to the arena
        cs = min(span_x / map_blocked.shape[1], span_y / map_blocked.shape[0])
    else:
        c.err("routing.cell_size", "missing", GRID_RULES["cell_size"].missing)
        return None
    if cs is None:
        return None
    origin = (arena.x[0] + cs / 2.0, arena.y[0] + cs / 2.0)
    if "origin" in m:
        xy = c.numbers(m["origin"], "routing.origin", 2, "[x, y]")
        if xy is None:
            return None
        origin = (float(xy[0]), float(xy[1]))
    shape = _grid_shape(c, m, arena, map_blocked, cs, origin)
    if shape is None:
        return None
    grid = Grid(cell_size=float(cs), origin=origin, rows=shape[0], cols=shape[1])
    (x0, x1), (y0, y1) = grid.extent
    tol = 1e-9 * max(1.0, span_x, span_y)
    if (
        x0 < arena.x[0] - tol
        or x1 > arena.x[1] + tol
        or y0 < arena.y[0] - tol
        or y1 > arena.y[1] + tol
    ):
        c.err(
            "routing",
            f"the grid covers x [{x0:.6g}, {x1:.6g}], y [{y0:.6g}, {y1:.6g}], beyond the arena "
            f"x {list(arena.x)}, y {list(arena.y)}",
            "use fewer rows/cols or smaller cells, move routing.origin, or enlarge the arena",
        )
        return None
    return grid


def _grid_shape(
    c: Checker,
    m: dict[str, Any],
    arena: Arena,
    map_blocked: np.ndarray | None,
    cs: float,
    origin: tuple[float, float],
) -> tuple[int, int] | None:
    """``(rows, cols)``: as written, else the map's, else as many cells as fit the arena."""
    sizes = {}
    for key, axis, span_lo, span_hi, ax in (
        ("rows", 0, origin[1], arena.y[1], "y"),
        ("cols", 1, origin[0], arena.x[1], "x"),
    ):
        if key in m:
            sizes[key] = c.value(m[key], f"routing.{key}", GRID_RULES[key])
        elif map_blocked is not None:
            sizes[key] = int(map_blocked.shape[axis])
        else:
            fit = math.floor((span_hi - (span_lo - cs / 2.0)) / cs + 1e-9)
            if fit < 1:
                c.err(f"routing.{key}", f"no cell fits the arena along {ax}", "move routing.origin")
                return None
            sizes[key] = fit
    if None in sizes.values():
        return None
    rows, cols = int(sizes["rows"]), int(sizes["cols"])
    if rows * cols > MAX_CELLS:
        c.err(
            "routing",
            f"{rows} x {cols} = {rows * cols} cells, more than the limit of {MAX_CELLS}",
            "use larger cells or fewer rows/cols",
        )
        return None
    if map_blocked is not None and map_blocked.shape != (rows, cols):
        c.err(
            "routing.map",
            f"the map is {map_blocked.shape[0]} x {map_blocked.shape[1]} cells (rows x cols) but "
            f"the grid is {rows} x {cols}",
            f"set routing.rows: {map_blocked.shape[0]} and routing.cols: {map_blocked.shape[1]} "
            "(or leave them out), or use a map of the grid's size",
        )
        return None
    return rows, cols
