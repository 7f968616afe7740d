"""The routing world: views (exact rows), solid obstacle cells, task visits, the lockstep, the
markers, and the world node's views, ``/tasks`` and ``/swarm/ps_step`` over real DDS."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import rclpy
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from sim_bridge import topics
from sim_bridge.bringup import load_plugin, plan
from sim_bridge.config import load_config
from sim_bridge.ros.graph import wait_for as _wait_for
from sim_bridge.ros.markers import arrow_markers, cluster_markers, routing_markers
from sim_bridge.routing import Grid, Lockstep, clip_motion, view_table
from sim_bridge.sim import Simulator
from std_msgs.msg import Float64MultiArray, UInt64MultiArray
from visualization_msgs.msg import Marker

# ----------------------------------------------------------------------------- views

G5 = Grid(cell_size=1.0, origin=(0.0, 0.0), rows=5, cols=5)


def test_view_hand_made_5x5():
    obstacles = np.zeros((5, 5), dtype=bool)
    obstacles[2, 3] = obstacles[0, 0] = True
    tasks = np.zeros((5, 5), dtype=bool)
    tasks[1, 2] = tasks[4, 4] = True
    # robot 0 at (2, 2), robot 1 at (3, 2), robot 2 at (2, 2) too, robot 3 far, robot 4 unknown
    cells = np.array([[2, 2], [3, 2], [2, 2], [4, 4], [-1, -1]])
    got = view_table(G5, 1, obstacles, tasks, cells, 0)
    want = [
        [2, 2, 0, 0, 0],  # own cell first, each robot in it once, ascending index
        [2, 2, 0, 0, 2],
        [1, 2, 0, 1, -1],  # then ascending flat index: 7, 11, 13, 17
        [2, 1, 0, 0, -1],
        [2, 3, 1, 0, -1],
        [3, 2, 0, 0, 1],
    ]
    np.testing.assert_array_equal(got, want)
    # robot 1's view, k = 2, clipped at the grid's edge; (4, 4)'s task is not within 2 of (3, 2)
    got = view_table(G5, 2, obstacles, tasks, cells, 1)
    flat = got[:, 0] * 5 + got[:, 1]
    assert tuple(got[0]) == (3, 2, 0, 0, 1)
    assert (np.diff(flat[1:]) >= 0).all() and 17 not in flat[1:]
    ball = {(r, c) for r in range(5) for c in range(5) if abs(r - 3) + abs(c - 2) <= 2}
    assert {(int(r), int(c)) for r, c in got[:, :2]} == ball
    assert len(got) == len(ball) + 1  # (2, 2) holds two robots
    rows22 = got[(got[:, 0] == 2) & (got[:, 1] == 2)]
    assert rows22[:, 4].tolist() == [0, 2]
    assert got[(got[:, 0] == 2) & (got[:, 1] == 3), 2].tolist() == [1]
    assert got[(got[:, 0] == 1) & (got[:, 1] == 2), 3].tolist() == [1]
    # unknown viewer: empty view
    assert view_table(G5, 1, obstacles, tasks, cells, 4).shape == (0, 5)


def base_cfg(**routing):
    data = {
        "fileversion": 1,
        "arena": {"x": [-0.5, 4.5], "y": [-0.5, 4.5], "z": [0.0, 1.0]},
        "rates": {"control_hz": 20, "sim_hz": 100, "clock_hz": 20, "markers_hz": 2},
        "robot_types": {"cf": {"kind": "crazyflie", "takeoff_height": 0.3, "max_speed": 0.5}},
        "robots": [
            {"name": "cf1", "type": "cf", "pose": [0.0, 0.0, 0.0, 0.0]},
            {"name": "cf2", "type": "cf", "pose": [2.0, 0.0, 0.0, 0.0]},
            {"name": "g1", "kind": "ground", "pose": [4.0, 4.0, 0.0, 0.0]},
        ],
        "routing": {
            "cell_size": 1.0,
            "obstacles": [[1, 0], [0, 3]],
            "tasks": [[0, 1], [3, 3]],
            "k": 1,
            **routing,
        },
    }
    return data


def test_simulator_view_and_tasks_follow_the_contract():
    sim = Simulator(load_config(base_cfg()))
    v = sim.view("cf1")
    np.testing.assert_array_equal(v, [[0, 0, 0, 0, 0], [0, 1, 0, 1, -1], [1, 0, 1, 0, -1]])
    assert sim.view("cf2", known=np.array([True, False, True])).shape == (0, 5)  # own unknown
    sim.pos[1, :2] = (1.2, -0.1)  # cf2 in (0, 1): seen by cf1 only while its pose is known
    assert sim.view("cf1")[1].tolist() == [0, 1, 0, 1, 1]
    assert sim.view("cf1", known=np.array([True, False, True]))[1].tolist() == [0, 1, 0, 1, -1]
    sim.pos[1, :2] = (2.0, 0.0)
    t = sim.tasks()
    np.testing.assert_array_equal(t, [[0, 1, 0, -1, -1], [3, 3, 0, -1, -1]])
    np.testing.assert_array_equal(sim.robot_cells(), [[0, 0], [0, 2], [4, 4]])
    assert sim.at_centre(1e-9).all()


# ----------------------------------------------------------------------------- solidity


def test_commanded_into_an_obstacle_stops_at_its_edge():
    sim = Simulator(load_config(base_cfg()))
    sim.takeoff("cf1")
    while sim.mode_names()[0] != "flying":
        sim.step()
    for _ in range(400):  # 4 s at 0.5 m/s north: would end at y = 2
        sim.set_command("cf1", [0.0, 0.5, 0.0])
        sim.step()
    assert sim.pos[0, 1] == pytest.approx(0.5, abs=1e-6) and sim.pos[0, 1] < 0.5
    assert sim.robot_cells()[0].tolist() == [0, 0] and sim.blocked[0] > 0
    # diagonal into the corner: slides east along the wall, never enters (1, 0)
    for _ in range(300):
        sim.set_command("cf1", [0.3, 0.3, 0.0])
        sim.step()
        assert sim.robot_cells()[0].tolist() != [1, 0]
        if sim.pos[0, 0] < 0.5:
            assert sim.pos[0, 1] < 0.5  # held below the wall until it passes x = 0.5
    # past the wall's corner it goes on north-east through the free (1, 1)
    assert sim.robot_cells()[0].tolist() == [1, 1]


@st.composite
def grids_and_moves(draw):
    rows, cols = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    cs = draw(st.sampled_from([0.1, 0.25, 1.0]))
    blocked = np.array(draw(st.lists(st.booleans(), min_size=rows * cols, max_size=rows * cols)))
    blocked = blocked.reshape(rows, cols)
    free = np.argwhere(~blocked)
    if len(free) == 0:
        blocked[0, 0] = False
        free = np.array([[0, 0]])
    start = free[draw(st.integers(0, len(free) - 1))]
    offset = draw(st.tuples(*[st.floats(-0.49, 0.49)] * 2))
    moves = draw(
        st.lists(st.tuples(*[st.floats(-3.0, 3.0, allow_nan=False)] * 2), min_size=1, max_size=15)
    )
    return Grid(cs, (0.0, 0.0), rows, cols), blocked, start, np.array(offset) * cs, moves


@settings(max_examples=300)
@given(grids_and_moves())
def test_property_clip_motion_never_enters_an_obstacle(case):
    grid, blocked, start, offset, moves = case
    p = grid.centre(start) + offset
    for dx, dy in moves:
        end = p + np.array([dx, dy]) * grid.cell_size
        q = clip_motion(grid, blocked, p[None], end[None])[0]
        r, c = grid.cell_of(q)
        assert not blocked[r, c]
        # the robot moved along an L (x, then y) no farther than commanded on each axis
        assert abs(q[0] - p[0]) <= abs(dx * grid.cell_size) + 1e-12
        assert abs(q[1] - p[1]) <= abs(dy * grid.cell_size) + 1e-12
        p = q


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.booleans(), min_size=16, max_size=16),
    st.lists(st.tuples(*[st.floats(-0.6, 0.6)] * 2), min_size=1, max_size=6),
)
def test_property_simulated_robot_never_enters_an_obstacle(bits, commands):
    blocked = np.array(bits).reshape(4, 4)
    blocked[0, 0] = False  # cf1's start cell
    data = {
        "fileversion": 1,
        "arena": {"x": [-0.5, 3.5], "y": [-0.5, 3.5], "z": [0.0, 1.0]},
        "robots": [{"name": "cf1", "kind": "crazyflie", "pose": [0, 0, 0, 0], "max_speed": 1}],
        "routing": {"cell_size": 1.0, "k": 1, "obstacles": np.argwhere(blocked).tolist()},
    }
    sim = Simulator(load_config(data), dt=0.05)
    sim.takeoff(0)
    for vx, vy in commands:
        for _ in range(20):  # each command for 1 s (commands up to 0.6 m/s, the cap 1 m/s)
            sim.set_command(0, [vx, vy, 0.0])
            sim.step()
            r, c = sim.robot_cells()[0]
            assert not blocked[r, c]


# ----------------------------------------------------------------------------- task visits


def test_task_visited_by_a_flying_robot_in_its_cell():
    sim = Simulator(load_config(base_cfg()))
    sim.pos[0, :2] = (1.0, 0.0)  # cf1 grounded in the task's cell: not a visit
    sim.step()
    assert not sim.task_visited.any()
    sim.takeoff("cf1")
    sim.takeoff("cf2")
    while sim.mode_names()[:2] != ["flying", "flying"]:
        sim.step()
        assert sim.task_visited[0] == (sim.mode_names()[0] == "flying")  # not while taking off
    t = sim.tasks()
    assert t[0].tolist() == [0, 1, 1, 0, pytest.approx(sim.t)]
    assert t[1].tolist() == [3, 3, 0, -1, -1]
    assert sim.view("cf1")[0].tolist() == [0, 1, 0, 0, 0]  # a visited task leaves the views
    t_first = sim.t
    sim.pos[1, :2] = (3.0, 3.0)  # both robots on the second task in one step: lowest index
    sim.pos[0, :2] = (3.2, 2.9)
    sim.step()
    sim.pos[1, :2] = (1.0, 0.0)  # a second visit changes nothing
    sim.step()
    t = sim.tasks()
    assert t[0, 2:].tolist() == [1, 0, pytest.approx(t_first)]
    assert t[1, 2:4].tolist() == [1, 0] and t[1, 4] > t_first


def test_driving_ground_robot_visits():
    sim = Simulator(load_config(base_cfg(tasks=[[4, 3]])))
    sim.takeoff("g1")  # driving enabled
    for _ in range(300):
        sim.set_command("g1", [-0.3, 0.0, 0.0])
        sim.step()
        if sim.task_visited[0]:
            break
    assert sim.task_visited_by[0] == 2 and sim.robot_cells()[2].tolist() == [4, 3]


# ----------------------------------------------------------------------------- lockstep


def test_lockstep_advances_only_when_every_present_robot_reported_and_arrived():
    blocked = np.zeros((5, 5), dtype=bool)
    blocked[2, 2] = True
    ls = Lockstep(G5, blocked, 3, "lockstep", 0.1)
    pos = G5.centre(np.array([[0, 0], [0, 1], [4, 4]]))
    present = np.array([True, True, False])  # robot 2 does not take part (grounded)
    assert not ls.update(pos, present) and ls.step == 0
    assert ls.report(0, [0, 4, 0, 0]) is None  # WAIT in place
    assert not ls.update(pos, present)  # robot 1 has not reported
    assert ls.report(1, [0, 0, 1, 1]) is None  # north: row + 1 in the world (target counts)
    assert not ls.update(pos, present)  # robot 1 has not arrived
    pos[1] = G5.centre((1, 1)) + 0.05
    assert ls.update(pos, present) and (ls.step, ls.moves_done) == (1, 2)
    assert not ls.update(pos, present)  # step 1 needs new reports
    assert not ls.update(pos, np.zeros(3, dtype=bool))  # nobody takes part: no step
    # rejected reports, counted
    assert "obstacle" in ls.report(0, [1, 0, 2, 2])
    assert "off the 5 x 5 grid" in ls.report(0, [1, 0, 5, 0])
    assert "control 7" in ls.report(0, [1, 7, 0, 0])
    assert "window" in ls.report(0, [0, 4, 0, 0])  # step 0 is over
    assert "whole numbers" in ls.report(0, [1, 4, 0.5, 0])
    assert "expected 4 values" in ls.report(0, [1, 4])
    assert ls.rejected.tolist() == [6, 0, 0]
    # a report ahead of the world's step waits for it
    assert ls.report(0, [2, 4, 0, 0]) is None and ls.report(1, [1, 4, 1, 1]) is None
    assert ls.report(0, [1, 4, 0, 0]) is None
    assert ls.update(pos, present) and ls.step == 2
    assert ls.report(1, [2, 4, 1, 1]) is None
    assert ls.update(pos, present) and ls.step == 3 and ls.moves_done == 6


def test_free_timing_counts_moves_only():
    ls = Lockstep(G5, np.zeros((5, 5), dtype=bool), 2, "free", 0.1)
    pos = G5.centre(np.array([[0, 0], [3, 3]]))
    assert ls.report(0, [7, 1, 0, 1]) is None  # any step number
    assert not ls.update(pos, np.ones(2, dtype=bool)) and ls.moves_done == 0
    pos[0] = G5.centre((0, 1))
    assert not ls.update(pos, np.ones(2, dtype=bool))
    assert (ls.step, ls.moves_done) == (0, 1)
    assert not ls.update(pos, np.ones(2, dtype=bool)) and ls.moves_done == 1  # counted once


# ----------------------------------------------------------------------------- markers


def test_routing_and_cluster_markers():
    blocked = np.zeros((5, 5), dtype=bool)
    blocked[1, 2] = blocked[3, 4] = True
    out = routing_markers(
        grid=G5,
        obstacles=blocked,
        task_cells=np.array([[0, 0], [4, 4], [2, 2]]),
        task_visited=np.array([False, True, False]),
    )
    layers = {m.ns: m for m in out.markers}
    assert set(layers) == {"routing_grid", "routing_obstacles", "routing_tasks", "routing_visited"}
    assert len(layers["routing_grid"].points) == 2 * (6 + 6)
    cubes = layers["routing_obstacles"]
    assert cubes.type == Marker.CUBE_LIST
    assert sorted((p.x, p.y) for p in cubes.points) == [(2.0, 1.0), (4.0, 3.0)]
    assert [(p.x, p.y) for p in layers["routing_tasks"].points] == [(0.0, 0.0), (2.0, 2.0)]
    assert [(p.x, p.y) for p in layers["routing_visited"].points] == [(4.0, 4.0)]
    cl = cluster_markers(
        positions=np.array([[0, 0, 1], [1, 1, 1]]), cluster_ids=[3, -1], robot_ids=[5, 6]
    )
    assert [m.id for m in cl.markers] == [5, 6] and {m.ns for m in cl.markers} == {"dmar_cluster"}
    assert cl.markers[0].color.a > cl.markers[1].color.a  # no cluster: translucent grey


# ----------------------------------------------------------------------------- over DDS


def wait_for(pred, timeout=20.0, period=0.02):
    return _wait_for(pred, timeout, period)  # the routing world steps slowly: 20 s


class RoutingProbe:
    """Subscribes views, ``/tasks`` and ``/swarm/ps_step``; publishes moves, makes commands."""

    def __init__(self, context, names):
        self.node = rclpy.create_node("routing_probe", context=context)
        self.lock = threading.Lock()
        self.views: dict[str, Float64MultiArray] = {}
        self.tasks = None
        self.ps: list[tuple[int, int]] = []
        self.move = {
            n: self.node.create_publisher(Float64MultiArray, f"/{n}/dmar/move", 10) for n in names
        }
        for n in names:
            self.node.create_subscription(
                Float64MultiArray, f"/{n}/view", lambda m, n=n: self._view(n, m), 10
            )
        self.node.create_subscription(
            Float64MultiArray, topics.TASKS, lambda m: setattr(self, "tasks", m), 10
        )
        self.node.create_subscription(UInt64MultiArray, topics.PS_STEP, self._ps, 10)

    def _view(self, n, m):
        with self.lock:
            self.views[n] = m

    def _ps(self, m):
        with self.lock:
            self.ps.append((int(m.data[0]), int(m.data[1])))

    def view(self, n):
        with self.lock:
            return self.views.get(n)

    def send_move(self, n, step, control, row, col):
        self.move[n].publish(Float64MultiArray(data=[float(step), float(control), row, col]))

    def cmd_msg(self, v):
        from geometry_msgs.msg import TwistStamped

        msg = TwistStamped()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = topics.WORLD_FRAME
        msg.twist.linear.x, msg.twist.linear.y = v
        return msg


@pytest.fixture
def routing_world(tmp_path):
    data = base_cfg(tolerance=0.05)
    data["robots"] = data["robots"][:2]
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    specs = plan(cfg, path, policy=False, cbf=False, autostart=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    nodes = [
        load_plugin(s)(
            s.name,
            context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in s.parameters.items()],
        )
        for s in specs
        if s.name == "world"
    ]
    probe = RoutingProbe(context, cfg.robot_names)
    ex = MultiThreadedExecutor(context=context)
    for node in [*nodes, probe.node]:
        ex.add_node(node)
    stop = threading.Event()

    def spin():
        while context.ok() and not stop.is_set():
            ex.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    yield nodes[0], probe
    stop.set()
    thread.join(timeout=5)
    from sim_bridge.ros.runner import stop_executor

    stop_executor(ex)
    for node in [*nodes, probe.node]:
        node.destroy_node()
    rclpy.shutdown(context=context)


def _table(msg, rows_label):
    dims = msg.layout.dim
    assert [d.label for d in dims] == [rows_label, "fields"]
    assert dims[1].size == 5 and dims[0].stride == dims[0].size * 5
    return np.asarray(msg.data).reshape(dims[0].size, 5)


@pytest.mark.ros
def test_world_publishes_views_tasks_and_lockstep_ps_step(routing_world):
    world, probe = routing_world
    sim = world.sim
    assert wait_for(lambda: probe.view("cf1") is not None and probe.view("cf2") is not None)
    assert wait_for(lambda: probe.tasks is not None and probe.ps)
    v = probe.view("cf1")
    assert v.layout.data_offset == 0
    view = _table(v, "cells")
    assert view[0, :2].tolist() == [0, 0] and view[0, 4] == 0  # own cell and robot first
    assert {tuple(r[:3]) for r in view.tolist()} == {(0, 0, 0), (0, 1, 0), (1, 0, 1)}
    tasks = _table(probe.tasks, "tasks")
    assert tasks[:, :2].tolist() == [[0, 1], [3, 3]]
    assert wait_for(lambda: sim.mode_names() == ["flying", "flying"])

    def steps_later(n):  # n more simulator steps (robust to a loaded CPU)
        k = sim.steps
        assert wait_for(lambda: sim.steps >= k + n, 60)

    # step 0: cf1 waits in place, cf2 heads north to (1, 2)
    probe.send_move("cf1", 0, 4, 0, 0)
    steps_later(30)
    assert world.lockstep.step == 0  # cf2 has not reported
    probe.send_move("cf2", 0, 0, 1, 2)
    steps_later(30)
    assert world.lockstep.step == 0  # cf2 reported but has not arrived
    assert wait_for(lambda: world.lockstep.moves[1].get(0) == (1, 2))
    deadline = time.monotonic() + 60
    while world.lockstep.step == 0 and time.monotonic() < deadline:
        err = sim.grid.centre((1, 2)) - sim.pos[1, :2]
        # straight into the world's command callback, freshly stamped: what is checked here
        # is the lockstep, not DDS latency (a loaded CI machine delayed published commands
        # past CMD_TIMEOUT_S, the watchdog landed cf2 and the step advanced without it)
        world._on_cmd(1, probe.cmd_msg(tuple(np.clip(2.0 * err, -0.4, 0.4))))
        time.sleep(0.03)
    assert sim.mode_names() == ["flying", "flying"]
    assert world.lockstep.step == 1 and world.lockstep.moves_done == 2
    d = sim.pos[1, :2] - sim.grid.centre((1, 2))
    assert math.hypot(*d) <= 0.05 + 0.02  # within tolerance when it advanced (plus a tick)
    assert wait_for(lambda: probe.view("cf2").layout.data_offset == 1)
    assert _table(probe.view("cf2"), "cells")[0, :2].tolist() == [1, 2]
    assert wait_for(lambda: (1, 2) in probe.ps)
    assert all(s == 0 for s, _ in probe.ps[: probe.ps.index((1, 2))])
    # a bad report is rejected and counted, the step stays
    probe.send_move("cf1", 1, 0, 0, 3)  # (0, 3) is an obstacle
    assert wait_for(lambda: world.lockstep.rejected[0] == 1)
    assert world.lockstep.step == 1


@pytest.mark.ros
def test_ground_bridge_publishes_views_from_mocap_and_the_known_lists(tmp_path):
    from geometry_msgs.msg import PoseStamped
    from sim_bridge.ros.ground_node import GroundBridgeNode
    from sim_bridge.ros.routing_msgs import ps_step_msg, tasks_msg

    data = base_cfg(tasks=[[0, 1], [1, 1]])
    data["robots"][2] = {
        "name": "g1",
        "kind": "ground",
        "backend": "external",
        "cmd_topic": "/g1_driver/cmd_vel",
        "odom_topic": "/g1_driver/odom",
        "mocap_topic": "/mocap/g1",
        "pose": [1.0, 1.0, 0.0, 0.0],
    }
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    context = rclpy.Context()
    rclpy.init(context=context)
    bridge = GroundBridgeNode(
        "ground_bridge", context=context, parameter_overrides=[Parameter("config", value=str(path))]
    )
    probe = RoutingProbe(context, cfg.robot_names)
    mocap = probe.node.create_publisher(PoseStamped, "/mocap/g1", 10)
    cf1_pose = probe.node.create_publisher(PoseStamped, "/cf1/pose", 10)
    tasks_pub = probe.node.create_publisher(Float64MultiArray, topics.TASKS, 10)
    ps_pub = probe.node.create_publisher(UInt64MultiArray, topics.PS_STEP, 10)
    ex = MultiThreadedExecutor(context=context)
    ex.add_node(bridge)
    ex.add_node(probe.node)
    stop = threading.Event()
    thread = threading.Thread(
        target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
        daemon=True,
    )
    thread.start()

    def pose(x, y):
        msg = PoseStamped()
        msg.header.frame_id = topics.WORLD_FRAME
        msg.header.stamp = probe.node.get_clock().now().to_msg()
        msg.pose.position.x, msg.pose.position.y = x, y
        msg.pose.orientation.w = 1.0
        return msg

    table = np.array([[0, 1, 1, 1, 2.5], [1, 1, 0, -1, -1]])

    def want_view():
        v = probe.view("g1")
        return v is not None and v.layout.data_offset == 3 and len(v.data) == 5 * 5

    try:
        ok = False
        deadline = time.monotonic() + 30
        while not ok and time.monotonic() < deadline:
            mocap.publish(pose(1.1, 0.9))  # g1 in cell (1, 1)
            cf1_pose.publish(pose(0.1, 0.9))  # cf1 in (1, 0), an obstacle cell next to g1
            tasks_pub.publish(tasks_msg(table))
            ps_pub.publish(ps_step_msg(3, 7))
            time.sleep(0.05)
            ok = want_view()
        assert ok, "no view of step 3 from the bridge"
        got = _table(probe.view("g1"), "cells")
        cells = np.array([[1, 0], [-1, -1], [1, 1]])  # cf2 never published a pose
        open_tasks = np.zeros((5, 5), dtype=bool)
        open_tasks[1, 1] = True  # task (0, 1) was visited (world's /tasks)
        rc = cfg.routing
        want = view_table(rc.grid, rc.k, rc.obstacles, open_tasks, cells, 2)
        np.testing.assert_array_equal(got, want)
        assert got[0].tolist() == [1, 1, 0, 1, 2] and [1, 0, 1, 0, 0] in got.tolist()
    finally:
        stop.set()
        thread.join(timeout=5)
        from sim_bridge.ros.runner import stop_executor

        stop_executor(ex)
        bridge.destroy_node()
        probe.node.destroy_node()
        rclpy.shutdown(context=context)


def test_render_draws_obstacles_and_task_states():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sim_bridge.recording import swarm_topics
    from sim_bridge.render import _draw

    cfg = load_config(base_cfg())
    assert topics.TASKS in swarm_topics(cfg)
    poses = {n: np.array([[0.0, 0.0, 0.0, 0.3], [1.0, 0.2, 0.0, 0.3]]) for n in cfg.robot_names}
    consumers = (np.zeros(0), np.zeros((0, 0, 4)))
    tasks = (np.array([0.5]), np.array([[True, False]]))
    fig, ax = plt.subplots()
    try:
        for t_end, grey in ((0.2, 0), (1.0, 1)):
            _draw(ax, cfg, poses, consumers, t_end, tasks)
            colors = [tuple(round(v, 2) for v in p.get_facecolor()[:3]) for p in ax.patches]
            assert colors.count((0.25, 0.25, 0.3)) == 2  # the two obstacle cells
            assert colors.count((0.6, 0.6, 0.6)) == grey  # task 0 visited at t = 0.5 s
            assert colors.count((1.0, 0.55, 0.0)) == 2 - grey
    finally:
        plt.close(fig)


def test_arrow_markers_one_arrow_per_robot_from_its_position():
    pos = np.array([[0.0, 0.0, 0.5], [1.0, 2.0, 0.4]])
    vel = np.array([[0.1, 0.0, 0.0], [0.0, -0.2, 0.05]])
    out = arrow_markers(
        starts=pos, vectors=vel, robot_ids=np.array([3, 7]), ns="cmd", rgba=(1, 0, 0, 0.5)
    ).markers
    assert [(m.ns, m.id, m.type) for m in out] == [
        ("cmd", 3, Marker.ARROW),
        ("cmd", 7, Marker.ARROW),
    ]
    for m, p, v in zip(out, pos, vel):
        assert [(q.x, q.y, q.z) for q in m.points] == [tuple(p), tuple(p + v)]
        assert (m.scale.x, m.scale.y, m.scale.z) == (0.02, 0.05, 0.05)
        assert (m.color.r, m.color.a) == (1.0, 0.5) and m.header.frame_id == "world"
