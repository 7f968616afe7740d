"""Bringup plan: one swarm config -> the list of ROS 2 nodes that run it.

:func:`plan` is the single source of truth used by both faces:

* ``ros2 launch lgtc_policy swarm.launch.py config:=...`` (a full ROS 2 install) turns each
  :class:`NodeSpec` into a ``launch_ros.actions.Node``;
* ``swarm up CONFIG`` (here, without the ``launch`` packages) runs them either composed in
  one process (:func:`run_composed`: the node classes in one executor) or one process per
  node (:func:`run_processes`: ``<executable> --ros-args -r __node:=... -r __ns:=...
  --params-file ...``).

The nodes (topic graph in :mod:`sim_bridge.topics`):

==================  ===============================================  =========================
name (namespace)    plugin                                           when
==================  ===============================================  =========================
world               sim_bridge.ros.world_node:WorldNode              always (consumers, sim
                                                                     robots)
comm_relay          sim_bridge.ros.relay_node:RelayNode              always
swarm_services      sim_bridge.ros.services_node:SwarmServicesNode   always (/all/... services)
crazyflie_bridge    sim_bridge.ros.crazyflie_node:CrazyflieBridge... any ``backend: cflib``
                                                                     robot
ground_bridge       sim_bridge.ros.ground_node:GroundBridgeNode      any ``backend: external``
                                                                     robot
cbf_filter (/<r>)   cbf_filter.ros.node:CbfNode                      per robot, unless
                                                                     ``cbf=False``
cmd_passthrough     sim_bridge.ros.passthrough_node:PassthroughNode  ``cbf=False`` and a policy
swarm_goto          sim_bridge.ros.goto_node:GotoNode                ``goto`` (scripted
                                                                     commander)
policy (/<r>)       lgtc_policy.ros.node:PolicyNode                  per robot, when the config
                                                                     has a checkpoint,
                                                                     ``policy`` and not ``goto``
dmar (/<r>)         dmar_agent.ros.node:DmarNode                     per robot, when the config
                                                                     has a ``routing`` section,
                                                                     ``policy`` and not ``goto``
==================  ===============================================  =========================

Groups (:func:`split_robots`, :func:`group_plan`): ``swarm up --groups K`` splits the
robots into K contiguous groups of near-equal size, one process each (its nodes composed);
group 1 also runs the swarm-wide nodes, so there is exactly one world (or one bridge per
robot) and one relay. ``swarm up --group I/K`` (``ros2 launch ... group:=I/K``) starts one
group only: start the K groups on any hosts of one ROS 2 domain (same ``ROS_DOMAIN_ID``,
``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` between hosts, ``LOCALHOST`` on one), with the same
swarm file (see docs/groups.md).

Sim time (``sim_time=True``: ``swarm up --sim-time``, launch argument
``use_sim_time:=true``): every node of the plan gets the standard ROS parameter
``use_sim_time: true``, so its clock follows the world's ``/clock`` (stamps, freshness, timers);
the world itself publishes that clock. Real robots live on wall time: a plan with a cflib or
external robot refuses sim time unless ``backend=sim`` simulates every robot
(:func:`sim_time_problem`). Without it no node gets the parameter (wall time, as before).

A routing config (DMAR) starts the DMAR agent nodes in place of the LGTC policy nodes; the
plan names them by package, executable and plugin only (sim_bridge imports no mission
package).

Without the CBF the topics stay the same: ``cmd_passthrough`` forwards
``cmd_vel_nominal`` to ``cmd_vel`` unchanged (no safety!).

:func:`launch_plan` is everything ``swarm.launch.py`` decides, kept here so it is tested
without the ``launch`` packages: the launch arguments (:data:`LAUNCH_ARGUMENTS`) -> the node
specs, and which optional tools (rviz2, ``ros2 bag``) to start: a missing one is one
warning, and the swarm starts without it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sim_bridge.config import ConfigError, SwarmConfig, load_config
from sim_bridge.errors import SwarmError


class BringupError(SwarmError, RuntimeError):
    """The swarm cannot be started as planned; the message names the node and the fix."""


#: The standard ROS parameter that puts a node's clock on ``/clock`` (sim time).
USE_SIM_TIME = "use_sim_time"


@dataclass(frozen=True)
class NodeSpec:
    """One node to start.

    Attributes:
        package: ROS package (``sim_bridge``, ``cbf_filter``, ``lgtc_policy``).
        executable: console script of the package.
        name: node name.
        namespace: ``""`` or ``/<robot>``.
        parameters: ROS parameters (str, bool, int, float).
        plugin: ``module:ClassName`` of the node class (composed mode).
    """

    package: str
    executable: str
    name: str
    namespace: str
    parameters: dict[str, Any] = field(default_factory=dict)
    plugin: str = ""

    @property
    def fqn(self) -> str:
        """Fully qualified node name, e.g. ``/cf1/cbf_filter``."""
        return f"{self.namespace.rstrip('/')}/{self.name}"

    def ros_args(self, params_file: str | None = None) -> list[str]:
        """Command-line ``--ros-args`` of process mode."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        if params_file:
            args += ["--params-file", params_file]
        return args

    def params_yaml(self) -> dict[str, Any]:
        """``{fqn: {ros__parameters: ...}}`` for a ``--params-file``."""
        return {self.fqn: {"ros__parameters": dict(self.parameters)}}


