"""Seeded rollouts of the batched world against a stored record (semantics regression guard).

The record ``data/env_regression.npz`` was computed by the env of commit 4c44714 (the
version the shipped checkpoint and the sim-vs-env tests were built on), before the env was
optimised for speed. Every later version must reproduce it: observations, rewards, dones and
every ``info`` entry, step by step. The state (positions, velocities, supplies, demands, active
set, assignment), the rewards, the seven reward terms, the dones and the per-env ``info``
entries are stored in full and must agree to 1e-5 (relative and absolute). The observation
fields (functions of that state, checked element by element against a naive build in
``test_env_obs.py``), ``reward_vec`` and ``final_obs`` are stored compactly as two weighted sums
per step (``_digest``): a signed one with fixed pseudo-random weights and one of absolute values,
which must agree to 1e-5 of the values' scale. A failure names the config, the step and the
field.

The rollouts cover the default config, discharges with random kinds and NaN actions, eq. 3's
exact oracle with the paper's collision form, float64 without an assignment, a scripted
discharge, ``set_state`` and auto-resets (short episodes). Actions steer agents toward their
assigned consumer with seeded noise, so deliveries, completions and collisions happen.

Regenerate (only for an intended, announced semantics change)::

    python ros2_ws/src/lgtc_policy/test/test_env_regression.py --write
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lgtc_policy.env import EnvConfig, ResourceEnv

DATA = Path(__file__).parent / "data" / "env_regression.npz"
RTOL = 1e-5
OBS_FIELDS = (
    "self_feat",
    "agent_res",
    "consumer_feat",
    "consumer_res",
    "consumer_mask",
    "adjacency",
    "S",
    "pos",
    "vel",
    "active",
    "assignment",
    "consumer_pos",
    "demand",
)
INFO_FIELDS = (
    "terminated",
    "truncated",
    "demand_satisfied",
    "collisions",
    "min_distance",
    "nan_actions",
    "episode_return",
    "episode_step",
)

# name: (EnvConfig kwargs, batch size, steps, env seed)
CONFIGS: dict[str, tuple[dict, int, int, int]] = {
    "default": ({"episode_length": 30}, 4, 70, 1),
    "discharge_random_nan": (
        {
            "discharge_rate": 0.8,
            "resource_kinds": "random",
            "n_resources": 3,
            "episode_length": 20,
            "nan_actions": "zero",
            "v_max": 1.5,
        },
        3,
        50,
        2,
    ),
    "exact_paper_collisions": (
        {
            "n_agents": 6,
            "n_consumers": 3,
            "assignment": "exact",
            "collision_form": "paper",
            "episode_length": 25,
            "v_max": 1.5,
            "epsilon": 0.11,
        },
        3,
        40,
        3,
    ),
    "none_float64_persistent": (
        {
            "assignment": "none",
            "dtype": "float64",
            "resource_kinds": "persistent",
            "episode_length": 40,
            "v_max": 1.0,
        },
        2,
        45,
        4,
    ),
}


def _policy(env: ResourceEnv, gen: torch.Generator) -> torch.Tensor:
    """Steer toward the assigned consumer (agent i % M without one), with seeded noise."""
    M = env.cfg.n_consumers
    a = env.assignment
    fallback = torch.arange(env.cfg.n_agents).expand_as(a) % M
    tgt = torch.where(a >= 0, a, fallback)
    d = env.consumer_pos.gather(1, tgt[..., None].expand(-1, -1, 2))
    noise = torch.rand(env.pos.shape, generator=gen, dtype=torch.float64) * 2 - 1
    return (4.0 * (d - env.pos).double() + 0.4 * noise).clamp(-1, 1)


def _weights(n: int, k: int) -> np.ndarray:
    i = np.arange(n, dtype=np.float64)
    return np.sin(1.618 * i + 0.7 * k + 0.3) + 0.5 * np.cos(0.377 * i * (k + 1))


def _digest(x: torch.Tensor) -> np.ndarray:
    """(3,) signed weighted sum, sum of |x| and the sum of |w| |x| (the tolerance scale)."""
    v = x.detach().double().cpu().numpy().reshape(-1)
    v = np.where(np.isfinite(v), v, 1234.5)  # min_distance is inf with < 2 active agents
    w = _weights(v.size, 0)
    return np.array([w @ v, np.abs(v).sum(), np.abs(w) @ np.abs(v)])


def _rollout(name: str) -> dict[str, np.ndarray]:
    """Digests (T, 3) of every recorded field of config ``name``'s rollout."""
    kw, B, T, seed = CONFIGS[name]
    env = ResourceEnv(EnvConfig(**kw), batch_size=B, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    rec: dict[str, list[np.ndarray]] = {}

    def put(key: str, x: torch.Tensor) -> None:
        rec.setdefault(key, []).append(_digest(x))

    def full(key: str, x: torch.Tensor) -> None:
        v = x.detach().double().cpu().numpy()
        rec.setdefault(f"full.{key}", []).append(np.where(np.isfinite(v), v, 1234.5))

    def put_obs(prefix: str, obs) -> None:
        for f in OBS_FIELDS:
            put(f"{prefix}{f}", getattr(obs, f))

    put_obs("reset.", env.reset())
    for t in range(T):
        if name == "default" and t == 12:  # scripted discharge (Fig. 5), then reallocation
            env.discharge(torch.tensor([1, 1, 3]), torch.tensor([2, 5, 0]), level=0.2)
        if name == "none_float64_persistent" and t == 20:  # a hand-placed world mid-run
            env.set_state([0], pos=env.pos[1].clone(), consumer_pos=env.consumer_pos[1].clone())
        u = _policy(env, gen)
        if name == "discharge_random_nan" and t % 7 == 3:
            u[t % B, t % env.cfg.n_agents] = float("nan")
        obs, reward, done, info = env.step(u)
        put_obs("obs.", obs)
        for k in ("pos", "vel", "supply", "base", "demand", "active", "assignment"):
            full(f"state.{k}", getattr(env, k))
        full("reward", reward)
        full("done", done)
        put("reward_vec", info["reward_vec"])
        for k, v in info["reward_terms"].items():
            full(f"terms.{k}", v)
        for k in INFO_FIELDS:
            full(f"info.{k}", info[k])
        has_final = "final_obs" in info
        full("has_final_obs", torch.tensor(float(has_final)))
        if has_final:
            put_obs("final.", info["final_obs"])
        else:
            for f in OBS_FIELDS:
                rec.setdefault(f"final.{f}", []).append(np.zeros(3))
    return {k: np.stack(v) for k, v in rec.items()}


def _record() -> dict[str, np.ndarray]:
    out = {}
    for name in CONFIGS:
        for k, v in _rollout(name).items():
            out[f"{name}/{k}"] = v.astype(np.float32) if k.startswith("full.") else v
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_rollout_matches_the_record(name):
    ref = np.load(DATA)
    got = _rollout(name)
    keys = sorted(k.split("/", 1)[1] for k in ref.files if k.startswith(name + "/"))
    assert sorted(got) == keys, "recorded fields changed"
    for k in keys:
        want, have = ref[f"{name}/{k}"], got[k]
        assert want.shape == have.shape, (name, k)
        if k.startswith("full."):
            close = np.isclose(have, want, rtol=RTOL, atol=RTOL)
            bad = np.nonzero(~close.reshape(len(want), -1).all(-1))[0]
            assert bad.size == 0, f"{name}: {k} differs from the record at step {bad[0]}"
            continue
        # signed weighted sum and |x| sum within 1e-5 of the values' scale (sum |w||x|)
        tol = RTOL * (want[:, 2] + 1.0)
        for col in (0, 1):
            bad = np.nonzero(np.abs(have[:, col] - want[:, col]) > tol)[0]
            assert bad.size == 0, (
                f"{name}: {k} differs from the record at step {bad[0]}: "
                f"{have[bad[0], col]!r} vs {want[bad[0], col]!r}"
            )


def test_digest_detects_a_small_change():
    # one element of a consumer_res-sized field (1920 values ~0.5) moved by 0.05
    x = torch.rand(1920, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = x.clone()
    y[123] += 0.05
    d0, d1 = _digest(x), _digest(y)
    assert abs(d0[0] - d1[0]) > RTOL * (d0[2] + 1.0)
    assert abs(d0[1] - d1[1]) > RTOL * (d0[2] + 1.0)


def test_record_exercises_every_reward_term_and_event():
    ref = np.load(DATA)
    for term in ("rw_g", "rw_s", "rw_ij", "rw_im", "rw_rc", "rw_is", "rw_id"):
        assert any(np.abs(ref[f"{n}/full.terms.{term}"]).sum() > 0 for n in CONFIGS), term
    assert ref["discharge_random_nan/full.info.nan_actions"].sum() > 0
    assert ref["discharge_random_nan/full.state.active"].mean() < 1.0
    assert all(ref[f"{n}/full.has_final_obs"].sum() > 0 for n in CONFIGS)


if __name__ == "__main__":
    if "--write" in sys.argv:
        DATA.parent.mkdir(exist_ok=True)
        np.savez_compressed(DATA, **_record())
        print(f"wrote {DATA}")
