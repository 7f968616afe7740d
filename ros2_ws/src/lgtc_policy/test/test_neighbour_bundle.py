"""A relay bundle stored at once (:meth:`NeighbourTable._store_rows`) leaves the table as the
messages stored one by one (:meth:`NeighbourTable._store`, the reference) do, bit for bit:
random bundles with repeated, foreign, own, fractional, negative and non-finite senders,
stale and fresh stamps, payloads of any float64 (cast to float32 the same way)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lgtc_policy.agent import NeighbourTable

N, OWN, DIM = 6, 2, 3
SENDER = st.one_of(
    st.integers(-1, N).map(float),
    st.sampled_from([0.5, -0.0, float("nan"), float("inf"), 1e300]),
)
ROW = st.tuples(
    SENDER,
    st.one_of(st.floats(-5.0, 5.0), st.just(float("nan"))),
    st.lists(st.floats(-1e6, 1e6, width=32), min_size=DIM, max_size=DIM),
)


def _state(t: NeighbourTable) -> tuple:
    return t.payload.tobytes(), t.stamp.tobytes(), t.heard.tobytes(), t.rejected


@settings(max_examples=400, deadline=None)
@given(st.lists(ROW, max_size=5), st.lists(ROW, min_size=1, max_size=12))
def test_a_bundle_stores_as_its_messages_one_by_one(before, bundle):
    fast = NeighbourTable(N, OWN, DIM, 0.5)
    ref = NeighbourTable(N, OWN, DIM, 0.5)
    for sender, stamp, payload in before:  # some state to be fresher or staler than
        for table in (fast, ref):
            table.receive([sender, stamp, *payload], 1.0)
    data = np.array([[s, t, *p] for s, t, p in bundle], float)
    got = fast.receive(data.reshape(-1), 2.0, DIM + 2)
    want = sum(ref._store(row, 2.0) for row in data)
    assert got == want
    assert _state(fast) == _state(ref)


def test_a_bundle_of_distinct_senders_takes_the_array_path(monkeypatch):
    table = NeighbourTable(N, OWN, DIM, 0.5)
    monkeypatch.setattr(table, "_store", lambda *a: pytest.fail("one by one"))
    rows = [[0.0, 1.0, 1.0, 2.0, 3.0], [3.0, 1.0, 4.0, 5.0, 6.0], [OWN, 1.0, 0.0, 0.0, 0.0]]
    assert table.receive(np.array(rows).reshape(-1), 2.0, DIM + 2) == 2
    assert table.rejected == 1  # its own echo
    assert table.current(2.0).tolist() == [0, 3]
    assert table.payload[3].tolist() == [4.0, 5.0, 6.0]
