"""Redraw the paper's Fig. 2-6 (and a compute-ratio figure) from a sweep CSV.

* Fig. 2: cost and runtime vs k (DMAR blue, BP red) on the three largest grids, clusters vs k,
  and the sampled critical radius k*(N) against log2*(N) and other slow functions.
* Fig. 3: cost and runtime vs k for every grid size. Fig. 4: clusters vs k for every size.
* Fig. 5: DMAR-GCI vs BP-GCI cost and the exploration share. Fig. 6: the same without the
  (common) exploration cost.
* Compute: centralized multiagent rollout vs DMAR (base-policy agent-steps and cost) vs N.

k*(N) is the smallest k of the sweep from which on DMAR's mean cost is below BP's for every larger
k of the sweep (None when no such k exists).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from dmar_agent.world import log_star

BLUE, RED, GREEN = "#1f5fbf", "#c83232", "#2a9d2a"


def _group(rows: list[dict], algo: str, key: str) -> dict:
    """(n, k) -> (mean, 95% CI half-width, count) of ``key`` for ``algo``."""
    acc: dict = defaultdict(list)
    for r in rows:
        if r["algo"] == algo:
            acc[(r["n"], r["k"])].append(float(key(r) if callable(key) else r[key]))
    out = {}
    for kk, v in acc.items():
        a = np.array(v)
        ci = 1.96 * a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else 0.0
        out[kk] = (float(a.mean()), float(ci), len(a))
    return out


def critical_radius(rows: list[dict], n: int, a: str = "dmar", b: str = "bp") -> int | None:
    """Smallest k with mean cost(a) < mean cost(b) for all k' >= k in the sweep."""
    ga, gb = _group(rows, a, "cost"), _group(rows, b, "cost")
    ks = sorted(k for (nn, k) in ga if nn == n and (nn, k) in gb)
    kstar = None
    for k in reversed(ks):
        if ga[(n, k)][0] < gb[(n, k)][0]:
            kstar = k
        else:
            break
    return kstar


def improvement(rows: list[dict], n: int, a: str = "dmar", b: str = "bp") -> dict:
    """k -> mean cost(b) / mean cost(a)."""
    ga, gb = _group(rows, a, "cost"), _group(rows, b, "cost")
    return {k: gb[(nn, k)][0] / ga[(nn, k)][0] for (nn, k) in ga if nn == n and (nn, k) in gb}


def _curve(ax, g: dict, n: int, color: str, label: str, ls: str = "-") -> None:
    ks = sorted(k for (nn, k) in g if nn == n)
    if not ks:
        return
    m = np.array([g[(n, k)][0] for k in ks])
    c = np.array([g[(n, k)][1] for k in ks])
    ax.plot(ks, m, ls, color=color, label=label, marker="o", ms=3)
    ax.fill_between(ks, m - c, m + c, color=color, alpha=0.2)


def _cost_panel(ax, rows, n, a, b, runtime=True, key="cost") -> None:
    _curve(ax, _group(rows, b, key), n, RED, b.upper().replace("_", "-"))
    _curve(ax, _group(rows, a, key), n, BLUE, a.upper().replace("_", "-"))
    ax.set_yscale("log")
    kstar = critical_radius(rows, n, a, b)
    if kstar is not None:
        ax.axvline(kstar, color="k", ls=":", lw=1)
        ax.text(kstar, ax.get_ylim()[1], f" k*={kstar}", va="top", fontsize=7)
    ax.axvspan(8, 12, color="orange", alpha=0.12)
    ax.set_title(f"{n}x{n}", fontsize=9)
    ax.set_xlabel("k", fontsize=8)
    ax.set_ylabel("mean total cost", fontsize=8)
    ax.tick_params(labelsize=7)
    if runtime:
        ax2 = ax.twinx()
        _curve(ax2, _group(rows, b, "wall_s"), n, RED, "BP time", "--")
        _curve(ax2, _group(rows, a, "wall_s"), n, BLUE, "DMAR time", "--")
        ax2.set_ylabel("run time [s] (dashed)", fontsize=8)
        ax2.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")


def _matched(rows: list[dict]) -> list[dict]:
    """Rows of instances that also have a centralized run (compute/cost ratios on the same
    instances only)."""
    have = {(r["n"], r["instance"], r["ratio"]) for r in rows if r["algo"] == "central_rollout"}
    return [r for r in rows if (r["n"], r["instance"], r["ratio"]) in have]


