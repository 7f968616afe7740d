"""``swarm`` command line: validate a swarm file, bring a swarm up, render a recorded run.

``swarm`` is the world's door; each mission has its own (``lgtc demo`` flies the LGTC policy
demo of ``make demo``, ``dmar demo`` the DMAR routing demo).

Every subcommand reports bad input as plain lines on stderr and a non-zero exit status,
never a traceback.

``swarm validate`` checks the file (:func:`sim_bridge.config.load_config`, the ``routing``
section included: grid, map file, obstacles, tasks, reachability, start cells), that the files it
names exist (:func:`sim_bridge.config.check_files`), then runs the validators that installed
packages register under the entry point group ``swarm.validators``: each is a callable
``(SwarmConfig) -> list[Problem]`` (lgtc_policy's loads the policy checkpoint as its nodes
would). sim_bridge imports no mission package; they plug in here.
"""

from __future__ import annotations

import argparse
import math
import sys
from importlib.metadata import entry_points
from pathlib import Path

from sim_bridge.bringup import (
    BringupError,
    check_plugins,
    group_plan,
    parse_group,
    plan,
    sim_time_problem,
    split_robots,
)
from sim_bridge.config import ConfigError, Problem, SwarmConfig, check_files, load_config
from sim_bridge.relay import MAX_LATENCY_S
from sim_bridge.render import RenderError, render

#: Entry point group of the config validators of installed packages.
VALIDATORS_GROUP = "swarm.validators"
#: Longest ``--duration`` and ``--status-every`` [s] (about 11.6 days: a timer of rclpy keeps
#: its period in int64 nanoseconds; without ``--duration`` a run lasts until Ctrl-C).
MAX_DURATION_S = 1e6
#: Shortest non-zero ``--status-every`` [s] (a status line per 0 ns timer tick is a busy loop).
MIN_STATUS_EVERY_S = 0.01


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose bad-option answer is one line and exit status 2:
    ``<prog>: error: <what is wrong> (see `<prog> --help`)`` (argparse's own prints the usage
    block first). Subcommand parsers are of the same class. ``swarm``, ``lgtc`` and ``dmar``
    build their parsers with it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def bounded_int(low: int, high: int):
    """argparse ``type``: an integer in ``[low, high]``; anything else is the option's one-line
    error (e.g. ``argument --episodes: must be an integer from 1 to 10000, got '1e9'``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be an integer from {low} to {high}, got {text[:40]!r}"
            )
        return value

    parse.__name__ = "int"
    return parse


def bounded_float(
    low: float,
    high: float = math.inf,
    open_low: bool = False,
    open_high: bool = False,
    zero_or_from: float | None = None,
):
    """argparse ``type``: a finite number in ``[low, high]`` (``(low, ...`` with ``open_low``,
    ``..., high)`` with ``open_high``); NaN, infinities and out-of-range values are the
    option's one-line error. ``zero_or_from``: 0, or a number in ``[zero_or_from, high]``
    (a period where 0 means "none": a tiny one would be a busy loop)."""
    right = ")" if open_high else "]"
    if zero_or_from is not None:
        low, open_low = zero_or_from, False
        want = f"0 or a number in [{low:g}, {high:g}{right}"
    elif math.isfinite(high):
        want = f"a number in {'(' if open_low else '['}{low:g}, {high:g}{right}"
    else:
        want = f"a finite number {'>' if open_low else '>='} {low:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = (low < value if open_low else low <= value) and (
            value < high if open_high else value <= high
        )
        if zero_or_from is not None and value == 0.0:
            inside = True
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text[:40]!r}")
        return value

    parse.__name__ = "float"
    return parse


def validator_problems(cfg: SwarmConfig) -> list[Problem]:
    """Problems found by every validator registered under :data:`VALIDATORS_GROUP`.

    A validator that cannot be loaded or raises is itself reported as a problem (one line),
    so a broken plugin never hides behind a traceback or an ``ok``.
    """
    problems: list[Problem] = []
    seen = set()
    for ep in sorted(entry_points(group=VALIDATORS_GROUP), key=lambda e: (e.name, e.value)):
        if (ep.name, ep.value) in seen:  # one distribution found twice on sys.path
            continue
        seen.add((ep.name, ep.value))
        try:
            problems.extend(ep.load()(cfg))
        except Exception as exc:  # noqa: BLE001 - report any plugin failure as one line
            reason = (str(exc).splitlines() or [""])[0]
            problems.append(
                Problem(
                    f"<validator {ep.name}>",
                    f"{ep.value} failed: {type(exc).__name__}: {reason}",
                    "reinstall the package that provides it",
                )
            )
    return problems


def _cmd_validate(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{args.file}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 1
    # validators may assume the named files exist: run them only when they do
    problems = check_files(cfg) or validator_problems(cfg)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{args.file}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    for warning in cfg.warnings:
        print(f"warning: {warning}")
    kinds = {}
    for robot in cfg.robots:
        kinds[f"{robot.kind}/{robot.backend}"] = kinds.get(f"{robot.kind}/{robot.backend}", 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(
        f"{args.file}: ok: {len(cfg.robots)} robots ({summary}), {len(cfg.consumers)} consumers, "
        f"resources {list(cfg.resource_types)}, C = {cfg.comm_radius} m, "
        f"{len(cfg.events)} events, {len(cfg.warnings)} warning(s)"
    )
    rc = cfg.routing
    if rc is not None:
        g = rc.grid
        print(
            f"  routing: {g.rows} x {g.cols} cells of {g.cell_size:g} m (cell (0, 0) at "
            f"{g.origin[0]:g}, {g.origin[1]:g}), {int(rc.obstacles.sum())} obstacle cells, "
            f"{len(rc.tasks)} tasks, k = {rc.k} cells ({rc.sensing_m:g} m), psi = {rc.psi}, "
            f"{rc.timing}; C = sensing radius = {rc.comm_radius:.4g} m (derived from k)"
        )
    if args.strict and cfg.warnings:
        return 2
    return 0


def _load_or_report(path: str):
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(
            f"{path}: {len(exc.problems)} problem(s); see `swarm validate {path}`", file=sys.stderr
        )
        return None


def _plan_args(args: argparse.Namespace) -> list[str]:
    """The ``swarm up`` options that shape the plan, to hand to each group's process."""
    out = ["--executor", args.executor]
    for flag in ("no_policy", "no_cbf", "takeoff", "goto", "sim_time"):
        if getattr(args, flag):
            out.append("--" + flag.replace("_", "-"))
    if args.backend:
        out += ["--backend", args.backend]
    return [*out, "--latency", repr(args.latency), "--drop", repr(args.drop)]


