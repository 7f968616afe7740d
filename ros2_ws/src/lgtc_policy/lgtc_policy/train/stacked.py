"""Several seeds of one PPO-family run in one process, their updates batched over the seeds.

Each seed keeps its own env, recurrent carry and random generator (a :class:`PPORun`), so its
rollout is the single-seed run's. The parameters of the ``S`` seeds' networks are stacked along
a leading seed axis (one tensor per parameter name, each seed's module holding a view of its
slice), and the PPO update, which is where the time goes (see ``benchmarks/train.py``), runs
once for all seeds: the per-seed losses of eqs. (12)-(15) are evaluated with
``torch.func.vmap`` over ``functional_call`` of one template network, summed (the seeds share
no parameter, so each one's gradient is its own), clipped per seed and stepped by one Adam
over the stacked tensors (Adam is elementwise: each seed's slice moves as its own Adam
would). A 2-seed run equals the two single-seed runs (``test_train_stacked.py``).

Checkpoints, ``progress.csv`` and evaluations are per seed, under ``<run_dir>/s<seed>/``, in
the single-seed format (optimiser states sliced per seed, the run's generators, env and carry),
so each seed's ``last.pt`` resumes with ``lgtc train --seed <seed> --run-dir <run_dir>/s<seed>
--resume true`` (``lgtc sweep --resume true`` does).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, vmap

from lgtc_policy.model.checkpoint import save_checkpoint
from lgtc_policy.model.lgtc import ContractionError, NetInputs
from lgtc_policy.train.common import (
    RunLogger,
    compile_loss,
    make_adam,
    resolve_device,
    save_last,
    set_seed,
    set_threads,
    write_json,
)
from lgtc_policy.train.config import PPOConfig
from lgtc_policy.train.ppo import (
    ActorCritic,
    PPORun,
    Rollout,
    _diverged,
    _normalised,
    _value_out,
    checkpoint_payload,
    cpu_copy,
)

__all__ = ["StackedPPO", "train_ppo_seeds"]


class _Losses(nn.Module):
    """Template whose ``forward`` is one seed's minibatch losses (called through
    ``functional_call`` with that seed's parameter slices)."""

    def __init__(self, ac: ActorCritic, cfg: PPOConfig) -> None:
        super().__init__()
        self.ac, self.cfg = ac, cfg

    def forward(self, mb: dict, valid: torch.Tensor) -> torch.Tensor:
        cfg, ac = self.cfg, self.ac
        inp = NetInputs(*(mb["inp_" + k] for k in NetInputs.__dataclass_fields__))
        w = mb["w"] * valid[..., None]
        denom = (w.sum() if cfg.agent_loss == "mean" else valid.sum()).clamp(min=1.0)
        mean, _, f_pi = ac.policy.forward_seq(inp, mb["xp"], mb["keep"])
        d = ac.dist(mean)
        ratio = (d.log_prob(mb["act"]).sum(-1) - mb["logp"]).exp()
        A = _normalised(mb["adv"], w)
        surr = torch.min(ratio * A, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * A)
        reg_pi = ac.policy.regulariser(f_pi, cfg.pi_form)
        obj = (surr + cfg.ent_coef * d.entropy().sum(-1)) * w
        loss_pi = -obj.sum() / denom + cfg.alpha * reg_pi
        loss_bc = torch.zeros_like(loss_pi)
        if "teach" in mb:
            loss_bc = ((mean - mb["teach"]).pow(2).sum(-1) * w).sum() / denom
            loss_pi = loss_pi + cfg.bc_coef * loss_bc
        vout, _, f_v = ac.value.forward_seq(inp, mb["xv"], mb["keep"])
        err = (_value_out(ac, vout) - mb["ret"]).pow(2)
        if ac.vec_value:
            err = err.sum(-1)
        loss_v = (err * w).sum() / denom + cfg.alpha * ac.value.regulariser(f_v, cfg.pi_form)
        with torch.no_grad():
            nv = valid.sum().clamp(min=1.0) * ratio.shape[-1]
            vm = valid[..., None]
            clipfrac = (((ratio - 1).abs() > cfg.clip).float() * vm).sum() / nv
            kl = (((ratio - 1) - ratio.log()) * vm).sum() / nv
        return torch.stack([loss_pi, loss_v, clipfrac, kl, reg_pi, loss_bc])


