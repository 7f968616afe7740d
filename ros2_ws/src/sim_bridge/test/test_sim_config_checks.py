"""The declarative check engine of the swarm config (``sim_bridge.config.checks``).

A field's :func:`rule` metadata drives how its key is checked and what the problem says;
every bounded number of the schema rejects any value outside its bounds with a problem at
that key's path.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_bridge.config import (
    CLASS_K,
    BatteryConfig,
    ConsumerConfig,
    Event,
    Problem,
    Rates,
    ResourceSpec,
    RobotConfig,
    RoutingConfig,
    Safety,
    SwarmConfig,
    validate,
)
from sim_bridge.config.cells import RANDOM_OBSTACLE_RULES, RANDOM_TASK_RULES
from sim_bridge.config.checks import (
    POSITIVE,
    Checker,
    Rule,
    fill,
    first_missing,
    read,
    rule,
    rules_of,
)
from sim_bridge.config.routing import GRID_RULES
from sim_bridge.errors import SwarmError


@dataclass(frozen=True)
class Pump:
    """A made-up section: its metadata alone says how each key is checked."""

    flow: float = field(default=1.0, metadata=rule(**POSITIVE, units="l/s"))
    stages: int = field(default=2, metadata=rule(kind="integer", low=1, high=5))
    mode: str = field(default="eco", metadata=rule(kind="choice", choices=("eco", "boost")))
    label: str | None = field(default=None, metadata=rule(kind="text", nullable=True))
    tag: str = field(default="p1", metadata=rule(kind="name"))


def problems(value, path="pump", cls=Pump):
    c = Checker()
    got = fill(c, value, path, cls)
    return got, c.problems


def test_metadata_drives_the_message_of_each_key():
    got, found = problems({"flow": 0, "stages": 9, "mode": "bost", "tag": "1x"})
    assert got is None
    assert found == [
        Problem("pump.flow", "0 is out of range", "use a value > 0.0"),
        Problem("pump.stages", "9 is out of range", "use a value <= 5"),
        Problem(
            "pump.mode",
            "'bost' is not one of ['eco', 'boost']",
            "use one of them (did you mean 'boost'?)",
        ),
        Problem(
            "pump.tag",
            "'1x' is not a valid ROS name",
            "start with a letter; use only letters, digits and '_'",
        ),
    ]


def test_fill_applies_defaults_nulls_and_whole_floats():
    got, found = problems({"stages": 3.0, "label": None})
    assert found == []
    assert got == Pump(stages=3, label=None)
    assert isinstance(got.stages, int)


def test_unknown_key_gets_a_did_you_mean_from_the_declared_fields():
    _, found = problems({"flwo": 2.0})
    assert found == [Problem("pump.flwo", "unknown key", "remove it (did you mean `flow`?)")]


def test_a_required_key_reports_its_own_fix():
    rules = {"size": Rule(missing="add `size: <m>`"), "colour": Rule(kind="text", missing="x")}
    c = Checker()
    assert not first_missing(c, {}, "box", rules)
    assert c.problems == [Problem("box.size", "missing", "add `size: <m>`")]
    values, ok = read(c, {"size": "big"}, "box", rules)
    assert (values, ok) == ({}, False)
    assert c.problems[-1] == Problem("box.size", "expected a number, got 'big'", "write a number")


def test_schema_declares_its_rules():
    assert set(rules_of(Rates)) == {"control_hz", "sim_hz", "clock_hz", "markers_hz"}
    assert all(r.strict_low and r.low == 0.0 and r.units == "Hz" for r in rules_of(Rates).values())
    assert rules_of(Safety)["class_k"].choices == CLASS_K
    assert rules_of(ResourceSpec)["amount"].missing == "add `amount: <units>` (>= 0)"
    assert rules_of(RoutingConfig)["k"].kind == "integer"


def test_config_error_has_the_sim_bridge_root_and_stays_a_value_error():
    problems_, _ = validate({"fileversion": 1})
    assert problems_
    from sim_bridge.config import ConfigError

    assert issubclass(ConfigError, SwarmError) and issubclass(ConfigError, ValueError)


# ----------------------------------------------------------------------------- property

#: Every bounded number a swarm file may hold: (where, key, rule).
BOUNDED = [
    (cls.__name__, key, spec)
    for cls in (
        Rates,
        Safety,
        BatteryConfig,
        ResourceSpec,
        RobotConfig,
        ConsumerConfig,
        Event,
        RoutingConfig,
        SwarmConfig,
    )
    for key, spec in rules_of(cls).items()
    if spec.kind in ("number", "integer") and (spec.low is not None or spec.high is not None)
] + [
    (name, key, spec)
    for name, rules in (
        ("routing", GRID_RULES),
        ("routing.random_obstacles", RANDOM_OBSTACLE_RULES),
        ("routing.tasks.random", RANDOM_TASK_RULES),
    )
    for key, spec in rules.items()
    if spec.low is not None or spec.high is not None
]


def out_of_bounds(spec: Rule) -> st.SearchStrategy:
    """Any number (an integer for an ``integer`` rule) outside the rule's bounds."""
    big = 10**300  # larger ones get their own message ("too large")
    sides = []
    if spec.low is not None:
        top = math.ceil(spec.low) - (0 if spec.strict_low and spec.low == int(spec.low) else 1)
        sides.append(st.integers(min_value=-big, max_value=top))
        if spec.kind == "number":
            sides.append(
                st.floats(max_value=spec.low, exclude_max=not spec.strict_low, allow_infinity=False)
            )
    if spec.high is not None:
        sides.append(st.integers(min_value=math.floor(spec.high) + 1, max_value=big))
        if spec.kind == "number":
            sides.append(st.floats(min_value=spec.high, exclude_min=True, allow_infinity=False))
    return st.one_of(sides)


