"""Independent PPO with shared parameters: LGTC-IPPO, IPPO and MAMOPPO (Sec. III-C, IV).

* LGTC-IPPO: policy and value are two :class:`LGTCNet` (``kind='lgtc'``) with their own
  cluster states; losses eqs. (12)-(14) with the contraction regulariser Pi (eq. 15).
* IPPO: the same trainer with the reduced network (``kind='ippo'``), no Pi.
* MAMOPPO: reduced network, value head with one output per consumer trained on the env's
  per-consumer reward decomposition (``info['reward_vec']``); the policy advantage is the
  linear scalarisation (weights 1) of the per-consumer advantages, so the weighted sum of the
  value vector approximates the scalar value of eq. (2) (Sec. IV).

Recurrent state handling: the cluster states ``x(t)`` of every agent are stored in the rollout
and the update recomputes ``x(t+1)`` and the outputs from them (one-step truncated
backpropagation through the cell, the usual stored-hidden-state recurrent PPO).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lgtc_policy.env import EnvConfig, Obs
from lgtc_policy.greedy import greedy_action
from lgtc_policy.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lgtc_policy.model.features import inputs_from_obs, item_dims
from lgtc_policy.model.lgtc import LGTCNet, NetConfig, NetInputs
from lgtc_policy.train.common import (
    ConfigError,
    RunLogger,
    config_from_dict,
    gae,
    set_seed,
    write_json,
)
from lgtc_policy.train.config import PPOConfig

__all__ = ["ActorCritic", "checkpoint_payload", "train_ppo"]


# ============================================================================ networks
class ActorCritic(nn.Module):
    """Gaussian policy (mean from the network, state-independent log std) and value network."""

    def __init__(self, cfg: PPOConfig, n_resources: int) -> None:
        super().__init__()
        da, dc = item_dims(n_resources)
        kind = "lgtc" if cfg.algo == "lgtc_ippo" else "ippo"
        common = dict(agent_item_dim=da, consumer_item_dim=dc, kind=kind, g=cfg.g, f=cfg.f)
        common["hidden"] = tuple(cfg.hidden)
        self.vec_value = cfg.algo == "mamoppo"
        self.policy = LGTCNet(NetConfig(out_dim=2, **common))
        self.value = LGTCNet(NetConfig(out_dim=cfg.n_consumers if self.vec_value else 1, **common))
        self.log_std = nn.Parameter(torch.full((2,), float(cfg.log_std_init)))

    def dist(self, mean: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean))


@dataclass
class _Carry:
    """Recurrent per-env quantities: policy/value cluster states and last tick's items."""

    xp: torch.Tensor  # (B, N, F or 0)
    xv: torch.Tensor  # (B, N, F or 0)
    prev_res: torch.Tensor  # (B, N, r, da)

    def reset(self, done: torch.Tensor, obs: Obs) -> None:
        self.xp[done] = 0.0
        self.xv[done] = 0.0
        self.prev_res[done] = obs.agent_res[done]


def _value_out(ac: ActorCritic, out: torch.Tensor) -> torch.Tensor:
    """(B, N, 1) -> (B, N); MAMOPPO keeps the (B, N, M) vector."""
    return out if ac.vec_value else out[..., 0]


# ============================================================================ trainer
def _make_env(cfg: EnvConfig, batch: int, seed: int):
    from lgtc_policy.env import ResourceEnv

    return ResourceEnv(cfg, batch, device="cpu", seed=seed)


def _safety_layer(env, mode: str):
    """None, or the batched CBF filter every action passes before the env executes it
    (``PPOConfig.safety_filter='cbf'``)."""
    if mode == "none":
        return None
    from lgtc_policy.env.safety import SafetyFilter

    return SafetyFilter(env).filter


