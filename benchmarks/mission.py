"""Mission benchmark: the LGTC swarm over ROS 2 (composed), N = 10 and N = 30.

Runs ``launch/demo.yaml`` (N = 10, M = 4) and a 30-robot variant of it (same consumers,
demands x3, robots on a 6 x 5 grid) through :func:`lgtc_policy.mission.demo.run_demo` for a
fixed wall time each, side by side in one process, and reports:

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

``--message-age`` measures instead how old the neighbours' messages are when a policy tick
uses them (tick time minus the sender's stamp, every tick of every robot after the first third
of the run), for each comm relay delivery mode (``before_tick``, ``periodic``, and one
publication per copy) at N = 10 and 30, composed; keys ``message_age_p50_ms_<mode>_n<N>``
(also ``_p10_``, ``_p90_``, ``message_age_over_100ms_pct_<mode>_n<N>``).
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
    from lgtc_policy.mission.demo import DemoOptions, run_demo

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


#: relay delivery modes of ``--message-age``: (name, ``deliver``, ``bundle_period_s``)
RELAY_MODES = (
    ("before_tick", "before_tick", 0.01),
    ("periodic", "periodic", 0.01),
    ("per_copy", "periodic", 0.0),
)


def message_ages(
    config: Path, checkpoint: str | None, deliver: str, period: float, duration: float
):
    """Ages [ms] of the neighbour messages the policy ticks of one composed run used."""
    import numpy as np
    import yaml
    from lgtc_policy.agent import replace_checkpoint
    from lgtc_policy.mission.demo import _ros_env
    from sim_bridge.bringup import plan
    from sim_bridge.config import load_config
    from sim_bridge.ros.runner import run_composed

    _ros_env()
    cfg = load_config(config)
    if checkpoint:
        cfg = replace_checkpoint(cfg, checkpoint)
    with tempfile.TemporaryDirectory(prefix="bench_age_") as tmp:
        path = Path(tmp) / "swarm.yaml"
        mapping = cfg.to_mapping()
        mapping["policy"]["checkpoint"] = str(cfg.resolve_checkpoint())
        path.write_text(yaml.safe_dump(mapping, sort_keys=False))
        specs = plan(cfg, path, cbf=True, autostart=True)
        for spec in specs:
            if spec.plugin == "sim_bridge.ros.relay_node:RelayNode":
                spec.parameters.update(deliver=deliver, bundle_period_s=period)
        ages: list[float] = []

        def on_ready(nodes, context, executor):
            for node in nodes.values():
                agent = getattr(node, "agent", None)
                if agent is None:
                    continue
                step = agent.step

                def timed(obs, now_s, stamp_s=None, agent=agent, step=step):
                    ids = agent.neighbours.current(now_s)
                    ages.extend((now_s - agent.neighbours.stamp[ids]).tolist())
                    return step(obs, now_s, stamp_s)

                agent.step = timed

        with open(os.devnull, "w") as null:
            run_composed(specs, cfg, duration=duration, status_every=0, on_ready=on_ready, out=null)
    a = np.asarray(ages[len(ages) // 3 :]) * 1000.0
    return a if a.size else np.full(1, math.nan)


def run_message_age(duration: float, checkpoint: str | None) -> dict:
    import numpy as np

    out: dict = {"load_avg_1min_start": os.getloadavg()[0]}
    print(f"{'relay':>12} {'N':>3} {'p10 ms':>7} {'p50 ms':>7} {'p90 ms':>7} {'>100 ms %':>9}")
    with tempfile.TemporaryDirectory(prefix="bench_mission_") as tmp:
        cfg30 = thirty_robot_config(DEMO, Path(tmp) / "demo30.yaml", checkpoint)
        for n, config in ((10, DEMO), (30, cfg30)):
            for name, deliver, period in RELAY_MODES:
                a = message_ages(config, checkpoint, deliver, period, duration)
                p10, p50, p90 = np.percentile(a, [10, 50, 90])
                late = 100.0 * float(np.mean(a > 100.0))
                out.update(
                    {
                        f"message_age_p10_ms_{name}_n{n}": float(p10),
                        f"message_age_p50_ms_{name}_n{n}": float(p50),
                        f"message_age_p90_ms_{name}_n{n}": float(p90),
                        f"message_age_over_100ms_pct_{name}_n{n}": late,
                    }
                )
                print(f"{name:>12} {n:>3} {p10:7.1f} {p50:7.1f} {p90:7.1f} {late:9.1f}")
    out["load_avg_1min_end"] = os.getloadavg()[0]
    print(
        f"load average (1 min) {out['load_avg_1min_start']:.2f} at the start, "
        f"{out['load_avg_1min_end']:.2f} at the end"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="8 s per size (< 1 min)")
    p.add_argument("--duration", type=float, default=None, help="wall seconds per size")
    p.add_argument("--checkpoint", default=None, help="override demo.yaml's policy.checkpoint")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument(
        "--message-age",
        action="store_true",
        help="measure the age of the messages the policy uses, per relay delivery mode",
    )
    ns = p.parse_args(argv)
    duration = ns.duration or (8.0 if ns.quick else 40.0)
    from lgtc_policy.agent import MissionError

    try:
        out = (run_message_age if ns.message_age else run)(duration, ns.checkpoint)
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
