"""The node parameter helper (sim_bridge.ros.params) on a real rclpy node."""

from __future__ import annotations

import math

import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from sim_bridge.config import ConfigError
from sim_bridge.ros import params as P

pytestmark = pytest.mark.ros

TABLE = (
    P.Param("config", "", "swarm YAML", P.not_empty("pass -p config:=swarm.yaml")),
    P.Param("period_s", 0.5, "period [s]", P.positive("a duration [s]")),
    P.Param("share", 0.5, "responsibility", P.between(0.0, 1.0, "use 0.5", open_low=True)),
    P.Param("drop", 0.0, "drop probability", P.between(0.0, 1.0, "a probability")),
    P.Param("mode", "a", "mode", P.one_of(("a", "b")), dynamic=True),
    P.Param("gain", 1.0, "gain [1/s]", P.at_least(0.0, "e.g. 1.0"), dynamic=True),
    P.Param("count", 3, "count", P.between(1, 9, "1..9")),
    P.Param("arena", [math.nan], "bounds [m]"),
)


def _node(ctx, **values):
    overrides = [Parameter(k, value=v) for k, v in {"config": "x.yaml", **values}.items()]
    return Node("params_test", context=ctx, parameter_overrides=overrides)


def test_declare_read_and_descriptors(context):
    node = _node(context, period_s=2.0)
    try:
        values = P.declare_and_read(node, TABLE, P.config_error)
        assert values["config"] == "x.yaml" and values["period_s"] == 2.0
        assert values["mode"] == "a" and values["count"] == 3
        assert math.isnan(values["arena"][0])
        desc = node.describe_parameter("period_s")
        assert desc.description == "period [s]" and desc.read_only
        assert desc.additional_constraints == "must be finite and > 0"
        drop = node.describe_parameter("drop")
        assert drop.read_only and drop.floating_point_range[0].to_value == 1.0
        assert node.describe_parameter("count").integer_range[0].from_value == 1
        assert not node.describe_parameter("gain").read_only
        assert node.describe_parameter("gain").floating_point_range[0].from_value == 0.0
        # read-only parameters refuse run-time changes, ranges are enforced by rclpy
        assert not node.set_parameters([Parameter("period_s", value=1.0)])[0].successful
        assert not node.set_parameters([Parameter("gain", value=-1.0)])[0].successful
        assert node.set_parameters([Parameter("gain", value=2.0)])[0].successful
    finally:
        node.destroy_node()


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("config", "", "config: must be non-empty, got '' (fix: pass -p config:=swarm.yaml)"),
        ("period_s", 0.0, "period_s: must be finite and > 0, got 0.0 (fix: a duration [s])"),
        ("period_s", math.nan, "period_s: must be finite and > 0, got nan"),
        ("share", 0.0, "share: must be in (0, 1], got 0.0 (fix: use 0.5)"),
        ("drop", 1.5, "drop: must be in [0, 1], got 1.5 (fix: a probability)"),
        ("mode", "c", "mode: must be one of a, b, got 'c'"),
        ("gain", math.inf, "gain: must be >= 0, got inf"),
        ("count", 0, "count: must be in [1, 9], got 0"),
        # fuzzed types (-p name:=value of another type than the default's) were rclpy's
        # InvalidParameterTypeException tracebacks
        (
            "period_s",
            2,
            "period_s: must be a floating-point number, got '2' (integer) (fix: "
            "write e.g. 20.0 (with the decimal point))",
        ),
        ("count", 1.5, "count: must be an integer, got '1.5' (double)"),
        ("config", 5, "config: must be a string, got '5' (integer)"),
        ("arena", "abc", "arena: must be a list of floating-point numbers, got 'abc' (string)"),
    ],
)
def test_bad_start_value_is_one_clear_line(context, name, value, words):
    node = _node(context, **{name: value})
    try:
        with pytest.raises(ConfigError) as err:
            P.declare_and_read(node, TABLE, P.config_error)
        assert words in str(err.value)
    finally:
        node.destroy_node()


def test_on_set_callback_checks_rules_and_applies(context):
    node = _node(context)
    applied = []

    def apply(values):
        if values.get("mode") == "b" and "gain" in values and values["gain"] == 0.0:
            raise ValueError("gain: 0 with mode b stalls (fix: gain > 0)")
        applied.append(values)

    try:
        P.declare_and_read(node, TABLE, P.config_error)
        node.add_on_set_parameters_callback(P.on_set_callback(TABLE, apply, P.config_error))
        res = node.set_parameters([Parameter("mode", value="c")])[0]
        assert not res.successful and "mode: must be one of a, b, got 'c'" in res.reason
        assert node.get_parameter("mode").value == "a"
        assert node.set_parameters([Parameter("mode", value="b")])[0].successful
        assert applied == [{"mode": "b"}]
        res = node.set_parameters_atomically(
            [Parameter("mode", value="b"), Parameter("gain", value=0.0)]
        )
        assert not res.successful and "stalls" in res.reason
    finally:
        node.destroy_node()


def test_custom_error_factory_and_describe():
    class MyError(ValueError):
        pass

    def error(name, problem, fix):
        return MyError(f"{name}: {problem} (fix: {fix})")

    with pytest.raises(MyError, match=r"share: must be in \(0, 1\], got 2"):
        P.check(TABLE, {"share": 2}, error)
    assert P.check(TABLE, {"share": 1.0, "unknown": 3}, error) == {"share": 1.0, "unknown": 3}
    text = P.describe(TABLE)
    assert "period_s (0.5): period [s] [must be finite and > 0]" in text.splitlines()


