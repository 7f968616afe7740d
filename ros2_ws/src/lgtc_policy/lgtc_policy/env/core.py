"""Batched torch resource-allocation world (paper Sections II, III-A, IV).

B envs advance together; every operation is a tensor op over (B, N, ...) with no Python loop
over agents or envs (the only loops are the assignment local search's improvement iterations
and, in ``assignment='exact'`` mode, one oracle call per env whose supplies/demands changed).
The interface is fixed in :mod:`lgtc_policy.env.spec`.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
from typing import Any

import numpy as np
import torch

from lgtc_policy.env.assign_local import greedy_assignment, multistart_search
from lgtc_policy.env.costs import linear_costs
from lgtc_policy.env.obs import active_pairs, agent_observation, consumer_geometry, pairwise_d2
from lgtc_policy.env.spec import ActionError, EnvConfig, EnvConfigError, Obs, ObsDims

REWARD_TERMS = ("rw_g", "rw_s", "rw_ij", "rw_im", "rw_rc", "rw_is", "rw_id")
"""Names of the seven terms of eq. (2), as in ``info['reward_terms']``."""

_EPS_Q = 1e-6  # quantities below this count as zero (float32 round-off of transfers)

_MALLOC_MIN_AGENTS = 4096  # B * N from which a CPU env keeps freed heap memory (see below)
_malloc_tuned = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed heap memory for reuse instead of returning it to the OS.

    A step at B = 4096 allocates and frees ~30-50 MB of tensors. With glibc's defaults the
    heap top is trimmed (or large blocks unmapped) after each step and the next step faults
    the same pages back in: measured here 2-8 k page faults and 3-13 ms of system time per
    step (10-45 % of it), depending on what else the process allocates. This sets
    M_MMAP_THRESHOLD to 32 MiB (glibc's maximum; blocks below it come from the heap) and
    M_TRIM_THRESHOLD to 512 MiB, process-wide; the cost is that up to that much freed memory
    stays in the process. :class:`ResourceEnv` calls it once for CPU envs with B * N >= 4096
    unless the environment variable ``LGTC_ENV_MALLOC_TUNING=0``. Returns True if applied
    (glibc only; anything else is left alone).
    """
    global _malloc_tuned
    if _malloc_tuned:
        return True
    if os.environ.get("LGTC_ENV_MALLOC_TUNING", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        ok = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024) == 1
        ok &= libc.mallopt(m_trim_threshold, 512 * 1024 * 1024) == 1
    except (OSError, AttributeError):
        return False
    _malloc_tuned = bool(ok)
    return _malloc_tuned


