"""Bad and degenerate inputs: the fallback (brake to zero) is taken, counted and reported."""

from __future__ import annotations

import numpy as np
import pytest
from cbf_filter import (
    CBFConfigError,
    CBFInfeasibleError,
    CBFInputError,
    CBFInvalidInputError,
    CBFParams,
    CBFSolveError,
    CBFStatus,
    CentralizedCBF,
    DecentralizedCBF,
    UnicycleCBF,
)
from cbf_filter import centralized as centralized_module
from cbf_filter.params import control_rate
from cbf_filter.swarm_active_set import MAX_ITER
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sim_bridge.topics import CMD_TIMEOUT_S

ARENA = ((-2.0, 2.0), (-2.0, 2.0))
PARAMS = CBFParams(arena=ARENA, sensing_radius=1.0)
NO_ROWS = np.zeros(0, dtype=np.int64)


def _filters(n=3):
    return [CentralizedCBF(n, 2, PARAMS), DecentralizedCBF(2, PARAMS)]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_position_brakes_everyone(bad):
    x = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]])
    x[1, 0] = bad
    for cbf in _filters():
        res = cbf.filter(x, np.ones((3, 2)) * 0.1)
        assert not res.found
        assert res.status is CBFStatus.INVALID_INPUT
        assert np.all(res.fallback)
        np.testing.assert_array_equal(res.u, 0.0)
        assert "1" in res.message
        assert cbf.stats.fallback_calls == 1 and cbf.stats.fallback_robots == 3
        with pytest.raises(CBFInvalidInputError):
            res.raise_for_status()


def test_non_finite_nominal():
    x = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]])
    u = np.full((3, 2), 0.1)
    u[2, 1] = np.nan
    cen = CentralizedCBF(3, 2, PARAMS).filter(x, u)
    assert cen.status is CBFStatus.INVALID_INPUT and np.all(cen.u == 0)
    dec = DecentralizedCBF(2, PARAMS).filter(x, u)
    # Decentralized: only the robot with the bad command brakes; the others are certified.
    assert dec.fallback.tolist() == [False, False, True]
    assert np.all(dec.u[2] == 0) and np.all(np.isfinite(dec.u))
    single = DecentralizedCBF(2, PARAMS).filter_robot(x[0], [np.nan, 0.0], x[1:])
    assert single.status is CBFStatus.INVALID_INPUT and np.all(single.u == 0)


def test_coincident_robots_are_degenerate():
    x = np.array([[0.3, 0.3], [0.3, 0.3], [1.0, 1.0]])
    for cbf in _filters():
        res = cbf.filter(x, np.zeros((3, 2)))
        assert res.status is CBFStatus.DEGENERATE
        assert not res.found
        assert np.all(res.u == 0)
    single = DecentralizedCBF(2, PARAMS).filter_robot(x[0], [0.1, 0.0], x[1:])
    assert single.status is CBFStatus.DEGENERATE and np.all(single.u == 0)
    assert single.fallback.tolist() == [True]


def test_jammed_overlap_is_infeasible_and_reported():
    # Robot 0 overlaps both neighbours on opposite sides; without the recovery cap it
    # must move away from both at a speed it does not have.
    p = CBFParams(arena=ARENA, recovery=False, max_speed=0.1, class_k="linear", gamma=10.0)
    x = np.array([[0.0, 0.0], [0.1, 0.0], [-0.1, 0.0]])
    res = DecentralizedCBF(2, p).filter_robot(x[0], [0.0, 0.0], x[1:])
    assert res.status is CBFStatus.INFEASIBLE and not res.found and np.all(res.u == 0)
    with pytest.raises(CBFInfeasibleError):
        res.raise_for_status()
    cen = CentralizedCBF(3, 2, p)
    res = cen.filter(x, np.zeros((3, 2)))
    assert res.status is CBFStatus.INFEASIBLE and np.all(res.u == 0)
    assert cen.stats.status_counts["infeasible"] == 1


def test_recovery_from_overlap_separates():
    x = np.array([[0.0, 0.0], [0.1, 0.0]])
    for cbf in _filters(2):
        res = cbf.filter(x, np.zeros((2, 2)))
        assert res.found, res.message
        assert res.u[0, 0] < 0 < res.u[1, 0]  # pushed apart


