"""``lgtc demo`` (``make demo``): fly the shipped LGTC policy over ROS 2 and report.

Starts the whole swarm of a config over real DDS through the sim_bridge bringup (world, comm
relay, services, one CBF filter and one policy node per robot; composed in one process by
default), takes off, runs until every demand is met (plus ``--linger`` seconds) or the wall
time limit, and writes to ``--out``:

* ``run.mcap`` (ROS 2 bag, MCAP): the run's one recording (the swarm topics and
  ``/diagnostics``); everything below is read from it;
* ``report.md`` (printed too) and ``report.json``: demand satisfied, time to satisfy, min
  pair separation, CBF fallbacks, policy ticks on time, and the episode reward of the ROS run
  (scored by the env's eq. 2) vs the core env with the same policy, scenario and seed vs the
  centralized expert (:mod:`lgtc_policy.mission.scenario`);
* ``swarm.gif`` (rendered from the recording).

The run ends ``--linger`` sim seconds after the runner's monitor
(:class:`sim_bridge.ros.runner.SwarmMonitor`) sees every demand met. DDS stays on this machine
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) and the run gets its own ``ROS_DOMAIN_ID``
(random in 1..200 unless already set). Errors (bad config, missing or mismatched checkpoint,
missing node package) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from sim_bridge.bringup import BringupError, check_plugins, plan
from sim_bridge.cli import MAX_DURATION_S, bounded_float, status_period
from sim_bridge.config import ConfigError, load_config
from sim_bridge.recording import read_run
from sim_bridge.render import RenderError, render
from sim_bridge.sim import describe_events

from lgtc_policy.agent import MissionError, load_policy, replace_checkpoint
from lgtc_policy.mission.report import format_report, node_metrics, ros_metrics
from lgtc_policy.mission.scenario import (
    core_rollout,
    expert_rollout,
    resample,
    scenario_from_config,
    score_trajectory,
)
from lgtc_policy.model.checkpoint import CheckpointError, build_net, load_checkpoint

__all__ = ["DemoOptions", "add_arguments", "options_from_args", "run_cli", "run_demo"]

OUTPUTS = ("report.md", "report.json", "run.mcap", "swarm.gif")


@dataclass
class DemoOptions:
    """Options of one demo run (the command line maps onto these fields)."""

    config: str = "launch/demo.yaml"
    """Swarm YAML file."""
    out: str = "runs/demo"
    """Output directory (report.md, report.json, run.mcap, swarm.gif)."""
    duration: float = 60.0
    """Wall-clock limit of the ROS run [s]."""
    mode: str = "composed"
    """``composed`` (all nodes in one process) or ``processes`` (one process per node)."""
    executor: str = "events"
    """Composed mode's executor: ``multi`` (MultiThreadedExecutor), ``single``, or ``events``
    (rclpy's experimental EventsExecutor; the default: it keeps 10 robots at real time on
    2 loaded cores where the multi-threaded one falls to a quarter, docs/mission.md)."""
    cbf: bool = True
    """Filter every command with the CBF (False: unfiltered pass-through, no safety)."""
    checkpoint: str | None = None
    """Override the config's ``policy.checkpoint`` (path or ``pkg:relative``)."""
    stop_when_done: bool = True
    """Stop once every demand is met (after ``linger`` more seconds)."""
    linger: float = 2.0
    """Seconds to keep running after the mission completes [s]."""
    gif: bool = True
    """Render swarm.gif from the recording."""
    compare: bool = True
    """Score the run against the core env (replay, policy rollouts); False skips the rewards."""
    expert: bool = True
    """Also run the centralized expert on the scenario."""
    seed: int = 0
    """Seed of the core env comparison."""
    status_every: float = 5.0
    """Status line period during the run [s] (0: silent)."""
    sim_time: bool = False
    """Every node on the world's ``/clock`` (``swarm up --sim-time``): a slow world slows the
    swarm instead of making its commands stale; ``duration`` stays wall time."""


def _ros_env() -> None:
    """Localhost-only DDS and, unless ``ROS_DOMAIN_ID`` is set, a domain nobody else uses."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not os.environ.get("ROS_DOMAIN_ID"):
        # rclpy only when the demo flies: the mission room imports without ROS
        from lgtc_policy.ros.session import free_domain

        os.environ["ROS_DOMAIN_ID"] = str(free_domain())


def _checkpoint_info(cfg) -> tuple[Path, dict, Any]:
    """(path, env_config, LGTCNet) of the config's checkpoint; MissionError if unusable."""
    if cfg.policy.checkpoint is None:
        raise MissionError(
            f"{cfg.source}: policy.checkpoint is null; set it or pass --checkpoint FILE"
        )
    try:
        path = cfg.resolve_checkpoint()
    except FileNotFoundError as exc:
        raise MissionError(
            f"{exc}. The shipped policy is produced by `lgtc train` (see "
            "ros2_ws/src/lgtc_policy/README.md); pass --checkpoint FILE to use another"
        ) from None
    load_policy(path, len(cfg.resource_types))  # same checks as every policy node
    try:
        ck = load_checkpoint(path)
        net = build_net(ck, "policy")
    except CheckpointError as exc:
        raise MissionError(str(exc)) from None
    return path, dict(ck["env_config"]), net


