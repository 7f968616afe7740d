"""Per-robot DMAR agents benchmark (issue #14 part 2): tick compute and lockstep equality.

Measures, with the core message simulator (``dmar_agent.distributed``, no ROS):

* ``lockstep_equal_pct``: share of seeded instances on which the message-level run (one
  ``DmarAgent`` per robot, lockstep relay) gives exactly ``run_dmar``'s per-step controls,
  clusters, cost, compute and iterations. Instances: 9x9 with 7 agents (psi = 2, the paper's
  Robotarium setting) and 20x20 with 20 agents (psi = 2 and 3), several k, 1:1 tasks.
* ``tick_compute_p99_ms`` / ``_max_ms``: wall time of one agent round (``DmarAgent.round``),
  every robot and every round of the runs, with TMAR's rollout in a worker thread
  (``background_plan``, the node's setting): the longest time one call blocks the robot's loop.
  ``plan_round_sync_p99_ms`` / ``_max_ms``: the planning round when the rollout runs inline
  (from the lockstep runs), i.e. what the leader's loop would stall for without the worker.
  Per setting: the same keys with ``_9x9``, ``_20x20_psi2``, ``_20x20_psi3`` (``--quick``: one
  radius per setting, seed 0).

Over ROS 2 (real DDS, everything composed in one process through the bringup,
``dmar_agent.ros.mission_run``), the issue's goals:

* ``lockstep_equal_pct``: share of seeded 5 x 5 instances (3 drones, psi = 1, k = 2; seeds
  0..9, ``--quick``: 0) on which the ROS run with the continuous-space interference off (no
  CBF, no yield rule) gives the core simulator's clusters, per-step controls and cost
  (``run_distributed``, equal to ``run_dmar``). The core-only figures above keep the prefix
  ``core_``.
* ``tasks_visited_pct`` / ``min_separation_margin_m`` (smallest pair distance minus Ds, worst
  run): runs of launch/dmar.yaml and launch/dmar_mixed.yaml with the CBF, seeds 0..9 each
  (``--quick``: one 5 x 5 run of each team instead, ``mission_runs_config`` says which);
  ``ticks_on_time_pct_n7`` and ``tick_compute_p99_ms`` (the DMAR nodes' 20 Hz timer and the
  longest callback of a node, p99 over every node of the dmar.yaml runs; ``--quick``: of the
  5 x 5 runs, keys ``ticks_on_time_pct`` / ``tick_compute_p99_ms``).
* ``rtf_n20``: the world's real-time factor with 20 robots on a 4 m x 4 m arena of 20 x 20
  cells (psi = 2, k = 2, 10 tasks) over ``rtf_window_s`` of wall time (60 s, ``--quick`` 10 s).

Per team the mission figures also carry the suffix ``_drones`` (dmar.yaml) or ``_mixed``
(dmar_mixed.yaml), with the raw counts ``tasks_visited_<team>`` / ``tasks_total_<team>``, so
that a rerun of one part can be merged into an earlier full JSON.

``--no-ros`` runs the core part only (``--parts core``); ``--parts`` picks any of ``core``,
``lockstep``, ``drones``, ``mixed``, ``rtf`` (comma separated; default all), e.g. ``--parts
mixed`` reruns the mixed team's missions only; ``--merge`` updates the ``--json`` file in place
(keys of the parts not rerun are kept, the combined mission keys recomputed from the per-team
ones; ``load_avg_1min_<part>`` / ``bench_wall_s_<part>``: the load at the start and the
wall time of the invocation that reran the part); ``--seeds N`` sets the
seeds of the full ROS part (10).

Usage: python benchmarks/dmar_robots.py [--quick] [--no-ros] [--parts P,..] [--seeds N]
                                        [--json FILE [--merge]]
       python benchmarks/dmar_robots.py --table FILE.json   (the README's ROS table)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from dmar_agent.distributed import reference_trace, run_distributed
from dmar_agent.protocols import DmarConfig
from dmar_agent.world import make_instance

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 200)))
REPO = Path(__file__).resolve().parents[1]
EQUALITY = {"yield_occupied": False, "stuck_timeout_s": 1e6}
PARTS = ("core", "lockstep", "drones", "mixed", "rtf")
TEAMS = {"drones": "dmar.yaml", "mixed": "dmar_mixed.yaml"}

SETTINGS = {
    "9x9": (9, 7, 2, (1, 2, 3, 4, 16)),
    "20x20_psi2": (20, 20, 2, (4, 8, 12)),
    "20x20_psi3": (20, 20, 3, (4, 8, 12)),
}


def _cases(name: str, seeds: int, quick: bool = False) -> list:
    n, m, psi, ks = SETTINGS[name]
    if quick:  # one radius per setting: the middle one
        ks = (ks[len(ks) // 2],)
    return [
        (make_instance(n, "1:1", s, n_agents=m), DmarConfig(k=k, psi=psi, seed=s))
        for k in ks
        for s in range(seeds)
    ]


def _equal(inst, cfg) -> tuple[bool, list]:
    ref, rt = reference_trace(inst, cfg)
    got, tr = run_distributed(inst, cfg)
    same = (
        rt.controls == tr.controls
        and rt.clusters == tr.clusters
        and (ref.cost, ref.compute, ref.iterations) == (got.cost, got.compute, got.iterations)
    )
    return same, tr.plan_tick_s


def _pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q)) if len(xs) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer instances (< 1 minute)")
    ap.add_argument("--json", default=None, help="write a flat JSON with the results")
    ap.add_argument("--no-ros", action="store_true", help="core message simulator only")
    ap.add_argument("--seeds", type=int, default=10, help="seeds per team and lockstep (full)")
    ap.add_argument("--table", default=None, help="print the README's ROS table of a JSON, exit")
    ap.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated parts to run, of {PARTS}"
    )
    ap.add_argument("--merge", action="store_true", help="update the --json file in place")
    args = ap.parse_args()
    if args.table:
        with open(args.table) as fh:
            print(ros_table(json.load(fh)))
        return
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    bad = sorted(set(parts) - set(PARTS))
    if bad or not parts:
        ap.error(f"--parts: unknown part(s) {bad or parts}; use a comma list of {PARTS}")
    if args.seeds < 1:
        ap.error("--seeds: must be >= 1")
    if args.merge and not args.json:
        ap.error("--merge: needs --json FILE (the file to update)")
    if args.no_ros:
        parts = ["core"]
    t_start = time.perf_counter()
    out: dict = {"load_avg_1min": os.getloadavg()[0]}
    if "core" in parts:
        out.update(core_part(args.quick))
    ros = [x for x in parts if x != "core"]
    if ros:
        out.update(ros_part(args.quick, args.seeds, ros))
    out["bench_wall_s"] = time.perf_counter() - t_start
    if args.merge:
        out = merge(Path(args.json), out, parts)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, sort_keys=True)


def merge(path: Path, new: dict, parts: list) -> dict:
    """``path``'s figures updated with ``new`` (the parts just run); the combined mission keys
    recomputed from the per-team keys when both teams' are known."""
    old = json.loads(path.read_text()) if path.exists() else {}
    load = new.pop("load_avg_1min")
    wall = new.pop("bench_wall_s")
    for key in (*_combined_keys(), "mission_runs_config"):  # over the teams just run only
        new.pop(key, None)
    old.update(new)
    for part in parts:
        old[f"load_avg_1min_{part}"] = load
        old[f"bench_wall_s_{part}"] = wall
    if all(f"tasks_total_{t}" in old for t in TEAMS):
        old.update(_combined(old, list(TEAMS)))
        old["mission_runs_config"] = " + ".join(old[f"mission_runs_config_{t}"] for t in TEAMS)
    elif any(t in parts for t in TEAMS):
        print(
            f"note: {path} has no per-team figures of every team; its combined mission keys "
            "were left as they were (rerun both teams: --parts drones,mixed)",
            flush=True,
        )
    return old


