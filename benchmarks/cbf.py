"""Per-tick latency of the CBF safety filter, side by side with the Robotarium's CVXOPT QP.

For every swarm size N a closed-loop trajectory is recorded first (robots chase random
waypoints at up to 0.5 m/s through the centralized filter, 20 Hz, arena side growing with
sqrt(N) so that the density stays that of 16 robots on 4 x 4 m). Then, tick by tick on the
*same* recorded states and nominal commands, in rotating order:

* ``centralized``: ``CentralizedCBF.filter`` (one QP, pairs within 1 m; exact active-set
  solver, OSQP when it cannot finish), timed from the arrays to the certified result (pair
  search, building the rows, solve, check);
* ``osqp only``: the same filter with ``method="osqp"`` (every QP through OSQP, set up once
  per sparsity pattern): the A/B of the active-set path on the same ticks;
* ``centralized alone``: afterwards, the centralized filter once more, back to back on the
  same ticks with no other contender in between (warm caches, as in a tight control loop);
* ``decentralized``: ``DecentralizedCBF.filter_robot`` for every robot with the neighbours
  it would receive on ``/<robot>/neighbors``; reported per robot (they run in parallel);
* ``cvxopt``: the Robotarium formulation (``create_single_integrator_barrier_certificate_
  with_boundary``: every pair, ``-2 e^T (u_i - u_j) <= gamma h^3``, walls
  ``0.4 gamma (bound - Ds/2 - x)^3``, nominal pre-clipped to the speed limit), reimplemented
  with a vectorised build and solved by ``cvxopt.solvers.qp`` at its default options.

Usage::

    python benchmarks/cbf.py [--quick] [--json FILE]

The JSON is flat: ``decentralized_p95_ms`` (worst per-robot p95 over the sizes),
``centralized_n16_p95_ms``, ``speedup_vs_cvxopt_n16`` / ``_n50`` (CVXOPT median over
centralized median, same ticks), and per-size details. Times are wall-clock
(``perf_counter``); ``*_cpu_*`` keys repeat them in thread CPU time, which a shared,
oversubscribed machine distorts less (it still pays for cache and core sharing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime

import numpy as np
from cbf_filter import CBFParams, CentralizedCBF, DecentralizedCBF

DT = 0.05
VMAX = 0.5
DS = 0.15
GAMMA = 100.0
SENSING = 1.0


def _arena_half(n: int) -> float:
    return 2.0 * max(1.0, np.sqrt(n / 16.0))


def _params(n: int) -> CBFParams:
    h = _arena_half(n)
    return CBFParams(
        gamma=GAMMA,
        safety_distance=DS,
        max_speed=VMAX,
        arena=((-h, h), (-h, h)),
        sensing_radius=SENSING,
        sample_time=DT,
    )


def _start(rng, n, half):
    pts = []
    while len(pts) < n:
        p = rng.uniform(-half + DS, half - DS, size=2)
        if all(np.linalg.norm(p - q) > 2 * DS for q in pts):
            pts.append(p)
    return np.array(pts)


def record(n: int, ticks: int, scenario: str, seed: int = 0):
    """Closed-loop states and nominal commands ``(T, N, 2)`` under the centralized filter."""
    rng = np.random.default_rng(seed)
    half = _arena_half(n)
    cbf = CentralizedCBF(n, 2, _params(n))
    if scenario == "swap":
        ang = 2 * np.pi * np.arange(n) / n
        x = 0.8 * half * np.stack([np.cos(ang), np.sin(ang)], axis=1)
        x += 1e-3 * rng.normal(size=x.shape)
        goals = -x
    else:
        x = _start(rng, n, half)
        goals = rng.uniform(-half + DS, half - DS, size=(n, 2))
    xs, us = [], []
    for _ in range(ticks):
        if scenario != "swap":
            reached = np.linalg.norm(goals - x, axis=1) < 0.1
            goals[reached] = rng.uniform(-half + DS, half - DS, size=(int(reached.sum()), 2))
        u_hat = 2.0 * (goals - x)
        xs.append(x.copy())
        us.append(u_hat)
        x = x + DT * cbf.filter(x, u_hat).u
    return np.array(xs), np.array(us)


class RobotariumCvxopt:
    """The Robotarium's single-integrator barrier certificate with boundary (reimplemented)."""

    def __init__(self, n: int, half: float):
        from cvxopt import matrix, solvers, spmatrix

        self.solvers = solvers
        self.matrix = matrix
        solvers.options["show_progress"] = False
        self.n = n
        self.bounds = (-half, half, -half, half)
        self.H = spmatrix(2.0, range(2 * n), range(2 * n))
        self.iu = np.triu_indices(n, 1)

    def filter(self, x: np.ndarray, u_hat: np.ndarray) -> np.ndarray:
        matrix = self.matrix
        n = self.n
        i, j = self.iu
        p = len(i)
        e = x[i] - x[j]
        h = np.einsum("pk,pk->p", e, e) - DS**2
        A = np.zeros((p + 4 * n, 2 * n))
        rows = np.arange(p)
        A[rows, 2 * i] = -2 * e[:, 0]
        A[rows, 2 * i + 1] = -2 * e[:, 1]
        A[rows, 2 * j] = 2 * e[:, 0]
        A[rows, 2 * j + 1] = 2 * e[:, 1]
        b = np.empty(p + 4 * n)
        b[:p] = GAMMA * h**3
        xmin, xmax, ymin, ymax = self.bounds
        k = np.arange(n)
        r = p + 4 * k
        A[r, 2 * k + 1] = 1.0
        b[r] = 0.4 * GAMMA * (ymax - DS / 2 - x[:, 1]) ** 3
        A[r + 1, 2 * k + 1] = -1.0
        b[r + 1] = 0.4 * GAMMA * (-ymin - DS / 2 + x[:, 1]) ** 3
        A[r + 2, 2 * k] = 1.0
        b[r + 2] = 0.4 * GAMMA * (xmax - DS / 2 - x[:, 0]) ** 3
        A[r + 3, 2 * k] = -1.0
        b[r + 3] = 0.4 * GAMMA * (-xmin - DS / 2 + x[:, 0]) ** 3
        norms = np.linalg.norm(u_hat, axis=1)
        scale = np.where(norms > VMAX, VMAX / np.maximum(norms, 1e-12), 1.0)
        u_clip = u_hat * scale[:, None]
        f = matrix(-2.0 * u_clip.reshape(-1))
        sol = self.solvers.qp(self.H, f, matrix(A), matrix(b))
        return np.array(sol["x"]).reshape(n, 2)


