"""Run a bringup plan here (``swarm up``): composed in one process, one per node, or K groups.

:func:`run_composed` puts every node of the plan in one process and one executor
(:func:`choose_executor`); :func:`run_processes` starts one OS process per node (their console
scripts); :func:`run_groups` (``swarm up --groups K``) starts K processes, each running one
group of robots composed (``swarm up --group I/K``; :func:`sim_bridge.bringup.group_plan`),
group 1 with the swarm-wide nodes. All three add, in the calling process, the run's *observers*: the
:class:`SwarmMonitor` (prints sim time, real-time factor and remaining demand every few
seconds, and collects the world's diagnostics), with ``record`` an MCAP recorder
(:mod:`sim_bridge.ros.recorder`, the run's one recording), and the caller's ``observers``:
factories ``make(context=...) -> Node`` of nodes that watch the run (a mission's monitor).
Observers are spun in the swarm's own executor (composed) or the runner's (processes); after
the run each one's ``close()`` (if it has one) is called and it is destroyed.

A run ends at ``duration``, on SIGINT/SIGTERM, when the caller's ``should_stop()`` returns
True (checked every spin, e.g. "mission complete"), when a composed node's callback raises,
or when a swarm-wide node process (world, relay, services, bridge) exits (on these
failures the robots whose owner, world or bridge, still runs land first:
:func:`land_before_stop`);
``RunResult.stop_reason`` says which. In processes mode a *robot's* node (namespace
``/<robot>``: its policy, CBF filter, agent) that exits is reported, its robot is told to land
(``/<robot>/land``; the world's or bridge's watchdog would land it anyway once its commands
stop) and the other robots carry on, unless ``stop_on_node_exit`` asks to end the run
(``RunResult.node_exits`` lists them). With groups the same holds for a group's process: its
robots land, the other groups carry on; group 1 (the world) ending ends the run.

Shutdown is clean in both modes: the executor stops and the callbacks it already started
finish before any node is destroyed; child processes get SIGINT, then SIGTERM, then SIGKILL,
and die with the parent (``PR_SET_PDEATHSIG``), so no orphans are left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger

from sim_bridge import topics
from sim_bridge.bringup import (
    USE_SIM_TIME,
    BringupError,
    NodeSpec,
    executable_path,
    load_plugin,
    split_robots,
)
from sim_bridge.config import SwarmConfig
from sim_bridge.ros import qos
from sim_bridge.ros.recorder import McapRecorder, make_recorder

__all__ = [
    "EVENTS_SAFE",
    "EXECUTORS",
    "ObserverFactory",
    "RunResult",
    "StopFlag",
    "freeze_heap",
    "SwarmMonitor",
    "choose_executor",
    "die_with_parent",
    "group_children",
    "run_children",
    "run_composed",
    "run_groups",
    "run_processes",
    "stop_executor",
    "terminate",
]

#: A node watching the run, made in the runner's context: ``make(context=context) -> Node``.
ObserverFactory = Callable[..., Node]

EXECUTORS = ("auto", "multi", "single", "events")
#: Node classes checked to work under rclpy's EventsExecutor: they only use timers,
#: subscriptions, publishers and synchronous services (no coroutine callbacks, which that
#: executor does not await). CbfNode ran the demo under it; PolicyNode was checked by reading.
EVENTS_SAFE = {
    "cbf_filter.ros.node:CbfNode",
    "lgtc_policy.ros.node:PolicyNode",
    "sim_bridge.ros.world_node:WorldNode",
    "sim_bridge.ros.relay_node:RelayNode",
    "sim_bridge.ros.services_node:SwarmServicesNode",
    "sim_bridge.ros.passthrough_node:PassthroughNode",
    "sim_bridge.ros.goto_node:GotoNode",
    # radio bridges: DDS tests run them under both composed executors (test_radio_node.py)
    "sim_bridge.ros.crazyflie_node:CrazyflieBridgeNode",
    "sim_bridge.ros.ground_node:GroundBridgeNode",
}


def choose_executor(kind: str, specs: list[NodeSpec]) -> str:
    """``auto``: rclpy's EventsExecutor (C++, several times less overhead per callback) when
    every node is known to work with it, else the MultiThreadedExecutor of the contract; on
    sim time (a node with ``use_sim_time``) the SingleThreadedExecutor instead: in rclpy
    Jazzy the multi-threaded one, spinning nodes that follow ``/clock``, stalls for up to
    seconds at a time (its wall-clock timers, the world's step among them, fire late), while
    the events and single-threaded executors fire wall and sim-time timers on time."""
    if kind != "auto":
        return kind
    if all(s.plugin in EVENTS_SAFE for s in specs):
        return "events"
    return "single" if any(s.parameters.get(USE_SIM_TIME) for s in specs) else "multi"


@dataclass
class RunResult:
    """What a run measured (world values from its ``/diagnostics``)."""

    wall_s: float = 0.0
    sim_s: float = 0.0
    rtf: float = float("nan")
    tick_p50_ms: float = float("nan")
    tick_p99_ms: float = float("nan")
    cpu_percent: float = float("nan")
    remaining_demand: float = float("nan")
    initial_demand: float = float("nan")
    recorded: int = 0
    exit_code: int = 0
    stop_reason: str = ""
    errors: list[str] = field(default_factory=list)
    #: periodic robot loops (statuses with ``ticks_missed``, e.g. the policy nodes): ticks,
    #: ticks on time and ticks missed, summed over the robots' last diagnostics
    loop_ticks: int = 0
    loop_ticks_on_time: int = 0
    loop_ticks_missed: int = 0
    #: processes mode: robot nodes that exited while the run went on, ``(fqn, code, robot)``
    node_exits: list[tuple[str, int, str]] = field(default_factory=list)
    #: sim time [s] at which every demand was met (``SwarmMonitor.demand_met_t``), or None
    demand_met_s: float | None = None
    #: the world's ``/swarm/events`` of the run (scripted events as they fired, watchdog
    #: landings, service calls), JSON records with ``t`` [s sim], ``type``, ``robot``; at most
    #: ``SwarmMonitor.MAX_EVENTS`` kept, ``events_dropped`` counts the rest
    events: list[dict] = field(default_factory=list)
    events_dropped: int = 0


class SignalFlag:
    """A flag that a signal handler may set at any moment, also inside its own handler.

    ``threading.Event.set`` takes a plain (non-reentrant) lock; a second SIGINT handled
    while the first handler is inside ``Event.set`` (a terminal's Ctrl-C plus launch's
    forwarded SIGINT, or a storm of them) re-enters it in the same thread and deadlocks the
    process for good. Setting one attribute is atomic under the GIL and takes no lock.
    """

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class StopFlag:
    """SIGINT/SIGTERM -> a flag the spin loop checks (installed only in the main thread)."""

    def __init__(self) -> None:
        self.flag = SignalFlag()
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002 - the handler's signature
        self.flag.set()

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def stop_reason(
    stop: StopFlag, t0: float, duration: float | None, should_stop: Callable[[], bool] | None
) -> str:
    """Why the spin loop must end now, or ``""`` to go on."""
    if stop.flag.is_set():
        return "signal"
    if duration is not None and time.perf_counter() - t0 >= duration:
        return "duration"
    if should_stop is not None and should_stop():
        return "should_stop"
    return ""


def _stop_rules(
    should_stop: Callable[[], bool] | None, monitor: SwarmMonitor, linger: float | None
) -> Callable[[], bool] | None:
    """The caller's ``should_stop`` and, with ``linger``, "every demand met ``linger`` sim
    seconds ago" (:meth:`SwarmMonitor.demand_met_for`)."""
    if linger is None:
        return should_stop
    return lambda: monitor.demand_met_for(linger) or (should_stop is not None and should_stop())


def _name_demand_stop(res: RunResult, monitor: SwarmMonitor, linger: float | None) -> None:
    res.demand_met_s = monitor.demand_met_t
    if res.stop_reason == "should_stop" and linger is not None and monitor.demand_met_for(linger):
        res.stop_reason = "demand_met"


def die_with_parent() -> None:
    """Child-side: get SIGTERM when the parent dies (Linux), start a new process group."""
    os.setpgid(0, 0)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def proc_cpu_s(pid: int) -> float:
    """utime + stime [s] of a live process and its waited-for children (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def terminate(procs: list[subprocess.Popen], grace_s: float = 5.0) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to each process group still running."""
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            return
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)
        deadline = time.monotonic() + wait
        for p in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.0, deadline - time.monotonic()))


