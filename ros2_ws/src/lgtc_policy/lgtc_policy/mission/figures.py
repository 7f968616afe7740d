"""Regenerate the paper's Figs. 2-6 (and the training curve of a run) as small PNGs.

* :func:`fig2`: one episode of a checkpoint's policy: the arena (agents, consumers, their
  interaction zones shaded by the remaining demand) and each agent's reward of eq. (2) over
  time coloured by the consumer it serves (eq. 3): the reward clusters of Fig. 2.
* :func:`fig3`: reward curves (mean +- std over seeds) of the five methods from their
  ``progress.csv`` files (``<runs>/<algo>_s<seed>/progress.csv``) or from the combined CSV
  this function writes (``algo, seed, env_steps, episode_reward, eval_reward``).
* :func:`cell_curves`: the LGTC cell over training (leak ``tau``, Theorem 1 margin, state
  bound, coupling) next to the reward, one line per run: how a form of Pi shapes the cell.
* :func:`fig4`: LGTC-IPPO vs the centralized expert as N and M vary (10 trials per point).
* :func:`fig56`: 5 agents, 3 consumers, persistent (battery-like) resources; the agent serving
  a consumer alone discharges and lands at 50 s; positions over time (Fig. 5) and normalised
  cluster states of the policy and value networks (Fig. 6).
* :func:`plot_run`: one run of the discharge study (Fig. 5 style); :func:`cluster_colour`: the
  colour of the cluster attending consumer ``m`` in the study's plots.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from sim_bridge.recording import read_run
from sim_bridge.sim import robot_serving_alone

from lgtc_policy.env import EnvConfig, ResourceEnv
from lgtc_policy.env.safety import SafetyFilter
from lgtc_policy.evaluate import (
    evaluate_expert,
    evaluate_net,
    policy_ticks,
    trained_safety_filter,
)
from lgtc_policy.mission.report import cluster_log
from lgtc_policy.mission.scenario import env_serving
from lgtc_policy.model.checkpoint import build_net, load_checkpoint
from lgtc_policy.model.features import inputs_from_obs

__all__ = [
    "cell_curves",
    "cluster_colour",
    "fig2",
    "fig3",
    "fig4",
    "fig56",
    "plot_run",
    "train_curve",
]

ALGOS = ("lgtc_ippo", "mamoppo", "ippo", "vdn", "qmix")
LABELS = {
    "lgtc_ippo": "LGTC-IPPO",
    "ippo": "IPPO",
    "mamoppo": "MAMOPPO",
    "vdn": "VDN-SAC",
    "qmix": "QMIX-SAC",
    "expert": "centralized expert",
    "lgtc_cbf": "LGTC-IPPO + CBF filter",
    "lgtc_ippo_constraint": "LGTC-IPPO, --pi-form constraint",
    "lgtc_ippo_relpos": "LGTC-IPPO + relpos (not the paper's obs.)",
    "ippo_relpos": "IPPO + relpos (not the paper's obs.)",
}
COLORS = {
    "lgtc_ippo": "tab:red",
    "ippo": "tab:blue",
    "mamoppo": "tab:green",
    "vdn": "tab:purple",
    "qmix": "tab:orange",
    "expert": "black",
    "lgtc_cbf": "tab:brown",
    "lgtc_ippo_constraint": "salmon",
    "lgtc_ippo_relpos": "darkred",
    "ippo_relpos": "navy",
}


def _plt():
    # matplotlib only when a figure is drawn (the study and the demo import this module)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read_rows(path: Path, need: tuple[str, ...] = ()) -> list[dict]:
    """The rows of CSV ``path``; ``ValueError`` (one line naming the file) when it is not a
    readable CSV or has none of the columns ``need``."""
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = reader.fieldnames or []
    except (csv.Error, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CSV ({str(e)[:120]})") from None
    missing = [k for k in need if k not in fields]
    if missing:
        raise ValueError(
            f"{path}: no column {', '.join(missing)} (has {fields[:8]}); pass a CSV this "
            "command wrote (a run's progress.csv, fig4's expert cache) or a new path"
        )
    return rows


def _write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _num(v: str | None, where: str = "", key: str = "") -> float:
    """``v`` as a float (empty: NaN); ``ValueError`` naming ``where`` (file, line) and the
    column ``key`` when it is not a number."""
    if v in (None, ""):
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: {key} {str(v)[:40]!r} is not a number; fix or remove that row "
            "(or pass a CSV that `lgtc train` / `lgtc figures` wrote)"
        ) from None


def _whole(v: str | None, where: str, key: str) -> int:
    """``v`` as a whole number (``env_steps``, ``seed``); ``ValueError`` naming ``where``."""
    x = _num(v, where, key)
    if not (np.isfinite(x) and x == int(x)):
        raise ValueError(
            f"{where}: {key} {str(v)[:40]!r} is not a whole number; fix or remove that row "
            "(or pass a CSV that `lgtc train` / `lgtc figures` wrote)"
        )
    return int(x)


def collect_runs(runs: str | Path, out_csv: str | Path) -> Path:
    """Combine ``<runs>/<algo>_s<seed>/progress.csv`` into one small CSV."""
    runs = Path(runs)
    rows = []
    found = 0
    for d in sorted(runs.glob("*_s*")):
        prog = d / "progress.csv"
        if not prog.is_file():
            continue
        algo, seed = d.name.rsplit("_s", 1)
        if not seed.isdigit():
            raise ValueError(
                f"{d}: not an <algo>_s<seed> run folder (seed {seed!r}); rename or move it"
            )
        found += 1
        for line, r in enumerate(_read_rows(prog, ("env_steps",)), start=2):
            rows.append(
                {
                    "algo": algo,
                    "seed": int(seed),
                    "env_steps": _whole(r["env_steps"], f"{prog} line {line}", "env_steps"),
                    "episode_reward": r.get("episode_reward", ""),
                    "eval_reward": r.get("eval_reward", ""),
                }
            )
    if not rows:
        what = f"{found} progress.csv with no rows" if found else "no <algo>_s<seed>/progress.csv"
        raise FileNotFoundError(f"{what} under {runs}; give the folder `lgtc sweep` wrote")
    out_csv = Path(out_csv)
    _write_rows(out_csv, rows)
    return out_csv


#: Columns of the combined CSV that :func:`fig3` writes next to its figure and reads back.
FIG3_COLUMNS = ("algo", "seed", "env_steps")


def check_fig3_source(runs: str | Path, key: str = "episode_reward") -> None:
    """``ValueError`` (one line naming ``--runs`` and the fix) unless ``runs`` is a folder of
    ``<algo>_s<seed>`` runs or a combined CSV of :func:`fig3` with at least one row."""
    src = Path(runs)
    if src.is_dir():
        return
    fix = (
        "give the folder of <algo>_s<seed>/progress.csv runs that `lgtc sweep --run-dir` "
        "wrote, or the .csv that `lgtc figures fig3` wrote next to its figure"
    )
    if not src.exists():
        raise ValueError(f"--runs {runs} does not exist; {fix}")
    if not src.is_file():
        raise ValueError(f"--runs {runs} is not a folder or a file; {fix}")
    try:
        rows = _read_rows(src, (*FIG3_COLUMNS, key))
    except (ValueError, OSError) as e:
        raise ValueError(f"--runs {runs} is not a folder or a fig3 CSV ({e}); {fix}") from None
    if not rows:
        raise ValueError(f"--runs {runs}: the CSV has no rows; {fix}")


#: Columns of :func:`cell_curves`' CSV (``coupling`` is empty for runs that did not log it).
CELL_COLUMNS = ("run", "env_steps", "episode_reward", "tau_min", "contraction_c")
_CELL_EXTRA = ("state_abs_max", "coupling")


def _cell_rows(src: Path) -> list[dict]:
    """The rows :func:`cell_curves` draws: ``src`` is its own CSV or a folder of LGTC-IPPO
    runs (each ``progress.csv`` row with ``tau_min``, labelled by the run's folder name);
    ``ValueError`` (one line) when neither holds one."""
    if src.is_file():
        rows = _read_rows(src, CELL_COLUMNS)
    elif src.is_dir():
        rows = [
            {"run": d.name, **{k: r.get(k, "") for k in (*CELL_COLUMNS[1:], *_CELL_EXTRA)}}
            for d in sorted(p.parent for p in src.glob("*/progress.csv"))
            for r in _read_rows(d / "progress.csv")
            if r.get("tau_min")
        ]
    else:
        rows = []
    if not rows:
        raise ValueError(
            f"--runs {src}: no LGTC-IPPO progress.csv (with tau_min) found; give a folder of "
            "lgtc_ippo runs or the .csv `lgtc figures cell` wrote"
        )
    return rows


def cell_curves(runs: str | Path, out: str | Path) -> Path:
    """The LGTC cell over training, one line per run: episode reward, smallest leak
    ``tau_min``, Theorem 1 margin ``contraction_c`` (``min_q tau_q - sum_q' |(A^T A)_qq'|``;
    < 0: the coupling outgrew the leak and ``|x| <= 1`` is no longer guaranteed), the largest
    state ``|x|`` and, where logged, the coupling (largest row sum of ``|A^T A|``).

    ``runs``: a folder of LGTC-IPPO run folders (each with ``progress.csv``; the folder name
    labels the line) or the CSV this function writes next to ``out`` (columns
    :data:`CELL_COLUMNS` and ``state_abs_max``, ``coupling``). ``ValueError`` (one line) when
    neither holds a logged LGTC run.
    """
    src = Path(runs)
    rows = _cell_rows(src)
    by_run: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_run[r["run"]].append(r)
    values = {
        id(r): {
            k: _num(r.get(k), f"{src} run {r['run']}", k) for k in (*CELL_COLUMNS[1:], *_CELL_EXTRA)
        }
        for r in rows
    }
    if not any(
        np.isfinite(v["env_steps"]) and np.isfinite([v["episode_reward"], v["tau_min"]]).any()
        for v in values.values()
    ):
        raise ValueError(
            f"--runs {runs}: no row with a finite env_steps and episode_reward or tau_min, "
            "nothing to draw; give a folder of lgtc_ippo runs that logged progress"
        )
    plt = _plt()
    keys = ("episode_reward", "tau_min", "contraction_c", "state_abs_max", "coupling")
    titles = (
        "episode reward (5-update mean)",
        "tau_min (smallest leak)",
        "Theorem 1 margin c",
        "max |x| (state)",
        "coupling: max row sum |AᵀA|",
    )
    if not any(r.get("coupling") for r in rows):  # runs from before the column: no panel
        keys, titles = keys[:4], titles[:4]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.3), dpi=90)
    for name, rr in by_run.items():
        x = np.array([values[id(r)]["env_steps"] for r in rr]) / 1e3
        for ax, key in zip(axes, keys):
            y = np.array([values[id(r)][key] for r in rr])
            if key == "episode_reward":
                ok = ~np.isnan(y)
                x_k, y = x[ok], y[ok]
                y = np.array([y[max(0, i - 4) : i + 1].mean() for i in range(len(y))])
            else:
                x_k = x
            if not np.isnan(y).all():
                ax.plot(x_k, y, lw=1, label=name)
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("env steps [k]")
    for ax in axes[3:]:
        ax.set_yscale("log")
    axes[2].axhline(0, color="k", lw=0.6)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    _write_rows(out.with_suffix(".csv"), rows)
    return out


@torch.inference_mode()
def _fig2_rollout(ck: dict, seed: int) -> dict:
    """One episode of the checkpoint's policy on its env (its CBF filter when trained with
    it): positions ``(T + 1, N, 2)``, rewards ``(T, N)``, assignments ``(T, N)`` (-1 = none),
    consumer positions and radii, remaining demand fraction ``(T + 1, M)``."""
    pol = build_net(ck, "policy")
    cfg = dataclasses.replace(
        EnvConfig.from_dict(dict(ck["env_config"])), auto_reset=False, seed=seed
    ).validate()
    env = ResourceEnv(cfg, 1, seed=seed)
    pos, rew, lab, dem = [], [], [], []
    for tick in policy_ticks(pol, env, cfg.episode_length, trained_safety_filter(ck)):
        if not pos:  # the reset state, before the first step
            d0 = env.demand0[0].sum(-1).clamp_min(1e-9)
            pos.append(tick.prev_obs.pos[0].clone())
            dem.append(tick.prev_obs.demand[0].sum(-1) / d0)
        pos.append(tick.obs.pos[0].clone())
        rew.append(tick.reward[0].clone())
        lab.append(tick.labels[0].clone())
        dem.append(tick.obs.demand[0].sum(-1) / d0)
    obs = tick.obs
    return {
        "pos": torch.stack(pos).numpy(),
        "reward": torch.stack(rew).numpy(),
        "labels": torch.stack(lab).numpy(),
        "demand": torch.stack(dem).numpy(),
        "cpos": obs.consumer_pos[0].numpy(),
        "radii": env.radius[0].numpy(),
        "dt": cfg.dt,
    }


def fig2(checkpoint: str, out: str | Path, seed: int = 0, smooth_s: float = 1.0) -> Path:
    """Fig. 2: the agents' rewards cluster as the agents cluster around the consumers.

    Left: the arena at the tick where the most agents stand inside the interaction zone of
    the consumer they serve (zones ``R_m`` shaded by the remaining demand, agents ringed in
    the colour of the consumer they serve under the eq. 3 assignment, their paths so far).
    Right: each agent's reward of eq. (2) minus the team's mean reward at that tick (the
    shared terms, e.g. ``rw_g``, cancel; moving average over ``smooth_s``), coloured the same
    way. Writes ``out`` and its data (``.csv``: ``t_s, agent, x, y, reward, consumer``). The
    ratio behind the picture, over many episodes, is ``reward_cluster_ratio`` of
    ``lgtc eval --json`` (:mod:`lgtc_policy.model.clusters`; it is blind to shared terms too).
    """
    ro = _fig2_rollout(load_checkpoint(checkpoint), seed)
    P, R, L = ro["pos"], ro["reward"], ro["labels"]
    T, N = R.shape
    k = max(1, round(smooth_s / ro["dt"]))
    Rd = R - R.mean(1, keepdims=True)
    Rs = np.stack([np.convolve(Rd[:, i], np.ones(k) / k, mode="same") for i in range(N)], 1)
    cp, rad = ro["cpos"][np.maximum(L, 0)], ro["radii"][np.maximum(L, 0)]  # (T, N, 2), (T, N)
    inside = (np.linalg.norm(P[1:] - cp, axis=-1) <= rad) & (L >= 0)
    snap = int(np.argmax(inside.sum(1)))
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=90)
    for m, (cx, cy) in enumerate(ro["cpos"]):
        left = float(ro["demand"][snap + 1, m])
        ax.add_patch(
            plt.Circle((cx, cy), float(ro["radii"][m]), color="magenta", alpha=0.08 + 0.3 * left)
        )
        ax.plot(cx, cy, "o", color="red", ms=8)
        ax.text(cx, cy + float(ro["radii"][m]) + 0.04, f"c{m} ({left:.0%} left)", fontsize=7)
    for i in range(N):
        col = cluster_colour(int(L[snap, i]))
        ax.plot(P[: snap + 2, i, 0], P[: snap + 2, i, 1], "-", color=col, lw=0.7, alpha=0.6)
        ax.plot(P[snap + 1, i, 0], P[snap + 1, i, 1], "o", color="green", ms=6, mec=col, mew=2)
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_aspect("equal")
    ax.set_title(f"t = {(snap + 1) * ro['dt']:.1f} s (ring = served consumer)", fontsize=9)
    ts = np.arange(1, T + 1) * ro["dt"]
    for i in range(N):
        for t0 in range(0, T, 2):  # 2-tick segments coloured by the assignment at t0
            seg = slice(t0, min(t0 + 3, T))
            bx.plot(ts[seg], Rs[seg, i], color=cluster_colour(int(L[t0, i])), lw=1)
    bx.axvline((snap + 1) * ro["dt"], color="k", ls=":", lw=0.8)
    bx.set_xlabel("time [s]")
    bx.set_ylabel(f"reward, eq. (2), minus team mean ({smooth_s:g} s mean)", fontsize=8)
    bx.set_title("rewards coloured by the served consumer (grey: none)", fontsize=9)
    fig.suptitle("Fig. 2: the agents' rewards cluster as the agents cluster", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    rows = [
        {
            "t_s": f"{(t + 1) * ro['dt']:.2f}",
            "agent": i,
            "x": f"{P[t + 1, i, 0]:.4f}",
            "y": f"{P[t + 1, i, 1]:.4f}",
            "reward": f"{R[t, i]:.5f}",
            "consumer": int(L[t, i]),
        }
        for t in range(T)
        for i in range(N)
    ]
    _write_rows(out.with_suffix(".csv"), rows)
    return out


FIG3_KEYS = ("episode_reward", "eval_reward")
"""What :func:`fig3` can draw: the training episodes' reward (stochastic policy, every update)
or the deterministic evaluation's (every ``--eval-every`` steps)."""