def _stats(samples) -> tuple[float, float]:
    a = np.asarray(samples) * 1e3
    return float(np.median(a)), float(np.percentile(a, 95))


def measure(n: int, ticks: int, warmup: int, cvx_ticks: int, scenario: str) -> dict:
    xs, us = record(n, ticks + warmup, scenario)
    params = _params(n)
    cen = CentralizedCBF(n, 2, params)
    cen_osqp = CentralizedCBF(n, 2, params, method="osqp")
    dec = DecentralizedCBF(2, params)
    cvx = RobotariumCvxopt(n, _arena_half(n)) if cvx_ticks > 0 else None
    wall = {k: [] for k in ("cen", "osqp", "dec", "dec_tick", "cvx", "cen_paired")}
    cpu = {k: [] for k in ("cen", "osqp", "dec", "cvx", "cen_paired")}
    iu = np.triu_indices(n, 1)
    clock = time.perf_counter
    cpu_clock = time.thread_time
    for t in range(ticks + warmup):
        x, u_hat = xs[t], us[t]
        # Neighbour lists as the world would publish them (not timed: they arrive by DDS).
        d = np.linalg.norm(x[iu[0]] - x[iu[1]], axis=1)
        adj = np.zeros((n, n), dtype=bool)
        close = d <= SENSING
        adj[iu[0][close], iu[1][close]] = True
        adj |= adj.T
        nbrs = [x[adj[k]] for k in range(n)]
        order = [(k + t) % 4 for k in range(4)]  # rotating order
        tc = cc = tx = cx = to = co = None
        per_robot, per_robot_cpu = [], []
        for which in order:
            if which == 0:
                c0, t0 = cpu_clock(), clock()
                cen.filter(x, u_hat)
                tc, cc = clock() - t0, cpu_clock() - c0
            elif which == 1:
                for k in range(n):
                    c0, t0 = cpu_clock(), clock()
                    dec.filter_robot(x[k], u_hat[k], nbrs[k])
                    per_robot.append(clock() - t0)
                    per_robot_cpu.append(cpu_clock() - c0)
            elif which == 3:
                c0, t0 = cpu_clock(), clock()
                cen_osqp.filter(x, u_hat)
                to, co = clock() - t0, cpu_clock() - c0
            elif cvx is not None and warmup <= t < warmup + cvx_ticks:
                c0, t0 = cpu_clock(), clock()
                cvx.filter(x, u_hat)
                tx, cx = clock() - t0, cpu_clock() - c0
        if t < warmup:
            continue
        wall["cen"].append(tc)
        cpu["cen"].append(cc)
        wall["osqp"].append(to)
        cpu["osqp"].append(co)
        wall["dec"].extend(per_robot)
        cpu["dec"].extend(per_robot_cpu)
        wall["dec_tick"].append(sum(per_robot))
        if tx is not None:
            wall["cvx"].append(tx)
            cpu["cvx"].append(cx)
            wall["cen_paired"].append(tc)
            cpu["cen_paired"].append(cc)
    # The centralized filter once more, back to back on the same ticks with nothing in
    # between (no other contender evicting its data and code from the caches).
    alone = CentralizedCBF(n, 2, params)
    alone_wall, alone_cpu = [], []
    for t in range(ticks + warmup):
        c0, t0 = cpu_clock(), clock()
        alone.filter(xs[t], us[t])
        if t >= warmup:
            alone_wall.append(clock() - t0)
            alone_cpu.append(cpu_clock() - c0)
    out = {
        "n": n,
        "scenario": scenario,
        "ticks": ticks,
        "pairs_in_range_mean": float(
            np.mean(
                [
                    np.count_nonzero(np.linalg.norm(xs[t][iu[0]] - xs[t][iu[1]], axis=1) <= SENSING)
                    for t in range(warmup, warmup + ticks)
                ]
            )
        ),
        "centralized_osqp_setups": cen.stats.setups,
        "centralized_active_set_solves": cen.stats.active_set_solves,
        "centralized_osqp_solves": cen.stats.osqp_solves,
        "osqp_only_setups": cen_osqp.stats.setups,
        "centralized_fallbacks": cen.stats.fallback_calls,
        "centralized_nominal_safe_share": cen.stats.status_counts["nominal_safe"]
        / max(1, cen.stats.calls),
        "decentralized_fallbacks": dec.stats.fallback_calls,
    }
    out["centralized_median_ms"], out["centralized_p95_ms"] = _stats(wall["cen"])
    out["centralized_cpu_median_ms"], out["centralized_cpu_p95_ms"] = _stats(cpu["cen"])
    out["centralized_alone_median_ms"], out["centralized_alone_p95_ms"] = _stats(alone_wall)
    out["centralized_alone_cpu_median_ms"], out["centralized_alone_cpu_p95_ms"] = _stats(alone_cpu)
    out["osqp_only_median_ms"], out["osqp_only_p95_ms"] = _stats(wall["osqp"])
    out["osqp_only_cpu_median_ms"], out["osqp_only_cpu_p95_ms"] = _stats(cpu["osqp"])
    out["speedup_vs_osqp_only"] = out["osqp_only_median_ms"] / out["centralized_median_ms"]
    out["speedup_vs_osqp_only_cpu"] = (
        out["osqp_only_cpu_median_ms"] / out["centralized_cpu_median_ms"]
    )
    med, p95 = _stats(wall["dec"])
    out["decentralized_robot_median_ms"], out["decentralized_robot_p95_ms"] = med, p95
    med, p95 = _stats(cpu["dec"])
    out["decentralized_robot_cpu_median_ms"], out["decentralized_robot_cpu_p95_ms"] = med, p95
    out["decentralized_tick_sum_median_ms"], _ = _stats(wall["dec_tick"])
    if wall["cvx"]:
        out["cvxopt_ticks"] = len(wall["cvx"])
        out["cvxopt_median_ms"], out["cvxopt_p95_ms"] = _stats(wall["cvx"])
        out["cvxopt_cpu_median_ms"], out["cvxopt_cpu_p95_ms"] = _stats(cpu["cvx"])
        out["speedup_vs_cvxopt"] = out["cvxopt_median_ms"] / _stats(wall["cen_paired"])[0]
        out["speedup_vs_cvxopt_cpu"] = out["cvxopt_cpu_median_ms"] / _stats(cpu["cen_paired"])[0]
    return out


