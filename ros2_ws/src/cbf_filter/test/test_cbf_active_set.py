"""The centralized filter's exact active-set path against cvxpy, OSQP and itself.

* :class:`SwarmProjection` on random swarm-structured QPs (pair rows, speed polytope, walls;
  feasible and infeasible) against cvxpy (Clarabel): same verdict; optimal answers satisfy
  every row to 1e-9 (1 + |bound|), the objective is within 1e-7 (1 + f*) of the reference
  and the minimisers agree to 1e-5 (Clarabel's accuracy); KKT residuals checked at 1e-10.
* hypothesis: a warm start (any subset of rows) does not change the answer (1e-9); the
  shortcuts (nominal command or thresholded target already admissible) equal the full QP;
  ``method="auto"`` is never worse than ``method="osqp"`` and OSQP's objective is within
  1e-4 of it (OSQP's accuracy when polishing fails) unless OSQP's answer had to be shrunk
  onto the feasible set, which costs optimality; the exact answer equals the full QP's.
* robots in separate connected components of the pair graph: the joint QP equals the QPs of
  the components solved on their own (1e-9).
* when the active-set method cannot finish, OSQP answers the same QP (counted in stats).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from cbf_filter import CBFConfigError, CBFParams, CBFStatus, CentralizedCBF
from cbf_filter import centralized as centralized_module
from cbf_filter.barriers import box_bounds, pair_terms, saturate
from cbf_filter.params import speed_polytope
from cbf_filter.swarm_active_set import (
    DEPENDENT,
    INFEASIBLE,
    OPTIMAL,
    SwarmProjection,
    spd_solve,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _random_problem(rng, n, d, infeasible_ok):
    """Random rows with the filter's structure; bounds may be negative (unsafe states)."""
    all_pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)], dtype=np.int64)
    keep = rng.random(len(all_pairs)) < 0.6
    pairs = all_pairs[keep] if np.any(keep) else all_pairs[:1]
    g = rng.normal(size=(len(pairs), d))
    low = -1.0 if infeasible_ok else 0.0
    b = rng.uniform(low, 1.0, size=len(pairs))
    b[rng.random(len(pairs)) < 0.2] = np.inf  # rows that cannot bind
    normals, ratio = speed_polytope(d, 8)
    lb = -rng.uniform(0.0, 0.6, size=(n, d))
    ub = rng.uniform(0.0, 0.6, size=(n, d))
    if infeasible_ok:
        # Demands beyond the speed polytope or against a pair row: often infeasible.
        lb += rng.uniform(0.0, 0.8, size=(n, d)) * (rng.random((n, d)) < 0.3)
    target = rng.normal(scale=0.8, size=(n, d))
    return pairs, g, b, normals, 0.5 * ratio, lb, ub, target


def _dense(pairs, g, b, normals, r, lb, ub, n, d):
    """The same rows as a dense matrix, written out independently of SwarmProjection."""
    rows, bounds = [], []
    for p, (i, j) in enumerate(pairs):
        if np.isfinite(b[p]):
            a = np.zeros(n * d)
            a[i * d : i * d + d] = -g[p]
            a[j * d : j * d + d] = g[p]
            rows.append(a)
            bounds.append(b[p])
    for i in range(n):
        for nk in normals:
            a = np.zeros(n * d)
            a[i * d : i * d + d] = nk
            rows.append(a)
            bounds.append(r)
        for c in range(d):
            a = np.zeros(n * d)
            a[i * d + c] = -1.0
            rows.append(a)
            bounds.append(-lb[i, c])
            rows.append(-a)
            bounds.append(ub[i, c])
    return np.array(rows), np.array(bounds)


