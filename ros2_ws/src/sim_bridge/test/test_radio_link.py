"""Crazyflie link core over the loopback fake: exact bytes, rate, watchdog, loss, battery."""

from __future__ import annotations

import math
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_bridge.bridges.crazyflie_link import (
    BatteryLevel,
    BatteryThresholds,
    CflibTransport,
    CrazyflieLink,
    FlightState,
    LinkParams,
    LinkState,
    NonFiniteCommandError,
    RobotLink,
    clamp_command,
    encode_velocity_world,
    stop_links,
)
from sim_bridge.fake_crazyflie import (
    ON_GROUND_Z,
    PORT_COMMANDER_GENERIC,
    PORT_LOCALIZATION,
    PORT_SETPOINT_HL,
    PORT_SUPERVISOR,
    FakeCrazyflie,
    decode_velocity_setpoint,
)
from sim_bridge.ros.graph import wait_for
from sim_bridge.topics import command_valid

HL_TAKEOFF, HL_LAND = 7, 8


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "toc")


def make_link(fake_or_uri, cache_dir, battery=None, **overrides) -> CrazyflieLink:
    uri = fake_or_uri if isinstance(fake_or_uri, str) else fake_or_uri.uri
    params = dict(land_after_s=1.0, toc_cache_dir=cache_dir, retry_backoff_s=0.2)
    params.update(overrides)
    link = CrazyflieLink(
        RobotLink("cf", uri, takeoff_height=0.3, max_speed=0.5, battery=battery),
        LinkParams(**params),
    )
    link.start()
    return link


def fly(link: CrazyflieLink) -> None:
    """Connect, take off, and wait until the high-level commander hovers."""
    assert wait_for(lambda: link.status().link == LinkState.UP), link.status()
    ok, msg = link.takeoff()
    assert ok, msg
    assert wait_for(lambda: link.status().flight == FlightState.HOVERING, 4.0), link.status()


def stream(link: CrazyflieLink, cmd, duration: float, every: float = 0.1) -> None:
    end = time.monotonic() + duration
    while time.monotonic() < end:
        link.set_command(*cmd)
        time.sleep(every)


# ----------------------------------------------------------------------------- encoding


class _CaptureCf:
    """Stand-in for cflib's Crazyflie that captures what its Commander sends."""

    def __init__(self, protocol: int) -> None:
        self.sent = []
        self.platform = type("P", (), {"get_protocol_version": lambda _self: protocol})()

    def send_packet(self, pk) -> None:
        self.sent.append(bytes([pk.header]) + bytes(pk.data))


