"""Routing missions (DMAR) on a grid laid over the arena: geometry, views, solidity, PS steps.

Pure numpy (no rclpy, no message types): the simulator, the world node and the real-robot
bridges all call these functions, so a robot's view is the same whatever drives it. The wire
layout is :mod:`sim_bridge.topics`, section "Routing missions".

Grid (:class:`Grid`): square cells of ``cell_size`` [m]; ``origin`` is the world position
(x, y) [m] of cell (0, 0)'s centre; ``row`` grows with y, ``col`` with x; flat index
``row * cols + col``. A floor point *is in* the cell whose centre is nearest
(:meth:`Grid.cell_of`); outside the grid that is the nearest edge cell, so every point of the
arena is in exactly one cell.

* :func:`view_table` - a robot's view (DMAR paper Sec. 2: the k-hop ball, which on a grid is
  the Manhattan diamond clipped to the grid, obstacles included: agents "see through
  objects"), rows in the contract's order.
* :func:`clip_motion` - obstacle cells are solid: see its docstring for the exact rule.
* :func:`reachable` / :func:`random_obstacles` / :func:`random_tasks` /
  :func:`parse_movingai_map` - what the config needs to build and check a routing world.
* :class:`Lockstep` - the world's PS step (``/swarm/ps_step``) from ``dmar/move`` reports.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from sim_bridge.errors import SwarmError

#: Controls of ``dmar/move`` (the order of ``dmar_agent.world``: N, E, S, W, WAIT).
CONTROLS = ("N", "E", "S", "W", "WAIT")
#: MovingAI terrain: passable and blocked characters (``W``, water, is an obstacle here).
MAP_FREE = ".GS"
MAP_BLOCKED = "@OTW"
#: Lockstep: reports more than this many steps ahead of the world's step are rejected.
MAX_STEPS_AHEAD = 16


class MapError(SwarmError, ValueError):
    """A MovingAI map that cannot be read; the message names the file, line and fix."""


# ----------------------------------------------------------------------------- grid


@dataclass(frozen=True)
class Grid:
    """The routing grid.

    Attributes:
        cell_size: side of a cell [m].
        origin: world (x, y) [m] of cell (0, 0)'s centre.
        rows: cells along y.
        cols: cells along x.
    """

    cell_size: float
    origin: tuple[float, float]
    rows: int
    cols: int

    @property
    def n_cells(self) -> int:
        """``rows * cols``."""
        return self.rows * self.cols

    @property
    def extent(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((x_min, x_max), (y_min, y_max)) [m] of the cells' outer edges."""
        h = self.cell_size / 2.0
        ox, oy = self.origin
        return (
            (ox - h, ox + (self.cols - 1) * self.cell_size + h),
            (oy - h, oy + (self.rows - 1) * self.cell_size + h),
        )

    def cell_of(self, xy) -> np.ndarray:
        """``(..., 2)`` int64 ``[row, col]`` of the cell whose centre is nearest to each floor
        point ``xy`` ``(..., 2)`` [m] (a point on a cell edge belongs to the higher index)."""
        p = np.asarray(xy, dtype=float)
        col = np.floor((p[..., 0] - self.origin[0]) / self.cell_size + 0.5)
        row = np.floor((p[..., 1] - self.origin[1]) / self.cell_size + 0.5)
        col = np.clip(np.nan_to_num(col, nan=0.0), 0, self.cols - 1).astype(np.int64)
        row = np.clip(np.nan_to_num(row, nan=0.0), 0, self.rows - 1).astype(np.int64)
        return np.stack([row, col], axis=-1)

    def centre(self, rc) -> np.ndarray:
        """``(..., 2)`` world (x, y) [m] of the centres of cells ``rc`` ``(..., 2)`` [row, col]."""
        rc = np.asarray(rc, dtype=float)
        return np.stack(
            [
                self.origin[0] + rc[..., 1] * self.cell_size,
                self.origin[1] + rc[..., 0] * self.cell_size,
            ],
            axis=-1,
        )


