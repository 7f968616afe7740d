"""Mission benchmark: the LGTC swarm over ROS 2, N = 10, 30 and 50, loaded, and in groups.

Runs ``launch/demo.yaml`` (N = 10, M = 4) and 30- and 50-robot variants of it (same
consumers, demands x3 / x5, robots on a 6 x 5 / 10 x 5 grid) through
:func:`lgtc_policy.mission.demo.run_demo` (composed: one process, the policy nodes ticking in
one batch) for a fixed wall time each, one after the other in one process; then N = 10 again
while a CPU hog busy-loops pinned to core 0 (``_n10_loaded``; the benchmark starts and stops
it), and N = 30 split over two processes (``swarm up --groups 2``: ``_n30_groups2``). Keys:

* ``ticks_on_time_pct_n<N>``: policy ticks that started within 1.5 periods of the previous
  one (20 Hz), over all robots [%]; ``ticks_missed_n<N>``: periods skipped by late ticks
  (summed over the robots);
* ``reward_ratio_ros_vs_core``: episode reward of the N = 10 ROS run (its 20 Hz positions
  replayed through the env's eq. 2) / the same policy on the same scenario in the core env;
  ``reward_ratio_ros_vs_core_cbf``: the same with the core env's actions through the
  centralized CBF, like the ROS chain (``_n30``, ``_n30_groups2``: the same at N = 30);
* ``min_separation_margin_m``: smallest distance between two airborne robots minus the CBF
  safety distance, over both runs [m];
* world real-time factors and policy compute times;
* ``process_cpu_pct_<run>`` (composed runs): CPU time of the swarm's one process over its
  spin phase, in % of one core (less sensitive to other people's jobs than the ticks on
  time); ``cbf_calls_<run>`` / ``cbf_refilters_<run>``: CBF filter calls of all robots, and
  those on a nominal already filtered once (the re-filter of moving neighbours), from the
  filter nodes' last diagnostics;
* ``load_avg_1min_start`` / ``_end``: the machine's 1-minute load average around the runs, and
  per run ``load_avg_1min_<run>`` (at its start), ``machine_busy_pct_<run>`` (all cores busy
  during the run [%]) and ``others_busy_pct_<run>`` (the part not used by this benchmark, its
  group processes or its CPU hog: other people's jobs): the figures follow the load on a
  shared machine.

``--quick`` runs the one-process runs ``n10, n30, n50, n10_loaded`` for 5 s each (under a
minute in all); the default runs all six for 40 s each. ``--only KEY,...`` runs some of
``n10, n30, n50, n10_loaded, n30_groups2, n50_groups2``. ``--json FILE`` writes the keys.
``--sim-time`` runs them with every node on the world's ``/clock`` (``swarm up --sim-time``);
the runs are then named ``<run>_simtime`` (keys ``ticks_on_time_pct_n10_simtime``,
``reward_ratio_ros_vs_core_n10_simtime``, ...), and ``duration`` stays wall time.

``--message-age`` measures instead how old the neighbours' messages are when a policy tick
uses them (tick time minus the sender's stamp, every tick of every robot after the first third
of the run), for each comm relay delivery mode (``before_tick``, ``periodic``, and one
publication per copy) at N = 10 and 30, composed; keys ``message_age_p50_ms_<mode>_n<N>``
(also ``_p10_``, ``_p90_``, ``message_age_over_100ms_pct_<mode>_n<N>``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "launch" / "demo.yaml"


def scaled_config(src: Path, dst: Path, checkpoint: str | None, n: int) -> Path:
    """demo.yaml scaled to ``n`` robots (a multiple of 5, at least 10): 5 rows of ``n / 5``
    robots across 3.5 m (0.7 m apart at 30, 0.39 m at 50), rows 0.4 m apart, demands
    x ``n / 10`` (supply <= demand)."""
    data = yaml.safe_load(src.read_text())
    base = data["robots"]
    cols = n // 5
    xs = [-1.75 + 3.5 * c / (cols - 1) for c in range(cols)]
    ys = [-1.8, -1.4, -1.0, -0.6, -0.2]
    robots = []
    for k in range(n):
        r = copy.deepcopy(base[k % len(base)])
        r["name"] = f"cf{k + 1}"
        r["pose"] = [round(xs[k % cols], 4), ys[k // cols], 0.0, 0.0]
        robots.append(r)
    data["robots"] = robots
    for c in data["consumers"]:
        c["demand"] = {t: n / 10 * v for t, v in c["demand"].items()}
    data["policy"] = {"checkpoint": checkpoint or _abs_checkpoint(src, data)}
    dst.write_text(yaml.safe_dump(data, sort_keys=False))
    return dst


def thirty_robot_config(src: Path, dst: Path, checkpoint: str | None) -> Path:
    """demo.yaml scaled to 30 robots: 6 x 5 grid 0.7 m apart, demands x3 (supply <= demand)."""
    return scaled_config(src, dst, checkpoint, 30)


def _abs_checkpoint(src: Path, data: dict) -> str:
    from sim_bridge.config import load_config

    cfg = load_config(src)
    try:
        return str(cfg.resolve_checkpoint())
    except FileNotFoundError:
        return data["policy"]["checkpoint"]


class CpuHog:
    """A busy loop pinned to core 0 for the ``with`` block (a loaded laptop's other job)."""

    def __enter__(self):
        code = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


def _demo(
    config: Path,
    out: Path,
    duration: float,
    checkpoint: str | None,
    compare: bool,
    sim_time: bool = False,
):
    """The demo's report values, with ``process_cpu_pct`` of the composed run added."""
    from lgtc_policy.mission.demo import DemoOptions, run_demo
    from sim_bridge.ros import runner

    composed = runner.run_composed
    cpu: list[float] = []

    def measured(*args, **kwargs):
        res = composed(*args, **kwargs)
        cpu.append(res.cpu_percent)
        return res

    opts = DemoOptions(
        config=str(config),
        out=str(out),
        duration=duration,
        checkpoint=checkpoint,
        stop_when_done=False,
        gif=False,
        expert=False,
        compare=compare,
        status_every=0,
        sim_time=sim_time,
    )
    with open(os.devnull, "w") as null, mock.patch.object(runner, "run_composed", measured):
        values = run_demo(opts, out=null)
    values["process_cpu_pct"] = cpu[0] if cpu else math.nan
    return values


def _missed(mcap: Path, config: Path) -> int:
    """Ticks missed by the policy nodes of a recorded run (their last diagnostics)."""
    from sim_bridge.config import load_config
    from sim_bridge.recording import read_run

    last: dict[str, int] = {}
    for _, name, values in read_run(mcap, load_config(config)).diagnostics:
        if name.startswith("lgtc_policy:") and "ticks_missed" in values:
            last[name] = int(values["ticks_missed"])
    return sum(last.values())


def _cbf_counts(mcap: Path, config: Path) -> tuple[int, float]:
    """``(calls, refilters)`` of the CBF filter nodes of a recorded run (their last
    diagnostics; refilters NaN where the nodes do not report them)."""
    from sim_bridge.config import load_config
    from sim_bridge.recording import read_run

    last: dict[str, dict] = {}
    for _, name, values in read_run(mcap, load_config(config)).diagnostics:
        if name.startswith("cbf_filter:") and "ticks" in values:
            last[name] = values
    calls = sum(int(v["ticks"]) for v in last.values())
    if last and all("refilters" in v for v in last.values()):
        return calls, float(sum(int(v["refilters"]) for v in last.values()))
    return calls, math.nan


def _groups(
    config: Path, out: Path, duration: float, groups: int, compare: bool, sim_time: bool = False
) -> dict:
    """The demo's figures for ``swarm up --groups`` (each group composed in its process):
    the run recorded here, then the report's metrics and the core comparison."""
    from lgtc_policy.mission.demo import _ros_env, compare_with_core
    from lgtc_policy.mission.report import node_metrics, ros_metrics
    from lgtc_policy.mission.scenario import scenario_from_config
    from lgtc_policy.model.checkpoint import build_net, load_checkpoint
    from rclpy.node import Node
    from rosgraph_msgs.msg import Clock
    from sim_bridge import topics
    from sim_bridge.config import load_config
    from sim_bridge.recording import read_run
    from sim_bridge.ros.runner import run_groups

    class SimTime(Node):
        """The world's sim time: the run lasts ``duration`` of it, as a composed run's wall
        time after its nodes exist (the groups' processes take seconds to start)."""

        t = 0.0

        def __init__(self, **kwargs) -> None:
            super().__init__("bench_sim_time", **kwargs)
            self.create_subscription(Clock, topics.CLOCK, self._on_clock, 10)

        def _on_clock(self, msg) -> None:
            SimTime.t = msg.clock.sec + msg.clock.nanosec * 1e-9

    _ros_env()
    cfg = load_config(config)
    out.mkdir(parents=True, exist_ok=True)
    mcap = out / "run.mcap"
    argv = [sys.executable, "-m", "sim_bridge.cli", "up", str(config), "--takeoff"]
    argv += ["--sim-time"] if sim_time else []
    with open(os.devnull, "w") as null:
        res = run_groups(
            [*argv, "--status-every", "0"],
            cfg,
            groups,
            duration=duration + 120.0,
            should_stop=lambda: SimTime.t >= duration,
            observers=[SimTime],
            record=str(mcap),
            record_diagnostics=True,
            status_every=0,
            out=null,
            log_dir=str(out / "logs"),
        )
    run = read_run(mcap, cfg)
    values = {"rtf": res.rtf, "errors": res.errors}
    values.update(ros_metrics(cfg, run.times, run.positions, run.demands))
    figures, notes = node_metrics(run.diagnostics)
    values.update(figures)
    if not compare:
        return values
    ck = load_checkpoint(cfg.resolve_checkpoint())
    scenario = scenario_from_config(cfg, cfg.rates.control_hz)
    values.update(
        compare_with_core(
            cfg,
            scenario,
            dict(ck["env_config"]),
            build_net(ck, "policy"),
            run.times,
            run.positions,
            argparse.Namespace(seed=0, expert=False),
            notes,
        )
    )
    return values


#: name -> (robots, compare with the core env, CPU hog, groups)
RUNS = {
    "n10": (10, True, False, 1),
    "n30": (30, True, False, 1),
    "n50": (50, False, False, 1),
    "n10_loaded": (10, False, True, 1),
    "n30_groups2": (30, True, False, 2),
    "n50_groups2": (50, False, False, 2),
}
#: What ``--quick`` runs (the groups runs start K + 1 processes: over a minute together).
QUICK_RUNS = ("n10", "n30", "n50", "n10_loaded")


def _cpu_jiffies() -> tuple[int, int]:
    """``(busy, total)`` jiffies of the whole machine (Linux ``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _one(
    name: str, tmp: Path, duration: float, checkpoint: str | None, sim_time: bool = False
) -> dict:
    n, compare, hog, groups = RUNS[name]
    config = DEMO if n == 10 else scaled_config(DEMO, tmp / f"demo{n}.yaml", checkpoint, n)
    load0 = os.getloadavg()[0]
    busy0, total0 = _cpu_jiffies()
    own0 = os.times()
    t0 = time.perf_counter()
    if groups > 1:
        if checkpoint:  # the groups read the file: write the override into it
            config = scaled_config(DEMO, tmp / f"demo{n}.yaml", checkpoint, n)
        v = _groups(config, tmp / name, duration, groups, compare, sim_time)
    else:
        with CpuHog() if hog else contextlib.nullcontext():
            v = _demo(config, tmp / name, duration, checkpoint, compare, sim_time)
    v["bench_wall_s"] = time.perf_counter() - t0
    v["missed"] = _missed(tmp / name / "run.mcap", config)
    v["cbf_calls"], v["cbf_refilters"] = _cbf_counts(tmp / name / "run.mcap", config)
    v["load0"], v["load1"] = load0, os.getloadavg()[0]
    busy1, total1 = _cpu_jiffies()
    own1 = os.times()
    cores = os.cpu_count() or 1
    v["machine_busy_pct"] = 100.0 * (busy1 - busy0) / max(total1 - total0, 1)
    own = sum(own1[:4]) - sum(own0[:4])  # this process and its waited-for children [s]
    wall = v["bench_wall_s"]
    v["others_busy_pct"] = max(0.0, v["machine_busy_pct"] - 100.0 * own / (wall * cores))
    return v


def run(
    duration: float, checkpoint: str | None, only: list[str] | None = None, sim_time: bool = False
) -> dict:
    out: dict = {"load_avg_1min_start": os.getloadavg()[0], "cores": os.cpu_count()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_mission_") as tmp:
        for run_name in only or list(RUNS):
            v = _one(run_name, Path(tmp), duration, checkpoint, sim_time)
            name = run_name + ("_simtime" if sim_time else "")
            rows.append((name, v))
            out[f"ticks_on_time_pct_{name}"] = v["ticks_on_time_pct"]
            out[f"ticks_missed_{name}"] = v["missed"]
            out[f"rtf_{name}"] = v["rtf"]
            out[f"policy_compute_p50_ms_{name}"] = v["policy_compute_p50_ms"]
            out[f"policy_compute_p99_ms_{name}"] = v["policy_compute_p99_ms"]
            out[f"min_separation_margin_m_{name}"] = v["min_separation_margin_m"]
            out[f"load_avg_1min_{name}"] = v["load0"]
            out[f"machine_busy_pct_{name}"] = v["machine_busy_pct"]
            out[f"others_busy_pct_{name}"] = v["others_busy_pct"]
            out[f"process_cpu_pct_{name}"] = v.get("process_cpu_pct", math.nan)
            out[f"cbf_calls_{name}"] = v["cbf_calls"]
            out[f"cbf_refilters_{name}"] = v["cbf_refilters"]
            if RUNS[run_name][1]:
                sfx = "" if name == "n10" else f"_{name}"
                out[f"reward_ratio_ros_vs_core{sfx}"] = v.get("reward_ratio_ros_vs_core", math.nan)
                out[f"reward_ratio_ros_vs_core_cbf{sfx}"] = v.get(
                    "reward_ratio_ros_vs_core_cbf", math.nan
                )
                out[f"reward_ros_{name}"] = v.get("reward_ros", math.nan)
                out[f"reward_core_cbf_{name}"] = v.get("reward_core_cbf", math.nan)
    margins = [v for k, v in out.items() if k.startswith("min_separation_margin_m_")]
    out["min_separation_margin_m"] = min(margins) if margins else math.nan
    out["duration_s"] = duration
    out["load_avg_1min_end"] = os.getloadavg()[0]
    _print(rows, out)
    return out


def _print(rows, out: dict) -> None:
    print(
        f"{'run':>12} {'wall s':>7} {'rtf':>5} {'on time %':>9} {'missed':>6} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'margin m':>8} {'cbf ratio':>9} {'load':>5} {'others %':>8} "
        f"{'cpu %':>6} {'cbf calls':>9} {'refilt':>6}"
    )
    for name, v in rows:
        print(
            f"{name:>12} {v['bench_wall_s']:7.1f} {v['rtf']:5.2f} {v['ticks_on_time_pct']:9.2f} "
            f"{out[f'ticks_missed_{name}']:6} {v['policy_compute_p50_ms']:7.2f} "
            f"{v['policy_compute_p99_ms']:7.2f} {v['min_separation_margin_m']:8.3f} "
            f"{v.get('reward_ratio_ros_vs_core_cbf', math.nan):9.3f} {v['load0']:5.2f} "
            f"{v['others_busy_pct']:8.1f} {v.get('process_cpu_pct', math.nan):6.1f} "
            f"{v['cbf_calls']:9} {v['cbf_refilters']:6.0f}"
        )
    print(
        f"load average (1 min) {out['load_avg_1min_start']:.2f} at the start, "
        f"{out['load_avg_1min_end']:.2f} at the end, on {out['cores']} cores"
    )


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
    from lgtc_policy.agent import replace_checkpoint, step_batch
    from lgtc_policy.mission.demo import _ros_env
    from lgtc_policy.ros import batcher
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

        def batch_timed(agents, obs, now_s, stamp_s=None):
            """The co-located robots' batched tick (lgtc_policy.ros.batcher) measured alike."""
            for agent, now in zip(agents, np.broadcast_to(now_s, (len(agents),))):
                ids = agent.neighbours.current(float(now))
                ages.extend((now - agent.neighbours.stamp[ids]).tolist())
            return step_batch(agents, obs, now_s, stamp_s)

        with open(os.devnull, "w") as null, mock.patch.object(batcher, "step_batch", batch_timed):
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
    p.add_argument(
        "--quick", action="store_true", help=f"{', '.join(QUICK_RUNS)} for 5 s each (< 1 min)"
    )
    p.add_argument("--only", default=None, help=f"comma-separated runs of {list(RUNS)}")
    p.add_argument("--duration", type=float, default=None, help="wall seconds per size")
    p.add_argument("--checkpoint", default=None, help="override demo.yaml's policy.checkpoint")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument(
        "--sim-time",
        action="store_true",
        help="every node on the world's /clock (swarm up --sim-time); runs named <run>_simtime",
    )
    p.add_argument(
        "--message-age",
        action="store_true",
        help="measure the age of the messages the policy uses, per relay delivery mode",
    )
    ns = p.parse_args(argv)
    if ns.sim_time and ns.message_age:
        p.error("--sim-time: the message-age runs are on wall time; drop one of the two")
    duration = ns.duration or (5.0 if ns.quick else 40.0)
    from lgtc_policy.agent import MissionError

    try:
        if ns.message_age:
            out = run_message_age(duration, ns.checkpoint)
        else:
            only = ns.only.split(",") if ns.only else (list(QUICK_RUNS) if ns.quick else None)
            unknown = sorted(set(only or ()) - set(RUNS))
            if unknown:
                print(f"error: --only {unknown}: use some of {list(RUNS)}", file=sys.stderr)
                return 2
            out = run(duration, ns.checkpoint, only, ns.sim_time)
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
