"""The demo's rclpy side (node layer): a free ROS domain, and the mission monitor spun in
its own context by a background thread while the bringup runner spins the swarm."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from lgtc_policy.ros.monitor import MissionMonitor

__all__ = ["MonitorThread", "free_domain"]


def free_domain(tries: int = 6, listen_s: float = 0.5) -> int:
    """A random domain id in 1..200 on which no other node is heard within ``listen_s``
    (two runs on one domain would read each other's topics)."""
    rng = random.SystemRandom()
    domain = rng.randint(1, 200)
    for _ in range(tries):
        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
        try:
            probe = rclpy.create_node("mission_domain_probe", context=ctx)
            time.sleep(listen_s)
            busy = len(probe.get_node_names()) > 1
            probe.destroy_node()
        finally:
            rclpy.shutdown(context=ctx)
        if not busy:
            return domain
        domain = rng.randint(1, 200)
    return domain


class MonitorThread:
    """The mission monitor in its own rclpy context, spun by a background thread; once the
    mission is complete it asks the run to stop (SIGINT to this process, which the bringup
    runner turns into a clean shutdown, in both modes)."""

    def __init__(self, cfg, stop_when_done: bool, linger: float):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = MissionMonitor(cfg, context=self.context)
        self.ex = SingleThreadedExecutor(context=self.context)
        self.ex.add_node(self.node)
        self.stop_when_done = stop_when_done
        self.linger = linger
        self.run_active = threading.Event()
        self.requested_stop = False
        self._quit = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self._quit.is_set() and self.context.ok():
            self.ex.spin_once(timeout_sec=0.05)
            done = self.node.complete_t
            if (
                self.stop_when_done
                and done is not None
                and not self.requested_stop
                and self.run_active.is_set()
                and self.node.sim_t >= done + self.linger
            ):
                self.requested_stop = True
                os.kill(os.getpid(), signal.SIGINT)

    def close(self) -> None:
        """Stop the thread, destroy the monitor node and shut its context down."""
        self._quit.set()
        self.thread.join(timeout=5.0)
        self.ex.shutdown()
        self.node.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)
