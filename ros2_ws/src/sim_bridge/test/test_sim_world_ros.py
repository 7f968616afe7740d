"""Real rclpy integration: the world, relay and services nodes over DDS (localhost)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseStamped, TwistStamped
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from sim_bridge import topics
from sim_bridge.bringup import BringupError, check_plugins, load_plugin, plan
from sim_bridge.config import load_config
from sim_bridge.ros.graph import wait_for
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger

pytestmark = pytest.mark.ros

SWARM = {
    "fileversion": 1,
    "seed": 3,
    "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
    "comm_radius": 1.5,
    "sensing_radius": 1.2,
    "rates": {"control_hz": 20, "sim_hz": 100, "clock_hz": 20, "markers_hz": 2},
    "robot_types": {
        "cf": {
            "kind": "crazyflie",
            "takeoff_height": 0.4,
            "resources": {"energy": {"amount": 0.5, "depletion": "persistent"}},
        }
    },
    "robots": [
        {"name": "cf1", "type": "cf", "pose": [0.0, 0.0, 0.0, 0.0]},
        {"name": "cf2", "type": "cf", "pose": [1.0, 0.0, 0.0, 0.0]},
        {"name": "cf3", "type": "cf", "pose": [-1.9, -1.9, 0.0, 0.0]},
        {"name": "g1", "kind": "ground", "pose": [0.0, 1.0, 0.0, 0.0]},
    ],
    "consumers": [
        {"name": "c1", "position": [1.0, 0.0], "radius": 0.3, "demand": {"energy": 1.0}},
    ],
}


@pytest.fixture
def swarm_file(tmp_path):
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(SWARM))
    return path


class Probe:
    """A test node in its own context: publishers, latest messages, service calls."""

    def __init__(self, context, names):
        self.node = rclpy.create_node("probe", context=context)
        self.lock = threading.Lock()
        self.poses: dict[str, np.ndarray] = {}
        self.neighbors: dict[str, int] = {}
        self.comm_in: dict[str, list] = {n: [] for n in names}
        self.diag: dict[str, str] = {}
        self.events: list[dict] = []
        self.consumers = None
        self.resources: dict[str, list] = {}
        self.cmd = {n: self.node.create_publisher(TwistStamped, f"/{n}/cmd_vel", 1) for n in names}
        self.out = {
            n: self.node.create_publisher(Float64MultiArray, f"/{n}/comm/out", 10) for n in names
        }
        for n in names:
            self.node.create_subscription(
                PoseStamped, f"/{n}/pose", lambda m, n=n: self._pose(n, m), 1
            )
            self.node.create_subscription(
                PoseArray, f"/{n}/neighbors", lambda m, n=n: self._nbr(n, m), 1
            )
            self.node.create_subscription(
                Float64MultiArray, f"/{n}/comm/in", lambda m, n=n: self._comm(n, m), 10
            )
            self.node.create_subscription(
                Float64MultiArray,
                f"/{n}/resources",
                lambda m, n=n: self.resources.__setitem__(n, list(m.data)),
                1,
            )
        self.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._diag, 10)
        self.node.create_subscription(String, topics.EVENTS, self._event, 10)
        self.node.create_subscription(
            Float64MultiArray, topics.CONSUMERS, lambda m: setattr(self, "consumers", m.data), 1
        )

    def _pose(self, n, m):
        p = m.pose.position
        with self.lock:
            self.poses[n] = np.array([p.x, p.y, p.z])

    def _nbr(self, n, m):
        self.neighbors[n] = len(m.poses)

    def _comm(self, n, m):
        self.comm_in[n].append(list(m.data))

    def _diag(self, m):
        for st in m.status:
            if st.name.endswith("world"):
                self.diag = {kv.key: kv.value for kv in st.values}

    def _event(self, m):
        self.events.append(json.loads(m.data))

    def pose(self, n):
        with self.lock:
            return self.poses[n].copy()

    def send(self, n, v, stamp=None, age_s=0.0):
        msg = TwistStamped()
        now = self.node.get_clock().now().nanoseconds - int(age_s * 1e9)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        msg.header.frame_id = topics.WORLD_FRAME
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = v
        self.cmd[n].publish(msg)

    def call(self, name, timeout=10.0):
        client = self.node.create_client(Trigger, name)
        assert client.wait_for_service(timeout_sec=timeout), f"{name} not offered"
        fut = client.call_async(Trigger.Request())
        wait_for(fut.done, timeout)
        self.node.destroy_client(client)
        return fut.result()


class Spinner:
    """Nodes of a bringup plan + a probe in one context, spun by a background executor."""

    def __init__(self, specs, names):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.nodes = {}
        for spec in specs:
            cls = load_plugin(spec)
            self.nodes[spec.fqn] = cls(
                spec.name,
                context=self.context,
                parameter_overrides=[Parameter(k, value=v) for k, v in spec.parameters.items()],
            )
        self.probe = Probe(self.context, names)
        self.ex = MultiThreadedExecutor(context=self.context)
        for node in [*self.nodes.values(), self.probe.node]:
            self.ex.add_node(node)
        self.stopping = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        while self.context.ok() and not self.stopping:
            try:
                self.ex.spin_once(timeout_sec=0.05)
            except Exception:  # shutting down
                if not self.context.ok():
                    return
                raise

    def close(self):
        from sim_bridge.ros.runner import stop_executor as _stop_executor

        self.stopping = True
        self.thread.join(timeout=5)
        _stop_executor(self.ex)  # running callbacks finish before anything is destroyed
        for node in [*self.nodes.values(), self.probe.node]:
            node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def world(swarm_file):
    cfg = load_config(swarm_file)
    specs = plan(cfg, swarm_file, policy=False, cbf=False)
    sp = Spinner(specs, cfg.robot_names)
    assert wait_for(lambda: len(sp.probe.poses) == 4, 15), "poses never arrived"
    yield sp
    sp.close()


def drive(probe, name, v, seconds, hz=20.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        probe.send(name, v)
        time.sleep(1.0 / hz)


def drive_sim(sp, name, v, sim_seconds, hz=20.0):
    """Command ``name`` until ``sim_seconds`` of sim time passed (robust to a loaded CPU),
    wait until it holds again; returns (displacement seen on its pose topic, sim seconds
    from the first command until it held)."""
    sim = sp.nodes["/world"].sim
    start, t0 = sp.probe.pose(name), sim.t
    deadline = time.monotonic() + 20.0 * sim_seconds + 5.0
    while sim.t < t0 + sim_seconds and time.monotonic() < deadline:
        sp.probe.send(name, v)
        sp.last_send = time.monotonic()
        time.sleep(1.0 / hz)
    time.sleep(topics.CMD_TIMEOUT_S + 0.3)  # the last command expires, the final pose arrives
    return sp.probe.pose(name) - start, sim.t - t0


def test_takeoff_move_hold_land_services(world):
    probe = world.probe
    resp = probe.call("/cf1/takeoff")
    assert resp.success, resp.message
    assert wait_for(lambda: abs(probe.pose("cf1")[2] - 0.4) < 1e-6, 5)
    moved, elapsed = drive_sim(world, "cf1", (0.0, 0.4, 0.0), 1.0)
    assert 0.2 < moved[1] <= 0.4 * elapsed + 1e-9 and abs(moved[0]) < 1e-9  # 0.4 m/s, >= 1 s
    # Sim-time checks (robust to a loaded CPU): no fresh command for CMD_TIMEOUT_S -> hold
    sim, node = world.nodes["/world"].sim, world.nodes["/world"]
    silent_since = world.last_send  # wall time of cf1's last fresh command
    assert wait_for(lambda: float(sim.t - sim.cmd_time[0]) > topics.CMD_TIMEOUT_S + 0.1, 5)
    a = sim.pos[0].copy()
    # a command stamped 1 s ago is stale on arrival: it never moves the robot
    for _ in range(5):
        probe.send("cf1", (0.4, 0.0, 0.0), age_s=1.0)
        time.sleep(0.05)
        np.testing.assert_allclose(sim.pos[0, :2], a[:2], atol=1e-12)
        if node.mode_of("cf1") == "flying":
            assert sim.pos[0, 2] == a[2]
    # no fresh command for LAND_AFTER_S after flying on commands: the world's watchdog lands it
    # (ages on the world's clock, as the bridges count them; the slack is a tick and a poll)
    assert wait_for(lambda: node.mode_of("cf1") != "flying", 10, period=0.005)
    # measured from the last command the world accepted (its stamp, the age the watchdog uses):
    # on a loaded machine the test's last sends can arrive stale and be rejected
    last_ok_s = min(node.cmd_stamp_ns[0], node.cmd_rx_ns[0]) * 1e-9
    landed_after = node.get_clock().now().nanoseconds * 1e-9 - last_ok_s
    assert last_ok_s <= time.time() - (time.monotonic() - silent_since) + 0.05
    assert topics.LAND_AFTER_S - 0.05 <= landed_after <= topics.LAND_AFTER_S + 0.5
    assert wait_for(lambda: probe.pose("cf1")[2] == 0.0, 10)
    assert any(e["type"] == "watchdog_land" and e["robot"] == "cf1" for e in probe.events)
    np.testing.assert_allclose(probe.pose("cf1")[:2], a[:2], atol=1e-12)  # straight down
    resp = probe.call("/cf1/land")
    assert resp.success
    assert world.nodes["/world"].mode_of("cf1") == "grounded"
    assert node.rejected_stale[0] >= 1 and sim.watchdog_landings[0] == 1  # depth-1 queues
    assert wait_for(lambda: int(probe.diag.get("rejected_stale", 0)) >= 1, 10)
    assert wait_for(lambda: int(probe.diag.get("watchdog_landings", 0)) >= 1, 10)


def test_mode_topics_follow_the_sim_modes_latched(world):
    """``/<robot>/mode`` (the contract's one signal of a disabled ground robot) follows the
    simulator's mode machine, and a late subscriber gets the current mode at once."""
    from sim_bridge.ros import qos

    probe = world.probe
    seen = {"cf1": [], "g1": []}
    for n in seen:
        probe.node.create_subscription(
            String, f"/{n}/mode", lambda m, n=n: seen[n].append(m.data), qos.LATCHED
        )
    assert wait_for(lambda: seen["cf1"] == ["grounded"] and seen["g1"] == ["grounded"], 10), seen
    assert probe.call("/cf1/takeoff").success
    assert probe.call("/g1/takeoff").success
    assert wait_for(lambda: seen["cf1"][-1:] == ["flying"] and seen["g1"][-1:] == ["flying"], 10)
    assert seen["cf1"] == ["grounded", "taking_off", "flying"]
    assert probe.call("/g1/land").success  # a ground robot: driving disabled
    assert wait_for(lambda: seen["g1"][-1:] == ["grounded"], 10), seen
    assert probe.call("/cf1/emergency_stop").success
    assert wait_for(lambda: seen["cf1"][-1:] == ["failed"], 10), seen
    assert all(m in topics.MODES_ACTIVE + topics.MODES_STOPPED for v in seen.values() for m in v)
    late = []
    probe.node.create_subscription(String, "/cf1/mode", lambda m: late.append(m.data), qos.LATCHED)
    assert wait_for(lambda: late == ["failed"], 10), late


def _send_stamped(probe, n, v, offset_s):
    msg = TwistStamped()
    t = probe.node.get_clock().now().nanoseconds + int(offset_s * 1e9)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, 1_000_000_000)
    msg.header.frame_id = topics.WORLD_FRAME
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = v
    probe.cmd[n].publish(msg)


