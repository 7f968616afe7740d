"""``cmd_passthrough``: forwards ``/<robot>/cmd_vel_nominal`` to ``/<robot>/cmd_vel`` unchanged.

Started by bringup only with ``--no-cbf`` so the topic graph stays the same with or without
the safety filter (the policy always publishes ``cmd_vel_nominal``, the world always reads
``cmd_vel``). It does NOT keep robots apart: it logs a warning at start. One node serves
every robot of the config (parameter ``config``). Each command is forwarded once, on receipt,
and only if its stamp passes the wire contract's freshness rule
(:func:`sim_bridge.topics.stamp_ok`); others are dropped and counted (``dropped`` per robot,
on ``/diagnostics`` every second as ``sim_bridge: cmd_passthrough``).
"""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node

from sim_bridge import topics
from sim_bridge.config import load_config
from sim_bridge.ros import qos
from sim_bridge.ros.params import SWARM_CONFIG, config_error, declare_and_read
from sim_bridge.ros.spin import spin_node

PARAMETERS = (SWARM_CONFIG,)


class PassthroughNode(Node):
    """Unfiltered command path for runs without the CBF safety filter."""

    def __init__(self, node_name: str = "cmd_passthrough", **kwargs):
        super().__init__(node_name, **kwargs)
        cfg = load_config(declare_and_read(self, PARAMETERS, config_error)["config"])
        self.dropped = dict.fromkeys(cfg.robot_names, 0)
        for name in cfg.robot_names:
            pub = self.create_publisher(
                TwistStamped, topics.robot_topic(name, topics.CMD_VEL), qos.STATE
            )
            self.create_subscription(
                TwistStamped,
                topics.robot_topic(name, topics.CMD_VEL_NOMINAL),
                lambda msg, name=name, pub=pub: self._forward(name, pub, msg),
                qos.STATE,
            )
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, qos.DIAGNOSTICS)
        self.create_timer(1.0, self._diagnose)
        self.get_logger().warning(
            f"no CBF safety filter: forwarding cmd_vel_nominal -> cmd_vel for "
            f"{len(cfg.robots)} robots unchanged"
        )

    def _forward(self, name: str, pub, msg: TwistStamped) -> None:
        st = msg.header.stamp
        now = self.get_clock().now().nanoseconds * 1e-9
        if topics.stamp_ok(st.sec + 1e-9 * st.nanosec, now):
            pub.publish(msg)
            return
        self.dropped[name] += 1
        if self.dropped[name] & (self.dropped[name] - 1) == 0:  # log at 1, 2, 4, ...
            self.get_logger().warning(
                f"{name}: dropped a command that is not fresh (stale, future or unstamped), "
                f"{self.dropped[name]} so far"
            )

    def _diagnose(self) -> None:
        total = sum(self.dropped.values())
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN,  # no safety filter in the loop, whatever else
            name="sim_bridge: cmd_passthrough",
            message="no CBF safety filter" + (f"; {total} commands dropped" if total else ""),
            hardware_id="sim",
            values=[KeyValue(key=f"dropped_{n}", value=str(c)) for n, c in self.dropped.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)


def main(args=None) -> None:
    """``cmd_passthrough --ros-args -p config:=swarm.yaml``."""
    spin_node(PassthroughNode, "cmd_passthrough", args)


if __name__ == "__main__":
    main()
