"""Mission benchmark: the LGTC swarm over ROS 2 (composed), N = 10 and N = 30.

Runs ``launch/demo.yaml`` (N = 10, M = 4) and a 30-robot variant of it (same consumers,
demands x3, robots on a 6 x 5 grid) through :func:`lgtc_policy.demo.run_demo` for a fixed wall
time each, side by side in one process, and reports:

* ``ticks_on_time_pct_n10`` / ``_n30``: policy ticks that started within 1.5 periods of the
  previous one (20 Hz), over all robots [%];
* ``reward_ratio_ros_vs_core``: episode reward of the N = 10 ROS run (its 20 Hz positions
  replayed through the env's eq. 2) / the same policy on the same scenario in the core env;
  ``reward_ratio_ros_vs_core_cbf``: the same with the core env's actions through the
  centralized CBF, like the ROS chain;
* ``min_separation_margin_m``: smallest distance between two airborne robots minus the CBF
  safety distance, over both runs [m];
* world real-time factors and policy compute times;
* ``load_avg_1min_start`` / ``_end``: the machine's 1-minute load average around the runs (the
  figures follow the load on a shared machine).

``--quick`` runs 8 s per size (< 1 min); the default 40 s. ``--json FILE`` writes the keys.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "launch" / "demo.yaml"


def thirty_robot_config(src: Path, dst: Path, checkpoint: str | None) -> Path:
    """demo.yaml scaled to 30 robots: 6 x 5 grid 0.4 m apart, demands x3 (supply <= demand)."""
    data = yaml.safe_load(src.read_text())
    base = data["robots"]
    robots = []
    xs = [-1.75, -1.05, -0.35, 0.35, 1.05, 1.75]
    ys = [-1.8, -1.4, -1.0, -0.6, -0.2]
    for k in range(30):
        r = copy.deepcopy(base[k % len(base)])
        r["name"] = f"cf{k + 1}"
        r["pose"] = [xs[k % 6], ys[k // 6], 0.0, 0.0]
        robots.append(r)
    data["robots"] = robots
    for c in data["consumers"]:
        c["demand"] = {t: 3.0 * v for t, v in c["demand"].items()}
    data["policy"] = {"checkpoint": checkpoint or _abs_checkpoint(src, data)}
    dst.write_text(yaml.safe_dump(data, sort_keys=False))
    return dst


def _abs_checkpoint(src: Path, data: dict) -> str:
    from sim_bridge.config import load_config

    cfg = load_config(src)
    try:
        return str(cfg.resolve_checkpoint())
    except FileNotFoundError:
        return data["policy"]["checkpoint"]


def run(duration: float, checkpoint: str | None) -> dict:
    from lgtc_policy.demo import DemoOptions, run_demo

    out: dict = {"load_avg_1min_start": os.getloadavg()[0]}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_mission_") as tmp:
        tmp = Path(tmp)
        cfg30 = thirty_robot_config(DEMO, tmp / "demo30.yaml", checkpoint)
        for n, config, compare in ((10, DEMO, True), (30, cfg30, False)):
            t0 = time.perf_counter()
            v = run_demo(
                DemoOptions(
                    config=str(config),
                    out=str(tmp / f"n{n}"),
                    duration=duration,
                    checkpoint=checkpoint,
                    stop_when_done=False,
                    record=False,
                    gif=False,
                    expert=False,
                    status_every=0,
                ),
                out=open("/dev/null", "w"),  # noqa: SIM115 (closed with the process)
            )
            v["bench_wall_s"] = time.perf_counter() - t0
            rows.append((n, v))
            out[f"ticks_on_time_pct_n{n}"] = v["ticks_on_time_pct"]
            out[f"rtf_n{n}"] = v["rtf"]
            out[f"policy_compute_p50_ms_n{n}"] = v["policy_compute_p50_ms"]
            out[f"policy_compute_p99_ms_n{n}"] = v["policy_compute_p99_ms"]
            out[f"min_separation_margin_m_n{n}"] = v["min_separation_margin_m"]
            if compare:
                out["reward_ratio_ros_vs_core"] = v.get("reward_ratio_ros_vs_core", math.nan)
                out["reward_ros_n10"] = v.get("reward_ros", math.nan)
                out["reward_core_n10"] = v.get("reward_core", math.nan)
                out["reward_core_cbf_n10"] = v.get("reward_core_cbf", math.nan)
                out["reward_ratio_ros_vs_core_cbf"] = v.get(
                    "reward_ratio_ros_vs_core_cbf", math.nan
                )
    out["min_separation_margin_m"] = min(
        out["min_separation_margin_m_n10"], out["min_separation_margin_m_n30"]
    )
    out["duration_s"] = duration
    out["load_avg_1min_end"] = os.getloadavg()[0]
    print(
        f"{'N':>3} {'wall s':>7} {'rtf':>5} {'on time %':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'margin m':>8}"
    )
    for n, v in rows:
        print(
            f"{n:>3} {v['bench_wall_s']:7.1f} {v['rtf']:5.2f} {v['ticks_on_time_pct']:9.2f} "
            f"{v['policy_compute_p50_ms']:7.2f} {v['policy_compute_p99_ms']:7.2f} "
            f"{v['min_separation_margin_m']:8.3f}"
        )
    print(
        f"load average (1 min) {out['load_avg_1min_start']:.2f} at the start, "
        f"{out['load_avg_1min_end']:.2f} at the end"
    )
    print(
        f"reward ROS {out['reward_ros_n10']:.3f} vs core {out['reward_core_n10']:.3f}: "
        f"ratio {out['reward_ratio_ros_vs_core']:.3f}; vs core + CBF "
        f"{out['reward_core_cbf_n10']:.3f}: ratio {out['reward_ratio_ros_vs_core_cbf']:.3f}"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="8 s per size (< 1 min)")
    p.add_argument("--duration", type=float, default=None, help="wall seconds per size")
    p.add_argument("--checkpoint", default=None, help="override demo.yaml's policy.checkpoint")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    ns = p.parse_args(argv)
    duration = ns.duration or (8.0 if ns.quick else 40.0)
    from lgtc_policy.agent import MissionError

    try:
        out = run(duration, ns.checkpoint)
    except MissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in out.items()
        }
        Path(ns.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ns.json).write_text(json.dumps(clean, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
