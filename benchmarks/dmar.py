"""DMAR speed and compute benchmark (issue 6).

Measures, side by side in one process:

* wall time of one DMAR run (and one BP run) at 40x40, k=12 and at 80x80 with 80 agents, k=10
  (1:1 agent-to-task ratio), median over instances;
* near-linearity in the number of agents at fixed k (40x40, k=8, 20..160 agents): the
  log-log slope of wall time vs agents;
* compute (base-policy agent-steps simulated) and cost of centralized multiagent rollout with
  full information vs DMAR (k=8 and k=12) from 20x20 to 80x80, and the OR-Tools reference cost;
* grid fidelity at k = 8 (issue #14): ``bp_over_dmar_40x40_k8``, the ratio of mean total costs
  BP / DMAR on 40x40 grids, 40 agents, 1:1, instance seeds 0.. x run seeds 0..4 (the sweep's
  run seeds), with a 95 % percentile bootstrap interval over the paired runs (``_ci_low``,
  ``_ci_high``; 10 000 resamples); ``_instance_ci_low`` / ``_instance_ci_high`` resample whole
  instances instead, which is wider because the runs of one instance share their first
  iterations. Full: 20 instances x 5 runs = 100 runs; ``--quick``: 4 x 2 = 8 runs (``_runs``
  says which). The same runs give ``_at_completion`` (cost counted up to the PS step that
  completes the last task) and ``_noexplore`` (exploration moves removed); the ``_filtered``
  keys repeat it on the first instance seeds that pass the paper's isolated-task filter
  (``dmar_agent.world.isolated_tasks``, factor 2); ``_filtered_rejected`` counts the seeds
  skipped.

Usage: python benchmarks/dmar.py [--quick] [--fidelity-only] [--json FILE]
       python benchmarks/dmar.py --markdown FILE   (the k = 8 table of the README from a JSON)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from dmar_agent.baselines import central_rollout, ortools_reference
from dmar_agent.protocols import DmarConfig, run_dmar
from dmar_agent.world import isolated_tasks, make_instance


def _run(n, k, seed, policy="rollout", agents=None, cpu=None):
    inst = make_instance(n, "1:1", seed, n_agents=agents)
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_dmar(inst, DmarConfig(k=k, policy=policy, seed=seed))
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return time.perf_counter() - t0, res


def _ratio_ci(bp: np.ndarray, dmar: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Ratio of means BP / DMAR and its 95 % percentile bootstrap interval over paired runs."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(bp), size=(10_000, len(bp)))
    boot = bp[idx].mean(axis=1) / dmar[idx].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(bp.mean() / dmar.mean()), float(lo), float(hi)


def _instance_ci(bp: np.ndarray, dmar: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """95 % interval of the same ratio resampling whole instances (their runs share the first
    iterations' clusters and plans, so runs of one instance are not independent)."""
    rng = np.random.default_rng(1)
    ids = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in ids]
    boot = []
    for _ in range(4000):
        sel = np.concatenate([members[j] for j in rng.integers(0, len(ids), len(ids))])
        boot.append(bp[sel].mean() / dmar[sel].mean())
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(lo), float(hi)


def fidelity(instances: int, runs: int, isolated_factor: float | None) -> dict[str, float]:
    """BP / DMAR cost ratio at 40x40, k = 8, 1:1 (see the module docstring for the keys)."""
    key = "bp_over_dmar_40x40_k8" + ("_filtered" if isolated_factor else "")
    costs = {"total": ([], []), "at_completion": ([], []), "noexplore": ([], [])}
    groups: list[int] = []
    seed = rejected = kept = 0
    while kept < instances:
        inst = make_instance(40, "1:1", seed)
        if isolated_factor and isolated_tasks(inst, isolated_factor).size:
            rejected += 1
            seed += 1
            continue
        for run in range(runs):
            groups.append(seed)
            pair = [
                run_dmar(inst, DmarConfig(k=8, policy=p, seed=run * 1000003 + seed))
                for p in ("base", "rollout")
            ]
            for j, r in enumerate(pair):
                costs["total"][j].append(r.cost)
                costs["at_completion"][j].append(r.cost_at_completion)
                costs["noexplore"][j].append(r.cost - r.exploration_moves)
        kept += 1
        seed += 1
    out: dict[str, float] = {f"{key}_runs": float(instances * runs)}
    for name, (bp, dm) in costs.items():
        suffix = "" if name == "total" else f"_{name}"
        ratio, lo, hi = _ratio_ci(np.array(bp, float), np.array(dm, float))
        out[f"{key}{suffix}"] = ratio
        out[f"{key}{suffix}_ci_low"] = lo
        out[f"{key}{suffix}_ci_high"] = hi
        if name == "total":
            lo, hi = _instance_ci(np.array(bp, float), np.array(dm, float), np.array(groups))
            out[f"{key}_instance_ci_low"], out[f"{key}_instance_ci_high"] = lo, hi
    if isolated_factor:
        out[f"{key}_rejected"] = float(rejected)
    return out