#: Swarm-wide nodes (no namespace; node name = key): ``(package, executable, plugin)``.
SWARM_NODES = {
    "world": ("sim_bridge", "world_node", "sim_bridge.ros.world_node:WorldNode"),
    "comm_relay": ("sim_bridge", "comm_relay", "sim_bridge.ros.relay_node:RelayNode"),
    "swarm_services": (
        "sim_bridge",
        "swarm_services",
        "sim_bridge.ros.services_node:SwarmServicesNode",
    ),
    "crazyflie_bridge": (
        "sim_bridge",
        "crazyflie_bridge",
        "sim_bridge.ros.crazyflie_node:CrazyflieBridgeNode",
    ),
    "ground_bridge": (
        "sim_bridge",
        "ground_bridge",
        "sim_bridge.ros.ground_node:GroundBridgeNode",
    ),
    "cmd_passthrough": (
        "sim_bridge",
        "cmd_passthrough",
        "sim_bridge.ros.passthrough_node:PassthroughNode",
    ),
    "swarm_goto": ("sim_bridge", "swarm_goto", "sim_bridge.ros.goto_node:GotoNode"),
}
#: Per-robot nodes (namespace ``/<robot>``; node name = key): ``(package, executable, plugin)``.
ROBOT_NODES = {
    "cbf_filter": ("cbf_filter", "cbf_node", "cbf_filter.ros.node:CbfNode"),
    "policy": ("lgtc_policy", "policy_node", "lgtc_policy.ros.node:PolicyNode"),
    "dmar": ("dmar_agent", "dmar_node", "dmar_agent.ros.node:DmarNode"),
}


def _swarm_node(name: str, parameters: dict[str, Any]) -> NodeSpec:
    package, executable, plugin = SWARM_NODES[name]
    return NodeSpec(package, executable, name, "", parameters, plugin)


def _robot_nodes(name: str, robots, common: dict[str, Any]) -> list[NodeSpec]:
    package, executable, plugin = ROBOT_NODES[name]
    return [
        NodeSpec(package, executable, name, f"/{r.name}", {**common, "robot": r.name}, plugin)
        for r in robots
    ]


def _backends(cfg: SwarmConfig, backend: str | None, path: str) -> set[str]:
    """The robot backends the plan serves (checks the ``backend`` argument)."""
    if backend not in (None, "sim", "cflib"):
        raise BringupError(f"backend {backend!r}: use sim, cflib, or leave it out")
    if backend == "cflib":
        not_cflib = [r.name for r in cfg.robots if r.backend != "cflib"]
        if not_cflib:
            raise BringupError(
                f"backend cflib: robots {not_cflib} are not cflib robots in {path}; "
                "set `backend: cflib` and a radio uri on them"
            )
    return {r.backend for r in cfg.robots} if backend != "sim" else {"sim"}


def sim_time_problem(cfg: SwarmConfig, backend: str | None, option: str) -> str | None:
    """Why ``option`` (sim time) cannot run ``cfg`` with ``backend``, or ``None``: real robots
    (``backend: cflib`` / ``external``) fly on wall time, and so must every node they talk to."""
    if backend == "sim":
        return None
    real = [r for r in cfg.robots if r.backend != "sim"]
    if not real:
        return None
    names = ", ".join(r.name for r in real[:5]) + (", ..." if len(real) > 5 else "")
    kinds = "/".join(sorted({r.backend for r in real}))
    return (
        f"{option}: robots {names} are real robots (backend {kinds}), which live on wall time; "
        "drop it, or simulate every robot with --backend sim (backend:=sim)"
    )


