"""The battery-discharge study (LGTC paper Sec. IV-D, Fig. 5) over seeded runs: ``lgtc discharge``.

``lgtc discharge --config launch/discharge.yaml --runs 10``

Each run flies the config through :func:`lgtc_policy.mission.demo.run_demo` (world, relay, CBF
filters, policy nodes over DDS) with the config's seed set to the run's seed and every start
position jittered by up to ``--jitter`` metres (seeded), so runs differ
(:func:`~lgtc_policy.mission.discharge.variant`). The config's ``discharge`` event empties one
robot's battery at ``t`` and its ``land`` event lands it (``--victim alone``: whichever robot
serves a consumer alone at ``t``, :func:`~lgtc_policy.mission.discharge.select_alone`, so
every run leaves a consumer uncovered);
:func:`~lgtc_policy.mission.discharge.analyse` then judges the run (re-covered within
``--window`` seconds or why not: see :mod:`lgtc_policy.mission.discharge`).

Each run is recorded once, as ``<out>/seed<k>/run.mcap`` (the ROS run's recording, with
``/diagnostics``; a core run is written in the same layout by
:func:`sim_bridge.recording.write_run`) beside its ``swarm.yaml``; the analysis, the figure
and ``--reanalyse`` read those files. Writes ``<out>/discharge.json`` (per run and the success
count) and, with ``--figure``, a Fig. 5-style PNG of the first run (top view coloured by
cluster, cluster id over time).

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
import torch
import yaml
from sim_bridge.config import ConfigError, load_config, resolve_package_path
from sim_bridge.recording import read_run, write_run

from lgtc_policy.agent import MissionError, load_policy
from lgtc_policy.env import EnvConfig
from lgtc_policy.mission.demo import DemoOptions, run_demo
from lgtc_policy.mission.discharge import (
    CONTROLLERS,
    VICTIMS,
    analyse,
    core_trajectory,
    select_alone,
    summarise,
    variant,
)
from lgtc_policy.mission.figures import plot_run
from lgtc_policy.mission.report import POLICY_STATUS, pair_separation
from lgtc_policy.model.checkpoint import CheckpointError, build_net, load_checkpoint

__all__ = [
    "add_arguments",
    "build_parser",
    "discharge_study_core",
    "main",
    "reanalyse",
    "run_cli",
]

#: A run's recording and config under ``<out>/seed<k>/``.
RUN_MCAP, RUN_CONFIG = "run.mcap", "swarm.yaml"
#: Longest flight of one run [sim s]: the (last) discharge event's time plus ``--after``
#: (an hour; the core env's episode of an hour at 20 Hz is 72 000 steps).
MAX_FLIGHT_S = 3600.0
#: Most runs of one study (``--runs``).
MAX_RUNS = 1000


def _check_options(runs: int, jitter: float, window: float, after: float) -> None:
    """MissionError naming the option when a study option is out of range."""
    for name, value, ok, need in (
        ("runs", runs, 1 <= runs <= MAX_RUNS, f"from 1 to {MAX_RUNS}"),
        ("jitter", jitter, jitter >= 0, ">= 0 m"),
        ("window", window, window > 0, "> 0 s"),
        ("after", after, 0 < after <= MAX_FLIGHT_S, f"> 0 s and <= {MAX_FLIGHT_S:g} s"),
    ):
        if not ok or not math.isfinite(value):
            raise MissionError(f"{name} = {value}: must be {need}")


def _flight_s(cfg, after: float) -> float:
    """Sim seconds one run flies: the last discharge event's time plus ``after``
    (MissionError naming the event when that exceeds :data:`MAX_FLIGHT_S`)."""
    t_event = max(e.t for e in cfg.events if e.type == "discharge")
    if not t_event + after <= MAX_FLIGHT_S:
        raise MissionError(
            f"{cfg.source}: the discharge event at t = {t_event:g} s plus --after {after:g} s "
            f"is a flight of more than {MAX_FLIGHT_S:g} s; move the event earlier"
        )
    return t_event + after


def _check_figure(figure: str) -> None:
    """MissionError (``figure ...: problem; fix``) unless ``--figure`` can be written as an
    image file: checked before the first run (a folder was written as ``<folder>.png`` beside
    it and the study exited 0; an unknown suffix or a file in the way failed after the runs)."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(figure)
    kinds = FigureCanvasBase.get_supported_filetypes()
    above = next((p for p in path.parents if p.exists()), Path("."))
    if not figure:
        problem = "is empty"
    elif path.is_dir():
        problem = "is a folder"
    elif path.suffix.lower().lstrip(".") not in kinds:
        problem = f"ends {path.suffix!r}, not an image type" if path.suffix else "has no suffix"
    elif not above.is_dir():
        problem = f"cannot be written: {above} is not a folder"
    else:
        try:  # its folder now, not after the runs
            path.parent.mkdir(parents=True, exist_ok=True)
            return
        except OSError as exc:
            problem = f"cannot be written: its folder cannot be made ({exc.strerror or exc})"
    raise MissionError(
        f"figure {figure} {problem}; give an image file name such as "
        f"{(path if path.is_dir() else path.parent) / 'fig5.png'} (.png, .pdf, .svg, ...)"
    )


