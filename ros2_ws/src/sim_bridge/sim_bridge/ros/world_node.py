"""World node: runs :class:`sim_bridge.sim.Simulator` and speaks the swarm's topics.

Thin adapter (topics in :mod:`sim_bridge.topics`):

* timer at ``rates.sim_hz``: one simulator step per tick; a late tick catches up with wall
  time (at most ``MAX_CATCHUP`` steps), so the world falls behind real time only when the
  CPU is saturated (real-time factor and tick periods on ``/diagnostics``); on sim time one
  step per tick, no catch-up (see *Sim time* below);
* every ``1 / rates.control_hz``: ``/<robot>/pose``, ``/<robot>/resources`` and
  ``/<robot>/neighbors`` (poses within ``sensing_radius``) of the sim robots, ``/consumers``;
  ``/clock`` at ``clock_hz`` (on sim time: every step);
  ``/swarm/markers`` at ``markers_hz``; ``/swarm/events`` when a scripted event fires or a
  command is rejected;
* ``/<robot>/cmd_vel`` (TwistStamped, world frame) for sim robots, under the wire contract's
  freshness rule (:func:`sim_bridge.topics.command_fresh`): a stamp outside
  ``[now - CMD_TIMEOUT_S, now + CMD_CLOCK_SKEW_S]`` (or unstamped) is rejected on receipt
  and counted (``rejected_future`` / ``rejected_stale``), never executed; an accepted command
  moves the robot until its stamp or its receipt is ``CMD_TIMEOUT_S`` old, then the robot
  holds; NaN/inf or faster than ``CMD_REJECT_FACTOR * max_speed`` is rejected, counted
  (``rejected_commands``) and the robot holds still. A robot flown on commands that gets no
  fresh one for ``LAND_AFTER_S`` lands (:class:`sim_bridge.sim.Simulator`, the same watchdog
  as the bridges; ``watchdog_landings`` on ``/diagnostics``, a ``watchdog_land`` event). The
  ages are fed every tick on this node's clock, so when the world runs slower than real time
  the landing comes after ``LAND_AFTER_S`` on that clock, as on a bridge, whether sim time
  lags it or catches up with it (``Simulator.set_commands(clock_ages=True)``);
* ``/<robot>/{takeoff,land,emergency_stop}`` (Trigger) for sim robots; ``/<robot>/mode``
  (latched) of the sim robots, at the state publication after each change (the simulator's
  ``grounded`` | ``taking_off`` | ``flying`` | ``landing`` | ``failed``);
* robots with another backend (cflib / external) are not moved here: their poses come from
  their own ``/<robot>/pose`` (published by the bridge) and feed the sim robots' neighbours,
  the comm links and the consumers' demand bookkeeping (a real robot inside ``R_m`` covers or
  hands over its configured, virtual resources like a simulated one, as in the paper's
  hardware runs); the bridge publishes their resources and neighbours.
* ``/consumers`` carries the remaining demand of LGTC Sec. II (:mod:`sim_bridge.sim`):
  persistent types net of the supplies of the robots present inside ``R_m``, instantaneous
  types what is still missing; ``/<robot>/resources`` is always the robot's own supply.

* routing missions (a config with ``routing``; :mod:`sim_bridge.routing`): after every state
  publication ``/<robot>/view`` of the sim robots (``layout.data_offset`` = the world's PS
  step), ``/tasks`` and ``/swarm/ps_step``; ``/<robot>/dmar/move`` of every robot (sim or real)
  feeds :class:`sim_bridge.routing.Lockstep`, checked after every tick: in ``routing.timing:
  lockstep`` the step advances when every flying robot has reported its step-``t`` move and
  stands within ``routing.tolerance`` of the target cell's centre, and the views of step
  ``t + 1`` go out at once; in ``free`` timing the step stays 0 and moves are only counted.
  Rejected moves are counted (``rejected_moves`` on ``/diagnostics``). ``/swarm/markers`` adds
  the grid, obstacles and tasks (:func:`sim_bridge.ros.markers.routing_markers`).

Headers are stamped with the node clock; ``/clock`` carries the simulator time.

Sim time (parameter ``use_sim_time`` true, ``swarm up --sim-time``): the world is the clock
source. Every time it reads (:meth:`WorldNode._now_ns`: header stamps, the freshness rule of
``cmd_vel``, the command ages the watchdog lands on) is the simulator time it publishes on
``/clock``, so the stamps it sends and the stamps it accepts read the same clock as the other
nodes, whose ROS clocks follow ``/clock``; ``LAND_AFTER_S`` and ``CMD_TIMEOUT_S`` are then sim
seconds. Its step and diagnostics timers run on a steady clock (a timer on the node's ROS clock
would wait for a ``/clock`` that only the world itself makes). rclpy's ``TimeSource`` still
subscribes this node to ``/clock`` and moves its ROS clock (not driving that clock needs
rclpy's private ``Node._time_source``), but nothing here reads it: the world reads the
simulator directly, which is never behind its own publication. ``/clock`` goes out after
every step, after that step's state: a node's sim-time timer can only fire on a ``/clock``
message, so a coarser ``/clock`` would quantise every node's ticks to ``clock_hz``. A late tick
takes one step, as any other (no catch-up): the whole swarm's clock slows with the world, so
no node reads the world's delay as stale commands or missed ticks; the real-time factor on
``/diagnostics`` says how far sim time lags the wall.

The 20 Hz state (poses, neighbours, resources, ``/consumers``) is built once per publication
and published as CDR bytes of :mod:`sim_bridge.ros.wire` (one header and one pose table for
every message; message objects where the middleware's layout differs), and ``cmd_vel`` is
subscribed raw: no Python message objects per robot on the hot path.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseArray, PoseStamped, TwistStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, String, UInt64MultiArray
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sim_bridge import topics
from sim_bridge.config import force_sim, load_config
from sim_bridge.ros import qos, wire
from sim_bridge.ros.markers import routing_markers, swarm_markers
from sim_bridge.ros.params import SWARM_CONFIG, Param, Rule, config_error, declare_and_read
from sim_bridge.ros.routing_msgs import ps_step_msg, tasks_msg, view_msg
from sim_bridge.ros.sim_time import USE_SIM_TIME, wall_clock
from sim_bridge.ros.spin import spin_node
from sim_bridge.routing import Lockstep
from sim_bridge.sim import MODE_NAMES, Mode, Simulator

_AIRBORNE_Z = 0.1  # [m] a drone with an external pose above this is flying
MAX_CATCHUP = 5  # most simulator steps one late tick may take

PARAMETERS = (
    SWARM_CONFIG,
    Param("autostart", False, "take off every sim robot at start"),
    Param(
        "backend_override",
        "",
        "'sim': simulate every robot, whatever its backend ('': as configured)",
        Rule(lambda v: v in ("", "sim"), "'sim' or ''", "use sim or ''"),
    ),
)


def _yaw_to_quat(yaw: float) -> tuple[float, float]:
    return math.sin(yaw / 2.0), math.cos(yaw / 2.0)


class WorldNode(Node):
    """Simulated world of one swarm config (parameter ``config``)."""

    def __init__(self, node_name: str = "world", **kwargs):
        super().__init__(node_name, **kwargs)
        values = declare_and_read(self, PARAMETERS, config_error)
        # declared by rclpy's TimeSource; read once: the world is the clock source of a run
        self.sim_time = bool(self.get_parameter(USE_SIM_TIME).value)
        self.autostart = bool(values["autostart"])
        self.cfg = load_config(values["config"])
        if values["backend_override"] == "sim":
            self.cfg = force_sim(self.cfg)
        self.sim = Simulator(self.cfg)
        cfg, sim = self.cfg, self.sim
        self.names = cfg.robot_names
        self.sim_idx = np.nonzero(~sim.external)[0]
        self.ext_idx = np.nonzero(sim.external)[0]
        self.max_speed = sim.max_speed.tolist()

        # command buffers (world-frame velocity, stamp [ns] on the world's clock, _now_ns)
        self.cmd = np.zeros((sim.n, 3))
        self.cmd_stamp_ns = np.zeros(sim.n, dtype=np.int64)
        self.cmd_rx_ns = np.zeros(sim.n, dtype=np.int64)
        self.rejected = np.zeros(sim.n, dtype=np.int64)
        self.rejected_future = np.zeros(sim.n, dtype=np.int64)
        self.rejected_stale = np.zeros(sim.n, dtype=np.int64)
        self.ext_seen = np.zeros(sim.n, dtype=bool)

        # The tick, the services and external poses change the simulator: one mutually
        # exclusive group serialises them. Commands only fill per-robot buffer rows, so in a
        # multi-threaded executor they run beside the tick instead of delaying it.
        self.sim_group = MutuallyExclusiveCallbackGroup()
        self.cmd_group = ReentrantCallbackGroup()
        self.pose_pub, self.res_pub, self.nbr_pub, self.mode_pub = {}, {}, {}, {}
        self.mode_sent = np.full(sim.n, -1, dtype=np.int64)  # last /<robot>/mode published
        self.pose_msg, self.res_msg = {}, {}
        for i, name in enumerate(self.names):
            if sim.external[i]:
                self.create_subscription(
                    PoseStamped,
                    topics.robot_topic(name, topics.POSE),
                    lambda m, i=i: self._on_external_pose(i, m),
                    qos.STATE,
                    callback_group=self.sim_group,
                )
            else:  # the bridge publishes an external robot's resources and neighbours
                self._setup_sim_robot(i, name)
        self.consumers_pub = self.create_publisher(Float64MultiArray, topics.CONSUMERS, qos.STATE)
        self.clock_pub = self.create_publisher(Clock, topics.CLOCK, qos.QUEUE)
        self.markers_pub = self.create_publisher(MarkerArray, topics.MARKERS, qos.MARKERS)
        self.events_pub = self.create_publisher(String, topics.EVENTS, qos.QUEUE)

        self.lockstep = None
        if cfg.routing is not None:
            self._setup_routing()
        self._start()

    def _setup_sim_robot(self, i: int, name: str) -> None:
        """Topics and services of sim robot ``i``: pose, resources, neighbours out;
        ``cmd_vel`` in; ``takeoff`` / ``land`` / ``emergency_stop``."""
        sim = self.sim
        self.pose_pub[i] = self.create_publisher(
            PoseStamped, topics.robot_topic(name, topics.POSE), qos.STATE
        )
        msg = PoseStamped()
        msg.header.frame_id = topics.WORLD_FRAME
        self.pose_msg[i] = msg
        self.create_subscription(
            TwistStamped,
            topics.robot_topic(name, topics.CMD_VEL),
            lambda m, i=i: self._on_cmd(i, m),
            qos.STATE,
            callback_group=self.cmd_group,
            raw=True,  # decoded by sim_bridge.ros.wire: no message objects per command
        )
        for srv, fn in (
            (topics.TAKEOFF, sim.takeoff),
            (topics.LAND, sim.land),
            (topics.EMERGENCY_STOP, sim.emergency_stop),
        ):
            self.create_service(
                Trigger,
                topics.robot_topic(name, srv),
                lambda req, resp, i=i, fn=fn, srv=srv: self._on_trigger(i, fn, srv, resp),
                callback_group=self.sim_group,
            )
        self.res_pub[i] = self.create_publisher(
            Float64MultiArray, topics.robot_topic(name, topics.RESOURCES), qos.STATE
        )
        res = Float64MultiArray()
        res.layout.dim = [
            MultiArrayDimension(label="resources", size=sim.r, stride=sim.r),
        ]
        self.res_msg[i] = res
        self.nbr_pub[i] = self.create_publisher(
            PoseArray, topics.robot_topic(name, topics.NEIGHBORS), qos.STATE
        )
        self.mode_pub[i] = self.create_publisher(
            String, topics.robot_topic(name, topics.MODE), qos.LATCHED
        )

    def _start(self) -> None:
        """Publication rates, ``autostart`` take-off, the diagnostics and simulation timers."""
        rates, sim = self.cfg.rates, self.sim
        self.publish_every = max(1, round(rates.sim_hz / rates.control_hz))
        self.clock_every = max(1, round(rates.sim_hz / rates.clock_hz))
        self.markers_every = max(1, round(rates.sim_hz / rates.markers_hz))
        self.tick_wall: list[float] = []
        self._t0_wall: float | None = None
        self.res_prefix = wire.float64_multi_array_prefix([("resources", sim.r, sim.r)])
        if self.autostart:
            for i in self.sim_idx:
                sim.takeoff(int(i))
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, qos.DIAGNOSTICS)
        wall = wall_clock(self)  # on sim time a steady clock: the world makes the sim time
        self.create_timer(1.0, self._publish_diagnostics, callback_group=self.sim_group, clock=wall)
        self.timer = self.create_timer(
            1.0 / rates.sim_hz, self._tick, callback_group=self.sim_group, clock=wall
        )
        self.get_logger().info(
            f"world: {sim.n} robots ({len(self.sim_idx)} simulated), {sim.m} consumers, "
            f"{rates.sim_hz:g} Hz sim, publishing at {rates.sim_hz / self.publish_every:g} Hz"
            + (", sim time: /clock every step" if self.sim_time else "")
        )

    def _setup_routing(self) -> None:
        """Publishers of views, ``/tasks``, ``/swarm/ps_step``; every robot's ``dmar/move``."""
        rc, sim = self.cfg.routing, self.sim
        self.lockstep = Lockstep(rc.grid, rc.obstacles, sim.n, rc.timing, rc.tolerance)
        self.view_pub = {
            i: self.create_publisher(
                Float64MultiArray, topics.robot_topic(self.names[i], topics.VIEW), qos.STATE
            )
            for i in self.sim_idx.tolist()
        }
        self.tasks_pub = self.create_publisher(Float64MultiArray, topics.TASKS, qos.STATE)
        self.ps_pub = self.create_publisher(UInt64MultiArray, topics.PS_STEP, qos.STATE)
        for i, name in enumerate(self.names):
            self.create_subscription(
                Float64MultiArray,
                topics.robot_topic(name, topics.DMAR_MOVE),
                lambda m, i=i: self._on_move(i, m),
                qos.QUEUE,
                callback_group=self.sim_group,
            )

    # ------------------------------------------------------------------ inputs

    def _on_move(self, i: int, msg: Float64MultiArray) -> None:
        reason = self.lockstep.report(i, list(msg.data))
        count = int(self.lockstep.rejected[i])
        if reason is not None and count & (count - 1) == 0:  # log at 1, 2, 4, 8, ...
            self.get_logger().warning(
                f"{self.names[i]}: dmar/move rejected: {reason}; {count} so far"
            )

    def _on_cmd(self, i: int, msg: bytes | TwistStamped) -> None:
        """Robot ``i``'s ``cmd_vel``: the subscription's raw bytes, or a message."""
        if isinstance(msg, bytes):
            sec, nanosec, vx, vy, vz = wire.decode_twist_stamped(msg)
        else:
            st, v = msg.header.stamp, msg.twist.linear
            sec, nanosec, vx, vy, vz = st.sec, st.nanosec, v.x, v.y, v.z
        now_ns = self._now_ns()
        stamp_ns = sec * 1_000_000_000 + nanosec
        if not topics.stamp_ok(stamp_ns * 1e-9, now_ns * 1e-9):
            # Not fresh: never executed. The last accepted command keeps its own deadline.
            counts = self.rejected_future if stamp_ns > now_ns else self.rejected_stale
            counts[i] += 1
            if counts[i] & (counts[i] - 1) == 0:  # log at 1, 2, 4, 8, ...
                kind = "future-stamped" if stamp_ns > now_ns else "stale or unstamped"
                self.get_logger().warning(
                    f"{self.names[i]}: {kind} command rejected (stamp {stamp_ns * 1e-9:.3f} s, "
                    f"now {now_ns * 1e-9:.3f} s), {counts[i]} so far"
                )
            return
        if not topics.command_valid(vx, vy, vz, self.max_speed[i]):
            self.rejected[i] += 1
            # hold at once; garbage is no command, so the last good one's deadline stays and
            # a stream of garbage ends in the watchdog's landing like silence does
            self.cmd[i] = 0.0
            if self.rejected[i] & (self.rejected[i] - 1) == 0:  # log at 1, 2, 4, 8, ...
                text = f"{self.names[i]}: rejected command ({vx}, {vy}, {vz})"
                self.get_logger().warning(f"{text}, {self.rejected[i]} so far")
                self._event(
                    {
                        "type": "rejected_command",
                        "robot": self.names[i],
                        "count": int(self.rejected[i]),
                    }
                )
            return
        self.cmd[i, 0], self.cmd[i, 1], self.cmd[i, 2] = vx, vy, vz
        self.cmd_stamp_ns[i] = stamp_ns
        self.cmd_rx_ns[i] = now_ns

    def _on_external_pose(self, i: int, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
        pos = (p.x, p.y, p.z)
        if not all(map(math.isfinite, pos)):
            return
        airborne = p.z > _AIRBORNE_Z if self.sim.is_drone[i] else True
        self.sim.set_external_pose(i, pos, yaw, airborne)
        self.ext_seen[i] = True

    def _on_trigger(self, i: int, fn, srv: str, resp: Trigger.Response) -> Trigger.Response:
        ok, message = fn(i)
        resp.success, resp.message = bool(ok), message
        self._event({"type": srv, "robot": self.names[i], "ok": bool(ok), "message": message})
        return resp

    def _event(self, record: dict) -> None:
        self.events_pub.publish(String(data=json.dumps({"t": self.sim.t, **record})))

    # ------------------------------------------------------------------ clock

    def _now_ns(self) -> int:
        """The world's time [ns]: the node clock, or on sim time the simulator's time (what
        ``/clock`` carries; stamps, freshness and command ages all read this)."""
        if self.sim_time:
            return round(self.sim.t * 1e9)
        return self.get_clock().now().nanoseconds

    def _sim_stamp(self) -> TimeMsg:
        """The simulator time as a message time (``/clock``)."""
        sec, nanosec = divmod(round(self.sim.t * 1e9), 1_000_000_000)
        return TimeMsg(sec=sec, nanosec=nanosec)

    def _stamp(self) -> TimeMsg:
        """A header stamp: the node clock, or on sim time the simulator time."""
        return self._sim_stamp() if self.sim_time else self.get_clock().now().to_msg()

    # ------------------------------------------------------------------ tick

    def _tick(self) -> None:
        now_ns = self._now_ns()
        wall = time.perf_counter()
        if self._t0_wall is None:
            self._t0_wall = wall
        self.tick_wall.append(wall)
        if len(self.tick_wall) > 20000:
            del self.tick_wall[:10000]
        sim = self.sim
        # Real-time pacing: a late tick catches up (at most MAX_CATCHUP steps), so sim time
        # follows wall time under jitter and falls behind only when the CPU is saturated. On
        # sim time one step: the swarm's clock slows with the world instead.
        behind = int((wall - self._t0_wall) / sim.dt) + 1 - sim.steps
        n_steps = 1 if self.sim_time else min(max(behind, 1), MAX_CATCHUP)
        # Age under the freshness rule: the older of stamp and receipt (a stamp up to
        # CMD_CLOCK_SKEW_S in the future counts from its receipt).
        ages = (now_ns - np.minimum(self.cmd_stamp_ns, self.cmd_rx_ns)) * 1e-9
        ages[self.cmd_stamp_ns == 0] = 1e9  # never commanded: hold
        ages[~np.isfinite(ages)] = 1e9
        # The sub-steps below catch up with wall time: the first one stands for the wall time
        # (n_steps - 1) steps ago, so the ages at it are that much smaller (else a stalled tick
        # would count its stall twice: once in the ages, once in the sim time caught up).
        sim.set_commands(self.cmd, ages - (n_steps - 1) * sim.dt, clock_ages=True)
        k0 = sim.steps
        for _ in range(n_steps):
            for record in sim.step():
                self._event(record)
        k1 = sim.steps
        stamp = self._stamp()
        advanced = self.lockstep is not None and self.lockstep.update(
            sim.pos[:, :2], self._present()
        )
        if k1 // self.publish_every != k0 // self.publish_every:
            self._publish_state(stamp)
        elif advanced:  # the views of step t + 1 go out at once
            self._publish_routing()
        if self.sim_time or k1 // self.clock_every != k0 // self.clock_every:
            self.clock_pub.publish(Clock(clock=self._sim_stamp()))
        if (
            k1 // self.markers_every != k0 // self.markers_every
            and self.markers_pub.get_subscription_count() > 0
        ):
            self.markers_pub.publish(self.markers(stamp))

    def _publish_state(self, stamp) -> None:
        """Poses, resources, neighbours of the sim robots, ``/consumers`` (and the routing
        topics): as bytes of :mod:`sim_bridge.ros.wire`, built once per tick, where the
        middleware's layout is confirmed (``wire.RAW_PUBLISH_OK``), else as messages."""
        if wire.RAW_PUBLISH_OK:
            self._publish_state_raw(stamp)
        else:
            self._publish_state_msgs(stamp)
        self._publish_modes()
        if self.lockstep is not None:
            self._publish_routing()

    def _publish_modes(self) -> None:
        """``/<robot>/mode`` (latched) of the sim robots whose mode changed since the last."""
        mode = self.sim.mode
        for i in np.nonzero(mode != self.mode_sent)[0].tolist():
            if i in self.mode_pub:
                self.mode_pub[i].publish(String(data=MODE_NAMES[int(mode[i])]))
        self.mode_sent = mode.astype(np.int64, copy=True)

    def _pose_rows(self) -> np.ndarray:
        """``(N, 7)`` every robot's ``(x, y, z, qx, qy, qz, qw)`` as the messages carry it."""
        sim = self.sim
        rows = np.zeros((sim.n, 7))
        rows[:, :3] = sim.pos
        rows[:, 5:] = [_yaw_to_quat(y) for y in sim.yaw.tolist()]
        return rows

    def _publish_state_raw(self, stamp) -> None:
        """:meth:`_publish_state` as bytes: one header, one pose table for every message;
        the same content as :meth:`_publish_state_msgs`, bit for bit (tests)."""
        sim = self.sim
        head = wire.header_prefix(stamp.sec, stamp.nanosec, topics.WORLD_FRAME)
        rows = self._pose_rows().astype("<f8", copy=False)  # CDR little endian
        blob = rows.tobytes()
        pose_head = wire.float64_aligned(head)
        for i in self.sim_idx.tolist():
            self.pose_pub[i].publish(pose_head + blob[56 * i : 56 * i + 56])
        supply = np.ascontiguousarray(sim.supply, dtype=np.float64)
        for i in self.sim_idx.tolist():
            self.res_pub[i].publish(
                wire.encode_float64_multi_array(supply[i], prefix=self.res_prefix)
            )
        known = self._known()
        near = sim.within(self.cfg.sensing_radius) & known[None, :] & known[:, None]
        counts = near.sum(axis=1).tolist()
        for i in self.sim_idx.tolist():
            self.nbr_pub[i].publish(wire.pose_array_bytes(head, rows[near[i]].tobytes(), counts[i]))
        table, dims = self._consumer_table()
        self.consumers_pub.publish(wire.encode_float64_multi_array(table.reshape(-1), dims))

    def _publish_state_msgs(self, stamp) -> None:
        """:meth:`_publish_state` as message objects (a middleware of another layout)."""
        sim = self.sim
        pos, yaw = sim.pos, sim.yaw
        known = ~sim.external | self.ext_seen
        for i in self.sim_idx.tolist():
            msg = self.pose_msg[i]
            msg.header.stamp = stamp
            p = msg.pose.position
            p.x, p.y, p.z = float(pos[i, 0]), float(pos[i, 1]), float(pos[i, 2])
            qz, qw = _yaw_to_quat(float(yaw[i]))
            msg.pose.orientation.z, msg.pose.orientation.w = qz, qw
            self.pose_pub[i].publish(msg)
        supply = sim.supply.tolist()
        for i in self.sim_idx.tolist():
            res = self.res_msg[i]
            res.data = supply[i]
            self.res_pub[i].publish(res)
        near = sim.within(self.cfg.sensing_radius) & known[None, :] & known[:, None]
        poses = []
        for j in range(sim.n):
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (
                float(pos[j, 0]),
                float(pos[j, 1]),
                float(pos[j, 2]),
            )
            pose.orientation.z, pose.orientation.w = _yaw_to_quat(float(yaw[j]))
            poses.append(pose)
        for i in self.sim_idx.tolist():
            arr = PoseArray()
            arr.header.frame_id = topics.WORLD_FRAME
            arr.header.stamp = stamp
            arr.poses = [poses[j] for j in np.nonzero(near[i])[0].tolist()]
            self.nbr_pub[i].publish(arr)
        self.consumers_pub.publish(self.consumers_msg())

    def _known(self) -> np.ndarray:
        """``(N,)`` True where the robot's pose is known (sim, or an external pose received)."""
        return ~self.sim.external | self.ext_seen

    def _present(self) -> np.ndarray:
        """``(N,)`` robots taking part in the lockstep: flying / driving or taking off (a robot
        climbing to its take-off height already holds the step, so the first robot up does
        not run the steps alone while the others climb), pose known."""
        mode = self.sim.mode
        return ((mode == Mode.FLYING) | (mode == Mode.TAKING_OFF)) & self._known()

    def _publish_routing(self) -> None:
        """Views of the sim robots, ``/tasks`` and ``/swarm/ps_step`` (topics, routing)."""
        sim, step = self.sim, self.lockstep.step
        known = self._known()
        for i, pub in self.view_pub.items():
            pub.publish(view_msg(sim.view(i, known), step))
        self.tasks_pub.publish(tasks_msg(sim.tasks()))
        self.ps_pub.publish(ps_step_msg(step, self.lockstep.moves_done))

    def _consumer_table(self) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
        """``(M, 4 + r)`` rows ``[x, y, radius, active, remaining_demand...]`` and their
        layout ``(label, size, stride)`` (:mod:`sim_bridge.topics`)."""
        sim = self.sim
        cols = len(topics.CONSUMER_FIXED_FIELDS) + sim.r
        table = np.zeros((sim.m, cols))
        table[:, 0:2] = sim.consumer_pos
        table[:, 2] = sim.consumer_radius
        table[:, 3] = sim.consumer_active
        table[:, 4:] = sim.demand
        return table, [("consumers", sim.m, sim.m * cols), ("fields", cols, cols)]

    def consumers_msg(self) -> Float64MultiArray:
        """``/consumers`` layout of :mod:`sim_bridge.topics`: rows ``[x, y, radius, active,
        remaining_demand...]``."""
        table, dims = self._consumer_table()
        msg = Float64MultiArray()
        msg.layout.dim = [MultiArrayDimension(label=a, size=b, stride=c) for a, b, c in dims]
        msg.data = table.reshape(-1).tolist()
        return msg

    def markers(self, stamp=None) -> MarkerArray:
        """The world's marker layers (see :mod:`sim_bridge.ros.markers`)."""
        sim, cfg = self.sim, self.cfg
        pos = sim.pos.copy()
        pos[sim.external & ~self.ext_seen] = np.nan
        out = self._swarm_layers(pos, stamp)
        if cfg.routing is not None:
            out.markers.extend(
                routing_markers(
                    grid=cfg.routing.grid,
                    obstacles=sim.obstacles,
                    task_cells=sim.task_cells,
                    task_visited=sim.task_visited,
                    stamp=stamp,
                ).markers
            )
        return out

    def _swarm_layers(self, pos: np.ndarray, stamp) -> MarkerArray:
        sim, cfg = self.sim, self.cfg
        return swarm_markers(
            names=self.names,
            positions=pos,
            modes=sim.mode,
            body_radius=sim.radius,
            safety_distance=cfg.safety.distance,
            consumer_names=[c.name for c in cfg.consumers],
            consumer_positions=sim.consumer_pos,
            consumer_radius=sim.consumer_radius,
            remaining=sim.demand,
            initial_demand=sim.initial_demand,
            resource_types=cfg.resource_types,
            comm_radius=cfg.comm_radius,
            stamp=stamp,
        )

    def tick_stats(self) -> dict[str, float]:
        """Real-time factor (sim time / wall time since the first tick, 1.0 = real time) and
        the p50 / p99 period between timer ticks [ms] over the last ticks."""
        if self._t0_wall is None or len(self.tick_wall) < 3:
            nan = float("nan")
            return {"rtf": nan, "tick_p50_ms": nan, "tick_p99_ms": nan}
        wall = time.perf_counter() - self._t0_wall
        periods = np.diff(np.asarray(self.tick_wall)) * 1e3
        return {
            "rtf": self.sim.t / max(wall, 1e-9),
            "tick_p50_ms": float(np.percentile(periods, 50)),
            "tick_p99_ms": float(np.percentile(periods, 99)),
        }

    def _publish_diagnostics(self) -> None:
        stats = self.tick_stats()
        modes = {}
        for name in self.sim.mode_names():
            modes[name] = modes.get(name, 0) + 1
        rejected_any = bool(
            self.rejected.any() or self.rejected_future.any() or self.rejected_stale.any()
        )
        values = {
            "sim_t": f"{self.sim.t:.3f}",
            "rtf": f"{stats['rtf']:.3f}",
            "tick_p50_ms": f"{stats['tick_p50_ms']:.2f}",
            "tick_p99_ms": f"{stats['tick_p99_ms']:.2f}",
            "rejected_commands": str(int(self.rejected.sum())),
            "rejected_future": str(int(self.rejected_future.sum())),
            "rejected_stale": str(int(self.rejected_stale.sum())),
            "watchdog_landings": str(int(self.sim.watchdog_landings.sum())),
            "modes": json.dumps(modes),
        }
        if self.lockstep is not None:
            values["ps_step"] = str(self.lockstep.step)
            values["moves_done"] = str(self.lockstep.moves_done)
            values["rejected_moves"] = str(int(self.lockstep.rejected.sum()))
            values["blocked_steps"] = str(int(self.sim.blocked.sum()))
            values["tasks_visited"] = (
                f"{int(self.sim.task_visited.sum())}/{len(self.sim.task_visited)}"
            )
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK if not rejected_any else DiagnosticStatus.WARN,
            name="sim_bridge: world",
            message="running" if not rejected_any else "rejected commands",
            hardware_id="sim",
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self._stamp()
        self.diag_pub.publish(msg)

    def mode_of(self, robot: str) -> str:
        """Mode of ``robot`` as text (for tests and tools)."""
        return Mode(self.sim.mode[self.cfg.robot_index(robot)]).name.lower()


def main(args=None) -> None:
    """``world_node --ros-args -p config:=swarm.yaml``."""
    spin_node(WorldNode, "world_node", args)


if __name__ == "__main__":
    main()
