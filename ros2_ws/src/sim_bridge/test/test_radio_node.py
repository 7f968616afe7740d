"""Bridge nodes over DDS: Crazyflie bridge on loopback fakes, ground bridge on fake drivers."""

from __future__ import annotations

import math
import struct
import threading
import time

import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseStamped, Twist, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sim_bridge.fake_crazyflie import FakeCrazyflie, decode_velocity_setpoint
from sim_bridge.ros.bridge_node import BridgeSetupError
from sim_bridge.ros.crazyflie_node import CrazyflieBridgeNode
from sim_bridge.ros.graph import wait_for
from sim_bridge.ros.ground_node import GroundBridgeNode
from sim_bridge.ros.qos import LATCHED
from sim_bridge.topics import DIAGNOSTICS
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger

pytestmark = pytest.mark.ros


def base_config(robots: list[dict]) -> dict:
    return {
        "fileversion": 1,
        "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
        "resource_types": ["energy"],
        "comm_radius": 2.0,
        "sensing_radius": 1.0,
        "robots": robots,
        "consumers": [
            {"name": "c1", "position": [1.0, 1.0], "radius": 0.3, "demand": {"energy": 5}}
        ],
    }


class Harness:
    """A ROS context with an executor thread, the bridge under test and a client node."""

    def __init__(self, executor: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        if executor == "events":
            from rclpy.experimental.events_executor import EventsExecutor

            self.executor = EventsExecutor(context=self.context)
        else:
            self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.client = Node("radio_test_client", context=self.context)
        self.executor.add_node(self.client)
        self.nodes = [self.client]
        self.received: dict[str, list] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        # spin_once in a loop, as the bringup's composed runner does (EventsExecutor.spin()
        # of this rclpy never returns control to its timers when run off the main thread)
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def listen(self, msg_type, topic: str, qos=10) -> list:
        box = self.received.setdefault(topic, [])
        self.client.create_subscription(msg_type, topic, box.append, qos)
        return box

    def call(self, service: str, timeout: float = 5.0) -> Trigger.Response:
        cli = self.client.create_client(Trigger, service)
        assert cli.wait_for_service(timeout_sec=timeout), f"{service} not advertised"
        future = cli.call_async(Trigger.Request())
        assert wait_for(future.done, timeout), f"{service} did not answer"
        return future.result()

    def advertised(self, service: str) -> bool:
        names = {n for n, _ in self.client.get_service_names_and_types()}
        return service in names

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        for node in self.nodes:
            node.destroy_node()
        self.executor.shutdown()
        rclpy.shutdown(context=self.context)


@pytest.fixture(params=["multi", "events"])
def harness(request):
    """Both executors the bringup composes nodes with (MultiThreaded and rclpy's Events)."""
    h = Harness(request.param)
    yield h
    h.close()


def twist_stamped(node: Node, vx: float, vy: float, vz: float = 0.0) -> TwistStamped:
    msg = TwistStamped()
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.header.frame_id = "world"
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = vx, vy, vz
    return msg


# The bringup composes the bridges under the EventsExecutor (runner.EVENTS_SAFE). Under rclpy's
# MultiThreadedExecutor this node's cmd_vel deliveries stall for > 0.3 s often enough that the
# watchdog's hold dominates the stream (also measured in benchmarks/radio.py), so this
# end-to-end flight check runs on the executor the bringup actually uses.
@pytest.mark.parametrize("harness", ["events"], indirect=True)
def test_crazyflie_bridge_over_dds(harness, tmp_path):
    fake_a = FakeCrazyflie(battery_v=3.7, position=(0.5, 0.0, 0.0))
    fake_b = FakeCrazyflie()
    fake_b.set_responding(False)  # cfb's radio is silent at start
    cf = {
        "kind": "crazyflie",
        "backend": "cflib",
        "takeoff_height": 0.3,
        "battery": {"warning_v": 3.5, "critical_v": 3.2},
        "resources": {"energy": {"amount": 1.0, "depletion": "persistent"}},
    }
    config = base_config(
        [
            {"name": "cfa", **cf, "uri": fake_a.uri, "pose": [0.5, 0.0, 0.0, 0.0]},
            {"name": "cfb", **cf, "uri": fake_b.uri, "pose": [-0.5, 0.0, 0.0, 0.0]},
        ]
    )
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(config))
    states_a = harness.listen(String, "/cfa/link_state", LATCHED)
    states_b = harness.listen(String, "/cfb/link_state", LATCHED)
    modes_a = harness.listen(String, "/cfa/mode", LATCHED)
    poses = harness.listen(PoseStamped, "/cfa/pose")
    resources = harness.listen(Float64MultiArray, "/cfa/resources")
    neighbors = harness.listen(PoseArray, "/cfa/neighbors")
    diagnostics = harness.listen(DiagnosticArray, DIAGNOSTICS)
    cmd_a = harness.client.create_publisher(TwistStamped, "/cfa/cmd_vel", 10)
    try:
        bridge = harness.add(
            CrazyflieBridgeNode(
                "crazyflie_bridge",
                context=harness.context,
                parameter_overrides=[
                    Parameter("config", value=str(path)),
                    Parameter("toc_cache_dir", value=str(tmp_path / "toc")),
                    Parameter("connect_timeout_s", value=1.0),
                    Parameter("land_after_s", value=1.5),
                ],
            )
        )
        assert wait_for(lambda: states_a and states_a[-1].data == "up")
        # a silent radio is connecting or, after its connect timeout, lost: never up
        assert states_b and states_b[-1].data in ("connecting", "lost")
        # cfb's services are not advertised while its link is not up; cfa's are
        assert wait_for(lambda: harness.advertised("/cfa/takeoff"))
        assert not harness.advertised("/cfb/takeoff")
        assert not harness.advertised("/cfb/emergency_stop")

        response = harness.call("/cfa/takeoff")
        assert response.success, response.message
        assert wait_for(lambda: bridge.links["cfa"].status().flight.value == "hovering", 5.0)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            cmd_a.publish(twist_stamped(harness.client, 0.1, 0.05))
            time.sleep(0.05)
        cmd_a.publish(twist_stamped(harness.client, math.nan, 0.05))
        cmd_a.publish(twist_stamped(harness.client, 0.1, math.inf))
        time.sleep(0.1)
        sps = [r for r in fake_a.records() if r.t >= t0 and decode_velocity_setpoint(r)]
        expected = bytes([0x7C]) + struct.pack("<Bffff", 8, 0.1, 0.05, 0.0, 0.0)
        # Until the first cmd_vel crosses DDS the link streams its hover setpoint. From then on
        # the wire carries only the commanded setpoint, byte-exact, or the watchdog's zero hold
        # (when the executor delivers a command more than 0.3 s late, which rclpy's
        # MultiThreadedExecutor sometimes does); the NaN/inf commands published last change
        # nothing. The streaming *rate* is asserted on the core link (test_radio_link.py).
        hold = bytes([0x7C]) + struct.pack("<Bffff", 8, 0.0, 0.0, 0.0, 0.0)
        first = next((k for k, r in enumerate(sps) if r.raw == expected), None)
        assert first is not None, "the commanded setpoint never reached the wire"
        streamed = sps[first:]
        assert sum(r.raw == expected for r in streamed) >= 5
        assert all(r.raw in (expected, hold) for r in streamed), [
            (round(r.t - t0, 3), r.raw.hex()) for r in streamed if r.raw not in (expected, hold)
        ]

        assert wait_for(lambda: poses and poses[-1].pose.position.x > 0.55, 3.0)
        assert poses[-1].header.frame_id == "world"
        # battery 3.7 V between critical 3.2 and full 4.2 V: half the energy resource
        assert wait_for(lambda: bool(resources), 3.0)
        assert resources[-1].layout.dim[0].label == "resources"
        assert resources[-1].data[0] == pytest.approx(0.5, abs=1e-3)
        assert wait_for(lambda: bool(neighbors), 3.0)
        assert len(neighbors[-1].poses) == 0  # cfb's pose is unknown (no link)

        assert wait_for(lambda: bool(diagnostics), 3.0)
        by_robot = {st.hardware_id: st for st in diagnostics[-1].status}
        values = {kv.key: kv.value for kv in by_robot["cfa"].values}
        assert values["link"] == "up" and values["flight"] in ("flying", "holding", "hovering")
        assert float(values["battery_v"]) == pytest.approx(3.7, abs=1e-3)
        assert by_robot["cfb"].level != by_robot["cfa"].level  # cfb is not up

        fake_b.set_responding(True)
        assert wait_for(lambda: states_b[-1].data == "up", 15.0)
        assert harness.call("/cfb/takeoff").success
        assert harness.call("/cfb/emergency_stop").success
        assert wait_for(lambda: fake_b.emergency_stopped, 2.0)
        assert harness.call("/cfa/land").success
        assert wait_for(lambda: not fake_a.flying, 5.0)
        # /cfa/mode: the link's flight state, latched, on every change
        assert wait_for(lambda: modes_a and modes_a[-1].data == "grounded", 5.0)
        seen = [m.data for m in modes_a]
        assert seen[0] == "grounded" and "taking_off" in seen and "landing" in seen, seen
        assert all(a != b for a, b in zip(seen, seen[1:])), seen  # changes only
    finally:
        fake_a.close()
        fake_b.close()


