"""Algorithm 2 (Appendix C): continuous-space DMAR collision avoidance, unit and property tests."""

import numpy as np
from dmar_agent.collision import (
    LOCAL_RADIUS,
    Intent,
    SequenceFollower,
    goes_first,
    must_yield,
    resolve_moves,
    sequence_cells,
)
from dmar_agent.world import DC, DR, EAST, NORTH, SOUTH, WAIT, WEST
from hypothesis import given, settings
from hypothesis import strategies as st


def _walk(free2d: np.ndarray, cell: int, steps: list[int]) -> list[int]:
    """Controls of a walk from ``cell`` that follows ``steps`` where they stay on free cells."""
    h, w = free2d.shape
    r, c = divmod(cell, w)
    out = []
    for u in steps:
        rr, cc = r + DR[u], c + DC[u]
        if 0 <= rr < h and 0 <= cc < w and free2d[rr, cc]:
            out.append(u)
            r, c = rr, cc
    return out


@st.composite
def scenes(draw, explorers: bool = True):
    """A small grid, distinct agent cells, members' feasible sequences and explorers' moves."""
    h = draw(st.integers(2, 6))
    w = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    free2d = rng.random((h, w)) > draw(st.sampled_from([0.0, 0.15, 0.3]))
    cells = np.flatnonzero(free2d.reshape(-1))
    if cells.size < 2:
        free2d[:] = True
        cells = np.arange(h * w)
    m = draw(st.integers(2, min(8, cells.size)))
    start = rng.choice(cells, size=m, replace=False).tolist()
    controls = {}
    intents = []
    for i, c in enumerate(start):
        if not explorers or rng.random() < 0.7:
            steps = rng.integers(0, 5, size=int(rng.integers(0, 10))).tolist()
            controls[i] = _walk(free2d, c, steps)
            intents.append(Intent(path=sequence_cells(c, controls[i], w), member=True))
        else:
            moves = [sequence_cells(c, [u], w)[0] for u in rng.permutation(4).tolist()]
            ok = [x for x in moves if 0 <= x < h * w and abs(x % w - c % w) <= 1]
            intents.append(Intent(explore=tuple(ok[: int(rng.integers(0, 5))])))
    return free2d, start, intents, controls


