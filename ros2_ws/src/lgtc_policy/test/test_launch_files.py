"""The launch files, without the ``launch`` packages (not installable here).

* :func:`sim_bridge.bringup.launch_plan` (all that ``swarm.launch.py`` decides) is unit
  tested: arguments, defaults, optional rviz2 / ``ros2 bag`` looked up and skipped with one
  warning each when missing;
* every launch file is executed against small stand-ins of ``launch`` / ``launch_ros`` that
  record what the file builds: the actions ``swarm.launch.py`` returns for the demo with
  ``rviz:=true`` and no rviz2, the arguments ``launch/*.launch.py`` hand to it, and the
  parameters ``cbf_filter.launch.py`` gives its node, typed as ``launch_ros`` types them;
* every launch file references only arguments it (or the file it includes) declares, and
  passes the user's values on instead of overriding them (checked on the source, AST).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest
import yaml
from sim_bridge.bringup import LAUNCH_ARGUMENTS, BringupError, launch_flag, launch_plan, plan
from sim_bridge.config import load_config

REPO = Path(__file__).resolve().parents[4]
SWARM_LAUNCH = REPO / "ros2_ws/src/lgtc_policy/launch/swarm.launch.py"
SCENARIO_LAUNCH = {
    REPO / "launch/demo.launch.py": REPO / "launch/demo.yaml",
    REPO / "launch/discharge.launch.py": REPO / "launch/discharge.yaml",
}
CBF_LAUNCH = REPO / "ros2_ws/src/cbf_filter/launch/cbf_filter.launch.py"
ALL_LAUNCH = [SWARM_LAUNCH, *SCENARIO_LAUNCH, CBF_LAUNCH]
DEMO = str(REPO / "launch" / "demo.yaml")


def nothing_installed(name: str) -> bool:
    return False


# ----------------------------------------------------------------------------- launch_plan


def test_defaults_start_the_planned_nodes_and_nothing_optional():
    todo = launch_plan({"config": DEMO}, has_package=nothing_installed, which=lambda _: None)
    assert todo.specs == plan(load_config(DEMO), DEMO)
    assert len(todo.specs) == 23  # world, relay, services, 10 CBF, 10 policies
    assert (todo.rviz, todo.record, todo.warnings) == (False, "", [])


def test_rviz_without_rviz2_is_one_warning_and_the_swarm_starts():
    todo = launch_plan(
        {"config": DEMO, "rviz": "true"}, has_package=nothing_installed, which=lambda _: None
    )
    assert len(todo.specs) == 23 and not todo.rviz
    assert len(todo.warnings) == 1 and "rviz2 is not installed" in todo.warnings[0]
    with_rviz = launch_plan(
        {"config": DEMO, "rviz": "true"}, has_package=lambda p: p == "rviz2", which=lambda _: None
    )
    assert with_rviz.rviz and with_rviz.warnings == []


def test_record_needs_ros2_bag_with_mcap_else_one_warning():
    args = {"config": DEMO, "record": "bag"}
    todo = launch_plan(args, has_package=lambda p: p == "ros2bag", which=lambda _: "/usr/bin/ros2")
    assert todo.record == "" and len(todo.warnings) == 1
    assert "rosbag2_storage_mcap" in todo.warnings[0] and "ros2bag" not in todo.warnings[0]
    both = launch_plan(
        {**args, "rviz": "1"}, has_package=nothing_installed, which=lambda _: None
    )  # two optional parts missing: one warning each
    assert len(both.warnings) == 2 and len(both.specs) == 23
    ok = launch_plan(args, has_package=lambda p: True, which=lambda _: "/usr/bin/ros2")
    assert ok.record == "bag" and ok.warnings == []


def test_arguments_are_honoured():
    todo = launch_plan(
        {"config": DEMO, "policy": "false", "cbf": "false", "takeoff": "true", "backend": "sim"},
        has_package=nothing_installed,
    )
    names = {s.name for s in todo.specs}
    assert "policy" not in names and "cbf_filter" not in names
    world = next(s for s in todo.specs if s.name == "world")
    assert world.parameters["autostart"] is True
    assert world.parameters["backend_override"] == "sim"


def test_config_from_the_environment_and_errors_before_anything_starts(tmp_path):
    todo = launch_plan({}, has_package=nothing_installed, environ={"SWARM_CONFIG": DEMO})
    assert todo.config == DEMO
    with pytest.raises(BringupError, match="config:="):
        launch_plan({}, has_package=nothing_installed, environ={})
    with pytest.raises(BringupError, match="rviz"):
        launch_plan({"config": DEMO, "rviz": "maybe"}, has_package=nothing_installed)
    with pytest.raises(BringupError, match="unknown launch arguments"):
        launch_plan({"config": DEMO, "rvis": "true"}, has_package=nothing_installed)
    bad = tmp_path / "bad.yaml"
    bad.write_text("fileversion: 1\nrobots: []\n")
    with pytest.raises(BringupError):
        launch_plan({"config": str(bad)}, has_package=nothing_installed)


def test_launch_flag():
    assert [launch_flag("x", v) for v in ("true", "True", "1", "on", "no", "0")] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]


# ----------------------------------------------------------------------------- stand-ins


class Recorded:
    """An action or substitution of the stand-in ``launch``: remembers its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorded):
    def perform(self, context):
        return context[self.args[0]]


