"""Per-robot LGTC policy node (namespace ``/<robot>``): a thin adapter around
:class:`lgtc_policy.agent.PolicyAgent`.

Inputs (topics of :mod:`sim_bridge.topics`): ``/<robot>/pose``, ``/<robot>/resources``,
``/consumers`` and ``/<robot>/comm/in`` (neighbours' LGTC messages, delivered by the comm
relay only from robots within ``C``, one bundle per relay flush), subscribed raw and decoded by
:mod:`sim_bridge.ros.wire` (no message objects per pose or bundle); ``/<robot>/cmd_vel`` is read
only to draw the filtered velocity, and only while ``/swarm/policy_markers`` has a subscriber.
Outputs: ``/<robot>/cmd_vel_nominal`` (TwistStamped, world frame) and ``/<robot>/comm/out``
(``[sender_index, stamp_s, payload...]``) at ``rate_hz``, as CDR bytes of the same codec (message
objects where the middleware's layout differs); diagnostics ``lgtc_policy: <robot>``
on ``/diagnostics`` (tick period, compute time, ticks on time, cluster id, neighbours, and the
counts ``stale_pose_ticks``, ``nonfinite_outputs`` and ``ticks_missed``: periods a late tick
skipped, also logged, never silent; ``batch_size``: robots in the last forward; periods are
read on the clock that drives the tick timer: sim time with ``use_sim_time``);
markers on ``/swarm/policy_markers`` (cluster colour = attended consumer, nominal vs filtered
velocity arrows).

Inactive robots (the env's inactive agents: zero command, no message, cluster state reset): a
drone below half its take-off height, and any robot whose owner's ``/<robot>/mode`` says it
left service after having been in it (:class:`sim_bridge.topics.ModeWatch`): the one signal
of a disabled or failed ground robot, whose pose looks the same.

Parameters: ``robot`` (name in the config), ``config`` (swarm YAML), ``checkpoint`` (``""`` =
the config's ``policy.checkpoint``), ``rate_hz`` (20), ``neighbour_timeout_s`` (0.5),
``markers_hz`` (5), ``diagnostics_period_s`` (1), ``pose_timeout_s`` (0.5), ``batch`` (true:
tick together with the other policy nodes of this process in one stacked forward,
:mod:`lgtc_policy.ros.batcher`; false: the node's own timer). A missing,
corrupted or mismatched checkpoint fails at start-up with one message naming the file and the
fix.

Safety (the failure ladder of :mod:`sim_bridge.topics`): the node commands only on a pose
received within ``pose_timeout_s``, on inputs the policy accepts (``PolicyAgent.observe``:
finite, within range, the config's shapes) and only a finite velocity; otherwise it sends
nothing (counted as ``stale_pose_ticks``, ``input_errors`` or ``nonfinite_outputs``,
diagnostics ERROR), so the CBF filter goes silent and the world or bridge holds, then lands
the robot, instead of flying on a frozen pose, bad inputs or a broken network. A bad input
that passes within ``CMD_TIMEOUT_S`` costs nothing: the next good tick commands again.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from sim_bridge import topics
from sim_bridge.config import ConfigError, load_config
from sim_bridge.ros import qos as named_qos
from sim_bridge.ros import wire
from sim_bridge.ros.markers import arrow_markers, cluster_markers
from sim_bridge.ros.params import Param, at_least, declare_and_read, not_empty, positive
from sim_bridge.ros.sim_time import loop_time, wall_clock
from sim_bridge.ros.spin import spin_node
from std_msgs.msg import Float64MultiArray, String
from visualization_msgs.msg import MarkerArray

from lgtc_policy.agent import MissionError, PolicyAgent, RobotSpec, load_policy, replace_checkpoint
from lgtc_policy.ros.batcher import TickBatcher
from lgtc_policy.ros.tick_stats import TickStats

#: The node's parameters (``ros2 param describe`` shows each description and rule).
PARAMETERS = (
    Param(
        "robot",
        "",
        "this robot's name in the swarm config",
        not_empty("pass -p robot:=<name in the config>"),
    ),
    Param("config", "", "swarm YAML file", not_empty("pass -p config:=path/to/swarm.yaml")),
    Param(
        "checkpoint",
        "",
        "policy checkpoint overriding policy.checkpoint of the config ('' = the config's)",
    ),
    Param("rate_hz", 20.0, "policy tick rate [Hz]", positive("20 Hz in the paper")),
    Param(
        "neighbour_timeout_s",
        0.5,
        "a neighbour's message older than this is dropped [s]",
        positive("e.g. 0.5"),
    ),
    Param(
        "markers_hz",
        5.0,
        "cluster marker rate [Hz], 0 = off",
        at_least(0.0, "e.g. 5, or 0 for none"),
    ),
    Param("diagnostics_period_s", 1.0, "period of /diagnostics [s]", positive("e.g. 1")),
    Param(
        "batch",
        True,
        "tick together with the other policy nodes of this process (one batched forward)",
    ),
    Param("pose_timeout_s", 0.5, "no command on a pose older than this [s]", positive("e.g. 0.5")),
)


#: ``comm/out``'s layout: none (one flat ``[sender_index, stamp_s, payload...]``)
_NO_LAYOUT = wire.float64_multi_array_prefix(())


def _param_error(name: str, problem: str, fix: str) -> MissionError:
    return MissionError(f"parameter {name}: {problem} (fix: {fix})")


class PolicyNode(Node):
    """The decentralized LGTC-IPPO policy of one robot at ``rate_hz``."""

    def __init__(self, node_name: str = "policy", **kwargs):
        super().__init__(node_name, **kwargs)
        p = declare_and_read(self, PARAMETERS, _param_error)
        robot, path, checkpoint = p["robot"], p["config"], p["checkpoint"]
        rate, timeout = float(p["rate_hz"]), float(p["neighbour_timeout_s"])
        markers_hz, diag_period = float(p["markers_hz"]), float(p["diagnostics_period_s"])
        batch = bool(p["batch"])
        self.pose_timeout = float(p["pose_timeout_s"])
        cfg = load_config(path)
        if checkpoint:
            cfg = replace_checkpoint(cfg, checkpoint)
        if cfg.policy.checkpoint is None:
            raise MissionError(
                f"{path}: policy.checkpoint is null; set it (e.g. "
                '"lgtc_policy:checkpoints/lgtc_ippo_n10_m4.pt") or pass -p checkpoint:=FILE'
            )
        try:
            ckpt = cfg.resolve_checkpoint()
        except FileNotFoundError as exc:
            raise MissionError(f"{exc}; train one with `lgtc train` or fix the path") from None
        self.spec = RobotSpec.from_config(cfg, robot)
        self.policy_key = str(ckpt.resolve())
        self.agent = PolicyAgent(
            load_policy(ckpt, len(cfg.resource_types)), self.spec, neighbour_timeout_s=timeout
        )
        self._warm_up(cfg)
        self.period = 1.0 / rate
        self.stats = TickStats(self.period)
        self.pose: np.ndarray | None = None
        self.pose_t: float | None = None
        self.pose_rx = -math.inf
        self.stale_pose_ticks = 0
        self.mode = topics.ModeWatch()  # out of service by its owner's /<robot>/mode
        self.nonfinite_outputs = 0
        self.vel = np.zeros(3)
        self.supply: np.ndarray | None = None
        self.consumers: np.ndarray | None = None
        self.nominal = np.zeros(3)
        self.filtered = np.zeros(3)
        self.input_errors = 0
        self.bad_input_at = -math.inf  # node clock [s] of the last tick with a bad input

        qos, comm_qos = named_qos.STATE, named_qos.QUEUE
        # raw: decoded by sim_bridge.ros.wire, no message objects per pose or bundle
        for kind, topic, callback, profile in (
            (PoseStamped, topics.POSE, self._on_pose, qos),
            (Float64MultiArray, topics.RESOURCES, self._on_resources, qos),
            (Float64MultiArray, topics.CONSUMERS, self._on_consumers, qos),
            (Float64MultiArray, topics.COMM_IN, self._on_comm, comm_qos),
        ):
            self.create_subscription(kind, topic, callback, profile, raw=True)
        self.create_subscription(String, topics.MODE, self._on_mode, named_qos.LATCHED)
        self._qos = qos
        self._filtered_sub = None  # cmd_vel, only while someone draws the markers
        self.cmd_pub = self.create_publisher(TwistStamped, topics.CMD_VEL_NOMINAL, qos)
        self.comm_pub = self.create_publisher(Float64MultiArray, topics.COMM_OUT, comm_qos)
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.marker_pub = self.create_publisher(MarkerArray, topics.POLICY_MARKERS, 1)
        self.batch_size = 0
        self.batcher = None
        if batch:
            self.batcher = TickBatcher.join(self, self.period)
        else:
            self.create_timer(self.period, self._tick)
        # status for people: on wall time always (sim_time.wall_clock), never in bursts
        wall = wall_clock(self)
        self.create_timer(diag_period, self._publish_diagnostics, clock=wall)
        if markers_hz > 0:
            self.create_timer(1.0 / markers_hz, self._publish_markers, clock=wall)
        self.get_logger().info(
            f"{robot}: LGTC policy {ckpt.name} at {rate:g} Hz, r={len(cfg.resource_types)}, "
            f"M={self.spec.n_consumers}, neighbour timeout {timeout:g} s"
        )

    def _warm_up(self, cfg) -> None:
        """One throw-away step on the configured start state, so the first real tick does not
        pay for lazy imports and layout caches (the state is reset afterwards)."""
        consumers = np.zeros((len(cfg.consumers), 4 + len(cfg.resource_types)))
        consumers[:, :2] = [c.position for c in cfg.consumers]
        consumers[:, 2] = [c.radius for c in cfg.consumers]
        consumers[:, 3] = 1.0
        consumers[:, 4:] = cfg.demand_matrix()
        robot = cfg.robots[self.spec.index]
        supply = cfg.supply_matrix()[self.spec.index]
        self.agent.step(self.agent.observe(robot.pose[:3], np.zeros(3), supply, consumers), 0.0)
        self.agent.idle()

    # ------------------------------------------------------------------ inputs

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_pose(self, data: bytes) -> None:
        now = self._now()
        if now <= 0.0:
            # on sim time before this node's first /clock (a node started after the world):
            # no receipt time to age the pose by; the next pose, after /clock, counts
            return
        sec, nanosec, x, y, z = wire.decode_stamped_pose(data)[:5]
        pos = np.array([x, y, z])
        t = sec + nanosec * 1e-9
        if self.pose is not None and self.pose_t is not None and t > self.pose_t:
            self.vel = (pos - self.pose) / (t - self.pose_t)
        self.pose, self.pose_t = pos, t
        self.pose_rx = now

    def _on_resources(self, data: bytes) -> None:
        self.supply = wire.decode_float64_multi_array(data)[2].copy()

    def _on_consumers(self, data: bytes) -> None:
        cols = 4 + len(self.spec.resource_types)
        values = wire.decode_float64_multi_array(data)[2].copy()
        self.consumers = values.reshape(-1, cols) if values.size % cols == 0 else None

    def _on_comm(self, data: bytes) -> None:
        dims, _, values = wire.decode_float64_multi_array(data)
        row_len = dims[1][1] if len(dims) == 2 else None  # the relay's bundle layout
        self.agent.neighbours.receive(values, self._now(), row_len)

    def _on_filtered(self, msg: TwistStamped) -> None:
        v = msg.twist.linear
        self.filtered = np.array([v.x, v.y, v.z])

    # ------------------------------------------------------------------ tick

    def _tick(self) -> None:
        """The node's own timer (``batch:=false``): one robot, one forward."""
        start = time.perf_counter()
        at = loop_time(self, start)  # the timer's clock: sim time on sim time
        work = self.prepare_tick(start, at)
        if work is not None:
            obs, now = work
            self.finish_tick(self.agent.step(obs, now), start, time.perf_counter(), 1, at)

    def prepare_tick(self, start: float, at: float | None = None) -> tuple[object, float] | None:
        """This robot's part of a tick before the forward: ``(observation, now)`` to step, or
        None when the tick is already done here (no inputs yet, a stale pose: nothing sent;
        on the ground or a bad input: the idle tick, published by :meth:`finish_tick`).
        ``start`` / ``at``: as :meth:`finish_tick`."""
        if self.pose is None or self.supply is None or self.consumers is None:
            return None  # the world has not spoken yet: nothing to act on, nothing sent
        now = self._now()
        if now - self.pose_rx > self.pose_timeout:
            # a frozen pose is no ground to command on: silence, the world holds then lands
            self.stale_pose_ticks += 1
            if self.stale_pose_ticks & (self.stale_pose_ticks - 1) == 0:
                self.get_logger().warning(
                    f"no pose for {now - self.pose_rx:.2f} s: sending no command "
                    f"({self.stale_pose_ticks} ticks so far)"
                )
            return None
        if self._active():
            try:
                obs = self.agent.observe(self.pose, self.vel, self.supply, self.consumers)
            except MissionError as exc:
                # no ground to command on either: silence, so that a bad input that lasts
                # ends in hold, then land (the world's ladder), not in hovering on zeros
                self.input_errors += 1
                self.bad_input_at = now
                if self.input_errors & (self.input_errors - 1) == 0:
                    self.get_logger().warning(f"bad input, sending no command: {exc}")
                return None
            self.bad_input_at = -math.inf
            return obs, now
        self.finish_tick(self.agent.idle(), start, time.perf_counter(), 0, at)
        return None

    def _active(self) -> bool:
        """In service: airborne (a drone) and not out of service by its mode (module docs)."""
        return self.agent.is_active(self.pose) and not self.mode.down

    def _on_mode(self, msg: String) -> None:
        was = self.mode.down
        if not self.mode.update(msg.data):
            self.input_errors += 1  # not a mode of the contract: ignored
        elif self.mode.down != was:
            state = "out of service: inactive" if self.mode.down else "back in service"
            self.get_logger().info(f"mode {msg.data}: {state}")

    def finish_tick(
        self, result, start: float, end: float, batch: int, at: float | None = None
    ) -> None:
        """Publish this robot's tick ``result`` (never a non-finite command) and record its
        timing (``start``/``end``: the tick's, or its batch's, monotonic times [s]; ``at``: its
        start on the clock of the timer that drove it, when that is another: sim time;
        ``batch``: how many robots shared the forward)."""
        self.batch_size = batch
        missed = self.stats.missed
        self.stats.record(start, end, at)
        if self.stats.missed > missed and (self.batcher is None or self.batcher.solo):
            self._report_missed(self.stats.missed - missed)  # a batch says it once for all
        if not result.ok or not np.all(np.isfinite(result.velocity)):
            # e.g. a checkpoint whose forward overflows (the core flags it and returns zeros):
            # never send it, say so loudly
            self.nonfinite_outputs += 1
            if self.nonfinite_outputs & (self.nonfinite_outputs - 1) == 0:
                self.get_logger().error(
                    "non-finite policy output (the network overflowed): sending no command "
                    f"({self.nonfinite_outputs} so far)"
                )
            return
        self._publish(result)

    def _publish(self, result) -> None:
        """``cmd_vel_nominal`` and ``comm/out`` of a tick: CDR bytes of
        :mod:`sim_bridge.ros.wire` where the middleware's layout is confirmed, else messages
        (the same content either way)."""
        sec, nanosec = divmod(self.get_clock().now().nanoseconds, 1_000_000_000)
        vx, vy, vz = map(float, result.velocity)
        if wire.RAW_PUBLISH_OK:
            self.cmd_pub.publish(
                wire.encode_twist_stamped(sec, nanosec, topics.WORLD_FRAME, vx, vy, vz)
            )
        else:
            cmd = TwistStamped()
            cmd.header.stamp.sec, cmd.header.stamp.nanosec = sec, nanosec
            cmd.header.frame_id = topics.WORLD_FRAME
            cmd.twist.linear.x, cmd.twist.linear.y, cmd.twist.linear.z = vx, vy, vz
            self.cmd_pub.publish(cmd)
        self.nominal = result.velocity
        if result.message is None:
            return
        if wire.RAW_PUBLISH_OK:
            self.comm_pub.publish(
                wire.encode_float64_multi_array(result.message, prefix=_NO_LAYOUT)
            )
        else:
            self.comm_pub.publish(Float64MultiArray(data=result.message.tolist()))

    def _report_missed(self, now_missed: int) -> None:
        """A late tick skipped ``now_missed`` periods: counted, and logged at 1, 2, 4, ..."""
        total = self.stats.missed
        if total.bit_length() > (total - now_missed).bit_length():  # passed a power of 2
            self.get_logger().warning(
                f"policy tick {self.stats.periods[-1] * 1e3:.0f} ms after the previous one "
                f"(period {self.period * 1e3:.0f} ms): {now_missed} tick(s) missed, "
                f"{total} so far (CPU overloaded?)"
            )

    def destroy_node(self) -> None:
        if self.batcher is not None:
            self.batcher.leave(self)
            self.batcher = None
        super().destroy_node()

    # ------------------------------------------------------------------ outputs

    def _publish_diagnostics(self) -> None:
        s = self.stats.summary()
        values = {
            **{k: f"{v:.3f}" if isinstance(v, float) else str(v) for k, v in s.items()},
            "cluster": str(self.agent.cluster),
            "neighbours": str(len(self.agent.neighbours.current(self._now()))),
            "rejected_messages": str(self.agent.neighbours.rejected),
            "input_errors": str(self.input_errors),
            "active": str(self.pose is not None and self._active()).lower(),
            "mode": self.mode.mode or "none",
            "stale_pose_ticks": str(self.stale_pose_ticks),
            "nonfinite_outputs": str(self.nonfinite_outputs),
            "batch_size": str(self.batch_size),
        }
        late = s["ticks"] > 0 and s["on_time_pct"] < 99.0
        if self.nonfinite_outputs:
            level, message = DiagnosticStatus.ERROR, "non-finite policy output: not commanding"
        elif self.pose is not None and self._now() - self.pose_rx > self.pose_timeout:
            level, message = DiagnosticStatus.ERROR, "no fresh pose: not commanding"
        elif self._now() - self.bad_input_at <= 2 * self.period:
            level, message = DiagnosticStatus.ERROR, "bad input: not commanding"
        elif late:
            level = DiagnosticStatus.WARN
            message = f"late ticks ({s['ticks_missed']} missed)"
        else:
            level, message = DiagnosticStatus.OK, "running"
        status = DiagnosticStatus(
            level=level,
            name=f"lgtc_policy: {self.spec.name}",
            message=message,
            hardware_id=self.spec.name,
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def _publish_markers(self) -> None:
        if self.marker_pub.get_subscription_count() == 0:
            # nobody draws: stop reading cmd_vel (a callback per robot per tick otherwise)
            if self._filtered_sub is not None:
                self.destroy_subscription(self._filtered_sub)
                self._filtered_sub = None
                self.filtered = np.zeros(3)
            return
        if self._filtered_sub is None:
            self._filtered_sub = self.create_subscription(
                TwistStamped, topics.CMD_VEL, self._on_filtered, self._qos
            )
        if self.pose is None:
            return
        stamp = self.get_clock().now().to_msg()
        here, ids = self.pose[None, :3], np.array([self.spec.index])
        out = cluster_markers(
            positions=here,
            cluster_ids=np.array([self.agent.cluster]),
            robot_ids=ids,
            stamp=stamp,
            ns="lgtc_cluster",
            diameter=0.12,
        ).markers
        for ns, v, rgba in (
            ("lgtc_nominal", self.nominal, (1.0, 0.6, 0.0, 0.9)),
            ("lgtc_filtered", self.filtered, (0.1, 0.5, 1.0, 0.9)),
        ):
            out += arrow_markers(
                starts=here, vectors=v[None, :3], robot_ids=ids, ns=ns, rgba=rgba, stamp=stamp
            ).markers
        self.marker_pub.publish(MarkerArray(markers=out))


def main(args=None) -> None:
    """``policy_node --ros-args -r __ns:=/cf1 -p robot:=cf1 -p config:=swarm.yaml``.

    A bad config or checkpoint prints one line ``policy_node: <problem>`` and exits with 2.
    """
    torch.set_num_threads(1)  # tiny tensors: extra intra-op threads only contend for the CPU
    spin_node(PolicyNode, "policy_node", args, errors=(MissionError, ConfigError))


if __name__ == "__main__":
    main()
