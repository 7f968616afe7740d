"""Fault injection over real DDS: one robot's node dies or freezes mid-mission.

``swarm up --mode processes`` (:func:`sim_bridge.ros.runner.run_processes`) with the world,
relay, services, one CBF filter process per robot and the scripted ``swarm_goto``
commander. Mid-flight one robot's CBF filter process is killed (SIGKILL) or frozen
(SIGSTOP): that robot's commands stop, so the failure ladder of :mod:`sim_bridge.topics`
must hold it, then land it, while the other robots fly on to their consumers and the run
goes on (issue #15: "one dead node stops every robot").
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from sim_bridge import topics
from sim_bridge.bringup import plan
from sim_bridge.config import load_config
from sim_bridge.ros.graph import SwarmWatch, child_pid
from sim_bridge.ros.runner import run_processes

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _watched_run(path, tmp_path, state: dict, should_stop, **kwargs):
    """``swarm up --mode processes`` of ``path`` (world, relay, services, a CBF filter per
    robot, the goto commander, take-off at start) with a :class:`SwarmWatch` in
    ``state["w"]``; ``should_stop`` injects the fault. Returns the RunResult."""
    cfg = load_config(path)

    def on_ready(context, ex):
        state["w"] = SwarmWatch(context, cfg.robot_names)
        ex.add_node(state["w"].node)

    return run_processes(
        plan(cfg, path, policy=False, cbf=True, autostart=True, goto=True),
        cfg,
        duration=60.0,
        status_every=0,
        log_dir=str(tmp_path / "logs"),
        on_ready=on_ready,
        should_stop=should_stop,
        **kwargs,
    )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["sigkill", "sigstop"])
def test_a_dead_or_frozen_robot_node_lands_its_robot_and_the_others_finish(
    tmp_path, three_drones, sig
):
    state: dict = {}

    def should_stop():
        w = state.get("w")
        if w is None:
            return False
        p = w.last("cf2")
        if "fault_t" not in state and p is not None and p[1] > -0.9:  # flying north
            pid = child_pid("__ns:=/cf2", "__node:=cbf_filter")
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

    res = _watched_run(three_drones, tmp_path, state, should_stop)
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
        # the run's own summary names the landing (swarm up prints these lines)
        from sim_bridge.ros.runner import event_lines

        assert any(e["type"] == "watchdog_land" and e["robot"] == "cf2" for e in res.events)
        assert any("watchdog_land cf2 (no command for" in line for line in event_lines(res))


def test_a_swarm_wide_node_dying_lands_every_robot_before_the_run_ends(tmp_path, three_drones):
    """The comm relay (swarm-wide) is killed while the drones fly: the run ends, as it must
    without the relay, but only after the world landed every drone (asked through each
    ``/<robot>/land``, waited for on ``/<robot>/mode``). It used to stop the world at once,
    the drones frozen in the air in the recording and in rviz."""
    import io

    from sim_bridge.ros.runner import LAND_BEFORE_STOP_S

    cfg = load_config(three_drones)
    state: dict = {}
    out = io.StringIO()

    def should_stop():
        w = state.get("w")
        p = None if w is None else w.last("cf2")
        if "fault_t" not in state and p is not None and p[1] > -0.9:  # flying north
            pid = child_pid("__node:=comm_relay")
            assert pid is not None, "the relay process not found"
            os.kill(pid, signal.SIGKILL)
            state.update(fault_t=time.monotonic())
        return False

    res = _watched_run(three_drones, tmp_path, state, should_stop, out=out)
    w = state["w"]
    assert "fault_t" in state, "cf2 never flew north"
    assert res.stop_reason == "node_exit" and res.exit_code == 1, (res.stop_reason, res.errors)
    text = out.getvalue()
    assert "[swarm] landing 3 robot(s) before the run ends" in text, text
    assert "[swarm] landed in" in text, text
    for n in cfg.robot_names:
        assert w.last(n)[2] < 0.02, (n, w.last(n))  # on the floor when the world stopped
    landed_t = max(next(t for t, p in w.track[n] if t > state["fault_t"] and p[2] < 0.02)
                   for n in cfg.robot_names)  # fmt: skip
    assert landed_t - state["fault_t"] < LAND_BEFORE_STOP_S
