"""VDN-SAC and QMIX-SAC for continuous actions (Sec. IV, Table I right column).

Per-agent soft Q functions ``Q_i(z_i, a_i)`` (shared parameters, the reduced network of Sec. IV
with the action appended to ``y``), twin critics with Polyak-averaged targets, a tanh-squashed
Gaussian actor and a fixed entropy temperature::

    y    = rw + gamma (1 - term) (min_k MIX_k'(Q_k'(z', a')) - alpha sum_i log pi(a'_i|z'_i))
    J_Q  = E[(MIX(Q_i(z_i, a_i)) - y)^2],  a' ~ pi(z')
    J_pi = E[alpha sum_i log pi(a_i|z_i) - min_k MIX_k(Q_k(z, a))],  a ~ pi

``MIX`` is the sum (VDN) or the QMIX monotonic mixer: hypernetworks of the global state give
non-negative weights (abs) of a one-hidden-layer (ELU) mixing network of the agents' Q values.
``rw`` is the team reward ``sum_i rw_i`` (eq. 1, ``J = sum_i J_i``). Inactive agents' Q values
and log-probabilities are masked out.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
from torch import nn

from lgtc_policy.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lgtc_policy.model.features import inputs_from_obs, item_dims
from lgtc_policy.model.lgtc import LGTCNet, NetConfig, NetInputs, mlp
from lgtc_policy.train.common import (
    ConfigError,
    RunLogger,
    config_from_dict,
    make_adam,
    resolve_device,
    save_last,
    set_seed,
    set_threads,
    write_json,
)
from lgtc_policy.train.config import SACConfig
from lgtc_policy.train.ppo import _cpu, _env_dict, _make_env, cpu_copy

__all__ = ["QMixer", "SquashedActor", "train_sac"]

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


# ============================================================================ networks
class QMixer(nn.Module):
    """Monotonic QMIX mixer ``Q_tot = w2^T elu(W1^T Q + b1) + b2(s)``, ``W1, w2 >= 0``."""

    def __init__(self, n_agents: int, state_dim: int, embed: int, hyper: int) -> None:
        super().__init__()
        self.n, self.embed = n_agents, embed
        self.hyper_w1 = mlp([state_dim, hyper, n_agents * embed])
        self.hyper_b1 = nn.Linear(state_dim, embed)
        self.hyper_w2 = mlp([state_dim, hyper, embed])
        self.hyper_b2 = mlp([state_dim, embed, 1])

    def forward(self, q: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """``q (B, N)``, ``state (B, S)`` -> ``(B,)``."""
        w1 = self.hyper_w1(state).abs().view(-1, self.n, self.embed)
        h = nn.functional.elu(torch.einsum("bn,bne->be", q, w1) + self.hyper_b1(state))
        w2 = self.hyper_w2(state).abs()
        return (h * w2).sum(-1) + self.hyper_b2(state)[:, 0]


class SquashedActor(nn.Module):
    """Reduced network -> (mean, log std) of a Gaussian, squashed by tanh into [-1, 1]^2."""

    def __init__(self, net_cfg: NetConfig) -> None:
        super().__init__()
        self.net = LGTCNet(net_cfg)

    def forward(
        self, inp: NetInputs, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``a (B, N, 2)`` and its log-probability ``(B, N)``."""
        x0 = inp.pos.new_zeros(*inp.pos.shape[:2], 0)
        out = self.net(inp, x0)[0]
        mean, log_std = out[..., :2], out[..., 2:].clamp(LOG_STD_MIN, LOG_STD_MAX)
        std = log_std.exp()
        u = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)
        a = torch.tanh(u)
        logp = torch.distributions.Normal(mean, std).log_prob(u) - torch.log1p(-a.pow(2) + 1e-6)
        return a, logp.sum(-1)


class _Critic(nn.Module):
    def __init__(self, net_cfg: NetConfig, algo: str, n_agents: int, state_dim: int, mix):
        super().__init__()
        self.q = LGTCNet(net_cfg)
        self.mixer = QMixer(n_agents, state_dim, mix[0], mix[-1]) if algo == "qmix" else None

    def forward(self, inp: NetInputs, a: torch.Tensor, active: torch.Tensor, state: torch.Tensor):
        x0 = inp.pos.new_zeros(*inp.pos.shape[:2], 0)
        q = self.q(inp, x0, extra=a)[0][..., 0] * active
        return q.sum(-1) if self.mixer is None else self.mixer(q, state)


