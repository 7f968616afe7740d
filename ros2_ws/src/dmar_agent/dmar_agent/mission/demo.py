"""``dmar demo``: the DMAR swarm over ROS 2 (real DDS), then a report, an MCAP and a GIF.

    dmar demo --config launch/dmar.yaml --out runs/dmar [--seed S] [--duration S] \
        [--no-gif] [--no-record] [--no-cbf] [--drop P]

Starts the swarm of a routing config composed in one process through the sim_bridge bringup
(world, comm relay, ``/all`` services, one CBF filter and one DMAR node per robot), takes off,
and runs until every task is visited or the wall-time limit. Writes to ``--out``:

* ``report.md`` (printed too) and ``report.json``: tasks visited, cost in moves and metres
  (moves x cell size, and the floor distance flown), sim and wall time, PS steps, clusters
  formed, smallest pair separation vs Ds, CBF fallbacks, ticks on time and tick compute of the
  DMAR nodes, rounds closed on timeout, and the core simulator's cost on the same instance
  (lockstep, no continuous-space interference) for reference. The faults of the run are
  named: the world's events as they fired (``fail``, ``land``, ``discharge``, watchdog
  landings), the robots down at the end with their mode, and the DMAR nodes that took their
  robot out of the protocol;
* ``run.mcap`` (ROS 2 bag, MCAP) and ``swarm.gif`` (rendered from it);
* ``swarm.yaml`` when ``--seed`` redraws the obstacles and tasks.

``--seed S`` replaces the config's top-level seed (which draws random obstacles and tasks).
Errors (bad config or flags) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sim_bridge.cli import status_period
from sim_bridge.sim import describe_events

from dmar_agent.errors import ConfigError

OUTPUTS = ("report.md", "report.json", "run.mcap", "swarm.gif")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``dmar demo``."""
    p.add_argument("--config", default="launch/dmar.yaml", help="routing swarm YAML")
    p.add_argument("--out", default="runs/dmar", help="output directory (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="redraw obstacles and tasks")
    p.add_argument("--duration", type=float, default=300.0, help="wall-time limit [s]")
    p.add_argument("--no-record", action="store_true", help="no run.mcap (and no gif)")
    p.add_argument("--no-gif", action="store_true", help="do not render swarm.gif")
    p.add_argument("--no-cbf", action="store_true", help="no CBF filters (unsafe)")
    p.add_argument("--drop", type=float, default=0.0, help="relay loss probability")
    p.add_argument("--status-every", type=status_period(), default=10.0, help="[s], 0: silent")


def _config_for_run(config: str, seed: int | None, outdir: Path) -> Path:
    from sim_bridge.config import load_config

    path = Path(config)
    cfg = load_config(path)  # raises sim_bridge's ConfigError (one problem a line)
    if cfg.routing is None:
        raise ConfigError(f"{path}: no routing section; `dmar demo` needs a routing config")
    if seed is None:
        return path
    import yaml

    doc = yaml.safe_load(path.read_text())
    doc["seed"] = int(seed)
    run_path = outdir / "swarm.yaml"
    run_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    load_config(run_path)
    return run_path


def report_values(cfg, run, core_cost: int | None) -> dict[str, Any]:
    """The report's values from a :class:`~dmar_agent.ros.mission_run.MissionRun`."""
    diags = run.node_diagnostics.values()
    ticks = sum(int(d["ticks"]) for d in diags)
    on_time = sum(int(d["ticks_on_time"]) for d in diags)
    comp = np.asarray(run.tick_compute_ms) if run.tick_compute_ms else np.full(1, np.nan)
    leaders = sum(
        1
        for i, log in enumerate(run.clusters)
        for _, cluster, parent in log
        if cluster == i and parent < 0
    )
    moves = run.cost()
    return {
        "config": str(cfg.source),
        "robots": len(cfg.robots),
        "tasks_visited": run.tasks_visited,
        "tasks_total": run.tasks_total,
        "tasks_visited_pct": 100.0 * run.tasks_visited / max(run.tasks_total, 1),
        "cost_moves": moves,
        "cost_m": moves * cfg.routing.grid.cell_size,
        "flown_m": run.path_m,
        "sim_s": run.sim_s,
        "wall_s": run.wall_s,
        "rtf": run.result.rtf,
        "ps_steps": run.ps_step,
        "clusters_formed": leaders,
        "min_separation_m": run.min_separation_m,
        "safety_distance_m": run.safety_distance_m,
        "min_separation_margin_m": run.min_separation_m - run.safety_distance_m,
        "cbf_fallbacks": run.cbf_fallbacks,
        "ticks_on_time_pct": 100.0 * on_time / ticks if ticks else math.nan,
        "tick_compute_p50_ms": float(np.nanpercentile(comp, 50)),
        "tick_compute_p99_ms": float(np.nanpercentile(comp, 99)),
        "rounds_timed_out": sum(int(d["rounds_timed_out"]) for d in diags),
        "yields": sum(int(d["yields"]) for d in diags),
        "backoffs": sum(int(d["backoffs"]) for d in diags),
        "stop_reason": run.result.stop_reason,
        "core_cost_moves": core_cost,
        "events": describe_events(run.events),
        "robots_down": {name: run.modes[name] for name in run.robots_down},
        "watchdog_landings": run.watchdog_landings,
        "nodes_out_of_protocol": sorted(
            name for name, d in run.node_diagnostics.items() if int(d.get("downs", 0)) > 0
        ),
    }


def format_report(values: dict[str, Any]) -> str:
    """Markdown report of :func:`report_values`."""
    v = values

    def f(x, spec=".2f"):
        return (
            "n/a"
            if x is None or (isinstance(x, float) and not math.isfinite(x))
            else (format(x, spec))
        )

    rows = [
        ("tasks visited", f"{v['tasks_visited']}/{v['tasks_total']}"),
        ("cost", f"{v['cost_moves']} moves = {f(v['cost_m'])} m (flown {f(v['flown_m'])} m)"),
        ("core simulator cost (same instance)", f"{v['core_cost_moves']} moves"),
        (
            "time",
            f"{f(v['sim_s'], '.1f')} s sim, {f(v['wall_s'], '.1f')} s wall, rtf {f(v['rtf'])}",
        ),  # fmt: skip
        ("PS steps", str(v["ps_steps"])),
        ("clusters formed", str(v["clusters_formed"])),
        (
            "smallest pair separation",
            f"{f(v['min_separation_m'], '.3f')} m vs Ds "
            f"{f(v['safety_distance_m'], '.3f')} m (margin "
            f"{f(v['min_separation_margin_m'], '.3f')} m)",
        ),  # fmt: skip
        ("CBF fallbacks", str(v["cbf_fallbacks"])),
        ("DMAR ticks on time (20 Hz)", f"{f(v['ticks_on_time_pct'])} %"),
        (
            "tick compute p50 / p99",
            f"{f(v['tick_compute_p50_ms'], '.3f')} / {f(v['tick_compute_p99_ms'], '.3f')} ms",
        ),  # fmt: skip
        ("rounds closed on timeout", str(v["rounds_timed_out"])),
        ("yields / back-offs", f"{v['yields']} / {v['backoffs']}"),
        ("events (faults)", "; ".join(v["events"]) or "none"),
        (
            "robots down at the end",
            ", ".join(f"{k} ({m})" for k, m in v["robots_down"].items()) or "none",
        ),  # fmt: skip
        (
            "DMAR nodes out of the protocol (robot down)",
            ", ".join(v["nodes_out_of_protocol"]) or "none",
        ),  # fmt: skip
        ("stopped by", v["stop_reason"]),
    ]
    lines = [f"# DMAR mission report: {Path(v['config']).name}", "", "| measure | value |",
             "|---|---|"]  # fmt: skip
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines) + "\n"


