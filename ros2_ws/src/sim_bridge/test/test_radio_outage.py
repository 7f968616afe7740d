"""Radio outages: the link recovers, an undelivered land is re-sent, a drone on the ground
is never re-armed, stale log data is not spammed, stale / future commands never fly.

Link tests run real cflib over udp://127.0.0.1 against the loopback fake; the state-machine
property runs the link on a scripted clock; the node tests go over DDS.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
import time

import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist, TwistStamped
from hypothesis import example, given, settings
from hypothesis import strategies as st
from nav_msgs.msg import Odometry
from rclpy.parameter import Parameter
from sim_bridge.bridges.crazyflie_link import (
    BatteryLevel,
    BatteryThresholds,
    CrazyflieLink,
    FlightState,
    LinkParams,
    LinkState,
    RobotLink,
    stop_links,
)
from sim_bridge.fake_crazyflie import (
    ON_GROUND_Z,
    PORT_COMMANDER_GENERIC,
    PORT_LOG,
    PORT_SETPOINT_HL,
    FakeCrazyflie,
    decode_velocity_setpoint,
)
from sim_bridge.ros.crazyflie_node import CrazyflieBridgeNode
from sim_bridge.ros.graph import wait_for
from sim_bridge.ros.ground_node import GroundBridgeNode
from sim_bridge.topics import DIAGNOSTICS
from std_srvs.srv import Trigger

HL_TAKEOFF, HL_LAND = 7, 8
SETPOINT_STOP = 0


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "toc")


class CountRecords(logging.Handler):
    """Counts cflib's "no LogEntry" warnings (attached to cflib's log module logger)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.ids: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "no LogEntry to handle" in message:
            self.ids.append(message.rsplit("=", 1)[-1])


@pytest.fixture
def no_log_entry():
    import cflib.crazyflie.log  # noqa: F401

    handler = CountRecords()
    logger = logging.getLogger("cflib.crazyflie.log")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def start_link(
    fake: FakeCrazyflie, cache_dir: str, height: float = 0.5, takeoff: bool = True, **overrides
):
    params = LinkParams(toc_cache_dir=cache_dir, **overrides)
    link = CrazyflieLink(RobotLink("cf", fake.uri, takeoff_height=height), params)
    link.start()
    assert wait_for(lambda: link.status().link == LinkState.UP, 10.0), link.status()
    if not takeoff:
        return link
    ok, message = link.takeoff()
    assert ok, message
    assert wait_for(lambda: link.status().flight == FlightState.HOVERING, 6.0), link.status()
    return link


