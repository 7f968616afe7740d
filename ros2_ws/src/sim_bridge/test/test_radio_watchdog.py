"""Link state machine on a scripted clock: watchdog invariants for any command timing."""

from __future__ import annotations

import math
import struct
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_bridge.bridges.crazyflie_link import (
    BatteryThresholds,
    CrazyflieLink,
    FlightState,
    LinkParams,
    LinkState,
    RobotLink,
)
from sim_bridge.ros.graph import wait_for

PERIOD = 1.0 / 20.0
MIN_INTERVAL = 1.0 / 100.0


class ScriptedTransport:
    """Duck-typed CflibTransport that records calls instead of using a radio."""

    protocol_version = 12
    telemetry_error = None

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def open(self, uri, on_up, on_down, on_rx, on_sample) -> None:
        self.on_rx, self.on_sample = on_rx, on_sample
        on_up()

    def send_velocity(self, datagram: bytes) -> None:
        self.calls.append(("velocity", struct.unpack("<Bffff", datagram[1:])))

    def takeoff(self, height: float, duration: float) -> None:
        self.calls.append(("takeoff", height, duration))

    def land(self, duration: float) -> None:
        self.calls.append(("land", duration))

    def notify_setpoint_stop(self) -> None:
        self.calls.append(("notify_stop",))

    def stop_motors(self) -> None:
        self.calls.append(("stop_motors",))

    def emergency_stop(self) -> None:
        self.calls.append(("emergency_stop",))

    def send_external_pose(self, pose) -> None:
        self.calls.append(("extpose", pose))

    def close(self) -> None:
        self.calls.append(("close",))


class Scripted:
    """A link driven tick by tick on a manual clock (no thread)."""

    def __init__(self, battery=None) -> None:
        self.now = 0.0
        self.transport = ScriptedTransport()
        self.link = CrazyflieLink(
            RobotLink("cf", "udp://127.0.0.1:1", takeoff_height=0.5, battery=battery),
            LinkParams(land_after_s=2.0, battery_tau_s=0.2),
            transport_factory=lambda: self.transport,
            clock=lambda: self.now,
        )
        assert self.link._connect()
        self.link._transport = self.transport

    def tick(self) -> list[tuple]:
        self.transport.on_rx()
        with self.link._cond:
            actions = self.link._tick(self.now, PERIOD, MIN_INTERVAL)
        for action in actions:
            self.link._perform(self.transport, action)
        return actions

    def advance(self, dt: float) -> list[tuple]:
        self.now += dt
        return self.tick()

    def fly(self) -> None:
        ok, _ = self.link.takeoff()
        assert ok
        self.tick()
        while self.link.status().flight != FlightState.HOVERING:
            self.advance(0.05)


def test_takeoff_hover_fly_sequence_on_the_transport():
    s = Scripted()
    assert s.link.status().link == LinkState.UP
    s.fly()
    assert s.transport.calls[0][0] == "takeoff"
    assert s.transport.calls[0][1] == 0.5
    s.link.set_command(0.1, 0.0, 0.0, 0.0)
    s.advance(0.001)
    assert s.link.status().flight == FlightState.FLYING
    kind, payload = s.transport.calls[-1]
    assert kind == "velocity" and payload[0] == 8
    assert payload[1] == struct.unpack("<f", struct.pack("<f", 0.1))[0]


