"""Co-located robots computed together (issue #17): ``step_batch`` of the policy core.

One stacked forward of several robots equals each robot's own :meth:`PolicyAgent.step` bit
for bit on the same inputs (every network kind, r, M and neighbour count), and a robot's
result never moves when another robot of the batch changes its inputs.
"""

import numpy as np
import pytest
import torch
from lgtc_policy.agent import ArenaFrame, PolicyAgent, RobotSpec, step_batch
from lgtc_policy.model.decentralized import DecentralizedPolicy
from lgtc_policy.model.lgtc import LGTCNet, NetConfig

N = 12


def _spec(i: int, r: int, m: int) -> RobotSpec:
    return RobotSpec(
        name=f"cf{i + 1}",
        index=i,
        n_robots=N,
        n_consumers=m,
        resource_types=tuple(f"t{k}" for k in range(r)),
        persistent=tuple(float(k % 2) for k in range(r)),
        frame=ArenaFrame((0.0, 0.0), 2.0),
        max_speed=0.5,
        is_drone=False,
        airborne_z=-np.inf,
    )


def _swarm(kind: str, squash: bool, r: int, m: int, seed: int, comm: str = "paper"):
    """N agents with one random net (weights scaled up so attention and clipping vary)."""
    torch.manual_seed(seed)
    item = 4 + r
    net = LGTCNet(NetConfig(item, item, 2, kind=kind, squash=squash, comm=comm))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    return [PolicyAgent(DecentralizedPolicy(net, r), _spec(i, r, m), 0.5) for i in range(N)]


def _inputs(agents, rng, now: float):
    """Random observations; each robot hears 0-4 random others (its own messages)."""
    r, m = len(agents[0].spec.resource_types), agents[0].spec.n_consumers
    obs = []
    for a in agents:
        a.state = (0.5 * rng.standard_normal(a.policy.F)).astype(np.float32)
        table = np.zeros((m, 4 + r))
        table[:, :2] = rng.uniform(-2, 2, (m, 2))
        table[:, 2] = 0.3
        table[:, 3] = rng.random(m) > 0.2
        table[:, 4:] = rng.uniform(0, 1, (m, r)) * (rng.random((m, r)) > 0.3)
        obs.append(a.observe(rng.uniform(-2, 2, 3), np.zeros(3), rng.uniform(0, 1, r), table))
        others = rng.choice([j for j in range(N) if j != a.spec.index], rng.integers(0, 5))
        for j in others:
            payload = rng.standard_normal(a.policy.message_dim)
            a.neighbours.receive(np.concatenate([[j, now - 0.05], payload]), now)
    return obs


def _clone(agents):
    out = []
    for a in agents:
        b = PolicyAgent(a.policy, a.spec, a.neighbours.timeout_s)
        b.state = a.state.copy()
        b.neighbours = _copy_table(a.neighbours)
        out.append(b)
    return out


def _copy_table(t):
    c = type(t)(t.n, t.own, t.dim, t.timeout_s)
    c.payload, c.stamp, c.heard = t.payload.copy(), t.stamp.copy(), t.heard.copy()
    return c


def _same(x, y) -> bool:
    return (
        np.array_equal(x.velocity, y.velocity)
        and np.array_equal(x.message, y.message)
        and np.array_equal(x.action, y.action)
        and np.array_equal(x.neighbours, y.neighbours)
        and x.cluster == y.cluster
    )


@pytest.mark.parametrize(
    "kind,squash,comm",
    [
        ("lgtc", False, "paper"),
        ("lgtc", True, "paper"),
        ("ippo", False, "paper"),
        ("lgtc", False, "relpos"),  # the neighbour term (was left out of the batch: issue 16)
        ("ippo", False, "relpos"),
    ],
)
@pytest.mark.parametrize("r,m", [(1, 1), (2, 4), (3, 2)])
def test_batched_tick_equals_each_robot_alone_bit_for_bit(kind, squash, comm, r, m):
    rng = np.random.default_rng(r * 10 + m)
    agents = _swarm(kind, squash, r, m, seed=r + m, comm=comm)
    now = 10.0
    obs = _inputs(agents, rng, now)
    for tick in range(3):  # recurrent state and neighbour tables carried across ticks
        alone = _clone(agents)
        batched = step_batch(agents, obs, now)
        for a, o, got in zip(alone, obs, batched):
            want = a.step(o, now)
            assert _same(want, got), f"robot {a.spec.name}, tick {tick}"
        for a, b in zip(alone, agents):
            assert np.array_equal(a.state, b.state) and a.cluster == b.cluster
            assert np.array_equal(a.policy.last_attention, b.policy.last_attention)
        now += 0.05


def test_another_robots_inputs_never_change_a_robots_result():
    """Robot 0 hears nobody (outside everyone's C); whatever the others observe and hear,
    its batched result stays the same bit for bit."""
    rng = np.random.default_rng(7)
    agents = _swarm("lgtc", False, 2, 3, seed=1)
    now = 5.0
    obs = _inputs(agents, rng, now)
    agents[0].neighbours.forget()
    ref = _clone(agents)
    first = step_batch(agents, obs, now)[0]
    for trial in range(5):
        agents = _clone(ref)
        other_obs = _inputs(agents[1:], rng, now)  # new observations, states, messages
        agents[0].state = ref[0].state.copy()
        got = step_batch(agents, [obs[0], *other_obs], now)
        assert _same(first, got[0]), f"trial {trial}"
        if trial == 0:  # and the batch size does not matter either
            alone = step_batch(_clone(ref)[:1], obs[:1], now)[0]
            assert _same(first, alone)


def test_step_batch_refuses_a_mismatch():
    agents = _swarm("lgtc", False, 2, 2, seed=0)
    with pytest.raises(ValueError, match="2 agents but 1 observations"):
        step_batch(agents[:2], [None], 0.0)
    assert step_batch([], [], 0.0) == []
