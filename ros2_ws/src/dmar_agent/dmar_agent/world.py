"""Grid world of the UMVRP-L (Section 2 of the DMAR paper).

Cells are indexed ``r * width + c`` (row ``r`` grows southwards). An instance holds the free-cell
mask, agent start cells (agent ``i`` has ID ``i``) and task cells. Costs: one per move, waits are
free, a task is completed when any agent visits it.

Views (Section 2): the view of an agent is the sub-graph induced by the nodes reachable in at most
``k`` hops in the grid graph ``G``. Obstacles are nodes of ``G`` that cannot be visited, so hops
pass through them (the paper notes that agents "may see through objects"); the k-hop ball is
therefore exactly the Manhattan diamond ``|dr| + |dc| <= k`` clipped to the grid.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sim_bridge import routing

from .errors import ConfigError, InstanceError, MapFormatError

# Controls of Appendix D item 6, in this fixed order (ties are broken in this order).
NORTH, EAST, SOUTH, WEST, WAIT = 0, 1, 2, 3, 4
CONTROL_NAMES = ("N", "E", "S", "W", "WAIT")
DR = (-1, 0, 1, 0, 0)
DC = (0, 1, 0, -1, 0)

RATIOS = {"1:2": (1, 2), "1:1": (1, 1), "2:1": (2, 1)}


@dataclass(frozen=True)
class Grid:
    """Obstacle map.

    Attributes:
        free: (height, width) bool, True where a cell can be visited.
    """

    free: np.ndarray

    @property
    def height(self) -> int:
        return int(self.free.shape[0])

    @property
    def width(self) -> int:
        return int(self.free.shape[1])

    @property
    def n_cells(self) -> int:
        return int(self.free.size)

    def free_flat(self) -> np.ndarray:
        """(height * width,) bool free mask."""
        return self.free.reshape(-1)

    def neighbours(self) -> np.ndarray:
        """(4, n_cells) int: neighbour cell in direction N, E, S, W, or -1 (off-grid/obstacle)."""
        h, w = self.free.shape
        idx = np.arange(h * w).reshape(h, w)
        free = self.free
        out = np.full((4, h, w), -1, dtype=np.int64)
        for d in range(4):
            rr = np.arange(h)[:, None] + DR[d]
            cc = np.arange(w)[None, :] + DC[d]
            ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            rr_c = np.clip(rr, 0, h - 1)
            cc_c = np.clip(cc, 0, w - 1)
            nb = idx[rr_c, cc_c]
            good = ok & free[rr_c, cc_c] & free
            out[d] = np.where(good, nb, -1)
        return out.reshape(4, h * w)


def connected_components(free: np.ndarray) -> np.ndarray:
    """Label 4-connected components of the free cells; obstacles get -1."""
    from scipy.ndimage import label

    lab, _ = label(free, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    return lab.astype(np.int64) - 1


def is_connected(free: np.ndarray) -> bool:
    """True when the free cells form one 4-connected component."""
    lab = connected_components(free)
    return bool(free.any()) and int(lab.max()) == 0


def generate_grid(n: int, rng: np.random.Generator, obstacle_frac: float = 0.2) -> Grid:
    """Seeded ``n x n`` grid with exactly ``round(obstacle_frac * n * n)`` obstacles, connected.

    How connectivity is kept: obstacles are drawn uniformly without replacement; free cells outside
    the largest 4-connected component are turned into obstacles, and then obstacles adjacent to the
    main component are freed again, uniformly at random, until the obstacle count is back to the
    target. Freeing a cell adjacent to the component keeps it connected, so the result has exactly
    the requested obstacle share and one connected free region (the paper, Section 4.1, samples
    "random connected topologies that include obstacles over 20% of the nodes").
    """
    if not isinstance(n, int | np.integer) or n < 2:
        raise ConfigError(f"grid size n={n!r} must be an integer >= 2")
    if not 0.0 <= obstacle_frac < 0.6:
        raise ConfigError(
            f"obstacle_frac={obstacle_frac} must be in [0, 0.6) (above that the free cells "
            "percolate poorly)"
        )
    n_obst = round(obstacle_frac * n * n)
    flat = np.ones(n * n, dtype=bool)
    flat[rng.choice(n * n, size=n_obst, replace=False)] = False
    free = flat.reshape(n, n)
    lab = connected_components(free)
    sizes = np.bincount(lab[lab >= 0].ravel())
    main = int(np.argmax(sizes))
    free = lab == main
    while int((~free).sum()) > n_obst:
        pad = np.pad(free, 1)
        adj = pad[:-2, 1:-1] | pad[2:, 1:-1] | pad[1:-1, :-2] | pad[1:-1, 2:]
        cand = np.flatnonzero((~free & adj).ravel())
        excess = int((~free).sum()) - n_obst
        pick = rng.choice(cand, size=min(excess, cand.size), replace=False)
        free.reshape(-1)[pick] = True
    return Grid(free=free)


def parse_movingai_map(text: str, source: str = "<string>") -> Grid:
    """Parse a MovingAI benchmark ``.map`` (header ``type``, ``height``, ``width``, ``map``).

    ``.``, ``G`` and ``S`` are passable; ``@``, ``O``, ``T`` and ``W`` (water, passable only from
    water in the original benchmark) are obstacles. The format's one parser is the world
    contract's :func:`sim_bridge.routing.parse_movingai_map` (LF, CRLF or CR line ends; trailing
    whitespace ignored), so a map reads the same here and in a swarm config's ``routing.map``.
    """
    try:
        blocked = routing.parse_movingai_map(text, source)
    except routing.MapError as exc:
        raise MapFormatError(str(exc)) from None
    free = ~blocked
    if not free.any():
        raise MapFormatError(f"{source}: the map has no passable cell")
    return Grid(free=free)


def load_movingai_map(path: str | Path, largest_component: bool = True) -> Grid:
    """Load a MovingAI ``.map`` file; by default keep only its largest connected free region.

    Published maps often contain isolated pockets; the UMVRP-L needs a connected graph so that
    every task is reachable, so pockets become obstacles unless ``largest_component=False``.
    """
    p = Path(path)
    if p.is_dir():
        raise MapFormatError(f"map file {str(p)!r} is a directory; give a MovingAI .map file")
    if not p.is_file():
        raise MapFormatError(f"map file {str(p)!r} does not exist")
    grid = parse_movingai_map(p.read_text(encoding="ascii", errors="replace"), source=str(p))
    if largest_component:
        lab = connected_components(grid.free)
        sizes = np.bincount(lab[lab >= 0].ravel())
        grid = Grid(free=lab == int(np.argmax(sizes)))
    return grid


def bundled_map_path(name: str = "tiny.map") -> Path:
    """Path of a ``.map`` file shipped in ``dmar_agent/data``."""
    p = Path(__file__).parent / "data" / name
    if not p.is_file():
        raise MapFormatError(f"no bundled map {name!r}; available: tiny.map")
    return p


@dataclass(frozen=True)
class Instance:
    """One UMVRP-L instance.

    Attributes:
        grid: obstacle map.
        agents: (m,) int start cells; agent ``i`` has ID ``i``.
        tasks: (T,) int task cells (distinct).
    """

    grid: Grid
    agents: np.ndarray
    tasks: np.ndarray

    def __post_init__(self) -> None:
        free = self.grid.free_flat()
        n = self.grid.n_cells
        for name, arr in (("agents", self.agents), ("tasks", self.tasks)):
            a = np.asarray(arr)
            if a.ndim != 1 or (a.size and (a.min() < 0 or a.max() >= n)):
                raise InstanceError(f"{name} must be a 1-D array of cell indices in [0, {n})")
            if a.size and not free[a].all():
                raise InstanceError(f"{name} must lie on free cells; got an obstacle cell")
        if len(np.unique(self.tasks)) != len(self.tasks):
            raise InstanceError("tasks must be on distinct cells")
        if len(self.agents) == 0:
            raise InstanceError("an instance needs at least one agent")


def agent_task_counts(n: int, ratio: str, n_agents: int | None = None) -> tuple[int, int]:
    """Agents (``n`` by default, Section 4.1) and tasks for a ratio '1:2', '1:1' or '2:1'."""
    if ratio not in RATIOS:
        raise ConfigError(f"ratio={ratio!r} must be one of {sorted(RATIOS)}")
    m = n if n_agents is None else n_agents
    if m < 1:
        raise ConfigError(f"n_agents={m} must be >= 1")
    a, t = RATIOS[ratio]
    return m, max(1, math.ceil(m * t / a))


def place(grid: Grid, n_agents: int, n_tasks: int, rng: np.random.Generator) -> Instance:
    """Place agents and tasks uniformly at random on distinct free cells."""
    cells = np.flatnonzero(grid.free_flat())
    if n_agents + n_tasks > cells.size:
        raise InstanceError(
            f"{n_agents} agents + {n_tasks} tasks need distinct cells; only {cells.size} are free: "
            "use fewer agents (--agents; the ratio sets the tasks) or a grid with more free cells"
        )
    pick = rng.choice(cells, size=n_agents + n_tasks, replace=False)
    return Instance(grid=grid, agents=np.sort(pick[:n_agents]), tasks=np.sort(pick[n_agents:]))


def make_instance(
    n: int, ratio: str, seed: int, n_agents: int | None = None, obstacle_frac: float = 0.2
) -> Instance:
    """Seeded random instance of the paper's class: n x n grid, 20% obstacles, n agents."""
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"instance seed={seed!r} must be an integer >= 0")
    rng = np.random.default_rng([int(seed), int(n), 7919])
    grid = generate_grid(n, rng, obstacle_frac)
    m, t = agent_task_counts(n, ratio, n_agents)
    prng = np.random.default_rng([int(seed), int(n), m, t, 104729])
    return place(grid, m, t, prng)