def plan(
    cfg: SwarmConfig,
    config_path: str | os.PathLike,
    *,
    policy: bool = True,
    cbf: bool = True,
    autostart: bool = False,
    backend: str | None = None,
    relay_latency_s: float = 0.0,
    relay_drop_prob: float = 0.0,
    goto: bool = False,
    sim_time: bool = False,
) -> list[NodeSpec]:
    """Node specs for ``cfg`` (loaded from ``config_path``, which every node re-reads).

    Args:
        policy: start the mission's per-robot nodes: the DMAR agents of a routing config,
            else the LGTC policy nodes when the config names a checkpoint.
        cbf: start the per-robot CBF filters (else the unfiltered pass-through).
        autostart: the world takes off every sim robot at start.
        backend: ``sim`` simulates every robot whatever its configured backend (dry run of
            a real-robot config; the world gets ``backend_override: sim``); ``cflib``
            checks that every robot is a cflib robot; ``None`` keeps the configured ones.
        relay_latency_s, relay_drop_prob: comm relay impairments.
        goto: add the scripted ``swarm_goto`` commander (robot i -> consumer i mod M) in
            place of the policy nodes.
        sim_time: every node gets ``use_sim_time: true`` (its clock follows ``/clock``);
            refused for real robots (:func:`sim_time_problem`).
    """
    path = str(Path(config_path).resolve())
    backends = _backends(cfg, backend, path)
    problem = sim_time_problem(cfg, backend, "sim_time") if sim_time else None
    if problem:
        raise BringupError(problem)
    common = {"config": path}
    world = {**common, "autostart": bool(autostart)}
    if backend == "sim":
        world["backend_override"] = "sim"
    relay = {
        **common,
        "latency_s": float(relay_latency_s),
        "drop_prob": float(relay_drop_prob),
        # DMAR agents talk in event-driven rounds, not on a tick rhythm
        **({"deliver": "periodic"} if cfg.routing is not None else {}),
    }
    specs = [
        _swarm_node("world", world),
        _swarm_node("comm_relay", relay),
        _swarm_node("swarm_services", dict(common)),
    ]
    if "cflib" in backends:
        specs.append(_swarm_node("crazyflie_bridge", dict(common)))
    if "external" in backends:
        specs.append(_swarm_node("ground_bridge", dict(common)))
    with_dmar = policy and cfg.routing is not None and not goto
    with_policy = policy and cfg.policy.checkpoint is not None and not goto and not with_dmar
    if cbf:
        specs += _robot_nodes("cbf_filter", cfg.robots, common)
    elif with_policy or with_dmar or goto:
        specs.append(_swarm_node("cmd_passthrough", dict(common)))
    if goto:
        specs.append(_swarm_node("swarm_goto", dict(common)))
    if with_policy:
        specs += _robot_nodes("policy", cfg.robots, common)
    if with_dmar:
        specs += _robot_nodes("dmar", cfg.robots, common)
    if sim_time:
        specs = [replace(s, parameters={**s.parameters, USE_SIM_TIME: True}) for s in specs]
    return specs


# ----------------------------------------------------------------------------- groups


def split_robots(robots: list[str], groups: int) -> list[list[str]]:
    """``robots`` in ``groups`` contiguous groups of near-equal size, in config order (each
    robot exactly once; the first groups take one more when it does not divide).

    Raises:
        BringupError: ``groups`` is not an integer from 1 to the number of robots.
    """
    n = len(robots)
    if isinstance(groups, bool) or not isinstance(groups, int) or not 1 <= groups <= max(n, 1):
        raise BringupError(
            f"groups={groups!r}: split the {n} robot(s) into 1 to {max(n, 1)} groups "
            "(one process each; e.g. --groups 2)"
        )
    size, extra = divmod(n, groups)
    out, start = [], 0
    for g in range(groups):
        stop = start + size + (g < extra)
        out.append(list(robots[start:stop]))
        start = stop
    return out


