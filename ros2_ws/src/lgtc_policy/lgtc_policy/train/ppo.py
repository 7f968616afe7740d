"""Independent PPO with shared parameters: LGTC-IPPO, IPPO and MAMOPPO (Sec. III-C, IV).

* LGTC-IPPO: policy and value are two :class:`LGTCNet` (``kind='lgtc'``) with their own
  cluster states; losses eqs. (12)-(14) with the contraction regulariser Pi (eq. 15).
* IPPO: the same trainer with the reduced network (``kind='ippo'``), no Pi.
* MAMOPPO: reduced network, value head with one output per consumer trained on the env's
  per-consumer reward decomposition (``info['reward_vec']``); the policy advantage is the
  linear scalarisation (weights 1) of the per-consumer advantages, so the weighted sum of the
  value vector approximates the scalar value of eq. (2) (Sec. IV).

Recurrent state handling: the cluster states ``x(t)`` of every agent are stored in the rollout;
the update cuts each env's rollout into sequences of ``bptt`` ticks and re-runs the cell from
each sequence's stored initial state with gradients through every tick (truncated BPTT,
``PPOConfig.bptt``; ``bptt=1`` is the one-step truncated backprop of the previous trainer).
Losses follow eq. (14): summed over agents, averaged over team transitions
(``PPOConfig.agent_loss``), plus ``alpha Pi`` with Pi of eq. (15) (``PPOConfig.pi_form``).

Device: the env, the networks, the rollout buffer and the random generator live on
``PPOConfig.device``; the training statistics stay tensors on it and are read once per update.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lgtc_policy.env import EnvConfig, Obs
from lgtc_policy.greedy import greedy_action
from lgtc_policy.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lgtc_policy.model.features import inputs_from_obs, item_dims
from lgtc_policy.model.lgtc import ContractionError, LGTCNet, NetConfig, NetInputs
from lgtc_policy.train.common import (
    ConfigError,
    RunLogger,
    compile_loss,
    config_from_dict,
    gae,
    make_adam,
    resolve_device,
    save_last,
    set_seed,
    set_threads,
    write_json,
)
from lgtc_policy.train.config import PPOConfig

__all__ = ["LEGACY_PPO", "TRAINER_VERSION", "ActorCritic", "checkpoint_payload", "train_ppo"]

TRAINER_VERSION = 2
"""``trainer_version`` of the checkpoints written here. 2: sequence BPTT, eq. (14) sums and
eq. (15) with eq. (9)'s rate (PPOConfig.bptt / agent_loss / pi_form); a checkpoint without the
key was written by version 1, whose configs had no such fields and meant :data:`LEGACY_PPO`."""
LEGACY_PPO = {"bptt": 1, "agent_loss": "mean", "pi_form": "margin"}
"""The PPOConfig values that reproduce the version-1 trainer (one-step backprop, losses averaged
over agents, Pi rewarding the margin)."""


# ============================================================================ networks
class ActorCritic(nn.Module):
    """Gaussian policy (mean from the network, state-independent log std) and value network."""

    def __init__(self, cfg: PPOConfig, n_resources: int) -> None:
        super().__init__()
        da, dc = item_dims(n_resources)
        kind = "lgtc" if cfg.algo == "lgtc_ippo" else "ippo"
        common = dict(agent_item_dim=da, consumer_item_dim=dc, kind=kind, g=cfg.g, f=cfg.f)
        common.update(hidden=tuple(cfg.hidden), comm=cfg.comm)
        self.vec_value = cfg.algo == "mamoppo"
        self.policy = LGTCNet(NetConfig(out_dim=2, **common))
        self.value = LGTCNet(NetConfig(out_dim=cfg.n_consumers if self.vec_value else 1, **common))
        self.log_std = nn.Parameter(torch.full((2,), float(cfg.log_std_init)))

    def dist(self, mean: torch.Tensor) -> torch.distributions.Normal:
        std = self.log_std.exp().expand_as(mean)
        return torch.distributions.Normal(mean, std, validate_args=False)  # no host sync


@dataclass
class _Carry:
    """Recurrent per-env quantities: policy/value cluster states and last tick's items."""

    xp: torch.Tensor  # (B, N, F or 0)
    xv: torch.Tensor  # (B, N, F or 0)
    prev_res: torch.Tensor  # (B, N, r, da)

    def reset(self, done: torch.Tensor, obs: Obs) -> None:
        keep = (~done).to(self.xp.dtype).view(-1, 1, 1)
        self.xp = self.xp * keep
        self.xv = self.xv * keep
        self.prev_res = torch.where(done.view(-1, 1, 1, 1), obs.agent_res, self.prev_res)


