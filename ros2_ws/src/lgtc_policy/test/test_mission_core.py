"""The mission yardstick without ROS: scenario mapping, trajectory replay, report round trip,
and the core env's safety filter = the ROS chain's per-robot cbf_filter nodes."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from lgtc_policy.agent import MissionError
from lgtc_policy.env import EnvConfig
from lgtc_policy.mission.report import KEYS, format_report, parse_report, ros_metrics
from lgtc_policy.mission.scenario import (
    core_rollout,
    make_env,
    resample,
    scenario_from_config,
    score_trajectory,
)
from lgtc_policy.model.lgtc import LGTCNet, NetConfig
from sim_bridge.config import load_config

ENV = dataclasses.asdict(EnvConfig())


def discharge_mapping(events=None):
    """5 drones with one persistent battery each (plus an unused second type, r = 2)."""
    return {
        "fileversion": 1,
        "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
        "resource_types": ["battery", "payload"],
        "comm_radius": 2.0,
        "sensing_radius": 1.0,
        "safety": {"distance": 0.2},
        "robot_types": {
            "cf": {
                "kind": "crazyflie",
                "backend": "sim",
                "takeoff_height": 0.5,
                "resources": {"battery": {"amount": 1.0, "depletion": "persistent"}},
            }
        },
        "robots": [
            {"name": f"cf{i + 1}", "type": "cf", "pose": [-1.0 + 0.5 * i, -1.5, 0.0, 0.0]}
            for i in range(5)
        ],
        "consumers": [
            {"name": "c1", "position": [-1.2, 1.0], "radius": 0.3, "demand": {"battery": 2.0}},
            {"name": "c2", "position": [1.2, 1.0], "radius": 0.3, "demand": {"battery": 2.0}},
            {"name": "c3", "position": [0.0, 0.2], "radius": 0.3, "demand": {"battery": 1.0}},
        ],
        "events": events
        if events is not None
        else [
            {"t": 2.0, "type": "discharge", "robot": "cf2", "resource": "battery", "amount": 0.0},
            {"t": 2.0, "type": "land", "robot": "cf2"},
        ],
    }


def test_scenario_maps_config_to_normalised_env_frame():
    sc = scenario_from_config(load_config(discharge_mapping()))
    np.testing.assert_allclose(sc.pos[:, 1], -0.75)
    np.testing.assert_allclose(sc.consumer_pos[2], [0.0, 0.1])
    np.testing.assert_allclose(sc.radius, 0.15)
    assert sc.v_max == pytest.approx(0.25) and sc.comm_radius == pytest.approx(1.0)
    assert sc.epsilon == pytest.approx(0.1)
    assert sc.persistent.tolist() == [True, False]
    # in the config's order at one tick, as the simulator fires them
    assert sc.events == ((40, "discharge", 1, 0.0), (40, "deactivate", 1, 1.0))
    assert sc.hold_ticks == 21  # 0.5 m at 0.5 m/s = 20 ticks, +1


def test_unsupported_events_are_rejected_with_the_reason():
    m = discharge_mapping(
        [{"t": 1.0, "type": "demand", "consumer": "c1", "resource": "battery", "amount": 1.0}]
    )
    with pytest.raises(MissionError, match="no counterpart in the core env"):
        scenario_from_config(load_config(m))


def test_env_holds_the_scenario_and_applies_the_discharge():
    cfg = load_config(discharge_mapping())
    sc = scenario_from_config(cfg)
    env = make_env(sc, ENV, steps=60)
    np.testing.assert_allclose(env.pos[0].numpy(), sc.pos, atol=1e-6)
    np.testing.assert_allclose(env.supply[0].numpy(), cfg.supply_matrix(), atol=1e-6)
    np.testing.assert_allclose(env.demand[0].numpy(), cfg.demand_matrix(), atol=1e-6)
    assert env.cfg.v_max == pytest.approx(0.25)
    torch.manual_seed(0)
    net = LGTCNet(NetConfig(agent_item_dim=6, consumer_item_dim=6, out_dim=2))
    score = core_rollout(net, sc, ENV, steps=60)
    assert score.pos.shape == (61, 5, 2)
    # held still while taking off, then moved
    np.testing.assert_allclose(score.pos[21], sc.pos, atol=1e-6)
    assert score.attended.shape == (60, 5) and (score.attended[:21] == -1).all()
    # cf2 discharged at tick 40 and landed: it never moves again
    np.testing.assert_allclose(score.pos[41:, 1] - score.pos[41, 1], 0.0, atol=1e-7)


def test_replaying_a_rollout_gives_its_reward():
    """score_trajectory(positions of a core rollout) reproduces that rollout's reward."""
    cfg = load_config(discharge_mapping())
    sc = scenario_from_config(cfg)
    torch.manual_seed(1)
    cfgn = NetConfig(agent_item_dim=6, consumer_item_dim=6, out_dim=2)
    net = LGTCNet(cfgn)
    with torch.no_grad():
        net.head[-1].bias.copy_(torch.tensor([0.6, 0.9]))  # fly north-east: visit consumers
    core = core_rollout(net, sc, ENV, steps=120)
    assert np.abs(core.pos[-1] - core.pos[0]).max() > 0.5
    ros = score_trajectory(sc, ENV, sc.frame.to_world(core.pos))
    assert ros.reward == pytest.approx(core.reward, rel=1e-4, abs=1e-6)
    assert ros.demand_satisfied == pytest.approx(core.demand_satisfied, abs=1e-5)
    for k, v in core.reward_terms.items():
        assert ros.reward_terms[k] == pytest.approx(v, rel=1e-3, abs=1e-6), k
    with pytest.raises(MissionError, match="trajectory has shape"):
        score_trajectory(sc, ENV, np.zeros((10, 4, 2)))


