"""``swarm_goto``: a scripted commander that sends every robot to a consumer.

A stand-in for the policy when trying the world, the CBF filter or a real robot: robot ``i``
flies to consumer ``i mod M`` (or its own start position when there is no consumer) with a
saturated proportional law ``v = sat(gain * (target - p), max_speed)`` in the floor plane,
published at ``rates.control_hz`` on ``/<robot>/cmd_vel_nominal`` (so the CBF filter, or
the pass-through, stays in the loop). It reads ``/<robot>/pose`` like a policy would.

Parameters: ``config`` (swarm file), ``gain`` (1.0 1/s).
"""

from __future__ import annotations

import math

from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node

from sim_bridge import topics
from sim_bridge.config import load_config
from sim_bridge.ros import qos
from sim_bridge.ros.params import SWARM_CONFIG, Param, at_least, config_error, declare_and_read
from sim_bridge.ros.spin import spin_node

PARAMETERS = (
    SWARM_CONFIG,
    Param(
        "gain",
        1.0,
        "proportional gain [1/s] of v = sat(gain * (target - p), max_speed)",
        at_least(0.0, "e.g. 1.0"),
    ),
)


class GotoNode(Node):
    """Proportional go-to-consumer commander for every robot of a config."""

    def __init__(self, node_name: str = "swarm_goto", **kwargs):
        super().__init__(node_name, **kwargs)
        values = declare_and_read(self, PARAMETERS, config_error)
        self.gain = float(values["gain"])
        cfg = load_config(values["config"])
        self.robots = cfg.robots
        m = len(cfg.consumers)
        self.targets = [
            cfg.consumers[i % m].position if m else r.pose[:2] for i, r in enumerate(cfg.robots)
        ]
        self.poses: list[tuple[float, float] | None] = [None] * len(cfg.robots)
        self.pubs = []
        for i, r in enumerate(cfg.robots):
            self.create_subscription(
                PoseStamped,
                topics.robot_topic(r.name, topics.POSE),
                lambda msg, i=i: self._on_pose(i, msg),
                qos.STATE,
            )
            self.pubs.append(
                self.create_publisher(
                    TwistStamped, topics.robot_topic(r.name, topics.CMD_VEL_NOMINAL), qos.STATE
                )
            )
        self.create_timer(1.0 / cfg.rates.control_hz, self._tick)

    def _on_pose(self, i: int, msg: PoseStamped) -> None:
        self.poses[i] = (msg.pose.position.x, msg.pose.position.y)

    def _tick(self) -> None:
        stamp = self.get_clock().now().to_msg()
        for i, (pose, target, robot) in enumerate(zip(self.poses, self.targets, self.robots)):
            if pose is None:
                continue
            vx = self.gain * (target[0] - pose[0])
            vy = self.gain * (target[1] - pose[1])
            speed = math.hypot(vx, vy)
            if speed > robot.max_speed:
                vx, vy = vx * robot.max_speed / speed, vy * robot.max_speed / speed
            msg = TwistStamped()
            msg.header.stamp = stamp
            msg.header.frame_id = topics.WORLD_FRAME
            msg.twist.linear.x, msg.twist.linear.y = vx, vy
            self.pubs[i].publish(msg)


def main(args=None) -> None:
    """``swarm_goto --ros-args -p config:=swarm.yaml``."""
    spin_node(GotoNode, "swarm_goto", args)


if __name__ == "__main__":
    main()