@pytest.mark.parametrize("protocol", [12, 9, 8, 4])
def test_encoding_is_byte_identical_to_cflib_commander(protocol):
    from cflib.crazyflie.commander import Commander

    cf = _CaptureCf(protocol)
    Commander(cf).send_velocity_world_setpoint(0.25, -0.5, 0.125, 30.0)
    ours = encode_velocity_world(0.25, -0.5, 0.125, 30.0, protocol)
    assert ours == cf.sent[0]
    assert ours[0] == 0x7C
    kind, vx, vy, vz, yaw = struct.unpack("<Bffff", ours[1:])
    assert (vx, vy, vz) == (0.25, -0.5, 0.125)
    if protocol <= 8:
        assert (kind, yaw) == (1, -30.0)  # legacy type, yaw sign inverted
    else:
        assert (kind, yaw) == (8, 30.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_encoder_refuses_non_finite(bad):
    with pytest.raises(NonFiniteCommandError):
        encode_velocity_world(0.0, bad, 0.0, 0.0, 12)


@settings(max_examples=200, deadline=None)
@given(
    st.tuples(*[st.floats(-1e300, 1e300)] * 3),
    st.floats(-20, 20),
    st.floats(0.01, 3.0),
    st.floats(0.01, 5.0),
)
def test_clamp_bounds_speed_and_keeps_direction(v, yaw, max_speed, max_yaw):
    (cx, cy, cz), cyaw = clamp_command(v, yaw, max_speed, max_yaw)
    norm = math.sqrt(cx * cx + cy * cy + cz * cz)
    assert norm <= max_speed * (1 + 1e-9)
    assert abs(cyaw) <= max_yaw
    # same direction: the clamped vector is a non-negative multiple of the input
    for a, b in zip((cx, cy, cz), v):
        assert a * b >= 0.0


def test_bad_parameters_name_the_field():
    with pytest.raises(ValueError, match="rate_hz"):
        LinkParams(rate_hz=5.0)
    with pytest.raises(ValueError, match="hold_after_s"):
        LinkParams(hold_after_s=3.0, land_after_s=2.0)
    with pytest.raises(ValueError, match="critical_v"):
        BatteryThresholds(warning_v=3.2, critical_v=3.5)


# ----------------------------------------------------------------------------- on the wire


def test_setpoints_byte_exact_and_streamed_at_fixed_rate(cache_dir):
    fake = FakeCrazyflie(protocol_version=12)
    link = make_link(fake, cache_dir)
    try:
        fly(link)
        # armed (supervisor port 9, channel 1, ARM_SYSTEM true) before the high-level takeoff
        arm = [r for r in fake.records_on(PORT_SUPERVISOR, 1) if r.data == bytes([1, 1])]
        takeoff = [r for r in fake.records_on(PORT_SETPOINT_HL) if r.data[0] == HL_TAKEOFF]
        assert arm and takeoff and arm[0].t <= takeoff[0].t
        yaw_rate = 0.3  # rad/s on the ROS side
        t0 = time.monotonic()
        # one command every 0.25 s: the stream must still run at 20 Hz in between
        stream(link, (0.1, -0.2, 0.05, yaw_rate), 2.0, every=0.25)
        sps = [r for r in fake.records() if r.t >= t0 and decode_velocity_setpoint(r)]
        expected = bytes([0x7C]) + struct.pack("<Bffff", 8, 0.1, -0.2, 0.05, math.degrees(0.3))
        assert sps and all(r.raw == expected for r in sps)
        times = [r.t for r in sps]
        span = times[-1] - times[0]
        rate = (len(times) - 1) / span
        assert 0.8 * 20.0 <= rate <= 20.0 * 1.6, rate  # fixed stream + immediate new commands
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps) < 0.25, max(gaps)  # far inside the firmware's 0.5 s timeout
        assert link.status().flight == FlightState.FLYING
        # the fake integrates the stream: it moved along +x, -y
        assert fake.position[0] > 0.1 and fake.position[1] < -0.2
    finally:
        link.close()
        fake.close()


def test_legacy_protocol_sends_type_1_with_inverted_yaw(cache_dir):
    fake = FakeCrazyflie(protocol_version=8)
    link = make_link(fake, cache_dir)
    try:
        fly(link)
        assert link.status().protocol_version == 8
        t0 = time.monotonic()
        stream(link, (0.0, 0.0, 0.0, 0.5), 0.6)
        sps = fake.velocity_setpoints(since=t0)
        assert sps and all(sp.type == 1 for sp in sps)
        assert all(sp.yaw_rate == pytest.approx(-math.degrees(0.5), rel=1e-6) for sp in sps)
        assert fake.yaw_deg > 5.0  # the legacy firmware turns the right way (counter-clockwise)
    finally:
        link.close()
        fake.close()


def test_watchdog_holds_then_lands(cache_dir):
    fake = FakeCrazyflie()
    link = make_link(fake, cache_dir, land_after_s=1.0)
    try:
        fly(link)
        stream(link, (0.2, 0.0, 0.0, 0.0), 0.5)
        t_last = time.monotonic()
        assert wait_for(lambda: link.status().flight == FlightState.HOLDING, 1.0)
        assert wait_for(lambda: link.status().flight == FlightState.LANDING, 2.0)
        sps = fake.velocity_setpoints(since=t_last)
        moving = [sp for sp in sps if sp.vx != 0.0]
        holding = [sp for sp in sps if sp.vx == 0.0]
        # still the command up to hold_after_s, then only zero velocity until the land
        assert all(sp.t - t_last < 0.3 + 0.1 for sp in moving)
        assert len(holding) >= 0.8 * 20 * (1.0 - 0.3) - 2
        assert all((sp.vy, sp.vz, sp.yaw_rate) == (0.0, 0.0, 0.0) for sp in holding)
        # hand-over: notify-setpoint-stop (port 7 channel 1) then high-level land
        assert wait_for(lambda: HL_LAND in fake.high_level_commands(), 1.0)
        notify = fake.records_on(PORT_COMMANDER_GENERIC, 1)
        land = [r for r in fake.records_on(PORT_SETPOINT_HL) if r.data[0] == HL_LAND]
        assert notify and land and notify[-1].t <= land[-1].t
        assert land[-1].t - t_last == pytest.approx(1.0, abs=0.3)
        assert wait_for(lambda: link.status().flight == FlightState.GROUNDED, 4.0)
        assert wait_for(lambda: not fake.flying, 1.0)
        # after landing: stop setpoint, nothing more streamed
        n = len(fake.velocity_setpoints())
        time.sleep(0.3)
        assert len(fake.velocity_setpoints()) == n
    finally:
        link.close()
        fake.close()


