"""The paper's Fig. 2(i): DMAR vs BP in continuous space (Section 4, Appendix C).

Thirty random 2 m x 2 m environments (9 x 9 cells of 0.2 m, :mod:`dmar_agent.mission.continuous`),
ten runs each, seven agents, psi = 2, sensing radius k = 20, 40, 60, 80 cm and infinity (k in cells
= radius / 0.2 m; infinity = the grid's diameter, 16 cells), DMAR (rollout) and BP (base policy).

Environments: the paper's random class of Section 4.1 (:func:`dmar_agent.world.make_instance`:
20 % obstacle cells, the free cells connected) on a 9 x 9 grid. The paper says only "a varying
number of tasks", so environment ``e`` uses the agent:task ratios of Section 4.1 in turn,
``("1:2", "1:1", "2:1")[e % 3]``: 14, 7 or 4 tasks for 7 agents. Run ``r`` of environment ``e``
has seed ``100 e + r`` for both algorithms (exploration is random).

Results go to a CSV, one row per (environment, run, k, algorithm), appended as runs finish, so a
stopped sweep resumes where it stopped (done rows are skipped).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmar_agent.errors import ConfigError
from dmar_agent.mission.continuous import ContinuousConfig, ContinuousResult, run_continuous
from dmar_agent.protocols import DmarConfig
from dmar_agent.world import grid_diameter, make_instance

GRID = 9
AGENTS = 7
PSI = 2
RATIOS = ("1:2", "1:1", "2:1")
RADII_CM = (20, 40, 60, 80, math.inf)
POLICIES = {"DMAR": "rollout", "BP": "base"}
MAX_ITERATIONS = 500
KEY = ("env", "run", "k_cm", "algo")
FIELDS = [
    *KEY,
    "k",
    "ratio",
    "n_tasks",
    "seed",
    *(f for f in ContinuousResult.__dataclass_fields__ if f != "cost_at_completion"),
]
#: Columns :func:`summary` reads: the row's key and these numbers.
NUMBERS = ("cost", "clusters", "min_separation", "wall_s")
#: Environments and runs per environment of one sweep (run ``r`` of environment ``e`` has
#: seed ``100 e + r``, so more than 100 runs would repeat the next environment's seeds).
MAX_ENVS, MAX_RUNS = 1000, 100
#: The README lines between which ``dmar fig2i readme`` writes the table.
README_MARKERS = ("<!-- fig2i-table -->", "<!-- /fig2i-table -->")


@dataclass(frozen=True)
class Fig2iJob:
    """One run of the sweep: environment, run, sensing radius [cm] (inf allowed), algorithm."""

    env: int
    run: int
    k_cm: float
    algo: str

    @property
    def key(self) -> tuple:
        return (self.env, self.run, _k_label(self.k_cm), self.algo)


def _k_label(k_cm: float) -> str:
    return "inf" if math.isinf(float(k_cm)) else str(int(k_cm))


def k_cells(k_cm: float, cell_size: float = 0.2) -> int:
    """Sensing radius in cells: radius / cell size; infinity: the grid's diameter."""
    if math.isinf(float(k_cm)):
        return 2 * GRID - 2
    return max(1, round(float(k_cm) / 100.0 / cell_size))


def run_fig2i_job(job: Fig2iJob) -> dict:
    """Run one job in continuous space and return its CSV row."""
    ratio = RATIOS[job.env % len(RATIOS)]
    inst = make_instance(GRID, ratio, job.env, n_agents=AGENTS)
    k = min(k_cells(job.k_cm), grid_diameter(inst.grid))
    seed = 100 * job.env + job.run
    cfg = DmarConfig(
        k=k, psi=PSI, policy=POLICIES[job.algo], seed=seed, max_iterations=MAX_ITERATIONS
    )
    res = run_continuous(inst, cfg, ContinuousConfig())
    row = dict(zip(KEY, job.key))
    row.update(k=k, ratio=ratio, n_tasks=len(inst.tasks), seed=seed, **res.as_dict())
    return row


def jobs(envs: int = 30, runs: int = 10, radii: Iterable[float] = RADII_CM) -> list[Fig2iJob]:
    """Every job of the sweep, environment-major (a partial sweep holds whole environments)."""
    return [
        Fig2iJob(e, r, k, a)
        for e in range(envs)
        for r in range(runs)
        for k in radii
        for a in POLICIES
    ]


def read_rows(path: Path) -> list[dict]:
    """Rows of a sweep CSV (numbers parsed), [] if the file does not exist or is empty.

    Raises :class:`ConfigError` naming the file and the fix when it is not a sweep CSV: the
    key columns or :data:`NUMBERS` missing, a row whose key or numbers do not parse, a line
    the csv module cannot read (a field beyond its limit, a NUL byte).
    """
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            header = reader.fieldnames or []
            missing = [c for c in (*KEY, *NUMBERS, "completed") if c not in header]
            if header and missing:
                raise ConfigError(
                    f"{path}: not a fig2i sweep CSV: no column {', '.join(missing)} (it has "
                    f"{', '.join(header[:6])}{', ...' if len(header) > 6 else ''}); give the "
                    "CSV `dmar fig2i run` writes"
                )
            for row in reader:
                out.append(_row(path, reader.line_num, row))
        except csv.Error as e:
            raise ConfigError(f"{path} line {reader.line_num}: not a readable CSV ({e})") from None
    return out