def _study_config(config: str | Path | dict, victim: str = "config") -> tuple[dict, Any]:
    """(raw mapping, validated SwarmConfig) of a discharge study config, its discharge
    turned into ``select: alone`` for ``victim = "alone"``; MissionError if bad."""
    if victim not in VICTIMS:
        raise MissionError(f"victim {victim!r}: use one of {', '.join(VICTIMS)}")
    try:
        if isinstance(config, dict):
            base = json.loads(json.dumps(config))
            cfg = load_config(base)
        else:
            cfg = load_config(config)  # first: bounded in size and nesting, one line if bad
            base = yaml.safe_load(Path(config).read_text())
    except (OSError, ConfigError) as exc:
        raise MissionError(
            f"{config if not isinstance(config, dict) else 'config'}: {exc}"
        ) from None
    if not any(e.type == "discharge" for e in cfg.events):
        raise MissionError(f"{cfg.source}: no discharge event; the study needs one")
    if victim == "alone":
        base = select_alone(base)
        try:
            cfg = load_config(json.loads(json.dumps(base)))
        except ConfigError as exc:
            raise MissionError(f"config with --victim alone: {exc}") from None
    return base, cfg


def _run_dir(out: str | Path, seed: int) -> Path:
    return Path(out) / f"seed{seed}"


def _analyse_run(run_dir: Path, window: float) -> tuple[dict, Any]:
    """:func:`analyse` of the run recorded under ``run_dir``, and its config."""
    try:
        cfg = load_config(run_dir / RUN_CONFIG)
    except ConfigError as exc:
        raise MissionError(str(exc)) from None
    run = read_run(run_dir / RUN_MCAP, cfg)
    return analyse(cfg, run.times, run.positions, window, run.events), cfg


def _cli_checkpoint(checkpoint: str | Path) -> str:
    """An absolute path for a ``--checkpoint`` given as ``"package:rel/path"`` (inside the
    package, as a config's ``policy.checkpoint``) or as a path from the working directory
    (the run configs are written elsewhere, so a relative path would not resolve there)."""
    try:
        found = resolve_package_path(str(checkpoint), "--checkpoint")
    except FileNotFoundError as exc:
        raise MissionError(str(exc)) from None
    return str(found if found is not None else Path(checkpoint).absolute())


