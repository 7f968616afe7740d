"""The CBF node over real DDS, against a tiny in-test world (no dependency on the world node).

The in-test ``_World`` integrates ``/<robot>/cmd_vel`` (held, ignored after
``CMD_TIMEOUT_S``) at 100 Hz, publishes ``pose`` and ``neighbors`` (robots within the
sensing radius) at 20 Hz, and plays a policy that drives two robots head-on through each
other's start. The two ``CbfNode``s sit in between.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import rclpy
from cbf_filter.errors import CBFConfigError
from cbf_filter.ros.node import CbfNode
from cbf_filter.unicycle import AxleCBF
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Pose, PoseArray, PoseStamped, TwistStamped
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sim_bridge import topics
from sim_bridge.ros import qos

pytestmark = pytest.mark.ros

DS = 0.15
SENSING = 1.0
QOS = qos.STATE


@pytest.fixture
def context():
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def _cbf_node(ctx, robot, **extra):
    params = dict(
        robot=robot,
        model="si2",
        safety_distance=DS,
        sensing_radius=SENSING,
        max_speed=0.5,
        arena=[-2.0, 2.0, -2.0, 2.0],
        diagnostics_period=0.5,
    )
    params.update(extra)
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return CbfNode("cbf_filter", namespace=f"/{robot}", context=ctx, parameter_overrides=overrides)


class _World(Node):
    """Integrates cmd_vel, publishes pose/neighbors, plays a head-on nominal policy."""

    def __init__(self, ctx, starts, goals, nominal=None):
        super().__init__("test_world", context=ctx)
        self.names = list(starts)
        self.x = np.array([starts[n] for n in self.names], dtype=float)
        self.goals = np.array([goals[n] for n in self.names], dtype=float)
        self.cmd = np.zeros_like(self.x)
        self.cmd_t = np.full(len(self.names), -math.inf)
        self.nominal = nominal
        self.min_dist = math.inf
        self.received = {n: [] for n in self.names}
        self.pose_pub, self.nbr_pub, self.nom_pub = {}, {}, {}
        for i, n in enumerate(self.names):
            self.pose_pub[n] = self.create_publisher(
                PoseStamped, topics.robot_topic(n, topics.POSE), QOS
            )
            self.nbr_pub[n] = self.create_publisher(
                PoseArray, topics.robot_topic(n, topics.NEIGHBORS), QOS
            )
            self.nom_pub[n] = self.create_publisher(
                TwistStamped, topics.robot_topic(n, topics.CMD_VEL_NOMINAL), QOS
            )
            self.create_subscription(
                TwistStamped,
                topics.robot_topic(n, topics.CMD_VEL),
                lambda msg, i=i: self._on_cmd(i, msg),
                QOS,
            )
        self.last = time.monotonic()
        self.create_timer(0.01, self._integrate)
        self.create_timer(0.05, self._publish)

    def _now(self):
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_cmd(self, i, msg):
        v = np.array([msg.twist.linear.x, msg.twist.linear.y])
        self.received[self.names[i]].append((msg.header.stamp, v.copy(), msg.twist.linear.z))
        self.cmd[i] = v
        self.cmd_t[i] = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec

    def _integrate(self):
        t = time.monotonic()
        dt, self.last = t - self.last, t
        fresh = (self._now() - self.cmd_t) <= topics.CMD_TIMEOUT_S
        self.x += dt * np.where(fresh[:, None], self.cmd, 0.0)
        d = np.linalg.norm(self.x[0] - self.x[1])
        self.min_dist = min(self.min_dist, d)

    def _publish(self):
        stamp = self.get_clock().now().to_msg()
        for i, n in enumerate(self.names):
            msg = PoseStamped()
            msg.header.stamp = stamp
            msg.header.frame_id = topics.WORLD_FRAME
            msg.pose.position.x, msg.pose.position.y = float(self.x[i, 0]), float(self.x[i, 1])
            msg.pose.orientation.w = 1.0
            self.pose_pub[n].publish(msg)
            arr = PoseArray()
            arr.header = msg.header
            for j in range(len(self.names)):
                if j != i and np.linalg.norm(self.x[j] - self.x[i]) <= SENSING:
                    p = Pose()
                    p.position.x, p.position.y = float(self.x[j, 0]), float(self.x[j, 1])
                    p.orientation.w = 1.0
                    arr.poses.append(p)
            self.nbr_pub[n].publish(arr)
            nom = TwistStamped()
            nom.header.stamp = stamp
            nom.header.frame_id = topics.WORLD_FRAME
            if self.nominal is None:
                v = np.clip(self.goals[i] - self.x[i], -0.5, 0.5)
            else:
                v = self.nominal(i)
            nom.twist.linear.x, nom.twist.linear.y = float(v[0]), float(v[1])
            self.nom_pub[n].publish(nom)


def _spin_until(executor, predicate, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not predicate():
        executor.spin_once(timeout_sec=0.01)


def test_head_on_pair_passes_without_collision(context):
    # Slightly offset head-on swap (exactly collinear robots deadlock, as in the Robotarium).
    starts = {"r1": (-1.0, 0.02), "r2": (1.0, -0.02)}
    goals = {"r1": (1.0, 0.02), "r2": (-1.0, -0.02)}
    world = _World(context, starts, goals)
    nodes = [_cbf_node(context, "r1"), _cbf_node(context, "r2")]
    diags = []
    listener = Node("diag_listener", context=context)
    listener.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, diags.append, 10)
    ex = SingleThreadedExecutor(context=context)
    for n in [world, listener, *nodes]:
        ex.add_node(n)
    try:
        _spin_until(ex, lambda: np.max(np.linalg.norm(world.x - world.goals, axis=1)) < 0.05, 40.0)
    finally:
        ex.shutdown()
        for n in [world, listener, *nodes]:
            n.destroy_node()
    assert np.max(np.linalg.norm(world.x - world.goals, axis=1)) < 0.05, world.x
    assert world.min_dist >= DS - 0.005, world.min_dist
    assert world.min_dist < 0.5  # they really met
    for name in ("r1", "r2"):
        cmds = world.received[name]
        assert cmds and all(np.all(np.isfinite(v)) and z == 0.0 for _, v, z in cmds)
        assert max(np.linalg.norm(v) for _, v, _ in cmds) <= 0.5 + 1e-9
    ours = [s for a in diags for s in a.status if s.name.startswith("cbf_filter: /r")]
    assert ours
    keys = {kv.key for kv in ours[-1].values}
    assert {"solve_time_ms_p95", "active_constraints", "fallbacks_total"} <= keys
    assert max(int(dict((kv.key, kv.value) for kv in s.values)["ticks"]) for s in ours) > 10


def test_nan_and_stale_nominal_are_never_forwarded(context):
    state = {"v": np.array([np.nan, 0.3])}
    starts = {"r1": (0.0, 0.0), "r2": (1.5, 1.5)}
    world = _World(context, starts, starts, lambda i: state["v"])
    node = _cbf_node(context, "r1")
    ex = SingleThreadedExecutor(context=context)
    for n in (world, node):
        ex.add_node(n)
    try:
        _spin_until(ex, lambda: node.counts["rejected_invalid"] > 10, 20.0)
        nan_cmds = list(world.received["r1"])
        state["v"] = np.array([0.2, 0.0])
        world.received["r1"].clear()
        _spin_until(ex, lambda: any(v[0] > 0.1 for _, v, _ in world.received["r1"]), 20.0)
        moving = list(world.received["r1"])
        # Stop the policy: once the nominal is stale the node goes silent (the world's
        # failure ladder takes over); nothing it sends is younger than the last nominal.
        world.destroy_publisher(world.nom_pub["r1"])
        world.nom_pub["r1"] = world.create_publisher(TwistStamped, "/unused_nominal", QOS)
        t_stop = node.get_clock().now().nanoseconds * 1e-9
        stale0 = node.counts["stale"]
        world.received["r1"].clear()
        _spin_until(ex, lambda: node.counts["stale"] > stale0 + 10, 20.0)
        world.received["r1"].clear()
        _spin_until(ex, lambda: False, 0.5)
        stale = list(world.received["r1"])
    finally:
        ex.shutdown()
        world.destroy_node()
        node.destroy_node()
    assert nan_cmds == []  # NaN nominal: nothing forwarded (the world holds, then lands)
    assert any(np.allclose(v, [0.2, 0.0]) for _, v, _ in moving)  # safe command unchanged
    assert stale == []  # silent once the nominal is stale
    assert node.counts["stale"] > stale0 and node.counts["rejected_invalid"] > 10
    assert t_stop > 0


def _silent_world(ctx, starts):
    """A world that publishes poses and neighbours but no nominal command."""
    world = _World(ctx, starts, starts, lambda i: np.zeros(2))
    for n in world.names:
        world.destroy_publisher(world.nom_pub[n])
        world.nom_pub[n] = world.create_publisher(TwistStamped, f"/unused_nominal_{n}", QOS)
    return world


def _send_nominal(probe, pub, vx, vy, offset_s):
    msg = TwistStamped()
    msg.header.frame_id = topics.WORLD_FRAME
    t = probe.get_clock().now().nanoseconds * 1e-9 + offset_s
    msg.header.stamp.sec = int(math.floor(t))
    msg.header.stamp.nanosec = int((t - math.floor(t)) * 1e9)
    msg.twist.linear.x, msg.twist.linear.y = float(vx), float(vy)
    pub.publish(msg)


@pytest.mark.parametrize("offset_s", [3600.0, 1.0, -5.0])
def test_future_or_stale_stamped_nominal_is_never_flown_nor_republished(context, offset_s):
    """Issue #15 finding 1: one nominal stamped now + 3600 s, then silence, used to be
    re-published at 20 Hz for ever. The freshness rule rejects it on receipt, counts it, and
    the node only ever publishes zero commands stamped now."""
    starts = {"r1": (0.0, 0.0), "r2": (1.5, 1.5)}
    world = _silent_world(context, starts)
    node = _cbf_node(context, "r1")
    probe = Node("probe", context=context)
    pub = probe.create_publisher(
        TwistStamped, topics.robot_topic("r1", topics.CMD_VEL_NOMINAL), QOS
    )
    ex = SingleThreadedExecutor(context=context)
    for n in (world, node, probe):
        ex.add_node(n)
    key = "rejected_future" if offset_s > 0 else "rejected_stale"
    try:
        _spin_until(ex, lambda: pub.get_subscription_count() > 0, 10.0)
        _spin_until(ex, lambda: node.counts["stale"] > 2, 10.0)  # the node's timer runs
        _send_nominal(probe, pub, 0.0, 0.3, offset_s)
        _spin_until(ex, lambda: node.counts[key] >= 1, 10.0)
        ticks = node.counts["stale"]
        _spin_until(ex, lambda: node.counts["stale"] > ticks + 20, 20.0)  # ~1 s of timer
        out = list(world.received["r1"])
    finally:
        ex.shutdown()
        for n in (world, node, probe):
            n.destroy_node()
    assert node.counts[key] == 1
    assert out == []  # neither flown nor re-published, not even as a zero
    assert np.all(np.abs(world.x[0]) < 1e-9)  # r1 never moved


def test_fresh_nominal_is_refiltered_only_while_its_receipt_is_fresh(context):
    """A nominal stamped just inside the skew window, then silence: the timer re-filters it
    with its own stamp for at most cmd_timeout after receipt, then the node goes silent."""
    starts = {"r1": (0.0, 0.0), "r2": (1.5, 1.5)}
    world = _silent_world(context, starts)
    node = _cbf_node(context, "r1", control_hz=50.0)
    probe = Node("probe", context=context)
    pub = probe.create_publisher(
        TwistStamped, topics.robot_topic("r1", topics.CMD_VEL_NOMINAL), QOS
    )
    ex = SingleThreadedExecutor(context=context)
    for n in (world, node, probe):
        ex.add_node(n)
    try:
        _spin_until(ex, lambda: pub.get_subscription_count() > 0, 10.0)
        _spin_until(ex, lambda: node.counts["stale"] > 2, 10.0)
        world.received["r1"].clear()
        t_send = time.monotonic()
        _send_nominal(probe, pub, 0.2, 0.0, 0.8 * topics.CMD_CLOCK_SKEW_S)
        _spin_until(ex, lambda: time.monotonic() - t_send > 1.5, 5.0)
        out = list(world.received["r1"])
    finally:
        ex.shutdown()
        for n in (world, node, probe):
            n.destroy_node()
    moving = [st.sec + 1e-9 * st.nanosec for st, v, _ in out if v[0] > 0.0]
    assert moving, "a fresh nominal must be flown"
    assert len(moving) == len(out)  # nothing but the filtered nominal ...
    assert len(set(moving)) == 1  # ... whose copies keep its one stamp ...
    # ... and only within cmd_timeout of its one receipt (plus a tick), then silence
    assert len(out) <= (topics.CMD_TIMEOUT_S + 0.05) * 50.0 + 2


def test_absurd_nominal_is_rejected_and_fast_one_clipped_and_counted(context):
    """Issue #15 finding 7: 1e6 m/s used to be clipped and flown without a diagnostic."""
    state = {"v": np.array([1e6, 0.0])}
    starts = {"r1": (0.0, 0.0), "r2": (1.5, 1.5)}
    world = _World(context, starts, starts, lambda i: state["v"])
    node = _cbf_node(context, "r1")
    diags = []
    probe = Node("probe", context=context)
    probe.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, diags.append, 10)
    ex = SingleThreadedExecutor(context=context)
    for n in (world, node, probe):
        ex.add_node(n)
    try:
        _spin_until(ex, lambda: node.counts["rejected_invalid"] > 5, 20.0)
        absurd = list(world.received["r1"])
        state["v"] = np.array([0.8, 0.0])  # finite, above max_speed 0.5
        world.received["r1"].clear()
        _spin_until(ex, lambda: node.counts["clipped"] > 5 and diags, 20.0)
        _spin_until(
            ex, lambda: any(_diag_value(d, "clipped") not in (None, "0") for d in diags), 5.0
        )
        fast = list(world.received["r1"])
    finally:
        ex.shutdown()
        for n in (world, node, probe):
            n.destroy_node()
    assert absurd == []  # rejected: nothing forwarded
    assert fast and max(np.linalg.norm(v) for _, v, _ in fast) <= 0.5 + 1e-6
    assert any(np.linalg.norm(v) > 0.4 for _, v, _ in fast)
    assert any(_diag_value(d, "rejected_invalid") not in (None, "0") for d in diags)
    assert any(_diag_value(d, "clipped") not in (None, "0") for d in diags)


