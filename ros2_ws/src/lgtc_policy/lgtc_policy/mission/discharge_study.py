"""The battery-discharge study (LGTC paper Sec. IV-D, Fig. 5) over seeded runs: ``lgtc discharge``.

``lgtc discharge --config launch/discharge.yaml --runs 10``

Each run flies the config through :func:`lgtc_policy.mission.demo.run_demo` (world, relay, CBF
filters, policy nodes over DDS) with the config's seed set to the run's seed and every start
position jittered by up to ``--jitter`` metres (seeded), so runs differ
(:func:`~lgtc_policy.mission.discharge.variant`). The config's ``discharge`` event empties one
robot's battery at ``t`` and its ``land`` event lands it;
:func:`~lgtc_policy.mission.discharge.analyse` then judges the run (re-covered within
``--window`` seconds or why not: see :mod:`lgtc_policy.mission.discharge`).

Writes ``<out>/discharge.json`` (per run and the success count) and, with ``--figure``, a
Fig. 5-style PNG of the first run (top view coloured by cluster, cluster id over time).

``--backend core`` (or :func:`discharge_study_core`) runs the *same* seeded variants through
the batched core env instead of ROS
(:func:`~lgtc_policy.mission.discharge.core_trajectory`), seconds per run instead of minutes.
Use it to screen checkpoints; the ROS study stays the figure of record (the 3-D CBF and DDS
timing differ, and run by run the two disagree: docs/mission.md). ``--controller expert`` /
``greedy`` fly the eq. 3 expert or the greedy rule instead of the policy (yardsticks, no
checkpoint); ``--reanalyse`` reads the runs already under ``--out`` again without flying.
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
from lgtc_policy.mission.discharge import (
    CONTROLLERS,
    analyse,
    core_trajectory,
    summarise,
    variant,
)
from lgtc_policy.mission.figures import plot_run
from lgtc_policy.mission.report import pair_separation

__all__ = ["build_parser", "discharge_study_core", "main", "reanalyse"]


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

    from lgtc_policy.mission.demo import DemoOptions, run_demo

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
