"""Results tables of the package READMEs, generated from the benchmarks' JSON.

Each ``benchmarks/<name>.py --json FILE`` writes flat keys (``make bench`` puts them in
``runs/bench/<name>.json``). This script rewrites, in each package README, the block between

    <!-- bench:<table> begin -->
    <!-- bench:<table> end -->

with a markdown table (measure, key, goal, value, unit) built from :data:`TABLES`: which
benchmark, which keys, their labels, goals and number formats. Nothing in a table is typed
by hand.

Usage::

    python benchmarks/tables.py [--bench-dir runs/bench] [--check] [--only cbf_filter ...]

A table whose JSON or one of whose keys is missing is left as it is (a line on stderr says
which; exit 0), and so is a README without the table's markers. ``--check`` changes no file
and exits 1 when a block would change (the tables are out of date with the JSON).

Not a benchmark: ``make bench`` skips this file; ``make tables`` runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Row:
    """One line of a results table: ``key`` of ``benchmarks/<bench>.py``'s JSON."""

    bench: str
    key: str
    label: str
    unit: str = ""
    fmt: str = ".3g"  # format spec for numbers (``format(value, fmt)``)
    goal: str = ""  # the goal, in the row's unit ("" = none)


@dataclass(frozen=True)
class Table:
    """One README block ``<!-- bench:<name> begin/end -->`` and the rows it holds."""

    name: str
    readme: str  # relative to the repository root
    rows: tuple[Row, ...]
    # bench -> JSON path relative to the repository root, instead of <bench-dir>/<bench>.json
    # (results of full runs committed next to the package)
    sources: tuple[tuple[str, str], ...] = ()


SRC = "ros2_ws/src"
DMAR_RESULTS = f"{SRC}/dmar_agent/results"

