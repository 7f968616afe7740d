"""Shared ROS plumbing of the two real-robot bridge nodes (config, poses, neighbours).

:class:`BridgeNodeBase` loads the swarm config (parameter ``config``), picks the robots
this node owns (backend filter, optional ``robot`` / ``robots`` parameters), publishes
``/<robot>/link_state`` (transient local, so late joiners see the current state) and
``/<robot>/neighbors`` for its robots, and listens to every other robot's
``/<robot>/pose`` so neighbours include robots served by other nodes.

Routing missions (a config with ``routing``): it also publishes ``/<robot>/view`` for its
robots with the same pure function as the simulated world
(:func:`sim_bridge.routing.view_table`): the robot's cell and the other robots' cells from the
poses it already keeps (its own robots' estimates / mocap, the others' ``/<robot>/pose``,
fresh within 1 s), the obstacles and tasks known from the config, tasks marked visited by the
world's ``/tasks``, and ``layout.data_offset`` = the last ``/swarm/ps_step`` heard (0 before).
Views go out with the neighbours (``control_hz``) and at once when the PS step advances.
"""

from __future__ import annotations

import math
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseArray, PoseStamped
from rclpy.node import Node
from rclpy.time import Time
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, String, UInt64MultiArray

from sim_bridge.bridges.neighbors import neighbors_within
from sim_bridge.config import ConfigError, RobotConfig, SwarmConfig, load_config
from sim_bridge.errors import SwarmError
from sim_bridge.ros import qos
from sim_bridge.ros.params import SWARM_CONFIG, Param, declare_and_read
from sim_bridge.ros.routing_msgs import view_msg
from sim_bridge.routing import open_task_grid, view_table
from sim_bridge.topics import (
    CMD_CLOCK_SKEW_S,
    CMD_TIMEOUT_S,
    DIAGNOSTICS,
    LINK_STATE,
    MODE,
    NEIGHBORS,
    POSE,
    PS_STEP,
    RESOURCES,
    TASK_FIELDS,
    TASKS,
    VIEW,
    WORLD_FRAME,
    robot_topic,
    stamp_ok,
)


class BridgeSetupError(SwarmError, RuntimeError):
    """The bridge cannot start: bad parameter or config (message says what to fix)."""


def bridge_error(name: str, problem: str, fix: str) -> BridgeSetupError:
    """The bridges' error for a bad node parameter (:mod:`sim_bridge.ros.params`)."""
    return BridgeSetupError(f"parameter {name!r}: {problem} (fix: {fix})")


#: Parameters every bridge takes (the subclasses add their own).
PARAMETERS = (
    SWARM_CONFIG,
    Param("robot", "", "serve only this robot (default: every robot of the backend)"),
    Param("robots", "", "serve only these robots, comma-separated"),
)


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation by ``yaw`` [rad] about z."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw [rad] of a quaternion (rotation about z of the body x axis)."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