def test_future_stamped_command_never_moves_a_robot(world):
    """Issue #15 finding 1: one command stamped now + 3600 s used to fly cf1 2.35 m in 8 s.
    Under the freshness rule it is rejected on receipt, counted, and never executed; a stamp
    within the allowed clock skew is still flown."""
    probe = world.probe
    assert probe.call("/cf3/takeoff").success
    assert wait_for(lambda: abs(probe.pose("cf3")[2] - 0.4) < 1e-6, 5)
    start = probe.pose("cf3")
    for _ in range(3):
        _send_stamped(probe, "cf3", (0.0, 0.3, 0.0), 3600.0)
        time.sleep(0.05)
    time.sleep(1.5)
    np.testing.assert_allclose(probe.pose("cf3"), start, atol=1e-12)
    assert world.nodes["/world"].mode_of("cf3") == "flying"  # never commanded: hovers
    # counted (the command topic keeps the latest message only, so a stalled executor may
    # merge the three sends: at least one count, never a move)
    assert wait_for(lambda: int(probe.diag.get("rejected_future", 0)) >= 1, 5)
    # a stamp a little ahead (inside CMD_CLOCK_SKEW_S) is a fresh command
    for _ in range(10):
        _send_stamped(probe, "cf3", (0.0, 0.3, 0.0), 0.5 * topics.CMD_CLOCK_SKEW_S)
        time.sleep(0.05)
    assert wait_for(lambda: probe.pose("cf3")[1] > start[1] + 0.05, 5)