def parse_group(text: str) -> tuple[int, int]:
    """``"I/K"`` (group I of K, counted from 1) -> ``(I, K)``; BringupError if malformed."""
    head, sep, tail = str(text).partition("/")
    try:
        index, groups = int(head), int(tail)
    except ValueError:
        index = groups = 0
    if not sep or groups < 1 or not 1 <= index <= groups:
        raise BringupError(
            f"group {text!r}: write I/K, group I of K counted from 1 (e.g. 2/3); "
            "group 1 runs the swarm-wide nodes (world, relay, services, bridges)"
        )
    return index, groups


def group_plan(specs: list[NodeSpec], cfg: SwarmConfig, index: int, groups: int) -> list[NodeSpec]:
    """The nodes of group ``index`` of ``groups`` (from 1): its robots' nodes
    (:func:`split_robots`) and, in group 1 only, the swarm-wide nodes (world or bridges, comm
    relay, services: one of each for the whole swarm). Every node of ``specs`` falls in
    exactly one group."""
    if not 1 <= index <= groups:
        raise BringupError(f"group {index}/{groups}: the group must be between 1 and {groups}")
    mine = set(split_robots(list(cfg.robot_names), groups)[index - 1])
    return [
        s
        for s in specs
        if (s.namespace.strip("/") in mine)
        or (index == 1 and s.namespace.strip("/") not in cfg.robot_names)
    ]


_HINTS = {
    "cbf_filter": "run without it with --no-cbf",
    "lgtc_policy": "run without it with --no-policy",
    "dmar_agent": "install dmar_agent (make venv) or run without it with --no-policy",
    "sim_bridge.ros.crazyflie_node": (
        "the radio bridge is not installed; use --backend sim for a dry run"
    ),
    "sim_bridge.ros.ground_node": (
        "the ground bridge is not installed; use --backend sim for a dry run"
    ),
}


def _hint(spec: NodeSpec) -> str:
    module = spec.plugin.partition(":")[0]
    for prefix, hint in _HINTS.items():
        if module.startswith(prefix):
            return hint
    return "reinstall the package (make venv)"


def check_plugins(specs: list[NodeSpec]) -> None:
    """Raise :class:`BringupError` listing every spec whose plugin cannot be imported."""
    missing = []
    for spec in dict.fromkeys(s.plugin for s in specs):
        module, _, cls = spec.partition(":")
        owner = next(s for s in specs if s.plugin == spec)
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(
                f"node {owner.name} ({owner.package}): plugin {spec} is not importable "
                f"(module {module} missing); {_hint(owner)}"
            )
    if missing:
        raise BringupError("cannot start the swarm:\n  " + "\n  ".join(missing))


def load_plugin(spec: NodeSpec):
    """The node class of ``spec`` (raises :class:`BringupError` naming the plugin)."""
    module, _, cls = spec.plugin.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise BringupError(
            f"node {spec.name}: cannot import plugin {spec.plugin} ({exc}); {_hint(spec)}"
        ) from exc
    try:
        return getattr(mod, cls)
    except AttributeError:
        raise BringupError(
            f"node {spec.name}: module {module} has no class {cls} (plugin {spec.plugin})"
        ) from None


def executable_path(spec: NodeSpec) -> str:
    """Path of the console script of ``spec`` (venv ``bin`` first, then ``PATH``)."""
    local = Path(sys.executable).parent / spec.executable
    if local.exists():
        return str(local)
    found = shutil.which(spec.executable)
    if found is None:
        raise BringupError(
            f"node {spec.name}: executable {spec.executable} of package {spec.package} not "
            f"found; {_hint(spec)}"
        )
    return found


# ----------------------------------------------------------------------------- ros2 launch

#: ``swarm.launch.py``'s arguments: name -> (default, description).
LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "config": ("", "swarm YAML file (or the environment variable SWARM_CONFIG)"),
    "backend": ("", "'' = as configured; sim = simulate every robot; cflib = all radio"),
    "rviz": (
        "false",
        "start rviz2 with the launch file's rviz config (lgtc_policy: swarm.rviz, dmar_agent: "
        "dmar.rviz; skipped, with a warning, when rviz2 is not installed)",
    ),  # fmt: skip
    "record": (
        "",
        "bag directory for ros2 bag record -s mcap (skipped, with a warning, "
        "when ros2 bag is not installed)",
    ),  # fmt: skip
    "policy": (
        "true",
        "mission nodes: DMAR agents (routing config) or LGTC policies (config with a checkpoint)",
    ),
    "cbf": ("true", "CBF filter nodes (false: unfiltered pass-through)"),
    "takeoff": ("false", "take off the sim robots at start"),
    "group": (
        "",
        "I/K: start only group I of K (robots split as swarm up --groups K; group 1 also "
        "runs the world, relay and services); '' = the whole swarm",
    ),
    USE_SIM_TIME: (
        "false",
        "every node's clock follows the world's /clock (simulation only; refused for real "
        "robots unless backend:=sim)",
    ),
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
#: What ``ros2 bag record -s mcap`` needs: the ``ros2`` command and these packages.
BAG_PACKAGES = ("ros2bag", "rosbag2_storage_mcap")


