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

Usage: python benchmarks/dmar_fig2i.py [--csv FILE] [--envs N --runs R] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from dmar_agent.mission.fig2i import RESULTS, jobs, markdown_table, read_rows, run_fig2i, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=str(RESULTS / "fig2i_continuous.csv"), help="sweep CSV")
    ap.add_argument("--envs", type=int, default=0, help="run this many environments first")
    ap.add_argument("--runs", type=int, default=2, help="runs per environment with --envs")
    ap.add_argument("--workers", type=int, default=2, help="worker processes with --envs")
    ap.add_argument("--json", default=None, help="write a flat JSON with the results")
    args = ap.parse_args()
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
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