def _value_out(ac: ActorCritic, out: torch.Tensor) -> torch.Tensor:
    """(B, N, 1) -> (B, N); MAMOPPO keeps the (B, N, M) vector."""
    return out if ac.vec_value else out[..., 0]


# ============================================================================ trainer
def _make_env(cfg: EnvConfig, batch: int, seed: int, device: torch.device | str = "cpu"):
    from lgtc_policy.env import ResourceEnv

    return ResourceEnv(cfg, batch, device=device, seed=seed)


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


@torch.no_grad()
def _tick(net: LGTCNet, inp: NetInputs, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out, x_next)`` of one tick through :meth:`LGTCNet.forward_seq` with ``L = 1``: the
    arithmetic that the update re-runs on the stored inputs, so the PPO ratio starts at 1
    (``forward`` is the same function up to float rounding)."""
    seq = NetInputs(*(getattr(inp, k).unsqueeze(0) for k in NetInputs.__dataclass_fields__))
    out, x_next, _ = net.forward_seq(seq, x)
    return out[0], x_next


def _cat_inputs(items: list[NetInputs]) -> NetInputs:
    return NetInputs(
        *(torch.stack([getattr(i, k) for i in items]) for k in NetInputs.__dataclass_fields__)
    )


def cpu_copy(net: nn.Module) -> nn.Module:
    """A CPU copy of ``net`` for the CPU-side evaluation (the net itself stays put)."""
    import copy

    return copy.deepcopy(net).cpu()


@dataclass
class Rollout:
    """One PPO rollout, time-major ``(T, B, ...)`` on the training device.

    ``xp``/``xv`` are the stored cluster states entering every tick, ``keep`` is 0 where the
    episode ended after tick ``t`` (the next state is reset), ``w`` the active agents.
    """

    inp: NetInputs
    xp: torch.Tensor
    xv: torch.Tensor
    act: torch.Tensor
    logp: torch.Tensor
    adv: torch.Tensor
    ret: torch.Tensor
    w: torch.Tensor
    keep: torch.Tensor
    teach: torch.Tensor | None

    def sequences(self, L: int) -> tuple[Rollout, torch.Tensor]:
        """Cut into sequences of ``L`` ticks: fields become ``(L, C * B, ...)`` (sequence
        ``c * B + b`` = env ``b``, ticks ``c L ... c L + L - 1``; the last one padded) and
        the states their first tick's ``(C * B, ...)``. Returns it and the ``(L, C * B)``
        mask of real (not padded) ticks. ``L = 1`` gives the flat ``t * B + b`` order."""
        T, B = self.act.shape[:2]
        C = -(-T // L)
        src = torch.arange(C * L, device=self.act.device).clamp(max=T - 1)

        def seq(x: torch.Tensor) -> torch.Tensor:
            x = x.index_select(0, src) if C * L != T else x
            x = x.view(C, L, B, *x.shape[2:]).transpose(0, 1)
            return x.reshape(L, C * B, *x.shape[3:])

        def first(x: torch.Tensor) -> torch.Tensor:
            return x[::L].reshape(C * B, *x.shape[2:])

        fields = NetInputs.__dataclass_fields__
        out = Rollout(
            NetInputs(*(seq(getattr(self.inp, k)) for k in fields)),
            first(self.xp),
            first(self.xv),
            *(seq(x) for x in (self.act, self.logp, self.adv, self.ret, self.w, self.keep)),
            None if self.teach is None else seq(self.teach),
        )
        valid = (torch.arange(C * L, device=self.act.device) < T).float().view(C, L).t()
        valid = valid[:, :, None].expand(L, C, B).reshape(L, C * B)
        return out, valid

    def take(self, idx: torch.Tensor) -> Rollout:
        """Sequences ``idx`` (dim 1 of the sequence fields, dim 0 of the states)."""
        fields = NetInputs.__dataclass_fields__
        return Rollout(
            NetInputs(*(getattr(self.inp, k)[:, idx] for k in fields)),
            self.xp[idx],
            self.xv[idx],
            *(x[:, idx] for x in (self.act, self.logp, self.adv, self.ret, self.w, self.keep)),
            None if self.teach is None else self.teach[:, idx],
        )


class PPORun:
    """The state of one PPO run (networks, optimisers, env, recurrent carry) and its three
    phases: :meth:`collect` a rollout, :meth:`update` (eqs. 12-15), :meth:`stats_row`."""

    def __init__(self, cfg: PPOConfig, ac: ActorCritic, step: int, device: torch.device) -> None:
        self.cfg, self.ac, self.device = cfg, ac, device
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)
        self.env_cfg = cfg.env_config()
        self.env = _make_env(self.env_cfg, cfg.num_envs, cfg.seed + step, device)
        self.safety = _safety_layer(self.env, cfg.safety_filter)
        self.teacher = _teacher(self.env, cfg)
        self.last_done: torch.Tensor | None = None
        self.obs = self.env.reset()
        B, N = cfg.num_envs, cfg.n_agents
        self.carry = _Carry(
            torch.zeros(B, N, ac.policy.state_dim, device=device),
            torch.zeros(B, N, ac.value.state_dim, device=device),
            self.obs.agent_res.clone(),
        )
        self.opt_pi = make_adam([*ac.policy.parameters(), ac.log_std], cfg.lr)
        self.opt_v = make_adam(ac.value.parameters(), cfg.lr)
        # --compile on: the full-size minibatches' losses (the ragged last one runs eagerly)
        self.compiled = {
            "pi": compile_loss(self._policy_loss, cfg.compile),
            "v": compile_loss(self._value_loss, cfg.compile),
        }
        self._reset_episode_stats()

    def _reset_episode_stats(self) -> None:
        self.ep = torch.zeros(3, device=self.device)  # sum of returns / N, of demand, count

    def snapshot(self) -> dict:
        """The run's state beyond the weights and optimisers (random generators, the env's
        tensors, the recurrent carry, the current observation), stored in ``last.pt`` so that
        ``--resume`` continues exactly as the uninterrupted run would (teacher caches of
        ``--bc-coef`` and the safety filter hold no state that changes the result)."""
        env = self.env
        return {
            "device": self.device.type,
            "gen": self.gen.get_state(),
            "env_gen": env.gen.get_state(),
            "env": {k: v.clone() for k, v in vars(env).items() if isinstance(v, torch.Tensor)},
            "carry": {"xp": self.carry.xp, "xv": self.carry.xv, "prev_res": self.carry.prev_res},
            "obs": {f.name: getattr(self.obs, f.name) for f in dataclasses.fields(self.obs)},
            "last_done": self.last_done,
        }

    def restore(self, snap: dict) -> bool:
        """Inverse of :meth:`snapshot`; False (nothing restored: the run goes on from a fresh
        env, as a version-1 resume did) when it was taken on another device type, whose
        generator states do not transfer."""
        dev = self.device
        if snap.get("device", "cpu") != dev.type:
            return False
        self.gen.set_state(snap["gen"])
        self.env.gen.set_state(snap["env_gen"])
        for k, v in snap["env"].items():
            setattr(self.env, k, v.to(dev))
        self.carry = _Carry(*(snap["carry"][k].to(dev) for k in ("xp", "xv", "prev_res")))
        self.obs = type(self.obs)(**{k: v.to(dev) for k, v in snap["obs"].items()})
        ld = snap.get("last_done")
        self.last_done = None if ld is None else ld.to(dev)
        return True

    @torch.no_grad()
    def collect(self) -> Rollout:
        """Run ``T`` ticks of the ``B`` envs with the stochastic policy; GAE on the result."""
        cfg, ac, carry, N = self.cfg, self.ac, self.carry, self.cfg.n_agents
        cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("inp", "xp", "xv", "a", "lp")}
        cols.update({k: [] for k in ("v", "r", "done", "w", "teach")})
        obs = self.obs
        with _SideBySide(self.device) as side:
            for _ in range(cfg.rollout_steps()):
                inp = inputs_from_obs(obs, carry.prev_res)
                value = side.submit(_tick, ac.value, inp, carry.xv)
                mean, xp_next = _tick(ac.policy, inp, carry.xp)
                vout, xv_next = value.result()
                d = ac.dist(mean)
                a = mean + d.stddev * torch.randn(
                    mean.shape, generator=self.gen, device=self.device
                )
                for k, v in zip(
                    ("inp", "xp", "xv", "a", "lp", "v"),
                    (inp, carry.xp, carry.xv, a, d.log_prob(a).sum(-1), _value_out(ac, vout)),
                ):
                    cols[k].append(v)
                cols["w"].append(obs.active)
                if self.teacher is not None:
                    cols["teach"].append(self.teacher(self.last_done))
                a_env = a.clamp(-1.0, 1.0)
                obs2, rew, done, info = self.env.step(
                    a_env if self.safety is None else self.safety(a_env)
                )
                r = (info["reward_vec"] if ac.vec_value else rew) * cfg.reward_scale
                if done.any():
                    r = _bootstrap_truncated(ac, cfg, r, done, info, obs, xv_next)
                df = done.to(self.ep.dtype)
                self.ep += torch.stack(
                    [
                        (info["episode_return"] * df).sum() / N,
                        (info["demand_satisfied"] * df).sum(),
                        df.sum(),
                    ]
                )
                cols["r"].append(r)
                cols["done"].append(done)
                self.last_done = done
                carry.prev_res = obs.agent_res.clone()
                carry.xp, carry.xv = xp_next.clone(), xv_next.clone()
                carry.reset(done, obs2)
                obs = obs2
        self.obs = obs
        last_v = _value_out(ac, _tick(ac.value, inputs_from_obs(obs, carry.prev_res), carry.xv)[0])
        return self._gae(cols, last_v)

    def _gae(self, cols: dict, last_v: torch.Tensor) -> Rollout:
        cfg, T, B = self.cfg, self.cfg.rollout_steps(), self.cfg.num_envs
        dones = torch.stack(cols["done"])
        dmask = dones.view(T, B, 1, *([1] if self.ac.vec_value else []))
        adv, ret = gae(
            torch.stack(cols["r"]),
            torch.stack(cols["v"]),
            dmask,
            last_v,
            cfg.gamma,
            cfg.gae_lambda,
        )
        if self.ac.vec_value:
            adv = adv.sum(-1)  # linear scalarisation, weights 1 (reward_vec sums to reward)
        return Rollout(
            _cat_inputs(cols["inp"]),
            torch.stack(cols["xp"]),
            torch.stack(cols["xv"]),
            torch.stack(cols["a"]),
            torch.stack(cols["lp"]),
            adv,
            ret,
            torch.stack(cols["w"]).float(),
            (~dones).float(),
            torch.stack(cols["teach"]) if cols["teach"] else None,
        )

    def update(self, ro: Rollout, train_pi: bool) -> dict[str, torch.Tensor]:
        """``epochs`` passes of sequence minibatches; statistics summed as tensors.

        On the CPU with ``torch.get_num_threads() >= 2`` the value network's step of each
        minibatch runs on a second thread beside the policy's, each with half of the
        threads (:class:`_SideBySide`): the two networks share no parameter and no random
        draw, so the result is the sequential one, bit for bit (tested), and the small
        matrices of a minibatch keep one core busy each instead of splitting every
        operation over all cores."""
        cfg = self.cfg
        L = cfg.bptt if self.ac.policy.cfg.kind == "lgtc" else 1
        seqs, valid = ro.sequences(L)
        n_seq, per_mb = valid.shape[1], -(-cfg.minibatch // L)
        keys = ("loss_pi", "loss_v", "clipfrac", "approx_kl", "pi_reg", "loss_bc", "n_mb")
        stats = {k: torch.zeros((), device=self.device) for k in keys}
        with _SideBySide(self.device) as side:
            for _ in range(cfg.epochs):
                perm = torch.randperm(n_seq, generator=self.gen, device=self.device)
                for s in range(0, n_seq, per_mb):
                    idx = perm[s : s + per_mb]
                    mb, mb_valid = seqs.take(idx), valid[:, idx]
                    full = len(idx) == per_mb
                    value = side.submit(self._value_step, mb, mb_valid, full)
                    mb_stats = self._policy_step(mb, mb_valid, train_pi, full)
                    mb_stats["loss_v"] = value.result()
                    for k, v in mb_stats.items():
                        stats[k] += v
                    stats["n_mb"] += 1
        return stats

    def _denominator(self, w: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Eq. (14)'s average over team transitions (``agent_loss='sum'``) or over agent
        samples (``'mean'``, the version-1 trainer)."""
        return (w.sum() if self.cfg.agent_loss == "mean" else valid.sum()).clamp(min=1.0)

    def _value_loss(self, mb: Rollout, valid: torch.Tensor) -> torch.Tensor:
        """The value network's loss (eqs. 13-15) on a minibatch."""
        cfg, ac = self.cfg, self.ac
        w = mb.w * valid[..., None]
        vout, _, f_v = ac.value.forward_seq(mb.inp, mb.xv, mb.keep)
        err = (_value_out(ac, vout) - mb.ret).pow(2)
        if ac.vec_value:
            err = err.sum(-1)
        loss_v = (err * w).sum() / self._denominator(w, valid)
        return loss_v + cfg.alpha * ac.value.regulariser(f_v, cfg.pi_form)

    def _value_step(self, mb: Rollout, valid: torch.Tensor, full: bool = False) -> torch.Tensor:
        """The value network's gradient step; returns its loss (detached). ``full``: a
        full-size minibatch, whose loss is the compiled one under ``--compile on``."""
        loss_v = (self.compiled["v"] if full else self._value_loss)(mb, valid)
        _step(self.opt_v, loss_v, list(self.ac.value.parameters()), self.cfg)
        self.ac.value.project_()
        return loss_v.detach()

    def _policy_loss(self, mb: Rollout, valid: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The policy's loss (eqs. 12, 14, 15, plus ``bc_coef`` times the imitation term) and
        the minibatch's statistics except ``loss_v`` (detached)."""
        cfg, ac = self.cfg, self.ac
        w = mb.w * valid[..., None]  # (L, n, N): active agents on real ticks
        denom = self._denominator(w, valid)
        mean, _, f_pi = ac.policy.forward_seq(mb.inp, mb.xp, mb.keep)
        d = ac.dist(mean)
        ratio = (d.log_prob(mb.act).sum(-1) - mb.logp).exp()
        A = _normalised(mb.adv, w)
        surr = torch.min(ratio * A, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * A)
        reg_pi = ac.policy.regulariser(f_pi, cfg.pi_form)
        obj = (surr + cfg.ent_coef * d.entropy().sum(-1)) * w
        loss_pi = -obj.sum() / denom + cfg.alpha * reg_pi
        loss_bc = torch.zeros((), device=self.device)
        if mb.teach is not None:
            loss_bc = ((mean - mb.teach).pow(2).sum(-1) * w).sum() / denom
            loss_pi = loss_pi + cfg.bc_coef * loss_bc
        with torch.no_grad():
            nv = valid.sum().clamp(min=1.0) * ratio.shape[-1]
            vmask = valid[..., None]
            return loss_pi, {
                "loss_pi": loss_pi.detach(),
                "clipfrac": ((((ratio - 1).abs() > cfg.clip).float()) * vmask).sum() / nv,
                "approx_kl": (((ratio - 1) - ratio.log()) * vmask).sum() / nv,
                "pi_reg": reg_pi.detach(),
                "loss_bc": loss_bc.detach(),
            }

    def _policy_step(
        self, mb: Rollout, valid: torch.Tensor, train_pi: bool, full: bool = False
    ) -> dict:
        """The policy's gradient step (taken when ``train_pi``) and the minibatch's
        statistics except ``loss_v``; ``full`` as in :meth:`_value_step`."""
        loss_pi, stats = (self.compiled["pi"] if full else self._policy_loss)(mb, valid)
        if train_pi:
            _step(self.opt_pi, loss_pi, [*self.ac.policy.parameters(), self.ac.log_std], self.cfg)
            self.ac.policy.project_()
        return stats

    def stats_row(self, stats: dict[str, torch.Tensor], dt: float, train_pi: bool) -> dict:
        """The progress.csv row of one update: the one read of the device's statistics."""
        cfg, ac = self.cfg, self.ac
        n_mb = stats.pop("n_mb").clamp(min=1)
        vals = torch.stack([*(v / n_mb for v in stats.values()), ac.log_std.detach().exp().mean()])
        vals = torch.cat([vals, self.ep]).tolist()
        row = dict(zip(stats, vals))
        row["action_std"] = vals[len(stats)]
        ret_sum, dem_sum, n_ep = vals[len(stats) + 1 :]
        row["steps_per_s"] = cfg.rollout_steps() * cfg.num_envs / dt
        row["policy_trained"] = float(train_pi)
        if n_ep > 0:
            row["episode_reward"] = ret_sum / n_ep
            row["demand_satisfied"] = dem_sum / n_ep
        self._reset_episode_stats()
        if ac.policy.cfg.kind == "lgtc":
            rep = ac.policy.cell.theorem1(self.carry.xp)
            row.update(
                contraction_c=rep.margin, tau_min=rep.tau_min, state_abs_max=rep.state_abs_max
            )
            with torch.no_grad():  # largest row sum of |A^T A|: the coupling eq. (6) keeps
                for key, net in (("coupling", ac.policy), ("coupling_v", ac.value)):
                    row[key] = float(net.cell.K.abs().sum(1).max())
        return row


class _Done:
    """An already computed result with the ``Future.result()`` interface."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


class _SideBySide:
    """Context of one PPO update: ``submit(fn, *args)`` runs ``fn`` on a second CPU thread
    when this process has ``>= 2`` torch threads on the CPU (each side then gets half of
    them for its own operations, restored on exit), else at once on the calling thread.

    The rounding of an operation does not depend on which thread runs it, only on the
    thread count it is split over, so a run gives the same numbers with ``--threads 2``
    as with ``--threads 1`` (both one thread per network), bit for bit.
    """

    def __init__(self, device: torch.device) -> None:
        self.total = torch.get_num_threads()
        self.on = device.type == "cpu" and self.total >= 2
        self.pool = None

    def __enter__(self) -> _SideBySide:
        if self.on:
            from concurrent.futures import ThreadPoolExecutor

            half = self.total // 2
            self.pool = ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(half,))
            torch.set_num_threads(half)
        return self

    def submit(self, fn, *args) -> Any:
        return _Done(fn(*args)) if self.pool is None else self.pool.submit(fn, *args)

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            torch.set_num_threads(self.total)


def _normalised(A: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Advantages standardised over the weighted (active, real) samples, when there are at
    least two of them (mean and unbiased std, computed without a host sync)."""
    n = w.sum()
    mu = (A * w).sum() / n.clamp(min=1.0)
    var = ((A - mu).pow(2) * w).sum() / (n - 1).clamp(min=1.0)
    return torch.where(n > 1, (A - mu) / (var.sqrt() + 1e-8), A)


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: list, cfg: PPOConfig) -> None:
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    opt.step()


