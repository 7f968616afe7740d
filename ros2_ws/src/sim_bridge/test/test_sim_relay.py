"""Comm relay core: range C at send and delivery time, latency, seeded drops, bundles."""

from __future__ import annotations

from array import array

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sim_bridge.relay import MAX_LATENCY_S, CommRelay, comm_problem, pack_bundle
from sim_bridge.topics import COMM_MAX_LEN


def test_delivers_only_within_radius():
    pos = np.array([[0.0, 0, 0], [1.0, 0, 0], [2.5, 0, 0], [0, 2.0, 0]])
    relay = CommRelay(4, comm_radius=2.0)
    assert relay.submit(0, "hello", 0.0, pos) == 2
    got = relay.due(0.0, pos)
    assert got == [(1, "hello"), (3, "hello")]
    assert relay.stats.received == 1 and relay.stats.delivered == 2


def test_latency_and_recheck_at_delivery():
    pos = np.array([[0.0, 0, 0], [1.0, 0, 0], [1.5, 0, 0]])
    relay = CommRelay(3, comm_radius=2.0, latency_s=0.1)
    relay.submit(0, [1.0], 1.0, pos)
    assert relay.due(1.05, pos) == []
    moved = pos.copy()
    moved[2] = [3.0, 0, 0]  # left the range while the message was in flight
    assert relay.due(1.1, moved) == [(1, [1.0])]
    assert relay.stats.out_of_range == 1 and relay.pending == 0


def test_unknown_positions_receive_nothing():
    pos = np.array([[0.0, 0, 0], [0.5, 0, 0], [np.nan, np.nan, np.nan]])
    relay = CommRelay(3, comm_radius=2.0)
    relay.submit(0, "m", 0.0, pos, known=np.array([True, True, False]))
    assert relay.due(0.0, pos) == [(1, "m")]
    with pytest.raises(IndexError):
        relay.submit(5, "m", 0.0, pos)


def test_drop_rate_is_seeded_and_close_to_p():
    pos = np.zeros((11, 3))
    pos[:, 0] = np.linspace(0, 1, 11)

    def run(seed):
        relay = CommRelay(11, comm_radius=2.0, drop_prob=0.3, seed=seed)
        for k in range(200):
            relay.submit(k % 11, k, float(k), pos)
        return relay.due(1e9, pos), relay.stats

    a, stats = run(1)
    b, _ = run(1)
    assert a == b
    assert stats.dropped / (200 * 10) == pytest.approx(0.3, abs=0.03)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"comm_radius": 0.0},
        {"latency_s": -1.0},
        {"drop_prob": 1.0},
        {"n": -1},
        # a delay beyond MAX_LATENCY_S only grows the queue: 1e300 s held every copy for good
        {"latency_s": 1e300},
        {"latency_s": MAX_LATENCY_S + 1.0},
        {"latency_s": float("nan")},
        {"drop_prob": float("nan")},
    ],
)
def test_rejects_bad_parameters(kwargs):
    args = {"n": 3, "comm_radius": 1.0, **kwargs}
    with pytest.raises(ValueError):
        CommRelay(**args)


def test_bundles_group_the_same_copies_per_recipient():
    pos = np.array([[0.0, 0, 0], [1.0, 0, 0], [1.5, 0, 0], [5.0, 0, 0]])
    a, b = CommRelay(4, comm_radius=2.0), CommRelay(4, comm_radius=2.0)
    for relay in (a, b):
        for sender in (2, 0, 1, 3):
            relay.submit(sender, f"from {sender}", 0.0, pos)
    copies = a.due(0.0, pos)
    bundles = b.due_bundles(0.0, pos)
    assert bundles == {
        0: ["from 2", "from 1"],
        1: ["from 2", "from 0"],
        2: ["from 0", "from 1"],
    }
    assert sorted((j, d) for j, ds in bundles.items() for d in ds) == sorted(copies)
    assert a.stats == b.stats and b.stats.delivered == 6 and b.pending == 0


def test_pack_bundle_rows_and_lengths():
    rows = [[0.0, 1.0, 5.0], [2.0, 1.0, 6.0], [3.0, 1.0], array("d", [4.0, 1.0, 7.0])]
    packed = pack_bundle(rows)
    assert packed == [  # runs of equal length, so the bundles keep the send order
        (3, array("d", [0.0, 1.0, 5.0, 2.0, 1.0, 6.0])),
        (2, array("d", [3.0, 1.0])),
        (3, array("d", [4.0, 1.0, 7.0])),
    ]
    assert rows[3] == array("d", [4.0, 1.0, 7.0])  # inputs are not modified
    assert pack_bundle([]) == []


@settings(max_examples=100, deadline=None)
@given(
    st.integers(2, 12).flatmap(
        lambda n: st.tuples(
            st.just(n),
            arrays(float, (3, n, 3), elements=st.floats(-3, 3)),
            st.lists(st.integers(0, n - 1), min_size=1, max_size=20),
        )
    ),
    st.floats(0.1, 3.0),
    st.sampled_from([0.0, 0.05]),
    st.floats(0.0, 0.9),
)
def test_never_delivers_beyond_c(case, radius, latency, drop):
    n, frames, senders = case
    relay = CommRelay(n, comm_radius=radius, latency_s=latency, drop_prob=drop, seed=7)
    t = 0.0
    for k, sender in enumerate(senders):
        pos = frames[k % 3]
        relay.submit(sender, (sender, t), t, pos)
        t += 0.02
        now_pos = frames[(k + 1) % 3]
        for recipient, (src, _) in relay.due(t, now_pos):
            assert recipient != src
            assert np.linalg.norm(now_pos[recipient] - now_pos[src]) <= radius