# ----------------------------------------------------------------------------- observers


class SwarmMonitor(Node):
    """Prints the run's progress every ``status_every`` s (0: silent); keeps the last world
    diagnostics, the sim time and the remaining demand (for the :class:`RunResult`), and the
    sim time ``demand_met_t`` at which the remaining demand first fell to ``DEMAND_MET_TOL`` of
    the initial demand (the run's one observer of the mission's progress: a mission stops its
    run on it through ``linger_after_demand_met``). A ``/consumers`` table of another shape
    (another swarm on the domain) or with a value that is not finite is counted in
    ``malformed`` and ignored."""

    #: remaining / initial demand at or below which every demand counts as met
    DEMAND_MET_TOL = 1e-3
    #: ``/swarm/events`` records kept for the run's summary (memory stays bounded)
    MAX_EVENTS = 1000

    def __init__(self, cfg: SwarmConfig, status_every: float, out, **kwargs) -> None:
        super().__init__("swarm_monitor", **kwargs)
        self.cfg = cfg
        self.out = out
        self.sim_t = 0.0
        self.demand_met_t: float | None = None
        self.malformed = 0
        self.world: dict[str, str] = {}
        #: status name -> (ticks, on time, missed) of each robot loop that reports them
        self.loops: dict[str, tuple[int, int, int]] = {}
        self.demand0 = float(cfg.demand_matrix().sum())
        self.remaining = self.demand0
        self.active = len(cfg.consumers)
        self.events: list[dict] = []
        self.events_dropped = 0
        self.t0 = time.perf_counter()
        self.create_subscription(Clock, topics.CLOCK, self._on_clock, qos.QUEUE)
        self.create_subscription(Float64MultiArray, topics.CONSUMERS, self._on_consumers, qos.STATE)
        self.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diag, qos.MONITOR)
        self.create_subscription(String, topics.EVENTS, self._on_event, qos.QUEUE)
        if status_every > 0:
            self.create_timer(status_every, self._print)

    def _on_clock(self, msg: Clock) -> None:
        self.sim_t = msg.clock.sec + msg.clock.nanosec * 1e-9

    def _on_consumers(self, msg: Float64MultiArray) -> None:
        cols = len(topics.CONSUMER_FIXED_FIELDS) + len(self.cfg.resource_types)
        data = np.asarray(msg.data, dtype=float)
        if data.size != len(self.cfg.consumers) * cols or not np.isfinite(data).all():
            # another swarm's table, or garbage (NaN/inf): a NaN "active" flag raised in
            # int() here and stopped the whole run
            self.malformed += 1
            return
        table = data.reshape(-1, cols)
        self.remaining = float(table[:, len(topics.CONSUMER_FIXED_FIELDS) :].sum())
        self.active = int(np.count_nonzero(table[:, 3] > 0.0))
        if self.demand_met_t is None and self.remaining <= self.DEMAND_MET_TOL * self.demand0:
            self.demand_met_t = self.sim_t

    def _on_event(self, msg: String) -> None:
        """One world event (JSON object with ``t``, ``type``, ``robot``); anything else is
        counted in ``malformed``."""
        try:
            record = json.loads(msg.data)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("type"), str):
            self.malformed += 1
        elif len(self.events) < self.MAX_EVENTS:
            self.events.append(record)
        else:
            self.events_dropped += 1

    def demand_met_for(self, linger: float) -> bool:
        """Every demand has been met for ``linger`` sim seconds."""
        return self.demand_met_t is not None and self.sim_t >= self.demand_met_t + linger

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("world"):
                self.world = {kv.key: kv.value for kv in status.values}
                continue
            values = {kv.key: kv.value for kv in status.values}
            if "ticks_missed" in values:
                with contextlib.suppress(KeyError, ValueError):
                    self.loops[status.name] = (
                        int(values["ticks"]),
                        int(values["ticks_on_time"]),
                        int(values["ticks_missed"]),
                    )

    def _print(self) -> None:
        wall = time.perf_counter() - self.t0
        frac = self.remaining / self.demand0 if self.demand0 > 0 else 0.0
        rtf = self.world.get("rtf", "?")
        print(
            f"[swarm] wall {wall:6.1f} s  sim {self.sim_t:6.1f} s  rtf {rtf}  "
            f"demand left {self.remaining:.2f}/{self.demand0:.2f} ({100 * frac:.0f} %)  "
            f"active consumers {self.active}/{len(self.cfg.consumers)}",
            file=self.out,
            flush=True,
        )