def test_commands_ignored_until_takeoff(cache_dir):
    fake = FakeCrazyflie()
    link = make_link(fake, cache_dir)
    try:
        assert wait_for(lambda: link.status().link == LinkState.UP)
        stream(link, (0.3, 0.0, 0.0, 0.0), 0.4)
        assert fake.velocity_setpoints() == []
        assert not fake.motors_on
    finally:
        link.close()
        fake.close()


def test_link_loss_of_one_robot_does_not_stop_the_others(cache_dir):
    fakes = [FakeCrazyflie() for _ in range(3)]
    # a fourth robot whose radio never answers (port closed): the others start regardless
    dead = FakeCrazyflie()
    dead_uri = dead.uri
    dead.close()
    links = [make_link(f, cache_dir, link_timeout_s=0.4, reconnect_after_s=1.0) for f in fakes]
    dead_link = make_link(dead_uri, cache_dir)
    try:
        for link in links:
            fly(link)
        assert dead_link.status().link != LinkState.UP
        fakes[1].set_responding(False)
        t0 = time.monotonic()
        end = t0 + 1.5
        while time.monotonic() < end:
            for i in (0, 2):
                links[i].set_command(0.1, 0.0, 0.0, 0.0)
            time.sleep(0.1)
        assert links[1].status().link == LinkState.LOST
        assert links[1].status().flight in (FlightState.LANDING, FlightState.GROUNDED)
        expected = bytes([0x7C]) + struct.pack("<Bffff", 8, 0.1, 0.0, 0.0, 0.0)
        for i in (0, 2):
            sps = [r for r in fakes[i].records() if r.t >= t0 and decode_velocity_setpoint(r)]
            assert all(r.raw == expected for r in sps)
            assert len(sps) >= 0.8 * 20 * 1.4, len(sps)
            assert links[i].status().link == LinkState.UP
            assert links[i].status().flight == FlightState.FLYING
        # the lost drone was told to land (best effort while lost) ...
        lands = [r for r in fakes[1].records_on(PORT_SETPOINT_HL) if r.data[0] == HL_LAND]
        assert any(r.t >= t0 for r in lands)
        # ... and again once the link is back
        fakes[1].set_responding(True)
        t_back = time.monotonic()
        assert wait_for(lambda: links[1].status().link == LinkState.UP, 5.0)
        assert wait_for(
            lambda: any(
                r.t >= t_back and r.data[0] == HL_LAND
                for r in fakes[1].records_on(PORT_SETPOINT_HL)
            ),
            3.0,
        )
        assert dead_link.status().link != LinkState.UP
    finally:
        stop_links(links + [dead_link], land_timeout_s=0.1)
        for f in fakes:
            f.close()


def test_auto_land_at_critical_battery_and_refuse_takeoff(cache_dir):
    fake = FakeCrazyflie(battery_v=4.0)
    link = make_link(fake, cache_dir, battery=BatteryThresholds(3.5, 3.2), battery_tau_s=0.2)
    try:
        fly(link)
        assert link.status().battery_level == BatteryLevel.OK
        fake.battery_v = 3.4
        assert wait_for(lambda: link.status().battery_level == BatteryLevel.WARNING, 3.0)
        stream(link, (0.0, 0.1, 0.0, 0.0), 0.3)
        assert link.status().flight == FlightState.FLYING  # warning only warns
        fake.battery_v = 3.0
        t0 = time.monotonic()
        while link.status().battery_level != BatteryLevel.CRITICAL:
            link.set_command(0.0, 0.1, 0.0, 0.0)
            time.sleep(0.05)
            assert time.monotonic() - t0 < 3.0
        assert link.status().flight == FlightState.LANDING
        assert wait_for(
            lambda: any(r.data[0] == HL_LAND for r in fake.records_on(PORT_SETPOINT_HL)), 1.0
        )
        # commands during the landing are not streamed
        n = len(fake.velocity_setpoints())
        stream(link, (0.0, 0.1, 0.0, 0.0), 0.3)
        assert len(fake.velocity_setpoints()) == n
        assert wait_for(lambda: link.status().flight == FlightState.GROUNDED, 4.0)
        fake.battery_v = 3.9  # voltage recovers at rest: still latched critical
        time.sleep(0.3)
        ok, msg = link.takeoff()
        assert not ok and "battery critical" in msg
    finally:
        link.close()
        fake.close()


