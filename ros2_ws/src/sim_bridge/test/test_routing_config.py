"""The ``routing`` section of the swarm config: defaults, derived radii, and one clear problem
(key path, message, fix) for every bad routing config."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from sim_bridge.cli import main as swarm_main
from sim_bridge.config import (
    MAX_CELLS,
    ConfigError,
    load_config,
    routing_comm_radius,
)
from sim_bridge.routing import reachable

REPO = Path(__file__).resolve().parents[4]

# 9 x 9 cells of 0.2 m centred in a 2 m x 2 m arena (the DMAR paper's Appendix C setting)
BASE = {
    "fileversion": 1,
    "arena": {"x": [-1.0, 1.0], "y": [-1.0, 1.0], "z": [0.0, 1.5]},
    "robot_types": {"cf": {"kind": "crazyflie", "takeoff_height": 0.4}},
    "robots": [
        {"name": "cf1", "type": "cf", "pose": [-0.8, -0.8, 0.0, 0.0]},  # cell (0, 0)
        {"name": "cf2", "type": "cf", "pose": [0.8, -0.8, 0.0, 0.0]},  # cell (0, 8)
    ],
    "routing": {
        "cell_size": 0.2,
        "origin": [-0.8, -0.8],
        "rows": 9,
        "cols": 9,
        "obstacles": [[4, 4], {"rows": [6, 6], "cols": [0, 2]}],
        "tasks": [[8, 8], [5, 4]],
        "k": 2,
        "psi": 2,
    },
}

MAP_9X9 = "type octile\nheight 9\nwidth 9\nmap\n" + "\n".join(
    ["." * 9] * 4 + ["....@...."] + ["." * 9] * 4
)


def routing_with(**changes):
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            data["routing"].pop(key, None)
        else:
            data["routing"][key] = value
    return data


def one_problem(data):
    """The single problem of ``data`` (a mapping or a file path)."""
    with pytest.raises(ConfigError) as info:
        load_config(data)
    problems = info.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# ----------------------------------------------------------------------------- good configs


def test_base_config_and_derived_radii():
    cfg = load_config(BASE)
    rc = cfg.routing
    assert (rc.grid.rows, rc.grid.cols, rc.grid.cell_size) == (9, 9, 0.2)
    assert rc.tasks == ((8, 8), (5, 4))
    assert rc.obstacles.sum() == 4 and rc.obstacles[4, 4] and rc.obstacles[6, :3].all()
    assert (rc.k, rc.psi, rc.timing) == (2, 2, "lockstep")
    assert rc.tolerance == pytest.approx(0.05)  # a quarter cell
    # one source of truth: both radii follow from k, cell size and the take-off height
    want = math.hypot(0.2 * math.sqrt(3**2 + 1), 0.4)
    assert rc.comm_radius == pytest.approx(want) == routing_comm_radius(2, 0.2, 0.4)
    assert cfg.comm_radius == cfg.sensing_radius == rc.comm_radius
    assert rc.sensing_m == pytest.approx(0.4)
    assert cfg.consumers == () and cfg.resource_types == ()


def test_comm_radius_covers_every_robot_a_view_can_show():
    """Two robots anywhere in cells k apart (Manhattan) are within the derived radius."""
    k, cs, h = 2, 0.2, 0.4
    c = routing_comm_radius(k, cs, h)
    rng = np.random.default_rng(0)
    for dr in range(-k, k + 1):
        for dc in range(-(k - abs(dr)), k - abs(dr) + 1):
            a = rng.uniform(-cs / 2, cs / 2, (500, 2))
            b = rng.uniform(-cs / 2, cs / 2, (500, 2)) + cs * np.array([dc, dr])
            z = rng.uniform(0, h, (500, 2))
            d = np.sqrt(((a - b) ** 2).sum(1) + (z[:, 0] - z[:, 1]) ** 2)
            assert d.max() <= c
    # and the bound is tight: opposite corners of cells k apart along one axis, floor and top
    assert math.dist((-cs / 2, -cs / 2, 0.0), (k * cs + cs / 2, cs / 2, h)) == pytest.approx(c)


def test_equal_comm_radius_is_accepted_and_round_trip():
    cfg = load_config(BASE)
    again = load_config({**copy.deepcopy(BASE), "comm_radius": cfg.routing.comm_radius})
    assert again == cfg
    assert load_config(cfg.to_mapping()) == cfg


def test_defaults_origin_rows_cols_fit_the_arena():
    cfg = load_config(routing_with(origin=None, rows=None, cols=None))
    g = cfg.routing.grid
    assert g.origin == pytest.approx((-0.9, -0.9))  # the arena's low corner + half a cell
    assert (g.rows, g.cols) == (10, 10)
    assert g.extent == (pytest.approx((-1.0, 1.0)), pytest.approx((-1.0, 1.0)))


def test_non_routing_config_has_no_routing_key():
    data = copy.deepcopy(BASE)
    del data["routing"]
    data["comm_radius"] = 1.0
    cfg = load_config(data)
    assert cfg.routing is None and "routing" not in cfg.to_mapping()


def test_map_file_scaled_to_the_arena(tmp_path):
    (tmp_path / "room.map").write_text(MAP_9X9)
    data = routing_with(map="room.map", cell_size=None, origin=None, rows=None, cols=None)
    data["routing"]["obstacles"] = [[0, 4]]
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(data))
    rc = load_config(path).routing
    assert (rc.grid.rows, rc.grid.cols) == (9, 9)
    assert rc.grid.cell_size == pytest.approx(2.0 / 9)
    assert rc.obstacles[4, 4] and rc.obstacles[0, 4] and rc.obstacles.sum() == 2
    assert rc.map == "room.map"
    cfg = load_config(path)
    assert load_config(cfg.to_mapping()) == cfg  # the map's cells travel as obstacles


def test_map_as_package_path(tmp_path, monkeypatch):
    pkg = tmp_path / "maps_pkg_for_test"
    (pkg / "maps").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "maps" / "room.map").write_text(MAP_9X9)
    monkeypatch.syspath_prepend(str(tmp_path))
    rc = load_config(routing_with(map="maps_pkg_for_test:maps/room.map")).routing
    assert rc.obstacles[4, 4] and rc.obstacles.sum() == 4  # the map's cell is also listed


def test_random_obstacles_connected_deterministic_and_exact():
    data = routing_with(obstacles=None, random_obstacles={"fraction": 0.2, "seed": 5})
    a, b = load_config(data).routing, load_config(data).routing
    assert a == b
    blocked = a.obstacles
    assert blocked.sum() == round(0.2 * 81)
    assert not blocked[0, 0] and not blocked[0, 8]  # the robots' start cells stay free
    assert not blocked[8, 8] and not blocked[5, 4]  # so do the listed tasks
    assert (reachable(~blocked, [(0, 0)]) == ~blocked).all()  # one connected free region
    other = load_config(routing_with(obstacles=None, random_obstacles={"fraction": 0.2})).routing
    assert other.obstacles.sum() == blocked.sum()


def test_random_tasks_on_free_reachable_cells():
    data = routing_with(tasks={"random": {"count": 6, "seed": 2}})
    rc = load_config(data).routing
    assert rc == load_config(data).routing and len(set(rc.tasks)) == 6
    for r, c in rc.tasks:
        assert not rc.obstacles[r, c] and (r, c) not in ((0, 0), (0, 8))


def test_example_file_validates(capsys):
    assert swarm_main(["validate", str(REPO / "launch" / "routing_example.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ok: 7 robots" in out and "routing: 9 x 9 cells of 0.2 m" in out
    cfg = load_config(REPO / "launch" / "routing_example.yaml")
    assert len(cfg.robots) == 7 and cfg.routing.psi == 2


# ----------------------------------------------------------------------------- bad configs

BAD = [
    # (changes to the routing section, key path, words in the message)
    ({"obstacles": [[9, 0]]}, "routing.obstacles[0]", "outside the 9 x 9 grid"),
    ({"obstacles": [[0, -1]]}, "routing.obstacles[0][1]", "out of range"),
    ({"obstacles": [{"rows": [2, 9], "cols": [0, 1]}]}, "routing.obstacles[0].rows", "[2, 9]"),
    ({"obstacles": [{"rows": [3, 2], "cols": [0, 1]}]}, "routing.obstacles[0].rows", "[3, 2]"),
    ({"obstacles": [{"rows": [2, 3]}]}, "routing.obstacles[0].cols", "missing"),
    ({"obstacles": [[1, 1, 1]]}, "routing.obstacles[0]", "expected [row, col]"),
    ({"tasks": [[0, 9]]}, "routing.tasks[0]", "outside the 9 x 9 grid"),
    ({"tasks": [[4, 4]]}, "routing.tasks[0]", "task cell (4, 4) is an obstacle"),
    ({"tasks": [[8, 8], [8, 8]]}, "routing.tasks[1]", "already task 0"),
    ({"tasks": {"random": {"count": 80}}}, "routing.tasks.random.count", "do not fit"),
    ({"tasks": {"pick": 3}}, "routing.tasks.pick", "unknown key"),
    ({"psi": 0}, "routing.psi", "out of range"),
    ({"psi": 7}, "routing.psi", "out of range"),
    ({"psi": 1.5}, "routing.psi", "expected an integer"),
    ({"k": 0}, "routing.k", "out of range"),
    ({"k": None}, "routing.k", "missing"),
    ({"cell_size": None}, "routing.cell_size", "missing"),
    ({"cell_size": -0.2}, "routing.cell_size", "out of range"),
    ({"timing": "async"}, "routing.timing", "not one of"),
    ({"tolerance": 0.15}, "routing.tolerance", "out of range"),
    ({"rows": 10}, "routing", "beyond the arena"),
    ({"origin": [0.0, 0.0]}, "routing", "beyond the arena"),
    ({"origin": [0.0]}, "routing.origin", "expected [x, y]"),
    ({"cell_size": 0.001, "rows": 1000, "cols": 1000}, "routing", f"limit of {MAX_CELLS}"),
    ({"grid": 3}, "routing.grid", "unknown key"),
    (
        {"map": "room.map", "random_obstacles": {"fraction": 0.2}},
        "routing.random_obstacles",
        "a map and random obstacles together",
    ),
    ({"random_obstacles": {"fraction": 0.7}}, "routing.random_obstacles.fraction", "out of range"),
]


@pytest.mark.parametrize(("changes", "path", "words"), BAD)
def test_bad_routing_config_one_clear_problem(tmp_path, changes, path, words):
    (tmp_path / "room.map").write_text(MAP_9X9)
    data = routing_with(**changes)
    file = tmp_path / "swarm.yaml"
    file.write_text(yaml.safe_dump(data))
    problem = one_problem(file)
    assert problem.path == path
    assert words in problem.message
    assert problem.fix


def test_robot_starting_in_an_obstacle_names_robot_and_cell():
    problem = one_problem(routing_with(obstacles=[[0, 8]]))
    assert problem.path == "robots[1].pose"
    assert "robot 'cf2' starts in obstacle cell (0, 8)" in problem.message
    assert "free cell" in problem.fix


def test_unreachable_task_rejected():
    # wall off the corner (8, 8)
    problem = one_problem(routing_with(obstacles=[[7, 8], [8, 7]]))
    assert problem.path == "routing.tasks[0]"
    assert "(8, 8) is unreachable from every robot" in problem.message


def test_task_reachable_from_one_robot_only_is_fine():
    # a wall along column 4 splits the grid; each half holds one robot and one task
    data = routing_with(obstacles=[{"rows": [0, 8], "cols": [4, 4]}], tasks=[[8, 8], [8, 0]])
    assert load_config(data).routing.obstacles[:, 4].all()


@pytest.mark.parametrize(("key", "value"), [("comm_radius", 2.0), ("sensing_radius", 0.5)])
def test_conflicting_radius_rejected(key, value):
    data = copy.deepcopy(BASE)
    data[key] = value
    problem = one_problem(data)
    assert problem.path == key
    assert "conflicts with the routing section" in problem.message
    assert "routing.k = 2" in problem.message and f"remove `{key}`" in problem.fix


MAPS = [
    # (file content or None for a missing file / "<dir>" for a directory, words in the message)
    (None, "does not exist"),
    ("<dir>", "is a directory"),
    ("type octile\nheight 8\nwidth 9\nmap\n" + "\n".join(["." * 9] * 8), "8 x 9 cells"),
    ("type octile\nheight 9\nwidth 9\nmap\n" + "\n".join(["." * 9] * 8 + ["....x...."]), "'x'"),
    ("type octile\nheight 9\nwidth 9\n", "no 'map' line"),
    ("type octile\nheight 9\nwidth 9\nmap\n" + "\n".join(["." * 9] * 8), "9 but 8 map rows"),
    ("type octile\nheight nine\nwidth 9\nmap\n", "not an integer"),
    ("type octile\nheight 9\nwidth 9\nmap\n" + "\n".join(["." * 9] * 8 + ["." * 8]), "8 chara"),
    # fuzzed headers: a width no row has is refused before any grid is allocated (was a
    # 931 GiB numpy allocation and a traceback), and so are digits int() cannot read
    ("type octile\nheight 1\nwidth 1000000000000\nmap\n...\n", "from 1 to 999999999"),
    ("type octile\nheight 2\nwidth " + "9" * 5000 + "\nmap\n...\n...\n", "from 1 to 999999999"),
    ("type octile\nheight 1\nwidth 900000000\nmap\n...\n", "3 characters"),
]


@pytest.mark.parametrize(("content", "words"), MAPS)
def test_bad_map_file_one_clear_problem(tmp_path, content, words):
    target = tmp_path / "room.map"
    if content == "<dir>":
        target.mkdir()
    elif content is not None:
        target.write_text(content)
    file = tmp_path / "swarm.yaml"
    file.write_text(yaml.safe_dump(routing_with(map="room.map")))
    problem = one_problem(file)
    assert problem.path == "routing.map"
    assert words in problem.message, problem.message
    assert problem.fix


def test_map_of_wrong_size_names_both_sizes(tmp_path):
    (tmp_path / "room.map").write_text(
        "type octile\nheight 8\nwidth 9\nmap\n" + "\n".join(["." * 9] * 8)
    )
    file = tmp_path / "swarm.yaml"
    file.write_text(yaml.safe_dump(routing_with(map="room.map")))
    problem = one_problem(file)
    assert "the map is 8 x 9 cells" in problem.message and "the grid is 9 x 9" in problem.message
    assert "routing.rows: 8" in problem.fix


def test_map_package_path_outside_its_package(tmp_path, monkeypatch):
    pkg = tmp_path / "maps_pkg_for_test2"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    problem = one_problem(routing_with(map="maps_pkg_for_test2:../x.map"))
    assert problem.path == "routing.map" and "leaves package" in problem.message


def test_validate_cli_reports_key_path_and_fix(tmp_path, capsys):
    file = tmp_path / "swarm.yaml"
    file.write_text(yaml.safe_dump(routing_with(tasks=[[4, 4]])))
    assert swarm_main(["validate", str(file)]) == 1
    err = capsys.readouterr().err
    assert "error: routing.tasks[0]: task cell (4, 4) is an obstacle (fix: " in err