def _add_observers(
    made: list[Node],
    cfg: SwarmConfig,
    context,
    *,
    status_every: float,
    out,
    record: str | None,
    record_diagnostics: bool,
    observers: Sequence[ObserverFactory],
) -> SwarmMonitor:
    """Make the run's observers into ``made`` (so a failing one leaves the others to clean up):
    the monitor, the recorder (``record``), then the caller's; returns the monitor."""
    monitor = SwarmMonitor(cfg, status_every, out, context=context)
    made.append(monitor)
    if record:
        made.append(make_recorder(record, cfg, diagnostics=record_diagnostics, context=context))
    for make in observers:
        made.append(make(context=context))
    return monitor


def _request_land(node: Node, robot: str) -> None:
    """Ask ``/<robot>/land`` (offered by the world or the robot's bridge) without waiting; the
    watchdog of the world / bridge lands the robot anyway once its commands stop."""
    client = node.create_client(Trigger, topics.robot_topic(robot, topics.LAND))
    if client.service_is_ready() or client.wait_for_service(timeout_sec=0.5):
        client.call_async(Trigger.Request())
    else:
        node.get_logger().warning(f"{robot}: land service not available; relying on watchdog")


def _fill_result(res: RunResult, monitor: SwarmMonitor, wall: float) -> None:
    res.wall_s = wall
    res.sim_s = monitor.sim_t
    res.remaining_demand = monitor.remaining
    res.initial_demand = monitor.demand0
    loops = list(monitor.loops.values())
    res.loop_ticks = sum(t for t, _, _ in loops)
    res.loop_ticks_on_time = sum(o for _, o, _ in loops)
    res.loop_ticks_missed = sum(m for _, _, m in loops)
    res.events, res.events_dropped = list(monitor.events), monitor.events_dropped
    world = monitor.world
    for key in ("rtf", "tick_p50_ms", "tick_p99_ms"):
        if key in world:
            with contextlib.suppress(ValueError):  # a status that is not a number: keep NaN
                setattr(res, key, float(world[key]))


