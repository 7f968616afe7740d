"""Continuous-space DMAR (Appendix C): robots in the simulator, CBF, Algorithm 2."""

import pytest
from dmar_agent.errors import ConfigError
from dmar_agent.mission.continuous import ContinuousConfig, routing_swarm, run_continuous
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
