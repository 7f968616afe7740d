"""Fig. 2(i) sweep in continuous space: jobs, resumable CSV, summary and table."""

import math

import numpy as np
import pytest
from dmar_agent.cli import main
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


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("x,y\n1,2\n", "not a fig2i sweep CSV: no column env, run, k_cm, algo, cost"),  # KeyError
        (",".join(FIELDS) + "\n" + ",".join(["1"] * 8 + ["abc"]) + "\n", "line 2: cost is 'abc'"),
        ("env,run,k_cm,algo,cost,clusters,min_separation,wall_s,completed\n", "has no rows"),
        ("a\n" + "x" * 200_000 + "\n", "not a fig2i sweep CSV: no column env"),
    ],
)
def test_table_of_a_wrong_csv_names_what_is_missing(tmp_path, capsys, content, words):
    """`dmar fig2i table` on a foreign CSV was a KeyError 'k_cm' traceback."""
    path = tmp_path / "f.csv"
    path.write_text(content)
    assert main(["fig2i", "table", "--csv", str(path)]) == 2
    assert words in _one_line(capsys)
    assert main(["fig2i", "table", "--csv", str(tmp_path / "none.csv")]) == 2
    assert "does not exist; run `dmar fig2i run --csv" in _one_line(capsys)


def test_run_refuses_to_append_to_a_csv_of_another_layout(tmp_path, capsys):
    path = tmp_path / "f.csv"
    path.write_text("x,y\n1,2\n")
    argv = ["fig2i", "run", "--envs", "1", "--runs", "1", "--csv", str(path)]
    assert main([*argv, "--readme", str(tmp_path / "R.md")]) == 2
    assert "its columns are not those `dmar fig2i run` writes" in _one_line(capsys)
    assert path.read_text() == "x,y\n1,2\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("no markers\n", "no line '<!-- fig2i-table -->'; add the two lines"),
        ("<!-- fig2i-table -->\nold\n", "no line '<!-- /fig2i-table -->'"),
        ("<!-- /fig2i-table -->\n<!-- fig2i-table -->\n", "comes before"),
    ],
)
def test_readme_without_markers_says_which_and_how_to_add_them(tmp_path, capsys, text, words):
    """`dmar fig2i readme` on a file without the markers was a ValueError traceback."""
    readme = tmp_path / "README.md"
    readme.write_text(text)
    rows = tmp_path / "f.csv"
    run_fig2i(rows, [Fig2iJob(2, 0, math.inf, "DMAR"), Fig2iJob(2, 0, math.inf, "BP")], 1)
    assert main(["fig2i", "readme", "--csv", str(rows), "--readme", str(readme)]) == 2
    assert words in _one_line(capsys)
    assert readme.read_text() == text


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--envs", "0", "argument --envs: must be an integer from 1 to 1000, got '0'"),
        ("--envs", "-1", "argument --envs: must be an integer from 1"),
        ("--runs", "-1", "argument --runs: must be an integer from 1 to 100, got '-1'"),
        ("--runs", "101", "argument --runs: must be an integer from 1 to 100"),
        ("--workers", "0", "argument --workers: must be an integer from 1 to 256, got '0'"),
        ("--workers", "-1", "argument --workers: must be an integer from 1"),
    ],
)
def test_run_counts_are_bounded(tmp_path, capsys, flag, value, words):
    """These were accepted and exited 0 (an empty sweep, or one worker)."""
    with pytest.raises(SystemExit) as exc:
        main(["fig2i", "run", flag, value, "--csv", str(tmp_path / "f.csv")])
    assert exc.value.code == 2
    assert words in _one_line(capsys)
    assert not (tmp_path / "f.csv").exists()


@pytest.mark.parametrize(
    ("name", "words"),
    [("d", "is a folder"), ("f.txt", "ends '.txt'"), ("f.csv/x.png", "its folder cannot be made")],
)
def test_figure_out_must_be_an_image_file(tmp_path, capsys, name, words):
    """A folder as --out was written as <folder>.png beside it."""
    (tmp_path / "d").mkdir()
    rows = tmp_path / "f.csv"
    run_fig2i(rows, [Fig2iJob(2, 0, math.inf, "DMAR"), Fig2iJob(2, 0, math.inf, "BP")], 1)
    assert main(["fig2i", "figure", "--csv", str(rows), "--out", str(tmp_path / name)]) == 2
    assert words in _one_line(capsys)
    assert not (tmp_path / "d.png").exists()
