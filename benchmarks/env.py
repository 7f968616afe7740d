"""Throughput of the batched LGTC resource world, side by side with VMAS ``simple_spread``.

For each batch size B in {1, 64, 1024, 4096} (N = 10 agents, M = 4 consumers, r = 2, the
paper's training setup, default ``EnvConfig``: full eq. (2) reward, observation z_i, comm
graph S, batched local-search assignment on change, auto-reset), the script alternates rounds
of our ``ResourceEnv.step`` and of VMAS ``simple_spread`` with 10 agents (continuous actions,
same B, CPU), each on pre-drawn random actions in [-1, 1], and reports the median rate over
rounds in agent-steps per second (B * N / step time). Interleaving keeps a shared machine's
load the same for both sides; ``*_cpu_*`` keys repeat the rates in process CPU time.

Our side is warmed up for 10 steps before the rounds (VMAS for 2): in the first steps after a
reset, agents that spawned inside an area deliver and the assignment is recomputed in several
times more envs than later, so the rounds measure the steady part of an episode. The whole
episode, first steps and the auto-reset at its end included (at B = 4096 the reset's 8-start
assignment search on every env takes ~0.5 s), is measured separately: ``episode`` row.

Extra rows: our env with ``assignment='none'`` (no eq. 3 work) and ``assignment='exact'``
(the oracle per changed env; only at small B), median of rounds like the main table; at
B = 4096 a third side in the same rounds, ``bare``: a batched single-integrator step with
pairwise distances and nothing else (the floor the issue quotes, ~11 M agent-steps/s); and
one whole episode at B = 4096 from a fresh env (300 steps, the auto-reset included).

Usage::

    python benchmarks/env.py [--quick] [--json FILE]

JSON (flat): ``agent_steps_per_s_b{B}``, ``vmas_agent_steps_per_s_b{B}``,
``speedup_vs_vmas_b{B}``, ``agent_steps_per_s_none_b4096``, ``agent_steps_per_s_exact_b64``,
``bare_agent_steps_per_s_b4096``, ``agent_steps_per_s_episode_b4096``,
``*_cpu`` variants, ``torch_threads``, ``date``, ``host`` (with the load average: on a
shared machine absolute rates vary several-fold between runs; the side-by-side ratios less).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from datetime import UTC, datetime

import torch
from lgtc_policy.env import EnvConfig, ResourceEnv

N_AGENTS = 10


def _ours(B: int, assignment: str = "local"):
    env = ResourceEnv(EnvConfig(assignment=assignment), batch_size=B, seed=0)
    gen = torch.Generator().manual_seed(0)
    acts = [torch.rand(B, N_AGENTS, 2, generator=gen) * 2 - 1 for _ in range(4)]
    k = [0]

    def step() -> None:
        env.step(acts[k[0] % 4])
        k[0] += 1

    return step


def _vmas(B: int):
    import vmas

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = vmas.make_env(
            "simple_spread",
            num_envs=B,
            device="cpu",
            continuous_actions=True,
            n_agents=N_AGENTS,
            seed=0,
        )
    env.reset()
    gen = torch.Generator().manual_seed(0)
    acts = [[torch.rand(B, 2, generator=gen) * 2 - 1 for _ in range(N_AGENTS)] for _ in range(4)]
    k = [0]

    def step() -> None:
        env.step(acts[k[0] % 4])
        k[0] += 1

    return step


def _bare(B: int):
    """Single integrators with speed clipping, clamping to Q and pairwise distances only."""
    pos = torch.rand(B, N_AGENTS, 2) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    acts = [torch.rand(B, N_AGENTS, 2, generator=gen) * 2 - 1 for _ in range(4)]
    k = [0]

    def step() -> None:
        nonlocal pos
        u = acts[k[0] % 4]
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1.0)
        pos = (pos + 0.5 * 0.05 * u).clamp(-1.0, 1.0)
        d = pos[:, :, None, :] - pos[:, None, :, :]
        (d * d).sum(-1)
        k[0] += 1

    return step


def _round(step, n: int) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return (time.perf_counter() - w0) / n, (time.process_time() - c0) / n


def measure(B: int, steps: int, rounds: int, vmas_steps: int) -> dict[str, float]:
    sides = {"ours": _ours(B)}
    if vmas_steps:
        sides["vmas"] = _vmas(B)
    if B == 4096:
        sides["bare"] = _bare(B)
    for name, step in sides.items():  # warm-up: first calls allocate; ours: see the docstring
        _round(step, 10 if name == "ours" else 2)
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
    for _ in range(rounds):
        for name, step in sides.items():
            res[name].append(_round(step, steps if name == "ours" else vmas_steps))
    out = {}
    for name, rows in res.items():
        prefix = "" if name == "ours" else f"{name}_"
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        out[f"{prefix}agent_steps_per_s_b{B}"] = B * N_AGENTS / wall
        out[f"{prefix}agent_steps_per_s_cpu_b{B}"] = B * N_AGENTS / max(cpu, 1e-12)
    if vmas_steps:
        out[f"speedup_vs_vmas_b{B}"] = (
            out[f"agent_steps_per_s_b{B}"] / out[f"vmas_agent_steps_per_s_b{B}"]
        )
        out[f"speedup_vs_vmas_cpu_b{B}"] = (
            out[f"agent_steps_per_s_cpu_b{B}"] / out[f"vmas_agent_steps_per_s_cpu_b{B}"]
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few steps (< 1 minute)")
    ap.add_argument("--json", help="write the flat results here")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for both sides (default 1: on a small shared machine "
        "OpenMP barriers under load cost more than they parallelise)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    plan = {  # B: (our steps per round, rounds, vmas steps per round)
        1: (10, 2, 3) if args.quick else (200, 5, 50),
        64: (5, 2, 2) if args.quick else (100, 5, 20),
        1024: (3, 2, 0) if args.quick else (30, 5, 5),
        4096: (2, 2, 1) if args.quick else (20, 5, 3),
    }
    results: dict[str, float | str | int] = {}
    print(f"{'B':>6} {'ours agent-steps/s':>20} {'VMAS agent-steps/s':>20} {'speedup':>8}")
    for B, (steps, rounds, vsteps) in plan.items():
        r = measure(B, steps, rounds, vsteps)
        results.update(r)
        v = r.get(f"vmas_agent_steps_per_s_b{B}")
        vs = f"{v:,.0f}" if v else "-"
        sp = f"{r[f'speedup_vs_vmas_b{B}']:.1f}x" if v else "-"
        print(f"{B:>6} {r[f'agent_steps_per_s_b{B}']:>20,.0f} {vs:>20} {sp:>8}", flush=True)
    b = results["bare_agent_steps_per_s_b4096"]
    print(f"bare single-integrator step + pairwise distances, B=4096: {b:,.0f} agent-steps/s")
    for mode, B, steps, rounds in (
        ("none", 4096, 2 if args.quick else 20, 2 if args.quick else 5),
        ("exact", 64, 5 if args.quick else 40, 1 if args.quick else 3),
    ):
        step = _ours(B, mode)
        _round(step, 1)
        rows = [_round(step, steps) for _ in range(rounds)]
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        results[f"agent_steps_per_s_{mode}_b{B}"] = B * N_AGENTS / wall
        results[f"agent_steps_per_s_{mode}_cpu_b{B}"] = B * N_AGENTS / max(cpu, 1e-12)
        print(f"assignment={mode!r} B={B}: {B * N_AGENTS / wall:,.0f} agent-steps/s")
    B = 4096
    step = _ours(B)  # a fresh env: steps 0 .. T-1, the last one truncates and auto-resets
    T = EnvConfig().episode_length
    wall, cpu = _round(step, T)
    results["agent_steps_per_s_episode_b4096"] = B * N_AGENTS / wall
    results["agent_steps_per_s_episode_cpu_b4096"] = B * N_AGENTS / max(cpu, 1e-12)
    print(f"whole episode B={B} ({T} steps, auto-reset included): {B * N_AGENTS / wall:,.0f}")
    results.update(
        torch_threads=torch.get_num_threads(),
        quick=int(args.quick),
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        host=f"{platform.node()} ({os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f})",
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, sort_keys=True)
    return results


if __name__ == "__main__":
    main()