def launch_flag(name: str, value: str) -> bool:
    """A boolean launch argument (``true/false``, ``1/0``, ``yes/no``, ``on/off``)."""
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise BringupError(f"{name}:={value!r}: use true or false")


@dataclass(frozen=True)
class LaunchPlan:
    """What ``swarm.launch.py`` starts.

    Attributes:
        config: the swarm file (absolute path).
        specs: the swarm's nodes (:func:`plan`).
        rviz: start rviz2 (asked for and installed).
        record: bag directory for ``ros2 bag record`` (asked for and installed), or ``""``.
        warnings: one line per optional tool asked for but missing (the swarm starts).
    """

    config: str
    specs: list[NodeSpec]
    rviz: bool
    record: str
    warnings: list[str]


def launch_plan(
    args: Mapping[str, str],
    *,
    has_package: Callable[[str], bool],
    which: Callable[[str], str | None] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> LaunchPlan:
    """Resolve ``swarm.launch.py``'s arguments (missing ones take their default).

    Args:
        args: launch argument name -> value; a name not in :data:`LAUNCH_ARGUMENTS` is an
            error (nothing is silently ignored).
        has_package: whether a ROS package is installed (the launch file asks the ament
            index).
        which: path of an executable or ``None`` (default: :func:`shutil.which`).
        environ: where ``SWARM_CONFIG`` is looked up when ``config`` is empty.

    Raises:
        BringupError: no config, a bad config or argument value (nothing is started).
    """
    which = which or shutil.which
    unknown = sorted(set(args) - set(LAUNCH_ARGUMENTS))
    if unknown:
        raise BringupError(f"unknown launch arguments {unknown}; known: {list(LAUNCH_ARGUMENTS)}")
    value = {name: args.get(name, default) for name, (default, _) in LAUNCH_ARGUMENTS.items()}
    config = value["config"] or environ.get("SWARM_CONFIG", "")
    if not config:
        raise BringupError("pass config:=/path/to/swarm.yaml (or set SWARM_CONFIG)")
    config = str(Path(config).expanduser().resolve())
    flags = {
        name: launch_flag(name, value[name])
        for name in ("rviz", "policy", "cbf", "takeoff", USE_SIM_TIME)
    }
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise BringupError(str(exc)) from None
    backend = value["backend"] or None
    problem = flags[USE_SIM_TIME] and sim_time_problem(cfg, backend, f"{USE_SIM_TIME}:=true")
    if problem:
        raise BringupError(problem)
    specs = plan(
        cfg,
        config,
        policy=flags["policy"],
        cbf=flags["cbf"],
        autostart=flags["takeoff"],
        backend=backend,
        sim_time=flags[USE_SIM_TIME],
    )
    if value["group"]:
        specs = group_plan(specs, cfg, *parse_group(value["group"]))
    warnings = []
    rviz = flags["rviz"] and has_package("rviz2")
    if flags["rviz"] and not rviz:
        warnings.append(
            "rviz:=true but rviz2 is not installed (apt install ros-jazzy-rviz2); "
            "starting the swarm without it"
        )
    record = value["record"]
    if record:
        missing = [p for p in BAG_PACKAGES if not has_package(p)]
        if which("ros2") is None:
            missing.insert(0, "the ros2 command")
        if missing:
            warnings.append(
                f"record:={record} but ros2 bag cannot record MCAP here (missing: "
                f"{', '.join(missing)}; apt install ros-jazzy-rosbag2 "
                "ros-jazzy-rosbag2-storage-mcap); starting the swarm without recording"
            )
            record = ""
    return LaunchPlan(config, specs, rviz, record, warnings)
