"""Several seeds in one process: a stacked 2-seed run equals the two single-seed runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from lgtc_policy.model.checkpoint import load_checkpoint
from lgtc_policy.train.common import ConfigError
from lgtc_policy.train.config import PPOConfig
from lgtc_policy.train.ppo import train_ppo
from lgtc_policy.train.stacked import train_ppo_seeds

BASE = PPOConfig(
    rollout=32,
    minibatch=8,
    epochs=2,
    total_env_steps=32,
    num_envs=4,
    n_agents=3,
    n_consumers=2,
    episode_length=6,
    eval_episodes=1,
    g=4,
    f=4,
    hidden=(8,),
    progress=False,
    tensorboard=False,
    threads=1,
    eval_every=10**9,
    checkpoint_every=10**9,
    device="cpu",
)


@pytest.mark.parametrize("algo", ["lgtc_ippo", "ippo", "mamoppo"])
def test_two_stacked_seeds_equal_the_single_seed_runs(tmp_path, algo: str) -> None:
    """First update (paper recipe: BPTT 10, sums, paper Pi) of seeds 3 and 5 trained side by
    side equals each seed trained alone: weights and Adam moments to float rounding."""
    cfg = dataclasses.replace(BASE, algo=algo, seeds=(3, 5), run_dir=str(tmp_path / "st"))
    train_ppo_seeds(cfg)
    for s in (3, 5):
        one = dataclasses.replace(BASE, algo=algo, seed=s, run_dir=str(tmp_path / f"one{s}"))
        train_ppo(one)
        a = load_checkpoint(tmp_path / "st" / f"s{s}" / "last.pt")
        b = load_checkpoint(tmp_path / f"one{s}" / "last.pt")
        assert a["train_config"]["seed"] == s and a["train_config"]["seeds"] == []
        for net, sd in b["state_dicts"].items():
            for k, v in sd.items():
                torch.testing.assert_close(a["state_dicts"][net][k], v, rtol=0, atol=1e-6)
        for opt in ("pi", "v"):
            for k, st in b["optim"][opt]["state"].items():
                torch.testing.assert_close(
                    a["optim"][opt]["state"][k]["exp_avg"], st["exp_avg"], rtol=0, atol=1e-6
                )


def test_a_stacked_seed_resumes_as_a_single_run(tmp_path) -> None:
    cfg = dataclasses.replace(BASE, seeds=(1, 2), run_dir=str(tmp_path))
    train_ppo_seeds(cfg)
    more = dataclasses.replace(
        BASE, seed=2, run_dir=str(tmp_path / "s2"), resume=True, total_env_steps=64
    )
    train_ppo(more)
    assert load_checkpoint(tmp_path / "s2" / "last.pt")["progress"]["env_steps"] == 64
    with pytest.raises(ConfigError, match="--seeds"):
        dataclasses.replace(cfg, resume=True).validate()
    with pytest.raises(ConfigError, match="each seed once"):
        dataclasses.replace(cfg, seeds=(1, 1)).validate()