def test_swarm_projection_matches_cvxpy_and_detects_infeasibility():
    rng = np.random.default_rng(11)
    n_opt = n_inf = 0
    for trial in range(120):
        d = 2 + trial % 2
        n = int(rng.integers(2, 7))
        prob_data = _random_problem(rng, n, d, infeasible_ok=trial % 3 == 0)
        pairs, g, b, normals, r, lb, ub, target = prob_data
        proj = SwarmProjection(pairs, g, b, normals, r, lb, ub)
        u, code, _, active = proj.solve(target)
        A, c = _dense(pairs, g, b, normals, r, lb, ub, n, d)
        x = cp.Variable(n * d)
        ref = cp.Problem(cp.Minimize(cp.sum_squares(x - target.ravel())), [A @ x <= c])
        ref.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
        if ref.status == cp.INFEASIBLE:
            assert code in (INFEASIBLE, DEPENDENT), code
            n_inf += 1
            continue
        assert code == OPTIMAL, code
        n_opt += 1
        flat = u.ravel()
        assert np.all(A @ flat - c <= 1e-9 * (1 + np.abs(c)))
        f = float(np.sum((flat - target.ravel()) ** 2))
        assert f <= ref.value + 1e-7 * (1 + ref.value)
        np.testing.assert_allclose(flat, x.value, atol=1e-5)
        # KKT with the returned active rows: non-negative multipliers reproduce u exactly.
        if len(active):
            N = np.stack([_row_vector(proj, k, n, d) for k in active])
            lam, *_ = np.linalg.lstsq(N.T, target.ravel() - flat, rcond=None)
            assert np.all(lam >= -1e-10), lam
            np.testing.assert_allclose(N.T @ lam, target.ravel() - flat, atol=1e-10)
            np.testing.assert_allclose(N @ flat, proj.bound[active], atol=1e-10)
        else:
            np.testing.assert_array_equal(flat, target.ravel())
    assert n_opt >= 80 and n_inf >= 20  # both verdicts well represented (90 / 30 here)


def _row_vector(proj, k, n, d):
    robots, coefs = proj.rows(np.array([k]))
    a = np.zeros((n, d))
    for r, c in zip(robots[0], coefs[0]):
        a[r] += c
    return a.ravel()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([2, 3]), st.integers(2, 8))
def test_warm_start_does_not_change_the_answer(seed, d, n):
    rng = np.random.default_rng(seed)
    pairs, g, b, normals, r, lb, ub, target = _random_problem(rng, n, d, infeasible_ok=False)
    proj = SwarmProjection(pairs, g, b, normals, r, lb, ub)
    u_cold, code, _, active = proj.solve(target)
    assert code == OPTIMAL
    m = len(proj.bound)
    for warm in (active, rng.choice(m, size=min(m, 6), replace=False), np.arange(m)):
        u_warm, code_w, _, _ = proj.solve(target, warm)
        assert code_w == OPTIMAL
        np.testing.assert_allclose(u_warm, u_cold, atol=1e-9)


ARENA = ((-1.5, 1.5), (-1.5, 1.5), (0.0, 1.5))


