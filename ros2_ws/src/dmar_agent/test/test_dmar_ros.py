"""DMAR over real DDS: the whole chain (world, relay, services, CBF, one DMAR node per robot)
composed in one process through sim_bridge's bringup (``ros.mission_run.run_mission``).

* the whole chain on a 5 x 5 arena visits every task, robots never closer than Ds;
* lockstep equality: with the continuous-space interference off (no CBF, no yield rule) the
  ROS run's clusters, per-step controls and cost equal :func:`run_distributed` (and so
  ``run_dmar``) on the same instance, on three instances;
* locality: the live graph shows every DMAR node subscribing to its own robot's topics and the
  swarm-wide ones only; a node's messages and move are unchanged by a message of a robot
  outside its view;
* real timing: a robot whose node is killed mid-run and a lossy relay still end with every
  task visited (the protocol reads silent peers as blank memories, rounds close on timeout);
* a robot whose motors fail mid-run (a ``fail`` event) while it holds the only task leaves the
  protocol: the other robot visits the task, the run ends on its own and names the fault;
* bad parameters end the node with one line.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from dmar_agent.distributed import run_distributed
from dmar_agent.errors import ConfigError
from dmar_agent.executor import Memory
from dmar_agent.mission.configs import routing_config
from dmar_agent.mission.scenario import core_instance
from dmar_agent.ros.mission_run import lockstep_equal, run_mission
from dmar_agent.ros.node import DmarNode
from dmar_agent.wire import StateMsg, decode, encode
from dmar_agent.world import WAIT as WAIT_U
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sim_bridge import topics
from sim_bridge.config import load_config
from sim_bridge.ros.routing_msgs import view_msg
from std_msgs.msg import Float64MultiArray

pytestmark = pytest.mark.ros

#: the continuous-space interference off: lockstep equality is defined on these runs
EQUALITY = {"yield_occupied": False, "stuck_timeout_s": 1e6}


def test_whole_chain_with_cbf_visits_every_task_and_keeps_ds(tmp_path):
    cfg = routing_config(tmp_path / "swarm.yaml", seed=2)
    run = run_mission(cfg, duration=240.0)
    assert run.result.stop_reason == "should_stop", run.result.errors
    assert run.tasks_visited == run.tasks_total == 3
    assert run.min_separation_m >= run.safety_distance_m
    assert run.cbf_fallbacks == 0
    diag = run.node_diagnostics["cf1"]
    assert {"phase", "cluster", "leader", "ps_step", "compute_p99_ms"} <= set(diag)
    assert int(diag["backoffs"]) == 0


def test_ground_robots_through_the_axle_cbf_visit_every_task_and_keep_ds(tmp_path):
    """Issue #14's mixed team, small: one drone and two ground robots whose CBF nodes certify
    their axles (cbf_filter.unicycle.AxleCBF) and who follow the drones' yield rule; the
    lockstep world advances only when every robot reached its cell, so a ground robot held
    short (the projection-point certificate's failure) would stall the run."""
    cfg = routing_config(tmp_path / "swarm.yaml", seed=3, ground=2)
    run = run_mission(cfg, duration=240.0)
    assert run.result.stop_reason == "should_stop", (run.result.errors, run.stall_report)
    assert run.tasks_visited == run.tasks_total == 3
    assert run.min_separation_m >= run.safety_distance_m
    assert run.cbf_fallbacks == 0
    assert not run.stall_report


@pytest.mark.parametrize("seed", [2, 3, 5])
def test_lockstep_ros_run_equals_the_core_simulator(tmp_path, seed):
    path = routing_config(tmp_path / "swarm.yaml", seed=seed)
    inst, dcfg = core_instance(load_config(path))
    core, trace = run_distributed(inst, dcfg)
    run = run_mission(
        path,
        cbf=False,
        node_params=EQUALITY,
        stop_at_step=core.ps_steps,
        stop_when_done=False,
        duration=240.0,
    )
    cmp = lockstep_equal(run, core, trace, len(inst.agents))
    assert cmp["equal"], cmp
    assert run.tasks_visited == run.tasks_total


@pytest.mark.slow
def test_a_robot_dropped_mid_run_and_lost_messages_still_visit_every_task(tmp_path):
    path = routing_config(tmp_path / "swarm.yaml", seed=3)
    run = run_mission(
        path,
        duration=300.0,
        kill={"cf2": 20},
        relay_drop_prob=0.1,
        node_params={"round_timeout_s": 0.3},
    )
    assert run.killed == ["cf2"]
    assert run.result.stop_reason == "should_stop", (run.tasks_visited, run.result.errors)
    assert run.tasks_visited == run.tasks_total
    missed = sum(int(d["peers_missed"]) for d in run.node_diagnostics.values())
    assert missed > 0  # rounds closed on timeout for the silent robot and the lost messages
    assert "cf2" not in run.node_diagnostics


def _corridor_config(path, fail_at: float):
    """3 x 7 cells, no obstacles, k = 6 (both robots see the whole grid), psi = 1 (2 moves per
    iteration): cf1 at (0, 2) is nearest to the only task (0, 6), cf2 starts at (0, 0); cf1's
    motors fail at ``fail_at`` [s sim], airborne and on its way (the task needs two of its
    iterations)."""
    doc = yaml.safe_load(routing_config(path, seed=0, rows=3, cols=7, robots=2).read_text())
    ox, oy = doc["routing"]["origin"]
    doc["robots"] = [
        {"name": "cf1", "type": "cf", "pose": [ox + 0.4, oy, 0.0, 0.0]},
        {"name": "cf2", "type": "cf", "pose": [ox, oy, 0.0, 0.0]},
    ]
    routing = doc["routing"]
    del routing["random_obstacles"]
    routing.update(obstacles=[], tasks=[[0, 6]], k=6, psi=1)
    doc["events"] = [{"t": fail_at, "type": "fail", "robot": "cf1"}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_robot_failing_while_it_holds_the_task_leaves_it_to_the_others(tmp_path):
    """Safety rules: a failure ends in the robot down and the others carry on; DMAR's
    robustness: the others still visit every reachable task. The failed robot's node used to
    keep planning and claiming the task for a robot on the ground, and cf2 waited for good."""
    path = _corridor_config(tmp_path / "swarm.yaml", fail_at=2.5)
    run = run_mission(path, duration=60.0)
    assert [(e["type"], e["robot"]) for e in run.events] == [("fail", "cf1")]
    assert run.modes == {"cf1": "failed", "cf2": "flying"}
    assert run.robots_down == ["cf1"]
    # cf1 failed with the task still open (else this test would test nothing), cf2 took it
    assert run.visited_by == ["cf2"], (run.visited_by, run.stall_report)
    assert run.result.stop_reason == "should_stop"
    diag = run.node_diagnostics["cf1"]
    assert diag["down"] == "true" and int(diag["downs"]) == 1
    assert run.node_diagnostics["cf2"]["down"] == "false"


@pytest.mark.parametrize("event", ["land", "fail"])
def test_a_ground_robot_disabled_while_it_holds_the_task_leaves_it_to_the_others(tmp_path, event):
    """A ground robot's pose cannot show that it was disabled (``land``: driving off) or
    failed: it sits on the grid as before. Its node now reads the world's ``/<robot>/mode``
    and leaves the protocol; it used to keep claiming the task for a robot that never
    moves again, and the drone waited for good."""
    doc = yaml.safe_load(
        routing_config(
            tmp_path / "base.yaml", seed=0, rows=3, cols=7, robots=2, ground=1
        ).read_text()
    )
    ox, oy = doc["routing"]["origin"]
    cf, gr = doc["robots"]
    assert (cf["type"], gr["type"]) == ("cf", "rover")
    gr["pose"] = [ox + 0.4, oy, 0.0, 0.0]  # (0, 2): nearest to the task
    cf["pose"] = [ox, oy, 0.0, 0.0]
    routing = doc["routing"]
    del routing["random_obstacles"]
    routing.update(obstacles=[], tasks=[[0, 6]], k=6, psi=1)
    doc["events"] = [{"t": 2.5, "type": event, "robot": gr["name"]}]
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    run = run_mission(path, duration=90.0)
    assert [(e["type"], e["robot"]) for e in run.events] == [(event, gr["name"])]
    assert run.modes[gr["name"]] == {"land": "grounded", "fail": "failed"}[event]
    assert run.robots_down == [gr["name"]]
    assert run.visited_by == [cf["name"]], (run.visited_by, run.stall_report)
    assert run.result.stop_reason == "should_stop"
    diag = run.node_diagnostics[gr["name"]]
    assert diag["down"] == "true" and int(diag["downs"]) == 1
    assert diag["mode"] == run.modes[gr["name"]]
    assert run.node_diagnostics[cf["name"]]["down"] == "false"


# ----------------------------------------------------------------------------- locality


def _spin(ex, until, timeout=10.0):
    end = time.monotonic() + timeout
    while not until() and time.monotonic() < end:
        ex.spin_once(timeout_sec=0.02)
    return until()


def test_dmar_nodes_subscribe_only_to_their_own_robot_and_swarm_topics(tmp_path, context):
    path = str(routing_config(tmp_path / "swarm.yaml", seed=2))
    names = load_config(path).robot_names
    nodes = [
        DmarNode(
            "dmar",
            namespace=f"/{r}",
            context=context,
            parameter_overrides=[Parameter("config", value=path), Parameter("robot", value=r)],
        )
        for r in names
    ]
    probe = Node("probe", context=context)
    ex = SingleThreadedExecutor(context=context)
    for n in [*nodes, probe]:
        ex.add_node(n)
    try:
        subs = {}

        def seen():
            for r in names:
                got = probe.get_subscriber_names_and_types_by_node("dmar", f"/{r}")
                subs[r] = sorted(t for t, _ in got)
            return all(len(v) >= 3 for v in subs.values())

        assert _spin(ex, seen)
        for r, got in subs.items():
            own = [t for t in got if t.startswith(f"/{r}/")]
            assert sorted(own) == sorted(
                topics.robot_topic(r, t)
                for t in (topics.POSE, topics.MODE, topics.VIEW, topics.COMM_IN)
            )
            others = [t for t in got if t not in own and not t.startswith("/parameter_events")]
            assert others == [], f"{r} subscribes to {others}"
    finally:
        ex.shutdown()
        for n in [*nodes, probe]:
            n.destroy_node()


def _outputs(path: str, context, foreign: bool) -> list:
    """What cf1's node sends for PS step 1 when it stands alone in its view, with or without
    a message of robot 2 (outside the view) delivered first."""
    node = DmarNode(
        "dmar",
        namespace="/cf1",
        context=context,
        parameter_overrides=[Parameter("config", value=path), Parameter("robot", value="cf1")],
    )
    io = Node("io", context=context)
    got: list = []
    io.create_subscription(
        Float64MultiArray, "/cf1/comm/out", lambda m: got.append(("comm", list(m.data[2:]))), 10
    )
    io.create_subscription(
        Float64MultiArray, "/cf1/dmar/move", lambda m: got.append(("move", list(m.data))), 10
    )
    comm = io.create_publisher(Float64MultiArray, "/cf1/comm/in", 10)
    view = io.create_publisher(Float64MultiArray, "/cf1/view", 10)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(node)
    ex.add_node(io)
    try:
        assert _spin(ex, lambda: view.get_subscription_count() and comm.get_subscription_count())
        if foreign:
            mem = Memory(2, sees_task=True, cluster=2, depth=0)
            payload = encode(StateMsg(2, 0, 0, mem))
            comm.publish(Float64MultiArray(data=[2.0, 1.0, *payload.tolist()]))
            assert _spin(ex, lambda: node.counts["bad_payloads"] == 0 and len(node.inbox) == 1)
        table = np.array([[0, 0, 0, 0, 0], [0, 1, 0, 1, -1], [1, 0, 0, 0, -1]], dtype=float)
        view.publish(view_msg(table, 1))
        assert _spin(ex, lambda: any(k == "move" for k, _ in got))
        return [(k, decode(d) if k == "comm" else d) for k, d in got]
    finally:
        ex.shutdown()
        node.destroy_node()
        io.destroy_node()


def test_a_message_from_outside_the_view_changes_nothing(tmp_path, context):
    path = str(routing_config(tmp_path / "swarm.yaml", seed=2, robots=3))
    plain = _outputs(path, context, foreign=False)
    noisy = _outputs(path, context, foreign=True)
    assert plain == noisy
    assert plain[-1] == ("move", [1.0, 4.0, 0.0, 0.0])  # step 1: WAIT in its own cell


def test_bad_parameters_give_one_line(tmp_path, context):
    path = str(routing_config(tmp_path / "swarm.yaml", seed=2))
    with pytest.raises(ConfigError, match="round_timeout_s"):
        DmarNode(
            "dmar",
            context=context,
            parameter_overrides=[
                Parameter("config", value=path),
                Parameter("robot", value="cf1"),
                Parameter("round_timeout_s", value=-1.0),
            ],
        )
    with pytest.raises(ConfigError, match="not in"):
        DmarNode(
            "dmar",
            context=context,
            parameter_overrides=[Parameter("config", value=path), Parameter("robot", value="x")],
        )
    proc = subprocess.run(
        [sys.executable, "-m", "dmar_agent.ros.node", "--ros-args", "-p", f"config:={path}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "dmar_node: parameter robot: must be non-empty, got '' "
        "(fix: pass -p robot:=<name in the config>)"
    ]


def test_a_robot_held_short_backs_off_then_settles_on_the_nearest_free_cell(tmp_path, context):
    """Liveness under the CBF: a robot that arrived only waits; one held short of its target
    goes back to its origin, and if held short there too, reports WAIT on the nearest free
    cell of its view around where it stands (the lockstep never waits for an unreachable cell).
    """
    path = str(routing_config(tmp_path / "swarm.yaml", seed=2))
    node = DmarNode(
        "dmar",
        context=context,
        parameter_overrides=[
            Parameter("config", value=path),
            Parameter("robot", value="cf1"),
            Parameter("stuck_timeout_s", value=1.0),
        ],
    )
    try:
        sent = []
        node._publish_move = lambda u, r, c: sent.append((u, r, c))
        width = node.shape[1]
        view = type("V", (), {})()
        view.cells = np.array([r * width + c for r in range(3) for c in range(3)])
        view.obstacle = np.zeros(9, dtype=bool)
        view.obstacle[1 * width + 2 == view.cells] = True  # (1, 2) is an obstacle
        view.robots = {0: 0, 1: 1 * width + 1}  # another robot on (1, 1)
        node.view, node.rnd = view, None
        centre = node.grid.centre
        # arrived at the target: waiting for the others is not being stuck
        node.origin, node.target, node.move_t0 = (0, 0), (0, 1), 0.0
        node.pose = np.array([*centre((0, 1)), 0.4])
        assert node._arrived()
        # held short between (0, 1) and (1, 1): back off to the origin first
        node.pose = np.array([*(centre((0, 1)) + [0.0, 0.09]), 0.4])
        assert not node._arrived()
        node._unstick(10.0)
        assert node.target == (0, 0) and sent[-1] == (WAIT_U, 0, 0)
        assert node.counts["backoffs"] == 1
        # held short of the origin too: the nearest free cell in view, not the occupied (1, 1)
        node._unstick(20.0)
        assert node.target == (0, 1) and sent[-1] == (WAIT_U, 0, 1)
        assert node.counts["settles"] == 1
        # nothing nearer than the current target: no new report
        node._unstick(30.0)
        assert len(sent) == 2 and node.move_t0 == 30.0
    finally:
        node.destroy_node()
