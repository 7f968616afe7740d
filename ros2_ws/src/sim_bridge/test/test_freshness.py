"""The wire contract's command freshness rule and the simulator's failure ladder (no rclpy).

``topics.command_fresh``: fresh only if ``now - T <= stamp <= now + skew`` and
``now - rx <= T``. Properties over arbitrary stamps, receipt times and clocks, then the
simulator's watchdog: no robot moves on a command past its timeout, and a robot flown on
commands lands once none has been fresh for ``land_after_s``.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_bridge import topics
from sim_bridge.config import load_config
from sim_bridge.sim import Mode, SimParams, Simulator

T, SKEW = topics.CMD_TIMEOUT_S, topics.CMD_CLOCK_SKEW_S
clock = st.floats(min_value=1.0, max_value=2e9, allow_nan=False, allow_infinity=False)
offset = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False, allow_infinity=False)


@given(now=clock, d_stamp=offset, d_rx=st.floats(min_value=0.0, max_value=5.0))
def test_fresh_exactly_inside_the_window(now, d_stamp, d_rx):
    stamp, rx = now + d_stamp, now - d_rx
    expected = (now - T <= stamp <= now + SKEW) and (now - rx <= T)
    assert topics.command_fresh(stamp, rx, now) == expected


@given(stamp=clock, d_rx=offset, later=st.floats(min_value=0.0, max_value=1e4))
def test_no_command_outlives_its_receipt_or_its_stamp(stamp, d_rx, later):
    """Whatever its stamp (even far in the future), a command is never fresh more than T
    after its receipt, nor more than T after its stamp."""
    rx = stamp + d_rx
    now = max(rx, stamp) + T + 1e-6 + later
    assert not topics.command_fresh(stamp, rx, now)


@given(now=clock, ahead=st.floats(min_value=SKEW * 1.001, max_value=1e7))
def test_future_stamps_beyond_the_skew_are_never_fresh(now, ahead):
    assert not topics.stamp_ok(now + ahead, now)
    assert not topics.command_fresh(now + ahead, now, now)


@given(now=clock)
def test_unset_or_non_finite_stamps_are_never_fresh(now):
    for stamp in (0.0, math.nan, math.inf, -math.inf):
        assert not topics.command_fresh(stamp, now, now)


@given(
    v=st.tuples(*[st.floats(allow_nan=True, allow_infinity=True, width=64)] * 3),
    vmax=st.floats(min_value=0.01, max_value=10.0),
)
def test_command_valid_is_finite_and_bounded(v, vmax):
    ok = topics.command_valid(*v, vmax)
    finite = all(math.isfinite(c) for c in v)
    speed = math.sqrt(sum(c * c for c in v)) if finite else math.inf
    if ok:
        assert finite and speed <= topics.CMD_REJECT_FACTOR * vmax * (1 + 1e-12)
    elif finite and math.isfinite(speed):
        assert speed >= topics.CMD_REJECT_FACTOR * vmax * (1 - 1e-12)


def _one_drone():
    return load_config(
        {
            "fileversion": 1,
            "arena": {"x": [-5.0, 5.0], "y": [-5.0, 5.0], "z": [0.0, 2.0]},
            "comm_radius": 1.0,
            "robot_types": {"cf": {"kind": "crazyflie", "takeoff_height": 0.5}},
            "robots": [
                {"name": "a", "type": "cf", "pose": [0.0, 0.0, 0.0, 0.0]},
                {"name": "b", "type": "cf", "pose": [2.0, 0.0, 0.0, 0.0]},
            ],
            "consumers": [],
        }
    )


@settings(max_examples=40)
@given(
    schedule=st.lists(
        st.tuples(st.floats(0.0, 1.0), st.integers(1, 80)),  # (command age [s], steps)
        min_size=1,
        max_size=6,
    )
)
def test_sim_never_moves_on_a_stale_command_and_lands_after_silence(schedule):
    """Drive robot ``a`` with commands of random age in random bursts, ``b`` always fresh.
    ``a`` moves only while its command is younger than T; once it has flown on a command,
    sim silence longer than land_after_s lands it; ``b`` is never affected."""
    sim = Simulator(_one_drone(), dt=0.05, params=SimParams(land_after_s=1.0))
    sim.takeoff(0)
    sim.takeoff(1)
    while sim.mode[0] != Mode.FLYING:
        sim.step()
    flown = False
    last_fresh = -math.inf
    for age, steps in schedule:
        sim.set_commands(np.array([[0.2, 0.0, 0.0], [0.0, 0.2, 0.0]]), np.array([age, 0.0]))
        for _ in range(steps):
            sim.set_command(1, [0.0, 0.2 if sim.steps % 40 < 20 else -0.2, 0.0], 0.0)
            before = sim.pos[0].copy()
            mode = sim.mode[0]
            cmd_age = sim.t - sim.cmd_time[0]
            sim.step()
            moved = np.linalg.norm(sim.pos[0, :2] - before[:2])
            if cmd_age > T:
                assert moved == 0.0
            elif mode == Mode.FLYING:
                flown, last_fresh = True, sim.t
            silence = sim.t - last_fresh
            if flown and silence > 1.0 + 2 * sim.dt:
                assert sim.mode[0] in (Mode.LANDING, Mode.GROUNDED)
            if not flown:
                assert sim.mode[0] == Mode.FLYING  # never commanded: hovers
    assert sim.mode[1] == Mode.FLYING  # b, always fresh, flies on
    assert sim.watchdog_landings[1] == 0


def test_a_stream_of_garbage_is_no_command_and_ends_in_a_landing():
    """NaN or absurd commands every step hold the robot at once and do not postpone the
    watchdog: it lands land_after_s after its last valid command, like silence."""
    sim = Simulator(_one_drone(), dt=0.05, params=SimParams(land_after_s=1.0))
    sim.takeoff(0)
    while sim.mode[0] != Mode.FLYING:
        sim.step()
    for _ in range(5):
        sim.set_command(0, [0.2, 0.0, 0.0])
        sim.step()
    t_last = sim.t - sim.dt
    held = sim.pos[0].copy()
    k = 0
    while sim.mode[0] == Mode.FLYING and k < 100:
        assert not sim.set_command(0, [np.nan, 0.0, 0.0] if k % 2 else [1e6, 0.0, 0.0])
        sim.step()
        k += 1
        np.testing.assert_array_equal(sim.pos[0, :2], held[:2])  # held at once
    assert sim.mode[0] == Mode.LANDING
    assert 1.0 <= sim.t - t_last <= 1.0 + 2.5 * sim.dt
    assert sim.rejected[0] == k and sim.watchdog_landings[0] == 1


def test_clock_ages_keep_the_watchdog_on_the_callers_clock():
    """The world node re-sends its stored commands every tick with their ages on its clock.
    While sim time catches up (two steps per tick here), the landing still comes after
    land_after_s on that clock, not after land_after_s of the faster-running sim time."""
    sim = Simulator(_one_drone(), dt=0.05, params=SimParams(land_after_s=1.0))
    sim.takeoff(0)
    while sim.mode[0] != Mode.FLYING:
        sim.step()
    v = np.zeros((2, 3))
    v[0, 0] = 0.2
    sim.set_commands(v, np.zeros(2), clock_ages=True)
    sim.step()
    age, ticks = 0.0, 0
    while sim.mode[0] == Mode.FLYING and ticks < 100:
        ticks += 1
        age += 0.05  # one tick of the caller's clock ...
        sim.set_commands(v, np.array([age, 0.0]) - sim.dt, clock_ages=True)
        sim.step()  # ... holds two sim steps (catching up)
        sim.step()
    assert sim.mode[0] == Mode.LANDING
    assert 1.0 <= age <= 1.0 + 2 * 0.05


def test_mode_watch_is_down_only_after_being_in_service():
    watch = topics.ModeWatch()
    assert (watch.update("grounded"), watch.down) == (True, False)  # waiting, not down
    assert (watch.update("taking_off"), watch.down) == (True, False)
    for stopped in topics.MODES_STOPPED:
        assert (watch.update(stopped), watch.down, watch.mode) == (True, True, stopped)
    assert (watch.update("sim"), watch.down, watch.mode) == (False, True, "emergency")
    assert (watch.update("holding"), watch.down) == (True, False)  # back in service


@given(st.lists(st.sampled_from([*topics.MODES_ACTIVE, *topics.MODES_STOPPED, "", "up"])))
def test_mode_watch_down_iff_the_last_valid_mode_stopped_after_an_active_one(modes):
    watch = topics.ModeWatch()
    for m in modes:
        watch.update(m)
    valid = [m for m in modes if m in topics.MODES_ACTIVE + topics.MODES_STOPPED]
    active = [k for k, m in enumerate(valid) if m in topics.MODES_ACTIVE]
    expect = bool(valid) and valid[-1] in topics.MODES_STOPPED and bool(active)
    assert watch.down == expect
    assert watch.mode == (valid[-1] if valid else "")