@st.composite
def swarm_states(draw):
    d = draw(st.sampled_from([2, 3]))
    n = draw(st.integers(2, 14))
    seed = draw(st.integers(0, 2**32 - 1))
    params = CBFParams(
        gamma=draw(st.sampled_from([1.0, 10.0, 100.0])),
        class_k=draw(st.sampled_from(["cubic", "linear"])),
        safety_distance=0.15,
        max_speed=draw(st.sampled_from([0.3, 0.5, 1.0])),
        arena=ARENA,
        sensing_radius=draw(st.sampled_from([None, 0.8])),
        sample_time=draw(st.sampled_from([None, 0.05])),
    )
    rng = np.random.default_rng(seed)
    lo = np.array([a[0] for a in ARENA[:d]]) + 0.075
    hi = np.array([a[1] for a in ARENA[:d]]) - 0.075
    pts = []
    while len(pts) < n:
        p = lo + (hi - lo) * rng.random(d) * draw(st.sampled_from([0.3, 1.0]))
        if all(np.linalg.norm(p - q) >= 0.15 for q in pts):
            pts.append(p)
    x = np.array(pts)
    scale = draw(st.sampled_from([0.05, 0.5, 3.0]))
    u_hat = rng.normal(scale=scale, size=(n, d)) + draw(st.floats(0, 2)) * (x.mean(0) - x)
    return params, x, u_hat


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(swarm_states())
def test_auto_equals_osqp_and_shortcuts_equal_the_full_qp(state):
    params, x, u_hat = state
    n, d = x.shape
    auto = CentralizedCBF(n, d, params).filter(x, u_hat)
    osqp_only = CentralizedCBF(n, d, params, method="osqp")
    ref = osqp_only.filter(x, u_hat)
    assert auto.found and ref.found
    assert auto.status == ref.status
    rp = params.resolve(d)
    target = saturate(u_hat, rp.speed_bound)
    f_auto = float(np.sum((auto.u - target) ** 2))
    f_ref = float(np.sum((ref.u - target) ** 2))
    if auto.status is CBFStatus.NOMINAL_SAFE:
        np.testing.assert_array_equal(auto.u, u_hat)
        return
    assert f_auto <= f_ref + 1e-9 * (1 + f_ref)
    if osqp_only.stats.repairs == 0:
        # (A repaired OSQP answer was shrunk onto the feasible set: admissible, not optimal.)
        # OSQP's answer is near-optimal: to its accuracy when polishing fails (eps 1e-5).
        assert f_ref <= f_auto + 1e-4 * (1 + f_auto)
    # The full QP from scratch (no shortcut, no warm start) has the same minimiser.
    full_pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)], dtype=np.int64)
    g, b, dist = pair_terms(x[full_pairs[:, 0]], x[full_pairs[:, 1]], rp)
    if rp.sensing_radius is not None:
        b = np.where(dist <= rp.sensing_radius, b, np.inf)
    lb, ub = box_bounds(x, rp)
    proj = SwarmProjection(full_pairs, g, b, rp.speed_normals, rp.speed_bound, lb, ub)
    u_full, code, _, _ = proj.solve(target)
    assert code == OPTIMAL
    np.testing.assert_allclose(auto.u, u_full, atol=1e-9)


def test_separate_components_solve_independently():
    params = CBFParams(arena=((-4, 4), (-4, 4)), sensing_radius=1.0, sample_time=0.05)
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = np.array([[-2.0, 0.0], [-1.8, 0.05], [-2.1, 0.2]]) + 0.02 * rng.normal(size=(3, 2))
        b = np.array([[2.0, 0.0], [2.2, -0.05], [2.0, 0.19], [1.85, 0.1]])
        b = b + 0.02 * rng.normal(size=(4, 2))
        # Everyone charges its group's centre: several pair rows bind in both groups.
        ua = 2.0 * (a.mean(0) - a) + 0.3 * rng.normal(size=a.shape)
        ub = 2.0 * (b.mean(0) - b) + 0.3 * rng.normal(size=b.shape)
        joint = CentralizedCBF(7, 2, params).filter(np.vstack([a, b]), np.vstack([ua, ub]))
        ra = CentralizedCBF(3, 2, params).filter(a, ua)
        rb = CentralizedCBF(4, 2, params).filter(b, ub)
        assert joint.found and ra.found and rb.found
        assert len(joint.active_pairs) >= 2
        np.testing.assert_allclose(joint.u, np.vstack([ra.u, rb.u]), atol=1e-9)