def _up_specs(args: argparse.Namespace, cfg: SwarmConfig):
    """The nodes this ``swarm up`` starts (one group's with ``--group``); BringupError."""
    if args.groups is not None and args.group is not None:
        raise BringupError("--groups K starts every group, --group I/K one: pass one of them")
    if args.groups is not None:
        split_robots(list(cfg.robot_names), args.groups)  # a bad K fails here, clearly
        if args.mode != "composed":
            raise BringupError("--groups runs each group composed in one process; drop --mode")
    specs = plan(
        cfg,
        args.config,
        policy=not args.no_policy,
        cbf=not args.no_cbf,
        autostart=args.takeoff,
        backend=args.backend,
        relay_latency_s=args.latency,
        relay_drop_prob=args.drop,
        goto=args.goto,
        sim_time=args.sim_time,
    )
    if args.group is not None:
        specs = group_plan(specs, cfg, *parse_group(args.group))
    check_plugins(specs)  # both modes: an executable is a thin wrapper of its module
    return specs


def _check_out_paths(args: argparse.Namespace) -> None:
    """``--record`` and ``--log-dir`` can be written (BringupError otherwise), checked before any
    node starts: the recording's folder and the log folder are made here."""
    if args.record:
        record = Path(args.record)
        if record.is_dir():
            raise BringupError(f"--record {args.record}: is a directory; name an .mcap file")
        _make_dir(record.parent, "--record", args.record)
    if args.log_dir:
        _make_dir(Path(args.log_dir), "--log-dir", args.log_dir)