TABLES: tuple[Table, ...] = (
    Table(
        "sim_bridge",
        f"{SRC}/sim_bridge/README.md",
        (
            Row("world", "sim_steps_per_s_n1000", "simulator steps, N = 1000", "steps/s", ",.0f"),
            Row(
                "world",
                "rtf_n50_composed",
                "ROS world real-time factor, N = 50, composed",
                "",
                ".3f",
                ">= 1",
            ),
            Row("world", "tick_p99_ms_n50_composed", "world tick period p99, N = 50", "ms", ".1f"),
            Row(
                "world",
                "cpu_percent_n50_composed",
                "CPU of the run, N = 50 (100 = one core)",
                "%",
                ".0f",
            ),
            Row(
                "radio",
                "setpoint_hz_per_link_n10",
                "Crazyflie setpoints per link, N = 10",
                "Hz",
                ".1f",
                ">= 20",
            ),
            Row(
                "radio", "cmd_to_wire_p99_ms_n10", "command to radio wire p99, N = 10", "ms", ".2f"
            ),
            Row("radio", "radio_recover_s_short", "link back up after a 1.6 s outage", "s", ".2f"),
            Row("radio", "radio_recover_s_long", "link back up after a 5 s outage", "s", ".2f"),
            Row(
                "radio",
                "motors_armed_on_ground",
                "motors armed on the ground after outages",
                "",
                "d",
                "0",
            ),
            Row(
                "faults",
                "unsafe_motion_m",
                "distance flown by faulted robots after timeout",
                "m",
                ".3f",
                "0",
            ),
            Row(
                "faults",
                "landed_after_fault_pct",
                "faulted robots landed in time",
                "%",
                ".0f",
                "100",
            ),
            Row("faults", "others_unaffected_pct", "unfaulted robots flying on", "%", ".0f", "100"),
            Row("shutdown", "exit_s_max", "SIGINT to exit, slowest node", "s", ".2f", "<= 2"),
            Row("shutdown", "clean_frac", "node processes that exit cleanly", "", ".2f", "1"),
            Row(
                "validate",
                "validate_s_at_limits",
                "`swarm validate`, 1000 robots + consumers",
                "s",
                ".2f",
            ),
            Row(
                "validate",
                "validate_peak_mib_30k_robots",
                "peak memory, 31 000-robot file",
                "MiB",
                ".0f",
            ),
        ),
    ),
    Table(
        "cbf_filter",
        f"{SRC}/cbf_filter/README.md",
        (
            Row(
                "cbf",
                "decentralized_p95_ms",
                "decentralized per robot, p95, worst N",
                "ms",
                ".3f",
                "<= 0.2",
            ),
            Row("cbf", "decentralized_cpu_p95_ms", "same, thread CPU time", "ms", ".3f", "<= 0.2"),
            Row("cbf", "centralized_n16_p95_ms", "centralized, N = 16, p95", "ms", ".3f", "<= 0.5"),
            Row(
                "cbf", "centralized_n16_cpu_p95_ms", "same, thread CPU time", "ms", ".3f", "<= 0.5"
            ),
            Row(
                "cbf",
                "centralized_n16_alone_cpu_p95_ms",
                "same, timed alone, CPU time",
                "ms",
                ".3f",
            ),
            Row(
                "cbf", "speedup_vs_cvxopt_n16", "speed-up vs CVXOPT QP, N = 16", "x", ".1f", ">= 5"
            ),
            Row(
                "cbf", "speedup_vs_cvxopt_n50", "speed-up vs CVXOPT QP, N = 50", "x", ".1f", ">= 5"
            ),
            Row("cbf", "speedup_vs_cvxopt_cpu_n16", "same, N = 16, CPU time", "x", ".1f", ">= 5"),
            Row("cbf", "speedup_vs_cvxopt_cpu_n50", "same, N = 50, CPU time", "x", ".1f", ">= 5"),
        ),
    ),
    Table(
        "lgtc_policy",
        f"{SRC}/lgtc_policy/README.md",
        (
            Row(
                "env",
                "agent_steps_per_s_b4096",
                "env agent-steps, B = 4096",
                "1/s",
                ",.0f",
                ">= 3,000,000",
            ),
            Row(
                "env",
                "speedup_vs_vmas_b4096",
                "env vs VMAS simple_spread, B = 4096",
                "x",
                ".2f",
                ">= 20",
            ),
            Row(
                "assign",
                "median_ms_n10_m4",
                "eq. 3 oracle, N = 10, M = 4, median",
                "ms",
                ".2f",
                "<= 10",
            ),
            Row(
                "assign",
                "median_ms_n50_m10",
                "eq. 3 oracle, N = 50, M = 10, median",
                "ms",
                ".0f",
                "<= 1000",
            ),
            Row("assign", "gap_n50_m10", "proven gap, N = 50, M = 10, max", "", ".4f", "<= 0.01"),
            Row(
                "train",
                "train_env_steps_per_s",
                "LGTC-IPPO training at Table I, env steps",
                "1/s",
                ",.0f",
                ">= 600",
            ),
            Row(
                "train",
                "flop_efficiency",
                "training matrix FLOP/s / dense 1024² matmul FLOP/s",
                "",
                ".2f",
                ">= 0.6",
            ),
            Row(
                "train",
                "matmul_time_fraction",
                "share of training time in matrix products",
                "",
                ".2f",
            ),
            Row("train", "infer_ms_per_robot_median", "policy step per robot, median", "ms", ".3f"),
            Row(
                "mission",
                "ticks_on_time_pct_n10",
                "policy ticks on time, N = 10 over ROS",
                "%",
                ".2f",
                ">= 99",
            ),
            Row(
                "mission",
                "ticks_on_time_pct_n30",
                "policy ticks on time, N = 30 over ROS",
                "%",
                ".2f",
                ">= 99",
            ),
            Row(
                "mission",
                "ticks_on_time_pct_n50",
                "policy ticks on time, N = 50 over ROS",
                "%",
                ".2f",
                ">= 95",
            ),
            Row("mission", "rtf_n50", "real-time factor, N = 50", "", ".2f", ">= 0.99"),
            Row(
                "mission",
                "ticks_on_time_pct_n10_loaded",
                "policy ticks on time, N = 10, a CPU hog on one core",
                "%",
                ".2f",
                ">= 99",
            ),
            Row(
                "mission",
                "reward_ratio_ros_vs_core_cbf_n30",
                "reward ROS / core env + CBF, N = 30",
                "",
                ".3f",
                ">= 0.95",
            ),
            Row(
                "mission",
                "reward_ratio_ros_vs_core_cbf",
                "reward ROS / core env + CBF, N = 10",
                "",
                ".3f",
                ">= 0.95",
            ),
            Row(
                "mission",
                "min_separation_margin_m",
                "smallest pair distance minus Ds",
                "m",
                ".3f",
                ">= 0",
            ),
        ),
    ),
    Table(
        "dmar_agent",
        f"{SRC}/dmar_agent/README.md",
        (
            Row(
                "dmar", "bp_over_dmar_40x40_k8", "cost BP / DMAR, 40x40, k = 8", "", ".2f", ">= 2.0"
            ),
            Row("dmar", "bp_over_dmar_40x40_k8_filtered", "same, isolated-task filter", "", ".2f"),
            Row(
                "dmar_robots",
                "lockstep_equal_pct",
                "ROS run equals the core simulator",
                "%",
                ".0f",
                "100",
            ),
            Row(
                "dmar_robots",
                "tasks_visited_pct",
                "tasks visited, dmar.yaml + dmar_mixed.yaml",
                "%",
                ".0f",
                "100",
            ),
            Row(
                "dmar_robots",
                "min_separation_margin_m",
                "smallest pair distance minus Ds",
                "m",
                ".3f",
                ">= 0",
            ),
            Row(
                "dmar_robots",
                "ticks_on_time_pct_n7",
                "DMAR node ticks on time, 7 robots",
                "%",
                ".2f",
                ">= 99",
            ),
            Row(
                "dmar_robots",
                "tick_compute_p99_ms",
                "longest node callback, p99",
                "ms",
                ".2f",
                "<= 25",
            ),
            Row("dmar_robots", "rtf_n20", "world real-time factor, 20 robots", "", ".3f", ">= 1"),
            Row(
                "dmar_robots", "lockstep_ros_instances", "seeded 5 x 5 instances compared", "", "d"
            ),
            Row("dmar_robots", "mission_runs_config", "ROS missions behind these rows", ""),
            Row(
                "dmar_fig2i",
                "cost_ratio_bp_vs_dmar_k60cm",
                "Fig. 2(i) cost BP / DMAR, k = 60 cm",
                "",
                ".2f",
                ">= 1.2",
            ),
            Row("dmar_fig2i", "completed_pct", "Fig. 2(i) runs completed", "%", ".0f"),
        ),
        sources=(
            ("dmar", f"{DMAR_RESULTS}/bench_fidelity_k8.json"),
            ("dmar_robots", f"{DMAR_RESULTS}/bench_dmar_robots.json"),
        ),
    ),
)

