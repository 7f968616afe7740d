"""The comm relay's raw path (:mod:`sim_bridge.ros.wire`): bundles as bytes are the bundle
messages bit for bit (but the alignment padding), and a relay fed the raw bytes of poses and
``comm/out`` messages and publishing bytes delivers what a relay fed the message objects and
publishing messages (the fallback) delivers."""

from __future__ import annotations

from array import array

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PoseStamped
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message, serialize_message
from sim_bridge.ros import wire
from sim_bridge.ros.relay_node import RelayNode, bundle_bytes, bundle_msg
from std_msgs.msg import Float64MultiArray

pytestmark = pytest.mark.ros

F64 = st.floats(allow_nan=True, allow_infinity=True, width=64)


def _same(ours: bytes, msg: Float64MultiArray) -> None:
    theirs = serialize_message(msg)
    assert len(ours) == len(theirs)
    assert all(ours[k] == 0 for k in range(len(ours)) if ours[k] != theirs[k])
    back = deserialize_message(ours, Float64MultiArray)
    assert back.layout == msg.layout
    assert back.data.tobytes() == np.asarray(msg.data, float).tobytes()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.data())
def test_bundle_bytes_are_the_bundle_message(row_len, rows, data):
    values = array("d", data.draw(st.lists(F64, min_size=rows * row_len, max_size=rows * row_len)))
    _same(bundle_bytes(row_len, values), bundle_msg(row_len, values))


class Capture:
    def __init__(self) -> None:
        self.sent: list = []

    def publish(self, msg) -> None:
        self.sent.append(msg)


@pytest.fixture
def relays(context, tmp_path):
    cfg = {
        "fileversion": 1,
        "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
        "comm_radius": 1.0,
        "robot_types": {"cf": {"kind": "crazyflie"}},
        "robots": [
            {"name": f"cf{k}", "type": "cf", "pose": [0.4 * k - 1.0, 0.0, 0.0, 0.0]}
            for k in range(6)
        ],
        "consumers": [{"name": "c1", "position": [1.0, 0.0], "radius": 0.3, "demand": {}}],
    }
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    params = {"config": str(path), "deliver": "periodic"}
    out = []
    for name in ("relay_raw", "relay_msgs"):
        node = RelayNode(
            name,
            context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
        node.out_pub = [Capture() for _ in node.out_pub]
        out.append(node)
    yield out
    for node in out:
        node.destroy_node()


def test_raw_inputs_deliver_what_messages_deliver(relays, monkeypatch):
    raw, msgs = relays
    rng = np.random.default_rng(5)
    for step in range(4):
        for i in range(6):
            pose = PoseStamped()
            p = pose.pose.position
            p.x, p.y, p.z = float(0.4 * i - 1.0 + rng.normal(0, 0.1)), float(rng.normal()), 0.5
            if step == 1 and i == 5:
                p.x = float("nan")  # not a position: ignored either way
            raw._on_pose(i, serialize_message(pose))
            msgs._on_pose(i, pose)
        for i in range(6):
            sender = float(i if i != 3 else 4)  # cf3 speaks for cf4: dropped either way
            out = Float64MultiArray(data=[sender, raw._now(), *rng.normal(size=3 + i % 2)])
            raw._on_out(i, serialize_message(out))
            msgs._on_out(i, out)
        raw._deliver()
        with monkeypatch.context() as m:  # the other relay publishes message objects
            m.setattr(wire, "RAW_PUBLISH_OK", False)
            msgs._deliver()
    assert raw.positions.tobytes() == msgs.positions.tobytes()
    assert raw.malformed == msgs.malformed > 0
    delivered = 0
    for a, b in zip(raw.out_pub, msgs.out_pub):
        assert len(a.sent) == len(b.sent)
        for ours, msg in zip(a.sent, b.sent):
            assert isinstance(ours, bytes)
            _same(ours, msg)
            delivered += 1
    assert delivered > 6
