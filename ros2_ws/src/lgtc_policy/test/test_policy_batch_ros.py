"""Co-located policy nodes over real DDS (issue #17): one batch, each robot its own decision.

cf1's and cf3's policy nodes live in one process and one executor, so they tick together in
one stacked forward (:mod:`lgtc_policy.ros.batcher`). With cf3 outside cf1's communication
range C, cf1's commands equal bit for bit those of a PolicyAgent stepped alone, wherever cf3
is and whatever it observes; inside C the relay delivers cf3's messages and cf1's commands
change (positive control).
"""

import time

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PoseStamped, TwistStamped
from lgtc_policy.agent import PolicyAgent, RobotSpec, load_policy
from lgtc_policy.ros.node import PolicyNode
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sim_bridge.config import load_config
from sim_bridge.ros.relay_node import RelayNode
from std_msgs.msg import Float64MultiArray

pytestmark = pytest.mark.ros

SUPPLY = {"cf1": [0.6, 0.3], "cf3": [0.2, 0.5]}
CONSUMERS = [[-1.0, 1.0, 0.3, 1.0, 1.0, 0.5], [1.0, 1.0, 0.3, 1.0, 0.5, 1.0]]


def write_config(path, checkpoint):
    types = ("energy", "payload")
    data = {
        "fileversion": 1,
        "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
        "resource_types": list(types),
        "comm_radius": 1.0,
        "policy": {"checkpoint": str(checkpoint)},
        "robot_types": {
            "cf": {
                "kind": "crazyflie",
                "backend": "sim",
                "resources": {"energy": {"amount": 0.6, "depletion": "persistent"}},
            }
        },
        "robots": [
            {"name": f"cf{i + 1}", "type": "cf", "pose": [-1.5 + 1.0 * i, -1.5, 0.0, 0.0]}
            for i in range(3)
        ],
        "consumers": [
            {"name": "c1", "position": [-1.0, 1.0], "radius": 0.3, "demand": {"energy": 1.0}},
            {"name": "c2", "position": [1.0, 1.0], "radius": 0.3, "demand": {"energy": 1.0}},
        ],
    }
    path.write_text(yaml.safe_dump(data))
    return path


class World(Node):
    """cf1 hovers at the origin; cf3 at ``cf3_xy`` with its own supplies (50 Hz)."""

    def __init__(self, context, cf3_xy):
        super().__init__("scripted_world", context=context)
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {
            r: (
                self.create_publisher(PoseStamped, f"/{r}/pose", qos),
                self.create_publisher(Float64MultiArray, f"/{r}/resources", qos),
            )
            for r in ("cf1", "cf3")
        }
        self.cons = self.create_publisher(Float64MultiArray, "/consumers", qos)
        self.xy = {"cf1": (0.0, 0.0), "cf3": cf3_xy}
        self.create_timer(0.02, self._tick)

    def _tick(self):
        for r, (pose, res) in self.pubs.items():
            msg = PoseStamped()
            msg.header.frame_id = "world"
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.pose.position.x, msg.pose.position.y = self.xy[r]
            msg.pose.position.z = 0.5
            msg.pose.orientation.w = 1.0
            pose.publish(msg)
            res.publish(Float64MultiArray(data=SUPPLY[r]))
        self.cons.publish(Float64MultiArray(data=[v for row in CONSUMERS for v in row]))


def co_located_run(context, config, cf3_xy, count=12):
    """cf1's first ``count`` nominal commands with cf3's policy node in the same batch."""
    got = []
    params = [Parameter("config", value=str(config))]
    policies = [
        PolicyNode(
            "policy",
            namespace=f"/{r}",
            context=context,
            parameter_overrides=[*params, Parameter("robot", value=r)],
        )
        for r in ("cf1", "cf3")
    ]
    nodes = [
        RelayNode("comm_relay", context=context, parameter_overrides=params),
        *policies,
        World(context, cf3_xy),
    ]
    sink = Node("sink", context=context)
    sink.create_subscription(
        TwistStamped,
        "/cf1/cmd_vel_nominal",
        lambda m: got.append((m.twist.linear.x, m.twist.linear.y, m.twist.linear.z)),
        10,
    )
    ex = SingleThreadedExecutor(context=context)
    for n in [*nodes, sink]:
        ex.add_node(n)
    deadline = time.monotonic() + 30.0
    while len(got) < count and time.monotonic() < deadline:
        ex.spin_once(timeout_sec=0.05)
    heard = policies[0].agent.neighbours.heard.copy()
    batch = (policies[0].batcher, policies[0].batch_size, policies[1].batcher)
    ex.shutdown()
    for n in [*nodes, sink]:
        n.destroy_node()
    assert len(got) >= count, "the policy node did not publish 20 Hz commands"
    return np.array(got[:count]), heard, batch


def test_co_located_robot_outside_c_never_changes_a_robots_command(tmp_path, context, checkpoint):
    config = write_config(tmp_path / "s.yaml", checkpoint)
    cfg = load_config(config)
    agent = PolicyAgent(load_policy(checkpoint, 2), RobotSpec.from_config(cfg, "cf1"), 0.5)
    obs = agent.observe([0.0, 0.0, 0.5], [0.0, 0.0, 0.0], SUPPLY["cf1"], np.array(CONSUMERS))
    alone = np.array([agent.step(obs, float(k)).velocity for k in range(12)])

    for cf3_xy in [(1.5, 1.5), (-1.5, 1.2)]:  # 2.1 m and 1.9 m away: outside C = 1 m
        far, heard, (batcher, size, batcher3) = co_located_run(context, config, cf3_xy)
        assert batcher is batcher3 and size == 2, "cf1 and cf3 should tick in one batch"
        np.testing.assert_array_equal(far, alone)
        assert not np.isfinite(heard).any()

    near, heard, _ = co_located_run(context, config, (0.6, 0.0))  # 0.6 m < C
    assert np.isfinite(heard[2]), "the relay should deliver cf3's messages within C"
    assert np.abs(near - alone).max() > 1e-7
