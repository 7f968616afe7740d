"""Comm relay node over DDS: bundles per recipient (2-D layout), only within C, bad modes."""

from __future__ import annotations

import time

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sim_bridge.config import ConfigError
from sim_bridge.ros.relay_node import RelayNode
from std_msgs.msg import Float64MultiArray

pytestmark = pytest.mark.ros

#: cf1 and cf2 1 m apart, cf3 3 m from both (C = 2 m); cf4 next to cf2 but silent.
POSITIONS = {"cf1": (0.0, 0.0), "cf2": (1.0, 0.0), "cf3": (-3.0, 0.0), "cf4": (1.2, 0.2)}


def write_config(path):
    data = {
        "fileversion": 1,
        "arena": {"x": [-4.0, 4.0], "y": [-4.0, 4.0], "z": [0.0, 2.0]},
        "resource_types": ["energy"],
        "comm_radius": 2.0,
        "robot_types": {"cf": {"kind": "crazyflie", "backend": "sim"}},
        "robots": [
            {"name": name, "type": "cf", "pose": [x, y, 0.0, 0.0]}
            for name, (x, y) in POSITIONS.items()
        ],
        "consumers": [],
    }
    path.write_text(yaml.safe_dump(data))
    return path


class Talkers(Node):
    """Every robot's pose; cf1, cf2 and cf3 each send a 5-value message at 20 Hz."""

    def __init__(self, context):
        super().__init__("talkers", context=context)
        self.pose = {n: self.create_publisher(PoseStamped, f"/{n}/pose", 10) for n in POSITIONS}
        self.out = {
            n: self.create_publisher(Float64MultiArray, f"/{n}/comm/out", 10)
            for n in ("cf1", "cf2", "cf3")
        }
        self.k = 0
        self.create_timer(0.05, self._tick)

    def _tick(self):
        for name, (x, y) in POSITIONS.items():
            msg = PoseStamped()
            msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, 0.5
            self.pose[name].publish(msg)
        now = self.get_clock().now().nanoseconds * 1e-9
        self.k += 1
        for i, name in enumerate(("cf1", "cf2", "cf3")):
            data = [float(i), now, float(self.k), 7.0, 8.0]
            self.out[name].publish(Float64MultiArray(data=data))


@pytest.mark.parametrize("deliver", ["before_tick", "periodic"])
def test_relay_bundles_messages_per_recipient_within_c(tmp_path, context, deliver):
    config = write_config(tmp_path / "swarm.yaml")
    relay = RelayNode(
        "comm_relay",
        context=context,
        parameter_overrides=[
            Parameter("config", value=str(config)),
            Parameter("deliver", value=deliver),
        ],
    )
    talkers = Talkers(context)
    got: dict[str, list] = {n: [] for n in POSITIONS}
    sink = Node("sink", context=context)
    for name in POSITIONS:
        sink.create_subscription(
            Float64MultiArray, f"/{name}/comm/in", lambda m, n=name: got[n].append(m), 50
        )
    ex = SingleThreadedExecutor(context=context)
    for n in (relay, talkers, sink):
        ex.add_node(n)
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and (len(got["cf2"]) < 20 or len(got["cf4"]) < 20):
        ex.spin_once(timeout_sec=0.05)
    ex.shutdown()
    for n in (relay, talkers, sink):
        n.destroy_node()
    assert len(got["cf2"]) >= 20 and len(got["cf4"]) >= 20, {k: len(v) for k, v in got.items()}
    assert got["cf3"] == []  # nobody within C of cf3
    senders_of = {}
    for name in ("cf1", "cf2", "cf4"):
        senders = set()
        for msg in got[name]:
            dims = msg.layout.dim
            assert [d.label for d in dims] == ["messages", "message"]
            assert dims[1].size == 5 and len(msg.data) == dims[0].size * 5
            rows = np.asarray(msg.data).reshape(-1, 5)
            senders |= set(rows[:, 0].astype(int).tolist())
        senders_of[name] = senders
    assert senders_of == {"cf1": {1}, "cf2": {0}, "cf4": {0, 1}}
    # cf4 hears two robots: in before_tick mode (cf4 never talks) and in periodic mode alike,
    # bundles carry several rows, so there are fewer publications than copies
    rows4 = sum(m.layout.dim[0].size for m in got["cf4"])
    assert rows4 > len(got["cf4"])