def _teacher(env, cfg: PPOConfig):
    """None (``bc_coef`` 0) or ``teach(done) -> (B, N, 2)`` the anchor's action for the env's
    current state; ``done`` is the previous step's auto-reset mask (the expert's per-env
    caches are dropped for those envs)."""
    if cfg.bc_coef <= 0:
        return None
    if cfg.bc_teacher == "greedy":
        return lambda _done: greedy_action(env)
    from lgtc_policy.env.expert import CentralizedExpert

    expert = CentralizedExpert(env)

    def teach(done: torch.Tensor | None) -> torch.Tensor:
        if done is not None:
            expert.forget(done)
        return expert.nominal()

    return teach


def _cat_inputs(items: list[NetInputs]) -> NetInputs:
    return NetInputs(
        *(torch.stack([getattr(i, k) for i in items]) for k in NetInputs.__dataclass_fields__)
    )


def train_ppo(cfg: PPOConfig) -> dict:
    """Train one PPO-family agent; returns the final evaluation summary (also in best.pt)."""
    from tqdm import tqdm

    from lgtc_policy.evaluate import evaluate_net

    cfg.validate()
    torch.set_num_threads(cfg.threads)
    gen = set_seed(cfg.seed)
    env_cfg = cfg.env_config()
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    B, N, T = cfg.num_envs, cfg.n_agents, cfg.rollout_steps()
    ac = ActorCritic(cfg, env_cfg.n_resources)
    opt_pi = torch.optim.Adam([*ac.policy.parameters(), ac.log_std], lr=cfg.lr)
    opt_v = torch.optim.Adam(ac.value.parameters(), lr=cfg.lr)
    step, best, start_wall = 0, -math.inf, 0.0
    warm_start = _init_from(cfg, ac) if cfg.init_checkpoint else None
    if cfg.resume:
        step, best, start_wall = _resume(run / "last.pt", cfg, ac, opt_pi, opt_v)
    else:
        write_json(run / "config.json", {"algo": cfg.algo, "train": cfg.to_dict()})
    logger = RunLogger(run, tensorboard=cfg.tensorboard, append=cfg.resume)
    env = _make_env(env_cfg, B, cfg.seed + step)
    safety = _safety_layer(env, cfg.safety_filter)
    teacher = _teacher(env, cfg)
    last_done = None
    obs = env.reset()
    carry = _Carry(
        torch.zeros(B, N, ac.policy.state_dim),
        torch.zeros(B, N, ac.value.state_dim),
        obs.agent_res.clone(),
    )
    ep_returns: list[float] = []
    ep_demand: list[float] = []
    next_eval = (step // cfg.eval_every + 1) * cfg.eval_every
    next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    bar = tqdm(total=cfg.total_env_steps, initial=step, disable=not cfg.progress, unit="step")
    t_wall = time.time() - start_wall
    summary: dict = {}

    def payload(eval_summary: dict, with_optim: bool) -> dict:
        optim = {"pi": opt_pi.state_dict(), "v": opt_v.state_dict()} if with_optim else None
        return checkpoint_payload(
            ac, cfg, env_cfg, eval_summary, step, best, time.time() - t_wall, optim, warm_start
        )

    while step < cfg.total_env_steps:
        t0 = time.time()
        # ------------------------------------------------------------ rollout (T, B, N, ...)
        inputs, xps, xvs, acts, logps, vals, rews, dones, actives = ([] for _ in range(9))
        teach: list[torch.Tensor] = []
        with torch.no_grad():
            for _ in range(T):
                inp = inputs_from_obs(obs, carry.prev_res)
                mean, xp_next, _ = ac.policy(inp, carry.xp)
                vout, xv_next, _ = ac.value(inp, carry.xv)
                d = ac.dist(mean)
                a = mean + d.stddev * torch.randn(mean.shape, generator=gen)
                inputs.append(inp)
                xps.append(carry.xp)
                xvs.append(carry.xv)
                acts.append(a)
                logps.append(d.log_prob(a).sum(-1))
                vals.append(_value_out(ac, vout))
                actives.append(obs.active)
                if teacher is not None:
                    teach.append(teacher(last_done))
                a_env = a.clamp(-1.0, 1.0)
                obs2, rew, done, info = env.step(a_env if safety is None else safety(a_env))
                r = info["reward_vec"] if ac.vec_value else rew
                r = r * cfg.reward_scale
                if done.any():
                    r = _bootstrap_truncated(ac, cfg, r, done, info, obs, xv_next)
                    finished = done.nonzero().flatten()
                    ep_returns += (info["episode_return"][finished] / N).tolist()
                    ep_demand += info["demand_satisfied"][finished].tolist()
                rews.append(r)
                dones.append(done)
                last_done = done
                carry.prev_res = obs.agent_res.clone()
                carry.xp, carry.xv = xp_next.clone(), xv_next.clone()
                carry.reset(done, obs2)
                obs = obs2
            last_v = _value_out(ac, ac.value(inputs_from_obs(obs, carry.prev_res), carry.xv)[0])
        values = torch.stack(vals)
        rewards = torch.stack(rews)
        dmask = torch.stack(dones).view(T, B, 1, *([1] if ac.vec_value else []))
        adv, ret = gae(rewards, values, dmask, last_v, cfg.gamma, cfg.gae_lambda)
        if ac.vec_value:
            adv = adv.sum(-1)  # linear scalarisation, weights 1 (reward_vec sums to reward)
        step += T * B
        # ------------------------------------------------------------ PPO update, eqs. 12-15
        flat = _cat_inputs(inputs)
        nb = T * B

        def fl(x: torch.Tensor) -> torch.Tensor:
            return x.flatten(0, 1)  # (T, B, ...) -> (T * B, ...)

        inp_all = NetInputs(*(fl(getattr(flat, k)) for k in NetInputs.__dataclass_fields__))
        xp_all, xv_all = fl(torch.stack(xps)), fl(torch.stack(xvs))
        a_all, lp_all = fl(torch.stack(acts)), fl(torch.stack(logps))
        adv_all, ret_all, act_all = fl(adv), fl(ret), fl(torch.stack(actives)).float()
        teach_all = fl(torch.stack(teach)) if teach else None
        stats = {"loss_pi": 0.0, "loss_v": 0.0, "clipfrac": 0.0, "approx_kl": 0.0, "pi_reg": 0.0}
        stats["loss_bc"] = 0.0
        n_mb = 0
        train_pi = step // (T * B) > cfg.value_warmup  # `step` already counts this rollout
        for _ in range(cfg.epochs):
            perm = torch.randperm(nb, generator=gen)
            for s in range(0, nb, cfg.minibatch):
                idx = perm[s : s + cfg.minibatch]
                mb = inp_all.index(idx)
                w = act_all[idx]
                wsum = w.sum().clamp(min=1.0)
                mean, _, _ = ac.policy(mb, xp_all[idx])
                d = ac.dist(mean)
                lp = d.log_prob(a_all[idx]).sum(-1)
                ratio = (lp - lp_all[idx]).exp()
                A = adv_all[idx]
                A = (A - A[w > 0].mean()) / (A[w > 0].std() + 1e-8) if (w > 0).sum() > 1 else A
                surr = torch.min(ratio * A, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * A)
                ent = d.entropy().sum(-1)
                reg_pi = ac.policy.regulariser()
                loss_pi = -((surr + cfg.ent_coef * ent) * w).sum() / wsum + cfg.alpha * reg_pi
                loss_bc = torch.zeros(())
                if teach_all is not None:
                    loss_bc = ((mean - teach_all[idx]).pow(2).sum(-1) * w).sum() / wsum
                    loss_pi = loss_pi + cfg.bc_coef * loss_bc
                if train_pi:
                    opt_pi.zero_grad()
                    loss_pi.backward()
                    nn.utils.clip_grad_norm_(
                        [*ac.policy.parameters(), ac.log_std], cfg.max_grad_norm
                    )
                    opt_pi.step()
                    ac.policy.project_()
                v = _value_out(ac, ac.value(mb, xv_all[idx])[0])
                err = (v - ret_all[idx]).pow(2)
                if ac.vec_value:
                    err = err.sum(-1)
                loss_v = (err * w).sum() / wsum + cfg.alpha * ac.value.regulariser()
                opt_v.zero_grad()
                loss_v.backward()
                nn.utils.clip_grad_norm_(ac.value.parameters(), cfg.max_grad_norm)
                opt_v.step()
                ac.value.project_()
                with torch.no_grad():
                    stats["loss_pi"] += float(loss_pi)
                    stats["loss_v"] += float(loss_v)
                    stats["clipfrac"] += float(((ratio - 1).abs() > cfg.clip).float().mean())
                    stats["approx_kl"] += float(((ratio - 1) - ratio.log()).mean())
                    stats["pi_reg"] += float(reg_pi)
                    stats["loss_bc"] += float(loss_bc)
                n_mb += 1
        # ------------------------------------------------------------ logging / checkpoints
        dt = time.time() - t0
        row = {k: v / max(n_mb, 1) for k, v in stats.items()}
        row["steps_per_s"] = T * B / dt
        row["policy_trained"] = float(train_pi)
        row["action_std"] = float(ac.log_std.detach().exp().mean())
        if ep_returns:
            row["episode_reward"] = sum(ep_returns) / len(ep_returns)
            row["demand_satisfied"] = sum(ep_demand) / len(ep_demand)
            ep_returns, ep_demand = [], []
        if ac.policy.cfg.kind == "lgtc":
            rep = ac.policy.cell.theorem1(carry.xp)
            row.update(
                contraction_c=rep.margin, tau_min=rep.tau_min, state_abs_max=rep.state_abs_max
            )
        if step >= next_eval or step >= cfg.total_env_steps:
            next_eval += cfg.eval_every
            summary = evaluate_net(
                ac.policy, env_cfg, cfg.eval_episodes, cfg.seed + 10_000, cfg.safety_filter
            )
            row["eval_reward"] = summary["reward_mean"]
            row["eval_demand_satisfied"] = summary["demand_satisfied_mean"]
            if summary["reward_mean"] > best:
                best = summary["reward_mean"]
                save_checkpoint(run / "best.pt", payload(summary, with_optim=False))
        logger.log(step, row)
        bar.update(T * B)
        bar.set_postfix(
            {
                k: f"{row[k]:.3g}"
                for k in ("episode_reward", "eval_reward", "steps_per_s")
                if k in row
            }
        )
        if step >= next_ckpt or step >= cfg.total_env_steps:
            next_ckpt += cfg.checkpoint_every
            save_checkpoint(run / "last.pt", payload(summary, with_optim=True))
    bar.close()
    logger.close()
    write_json(run / "final_eval.json", {**summary, "best_eval_reward": best})
    return summary


def _bootstrap_truncated(
    ac: ActorCritic,
    cfg: PPOConfig,
    r: torch.Tensor,
    done: torch.Tensor,
    info: dict,
    obs_t: Obs,
    xv_next: torch.Tensor,
) -> torch.Tensor:
    """Add ``gamma * V(s_final)`` to the last reward of envs cut by the time limit.

    GAE treats every done as terminal; for time-limit truncation the true target continues,
    so the final observation's value is folded into the reward (standard partial-episode
    bootstrapping).
    """
    trunc = done & info["truncated"] & ~info["terminated"]
    if not trunc.any() or "final_obs" not in info:
        return r
    ids = trunc.nonzero().flatten()
    fo = info["final_obs"].index(ids)
    inp = inputs_from_obs(fo, obs_t.agent_res[ids])
    v = _value_out(ac, ac.value(inp, xv_next[ids])[0])
    r = r.clone()
    r[ids] = r[ids] + cfg.gamma * v * fo.active.float().view(
        *fo.active.shape, *([1] * (v.dim() - 2))
    )
    return r


def checkpoint_payload(
    ac: ActorCritic,
    cfg,
    env_cfg: EnvConfig,
    eval_summary: dict,
    step: int,
    best: float,
    wall_s: float,
    optim: dict | None,
    warm_start: dict | None,
) -> dict:
    """The checkpoint dict of :mod:`lgtc_policy.model.checkpoint` for an :class:`ActorCritic`
    (written by the PPO and the BC trainers)."""
    return {
        "algo": cfg.algo,
        "nets": {"policy": ac.policy.cfg.to_dict(), "value": ac.value.cfg.to_dict()},
        "state_dicts": {
            "policy": ac.policy.state_dict(),
            "value": ac.value.state_dict(),
            "log_std": {"log_std": ac.log_std.detach().clone()},
        },
        "env_config": _env_dict(env_cfg),
        "train_config": cfg.to_dict(),
        "eval": eval_summary,
        "progress": {"env_steps": step, "best": best, "wall_s": wall_s},
        "optim": optim,
        **({"warm_start": warm_start} if warm_start else {}),
    }


def _env_dict(env_cfg: EnvConfig) -> dict:
    import dataclasses

    d = dataclasses.asdict(env_cfg)
    for k, v in d.items():
        if isinstance(v, tuple):
            d[k] = list(v)
    return d


def _init_from(cfg: PPOConfig, ac: ActorCritic) -> dict:
    """Load the starting weights of ``cfg.init_checkpoint`` into ``ac`` (see PPOConfig).

    The policy and its log std always come from the checkpoint; the value only when the
    checkpoint was trained with a value (a PPO run), not from a ``bc_lgtc`` warm start whose
    value network is untouched random weights. Returns the ``warm_start`` record stored in
    this run's checkpoints.
    """
    path = Path(cfg.init_checkpoint)
    ck = load_checkpoint(path)
    src = str(ck.get("algo", ""))
    with_value = src != "bc_lgtc"
    try:
        ac.policy.load_state_dict(ck["state_dicts"]["policy"])
        ac.log_std.data.copy_(ck["state_dicts"]["log_std"]["log_std"])
        if with_value:
            ac.value.load_state_dict(ck["state_dicts"]["value"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(
            f"--init-checkpoint: {path} does not fit this model ({e}); use the same --algo "
            "family and network sizes (--g, --f, --hidden) as the run that wrote it"
        ) from e
    prog = ck.get("progress") or {}
    record = {
        "method": "PPO fine-tune from a checkpoint (not in the paper)",
        "init_checkpoint": str(path),
        "init_algo": src,
        "init_env_steps": int(prog.get("env_steps", 0)),
        "value_loaded": with_value,
    }
    if ck.get("warm_start"):
        record["init_warm_start"] = ck["warm_start"]
    return record


def _resume(path: Path, cfg: PPOConfig, ac, opt_pi, opt_v) -> tuple[int, float, float]:
    """Restore weights, optimisers and progress from ``last.pt`` (config must match)."""
    ck = load_checkpoint(path)
    old = config_from_dict(PPOConfig, dict(ck["train_config"]))
    keep = ("total_env_steps", "resume", "progress", "eval_every", "checkpoint_every", "threads")
    keep += ("init_checkpoint",)
    diff = [k for k in cfg.to_dict() if k not in keep and cfg.to_dict()[k] != old.to_dict()[k]]
    if diff:
        raise ConfigError(
            f"--resume: config differs from {path} in {diff}; use the same options "
            "(only the budget/logging may change) or a new --run-dir"
        )
    try:
        ac.policy.load_state_dict(ck["state_dicts"]["policy"])
        ac.value.load_state_dict(ck["state_dicts"]["value"])
        ac.log_std.data.copy_(ck["state_dicts"]["log_std"]["log_std"])
        if ck.get("optim"):
            opt_pi.load_state_dict(ck["optim"]["pi"])
            opt_v.load_state_dict(ck["optim"]["v"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"--resume: {path} does not fit this model: {e}") from e
    prog = ck.get("progress") or {}
    return (
        int(prog.get("env_steps", 0)),
        float(prog.get("best", -math.inf)),
        float(prog.get("wall_s", 0.0)),
    )
