"""Per-robot CBF filter node: ``/<robot>/cmd_vel_nominal`` -> ``/<robot>/cmd_vel``.

Thin adapter around :class:`cbf_filter.decentralized.DecentralizedCBF` (drones, planar
points) or :class:`cbf_filter.unicycle.AxleCBF` (ground robots); topics from
:mod:`sim_bridge.topics`:

* subscribes ``pose`` (PoseStamped), ``neighbors`` (PoseArray: the other robots inside the
  sensing radius) and ``cmd_vel_nominal`` (TwistStamped, world frame);
* publishes ``cmd_vel`` (TwistStamped, world frame) on every fresh nominal command and, while
  that nominal stays fresh, again whenever it has not published for a control period
  (neighbours move between policy ticks). Co-located nodes (one process) filter together:
  their due calls run as one batched call (:mod:`cbf_filter.ros.batcher`, parameter
  ``batch``), each node with its own inputs, rules, outputs and diagnostics. Freshness is
  the wire contract's rule (:func:`sim_bridge.topics.command_fresh`): a nominal whose stamp
  lies outside ``[now - cmd_timeout, now + CMD_CLOCK_SKEW_S]`` is rejected on receipt and
  counted (it never replaces the last good one), and a stored nominal is re-filtered only
  while both its stamp and its receipt are younger than ``cmd_timeout``. Every published
  command carries the nominal's stamp, so the consumer's rule measures the age of the
  *policy's* decision: when the policy stops, the filter goes silent too and the world or
  bridge runs the failure ladder (hold after ``CMD_TIMEOUT_S``, land after
  ``LAND_AFTER_S``). A zero command (no fresh pose or
  neighbours, a filter fallback) also keeps the nominal's stamp. Never NaN/inf;
* garbage nominals (not finite, or faster than ``CMD_REJECT_FACTOR * max_speed``) are
  rejected and counted, and nothing is published for them (silence, as for a stale
  nominal); finite nominals faster than ``max_speed`` are filtered (the QP saturates them)
  and counted as clipped;
* publishes ``/diagnostics`` (DiagnosticArray) every ``diagnostics_period`` s: solve time
  (last, p95, max over the window), active constraints, neighbours, fallbacks, stale inputs,
  the counts ``rejected_future``, ``rejected_stale``, ``rejected_invalid``, ``clipped``,
  ``refilters`` (calls made with an already used nominal) and ``batch_size`` (robots in the
  node's last batched call).

Models: ``si3`` (Crazyflie: 3-D single integrator), ``si2`` (planar point), ``unicycle``
(ground robot: the command is still the world-frame velocity of the projection point ahead
of the axle, which the world / ground bridge maps to (v, omega); the filter certifies the
*axle* (the pose's position) with plain ``Ds`` against the neighbours' positions as published,
:class:`~cbf_filter.unicycle.AxleCBF`: only the forward speed is limited, turning never, and
nothing depends on the projection distance). Every model reads the neighbours' positions
unshifted (a drone is where its pose says). ``auto`` picks ``si3`` for ``crazyflie`` and
``unicycle`` for ``ground``.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from typing import NamedTuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray, PoseStamped, TwistStamped
from rclpy.node import Node
from sim_bridge import topics
from sim_bridge.config.limits import MAX_NAME_LEN, NAME_RE, RESERVED_NAMES
from sim_bridge.ros import qos
from sim_bridge.ros.params import (
    Param,
    between,
    declare_and_read,
    on_set_callback,
    one_of,
    read,
    timer_period,
)
from sim_bridge.ros.sim_time import on_sim_time, wall_clock

from cbf_filter.decentralized import DecentralizedCBF, batch_key
from cbf_filter.errors import CBFConfigError
from cbf_filter.params import control_rate, from_config
from cbf_filter.ros import wire
from cbf_filter.ros.batcher import REFILTER_AFTER_SIM, FilterBatcher
from cbf_filter.unicycle import AxleCBF, axle_batch_key

MODELS = ("auto", "si2", "si3", "unicycle")
#: Parameters that :func:`cbf_filter.params.from_config` resolves against the swarm config.
_CONFIG_PARAMETERS = (
    "gamma",
    "safety_distance",
    "class_k",
    "max_speed",
    "sensing_radius",
    "arena",
    "boundary_margin",
    "sample_time",
)
NAN = float("nan")
#: Slowest filter rate [Hz]: a nominal is fresh for ``CMD_TIMEOUT_S`` only, so a slower rate
#: never re-filters one (the swarm file's ``rates.control_hz`` has the same floor).
MIN_CONTROL_HZ = math.ceil(100.0 / topics.CMD_TIMEOUT_S) / 100

#: Longest ``state_timeout`` [s]: at 0.5 m/s a 2 s old position is 1 m off, five times the
#: default safety distance; a filter that still trusted it would certify nothing.
MAX_STATE_TIMEOUT_S = 2.0

#: The node's parameters. NaN / "" / [] mean "from the swarm config, else built-in"; only
#: ``robot``, ``config``, ``control_hz`` and ``diagnostics_period`` are fixed once started.
PARAMETERS = (
    Param("robot", "", "robot name (default: the namespace)"),
    Param("config", "", "swarm YAML (sim_bridge.config); empty: explicit parameters only"),
    Param(
        "model",
        "auto",
        "auto | si2 | si3 | unicycle (auto: by robot kind; si2 without config)",
        one_of(MODELS, f"one of {MODELS}"),
        dynamic=True,
    ),
    Param("gamma", NAN, "class-K gain (config safety.gamma, else 100)", dynamic=True),
    Param(
        "safety_distance",
        NAN,
        "Ds [m] between centres (config safety.distance, else 0.15)",
        dynamic=True,
    ),
    Param("class_k", "", "linear | cubic (config safety.class_k, else cubic)", dynamic=True),
    Param("max_speed", NAN, "speed limit [m/s] (config robot max_speed, else 0.5)", dynamic=True),
    Param(
        "sensing_radius",
        NAN,
        "neighbours farther away are ignored [m] (config, else 1.0)",
        dynamic=True,
    ),
    Param(
        "arena",
        [NAN],
        "[xmin, xmax, ymin, ymax(, zmin, zmax)] [m] (config arena)",
        dynamic=True,
    ),
    Param(
        "boundary_margin",
        NAN,
        "wall margin [m] (Ds/2; drones may sit on the floor)",
        dynamic=True,
    ),
    Param(
        "share",
        0.5,
        "responsibility for each pair constraint, (0, 1]",
        between(0.0, 1.0, "use 0.5", open_low=True),
        dynamic=True,
    ),
    Param("control_hz", NAN, "minimum publish rate [Hz] (config rates.control_hz, else 20)"),
    Param(
        "sample_time",
        NAN,
        "command hold time for the sampled-data guard [s] (1/control_hz)",
        dynamic=True,
    ),
    Param(
        "cmd_timeout",
        topics.CMD_TIMEOUT_S,
        "nominal older than this [s] -> zero (at most CMD_TIMEOUT_S: tighter, never looser)",
        between(
            0.0,
            topics.CMD_TIMEOUT_S,
            f"a duration [s] up to the swarm's command freshness {topics.CMD_TIMEOUT_S:g}",
            open_low=True,
        ),
        dynamic=True,
    ),
    Param(
        "state_timeout",
        0.5,
        f"pose / neighbours older than this [s] -> zero (at most {MAX_STATE_TIMEOUT_S:g} s)",
        between(
            0.0,
            MAX_STATE_TIMEOUT_S,
            f"a duration [s] up to {MAX_STATE_TIMEOUT_S:g} (the filter never guards against "
            "positions older than that)",
            open_low=True,
        ),
        dynamic=True,
    ),
    Param(
        "diagnostics_period",
        1.0,
        "seconds between /diagnostics messages",
        timer_period("a duration [s] such as 1.0"),
    ),
    Param(
        "batch",
        True,
        "filter together with the other CBF nodes of this process (one batched call)",
    ),
)


class FilterWork(NamedTuple):
    """One due filter call of a node (:meth:`CbfNode.prepare_filter`): its own inputs."""

    key: tuple  # filters with equal keys share a batched call
    point: np.ndarray  # (d,) own filter point [m]; unicycle: (x, y, yaw) of the axle
    u_hat: np.ndarray  # (d,) nominal [m/s]
    neighbors: np.ndarray  # (k, d) neighbours' positions [m]
    share: float
    stamp: tuple[int, int]  # the nominal's stamp (sec, nanosec)
    refilter: bool  # the nominal was already filtered once


class Nominal(NamedTuple):
    """The stored nominal command: its stamp and its linear velocity (world frame)."""

    sec: int
    nanosec: int
    vx: float
    vy: float
    vz: float

    @property
    def stamp_s(self) -> float:
        return self.sec + 1e-9 * self.nanosec


def _robot_name(robot: str) -> str:
    """``robot`` when it is a robot name of the swarm config's rule, else the one-line error (a
    name rclpy refuses in a topic, ``é`` or ``1abc``, was an InvalidTopicNameException)."""
    if not NAME_RE.fullmatch(robot) or len(robot) > MAX_NAME_LEN or robot in RESERVED_NAMES:
        raise CBFConfigError(
            "robot",
            f"invalid robot name {robot[:MAX_NAME_LEN]!r}",
            "set robot:=<name>, a letter then letters, digits or _ (e.g. cf1), not one of "
            f"{list(RESERVED_NAMES)}, or run in the namespace /<name>",
        )
    return robot


def _swarm_with(config: str, robot: str):
    """The swarm config at ``config``, which must name ``robot`` (one-line error otherwise)."""
    from sim_bridge.config import load_config

    swarm = load_config(config)
    if robot not in swarm.robot_names:
        names = list(swarm.robot_names)
        shown = f"{names[:8]}{' ...' if len(names) > 8 else ''}"
        raise CBFConfigError(
            "robot",
            f"no robot named {robot!r} in {config}",
            f"use one of {shown} (robot:=<name> or the namespace /<name>)",
        )
    return swarm


class CbfNode(Node):
    """One robot's safety filter (decentralized form, Wang-Ames-Egerstedt 2017)."""

    def __init__(self, node_name: str = "cbf_filter", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        values = declare_and_read(self, PARAMETERS, CBFConfigError)
        robot = _robot_name(values["robot"] or self.get_namespace().strip("/"))
        self.robot = robot
        self.swarm = None
        self.robot_cfg = None
        if values["config"]:
            self.swarm = _swarm_with(values["config"], robot)
            self.robot_cfg = self.swarm.robot(robot)
        self._configure({})
        self.add_on_set_parameters_callback(
            on_set_callback(
                PARAMETERS, self._configure, CBFConfigError, (CBFConfigError, TypeError, ValueError)
            )
        )

        # Reliable publisher, best-effort subscriptions: compatible with either kind of peer.
        self.pub = self.create_publisher(
            TwistStamped, topics.robot_topic(robot, topics.CMD_VEL), qos.STATE
        )
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, qos.DIAGNOSTICS)
        self._subscribe(robot)
        self.pose = None  # (x, y, z, yaw)
        self.pose_rx = None  # receipt time [s, node clock]
        self.neighbors = np.zeros((0, 7))  # rows (x, y, z, qx, qy, qz, qw)
        self.neighbors_rx = None
        self.nominal: Nominal | None = None
        self.nominal_rx = -math.inf  # receipt time [s, node clock]
        self.nominal_used = False  # the stored nominal was filtered at least once
        self.last_pub = -math.inf
        # last filter step, published or not [s, the batcher's clock: monotonic or sim time]
        self.last_step = -math.inf
        self.batch_size = 0
        self.solve_ms = deque(maxlen=200)
        self.counts = dict(
            ticks=0,
            fallbacks=0,
            stale=0,
            window_fallbacks=0,
            window_stale=0,
            rejected_future=0,
            rejected_stale=0,
            rejected_invalid=0,
            clipped=0,
            refilters=0,
        )
        self.last = dict(status="none", message="", active=0, neighbors=0, min_distance=math.inf)
        self.batcher = None
        if values["batch"]:
            self.batcher = FilterBatcher.join(self, 1.0 / self.control_hz)
        else:
            self.create_timer(1.0 / self.control_hz, self._on_timer)
        # status for people: on wall time always (sim_time.wall_clock), never in bursts
        self.create_timer(
            float(values["diagnostics_period"]), self._diagnose, clock=wall_clock(self)
        )
        self.get_logger().info(
            f"CBF filter for {robot}: model {self.model}, Ds {self.params.safety_distance} m, "
            f"gamma {self.params.gamma} ({self.params.class_k}), vmax {self.params.max_speed}"
        )

    def _subscribe(self, robot: str) -> None:
        """Best-effort, raw subscriptions to the robot's inputs (decoded by :mod:`.wire`:
        no per-pose message objects)."""
        inputs = qos.STATE_BEST_EFFORT
        self.create_subscription(
            PoseStamped, topics.robot_topic(robot, topics.POSE), self._on_pose, inputs, raw=True
        )
        self.create_subscription(
            PoseArray,
            topics.robot_topic(robot, topics.NEIGHBORS),
            self._on_neighbors,
            inputs,
            raw=True,
        )
        self.create_subscription(
            TwistStamped,
            topics.robot_topic(robot, topics.CMD_VEL_NOMINAL),
            self._on_nominal,
            inputs,
            raw=True,
        )

    # ----------------------------------------------------------------- configuration
    def _configure(self, overrides: dict) -> None:
        """Build the filter from parameters > swarm config > defaults (raises CBFConfigError).

        ``overrides``: values about to be set at run time (the on-set callback), checked by
        the rules of :data:`PARAMETERS` before anything is rebuilt.
        """
        v = read(self, PARAMETERS, CBFConfigError, overrides)
        sw, rc = self.swarm, self.robot_cfg
        model = v["model"]
        if model == "auto":
            model = "unicycle" if rc is not None and rc.kind == "ground" else "si3"
            if rc is None:
                model = "si2"
        dim = 3 if model == "si3" else 2
        control_hz = control_rate(sw, v["control_hz"], min_hz=MIN_CONTROL_HZ)
        params = from_config(
            sw,
            rc,
            dim,
            **{name: v[name] for name in _CONFIG_PARAMETERS},
            control_hz=control_hz,
        )
        if model == "unicycle":
            self.cbf = AxleCBF(params)  # validates everything else
            self._key = axle_batch_key(self.cbf)
        else:
            self.cbf = DecentralizedCBF(dim, params)
            self._key = batch_key(self.cbf)
        self.params = params
        self.model = model
        self.dim = dim
        self.share = float(v["share"])
        self.control_hz = control_hz
        self.cmd_timeout = float(v["cmd_timeout"])
        self.state_timeout = float(v["state_timeout"])

    # ---------------------------------------------------------------------- callbacks
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_pose(self, data: bytes) -> None:
        x, y, z, qx, qy, qz, qw = wire.decode_pose_stamped(data)
        self.pose = (x, y, z, wire.yaw_of(qx, qy, qz, qw))
        self.pose_rx = self._now()

    def _on_neighbors(self, data: bytes) -> None:
        self.neighbors = wire.decode_pose_array(data)
        self.neighbors_rx = self._now()

    def _on_nominal(self, data: bytes) -> None:
        now = self._now()
        msg = Nominal(*wire.decode_twist_stamped(data))
        stamp = msg.stamp_s
        if not topics.stamp_ok(stamp, now, self.cmd_timeout):
            key = "rejected_future" if stamp > now else "rejected_stale"
            self.counts[key] += 1
            self.counts["window_stale"] += 1
            if self.counts[key] & (self.counts[key] - 1) == 0:  # log at 1, 2, 4, 8, ...
                self.get_logger().warning(
                    f"{key.replace('_', ' ')} nominal command (stamp {stamp:.3f} s, "
                    f"now {now:.3f} s), {self.counts[key]} so far: holding"
                )
            self._request()
            return
        self.nominal = msg
        self.nominal_rx = now
        self.nominal_used = False
        self._request()

    def _request(self) -> None:
        """A filter step is due now: in this process's batch, or at once (``batch`` false)."""
        if self.batcher is not None:
            self.batcher.request(self)
        else:
            self._step()

    def _on_timer(self) -> None:
        """Own timer (``batch`` false): re-filter at ``control_hz`` (0.9-period threshold; on
        sim time ``REFILTER_AFTER_SIM`` periods: sim time moves in whole world steps, so the
        timer finds the last output one whole period old at the very step the next nominal
        comes, and a 0.9 threshold filtered twice per tick; see :mod:`cbf_filter.ros.batcher`)."""
        after = REFILTER_AFTER_SIM if on_sim_time(self) else 0.9
        if self._now() - self.last_pub >= after / self.control_hz:
            self._step()

    # ------------------------------------------------------------------------ filtering
    def _own_point(self) -> np.ndarray:
        """What the filter certifies of this robot: (x, y, z), (x, y), or for a unicycle the
        axle's (x, y, yaw) (its heading sets which velocities move the axle)."""
        x, y, z, yaw = self.pose
        if self.model == "si3":
            return np.array([x, y, z])
        if self.model == "si2":
            return np.array([x, y])
        return np.array([x, y, yaw])

    def _neighbor_points(self) -> np.ndarray:
        """The neighbours' positions as published (rows of :func:`wire.decode_pose_array`):
        (x, y, z) for ``si3``, else (x, y). Nothing is shifted: a neighbour's heading is not
        part of any certificate (a drone has no projection point, and the axle certificate of
        a ground robot keeps its centre, not a point ahead of it, ``Ds`` from others)."""
        return self.neighbors[:, : 3 if self.model == "si3" else 2]

    def _step(self) -> None:
        """One filter step of this node alone (its own call)."""
        work = self.prepare_filter()
        if work is not None:
            res = self.cbf.filter_robot(work.point, work.u_hat, work.neighbors, work.share)
            self.finish_filter(work, res, 1)

    def prepare_filter(self, at: float | None = None) -> FilterWork | None:
        """This node's due call from its own inputs, or ``None`` when there is nothing to
        filter: no fresh nominal (silent), no fresh pose or neighbours (a zero command with
        the nominal's stamp: hold) or a rejected nominal (silent), each handled here.
        ``at``: the step's time on the batcher's clock (default: monotonic now)."""
        now = self._now()
        self.last_step = time.monotonic() if at is None else at
        nominal = self.nominal
        reason = None
        if nominal is None or not topics.command_fresh(
            nominal.stamp_s, self.nominal_rx, now, self.cmd_timeout
        ):
            # Nothing fresh to act on: publish nothing (never re-publish a stale input).
            self.nominal = None
            self.counts["stale"] += 1
            self.counts["window_stale"] += 1
            self.last.update(status="silent", message="no fresh nominal command")
            return None
        if self.pose is None or now - self.pose_rx > self.state_timeout:
            reason = "no fresh pose"
        elif self.neighbors_rx is None or now - self.neighbors_rx > self.state_timeout:
            reason = "no fresh neighbours"
        if reason is not None:
            self.counts["stale"] += 1
            self.counts["window_stale"] += 1
            self.last.update(status="hold", message=reason)
            self._publish(np.zeros(3), (nominal.sec, nominal.nanosec))
            return None
        vx, vy, vz = nominal.vx, nominal.vy, nominal.vz
        if self.dim == 2:
            vz = 0.0
        vmax = self.params.max_speed if self.params.max_speed is not None else math.inf
        if not topics.command_valid(vx, vy, vz, vmax):
            self.counts["rejected_invalid"] += 1
            self.counts["window_stale"] += 1
            self.nominal = None  # never re-filtered on the timer
            self.last.update(status="silent", message=f"rejected nominal ({vx}, {vy}, {vz})")
            self.get_logger().warning(
                f"rejected nominal ({vx}, {vy}, {vz}): not finite or faster than "
                f"{topics.CMD_REJECT_FACTOR:g} x max_speed; nothing sent",
                throttle_duration_sec=1.0,
            )
            return None
        refilter = self.nominal_used
        self.nominal_used = True
        if vx * vx + vy * vy + vz * vz > vmax * vmax:
            self.counts["clipped"] += 1
        return FilterWork(
            key=self._key,
            point=self._own_point(),
            u_hat=np.array([vx, vy, vz])[: self.dim],
            neighbors=self._neighbor_points(),
            share=self.share,
            stamp=(nominal.sec, nominal.nanosec),
            refilter=refilter,
        )

    def finish_filter(self, work: FilterWork, res, batch: int) -> None:
        """Record this node's result (its own statistics and diagnostics) and publish it;
        ``batch``: robots in the call that computed it."""
        self.counts["ticks"] += 1
        self.batch_size = batch
        if work.refilter:
            self.counts["refilters"] += 1
        self.solve_ms.append(res.solve_time_s * 1e3)
        if not res.found:
            self.counts["fallbacks"] += 1
            self.counts["window_fallbacks"] += 1
            self.get_logger().warning(
                f"CBF fallback ({res.status.value}): {res.message}", throttle_duration_sec=1.0
            )
        self.last.update(
            status=res.status.value,
            message=res.message,
            active=res.n_active,
            neighbors=res.n_pairs,
            min_distance=res.min_distance,
        )
        u = np.zeros(3)
        u[: self.dim] = res.u
        self._publish(u, work.stamp)

    def _publish(self, u: np.ndarray, stamp: tuple[int, int]) -> None:
        """``cmd_vel`` = ``u`` with the nominal's ``stamp`` (bytes of :mod:`.wire` when the
        middleware's layout was confirmed, else a message object)."""
        if not np.all(np.isfinite(u)):
            u = np.zeros(3)
        vx, vy, vz = (float(c) for c in u)
        if wire.RAW_PUBLISH_OK:
            self.pub.publish(wire.encode_twist_stamped(*stamp, topics.WORLD_FRAME, vx, vy, vz))
        else:
            msg = TwistStamped()
            msg.header.frame_id = topics.WORLD_FRAME
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
            msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = vx, vy, vz
            self.pub.publish(msg)
        self.last_pub = self._now()

    # ---------------------------------------------------------------------- diagnostics
    def _diagnose(self) -> None:
        st = DiagnosticStatus()
        st.name = f"cbf_filter: /{self.robot}"
        st.hardware_id = self.robot
        times = np.array(self.solve_ms) if self.solve_ms else np.zeros(1)
        if self.counts["window_fallbacks"]:
            st.level = DiagnosticStatus.WARN
            st.message = f"{self.counts['window_fallbacks']} fallback(s): {self.last['message']}"
        elif self.counts["window_stale"]:
            st.level = DiagnosticStatus.WARN
            st.message = f"holding still: {self.last['message']}"
        else:
            st.level = DiagnosticStatus.OK
            st.message = "filtering"
        values = {
            "model": self.model,
            "ticks": self.counts["ticks"],
            "solve_time_ms_last": f"{times[-1]:.4f}",
            "solve_time_ms_p95": f"{np.percentile(times, 95):.4f}",
            "solve_time_ms_max": f"{times.max():.4f}",
            "active_constraints": self.last["active"],
            "neighbors_in_range": self.last["neighbors"],
            "min_distance_m": f"{self.last['min_distance']:.4f}",
            "fallbacks_total": self.counts["fallbacks"],
            "fallbacks_window": self.counts["window_fallbacks"],
            "stale_total": self.counts["stale"],
            "rejected_future": self.counts["rejected_future"],
            "rejected_stale": self.counts["rejected_stale"],
            "rejected_invalid": self.counts["rejected_invalid"],
            "clipped": self.counts["clipped"],
            "refilters": self.counts["refilters"],
            "batch_size": self.batch_size,
            "last_status": self.last["status"],
        }
        st.values = [KeyValue(key=k, value=str(val)) for k, val in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        self.diag_pub.publish(arr)
        self.counts["window_fallbacks"] = 0
        self.counts["window_stale"] = 0

    def destroy_node(self) -> None:
        if self.batcher is not None:
            self.batcher.leave(self)
            self.batcher = None
        super().destroy_node()


def main(args=None) -> int:
    """Console entry point ``cbf_node``; exit status 2 on a configuration error.

    Bad parameters or swarm file: one clear line, no traceback, no commands sent. SIGINT /
    SIGTERM: the orderly, fast shutdown of :func:`sim_bridge.ros.spin.run_node`.
    """
    from sim_bridge.ros.spin import run_node

    return run_node(
        CbfNode, "cbf_node", args, errors=(CBFConfigError, ValueError, KeyError, OSError)
    )


if __name__ == "__main__":
    sys.exit(main())
