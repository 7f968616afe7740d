"""Fig. 2(i) sweep in continuous space: jobs, resumable CSV, summary and table."""

import math

from dmar_agent.mission.fig2i import (
    FIELDS,
    Fig2iJob,
    jobs,
    k_cells,
    markdown_table,
    read_rows,
    run_fig2i,
    summary,
    write_readme_table,
)


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
