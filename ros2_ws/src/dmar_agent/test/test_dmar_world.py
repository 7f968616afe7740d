"""World: generator, MovingAI loader, placement and exact k-hop views."""

import numpy as np
import pytest
from dmar_agent.errors import ConfigError, InstanceError, MapFormatError
from dmar_agent.world import (
    Grid,
    Instance,
    agent_task_counts,
    bundled_map_path,
    generate_grid,
    is_connected,
    isolated_tasks,
    khop_ball_bfs,
    load_movingai_map,
    log_star,
    make_instance,
    parse_movingai_map,
    view_cells,
    worst_hitting_times,
)
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize("n", [5, 10, 40, 80])
def test_generator_exact_obstacles_and_connected(n):
    g = generate_grid(n, np.random.default_rng(n))
    assert int((~g.free).sum()) == round(0.2 * n * n)
    assert is_connected(g.free)


def test_generator_is_seeded():
    a = generate_grid(30, np.random.default_rng(5))
    b = generate_grid(30, np.random.default_rng(5))
    c = generate_grid(30, np.random.default_rng(6))
    assert np.array_equal(a.free, b.free)
    assert not np.array_equal(a.free, c.free)


@pytest.mark.parametrize("ratio,tasks", [("1:2", 40), ("1:1", 20), ("2:1", 10)])
def test_instance_counts_and_placement(ratio, tasks):
    inst = make_instance(20, ratio, seed=3)
    assert len(inst.agents) == 20 and len(inst.tasks) == tasks
    free = inst.grid.free_flat()
    assert free[inst.agents].all() and free[inst.tasks].all()
    assert len(set(inst.agents.tolist()) | set(inst.tasks.tolist())) == 20 + tasks
    again = make_instance(20, ratio, seed=3)
    assert np.array_equal(inst.agents, again.agents) and np.array_equal(inst.tasks, again.tasks)


def test_bad_inputs_raise_typed_errors():
    with pytest.raises(ConfigError, match="ratio"):
        agent_task_counts(10, "3:1")
    with pytest.raises(ConfigError, match="grid size"):
        generate_grid(1, np.random.default_rng(0))
    with pytest.raises(InstanceError, match="distinct cells"):
        make_instance(3, "1:2", 0, n_agents=5)


def test_movingai_bundled_map():
    g = load_movingai_map(bundled_map_path())
    assert (g.height, g.width) == (8, 10)
    assert is_connected(g.free)
    raw = parse_movingai_map(bundled_map_path().read_text())
    assert raw.free[0, 0] and not raw.free[1, 1] and not raw.free[3, 3]  # 'T' is an obstacle


@pytest.mark.parametrize(
    "text,match",
    [
        ("type octile\nheight 2\nwidth 2\n..\n..\n", "followed by a line 'map'"),
        ("type octile\nheight 2\nmap\n..\n..\n", "width"),
        ("type octile\nheight 3\nwidth 2\nmap\n..\n..\n", "height 3"),
        ("type octile\nheight 2\nwidth 2\nmap\n..\n.x\n", "unknown terrain"),
        ("type octile\nheight 2\nwidth 3\nmap\n..\n..\n", "width 3"),
        ("type octile\nheight 1\nwidth 2\nmap\n@@\n", "no passable"),
        # fuzzed headers: refused before any grid is allocated (was a 931 GiB allocation), and
        # digits int() cannot read ('²' passes str.isdigit)
        ("type octile\nheight 1\nwidth 1000000000000\nmap\n...\n", "from 1 to 999999999"),
        ("type octile\nheight 1\nwidth 900000000\nmap\n...\n", "header says width 900000000"),
        ("type octile\nheight \u00b2\nwidth 3\nmap\n...\n...\n", "from 1 to 999999999"),
        # a form feed inside a row is a bad character there, not a line break (was "header says
        # height 2 but 3 map rows follow")
        (
            "type octile\nheight 2\nwidth 3\nmap\n.\x0c.\n...\n",
            r"row 0 column 1: unknown terrain '\\x0c'",
        ),
        ("type octile\nheight 1\nwidth 3\nmap\n.\u00e9.\n", "row 0 column 1: unknown terrain"),
    ],
)
def test_movingai_malformed(text, match):
    with pytest.raises(MapFormatError, match=match):
        parse_movingai_map(text)