def _load(opts: DemoOptions, outdir: Path):
    """``(cfg, the config file the nodes read)`` of ``opts``; with ``--checkpoint`` the
    config with that checkpoint is written to ``outdir/swarm.yaml`` for the nodes."""
    if not (opts.duration > 0):
        raise MissionError(f"--duration {opts.duration}: must be > 0 s")
    if opts.mode not in ("composed", "processes"):
        raise MissionError(f"--mode {opts.mode!r}: use composed or processes")
    cfg = load_config(opts.config)
    if not opts.checkpoint:
        return cfg, Path(opts.config)
    cfg = replace_checkpoint(cfg, opts.checkpoint)
    run_cfg_path = outdir / "swarm.yaml"
    mapping = cfg.to_mapping()
    with contextlib.suppress(FileNotFoundError):
        mapping["policy"]["checkpoint"] = str(cfg.resolve_checkpoint())
    run_cfg_path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return cfg, run_cfg_path


def _fly(opts: DemoOptions, cfg, specs, mcap: Path, out):
    """The ROS run: the bringup runner with the run recorded to ``mcap`` (diagnostics
    included), stopped ``linger`` sim seconds after the runner's monitor saw every demand met
    (``stop_when_done``)."""
    # rclpy only when the demo flies: the mission room imports without ROS
    from sim_bridge.ros.runner import run_composed, run_processes

    kwargs = {
        "duration": opts.duration,
        "record": str(mcap),
        "record_diagnostics": True,
        "status_every": opts.status_every,
        "out": out,
        "linger_after_demand_met": opts.linger if opts.stop_when_done else None,
    }
    try:
        if opts.mode == "composed":
            return run_composed(specs, cfg, executor=opts.executor, **kwargs)
        return run_processes(specs, cfg, **kwargs)
    except BringupError as exc:
        raise MissionError(str(exc)) from None


def run_demo(opts: DemoOptions, out=sys.stdout) -> dict[str, Any]:
    """Run the demo; returns the report values (also written under ``opts.out``)."""
    _ros_env()
    torch.set_num_threads(1)
    outdir = Path(opts.out)
    outdir.mkdir(parents=True, exist_ok=True)
    cfg, run_cfg_path = _load(opts, outdir)
    ckpt, env_config, net = _checkpoint_info(cfg)
    scenario = scenario_from_config(cfg, cfg.rates.control_hz)
    try:
        specs = plan(cfg, run_cfg_path, cbf=opts.cbf, autostart=True, sim_time=opts.sim_time)
        if opts.mode == "composed":
            check_plugins(specs)
    except BringupError as exc:
        raise MissionError(str(exc)) from None
    for name in OUTPUTS:  # never report a stale file of an earlier run
        (outdir / name).unlink(missing_ok=True)
    mcap = outdir / "run.mcap"
    print(
        f"[demo] {opts.config}: {len(cfg.robots)} robots, {len(cfg.consumers)} consumers, "
        f"policy {ckpt.name}, {len(specs)} nodes ({opts.mode}), ROS_DOMAIN_ID="
        f"{os.environ['ROS_DOMAIN_ID']}, limit {opts.duration:g} s",
        file=out,
        flush=True,
    )
    res = _fly(opts, cfg, specs, mcap, out)
    for err in res.errors:
        print(f"[demo] error: {err}", file=out)
    run = read_run(mcap, cfg)
    if len(run.times) < 2:
        raise MissionError(
            "the recording holds no world state: the world node did not publish (see the log above)"
        )
    values: dict[str, Any] = {
        "config": str(opts.config),
        "checkpoint": str(ckpt),
        "mode": opts.mode,
        "robots": len(cfg.robots),
        "consumers": len(cfg.consumers),
        "wall_s": res.wall_s,
        "sim_s": float(run.times[-1]),
        "rtf": res.rtf,
    }
    values.update(ros_metrics(cfg, run.times, run.positions, run.demands))
    figures, notes = node_metrics(run.diagnostics)
    values.update(figures)
    if opts.compare:
        values.update(
            compare_with_core(cfg, scenario, env_config, net, run.times, run.positions, opts, notes)
        )
    if opts.gif:
        try:
            render(mcap, outdir / "swarm.gif", fps=8.0, frames=48)
        except (RenderError, ValueError, OSError) as exc:
            notes.append(f"swarm.gif not rendered ({exc})")
    values["events"] = "; ".join(describe_events(run.events)) or "none"
    values["notes"] = "; ".join(notes) if notes else "none"
    _write_report(values, outdir, Path(opts.config).name, out)
    return values


