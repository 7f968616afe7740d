"""Sim time: which clock a node's stamps, checks and loops read (node floor: uses rclpy).

With the standard ROS parameter ``use_sim_time`` true (``swarm up --sim-time``, launch
argument ``use_sim_time:=true``), rclpy's ``TimeSource`` subscribes the node to ``/clock`` and
its ROS clock (``get_clock()``) follows the simulator: stamps, freshness checks and the
timers made on that clock run on sim time. The world publishes ``/clock`` (it is the clock
source; :mod:`sim_bridge.ros.world_node`). Two kinds of timing then need a choice:

* the lateness of a periodic loop is measured on the clock that drives its timer
  (:func:`loop_time`): when the world runs slower than real time, the wall time between two
  sim-time ticks stretches, and a tick that comes one sim period after the previous one is on
  time however long that took on the wall;
* a timer that must run whatever the simulator does (the world's own step timer, which makes
  the time; the comm relay's delivery rhythm, which must fall between two ``/clock`` steps)
  takes a steady clock (:func:`wall_clock`).

Without ``use_sim_time`` both return what the node used before (its own timers' clock, the
caller's monotonic reading), so a run on wall time behaves exactly as it did.
"""

from __future__ import annotations

from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from sim_bridge.bringup import USE_SIM_TIME

__all__ = ["USE_SIM_TIME", "loop_time", "on_sim_time", "wall_clock"]


def on_sim_time(node: Node) -> bool:
    """Whether ``node``'s ROS clock follows ``/clock`` (its ``use_sim_time`` is true)."""
    return bool(node.get_clock().ros_time_is_active)


def loop_time(node: Node, wall_s: float) -> float:
    """Time [s] of a tick of a loop whose timer runs on ``node``'s ROS clock: ``wall_s`` (the
    caller's monotonic reading, e.g. ``time.perf_counter()``) on wall time, the node's sim
    time on sim time. Periods between two values say whether a tick came on time."""
    clock = node.get_clock()
    if clock.ros_time_is_active:
        return clock.now().nanoseconds * 1e-9
    return wall_s


def wall_clock(node: Node) -> Clock | None:
    """The ``clock`` argument of ``create_timer`` for a timer that keeps wall time: ``None``
    (the node's clock, as before) on wall time, a steady clock on sim time."""
    return Clock(clock_type=ClockType.STEADY_TIME) if on_sim_time(node) else None
