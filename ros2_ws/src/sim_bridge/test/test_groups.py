"""``swarm up --groups K`` (issue #17): the robots split over K processes.

The split covers every robot (and every planned node) exactly once, bad splits are refused
with one clear line, the launch face takes the same ``group:=I/K``, and over real DDS a
killed group's robots hold and land while the other group's robots fly on to their
consumers.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PoseStamped
from hypothesis import given
from hypothesis import strategies as st
from rclpy.node import Node
from sim_bridge import topics
from sim_bridge.bringup import (
    BringupError,
    group_plan,
    launch_plan,
    parse_group,
    plan,
    split_robots,
)
from sim_bridge.cli import main as swarm_main
from sim_bridge.config import load_config
from std_msgs.msg import String

#: Three drones flying north to three consumers (the swarm of test_faults_ros).
SWARM = {
    "fileversion": 1,
    "seed": 1,
    "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
    "comm_radius": 1.5,
    "sensing_radius": 1.0,
    "rates": {"control_hz": 20, "sim_hz": 20, "clock_hz": 20, "markers_hz": 1},
    "robot_types": {
        "cf": {
            "kind": "crazyflie",
            "takeoff_height": 0.5,
            "max_speed": 0.3,
            "resources": {"energy": {"amount": 1.0, "depletion": "persistent"}},
        }
    },
    "robots": [
        {"name": "cf1", "type": "cf", "pose": [-1.0, -1.5, 0.0, 0.0]},
        {"name": "cf2", "type": "cf", "pose": [0.0, -1.5, 0.0, 0.0]},
        {"name": "cf3", "type": "cf", "pose": [1.0, -1.5, 0.0, 0.0]},
    ],
    "consumers": [
        {"name": "c1", "position": [-1.0, 1.5], "radius": 0.2, "demand": {"energy": 1.0}},
        {"name": "c2", "position": [0.0, 1.5], "radius": 0.2, "demand": {"energy": 1.0}},
        {"name": "c3", "position": [1.0, 1.5], "radius": 0.2, "demand": {"energy": 1.0}},
    ],
}


class _Watcher:
    """Probe in the runner's process: robot poses and world events."""

    def __init__(self, context, names):
        self.node = Node("group_probe", context=context)
        self.lock = threading.Lock()
        self.track: dict[str, list[tuple[float, np.ndarray]]] = {n: [] for n in names}
        self.events: list[dict] = []
        for n in names:
            self.node.create_subscription(
                PoseStamped, topics.robot_topic(n, topics.POSE), lambda m, n=n: self._pose(n, m), 1
            )
        self.node.create_subscription(
            String, topics.EVENTS, lambda m: self.events.append(json.loads(m.data)), 50
        )

    def _pose(self, n, m):
        p = m.pose.position
        with self.lock:
            self.track[n].append((time.monotonic(), np.array([p.x, p.y, p.z])))

    def last(self, n):
        with self.lock:
            return self.track[n][-1][1].copy() if self.track[n] else None


@given(st.integers(1, 60), st.data())
def test_split_covers_every_robot_exactly_once(n, data):
    k = data.draw(st.integers(1, n))
    robots = [f"r{i}" for i in range(n)]
    groups = split_robots(robots, k)
    assert len(groups) == k
    assert [r for g in groups for r in g] == robots  # each once, in config order
    sizes = [len(g) for g in groups]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    "k, words",
    [(0, "1 to 3 groups"), (4, "1 to 3 groups"), (-1, "1 to 3 groups"), (2.5, "2.5")],
)
def test_bad_group_counts_are_refused_clearly(k, words):
    with pytest.raises(BringupError, match="groups=") as err:
        split_robots(["a", "b", "c"], k)
    assert words in str(err.value) and "--groups" in str(err.value)


@pytest.mark.parametrize("text", ["3/2", "0/2", "2", "a/b", "1/0", ""])
def test_bad_group_names_are_refused_clearly(text):
    with pytest.raises(BringupError, match="write I/K, group I of K counted from 1"):
        parse_group(text)
    assert parse_group("2/3") == (2, 3)