def test_resample_is_a_zero_order_hold():
    t = np.array([0.02, 0.06, 0.13])
    v = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(resample(t, v, 0.05, 0.2), [1.0, 1.0, 2.0, 3.0, 3.0])


def test_ros_metrics_from_samples():
    cfg = load_config(discharge_mapping())
    times = np.array([0.0, 1.0, 2.0, 3.0])
    pos = np.zeros((4, 5, 3))
    pos[:, :, 0] = np.arange(5) * 1.0
    pos[:, :, 2] = 0.5
    pos[2, 1, 0] = 0.15  # 0.15 m from cf1 (below Ds = 0.2)
    pos[3, 4, 2] = 0.0  # cf5 landed: not counted
    pos[3, 3, 0] = 3.9  # 0.1 m from the landed cf5: ignored
    d0 = cfg.demand_matrix()
    demands = np.stack([d0, 0.5 * d0, 0.04 * d0, 0 * d0])
    m = ros_metrics(cfg, times, pos, demands)
    assert m["min_pair_separation_m"] == pytest.approx(0.15)
    assert m["min_separation_margin_m"] == pytest.approx(-0.05)
    assert m["pairs_below_safety"] == 1
    assert m["time_to_95pct_s"] == 2.0 and m["time_to_satisfy_s"] == 3.0
    assert m["demand_satisfied_pct"] == pytest.approx(100.0)


def test_report_round_trip():
    values = {
        "config": "launch/demo.yaml",
        "robots": 10,
        "ticks_on_time_pct": 99.5,
        "reward_expert": math.nan,
        "notes": "a | b",
    }
    text = format_report(values)
    assert text.startswith("# Swarm mission report")
    back = parse_report(text)
    assert back["config"] == "launch/demo.yaml" and back["robots"] == 10
    assert back["ticks_on_time_pct"] == pytest.approx(99.5)
    assert math.isnan(back["reward_expert"])
    assert back["notes"] == "a / b"
    assert set(back) <= set(KEYS)


# ------------------------------------------------- core + CBF = the ROS chain's filters
def _node_params(cfg, robot: str):
    """What robot's cbf_filter node builds from the swarm config (model auto: si3)."""
    from cbf_filter.params import control_rate, from_config

    return from_config(cfg, cfg.robot(robot), 3, control_hz=control_rate(cfg))