# ----------------------------------------------------------------------------- views


def diamond(k: int) -> np.ndarray:
    """``(2k^2 + 2k + 1, 2)`` offsets ``(dr, dc)`` with ``|dr| + |dc| <= k``, row-major order."""
    d = np.arange(-k, k + 1)
    dr, dc = np.meshgrid(d, d, indexing="ij")
    keep = np.abs(dr) + np.abs(dc) <= k
    return np.stack([dr[keep], dc[keep]], axis=1)


def view_table(
    grid: Grid,
    k: int,
    obstacles: np.ndarray,
    open_tasks: np.ndarray,
    robot_cells: np.ndarray,
    robot: int,
) -> np.ndarray:
    """A robot's view, exactly the rows of ``topics`` ``view`` (fields ``VIEW_FIELDS``).

    Every grid cell within Manhattan distance ``k`` of the robot's cell: its own cell first,
    then the others in ascending flat index; one row ``[row, col, obstacle, task, robot]`` per
    robot in the cell (ascending robot index, the viewer included in its own cell), or one row
    with ``robot = -1`` for a cell without a robot.

    Args:
        grid: the routing grid.
        k: sensing radius [cells], >= 0.
        obstacles: ``(rows, cols)`` bool.
        open_tasks: ``(rows, cols)`` bool, True on a cell with an unvisited task.
        robot_cells: ``(N, 2)`` int ``[row, col]`` of every robot, ``-1`` for an unknown pose.
        robot: index of the viewer.

    Returns:
        ``(K, 5)`` float64; ``(0, 5)`` when the viewer's own cell is unknown.
    """
    cells = np.asarray(robot_cells, dtype=np.int64).reshape(-1, 2)
    r0, c0 = (int(v) for v in cells[robot])
    if r0 < 0 or c0 < 0:
        return np.zeros((0, 5))
    off = diamond(k)
    rr, cc = r0 + off[:, 0], c0 + off[:, 1]
    inside = (rr >= 0) & (rr < grid.rows) & (cc >= 0) & (cc < grid.cols)
    flat = np.sort(rr[inside] * grid.cols + cc[inside])
    own = r0 * grid.cols + c0
    flat = np.concatenate([[own], flat[flat != own]])

    known = (cells >= 0).all(axis=1)
    ridx = np.flatnonzero(known)
    rflat = cells[known, 0] * grid.cols + cells[known, 1]
    order = np.lexsort((ridx, rflat))  # by cell, then robot index
    rflat, ridx = rflat[order], ridx[order]
    lo = np.searchsorted(rflat, flat, "left")
    counts = np.searchsorted(rflat, flat, "right") - lo
    reps = np.maximum(counts, 1)
    cell_rows = np.repeat(flat, reps)
    first = np.repeat(np.cumsum(reps) - reps, reps)
    pick = np.repeat(lo, reps) + (np.arange(cell_rows.size) - first)
    has = np.repeat(counts > 0, reps)
    who = np.full(cell_rows.size, -1, dtype=np.int64)
    who[has] = ridx[pick[has]]

    row, col = np.divmod(cell_rows, grid.cols)
    out = np.empty((cell_rows.size, 5))
    out[:, 0], out[:, 1] = row, col
    out[:, 2] = obstacles.reshape(-1)[cell_rows]
    out[:, 3] = open_tasks.reshape(-1)[cell_rows]
    out[:, 4] = who
    return out


def open_task_grid(grid: Grid, task_cells: np.ndarray, visited: np.ndarray) -> np.ndarray:
    """``(rows, cols)`` bool, True on the cells of the tasks not ``visited`` ``(T,)``."""
    out = np.zeros((grid.rows, grid.cols), dtype=bool)
    cells = np.asarray(task_cells, dtype=np.int64).reshape(-1, 2)[~np.asarray(visited, bool)]
    out[cells[:, 0], cells[:, 1]] = True
    return out