def fig3(runs: str | Path, out: str | Path, key: str = "episode_reward", title: str = "") -> Path:
    """Fig. 3: mean +- std over seeds of ``key`` (:data:`FIG3_KEYS`) vs env steps for each
    method (``title``: the figure's title, default the paper's Fig. 3).

    ``runs`` is a folder of runs (then ``<out stem>.csv`` is written next to the PNG) or a
    combined CSV from :func:`collect_runs`.
    """
    if key not in FIG3_KEYS:
        raise ValueError(f"key {key!r}: draw one of {FIG3_KEYS}")
    out = Path(out)
    src = Path(runs)
    if src.is_dir():
        src = collect_runs(src, out.with_suffix(".csv"))
    curves: dict[str, dict[int, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for line, r in enumerate(_read_rows(src, FIG3_COLUMNS), start=2):
        where = f"{src} line {line}"
        v = _num(r.get(key), where, key)
        if np.isfinite(v):
            seed = _whole(r["seed"], where, "seed")
            curves[r["algo"]][seed].append((_whole(r["env_steps"], where, "env_steps"), v))
    if not curves:
        raise ValueError(f"{runs}: no run has a {key} value to draw; pick another --key")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for algo in [a for a in ALGOS if a in curves] + [a for a in curves if a not in ALGOS]:
        seeds = curves[algo]
        hi = min(max(s for s, _ in c) for c in seeds.values())
        lo = max(min(s for s, _ in c) for c in seeds.values())
        grid = np.linspace(lo, hi, 50)
        ys = np.stack([np.interp(grid, *np.array(sorted(c)).T) for c in seeds.values()])
        m, sd = ys.mean(0), ys.std(0)
        ax.plot(
            grid,
            m,
            color=COLORS.get(algo),
            lw=2,
            label=f"{LABELS.get(algo, algo)} (n={len(seeds)})",
        )
        ax.fill_between(grid, m - sd, m + sd, color=COLORS.get(algo), alpha=0.2)
    ax.set_yscale("symlog", linthresh=1.0)  # collapsing SAC runs reach -100s; keep PPO readable
    ax.set_xlabel("env steps (team transitions)")
    what = "evaluation reward per agent" if key == "eval_reward" else "reward per agent"
    ax.set_ylabel(f"accumulated {what} (symlog)")
    ax.set_title(title or "Fig. 3: training reward, mean $\\pm$ std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def train_curve(csv_path: str | Path, out: str | Path, expert: float | None = None) -> Path:
    """Training curve of one run: training-episode and evaluation reward vs env steps."""
    given = str(csv_path)
    csv_path = Path(csv_path)
    if not given or not csv_path.is_file():
        raise ValueError(
            (f"--csv {given}: not a file" if given else "--csv is missing")
            + "; give a run's progress.csv (e.g. --csv runs/lgtc_ippo_s0/progress.csv)"
        )
    rows = _read_rows(csv_path, need=("env_steps",))
    at = [f"{csv_path} line {i}" for i in range(2, len(rows) + 2)]
    steps = np.array([_num(r["env_steps"], w, "env_steps") for r, w in zip(rows, at)])
    series = {
        key: np.array([_num(r.get(key), w, key) for r, w in zip(rows, at)])
        for key in ("episode_reward", "eval_reward")
    }
    if not any((np.isfinite(steps) & np.isfinite(y)).any() for y in series.values()):
        raise ValueError(
            f"--csv {csv_path}: no row with a finite env_steps and episode_reward or "
            f"eval_reward ({len(rows)} rows), nothing to draw; give a run that logged progress"
        )
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    for key, style in (("episode_reward", "-"), ("eval_reward", "o-")):
        y = series[key]
        ok = np.isfinite(y) & np.isfinite(steps)
        if ok.any():
            ax.plot(steps[ok], y[ok], style, ms=3, label=key.replace("_", " "))
    if expert is not None:
        ax.axhline(expert, color="k", ls="--", label="centralized expert")
        ax.axhline(0.75 * expert, color="gray", ls=":", label="75 % of expert")
    ax.set_xlabel("env steps (team transitions)")
    ax.set_ylabel("accumulated reward per agent")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def _grid(base: EnvConfig, agents, consumers):
    for sweep, values in (("n_agents", agents), ("n_consumers", consumers)):
        for v in values:
            yield sweep, v, dataclasses.replace(base, **{sweep: v}).validate()


def fig4(
    checkpoint: str,
    out: str | Path,
    trials: int = 10,
    seed: int = 0,
    agents: tuple[int, ...] = (5, 10, 20, 30, 40, 50),
    consumers: tuple[int, ...] = (2, 4, 6, 8, 10),
    expert_cache: str | Path | None = None,
) -> Path:
    """Fig. 4: reward vs N (M = 4) and vs M (N = 10), LGTC-IPPO vs expert, ``trials`` each.

    LGTC-IPPO is drawn twice: the policy alone (the paper's setting) and with every action
    through the expert's centralized CBF filter (the expert's own collision avoidance).

    The numbers are also written to ``<out stem>.csv``. The expert's rows depend only on the
    env config, ``trials`` and ``seed``; with ``expert_cache`` they are read from / written to
    that CSV (the expert at N = 50 re-solves eq. 3 often and dominates the run time).
    """
    ck = load_checkpoint(checkpoint)
    net = build_net(ck)
    base = EnvConfig.from_dict(dict(ck["env_config"]))
    cache: dict[tuple[str, int], dict] = {}
    cpath = Path(expert_cache) if expert_cache else None
    if cpath is not None and cpath.is_file():
        need = ("sweep", "value", "trials", "seed", "expert_mean", "expert_std")
        for r in _read_rows(cpath, need):
            if int(r["trials"]) == trials and int(r["seed"]) == seed:
                cache[(r["sweep"], int(r["value"]))] = r
    rows = []
    for sweep, v, cfg in _grid(base, agents, consumers):
        pol = evaluate_net(net, cfg, trials, seed)
        pol_cbf = evaluate_net(net, cfg, trials, seed, safety_filter="cbf")
        if (sweep, v) not in cache:
            exp = evaluate_expert(cfg, trials, seed)
            cache[(sweep, v)] = {
                "sweep": sweep,
                "value": v,
                "trials": trials,
                "seed": seed,
                "expert_mean": exp["reward_mean"],
                "expert_std": exp["reward_std"],
            }
            if cpath is not None:
                _write_rows(cpath, list(cache.values()))
        e = cache[(sweep, v)]
        rows.append(
            {
                "sweep": sweep,
                "value": v,
                "lgtc_mean": pol["reward_mean"],
                "lgtc_std": pol["reward_std"],
                "lgtc_cbf_mean": pol_cbf["reward_mean"],
                "lgtc_cbf_std": pol_cbf["reward_std"],
                "expert_mean": float(e["expert_mean"]),
                "expert_std": float(e["expert_std"]),
            }
        )
    out = Path(out)
    _write_rows(out.with_suffix(".csv"), rows)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.4), dpi=110)
    for ax, sweep, xl in zip(
        axes, ("n_agents", "n_consumers"), ("agents N (M = 4)", "consumers M (N = 10)")
    ):
        rs = [r for r in rows if r["sweep"] == sweep]
        x = np.array([r["value"] for r in rs])
        for k, name in (("lgtc", "lgtc_ippo"), ("lgtc_cbf", "lgtc_cbf"), ("expert", "expert")):
            m = np.array([r[f"{k}_mean"] for r in rs])
            s = np.array([r[f"{k}_std"] for r in rs])
            ax.errorbar(x, m, yerr=s, marker="o", capsize=3, color=COLORS[name], label=LABELS[name])
        ax.set_xlabel(xl)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accumulated reward per agent")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Fig. 4: mean $\\pm$ std over {trials} trials")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


