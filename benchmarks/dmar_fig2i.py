"""DMAR vs BP in continuous space, the paper's Fig. 2(i) (issue #14 part 5).

Reads the sweep CSV of ``dmar fig2i run`` (``dmar_agent.mission.fig2i``: 30 random 2 m x 2 m
environments x 10 runs x k in 20, 40, 60, 80 cm and infinity x DMAR / BP, 7 agents, psi = 2,
robots in the simulator through the CBF with Algorithm 2), or runs a small one first
(``--envs N --runs R``, into ``--csv``), and writes flat keys:

* ``cost_ratio_bp_vs_dmar_k60cm`` (goal >= 1.2): BP mean cost / DMAR mean cost at k = 60 cm;
  ``cost_ratio_bp_vs_dmar_k{20,40,60,80,inf}cm`` for every radius;
* ``clusters_dmar_k..cm`` / ``clusters_bp_k..cm``: mean clusters formed per run;
* ``completed_pct``, ``min_separation_m`` (smallest robot distance of all runs, vs ``Ds``),
  ``run_wall_s_mean``: wall time of one continuous-space run; ``runs``: rows used.

``--ros-subset N``: the same DMAR runs over ROS 2 for environments 0..N-1 (run 0, k in
``--ros-k``, default 60 cm): each environment becomes a swarm file
(:func:`dmar_agent.mission.configs.instance_config`) flown by the DMAR nodes, the CBF filters
and the simulated world composed over DDS (:func:`dmar_agent.ros.mission_run.run_mission`),
next to the continuous core on the same instance and DMAR seed. Both costs are counted up to
the visit of the last task (the ROS run stops there; the core's ``cost_at_completion``).
Keys per radius: ``ros_cost_k{k}cm`` / ``core_cost_k{k}cm`` (mean moves),
``ros_over_core_cost_k{k}cm``,
``ros_clusters_k{k}cm`` / ``core_clusters_k{k}cm``, ``ros_tasks_visited_pct_k{k}cm``,
``ros_min_separation_margin_m``; ``ros_subset_runs``. The node keeps its robots apart by
its yield rule, the core by Algorithm 2, so moves may differ run by run.

``--quick`` reads the committed CSV only (no runs).

Usage: python benchmarks/dmar_fig2i.py [--quick] [--csv FILE] [--envs N --runs R]
       [--ros-subset N [--ros-k 60 inf]] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from dmar_agent.mission.configs import instance_config
from dmar_agent.mission.continuous import ContinuousConfig, run_continuous
from dmar_agent.mission.fig2i import (
    AGENTS,
    GRID,
    MAX_ITERATIONS,
    PSI,
    RATIOS,
    RESULTS,
    jobs,
    k_cells,
    markdown_table,
    read_rows,
    run_fig2i,
    summary,
)
from dmar_agent.protocols import DmarConfig
from dmar_agent.world import grid_diameter, make_instance


def _label(k_cm: float) -> str:
    return "inf" if np.isinf(k_cm) else f"{k_cm:g}"


def ros_subset(envs: int, radii: list[float], tmp: Path) -> dict:
    """DMAR over ROS 2 next to the continuous core on environments 0..envs-1 (module doc)."""
    from dmar_agent.ros.mission_run import ros_env, run_mission

    ros_env()
    out: dict = {}
    margins = []
    for k_cm in radii:
        lab = _label(k_cm)
        ros, core, ros_cl, core_cl, visited, total = [], [], [], [], 0, 0
        for env in range(envs):
            inst = make_instance(GRID, RATIOS[env % len(RATIOS)], env, n_agents=AGENTS)
            k = min(k_cells(k_cm), grid_diameter(inst.grid))
            seed = 100 * env  # run 0 of the sweep's seeding
            cfg = DmarConfig(
                k=k, psi=PSI, policy="rollout", seed=seed, max_iterations=MAX_ITERATIONS
            )
            c = run_continuous(inst, cfg, ContinuousConfig())
            path = instance_config(tmp / f"env{env}_k{lab}.yaml", inst, k=k, psi=PSI, seed=seed)
            run = run_mission(path, duration=300.0)
            leaders = sum(
                1
                for i, log in enumerate(run.clusters)
                for _, cluster, parent in log
                if cluster == i and parent < 0
            )
            ros.append(run.cost())
            core.append(c.cost_at_completion)
            ros_cl.append(leaders)
            core_cl.append(c.clusters)
            visited += run.tasks_visited
            total += run.tasks_total
            margins.append(run.min_separation_m - run.safety_distance_m)
            print(
                f"  env {env} k {lab} cm: ROS {run.cost()} moves, {leaders} clusters, "
                f"{run.tasks_visited}/{run.tasks_total} tasks, min sep "
                f"{run.min_separation_m:.3f} m, {run.wall_s:.0f} s | core {c.cost_at_completion} "
                f"moves to the last task ({c.cost} to the end of its EM), "
                f"{c.clusters} clusters, completed {c.completed}; watchdog landings "
                f"{run.watchdog_landings}; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        out[f"ros_cost_k{lab}cm"] = float(np.mean(ros))
        out[f"core_cost_k{lab}cm"] = float(np.mean(core))
        out[f"ros_over_core_cost_k{lab}cm"] = float(np.mean(ros) / max(np.mean(core), 1e-9))
        out[f"ros_clusters_k{lab}cm"] = float(np.mean(ros_cl))
        out[f"core_clusters_k{lab}cm"] = float(np.mean(core_cl))
        out[f"ros_tasks_visited_pct_k{lab}cm"] = 100.0 * visited / max(total, 1)
    out["ros_min_separation_margin_m"] = float(min(margins))
    out["ros_subset_runs"] = envs * len(radii)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=str(RESULTS / "fig2i_continuous.csv"), help="sweep CSV")
    ap.add_argument("--envs", type=int, default=0, help="run this many environments first")
    ap.add_argument("--runs", type=int, default=2, help="runs per environment with --envs")
    ap.add_argument("--workers", type=int, default=2, help="worker processes with --envs")
    ap.add_argument("--ros-subset", type=int, default=0, help="environments flown over ROS 2")
    ap.add_argument("--ros-k", type=float, nargs="+", default=[60.0], help="radii [cm] over ROS")
    ap.add_argument("--quick", action="store_true", help="read the committed CSV only")
    ap.add_argument("--json", default=None, help="write a flat JSON with the results")
    args = ap.parse_args()
    if args.quick:
        args.envs = args.ros_subset = 0
    out: dict[str, float] = {"load_avg_1min": os.getloadavg()[0]}
    if args.envs:
        run_fig2i(Path(args.csv), jobs(args.envs, args.runs), args.workers)
    rows = read_rows(Path(args.csv))
    summ = summary(rows)
    for s in summ:
        k = s["k_cm"]
        out[f"cost_ratio_bp_vs_dmar_k{k}cm"] = s["cost_ratio_bp_vs_dmar"]
        out[f"cost_dmar_k{k}cm"] = s["DMAR_cost"]
        out[f"cost_bp_k{k}cm"] = s["BP_cost"]
        out[f"clusters_dmar_k{k}cm"] = s["DMAR_clusters"]
        out[f"clusters_bp_k{k}cm"] = s["BP_clusters"]
    out["runs"] = len(rows)
    out["completed_pct"] = 100.0 * float(np.mean([bool(r["completed"]) for r in rows]))
    out["min_separation_m"] = float(min(r["min_separation"] for r in rows))
    out["safety_distance_m"] = float(rows[0]["safety_distance"])
    out["run_wall_s_mean"] = float(np.mean([r["wall_s"] for r in rows]))
    out["cbf_fallbacks"] = int(sum(r["fallbacks"] for r in rows))
    out["em_step_timeouts"] = int(sum(r["timeouts"] for r in rows))
    print(markdown_table(summ))
    ratio = out.get("cost_ratio_bp_vs_dmar_k60cm", float("nan"))
    print(
        f"cost_ratio_bp_vs_dmar_k60cm {ratio:.2f} (goal >= 1.2) over {len(rows)} runs; "
        f"min separation {out['min_separation_m']:.3f} m (Ds {out['safety_distance_m']}); "
        f"{out['run_wall_s_mean']:.2f} s per run; load {out['load_avg_1min']:.1f}"
    )
    if args.ros_subset:
        with tempfile.TemporaryDirectory(prefix="fig2i_ros_") as d:
            out.update(ros_subset(args.ros_subset, args.ros_k, Path(d)))
        for k_cm in args.ros_k:
            lab = _label(k_cm)
            print(
                f"ROS vs core at k = {lab} cm over {args.ros_subset} environments: "
                f"{out[f'ros_cost_k{lab}cm']:.1f} vs {out[f'core_cost_k{lab}cm']:.1f} moves "
                f"(ratio {out[f'ros_over_core_cost_k{lab}cm']:.2f}), clusters "
                f"{out[f'ros_clusters_k{lab}cm']:.1f} vs {out[f'core_clusters_k{lab}cm']:.1f}, "
                f"tasks visited {out[f'ros_tasks_visited_pct_k{lab}cm']:.0f} %"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
