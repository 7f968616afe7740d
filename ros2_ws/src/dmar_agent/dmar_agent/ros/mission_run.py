"""One DMAR mission over real DDS, composed in one process (world, relay, services, CBF and DMAR
nodes from :func:`sim_bridge.bringup.plan`), and what it did.

Used by the demo, the benchmark and the tests. :func:`run_mission` records every robot's
``dmar/move`` reports (a watcher node on the robots' public ``dmar/move`` topics), samples the
world's poses for the smallest pair separation, and ends when every task is visited, when the
world reaches ``stop_at_step``, or at ``duration`` [s] wall time. :func:`ros_trace` turns the
reports into the core's trace layout (controls per EM movement step, clusters per iteration),
so :func:`lockstep_equal` can compare a ROS run with :func:`dmar_agent.distributed.run_distributed`
on the instance of :func:`dmar_agent.mission.scenario.core_instance`.

Lockstep equality is defined on the DMAR protocol with the continuous-space interference off:
``cbf=False`` (the unfiltered pass-through; the simulator lets robots share a cell as the core's
grid world does), the node's ``yield_occupied`` off and ``stuck_timeout_s`` out of reach. With
the CBF and the node's yield rule on, a robot that yields executes WAIT where the core moves,
and such runs are compared on tasks visited and cost only.
"""

from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sim_bridge import topics
from sim_bridge.bringup import plan
from sim_bridge.config import load_config
from sim_bridge.ros import qos
from sim_bridge.ros.runner import run_composed
from std_msgs.msg import Float64MultiArray

from dmar_agent.world import WAIT

MOVE_STEP = "em_move_step"


