"""Ground-robot bridge core: exact unicycle map, watchdog, pose loss, neighbours."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_bridge.bridges.crazyflie_link import FlightState, LinkState
from sim_bridge.bridges.ground import GroundLink, GroundParams, GroundPose, unicycle_command
from sim_bridge.bridges.neighbors import neighbors_within


def test_unicycle_known_values():
    assert unicycle_command(0.2, 0.0, 0.0, 0.1, 1.0, 10.0) == pytest.approx((0.2, 0.0))
    assert unicycle_command(0.0, 0.2, math.pi / 2, 0.1, 1.0, 10.0) == pytest.approx((0.2, 0.0))
    # sideways request at heading 0: pure turn, w = uy / l
    assert unicycle_command(0.0, 0.05, 0.0, 0.1, 1.0, 10.0) == pytest.approx((0.0, 0.5))
    # backwards
    assert unicycle_command(-0.1, 0.0, 0.0, 0.1, 1.0, 10.0) == pytest.approx((-0.1, 0.0))
    # limits
    assert unicycle_command(5.0, 0.0, 0.0, 0.1, 0.3, 2.0) == pytest.approx((0.3, 0.0))
    assert unicycle_command(0.0, 5.0, 0.0, 0.1, 0.3, 2.0) == pytest.approx((0.0, 2.0))


def test_unicycle_matches_simulator_map():
    """Same map as sim_bridge.sim (v = [c, s].u, w = [-s, c].u / l)."""
    from sim_bridge import sim

    assert sim.SimParams().projection_distance == GroundParams().projection_distance
    for yaw in (0.0, 0.7, -2.5):
        c, s = math.cos(yaw), math.sin(yaw)
        v, w = unicycle_command(0.1, -0.05, yaw, 0.1, 1.0, 10.0)
        assert v == pytest.approx(c * 0.1 + s * -0.05)
        assert w == pytest.approx((-s * 0.1 + c * -0.05) / 0.1)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(-0.3, 0.3), st.floats(-0.3, 0.3), st.floats(-math.pi, math.pi), st.floats(0.05, 0.5)
)
def test_unicycle_realises_projection_point_velocity(ux, uy, yaw, l):
    """Unclipped, the projection point moves exactly with u: p' = R(yaw) diag(1, l) (v, w)."""
    v, w = unicycle_command(ux, uy, yaw, l, 10.0, 1e3)
    c, s = math.cos(yaw), math.sin(yaw)
    assert c * v - l * s * w == pytest.approx(ux, abs=1e-12)
    assert s * v + l * c * w == pytest.approx(uy, abs=1e-12)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_unicycle_refuses_non_finite(bad):
    with pytest.raises(ValueError, match="non-finite"):
        unicycle_command(bad, 0.0, 0.0, 0.1, 1.0, 1.0)
    with pytest.raises(ValueError, match="projection_distance"):
        GroundParams(projection_distance=0.0)


def make_link() -> GroundLink:
    return GroundLink("g1", GroundParams(max_speed=0.3, max_yaw_rate=2.0, land_after_s=1.0))


def test_services_refuse_before_first_pose_then_drive():
    link = make_link()
    assert link.step(0.0) is None
    assert link.link == LinkState.CONNECTING
    ok, msg = link.takeoff(0.0)
    assert not ok and "connecting" in msg
    link.set_pose(GroundPose(0.1, 0.0, 0.0, 0.0, 0.0))
    link.step(0.1)
    assert link.link == LinkState.UP
    ok, _ = link.takeoff(0.1)
    assert ok and link.flight == FlightState.HOVERING
    assert link.step(0.15) is None  # enabled, no command yet: nothing published
    link.set_command(0.2, 0.0, 0.2)
    assert link.step(0.2) == pytest.approx((0.2, 0.0))
    assert link.flight == FlightState.FLYING


def test_watchdog_holds_then_disables():
    link = make_link()
    link.set_pose(GroundPose(0.0, 0.0, 0.0, 0.0, 0.0))
    link.step(0.0)
    link.takeoff(0.0)
    link.set_command(0.1, 0.0, 1.0)
    for t in (1.05, 1.2, 1.25):
        link.set_pose(GroundPose(t, 0.0, 0.0, 0.0, 0.0))
        assert link.step(t) == pytest.approx((0.1, 0.0))
    link.set_pose(GroundPose(1.35, 0.0, 0.0, 0.0, 0.0))
    assert link.step(1.35) == (0.0, 0.0)
    assert link.flight == FlightState.HOLDING
    link.set_pose(GroundPose(2.0, 0.0, 0.0, 0.0, 0.0))
    assert link.step(2.0) == (0.0, 0.0)
    link.set_pose(GroundPose(2.1, 0.0, 0.0, 0.0, 0.0))
    assert link.step(2.1) == (0.0, 0.0)  # > land_after_s: disabled, zero repeated ...
    assert link.flight == FlightState.GROUNDED
    outs = [link.step(2.1 + 0.05 * k) for k in range(1, 6)]
    assert outs[:2] == [(0.0, 0.0)] * 2 and outs[2:] == [None] * 3  # ... then silence
    link.set_command(0.1, 0.0, 2.5)
    assert link.step(2.5) is None  # disabled robots ignore commands