def _check(free2d, cells, intents, res) -> None:
    w = free2d.shape[1]
    t = res.targets.tolist()
    assert len(set(t)) == len(t), "two agents target one cell"
    for i, (c, x) in enumerate(zip(cells, t)):
        assert x == c or x not in cells, f"agent {i} heads for a cell another agent stands on"
        assert abs(x // w - c // w) + abs(x % w - c % w) <= 1, "target is not adjacent-or-equal"
        assert free2d.reshape(-1)[x]
        a = int(res.advance[i])
        if intents[i].member:
            assert x == (c if a == 0 else intents[i].path[a - 1])
        else:
            assert a == 0 and (x == c or x in intents[i].explore)


@settings(max_examples=300, deadline=None)
@given(scenes())
def test_one_step_safe_adjacent_consistent_deterministic(scene):
    free2d, cells, intents, _ = scene
    w = free2d.shape[1]
    res = resolve_moves(cells, intents, w, free2d.reshape(-1))
    _check(free2d, cells, intents, res)
    again = resolve_moves(cells, intents, w, free2d.reshape(-1))
    assert np.array_equal(res.targets, again.targets)
    assert np.array_equal(res.advance, again.advance)
    assert np.array_equal(res.final, again.final)


@settings(max_examples=300, deadline=None)
@given(scenes())
def test_progress_when_some_claim_is_on_an_unheld_cell(scene):
    """Whenever a member's next cell is not stood on, some member consumes a control."""
    free2d, cells, intents, _ = scene
    res = resolve_moves(cells, intents, free2d.shape[1], free2d.reshape(-1))
    open_claims = [
        i
        for i, it in enumerate(intents)
        if it.path and (it.path[0] == cells[i] or it.path[0] not in cells)
    ]
    if open_claims:
        assert res.advance.sum() >= 1


@settings(max_examples=150, deadline=None)
@given(scenes())
def test_local_information_gives_the_same_outcome(scene):
    """An agent's outcome depends only on the agents within LOCAL_RADIUS cells."""
    free2d, cells, intents, _ = scene
    w = free2d.shape[1]
    full = resolve_moves(cells, intents, w, free2d.reshape(-1))
    for i, c in enumerate(cells):
        near = [
            j
            for j, d in enumerate(cells)
            if abs(d // w - c // w) + abs(d % w - c % w) <= LOCAL_RADIUS
        ]
        if len(near) == len(cells):
            continue
        sub = resolve_moves(
            [cells[j] for j in near], [intents[j] for j in near], w, free2d.reshape(-1), ids=near
        )
        k = near.index(i)
        assert sub.targets[k] == full.targets[i]
        assert sub.advance[k] == full.advance[i]
        assert sub.final[k] == full.final[i]


def run_phase(free2d, cells, controls, max_steps=None):
    """Drive Algorithm 2 over a whole EM phase (members only); stop at a stall (nothing moved or
    was consumed: the configuration can never change again, every sequence is then final)."""
    w = free2d.shape[1]
    cells = list(cells)
    f = SequenceFollower(controls, w)
    total = sum(len(s) for s in controls.values())
    steps = stalls = 0
    while f.active():
        assert steps <= (max_steps or total + 1), "Algorithm 2 did not end"
        intents = [f.intent(i, c) for i, c in enumerate(cells)]
        res = resolve_moves(cells, intents, w, free2d.reshape(-1))
        _check(free2d, cells, intents, res)
        f.book(res)
        moved = any(int(t) != c for t, c in zip(res.targets, cells))
        cells = [int(t) for t in res.targets]
        steps += 1
        if not moved and not res.advance.any():
            stalls += 1
            for i in controls:
                f.finalise(i)
    return f, cells, steps, stalls


@settings(max_examples=200, deadline=None)
@given(scenes(explorers=False))
def test_whole_phase_no_deadlock_and_cost_accounting(scene):
    """Every member completes its sequence or calls its cell final; the phase ends within
    (total controls + 1) steps; cost = executed + circumvented moves."""
    free2d, cells, _, controls = scene
    f, end, steps, _ = run_phase(free2d, cells, controls)
    assert not f.active()
    planned = sum(sum(1 for u in s if u != WAIT) for s in controls.values())
    assert f.cost + sum(f.dropped.values()) == planned
    assert len(set(end)) == len(end)


def test_free_paths_are_executed_exactly():
    free2d = np.ones((3, 3), dtype=bool)
    controls = {0: [EAST, EAST, SOUTH], 1: [SOUTH, EAST, WAIT]}
    f, end, steps, stalls = run_phase(free2d, [0, 3], controls)
    assert end == [5, 7] and steps == 3 and stalls == 0 and f.cost == 5 and f.skipped == 0


def test_final_position_has_precedence_over_lower_id():
    # 1 x 3 corridor: agents 0 (cell 0) and 1 (cell 2) both want the middle cell 1; for agent 1
    # it is the final position, so it goes first although its ID is larger
    free = np.ones(3, dtype=bool)
    intents = [Intent(path=(1, 2), member=True), Intent(path=(1, 1), member=True)]
    res = resolve_moves([0, 2], intents, 3, free)
    assert res.targets.tolist() == [0, 1] and res.advance.tolist() == [0, 1]
    assert res.blocked.tolist() == [True, False]


def test_ascending_id_breaks_ties():
    free = np.ones(3, dtype=bool)
    intents = [Intent(path=(1, 2), member=True), Intent(path=(1, 0), member=True)]
    res = resolve_moves([0, 2], intents, 3, free)
    assert res.targets.tolist() == [1, 2]


def test_move_ahead_circumvents_a_detour_and_counts_it():
    # agent 0 at cell 4 (centre of 3 x 3) plans N then back S then E; agent 1 wins cell 1 (final)
    free2d = np.ones((3, 3), dtype=bool)
    controls = {0: [NORTH, SOUTH, EAST], 1: [EAST]}
    f = SequenceFollower(controls, 3)
    # a detour N, E, S skips to cell 5 (adjacent) in one move, circumventing N and E
    g = SequenceFollower({0: [NORTH, EAST, SOUTH], 1: [EAST]}, 3)
    res = resolve_moves([4, 0], [g.intent(0, 4), g.intent(1, 0)], 3, free2d.reshape(-1))
    assert res.targets.tolist() == [5, 1] and res.advance.tolist() == [3, 1]
    g.book(res)
    assert g.cost == 4 and g.skipped == 2 and not g.active()
    cells = [4, 0]
    res = resolve_moves(cells, [f.intent(0, 4), f.intent(1, 0)], 3, free2d.reshape(-1))
    # agent 1 takes cell 1 (final there); agent 0 moves ahead along N, S to its own cell 4 (the
    # first safe location), circumventing both moves, which are counted
    assert res.targets.tolist() == [4, 1] and res.advance.tolist() == [2, 1]
    f.book(res)
    assert f.cost == 3 and f.skipped == 2 and f.remaining(0) == (EAST,)


def test_move_ahead_never_circumvents_a_protected_cell():
    free2d = np.ones((3, 3), dtype=bool)
    f = SequenceFollower({0: [NORTH, SOUTH, EAST], 1: [EAST]}, 3)
    res = resolve_moves(
        [4, 0], [f.intent(0, 4), f.intent(1, 0)], 3, free2d.reshape(-1), protected=frozenset({1})
    )
    assert res.targets.tolist() == [4, 1] and res.advance.tolist() == [0, 1]


def test_head_on_in_a_corridor_stalls_and_ends():
    free2d = np.ones((1, 4), dtype=bool)
    f, end, steps, stalls = run_phase(free2d, [1, 2], {0: [EAST, EAST], 1: [WEST, WEST]})
    assert end == [1, 2] and stalls == 1 and f.cost == 0 and sum(f.dropped.values()) == 4


def test_blocked_by_a_finished_member_is_final_at_once():
    free2d = np.ones((1, 3), dtype=bool)
    f = SequenceFollower({0: [EAST, EAST], 1: []}, 3)
    res = resolve_moves([0, 1], [f.intent(0, 0), f.intent(1, 1)], 3, free2d.reshape(-1))
    assert res.final.tolist() == [True, False]


def test_explorers_go_last_and_redraw():
    # 1 x 3: member 0 at cell 0 moves E to cell 1; explorer 1 at cell 2 draws W (cell 1) first,
    # then nothing else is free: it waits; with a free cell 5 below it (2 x 3) it takes that one
    free = np.ones(3, dtype=bool)
    intents = [Intent(path=(1,), member=True), Intent(explore=(1,))]
    assert resolve_moves([0, 2], intents, 3, free).targets.tolist() == [1, 2]
    free = np.ones(6, dtype=bool)
    intents = [Intent(path=(1,), member=True), Intent(explore=(1, 5))]
    assert resolve_moves([0, 2], intents, 3, free).targets.tolist() == [1, 5]


@st.composite
def node_scenes(draw):
    """Robots on distinct cells of a small grid, each with one control."""
    h = draw(st.integers(2, 6))
    w = draw(st.integers(2, 6))
    m = draw(st.integers(2, min(9, h * w)))
    cells = draw(st.lists(st.integers(0, h * w - 1), min_size=m, max_size=m, unique=True))
    controls = draw(st.lists(st.integers(0, 4), min_size=m, max_size=m))
    step = draw(st.integers(0, 1000))
    k = draw(st.integers(2, 4))
    return h, w, cells, controls, step, k


def _node_targets(h, w, cells, controls, step, k):
    """Every robot's target cell under :func:`must_yield`, each deciding on its own view (the
    robots within Manhattan distance ``k`` of its cell), as the DMAR nodes do."""
    targets = []
    for i, (c, u) in enumerate(zip(cells, controls)):
        r, col = divmod(c, w)
        tr, tc = r + DR[u], col + DC[u]
        if u == WAIT or not (0 <= tr < h and 0 <= tc < w):
            targets.append(c)
            continue
        view = {a: x for a, x in enumerate(cells) if abs(x // w - r) + abs(x % w - col) <= k}
        targets.append(c if must_yield(i, (tr, tc), view, w, step, len(cells)) else tr * w + tc)
    return targets


@settings(max_examples=400, deadline=None)
@given(node_scenes())
def test_node_rule_no_shared_target_no_swap_no_held_cell(scene):
    """The node's one-round rule, each robot on its own k >= 2 view: no two robots head for one
    cell, none heads for a cell another stands on (so none swap), targets are adjacent (drones
    and ground robots alike)."""
    h, w, cells, controls, step, k = scene
    t = _node_targets(h, w, cells, controls, step, k)
    assert len(set(t)) == len(t), "two robots head for one cell"
    for i, (c, x) in enumerate(zip(cells, t)):
        assert x == c or x not in cells, f"robot {i} heads for a cell another stands on"
        assert abs(x // w - c // w) + abs(x % w - c % w) <= 1


@settings(max_examples=300, deadline=None)
@given(node_scenes())
def test_node_rule_every_robot_with_a_free_target_gets_its_turn(scene):
    """No robot is held off for good (drones and ground robots: one rule, issue #14's seed 2
    of dmar_mixed.yaml livelocked under the former symmetric ground rule): with the rotated
    precedence, over any n
    consecutive PS steps (n robots) of an unchanged scene, every robot whose target cell is on
    the grid and unoccupied moves at least once (at the step where it goes first of all)."""
    h, w, cells, controls, step, k = scene
    n = len(cells)
    wanting = set()
    for i, (c, u) in enumerate(zip(cells, controls)):
        r, col = divmod(c, w)
        tr, tc = r + DR[u], col + DC[u]
        if u != WAIT and 0 <= tr < h and 0 <= tc < w and tr * w + tc not in cells:
            wanting.add(i)
    moved = set()
    for s in range(step, step + n):
        t = _node_targets(h, w, cells, controls, s, k)
        moved |= {i for i in range(n) if t[i] != cells[i]}
        first = min(range(n), key=lambda i: (i - s) % n)
        assert all(goes_first(first, j, s, n) for j in range(n) if j != first)
    assert wanting <= moved
