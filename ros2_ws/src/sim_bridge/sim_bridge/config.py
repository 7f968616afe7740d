"""Swarm configuration: the YAML schema every node and tool reads (``fileversion: 1``).

A swarm file describes one mission: the arena, the robots (with a ``robot_types`` defaults
layer so a 30-robot file stays short), the consumers and their demands, the communication
radius ``C`` and sensing radius, the rates, the CBF safety parameters, an optional policy
checkpoint and scripted events. :func:`load_config` parses and validates it and returns a
frozen :class:`SwarmConfig`; every problem found is reported at once as a :class:`Problem`
(key path, what is wrong, how to fix it) inside one :class:`ConfigError`. Validation never
raises anything else, whatever the input.

Resource model (LGTC-IPPO paper, Section II): robot ``i`` carries supplies ``so_i`` (one
amount per resource type) and consumer ``m`` demands ``de_m``; each resource type has one
depletion kind: ``persistent`` (coverage: the robot's supply counts against ``de_m`` while it
stays inside the consumer's interaction radius ``R_m`` and is never consumed; the demand
comes back when it leaves) or ``instantaneous`` (handed over at once on arrival). There is
no drain-at-a-rate kind: a ``rate`` key is rejected (a battery running out is a scripted
``discharge`` event). The paper assumes ``sum_i so_i <= sum_m de_m``; a file that breaks
this gets a warning, not an error.

Units: metres, seconds, radians; ``pose = [x, y, z, yaw]`` in the ``world`` frame.

Limits keep validation bounded in time and memory whatever the input (each is far above
what a lab flies; a file over one gets one problem naming the limit): a file of at most
:data:`MAX_FILE_BYTES` (checked before parsing), at most :data:`MAX_ROBOTS` robots,
:data:`MAX_CONSUMERS` consumers, :data:`MAX_EVENTS` events, :data:`MAX_RESOURCE_TYPES`
resource types, :data:`MAX_KEYS` keys in any mapping, names of at most
:data:`MAX_NAME_LEN` characters and other text of at most :data:`MAX_TEXT_LEN`. Start-pose
and consumer overlaps are found with a grid hash (:func:`overlapping_pairs`), never an
``N x N`` array.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sim_bridge.errors import SwarmError
from sim_bridge.routing import (
    Grid,
    MapError,
    parse_movingai_map,
    random_obstacles,
    random_tasks,
    reachable,
)

FILEVERSION = 1
KINDS = ("crazyflie", "ground")
BACKENDS = {"crazyflie": ("sim", "cflib"), "ground": ("sim", "external")}
DEPLETIONS = ("persistent", "instantaneous")
CLASS_K = ("linear", "cubic")
EVENT_TYPES = ("discharge", "fail", "demand", "takeoff", "land")
RESERVED_NAMES = ("all", "swarm", "consumers", "clock")
# Matched whole (``fullmatch``; ``\Z``, not ``$``, which also matches before a final newline).
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
URI_RE = re.compile(r"(radio|usb|tcp|udp)://\S+\Z")
TOPIC_RE = re.compile(r"/?[A-Za-z_~][A-Za-z0-9_/~]*\Z")

# ----------------------------------------------------------------------------- limits
# Validation time and memory grow with these; each is far above a real lab's swarm file.
#: Bytes of a swarm file, checked before parsing. A file at the count limits below, written
#: out in full block style (``yaml.safe_dump(cfg.to_mapping())``: 1000 robots and 1000
#: consumers), is about 0.3 MiB; parsing 1 MiB takes about a second.
MAX_FILE_BYTES = 2**20
#: Robots in one file: 20 times the largest Crazyflie swarm flown (Crazyswarm, 49) and the
#: largest N of ``benchmarks/world.py``; every robot is several ROS nodes.
MAX_ROBOTS = 1000
#: Consumers in one file (the papers use M = 4 to 10; every robot observes every consumer).
MAX_CONSUMERS = 1000
#: Scripted events in one file.
MAX_EVENTS = 10_000
#: Resource types (the papers use r = 2; r sets the policy's input sizes).
MAX_RESOURCE_TYPES = 64
#: Keys in any one mapping (``robot_types``, a robot's ``resources``, a ``demand``, ...).
MAX_KEYS = 64
#: Characters of a robot / consumer / type name (a ROS name token and namespace; 63 as a
#: DNS label, well inside rmw's 247-character topic names with the suffixes added).
MAX_NAME_LEN = 63
#: Characters of a topic name (rmw's ``RMW_TOPIC_MAX_NAME_LENGTH``).
MAX_TOPIC_LEN = 247
#: Characters of any other text (URIs, the checkpoint path): a path's ``PATH_MAX``.
MAX_TEXT_LEN = 4096
#: Problems listed; the rest are counted in one last problem.
MAX_PROBLEMS = 500
#: Overlapping start poses (errors) or consumer areas (warnings) listed one by one.
MAX_OVERLAPS_LISTED = 200

#: Per-kind defaults used when neither the robot nor its ``robot_types`` entry sets a field.
KIND_DEFAULTS: dict[str, dict[str, float]] = {
    "crazyflie": {"radius": 0.05, "max_speed": 0.5, "max_yaw_rate": 1.0, "takeoff_height": 0.5},
    "ground": {"radius": 0.1, "max_speed": 0.3, "max_yaw_rate": 2.0, "takeoff_height": 0.0},
}

_ROBOT_FIELDS = (
    "kind",
    "backend",
    "uri",
    "radius",
    "max_speed",
    "max_yaw_rate",
    "takeoff_height",
    "resources",
    "battery",
    "cmd_topic",
    "odom_topic",
    "mocap_topic",
)
_TOP_KEYS = (
    "fileversion",
    "seed",
    "arena",
    "resource_types",
    "comm_radius",
    "sensing_radius",
    "rates",
    "safety",
    "policy",
    "robot_types",
    "robots",
    "consumers",
    "events",
    "routing",
)
_ROUTING_KEYS = (
    "cell_size",
    "origin",
    "rows",
    "cols",
    "obstacles",
    "map",
    "random_obstacles",
    "tasks",
    "k",
    "psi",
    "timing",
    "tolerance",
)
#: Cells of a routing grid (a 500 x 500 MovingAI map; each view row is 5 doubles).
MAX_CELLS = 250_000
#: Entries of ``routing.obstacles`` (cells or rectangles) and of ``routing.tasks``.
MAX_ROUTING_ITEMS = 10_000
#: Sensing radius ``routing.k`` [cells]: a view has 2k^2 + 2k + 1 cells (8321 at 64).
MAX_K = 64
#: ``routing.psi``: 2^psi PS steps per SOAC iteration (the paper fixes psi = 2).
MAX_PSI = 6
#: Bytes of a MovingAI map file (a 500 x 500 map is about 0.25 MiB).
MAX_MAP_BYTES = 4 * 2**20
#: Cells of a grid with ``random_obstacles`` (the connected draw labels components in Python).
MAX_RANDOM_CELLS = 65_536
TIMINGS = ("lockstep", "free")
_EVENT_KEYS = {
    "discharge": ("t", "type", "robot", "resource", "amount"),
    "fail": ("t", "type", "robot"),
    "takeoff": ("t", "type", "robot"),
    "land": ("t", "type", "robot"),
    "demand": ("t", "type", "consumer", "resource", "amount"),
}


# ----------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a swarm file.

    Attributes:
        path: key path inside the file, e.g. ``robots[3].radius``.
        message: what is wrong.
        fix: what to change.
    """

    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (fix: {self.fix})"


