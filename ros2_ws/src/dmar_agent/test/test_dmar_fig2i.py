"""Fig. 2(i) sweep in continuous space: jobs, resumable CSV, summary and table."""

import math

import numpy as np
from dmar_agent.mission.configs import instance_config
from dmar_agent.mission.fig2i import (
    AGENTS,
    FIELDS,
    GRID,
    RATIOS,
    Fig2iJob,
    jobs,
    k_cells,
    markdown_table,
    read_rows,
    run_fig2i,
    summary,
    write_readme_table,
)
from dmar_agent.mission.scenario import core_instance
from dmar_agent.world import make_instance
from sim_bridge.config import load_config


def test_radii_in_cells_and_job_grid():
    assert [k_cells(k) for k in (20, 40, 60, 80, math.inf)] == [1, 2, 3, 4, 16]
    assert len(jobs(30, 10)) == 30 * 10 * 5 * 2


def test_resumable_csv_summary_and_readme(tmp_path):
    path = tmp_path / "f.csv"
    todo = [Fig2iJob(2, 0, math.inf, "DMAR"), Fig2iJob(2, 0, math.inf, "BP")]
    assert run_fig2i(path, todo, workers=1) == 2
    assert run_fig2i(path, todo, workers=1) == 0  # done rows are skipped
    rows = read_rows(path)
    assert len(rows) == 2 and set(rows[0]) == set(FIELDS)
    assert all(r["completed"] and r["n_tasks"] == 4 and r["k"] == 16 for r in rows)
    (s,) = summary(rows)
    assert s["k_cm"] == "inf" and s["n"] == 1
    by = {r["algo"]: r for r in rows}
    assert s["cost_ratio_bp_vs_dmar"] == by["BP"]["cost"] / by["DMAR"]["cost"]
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- fig2i-table -->\nold\n<!-- /fig2i-table -->\nb\n")
    write_readme_table(readme, [s])
    text = readme.read_text()
    assert "old" not in text and markdown_table([s]) in text and text.endswith("b\n")


def test_instance_config_round_trip(tmp_path):
    """A Fig. 2(i) environment written as a swarm file reads back as the same core instance
    (grid, start cells in robot order, tasks in order, k, psi, seed): the ROS subset of the
    sweep flies exactly the core's environment."""
    for env in range(4):
        inst = make_instance(GRID, RATIOS[env % 3], env, n_agents=AGENTS)
        path = instance_config(tmp_path / f"e{env}.yaml", inst, k=3, psi=2, seed=100 * env + 1)
        back, cfg = core_instance(load_config(path))
        assert np.array_equal(back.grid.free, inst.grid.free)
        assert np.array_equal(back.agents, inst.agents)
        assert np.array_equal(back.tasks, inst.tasks)
        assert (cfg.k, cfg.psi, cfg.seed) == (3, 2, 100 * env + 1)