def ros_env() -> None:
    """Localhost-only DDS and, unless ``ROS_DOMAIN_ID`` is set, a random domain of our own."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not os.environ.get("ROS_DOMAIN_ID"):
        os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 200))


@dataclass
class MissionRun:
    """What one ROS run did.

    Attributes:
        result: the runner's :class:`sim_bridge.ros.runner.RunResult` (stop reason, wall, rtf).
        reports: ``{ps_step: {robot index: (control, row, col)}}``, each robot's last valid
            ``dmar/move`` report of the step.
        move_steps: the PS steps that are EM movement steps (from the agents' schedule).
        clusters: per robot, the node's ``(iteration, cluster, parent)`` after every SOAC.
        ps_step: the world's PS step at the end.
        tasks_visited, tasks_total: tasks visited by the end / in the config.
        min_separation_m: smallest 3-D distance between two robots over the run [m].
        path_m: floor distance the robots travelled, all together [m] (sampled poses).
        safety_distance_m: Ds of the config [m].
        node_diagnostics: robot name -> its DMAR node's diagnostics at the end.
        cbf_fallbacks: sum of the CBF filters' fallbacks (0 without CBF).
        sim_s: simulated time [s]; wall_s: wall time of the run [s].
        killed: robots whose DMAR node was removed mid-run.
        watchdog_landings: robots the world landed because their commands stopped (a node
            starved or gone: the failure ladder of the safety rules).
        stall_report: lines describing who held the world's PS step, the first time one step
            lasted more than ``STALL_S`` (also printed on stderr); empty when none did.
        modes: robot name -> its mode in the world at the end (``flying``, ``grounded``,
            ``failed``...).
        events: the world's event log (the config's events as they fired: ``fail``, ``land``,
            ``discharge``...; and ``watchdog_land``), dicts with ``t`` [s sim], ``type``,
            ``robot``.
        visited_by: per task of the config, the name of the robot that visited it (None: not
            visited).
    """

    result: object
    reports: dict = field(default_factory=dict)
    move_steps: set = field(default_factory=set)
    clusters: list = field(default_factory=list)
    ps_step: int = 0
    tasks_visited: int = 0
    tasks_total: int = 0
    min_separation_m: float = float("inf")
    path_m: float = 0.0
    safety_distance_m: float = 0.0
    node_diagnostics: dict = field(default_factory=dict)
    cbf_fallbacks: int = 0
    sim_s: float = 0.0
    wall_s: float = 0.0
    killed: list = field(default_factory=list)
    watchdog_landings: int = 0
    stall_report: list = field(default_factory=list)
    tick_compute_ms: list = field(default_factory=list)
    modes: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    visited_by: list = field(default_factory=list)

    @property
    def robots_down(self) -> list[str]:
        """Robots not flying / driving at the end (failed, landed, grounded)."""
        return [name for name, mode in self.modes.items() if mode != "flying"]

    def cost(self, upto: int | None = None) -> int:
        """Moves (non-WAIT reports) of the EM steps before ``upto`` (all when None)."""
        return sum(
            sum(1 for u, _, _ in self.reports.get(s, {}).values() if u != WAIT)
            for s in self.move_steps
            if upto is None or s < upto
        )


def run_mission(
    config: str | os.PathLike,
    *,
    cbf: bool = True,
    node_params: dict | None = None,
    duration: float = 300.0,
    stop_at_step: int | None = None,
    stop_when_done: bool = True,
    relay_drop_prob: float = 0.0,
    kill: dict | None = None,
    record: str | None = None,
    executor: str = "events",
    status_every: float = 0.0,
    out=None,
) -> MissionRun:
    """Run the DMAR swarm of ``config`` composed over DDS (see the module docstring).

    Args:
        cbf: CBF filters (False: unfiltered pass-through).
        node_params: parameters for every DMAR node (e.g. ``{"yield_occupied": False}``).
        duration: wall-time limit [s].
        stop_at_step: end once the world's PS step reaches this value.
        stop_when_done: end once every task is visited.
        relay_drop_prob: the comm relay's loss probability per delivery.
        kill: robot name -> PS step at which its DMAR node is taken out of the executor (it
            falls silent: its commands stop, the world holds, then lands the robot).
        record: MCAP path, or None.
        executor: the composed run's executor (``events``: rclpy's EventsExecutor, which keeps
            20 robots at real time on 2 loaded cores where the multi-threaded one does not).
    """
    ros_env()
    path = str(Path(config).resolve())
    cfg = load_config(path)
    specs = plan(cfg, path, cbf=cbf, autostart=True, relay_drop_prob=relay_drop_prob)
    if node_params:
        specs = [
            replace(s, parameters={**s.parameters, **node_params})
            if s.package == "dmar_agent"
            else s
            for s in specs
        ]
    run = MissionRun(result=None, safety_distance_m=float(cfg.safety.distance))
    run.tasks_total = len(cfg.routing.tasks)
    watch = _Watch(run, cfg, kill, stop_at_step, stop_when_done)
    t0 = time.perf_counter()
    res = run_composed(
        specs,
        cfg,
        duration=duration,
        record=record,
        executor=executor,
        status_every=status_every,
        out=sys.stdout if out is None else out,
        on_ready=watch.on_ready,
        should_stop=watch.should_stop,
    )
    run.wall_s = time.perf_counter() - t0
    run.result = res
    _collect(run, cfg, watch.nodes)
    if watch.node is not None:
        watch.node.destroy_node()
    return run


#: a lockstep PS step held this long [s] (wall) is reported once (``MissionRun.stall_report``)
STALL_S = 20.0


class _Watch:
    """What :func:`run_mission` watches in the composed run: every robot's ``dmar/move`` (a
    node of its own in the swarm's executor), separations and path from the world's simulator,
    scheduled node kills, and when to stop."""

    def __init__(self, run: MissionRun, cfg, kill, stop_at_step, stop_when_done) -> None:
        self.run, self.cfg = run, cfg
        self.kill = dict(kill or {})
        self.stop_at_step, self.stop_when_done = stop_at_step, stop_when_done
        self.nodes: dict = {}
        self.ex = None
        self.node = None
        self.last = None
        self.step_seen, self.step_t0, self.stall_reported = -1, time.perf_counter(), False

    def on_ready(self, nodes, context, ex) -> None:
        self.nodes, self.ex = nodes, ex
        watch = Node("dmar_watch", context=context)
        for i, name in enumerate(self.cfg.robot_names):
            watch.create_subscription(
                Float64MultiArray,
                topics.robot_topic(name, topics.DMAR_MOVE),
                lambda m, i=i: self._on_move(i, m),
                qos.BACKLOG,
            )
        ex.add_node(watch)
        self.node = watch

    def _on_move(self, i: int, msg) -> None:
        d = list(msg.data)
        if len(d) == 4:
            self.run.reports.setdefault(int(d[0]), {})[i] = (int(d[1]), int(d[2]), int(d[3]))

    def _stall_lines(self, world) -> list[str]:
        """Who holds the world's step: each robot's report, distance to it, node state."""
        ls, pos = world.lockstep, world.sim.pos
        arrived = ls.arrived(pos[:, :2])
        lines = [
            f"PS step {ls.step} held for {STALL_S:.0f} s; modes {world.sim.mode.tolist()} "
            f"(0 grounded, 2 flying); watchdog landings {world.sim.watchdog_landings.tolist()}"
        ]
        for i, name in enumerate(self.cfg.robot_names):
            node = self.nodes.get(f"/{name}/dmar")
            target = ls.moves[i].get(ls.step)
            dist = (
                "-"
                if target is None
                else f"{np.linalg.norm(pos[i, :2] - ls.grid.centre(target)):.3f}"
            )
            state = (
                "no node"
                if node is None
                else f"node step {node.step} round {node.rnd} pending {node.pending} "
                f"target {node.target} origin {node.origin} backed_off {node.backed_off}"
            )
            cbf = self.nodes.get(f"/{name}/cbf_filter")
            counts = {} if cbf is None else dict(getattr(cbf, "counts", {}))
            lines.append(
                f"{name}: report {target} dist {dist} arrived {bool(arrived[i])}; {state}; "
                f"pos {np.round(pos[i], 3).tolist()}; cbf {counts}"
            )
        return lines

    def should_stop(self) -> bool:
        world = self.nodes.get("/world")
        if world is None:
            return False
        run, pos = self.run, world.sim.pos
        diff = pos[:, None, :] - pos[None, :, :]
        dist = np.sqrt((diff**2).sum(-1))
        np.fill_diagonal(dist, np.inf)
        run.min_separation_m = min(run.min_separation_m, float(dist.min()))
        if self.last is not None:
            run.path_m += float(np.linalg.norm(pos[:, :2] - self.last, axis=1).sum())
        self.last = pos[:, :2].copy()
        step = world.lockstep.step
        if step != self.step_seen:
            self.step_seen, self.step_t0 = step, time.perf_counter()
        elif not self.stall_reported and time.perf_counter() - self.step_t0 > STALL_S:
            self.stall_reported = True
            run.stall_report = self._stall_lines(world)
            for line in run.stall_report:
                print(f"[dmar_watch] {line}", file=sys.stderr, flush=True)
        for name, at in list(self.kill.items()):
            if step >= at:
                node = self.nodes.get(f"/{name}/dmar")
                if node is not None:
                    # out of the executor: silent from now on, as a crashed process; the runner
                    # destroys it with the others (destroying it here races its queued events)
                    self.ex.remove_node(node)
                run.killed.append(name)
                del self.kill[name]
        if self.stop_at_step is not None and step >= self.stop_at_step:
            return True
        return bool(self.stop_when_done and world.sim.task_visited.all())


def _collect(run: MissionRun, cfg, nodes: dict) -> None:
    """Final figures from the (now stopped) nodes of a composed run."""
    world = nodes.get("/world")
    if world is not None:
        run.ps_step = int(world.lockstep.step)
        run.tasks_visited = int(world.sim.task_visited.sum())
        run.sim_s = float(world.sim.t)
        run.watchdog_landings = int(world.sim.watchdog_landings.sum())
        run.modes = dict(zip(cfg.robot_names, world.sim.mode_names(), strict=True))
        run.events = [dict(e) for e in world.sim.event_log]
        run.visited_by = [
            cfg.robot_names[int(i)] if seen else None
            for i, seen in zip(world.sim.task_visited_by, world.sim.task_visited, strict=True)
        ]
    schedule = None
    run.clusters = []
    for name in cfg.robot_names:
        node = None if name in run.killed else nodes.get(f"/{name}/dmar")
        cbf = nodes.get(f"/{name}/cbf_filter")
        if cbf is not None:
            run.cbf_fallbacks += int(cbf.counts.get("fallbacks", 0))
        if node is None:
            run.clusters.append([])
            continue
        schedule = node.agent.schedule
        run.node_diagnostics[name] = node.diagnostics()
        run.clusters.append(list(node.clusters))
        run.tick_compute_ms.extend(node.compute_ms)
    if schedule is not None:
        n = len(schedule)
        run.move_steps = {
            s
            for s in range(run.ps_step + 1)
            if getattr(schedule[s % n], "__name__", "") == MOVE_STEP
        }


def ros_trace(run: MissionRun, n_robots: int, upto: int) -> tuple[list, list]:
    """(controls, clusters) in the layout of :class:`dmar_agent.distributed.Trace`.

    ``controls``: one tuple per EM movement step before ``upto``, every robot's reported
    control (-1: no report). ``clusters``: one tuple per iteration whose SOAC the nodes
    finished, ``(cluster, parent)`` of every robot (None for -1, as in the core's memory).
    """
    controls = [
        tuple(run.reports.get(s, {}).get(i, (-1, 0, 0))[0] for i in range(n_robots))
        for s in sorted(run.move_steps)
        if s < upto
    ]
    per_it: dict = {}
    for i, log in enumerate(run.clusters):
        for it, c, p in log:
            per_it.setdefault(it, {})[i] = (None if c < 0 else c, None if p < 0 else p)
    clusters = [
        tuple(per_it[it].get(i, (None, None)) for i in range(n_robots)) for it in sorted(per_it)
    ]
    return controls, clusters


def lockstep_equal(run: MissionRun, core_res, core_trace, n_robots: int) -> dict:
    """Compare a lockstep ROS run with the core's run on the same instance.

    Returns ``{"equal", "controls_equal", "clusters_equal", "cost_equal", "ros_cost",
    "core_cost", "steps_compared"}``; ``equal`` needs the ROS run to have reached the core's
    last PS step.
    """
    upto = int(core_res.ps_steps)
    controls, clusters = ros_trace(run, n_robots, upto)
    ctrl_eq = controls == [tuple(c) for c in core_trace.controls]
    n_it = min(len(clusters), len(core_trace.clusters))
    clus_eq = n_it == len(core_trace.clusters) and clusters[:n_it] == [
        tuple(c) for c in core_trace.clusters[:n_it]
    ]
    ros_cost = run.cost(upto)
    reached = run.ps_step >= upto
    return {
        "equal": bool(reached and ctrl_eq and clus_eq and ros_cost == core_res.cost),
        "reached": bool(reached),
        "controls_equal": bool(ctrl_eq),
        "clusters_equal": bool(clus_eq),
        "cost_equal": ros_cost == core_res.cost,
        "ros_cost": ros_cost,
        "core_cost": int(core_res.cost),
        "steps_compared": upto,
    }
