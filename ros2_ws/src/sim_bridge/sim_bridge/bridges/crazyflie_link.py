"""One Crazyflie radio link: connection state machine, setpoint streamer, host watchdog.

Plain Python (no rclpy). A :class:`CrazyflieLink` owns one robot's cflib connection and one
thread; links never wait for each other, so a robot whose radio fails leaves the others
flying (Crazyswarm2's ``Swarm`` starts all-or-nothing).

Behaviour, per link
-------------------
* **Link state** (``/<robot>/link_state``): ``connecting`` -> ``up`` once cflib has the log
  and parameter TOCs (cached on disk, so a restart takes milliseconds) and the telemetry
  log block is running; ``lost`` when no packet came back for ``link_timeout_s`` or cflib
  reports the link lost/failed, ``up`` again at the first packet. The connection is kept
  while the drone may still hear us; after ``reconnect_after_s`` of silence it is closed
  and re-opened. A connection attempt that hears no answer for ``answer_timeout_s`` is
  abandoned (requests sent into an outage are never answered) and retried after
  ``retry_backoff_s``, doubling up to ``retry_backoff_max_s``; ``connect_timeout_s``
  bounds an attempt that keeps getting answers (a TOC download without cache).
* **Flight state**: ``grounded`` -> (arm, high-level takeoff) ``taking_off`` ->
  ``hovering`` (the firmware's high-level commander holds position, nothing is streamed)
  -> a fresh command -> ``flying``: the latest command is streamed as a world-frame
  velocity setpoint (commander generic, ``<Bffff`` type 8 ``velocityWorld``) at a fixed
  ``rate_hz`` whether or not a new command came, and each new command is sent at once
  (new commands at most ``max_rate_hz``; a scheduled resend of the previous command never
  holds a new one back, so a command that arrives just after a resend is not delayed).
* **Host watchdog** (``/<robot>/cmd_vel`` older than ``hold_after_s``, default
  ``topics.CMD_TIMEOUT_S`` = 0.3 s): stream zero velocity (``holding``: the drone hovers in
  place); older than ``land_after_s``: land. Without it the firmware alone would level the
  drone 0.5 s after the last setpoint and cut the motors at 2 s.
* **Landing** (service, watchdog, critical battery, geofence, link loss while airborne):
  notify-setpoint-stop (so the high-level commander regains priority over streamed
  setpoints), high-level ``land`` to 0 m, then a stop setpoint when the landing time
  (from the altitude, ``land_speed``) is over. A landing does not end while the link is
  lost (its land may not have arrived).
* **Link loss while airborne**: land at once (best effort: the uplink may still work).
  When the drone answers again, a state estimate taken after the loss decides: at or
  below ``ground_z_m`` only a stop setpoint is sent (never a land, takeoff or setpoint that
  could start the motors of a drone on the floor); above, the land is sent again and the
  landing time restarts from that altitude. A drone that was flying on streamed setpoints
  gets the land only while the firmware's motor timeout (2 s after the last setpoint it
  heard) cannot strike first, else on an estimate taken 0.5 s after the latest possible
  cut (see :meth:`CrazyflieLink._recover`). Until that decision nothing else lands the
  drone: not the watchdog, the geofence, a critical battery, a second loss (unless the
  motors cannot have been cut) nor a shutdown (:func:`stop_links` waits for it). A land
  begun after the last packet heard counts as undelivered: the drone may still be on
  streamed setpoints.
* **Send errors**: an exception from any cflib call of the link thread is a lost
  connection (re-opened, then the recovery above); no exception ends the link thread.
* **Battery**: ``pm.vbat`` is low-pass filtered (time constant ``battery_tau_s``) against
  the configured ``warning_v`` / ``critical_v``; the level latches (voltage recovers when
  the motors stop, the battery does not), also across a re-connection: after one, the first
  reading clears a latched warning or critical level only if it is at least
  ``recharged_v`` (the battery was changed or charged while the link was down); a battery
  that only rested stays latched. Critical while airborne lands; critical on the ground
  refuses takeoff.
* **Emergency stop**: supervisor emergency stop (localization-port fallback for firmware
  protocol < 12, handled by cflib) plus a stop setpoint, sent from the caller's thread;
  latched until the link is re-established (the firmware needs a reboot). Nothing the
  link decided before it (a queued takeoff, land or setpoint) goes out after it; if cflib
  raises from it, the caller is told and the link thread sends it again.

Units on the wire: velocity [m/s, world frame]; yaw rate [deg/s] (cflib and firmware
convention; the ROS side is rad/s). Firmware with CRTP protocol <= 8 gets the legacy type 1
with the yaw rate sign inverted, exactly as ``cflib.crazyflie.commander`` does. Non-finite
commands are rejected at :meth:`CrazyflieLink.set_command` and, as a last line, by
:func:`encode_velocity_world`, so NaN never reaches the wire; commands too fast or stamped
outside the freshness window of :mod:`sim_bridge.topics` are rejected too, and every
rejected or clipped command is counted (:class:`CommandCounts`).

Recovery after an outage (default parameters)
---------------------------------------------
From the drone answering again until the link is ``up`` and the pending land or stop has
gone out:

* outage shorter than ``reconnect_after_s`` (3 s): the same connection; the first packet
  (the running log block, every ``log_period_ms`` = 50 ms) brings the link up and its
  estimate decides, so within one log period plus one loop period (50 ms): about 0.1 s;
* longer: the connection was re-opened; at most ``answer_timeout_s`` + ``retry_backoff_max_s``
  + the connection time (tens of ms with the TOC cache), about 2.1 s.

Measured on the loopback fake (``benchmarks/radio.py --outage-only``): 0.014-0.018 s after a
1.6 s outage, 0.49-0.51 s after a 5 s outage, 1.54-1.56 s after 8 s and 12 s outages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import struct
import threading
import time
import warnings
from collections.abc import Callable

from sim_bridge.errors import SwarmError
from sim_bridge.topics import CMD_CLOCK_SKEW_S, CMD_TIMEOUT_S, command_valid, stamp_ok

CRTP_COMMANDER_GENERIC_HEADER = 0x7C  # port 7, channel 0, with cflib's legacy bits 2-3
TYPE_VELOCITY_WORLD = 8
TYPE_VELOCITY_WORLD_LEGACY = 1
LEGACY_PROTOCOL_MAX = 8  # firmware CRTP protocol <= 8 uses the legacy setpoint types
#: The firmware stops the motors this long [s] after its last low-level setpoint
#: (crazyflie-firmware commander.c, COMMANDER_WDT_TIMEOUT_SHUTDOWN).
FIRMWARE_SHUTDOWN_TIMEOUT_S = 2.0
#: A land re-sent later than this [s] before the earliest possible firmware cut could arrive
#: after it (and start the motors of a drone that fell): it waits for the cut to be over.
LAND_BEFORE_CUT_S = 0.25
#: An emergency stop waits at most this long [s] for a send of the link thread in progress.
EMERGENCY_SEND_WAIT_S = 0.1
#: After the latest possible firmware cut, an estimate this much later [s] shows a drone
#: that fell on the floor (free fall from 1 m takes 0.45 s).
FALL_SETTLE_S = 0.5
CRTP_PORT_LOGGING = 5
CRTP_CHANNEL_LOGDATA = 2

STATE_LOG_VARIABLES = (
    "stateEstimate.x",
    "stateEstimate.y",
    "stateEstimate.z",
    "stabilizer.yaw",
    "pm.vbat",
)


class NonFiniteCommandError(SwarmError, ValueError):
    """A setpoint component is NaN or infinite; it must never be sent to a drone."""


class LinkState(enum.StrEnum):
    """Radio link state, as published on ``/<robot>/link_state``."""

    CONNECTING = "connecting"
    UP = "up"
    LOST = "lost"


class FlightState(enum.StrEnum):
    """What the bridge is doing with the drone."""

    GROUNDED = "grounded"
    TAKING_OFF = "taking_off"
    HOVERING = "hovering"
    FLYING = "flying"
    HOLDING = "holding"
    LANDING = "landing"
    EMERGENCY = "emergency"


AIRBORNE = (FlightState.TAKING_OFF, FlightState.HOVERING, FlightState.FLYING, FlightState.HOLDING)


class BatteryLevel(enum.StrEnum):
    UNKNOWN = "unknown"
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


def encode_velocity_world(
    vx: float, vy: float, vz: float, yaw_rate_deg_s: float, protocol_version: int
) -> bytes:
    """CRTP datagram (header + payload) of a world-frame velocity setpoint.

    Same bytes as ``cflib.crazyflie.commander.Commander.send_velocity_world_setpoint``:
    header 0x7C (commander generic, channel 0), ``<Bffff`` = type, vx, vy, vz [m/s, world],
    yaw rate [deg/s]. Protocol <= 8 (legacy firmware): type 1 and the yaw rate negated.

    Raises:
        NonFiniteCommandError: if any component is NaN or infinite.
    """
    values = (vx, vy, vz, yaw_rate_deg_s)
    if not all(math.isfinite(v) for v in values):
        raise NonFiniteCommandError(f"non-finite setpoint {values} is never sent")
    if protocol_version <= LEGACY_PROTOCOL_MAX:
        payload = struct.pack("<Bffff", TYPE_VELOCITY_WORLD_LEGACY, vx, vy, vz, -yaw_rate_deg_s)
    else:
        payload = struct.pack("<Bffff", TYPE_VELOCITY_WORLD, vx, vy, vz, yaw_rate_deg_s)
    return bytes([CRTP_COMMANDER_GENERIC_HEADER]) + payload


def clamp_command(
    v: tuple[float, float, float], yaw_rate: float, max_speed: float, max_yaw_rate: float
) -> tuple[tuple[float, float, float], float]:
    """Scale the velocity to norm <= ``max_speed`` [m/s] and clip the yaw rate [rad/s]."""
    big = max(abs(v[0]), abs(v[1]), abs(v[2]))
    norm = big * math.hypot(v[0] / big, v[1] / big, v[2] / big) if big > 0.0 else 0.0
    scale = max_speed / norm if norm > max_speed > 0.0 else 1.0
    yaw = min(max(yaw_rate, -max_yaw_rate), max_yaw_rate)
    return (v[0] * scale, v[1] * scale, v[2] * scale), yaw


@dataclasses.dataclass(frozen=True)
class BatteryThresholds:
    """Battery limits of one drone [V] (``battery: {warning_v, critical_v}`` in the config).

    ``full_v`` maps voltage to the state of charge reported as a resource (1S LiPo).
    """

    warning_v: float
    critical_v: float
    full_v: float = 4.2
    #: A first reading at or above this after a re-connection means a charged battery: a
    #: warning or critical level latched on an earlier connection clears (else it stays).
    recharged_v: float = 3.9

    def __post_init__(self) -> None:
        if not 0.0 < self.critical_v < self.warning_v < self.full_v:
            raise ValueError(
                f"battery thresholds must satisfy 0 < critical_v ({self.critical_v}) < "
                f"warning_v ({self.warning_v}) < full_v ({self.full_v}); fix the robot's "
                "battery block in the swarm config"
            )
        if not self.warning_v < self.recharged_v <= self.full_v:
            raise ValueError(
                f"battery_recharged_v ({self.recharged_v}) must be above warning_v "
                f"({self.warning_v}) and at most battery_full_v ({self.full_v}); fix the "
                "bridge's battery_recharged_v or the robot's battery block"
            )

    def state_of_charge(self, voltage: float) -> float:
        """Fraction in [0, 1]: 0 at ``critical_v``, 1 at ``full_v`` (linear)."""
        return min(max((voltage - self.critical_v) / (self.full_v - self.critical_v), 0.0), 1.0)


@dataclasses.dataclass(frozen=True)
class RobotLink:
    """What one link needs to know about its robot (from ``RobotConfig``).

    Attributes:
        name: robot name (namespace).
        uri: cflib URI, e.g. ``radio://0/80/2M/E7E7E7E701`` or ``udp://127.0.0.1:19850``.
        takeoff_height: [m].
        max_speed: norm limit of the streamed velocity [m/s].
        max_yaw_rate: [rad/s].
        battery: thresholds, or None to only report the voltage.
        arena: geofence ((xmin, xmax), (ymin, ymax), (zmin, zmax)) [m] or None.
    """

    name: str
    uri: str
    takeoff_height: float = 0.5
    max_speed: float = 0.5
    max_yaw_rate: float = 1.0
    battery: BatteryThresholds | None = None
    arena: tuple[tuple[float, float], ...] | None = None


@dataclasses.dataclass(frozen=True)
class LinkParams:
    """Timing and safety parameters shared by all links (node parameters).

    Attributes:
        rate_hz: fixed setpoint streaming rate [Hz] (>= 20).
        max_rate_hz: new commands are sent at once, but at most this often [Hz] (the
            interval counts from the last send of a new command, not from a resend).
        hold_after_s: command age after which zero velocity is streamed [s].
        land_after_s: command age after which the drone lands [s].
        link_timeout_s: no packet from the drone for this long -> ``lost`` [s].
        reconnect_after_s: silence after which the connection is re-opened [s].
        connect_timeout_s: limit for one connection attempt while the drone answers
            (TOC download without cache) [s].
        answer_timeout_s: a connection attempt that hears no answer for this long is
            abandoned and retried [s] (requests lost in an outage are never answered).
        retry_backoff_s: first delay between attempts, doubled up to ``retry_backoff_max_s``.
        ground_z_m: a state estimate at or below this altitude [m, world z] means the
            drone is on the ground (after a link loss: nothing but a stop is sent).
        estimate_wait_s: after the link returns from a loss while airborne, how long to wait
            for a fresh state estimate before falling back to the outage length [s].
        takeoff_speed: vertical speed of high-level takeoff [m/s].
        land_speed: vertical speed of high-level landing [m/s].
        log_period_ms: state estimate / battery log period [ms] (10..2540).
        battery_tau_s: battery voltage low-pass time constant [s].
        geofence_margin: land when the estimate leaves the arena by more than this [m].
        toc_cache_dir: cflib TOC cache directory (None: no cache).
    """

    rate_hz: float = 20.0
    max_rate_hz: float = 100.0
    hold_after_s: float = CMD_TIMEOUT_S
    land_after_s: float = 2.0
    link_timeout_s: float = 1.0
    reconnect_after_s: float = 3.0
    connect_timeout_s: float = 15.0
    answer_timeout_s: float = 1.0
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 1.0
    ground_z_m: float = 0.1
    estimate_wait_s: float = 0.5
    takeoff_speed: float = 0.3
    land_speed: float = 0.3
    log_period_ms: int = 50
    battery_tau_s: float = 1.0
    geofence_margin: float = 0.3
    toc_cache_dir: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.rate_hz >= 20.0:
            problems.append(f"rate_hz={self.rate_hz} must be >= 20 (firmware expects a stream)")
        if not self.max_rate_hz >= self.rate_hz:
            problems.append(f"max_rate_hz={self.max_rate_hz} must be >= rate_hz={self.rate_hz}")
        if not 0.0 < self.hold_after_s < self.land_after_s:
            problems.append(
                f"need 0 < hold_after_s ({self.hold_after_s}) < land_after_s ({self.land_after_s})"
            )
        if not 0.0 < self.link_timeout_s <= self.reconnect_after_s:
            problems.append(
                f"need 0 < link_timeout_s ({self.link_timeout_s}) <= reconnect_after_s "
                f"({self.reconnect_after_s})"
            )
        if not 10 <= self.log_period_ms <= 2540:
            problems.append(f"log_period_ms={self.log_period_ms} must be in [10, 2540]")
        for name in (
            "connect_timeout_s",
            "retry_backoff_s",
            "takeoff_speed",
            "land_speed",
            "estimate_wait_s",
        ):
            if not getattr(self, name) > 0.0:
                problems.append(f"{name}={getattr(self, name)} must be > 0")
        if not 0.0 < self.answer_timeout_s <= self.connect_timeout_s:
            problems.append(
                f"need 0 < answer_timeout_s ({self.answer_timeout_s}) <= connect_timeout_s "
                f"({self.connect_timeout_s})"
            )
        if not self.retry_backoff_max_s >= self.retry_backoff_s:
            problems.append(
                f"retry_backoff_max_s={self.retry_backoff_max_s} must be >= retry_backoff_s="
                f"{self.retry_backoff_s}"
            )
        if not self.ground_z_m >= 0.0:
            problems.append(f"ground_z_m={self.ground_z_m} must be >= 0")
        if problems:
            raise ValueError("invalid link parameters: " + "; ".join(problems))


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Drone state estimate from the log block.

    Attributes:
        t: host receive time [s, monotonic].
        x, y, z: position [m, world frame].
        yaw: [rad], counter-clockwise.
        battery_v: raw ``pm.vbat`` [V].
    """

    t: float
    x: float
    y: float
    z: float
    yaw: float
    battery_v: float