def instance_on_map(grid: Grid, n_agents: int, ratio: str, seed: int) -> Instance:
    """Seeded placement on a given (e.g. MovingAI) grid."""
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"instance seed={seed!r} must be an integer >= 0")
    m, t = agent_task_counts(grid.width, ratio, n_agents)
    return place(grid, m, t, np.random.default_rng([int(seed), 15485863]))


def grid_diameter(grid: Grid) -> int:
    """Hop diameter ``height + width - 2`` of the grid graph G (obstacles are nodes), at least 1.

    A view radius k at or above it sees the whole grid, so every k beyond it is equivalent.
    """
    return max(1, grid.height + grid.width - 2)


def worst_hitting_times(grid: Grid, cells: np.ndarray) -> np.ndarray:
    """(len(cells),) worst-case expected hitting time of each cell by a random walk.

    For every target cell t: ``max_u E[steps for a walk started at u to reach t]`` over the free
    cells u of the target's component, for the walk of Section 3.3 (uniform free neighbour at each
    step). One sparse solve of ``(I - P) h = 1`` with ``h(t) = 0`` per target.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    free = grid.free_flat()
    nbr = grid.neighbours()
    lab = connected_components(grid.free).reshape(-1)
    out = np.zeros(len(cells))
    for j, t in enumerate(np.asarray(cells, dtype=np.int64).tolist()):
        comp = np.flatnonzero((lab == lab[t]) & free)
        if comp.size < 2:
            continue
        loc = np.full(free.size, -1, dtype=np.int64)
        loc[comp] = np.arange(comp.size)
        deg = (nbr[:, comp] >= 0).sum(axis=0)
        rows, cols, vals = [], [], []
        for d in range(4):
            v = nbr[d, comp]
            ok = v >= 0
            rows.append(np.flatnonzero(ok))
            cols.append(loc[v[ok]])
            vals.append(1.0 / deg[ok])
        n = comp.size
        p = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )
        keep = np.arange(n) != loc[t]
        a = (sp.identity(n, format="csr") - p)[keep][:, keep].tocsc()
        out[j] = float(spsolve(a, np.ones(n - 1)).max())
    return out


def isolated_tasks(inst: Instance, factor: float = 2.0) -> np.ndarray:
    """Task cells that count as "geographically isolated" (Section 4.1), possibly empty.

    The paper disregards "any topology that contains geographically isolated tasks, i.e. where
    the worst-case expected length of a random walk to visit each task would be unreasonably
    large", without a number. Here a task is isolated when its worst-case expected hitting time
    (:func:`worst_hitting_times`) exceeds ``factor`` times the largest one on the obstacle-free
    grid of the same shape (corner to opposite corner): the default 2.0 reads "unreasonably large"
    as more than twice what an open grid of that size needs at worst. It is our choice, not the
    paper's; on 40x40 1:1 instances 0-39 it rejects 2 of them.
    """
    if not factor > 0:
        raise ConfigError(f"factor={factor!r} must be > 0")
    h, w = grid_shape = inst.grid.free.shape
    corner = worst_hitting_times(Grid(np.ones(grid_shape, dtype=bool)), np.array([h * w - 1]))
    times = worst_hitting_times(inst.grid, inst.tasks)
    return inst.tasks[times > factor * corner[0]]


def diamond_offsets(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(dr, dc) offsets of the k-hop ball of the grid graph, |dr| + |dc| <= k."""
    if k < 0:
        raise ConfigError(f"view radius k={k} must be >= 0")
    dr, dc = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1), indexing="ij")
    m = np.abs(dr) + np.abs(dc) <= k
    return dr[m].astype(np.int64), dc[m].astype(np.int64)


