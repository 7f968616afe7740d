"""Experiment grid of Section 4.1 / Appendix B, run serially or on Ray, written to CSV.

A *job* is one (grid size, instance, ratio, k, run) for the distributed algorithms (DMAR, BP,
DMAR-GCI, BP-GCI share the job so the paired comparison uses the same instance and seed), or one
(grid size, instance, ratio) for the centralized references (k- and run-independent).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dmar_agent.baselines import central_greedy, central_rollout, ortools_reference
from dmar_agent.errors import ConfigError, DmarError
from dmar_agent.protocols import DmarConfig, run_dmar
from dmar_agent.world import (
    RATIOS,
    Instance,
    agent_task_counts,
    grid_diameter,
    instance_on_map,
    load_movingai_map,
    make_instance,
)

DIST_ALGOS = {
    "dmar": ("rollout", False),
    "bp": ("base", False),
    "dmar_gci": ("rollout", True),
    "bp_gci": ("base", True),
}
CENTRAL_ALGOS = ("central_rollout", "central_greedy", "ortools")
MAX_AGENT_CELLS = 64_000_000
"""Bound on agents x grid cells: every agent keeps a map as bitmaps of the whole grid (Appendix D
item 8 with simulator cell indices), so memory grows with their product; 400 agents on a
400 x 400 grid are at the bound."""
ALL_ALGOS = tuple(DIST_ALGOS) + CENTRAL_ALGOS
MAX_JOBS = 1_000_000
"""Bound on the jobs of one sweep, checked before the job list is built (the paper's full grid
is 19,200 jobs; ``--instances 100000000`` would otherwise build Job objects until memory ran
out)."""

COLUMNS = [
    "n", "map", "instance", "ratio", "agents", "tasks", "k", "run", "algo", "cost",
    "exploration_moves", "waits", "ps_steps", "iterations", "clusters", "plan_wall_s", "wall_s",
    "compute", "tasks_left", "completed",
]  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One unit of work (see module docstring)."""

    n: int
    instance: int
    ratio: str
    k: int
    run: int
    algos: tuple
    map_path: str = ""
    n_agents: int | None = None
    explore: str = "walk"
    psi: int = 3
    ortools_s: float = 5.0
    max_iterations: int = 20000
    time_limit_s: float | None = None


def check_size(n_agents: int, n_cells: int, what: str) -> None:
    """Refuse instances whose per-agent maps would need more than ``MAX_AGENT_CELLS`` cells."""
    if n_agents * n_cells > MAX_AGENT_CELLS:
        most = MAX_AGENT_CELLS // n_cells
        fix = f"or at most {most} agents (--agents {most})" if most else "(no agent count fits)"
        raise ConfigError(
            f"{what}: {n_agents} agents x {n_cells} cells is above the limit of "
            f"{MAX_AGENT_CELLS:,} (every agent keeps a map of the whole grid); use a smaller grid "
            + fix
        )


def build_instance(job: Job) -> Instance:
    """The seeded instance of a job (random grid, or a MovingAI map with seeded placement).

    Without ``n_agents`` a map gets one agent per column (its width), a random n x n grid n
    agents (Section 4.1); an explicit ``n_agents`` < 1 is refused in both cases.
    """
    if job.map_path:
        grid = load_movingai_map(job.map_path)
        m = grid.width if job.n_agents is None else job.n_agents
        agent_task_counts(grid.width, job.ratio, m)
        check_size(m, grid.n_cells, f"map {Path(job.map_path).name}")
        return instance_on_map(grid, m, job.ratio, job.instance)
    m, _ = agent_task_counts(job.n, job.ratio, job.n_agents)
    check_size(m, job.n * job.n, f"grid {job.n}x{job.n}")
    return make_instance(job.n, job.ratio, job.instance, job.n_agents)