@dataclasses.dataclass(frozen=True)
class CommandCounts:
    """Commands given to :meth:`CrazyflieLink.set_command` that were not sent as they came.

    Attributes:
        rejected_non_finite: a component NaN or infinite.
        rejected_too_fast: faster than ``topics.CMD_REJECT_FACTOR * max_speed``.
        rejected_stale: stamp older than ``hold_after_s`` on receipt.
        rejected_future: stamp more than ``topics.CMD_CLOCK_SKEW_S`` in the future.
        clipped: speed scaled down to ``max_speed`` or yaw rate clipped to ``max_yaw_rate``.
    """

    rejected_non_finite: int = 0
    rejected_too_fast: int = 0
    rejected_stale: int = 0
    rejected_future: int = 0
    clipped: int = 0

    @property
    def rejected(self) -> int:
        """All rejected commands (never executed)."""
        return (
            self.rejected_non_finite
            + self.rejected_too_fast
            + self.rejected_stale
            + self.rejected_future
        )


@dataclasses.dataclass(frozen=True)
class LinkStatus:
    """Snapshot of one link, for the node and for tests.

    ``stale_log_packets`` counts log data of an earlier connection's log block that arrived
    while a new connection was being set up (dropped, see :class:`CflibTransport`);
    ``recovering`` is True while the link is back after a loss while airborne and the
    bridge waits for a fresh state estimate to decide between land and stop.
    """

    name: str
    link: LinkState
    flight: FlightState
    protocol_version: int | None
    battery_v: float | None
    battery_level: BatteryLevel
    state_of_charge: float | None
    estimate: Estimate | None
    setpoints_sent: int
    connects: int
    last_event: str
    commands: CommandCounts = CommandCounts()
    stale_log_packets: int = 0
    recovering: bool = False


