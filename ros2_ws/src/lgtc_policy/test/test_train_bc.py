"""Expert warm start (DAgger behaviour cloning, lgtc_policy.train.bc) on a tiny budget."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from lgtc_policy.cli import main
from lgtc_policy.evaluate import evaluate_checkpoint
from lgtc_policy.model.checkpoint import build_net, load_checkpoint
from lgtc_policy.model.lgtc import LGTCNet, NetConfig
from lgtc_policy.train.bc import BCConfig, imitation_mse, train_bc
from lgtc_policy.train.common import ConfigError

TINY = dict(
    num_envs=4,
    n_agents=4,
    n_consumers=2,
    episode_length=40,
    window=8,
    g=16,
    f=16,
    hidden=(32,),
    lr=3e-3,
    eval_episodes=2,
    progress=False,
    tensorboard=False,
    threads=1,
)


def test_expert_labels_lie_in_the_unit_disc() -> None:
    from lgtc_policy.env import ResourceEnv
    from lgtc_policy.env.expert import CentralizedExpert

    cfg = BCConfig(**TINY).env_config()
    env = ResourceEnv(cfg, 3, seed=5)
    env.reset()
    expert = CentralizedExpert(env)
    for _ in range(5):
        u = expert.nominal()
        assert u.shape == (3, 4, 2)
        assert float(u.norm(dim=-1).max()) <= 1.0 + 1e-6
        env.step(u)
    # far from its goal an agent moves at full speed (the P controller saturates at v_max)
    env2 = ResourceEnv(cfg, 1, seed=5)
    env2.reset()
    u0 = CentralizedExpert(env2).nominal()
    goal_far = u0.norm(dim=-1) > 0.99
    assert bool(goal_far.any())


def test_bc_reduces_imitation_loss_and_writes_a_standard_checkpoint(tmp_path) -> None:
    cfg = BCConfig(
        **TINY,
        seed=3,
        total_env_steps=4 * 8 * 40,
        updates=4,
        beta_decay=0.5,
        eval_every=4 * 8 * 20,
        checkpoint_every=4 * 8 * 20,
        run_dir=str(tmp_path / "bc"),
    )
    env_cfg = cfg.env_config()
    torch.manual_seed(3)
    train_bc(cfg)
    ck = load_checkpoint(tmp_path / "bc" / "last.pt")
    assert ck["algo"] == "bc_lgtc" and "warm_start" in ck
    ck_cfg = NetConfig.from_dict(dict(ck["nets"]["policy"]))
    assert ck_cfg.kind == "lgtc"
    trained = build_net(ck, "policy")
    torch.manual_seed(3)  # the same initialisation train_bc starts from (set_seed(cfg.seed))
    untrained = LGTCNet(ck_cfg)
    before = imitation_mse(untrained, env_cfg, episodes=4, ticks=40, seed=77)
    after = imitation_mse(trained, env_cfg, episodes=4, ticks=40, seed=77)
    assert after < 0.85 * before, (before, after)
    # one CSV row per window (40 windows), DAgger's beta decays to 0 halfway
    rows = list(csv.DictReader((tmp_path / "bc" / "progress.csv").open()))
    assert len(rows) == 40
    assert float(rows[0]["beta"]) == 1.0 and float(rows[-1]["beta"]) == 0.0
    # Theorem 1 holds for the trained cell (Pi regulariser + tau projection)
    assert trained.cell.theorem1().ok
    # best.pt loads with the standard loader and evaluates like any policy checkpoint
    best = tmp_path / "bc" / "best.pt"
    ev = evaluate_checkpoint(str(best), episodes=2, seed=1, with_expert=False)
    assert ev["algo"] == "bc_lgtc" and ev["episodes"] == 2
    assert torch.isfinite(torch.tensor(ev["reward_mean"]))


def test_cli_train_bc_tiny(tmp_path) -> None:
    run = tmp_path / "cli"
    argv = ["train", "--algo", "bc_lgtc", "--run-dir", str(run), "--total-env-steps", "64"]
    argv += ["--eval-every", "64", "--checkpoint-every", "64", "--window", "4"]
    for k, v in TINY.items():
        if k == "window":
            continue
        flag = "--" + k.replace("_", "-")
        argv += [flag, *map(str, v)] if isinstance(v, tuple) else [flag, str(v)]
    assert main(argv) == 0
    assert load_checkpoint(run / "last.pt")["train_config"]["window"] == 4


def test_bc_config_errors_name_the_field(capsys) -> None:
    with pytest.raises(ConfigError, match="--beta0"):
        BCConfig(beta0=1.5).validate()
    with pytest.raises(ConfigError, match="--window"):
        BCConfig(window=0).validate()
    with pytest.raises(ConfigError, match="--teacher 'oracle'"):
        BCConfig(teacher="oracle").validate()
    # a PPO-only option is refused for bc_lgtc with a one-line error (exit 2)
    assert main(["train", "--algo", "bc_lgtc", "--clip", "0.1"]) == 2
    assert "--clip" in capsys.readouterr().err


def test_ppo_fine_tune_from_bc_warm_start(tmp_path) -> None:
    """--init-checkpoint loads the BC policy; --value-warmup keeps it frozen at first."""
    from lgtc_policy.model.checkpoint import CheckpointError
    from lgtc_policy.train.config import PPOConfig
    from lgtc_policy.train.ppo import train_ppo

    bc_kw = {k: v for k, v in TINY.items() if k not in ("window", "lr")}
    train_bc(
        BCConfig(
            **bc_kw,
            window=8,
            total_env_steps=4 * 8 * 4,
            eval_every=10_000,
            checkpoint_every=10_000,
            run_dir=str(tmp_path / "bc"),
        )
    )
    bc = load_checkpoint(tmp_path / "bc" / "last.pt")
    ppo_kw = dict(bc_kw, num_envs=4, rollout=4 * 10, minibatch=8, epochs=1, eval_every=10_000)

    def fine_tune(name: str, total: int, warmup: int) -> dict:
        cfg = PPOConfig(
            **ppo_kw,
            total_env_steps=total,
            checkpoint_every=40,
            init_checkpoint=str(tmp_path / "bc" / "last.pt"),
            value_warmup=warmup,
            run_dir=str(tmp_path / name),
        )
        train_ppo(cfg)
        return load_checkpoint(tmp_path / name / "last.pt")

    # one update inside the warm-up: the policy and log std are exactly the BC ones
    frozen = fine_tune("warm", 40, warmup=1)
    for k, v in bc["state_dicts"]["policy"].items():
        torch.testing.assert_close(frozen["state_dicts"]["policy"][k], v, rtol=0, atol=0)
    torch.testing.assert_close(
        frozen["state_dicts"]["log_std"]["log_std"], bc["state_dicts"]["log_std"]["log_std"]
    )
    ws = frozen["warm_start"]
    assert ws["init_algo"] == "bc_lgtc" and ws["value_loaded"] is False
    assert frozen["algo"] == "lgtc_ippo"
    # the value was trained during the warm-up (BC leaves it untouched)
    assert any(
        not torch.equal(frozen["state_dicts"]["value"][k], v)
        for k, v in bc["state_dicts"]["value"].items()
    )
    # after the warm-up the policy trains
    moved = fine_tune("moved", 80, warmup=1)
    assert any(
        not torch.equal(moved["state_dicts"]["policy"][k], v)
        for k, v in bc["state_dicts"]["policy"].items()
    )
    rows = list(csv.DictReader((tmp_path / "moved" / "progress.csv").open()))
    assert [float(r["policy_trained"]) for r in rows] == [0.0, 1.0]
    # a checkpoint of another size is refused with a message naming the fix
    with pytest.raises(CheckpointError, match="--g, --f, --hidden"):
        train_ppo(
            PPOConfig(
                **dict(ppo_kw, g=8),
                total_env_steps=40,
                init_checkpoint=str(tmp_path / "bc" / "last.pt"),
                run_dir=str(tmp_path / "bad"),
            )
        )
    with pytest.raises(ConfigError, match="--init-checkpoint"):
        PPOConfig(init_checkpoint="x.pt", resume=True).validate()


def test_ppo_bc_coef_pulls_the_policy_toward_the_teacher(tmp_path, monkeypatch) -> None:
    """--bc-coef adds ||mu - u_teacher||^2: with a constant teacher the mean goes there."""
    from lgtc_policy.env import ResourceEnv
    from lgtc_policy.model.features import inputs_from_obs
    from lgtc_policy.train import ppo
    from lgtc_policy.train.config import PPOConfig

    target = torch.tensor([0.5, -0.25])
    monkeypatch.setattr(
        ppo, "greedy_action", lambda env: target.expand(env.batch_size, env.cfg.n_agents, 2)
    )
    kw = {k: v for k, v in TINY.items() if k not in ("window", "lr")}
    kw.update(num_envs=4, rollout=4 * 16, minibatch=8, epochs=2, eval_every=10_000)
    with pytest.raises(ConfigError, match="--bc-coef"):
        PPOConfig(bc_coef=-0.1).validate()

    def mean_error(coef: float) -> float:
        cfg = PPOConfig(
            **kw,
            lr=3e-3,
            total_env_steps=4 * 16 * 8,
            checkpoint_every=10_000,
            bc_coef=coef,
            run_dir=str(tmp_path / f"c{coef}"),
        )
        ppo.train_ppo(cfg)
        net = build_net(load_checkpoint(tmp_path / f"c{coef}" / "last.pt"), "policy")
        env = ResourceEnv(cfg.env_config(), 4, seed=9)
        obs = env.reset()
        x = torch.zeros(4, cfg.n_agents, net.state_dim)
        with torch.no_grad():
            out, _, _ = net(inputs_from_obs(obs, obs.agent_res), x)
        return float((out[..., :2] - target).pow(2).sum(-1).mean())

    plain, anchored = mean_error(0.0), mean_error(50.0)
    assert anchored < 0.05 < plain, (plain, anchored)
    rows = list(csv.DictReader((tmp_path / "c50.0" / "progress.csv").open()))
    assert float(rows[-1]["loss_bc"]) < float(rows[0]["loss_bc"])
    rows = list(csv.DictReader((tmp_path / "c0.0" / "progress.csv").open()))
    assert all(float(r["loss_bc"]) == 0.0 for r in rows)


def test_ppo_expert_teacher_is_the_experts_nominal_command_and_follows_a_discharge() -> None:
    """--bc-teacher expert: the anchor equals CentralizedExpert.nominal() on the same state,
    and after an agent discharges the teacher sends another agent to its consumer (eq. 3
    gives every consumer >= 1 agent), where the greedy rule keeps everyone in place."""
    from lgtc_policy.env import EnvConfig, ResourceEnv
    from lgtc_policy.env.expert import CentralizedExpert
    from lgtc_policy.train.config import PPOConfig
    from lgtc_policy.train.ppo import _teacher

    with pytest.raises(ConfigError, match="--bc-teacher"):
        PPOConfig(bc_coef=0.5, bc_teacher="oracle").validate()
    assert _teacher(None, PPOConfig(bc_coef=0.0, bc_teacher="expert")) is None
    cfg = EnvConfig(
        n_agents=4,
        n_consumers=3,
        resources_per_consumer=1,
        max_resources_per_agent=1,
        resource_kinds="persistent",
        supply_range=(0.2, 1.0),
    )
    env = ResourceEnv(cfg, 2, seed=3)
    env.reset()
    teach = _teacher(env, PPOConfig(bc_coef=0.5, bc_teacher="expert").validate())
    ref = CentralizedExpert(ResourceEnv(cfg, 2, seed=3))
    ref.env.reset()
    torch.testing.assert_close(teach(None), ref.nominal())
    expert = CentralizedExpert(env)
    expert.targets()
    before = expert.assignment[0].copy()
    # the agent that serves its consumer alone discharges and lands
    m = next(k for k in range(3) if (before == k).sum() == 1)
    victim = int(np.flatnonzero(before == m)[0])
    env.discharge(torch.tensor([0]), torch.tensor([victim]))
    expert.targets()
    after = expert.assignment[0]
    assert after[victim] == -1 and not bool(env.active[0, victim])
    assert [i for i in range(4) if i != victim and after[i] == m], (before, after)
    u = teach(torch.tensor([False, False]))
    assert float(u[0, victim].norm()) == 0.0  # the landed agent gets no command


def test_env_overrides_may_not_resize_the_trainer() -> None:
    from lgtc_policy.train.config import PPOConfig

    with pytest.raises(ConfigError, match="--n-agents 5"):
        PPOConfig(env_overrides='{"n_agents": 5}').env_config()
    with pytest.raises(ConfigError, match="--episode-length"):
        PPOConfig(env_overrides='{"episode_length": 600}').env_config()
    assert PPOConfig(env_overrides='{"discharge_rate": 0.01}').env_config().discharge_rate == 0.01
