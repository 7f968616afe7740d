"""Comm relay node: ``/<robot>/comm/out`` -> :class:`sim_bridge.relay.CommRelay` -> ``comm/in``.

A separate node (its own executable ``comm_relay``, composable with the world in one
process) that takes positions from every robot's ``/<robot>/pose``, so the same relay works
for simulated robots (poses from the world) and real ones (poses from the bridges). A robot
receives nothing until its pose is known. A message whose ``sender_index`` is not the
publishing robot's index, that is shorter than the header (``[sender_index, stamp_s,
payload...]``, :mod:`sim_bridge.topics`) or longer than ``COMM_MAX_LEN`` values, or that
holds a value that is not finite is dropped and counted in ``malformed``
(:func:`sim_bridge.relay.comm_problem`): no robot can speak for another, and no NaN/inf or
oversized array is copied to the neighbours.

Delivery. By default (``bundle_period_s`` > 0) the relay delivers bundles: one ``comm/in``
publication per recipient carrying all its due messages back to back
(:func:`sim_bridge.relay.pack_bundle`), 2-D layout ``dim[0]`` = ``messages`` (k rows),
``dim[1]`` = ``message`` (the row length), rows in send order, each row a sender's array
unchanged. ``deliver`` says when:

* ``before_tick`` (default): every ``bundle_period_s`` the relay looks at each robot's own
  ``comm/out`` rhythm (its last message's stamp when that reads the relay's clock, else the
  arrival time, plus its measured period) and flushes the robot's inbox in the last
  ``bundle_period_s`` + ``FLUSH_MARGIN_S`` before its next tick, once per tick, so each robot
  gets one bundle per tick holding what its neighbours sent since its previous bundle: the
  messages a robot uses are about one tick old, as in the paper's discrete-time model (tick
  ``t`` uses the neighbours' messages of tick ``t - 1``). A robot that does not talk (not heard
  for two of its periods, or never) is flushed at every check. A tick of N robots in a
  near-complete comm graph costs N publications and N subscriber callbacks instead of
  N (N - 1).
* ``periodic``: every ``bundle_period_s`` everything due goes out (fresher messages, several
  bundles per robot per tick when the robots' ticks are spread over the period).

``bundle_period_s`` = 0 delivers each copy on its own inside the sender's callback (one row,
the same layout). The range rule is the same in every mode: within ``C`` at send time and
again at delivery time.

On sim time (``use_sim_time``) latency and the messages' times are sim time, but the delivery
timer and the ``before_tick`` rhythm (each robot's period, when its next tick comes) run on a
steady clock: sim time moves in the world's steps, and every robot ticks at the ``/clock``
step that makes its period due, so a flush timed on sim time would go out at that same step,
beside the ticks it should precede. On the wall clock the relay sees each robot's messages
arrive one tick apart (however slowly the world runs) and flushes before the next arrival.

Poses and ``comm/out`` are subscribed raw and bundles published as CDR bytes
(:mod:`sim_bridge.ros.wire`; message objects where the middleware's layout differs): the
relay copies every message's values bit for bit.

Parameters: ``config`` (swarm file), ``latency_s`` (0), ``drop_prob`` (0), ``seed`` (-1: the
config's seed), ``bundle_period_s`` (0.01 s), ``deliver`` (``before_tick`` | ``periodic``).
"""

from __future__ import annotations

import math
import sys
import time
from array import array

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, MultiArrayLayout

from sim_bridge import topics
from sim_bridge.config import load_config
from sim_bridge.relay import MAX_LATENCY_S, CommRelay, comm_problem, pack_bundle
from sim_bridge.ros import qos, wire
from sim_bridge.ros.params import (
    MAX_TIMER_PERIOD_S,
    MIN_TIMER_PERIOD_S,
    SWARM_CONFIG,
    Param,
    Rule,
    between,
    config_error,
    declare_and_read,
    one_of,
)
from sim_bridge.ros.sim_time import on_sim_time, wall_clock
from sim_bridge.ros.spin import run_node

#: Delivery modes of the bundling relay (parameter ``deliver``).
DELIVER_MODES = ("before_tick", "periodic")
#: ``before_tick`` flushes a robot's inbox this much earlier than one check period before its
#: next tick [s], so the bundle's callback runs before the robot's timer.
FLUSH_MARGIN_S = 0.006

