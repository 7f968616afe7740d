"""PolicyNode over real DDS: start-up errors, and a robot outside C never changes an action.

The far-robot test runs the policy node of cf1 with the sim_bridge comm relay and a scripted
world (poses, resources, consumers) in one executor; cf3 keeps broadcasting LGTC messages.
Outside C the relay never delivers them and cf1's commands equal, bit for bit, those of a
PolicyAgent stepped alone on the same observation; inside C they differ (positive control).
"""

import dataclasses
import math
import time

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped, TwistStamped
from lgtc_policy.agent import MissionError, PolicyAgent, RobotSpec, load_policy
from lgtc_policy.ros.node import PolicyNode
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sim_bridge.config import load_config
from sim_bridge.ros.relay_node import RelayNode
from std_msgs.msg import Float64MultiArray
from visualization_msgs.msg import MarkerArray

pytestmark = pytest.mark.ros

SUPPLY = [0.6, 0.3]
CONSUMERS = [[-1.0, 1.0, 0.3, 1.0, 1.0, 0.5], [1.0, 1.0, 0.3, 1.0, 0.5, 1.0]]


def write_config(path, checkpoint, resource_types=("energy", "payload")):
    robots = [
        {"name": f"cf{i + 1}", "type": "cf", "pose": [-1.5 + 1.0 * i, -1.5, 0.0, 0.0]}
        for i in range(3)
    ]
    data = {
        "fileversion": 1,
        "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
        "resource_types": list(resource_types),
        "comm_radius": 1.0,
        "policy": {"checkpoint": str(checkpoint) if checkpoint else None},
        "robot_types": {
            "cf": {
                "kind": "crazyflie",
                "backend": "sim",
                "resources": {resource_types[0]: {"amount": 0.6, "depletion": "persistent"}},
            }
        },
        "robots": robots,
        "consumers": [
            {
                "name": "c1",
                "position": [-1.0, 1.0],
                "radius": 0.3,
                "demand": {resource_types[0]: 1.0},
            },
            {
                "name": "c2",
                "position": [1.0, 1.0],
                "radius": 0.3,
                "demand": {resource_types[0]: 1.0},
            },
        ],
    }
    path.write_text(yaml.safe_dump(data))
    return path


def make_policy(context, config, robot="cf1", **extra):
    params = [Parameter("robot", value=robot), Parameter("config", value=str(config))]
    params += [Parameter(k, value=v) for k, v in extra.items()]
    return PolicyNode("policy", namespace=f"/{robot}", context=context, parameter_overrides=params)


def test_start_up_errors_are_clear(tmp_path, context, checkpoint):
    missing = write_config(tmp_path / "a.yaml", tmp_path / "missing.pt")
    with pytest.raises(MissionError, match="missing.pt"):
        make_policy(context, missing)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(MissionError, match="corrupted"):
        make_policy(context, write_config(tmp_path / "b.yaml", bad))
    one_type = tmp_path / "c.yaml"
    data = yaml.safe_load(write_config(one_type, checkpoint).read_text())
    data["resource_types"] = ["energy"]
    one_type.write_text(yaml.safe_dump(data))
    with pytest.raises(MissionError, match="r=2 resource types but the swarm config has r=1"):
        make_policy(context, one_type)
    with pytest.raises(MissionError, match="policy.checkpoint is null"):
        make_policy(context, write_config(tmp_path / "d.yaml", None))
    with pytest.raises(MissionError, match="robot='cf7'"):
        make_policy(context, write_config(tmp_path / "e.yaml", checkpoint), robot="cf7")
    good = make_policy(context, write_config(tmp_path / "f.yaml", checkpoint))
    assert good.agent.policy.message_dim == 76
    good.destroy_node()


