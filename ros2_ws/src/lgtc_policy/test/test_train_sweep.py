"""Resumable training: a run killed and resumed equals the uninterrupted one; lgtc sweep
skips finished runs, continues interrupted ones and refuses to overwrite."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from lgtc_policy.model.checkpoint import load_checkpoint
from lgtc_policy.train.common import ConfigError
from lgtc_policy.train.config import PPOConfig
from lgtc_policy.train.ppo import train_ppo
from lgtc_policy.train.sweep import run_sweep

SMALL = dict(
    num_envs=4,
    n_agents=3,
    n_consumers=2,
    episode_length=7,
    eval_episodes=1,
    g=4,
    f=4,
    hidden=(8,),
    progress=False,
    tensorboard=False,
    threads=1,
    device="cpu",
)
PPO = PPOConfig(rollout=32, minibatch=8, epochs=2, eval_every=10**9, checkpoint_every=32, **SMALL)


def _weights(path) -> dict:
    return load_checkpoint(path)["state_dicts"]


def test_resume_after_a_kill_equals_the_uninterrupted_run(tmp_path) -> None:
    """`lgtc train` killed (SIGKILL) after some checkpoint, then `--resume true`: the final
    weights equal those of the run that was never interrupted, bit for bit (the checkpoint
    holds the generators, the env, the recurrent carry and the observation)."""
    budget = 32 * 40
    train_ppo(dataclasses.replace(PPO, total_env_steps=budget, run_dir=str(tmp_path / "a")))
    b = tmp_path / "b"
    args = [sys.executable, "-m", "lgtc_policy.cli", "train", "--algo", "lgtc_ippo"]
    for k, v in {**SMALL, "rollout": 32, "minibatch": 8, "epochs": 2}.items():
        vals = [str(x) for x in v] if isinstance(v, tuple) else [str(v)]
        args += ["--" + k.replace("_", "-"), *vals]
    args += ["--eval-every", str(10**9), "--checkpoint-every", "32"]
    args += ["--total-env-steps", str(budget), "--run-dir", str(b)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (b / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    # checkpoints are written atomically: kill at once after the first one, mid-run
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(b / "last.pt")["progress"]["env_steps"]
    assert killed_at < budget, "the run finished before the kill: nothing was resumed"
    train_ppo(dataclasses.replace(PPO, total_env_steps=budget, run_dir=str(b), resume=True))
    wa, wb = _weights(tmp_path / "a" / "last.pt"), _weights(b / "last.pt")
    for net, sd in wa.items():
        for k, v in sd.items():
            assert torch.equal(v, wb[net][k]), (net, k, killed_at)
    rows = list(csv.DictReader((b / "progress.csv").open()))
    assert int(rows[-1]["env_steps"]) == budget


def test_keep_checkpoints_writes_every_checkpoint_as_a_policy_file(tmp_path) -> None:
    """``keep_checkpoints``: besides last.pt, each checkpoint stays as
    checkpoints/step_<env steps>.pt without optimiser or resume state, also across a resume,
    and per seed for a stacked run; the last kept file holds last.pt's weights."""
    from lgtc_policy.train.stacked import train_ppo_seeds

    run = tmp_path / "one"
    cfg = dataclasses.replace(PPO, keep_checkpoints=True, run_dir=str(run), total_env_steps=64)
    train_ppo(cfg)
    train_ppo(dataclasses.replace(cfg, total_env_steps=96, resume=True))
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["step_000000032.pt", "step_000000064.pt", "step_000000096.pt"]
    for name in kept:
        ck = load_checkpoint(run / "checkpoints" / name)
        assert ck["optim"] is None and "resume_state" not in ck
        assert ck["progress"]["env_steps"] == int(name[5:14])
    assert "resume_state" in load_checkpoint(run / "last.pt")
    wl, wk = _weights(run / "last.pt"), _weights(run / "checkpoints" / kept[-1])
    assert all(torch.equal(v, wk[n][k]) for n, sd in wl.items() for k, v in sd.items())
    assert not (tmp_path / "off").exists()
    train_ppo(dataclasses.replace(PPO, run_dir=str(tmp_path / "off"), total_env_steps=32))
    assert not (tmp_path / "off" / "checkpoints").exists()
    dirs = [tmp_path / "s1", tmp_path / "s2"]
    train_ppo_seeds(dataclasses.replace(cfg, seeds=(1, 2), total_env_steps=64), dirs)
    for d in dirs:
        names = sorted(p.name for p in (d / "checkpoints").iterdir())
        assert names == ["step_000000032.pt", "step_000000064.pt"]