def train_ppo(cfg: PPOConfig) -> dict:
    """Train one PPO-family agent; returns the final evaluation summary (also in best.pt).

    A run reads top to bottom: set-up or resume (:func:`_start_or_resume`), then per update
    :meth:`PPORun.collect`, :meth:`PPORun.update`, the log row, the evaluation and the
    checkpoints.
    """
    from tqdm import tqdm

    from lgtc_policy.evaluate import evaluate_net

    cfg.validate()
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    set_seed(cfg.seed)  # python/numpy/torch: the networks' initial weights on every device
    env_cfg = cfg.env_config()
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ac = ActorCritic(cfg, env_cfg.n_resources)
    warm_start = _init_from(cfg, ac) if cfg.init_checkpoint else None
    ac.to(device)
    pr, step, best, start_wall = _start_or_resume(cfg, ac, run, device)
    logger = RunLogger(run, tensorboard=cfg.tensorboard, append=cfg.resume)
    T, B = cfg.rollout_steps(), cfg.num_envs
    next_eval = (step // cfg.eval_every + 1) * cfg.eval_every
    next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    bar = tqdm(total=cfg.total_env_steps, initial=step, disable=not cfg.progress, unit="step")
    t_wall = time.time() - start_wall
    summary: dict = {}

    def payload(eval_summary: dict, with_optim: bool) -> dict:
        optim, snap = None, None
        if with_optim:
            optim = {"pi": pr.opt_pi.state_dict(), "v": pr.opt_v.state_dict()}
            snap = pr.snapshot()
        wall = time.time() - t_wall
        return checkpoint_payload(
            ac, cfg, env_cfg, eval_summary, step, best, wall, optim, warm_start, snap
        )

    while step < cfg.total_env_steps:
        t0 = time.time()
        ro = pr.collect()
        step += T * B
        train_pi = step // (T * B) > cfg.value_warmup  # `step` already counts this rollout
        stats = pr.update(ro, train_pi)
        row = pr.stats_row(stats, time.time() - t0, train_pi)
        if not (math.isfinite(row["loss_pi"]) and math.isfinite(row["loss_v"])):
            logger.log(step, row)
            logger.close()
            raise ContractionError(_diverged(row, step, next_ckpt - cfg.checkpoint_every))
        if step >= next_eval or step >= cfg.total_env_steps:
            next_eval += cfg.eval_every
            summary = evaluate_net(
                cpu_copy(ac.policy),
                env_cfg,
                cfg.eval_episodes,
                cfg.seed + 10_000,
                cfg.safety_filter,
            )
            row["eval_reward"] = summary["reward_mean"]
            row["eval_demand_satisfied"] = summary["demand_satisfied_mean"]
            if summary["reward_mean"] > best:
                best = summary["reward_mean"]
                save_checkpoint(run / "best.pt", payload(summary, with_optim=False))
        logger.log(step, row)
        _show_progress(bar, row, T * B)
        if step >= next_ckpt or step >= cfg.total_env_steps:
            next_ckpt += cfg.checkpoint_every
            save_last(run, payload(summary, with_optim=True), step, cfg.keep_checkpoints)
    bar.close()
    logger.close()
    write_json(run / "final_eval.json", {**summary, "best_eval_reward": best})
    return summary


def _diverged(row: dict, step: int, saved: int) -> str:
    """One line: the update ending at ``step`` made the losses non-finite (so its weights);
    the LGTC state's size says whether the cell left Theorem 1's region."""
    parts = [
        f"training diverged: the losses of the update ending at {step} env steps are not "
        f"finite (loss_pi {row['loss_pi']}, loss_v {row['loss_v']})"
    ]
    state = row.get("state_abs_max", 0.0)
    if not state <= 1.0:  # also nan
        parts.append(
            f"the LGTC state reached max |x| = {state:.3g}, outside Theorem 1's [-1, 1] (the "
            "coupling outgrew the leak: contraction_c < 0 in progress.csv); keep Pi "
            "(--alpha > 0) or use --pi-form constraint, which holds the margin at 0"
        )
    else:
        parts.append("lower --lr")
    parts.append(
        f"the last finite weights are last.pt's ({saved} env steps)"
        if saved > 0
        else "no last.pt was written yet"
    )
    return "; ".join(parts)


def _start_or_resume(
    cfg: PPOConfig, ac: ActorCritic, run: Path, device: torch.device
) -> tuple[PPORun, int, float, float]:
    """A fresh run (writes config.json) or, with ``cfg.resume``, the state of ``last.pt``
    (weights into ``ac``, optimisers, exact-resume state); returns the :class:`PPORun` and
    the env steps done, the best evaluation reward and the wall time so far."""
    step, best, start_wall = 0, -math.inf, 0.0
    last: dict = {}
    if cfg.resume:
        step, best, start_wall, last = _resume(run / "last.pt", cfg, ac)
    else:
        write_json(run / "config.json", {"algo": cfg.algo, "train": cfg.to_dict()})
    pr = PPORun(cfg, ac, step, device)
    if last.get("optim"):
        pr.opt_pi.load_state_dict(last["optim"]["pi"])
        pr.opt_v.load_state_dict(last["optim"]["v"])
    if last.get("resume_state"):
        pr.restore(last["resume_state"])
    return pr, step, best, start_wall


def _show_progress(bar: Any, row: dict, n_steps: int) -> None:
    """Advance the tqdm bar by ``n_steps`` and show the row's rewards and speed."""
    bar.update(n_steps)
    bar.set_postfix(
        {k: f"{row[k]:.3g}" for k in ("episode_reward", "eval_reward", "steps_per_s") if k in row}
    )


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
    v = _value_out(ac, _tick(ac.value, inp, xv_next[ids])[0])
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
    resume_state: dict | None = None,
) -> dict:
    """The checkpoint dict of :mod:`lgtc_policy.model.checkpoint` for an :class:`ActorCritic`
    (written by the PPO and the BC trainers); ``resume_state`` = :meth:`PPORun.snapshot`."""
    return {
        "algo": cfg.algo,
        "nets": {"policy": ac.policy.cfg.to_dict(), "value": ac.value.cfg.to_dict()},
        "state_dicts": {
            "policy": _cpu(ac.policy.state_dict()),
            "value": _cpu(ac.value.state_dict()),
            "log_std": {"log_std": ac.log_std.detach().cpu().clone()},
        },
        "env_config": _env_dict(env_cfg),
        "train_config": cfg.to_dict(),
        "eval": eval_summary,
        "progress": {"env_steps": step, "best": best, "wall_s": wall_s},
        "optim": _cpu(optim),
        "trainer_version": TRAINER_VERSION,
        **({"resume_state": _cpu(resume_state)} if resume_state else {}),
        **({"warm_start": warm_start} if warm_start else {}),
    }