def _write_report(values: dict[str, Any], outdir: Path, name: str, out) -> None:
    """report.md (printed too) and report.json under ``outdir``."""
    text = format_report(values, title=f"Swarm mission report: {name}")
    (outdir / "report.md").write_text(text)
    (outdir / "report.json").write_text(json.dumps(_jsonable(values), indent=2) + "\n")
    print(text, file=out, flush=True)
    made = [p.name for p in (outdir / n for n in OUTPUTS) if p.exists()]
    print(f"[demo] wrote {', '.join(made)} in {outdir}", file=out)


def compare_with_core(cfg, scenario, env_config, net, times, positions, opts, notes) -> dict:
    """Rewards of the ROS run (env replay), the core env rollout and the expert, same ticks."""
    dt = 1.0 / cfg.rates.control_hz
    t_end = float(times[-1])
    traj = resample(times, positions[..., :2], dt, t_end)
    steps = len(traj) - 1
    out: dict[str, Any] = {"episode_ticks": steps}
    if steps < 1:
        notes.append("run too short for a reward comparison")
        return out
    try:
        ros = score_trajectory(scenario, env_config, traj, seed=opts.seed)
        core = core_rollout(net, scenario, env_config, steps, seed=opts.seed)
        core_cbf = core_rollout(net, scenario, env_config, steps, seed=opts.seed, cbf=True)
    except MissionError as exc:
        notes.append(f"no core comparison: {exc}")
        return out
    out.update(
        reward_ros=ros.reward,
        reward_core=core.reward,
        reward_ratio_ros_vs_core=ros.reward / core.reward if core.reward else math.nan,
        reward_core_cbf=core_cbf.reward,
        reward_ratio_ros_vs_core_cbf=ros.reward / core_cbf.reward if core_cbf.reward else math.nan,
        env_demand_satisfied_ros_pct=100 * ros.demand_satisfied,
        env_demand_satisfied_core_pct=100 * core.demand_satisfied,
    )
    if opts.expert:
        try:
            ex = expert_rollout(scenario, env_config, steps, seed=opts.seed)
        except MissionError as exc:
            notes.append(str(exc))
            out["reward_expert"] = math.nan
        else:
            out["reward_expert"] = ex.reward
            out["reward_ratio_ros_vs_expert"] = ros.reward / ex.reward if ex.reward else math.nan
            out["env_demand_satisfied_expert_pct"] = 100 * ex.demand_satisfied
    return out


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in values.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The demo's options (fields of :class:`DemoOptions`) on parser ``p``."""
    d = DemoOptions()
    p.add_argument("--config", default=d.config, help="swarm YAML (default %(default)s)")
    p.add_argument("--out", default=d.out, help="output directory (default %(default)s)")
    p.add_argument(
        "--duration",
        type=bounded_float(0.0, MAX_DURATION_S, open_low=True),
        default=d.duration,
        help="wall limit [s]",
    )
    p.add_argument("--mode", choices=("composed", "processes"), default=d.mode)
    p.add_argument("--executor", choices=("multi", "single", "events"), default=d.executor)
    p.add_argument("--checkpoint", default=None, help="override policy.checkpoint")
    p.add_argument("--no-cbf", action="store_true", help="no CBF filters (unsafe)")
    p.add_argument("--no-stop", action="store_true", help="run to the limit even when done")
    p.add_argument(
        "--linger",
        type=bounded_float(0.0, MAX_DURATION_S),
        default=d.linger,
        help="run on after completion [s]",
    )
    p.add_argument("--no-gif", action="store_true", help="do not render swarm.gif")
    p.add_argument("--no-compare", action="store_true", help="skip the core env comparison")
    p.add_argument("--no-expert", action="store_true", help="skip the centralized expert")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the core env comparison")
    p.add_argument(
        "--status-every", type=status_period(), default=d.status_every, help="[s], 0: silent"
    )
    p.add_argument(
        "--sim-time", action="store_true", help="every node on the world's /clock (use_sim_time)"
    )


def options_from_args(ns: argparse.Namespace) -> DemoOptions:
    """The :class:`DemoOptions` of parsed :func:`add_arguments` options."""
    return DemoOptions(
        config=ns.config,
        out=ns.out,
        duration=ns.duration,
        mode=ns.mode,
        executor=ns.executor,
        cbf=not ns.no_cbf,
        checkpoint=ns.checkpoint,
        stop_when_done=not ns.no_stop,
        linger=ns.linger,
        gif=not ns.no_gif,
        compare=not ns.no_compare,
        expert=not ns.no_expert,
        seed=ns.seed,
        status_every=ns.status_every,
        sim_time=ns.sim_time,
    )


def run_cli(ns: argparse.Namespace) -> int:
    """``lgtc demo``: exit 0 on a completed run, 2 on bad input (one line, no traceback)."""
    try:
        run_demo(options_from_args(ns))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except MissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