PARAMETERS = (
    SWARM_CONFIG,
    Param(
        "latency_s",
        0.0,
        "delivery delay [s]",
        between(0.0, MAX_LATENCY_S, "pass 0 or a delay such as 0.02"),
    ),
    Param(
        "drop_prob",
        0.0,
        "probability that a copy is lost",
        Rule(lambda v: 0.0 <= v < 1.0, "in [0, 1)", "pass 0 or a probability such as 0.1"),
    ),
    Param(
        "seed",
        -1,
        "seed of the drop draws (-1: the config's seed)",
        Rule(
            lambda v: v == -1 or 0 <= v < 2**63,
            "-1 or 0 .. 2**63 - 1",
            "pass -1 (the config's seed) or a seed such as 7",
        ),
    ),
    Param(
        "bundle_period_s",
        0.01,
        "bundle check period [s] (0: deliver each copy at once)",
        Rule(
            lambda v: v == 0.0 or MIN_TIMER_PERIOD_S <= v <= MAX_TIMER_PERIOD_S,
            f"0 or in [{MIN_TIMER_PERIOD_S:g}, {MAX_TIMER_PERIOD_S:g}] s",
            "pass 0 (deliver each message at once) or a period such as 0.01",
        ),
    ),
    Param("deliver", "before_tick", "when bundles go out", one_of(DELIVER_MODES)),
)


def bundle_msg(row_len: int, data) -> Float64MultiArray:
    """A ``comm/in`` message of ``len(data) // row_len`` messages of ``row_len`` values."""
    rows = len(data) // row_len
    layout = MultiArrayLayout(
        dim=[
            MultiArrayDimension(label="messages", size=rows, stride=rows * row_len),
            MultiArrayDimension(label="message", size=row_len, stride=row_len),
        ]
    )
    return Float64MultiArray(layout=layout, data=data)


def bundle_bytes(row_len: int, data: array) -> bytes:
    """:func:`bundle_msg` as CDR bytes (:mod:`sim_bridge.ros.wire`), the same content."""
    rows = len(data) // row_len
    dims = (("messages", rows, rows * row_len), ("message", row_len, row_len))
    return wire.encode_float64_multi_array(data, dims)


def _f64_row(values: np.ndarray) -> array:
    """A decoded ``float64`` array as the ``array('d')`` the relay keeps and bundles."""
    row = array("d")
    row.frombytes(values.astype(np.float64, copy=False).tobytes())
    return row