class ScriptedWorld(Node):
    """Publishes cf1's and cf3's poses, cf1's resources, /consumers, and cf3's comm/out."""

    def __init__(self, context, cf3_xy, payload):
        super().__init__("scripted_world", context=context)
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pose1 = self.create_publisher(PoseStamped, "/cf1/pose", qos)
        self.pose3 = self.create_publisher(PoseStamped, "/cf3/pose", qos)
        self.res = self.create_publisher(Float64MultiArray, "/cf1/resources", qos)
        self.cons = self.create_publisher(Float64MultiArray, "/consumers", qos)
        self.out3 = self.create_publisher(Float64MultiArray, "/cf3/comm/out", 10)
        self.cf3_xy = cf3_xy
        self.payload = payload
        self.create_timer(0.02, self._tick)

    def _pose(self, x, y):
        msg = PoseStamped()
        msg.header.frame_id = "world"
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, 0.5
        msg.pose.orientation.w = 1.0
        return msg

    def _tick(self):
        self.pose1.publish(self._pose(0.0, 0.0))
        self.pose3.publish(self._pose(*self.cf3_xy))
        self.res.publish(Float64MultiArray(data=SUPPLY))
        self.cons.publish(Float64MultiArray(data=[v for row in CONSUMERS for v in row]))
        stamp = self.get_clock().now().nanoseconds * 1e-9
        self.out3.publish(Float64MultiArray(data=[2.0, stamp, *self.payload]))