def _make_dir(path: Path, flag: str, given: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BringupError(
            f"{flag} {given}: cannot make folder {str(path)!r} ({exc.strerror or exc}); "
            "name a writable place"
        ) from None


def _cmd_up(args: argparse.Namespace) -> int:
    cfg = _load_or_report(args.config)
    if cfg is None:
        return 1
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.duration is not None and not args.duration > 0:
        print("error: --duration must be > 0 seconds", file=sys.stderr)
        return 1
    problem = args.sim_time and sim_time_problem(cfg, args.backend, "--sim-time")
    if problem:  # a combination of options that cannot work: a usage error
        print(f"swarm up: error: {problem}", file=sys.stderr)
        return 2
    try:
        specs = _up_specs(args, cfg)
        _check_out_paths(args)
    except BringupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # a policy node needs its checkpoint: say so before any node starts
    problems = check_files(cfg) if any(s.package == "lgtc_policy" for s in specs) else []
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    where = f"group {args.group}, " if args.group else ""
    print(f"[swarm] {args.config}: {len(specs)} nodes ({where}{args.mode})")
    for spec in specs:
        print(f"  {spec.fqn:28s} {spec.package}/{spec.executable}")
    # rclpy only for the command that starts nodes (validate and render run without it)
    from sim_bridge.ros.runner import event_lines, run_composed, run_groups, run_processes

    common = dict(duration=args.duration, record=args.record, status_every=args.status_every)
    try:
        if args.groups is not None and args.groups > 1:
            argv = [sys.executable, "-m", "sim_bridge.cli", "up", args.config]
            argv += [*_plan_args(args), "--status-every", "0"]
            res = run_groups(
                argv,
                cfg,
                args.groups,
                log_dir=args.log_dir,
                stop_on_group_exit=args.stop_on_node_exit,
                **common,
            )
        elif args.mode == "composed":
            res = run_composed(specs, cfg, executor=args.executor, **common)
        else:
            res = run_processes(
                specs,
                cfg,
                log_dir=args.log_dir,
                stop_on_node_exit=args.stop_on_node_exit,
                **common,
            )
    except BringupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for err in res.errors:
        print(f"error: {err}", file=sys.stderr)
    print(
        f"[swarm] done: wall {res.wall_s:.1f} s, sim {res.sim_s:.1f} s, rtf {res.rtf:.2f}, "
        f"tick p50 {res.tick_p50_ms:.1f} ms p99 {res.tick_p99_ms:.1f} ms, "
        f"cpu {res.cpu_percent:.0f} %, demand left {res.remaining_demand:.2f}/"
        f"{res.initial_demand:.2f}"
        + (f", recorded {res.recorded} messages to {args.record}" if args.record else "")
    )
    events = event_lines(res)
    if events:
        print("[swarm] events: " + "; ".join(events))
    if res.loop_ticks:
        print(
            f"[swarm] robot ticks: {res.loop_ticks}, "
            f"{100.0 * res.loop_ticks_on_time / res.loop_ticks:.1f} % on time, "
            f"{res.loop_ticks_missed} missed (a late tick skips periods; see each node's "
            "diagnostics)"
        )
    return res.exit_code


def _cmd_render(args: argparse.Namespace) -> int:
    try:
        info = render(args.file, args.out, fps=args.fps, frames=args.frames)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {info}")
    return 0


def _add_up_parser(sub) -> None:
    """The ``swarm up`` subcommand and its options."""
    p = sub.add_parser("up", help="start the swarm's nodes here (sim world, relay, CBF, policy)")
    p.add_argument("config", help="swarm YAML file")
    p.add_argument(
        "--duration",
        type=bounded_float(0.0, MAX_DURATION_S, open_low=True),
        default=None,
        help="stop after S wall seconds",
    )
    p.add_argument("--record", metavar="FILE.mcap", help="record the run (ROS 2 bag, MCAP)")
    p.add_argument("--mode", choices=("composed", "processes"), default="composed")
    p.add_argument(
        "--executor",
        choices=("auto", "multi", "single", "events"),
        default="auto",
        help="composed mode's executor; auto: rclpy's EventsExecutor when every node is known "
        "to work with it (sim_bridge's own), else MultiThreadedExecutor",
    )
    p.add_argument("--no-policy", action="store_true", help="do not start the policy nodes")
    p.add_argument(
        "--no-cbf",
        action="store_true",
        help="no CBF filters: cmd_vel_nominal is forwarded to cmd_vel unfiltered",
    )
    p.add_argument("--takeoff", action="store_true", help="take off every sim robot at start")
    p.add_argument(
        "--goto",
        action="store_true",
        help="scripted commander instead of the policy: robot i flies to consumer i mod M",
    )
    p.add_argument(
        "--backend",
        choices=("sim", "cflib"),
        default=None,
        help="sim: simulate every robot whatever its backend",
    )
    p.add_argument(
        "--sim-time",
        action="store_true",
        help="every node's clock follows the world's /clock (use_sim_time): a world slower "
        "than real time slows the whole swarm instead of making its commands stale "
        "(simulation only)",
    )
    _add_relay_and_status_options(p)
    p.add_argument(
        "--groups",
        type=int,
        default=None,
        metavar="K",
        help="split the robots over K processes (contiguous groups, each composed; group 1 "
        "also runs the world, relay and services); see docs/groups.md",
    )
    p.add_argument(
        "--group",
        default=None,
        metavar="I/K",
        help="start group I of K only (e.g. on another host of the same ROS 2 domain)",
    )
    p.add_argument(
        "--log-dir", default=None, help="processes mode / --groups: logs and params here"
    )
    p.add_argument(
        "--stop-on-node-exit",
        action="store_true",
        help="processes mode / --groups: end the run when any node or group exits (default: "
        "a robot's node or group that exits is reported, its robots land, the others carry on)",
    )
    p.set_defaults(func=_cmd_up)


def status_period():
    """argparse ``type`` of a status-line period [s] (``--status-every`` of ``swarm up`` and of
    the mission demos): 0 (no status lines) or a number in ``[MIN_STATUS_EVERY_S,
    MAX_DURATION_S]`` (``1e-300`` was a busy timer, ``1e300`` an overflow in rclpy)."""
    return bounded_float(0.0, MAX_DURATION_S, zero_or_from=MIN_STATUS_EVERY_S)


def _add_relay_and_status_options(p) -> None:
    """``swarm up``'s comm relay impairments and status period, each bounded (a latency of
    ``1e300`` queued every message for good; a status period of ``1e-300`` was a busy loop)."""
    p.add_argument(
        "--latency",
        type=bounded_float(0.0, MAX_LATENCY_S),
        default=0.0,
        help="comm relay latency [s]",
    )
    p.add_argument(
        "--drop",
        type=bounded_float(0.0, 1.0, open_high=True),
        default=0.0,
        help="comm relay drop probability",
    )
    p.add_argument(
        "--status-every",
        type=status_period(),
        default=5.0,
        help="status line period [s] (0: none)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``swarm`` argument parser (subcommands)."""
    parser = ArgumentParser(
        prog="swarm",
        description=__doc__.splitlines()[0],
        epilog="The mission demos have their own commands: `lgtc demo` (make demo), `dmar demo`.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "validate",
        help="check a swarm file and the files it names (policy checkpoint); one line per problem",
    )
    p.add_argument("file", help="swarm YAML file")
    p.add_argument("--strict", action="store_true", help="exit 2 when there are warnings")
    p.set_defaults(func=_cmd_validate)

    _add_up_parser(sub)

    p = sub.add_parser("render", help="draw a recorded run (trajectories, consumers, radii)")
    p.add_argument("file", help="recording (.mcap) from `swarm up --record`")
    p.add_argument("--out", required=True, help="output .png (final frame) or .gif (animation)")
    p.add_argument("--fps", type=float, default=10.0, help="gif frames per second (up to 100)")
    p.add_argument("--frames", type=int, default=60, help="gif frame count (1 to 600)")
    p.set_defaults(func=_cmd_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``swarm`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file or folder the command had to use: one line, no traceback
        print(f"swarm {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
