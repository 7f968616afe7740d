"""Battery-discharge reallocation over ROS 2 (LGTC paper Sec. IV-D, Fig. 5), over seeded runs.

``python -m lgtc_policy.mission_discharge --config launch/discharge.yaml --runs 10``

Each run flies the config through :func:`lgtc_policy.demo.run_demo` (world, relay, CBF
filters, policy nodes over DDS) with the config's seed set to the run's seed and every start
position jittered by up to ``--jitter`` metres (seeded), so runs differ. The config's
``discharge`` event empties one robot's battery at ``t`` and its ``land`` event lands it.
:func:`analyse` then reads the sampled trajectory:

* the victim's *consumer* is the one whose interaction area held it (floor distance
  ``<= R_m``, airborne; the nearest on overlap, the simulator's coverage rule) at the last
  sample before its battery emptied;
* the allocation at the event is *complete* when every consumer's area held an airborne
  robot (Fig. 5 starts from one: "the drones allocate their resources to target locations");
  ``uncovered_at_event`` lists the consumers that held none;
* that consumer is *abandoned* when no other airborne robot was inside its area then;
* *re-cover time*: first sim time after the event at which another airborne robot is inside
  the area **and** every other consumer still holds one (the new allocation covers all M
  consumers with the N - 1 robots left, as eq. 3 requires; a robot that only moves the gap
  to the consumer it left does not count); ``recovered_by`` names the robot inside the
  victim's consumer then and ``recovered_from`` the consumer whose area held it at the event
  (Fig. 5: "a drone of another subteam"; ``null``: it was in no area);
  ``covered_after_pct``: share of the samples after the event in which another airborne robot
  is inside the victim's consumer (a pass-through scores low, a new allocation high);
* a run **succeeds** when the allocation was complete, the victim landed and the abandoned
  consumer was re-covered within ``--window`` seconds (40 s: the issue's goal; the paper
  reports the new allocation about 35 s later). A run in which nothing was abandoned does not
  exercise the reallocation and is not a success: ``outcome`` says which case it was
  (``re-covered``, ``not re-covered``, ``not landed``, ``not abandoned``: another robot was
  already inside the victim's consumer, ``incomplete allocation``: some consumer held no
  robot at the event, so there was no allocation to repair, ``victim in no area``: the
  victim was serving no consumer, ``no event``: the run ended first).

Writes ``<out>/discharge.json`` (per run and the success count) and, with ``--figure``, a
Fig. 5-style PNG of the first run (top view coloured by cluster, cluster id over time).

``--backend core`` (or :func:`discharge_study_core`) runs the *same* seeded variants through
the batched core env instead of ROS: :func:`lgtc_policy.mission.core_rollout` with the
centralized CBF (the ROS chain's safety filter), the events of the config at their 20 Hz tick,
seconds per run instead of minutes. The env is planar, so :func:`core_trajectory` adds the
simulator's vertical profile (take-off and landing at ``sim_bridge.sim.SimParams`` speeds) and
:func:`analyse` reads the core trajectory exactly as the ROS one. Use it to screen
checkpoints; the ROS study stays the figure of record (the 3-D CBF and DDS timing differ, and
run by run the two disagree: docs/mission.md). ``--controller expert`` / ``greedy`` fly the
eq. 3 expert or the greedy rule instead of the policy (yardsticks, no checkpoint);
``--reanalyse`` reads the runs already under ``--out`` again without flying.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lgtc_policy.agent import MissionError
from lgtc_policy.mission_report import pair_separation
from lgtc_policy.mission_stats import cluster_colour

__all__ = [
    "CONTROLLERS",
    "analyse",
    "core_trajectory",
    "discharge_study_core",
    "plot_run",
    "reanalyse",
    "summarise",
    "variant",
]


def variant(mapping: dict, seed: int, jitter: float, checkpoint: str | None) -> dict:
    """The config ``mapping`` for run ``seed``: seed set, start xy jittered by <= ``jitter``."""
    data = json.loads(json.dumps(mapping))
    rng = np.random.default_rng(seed)
    data["seed"] = int(seed)
    for r in data["robots"]:
        dx, dy = rng.uniform(-jitter, jitter, 2)
        r["pose"] = [r["pose"][0] + float(dx), r["pose"][1] + float(dy), *r["pose"][2:]]
    if checkpoint:
        data.setdefault("policy", {})["checkpoint"] = checkpoint
    return data


def analyse(cfg, times: np.ndarray, positions: np.ndarray, window: float = 40.0) -> dict:
    """Re-cover figures of one run (see the module docstring): ``times (T,)`` [s] and
    ``positions (T, N, 3)`` [m, world frame] of the robots of ``cfg`` (its first ``discharge``
    event is the one analysed)."""
    ev = next((e for e in cfg.events if e.type == "discharge"), None)
    if ev is None:
        raise MissionError(f"{cfg.source}: no discharge event to analyse")
    times = np.asarray(times, dtype=float)
    positions = np.asarray(positions, dtype=float)
    n = len(cfg.robots)
    if positions.ndim != 3 or positions.shape[1:] != (n, 3) or len(times) != len(positions):
        raise MissionError(
            f"trajectory: positions {positions.shape} / times {times.shape}, expected "
            f"(T, {n}, 3) / (T,)"
        )
    victim = cfg.robot_index(ev.robot)
    cpos = np.array([c.position for c in cfg.consumers])
    rad = np.array([c.radius for c in cfg.consumers])
    z0 = cfg.arena.z[0]
    lift = np.array([z0 + 0.5 * r.takeoff_height for r in cfg.robots])
    others = np.array([i for i in range(n) if i != victim])

    def area(pos: np.ndarray) -> np.ndarray:
        """(N,) index of the consumer whose area holds each airborne robot (nearest), or -1."""
        d = np.linalg.norm(pos[:, None, :2] - cpos[None], axis=-1)
        inside = (d <= rad[None]) & (pos[:, 2] >= lift)[:, None]
        return np.where(inside.any(axis=1), np.where(inside, d, np.inf).argmin(axis=1), -1)

    out: dict[str, Any] = {"victim": ev.robot, "t_event": ev.t}
    before = np.nonzero(times < ev.t)[0]
    if before.size == 0 or times[-1] < ev.t:
        out.update(success=False, outcome="no event", reason="run ended before the event")
        return out
    at = area(positions[before[-1]])
    out["landed"] = bool(positions[-1, victim, 2] < z0 + 0.1)
    if at[victim] < 0:
        out.update(
            success=False,
            outcome="victim in no area",
            reason="the victim was not serving a consumer at the event: nothing abandoned",
        )
        return out
    m = int(at[victim])
    out["consumer"] = cfg.consumers[m].name
    out["abandoned"] = not bool((at[others] == m).any())
    n_cons = len(cfg.consumers)
    empty = np.bincount(at[at >= 0], minlength=n_cons) == 0
    out["uncovered_at_event"] = [cfg.consumers[k].name for k in np.flatnonzero(empty)]
    after = np.nonzero(times >= ev.t)[0]
    where = np.array([area(positions[k])[others] for k in after])  # (K, N - 1)
    held = where == m
    covered = held.any(axis=1)
    every = np.array([np.isin(np.arange(n_cons), row).all() for row in where], dtype=bool)
    out["covered_after_pct"] = float(100.0 * covered.mean()) if covered.size else math.nan
    if empty.any():
        out.update(
            success=False,
            outcome="incomplete allocation",
            reason=f"{', '.join(out['uncovered_at_event'])} held no robot at the event: "
            "there was no complete allocation to repair",
        )
        return out
    if not out["abandoned"]:
        out.update(
            success=False,
            outcome="not abandoned",
            reason=f"another robot was already inside {cfg.consumers[m].name}: nothing to re-cover",
        )
        return out
    recover, by, came_from = math.nan, None, None
    if every.any():
        k = int(np.argmax(every))
        recover = float(times[after[k]] - ev.t)
        j = int(others[np.argmax(held[k])])
        by = cfg.robots[j].name
        came_from = cfg.consumers[int(at[j])].name if at[j] >= 0 else None
    out.update(recover_s=recover, recovered_by=by, recovered_from=came_from)
    in_time = math.isfinite(recover) and recover <= window
    out["success"] = bool(out["landed"] and in_time)
    if out["success"]:
        out["outcome"] = "re-covered"
    elif not out["landed"]:
        out.update(outcome="not landed", reason="the victim did not land")
    else:
        out.update(outcome="not re-covered", reason=f"not re-covered in {window:g} s")
    return out


def summarise(results: list[dict], backend: str, checkpoint: str | None, window: float) -> dict:
    """The study's summary: success count (the issue's goal), runs per ``outcome``.

    ``successes_from_subteam`` counts the successes whose re-covering drone was inside another
    consumer's area at the event (``recovered_from`` set): Fig. 5's "a drone of another
    subteam relocates". The others were re-covered by a drone that held no area then (a spare
    or a drone hovering outside every area)."""
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {
        "backend": backend,
        "checkpoint": checkpoint,
        "runs": len(results),
        "successes": sum(bool(r["success"]) for r in results),
        "successes_from_subteam": sum(
            bool(r["success"]) and r.get("recovered_from") is not None for r in results
        ),
        "abandoned": sum(bool(r.get("abandoned")) for r in results),
        "outcomes": outcomes,
        "window_s": window,
        "results": results,
    }


#: Who flies the core backend: the checkpoint's LGTC policy (eqs. 4-6, deterministic mean
#: action, through the centralized CBF), the centralized expert of eq. 3 (its own CBF), or
#: the decentralized greedy rule (through the CBF). The last two need no checkpoint.
CONTROLLERS = ("policy", "expert", "greedy")


def core_trajectory(
    cfg,
    net,
    env_config: dict,
    duration: float,
    seed: int = 0,
    controller: str = "policy",
    cbf: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``controller`` (:data:`CONTROLLERS`; ``net`` is the policy's ``LGTCNet``, unused by
    the others) on swarm config ``cfg`` in the core env, sampled like the ROS monitor:
    ``(times (T + 1,) [s], positions (T + 1, N, 3) [m, world frame], clusters (K, 3) rows
    (t, robot, cluster))``, ``T = ceil(duration * control_hz)``; the cluster is the policy's
    argmax attention, for the expert what :func:`~lgtc_policy.mission.expert_rollout` records
    (the env's eq. 3 ``ResourceEnv.assignment``, not the expert's own), none for greedy.
    ``cbf=False`` flies the policy or the greedy rule without the centralized CBF (the
    paper's training setting); the expert always uses its own.

    ``positions[k]`` is the state at ``k / control_hz`` s; an event at ``t`` acts at the first
    tick ``>= t`` (:func:`lgtc_policy.mission.scenario_from_config`). Heights follow the
    simulator: drones climb to ``takeoff_height`` at ``SimParams.takeoff_speed`` from t = 0
    (the env holds them still meanwhile) and descend at ``SimParams.landing_speed`` from the
    tick a ``land`` / ``fail`` event deactivates them; ground robots stay at the floor.
    """
    from sim_bridge.sim import SimParams

    from lgtc_policy.mission import (
        core_rollout,
        expert_rollout,
        greedy_rollout,
        scenario_from_config,
    )

    hz = cfg.rates.control_hz
    sc = scenario_from_config(cfg, hz)
    steps = int(math.ceil(duration * hz - 1e-9))
    if steps < 1:
        raise MissionError(f"duration {duration} s: must be at least one control tick")
    if controller == "policy":
        score = core_rollout(net, sc, env_config, steps, seed=seed, cbf=cbf)
    elif controller == "expert":
        score = expert_rollout(sc, env_config, steps, seed=seed)
    elif controller == "greedy":
        score = greedy_rollout(sc, env_config, steps, seed=seed, cbf=cbf)
    else:
        raise MissionError(f"controller {controller!r}: use one of {', '.join(CONTROLLERS)}")
    times = np.arange(steps + 1) / hz
    xy = sc.frame.to_world(score.pos)
    sim = SimParams()
    z0 = cfg.arena.z[0]
    z = np.full((steps + 1, len(cfg.robots)), z0)
    att = score.attended.copy()  # (T, N): cluster chosen at tick t, from tick hold_ticks on
    for i, r in enumerate(cfg.robots):
        drone = r.kind == "crazyflie"
        if drone:
            z[:, i] = z0 + np.minimum(sim.takeoff_speed * times, r.takeoff_height)
        off = [tick for tick, kind, j, _ in sc.events if kind == "deactivate" and j == i]
        if off and min(off) <= steps:
            k = min(off)
            att[k:, i] = -1  # an inactive robot attends nothing (the policy node's -1)
            if drone:
                drop = sim.landing_speed * (times[k:] - times[k])
                z[k:, i] = np.maximum(z[k, i] - drop, z0)
    tt, ii = np.nonzero(att >= 0)
    clusters = np.stack([times[tt], ii, att[tt, ii]], axis=1).astype(float).reshape(-1, 3)
    return times, np.concatenate([xy, z[..., None]], axis=-1), clusters


