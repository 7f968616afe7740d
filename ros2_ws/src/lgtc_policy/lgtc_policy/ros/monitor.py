"""Mission monitor: an observer of an LGTC run that says when the mission is complete.

It is no part of the control chain (no robot reads anything from it) and records nothing (the
run's one recording is the runner's MCAP, which the report reads). The bringup runner makes
it through :class:`MissionObserver` and spins it in the swarm's own executor
(``run_composed`` / ``run_processes`` ``observers=``); the runner ends the run when
:meth:`MissionObserver.should_stop` says so.

At every world publication (one ``/consumers`` table per 20 Hz sim tick) it compares the
remaining demand with the initial demand: ``complete_t`` is the sim time (``/clock``) at which
the remaining demand first reached ``complete_tol`` of the initial demand.
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sim_bridge import topics
from sim_bridge.ros import qos
from std_msgs.msg import Float64MultiArray

__all__ = ["MissionMonitor", "MissionObserver"]


class MissionMonitor(Node):
    """Watches the remaining demand of a swarm run (see the module docstring)."""

    def __init__(self, cfg, node_name: str = "mission_monitor", complete_tol=1e-3, **kwargs):
        super().__init__(node_name, **kwargs)
        self.r = len(cfg.resource_types)
        self.demand0 = cfg.demand_matrix()
        self.sim_t = 0.0
        self.complete_t: float | None = None
        self.malformed = 0
        self.complete_tol = float(complete_tol)
        self.create_subscription(Float64MultiArray, topics.CONSUMERS, self._on_consumers, qos.QUEUE)
        self.create_subscription(Clock, topics.CLOCK, self._on_clock, qos.QUEUE)

    def _on_clock(self, msg: Clock) -> None:
        self.sim_t = msg.clock.sec + msg.clock.nanosec * 1e-9

    def _on_consumers(self, msg: Float64MultiArray) -> None:
        cols = len(topics.CONSUMER_FIXED_FIELDS) + self.r
        data = np.asarray(msg.data, dtype=float)
        if data.size != len(self.demand0) * cols:
            self.malformed += 1  # not this swarm's table (e.g. another run on the domain)
            return
        demand = data.reshape(-1, cols)[:, len(topics.CONSUMER_FIXED_FIELDS) :]
        total0 = float(self.demand0.sum())
        if self.complete_t is None and float(demand.sum()) <= self.complete_tol * total0:
            self.complete_t = self.sim_t


class MissionObserver:
    """Factory of the run's :class:`MissionMonitor` for the bringup runner (``observers=``),
    and its stop rule: with ``stop_when_done``, end the run ``linger`` sim seconds after the
    mission completed."""

    def __init__(self, cfg, stop_when_done: bool = True, linger: float = 2.0) -> None:
        self.cfg = cfg
        self.stop_when_done = stop_when_done
        self.linger = float(linger)
        self.node: MissionMonitor | None = None

    def __call__(self, **kwargs) -> MissionMonitor:
        """Make the monitor (``kwargs``: Node options from the runner, e.g. ``context``)."""
        self.node = MissionMonitor(self.cfg, **kwargs)
        return self.node

    def should_stop(self) -> bool:
        """True once the mission is complete and ``linger`` more sim seconds have passed."""
        node = self.node
        return (
            self.stop_when_done
            and node is not None
            and node.complete_t is not None
            and node.sim_t >= node.complete_t + self.linger
        )