class Logger:
    def __init__(self):
        self.lines = []

    def warning(self, msg):
        self.lines.append(("warning", msg))

    def info(self, msg):
        self.lines.append(("info", msg))


@pytest.fixture
def fake_launch(monkeypatch, tmp_path):
    """``launch`` / ``launch_ros`` stand-ins in sys.modules; an ament prefix with lgtc_policy."""
    logger = Logger()
    classes = {
        "launch": {"LaunchDescription": Recorded},
        "launch.actions": {
            name: type(name, (Recorded,), {})
            for name in (
                "DeclareLaunchArgument",
                "ExecuteProcess",
                "OpaqueFunction",
                "IncludeLaunchDescription",
                "LogInfo",
            )
        },
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch.launch_description_sources": {
            "PythonLaunchDescriptionSource": type("PythonLaunchDescriptionSource", (Recorded,), {})
        },
        "launch.logging": {"get_logger": lambda name=None: logger},
        "launch_ros": {},
        "launch_ros.actions": {"Node": type("Node", (Recorded,), {})},
        "launch_ros.parameter_descriptions": {
            "ParameterValue": type("ParameterValue", (Recorded,), {})
        },
    }
    for name, attrs in classes.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        if "." not in name:
            module.__path__ = []
        monkeypatch.setitem(sys.modules, name, module)
    prefix = tmp_path / "prefix"
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages"
    marker.mkdir(parents=True)
    (marker / "lgtc_policy").touch()
    (prefix / "share" / "lgtc_policy").mkdir()
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    return logger, prefix


def load_launch_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"launch_file_{path.stem.split('.')[0]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_swarm_launch(args: dict[str, str]):
    """generate_launch_description() + the OpaqueFunction, as ``ros2 launch`` would."""
    ld = load_launch_file(SWARM_LAUNCH).generate_launch_description()
    entities = ld.args[0]
    declared = {
        e.args[0]: e.kwargs["default_value"]
        for e in entities
        if type(e).__name__ == "DeclareLaunchArgument"
    }
    context = {**declared, **args}
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    return declared, opaque.kwargs["function"](context)


def test_swarm_launch_rviz_true_without_rviz2_starts_the_swarm_with_one_warning(fake_launch):
    logger, _ = fake_launch
    declared, actions = run_swarm_launch({"config": DEMO, "rviz": "true"})
    assert declared == {name: default for name, (default, _) in LAUNCH_ARGUMENTS.items()}
    nodes = [a.kwargs for a in actions if type(a).__name__ == "Node"]
    specs = plan(load_config(DEMO), DEMO)
    assert [(n["package"], n["executable"], n["name"], n["namespace"]) for n in nodes] == [
        (s.package, s.executable, s.name, s.namespace) for s in specs
    ]
    assert all(n["parameters"] == [s.parameters] for n, s in zip(nodes, specs))
    assert len(actions) == 23  # no rviz2 node
    assert [level for level, _ in logger.lines] == ["warning"]
    assert "rviz2 is not installed" in logger.lines[0][1]