class Commander:
    """Publishes zero-velocity commands at 20 Hz, as the CBF keeps doing through an outage."""

    def __init__(self, link: CrazyflieLink) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(link,), daemon=True)
        self._thread.start()

    def _run(self, link: CrazyflieLink) -> None:
        while not self._stop.wait(0.05):
            link.set_command(0.0, 0.0, 0.0, 0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


def answered(fake: FakeCrazyflie, since: float):
    """Datagrams the fake received, and acted on, at t >= since."""
    return [r for r in fake.records() if r.t >= since and not r.silent and r.data]


def is_land(r) -> bool:
    return r.port == PORT_SETPOINT_HL and r.data[0] == HL_LAND


def is_stop(r) -> bool:
    return r.port == PORT_COMMANDER_GENERIC and r.channel == 0 and r.data[0] == SETPOINT_STOP


# ----------------------------------------------------------------------------- on the wire


def test_short_outage_resends_land_and_the_drone_lands(cache_dir):
    """1.6 s of silence while flying on setpoints: the land that went into the silence is
    sent again when the fake answers, before the firmware's 2 s motor timeout; the drone
    lands on the high-level commander and its motors are stopped on the floor."""
    fake = FakeCrazyflie()
    link = start_link(fake, cache_dir)
    commander = Commander(link)
    try:
        assert wait_for(lambda: link.status().flight == FlightState.FLYING, 2.0)
        time.sleep(0.5)
        t_silent = time.monotonic()
        fake.set_responding(False)
        assert wait_for(lambda: link.status().link == LinkState.LOST, 3.0)
        assert link.status().flight == FlightState.LANDING
        time.sleep(max(0.0, t_silent + 1.6 - time.monotonic()))
        z_back = fake.position[2]
        fake.set_responding(True)
        t_back = time.monotonic()
        assert z_back == pytest.approx(0.5, abs=0.05)  # still in the air
        # the land went into the silence once, unheard ...
        assert any(is_land(r) and r.silent for r in fake.records_on(PORT_SETPOINT_HL))
        # ... and is sent again, after the hand-over from streamed setpoints
        assert wait_for(lambda: any(is_land(r) for r in answered(fake, t_back)), 3.0)
        after = answered(fake, t_back)
        land = next(r for r in after if is_land(r))
        notify = [r for r in after if r.port == PORT_COMMANDER_GENERIC and r.channel == 1]
        assert notify and notify[0].t <= land.t
        assert link.status().link == LinkState.UP
        assert wait_for(lambda: link.status().flight == FlightState.GROUNDED, 6.0)
        assert wait_for(lambda: not fake.motors_on, 1.0)
        events = fake.motor_events(since=t_silent)
        # no cut in mid-air: the motors went off once, by the stop setpoint, on the floor
        assert [(e.kind, e.cause) for e in events] == [("off", "stop_setpoint")], events
        assert events[0].z <= ON_GROUND_Z
        # the landing timer restarted with the re-sent land: grounded only after the ramp
        duration = struct.unpack("<BBff?f", land.data[:15])[5]
        assert duration == pytest.approx(max(z_back / 0.3, 1.0), abs=0.1)
        assert events[0].t >= land.t + duration
        # no setpoint after the link came back, and nothing armed on the ground
        assert not [r for r in after if decode_velocity_setpoint(r)]
        assert fake.armed_on_ground(since=t_silent) == 0
    finally:
        commander.stop()
        link.close()
        fake.close()


@pytest.mark.parametrize("flying_on", ["setpoints", "high_level"])
def test_long_outage_reconnects_within_3s_and_never_rearms(cache_dir, no_log_entry, flying_on):
    """5 s of silence: the connection is re-opened and back within 3 s of the fake
    answering. A drone flown on setpoints fell when the firmware cut its motors (2 s): it
    gets a stop and nothing that could start the motors. A drone hovering on the
    high-level commander is still in the air: it gets the land again, and lands."""
    fake = FakeCrazyflie()
    link = start_link(fake, cache_dir, height=0.4)
    commander = Commander(link) if flying_on == "setpoints" else None
    try:
        if commander is not None:
            assert wait_for(lambda: link.status().flight == FlightState.FLYING, 2.0)
        time.sleep(0.5)
        t_silent = time.monotonic()
        fake.set_responding(False)
        time.sleep(5.0)
        z_back = fake.position[2]
        fake.set_responding(True)
        t_back = time.monotonic()
        assert link.status().link == LinkState.LOST
        # generous margin: the figure (about 0.5 s) is measured by benchmarks/radio.py
        assert wait_for(lambda: link.status().link == LinkState.UP, 3.0)
        assert link.status().connects == 2
        assert wait_for(lambda: link.status().flight == FlightState.GROUNDED, 6.0)
        assert wait_for(lambda: not fake.motors_on, 1.0)
        if flying_on == "setpoints":  # GROUNDED is set when the stop is queued, not yet heard
            assert wait_for(lambda: any(is_stop(r) for r in answered(fake, t_back)), 1.0)
        after = answered(fake, t_back)
        hl = [r.data[0] for r in after if r.port == PORT_SETPOINT_HL]
        if flying_on == "setpoints":
            assert z_back <= ON_GROUND_Z  # the firmware cut it during the outage
            cuts = fake.motor_events(since=t_silent)
            assert [(e.kind, e.cause) for e in cuts] == [("off", "firmware_timeout")]
            assert hl == []  # neither land nor takeoff
            assert any(is_stop(r) for r in after)
        else:
            assert z_back == pytest.approx(0.4, abs=0.02)
            assert hl == [HL_LAND]
            offs = [e for e in fake.motor_events(since=t_silent) if e.kind == "off"]
            assert [e.cause for e in offs] == ["stop_setpoint"] and offs[0].z <= ON_GROUND_Z
        assert not [r for r in after if decode_velocity_setpoint(r)]
        assert fake.armed_on_ground(since=t_silent) == 0
        on = [e for e in fake.motor_events(since=t_silent) if e.kind in ("on", "arm")]
        assert on == []
        assert no_log_entry.ids == []
    finally:
        if commander is not None:
            commander.stop()
        link.close()
        fake.close()


def test_shutdown_while_the_link_is_lost_lands_the_drone_when_it_answers(cache_dir):
    """The bridge shuts down (stop_links) while a hovering drone's link is lost (its land
    went into the silence, unheard); the radio answers 0.5 s later: stop_links waits for it
    and the re-sent land brings the drone down. Before, stop_links closed the link at once
    and the drone hovered on under its high-level commander, which has no timeout."""
    fake = FakeCrazyflie()
    link = start_link(fake, cache_dir, height=0.3)
    try:
        fake.set_responding(False)
        assert wait_for(lambda: link.status().link == LinkState.LOST, 3.0)
        threading.Timer(0.5, fake.set_responding, args=(True,)).start()
        t0 = time.monotonic()
        stop_links([link], land_timeout_s=5.0)
        assert time.monotonic() - t0 < 5.0
        assert any(is_land(r) for r in answered(fake, t0)), fake.high_level_commands()
        assert wait_for(lambda: not fake.motors_on, 1.0), fake.position
        assert fake.position[2] <= ON_GROUND_Z
        events = fake.motor_events(since=t0)
        assert [(e.kind, e.cause) for e in events] == [("off", "stop_setpoint")], events
        assert events[0].z <= ON_GROUND_Z
    finally:
        link.close()
        fake.close()


def test_stale_log_data_dropped_while_reconnecting_real_errors_still_logged(
    cache_dir, no_log_entry
):
    """The fake answers again while a connection attempt whose requests were lost is open:
    log data of the old block flows to it. It is dropped and counted, not logged by cflib,
    and does not count as an answer (the attempt is abandoned and the next one connects).
    Once the new block runs, log data of an unknown block is cflib's warning again."""
    fake = FakeCrazyflie()
    link = start_link(
        fake,
        cache_dir,
        takeoff=False,
        link_timeout_s=0.3,
        reconnect_after_s=0.6,
        answer_timeout_s=2.5,
        connect_timeout_s=5.0,
        retry_backoff_s=0.1,
    )
    try:
        fake.set_responding(False)
        # lost at 0.3 s, re-opened at 0.6 s; the attempt at ~0.7 s hears nothing until 3.2 s
        assert wait_for(lambda: link.status().link == LinkState.LOST, 2.0)
        time.sleep(1.5)
        fake.set_responding(True)
        t_back = time.monotonic()
        assert wait_for(lambda: link.status().link == LinkState.UP, 6.0)
        assert link.status().connects == 2
        assert link.status().stale_log_packets > 0
        assert no_log_entry.ids == []
        assert time.monotonic() - t_back < 6.0
        # real errors stay visible: log data for a block nobody created
        fake.inject(PORT_LOG, 2, bytes([77, 0, 0, 0]) + struct.pack("<f", 1.0))
        assert wait_for(lambda: "77" in no_log_entry.ids, 2.0)
    finally:
        link.close()
        fake.close()


# ----------------------------------------------------------------------------- state machine


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
        self.calls.append(("velocity", datagram))

    def takeoff(self, height: float, duration: float) -> None:
        self.calls.append(("takeoff", height, duration))

    def land(self, duration: float) -> None:
        self.calls.append(("land", duration))

    def notify_setpoint_stop(self) -> None:
        self.calls.append(("notify_stop",))

    def stop_motors(self) -> None:
        self.calls.append(("stop_motors",))

    def close(self) -> None:
        self.calls.append(("close",))


DT = 0.05
PERIOD, MIN_INTERVAL = 1.0 / 20.0, 1.0 / 100.0


def sample(z: float) -> dict:
    return {
        "stateEstimate.x": 0.0,
        "stateEstimate.y": 0.0,
        "stateEstimate.z": z,
        "stabilizer.yaw": 0.0,
        "pm.vbat": 4.0,
    }


class Drone:
    """Just enough of the firmware to judge the bridge: motors, altitude, the low-level
    setpoint timeout (motors off 2 s after the last setpoint) and high-level ramps."""

    def __init__(self) -> None:
        self.z, self.motors_on, self.low_level_t = 0.0, False, None
        self.ramp: tuple[float, float, float, float] | None = None  # t0, t1, z0, z1
        self.armed_on_ground: list[tuple[float, str]] = []
        self.cuts_in_air: list[float] = []

    def _on(self, t: float, why: str) -> None:
        if not self.motors_on and self.z <= ON_GROUND_Z:
            self.armed_on_ground.append((t, why))
        self.motors_on = True

    def hear(self, t: float, action: tuple) -> None:
        self.step(t)
        kind = action[0]
        if kind == "velocity":
            self._on(t, kind)
            self.low_level_t, self.ramp = t, None
        elif kind == "notify_stop":
            self.low_level_t = None
        elif kind in ("takeoff", "land") and self.low_level_t is None:
            self._on(t, kind)
            target = action[1] if kind == "takeoff" else 0.0
            self.ramp = (t, t + action[-1], self.z, target)
        elif kind == "stop_motors":
            self.motors_on, self.low_level_t, self.ramp, self.z = False, None, None, 0.0

    def step(self, t: float) -> None:
        if self.low_level_t is not None and t - self.low_level_t > 2.0 and self.motors_on:
            if self.z > ON_GROUND_Z:
                self.cuts_in_air.append(t)
            self.motors_on, self.low_level_t, self.z = False, None, 0.0
        if self.ramp is not None and self.motors_on:
            t0, t1, z0, z1 = self.ramp
            self.z = z0 + min(max((t - t0) / (t1 - t0), 0.0), 1.0) * (z1 - z0)


@settings(max_examples=200, deadline=None)
@given(
    streaming=st.booleans(),
    flight_s=st.floats(0.0, 1.5),
    silence_s=st.floats(1.1, 8.0),
    uplink_works=st.booleans(),
    detect_delay_s=st.floats(0.0, 0.8),
    estimates=st.booleans(),
)
def test_recovery_never_arms_a_grounded_drone(
    streaming, flight_s, silence_s, uplink_works, detect_delay_s, estimates
):
    """A scripted drone (firmware timeout included) loses the link for any time, the uplink
    working or not, the bridge noticing the return late or at once, with or without state
    estimates after it: the motors of a drone on the floor are never started, no takeoff or
    setpoint follows the return, and with estimates the drone ends landed and stopped."""
    clock = [0.0]
    transport = ScriptedTransport()
    params = LinkParams(land_after_s=2.0)
    link = CrazyflieLink(
        RobotLink("cf", "udp://127.0.0.1:1", takeoff_height=0.5),
        params,
        transport_factory=lambda: transport,
        clock=lambda: clock[0],
    )
    drone = Drone()
    window = {"silent_from": math.inf, "silent_until": math.inf}

    def step(rx: bool, estimate: bool = True) -> bool:
        clock[0] += DT
        t = clock[0]
        drone.step(t)
        if rx:
            transport.on_rx()
            if estimate:
                transport.on_sample(sample(drone.z))
        with link._cond:
            reopen = link._check_link(t)
            actions = link._tick(t, PERIOD, MIN_INTERVAL)
        silent = window["silent_from"] <= t < window["silent_until"]
        for action in actions:
            link._perform(transport, action)
            if not silent or uplink_works:
                drone.hear(t, action)
        return reopen

    assert link._connect()
    clock[0] = 1.0
    transport.on_rx()
    assert link.takeoff()[0]
    step(True)
    while link.status().flight != FlightState.HOVERING:
        step(True)
    for _ in range(int(flight_s / DT)):
        if streaming:
            link.set_command(0.0, 0.0, 0.0, 0.0)
        step(True)
    assert drone.z == pytest.approx(0.5, abs=0.01)
    assert [why for _, why in drone.armed_on_ground] == ["takeoff"]
    drone.armed_on_ground.clear()
    t_silent = clock[0]
    window["silent_from"] = t_silent
    window["silent_until"] = t_silent + silence_s + detect_delay_s
    reopened = False
    while clock[0] < window["silent_until"]:
        if streaming:
            link.set_command(0.0, 0.0, 0.0, 0.0)
        if step(False) and not reopened:
            link._end_connection()  # what the link thread does before re-opening
            reopened = True
        assert link.status().flight != FlightState.GROUNDED  # not while nothing is heard
    assert link.status().link == LinkState.LOST
    if reopened:
        assert link._connect()
    n_back = len(transport.calls)
    t_back = clock[0]
    while clock[0] < t_back + 8.0:
        if streaming:
            link.set_command(0.0, 0.0, 0.0, 0.0)
        step(True, estimate=estimates)
    kinds = [c[0] for c in transport.calls[n_back:]]
    assert drone.armed_on_ground == []
    assert "takeoff" not in kinds and "velocity" not in kinds
    assert link.status().link == LinkState.UP
    if estimates:
        assert link.status().flight == FlightState.GROUNDED
        assert not drone.motors_on and drone.z == 0.0
        assert kinds[-1] == "stop_motors"
        if "land" in kinds:  # the landing timer restarted with the re-sent land
            i = kinds.index("land")
            assert kinds[i - 1 : i + 2] == ["notify_stop", "land", "stop_motors"]


@pytest.mark.parametrize("trigger", ["shutdown", "battery"])
def test_shutdown_right_after_the_link_is_back_sends_no_land_to_a_fallen_drone(trigger):
    """cflib reports the link lost (or a send raised) while the drone flies on setpoints;
    the firmware cuts its motors 2 s later (it falls) and the connection is re-opened
    2.1 s after the loss. The bridge shuts down (stop_links polls begin_shutdown) before
    the first state estimate of the new connection: the shutdown leaves the decision to
    the recovery, whose estimate shows the drone on the floor, so only a stop goes out.
    Before, the shutdown sent a land at once, starting the motors of the fallen drone.
    The same for a battery found critical by the first estimate of the new connection (it
    was fine before the loss, so that estimate rates it afresh): before, it sent a land at
    once, too."""
    clock = [0.0]
    transport = ScriptedTransport()
    vbat = [4.0]
    link = CrazyflieLink(
        RobotLink(
            "cf",
            "udp://127.0.0.1:1",
            takeoff_height=0.5,
            battery=BatteryThresholds(warning_v=3.5, critical_v=3.2),
        ),
        LinkParams(land_after_s=2.0),
        transport_factory=lambda: transport,
        clock=lambda: clock[0],
    )
    drone = Drone()
    connected = [True]

    def step() -> None:
        clock[0] += DT
        t = clock[0]
        drone.step(t)
        if not connected[0]:
            return  # the link thread is between connections: nothing runs
        transport.on_rx()
        transport.on_sample({**sample(drone.z), "pm.vbat": vbat[0]})
        with link._cond:
            link._check_link(t)
            actions = link._tick(t, PERIOD, MIN_INTERVAL)
        for action in actions:
            link._perform(transport, action)
            drone.hear(t, action)

    assert link._connect()
    clock[0] = 1.0
    transport.on_rx()
    assert link.takeoff()[0]
    while link.status().flight != FlightState.HOVERING:
        step()
    for _ in range(10):
        link.set_command(0.0, 0.0, 0.0, 0.0)
        step()
    assert link.status().flight == FlightState.FLYING
    assert [why for _, why in drone.armed_on_ground] == ["takeoff"]
    drone.armed_on_ground.clear()
    t0 = clock[0]
    link._cb_down(link._gen, "connection lost: Too many packets lost")
    link._end_connection()  # what the link thread does before re-opening
    connected[0] = False
    while clock[0] < t0 + 2.1:
        step()
    assert drone.cuts_in_air and drone.z == 0.0  # the firmware cut the motors: it fell
    assert link._connect()
    connected[0] = True
    n_back = len(transport.calls)
    if trigger == "shutdown":
        waiting = link.begin_shutdown()  # before the first estimate of the new connection
        while waiting and clock[0] < t0 + 2.1 + 5.0:
            step()
            waiting = link.begin_shutdown()
    else:
        vbat[0] = 3.0
    for _ in range(10):
        step()
    kinds = [c[0] for c in transport.calls[n_back:]]
    assert drone.armed_on_ground == [], (drone.armed_on_ground, kinds)
    assert kinds == ["stop_motors"], kinds
    assert link.status().flight == FlightState.GROUNDED
    if trigger == "battery":
        assert not link.takeoff()[0]  # critical on the ground: refused


class FlakyTransport(ScriptedTransport):
    """ScriptedTransport whose next call of a kind in ``raise_on`` raises (as cflib does)."""

    def __init__(self) -> None:
        super().__init__()
        self.raise_on: set[str] = set()

    def _maybe_raise(self, kind: str) -> None:
        if kind in self.raise_on:
            self.raise_on.discard(kind)
            raise Exception(f"Too many packets lost ({kind})")

    def send_velocity(self, datagram: bytes) -> None:
        self._maybe_raise("velocity")
        super().send_velocity(datagram)

    def takeoff(self, height: float, duration: float) -> None:
        self._maybe_raise("takeoff")
        super().takeoff(height, duration)

    def land(self, duration: float) -> None:
        self._maybe_raise("land")
        super().land(duration)

    def notify_setpoint_stop(self) -> None:
        self._maybe_raise("notify_stop")
        super().notify_setpoint_stop()

    def stop_motors(self) -> None:
        self._maybe_raise("stop_motors")
        super().stop_motors()

    def emergency_stop(self) -> None:
        self._maybe_raise("emergency_stop")
        self.calls.append(("emergency_stop",))


class LatchingDrone(Drone):
    """Drone with the firmware's latched emergency stop."""

    stopped = False

    def hear(self, t: float, action: tuple) -> None:
        if self.stopped:
            return
        if action[0] == "emergency_stop":
            self.step(t)
            self.stopped = True
            self.motors_on, self.low_level_t, self.ramp, self.z = False, None, None, 0.0
            return
        super().hear(t, action)


SEND_KINDS = ["velocity", "takeoff", "land", "notify_stop", "stop_motors", "emergency_stop"]
FAULT_EVENTS = st.one_of(
    st.tuples(st.just("fly"), st.integers(1, 40), st.floats(-0.6, 0.6)),
    st.tuples(st.just("idle"), st.integers(1, 60)),
    st.tuples(st.just("fly_idle"), st.integers(1, 20), st.integers(1, 80)),
    st.tuples(st.just("silence"), st.integers(1, 200), st.booleans()),
    st.tuples(st.just("cflib_loss")),
    st.tuples(st.just("raise"), st.sampled_from(SEND_KINDS)),
    st.tuples(st.just("bad_cmd"), st.sampled_from(["nan", "inf", "future", "stale", "fast"])),
    st.tuples(st.just("takeoff"), st.booleans()),
    st.tuples(st.just("land")),
    st.tuples(st.just("estop")),
    st.tuples(st.just("shutdown"), st.integers(1, 40)),
    st.tuples(st.just("battery"), st.sampled_from([4.0, 3.4, 3.0])),
    st.tuples(st.just("geofence"), st.sampled_from([0.0, 1.5])),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(FAULT_EVENTS, min_size=1, max_size=25))
# cflib reports the loss while flying on setpoints; the connection is back 1.2 s later but
# no estimate comes, and the link is lost again after the firmware cut the motors (it
# fell): the second loss sent a land that started the motors on the floor.
@example(events=[("fly", 1, 0.0), ("cflib_loss",), ("silence", 23, False), ("silence", 21, True)])
# the watchdog's land goes out into a silence not yet declared a loss (unheard): the drone
# stays on setpoints and the firmware cuts it; the land re-sent without an estimate, as if
# the high-level commander held the drone, started the motors on the floor.
@example(events=[("fly_idle", 1, 20), ("silence", 71, False), ("silence", 11, True)])
# a takeoff accepted just before cflib reports the loss, not sent yet: it went out on the
# next connection (any time later), starting the motors, followed by a stop.
@example(events=[("land",), ("idle", 60), ("takeoff", True), ("idle", 40)])
def test_fault_sequences_keep_the_link_invariants(events):
    """Any sequence of faults against the link's state machine on a scripted clock (radio
    silences with or without a working uplink, cflib-reported losses, cflib exceptions from
    any send, stale / future / NaN / too fast commands, takeoff / land / emergency-stop
    storms, shutdown, battery, geofence), run as the link thread runs it (``_check_link``,
    ``_tick``, ``_send``, re-open on a failed send). Invariants: no exception escapes; the
    motors of a drone on the floor are only started by an accepted takeoff (or a land the
    caller asked for while the altitude was unknown); a landing does not end while the link
    is lost; airborne with no fresh command for ``land_after_s`` means landing; a takeoff
    is never accepted with a critical battery; nothing follows an emergency stop on the
    wire until the next connection."""
    clock = [0.0]
    transport = FlakyTransport()
    params = LinkParams(land_after_s=2.0)
    link = CrazyflieLink(
        RobotLink(
            "cf",
            "udp://127.0.0.1:1",
            takeoff_height=0.5,
            battery=BatteryThresholds(warning_v=3.5, critical_v=3.2),
            arena=((-1.0, 1.0), (-1.0, 1.0), (0.0, 2.0)),
        ),
        params,
        transport_factory=lambda: transport,
        clock=lambda: clock[0],
    )
    drone = LatchingDrone()
    radio = {"down": True, "up": True, "vbat": 4.0, "x": 0.0}
    conn = {"up": True, "reopen_at": math.inf}
    allowed = {"land": 0}  # motor starts on the floor the caller asked for
    takeoffs: list[float] = []  # when a takeoff was accepted: it may start the motors now
    estop_mark: list[int | None] = [None]

    def disconnect(t: float) -> None:
        link._end_connection()
        conn["up"], conn["reopen_at"] = False, t + params.retry_backoff_s
        estop_mark[0] = None

    def step(cmd: float | None = None) -> None:
        clock[0] += DT
        t = clock[0]
        drone.step(t)
        if cmd is not None:
            link.set_command(cmd, 0.0, 0.0, 0.0, stamp=t)
        if not conn["up"]:
            if t >= conn["reopen_at"] and radio["down"]:
                assert link._connect()
                conn["up"] = True
            return
        if radio["down"]:
            transport.on_rx()
            transport.on_sample(
                {**sample(drone.z), "stateEstimate.x": radio["x"], "pm.vbat": radio["vbat"]}
            )
        st_before = link.status()
        with link._cond:
            reopen = link._check_link(t)
            link_at_tick = link._link
            recovering = link._recovering
            actions = link._tick(t, PERIOD, MIN_INTERVAL)
            flight_after = link._flight
            cmd_age = t - link._cmd_stamp
        if st_before.flight == FlightState.LANDING and flight_after == FlightState.GROUNDED:
            assert link_at_tick == LinkState.UP  # a landing does not end while lost
        if (
            st_before.flight in (FlightState.FLYING, FlightState.HOLDING)
            and link_at_tick == LinkState.UP
            and not recovering
            and cmd_age > params.land_after_s
        ):
            assert flight_after in (FlightState.LANDING, FlightState.EMERGENCY)
        for action in actions:
            n = len(transport.calls)
            if not link._send(transport, action):
                disconnect(t)
                return
            if len(transport.calls) > n and radio["up"]:
                drone.hear(t, action)
            if len(transport.calls) > n and action[0] == "emergency_stop":  # re-sent
                estop_mark[0] = len(transport.calls)
        if reopen:
            disconnect(t)
        if estop_mark[0] is not None:
            assert transport.calls[estop_mark[0] :] == [], transport.calls[estop_mark[0] :]
        for when, why in drone.armed_on_ground:
            context = (why, drone.armed_on_ground, transport.calls[-8:])
            if why == "takeoff":  # only the takeoff just accepted, never a stale one
                assert takeoffs and when - takeoffs[0] <= 2 * DT + 1e-9, context
                takeoffs.pop(0)
            else:
                assert allowed.get(why, 0) > 0, context
                allowed[why] -= 1
        drone.armed_on_ground.clear()

    assert link._connect()
    clock[0] = 1.0
    transport.on_rx()
    assert link.takeoff()[0]
    takeoffs.append(clock[0])
    while link.status().flight != FlightState.HOVERING:
        step()
    for event in events:
        kind = event[0]
        if kind == "fly":
            for _ in range(event[1]):
                step(event[2])
        elif kind == "idle":
            for _ in range(event[1]):
                step()
        elif kind == "fly_idle":  # the policy stops: hold, then land
            for _ in range(event[1]):
                step(0.2)
            for _ in range(event[2]):
                step()
        elif kind == "silence":
            radio["down"], radio["up"] = False, event[2]
            for _ in range(event[1]):
                step()
            radio["down"] = radio["up"] = True
        elif kind == "cflib_loss":
            if conn["up"]:
                link._cb_down(link._gen, "connection lost: Too many packets lost")
                disconnect(clock[0])
        elif kind == "raise":
            transport.raise_on.add(event[1])
        elif kind == "bad_cmd":
            t = clock[0]
            vx, stamp = {
                "nan": (math.nan, t),
                "inf": (math.inf, t),
                "future": (0.1, t + 1.0),
                "stale": (0.1, t - 0.5),
                "fast": (10.0, t),
            }[event[1]]
            assert not link.set_command(vx, 0.0, 0.0, 0.0, stamp=stamp)
        elif kind == "takeoff":
            critical = link.status().battery_level == BatteryLevel.CRITICAL
            ok, _ = link.takeoff()
            assert not (ok and critical)
            if ok:
                takeoffs[:] = [clock[0]]
            if ok and event[1] and conn["up"]:  # the connection drops before it is sent
                link._cb_down(link._gen, "connection lost: Too many packets lost")
                disconnect(clock[0])
        elif kind == "land":
            recovering = link.status().recovering
            ok, _ = link.land()
            allowed["land"] += ok and recovering  # the caller decided, altitude unknown
        elif kind == "estop":
            n = len(transport.calls)
            ok, _ = link.emergency_stop()
            if ok and transport.calls[n:] == [("emergency_stop",)]:
                estop_mark[0] = len(transport.calls)
                drone.hear(clock[0], ("emergency_stop",))
        elif kind == "shutdown":
            for _ in range(event[1]):
                link.begin_shutdown()
                step()
        elif kind == "battery":
            radio["vbat"] = event[1]
        elif kind == "geofence":
            radio["x"] = event[1]
        step()


# ----------------------------------------------------------------------------- nodes (DDS)


class Harness:
    """A ROS context spun by rclpy's EventsExecutor (as the bringup composes the bridges),
    a client node, and the bridge under test."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.experimental.events_executor import EventsExecutor
        from rclpy.node import Node

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = EventsExecutor(context=self.context)
        self.client = Node("outage_test_client", context=self.context)
        self.nodes = [self.client]
        self.executor.add_node(self.client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def listen(self, msg_type, topic: str) -> list:
        box: list = []
        self.client.create_subscription(msg_type, topic, box.append, 10)
        return box

    def call(self, service: str, timeout: float = 5.0) -> Trigger.Response:
        cli = self.client.create_client(Trigger, service)
        assert cli.wait_for_service(timeout_sec=timeout), f"{service} not advertised"
        future = cli.call_async(Trigger.Request())
        assert wait_for(future.done, timeout), f"{service} did not answer"
        return future.result()

    def advertised(self, service: str) -> bool:
        return service in {n for n, _ in self.client.get_service_names_and_types()}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        for node in self.nodes:
            node.destroy_node()
        self.executor.shutdown()
        self._rclpy.shutdown(context=self.context)


def base_config(robots: list[dict]) -> dict:
    return {
        "fileversion": 1,
        "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
        "resource_types": ["energy"],
        "comm_radius": 2.0,
        "sensing_radius": 1.0,
        "robots": robots,
        "consumers": [
            {"name": "c1", "position": [1.0, 1.0], "radius": 0.3, "demand": {"energy": 5}}
        ],
    }


def stamped(node, vx: float, offset_s: float | None) -> TwistStamped:
    """A cmd_vel stamped ``offset_s`` from the node's clock (None: unstamped)."""
    msg = TwistStamped()
    if offset_s is not None:
        t = node.get_clock().now().nanoseconds + int(offset_s * 1e9)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, 1_000_000_000)
    msg.header.frame_id = "world"
    msg.twist.linear.x = vx
    return msg


