"""The Lagrangian-decomposition bound of eq. (3): valid (<= the optimum) whatever mu, lambda
and the enumeration cap, exact when it says so, and the oracle's answers unchanged with it."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lgtc_policy.env import EnvConfig, ResourceEnv
from lgtc_policy.env import assign as assign_mod
from lgtc_policy.env.assign import relaxation_multipliers, solve_assignment
from lgtc_policy.env.assign_bound import (
    _Master,
    continuous_dual,
    lagrangian_bound,
    pricing,
    subsets_to_assignment,
)
from lgtc_policy.env.costs import linear_costs, objective


def subproblem_by_enumeration(so, de_m, w_m, cover=True):
    """P_m = min over subsets S (nonempty if cover) of ||de_m - so(S)||^2 + w_m(S)."""
    N = so.shape[0]
    best = np.inf
    for bits in itertools.product((0, 1), repeat=N):
        z = np.array(bits, dtype=float)
        if cover and not z.any():
            continue
        best = min(best, float(((de_m - z @ so) ** 2).sum() + z @ w_m))
    return best


def optimum_by_enumeration(so, de, c):
    N, M = c.shape
    return min(
        objective(np.array(a), so, de, c)
        for a in itertools.product(range(M), repeat=N)
        if len(set(a)) == M
    )


def random_instance(rng, N, M, r):
    if rng.random() < 0.5:  # the env's distribution
        cfg = EnvConfig(
            n_agents=N,
            n_consumers=M,
            n_resources=r,
            resources_per_consumer=r,
            max_resources_per_agent=r,
            assignment="none",
            dtype="float64",
            consumer_spawn_separation=0.41,
        )
        so, de, c = ResourceEnv(cfg, 1, seed=int(rng.integers(1 << 30))).assignment_problem()
        return so[0].numpy(), de[0].numpy(), c[0].numpy()
    so = rng.uniform(0, 3, (N, r)) * (rng.random((N, r)) < 0.7)
    de = rng.uniform(0, 6, (M, r))
    return so, de, linear_costs(so, de, rng.uniform(0, 2.8, (N, M)), 0.1)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    N=st.integers(1, 8),
    M=st.integers(1, 4),
    r=st.integers(1, 3),
    cap=st.sampled_from([1, 3, 20, 50_000]),
    cover=st.booleans(),
)
def test_pricing_bounds_every_subproblem_from_below(seed, N, M, r, cap, cover):
    rng = np.random.default_rng(seed)
    so = rng.uniform(0, 4, (N, r)) * (rng.random((N, r)) < 0.8)
    de = rng.uniform(0, 8, (M, r))
    w = rng.normal(0, 3, (N, M))
    lam = rng.normal(0, 2, (M, r))
    lb, exact, value, subset, lam2 = pricing(so, de, w, lam, cap=cap, cover=cover)
    for m in range(M):
        ref = subproblem_by_enumeration(so, de[m], w[:, m], cover)
        assert lb[m] <= ref + 1e-9
        if exact[m]:
            assert lb[m] == pytest.approx(ref, abs=1e-9)
        if not np.isfinite(value[m]):  # a tiny cap (over all M pools) stopped before any
            assert cap < M * 2**N and not exact[m]  # nonempty subset was met
            continue
        # the subset returned is real and its value is the one reported
        z = subset[m].astype(float)
        assert value[m] == pytest.approx(((de[m] - z @ so) ** 2).sum() + z @ w[:, m], abs=1e-9)
        assert value[m] >= ref - 1e-9
        if cover:
            assert subset[m].any()
    if cap == 50_000:  # N <= 8: the enumeration never reaches the cap, so it is exact
        assert exact.all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), N=st.integers(2, 7), M=st.integers(1, 3))
def test_decomposition_equals_direct_evaluation_and_bounds_the_optimum(seed, N, M):
    rng = np.random.default_rng(seed)
    M = min(M, N)
    so, de, c = random_instance(rng, N, M, int(rng.integers(1, 3)))
    mu = rng.normal(0, 3, N)
    lb, exact, *_ = pricing(so, de, c - mu[:, None], np.zeros((M, so.shape[1])))
    assert exact.all()
    # L(mu) = sum_i mu_i + sum_m P_m(mu), each P_m evaluated directly
    direct = mu.sum() + sum(subproblem_by_enumeration(so, de[m], c[:, m] - mu) for m in range(M))
    assert mu.sum() + lb.sum() == pytest.approx(direct, abs=1e-9)
    # weak duality: L(mu) <= the optimum of eq. 3, for any mu
    assert direct <= optimum_by_enumeration(so, de, c) + 1e-9


def test_continuous_dual_is_a_lower_bound_of_the_subproblem():
    rng = np.random.default_rng(3)
    for _ in range(20):
        N, M, r = 6, 3, 2
        so, de, w = rng.uniform(0, 3, (N, r)), rng.uniform(0, 8, (M, r)), rng.normal(0, 2, (N, M))
        lam, c_m = continuous_dual(so, de, w, rng.normal(0, 1, (M, r)))
        for m in range(M):
            assert c_m[m] <= subproblem_by_enumeration(so, de[m], w[:, m], False) + 1e-9


@pytest.mark.parametrize("warm_iters", [0, 10, 10**6])  # CG at once, after 10, never
def test_lagrangian_bound_is_valid_and_tight_on_env_instances(warm_iters):
    rng = np.random.default_rng(11)
    closed = 0
    for _ in range(10):
        so, de, c = random_instance(rng, 7, 3, 2)
        opt = optimum_by_enumeration(so, de, c)
        ref = solve_assignment(so, de, c)
        lam, _ = relaxation_multipliers(so, de, c, True)
        mu0 = (c - so @ lam.T).min(1)
        relax = float((lam * de).sum() - (lam * lam).sum() / 4 + mu0.sum())
        res = lagrangian_bound(
            so,
            de,
            c,
            mu0,
            lam,
            opt * 1.05 + 1e-9,
            np.inf,
            max_iters=300,
            warm_iters=warm_iters,
            incumbent=ref.assignment,
        )
        assert res.bound <= opt + 1e-9
        assert res.bound >= relax - 1e-6  # starts from (and keeps) the relaxation's value
        closed += res.bound >= opt - 1e-6 * max(opt, 1.0)
    assert closed >= 5  # the decomposition usually closes the gap at these sizes


def test_master_lp_duals_attain_the_lp_value_with_every_column():
    # with all columns the master is the full set-partitioning LP: at its agent duals the
    # decomposition's value equals the LP's (strong duality), and both are <= the optimum
    rng = np.random.default_rng(4)
    for _ in range(5):
        so, de, c = random_instance(rng, 6, 2, 2)
        N, M = c.shape
        master = _Master(so, de, c)
        for m in range(M):
            for bits in itertools.product((False, True), repeat=N):
                master.add(m, np.array(bits))
        lp_val, mu, y = master.solve()
        lb, exact, *_ = pricing(so, de, c - mu[:, None], np.zeros((M, 2)))
        assert exact.all()
        assert mu.sum() + lb.sum() == pytest.approx(lp_val, abs=1e-6)
        assert lp_val <= optimum_by_enumeration(so, de, c) + 1e-7
        assert y.min() >= -1e-9


def test_subsets_to_assignment_prefers_cheapest_holder():
    subset = np.array([[True, False, True], [True, True, False]])  # (M=2, N=3)
    cost = np.array([[2.0, 1.0], [5.0, 0.0], [0.0, 9.0]])
    red = np.zeros((3, 2))
    assert subsets_to_assignment(subset, cost, red).tolist() == [1, 1, 0]
    empty = np.zeros((2, 3), dtype=bool)
    red = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0]])
    assert subsets_to_assignment(empty, cost, red).tolist() == [1, 0, 0]


def test_oracle_with_the_decomposition_keeps_the_optimum(monkeypatch):
    # no first search: every instance goes through the Lagrangian bound and the second search
    monkeypatch.setattr(assign_mod, "_SMALL", 0)
    monkeypatch.setattr(assign_mod, "_PROBE", 0.0)
    rng = np.random.default_rng(5)
    for _ in range(15):
        N, M = int(rng.integers(4, 8)), int(rng.integers(2, 4))
        so, de, c = random_instance(rng, N, M, 2)
        res = solve_assignment(so, de, c)
        assert res.status == "optimal"
        assert res.objective == pytest.approx(optimum_by_enumeration(so, de, c), abs=1e-9)
        assert res.lower_bound <= res.objective + 1e-9


def test_gap_at_n50_m10_is_proven_and_consistent():
    cfg = EnvConfig(n_agents=50, n_consumers=10, assignment="none", dtype="float64")
    so, de, c = (x[0].numpy() for x in ResourceEnv(cfg, 1, seed=2).assignment_problem())
    res = solve_assignment(so, de, c, gap_tol=0.01, time_limit=1.0)
    assert (np.bincount(res.assignment, minlength=10) >= 1).all()
    assert res.objective == pytest.approx(objective(res.assignment, so, de, c), abs=1e-9)
    assert 0 <= res.lower_bound <= res.objective
    assert res.gap == pytest.approx((res.objective - res.lower_bound) / res.objective, abs=1e-12)


def test_bound_below_scip_optimum_at_n14_m4():
    import cvxpy as cp

    for seed in (1, 2, 3):
        cfg = EnvConfig(n_agents=14, n_consumers=4, assignment="none", dtype="float64")
        so, de, c = (x[0].numpy() for x in ResourceEnv(cfg, 1, seed=seed).assignment_problem())
        a = cp.Variable((14, 4), boolean=True)
        obj = cp.sum_squares(de - a.T @ so) + cp.sum(cp.multiply(c, a))
        prob = cp.Problem(cp.Minimize(obj), [cp.sum(a, axis=1) == 1, cp.sum(a, axis=0) >= 1])
        prob.solve(solver=cp.SCIP)
        lam, _ = relaxation_multipliers(so, de, c, True)
        res = lagrangian_bound(
            so, de, c, (c - so @ lam.T).min(1), lam, prob.value, np.inf, max_iters=200
        )
        assert res.bound <= prob.value + 1e-6
        assert res.bound >= 0.97 * prob.value  # and close to it (0-1 % on these)