def _executor(kind: str, context):
    if kind == "multi":
        return MultiThreadedExecutor(context=context)
    if kind == "single":
        return SingleThreadedExecutor(context=context)
    if kind == "events":
        # experimental module: imported only for the executor that uses it
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


def _callers_nodes(ex, known: list[Node]) -> list[Node]:
    """Nodes that ``on_ready`` added to the executor: they die with the run's context, so the
    run destroys them too (else they stay in the ROS graph as long as the caller holds them)."""
    if ex is None:
        return []
    return [n for n in ex.get_nodes() if all(n is not k for k in known)]


def _shutdown(res: RunResult, ex, nodes: list[Node], observers: list[Node], context) -> None:
    """End a run: stop the executor, close the observers (the recorder finishes its file),
    destroy every node (also those the caller added), shut the context down."""
    nodes = [*nodes, *_callers_nodes(ex, [*nodes, *observers])]
    if ex is not None:
        stop_executor(ex)
    for node in observers:
        if isinstance(node, McapRecorder):
            res.recorded = node.count
        close = getattr(node, "close", None)
        if close is not None:
            close()
    for node in [*nodes, *observers]:
        node.destroy_node()
    if context.ok():
        rclpy.shutdown(context=context)


# ----------------------------------------------------------------------------- composed