def test_pose_loss_stops_a_driving_robot():
    link = make_link()
    link.set_pose(GroundPose(0.0, 0.0, 0.0, 0.0, 0.0))
    link.step(0.0)
    link.takeoff(0.0)
    link.set_command(0.1, 0.0, 0.5)
    assert link.step(0.5) == pytest.approx((0.1, 0.0))
    link.set_command(0.1, 0.0, 1.1)
    assert link.step(1.1) == (0.0, 0.0)  # pose 1.1 s old > pose_timeout_s
    assert link.link == LinkState.LOST and link.flight == FlightState.GROUNDED


def test_nan_and_emergency():
    link = make_link()
    assert not link.set_pose(GroundPose(0.0, math.nan, 0.0, 0.0, 0.0))
    link.set_pose(GroundPose(0.0, 0.0, 0.0, 0.0, 0.0))
    link.step(0.0)
    link.takeoff(0.0)
    assert link.set_command(0.1, 0.0, 0.1)
    assert not link.set_command(math.nan, 0.0, 0.15)
    assert link.step(0.2) == pytest.approx((0.1, 0.0))  # the NaN did not replace the command
    ok, _ = link.emergency_stop()
    assert ok and link.step(0.25) == (0.0, 0.0)
    ok, msg = link.takeoff(0.3)
    assert not ok and "emergency" in msg
    link.land()
    ok, _ = link.takeoff(0.3)
    assert ok


def test_neighbors_within_radius():
    pos = {"a": (0.0, 0.0, 0.0), "b": (0.5, 0.0, 0.0), "c": (0.0, 0.0, 1.5), "d": (1.0, 0.0, 0.0)}
    assert neighbors_within("a", pos, 1.0) == ["b", "d"]
    assert neighbors_within("c", pos, 1.0) == []
    assert neighbors_within("x", pos, 1.0) == []


GROUND_EVENTS = st.lists(
    st.tuples(
        st.floats(0.01, 0.6),  # time step [s]
        st.sampled_from(["none", "pose", "cmd", "stale_pose", "takeoff", "land", "estop"]),
        st.floats(-0.5, 0.5),  # command ux
        st.floats(0.0, 0.5),  # command age when stored [s]
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(GROUND_EVENTS)
def test_ground_watchdog_invariants_for_any_sequence(events):
    """Stale commands, pose loss, disable and emergency in any order and timing: a moving
    Twist only while enabled, the pose fresh and the command at most ``hold_after_s`` old;
    no Twist at all after the zero repeats of a stop; nothing drives after an emergency stop
    until ``land`` then ``takeoff``; pose loss while enabled disables."""
    link = make_link()
    p = link.params
    now, pose_t, cmd_t = 0.0, -math.inf, -math.inf
    stopped_for = None  # consecutive outputs since the robot stopped
    for dt, kind, ux, age in events:
        now += dt
        if kind == "pose":
            link.set_pose(GroundPose(now, 0.0, 0.0, 0.0, 0.3))
            pose_t = now
        elif kind == "stale_pose":  # a pose received long ago, replayed: the age counts
            link.set_pose(GroundPose(now - 5.0, 0.0, 0.0, 0.0, 0.3))
            pose_t = now - 5.0
        elif kind == "cmd":
            assert link.set_command(ux, 0.0, now - age)
            cmd_t = max(cmd_t, now - age)
        elif kind == "takeoff":
            was = (link.link, link.flight)
            ok, _ = link.takeoff(now)
            assert ok == (was == (LinkState.UP, FlightState.GROUNDED))
        elif kind == "land":
            assert link.land()[0]
        elif kind == "estop":
            assert link.emergency_stop()[0]
        before = link.flight
        out = link.step(now)
        after = link.flight
        if now - pose_t > p.pose_timeout_s and before in (
            FlightState.HOVERING,
            FlightState.FLYING,
            FlightState.HOLDING,
        ):
            assert after == FlightState.GROUNDED
        if out is not None and out != (0.0, 0.0):
            assert after == FlightState.FLYING and link.link == LinkState.UP
            assert now - pose_t <= p.pose_timeout_s
            assert now - cmd_t <= p.hold_after_s + 1e-9
        if after in (FlightState.GROUNDED, FlightState.EMERGENCY):
            stopped_for = 0 if before != after or kind in ("land", "estop") else stopped_for
            if stopped_for is not None:
                if stopped_for >= p.stop_repeats:
                    assert out is None
                else:
                    assert out in (None, (0.0, 0.0))
                stopped_for += 1
        else:
            stopped_for = None