def test_every_node_of_the_plan_is_in_exactly_one_group(tmp_path):
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(SWARM))
    cfg = load_config(path)
    specs = plan(cfg, path, policy=False, cbf=True, goto=True)
    for k in (1, 2, 3):
        parts = [group_plan(specs, cfg, i, k) for i in range(1, k + 1)]
        fqns = [s.fqn for part in parts for s in part]
        assert sorted(fqns) == sorted(s.fqn for s in specs)
        assert {s.fqn for s in parts[0] if not s.namespace} == {
            "/world",
            "/comm_relay",
            "/swarm_services",
            "/swarm_goto",
        }
        for part in parts[1:]:
            assert all(s.namespace for s in part)  # one world, one relay: group 1's
    # the launch face takes the same split
    todo = launch_plan(
        {"config": str(path), "group": "2/2", "policy": "false"}, has_package=lambda _: False
    )
    assert [s.fqn for s in todo.specs] == ["/cf3/cbf_filter"]
    with pytest.raises(BringupError, match="write I/K"):
        launch_plan({"config": str(path), "group": "3/2"}, has_package=lambda _: False)


def test_swarm_up_refuses_a_bad_split_in_one_line(tmp_path, capsys):
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(SWARM))
    assert swarm_main(["up", str(path), "--groups", "5", "--no-policy"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: groups=5: split the 3 robot(s) into 1 to 3 groups (one process each; "
        "e.g. --groups 2)"
    ]
    assert swarm_main(["up", str(path), "--groups", "2", "--group", "1/2"]) == 1
    assert "pass one of them" in capsys.readouterr().err
    assert swarm_main(["up", str(path), "--group", "1-2"]) == 1
    assert "write I/K" in capsys.readouterr().err


def _group_pid(label: str) -> int | None:
    """PID of this process's child started with ``--group <label>``."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if ppid == me and b"--group" in argv and label.encode() in argv:
            return int(entry.name)
    return None


@pytest.mark.ros
@pytest.mark.slow
def test_a_killed_group_lands_its_robots_and_the_other_group_carries_on(tmp_path):
    from sim_bridge.ros.runner import run_groups

    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(SWARM))
    cfg = load_config(path)
    argv = [sys.executable, "-m", "sim_bridge.cli", "up", str(path), "--goto", "--takeoff"]
    argv += ["--status-every", "0"]
    state: dict = {}

    def on_ready(context, ex):
        state["w"] = _Watcher(context, cfg.robot_names)
        ex.add_node(state["w"].node)

    def should_stop():
        w = state.get("w")
        if w is None:
            return False
        p = w.last("cf3")
        if "fault_t" not in state and p is not None and p[1] > -0.9:  # flying north
            pid = _group_pid("2/2")
            assert pid is not None, "group 2's process not found"
            os.kill(pid, signal.SIGKILL)
            state.update(fault_t=time.monotonic(), fault_pos=p)
        if "fault_t" in state:
            c3 = w.last("cf3")
            others = [w.last(n) for n in ("cf1", "cf2")]
            landed = c3 is not None and c3[2] < 0.02
            return landed and all(o is not None and o[1] > 1.3 for o in others)
        return False

    res = run_groups(
        argv,
        cfg,
        2,
        duration=90.0,
        status_every=0,
        log_dir=str(tmp_path / "logs"),
        on_ready=on_ready,
        should_stop=should_stop,
    )
    w = state["w"]
    assert "fault_t" in state, "cf3 never flew north"
    assert res.stop_reason == "should_stop", (res.stop_reason, res.errors)
    assert [(name, robot) for name, _, robot in res.node_exits] == [("group2", "cf3")]
    # cf3 (group 2) held, then came down within the failure ladder's time
    t_down = next(t for t, p in w.track["cf3"] if t > state["fault_t"] and p[2] < 0.02)
    assert t_down - state["fault_t"] < topics.LAND_AFTER_S + 0.5 / 0.4 + 3.0
    after = [p for t, p in w.track["cf3"] if t > state["fault_t"] + 0.6]
    assert abs(after[0][1] - state["fault_pos"][1]) < 0.3 * 0.6 + 0.05
    for n in ("cf1", "cf2"):  # group 1 flew on
        assert w.last(n)[1] > 1.3