def test_osqp_takes_over_when_active_set_cannot_finish(monkeypatch):
    params = CBFParams(arena=((-2, 2), (-2, 2)), sensing_radius=1.0)
    x = np.array([[0.0, 0.0], [0.3, 0.0], [0.15, 0.25], [1.5, 1.5]])
    u_hat = np.array([[0.4, 0.0], [-0.4, 0.0], [0.0, -0.4], [0.1, 0.1]])
    exact = CentralizedCBF(4, 2, params)
    res = exact.filter(x, u_hat)
    assert res.status is CBFStatus.SOLVED
    assert exact.stats.active_set_solves == 1 and exact.stats.osqp_solves == 0
    assert exact.stats.setups == 0  # OSQP is set up only when needed

    def give_up(self, target, warm=None, tol=1e-14, max_iter=4000):
        return target, DEPENDENT, 1, np.zeros(0, dtype=np.int64)

    monkeypatch.setattr(centralized_module.SwarmProjection, "solve", give_up)
    cbf = CentralizedCBF(4, 2, params)
    fallback = cbf.filter(x, u_hat)
    assert fallback.status is CBFStatus.SOLVED
    assert cbf.stats.osqp_solves == 1 and cbf.stats.setups == 1
    np.testing.assert_allclose(fallback.u, res.u, atol=1e-6)
    assert fallback.active_pairs.tolist() == res.active_pairs.tolist()


def test_unknown_method_is_a_config_error():
    with pytest.raises(CBFConfigError) as err:
        CentralizedCBF(3, 2, CBFParams(), method="qpoases")
    assert err.value.field == "method"


def test_dense_fast_changing_active_sets_are_routed_to_osqp():
    """Every pair may bind (linear gamma = 1, no sensing radius) and the nominal commands are
    fresh noise each tick: the active-set method would need many steps, so the filter hands
    the following ticks to OSQP (and retries later, warm-started from OSQP's active set).
    OSQP's answers are then polished to the exact minimiser: never worse than the OSQP-only
    filter's, and equal to them to OSQP's accuracy."""
    n, d = 24, 2
    params = CBFParams(gamma=1.0, class_k="linear", safety_distance=0.1, max_speed=1.0)
    rng = np.random.default_rng(5)
    side = int(np.ceil(np.sqrt(n)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n]
    x = 0.25 * grid + 0.02 * rng.normal(size=(n, d))
    auto = CentralizedCBF(n, d, params)
    ref = CentralizedCBF(n, d, params, method="osqp")
    repairs = 0
    for _ in range(30):
        u_hat = 5.0 * rng.normal(size=(n, d))
        ra, ro = auto.filter(x, u_hat), ref.filter(x, u_hat)
        assert ra.found and ro.found
        assert len(ra.active_boundary) == 0  # no arena: no wall is ever active
        # On OSQP ticks the auto filter polishes OSQP's answer to the exact minimiser.
        target = saturate(u_hat, params.resolve(d).speed_bound)
        f_auto, f_ref = np.sum((ra.u - target) ** 2), np.sum((ro.u - target) ** 2)
        assert f_auto <= f_ref + 1e-9 * (1 + f_ref)
        if ref.stats.repairs == repairs:  # (a shrunk OSQP answer is admissible, not optimal)
            assert f_ref <= f_auto + 1e-4 * (1 + f_auto)
            np.testing.assert_allclose(ra.u, ro.u, atol=1e-2)
        repairs = ref.stats.repairs
        x = x + 0.05 * ro.u
    assert auto.stats.osqp_solves >= 10
    assert 1 <= auto.stats.active_set_solves < 30
    assert auto.stats.repairs == 0  # every OSQP answer was polished to the exact minimiser


def test_spd_solve_small_and_large_systems():
    rng = np.random.default_rng(9)
    for k in range(1, 10):  # plain-float path up to 6 x 6, numpy beyond
        for _ in range(50):
            A = rng.normal(size=(k, k + 2))
            G = A @ A.T
            b = rng.normal(size=k)
            x = spd_solve(G, b)
            assert x is not None
            np.testing.assert_allclose(x, np.linalg.solve(G, b), rtol=1e-8, atol=1e-10)
        # Two identical rows: dependent, refused on both paths.
        A = rng.normal(size=(k, 3))
        A = np.vstack([A, A[:1]])
        assert spd_solve(A @ A.T, np.ones(k + 1)) is None