def test_silent_robot_holds_then_lands_while_others_fly_on(world):
    """The failure ladder in simulation: cf1's commands stop (a crashed, frozen or silent
    policy), it holds, then lands within LAND_AFTER_S (+ descent); cf2, still commanded,
    keeps flying and moving."""
    probe = world.probe
    sim = world.nodes["/world"].sim
    for n in ("cf1", "cf2"):
        assert probe.call(f"/{n}/takeoff").success
    assert wait_for(lambda: sim.mode[0] == 2 and sim.mode[1] == 2, 10)  # both flying
    t_end = time.monotonic() + 0.5
    while time.monotonic() < t_end:
        probe.send("cf1", (0.0, 0.2, 0.0))
        t_silent = time.monotonic()  # when cf1's last command went out; cf2 goes on
        probe.send("cf2", (0.0, 0.2, 0.0))
        time.sleep(0.05)
    held_at = None
    end = time.monotonic() + 20.0
    last_cf2 = 0.0
    while time.monotonic() < end and world.nodes["/world"].mode_of("cf1") == "flying":
        if time.monotonic() - last_cf2 > 0.05:
            probe.send("cf2", (0.0, 0.2 if int(time.monotonic()) % 2 else -0.2, 0.0))
            last_cf2 = time.monotonic()
        if held_at is None and time.monotonic() - t_silent > topics.CMD_TIMEOUT_S + 0.2:
            held_at = sim.pos[0].copy()
        time.sleep(0.005)
    t_land = time.monotonic()
    assert world.nodes["/world"].mode_of("cf1") in ("landing", "grounded")
    assert held_at is not None
    np.testing.assert_allclose(sim.pos[0, :2], held_at[:2], atol=1e-9)  # held, then down
    # landed by the watchdog after LAND_AFTER_S of silence on the world's clock (wall time
    # here; a tick and a poll of slack)
    assert topics.LAND_AFTER_S - 0.05 <= t_land - t_silent <= topics.LAND_AFTER_S + 0.5
    assert world.nodes["/world"].mode_of("cf2") == "flying"
    y2 = sim.pos[1, 1]
    for _ in range(10):
        probe.send("cf2", (0.0, 0.3, 0.0))
        time.sleep(0.05)
    assert wait_for(lambda: sim.pos[1, 1] > y2 + 0.02, 5)  # cf2 carries on
    assert wait_for(lambda: world.nodes["/world"].mode_of("cf1") == "grounded", 10)