SCRATCH = f"{SRC}/lgtc_policy/results/scratch_1m"
#: ``lgtc eval --json`` of the from-scratch runs at Table I's budget (TRAINING.md): the run,
#: its label, whether it has a cell.
_SCRATCH_RUNS = (
    ("lgtc_ippo_paper_s1", "LGTC-IPPO, Pi of eq. 15 (alpha 0.01)", True),
    ("lgtc_ippo_constraint_s1", "LGTC-IPPO, --pi-form constraint", True),
    ("lgtc_ippo_alpha0_s1", "LGTC-IPPO, no Pi (--alpha 0; diverged at 184k)", True),
    ("ippo_s1", "IPPO", False),
)


#: ``lgtc eval --json`` of the ``--comm relpos`` runs (not the paper's observation; TRAINING.md
#: "Neighbours' relative positions"), reported apart from the paper's.
RELPOS = f"{SRC}/lgtc_policy/results/relpos"
_RELPOS_RUNS = (
    ("lgtc_ippo_relpos_constraint_s1", "relpos LGTC-IPPO from scratch, 1M (constraint Pi)", True),
    ("lgtc_ippo_relpos_constraint_s2", "relpos LGTC-IPPO, seed 2, 1M", True),
    ("lgtc_ippo_relpos_constraint_s3", "relpos LGTC-IPPO, seed 3, 1M", True),
    ("ippo_relpos_s1", "relpos IPPO from scratch, 1M", False),
    ("ippo_relpos_s2", "relpos IPPO, seed 2, 1M", False),
    ("bc_greedy_relpos", "relpos BC of the greedy rule, 160k", True),
    ("ppo_bc05_relpos", "relpos BC + LGTC-IPPO, no filter (shipped relpos checkpoint)", True),
)