def _as_dict(ro: Rollout) -> dict[str, torch.Tensor]:
    d = {"inp_" + k: getattr(ro.inp, k) for k in NetInputs.__dataclass_fields__}
    d.update(xp=ro.xp, xv=ro.xv, act=ro.act, logp=ro.logp, adv=ro.adv, ret=ro.ret, w=ro.w)
    d["keep"] = ro.keep
    if ro.teach is not None:
        d["teach"] = ro.teach
    return d


class StackedPPO:
    """``S`` seeds of ``cfg``: per-seed :class:`PPORun` for the rollouts, one batched update."""

    def __init__(
        self,
        cfg: PPOConfig,
        seeds: list[int],
        device: torch.device,
        dirs: list[Path] | None = None,
    ) -> None:
        self.cfg, self.seeds, self.device = cfg, list(seeds), device
        dirs = dirs or [Path(cfg.run_dir) / f"s{s}" for s in self.seeds]
        n_res = cfg.env_config().n_resources
        self.runs: list[PPORun] = []
        for s, d in zip(self.seeds, dirs):
            c = dataclasses.replace(cfg, seed=s, seeds=(), run_dir=str(d))
            set_seed(s)  # the single-seed run's initial weights
            self.runs.append(PPORun(c, ActorCritic(c, n_res).to(device), 0, device))
        acs = [r.ac for r in self.runs]
        self.template = _Losses(ActorCritic(cfg, n_res).to(device), cfg)
        names = [n for n, _ in acs[0].named_parameters()]
        self.stacked = {
            n: torch.stack([dict(ac.named_parameters())[n].detach() for ac in acs])
            .clone()
            .requires_grad_(True)
            for n in names
        }
        for i, ac in enumerate(acs):  # each seed's module now views its slice
            for n, p in ac.named_parameters():
                p.data = self.stacked[n].data[i]
        ac0 = acs[0]
        self.pi_names = [f"policy.{n}" for n, _ in ac0.policy.named_parameters()] + ["log_std"]
        self.v_names = [f"value.{n}" for n, _ in ac0.value.named_parameters()]
        self.opt_pi = make_adam([self.stacked[n] for n in self.pi_names], cfg.lr)
        self.opt_v = make_adam([self.stacked[n] for n in self.v_names], cfg.lr)
        self._losses = vmap(self._one_seed, in_dims=(0, 0, 0))
        self._losses_full = compile_loss(self._losses, cfg.compile)  # full-size minibatches

    def _one_seed(self, params: dict, mb: dict, valid: torch.Tensor) -> torch.Tensor:
        p = {"ac." + n: v for n, v in params.items()}
        return functional_call(self.template, p, (mb, valid))

    def update(self, ros: list[Rollout], train_pi: bool) -> torch.Tensor:
        """Every seed's PPO epochs at once; returns the summed statistics ``(S, 7)``
        (``loss_pi, loss_v, clipfrac, approx_kl, pi_reg, loss_bc, n_mb``)."""
        cfg = self.cfg
        L = cfg.bptt if self.template.ac.policy.cfg.kind == "lgtc" else 1
        cut = [ro.sequences(L) for ro in ros]
        n_seq, per_mb = cut[0][1].shape[1], -(-cfg.minibatch // L)
        stats = torch.zeros(len(ros), 7, device=self.device)
        for _ in range(cfg.epochs):
            perms = [torch.randperm(n_seq, generator=r.gen, device=self.device) for r in self.runs]
            for s in range(0, n_seq, per_mb):
                mbs = [_as_dict(sq.take(pm[s : s + per_mb])) for (sq, _), pm in zip(cut, perms)]
                mb = {k: torch.stack([m[k] for m in mbs]) for k in mbs[0]}
                valid = torch.stack([v[:, pm[s : s + per_mb]] for (_, v), pm in zip(cut, perms)])
                losses = self._losses_full if valid.shape[2] == per_mb else self._losses
                out = losses(self.stacked, mb, valid)  # (S, 6)
                self._step(out, train_pi)
                stats[:, :6] += out.detach()
                stats[:, 6] += 1
        return stats

    def _step(self, out: torch.Tensor, train_pi: bool) -> None:
        self.opt_pi.zero_grad()
        self.opt_v.zero_grad()
        (out[:, 0].sum() + out[:, 1].sum()).backward()
        groups = [(self.opt_v, self.v_names)]
        if train_pi:
            groups.insert(0, (self.opt_pi, self.pi_names))
        for opt, names in groups:
            _clip_per_seed([self.stacked[n] for n in names], self.cfg.max_grad_norm)
            opt.step()
        with torch.no_grad():
            for n, t in self.stacked.items():
                if n.endswith("cell.tau"):
                    t.clamp_(min=0.0)  # Theorem 1's projection, every seed

    def optim_state(self, i: int) -> dict:
        """Seed ``i``'s optimiser states in the single-seed trainer's layout."""
        return {"pi": _slice_adam(self.opt_pi, i), "v": _slice_adam(self.opt_v, i)}


def _clip_per_seed(params: list[torch.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` applied to each seed's slice on its own (dim 0 = seed)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    sq = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))


def _slice_adam(opt: torch.optim.Adam, i: int) -> dict:
    sd = opt.state_dict()
    state = {
        k: {n: (v if n == "step" else v[i]).clone() for n, v in st.items()}
        for k, st in sd["state"].items()
    }
    return {"state": state, "param_groups": sd["param_groups"]}


def train_ppo_seeds(cfg: PPOConfig, dirs: list[Path] | None = None) -> list[dict]:
    """Train ``cfg.seeds`` together (module docstring); returns each seed's final evaluation.
    ``dirs``: each seed's run folder (default ``<run_dir>/s<seed>``).

    One loop kept together so that it reads as :func:`lgtc_policy.train.ppo.train_ppo` does,
    per seed: rollout, update (batched), log row, evaluation, checkpoints.
    """
    from lgtc_policy.evaluate import evaluate_net

    cfg.validate()
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    st = StackedPPO(cfg, list(cfg.seeds), device, dirs)
    dirs = [Path(r.cfg.run_dir) for r in st.runs]
    logs = []
    for r, d in zip(st.runs, dirs):
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / "config.json", {"algo": cfg.algo, "train": r.cfg.to_dict()})
        logs.append(RunLogger(d, tensorboard=cfg.tensorboard))
    T, B = cfg.rollout_steps(), cfg.num_envs
    step, best = 0, [-math.inf] * len(st.seeds)
    next_eval, next_ckpt = cfg.eval_every, cfg.checkpoint_every
    summaries: list[dict] = [{} for _ in st.seeds]
    t_wall = time.time()
    while step < cfg.total_env_steps:
        t0 = time.time()
        ros = [r.collect() for r in st.runs]
        step += T * B
        train_pi = step // (T * B) > cfg.value_warmup
        stats = st.update(ros, train_pi)
        dt = time.time() - t0
        keys = ("loss_pi", "loss_v", "clipfrac", "approx_kl", "pi_reg", "loss_bc", "n_mb")
        do_eval = step >= next_eval or step >= cfg.total_env_steps
        do_ckpt = step >= next_ckpt or step >= cfg.total_env_steps
        for i, r in enumerate(st.runs):
            row = r.stats_row(dict(zip(keys, stats[i])), dt, train_pi)
            if not (math.isfinite(row["loss_pi"]) and math.isfinite(row["loss_v"])):
                logs[i].log(step, row)
                for log in logs:
                    log.close()
                saved = next_ckpt - cfg.checkpoint_every
                raise ContractionError(f"seed {r.cfg.seed}: " + _diverged(row, step, saved))
            if do_eval:
                summaries[i] = evaluate_net(
                    cpu_copy(r.ac.policy), r.env_cfg, cfg.eval_episodes, r.cfg.seed + 10_000,
                    cfg.safety_filter,
                )  # fmt: skip
                row["eval_reward"] = summaries[i]["reward_mean"]
                row["eval_demand_satisfied"] = summaries[i]["demand_satisfied_mean"]
            logs[i].log(step, row)
            wall = time.time() - t_wall
            if do_eval and summaries[i]["reward_mean"] > best[i]:
                best[i] = summaries[i]["reward_mean"]
                ck = checkpoint_payload(r.ac, r.cfg, r.env_cfg, summaries[i], step, best[i],
                                        wall, None, None)  # fmt: skip
                save_checkpoint(dirs[i] / "best.pt", ck)
            if do_ckpt:
                ck = checkpoint_payload(r.ac, r.cfg, r.env_cfg, summaries[i], step, best[i],
                                        wall, st.optim_state(i), None, r.snapshot())  # fmt: skip
                save_last(dirs[i], ck, step, cfg.keep_checkpoints)
        next_eval += cfg.eval_every if do_eval else 0
        next_ckpt += cfg.checkpoint_every if do_ckpt else 0
    for i, lg in enumerate(logs):
        lg.close()
        write_json(dirs[i] / "final_eval.json", {**summaries[i], "best_eval_reward": best[i]})
    return summaries
