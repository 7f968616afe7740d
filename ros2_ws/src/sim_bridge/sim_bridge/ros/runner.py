"""Run a bringup plan here (``swarm up``), the rclpy half: composed or one process per node.

Both modes add, in the calling process, a monitor node (prints sim time, real-time factor and
remaining demand every few seconds, and collects the world's diagnostics) and, with
``record``, an MCAP recorder (:mod:`sim_bridge.ros.recorder`). A run ends at ``duration``, on
SIGINT/SIGTERM, when the caller's ``should_stop()`` returns True (checked every spin, e.g.
"mission complete"), when a composed node's callback raises, or when a swarm-wide node
process (world, relay, services, bridge) exits; ``RunResult.stop_reason`` says which. In
processes mode a *robot's* node (namespace ``/<robot>``: its policy, CBF filter, agent) that
exits is reported, its robot is told to land (``/<robot>/land``; the world's or bridge's
watchdog would land it anyway once its commands stop) and the other robots carry on, unless
``stop_on_node_exit`` asks to end the run (``RunResult.node_exits`` lists them).

Shutdown is clean in both modes: the executor stops and the callbacks it already started
finish before any node is destroyed; child processes get SIGINT, then SIGTERM, then SIGKILL,
and die with the parent (``PR_SET_PDEATHSIG``), so no orphans are left behind. The parts
without rclpy (result, executor choice, signal flag, process helpers) are in
:mod:`sim_bridge.runner`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from sim_bridge import topics
from sim_bridge.bringup import BringupError, NodeSpec, executable_path, load_plugin
from sim_bridge.config import SwarmConfig
from sim_bridge.ros.recorder import make_recorder
from sim_bridge.runner import (
    EXECUTORS,
    RunResult,
    StopFlag,
    choose_executor,
    die_with_parent,
    proc_cpu_s,
    stop_reason,
    terminate,
)

__all__ = ["run_composed", "run_processes", "stop_executor"]


def _make_monitor(cfg: SwarmConfig, status_every: float, out, **kwargs):
    class MonitorNode(Node):
        """Prints the run's progress; keeps the last world diagnostics."""

        def __init__(self) -> None:
            super().__init__("swarm_monitor", **kwargs)
            self.sim_t = 0.0
            self.world: dict[str, str] = {}
            self.demand0 = float(cfg.demand_matrix().sum())
            self.remaining = self.demand0
            self.active = len(cfg.consumers)
            self.t0 = time.perf_counter()
            self.create_subscription(Clock, topics.CLOCK, self._on_clock, 10)
            self.create_subscription(Float64MultiArray, topics.CONSUMERS, self._on_consumers, 1)
            self.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diag, 10)
            if status_every > 0:
                self.create_timer(status_every, self._print)

        def _on_clock(self, msg: Clock) -> None:
            self.sim_t = msg.clock.sec + msg.clock.nanosec * 1e-9

        def _on_consumers(self, msg: Float64MultiArray) -> None:
            cols = len(topics.CONSUMER_FIXED_FIELDS) + len(cfg.resource_types)
            table = np.asarray(msg.data).reshape(-1, cols) if cols else np.zeros((0, 0))
            self.remaining = float(table[:, len(topics.CONSUMER_FIXED_FIELDS) :].sum())
            self.active = int(table[:, 3].sum()) if len(table) else 0

        def _on_diag(self, msg) -> None:
            for status in msg.status:
                if status.name.endswith("world"):
                    self.world = {kv.key: kv.value for kv in status.values}

        def _print(self) -> None:
            wall = time.perf_counter() - self.t0
            frac = self.remaining / self.demand0 if self.demand0 > 0 else 0.0
            rtf = self.world.get("rtf", "?")
            print(
                f"[swarm] wall {wall:6.1f} s  sim {self.sim_t:6.1f} s  rtf {rtf}  "
                f"demand left {self.remaining:.2f}/{self.demand0:.2f} ({100 * frac:.0f} %)  "
                f"active consumers {self.active}/{len(cfg.consumers)}",
                file=out,
                flush=True,
            )

    return MonitorNode()


def _request_land(node: Node, robot: str) -> None:
    """Ask ``/<robot>/land`` (offered by the world or the robot's bridge) without waiting; the
    watchdog of the world / bridge lands the robot anyway once its commands stop."""
    client = node.create_client(Trigger, topics.robot_topic(robot, topics.LAND))
    if client.service_is_ready() or client.wait_for_service(timeout_sec=0.5):
        client.call_async(Trigger.Request())
    else:
        node.get_logger().warning(f"{robot}: land service not available; relying on watchdog")


