"""ROS 2 node: every ``backend: external`` ground robot, driven through its own driver.

Per robot ``/<robot>/``: ``cmd_vel`` (TwistStamped, world-frame projection-point velocity
from the CBF) in; ``geometry_msgs/Twist`` on the robot's ``cmd_topic`` out (unicycle map,
see :mod:`sim_bridge.bridges.ground`) at ``rate_hz``; pose from ``odom_topic``
(nav_msgs/Odometry, pose taken as world frame: start the driver's odometry at the robot's
configured pose, or set ``mocap_topic``) or ``mocap_topic`` (PoseStamped, preferred when
set) republished on ``pose``; ``resources`` (configured amounts); ``link_state``
(``connecting`` until the first pose, ``up``, ``lost`` when poses stop); ``mode``
(latched, on change: ``grounded`` while driving is disabled, ``hovering`` / ``flying`` /
``holding`` while enabled, ``emergency``); ``neighbors``;
``/diagnostics`` (1 Hz, one status per robot, with the command counts
``rejected_commands`` = ``rejected_non_finite`` + ``rejected_too_fast`` + ``rejected_stale``
+ ``rejected_future`` + ``rejected_unstamped``, and ``clipped_commands``: faster than
``max_speed``, so the unicycle map clips it).

``cmd_vel`` follows the rules of :mod:`sim_bridge.topics` ("Command freshness"): non-finite
or faster than ``CMD_REJECT_FACTOR * max_speed`` (:func:`~sim_bridge.topics.command_valid`),
or stamped outside ``[now - hold_after_s, now + CMD_CLOCK_SKEW_S]`` on this node's clock, or
unstamped: rejected on receipt and counted, never executed.
The ``takeoff`` (enable) / ``land`` (disable) / ``emergency_stop`` services and the
pose/resources topics are advertised once the robot's pose is first received.

Parameters: ``config``, ``robot`` / ``robots``, ``rate_hz`` (20), ``projection_distance``
(0.1 m, the simulator's and CBF's ``l``), ``hold_after_s`` (0.3), ``land_after_s`` (2.0),
``pose_timeout_s`` (1.0), ``resources_hz`` (5).
"""

from __future__ import annotations

import math
import time
from collections import Counter

from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped
from nav_msgs.msg import Odometry
from std_srvs.srv import Trigger

from sim_bridge.bridges.crazyflie_link import LinkState
from sim_bridge.bridges.ground import GroundLink, GroundParams, GroundPose
from sim_bridge.config import ConfigError, RobotConfig
from sim_bridge.ros import qos
from sim_bridge.ros.bridge_node import (
    BridgeNodeBase,
    BridgeSetupError,
    bridge_error,
    quaternion_to_yaw,
)
from sim_bridge.ros.params import Param, Rule, declare_and_read, positive, timer_rate
from sim_bridge.ros.spin import spin_node
from sim_bridge.topics import (
    CMD_TIMEOUT_S,
    CMD_VEL,
    EMERGENCY_STOP,
    LAND,
    TAKEOFF,
    command_valid,
    robot_topic,
)

#: Node parameters of the ground bridge (cross-field checks: :class:`GroundParams`).
#: A finite age in seconds (NaN or inf would hold / land never).
_AGE = Rule(lambda v: 0.0 < float(v) < math.inf, "finite and > 0", "a duration [s] such as 1.0")
PARAMETERS = (
    Param("rate_hz", 20.0, "Twist output rate [Hz]", timer_rate("e.g. 20.0")),
    Param(
        "projection_distance",
        0.1,
        "projection-point distance l [m] of the world-frame velocity to (v, w) map",
        positive("e.g. 0.1"),
    ),
    Param("hold_after_s", CMD_TIMEOUT_S, "command age after which a zero Twist is sent [s]", _AGE),
    Param("land_after_s", 2.0, "command age after which the robot is disabled [s]", _AGE),
    Param("pose_timeout_s", 1.0, "pose age after which the link is lost [s]", _AGE),
    Param("resources_hz", 5.0, "rate of /<robot>/resources [Hz]", timer_rate("e.g. 5.0")),
)