def test_sweep_skips_resumes_and_refuses_to_overwrite(tmp_path) -> None:
    common = {**SMALL, "total_env_steps": 32, "eval_every": 10**9, "checkpoint_every": 32}
    fam = {"ppo": {"rollout": 32, "minibatch": 8, "epochs": 2}, "sac": {"batch": 8}}
    rows = run_sweep(common, ["lgtc_ippo", "vdn"], [1, 2], str(tmp_path), False, fam)
    assert [(r["algo"], r["seed"]) for r in rows] == [
        ("lgtc_ippo", 1), ("lgtc_ippo", 2), ("vdn", 1), ("vdn", 2),
    ]  # fmt: skip
    assert all(r["reward_mean"] != "" for r in rows)
    assert (tmp_path / "sweep.csv").is_file()
    with pytest.raises(ConfigError, match="--resume true"):
        run_sweep(common, ["lgtc_ippo"], [1], str(tmp_path), False, fam)
    mtime = (tmp_path / "lgtc_ippo_s1" / "last.pt").stat().st_mtime_ns
    run_sweep(common, ["lgtc_ippo"], [1, 2], str(tmp_path), True, fam)  # all done: skipped
    assert (tmp_path / "lgtc_ippo_s1" / "last.pt").stat().st_mtime_ns == mtime
    more = {**common, "total_env_steps": 64}
    run_sweep(more, ["lgtc_ippo"], [1, 2, 3], str(tmp_path), True, fam)
    for s in (1, 2, 3):
        ck = load_checkpoint(tmp_path / f"lgtc_ippo_s{s}" / "last.pt")
        assert ck["progress"]["env_steps"] == 64 and ck["train_config"]["seed"] == s
    one = dataclasses.replace(PPO, seed=3, total_env_steps=64, run_dir=str(tmp_path / "one"))
    train_ppo(one)
    w3, w1 = _weights(tmp_path / "lgtc_ippo_s3" / "last.pt"), _weights(tmp_path / "one/last.pt")
    for net, sd in w1.items():
        for k, v in sd.items():
            torch.testing.assert_close(w3[net][k], v, rtol=0, atol=1e-6)


def test_cli_sweep_tiny(tmp_path, capsys) -> None:
    from lgtc_policy.cli import main

    args = ["sweep", "--algos", "ippo", "--seeds", "4", "5", "--run-dir", str(tmp_path)]
    args += ["--total-env-steps", "32", "--num-envs", "4", "--n-agents", "3"]
    args += ["--n-consumers", "2", "--episode-length", "7", "--eval-episodes", "1"]
    args += ["--g", "4", "--f", "4", "--hidden", "8", "--threads", "1", "--device", "cpu"]
    args += ["--progress", "false", "--tensorboard", "false"]
    args += ["--ppo-options", '{"rollout": 32, "minibatch": 8}']
    assert main(args) == 0
    assert (tmp_path / "ippo_s5" / "progress.csv").is_file()
    assert main([*args[:-1], "not json"]) == 2
    assert "--ppo-options" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ('{"rollout": "x"}', "--ppo-options 'rollout': must be an integer, got 'x'"),  # TypeError
        ('{"rollout": 1e999}', "--ppo-options 'rollout': must be an integer, got inf"),  # trained
        ('{"clip": NaN}', "--ppo-options 'clip': must be a finite number, got nan"),
        ('{"rollout": 2}', "--rollout >= --num-envs (set by --ppo-options 'rollout')"),
        ('{"bogus": 1}', "--ppo-options 'bogus': not a PPOConfig field"),
        ('{"seed": 3}', "--ppo-options 'seed': the sweep sets it for each run; use --seeds"),
        ("[" * 100_000 + "]" * 100_000, "--ppo-options is nested too deep"),
    ],
)
def test_sweep_options_are_checked_by_the_field_rules(tmp_path, capsys, options, words) -> None:
    """``--ppo-options`` values go through the train config's field rules: one line naming
    the key and exit 2, before anything trains (no run folder)."""
    from lgtc_policy.cli import main

    args = ["sweep", "--algos", "ippo", "--seeds", "1", "--run-dir", str(tmp_path / "sw")]
    assert main([*args, "--ppo-options", options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "sw").exists()


def test_sweep_checks_every_method_before_the_first_trains(tmp_path) -> None:
    """A bad SAC option used to surface only after the PPO methods had trained."""
    common = {**SMALL, "total_env_steps": 32}
    fam = {"ppo": {"rollout": 32, "minibatch": 8}, "sac": {"polyak": 2.0}}
    with pytest.raises(ConfigError, match=r"vdn: .*--polyak in \(0, 1\] \(set by --sac-options"):
        run_sweep(common, ["ippo", "vdn"], [1], str(tmp_path), False, fam)
    assert not (tmp_path / "ippo_s1").exists()


def test_resume_state_from_another_device_type_is_not_applied() -> None:
    from lgtc_policy.train.ppo import ActorCritic, PPORun

    cfg = dataclasses.replace(PPO, rollout=4, num_envs=2)
    pr = PPORun(cfg, ActorCritic(cfg, 2), 0, torch.device("cpu"))
    snap = pr.snapshot()
    assert pr.restore(snap)
    assert not pr.restore({**snap, "device": "cuda"})
