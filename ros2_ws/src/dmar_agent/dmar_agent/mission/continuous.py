"""DMAR in continuous space (the paper's Section 4 continuous-space paragraph and Appendix C).

The discrete protocol decides, the robots fly: every DMAR iteration runs SOAC, LMA and TMAR of
:mod:`dmar_agent.protocols` unchanged on the grid, and the EM phase is executed by robots of
:class:`sim_bridge.sim.Simulator` in a 2 m x 2 m arena laid out as a grid of 0.2 m cells (9 x 9,
Appendix C). Each EM step,

1. Algorithm 2 (:func:`dmar_agent.collision.resolve_moves`) decides the cell every robot heads
   for: members follow their control sequences (waits inserted, moves ahead), explorers take a
   random free move (the protocol's walk: the same stop rule and random streams) last;
2. every robot tracks its target cell's centre at ``control_hz`` (20 Hz) with a saturated
   proportional velocity setpoint, filtered by the centralized CBF QP
   (:class:`cbf_filter.centralized.CentralizedCBF`, the nodes' parameters: ``safety.distance``,
   ``safety.gamma``, ``class_k``, max speed, arena walls, ``sample_time = 1 / control_hz``);
   the simulator integrates at ``sim_hz``, obstacles are solid;
3. the step ends when every moving robot is within ``tolerance`` of its target centre, or after
   ``step_timeout_s`` of sim time (counted in ``timeouts``); then the grid positions advance.

Ground robots run through the simulator's unicycle near-identity map: their setpoint is the
velocity of the projection point (``SimParams.projection_distance`` ahead), which is the point
the CBF sees; drones fly at their take-off height. The filter is planar (one plane for the whole
team), so a drone keeps Ds from a ground robot below it as well: conservative, and what lets
drones and ground robots share one grid.

Cost follows the paper's footnote to Appendix C: moves executed plus moves circumvented by
moving ahead; inserted waits are free. Metres travelled are measured in the simulator.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from cbf_filter.centralized import CentralizedCBF
from cbf_filter.params import from_config
from sim_bridge.config import MAX_K, SwarmConfig, load_config
from sim_bridge.sim import Mode, SimParams, Simulator

from dmar_agent.collision import Intent, SequenceFollower, resolve_moves
from dmar_agent.errors import ConfigError
from dmar_agent.executor import AgentAPI, Executor
from dmar_agent.protocols import DmarConfig, em_init_step, lma, make_executor, soac, tmar
from dmar_agent.world import Instance


@dataclass(frozen=True)
class ContinuousConfig:
    """Physical side of a continuous-space run.

    Attributes:
        cell_size: side of a grid cell [m] (Appendix C: 0.2).
        kinds: robot kind per agent, "crazyflie" or "ground", cycled over the agents.
        max_speed: speed limit of every robot [m/s] (one centralized filter, one limit).
        safety_distance: Ds, CBF minimum centre distance [m] (below a cell, so neighbours fit).
        gamma: CBF class-K gain (cubic, the Robotarium's).
        control_hz: setpoint and filter rate [Hz].
        sim_hz: simulator rate [Hz] (a multiple of ``control_hz``).
        tolerance: arrival distance to a target cell's centre [m].
        gain: proportional gain of the nominal setpoint [1/s].
        step_timeout_s: sim time after which an EM step ends unfinished [s].
        em_step_cap: EM steps per iteration after which every remaining sequence is final, as a
            multiple of lambda (Algorithm 2 step 5: "before the end of the current DMAR
            iteration").
        takeoff_height: drones' flight height [m].
        arena_size: side of the square arena [m] around the grid (Appendix C: 2 m; never
            smaller than the grid).
    """

    cell_size: float = 0.2
    kinds: tuple[str, ...] = ("crazyflie",)
    max_speed: float = 0.3
    safety_distance: float = 0.12
    gamma: float = 100.0
    control_hz: float = 20.0
    sim_hz: float = 100.0
    tolerance: float = 0.05
    gain: float = 2.0
    step_timeout_s: float = 5.0
    em_step_cap: int = 4
    takeoff_height: float = 0.4
    arena_size: float = 2.0

    def __post_init__(self) -> None:
        bad = set(self.kinds) - {"crazyflie", "ground"}
        if not self.kinds or bad:
            raise ConfigError(f"kinds={self.kinds!r}: each must be 'crazyflie' or 'ground'")
        ratio = self.sim_hz / self.control_hz
        if abs(ratio - round(ratio)) > 1e-9 or ratio < 1:
            raise ConfigError(f"sim_hz={self.sim_hz} must be a multiple of {self.control_hz}")
        if not 0 < self.safety_distance < self.cell_size:
            raise ConfigError(f"safety_distance={self.safety_distance} must be in (0, cell_size)")


@dataclass
class ContinuousResult:
    """Measures of one continuous-space run.

    Attributes:
        cost: moves (the paper's accounting: executed + circumvented, waits free).
        exploration_moves: moves made while exploring.
        skipped_moves: moves counted but not flown (moved ahead, Algorithm 2 step 4).
        dropped_moves: planned moves not executed (a cell called final, step 5).
        inserted_waits: member steps spent waiting after losing a cell (steps 3-4).
        metres: distance travelled by all robots in the simulator [m].
        clusters: clusters formed, summed over iterations.
        iterations: DMAR iterations.
        em_steps: EM steps executed.
        completed: every task was visited; tasks_left: tasks not visited.
        min_separation: smallest centre distance between two robots during EM [m].
        safety_distance: Ds [m] (for comparison with ``min_separation``).
        fallbacks: robot-ticks on which the CBF fell back to zero velocity.
        timeouts: EM steps that ended by ``step_timeout_s``.
        cap_hits: iterations whose EM reached ``em_step_cap`` lambda steps.
        blocked: simulator steps clipped at an obstacle cell (summed over robots).
        cell_mismatch: robot-EM-steps that ended in another cell than Algorithm 2's target.
        sim_time_s: simulated EM time [s]; wall_s: wall time of the run [s].
        cost_at_completion: ``cost`` at the EM step that visited the last task (the moves
            explorers and members make after it, to the end of that EM, not counted); what a
            run that stops once every task is visited (the ROS mission) measures. Not in the
            Fig. 2(i) CSV.
    """

    cost: int
    exploration_moves: int
    skipped_moves: int
    dropped_moves: int
    inserted_waits: int
    metres: float
    clusters: int
    iterations: int
    em_steps: int
    completed: bool
    tasks_left: int
    min_separation: float
    safety_distance: float
    fallbacks: int
    timeouts: int
    cap_hits: int
    blocked: int
    cell_mismatch: int
    sim_time_s: float
    wall_s: float
    cost_at_completion: int = -1

    def as_dict(self) -> dict:
        return asdict(self)


def routing_swarm(
    inst: Instance, cc: ContinuousConfig, k: int, psi: int, seed: int = 0
) -> SwarmConfig:
    """The swarm config of an instance: a ``rows x cols`` grid centred in a square arena,
    one robot per agent at its start cell's centre, the grid's obstacles and tasks."""
    h, w = inst.grid.height, inst.grid.width
    cs = cc.cell_size
    origin = (-(w - 1) * cs / 2, -(h - 1) * cs / 2)
    obstacles = [[int(r), int(c)] for r, c in zip(*np.nonzero(~inst.grid.free))]
    tasks = [[int(t) // w, int(t) % w] for t in inst.tasks]
    robots = []
    for i, cell in enumerate(inst.agents.tolist()):
        r, c = divmod(int(cell), w)
        kind = cc.kinds[i % len(cc.kinds)]
        pose = [origin[0] + c * cs, origin[1] + r * cs, 0.0, 0.0]
        robots.append({"name": f"r{i}", "type": kind, "pose": pose})
    types = {
        "crazyflie": {
            "kind": "crazyflie",
            "backend": "sim",
            "radius": 0.05,
            "max_speed": cc.max_speed,
            "takeoff_height": cc.takeoff_height,
        },
        "ground": {"kind": "ground", "backend": "sim", "radius": 0.05, "max_speed": cc.max_speed},
    }
    half_x, half_y = max(w * cs, cc.arena_size) / 2, max(h * cs, cc.arena_size) / 2
    used = {cc.kinds[i % len(cc.kinds)] for i in range(len(robots))}
    return load_config(
        {
            "fileversion": 1,
            "seed": int(seed),
            "arena": {
                "x": [-half_x, half_x],
                "y": [-half_y, half_y],
                "z": [0.0, 1.5],
            },
            "rates": {"control_hz": cc.control_hz, "sim_hz": cc.sim_hz},
            "safety": {"distance": cc.safety_distance, "gamma": cc.gamma, "class_k": "cubic"},
            "robot_types": {t: types[t] for t in sorted(used)},
            "robots": robots,
            "routing": {
                "cell_size": cs,
                "origin": list(origin),
                "rows": h,
                "cols": w,
                "obstacles": obstacles,
                "tasks": tasks,
                "k": int(k),
                "psi": int(psi),
                "tolerance": cc.tolerance,
            },
        }
    )


class Arena:
    """The simulator, the centralized CBF and the tracking loop of one run."""

    def __init__(self, inst: Instance, cc: ContinuousConfig, k: int, psi: int, seed: int) -> None:
        self.cc = cc
        self.swarm = routing_swarm(inst, cc, k, psi, seed)
        self.sim = Simulator(self.swarm)
        self.width = inst.grid.width
        self.n = self.sim.n
        params = from_config(self.swarm, self.swarm.robots[0], dim=2, sensing_radius=1.0)
        self.ds = params.safety_distance
        self.cbf = CentralizedCBF(self.n, dim=2, params=params)
        self.ground = ~self.sim.is_drone
        self.substeps = round(cc.sim_hz / cc.control_hz)
        self.fallbacks = 0
        self.timeouts = 0
        self.min_sep = float("inf")
        self.sim_time = 0.0
        self.metres = 0.0
        for i in range(self.n):
            self.sim.takeoff(i)
        for _ in range(int(5.0 * cc.sim_hz)):
            if (self.sim.mode == int(Mode.FLYING)).all():
                break
            self.sim.step()

    def centres(self, cells: np.ndarray) -> np.ndarray:
        """``(N, 2)`` world (x, y) [m] of grid cells ``r * width + c``."""
        rc = np.stack(np.divmod(np.asarray(cells, dtype=np.int64), self.width), axis=-1)
        return self.sim.grid.centre(rc)

    def _filter_points(self) -> np.ndarray:
        """Points the CBF keeps apart: drone centres, ground robots' projection points."""
        p = self.sim.pos[:, :2].copy()
        if self.ground.any():
            lpd = SimParams().projection_distance
            th = self.sim.yaw[self.ground]
            p[self.ground] += lpd * np.stack([np.cos(th), np.sin(th)], axis=1)
        return p

    def track(self, targets: np.ndarray, moving: np.ndarray) -> None:
        """Fly every robot to the centre of its target cell (``moving`` ones must arrive; the
        others keep station on theirs) at ``control_hz`` through the CBF (module docstring)."""
        cc, sim = self.cc, self.sim
        goal = self.centres(targets)
        ticks = int(np.ceil(cc.step_timeout_s * cc.control_hz))
        v3 = np.zeros((self.n, 3))
        for _ in range(ticks):
            err = goal - sim.pos[:, :2]
            dist = np.linalg.norm(err, axis=1)
            if (dist[moving] <= cc.tolerance).all():
                return
            u = cc.gain * err
            speed = cc.gain * dist
            u *= (np.minimum(1.0, cc.max_speed / np.maximum(speed, 1e-12)))[:, None]
            res = self.cbf.filter(self._filter_points(), u)
            self.fallbacks += int(res.fallback.sum())
            v3[:, :2] = res.u
            before = sim.pos[:, :2].copy()
            for _ in range(self.substeps):
                sim.set_commands(v3)
                sim.step()
            self.metres += float(np.linalg.norm(sim.pos[:, :2] - before, axis=1).sum())
            self.sim_time += self.substeps * sim.dt
            self.min_sep = min(self.min_sep, _min_pair(sim.pos[:, :2]))
        self.timeouts += 1


def _min_pair(xy: np.ndarray) -> float:
    """Smallest floor distance between two robots [m] (the planar filter's measure)."""
    d = np.linalg.norm(xy[:, None] - xy[None, :], axis=-1)
    np.fill_diagonal(d, np.inf)
    return float(d.min())


def _explore_intents(ex: Executor, t: int, lam: int) -> dict[int, tuple[int, ...]]:
    """Explorers' moves this EM step in the order drawn (Algorithm 2 step 6), by the protocol's
    walk (:func:`dmar_agent.protocols.make_em_move_step`: the same stop rule, the agent's own
    random stream; the first move of a uniform permutation is the walk's uniform draw)."""
    out: dict[int, tuple[int, ...]] = {}

    def step(api: AgentAPI) -> None:
        me = api.me
        if not me.explore or me.stop or t >= lam:
            return
        if not me.roam and (api.tasks_in_view() - me.seen0):
            api.set(stop=True)
            return
        moves = api.free_moves()
        order = api.rng.permutation(len(moves)).tolist()
        out[me.id] = tuple(moves[j][1] for j in order)

    ex.step(step)
    return out


def _em_phase(ex: Executor, arena: Arena, cfg: DmarConfig, cc: ContinuousConfig, acc: dict) -> None:
    """One EM phase (Alg. 5 lines 8-11) augmented by Algorithm 2, executed by the robots."""
    ex.step(em_init_step)
    lam = cfg.lam_steps
    members = {
        mm.id: mm.plan.controls[mm.id] for mm in ex.mem if not mm.explore and mm.plan is not None
    }
    follower = SequenceFollower(members, ex.width)
    t = 0
    while follower.active() or t < lam:
        if t >= cc.em_step_cap * lam:
            acc["cap_hits"] += 1
            break
        walks = _explore_intents(ex, t, lam)
        cells = ex.pos.tolist()
        intents = [
            follower.intent(i, c) if i in members else Intent(explore=walks.get(i, ()))
            for i, c in enumerate(cells)
        ]
        open_tasks = frozenset(ex.task_cells[ex.alive].tolist())
        res = resolve_moves(cells, intents, ex.width, ex.free, protected=open_tasks)
        follower.book(res)
        acc["inserted_waits"] += int((res.blocked & (res.advance == 0)).sum())
        explorers_moved = [i for i in range(ex.m) if i not in members and res.moved[i]]
        acc["cost"] += len(explorers_moved)
        acc["exploration_moves"] += len(explorers_moved)
        t += 1
        if not res.moved.any():
            if not res.advance.any() and not walks:
                break  # a stall: nothing can change any more (collision.py step 5)
            continue
        arena.track(res.targets, res.moved)
        got = arena.sim.robot_cells()
        acc["cell_mismatch"] += int((got[:, 0] * ex.width + got[:, 1] != res.targets).sum())
        ex.pos[:] = res.targets
        for c in res.targets[res.moved].tolist():
            ex._complete(int(c))
        if acc["cost_at_completion"] < 0 and not ex.alive.any():
            acc["cost_at_completion"] = acc["cost"] + follower.cost
        ex.refresh()
        acc["em_steps"] += 1
    for i in members:
        follower.finalise(i)
    acc["cost"] += follower.cost
    acc["skipped_moves"] += follower.skipped
    acc["dropped_moves"] += sum(follower.dropped.values())


def world_k(inst: Instance, k: int) -> int:
    """``routing.k`` of the arena's swarm config for a run at the core's ``k``.

    The agents see with ``cfg.k`` through the core's executor; the arena's ``routing.k`` only
    sizes the simulated world's own views and radii, which this run never reads. It is clamped
    to the grid's diameter ``width + height - 2`` (a view of that radius already holds the whole
    grid, as ``dmar run --k`` clamps it) and to the config's limit :data:`MAX_K` (above it the
    swarm config refuses the value: ``k`` = 100 was a ConfigError traceback).
    """
    h, w = inst.grid.height, inst.grid.width
    return max(1, min(int(k), h + w - 2, MAX_K))


def run_continuous(
    inst: Instance, cfg: DmarConfig, cc: ContinuousConfig | None = None
) -> ContinuousResult:
    """Run DMAR (``cfg.policy='rollout'``) or BP (``'base'``) in continuous space until every
    task is visited or ``cfg.max_iterations`` iterations have run (module docstring)."""
    cc = cc or ContinuousConfig()
    if cfg.explore != "walk" or cfg.gci:
        raise ConfigError("continuous space runs the random-walk exploration without GCI")
    t0 = time.perf_counter()
    ex = make_executor(inst, cfg)
    arena = Arena(inst, cc, world_k(inst, cfg.k), cfg.psi, cfg.seed)
    keys = (
        "cost",
        "exploration_moves",
        "skipped_moves",
        "dropped_moves",
        "inserted_waits",
        "cap_hits",
        "cell_mismatch",
        "em_steps",
        "clusters",
    )
    acc = dict.fromkeys(keys, 0)
    acc["cost_at_completion"] = -1
    while ex.alive.any() and ex.iteration < cfg.max_iterations:
        ex.reinit()
        soac(ex, cfg)
        acc["clusters"] += sum(1 for mm in ex.mem if mm.cluster is not None and mm.parent is None)
        lma(ex, cfg)
        tmar(ex, cfg)
        _em_phase(ex, arena, cfg, cc, acc)
    if acc["cost_at_completion"] < 0:
        acc["cost_at_completion"] = acc["cost"]
    return ContinuousResult(
        **acc,
        metres=arena.metres,
        iterations=ex.iteration,
        completed=not ex.alive.any(),
        tasks_left=int(ex.alive.sum()),
        min_separation=arena.min_sep,
        safety_distance=arena.ds,
        fallbacks=arena.fallbacks,
        timeouts=arena.timeouts,
        blocked=int(arena.sim.blocked.sum()),
        sim_time_s=arena.sim_time,
        wall_s=time.perf_counter() - t0,
    )