@settings(max_examples=100, deadline=None)
@given(
    st.integers(2, 12).flatmap(
        lambda n: st.tuples(
            st.just(n),
            arrays(float, (3, n, 3), elements=st.floats(-3, 3)),
            st.lists(st.integers(0, n - 1), min_size=1, max_size=30),
        )
    ),
    st.floats(0.1, 3.0),
    st.sampled_from([0.0, 0.05]),
    st.floats(0.0, 0.9),
    st.integers(1, 6),
)
def test_bundles_never_deliver_beyond_c_and_keep_every_copy(case, radius, latency, drop, per_flush):
    """Bundled delivery (a flush every ``per_flush`` sends) = the per-copy delivery of an
    identical relay: same copies, same order per recipient, and none beyond C at delivery."""
    n, frames, senders = case
    bundled = CommRelay(n, comm_radius=radius, latency_s=latency, drop_prob=drop, seed=7)
    single = CommRelay(n, comm_radius=radius, latency_s=latency, drop_prob=drop, seed=7)
    t = 0.0
    for k, sender in enumerate(senders):
        pos = frames[k % 3]
        for relay in (bundled, single):
            relay.submit(sender, (sender, k), t, pos)
        t += 0.02
        if (k + 1) % per_flush and k + 1 < len(senders):
            continue
        now_pos = frames[(k + 1) % 3]
        expect: dict[int, list] = {}
        for recipient, data in single.due(t, now_pos):
            expect.setdefault(recipient, []).append(data)
        got = bundled.due_bundles(t, now_pos)
        assert got == expect
        for recipient, msgs in got.items():
            for src, _ in msgs:
                assert recipient != src
                assert np.linalg.norm(now_pos[recipient] - now_pos[src]) <= radius
    assert bundled.stats == single.stats


def test_inbox_holds_copies_until_their_recipient_is_flushed():
    pos = np.array([[0.0, 0, 0], [1.0, 0, 0], [1.5, 0, 0]])
    relay = CommRelay(3, comm_radius=2.0)
    relay.submit(0, "a", 0.0, pos)
    relay.submit(1, "b", 0.01, pos)
    relay.collect(0.01)
    assert relay.pending == 0 and [relay.held(j) for j in range(3)] == [1, 1, 2]
    assert relay.take(2, pos) == ["a", "b"] and relay.held(2) == 0
    moved = pos.copy()
    moved[0] = [-1.5, 0, 0]  # 2.5 m from robot 1 by the time 0 and 1 are flushed
    assert relay.take(1, moved) == [] and relay.take(0, moved) == []
    moved[2] = [-0.25, 0, 0]
    relay.submit(2, "c", 0.02, moved)  # robot 2, between them, reaches both
    relay.collect(0.02)
    assert relay.take(0, moved) == ["c"] and relay.take(1, moved) == ["c"]
    assert relay.stats.delivered == 4 and relay.stats.out_of_range == 2


@settings(max_examples=100, deadline=None)
@given(
    st.integers(2, 10).flatmap(
        lambda n: st.tuples(
            st.just(n),
            arrays(float, (3, n, 3), elements=st.floats(-3, 3)),
            st.lists(
                st.tuples(st.integers(0, n - 1), st.lists(st.integers(0, n - 1), max_size=n)),
                min_size=1,
                max_size=25,
            ),
        )
    ),
    st.floats(0.1, 3.0),
    st.sampled_from([0.0, 0.05]),
    st.floats(0.0, 0.9),
)
def test_flushing_recipients_one_by_one_never_delivers_beyond_c(case, radius, latency, drop):
    """Each step one robot sends and some robots are flushed (take) at the positions of that
    moment: nothing taken is from beyond C then, and every copy is delivered, discarded or
    still held."""
    n, frames, steps = case
    relay = CommRelay(n, comm_radius=radius, latency_s=latency, drop_prob=drop, seed=3)
    t, queued = 0.0, 0
    for k, (sender, flushed) in enumerate(steps):
        queued += relay.submit(sender, sender, t, frames[k % 3])
        t += 0.02
        now_pos = frames[(k + 1) % 3]
        relay.collect(t)
        for j in flushed:
            for src in relay.take(j, now_pos):
                assert src != j
                assert np.linalg.norm(now_pos[j] - now_pos[src]) <= radius
    held = sum(relay.held(j) for j in range(n))
    in_queue = sum(p.recipients.size for p in relay._queue)
    assert relay.stats.delivered + relay.stats.out_of_range + held + in_queue == queued


@given(
    values=arrays(np.float64, st.integers(0, 12), elements=st.floats(allow_nan=True, width=64)),
    sender=st.integers(0, 3),
)
def test_comm_problem_passes_exactly_the_contract_messages(values, sender):
    """Relayed only: the header, the publisher's own index, every value finite, at most
    COMM_MAX_LEN values (the wire contract's comm layout)."""
    ok = len(values) >= 2 and values[0] == sender and np.isfinite(values).all()
    assert (comm_problem(sender, values) is None) == ok


def test_comm_problem_bounds_the_length():
    row = np.zeros(COMM_MAX_LEN)
    assert comm_problem(0, row) is None
    assert "COMM_MAX_LEN" in comm_problem(0, np.zeros(COMM_MAX_LEN + 1))
    assert "COMM_MAX_LEN" in comm_problem(0, np.zeros(1_000_000))