@pytest.mark.parametrize(
    ("volts_back", "takeoff_ok", "words"),
    [
        (3.7, False, "battery still critical after re-connection (3.70 V < 3.90 V"),
        (4.15, True, "battery 4.15 V after re-connection: critical cleared"),
    ],
)
def test_a_critical_battery_stays_latched_across_an_outage_unless_it_was_changed(
    cache_dir, volts_back, takeoff_ok, words
):
    """The latch used to reset on every re-connection: after a radio outage a depleted
    battery that had rested (voltage up, charge not) could take off again. Now only a first
    reading at or above ``recharged_v`` (a swapped or charged battery) clears it."""
    fake = FakeCrazyflie(battery_v=3.0)
    events = []
    link = CrazyflieLink(
        RobotLink("cf", fake.uri, takeoff_height=0.3, battery=BatteryThresholds(3.5, 3.2)),
        LinkParams(
            land_after_s=1.0,
            toc_cache_dir=cache_dir,
            retry_backoff_s=0.2,
            link_timeout_s=0.4,
            reconnect_after_s=1.0,
            battery_tau_s=0.2,
        ),
        on_event=lambda kind, msg: events.append((kind, msg)),
    )
    link.start()
    try:
        assert wait_for(lambda: link.status().battery_level == BatteryLevel.CRITICAL, 5.0)
        ok, msg = link.takeoff()
        assert not ok and "battery critical" in msg
        connects = link.status().connects
        fake.set_responding(False)
        assert wait_for(lambda: link.status().link == LinkState.LOST, 3.0)
        fake.battery_v = volts_back
        time.sleep(1.2)  # past reconnect_after_s: the connection is re-opened
        fake.set_responding(True)
        assert wait_for(
            lambda: link.status().connects > connects and link.status().battery_v is not None,
            5.0,
        ), link.status()
        battery_events = [m for k, m in events if k == "battery"]
        assert battery_events[-1].startswith(words), battery_events
        ok, msg = link.takeoff()
        assert ok == takeoff_ok, msg
        if takeoff_ok:
            assert link.status().battery_level == BatteryLevel.OK
            assert wait_for(lambda: link.status().flight == FlightState.HOVERING, 4.0)
        else:
            assert link.status().battery_level == BatteryLevel.CRITICAL
            assert "battery critical" in msg and not fake.motors_on
    finally:
        link.close()
        fake.close()


@pytest.mark.parametrize("recharged_v", [3.5, 3.4, 4.3, math.nan])
def test_battery_recharged_v_must_lie_between_warning_and_full(recharged_v):
    with pytest.raises(ValueError, match=r"battery_recharged_v .* must be above warning_v"):
        BatteryThresholds(3.5, 3.2, 4.2, recharged_v)


def test_services_refuse_before_link_up(cache_dir):
    fake = FakeCrazyflie()
    fake.set_responding(False)
    link = make_link(fake, cache_dir, connect_timeout_s=1.0)
    try:
        time.sleep(0.3)
        assert link.status().link == LinkState.CONNECTING
        for call in (link.takeoff, link.land, link.emergency_stop):
            ok, msg = call()
            assert not ok and ("not up" in msg or "never up" in msg or "no link" in msg), msg
        assert fake.high_level_commands() == []
        fake.set_responding(True)
        assert wait_for(lambda: link.status().link == LinkState.UP, 20.0)
        ok, msg = link.takeoff()
        assert ok, msg
        assert wait_for(lambda: HL_TAKEOFF in fake.high_level_commands(), 1.0)
    finally:
        link.close()
        fake.close()


