"""Fault injection over real DDS: one robot's node dies or freezes mid-mission.

``swarm up --mode processes`` (:func:`sim_bridge.ros.runner.run_processes`) with the world,
relay, services, one CBF filter process per robot and the scripted ``swarm_goto``
commander. Mid-flight one robot's CBF filter process is killed (SIGKILL) or frozen
(SIGSTOP): that robot's commands stop, so the failure ladder of :mod:`sim_bridge.topics`
must hold it, then land it, while the other robots fly on to their consumers and the run
goes on (issue #15: "one dead node stops every robot").
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sim_bridge import topics
from sim_bridge.bringup import plan
from sim_bridge.config import load_config
from sim_bridge.ros.runner import run_processes
from std_msgs.msg import String

pytestmark = [pytest.mark.ros, pytest.mark.slow]

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


def _node_pid(fqn_ns: str, node: str) -> int | None:
    """PID of this process's child started with ``__ns:=<ns>`` and ``__node:=<node>``."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if ppid == me and f"__ns:={fqn_ns}".encode() in argv and f"__node:={node}".encode() in argv:
            return int(entry.name)
    return None


class _Watcher:
    """Probe in the runner's process: robot poses and world events."""

    def __init__(self, context, names):
        self.node = Node("fault_probe", context=context)
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


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["sigkill", "sigstop"])
def test_a_dead_or_frozen_robot_node_lands_its_robot_and_the_others_finish(tmp_path, sig):
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(SWARM))
    cfg = load_config(path)
    specs = plan(cfg, path, policy=False, cbf=True, autostart=True, goto=True)
    state: dict = {}

    def on_ready(context, ex):
        state["w"] = _Watcher(context, cfg.robot_names)
        ex.add_node(state["w"].node)

    def should_stop():
        w = state.get("w")
        if w is None:
            return False
        p = w.last("cf2")
        if "fault_t" not in state and p is not None and p[1] > -0.9:  # flying north
            pid = _node_pid("/cf2", "cbf_filter")
            assert pid is not None, "cf2's CBF filter process not found"
            os.kill(pid, sig)
            state.update(fault_t=time.monotonic(), fault_pos=p, pid=pid)
        if "fault_t" in state:
            c2 = w.last("cf2")
            others = [w.last(n) for n in ("cf1", "cf3")]
            landed = c2 is not None and c2[2] < 0.02
            arrived = all(o is not None and o[1] > 1.3 for o in others)
            if landed and arrived and sig == signal.SIGSTOP:
                os.kill(state["pid"], signal.SIGCONT)  # so that it can take the SIGINT
            return landed and arrived
        return False

    res = run_processes(
        specs,
        cfg,
        duration=60.0,
        status_every=0,
        log_dir=str(tmp_path / "logs"),
        on_ready=on_ready,
        should_stop=should_stop,
    )
    w = state["w"]
    assert "fault_t" in state, "cf2 never flew north"
    assert res.stop_reason == "should_stop", (res.stop_reason, res.errors)
    # cf2 held where it was when its filter died, then came straight down
    after = [p for t, p in w.track["cf2"] if t > state["fault_t"] + 0.6]
    assert after and after[-1][2] < 0.02
    xy = np.stack([p[:2] for p in after])
    assert np.abs(xy - xy[0]).max() < 1e-9
    assert abs(xy[0, 1] - state["fault_pos"][1]) < 0.3 * 0.6 + 0.05  # at most ~0.6 s more flight
    # landed within LAND_AFTER_S + descent (0.5 m at 0.4 m/s) + slack of the fault
    t_down = next(t for t, p in w.track["cf2"] if t > state["fault_t"] and p[2] < 0.02)
    assert t_down - state["fault_t"] < topics.LAND_AFTER_S + 0.5 / 0.4 + 3.0
    # the others reached their consumers; the run reported the dead node (SIGKILL) only
    for n in ("cf1", "cf3"):
        assert w.last(n)[1] > 1.3
    if sig == signal.SIGKILL:
        assert [(fqn, robot) for fqn, _, robot in res.node_exits] == [("/cf2/cbf_filter", "cf2")]
        assert res.exit_code == 1
    else:
        assert res.node_exits == []
        assert any(e["type"] == "watchdog_land" and e["robot"] == "cf2" for e in w.events)