def run_demo(args: argparse.Namespace, out=None) -> dict[str, Any]:
    """Run the demo of ``args`` (the flags of :func:`add_arguments`); returns the values.

    ``out`` defaults to ``sys.stdout`` as it is at call time (not at import: a test runner
    may have replaced and closed the one seen then).
    """
    out = sys.stdout if out is None else out
    from sim_bridge.config import load_config

    from dmar_agent.distributed import run_distributed
    from dmar_agent.mission.scenario import core_instance
    from dmar_agent.ros.mission_run import ros_env, run_mission

    if not (math.isfinite(args.duration) and args.duration > 0):
        raise ConfigError(f"--duration {args.duration}: must be > 0 s")
    if not 0.0 <= args.drop < 1.0:
        raise ConfigError(f"--drop {args.drop}: must be in [0, 1)")
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:  # never report a stale file of an earlier run
        (outdir / name).unlink(missing_ok=True)
    path = _config_for_run(args.config, args.seed, outdir)
    cfg = load_config(path)
    ros_env()
    import os

    print(
        f"[dmar demo] {path}: {len(cfg.robots)} robots, {len(cfg.routing.tasks)} tasks, "
        f"{cfg.routing.grid.rows} x {cfg.routing.grid.cols} cells, seed {cfg.seed}, "
        f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, limit {args.duration:g} s",
        file=out,
        flush=True,
    )
    inst, dcfg = core_instance(cfg)
    core, _ = run_distributed(inst, dcfg)
    mcap = outdir / "run.mcap"
    run = run_mission(
        path,
        cbf=not args.no_cbf,
        duration=args.duration,
        relay_drop_prob=args.drop,
        record=None if args.no_record else str(mcap),
        status_every=args.status_every,
        out=out,
    )
    for err in run.result.errors:
        print(f"[dmar demo] error: {err}", file=out)
    values = report_values(cfg, run, int(core.cost))
    notes = []
    if not args.no_record and not args.no_gif and mcap.exists():
        try:
            from sim_bridge.render import RenderError, render

            render(mcap, outdir / "swarm.gif", fps=8.0, frames=48)
        except (RenderError, ValueError, OSError) as exc:
            notes.append(f"swarm.gif not rendered ({exc})")
    values["notes"] = "; ".join(notes) if notes else "none"
    text = format_report(values)
    (outdir / "report.md").write_text(text)
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()
    }
    (outdir / "report.json").write_text(json.dumps(clean, indent=2) + "\n")
    print(text, file=out, flush=True)
    made = [n for n in OUTPUTS if (outdir / n).exists()]
    print(f"[dmar demo] wrote {', '.join(made)} in {outdir}", file=out)
    return values


def main(args: argparse.Namespace) -> int:
    """``dmar demo``: 0 when every task was visited, 1 when the time limit came first."""
    from sim_bridge.config import ConfigError as SwarmConfigError

    try:
        values = run_demo(args)
    except SwarmConfigError as exc:
        for problem in exc.problems:
            print(f"dmar: error: {problem}", file=sys.stderr)
        return 2
    return 0 if values["tasks_visited"] == values["tasks_total"] else 1