def test_new_command_right_after_a_resend_goes_out_at_once():
    """A scheduled resend of the old command never holds a new one back (issue #17): the
    rate limit (max_rate_hz) counts from the last send of a new command only."""
    s = Scripted()
    s.fly()
    s.link.set_command(0.1, 0.0, 0.0, 0.0, stamp=s.now)
    s.advance(0.001)  # sent at once; the stream's grid restarts here
    s.advance(PERIOD)  # the scheduled resend of 0.1
    resent = s.transport.calls[-1]
    assert resent[0] == "velocity" and resent[1][1] == pytest.approx(0.1)
    s.link.set_command(0.2, 0.0, 0.0, 0.0, stamp=s.now)
    n_calls = len(s.transport.calls)
    s.advance(0.001)  # 1 ms after the resend, well inside MIN_INTERVAL
    sent = s.transport.calls[n_calls:]
    assert [c[0] for c in sent] == ["velocity"]
    assert sent[0][1] == (8, *struct.unpack("<fff", struct.pack("<fff", 0.2, 0.0, 0.0)), 0.0)
    # new commands themselves stay limited to max_rate_hz
    s.link.set_command(0.3, 0.0, 0.0, 0.0, stamp=s.now)
    n_calls = len(s.transport.calls)
    s.advance(0.001)
    assert not s.transport.calls[n_calls:]
    s.advance(MIN_INTERVAL)
    assert s.transport.calls[-1][1][1] == pytest.approx(0.3)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.001, 0.4),  # time step [s]
            st.booleans(),  # a new command arrives
            st.floats(-1.0, 1.0),  # vx
            st.floats(0.0, 0.6),  # its age when it arrives [s]
        ),
        min_size=1,
        max_size=80,
    )
)
def test_watchdog_invariants_for_any_command_timing(steps):
    s = Scripted()
    s.fly()
    last_cmd_stamp = -math.inf
    last_vx = 0.0
    last_velocity_t = None
    for dt, new, vx, age in steps:
        s.now += dt
        if new:
            stamp = s.now - age
            accepted = s.link.set_command(vx, 0.0, 0.0, 0.0, stamp=stamp)
            assert accepted == (age <= 0.3)  # stale on receipt: rejected (topics.stamp_ok)
            if accepted and stamp >= last_cmd_stamp:
                last_cmd_stamp, last_vx = stamp, max(min(vx, 0.5), -0.5)
        before = s.link.status().flight
        n_calls = len(s.transport.calls)
        s.tick()
        after = s.link.status().flight
        calls = s.transport.calls[n_calls:]
        cmd_age = s.now - last_cmd_stamp
        velocities = [c[1] for c in calls if c[0] == "velocity"]
        for v in velocities:
            if v[1] != 0.0:  # a moving setpoint is the latest command, and only when fresh
                assert cmd_age <= 0.3 + 1e-9
                assert v[1] == struct.unpack("<f", struct.pack("<f", last_vx))[0]
        if after in (FlightState.FLYING, FlightState.HOLDING):
            assert cmd_age <= 2.0 + 1e-9
            # the fixed-rate stream: a setpoint in every period
            if last_velocity_t is not None and not velocities:
                assert s.now - last_velocity_t < PERIOD + 1e-9
            if velocities:
                last_velocity_t = s.now
            if after == FlightState.HOLDING:
                assert cmd_age > 0.3 - 1e-9
                assert all(v[1:] == (0.0, 0.0, 0.0, 0.0) for v in velocities)
        else:
            assert not velocities or before in (FlightState.FLYING, FlightState.HOLDING)
        if before in (FlightState.FLYING, FlightState.HOLDING) and cmd_age > 2.0:
            assert after == FlightState.LANDING
            kinds = [c[0] for c in calls]
            assert kinds.index("notify_stop") < kinds.index("land")
        if after == FlightState.LANDING:
            last_velocity_t = None
            break


def test_critical_battery_lands_from_the_log_callback():
    s = Scripted(battery=BatteryThresholds(3.5, 3.2))
    s.fly()
    sample = {
        "stateEstimate.x": 0.0,
        "stateEstimate.y": 0.0,
        "stateEstimate.z": 0.5,
        "stabilizer.yaw": 90.0,
        "pm.vbat": 3.9,
    }
    s.transport.on_sample(sample)
    est = s.link.status().estimate
    assert est.yaw == math.pi / 2  # deg on the wire, rad in the bridge
    assert s.link.status().state_of_charge == (3.9 - 3.2) / (4.2 - 3.2)
    for _ in range(40):
        s.transport.on_sample({**sample, "pm.vbat": 3.0})
        if s.link.status().flight == FlightState.LANDING:
            break
    assert s.link.status().flight == FlightState.LANDING
    assert s.link.status().state_of_charge == 0.0 or s.link.status().battery_v < 3.2
    calls = [c[0] for c in s.tick()]
    assert calls == ["notify_stop", "land"]


def test_future_and_stale_stamps_are_rejected_and_counted():
    """topics "Command freshness": a stamp outside [now - 0.3 s, now + skew] never flies."""
    s = Scripted()
    s.fly()
    assert not s.link.set_command(0.1, 0.0, 0.0, 0.0, stamp=s.now + 3600.0)
    assert not s.link.set_command(0.1, 0.0, 0.0, 0.0, stamp=s.now + 0.2)
    assert not s.link.set_command(0.1, 0.0, 0.0, 0.0, stamp=s.now - 0.5)
    s.advance(0.01)
    assert s.link.status().flight == FlightState.HOVERING
    assert not [c for c in s.transport.calls if c[0] == "velocity"]
    counts = s.link.status().commands
    assert (counts.rejected_future, counts.rejected_stale, counts.rejected) == (2, 1, 3)
    # within the clock skew: accepted, and not fresher than now
    assert s.link.set_command(0.1, 0.0, 0.0, 0.0, stamp=s.now + 0.01)
    s.advance(0.01)
    assert s.link.status().flight == FlightState.FLYING
    s.advance(0.35)
    assert s.link.status().flight == FlightState.HOLDING


def test_too_fast_rejected_and_above_max_speed_clipped():
    s = Scripted()
    s.fly()
    assert not s.link.set_command(5.0 * 0.5 + 0.01, 0.0, 0.0, 0.0)  # > CMD_REJECT_FACTOR x
    assert s.link.set_command(1.0, 0.0, 0.0, 0.0)  # above max_speed 0.5: clipped
    assert s.link.set_command(0.0, 0.0, 0.0, 50.0)  # yaw rate above max_yaw_rate: clipped
    assert s.link.set_command(0.2, 0.0, 0.0, 0.0)
    counts = s.link.status().commands
    assert (counts.rejected_too_fast, counts.clipped, counts.rejected) == (1, 2, 1)


