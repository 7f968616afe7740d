"""Draw the world like the paper's Fig. 2: agents coloured by their assigned consumer,
interaction areas shaded by the remaining demand, comm links, per-consumer demand bars.

    from lgtc_policy.env.render import render_episode
    render_episode(env, policy, "episode.gif", steps=300)      # or .png for the last frame
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import imageio.v2 as imageio  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Circle, Rectangle  # noqa: E402

from lgtc_policy.env.core import ResourceEnv  # noqa: E402

_COLOURS = plt.get_cmap("tab10").colors


def draw(env: ResourceEnv, b: int = 0, ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """Draw env ``b``'s current state on ``ax`` (a new figure if None)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.2), dpi=90)
    ax.clear()
    pos = env.pos[b].detach().double().cpu().numpy()
    act = env.active[b].cpu().numpy()
    cpos = env.consumer_pos[b].double().cpu().numpy()
    rad = env.radius[b].double().cpu().numpy()
    dem = env.demand[b].double().cpu().numpy()
    dem0 = env.demand0[b].double().cpu().numpy()
    pers = env.persistent[b].cpu().numpy()
    assign = env.assignment[b].cpu().numpy()
    M, r = dem.shape
    # comm links within C
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    ii, jj = np.nonzero(np.triu((d <= env.cfg.comm_radius) & act[:, None] & act[None], 1))
    for i, j in zip(ii, jj):
        ax.plot(*pos[[i, j]].T, color="0.85", lw=0.5, zorder=1)
    for m in range(M):
        frac = dem[m].sum() / max(dem0[m].sum(), 1e-12)
        colour = _COLOURS[m % 10]
        ax.add_patch(Circle(cpos[m], rad[m], color="tab:pink", alpha=0.15 + 0.6 * frac, lw=0))
        ax.add_patch(Circle(cpos[m], rad[m], fill=False, ec=colour, lw=1.2))
        ax.plot(*cpos[m], "o", color="red", ms=4, zorder=3)
        # remaining / initial demand per type: orange = persistent, green = instantaneous
        for l in range(r):
            if dem0[m, l] <= 0:
                continue
            x0, y0 = cpos[m, 0] + rad[m] + 0.02 + 0.045 * l, cpos[m, 1] - 0.1
            ax.add_patch(Rectangle((x0, y0), 0.035, 0.2, fill=False, ec="0.4", lw=0.6))
            h = 0.2 * dem[m, l] / dem0[m, l]
            c = "tab:orange" if pers[l] else "tab:green"
            ax.add_patch(Rectangle((x0, y0), 0.035, h, color=c, lw=0))
    for i in range(len(pos)):
        if not act[i]:
            ax.plot(*pos[i], "x", color="0.5", ms=5, zorder=4)
            continue
        colour = _COLOURS[assign[i] % 10] if assign[i] >= 0 else "0.3"
        if assign[i] >= 0:
            ax.plot(*np.stack([pos[i], cpos[assign[i]]]).T, color=colour, lw=0.4, alpha=0.5)
        ax.plot(*pos[i], "o", color=colour, ms=5, mec="k", mew=0.5, zorder=4)
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    sat = float(env.demand_satisfied()[b])
    ax.set_title(
        title or f"t = {int(env.t[b]) * env.cfg.dt:.1f} s   satisfied {100 * sat:.0f} %", fontsize=9
    )
    return ax


def frame(env: ResourceEnv, b: int = 0, title: str = "") -> np.ndarray:
    """(H, W, 3) uint8 image of env ``b``."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=90)
    draw(env, b, ax, title)
    fig.tight_layout()
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img


def render_episode(
    env: ResourceEnv,
    policy: Callable[[ResourceEnv], torch.Tensor],
    path: str | Path,
    steps: int | None = None,
    every: int = 5,
    b: int = 0,
    fps: int = 10,
) -> Path:
    """Run ``policy(env) -> actions`` for ``steps`` steps from the current state and write a
    GIF (every ``every``-th step) or, for a .png path, the last frame."""
    path = Path(path)
    steps = env.cfg.episode_length if steps is None else steps
    frames = [frame(env, b)]
    for t in range(steps):
        env.step(policy(env))
        if (t + 1) % every == 0 or t + 1 == steps:
            frames.append(frame(env, b))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        imageio.imwrite(path, frames[-1])
    else:
        imageio.mimsave(path, frames, duration=1.0 / fps, loop=0)
    return path


def main(argv: list[str] | None = None) -> None:
    """``lgtc figures env [--out docs/img] [--seed 2]``: the README's expert figures."""
    import argparse

    from lgtc_policy.env.expert import CentralizedExpert
    from lgtc_policy.env.spec import EnvConfig

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args(argv)
    out = Path(args.out)
    env = ResourceEnv(EnvConfig(auto_reset=False), batch_size=1, seed=args.seed)
    expert = CentralizedExpert(env)
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.7), dpi=80)
    shots = {0: axes[0], 40: axes[1], env.cfg.episode_length: axes[2]}
    frames = []
    for t in range(env.cfg.episode_length + 1):
        if t in shots:
            draw(env, 0, shots[t])
        if t % 6 == 0:
            frames.append(frame(env))
        if t < env.cfg.episode_length:
            env.step(expert.act())
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "lgtc_env_expert.png")
    imageio.mimsave(out / "lgtc_env_expert.gif", frames[::2], duration=0.15, loop=0)
    print(f"wrote {out / 'lgtc_env_expert.png'} and {out / 'lgtc_env_expert.gif'}")