def _sizes(rows, algo) -> list[int]:
    return sorted({r["n"] for r in rows if r["algo"] == algo})


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _grid_axes(count: int, title: str):
    import matplotlib.pyplot as plt

    cols = min(4, max(1, count))
    nrows = max(1, math.ceil(count / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.3 * cols, 2.7 * nrows), squeeze=False)
    fig.suptitle(title, fontsize=10)
    for ax in axes.ravel()[count:]:
        ax.axis("off")
    return fig, axes.ravel()


def draw_all(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """Write docs-ready PNGs (dmar_fig2.png ... dmar_fig6.png, dmar_compute.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    sizes = _sizes(rows, "dmar")
    if sizes and _sizes(rows, "bp"):
        written.append(_fig2(plt, rows, sizes, out / "dmar_fig2.png"))
        written.append(_fig3(rows, sizes, out / "dmar_fig3.png"))
        written.append(_fig4(rows, sizes, out / "dmar_fig4.png"))
    gsizes = _sizes(rows, "dmar_gci")
    if gsizes and _sizes(rows, "bp_gci"):
        written.append(_fig5(rows, gsizes, out / "dmar_fig5.png"))
        written.append(_fig6(rows, gsizes, out / "dmar_fig6.png"))
    csizes = _sizes(rows, "central_rollout")
    if csizes and sizes:
        written.append(_fig_compute(plt, rows, csizes, out / "dmar_compute.png"))
    return written


def _fig2(plt, rows: list[dict], sizes: list[int], path: Path) -> Path:
    """Fig. 2: cost and clusters on the three largest grids, k*(N), the improvement."""
    big = sizes[-3:]
    fig, axes = plt.subplots(3, 3, figsize=(10, 8.4), squeeze=False)
    fig.suptitle("Fig. 2: DMAR (blue) vs BP (red); shaded k = 8..12", fontsize=10)
    for j, n in enumerate(big):
        _cost_panel(axes[0, j], rows, n, "dmar", "bp")
        ax = axes[1, j]
        _curve(ax, _group(rows, "bp", "clusters"), n, RED, "BP")
        _curve(ax, _group(rows, "dmar", "clusters"), n, BLUE, "DMAR")
        ax.set_title(f"clusters per run, {n}x{n}", fontsize=9)
        ax.set_xlabel("k", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for j in range(len(big), 3):
        axes[0, j].axis("off")
        axes[1, j].axis("off")
    _critical_panel(axes[2, 0], rows, sizes)
    ax = axes[2, 1]
    for n in sizes:
        imp = improvement(rows, n)
        kk = sorted(imp)
        ax.plot(kk, [imp[k] for k in kk], marker="o", ms=3, label=f"{n}x{n}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axvspan(8, 12, color="orange", alpha=0.12)
    ax.set_title("cost(BP) / cost(DMAR)", fontsize=9)
    ax.set_xlabel("k", fontsize=8)
    ax.legend(fontsize=6, ncol=2)
    ax.tick_params(labelsize=7)
    axes[2, 2].axis("off")
    return _save(fig, path)


def _critical_panel(ax, rows: list[dict], sizes: list[int]) -> None:
    """Sampled critical radius k*(N) against log2*(N) and other slow functions."""
    ns = [n for n in sizes if critical_radius(rows, n) is not None]
    ks = [critical_radius(rows, n) for n in ns]
    N = np.array([n * n for n in ns], dtype=float)
    ax.plot(N, ks, "o-", color=BLUE, label="sampled k*(N)")
    grid_n = np.array([n * n for n in sizes], dtype=float)
    if len(grid_n):
        ax.plot(grid_n, [log_star(x) for x in grid_n], "s--", color="k", label="log2*(N)")
        ax.plot(grid_n, np.log2(np.log2(grid_n)), ":", color=GREEN, label="log2 log2 N")
        ax.plot(grid_n, np.log2(grid_n) / 2, "-.", color=RED, label="log2(N)/2")
    ax.set_xscale("log")
    ax.set_xlabel("N = n*n", fontsize=8)
    ax.set_title("critical radius k*(N)", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)


def _fig3(rows: list[dict], sizes: list[int], path: Path) -> Path:
    fig, axes = _grid_axes(len(sizes), "Fig. 3: cost (solid) and run time (dashed) vs k")
    for ax, n in zip(axes, sizes):
        _cost_panel(ax, rows, n, "dmar", "bp")
    return _save(fig, path)


def _fig4(rows: list[dict], sizes: list[int], path: Path) -> Path:
    fig, axes = _grid_axes(len(sizes), "Fig. 4: clusters per run vs k")
    for ax, n in zip(axes, sizes):
        _curve(ax, _group(rows, "bp", "clusters"), n, RED, "BP")
        _curve(ax, _group(rows, "dmar", "clusters"), n, BLUE, "DMAR")
        ax.axvspan(8, 12, color="orange", alpha=0.12)
        ax.set_title(f"{n}x{n}", fontsize=9)
        ax.set_xlabel("k", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _fig5(rows: list[dict], gsizes: list[int], path: Path) -> Path:
    fig, axes = _grid_axes(len(gsizes), "Fig. 5: DMAR-GCI (blue) vs BP-GCI (red)")
    for ax, n in zip(axes, gsizes):
        _cost_panel(ax, rows, n, "dmar_gci", "bp_gci", runtime=False)
        ax2 = ax.twinx()
        share = _group(rows, "bp_gci", lambda r: r["exploration_moves"] / max(1, r["cost"]))
        _curve(ax2, share, n, GREEN, "exploration share", "--")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("exploration share", fontsize=8)
        ax2.tick_params(labelsize=7)
    return _save(fig, path)


def _fig6(rows: list[dict], gsizes: list[int], path: Path) -> Path:
    fig, axes = _grid_axes(len(gsizes), "Fig. 6: GCI cost without exploration moves")
    for ax, n in zip(axes, gsizes):
        _cost_panel(
            ax, rows, n, "dmar_gci", "bp_gci", runtime=False,
            key=lambda r: r["cost"] - r["exploration_moves"],
        )  # fmt: skip
    return _save(fig, path)


def _fig_compute(plt, rows: list[dict], csizes: list[int], path: Path) -> Path:
    """Compute and cost of DMAR against centralized rollout on matched instances."""
    crow = _matched(rows)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for kk, ls in ((8, "-"), (12, "--")):
        ns, ratio, cr, cd = [], [], [], []
        for n in csizes:
            c = _group(crow, "central_rollout", "compute").get((n, 0))
            d = _group(crow, "dmar", "compute").get((n, kk))
            if c and d and d[0] > 0:
                ns.append(n)
                ratio.append(c[0] / d[0])
                cr.append(_group(crow, "central_rollout", "cost")[(n, 0)][0])
                cd.append(_group(crow, "dmar", "cost")[(n, kk)][0])
        if ns:
            axes[0].plot(ns, ratio, ls + "o", color=BLUE, label=f"DMAR k={kk}")
            axes[1].plot(ns, np.array(cd) / np.array(cr), ls + "o", color=BLUE,
                         label=f"DMAR k={kk}")  # fmt: skip
    axes[0].set_yscale("log")
    axes[0].set_title("compute(central rollout) / compute(DMAR)", fontsize=9)
    axes[1].set_title("cost(DMAR) / cost(central rollout)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("n (n x n grid, n agents)", fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    return _save(fig, path)


def summary(rows: list[dict]) -> str:
    """Text summary of the paper's findings in the CSV (k*, improvements, GCI, compute)."""
    lines = []
    for n in _sizes(rows, "dmar"):
        imp = improvement(rows, n)
        if not imp:
            continue
        best = max(imp, key=imp.get)
        rng = {k: v for k, v in imp.items() if 8 <= k <= 12}
        in_rng = f"{max(rng.values()):.2f}x at k={max(rng, key=rng.get)}" if rng else "n/a"
        lines.append(
            f"{n}x{n}: k*={critical_radius(rows, n)}  best BP/DMAR {imp[best]:.2f}x at k={best}"
            f"  best in k=8..12: {in_rng}"
        )
    pairs = defaultdict(dict)
    for r in rows:
        if r["algo"] in ("dmar_gci", "bp_gci"):
            pairs[(r["n"], r["instance"], r["ratio"], r["k"], r["run"])][r["algo"]] = r["cost"]
    both = [p for p in pairs.values() if len(p) == 2]
    if both:
        viol = sum(1 for p in both if p["dmar_gci"] > p["bp_gci"])
        lines.append(f"Theorem A.1: DMAR-GCI > BP-GCI on {viol} of {len(both)} paired runs")
    crow = _matched(rows)
    for n in _sizes(rows, "central_rollout"):
        c = _group(crow, "central_rollout", "compute").get((n, 0))
        for kk in (8, 12):
            d = _group(crow, "dmar", "compute").get((n, kk))
            if c and d and d[0] > 0:
                cc = _group(crow, "central_rollout", "cost")[(n, 0)][0]
                dc = _group(crow, "dmar", "cost")[(n, kk)][0]
                lines.append(
                    f"{n}x{n} k={kk}: compute central/DMAR = {c[0] / d[0]:.1f}x,"
                    f" cost DMAR/central = {dc / cc:.2f}"
                )
        o = _group(rows, "ortools", "cost").get((n, 0))
        if o:
            lines.append(f"{n}x{n}: OR-Tools reference cost {o[0]:.0f}")
    return "\n".join(lines)