def test_filter_spec_is_what_the_nodes_run():
    m = discharge_mapping()
    m["safety"] = {"distance": 0.2, "gamma": 100.0, "class_k": "cubic"}
    cfg = load_config(m)
    spec = scenario_from_config(cfg).safety
    assert spec.dims == (3,) * 5 and spec.sensing_radius == 1.0 and spec.floor == 0.0
    np.testing.assert_array_equal(spec.height, 0.5)
    np.testing.assert_array_equal(spec.descent, [0.0, 0.4, 0.0, 0.0, 0.0])  # cf2 lands
    for i, rc in enumerate(cfg.robots):
        p = spec.params[i]
        assert p == _node_params(cfg, rc.name)
        assert (p.safety_distance, p.gamma, p.class_k, p.max_speed) == (0.2, 100.0, "cubic", 0.5)
        assert (p.sensing_radius, p.sample_time) == (1.0, 0.05)
        assert p.arena == ((-2.0, 2.0), (-2.0, 2.0), (0.0, 2.0))
        assert p.boundary_margin == ((0.1, 0.1), (0.1, 0.1), (0.0, 0.1))


def _filter_at(cfg, pos_norm: np.ndarray):
    from lgtc_policy.mission.scenario import RosChainFilter

    sc = scenario_from_config(cfg)
    env = make_env(sc, ENV, steps=10)
    env.pos[0] = torch.as_tensor(pos_norm, dtype=env.dtype)
    return sc, env, RosChainFilter(env, sc)


@settings(max_examples=30, deadline=None)
@given(
    pos=hnp.arrays(np.float64, (5, 2), elements=st.floats(-0.95, 0.95)),
    act=hnp.arrays(np.float64, (5, 2), elements=st.floats(-1.0, 1.0)),
)
def test_core_filter_equals_the_decentralized_cbf_in_metres(pos, act):
    """The env's filter is DecentralizedCBF run on the metre positions (drones at 0.5 m)
    with the nodes' parameters: the same velocities, bit for bit, robot by robot too."""
    from cbf_filter import DecentralizedCBF

    cfg = load_config(discharge_mapping(events=[]))
    sc, env, filt = _filter_at(cfg, pos)
    xyz = filt.positions()
    expected_pos = np.column_stack(
        [sc.frame.to_world(env.pos[0].double().numpy()), np.full(5, 0.5)]
    )
    np.testing.assert_array_equal(xyz, expected_pos)
    # inside the unit disc: at exactly max_speed the filter passes a nominal command unchanged
    # but projects one a rounding error faster onto its speed polytope (a jump, not ours)
    a = 0.99 * act / np.maximum(1.0, np.linalg.norm(act, axis=1, keepdims=True))
    u = a * 0.5  # [m/s]: a unit action is the drones' max_speed
    cbf = DecentralizedCBF(3, _node_params(cfg, "cf1"))
    ref = cbf.filter(xyz, np.column_stack([u, np.zeros(5)]))
    assert ref.u[:, 2].tolist() == [0.0] * 5  # same height, no vertical nominal: stays level
    np.testing.assert_array_equal(filt.velocities(xyz, u), ref.u[:, :2])
    # one node at a time (filter_robot, neighbours within the sensing radius): the same
    filt.swarm = None
    np.testing.assert_allclose(filt.velocities(xyz, u), ref.u[:, :2], rtol=0, atol=1e-12)
    # through the env's unit actions
    out = filt(torch.as_tensor(a[None], dtype=torch.float32))
    np.testing.assert_allclose(out[0].numpy(), ref.u[:, :2] / 0.5, atol=1e-5)


def test_landed_robot_descends_and_still_counts_as_a_neighbour():
    """cf2 lands at t = 2 s (tick 40): it descends at 0.4 m/s and its filter neighbours keep
    seeing it (the world's /neighbors lists it), at its height."""
    from lgtc_policy.mission.scenario import RosChainFilter

    cfg = load_config(discharge_mapping())
    sc = scenario_from_config(cfg)
    env = make_env(sc, ENV, steps=80)
    filt = RosChainFilter(env, sc)
    zero = torch.zeros(1, 5, 2)
    heights = {}
    for t in range(80):
        for tick, _, i, level in sc.events:
            if tick == t:
                env.discharge(torch.tensor([0]), torch.tensor([i]), level=level, deactivate=True)
        heights[t] = filt.positions()[:, 2].copy()
        filt(zero)
        env.step(zero)
    assert heights[40][1] == pytest.approx(0.5)
    assert heights[45][1] == pytest.approx(0.5 - 0.4 * 5 * 0.05)
    assert heights[79][1] == 0.0  # 1.25 s to the floor, then it rests there
    np.testing.assert_array_equal(heights[79][[0, 2, 3, 4]], 0.5)
    # a drone straight above the landed one is not pushed away by it (0.5 m apart in 3-D)
    pos = sc.pos.copy()
    pos[0] = pos[1] + 0.01
    env.pos[0] = torch.as_tensor(pos, dtype=env.dtype)
    xyz = filt.positions()
    assert np.linalg.norm(xyz[0] - xyz[1]) > 0.5
    u = np.zeros((5, 2))
    u[0] = [0.0, 0.3]
    np.testing.assert_allclose(filt.velocities(xyz, u)[0], [0.0, 0.3], atol=1e-12)