def test_nan_and_out_of_range_commands_rejected_and_hold(world):
    probe = world.probe
    probe.call("/cf2/takeoff")
    assert wait_for(lambda: abs(probe.pose("cf2")[2] - 0.4) < 1e-6, 5)
    drive(probe, "cf2", (0.2, 0.0, 0.0), 0.3)
    for bad in [(math.nan, 0.0, 0.0), (0.0, math.inf, 0.0), (50.0, 0.0, 0.0)]:
        probe.send("cf2", bad)
        time.sleep(0.1)
    held = probe.pose("cf2")
    for _ in range(6):
        probe.send("cf2", (math.nan, 0.0, 0.0))
        time.sleep(0.05)
    np.testing.assert_allclose(probe.pose("cf2"), held, atol=1e-12)
    assert np.isfinite(held).all()
    # Exact per-command counting is asserted on the core (test_sim_core.py); over DDS on a loaded
    # machine the world's 1 Hz diagnostics must show the rejections (not every one of the 9).
    assert wait_for(lambda: int(probe.diag.get("rejected_commands", 0)) >= 3, 5)
    assert any(e["type"] == "rejected_command" for e in probe.events)


def test_all_services_fan_out_and_emergency_stop(world):
    probe = world.probe
    resp = probe.call("/all/takeoff")
    assert resp.success and "4/4 robots ok" in resp.message
    assert wait_for(lambda: all(abs(probe.pose(n)[2] - 0.4) < 1e-6 for n in ("cf1", "cf3")), 5)
    resp = probe.call("/all/emergency_stop")
    assert resp.success
    assert wait_for(lambda: json.loads(probe.diag.get("modes", "{}")).get("failed") == 4, 4)
    # the pose topic is published at control_hz: the next message after the stop is on the floor
    assert wait_for(lambda: probe.pose("cf1")[2] == 0.0, 2)
    resp = probe.call("/all/takeoff")
    assert not resp.success and "failed" in resp.message


def test_ground_robot_drives_as_unicycle(world):
    probe = world.probe
    probe.call("/g1/takeoff")  # enables driving
    moved, elapsed = drive_sim(world, "g1", (0.3, 0.0, 0.0), 1.0)  # facing +x: straight ahead
    assert 0.15 < moved[0] <= 0.3 * elapsed + 1e-9 and abs(moved[1]) < 1e-6 and moved[2] == 0.0


def test_neighbors_consumers_and_resource_release(world):
    probe = world.probe
    assert wait_for(lambda: probe.neighbors.get("cf1") == 2, 3)  # cf2 (1 m), g1 (1 m)
    assert probe.neighbors.get("cf3") == 0
    assert wait_for(lambda: probe.consumers is not None, 3)
    assert list(probe.consumers) == [1.0, 0.0, 0.3, 1.0, 1.0]  # nobody in the air yet
    probe.call("/cf2/takeoff")  # cf2 starts inside c1's interaction radius
    # persistent = coverage (LGTC Sec. II): 1.0 demanded - 0.5 carried by cf2 while it stays
    assert wait_for(lambda: probe.consumers[4] < 0.9, 5)
    time.sleep(1.0)  # hovering inside consumes nothing
    assert list(probe.consumers) == pytest.approx([1.0, 0.0, 0.3, 1.0, 0.5])
    assert probe.resources["cf2"] == [0.5]
    probe.call("/cf2/land")  # a landing drone no longer covers: the demand comes back
    assert wait_for(lambda: probe.consumers[4] == 1.0, 5)
    assert probe.resources["cf2"] == [0.5]


