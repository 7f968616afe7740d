"""Figures for the README: a closed-loop position swap with and without the filter.

Usage::

    cbf_figures --out docs/img

writes ``cbf_filter_swap.png``: N robots on a circle drive to the antipodal point (with a
small right-hand detour in the nominal command) at up to 0.5 m/s (20 Hz, command held
between ticks), once through the centralized and once through the decentralized filter
(Robotarium parameters: gamma = 100, cubic, Ds = 0.15 m), and the smallest pairwise
distance over time, also for the unfiltered commands.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from cbf_filter.centralized import CentralizedCBF
from cbf_filter.decentralized import DecentralizedCBF
from cbf_filter.params import CBFParams

DT = 0.05
VMAX = 0.5


def swap(n: int = 12, steps: int = 600, seed: int = 0) -> dict[str, tuple]:
    """Trajectories ``(T, N, 2)`` and min pair distance ``(T,)`` per filter form."""
    rng = np.random.default_rng(seed)
    ang = 2 * np.pi * np.arange(n) / n
    start = 1.5 * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    start += 1e-3 * rng.normal(size=start.shape)  # exact symmetry deadlocks any CBF
    goals = -start
    params = CBFParams(
        arena=((-2.0, 2.0), (-2.0, 2.0)), max_speed=VMAX, sensing_radius=1.0, sample_time=DT
    )
    forms = {
        "centralized": CentralizedCBF(n, 2, params),
        "decentralized": DecentralizedCBF(2, params),
        "unfiltered": None,
    }
    iu = np.triu_indices(n, 1)
    out = {}
    for name, cbf in forms.items():
        x = start.copy()
        xs, dmin = [x.copy()], []
        for _ in range(steps):
            to_goal = goals - x
            # Goal seeking plus a small right-hand detour: the usual remedy for the
            # deadlocks that a pure minimum-norm filter has in symmetric swaps.
            far = np.linalg.norm(to_goal, axis=1, keepdims=True) > 0.3
            u_hat = to_goal + far * 0.2 * np.stack([to_goal[:, 1], -to_goal[:, 0]], axis=1)
            norms = np.linalg.norm(u_hat, axis=1, keepdims=True)
            u_hat = u_hat * np.minimum(1.0, VMAX / np.maximum(norms, 1e-12))
            u = u_hat if cbf is None else cbf.filter(x, u_hat).u
            x = x + DT * u
            xs.append(x.copy())
            dmin.append(np.linalg.norm(x[iu[0]] - x[iu[1]], axis=1).min())
        out[name] = (np.array(xs), np.array(dmin))
    return out


def plot_swap(path: Path, n: int = 12) -> None:
    """Write the swap figure to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = swap(n)
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 4.2), dpi=80)
    colors = plt.cm.hsv(np.linspace(0, 1, n, endpoint=False))
    for ax, name in zip(axes[:2], ("centralized", "decentralized")):
        xs, dmin = runs[name]
        for k in range(n):
            ax.plot(xs[:, k, 0], xs[:, k, 1], color=colors[k], lw=1.2)
            ax.plot(*xs[0, k], "o", color=colors[k], ms=4)
            ax.add_patch(plt.Circle(xs[-1, k], 0.075, color=colors[k], alpha=0.5))
        ax.set_title(f"{name}: min distance {dmin.min():.3f} m")
        ax.set_aspect("equal")
        ax.set_xlim(-1.8, 1.8)
        ax.set_ylim(-1.8, 1.8)
        ax.set_xlabel("x [m]")
    axes[0].set_ylabel("y [m]")
    ax = axes[2]
    t = DT * np.arange(1, len(runs["centralized"][1]) + 1)
    for name, style in (("centralized", "-"), ("decentralized", "--"), ("unfiltered", ":")):
        ax.plot(t, runs[name][1], style, label=name)
    ax.axhline(0.15, color="k", lw=0.8)
    ax.text(t[-1], 0.16, "Ds = 0.15 m", ha="right", va="bottom")
    ax.set_ylim(0, 0.6)
    ax.set_xlabel("time [s]")
    ax.set_ylabel("smallest pair distance [m]")
    ax.legend(loc="upper right")
    fig.suptitle(f"{n} robots swap through the centre (gamma = 100, cubic, 0.5 m/s, 20 Hz)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    from sim_bridge.cli import ArgumentParser

    ap = ArgumentParser(prog="cbf_figures", description="Draw the cbf_filter README figures.")
    ap.add_argument("--out", default="docs/img", help="output folder")
    args = ap.parse_args(argv)
    out = Path(args.out)
    try:
        if not args.out.strip():
            raise NotADirectoryError(0, "empty name")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"cbf_figures: error: --out {args.out!r}: cannot make this folder "
            f"({exc.strerror or exc}); name a writable folder",
            file=sys.stderr,
        )
        return 2
    plot_swap(out / "cbf_filter_swap.png")
    print(f"wrote {out / 'cbf_filter_swap.png'}")
    return 0