def _row(path: Path, line: int, row: dict) -> dict:
    """One parsed row; its key and :data:`NUMBERS` must be numbers (``k_cm`` may be inf)."""
    rec = {k: _parse(v) for k, v in row.items() if k is not None}
    for col in ("env", "run", "k_cm", *NUMBERS):
        v = rec.get(col)
        number = isinstance(v, int | float) and not isinstance(v, bool)
        if not (number or (col == "k_cm" and v == "inf")):
            raise ConfigError(
                f"{path} line {line}: {col} is {v!r}, not a number; rerun that job (delete "
                "the line, then `dmar fig2i run` adds it again)"
            )
    return rec


def _parse(v: str | None):
    if v is None:  # a short row
        return None
    if v in ("True", "False"):
        return v == "True"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _check_header(path: Path) -> None:
    """A CSV ``run`` appends to must have :data:`FIELDS` as its header (rows of another
    layout would land under the wrong columns)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, newline="") as fh:
        header = next(csv.reader(fh), [])
    if header != FIELDS:
        raise ConfigError(
            f"--csv {path}: its columns are not those `dmar fig2i run` writes "
            f"({', '.join(header[:4])}{', ...' if len(header) > 4 else ''}); give a new "
            "--csv or the one an earlier run wrote"
        )


def run_fig2i(path: Path, todo: list[Fig2iJob], workers: int = 2) -> int:
    """Run the jobs not yet in the CSV at ``path`` on ``workers`` processes, appending each row
    as it finishes. Returns the number of rows written."""
    path = Path(path)
    _check_header(path)
    done = {(r["env"], r["run"], str(r["k_cm"]), r["algo"]) for r in read_rows(path)}
    left = [j for j in todo if (j.env, j.run, _k_label(j.k_cm), j.algo) not in done]
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    written = 0
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(run_fig2i_job, j) for j in left]
            for fut in as_completed(futures):
                w.writerow(fut.result())
                fh.flush()
                os.fsync(fh.fileno())
                written += 1
    return written


def _mean_ci(xs: list[float]) -> tuple[float, float]:
    """Mean and half-width of its normal 95 % confidence interval."""
    a = np.asarray(xs, dtype=float)
    if a.size < 2:
        return float(a.mean()) if a.size else math.nan, math.nan
    return float(a.mean()), float(1.96 * a.std(ddof=1) / math.sqrt(a.size))


def summary(rows: list[dict]) -> list[dict]:
    """Per sensing radius: mean cost and clusters of DMAR and BP with 95 % CIs, and the ratio
    of the BP mean cost to the DMAR mean cost, over the (environment, run) pairs that both ran."""
    out = []
    for kc in [_k_label(k) for k in RADII_CM]:
        by = {
            a: {(r["env"], r["run"]): r for r in rows if str(r["k_cm"]) == kc and r["algo"] == a}
            for a in POLICIES
        }
        both = sorted(set(by["DMAR"]) & set(by["BP"]))
        if not both:
            continue
        rec = {"k_cm": kc, "n": len(both), "envs": len({e for e, _ in both})}
        for a in POLICIES:
            sel = [by[a][p] for p in both]
            rec[f"{a}_cost"], rec[f"{a}_cost_ci"] = _mean_ci([r["cost"] for r in sel])
            rec[f"{a}_clusters"], rec[f"{a}_clusters_ci"] = _mean_ci([r["clusters"] for r in sel])
            rec[f"{a}_completed"] = float(np.mean([bool(r["completed"]) for r in sel]))
            rec[f"{a}_min_sep"] = float(min(r["min_separation"] for r in sel))
            rec[f"{a}_wall_s"] = float(np.mean([r["wall_s"] for r in sel]))
        rec["cost_ratio_bp_vs_dmar"] = rec["BP_cost"] / rec["DMAR_cost"]
        out.append(rec)
    return out


def markdown_table(summ: list[dict]) -> str:
    """The README table of :func:`summary`."""
    lines = [
        "| k | runs (envs) | DMAR cost | BP cost | BP / DMAR | DMAR clusters | BP clusters "
        "| completed (DMAR / BP) | min separation [m] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summ:
        k = "∞" if s["k_cm"] == "inf" else f"{s['k_cm']} cm"
        lines.append(
            f"| {k} | {s['n']} ({s['envs']}) "
            f"| {s['DMAR_cost']:.1f} ± {s['DMAR_cost_ci']:.1f} "
            f"| {s['BP_cost']:.1f} ± {s['BP_cost_ci']:.1f} "
            f"| {s['cost_ratio_bp_vs_dmar']:.2f} "
            f"| {s['DMAR_clusters']:.2f} ± {s['DMAR_clusters_ci']:.2f} "
            f"| {s['BP_clusters']:.2f} ± {s['BP_clusters_ci']:.2f} "
            f"| {s['DMAR_completed']:.0%} / {s['BP_completed']:.0%} "
            f"| {min(s['DMAR_min_sep'], s['BP_min_sep']):.3f} |"
        )
    return "\n".join(lines)


def plot(summ: list[dict], path: Path) -> Path:
    """Fig. 2(i): mean cost and mean clusters vs k, DMAR (blue) vs BP (red), 95 % CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["∞" if s["k_cm"] == "inf" else s["k_cm"] for s in summ]
    x = np.arange(len(summ))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, what, title in (
        (axes[0], "cost", "mean cost (moves)"),
        (axes[1], "clusters", "mean clusters"),
    ):
        for algo, color in (("DMAR", "tab:blue"), ("BP", "tab:red")):
            m = np.array([s[f"{algo}_{what}"] for s in summ])
            ci = np.array([s[f"{algo}_{what}_ci"] for s in summ])
            ax.plot(x, m, "o-", color=color, label=algo)
            ax.fill_between(x, m - ci, m + ci, color=color, alpha=0.2)
        ax.set_xticks(x, labels)
        ax.set_xlabel("sensing radius k [cm]")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    n = summ[0]["n"] if summ else 0
    fig.suptitle(f"Continuous space, 9 x 9 cells of 0.2 m, 7 agents, psi = 2 ({n} runs per k)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ====================================================================== command line
RESULTS = Path(__file__).resolve().parents[2] / "results"


def add_arguments(p) -> None:
    """Flags of ``dmar fig2i`` (an argparse parser)."""
    from sim_bridge.cli import bounded_int

    p.add_argument(
        "action",
        choices=["run", "table", "figure", "readme"],
        help="run the sweep; print the table / draw the figure / write the table into the README",
    )
    p.add_argument("--readme", default=str(RESULTS.parent / "README.md"), help="README to update")
    p.add_argument("--csv", default=str(RESULTS / "fig2i_continuous.csv"), help="sweep CSV")
    p.add_argument("--out", default=str(RESULTS / "fig2i_continuous.png"), help="figure path")
    p.add_argument(
        "--envs",
        type=bounded_int(1, MAX_ENVS),
        default=30,
        help="random environments (paper: 30)",
    )
    p.add_argument(
        "--runs",
        type=bounded_int(1, MAX_RUNS),
        default=10,
        help=f"runs per environment (paper: 10; at most {MAX_RUNS}: seed 100 env + run)",
    )
    p.add_argument("--workers", type=bounded_int(1, 256), default=2, help="worker processes")


def main(args) -> int:
    """``dmar fig2i run|table|figure|readme`` (parsed ``args`` of :func:`add_arguments`)."""
    if args.action == "run":
        n = run_fig2i(Path(args.csv), jobs(args.envs, args.runs), args.workers)
        print(f"wrote {n} rows to {args.csv}")
    rows = read_rows(Path(args.csv))
    if not rows:
        state = "does not exist" if not Path(args.csv).exists() else "has no rows"
        raise ConfigError(
            f"--csv {args.csv} {state}; run `dmar fig2i run --csv {args.csv}` first (or give "
            "the CSV it wrote)"
        )
    if args.action == "figure":
        _check_figure_path(Path(args.out))
    summ = summary(rows)
    if args.action == "figure":
        print(f"wrote {plot(summ, Path(args.out))}")
    if args.action == "readme":
        write_readme_table(Path(args.readme), summ)
        print(f"updated {args.readme}")
    print(markdown_table(summ))
    return 0


def _check_figure_path(out: Path) -> None:
    """``--out`` must name an image file matplotlib writes (a folder or a name without a
    suffix was saved as ``<name>.png`` beside it, an unknown suffix was a traceback)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    if out.is_dir() or out.suffix.lower().lstrip(".") not in kinds:
        what = (
            "is a folder"
            if out.is_dir()
            else f"ends {out.suffix!r}, not an image type matplotlib writes"
            if out.suffix
            else "has no suffix"
        )
        raise ConfigError(
            f"--out {out} {what}; give a file name ending .png (or .{', .'.join(sorted(kinds))})"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--out {out}: its folder cannot be made ({exc.strerror or exc}); give a path "
            "under a folder"
        ) from None


def write_readme_table(readme: Path, summ: list[dict]) -> None:
    """Replace the text between the README's :data:`README_MARKERS` lines by the table;
    raises :class:`ConfigError` naming a missing (or misplaced) marker and how to add it."""
    text = readme.read_text()
    head, tail = README_MARKERS
    a, b = text.find(head + "\n"), text.find(tail)
    if a < 0 or b < 0 or b < a:
        what = (
            f"no line {head!r}"
            if a < 0
            else f"no line {tail!r}"
            if b < 0
            else f"{tail!r} comes before {head!r}"
        )
        raise ConfigError(
            f"--readme {readme}: {what}; add the two lines {head} and {tail} (in this order) "
            "where the table goes"
        )
    a += len(head) + 1
    readme.write_text(text[:a] + markdown_table(summ) + "\n" + text[b:])