@pytest.fixture
def harness():
    h = Harness()
    yield h
    h.close()


def diagnostics_values(box: list, robot: str) -> dict[str, str]:
    for array in reversed(box):
        for status in array.status:
            if status.hardware_id == robot:
                return {kv.key: kv.value for kv in status.values}
    return {}


@pytest.mark.ros
def test_crazyflie_node_rejects_future_and_stale_cmd_vel(harness, tmp_path):
    fake = FakeCrazyflie()
    robot = {
        "name": "cfa",
        "kind": "crazyflie",
        "backend": "cflib",
        "uri": fake.uri,
        "takeoff_height": 0.3,
        "pose": [0.0, 0.0, 0.0, 0.0],
    }
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(base_config([robot])))
    diagnostics = harness.listen(DiagnosticArray, DIAGNOSTICS)
    pub = harness.client.create_publisher(TwistStamped, "/cfa/cmd_vel", 10)
    try:
        bridge = harness.add(
            CrazyflieBridgeNode(
                "crazyflie_bridge",
                context=harness.context,
                parameter_overrides=[
                    Parameter("config", value=str(path)),
                    Parameter("toc_cache_dir", value=str(tmp_path / "toc")),
                ],
            )
        )
        assert wait_for(lambda: harness.advertised("/cfa/takeoff"))
        assert wait_for(lambda: pub.get_subscription_count() > 0)
        assert harness.call("/cfa/takeoff").success
        link = bridge.links["cfa"]
        assert wait_for(lambda: link.status().flight == FlightState.HOVERING, 5.0)
        t0 = time.monotonic()
        for _ in range(10):
            pub.publish(stamped(harness.client, 0.2, +3600.0))  # an hour ahead
            pub.publish(stamped(harness.client, 0.2, +0.5))  # beyond the clock skew
            pub.publish(stamped(harness.client, 0.2, -1.0))  # a second old
            pub.publish(stamped(harness.client, 0.2, None))  # unstamped
            time.sleep(0.05)
        expected = {"future": 20, "stale": 10, "unstamped": 10}
        assert wait_for(
            lambda: all(
                bridge.stamp_rejects["cfa"][f"rejected_{k}"] == n for k, n in expected.items()
            ),
            3.0,
        ), bridge.stamp_rejects["cfa"]
        # never executed: still hovering on the high-level commander, no setpoint streamed
        assert link.status().flight == FlightState.HOVERING
        assert fake.velocity_setpoints(since=t0) == []
        assert wait_for(
            lambda: diagnostics_values(diagnostics, "cfa").get("rejected_commands") == "40", 3.0
        ), diagnostics_values(diagnostics, "cfa")
        values = diagnostics_values(diagnostics, "cfa")
        assert (values["rejected_future"], values["rejected_stale"]) == ("20", "10")
        assert values["rejected_unstamped"] == "10"
        # the same path with a fresh stamp flies
        pub.publish(stamped(harness.client, 0.2, 0.0))
        assert wait_for(
            lambda: any(sp.vx == pytest.approx(0.2) for sp in fake.velocity_setpoints(since=t0)),
            2.0,
        )
        assert harness.call("/cfa/land").success
    finally:
        fake.close()


