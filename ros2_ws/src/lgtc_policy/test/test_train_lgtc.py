"""Trainers: GAE by hand, config parsing, and every trainer end-to-end on a tiny budget."""

from __future__ import annotations

import argparse
import csv
import json
import math

import pytest
import torch
from lgtc_policy.train.common import (
    ConfigError,
    add_dataclass_args,
    dataclass_from_args,
    gae,
)
from lgtc_policy.train.config import PPOConfig, SACConfig

TINY = dict(
    total_env_steps=256,
    num_envs=8,
    n_agents=4,
    n_consumers=2,
    episode_length=16,
    eval_every=128,
    eval_episodes=2,
    checkpoint_every=128,
    g=8,
    f=8,
    hidden=(16,),
    progress=False,
    tensorboard=False,
    threads=1,
)


def test_gae_matches_hand_computation() -> None:
    g, lam = 0.9, 0.5
    r = torch.tensor([1.0, 0.0, 2.0])
    v = torch.tensor([0.5, 1.0, 0.2])
    d = torch.tensor([0.0, 1.0, 0.0])  # episode ends after t = 1
    last = torch.tensor(3.0)
    adv, ret = gae(r, v, d, last, g, lam)
    d2 = 2.0 + g * 3.0 - 0.2  # t = 2 bootstraps from last_value
    d1 = 0.0 - 1.0  # t = 1 is terminal: no bootstrap
    d0 = 1.0 + g * 1.0 - 0.5
    a2, a1 = d2, d1  # the terminal step cuts the trace
    a0 = d0 + g * lam * a1
    torch.testing.assert_close(adv, torch.tensor([a0, a1, a2]))
    torch.testing.assert_close(ret, adv + v)


def test_gae_vector_rewards_broadcast() -> None:
    r = torch.ones(4, 2, 3, 5)
    v = torch.zeros(4, 2, 3, 5)
    d = torch.zeros(4, 2, 1, 1)
    adv, _ = gae(r, v, d, torch.zeros(2, 3, 5), 0.5, 1.0)
    torch.testing.assert_close(adv[0], torch.full((2, 3, 5), 1 + 0.5 + 0.25 + 0.125))


def test_config_cli_roundtrip_and_validation() -> None:
    p = argparse.ArgumentParser()
    add_dataclass_args(p, PPOConfig)
    ns = p.parse_args(["--algo", "ippo", "--hidden", "32", "16", "--tensorboard", "false"])
    cfg = dataclass_from_args(PPOConfig, ns).validate()
    assert cfg.algo == "ippo" and cfg.hidden == (32, 16) and cfg.tensorboard is False
    assert cfg.clip == 0.2 and cfg.gae_lambda == 0.95 and cfg.rollout == 6144  # Table I
    assert SACConfig().polyak == 0.005 and SACConfig().buffer == 20000
    with pytest.raises(ConfigError, match="algo"):
        PPOConfig(algo="vdn").validate()
    with pytest.raises(ConfigError, match="gamma"):
        SACConfig(gamma=1.5).validate()


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        # `lgtc train --seed -5 --total-env-steps 10` collected a whole 6144-step rollout
        # (over 60 s on a loaded machine) for a budget of 10
        ({"total_env_steps": 10}, "--total-env-steps 10 is below one PPO update (96 steps x 64"),
        ({"seed": -5}, "--seed -5: must be an integer from 0 to"),
        ({"seeds": (1, -2)}, "--seeds -2: each must be an integer from 0"),
        ({"threads": 100_000}, "--threads 100000: must be 0 (every core) to 256"),
        # values of the wrong type or not finite (JSON options, NaN from the command line)
        ({"rollout": "x"}, "--rollout: must be an integer, got 'x'"),
        ({"rollout": math.inf}, "--rollout: must be an integer, got inf"),
        ({"rollout": True}, "--rollout: must be an integer, got True"),
        ({"clip": math.nan}, "--clip: must be a finite number, got nan"),
        ({"bc_coef": math.nan}, "--bc-coef: must be a finite number, got nan"),
        ({"hidden": (16, "a")}, "--hidden: must be a list of integers, got (16, 'a')"),
        ({"progress": "yes"}, "--progress: must be true or false, got 'yes'"),
        # sizes and counts that trained nonsense, hung or were allocation tracebacks
        ({"hidden": (0,)}, "--hidden 0: each layer size must be an integer from 1 to 8192"),
        ({"hidden": (-5,)}, "--hidden -5: each layer size"),
        ({"g": 100_000_000}, "--g 100000000: each layer size"),
        ({"eval_episodes": 10**8}, "--eval-episodes 100000000: must be 1 to 10000"),
        ({"rollout": 10**11, "total_env_steps": 10**11}, "--rollout 100000000000: must be at"),
    ],
)
def test_fuzzed_config_values_are_refused_with_the_field(fields, words) -> None:
    with pytest.raises(ConfigError) as err:
        PPOConfig(**fields).validate()
    assert words in str(err.value)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"learning_starts": -1}, "need --learning-starts >= 0"),
        ({"updates_per_step": 0}, "--updates-per-step >= 1"),
        ({"entropy_coef": -0.1}, "--entropy-coef >= 0"),
        ({"mix_hidden": (0,)}, "--mix-hidden 0: each layer size"),
        ({"buffer": 10**12}, "--buffer 1000000000000: must be at most 1000000"),
    ],
)
def test_fuzzed_sac_values_are_refused_with_the_field(fields, words) -> None:
    """These trained (nothing learnt with no gradient step, a zero-width mixer) or hung."""
    with pytest.raises(ConfigError) as err:
        SACConfig(**fields).validate()
    assert words in str(err.value)


