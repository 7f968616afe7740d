"""The sections of a swarm file as frozen dataclasses; each field's metadata (:func:`rule`)
declares how its key is checked: kind, bounds, choices, units, help and the fix when a
required key is missing. :mod:`sim_bridge.config.swarm` holds the whole file."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim_bridge.config.checks import POSITIVE, rule
from sim_bridge.config.limits import (
    CLASS_K,
    DEPLETIONS,
    EVENT_SELECTORS,
    EVENT_TYPES,
    KINDS,
    MAX_TOPIC_LEN,
)


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

    control_hz: float = field(default=20.0, metadata=rule(**POSITIVE, units="Hz"))
    sim_hz: float = field(default=100.0, metadata=rule(**POSITIVE, units="Hz"))
    clock_hz: float = field(default=50.0, metadata=rule(**POSITIVE, units="Hz"))
    markers_hz: float = field(default=5.0, metadata=rule(**POSITIVE, units="Hz"))


@dataclass(frozen=True)
class Safety:
    """CBF parameters: safety distance ``Ds`` [m] between robot centres, gain ``gamma``, and
    the class-K function ``linear`` (gamma*h) or ``cubic`` (gamma*h^3)."""

    distance: float = field(default=0.15, metadata=rule(**POSITIVE, units="m"))
    gamma: float = field(default=100.0, metadata=rule(**POSITIVE, help="CBF gain"))
    class_k: str = field(default="cubic", metadata=rule(kind="choice", choices=CLASS_K))


@dataclass(frozen=True)
class PolicyConfig:
    """Policy checkpoint: ``None``, a file path (relative to the swarm file), or
    ``"package:relative/path.pt"`` inside an installed Python package."""

    checkpoint: str | None = field(default=None, metadata=rule(kind="text", nullable=True))


@dataclass(frozen=True)
class ResourceSpec:
    """A robot's supply of one resource type.

    Attributes:
        amount: initial supply ``so_il`` [resource units], >= 0.
        depletion: ``persistent`` (covers the demand while the robot stays inside ``R_m``,
            never consumed) or ``instantaneous`` (handed over on arrival), LGTC paper Sec. II.
    """

    amount: float = field(metadata=rule(low=0.0, missing="add `amount: <units>` (>= 0)"))
    depletion: str = field(
        metadata=rule(
            kind="choice",
            choices=DEPLETIONS,
            missing="add `depletion: persistent|instantaneous`",
        )
    )


@dataclass(frozen=True)
class BatteryConfig:
    """Battery thresholds [V] (cflib): warn below ``warning_v``, land below ``critical_v``."""

    warning_v: float = field(default=3.5, metadata=rule(**POSITIVE, units="V"))
    critical_v: float = field(default=3.2, metadata=rule(**POSITIVE, units="V"))


def _topic(help_text: str) -> dict:
    return rule(kind="text", max_len=MAX_TOPIC_LEN, nullable=True, help=help_text)


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

    name: str = field(metadata=rule(kind="name", missing="add `name: cf1` (letters, digits, '_')"))
    kind: str = field(
        metadata=rule(
            kind="choice",
            choices=KINDS,
            missing=f"set `kind: {'|'.join(KINDS)}` on the robot or its type",
        )
    )
    # the choices depend on the kind: limits.BACKENDS
    backend: str = field(metadata=rule(kind="choice"))
    uri: str | None = field(metadata=rule(kind="text", nullable=True, help="Crazyflie URI"))
    pose: tuple[float, float, float, float] = field(
        metadata=rule(kind="pose", missing="add `pose: [x, y, z, yaw]` (m, m, m, rad)")
    )
    radius: float = field(metadata=rule(**POSITIVE, units="m"))
    max_speed: float = field(metadata=rule(**POSITIVE, units="m/s"))
    max_yaw_rate: float = field(metadata=rule(**POSITIVE, units="rad/s"))
    takeoff_height: float = field(metadata=rule(**POSITIVE, units="m"))
    resources: dict[str, ResourceSpec]
    battery: BatteryConfig | None = None
    cmd_topic: str | None = field(default=None, metadata=_topic("external driver's Twist topic"))
    odom_topic: str | None = field(default=None, metadata=_topic("external driver's Odometry"))
    mocap_topic: str | None = field(default=None, metadata=_topic("PoseStamped pose source"))


@dataclass(frozen=True)
class ConsumerConfig:
    """A consumer (task): floor ``position`` (x, y) [m], interaction radius ``R_m`` [m] and
    demand ``de_m`` per resource type [resource units]."""

    name: str = field(metadata=rule(kind="name", missing="add `name: c1`"))
    position: tuple[float, float] = field(
        metadata=rule(kind="point", missing="add `position: [x, y]` in metres")
    )
    radius: float = field(
        metadata=rule(
            **POSITIVE, units="m", missing="add `radius: <metres>` (interaction radius R_m)"
        )
    )
    demand: dict[str, float] = field(
        metadata=rule(kind="amounts", missing="add `demand: {type: amount}`")
    )


@dataclass(frozen=True)
class Event:
    """A scripted event at sim time ``t`` [s].

    ``discharge``: set ``robot``'s supply of ``resource`` to ``amount``; ``fail``: the robot
    stops for good; ``takeoff`` / ``land``: as the services; ``demand``: set ``consumer``'s
    requirement of ``resource`` to ``amount`` (persistent: the amount to be covered;
    instantaneous: the amount still missing).

    ``discharge``, ``fail`` and ``land`` name their robot with ``robot`` or, instead, pick it
    when they fire with ``select``: ``alone`` is the robot that serves a consumer alone (the
    only flying robot inside that consumer's area; the lowest index when several do; see
    :func:`sim_bridge.sim.robot_serving_alone`), so a discharge always leaves a consumer
    uncovered (LGTC paper, Fig. 5). Events at the same ``t`` select on the same state, so a
    ``discharge`` and a ``land`` with ``select: alone`` at one ``t`` take the same robot. When
    no robot serves a consumer alone the event does nothing (its ``/swarm/events`` record says
    so).
    """

    t: float = field(metadata=rule(low=0.0, units="s"))
    type: str = field(metadata=rule(kind="choice", choices=EVENT_TYPES))
    robot: str | None = None
    select: str | None = field(default=None, metadata=rule(kind="choice", choices=EVENT_SELECTORS))
    consumer: str | None = None
    resource: str | None = None
    amount: float | None = field(default=None, metadata=rule(low=0.0))