def test_relay_delivers_only_within_c(world):
    probe = world.probe
    time.sleep(0.3)
    msg = Float64MultiArray(data=[0.0, 1.5, 42.0])  # from cf1 (index 0)
    probe.out["cf1"].publish(msg)
    assert wait_for(lambda: probe.comm_in["cf2"] and probe.comm_in["g1"], 3)
    time.sleep(0.3)
    assert probe.comm_in["cf2"][0] == [0.0, 1.5, 42.0]
    assert probe.comm_in["cf3"] == [] and probe.comm_in["cf1"] == []
    probe.out["cf1"].publish(Float64MultiArray(data=[2.0, 0.0]))  # spoofed sender index
    time.sleep(0.3)
    assert len(probe.comm_in["cf2"]) == 1
    assert world.nodes["/comm_relay"].malformed == 1


def test_bringup_plan_and_missing_plugins(swarm_file):
    cfg = load_config(swarm_file)
    data = dict(SWARM, policy={"checkpoint": "lgtc_policy:checkpoints/x.pt"})
    path = swarm_file.parent / "with_policy.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg2 = load_config(path)
    specs = plan(cfg2, path)
    names = [s.fqn for s in specs]
    assert names[:3] == ["/world", "/comm_relay", "/swarm_services"]
    assert "/cf1/cbf_filter" in names and "/g1/policy" in names
    assert all(s.parameters["config"] == str(path.resolve()) for s in specs)
    no_cbf = [s.fqn for s in plan(cfg2, path, cbf=False)]
    assert "/cmd_passthrough" in no_cbf and not any("cbf" in n for n in no_cbf)
    assert not any("policy" in s.fqn for s in plan(cfg2, path, policy=False))
    assert len(plan(cfg, swarm_file, policy=False, cbf=False)) == 3
    fake = plan(cfg2, path)[-1].__class__(
        "nope", "nope", "n", "", {}, "not_a_module_xyz.node:Missing"
    )
    with pytest.raises(BringupError, match="not_a_module_xyz.node:Missing"):
        check_plugins([fake])
    assert specs[3].ros_args("p.yaml") == [
        "--ros-args", "-r", "__node:=cbf_filter", "-r", "__ns:=/cf1", "--params-file", "p.yaml",
    ]  # fmt: skip


def test_cli_up_errors_are_clean(swarm_file, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fileversion: 1\n")
    env = dict(os.environ)
    r = subprocess.run(
        [sys.executable, "-m", "sim_bridge.cli", "up", str(bad), "--duration", "1"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr and "error: robots" in r.stderr


def test_swarm_up_processes_with_commander_and_clean_shutdown(swarm_file, tmp_path):
    """`swarm up` in processes mode; this test process is the scripted commander."""
    rec = tmp_path / "run.mcap"
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim_bridge.cli", "up", str(swarm_file), "--mode", "processes",
         "--no-cbf", "--no-policy", "--duration", "40", "--record", str(rec),
         "--log-dir", str(tmp_path / "logs"), "--status-every", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    context = rclpy.Context()
    rclpy.init(context=context)
    probe = Probe(context, [r["name"] for r in SWARM["robots"]])
    ex = MultiThreadedExecutor(context=context)
    ex.add_node(probe.node)
    th = threading.Thread(target=lambda: ex.spin(), daemon=True)
    th.start()
    try:
        assert wait_for(lambda: "cf1" in probe.poses, 30), "no pose from the world process"

        def recorder_listens():  # the supervisor's recorder may join the graph after the world
            subs = probe.node.get_subscriptions_info_by_topic("/cf1/pose")
            return any(s.node_name == "mcap_recorder" for s in subs)

        assert wait_for(recorder_listens, 30), "the recorder never subscribed to /cf1/pose"
        assert probe.call("/all/takeoff", timeout=15).success
        assert wait_for(lambda: abs(probe.pose("cf1")[2] - 0.4) < 1e-6, 15)
        start = probe.pose("cf1")

        def moved_west():
            probe.send("cf1", (-0.3, 0.0, 0.0))
            return probe.pose("cf1")[0] < start[0] - 0.15

        assert wait_for(moved_west, 15, period=0.05)  # ~0.5 s at 0.3 m/s when unloaded
        time.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        ex.shutdown()
        rclpy.shutdown(context=context)
        th.join(timeout=5)
        probe.node.destroy_node()
    assert proc.returncode == 0, out
    assert "[swarm] done:" in out and "recorded" in out
    # no orphan node processes
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "logs")], capture_output=True, text=True)
    assert left.stdout.strip() == ""
    from sim_bridge.recording import read_config, read_messages
    from sim_bridge.render import render

    assert read_config(rec)["robots"][0]["name"] == "cf1"
    xs = [m.pose.position.x for t, _, m in read_messages(rec, ["/cf1/pose"])]
    assert xs and min(xs) < xs[0] - 0.15
    # the modes too (the latched one at the recorder's join, then every change)
    modes = [m.data for t, _, m in read_messages(rec, ["/cf1/mode"])]
    assert modes[0] in ("grounded", "taking_off") and "flying" in modes, modes
    png = tmp_path / "run.png"
    assert "final state" in render(rec, png)
    assert png.stat().st_size > 5000