FIDELITY_ROWS = (
    ("", "total cost (exploration included, waits free)"),
    ("_at_completion", "cost up to the step that completes the last task"),
    ("_noexplore", "exploration moves removed"),
)


def markdown(out: dict[str, float]) -> str:
    """The README's k = 8 table from a benchmark JSON."""
    lines = [
        "| BP / DMAR, 40x40, k = 8, 1:1 | all instances | isolated-task filter |",
        "|---|---|---|",
    ]
    for suffix, what in FIDELITY_ROWS:
        cells = []
        for key in ("bp_over_dmar_40x40_k8", "bp_over_dmar_40x40_k8_filtered"):
            k = key + suffix
            cells.append(f"{out[k]:.2f} [{out[k + '_ci_low']:.2f}, {out[k + '_ci_high']:.2f}]")
        lines.append(f"| {what} | {cells[0]} | {cells[1]} |")
    inst = [
        f"[{out[k + '_instance_ci_low']:.2f}, {out[k + '_instance_ci_high']:.2f}]"
        for k in ("bp_over_dmar_40x40_k8", "bp_over_dmar_40x40_k8_filtered")
    ]
    lines.append(f"| total cost, 95 % interval resampling instances | {inst[0]} | {inst[1]} |")
    runs = out["bp_over_dmar_40x40_k8_runs"]
    rej = out["bp_over_dmar_40x40_k8_filtered_rejected"]
    lines.append(f"| runs (instances x 5 runs); instance seeds rejected | {runs:.0f} | "
                 f"{out['bp_over_dmar_40x40_k8_filtered_runs']:.0f}; {rej:.0f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (< 1 minute)")
    ap.add_argument("--json", default=None, help="write a flat JSON with the results")
    ap.add_argument("--fidelity-only", action="store_true", help="only the k = 8 cost ratios")
    ap.add_argument("--markdown", default=None, help="print the k = 8 table of a JSON and exit")
    args = ap.parse_args()
    if args.markdown:
        with open(args.markdown) as fh:
            print(markdown(json.load(fh)))
        return
    reps = 1 if args.quick else 5
    out: dict[str, float] = {}
    rows = []

    f_inst, f_runs = (4, 2) if args.quick else (20, 5)
    for factor in (None, 2.0):
        out.update(fidelity(f_inst, f_runs, factor))
    for key in ("bp_over_dmar_40x40_k8", "bp_over_dmar_40x40_k8_filtered"):
        for suffix in ("", "_at_completion", "_noexplore"):
            k = key + suffix
            print(f"{k:50s} {out[k]:5.2f}  95% CI [{out[k + '_ci_low']:.2f}, "
                  f"{out[k + '_ci_high']:.2f}]  ({out[key + '_runs']:.0f} runs)")  # fmt: skip
    for key in ("bp_over_dmar_40x40_k8", "bp_over_dmar_40x40_k8_filtered"):
        print(f"{key:50s} 95% CI resampling instances [{out[key + '_instance_ci_low']:.2f}, "
              f"{out[key + '_instance_ci_high']:.2f}]")  # fmt: skip
    print(f"isolated-task filter rejected {out['bp_over_dmar_40x40_k8_filtered_rejected']:.0f} "
          "instance seeds")  # fmt: skip
    if args.fidelity_only:
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=1, sort_keys=True)
        return

    for n, k, key in ((40, 12, "40x40_k12"), (80, 10, "80x80_k10")):
        cpu: list[float] = []
        d = [_run(n, k, s, cpu=cpu) for s in range(reps)]
        b = [_run(n, k, s, "base") for s in range(reps)]
        out[f"wall_s_{key}"] = statistics.median(t for t, _ in d)
        out[f"wall_s_bp_{key}"] = statistics.median(t for t, _ in b)
        # CPU time of the process: less sensitive than wall time to other jobs on the machine
        out[f"cpu_s_{key}"] = statistics.median(cpu)
        out[f"cost_{key}"] = statistics.median(r.cost for _, r in d)
        out[f"cost_bp_{key}"] = statistics.median(r.cost for _, r in b)
        goal = "goal <= 2 s" if n == 40 else "goal <= 5 s"
        rows.append((f"DMAR {key}", out[f"wall_s_{key}"], out[f"cost_{key}"],
                     f"{goal}; CPU {out[f'cpu_s_{key}']:.3f} s"))  # fmt: skip
        rows.append((f"BP   {key}", out[f"wall_s_bp_{key}"], out[f"cost_bp_{key}"], ""))

    agents = [20, 40, 80] if args.quick else [20, 40, 80, 160]
    times = []
    for m in agents:
        ts = [_run(40, 8, s, agents=m)[0] for s in range(reps)]
        times.append(statistics.median(ts))
        out[f"wall_s_40x40_k8_agents{m}"] = times[-1]
        rows.append((f"DMAR 40x40 k=8, {m} agents", times[-1], float("nan"), ""))
    slope = float(np.polyfit(np.log(agents), np.log(times), 1)[0])
    out["agents_scaling_exponent_40x40_k8"] = slope
    # the paper's instance class: n agents on an n x n grid, k fixed
    class_sizes = [20, 40, 80] if args.quick else [20, 40, 60, 80]
    ctimes = []
    for n in class_sizes:
        ctimes.append(statistics.median(_run(n, 10, s)[0] for s in range(reps)))
        out[f"wall_s_{n}x{n}_k10"] = ctimes[-1]
        rows.append((f"DMAR {n}x{n} k=10, {n} agents", ctimes[-1], float("nan"), ""))
    slope_c = float(np.polyfit(np.log(class_sizes), np.log(ctimes), 1)[0])
    out["agents_scaling_exponent_class_k10"] = slope_c

    sizes = [20, 40, 80] if args.quick else [20, 40, 60, 80]
    creps = 1 if args.quick else 3
    for n in sizes:
        cc, cd8, cd12, cost_c, cost_d8, cost_o, wc, plan_d8 = [], [], [], [], [], [], [], []
        for s in range(creps):
            inst = make_instance(n, "1:1", s)
            c = central_rollout(inst)
            r8 = run_dmar(inst, DmarConfig(k=8, seed=s))
            r12 = run_dmar(inst, DmarConfig(k=12, seed=s))
            o = ortools_reference(inst, 1.0 if args.quick else 3.0)
            cc.append(c.compute)
            wc.append(c.wall_s)
            cd8.append(r8.compute)
            cd12.append(r12.compute)
            cost_c.append(c.cost)
            cost_d8.append(r8.cost)
            plan_d8.append(r8.cost - r8.exploration_moves)
            cost_o.append(o.cost)
        out[f"compute_ratio_central_vs_dmar_{n}x{n}_k8"] = float(np.sum(cc) / np.sum(cd8))
        out[f"compute_ratio_central_vs_dmar_{n}x{n}_k12"] = float(np.sum(cc) / np.sum(cd12))
        out[f"cost_ratio_dmar_vs_central_{n}x{n}_k8"] = float(np.sum(cost_d8) / np.sum(cost_c))
        out[f"cost_ratio_dmar_noexplore_vs_central_{n}x{n}_k8"] = float(
            np.sum(plan_d8) / np.sum(cost_c)
        )
        out[f"cost_central_rollout_{n}x{n}"] = float(np.mean(cost_c))
        out[f"cost_ortools_{n}x{n}"] = float(np.mean(cost_o))
        out[f"wall_s_central_rollout_{n}x{n}"] = float(np.median(wc))
        rows.append((
            f"central/DMAR compute {n}x{n} (k=8 | k=12)",
            float(np.median(wc)),
            float(np.mean(cost_c)),
            f"{out[f'compute_ratio_central_vs_dmar_{n}x{n}_k8']:.2f}x | "
            f"{out[f'compute_ratio_central_vs_dmar_{n}x{n}_k12']:.2f}x, cost DMAR k=8 / central "
            f"{out[f'cost_ratio_dmar_vs_central_{n}x{n}_k8']:.2f} (no expl. "
            f"{out[f'cost_ratio_dmar_noexplore_vs_central_{n}x{n}_k8']:.2f}), "
            f"OR-Tools {np.mean(cost_o):.0f}",
        ))  # fmt: skip

    print(f"{'measure':44s} {'wall_s':>8s} {'cost':>8s}  note")
    for name, w, c, note in rows:
        print(f"{name:44s} {w:8.3f} {c:8.0f}  {note}")
    print(f"wall time vs agents (40x40, k=8): log-log slope {slope:.2f} (1.0 = linear)")
    print(f"wall time vs agents (n agents on n x n, k=10): log-log slope {slope_c:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