def _diag_value(msg, key):
    for st in msg.status:
        if st.name.startswith("cbf_filter"):
            for kv in st.values:
                if kv.key == key:
                    return kv.value
    return None


def test_invalid_parameters_are_rejected(context):
    with pytest.raises(CBFConfigError, match="gamma"):
        _cbf_node(context, "r1", gamma=-1.0)
    with pytest.raises(CBFConfigError, match="model"):
        _cbf_node(context, "r1", model="bicycle")
    node = _cbf_node(context, "r1")
    try:
        res = node.set_parameters([Parameter("safety_distance", value=-0.1)])
        assert not res[0].successful and "safety_distance" in res[0].reason
        res = node.set_parameters([Parameter("gamma", value=50.0)])
        assert res[0].successful and node.params.gamma == 50.0
        res = node.set_parameters([Parameter("state_timeout", value=30.0)])
        assert not res[0].successful and "state_timeout" in res[0].reason
        assert node.state_timeout == 0.5
        res = node.set_parameters([Parameter("state_timeout", value=2.0)])
        assert res[0].successful and node.state_timeout == 2.0
    finally:
        node.destroy_node()


SWARM_YAML = """
fileversion: 1
arena: {x: [-1.5, 1.5], y: [-1.0, 1.0], z: [0.0, 1.5]}
comm_radius: 2.0
sensing_radius: 0.8
rates: {control_hz: 25}
safety: {distance: 0.2, gamma: 50.0, class_k: linear}
robot_types:
  cf: {kind: crazyflie, backend: sim, radius: 0.05, max_speed: 0.4}
  gr: {kind: ground, backend: sim, radius: 0.1, max_speed: 0.3, max_yaw_rate: 2.0}
robots:
  - {name: cf1, type: cf, pose: [0.0, 0.0, 0.0, 0.0]}
  - {name: gr1, type: gr, pose: [1.0, 0.0, 0.0, 0.0]}
"""


