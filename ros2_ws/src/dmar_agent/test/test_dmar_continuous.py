"""Continuous-space DMAR (Appendix C): robots in the simulator, CBF, Algorithm 2."""

import pytest
from dmar_agent.errors import ConfigError
from dmar_agent.mission.continuous import (
    ContinuousConfig,
    routing_swarm,
    run_continuous,
    world_k,
)
from dmar_agent.protocols import DmarConfig
from dmar_agent.world import make_instance


@pytest.mark.parametrize("policy", ["rollout", "base"])
def test_drones_complete_every_task_apart_and_on_their_cells(policy):
    inst = make_instance(9, "1:1", 2, n_agents=7)
    r = run_continuous(inst, DmarConfig(k=3, psi=2, policy=policy, seed=2))
    assert r.completed and r.tasks_left == 0
    assert r.min_separation >= r.safety_distance == 0.12
    assert r.cell_mismatch == 0 and r.timeouts == 0 and r.fallbacks == 0
    assert r.cost >= r.exploration_moves + r.skipped_moves
    assert r.metres > 0.2 * (r.cost - r.skipped_moves) * 0.7


def test_same_seed_same_run():
    inst = make_instance(9, "2:1", 4, n_agents=7)
    cfg = DmarConfig(k=2, psi=2, seed=4)
    a, b = run_continuous(inst, cfg), run_continuous(inst, cfg)
    assert (a.cost, a.clusters, a.iterations, a.em_steps) == (
        b.cost,
        b.clusters,
        b.iterations,
        b.em_steps,
    )


def test_mixed_team_of_drones_and_ground_robots_completes():
    inst = make_instance(9, "1:1", 1, n_agents=7)
    cc = ContinuousConfig(kinds=("crazyflie", "ground"))
    r = run_continuous(inst, DmarConfig(k=3, psi=2, seed=1), cc)
    assert r.completed and r.cell_mismatch == 0


def test_swarm_config_lays_the_grid_over_a_2m_arena():
    inst = make_instance(9, "1:1", 0, n_agents=7)
    sw = routing_swarm(inst, ContinuousConfig(), k=3, psi=2)
    assert tuple(sw.arena.x) == pytest.approx((-1.0, 1.0)) == tuple(sw.arena.y)
    assert tuple(sw.routing.grid.origin) == pytest.approx((-0.8, -0.8))
    assert sw.routing.grid.rows == 9 and sw.routing.grid.cell_size == 0.2
    assert len(sw.robots) == 7


def test_waypoint_exploration_is_refused():
    inst = make_instance(9, "1:1", 0, n_agents=7)
    with pytest.raises(ConfigError):
        run_continuous(inst, DmarConfig(k=3, psi=2, explore="waypoint"))


def test_a_view_radius_above_the_configs_limit_runs_as_the_whole_grid():
    """k = 100 (above the swarm config's MAX_K = 64) was a ConfigError traceback from the
    arena's config; the arena's k is clamped (the agents still see with k = 100, which on a
    5 x 5 grid is the whole grid: the same run as k = 8, the grid's diameter)."""
    inst = make_instance(5, "1:1", 3, n_agents=3)
    assert world_k(inst, 100) == 8 and world_k(inst, 3) == 3
    assert world_k(make_instance(40, "1:1", 0, n_agents=4), 1000) == 64
    far = run_continuous(inst, DmarConfig(k=100, psi=2, seed=3))
    whole = run_continuous(inst, DmarConfig(k=8, psi=2, seed=3))
    assert far.completed and (far.cost, far.iterations, far.clusters) == (
        whole.cost,
        whole.iterations,
        whole.clusters,
    )
