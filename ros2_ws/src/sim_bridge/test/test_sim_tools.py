"""Markers builder, recording schemas, render errors, and swarm.launch.py with stub launch."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from sim_bridge.bringup import plan
from sim_bridge.cli import main as swarm_main
from sim_bridge.config import load_config
from sim_bridge.recording import (
    RecordingError,
    msgdef,
    read_config,
    read_run,
    swarm_topics,
    write_run,
)
from sim_bridge.render import RenderError, render
from sim_bridge.ros.markers import swarm_markers
from visualization_msgs.msg import Marker

REPO = Path(__file__).resolve().parents[4]


def _markers(pos, comm_radius=1.0):
    n = len(pos)
    return swarm_markers(
        names=[f"r{i}" for i in range(n)],
        positions=np.asarray(pos, dtype=float),
        modes=np.array([2] * n),
        body_radius=np.full(n, 0.05),
        safety_distance=0.2,
        consumer_names=["c1"],
        consumer_positions=np.array([[1.0, 1.0]]),
        consumer_radius=np.array([0.3]),
        remaining=np.array([[0.5, 0.0]]),
        initial_demand=np.array([[1.0, 1.0]]),
        resource_types=("energy", "payload"),
        comm_radius=comm_radius,
    )


def test_markers_layers_and_comm_links():
    arr = _markers([[0, 0, 0.5], [0.5, 0, 0.5], [3, 3, 0.5]])
    by_ns = {}
    for m in arr.markers:
        by_ns.setdefault(m.ns, []).append(m)
    assert set(by_ns) == {"robots", "safety", "names", "consumers", "demand", "comm"}
    assert len(by_ns["robots"][0].points) == 3
    assert by_ns["robots"][0].type == Marker.SPHERE_LIST
    assert len(by_ns["comm"][0].points) == 2  # one link (0-1); robot 2 is beyond C
    assert by_ns["demand"][0].text == "c1: energy=0.50 payload=0.00"
    cyl = by_ns["consumers"][0]
    assert cyl.scale.x == pytest.approx(0.6) and cyl.scale.z == pytest.approx(0.02 + 0.3 * 0.25)
    ring = np.array([[p.x, p.y] for p in by_ns["safety"][0].points[:32]])
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 0.1)  # radius Ds / 2


def test_markers_skip_unknown_poses():
    arr = _markers([[0, 0, 0.5], [np.nan, np.nan, np.nan]])
    robots = next(m for m in arr.markers if m.ns == "robots")
    assert len(robots.points) == 1 and len(robots.colors) == 1


def test_msgdef_includes_dependencies():
    text = msgdef("geometry_msgs/msg/PoseStamped")
    assert text.startswith("# A Pose with reference coordinate frame and timestamp")
    for dep in ("std_msgs/Header", "geometry_msgs/Pose", "builtin_interfaces/Time"):
        assert f"MSG: {dep}" in text
    cfg = load_config(REPO / "launch" / "demo.yaml")
    assert len(swarm_topics(cfg)) == 3 + 5 * len(cfg.robots)  # pose, resources, 2 cmds, mode


def test_render_errors_are_clean(tmp_path, capsys):
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not an mcap file at all")
    with pytest.raises(RenderError, match="not a readable MCAP"):
        render(junk, tmp_path / "x.png")
    with pytest.raises(RenderError, match="use a .png or .gif"):
        render(junk, tmp_path / "x.jpg")
    assert swarm_main(["render", str(tmp_path / "missing.mcap"), "--out", "x.png"]) == 1
    assert "no such file" in capsys.readouterr().err


def _recording(path, cfg, positions=None, k=5):
    """A small recording of ``cfg`` (``write_run``): ``k`` samples, robots at their start."""
    start = np.array([r.pose[:3] for r in cfg.robots], dtype=float)
    pos = np.broadcast_to(start, (k, *start.shape)) if positions is None else positions
    return write_run(path, cfg, np.arange(k) * 0.1, pos)


def _with_config(path, stored: dict, topic_type="geometry_msgs/msg/PoseStamped", msg=None):
    """A recording whose swarm_config metadata is ``stored`` and one message on /cf1/pose."""
    from mcap_ros2.writer import Writer

    with open(path, "wb") as fh:
        w = Writer(fh)
        w.add_metadata("swarm_config", stored)
        schema = w.register_msgdef(topic_type, msgdef(topic_type))
        w.write_message("/cf1/pose", schema, msg or {}, log_time=1)
        w.finish()
    return path


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_damaged_recordings_are_one_line_naming_the_file(tmp_path, capsys):
    cfg = load_config(REPO / "launch" / "example.yaml")
    good = _recording(tmp_path / "good.mcap", cfg).read_bytes()
    (tmp_path / "empty.mcap").write_bytes(b"")
    (tmp_path / "cut.mcap").write_bytes(good[: len(good) // 2])  # recorder killed mid-write
    (tmp_path / "folder.mcap").mkdir()
    for name, want in (
        ("empty.mcap", "empty file"),
        ("cut.mcap", "not a readable MCAP recording"),
        ("folder.mcap", "is a folder"),
    ):
        path = tmp_path / name
        with pytest.raises(RecordingError, match=want):
            read_config(path)
        with pytest.raises(RecordingError, match=want):
            read_run(path, cfg)
        assert swarm_main(["render", str(path), "--out", str(tmp_path / "x.png")]) == 1
        line = _one_line(capsys.readouterr().err)
        assert (
            str(path) in line
            and want in line
            and "record the run again" in line
            or (want == "is a folder" and "pass the .mcap file" in line)
        )
    assert not list(tmp_path.glob("*.png"))


def test_a_stored_config_is_a_mapping_never_a_path(tmp_path):
    # a stored string used to be taken for a file path and loaded from the user's disk
    path = _with_config(tmp_path / "s.mcap", {"yaml": str(REPO / "launch" / "example.yaml")})
    with pytest.raises(RecordingError, match="is a str, not a mapping"):
        read_config(path)
    with pytest.raises(RenderError, match="is a str, not a mapping"):
        render(path, tmp_path / "x.png")
    bad = _with_config(tmp_path / "y.mcap", {"yaml": "robots: [unclosed\n  - :"})
    with pytest.raises(RecordingError, match="not valid YAML") as exc:
        read_config(bad)
    assert "\n" not in str(exc.value)
    with pytest.raises(RecordingError, match="no 'yaml' entry"):
        read_config(_with_config(tmp_path / "k.mcap", {"other": "x"}))
    invalid = _with_config(tmp_path / "i.mcap", {"yaml": "robots: 5\n"})
    with pytest.raises(RenderError, match="stored swarm_config is invalid") as exc:
        render(invalid, tmp_path / "x.png")
    assert "\n" not in str(exc.value)


def test_messages_of_another_type_are_one_line(tmp_path):
    cfg = load_config(REPO / "launch" / "example.yaml")
    stored = {"yaml": __import__("yaml").safe_dump(cfg.to_mapping())}
    path = _with_config(tmp_path / "w.mcap", stored, "std_msgs/msg/String", {"data": "hi"})
    with pytest.raises(RecordingError, match="a message on /cf1/pose is not what"):
        read_run(path, cfg)
    with pytest.raises(RenderError, match="a message on /cf1/pose is not what"):
        render(path, tmp_path / "x.png")


def test_render_refuses_nan_poses_and_unbounded_gifs_before_drawing(tmp_path):
    cfg = load_config(REPO / "launch" / "example.yaml")
    nan = _recording(tmp_path / "nan.mcap", cfg, np.full((5, len(cfg.robots), 3), np.nan))
    with pytest.raises(RenderError, match="only non-finite"):
        render(nan, tmp_path / "x.png")  # used to write an empty picture with exit 0
    good = _recording(tmp_path / "good.mcap", cfg)
    for fps in (float("inf"), 1e300, 101.0, float("nan"), 0.0):
        with pytest.raises(RenderError, match="--fps"):
            render(good, tmp_path / "x.gif", fps=fps, frames=2)
    with pytest.raises(RenderError, match="--frames 100000000: give a frame count from 1 to"):
        render(good, tmp_path / "x.gif", frames=100_000_000)  # used to run until out of memory
    (tmp_path / "d.png").mkdir()
    with pytest.raises(RenderError, match="--out .*d.png: is a folder"):
        render(good, tmp_path / "d.png")
    with pytest.raises(RenderError, match="good.mcap is a file, not a folder"):
        render(good, good / "x.png")
    assert not list(tmp_path.glob("*.gif")) and not list(tmp_path.glob(".*part*"))
    assert "2 frames" in render(good, tmp_path / "sub" / "ok.gif", fps=100.0, frames=2)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["ok.gif"]


def test_plan_goto_uses_passthrough_without_cbf():
    cfg = load_config(REPO / "launch" / "demo.yaml")
    names = [s.fqn for s in plan(cfg, REPO / "launch" / "demo.yaml", goto=True, cbf=False)]
    assert names == ["/world", "/comm_relay", "/swarm_services", "/cmd_passthrough", "/swarm_goto"]
    with_cbf = [s.fqn for s in plan(cfg, REPO / "launch" / "demo.yaml", goto=True)]
    assert "/cf10/cbf_filter" in with_cbf and not any(n.endswith("/policy") for n in with_cbf)


def _stub_launch(monkeypatch):
    """Minimal stand-ins for launch / launch_ros so the launch file's logic runs here."""

    class Action:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    mods = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch.logging": types.ModuleType("launch.logging"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
        "ament_index_python": types.ModuleType("ament_index_python"),
        "ament_index_python.packages": types.ModuleType("ament_index_python.packages"),
    }
    mods["launch"].LaunchDescription = Action
    for name in ("DeclareLaunchArgument", "ExecuteProcess", "OpaqueFunction"):
        setattr(mods["launch.actions"], name, type(name, (Action,), {}))
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["launch_ros.actions"].Node = type("Node", (Action,), {})
    mods["ament_index_python.packages"].get_package_share_directory = lambda pkg: f"/share/{pkg}"
    mods["ament_index_python.packages"].PackageNotFoundError = KeyError
    mods["launch.logging"].get_logger = lambda name=None: None  # no warning expected here
    # every optional tool is installed in this stand-in world (ros2 bag included)
    monkeypatch.setattr("shutil.which", lambda name: f"/opt/ros/jazzy/bin/{name}")
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)


