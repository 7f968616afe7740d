"""DMAR bringup and launch files, without the ``launch`` packages (not installable here).

* ``bringup.plan`` starts one DMAR node per robot for a routing config (launch/dmar.yaml and
  the mixed team), by package, executable and plugin names, and the plugins import;
* ``dmar_agent/launch/dmar.launch.py`` run against small stand-ins of ``launch`` /
  ``launch_ros`` builds one ``Node`` per spec of ``launch_plan``, and with ``rviz:=true`` (rviz2
  installed) rviz2 on this package's ``config/dmar.rviz``, which shows the world's and the
  agents' marker layers; ``launch/dmar.launch.py`` hands the user's ``config`` and ``takeoff``
  on to it; both reference only declared arguments.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml
from sim_bridge.bringup import LAUNCH_ARGUMENTS, check_plugins, launch_plan, plan
from sim_bridge.config import load_config

REPO = Path(__file__).resolve().parents[4]
PKG_LAUNCH = REPO / "ros2_ws/src/dmar_agent/launch/dmar.launch.py"
STACK_LAUNCH = REPO / "launch/dmar.launch.py"
CONFIGS = [REPO / "launch/dmar.yaml", REPO / "launch/dmar_mixed.yaml"]
RVIZ = REPO / "ros2_ws/src/dmar_agent/config/dmar.rviz"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_plan_starts_a_dmar_node_per_robot(config):
    cfg = load_config(config)
    specs = plan(cfg, config, autostart=True)
    check_plugins(specs)
    dmar = [s for s in specs if s.package == "dmar_agent"]
    assert [(s.executable, s.name, s.namespace, s.plugin) for s in dmar] == [
        ("dmar_node", "dmar", f"/{r}", "dmar_agent.ros.node:DmarNode") for r in cfg.robot_names
    ]
    assert all(s.parameters == {"config": str(config), "robot": s.namespace[1:]} for s in dmar)
    assert len([s for s in specs if s.name == "cbf_filter"]) == len(cfg.robots)
    assert not [s for s in specs if s.package == "lgtc_policy"]
    relay = next(s for s in specs if s.name == "comm_relay")
    assert relay.parameters["deliver"] == "periodic"
    without = plan(cfg, config, policy=False)
    assert not [s for s in without if s.package == "dmar_agent"]
    unfiltered = plan(cfg, config, cbf=False)
    assert [s.name for s in unfiltered if s.package == "sim_bridge"][-1] == "cmd_passthrough"


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorded):
    def perform(self, context):
        return context[self.args[0]]


@pytest.fixture
def fake_launch(monkeypatch, tmp_path):
    """``launch`` / ``launch_ros`` stand-ins; an ament prefix holding dmar_agent."""
    warnings: list = []
    logger = types.SimpleNamespace(warning=warnings.append, info=lambda m: None)
    names = (
        "DeclareLaunchArgument",
        "ExecuteProcess",
        "OpaqueFunction",
        "IncludeLaunchDescription",
    )
    classes = {
        "launch": {"LaunchDescription": Recorded},
        "launch.actions": {n: type(n, (Recorded,), {}) for n in names},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch.launch_description_sources": {
            "PythonLaunchDescriptionSource": type("PythonLaunchDescriptionSource", (Recorded,), {})
        },
        "launch.logging": {"get_logger": lambda name=None: logger},
        "launch_ros": {},
        "launch_ros.actions": {"Node": type("Node", (Recorded,), {})},
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
    (marker / "dmar_agent").touch()
    (prefix / "share" / "dmar_agent").mkdir()
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    return warnings, prefix


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"launch_{path.parent.name}_dmar", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _declared(entities) -> dict:
    return {
        e.args[0]: e.kwargs["default_value"]
        for e in entities
        if type(e).__name__ == "DeclareLaunchArgument"
    }


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_package_launch_starts_the_planned_nodes(fake_launch, config):
    warnings, _ = fake_launch
    entities = _load(PKG_LAUNCH).generate_launch_description().args[0]
    declared = _declared(entities)
    assert declared == {name: default for name, (default, _) in LAUNCH_ARGUMENTS.items()}
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    context = {**declared, "config": str(config), "takeoff": "true", "rviz": "true"}
    actions = opaque.kwargs["function"](context)
    todo = launch_plan(
        {k: context[k] for k in LAUNCH_ARGUMENTS}, has_package=lambda p: False, which=lambda _: None
    )
    nodes = [a.kwargs for a in actions]
    assert [(n["package"], n["executable"], n["name"], n["namespace"]) for n in nodes] == [
        (s.package, s.executable, s.name, s.namespace) for s in todo.specs
    ]
    assert sum(n["package"] == "dmar_agent" for n in nodes) == len(load_config(config).robots)
    assert len(warnings) == 1 and "rviz2 is not installed" in warnings[0]


def test_package_launch_rviz_opens_the_dmar_rviz_config(fake_launch):
    """rviz:=true with rviz2 installed: rviz2 on share/dmar_agent/config/dmar.rviz (not a bare,
    empty rviz2 on the default fixed frame ``map``, where none of the markers shows)."""
    warnings, prefix = fake_launch
    (prefix / "share/ament_index/resource_index/packages/rviz2").touch()
    (prefix / "share/rviz2").mkdir()
    entities = _load(PKG_LAUNCH).generate_launch_description().args[0]
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    context = {**_declared(entities), "config": str(CONFIGS[0]), "rviz": "true"}
    actions = opaque.kwargs["function"](context)
    rviz = [a.kwargs for a in actions if a.kwargs.get("package") == "rviz2"]
    assert len(rviz) == 1 and warnings == []
    assert rviz[0]["executable"] == "rviz2"
    assert rviz[0].get("arguments") == ["-d", str(prefix / "share/dmar_agent/config/dmar.rviz")]
    # the file it names is the package's (setup.py installs config/*.rviz there)
    assert RVIZ.is_file()


def test_rviz_config_shows_world_routing_and_cluster_markers():
    from sim_bridge import topics

    rviz = yaml.safe_load(RVIZ.read_text())
    manager = rviz["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == topics.WORLD_FRAME
    displays = {
        d["Topic"]["Value"]: d
        for d in manager["Displays"]
        if d["Class"] == "rviz_default_plugins/MarkerArray"
    }
    assert set(displays) == {topics.MARKERS, topics.POLICY_MARKERS}
    assert all(d["Enabled"] for d in displays.values())
    world = set(displays[topics.MARKERS]["Namespaces"])
    assert {"robots", "consumers", "comm"} <= world
    assert {"routing_grid", "routing_obstacles", "routing_tasks", "routing_visited"} <= world
    assert set(displays[topics.POLICY_MARKERS]["Namespaces"]) == {"dmar_cluster"}
    for ns in world | {"dmar_cluster"}:
        assert ns in topics.__doc__, ns


def test_package_launch_refuses_a_config_without_routing(fake_launch):
    entities = _load(PKG_LAUNCH).generate_launch_description().args[0]
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    context = {**_declared(entities), "config": str(REPO / "launch/demo.yaml")}
    with pytest.raises(RuntimeError, match="no routing section"):
        opaque.kwargs["function"](context)


def test_stack_launch_hands_the_users_arguments_on(fake_launch):
    _, prefix = fake_launch
    entities = _load(STACK_LAUNCH).generate_launch_description().args[0]
    assert _declared(entities) == {"config": str(REPO / "launch/dmar.yaml"), "takeoff": "true"}
    (include,) = [e for e in entities if type(e).__name__ == "IncludeLaunchDescription"]
    assert include.args[0].args[0] == str(prefix / "share/dmar_agent/launch/dmar.launch.py")
    handed = dict(include.kwargs["launch_arguments"])
    assert {k: (type(v).__name__, v.args) for k, v in handed.items()} == {
        "config": ("LaunchConfiguration", ("config",)),
        "takeoff": ("LaunchConfiguration", ("takeoff",)),
    }


@pytest.mark.parametrize("path", [PKG_LAUNCH, STACK_LAUNCH], ids=lambda p: str(p.parent.name))
def test_launch_file_references_only_declared_arguments(path):
    tree = ast.parse(path.read_text())
    declared, referenced = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
            first = node.args[0]
            target = {"DeclareLaunchArgument": declared, "LaunchConfiguration": referenced}.get(
                node.func.id
            )
            if target is not None:
                target.update(
                    [first.value] if isinstance(first, ast.Constant) else LAUNCH_ARGUMENTS
                )
    assert referenced <= declared
