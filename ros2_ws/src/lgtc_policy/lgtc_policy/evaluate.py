"""Evaluation of policies and of the centralized expert on the batched env (Sec. IV).

The reported number is the paper's "accumulated reward": the episode return of eq. (2) summed
over time and averaged over the agents (team return / N), averaged over episodes. One episode
per env of a batched env with ``auto_reset=False``, run for exactly ``episode_length`` steps.
Policies act deterministically (the Gaussian mean); evaluation envs are seeded, so a given
checkpoint always gives the same numbers on the same machine.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from lgtc_policy.env import EnvConfig, ResourceEnv
from lgtc_policy.env.safety import SafetyFilter
from lgtc_policy.greedy import greedy_action
from lgtc_policy.model.checkpoint import build_net, load_checkpoint
from lgtc_policy.model.features import inputs_from_obs
from lgtc_policy.model.lgtc import LGTCNet

__all__ = [
    "SAFETY_FILTERS",
    "evaluate_checkpoint",
    "evaluate_expert",
    "evaluate_greedy",
    "evaluate_net",
    "policy_ticks",
    "rollout_policy",
    "Tick",
    "trained_safety_filter",
]


def _eval_env(env_cfg: EnvConfig, episodes: int, seed: int):
    cfg = dataclasses.replace(env_cfg, auto_reset=False, seed=seed)
    return ResourceEnv(cfg, episodes, device="cpu", seed=seed)


def _summary(
    returns: torch.Tensor, demand: torch.Tensor, coll: torch.Tensor, n: int, seed: int
) -> dict:
    per_agent = (returns / n).double()
    return {
        "seed": int(seed),
        "reward_mean": float(per_agent.mean()),
        "reward_std": float(per_agent.std()) if per_agent.numel() > 1 else 0.0,
        "demand_satisfied_mean": float(demand.double().mean()),
        "collisions_per_episode": float(coll.double().mean()),
        "episodes": int(per_agent.numel()),
    }


SAFETY_FILTERS = ("none", "cbf")


def _safety(env, safety_filter: str):
    """The action map of ``safety_filter``: None (the env executes the action) or the batched
    CBF filter of :mod:`lgtc_policy.env.safety` (the expert's filter)."""
    if safety_filter not in SAFETY_FILTERS:
        raise ValueError(f"safety_filter={safety_filter!r}: use one of {SAFETY_FILTERS}")
    if safety_filter == "none":
        return None
    return SafetyFilter(env).filter


@dataclasses.dataclass
class Tick:
    """One tick of :func:`policy_ticks`: the observation acted on ``prev_obs``, the network's
    input ``inp``, its new state ``x`` and attention ``xi``; ``active`` the agents that acted
    and ``labels`` the eq. 3 assignment they acted under (-1: inactive or none); then the
    env's ``reward``, ``obs``, ``done`` and ``info`` after the step."""

    prev_obs: Any
    inp: Any
    x: torch.Tensor
    xi: torch.Tensor
    active: torch.Tensor
    labels: torch.Tensor
    reward: torch.Tensor
    obs: Any
    done: torch.Tensor
    info: dict


def policy_ticks(net: LGTCNet, env, steps: int, safety_filter: str = "none"):
    """Run ``net`` deterministically on a batched ``env`` for ``steps`` ticks from a reset,
    yielding a :class:`Tick` per tick (stops early when every env is done).

    The recurrent cluster states and the previous tick's items (the neighbours' messages) are
    carried exactly as in training. With ``safety_filter='cbf'`` every action passes the
    centralized CBF filter first (the deployed chain).
    """
    safety = _safety(env, safety_filter)
    obs = env.reset()
    B, N = obs.pos.shape[:2]
    x = torch.zeros(B, N, net.state_dim)
    prev = obs.agent_res.clone()
    for _ in range(steps):
        prev_obs = obs
        inp = inputs_from_obs(obs, prev)
        out, x, xi = net(inp, x)
        active = env.active.clone()
        labels = torch.where(active, env.assignment, -1)
        prev = obs.agent_res.clone()
        act = net.action(out)
        obs, reward, done, info = env.step(act if safety is None else safety(act))
        yield Tick(prev_obs, inp, x, xi, active, labels, reward, obs, done, info)
        if bool(done.all()):
            return


@torch.inference_mode()
def rollout_policy(net: LGTCNet, env, steps: int, safety_filter: str = "none") -> dict[str, Any]:
    """:func:`policy_ticks` to the end; returns the last step's ``info``."""
    info: dict[str, Any] = {}
    for tick in policy_ticks(net, env, steps, safety_filter):
        info = tick.info
    return info


def evaluate_net(
    net: LGTCNet, env_cfg: EnvConfig, episodes: int, seed: int, safety_filter: str = "none"
) -> dict:
    """Deterministic evaluation of a policy network over ``episodes`` seeded episodes
    (``safety_filter='cbf'``: every action through the expert's CBF filter first)."""
    env = _eval_env(env_cfg, episodes, seed)
    was_training = net.training
    net.eval()
    info = rollout_policy(net, env, env_cfg.episode_length, safety_filter)
    net.train(was_training)
    return _summary(
        info["episode_return"],
        info["demand_satisfied"],
        info["collisions"],
        env_cfg.n_agents,
        seed,
    )


def _evaluate_controller(env_cfg: EnvConfig, episodes: int, seed: int, make) -> dict:
    """A non-learned controller on the seeded evaluation episodes: ``make(env)`` returns a
    callable giving the (B, N, 2) action of the env's current state."""
    env = _eval_env(env_cfg, episodes, seed)
    env.reset()
    act = make(env)
    info: dict = {}
    with torch.inference_mode():
        for _ in range(env_cfg.episode_length):
            _, _, done, info = env.step(act())
            if bool(done.all()):
                break
    return _summary(
        info["episode_return"],
        info["demand_satisfied"],
        info["collisions"],
        env_cfg.n_agents,
        seed,
    )


def evaluate_expert(env_cfg: EnvConfig, episodes: int, seed: int) -> dict:
    """The centralized expert (MIQP assignment + P control + CBF) on the same seeded episodes."""
    # the MIQP solver stack takes seconds to import: only when the expert is evaluated
    from lgtc_policy.env.expert import CentralizedExpert

    return _evaluate_controller(env_cfg, episodes, seed, lambda env: CentralizedExpert(env).act)


def evaluate_greedy(env_cfg: EnvConfig, episodes: int, seed: int) -> dict:
    """The decentralized greedy rule (:mod:`lgtc_policy.greedy`, not in the paper) on the same
    seeded episodes: what one robot achieves from its own observation and its close
    neighbours' positions without any learning."""
    return _evaluate_controller(env_cfg, episodes, seed, lambda env: lambda: greedy_action(env))


def trained_safety_filter(ck: dict) -> str:
    """The safety filter a checkpoint was trained with ('none' for checkpoints that predate
    the ``safety_filter`` option): how the policy is meant to be run and evaluated."""
    mode = str(dict(ck.get("train_config") or {}).get("safety_filter", "none"))
    return mode if mode in SAFETY_FILTERS else "none"


def evaluate_checkpoint(
    path: str,
    episodes: int = 32,
    seed: int = 12345,
    env_overrides: dict | None = None,
    with_expert: bool = True,
    safety_filter: str = "auto",
    both_filters: bool = True,
) -> dict:
    """Evaluate a checkpoint's policy (and the expert on the same episodes).

    ``safety_filter``: 'none' (the env executes the policy's action: the paper's Fig. 3/4
    setting), 'cbf' (every action through the expert's centralized CBF filter first; on the
    robots every command is filtered too, by the per-robot cbf_filter nodes,
    and as the expert's own commands) or 'auto' (how the checkpoint was trained, see
    :func:`trained_safety_filter`).

    Returns a flat dict: ``safety_filter`` (the mode of the unsuffixed keys), ``reward_mean``,
    ``reward_std``, ``demand_satisfied_mean``, ``collisions_per_episode``,
    ``expert_reward_mean``, ``expert_reward_std``, ``ratio_to_expert`` (= reward_mean /
    expert_reward_mean), ``greedy_reward_mean`` and ``greedy_demand_satisfied_mean`` (the
    decentralized greedy rule, a no-learning yardstick), ``episodes``, ``seed``, ``algo``,
    ``comm`` (the network's :data:`~lgtc_policy.model.lgtc.COMM_FORMS` entry); with
    ``both_filters`` also ``reward_mean_filter_<mode>``, ``demand_satisfied_mean_filter_<mode>``,
    ``collisions_per_episode_filter_<mode>`` and ``ratio_to_expert_filter_<mode>`` for both
    modes, so one evaluation shows the policy alone and filtered side by side.
    """
    ck = load_checkpoint(path)
    net = build_net(ck, "policy")
    env_cfg = EnvConfig.from_dict({**dict(ck["env_config"]), **(env_overrides or {})})
    mode = trained_safety_filter(ck) if safety_filter == "auto" else safety_filter
    if mode not in SAFETY_FILTERS:
        raise ValueError(f"safety_filter={safety_filter!r}: use 'auto' or one of {SAFETY_FILTERS}")
    out: dict[str, Any] = {"algo": ck["algo"], "checkpoint": str(path), "safety_filter": mode}
    out["comm"] = net.cfg.comm  # 'relpos': not the paper's observation, report separately
    runs = {mode: evaluate_net(net, env_cfg, episodes, seed, mode)}
    if both_filters:
        for other in SAFETY_FILTERS:
            if other != mode:
                runs[other] = evaluate_net(net, env_cfg, episodes, seed, other)
    out.update(runs[mode])
    keys = ("reward_mean", "demand_satisfied_mean", "collisions_per_episode")
    if both_filters:
        for m, r in runs.items():
            out.update({f"{k}_filter_{m}": r[k] for k in keys})
    if with_expert:
        ex = evaluate_expert(env_cfg, episodes, seed)
        out["expert_reward_mean"] = ex["reward_mean"]
        out["expert_reward_std"] = ex["reward_std"]
        out["expert_demand_satisfied_mean"] = ex["demand_satisfied_mean"]
        denom = ex["reward_mean"]

        def ratio(x: float) -> float:
            return float(x / denom) if denom else float(np.nan)

        out["ratio_to_expert"] = ratio(out["reward_mean"])
        if both_filters:
            for m, r in runs.items():
                out[f"ratio_to_expert_filter_{m}"] = ratio(r["reward_mean"])
        gr = evaluate_greedy(env_cfg, episodes, seed)
        out["greedy_reward_mean"] = gr["reward_mean"]
        out["greedy_demand_satisfied_mean"] = gr["demand_satisfied_mean"]
    return out
