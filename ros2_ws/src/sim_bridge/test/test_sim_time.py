"""Sim time (issue #17, deliverable 3): ``swarm up --sim-time`` / ``use_sim_time:=true``.

* the plan: every node gets the standard parameter ``use_sim_time`` with sim time, none
  without it (wall time, as before); the launch argument and ``--groups`` hand it on; a
  real-robot config refuses it in one line (exit status 2), unless ``--backend sim``;
* the world as the clock source (a real world node over DDS, run at about half speed): the
  time it stamps and checks is the simulator time it publishes on ``/clock``; a command stamped
  on a node clock that follows ``/clock`` is fresh however slowly the world runs, one stamped
  with wall time is far in the future and rejected; a robot left without fresh commands lands
  ``LAND_AFTER_S`` of *sim* time after its last accepted command.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import yaml
from sim_bridge import topics
from sim_bridge.bringup import (
    LAUNCH_ARGUMENTS,
    USE_SIM_TIME,
    BringupError,
    launch_plan,
    load_plugin,
    plan,
)
from sim_bridge.cli import _plan_args, build_parser
from sim_bridge.cli import main as swarm_main
from sim_bridge.config import load_config
from sim_bridge.ros.graph import wait_for

#: Two drones on a 20 Hz world (one step per policy period, as in launch/demo.yaml).
SWARM = {
    "fileversion": 1,
    "seed": 5,
    "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
    "comm_radius": 1.5,
    "sensing_radius": 1.0,
    "rates": {"control_hz": 20, "sim_hz": 20, "clock_hz": 20, "markers_hz": 1},
    "robot_types": {
        "cf": {
            "kind": "crazyflie",
            "takeoff_height": 0.3,
            "max_speed": 0.5,
            "resources": {"energy": {"amount": 0.5, "depletion": "persistent"}},
        }
    },
    "robots": [
        {"name": "cf1", "type": "cf", "pose": [-1.0, -1.0, 0.0, 0.0]},
        {"name": "cf2", "type": "cf", "pose": [1.0, -1.0, 0.0, 0.0]},
    ],
    "consumers": [
        {"name": "c1", "position": [0.0, 1.5], "radius": 0.3, "demand": {"energy": 1.0}},
    ],
}


def _write(path, robots=None):
    data = dict(SWARM, robots=robots or SWARM["robots"])
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def swarm_file(tmp_path):
    return _write(tmp_path / "two.yaml")


@pytest.fixture
def radio_file(tmp_path):
    """cf1 simulated, cf2 a real Crazyflie (cflib)."""
    robots = [
        SWARM["robots"][0],
        {**SWARM["robots"][1], "backend": "cflib", "uri": "radio://0/80/2M/E7E7E7E702"},
    ]
    return _write(tmp_path / "radio.yaml", robots)


# ----------------------------------------------------------------------------- the plan


def test_sim_time_puts_every_node_on_sim_time_and_wall_time_stays_as_it_was(swarm_file):
    cfg = load_config(swarm_file)
    wall = plan(cfg, swarm_file, goto=True)
    sim = plan(cfg, swarm_file, goto=True, sim_time=True)
    assert [s.fqn for s in sim] == [s.fqn for s in wall]
    assert all(USE_SIM_TIME not in s.parameters for s in wall)  # nodes keep rclpy's default
    for w, s in zip(wall, sim):
        assert s.parameters == {**w.parameters, USE_SIM_TIME: True}
        assert s.params_yaml()[s.fqn]["ros__parameters"][USE_SIM_TIME] is True  # processes
    # the launch argument: the same plan
    args = {"config": str(swarm_file), USE_SIM_TIME: "true"}
    todo = launch_plan(args, has_package=lambda _: False, which=lambda _: None)
    assert todo.specs == plan(cfg, swarm_file, sim_time=True)
    assert LAUNCH_ARGUMENTS[USE_SIM_TIME][0] == "false"
    default = launch_plan({"config": str(swarm_file)}, has_package=lambda _: False)
    assert default.specs == plan(cfg, swarm_file)
    # --groups K hands --sim-time to every group's `swarm up --group I/K`
    ns = build_parser().parse_args(["up", str(swarm_file), "--groups", "2", "--sim-time"])
    assert "--sim-time" in _plan_args(ns)
    ns = build_parser().parse_args(["up", str(swarm_file), "--groups", "2"])
    assert "--sim-time" not in _plan_args(ns)


def test_sim_time_with_a_real_robot_is_refused_in_one_line(radio_file, capsys):
    code = swarm_main(["up", str(radio_file), "--sim-time", "--duration", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("swarm up: error: --sim-time: robots cf2 ")
    assert "wall time" in err[0] and "--backend sim" in err[0]
    cfg = load_config(radio_file)
    with pytest.raises(BringupError, match="use_sim_time:=true: robots cf2 .*wall time"):
        launch_plan({"config": str(radio_file), USE_SIM_TIME: "true"}, has_package=lambda _: False)
    with pytest.raises(BringupError, match="robots cf2 .*cflib"):
        plan(cfg, radio_file, sim_time=True)
    # a dry run that simulates every robot may run on sim time
    specs = plan(cfg, radio_file, backend="sim", sim_time=True)
    assert all(s.parameters[USE_SIM_TIME] is True for s in specs)


def test_sim_time_runs_on_an_executor_that_fires_sim_time_timers(swarm_file):
    from sim_bridge.ros.runner import choose_executor

    cfg = load_config(swarm_file)
    known = plan(cfg, swarm_file, goto=True, sim_time=True)
    assert choose_executor("auto", known) == "events"
    other = [*known, replace(known[-1], plugin="elsewhere.node:Unchecked")]
    assert choose_executor("auto", other) == "single"  # the multi-threaded one stalls on /clock
    wall = plan(cfg, swarm_file, goto=True)
    unknown = [*wall, replace(wall[-1], plugin="elsewhere.node:Unchecked")]
    assert choose_executor("auto", unknown) == "multi"  # as before
    assert choose_executor("multi", other) == "multi"  # asked for: as asked


# ----------------------------------------------------------------------------- the world


class _Spin:
    """Spin ``nodes`` in a SingleThreadedExecutor on a background thread."""

    def __init__(self, context, nodes):
        from rclpy.executors import SingleThreadedExecutor

        self.ex = SingleThreadedExecutor(context=context)
        for node in nodes:
            self.ex.add_node(node)
        self.stop = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        while not self.stop:
            self.ex.spin_once(timeout_sec=0.05)

    def close(self):
        self.stop = True
        self.thread.join(timeout=5)
        self.ex.shutdown()


def _command(pub, stamp_ns: int, v) -> None:
    from geometry_msgs.msg import TwistStamped

    msg = TwistStamped()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = topics.WORLD_FRAME
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = v
    pub.publish(msg)


@pytest.mark.ros
def test_world_on_sim_time_checks_and_lands_on_its_own_clock(context, swarm_file):
    from geometry_msgs.msg import TwistStamped
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    cfg = load_config(swarm_file)
    (spec,) = [
        s
        for s in plan(cfg, swarm_file, policy=False, cbf=False, autostart=True, sim_time=True)
        if s.name == "world"
    ]
    overrides = [Parameter(k, value=v) for k, v in spec.parameters.items()]
    world = load_plugin(spec)("world", context=context, parameter_overrides=overrides)
    period = 1.0 / cfg.rates.sim_hz
    step = world.timer.callback

    def slow_step():  # a loaded machine: every step takes two periods of wall time
        time.sleep(2.0 * period)
        step()

    world.timer.callback = slow_step
    # a node of the swarm: its clock follows /clock, it stamps commands with it
    probe = Node(
        "sim_time_probe", context=context, parameter_overrides=[Parameter(USE_SIM_TIME, value=True)]
    )
    pubs = {n: probe.create_publisher(TwistStamped, f"/{n}/cmd_vel", 1) for n in ("cf1", "cf2")}
    spinners = [_Spin(context, [world]), _Spin(context, [probe])]
    try:
        _fly_and_fall_silent(world, probe, pubs)
    finally:
        for sp in spinners:
            sp.close()
        probe.destroy_node()
        world.destroy_node()


def _fly_and_fall_silent(world, probe, pubs) -> None:
    sim, clock = world.sim, probe.get_clock()
    assert wait_for(lambda: world.mode_of("cf1") == world.mode_of("cf2") == "flying", 15)
    assert 0.0 < clock.now().nanoseconds * 1e-9 <= sim.t  # the probe reads the world's time
    start = sim.pos.copy()
    t_end = time.monotonic() + 1.5
    while time.monotonic() < t_end:
        _command(pubs["cf1"], clock.now().nanoseconds, (0.0, 0.3, 0.0))  # sim time
        _command(pubs["cf2"], time.time_ns(), (0.0, 0.3, 0.0))  # wall time: decades ahead
        time.sleep(0.05)
    assert world.tick_stats()["rtf"] < 0.6  # the world ran at about half speed ...
    assert world.rejected_stale[0] == 0 and world.rejected_future[0] == 0  # ... yet all fresh
    assert sim.pos[0, 1] > start[0, 1] + 0.05  # cf1 flew on its sim-time commands
    assert world.rejected_future[1] >= 1  # cf2's wall-time stamps: rejected, never flown
    np.testing.assert_allclose(sim.pos[1], start[1], atol=1e-12)
    last_ok = min(world.cmd_stamp_ns[0], world.cmd_rx_ns[0]) * 1e-9
    assert 0.0 < last_ok <= sim.t  # the stamps it accepted are sim times
    # silence: cf1 holds, then the watchdog lands it LAND_AFTER_S of sim time after the last
    # command it accepted (at half speed that is about twice as long on the wall)
    assert wait_for(lambda: world.mode_of("cf1") != "flying", 20)
    (landing,) = [e for e in sim.event_log if e["type"] == "watchdog_land"]
    assert landing["robot"] == "cf1"
    assert topics.LAND_AFTER_S < landing["silence_s"] <= topics.LAND_AFTER_S + 2 * sim.dt
    # on the sim clock, from the last accepted command (the record's t: the end of that step)
    assert topics.LAND_AFTER_S < landing["t"] - last_ok <= topics.LAND_AFTER_S + 3 * sim.dt
    assert world.mode_of("cf2") == "flying"  # never commanded: it hovers, no watchdog