ROWS = ["@@@@@@", "@..@.@", "@....@", "@@@@@@"]


@pytest.mark.parametrize(
    "text",
    [
        "type octile\nheight 4\nwidth 6\nmap\n" + "\n".join(ROWS) + "\n",
        # published maps: CRLF or CR line ends, trailing spaces/tabs on header and map rows,
        # upper-case keys, no final newline (a trailing space row was "row 0 has 8 characters")
        "type octile\r\nheight 4\r\nwidth 6\r\nmap\r\n" + "\r\n".join(ROWS) + "\r\n",
        "type octile\rheight 4\rwidth 6\rmap\r" + "\r".join(ROWS),
        "type octile  \nheight 4 \nwidth 6\t\nmap \n" + "\n".join(r + "  " for r in ROWS),
        "TYPE octile\nHEIGHT 4\nWIDTH 6\nMAP\n" + "\n".join(r + "\t" for r in ROWS) + "\r\n",
    ],
)
def test_movingai_line_ends_and_trailing_whitespace_are_accepted(text):
    g = parse_movingai_map(text)
    assert (g.height, g.width) == (4, 6)
    assert g.free.tolist() == [[ch == "." for ch in row] for row in ROWS]


def test_movingai_missing_file(tmp_path):
    with pytest.raises(MapFormatError, match="does not exist"):
        load_movingai_map(tmp_path / "nope.map")


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 15),
    k=st.integers(0, 7),
    seed=st.integers(0, 10_000),
    cell=st.integers(0, 10_000),
)
def test_view_is_exact_khop_ball(n, k, seed, cell):
    g = generate_grid(n, np.random.default_rng(seed))
    c = cell % (n * n)
    assert np.array_equal(view_cells(g, c, k), khop_ball_bfs(g, c, k))


def test_view_sees_through_obstacles():
    free = np.ones((3, 3), dtype=bool)
    free[1, 1] = False
    g = Grid(free)
    assert 8 in view_cells(g, 0, 4)
    assert 2 in view_cells(g, 0, 2) and 8 not in view_cells(g, 0, 3)


def test_log_star():
    assert [log_star(x) for x in (1, 2, 4, 16, 65536, 1600, 6400)] == [0, 1, 2, 3, 4, 4, 4]


def test_worst_hitting_times_match_the_path_graph_formula():
    # on a path of n cells the walk from one end needs (n - 1)^2 steps on average to reach the other
    n = 9
    got = worst_hitting_times(Grid(np.ones((1, n), dtype=bool)), np.array([0, n - 1]))
    assert got == pytest.approx([(n - 1) ** 2] * 2)


def test_isolated_task_filter_flags_a_task_behind_a_long_dead_end():
    # a 12 x 12 room (rows 0-11) and below it a 1-wide corridor snaking through rows 13-19,
    # entered at (12, 11) only; the task at its far end (19, 11) is isolated
    free = np.zeros((20, 12), dtype=bool)
    free[:12, :] = True
    free[12, 11] = True
    for r, entry in ((13, 11), (15, 0), (17, 11), (19, 0)):
        free[r, :] = True
        if r < 19:
            free[r + 1, 0 if entry == 11 else 11] = True
    grid = Grid(free)
    end = 19 * 12 + 11
    inst = Instance(grid, np.array([0]), np.array([13, end]))
    # the worst case starts at the corridor's end, so the room's task is flagged as well: the
    # filter judges the topology, as the paper's does
    assert isolated_tasks(inst).tolist() == [13, end]
    room = Grid(np.ones((12, 12), dtype=bool))
    assert isolated_tasks(Instance(room, np.array([0]), np.array([13, 143]))).size == 0
    assert isolated_tasks(make_instance(40, "1:1", 18)).tolist() == [36 * 40 + 16]
    assert isolated_tasks(make_instance(40, "1:1", 0)).size == 0