def test_relay_rejects_a_bad_delivery_mode(tmp_path, context):
    config = write_config(tmp_path / "swarm.yaml")
    with pytest.raises(ConfigError, match="deliver"):
        RelayNode(
            "comm_relay",
            context=context,
            parameter_overrides=[
                Parameter("config", value=str(config)),
                Parameter("deliver", value="sometimes"),
            ],
        )
    with pytest.raises(ConfigError, match="bundle_period_s"):
        RelayNode(
            "comm_relay",
            context=context,
            parameter_overrides=[
                Parameter("config", value=str(config)),
                Parameter("bundle_period_s", value=-1.0),
            ],
        )


def test_relay_drops_non_finite_and_oversized_messages(tmp_path, context):
    """Over DDS, cf1 and cf2 talk as usual, and between their messages cf1's ``comm/out`` also
    carries a NaN payload, an inf stamp, a NaN sender index, an array one value longer than
    ``COMM_MAX_LEN`` and one of 1e6 values. The neighbours get the good messages only: the
    relay used to copy NaN/inf and megabyte arrays to every robot within C (each recipient's
    ``comm/in`` then held them); now each is dropped and counted in ``malformed``."""
    from sim_bridge import topics

    config = write_config(tmp_path / "swarm.yaml")
    relay = RelayNode(
        "comm_relay", context=context, parameter_overrides=[Parameter("config", value=str(config))]
    )
    talkers = Talkers(context)
    bad = [
        [0.0, 1.0, float("nan"), 2.0],
        [0.0, float("inf"), 1.0, 2.0],
        [float("nan"), 1.0, 1.0, 2.0],
        [0.0, 1.0] + [0.5] * (topics.COMM_MAX_LEN - 1),
        [0.0, 1.0] + [0.0] * 1_000_000,
    ]
    evil = Node("evil", context=context)
    evil_pub = evil.create_publisher(Float64MultiArray, "/cf1/comm/out", 10)
    sent = []

    def send():
        if len(sent) < 2 * len(bad):
            data = bad[len(sent) % len(bad)]
            evil_pub.publish(Float64MultiArray(data=data))
            sent.append(len(data))

    evil.create_timer(0.05, send)
    got: dict[str, list] = {n: [] for n in ("cf2", "cf4")}
    sink = Node("sink", context=context)
    for name in got:
        sink.create_subscription(
            Float64MultiArray,
            f"/{name}/comm/in",
            lambda m, n=name: got[n].append(np.asarray(m.data).reshape(-1, m.layout.dim[1].size)),
            50,
        )
    ex = SingleThreadedExecutor(context=context)
    for n in (relay, talkers, evil, sink):
        ex.add_node(n)
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and (len(sent) < 2 * len(bad) or len(got["cf4"]) < 20):
        ex.spin_once(timeout_sec=0.05)
    end = time.monotonic() + 0.3  # the last bad ones pass through the relay
    while time.monotonic() < end:
        ex.spin_once(timeout_sec=0.05)
    malformed = relay.malformed
    ex.shutdown()
    for n in (relay, talkers, evil, sink):
        n.destroy_node()
    assert len(sent) == 2 * len(bad) and len(got["cf4"]) >= 20
    for name, bundles in got.items():
        for rows in bundles:
            assert np.isfinite(rows).all(), name
            assert rows.shape[1] == 5, (name, rows.shape)  # only the talkers' messages
    assert {int(s) for rows in got["cf4"] for s in rows[:, 0]} == {0, 1}
    assert malformed == len(sent)
