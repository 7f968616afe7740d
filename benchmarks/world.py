"""World benchmark: simulator steps/s, and the ROS world's real-time factor, tick period and CPU.

    .venv/bin/python benchmarks/world.py [--quick] [--json FILE]

1. ``sim_steps_per_s_n{10,100,1000}``: :class:`sim_bridge.sim.Simulator` steps per second
   (mixed drones and ground robots, 4 consumers, 2 resource types, fresh commands every
   step), median of repeats.
2. ``rtf_n{10,50}_{composed,processes}``, ``tick_p50_ms_...``, ``tick_p99_ms_...``,
   ``cpu_percent_...``: the world + relay + /all services started by the bringup plan (no
   policy, no CBF), sim at 100 Hz, and a commander node publishing every robot's
   ``cmd_vel`` at 20 Hz (the load a CBF layer puts on the world). The real-time factor is
   sim time / wall time; tick periods are between the world's timer callbacks (10 ms
   nominal); CPU is the summed CPU time of all processes of the run / wall time (100 % = one
   core). Composed mode uses ``swarm up``'s default executor (``auto``: rclpy's
   EventsExecutor for these nodes); ``..._n50_composed_multi`` repeats N = 50 with the
   MultiThreadedExecutor.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 200)))

from sim_bridge.bringup import plan  # noqa: E402
from sim_bridge.config import load_config  # noqa: E402
from sim_bridge.sim import Simulator  # noqa: E402


def swarm(n: int, sim_hz: float = 100.0) -> dict:
    side = int(math.ceil(math.sqrt(n)))
    width = max(4.0, 0.3 * side)
    half = width / 2
    robots = []
    for i in range(n):
        x = -half + (i % side + 0.5) * width / side
        y = -half + (i // side + 0.5) * width / side
        robots.append(
            {
                "name": f"r{i}",
                "kind": "crazyflie" if i % 4 else "ground",
                "pose": [x, y, 0.0, 0.0],
                "radius": 0.05,
                "resources": {
                    "energy": {"amount": 0.2, "depletion": "persistent"},
                    "payload": {"amount": 0.2, "depletion": "instantaneous"},
                },
            }
        )
    consumers = [
        {"name": f"c{m}", "position": [px * half * 0.5, py * half * 0.5], "radius": 0.3,
         "demand": {"energy": 0.1 * n, "payload": 0.1 * n}}
        for m, (px, py) in enumerate([(-1, -1), (1, -1), (-1, 1), (1, 1)])
    ]  # fmt: skip
    return {
        "fileversion": 1,
        "arena": {"x": [-half, half], "y": [-half, half], "z": [0.0, 2.0]},
        "comm_radius": 2.0,
        "sensing_radius": 1.0,
        "rates": {"control_hz": 20, "sim_hz": sim_hz, "clock_hz": 50, "markers_hz": 5},
        "safety": {"distance": 0.15},
        "robots": robots,
        "consumers": consumers,
    }


def bench_sim(n: int, seconds: float) -> float:
    cfg = load_config(swarm(n))
    rates = []
    for _ in range(3):
        sim = Simulator(cfg)
        for i in range(sim.n):
            sim.takeoff(i)
        rng = np.random.default_rng(0)
        cmds = rng.uniform(-0.5, 0.5, (sim.n, 3))
        steps = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            for _ in range(20):
                sim.set_commands(cmds)
                sim.step()
            steps += 20
        rates.append(steps / (time.perf_counter() - t0))
    return float(np.median(rates))


def make_commander(cfg, context):
    """Node publishing every robot's cmd_vel at control_hz (circles, stamped now)."""
    from geometry_msgs.msg import TwistStamped
    from rclpy.node import Node
    from sim_bridge import topics

    class Commander(Node):
        def __init__(self) -> None:
            super().__init__("bench_commander", context=context)
            self.pubs = [
                self.create_publisher(TwistStamped, topics.robot_topic(n, topics.CMD_VEL), 1)
                for n in cfg.robot_names
            ]
            self.msgs = [TwistStamped() for _ in self.pubs]
            self.k = 0
            self.create_timer(1.0 / cfg.rates.control_hz, self.tick)

        def tick(self) -> None:
            stamp = self.get_clock().now().to_msg()
            self.k += 1
            a = 0.05 * self.k
            for i, (pub, msg) in enumerate(zip(self.pubs, self.msgs)):
                msg.header.stamp = stamp
                msg.twist.linear.x = 0.2 * math.cos(a + i)
                msg.twist.linear.y = 0.2 * math.sin(a + i)
                pub.publish(msg)

    return Commander()


def bench_ros(n: int, mode: str, seconds: float, executor: str = "auto") -> dict:
    from sim_bridge.ros.runner import run_composed, run_processes

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "swarm.yaml"
        path.write_text(yaml.safe_dump(swarm(n)))
        cfg = load_config(path)
        specs = plan(cfg, path, policy=False, cbf=False, autostart=True)
        quiet = io.StringIO()
        if mode == "composed":

            def ready(nodes, context, ex):
                ex.add_node(make_commander(cfg, context))

            res = run_composed(specs, cfg, duration=seconds, executor=executor,
                               status_every=0, out=quiet, on_ready=ready)  # fmt: skip
        else:

            def ready(context, ex):
                ex.add_node(make_commander(cfg, context))

            res = run_processes(specs, cfg, duration=seconds + 3.0, status_every=0, out=quiet,
                                log_dir=str(Path(tmp) / "logs"), on_ready=ready)  # fmt: skip
    return {
        "rtf": res.rtf,
        "tick_p50_ms": res.tick_p50_ms,
        "tick_p99_ms": res.tick_p99_ms,
        "cpu_percent": res.cpu_percent,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (< 1 minute in total)")
    ap.add_argument("--json", help="write the results as flat JSON here")
    args = ap.parse_args()
    sim_s = 1.5 if args.quick else 6.0
    ros_s = 5.0 if args.quick else 20.0
    out: dict[str, float | str] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_count": os.cpu_count() or 0,
        "quick": bool(args.quick),
    }
    print(f"{'simulator':<28}{'steps/s':>12}{'x real time @100 Hz':>22}")
    for n in (10, 100, 1000):
        rate = bench_sim(n, sim_s)
        out[f"sim_steps_per_s_n{n}"] = rate
        print(f"  N = {n:<22}{rate:>12.0f}{rate / 100.0:>22.1f}")
    print(f"\n{'ROS world (100 Hz sim)':<28}{'rtf':>8}{'tick p50':>11}{'tick p99':>11}{'cpu %':>8}")
    runs = [(10, "composed", "auto"), (50, "composed", "auto"), (10, "processes", ""),
            (50, "processes", ""), (50, "composed", "multi")]  # fmt: skip
    for n, mode, executor in runs:
        r = bench_ros(n, mode, ros_s, executor or "auto")
        key = f"n{n}_{mode}" + ("_multi" if executor == "multi" else "")
        for k, v in r.items():
            out[f"{k}_{key}"] = v
        label = f"N = {n} {mode}" + (f" ({executor})" if executor else "")
        print(f"  {label:<26}{r['rtf']:>8.3f}{r['tick_p50_ms']:>9.1f}ms{r['tick_p99_ms']:>9.1f}ms"
              f"{r['cpu_percent']:>8.0f}")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
