"""Cells of a routing mission: ``routing.obstacles`` (cells, rectangles, or a random connected
draw), ``routing.tasks`` (listed, or a random draw), robots' start cells, and reachability."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sim_bridge.config.checks import Checker, Rule, present
from sim_bridge.config.limits import (
    MAX_OVERLAPS_LISTED,
    MAX_RANDOM_CELLS,
    MAX_ROUTING_ITEMS,
    MAX_SEED,
)
from sim_bridge.config.schema import RobotConfig
from sim_bridge.routing import Grid, random_obstacles, random_tasks, reachable

#: ``routing.random_obstacles: {fraction, seed}`` (the seed defaults to the file's ``seed``).
RANDOM_OBSTACLE_RULES = {
    "fraction": Rule(
        low=0.0,
        high=0.59,
        help="share of obstacle cells",
        missing="add `fraction: 0.2` (share of obstacle cells)",
    ),
    "seed": Rule(kind="integer", low=0, high=MAX_SEED),
}
#: ``routing.tasks: {random: {count, seed}}`` (the seed defaults to the file's ``seed``).
RANDOM_TASK_RULES = {
    "count": Rule(kind="integer", low=1, high=MAX_ROUTING_ITEMS, missing="add `count: <tasks>`"),
    "seed": Rule(kind="integer", low=0, high=MAX_SEED),
}


def _listed(c: Checker, value: Any, path: str, what: str, fix: str) -> list | None:
    """``value`` as a list of at most :data:`MAX_ROUTING_ITEMS` entries (``what``)."""
    items = c.seq(value, path)
    if items is not None and len(items) > MAX_ROUTING_ITEMS:
        c.err(path, f"{len(items)} {what}, more than the limit of {MAX_ROUTING_ITEMS}", fix)
        return None
    return items


def _cell(c: Checker, value: Any, path: str, grid: Grid) -> tuple[int, int] | None:
    """A ``[row, col]`` inside the grid."""
    vals = c.numbers(value, path, 2, "[row, col]", low=0, integer=True)
    if vals is None:
        return None
    row, col = vals
    if row >= grid.rows or col >= grid.cols:
        c.err(
            path,
            f"cell ({row}, {col}) is outside the {grid.rows} x {grid.cols} grid",
            f"use 0 <= row < {grid.rows} and 0 <= col < {grid.cols}",
        )
        return None
    return int(row), int(col)


def _index_range(c: Checker, value: Any, path: str, n: int) -> tuple[int, int] | None:
    """``[first, last]`` indices of a rectangle's rows or cols, ``0 <= first <= last < n``."""
    ends = c.numbers(value, path, 2, "[first, last]", low=0, integer=True)
    if ends is None:
        return None
    first, last = int(ends[0]), int(ends[1])
    if last >= n or first > last:
        c.err(
            path,
            f"[{first}, {last}] is not a range inside the grid's {n}",
            f"write [first, last] with 0 <= first <= last < {n}",
        )
        return None
    return first, last


def obstacles(
    c: Checker,
    m: dict[str, Any],
    grid: Grid,
    map_blocked: np.ndarray | None,
    robots: list[RobotConfig],
    seed: int,
) -> np.ndarray | None:
    """``(rows, cols)`` obstacle mask: the map or the random draw, plus the listed cells and
    rectangles ``{rows: [r0, r1], cols: [c0, c1]}`` (both ends included)."""
    blocked = np.zeros((grid.rows, grid.cols), dtype=bool) if map_blocked is None else map_blocked
    n_before = len(c.problems)
    if "random_obstacles" in m:
        blocked = _random_obstacles(c, m, grid, robots, seed)
        if blocked is None:
            return None
    items = []
    if "obstacles" in m:
        fix = "use rectangles {rows: [r0, r1], cols: [c0, c1]} or a map file"
        items = _listed(c, m["obstacles"], "routing.obstacles", "entries", fix)
    if items is None:
        return None
    for j, item in enumerate(items):
        path = f"routing.obstacles[{j}]"
        if isinstance(item, Mapping):
            rect = c.mapping(item, path, ("rows", "cols"))
            if rect is None:
                continue
            ends = []
            for key in ("rows", "cols"):
                if key not in rect:
                    c.err(f"{path}.{key}", "missing", f"add `{key}: [first, last]`")
                    continue
                n = grid.rows if key == "rows" else grid.cols
                pair = _index_range(c, rect[key], f"{path}.{key}", n)
                ends.append(pair)
            if len(ends) == 2 and None not in ends:
                (r0, r1), (c0, c1) = ends
                blocked[r0 : r1 + 1, c0 : c1 + 1] = True
        else:
            cell = _cell(c, item, path, grid)
            if cell is not None:
                blocked[cell] = True
    return blocked if len(c.problems) == n_before else None


def _draw(
    c: Checker, spec: dict | None, path: str, rules: dict[str, Rule], key: str, seed: int
) -> tuple[Any, int] | None:
    """``(spec[key], seed)`` of a random draw, checked (the seed defaults to the file's)."""
    if spec is None or not present(c, spec, path, key, rules[key]):
        return None
    amount = c.value(spec[key], f"{path}.{key}", rules[key])
    rseed = c.value(spec.get("seed", seed), f"{path}.seed", rules["seed"])
    return None if amount is None or rseed is None else (amount, int(rseed))