def test_budget_of_one_update_and_int_for_float_pass() -> None:
    PPOConfig(total_env_steps=6144).validate()
    PPOConfig(total_env_steps=64, rollout=64, lr=1, max_grad_norm=2).validate()
    SACConfig(total_env_steps=10, seed=2**63 - 1).validate()  # SAC steps num_envs at a time


@pytest.mark.parametrize("algo", ["lgtc_ippo", "ippo", "mamoppo"])
def test_ppo_trainers_end_to_end(tmp_path, algo: str) -> None:
    from lgtc_policy.model.checkpoint import load_checkpoint
    from lgtc_policy.train.ppo import train_ppo

    cfg = PPOConfig(algo=algo, rollout=64, minibatch=16, epochs=2, run_dir=str(tmp_path), **TINY)
    summary = train_ppo(cfg)
    assert set(summary) >= {"reward_mean", "demand_satisfied_mean", "episodes"}
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    assert len(rows) == 4 and int(rows[-1]["env_steps"]) == 256
    assert rows[-1]["eval_reward"] != "" and rows[-1]["episode_reward"] != ""
    assert json.loads((tmp_path / "config.json").read_text())["train"]["algo"] == algo
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["progress"]["env_steps"] == 256 and ck["algo"] == algo
    if algo == "mamoppo":
        assert ck["nets"]["value"]["out_dim"] == 2  # one value per consumer
    # resume continues from last.pt up to the new budget
    more = PPOConfig(
        algo=algo,
        rollout=64,
        minibatch=16,
        epochs=2,
        run_dir=str(tmp_path),
        resume=True,
        **{**TINY, "total_env_steps": 384},
    )
    train_ppo(more)
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    assert [int(r["env_steps"]) for r in rows][-2:] == [320, 384]
    with pytest.raises(ConfigError, match="differs"):
        train_ppo(PPOConfig(**{**more.__dict__, "clip": 0.3, "total_env_steps": 512}))


@pytest.mark.parametrize("algo", ["vdn", "qmix"])
def test_sac_trainers_end_to_end(tmp_path, algo: str) -> None:
    from lgtc_policy.model.checkpoint import load_checkpoint
    from lgtc_policy.train.sac import train_sac

    cfg = SACConfig(
        algo=algo,
        batch=16,
        buffer=128,
        learning_starts=64,
        mix_hidden=(8, 8),
        run_dir=str(tmp_path),
        **TINY,
    )
    summary = train_sac(cfg)
    assert "reward_mean" in summary
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["nets"]["policy"]["squash"] is True
    has_mixer = any("mixer" in k for k in ck["state_dicts"]["critics"])
    assert has_mixer == (algo == "qmix")
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    assert float(rows[-1]["loss_q"]) > 0
