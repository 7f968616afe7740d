"""The policy node's raw inputs and outputs (:mod:`sim_bridge.ros.wire`) against rclpy's own
serialization: the pose, resources, consumers and ``comm/in`` bundles it decodes give what
the message objects carry, bit for bit; its ``cmd_vel_nominal`` and ``comm/out`` bytes are the
messages it publishes where the middleware's layout differs (``RAW_PUBLISH_OK`` false), the
same bytes but the alignment padding, and read back as the same messages."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PoseStamped, TwistStamped
from hypothesis import given, settings
from hypothesis import strategies as st
from lgtc_policy.agent import TickResult
from lgtc_policy.ros.node import PolicyNode
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message, serialize_message
from sim_bridge.ros import wire
from sim_bridge.ros.relay_node import bundle_msg
from std_msgs.msg import Float64MultiArray

pytestmark = pytest.mark.ros

F64 = st.floats(allow_nan=True, allow_infinity=True, width=64)
FINITE = st.floats(-10.0, 10.0, width=64)


@pytest.fixture(scope="module")
def policy(tmp_path_factory, checkpoint):
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    config = tmp_path_factory.mktemp("wire") / "swarm.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "fileversion": 1,
                "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
                "resource_types": ["energy", "payload"],
                "comm_radius": 1.0,
                "policy": {"checkpoint": str(checkpoint)},
                "robot_types": {
                    "cf": {
                        "kind": "crazyflie",
                        "resources": {"energy": {"amount": 0.6, "depletion": "persistent"}},
                    }
                },
                "robots": [
                    {"name": f"cf{i + 1}", "type": "cf", "pose": [-1.5 + i, -1.5, 0.0, 0.0]}
                    for i in range(3)
                ],
                "consumers": [
                    {
                        "name": "c1",
                        "position": [-1.0, 1.0],
                        "radius": 0.3,
                        "demand": {"energy": 1.0},
                    }
                ],
            }
        )
    )
    params = {"robot": "cf2", "config": str(config), "batch": False, "markers_hz": 0.0}
    node = PolicyNode(
        "policy",
        namespace="/cf2",
        context=ctx,
        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
    )
    yield node
    node.destroy_node()
    rclpy.shutdown(context=ctx)


class Capture:
    def __init__(self) -> None:
        self.sent: list = []

    def publish(self, msg) -> None:
        self.sent.append(msg)


@settings(max_examples=60, deadline=None)
@given(st.tuples(*[F64] * 7), st.integers(0, 2**31 - 1), st.integers(0, 10**9 - 1))
def test_pose_decodes_as_the_message(policy, pose, sec, nanosec):
    msg = PoseStamped()
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.header.frame_id = "world"
    p, q = msg.pose.position, msg.pose.orientation
    p.x, p.y, p.z, q.x, q.y, q.z, q.w = pose
    policy.pose = None
    policy._on_pose(serialize_message(msg))
    assert policy.pose.tobytes() == np.array([p.x, p.y, p.z]).tobytes()
    assert policy.pose_t == sec + nanosec * 1e-9


@settings(max_examples=60, deadline=None)
@given(st.lists(F64, max_size=12), st.integers(1, 4))
def test_resources_and_consumers_decode_as_the_message(policy, values, rows):
    msg = Float64MultiArray(data=values)
    policy._on_resources(serialize_message(msg))
    assert policy.supply.tobytes() == np.asarray(msg.data, dtype=float).tobytes()
    cols = 4 + len(policy.spec.resource_types)
    table = np.resize(np.asarray(values + [1.5], float), rows * cols)
    msg = Float64MultiArray(data=table.tolist())
    policy._on_consumers(serialize_message(msg))
    assert policy.consumers.shape == (rows, cols)
    assert policy.consumers.tobytes() == table.tobytes()
    policy._on_consumers(serialize_message(Float64MultiArray(data=table[:-1].tolist())))
    assert policy.consumers is None  # not whole rows: no table, as before


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-1, 3), FINITE, st.lists(st.floats(width=32), min_size=1, max_size=1)
        ),
        max_size=4,
    ),
    st.booleans(),
)
def test_comm_bundles_reach_the_table_as_the_message(policy, rows, bundled):
    table = policy.agent.neighbours
    dim = table.dim
    data = []
    for sender, stamp, fill in rows:
        data += [float(sender), stamp] + fill * dim
    row_len = 2 + dim
    msg = bundle_msg(row_len, data) if bundled and data else Float64MultiArray(data=data)
    ref = type(table)(table.n, table.own, table.dim, table.timeout_s)
    table.__init__(table.n, table.own, table.dim, table.timeout_s)
    policy._on_comm(serialize_message(msg))
    now = table.heard[np.isfinite(table.heard)]
    ref.receive(msg.data, float(now[0]) if now.size else 0.0, row_len if bundled and data else None)
    assert table.rejected == ref.rejected
    assert table.payload.tobytes() == ref.payload.tobytes()
    assert table.stamp.tobytes() == ref.stamp.tobytes()


@settings(max_examples=40, deadline=None)
@given(st.tuples(*[F64] * 3), st.one_of(st.none(), st.lists(F64, min_size=1, max_size=20)))
def test_outputs_are_the_messages_bit_for_bit(policy, velocity, message):
    now = SimpleNamespace(nanoseconds=1_796_568_365_612_641_798)
    result = TickResult(
        velocity=np.array(velocity),
        message=None if message is None else np.array(message),
        cluster=0,
        neighbours=np.zeros(0, int),
        action=np.zeros(2),
    )
    sent = {}
    real_pubs, real_clock = (policy.cmd_pub, policy.comm_pub), policy.get_clock
    policy.get_clock = lambda: SimpleNamespace(now=lambda: now)
    try:
        for raw in (True, False):
            policy.cmd_pub, policy.comm_pub = Capture(), Capture()
            wire.RAW_PUBLISH_OK, saved = raw, wire.RAW_PUBLISH_OK
            try:
                policy._publish(result)
            finally:
                wire.RAW_PUBLISH_OK = saved
            sent[raw] = policy.cmd_pub.sent + policy.comm_pub.sent
    finally:
        (policy.cmd_pub, policy.comm_pub), policy.get_clock = real_pubs, real_clock
    assert len(sent[True]) == len(sent[False]) == (1 if message is None else 2)
    for ours, msg in zip(sent[True], sent[False]):
        assert isinstance(ours, bytes) and isinstance(msg, (TwistStamped, Float64MultiArray))
        theirs = serialize_message(msg)
        assert len(ours) == len(theirs)
        assert all(ours[k] == 0 for k in range(len(ours)) if ours[k] != theirs[k])
        back = deserialize_message(ours, type(msg))
        if isinstance(msg, TwistStamped):
            assert back.header == msg.header
            for a, b in (
                (back.twist.linear, msg.twist.linear),
                (back.twist.angular, msg.twist.angular),
            ):
                assert np.array([a.x, a.y, a.z]).tobytes() == np.array([b.x, b.y, b.z]).tobytes()
        else:
            assert back.layout == msg.layout
            assert back.data.tobytes() == np.asarray(msg.data, float).tobytes()


def test_a_pose_before_the_first_clock_is_not_taken_on_sim_time(policy):
    """On sim time a node that starts after the world may hear a pose before its first
    /clock: its clock reads 0, so that pose had no receipt time and aged ~the world's time at
    the first tick ("no pose for 3.65 s", one tick without a command). It is not taken; the
    first pose after /clock is."""
    from rclpy.time import Time

    node = PolicyNode(
        "policy_sim",
        namespace="/cf2",
        context=policy.context,
        parameter_overrides=[
            Parameter(p.name, value=p.value)
            for p in (policy.get_parameter(k) for k in ("robot", "config", "batch", "markers_hz"))
        ]
        + [Parameter("use_sim_time", value=True)],
    )
    try:
        assert node.get_clock().ros_time_is_active and node.get_clock().now().nanoseconds == 0
        msg = PoseStamped()
        msg.header.stamp.sec = 3
        msg.pose.position.x = 0.5
        node._on_pose(serialize_message(msg))
        assert node.pose is None
        node.get_clock().set_ros_time_override(Time(seconds=3.0))  # what /clock does
        node._on_pose(serialize_message(msg))
        assert node.pose[0] == 0.5 and node.pose_rx == 3.0
    finally:
        node.destroy_node()