def _cpu(obj):
    """``obj`` (nested dicts/lists of tensors) with every tensor on the CPU (portable files)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()  # a view would save its whole base storage
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


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


def _resume(path: Path, cfg: PPOConfig, ac) -> tuple[int, float, float, dict]:
    """Restore weights and progress from ``last.pt`` (config must match); returns the
    checkpoint too, whose ``optim`` and ``resume_state`` :class:`PPORun` loads."""
    ck = load_checkpoint(path)
    old_d = dict(ck["train_config"])
    if int(ck.get("trainer_version", 1)) < 2:  # written before these fields existed
        old_d = {**LEGACY_PPO, **old_d}
    old = config_from_dict(PPOConfig, old_d)
    keep = ("total_env_steps", "resume", "progress", "eval_every", "checkpoint_every", "threads")
    keep += ("keep_checkpoints",)  # logging, like checkpoint_every
    keep += ("init_checkpoint", "device", "compile")
    diff = [k for k in cfg.to_dict() if k not in keep and cfg.to_dict()[k] != old.to_dict()[k]]
    if diff:
        raise ConfigError(
            f"--resume: config differs from {path} in {diff}; use the same options "
            "(only the budget/logging/device may change) or a new --run-dir"
        )
    try:
        ac.policy.load_state_dict(ck["state_dicts"]["policy"])
        ac.value.load_state_dict(ck["state_dicts"]["value"])
        ac.log_std.data.copy_(ck["state_dicts"]["log_std"]["log_std"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"--resume: {path} does not fit this model: {e}") from e
    prog = ck.get("progress") or {}
    return (
        int(prog.get("env_steps", 0)),
        float(prog.get("best", -math.inf)),
        float(prog.get("wall_s", 0.0)),
        ck,
    )