def _random_obstacles(
    c: Checker, m: dict[str, Any], grid: Grid, robots: list[RobotConfig], seed: int
) -> np.ndarray | None:
    """``routing.random_obstacles: {fraction, seed}``: the paper's random connected environment
    (:func:`sim_bridge.routing.random_obstacles`), the robots' and listed tasks' cells kept
    free."""
    path = "routing.random_obstacles"
    spec = c.mapping(m["random_obstacles"], path, tuple(RANDOM_OBSTACLE_RULES))
    draw = _draw(c, spec, path, RANDOM_OBSTACLE_RULES, "fraction", seed)
    if draw is None:
        return None
    frac, rseed = draw
    if grid.n_cells > MAX_RANDOM_CELLS:
        c.err(
            path,
            f"{grid.n_cells} cells, more than the limit of {MAX_RANDOM_CELLS} for a random draw",
            "use a map file or list the obstacles",
        )
        return None
    keep = [tuple(grid.cell_of(r.pose[:2])) for r in robots]
    listed = m.get("tasks")
    if isinstance(listed, list):
        keep += [
            tuple(t)
            for t in listed[:MAX_ROUTING_ITEMS]
            if isinstance(t, list)
            and len(t) == 2
            and all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n
                for v, n in zip(t, (grid.rows, grid.cols))
            )
        ]
    blocked = random_obstacles(
        grid.rows, grid.cols, frac, int(rseed), np.array(keep).reshape(-1, 2)
    )
    if blocked is None:
        c.err(
            path,
            "no connected draw keeps every robot's and task's cell free",
            "lower fraction or change seed",
        )
    return blocked


def check_robot_cells(
    c: Checker, grid: Grid, blocked: np.ndarray, robots: list[RobotConfig]
) -> np.ndarray:
    """Report robots whose start pose lies in an obstacle cell; ``(N, 2)`` start cells."""
    starts = grid.cell_of(np.array([r.pose[:2] for r in robots]).reshape(-1, 2))
    for robot, (row, col) in zip(robots, starts.tolist()):
        if blocked[row, col]:
            c.err(
                f"{c.robot_paths[robot.name]}.pose",
                f"robot {robot.name!r} starts in obstacle cell ({row}, {col}) "
                f"(centre {tuple(round(float(v), 6) for v in grid.centre((row, col)))})",
                "move the robot to a free cell, or free that cell",
            )
    return starts


def tasks(
    c: Checker, value: Any, grid: Grid, blocked: np.ndarray, starts: np.ndarray, seed: int
) -> np.ndarray | None:
    """``routing.tasks``: a list of cells, or ``{random: {count, seed}}`` drawn on the free
    cells reachable from a robot's start cell, none under a robot at start."""
    if isinstance(value, Mapping):
        return _random_tasks(c, value, blocked, starts, seed)
    items = _listed(c, value, "routing.tasks", "tasks", f"list at most {MAX_ROUTING_ITEMS}")
    if items is None:
        return None
    if not items:
        c.warn(
            "routing.tasks", "the mission has no task", "list task cells or `random: {count: N}`"
        )
    out: list[tuple[int, int]] = []
    seen: dict[tuple[int, int], int] = {}
    for j, item in enumerate(items):
        path = f"routing.tasks[{j}]"
        cell = _cell(c, item, path, grid)
        if cell is None:
            continue
        if cell in seen:
            c.err(path, f"cell {cell} is already task {seen[cell]}", "list every task cell once")
        elif blocked[cell]:
            c.err(
                path,
                f"task cell {cell} is an obstacle",
                "move the task to a free cell, or free the cell",
            )
        else:
            seen[cell] = j
            out.append(cell)
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def _random_tasks(
    c: Checker, value: Mapping, blocked: np.ndarray, starts: np.ndarray, seed: int
) -> np.ndarray | None:
    """``routing.tasks: {random: {count, seed}}``: ``count`` cells drawn on the free cells
    reachable from a robot's start cell, none under a robot at start."""
    path = "routing.tasks.random"
    spec = c.mapping(value, "routing.tasks", ("random",))
    rnd = None
    if spec and "random" in spec:
        rnd = c.mapping(spec["random"], path, tuple(RANDOM_TASK_RULES))
    if spec is not None and not value:  # an unknown key is reported already
        c.err(
            "routing.tasks",
            "expected a list of [row, col] or `random:`",
            "write `random: {count: 5}`",
        )
    draw = _draw(c, rnd, path, RANDOM_TASK_RULES, "count", seed)
    if draw is None:
        return None
    count, tseed = draw
    free = reachable(~blocked, starts[~blocked[starts[:, 0], starts[:, 1]]]) & ~blocked
    cells = random_tasks(free, int(count), int(tseed), starts)
    if cells is None:
        c.err(
            f"{path}.count",
            f"{count} tasks do not fit: only {int(free.sum())} free cells reachable from the "
            "robots (fewer without the robots' own cells)",
            "ask for fewer tasks or free more cells",
        )
    return cells


def check_reachable(
    c: Checker,
    grid: Grid,
    blocked: np.ndarray,
    starts: np.ndarray,
    tasks: np.ndarray,
    listed: bool,
) -> None:
    """Report tasks no robot can reach through 4-connected free cells from its start cell."""
    if len(starts) == 0 or len(tasks) == 0:
        return
    reach = reachable(~blocked, starts)
    missed = np.flatnonzero(~reach[tasks[:, 0], tasks[:, 1]])
    for j in missed[:MAX_OVERLAPS_LISTED].tolist():
        row, col = (int(v) for v in tasks[j])
        c.err(
            f"routing.tasks[{j}]" if listed else "routing.tasks",
            f"task cell ({row}, {col}) is unreachable from every robot's start cell "
            "(4-connected free cells)",
            "free a path of cells to it, or move the task",
        )
    if len(missed) > MAX_OVERLAPS_LISTED:
        c.err(
            "routing.tasks",
            f"{len(missed)} tasks are unreachable; the first {MAX_OVERLAPS_LISTED} are listed",
            "free paths to them",
        )
