"""``dmar`` command: ``dmar run`` (one instance), ``dmar sweep`` (Ray), ``dmar figures``,
``dmar fig2i``, ``dmar demo`` (the swarm over ROS 2, :mod:`dmar_agent.mission.demo`)."""

from __future__ import annotations

import argparse
import errno
import json
import math
import sys
from pathlib import Path

from sim_bridge.cli import ArgumentParser, bounded_int

from dmar_agent.mission.sweep import (
    ALL_ALGOS,
    CENTRAL_ALGOS,
    DIST_ALGOS,
    Job,
    SweepSpec,
    check_size,
    read_csv,
    run_job,
    run_sweep,
)

from .errors import ConfigError, DmarError
from .protocols import MAX_PSI, iteration_steps

DEFAULT_MAX_ITERATIONS = 20000
STOP_TEXT = {
    "max_iterations": "--max-iterations {it} reached",
    "time_limit": "--time-limit {t} s passed",
}


#: Values one list flag (``--sizes``, ``--ks``) may expand to: each is a sweep cell.
MAX_LIST = 1000


def _ints(flag: str):
    def parse(text: str) -> list[int]:
        too_many = f"{flag} {text[:40]!r} gives more than {MAX_LIST} values; sweep fewer"
        try:
            out = []
            for part in text.split(","):
                if ".." in part:
                    a, b = map(int, part.split(".."))
                    if len(out) + b - a + 1 > MAX_LIST:  # counted before it is expanded
                        raise argparse.ArgumentTypeError(too_many)
                    out.extend(range(a, b + 1))
                elif part:
                    out.append(int(part))
                if len(out) > MAX_LIST:
                    raise argparse.ArgumentTypeError(too_many)
            if not out:
                raise argparse.ArgumentTypeError(
                    f"{flag} {text[:40]!r} gives no value (a range a..b needs a <= b)"
                )
            return out
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} needs comma-separated integers or ranges like 2..12, got {text[:40]!r}"
            ) from None

    return parse