def _combined_keys() -> tuple:
    return (
        "tasks_visited_pct",
        "tasks_all_visited_runs",
        "mission_runs",
        "min_separation_margin_m",
        "cbf_fallbacks",
        "watchdog_landings",
    )


def _combined(d: dict, teams: list) -> dict:
    """The mission keys over ``teams`` from their per-team keys."""
    visited = sum(d[f"tasks_visited_{t}"] for t in teams)
    total = sum(d[f"tasks_total_{t}"] for t in teams)
    return {
        "tasks_visited_pct": 100.0 * visited / max(total, 1),
        "tasks_all_visited_runs": sum(d[f"tasks_all_visited_runs_{t}"] for t in teams),
        "mission_runs": sum(d[f"mission_runs_{t}"] for t in teams),
        "min_separation_margin_m": min(d[f"min_separation_margin_m_{t}"] for t in teams),
        "cbf_fallbacks": sum(d[f"cbf_fallbacks_{t}"] for t in teams),
        "watchdog_landings": sum(d[f"watchdog_landings_{t}"] for t in teams),
    }


def core_part(quick: bool) -> dict:
    """The core message simulator's figures (module docstring)."""
    seeds = 1 if quick else 4
    out: dict[str, float] = {}
    rows = []
    all_ticks: list = []
    all_plan: list = []
    n_equal = n_cases = 0
    t_start = time.perf_counter()
    for name in SETTINGS:
        cases = _cases(name, seeds, quick)
        ticks, plan_bg, plan_sync = [], [], []
        eq = 0
        for inst, cfg in cases:
            same, plan = _equal(inst, cfg)
            eq += same
            plan_sync += plan
            _, tr = run_distributed(inst, cfg, background_plan=True)
            ticks += tr.tick_s
            plan_bg += tr.plan_tick_s
        n_equal += eq
        n_cases += len(cases)
        all_ticks += ticks
        all_plan += plan_sync
        out[f"tick_compute_p99_ms_{name}"] = _pct(ticks, 99)
        out[f"tick_compute_max_ms_{name}"] = _pct(ticks, 100)
        out[f"plan_round_sync_p99_ms_{name}"] = _pct(plan_sync, 99)
        out[f"plan_round_sync_max_ms_{name}"] = _pct(plan_sync, 100)
        out[f"lockstep_equal_pct_{name}"] = 100.0 * eq / len(cases)
        rows.append(
            (
                name,
                len(cases),
                out[f"lockstep_equal_pct_{name}"],
                _pct(ticks, 50),
                out[f"tick_compute_p99_ms_{name}"],
                out[f"tick_compute_max_ms_{name}"],
                out[f"plan_round_sync_p99_ms_{name}"],
                out[f"plan_round_sync_max_ms_{name}"],
            )
        )
    out["core_lockstep_instances"] = n_cases
    out["core_lockstep_equal_pct"] = 100.0 * n_equal / n_cases
    out["core_tick_compute_p99_ms"] = _pct(all_ticks, 99)
    out["core_tick_compute_max_ms"] = _pct(all_ticks, 100)
    out["plan_round_sync_p99_ms"] = _pct(all_plan, 99)
    out["plan_round_sync_max_ms"] = _pct(all_plan, 100)
    wall = time.perf_counter() - t_start

    head = ("setting", "runs", "equal %", "tick p50", "tick p99", "tick max", "plan p99*", "max*")
    print("{:12s} {:>5s} {:>8s} {:>9s} {:>9s} {:>9s} {:>10s} {:>8s}".format(*head))
    for r in rows:
        print("{:12s} {:5d} {:8.1f} {:9.3f} {:9.3f} {:9.2f} {:10.2f} {:8.2f}".format(*r))
    print("ticks [ms]: one DmarAgent.round, background planning; * planning round inline [ms]")
    print(
        f"core: lockstep_equal_pct {out['core_lockstep_equal_pct']:.1f} on {n_cases} instances; "
        f"tick_compute_p99_ms {out['core_tick_compute_p99_ms']:.3f}; "
        f"load {os.getloadavg()[0]:.1f}; {wall:.0f} s"
    )
    return out