def _core_policy(checkpoint, base: dict, base_cfg, controller: str):
    """``(checkpoint or None, LGTCNet or None, env_config)`` of the core study: the
    checkpoint's policy for ``policy`` (the config's when ``checkpoint`` is None), else none
    and the env's default reward gains."""
    if controller != "policy":
        return None, None, dataclasses.asdict(EnvConfig())
    if checkpoint is None:
        if base_cfg.policy.checkpoint is None:
            raise MissionError(f"{base_cfg.source}: policy.checkpoint is null; pass a checkpoint")
        try:
            checkpoint = base_cfg.resolve_checkpoint()
        except FileNotFoundError as exc:
            raise MissionError(str(exc)) from None
    checkpoint = _cli_checkpoint(checkpoint)
    try:
        load_policy(checkpoint, len(base["resource_types"]))  # the policy node's checks
        ck = load_checkpoint(checkpoint)
        net = build_net(ck, "policy")
    except CheckpointError as exc:
        raise MissionError(str(exc)) from None
    return checkpoint, net, dict(ck["env_config"])


def _core_run(mapping: dict, seed: int, flight: dict, window: float, out) -> dict:
    """One core run of the config ``mapping`` (``flight``: :func:`core_trajectory`'s net,
    env_config, duration, controller, cbf), judged by :func:`analyse`; with ``out`` recorded
    under ``out/seed<k>/``."""
    try:
        cfg = load_config(mapping)
    except ConfigError as exc:
        raise MissionError(f"seed {seed}: {exc}") from None
    times, pos, clusters, events = core_trajectory(
        cfg,
        flight["net"],
        flight["env_config"],
        flight["duration"],
        seed,
        flight["controller"],
        flight["cbf"],
    )
    res = analyse(cfg, times, pos, window, events)
    lift = np.array([cfg.arena.z[0] + 0.5 * r.takeoff_height for r in cfg.robots])
    dmin, _ = pair_separation(pos, pos[..., 2] >= lift)  # airborne pairs, as ros_metrics
    res.update(seed=seed, min_separation_margin_m=float(dmin - cfg.safety.distance))
    res["sim_s"] = float(times[-1])
    if out is not None:
        run_dir = _run_dir(out, seed)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_CONFIG).write_text(yaml.safe_dump(mapping, sort_keys=False))
        names = cfg.robot_names
        diagnostics = [  # each policy's cluster as its node reports it
            (t, f"{POLICY_STATUS} {names[int(i)]}", {"cluster": str(int(c))})
            for t, i, c in clusters
        ]
        write_run(run_dir / RUN_MCAP, cfg, times, pos, diagnostics=diagnostics, events=events)
    return res


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
    victim: str = "config",
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
        out: directory for ``seed<k>/swarm.yaml`` and ``seed<k>/run.mcap`` (``None``: write
            nothing).
        progress: called with each run's result dict as it completes.
        controller: who flies (:data:`CONTROLLERS`); ``expert`` and ``greedy`` ignore the
            checkpoint (the env's default reward gains; the trajectory does not use them).
        cbf: pass the policy's / greedy rule's actions through the centralized CBF (default,
            like the ROS chain); ``False``: unfiltered.
        threads: torch threads during the study (restored after; ``None``: leave as is).
            One is fastest for these B = 1 rollouts: on the shared 2-core machine two threads
            made the test study about 8x slower.
        victim: ``config`` (the event's robot) or ``alone`` (:func:`select_alone`).

    Returns:
        :func:`summarise`'s layout (``backend`` ``"core"``, ``runs``, ``successes``,
        ``abandoned``, ``outcomes``, ``window_s``, ``checkpoint``, ``results``: one
        :func:`analyse` dict per run plus ``seed``, ``min_separation_margin_m``, ``sim_s``)
        and ``controller``.

    Raises:
        MissionError: unusable config or checkpoint (the message names which and why).
    """
    _check_options(runs, jitter, window, after)
    if threads is not None and threads < 1:
        raise MissionError(f"threads = {threads}: must be >= 1 (or None)")
    if controller not in CONTROLLERS:
        raise MissionError(f"controller {controller!r}: use one of {', '.join(CONTROLLERS)}")
    base, base_cfg = _study_config(config, victim)
    if resource_types:
        base["resource_types"] = list(resource_types)
    duration = _flight_s(base_cfg, after)
    checkpoint, net, env_config = _core_policy(checkpoint, base, base_cfg, controller)
    flight = {
        "net": net,
        "env_config": env_config,
        "duration": duration,
        "controller": controller,
        "cbf": cbf,
    }
    prev_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        results = []
        for seed in range(first_seed, first_seed + runs):
            mapping = variant(base, seed, jitter, checkpoint)
            results.append(_core_run(mapping, seed, flight, window, out))
            if progress is not None:
                progress(results[-1])
    finally:
        torch.set_num_threads(prev_threads)
    summary = summarise(results, "core", checkpoint, window)
    summary.update(controller=controller, cbf=bool(cbf or controller == "expert"), victim=victim)
    return summary


def reanalyse(out: str | Path, window: float = 40.0, backend: str = "ros") -> dict:
    """Read the runs a study left under ``out`` (``seed<k>/swarm.yaml`` and
    ``seed<k>/run.mcap``, either backend) again with :func:`analyse`, without flying."""
    runs = sorted(
        (f.parent for f in Path(out).glob(f"seed*/{RUN_MCAP}") if f.parent.name[4:].isdigit()),
        key=lambda d: int(d.name[4:]),
    )
    if not runs:
        raise MissionError(f"{out}: no seed*/{RUN_MCAP} to analyse")
    results = []
    for run_dir in runs:
        res, cfg = _analyse_run(run_dir, window)
        res["seed"] = int(run_dir.name[4:])
        results.append(res)
    return summarise(results, backend, cfg.policy.checkpoint, window)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The study's options on parser ``p`` (``lgtc discharge``)."""
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
    p.add_argument(
        "--victim",
        choices=VICTIMS,
        default="config",
        help="config: the discharge event's robot; alone: whichever robot serves a consumer "
        "alone when the event fires (every run then leaves a consumer uncovered, Fig. 5)",
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
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the study already under --out (its discharge.json and seed*/ folders); "
        "without it such an --out is refused",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``lgtc discharge`` command line on its own."""
    p = argparse.ArgumentParser(prog="lgtc discharge", description=__doc__.splitlines()[0])
    add_arguments(p)
    return p


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float (``recover_s`` of a run that was not re-covered)
    as ``None``, so the JSON written is strict JSON (``null``, never ``NaN``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def _dumps(value: Any, **kw) -> str:
    return json.dumps(_strict(value), allow_nan=False, **kw)


def _finish(summary: dict, out: Path, window: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "discharge.json").write_text(_dumps(summary, indent=2) + "\n")
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


def _figure(ns: argparse.Namespace, seed: int, title: str) -> None:
    """``--figure``: the Fig. 5-style PNG of the run of ``seed`` under ``--out``."""
    run_dir = _run_dir(ns.out, seed)
    plot_run(run_dir / RUN_MCAP, load_config(run_dir / RUN_CONFIG), Path(ns.figure), title)


def _main_core(ns: argparse.Namespace) -> int:
    """``--backend core``: :func:`discharge_study_core` with the CLI's options."""
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
            progress=lambda res: print(_dumps(res), flush=True),
            controller=ns.controller,
            cbf=not ns.no_cbf,
            victim=ns.victim,
        )
    except MissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _finish(summary, out, ns.window)
    if ns.figure:
        seed = summary["results"][0]["seed"]
        _figure(ns, seed, f"{ns.config}, seed {seed} (core env, {ns.controller})")
    return 0


def _ros_checkpoint(ns: argparse.Namespace, base_cfg) -> str | None:
    """The checkpoint the ROS runs fly: ``--checkpoint``, else the config's made absolute
    (the run configs live elsewhere)."""
    if ns.checkpoint is not None:
        return _cli_checkpoint(ns.checkpoint)
    if base_cfg.policy.checkpoint is None:
        return None
    try:
        return str(base_cfg.resolve_checkpoint())
    except FileNotFoundError as exc:
        raise MissionError(str(exc)) from None


def _ros_run(ns: argparse.Namespace, mapping: dict, seed: int, duration: float) -> dict:
    """One ROS run of the config ``mapping`` through the demo (no gif, no core comparison),
    recorded under ``--out/seed<k>/`` and judged by :func:`analyse`."""
    run_dir = _run_dir(ns.out, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / RUN_CONFIG
    cfg_path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    with open(run_dir / "demo.log", "w") as log:
        values = run_demo(
            DemoOptions(
                config=str(cfg_path),
                out=str(run_dir),
                duration=duration,
                stop_when_done=False,
                gif=False,
                compare=False,
                status_every=0,
            ),
            out=log,
        )
    res, _ = _analyse_run(run_dir, ns.window)
    res.update(
        seed=seed,
        min_separation_margin_m=values["min_separation_margin_m"],
        ticks_on_time_pct=values["ticks_on_time_pct"],
        sim_s=values["sim_s"],
    )
    return res


def _main_ros(ns: argparse.Namespace) -> int:
    """``--backend ros``: every seeded run through the demo over DDS."""
    if ns.controller != "policy" or ns.no_cbf:
        print(
            "error: --controller and --no-cbf are core-backend options (the ros backend flies "
            "the policy through the cbf_filter nodes)",
            file=sys.stderr,
        )
        return 2
    try:
        base, base_cfg = _study_config(ns.config, ns.victim)
        ckpt = _ros_checkpoint(ns, base_cfg)
        flight_s = _flight_s(base_cfg, ns.after)
        results = []
        for seed in range(ns.first_seed, ns.first_seed + ns.runs):
            mapping = variant(base, seed, ns.jitter, ckpt)
            if ns.resource_types:
                mapping["resource_types"] = ns.resource_types.split(",")
            results.append(_ros_run(ns, mapping, seed, flight_s * 1.15 + 10.0))
            print(_dumps(results[-1]), flush=True)
            if ns.figure and seed == ns.first_seed:
                _figure(ns, seed, f"{ns.config}, seed {seed}")
    except MissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarise(results, "ros", ckpt, ns.window)
    summary["victim"] = ns.victim
    _finish(summary, Path(ns.out), ns.window)
    return 0


def run_cli(ns: argparse.Namespace) -> int:
    """``lgtc discharge``: 0 when the study ran, 2 on bad input (one line, no traceback)."""
    try:
        _check_options(ns.runs, ns.jitter, ns.window, ns.after)
        if ns.figure is not None:
            _check_figure(ns.figure)
    except MissionError as exc:
        print(f"error: --{exc}", file=sys.stderr)
        return 2
    if not ns.reanalyse:
        try:
            _claim_out(Path(ns.out), ns.overwrite)
        except MissionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if ns.reanalyse:
        try:
            summary = reanalyse(ns.out, ns.window, ns.backend)
        except MissionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for res in summary["results"]:
            print(_dumps(res))
        _finish(summary, Path(ns.out), ns.window)
        return 0
    if ns.backend == "core":
        return _main_core(ns)
    return _main_ros(ns)


def _claim_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that already holds a study (nothing of an earlier study is lost
    silently, and a shorter study cannot leave old seed folders that ``--reanalyse`` would mix
    in); with ``overwrite``, remove that study's files (``discharge.json``, ``seed<k>/``) and
    nothing else."""
    if out.exists() and not out.is_dir():
        raise MissionError(f"--out {out}: is a file; name a folder")
    old = [d for d in out.glob("seed*") if d.is_dir() and d.name[4:].isdigit()]
    summary = out / "discharge.json"
    if not old and not summary.exists():
        return
    if not overwrite:
        raise MissionError(
            f"--out {out} already holds a study ({len(old)} seed folders"
            f"{', discharge.json' if summary.exists() else ''}): pass another --out, "
            "--reanalyse to analyse it again, or --overwrite to replace it"
        )
    import shutil

    for d in old:
        shutil.rmtree(d)
    summary.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """The study with its own command line (what ``lgtc discharge`` runs)."""
    return run_cli(build_parser().parse_args(argv))