def _names(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def _table(rows: list[dict]) -> str:
    cols = [
        ("algo", "algo", "{}"), ("cost", "cost", "{}"), ("explore", "exploration_moves", "{}"),
        ("waits", "waits", "{}"), ("ps_steps", "ps_steps", "{}"), ("iters", "iterations", "{}"),
        ("clusters", "clusters", "{}"), ("compute", "compute", "{}"),
        ("plan_s", "plan_wall_s", "{:.3f}"), ("wall_s", "wall_s", "{:.3f}"),
        ("done", "completed", "{}"),
    ]  # fmt: skip
    cells = [[h for h, _, _ in cols]] + [[f.format(r[key]) for _, key, f in cols] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    return "\n".join("  ".join(c[i].rjust(widths[i]) for i in range(len(cols))) for c in cells)


def _check_limits(args: argparse.Namespace) -> None:
    """Flags of run and sweep: one clear error per bad value (``<flag>: <problem>; <fix>``)."""
    if args.max_iterations < 1:
        raise ConfigError(
            f"--max-iterations: {args.max_iterations} is below 1; give a positive count "
            f"(default {DEFAULT_MAX_ITERATIONS})"
        )
    t = args.time_limit
    if t is not None and not (math.isfinite(t) and t > 0):
        raise ConfigError(f"--time-limit: {t} is not a positive number of seconds; leave it out "
                          "for no limit")  # fmt: skip
    if not (math.isfinite(args.ortools_s) and args.ortools_s > 0):
        raise ConfigError(f"--ortools-s: {args.ortools_s} is not a positive number of seconds; "
                          "e.g. 5")  # fmt: skip
    if args.map and Path(args.map).is_dir():
        raise ConfigError(f"--map: {args.map!r} is a directory; give a MovingAI .map file")


def _check_run_args(args: argparse.Namespace) -> None:
    """Validate ``dmar run`` flags before anything is built or allocated."""
    if not args.algos:
        raise ConfigError(
            f"--algos: no algorithm given; name one or more of {', '.join(ALL_ALGOS)}"
        )
    for a in args.algos:
        if a not in ALL_ALGOS:
            raise ConfigError(f"--algos entry {a!r} must be one of {', '.join(ALL_ALGOS)}")
    for flag, val in (("--instance", args.instance), ("--run", args.run)):
        if val < 0:
            raise ConfigError(f"{flag}: {val} is negative; give a seed >= 0")
    if args.agents is not None and args.agents < 1:
        where = "one per map column with --map" if args.map else "n agents"
        raise ConfigError(
            f"--agents: {args.agents} is below 1; give >= 1 or leave it out ({where})"
        )
    if args.psi < 1:
        raise ConfigError(f"--psi: {args.psi} is below 1; give 1..{MAX_PSI} (the paper uses 3)")
    if args.psi > MAX_PSI:
        steps = f"{iteration_steps(args.psi):.3g}" if args.psi <= 64 else "astronomically many"
        raise ConfigError(
            f"--psi: {args.psi} is outside 1..{MAX_PSI}: an iteration takes about 2^psi + "
            f"2 * 4^(psi-1) PS steps ({steps} here, 95 at psi = 3); the paper uses 3"
        )
    _check_limits(args)
    if not args.map:
        if args.n < 2:
            raise ConfigError(f"--n: {args.n} is below 2; give a grid size >= 2")
        m = args.n if args.agents is None else args.agents
        check_size(m, args.n * args.n, "--n")


def _limit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-iterations", type=int, default=DEFAULT_MAX_ITERATIONS,
        help=f"stop a DMAR/BP run after this many iterations (default {DEFAULT_MAX_ITERATIONS})",
    )  # fmt: skip
    p.add_argument(
        "--time-limit", type=float, default=None, metavar="SECONDS",
        help="stop a DMAR/BP run once this wall time has passed (checked between iterations; "
        "default: none)",
    )  # fmt: skip


def _os_error_text(args: argparse.Namespace, e: OSError) -> str:
    """``<flag> <path>: <problem>; <fix>`` for an OSError on a path given on the command line
    (the flag whose value is the path or lies under it), else the error itself."""
    if e.filename is None:
        return str(e)
    bad = Path(str(e.filename))
    for dest, val in vars(args).items():
        if not isinstance(val, str) or not val or dest in ("cmd", "action"):
            continue
        given = Path(val)
        if bad != given and bad not in given.parents:
            continue
        where = "" if bad == given else f" ({bad})"
        if isinstance(e, IsADirectoryError):
            fix = "name a file, not a folder"
        elif isinstance(e, FileExistsError | NotADirectoryError):
            fix = f"{bad} is a file where a folder is needed; choose another path"
        elif isinstance(e, FileNotFoundError):
            fix = "check the path"
        elif e.errno == errno.ENAMETOOLONG:
            fix = "use a shorter path"
        else:
            fix = "choose a path this user can read and write"
        return f"--{dest.replace('_', '-')} {val}: {e.strerror or e}{where}; {fix}"
    return str(e)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="dmar", description="Distributed multiagent rollout (DMAR) on unmapped grids."
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run algorithms on one instance and print a table")
    r.add_argument("--n", type=int, default=20, help="grid size n (n x n, n agents)")
    r.add_argument("--k", type=int, default=8, help="view radius in hops")
    r.add_argument("--ratio", default="1:1", help="agent-to-task ratio 1:2, 1:1 or 2:1")
    r.add_argument("--instance", type=int, default=0, help="instance seed")
    r.add_argument("--run", type=int, default=0, help="run seed (exploration randomness)")
    r.add_argument("--agents", type=int, default=None, help="number of agents (default n)")
    r.add_argument("--map", default="", help="MovingAI .map file instead of a random grid")
    r.add_argument("--algos", type=_names, default=["dmar", "bp"], help=",".join(ALL_ALGOS))
    r.add_argument("--explore", default="walk", help="exploration: walk or waypoint")
    r.add_argument("--psi", type=int, default=3, help="cluster size parameter psi")
    r.add_argument("--ortools-s", type=float, default=5.0, help="OR-Tools time limit [s]")
    _limit_flags(r)
    r.add_argument("--json", action="store_true", help="print JSON rows instead of a table")

    s = sub.add_parser("sweep", help="run the experiment grid (Ray) and write a CSV")
    s.add_argument("--sizes", type=_ints("--sizes"), default=[10, 20, 30, 40, 50, 60, 70, 80])
    s.add_argument("--ks", type=_ints("--ks"), default=list(range(2, 17, 2)))
    s.add_argument("--ratios", type=_names, default=["1:2", "1:1", "2:1"])
    s.add_argument("--instances", type=int, default=10)
    s.add_argument("--runs", type=int, default=10)
    s.add_argument("--algos", type=_names, default=list(DIST_ALGOS), help=",".join(DIST_ALGOS))
    s.add_argument("--central", type=_names, default=[], help=",".join(CENTRAL_ALGOS))
    s.add_argument("--map", default="", help="MovingAI .map file instead of random grids")
    s.add_argument(
        "--agents", type=int, default=None,
        help="agents per instance (default: n on n x n grids, one per column on a map)",
    )  # fmt: skip
    s.add_argument("--explore", default="walk", help="exploration: walk or waypoint")
    s.add_argument("--ortools-s", type=float, default=5.0, help="OR-Tools time limit [s]")
    _limit_flags(s)
    s.add_argument("--out", default="dmar_sweep.csv", help="CSV to write")
    s.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    s.add_argument("--num-cpus", type=bounded_int(1, 4096), default=2, help="local Ray CPUs")
    s.add_argument("--no-ray", action="store_true", help="run serially in this process")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    f = sub.add_parser("figures", help="redraw Fig. 2-6 and the compute figure from a CSV")
    f.add_argument("--csv", default="dmar_sweep.csv", help="sweep CSV")
    f.add_argument("--out", default="docs/img", help="output folder for dmar_*.png")

    from dmar_agent.mission import fig2i

    fig2i.add_arguments(sub.add_parser("fig2i", help="Fig. 2(i): continuous space, DMAR vs BP"))
    from .mission import demo

    demo.add_arguments(
        sub.add_parser("demo", help="the DMAR swarm over ROS 2: report, MCAP and GIF")
    )
    return p


def _cmd_run(args) -> None:
    """``dmar run``: the algorithms on one instance, a table (or ``--json``) on stdout."""
    _check_run_args(args)
    job = Job(
        args.n, args.instance, args.ratio, args.k, args.run, tuple(args.algos), args.map,
        args.agents, args.explore, args.psi, args.ortools_s, args.max_iterations,
        args.time_limit,
    )  # fmt: skip
    rows = run_job(job)
    r0 = rows[0]
    k_text = f"k={args.k}"
    if r0["k_view"] < args.k:
        k_text = f"k={r0['k_view']} (--k {args.k} clamped to the grid's diameter)"
        print(
            f"dmar: note: --k {args.k} is above the grid's diameter {r0['k_view']} "
            "(width + height - 2), where a view already holds the whole grid; "
            f"k = {r0['k_view']} is used, with the same result",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(
            f"grid {r0['width']}x{r0['height']} ({r0['map']}), {r0['agents']} agents, "
            f"{r0['tasks']} tasks, {k_text}, instance {args.instance}, run {args.run}"
        )
        print(_table(rows))
        for r in rows:
            if r["stop_reason"]:
                why = STOP_TEXT[r["stop_reason"]].format(it=args.max_iterations, t=args.time_limit)
                print(f"{r['algo']} stopped (done False): {why}, {r['tasks_left']} "
                      "tasks left")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "run":
            _cmd_run(args)
        elif args.cmd == "demo":
            from .mission.demo import main as demo_main

            return demo_main(args)
        elif args.cmd == "fig2i":
            from dmar_agent.mission.fig2i import main as fig2i_main

            return fig2i_main(args)
        elif args.cmd == "sweep":
            _check_limits(args)
            spec = SweepSpec(
                sizes=args.sizes, ks=args.ks, ratios=args.ratios, instances=args.instances,
                runs=args.runs, algos=args.algos, central=args.central, map_path=args.map,
                explore=args.explore, ortools_s=args.ortools_s,
                max_iterations=args.max_iterations, time_limit_s=args.time_limit,
                n_agents=args.agents,
            )  # fmt: skip
            n = run_sweep(
                spec, args.out, use_ray=not args.no_ray, address=args.address,
                num_cpus=args.num_cpus, progress=not args.no_progress,
            )  # fmt: skip
            print(f"wrote {n} rows to {args.out}")
            from dmar_agent.mission.figures import summary

            print(summary(read_csv(args.out)))
        else:
            from dmar_agent.mission.figures import draw_all, summary

            rows = read_csv(args.csv)
            for path in draw_all(rows, args.out):
                print(f"wrote {path}")
            print(summary(rows))
    except DmarError as e:
        print(f"dmar: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path named on the command line
        print(f"dmar: error: {_os_error_text(args, e)}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:  # a binary file where a CSV / map / README was named
        named = getattr(args, "csv", None) or getattr(args, "map", None) or "a file named"
        print(
            f"dmar: error: {named}: not UTF-8 text ({e.reason} at byte {e.start})", file=sys.stderr
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
