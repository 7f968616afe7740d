"""CLI (run / sweep --no-ray / figures), CSV round trip and the centralized references."""

import csv
import itertools
import json

import numpy as np
import pytest
from dmar_agent.baselines import central_greedy, central_rollout, ortools_reference
from dmar_agent.cli import main
from dmar_agent.errors import MapFormatError
from dmar_agent.mission.sweep import COLUMNS, read_csv
from dmar_agent.planning import MapPlanner
from dmar_agent.world import Grid, Instance, bundled_map_path, load_movingai_map, make_instance


def test_run_prints_table(capsys):
    algos = "dmar,bp,dmar_gci,bp_gci,central_rollout,central_greedy,ortools"
    assert main(["run", "--n", "10", "--k", "4", "--algos", algos, "--ortools-s", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "10x10" in out and "10 agents" in out
    for a in algos.split(","):
        assert a in out
    assert "True" in out


def test_run_on_movingai_map_json(capsys):
    assert (
        main(["run", "--map", str(bundled_map_path()), "--agents", "4", "--k", "3", "--json"]) == 0
    )
    out = capsys.readouterr().out
    assert '"map": "tiny.map"' in out and '"n": 10' in out


@pytest.mark.parametrize(
    "argv,match",
    [
        (["run", "--ratio", "3:1"], "ratio"),
        (["run", "--algos", "dmar,magic"], "magic"),
        (["run", "--k", "0"], "k=0"),
        (["run", "--map", "/nonexistent.map"], "does not exist"),
        (["figures", "--csv", "/nonexistent.csv"], "dmar sweep"),
        (["sweep", "--algos", "dmar,central_rollout", "--no-ray"], "--algos"),
        # fuzzed: an empty list was an IndexError, a name too long an OSError traceback
        (["run", "--algos", ","], "--algos: no algorithm given"),
        (["run", "--map", "a" * 5000], "File name too long"),
    ],
)
def test_bad_input_is_a_clear_error(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dmar: error:") and match in err and "Traceback" not in err


def test_figures_rejects_foreign_or_broken_csv(tmp_path, capsys):
    foreign = tmp_path / "x.csv"
    foreign.write_text("a,b\n1,2\n")
    assert main(["figures", "--csv", str(foreign)]) == 2
    assert "misses columns" in capsys.readouterr().err
    broken = tmp_path / "y.csv"
    broken.write_text(",".join(COLUMNS) + "\n" + ",".join(["x"] * len(COLUMNS)) + "\n")
    assert main(["figures", "--csv", str(broken)]) == 2
    assert "line 2" in capsys.readouterr().err
    empty = tmp_path / "z.csv"
    empty.write_text(",".join(COLUMNS) + "\n")
    assert main(["figures", "--csv", str(empty)]) == 2
    assert "no result rows" in capsys.readouterr().err


def test_bad_list_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--ks", "a,b"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ks" in err[0], err  # one line, no usage block


def test_sweep_no_ray_then_figures(tmp_path, capsys):
    out = tmp_path / "s.csv"
    central = "central_rollout,central_greedy,ortools"
    argv = ["sweep", "--no-ray", "--no-progress", "--sizes", "8,10", "--ks", "2,4", "--ratios",
            "1:1", "--instances", "1", "--runs", "1", "--central", central, "--ortools-s", "0.2",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = read_csv(out)
    assert len(rows) == 2 * (2 * 4 + 3)
    with out.open() as fh:
        assert next(csv.reader(fh)) == COLUMNS
    assert all(r["completed"] for r in rows)
    assert "Theorem A.1" in capsys.readouterr().out
    img = tmp_path / "img"
    assert main(["figures", "--csv", str(out), "--out", str(img)]) == 0
    names = sorted(p.name for p in img.iterdir())
    assert names == [f"dmar_{x}.png" for x in ("compute", "fig2", "fig3", "fig4", "fig5", "fig6")]
    assert all(p.stat().st_size < 300_000 for p in img.iterdir())


def _bfs_dist(inst, a, b):
    pl = MapPlanner(inst.grid.width, inst.grid.height, inst.grid.free_flat(), [b])
    return int(pl.dist[0, pl.loc[a]])


def test_ortools_matches_brute_force_on_a_tiny_instance():
    free = np.ones((4, 5), dtype=bool)
    free[1, 1:4] = False
    inst = Instance(Grid(free), np.array([0, 19]), np.array([4, 10, 15]))
    best = None
    tasks = inst.tasks.tolist()
    for assign in itertools.product(range(2), repeat=3):
        total = 0
        for a in range(2):
            mine = [t for t, x in zip(tasks, assign) if x == a]
            total += min(
                sum(_bfs_dist(inst, u, v) for u, v in zip([int(inst.agents[a]), *p], p))
                for p in itertools.permutations(mine)
            )
        best = total if best is None else min(best, total)
    ref = ortools_reference(inst, 1.0)
    assert ref.cost == best
    assert sorted(t for r in ref.routes for t in r) == tasks


def test_central_methods_on_random_instance():
    inst = make_instance(12, "1:1", 2)
    g, r = central_greedy(inst), central_rollout(inst)
    o = ortools_reference(inst, 1.0)
    assert o.cost <= r.cost <= g.cost
    assert r.compute > g.compute > 0


def test_critical_radius_and_improvement_on_synthetic_rows():
    from dmar_agent.mission.figures import critical_radius, improvement

    costs = {2: (10, 9), 4: (8, 9), 6: (11, 10), 8: (4, 9), 10: (3, 9)}  # k: (dmar, bp)
    rows = [
        {"n": 20, "k": k, "algo": a, "cost": c}
        for k, (d, b) in costs.items()
        for a, c in (("dmar", d), ("bp", b))
    ]
    assert critical_radius(rows, 20) == 8  # DMAR loses at k=6, wins at every k >= 8
    assert improvement(rows, 20)[8] == pytest.approx(9 / 4)
    assert critical_radius(rows, 30) is None


# ---------------------------------------------------------------- issue #14 bad-input findings
def _err(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dmar: error: ") and "Traceback" not in err
    assert err.count("\n") == 1  # one line
    return err


@pytest.mark.parametrize("flag", ["--instance", "--run"])
def test_negative_instance_or_run_seed_is_one_line_not_a_numpy_traceback(flag, capsys):
    err = _err(["run", "--n", "10", flag, "-1"], capsys)
    assert err.startswith(f"dmar: error: {flag}: -1 is negative; give a seed >= 0")


def test_k_far_above_the_grid_is_clamped_to_its_diameter_not_allocated(capsys):
    # --k 100000 used to build (2k+1)^2 view offsets (~300 GiB) whatever the grid
    assert main(["run", "--n", "10", "--k", "100000", "--json"]) == 0
    captured = capsys.readouterr()
    assert "--k 100000 is above the grid's diameter 18" in captured.err
    huge = json.loads(captured.out)
    assert all(r["k"] == 100000 and r["k_view"] == 18 for r in huge)
    assert main(["run", "--n", "10", "--k", "18", "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    strip = ("k", "wall_s", "plan_wall_s")
    assert [{c: v for c, v in r.items() if c not in strip} for r in huge] == [
        {c: v for c, v in r.items() if c not in strip} for r in same
    ]


def test_psi_above_the_limit_is_refused_with_the_reason(capsys):
    # --psi 20 ran for ever: an iteration takes 2^psi + 2 * 4^(psi-1) PS steps
    err = _err(["run", "--n", "10", "--psi", "20"], capsys)
    assert "--psi: 20 is outside 1..6" in err and "5.5e+11" in err
    assert "--psi: 0 is below 1" in _err(["run", "--n", "10", "--psi", "0"], capsys)


@pytest.mark.parametrize("use_map", [False, True])
def test_agents_zero_is_refused_on_a_map_as_on_random_grids(use_map, capsys):
    # on a map, --agents 0 silently became the map width
    where = ["--map", str(bundled_map_path())] if use_map else ["--n", "10"]
    err = _err(["run", *where, "--agents", "0"], capsys)
    assert "--agents: 0 is below 1" in err


def test_non_square_map_reports_its_true_width_x_height(tmp_path, capsys):
    # a 257 x 256 map printed "256x256"
    m = tmp_path / "wide.map"
    m.write_text("type octile\nheight 3\nwidth 7\nmap\n" + ".......\n" * 3)
    assert main(["run", "--map", str(m), "--agents", "2", "--k", "2"]) == 0
    assert capsys.readouterr().out.startswith("grid 7x3 (wide.map)")
    assert main(["run", "--map", str(m), "--agents", "2", "--k", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert (rows[0]["width"], rows[0]["height"]) == (7, 3)


def test_directory_as_map_says_it_is_a_directory(tmp_path, capsys):
    for argv in (["run", "--map", str(tmp_path)], ["sweep", "--no-ray", "--map", str(tmp_path)]):
        err = _err(argv, capsys)
        assert "is a directory" in err and "does not exist" not in err
    with pytest.raises(MapFormatError, match="is a directory"):
        load_movingai_map(tmp_path)


def test_grid_too_large_for_memory_is_refused(capsys):
    err = _err(["run", "--n", "100000"], capsys)
    assert "--n: 100000 agents x 10000000000 cells is above the limit" in err


def test_max_iterations_stops_the_run_with_done_false_and_the_reason(capsys):
    # the 20 000-iteration cap was hard-coded and had no flag
    assert main(["run", "--n", "40", "--algos", "dmar,bp_gci", "--max-iterations", "1"]) == 0
    out = capsys.readouterr().out
    assert "dmar stopped (done False): --max-iterations 1 reached" in out
    assert "bp_gci stopped (done False): --max-iterations 1 reached" in out
    argv = ["run", "--n", "40", "--max-iterations", "1", "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(not r["completed"] and r["stop_reason"] == "max_iterations" for r in rows)
    assert all(r["iterations"] == 1 for r in rows)


def test_time_limit_stops_the_run_with_done_false_and_the_reason(capsys):
    # a limit shorter than building the executor: no iteration starts (no timing is asserted)
    assert main(["run", "--n", "20", "--time-limit", "1e-9", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(not r["completed"] and r["stop_reason"] == "time_limit" for r in rows)
    assert main(["run", "--n", "20", "--time-limit", "1e-9"]) == 0
    assert "stopped (done False): --time-limit 1e-09 s passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,match",
    [
        (["run", "--max-iterations", "0"], "--max-iterations: 0 is below 1"),
        (["run", "--time-limit", "-3"], "--time-limit: -3.0 is not a positive number"),
        (["run", "--time-limit", "nan"], "--time-limit: nan is not a positive number"),
        (["sweep", "--time-limit", "0", "--no-ray"], "--time-limit: 0.0"),
        (["sweep", "--sizes", "1000", "--no-ray"], "--sizes entry 1000"),
        (["run", "--ortools-s", "0"], "--ortools-s: 0.0"),
    ],
)
def test_limit_flags_reject_bad_values(argv, match, capsys):
    assert match in _err(argv, capsys)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_sweep_num_cpus_is_bounded(value, capsys):
    """--num-cpus 0 / -1 were accepted (a Ray pool of no CPU runs nothing)."""
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--no-ray", "--num-cpus", value])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --num-cpus: must be an integer from 1 to 4096" in err[0]


@pytest.mark.parametrize(
    ("text", "words"), [("1..100000000", "more than 1000 values"), ("5..2", "gives no value")]
)
def test_list_flags_are_bounded_before_they_are_expanded(text, words, capsys):
    """`--ks 1..100000000` was expanded to a list of 10^8 ints (4.8 GB) before anything ran."""
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--ks", text])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_binary_csv_and_folder_out_are_one_line(tmp_path, capsys):
    """A binary --csv was a UnicodeDecodeError traceback, a folder as --out an
    IsADirectoryError traceback."""
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"\xf3\xff\x00garbage")
    assert main(["figures", "--csv", str(binary)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dmar: error: {binary}: not UTF-8 text (invalid continuation byte at byte 0)"]
    argv = ["sweep", "--no-ray", "--no-progress", "--sizes", "5", "--ks", "2", "--instances", "1"]
    assert main([*argv, "--runs", "1", "--ratios", "1:1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Is a directory" in err[0], err


def test_sweep_refuses_an_unplaceable_size_before_any_job_runs(tmp_path, capsys):
    """`--sizes 5,2` ran every 5x5 job, then failed on the 2x2 grid (3 free cells for 2 agents
    and 2 tasks) naming `--agents`, a flag sweep did not have."""
    out = tmp_path / "s.csv"
    argv = ["sweep", "--no-ray", "--no-progress", "--sizes", "5,2", "--ks", "2", "--instances",
            "1", "--runs", "1", "--ratios", "1:1", "--out", str(out)]  # fmt: skip
    err = _err(argv, capsys)
    assert "--sizes entry 2: 2 agents + 2 tasks (ratio 1:1)" in err and "has 3" in err
    assert not out.exists()  # refused before the CSV was opened
    # --agents now exists on sweep as on run, and makes the small grid placeable
    assert main([*argv, "--agents", "1"]) == 0
    assert {r["agents"] for r in read_csv(out)} == {1}


def test_sweep_on_a_large_map_is_refused_up_front_naming_agents(tmp_path, capsys):
    """A 512-wide map (one agent per column: 512 x 262,144 cells) failed inside a Ray worker,
    printed as the worker's traceback; now refused before Ray starts, with the count that fits."""
    m = tmp_path / "big.map"
    m.write_text("type octile\nheight 512\nwidth 512\nmap\n" + ("." * 512 + "\n") * 512)
    argv = ["sweep", "--map", str(m), "--ks", "2", "--instances", "1", "--runs", "1",
            "--ratios", "1:1", "--no-progress", "--out", str(tmp_path / "s.csv")]  # fmt: skip
    err = _err(argv, capsys)  # no --no-ray: the Ray pool must not even start
    assert "--map big.map: 512 agents x 262144 cells" in err and "--agents 244" in err


def test_sweep_on_a_map_runs_each_job_once_not_once_per_size(tmp_path, capsys):
    """A map ignores n, so the default 8 sizes repeated every map job 8 times."""
    out = tmp_path / "s.csv"
    argv = ["sweep", "--no-ray", "--no-progress", "--map", str(bundled_map_path()), "--agents",
            "3", "--ks", "2", "--instances", "1", "--runs", "1", "--ratios", "1:1", "--out",
            str(out)]  # fmt: skip
    assert main(argv) == 0
    assert len(read_csv(out)) == len(["dmar", "bp", "dmar_gci", "bp_gci"])


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--instances", "100000000"], "jobs is above the limit of 1,000,000"),
        (["--sizes", "2..1001", "--ks", "1..1000"], "jobs is above the limit"),
        (["--ratios", ","], "nothing to run"),
    ],
)
def test_sweep_job_count_is_bounded_before_the_list_is_built(extra, words, capsys):
    """`--instances 100000000` built Job objects until memory ran out (1.7 GB after 30 s)."""
    assert words in _err(["sweep", "--no-ray", "--no-progress", *extra], capsys)


def test_path_errors_name_the_flag_and_the_fix(tmp_path, capsys):
    """OSErrors were printed bare (`[Errno 21] Is a directory: '/tmp/x'`): no flag, no fix; and
    `sweep --out <folder>` drew a progress bar on stderr before its error line."""
    afile = tmp_path / "a.map"
    afile.write_text("x")
    cases = [
        (["fig2i", "table", "--csv", str(tmp_path)],
         f"--csv {tmp_path}: Is a directory; name a file, not a folder"),
        (["sweep", "--no-ray", "--sizes", "5", "--ks", "2", "--instances", "1", "--runs", "1",
          "--ratios", "1:1", "--out", str(tmp_path)],
         f"--out {tmp_path}: Is a directory; name a file, not a folder"),
        (["demo", "--out", str(afile)],  # refused before ROS starts
         f"--out {afile}: File exists; {afile} is a file where a folder is needed"),
        (["run", "--map", "a" * 5000], "File name too long; use a shorter path"),
    ]  # fmt: skip
    for argv, words in cases:
        err = _err(argv, capsys)
        assert err.startswith("dmar: error: ") and words in err, err