@pytest.mark.filterwarnings("ignore:The supervisor subsystem requires")
@pytest.mark.parametrize(("protocol", "port"), [(12, PORT_SUPERVISOR), (8, PORT_LOCALIZATION)])
def test_emergency_stop_cuts_motors_and_latches(cache_dir, protocol, port):
    fake = FakeCrazyflie(protocol_version=protocol)
    link = make_link(fake, cache_dir)
    try:
        fly(link)
        stream(link, (0.1, 0.0, 0.0, 0.0), 0.3)
        ok, _ = link.emergency_stop()
        assert ok and link.status().flight == FlightState.EMERGENCY
        assert wait_for(lambda: fake.emergency_stopped, 1.0)
        assert fake.records_on(port)
        n = len(fake.velocity_setpoints())
        stream(link, (0.1, 0.0, 0.0, 0.0), 0.3)
        assert len(fake.velocity_setpoints()) == n
        ok, msg = link.takeoff()
        assert not ok and "emergency" in msg
    finally:
        link.close()
        fake.close()


# ----------------------------------------------------------------------------- NaN


@pytest.fixture(scope="module")
def flying_link(tmp_path_factory):
    fake = FakeCrazyflie()
    link = make_link(fake, str(tmp_path_factory.mktemp("toc")), land_after_s=5.0)
    fly(link)
    yield fake, link
    link.close()
    fake.close()


finite_or_not = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.1]),
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.tuples(finite_or_not, finite_or_not, finite_or_not, finite_or_not))
def test_nan_commands_never_reach_the_wire(flying_link, cmd):
    fake, link = flying_link
    accepted = link.set_command(*cmd)
    finite = all(math.isfinite(c) for c in cmd)
    assert accepted == (finite and command_valid(cmd[0], cmd[1], cmd[2], 0.5))
    time.sleep(0.004)
    for sp in fake.velocity_setpoints(since=time.monotonic() - 0.05):
        assert all(math.isfinite(v) for v in (sp.vx, sp.vy, sp.vz, sp.yaw_rate))
        assert math.sqrt(sp.vx**2 + sp.vy**2 + sp.vz**2) <= 0.5 + 1e-6


def test_nan_stream_total(flying_link):
    fake, link = flying_link
    t0 = time.monotonic()
    for _ in range(20):
        link.set_command(math.nan, 0.0, 0.0, 0.0)
        link.set_command(0.1, 0.0, math.inf, 0.0)
        time.sleep(0.01)
    sps = fake.velocity_setpoints()
    assert sps and all(
        all(math.isfinite(v) for v in (sp.vx, sp.vy, sp.vz, sp.yaw_rate)) for sp in sps
    )
    # rejected commands do not refresh the watchdog: the stream falls back to hold
    assert wait_for(lambda: link.status().flight == FlightState.HOLDING, 1.0)
    assert all(sp.vx == 0.0 for sp in fake.velocity_setpoints(since=t0 + 0.6))


def test_no_cflib_ping_thread_while_connected(cache_dir):
    """cflib 0.1.34's latency ping thread leaks Crazyflie._send_lock when its own send
    fails (it joins itself in the disconnect callbacks); a connected link must not run it."""
    import threading

    fake = FakeCrazyflie()
    link = make_link(fake, cache_dir)
    try:
        fly(link)
        stream(link, (0.1, 0.0, 0.0, 0.0), 0.3)
        assert link.status().link == LinkState.UP
        assert [t.name for t in threading.enumerate() if t.name == "ping_thread"] == []
    finally:
        link.close()
        fake.close()


def test_radio_gone_while_flying_lands_after_reconnect(cache_dir):
    """cflib itself reports the loss (port closed); the drone that comes back is landed."""
    fake = FakeCrazyflie()
    port = fake.port
    link = make_link(fake, cache_dir, link_timeout_s=0.4, reconnect_after_s=1.0)
    try:
        fly(link)
        stream(link, (0.1, 0.0, 0.0, 0.0), 0.3)
        fake.close()
        assert wait_for(lambda: link.status().link == LinkState.LOST, 3.0)
        # the drone is still in the air (hovering under its high-level commander)
        fake = FakeCrazyflie(port=port, position=(0.1, 0.0, 0.3), motors_on=True)
        assert wait_for(lambda: link.status().link == LinkState.UP, 10.0)
        assert link.status().connects == 2
        assert wait_for(lambda: HL_LAND in fake.high_level_commands(), 2.0)
        assert wait_for(lambda: link.status().flight == FlightState.GROUNDED, 4.0)
    finally:
        link.close()
        fake.close()


