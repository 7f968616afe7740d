"""Mission monitor node: watches a running swarm over DDS and keeps what the report needs.

It is an observer, not part of the control chain (no robot reads anything from it). It
subscribes to every ``/<robot>/pose``, ``/consumers``, ``/clock``, ``/diagnostics`` and
``/swarm/events`` and keeps, at every world publication (one ``/consumers`` message per 20 Hz
sim tick), a sample ``(sim time, positions (N, 3), remaining demand (M, r))``. From the
diagnostics it keeps the last status of each policy node (``lgtc_policy: <robot>``: ticks,
ticks on time, cluster; the cluster history is in ``cluster_log``) and of each CBF filter
(``fallbacks_total``). ``complete_t`` is the sim
time at which the remaining demand first reached ``complete_tol`` of the initial demand.
"""

from __future__ import annotations

import json

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sim_bridge import topics
from std_msgs.msg import Float64MultiArray, String

__all__ = ["MissionMonitor"]


class MissionMonitor(Node):
    """Samples the swarm state at the world's 20 Hz publications (see the module docstring)."""

    def __init__(self, cfg, node_name: str = "mission_monitor", complete_tol=1e-3, **kwargs):
        super().__init__(node_name, **kwargs)
        self.cfg = cfg
        self.n = len(cfg.robots)
        self.r = len(cfg.resource_types)
        self.demand0 = cfg.demand_matrix()
        self.pos = np.array([r.pose[:3] for r in cfg.robots], dtype=float)
        self.sim_t = 0.0
        self.times: list[float] = []
        self.positions: list[np.ndarray] = []
        self.demands: list[np.ndarray] = []
        self.policy: dict[str, dict[str, str]] = {}
        self.cluster_log: list[tuple[float, int, int]] = []  # (sim t, robot index, cluster)
        self._index = {name: i for i, name in enumerate(cfg.robot_names)}
        self.cbf: dict[str, dict[str, str]] = {}
        self.events: list[dict] = []
        self.complete_t: float | None = None
        self.malformed = 0
        self.complete_tol = float(complete_tol)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for i, name in enumerate(cfg.robot_names):
            self.create_subscription(
                PoseStamped,
                topics.robot_topic(name, topics.POSE),
                lambda m, i=i: self._on_pose(i, m),
                qos,
            )
        self.create_subscription(Float64MultiArray, topics.CONSUMERS, self._on_consumers, qos)
        self.create_subscription(Clock, topics.CLOCK, self._on_clock, qos)
        self.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diag, 100)
        self.create_subscription(String, topics.EVENTS, self._on_event, 100)

    def _on_pose(self, i: int, msg: PoseStamped) -> None:
        p = msg.pose.position
        self.pos[i] = (p.x, p.y, p.z)

    def _on_clock(self, msg: Clock) -> None:
        self.sim_t = msg.clock.sec + msg.clock.nanosec * 1e-9

    def _on_consumers(self, msg: Float64MultiArray) -> None:
        cols = len(topics.CONSUMER_FIXED_FIELDS) + self.r
        data = np.asarray(msg.data, dtype=float)
        if data.size != len(self.demand0) * cols:
            self.malformed += 1  # not this swarm's table (e.g. another run on the domain)
            return
        table = data.reshape(-1, cols)
        demand = table[:, len(topics.CONSUMER_FIXED_FIELDS) :]
        self.times.append(self.sim_t)
        self.positions.append(self.pos.copy())
        self.demands.append(demand)
        total0 = float(self.demand0.sum())
        if self.complete_t is None and float(demand.sum()) <= self.complete_tol * total0:
            self.complete_t = self.sim_t

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            values = {kv.key: kv.value for kv in st.values}
            if st.name.startswith("lgtc_policy:"):
                robot = st.name.split(":", 1)[1].strip()
                self.policy[robot] = values
                if robot in self._index and "cluster" in values:
                    self.cluster_log.append(
                        (self.sim_t, self._index[robot], int(values["cluster"]))
                    )
            elif st.name.startswith("cbf"):
                self.cbf[st.name] = values

    def _on_event(self, msg: String) -> None:
        try:
            self.events.append(json.loads(msg.data))
        except json.JSONDecodeError:
            self.events.append({"text": msg.data})

    # ------------------------------------------------------------------ summaries

    def trajectory(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(times (K,), positions (K, N, 3), remaining demand (K, M, r))``."""
        if not self.times:
            return np.zeros(0), np.zeros((0, self.n, 3)), np.zeros((0, *self.demand0.shape))
        return np.asarray(self.times), np.stack(self.positions), np.stack(self.demands)

    def ticks(self) -> tuple[int, int]:
        """Policy ticks and ticks on time summed over the robots (last diagnostics)."""
        total = sum(int(v.get("ticks", 0)) for v in self.policy.values())
        on_time = sum(int(v.get("ticks_on_time", 0)) for v in self.policy.values())
        return total, on_time

    def fallbacks(self) -> int | None:
        """CBF fallbacks summed over the filters (None: no filter reported them). Reads the
        cbf_filter node's cumulative ``fallbacks_total``."""
        counts = [
            int(float(v["fallbacks_total"])) for v in self.cbf.values() if "fallbacks_total" in v
        ]
        return sum(counts) if counts else None
