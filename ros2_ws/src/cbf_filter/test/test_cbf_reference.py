"""The filters against reference solutions computed with cvxpy (Clarabel) on random instances.

The reference QP is written here from the formulas (Robotarium / Wang-Ames-Egerstedt 2017,
eq. (12)), not with the package's constraint builders:

    min sum ||u_i - u_hat_i||^2
    s.t. -2 (W e_ij)^T (u_i - u_j) <= alpha(||e_ij||_W^2 - Ds^2)   pairs within range
         -alpha_b(x_ik - lo_k) <= u_ik <= alpha_b(hi_k - x_ik)     walls
         n_k^T u_i <= r                                          speed polytope

As in the Robotarium, the QP's target is the nominal command thresholded to the speed
limit (here the polytope's inscribed radius r); a nominal command that already satisfies
every barrier row and ``||u_hat|| <= max_speed`` is passed through unchanged.

The centralized form is checked with both of its solvers (the exact active-set method and
OSQP). Tolerances: our answer must satisfy every reference row to 1e-9 (1 + |bound|), its
objective (distance to the thresholded target) must not exceed the reference optimum by
more than 1e-7 (1 + f*), and (strong convexity) the two minimisers must agree to 1e-4 in
the max norm; the looser last bound
is Clarabel's accuracy on near-degenerate instances, not ours (our KKT residuals are ~1e-12).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from cbf_filter import CBFParams, CBFStatus, CentralizedCBF, DecentralizedCBF
from cbf_filter.active_set import INFEASIBLE, OPTIMAL, solve_projection
from cbf_filter.params import speed_polytope

ARENA = ((-1.0, 1.0), (-1.0, 1.0), (0.0, 1.0))


def _alpha(h, gamma, kind, ts):
    a = gamma * h if kind == "linear" else gamma * h**3
    if ts is not None and h > 0:
        a = min(a, h / ts)
    return a


def _random_state(rng, n, d, ds, margin):
    lo = np.array([a[0] for a in ARENA[:d]]) + margin
    hi = np.array([a[1] for a in ARENA[:d]]) - margin
    pts = []
    while len(pts) < n:
        p = lo + (hi - lo) * rng.random(d)
        if all(np.linalg.norm(p - q) > ds * 1.02 for q in pts):
            pts.append(p)
    return np.array(pts)


def _reference(x, u_hat, p: CBFParams, d, share=None, own=None):
    """cvxpy solution of the centralized QP (or of robot ``own``'s half with ``share``).

    Returns ``(problem, u_variable, barrier_and_wall_constraints, speed_constraints,
    thresholded_target)``.
    """
    n = len(x)
    vmax = p.max_speed
    normals, ratio = speed_polytope(d, p.speed_facets)
    margin = p.safety_distance / 2
    lo = np.array([a[0] for a in ARENA[:d]]) + margin
    hi = np.array([a[1] for a in ARENA[:d]]) - margin
    rows = []  # (coefficient dict robot -> vector, bound)
    for i in range(n):
        for j in range(i + 1, n):
            e = x[i] - x[j]
            if p.sensing_radius is not None and np.linalg.norm(e) > p.sensing_radius:
                continue
            b = _alpha(e @ e - p.safety_distance**2, p.gamma, p.class_k, p.sample_time)
            rows.append(({i: -2 * e, j: 2 * e}, b))
    robots = list(range(n)) if own is None else [own]
    u = cp.Variable((n, d))
    cons, speed = [], []
    for coef, b in rows:
        if own is None:
            cons.append(sum(c @ u[k] for k, c in coef.items()) <= b)
        elif own in coef:
            cons.append(coef[own] @ u[own] <= share * b)
    for i in robots:
        speed.append(normals @ u[i] <= vmax * ratio)
        cons.append(u[i] >= -_alpha_vec(x[i] - lo, p))
        cons.append(u[i] <= _alpha_vec(hi - x[i], p))
    r = vmax * ratio
    norms = np.linalg.norm(u_hat, axis=1, keepdims=True)
    target = u_hat * np.minimum(1.0, r / np.maximum(norms, 1e-300))
    prob = cp.Problem(cp.Minimize(cp.sum_squares(u[robots] - target[robots])), cons + speed)
    prob.solve(solver=cp.CLARABEL)
    return prob, u, cons, speed, target


def _alpha_vec(h, p):
    return np.array([_alpha(v, p.gamma, p.class_k, p.sample_time) for v in h])


def _max_violation(constraints, u_var, u_ours, robots):
    saved = u_var.value.copy()
    u_var.value = np.where(np.isin(np.arange(len(saved)), robots)[:, None], u_ours, saved)
    worst = 0.0
    for c in constraints:
        bound = np.max(np.abs(np.atleast_1d(c.args[1].value)))
        worst = max(worst, float(np.max(c.violation())) / (1 + bound))
    u_var.value = saved
    return worst


def _check(res_status, ref_problem, u_ours, u_hat, robots, vmax):
    prob, u_var, cons, speed, target = ref_problem
    assert prob.status == cp.OPTIMAL, prob.status
    if res_status is CBFStatus.NOMINAL_SAFE:
        # Passed through: the nominal command itself satisfies every barrier / wall row and
        # the exact speed limit (the polytope rows are the QP's stand-in for the latter).
        np.testing.assert_array_equal(u_ours[robots], u_hat[robots])
        assert np.all(np.linalg.norm(u_hat[robots], axis=1) <= vmax)
        assert _max_violation(cons, u_var, u_ours, robots) <= 1e-12
        return
    assert _max_violation(cons + speed, u_var, u_ours, robots) <= 1e-9
    ref = u_var.value
    f_ours = float(np.sum((u_ours[robots] - target[robots]) ** 2))
    assert f_ours <= prob.value + 1e-7 * (1 + prob.value)
    assert np.max(np.abs(u_ours[robots] - ref[robots])) <= 1e-4


@pytest.mark.parametrize("method", ["auto", "osqp"])
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("d", [2, 3])
def test_centralized_matches_cvxpy(seed, d, method):
    rng = np.random.default_rng(100 * d + seed)
    kind = ["cubic", "linear"][seed % 2]
    p = CBFParams(
        gamma=[100.0, 5.0][seed % 2],
        class_k=kind,
        safety_distance=0.15,
        max_speed=0.5,
        arena=ARENA,
        sensing_radius=[None, 0.8][seed % 3 == 0],
        sample_time=[None, 0.05][seed % 4 == 1],
    )
    n = int(rng.integers(2, 12))
    x = _random_state(rng, n, d, p.safety_distance, p.safety_distance / 2)
    # Nominal commands that drive robots into each other and into the walls.
    u_hat = rng.normal(scale=0.6, size=(n, d)) + 0.8 * (x.mean(axis=0) - x)
    res = CentralizedCBF(n, d, p, method=method).filter(x, u_hat)
    assert res.found and res.status in (CBFStatus.SOLVED, CBFStatus.NOMINAL_SAFE)
    ref = _reference(x, u_hat, p, d)
    _check(res.status, ref, res.u, u_hat, np.arange(n), p.max_speed)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("d", [2, 3])
def test_decentralized_matches_cvxpy(seed, d):
    rng = np.random.default_rng(1000 + 100 * d + seed)
    p = CBFParams(
        gamma=100.0,
        class_k=["cubic", "linear"][seed % 2],
        max_speed=0.5,
        arena=ARENA,
        sensing_radius=[None, 0.7][seed % 2],
    )
    n = int(rng.integers(2, 10))
    x = _random_state(rng, n, d, p.safety_distance, p.safety_distance / 2)
    u_hat = rng.normal(scale=0.6, size=(n, d)) + 0.8 * (x.mean(axis=0) - x)
    cbf = DecentralizedCBF(d, p)
    batch = cbf.filter(x, u_hat)
    assert batch.found
    for i in range(n):
        single = cbf.filter_robot(x[i], u_hat[i], np.delete(x, i, axis=0))
        np.testing.assert_allclose(single.u, batch.u[i], atol=1e-12)
        ref = _reference(x, u_hat, p, d, share=0.5, own=i)
        _check(single.status, ref, batch.u, u_hat, [i], p.max_speed)


def test_active_set_solver_matches_cvxpy_and_detects_infeasibility():
    rng = np.random.default_rng(7)
    n_opt = n_inf = 0
    for _ in range(300):
        d = int(rng.integers(2, 4))
        m = int(rng.integers(1, 20))
        G = rng.normal(size=(m, d))
        b = rng.normal(size=m)
        u_hat = rng.normal(scale=3, size=d)
        u, code, _, lam = solve_projection(G, b, u_hat)
        x = cp.Variable(d)
        prob = cp.Problem(cp.Minimize(cp.sum_squares(x - u_hat)), [G @ x <= b])
        prob.solve(solver=cp.CLARABEL)
        if prob.status == cp.INFEASIBLE:
            assert code == INFEASIBLE
            n_inf += 1
            continue
        assert code == OPTIMAL
        n_opt += 1
        # KKT: stationarity, primal feasibility, dual feasibility, complementarity.
        np.testing.assert_allclose(u - u_hat + G.T @ lam, 0, atol=1e-10)
        assert np.all(G @ u - b <= 1e-10 * (1 + np.abs(b)))
        assert np.all(lam >= 0)
        assert np.all(np.abs(lam * (G @ u - b)) <= 1e-8)
        assert np.sum((u - u_hat) ** 2) <= prob.value + 1e-7 * (1 + prob.value)
    assert n_opt > 50 and n_inf > 50