def _fill_result(res: RunResult, monitor, wall: float) -> None:
    res.wall_s = wall
    res.sim_s = monitor.sim_t
    res.remaining_demand = monitor.remaining
    res.initial_demand = monitor.demand0
    world = monitor.world
    for key in ("rtf", "tick_p50_ms", "tick_p99_ms"):
        if key in world:
            setattr(res, key, float(world[key]))


def _executor(kind: str, context):
    if kind == "multi":
        return MultiThreadedExecutor(context=context)
    if kind == "single":
        return SingleThreadedExecutor(context=context)
    if kind == "events":
        from rclpy.experimental.events_executor import EventsExecutor

        return EventsExecutor(context=context)
    raise BringupError(f"executor {kind!r}: use one of {EXECUTORS}")


def stop_executor(ex) -> None:
    """Stop ``ex`` and let the callbacks it already started finish, before nodes go away.

    rclpy's ``Executor.shutdown()`` does not wait for work in progress (Jazzy skips its
    wait once the shutdown flag is set), and the MultiThreadedExecutor's thread pool keeps
    running handlers it was given; one that runs after its node was destroyed fails with
    "cannot use Destroyable because destruction was requested", printed by rclpy as "The
    following exception was never retrieved". So: let the pool finish the handlers it holds
    (cancelling them would leave never-awaited coroutines behind) while every node is still
    alive, then shut the executor down.
    """
    pool = getattr(ex, "_executor", None)  # MultiThreadedExecutor's ThreadPoolExecutor
    if isinstance(pool, ThreadPoolExecutor):
        pool.shutdown(wait=True)
    ex.shutdown()