@dataclasses.dataclass
class _DischargeRollout:
    """One Fig. 5/6 episode: positions ``pos (T + 1, N, 2)`` [normalised], policy / value
    cluster states ``sp (T + 1, N, F)`` / ``sv (T, N, F)`` (empty without a value network),
    attended consumer ``att (T, N)``, consumer positions and radii, the victim, ``dt`` [s]."""

    pos: np.ndarray
    sp: list
    sv: list
    att: np.ndarray
    cpos: np.ndarray
    radii: np.ndarray
    victim: int
    dt: float
    n_consumers: int


@torch.inference_mode()
def _discharge_rollout(ck: dict, seed: int, duration_s: float, discharge_s: float):
    """Fly the checkpoint's policy (and its value network alongside) on 5 agents and 3
    persistent consumers; at ``discharge_s`` the agent serving its consumer alone discharges
    and lands: the rule of a ``select: alone`` event (:func:`sim_bridge.sim.robot_serving_alone`
    on :func:`~lgtc_policy.mission.scenario.env_serving`, as ``lgtc discharge --victim
    alone``), else agent 0."""
    pol = build_net(ck, "policy")
    val = build_net(ck, "value") if "value" in ck["nets"] else None
    base = EnvConfig.from_dict(dict(ck["env_config"]))
    T, t_dis = round(duration_s / base.dt), round(discharge_s / base.dt)
    cfg = dataclasses.replace(
        base,
        n_agents=5,
        n_consumers=3,
        resource_kinds="persistent",
        episode_length=T,
        auto_reset=False,
        seed=seed,
    ).validate()
    env = ResourceEnv(cfg, 1, seed=seed)
    obs = env.reset()
    safety = SafetyFilter(env) if trained_safety_filter(ck) == "cbf" else None
    N = cfg.n_agents
    xp = torch.zeros(1, N, pol.state_dim)
    xv = torch.zeros(1, N, val.state_dim) if val is not None else None
    prev = obs.agent_res.clone()
    pos, sp, sv, att = [obs.pos[0].clone()], [xp[0].clone()], [], []
    victim = -1
    for t in range(T):
        if t == t_dis:
            pick = robot_serving_alone(env_serving(env))
            victim = 0 if pick is None else pick
            env.discharge(torch.tensor([0]), torch.tensor([victim]), level=0.0, deactivate=True)
            obs = env.observe()
        inp = inputs_from_obs(obs, prev)
        out, xp, xi = pol(inp, xp)
        if val is not None:
            _, xv, _ = val(inp, xv)
            sv.append(xv[0].clone())
        prev = obs.agent_res.clone()
        act = pol.action(out)
        obs, _, done, _ = env.step(act if safety is None else safety.filter(act))
        pos.append(obs.pos[0].clone())
        sp.append(xp[0].clone())
        att.append(xi[0].argmax(-1))
        if bool(done.all()):
            break
    return _DischargeRollout(
        pos=torch.stack(pos).numpy(),
        sp=sp,
        sv=sv,
        att=torch.stack(att).numpy(),
        cpos=obs.consumer_pos[0].numpy(),
        radii=env.radius[0].numpy(),
        victim=victim,
        dt=base.dt,
        n_consumers=cfg.n_consumers,
    )