def test_the_recorder_gets_a_mode_published_before_it_joined(swarm_file, tmp_path, context):
    """``/<robot>/mode`` is latched: a recorder started after the last change still writes
    the current mode, with a transient-local offered QoS so a replay matches live nodes."""
    from mcap.reader import make_reader
    from sim_bridge.recording import read_messages
    from sim_bridge.ros import qos
    from sim_bridge.ros.recorder import make_recorder

    cfg = load_config(swarm_file)
    owner = rclpy.create_node("mode_owner", context=context)
    pub = owner.create_publisher(String, "/cf2/mode", qos.LATCHED)
    pub.publish(String(data="failed"))
    rec = make_recorder(tmp_path / "late.mcap", cfg, context=context)
    ex = MultiThreadedExecutor(context=context)
    ex.add_node(owner)
    ex.add_node(rec)
    try:
        assert wait_for(lambda: (ex.spin_once(timeout_sec=0.05), rec.count)[1] >= 1, 10)
    finally:
        rec.close()
        ex.shutdown()
        rec.destroy_node()
        owner.destroy_node()
    got = [(t, m.data) for t, _, m in read_messages(tmp_path / "late.mcap")]
    assert got == [("/cf2/mode", "failed")]
    with open(tmp_path / "late.mcap", "rb") as fh:
        channels = make_reader(fh).get_summary().channels.values()
        offered = {c.topic: c.metadata["offered_qos_profiles"] for c in channels}
    assert "durability: 1" in offered["/cf2/mode"] and "durability: 2" in offered["/cf2/pose"]


def test_goto_commander_through_passthrough(swarm_file):
    """--goto --no-cbf: swarm_goto -> cmd_vel_nominal -> cmd_passthrough -> cmd_vel -> world."""
    cfg = load_config(swarm_file)
    specs = plan(cfg, swarm_file, cbf=False, goto=True, autostart=True)
    assert [s.name for s in specs][-2:] == ["cmd_passthrough", "swarm_goto"]
    sp = Spinner(specs, cfg.robot_names)
    try:
        probe = sp.probe
        # cf3 starts at (-1.9, -1.9) and is sent to c1 at (1.0, 0.0)
        assert wait_for(lambda: "cf3" in probe.poses and probe.pose("cf3")[2] > 0.39, 10)
        start = probe.pose("cf3")
        heading = np.array([1.0 + 1.9, 0.0 + 1.9]) / np.hypot(2.9, 1.9)
        # flies at ~0.5 m/s straight towards the consumer
        assert wait_for(lambda: (probe.pose("cf3") - start)[:2] @ heading > 0.3, 15)
        moved = probe.pose("cf3") - start
        assert abs(moved[:2] @ np.array([-heading[1], heading[0]])) < 0.05  # straight line
    finally:
        sp.close()


def test_external_robot_pose_feeds_neighbors_and_backend_override(tmp_path):
    data = dict(SWARM)
    data["robots"] = [
        {"name": "cf1", "type": "cf", "pose": [0.0, 0.0, 0.0, 0.0]},
        {"name": "real", "kind": "crazyflie", "backend": "cflib",
         "uri": "radio://0/80/2M/E7E7E7E7E7", "pose": [0.5, 0.0, 0.0, 0.0]},
    ]  # fmt: skip
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    world_only = [s for s in plan(cfg, path, policy=False, cbf=False) if s.name == "world"]
    sp = Spinner(world_only, cfg.robot_names)
    try:
        probe = sp.probe
        assert wait_for(lambda: "cf1" in probe.poses, 10)
        assert probe.neighbors.get("cf1", 0) == 0  # the real robot's pose is not known yet
        pub = probe.node.create_publisher(PoseStamped, "/real/pose", 1)
        msg = PoseStamped()
        msg.pose.position.x, msg.pose.position.z = 0.6, 0.5
        msg.pose.orientation.w = 1.0

        def seen():
            pub.publish(msg)
            return probe.neighbors.get("cf1") == 1

        assert wait_for(seen, 5)
        world = sp.nodes["/world"]
        assert world.sim.pos[1].tolist() == [0.6, 0.0, 0.5] and world.mode_of("real") == "flying"
        assert set(world.pose_pub) == {0}  # the world never publishes a real robot's pose
    finally:
        sp.close()
    forced = [s for s in plan(cfg, path, backend="sim", policy=False, cbf=False)]
    assert forced[0].parameters["backend_override"] == "sim"
    assert not any(s.name == "crazyflie_bridge" for s in forced)
    sp = Spinner(forced[:1], cfg.robot_names)
    try:
        assert wait_for(lambda: "real" in sp.probe.poses, 10)  # simulated now
    finally:
        sp.close()