@pytest.mark.ros
def test_ground_node_rejects_future_and_stale_cmd_vel(harness, tmp_path):
    robot = {
        "name": "g1",
        "kind": "ground",
        "backend": "external",
        "max_speed": 0.3,
        "max_yaw_rate": 2.0,
        "cmd_topic": "/g1_driver/cmd_vel",
        "odom_topic": "/g1_driver/odom",
        "pose": [0.0, 0.0, 0.0, 0.0],
    }
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(base_config([robot])))
    twists = harness.listen(Twist, "/g1_driver/cmd_vel")
    diagnostics = harness.listen(DiagnosticArray, DIAGNOSTICS)
    odom = harness.client.create_publisher(Odometry, "/g1_driver/odom", 10)
    pub = harness.client.create_publisher(TwistStamped, "/g1/cmd_vel", 10)
    bridge = harness.add(
        GroundBridgeNode(
            "ground_bridge",
            context=harness.context,
            parameter_overrides=[Parameter("config", value=str(path))],
        )
    )
    stop = threading.Event()

    def drive_odometry() -> None:
        while not stop.wait(0.05):
            msg = Odometry()
            msg.pose.pose.orientation.w = 1.0
            odom.publish(msg)

    thread = threading.Thread(target=drive_odometry, daemon=True)
    thread.start()
    try:
        assert harness.call("/g1/takeoff", timeout=10.0).success
        assert wait_for(lambda: pub.get_subscription_count() > 0)
        for _ in range(10):
            pub.publish(stamped(harness.client, 0.2, +3600.0))
            pub.publish(stamped(harness.client, 0.2, -1.0))
            pub.publish(stamped(harness.client, 0.2, None))
            pub.publish(stamped(harness.client, math.nan, 0.0))
            pub.publish(stamped(harness.client, 10.0, 0.0))  # > 5 x max_speed: garbage
            time.sleep(0.05)
        counts = bridge.command_counts["g1"]
        expected = {"future": 10, "stale": 10, "unstamped": 10, "non_finite": 10, "too_fast": 10}
        assert wait_for(
            lambda: all(counts[f"rejected_{k}"] == n for k, n in expected.items()), 3.0
        ), counts
        assert all(t.linear.x == 0.0 for t in twists)  # nothing driven
        assert bridge.links["g1"].flight == FlightState.HOVERING
        assert wait_for(
            lambda: diagnostics_values(diagnostics, "g1").get("rejected_commands") == "50", 3.0
        ), diagnostics_values(diagnostics, "g1")
        # fresh and above max_speed: clipped, counted, driven at max_speed
        pub.publish(stamped(harness.client, 0.5, 0.0))
        assert wait_for(lambda: any(t.linear.x == pytest.approx(0.3) for t in twists), 2.0)
        assert counts["clipped_commands"] == 1
        assert harness.call("/g1/land").success
    finally:
        stop.set()
        thread.join(timeout=2.0)