def _check_options(runs: int, jitter: float, window: float, after: float) -> None:
    """MissionError naming the option when a study option is out of range."""
    for name, value, ok, need in (
        ("runs", runs, runs >= 1, ">= 1"),
        ("jitter", jitter, jitter >= 0, ">= 0 m"),
        ("window", window, window > 0, "> 0 s"),
        ("after", after, after > 0, "> 0 s"),
    ):
        if not ok or not math.isfinite(value):
            raise MissionError(f"{name} = {value}: must be {need}")


def _study_config(config: str | Path | dict) -> tuple[dict, Any]:
    """(raw mapping, validated SwarmConfig) of a discharge study config; MissionError if bad."""
    import yaml
    from sim_bridge.config import ConfigError, load_config

    try:
        if isinstance(config, dict):
            base = json.loads(json.dumps(config))
            cfg = load_config(base)
        else:
            base = yaml.safe_load(Path(config).read_text())
            cfg = load_config(config)
    except (OSError, ConfigError) as exc:
        raise MissionError(
            f"{config if not isinstance(config, dict) else 'config'}: {exc}"
        ) from None
    if not any(e.type == "discharge" for e in cfg.events):
        raise MissionError(f"{cfg.source}: no discharge event; the study needs one")
    return base, cfg


def discharge_study_core(
    checkpoint: str | Path | None = None,
    config: str | Path | dict = "launch/discharge.yaml",
    runs: int = 10,
    *,
    first_seed: int = 0,
    jitter: float = 0.1,
    window: float = 40.0,
    after: float = 45.0,
    resource_types: list[str] | None = None,
    out: str | Path | None = None,
    progress=None,
    controller: str = "policy",
    cbf: bool = True,
    threads: int | None = 1,
) -> dict:
    """The discharge study in the core env (no ROS): the seeded variants of the ROS study
    (:func:`variant`, seeds ``first_seed ..``) through :func:`core_trajectory`, each read by
    :func:`analyse`.

    Args:
        checkpoint: policy file (``None``: the config's ``policy.checkpoint``).
        config: swarm YAML path or its parsed mapping (needs a ``discharge`` event).
        runs, first_seed, jitter, window: as the CLI's ``--runs`` etc.
        after: sim seconds flown after the (last) discharge event.
        resource_types: override the config's ``resource_types`` (the checkpoint's r).
        out: directory for ``seed<k>/trajectory.npz`` (``None``: write nothing).
        progress: called with each run's result dict as it completes.
        controller: who flies (:data:`CONTROLLERS`); ``expert`` and ``greedy`` ignore the
            checkpoint (the env's default reward gains; the trajectory does not use them).
        cbf: pass the policy's / greedy rule's actions through the centralized CBF (default,
            like the ROS chain); ``False``: unfiltered.
        threads: torch threads during the study (restored after; ``None``: leave as is).
            One is fastest for these B = 1 rollouts: on the shared 2-core machine two threads
            made the test study about 8x slower.

    Returns:
        :func:`summarise`'s layout (``backend`` ``"core"``, ``runs``, ``successes``,
        ``abandoned``, ``outcomes``, ``window_s``, ``checkpoint``, ``results``: one
        :func:`analyse` dict per run plus ``seed``, ``min_separation_margin_m``, ``sim_s``)
        and ``controller``.

    Raises:
        MissionError: unusable config or checkpoint (the message names which and why).
    """
    import torch
    import yaml
    from sim_bridge.config import ConfigError, load_config

    from lgtc_policy.agent import load_policy
    from lgtc_policy.env import EnvConfig
    from lgtc_policy.model.checkpoint import CheckpointError, build_net, load_checkpoint

    _check_options(runs, jitter, window, after)
    if threads is not None and threads < 1:
        raise MissionError(f"threads = {threads}: must be >= 1 (or None)")
    if controller not in CONTROLLERS:
        raise MissionError(f"controller {controller!r}: use one of {', '.join(CONTROLLERS)}")
    base, base_cfg = _study_config(config)
    if resource_types:
        base["resource_types"] = list(resource_types)
    net, env_config = None, dataclasses.asdict(EnvConfig())
    if controller != "policy":
        checkpoint = None
    elif checkpoint is None:
        if base_cfg.policy.checkpoint is None:
            raise MissionError(f"{base_cfg.source}: policy.checkpoint is null; pass a checkpoint")
        try:
            checkpoint = base_cfg.resolve_checkpoint()
        except FileNotFoundError as exc:
            raise MissionError(str(exc)) from None
    if checkpoint is not None:
        checkpoint = str(checkpoint)
        try:
            load_policy(checkpoint, len(base["resource_types"]))  # the policy node's checks
            ck = load_checkpoint(checkpoint)
            net = build_net(ck, "policy")
        except CheckpointError as exc:
            raise MissionError(str(exc)) from None
        env_config = dict(ck["env_config"])
    t_event = max(e.t for e in base_cfg.events if e.type == "discharge")
    prev_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        results = []
        for k in range(runs):
            seed = first_seed + k
            mapping = variant(base, seed, jitter, checkpoint)
            try:
                cfg = load_config(mapping)
            except ConfigError as exc:
                raise MissionError(f"seed {seed}: {exc}") from None
            times, pos, clusters = core_trajectory(
                cfg, net, env_config, t_event + after, seed, controller, cbf
            )
            res = analyse(cfg, times, pos, window)
            z0 = cfg.arena.z[0]
            lift = np.array([z0 + 0.5 * r.takeoff_height for r in cfg.robots])
            dmin, _ = pair_separation(pos, pos[..., 2] >= lift)  # airborne pairs, as ros_metrics
            res.update(seed=seed, min_separation_margin_m=float(dmin - cfg.safety.distance))
            res["sim_s"] = float(times[-1])
            if out is not None:
                run_dir = Path(out) / f"seed{seed}"
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "swarm.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
                np.savez_compressed(
                    run_dir / "trajectory.npz",
                    times=times,
                    positions=pos,
                    clusters=clusters,
                    robots=np.asarray(cfg.robot_names),
                )
            results.append(res)
            if progress is not None:
                progress(res)
    finally:
        torch.set_num_threads(prev_threads)
    summary = summarise(results, "core", checkpoint, window)
    summary.update(controller=controller, cbf=bool(cbf or controller == "expert"))
    return summary