@pytest.mark.parametrize("executor", ["events", "multi"])
def test_run_composed_reports_a_failing_callback(swarm_file, executor):
    import io

    from sim_bridge.ros.runner import run_composed

    cfg = load_config(swarm_file)

    def ready(nodes, context, ex):
        def boom():
            raise RuntimeError("boom")

        nodes["/world"].create_timer(0.3, boom)

    res = run_composed(
        plan(cfg, swarm_file, policy=False, cbf=False),
        cfg,
        duration=5.0,
        executor=executor,
        status_every=0,
        out=io.StringIO(),
        on_ready=ready,
    )
    assert res.exit_code == 1 and res.wall_s < 4.0
    assert "RuntimeError: boom" in res.errors[0]


def _flying_run_that_fails(swarm_file, ready):
    """A composed run of the world and services, robots taking off at start, with
    ``ready(nodes, context, ex)`` planting its failure; returns (result, output, wall [s])."""
    import io

    from sim_bridge.ros.runner import run_composed

    cfg = load_config(swarm_file)
    out = io.StringIO()
    t0 = time.monotonic()
    res = run_composed(
        plan(cfg, swarm_file, policy=False, cbf=False, autostart=True),
        cfg,
        duration=30.0,
        status_every=0,
        out=out,
        on_ready=ready,
    )
    return res, out.getvalue(), time.monotonic() - t0


def test_a_failing_callback_lands_every_robot_before_the_composed_run_ends(swarm_file):
    """A node's callback raises while the robots fly: the run ends (as before), but only
    after the world has landed every drone and disabled the ground robot; they were left in
    the air when the world stopped."""
    state = {}

    def ready(nodes, context, ex):
        state["world"] = world = nodes["/world"]

        def boom():
            if all(m == "flying" for m in world.sim.mode_names()):
                raise RuntimeError("boom")

        nodes["/swarm_services"].create_timer(0.1, boom)

    res, text, _ = _flying_run_that_fails(swarm_file, ready)
    assert res.stop_reason == "error" and "RuntimeError: boom" in res.errors[0]
    assert "[swarm] landing 4 robot(s) before the run ends" in text, text
    assert "[swarm] landed in" in text, text
    world = state["world"]
    assert world.sim.mode_names() == ["grounded"] * 4
    assert np.all(world.sim.pos[:3, 2] <= 1e-9)  # the drones on the floor


def test_a_broken_world_is_not_waited_for_at_the_end(swarm_file):
    """The world itself fails (its step raises once everyone flies): nobody can land the
    robots, and the run does not wait the whole landing time for modes that never change."""
    from sim_bridge.ros.runner import LAND_BEFORE_STOP_S

    def ready(nodes, context, ex):
        sim = nodes["/world"].sim
        step = sim.step
        broke = []

        def broken_step():
            if broke or all(m == "flying" for m in sim.mode_names()):
                broke.append(True)  # for good
                raise RuntimeError("world broke")
            return step()

        sim.step = broken_step

    res, text, took = _flying_run_that_fails(swarm_file, ready)
    assert res.stop_reason == "error" and "world broke" in res.errors[0]
    assert "[swarm] not landed after" in text, text
    assert took < LAND_BEFORE_STOP_S  # cut at _NO_PROGRESS_S, not the full wait


def test_run_composed_should_stop_ends_the_run(swarm_file):
    import io

    from sim_bridge.ros.runner import run_composed

    cfg = load_config(swarm_file)
    seen = {}

    def ready(nodes, context, ex):
        seen["world"] = nodes["/world"]

    res = run_composed(
        plan(cfg, swarm_file, policy=False, cbf=False),
        cfg,
        duration=30.0,
        status_every=0,
        out=io.StringIO(),
        on_ready=ready,
        should_stop=lambda: seen["world"].sim.t >= 1.0,
    )
    assert res.stop_reason == "should_stop" and res.exit_code == 0 and not res.errors
    assert 1.0 <= res.sim_s < 3.0 and res.wall_s < 10.0


def test_swarm_monitor_demand_met_time_and_foreign_tables(swarm_file, context):
    """The run's one observer: the sim time at which every demand was met (first crossing of
    DEMAND_MET_TOL), the linger rule, and a /consumers table of another swarm ignored and
    counted (it raised in the callback and stopped the run)."""
    import io

    from rosgraph_msgs.msg import Clock
    from sim_bridge.ros.runner import SwarmMonitor

    mon = SwarmMonitor(load_config(swarm_file), 0, io.StringIO(), context=context)
    try:

        def table(remaining):  # x, y, radius, active, remaining energy
            return Float64MultiArray(data=[1.0, 0.0, 0.3, 1.0, remaining])

        def clock(t):
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = int(t), int(round((t % 1) * 1e9))
            mon._on_clock(msg)

        clock(1.0)
        mon._on_consumers(table(0.5))
        assert mon.remaining == 0.5 and mon.demand_met_t is None
        mon._on_consumers(Float64MultiArray(data=[1.0, 2.0, 3.0]))  # another swarm's table
        assert mon.malformed == 1 and mon.remaining == 0.5
        clock(2.5)
        mon._on_consumers(table(0.0009))  # <= 1e-3 of the initial demand 1.0
        assert mon.demand_met_t == 2.5 and not mon.demand_met_for(1.0)
        clock(3.0)
        mon._on_consumers(table(0.2))  # demand back (a robot left): the first crossing stays
        assert mon.demand_met_t == 2.5
        clock(3.5)
        assert mon.demand_met_for(1.0) and not mon.demand_met_for(1.5)
    finally:
        mon.destroy_node()