class GroundBridgeNode(BridgeNodeBase):
    """Ground-robot bridge for all external robots of the config."""

    def __init__(self, node_name: str = "ground_bridge", **kwargs) -> None:
        super().__init__(node_name, "external", **kwargs)
        values = declare_and_read(self, PARAMETERS, bridge_error)
        self.links: dict[str, GroundLink] = {}
        self._twist_pubs = {}
        self._advertised: set[str] = set()
        #: Rejected / clipped commands per robot (reason -> count), see the module docstring.
        self.command_counts: dict[str, Counter] = {r.name: Counter() for r in self.robots}
        for robot in self.robots:
            try:
                params = GroundParams(
                    projection_distance=values["projection_distance"],
                    max_speed=robot.max_speed,
                    max_yaw_rate=robot.max_yaw_rate,
                    hold_after_s=values["hold_after_s"],
                    land_after_s=values["land_after_s"],
                    pose_timeout_s=values["pose_timeout_s"],
                )
            except ValueError as exc:
                raise BridgeSetupError(f"robot {robot.name}: {exc}") from exc
            self.links[robot.name] = GroundLink(robot.name, params)
            self._twist_pubs[robot.name] = self.create_publisher(Twist, robot.cmd_topic, qos.QUEUE)
            if robot.mocap_topic is not None:
                self.create_subscription(
                    PoseStamped,
                    robot.mocap_topic,
                    lambda m, r=robot: self._on_mocap(r, m),
                    qos.QUEUE,
                )
            else:
                self.create_subscription(
                    Odometry, robot.odom_topic, lambda m, r=robot: self._on_odom(r, m), qos.QUEUE
                )
            self.create_subscription(
                TwistStamped,
                robot_topic(robot.name, CMD_VEL),
                lambda m, name=robot.name: self._on_cmd(name, m),
                qos.QUEUE,
            )
            self.publish_link_state(robot.name, LinkState.CONNECTING.value)
        self.create_timer(1.0 / values["rate_hz"], self._tick)
        self.create_timer(1.0 / values["resources_hz"], self._publish_all_resources)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f"serving {len(self.links)} ground robot(s): "
            + ", ".join(f"{r.name}->{r.cmd_topic}" for r in self.robots)
        )

    # ------------------------------------------------------------------ inputs
    def _set_pose(self, robot: RobotConfig, x: float, y: float, z: float, yaw: float) -> None:
        if self.links[robot.name].set_pose(GroundPose(time.monotonic(), x, y, z, yaw)):
            self.publish_pose(robot.name, x, y, z, yaw)

    def _on_odom(self, robot: RobotConfig, msg: Odometry) -> None:
        p, o = msg.pose.pose.position, msg.pose.pose.orientation
        self._set_pose(robot, p.x, p.y, p.z, quaternion_to_yaw(o.x, o.y, o.z, o.w))

    def _on_mocap(self, robot: RobotConfig, msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        self._set_pose(robot, p.x, p.y, p.z, quaternion_to_yaw(o.x, o.y, o.z, o.w))

    def _on_cmd(self, name: str, msg: TwistStamped) -> None:
        link, counts = self.links[name], self.command_counts[name]
        ux, uy = msg.twist.linear.x, msg.twist.linear.y
        verdict, age = None, 0.0
        if not (math.isfinite(ux) and math.isfinite(uy)):
            verdict = "rejected_non_finite"
        elif not command_valid(ux, uy, 0.0, link.params.max_speed):
            verdict = "rejected_too_fast"
        else:
            verdict, age = self.command_stamp_verdict(msg.header.stamp, link.params.hold_after_s)
        if verdict is not None:
            counts[verdict] += 1
            self.get_logger().warning(
                f"{name}: cmd_vel {verdict.removeprefix('rejected_')}: rejected, not driven",
                throttle_duration_sec=1.0,
            )
            return
        if math.hypot(ux, uy) > link.params.max_speed:
            counts["clipped_commands"] += 1
        link.set_command(ux, uy, time.monotonic() - max(age, 0.0))  # within the skew: now

    def _service(self, name: str, action: str):
        link = self.links[name]

        def handle(_request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            if action == TAKEOFF:
                response.success, response.message = link.takeoff(time.monotonic())
            elif action == LAND:
                response.success, response.message = link.land()
            else:
                response.success, response.message = link.emergency_stop()
            self.get_logger().info(f"{name}: {action}: {response.message}")
            return response

        return handle

    # ------------------------------------------------------------------ timers
    def _tick(self) -> None:
        now = time.monotonic()
        for robot in self.robots:
            link = self.links[robot.name]
            before = link.flight
            out = link.step(now)
            if link.flight != before and link.last_event:
                self.get_logger().info(f"{robot.name}: {link.flight.value} ({link.last_event})")
            self.publish_link_state(robot.name, link.link.value)
            self.publish_mode(robot.name, link.flight.value)
            if link.link == LinkState.UP and robot.name not in self._advertised:
                self._advertise(robot.name)
            if out is not None:
                twist = Twist()
                twist.linear.x, twist.angular.z = out
                self._twist_pubs[robot.name].publish(twist)

    def _advertise(self, name: str) -> None:
        self._advertised.add(name)
        self.advertise_telemetry(name)
        for action in (TAKEOFF, LAND, EMERGENCY_STOP):
            self.create_service(Trigger, robot_topic(name, action), self._service(name, action))

    def _publish_diagnostics(self) -> None:
        entries = []
        for robot in self.robots:
            link = self.links[robot.name]
            level = {
                LinkState.UP: DiagnosticStatus.OK,
                LinkState.CONNECTING: DiagnosticStatus.WARN,
                LinkState.LOST: DiagnosticStatus.ERROR,
            }[link.link]
            values = {
                "cmd_topic": robot.cmd_topic,
                "pose_topic": robot.mocap_topic or robot.odom_topic,
                "link": link.link.value,
                "flight": link.flight.value,
                **self._command_counts(robot.name, link),
            }
            entries.append((robot.name, level, link.last_event or link.link.value, values))
        self.publish_diagnostics(entries)

    def _command_counts(self, name: str, link: GroundLink) -> dict[str, int]:
        c = self.command_counts[name]
        reasons = ("non_finite", "too_fast", "stale", "future", "unstamped")
        counts = {f"rejected_{r}": c[f"rejected_{r}"] for r in reasons}
        rejected = sum(counts.values()) + link.rejected
        return {"rejected_commands": rejected, **counts, "clipped_commands": c["clipped_commands"]}

    def _publish_all_resources(self) -> None:
        for robot in self.robots:
            if robot.name in self._advertised:
                self.publish_resources(robot, {})


def main(args=None) -> None:
    """``ground_bridge --ros-args -p config:=swarm.yaml``; exit status 2 on a setup error."""
    spin_node(GroundBridgeNode, "ground_bridge", args, errors=(BridgeSetupError, ConfigError))


if __name__ == "__main__":
    main()