def _close_quietly(transport: CflibTransport) -> None:
    """Close a connection that is being abandoned; an error there changes nothing."""
    with contextlib.suppress(Exception):  # cflib raises bare Exception
        transport.close()


def _first_line(text: str) -> str:
    """cflib error messages carry a traceback after the first line."""
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"


class CflibTransport:
    """The cflib side of one link (thread-safe; every call may come from any thread).

    Uses the full ``cflib.crazyflie.Crazyflie`` connection (TOC download, cached on disk)
    and one log block with :data:`STATE_LOG_VARIABLES`. Velocity setpoints are sent as raw
    datagrams from :func:`encode_velocity_world`; takeoff, land and the stop / notify
    setpoints use cflib's own encoders.

    The firmware keeps a log block running through a radio outage, so a new connection
    first receives log data of the old connection's block until cflib's log reset (part of
    the TOC refresh) reaches the drone; cflib would log "Error no LogEntry to handle id=..."
    for each of them (20 a second). Until this connection's own block is started, such
    packets are dropped and counted (``stale_log_packets``), and they are not taken as an
    answer from the drone (``on_rx``): they say nothing about the new connection's
    requests. Once the block runs, log data for an unknown block reaches cflib as before.
    :meth:`close` deletes the log block first (if the drone still hears us, it stops
    streaming for a connection that is gone).
    """

    _drivers_ready = False
    _drivers_lock = threading.Lock()

    def __init__(self, toc_cache_dir: str | None, log_period_ms: int) -> None:
        self._toc_cache_dir = toc_cache_dir
        self._log_period_ms = log_period_ms
        self._lock = threading.Lock()
        self._cf = None
        self._block = None
        self._block_started = False
        self.protocol_version: int | None = None
        self.telemetry_error: str | None = None
        self.stale_log_packets = 0

    @classmethod
    def _init_drivers(cls) -> None:
        with cls._drivers_lock:
            if not cls._drivers_ready:
                import cflib.crtp

                cflib.crtp.init_drivers()
                cls._drivers_ready = True

    def open(
        self,
        uri: str,
        on_up: Callable[[], None],
        on_down: Callable[[str], None],
        on_rx: Callable[[], None],
        on_sample: Callable[[dict], None],
    ) -> None:
        """Start connecting (non-blocking); callbacks come from cflib's threads.

        ``on_rx`` is called for every packet from the drone except log data of an earlier
        connection's block (see the class docstring).
        """
        from cflib.crazyflie import Crazyflie
        from cflib.crazyflie.log import LogConfig

        self._init_drivers()
        cf = Crazyflie(rw_cache=self._toc_cache_dir)
        # cflib 0.1.34 starts a latency "ping_thread" on connect. When a send from that
        # thread fails (radio or port gone), cflib's error path runs the disconnect
        # callbacks *in* the ping thread, which tries to join itself (RuntimeError) while
        # holding Crazyflie._send_lock, which it then never releases: every later
        # send_packet, ours included, blocks forever and the link thread can no longer
        # declare the link lost or land the drone. We do not use the latency figure and
        # our own stream keeps the link busy, so the ping thread is never started.
        cf.link_statistics.start = lambda: None

        def connected(_uri: str) -> None:
            self.protocol_version = cf.platform.get_protocol_version()
            block = LogConfig("swarm_state", self._log_period_ms)
            for name in STATE_LOG_VARIABLES:
                block.add_variable(name, "float")
            block.data_received_cb.add_callback(lambda _ts, data, _block: on_sample(data))
            try:
                cf.log.add_config(block)
                block.start()
                self._block = block
                self._block_started = True
            except (KeyError, AttributeError) as exc:
                self.telemetry_error = f"telemetry log block refused: {exc}"
            if cf.param.toc.get_element_by_complete_name("commander.enHighLevel") is not None:
                # Firmware before 2021 ships with the high-level commander disabled.
                cf.param.set_value_raw("commander.enHighLevel", 0x08, 1)
            on_up()

        cf.connected.add_callback(connected)
        cf.connection_failed.add_callback(
            lambda _u, msg: on_down(f"connection failed: {_first_line(msg)}")
        )
        cf.connection_lost.add_callback(
            lambda _u, msg: on_down(f"connection lost: {_first_line(msg)}")
        )
        cf.packet_received.add_callback(lambda pk: None if self._is_stale_log(pk) else on_rx())
        self._filter_stale_log_data(cf)
        with self._lock:
            self._cf = cf
        cf.open_link(uri)

    def _is_stale_log(self, pk) -> bool:
        """Log data that arrives before this connection's own block runs."""
        return (
            not self._block_started
            and pk.port == CRTP_PORT_LOGGING
            and pk.channel == CRTP_CHANNEL_LOGDATA
        )

    def _filter_stale_log_data(self, cf) -> None:
        """Put a filter in front of cflib's log port handler (drops stale log data)."""
        handler = getattr(cf.log, "_new_packet_cb", None)  # cflib 0.1.x private name
        if handler is None:
            return  # another cflib: its own handler stays, so does its warning

        def log_packet(pk) -> None:
            if self._is_stale_log(pk):
                self.stale_log_packets += 1
                return
            handler(pk)

        cf.remove_port_callback(CRTP_PORT_LOGGING, handler)
        cf.add_port_callback(CRTP_PORT_LOGGING, log_packet)

    def _send_raw(self, datagram: bytes) -> None:
        from cflib.crtp.crtpstack import CRTPPacket

        with self._lock:
            if self._cf is not None and self._cf.link is not None:
                self._cf.send_packet(CRTPPacket(datagram[0], datagram[1:]))

    def send_velocity(self, datagram: bytes) -> None:
        self._send_raw(datagram)

    def _call(self, fn: Callable) -> None:
        with self._lock:
            if self._cf is not None and self._cf.link is not None:
                fn(self._cf)

    def notify_setpoint_stop(self) -> None:
        self._call(lambda cf: cf.commander.send_notify_setpoint_stop(0))

    def takeoff(self, height: float, duration: float) -> None:
        """Arm (needed by brushless Crazyflies; a no-op for auto-arming ones), then the
        high-level takeoff keeping the current yaw."""

        def go(cf) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # cflib's legacy-firmware notice, per call
                cf.supervisor.send_arming_request(True)
            cf.high_level_commander.takeoff(height, duration, yaw=None)

        self._call(go)

    def land(self, duration: float) -> None:
        self._call(lambda cf: cf.high_level_commander.land(0.0, duration, yaw=None))

    def stop_motors(self) -> None:
        self._call(lambda cf: cf.commander.send_stop_setpoint())

    def emergency_stop(self) -> None:
        def stop(cf) -> None:
            cf.supervisor.send_emergency_stop()
            cf.commander.send_stop_setpoint()

        self._call(stop)

    def send_external_pose(self, pose: tuple[float, ...]) -> None:
        """Motion-capture pose (x, y, z [m], qx, qy, qz, qw) for the onboard estimator."""
        self._call(lambda cf: cf.extpos.send_extpose(*pose))

    def close(self) -> None:
        """Delete the log block, then close without cflib's parting zero-thrust packet
        (the drone may still be flying). Takes up to 1 s (cflib joins its packet thread)."""
        with self._lock:
            cf, self._cf = self._cf, None
            if cf is None:
                return
            block, self._block = self._block, None
            if block is not None and cf.link is not None:
                with contextlib.suppress(Exception):  # best effort: the link may be gone
                    block.delete()
            link, cf.link = cf.link, None
        if link is not None:
            link.close()
        cf.close_link()