def run_job(job: Job) -> list[dict]:
    """Run every algorithm of a job; returns one CSV row per algorithm."""
    inst = build_instance(job)
    base = {
        "n": inst.grid.width if job.map_path else job.n,
        "width": inst.grid.width,
        "height": inst.grid.height,
        "map": Path(job.map_path).name if job.map_path else "random",
        "instance": job.instance,
        "ratio": job.ratio,
        "agents": len(inst.agents),
        "tasks": len(inst.tasks),
        "k": job.k,
        "k_view": min(job.k, grid_diameter(inst.grid)),
        "run": job.run,
    }
    rows = []
    for algo in job.algos:
        if algo in DIST_ALGOS:
            policy, gci = DIST_ALGOS[algo]
            cfg = DmarConfig(
                k=job.k, psi=job.psi, policy=policy, gci=gci, explore=job.explore,
                seed=job.run * 1000003 + job.instance, max_iterations=job.max_iterations,
                time_limit_s=job.time_limit_s,
            )  # fmt: skip
            res = run_dmar(inst, cfg).as_dict()
        else:
            if algo == "central_rollout":
                c = central_rollout(inst)
            elif algo == "central_greedy":
                c = central_greedy(inst)
            elif algo == "ortools":
                c = ortools_reference(inst, job.ortools_s)
            else:
                raise ConfigError(f"algo={algo!r} must be one of {', '.join(ALL_ALGOS)}")
            res = {
                "cost": c.cost, "exploration_moves": 0, "waits": 0, "ps_steps": 0,
                "iterations": 0, "clusters": 0, "plan_wall_s": c.wall_s, "wall_s": c.wall_s,
                "compute": c.compute, "tasks_left": 0, "completed": True, "stop_reason": "",
            }  # fmt: skip
        rows.append({**base, "algo": algo, **res})
    return rows


@dataclass
class SweepSpec:
    """The experiment grid (defaults: the paper's, Section 4.1).

    Attributes:
        sizes: grid sizes n (n x n grids, n agents); with ``map_path`` the map's own size.
        ks: view radii.
        ratios: agent-to-task ratios.
        instances: random topologies per size.
        runs: independent runs per instance (exploration is random).
        algos: distributed algorithms (dmar, bp, dmar_gci, bp_gci).
        central: centralized references run once per (size, instance, ratio).
        map_path: MovingAI map to use instead of random grids ('' = random grids).
        n_agents: agents per instance (None: n on an n x n grid, one per column on a map).
        explore: exploration mode, "walk" or "waypoint".
        ortools_s: OR-Tools time limit per instance [s].
        max_iterations: DMAR iterations after which a run stops incomplete.
        time_limit_s: wall time [s] after which a run stops incomplete (None: no limit).
    """

    sizes: list = field(default_factory=lambda: [10, 20, 30, 40, 50, 60, 70, 80])
    ks: list = field(default_factory=lambda: list(range(2, 17, 2)))
    ratios: list = field(default_factory=lambda: ["1:2", "1:1", "2:1"])
    instances: int = 10
    runs: int = 10
    algos: list = field(default_factory=lambda: ["dmar", "bp", "dmar_gci", "bp_gci"])
    central: list = field(default_factory=list)
    map_path: str = ""
    explore: str = "walk"
    ortools_s: float = 5.0
    max_iterations: int = 20000
    time_limit_s: float | None = None
    n_agents: int | None = None

    def validate(self) -> None:
        """Refuse the whole grid up front, before any job runs: a bad size or map must not
        surface as a worker's traceback hours into a sweep."""
        for r in self.ratios:
            if r not in RATIOS:
                raise ConfigError(f"ratio {r!r} must be one of {sorted(RATIOS)}")
        for a in self.algos:
            if a not in DIST_ALGOS:
                raise ConfigError(f"--algos entry {a!r} must be one of {', '.join(DIST_ALGOS)}")
        for a in self.central:
            if a not in CENTRAL_ALGOS:
                raise ConfigError(
                    f"--central entry {a!r} must be one of {', '.join(CENTRAL_ALGOS)}"
                )
        if any(int(n) < 2 for n in self.sizes):
            raise ConfigError("--sizes entries must be >= 2")
        if self.n_agents is not None and self.n_agents < 1:
            raise ConfigError(f"--agents: {self.n_agents} is below 1; give >= 1 or leave it out")
        if any(int(k) < 1 for k in self.ks):
            raise ConfigError("--ks entries must be >= 1")
        if self.instances < 1 or self.runs < 1:
            raise ConfigError("--instances and --runs must be >= 1")
        per_cell = (len(self.ks) * self.runs if self.algos else 0) + (1 if self.central else 0)
        n_jobs = len(self.grid_sizes()) * self.instances * len(self.ratios) * per_cell
        if n_jobs > MAX_JOBS:
            raise ConfigError(
                f"--sizes x --instances x --ratios x (--ks x --runs): {n_jobs:,} jobs is above "
                f"the limit of {MAX_JOBS:,}; sweep fewer sizes, k values, instances or runs"
            )
        if n_jobs == 0:
            raise ConfigError(
                "--ratios, --algos, --central: nothing to run; name at least one ratio and one "
                "algorithm (--algos or --central)"
            )
        if self.map_path:
            grid = load_movingai_map(self.map_path)
            # (n, cells, free cells, what): the map's placement, whatever the size
            shapes = [(grid.width, grid.n_cells, int(grid.free.sum()),
                       f"--map {Path(self.map_path).name}")]  # fmt: skip
        else:
            shapes = [(int(n), int(n) * int(n), int(n) * int(n) - round(0.2 * int(n) * int(n)),
                       f"--sizes entry {n}") for n in self.sizes]  # fmt: skip
        for n, cells, free, what in shapes:
            for ratio in self.ratios:
                m, t = agent_task_counts(n, ratio, self.n_agents)
                check_size(m, cells, what)
                if m + t > free:
                    raise ConfigError(
                        f"{what}: {m} agents + {t} tasks (ratio {ratio}) need distinct free "
                        f"cells but the grid has {free}; use a larger grid or fewer agents "
                        "(--agents)"
                    )

    def grid_sizes(self) -> list:
        """The sizes swept: ``sizes`` on random grids; one on a map, whose own size is used (a
        job on a map ignores n, so each further size would repeat the same jobs)."""
        return list(self.sizes[:1]) if self.map_path else list(self.sizes)

    def jobs(self) -> list[Job]:
        self.validate()
        out = []
        for n in self.grid_sizes():
            for i in range(self.instances):
                for ratio in self.ratios:
                    if self.central:
                        out.append(
                            Job(n, i, ratio, 0, 0, tuple(self.central), self.map_path,
                                self.n_agents, explore=self.explore, ortools_s=self.ortools_s)
                        )  # fmt: skip
                    if not self.algos:
                        continue
                    for k in self.ks:
                        for run in range(self.runs):
                            out.append(
                                Job(n, i, ratio, k, run, tuple(self.algos), self.map_path,
                                    self.n_agents, explore=self.explore,
                                    max_iterations=self.max_iterations,
                                    time_limit_s=self.time_limit_s)
                            )  # fmt: skip
        # big jobs first: better load balance on Ray
        out.sort(key=lambda j: (-j.n * j.n * max(j.k, 1), j.instance, j.ratio, j.k, j.run))
        return out


