"""Draw a recorded swarm run (``swarm render FILE.mcap --out run.png|run.gif``).

Top view of the arena: each robot's trajectory from its ``/<robot>/pose`` messages, its body
and half the CBF safety distance (circles of radius ``Ds / 2`` touch when two robots are
``Ds`` apart), the consumers' interaction areas ``R_m`` shaded by their remaining demand
(from ``/consumers``), and the remaining demand per type. A routing mission also shows its
grid, obstacle cells (dark), open tasks (orange) and visited ones (grey, from the recorded
``/tasks``). A ``.png`` shows the final state, a ``.gif`` the run as an animation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sim_bridge import topics
from sim_bridge.config import ConfigError, load_config
from sim_bridge.errors import SwarmError


class RenderError(SwarmError, RuntimeError):
    """The recording cannot be drawn (message says why)."""


def load_run(path: str | os.PathLike):
    """(config, poses: name -> (T, 4) [t, x, y, z], consumers: (t (K,), table (K, M, F)),
    tasks: (t (J,), visited (J, T) bool) from ``/tasks``, empty without a routing mission)."""
    from sim_bridge.recording import read_config, read_messages

    if not Path(path).is_file():
        raise RenderError(f"{path}: no such file")
    try:
        data = read_config(path)
    except Exception as exc:  # a damaged or foreign file: say so, never a traceback
        raise RenderError(f"{path}: not a readable MCAP recording ({exc})") from None
    if data is None:
        raise RenderError(f"{path}: no swarm_config metadata (record with `swarm up --record`)")
    try:
        cfg = load_config(data)
    except ConfigError as exc:
        raise RenderError(f"{path}: stored config is invalid: {exc}") from None
    pose_topics = {topics.robot_topic(n, topics.POSE): n for n in cfg.robot_names}
    poses: dict[str, list] = {n: [] for n in cfg.robot_names}
    cons_t, cons = [], []
    fields = len(topics.CONSUMER_FIXED_FIELDS) + len(cfg.resource_types)
    t0 = None
    n_tasks = len(cfg.routing.tasks) if cfg.routing is not None else 0
    task_t, task_seen = [], []
    try:
        for topic, log_ns, msg in read_messages(
            path, [*pose_topics, topics.CONSUMERS, topics.TASKS]
        ):
            t0 = log_ns if t0 is None else t0
            t = (log_ns - t0) * 1e-9
            if topic in pose_topics:
                p = msg.pose.position
                poses[pose_topics[topic]].append((t, p.x, p.y, p.z))
            elif topic == topics.TASKS:
                if len(msg.data) == n_tasks * len(topics.TASK_FIELDS):
                    rows = np.asarray(msg.data).reshape(n_tasks, len(topics.TASK_FIELDS))
                    task_t.append(t)
                    task_seen.append(rows[:, topics.TASK_FIELDS.index("visited")] > 0.5)
            elif len(msg.data) == len(cfg.consumers) * fields:
                cons_t.append(t)
                cons.append(np.asarray(msg.data, dtype=float).reshape(len(cfg.consumers), fields))
    except Exception as exc:
        raise RenderError(f"{path}: cannot decode messages ({exc})") from None
    arrays = {n: np.asarray(v, dtype=float).reshape(-1, 4) for n, v in poses.items()}
    if not any(len(v) for v in arrays.values()):
        raise RenderError(f"{path}: no robot poses recorded")
    table = np.asarray(cons, dtype=float).reshape(len(cons), len(cfg.consumers), fields)
    tasks = (np.asarray(task_t), np.asarray(task_seen, dtype=bool).reshape(len(task_seen), n_tasks))
    return cfg, arrays, (np.asarray(cons_t), table), tasks


def _draw_routing(ax, cfg, tasks, t_end: float) -> None:
    """Grid outline, obstacle cells, open and visited tasks of a routing mission at ``t_end``."""
    import matplotlib.patches as mpatches

    rc = cfg.routing
    g, cs = rc.grid, rc.grid.cell_size
    (x0, x1), (y0, y1) = g.extent
    ax.add_patch(mpatches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=0.6, ls=":"))
    for x, y in g.centre(np.argwhere(rc.obstacles)).reshape(-1, 2):
        ax.add_patch(mpatches.Rectangle((x - cs / 2, y - cs / 2), cs, cs, color=(0.25, 0.25, 0.3)))
    tt, seen = tasks
    k = int(np.searchsorted(tt, t_end, side="right")) - 1 if len(tt) else -1
    visited = seen[k] if k >= 0 else np.zeros(len(rc.tasks), dtype=bool)
    for (x, y), done in zip(g.centre(rc.task_cells).reshape(-1, 2), visited):
        color = (0.6, 0.6, 0.6) if done else (1.0, 0.55, 0.0)
        ax.add_patch(
            mpatches.Rectangle((x - cs / 4, y - cs / 4), cs / 2, cs / 2, color=color, alpha=0.9)
        )


def _draw(ax, cfg, poses, consumers, t_end: float, tasks=None) -> None:
    import matplotlib.patches as mpatches

    ax.clear()
    a = cfg.arena
    ax.add_patch(
        mpatches.Rectangle((a.x[0], a.y[0]), a.x[1] - a.x[0], a.y[1] - a.y[0], fill=False, lw=1.5)
    )
    if cfg.routing is not None and tasks is not None:
        _draw_routing(ax, cfg, tasks, t_end)
    ct, table = consumers
    k = int(np.searchsorted(ct, t_end, side="right")) - 1 if len(ct) else -1
    demand0 = cfg.demand_matrix()
    nfix = len(topics.CONSUMER_FIXED_FIELDS)
    for m, c in enumerate(cfg.consumers):
        remaining = table[k, m, nfix:] if k >= 0 else demand0[m]
        total0 = demand0[m].sum()
        frac = float(remaining.sum() / total0) if total0 > 0 else 0.0
        ax.add_patch(
            mpatches.Circle(c.position, c.radius, color=(0.85, 0.1, 0.1), alpha=0.15 + 0.55 * frac)
        )
        label = " ".join(f"{r}:{v:.2f}" for r, v in zip(cfg.resource_types, remaining))
        below = (c.position[0], c.position[1] - c.radius - 0.05)
        ax.annotate(f"{c.name}: {label}", below, ha="center", va="top", fontsize=7)
    cmap = __import__("matplotlib").colormaps["tab10"]
    for i, r in enumerate(cfg.robots):
        tr = poses[r.name]
        tr = tr[tr[:, 0] <= t_end]
        if not len(tr):
            continue
        color = cmap(i % 10)
        ax.plot(tr[:, 1], tr[:, 2], "-", color=color, lw=1.0, alpha=0.8)
        x, y = tr[-1, 1], tr[-1, 2]
        ax.add_patch(mpatches.Circle((x, y), r.radius, color=color))
        ax.add_patch(
            mpatches.Circle(
                (x, y), cfg.safety.distance / 2, fill=False, ls="--", lw=0.6, color=color
            )
        )
        ax.annotate(r.name, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6)
    pad = 0.1
    ax.set_xlim(a.x[0] - pad, a.x[1] + pad)
    ax.set_ylim(a.y[0] - pad, a.y[1] + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    left = float(table[k, :, nfix:].sum()) if k >= 0 else float(demand0.sum())
    ax.set_title(
        f"t = {t_end:5.1f} s   demand left {left:.2f} / {demand0.sum():.2f}   "
        f"({len(cfg.robots)} robots, C = {cfg.comm_radius} m)",
        fontsize=9,
    )


def render(path: str | os.PathLike, out: str | os.PathLike, fps: float = 10.0, frames: int = 60):
    """Draw ``path`` to ``out`` (.png: final state; .gif: animation). Returns a summary."""
    out = Path(out)
    if out.suffix.lower() not in (".png", ".gif"):
        raise RenderError(f"--out {out}: use a .png or .gif file name")
    if not (fps > 0 and frames > 0):
        raise RenderError("--fps and --frames must be > 0")
    cfg, poses, consumers, tasks = load_run(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_end = max(float(v[-1, 0]) for v in poses.values() if len(v))
    fig, ax = plt.subplots(figsize=(6, 6), dpi=80)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if out.suffix.lower() == ".png":
            _draw(ax, cfg, poses, consumers, t_end, tasks)
            fig.tight_layout()
            fig.savefig(out)
            return f"final state at t = {t_end:.1f} s, {len(cfg.robots)} robots"
        import imageio.v2 as imageio

        images = []
        for t in np.linspace(0.0, t_end, frames):
            _draw(ax, cfg, poses, consumers, float(t), tasks)
            fig.tight_layout()
            fig.canvas.draw()
            images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        imageio.mimsave(out, images, duration=1.0 / fps, loop=0)
        return f"{frames} frames over {t_end:.1f} s"
    finally:
        plt.close(fig)