def plot(results: list[dict], path: str) -> None:
    """Median (line) and p95 (band) thread CPU time per call vs N, log-log.

    CPU time rather than wall clock: on a shared, oversubscribed machine the wall clock
    mostly measures the scheduler (long calls get preempted more often).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=80)
    series = (
        ("cvxopt_cpu", "CVXOPT, Robotarium QP (per tick)", "tab:red"),
        ("osqp_only_cpu", "centralized, OSQP only (per tick)", "tab:purple"),
        ("centralized_cpu", "centralized, active set + OSQP (per tick)", "tab:blue"),
        ("decentralized_robot_cpu", "decentralized (per robot)", "tab:green"),
    )
    for key, label, color in series:
        rows = [r for r in results if f"{key}_median_ms" in r]
        ns = [r["n"] for r in rows]
        med = [r[f"{key}_median_ms"] for r in rows]
        p95 = [r[f"{key}_p95_ms"] for r in rows]
        ax.plot(ns, med, "o-", color=color, label=label)
        ax.fill_between(ns, med, p95, color=color, alpha=0.15)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("robots N")
    ax.set_ylabel("thread CPU time [ms] (median, band to p95)")
    ax.set_xticks([r["n"] for r in results], [str(r["n"]) for r in results])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(f"CBF filter cost per call (load avg {os.getloadavg()[0]:.1f} on 2 cores)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few ticks (< 1 min)")
    ap.add_argument("--json", help="write the flat JSON summary here")
    ap.add_argument("--plot", help="draw latency vs N to this PNG")
    args = ap.parse_args(argv)
    if args.quick:
        plan = [(4, 60, 60), (16, 60, 60), (50, 40, 20), (200, 15, 0)]
        warmup, swap_ticks = 10, 60
    else:
        plan = [(4, 400, 400), (16, 400, 400), (50, 300, 150), (200, 200, 3)]
        warmup, swap_ticks = 40, 300
    results = [measure(n, ticks, warmup, cvx, "waypoints") for n, ticks, cvx in plan]
    swap = measure(16, swap_ticks, warmup, swap_ticks, "swap")

    for label, suffix in (("wall-clock", ""), ("thread CPU time", "cpu_")):
        print(f"\n{label} [ms]")
        hdr = (
            f"{'scenario':>9} {'N':>4} {'pairs':>6} | {'centralized med/p95':>19} | "
            f"{'OSQP only med/p95':>19} | "
            f"{'decentr. per robot med/p95':>26} | {'cvxopt med/p95':>19} | {'speedup':>7}"
        )
        print(hdr)
        print("-" * len(hdr))
        for r in [*results, swap]:
            cvx_key = f"cvxopt_{suffix}median_ms"
            cvx = (
                f"{r[cvx_key]:9.3f}/{r[f'cvxopt_{suffix}p95_ms']:9.3f}"
                if cvx_key in r
                else f"{'-':>19}"
            )
            sp_key = "speedup_vs_cvxopt" + ("_cpu" if suffix else "")
            sp = f"{r[sp_key]:6.1f}x" if sp_key in r else f"{'-':>7}"
            print(
                f"{r['scenario']:>9} {r['n']:>4} {r['pairs_in_range_mean']:6.1f} | "
                f"{r[f'centralized_{suffix}median_ms']:9.3f}/"
                f"{r[f'centralized_{suffix}p95_ms']:9.3f} | "
                f"{r[f'osqp_only_{suffix}median_ms']:9.3f}/"
                f"{r[f'osqp_only_{suffix}p95_ms']:9.3f} | "
                f"{r[f'decentralized_robot_{suffix}median_ms']:12.4f}/"
                f"{r[f'decentralized_robot_{suffix}p95_ms']:13.4f} | {cvx} | {sp}"
            )
    print("\ncentralized alone (back to back, same ticks) [ms], wall med/p95 | CPU med/p95")
    for r in [*results, swap]:
        print(
            f"{r['scenario']:>9} {r['n']:>4} | {r['centralized_alone_median_ms']:7.3f}/"
            f"{r['centralized_alone_p95_ms']:7.3f} | {r['centralized_alone_cpu_median_ms']:7.3f}/"
            f"{r['centralized_alone_cpu_p95_ms']:7.3f}"
        )
    print(f"\nload average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    summary: dict = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "load_avg_1m": os.getloadavg()[0],
        "quick": bool(args.quick),
        "decentralized_p95_ms": max(r["decentralized_robot_p95_ms"] for r in results),
        "decentralized_cpu_p95_ms": max(r["decentralized_robot_cpu_p95_ms"] for r in results),
    }
    for r in results:
        n = r["n"]
        for k, v in r.items():
            if k in ("n", "scenario"):
                continue
            if k.startswith("centralized_") or k.startswith("speedup_"):
                # centralized_n16_p95_ms, speedup_vs_cvxopt_n16, ...
                head, _, tail = k.partition("_")
                if k.startswith("speedup_"):
                    summary[f"{k}_n{n}"] = v
                else:
                    summary[f"{head}_n{n}_{tail}"] = v
            else:
                summary[f"{k}_n{n}"] = v
    for k, v in swap.items():
        if k not in ("n", "scenario"):
            summary[f"swap_n16_{k}"] = v
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1, sort_keys=True)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
