"""``swarm up --groups K`` (issue #17): the robots split over K processes.

The split covers every robot (and every planned node) exactly once, bad splits are refused
with one clear line, the launch face takes the same ``group:=I/K``, and over real DDS a
killed group's robots hold and land while the other group's robots fly on to their
consumers.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
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
from sim_bridge.ros.graph import SwarmWatch, child_pid


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


def test_every_node_of_the_plan_is_in_exactly_one_group(tmp_path, three_drones):
    path = three_drones
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


def test_swarm_up_refuses_a_bad_split_in_one_line(tmp_path, three_drones, capsys):
    path = three_drones
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


@pytest.mark.ros
@pytest.mark.slow
def test_a_killed_group_lands_its_robots_and_the_other_group_carries_on(tmp_path, three_drones):
    from sim_bridge.ros.runner import run_groups

    path = three_drones
    cfg = load_config(path)
    argv = [sys.executable, "-m", "sim_bridge.cli", "up", str(path), "--goto", "--takeoff"]
    argv += ["--status-every", "0"]
    state: dict = {}

    def on_ready(context, ex):
        state["w"] = SwarmWatch(context, cfg.robot_names)
        ex.add_node(state["w"].node)

    def should_stop():
        w = state.get("w")
        if w is None:
            return False
        p = w.last("cf3")
        if "fault_t" not in state and p is not None and p[1] > -0.9:  # flying north
            pid = child_pid("--group", "2/2")
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