def test_swarm_launch_bad_config_fails_before_any_action(fake_launch, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fileversion: 1\nrobots: []\n")
    with pytest.raises(RuntimeError):
        run_swarm_launch({"config": str(bad)})


@pytest.mark.parametrize("path", list(SCENARIO_LAUNCH), ids=lambda p: p.name)
def test_scenario_launch_hands_the_users_arguments_on(fake_launch, path):
    _, prefix = fake_launch
    ld = load_launch_file(path).generate_launch_description()
    entities = ld.args[0]
    declared = {
        e.args[0]: e.kwargs["default_value"]
        for e in entities
        if type(e).__name__ == "DeclareLaunchArgument"
    }
    assert declared == {"config": str(SCENARIO_LAUNCH[path]), "takeoff": "true"}
    (include,) = [e for e in entities if type(e).__name__ == "IncludeLaunchDescription"]
    source = include.args[0]
    assert source.args[0] == str(prefix / "share/lgtc_policy/launch/swarm.launch.py")
    handed = dict(include.kwargs["launch_arguments"])
    # the user's value (a LaunchConfiguration of the same name), not a fixed one
    assert {k: (type(v).__name__, v.args) for k, v in handed.items()} == {
        "config": ("LaunchConfiguration", ("config",)),
        "takeoff": ("LaunchConfiguration", ("takeoff",)),
    }
    # what swarm.launch.py then does with the defaults and with a user's config
    for user in ({}, {"config": DEMO, "takeoff": "false"}):
        args = {k: user.get(k, declared[k]) for k in handed}
        todo = launch_plan(args, has_package=nothing_installed)
        assert todo.config == args["config"]
        world = next(s for s in todo.specs if s.name == "world")
        assert world.parameters["autostart"] is (args["takeoff"] == "true")


def launch_ros_parameter(value, context):
    """A ``Node`` parameter value as launch_ros 0.26 (Jazzy) hands it to the node.

    ``launch_ros.utilities.evaluate_parameters``: a bare substitution is performed and the
    text read as YAML (``''`` for an empty one; ``None`` or a mapping is refused with a
    TypeError), ``ParameterValue(..., value_type=str)`` stays the text, a plain value stays.
    """
    if type(value).__name__ == "ParameterValue":
        assert value.kwargs.get("value_type") is str, "only string ParameterValues modelled"
        return value.args[0].perform(context)
    if isinstance(value, LaunchConfiguration):
        loaded = yaml.safe_load(value.perform(context) or "''")
        if not isinstance(loaded, (bool, int, float, str)):
            raise TypeError(f"launch_ros refuses {loaded!r} ({type(loaded).__name__})")
        return loaded
    return value


@pytest.mark.parametrize("robot", ["cf1", "on", "null", "yes", "off"])
def test_cbf_launch_hands_robot_and_config_on_as_strings(fake_launch, robot):
    entities = load_launch_file(CBF_LAUNCH).generate_launch_description().args[0]
    declared = {
        e.args[0]: e.kwargs.get("default_value")
        for e in entities
        if type(e).__name__ == "DeclareLaunchArgument"
    }
    assert declared == {"robot": None, "config": "", "use_sim_time": "false"}
    (node,) = [e for e in entities if type(e).__name__ == "Node"]
    assert (node.kwargs["package"], node.kwargs["executable"]) == ("cbf_filter", "cbf_node")
    (params,) = node.kwargs["parameters"]
    for config in ("", DEMO):
        for sim_time in ("false", "true"):
            context = {"robot": robot, "config": config, "use_sim_time": sim_time}
            got = {k: launch_ros_parameter(v, context) for k, v in params.items()}
            # a robot named `on` must not reach the node as True, nor `null` stop the launch
            assert got == {"robot": robot, "config": config, "use_sim_time": sim_time == "true"}
    assert node.kwargs["namespace"].perform({"robot": robot}) == robot


# ----------------------------------------------------------------------------- source checks


def _declared_and_referenced(path: Path) -> tuple[set[str], set[str], set[str]]:
    """(declared, referenced via LaunchConfiguration, handed to an include) argument names.

    Iterating ``LAUNCH_ARGUMENTS`` declares / references all of its names.
    """
    tree = ast.parse(path.read_text())
    declared, referenced, handed = set(), set(), set()
    uses_table = any(isinstance(n, ast.Name) and n.id == "LAUNCH_ARGUMENTS" for n in ast.walk(tree))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        first = node.args[0] if node.args else None
        literal = first.value if isinstance(first, ast.Constant) else None
        target = {"DeclareLaunchArgument": declared, "LaunchConfiguration": referenced}.get(
            node.func.id
        )
        if target is not None:
            if literal is not None:
                target.add(literal)
            else:
                assert uses_table, f"{path.name}: {ast.unparse(node)} names no argument"
                target.update(LAUNCH_ARGUMENTS)
        for kw in node.keywords:
            if node.func.id == "IncludeLaunchDescription" and kw.arg == "launch_arguments":
                table = kw.value.func.value  # {...}.items()
                handed.update(k.value for k in table.keys)
    return declared, referenced, handed


@pytest.mark.parametrize("path", ALL_LAUNCH, ids=lambda p: p.name)
def test_launch_file_references_only_declared_arguments(path):
    compile(path.read_text(), str(path), "exec")
    declared, referenced, handed = _declared_and_referenced(path)
    assert referenced <= declared, f"{path.name}: {referenced - declared} not declared"
    if handed:  # an include of swarm.launch.py: it must know every argument handed to it
        swarm_declared, _, _ = _declared_and_referenced(SWARM_LAUNCH)
        assert handed <= swarm_declared
        assert handed <= referenced  # handed on from the user's arguments, not overridden
    # every `name:=` the docstring advertises is declared here or by swarm.launch.py
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    advertised = set(re.findall(r"\b([a-z_]+):=", doc))
    known = declared | (set(LAUNCH_ARGUMENTS) if handed else set())
    assert advertised <= known, f"{path.name} advertises {advertised - known}"
