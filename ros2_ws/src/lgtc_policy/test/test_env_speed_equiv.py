"""The speed-optimised batched step equals a straightforward reference, step by step.

``ReferenceEnv`` is the world's step written the plain way, as it was before the step was
optimised for throughput (commit 15b2769): per-consumer sums as one-hot matrix products
target^T x, masks with ``torch.where``, the nearest area by ``where(inside, dist, inf).min``,
the pair distances masked with ``where(active_pairs, ., inf)``, the comm graph from
``obs.comm_graph`` and the observation rebuilt from scratch by ``agent_observation``. Seeded
rollouts of both, fed the same actions, must give the same observations, rewards (every term
of eq. 2 and the per-consumer split), dones, ``info`` entries, final observations and state
(supplies, demands, assignment, active set, completion records), through random and scripted
discharges, inactive agents, NaN actions, subset resets (indices and masks), auto-resets,
``set_state`` and both kinds of resources. Floats must agree to 1e-6 (they agree bit for bit
today; the tolerance leaves room for float32 re-association only), integers and masks exactly.
The helpers the fast step is built from are also checked on random inputs, with ties and
overlapping areas, against the plain formulas.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lgtc_policy.env import EnvConfig, Obs, ResourceEnv, agent_observation, comm_graph
from lgtc_policy.env.obs import active_pairs, consumer_geometry, pairwise_d2
from lgtc_policy.env.spec import ActionError

_EPS_Q = 1e-6


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: one intra-op thread (on a loaded 2-core machine OpenMP's barriers made
    these rollouts several times slower), restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class ReferenceEnv(ResourceEnv):
    """ResourceEnv with the straightforward step, delivery views and observation."""

    def _nearest_ref(
        self, dist: torch.Tensor, act: torch.Tensor, rad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        inside = dist <= rad[:, None, :]
        dmin, nearest = torch.where(inside, dist, math.inf).min(-1)  # first of ties
        has = (dmin < math.inf) & act
        tgt = (nearest[..., None] == torch.arange(dist.shape[-1])) & has[..., None]
        return tgt, has, nearest, inside

    def _targets(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        sl = slice(None) if ids is None else ids
        dist = consumer_geometry(self.pos[sl], self.consumer_pos[sl])[1].sqrt()
        return self._nearest_ref(dist, self.active[sl], self.radius[sl])[0].to(self.dtype)

    def _persistent_view(self, ids: torch.Tensor | None, tgt: torch.Tensor) -> torch.Tensor:
        sl = slice(None) if ids is None else ids
        cover = tgt.transpose(1, 2) @ self.supply[sl]
        pers = self.persistent[sl][:, None, :]
        return torch.where(pers, (self.base[sl] - cover).clamp_min(0.0), self.base[sl])

    def _check_actions(self, actions: Any) -> tuple[torch.Tensor, torch.Tensor]:
        actions = torch.as_tensor(actions).to(self.dtype)
        bad = ~torch.isfinite(actions).all(-1)
        if self.cfg.nan_actions == "raise" and bool(bad.any()):
            raise ActionError("not finite")
        u = torch.where(bad[..., None], 0.0, actions).clamp(-1.0, 1.0)
        return u / u.norm(dim=-1, keepdim=True).clamp_min(1.0), bad.sum(-1)

    def _observe(self, geometry: Any) -> Obs:
        z = agent_observation(
            self.pos,
            self.vel,
            self.supply,
            self.persistent[:, None, :].to(self.dtype),
            self.consumer_pos[:, None],
            self.radius[:, None],
            self.demand[:, None],
            self.cfg.v_max,
        )
        adj, S = comm_graph(self.pos, self.active, self.cfg.comm_radius)
        return Obs(
            **z,
            adjacency=adj,
            S=S,
            pos=self.pos,
            vel=self.vel,
            active=self.active,
            assignment=self.assignment,
            consumer_pos=self.consumer_pos,
            demand=self.demand,
        )

    def step(self, actions: torch.Tensor) -> tuple[Obs, torch.Tensor, torch.Tensor, dict]:
        cfg, M, f = self.cfg, self.cfg.n_consumers, self.dtype
        u, n_bad = self._check_actions(actions)
        act = self.active
        actf = act.to(f)
        prev_pos, prev_demand = self.pos, self.demand
        self.pos = (prev_pos + u * (cfg.v_max * actf[..., None]) * cfg.dt).clamp(-1.0, 1.0)
        self.vel = (self.pos - prev_pos) / cfg.dt
        changed = torch.zeros(self.batch_size, dtype=torch.bool)
        if cfg.discharge_rate > 0:
            p = 1.0 - math.exp(-cfg.discharge_rate * cfg.dt)
            holds = ((self.supply > 0) & self.persistent[:, None, :]).any(-1) & act
            hit = holds & (self._rand(*act.shape) < p)
            if bool(hit.any()):
                self._apply_discharge(hit, cfg.discharge_level, cfg.deactivate_on_discharge)
                changed |= hit.any(-1)
                act = self.active
                actf = act.to(f)
        dc2 = consumer_geometry(self.pos, self.consumer_pos)[1]
        tgt_b, has_b, nearest, _ = self._nearest_ref(dc2.sqrt(), act, self.radius)
        tgt, has_tgt = tgt_b.to(f), has_b.to(f)
        tgt_t = tgt.transpose(1, 2)
        tgt_idx = nearest[..., None].expand(-1, -1, cfg.n_resources)
        pers = self.persistent
        inst_f = (~pers).to(f)[:, None, :]
        offered = self.supply * inst_f * has_tgt[..., None]
        total = tgt_t @ offered
        frac = torch.minimum(total, self.base * inst_f) / total.clamp_min(1e-30)
        release = offered * frac.gather(1, tgt_idx)
        self.supply = self.supply - release
        self.supply = torch.where(self.supply < _EPS_Q, 0.0, self.supply)
        self.base = self.base - tgt_t @ release
        self.base = torch.where(self.base < _EPS_Q, 0.0, self.base)
        rel_i = release.sum(-1)
        released_any = rel_i > 0
        changed |= released_any.any(-1)
        self.demand = self._persistent_view(None, tgt)
        dec_m = (prev_demand - self.demand).sum(-1)
        base_at = self.base.gather(1, tgt_idx)
        holds_p = (self.supply > 0) & (base_at > 0) & pers[:, None, :]
        deliver_p = holds_p.any(-1).to(f) * has_tgt
        releasing = (tgt_t @ (released_any.to(f) + deliver_p)[..., None])[..., 0] > 0
        served = releasing | (self.demand.sum(-1) <= 0)
        rw_s = cfg.w_all_served * served.all(-1).to(f)[:, None] * actf
        d2 = pairwise_d2(self.pos)
        d2p = torch.where(active_pairs(act), d2, math.inf)
        close = d2p < cfg.epsilon**2
        pen = cfg.epsilon**2 - d2 if cfg.collision_form == "hinge" else d2
        rw_ij = -cfg.gamma_collision * torch.where(close, pen, 0.0).sum(-1)
        rw_im = cfg.w_instant * rel_i * has_tgt
        self.contributed |= released_any[..., None] & tgt_b
        inst = ~pers[:, None, :]
        inst_need = ((self.demand0 > 0) & inst).any(-1)
        inst_left = ((self.base > 0) & inst).any(-1)
        # completion is only checked in envs where something was released this step
        newly = inst_need & ~inst_left & ~self.completed & released_any.any(-1)[:, None]
        self.completed |= newly
        rw_is = cfg.w_persistent * deliver_p
        a = self.assignment
        ac = a.clamp_min(0)
        da = self.consumer_pos.gather(1, ac[..., None].expand(-1, -1, 2))
        dnow2 = dc2.gather(2, ac[..., None])[..., 0]
        dprev2 = ((prev_pos - da) ** 2).sum(-1)
        ra = self.radius.gather(1, ac)
        rw_id = torch.where(dnow2 <= ra * ra, cfg.gamma_id, cfg.w_progress * (dprev2 - dnow2))
        rw_id = rw_id * ((a >= 0) & act)
        rw_g = cfg.w_global * dec_m.sum(-1)[:, None] * actf
        rc_b = self.contributed & newly[:, None, :] & act[..., None]
        rw_rc = cfg.w_completion * rc_b.sum(-1).to(f)
        reward_vec = (cfg.w_global * dec_m)[:, None, :] * actf[..., None]
        reward_vec.scatter_add_(2, nearest[..., None], (rw_im + rw_is)[..., None])
        reward_vec += cfg.w_completion * rc_b.to(f)
        reward_vec.scatter_add_(2, ac[..., None], rw_id[..., None])
        reward_vec += ((rw_s + rw_ij) / M)[..., None]
        terms = dict(zip(("rw_g", "rw_s", "rw_ij", "rw_im", "rw_rc", "rw_is", "rw_id"), (
            rw_g, rw_s, rw_ij, rw_im, rw_rc, rw_is, rw_id)))  # fmt: skip
        reward = reward_vec.sum(-1)
        self.t = self.t + 1
        self.ep_return = self.ep_return + reward.sum(-1)
        if bool(changed.any()):
            self._reassign(torch.nonzero(changed).squeeze(-1))
        truncated = self.t >= cfg.episode_length
        terminated = ~self.active.any(-1)
        done = truncated | terminated
        info: dict[str, Any] = {
            "reward_terms": terms,
            "reward_vec": reward_vec,
            "terminated": terminated,
            "truncated": truncated,
            "demand_satisfied": self.demand_satisfied(),
            "collisions": close.flatten(1).sum(-1) // 2,
            "min_distance": d2p.flatten(1).amin(-1).sqrt(),
            "nan_actions": n_bad,
            "episode_return": self.ep_return.clone(),
            "episode_step": self.t.clone(),
        }
        if cfg.auto_reset and bool(done.any()):
            info["final_obs"] = self.observe()
            self._reset_ids(torch.nonzero(done).squeeze(-1))
        return self.observe(), reward, done, info


OBS_FIELDS = tuple(Obs.__dataclass_fields__)
STATE = ("pos", "vel", "supply", "base", "demand", "active", "assignment", "completed")


def _same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype, what
    if a.is_floating_point():
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=lambda m: f"{what}: {m}")
    else:
        assert torch.equal(a, b), what


def _same_obs(a: Obs, b: Obs, what: str) -> None:
    for k in OBS_FIELDS:
        _same(getattr(a, k), getattr(b, k), f"{what}.{k}")


def _policy(env: ResourceEnv, gen: torch.Generator) -> torch.Tensor:
    """Mostly steer toward the assigned consumer (deliveries, completions, crowding), with
    seeded noise; some agents wander."""
    M = env.cfg.n_consumers
    a = env.assignment
    tgt = torch.where(a >= 0, a, torch.arange(env.cfg.n_agents).expand_as(a) % M)
    d = env.consumer_pos.gather(1, tgt[..., None].expand(-1, -1, 2))
    noise = torch.rand(env.pos.shape, generator=gen, dtype=torch.float64) * 2 - 1
    steer = torch.rand(env.pos.shape[:2], generator=gen, dtype=torch.float64)[..., None] < 0.7
    return torch.where(steer, 4.0 * (d - env.pos).double() + 0.4 * noise, 1.5 * noise)


CONFIGS = {
    "default_discharge": {"discharge_rate": 0.4, "episode_length": 45},
    "persistent": {"resource_kinds": "persistent", "discharge_rate": 0.6, "episode_length": 70},
    "instantaneous": {"resource_kinds": "instantaneous", "n_agents": 8, "n_consumers": 3},
    "random_r3_keep_nan_paper": {
        "resource_kinds": "random",
        "n_resources": 3,
        "discharge_rate": 0.5,
        "discharge_level": 0.5,
        "deactivate_on_discharge": False,
        "nan_actions": "zero",
        "collision_form": "paper",
        "episode_length": 40,
    },
    "none_float64": {"assignment": "none", "dtype": "float64", "discharge_rate": 0.3},
    "exact_small": {"assignment": "exact", "n_agents": 5, "n_consumers": 2, "episode_length": 35},
    "large_no_autoreset": {
        "n_agents": 14,
        "n_consumers": 5,
        "auto_reset": False,
        "discharge_rate": 0.2,
        "v_max": 1.0,
    },
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_rollout_equals_the_straightforward_step(name):
    cfg = EnvConfig(**CONFIGS[name])
    B, T = 12, 90
    fast, ref = ResourceEnv(cfg, B, seed=5), ReferenceEnv(cfg, B, seed=5)
    _same_obs(fast.observe(), ref.observe(), "reset")
    gen = torch.Generator().manual_seed(9)
    for t in range(T):
        if t == 8:  # scripted discharge (Fig. 5), one agent twice
            e, i = torch.tensor([1, 1, 3, 4]), torch.tensor([2, 5, 0, 2]) % cfg.n_agents
            fast.discharge(e, i, level=0.2)
            ref.discharge(e, i, level=0.2)
        if t == 25:
            _same_obs(
                fast.reset(torch.tensor([0, 2, 7])), ref.reset(torch.tensor([0, 2, 7])), "ids"
            )
        if t == 40:
            mask = torch.arange(B) >= B // 2
            _same_obs(fast.reset(mask), ref.reset(mask), "mask reset")
        if t == 55:  # a hand-placed world: env 0 gets env 1's positions
            kw = {"pos": fast.pos[1].clone(), "consumer_pos": fast.consumer_pos[1].clone()}
            _same_obs(fast.set_state([0], **kw), ref.set_state([0], **kw), "set_state")
        u = _policy(fast, gen)
        if cfg.nan_actions == "zero" and t % 7 == 3:
            u[t % B, t % cfg.n_agents] = float("nan")
        o1, r1, d1, i1 = fast.step(u)
        o2, r2, d2, i2 = ref.step(u)
        where = f"{name} step {t}"
        _same_obs(o1, o2, where)
        _same(r1, r2, f"{where} reward")
        _same(d1, d2, f"{where} done")
        assert i1.keys() == i2.keys(), where
        for k in i1:
            if k == "reward_terms":
                for term in i1[k]:
                    _same(i1[k][term], i2[k][term], f"{where} {term}")
            elif k == "final_obs":
                _same_obs(i1[k], i2[k], f"{where} final_obs")
            else:
                _same(i1[k], i2[k], f"{where} info[{k}]")
        for k in STATE:
            _same(getattr(fast, k), getattr(ref, k), f"{where} state.{k}")
        _same(fast.contributed, ref.contributed, f"{where} contributed")


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 12), st.integers(1, 4), st.integers(0, 10_000))
def test_per_consumer_sums_equal_the_one_hot_product(M, N, k, seed):
    env = ResourceEnv(EnvConfig(n_agents=max(N, M), n_consumers=M), 1, seed=0)
    g = torch.Generator().manual_seed(seed)
    K = 7
    x = torch.rand(K, N, k, generator=g) * torch.randint(0, 1000, (K, N, k), generator=g)
    target = torch.randint(0, M + 1, (K, N), generator=g)  # M = outside every area
    onehot = (target[..., None] == torch.arange(M)).to(x.dtype)
    assert torch.equal(env._per_consumer(x, target), onehot.transpose(1, 2) @ x)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 8), st.integers(0, 10_000), st.booleans())
def test_nearest_area_equals_a_loop_with_ties_and_overlaps(M, N, seed, on_grid):
    """Overlapping areas, consumers at the same spot (exact ties) and agents exactly on a rim."""
    env = ResourceEnv(EnvConfig(n_agents=max(N, M), n_consumers=M), 3, seed=0)
    rng = np.random.default_rng(seed)
    K = 3
    grid = np.linspace(-0.5, 0.5, 5)
    cpos = rng.choice(grid, (K, M, 2)) if on_grid else rng.uniform(-0.5, 0.5, (K, M, 2))
    pos = rng.choice(grid, (K, N, 2)) if on_grid else rng.uniform(-0.6, 0.6, (K, N, 2))
    rad = rng.choice([0.25, 0.5, 0.3, 0.0, -0.1], (K, M))  # R = 0 and R < 0 too: no NaN
    act = rng.random((K, N)) < 0.8
    env.radius = torch.as_tensor(rad, dtype=torch.float32)
    dist = consumer_geometry(torch.as_tensor(pos).float(), torch.as_tensor(cpos).float())[1]
    dist = dist.sqrt()
    target, has, nearest, inside = env._nearest_inside(dist, torch.as_tensor(act))
    d = dist.numpy()
    for b in range(K):
        for i in range(N):
            ins = [m for m in range(M) if d[b, i, m] <= env.radius[b, m].item()]
            best = min(ins, key=lambda m: (d[b, i, m], m)) if ins else None
            assert inside[b, i].tolist() == [m in ins for m in range(M)]
            assert has[b, i].item() == (best is not None and act[b, i])
            assert nearest[b, i].item() == (0 if best is None else best)
            assert target[b, i].item() == (best if has[b, i] else M)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(0, 10_000), st.sampled_from([0.3, 1.0]))
def test_pair_distances_and_comm_graph_equal_the_plain_formulas(N, seed, C):
    B = 4
    env = ResourceEnv(EnvConfig(n_agents=N, n_consumers=1, comm_radius=C), B, seed=0)
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(B, N, 2, generator=g) * 2 - 1
    pos[:, : N // 2] = torch.round(pos[:, : N // 2] * 4) / 4  # coincident agents, exact ties
    act = torch.rand(B, N, generator=g) < 0.75
    d2p = env._pair_d2(pos, act)
    assert torch.equal(d2p, torch.where(active_pairs(act), pairwise_d2(pos), math.inf))
    adj, S = env._comm_graph(d2p)
    adj_ref, S_ref = comm_graph(pos, act, C)
    assert torch.equal(adj, adj_ref) and torch.equal(S, S_ref)
    act2 = act.clone()
    act2[0] = ~act2[0]  # the cached pair mask follows a change of the active set
    assert torch.equal(
        env._pair_d2(pos, act2), torch.where(active_pairs(act2), pairwise_d2(pos), math.inf)
    )


def test_huge_finite_actions_are_clipped_like_small_ones():
    """The one-sum finiteness check overflows on huge finite actions: they are still clipped
    to unit norm (not rejected, not counted as NaN), exactly as the reference does."""
    cfg = EnvConfig(n_agents=4, n_consumers=2)
    fast, ref = ResourceEnv(cfg, 3, seed=1), ReferenceEnv(cfg, 3, seed=1)
    u = torch.full((3, 4, 2), 3.0e38)
    u[1] = -3.0e38
    _, r1, _, i1 = fast.step(u)
    _, r2, _, i2 = ref.step(u)
    assert torch.equal(r1, r2) and torch.equal(fast.pos, ref.pos)
    assert i1["nan_actions"].tolist() == [0, 0, 0]
    u[2, 3, 0] = float("nan")
    with pytest.raises(ActionError):
        fast.step(u)
