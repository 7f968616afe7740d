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
  Per setting: the same keys with ``_9x9``, ``_20x20_psi2``, ``_20x20_psi3``.

Usage: python benchmarks/dmar_robots.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from dmar_agent.distributed import reference_trace, run_distributed
from dmar_agent.protocols import DmarConfig
from dmar_agent.world import make_instance

SETTINGS = {
    "9x9": (9, 7, 2, (1, 2, 3, 4, 16)),
    "20x20_psi2": (20, 20, 2, (4, 8, 12)),
    "20x20_psi3": (20, 20, 3, (4, 8, 12)),
}


def _cases(name: str, seeds: int) -> list:
    n, m, psi, ks = SETTINGS[name]
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
    args = ap.parse_args()
    seeds = 1 if args.quick else 4
    out: dict[str, float] = {"load_avg_1min": os.getloadavg()[0]}
    rows = []
    all_ticks: list = []
    all_plan: list = []
    n_equal = n_cases = 0
    t_start = time.perf_counter()
    for name in SETTINGS:
        cases = _cases(name, seeds)
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
    out["lockstep_instances"] = n_cases
    out["lockstep_equal_pct"] = 100.0 * n_equal / n_cases
    out["tick_compute_p99_ms"] = _pct(all_ticks, 99)
    out["tick_compute_max_ms"] = _pct(all_ticks, 100)
    out["plan_round_sync_p99_ms"] = _pct(all_plan, 99)
    out["plan_round_sync_max_ms"] = _pct(all_plan, 100)
    out["bench_wall_s"] = time.perf_counter() - t_start

    head = ("setting", "runs", "equal %", "tick p50", "tick p99", "tick max", "plan p99*", "max*")
    print("{:12s} {:>5s} {:>8s} {:>9s} {:>9s} {:>9s} {:>10s} {:>8s}".format(*head))
    for r in rows:
        print("{:12s} {:5d} {:8.1f} {:9.3f} {:9.3f} {:9.2f} {:10.2f} {:8.2f}".format(*r))
    print("ticks [ms]: one DmarAgent.round, background planning; * planning round inline [ms]")
    print(
        f"lockstep_equal_pct {out['lockstep_equal_pct']:.1f} on {n_cases} instances (goal 100); "
        f"tick_compute_p99_ms {out['tick_compute_p99_ms']:.3f} (goal <= 25); "
        f"load {out['load_avg_1min']:.1f}; {out['bench_wall_s']:.0f} s"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