def test_ground_bridge_over_dds(harness, tmp_path):
    ground = {"kind": "ground", "backend": "external", "max_speed": 0.3, "max_yaw_rate": 2.0}
    config = base_config(
        [
            {
                "name": "g1",
                **ground,
                "cmd_topic": "/g1_driver/cmd_vel",
                "odom_topic": "/g1_driver/odom",
                "pose": [0.0, 0.0, 0.0, 0.0],
            },
            {
                "name": "g2",
                **ground,
                "cmd_topic": "/g2_driver/cmd_vel",
                "odom_topic": "/g2_driver/odom",
                "pose": [0.5, 0.0, 0.0, 0.0],
            },
        ]
    )
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(config))
    twists = harness.listen(Twist, "/g1_driver/cmd_vel")
    modes = harness.listen(String, "/g1/mode", LATCHED)
    poses = harness.listen(PoseStamped, "/g1/pose")
    neighbors = harness.listen(PoseArray, "/g1/neighbors")
    odom_pubs = {
        name: harness.client.create_publisher(Odometry, f"/{name}_driver/odom", 10)
        for name in ("g1", "g2")
    }
    cmd = harness.client.create_publisher(TwistStamped, "/g1/cmd_vel", 10)
    harness.add(
        GroundBridgeNode(
            "ground_bridge",
            context=harness.context,
            parameter_overrides=[Parameter("config", value=str(path))],
        )
    )
    time.sleep(0.5)
    assert not harness.advertised("/g1/takeoff")  # no odometry yet: link not up

    stop = threading.Event()

    def drive_odometry():
        yaw = math.pi / 2
        while not stop.is_set():
            for name, x in (("g1", 0.0), ("g2", 0.5)):
                msg = Odometry()
                msg.pose.pose.position.x = x
                msg.pose.pose.orientation.z = math.sin(yaw / 2)
                msg.pose.pose.orientation.w = math.cos(yaw / 2)
                odom_pubs[name].publish(msg)
            time.sleep(0.05)

    odom_thread = threading.Thread(target=drive_odometry, daemon=True)
    odom_thread.start()
    try:
        assert harness.call("/g1/takeoff", timeout=10.0).success
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.6:
            cmd.publish(twist_stamped(harness.client, 0.0, 0.2))  # world +y = forward at yaw 90
            time.sleep(0.05)
        assert wait_for(lambda: any(abs(t.linear.x - 0.2) < 1e-9 for t in twists), 2.0)
        driving = [t for t in twists if t.linear.x != 0.0]
        assert all(t.linear.x == pytest.approx(0.2) and abs(t.angular.z) < 1e-9 for t in driving)
        # commands stop: zero twist (hold)
        assert wait_for(lambda: twists[-1].linear.x == 0.0 and twists[-1].angular.z == 0.0, 2.0)
        assert poses and poses[-1].pose.position.x == pytest.approx(0.0)
        assert wait_for(lambda: neighbors and len(neighbors[-1].poses) == 1, 3.0)
        assert neighbors[-1].poses[0].position.x == pytest.approx(0.5)
        assert harness.call("/g1/land").success
        # /g1/mode: enabled, then disabled again (what a DMAR node reads as "down")
        assert wait_for(lambda: modes and modes[-1].data == "grounded", 3.0)
        seen = [m.data for m in modes]
        assert seen[0] == "grounded" and {"hovering", "flying", "holding"} & set(seen), seen
    finally:
        stop.set()
        odom_thread.join(timeout=2.0)