class RelayNode(Node):
    """Neighbour-range radio between the robots of one swarm config."""

    def __init__(self, node_name: str = "comm_relay", **kwargs):
        super().__init__(node_name, **kwargs)
        values = declare_and_read(self, PARAMETERS, config_error)
        latency, drop = float(values["latency_s"]), float(values["drop_prob"])
        seed, bundle = int(values["seed"]), float(values["bundle_period_s"])
        deliver = str(values["deliver"])
        self.cfg = load_config(values["config"])
        n = len(self.cfg.robots)
        self.relay = CommRelay(
            n, self.cfg.comm_radius, latency, drop, self.cfg.seed if seed < 0 else seed
        )
        self.bundle_period_s = bundle
        self.before_tick = deliver == "before_tick"
        self.sim_time = on_sim_time(self)
        # the delivery rhythm, on the rhythm clock (_beat: the relay's clock, steady on sim time)
        self.last_send = np.full(n, -math.inf)  # each robot's last comm/out [s]
        self.send_period = np.full(n, math.nan)  # its measured period [s] (moving average)
        self.flushed_at = np.full(n, -math.inf)  # when its inbox was last flushed [s]
        self.positions = np.full((n, 3), np.nan)
        self.known = np.zeros(n, dtype=bool)
        self.malformed = 0
        self.out_pub = []
        for i, name in enumerate(self.cfg.robot_names):
            # raw: decoded by sim_bridge.ros.wire, no message objects per pose or message
            self.create_subscription(
                PoseStamped,
                topics.robot_topic(name, topics.POSE),
                lambda m, i=i: self._on_pose(i, m),
                qos.STATE,
                raw=True,
            )
            self.create_subscription(
                Float64MultiArray,
                topics.robot_topic(name, topics.COMM_OUT),
                lambda m, i=i: self._on_out(i, m),
                qos.QUEUE,
                raw=True,
            )
            self.out_pub.append(
                self.create_publisher(
                    Float64MultiArray, topics.robot_topic(name, topics.COMM_IN), qos.QUEUE
                )
            )
        if bundle > 0.0:
            self.create_timer(bundle, self._deliver, clock=wall_clock(self))
        elif latency > 0.0:
            self.create_timer(min(latency / 2.0, 0.01), self._deliver, clock=wall_clock(self))
        self.get_logger().info(
            f"comm relay: {n} robots, C = {self.cfg.comm_radius} m, latency {latency} s, "
            f"drop {drop}, "
            + (f"bundles {deliver}, checked every {bundle} s" if bundle > 0.0 else "per copy")
        )

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _beat(self, now: float) -> float:
        """The rhythm clock [s] (``now``: the relay's clock): ``now``, or steady on sim time."""
        return time.monotonic() if self.sim_time else now

    def _on_pose(self, i: int, msg: bytes | PoseStamped) -> None:
        """Robot ``i``'s pose: the subscription's raw bytes, or a message."""
        if isinstance(msg, bytes):
            x, y, z = wire.decode_stamped_pose(msg)[2:5]
        else:
            x, y, z = msg.pose.position.x, msg.pose.position.y, msg.pose.position.z
        if math.isfinite(x) and math.isfinite(y) and math.isfinite(z):
            self.positions[i] = (x, y, z)
            self.known[i] = True

    def _on_out(self, i: int, msg: bytes | Float64MultiArray) -> None:
        """Robot ``i``'s ``comm/out``: the subscription's raw bytes, or a message."""
        if isinstance(msg, bytes):
            values = wire.decode_float64_multi_array(msg)[2]
        else:
            values = np.asarray(msg.data, dtype=np.float64)
        problem = comm_problem(i, values)
        if problem is not None:
            self.malformed += 1
            if self.malformed & (self.malformed - 1) == 0:
                self.get_logger().warning(
                    f"{self.cfg.robot_names[i]}: dropped comm message: {problem} (expected "
                    f"[sender_index={i}, stamp_s, ...], all finite) ({self.malformed} so far)"
                )
            return
        data = _f64_row(values) if isinstance(msg, bytes) else msg.data
        now = self._now()
        beat = self._beat(now)
        # the sender's tick: its stamp when that reads our rhythm clock (same machine; the
        # callback itself may run late on a busy executor), else the time we got it
        sent = data[1] if not self.sim_time and 0.0 <= now - data[1] < 0.5 else beat
        dt = sent - self.last_send[i]
        if 0.0 < dt < 1.0:  # the sender's tick period, smoothed (a gap > 1 s is a pause)
            p = self.send_period[i]
            self.send_period[i] = dt if math.isnan(p) else 0.8 * p + 0.2 * dt
        self.last_send[i] = sent
        self.relay.submit(i, data, now, self.positions, self.known)
        if self.bundle_period_s == 0.0 and self.relay.latency_s == 0.0:
            self._deliver()

    def _due_now(self, j: int, now: float) -> bool:
        """Whether robot ``j``'s inbox goes out now (``before_tick``: in the last check period
        before its next tick, once per tick; at every check while it does not talk)."""
        period = self.send_period[j]
        if not self.before_tick or math.isnan(period) or now - self.last_send[j] > 2 * period:
            return True
        next_tick = self.last_send[j] + period
        while next_tick < now - 0.5 * period:  # late check (starved executor): catch up
            next_tick += period
        return (
            now >= next_tick - self.bundle_period_s - FLUSH_MARGIN_S
            and self.flushed_at[j] < next_tick - 0.5 * period
        )

    def _deliver(self) -> None:
        now = self._now()
        if self.bundle_period_s == 0.0:
            if self.relay.pending:
                for j, data in self.relay.due(now, self.positions):
                    self._publish(j, len(data), data)
            return
        self.relay.collect(now)
        beat = self._beat(now)
        for j in range(self.relay.n):
            if not self.relay.held(j) or not self._due_now(j, beat):
                continue
            self.flushed_at[j] = beat
            for row_len, data in pack_bundle(self.relay.take(j, self.positions)):
                self._publish(j, row_len, data)

    def _publish(self, j: int, row_len: int, data) -> None:
        """A ``comm/in`` bundle to robot ``j``: CDR bytes where the middleware's layout is
        confirmed (``wire.RAW_PUBLISH_OK``), else the message."""
        if wire.RAW_PUBLISH_OK:
            self.out_pub[j].publish(bundle_bytes(row_len, data))
        else:
            self.out_pub[j].publish(bundle_msg(row_len, data))


def main(args=None) -> int:
    """``comm_relay --ros-args -p config:=swarm.yaml``; exit status 2 on a bad config."""
    return run_node(RelayNode, "comm_relay", args)


if __name__ == "__main__":
    sys.exit(main())