@pytest.mark.parametrize("method", ["osqp", "auto"])
def test_solver_failure_is_a_fallback(method, monkeypatch):
    p = CBFParams(arena=ARENA, max_iter=1, eps_abs=1e-12, eps_rel=1e-12, eps_refine=1e-12)
    x = np.array([[0.0, 0.0], [0.4, 0.0], [0.2, 0.3]])
    if method == "auto":
        # The exact active-set method solves this QP without a single add / drop step:
        # make it give up, so that OSQP (one iteration allowed) has to answer, and fails.
        monkeypatch.setattr(
            centralized_module.SwarmProjection,
            "solve",
            lambda self, target, warm=None, tol=0, max_iter=0: (target, MAX_ITER, 2, NO_ROWS),
        )
    cbf = CentralizedCBF(3, 2, p, method=method)
    res = cbf.filter(x, np.array([[0.5, 0.0], [-0.5, 0.0], [0.0, -0.5]]))
    assert res.status is CBFStatus.SOLVER_ERROR
    assert np.all(res.u == 0) and np.all(res.fallback)
    with pytest.raises(CBFSolveError):
        res.raise_for_status()
    assert cbf.stats.as_dict()["status_solver_error"] == 1


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, (4, 2), elements=st.floats(allow_nan=True, allow_infinity=True)),
    arrays(np.float64, (4, 2), elements=st.floats(allow_nan=True, allow_infinity=True)),
)
def test_fuzzed_inputs_never_raise_and_never_emit_non_finite(x, u):
    for cbf in _filters(4):
        res = cbf.filter(x, u)
        assert np.all(np.isfinite(res.u))
        assert res.found == (not np.any(res.fallback))
        assert np.all(res.u[res.fallback] == 0)
    for i in range(4):
        res = DecentralizedCBF(2, PARAMS).filter_robot(x[i], u[i], np.delete(x, i, axis=0))
        assert np.all(np.isfinite(res.u))


def test_shape_and_config_errors_name_the_field():
    cbf = CentralizedCBF(3, 2, PARAMS)
    with pytest.raises(CBFInputError, match="positions"):
        cbf.filter(np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(CBFInputError, match="u_nominal"):
        cbf.filter(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(CBFInputError, match="neighbor_positions"):
        DecentralizedCBF(2, PARAMS).filter_robot([0, 0], [0, 0], np.zeros((2, 3)))
    cases = [
        (dict(gamma=-1.0), "gamma"),
        (dict(gamma=float("nan")), "gamma"),
        (dict(safety_distance=0.0), "safety_distance"),
        (dict(class_k="quadratic"), "class_k"),
        (dict(max_speed=0.0), "max_speed"),
        (dict(arena=((1, -1), (0, 1))), "arena"),
        (dict(arena=((0, 1),)), "arena"),
        (dict(arena=ARENA, boundary_margin=5.0), "boundary_margin"),
        (dict(boundary_margin=0.1), "boundary_margin"),  # no walls: it guarded nothing
        (dict(sensing_radius=0.1), "sensing_radius"),
        (dict(sample_time=0.0), "sample_time"),
        (dict(speed_facets=3), "speed_facets"),
        (dict(axis_scale=(1.0, -1.0)), "axis_scale"),
    ]
    for kwargs, field in cases:
        with pytest.raises(CBFConfigError) as err:
            CentralizedCBF(2, 2, CBFParams(**kwargs))
        assert err.value.field == field
        assert field in str(err.value)
    with pytest.raises(CBFConfigError, match="dim"):
        DecentralizedCBF(4)
    with pytest.raises(CBFConfigError, match="share"):
        DecentralizedCBF(2).filter_robot([0, 0], [0, 0], [[1, 1]], share=1.5)
    with pytest.raises(CBFConfigError, match="projection_distance"):
        UnicycleCBF(2, projection_distance=0.0)
    with pytest.raises(CBFConfigError, match="form"):
        UnicycleCBF(2, form="hybrid")
    # Every configuration error carries a fix to act on (the arena's was empty: "(fix: )").
    for kwargs, _ in cases:
        with pytest.raises(CBFConfigError) as err:
            CentralizedCBF(2, 2, CBFParams(**kwargs))
        assert err.value.fix.strip(), err.value


@pytest.mark.parametrize("hz", [0.0, -1.0, float("inf"), 1e300, 2e4, 1e-300, 3.0])
def test_control_rate_out_of_range_names_the_field(hz):
    """1e-300 Hz passed and overflowed the node's 1 / control_hz timer (a traceback); 1e300 Hz
    and inf passed too (a 0 ns timer: a busy loop; inf ended as "sample_time ... got 0.0")."""
    with pytest.raises(CBFConfigError) as err:
        control_rate(None, hz, min_hz=1.0 / CMD_TIMEOUT_S)
    assert err.value.field == "control_hz" and err.value.fix
    assert control_rate(None, 20.0, min_hz=1.0 / CMD_TIMEOUT_S) == 20.0
    assert control_rate(None, None) == 20.0