def test_parameters_come_from_the_swarm_config(context, tmp_path):
    path = tmp_path / "swarm.yaml"
    path.write_text(SWARM_YAML)
    cf = CbfNode(
        "cbf_filter",
        namespace="/cf1",
        context=context,
        parameter_overrides=[Parameter("config", value=str(path))],
    )
    gr = CbfNode(
        "cbf_filter",
        namespace="/gr1",
        context=context,
        parameter_overrides=[
            Parameter("config", value=str(path)),
            Parameter("gamma", value=20.0),  # an explicit parameter wins over the file
        ],
    )
    try:
        assert cf.robot == "cf1" and cf.model == "si3" and cf.dim == 3
        assert cf.params.safety_distance == 0.2 and cf.params.class_k == "linear"
        assert cf.params.gamma == 50.0 and cf.params.max_speed == 0.4
        assert cf.params.sensing_radius == 0.8 and cf.control_hz == 25.0
        assert cf.params.sample_time == pytest.approx(1 / 25)
        assert cf.cbf.rp.arena_lo[2] == 0.0  # drones may rest on the floor
        assert gr.model == "unicycle" and gr.dim == 2 and gr.params.gamma == 20.0
        assert gr.params.max_speed == 0.3
        # The axle certificate: the ground robot's centre keeps plain Ds, like a drone's.
        assert isinstance(gr.cbf, AxleCBF) and gr.cbf.rp.safety_distance == 0.2
    finally:
        cf.destroy_node()
        gr.destroy_node()