class _RaisingTransport(CflibTransport):
    """Real cflib transport whose ``failing`` sends raise as cflib's own code may (bare
    ``Exception``; e.g. a packet too large or a driver error)."""

    failing: set[str] = set()

    def _raise_if(self, kind: str) -> None:
        if kind in self.failing:
            self.failing.discard(kind)  # once
            raise Exception("Too many packets lost!\nTraceback ...")

    def send_velocity(self, datagram: bytes) -> None:
        self._raise_if("velocity")
        super().send_velocity(datagram)

    def land(self, duration: float) -> None:
        self._raise_if("land")
        super().land(duration)


@pytest.mark.parametrize("failing", ["velocity", "land"])
def test_send_raising_mid_flight_never_ends_the_link_thread(cache_dir, failing):
    """A cflib exception from a setpoint or from the land while flying on setpoints: the
    link thread survives, re-opens the connection, and the drone, still in the air, is
    landed (no cut in mid-air, nothing armed on the floor). Before, the thread died with
    the link reported ``up`` and ``flying``: no stream, no watchdog, no land."""
    fake = FakeCrazyflie()
    link = CrazyflieLink(
        RobotLink("cf", fake.uri, takeoff_height=0.3, max_speed=0.5),
        LinkParams(land_after_s=1.0, toc_cache_dir=cache_dir, retry_backoff_s=0.2),
        transport_factory=lambda: _RaisingTransport(cache_dir, 50),
    )
    _RaisingTransport.failing = set()
    link.start()
    try:
        fly(link)
        stream(link, (0.1, 0.0, 0.0, 0.0), 0.3)
        t_fail = time.monotonic()
        _RaisingTransport.failing = {failing}
        if failing == "land":
            assert link.land()[0]
        else:
            link.set_command(0.0, 0.0, 0.0, 0.0)
        assert wait_for(lambda: not _RaisingTransport.failing, 1.0)
        assert wait_for(lambda: link.status().connects == 2, 3.0), link.status()
        assert link._thread.is_alive()
        assert wait_for(lambda: link.status().flight == FlightState.GROUNDED, 6.0), link.status()
        assert wait_for(lambda: not fake.motors_on, 1.0)
        events = fake.motor_events(since=t_fail)
        assert [(e.kind, e.cause) for e in events] == [("off", "stop_setpoint")], events
        assert events[0].z <= ON_GROUND_Z
        assert fake.armed_on_ground(since=t_fail) == 0
        lands = [r for r in fake.records_on(PORT_SETPOINT_HL) if r.data[0] == HL_LAND]
        assert lands and lands[-1].t > t_fail
    finally:
        link.close()
        fake.close()


@pytest.fixture(scope="module")
def raw_fake():
    import socket

    fake = FakeCrazyflie()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    sock.connect(("127.0.0.1", fake.port))
    yield fake, sock
    sock.close()
    fake.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(min_size=1, max_size=31))
def test_fake_survives_any_datagram(raw_fake, datagram):
    fake, sock = raw_fake
    sock.send(datagram)
    # still alive: the protocol-version request is answered
    sock.send(bytes([0xDD, 0x00]))  # platform port 13, channel 1, VERSION_GET_PROTOCOL
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        reply = sock.recv(64)
        if reply[:2] == bytes([0xDD, 0x00]):
            assert reply[2] == 12
            break
    else:
        pytest.fail("fake stopped answering")


def test_dds_discovery_on_the_fakes_port_does_not_steal_its_answers(cache_dir):
    """A DDS participant's discovery announcements (RTPS, ~500 bytes, every few seconds to
    ports of its domain's range, which the OS may also give the fake) are dropped: the fake
    keeps answering its link, which stays up while it sends nothing (grounded)."""
    import socket

    fake = FakeCrazyflie()
    link = make_link(fake, cache_dir)
    dds = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert wait_for(lambda: link.status().link == LinkState.UP, 10.0)
        n_records = len(fake.records())
        announcement = b"RTPS\x02\x03\x01\x0f" + bytes(492)
        for _ in range(15):
            dds.sendto(announcement, ("127.0.0.1", fake.port))
            dds.sendto(b"RTPS" + bytes(8), ("127.0.0.1", fake.port))  # short, still not CRTP
            time.sleep(0.1)
        time.sleep(link.params.link_timeout_s)
        assert link.status().link == LinkState.UP
        assert fake.foreign == 30
        assert len(fake.records()) == n_records  # the link sent nothing; nothing foreign recorded
    finally:
        dds.close()
        link.close()
        fake.close()
