"""DMAR protocols (Algorithm 1; pseudocode Algorithms 3, 4, 5) and the run driver.

Every function named ``*_step`` is agent code run by all agents in one PS step through an
:class:`~dmar_agent.executor.AgentAPI`. One DMAR iteration (Algorithm 1) is

* SOAC (Alg. 3): ``sense`` (lines 1-2), ``elect`` (lines 3-9), then for ``i = 1..psi``: one join
  step (lines 11-26) and ``W`` propagation steps (lines 27-35), then ``max_depth`` settle steps;
* LMA (Alg. 4): ``lma_init`` (lines 1-9), ``W`` down steps (lines 10-19), ``W`` up steps (20-22);
* TMAR (Alg. 5 lines 1-7): ``tmar_plan`` at the centroid, ``W`` broadcast steps;
* EM (Alg. 5 lines 8-11): ``em_init`` and ``lambda`` movement steps, then re-initialisation,

with ``W = r * 2**psi`` (the paper's O(2^psi) loops with constant r) and
``lambda = 2 * r * 4**(psi - 1)`` (the paper's O(2^(2(psi-1))) padding).

Choices where the paper is ambiguous or inconsistent (all listed in the README):

* Leader election follows the text and Fig. 1 (an agent that sees a task steps down when it sees
  another task-seeing agent with a *larger* ID); Alg. 3 line 5 has the comparison reversed.
* A cluster-join request travels along the edges of the old trees (Section 3.1 text), not to
  every agent in view (Alg. 3 line 29 literally).
* Trees have bounded fan-out (``max_children``) and bounded depth (``max_depth = W - 1``): an agent
  never attaches deeper, which makes the O(2^psi) height of Lemma 3.1 hold by construction. Agents
  whose parent left for another cluster (or rejected them) drop out ("not all agents of K', K''
  may join the new larger cluster").
* EM exploration: a random walk (uniform free neighbour, Section 3.3) or a random waypoint inside
  the view; an exploring agent stops when a task it did not see at the start of EM enters its
  view (Appendix C's "exploring but found a near-by task and therefore waiting"). Cluster members
  from whose cell no task of the cluster map is reachable on the known map explore without that
  stop rule. Together this makes every task be completed on connected instances (with
  probability 1), unlike a waypoint rule that can wait forever.
* GCI (Appendix A.4): the depot is the centroid's cell at planning time (the same in DMAR-GCI and
  BP-GCI, as the proof of Theorem A.1 needs), or the member's own start when the depot is not
  reachable on the cluster map. Plans are not truncated, and the iteration's EM phase lasts until
  the longest plan ends (explorers walk at most ``lambda`` steps, then wait). Tokens live for the
  EM phase of their iteration, and any agent that visits a cluster's task cell leaves one, member
  or explorer (:func:`gci_token_cells`), so explorers never see the cluster's progress.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from .errors import ConfigError
from .executor import AgentAPI, Executor, LocalMap, TeamPlan
from .planning import INF, MapPlanner
from .world import WAIT, Instance

MAX_PSI = 6
"""Largest psi accepted. One iteration takes ``iteration_steps`` = 2 + psi (W + 1) + 4 W + 2 +
lambda PS steps with W = r 2^psi and lambda = 2 r 4^(psi-1): 95 at psi = 3 (the paper's value),
2,698 at psi = 6, about 5.5e11 at psi = 20, each step running every agent."""
MAX_ITERATION_STEPS = 4096
"""Bound on ``DmarConfig.iteration_steps`` (covers r and an explicit lambda as well as psi)."""


def iteration_steps(psi: int, r: int = 1, lam: int | None = None) -> int:
    """PS steps of one iteration: SOAC 2 + psi (W + 1) + (W - 1), LMA 1 + 2 W, TMAR 1 + W, EM
    1 + lambda, with W = r 2^psi and lambda = 2 r 4^(psi-1) unless given (GCI may add steps)."""
    w = r * 2**psi
    lam_steps = lam if lam is not None else 2 * r * 4 ** (psi - 1)
    return 2 + psi * (w + 1) + (w - 1) + 1 + 2 * w + 1 + w + 1 + lam_steps


@dataclass(frozen=True)
class DmarConfig:
    """Parameters of one DMAR / BP run.

    Attributes:
        k: view (sensing and communication) radius in hops.
        psi: cluster size parameter (the paper fixes psi = 3).
        r: constant of the O(.) loop bounds (Appendix D): W = r * 2**psi PS steps per loop.
        max_children: bound on child pointers (Section 3.1, bounded children).
        lam: EM length lambda(psi) in PS steps; None -> 2 * r * 4**(psi - 1).
        policy: "rollout" (DMAR) or "base" (BP: greedy inside the same clusters).
        gci: guaranteed cost improvement variant (depots + tokens, Appendix A.4).
        explore: "walk" (random walk) or "waypoint" (random waypoint in the view).
        max_iterations: give up after this many DMAR iterations (reported as not completed,
            ``stop_reason`` "max_iterations").
        seed: seed of the agents' random streams (identical seeds give identical runs), >= 0.
        time_limit_s: give up when a new iteration would start after this many seconds of wall
            time (``stop_reason`` "time_limit"); None: no limit. Checked between iterations, so a
            run may overrun it by one iteration (at most ``iteration_steps`` PS steps).
    """

    k: int
    psi: int = 3
    r: int = 1
    max_children: int = 4
    lam: int | None = None
    policy: str = "rollout"
    gci: bool = False
    explore: str = "walk"
    max_iterations: int = 20000
    seed: int = 0
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        checks = [
            ("k", self.k, 1, "the view radius in hops"),
            ("psi", self.psi, 1, "the paper uses 3"),
            ("r", self.r, 1, "a small constant, default 1"),
            ("max_children", self.max_children, 1, "default 4"),
            ("max_iterations", self.max_iterations, 1, "e.g. 20000"),
            ("seed", self.seed, 0, "a run seed"),
        ]
        for name, val, lo, hint in checks:
            if not isinstance(val, int | np.integer) or val < lo:
                raise ConfigError(f"{name}={val!r} must be an integer >= {lo} ({hint})")
        if self.lam is not None and (not isinstance(self.lam, int) or self.lam < 1):
            raise ConfigError(f"lam={self.lam!r} must be None or an integer >= 1")
        if self.policy not in ("rollout", "base"):
            raise ConfigError(f"policy={self.policy!r} must be 'rollout' (DMAR) or 'base' (BP)")
        if self.explore not in ("walk", "waypoint"):
            raise ConfigError(f"explore={self.explore!r} must be 'walk' or 'waypoint'")
        if self.psi > MAX_PSI:
            raise ConfigError(
                f"psi={self.psi} must be <= {MAX_PSI}: an iteration takes about 2^psi + "
                f"2 * 4^(psi-1) PS steps ({self.iteration_steps:.3g} here); the paper uses 3"
            )
        if self.iteration_steps > MAX_ITERATION_STEPS:
            raise ConfigError(
                f"r={self.r}, lam={self.lam}: one iteration would take {self.iteration_steps} PS "
                f"steps, more than {MAX_ITERATION_STEPS}; use smaller r or lam"
            )
        t = self.time_limit_s
        if t is not None and (not isinstance(t, int | float) or not t > 0 or t == float("inf")):
            raise ConfigError(f"time_limit_s={t!r} must be None or a finite number > 0 [s]")

    @property
    def W(self) -> int:
        return self.r * 2**self.psi

    @property
    def max_depth(self) -> int:
        return self.W - 1

    @property
    def lam_steps(self) -> int:
        return self.lam if self.lam is not None else 2 * self.r * 4 ** (self.psi - 1)

    @property
    def iteration_steps(self) -> int:
        """PS steps of one iteration (see :func:`iteration_steps`)."""
        return iteration_steps(self.psi, self.r, self.lam)


# ====================================================================== SOAC (Algorithm 3)
def sense_step(api: AgentAPI) -> None:
    """Alg. 3 lines 1-2: remember whether a task is in view."""
    api.set(sees_task=bool(api.tasks_in_view()))


def elect_step(api: AgentAPI) -> None:
    """Alg. 3 lines 3-9 (with the ID comparison of the text and Fig. 1)."""
    me = api.me
    if not me.sees_task:
        return
    for x in api.agents_in_view():
        if x > me.id and api.peer(x).sees_task:
            return
    api.set(cluster=me.id, parent=None, depth=0, children=())


def _maintain(api: AgentAPI, upd: dict) -> None:
    """Drop out when the parent left the cluster; forget children that left (tree upkeep)."""
    me = api.me
    if me.cluster is None:
        return
    if me.parent is not None:
        p = api.peer(me.parent)
        if p.cluster != me.cluster or me.id not in p.children:
            upd.update(cluster=None, parent=None, children=(), depth=-1, pending=())
            return
    kids = tuple(
        c for c in me.children if api.peer(c).parent == me.id and api.peer(c).cluster == me.cluster
    )
    if kids != me.children:
        upd["children"] = kids


def join_step(api: AgentAPI) -> None:
    """Alg. 3 lines 11-26: join the one cluster in view, or start a cluster-join over several."""
    me = api.me
    upd: dict = {}
    if me.cluster is not None:
        _maintain(api, upd)
        if upd:
            api.set(**upd)
        return
    prm = api.params
    clustered = [x for x in api.agents_in_view() if api.peer(x).cluster is not None]
    if not clustered:
        return
    ids = {api.peer(x).cluster for x in clustered}
    if len(ids) == 1:
        free = [
            x
            for x in clustered
            if api.peer(x).depth < prm.max_depth and len(api.peer(x).children) < prm.max_children
        ]
        if free:
            api.join(min(free, key=lambda x: (api.peer(x).depth, x)))
        return
    # cluster-join: become the centroid of a new cluster and recruit the members in view,
    # one per cluster first so that the join really spans the clusters seen
    by_cluster: dict[int, list[int]] = {}
    for x in sorted(clustered, key=lambda x: (api.peer(x).depth, x)):
        by_cluster.setdefault(api.peer(x).cluster, []).append(x)
    order = [v[0] for _, v in sorted(by_cluster.items())]
    order += [x for _, v in sorted(by_cluster.items()) for x in v[1:]]
    api.set(cluster=me.id, parent=None, depth=0, children=(), message=True, pending=())
    for x in order[: prm.max_children]:
        api.recruit(x, me.id, 1)


def propagate_step(api: AgentAPI, last: bool) -> None:
    """Alg. 3 lines 27-35: pass the cluster-join request on along the old tree edges."""
    me = api.me
    upd: dict = {}
    if me.message and me.pending and me.depth < api.params.max_depth:
        for x in me.pending:
            if not api.peer(x).message:
                api.recruit(x, me.cluster, me.depth + 1)
        upd["pending"] = ()
    _maintain(api, upd)
    if last:
        upd["message"] = False
        upd["pending"] = ()
    if upd:
        api.set(**upd)


def settle_step(api: AgentAPI) -> None:
    """Tree upkeep only, so that drop-outs reach the leaves before LMA starts."""
    upd: dict = {}
    _maintain(api, upd)
    if upd:
        api.set(**upd)


# ====================================================================== LMA (Algorithm 4)
def lma_init_step(api: AgentAPI) -> None:
    """Alg. 4 lines 1-9: the centroid starts from its own view and signals down."""
    me = api.me
    if me.cluster is not None and me.parent is None:
        api.set(map=api.view_map(), message=True)
    elif me.message:
        api.set(message=False)


def lma_down_step(api: AgentAPI) -> None:
    """Alg. 4 lines 10-19: take the parent's map, add the own view, pass the signal on."""
    me = api.me
    if me.parent is None or me.message:
        return
    p = api.peer(me.parent)
    if p.message and p.map is not None:
        api.set(map=p.map.union(api.view_map()), message=True)


def lma_up_step(api: AgentAPI) -> None:
    """Alg. 4 lines 20-22: ``a.parent.M <- a.parent.M U a.M`` (sent again only when it grew)."""
    me = api.me
    if me.parent is None or me.map is None or me.map is me.sent_map:
        return
    api.merge_map(me.parent, me.map)
    api.set(sent_map=me.map)


# ====================================================================== TMAR (Algorithm 5)
def plan_cluster(lm: LocalMap, leader: int, leader_cell: int, cfg: DmarConfig, shape) -> tuple:
    """MULTIAGENTROLLOUT(M) (or the greedy base policy for BP) on a cluster map.

    Members are planned in ascending ID order (Section 3.3). Returns (TeamPlan, compute).
    """
    height, width = shape
    cells = dict(lm.agents)
    members = sorted(lm.members)
    agent_cells = [cells[a] for a in members]
    planner = MapPlanner(width, height, lm.free, np.array(sorted(lm.tasks), dtype=np.int64))
    depots = None
    if cfg.gci:
        d, _ = planner.distance_fields(np.array([planner.loc[leader_cell]], dtype=np.int64))
        depots = [leader_cell if d[0, planner.loc[c]] < INF else c for c in agent_cells]
    horizon = None if cfg.gci else cfg.lam_steps
    if cfg.policy == "rollout":
        plan = planner.rollout_plan(agent_cells, depots=depots, horizon=horizon)
    else:
        plan = planner.base_plan(agent_cells, depots=depots, horizon=horizon)
    team = TeamPlan(
        controls={a: tuple(c) for a, c in zip(members, plan.controls)},
        idle=frozenset(a for a, i in zip(members, plan.idle) if i),
        tasks=frozenset(lm.tasks),
        leader=leader,
    )
    return team, plan.compute


def make_tmar_plan_step(cfg: DmarConfig, shape) -> callable:
    def tmar_plan_step(api: AgentAPI) -> None:
        """Alg. 5 lines 1-3: the centroid plans for its cluster (padding = EM length)."""
        me = api.me
        if me.cluster is None or me.parent is not None or me.map is None:
            return
        t0 = time.perf_counter()
        team, compute = plan_cluster(me.map, me.id, api.cell, cfg, shape)
        api.record("plan_wall_s", time.perf_counter() - t0)
        api.record("compute", compute)
        api.set(plan=team)

    return tmar_plan_step


def tmar_bcast_step(api: AgentAPI) -> None:
    """Alg. 5 lines 4-7: copy the parent's control sequences down the tree."""
    me = api.me
    if me.parent is None:
        return
    p = api.peer(me.parent)
    if p.plan is not None and me.plan is not p.plan:
        api.set(plan=p.plan)


# ====================================================================== EM (Algorithm 5)
def em_init_step(api: AgentAPI) -> None:
    """Alg. 5 line 8: cluster members follow their sequence, the others explore."""
    me = api.me
    plan = me.plan
    follow = plan is not None and me.id in plan.controls and me.id not in plan.idle
    roam = plan is not None and me.id in plan.idle
    api.set(explore=not follow, stop=False, seen0=api.tasks_in_view(), waypoint=(), roam=roam)


def _waypoint_path(api: AgentAPI) -> tuple:
    """Controls of a shortest path (inside the view) to a uniformly drawn reachable view cell."""
    lm = api.view_map()
    start = api.cell
    free = lm.free
    width = len(free) // max(1, api.params.height)
    prev = {start: (None, WAIT)}
    q = deque([start])
    while q:
        u = q.popleft()
        r, c = divmod(u, width)
        for d, (dr, dc) in enumerate(((-1, 0), (0, 1), (1, 0), (0, -1))):
            rr, cc = r + dr, c + dc
            if 0 <= rr < api.params.height and 0 <= cc < width:
                v = rr * width + cc
                if free[v] and v not in prev:
                    prev[v] = (u, d)
                    q.append(v)
    targets = sorted(v for v in prev if v != start)
    if not targets:
        return ()
    goal = targets[int(api.rng.integers(len(targets)))]
    path = []
    v = goal
    while v != start:
        u, d = prev[v]
        path.append(d)
        v = u
    return tuple(reversed(path))


def make_em_move_step(t: int, lam: int) -> callable:
    def em_move_step(api: AgentAPI) -> None:
        """Alg. 5 lines 9-10: one movement step (planned control or exploration)."""
        me = api.me
        if not me.explore and me.plan is not None and me.id in me.plan.controls:
            seq = me.plan.controls[me.id]
            api.move(seq[t] if t < len(seq) else WAIT)
            return
        if me.stop or t >= lam:
            return
        if not me.roam and (api.tasks_in_view() - me.seen0):
            api.set(stop=True)
            return
        if api.params.explore == "walk":
            moves = api.free_moves()
            if moves:
                api.move(moves[int(api.rng.integers(len(moves)))][0])
            return
        path = me.waypoint or _waypoint_path(api)
        if path:
            api.move(path[0])
            api.set(waypoint=path[1:])

    return em_move_step


# ====================================================================== driver
@dataclass
class RunResult:
    """Measures of one run (Section 4.1 and the issue's list).

    Attributes:
        cost: total moves of all agents (exploration included, waits free).
        exploration_moves: moves made while exploring.
        waits: agent-steps without a move during EM.
        ps_steps: parallel synchronous time steps.
        iterations: DMAR iterations (Algorithm 1 rounds).
        clusters: clusters formed, summed over iterations.
        plan_wall_s: wall time spent inside TMAR planning.
        wall_s: wall time of the whole run.
        compute: base-policy agent-steps simulated while planning.
        tasks_left: tasks not completed (0 when ``completed``).
        completed: every task was visited.
        stop_reason: why an incomplete run stopped: "max_iterations", "time_limit", or "" when
            it completed.
        cost_at_completion: moves up to and including the PS step that completed the last task
            (``cost`` when incomplete). ``cost`` also counts the moves made after it until the
            end of that EM phase, since no agent knows that the mission is over; a simulator
            that stops at the last task would report this value instead.
    """

    cost: int
    exploration_moves: int
    waits: int
    ps_steps: int
    iterations: int
    clusters: int
    plan_wall_s: float
    wall_s: float
    compute: int
    tasks_left: int
    completed: bool
    stop_reason: str = ""
    cost_at_completion: int = -1

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AgentParams:
    """The protocol constants every agent knows (``api.params``): k, psi, tree bounds,
    exploration mode and the grid height."""

    k: int
    psi: int
    max_children: int
    max_depth: int
    explore: str
    height: int


def soac_steps(cfg: DmarConfig) -> list:
    """PS steps of SOAC (Algorithm 3): 2 + psi * (W + 1) + max_depth steps, for every agent."""
    steps = [sense_step, elect_step]
    for _ in range(cfg.psi):
        steps.append(join_step)
        for j in range(cfg.W):
            steps.append(lambda api, last=(j == cfg.W - 1): propagate_step(api, last))
    steps.extend([settle_step] * cfg.max_depth)
    return steps


def lma_steps(cfg: DmarConfig) -> list:
    """PS steps of LMA (Algorithm 4): 1 + 2 W."""
    return [lma_init_step] + [lma_down_step] * cfg.W + [lma_up_step] * cfg.W


def tmar_steps(cfg: DmarConfig, shape) -> list:
    """PS steps of TMAR (Algorithm 5 lines 1-7): 1 + W."""
    return [make_tmar_plan_step(cfg, shape)] + [tmar_bcast_step] * cfg.W


def soac(ex: Executor, cfg: DmarConfig) -> None:
    """Run SOAC on the executor."""
    for fn in soac_steps(cfg):
        ex.step(fn)


def lma(ex: Executor, cfg: DmarConfig) -> None:
    """Run LMA on the executor."""
    for fn in lma_steps(cfg):
        ex.step(fn)


def tmar(ex: Executor, cfg: DmarConfig) -> None:
    """Run TMAR on the executor."""
    for fn in tmar_steps(cfg, (ex.grid.height, ex.grid.width)):
        ex.step(fn)


def em_length(ex: Executor, cfg: DmarConfig) -> int:
    """EM steps of this iteration: lambda, or (GCI only) the longest broadcast plan if longer."""
    lam = cfg.lam_steps
    if not cfg.gci:
        return lam
    plans = [mm.plan for mm in ex.mem if mm.plan is not None]
    return max([lam, *(len(s) for p in plans for s in p.controls.values())])


def gci_token_cells(ex: Executor) -> frozenset:
    """Task cells of every cluster map planned in this iteration (GCI token mechanism, App. A.4).

    Appendix A.4: a member of cluster K that visits a task location v of nu(K) leaves a token at
    v, and an agent outside K that sees v "will still recognize v as a task location and treat
    it as such"; "in this scheme we also prevent exploring agents from interfering with existing
    clusters". The proof of Theorem A.1 rests on that: "differences in the order in which BP-GCI
    and DMAR-GCI complete tasks will not influence the trajectories of exploring agents". For
    that to hold, a cluster task cell must look the same to explorers from planning to the end of
    EM whoever reaches it first, so *every* agent that visits one of these cells -- a member or
    an explorer -- leaves the token. Were only members to leave it, an explorer that got there
    first would complete the task and the cell would vanish from every view, then reappear as a
    token when the member arrives, at a step that differs between rollout and the base policy;
    explorers stop when a new task enters their view, so the two executions would part (found on
    ``make_instance(15, "1:2", 6388)``, k = 5, walk exploration, seed 6388).

    The alternative, explorers never completing a cluster's task, would also keep the views equal
    but leaves a task uncompleted when no member can reach it on the cluster map; the token
    keeps completion as it is and costs nothing: the visit is a move either way.
    """
    cells: set[int] = set()
    for mm in ex.mem:
        if mm.plan is not None and mm.parent is None:
            cells |= mm.plan.tasks
    return frozenset(cells)


def make_executor(inst: Instance, cfg: DmarConfig) -> Executor:
    params = AgentParams(
        cfg.k, cfg.psi, cfg.max_children, cfg.max_depth, cfg.explore, inst.grid.height
    )
    return Executor(
        inst.grid,
        inst.agents,
        inst.tasks,
        cfg.k,
        params,
        cfg.seed,
        cfg.max_children,
        cfg.max_depth,
    )


def run_dmar(inst: Instance, cfg: DmarConfig) -> RunResult:
    """Run DMAR (``policy='rollout'``) or BP (``policy='base'``) until every task is completed,
    ``cfg.max_iterations`` iterations have run, or ``cfg.time_limit_s`` has passed."""
    t_start = time.perf_counter()
    ex = make_executor(inst, cfg)
    cost = explore_moves = waits = clusters = 0
    cost_at_completion = None
    lam = cfg.lam_steps
    stop_reason = ""
    while ex.alive.any():
        if ex.iteration >= cfg.max_iterations:
            stop_reason = "max_iterations"
            break
        if cfg.time_limit_s is not None and time.perf_counter() - t_start >= cfg.time_limit_s:
            stop_reason = "time_limit"
            break
        ex.reinit()
        soac(ex, cfg)
        clusters += sum(1 for mm in ex.mem if mm.cluster is not None and mm.parent is None)
        lma(ex, cfg)
        tmar(ex, cfg)
        ex.step(em_init_step)
        token_cells = gci_token_cells(ex) if cfg.gci else frozenset()
        for t in range(em_length(ex, cfg)):
            moved = ex.step(make_em_move_step(t, lam), moving=True)
            moved_set = set(moved)
            for i in range(ex.m):
                if i not in moved_set:
                    waits += 1
            for i in moved:
                cell = int(ex.pos[i])
                mm = ex.mem[i]
                cost += 1
                if mm.explore:
                    explore_moves += 1
                ex._complete(cell)
                if cell in token_cells:
                    ex.tokens.add(cell)
            if cost_at_completion is None and not ex.alive.any():
                cost_at_completion = cost
            if cfg.gci and moved:
                ex.refresh()
    st = ex.stats
    return RunResult(
        cost=cost,
        exploration_moves=explore_moves,
        waits=waits,
        ps_steps=ex.ps_steps,
        iterations=ex.iteration,
        clusters=clusters,
        plan_wall_s=float(st.get("plan_wall_s", 0.0)),
        wall_s=time.perf_counter() - t_start,
        compute=int(st.get("compute", 0)),
        tasks_left=int(ex.alive.sum()),
        completed=not ex.alive.any(),
        stop_reason=stop_reason,
        cost_at_completion=cost if cost_at_completion is None else cost_at_completion,
    )


def cluster_problems(ex: Executor, cfg: DmarConfig) -> list[str]:
    """Check Lemma 3.1 on the executor's current memories; returns the violations found.

    (i) every cluster is a tree rooted at its centroid (parent/child pointers agree, links are
    communication links, fan-out <= max_children, height <= max_depth); (ii) every member's
    cluster ID is its root's ID.
    """
    out = []
    mem = ex.mem
    for a in mem:
        if a.cluster is None:
            if a.parent is not None or a.children:
                out.append(f"agent {a.id}: unclustered but has tree pointers")
            continue
        if len(a.children) > cfg.max_children:
            out.append(f"agent {a.id}: {len(a.children)} children > {cfg.max_children}")
        for c in a.children:
            if mem[c].parent != a.id or mem[c].cluster != a.cluster:
                out.append(f"agent {a.id}: child {c} does not point back")
        seen = set()
        cur = a
        hops = 0
        while cur.parent is not None:
            if cur.id in seen:
                out.append(f"agent {a.id}: cycle")
                break
            seen.add(cur.id)
            par = mem[cur.parent]
            if cur.id not in par.children:
                out.append(f"agent {cur.id}: parent {par.id} does not list it")
            if not ex.in_view(cur.id, int(ex.pos[par.id])):
                out.append(f"agent {cur.id}: parent {par.id} outside its view")
            if par.cluster != a.cluster:
                out.append(f"agent {a.id}: ancestor {par.id} in another cluster")
            cur = par
            hops += 1
        if cur.id != a.cluster:
            out.append(f"agent {a.id}: root {cur.id} is not its cluster ID {a.cluster}")
        if hops > cfg.max_depth or hops != a.depth:
            out.append(f"agent {a.id}: depth {a.depth}, {hops} hops (max {cfg.max_depth})")
    return out
