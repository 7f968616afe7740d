"""Swarm file validation stays bounded and names are whole (issue #15, findings 5 and 6).

Large files are refused with one line naming the limit (file size before parsing, then the
counts); start-pose and consumer overlaps come from a grid hash that finds exactly the pairs
a brute-force check finds; names match whole and have a length limit; the checkpoint a file
names must resolve strictly inside its package.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_bridge import config as config_mod
from sim_bridge.cli import main as swarm_main
from sim_bridge.config import (
    MAX_CONSUMERS,
    MAX_FILE_BYTES,
    MAX_KEYS,
    MAX_NAME_LEN,
    MAX_PROBLEMS,
    MAX_ROBOTS,
    ConfigError,
    check_files,
    load_config,
    overlapping_pairs,
    resolve_package_path,
    validate,
)

REPO = Path(__file__).resolve().parents[4]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_validate", REPO / "benchmarks/validate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


big_config_yaml = _bench().big_config_yaml

SMALL = {
    "fileversion": 1,
    "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
    "comm_radius": 2.0,
    "robots": [
        {"name": "cf1", "kind": "crazyflie", "pose": [0.0, 0.0, 0.0, 0.0]},
        {"name": "cf2", "kind": "crazyflie", "pose": [1.0, 0.0, 0.0, 0.0]},
    ],
    "consumers": [{"name": "c1", "position": [1.0, 1.0], "radius": 0.3, "demand": {"energy": 1.0}}],
}


def problems_of(data):
    with pytest.raises(ConfigError) as info:
        load_config(data)
    return info.value.problems


def swarm_validate(path: Path) -> subprocess.CompletedProcess:
    """``swarm validate`` in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "sim_bridge.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


# ----------------------------------------------------------------------------- limits


def test_31k_robot_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(big_config_yaml(31_000, 4))
    assert path.stat().st_size > MAX_FILE_BYTES
    line = assert_one_error(swarm_validate(path), "<file>:", "MiB", "limit", "fix:")
    assert f"at most {MAX_ROBOTS} robots" in line


def test_20k_consumer_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(big_config_yaml(10, 20_000))
    assert_one_error(swarm_validate(path), "<file>:", "limit", "fix:")


def test_counts_over_the_limits_are_one_problem_each_without_reading_the_lists():
    data = yaml.safe_load(big_config_yaml(2, 1))
    data["robots"] = data["robots"][:1] * 31_000  # one shared mapping: no per-robot work
    data["consumers"] = data["consumers"][:1] * 20_000
    problems, _ = validate(data)
    assert [p.path for p in problems] == ["robots", "consumers"]
    assert "31000 robots, more than the limit of 1000" in problems[0].message
    assert "MAX_ROBOTS" in problems[0].fix and "MAX_CONSUMERS" in problems[1].fix


def test_compact_file_under_the_size_limit_meets_the_count_limit(tmp_path):
    path = tmp_path / "compact.yaml"
    path.write_text(big_config_yaml(MAX_ROBOTS + 1, 4, compact=True))
    assert path.stat().st_size < MAX_FILE_BYTES
    assert_one_error(swarm_validate(path), "robots:", f"{MAX_ROBOTS + 1} robots", "limit")


def test_a_file_at_the_count_limits_fits_the_size_limit_and_validates(tmp_path):
    """The limits agree: the largest accepted swarm, dumped in full block style, loads."""
    cfg = load_config(yaml.safe_load(big_config_yaml(MAX_ROBOTS, MAX_CONSUMERS)))
    assert cfg.warnings == ()
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(cfg.to_mapping()))
    assert path.stat().st_size < MAX_FILE_BYTES / 2
    assert len(load_config(path).robots) == MAX_ROBOTS


def test_yaml_text_over_the_size_limit_is_refused_before_parsing():
    data, problems = config_mod.parse_yaml("a: [" + "1, " * MAX_FILE_BYTES + "1]")
    assert data is None and problems[0].path == "<file>" and "limit" in problems[0].message


@pytest.mark.parametrize("text", ["- " * 200_000 + "x", "[" * 300_000 + "]" * 300_000])
def test_deep_nesting_under_the_size_limit_is_one_problem(tmp_path, text):
    """libyaml's composer dies of a stack overflow here; the depth is checked first."""
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    assert path.stat().st_size <= MAX_FILE_BYTES
    assert_one_error(swarm_validate(path), "<yaml>:", "nest deeper than")


