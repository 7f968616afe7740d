"""Shutdown benchmark: time from SIGINT to exit of every node process, with a CPU hog.

    .venv/bin/python benchmarks/shutdown.py [--quick] [--runs R] [--robots N] [--json FILE]

Each run starts the nodes of launch/demo.yaml (its first ``--robots`` robots; all 10 = the 23
nodes of the demo: world, comm relay, /all services, a CBF filter and an LGTC policy per
robot) one process per node, as ``swarm up --mode processes`` and ``ros2 launch`` do, with
take-off at start; once every node is in the graph and has run for 2 s, one busy-loop process
takes a core, and every node process gets SIGINT at once. Reported over all runs and nodes:
``exit_s_p50``, ``exit_s_p99``, ``exit_s_max`` (SIGINT to exit [s]), ``within_2s_frac``,
``clean_frac`` (exit status 0 and no crash, guard-condition error or traceback in the log),
``nodes``, ``runs``, ``up_s_median`` (start to all nodes in the graph). ``--quick``: 3 robots,
3 runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 200)))

import rclpy  # noqa: E402
from sim_bridge.bringup import plan  # noqa: E402
from sim_bridge.config import load_config  # noqa: E402
from sim_bridge.ros.graph import (  # noqa: E402
    SHUTDOWN_ERRORS,
    busy_loop,
    interrupt,
    start_processes,
    wait_for_nodes,
)

REPO = Path(__file__).resolve().parents[1]


def one_run(specs, probe, workdir: Path, hogs: int) -> tuple[float, list[tuple[str, float, bool]]]:
    """(seconds until all nodes are up, [(fqn, exit_s or inf, clean)])."""
    t0 = time.monotonic()
    procs = start_processes(specs, workdir)
    hog = []
    try:
        seen = wait_for_nodes(probe, [s.fqn for s in specs], 300.0)
        up_s = time.monotonic() - t0
        missing = {s.fqn for s in specs} - set(seen)
        if missing:
            raise RuntimeError(f"nodes {sorted(missing)} did not come up; logs in {workdir}")
        time.sleep(2.0)
        hog = busy_loop(hogs)
        time.sleep(0.5)
        interrupt(procs, wait_s=10.0)
    finally:
        for h in hog:
            h.kill()
            h.wait()
    rows = []
    for p in procs:
        log = p.log_text()
        clean = p.proc.returncode == 0 and not any(e in log for e in SHUTDOWN_ERRORS)
        rows.append((p.spec.fqn, p.exit_s if p.exit_s is not None else float("inf"), clean))
    return up_s, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 robots, 3 runs")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--robots", type=int, default=10, help="first N robots of demo.yaml")
    ap.add_argument("--hogs", type=int, default=1, help="busy-loop processes (cores taken)")
    ap.add_argument("--json", help="write the results as flat JSON here")
    args = ap.parse_args()
    runs, robots = (3, 3) if args.quick else (args.runs, args.robots)
    tmp = Path(tempfile.mkdtemp(prefix="bench_shutdown_"))
    data = yaml.safe_load((REPO / "launch" / "demo.yaml").read_text())
    data["robots"] = data["robots"][:robots]
    config = tmp / "demo.yaml"
    config.write_text(yaml.safe_dump(data))
    specs = plan(load_config(config), config, autostart=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    probe = rclpy.create_node("shutdown_bench_probe", context=context)
    ups, rows = [], []
    try:
        for r in range(runs):
            up_s, run_rows = one_run(specs, probe, tmp / f"run{r}", args.hogs)
            ups.append(up_s)
            rows += run_rows
            worst = max(run_rows, key=lambda row: row[1])
            bad = [fqn for fqn, _, clean in run_rows if not clean]
            print(f"run {r + 1}/{runs}: {len(run_rows)} nodes up in {up_s:.1f} s, slowest exit "
                  f"{worst[0]} {worst[1]:.3f} s, unclean {bad or 'none'}", flush=True)  # fmt: skip
    finally:
        probe.destroy_node()
        rclpy.shutdown(context=context)
    exits = sorted(e for _, e, _ in rows)
    out = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_count": os.cpu_count() or 0,
        "runs": runs,
        "nodes": len(specs),
        "hogs": args.hogs,
        "up_s_median": statistics.median(ups),
        "exit_s_p50": statistics.median(exits),
        "exit_s_p99": exits[min(len(exits) - 1, round(0.99 * (len(exits) - 1)))],
        "exit_s_max": exits[-1],
        "within_2s_frac": sum(e < 2.0 for e in exits) / len(exits),
        "clean_frac": sum(clean for _, _, clean in rows) / len(rows),
    }
    print(
        f"{len(exits)} node exits: p50 {out['exit_s_p50']:.3f} s, p99 {out['exit_s_p99']:.3f} s, "
        f"max {out['exit_s_max']:.3f} s; within 2 s {100 * out['within_2s_frac']:.0f} %, "
        f"clean {100 * out['clean_frac']:.0f} %; logs in {tmp}"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0 if out["within_2s_frac"] == 1.0 and out["clean_frac"] == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
