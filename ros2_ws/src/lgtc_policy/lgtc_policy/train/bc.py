"""Behaviour-cloning warm start of the LGTC policy from the centralized expert (DAgger).

NOT in the paper: Sec. III-C trains LGTC-IPPO from scratch with independent PPO. On a 2-core
CPU the PPO budget needed for that is out of reach, so this trainer imitates the centralized
expert of Sec. IV (``lgtc_policy.env.expert``) instead, producing a checkpoint in the standard
format (``lgtc eval``, the decentralized step and the ROS node load it unchanged).

Labels (cheap expert, no CBF): the exact oracle assignment of eq. (3) with the ring goals of
:class:`~lgtc_policy.env.expert.CentralizedExpert` and its proportional controller
``u* = k_p (goal - p)`` saturated at ``v_max``, divided by ``v_max`` (so ``u*`` lies in the unit
disc, the policy's action space). The expert's centralized CBF is left out: it needs one QP per
env per tick and only changes commands near collisions; the policy keeps the collision term of
the reward to learn from if it is fine-tuned with PPO.

DAgger [Ross et al., 2011]: each window of ``window`` ticks, an env is driven by the expert with
probability ``beta`` and by the learner's deterministic action otherwise (``beta`` decays
linearly from ``beta0`` to 0 over ``beta_decay`` of the budget); every visited state is labelled
with the expert's action and the window is added to the aggregated data set (the last
``buffer_windows`` windows). After each window, ``updates`` gradient steps each sample
``batch_windows`` stored windows. The LGTC network is recurrent (cluster state ``x`` of eq. 6,
messages ``S x`` and ``S Psi`` from the neighbours through the env's graph support ``S``), so a
step re-runs the policy over the stored windows from their initial states ``x_0`` (as computed
when they were collected) with gradients through every tick (truncated BPTT over ``window``
ticks), resetting ``x`` at episode ends exactly as during the rollout. Loss per tick (averaged
over active agents)::

    L = ||mu - u*||^2 + std_coef * NLL(u* | mu.detach(), exp(log_std)) + alpha * Pi

``Pi`` is the contraction regulariser of eq. (15) (as in the PPO trainer) and ``tau >= 0`` is
projected after each step (Theorem 1); the NLL term fits the state-independent ``log_std``
to the residual imitation error, so a later PPO fine-tune starts with a sensible exploration
scale.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lgtc_policy.env import EnvConfig, ResourceEnv
from lgtc_policy.env.expert import CentralizedExpert, ExpertConfig
from lgtc_policy.greedy import GreedyConfig, greedy_action
from lgtc_policy.model.checkpoint import save_checkpoint
from lgtc_policy.model.features import inputs_from_obs
from lgtc_policy.model.lgtc import PI_FORMS, LGTCNet, NetInputs
from lgtc_policy.train.common import (
    ConfigError,
    RunLogger,
    make_adam,
    resolve_device,
    save_last,
    set_seed,
    set_threads,
    write_json,
)
from lgtc_policy.train.config import PPOConfig, _Common
from lgtc_policy.train.ppo import ActorCritic, checkpoint_payload, cpu_copy

__all__ = ["BC_ALGOS", "BCConfig", "imitation_mse", "train_bc"]

BC_ALGOS = ("bc_lgtc",)
TEACHERS = ("expert", "greedy")
TEACHER_LABELS = {
    "expert": "oracle assignment (eq. 3) + saturated P control, no CBF",
    "greedy": "decentralized greedy coverage rule (lgtc_policy.greedy), saturated P control",
}


@dataclass(frozen=True)
class BCConfig(_Common):
    """Behaviour cloning / DAgger warm start of LGTC from the centralized expert (not in the paper).

    Attributes:
        algo: bc_lgtc (the LGTC network of eq. 6, imitating the expert).
    """

    algo: str = "bc_lgtc"
    """bc_lgtc."""
    total_env_steps: int = 200_000
    """Budget in team transitions visited (labelled) during the DAgger rollouts."""
    num_envs: int = 32
    """Parallel envs (the expert's assignment is solved per env on the CPU: 32 keeps it cheap)."""
    lr: float = 1e-3
    """Adam learning rate (supervised targets tolerate more than PPO's 2e-4)."""
    window: int = 25
    """Ticks per rollout window = truncated-BPTT length (25 ticks = 1.25 s at 20 Hz, more than
    twice the cell's 0.5 s time constant, so the consensus dynamics are trained through)."""
    updates: int = 8
    """Gradient steps after each collected window (each back-propagates through whole windows)."""
    batch_windows: int = 4
    """Windows (of num_envs envs each) sampled from the aggregated data set per gradient step."""
    buffer_windows: int = 400
    """DAgger data set size in windows (oldest dropped first); 400 x 25 ticks x 32 envs = 320k
    team transitions, about 1 MB per window of 32 envs."""
    beta0: float = 1.0
    """Initial probability that an env is driven by the expert during a window (DAgger mixing)."""
    beta_decay: float = 0.5
    """Fraction of the budget over which beta decays linearly to 0 (then pure DAgger)."""
    alpha: float = 0.01
    """Weight of the contraction regulariser Pi of eq. (15) (same as PPOConfig.alpha)."""
    pi_form: str = "paper"
    """Pi of eq. (15), as PPOConfig.pi_form ('margin': the previous trainer's form)."""
    std_coef: float = 0.01
    """Weight of the Gaussian NLL that fits log_std to the residual error (mean detached)."""
    log_std_init: float = -0.5
    """Initial log std of the Gaussian policy (as PPOConfig.log_std_init)."""
    k_p: float = 4.0
    """Expert's proportional gain [1/s] (ExpertConfig.k_p)."""
    teacher: str = "expert"
    """Whose actions label the states: 'expert' (the centralized oracle expert of Sec. IV, see
    :meth:`CentralizedExpert.nominal`) or 'greedy' (the decentralized greedy coverage rule of
    :mod:`lgtc_policy.greedy`, whose labels are a function of what a robot observes and of its
    close neighbours' positions, so the network can fit them; the oracle's assignment is not
    recoverable from one robot's observation and BC of it plateaus at an MSE near 0.8)."""
    eval_every: int = 20_000
    """Evaluate (deterministic policy) every this many env steps; the best one is kept."""
    checkpoint_every: int = 20_000
    """Write run_dir/last.pt every this many env steps."""
    run_dir: str = "runs/bc_lgtc"
    """Output folder: progress.csv, tb/, config.json, last.pt, best.pt."""

    def validate(self) -> BCConfig:
        """Check the options; raises :class:`ConfigError` naming the field."""
        self._check_common()
        if self.algo not in BC_ALGOS:
            raise ConfigError(f"--algo {self.algo!r} is not a BC algorithm {BC_ALGOS}")
        for name in ("window", "updates", "batch_windows", "buffer_windows"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0")
        if not 0.0 <= self.beta0 <= 1.0:
            raise ConfigError("--beta0 must be in [0, 1]")
        if not 0.0 < self.beta_decay <= 1.0:
            raise ConfigError("--beta-decay must be in (0, 1]")
        if self.teacher not in TEACHERS:
            raise ConfigError(f"--teacher {self.teacher!r}: choose one of {TEACHERS}")
        if self.pi_form not in PI_FORMS:
            raise ConfigError(f"--pi-form {self.pi_form!r}: choose one of {PI_FORMS}")
        if self.alpha < 0 or self.std_coef < 0 or self.k_p <= 0:
            raise ConfigError("--alpha and --std-coef must be >= 0 and --k-p > 0")
        return self

    def ppo_config(self) -> PPOConfig:
        """The LGTC-IPPO config with this run's sizes (network built by :class:`ActorCritic`)."""
        keep = {k: getattr(self, k) for k in _Common.__dataclass_fields__}
        return PPOConfig(
            **keep, algo="lgtc_ippo", log_std_init=self.log_std_init, pi_form=self.pi_form
        )


@torch.no_grad()
def imitation_mse(
    net: LGTCNet, env_cfg: EnvConfig, episodes: int, ticks: int, seed: int, k_p: float = 4.0
) -> float:
    """Mean over active agents and ticks of ``||mu - u*||^2`` along expert-driven trajectories.

    The env (``episodes`` seeded envs, no auto-reset) is driven by the expert labels of
    :meth:`CentralizedExpert.nominal`; the network runs alongside with its recurrent state
    and messages, so this is the plain behaviour-cloning loss on the expert's own state
    distribution.
    """
    env = ResourceEnv(dataclasses.replace(env_cfg, auto_reset=False), episodes, seed=seed)
    expert = CentralizedExpert(env, ExpertConfig(k_p=k_p))
    obs = env.reset()
    x = torch.zeros(episodes, env_cfg.n_agents, net.state_dim)
    prev = obs.agent_res.clone()
    err, count = 0.0, 0.0
    for _ in range(ticks):
        out, x, _ = net(inputs_from_obs(obs, prev), x)
        label = expert.nominal()
        w = obs.active.float()
        err += float(((out[..., :2] - label).pow(2).sum(-1) * w).sum())
        count += float(w.sum())
        prev = obs.agent_res.clone()
        obs, _, _, _ = env.step(label)
    return err / max(count, 1.0)


def _stack(items: list[NetInputs]) -> NetInputs:
    return NetInputs(
        *(torch.stack([getattr(i, k) for i in items]) for k in NetInputs.__dataclass_fields__)
    )


def _batch(windows: list[tuple]) -> tuple:
    """Concatenate stored windows ``(x0 (B,..), seq (T,B,..), lab, w, keep)`` along the envs."""
    x0, seq, lab, w, keep = zip(*windows)  # keep: (T, B)
    fields = NetInputs.__dataclass_fields__
    cat_seq = NetInputs(*(torch.cat([getattr(q, k) for q in seq], dim=1) for k in fields))
    return (
        torch.cat(x0),
        cat_seq,
        torch.cat(lab, dim=1),
        torch.cat(w, dim=1),
        torch.cat(keep, dim=1),
    )


class BCRun:
    """One DAgger run: policy, optimiser, env, teacher and the aggregated data set on the
    training device; :meth:`collect` one window, :meth:`update` (truncated BPTT)."""

    def __init__(self, cfg: BCConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        set_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.env_cfg = cfg.env_config()
        self.ac = ActorCritic(cfg.ppo_config(), self.env_cfg.n_resources).to(device)
        self.policy = self.ac.policy
        self.opt = make_adam([*self.policy.parameters(), self.ac.log_std], cfg.lr)
        self.env = ResourceEnv(self.env_cfg, cfg.num_envs, device=device, seed=cfg.seed)
        self.expert = CentralizedExpert(self.env, ExpertConfig(k_p=cfg.k_p))
        greedy = GreedyConfig(k_p=cfg.k_p)
        if cfg.teacher == "greedy":
            self.teach = lambda: greedy_action(self.env, greedy)
        else:
            self.teach = self.expert.nominal
        self.obs = self.env.reset()
        self.x = torch.zeros(cfg.num_envs, cfg.n_agents, self.policy.state_dim, device=device)
        self.prev = self.obs.agent_res.clone()
        self.data: list[tuple] = []  # DAgger's aggregated data set of windows

    @torch.no_grad()
    def collect(self, beta: float) -> torch.Tensor:
        """One window of ``window`` ticks, each env driven by the teacher with probability
        ``beta``; stored in the data set. Returns ``[on-policy squared error, its count]``."""
        cfg, policy = self.cfg, self.policy
        by_expert = torch.as_tensor(self.rng.random(cfg.num_envs) < beta, device=self.device)
        by_expert = by_expert[:, None, None]
        x0 = self.x.clone()
        inputs, labels, actives, dones = [], [], [], []
        on = torch.zeros(2, device=self.device)  # learner's error on the states it visits
        for _ in range(cfg.window):
            inp = inputs_from_obs(self.obs, self.prev)
            out, x_next, _ = policy(inp, self.x)
            label = self.teach()
            inputs.append(inp)
            labels.append(label)
            actives.append(self.obs.active)
            act = torch.where(by_expert, label, policy.action(out))
            on_w = self.obs.active.float() * (~by_expert[..., 0]).float()
            err = ((out[..., :2] - label).pow(2).sum(-1) * on_w).sum()
            on += torch.stack([err, on_w.sum()])
            self.prev = self.obs.agent_res.clone()
            self.obs, _, done, _ = self.env.step(act)
            dones.append(done)
            self.x = x_next * (~done).to(x_next.dtype).view(-1, 1, 1)
            if bool(done.any()):
                self.prev = torch.where(done.view(-1, 1, 1, 1), self.obs.agent_res, self.prev)
                self.expert.forget(done)
        keep = 1.0 - torch.stack(dones).float()  # (T, B)
        lab, act_w = torch.stack(labels), torch.stack(actives).float()
        self.data.append((x0, _stack(inputs), lab, act_w, keep))
        del self.data[: max(0, len(self.data) - cfg.buffer_windows)]
        return on

    def update(self) -> dict[str, float]:
        """``updates`` gradient steps, each through whole stored windows (truncated BPTT)."""
        cfg, policy, ac = self.cfg, self.policy, self.ac
        acc = torch.zeros(3, device=self.device)
        for _ in range(cfg.updates):
            n_pick = min(cfg.batch_windows, len(self.data))
            pick = self.rng.choice(len(self.data), size=n_pick, replace=False)
            x0b, seq, lab, w, keepb = _batch([self.data[i] for i in pick])
            wsum = w.sum().clamp(min=1.0)
            out, _, f = policy.forward_seq(seq, x0b, keepb)
            mean = out[..., :2]
            mse = ((mean - lab).pow(2).sum(-1) * w).sum()
            z = (lab - mean.detach()) / ac.log_std.exp()
            nll = ((0.5 * z.pow(2) + ac.log_std).sum(-1) * w).sum()
            reg = policy.regulariser(f, cfg.pi_form)
            loss = (mse + cfg.std_coef * nll) / wsum + cfg.alpha * reg
            self.opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_([*policy.parameters(), ac.log_std], cfg.max_grad_norm)
            self.opt.step()
            policy.project_()
            acc += torch.stack([loss.detach(), mse.detach() / wsum, reg.detach()])
        loss_bc, loss_mse, pi_reg = (acc / cfg.updates).tolist()
        return {"loss_bc": loss_bc, "loss_mse": loss_mse, "pi_reg": pi_reg}


def train_bc(cfg: BCConfig) -> dict:
    """DAgger warm start; returns the final evaluation summary (best one in best.pt)."""
    from tqdm import tqdm

    from lgtc_policy.evaluate import evaluate_net

    cfg.validate()
    set_threads(cfg.threads)
    br = BCRun(cfg, resolve_device(cfg.device))
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / "config.json", {"algo": cfg.algo, "train": cfg.to_dict()})
    logger = RunLogger(run, tensorboard=cfg.tensorboard)
    T, B = cfg.window, cfg.num_envs
    step, best, t_wall = 0, -math.inf, time.time()
    next_eval, next_ckpt = cfg.eval_every, cfg.checkpoint_every
    summary: dict = {}
    bar = tqdm(total=cfg.total_env_steps, disable=not cfg.progress, unit="step")

    def payload(eval_summary: dict) -> dict:
        warm = {
            "method": f"DAgger behaviour cloning of the {cfg.teacher} teacher (not in the paper)",
            "labels": TEACHER_LABELS[cfg.teacher],
        }
        wall = time.time() - t_wall
        return checkpoint_payload(
            br.ac, cfg, br.env_cfg, eval_summary, step, best, wall, None, warm
        )

    while step < cfg.total_env_steps:
        t0 = time.time()
        beta = cfg.beta0 * max(0.0, 1.0 - step / (cfg.beta_decay * cfg.total_env_steps))
        on_err, on_n = br.collect(beta).tolist()
        step += T * B
        row = {**br.update(), "onpolicy_mse": on_err / max(on_n, 1.0), "beta": beta}
        row["steps_per_s"] = T * B / (time.time() - t0)
        row["action_std"] = float(br.ac.log_std.detach().exp().mean())
        rep = br.policy.cell.theorem1(br.x)
        row.update(contraction_c=rep.margin, tau_min=rep.tau_min, state_abs_max=rep.state_abs_max)
        if step >= next_eval or step >= cfg.total_env_steps:
            next_eval += cfg.eval_every
            summary = evaluate_net(
                cpu_copy(br.policy), br.env_cfg, cfg.eval_episodes, seed=cfg.seed + 10_000
            )
            row["eval_reward"] = summary["reward_mean"]
            row["eval_demand_satisfied"] = summary["demand_satisfied_mean"]
            if summary["reward_mean"] > best:
                best = summary["reward_mean"]
                save_checkpoint(run / "best.pt", payload(summary))
        logger.log(step, row)
        bar.update(T * B)
        bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss_mse", "eval_reward") if k in row})
        if step >= next_ckpt or step >= cfg.total_env_steps:
            next_ckpt += cfg.checkpoint_every
            save_last(run, payload(summary), step, cfg.keep_checkpoints)
    bar.close()
    logger.close()
    write_json(run / "final_eval.json", {**summary, "best_eval_reward": best})
    return summary
