"""The world's raw publications (:mod:`sim_bridge.ros.wire`) carry what its message objects
carry, bit for bit: every pose, neighbour list, resource vector and the consumer table of
one state publication, built both ways from the same random state (positions, headings of
every sign, supplies, demands, a real robot whose pose is known or not), compared with
``rclpy.serialization`` (the same bytes but the alignment padding, the same message read
back); and a raw ``cmd_vel`` moves the robot as the message does."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PoseArray, PoseStamped, TwistStamped
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message, serialize_message
from sim_bridge.ros import wire
from sim_bridge.ros.world_node import WorldNode

pytestmark = pytest.mark.ros

SWARM = {
    "fileversion": 1,
    "seed": 3,
    "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
    "comm_radius": 1.5,
    "sensing_radius": 1.2,
    "rates": {"control_hz": 20, "sim_hz": 100, "clock_hz": 20, "markers_hz": 2},
    "resource_types": ["energy", "water"],
    "robot_types": {
        "cf": {
            "kind": "crazyflie",
            "takeoff_height": 0.4,
            "resources": {
                "energy": {"amount": 0.5, "depletion": "persistent"},
                "water": {"amount": 0.25, "depletion": "instantaneous"},
            },
        }
    },
    "robots": [
        {"name": f"cf{k}", "type": "cf", "pose": [-1.5 + 0.5 * k, 0.3 * (k % 3), 0.0, 0.0]}
        for k in range(7)
    ]
    + [
        {
            "name": "real",
            "kind": "crazyflie",
            "backend": "cflib",
            "uri": "radio://0/80/2M/E7E7E7E7E7",
            "pose": [0.5, 0.0, 0.0, 0.0],
        },
    ],  # fmt: skip
    "consumers": [
        {"name": "c1", "position": [1.0, 0.0], "radius": 0.3, "demand": {"energy": 1.0}},
        {"name": "c2", "position": [-1.0, 0.5], "radius": 0.4, "demand": {"water": 2.0}},
    ],
}


class Capture:
    """Stands for a publisher: keeps what is published."""

    def __init__(self) -> None:
        self.sent: list = []

    def publish(self, msg) -> None:
        self.sent.append(msg)


def _capture(world: WorldNode) -> dict[str, Capture]:
    caps = {}
    for name in ("pose_pub", "res_pub", "nbr_pub"):
        pubs = getattr(world, name)
        for i in pubs:
            pubs[i] = caps[f"{name}{i}"] = Capture()
    world.consumers_pub = caps["consumers"] = Capture()
    return caps


def _same(raw: bytes, msg) -> None:
    theirs = serialize_message(msg)
    assert len(raw) == len(theirs)
    diff = [k for k, (a, b) in enumerate(zip(raw, theirs)) if a != b]
    assert all(raw[k] == 0 for k in diff)  # only the padding, zeros here
    back = deserialize_message(raw, type(msg))
    assert _fields(back) == _fields(msg)


def _fields(msg) -> bytes:
    """Every number of the message, as bytes (NaN and -0.0 compare bit for bit)."""
    if isinstance(msg, PoseStamped):
        poses = [msg.pose]
    elif isinstance(msg, PoseArray):
        poses = msg.poses
    else:
        layout = [(d.label, d.size, d.stride) for d in msg.layout.dim]
        return repr((layout, msg.layout.data_offset)).encode() + np.asarray(msg.data).tobytes()
    head = repr((msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec))
    vals = [
        (p.position.x, p.position.y, p.position.z)
        + (p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w)
        for p in poses
    ]
    return head.encode() + np.asarray(vals, float).tobytes()


@pytest.fixture
def world(context, tmp_path):
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(SWARM))
    node = WorldNode(context=context, parameter_overrides=[Parameter("config", value=str(path))])
    yield node
    node.destroy_node()


@pytest.mark.parametrize("seed", range(6))
def test_raw_state_is_the_messages_bit_for_bit(world, seed):
    assert wire.RAW_PUBLISH_OK
    rng = np.random.default_rng(seed)
    sim = world.sim
    n = sim.n
    sim.pos[:] = rng.uniform(-1.5, 1.5, (n, 3))
    sim.pos[rng.integers(n)] = -0.0  # a signed zero travels as it is
    sim.yaw[:] = rng.uniform(-4.0, 4.0, n)
    sim.supply[:] = rng.uniform(0.0, 1.0, sim.supply.shape)
    sim.demand[:] = rng.uniform(0.0, 3.0, sim.demand.shape)
    world.ext_seen[:] = bool(seed % 2)  # the real robot's pose known or not yet
    caps = _capture(world)
    stamp = world.get_clock().now().to_msg()
    stamp.nanosec = int(rng.integers(0, 10**9))
    world._publish_state_raw(stamp)
    raw = {k: list(c.sent) for k, c in caps.items()}
    for c in caps.values():
        c.sent.clear()
    world._publish_state_msgs(stamp)
    sizes = set()
    for key, cap in caps.items():
        assert len(cap.sent) == len(raw[key]) == 1, key
        assert isinstance(raw[key][0], bytes)
        _same(raw[key][0], cap.sent[0])
        if key.startswith("nbr_pub"):
            sizes.add(len(cap.sent[0].poses))
    assert len(sizes) > 1  # neighbour lists of several lengths were compared
    assert "pose_pub7" not in caps  # the real robot's pose is its bridge's


def test_raw_command_moves_the_robot_as_the_message(world):
    stamp = world.get_clock().now().to_msg()
    msg = TwistStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = "world"
    msg.twist.linear.x, msg.twist.linear.y = 0.25, -0.125
    world._on_cmd(2, serialize_message(msg))
    assert world.cmd[2].tolist() == [0.25, -0.125, 0.0]
    assert world.cmd_stamp_ns[2] == stamp.sec * 10**9 + stamp.nanosec
    msg.twist.linear.x = float("nan")  # garbage: rejected and held, from bytes as from a message
    world._on_cmd(3, serialize_message(msg))
    world._on_cmd(4, msg)
    assert world.rejected[3] == world.rejected[4] == 1
    assert world.cmd[3].tolist() == world.cmd[4].tolist() == [0.0, 0.0, 0.0]