def test_a_garbage_consumers_table_does_not_stop_the_run(swarm_file):
    """Over DDS, a composed run (world, relay, services) whose ``/consumers`` also carries
    tables of the right shape full of NaN / inf / overflowing values from another node: the
    run's monitor counts and ignores them (a NaN "active" flag raised ValueError in its
    callback, which stopped the whole swarm with a traceback), and the run ends as asked with
    a finite remaining demand."""
    import io

    from sim_bridge.ros.runner import run_composed

    cfg = load_config(swarm_file)
    cols = len(topics.CONSUMER_FIXED_FIELDS) + len(cfg.resource_types)
    bad = [[math.nan] * cols, [math.inf] * cols, [1.0, 0.0, 0.3, 1e308, 1.0]]
    state = {"sent": 0}

    def ready(nodes, context, ex):
        state["world"] = nodes["/world"]
        state["mon"] = next(n for n in ex.get_nodes() if n.get_name() == "swarm_monitor")
        probe = rclpy.create_node("garbage_consumers", context=context)
        pub = probe.create_publisher(Float64MultiArray, topics.CONSUMERS, 10)

        def send():
            pub.publish(Float64MultiArray(data=bad[state["sent"] % len(bad)]))
            state["sent"] += 1

        probe.create_timer(0.02, send)
        ex.add_node(probe)

    res = run_composed(
        plan(cfg, swarm_file, policy=False, cbf=False),
        cfg,
        duration=30.0,
        status_every=0,
        out=io.StringIO(),
        on_ready=ready,
        should_stop=lambda: state["sent"] >= 30 and state["world"].sim.t >= 1.0,
    )
    assert res.stop_reason == "should_stop", (res.stop_reason, res.errors)
    assert res.exit_code == 0 and not res.errors
    assert state["mon"].malformed >= 10
    assert math.isfinite(res.remaining_demand) and res.remaining_demand == 1.0
    assert state["mon"].active == 1


SLOW_CALLBACK_RUN = """
import io, sys, threading, time
from sim_bridge.bringup import plan
from sim_bridge.config import load_config
from sim_bridge.ros.runner import run_composed

cfg = load_config(sys.argv[1])
started = threading.Event()

def ready(nodes, context, ex):
    world = nodes["/world"]

    def slow():
        started.set()
        time.sleep(0.5)  # still running when the run is told to stop
        world.get_logger().info("slow callback done: " + world.get_name())
        world.create_publisher(type(world.consumers_msg()), "/slow_probe", 1)
        print("slow callback used its node", flush=True)

    world.create_timer(0.2, slow)

res = run_composed(plan(cfg, sys.argv[1], policy=False, cbf=False), cfg, duration=20.0,
                   executor="multi", status_every=0, out=io.StringIO(), on_ready=ready,
                   should_stop=started.is_set)
print("stop_reason", res.stop_reason, res.exit_code, flush=True)
"""


def test_run_composed_multi_waits_for_running_callbacks_before_destroying(swarm_file):
    """No "cannot use Destroyable ..." / "exception was never retrieved" at shutdown."""
    r = subprocess.run(
        [sys.executable, "-c", SLOW_CALLBACK_RUN, str(swarm_file)],
        capture_output=True, text=True, env=dict(os.environ), timeout=120,
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "stop_reason should_stop 0" in out
    assert "slow callback used its node" in out
    assert "never retrieved" not in out and "Destroyable" not in out, out


def test_run_processes_should_stop_ends_the_run(swarm_file, tmp_path):
    import io

    from rosgraph_msgs.msg import Clock
    from sim_bridge.ros.runner import run_processes

    cfg = load_config(swarm_file)
    clock = {"t": 0.0}

    def ready(context, ex):
        node = rclpy.create_node("clock_probe", context=context)

        def on_clock(msg):
            clock["t"] = msg.clock.sec + msg.clock.nanosec * 1e-9

        node.create_subscription(Clock, topics.CLOCK, on_clock, 10)
        ex.add_node(node)

    res = run_processes(
        plan(cfg, swarm_file, policy=False, cbf=False),
        cfg,
        duration=60.0,
        status_every=0,
        out=io.StringIO(),
        log_dir=str(tmp_path / "logs"),
        on_ready=ready,
        should_stop=lambda: clock["t"] >= 1.0,
    )
    assert res.stop_reason == "should_stop" and res.exit_code == 0 and not res.errors
    assert res.wall_s < 40.0
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "logs")], capture_output=True, text=True)
    assert left.stdout.strip() == ""