def test_mapping_with_too_many_keys_and_too_many_problems_stay_bounded():
    data = copy.deepcopy(SMALL)
    data["consumers"][0]["demand"] = {f"t{k}": 1.0 for k in range(MAX_KEYS + 1)}
    (problem,) = problems_of(data)
    assert problem.path == "consumers[0].demand" and f"limit of {MAX_KEYS}" in problem.message
    # unknown keys on every robot: many problems, listed up to a cap
    junk = {f"junk{k}": 0 for k in range(MAX_KEYS - 1)}
    data = copy.deepcopy(SMALL)
    data["robots"] = [{**junk, "name": f"r{i}"} for i in range(MAX_ROBOTS)]
    problems = problems_of(data)
    assert len(problems) == MAX_PROBLEMS + 1
    assert "more problem(s) not listed" in problems[-1].message


def test_aliases_repeating_a_bad_mapping_stay_bounded(tmp_path):
    """63 x 63 unknown keys shared by alias into 1000 robots' resources and 1000 demands:
    millions of problems if every one were read; listed up to the cap instead."""
    inner = "{" + ", ".join(f"q{q}: 1" for q in range(MAX_KEYS - 1)) + "}"
    rows = [
        "fileversion: 1",
        "arena: {x: [0, 10], y: [0, 10]}",
        "comm_radius: 1",
        f"junk: &m {inner}",
        "big: &big {" + ", ".join(f"r{i}: *m" for i in range(MAX_KEYS - 1)) + "}",
        "robots:",
    ]
    rows += [
        f"  - {{name: r{i}, kind: ground, pose: [1, 1], resources: *big}}" for i in range(1000)
    ]
    rows += ["consumers:"]
    rows += [f"  - {{name: c{i}, position: [1, 1], radius: 5, demand: *big}}" for i in range(1000)]
    path = tmp_path / "aliases.yaml"
    path.write_text("\n".join(rows) + "\n")
    problems, _ = validate(path)
    assert len(problems) == MAX_PROBLEMS + 1 and "not listed" in problems[-1].message


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("bad", ["cf1\n", "cf1\r\n", "x" * 300, "x" * (MAX_NAME_LEN + 1), "1cf"])
@pytest.mark.parametrize(
    "where, path",
    [
        ("robot", "robots[0].name"),
        ("consumer", "consumers[0].name"),
        ("resource_types", "resource_types[0]"),
        ("robot_type", "robot_types"),
    ],
)
def test_bad_names_are_rejected_naming_the_field(bad, where, path):
    data = copy.deepcopy(SMALL)
    if where == "robot":
        data["robots"][0]["name"] = bad
    elif where == "consumer":
        data["consumers"][0]["name"] = bad
    elif where == "resource_types":
        data["resource_types"] = [bad, "energy"]
    else:
        data["robot_types"] = {bad: {"kind": "crazyflie"}}
    problems = problems_of(data)
    assert any(p.path.startswith(path) for p in problems), problems
    for p in problems:  # one line each, a long name shown shortened
        assert "\n" not in str(p) and "\r" not in str(p) and len(str(p)) < 400


def test_longest_allowed_name_passes():
    data = copy.deepcopy(SMALL)
    data["robots"][0]["name"] = "r" * MAX_NAME_LEN
    assert load_config(data).robots[0].name == "r" * MAX_NAME_LEN


@pytest.mark.parametrize(
    "robot, key",
    [
        ({"kind": "ground", "backend": "external", "cmd_topic": "/g/cmd_vel\n"}, "cmd_topic"),
        ({"kind": "crazyflie", "mocap_topic": "/" + "t" * 300}, "mocap_topic"),
        ({"kind": "crazyflie", "backend": "cflib", "uri": "radio://0/80/2M/E7\n"}, "uri"),
    ],
)
def test_topics_and_uris_match_whole(robot, key):
    data = copy.deepcopy(SMALL)
    data["robots"][0] = {"name": "r1", "pose": [0.0, 0.0], "odom_topic": "/g/odom", **robot}
    if robot.get("backend") != "external":
        del data["robots"][0]["odom_topic"]
    assert f"robots[0].{key}" in [p.path for p in problems_of(data)]


# ----------------------------------------------------------------------------- geometry


def brute_force_pairs(points: np.ndarray, radii: np.ndarray) -> set[tuple[int, int]]:
    """Every pair checked: the O(N^2) reference, with the documented predicate."""
    out = set()
    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            if ((points[i] - points[j]) ** 2).sum() < (radii[i] + radii[j]) ** 2:
                out.add((i, j))
    return out