@pytest.mark.parametrize("where,key,spec", BOUNDED, ids=[f"{w}.{k}" for w, k, _ in BOUNDED])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_out_of_bounds_value_is_rejected_at_its_key_path(where, key, spec, data):
    value = data.draw(out_of_bounds(spec))
    c = Checker()
    path = f"{where}.{key}"
    assert c.value(value, path, spec) is None
    (problem,) = c.problems
    assert problem.path == path
    assert problem.message == f"{value!r} is out of range"
    assert problem.fix.startswith("use a value ")


SMALL = {
    "fileversion": 1,
    "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
    "comm_radius": 2.0,
    "robots": [
        {
            "name": "cf1",
            "kind": "crazyflie",
            "pose": [0.0, 0.0],
            "resources": {"energy": {"amount": 1.0, "depletion": "persistent"}},
        }
    ],
    "consumers": [{"name": "c1", "position": [1.0, 1.0], "radius": 0.3, "demand": {"energy": 2}}],
    "events": [{"t": 1.0, "type": "discharge", "robot": "cf1", "resource": "energy", "amount": 0}],
}
#: Key paths of bounded numbers in a whole file: (path into SMALL, the rule that bounds it).
IN_A_FILE = [
    (("rates", "sim_hz"), rules_of(Rates)["sim_hz"]),
    (("safety", "gamma"), rules_of(Safety)["gamma"]),
    (("comm_radius",), rules_of(SwarmConfig)["comm_radius"]),
    (("seed",), rules_of(SwarmConfig)["seed"]),
    (("robots", 0, "radius"), rules_of(RobotConfig)["radius"]),
    (("robots", 0, "resources", "energy", "amount"), rules_of(ResourceSpec)["amount"]),
    (("consumers", 0, "radius"), rules_of(ConsumerConfig)["radius"]),
    (("events", 0, "t"), rules_of(Event)["t"]),
]


def key_path(keys: tuple) -> str:
    out = ""
    for k in keys:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else k)
    return out


@pytest.mark.parametrize("keys,spec", IN_A_FILE, ids=[key_path(k) for k, _ in IN_A_FILE])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_out_of_bounds_value_in_a_file_names_its_key_path(keys, spec, data):
    value = data.draw(out_of_bounds(spec))
    doc = copy.deepcopy(SMALL)
    node = doc
    for k in keys[:-1]:
        node = node[k] if isinstance(node, list) else node.setdefault(k, {})
    node[keys[-1]] = value
    found, _ = validate(doc)
    path = key_path(keys)
    assert any(p.path == path and p.message == f"{value!r} is out of range" for p in found), found