def view_cells(grid: Grid, cell: int, k: int) -> np.ndarray:
    """Sorted cells of the exact k-hop ball of ``cell`` in G (obstacle cells included)."""
    dr, dc = diamond_offsets(min(k, grid_diameter(grid)))
    r, c = divmod(int(cell), grid.width)
    rr, cc = r + dr, c + dc
    ok = (rr >= 0) & (rr < grid.height) & (cc >= 0) & (cc < grid.width)
    return np.sort(rr[ok] * grid.width + cc[ok])


def khop_ball_bfs(grid: Grid, cell: int, k: int) -> np.ndarray:
    """Reference k-hop ball by BFS over the full grid graph (obstacles are nodes), for tests."""
    h, w = grid.height, grid.width
    seen = {int(cell): 0}
    q = deque([int(cell)])
    while q:
        u = q.popleft()
        if seen[u] == k:
            continue
        r, c = divmod(u, w)
        for d in range(4):
            rr, cc = r + DR[d], c + DC[d]
            if 0 <= rr < h and 0 <= cc < w:
                v = rr * w + cc
                if v not in seen:
                    seen[v] = seen[u] + 1
                    q.append(v)
    return np.array(sorted(seen), dtype=np.int64)


def manhattan(grid_width: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise hop distance in G between cell arrays a (p,) and b (q,) -> (p, q)."""
    ar, ac = np.divmod(np.asarray(a), grid_width)
    br, bc = np.divmod(np.asarray(b), grid_width)
    return np.abs(ar[:, None] - br[None, :]) + np.abs(ac[:, None] - bc[None, :])


def log_star(x: float) -> int:
    """Iterated logarithm log2*(x) of the paper's footnote 1."""
    k = 0
    while x > 1:
        x = math.log2(x)
        k += 1
    return k