class CrazyflieLink:
    """One robot's independent radio link (see the module docstring for the behaviour).

    Args:
        robot: the robot's link settings.
        params: timing / safety parameters.
        transport_factory: builds the cflib side (tests may pass another duck-typed one).
        on_estimate: called with each :class:`Estimate` (from cflib's thread).
        on_event: called with ``(kind, message)`` for state changes worth logging
            (``link``, ``flight``, ``battery``, ``refused``).
        clock: monotonic clock [s].
    """

    def __init__(
        self,
        robot: RobotLink,
        params: LinkParams | None = None,
        transport_factory: Callable[[], CflibTransport] | None = None,
        on_estimate: Callable[[Estimate], None] | None = None,
        on_event: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.robot = robot
        self.params = params or LinkParams()
        self._factory = transport_factory or (
            lambda: CflibTransport(self.params.toc_cache_dir, self.params.log_period_ms)
        )
        self._on_estimate = on_estimate
        self._on_event = on_event
        self._clock = clock
        self._cond = threading.Condition()
        self._stop = threading.Event()
        #: Held around each send of the link thread and by :meth:`emergency_stop`, so that
        #: nothing decided before an emergency stop goes out after it.
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._transport: CflibTransport | None = None
        # ---- state below is guarded by self._cond
        self._link = LinkState.CONNECTING
        self._flight = FlightState.GROUNDED
        self._conn_up = False
        self._conn_down: str | None = None
        self._last_rx = -math.inf
        self._protocol: int | None = None
        self._cmd = ((0.0, 0.0, 0.0), 0.0)
        self._cmd_stamp = -math.inf
        self._cmd_new = False
        self._phase_start = -math.inf
        self._phase_end = -math.inf
        self._last_cmd_send = -math.inf  # last send that carried a new command [s]
        self._next_send = -math.inf
        self._pending: list[tuple] = []
        self._gen = 0  # connection generation: callbacks of an abandoned one are ignored
        self._airborne_at_loss = False  # a land may not have been delivered
        self._lost_since = -math.inf  # when the link was declared lost [s]
        self._lost_rx = -math.inf  # last packet heard before that [s]
        self._low_level_at_loss = False  # streamed setpoints: the firmware timeout applies
        self._handover_t = -math.inf  # last land begun while on streamed setpoints [s]
        self._estop_unsent = False  # an emergency stop raised: the link thread re-sends it
        self._recovering = False  # back after a loss while airborne: deciding land / stop
        self._recover_since = -math.inf
        self._recover_told = False
        self._counts = CommandCounts()
        self._stale_log_before = 0  # stale log packets of closed connections
        self._estimate: Estimate | None = None
        self._vbat_filtered: float | None = None
        self._battery_level = BatteryLevel.UNKNOWN
        self._battery_carried = False  # a latched level from an earlier connection
        self._setpoints_sent = 0
        self._connects = 0
        self._last_event = ""

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        """Start the link thread (connects in the background; never blocks)."""
        self._thread = threading.Thread(target=self._run, name=f"cf_link_{self.robot.name}")
        self._thread.daemon = True
        self._thread.start()

    def stop(self, land_timeout_s: float = 5.0) -> None:
        """Land if airborne (up to ``land_timeout_s``), then close the link."""
        stop_links([self], land_timeout_s)

    def begin_shutdown(self) -> bool:
        """Start landing if airborne and up; True while a landing is in progress.

        After a loss while airborne, no land is sent from here: while the link is still
        lost, or back and waiting for a fresh estimate, :meth:`_recover` decides between
        land and stop (a land now could start the motors of a drone the firmware cut), so
        this stays True until it has decided (or the caller's timeout is over).
        """
        with self._cond:
            if self._airborne_at_loss or self._recovering:
                return True
            if self._flight in AIRBORNE and self._link == LinkState.UP:
                self._begin_land(self._clock(), "bridge shutting down")
                self._cond.notify_all()
            return self._flight == FlightState.LANDING and self._link == LinkState.UP

    def close(self) -> None:
        """Stop the link thread and close the connection (no landing; see :meth:`stop`)."""
        self._signal_stop()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _signal_stop(self) -> None:
        """Tell the link thread to end (it closes its connection on the way out)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    @property
    def link_state(self) -> LinkState:
        """The radio link state alone (no lock, no snapshot: cheap enough to poll often)."""
        return self._link

    @property
    def flight_state(self) -> FlightState:
        """The flight state alone (no lock, no snapshot: cheap enough to poll often)."""
        return self._flight

    def status(self) -> LinkStatus:
        with self._cond:
            battery = self.robot.battery
            soc = (
                battery.state_of_charge(self._vbat_filtered)
                if battery is not None and self._vbat_filtered is not None
                else None
            )
            return LinkStatus(
                name=self.robot.name,
                link=self._link,
                flight=self._flight,
                protocol_version=self._protocol,
                battery_v=self._vbat_filtered,
                battery_level=self._battery_level,
                state_of_charge=soc,
                estimate=self._estimate,
                setpoints_sent=self._setpoints_sent,
                connects=self._connects,
                last_event=self._last_event,
                commands=self._counts,
                stale_log_packets=self._stale_log_before
                + getattr(self._transport, "stale_log_packets", 0),
                recovering=self._recovering,
            )

    def set_command(
        self, vx: float, vy: float, vz: float, yaw_rate: float = 0.0, stamp: float | None = None
    ) -> bool:
        """Latest world-frame velocity [m/s] and yaw rate [rad/s]; ``stamp`` [s, monotonic].

        The command rules of ``sim_bridge.topics`` ("Command freshness"): rejected, counted
        in :attr:`LinkStatus.commands` and never executed when a component is not finite,
        when it is faster than ``CMD_REJECT_FACTOR * max_speed`` (:func:`command_valid`), or
        when ``stamp`` lies outside ``[now - hold_after_s, now + CMD_CLOCK_SKEW_S]``
        (:func:`stamp_ok`; no stamp means now). Returns False then; the previous command
        stays, so the watchdog still runs and NaN never reaches the wire. An accepted
        command is scaled to ``max_speed`` and its yaw rate clipped to ``max_yaw_rate``
        (counted as clipped).
        """
        now = self._clock()
        verdict = None
        if not all(math.isfinite(c) for c in (vx, vy, vz, yaw_rate)):
            verdict = "rejected_non_finite"
        elif not command_valid(vx, vy, vz, self.robot.max_speed):
            verdict = "rejected_too_fast"
        elif stamp is not None and not stamp_ok(
            stamp, now, self.params.hold_after_s, CMD_CLOCK_SKEW_S
        ):
            future = math.isfinite(stamp) and stamp > now
            verdict = "rejected_future" if future else "rejected_stale"
        if verdict is not None:
            self._count(verdict)
            return False
        stamp = now if stamp is None else min(stamp, now)  # within the skew: not newer than now
        cmd = clamp_command((vx, vy, vz), yaw_rate, self.robot.max_speed, self.robot.max_yaw_rate)
        if cmd != ((vx, vy, vz), yaw_rate):
            self._count("clipped")
        with self._cond:
            if stamp < self._cmd_stamp:
                return True  # out-of-order message: the newer one stays
            self._cmd = cmd
            self._cmd_stamp = stamp
            self._cmd_new = True
            self._cond.notify_all()
        return True

    def _count(self, field: str) -> None:
        with self._cond:
            counts = self._counts
            self._counts = dataclasses.replace(counts, **{field: getattr(counts, field) + 1})

    def takeoff(self) -> tuple[bool, str]:
        """High-level takeoff to ``takeoff_height``; refused unless up, grounded, battery ok."""
        with self._cond:
            if self._link != LinkState.UP:
                return self._refuse(f"takeoff refused: link is {self._link.value}, not up")
            if self._flight == FlightState.EMERGENCY:
                return self._refuse("takeoff refused: emergency stop latched; reboot the drone")
            if self._flight != FlightState.GROUNDED:
                return self._refuse(f"takeoff refused: drone is {self._flight.value}")
            if self._battery_level == BatteryLevel.CRITICAL:
                volts = self._vbat_filtered
                reading = "no reading yet" if volts is None else f"{volts:.2f} V"
                return self._refuse(f"takeoff refused: battery critical ({reading})")
            now = self._clock()
            height = self.robot.takeoff_height
            duration = max(height / self.params.takeoff_speed, 1.0)
            self._pending.append(("takeoff", height, duration))
            self._flight = FlightState.TAKING_OFF
            self._phase_start, self._phase_end = now, now + duration
            self._event("flight", f"taking off to {height:.2f} m in {duration:.1f} s")
            self._cond.notify_all()
            return True, f"taking off to {height:.2f} m"

    def land(self) -> tuple[bool, str]:
        """High-level land; a no-op success on the ground; refused before the first link up.

        While the link is back after a loss and the altitude is still unknown (no fresh
        state estimate), an explicit land is sent: the caller decided.
        """
        with self._cond:
            if self._connects == 0:
                return self._refuse(f"land refused: link is {self._link.value}, never up yet")
            if self._recovering and self._link == LinkState.UP:
                self._recovering = self._airborne_at_loss = False
                self._begin_land(self._clock(), "land requested after the link loss")
                self._cond.notify_all()
                return True, "landing"
            if self._flight in (FlightState.GROUNDED, FlightState.LANDING):
                return True, f"already {self._flight.value}"
            if self._flight == FlightState.EMERGENCY:
                return True, "motors already stopped (emergency)"
            if self._link != LinkState.UP:
                return self._refuse(f"land refused: link is {self._link.value}, not up")
            self._begin_land(self._clock(), "land requested")
            self._cond.notify_all()
            return True, "landing"

    def emergency_stop(self) -> tuple[bool, str]:
        """Stop the motors now (sent from this thread); latched until the next connection."""
        transport = self._transport
        # Waits for a send in progress (bounded: a stuck radio must not hold the stop back).
        locked = self._send_lock.acquire(timeout=EMERGENCY_SEND_WAIT_S)
        try:
            with self._cond:
                connected = self._conn_up and transport is not None
                link_up = self._link == LinkState.UP
                if connected:
                    self._flight = FlightState.EMERGENCY
                    self._recovering = self._airborne_at_loss = False
                    self._pending = []  # a queued takeoff / land / setpoint never follows
                    self._event("flight", "emergency stop")
            if not connected:
                return self._refuse(
                    "emergency stop not delivered: no link; the firmware cuts the motors 2 s "
                    "after its last setpoint"
                )
            try:
                transport.emergency_stop()
            except Exception as exc:  # cflib raises bare Exception
                with self._cond:
                    self._estop_unsent = True
                    self._cond.notify_all()
                return self._refuse(
                    f"emergency stop not sent: {_first_line(exc)}; the link re-sends it"
                )
        finally:
            if locked:
                self._send_lock.release()
        if not link_up:
            return True, "emergency stop sent while the link is lost (delivery unknown)"
        return True, "motors stopped"

    def send_external_pose(self, pose: tuple[float, ...]) -> None:
        """Forward a motion-capture pose (x, y, z, qx, qy, qz, qw) to the drone."""
        transport = self._transport
        if transport is not None and self._conn_up and all(math.isfinite(p) for p in pose):
            try:
                transport.send_external_pose(tuple(float(p) for p in pose))
            except Exception as exc:  # cflib raises bare Exception; never into the caller
                with self._cond:
                    self._event("link", f"external pose not sent: {_first_line(exc)}")

    # ------------------------------------------------------------------ helpers (locked)
    def _event(self, kind: str, message: str) -> None:
        self._last_event = message
        if self._on_event is not None:
            self._on_event(kind, message)

    def _refuse(self, message: str) -> tuple[bool, str]:
        self._event("refused", message)
        return False, message

    def _set_link(self, state: LinkState, reason: str) -> None:
        if state != self._link:
            self._link = state
            self._event("link", f"link {state.value}: {reason}")

    def _begin_land(self, now: float, reason: str) -> None:
        z = self._estimate.z if self._estimate is not None else self.robot.takeoff_height
        duration = max(z / self.params.land_speed, 1.0)
        if self._flight in (FlightState.FLYING, FlightState.HOLDING):
            self._handover_t = now  # from streamed setpoints to the high-level commander
        self._pending.append(("notify_stop",))
        self._pending.append(("land", duration))
        self._flight = FlightState.LANDING
        self._phase_start, self._phase_end = now, now + duration + 0.5
        self._event("flight", f"landing ({reason}) in {duration:.1f} s")

    def _mark_lost(self, now: float) -> None:
        """The link just went lost: remember when, and whether a land may be undelivered.

        Lost again before the recovery from an earlier loss decided: that loss's times stay
        (nothing low-level was sent since, so the firmware's motor timeout runs from then).
        """
        if self._recovering:
            return
        self._lost_since = now
        self._lost_rx = self._last_rx
        # A land begun after the last packet heard may not have arrived either: the drone
        # may still be on streamed setpoints (the firmware's motor timeout applies).
        self._low_level_at_loss = self._flight in (FlightState.FLYING, FlightState.HOLDING) or (
            self._flight == FlightState.LANDING and self._handover_t >= self._last_rx
        )
        if self._flight in AIRBORNE or self._flight == FlightState.LANDING:
            self._airborne_at_loss = True

    def _link_back(self, now: float) -> None:
        """The drone answers again after a loss: decide land / stop from a fresh estimate."""
        if self._airborne_at_loss and self._flight != FlightState.EMERGENCY:
            self._recovering = True
            self._recover_since = now
            self._recover_told = False

    # ------------------------------------------------------------------ transport callbacks
    def _cb_up(self, gen: int) -> None:
        with self._cond:
            if gen != self._gen:
                return
            self._conn_up = True
            self._last_rx = self._clock()
            self._cond.notify_all()

    def _cb_down(self, gen: int, reason: str) -> None:
        with self._cond:
            if gen != self._gen:
                return
            self._conn_down = reason
            self._cond.notify_all()

    def _cb_rx(self, gen: int) -> None:
        if gen == self._gen:
            self._last_rx = self._clock()  # a float store is atomic; no lock on the hot path

    def _cb_sample(self, gen: int, data: dict) -> None:
        if gen != self._gen:
            return
        now = self._clock()
        try:
            est = Estimate(
                t=now,
                x=float(data["stateEstimate.x"]),
                y=float(data["stateEstimate.y"]),
                z=float(data["stateEstimate.z"]),
                yaw=math.radians(float(data["stabilizer.yaw"])),
                battery_v=float(data["pm.vbat"]),
            )
        except (KeyError, TypeError, ValueError):
            return
        with self._cond:
            self._estimate = est
            if math.isfinite(est.battery_v):
                self._update_battery(now, est.battery_v)
            if self._recovering:
                self._cond.notify_all()  # the estimate decides between land and stop
        if self._on_estimate is not None:
            self._on_estimate(est)

    def _update_battery(self, now: float, volts: float) -> None:
        if self._vbat_filtered is None:
            self._vbat_filtered = volts
        else:
            dt = self.params.log_period_ms / 1000.0
            alpha = dt / (self.params.battery_tau_s + dt)
            self._vbat_filtered += alpha * (volts - self._vbat_filtered)
        battery = self.robot.battery
        if battery is None:
            return
        v = self._vbat_filtered
        if self._battery_carried:  # the first reading after a re-connection decides
            self._battery_carried = False
            latched = self._battery_level
            if v >= battery.recharged_v:
                self._battery_level = BatteryLevel.UNKNOWN  # rated afresh just below
                self._event(
                    "battery", f"battery {v:.2f} V after re-connection: {latched.value} cleared"
                )
            else:
                self._event(
                    "battery",
                    f"battery still {latched.value} after re-connection ({v:.2f} V < "
                    f"{battery.recharged_v:.2f} V: not a charged battery)",
                )
        level = BatteryLevel.OK
        if v < battery.critical_v:
            level = BatteryLevel.CRITICAL
        elif v < battery.warning_v:
            level = BatteryLevel.WARNING
        rank = [BatteryLevel.UNKNOWN, BatteryLevel.OK, BatteryLevel.WARNING, BatteryLevel.CRITICAL]
        if rank.index(level) > rank.index(self._battery_level):
            self._battery_level = level  # latched: voltage recovers at rest, the charge not
            if level != BatteryLevel.OK:
                self._event("battery", f"battery {level.value}: {v:.2f} V")
            # While back after a loss the recovery decides land or stop from this estimate
            # (a land now could start the motors of a drone that fell).
            if level == BatteryLevel.CRITICAL and self._flight in AIRBORNE and not self._recovering:
                self._begin_land(now, f"battery critical {v:.2f} V")
                self._cond.notify_all()

    # ------------------------------------------------------------------ link thread
    def _run(self) -> None:
        backoff = self.params.retry_backoff_s
        while not self._stop.is_set():
            if self._connect():
                backoff = self.params.retry_backoff_s
                self._stream()
            transport = self._end_connection()
            if transport is not None:
                if self._stop.is_set():
                    _close_quietly(transport)
                else:  # cflib's close joins its packet thread (up to 1 s): not on our time
                    threading.Thread(
                        target=_close_quietly,
                        args=(transport,),
                        name=f"cf_close_{self.robot.name}",
                        daemon=True,
                    ).start()
            if self._stop.wait(backoff):
                break
            backoff = min(2.0 * backoff, self.params.retry_backoff_max_s)

    def _end_connection(self) -> CflibTransport | None:
        """Forget the current connection (its late callbacks are ignored); returns it."""
        transport, self._transport = self._transport, None
        with self._cond:
            self._gen += 1
            self._conn_up = False
            # What was decided for this connection and not sent is dropped, never sent on a
            # later one (seconds or minutes later); the recovery decides anew. A takeoff that
            # never went out leaves the drone on the floor.
            if any(action[0] == "takeoff" for action in self._pending):
                self._flight = FlightState.GROUNDED
                self._event("refused", "takeoff not sent: the connection was lost first")
            self._pending = []
            if transport is not None:
                self._stale_log_before += getattr(transport, "stale_log_packets", 0)
            if self._link == LinkState.UP:
                self._mark_lost(self._clock())
            if not self._stop.is_set():
                self._set_link(
                    LinkState.CONNECTING if self._connects == 0 else LinkState.LOST,
                    self._conn_down or "no answer",
                )
        return transport

    def _connect(self) -> bool:
        """One connection attempt: True once up; False when it failed or heard nothing.

        The attempt is abandoned when no packet came back for ``answer_timeout_s`` (from
        the start or since the last packet; requests lost in an outage are never answered
        or re-sent over UDP) or after ``connect_timeout_s`` in all.
        """
        p = self.params
        with self._cond:
            self._gen += 1
            gen = self._gen
            self._conn_up = False
            self._conn_down = None
            if self._connects == 0:
                self._set_link(LinkState.CONNECTING, f"opening {self.robot.uri}")
        t_open = self._clock()
        try:
            transport = self._factory()
            self._transport = transport
            transport.open(
                self.robot.uri,
                lambda: self._cb_up(gen),
                lambda reason: self._cb_down(gen, reason),
                lambda: self._cb_rx(gen),
                lambda data: self._cb_sample(gen, data),
            )
        except Exception as exc:  # cflib raises bare Exception for driver problems
            with self._cond:
                self._conn_down = f"cannot open {self.robot.uri}: {_first_line(exc)}"
            return False
        with self._cond:
            while not (self._conn_up or self._conn_down or self._stop.is_set()):
                now = self._clock()
                heard = max(t_open, self._last_rx)
                if now - t_open >= p.connect_timeout_s:
                    self._conn_down = f"not connected within {p.connect_timeout_s:.1f} s"
                    return False
                if now - heard >= p.answer_timeout_s:
                    self._conn_down = f"no answer for {p.answer_timeout_s:.1f} s, retrying"
                    return False
                deadline = min(t_open + p.connect_timeout_s, heard + p.answer_timeout_s)
                self._cond.wait(min(deadline - now, 0.1))
            if not self._conn_up or self._conn_down:
                return False
            now = self._clock()
            self._protocol = transport.protocol_version
            self._connects += 1
            # a latched low level survives the re-connection until a reading says the
            # battery was changed (_update_battery); the filter restarts from that reading
            self._battery_carried = self._battery_level in (
                BatteryLevel.WARNING,
                BatteryLevel.CRITICAL,
            )
            if not self._battery_carried:
                self._battery_level = BatteryLevel.UNKNOWN
            self._vbat_filtered = None
            legacy = " (legacy setpoints)" if (self._protocol or 0) <= LEGACY_PROTOCOL_MAX else ""
            self._set_link(LinkState.UP, f"protocol {self._protocol}{legacy}")
            if transport.telemetry_error:
                self._event("link", transport.telemetry_error)
            if self._flight == FlightState.EMERGENCY:
                self._airborne_at_loss = False
                if not self._estop_unsent:  # else it goes out on this connection
                    self._flight = FlightState.GROUNDED
            if self._airborne_at_loss:
                self._link_back(now)
            elif self._flight not in (FlightState.LANDING, FlightState.EMERGENCY):
                self._flight = FlightState.GROUNDED
            self._cond.notify_all()
        return True

    def _stream(self) -> None:
        """Run until the connection must be re-opened or the link is stopped."""
        period = 1.0 / self.params.rate_hz
        min_interval = 1.0 / self.params.max_rate_hz
        transport = self._transport
        while not self._stop.is_set():
            with self._cond:
                now = self._clock()
                wake = self._next_wake(now, period, min_interval)
                if wake > now and not self._pending:
                    self._cond.wait(wake - now)
                now = self._clock()
                if self._conn_down is not None:
                    return
                if self._check_link(now):
                    return
                actions = self._tick(now, period, min_interval)
            for action in actions:
                if not self._send(transport, action):
                    return

    def _send(self, transport: CflibTransport, action: tuple) -> bool:
        """Perform one action (never after an emergency stop); False if the transport
        raised: the connection is then treated as broken (re-opened, and a drone that was
        in the air is landed or stopped by :meth:`_recover` from a fresh estimate), so no
        exception ends the link thread and no later action of the batch goes out of order.
        """
        with self._send_lock:
            if self._flight == FlightState.EMERGENCY and action[0] != "emergency_stop":
                return True  # what was decided before the emergency stop never goes out
            try:
                self._perform(transport, action)
            except Exception as exc:  # cflib raises bare Exception; any error is a lost link
                with self._cond:
                    if action[0] == "emergency_stop":
                        self._estop_unsent = True  # again, on the next connection
                    self._conn_down = f"{action[0]} not sent: {_first_line(exc)}"
                    self._event("link", f"send failed ({self._conn_down}), re-opening")
                return False
        return True

    def _next_wake(self, now: float, period: float, min_interval: float) -> float:
        wake = now + min(0.05, self.params.link_timeout_s / 4.0)
        if self._flight in (FlightState.FLYING, FlightState.HOLDING):
            wake = min(wake, self._next_send)
            if self._cmd_new:
                wake = min(wake, self._last_cmd_send + min_interval)
        if self._flight == FlightState.HOVERING and self._cmd_new:
            wake = now
        if self._flight in (FlightState.TAKING_OFF, FlightState.LANDING):
            wake = min(wake, self._phase_end)
        return wake

    def _check_link(self, now: float) -> bool:
        """Update up/lost from the downlink; True if the connection must be re-opened."""
        silence = now - self._last_rx
        if self._link == LinkState.UP and silence > self.params.link_timeout_s:
            self._set_link(LinkState.LOST, f"no packet for {silence:.2f} s")
            recovering = self._recovering
            self._mark_lost(now)
            # Lost again while back from an earlier loss and undecided: a land now could
            # arrive after a firmware cut; the recovery decides when the link is back.
            if self._flight in AIRBORNE and (not recovering or self._motors_surely_on(now)):
                # Best effort: the uplink may still work. Re-sent once the link is back.
                self._begin_land(now, "link lost")
        elif self._link == LinkState.LOST and silence <= self.params.link_timeout_s:
            self._set_link(LinkState.UP, "packets flowing again")
            if self._flight == FlightState.GROUNDED:
                self._airborne_at_loss = False
            self._link_back(now)
        if self._link == LinkState.LOST and silence > self.params.reconnect_after_s:
            self._conn_down = f"no packet for {silence:.1f} s, re-opening"
            return True
        return False

    def _tick(self, now: float, period: float, min_interval: float) -> list[tuple]:
        actions, self._pending = self._pending, []
        if self._flight == FlightState.EMERGENCY:
            if self._estop_unsent:  # the caller's send raised: again, until it goes out
                self._estop_unsent = False
                actions.append(("emergency_stop",))
            return actions
        if self._recovering:
            # Back after a loss while airborne: the recovery alone decides land or stop,
            # also while the link is lost again (the watchdog, geofence and landing timer
            # wait: a land now could start the motors of a drone the firmware cut).
            if self._link == LinkState.UP:
                self._recover(now)
            return self._pending_and_clear(actions)
        if self._flight == FlightState.TAKING_OFF and now >= self._phase_end:
            self._flight = FlightState.HOVERING
            self._phase_start = now
            self._event("flight", "hovering (high-level commander holds position)")
        # A landing ends only while the link is up: one that went out into an outage may
        # never have arrived (it is re-sent when the link is back, see _recover).
        if (
            self._flight == FlightState.LANDING
            and now >= self._phase_end
            and self._link == LinkState.UP
        ):
            self._flight = FlightState.GROUNDED
            actions.append(("stop_motors",))
            self._event("flight", "landed, motors stopped")
            self._airborne_at_loss = False
        if self._flight in AIRBORNE and self._outside_geofence():
            self._begin_land(now, "estimate left the arena")
            return self._pending_and_clear(actions)
        age = now - self._cmd_stamp
        if self._flight == FlightState.HOVERING and self._cmd_new:
            if self._cmd_stamp >= self._phase_start and age <= self.params.hold_after_s:
                self._flight = FlightState.FLYING
                self._event("flight", "flying on /cmd_vel")
            else:
                self._cmd_new = False
        if self._flight not in (FlightState.FLYING, FlightState.HOLDING):
            return actions
        if age > self.params.land_after_s:
            self._begin_land(now, f"no command for {age:.2f} s")
            return self._pending_and_clear(actions)
        if age > self.params.hold_after_s:
            if self._flight != FlightState.HOLDING:
                self._flight = FlightState.HOLDING
                self._event("flight", f"holding: command {age:.2f} s old")
            setpoint = ((0.0, 0.0, 0.0), 0.0)
        else:
            if self._flight != FlightState.FLYING:
                self._flight = FlightState.FLYING
                self._event("flight", "flying on /cmd_vel")
            setpoint = self._cmd
        scheduled = now >= self._next_send
        # The rate limit counts from the last send of a new command: a resend of the old one
        # just before a new command arrives must not hold the new one back (issue #17).
        if scheduled or (self._cmd_new and now - self._last_cmd_send >= min_interval):
            (vx, vy, vz), yaw_rate = setpoint
            datagram = encode_velocity_world(
                vx, vy, vz, math.degrees(yaw_rate), self._protocol if self._protocol else 0
            )
            actions.append(("velocity", datagram))
            if self._cmd_new:
                self._last_cmd_send = now
            self._cmd_new = False
            # Scheduled sends stay on a fixed grid (no drift); an immediate send for a new
            # command restarts the grid so the next resend is one period later.
            if scheduled and now - self._next_send < period:
                self._next_send += period
            else:
                self._next_send = now + period
            self._setpoints_sent += 1
        return actions

    def _recover(self, now: float) -> None:
        """Back after a loss while airborne (or landing): land again or only stop.

        A state estimate taken after the loss decides. At or below ``ground_z_m`` the drone
        is down (it landed, or the firmware cut its motors): only a stop setpoint goes out,
        nothing that could start its motors. Above, the land is sent again and the landing
        timer restarts from this moment and this altitude, unless the drone was flying on
        streamed setpoints and the firmware's motor timeout (2 s after the last setpoint
        it heard: between the last packet heard from it and the moment the bridge stopped
        streaming) may strike before the land arrives: then the bridge waits for an
        estimate taken ``FALL_SETTLE_S`` after the latest possible cut, which shows a drone
        on the floor or one still held by its high-level commander. Without any estimate
        after ``estimate_wait_s``, the land goes out only if the motors cannot have been
        cut (high-level commander at the loss, or before the earliest possible cut);
        otherwise nothing is sent until a caller lands or stops the drone.
        """
        p = self.params
        cut_until = self._lost_since + FIRMWARE_SHUTDOWN_TIMEOUT_S
        motors_surely_on = self._motors_surely_on(now)
        est = self._estimate
        if est is not None and est.t > self._lost_since:
            if est.z <= p.ground_z_m:
                self._recovering = self._airborne_at_loss = False
                self._flight = FlightState.GROUNDED
                self._pending.append(("stop_motors",))
                self._event(
                    "flight",
                    f"on the ground after the link loss (z = {est.z:.2f} m): motors stopped, "
                    "no land sent",
                )
                return
            if motors_surely_on or est.t >= cut_until + FALL_SETTLE_S:
                self._recovering = self._airborne_at_loss = False
                self._begin_land(now, f"link back at z = {est.z:.2f} m, land sent again")
                return
            if not self._recover_told:
                self._recover_told = True
                self._event(
                    "flight",
                    f"link back at z = {est.z:.2f} m, but the firmware may cut the motors "
                    "before a land arrives: waiting for an estimate after its timeout",
                )
            return
        if now - self._recover_since < p.estimate_wait_s:
            return
        if motors_surely_on:
            self._recovering = self._airborne_at_loss = False
            self._begin_land(now, "link back without a state estimate, motors still on: land")
        elif not self._recover_told:
            self._recover_told = True
            outage = self._recover_since - self._lost_rx
            self._event(
                "refused",
                f"link back after {outage:.1f} s without a state estimate: altitude unknown, "
                "nothing sent (call land or emergency_stop)",
            )

    def _motors_surely_on(self, now: float) -> bool:
        """After a loss: a land sent now arrives before the firmware can have cut the
        motors (high-level commander at the loss, or before the earliest possible cut)."""
        cut_from = self._lost_rx + FIRMWARE_SHUTDOWN_TIMEOUT_S
        return not self._low_level_at_loss or now <= cut_from - LAND_BEFORE_CUT_S

    def _pending_and_clear(self, actions: list[tuple]) -> list[tuple]:
        actions.extend(self._pending)
        self._pending = []
        return actions

    def _outside_geofence(self) -> bool:
        arena, est = self.robot.arena, self._estimate
        if arena is None or est is None:
            return False
        m = self.params.geofence_margin
        return any(
            not (lo - m <= value <= hi + m) for value, (lo, hi) in zip((est.x, est.y, est.z), arena)
        )

    def _perform(self, transport: CflibTransport, action: tuple) -> None:
        kind = action[0]
        if kind == "velocity":
            transport.send_velocity(action[1])
        elif kind == "takeoff":
            transport.takeoff(action[1], action[2])
        elif kind == "land":
            transport.land(action[1])
        elif kind == "notify_stop":
            transport.notify_setpoint_stop()
        elif kind == "stop_motors":
            transport.stop_motors()
        elif kind == "emergency_stop":
            transport.emergency_stop()


def stop_links(links: list[CrazyflieLink], land_timeout_s: float = 5.0) -> None:
    """Land every airborne link at once, wait up to ``land_timeout_s``, then close all (the
    links' threads close their connections in parallel: cflib's close may take a while)."""
    landing = [link for link in links if link.begin_shutdown()]
    deadline = time.monotonic() + land_timeout_s
    while landing and time.monotonic() < deadline:
        time.sleep(0.02)
        landing = [link for link in landing if link.begin_shutdown()]
    for link in links:
        link._signal_stop()
    for link in links:
        link.close()