def commands_of_cf1(context, config, cf3_xy, payload, count=12):
    """The first ``count`` cmd_vel_nominal of cf1's policy node, cf3 at ``cf3_xy``."""
    got = []
    nodes = [
        RelayNode(
            "comm_relay",
            context=context,
            parameter_overrides=[Parameter("config", value=str(config))],
        ),
        make_policy(context, config),
        ScriptedWorld(context, cf3_xy, payload),
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
    heard = nodes[1].agent.neighbours.heard.copy()
    ex.shutdown()
    for n in [*nodes, sink]:
        n.destroy_node()
    assert len(got) >= count, "the policy node did not publish 20 Hz commands"
    return np.array(got[:count]), heard


def test_robot_outside_c_never_influences_the_action(tmp_path, context, checkpoint):
    config = write_config(tmp_path / "s.yaml", checkpoint)
    cfg = load_config(config)
    policy = load_policy(checkpoint, 2)
    rng = np.random.default_rng(0)
    payload = rng.uniform(-1.0, 1.0, policy.message_dim)
    # reference: cf1 alone, same observation every tick
    agent = PolicyAgent(policy, RobotSpec.from_config(cfg, "cf1"), 0.5)
    obs = agent.observe([0.0, 0.0, 0.5], [0.0, 0.0, 0.0], SUPPLY, np.array(CONSUMERS))
    alone = np.array([agent.step(obs, float(k)).velocity for k in range(12)])

    far, heard_far = commands_of_cf1(context, config, (1.5, 1.5), payload)  # 2.1 m > C = 1 m
    np.testing.assert_array_equal(far, alone)
    assert not np.isfinite(heard_far).any()

    near, heard_near = commands_of_cf1(context, config, (0.6, 0.0), payload)  # 0.6 m < C
    assert np.isfinite(heard_near[2]), "the relay should deliver cf3's messages within C"
    assert np.abs(near - alone).max() > 1e-7


def test_markers_draw_the_filtered_command_only_while_watched(tmp_path, context, checkpoint):
    """cf1's node reads /cf1/cmd_vel only while /swarm/policy_markers has a subscriber, and then
    draws that command as the ``lgtc_filtered`` arrow."""
    config = write_config(tmp_path / "m.yaml", checkpoint)
    policy = make_policy(context, config, markers_hz=20.0)
    world = ScriptedWorld(context, (1.5, 1.5), np.zeros(policy.agent.policy.message_dim))
    cbf = Node("fake_cbf", context=context)
    cmd_pub = cbf.create_publisher(TwistStamped, "/cf1/cmd_vel", 10)

    def publish_cmd():
        msg = TwistStamped()
        msg.twist.linear.x, msg.twist.linear.y = 0.2, -0.1
        cmd_pub.publish(msg)

    cbf.create_timer(0.02, publish_cmd)
    ex = SingleThreadedExecutor(context=context)
    for n in (policy, world, cbf):
        ex.add_node(n)

    def spin_until(cond, seconds=15.0):
        deadline = time.monotonic() + seconds
        while not cond() and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
        return cond()

    try:
        assert spin_until(lambda: policy.pose is not None, 5.0)
        assert policy._filtered_sub is None  # nobody watches: no cmd_vel subscription
        arrows = []
        viewer = Node("viewer", context=context)
        viewer.create_subscription(
            MarkerArray,
            "/swarm/policy_markers",
            lambda m: arrows.extend(k for k in m.markers if k.ns == "lgtc_filtered"),
            10,
        )
        ex.add_node(viewer)

        def drawn():
            if not arrows:
                return False
            a, b = arrows[-1].points
            return abs(b.x - a.x - 0.2) < 1e-12 and abs(b.y - a.y + 0.1) < 1e-12

        assert spin_until(drawn), "the lgtc_filtered arrow never showed the cmd_vel command"
        ex.remove_node(viewer)
        viewer.destroy_node()
        assert spin_until(lambda: policy._filtered_sub is None, 5.0)
    finally:
        ex.shutdown()
        for n in (policy, world, cbf):
            n.destroy_node()


def test_policy_node_executable_reports_a_bad_checkpoint_in_one_line(tmp_path):
    """The console script (what ``--mode processes`` and ``ros2 launch`` start) exits with 2 and
    one line naming the file, not a traceback."""
    import os
    import shutil
    import subprocess
    import sys

    exe = shutil.which("policy_node", path=os.path.dirname(sys.executable))
    assert exe is not None, "policy_node console script not installed (pip install -e)"
    config = write_config(tmp_path / "x.yaml", tmp_path / "missing.pt")
    proc = subprocess.run(
        [exe, "--ros-args", "-p", "robot:=cf1", "-p", f"config:={config}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("policy_node: ") and "missing.pt" in lines[0]


def _run_cf1(context, config, steps):
    """Run cf1's policy node beside a ScriptedWorld; ``steps`` is a list of
    ``(seconds, action(world, policy))``; returns the policy node, the commands received
    as ``(wall_s, vx, vy)`` and the diagnostics statuses received."""
    got, diags = [], []
    world = ScriptedWorld(context, (1.5, 1.5), np.zeros(4))
    policy = make_policy(context, config, diagnostics_period_s=0.2)
    sink = Node("sink", context=context)
    t0 = time.monotonic()
    sink.create_subscription(
        TwistStamped,
        "/cf1/cmd_vel_nominal",
        lambda m: got.append((time.monotonic() - t0, m.twist.linear.x, m.twist.linear.y)),
        10,
    )
    sink.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: diags.extend(s for s in m.status if s.name == "lgtc_policy: cf1"),
        10,
    )
    ex = SingleThreadedExecutor(context=context)
    for n in (world, policy, sink):
        ex.add_node(n)
    marks = []
    try:
        for seconds, action in steps:
            if action is not None:
                action(world, policy)
            marks.append(time.monotonic() - t0)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                ex.spin_once(timeout_sec=0.02)
    finally:
        ex.shutdown()
        for n in (world, policy, sink):
            n.destroy_node()
    return policy, got, diags, marks


def test_a_frozen_pose_stops_the_commands(tmp_path, context, checkpoint):
    """No pose for pose_timeout_s: the node sends nothing (the chain then holds and lands)
    instead of flying on the last pose; counted and reported as an ERROR."""
    config = write_config(tmp_path / "s.yaml", checkpoint)

    def freeze(world, _policy):
        world.destroy_publisher(world.pose1)
        world.pose1 = world.create_publisher(PoseStamped, "/unused_pose", 1)

    policy, got, diags, marks = _run_cf1(context, config, [(2.0, None), (1.5, freeze)])
    t_freeze = marks[1]
    assert sum(1 for t, *_ in got if t < t_freeze) >= 10  # 20 Hz while the pose was fresh
    after = [t for t, *_ in got if t > t_freeze + 0.5 + 0.1]
    assert after == []
    assert policy.stale_pose_ticks > 0
    assert any(s.message == "no fresh pose: not commanding" for s in diags)


def test_a_lasting_bad_input_stops_the_commands(tmp_path, context, checkpoint):
    """Resources the policy refuses (NaN): the node used to send fresh zero commands for as
    long as the input stayed bad, a robot hovering for ever; it now sends nothing, so the
    chain holds, then lands (counted, ERROR), and commands again once the input is good."""
    config = write_config(tmp_path / "s.yaml", checkpoint)
    good = {}

    def corrupt(world, _policy):
        good["res"] = world.res

        class NaNResources:
            def publish(self, _msg):
                good["res"].publish(Float64MultiArray(data=[math.nan] * len(SUPPLY)))

        world.res = NaNResources()

    def repair(world, _policy):
        world.res = good["res"]

    steps = [(2.0, None), (1.5, corrupt), (1.5, repair)]
    policy, got, diags, marks = _run_cf1(context, config, steps)
    assert sum(1 for t, *_ in got if t < marks[1]) >= 10
    assert [t for t, *_ in got if marks[1] + 0.2 < t < marks[2]] == []
    assert sum(1 for t, *_ in got if t > marks[2] + 0.2) >= 10
    assert policy.input_errors > 10
    assert any(s.message == "bad input: not commanding" for s in diags)


def test_a_robot_out_of_service_by_its_mode_is_inactive(tmp_path, context, checkpoint):
    """The owner's ``/<robot>/mode`` says the robot left service (a ground robot disabled
    keeps a pose that looks the same): the node acts as the env's inactive agent, zero
    command and no LGTC message, and acts again once the robot is back in service."""
    from sim_bridge.ros.qos import LATCHED
    from std_msgs.msg import String

    config = write_config(tmp_path / "s.yaml", checkpoint)
    out, pubs = [], {}

    def listen(world, policy):
        pubs["mode"] = world.create_publisher(String, "/cf1/mode", LATCHED)
        t0 = time.monotonic()
        world.create_subscription(
            Float64MultiArray, "/cf1/comm/out", lambda m: out.append(time.monotonic() - t0), 10
        )
        pubs["t0"] = t0

    def mode(value):
        return lambda world, policy: pubs["mode"].publish(String(data=value))

    steps = [
        (0.1, listen),
        (1.5, mode("flying")),
        (1.5, mode("grounded")),
        (1.5, mode("flying")),
    ]
    policy, got, diags, marks = _run_cf1(context, config, steps)
    # marks are on _run_cf1's clock; out on listen's, which started at marks[0]
    down_at, up_at = marks[2] - marks[0], marks[3] - marks[0]
    assert sum(1 for t in out if t < down_at) >= 10  # messages while in service
    assert [t for t in out if down_at + 0.3 < t < up_at] == []  # none while out of service
    assert sum(1 for t in out if t > up_at + 0.3) >= 10  # back in service
    idle = [(vx, vy) for t, vx, vy in got if marks[2] + 0.3 < t < marks[3]]
    assert idle and all(v == (0.0, 0.0) for v in idle)  # the inactive agent's zero command
    assert policy.mode.mode == "flying" and not policy.mode.down
    values = [{kv.key: kv.value for kv in d.values} for d in diags]
    assert any(v.get("mode") == "grounded" and v.get("active") == "false" for v in values)


def test_non_finite_policy_output_is_never_sent(tmp_path, context, checkpoint):
    """Issue #15 finding 6: a policy that outputs NaN used to publish it while its
    diagnostics said "running". Now nothing is sent, it is counted, and the status is ERROR."""
    config = write_config(tmp_path / "s.yaml", checkpoint)

    def poison(_world, policy):
        real = policy.agent.step
        policy.agent.step = lambda obs, t: dataclasses.replace(
            real(obs, t), velocity=np.array([np.nan, 0.1, 0.0])
        )

    policy, got, diags, marks = _run_cf1(context, config, [(2.0, None), (1.5, poison)])
    assert sum(1 for t, *_ in got if t < marks[1]) >= 10
    assert all(np.isfinite([vx, vy]).all() for _, vx, vy in got)
    assert [t for t, *_ in got if t > marks[1] + 0.1] == []
    assert policy.nonfinite_outputs > 10
    errors = [s for s in diags if s.message == "non-finite policy output: not commanding"]
    assert errors and errors[-1].level == DiagnosticStatus.ERROR
