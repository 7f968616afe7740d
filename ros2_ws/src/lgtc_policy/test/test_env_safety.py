"""The in-env CBF safety filter (env/safety.py), and training/evaluating through it."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from cbf_filter import CentralizedCBF
from hypothesis import given, settings
from hypothesis import strategies as st
from lgtc_policy.env import EnvConfig, ResourceEnv
from lgtc_policy.env.safety import SafetyConfig, SafetyFilter
from lgtc_policy.env.spec import ActionError


def _env(batch: int = 3, seed: int = 0, **kw) -> ResourceEnv:
    cfg = EnvConfig(n_agents=10, n_consumers=4, auto_reset=False, **kw)
    env = ResourceEnv(cfg, batch_size=batch, seed=seed)
    env.reset()
    return env


def test_filter_equals_the_cbf_filter_core_env_by_env() -> None:
    env = _env()
    safety = SafetyFilter(env)
    gen = torch.Generator().manual_seed(1)
    act = torch.rand(3, 10, 2, generator=gen) * 2 - 1
    got = safety.filter(act).double().numpy()
    vmax = env.cfg.v_max
    a = act.double().numpy()
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1.0)
    pos = env.pos.double().numpy()
    for b in range(3):
        ref = CentralizedCBF(10, 2, safety.params).filter(pos[b], a[b] * vmax)
        assert ref.found
        np.testing.assert_allclose(got[b], np.clip(ref.u / vmax, -1, 1), atol=1e-6)
    assert safety.params.safety_distance == pytest.approx(1.2 * env.cfg.epsilon)


def test_a_safe_command_passes_unchanged() -> None:
    env = _env(batch=2)
    zero = torch.zeros(2, 10, 2)
    assert torch.equal(SafetyFilter(env).filter(zero), zero)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_random_commands_through_the_filter_never_collide(seed: int) -> None:
    # invariant: whatever the policy commands, the filtered robots stay >= epsilon apart, so
    # eq. 2's collision term rw_ij is never paid (the agents start >= spawn separation apart)
    env = _env(batch=2, seed=seed)
    safety = SafetyFilter(env)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(60):
        act = torch.randn(2, 10, 2, generator=gen) * 2
        _, _, _, info = env.step(safety.filter(act))
        assert int(info["collisions"].sum()) == 0
        assert float(info["min_distance"].min()) >= env.cfg.epsilon
    assert safety.fallbacks == 0


def test_inactive_robots_get_zero_and_nan_follows_the_env_policy() -> None:
    env = _env(batch=1)
    env.discharge(torch.tensor([0]), torch.tensor([3]), level=0.0, deactivate=True)
    out = SafetyFilter(env).filter(torch.full((1, 10, 2), 0.5))
    assert torch.equal(out[0, 3], torch.zeros(2))
    bad = torch.zeros(1, 10, 2)
    bad[0, 2, 0] = float("nan")
    with pytest.raises(ActionError, match=r"actions\[0, 2\]"):
        SafetyFilter(env).filter(bad)
    env_zero = _env(batch=1, nan_actions="zero")
    out = SafetyFilter(env_zero).filter(bad)
    assert torch.isfinite(out).all() and torch.equal(out[0, 2], torch.zeros(2))


def test_bad_safety_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="safety_factor"):
        SafetyConfig(safety_factor=0.5)
    with pytest.raises(ValueError, match="gamma"):
        SafetyConfig(gamma=0.0)


def test_ppo_trains_and_evaluates_through_the_filter(tmp_path) -> None:
    from lgtc_policy.evaluate import evaluate_checkpoint, trained_safety_filter
    from lgtc_policy.model.checkpoint import load_checkpoint
    from lgtc_policy.train.common import ConfigError
    from lgtc_policy.train.config import PPOConfig
    from lgtc_policy.train.ppo import train_ppo

    with pytest.raises(ConfigError, match="safety-filter"):
        PPOConfig(safety_filter="osqp").validate()
    cfg = PPOConfig(
        algo="lgtc_ippo",
        safety_filter="cbf",
        total_env_steps=128,
        num_envs=8,
        n_agents=4,
        n_consumers=2,
        episode_length=16,
        rollout=64,
        minibatch=16,
        epochs=1,
        eval_every=128,
        eval_episodes=2,
        checkpoint_every=128,
        g=8,
        f=8,
        hidden=(16,),
        progress=False,
        tensorboard=False,
        threads=1,
        run_dir=str(tmp_path),
    )
    summary = train_ppo(cfg)
    assert summary["collisions_per_episode"] == 0.0  # the run's evaluation went through it
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    assert int(rows[-1]["env_steps"]) == 128
    ck = load_checkpoint(tmp_path / "last.pt")
    assert trained_safety_filter(ck) == "cbf"
    ev = evaluate_checkpoint(str(tmp_path / "last.pt"), episodes=2, seed=5)
    assert ev["safety_filter"] == "cbf"  # 'auto': as trained
    assert ev["reward_mean"] == ev["reward_mean_filter_cbf"]
    assert ev["collisions_per_episode_filter_cbf"] == 0.0
    assert ev["ratio_to_expert_filter_none"] == pytest.approx(
        ev["reward_mean_filter_none"] / ev["expert_reward_mean"]
    )
    alone = evaluate_checkpoint(str(tmp_path / "last.pt"), 2, 5, safety_filter="none")
    assert alone["reward_mean"] == pytest.approx(ev["reward_mean_filter_none"])
    with pytest.raises(ValueError, match="safety_filter"):
        evaluate_checkpoint(str(tmp_path / "last.pt"), 2, 5, safety_filter="osqp")
