"""Parallel synchronous (PS) executor with a locality-enforcing agent API (Section 2).

In each PS time step every agent runs the same protocol function ``fn(api)``. The function reads
only through its :class:`AgentAPI`: its own memory, the cells, obstacles and tasks of its view
(the exact k-hop ball, see :mod:`dmar_agent.world`) and the memories of the agents standing in
that view. Memories read are those of time ``t - 1``: every write is deferred and applied after
all agents ran, so agents "may only act upon information communicated at time t - 1".

Writes: ``api.set(...)`` changes the agent's own memory; writes into the memory of another agent
(allowed by the model for any agent in the view) are typed requests -- ``join``, ``recruit``,
``merge_map`` -- that the executor resolves deterministically when several agents write the same
memory at once (the paper: "disregard all but one chosen arbitrarily"; here: the lowest sender ID).
Asking for an agent or a cell outside the view raises :class:`LocalityError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import LocalityError
from .world import DC, DR, WAIT, Grid, diamond_offsets, grid_diameter


@dataclass(frozen=True)
class LocalMap:
    """Map structure ``a.M = (Gamma, Phi, Pi)`` of Appendix D item 8.

    Cells carry simulator indices in place of labels relative to the centroid (Lemma 3.2): an
    agent only ever adds cells of its own view, so the content is the same.

    Attributes:
        known: (n_cells,) bool, cells seen (H of Gamma, obstacles included).
        free: (n_cells,) bool, known free cells (the nodes that can be visited).
        tasks: task cells seen (Pi).
        agents: (agent ID, cell) pairs seen (Phi = (L, D)).
        members: IDs of the cluster agents whose views were merged.
    """

    known: np.ndarray
    free: np.ndarray
    tasks: frozenset
    agents: frozenset
    members: frozenset

    def union(self, other: LocalMap) -> LocalMap:
        """Component-wise union (the map union of Section 3.2)."""
        if other is self:
            return self
        return LocalMap(
            self.known | other.known,
            self.free | other.free,
            self.tasks | other.tasks,
            self.agents | other.agents,
            self.members | other.members,
        )


@dataclass(frozen=True)
class TeamPlan:
    """Control sequences ``a.Q`` computed by a cluster leader (TMAR) and broadcast in its tree.

    Attributes:
        controls: agent ID -> tuple of controls (0..4 = N, E, S, W, WAIT).
        idle: IDs of members from whose cell no known task is reachable (they explore instead).
        tasks: task cells of the cluster map (the cells that get GCI tokens, Appendix A.4).
        leader: ID of the centroid that planned.
    """

    controls: dict
    idle: frozenset
    tasks: frozenset
    leader: int


@dataclass(frozen=True)
class Memory:
    """Attributes of one agent (Appendix D, items 1-9), re-initialised every DMAR iteration.

    ``depth`` (hops to the centroid) and ``pending`` (old tree neighbours a recruited agent still
    has to pass the cluster-join request to, Section 3.1) are the bookkeeping behind the bounded
    tree height of Lemma 3.1.
    """

    id: int
    sees_task: bool = False
    cluster: int | None = None
    parent: int | None = None
    children: tuple = ()
    depth: int = -1
    message: bool = False
    pending: tuple = ()
    map: LocalMap | None = None
    sent_map: LocalMap | None = None
    plan: TeamPlan | None = None
    explore: bool = False
    stop: bool = False
    seen0: frozenset = frozenset()
    waypoint: tuple = ()
    roam: bool = False


@dataclass
class StepOps:
    """Writes requested by one agent in one PS step (applied after all agents ran)."""

    own: dict = field(default_factory=dict)
    joins: list = field(default_factory=list)
    recruits: list = field(default_factory=list)
    merges: list = field(default_factory=list)
    move: int = WAIT


class AgentAPI:
    """What protocol code of agent ``a`` may see and do in one PS step."""

    __slots__ = ("_ex", "_id", "_ops")

    def __init__(self, ex: Executor, agent_id: int, ops: StepOps) -> None:
        self._ex = ex
        self._id = agent_id
        self._ops = ops

    # ---- reading
    @property
    def me(self) -> Memory:
        """Own memory at time t - 1."""
        return self._ex.mem[self._id]

    @property
    def cell(self) -> int:
        """Own cell (the protocol never needs others' cells outside the view)."""
        return int(self._ex.pos[self._id])

    @property
    def rng(self) -> np.random.Generator:
        """Own random stream (seeded by run seed, iteration and agent ID)."""
        return self._ex.agent_rng(self._id)

    @property
    def params(self):
        """Protocol constants known to every agent (k, psi, ...)."""
        return self._ex.params

    def agents_in_view(self) -> list[int]:
        """IDs (ascending) of the other agents in the view."""
        return self._ex.agents_in_view(self._id)

    def peer(self, agent_id: int) -> Memory:
        """Memory (time t - 1) of an agent in the view."""
        if agent_id != self._id and agent_id not in self._ex.agents_in_view_set(self._id):
            raise LocalityError(f"agent {self._id} read agent {agent_id} outside its view")
        return self._ex.mem[agent_id]

    def tasks_in_view(self) -> frozenset:
        """Cells of the tasks in the view (plus GCI tokens while they exist)."""
        return self._ex.tasks_in_view(self._id)

    def view_map(self) -> LocalMap:
        """The view nu_t(a) as a map (cells, obstacles, tasks, agents)."""
        return self._ex.view_map(self._id)

    def free_moves(self) -> list[tuple[int, int]]:
        """(control, cell) of the free cells next to the agent, in order N, E, S, W."""
        if self._ex.k < 1:
            return []
        return [(d, c) for d, c in enumerate(self._ex.nbr[:, self.cell].tolist()) if c >= 0]

    def record(self, key: str, value: float) -> None:
        """Add to a run measure (instrumentation only; never read back by protocol code)."""
        st = self._ex.stats
        st[key] = st.get(key, 0) + value

    def cell_free(self, cell: int) -> bool:
        """Obstacle test for a cell of the view."""
        if not self._ex.in_view(self._id, cell):
            raise LocalityError(f"agent {self._id} looked at cell {cell} outside its view")
        return bool(self._ex.free[cell])

    # ---- writing
    def set(self, **fields) -> None:
        """Write own memory (applied at the end of the step)."""
        self._ops.own.update(fields)

    def _check(self, target: int) -> None:
        if target not in self._ex.agents_in_view_set(self._id):
            raise LocalityError(f"agent {self._id} wrote agent {target} outside its view")

    def join(self, parent: int) -> None:
        """Become a child of ``parent`` (Alg. 3 lines 14-16), if it has a free child pointer."""
        self._check(parent)
        self._ops.joins.append(parent)

    def recruit(self, target: int, cluster: int, depth: int) -> None:
        """Cluster-join request (Alg. 3 lines 22-26 and 30-34)."""
        self._check(target)
        self._ops.recruits.append((target, cluster, depth))

    def merge_map(self, target: int, local_map: LocalMap) -> None:
        """``target.M <- target.M U local_map`` (Alg. 4 line 22)."""
        self._check(target)
        self._ops.merges.append((target, local_map))

    def move(self, control: int) -> None:
        """Move in EM (controls 0..4); the cell must be free and adjacent."""
        self._ops.move = int(control)


class Executor:
    """World state plus the PS stepping machinery.

    Args:
        grid: obstacle map.
        agents: (m,) start cells.
        tasks: (T,) task cells.
        k: view radius; clamped to the grid's diameter ``height + width - 2`` (a k-hop ball that
            large already holds every cell, so a larger k sees the same and the view offsets,
            which grow with k^2, stay bounded by the grid).
        params: protocol constants handed to every agent (read-only).
        seed: run seed of the agents' random streams.
    """

    def __init__(
        self,
        grid: Grid,
        agents: np.ndarray,
        tasks: np.ndarray,
        k: int,
        params: object,
        seed: int,
        max_children: int,
        max_depth: int,
    ) -> None:
        self.grid = grid
        self.width = grid.width
        self.free = grid.free_flat()
        self.nbr = grid.neighbours()
        self.k = min(int(k), grid_diameter(grid))
        self.params = params
        self.seed = int(seed)
        self.max_children = int(max_children)
        self.max_depth = int(max_depth)
        self.pos = np.array(agents, dtype=np.int64)
        self.m = len(self.pos)
        self.task_cells = np.array(tasks, dtype=np.int64)
        self.alive = np.ones(len(self.task_cells), dtype=bool)
        self.task_index = {int(c): i for i, c in enumerate(self.task_cells.tolist())}
        self.tokens: set[int] = set()
        self.iteration = 0
        self.ps_steps = 0
        self.mem = [Memory(i) for i in range(self.m)]
        dr, dc = diamond_offsets(self.k)
        self._dr, self._dc = dr, dc
        self._rngs: dict[int, np.random.Generator] = {}
        self.stats: dict[str, float] = {}
        for c in self.pos.tolist():
            self._complete(c)
        self.refresh()

    # ------------------------------------------------------------------ world queries
    def _complete(self, cell: int) -> bool:
        t = self.task_index.get(cell)
        if t is not None and self.alive[t]:
            self.alive[t] = False
            return True
        return False

    def refresh(self) -> None:
        """Recompute who sees whom (positions are fixed during SOAC, LMA and TMAR)."""
        r, c = np.divmod(self.pos, self.width)
        d = np.abs(r[:, None] - r[None, :]) + np.abs(c[:, None] - c[None, :])
        vis = d <= self.k
        np.fill_diagonal(vis, False)
        self._nbrs = [np.flatnonzero(row).tolist() for row in vis]
        self._nbr_sets = [set(x) for x in self._nbrs]
        self._view_cache: dict[int, LocalMap] = {}
        self._task_cache: dict[int, frozenset] = {}

    def agents_in_view(self, i: int) -> list[int]:
        return self._nbrs[i]

    def agents_in_view_set(self, i: int) -> set[int]:
        return self._nbr_sets[i]

    def in_view(self, i: int, cell: int) -> bool:
        r, c = divmod(int(self.pos[i]), self.width)
        rr, cc = divmod(int(cell), self.width)
        return abs(r - rr) + abs(c - cc) <= self.k

    def visible_task_cells(self) -> np.ndarray:
        cells = self.task_cells[self.alive]
        if self.tokens:
            cells = np.union1d(cells, np.fromiter(self.tokens, dtype=np.int64))
        return cells

    def tasks_in_view(self, i: int) -> frozenset:
        got = self._task_cache.get(i)
        if got is None:
            cells = self.visible_task_cells()
            r, c = divmod(int(self.pos[i]), self.width)
            tr, tc = np.divmod(cells, self.width)
            got = frozenset(cells[np.abs(tr - r) + np.abs(tc - c) <= self.k].tolist())
            self._task_cache[i] = got
        return got

    def view_cells(self, i: int) -> np.ndarray:
        r, c = divmod(int(self.pos[i]), self.width)
        rr, cc = r + self._dr, c + self._dc
        ok = (rr >= 0) & (rr < self.grid.height) & (cc >= 0) & (cc < self.width)
        return rr[ok] * self.width + cc[ok]

    def view_map(self, i: int) -> LocalMap:
        got = self._view_cache.get(i)
        if got is None:
            cells = self.view_cells(i)
            known = np.zeros(self.free.size, dtype=bool)
            known[cells] = True
            seen = [i, *self._nbrs[i]]
            got = LocalMap(
                known=known,
                free=known & self.free,
                tasks=self.tasks_in_view(i),
                agents=frozenset((a, int(self.pos[a])) for a in seen),
                members=frozenset((i,)),
            )
            self._view_cache[i] = got
        return got

    def agent_rng(self, i: int) -> np.random.Generator:
        g = self._rngs.get(i)
        if g is None:
            g = np.random.default_rng([self.seed, self.iteration, i, 271828])
            self._rngs[i] = g
        return g

    # ------------------------------------------------------------------ stepping
    def reinit(self) -> None:
        """Alg. 5 line 11: re-initialise every agent's variables for the next iteration."""
        self.iteration += 1
        self.mem = [Memory(i) for i in range(self.m)]
        self._rngs = {}
        self.tokens = set()
        self.refresh()

    def run_agent(self, i: int, fn: Callable[[AgentAPI], None]) -> StepOps:
        """Run one agent's protocol for one step and return its (not yet applied) writes."""
        ops = StepOps()
        fn(AgentAPI(self, i, ops))
        return ops

    def step(self, fn: Callable[[AgentAPI], None], moving: bool = False) -> list[int]:
        """One PS time step of every agent; returns the cells visited by moving agents."""
        all_ops = [self.run_agent(i, fn) for i in range(self.m)]
        self.ps_steps += 1
        mem = self.mem
        new = list(mem)
        for i, ops in enumerate(all_ops):
            if ops.own:
                new[i] = replace(new[i], **ops.own)
        # cluster-join requests: the lowest sender wins, recruited agents start over as leaves
        offers: dict[int, tuple[int, int, int]] = {}
        for i, ops in enumerate(all_ops):
            for target, cluster, depth in ops.recruits:
                if target not in offers or i < offers[target][0]:
                    offers[target] = (i, cluster, depth)
        taken: dict[int, list[int]] = {}
        for target in sorted(offers):
            sender, cluster, depth = offers[target]
            tm = new[target]
            sm = new[sender]
            if tm.message or depth > self.max_depth or sm.cluster != cluster:
                continue
            if len(sm.children) + len(taken.get(sender, ())) >= self.max_children:
                continue
            old = [x for x in (mem[target].parent, *mem[target].children) if x is not None]
            new[target] = replace(
                tm,
                cluster=cluster,
                parent=sender,
                children=(),
                depth=depth,
                message=True,
                pending=tuple(x for x in old if x != sender),
            )
            taken.setdefault(sender, []).append(target)
        for sender, kids in taken.items():
            new[sender] = replace(new[sender], children=tuple(new[sender].children) + tuple(kids))
        # joins: a parent accepts the lowest IDs while it has free child pointers
        asks: dict[int, list[int]] = {}
        for i, ops in enumerate(all_ops):
            for parent in ops.joins:
                asks.setdefault(parent, []).append(i)
        for parent in sorted(asks):
            pm = new[parent]
            for child in sorted(asks[parent]):
                cm = new[child]
                if (
                    pm.cluster is None
                    or cm.cluster is not None
                    or pm.depth + 1 > self.max_depth
                    or len(pm.children) >= self.max_children
                ):
                    continue
                new[child] = replace(cm, cluster=pm.cluster, parent=parent, depth=pm.depth + 1)
                pm = replace(pm, children=tuple(pm.children) + (child,))
            new[parent] = pm
        # map merges (unions commute, so simultaneous writes cannot conflict)
        for _i, ops in enumerate(all_ops):
            for target, lm in ops.merges:
                cur = new[target].map
                new[target] = replace(new[target], map=lm if cur is None else cur.union(lm))
        self.mem = new
        visited: list[int] = []
        if moving:
            w = self.width
            for i, ops in enumerate(all_ops):
                u = ops.move
                if u == WAIT:
                    continue
                p = int(self.pos[i])
                r, c = divmod(p, w)
                rr, cc = r + DR[u], c + DC[u]
                q = rr * w + cc
                if not (0 <= rr < self.grid.height and 0 <= cc < w) or not self.free[q]:
                    raise LocalityError(f"agent {i} tried to move from {p} into a blocked cell")
                self.pos[i] = q
                visited.append(i)
            self.refresh()
        return visited
