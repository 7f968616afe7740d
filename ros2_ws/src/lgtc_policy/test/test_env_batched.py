"""Invariants of the batched world: conservation, batching, determinism, resets, bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lgtc_policy.env import ActionError, EnvConfig, EnvConfigError, ResourceEnv


def rand_actions(gen, B, N):
    return torch.rand(B, N, 2, generator=gen, dtype=torch.float64) * 2 - 1


@settings(max_examples=8, deadline=None)
@given(
    st.integers(0, 1000),
    st.sampled_from(["mixed", "random", "persistent", "instantaneous"]),
    st.integers(1, 3),
)
def test_demand_nonnegative_and_supplies_conserved(seed, kinds, r):
    cfg = EnvConfig(
        n_agents=6,
        n_consumers=3,
        n_resources=r,
        resources_per_consumer=r,
        max_resources_per_agent=r,
        resource_kinds=kinds,
        v_max=2.0,
        dtype="float64",
        auto_reset=False,
        discharge_rate=0.5,
        deactivate_on_discharge=False,
        discharge_level=0.5,
    )
    env = ResourceEnv(cfg, batch_size=8, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    inst = ~env.persistent[:, None, :]
    # the paper's assumption: total supply <= total demand (per type)
    assert bool((env.supply.sum(1) <= env.base.sum(1) + 1e-9).all())
    # instantaneous quantities move from agents to consumers: supply - missing is invariant
    held0 = (env.supply * inst).sum(1) - (env.base * inst).sum(1)
    for _ in range(40):
        before = env.supply.clone()
        env.step(rand_actions(gen, 8, 6))
        assert bool((env.demand >= 0).all()) and bool((env.base >= 0).all())
        assert bool((env.supply >= 0).all())
        assert bool((env.supply <= before + 1e-12).all())  # supplies only ever decrease
        assert bool((env.demand <= env.demand0 + 1e-9).all())
    held = (env.supply * inst).sum(1) - (env.base * inst).sum(1)
    np.testing.assert_allclose(held.numpy(), held0.numpy(), atol=1e-9)


def test_persistent_supply_is_not_consumed():
    cfg = EnvConfig(resource_kinds="persistent", dtype="float64", v_max=2.0)
    env = ResourceEnv(cfg, batch_size=4, seed=3)
    s0 = env.supply.clone()
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        env.step(rand_actions(gen, 4, 10))
    assert torch.equal(env.supply, s0)


def test_batched_equals_independent_single_envs():
    cfg = EnvConfig(dtype="float64", auto_reset=False)
    B = 4
    big = ResourceEnv(cfg, batch_size=B, seed=11)
    singles = [ResourceEnv(cfg, batch_size=1, seed=100 + b) for b in range(B)]
    for b, env in enumerate(singles):
        env.set_state(
            0,
            pos=big.pos[b],
            supply=big.supply[b],
            persistent=big.persistent[b],
            demand=big.base[b],
            consumer_pos=big.consumer_pos[b],
            radius=big.radius[b],
            assignment=big.assignment[b],
        )
    gen = torch.Generator().manual_seed(5)
    for _ in range(60):
        a = rand_actions(gen, B, 10)
        obs, rew, done, info = big.step(a)
        for b, env in enumerate(singles):
            o1, r1, d1, i1 = env.step(a[b : b + 1])
            torch.testing.assert_close(r1[0], rew[b], rtol=0, atol=1e-12)
            torch.testing.assert_close(o1.consumer_res[0], obs.consumer_res[b], rtol=0, atol=0)
            torch.testing.assert_close(o1.S[0], obs.S[b], rtol=0, atol=0)
            assert torch.equal(o1.assignment[0], obs.assignment[b])
            torch.testing.assert_close(i1["reward_vec"][0], info["reward_vec"][b])


def test_same_seed_same_rollout_and_different_seed_differs():
    cfg = EnvConfig(discharge_rate=0.3, episode_length=25)
    runs = []
    for seed in (7, 7, 8):
        env = ResourceEnv(cfg, batch_size=5, seed=seed)
        gen = torch.Generator().manual_seed(0)
        tot = []
        for _ in range(60):  # crosses two auto-resets
            _, r, _, _ = env.step(rand_actions(gen, 5, 10).float())
            tot.append(r)
        runs.append((torch.stack(tot), env.pos.clone(), env.supply.clone()))
    for x, y in zip(runs[0], runs[1]):
        assert torch.equal(x, y)
    assert not torch.equal(runs[0][1], runs[2][1])


def test_subset_reset_leaves_other_envs_untouched():
    env = ResourceEnv(EnvConfig(), batch_size=6, seed=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        env.step(rand_actions(gen, 6, 10).float())
    before = (env.pos.clone(), env.supply.clone(), env.t.clone())
    env.reset(torch.tensor([1, 4]))
    keep = torch.tensor([0, 2, 3, 5])
    assert torch.equal(env.pos[keep], before[0][keep])
    assert torch.equal(env.supply[keep], before[1][keep])
    assert env.t.tolist() == [5, 0, 5, 5, 0, 5]
    mask = torch.zeros(6, dtype=torch.bool)
    mask[2] = True
    env.reset(mask)
    assert env.t.tolist() == [5, 0, 0, 5, 0, 5]


def test_reset_respects_spawn_separation_and_assumptions():
    cfg = EnvConfig(n_agents=20, n_consumers=6)
    env = ResourceEnv(cfg, batch_size=64, seed=2)
    d = torch.cdist(env.pos, env.pos) + torch.eye(20) * 9
    assert float(d.min()) >= cfg.agent_spawn_separation - 1e-6
    dc = torch.cdist(env.consumer_pos, env.consumer_pos) + torch.eye(6) * 9
    assert float(dc.min()) >= cfg.consumer_spawn_separation - 1e-6
    demanded = (env.base > 0).sum(-1)
    assert bool((demanded == cfg.resources_per_consumer).all())
    assert bool(((env.supply > 0).sum(-1) >= 1).all())
    np.testing.assert_allclose(env.supply.sum(1), env.base.sum(1), rtol=1e-5)
    counts = torch.nn.functional.one_hot(env.assignment, 6).sum(1)
    assert bool((counts >= 1).all())


def test_episode_truncation_and_auto_reset():
    env = ResourceEnv(EnvConfig(episode_length=3), batch_size=2, seed=0)
    z = torch.zeros(2, 10, 2)
    for _ in range(2):
        _, _, done, info = env.step(z)
        assert not done.any() and "final_obs" not in info
    _, _, done, info = env.step(z)
    assert done.all() and info["truncated"].all() and not info["terminated"].any()
    assert info["episode_step"].tolist() == [3, 3] and env.t.tolist() == [0, 0]
    assert info["final_obs"].pos.shape == (2, 10, 2)


def test_discharge_event_lands_agent_and_reassigns():
    cfg = EnvConfig(resource_kinds="persistent", dtype="float64")
    env = ResourceEnv(cfg, batch_size=2, seed=5)
    env.discharge(torch.tensor([1]), torch.tensor([3]))
    assert not bool(env.active[1, 3]) and bool(env.active[0].all())
    assert float(env.supply[1, 3].sum()) == 0.0
    assert int(env.assignment[1, 3]) == -1
    assert bool(
        (torch.nn.functional.one_hot(env.assignment[1][env.active[1]], 4).sum(0) >= 1).all()
    )
    obs = env.observe()
    assert not obs.adjacency[1, 3].any() and not obs.adjacency[1, :, 3].any()
    p = env.pos[1, 3].clone()
    env.step(torch.ones(2, 10, 2))
    assert torch.equal(env.pos[1, 3], p)


def test_all_agents_discharged_terminates():
    cfg = EnvConfig(resource_kinds="persistent", discharge_rate=1e6)
    env = ResourceEnv(cfg, batch_size=2, seed=0)
    _, _, done, info = env.step(torch.zeros(2, 10, 2))
    assert done.all() and info["terminated"].all()


def test_nan_actions_raise_or_zero():
    env = ResourceEnv(EnvConfig(), batch_size=2, seed=0)
    a = torch.zeros(2, 10, 2)
    a[1, 4, 0] = float("nan")
    with pytest.raises(ActionError, match=r"actions\[1, 4\].*nan_actions='zero'"):
        env.step(a)
    env = ResourceEnv(EnvConfig(nan_actions="zero"), batch_size=2, seed=0)
    p = env.pos.clone()
    a[0, 0] = torch.tensor([5.0, 5.0])  # clipped to unit norm
    _, _, _, info = env.step(a)
    assert info["nan_actions"].tolist() == [0, 1]
    assert torch.equal(env.pos[1, 4], p[1, 4])
    step = (env.pos[0, 0] - p[0, 0]).norm()
    assert abs(float(step) - 0.5 * 0.05) < 1e-6 or bool((env.pos[0, 0].abs() == 1).any())
    with pytest.raises(ActionError, match="expected"):
        env.step(torch.zeros(2, 10))


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"n_agents": 0}, "n_agents"),
        ({"n_agents": 3, "n_consumers": 4}, "n_agents"),
        ({"dt": float("nan")}, "dt"),
        ({"supply_ratio": 1.5}, "supply_ratio"),
        ({"epsilon": 0.5}, "epsilon"),
        ({"resources_per_consumer": 3}, "resources_per_consumer"),
        ({"consumer_radius": (0.3, 0.1)}, "consumer_radius"),
        ({"n_consumers": 40, "n_agents": 40}, "consumer_spawn_separation"),
        ({"w_global": -1.0}, "w_global"),
        ({"assignment": "greedy"}, "assignment"),
        ({"collision_form": "soft"}, "collision_form"),
    ],
)
def test_invalid_config_names_the_field(kw, field):
    with pytest.raises(EnvConfigError, match=f"EnvConfig.{field}"):
        EnvConfig(**kw).validate()


@pytest.mark.parametrize(
    "kw, field",
    [
        # a value of the wrong type raised a TypeError traceback (`lgtc eval --env-overrides`)
        ({"discharge_rate": "x"}, "discharge_rate"),
        ({"discharge_level": "x"}, "discharge_level"),
        ({"spawn_margin": None}, "spawn_margin"),
        ({"agent_spawn_separation": "x"}, "agent_spawn_separation"),
        ({"assign_demand_floor": [1]}, "assign_demand_floor"),
        ({"consumer_radius": 0.1}, "consumer_radius"),
        ({"supply_range": None}, "supply_range"),
        ({"supply_range": [1, 2, 3]}, "supply_range"),
        ({"dt": True}, "dt"),
        ({"auto_reset": "no"}, "auto_reset"),
        ({"seed": "x"}, "seed"),
        ({"seed": -1}, "seed"),
        # absurd sizes hung the evaluation or asked for unbounded memory
        ({"episode_length": 10**9}, "episode_length"),
        ({"assign_restarts": 10**9}, "assign_restarts"),
        ({"n_agents": 10**6}, "n_agents"),
        ({"n_resources": 10**4}, "n_resources"),
        ({"epsilon": 1e-300, "agent_spawn_separation": 1e-300}, "agent_spawn_separation"),
        ({"consumer_radius": [1e-300, 1e-300], "epsilon": 1e-301}, "consumer_spawn_separation"),
        # finite in float64, inf in float32: NaN actions or NaN rewards
        ({"dt": 1e300}, "dt"),
        ({"v_max": 1e300}, "v_max"),
        ({"supply_range": [1e300, 1e300]}, "supply_range"),
        ({"w_global": 1e308}, "w_global"),
    ],
)
def test_from_dict_names_the_field_of_a_mistyped_or_absurd_value(kw, field):
    base = {"consumer_spawn_separation": 0.41}
    if field == "consumer_spawn_separation":
        base = {"consumer_spawn_separation": 1e-300, "agent_spawn_separation": 0.15}
    with pytest.raises(EnvConfigError, match=f"EnvConfig.{field}=") as err:
        EnvConfig.from_dict({**base, **kw})
    assert "\n" not in str(err.value)


def test_the_largest_values_allowed_stay_finite():
    """At the bounds (every real field up to 1e6) a rollout stays finite."""
    cfg = EnvConfig.from_dict(
        {
            "v_max": 1e6,
            "supply_range": [1e6, 1e6],
            "w_global": 1e6,
            "w_progress": 1e6,
            "gamma_collision": 1e6,
            "comm_radius": 1e6,
            "discharge_rate": 1e6,
            "dt": 1e6,
        }
    )
    env = ResourceEnv(cfg, batch_size=2, seed=0)
    env.reset()
    for _ in range(3):
        obs, reward, _, _ = env.step(torch.rand(2, 10, 2) * 2 - 1)
        assert torch.isfinite(reward).all() and torch.isfinite(obs.flat()).all()


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(EnvConfigError, match="unknown EnvConfig field"):
        EnvConfig.from_dict({"n_agent": 10})
    assert EnvConfig.from_dict({"consumer_radius": [0.15, 0.2]}).consumer_radius == (0.15, 0.2)
    with pytest.raises(EnvConfigError, match="batch_size"):
        ResourceEnv(EnvConfig(), batch_size=0)


def test_load_scenario_copies_a_world_and_names_bad_fields():
    cfg = EnvConfig(dtype="float64", auto_reset=False)
    env = ResourceEnv(cfg, batch_size=3, seed=21)
    world = {
        "pos": env.pos[0],  # views of the env's own state are accepted (copied first)
        "supply": env.supply[0],
        "persistent": env.persistent[0],
        "consumer_pos": env.consumer_pos[0],
        "radius": env.radius[0],
        "demand": env.base[0],
    }
    obs = env.load_scenario([2], **world)
    assert obs.pos.shape == (3, 10, 2)
    assert bool(env.active[2].all()) and int(env.t[2]) == 0
    torch.testing.assert_close(env.demand[2], env.demand[0], rtol=0, atol=0)
    assert torch.equal(env.assignment[2], env.assignment[0])
    gen = torch.Generator().manual_seed(1)
    for _ in range(30):
        a = rand_actions(gen, 1, 10).expand(3, 10, 2).clone()
        _, rew, _, info = env.step(a)
        torch.testing.assert_close(rew[2], rew[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(env.supply[2], env.supply[0], rtol=0, atol=1e-12)
    with pytest.raises(EnvConfigError, match="radius"):
        env.load_scenario(0, **{**world, "radius": torch.ones(7)})
    with pytest.raises(EnvConfigError, match="pos contains NaN"):
        env.load_scenario(0, **{**world, "pos": torch.full((10, 2), float("nan"))})


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("radius", 0.0, "radius .* must be > 0"),
        ("radius", -0.1, "radius .* must be > 0"),
        ("supply", -1.0, "must be >= 0"),
        ("demand", float("inf"), "demand contains NaN/inf"),
        ("pos", torch.zeros(3), "pos has shape"),
    ],
)
def test_rejected_set_state_leaves_the_env_untouched(field, value, match):
    """Every field is checked before anything is written (here pos comes first and is
    valid): a rejected call changes nothing, in any env."""
    env = ResourceEnv(EnvConfig(auto_reset=False), batch_size=2, seed=4)
    before = {k: getattr(env, k).clone() for k in ("pos", "supply", "base", "radius", "t")}
    good_pos = torch.full((10, 2), 0.5)
    kw = {"pos": good_pos, field: value} if field != "pos" else {"pos": value}
    with pytest.raises(EnvConfigError, match=match):
        env.set_state([1], **kw)
    for k, v in before.items():
        assert torch.equal(getattr(env, k), v), k


def test_large_cpu_env_keeps_freed_memory():
    import os
    import platform

    from lgtc_policy.env import core

    ResourceEnv(EnvConfig(), batch_size=410, seed=0)  # B * N >= 4096: tuned at construction
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    wanted = glibc and os.environ.get("LGTC_ENV_MALLOC_TUNING", "1") != "0"
    assert core._malloc_tuned == wanted
    assert core.keep_freed_memory() == wanted  # idempotent


def _placed(discharge_rate, spots, seed=0):
    """N = 5, M = 3 persistent env (B = 2) with the agents at ``spots`` (normalised) in both
    envs and the consumers at (-0.6, 0.5), (0.6, 0.5), (0, -0.2), R = 0.15."""
    cfg = EnvConfig(
        n_agents=5,
        n_consumers=3,
        resource_kinds="persistent",
        discharge_rate=discharge_rate,
        discharge_target="alone",
        dtype="float64",
    )
    env = ResourceEnv(cfg, batch_size=2, seed=seed)
    cp = torch.tensor([[-0.6, 0.5], [0.6, 0.5], [0.0, -0.2]], dtype=torch.float64)
    env.set_state(
        [0, 1],
        pos=torch.tensor(spots, dtype=torch.float64).expand(2, 5, 2),
        consumer_pos=cp.expand(2, 3, 2),
        radius=torch.full((2, 3), 0.15, dtype=torch.float64),
    )
    return env


def test_alone_discharge_hits_the_agent_that_serves_a_consumer_alone():
    # agents 0, 1 in consumer 0; 2, 3 in consumer 1; 4 alone in consumer 2
    spots = [[-0.65, 0.5], [-0.55, 0.5], [0.55, 0.5], [0.65, 0.5], [0.0, -0.2]]
    env = _placed(1e6, spots)
    env.step(torch.zeros(2, 5, 2))
    assert env.active.tolist() == [[True, True, True, True, False]] * 2
    assert float(env.supply[:, 4].sum()) == 0.0 and bool((env.supply[:, :4].sum(-1) > 0).all())
    # agent 4 outside every area: nobody serves alone, nothing happens however high the rate
    spots[4] = [0.0, -0.9]
    env = _placed(1e6, spots)
    before = env.supply.clone()
    env.step(torch.zeros(2, 5, 2))
    assert bool(env.active.all()) and torch.equal(env.supply, before)
    with pytest.raises(EnvConfigError, match="discharge_target"):
        EnvConfig(discharge_target="random").validate()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_alone_discharges_only_ever_hit_a_sole_occupant(seed):
    """At most one event per env and step, and its agent was the only active agent inside its
    consumer's area when it was hit (random positions, agents moving randomly)."""
    cfg = EnvConfig(
        n_agents=6,
        n_consumers=3,
        resource_kinds="persistent",
        discharge_rate=2.0,
        discharge_target="alone",
        consumer_radius=(0.2, 0.2),
        episode_length=60,
    )
    env = ResourceEnv(cfg, batch_size=4, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(40):
        u = torch.rand(4, 6, 2, generator=gen) * 2 - 1
        before = env.active.clone()
        env.step(u)  # motion first, then the events: judge on the moved positions
        hit = before & ~env.active
        assert (hit.sum(-1) <= 1).all()
        if hit.any():
            target = env._targets()  # the hit agent is inactive now: count the others
            b, i = torch.nonzero(hit)[0].tolist()
            d = torch.linalg.norm(env.pos[b, i] - env.consumer_pos[b], dim=-1)
            m = int(torch.where(d <= env.radius[b], d, torch.inf).argmin())
            assert bool(d[m] <= env.radius[b, m]) and not bool((target[b] == m).any())
        if not env.active.any(-1).all():
            break
