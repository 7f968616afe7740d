"""Loopback fake Crazyflie: answers cflib over ``udp://127.0.0.1:<port>`` and records the wire.

cflib >= 0.1.32 speaks raw CRTP over UDP, one packet per datagram (byte 0: CRTP header
``port << 4 | 0b1100 | channel``, bytes 1..30: payload; see ``cflib/crtp/udpdriver.py``).
This module implements just enough of the Crazyflie firmware side of that protocol for
``cflib.crazyflie.Crazyflie.open_link`` to finish its connection sequence and for a bridge
to fly:

* link control (port 15): the ``Bitcraze Crazyflie`` source string and echo (latency ping);
* platform (port 13): the CRTP protocol version (configurable, so the legacy path of
  firmware protocol <= 8 can be exercised);
* logging (port 5): TOC info/items (v1 and v2 protocol), reset, create/append/start/stop/
  delete block, and periodic log data packets of the configured variables;
* memory (port 4): zero memories;
* parameters (port 2): TOC, read, write;
* commander generic (port 7), RPYT commander (port 3), high-level commander (port 8),
  supervisor (port 9), localization (port 6): recorded and fed to a small kinematic model
  of the drone (velocity integration, high-level takeoff/land ramps, the firmware's
  setpoint timeout: level after 0.5 s, motors off after 2 s, emergency stop) so that the
  state estimate the fake logs back moves like a flying Crazyflie would.

Every datagram received is recorded with its ``time.monotonic()`` arrival time, so tests
can assert exact bytes and streaming rates. Every change of the modelled motors (switched
on, arming request, switched off and why) is recorded as a :class:`MotorEvent` with the
altitude at that moment, so tests can tell a landing from a cut in mid-air and count
motors switched on for a drone that sat on the ground
(:meth:`FakeCrazyflie.armed_on_ground`).

Link loss is simulated by :meth:`FakeCrazyflie.set_responding` (the fake keeps receiving
but answers nothing, like a drone out of radio range) or by :meth:`FakeCrazyflie.close`
(the port goes away). A log block keeps running through a silence, as the firmware's does,
so the first packets after it are log data for the block of the old connection.

The socket is bound to 127.0.0.1 only. No rclpy here. The fake answers whoever sent the
last CRTP datagram (as a reconnecting cflib client uses a new socket), so anything else that
arrives is dropped unrecorded and counted (:attr:`FakeCrazyflie.foreign`): datagrams longer
than a CRTP packet or starting with ``RTPS``. The OS may give the fake a port inside a DDS
domain's range (domain ids above 101 on Linux overlap the ephemeral ports), and DDS
discovery on loopback sends its announcements there every few seconds; taken as the peer,
they stole the fake's answers from its link, which then looked lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import select
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterable

# ------------------------------------------------------------------ CRTP constants
PORT_PARAM = 0x02
PORT_COMMANDER = 0x03
PORT_MEM = 0x04
PORT_LOG = 0x05
PORT_LOCALIZATION = 0x06
PORT_COMMANDER_GENERIC = 0x07
PORT_SETPOINT_HL = 0x08
PORT_SUPERVISOR = 0x09
PORT_PLATFORM = 0x0D
PORT_LINKCTRL = 0x0F

SETPOINT_STOP = 0
SETPOINT_VELOCITY_WORLD_LEGACY = 1
SETPOINT_VELOCITY_WORLD = 8
META_NOTIFY_SETPOINT_STOP = 0

HL_STOP = 3
HL_TAKEOFF_2 = 7
HL_LAND_2 = 8

SUPERVISOR_ARM_SYSTEM = 0x01
SUPERVISOR_EMERGENCY_STOP = 0x03
LOCALIZATION_GENERIC_CH = 1
LOCALIZATION_EMERGENCY_STOP = 3
LOCALIZATION_EXT_POSE = 8

LOG_TYPE_FORMAT = {
    0x01: "<B",
    0x02: "<H",
    0x03: "<L",
    0x04: "<b",
    0x05: "<h",
    0x06: "<i",
    0x07: "<f",
    0x08: "<e",
}

# Firmware commander watchdog (crazyflie-firmware src/modules/src/commander.c).
FIRMWARE_STABILIZE_TIMEOUT_S = 0.5
FIRMWARE_SHUTDOWN_TIMEOUT_S = 2.0

LINK_SOURCE_STRING = b"Bitcraze Crazyflie"
#: Longest CRTP datagram: the header byte and cflib's 30 payload bytes (CRTPPacket).
CRTP_MAX_DATAGRAM = 31
#: First bytes of every RTPS (DDS) message.
RTPS_MAGIC = b"RTPS"
#: Altitude [m] at or below which the modelled drone is on the floor.
ON_GROUND_Z = 0.01


def crtp_header(port: int, channel: int) -> int:
    """CRTP header byte as cflib builds it: port in the high nibble, bits 2-3 set."""
    return ((port & 0x0F) << 4) | 0x0C | (channel & 0x03)


@dataclasses.dataclass(frozen=True)
class CrtpRecord:
    """One datagram received by the fake.

    Attributes:
        t: arrival time, ``time.monotonic()`` [s].
        header: CRTP header byte.
        data: payload bytes (without the header).
        silent: True if it arrived while the fake was not answering (simulated link loss).
    """

    t: float
    header: int
    data: bytes
    silent: bool = False

    @property
    def port(self) -> int:
        return (self.header & 0xF0) >> 4

    @property
    def channel(self) -> int:
        return self.header & 0x03

    @property
    def raw(self) -> bytes:
        """The datagram as it was on the wire (header byte + payload)."""
        return bytes([self.header]) + self.data


@dataclasses.dataclass(frozen=True)
class VelocitySetpoint:
    """A decoded commander-generic velocity-world setpoint.

    Attributes:
        t: arrival time [s, monotonic].
        type: 8 (``velocityWorld``) or 1 (legacy, firmware protocol <= 8).
        vx, vy, vz: world-frame velocity [m/s].
        yaw_rate: as on the wire [deg/s]; legacy packets carry the opposite sign.
    """

    t: float
    type: int
    vx: float
    vy: float
    vz: float
    yaw_rate: float


def decode_velocity_setpoint(record: CrtpRecord) -> VelocitySetpoint | None:
    """Decode a port-7 channel-0 ``<Bffff`` velocity setpoint, or None for anything else."""
    if record.port != PORT_COMMANDER_GENERIC or record.channel != 0 or len(record.data) != 17:
        return None
    kind, vx, vy, vz, yaw_rate = struct.unpack("<Bffff", record.data)
    if kind not in (SETPOINT_VELOCITY_WORLD, SETPOINT_VELOCITY_WORLD_LEGACY):
        return None
    return VelocitySetpoint(record.t, kind, vx, vy, vz, yaw_rate)


@dataclasses.dataclass(frozen=True)
class MotorEvent:
    """A change of the modelled motors.

    Attributes:
        t: when [s, monotonic].
        kind: ``on`` (motors switched on), ``arm`` (arming request received) or ``off``.
        cause: what did it: ``velocity``, ``takeoff``, ``land`` (high-level commands) or
            ``arm`` for on/arm; ``stop_setpoint``, ``hl_stop``, ``zero_thrust``,
            ``firmware_timeout``, ``emergency`` for off.
        z: altitude of the model just before the change [m].
        motors_were_on: whether the motors ran just before the change.
    """

    t: float
    kind: str
    cause: str
    z: float
    motors_were_on: bool

    @property
    def on_ground(self) -> bool:
        """The drone sat on the floor with its motors off when this happened."""
        return not self.motors_were_on and self.z <= ON_GROUND_Z


@dataclasses.dataclass
class _TocEntry:
    group: str
    name: str
    type_id: int
    fmt: str
    value: float


@dataclasses.dataclass
class _LogBlock:
    block_id: int
    variables: list[tuple[int, int]]  # (toc ident, fetch type id)
    period_s: float = 0.0
    running: bool = False
    next_due: float = 0.0


class FakeCrazyflie:
    """A Crazyflie on a loopback UDP port (firmware side of cflib's udp driver).

    Args:
        protocol_version: CRTP protocol version the fake reports (<= 8 selects cflib's
            legacy setpoint types, < 4 the v1 TOC protocol, < 12 the legacy emergency stop).
        battery_v: initial battery voltage [V] reported as ``pm.vbat``.
        position: initial state estimate (x, y, z) [m, world frame].
        yaw_deg: initial yaw [deg].
        port: UDP port on 127.0.0.1; 0 lets the OS pick a free one (see :attr:`uri`).
        motors_on: start with the motors running, holding ``position`` under the
            high-level commander (a drone in the air whose radio comes back).
    """

    def __init__(
        self,
        protocol_version: int = 12,
        battery_v: float = 4.0,
        position: tuple[float, float, float] = (0.0, 0.0, 0.0),
        yaw_deg: float = 0.0,
        port: int = 0,
        motors_on: bool = False,
    ) -> None:
        self.protocol_version = int(protocol_version)
        self.battery_v = float(battery_v)
        self._lock = threading.Lock()
        self._records: list[CrtpRecord] = []
        self._responding = True
        self._closed = threading.Event()
        self._peer: tuple[str, int] | None = None
        # Kinematic model of the drone, world frame [m], [deg].
        self.position = [float(p) for p in position]
        self.yaw_deg = float(yaw_deg)
        self.motors_on = bool(motors_on)
        self.emergency_stopped = False
        self._velocity = (0.0, 0.0, 0.0, 0.0)
        self._low_level_t: float | None = None
        self._hl_ramp: tuple[float, float, float, float] | None = None  # t0, t1, z0, z1
        self._last_step = time.monotonic()

        self._log_toc = [
            _TocEntry("stateEstimate", "x", 0x07, "<f", 0.0),
            _TocEntry("stateEstimate", "y", 0x07, "<f", 0.0),
            _TocEntry("stateEstimate", "z", 0x07, "<f", 0.0),
            _TocEntry("stabilizer", "roll", 0x07, "<f", 0.0),
            _TocEntry("stabilizer", "pitch", 0x07, "<f", 0.0),
            _TocEntry("stabilizer", "yaw", 0x07, "<f", 0.0),
            _TocEntry("pm", "vbat", 0x07, "<f", 0.0),
            _TocEntry("pm", "state", 0x04, "<b", 0.0),
        ]
        self._param_toc = [
            _TocEntry("commander", "enHighLevel", 0x08, "<B", 1),
            _TocEntry("stabilizer", "estimator", 0x08, "<B", 2),
            _TocEntry("stabilizer", "controller", 0x08, "<B", 1),
            _TocEntry("kalman", "resetEstimation", 0x08, "<B", 0),
        ]
        self._log_blocks: dict[int, _LogBlock] = {}
        self._motor_events: list[MotorEvent] = []
        self.malformed = 0
        #: Datagrams that are not CRTP (too long, or RTPS), dropped without an answer.
        self.foreign = 0

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", int(port)))
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name=f"fake_cf_{self.port}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API
    @property
    def uri(self) -> str:
        """The cflib URI of this fake, ``udp://127.0.0.1:<port>``."""
        return f"udp://127.0.0.1:{self.port}"

    def set_responding(self, responding: bool) -> None:
        """Simulate link loss (False: receive and record, but answer nothing) or recovery."""
        with self._lock:
            self._responding = bool(responding)

    def inject(self, port: int, channel: int, payload: bytes) -> None:
        """Send an unsolicited packet to the connected host (if answering), e.g. log data
        for a block the host never created."""
        self._reply(port, channel, bytes(payload))

    def close(self) -> None:
        """Stop the fake and close its port (the link is gone for good)."""
        self._closed.set()
        self._thread.join(timeout=2.0)
        self._sock.close()

    def __enter__(self) -> FakeCrazyflie:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def records(self) -> list[CrtpRecord]:
        """A copy of every datagram received so far, oldest first."""
        with self._lock:
            return list(self._records)

    def clear_records(self) -> None:
        with self._lock:
            self._records.clear()

    def velocity_setpoints(self, since: float = -math.inf) -> list[VelocitySetpoint]:
        """Decoded velocity-world setpoints received at ``t >= since`` (monotonic [s])."""
        out = []
        for record in self.records():
            if record.t >= since:
                sp = decode_velocity_setpoint(record)
                if sp is not None:
                    out.append(sp)
        return out

    def records_on(self, port: int, channel: int | None = None) -> list[CrtpRecord]:
        """Records on one CRTP port (and channel, if given)."""
        return [
            r
            for r in self.records()
            if r.port == port and (channel is None or r.channel == channel)
        ]

    def motor_events(self, since: float = -math.inf) -> list[MotorEvent]:
        """Changes of the modelled motors at ``t >= since`` (monotonic [s]), oldest first."""
        with self._lock:
            return [e for e in self._motor_events if e.t >= since]

    def armed_on_ground(self, since: float = -math.inf) -> int:
        """How often, since ``since``, the motors were switched on or an arming request came
        while the drone sat on the floor with its motors off (a take-off counts too)."""
        return sum(e.kind in ("on", "arm") and e.on_ground for e in self.motor_events(since))

    def high_level_commands(self) -> list[int]:
        """Command ids received on the high-level commander port, in order."""
        return [r.data[0] for r in self.records_on(PORT_SETPOINT_HL) if r.data]

    @property
    def flying(self) -> bool:
        """True while the modelled motors run and the drone is above the floor."""
        with self._lock:
            return self.motors_on and self.position[2] > 0.01

    # ------------------------------------------------------------------ main loop
    def _run(self) -> None:
        while not self._closed.is_set():
            timeout = self._next_log_due() - time.monotonic()
            timeout = min(max(timeout, 0.0), 0.02)
            try:
                readable, _, _ = select.select([self._sock], [], [], timeout)
            except (OSError, ValueError):
                return
            now = time.monotonic()
            if readable:
                self._drain(now)
            self._step_model(time.monotonic())
            self._send_due_logs(time.monotonic())

    def _drain(self, now: float) -> None:
        while True:
            try:
                datagram, peer = self._sock.recvfrom(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not datagram:
                continue
            if len(datagram) > CRTP_MAX_DATAGRAM or datagram.startswith(RTPS_MAGIC):
                self.foreign += 1  # never the peer: its sender would get the link's answers
                continue
            with self._lock:
                silent = not self._responding
                self._records.append(CrtpRecord(now, datagram[0], bytes(datagram[1:]), silent))
                self._peer = peer
            try:
                self._handle(datagram[0], bytes(datagram[1:]), silent, now)
            except (struct.error, IndexError, KeyError, ValueError, OverflowError):
                self.malformed += 1  # the firmware drops what it cannot parse; so do we

    def _reply(self, port: int, channel: int, payload: bytes) -> None:
        with self._lock:
            peer = self._peer if self._responding else None
        if peer is None:
            return
        with contextlib.suppress(OSError):
            self._sock.sendto(bytes([crtp_header(port, channel)]) + payload, peer)

    # ------------------------------------------------------------------ protocol
    def _handle(self, header: int, data: bytes, silent: bool, now: float) -> None:
        port, channel = (header & 0xF0) >> 4, header & 0x03
        if port in (PORT_COMMANDER_GENERIC, PORT_COMMANDER, PORT_SETPOINT_HL):
            if not silent:
                self._command(port, channel, data, now)
            return
        if port == PORT_SUPERVISOR and not silent:
            if channel == 1 and data[:1] == bytes([SUPERVISOR_EMERGENCY_STOP]):
                self._emergency_stop(now)
            elif channel == 1 and data[:2] == bytes([SUPERVISOR_ARM_SYSTEM, 1]):
                with self._lock:
                    self._motor_event(now, "arm", "arm")
            return
        if port == PORT_LOCALIZATION and not silent:
            if channel == LOCALIZATION_GENERIC_CH and data[:1] == bytes(
                [LOCALIZATION_EMERGENCY_STOP]
            ):
                self._emergency_stop(now)
            return
        if silent:
            return
        if port == PORT_LINKCTRL:
            if channel == 0:
                self._reply(PORT_LINKCTRL, 0, data)  # echo (cflib latency ping)
            elif channel == 1:
                self._reply(PORT_LINKCTRL, 1, LINK_SOURCE_STRING + b"\x00")
        elif port == PORT_PLATFORM and channel == 1 and data[:1] == b"\x00":
            self._reply(PORT_PLATFORM, 1, bytes([0, self.protocol_version & 0xFF]))
        elif port == PORT_MEM and channel == 0 and data[:1] == b"\x01":
            self._reply(PORT_MEM, 0, b"\x01\x00")  # zero memories
        elif port == PORT_LOG:
            self._log_request(channel, data)
        elif port == PORT_PARAM:
            self._param_request(channel, data)

    def _toc_request(self, port: int, toc: list[_TocEntry], data: bytes) -> None:
        """Answer a TOC info/item request (v1: cmd 1/0, v2: cmd 3/2)."""
        if not data:
            return
        crc = zlib.crc32(repr([(e.group, e.name, e.type_id) for e in toc]).encode())
        cmd = data[0]
        if cmd == 3:
            self._reply(port, 0, struct.pack("<BHI", 3, len(toc), crc) + b"\x10\x80")
        elif cmd == 1:
            self._reply(port, 0, struct.pack("<BBI", 1, len(toc), crc) + b"\x10\x80")
        elif cmd in (2, 0):
            if cmd == 2:
                ident = struct.unpack("<H", data[1:3])[0]
                head = struct.pack("<BH", 2, ident)
            else:
                ident = data[1]
                head = struct.pack("<BB", 0, ident)
            if ident < len(toc):
                e = toc[ident]
                name = e.group.encode() + b"\x00" + e.name.encode() + b"\x00"
                self._reply(port, 0, head + bytes([e.type_id]) + name)

    def _log_request(self, channel: int, data: bytes) -> None:
        if channel == 0:
            self._toc_request(PORT_LOG, self._log_toc, data)
            return
        if channel != 1 or not data:
            return
        cmd = data[0]
        v2 = cmd in (6, 7)
        if cmd == 5:  # reset
            with self._lock:
                self._log_blocks.clear()
            self._reply(PORT_LOG, 1, bytes([5, 0, 0]))
        elif cmd in (0, 1, 6, 7):  # create / append (v1, v2)
            block_id = data[1]
            step = 3 if v2 else 2
            variables = []
            body = data[2:]
            for i in range(0, len(body) - step + 1, step):
                fetch = body[i] & 0x0F
                ident = struct.unpack("<H", body[i + 1 : i + 3])[0] if v2 else body[i + 1]
                variables.append((ident, fetch))
            with self._lock:
                if cmd in (0, 6):
                    self._log_blocks[block_id] = _LogBlock(block_id, variables)
                elif block_id in self._log_blocks:
                    self._log_blocks[block_id].variables.extend(variables)
            self._reply(PORT_LOG, 1, bytes([cmd, block_id, 0]))
        elif cmd in (2, 3, 4):  # delete / start / stop
            block_id = data[1]
            with self._lock:
                block = self._log_blocks.get(block_id)
                if block is not None and cmd == 3:
                    block.period_s = max(data[2], 1) * 0.010
                    block.running = True
                    block.next_due = time.monotonic()
                elif block is not None and cmd == 4:
                    block.running = False
                elif cmd == 2:
                    self._log_blocks.pop(block_id, None)
            status = 0 if block is not None else 2  # ENOENT
            self._reply(PORT_LOG, 1, bytes([cmd, block_id, status]))

    def _param_request(self, channel: int, data: bytes) -> None:
        v2 = self.protocol_version >= 4
        if channel == 0:
            self._toc_request(PORT_PARAM, self._param_toc, data)
            return
        if channel not in (1, 2) or not data:
            return
        ident = struct.unpack("<H", data[:2])[0] if v2 else data[0]
        if ident >= len(self._param_toc):
            return
        entry = self._param_toc[ident]
        id_bytes = data[:2] if v2 else data[:1]
        if channel == 2:
            value_bytes = data[len(id_bytes) :]
            entry.value = struct.unpack(entry.fmt, value_bytes[: struct.calcsize(entry.fmt)])[0]
            self._reply(PORT_PARAM, 2, id_bytes + struct.pack(entry.fmt, entry.value))
        else:
            status = b"\x00" if v2 else b""
            self._reply(PORT_PARAM, 1, id_bytes + status + struct.pack(entry.fmt, entry.value))

    # ------------------------------------------------------------------ drone model
    def _command(self, port: int, channel: int, data: bytes, now: float) -> None:
        self._step_model(now)
        with self._lock:
            if self.emergency_stopped:
                return
            if port == PORT_COMMANDER_GENERIC and channel == 0 and data:
                if data[0] == SETPOINT_STOP:
                    self._motors_off(now, "stop_setpoint")
                elif data[0] in (SETPOINT_VELOCITY_WORLD, SETPOINT_VELOCITY_WORLD_LEGACY):
                    vx, vy, vz, yaw_rate = struct.unpack("<ffff", data[1:17])
                    if data[0] == SETPOINT_VELOCITY_WORLD_LEGACY:
                        yaw_rate = -yaw_rate  # legacy firmware: yaw sign inverted
                    self._velocity = (vx, vy, vz, yaw_rate)
                    self._low_level_t = now
                    self._hl_ramp = None
                    self._motors_on(now, "velocity")
            elif port == PORT_COMMANDER_GENERIC and channel == 1 and data[:1] == b"\x00":
                self._low_level_t = None  # notify setpoint stop: high level takes over
                self._velocity = (0.0, 0.0, 0.0, 0.0)
            elif port == PORT_COMMANDER and len(data) >= 14:
                thrust = struct.unpack("<fffH", data[:14])[3]
                if thrust == 0:
                    self._motors_off(now, "zero_thrust")
            elif port == PORT_SETPOINT_HL and data and self._low_level_t is None:
                if data[0] in (HL_TAKEOFF_2, HL_LAND_2) and len(data) >= 15:
                    _, _, height, _, _, duration = struct.unpack("<BBff?f", data[:15])
                    z0 = self.position[2]
                    self._hl_ramp = (now, now + max(duration, 1e-3), z0, height)
                    self._motors_on(now, "takeoff" if data[0] == HL_TAKEOFF_2 else "land")
                elif data[0] == HL_STOP:
                    self._motors_off(now, "hl_stop")

    def _motor_event(self, now: float, kind: str, cause: str) -> None:
        """Record a motor change (caller holds the lock)."""
        event = MotorEvent(now, kind, cause, self.position[2], self.motors_on)
        self._motor_events.append(event)

    def _motors_on(self, now: float, cause: str) -> None:
        if not self.motors_on:
            self._motor_event(now, "on", cause)
        self.motors_on = True

    def _motors_off(self, now: float, cause: str) -> None:
        if self.motors_on:
            self._motor_event(now, "off", cause)
        self.motors_on = False
        self._velocity = (0.0, 0.0, 0.0, 0.0)
        self._low_level_t = None
        self._hl_ramp = None

    def _emergency_stop(self, now: float) -> None:
        with self._lock:
            self._motors_off(now, "emergency")
            self.emergency_stopped = True

    def _step_model(self, now: float) -> None:
        with self._lock:
            dt = max(now - self._last_step, 0.0)
            self._last_step = now
            if not self.motors_on:
                self.position[2] = 0.0  # off motors: on the floor
                return
            if self._low_level_t is not None:
                age = now - self._low_level_t
                if age > FIRMWARE_SHUTDOWN_TIMEOUT_S:
                    self._motors_off(
                        self._low_level_t + FIRMWARE_SHUTDOWN_TIMEOUT_S, "firmware_timeout"
                    )
                    self.position[2] = 0.0
                    return
                vx, vy, vz, yaw_rate = (
                    self._velocity if age <= FIRMWARE_STABILIZE_TIMEOUT_S else (0.0,) * 4
                )
                self.position[0] += vx * dt
                self.position[1] += vy * dt
                self.position[2] = max(self.position[2] + vz * dt, 0.0)
                self.yaw_deg += yaw_rate * dt
            elif self._hl_ramp is not None:
                t0, t1, z0, z1 = self._hl_ramp
                s = min(max((now - t0) / (t1 - t0), 0.0), 1.0)
                self.position[2] = z0 + s * (z1 - z0)

    def _log_value(self, ident: int) -> float:
        e = self._log_toc[ident]
        if e.group == "stateEstimate":
            return self.position["xyz".index(e.name)]
        if (e.group, e.name) == ("stabilizer", "yaw"):
            return (self.yaw_deg + 180.0) % 360.0 - 180.0
        if (e.group, e.name) == ("pm", "vbat"):
            return self.battery_v
        return 0.0

    def _next_log_due(self) -> float:
        with self._lock:
            dues = [b.next_due for b in self._log_blocks.values() if b.running]
        return min(dues) if dues else time.monotonic() + 0.02

    def _send_due_logs(self, now: float) -> None:
        packets: list[tuple[int, bytes]] = []
        with self._lock:
            if not self._responding or self._peer is None:
                return
            for block in self._log_blocks.values():
                if not block.running or now < block.next_due:
                    continue
                block.next_due = max(block.next_due + block.period_s, now)
                payload = b"".join(
                    _pack_log(fetch, self._log_value(ident))
                    for ident, fetch in block.variables
                    if ident < len(self._log_toc)
                )
                stamp_ms = int(now * 1000) & 0xFFFFFF
                head = bytes([block.block_id]) + stamp_ms.to_bytes(3, "little")
                packets.append((block.block_id, head + payload))
        for _, packet in packets:
            self._reply(PORT_LOG, 2, packet)


def _pack_log(type_id: int, value: float) -> bytes:
    fmt = LOG_TYPE_FORMAT[type_id]
    if fmt in ("<f", "<e"):
        return struct.pack(fmt, value)
    return struct.pack(fmt, int(round(value)))


def fake_swarm(n: int, **kwargs: object) -> list[FakeCrazyflie]:
    """Start ``n`` fakes on free loopback ports (close them with :func:`close_all`)."""
    return [FakeCrazyflie(**kwargs) for _ in range(n)]


def close_all(fakes: Iterable[FakeCrazyflie]) -> None:
    for fake in fakes:
        fake.close()
