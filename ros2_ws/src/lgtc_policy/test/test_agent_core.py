"""The per-robot policy core (lgtc_policy.agent) without ROS: frames, messages, neighbours,
observations equal to the env's, and N agents in lock-step equal to the batched rollout."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lgtc_policy.agent import (
    ArenaFrame,
    MissionError,
    NeighbourTable,
    PolicyAgent,
    RobotSpec,
    load_policy,
)
from lgtc_policy.env import EnvConfig
from lgtc_policy.mission.figures import cluster_colour
from lgtc_policy.mission.scenario import make_env, scenario_from_config
from lgtc_policy.model.checkpoint import build_net, load_checkpoint
from lgtc_policy.model.decentralized import AgentObs
from lgtc_policy.model.features import inputs_from_obs
from lgtc_policy.ros.tick_stats import TickStats
from sim_bridge.config import load_config

ARENA = {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]}


def swarm_mapping(n=6, m=3):
    """A small valid swarm config as a mapping (two resource types, one of each kind)."""
    rng = np.random.default_rng(3)
    robots = []
    for i in range(n):
        robots.append(
            {
                "name": f"cf{i + 1}",
                "type": "cf",
                "pose": [-1.5 + 0.6 * i, -1.5 + 0.2 * (i % 2), 0.0, 0.0],
                "resources": {
                    "energy": {"amount": float(rng.uniform(0.2, 0.6)), "depletion": "persistent"},
                    "payload": {
                        "amount": float(rng.uniform(0.2, 0.6)),
                        "depletion": "instantaneous",
                    },
                },
            }
        )
    consumers = [
        {
            "name": f"c{k + 1}",
            "position": [-1.2 + 1.2 * k, 1.0],
            "radius": 0.3,
            "demand": {"energy": 2.0, "payload": 2.0},
        }
        for k in range(m)
    ]
    return {
        "fileversion": 1,
        "seed": 0,
        "arena": ARENA,
        "resource_types": ["energy", "payload"],
        "comm_radius": 2.0,
        "sensing_radius": 1.0,
        "safety": {"distance": 0.2, "gamma": 100.0, "class_k": "cubic"},
        "robot_types": {"cf": {"kind": "crazyflie", "backend": "sim", "max_speed": 0.5}},
        "robots": robots,
        "consumers": consumers,
        "events": [],
    }


# ----------------------------------------------------------------------------- frames


def test_arena_frame_maps_square_arena_onto_unit_square():
    f = ArenaFrame.from_arena((-2.0, 2.0), (-2.0, 2.0))
    assert f.scale == 2.0 and f.centre == (0.0, 0.0)
    np.testing.assert_allclose(f.to_norm([[2.0, -2.0], [1.0, 0.5]]), [[1.0, -1.0], [0.5, 0.25]])
    assert f.length(0.3) == pytest.approx(0.15)


def test_arena_frame_non_square_keeps_lengths_isotropic():
    f = ArenaFrame.from_arena((0.0, 6.0), (1.0, 3.0))
    assert f.centre == (3.0, 2.0) and f.scale == 3.0
    p = np.array([[6.0, 3.0], [0.0, 1.0]])
    n = f.to_norm(p)
    assert np.all(np.abs(n) <= 1.0)
    np.testing.assert_allclose(f.to_world(n), p)
    with pytest.raises(MissionError, match="positive size"):
        ArenaFrame.from_arena((1.0, 1.0), (0.0, 1.0))


@settings(max_examples=50, deadline=None)
@given(
    st.floats(-50, 50),
    st.floats(0.1, 50),
    st.floats(-50, 50),
    st.floats(0.1, 50),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_arena_frame_round_trip_and_inside(x0, wx, y0, wy, u, v):
    f = ArenaFrame.from_arena((x0, x0 + wx), (y0, y0 + wy))
    p = np.array([x0 + u * wx, y0 + v * wy])
    n = f.to_norm(p)
    assert np.all(np.abs(n) <= 1.0 + 1e-9)
    np.testing.assert_allclose(f.to_world(n), p, atol=1e-9 * (1 + abs(x0) + abs(y0) + wx + wy))


# ----------------------------------------------------------------------------- neighbours


def test_neighbour_table_accepts_valid_and_rejects_bad_messages():
    t = NeighbourTable(n_robots=4, own_index=1, payload_dim=3, timeout_s=0.5)
    assert t.receive([0.0, 10.0, 1.0, 2.0, 3.0], now_s=100.0)
    assert not t.receive([1.0, 10.0, 1.0, 2.0, 3.0], 100.0)  # own echo
    assert not t.receive([4.0, 10.0, 1.0, 2.0, 3.0], 100.0)  # no such robot
    assert not t.receive([-1.0, 10.0, 1.0, 2.0, 3.0], 100.0)
    assert not t.receive([2.5, 10.0, 1.0, 2.0, 3.0], 100.0)  # not an index
    assert not t.receive([2.0, 10.0, 1.0, 2.0], 100.0)  # wrong length
    assert not t.receive([2.0, 10.0, 1.0, math.nan, 3.0], 100.0)  # NaN payload
    assert not t.receive([0.0, 9.0, 7.0, 7.0, 7.0], 100.0)  # older than what we have
    assert t.rejected == 7
    ids, msgs = t.messages(100.0)
    assert ids.tolist() == [0]
    np.testing.assert_array_equal(msgs, [[1.0, 2.0, 3.0]])
    # a bundle of messages back to back: each is checked on its own
    bundle = [2.0, 11.0, 4.0, 5.0, 6.0, 1.0, 11.0, 0.0, 0.0, 0.0, 3.0, 11.0, 7.0, 8.0, 9.0]
    assert t.receive(bundle, 100.0) == 2 and t.rejected == 8
    ids, msgs = t.messages(100.0)
    assert ids.tolist() == [0, 2, 3]
    np.testing.assert_array_equal(msgs[1:], [[4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    # the relay's bundle layout names the row length: rows of another length are rejected
    # whole, even when their values happen to tile into rows of ours (5 rows of 2 = 2 of 5)
    assert t.receive([2.0, 12.0, 4.0, 5.0, 6.0], 100.0, row_len=5) == 1
    five_short_rows = [3.0, 13.0, 1.0, 2.0, 3.0, 13.0, 1.0, 2.0, 0.0, 0.0]
    assert t.receive(five_short_rows, 100.0, row_len=2) == 0 and t.rejected == 9
    assert t.stamp[3] == 11.0


def test_neighbour_silent_longer_than_timeout_leaves_s():
    t = NeighbourTable(n_robots=3, own_index=0, payload_dim=1, timeout_s=0.5)
    t.receive([1.0, 0.0, 5.0], now_s=10.0)
    t.receive([2.0, 0.0, 6.0], now_s=10.3)
    assert t.current(10.5).tolist() == [1, 2]
    assert t.current(10.51).tolist() == [2]  # robot 1 silent for 0.51 s > 0.5 s
    assert t.current(10.81).tolist() == []
    t.receive([1.0, 1.0, 5.0], now_s=11.0)
    assert t.current(11.0).tolist() == [1]
    t.forget()
    assert t.current(11.0).tolist() == []
    with pytest.raises(MissionError, match="neighbour_timeout_s"):
        NeighbourTable(3, 0, 1, timeout_s=0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=8))
def test_neighbour_table_never_raises_on_garbage(data):
    t = NeighbourTable(n_robots=3, own_index=0, payload_dim=3, timeout_s=1.0)
    ok = t.receive(data, now_s=0.0)
    assert ok == (t.rejected == 0)
    assert np.isfinite(t.payload).all()


def test_messages_that_overflow_float32_or_leave_theorem_1_are_dropped():
    """A finite float64 of 1e300 was stored as inf in the float32 table (NaN command next
    tick), and a neighbour state of 1e10 pulled this robot's state to ~2e3 (out of Theorem
    1's [-1, 1], then sent on to every neighbour). Both are dropped now, one by one and in a
    bundle."""
    t = NeighbourTable(4, 0, payload_dim=4, timeout_s=1.0, state_dim=2, state_bound=1.0)
    bad = [
        [1.0, 0.0, 1e300, 0.0, 0.0, 0.0],  # finite, inf in float32
        [1.0, 0.0, 1e10, 0.0, 0.0, 0.0],  # state out of [-1, 1]
        [1.0, 0.0, 0.0, -1.01, 0.0, 0.0],
        [1.0, 0.0, 0.5, 0.5, 1e7, 0.0],  # an item beyond the input range
        [1.0, 0.0, 0.5, 0.5, 0.0, -3e38],
    ]
    for msg in bad:
        assert t.receive(msg, 0.0) == 0
    assert t.receive(np.concatenate(bad[:3]), 0.0) == 0  # a bundle: the array path
    assert t.rejected == len(bad) + 3
    good = [1.0, 0.0, 1.0, -1.0, 1e6, -2.5]
    assert t.receive(good, 0.0) == 1
    assert t.receive(np.r_[bad[0][:1], [0.0], bad[0][2:], [2.0], good[1:]], 0.0) == 1
    assert np.isfinite(t.payload).all() and t.current(0.0).tolist() == [1, 2]
    np.testing.assert_array_equal(t.payload[1], good[2:])
    # a policy without Theorem 1's bound (state_bound inf): a state of 1.5 is an intact one
    loose = NeighbourTable(4, 0, payload_dim=4, timeout_s=1.0, state_dim=2)
    assert loose.receive([1.0, 0.0, 1.5, -1.5, 0.0, 0.0], 0.0) == 1
    assert loose.receive(bad[0], 0.0) == 0


def test_the_state_bound_is_theorem_1s_when_the_cell_meets_it() -> None:
    """``DecentralizedPolicy.state_bound``: 1 for a cell with margin c >= 0 (the shipped
    checkpoint's), unbounded when the coupling outgrows the leak (c < 0), whose intact robots
    may send |x| > 1."""
    import torch
    from lgtc_policy.model.decentralized import DecentralizedPolicy
    from lgtc_policy.model.lgtc import LGTCNet, NetConfig

    net = LGTCNet(NetConfig(agent_item_dim=6, consumer_item_dim=6, out_dim=2))
    assert net.cell.theorem1().ok and DecentralizedPolicy(net, 2).state_bound == 1.0
    with torch.no_grad():
        net.cell.tau.fill_(0.01)
        net.cell.A.fill_(0.5)
    assert not net.cell.theorem1().ok
    assert DecentralizedPolicy(net, 2).state_bound == math.inf


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(), st.sampled_from([1e300, -1e300, 3.5e38, 1e6, 1.0, 2.0])),
        min_size=5,
        max_size=5,
    ),
    st.integers(1, 3),
)
def test_neighbour_table_payload_stays_finite_and_bounded(values, copies):
    """Any message, alone or bundled: what is stored is finite float32 within the limits."""
    from lgtc_policy.agent import INPUT_LIMIT, STATE_SLACK

    t = NeighbourTable(3, 0, payload_dim=3, timeout_s=1.0, state_dim=1, state_bound=1.0)
    t.receive(values * copies, now_s=0.0)
    assert np.isfinite(t.payload).all()
    assert (np.abs(t.payload) <= INPUT_LIMIT).all()
    assert (np.abs(t.payload[:, 0]) <= 1.0 + STATE_SLACK).all()


def test_a_stamp_from_the_future_locks_a_neighbour_out_for_one_timeout_at_most():
    """A message stamped 1e300 (a broken sender clock) used to make every later message of
    that neighbour "older" for ever: it was never heard again. It blocks only while it is
    current now."""
    for bundle in (False, True):
        t = NeighbourTable(n_robots=3, own_index=0, payload_dim=1, timeout_s=0.5)
        assert t.receive([1.0, 1e300, 0.3], now_s=10.0) == 1
        later = [1.0, 10.2, 0.4] + ([2.0, 10.2, 0.1] if bundle else [])
        assert t.receive(later, now_s=10.2) == (1 if bundle else 0)  # reordered delivery
        assert t.receive(later, now_s=10.6) == (2 if bundle else 1)  # the 1e300 one expired
        assert t.payload[1, 0] == pytest.approx(0.4) and t.current(10.6).tolist()[0] == 1


# ----------------------------------------------------------------------------- checkpoint


def test_load_policy_errors_name_the_file_and_the_fix(tmp_path, checkpoint):
    with pytest.raises(MissionError, match="does not exist"):
        load_policy(tmp_path / "nope.pt", 2)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(MissionError, match="corrupted"):
        load_policy(bad, 2)
    with pytest.raises(MissionError, match=r"r=2 resource types but the swarm config has r=1"):
        load_policy(checkpoint, 1)
    assert load_policy(checkpoint, 2).message_dim == 64 + 2 * 6


# ----------------------------------------------------------------------------- observation


def test_robot_spec_from_config():
    cfg = load_config(swarm_mapping())
    spec = RobotSpec.from_config(cfg, "cf3")
    assert spec.index == 2 and spec.n_robots == 6 and spec.n_consumers == 3
    assert spec.persistent == (1.0, 0.0)
    assert spec.v_max_norm == pytest.approx(0.25)
    assert spec.airborne_z == pytest.approx(0.25)
    with pytest.raises(MissionError, match="robot='cf9'"):
        RobotSpec.from_config(cfg, "cf9")


def _world_inputs(env, sc, i):
    """What robot i's node receives on its topics, built from the env's state in metres."""
    pos_n = env.pos[0, i].double().numpy()
    pos = np.r_[sc.frame.to_world(pos_n), 0.5]
    vel = np.r_[env.vel[0, i].double().numpy() * sc.frame.scale, 0.0]
    supply = env.supply[0, i].double().numpy()
    M = env.demand.shape[1]
    table = np.zeros((M, 4 + supply.size))
    table[:, :2] = sc.frame.to_world(env.consumer_pos[0].double().numpy())
    table[:, 2] = env.radius[0].double().numpy() * sc.frame.scale
    table[:, 3] = 1.0
    table[:, 4:] = env.demand[0].double().numpy()
    return pos, vel, supply, table


def test_observation_from_world_topics_equals_env_observation(checkpoint):
    cfg = load_config(swarm_mapping())
    sc = scenario_from_config(cfg)
    env = make_env(sc, dataclasses.asdict(EnvConfig()), steps=50)
    env.step(torch.full((1, 6, 2), 0.7))  # move, so velocities are non-zero
    obs = env.observe()
    policy = load_policy(checkpoint, 2)
    for i in range(6):
        agent = PolicyAgent(policy, RobotSpec.from_config(cfg, f"cf{i + 1}"), 0.5)
        mine = agent.observe(*_world_inputs(env, sc, i))
        ref = AgentObs.from_batched(obs, 0, i)
        for field in ("agent_res", "consumer_res", "consumer_mask", "pos"):
            np.testing.assert_allclose(getattr(mine, field), getattr(ref, field), atol=2e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 3),
    st.floats(-3.0, 3.0),
    st.floats(-3.0, 3.0),
    st.integers(0, 2**31 - 1),
)
def test_numpy_observation_equals_the_env_builder_bit_for_bit(checkpoint, m, r, x, y, seed):
    """PolicyAgent.observe (numpy) == lgtc_policy.env.obs.agent_observation (torch, the env's
    builder) on any pose, supplies and consumer table, inactive and exhausted consumers too."""
    from lgtc_policy.env.obs import agent_observation

    rng = np.random.default_rng(seed)
    frame = ArenaFrame.from_arena((-2.0, 2.0), (-1.5, 2.5))
    kinds = tuple(float(k) for k in rng.integers(0, 2, r))
    spec = RobotSpec("cf1", 0, 3, m, tuple(f"t{k}" for k in range(r)), kinds, frame, 0.5, True, 0.2)
    agent = PolicyAgent(_FakePolicy(r), spec, 0.5)  # observe() needs no network
    table = np.zeros((m, 4 + r))
    table[:, :2] = rng.uniform(-2.0, 2.0, (m, 2))
    table[:, 2] = rng.uniform(0.1, 0.6, m)
    table[:, 3] = rng.integers(0, 2, m)
    table[:, 4:] = rng.uniform(-0.2, 1.0, (m, r)) * (rng.random((m, r)) < 0.7)
    supply = rng.uniform(-0.1, 1.0, r)
    vel = rng.uniform(-0.5, 0.5, 3)
    mine = agent.observe([x, y, 0.5], vel, supply, table)
    demand = table[:, 4:] * (table[:, 3:4] > 0)
    z = agent_observation(
        frame.to_norm(np.array([x, y])).astype(np.float32),
        frame.length(vel[:2]).astype(np.float32),
        np.maximum(supply, 0.0).astype(np.float32),
        np.asarray(kinds, np.float32),
        frame.to_norm(table[:, :2]).astype(np.float32),
        frame.length(table[:, 2]).astype(np.float32),
        np.maximum(demand, 0.0).astype(np.float32),
        spec.v_max_norm,
    )
    ref = AgentObs.from_observation(z)
    for field in ("agent_res", "consumer_res", "consumer_mask", "pos"):
        got, want = getattr(mine, field), getattr(ref, field)
        assert got.dtype == want.dtype and got.shape == want.shape, field
        np.testing.assert_array_equal(got, want, err_msg=field)


class _FakePolicy:
    """The attributes PolicyAgent reads from a DecentralizedPolicy (no network)."""

    def __init__(self, r: int):
        self.r, self.message_dim, self.F = r, 64 + r * (4 + r), 64
        self.state_bound = 1.0

    def initial_state(self) -> np.ndarray:
        return np.zeros(64, np.float32)


def test_observe_rejects_mismatched_inputs(checkpoint):
    cfg = load_config(swarm_mapping())
    agent = PolicyAgent(load_policy(checkpoint, 2), RobotSpec.from_config(cfg, "cf1"), 0.5)
    table = np.zeros((3, 6))
    with pytest.raises(MissionError, match="resources has 3 values"):
        agent.observe([0, 0, 0.5], [0, 0, 0], [1.0, 1.0, 1.0], table)
    with pytest.raises(MissionError, match="expected \\(3, 6\\)"):
        agent.observe([0, 0, 0.5], [0, 0, 0], [1.0, 1.0], np.zeros((4, 6)))
    with pytest.raises(MissionError, match="NaN"):
        agent.observe([math.nan, 0, 0.5], [0, 0, 0], [1.0, 1.0], table)


@pytest.mark.parametrize(
    "which, value, words",
    [
        ("pose", 1e300, "pose"),
        ("pose", 3e38, "pose"),
        ("supply", 1e39, "resources"),
        ("supply", -1e300, "resources"),
        ("consumer_x", 1e300, "/consumers positions"),
        ("demand", 1e300, "/consumers demands"),
    ],
)
def test_observe_refuses_finite_values_beyond_float32_naming_the_input(
    checkpoint, which, value, words
):
    """Finite float64 values that overflow float32 (pose 1e300 m, a demand of 1e300) made
    the robot command NaN and left its state NaN for good; now observe names the input."""
    cfg = load_config(swarm_mapping())
    agent = PolicyAgent(load_policy(checkpoint, 2), RobotSpec.from_config(cfg, "cf1"), 0.5)
    pos, supply = [0.0, 0.0, 0.5], [1.0, 1.0]
    good = np.array([[0.5, 0.5, 0.3, 1.0, 1.0, 1.0]] * 3)
    table = good.copy()
    if which == "pose":
        pos[0] = value
    elif which == "supply":
        supply[0] = value
    elif which == "consumer_x":
        table[1, 0] = value
    else:
        table[2, 4] = value
    with pytest.raises(MissionError, match=words) as err:
        agent.observe(pos, [0, 0, 0], supply, table)
    assert "\n" not in str(err.value) and "input range" in str(err.value)
    res = agent.step(agent.observe([0.0, 0.0, 0.5], [0, 0, 0], [1.0, 1.0], good), 0.0)
    assert res.ok and np.isfinite(res.velocity).all() and np.isfinite(agent.state).all()


_SPECIAL = [math.nan, math.inf, -math.inf, 1e300, -1e300, 3.4e38, 1e10, 1e6, 1.0001]


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(0, 12),
    st.lists(st.tuples(st.integers(0, 75), st.sampled_from(_SPECIAL)), max_size=6),
)
def test_adversarial_neighbour_messages_never_give_a_bad_command(checkpoint, seed, k, edits):
    """Any mix of good, damaged, oversized and malformed messages from any number of
    senders: every command is finite and within max_speed, the state stays in [-1, 1] and
    the outgoing message is finite (damaged messages are dropped, counted)."""
    cfg = load_config(swarm_mapping())
    policy = load_policy(checkpoint, 2)
    agent = PolicyAgent(policy, RobotSpec.from_config(cfg, "cf1"), 0.5)
    rng = np.random.default_rng(seed)
    table = np.c_[
        rng.uniform(-2, 2, (3, 2)), np.full(3, 0.3), np.ones(3), rng.uniform(0, 2, (3, 2))
    ]
    obs = agent.observe([0.1, -0.2, 0.5], [0, 0, 0], [1.0, 0.5], table)
    for tick in range(3):
        for _ in range(k):
            msg = np.r_[rng.integers(-1, 8), tick * 0.05, policy.initial_message(obs)]
            msg[2 : 2 + policy.F] = rng.uniform(-1, 1, policy.F)
            for where, value in edits:
                if rng.random() < 0.5:
                    msg[2 + where] = value
            cut = rng.integers(0, 3)  # sometimes a wrong length
            agent.neighbours.receive(msg[: len(msg) - cut], now_s=tick * 0.05)
        res = agent.step(obs, tick * 0.05)
        assert res.ok and np.isfinite(res.velocity).all()
        assert np.hypot(*res.velocity[:2]) <= 0.5 * (1 + 1e-6)
        assert np.isfinite(res.message).all() and np.abs(agent.state).max() <= 1.0


# ----------------------------------------------------------------------------- lock-step


def test_agents_in_lock_step_equal_the_batched_rollout(checkpoint):
    """N PolicyAgents, fed the env's state in metres and each other's packed messages from the
    previous tick (only within C), command the same velocities as the batched network."""
    mapping = swarm_mapping()
    mapping["comm_radius"] = 1.4  # so the graph is not complete
    cfg = load_config(mapping)
    sc = scenario_from_config(cfg)
    ck = load_checkpoint(checkpoint)
    net = build_net(ck)
    env = make_env(sc, ck["env_config"], steps=40)
    N = 6
    agents = [
        PolicyAgent(load_policy(checkpoint, 2), RobotSpec.from_config(cfg, f"cf{i + 1}"), 0.5)
        for i in range(N)
    ]
    x = torch.zeros(1, N, net.state_dim)
    prev = None
    # before tick 0 every robot has sent its items with a zero state (the batched forward's
    # convention for t = 0: prev_agent_res = agent_res)
    outbox = [
        np.r_[i, -1.0, a.policy.initial_message(a.observe(*_world_inputs(env, sc, i)))]
        for i, a in enumerate(agents)
    ]
    with torch.inference_mode():
        for t in range(25):
            obs = env.observe()
            out, x, _ = net(inputs_from_obs(obs, prev), x)
            ref = net.action(out).clamp(-1, 1)
            prev = obs.agent_res.clone()
            adj = obs.adjacency[0].numpy()
            sent = list(outbox)
            for i, agent in enumerate(agents):
                for j in np.nonzero(adj[i])[0]:
                    assert agent.neighbours.receive(sent[j], now_s=t * 0.05)
                res = agent.step(agent.observe(*_world_inputs(env, sc, i)), now_s=t * 0.05)
                outbox[i] = res.message
                assert res.message[0] == i and res.message[1] == pytest.approx(t * 0.05)
                np.testing.assert_allclose(
                    res.velocity[:2], ref[0, i].numpy() * cfg.robots[i].max_speed, atol=1e-4
                )
                assert res.velocity[2] == 0.0
                assert set(res.neighbours.tolist()) <= set(np.nonzero(adj[i])[0].tolist())
            env.step(ref)


def test_a_forward_that_overflows_gives_no_command_and_a_fresh_state(checkpoint):
    """A checkpoint with huge but finite weights (1e30: it passes the finiteness check)
    overflowed float32 and commanded NaN, and the NaN state stayed for good. The core now
    returns a zero velocity flagged not ok, no message, and restarts from x = 0; the batched
    step does the same for that robot only."""
    from lgtc_policy.agent import step_batch
    from lgtc_policy.model.decentralized import DecentralizedPolicy

    cfg = load_config(swarm_mapping())
    net = build_net(load_checkpoint(checkpoint))
    with torch.no_grad():
        for prm in net.parameters():
            prm.mul_(1e30)
    huge = DecentralizedPolicy(net, 2)
    agent = PolicyAgent(huge, RobotSpec.from_config(cfg, "cf1"), 0.5)
    table = np.array([[0.5, 0.5, 0.3, 1.0, 1.0, 1.0]] * 3)
    obs = agent.observe([0.0, 0.0, 0.5], [0, 0, 0], [1.0, 1.0], table)
    with np.errstate(all="ignore"):
        res = agent.step(obs, 0.0)
        assert not res.ok and res.message is None and res.cluster == -1
        assert not res.velocity.any() and np.isfinite(res.action).all()
        assert not agent.state.any()
    # in a batch (sane weights), only the robot whose forward is not finite is flagged (an
    # AgentObs built by hand, past observe's checks)
    policy = load_policy(checkpoint, 2)
    a, b = (PolicyAgent(policy, RobotSpec.from_config(cfg, n), 0.5) for n in ("cf1", "cf2"))
    a.state[:] = 0.5
    broken = dataclasses.replace(obs, pos=np.array([np.nan, 0.0], np.float32))
    with np.errstate(all="ignore"):
        out = step_batch([a, b], [broken, obs], 0.0)
    assert not out[0].ok and not out[0].velocity.any() and out[0].message is None
    assert not a.state.any() and a.cluster == -1
    assert out[1].ok and out[1].message is not None and np.isfinite(out[1].velocity).all()


def test_idle_robot_is_silent_and_still(checkpoint):
    cfg = load_config(swarm_mapping())
    agent = PolicyAgent(load_policy(checkpoint, 2), RobotSpec.from_config(cfg, "cf1"), 0.5)
    assert not agent.is_active([0.0, 0.0, 0.1])
    assert agent.is_active([0.0, 0.0, 0.3])
    agent.neighbours.receive([1.0] + [0.0] * (1 + agent.policy.message_dim), 0.0)
    res = agent.idle()
    assert res.message is None and res.cluster == -1 and not res.velocity.any()
    assert agent.neighbours.current(0.0).size == 0


# ----------------------------------------------------------------------------- stats


def test_tick_stats_counts_late_ticks():
    s = TickStats(period_s=0.05)
    for k, start in enumerate([0.0, 0.05, 0.10, 0.20, 0.25, 0.32]):
        s.record(start, start + 0.001 * (k + 1))
    out = s.summary()
    assert out["ticks"] == 6
    assert out["ticks_on_time"] == 5  # the 0.10 -> 0.20 gap is 2 periods
    assert out["on_time_pct"] == pytest.approx(100 * 5 / 6)
    assert out["compute_p50_ms"] == pytest.approx(3.5)
    assert out["tick_period_p50_ms"] == pytest.approx(50.0)


def test_tick_stats_on_sim_time_reads_periods_on_the_timers_clock():
    """Sim time: the timer fires one sim period apart while a slow world stretches the wall
    time between ticks (0.12 s here); the ticks are on time, compute times stay monotonic."""
    s = TickStats(period_s=0.05)
    for k in range(6):
        start = 100.0 + 0.12 * k  # monotonic [s]
        s.record(start, start + 0.002, at_s=0.05 * k)
    out = s.summary()
    assert (out["ticks_on_time"], out["ticks_missed"]) == (6, 0)
    assert out["tick_period_p50_ms"] == pytest.approx(50.0)
    assert out["compute_p50_ms"] == pytest.approx(2.0)
    s.record(200.0, 200.001, at_s=0.40)  # the timer itself skipped: 0.25 -> 0.40 s
    assert s.summary()["ticks_missed"] == 2


def test_cluster_colours_are_distinct_and_unassigned_is_grey():
    colours = {cluster_colour(m) for m in range(10)}
    assert len(colours) == 10
    assert cluster_colour(-1)[:3] == (0.85, 0.85, 0.85)