def test_swarm_launch_file_builds_the_bringup_nodes(monkeypatch):
    _stub_launch(monkeypatch)
    path = REPO / "ros2_ws" / "src" / "lgtc_policy" / "launch" / "swarm.launch.py"
    spec = importlib.util.spec_from_file_location("swarm_launch", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    desc = mod.generate_launch_description()
    declared = [a.args[0] for a in desc.args[0] if type(a).__name__ == "DeclareLaunchArgument"]
    assert {"config", "backend", "rviz", "record"} <= set(declared)
    config = str(REPO / "launch" / "demo.yaml")
    context = {"config": config, "backend": "", "rviz": "true", "record": "bag",
               "policy": "true", "cbf": "true", "takeoff": "false", "group": "",
               "use_sim_time": "false"}  # fmt: skip
    (opaque,) = [a for a in desc.args[0] if type(a).__name__ == "OpaqueFunction"]
    run = opaque.kwargs["function"]  # sim_bridge.ros.launch_actions.swarm_actions
    actions = run(context)
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    specs = plan(load_config(config), config)
    assert len(nodes) == len(specs) + 1  # + rviz2
    assert [(n.kwargs["executable"], n.kwargs["namespace"]) for n in nodes[:-1]] == [
        (s.executable, s.namespace) for s in specs
    ]
    assert nodes[-1].kwargs["arguments"] == ["-d", "/share/lgtc_policy/config/swarm.rviz"]
    bag = next(a for a in actions if type(a).__name__ == "ExecuteProcess")
    assert bag.kwargs["cmd"][:6] == ["ros2", "bag", "record", "-s", "mcap", "-o"]
    assert "/cf1/pose" in bag.kwargs["cmd"]
    context.update(config=str(REPO / "launch" / "nope.yaml"))
    with pytest.raises(RuntimeError, match="cannot read"):
        run(context)


def test_swarm_is_the_worlds_door_and_points_to_the_mission_demos(capsys):
    """sim_bridge imports no mission package: the demos are `lgtc demo` and `dmar demo`."""
    with pytest.raises(SystemExit) as info:
        swarm_main(["demo"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        swarm_main(["--help"])
    assert info.value.code == 0
    assert "lgtc demo" in capsys.readouterr().out


def test_rviz_config_shows_world_and_policy_marker_layers():
    import yaml
    from sim_bridge import topics

    rviz = yaml.safe_load((REPO / "ros2_ws/src/lgtc_policy/config/swarm.rviz").read_text())
    displays = {
        d["Topic"]["Value"]: d
        for d in rviz["Visualization Manager"]["Displays"]
        if d["Class"] == "rviz_default_plugins/MarkerArray"
    }
    assert set(displays) == {topics.MARKERS, topics.POLICY_MARKERS}
    assert set(displays[topics.POLICY_MARKERS]["Namespaces"]) == {
        "lgtc_cluster",
        "lgtc_nominal",
        "lgtc_filtered",
    }
    assert {"robots", "consumers", "comm"} <= set(displays[topics.MARKERS]["Namespaces"])
    assert all(d["Enabled"] for d in displays.values())
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == topics.WORLD_FRAME
    for ns in ("lgtc_cluster", "lgtc_nominal", "lgtc_filtered"):
        assert ns in topics.__doc__


def test_swarm_bad_option_is_one_line_with_exit_2(capsys):
    """Fuzzed options: argparse's answer is one line naming the option (no usage block), and
    a non-finite --status-every is refused before anything starts."""
    with pytest.raises(SystemExit) as exc:
        swarm_main(["up", "launch/example.yaml", "--status-every", "nan"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "swarm up: error: argument --status-every: must be 0 or a number in [0.01, 1e+06], "
        "got 'nan' (see `swarm up --help`)"
    ]


@pytest.mark.parametrize(
    "flag,value,want",
    [
        # a period of 0 ns (busy loop) and one that overflowed rclpy's timer (a traceback)
        ("--status-every", "1e-300", "0 or a number in [0.01, 1e+06]"),
        ("--status-every", "1e300", "0 or a number in [0.01, 1e+06]"),
        # reached the relay node unchecked: a 1e300 s delay queued every message for good
        ("--latency", "1e300", "a number in [0, 10]"),
        ("--latency", "-1", "a number in [0, 10]"),
        ("--latency", "nan", "a number in [0, 10]"),
        # reported as the relay node's parameter, after the world had started
        ("--drop", "1", "a number in [0, 1)"),
        ("--drop", "nan", "a number in [0, 1)"),
        # inf ran forever, nan was refused with exit status 1
        ("--duration", "inf", "a number in (0, 1e+06]"),
        ("--duration", "nan", "a number in (0, 1e+06]"),
    ],
)
def test_swarm_up_out_of_range_numbers_are_one_line_with_exit_2(capsys, flag, value, want):
    with pytest.raises(SystemExit) as exc:
        swarm_main(["up", "launch/example.yaml", flag, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"swarm up: error: argument {flag}: must be {want}, got {value!r} (see `swarm up --help`)"
    ]


@pytest.mark.parametrize("flag", ["--record", "--log-dir"])
def test_swarm_up_unwritable_outputs_are_refused_before_any_node(tmp_path, capsys, flag):
    """--record naming a folder and --log-dir naming a file were tracebacks after the nodes had
    started; now one line and exit 1 before any node starts."""
    blocker = tmp_path / "taken"
    blocker.mkdir() if flag == "--record" else blocker.write_text("x")
    config = str(Path(__file__).resolve().parents[4] / "launch/example.yaml")
    code = swarm_main(["up", config, flag, str(blocker), "--mode", "processes"])
    out = capsys.readouterr()
    assert code == 1
    assert "[swarm]" not in out.out  # nothing was planned to start
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag} {blocker}"), lines


def test_swarm_up_with_a_missing_checkpoint_is_one_line_before_any_node(tmp_path, capsys):
    """A swarm file whose policy checkpoint does not exist printed the plan, started the world
    and the filters, then failed on the first policy node; now one line, exit 1, nothing
    planned. Without policy nodes (--no-policy) the checkpoint is not needed."""
    demo = Path(__file__).resolve().parents[4] / "launch/demo.yaml"
    text = demo.read_text().replace("lgtc_policy:checkpoints/lgtc_ippo_n10_m4.pt", "nope.pt")
    assert "nope.pt" in text
    bad = tmp_path / "demo.yaml"
    bad.write_text(text)
    assert swarm_main(["up", str(bad), "--duration", "1"]) == 1
    out = capsys.readouterr()
    assert "[swarm]" not in out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: policy.checkpoint:") and "nope.pt" in lines[0], lines
    assert "(fix: name an existing file" in lines[0]


def test_event_lines_name_the_faults_of_a_run() -> None:
    """swarm up's summary line of /swarm/events: routine take-offs left out, a watchdog landing
    with its silence, a skipped event with its reason, a refused call with its message, at
    most ``limit`` lines and a count of the rest (including those the monitor did not keep)."""
    from sim_bridge.ros.runner import RunResult, event_lines
    from sim_bridge.sim import describe_events

    events = [
        {"t": 0.0, "type": "takeoff", "robot": "cf1", "ok": True, "message": ""},
        {"t": 0.0, "type": "takeoff", "robot": "cf2", "ok": False, "message": "failed"},
        {"t": 12.34, "type": "fail", "robot": "cf3"},
        {"t": 15.0, "type": "watchdog_land", "robot": "cf2", "silence_s": 2.02},
        {"t": 50.0, "type": "discharge", "robot": None, "skipped": "no robot serves alone"},
        {"t": float("nan"), "type": "land", "robot": "cf4"},
    ]
    lines = event_lines(RunResult(events=events))
    assert lines == [
        "0.0 s takeoff cf2 (refused: failed)",
        "12.3 s fail cf3",
        "15.0 s watchdog_land cf2 (no command for 2.02 s)",
        "50.0 s discharge (skipped: no robot serves alone)",
        "? s land cf4",
    ]
    assert event_lines(RunResult(events=events, events_dropped=3), limit=2)[2:] == [
        "... and 6 more"
    ]
    assert event_lines(RunResult()) == [] == describe_events([])
    assert describe_events(events) == lines  # the mission reports' rule (dmar and lgtc demo)