def _write(rows: Iterable[dict], fh, writer: csv.DictWriter) -> None:
    for r in rows:
        writer.writerow({c: r[c] for c in COLUMNS})
    fh.flush()


def run_sweep(
    spec: SweepSpec,
    out_csv: str | Path,
    use_ray: bool = True,
    address: str | None = None,
    num_cpus: int = 2,
    progress: bool = True,
    on_rows: Callable[[list[dict]], None] | None = None,
) -> int:
    """Run all jobs, appending rows to ``out_csv`` as they finish; returns the number of rows."""
    jobs = spec.jobs()
    out = Path(out_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_rows = 0
    from tqdm import tqdm

    with out.open("w", newline="") as fh:
        # the bar starts once the CSV is open: a bad --out is one error line, no bar before it
        bar = tqdm(total=len(jobs), disable=not progress, unit="job", desc="dmar sweep")
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        if not use_ray:
            for job in jobs:
                rows = run_job(job)
                _write(rows, fh, writer)
                n_rows += len(rows)
                if on_rows:
                    on_rows(rows)
                bar.update(1)
        else:
            import ray

            if address:
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True,
                    log_to_driver=False,
                )  # fmt: skip
            remote = ray.remote(num_cpus=1)(run_job)
            try:
                pending = [remote.remote(j) for j in jobs]
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    try:
                        rows = ray.get(done[0])
                    except ray.exceptions.RayTaskError as exc:
                        # a job's own error (one line naming the field), not the worker's
                        # traceback that Ray's wrapper prints
                        if isinstance(exc.cause, DmarError):
                            raise exc.cause from None
                        raise
                    _write(rows, fh, writer)
                    n_rows += len(rows)
                    if on_rows:
                        on_rows(rows)
                    bar.update(1)
            finally:
                ray.shutdown()
    bar.close()
    return n_rows


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a sweep CSV with numeric fields converted."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"CSV {str(p)!r} does not exist; run `dmar sweep --out {p}` first")
    ints = {"n", "instance", "agents", "tasks", "k", "run", "cost", "exploration_moves", "waits"}
    ints |= {"ps_steps", "iterations", "clusters", "compute", "tasks_left"}
    out = []
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"CSV {str(p)!r} misses columns {missing}; is it a dmar sweep CSV?")
        for line, r in enumerate(reader, start=2):
            row = dict(r)
            try:
                for c in ints:
                    row[c] = int(row[c])
                row["plan_wall_s"] = float(row["plan_wall_s"])
                row["wall_s"] = float(row["wall_s"])
            except (TypeError, ValueError):
                msg = f"CSV {str(p)!r} line {line}: a numeric field is malformed"
                raise ConfigError(msg) from None
            row["completed"] = row["completed"] in ("True", "true", "1")
            out.append(row)
    if not out:
        raise ConfigError(f"CSV {str(p)!r} has no result rows")
    return out
