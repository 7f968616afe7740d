"""Batched per-robot filters (issue #17): ``filter_batch`` equals each robot's own filter.

* hypothesis: on random configurations (2-D and 3-D, with and without arena, sensing radius,
  speed limit; linear or cubic class-K; neighbours close, overlapping, coincident, far; NaN
  or absurd inputs; scalar or per-neighbour shares) every robot's result of one
  :func:`filter_batch` equals ``filter_robot`` on the same inputs bit for bit (command,
  status, fallback, active rows, counts, message), and each filter's statistics record its
  own robot only;
* a robot's result is the same, bit for bit, whatever the other robots of the batch are
  given (positions, commands, neighbours, anything beyond its range);
* bad input: filters with different parameters, or lists of different lengths, are refused
  with one line naming the problem.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cbf_filter import CBFParams, DecentralizedCBF
from cbf_filter.decentralized import batch_key, filter_batch
from cbf_filter.errors import CBFConfigError, CBFInputError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _same(a, b) -> str | None:
    """The first field in which two results differ (bit level for arrays), or None."""
    for f in dataclasses.fields(a):
        if f.name == "solve_time_s":
            continue
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, np.ndarray):
            if va.dtype != vb.dtype or va.shape != vb.shape or va.tobytes() != vb.tobytes():
                return f"{f.name}: {va!r} != {vb!r}"
        elif va != vb:
            return f"{f.name}: {va!r} != {vb!r}"
    return None


def _params(rng, d) -> CBFParams:
    arena = None
    if rng.random() < 0.7:
        arena = ((-1.5, 1.5), (-1.5, 1.5), (0.0, 2.0))[:d]
    return CBFParams(
        gamma=float(rng.choice([1.0, 100.0, 1e4])),
        safety_distance=float(rng.choice([0.1, 0.2, 0.3])),
        class_k=str(rng.choice(["linear", "cubic"])),
        max_speed=None if rng.random() < 0.2 else float(rng.choice([0.3, 0.5])),
        arena=arena,
        sensing_radius=None if rng.random() < 0.3 else float(rng.choice([0.4, 1.0])),
        sample_time=None if rng.random() < 0.3 else 0.05,
    )


def _robot(rng, d, own=None):
    """Position, nominal, neighbours and share of one robot (own position optional)."""
    x = rng.uniform(-1.6, 1.6, d) if own is None else own
    if d == 3 and own is None:
        x[2] = rng.uniform(-0.1, 2.1)
    k = int(rng.integers(0, 7))
    spread = float(rng.choice([0.05, 0.3, 1.2]))
    nb = x + rng.normal(scale=spread, size=(k, d))
    if k and rng.random() < 0.1:
        nb[0] = x  # coincident neighbour: the braking fallback
    u = rng.normal(scale=float(rng.choice([0.1, 0.4, 1.0])), size=d)
    if rng.random() < 0.05:
        (x if rng.random() < 0.5 else u)[0] = rng.choice([np.nan, np.inf, 1e9])
    if k and rng.random() < 0.05:
        nb[-1, -1] = np.nan
    share = 0.5 if rng.random() < 0.7 else rng.uniform(0.05, 1.0, size=k)
    return x, u, nb, share


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.sampled_from([2, 3]),
    n=st.integers(1, 9),
)
def test_batch_equals_each_robot_alone_bit_for_bit(seed, d, n):
    rng = np.random.default_rng(seed)
    params = _params(rng, d)
    robots = [_robot(rng, d) for _ in range(n)]
    alone = [DecentralizedCBF(d, params) for _ in range(n)]
    batched = [DecentralizedCBF(d, params) for _ in range(n)]
    expected = [f.filter_robot(x, u, nb, s) for f, (x, u, nb, s) in zip(alone, robots)]
    got = filter_batch(batched, *(list(c) for c in zip(*robots)))
    assert len(got) == n
    for i, (e, g) in enumerate(zip(expected, got)):
        assert _same(e, g) is None, f"robot {i}: {_same(e, g)}"
    for a, b in zip(alone, batched):  # each filter recorded its own robot, once
        assert a.stats.calls == 1
        assert a.stats.as_dict() == b.stats.as_dict()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), d=st.sampled_from([2, 3]), n=st.integers(2, 8))
def test_a_robots_result_ignores_the_other_robots_of_its_batch(seed, d, n):
    rng = np.random.default_rng(seed)
    params = _params(rng, d)
    mine = _robot(rng, d)
    reference = None
    for _ in range(3):  # three different sets of co-located robots, same robot 0
        others = [_robot(rng, d) for _ in range(n - 1)]
        filters = [DecentralizedCBF(d, params) for _ in range(n)]
        out = filter_batch(filters, *(list(c) for c in zip(mine, *others)))[0]
        if reference is None:
            reference = out
        assert _same(reference, out) is None, _same(reference, out)
    alone = DecentralizedCBF(d, params).filter_robot(*mine)
    assert _same(reference, alone) is None


def test_scalar_share_for_all_and_empty_batch():
    params = CBFParams(safety_distance=0.2, max_speed=0.5, sensing_radius=1.0)
    rng = np.random.default_rng(3)
    robots = [_robot(rng, 2) for _ in range(4)]
    xs, us, nbs = ([r[i] for r in robots] for i in range(3))
    filters = [DecentralizedCBF(2, params) for _ in robots]
    got = filter_batch(filters, xs, us, nbs, 0.7)
    for r, g in zip(robots, got):
        assert _same(DecentralizedCBF(2, params).filter_robot(r[0], r[1], r[2], 0.7), g) is None
    assert filter_batch([], [], [], []) == []


def test_unequal_filters_or_lengths_are_refused():
    a = DecentralizedCBF(2, CBFParams(safety_distance=0.2))
    b = DecentralizedCBF(2, CBFParams(safety_distance=0.3))
    assert batch_key(a) != batch_key(b)
    x, u, nb = np.zeros(2), np.zeros(2), np.zeros((0, 2))
    with pytest.raises(CBFConfigError, match="filters"):
        filter_batch([a, b], [x, x], [u, u], [nb, nb])
    with pytest.raises(CBFInputError, match="one each"):
        filter_batch([a, a], [x], [u, u], [nb, nb])