def _create_nodes(specs: list[NodeSpec], context, nodes: dict[str, Node]) -> None:
    """Instantiate every spec's node class into ``nodes`` (fqn -> node)."""
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
            raise BringupError(f"node {spec.fqn} ({spec.plugin}) failed to start: {exc}") from exc


def freeze_heap() -> None:
    """Move every object made so far (nodes, networks, imported modules) out of the garbage
    collector's reach: a full collection then walks only what the run allocates, instead of
    stalling every robot's tick for ~0.1 s at 30 robots (``gc.freeze``, Python >= 3.7)."""
    gc.collect()
    gc.freeze()


#: Longest time between two looks at the stop reasons of a composed run [s].
STOP_CHECK_S = 0.01


def _spin_composed(ex, context, res: RunResult, stop: StopFlag, t0: float, duration, should_stop):
    """Spin until a stop reason (``res.stop_reason``); a callback that raises ends the run.

    The reasons are looked at no more often than every :data:`STOP_CHECK_S` and no later than
    one spin (50 ms) after that: a swarm of 50 robots runs thousands of callbacks a second,
    and asking after each one cost about 4 % of the process."""
    next_check = 0.0
    while True:
        now = time.monotonic()
        if now >= next_check:
            next_check = now + STOP_CHECK_S
            res.stop_reason = (
                stop_reason(stop, t0, duration, should_stop) if context.ok() else "shutdown"
            )
            if res.stop_reason:
                return
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
            return


def run_composed(
    specs: list[NodeSpec],
    cfg: SwarmConfig,
    *,
    duration: float | None = None,
    record: str | None = None,
    record_diagnostics: bool = False,
    executor: str = "auto",
    status_every: float = 5.0,
    out=sys.stdout,
    on_ready=None,
    should_stop: Callable[[], bool] | None = None,
    observers: Sequence[ObserverFactory] = (),
    linger_after_demand_met: float | None = None,
) -> RunResult:
    """All nodes of ``specs`` in one process and one executor (see :func:`choose_executor`).

    ``record``: MCAP file of the run (``record_diagnostics``: with ``/diagnostics``).
    ``observers``: factories of nodes spun in the same executor (module docstring).
    ``on_ready(nodes: dict[fqn, Node], context, executor)`` runs once every node exists
    (tests use it to add their own nodes to the run). ``should_stop()`` is called at most every
    10 ms and at least every 60 ms, and ends the run when it returns True;
    ``linger_after_demand_met`` [s]: end the run that many sim seconds after every demand was
    met (``stop_reason`` "demand_met"). Returns the run's :class:`RunResult`.
    """
    res = RunResult()
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    nodes: dict[str, Node] = {}
    watchers: list[Node] = []
    ex = None
    stop = StopFlag()
    try:
        _create_nodes(specs, context, nodes)
        monitor = _add_observers(
            watchers,
            cfg,
            context,
            status_every=status_every,
            out=out,
            record=record,
            record_diagnostics=record_diagnostics,
            observers=observers,
        )
        executor = choose_executor(executor, specs)
        ex = _executor(executor, context)
        for node in [*nodes.values(), *watchers]:
            ex.add_node(node)
        if on_ready is not None:
            on_ready(nodes, context, ex)
        freeze_heap()
        t0 = time.perf_counter()
        c0 = time.process_time()
        print(f"[swarm] composed: {len(nodes)} nodes in one {executor} executor", file=out)
        rules = _stop_rules(should_stop, monitor, linger_after_demand_met)
        _spin_composed(ex, context, res, stop, t0, duration, rules)
        if res.stop_reason == "error":
            land_before_stop(ex, monitor, cfg.robot_names, out)
        _name_demand_stop(res, monitor, linger_after_demand_met)
        wall = time.perf_counter() - t0
        res.cpu_percent = 100.0 * (time.process_time() - c0) / max(wall, 1e-9)
        _fill_result(res, monitor, wall)
        world = nodes.get("/world")
        if world is not None and hasattr(world, "tick_stats"):
            stats = world.tick_stats()
            res.rtf = stats["rtf"]
            res.tick_p50_ms, res.tick_p99_ms = stats["tick_p50_ms"], stats["tick_p99_ms"]
            res.sim_s = world.sim.t
    finally:
        stop.restore()
        _shutdown(res, ex, list(nodes.values()), watchers, context)
    return res


