"""Swarm config schema: defaults layer, one problem per mistake, fuzzing never crashes."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_bridge.cli import main as swarm_main
from sim_bridge.config import ConfigError, load_config, validate

REPO = Path(__file__).resolve().parents[4]
LAUNCH = REPO / "launch"

BASE = {
    "fileversion": 1,
    "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
    "comm_radius": 2.0,
    "robot_types": {
        "cf": {
            "kind": "crazyflie",
            "resources": {"energy": {"amount": 1.0, "depletion": "persistent"}},
        }
    },
    "robots": [
        {"name": "cf1", "type": "cf", "pose": [0.0, 0.0, 0.0, 0.0]},
        {
            "name": "cf2",
            "type": "cf",
            "pose": [1.0, 0.0, 0.0, 0.0],
            "resources": {"payload": {"amount": 0.5, "depletion": "instantaneous"}},
        },
        {"name": "g1", "kind": "ground", "pose": [-1.0, -1.0]},
    ],
    "consumers": [
        {"name": "c1", "position": [1.0, 1.0], "radius": 0.3, "demand": {"energy": 2.0}},
        {"name": "c2", "position": [-1.0, 1.0], "radius": 0.3, "demand": {"payload": 1.0}},
    ],
    "events": [{"t": 5.0, "type": "fail", "robot": "cf2"}],
}


def cfg_with(**changes):
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def problems_of(data):
    with pytest.raises(ConfigError) as info:
        load_config(data)
    return info.value.problems


def test_defaults_layer_and_matrices():
    cfg = load_config(BASE)
    assert cfg.robot_names == ("cf1", "cf2", "g1")
    assert cfg.resource_types == ("energy", "payload")
    cf2 = cfg.robot("cf2")
    assert set(cf2.resources) == {"energy", "payload"}  # type's resources merged with own
    assert cf2.radius == 0.05 and cf2.max_speed == 0.5 and cf2.takeoff_height == 0.5
    g1 = cfg.robot("g1")
    assert g1.pose == (-1.0, -1.0, 0.0, 0.0) and g1.backend == "sim" and g1.takeoff_height == 0.0
    np.testing.assert_allclose(cfg.supply_matrix(), [[1.0, 0.0], [1.0, 0.5], [0.0, 0.0]])
    np.testing.assert_allclose(cfg.demand_matrix(), [[2.0, 0.0], [0.0, 1.0]])
    assert cfg.depletion_matrix().tolist() == [[True, False]] * 3
    assert cfg.robot_index("g1") == 2 and cfg.consumer_index("c2") == 1
    assert cfg.sensing_radius == 1.0 and cfg.rates.control_hz == 20.0
    assert cfg.warnings == ()
    with pytest.raises(KeyError, match="no robot named"):
        cfg.robot_index("nope")


def test_round_trip_through_mapping():
    cfg = load_config(BASE)
    again = load_config(cfg.to_mapping())
    assert again == cfg


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"comm_radiuss": 1.0}, "comm_radiuss", "did you mean `comm_radius`"),
        ({"comm_radius": 0.0}, "comm_radius", "> 0.0"),
        ({"comm_radius": "far"}, "comm_radius", "expected a number"),
        # YAML 1.1 reads `comm_radius: 2e0` (no dot) as the text '2e0': say how to write it
        ({"comm_radius": "2e0"}, "comm_radius", "YAML reads '2e0' as text: write it with a dot"),
        ({"rates": {"control_hz": "1e+1"}}, "rates.control_hz", "e.g. 1.0e-3 or 2.0e+1"),
        ({"fileversion": 2}, "fileversion", "use 1"),
        ({"rates": {"control_hz": -1}}, "rates.control_hz", "out of range"),
        ({"rates": {"control_hz": 50, "sim_hz": 10}}, "rates.sim_hz", "below control_hz"),
        # passed validation; `swarm up` then failed in the world's 1 / sim_hz timer
        # ("cannot convert float infinity to integer", no key named)
        ({"rates": {"control_hz": 1e-300, "sim_hz": 1e-300}}, "rates.control_hz", "too slow"),
        # every command stale before the next one came: the robots stopped and went
        ({"rates": {"control_hz": 2.0}}, "rates.control_hz", "use a value >= 3.34 Hz"),
        ({"safety": {"class_k": "quadratic"}}, "safety.class_k", "not one of"),
        ({"arena": {"x": [2, -2], "y": [-2, 2]}}, "arena.x", "min < max"),
        # normalised positions of 0 everywhere, then an EnvConfig field named for it
        ({"arena": {"x": [-1e300, 1e300], "y": [-2, 2]}}, "arena.x", "beyond 10000 m"),
        ({"arena": {"x": [-2, 2], "y": [-2, 2], "z": [0, 2e4]}}, "arena.z", "within +-10000"),
        ({"resource_types": ["energy", "payload", "energy"]}, "resource_types[2]", "duplicate"),
    ],
)
def test_single_problem_named_by_path(change, path, words):
    problems = problems_of(cfg_with(**change))
    assert [p.path for p in problems] == [path]
    assert words in str(problems[0])


def test_robot_problems_each_named():
    data = cfg_with()
    data["robots"][0]["radius"] = -0.1
    data["robots"][1]["pose"] = [9.0, 0.0, 0.0, 0.0]
    data["robots"][2]["name"] = "cf1"
    data["robots"].append({"name": "cf4", "type": "nope", "pose": [0, 1]})
    data["robots"].append({"name": "cf5", "kind": "crazyflie", "backend": "cflib", "pose": [0, -1]})
    problems = problems_of(data)
    paths = sorted(p.path for p in problems)
    assert paths == [
        "robots[0].radius",
        "robots[1].pose",
        "robots[2].name",
        "robots[3].type",
        "robots[4].uri",
    ]


def test_overlapping_start_poses_rejected():
    data = cfg_with()
    data["robots"][1]["pose"] = [0.05, 0.0, 0.0, 0.0]
    (problem,) = problems_of(data)
    assert problem.path == "robots[1].pose" and "overlaps 'cf1'" in problem.message


def test_undeclared_resource_type_named_everywhere():
    paths = sorted(p.path for p in problems_of(cfg_with(resource_types=["energy"])))
    assert paths == ["consumers[1].demand.payload", "robots[1].resources.payload"]


def test_consumer_and_event_problems():
    data = cfg_with()
    data["consumers"][0]["position"] = [3.0, 0.0]
    data["consumers"][1]["radius"] = 0
    data["events"] = [
        {"t": 1.0, "type": "discharge", "robot": "cf1", "resource": "fuel", "amount": 0.0},
        {"t": -1.0, "type": "fail", "robot": "ghost"},
        {"t": 2.0, "type": "explode"},
        {"t": 2.0, "type": "demand", "consumer": "c1", "resource": "energy"},
    ]
    paths = sorted(p.path for p in problems_of(data))
    assert paths == [
        "consumers[0].position",
        "consumers[1].radius",
        "events[0].resource",
        "events[1].robot",
        "events[1].t",
        "events[2].type",
        "events[3].amount",
    ]


def test_an_event_names_its_robot_or_selects_it_never_both_nor_neither():
    data = cfg_with()
    data["events"] = [
        {"t": 1.0, "type": "discharge", "select": "alone", "resource": "energy", "amount": 0.0},
        {"t": 1.0, "type": "land", "select": "alone"},
        {"t": 2.0, "type": "fail", "select": "alone"},
    ]
    cfg = load_config(data)
    assert [(e.robot, e.select) for e in cfg.events] == [(None, "alone")] * 3
    assert load_config(cfg.to_mapping()).events == cfg.events
    data["events"] = [
        {"t": 1.0, "type": "land"},
        {"t": 1.0, "type": "land", "robot": "cf1", "select": "alone"},
        {"t": 1.0, "type": "fail", "select": "lonely"},
        {"t": 1.0, "type": "takeoff", "select": "alone"},
    ]
    got = {(p.path, p.message, p.fix) for p in problems_of(data)}
    assert got == {
        ("events[0].robot", "missing", "a land event needs `robot: NAME` or `select: alone`"),
        ("events[1].select", "given with `robot`", "keep one of `robot` and `select`"),
        (
            "events[2].select",
            "'lonely' is not one of ['alone']",
            "use one of them (did you mean 'alone'?)",
        ),
        ("events[3].select", "unknown key", "remove it (allowed: t, type, robot)"),
        ("events[3].robot", "missing", "a takeoff event needs `robot`"),
    }


def test_inconsistent_depletion_and_bare_amount():
    data = cfg_with()
    data["robots"][2]["resources"] = {"energy": {"amount": 0.1, "depletion": "instantaneous"}}
    data["robots"][1]["resources"] = {"payload": 0.5}
    paths = sorted(p.path for p in problems_of(data))
    assert paths == ["robots[1].resources.payload", "robots[2].resources.energy.depletion"]


def test_release_rate_is_rejected_with_the_model_named():
    data = cfg_with()
    data["robot_types"]["cf"]["resources"]["energy"]["rate"] = 0.05
    data["robots"][1]["resources"]["payload"]["rate"] = 1.0
    problems = problems_of(data)
    assert sorted(p.path for p in problems) == [
        "robot_types.cf.resources.energy.rate",
        "robots[1].resources.payload.rate",
    ]
    assert all("never consumed" in p.message and "remove `rate`" in p.fix for p in problems)


def test_listed_type_nobody_uses_is_accepted_as_a_column():
    cfg = load_config(cfg_with(resource_types=["energy", "payload", "spare"]))
    assert cfg.warnings == ()
    assert cfg.resource_types == ("energy", "payload", "spare")
    assert cfg.supply_matrix().shape == (3, 3) and (cfg.supply_matrix()[:, 2] == 0).all()
    assert (cfg.demand_matrix()[:, 2] == 0).all()
    assert cfg.type_depletion()["spare"] == "instantaneous"


def test_supply_above_demand_is_a_warning():
    data = cfg_with()
    data["consumers"][0]["demand"] = {"energy": 0.5}
    cfg = load_config(data)
    assert len(cfg.warnings) == 1 and "exceeds total demand" in cfg.warnings[0].message


@pytest.mark.parametrize("name", ["example.yaml", "demo.yaml", "discharge.yaml"])
def test_shipped_configs_validate_without_warnings(name, capsys):
    cfg = load_config(LAUNCH / name)
    assert cfg.warnings == ()
    assert (cfg.supply_matrix().sum(0) <= cfg.demand_matrix().sum(0) + 1e-12).all()
    assert swarm_main(["validate", str(LAUNCH / name)]) == 0
    assert ": ok:" in capsys.readouterr().out


def test_demo_matches_paper_setup():
    cfg = load_config(LAUNCH / "demo.yaml")
    assert len(cfg.robots) == 10 and len(cfg.consumers) == 4
    assert all(r.kind == "crazyflie" and r.backend == "sim" for r in cfg.robots)
    assert (cfg.demand_matrix() > 0).all()  # every consumer demands both types
    width = cfg.arena.x[1] - cfg.arena.x[0]
    assert cfg.comm_radius / width == pytest.approx(1.0 / 2.0)  # C = 1 on [-1, 1]^2
    assert set(cfg.type_depletion().values()) == {"persistent", "instantaneous"}


SHIPPED_CKPT = "lgtc_policy:checkpoints/lgtc_ippo_n10_m4.pt"


@pytest.mark.parametrize("name", ["demo.yaml", "discharge.yaml"])
def test_scenarios_fit_the_shipped_checkpoint(name):
    """The shipped network takes any N, M but exactly r = 2 resource types."""
    cfg = load_config(LAUNCH / name)
    assert cfg.policy.checkpoint == SHIPPED_CKPT
    assert len(cfg.resource_types) == 2
    assert (cfg.supply_matrix().sum(0) <= cfg.demand_matrix().sum(0) + 1e-12).all()


def test_discharge_scenario_layout():
    cfg = load_config(LAUNCH / "discharge.yaml")
    assert len(cfg.robots) == 5 and len(cfg.consumers) == 3
    assert cfg.type_depletion()["battery"] == "persistent"
    assert all(r.resources["battery"].amount == 1.0 for r in cfg.robots)
    assert cfg.supply_matrix()[:, 1].sum() == 0 and cfg.demand_matrix()[:, 1].sum() == 0
    discharge, land = cfg.events
    assert (discharge.type, discharge.t, discharge.amount) == ("discharge", 50.0, 0.0)
    assert (land.type, land.robot) == ("land", discharge.robot)


def test_cli_reports_problems_and_exits_nonzero(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fileversion: 1\narena: {x: [0, 1]}\nrobots: 3\nfoo: 1\n")
    assert swarm_main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    for path in ("arena.y:", "robots:", "foo:", "comm_radius:"):
        assert f"error: {path}" in err
    assert swarm_main(["validate", str(tmp_path / "missing.yaml")]) == 1
    bad.write_text("robots: [unclosed\n")
    assert swarm_main(["validate", str(bad)]) == 1
    assert "YAML syntax error at line" in capsys.readouterr().err


# ----------------------------------------------------------------------------- fuzzing

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["crazyflie", "ground", "sim", "cflib", "persistent", "cf", "cf1", "c1"])
)
keys = st.sampled_from(
    [
        "fileversion",
        "arena",
        "x",
        "y",
        "z",
        "robots",
        "name",
        "type",
        "kind",
        "pose",
        "radius",
        "resources",
        "amount",
        "depletion",
        "consumers",
        "demand",
        "position",
        "events",
        "t",
        "robot",
        "comm_radius",
        "robot_types",
        "rates",
        "safety",
        "policy",
        "battery",
        "uri",
        "backend",
    ]
) | st.text(max_size=6)
nested = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)


def _mutate(data, path_choice, value):
    """Replace one leaf/subtree of a valid config by fuzz data."""
    node = data
    for step in path_choice[:-1]:
        if isinstance(node, dict) and node:
            node = node[sorted(node)[step % len(node)]]
        elif isinstance(node, list) and node:
            node = node[step % len(node)]
    if isinstance(node, dict) and node:
        node[sorted(node)[path_choice[-1] % len(node)]] = value
    elif isinstance(node, list) and node:
        node[path_choice[-1] % len(node)] = value
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nested)
def test_fuzz_arbitrary_data_never_crashes(data):
    problems, _ = validate([data] if isinstance(data, str) else data)
    assert problems, "random data is never a complete swarm file"
    assert all(p.path and p.message and p.fix is not None for p in problems)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 50), min_size=1, max_size=5), nested)
def test_fuzz_mutated_valid_config_never_crashes(path_choice, value):
    data = _mutate(copy.deepcopy(BASE), path_choice, value)
    problems, warnings = validate(data)
    for p in problems + warnings:
        assert isinstance(p.path, str) and p.message


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_cli_on_arbitrary_text(tmp_path_factory, text):
    f = tmp_path_factory.mktemp("fuzz") / "swarm.yaml"
    f.write_text(text, encoding="utf-8")
    assert swarm_main(["validate", str(f)]) in (0, 1)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=100))
def test_fuzz_cli_on_binary(tmp_path_factory, blob):
    f = tmp_path_factory.mktemp("fuzzb") / "swarm.yaml"
    f.write_bytes(blob)
    assert swarm_main(["validate", str(f)]) == 1


def test_yaml_dump_of_loaded_config_revalidates(tmp_path):
    cfg = load_config(LAUNCH / "example.yaml")
    out = tmp_path / "x.yaml"
    out.write_text(yaml.safe_dump(cfg.to_mapping()))
    assert load_config(out).robots == cfg.robots


def test_yaml_alias_bomb_is_reported_quickly(tmp_path, capsys):
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    rows += ["fileversion: *i", "robots: {x: *i}", "comm_radius: *i", "consumers: [*i]"]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(rows) + "\n")
    assert swarm_main(["validate", str(bomb)]) == 1
    err = capsys.readouterr().err
    assert "comm_radius: expected a number" in err and len(err) < 5000