def run_composed(
    specs: list[NodeSpec],
    cfg: SwarmConfig,
    *,
    duration: float | None = None,
    record: str | None = None,
    executor: str = "auto",
    status_every: float = 5.0,
    out=sys.stdout,
    on_ready=None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """All nodes of ``specs`` in one process and one executor (see :func:`choose_executor`).

    ``on_ready(nodes: dict[fqn, Node], context, executor)`` runs once every node exists
    (tests use it to add their own nodes to the run). ``should_stop()`` is called after every
    spin (at least every 50 ms) and ends the run when it returns True. Returns the run's
    :class:`RunResult`.
    """
    res = RunResult()
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    nodes: dict[str, object] = {}
    extra = []
    ex = None
    stop = StopFlag()
    try:
        for spec in specs:
            cls = load_plugin(spec)
            kwargs = {
                "context": context,
                "parameter_overrides": [Parameter(k, value=v) for k, v in spec.parameters.items()],
            }
            if spec.namespace:
                kwargs["namespace"] = spec.namespace
            try:
                nodes[spec.fqn] = cls(spec.name, **kwargs)
            except Exception as exc:  # a node's own error: report it with the node's name
                raise BringupError(
                    f"node {spec.fqn} ({spec.plugin}) failed to start: {exc}"
                ) from exc
        monitor = _make_monitor(cfg, status_every, out, context=context)
        extra.append(monitor)
        if record:
            extra.append(make_recorder(record, cfg, context=context))
        executor = choose_executor(executor, specs)
        ex = _executor(executor, context)
        for node in list(nodes.values()) + extra:
            ex.add_node(node)
        if on_ready is not None:
            on_ready(nodes, context, ex)
        t0 = time.perf_counter()
        c0 = time.process_time()
        print(f"[swarm] composed: {len(nodes)} nodes in one {executor} executor", file=out)
        while True:
            res.stop_reason = (
                stop_reason(stop, t0, duration, should_stop) if context.ok() else "shutdown"
            )
            if res.stop_reason:
                break
            try:
                ex.spin_once(timeout_sec=0.05)
            except Exception as exc:  # a node's callback failed: stop the run cleanly
                where = traceback.extract_tb(exc.__traceback__)[-1]
                res.errors.append(
                    f"a callback raised {type(exc).__name__}: {exc} "
                    f"({where.filename}:{where.lineno}); the swarm was stopped"
                )
                res.exit_code = 1
                res.stop_reason = "error"
                break
        wall = time.perf_counter() - t0
        res.cpu_percent = 100.0 * (time.process_time() - c0) / max(wall, 1e-9)
        _fill_result(res, monitor, wall)
        world = nodes.get("/world")
        if world is not None and hasattr(world, "tick_stats"):
            stats = world.tick_stats()
            res.rtf, res.tick_p50_ms, res.tick_p99_ms = (
                stats["rtf"],
                stats["tick_p50_ms"],
                stats["tick_p99_ms"],
            )
            res.sim_s = world.sim.t
    finally:
        stop.restore()
        if ex is not None:
            stop_executor(ex)
        for node in extra:
            if hasattr(node, "close"):
                res.recorded = node.count
                node.close()
        for node in list(nodes.values()) + extra:
            node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
    return res


# ----------------------------------------------------------------------------- processes


def run_processes(
    specs: list[NodeSpec],
    cfg: SwarmConfig,
    *,
    duration: float | None = None,
    record: str | None = None,
    status_every: float = 5.0,
    out=sys.stdout,
    log_dir: str | None = None,
    on_ready=None,
    should_stop: Callable[[], bool] | None = None,
    stop_on_node_exit: bool = False,
) -> RunResult:
    """One OS process per node (their console scripts), monitor/recorder in this process.

    ``on_ready(context, executor)`` may add nodes of the caller to this process's executor;
    ``should_stop()`` is called after every spin and ends the run when it returns True.
    A robot's node that exits is reported and its robot lands while the run goes on
    (``stop_on_node_exit=True``: the run ends, as for a swarm-wide node).
    """
    res = RunResult()
    exes = [executable_path(s) for s in specs]
    workdir = Path(log_dir or tempfile.mkdtemp(prefix="swarm_up_"))
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[NodeSpec, subprocess.Popen, object]] = []
    stop = StopFlag()
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    extra = []
    ex = None
    try:
        for spec, exe in zip(specs, exes):
            stem = spec.fqn.strip("/").replace("/", "__")
            params = workdir / f"{stem}.yaml"
            params.write_text(yaml.safe_dump(spec.params_yaml()))
            log = open(workdir / f"{stem}.log", "wb")  # noqa: SIM115 (closed below)
            proc = subprocess.Popen(
                [exe, *spec.ros_args(str(params))],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
                preexec_fn=die_with_parent,
            )
            procs.append((spec, proc, log))
        print(f"[swarm] processes: {len(procs)} nodes, logs in {workdir}", file=out)
        monitor = _make_monitor(cfg, status_every, out, context=context)
        extra.append(monitor)
        if record:
            extra.append(make_recorder(record, cfg, context=context))
        ex = SingleThreadedExecutor(context=context)
        for node in extra:
            ex.add_node(node)
        if on_ready is not None:
            on_ready(context, ex)
        t0 = time.perf_counter()
        c0 = time.process_time()
        cpu = {p.pid: 0.0 for _, p, _ in procs}
        robots = set(cfg.robot_names)
        gone: set[str] = set()
        while True:
            res.stop_reason = stop_reason(stop, t0, duration, should_stop)
            if res.stop_reason:
                break
            ex.spin_once(timeout_sec=0.05)
            for _, proc, _ in procs:
                if proc.poll() is None:
                    cpu[proc.pid] = proc_cpu_s(proc.pid)
            dead = [(s, p) for s, p, _ in procs if p.poll() is not None and s.fqn not in gone]
            fatal = False
            for spec, proc in dead:
                gone.add(spec.fqn)
                tail = (workdir / f"{spec.fqn.strip('/').replace('/', '__')}.log").read_text(
                    errors="replace"
                )[-2000:]
                res.errors.append(f"node {spec.fqn} exited with code {proc.returncode}:\n{tail}")
                res.exit_code = 1
                robot = spec.namespace.strip("/")
                if stop_on_node_exit or robot not in robots:
                    fatal = True
                    continue
                res.node_exits.append((spec.fqn, int(proc.returncode), robot))
                print(
                    f"[swarm] node {spec.fqn} exited with code {proc.returncode}: {robot} "
                    f"lands, the other robots carry on (log: {workdir})",
                    file=out,
                    flush=True,
                )
                _request_land(monitor, robot)
            if fatal:
                res.stop_reason = "node_exit"
                break
        wall = time.perf_counter() - t0
        _fill_result(res, monitor, wall)
        own = time.process_time() - c0
        res.cpu_percent = 100.0 * (sum(cpu.values()) + own) / max(wall, 1e-9)
    finally:
        stop.restore()
        if ex is not None:
            stop_executor(ex)
        terminate([p for _, p, _ in procs])
        for _, _, log in procs:
            log.close()
        for node in extra:
            if hasattr(node, "close"):
                res.recorded = node.count
                node.close()
            node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
    return res