def test_missing_config_is_a_clear_error(harness):
    with pytest.raises(BridgeSetupError, match="config"):
        CrazyflieBridgeNode("crazyflie_bridge", context=harness.context)


def test_rejected_command_warnings_are_throttled_before_the_logger(monkeypatch):
    """A burst of rejected cmd_vel costs one logger call a second per robot (rclpy's own
    throttle looks up the caller's source file on every call, ~3 ms each)."""
    from types import SimpleNamespace

    from sim_bridge.ros import crazyflie_node

    warnings: list[str] = []
    logger = SimpleNamespace(warning=warnings.append)
    fake_node = SimpleNamespace(_last_reject_warning={}, get_logger=lambda: logger)
    now = [100.0]
    monkeypatch.setattr(crazyflie_node.time, "monotonic", lambda: now[0])
    for _ in range(50):
        CrazyflieBridgeNode._warn_rejected(fake_node, "cfa", "cfa: cmd_vel stale")
        CrazyflieBridgeNode._warn_rejected(fake_node, "cfb", "cfb: cmd_vel stale")
        now[0] += 0.01
    assert warnings == ["cfa: cmd_vel stale", "cfb: cmd_vel stale"]
    now[0] += crazyflie_node.REJECT_WARNING_INTERVAL_S
    CrazyflieBridgeNode._warn_rejected(fake_node, "cfa", "cfa: cmd_vel future")
    assert warnings[-1] == "cfa: cmd_vel future"