class ConfigError(SwarmError, ValueError):
    """A swarm file is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        head = f"invalid swarm config {source}" if source else "invalid swarm config"
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{head} ({len(self.problems)} problem(s)):\n{lines}")


# ----------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class Arena:
    """Axis-aligned arena bounds [m] in the world frame, each ``(min, max)``."""

    x: tuple[float, float]
    y: tuple[float, float]
    z: tuple[float, float]

    @property
    def low(self) -> np.ndarray:
        """``(3,)`` lower corner [m]."""
        return np.array([self.x[0], self.y[0], self.z[0]])

    @property
    def high(self) -> np.ndarray:
        """``(3,)`` upper corner [m]."""
        return np.array([self.x[1], self.y[1], self.z[1]])

    def contains_xy(self, x: float, y: float) -> bool:
        """True when the floor point (x, y) [m] lies inside the arena (bounds included)."""
        return self.x[0] <= x <= self.x[1] and self.y[0] <= y <= self.y[1]


@dataclass(frozen=True)
class Rates:
    """Loop rates [Hz]: policy/CBF control, simulator step, ``/clock`` and marker publishing."""

    control_hz: float = 20.0
    sim_hz: float = 100.0
    clock_hz: float = 50.0
    markers_hz: float = 5.0


@dataclass(frozen=True)
class Safety:
    """CBF parameters: safety distance ``Ds`` [m] between robot centres, gain ``gamma``, and
    the class-K function ``linear`` (gamma*h) or ``cubic`` (gamma*h^3)."""

    distance: float = 0.15
    gamma: float = 100.0
    class_k: str = "cubic"


@dataclass(frozen=True)
class PolicyConfig:
    """Policy checkpoint: ``None``, a file path (relative to the swarm file), or
    ``"package:relative/path.pt"`` inside an installed Python package."""

    checkpoint: str | None = None


@dataclass(frozen=True)
class ResourceSpec:
    """A robot's supply of one resource type.

    Attributes:
        amount: initial supply ``so_il`` [resource units], >= 0.
        depletion: ``persistent`` (covers the demand while the robot stays inside ``R_m``,
            never consumed) or ``instantaneous`` (handed over on arrival), LGTC paper Sec. II.
    """

    amount: float
    depletion: str


@dataclass(frozen=True)
class BatteryConfig:
    """Battery thresholds [V] (cflib): warn below ``warning_v``, land below ``critical_v``."""

    warning_v: float = 3.5
    critical_v: float = 3.2


@dataclass(frozen=True)
class RobotConfig:
    """One robot.

    Attributes:
        name: ROS name token, also the namespace ``/<name>``.
        kind: ``crazyflie`` (3-D single integrator with take-off/landing) or ``ground``
            (unicycle).
        backend: ``sim`` (built-in simulator), ``cflib`` (Crazyflie radio) or ``external``
            (ground robot driven through its own ``cmd_topic``/``odom_topic``).
        uri: Crazyflie radio URI (``radio://0/80/2M/E7E7E7E701``), ``None`` otherwise.
        pose: initial ``(x, y, z, yaw)`` [m, m, m, rad], world frame.
        radius: body radius [m].
        max_speed: speed limit [m/s].
        max_yaw_rate: turn-rate limit [rad/s].
        takeoff_height: take-off altitude [m] (crazyflie; 0 for ground robots).
        resources: resource type -> :class:`ResourceSpec`.
        battery: battery thresholds (cflib) or ``None``.
        cmd_topic: external driver's Twist topic (backend ``external``).
        odom_topic: external driver's nav_msgs/Odometry topic (backend ``external``).
        mocap_topic: PoseStamped topic that overrides the pose source, or ``None``.
    """

    name: str
    kind: str
    backend: str
    uri: str | None
    pose: tuple[float, float, float, float]
    radius: float
    max_speed: float
    max_yaw_rate: float
    takeoff_height: float
    resources: dict[str, ResourceSpec]
    battery: BatteryConfig | None = None
    cmd_topic: str | None = None
    odom_topic: str | None = None
    mocap_topic: str | None = None


@dataclass(frozen=True)
class ConsumerConfig:
    """A consumer (task): floor ``position`` (x, y) [m], interaction radius ``R_m`` [m] and
    demand ``de_m`` per resource type [resource units]."""

    name: str
    position: tuple[float, float]
    radius: float
    demand: dict[str, float]


@dataclass(frozen=True)
class Event:
    """A scripted event at sim time ``t`` [s].

    ``discharge``: set ``robot``'s supply of ``resource`` to ``amount``; ``fail``: the robot
    stops for good; ``takeoff`` / ``land``: as the services; ``demand``: set ``consumer``'s
    requirement of ``resource`` to ``amount`` (persistent: the amount to be covered;
    instantaneous: the amount still missing).
    """

    t: float
    type: str
    robot: str | None = None
    consumer: str | None = None
    resource: str | None = None
    amount: float | None = None


@dataclass(frozen=True)
class RoutingConfig:
    """A routing mission (DMAR paper; the ``routing`` section; ``topics`` "Routing missions").

    Attributes:
        grid: cells laid over the arena (:class:`sim_bridge.routing.Grid`: ``cell_size`` [m],
            ``origin`` = world (x, y) of cell (0, 0)'s centre, ``rows`` along y, ``cols`` along x).
        obstacle_bits: ``rows * cols`` bytes, row-major, 1 on an obstacle cell (bytes keep the
            config frozen, hashable and comparable; :attr:`obstacles` is the array).
        tasks: task cells ``(row, col)``, in the order of ``/tasks``.
        k: sensing radius [cells] (Manhattan, the paper's k-hop view).
        psi: the paper's size parameter psi (2^psi PS steps per SOAC iteration).
        timing: ``lockstep`` (the world's PS step advances when every flying robot reported
            its move and arrived) or ``free`` (no world step; moves only counted).
        tolerance: a robot within this floor distance [m] of its target cell's centre has
            arrived (lockstep).
        comm_radius: the relay's radius C [m] derived from ``k`` (:func:`routing_comm_radius`).
        map: the MovingAI map file named in the config, or ``None``.
    """

    grid: Grid
    obstacle_bits: bytes
    tasks: tuple[tuple[int, int], ...]
    k: int
    psi: int
    timing: str
    tolerance: float
    comm_radius: float
    map: str | None = field(default=None, compare=False)  # provenance; obstacles hold the cells

    @property
    def obstacles(self) -> np.ndarray:
        """``(rows, cols)`` bool obstacle mask (a new array)."""
        g = self.grid
        return np.frombuffer(self.obstacle_bits, dtype=np.uint8).reshape(g.rows, g.cols) > 0

    @property
    def sensing_m(self) -> float:
        """``k * cell_size`` [m]: the view's reach between cell centres."""
        return self.k * self.grid.cell_size

    @property
    def task_cells(self) -> np.ndarray:
        """``(T, 2)`` int64 ``[row, col]`` of the tasks."""
        return np.array(self.tasks, dtype=np.int64).reshape(-1, 2)


def routing_comm_radius(k: int, cell_size: float, height: float) -> float:
    """The comm relay's radius C [m] of a routing mission: ``k`` is the one source of truth.

    Two robots see each other when their cells are within Manhattan distance ``k`` (the DMAR
    paper's link rule). A robot may stand anywhere in its cell (a square of side
    ``cell_size``), so two such robots are at most ``cell_size * sqrt((k + 1)^2 + 1)`` apart on
    the floor (cells ``k`` apart along one axis); the relay measures 3-D distance, and robots
    stand between the floor and their take-off ``height`` [m]. C is that bound, so the relay
    delivers to every robot of the view (and to a few beyond it, whose messages an agent
    drops: it keeps only those of the robots its view shows).
    """
    floor = cell_size * math.sqrt((k + 1) ** 2 + 1)
    return math.hypot(floor, height)


@dataclass(frozen=True)
class SwarmConfig:
    """A validated swarm file. See the module docstring for the schema."""

    fileversion: int
    seed: int
    arena: Arena
    resource_types: tuple[str, ...]
    robots: tuple[RobotConfig, ...]
    consumers: tuple[ConsumerConfig, ...]
    comm_radius: float
    sensing_radius: float
    rates: Rates
    safety: Safety
    policy: PolicyConfig
    events: tuple[Event, ...]
    routing: RoutingConfig | None = None
    warnings: tuple[Problem, ...] = ()
    source: str | None = field(default=None, compare=False)

    @property
    def robot_names(self) -> tuple[str, ...]:
        """Robot names in index order."""
        return tuple(r.name for r in self.robots)

    def robot_index(self, name: str) -> int:
        """Index of robot ``name`` in :attr:`robots` (raises ``KeyError`` naming the robots)."""
        for i, robot in enumerate(self.robots):
            if robot.name == name:
                return i
        raise KeyError(f"no robot named {name!r}; robots are {list(self.robot_names)}")

    def robot(self, name: str) -> RobotConfig:
        """The :class:`RobotConfig` named ``name``."""
        return self.robots[self.robot_index(name)]

    def consumer_index(self, name: str) -> int:
        """Index of consumer ``name`` in :attr:`consumers`."""
        for m, consumer in enumerate(self.consumers):
            if consumer.name == name:
                return m
        names = [c.name for c in self.consumers]
        raise KeyError(f"no consumer named {name!r}; consumers are {names}")

    def resource_index(self, name: str) -> int:
        """Column of resource type ``name`` in the supply/demand matrices."""
        try:
            return self.resource_types.index(name)
        except ValueError:
            raise KeyError(f"no resource type {name!r}; types are {self.resource_types}") from None

    def supply_matrix(self) -> np.ndarray:
        """``(N, R)`` initial supplies ``so`` [units], columns in :attr:`resource_types`."""
        out = np.zeros((len(self.robots), len(self.resource_types)))
        for i, robot in enumerate(self.robots):
            for k, name in enumerate(self.resource_types):
                if name in robot.resources:
                    out[i, k] = robot.resources[name].amount
        return out

    def demand_matrix(self) -> np.ndarray:
        """``(M, R)`` initial demands ``de`` [units], columns in :attr:`resource_types`."""
        out = np.zeros((len(self.consumers), len(self.resource_types)))
        for m, consumer in enumerate(self.consumers):
            for k, name in enumerate(self.resource_types):
                out[m, k] = consumer.demand.get(name, 0.0)
        return out

    def depletion_matrix(self) -> np.ndarray:
        """``(N, R)`` bool, True where the resource is persistent. A type has one depletion
        kind for the whole swarm, so a robot that lacks a type gets the type's kind."""
        kinds = self.type_depletion()
        row = np.array([kinds[name] == "persistent" for name in self.resource_types], dtype=bool)
        return np.tile(row, (len(self.robots), 1)).reshape(len(self.robots), -1)

    def type_depletion(self) -> dict[str, str]:
        """Resource type -> depletion kind (``instantaneous`` where no robot carries it)."""
        kinds = {name: "instantaneous" for name in self.resource_types}
        for robot in self.robots:
            for name, spec in robot.resources.items():
                kinds[name] = spec.depletion
        return kinds

    def resolve_checkpoint(self) -> Path | None:
        """Absolute path of the policy checkpoint, or ``None`` when there is no policy.

        ``"package:rel/path"`` resolves strictly inside the importable Python package (see
        :func:`resolve_package_path`); a plain path resolves against the swarm file's
        directory. Raises ``FileNotFoundError`` with one line (the candidates tried) when the
        file does not exist or a package path leaves its package.
        """
        ckpt = self.policy.checkpoint
        if ckpt is None:
            return None
        found = resolve_package_path(ckpt, "policy.checkpoint")
        if found is not None:
            return found
        base = Path(self.source).parent if self.source else Path.cwd()
        cand = Path(ckpt) if os.path.isabs(ckpt) else base / ckpt
        if _is_file(cand):
            return cand.resolve()
        raise FileNotFoundError(f"policy.checkpoint {ckpt!r} not found; tried {[str(cand)]}")

    def to_mapping(self) -> dict[str, Any]:
        """Plain-data form (fully expanded, no ``robot_types``) that :func:`load_config` accepts."""
        robots = []
        for r in self.robots:
            item: dict[str, Any] = {
                "name": r.name,
                "kind": r.kind,
                "backend": r.backend,
                "pose": list(r.pose),
                "radius": r.radius,
                "max_speed": r.max_speed,
                "max_yaw_rate": r.max_yaw_rate,
                "takeoff_height": r.takeoff_height,
                "resources": {
                    k: {"amount": s.amount, "depletion": s.depletion}
                    for k, s in r.resources.items()
                },
            }
            if r.kind == "ground":
                del item["takeoff_height"]
            for key in ("uri", "cmd_topic", "odom_topic", "mocap_topic"):
                if getattr(r, key) is not None:
                    item[key] = getattr(r, key)
            if r.battery is not None:
                item["battery"] = {
                    "warning_v": r.battery.warning_v,
                    "critical_v": r.battery.critical_v,
                }
            robots.append(item)
        events = []
        for e in self.events:
            item = {"t": e.t, "type": e.type}
            for key in ("robot", "consumer", "resource", "amount"):
                if getattr(e, key) is not None:
                    item[key] = getattr(e, key)
            events.append(item)
        return {
            "fileversion": self.fileversion,
            "seed": self.seed,
            "arena": {"x": list(self.arena.x), "y": list(self.arena.y), "z": list(self.arena.z)},
            "resource_types": list(self.resource_types),
            "comm_radius": self.comm_radius,
            "sensing_radius": self.sensing_radius,
            "rates": {
                "control_hz": self.rates.control_hz,
                "sim_hz": self.rates.sim_hz,
                "clock_hz": self.rates.clock_hz,
                "markers_hz": self.rates.markers_hz,
            },
            "safety": {
                "distance": self.safety.distance,
                "gamma": self.safety.gamma,
                "class_k": self.safety.class_k,
            },
            "policy": {"checkpoint": self.policy.checkpoint},
            "robots": robots,
            "consumers": [
                {
                    "name": c.name,
                    "position": list(c.position),
                    "radius": c.radius,
                    "demand": dict(c.demand),
                }
                for c in self.consumers
            ],
            "events": events,
            **({"routing": _routing_mapping(self.routing)} if self.routing else {}),
        }


def _routing_mapping(rc: RoutingConfig) -> dict[str, Any]:
    """The ``routing`` section of :meth:`SwarmConfig.to_mapping`: obstacles and tasks as
    explicit cells (map and random draws expanded)."""
    g = rc.grid
    return {
        "cell_size": g.cell_size,
        "origin": list(g.origin),
        "rows": g.rows,
        "cols": g.cols,
        "obstacles": np.argwhere(rc.obstacles).tolist(),
        "tasks": [list(t) for t in rc.tasks],
        "k": rc.k,
        "psi": rc.psi,
        "timing": rc.timing,
        "tolerance": rc.tolerance,
    }


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system, ...
        return False


def resolve_package_path(text: str, what: str = "path") -> Path | None:
    """The file that ``"package:relative/path"`` names inside an importable Python package.

    Returns ``None`` when ``text`` is not a package path (no ``package:`` prefix, or a
    one-letter prefix, i.e. a Windows drive). The relative part must stay inside the package:
    no absolute path, no ``..``, and no symbolic link that leads out of it.

    Args:
        text: e.g. ``"lgtc_policy:checkpoints/lgtc_ippo_n10_m4.pt"``.
        what: what ``text`` is, for the message (e.g. ``"policy.checkpoint"``).

    Raises:
        FileNotFoundError: one line naming ``text``, why, and the fix: the package is not
            importable, the path leaves the package, or the file does not exist.
    """
    pkg, sep, rel = text.partition(":")
    if not sep or len(pkg) < 2 or not NAME_RE.fullmatch(pkg):
        return None
    import importlib.util

    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{what} {text!r}: package {pkg!r} is not importable")
    relp = Path(rel)
    if not rel or relp.is_absolute() or ".." in relp.parts or rel.startswith(("/", "\\")):
        raise FileNotFoundError(
            f"{what} {text!r} leaves package {pkg!r}: write a path inside it "
            f"(e.g. {pkg}:checkpoints/x.pt) or a plain file path"
        )
    tried = []
    for loc in spec.submodule_search_locations:
        root = Path(loc).resolve()
        cand = root / relp
        tried.append(str(cand))
        if not _is_file(cand):
            continue
        real = cand.resolve()
        if not real.is_relative_to(root):
            raise FileNotFoundError(
                f"{what} {text!r} is a link out of package {pkg!r} (to {real}); "
                "name the file by its plain path instead"
            )
        return real
    raise FileNotFoundError(f"{what} {text!r} not found; tried {tried}")


def check_files(cfg: SwarmConfig) -> list[Problem]:
    """Problems with the files ``cfg`` names: ``policy.checkpoint`` must resolve to a file.

    Not part of :func:`load_config`, since a node may replace the checkpoint (its parameter)
    and ``swarm up --no-policy`` needs none; ``swarm validate`` runs it, then the validators
    of the installed mission packages, which check what the file holds.
    """
    try:
        cfg.resolve_checkpoint()
    except FileNotFoundError as exc:
        return [
            Problem(
                "policy.checkpoint",
                str(exc),
                "name an existing file: a path relative to the swarm file, or "
                "package:relative/path inside an installed package",
            )
        ]
    return []


def force_sim(cfg: SwarmConfig) -> SwarmConfig:
    """``cfg`` with every robot on ``backend: sim`` (dry run of a real-robot config)."""
    robots = tuple(
        replace(r, backend="sim", cmd_topic=None, odom_topic=None, mocap_topic=None)
        for r in cfg.robots
    )
    return replace(cfg, robots=robots)


# ----------------------------------------------------------------------------- validation


_MISSING = object()


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 30, 30
_REPR.maxlong = 30


def _describe(value: Any) -> str:
    """Short, bounded text of any value (safe on huge or alias-bomb YAML data)."""
    try:
        text = _REPR.repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


#: Stands in for a problem past :data:`MAX_PROBLEMS`: ``len(problems)`` still grows (callers
#: compare it before and after a check) while memory stays bounded.
_OMITTED = Problem("<root>", "", "")


class _Checker:
    """Collects problems while reading untrusted nested data; never raises."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.robot_paths: dict[str, str] = {}
        # names as written, valid or not, so one bad robot does not make events fail too
        self.declared: dict[str, list[Any]] = {"robots": [], "consumers": []}

    def unique(self) -> None:
        """Drop repeated problems (a bad ``robot_types`` entry is found once per robot) and
        count those past :data:`MAX_PROBLEMS` in one last problem."""
        kept = [p for p in self.problems if p is not _OMITTED]
        omitted = len(self.problems) - len(kept)
        self.problems = list(dict.fromkeys(kept))
        if omitted:
            self.problems.append(
                Problem(
                    "<root>",
                    f"at least {omitted} more problem(s) not listed",
                    "fix the problems above and validate again",
                )
            )
        self.warnings = list(dict.fromkeys(self.warnings))

    @property
    def full(self) -> bool:
        """True once :data:`MAX_PROBLEMS` problems are recorded (skip costly hints then)."""
        return len(self.problems) >= MAX_PROBLEMS

    def err(self, path: str, message: str, fix: str) -> None:
        self.problems.append(_OMITTED if self.full else Problem(path, message, fix))

    def warn(self, path: str, message: str, fix: str) -> None:
        self.warnings.append(Problem(path, message, fix))

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        """``value`` as a dict with string keys, reporting unknown keys; ``None`` if unusable.

        Past :data:`MAX_PROBLEMS` a mapping is not read (one omitted problem), so a file whose
        aliases repeat a bad mapping thousands of times still validates in O(entries)."""
        if self.full:
            self.err(path, "", "")
            return None
        if not isinstance(value, Mapping):
            self.err(
                path or "<root>",
                f"expected a mapping, got {_describe(value)}",
                "write `key: value` pairs",
            )
            return None
        if len(value) > MAX_KEYS:
            self.err(
                path or "<root>",
                f"{len(value)} keys, more than the limit of {MAX_KEYS}",
                f"write at most {MAX_KEYS} keys here",
            )
            return None
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.err(f"{path}", f"key {_describe(key)} is not a string", "use text keys")
                continue
            if key not in allowed:
                close = [] if self.full else difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"allowed: {', '.join(allowed)}"
                self.err(_join(path, key), "unknown key", f"remove it ({hint})")
                continue
            out[key] = item
        return out

    def number(
        self,
        value: Any,
        path: str,
        *,
        low: float | None = None,
        high: float | None = None,
        strict_low: bool = False,
        integer: bool = False,
    ) -> float | None:
        """A finite number within the bounds, or ``None`` after reporting."""
        if not _is_num(value):
            what = "an integer" if integer else "a number"
            self.err(path, f"expected {what}, got {_describe(value)}", f"write {what}")
            return None
        if integer and not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                self.err(path, f"expected an integer, got {value!r}", "write a whole number")
                return None
        if isinstance(value, float) and not math.isfinite(value):
            self.err(path, f"{value!r} is not finite", "write a finite number")
            return None
        if isinstance(value, int) and abs(value) > 1e300:
            self.err(path, "the number is too large", "write a realistic value")
            return None
        if low is not None and (value <= low if strict_low else value < low):
            rel = ">" if strict_low else ">="
            self.err(path, f"{value!r} is out of range", f"use a value {rel} {low}")
            return None
        if high is not None and value > high:
            self.err(path, f"{value!r} is out of range", f"use a value <= {high}")
            return None
        return value if integer else float(value)

    def string(
        self,
        value: Any,
        path: str,
        choices: tuple[str, ...] | None = None,
        max_len: int = MAX_TEXT_LEN,
    ) -> str | None:
        if not isinstance(value, str) or not value:
            self.err(path, f"expected a non-empty string, got {_describe(value)}", "write text")
            return None
        if len(value) > max_len:
            self.err(
                path,
                f"{_describe(value)} has {len(value)} characters, more than the limit of {max_len}",
                f"shorten it to at most {max_len} characters",
            )
            return None
        if choices is not None and value not in choices:
            close = [] if self.full else difflib.get_close_matches(value, choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.err(path, f"{value!r} is not one of {list(choices)}", f"use one of them{hint}")
            return None
        return value

    def name(self, value: Any, path: str) -> str | None:
        """A ROS name token: ``[A-Za-z][A-Za-z0-9_]*``, whole, at most :data:`MAX_NAME_LEN`."""
        text = self.string(value, path, max_len=MAX_NAME_LEN)
        if text is None:
            return None
        if not NAME_RE.fullmatch(text):
            self.err(
                path,
                f"{_describe(text)} is not a valid ROS name",
                "start with a letter; use only letters, digits and '_'",
            )
            return None
        return text

    def seq(self, value: Any, path: str) -> list[Any] | None:
        if not isinstance(value, list | tuple):
            self.err(path, f"expected a list, got {_describe(value)}", "write a YAML list")
            return None
        return list(value)

    def pair(self, value: Any, path: str) -> tuple[float, float] | None:
        items = self.seq(value, path)
        if items is None:
            return None
        if len(items) != 2:
            self.err(path, f"expected [min, max], got {len(items)} values", "write [min, max]")
            return None
        lo = self.number(items[0], f"{path}[0]")
        hi = self.number(items[1], f"{path}[1]")
        if lo is None or hi is None:
            return None
        if not lo < hi:
            self.err(path, f"min {lo} is not below max {hi}", "write [min, max] with min < max")
            return None
        return (lo, hi)


def _one_of(names: list) -> str:
    shown = [n for n in names if isinstance(n, str)][:8]
    more = " ..." if len(names) > len(shown) else ""
    return f"use one of {shown}{more}" if shown else "define it first"


def _join(path: str, key: str) -> str:
    if len(key) > MAX_NAME_LEN or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path or '<root>'}[{_describe(key)}]"
    return f"{path}.{key}" if path else key


def _read_source(source: Any) -> tuple[Any, str | None, list[Problem]]:
    """Turn a path / text / mapping into plain data. Returns (data, source_name, problems)."""
    if isinstance(source, Mapping):
        return source, None, []
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        try:
            with open(path, "rb") as fh:
                # read one byte past the limit: st_size is 0 for pipes and /proc files
                raw = fh.read(MAX_FILE_BYTES + 1)
            if len(raw) > MAX_FILE_BYTES:
                size = os.stat(path).st_size
                return None, path, [_file_too_large(path, max(size, len(raw)))]
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return (
                None,
                path,
                [Problem("<file>", f"cannot read {path}: {reason}", "check the path")],
            )
        data, problems = parse_yaml(text)
        return data, str(Path(path).resolve()), problems
    return (
        None,
        None,
        [
            Problem(
                "<root>", f"expected a file path or a mapping, got {_describe(source)}", "pass one"
            )
        ],
    )


def _file_too_large(path: str, size: int) -> Problem:
    return Problem(
        "<file>",
        f"{path} is {size / 2**20:.1f} MiB, more than the limit of "
        f"{MAX_FILE_BYTES / 2**20:g} MiB for a swarm file",
        f"a swarm file holds at most {MAX_ROBOTS} robots and {MAX_CONSUMERS} consumers "
        "(about 0.3 MiB written out in full); remove robots or consumers, or split the mission",
    )


#: libyaml's safe loader when PyYAML has it (four times faster than PyYAML's own): plain
#: Python data only, and an alias is one shared object, not a copy, so an alias bomb ("billion
#: laughs") costs no memory (the checks never expand it). Its composer recurses in C and
#: overflows the stack on deep nesting (``"- " * 200000`` kills the process), so the event
#: stream, which both parsers produce without recursion, is checked for depth first.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Nesting levels of collections (a swarm file has about 6).
MAX_NESTING = 50


def parse_yaml(text: str) -> tuple[Any, list[Problem]]:
    """Parse YAML text safely; a syntax error becomes one :class:`Problem` with its line.

    Text longer than :data:`MAX_FILE_BYTES` is refused before parsing, and text nested deeper
    than :data:`MAX_NESTING` before building any data.
    """
    size = len(text) if len(text) > MAX_FILE_BYTES else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        return None, [_file_too_large("the YAML text", size)]
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_SAFE_LOADER):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    return None, [
                        Problem(
                            "<yaml>",
                            f"lists and mappings nest deeper than {MAX_NESTING} levels "
                            f"(line {line})",
                            "flatten the file: a swarm file nests about 6 levels",
                        )
                    ]
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_SAFE_LOADER), []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [Problem("<yaml>", f"YAML syntax error at {where}: {reason}", "fix the YAML")]
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        return None, [Problem("<yaml>", f"unreadable YAML: {exc}", "fix the YAML")]


def load_config(source: str | os.PathLike | Mapping[str, Any]) -> SwarmConfig:
    """Parse and validate a swarm file (path) or already-parsed mapping.

    Raises:
        ConfigError: listing every problem (key path, message, fix).
    """
    data, name, problems = _read_source(source)
    if problems:
        raise ConfigError(problems, name)
    try:
        cfg, checker = _build(data, Path(name).parent if name else None)
    except RecursionError:
        raise ConfigError(
            [Problem("<root>", "data nested too deeply", "flatten the file")], name
        ) from None
    if checker.problems:
        raise ConfigError(checker.problems, name)
    assert cfg is not None
    return SwarmConfig(**{**cfg.__dict__, "source": name})


def validate(source: str | os.PathLike | Mapping[str, Any]) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings) of a swarm file without raising."""
    try:
        cfg = load_config(source)
    except ConfigError as exc:
        return exc.problems, []
    return [], list(cfg.warnings)


def _build(data: Any, base: Path | None = None) -> tuple[SwarmConfig | None, _Checker]:
    """Validate plain data; ``base`` is the directory relative file paths start from (the swarm
    file's; the working directory for a mapping)."""
    c = _Checker()
    top = c.mapping(data, "", _TOP_KEYS) if data is not None else None
    if data is None:
        c.err("<root>", "the file is empty", "start from launch/example.yaml")
    if top is None:
        return None, c
    if not _within_count_limits(c, top):
        # one line per list over its limit, in O(1): the lists are not read at all
        return None, c

    fileversion = top.get("fileversion", _MISSING)
    if fileversion is _MISSING:
        c.err("fileversion", "missing", f"add `fileversion: {FILEVERSION}`")
    elif fileversion != FILEVERSION or isinstance(fileversion, bool):
        c.err("fileversion", f"unsupported version {_describe(fileversion)}", f"use {FILEVERSION}")

    seed = 0
    if "seed" in top:
        seed = c.number(top["seed"], "seed", low=0, high=2**63 - 1, integer=True)

    arena = _arena(c, top.get("arena", _MISSING))
    # a routing mission derives both radii from routing.k (checked in _routing_radii)
    has_routing = top.get("routing") is not None
    comm_radius = _positive(c, top, "comm_radius", 1.0 if has_routing else None)
    sensing_radius = _positive(c, top, "sensing_radius", 1.0)
    rates = _rates(c, top.get("rates", {}))
    safety = _safety(c, top.get("safety", {}))
    policy = _policy(c, top.get("policy", {}))

    declared_types = None
    if "resource_types" in top:
        items = c.seq(top["resource_types"], "resource_types")
        if items is not None:
            declared_types = []
            for k, item in enumerate(items):
                nm = c.name(item, f"resource_types[{k}]")
                if nm is not None:
                    if nm in declared_types:
                        c.err(f"resource_types[{k}]", f"duplicate type {nm!r}", "list it once")
                    else:
                        declared_types.append(nm)

    types = _robot_types(c, top.get("robot_types", {}))
    robots = _robots(c, top.get("robots", _MISSING), types, arena)
    consumers = _consumers(c, top.get("consumers", []), arena)

    used = sorted(
        {k for r in robots for k in r.resources} | {k for m in consumers for k in m.demand}
    )
    if len(used) > MAX_RESOURCE_TYPES:
        c.err(
            "resource_types",
            f"robots and consumers use {len(used)} resource types, more than the limit of "
            f"{MAX_RESOURCE_TYPES}",
            f"use at most {MAX_RESOURCE_TYPES} types",
        )
        c.unique()
        return None, c
    if declared_types is None:
        resource_types = tuple(used)
    else:
        resource_types = tuple(declared_types)
        for r in robots:
            for k in r.resources:
                if k not in declared_types:
                    c.err(
                        f"{c.robot_paths[r.name]}.resources.{k}",
                        f"resource type {k!r} is not in resource_types",
                        f"add it to resource_types or use one of {declared_types}",
                    )
        for m, cons in enumerate(consumers):
            for k in cons.demand:
                if k not in declared_types:
                    c.err(
                        f"consumers[{m}].demand.{k}",
                        f"resource type {k!r} is not in resource_types",
                        f"add it to resource_types or use one of {declared_types}",
                    )

    _check_depletion(c, robots)
    _check_robot_geometry(c, robots, arena)
    _check_consumer_geometry(c, consumers)
    events = _events(c, top.get("events", []), robots, consumers, resource_types)
    if safety is not None and robots:
        radii = sorted((r.radius for r in robots), reverse=True)
        need = radii[0] + (radii[1] if len(radii) > 1 else radii[0])
        if safety.distance < need - 1e-9:
            c.warn(
                "safety.distance",
                f"{safety.distance} m is below the sum of the two largest body radii ({need} m)",
                "raise it so the CBF keeps bodies apart",
            )
    if (
        not has_routing
        and comm_radius is not None
        and sensing_radius is not None
        and sensing_radius > comm_radius
    ):
        c.warn(
            "sensing_radius",
            f"{sensing_radius} m exceeds comm_radius {comm_radius} m",
            "usually sensing_radius <= comm_radius",
        )
    _check_supply(c, robots, consumers, resource_types)
    routing = None
    if has_routing and arena is not None:
        routing = _routing(c, top["routing"], arena, robots, base, int(seed or 0))
        if routing is not None:
            comm_radius, sensing_radius = _routing_radii(
                c, top, routing, comm_radius, sensing_radius
            )

    c.unique()
    if c.problems:
        return None, c
    assert arena is not None and rates is not None and safety is not None and policy is not None
    cfg = SwarmConfig(
        fileversion=FILEVERSION,
        seed=int(seed),
        arena=arena,
        resource_types=resource_types,
        robots=tuple(robots),
        consumers=tuple(consumers),
        comm_radius=float(comm_radius),
        sensing_radius=float(sensing_radius),
        rates=rates,
        safety=safety,
        policy=policy,
        events=tuple(events),
        routing=routing,
        warnings=tuple(c.warnings),
    )
    return cfg, c


def _within_count_limits(c: _Checker, top: dict[str, Any]) -> bool:
    """Report each top-level list longer than its limit; False if any is."""
    ok = True
    for key, limit, what in (
        ("robots", MAX_ROBOTS, "robots"),
        ("consumers", MAX_CONSUMERS, "consumers"),
        ("events", MAX_EVENTS, "events"),
        ("resource_types", MAX_RESOURCE_TYPES, "resource types"),
    ):
        items = top.get(key)
        if isinstance(items, list | tuple) and len(items) > limit:
            c.err(
                key,
                f"{len(items)} {what}, more than the limit of {limit} per swarm file",
                f"list at most {limit} {what} (sim_bridge.config.MAX_{key.upper()})",
            )
            ok = False
    return ok


def _positive(c: _Checker, top: dict, key: str, default: float | None) -> float | None:
    if key not in top:
        if default is None:
            c.err(key, "missing", f"add `{key}: <metres>`")
        return default
    return c.number(top[key], key, low=0.0, strict_low=True)


def _arena(c: _Checker, value: Any) -> Arena | None:
    if value is _MISSING:
        c.err("arena", "missing", "add `arena: {x: [-2, 2], y: [-2, 2], z: [0, 2]}`")
        return None
    m = c.mapping(value, "arena", ("x", "y", "z"))
    if m is None:
        return None
    out = {}
    for axis in ("x", "y"):
        if axis not in m:
            c.err(f"arena.{axis}", "missing", f"add `{axis}: [min, max]` in metres")
            continue
        out[axis] = c.pair(m[axis], f"arena.{axis}")
    out["z"] = c.pair(m["z"], "arena.z") if "z" in m else (0.0, 2.0)
    if out["z"] is not None and out["z"][0] < 0.0:
        c.err("arena.z", f"floor {out['z'][0]} is below 0", "the floor is z = 0; use [0, ceiling]")
        return None
    if any(out.get(a) is None for a in ("x", "y", "z")):
        return None
    return Arena(out["x"], out["y"], out["z"])


def _fill(c: _Checker, value: Any, path: str, cls: type, checks: dict[str, dict]) -> Any:
    m = c.mapping(value, path, tuple(checks))
    if m is None:
        return None
    kwargs = {}
    ok = True
    for key, spec in checks.items():
        if key not in m:
            continue
        if "choices" in spec:
            got = c.string(m[key], f"{path}.{key}", spec["choices"])
        elif spec.get("nullable") and m[key] is None:
            kwargs[key] = None
            continue
        elif spec.get("text"):
            got = c.string(m[key], f"{path}.{key}")
        else:
            got = c.number(m[key], f"{path}.{key}", low=0.0, strict_low=True)
        if got is None:
            ok = False
        else:
            kwargs[key] = got
    return cls(**kwargs) if ok else None


def _rates(c: _Checker, value: Any) -> Rates | None:
    pos: dict[str, dict] = {"control_hz": {}, "sim_hz": {}, "clock_hz": {}, "markers_hz": {}}
    rates = _fill(c, value, "rates", Rates, pos)
    if rates is None:
        return None
    if rates.sim_hz < rates.control_hz:
        c.err(
            "rates.sim_hz",
            f"{rates.sim_hz} Hz is below control_hz {rates.control_hz} Hz",
            "step the simulator at least as fast as the controllers",
        )
        return None
    if rates.sim_hz > 2000.0:
        c.err("rates.sim_hz", f"{rates.sim_hz} Hz is unrealistic", "use <= 2000 Hz")
        return None
    if rates.clock_hz > rates.sim_hz:
        c.warn("rates.clock_hz", "is above sim_hz; /clock is published at most once a step", "")
    return rates


def _safety(c: _Checker, value: Any) -> Safety | None:
    return _fill(
        c,
        value,
        "safety",
        Safety,
        {"distance": {}, "gamma": {}, "class_k": {"choices": CLASS_K}},
    )


def _policy(c: _Checker, value: Any) -> PolicyConfig | None:
    if value is None:
        return PolicyConfig()
    return _fill(c, value, "policy", PolicyConfig, {"checkpoint": {"nullable": True, "text": True}})


def _robot_types(c: _Checker, value: Any) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    m = c.mapping(value, "robot_types", tuple(value) if isinstance(value, Mapping) else ())
    if m is None:
        return {}
    out = {}
    for tname, body in m.items():
        path = _join("robot_types", tname)
        if c.name(tname, path) is None:
            continue
        fields = c.mapping(body, path, _ROBOT_FIELDS)
        if fields is not None:
            out[tname] = fields
    return out


def _resources(
    c: _Checker, value: Any, path: str, origin: dict[str, str] | None = None
) -> dict[str, ResourceSpec] | None:
    """Resource specs; ``origin`` maps a type to the path it came from (robot or its type)."""
    if value is None:
        return {}
    allowed = tuple(k for k in value if isinstance(k, str)) if isinstance(value, Mapping) else ()
    m = c.mapping(value, path, allowed)
    if m is None:
        return None
    out = {}
    for rname, spec in m.items():
        rpath = _join((origin or {}).get(rname, path), rname)
        if c.name(rname, rpath) is None:
            continue
        if _is_num(spec):
            c.err(
                rpath,
                "a bare number does not say how the resource depletes",
                f"write `{rname}: {{amount: {spec}, depletion: persistent|instantaneous}}`",
            )
            continue
        if isinstance(spec, Mapping) and "rate" in spec:
            c.err(
                f"{rpath}.rate",
                "resources are not drained at a rate: a persistent supply covers the demand "
                "while the robot stays inside R_m and is never consumed (LGTC Sec. II)",
                "remove `rate`; model a battery running out with a `discharge` event",
            )
            spec = {k: v for k, v in spec.items() if k != "rate"}
        fields = c.mapping(spec, rpath, ("amount", "depletion"))
        if fields is None:
            continue
        if "amount" not in fields:
            c.err(f"{rpath}.amount", "missing", "add `amount: <units>` (>= 0)")
            continue
        if "depletion" not in fields:
            c.err(f"{rpath}.depletion", "missing", "add `depletion: persistent|instantaneous`")
            continue
        amount = c.number(fields["amount"], f"{rpath}.amount", low=0.0)
        depletion = c.string(fields["depletion"], f"{rpath}.depletion", DEPLETIONS)
        if amount is not None and depletion is not None:
            out[rname] = ResourceSpec(amount, depletion)
    return out


def _robots(c: _Checker, value: Any, types: dict, arena: Arena | None) -> list[RobotConfig]:
    if value is _MISSING:
        c.err("robots", "missing", "add a `robots:` list")
        return []
    items = c.seq(value, "robots")
    if items is None:
        return []
    if not items:
        c.err("robots", "the list is empty", "add at least one robot")
    out = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        path = f"robots[{i}]"
        m = c.mapping(item, path, ("name", "type", "pose", *_ROBOT_FIELDS))
        if m is None:
            continue
        c.declared["robots"].append(m.get("name"))
        raw = m.get("name")
        if isinstance(raw, str) and raw in seen:
            c.err(
                f"{path}.name",
                f"duplicate name {raw!r} (also robots[{seen[raw]}])",
                "give every robot a unique name",
            )
            continue
        if isinstance(raw, str):
            seen[raw] = i
        robot = _robot(c, m, path, types, arena)
        if robot is None:
            continue
        c.robot_paths[robot.name] = path
        out.append(robot)
    return out


def _robot(c: _Checker, m: dict, path: str, types: dict, arena: Arena | None) -> RobotConfig | None:
    n_before = len(c.problems)
    if "name" not in m:
        c.err(f"{path}.name", "missing", "add `name: cf1` (letters, digits, '_')")
        return None
    name = c.name(m["name"], f"{path}.name")
    if name is not None and name in RESERVED_NAMES:
        c.err(f"{path}.name", f"{name!r} is reserved", f"pick a name other than {RESERVED_NAMES}")
    base: dict[str, Any] = {}
    if "type" in m:
        tname = m["type"]
        if not isinstance(tname, str) or tname not in types:
            known = sorted(types) or ["(none defined)"]
            c.err(f"{path}.type", f"unknown robot type {_describe(tname)}", f"use one of {known}")
            return None
        else:
            base = dict(types[tname])
    merged = {**base, **{k: v for k, v in m.items() if k in _ROBOT_FIELDS}}
    if isinstance(base.get("resources"), Mapping) and isinstance(m.get("resources"), Mapping):
        merged["resources"] = {**base["resources"], **m["resources"]}
    src = {k: (f"{path}.{k}" if k in m else f"robot_types.{m.get('type')}.{k}") for k in merged}

    if "kind" not in merged:
        c.err(f"{path}.kind", "missing", f"set `kind: {'|'.join(KINDS)}` on the robot or its type")
        return None
    kind = c.string(merged["kind"], src["kind"], KINDS)
    if kind is None:
        return None
    backend = "sim"
    if "backend" in merged:
        backend = c.string(merged["backend"], src["backend"], BACKENDS[kind])
    defaults = KIND_DEFAULTS[kind]
    nums = {}
    for key in ("radius", "max_speed", "max_yaw_rate"):
        if key in merged:
            nums[key] = c.number(merged[key], src[key], low=0.0, strict_low=True)
        else:
            nums[key] = defaults[key]
    if "takeoff_height" in merged:
        if kind == "ground":
            c.err(src["takeoff_height"], "ground robots do not take off", "remove takeoff_height")
            nums["takeoff_height"] = 0.0
        else:
            nums["takeoff_height"] = c.number(
                merged["takeoff_height"], src["takeoff_height"], low=0.0, strict_low=True
            )
    else:
        nums["takeoff_height"] = defaults["takeoff_height"]
    if (
        kind == "crazyflie"
        and arena is not None
        and nums["takeoff_height"] is not None
        and nums["takeoff_height"] > arena.z[1]
    ):
        c.err(
            src.get("takeoff_height", f"{path}.takeoff_height"),
            f"{nums['takeoff_height']} m is above the arena ceiling {arena.z[1]} m",
            "lower it or raise arena.z",
        )

    pose = None
    if "pose" not in m:
        c.err(f"{path}.pose", "missing", "add `pose: [x, y, z, yaw]` (m, m, m, rad)")
    else:
        pose = _pose(c, m["pose"], f"{path}.pose", arena)

    uri = None
    if "uri" in merged and merged["uri"] is not None:
        uri = c.string(merged["uri"], src["uri"])
        if uri is not None and not URI_RE.fullmatch(uri):
            c.err(
                src["uri"],
                f"{_describe(uri)} is not a Crazyflie URI",
                "e.g. radio://0/80/2M/E7E7E7E701",
            )
    if backend == "cflib" and uri is None and "uri" not in merged:
        c.err(
            f"{path}.uri", "a cflib robot needs a radio URI", "add uri: radio://0/80/2M/E7E7E7E7xx"
        )
    topics = {}
    for key in ("cmd_topic", "odom_topic", "mocap_topic"):
        topics[key] = None
        if key in merged and merged[key] is not None:
            topics[key] = c.string(merged[key], src[key], max_len=MAX_TOPIC_LEN)
            if topics[key] is not None and not TOPIC_RE.fullmatch(topics[key]):
                c.err(
                    src[key],
                    f"{_describe(topics[key])} is not a valid topic name",
                    "e.g. /robot1/odom",
                )
    if backend == "external":
        for key in ("cmd_topic", "odom_topic"):
            if topics[key] is None and key not in merged:
                c.err(f"{path}.{key}", "an external robot needs it", f"add `{key}: /<driver>/...`")
    elif backend == "sim":
        for key in ("cmd_topic", "odom_topic"):
            if topics[key] is not None:
                c.err(src[key], "only used by backend external", f"remove {key}")

    origin = {}
    if isinstance(base.get("resources"), Mapping):
        origin = {k: f"robot_types.{m.get('type')}.resources" for k in base["resources"]}
    if isinstance(m.get("resources"), Mapping):
        origin.update({k: f"{path}.resources" for k in m["resources"]})
    resources = _resources(c, merged.get("resources", {}), src.get("resources", path), origin)
    battery = None
    if "battery" in merged and merged["battery"] is not None:
        battery = _fill(
            c, merged["battery"], src["battery"], BatteryConfig, {"warning_v": {}, "critical_v": {}}
        )
        if battery is not None and battery.critical_v >= battery.warning_v:
            c.err(src["battery"], "critical_v must be below warning_v", "e.g. 3.5 / 3.2 V")
        if backend != "cflib" and "battery" in m:
            c.warn(f"{path}.battery", "only cflib robots read a battery", "remove it")
    if len(c.problems) > n_before or name is None or backend is None or resources is None:
        return None
    if pose is None or any(v is None for v in nums.values()):
        return None
    return RobotConfig(
        name=name,
        kind=kind,
        backend=backend,
        uri=uri,
        pose=pose,
        radius=nums["radius"],
        max_speed=nums["max_speed"],
        max_yaw_rate=nums["max_yaw_rate"],
        takeoff_height=nums["takeoff_height"],
        resources=resources,
        battery=battery,
        cmd_topic=topics["cmd_topic"],
        odom_topic=topics["odom_topic"],
        mocap_topic=topics["mocap_topic"],
    )


def _pose(
    c: _Checker, value: Any, path: str, arena: Arena | None
) -> tuple[float, float, float, float] | None:
    items = c.seq(value, path)
    if items is None:
        return None
    if not 2 <= len(items) <= 4:
        c.err(path, f"expected 2 to 4 values, got {len(items)}", "write [x, y, z, yaw]")
        return None
    vals = [c.number(v, f"{path}[{k}]") for k, v in enumerate(items)]
    if any(v is None for v in vals):
        return None
    vals = vals + [0.0] * (4 - len(vals))
    x, y, z, yaw = (float(v) for v in vals)
    if arena is not None:
        if not arena.contains_xy(x, y):
            c.err(
                path,
                f"({x}, {y}) is outside the arena x {list(arena.x)}, y {list(arena.y)}",
                "move the robot inside the arena or enlarge it",
            )
            return None
        if not arena.z[0] <= z <= arena.z[1]:
            c.err(f"{path}[2]", f"z = {z} is outside arena.z {list(arena.z)}", "start on the floor")
            return None
    return (x, y, z, yaw)


def _consumers(c: _Checker, value: Any, arena: Arena | None) -> list[ConsumerConfig]:
    if value is None:
        return []
    items = c.seq(value, "consumers")
    if items is None:
        return []
    out = []
    seen: dict[str, int] = {}
    for m_idx, item in enumerate(items):
        path = f"consumers[{m_idx}]"
        m = c.mapping(item, path, ("name", "position", "radius", "demand"))
        if m is None:
            continue
        c.declared["consumers"].append(m.get("name"))
        n_before = len(c.problems)
        name = None
        if "name" not in m:
            c.err(f"{path}.name", "missing", "add `name: c1`")
        else:
            name = c.name(m["name"], f"{path}.name")
        if name is not None and name in seen:
            c.err(f"{path}.name", f"duplicate name {name!r}", "give every consumer a unique name")
        position = None
        if "position" not in m:
            c.err(f"{path}.position", "missing", "add `position: [x, y]` in metres")
        else:
            items2 = c.seq(m["position"], f"{path}.position")
            if items2 is not None:
                if len(items2) != 2:
                    c.err(f"{path}.position", f"expected [x, y], got {len(items2)}", "write [x, y]")
                else:
                    xs = [c.number(v, f"{path}.position[{k}]") for k, v in enumerate(items2)]
                    if None not in xs:
                        position = (float(xs[0]), float(xs[1]))
                        if arena is not None and not arena.contains_xy(*position):
                            c.err(
                                f"{path}.position",
                                f"{list(position)} is outside the arena x {list(arena.x)}, "
                                f"y {list(arena.y)}",
                                "move the consumer inside the arena",
                            )
        radius = None
        if "radius" not in m:
            c.err(f"{path}.radius", "missing", "add `radius: <metres>` (interaction radius R_m)")
        else:
            radius = c.number(m["radius"], f"{path}.radius", low=0.0, strict_low=True)
        demand: dict[str, float] = {}
        if "demand" not in m:
            c.err(f"{path}.demand", "missing", "add `demand: {type: amount}`")
        else:
            dm = m["demand"]
            allowed = tuple(k for k in dm if isinstance(k, str)) if isinstance(dm, Mapping) else ()
            dmap = c.mapping(dm, f"{path}.demand", allowed)
            for rname, amount in (dmap or {}).items():
                rpath = _join(f"{path}.demand", rname)
                if c.name(rname, rpath) is None:
                    continue
                val = c.number(amount, rpath, low=0.0)
                if val is not None:
                    demand[rname] = val
        if len(c.problems) > n_before:
            continue
        seen[name] = m_idx
        out.append(ConsumerConfig(name, position, radius, demand))
    return out


def _check_depletion(c: _Checker, robots: list[RobotConfig]) -> None:
    first: dict[str, tuple[str, str]] = {}
    for robot in robots:
        for rname, spec in robot.resources.items():
            if rname not in first:
                first[rname] = (spec.depletion, robot.name)
            elif first[rname][0] != spec.depletion:
                kind, other = first[rname]
                c.err(
                    f"{c.robot_paths[robot.name]}.resources.{rname}.depletion",
                    f"{rname!r} is {spec.depletion} here but {kind} on robot {other!r}",
                    "a resource type has one depletion kind; make them equal",
                )


def overlapping_pairs(
    points: np.ndarray, radii: np.ndarray, max_pairs: int | None = None
) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, of bodies that overlap: ``|p_i - p_j|^2 < (r_i + r_j)^2``.

    A uniform grid hash: cells of side a little over ``2 * max(radii)``, so two overlapping
    bodies lie in the same or in adjacent cells, and only those candidates are compared,
    ``_BLOCK x _BLOCK`` distances at a time. Time O(N + candidates) (O(N) for bodies spread
    as a swarm's start poses are), memory O(N + _BLOCK^2): never an ``N x N`` array.

    Args:
        points: ``(N, d)`` centres [m] (finite).
        radii: ``(N,)`` body radii [m], > 0.
        max_pairs: stop once this many pairs are found (``None``: find them all).

    Returns:
        ``(K, 2)`` int64 array of ``(i, j)``, sorted.
    """
    pts = np.asarray(points, dtype=float)
    rad = np.asarray(radii, dtype=float)
    n, dim = pts.shape
    if n < 2:
        return np.empty((0, 2), np.int64)
    low = pts.min(axis=0)
    span = float((pts.max(axis=0) - low).max())
    # 1 % over the largest reach keeps a pair that overlaps within one cell of each other
    # despite rounding; at most 2**40 cells a side keeps cell indices exact in a float.
    side = max(2.0 * float(rad.max()) * 1.01, span / 2.0**40)
    if not side > 0.0:  # all radii 0 and one point: nothing can overlap
        side = 1.0
    keys = np.floor((pts - low) / side) if math.isfinite(side) else np.zeros_like(pts)
    cells: dict[tuple[float, ...], list[int]] = {}
    for i, key in enumerate(map(tuple, keys.tolist())):
        cells.setdefault(key, []).append(i)
    # half of the neighbour offsets, so each pair of adjacent cells is visited once
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=dim) if o > (0,) * dim]
    found: list[np.ndarray] = []
    total = 0
    for key, members in cells.items():
        own = np.asarray(members, np.int64)
        blocks = [(own, own)]
        for off in offsets:
            other = cells.get(tuple(k + d for k, d in zip(key, off)))
            if other is not None:
                blocks.append((own, np.asarray(other, np.int64)))
        for a_all, b_all in blocks:
            same = a_all is b_all
            for s in range(0, len(a_all), _BLOCK):
                a = a_all[s : s + _BLOCK]
                for t in range(s if same else 0, len(b_all), _BLOCK):
                    b = b_all[t : t + _BLOCK]
                    d2 = np.zeros((len(a), len(b)))
                    for k in range(dim):
                        d2 += (pts[a, k][:, None] - pts[b, k][None, :]) ** 2
                    hit = d2 < (rad[a][:, None] + rad[b][None, :]) ** 2
                    if same:
                        hit &= a[:, None] < b[None, :]
                    ii, jj = np.nonzero(hit)
                    if len(ii):
                        pa, pb = a[ii], b[jj]
                        found.append(np.stack([np.minimum(pa, pb), np.maximum(pa, pb)], axis=1))
                        total += len(ii)
                        if max_pairs is not None and total >= max_pairs:
                            return _sorted_pairs(found)[:max_pairs]
    return _sorted_pairs(found)


_BLOCK = 512


def _sorted_pairs(found: list[np.ndarray]) -> np.ndarray:
    if not found:
        return np.empty((0, 2), np.int64)
    pairs = np.concatenate(found)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def _check_robot_geometry(c: _Checker, robots: list[RobotConfig], arena: Arena | None) -> None:
    if len(robots) < 2:
        return
    pos = np.array([r.pose[:3] for r in robots])
    rad = np.array([r.radius for r in robots])
    pairs = overlapping_pairs(pos, rad, max_pairs=MAX_OVERLAPS_LISTED + 1)
    for i, j in pairs[:MAX_OVERLAPS_LISTED].tolist():
        c.err(
            f"{c.robot_paths[robots[j].name]}.pose",
            f"{robots[j].name!r} overlaps {robots[i].name!r} at start "
            f"(centres {float(np.linalg.norm(pos[i] - pos[j])):.3f} m apart, "
            f"radii {rad[i]} + {rad[j]} m)",
            "move one of them",
        )
    if len(pairs) > MAX_OVERLAPS_LISTED:
        c.err(
            "robots",
            f"more than {MAX_OVERLAPS_LISTED} pairs of robots overlap at start; the first "
            f"{MAX_OVERLAPS_LISTED} are listed",
            "spread the start poses out",
        )


def _check_consumer_geometry(c: _Checker, consumers: list[ConsumerConfig]) -> None:
    if len(consumers) < 2:
        return
    pos = np.array([m.position for m in consumers])
    rad = np.array([m.radius for m in consumers])
    pairs = overlapping_pairs(pos, rad, max_pairs=MAX_OVERLAPS_LISTED + 1)
    for a, b in pairs[:MAX_OVERLAPS_LISTED].tolist():
        c.warn(
            f"consumers[{b}].position",
            f"interaction area overlaps consumer {consumers[a].name!r}; a robot inside both "
            "serves the nearer one",
            "move them apart if that is not intended",
        )
    if len(pairs) > MAX_OVERLAPS_LISTED:
        c.warn(
            "consumers",
            f"more than {MAX_OVERLAPS_LISTED} pairs of consumer areas overlap; the first "
            f"{MAX_OVERLAPS_LISTED} are listed",
            "move them apart if that is not intended",
        )


def _events(
    c: _Checker,
    value: Any,
    robots: list[RobotConfig],
    consumers: list[ConsumerConfig],
    resource_types: tuple[str, ...],
) -> list[Event]:
    if value is None:
        return []
    items = c.seq(value, "events")
    if items is None:
        return []
    robot_names = c.declared["robots"]
    consumer_names = c.declared["consumers"]
    # sets for the look-ups (E x N list scans are slow at the limits); names as written
    robot_set = {n for n in robot_names if isinstance(n, str)}
    consumer_set = {n for n in consumer_names if isinstance(n, str)}
    out = []
    for k, item in enumerate(items):
        path = f"events[{k}]"
        if not isinstance(item, Mapping):
            c.mapping(item, path, ())
            continue
        etype = item.get("type", _MISSING)
        if etype is _MISSING:
            c.err(f"{path}.type", "missing", f"add `type: {'|'.join(EVENT_TYPES)}`")
            continue
        etype = c.string(etype, f"{path}.type", EVENT_TYPES)
        if etype is None:
            continue
        m = c.mapping(item, path, _EVENT_KEYS[etype])
        if m is None:
            continue
        n_before = len(c.problems)
        kwargs: dict[str, Any] = {"type": etype}
        for key in _EVENT_KEYS[etype]:
            if key != "type" and key not in m:
                c.err(f"{path}.{key}", "missing", f"a {etype} event needs `{key}`")
        if "t" in m:
            kwargs["t"] = c.number(m["t"], f"{path}.t", low=0.0)
        if "robot" in m and not (isinstance(m["robot"], str) and m["robot"] in robot_set):
            c.err(f"{path}.robot", f"unknown robot {_describe(m['robot'])}", _one_of(robot_names))
        elif "robot" in m:
            kwargs["robot"] = m["robot"]
        if "consumer" in m and not (
            isinstance(m["consumer"], str) and m["consumer"] in consumer_set
        ):
            c.err(
                f"{path}.consumer",
                f"unknown consumer {_describe(m['consumer'])}",
                _one_of(consumer_names),
            )
        elif "consumer" in m:
            kwargs["consumer"] = m["consumer"]
        if "resource" in m and m["resource"] not in resource_types:
            c.err(
                f"{path}.resource",
                f"unknown resource type {_describe(m['resource'])}",
                f"use one of {list(resource_types)}",
            )
        elif "resource" in m:
            kwargs["resource"] = m["resource"]
        if "amount" in m:
            kwargs["amount"] = c.number(m["amount"], f"{path}.amount", low=0.0)
        if len(c.problems) == n_before:
            out.append(Event(**kwargs))
    out.sort(key=lambda e: e.t)
    return out


def _check_supply(
    c: _Checker,
    robots: list[RobotConfig],
    consumers: list[ConsumerConfig],
    resource_types: tuple[str, ...],
) -> None:
    supply = {
        k: sum(r.resources[k].amount for r in robots if k in r.resources) for k in resource_types
    }
    demand = {k: sum(m.demand.get(k, 0.0) for m in consumers) for k in resource_types}
    for k in resource_types:
        if demand[k] > 0 and supply[k] == 0:
            c.warn(
                f"consumers.demand.{k}",
                f"consumers demand {k!r} but no robot carries it",
                "give some robot that resource",
            )
    total_s, total_d = sum(supply.values()), sum(demand.values())
    if total_s > total_d + 1e-12:
        per = ", ".join(
            f"{k}: {supply[k]:g} > {demand[k]:g}" for k in resource_types if supply[k] > demand[k]
        )
        c.warn(
            "robots.resources",
            f"total supply {total_s:g} exceeds total demand {total_d:g} ({per}); the LGTC paper "
            "(Sec. II) assumes sum of supplies <= sum of demands for a unique allocation",
            "lower the supplies or raise the demands",
        )


# ----------------------------------------------------------------------------- routing


def _routing_radii(
    c: _Checker,
    top: dict[str, Any],
    rc: RoutingConfig,
    comm_radius: float | None,
    sensing_radius: float | None,
) -> tuple[float, float]:
    """``comm_radius`` and ``sensing_radius`` of a routing mission: both are derived from
    ``routing.k`` (:func:`routing_comm_radius`); a file that sets another value is rejected,
    so the cells of the view and the metres of the relay and ``/neighbors`` never disagree."""
    derived = rc.comm_radius
    for key, value in (("comm_radius", comm_radius), ("sensing_radius", sensing_radius)):
        if key in top and value is not None and abs(value - derived) > 1e-9 * max(1.0, derived):
            c.err(
                key,
                f"{value} m conflicts with the routing section: a routing mission derives it "
                f"from routing.k = {rc.k} cells of {rc.grid.cell_size} m ({derived:.6g} m, every "
                "robot a view can show)",
                f"remove `{key}` (it is derived), or change routing.k",
            )
    return derived, derived


def _routing(
    c: _Checker, value: Any, arena: Arena, robots: list[RobotConfig], base: Path | None, seed: int
) -> RoutingConfig | None:
    """The ``routing`` section (see :class:`RoutingConfig`), checked against the arena and the
    robots' start poses; ``None`` after reporting its problems."""
    m = c.mapping(value, "routing", _ROUTING_KEYS)
    if m is None:
        return None
    n_before = len(c.problems)
    map_name, map_blocked = None, None
    if "map" in m:
        map_name = c.string(m["map"], "routing.map")
        if map_name is not None:
            map_blocked = _routing_map(c, map_name, base)
        if "random_obstacles" in m:
            c.err(
                "routing.random_obstacles",
                "a map and random obstacles together",
                "keep one of routing.map and routing.random_obstacles",
            )
    grid = _routing_grid(c, m, arena, map_blocked)
    k = c.number(m["k"], "routing.k", low=1, high=MAX_K, integer=True) if "k" in m else None
    if "k" not in m:
        c.err("routing.k", "missing", "add `k: <cells>`, the sensing radius in cells (e.g. 2)")
    psi = 2
    if "psi" in m:
        psi = c.number(m["psi"], "routing.psi", low=1, high=MAX_PSI, integer=True)
    timing = c.string(m["timing"], "routing.timing", TIMINGS) if "timing" in m else "lockstep"
    if grid is None or len(c.problems) > n_before:
        return None
    tolerance = grid.cell_size / 4.0
    if "tolerance" in m:
        tolerance = c.number(
            m["tolerance"], "routing.tolerance", low=0.0, strict_low=True, high=grid.cell_size / 2
        )
    blocked = _routing_obstacles(c, m, grid, map_blocked, robots, seed)
    if blocked is None or tolerance is None:
        return None
    starts = _check_robot_cells(c, grid, blocked, robots)
    tasks = _routing_tasks(c, m.get("tasks", []), grid, blocked, starts, seed)
    if tasks is None or len(c.problems) > n_before:
        return None
    _check_reachable(c, grid, blocked, starts, tasks, "tasks" in m and isinstance(m["tasks"], list))
    if len(c.problems) > n_before:
        return None
    height = max((r.takeoff_height for r in robots), default=0.0)
    return RoutingConfig(
        grid=grid,
        obstacle_bits=blocked.astype(np.uint8).tobytes(),
        tasks=tuple((int(r), int(cc)) for r, cc in tasks),
        k=int(k),
        psi=int(psi),
        timing=timing,
        tolerance=float(tolerance),
        comm_radius=routing_comm_radius(int(k), grid.cell_size, height),
        map=map_name,
    )


def _routing_map(c: _Checker, name: str, base: Path | None) -> np.ndarray | None:
    """Obstacle mask of the MovingAI map ``routing.map`` (a plain path relative to the swarm
    file, or ``package:relative/path``)."""
    fix = "name an existing MovingAI .map file (relative to the swarm file, or package:path)"
    try:
        path = resolve_package_path(name, "routing.map")
    except FileNotFoundError as exc:
        c.err("routing.map", str(exc), fix)
        return None
    if path is None:
        path = Path(name) if os.path.isabs(name) else (base or Path.cwd()) / name
    try:
        if path.is_dir():
            c.err("routing.map", f"{str(path)!r} is a directory", fix)
            return None
        if not path.is_file():
            c.err("routing.map", f"{str(path)!r} does not exist", fix)
            return None
        with open(path, "rb") as fh:
            raw = fh.read(MAX_MAP_BYTES + 1)
    except OSError as exc:
        c.err("routing.map", f"cannot read {str(path)!r}: {exc.strerror or exc}", fix)
        return None
    if len(raw) > MAX_MAP_BYTES:
        c.err(
            "routing.map",
            f"{str(path)!r} is larger than {MAX_MAP_BYTES // 2**20} MiB",
            f"use a map of at most {MAX_CELLS} cells",
        )
        return None
    try:
        blocked = parse_movingai_map(raw.decode("ascii"), str(path))
    except UnicodeDecodeError:
        c.err("routing.map", f"{str(path)!r} is not ASCII text", "use a MovingAI .map file")
        return None
    except MapError as exc:
        c.err("routing.map", str(exc), "fix the map file (MovingAI format: . G S free, @ O T W)")
        return None
    if blocked.size > MAX_CELLS:
        c.err(
            "routing.map",
            f"{blocked.shape[0]} x {blocked.shape[1]} cells, more than the limit of {MAX_CELLS}",
            "use a smaller map",
        )
        return None
    return blocked


def _routing_grid(
    c: _Checker, m: dict[str, Any], arena: Arena, map_blocked: np.ndarray | None
) -> Grid | None:
    """Cell size, origin, rows and cols, with their defaults (module docstring of
    :mod:`sim_bridge.routing`), checked to lie inside the arena and under :data:`MAX_CELLS`."""
    span_x, span_y = arena.x[1] - arena.x[0], arena.y[1] - arena.y[0]
    if "cell_size" in m:
        cs = c.number(m["cell_size"], "routing.cell_size", low=0.0, strict_low=True)
    elif map_blocked is not None:  # the map scaled to the arena
        cs = min(span_x / map_blocked.shape[1], span_y / map_blocked.shape[0])
    else:
        c.err("routing.cell_size", "missing", "add `cell_size: <metres>` (e.g. 0.2)")
        return None
    if cs is None:
        return None
    origin = (arena.x[0] + cs / 2.0, arena.y[0] + cs / 2.0)
    if "origin" in m:
        items = c.seq(m["origin"], "routing.origin")
        if items is None:
            return None
        if len(items) != 2:
            c.err("routing.origin", f"expected [x, y], got {len(items)} values", "write [x, y]")
            return None
        xy = [c.number(v, f"routing.origin[{i}]") for i, v in enumerate(items)]
        if None in xy:
            return None
        origin = (float(xy[0]), float(xy[1]))
    sizes = {}
    for key, axis, span_lo, span_hi, ax in (
        ("rows", 0, origin[1], arena.y[1], "y"),
        ("cols", 1, origin[0], arena.x[1], "x"),
    ):
        if key in m:
            sizes[key] = c.number(m[key], f"routing.{key}", low=1, high=MAX_CELLS, integer=True)
        elif map_blocked is not None:
            sizes[key] = int(map_blocked.shape[axis])
        else:
            fit = math.floor((span_hi - (span_lo - cs / 2.0)) / cs + 1e-9)
            if fit < 1:
                c.err(f"routing.{key}", f"no cell fits the arena along {ax}", "move routing.origin")
                return None
            sizes[key] = fit
    if None in sizes.values():
        return None
    rows, cols = int(sizes["rows"]), int(sizes["cols"])
    if rows * cols > MAX_CELLS:
        c.err(
            "routing",
            f"{rows} x {cols} = {rows * cols} cells, more than the limit of {MAX_CELLS}",
            "use larger cells or fewer rows/cols",
        )
        return None
    if map_blocked is not None and map_blocked.shape != (rows, cols):
        c.err(
            "routing.map",
            f"the map is {map_blocked.shape[0]} x {map_blocked.shape[1]} cells (rows x cols) but "
            f"the grid is {rows} x {cols}",
            f"set routing.rows: {map_blocked.shape[0]} and routing.cols: {map_blocked.shape[1]} "
            "(or leave them out), or use a map of the grid's size",
        )
        return None
    grid = Grid(cell_size=float(cs), origin=origin, rows=rows, cols=cols)
    (x0, x1), (y0, y1) = grid.extent
    tol = 1e-9 * max(1.0, span_x, span_y)
    if (
        x0 < arena.x[0] - tol
        or x1 > arena.x[1] + tol
        or y0 < arena.y[0] - tol
        or y1 > arena.y[1] + tol
    ):
        c.err(
            "routing",
            f"the grid covers x [{x0:.6g}, {x1:.6g}], y [{y0:.6g}, {y1:.6g}], beyond the arena "
            f"x {list(arena.x)}, y {list(arena.y)}",
            "use fewer rows/cols or smaller cells, move routing.origin, or enlarge the arena",
        )
        return None
    return grid


def _cell(c: _Checker, value: Any, path: str, grid: Grid) -> tuple[int, int] | None:
    """A ``[row, col]`` inside the grid."""
    items = c.seq(value, path)
    if items is None:
        return None
    if len(items) != 2:
        c.err(path, f"expected [row, col], got {len(items)} values", "write [row, col]")
        return None
    row = c.number(items[0], f"{path}[0]", low=0, integer=True)
    col = c.number(items[1], f"{path}[1]", low=0, integer=True)
    if row is None or col is None:
        return None
    if row >= grid.rows or col >= grid.cols:
        c.err(
            path,
            f"cell ({row}, {col}) is outside the {grid.rows} x {grid.cols} grid",
            f"use 0 <= row < {grid.rows} and 0 <= col < {grid.cols}",
        )
        return None
    return int(row), int(col)


def _index_range(c: _Checker, value: Any, path: str, n: int) -> tuple[int, int] | None:
    """``[first, last]`` indices of a rectangle's rows or cols, ``0 <= first <= last < n``."""
    items = c.seq(value, path)
    if items is None:
        return None
    if len(items) != 2:
        c.err(path, f"expected [first, last], got {len(items)} values", "write [first, last]")
        return None
    ends = [c.number(v, f"{path}[{i}]", low=0, integer=True) for i, v in enumerate(items)]
    if None in ends:
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


def _routing_obstacles(
    c: _Checker,
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
    items = c.seq(m.get("obstacles", []), "routing.obstacles") if "obstacles" in m else []
    if items is None:
        return None
    if len(items) > MAX_ROUTING_ITEMS:
        c.err(
            "routing.obstacles",
            f"{len(items)} entries, more than the limit of {MAX_ROUTING_ITEMS}",
            "use rectangles {rows: [r0, r1], cols: [c0, c1]} or a map file",
        )
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


def _random_obstacles(
    c: _Checker, m: dict[str, Any], grid: Grid, robots: list[RobotConfig], seed: int
) -> np.ndarray | None:
    """``routing.random_obstacles: {fraction, seed}``: the paper's random connected environment
    (:func:`sim_bridge.routing.random_obstacles`), the robots' and listed tasks' cells kept
    free."""
    path = "routing.random_obstacles"
    spec = c.mapping(m["random_obstacles"], path, ("fraction", "seed"))
    if spec is None:
        return None
    if "fraction" not in spec:
        c.err(f"{path}.fraction", "missing", "add `fraction: 0.2` (share of obstacle cells)")
        return None
    frac = c.number(spec["fraction"], f"{path}.fraction", low=0.0, high=0.59)
    rseed = c.number(spec.get("seed", seed), f"{path}.seed", low=0, high=2**63 - 1, integer=True)
    if frac is None or rseed is None:
        return None
    if grid.n_cells > MAX_RANDOM_CELLS:
        c.err(
            path,
            f"{grid.n_cells} cells, more than the limit of {MAX_RANDOM_CELLS} for a random draw",
            "use a map file or list the obstacles",
        )
        return None
    keep = [tuple(grid.cell_of(r.pose[:2])) for r in robots]
    tasks = m.get("tasks")
    if isinstance(tasks, list):
        keep += [
            tuple(t)
            for t in tasks[:MAX_ROUTING_ITEMS]
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


def _check_robot_cells(
    c: _Checker, grid: Grid, blocked: np.ndarray, robots: list[RobotConfig]
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


def _routing_tasks(
    c: _Checker, value: Any, grid: Grid, blocked: np.ndarray, starts: np.ndarray, seed: int
) -> np.ndarray | None:
    """``routing.tasks``: a list of cells, or ``{random: {count, seed}}`` drawn on the free
    cells reachable from a robot's start cell, none under a robot at start."""
    if isinstance(value, Mapping):
        spec = c.mapping(value, "routing.tasks", ("random",))
        rnd = (
            c.mapping(spec["random"], "routing.tasks.random", ("count", "seed"))
            if spec and "random" in spec
            else None
        )
        if spec is not None and not value:  # an unknown key is reported already
            c.err(
                "routing.tasks",
                "expected a list of [row, col] or `random:`",
                "write `random: {count: 5}`",
            )
        if rnd is None:
            return None
        if "count" not in rnd:
            c.err("routing.tasks.random.count", "missing", "add `count: <tasks>`")
            return None
        count = c.number(
            rnd["count"], "routing.tasks.random.count", low=1, high=MAX_ROUTING_ITEMS, integer=True
        )
        tseed = c.number(
            rnd.get("seed", seed), "routing.tasks.random.seed", low=0, high=2**63 - 1, integer=True
        )
        if count is None or tseed is None:
            return None
        free = reachable(~blocked, starts[~blocked[starts[:, 0], starts[:, 1]]]) & ~blocked
        cells = random_tasks(free, int(count), int(tseed), starts)
        if cells is None:
            c.err(
                "routing.tasks.random.count",
                f"{count} tasks do not fit: only {int(free.sum())} free cells reachable from the "
                "robots (fewer without the robots' own cells)",
                "ask for fewer tasks or free more cells",
            )
        return cells
    items = c.seq(value, "routing.tasks")
    if items is None:
        return None
    if len(items) > MAX_ROUTING_ITEMS:
        c.err(
            "routing.tasks",
            f"{len(items)} tasks, more than the limit of {MAX_ROUTING_ITEMS}",
            f"list at most {MAX_ROUTING_ITEMS}",
        )
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


def _check_reachable(
    c: _Checker,
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