def test_cli_exits_2_with_one_line_on_bad_input(capsys):
    from cbf_filter.ros.node import main

    assert main(["--ros-args", "-r", "__ns:=/r1", "-p", "gamma:=-3.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cbf_node: gamma") and "Traceback" not in err
    assert main(["--ros-args", "-r", "__ns:=/nobody", "-p", "config:=/no/such/swarm.yaml"]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    "params,field",
    [
        # rclpy's InvalidTopicNameException (a traceback) for a name it refuses in a topic
        (["-p", "robot:=é"], "robot"),
        (["-p", "robot:=1abc"], "robot"),
        # a KeyError's quoted text, naming neither the parameter nor the fix
        (["-p", "robot:=zz", "-p", "config:=launch/example.yaml"], "robot"),
        # OverflowError in create_timer (a traceback), and 0 ns timers (busy loops)
        (["-p", "robot:=r1", "-p", "control_hz:=1e-300"], "control_hz"),
        (["-p", "robot:=r1", "-p", "control_hz:=1e300"], "control_hz"),
        (["-p", "robot:=r1", "-p", "diagnostics_period:=1e300"], "diagnostics_period"),
        (["-p", "robot:=r1", "-p", "diagnostics_period:=1e-300"], "diagnostics_period"),
        # the filter would re-filter a nominal older than the swarm's freshness rule allows
        (["-p", "robot:=r1", "-p", "cmd_timeout:=1e308"], "cmd_timeout"),
        (["-p", "robot:=r1", "-p", "cmd_timeout:=0.31"], "cmd_timeout"),
        # a pose or neighbour list of any age was trusted as fresh
        (["-p", "robot:=r1", "-p", "state_timeout:=1e6"], "state_timeout"),
        (["-p", "robot:=r1", "-p", "state_timeout:=2.01"], "state_timeout"),
        # a wall margin with no arena was dropped silently: the user's geofence guarded nothing
        (["-p", "robot:=r1", "-p", "boundary_margin:=0.1"], "boundary_margin"),
    ],
)
def test_cli_bad_name_or_rate_is_one_line_naming_the_parameter(capsys, params, field):
    from cbf_filter.ros.node import main

    assert main(["--ros-args", *params]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cbf_node: {field}: ") and "(fix: " in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