def test_core_rollout_through_the_filter_keeps_every_pair_apart():
    """Every drone flies north-east into the corner: unfiltered they pile up, through the
    nodes' filters every pair of flying drones stays >= Ds = 0.2 m at every tick."""
    cfg = load_config(discharge_mapping())
    sc = scenario_from_config(cfg)
    torch.manual_seed(1)
    net = LGTCNet(NetConfig(agent_item_dim=6, consumer_item_dim=6, out_dim=2))
    with torch.no_grad():
        net.head[-1].bias.copy_(torch.tensor([3.0, 3.0]))
    ds = cfg.safety.distance
    raw = core_rollout(net, sc, ENV, steps=240)
    assert raw.min_distance * sc.frame.scale < 0.5 * ds
    safe = core_rollout(net, sc, ENV, steps=240, cbf=True)
    assert safe.collisions == 0
    world = sc.frame.to_world(safe.pos)
    flying = np.ones((241, 5), bool)
    flying[41:, 1] = False  # cf2 lands at tick 40
    for t in range(241):
        p = world[t, flying[t]]
        d = np.linalg.norm(p[:, None] - p[None], axis=-1)[np.triu_indices(len(p), 1)]
        assert d.min() >= ds - 1e-5, (t, d.min())
    assert np.abs(world[-1] - world[0]).max() > 1.0  # they did fly


def test_mixed_swarm_is_filtered_robot_by_robot_like_the_nodes():
    """A ground robot among drones: each robot gets its own node's filter (si3 drones at
    0.5 m; the ground robot's unicycle projection-point parameters, Ds + 2 l, on the plane,
    its point taken at its centre as the env has no heading)."""
    from cbf_filter import DecentralizedCBF
    from cbf_filter.params import from_config
    from cbf_filter.unicycle import projection_point_params

    m = discharge_mapping(events=[])
    m["robot_types"]["rover"] = {
        "kind": "ground",
        "backend": "sim",
        "resources": {"battery": {"amount": 1.0, "depletion": "persistent"}},
    }
    m["robots"][2]["type"] = "rover"
    cfg = load_config(m)
    pos = np.array([[-0.1, 0.0], [0.0, 0.05], [0.02, -0.05], [0.3, 0.0], [0.35, 0.3]])
    sc, env, filt = _filter_at(cfg, pos)
    assert filt.swarm is None and sc.safety.dims == (3, 3, 2, 3, 3)
    xyz = filt.positions()
    np.testing.assert_array_equal(xyz[:, 2], [0.5, 0.5, 0.0, 0.5, 0.5])
    u = np.array([[0.3, 0.0], [0.0, -0.3], [0.0, 0.3], [-0.3, 0.0], [0.0, -0.3]])
    got = filt.velocities(xyz, u)
    for i, rc in enumerate(cfg.robots):
        drone = rc.kind == "crazyflie"
        d = 3 if drone else 2
        p = from_config(cfg, rc, d)
        cbf = DecentralizedCBF(d, p if drone else projection_point_params(p, 0.1))
        others = np.delete(xyz, i, axis=0)
        seen = others[np.linalg.norm(others - xyz[i], axis=1) <= 1.0]
        ref = cbf.filter_robot(xyz[i, :d], np.r_[u[i], np.zeros(d - 2)], seen[:, :d])
        assert ref.found
        np.testing.assert_array_equal(got[i], ref.u[:2])
    assert not np.allclose(got, u)  # the filters acted