# ----------------------------------------------------------------------------- processes


@dataclass
class _Child:
    """One child process of a run: a node (:func:`run_processes`) or a group of nodes
    (:func:`run_groups`). ``robots``: the robots whose nodes it runs (they land when it exits);
    ``fatal``: it runs swarm-wide nodes, so its exit ends the run."""

    name: str
    argv: list[str]
    robots: tuple[str, ...]
    fatal: bool
    spec: NodeSpec | None = None
    proc: subprocess.Popen | None = None
    log: object = None

    @property
    def stem(self) -> str:
        return self.name.strip("/").replace("/", "__")


def _node_children(specs: list[NodeSpec], exes: list[str], robots: set[str]) -> list[_Child]:
    """One child per node; a node in a robot's namespace is that robot's."""
    out = []
    for spec, exe in zip(specs, exes):
        robot = spec.namespace.strip("/")
        mine = (robot,) if robot in robots else ()
        out.append(_Child(spec.fqn, [exe], mine, not mine, spec))
    return out


def _spawn(children: list[_Child], workdir: Path, started: list[_Child]) -> None:
    """Start each child into ``started`` (so a failure leaves the started ones to stop);
    parameters and logs in ``workdir``."""
    for child in children:
        argv = list(child.argv)
        if child.spec is not None:
            params = workdir / f"{child.stem}.yaml"
            params.write_text(yaml.safe_dump(child.spec.params_yaml()))
            argv += child.spec.ros_args(str(params))
        child.log = open(workdir / f"{child.stem}.log", "wb")  # noqa: SIM115 (closed by the run)
        child.proc = subprocess.Popen(
            argv,
            stdout=child.log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            preexec_fn=die_with_parent,
        )
        started.append(child)


def _reap(
    children: list[_Child], gone: set[str], res: RunResult, workdir: Path, lander, out
) -> bool:
    """Report the children that exited since the last call (``gone``: already reported).
    A robots' child has its robots land (asked through node ``lander``) and the run goes on;
    a swarm-wide child's exit is fatal. Returns True when the run must end."""
    fatal = False
    for child in children:
        proc = child.proc
        if proc.poll() is None or child.name in gone:
            continue
        gone.add(child.name)
        tail = (workdir / f"{child.stem}.log").read_text(errors="replace")[-2000:]
        what = "node" if child.spec is not None else "group"
        res.errors.append(f"{what} {child.name} exited with code {proc.returncode}:\n{tail}")
        res.exit_code = 1
        if child.fatal:
            fatal = True
            continue
        for robot in child.robots:
            res.node_exits.append((child.name, int(proc.returncode), robot))
        print(
            f"[swarm] {what} {child.name} exited with code {proc.returncode}: "
            f"{', '.join(child.robots)} land(s), the other robots carry on (log: {workdir})",
            file=out,
            flush=True,
        )
        for robot in child.robots:
            _request_land(lander, robot)
    return fatal


#: Modes a robot can end a run in after ``land`` (``topics.MODE``).
_LANDED = ("grounded", "failed", "emergency")
#: Longest wait for the robots to land before a run that a swarm-wide node's exit ends [s].
LAND_BEFORE_STOP_S = 15.0
#: How long the latched ``/<robot>/mode`` of the robots whose owner still runs may take [s].
_MODE_DISCOVERY_S = 1.0
#: No robot's mode changed this long after the land requests: the owners do not act [s].
_NO_PROGRESS_S = 3.0


