"""The CBF safety filter inside the batched env: one centralized QP per env per step.

Every command a robot flies passes a cbf_filter node (the ROS chain, the paper's Sec. IV-D real
experiments: "the generated velocity command [is adjusted] to consider a safety distance among
the drones"), and the centralized expert of Sec. IV avoids collisions with the centralized form
of the same filter. This module is that centralized form with the expert's parameters, in the
env's normalised units; ``lgtc_policy.mission.scenario.RosChainFilter`` is the per-robot form
with the nodes' parameters in metres, used to replay a ROS scenario in the core env.

:class:`SafetyFilter` puts this filter between any controller and
:meth:`ResourceEnv.step`, so that

* the expert (:mod:`lgtc_policy.env.expert`) filters its P-controller command with it;
* a policy can be evaluated with its commands filtered, like the expert's
  (``lgtc eval --safety-filter cbf``);
* a policy can be trained with the filter as part of the environment's dynamics
  (``lgtc train --safety-filter cbf``, a "safety layer": the policy's sampled action is the
  PPO action, the filtered one is what the env executes).

The QP is ``cbf_filter.CentralizedCBF`` (min ||u - u_nom||^2 subject to the pairwise barrier
conditions, the arena walls as barriers and the speed bound), solved exactly per env, with
its counted brake-to-zero fallback when it has no solution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from cbf_filter import CBFParams, CentralizedCBF

from lgtc_policy.env.spec import ActionError

__all__ = ["SafetyConfig", "SafetyFilter"]


@dataclass(frozen=True)
class SafetyConfig:
    """Parameters of the in-env CBF (the centralized expert's values)."""

    safety_factor: float = 1.2
    """CBF safety distance = safety_factor * epsilon (> 1 leaves room for round-off, so the
    filtered robots stay outside the collision radius epsilon of eq. 2's rw_ij)."""
    gamma: float = 10.0
    """Linear class-K gain [1/s]. (The Robotarium's cubic gamma h^3 is tuned for metres; in the
    normalised arena it lets two agents 0.2 apart close in at ~2 mm/s, which deadlocks agents
    that share a consumer.)"""
    class_k: str = "linear"
    """Class-K function of the barrier condition (cbf_filter: 'linear' or 'cubic')."""

    def __post_init__(self) -> None:
        if not self.safety_factor >= 1.0:
            raise ValueError(
                f"SafetyConfig.safety_factor={self.safety_factor}: use >= 1 (the filter must "
                "keep robots at least epsilon apart)"
            )
        if not self.gamma > 0:
            raise ValueError(f"SafetyConfig.gamma={self.gamma}: use a positive gain [1/s]")


class SafetyFilter:
    """Batched CBF filter for a :class:`~lgtc_policy.env.ResourceEnv` (any batch size).

    ``filter(action)`` maps the env's unit actions (B, N, 2) (velocity / v_max) to the filtered
    unit actions; ``filter_velocity(pos, u)`` does the same on velocities as numpy arrays.
    Inactive (landed) robots get zero. ``fallbacks`` counts the QPs that had no solution (the
    filter then brakes every robot of that env to zero, cbf_filter's documented fallback).
    """

    def __init__(
        self, env, cfg: SafetyConfig | None = None, params: CBFParams | None = None
    ) -> None:
        self.env = env
        self.cfg = cfg or SafetyConfig()
        ecfg = env.cfg
        if params is None:
            params = CBFParams(
                gamma=self.cfg.gamma,
                class_k=self.cfg.class_k,
                safety_distance=self.cfg.safety_factor * ecfg.epsilon,
                max_speed=ecfg.v_max,
                arena=((-1.0, 1.0), (-1.0, 1.0)),
                boundary_margin=0.0,
                sample_time=ecfg.dt,
                sensing_radius=None,
            )
        self.params = params
        self.cbfs = [CentralizedCBF(ecfg.n_agents, 2, params) for _ in range(env.batch_size)]
        self.fallbacks = 0

    def filter_velocity(self, pos: np.ndarray, u_nom: np.ndarray, active: np.ndarray):
        """(B, N, 2) safe velocities for positions ``pos`` and nominal velocities ``u_nom``
        (float64 numpy); ``active`` (B, N) bool: inactive robots get zero."""
        out = np.zeros_like(u_nom)
        u_nom = np.where(active[..., None], u_nom, 0.0)
        for b in range(u_nom.shape[0]):
            res = self.cbfs[b].filter(pos[b], u_nom[b])
            self.fallbacks += int(not res.found)
            out[b] = res.u
        out[~active] = 0.0
        return out

    def filter(self, action: torch.Tensor) -> torch.Tensor:
        """Filtered unit actions (B, N, 2) for the env's current state. The input is first
        treated exactly like :meth:`ResourceEnv.step` treats it: a non-finite command raises
        ``ActionError`` or becomes 0 (hover) per ``EnvConfig.nan_actions``, then components are
        clipped to [-1, 1] and the norm to <= 1."""
        env = self.env
        vmax = env.cfg.v_max
        # the env's own rules (ResourceEnv._check_actions), applied here in float64: in the
        # env's float32 a command at the speed limit can round a hair above it, and the QP's
        # speed polygon then moves it by up to 2 % (so the env's check is not reused)
        a = action.detach().to(torch.float64)
        if not bool(torch.isfinite(a).all()):
            bad = ~torch.isfinite(a).all(-1)
            if env.cfg.nan_actions == "raise":
                b, i = torch.nonzero(bad)[0].tolist()
                raise ActionError(
                    f"actions[{b}, {i}] = {a[b, i].tolist()} is not finite; fix the policy or "
                    "set EnvConfig.nan_actions='zero' to replace it by 0 (hover)"
                )
            a = torch.where(bad[..., None], 0.0, a)
        a = a.clamp(-1.0, 1.0)
        a = a / torch.linalg.vector_norm(a, dim=-1, keepdim=True).clamp(min=1.0)
        u = self.filter_velocity(
            env.pos.double().cpu().numpy(), a.cpu().numpy() * vmax, env.active.cpu().numpy()
        )
        out = np.clip(u / vmax, -1.0, 1.0)
        return torch.as_tensor(out, dtype=env.dtype, device=env.device)
