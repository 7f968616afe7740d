"""A composed LGTC swarm on sim time (``swarm up --sim-time``; issue #17, deliverable 3).

World, comm relay, services, CBF filters and policy nodes of ``small_demo`` (launch/demo.yaml
with its first 3 robots, the shipped checkpoint) in one process, every node with
``use_sim_time``: every node's clock follows the world's ``/clock``, the policies' ticks are
timed on it (one sim period apart), the commands the world receives are stamped in sim time
and all accepted (none stale, none from the future), and the robots fly the mission.
"""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.node import Node
from sim_bridge.bringup import plan
from sim_bridge.config import load_config
from sim_bridge.ros.runner import run_composed
from sim_bridge.topics import CMD_TIMEOUT_S

pytestmark = pytest.mark.ros


def test_composed_swarm_on_sim_time_runs_on_the_worlds_clock(small_demo):
    cfg = load_config(small_demo)
    specs = plan(cfg, small_demo, autostart=True, sim_time=True)
    held, samples = {}, []

    def on_ready(nodes, context, executor):
        held.update(nodes)
        held["on_sim_time"] = {f: n.get_clock().ros_time_is_active for f, n in nodes.items()}
        world = nodes["/world"]
        probe = Node("test_probe", context=context)  # wall time: samples every 0.2 s

        def sample():
            clocks = {f: n.get_clock().now().nanoseconds * 1e-9 for f, n in nodes.items()}
            samples.append((world.sim.t, clocks, world.cmd_stamp_ns.copy()))

        probe.create_timer(0.2, sample)
        executor.add_node(probe)  # destroyed with the run (a node the caller added)

    res = run_composed(specs, cfg, duration=8.0, on_ready=on_ready, status_every=0)
    assert res.errors == [] and res.stop_reason == "duration"
    world = held["/world"]
    assert len(held["on_sim_time"]) == len(specs) and all(held["on_sim_time"].values())
    late = [s for s in samples if s[0] > 2.0]  # flying on commands
    assert len(late) >= 10
    for sim_t, clocks, stamps_ns in late:
        # every node's clock reads the world's time: never ahead, a step or two behind at most
        for fqn, t in clocks.items():
            assert sim_t - 0.2 <= t <= sim_t + 1e-9, (fqn, t, sim_t)
        # the commands the world accepted carry sim-time stamps, fresh on that clock
        stamps = stamps_ns * 1e-9
        assert np.all(stamps <= sim_t + 1e-9) and np.all(stamps >= sim_t - CMD_TIMEOUT_S)
    assert world.rejected_stale.sum() == 0 and world.rejected_future.sum() == 0
    assert world.rejected.sum() == 0 and world.sim.watchdog_landings.sum() == 0
    # the policies' ticks are timed on sim time: one sim period apart
    for robot in cfg.robot_names:
        policy = held[f"/{robot}/policy"]
        assert policy.stats.ticks > 100
        assert np.median(policy.stats.periods) == pytest.approx(policy.period, abs=1e-6)
    # the robots fly the mission: off the start row, towards the consumers
    start = np.array([r.pose[:2] for r in cfg.robots])
    assert np.all(np.linalg.norm(world.sim.pos[:, :2] - start, axis=1) > 0.5)
    assert world.mode_of("cf1") == world.mode_of("cf2") == world.mode_of("cf3") == "flying"
    assert res.loop_ticks > 3 * 100


def test_unbatched_filters_on_sim_time_filter_once_per_tick(small_demo):
    """CBF nodes with their own timers (``batch: false``) on sim time: a nominal arriving on
    time is filtered once; the timer re-filters only a late one. With the wall-time rule
    (0.9 periods) the timer found the last output one whole sim period old at the step the
    next nominal came and filtered every tick twice."""
    cfg = load_config(small_demo)
    specs = plan(cfg, small_demo, autostart=True, sim_time=True)
    for spec in specs:
        if spec.package == "cbf_filter":
            spec.parameters["batch"] = False
    held = {}
    res = run_composed(
        specs, cfg, duration=6.0, on_ready=lambda n, c, e: held.update(n), status_every=0
    )
    assert res.errors == [] and res.stop_reason == "duration"
    for robot in cfg.robot_names:
        cbf, policy = held[f"/{robot}/cbf_filter"], held[f"/{robot}/policy"]
        assert cbf.batcher is None and policy.stats.ticks > 60
        ticks, refilters = cbf.counts["ticks"], cbf.counts["refilters"]
        assert ticks >= 0.9 * policy.stats.ticks, (robot, ticks, policy.stats.ticks)
        assert refilters <= 0.05 * ticks, (robot, refilters, ticks)