def land_before_stop(
    ex, node: Node, robots: Sequence[str], out, wait_s: float = LAND_BEFORE_STOP_S
) -> list[str]:
    """A run ends on a failure (a swarm-wide node exited, a composed node's callback raised):
    land every robot whose owner (world, bridge) still runs and wait, spinning ``ex``, until
    each one's ``/<robot>/mode`` says landed, at most ``wait_s``, before the run ends: a
    failure of the chain ends in a landing, in simulation as on hardware, not in drones
    frozen in the air when the world stops. A robot whose owner is gone publishes no
    (latched) mode: nothing to land there; owners that change no mode within
    ``_NO_PROGRESS_S`` of the request (a broken world) are not waited for. Callbacks that
    raise while it spins are skipped (the run already ends on them). Returns the robots not
    landed in time (their owners' watchdogs land them)."""
    modes: dict[str, str] = {}
    subs = [
        node.create_subscription(
            String,
            topics.robot_topic(r, topics.MODE),
            lambda m, r=r: modes.__setitem__(r, m.data),
            qos.LATCHED,
        )
        for r in robots
    ]
    t0 = time.monotonic()
    while time.monotonic() - t0 < _MODE_DISCOVERY_S and len(modes) < len(robots):
        _spin_past_errors(ex)
    flying = {r: modes[r] for r in robots if r in modes and modes[r] not in _LANDED}
    left = []
    if flying:
        print(f"[swarm] landing {len(flying)} robot(s) before the run ends", file=out, flush=True)
        for r in flying:
            _request_land(node, r)
        t0 = time.monotonic()
        while time.monotonic() - t0 < wait_s and any(modes[r] not in _LANDED for r in flying):
            stuck = all(modes[r] == m for r, m in flying.items())
            if stuck and time.monotonic() - t0 > _NO_PROGRESS_S:
                break
            _spin_past_errors(ex)
        left = [r for r in flying if modes[r] not in _LANDED]
        took = time.monotonic() - t0
        print(
            f"[swarm] not landed after {took:.1f} s: {', '.join(left)} (their watchdogs land them)"
            if left
            else f"[swarm] landed in {took:.1f} s",
            file=out,
            flush=True,
        )
    for sub in subs:
        node.destroy_subscription(sub)
    return left


def _spin_past_errors(ex) -> None:
    """One spin; a callback that raises is skipped (reported once by the run already)."""
    with contextlib.suppress(Exception):
        ex.spin_once(timeout_sec=0.05)


def _spin_processes(
    ex, children, res, stop, t0, duration, should_stop, workdir, lander, out, robots
) -> dict[int, float]:
    """Spin the observers until a stop reason (``res.stop_reason``; a fatal exit:
    ``node_exit``, see :func:`_reap`, after :func:`land_before_stop` of ``robots``); returns
    each child process's CPU time [s]."""
    cpu = {c.proc.pid: 0.0 for c in children}
    gone: set[str] = set()
    while True:
        res.stop_reason = stop_reason(stop, t0, duration, should_stop)
        if res.stop_reason:
            return cpu
        ex.spin_once(timeout_sec=0.05)
        for c in children:
            if c.proc.poll() is None:
                cpu[c.proc.pid] = proc_cpu_s(c.proc.pid)
        if _reap(children, gone, res, workdir, lander, out):
            res.stop_reason = "node_exit"
            land_before_stop(ex, lander, robots, out)
            return cpu


def run_processes(
    specs: list[NodeSpec],
    cfg: SwarmConfig,
    *,
    log_dir: str | None = None,
    stop_on_node_exit: bool = False,
    **kwargs,
) -> RunResult:
    """One OS process per node (their console scripts), the observers in this process.

    Keyword arguments as :func:`run_children` (``duration``, ``record``,
    ``record_diagnostics``, ``status_every``, ``out``, ``on_ready(context, executor)``,
    ``should_stop``, ``observers``). A robot's node that exits is reported and its robot
    lands while the run goes on (``stop_on_node_exit=True``: the run ends, as for a
    swarm-wide node).
    """
    exes = [executable_path(s) for s in specs]  # a missing one fails before anything starts
    robots = set() if stop_on_node_exit else set(cfg.robot_names)
    children = _node_children(specs, exes, robots)
    return run_children(children, cfg, log_dir=log_dir, what="nodes", **kwargs)