def task_table(
    cells: np.ndarray, visited: np.ndarray, visited_by: np.ndarray, t_visited: np.ndarray
) -> np.ndarray:
    """``(T, 5)`` rows ``[row, col, visited, robot, t_visited]`` of ``topics`` ``/tasks``
    (``robot`` = first visitor or -1, ``t_visited`` [s] or -1)."""
    out = np.empty((len(cells), 5))
    out[:, 0:2] = np.asarray(cells, dtype=float).reshape(-1, 2)
    out[:, 2] = visited
    out[:, 3] = np.where(visited, visited_by, -1)
    out[:, 4] = np.where(visited, t_visited, -1.0)
    return out


# ----------------------------------------------------------------------------- solidity


def clip_motion(
    grid: Grid, obstacles: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """Floor positions after a step from ``start`` towards ``end`` with obstacle cells solid.

    The rule (simple and exact): the displacement is applied one axis at a time, x first, then
    y from the new x. Along each axis the robot passes the cell edges it crosses in order and
    stops a hair (``1e-7 * cell_size``) before the first edge of an obstacle cell; so a robot
    never enters an obstacle cell it is not already in (one that starts inside an obstacle cell,
    e.g. a real robot, may leave it). A diagonal command into a corner thus slides along the
    free axis. As a guard against rounding, a result in an obstacle cell other than the start
    cell falls back to the start position.

    Args:
        grid: the routing grid.
        obstacles: ``(rows, cols)`` bool.
        start, end: ``(M, 2)`` floor positions [m] before the step and after it unobstructed.

    Returns:
        ``(M, 2)`` positions [m]; rows that cross no cell edge equal ``end``.
    """
    start = np.asarray(start, dtype=float).reshape(-1, 2)
    out = np.array(end, dtype=float).reshape(-1, 2)
    c_start = grid.cell_of(start)
    c_end = grid.cell_of(out)
    rows = np.flatnonzero((c_start != c_end).any(axis=1) & np.isfinite(out).all(axis=1))
    if rows.size == 0:
        return out
    cs = grid.cell_size
    eps = 1e-7 * cs
    for i in rows.tolist():
        x0, y0 = start[i]
        x1, y1 = out[i]
        r0, c0 = c_start[i]
        x = _sweep(obstacles[r0, :], grid.origin[0], cs, eps, x0, x1, c0, grid.cols)
        c_mid = int(grid.cell_of((x, y0))[1])
        y = _sweep(obstacles[:, c_mid], grid.origin[1], cs, eps, y0, y1, r0, grid.rows)
        r1, c1 = grid.cell_of((x, y))
        if obstacles[r1, c1] and (r1, c1) != (r0, c0):
            x, y = x0, y0
        out[i] = (x, y)
    return out


def _sweep(
    line: np.ndarray, o: float, cs: float, eps: float, a: float, b: float, i0: int, n: int
) -> float:
    """Coordinate reached moving from ``a`` to ``b`` along one axis whose cells (index ``i0``
    at ``a``) are blocked where ``line`` is True: stop ``eps`` before a blocked cell's edge."""
    i1 = int(np.clip(math.floor((b - o) / cs + 0.5), 0, n - 1))
    if i1 > i0:
        for j in range(i0 + 1, i1 + 1):
            if line[j]:
                return min(b, o + (j - 0.5) * cs - eps)
    elif i1 < i0:
        for j in range(i0 - 1, i1 - 1, -1):
            if line[j]:
                return max(b, o + (j + 0.5) * cs + eps)
    return b


# ----------------------------------------------------------------------------- building


def reachable(free: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``(rows, cols)`` bool: free cells 4-connected to any start cell ``starts`` ``(S, 2)``
    through free cells (a start cell counts even if blocked, its neighbours only if free)."""
    rows, cols = free.shape
    flat_free = free.reshape(-1)
    seen = np.zeros(rows * cols, dtype=bool)
    queue: deque[int] = deque()
    for r, c in np.asarray(starts, dtype=np.int64).reshape(-1, 2).tolist():
        f = r * cols + c
        if not seen[f]:
            seen[f] = True
            queue.append(f)
    while queue:
        f = queue.popleft()
        r, c = divmod(f, cols)
        for g, ok in (
            (f - cols, r > 0),
            (f + cols, r < rows - 1),
            (f - 1, c > 0),
            (f + 1, c < cols - 1),
        ):
            if ok and flat_free[g] and not seen[g]:
                seen[g] = True
                queue.append(g)
    return seen.reshape(rows, cols)


def _components(free: np.ndarray) -> np.ndarray:
    """4-connected component label of every free cell (0, 1, ...), -1 on obstacles."""
    rows, cols = free.shape
    label = np.full(rows * cols, -1, dtype=np.int64)
    flat_free = free.reshape(-1)
    n = 0
    for f in np.flatnonzero(flat_free).tolist():
        if label[f] >= 0:
            continue
        comp = reachable(free, [divmod(f, cols)]).reshape(-1)
        label[comp] = n
        n += 1
    return label.reshape(rows, cols)


def random_obstacles(
    rows: int, cols: int, fraction: float, seed: int, keep_free: np.ndarray, tries: int = 100
) -> np.ndarray | None:
    """Seeded obstacles over ``round(fraction * rows * cols)`` cells, free space connected.

    The draw of ``dmar_agent.world.generate_grid`` (DMAR paper Sec. 4.1, "random connected
    topologies"), reimplemented here since sim_bridge imports no other package: obstacles
    uniformly without replacement among the cells not in ``keep_free`` ``(K, 2)``; free cells
    outside the largest component become obstacles; obstacles next to it are freed again at
    random until the count is back to the target. A draw that cuts a ``keep_free`` cell off
    the largest component is drawn again (``tries`` times; ``None`` if all fail).

    Returns:
        ``(rows, cols)`` bool obstacle mask, or ``None``.
    """
    n_cells = rows * cols
    keep = np.zeros(n_cells, dtype=bool)
    kf = np.asarray(keep_free, dtype=np.int64).reshape(-1, 2)
    keep[kf[:, 0] * cols + kf[:, 1]] = True
    candidates = np.flatnonzero(~keep)
    target = min(round(fraction * n_cells), candidates.size)
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        flat = np.ones(n_cells, dtype=bool)
        flat[rng.choice(candidates, size=target, replace=False)] = False
        free = flat.reshape(rows, cols)
        label = _components(free)
        if not (label >= 0).any():
            continue
        main = int(np.argmax(np.bincount(label[label >= 0])))
        free = label == main
        if not free.reshape(-1)[keep].all():
            continue
        while int((~free).sum()) > target:
            pad = np.pad(free, 1)
            adj = pad[:-2, 1:-1] | pad[2:, 1:-1] | pad[1:-1, :-2] | pad[1:-1, 2:]
            cand = np.flatnonzero((~free & adj).reshape(-1))
            excess = int((~free).sum()) - target
            free.reshape(-1)[rng.choice(cand, size=min(excess, cand.size), replace=False)] = True
        return ~free
    return None


def random_tasks(free: np.ndarray, count: int, seed: int, exclude: np.ndarray) -> np.ndarray | None:
    """``(count, 2)`` distinct free cells drawn uniformly (seeded), none in ``exclude``
    ``(E, 2)``, in ascending flat order; ``None`` when there are fewer such cells."""
    rows, cols = free.shape
    ok = free.reshape(-1).copy()
    ex = np.asarray(exclude, dtype=np.int64).reshape(-1, 2)
    ok[ex[:, 0] * cols + ex[:, 1]] = False
    cand = np.flatnonzero(ok)
    if cand.size < count:
        return None
    pick = np.sort(np.random.default_rng(seed).choice(cand, size=count, replace=False))
    return np.stack(np.divmod(pick, cols), axis=1)


def parse_movingai_map(text: str, source: str = "<map>") -> np.ndarray:
    """Obstacle mask ``(height, width)`` of a MovingAI ``.map`` (header ``type``, ``height``,
    ``width``, then ``map``); ``@ O T W`` are obstacles, ``. G S`` free. The one parser of the
    format: ``dmar_agent.world`` builds its grids from it too.

    Map line ``i`` is grid row ``i`` (the y-lowest row first), as ``dmar_agent.world`` reads the
    same file, so cell indices agree with the agent's offline runs. Lines end in LF, CRLF or
    CR; whitespace at the end of a line (spaces, tabs) is not part of the row, as published
    maps often carry it. Memory follows the text's size, never a header's claim.

    Raises:
        MapError: one line naming ``source``, the line and what to fix.
    """
    # only line feeds and carriage returns end a line (str.splitlines() would also split a row
    # at a form feed or vertical tab, which then shows up as a wrong row count)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    header: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line:
            continue
        if line.lower() == "map":
            break
        parts = line.split()
        if len(parts) != 2:
            raise MapError(
                f"{source} line {i}: {line[:40]!r} is not 'key value' (type/height/width); the "
                "header is followed by a line 'map'"
            )
        header[parts[0].lower()] = parts[1]
    else:
        raise MapError(f"{source}: no 'map' line after the header (type, height, width, map)")
    for key in ("height", "width"):
        if key not in header:
            raise MapError(f"{source}: the header has no '{key} <int>' line")
        # ASCII digits only (str.isdigit() also accepts '²', which int() refuses), and few of
        # them (int() refuses over 4300 digits; no map row is a billion characters long)
        value = header[key]
        if not (value.isascii() and value.isdigit() and len(value) <= 9) or int(value) < 1:
            raise MapError(
                f"{source}: header '{key} {value[:20]}' is not an integer from 1 to 999999999"
            )
    h, w = int(header["height"]), int(header["width"])
    rows = [ln.rstrip() for ln in lines[i:] if ln.strip()]
    if len(rows) != h:
        raise MapError(
            f"{source}: the header says height {h} but {len(rows)} map rows follow; make the "
            "'height' line match the number of rows"
        )
    # every row is checked before the grid is allocated (``width 1000000000000`` over one row)
    for r, row in enumerate(rows):
        if len(row) != w:
            raise MapError(
                f"{source}: map row {r} has {len(row)} characters, the header says width {w}; "
                "every row needs exactly 'width' terrain characters"
            )
    # one byte per cell (non-ASCII becomes '?', an unknown terrain), classified by numpy: a
    # 512 x 512 published map costs milliseconds, not a Python loop over every character
    codes = np.frombuffer("".join(rows).encode("ascii", errors="replace"), dtype=np.uint8)
    blocked = np.isin(codes, np.frombuffer(MAP_BLOCKED.encode(), dtype=np.uint8))
    bad = ~blocked & ~np.isin(codes, np.frombuffer(MAP_FREE.encode(), dtype=np.uint8))
    if bad.any():
        r, c = divmod(int(np.argmax(bad)), w)
        raise MapError(
            f"{source}: map row {r} column {c}: unknown terrain {rows[r][c]!r} "
            f"(use {' '.join(MAP_FREE + MAP_BLOCKED)})"
        )
    return blocked.reshape(h, w)


# ----------------------------------------------------------------------------- PS steps


class Lockstep:
    """The world's PS step from the robots' ``dmar/move`` reports (``topics`` ``/swarm/ps_step``).

    ``lockstep`` timing: the world is at step ``t`` (``step``); step ``t`` is done when at
    least one robot takes part and every robot taking part (the caller's ``present`` mask:
    flying / driving) has reported a valid move for step ``t`` and stands within
    ``tolerance`` [m] (floor distance) of its target cell's centre; then ``step`` becomes
    ``t + 1`` (one step per :meth:`update`) and ``moves_done`` grows by the robots that took
    part. ``free`` timing: ``step`` stays 0; a robot's latest report (whatever its step) counts
    in ``moves_done`` once, when the robot reaches its target.

    A report is rejected (the reason returned, counted in ``rejected``) when a field is not a
    whole finite number, the control is not 0..4, the target is off the grid or an obstacle,
    or (lockstep) its step is before ``t`` or more than :data:`MAX_STEPS_AHEAD` ahead.
    """

    def __init__(
        self, grid: Grid, obstacles: np.ndarray, n: int, timing: str, tolerance: float
    ) -> None:
        if timing not in ("lockstep", "free"):
            raise ValueError(f"timing must be lockstep or free, got {timing!r}")
        self.grid, self.obstacles, self.n = grid, obstacles, n
        self.timing, self.tolerance = timing, float(tolerance)
        self.step = 0
        self.moves_done = 0
        self.rejected = np.zeros(n, dtype=np.int64)
        #: lockstep: per robot {step: (row, col)}; free: per robot {0: (row, col)} (latest)
        self.moves: list[dict[int, tuple[int, int]]] = [{} for _ in range(n)]

    def report(self, robot: int, data) -> str | None:
        """Take robot ``robot``'s ``dmar/move`` ``[ps_step, control, target_row, target_col]``;
        returns ``None`` when accepted, else why it was rejected."""
        reason = self._check(data)
        if reason is None:
            step, row, col = int(data[0]), int(data[2]), int(data[3])
            if self.timing == "free":
                self.moves[robot] = {0: (row, col)}
            else:
                self.moves[robot][step] = (row, col)
            return None
        self.rejected[robot] += 1
        return reason

    def _check(self, data) -> str | None:
        vals = list(data) if len(data) == 4 else None
        if vals is None:
            return f"expected 4 values [ps_step, control, row, col], got {len(data)}"
        if not all(math.isfinite(v) and float(v).is_integer() for v in vals):
            return f"values {vals} are not whole numbers"
        step, control, row, col = (int(v) for v in vals)
        if not 0 <= control < len(CONTROLS):
            return f"control {control} is not 0..4 (N, E, S, W, WAIT)"
        if not (0 <= row < self.grid.rows and 0 <= col < self.grid.cols):
            return f"target cell ({row}, {col}) is off the {self.grid.rows} x {self.grid.cols} grid"
        if self.obstacles[row, col]:
            return f"target cell ({row}, {col}) is an obstacle"
        if self.timing == "lockstep" and not self.step <= step <= self.step + MAX_STEPS_AHEAD:
            last = self.step + MAX_STEPS_AHEAD
            return f"step {step} is outside the world's window [{self.step}, {last}]"
        return None

    def arrived(self, positions: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: the robot has a move for the current step (free: any) and its floor
        position ``positions`` ``(N, 2)`` [m] is within ``tolerance`` of the target's centre."""
        key = 0 if self.timing == "free" else self.step
        out = np.zeros(self.n, dtype=bool)
        for i, moves in enumerate(self.moves):
            target = moves.get(key)
            if target is not None:
                d = positions[i] - self.grid.centre(target)
                out[i] = bool(d[0] * d[0] + d[1] * d[1] <= self.tolerance * self.tolerance)
        return out

    def update(self, positions: np.ndarray, present: np.ndarray) -> bool:
        """Advance by the rule above; True when the world's step advanced (lockstep)."""
        done = self.arrived(positions)
        if self.timing == "free":
            for i in np.flatnonzero(done).tolist():
                self.moves[i] = {}
                self.moves_done += 1
            return False
        if not present.any() or not done[present].all():
            return False
        self.moves_done += int(present.sum())
        self.step += 1
        for moves in self.moves:
            for s in [s for s in moves if s < self.step]:
                del moves[s]
        return True