#: ``lgtc discharge ... --out DIR`` summaries (``DIR/discharge.json``) of the discharge
#: studies in TRAINING.md "Figs. 5/6": the study, its label.
DISCHARGE = f"{SRC}/lgtc_policy/results/discharge"
_DISCHARGE_RUNS = (
    ("ros_default_alone", "shipped checkpoint, over ROS, --victim alone"),
    ("core_default_alone", "shipped checkpoint, core, --victim alone"),
    ("core_default_config", "shipped checkpoint, core, --victim config (cf3)"),
    ("core_relpos_alone", "relpos checkpoint, core, --victim alone"),
    ("core_relpos_config", "relpos checkpoint, core, --victim config (cf3)"),
    ("core_bc_relpos_alone", "relpos BC stage (not shipped), core, --victim alone"),
    ("core_expert_alone", "centralized expert (eq. 3), core, --victim alone"),
)


def _discharge_rows(runs=_DISCHARGE_RUNS) -> tuple[Row, ...]:
    rows = []
    for run, label in runs:
        goal = ">= 9" if run.startswith("ros_") else ""
        rows += [
            Row(run, "successes", f"{label}: re-covered within 40 s, of 10", "", "d", goal),
            Row(run, "successes_from_subteam", f"{label}: of which from another subteam",
                "", "d"),
            Row(run, "abandoned", f"{label}: runs that left a consumer uncovered", "", "d"),
        ]  # fmt: skip
    return tuple(rows)


def _scratch_rows(runs=_SCRATCH_RUNS) -> tuple[Row, ...]:
    rows = []
    for run, label, cell in runs:
        rows += [
            Row(run, "ratio_to_expert_filter_none", f"{label}: ratio to the expert, alone",
                "", ".3f", ">= 0.75"),
            Row(run, "ratio_to_expert_filter_cbf", f"{label}: ratio to the expert, CBF",
                "", ".3f", ">= 0.95"),
            Row(run, "collisions_per_episode_filter_none", f"{label}: collisions / episode, alone",
                "", ".2f"),
            Row(run, "reward_cluster_ratio", f"{label}: reward clusters (Fig. 2)", "", ".3f"),
        ]  # fmt: skip
        if cell:
            rows += [
                Row(run, "cluster_spread_ratio", f"{label}: state clusters (Def. III.1)",
                    "", ".3f", "<= 0.2"),
                Row(run, "tau_min", f"{label}: smallest leak tau", "1/s", ".3g"),
                Row(run, "coupling", f"{label}: coupling, max row sum of AᵀA", "1/s", ".3g"),
            ]  # fmt: skip
    return tuple(rows)


TABLES += (
    Table(
        "lgtc_relpos",
        f"{SRC}/lgtc_policy/TRAINING.md",
        _scratch_rows(_RELPOS_RUNS),
        sources=tuple((run, f"{RELPOS}/{run}.json") for run, _, _ in _RELPOS_RUNS),
    ),
    Table(
        "lgtc_discharge",
        f"{SRC}/lgtc_policy/TRAINING.md",
        _discharge_rows(),
        sources=tuple((run, f"{DISCHARGE}/{run}.json") for run, _ in _DISCHARGE_RUNS),
    ),
    Table(
        "lgtc_scratch",
        f"{SRC}/lgtc_policy/TRAINING.md",
        _scratch_rows(),
        sources=tuple((run, f"{SCRATCH}/{run}.json") for run, _, _ in _SCRATCH_RUNS),
    ),
)

# ---------------------------------------------------------------------------- rendering