def reanalyse(out: str | Path, window: float = 40.0, backend: str = "ros") -> dict:
    """Read the runs a study left under ``out`` (``seed<k>/swarm.yaml`` and
    ``seed<k>/trajectory.npz``, either backend) again with :func:`analyse`, without flying."""
    from sim_bridge.config import ConfigError, load_config

    runs = sorted(
        (f for f in Path(out).glob("seed*/trajectory.npz") if f.parent.name[4:].isdigit()),
        key=lambda f: int(f.parent.name[4:]),
    )
    if not runs:
        raise MissionError(f"{out}: no seed*/trajectory.npz to analyse")
    results = []
    for npz in runs:
        try:
            cfg = load_config(npz.parent / "swarm.yaml")
        except ConfigError as exc:
            raise MissionError(str(exc)) from None
        d = np.load(npz)
        res = analyse(cfg, d["times"], d["positions"], window)
        res["seed"] = int(npz.parent.name[4:])
        results.append(res)
    return summarise(results, backend, cfg.policy.checkpoint, window)


def plot_run(npz: Path, cfg, out_png: Path, title: str = "") -> None:
    """Fig. 5-style figure of one run: top view (paths coloured by the attended consumer) and
    each robot's cluster over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = np.load(npz)
    times, pos, clusters = d["times"], d["positions"], d["clusters"]
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="launch/discharge.yaml")
    p.add_argument(
        "--backend",
        choices=("ros", "core"),
        default="ros",
        help="ros: the whole chain over DDS (minutes per run); core: the core env with the "
        "centralized CBF (seconds per run)",
    )
    p.add_argument(
        "--controller",
        choices=CONTROLLERS,
        default="policy",
        help="core backend only: who flies (expert / greedy: yardsticks without a checkpoint)",
    )
    p.add_argument(
        "--no-cbf",
        action="store_true",
        help="core backend only: the policy / greedy rule without the centralized CBF",
    )
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--jitter", type=float, default=0.1, help="start position jitter [m]")
    p.add_argument("--window", type=float, default=40.0, help="re-cover deadline [s]")
    p.add_argument("--after", type=float, default=45.0, help="sim seconds to fly after the event")
    p.add_argument("--checkpoint", default=None, help="override policy.checkpoint")
    p.add_argument(
        "--resource-types",
        default=None,
        help="comma-separated resource_types to set (the checkpoint's r), e.g. battery,payload",
    )
    p.add_argument("--out", default="runs/discharge")
    p.add_argument("--figure", default=None, help="PNG of the first run (Fig. 5 style)")
    p.add_argument(
        "--reanalyse",
        action="store_true",
        help="fly nothing: analyse the runs already under --out again (rewrites discharge.json)",
    )
    return p


def _finish(summary: dict, out: Path, window: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "discharge.json").write_text(json.dumps(summary, indent=2) + "\n")
    cases = ", ".join(f"{v} {k}" for k, v in sorted(summary["outcomes"].items()))
    line = (
        f"[{summary['backend']}] re-covered within {window:g} s in {summary['successes']} of "
        f"{summary['runs']} runs ({summary['abandoned']} abandoned a consumer; {cases})"
    )
    if summary["successes"]:
        line += (
            f"; {summary['successes_from_subteam']} of the re-covers by a drone of another "
            "consumer's area (Fig. 5), the others by a drone that held no area"
        )
    print(line)


def main_core(ns: argparse.Namespace) -> int:
    """``--backend core``: :func:`discharge_study_core` with the CLI's options."""
    from sim_bridge.config import load_config

    out = Path(ns.out)
    try:
        summary = discharge_study_core(
            ns.checkpoint,
            ns.config,
            ns.runs,
            first_seed=ns.first_seed,
            jitter=ns.jitter,
            window=ns.window,
            after=ns.after,
            resource_types=ns.resource_types.split(",") if ns.resource_types else None,
            out=out,
            progress=lambda res: print(json.dumps(res), flush=True),
            controller=ns.controller,
            cbf=not ns.no_cbf,
        )
    except MissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _finish(summary, out, ns.window)
    if ns.figure:
        base, _ = _study_config(ns.config)
        seed = summary["results"][0]["seed"]
        mapping = variant(base, seed, ns.jitter, summary["checkpoint"])
        if ns.resource_types:
            mapping["resource_types"] = ns.resource_types.split(",")
        plot_run(
            out / f"seed{seed}" / "trajectory.npz",
            load_config(mapping),
            Path(ns.figure),
            f"{ns.config}, seed {seed} (core env, {ns.controller})",
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        _check_options(ns.runs, ns.jitter, ns.window, ns.after)
    except MissionError as exc:
        print(f"error: --{exc}", file=sys.stderr)
        return 2
    if ns.reanalyse:
        try:
            summary = reanalyse(ns.out, ns.window, ns.backend)
        except MissionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for res in summary["results"]:
            print(json.dumps(res))
        _finish(summary, Path(ns.out), ns.window)
        return 0
    if ns.backend == "core":
        return main_core(ns)
    if ns.controller != "policy" or ns.no_cbf:
        print(
            "error: --controller and --no-cbf are core-backend options (the ros backend flies "
            "the policy through the cbf_filter nodes)",
            file=sys.stderr,
        )
        return 2
    import yaml
    from sim_bridge.config import load_config

    from lgtc_policy.demo import DemoOptions, run_demo

    try:
        base, base_cfg = _study_config(ns.config)
    except MissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ckpt = ns.checkpoint
    if ckpt is None and base_cfg.policy.checkpoint is not None:
        try:  # the run configs live elsewhere: make a file-relative checkpoint absolute
            ckpt = str(base_cfg.resolve_checkpoint())
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    t_event = max(e.t for e in base_cfg.events if e.type == "discharge")
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for k in range(ns.runs):
        seed = ns.first_seed + k
        run_dir = out / f"seed{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = run_dir / "swarm.yaml"
        mapping = variant(base, seed, ns.jitter, ckpt)
        if ns.resource_types:
            mapping["resource_types"] = ns.resource_types.split(",")
        cfg_path.write_text(yaml.safe_dump(mapping, sort_keys=False))
        try:
            values = run_demo(
                DemoOptions(
                    config=str(cfg_path),
                    out=str(run_dir),
                    duration=(t_event + ns.after) * 1.15 + 10.0,
                    stop_when_done=False,
                    record=False,
                    gif=False,
                    compare=False,
                    status_every=0,
                ),
                out=open(run_dir / "demo.log", "w"),  # noqa: SIM115 (closed with the process)
            )
        except MissionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        cfg = load_config(cfg_path)
        d = np.load(run_dir / "trajectory.npz")
        res = analyse(cfg, d["times"], d["positions"], ns.window)
        res.update(
            seed=seed,
            min_separation_margin_m=values["min_separation_margin_m"],
            ticks_on_time_pct=values["ticks_on_time_pct"],
            sim_s=values["sim_s"],
        )
        results.append(res)
        print(json.dumps(res), flush=True)
        if ns.figure and k == 0:
            plot_run(run_dir / "trajectory.npz", cfg, Path(ns.figure), f"{ns.config}, seed {seed}")
    summary = summarise(results, "ros", ckpt, ns.window)
    _finish(summary, out, ns.window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