coords = st.floats(-3.0, 3.0, allow_nan=False).map(lambda v: round(v, 2))  # ties happen
bodies = st.lists(
    st.tuples(coords, coords, coords, st.floats(0.01, 1.0).map(lambda v: round(v, 2))),
    min_size=0,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(bodies, st.sampled_from([2, 3]))
def test_grid_hash_finds_exactly_the_brute_force_pairs(items, dim):
    pts = np.array([b[:dim] for b in items], dtype=float).reshape(-1, dim)
    rad = np.array([b[3] for b in items], dtype=float)
    got = {tuple(p) for p in overlapping_pairs(pts, rad).tolist()}
    assert got == brute_force_pairs(pts, rad)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1.9, 1.9).map(lambda v: round(v, 1)),
            st.floats(-1.9, 1.9).map(lambda v: round(v, 1)),
            st.sampled_from([0.05, 0.1, 0.3]),
        ),
        min_size=2,
        max_size=20,  # at most 190 pairs: all listed
        unique_by=lambda b: b[:2],
    )
)
def test_config_reports_exactly_the_overlapping_start_poses(items):
    data = copy.deepcopy(SMALL)
    data["robots"] = [
        {"name": f"r{i}", "kind": "ground", "pose": [x, y], "radius": r}
        for i, (x, y, r) in enumerate(items)
    ]
    pts = np.array([[x, y, 0.0] for x, y, _ in items])
    want = {(f"r{j}", f"r{i}") for i, j in brute_force_pairs(pts, np.array([b[2] for b in items]))}
    problems, _ = validate(data)
    got = set()
    for p in problems:
        assert "overlaps" in p.message, p
        got.add(tuple(p.message.split("'")[1:4:2]))
    assert got == want


def test_thirty_thousand_bodies_never_build_an_n_by_n_array():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0.0, 60.0, (30_000, 3))
    pairs = overlapping_pairs(pts, np.full(30_000, 0.05), max_pairs=10)
    assert len(pairs) == 10 and (pairs[:, 0] < pairs[:, 1]).all()


# ----------------------------------------------------------------------------- checkpoint paths


def test_missing_checkpoint_is_refused_at_validate(tmp_path):
    data = copy.deepcopy(SMALL)
    data["policy"] = {"checkpoint": "nope.pt"}
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)  # a node may still replace it: not a load error
    assert [p.path for p in check_files(cfg)] == ["policy.checkpoint"]
    assert_one_error(swarm_validate(path), "policy.checkpoint", "not found", "fix:")


@pytest.mark.parametrize(
    "text, words",
    [
        ("sim_bridge:../../x", "leaves package"),
        ("sim_bridge:../config.py", "leaves package"),
        ("sim_bridge:/etc/passwd", "leaves package"),
        ("sim_bridge:", "leaves package"),
        ("no_such_pkg_zz:x.pt", "not importable"),
        ("sim_bridge:nope.pt", "not found"),
    ],
)
def test_package_paths_stay_inside_the_package(text, words):
    with pytest.raises(FileNotFoundError, match=words) as info:
        resolve_package_path(text, "policy.checkpoint")
    assert "\n" not in str(info.value)


def test_package_path_symlink_out_of_the_package_is_refused(tmp_path, monkeypatch):
    pkg = tmp_path / "lib" / "zz_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "inside.pt").write_bytes(b"x")
    (tmp_path / "outside.pt").write_bytes(b"x")
    (pkg / "link.pt").symlink_to(tmp_path / "outside.pt")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    assert resolve_package_path("zz_pkg:inside.pt") == (pkg / "inside.pt").resolve()
    with pytest.raises(FileNotFoundError, match="link out of package"):
        resolve_package_path("zz_pkg:link.pt")
    assert resolve_package_path("plain/path.pt") is None
    assert resolve_package_path("C:/windows/path.pt") is None


def test_validate_cli_still_in_process(tmp_path, capsys):
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    assert swarm_main(["validate", str(path)]) == 0
    assert ": ok: 2 robots" in capsys.readouterr().out


def test_huge_radii_overlap_without_numpy_overflow_warnings(recwarn):
    """A fuzzed radius of 1e308 printed numpy overflow RuntimeWarnings on stderr before the
    overlap problems; the overlap is still found."""
    data = yaml.safe_load((REPO / "launch/example.yaml").read_text())
    data["robot_types"]["cf"]["radius"] = 1e308
    problems, _ = validate(data)
    assert any("overlaps" in p.message for p in problems)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
