"""Centralized expert of the paper's Sec. IV (the "expert" row of Fig. 4).

"The centralized controller employs the optimization in Eq. (3) to assign the optimal resource
to each agent and uses a proportional controller with centralized obstacle avoidance to guide
agents toward their assigned locations while preventing collisions." Here:

* assignment: the exact oracle (:mod:`lgtc_policy.env.assign`) per env, recomputed whenever
  that env's supplies, requirements or active set change (not on every step: distances enter
  eq. 3 only through l2, and re-solving while agents move would make them dither);
* proportional controller: u = k_p (target - p), saturated at v_max. Agents sharing a
  consumer aim at distinct points of a ring inside R_m (spacing >= ``ring_spacing``) so
  that they do not fight over the centre;
* collision avoidance: ``cbf_filter.CentralizedCBF`` (one QP for all agents of an env) with
  safety distance ``safety_factor * epsilon``, the arena as walls and the sampled-data guard
  at dt, so the filtered commands keep every pair >= that distance at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lgtc_policy.env.assign import solve_assignment
from lgtc_policy.env.core import ResourceEnv
from lgtc_policy.env.safety import SafetyConfig, SafetyFilter


@dataclass(frozen=True)
class ExpertConfig:
    """Gains of the centralized expert."""

    k_p: float = 4.0
    """Proportional gain [1/s]: full speed until ~v_max / k_p = 0.125 from the target."""
    safety_factor: float = 1.2
    """CBF safety distance = safety_factor * epsilon (> 1 leaves room for round-off)."""
    ring_spacing: float = 1.4
    """Agents sharing a consumer aim at a ring whose chord is >= ring_spacing * epsilon."""
    ring_fill: float = 0.8
    """The ring stays within ring_fill * R_m, so every agent on it is inside the area."""
    cbf_gamma: float = 10.0
    """Linear class-K gain of the CBF [1/s]. (The Robotarium's cubic gamma h^3 is tuned for
    metres; in this normalised arena it lets two agents 0.2 apart close in at ~2 mm/s, which
    deadlocks agents that share a consumer.)"""
    time_limit: float = 1.0
    """Oracle time limit per solve [s] (best known assignment when hit)."""


class CentralizedExpert:
    """Expert policy for a :class:`ResourceEnv` (any batch size; one QP per env per step).

    Usage::

        expert = CentralizedExpert(env)
        obs = env.reset()
        while True:
            obs, reward, done, info = env.step(expert.act())
    """

    def __init__(self, env: ResourceEnv, cfg: ExpertConfig | None = None) -> None:
        self.env = env
        self.cfg = cfg or ExpertConfig()
        self.safety = SafetyFilter(
            env, SafetyConfig(safety_factor=self.cfg.safety_factor, gamma=self.cfg.cbf_gamma)
        )
        self._key: list[bytes | None] = [None] * env.batch_size
        self.assignment = np.full((env.batch_size, env.cfg.n_agents), -1, dtype=np.int64)
        self._slot_key: list[bytes | None] = [None] * env.batch_size
        self._slots: list[dict[int, np.ndarray]] = [{} for _ in range(env.batch_size)]

    def _update_assignment(self, b: int, so, de, c, active) -> None:
        key = np.concatenate([so[b].ravel(), de[b].ravel(), active[b].astype(float)]).tobytes()
        if key == self._key[b]:
            return
        self._key[b] = key
        idx = np.flatnonzero(active[b])
        a = np.full(so.shape[1], -1, dtype=np.int64)
        if idx.size:
            res = solve_assignment(so[b, idx], de[b], c[b, idx], time_limit=self.cfg.time_limit)
            a[idx] = res.assignment
        self.assignment[b] = a

    def targets(self) -> np.ndarray:
        """(B, N, 2) goal points: the assigned consumer, spread on a ring when shared."""
        env = self.env
        so, de, c = (x.double().cpu().numpy() for x in env.assignment_problem())
        active = env.active.cpu().numpy()
        for b in range(env.batch_size):
            self._update_assignment(b, so, de, c, active)
        cpos = env.consumer_pos.double().cpu().numpy()
        rad = env.radius.double().cpu().numpy()
        pos = env.pos.double().cpu().numpy()
        B, N = self.assignment.shape
        tgt = pos.copy()
        for b in range(B):
            key = self.assignment[b].tobytes()
            if self._slot_key[b] != key:  # new membership: fix ring slots until it changes
                self._slot_key[b] = key
                self._slots[b] = self._ring_slots(b, pos[b], cpos[b], rad[b])
            for i, goal in self._slots[b].items():
                tgt[b, i] = goal
        return tgt

    def _ring_slots(self, b: int, pos, cpos, rad) -> dict[int, np.ndarray]:
        """Goal of each assigned agent: the centre, or evenly spaced points on a ring inside
        R_m whose chord is >= ring_spacing * epsilon, matched to the agents by angle."""
        cfg, eps = self.cfg, self.env.cfg.epsilon
        slots: dict[int, np.ndarray] = {}
        for m in range(cpos.shape[0]):
            members = np.flatnonzero(self.assignment[b] == m)
            k = members.size
            if k == 0:
                continue
            if k == 1:
                slots[int(members[0])] = cpos[m]
                continue
            ring = min(cfg.ring_spacing * eps / (2 * np.sin(np.pi / k)), cfg.ring_fill * rad[m])
            rel = pos[members] - cpos[m]
            theta = np.arctan2(rel[:, 1], rel[:, 0])
            order = np.argsort(theta)
            ang = theta[order[0]] + 2 * np.pi * np.arange(k) / k
            for i, a in zip(members[order], ang):
                slots[int(i)] = cpos[m] + ring * np.array([np.cos(a), np.sin(a)])
        return slots

    @property
    def fallbacks(self) -> int:
        """QPs without a solution so far (the filter braked that env's robots to zero)."""
        return self.safety.fallbacks

    def forget(self, envs: torch.Tensor) -> None:
        """Drop the cached assignment and ring goals of ``envs`` ((B,) bool mask, e.g. the
        envs the env just auto-reset), so the next call solves them afresh."""
        for b in envs.nonzero().flatten().tolist():
            self._key[b] = None
            self._slot_key[b] = None

    def _nominal_velocity(self, pos: np.ndarray) -> np.ndarray:
        """(B, N, 2) the proportional controller toward the targets, saturated at v_max."""
        vmax = self.env.cfg.v_max
        u = self.cfg.k_p * (self.targets() - pos)
        speed = np.linalg.norm(u, axis=-1, keepdims=True)
        return u * np.minimum(1.0, vmax / np.maximum(speed, 1e-12))

    def nominal(self) -> torch.Tensor:
        """(B, N, 2) float32 the expert's command *before* its CBF, in the unit disc
        (velocity / v_max), 0 for inactive agents: the oracle goals of eq. 3 and the
        saturated P controller. The teacher of the imitation terms (``bc_lgtc``, and the
        ``--bc-teacher expert`` anchor of the PPO trainer)."""
        env = self.env
        u = self._nominal_velocity(env.pos.double().cpu().numpy()) / env.cfg.v_max
        u[~env.active.cpu().numpy()] = 0.0
        return torch.as_tensor(u, dtype=torch.float32)

    def act(self) -> torch.Tensor:
        """(B, N, 2) actions in [-1, 1] (velocity / v_max) for the env's current state."""
        env = self.env
        vmax = env.cfg.v_max
        pos = env.pos.double().cpu().numpy()
        active = env.active.cpu().numpy()
        u_nom = self._nominal_velocity(pos)
        out = self.safety.filter_velocity(pos, u_nom, active)
        act = np.clip(out / vmax, -1.0, 1.0)
        return torch.as_tensor(act, dtype=env.dtype, device=env.device)


def evaluate(envs: int = 16, seed: int = 123, cfg: ExpertConfig | None = None) -> dict:
    """One episode of the expert on ``envs`` default worlds: demand met, safety, return."""
    from lgtc_policy.env.spec import EnvConfig

    env = ResourceEnv(EnvConfig(auto_reset=False), batch_size=envs, seed=seed)
    expert = CentralizedExpert(env, cfg)
    min_d, collisions = float("inf"), 0
    ret = torch.zeros(envs, dtype=env.dtype)
    for _ in range(env.cfg.episode_length):
        _, reward, _, info = env.step(expert.act())
        min_d = min(min_d, float(info["min_distance"].min()))
        collisions += int(info["collisions"].sum())
        ret += reward.mean(-1)
    sat = info["demand_satisfied"]
    return {
        "demand_met_mean": float(sat.mean()),
        "demand_met_min": float(sat.min()),
        "min_pair_distance": min_d,
        "collisions": collisions,
        "cbf_fallbacks": expert.fallbacks,
        "agent_return_mean": float(ret.mean()),
        "agent_return_std": float(ret.std()),
    }
