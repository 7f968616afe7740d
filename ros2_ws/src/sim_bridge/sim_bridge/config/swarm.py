"""The whole swarm file (:class:`SwarmConfig`) and its optional routing mission
(:class:`RoutingConfig`), with the plain-data form :func:`~sim_bridge.config.load_config`
accepts back."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sim_bridge.config.checks import POSITIVE, rule
from sim_bridge.config.files import is_file, resolve_package_path
from sim_bridge.config.limits import MAX_K, MAX_PSI, MAX_SEED, TIMINGS
from sim_bridge.config.problems import Problem
from sim_bridge.config.schema import (
    Arena,
    ConsumerConfig,
    Event,
    PolicyConfig,
    Rates,
    RobotConfig,
    Safety,
)
from sim_bridge.routing import Grid


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
    k: int = field(
        metadata=rule(
            kind="integer",
            low=1,
            high=MAX_K,
            units="cells",
            missing="add `k: <cells>`, the sensing radius in cells (e.g. 2)",
        )
    )
    psi: int = field(metadata=rule(kind="integer", low=1, high=MAX_PSI))
    timing: str = field(metadata=rule(kind="choice", choices=TIMINGS))
    # the upper bound, half a cell, is set where the cell size is known
    tolerance: float = field(metadata=rule(**POSITIVE, units="m"))
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
    seed: int = field(metadata=rule(kind="integer", low=0, high=MAX_SEED))
    arena: Arena
    resource_types: tuple[str, ...]
    robots: tuple[RobotConfig, ...]
    consumers: tuple[ConsumerConfig, ...]
    comm_radius: float = field(
        metadata=rule(**POSITIVE, units="m", missing="add `comm_radius: <metres>`")
    )
    sensing_radius: float = field(metadata=rule(**POSITIVE, units="m"))
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
        if is_file(cand):
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
            for key in ("robot", "select", "consumer", "resource", "amount"):
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


def force_sim(cfg: SwarmConfig) -> SwarmConfig:
    """``cfg`` with every robot on ``backend: sim`` (dry run of a real-robot config)."""
    robots = tuple(
        replace(r, backend="sim", cmd_topic=None, odom_topic=None, mocap_topic=None)
        for r in cfg.robots
    )
    return replace(cfg, robots=robots)