# ----------------------------------------------------------------------------- over ROS 2


def _ros_lockstep(seeds: range, tmp: Path) -> dict:
    from dmar_agent.mission.configs import routing_config
    from dmar_agent.mission.scenario import core_instance
    from dmar_agent.ros.mission_run import lockstep_equal, run_mission
    from sim_bridge.config import load_config

    equal = 0
    for seed in seeds:
        path = routing_config(tmp / f"eq{seed}.yaml", seed=seed)
        inst, dcfg = core_instance(load_config(path))
        core, trace = run_distributed(inst, dcfg)
        run = run_mission(path, cbf=False, node_params=EQUALITY, stop_at_step=core.ps_steps,
                          stop_when_done=False, duration=300.0)  # fmt: skip
        cmp = lockstep_equal(run, core, trace, len(inst.agents))
        equal += cmp["equal"]
        print(f"  lockstep seed {seed}: {cmp}", flush=True)
    return {"lockstep_equal_pct": 100.0 * equal / len(seeds), "lockstep_ros_instances": len(seeds)}


def _missions(configs: list, tmp: Path) -> tuple[dict, list]:
    """Runs of the given (config, seed) pairs with the CBF; returns figures (the keys of
    :func:`_combined` and the raw task counts) and the runs."""
    import yaml
    from dmar_agent.ros.mission_run import run_mission

    runs = []
    for config, seed in configs:
        doc = yaml.safe_load(Path(config).read_text())
        doc["seed"] = seed
        path = tmp / f"{Path(config).stem}_{seed}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        run = run_mission(path, duration=300.0)
        runs.append(run)
        d = run.node_diagnostics.values()
        print(f"  {Path(config).name} seed {seed}: {run.tasks_visited}/{run.tasks_total} tasks, "
              f"min sep {run.min_separation_m:.3f} m, {run.ps_step} steps, "
              f"{run.wall_s:.0f} s; watchdog landings {run.watchdog_landings}, rounds timed "
              f"out {sum(int(x['rounds_timed_out']) for x in d)}, back-offs "
              f"{sum(int(x['backoffs']) for x in d)}, skipped steps "
              f"{sum(int(x['agent_skipped_steps']) for x in d)}; load "
              f"{os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    visited = sum(r.tasks_visited for r in runs)
    total = sum(r.tasks_total for r in runs)
    return {
        "tasks_visited": visited,
        "tasks_total": total,
        "tasks_visited_pct": 100.0 * visited / max(total, 1),
        "tasks_all_visited_runs": sum(r.tasks_visited == r.tasks_total for r in runs),
        "mission_runs": len(runs),
        "min_separation_margin_m": min(r.min_separation_m - r.safety_distance_m for r in runs),
        "cbf_fallbacks": sum(r.cbf_fallbacks for r in runs),
        "watchdog_landings": sum(r.watchdog_landings for r in runs),
    }, runs


def _node_timing(runs: list) -> tuple[float, float]:
    ticks = sum(int(d["ticks"]) for r in runs for d in r.node_diagnostics.values())
    on = sum(int(d["ticks_on_time"]) for r in runs for d in r.node_diagnostics.values())
    comp = [x for r in runs for x in r.tick_compute_ms]
    return 100.0 * on / max(ticks, 1), float(np.percentile(comp, 99)) if comp else float("nan")


def _rtf_n20(window: float, tmp: Path) -> float:
    from dmar_agent.mission.configs import routing_config
    from dmar_agent.ros.mission_run import run_mission

    path = routing_config(tmp / "n20.yaml", seed=0, rows=20, cols=20, robots=20, tasks=10,
                          psi=2)  # fmt: skip
    run = run_mission(path, duration=window, stop_when_done=False)
    print(f"  20 x 20, 20 robots: rtf {run.result.rtf:.3f}, {run.ps_step} PS steps in "
          f"{run.wall_s:.0f} s", flush=True)  # fmt: skip
    return float(run.result.rtf)


def ros_table(d: dict) -> str:
    """Markdown table of the ROS goals in a full run's JSON (the dmar_agent README's)."""
    rows = [
        ("lockstep_equal_pct", "100",
         f"{d['lockstep_equal_pct']:.0f} % on {d['lockstep_ros_instances']} seeded 5 x 5 runs"),
        ("tasks_visited_pct", "100",
         f"{d['tasks_visited_pct']:.0f} % ({d['tasks_all_visited_runs']}/{d['mission_runs']} runs "
         f"complete; {d['mission_runs_config']})"),
        ("min_separation_margin_m", ">= 0",
         f"{d['min_separation_margin_m']:.3f} m (worst run; CBF fallbacks {d['cbf_fallbacks']})"),
        ("ticks_on_time_pct_n7", ">= 99", f"{d['ticks_on_time_pct_n7']:.2f} %"),
        ("tick_compute_p99_ms", "<= 25", f"{d['tick_compute_p99_ms']:.2f} ms"),
        ("rtf_n20", ">= 1", f"{d['rtf_n20']:.3f} ({d['rtf_window_s']:.0f} s window)"),
    ]  # fmt: skip
    lines = ["| key | goal | measured |", "|---|---|---|"]
    return "\n".join(lines + [f"| `{k}` | {g} | {v} |" for k, g, v in rows])


def ros_part(quick: bool, seeds: int = 10, parts=PARTS[1:]) -> dict:
    """The issue's goals over ROS 2 (module docstring), for the ``parts`` asked."""
    from dmar_agent.mission.configs import routing_config

    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="dmar_bench_") as d:
        tmp = Path(d)
        if "lockstep" in parts:
            out.update(_ros_lockstep(range(1 if quick else seeds), tmp))
        teams = [t for t in TEAMS if t in parts]
        for team in teams:
            if quick:
                ground = 1 if team == "mixed" else 0
                path = routing_config(tmp / f"q_{team}.yaml", seed=2 + ground, ground=ground)
                configs = [(path, 2 + ground)]
            else:
                configs = [(REPO / "launch" / TEAMS[team], s) for s in range(seeds)]
            figures, runs = _missions(configs, tmp)
            out.update({f"{k}_{team}": v for k, v in figures.items()})
            out[f"mission_runs_config_{team}"] = (
                f"quick 5x5 {team}" if quick else f"launch/{TEAMS[team]} seeds 0..{seeds - 1}"
            )
            if team == "drones":  # the node timing goals: the 7 drones of dmar.yaml
                on_time, p99 = _node_timing(runs)
                out["ticks_on_time_pct" if quick else "ticks_on_time_pct_n7"] = on_time
                out["tick_compute_p99_ms"] = p99
        if teams:
            out.update(_combined(out, teams))
            if quick:
                out["mission_runs_config"] = "5x5 quick (3 robots; mixed: 2 drones + 1 ground)"
            else:
                names = " + ".join(f"launch/{TEAMS[t]}" for t in teams)
                out["mission_runs_config"] = f"{names}, seeds 0..{seeds - 1}"
        if "rtf" in parts:
            out["rtf_window_s"] = 10.0 if quick else 60.0
            out["rtf_n20"] = _rtf_n20(out["rtf_window_s"], tmp)
    print(f"ROS ({', '.join(parts)}): " + "; ".join(
        f"{k} {out[k]:.3f}" for k in (
            "lockstep_equal_pct", "tasks_visited_pct", "min_separation_margin_m",
            "ticks_on_time_pct", "ticks_on_time_pct_n7", "tick_compute_p99_ms", "rtf_n20",
        ) if k in out
    ) + f"; load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    return out


if __name__ == "__main__":
    main()