@pytest.mark.parametrize(
    ("ros_args", "words"),
    [
        (["-p", "config"], "Couldn't parse parameter override rule: '-p config'"),
        (["--log-level", "bogus"], "Couldn't parse log level"),
    ],
)
def test_bad_ros_args_are_one_line_and_exit_2(capsys, ros_args, words):
    """rclpy.init's RCLError on a malformed --ros-args was a traceback from every node."""
    from sim_bridge.ros.spin import run_node

    def never():
        raise AssertionError("no node is built when the arguments are bad")

    code = run_node(never, "test_node", ["test_node", "--ros-args", *ros_args], exit_process=False)
    assert code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("test_node:")]
    assert len(lines) == 1 and words in lines[0] and "ros2 run --help" in lines[0], lines


@pytest.mark.parametrize(
    ("module", "name", "value", "words"),
    [
        ("goto_node", "gain", math.nan, "gain: must be >= 0, got nan"),
        ("ground_node", "hold_after_s", math.nan, "hold_after_s: must be finite and > 0"),
        ("ground_node", "projection_distance", -1.0, "projection_distance: must be finite and > 0"),
        # positive rules took infinity (a timer of inf s overflowed, a wait never ended)
        ("ground_node", "resources_hz", math.inf, "resources_hz: must be in [1e-06, 10000] Hz"),
        ("services_node", "timeout_s", math.inf, "timeout_s: must be in [0.0001, 1e+06] s"),
        # finite rates and waits that became timers: 1e-300 Hz overflowed rclpy's int64
        # nanoseconds (a traceback), 1e300 Hz was a 0 ns timer (a busy loop)
        ("ground_node", "rate_hz", 1e-300, "rate_hz: must be in [1e-06, 10000] Hz"),
        ("ground_node", "rate_hz", 1e300, "rate_hz: must be in [1e-06, 10000] Hz"),
        ("ground_node", "resources_hz", 1e-300, "resources_hz: must be in [1e-06, 10000] Hz"),
        ("crazyflie_node", "resources_hz", 1e-300, "resources_hz: must be in [1e-06, 10000]"),
        ("crazyflie_node", "rate_hz", 1e300, "rate_hz: must be in [20, 10000] Hz"),
        ("crazyflie_node", "max_rate_hz", 1e300, "max_rate_hz: must be in [1e-06, 10000] Hz"),
        ("services_node", "timeout_s", 1e300, "timeout_s: must be in [0.0001, 1e+06] s"),
        (
            "relay_node",
            "bundle_period_s",
            1e-300,
            "bundle_period_s: must be 0 or in [0.0001, 1e+06]",
        ),
        (
            "relay_node",
            "bundle_period_s",
            1e300,
            "bundle_period_s: must be 0 or in [0.0001, 1e+06]",
        ),
        # every copy waited in the relay's queue for good: memory without bound
        ("relay_node", "latency_s", 1e300, "latency_s: must be in [0, 10]"),
        ("relay_node", "seed", -5, "seed: must be -1 or 0 .. 2**63 - 1"),
        # the Crazyflie bridge started with these (LinkParams checks only how they relate)
        ("crazyflie_node", "battery_full_v", math.nan, "battery_full_v: must be finite and > 0"),
        ("crazyflie_node", "battery_full_v", -4.0, "battery_full_v: must be finite and > 0 V"),
        ("crazyflie_node", "reconnect_after_s", math.nan, "reconnect_after_s: must be finite"),
        ("crazyflie_node", "connect_timeout_s", math.inf, "connect_timeout_s: must be finite"),
        ("crazyflie_node", "estimate_wait_s", math.nan, "estimate_wait_s: must be finite and > 0"),
        ("crazyflie_node", "retry_backoff_max_s", math.inf, "retry_backoff_max_s: must be finite"),
        ("crazyflie_node", "land_after_s", math.inf, "land_after_s: must be finite and > 0 s"),
        ("crazyflie_node", "max_rate_hz", math.inf, "max_rate_hz: must be in [1e-06, 10000] Hz"),
        ("crazyflie_node", "rate_hz", math.inf, "rate_hz: must be in [20, 10000] Hz"),
        ("crazyflie_node", "geofence_margin", math.nan, "geofence_margin: must be >= 0 m"),
        ("crazyflie_node", "log_period_ms", 5, "log_period_ms: must be in [10, 2540]"),
        ("crazyflie_node", "resources_hz", math.inf, "resources_hz: must be in [1e-06, 10000]"),
    ],
)
def test_node_tables_refuse_fuzzed_values(context, module, name, value, words):
    """These parameters had no rule: NaN gains / ages and a negative projection distance
    started the node."""
    import importlib

    table = importlib.import_module(f"sim_bridge.ros.{module}").PARAMETERS
    node = _node(context, **{name: value})
    try:
        with pytest.raises(ConfigError) as err:
            P.declare_and_read(node, table, P.config_error)
        assert words in str(err.value)
    finally:
        node.destroy_node()


def test_crazyflie_defaults_pass_their_rules(context):
    """Every default of the bridge's table passes its own rule and LinkParams."""
    from sim_bridge.bridges.crazyflie_link import LinkParams
    from sim_bridge.ros.crazyflie_node import _LINK_FIELDS, PARAMETERS

    node = _node(context)
    try:
        values = P.declare_and_read(node, PARAMETERS, P.config_error)
    finally:
        node.destroy_node()
    LinkParams(**{name: values[name] for name in _LINK_FIELDS})
    assert all(p.rule is not None for p in PARAMETERS if p.name in _LINK_FIELDS)