# ============================================================================ replay
class Replay:
    """Ring buffer of team transitions; storage ``(capacity, N, ...)`` allocated on first add."""

    KEYS = ("agent_items", "prev_agent_items", "consumer_items", "consumer_mask", "pos", "S")

    def __init__(self, capacity: int, device: torch.device | str = "cpu") -> None:
        self.cap, self.n, self.i = capacity, 0, 0
        self.device = torch.device(device)
        self.data: dict[str, torch.Tensor] = {}

    def add(self, **batch: torch.Tensor) -> None:
        k = next(iter(batch.values())).shape[0]
        if not self.data:
            self.data = {
                name: torch.zeros(self.cap, *v.shape[1:], dtype=v.dtype, device=self.device)
                for name, v in batch.items()
            }
        idx = (torch.arange(k, device=self.device) + self.i) % self.cap
        for name, v in batch.items():
            self.data[name][idx] = v
        self.i = (self.i + k) % self.cap
        self.n = min(self.n + k, self.cap)

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, self.n, (batch,), generator=gen, device=self.device)
        return {k: v[idx] for k, v in self.data.items()}


def _flat_inputs(prefix: str, inp: NetInputs) -> dict[str, torch.Tensor]:
    return {prefix + k: getattr(inp, k) for k in Replay.KEYS}


def _inputs(prefix: str, d: dict) -> NetInputs:
    return NetInputs(*(d[prefix + k] for k in Replay.KEYS))


