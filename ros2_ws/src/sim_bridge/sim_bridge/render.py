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
from sim_bridge.paths import output_file_problem


class RenderError(SwarmError, RuntimeError):
    """The recording cannot be drawn (message says why)."""


def load_run(path: str | os.PathLike):
    """(config, poses: name -> (T, 4) [t, x, y, z], consumers: (t (K,), table (K, M, F)),
    tasks: (t (J,), visited (J, T) bool) from ``/tasks``, empty without a routing mission)."""
    from sim_bridge.recording import RecordingError, read_config, read_messages

    try:
        data = read_config(path)
    except RecordingError as exc:  # a missing, damaged or foreign file: one line, no traceback
        raise RenderError(str(exc)) from None
    if data is None:
        raise RenderError(f"{path}: no swarm_config metadata (record with `swarm up --record`)")
    try:
        cfg = load_config(data)
    except ConfigError as exc:
        n = len(exc.problems)
        raise RenderError(
            f"{path}: its stored swarm_config is invalid ({n} problem(s); first: "
            f"{exc.problems[0] if n else exc}); record the run again from a file that "
            "`swarm validate` accepts"
        ) from None
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
            try:
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
                    cons.append(
                        np.asarray(msg.data, dtype=float).reshape(len(cfg.consumers), fields)
                    )
            except (AttributeError, TypeError, ValueError) as exc:  # another type on the topic
                raise RenderError(
                    f"{path}: a message on {topic} is not what `swarm up --record` writes there "
                    f"({' '.join(str(exc).split())[:160]}); record the run again"
                ) from None
    except RecordingError as exc:
        raise RenderError(str(exc)) from None
    arrays = {n: np.asarray(v, dtype=float).reshape(-1, 4) for n, v in poses.items()}
    # a pose the world never publishes (NaN, inf): not drawn, rather than an empty picture
    finite = {n: v[np.isfinite(v).all(axis=1)] for n, v in arrays.items()}
    if not any(len(v) for v in finite.values()):
        what = (
            "only non-finite (NaN/inf) robot poses"
            if any(map(len, arrays.values()))
            else ("no pose of this swarm's robots")
        )
        raise RenderError(
            f"{path}: {what} recorded, nothing to draw; record a run with `swarm up --record`"
        )
    arrays = finite
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


#: Most GIF frames ``swarm render`` draws: each is a full redraw and all are held in memory
#: until the GIF is written (about 0.7 MB each; 600 frames are a minute at 10 fps).
MAX_FRAMES = 600
#: GIF frame delays are whole hundredths of a second: 100 fps is the fastest a GIF can say.
MAX_FPS = 100.0


def _check_out(out: Path) -> None:
    """:class:`RenderError` unless ``out`` can be written (checked before any drawing)."""
    if out.suffix.lower() not in (".png", ".gif"):
        raise RenderError(f"--out {out}: use a .png or .gif file name")
    problem = output_file_problem(out)
    if problem is not None:
        raise RenderError(f"--out {out}: {problem}")


def render(path: str | os.PathLike, out: str | os.PathLike, fps: float = 10.0, frames: int = 60):
    """Draw ``path`` to ``out`` (.png: final state; .gif: animation). Returns a summary.

    The image is written to a temporary file next to ``out`` and renamed at the end, so a
    failed render never leaves a partial ``out``."""
    out = Path(out)
    _check_out(out)
    if not (0 < fps <= MAX_FPS):
        raise RenderError(f"--fps {fps}: give a frame rate in (0, {MAX_FPS:g}] (a GIF's limit)")
    if not (0 < frames <= MAX_FRAMES):
        raise RenderError(f"--frames {frames}: give a frame count from 1 to {MAX_FRAMES}")
    cfg, poses, consumers, tasks = load_run(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_end = max(float(v[-1, 0]) for v in poses.values() if len(v))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(f"--out {out}: cannot make its folder ({exc.strerror or exc})") from None
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part{out.suffix}")
    fig, ax = plt.subplots(figsize=(6, 6), dpi=80)
    try:
        if out.suffix.lower() == ".png":
            _draw(ax, cfg, poses, consumers, t_end, tasks)
            fig.tight_layout()
            fig.savefig(tmp, format="png")
            info = f"final state at t = {t_end:.1f} s, {len(cfg.robots)} robots"
        else:
            import imageio.v2 as imageio

            images = []
            for t in np.linspace(0.0, t_end, frames):
                _draw(ax, cfg, poses, consumers, float(t), tasks)
                fig.tight_layout()
                fig.canvas.draw()
                images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
            imageio.mimsave(tmp, images, format="GIF", duration=1.0 / fps, loop=0)
            info = f"{frames} frames over {t_end:.1f} s"
        os.replace(tmp, out)
        return info
    except OSError as exc:
        raise RenderError(f"--out {out}: cannot write it ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
