"""The demo's ROS session (node layer): a ROS domain no other run uses."""

from __future__ import annotations

import random
import time

import rclpy
from rclpy.signals import SignalHandlerOptions

__all__ = ["free_domain"]


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