def group_children(
    argv: Sequence[str], cfg: SwarmConfig, groups: int, stop_on_group_exit: bool = False
) -> list[_Child]:
    """The K children of ``swarm up --groups K``: ``argv + ["--group", "I/K"]`` each (``argv``:
    the ``swarm up`` command line of one group, without ``--group``). Group 1 runs the
    swarm-wide nodes: its exit ends the run; another group's exit lands its robots (or ends
    the run with ``stop_on_group_exit``)."""
    split = split_robots(list(cfg.robot_names), groups)
    return [
        _Child(
            f"group{i}",
            [*argv, "--group", f"{i}/{groups}"],
            tuple(robots),
            i == 1 or stop_on_group_exit,
        )
        for i, robots in enumerate(split, start=1)
    ]


def run_groups(
    argv: Sequence[str],
    cfg: SwarmConfig,
    groups: int,
    *,
    log_dir: str | None = None,
    stop_on_group_exit: bool = False,
    **kwargs,
) -> RunResult:
    """``swarm up --groups K``: K processes (:func:`group_children`), each one group's nodes
    composed in one executor (its policy nodes tick in one batch), the observers here.
    Keyword arguments as :func:`run_children`."""
    children = group_children(argv, cfg, groups, stop_on_group_exit)
    return run_children(children, cfg, log_dir=log_dir, what="groups", **kwargs)


def run_children(
    children: list[_Child],
    cfg: SwarmConfig,
    *,
    duration: float | None = None,
    record: str | None = None,
    record_diagnostics: bool = False,
    status_every: float = 5.0,
    out=sys.stdout,
    log_dir: str | None = None,
    on_ready=None,
    should_stop: Callable[[], bool] | None = None,
    observers: Sequence[ObserverFactory] = (),
    what: str = "processes",
    linger_after_demand_met: float | None = None,
) -> RunResult:
    """Start ``children`` (nodes or groups), spin the observers in this process, stop them.

    ``record`` / ``record_diagnostics`` / ``observers`` / ``linger_after_demand_met`` as
    :func:`run_composed`;
    ``on_ready(context, executor)`` may add nodes of the caller to this process's executor;
    ``should_stop()`` is called after every spin and ends the run when it returns True.
    """
    res = RunResult()
    workdir = Path(log_dir or tempfile.mkdtemp(prefix="swarm_up_"))
    workdir.mkdir(parents=True, exist_ok=True)
    started: list[_Child] = []
    stop = StopFlag()
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    watchers: list[Node] = []
    ex = None
    try:
        _spawn(children, workdir, started)
        print(f"[swarm] processes: {len(started)} {what}, logs in {workdir}", file=out)
        monitor = _add_observers(
            watchers,
            cfg,
            context,
            status_every=status_every,
            out=out,
            record=record,
            record_diagnostics=record_diagnostics,
            observers=observers,
        )
        ex = SingleThreadedExecutor(context=context)
        for node in watchers:
            ex.add_node(node)
        if on_ready is not None:
            on_ready(context, ex)
        t0 = time.perf_counter()
        c0 = time.process_time()
        rules = _stop_rules(should_stop, monitor, linger_after_demand_met)
        cpu = _spin_processes(
            ex, started, res, stop, t0, duration, rules, workdir, monitor, out, cfg.robot_names
        )
        _name_demand_stop(res, monitor, linger_after_demand_met)
        wall = time.perf_counter() - t0
        _fill_result(res, monitor, wall)
        own = time.process_time() - c0
        res.cpu_percent = 100.0 * (sum(cpu.values()) + own) / max(wall, 1e-9)
    finally:
        stop.restore()
        theirs = _callers_nodes(ex, watchers)
        if ex is not None:
            stop_executor(ex)
            ex = None
        terminate([c.proc for c in started])
        for c in started:
            c.log.close()
        _shutdown(res, ex, theirs, watchers, context)
    return res


def event_lines(res: RunResult, limit: int = 20) -> list[str]:
    """The run's events for its summary (:func:`sim_bridge.sim.describe_events`)."""
    from sim_bridge.sim import describe_events

    return describe_events(res.events, res.events_dropped, limit)