# ============================================================================ trainer
class SACRun:
    """One VDN/QMIX-SAC run: networks, optimisers, replay and env on the training device,
    and its phases: :meth:`act` (one vector-env step into the replay), :meth:`update` (one
    gradient step of the critics and the actor), :meth:`stats_row`."""

    def __init__(self, cfg: SACConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.gen = set_seed(cfg.seed, device)
        self.env_cfg = cfg.env_config()
        self.env = _make_env(self.env_cfg, cfg.num_envs, cfg.seed, device)
        self.obs = self.env.reset()
        state_dim = self.env.global_state().shape[-1]
        da, dc = item_dims(self.env_cfg.n_resources)
        base = dict(agent_item_dim=da, consumer_item_dim=dc, kind="ippo", g=cfg.g, f=cfg.f)
        base.update(hidden=tuple(cfg.hidden), comm=cfg.comm)
        self.actor = SquashedActor(NetConfig(out_dim=4, squash=True, **base))
        self.qcfg = NetConfig(out_dim=1, extra_dim=2, **base)
        self.critics = nn.ModuleList(
            [_Critic(self.qcfg, cfg.algo, cfg.n_agents, state_dim, cfg.mix_hidden) for _ in "ab"]
        )
        self.targets = copy.deepcopy(self.critics).requires_grad_(False)
        for m in (self.actor, self.critics, self.targets):
            m.to(device)
        self.opt_a = make_adam(self.actor.parameters(), cfg.lr)
        self.opt_q = make_adam(self.critics.parameters(), cfg.lr)
        self.replay = Replay(cfg.buffer, device)
        self.prev = self.obs.agent_res.clone()
        self._zero_stats()

    def _zero_stats(self) -> None:
        # loss_q, loss_pi, q_mean, updates, episode return sum / N, episodes
        self.acc = torch.zeros(6, device=self.device)

    @torch.no_grad()
    def act(self, step: int) -> None:
        """One step of the ``B`` envs (random actions before ``learning_starts``)."""
        cfg, env, obs, N = self.cfg, self.env, self.obs, self.cfg.n_agents
        inp = inputs_from_obs(obs, self.prev)
        if step < cfg.learning_starts:
            a = torch.rand(cfg.num_envs, N, 2, generator=self.gen, device=self.device) * 2 - 1
        else:
            a = self.actor(inp, self.gen)[0]
        gstate = env.global_state()
        obs2, rew, done, info = env.step(a)
        next_obs = obs2
        if done.any() and "final_obs" in info:
            next_obs = _merge_final(obs2, info["final_obs"], done)
        self.replay.add(
            **_flat_inputs("o_", inp),
            **_flat_inputs("n_", inputs_from_obs(next_obs, obs.agent_res)),
            a=a,
            r=(rew.sum(-1)).float(),
            term=info["terminated"].float(),
            act=obs.active.float(),
            nact=next_obs.active.float(),
            s=gstate,
            ns=_next_state(env, gstate, done, info),
        )
        df = done.to(self.acc.dtype)
        self.acc[4] += (info["episode_return"] * df).sum() / N
        self.acc[5] += df.sum()
        prev = obs.agent_res.clone()
        self.prev = torch.where(done.view(-1, 1, 1, 1), obs2.agent_res, prev)
        self.obs = obs2

    def update(self) -> None:
        """One SAC gradient step (critics, then actor, then the Polyak targets)."""
        cfg, actor, critics, alpha = self.cfg, self.actor, self.critics, self.cfg.entropy_coef
        d = self.replay.sample(cfg.batch, self.gen)
        o, n = _inputs("o_", d), _inputs("n_", d)
        with torch.no_grad():
            a2, lp2 = actor(n, self.gen)
            qt = torch.min(*(t(n, a2, d["nact"], d["ns"]) for t in self.targets))
            ent = (lp2 * d["nact"]).sum(-1)
            y = d["r"] + cfg.gamma * (1 - d["term"]) * (qt - alpha * ent)
        qs = [c(o, d["a"], d["act"], d["s"]) for c in critics]
        loss_q = sum((q - y).pow(2).mean() for q in qs)
        self.opt_q.zero_grad()
        loss_q.backward()
        nn.utils.clip_grad_norm_(critics.parameters(), cfg.max_grad_norm)
        self.opt_q.step()
        a_new, lp = actor(o, self.gen)
        critics.requires_grad_(False)
        qpi = torch.min(*(c(o, a_new, d["act"], d["s"]) for c in critics))
        critics.requires_grad_(True)
        loss_pi = (alpha * (lp * d["act"]).sum(-1) - qpi).mean()
        self.opt_a.zero_grad()
        loss_pi.backward()
        nn.utils.clip_grad_norm_(actor.parameters(), cfg.max_grad_norm)
        self.opt_a.step()
        with torch.no_grad():
            for p, pt in zip(critics.parameters(), self.targets.parameters()):
                pt.lerp_(p, cfg.polyak)
            self.acc[:4] += torch.stack(
                [loss_q.detach(), loss_pi.detach(), qs[0].detach().mean(), loss_q.new_ones(())]
            )

    def stats_row(self, steps: int, dt: float) -> dict:
        """The progress.csv row of one logging period: the one read of the statistics."""
        loss_q, loss_pi, q_mean, n_upd, ret, n_ep = self.acc.tolist()
        self._zero_stats()
        n_upd = max(n_upd, 1.0)
        row = {"loss_q": loss_q / n_upd, "loss_pi": loss_pi / n_upd, "q_mean": q_mean / n_upd}
        row["steps_per_s"] = steps / max(dt, 1e-9)
        if n_ep > 0:
            row["episode_reward"] = ret / n_ep
        return row

    def payload(self, eval_summary: dict, step: int, best: float, with_optim: bool) -> dict:
        """The checkpoint dict (CPU tensors)."""
        optim = None
        if with_optim:
            optim = {"a": self.opt_a.state_dict(), "q": self.opt_q.state_dict()}
        return {
            "algo": self.cfg.algo,
            "nets": {"policy": self.actor.net.cfg.to_dict(), "q": self.qcfg.to_dict()},
            "state_dicts": _cpu(
                {
                    "policy": self.actor.net.state_dict(),
                    "critics": self.critics.state_dict(),
                    "targets": self.targets.state_dict(),
                }
            ),
            "env_config": _env_dict(self.env_cfg),
            "train_config": self.cfg.to_dict(),
            "eval": eval_summary,
            "progress": {"env_steps": step, "best": best},
            "optim": _cpu(optim),
        }


def train_sac(cfg: SACConfig) -> dict:
    """Train VDN-SAC or QMIX-SAC; returns the final evaluation summary."""
    from tqdm import tqdm

    from lgtc_policy.evaluate import evaluate_net

    cfg.validate()
    set_threads(cfg.threads)
    sr = SACRun(cfg, resolve_device(cfg.device))
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    step, best = 0, -math.inf
    if cfg.resume:
        step, best = _resume(run / "last.pt", cfg, sr)
    else:
        write_json(run / "config.json", {"algo": cfg.algo, "train": cfg.to_dict()})
    logger = RunLogger(run, tensorboard=cfg.tensorboard, append=cfg.resume)
    next_eval = (step // cfg.eval_every + 1) * cfg.eval_every
    next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    next_log = step + 6144
    bar = tqdm(total=cfg.total_env_steps, initial=step, disable=not cfg.progress, unit="step")
    t0, summary = time.time(), {}
    while step < cfg.total_env_steps:
        sr.act(step)
        step += cfg.num_envs
        bar.update(cfg.num_envs)
        if step >= cfg.learning_starts and sr.replay.n >= cfg.batch:
            for _ in range(cfg.updates_per_step):
                sr.update()
        if step >= next_log or step >= cfg.total_env_steps:
            next_log += 6144
            row = sr.stats_row(6144, time.time() - t0)
            t0 = time.time()
            if step >= next_eval or step >= cfg.total_env_steps:
                next_eval += cfg.eval_every
                summary = evaluate_net(
                    cpu_copy(sr.actor.net), sr.env_cfg, cfg.eval_episodes, cfg.seed + 10_000
                )
                row["eval_reward"] = summary["reward_mean"]
                row["eval_demand_satisfied"] = summary["demand_satisfied_mean"]
                if summary["reward_mean"] > best:
                    best = summary["reward_mean"]
                    save_checkpoint(run / "best.pt", sr.payload(summary, step, best, False))
            logger.log(step, row)
            bar.set_postfix(
                {k: f"{row[k]:.3g}" for k in ("episode_reward", "eval_reward") if k in row}
            )
        if step >= next_ckpt or step >= cfg.total_env_steps:
            next_ckpt += cfg.checkpoint_every
            save_last(run, sr.payload(summary, step, best, True), step, cfg.keep_checkpoints)
    bar.close()
    logger.close()
    write_json(run / "final_eval.json", {**summary, "best_eval_reward": best})
    return summary


def _merge_final(obs2, final, done: torch.Tensor):
    """Observation after the step for every env: ``final_obs`` where the env was reset."""
    from dataclasses import fields

    out = {}
    for f in fields(obs2):
        v = getattr(obs2, f.name).clone()
        v[done] = getattr(final, f.name)[done]
        out[f.name] = v
    return type(obs2)(**out)


def _next_state(env, gstate: torch.Tensor, done: torch.Tensor, info: dict) -> torch.Tensor:
    """Global state after the step (the pre-reset one for envs that were reset)."""
    ns = env.global_state()
    if done.any() and "final_state" in info:
        ns = ns.clone()
        ns[done] = info["final_state"][done]
    elif done.any():
        # The env does not expose the pre-reset global state: the terminal transitions of
        # truncated episodes keep the state before the step (only the mixer's bias input).
        ns = ns.clone()
        ns[done] = gstate[done]
    return ns


def _resume(path: Path, cfg: SACConfig, sr: SACRun) -> tuple[int, float]:
    ck = load_checkpoint(path)
    old = config_from_dict(SACConfig, dict(ck["train_config"]))
    keep = ("total_env_steps", "resume", "progress", "eval_every", "checkpoint_every", "threads")
    keep += ("keep_checkpoints",)  # logging, like checkpoint_every
    keep += ("device",)
    diff = [k for k, v in cfg.to_dict().items() if k not in keep and v != old.to_dict()[k]]
    if diff:
        raise ConfigError(f"--resume: config differs from {path} in {diff}")
    try:
        sr.actor.net.load_state_dict(ck["state_dicts"]["policy"])
        sr.critics.load_state_dict(ck["state_dicts"]["critics"])
        sr.targets.load_state_dict(ck["state_dicts"]["targets"])
        if ck.get("optim"):
            sr.opt_a.load_state_dict(ck["optim"]["a"])
            sr.opt_q.load_state_dict(ck["optim"]["q"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"--resume: {path} does not fit this model: {e}") from e
    prog = ck.get("progress") or {}
    return int(prog.get("env_steps", 0)), float(prog.get("best", -math.inf))