def _draw_fig5(ro: _DischargeRollout, discharge_s: float, path: Path) -> Path:
    """Fig. 5: the paths (dashed after the discharge) and x, y over time."""
    plt = _plt()
    cols = plt.get_cmap("tab10")
    P, N = ro.pos, ro.pos.shape[1]
    t_dis = round(discharge_s / ro.dt)
    time_s = np.arange(P.shape[0]) * ro.dt
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.4), dpi=100)
    ax = axes[0]
    for m, (cx, cy) in enumerate(ro.cpos):
        ax.add_patch(plt.Circle((cx, cy), float(ro.radii[m]), color="red", alpha=0.15))
        ax.plot(cx, cy, "r.", ms=10)
    for i in range(N):
        ax.plot(P[: t_dis + 1, i, 0], P[: t_dis + 1, i, 1], "-", color=cols(i), lw=1)
        ax.plot(P[t_dis:, i, 0], P[t_dis:, i, 1], "--", color=cols(i), lw=1)
        marker = "x" if i == ro.victim else "o"
        ax.plot(P[-1, i, 0], P[-1, i, 1], marker, color=cols(i), label=f"agent {i}")
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_aspect("equal")
    ax.set_title("paths (dashed: after discharge)")
    ax.legend(fontsize=6, loc="lower left")
    for k, lab in ((1, "x"), (2, "y")):
        ax = axes[k]
        for i in range(N):
            ax.plot(time_s, P[:, i, k - 1], color=cols(i), lw=1)
        for m in range(ro.cpos.shape[0]):
            ax.axhline(ro.cpos[m, k - 1], color="red", ls=":", lw=0.8)
        ax.axvline(discharge_s, color="k", ls="--", lw=0.8)
        ax.set_xlabel("time [s]")
        ax.set_ylabel(f"{lab} (normalised)")
    fig.suptitle(
        f"Fig. 5: agent {ro.victim} discharges at {discharge_s:.0f} s (5 agents, 3 consumers)"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _cluster_projection(states: list[torch.Tensor]) -> np.ndarray:
    """``<x_i, 1> / (sqrt(F) ||x_i||)`` of ``(T, N, F)`` cluster states (0 where x_i = 0)."""
    X = torch.stack(states).numpy()
    nrm = np.linalg.norm(X, axis=-1)
    return np.where(nrm > 0, X.sum(-1) / (np.sqrt(X.shape[-1]) * np.maximum(nrm, 1e-12)), 0.0)


def _draw_fig6(ro: _DischargeRollout, discharge_s: float, path: Path) -> Path:
    """Fig. 6: normalised cluster states (policy, value network) and the attended consumer."""
    plt = _plt()
    cols = plt.get_cmap("tab10")
    N = ro.pos.shape[1]
    panels = [("policy network", _cluster_projection(ro.sp[1:]))]
    if ro.sv:
        panels.append(("value network", _cluster_projection(ro.sv)))
    A = ro.att
    fig, axes = plt.subplots(
        len(panels) + 1, 1, figsize=(7.0, 2.2 * (len(panels) + 1)), dpi=100, sharex=True
    )
    ts = (np.arange(ro.pos.shape[0]) * ro.dt)[1 : len(A) + 1]
    for ax, (name, Y) in zip(axes, panels):
        for i in range(N):
            ax.plot(ts, Y[:, i], color=cols(i), lw=1, label=f"agent {i}")
        ax.axvline(discharge_s, color="k", ls="--", lw=0.8)
        ax.set_ylabel("normalised state")
        ax.set_title(f"cluster states, {name}", fontsize=9)
    axes[0].legend(fontsize=6, ncol=5)
    ax = axes[-1]
    for i in range(N):
        ax.plot(ts, A[:, i] + 0.06 * (i - N / 2), color=cols(i), lw=1.5)
    ax.axvline(discharge_s, color="k", ls="--", lw=0.8)
    ax.set_yticks(range(ro.n_consumers))
    ax.set_ylabel("attended consumer")
    ax.set_xlabel("time [s]")
    fig.suptitle("Fig. 6: dynamic cluster consensus with a discharging agent", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def fig56(
    checkpoint: str,
    out_dir: str | Path,
    seed: int = 0,
    duration_s: float = 100.0,
    discharge_s: float = 50.0,
) -> list[Path]:
    """Figs. 5/6: discharge of one agent at ``discharge_s`` with 5 agents and 3 consumers.

    All resources are persistent (battery-like), so a consumer stays served only while an
    agent holding its resource stays inside ``R_m``. At ``discharge_s`` the agent that serves
    its consumer alone (the first such, else agent 0) discharges and lands. Fig. 6 plots the
    normalised projection ``<x_i, 1> / (sqrt(F) ||x_i||)`` of each agent's cluster state for
    the policy network and, as in the paper, the value network. The actions pass the expert's
    CBF filter when the checkpoint was trained with it (``lgtc train --safety-filter cbf``).
    """
    ro = _discharge_rollout(load_checkpoint(checkpoint), seed, duration_s, discharge_s)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        _draw_fig5(ro, discharge_s, out_dir / "lgtc_fig5_discharge.png"),
        _draw_fig6(ro, discharge_s, out_dir / "lgtc_fig6_clusters.png"),
    ]


# ----------------------------------------------------------------------------- study plots

_PALETTE = (
    (0.894, 0.102, 0.110),
    (0.216, 0.494, 0.722),
    (0.302, 0.686, 0.290),
    (0.596, 0.306, 0.639),
    (1.000, 0.498, 0.000),
    (0.651, 0.337, 0.157),
    (0.969, 0.506, 0.749),
    (0.600, 0.600, 0.600),
    (0.737, 0.741, 0.133),
    (0.090, 0.745, 0.812),
)


def cluster_colour(m: int) -> tuple[float, float, float, float]:
    """RGBA of the cluster attending consumer ``m`` (grey-white for -1: no cluster)."""
    if m < 0:
        return (0.85, 0.85, 0.85, 0.8)
    return (*_PALETTE[m % len(_PALETTE)], 1.0)


def plot_run(mcap: Path, cfg, out_png: Path, title: str = "") -> None:
    """Fig. 5-style figure of the run recorded in ``mcap`` (:func:`sim_bridge.recording.read_run`;
    clusters from the policies' diagnostics): top view (paths coloured by the attended
    consumer) and each robot's cluster over time."""
    plt = _plt()
    run = read_run(mcap, cfg)
    times, pos, clusters = run.times, run.positions, cluster_log(cfg, run.diagnostics)
    n = pos.shape[1]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 4.2), dpi=80)
    for m, c in enumerate(cfg.consumers):
        ax.add_patch(plt.Circle(c.position, c.radius, color=cluster_colour(m), alpha=0.25))
        ax.text(c.position[0], c.position[1] + c.radius + 0.05, c.name, ha="center", fontsize=8)
    for i in range(n):
        rows = clusters[clusters[:, 1] == i]
        idx = np.searchsorted(rows[:, 0], times, side="right") - 1 if len(rows) else None
        col = [
            cluster_colour(int(rows[k, 2]) if idx is not None and k >= 0 else -1)
            for k in (idx if idx is not None else np.full(len(times), -1))
        ]
        ax.scatter(pos[::4, i, 0], pos[::4, i, 1], s=3, c=col[::4])
        ax.plot(*pos[-1, i, :2], "k^" if pos[-1, i, 2] > 0.1 else "kx", ms=6)
        ax.text(pos[0, i, 0], pos[0, i, 1] - 0.15, cfg.robots[i].name, ha="center", fontsize=7)
        if len(rows):
            bx.step(
                rows[:, 0], rows[:, 2] + 0.08 * (i - n / 2), where="post", label=cfg.robots[i].name
            )
    for ev in cfg.events:
        bx.axvline(ev.t, color="k", ls=":", lw=1)
    ax.set_xlim(*cfg.arena.x)
    ax.set_ylim(*cfg.arena.y)
    ax.set_aspect("equal")
    ax.set_title("paths (colour = attended consumer)", fontsize=9)
    bx.set_yticks(range(len(cfg.consumers)), [c.name for c in cfg.consumers])
    bx.set_xlabel("sim time [s]")
    bx.set_title("cluster = argmax attention, per robot", fontsize=9)
    bx.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
