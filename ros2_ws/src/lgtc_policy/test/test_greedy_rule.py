"""The decentralized greedy coverage rule (lgtc_policy.greedy): exact cases and invariants."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lgtc_policy.env import EnvConfig, ResourceEnv
from lgtc_policy.evaluate import evaluate_greedy
from lgtc_policy.greedy import GreedyConfig, greedy_action


def _world(pos, supply, demand, cpos, rad, persistent, active=None, v_max=0.5):
    t = lambda x: torch.as_tensor(x, dtype=torch.float32)[None]  # noqa: E731
    pos = t(pos)
    return SimpleNamespace(
        pos=pos,
        supply=t(supply),
        demand=t(demand),
        consumer_pos=t(cpos),
        radius=t(rad),
        persistent=torch.as_tensor(persistent)[None],
        active=torch.ones(pos.shape[:2], dtype=torch.bool) if active is None else active,
        cfg=SimpleNamespace(v_max=v_max),
    )


def test_targets_the_best_useful_delivery_per_distance() -> None:
    # consumer 0 at distance 0.5 wants 1 unit of type 0; consumer 1 at distance 1.0 wants 4
    w = _world(
        pos=[[0.0, 0.0]],
        supply=[[3.0, 0.0]],
        demand=[[1.0, 0.0], [4.0, 0.0]],
        cpos=[[0.5, 0.0], [0.0, 1.0]],
        rad=[0.1, 0.1],
        persistent=[False, False],
    )
    u = greedy_action(w, GreedyConfig(repel=0.0))
    # scores: 1 / 0.8 = 1.25 vs 3 / 1.3 = 2.31 -> consumer 1, straight up, saturated
    torch.testing.assert_close(u[0, 0], torch.tensor([0.0, 1.0]))


def test_stays_inside_a_persistent_area_it_covers() -> None:
    # inside consumer 0, whose remaining persistent demand is 0 because this robot covers it;
    # consumer 1 far away wants much more: the robot still stays (its cover would be lost)
    w = _world(
        pos=[[0.02, 0.0]],
        supply=[[1.0, 0.0]],
        demand=[[0.0, 0.0], [5.0, 0.0]],
        cpos=[[0.0, 0.0], [0.9, 0.0]],
        rad=[0.15, 0.15],
        persistent=[True, False],
    )
    u = greedy_action(w, GreedyConfig(repel=0.0, k_p=4.0))
    # toward its own area's centre: k_p * (-0.02) / v_max
    torch.testing.assert_close(u[0, 0], torch.tensor([-0.16, 0.0]))


def test_nothing_useful_or_inactive_means_zero() -> None:
    w = _world(
        pos=[[0.0, 0.0], [0.5, 0.5]],
        supply=[[0.0, 2.0], [1.0, 0.0]],
        demand=[[1.0, 0.0]],
        cpos=[[0.8, 0.0]],
        rad=[0.1],
        persistent=[False, False],
        active=torch.tensor([[True, False]]),
    )
    u = greedy_action(w)
    assert torch.equal(u, torch.zeros(1, 2, 2))


def test_close_robots_push_apart() -> None:
    w = _world(
        pos=[[0.0, 0.0], [0.05, 0.0]],
        supply=[[1.0, 0.0], [1.0, 0.0]],
        demand=[[5.0, 0.0]],
        cpos=[[0.0, 0.9]],
        rad=[0.1],
        persistent=[False, False],
    )
    u0 = greedy_action(w, GreedyConfig(repel=0.0))
    u1 = greedy_action(w, GreedyConfig(repel=0.05))
    assert u0[0, 0, 0] == 0.0
    assert u1[0, 0, 0] < 0.0 < u1[0, 1, 0]  # robot 0 pushed left, robot 1 right


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(0, 40))
def test_commands_lie_in_the_unit_disc_and_are_finite(seed: int, steps: int) -> None:
    env = ResourceEnv(EnvConfig(), 4, seed=seed)
    env.reset()
    for _ in range(steps):
        env.step(greedy_action(env))
    u = greedy_action(env)
    assert u.shape == (4, env.cfg.n_agents, 2)
    assert torch.isfinite(u).all()
    assert (torch.linalg.norm(u, dim=-1) <= 1.0 + 1e-5).all()
    assert (u[~env.active] == 0).all()


def test_greedy_rule_covers_most_demand_on_the_training_setup() -> None:
    cfg = dataclasses.replace(EnvConfig(), episode_length=300)
    out = evaluate_greedy(cfg, episodes=8, seed=10_000)
    assert out["demand_satisfied_mean"] > 0.7, out
    assert out["reward_mean"] > 5.0, out