def format_value(value: object, fmt: str) -> str:
    """One cell: numbers through ``fmt``, booleans and text as they are."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value).replace("|", "\\|")  # a pipe would end the markdown cell
    if fmt == "d":
        return str(round(value))
    return format(value, fmt)


def source_path(table: Table, bench: str, bench_dir: Path, root: Path) -> Path:
    """The JSON a row of ``bench`` is read from."""
    override = dict(table.sources).get(bench)
    return root / override if override else bench_dir / f"{bench}.json"


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def load_data(table: Table, bench_dir: Path, root: Path) -> tuple[dict[str, dict], list[str]]:
    """Every JSON the table needs, by bench name, and the problems (missing file or key)."""
    data: dict[str, dict] = {}
    problems: list[str] = []
    for bench in dict.fromkeys(row.bench for row in table.rows):
        path = source_path(table, bench, bench_dir, root)
        shown = _display(path, root)
        try:
            data[bench] = json.loads(path.read_text())
        except FileNotFoundError:
            problems.append(
                f"{shown} is missing (run `python benchmarks/{bench}.py --json {shown}`)"
            )
        except json.JSONDecodeError as exc:
            problems.append(f"{shown} is not JSON ({exc})")
    for row in table.rows:
        if row.bench in data and row.key not in data[row.bench]:
            shown = _display(source_path(table, row.bench, bench_dir, root), root)
            problems.append(f"{shown} has no key {row.key!r}")
    return data, problems


def render_table(table: Table, data: dict[str, dict], bench_dir: Path, root: Path) -> str:
    """The markdown of one block (without the marker lines)."""
    lines = ["| measure | key | goal | value | unit |", "|---|---|---|---|---|"]
    for row in table.rows:
        value = format_value(data[row.bench][row.key], row.fmt)
        lines.append(
            f"| {row.label} | `{row.bench}: {row.key}` | {row.goal} | {value} | {row.unit} |"
        )
    sources = []
    for bench in dict.fromkeys(row.bench for row in table.rows):
        shown = f"`{_display(source_path(table, bench, bench_dir, root), root)}`"
        sources.append(shown + (" (a `--quick` run)" if data[bench].get("quick") else ""))
    lines += [
        "",
        f"Generated by `make tables` (`python benchmarks/tables.py`) from {', '.join(sources)}.",
    ]
    return "\n".join(lines)


def _markers(name: str) -> re.Pattern[str]:
    begin, end = re.escape(f"<!-- bench:{name} begin -->"), re.escape(f"<!-- bench:{name} end -->")
    return re.compile(f"({begin})\n?(.*?)\n?({end})", re.DOTALL)


def replace_block(text: str, name: str, body: str) -> str | None:
    """``text`` with the block ``name`` holding ``body``; None when the markers are absent."""
    pattern = _markers(name)
    if not pattern.search(text):
        return None
    return pattern.sub(lambda m: f"{m.group(1)}\n{body}\n{m.group(3)}", text, count=1)


# ---------------------------------------------------------------------------- the command


def update(
    tables: tuple[Table, ...], bench_dir: Path, root: Path, check: bool
) -> tuple[list[str], list[str]]:
    """Rewrite (or with ``check`` only compare) every block; returns (changed, notes)."""
    changed: list[str] = []
    notes: list[str] = []
    for table in tables:
        readme = root / table.readme
        data, problems = load_data(table, bench_dir, root)
        if problems:
            notes += [f"bench:{table.name}: left as is: {p}" for p in problems]
            continue
        if not readme.exists():
            notes.append(f"bench:{table.name}: {readme} does not exist")
            continue
        text = readme.read_text()
        new = replace_block(text, table.name, render_table(table, data, bench_dir, root))
        if new is None:
            notes.append(
                f"bench:{table.name}: no block in {table.readme}: add the lines "
                f"'<!-- bench:{table.name} begin -->' and '<!-- bench:{table.name} end -->'"
            )
            continue
        if new != text:
            changed.append(f"{table.readme} (bench:{table.name})")
            if not check:
                readme.write_text(new)
    return changed, notes


def main(argv: list[str] | None = None, tables: tuple[Table, ...] = TABLES, root: Path = ROOT):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench-dir", type=Path, default=None, help="default: runs/bench")
    ap.add_argument("--check", action="store_true", help="exit 1 if a block would change")
    ap.add_argument("--only", nargs="+", metavar="TABLE", help="these tables only")
    args = ap.parse_args(argv)
    bench_dir = args.bench_dir if args.bench_dir is not None else root / "runs" / "bench"
    if args.only:
        unknown = set(args.only) - {t.name for t in tables}
        if unknown:
            ap.error(f"unknown table(s) {sorted(unknown)}; known: {[t.name for t in tables]}")
        tables = tuple(t for t in tables if t.name in args.only)
    changed, notes = update(tables, bench_dir, root, args.check)
    for note in notes:
        print(note, file=sys.stderr)
    verb = "out of date" if args.check else "rewritten"
    for name in changed:
        print(f"{verb}: {name}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