def test_geofence_lands():
    s = Scripted()
    s.link = CrazyflieLink(
        RobotLink("cf", "udp://127.0.0.1:1", arena=((-1.0, 1.0), (-1.0, 1.0), (0.0, 2.0))),
        LinkParams(),
        transport_factory=lambda: s.transport,
        clock=lambda: s.now,
    )
    assert s.link._connect()
    s.fly()
    s.transport.on_sample(
        {
            "stateEstimate.x": 1.5,
            "stateEstimate.y": 0.0,
            "stateEstimate.z": 0.5,
            "stabilizer.yaw": 0.0,
            "pm.vbat": 4.0,
        }
    )
    s.advance(0.01)
    assert s.link.status().flight == FlightState.LANDING
    assert "arena" in s.link.status().last_event


def test_nothing_queued_before_an_emergency_stop_goes_out_after_it():
    """A takeoff or land asked for just before an emergency stop, not yet sent by the link
    thread, is dropped: the stop is the last thing the drone hears (before, the arming
    request and takeoff, or the land, followed the emergency stop on the wire)."""
    s = Scripted()
    assert s.link.takeoff()[0]
    assert s.link.emergency_stop()[0]
    s.advance(0.05)
    assert [c[0] for c in s.transport.calls] == ["emergency_stop"]
    s = Scripted()
    s.fly()
    s.link.set_command(0.1, 0.0, 0.0, 0.0)
    s.advance(0.001)
    n = len(s.transport.calls)
    assert s.link.land()[0]
    assert s.link.emergency_stop()[0]
    s.advance(0.05)
    assert [c[0] for c in s.transport.calls[n:]] == ["emergency_stop"]
    assert s.link.status().flight == FlightState.EMERGENCY


class GatedTransport(ScriptedTransport):
    """Answers like a drone from its own thread; ``notify_setpoint_stop`` blocks until
    ``gate`` is set (a slow radio while the link thread sends)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.in_notify = threading.Event()
        self.closed = threading.Event()

    def open(self, uri, on_up, on_down, on_rx, on_sample) -> None:
        super().open(uri, on_up, on_down, on_rx, on_sample)

        def answer() -> None:
            while not self.closed.wait(0.02):
                on_rx()

        threading.Thread(target=answer, daemon=True).start()

    def notify_setpoint_stop(self) -> None:
        self.in_notify.set()
        self.gate.wait(2.0)
        super().notify_setpoint_stop()

    def close(self) -> None:
        self.closed.set()
        super().close()


def test_emergency_stop_during_a_send_is_the_last_thing_sent():
    """The link thread is inside a send of a batch (notify-setpoint-stop, then land) when
    the emergency stop comes from another thread: the rest of the batch is not sent after
    the stop (before, the land followed the emergency stop)."""
    transport = GatedTransport()
    link = CrazyflieLink(
        RobotLink("cf", "udp://127.0.0.1:1", takeoff_height=0.3),
        LinkParams(),
        transport_factory=lambda: transport,
    )
    link.start()
    try:
        assert wait_for(lambda: link.status().link == LinkState.UP, 2.0)
        assert link.takeoff()[0]
        assert wait_for(lambda: link.status().flight == FlightState.HOVERING, 3.0)
        assert link.land()[0]
        assert transport.in_notify.wait(1.0)
        result = []
        stopper = threading.Thread(target=lambda: result.append(link.emergency_stop()))
        stopper.start()
        time.sleep(0.03)
        transport.gate.set()
        stopper.join(2.0)
        assert result and result[0][0], result
        time.sleep(0.2)
        kinds = [c[0] for c in transport.calls]
        assert "emergency_stop" in kinds
        assert kinds[kinds.index("emergency_stop") + 1 :] == [], kinds
    finally:
        transport.gate.set()
        link.close()


def test_emergency_stop_that_raises_is_sent_again_by_the_link():
    """cflib raises from the emergency stop (sent from the caller's thread): the caller is
    told, the link stays latched in emergency and its thread sends the stop again, nothing
    else. Before, the exception went into the caller (the bridge's service callback, which
    ends the node's spin) and the stop was never sent."""
    s = Scripted()
    s.fly()
    s.link.set_command(0.1, 0.0, 0.0, 0.0)
    s.advance(0.01)
    fails = [1]
    send_estop = s.transport.emergency_stop

    def emergency_stop() -> None:
        if fails[0]:
            fails[0] -= 1
            raise Exception("Too many packets lost!\nTraceback ...")
        send_estop()

    s.transport.emergency_stop = emergency_stop
    n = len(s.transport.calls)
    ok, msg = s.link.emergency_stop()
    assert not ok and "re-sends" in msg, msg
    assert s.link.status().flight == FlightState.EMERGENCY
    s.advance(0.05)
    s.advance(0.05)
    assert s.transport.calls[n:] == [("emergency_stop",)]
    assert not s.link.takeoff()[0]