class BridgeNodeBase(Node):
    """Base of :class:`CrazyflieBridgeNode` and :class:`GroundBridgeNode`.

    Args:
        node_name: ROS node name.
        backend: robots with this ``backend`` are served (``cflib`` / ``external``).
        kwargs: forwarded to ``rclpy.node.Node`` (namespace, parameter_overrides, ...).
    """

    def __init__(self, node_name: str, backend: str, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        values = declare_and_read(self, PARAMETERS, bridge_error)
        self.config = self._load_config(values["config"])
        self.robots = self._select_robots(backend, values["robot"], values["robots"])
        self._positions: dict[str, tuple[float, float, float]] = {}
        self._pose_stamps: dict[str, float] = {}
        self._link_state_pubs = {
            r.name: self.create_publisher(String, robot_topic(r.name, LINK_STATE), qos.LATCHED)
            for r in self.robots
        }
        self._last_link_state: dict[str, str] = {}
        self._mode_pubs = {
            r.name: self.create_publisher(String, robot_topic(r.name, MODE), qos.LATCHED)
            for r in self.robots
        }
        self._last_mode: dict[str, str] = {}
        self._pose_pubs: dict[str, object] = {}
        self._resources_pubs: dict[str, object] = {}
        self._neighbor_pubs = {
            r.name: self.create_publisher(PoseArray, robot_topic(r.name, NEIGHBORS), qos.QUEUE)
            for r in self.robots
        }
        own = {r.name for r in self.robots}
        for other in self.config.robots:
            if other.name not in own:
                self.create_subscription(
                    PoseStamped,
                    robot_topic(other.name, POSE),
                    lambda msg, name=other.name: self._remember_pose(name, msg),
                    qos.QUEUE,
                )
        self.create_timer(1.0 / self.config.rates.control_hz, self._publish_neighbors)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS, qos.DIAGNOSTICS)
        if self.config.routing is not None:
            self._setup_views()

    def _setup_views(self) -> None:
        """``/<robot>/view`` publishers; ``/tasks`` and ``/swarm/ps_step`` from the world."""
        rc = self.config.routing
        self._obstacles = rc.obstacles
        self._task_visited = np.zeros(len(rc.tasks), dtype=bool)
        self._ps_step = 0
        self._view_pubs = {
            r.name: self.create_publisher(Float64MultiArray, robot_topic(r.name, VIEW), qos.QUEUE)
            for r in self.robots
        }
        self.create_subscription(Float64MultiArray, TASKS, self._on_tasks, qos.QUEUE)
        self.create_subscription(UInt64MultiArray, PS_STEP, self._on_ps_step, qos.QUEUE)

    def _on_tasks(self, msg: Float64MultiArray) -> None:
        n = len(self._task_visited)
        if len(msg.data) == n * len(TASK_FIELDS):
            table = np.asarray(msg.data).reshape(n, len(TASK_FIELDS))
            self._task_visited = table[:, TASK_FIELDS.index("visited")] > 0.5

    def _on_ps_step(self, msg: UInt64MultiArray) -> None:
        if len(msg.data) >= 1 and int(msg.data[0]) != self._ps_step:
            self._ps_step = int(msg.data[0])
            self.publish_views(self._fresh_positions())

    def publish_views(self, fresh: dict[str, tuple[float, float, float]]) -> None:
        """``/<robot>/view`` of this node's robots whose pose is fresh (routing missions)."""
        rc = self.config.routing
        names = self.config.robot_names
        cells = np.full((len(names), 2), -1, dtype=np.int64)
        for i, name in enumerate(names):
            if name in fresh:
                cells[i] = rc.grid.cell_of(fresh[name][:2])
        open_tasks = open_task_grid(rc.grid, rc.task_cells, self._task_visited)
        for robot in self.robots:
            if robot.name in fresh:
                i = self.config.robot_index(robot.name)
                table = view_table(rc.grid, rc.k, self._obstacles, open_tasks, cells, i)
                self._view_pubs[robot.name].publish(view_msg(table, self._ps_step))

    # ------------------------------------------------------------------ setup
    def _load_config(self, path: str) -> SwarmConfig:
        try:
            return load_config(path)
        except ConfigError as exc:
            raise BridgeSetupError(str(exc)) from exc
        except OSError as exc:
            raise BridgeSetupError(f"cannot read swarm config {path!r}: {exc}") from exc

    def _select_robots(self, backend: str, robot: str, robots: str) -> list[RobotConfig]:
        wanted = [robot] + [n.strip() for n in robots.split(",")]
        wanted = [n for n in wanted if n]
        serving = [r for r in self.config.robots if r.backend == backend]
        if wanted:
            known = {r.name: r for r in serving}
            unknown = [n for n in wanted if n not in known]
            if unknown:
                raise BridgeSetupError(
                    f"robots {unknown} are not backend '{backend}' robots of the config; "
                    f"those are {sorted(known)}"
                )
            serving = [known[n] for n in dict.fromkeys(wanted)]
        if not serving:
            self.get_logger().warning(f"the config has no backend '{backend}' robot to serve")
        return serving

    # ------------------------------------------------------------------ helpers
    def advertise_telemetry(self, name: str) -> None:
        """Create ``/<robot>/pose`` and ``/<robot>/resources`` publishers (once)."""
        if name not in self._pose_pubs:
            self._pose_pubs[name] = self.create_publisher(
                PoseStamped, robot_topic(name, POSE), qos.QUEUE
            )
            self._resources_pubs[name] = self.create_publisher(
                Float64MultiArray, robot_topic(name, RESOURCES), qos.QUEUE
            )

    def publish_link_state(self, name: str, state: str) -> None:
        if self._last_link_state.get(name) != state:
            self._last_link_state[name] = state
            self._link_state_pubs[name].publish(String(data=state))

    def publish_mode(self, name: str, mode: str) -> None:
        """``/<robot>/mode`` (latched), when it changed."""
        if self._last_mode.get(name) != mode:
            self._last_mode[name] = mode
            self._mode_pubs[name].publish(String(data=mode))

    def publish_pose(self, name: str, x: float, y: float, z: float, yaw: float) -> None:
        """Publish ``/<robot>/pose`` (frame ``world``) and remember it for neighbours."""
        self._positions[name] = (x, y, z)
        self._pose_stamps[name] = time.monotonic()
        pub = self._pose_pubs.get(name)
        if pub is None:
            return
        msg = PoseStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = WORLD_FRAME
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, z
        qx, qy, qz, qw = yaw_to_quaternion(yaw)
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = qx, qy, qz, qw
        pub.publish(msg)

    def publish_resources(self, robot: RobotConfig, overrides: dict[str, float]) -> None:
        """``/<robot>/resources`` in ``config.resource_types`` order (topics.py layout)."""
        pub = self._resources_pubs.get(robot.name)
        if pub is None:
            return
        data = []
        for kind in self.config.resource_types:
            if kind in overrides:
                data.append(float(overrides[kind]))
            elif kind in robot.resources:
                data.append(float(robot.resources[kind].amount))
            else:
                data.append(0.0)
        msg = Float64MultiArray(data=data)
        msg.layout.dim = [MultiArrayDimension(label="resources", size=len(data), stride=len(data))]
        pub.publish(msg)

    def publish_diagnostics(self, entries: list[tuple[str, bytes, str, dict[str, object]]]) -> None:
        """``/diagnostics``: one status per robot, ``(robot, level, message, values)`` with
        ``level`` one of ``DiagnosticStatus.OK / WARN / ERROR``."""
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        for robot, level, message, values in entries:
            status = DiagnosticStatus(
                level=level,
                name=f"{self.get_name()}: {robot}",
                message=message,
                hardware_id=robot,
            )
            status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
            msg.status.append(status)
        self._diagnostics_pub.publish(msg)

    def command_stamp_verdict(
        self, stamp, timeout_s: float = CMD_TIMEOUT_S
    ) -> tuple[str | None, float]:
        """A command's ``header.stamp`` on receipt, by the freshness rule of ``topics``
        ("Command freshness", :func:`~sim_bridge.topics.stamp_ok`) on this node's clock.

        Returns:
            ``(None, age_s)`` for a fresh stamp, else ``(reason, age_s)`` with reason
            ``rejected_unstamped`` (zero stamp), ``rejected_stale`` (older than
            ``timeout_s``) or ``rejected_future`` (beyond ``CMD_CLOCK_SKEW_S`` ahead);
            ``age_s`` [s] is negative for a stamp ahead of the clock (inf when unset).
        """
        if stamp.sec == 0 and stamp.nanosec == 0:
            return "rejected_unstamped", math.inf
        now_ns = self.get_clock().now().nanoseconds
        stamp_ns = Time.from_msg(stamp).nanoseconds
        age = (now_ns - stamp_ns) * 1e-9
        if stamp_ok(stamp_ns * 1e-9, now_ns * 1e-9, timeout_s, CMD_CLOCK_SKEW_S):
            return None, age
        return ("rejected_future" if age < 0.0 else "rejected_stale"), age

    def _remember_pose(self, name: str, msg: PoseStamped) -> None:
        p = msg.pose.position
        if all(math.isfinite(v) for v in (p.x, p.y, p.z)):
            self._positions[name] = (p.x, p.y, p.z)
            self._pose_stamps[name] = time.monotonic()

    def _fresh_positions(self) -> dict[str, tuple[float, float, float]]:
        """Positions [m] of the robots whose pose is at most 1 s old."""
        now = time.monotonic()
        return {
            name: pos
            for name, pos in self._positions.items()
            if now - self._pose_stamps.get(name, -math.inf) <= 1.0
        }

    def _publish_neighbors(self) -> None:
        fresh = self._fresh_positions()
        if self.config.routing is not None:
            self.publish_views(fresh)
        for robot in self.robots:
            if robot.name not in fresh:
                continue
            msg = PoseArray()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = WORLD_FRAME
            for other in neighbors_within(robot.name, fresh, self.config.sensing_radius):
                pose = Pose()
                pose.position.x, pose.position.y, pose.position.z = fresh[other]
                pose.orientation.w = 1.0
                msg.poses.append(pose)
            self._neighbor_pubs[robot.name].publish(msg)