def _mask(op: Any, a: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """``op(a, b)`` (a torch comparison) as a 0/1 tensor of a's float dtype and shape.

    On CPU a comparison that writes floats is several times faster than one that writes bools,
    and a float 0/1 mask multiplies without a type promotion; ``.bool()`` of it is cheap too.
    """
    return op(a, b, out=torch.empty_like(a))


class ResourceEnv:
    """B parallel copies of the world. See :class:`lgtc_policy.env.spec.BatchedEnvProtocol`.

    State (all batch-first, on ``device``):
        pos, vel (B, N, 2) [normalised units, units/s]; supply (B, N, r) so_i;
        persistent (B, r) bool kind of each type; base (B, M, r) the consumers' requirement
        (instantaneous types: what is still missing; persistent types: the constant
        requirement); demand (B, M, r) the remaining demand de_m seen by agents (persistent:
        requirement minus what agents inside currently cover); demand0 (B, M, r) at reset;
        consumer_pos (B, M, 2), radius (B, M); active (B, N) bool; assignment (B, N) int64;
        contributed (B, N, M) bool; completed (B, M) bool; t (B,) int64.
    """

    def __init__(
        self, cfg: EnvConfig, batch_size: int, device: str | torch.device = "cpu", seed: int = 0
    ) -> None:
        if not isinstance(cfg, EnvConfig):
            raise EnvConfigError(f"cfg must be an EnvConfig, got {type(cfg).__name__}")
        cfg.validate()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise EnvConfigError(f"batch_size={batch_size!r}: must be an integer >= 1")
        self.cfg = cfg
        self.batch_size = B = batch_size
        self.device = torch.device(device)
        if self.device.type == "cpu" and B * cfg.n_agents >= _MALLOC_MIN_AGENTS:
            keep_freed_memory()
        self.dtype = torch.float32 if cfg.dtype == "float32" else torch.float64
        self.dims = ObsDims(cfg.n_resources)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(int(seed))
        N, M, r = cfg.n_agents, cfg.n_consumers, cfg.n_resources
        f = {"device": self.device, "dtype": self.dtype}
        self.pos = torch.zeros(B, N, 2, **f)
        self.vel = torch.zeros(B, N, 2, **f)
        self.supply = torch.zeros(B, N, r, **f)
        self.persistent = torch.zeros(B, r, dtype=torch.bool, device=self.device)
        self.base = torch.zeros(B, M, r, **f)
        self.demand = torch.zeros(B, M, r, **f)
        self.demand0 = torch.zeros(B, M, r, **f)
        self.consumer_pos = torch.zeros(B, M, 2, **f)
        self.radius = torch.zeros(B, M, **f)
        self.active = torch.ones(B, N, dtype=torch.bool, device=self.device)
        self.assignment = torch.full((B, N), -1, dtype=torch.long, device=self.device)
        self.contributed = torch.zeros(B, N, M, dtype=torch.bool, device=self.device)
        self.completed = torch.zeros(B, M, dtype=torch.bool, device=self.device)
        self.t = torch.zeros(B, dtype=torch.long, device=self.device)
        self.ep_return = torch.zeros(B, **f)
        self._pair_act: torch.Tensor | None = None  # `active` that self._pair_inf was built from
        self._pair_inf = torch.zeros(B, N, N, **f)
        self.reset()

    # ----------------------------------------------------------------------------------------
    # reset: randomised kinds, quantities, positions (Sec. IV)
    # ----------------------------------------------------------------------------------------

    def _ids(self, env_ids: torch.Tensor | None) -> torch.Tensor:
        if env_ids is None:
            return torch.arange(self.batch_size, device=self.device)
        ids = torch.as_tensor(env_ids, device=self.device)
        if ids.dtype == torch.bool:
            if ids.shape != (self.batch_size,):
                raise EnvConfigError(f"env_ids mask must have shape ({self.batch_size},)")
            return torch.nonzero(ids).squeeze(-1)
        ids = ids.long().reshape(-1)
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.batch_size):
            raise EnvConfigError(f"env_ids must lie in [0, {self.batch_size})")
        return ids

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen, device=self.device, dtype=self.dtype)

    def _spawn(self, K: int, count: int, sep: float) -> torch.Tensor:
        """``count`` points per env on distinct jittered grid cells, pairwise >= ``sep``."""
        lo = -1.0 + self.cfg.spawn_margin
        span = 2.0 - 2.0 * self.cfg.spawn_margin
        n = int(span // sep)
        cell = span / n
        cells = torch.argsort(self._rand(K, n * n), dim=-1)[:, :count]
        cx, cy = cells % n, cells // n
        centre = torch.stack([cx, cy], -1).to(self.dtype) * cell + lo + cell / 2
        jitter = (self._rand(K, count, 2) - 0.5) * (cell - sep)
        return centre + jitter

    def reset(self, env_ids: torch.Tensor | None = None) -> Obs:
        """Reset all envs or a subset (int64 indices or a (B,) bool mask); returns all B obs."""
        ids = self._ids(env_ids)
        if ids.numel():
            self._reset_ids(ids)
        return self.observe()

    def _reset_ids(self, ids: torch.Tensor) -> None:
        cfg = self.cfg
        K, N, M, r = ids.numel(), cfg.n_agents, cfg.n_consumers, cfg.n_resources
        dev = self.device
        # kinds kappa of the r types
        if cfg.resource_kinds == "mixed":
            alt = (torch.arange(r, device=dev) % 2 == 0).expand(K, r)
            perm = torch.argsort(self._rand(K, r), dim=-1)
            kinds = alt.gather(1, perm)
        elif cfg.resource_kinds == "random":
            kinds = self._rand(K, r) < 0.5
        else:
            kinds = torch.full((K, r), cfg.resource_kinds == "persistent", device=dev)
        # demanded types per consumer: random subset of size resources_per_consumer
        dem_mask = torch.argsort(self._rand(K, M, r), dim=-1) < cfg.resources_per_consumer
        # hidden partition of the agents among consumers (every consumer >= 1 agent)
        order = torch.argsort(self._rand(K, N), dim=-1)  # order[:, k] = k-th agent
        home_by_rank = torch.cat(
            [
                torch.arange(M, device=dev).expand(K, M),
                (self._rand(K, N - M) * M).long().clamp_max(M - 1),
            ],
            dim=1,
        )
        home = torch.empty_like(order).scatter_(1, order, home_by_rank)
        cand = dem_mask.gather(1, home[..., None].expand(K, N, r))  # (K, N, r)
        n_cand = cand.sum(-1)
        score = torch.where(cand, self._rand(K, N, r), 2.0)
        rank = torch.argsort(torch.argsort(score, dim=-1), dim=-1)
        cap = n_cand.clamp_max(cfg.max_resources_per_agent)
        n_carry = 1 + (self._rand(K, N) * cap).long().clamp_max(cap - 1)
        carry = cand & (rank < n_carry[..., None])
        # cover every demanded type of consumer m by its first agent order[:, m]
        onehot_home = torch.nn.functional.one_hot(home, M).to(self.dtype)  # (K, N, M)
        covered = (onehot_home.transpose(1, 2) @ carry.to(self.dtype)) > 0  # (K, M, r)
        missing = dem_mask & ~covered
        first = order[:, :M]  # (K, M) agent index of consumer m's first member
        carry = carry.clone()
        kk = torch.arange(K, device=dev)[:, None].expand(K, M)
        carry[kk, first] |= missing
        lo, hi = cfg.supply_range
        supply = (lo + (hi - lo) * self._rand(K, N, r)) * carry
        demand = (onehot_home.transpose(1, 2) @ supply) / cfg.supply_ratio
        # geometry
        pos = self._spawn(K, N, cfg.agent_spawn_separation)
        cpos = self._spawn(K, M, cfg.consumer_spawn_separation)
        rlo, rhi = cfg.consumer_radius
        radius = rlo + (rhi - rlo) * self._rand(K, M)

        self.pos[ids] = pos
        self.vel[ids] = 0.0
        self.supply[ids] = supply
        self.persistent[ids] = kinds
        self.base[ids] = demand
        self.demand0[ids] = demand
        self.consumer_pos[ids] = cpos
        self.radius[ids] = radius
        self.active[ids] = True
        self.contributed[ids] = False
        self.completed[ids] = False
        self.t[ids] = 0
        self.ep_return[ids] = 0.0
        # the demand seen at t = 0 already accounts for persistent coverage at the spawn points
        tgt = self._targets(ids)
        self.demand[ids] = self._persistent_view(ids, tgt)
        self.assignment[ids] = -1
        self._reassign(ids)

    # ----------------------------------------------------------------------------------------
    # delivery helpers
    # ----------------------------------------------------------------------------------------

    def _targets(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """(K, N) int64: the nearest consumer whose area R_m contains each active agent, M for
        none (:meth:`_nearest_inside`)."""
        sl = slice(None) if ids is None else ids
        pos, cpos, act = self.pos[sl], self.consumer_pos[sl], self.active[sl]
        dist = consumer_geometry(pos, cpos)[1].sqrt()
        return self._nearest_inside(dist, act, ids)[0]

    def _nearest_inside(
        self, dist: torch.Tensor, act: torch.Tensor, ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """From distances (K, N, M): the index of the nearest area containing each active agent
        (K, N), M where there is none ("target", the one-hot rows of the delivery are
        ``target[..., None] == arange(M)``); whether there is one (K, N); the nearest area's
        index (K, N) (first of ties, 0 where there is none) and ``dist <= R_m`` (K, N, M) as a
        0/1 float mask for every agent."""
        rad = self.radius if ids is None else self.radius[ids]
        inside = _mask(torch.le, dist, rad[:, None, :])
        # (1 / inside - 1) + dist: exactly dist where inside, +inf elsewhere (never NaN, whatever
        # R_m is), cheaper than a where() on CPU
        masked = torch.reciprocal(inside).sub_(1.0).add_(dist)
        dmin, nearest = masked.min(-1)  # first of ties, 0 if none
        has = (dmin < math.inf) & act
        target = torch.where(has, nearest, dist.shape[-1])
        return target, has, nearest, inside

    def _per_consumer(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(K, M, k) sums of agents' rows x (K, N, k) over the agents whose ``target`` is m.

        On CPU one scatter-add in agent order (row M collects the agents outside every area and
        is dropped): the same sums as the one-hot product target^T x, in about half its time.
        Elsewhere the product itself (a GPU scatter-add adds in a nondeterministic order).
        """
        K, N, k = x.shape
        M = self.cfg.n_consumers
        if x.device.type != "cpu":
            onehot = (target[..., None] == torch.arange(M, device=x.device)).to(x.dtype)
            return onehot.transpose(1, 2) @ x
        out = torch.zeros(K, M + 1, k, dtype=x.dtype, device=x.device)
        out.scatter_add_(1, target[..., None].expand(K, N, k), x)
        return out[:, :-1]

    def _persistent_view(self, ids: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        """Remaining demand de (K, M, r): persistent types net of the current coverage."""
        sl = slice(None) if ids is None else ids
        pers = self.persistent[sl][:, None, :]
        cover = self._per_consumer(self.supply[sl], target)  # (K, M, r)
        # instantaneous types: base - 0 * cover = base (>= 0, so the clamp keeps it)
        return (self.base[sl] - cover * pers).clamp_min(0.0)

    # ----------------------------------------------------------------------------------------
    # assignment (eq. 3)
    # ----------------------------------------------------------------------------------------

    def assignment_problem(
        self, ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(supply (K,N,r), demand (K,M,r), cost (K,N,M)) of eq. 3 for envs ``ids``.

        Supplies are the current ones of active agents (zero for inactive), demands are the
        requirements (instantaneous: still missing; persistent: the constant requirement, so
        that the assignment does not flip while agents enter and leave), costs use the current
        agent-to-consumer distances.
        """
        sl = slice(None) if ids is None else ids
        supply = self.supply[sl] * self.active[sl][..., None]
        demand = self.base[sl]
        dist = torch.cdist(self.pos[sl], self.consumer_pos[sl])
        return supply, demand, linear_costs(supply, demand, dist, self.cfg.assign_demand_floor)

    def _reassign(self, ids: torch.Tensor) -> None:
        mode = self.cfg.assignment
        if mode == "none" or ids.numel() == 0:
            return
        supply, demand, cost = self.assignment_problem(ids)
        active = self.active[ids]
        if mode == "exact":
            from lgtc_policy.env.assign import solve_assignment

            out = torch.full((ids.numel(), self.cfg.n_agents), -1, dtype=torch.long)
            so, de, c = (x.double().cpu().numpy() for x in (supply, demand, cost))
            act = active.cpu().numpy()
            for k in range(ids.numel()):
                idx = np.nonzero(act[k])[0]
                if idx.size == 0:
                    continue
                # 1 s cap per env: the best known assignment if the proof takes longer
                res = solve_assignment(so[k, idx], de[k], c[k, idx], time_limit=1.0)
                out[k, torch.as_tensor(idx)] = torch.as_tensor(res.assignment)
            self.assignment[ids] = out.to(self.device)
            return
        M = self.cfg.n_consumers
        start = torch.where(active, self.assignment[ids], -1)
        counts = (start[..., None] == torch.arange(M, device=self.device)).sum(1)  # (K, M)
        uncovered = (counts == 0).any(-1) & (active.sum(-1) >= M)
        need = ((start < 0) & active).any(-1) | uncovered
        init = start
        if bool(need.any()):
            init = torch.where(need[:, None], greedy_assignment(cost, active), start)
        # fresh envs (reset, or the old assignment no longer covers) get every restart; an
        # env whose supplies/demands changed a little keeps improving its warm start
        out = init.clone()
        for sel, restarts in ((need, self.cfg.assign_restarts), (~need, 1)):
            k = torch.nonzero(sel).squeeze(-1)
            if k.numel():
                out[k] = multistart_search(
                    init[k], supply[k], demand[k], cost[k], active[k], restarts
                )
        self.assignment[ids] = out

    # ----------------------------------------------------------------------------------------
    # step
    # ----------------------------------------------------------------------------------------

    def _check_actions(self, actions: Any) -> tuple[torch.Tensor, torch.Tensor]:
        B, N = self.batch_size, self.cfg.n_agents
        if not isinstance(actions, torch.Tensor):
            try:
                actions = torch.as_tensor(np.asarray(actions, dtype=np.float64))
            except (TypeError, ValueError) as exc:
                raise ActionError(f"actions must be a float tensor of shape ({B}, {N}, 2)") from exc
        if actions.shape != (B, N, 2):
            raise ActionError(
                f"actions has shape {tuple(actions.shape)}, expected ({B}, {N}, 2) "
                "(batch, agents, velocity/v_max)"
            )
        if not actions.is_floating_point():
            actions = actions.to(self.dtype)
        actions = actions.to(device=self.device, dtype=self.dtype)
        # the usual case: one sum (finite iff every action is, unless it overflows: then the
        # per-agent check below finds nothing), no per-agent work
        if bool(torch.isfinite(actions.sum())):
            n_bad = torch.zeros(B, dtype=torch.long, device=self.device)
        else:
            bad = ~torch.isfinite(actions).all(-1)
            n_bad = bad.sum(-1)
            if self.cfg.nan_actions == "raise" and bool(bad.any()):
                b, i = torch.nonzero(bad)[0].tolist()
                raise ActionError(
                    f"actions[{b}, {i}] = {actions[b, i].tolist()} is not finite; fix the "
                    "policy or set EnvConfig.nan_actions='zero' to replace it by 0 (hover)"
                )
            actions = torch.where(bad[..., None], 0.0, actions)
        u = actions.clamp(-1.0, 1.0)
        norm = u.norm(dim=-1, keepdim=True)
        u = u / norm.clamp_min(1.0)
        return u, n_bad

    def _pair_d2(self, pos: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """(B, N, N) squared pair distances d_ij^2 (``obs.pairwise_d2``), +inf outside the
        active pairs i != j. The mask is added (d + 0 = d exactly, d + inf = inf): a cached
        0 / +inf tensor, rebuilt only when ``active`` changes, costs a third of a ``where``."""
        if self._pair_act is None or not torch.equal(self._pair_act, act):
            self._pair_inf = torch.zeros(
                act.shape + act.shape[-1:], dtype=self.dtype, device=self.device
            )
            self._pair_inf.masked_fill_(~active_pairs(act), math.inf)
            self._pair_act = act.clone()
        d2 = pairwise_d2(pos)
        d2 += self._pair_inf
        return d2

    def _comm_graph(self, d2p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Adjacency (B, N, N) bool and S = D^-1 A (B, N, N) (``obs.comm_graph``: N_i within C,
        Remark 1) from the ``d2p`` of :meth:`_pair_d2`."""
        N = d2p.shape[-1]
        a = _mask(torch.le, d2p, self.cfg.comm_radius * self.cfg.comm_radius)
        adj = a.bool()
        # degrees as one (B N, N) x (N, 1) product: sums of 0/1 values are exact in any order
        deg = (a.view(-1, N) @ torch.ones(N, 1, dtype=self.dtype, device=self.device)).view(
            a.shape[:-1] + (1,)
        )
        return adj, a / deg.clamp_min(1.0)

    def step(self, actions: torch.Tensor) -> tuple[Obs, torch.Tensor, torch.Tensor, dict]:
        """Advance one dt (see spec.BatchedEnvProtocol.step and spec.INFO_KEYS).

        The phases are methods, called in this order: :meth:`_move` (motion and discharge
        events), :meth:`_release` (delivery), the terms of the reward of eq. (2)
        (:meth:`_served_terms`, :meth:`_collision_term`, :meth:`_complete_consumers`,
        :meth:`_progress_term`), its per-consumer split (:meth:`_reward_vector`), then
        :meth:`_advance_clock` and :meth:`_step_info`.
        """
        cfg = self.cfg
        u, n_bad = self._check_actions(actions)
        prev_pos = self.pos
        prev_demand = self.demand
        changed = self._move(u)
        pos, act = self.pos, self.active
        actf = act.to(self.dtype)
        # ---- delivery: each agent releases to the nearest consumer whose area contains it ----
        # agent-to-consumer offsets and distances, shared with rw_id and the observation
        rel_c, dc2 = consumer_geometry(pos, self.consumer_pos)  # (2, B, N, M), (B, N, M)
        dist = dc2.sqrt()
        target, has_b, nearest, inside = self._nearest_inside(dist, act)
        has_tgt = has_b.to(self.dtype)  # (B, N) 0/1
        tgt_idx = nearest[..., None].expand(-1, -1, self.cfg.n_resources)
        rel_i = self._release(target, has_tgt, tgt_idx)  # (B, N)
        released_any = rel_i > 0
        rel_rows = torch.nonzero(released_any.any(-1)).squeeze(-1)  # envs with a release
        changed[rel_rows] = True
        # ---- reward of eq. (2) ----
        dec_m = (prev_demand - self.demand).sum(-1)  # (B, M)
        rw_s, rw_is = self._served_terms(target, has_tgt, tgt_idx, released_any, actf)
        d2p, close, rw_ij = self._collision_term(pos, act)
        rw_im = cfg.w_instant * rel_i * has_tgt  # (B, N), released at the agent's target
        newly = self._complete_consumers(target, released_any, rel_rows)
        ac, rw_id = self._progress_term(prev_pos, dc2, act)
        rw_g = cfg.w_global * dec_m.sum(-1)[:, None] * actf  # (B, N)
        reward_vec, rw_rc = self._reward_vector(
            dec_m, actf, nearest, ac, (rw_im + rw_is, rw_id, rw_s + rw_ij), newly, rel_rows
        )
        terms = {
            "rw_g": rw_g,
            "rw_s": rw_s,
            "rw_ij": rw_ij,
            "rw_im": rw_im,
            "rw_rc": rw_rc,
            "rw_is": rw_is,
            "rw_id": rw_id,
        }
        reward = reward_vec.sum(-1)
        # ---- bookkeeping ----
        done = self._advance_clock(reward, changed)
        info = self._step_info(terms, reward_vec, close, d2p, n_bad)
        geometry = (rel_c, dist, inside, d2p)
        if cfg.auto_reset and bool(done.any()):
            info["final_obs"] = self._observe(geometry)
            self._reset_ids(torch.nonzero(done).squeeze(-1))
            geometry = None  # reset envs moved
        return self._observe(geometry), reward, done, info

    def _move(self, u: torch.Tensor) -> torch.Tensor:
        """Single-integrator motion at 20 Hz, clamped to Q = [-1, 1]^2, then the random
        discharge events (Fig. 5); updates pos, vel (supply, active); returns the (B,) envs
        whose supplies changed."""
        cfg = self.cfg
        act = self.active
        actf = act.to(self.dtype)
        prev_pos = self.pos
        vel = u * (cfg.v_max * actf[..., None])
        pos = (prev_pos + vel * cfg.dt).clamp(-1.0, 1.0)
        self.vel = (pos - prev_pos) / cfg.dt
        self.pos = pos
        changed = torch.zeros(self.batch_size, dtype=torch.bool, device=self.device)
        if cfg.discharge_rate > 0:
            p = 1.0 - math.exp(-cfg.discharge_rate * cfg.dt)
            holds = ((self.supply > 0) & self.persistent[:, None, :]).any(-1) & act
            if cfg.discharge_target == "alone":
                hit = self._alone_hits(holds, p)
            else:
                hit = holds & (self._rand(*act.shape) < p)
            if bool(hit.any()):
                self._apply_discharge(hit, cfg.discharge_level, cfg.deactivate_on_discharge)
                changed |= hit.any(-1)
        return changed

    def _alone_hits(self, holds: torch.Tensor, p: float) -> torch.Tensor:
        """(B, N) bool: ``discharge_target = "alone"``'s events of this step. With probability
        ``p`` per env, one agent (uniformly) among the ``holds`` agents that are the only
        active agent inside their consumer's area (:meth:`_targets`)."""
        M = self.cfg.n_consumers
        target = self._targets()  # (B, N), M where none
        count = torch.zeros(target.shape[0], M + 1, dtype=torch.long, device=self.device)
        count.scatter_add_(1, target, torch.ones_like(target))
        sole = holds & (target < M) & (count.gather(1, target) == 1)
        score = torch.where(sole, self._rand(*sole.shape), -1.0)
        pick = score.argmax(-1, keepdim=True)  # (B, 1)
        fire = sole.any(-1, keepdim=True) & (self._rand(sole.shape[0], 1) < p)
        hit = torch.zeros_like(sole)
        hit.scatter_(1, pick, fire)
        return hit

    def _release(
        self, target: torch.Tensor, has_tgt: torch.Tensor, tgt_idx: torch.Tensor
    ) -> torch.Tensor:
        """Each agent at a target releases its instantaneous supplies, shared out when the
        consumer needs less than is offered; updates supply, base and demand; returns the
        (B, N) amount each agent released."""
        pers = self.persistent  # (B, r)
        inst_f = (~pers).to(self.dtype)[:, None, :]  # (B, 1, r)
        offered = self.supply * inst_f * has_tgt[..., None]  # (B, N, r) instantaneous on offer
        total = self._per_consumer(offered, target)  # (B, M, r)
        released_total = torch.minimum(total, self.base * inst_f)
        frac = released_total / total.clamp_min(1e-30)  # 0 where nothing is offered
        release = offered * frac.gather(1, tgt_idx)  # (B, N, r) released by each agent
        supply = self.supply - release  # >= 0: release <= offered <= supply
        self.supply = supply * _mask(torch.ge, supply, _EPS_Q)  # zero below _EPS_Q
        self.base = self.base - self._per_consumer(release, target)
        self.base = torch.where(self.base < _EPS_Q, 0.0, self.base)
        self.demand = self._persistent_view(None, target)
        return release.sum(-1)

    def _served_terms(
        self,
        target: torch.Tensor,
        has_tgt: torch.Tensor,
        tgt_idx: torch.Tensor,
        released_any: torch.Tensor,
        actf: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """rw_s (all consumers served this step) and rw_is (delivering a persistent
        resource), both (B, N), after :meth:`_release`."""
        cfg = self.cfg
        base_at = self.base.gather(1, tgt_idx)  # (B, N, r) requirement where the agent is
        pers_f = self.persistent.to(self.dtype)[:, None, :]  # (B, 1, r)
        holds_p = _mask(torch.gt, self.supply, 0.0) * _mask(torch.gt, base_at, 0.0) * pers_f
        deliver_p = holds_p.amax(-1) * has_tgt  # (B, N) 0/1: delivering persistent
        releasing_i = released_any.to(self.dtype) + deliver_p
        releasing = self._per_consumer(releasing_i[..., None], target)[..., 0] > 0  # (B, M)
        served = releasing | (self.demand.sum(-1) <= 0)
        all_served = served.all(-1).to(self.dtype)  # (B,)
        rw_s = cfg.w_all_served * all_served[:, None] * actf  # (B, N)
        rw_is = cfg.w_persistent * deliver_p  # (B, N)
        return rw_s, rw_is

    def _collision_term(
        self, pos: torch.Tensor, act: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``d2p`` (B, N, N) of :meth:`_pair_d2`, ``close`` (B, N, N) 0/1 (closer than
        epsilon) and rw_ij (B, N)."""
        cfg = self.cfg
        d2p = self._pair_d2(pos, act)  # (B, N, N), +inf outside the active pairs i != j
        eps2 = cfg.epsilon**2
        close = _mask(torch.lt, d2p, eps2)  # (B, N, N) 0/1
        if cfg.collision_form == "hinge":  # eps^2 - d^2 where close, else <= 0 (or -inf)
            pen = (eps2 - d2p).clamp_min_(0.0)
        else:
            pen = torch.where(close.bool(), d2p, 0.0)
        rw_ij = -cfg.gamma_collision * pen.sum(-1)  # (B, N)
        return d2p, close, rw_ij

    def _complete_consumers(
        self, target: torch.Tensor, released_any: torch.Tensor, rel_rows: torch.Tensor
    ) -> torch.Tensor:
        """Record who contributed to which consumer and which consumers' instantaneous demands
        became met this step; returns ``newly`` (k, M) for the k envs ``rel_rows``."""
        M = self.cfg.n_consumers
        pers = self.persistent
        # a consumer's instantaneous demand can only become met in an env where something was
        # released this step (elsewhere base is unchanged and completion was recorded before)
        ar_m = torch.arange(M, device=self.device)
        self.contributed[rel_rows] |= released_any[rel_rows, :, None] & (
            target[rel_rows, :, None] == ar_m
        )
        inst = ~pers[rel_rows, None, :]
        inst_need = ((self.demand0[rel_rows] > 0) & inst).any(-1)  # (k, M)
        inst_left = ((self.base[rel_rows] > 0) & inst).any(-1)
        newly = inst_need & ~inst_left & ~self.completed[rel_rows]
        self.completed[rel_rows] |= newly
        return newly

    def _progress_term(
        self, prev_pos: torch.Tensor, dc2: torch.Tensor, act: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The clamped assignment ``ac`` (B, N) and rw_id (B, N): gamma_id inside R_{a_i},
        else the progress towards d_{a_i}; 0 for agents without an assignment."""
        cfg = self.cfg
        a = self.assignment
        has_a = (a >= 0) & act
        ac = a.clamp_min(0)
        ra = self.radius.gather(1, ac)
        dnow2 = dc2.gather(2, ac[..., None])[..., 0]  # ||p_i(t) - d_{a_i}||^2
        # ||p_i(t-1) - d_{a_i}||^2 per coordinate on (B, N) planes (cf. consumer_geometry)
        ddx = prev_pos[..., 0] - self.consumer_pos[..., 0].gather(1, ac)
        ddy = prev_pos[..., 1] - self.consumer_pos[..., 1].gather(1, ac)
        dprev2 = ddx * ddx
        dprev2 += ddy * ddy
        inside_a = dnow2 <= ra * ra
        rw_id = torch.where(inside_a, cfg.gamma_id, cfg.w_progress * (dprev2 - dnow2))
        rw_id = rw_id * has_a
        return ac, rw_id

    def _reward_vector(
        self,
        dec_m: torch.Tensor,
        actf: torch.Tensor,
        nearest: torch.Tensor,
        ac: torch.Tensor,
        parts: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        newly: torch.Tensor,
        rel_rows: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-consumer split (MAMOPPO) ``reward_vec`` (B, N, M) and rw_rc (B, N).

        ``parts`` = (rw_im + rw_is, rw_id, rw_s + rw_ij): rw_g goes where demand dropped,
        rw_im/rw_is to the agent's target, rw_rc to the completed consumer, rw_id to a_i, the
        global terms equally."""
        cfg = self.cfg
        M = cfg.n_consumers
        act = self.active
        at_target, rw_id, shared = parts
        reward_vec = (cfg.w_global * dec_m)[:, None, :] * actf[..., None]
        reward_vec.scatter_add_(2, nearest[..., None], at_target[..., None])
        # rw_rc: once, to the contributors, when a consumer's instantaneous demand is met
        rw_rc = torch.zeros_like(at_target)
        done_k = torch.nonzero(newly.any(-1)).squeeze(-1)  # the few envs where one completed
        if done_k.numel():
            rows = rel_rows[done_k]
            rc_b = self.contributed[rows] & newly[done_k, None, :] & act[rows, :, None]
            reward_vec[rows] += cfg.w_completion * rc_b.to(self.dtype)  # (k, N, M)
            rw_rc[rows] = cfg.w_completion * rc_b.sum(-1).to(self.dtype)
        reward_vec.scatter_add_(2, ac[..., None], rw_id[..., None])
        reward_vec += (shared / M)[..., None]
        return reward_vec, rw_rc

    def _advance_clock(self, reward: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
        """Count the step and the return, reassign the envs whose supplies changed; returns
        ``done`` (B,) (truncated or terminated)."""
        self.t = self.t + 1
        self.ep_return = self.ep_return + reward.sum(-1)
        if bool(changed.any()):
            self._reassign(torch.nonzero(changed).squeeze(-1))
        return (self.t >= self.cfg.episode_length) | ~self.active.any(-1)

    def _step_info(
        self,
        terms: dict[str, torch.Tensor],
        reward_vec: torch.Tensor,
        close: torch.Tensor,
        d2p: torch.Tensor,
        n_bad: torch.Tensor,
    ) -> dict[str, Any]:
        """The info dict of :meth:`step` (spec.INFO_KEYS), after :meth:`_advance_clock`."""
        d_pair = d2p.flatten(1).amin(-1).sqrt()
        return {
            "reward_terms": terms,
            "reward_vec": reward_vec,
            "terminated": ~self.active.any(-1),
            "truncated": self.t >= self.cfg.episode_length,
            "demand_satisfied": self.demand_satisfied(),
            "collisions": close.flatten(1).sum(-1).long() // 2,  # exact: sums of 0/1
            "min_distance": d_pair,
            "nan_actions": n_bad,
            "episode_return": self.ep_return.clone(),
            "episode_step": self.t.clone(),
        }

    # ----------------------------------------------------------------------------------------
    # events, queries
    # ----------------------------------------------------------------------------------------

    def _apply_discharge(self, hit: torch.Tensor, level: float, deactivate: bool) -> None:
        keep = torch.where(self.persistent[:, None, :] & hit[..., None], level, 1.0)
        self.supply = self.supply * keep
        if deactivate:
            self.active = self.active & ~hit
            self.vel = self.vel * self.active[..., None]

    def discharge(
        self,
        env_ids: torch.Tensor,
        agent_ids: torch.Tensor,
        level: float = 0.0,
        deactivate: bool = True,
    ) -> None:
        """Scripted discharge (Fig. 5): agents keep ``level`` of their persistent supplies and
        land (become inactive) if ``deactivate``; the assignment is recomputed."""
        if not 0.0 <= level <= 1.0:
            raise EnvConfigError(f"discharge level={level!r}: must be a fraction in [0, 1]")
        e = torch.as_tensor(env_ids, device=self.device).long().reshape(-1)
        i = torch.as_tensor(agent_ids, device=self.device).long().reshape(-1)
        if e.shape != i.shape:
            raise EnvConfigError("env_ids and agent_ids must have the same length")
        if e.numel() and (
            e.min() < 0 or e.max() >= self.batch_size or i.min() < 0 or i.max() >= self.cfg.n_agents
        ):
            raise EnvConfigError("discharge: env_ids/agent_ids out of range")
        hit = torch.zeros_like(self.active)
        hit[e, i] = True
        self._apply_discharge(hit, level, deactivate)
        self.demand = self._persistent_view(None, self._targets())
        self._reassign(torch.unique(e))

    def set_state(
        self,
        env_ids: torch.Tensor | list[int] | int,
        *,
        pos: Any = None,
        supply: Any = None,
        persistent: Any = None,
        demand: Any = None,
        consumer_pos: Any = None,
        radius: Any = None,
        active: Any = None,
        assignment: Any = None,
    ) -> Obs:
        """Overwrite the state of envs ``env_ids`` (scenarios, tests, the ROS node's world).

        Each given array is broadcast to the envs' slice: pos (K, N, 2), supply (K, N, r),
        persistent (K, r) bool, demand (K, M, r) (becomes the requirement and de(0)),
        consumer_pos (K, M, 2), radius (K, M), active (K, N) bool, assignment (K, N) int64.
        The episode restarts at t = 0 (completion/contribution records cleared); the assignment
        is recomputed unless given. Returns the observation of all envs.
        """
        ids = self._ids(torch.as_tensor(env_ids).reshape(-1))
        fields_ = {
            "pos": (pos, self.pos),
            "supply": (supply, self.supply),
            "persistent": (persistent, self.persistent),
            "base": (demand, self.base),
            "consumer_pos": (consumer_pos, self.consumer_pos),
            "radius": (radius, self.radius),
            "active": (active, self.active),
            "assignment": (assignment, self.assignment),
        }
        # every field is checked before anything is written: a rejected call leaves the env
        # exactly as it was
        new: dict[str, torch.Tensor] = {}
        for name, (value, dest) in fields_.items():
            if value is None:
                continue
            arg = "demand" if name == "base" else name  # the caller's argument
            v = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
            v = v.to(device=self.device, dtype=dest.dtype)
            try:
                new[name] = v.expand_as(dest[ids]).clone()  # v may be a view of the state
            except RuntimeError as exc:
                raise EnvConfigError(
                    f"set_state: {arg} has shape {tuple(v.shape)}, expected "
                    f"{tuple(dest[ids].shape)} (or broadcastable)"
                ) from exc
            if name in ("pos", "supply", "base", "radius", "consumer_pos") and not bool(
                torch.isfinite(new[name]).all()
            ):
                raise EnvConfigError(f"set_state: {arg} contains NaN/inf")
        for name in ("supply", "base"):
            if name in new and bool((new[name] < 0).any()):
                raise EnvConfigError("set_state: supplies and demands must be >= 0")
        if "radius" in new and bool((new["radius"] <= 0).any()):
            raise EnvConfigError(
                "set_state: radius (the interaction radius R_m of each consumer) must be > 0"
            )
        for name, v in new.items():
            fields_[name][1][ids] = v
        if demand is not None:
            self.demand0[ids] = self.base[ids]
        self.pos[ids] = self.pos[ids].clamp(-1.0, 1.0)
        self.vel[ids] = 0.0
        self.t[ids] = 0
        self.ep_return[ids] = 0.0
        self.contributed[ids] = False
        self.completed[ids] = False
        self.assignment[ids] = torch.where(self.active[ids], self.assignment[ids], -1)
        self.demand[ids] = self._persistent_view(ids, self._targets(ids))
        if assignment is None:
            self.assignment[ids] = -1
            self._reassign(ids)
        return self.observe()

    def load_scenario(
        self,
        env_ids: torch.Tensor | list[int] | int,
        *,
        pos: Any,
        supply: Any,
        persistent: Any,
        consumer_pos: Any,
        radius: Any,
        demand: Any,
        active: Any = True,
    ) -> Obs:
        """Put a complete, fixed world into envs ``env_ids`` (missions, replays, benchmarks).

        The public way to load a scenario: every field of the world is required (``set_state``
        overwrites only what it is given), each broadcast to the envs' slice: pos (K, N, 2)
        [normalised, clamped to Q], supply (K, N, r) so_i, persistent (K, r) bool kind of each
        type, consumer_pos (K, M, 2) d_m, radius (K, M) R_m, demand (K, M, r) the requirement
        de(0), active (K, N) bool (default: every agent). The episode restarts at t = 0, the
        remaining demand is net of the persistent coverage at the start positions and the
        assignment of eq. 3 is recomputed (``EnvConfig.assignment``). Raises
        ``EnvConfigError`` naming the field on a wrong shape, NaN/inf or a negative quantity.
        Returns the observation of all envs.
        """
        return self.set_state(
            env_ids,
            pos=pos,
            supply=supply,
            persistent=persistent,
            demand=demand,
            consumer_pos=consumer_pos,
            radius=radius,
            active=active,
        )

    def serving(self) -> torch.Tensor:
        """(B, N) int64: the consumer whose interaction area holds each active agent (the
        nearest on overlap, as the delivery rule), -1 for none (the simulator's ``serving``)."""
        target = self._targets()
        return torch.where(target < self.cfg.n_consumers, target, -1)

    def demand_satisfied(self) -> torch.Tensor:
        """(B,) 1 - sum(de(t)) / sum(de(0))."""
        tot0 = self.demand0.flatten(1).sum(-1)
        return 1.0 - self.demand.flatten(1).sum(-1) / tot0.clamp_min(1e-12)

    def observe(self) -> Obs:
        """Observation of the current state (spec.Obs), built with ``agent_observation``."""
        return self._observe(None)

    def _observe(self, geometry: tuple[torch.Tensor, ...] | None) -> Obs:
        """``observe`` reusing the step's (rel_c, dist, inside, d2p) of the current positions
        (inside: dist <= R_m; d2p: from :meth:`_pair_d2`)."""
        if geometry is None:
            rel_c, dc2 = consumer_geometry(self.pos, self.consumer_pos)
            d2p = self._pair_d2(self.pos, self.active)
            dist = dc2.sqrt_()
            inside = _mask(torch.le, dist, self.radius[:, None, :])
        else:
            rel_c, dist, inside, d2p = geometry
        z = agent_observation(
            self.pos,
            self.vel,
            self.supply,
            self.persistent[:, None, :].to(self.dtype),
            self.consumer_pos[:, None],
            self.radius[:, None],
            self.demand[:, None],
            self.cfg.v_max,
            geometry=(rel_c, dist, inside),
        )
        adj, S = self._comm_graph(d2p)
        return Obs(
            self_feat=z["self_feat"],
            agent_res=z["agent_res"],
            consumer_feat=z["consumer_feat"],
            consumer_res=z["consumer_res"],
            consumer_mask=z["consumer_mask"],
            adjacency=adj,
            S=S,
            pos=self.pos,
            vel=self.vel,
            active=self.active,
            assignment=self.assignment,
            consumer_pos=self.consumer_pos,
            demand=self.demand,
        )

    def global_state(self) -> torch.Tensor:
        """(B, D) privileged flat state for centralised critics/mixers."""
        B = self.batch_size
        return torch.cat(
            [
                self.pos.reshape(B, -1),
                (self.vel / self.cfg.v_max).reshape(B, -1),
                self.supply.reshape(B, -1),
                self.persistent.to(self.dtype),
                self.consumer_pos.reshape(B, -1),
                self.radius,
                self.demand.reshape(B, -1),
                self.active.to(self.dtype),
            ],
            dim=-1,
        )
