"""The eq. (3) oracle: same optimum as cvxpy+SCIP, constraints respected, limits honoured."""

import itertools

import cvxpy as cp
import numpy as np
import pytest
import torch
from lgtc_policy.env import EnvConfig, ResourceEnv
from lgtc_policy.env.assign import (
    AssignmentError,
    assignment_from_positions,
    local_search_np,
    pair_reoptimise,
    solve_assignment,
)
from lgtc_policy.env.assign_local import greedy_assignment, local_search
from lgtc_policy.env.costs import linear_costs, objective


def scip_optimum(so, de, c):
    N, M = c.shape
    a = cp.Variable((N, M), boolean=True)
    obj = cp.sum_squares(de - a.T @ so) + cp.sum(cp.multiply(c, a))
    cons = [cp.sum(a, axis=1) == 1, cp.sum(a, axis=0) >= 1]
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver=cp.SCIP)
    return prob.value


def instances(count, seed):
    """Random instances in the env's distribution, with varied sizes, plus uniform ones."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        N, M, r = int(rng.integers(4, 9)), int(rng.integers(2, 5)), int(rng.integers(1, 4))
        M = min(M, N)
        if k % 2 == 0:
            cfg = EnvConfig(
                n_agents=N,
                n_consumers=M,
                n_resources=r,
                resources_per_consumer=r,
                max_resources_per_agent=r,
                assignment="none",
                dtype="float64",
                consumer_spawn_separation=0.45,
            )
            so, de, c = ResourceEnv(cfg, 1, seed=int(rng.integers(1 << 30))).assignment_problem()
            out.append((so[0].numpy(), de[0].numpy(), c[0].numpy()))
        else:
            so = rng.uniform(0, 1, (N, r)) * (rng.random((N, r)) < 0.7)
            de = rng.uniform(0, 2, (M, r))
            dist = rng.uniform(0, 2.8, (N, M))
            out.append((so, de, linear_costs(so, de, dist, 0.1)))
    return out


def check_feasible(a, N, M):
    assert a.shape == (N,) and a.min() >= 0 and a.max() < M
    assert (np.bincount(a, minlength=M) >= 1).all()


def test_oracle_matches_scip_on_100_random_instances():
    for so, de, c in instances(100, seed=0):
        res = solve_assignment(so, de, c)
        N, M = c.shape
        check_feasible(res.assignment, N, M)
        assert res.status == "optimal" and res.optimal
        assert res.objective == pytest.approx(objective(res.assignment, so, de, c), abs=1e-9)
        ref = scip_optimum(so, de, c)
        assert res.objective == pytest.approx(ref, rel=1e-6, abs=1e-6)
        assert res.lower_bound <= res.objective + 1e-9


def test_oracle_matches_enumeration():
    for so, de, c in instances(30, seed=1):
        N, M = c.shape
        best = min(
            objective(np.array(a), so, de, c)
            for a in itertools.product(range(M), repeat=N)
            if len(set(a)) == M
        )
        assert solve_assignment(so, de, c).objective == pytest.approx(best, rel=1e-9, abs=1e-9)


def test_time_limit_returns_best_known_with_proven_bound():
    cfg = EnvConfig(n_agents=40, n_consumers=10, assignment="none", dtype="float64")
    so, de, c = (x[0].numpy() for x in ResourceEnv(cfg, 1, seed=3).assignment_problem())
    res = solve_assignment(so, de, c, time_limit=0.05)
    check_feasible(res.assignment, 40, 10)
    assert res.status in ("time_limit", "optimal", "gap")
    assert res.lower_bound <= res.objective + 1e-9
    assert res.gap == pytest.approx((res.objective - res.lower_bound) / res.objective, abs=1e-9)
    cfg = EnvConfig(n_agents=14, n_consumers=4, assignment="none", dtype="float64")
    so, de, c = (x[0].numpy() for x in ResourceEnv(cfg, 1, seed=3).assignment_problem())
    loose = solve_assignment(so, de, c, gap_tol=0.05, time_limit=30)
    assert loose.gap <= 0.05 + 1e-12 and loose.status in ("optimal", "gap")
    assert loose.objective >= solve_assignment(so, de, c).objective - 1e-9


def test_fewer_agents_than_consumers_drops_covering():
    so = np.array([[1.0], [0.5]])
    de = np.array([[1.0], [0.5], [2.0]])
    c = np.zeros((2, 3))
    res = solve_assignment(so, de, c)
    assert res.objective == pytest.approx(
        min(objective(np.array(a), so, de, c) for a in itertools.product(range(3), repeat=2))
    )


def test_from_positions_and_bad_input():
    res = assignment_from_positions(
        [[0.0, 0.0], [1.0, 1.0]], [[1.0], [1.0]], [[0.0, 0.1], [1.0, 0.9]], [[1.0], [1.0]]
    )
    assert res.assignment.tolist() == [0, 1]
    with pytest.raises(AssignmentError, match="cost must be"):
        solve_assignment(np.ones((3, 2)), np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(AssignmentError, match="NaN"):
        solve_assignment(np.full((3, 1), np.nan), np.ones((2, 1)), np.ones((3, 2)))
    with pytest.raises(AssignmentError, match=">= 0"):
        solve_assignment(-np.ones((3, 1)), np.ones((2, 1)), np.ones((3, 2)))


def test_batched_local_search_is_feasible_and_never_worse_than_greedy():
    data = instances(40, seed=2)
    for so, de, c in data:
        N, M = c.shape
        t = [torch.as_tensor(x)[None] for x in (so, de, c)]
        act = torch.ones(1, N, dtype=torch.bool)
        g = greedy_assignment(t[2], act)
        a = local_search(g, t[0], t[1], t[2], act)[0].numpy()
        check_feasible(a, N, M)
        assert objective(a, so, de, c) <= objective(g[0].numpy(), so, de, c) + 1e-12
        assert objective(a, so, de, c) >= solve_assignment(so, de, c).objective - 1e-9


def test_one_agent_per_consumer_is_a_linear_assignment():
    rng = np.random.default_rng(5)
    for _ in range(10):
        N = int(rng.integers(2, 7))
        so, de = rng.uniform(0, 3, (N, 2)), rng.uniform(0, 3, (N, 2))
        c = linear_costs(so, de, rng.uniform(0, 2.8, (N, N)), 0.1)
        best = min(objective(np.array(p), so, de, c) for p in itertools.permutations(range(N)))
        res = solve_assignment(so, de, c)
        assert res.status == "optimal" and res.objective == pytest.approx(best, rel=1e-12)
        assert sorted(res.assignment.tolist()) == list(range(N))


def test_pair_reoptimise_leaves_every_pair_of_consumers_optimal():
    rng = np.random.default_rng(7)
    for _ in range(15):
        N, M, r = 8, 3, 2
        so = rng.uniform(1, 5, (N, r))
        de = rng.uniform(2, 12, (M, r))
        c = rng.uniform(0, 3, (N, M))
        a0 = local_search_np(np.arange(N) % M, so, de, c, True)
        a1 = pair_reoptimise(a0, so, de, c, deadline=float("inf"), max_passes=100)
        f1 = objective(a1, so, de, c)
        assert f1 <= objective(a0, so, de, c) + 1e-12
        assert (np.bincount(a1, minlength=M) >= 1).all()
        for j, k in itertools.combinations(range(M), 2):  # no split of a pair's agents is better
            S = np.flatnonzero((a1 == j) | (a1 == k))
            for bits in itertools.product((j, k), repeat=S.size):
                if j in bits and k in bits:
                    a2 = a1.copy()
                    a2[S] = bits
                    assert objective(a2, so, de, c) >= f1 - 1e-9


def test_gap_is_zero_at_an_optimum_of_zero():
    so = np.array([[1.0], [2.0], [3.0]])
    de = np.array([[3.0], [3.0]])
    res = solve_assignment(so, de, np.zeros((3, 2)))
    assert res.objective == pytest.approx(0.0, abs=1e-12)
    assert res.gap == 0.0 and res.optimal and res.lower_bound >= 0.0
