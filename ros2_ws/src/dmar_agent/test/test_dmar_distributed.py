"""Per-robot DMAR agents over messages: wire format, lockstep equality, locality, real timing."""

import copy

import numpy as np
import pytest
from dmar_agent import distributed
from dmar_agent.agent import DmarAgent
from dmar_agent.distributed import reference_trace, run_distributed
from dmar_agent.errors import ConfigError
from dmar_agent.executor import LocalMap, Memory, TeamPlan
from dmar_agent.protocols import DmarConfig
from dmar_agent.wire import (
    MAX_FLOATS,
    DecideMsg,
    JoinMsg,
    MergeMsg,
    RecruitMsg,
    StateMsg,
    View,
    WireError,
    decode,
    decode_view,
    encode,
    encode_view,
)
from dmar_agent.world import Grid, Instance, make_instance
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_bridge.topics import DMAR_MSG_VERSION

# ---------------------------------------------------------------- wire: strategies
ids = st.integers(0, 40)
opt_ids = st.none() | ids


@st.composite
def local_maps(draw, n_cells=None):
    n = draw(st.integers(1, 450)) if n_cells is None else n_cells
    known = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    free = known & np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    cells = st.integers(0, n - 1)
    return LocalMap(
        known,
        free,
        frozenset(draw(st.lists(cells, max_size=10))),
        frozenset(draw(st.lists(st.tuples(ids, cells), max_size=20))),
        frozenset(draw(st.lists(ids, max_size=20))),
    )


@st.composite
def plans(draw):
    members = draw(st.lists(ids, min_size=1, max_size=20, unique=True))
    controls = {a: tuple(draw(st.lists(st.integers(0, 4), max_size=32))) for a in members}
    idle = frozenset(draw(st.lists(st.sampled_from(members), max_size=5)))
    tasks = frozenset(draw(st.lists(st.integers(0, 399), max_size=10)))
    return TeamPlan(controls, idle, tasks, draw(ids))


@st.composite
def messages(draw):
    step, sender = draw(st.integers(0, 10**9)), draw(ids)
    kind = draw(st.sampled_from(["state", "join", "recruit", "merge", "decide"]))
    if kind == "state":
        mem = Memory(
            sender,
            sees_task=draw(st.booleans()),
            cluster=draw(opt_ids),
            parent=draw(opt_ids),
            children=tuple(draw(st.lists(ids, max_size=4))),
            depth=draw(st.integers(-1, 40)),
            message=draw(st.booleans()),
            map=draw(st.none() | local_maps()),
            plan=draw(st.none() | plans()),
        )
        return StateMsg(sender, step, draw(st.integers(0, 4)), mem)
    if kind == "join":
        return JoinMsg(sender, step, draw(ids))
    if kind == "recruit":
        return RecruitMsg(sender, step, draw(ids), draw(ids), draw(st.integers(0, 40)))
    if kind == "merge":
        return MergeMsg(sender, step, draw(ids), draw(local_maps()))
    return DecideMsg(
        sender,
        step,
        draw(st.integers(1, 3)),
        cand=draw(st.integers(-1, 40)),
        cluster=draw(st.integers(-1, 40)),
        depth=draw(st.integers(-1, 40)),
        accepted=tuple(draw(st.lists(ids, max_size=4))),
        joined=tuple(draw(st.lists(ids, max_size=4))),
    )


def same_map(a, b):
    if a is None or b is None:
        return a is b
    return (
        np.array_equal(a.known, b.known)
        and np.array_equal(a.free, b.free)
        and (a.tasks, a.agents, a.members) == (b.tasks, b.agents, b.members)
    )


def same(a, b):
    """Field-by-field equality of two messages (LocalMap holds arrays)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, StateMsg):
        ma, mb = a.memory, b.memory
        keys = ("id", "sees_task", "cluster", "parent", "children", "depth", "message", "plan")
        return (
            (a.sender, a.ps_step, a.round) == (b.sender, b.ps_step, b.round)
            and all(getattr(ma, f) == getattr(mb, f) for f in keys)
            and same_map(ma.map, mb.map)
        )
    if isinstance(a, MergeMsg):
        return (a.sender, a.ps_step, a.recipient) == (
            b.sender,
            b.ps_step,
            b.recipient,
        ) and same_map(a.map, b.map)
    return a == b


# ---------------------------------------------------------------- wire: properties
@settings(max_examples=200, deadline=None)
@given(messages())
def test_wire_round_trip_is_exact(msg):
    data = encode(msg)
    assert data.dtype == np.float64 and data.ndim == 1 and data.size <= MAX_FLOATS
    assert data[0] == DMAR_MSG_VERSION and data[1] == msg.ps_step
    back = decode(data)
    assert same(back, msg)
    assert np.array_equal(encode(back), data)


def test_wire_20x20_map_with_20_agents_is_small():
    rng = np.random.default_rng(0)
    known = rng.random(400) < 0.8
    lm = LocalMap(
        known,
        known & (rng.random(400) < 0.8),
        frozenset(range(0, 400, 40)),
        frozenset((a, 20 * a) for a in range(20)),
        frozenset(range(20)),
    )
    plan = TeamPlan({a: (1,) * 32 for a in range(20)}, frozenset(), frozenset(range(10)), 0)
    assert encode(MergeMsg(1, 5, 2, lm)).size < 120
    assert encode(StateMsg(1, 5, 0, Memory(1, map=lm, plan=plan))).size < 900


@settings(max_examples=300, deadline=None)
@given(messages(), st.data())
def test_wire_decode_of_damaged_payloads_raises_wire_error_only(msg, data):
    good = encode(msg)
    how = data.draw(st.sampled_from(["cut", "poke", "grow", "junk"]))
    if how == "cut":
        bad = good[: data.draw(st.integers(0, good.size - 1))]
    elif how == "poke":
        bad = good.copy()
        i = data.draw(st.integers(0, good.size - 1))
        bad[i] = data.draw(st.sampled_from([np.nan, np.inf, -2.0, 0.5, 1e300, 7.0, 2.0**50]))
    elif how == "grow":
        bad = np.concatenate([good, data.draw(st.lists(st.floats(), min_size=1, max_size=5))])
    else:
        bad = data.draw(st.lists(st.floats(allow_nan=True), max_size=60))
    try:
        out = decode(bad)
    except WireError:
        return
    assert np.array_equal(encode(out), np.asarray(bad, dtype=np.float64))


@pytest.mark.parametrize(
    "payload,words",
    [
        (np.zeros(MAX_FLOATS + 1), "exceeds MAX_FLOATS"),
        ([DMAR_MSG_VERSION + 1, 0, 1, 0, 0], "version"),
        ([[1.0, 2.0]], "1-D"),
        (["a", "b"], "not an array of numbers"),
        ([DMAR_MSG_VERSION, 0, 9, 0], "kind"),
        ([DMAR_MSG_VERSION, 0, 2, 1, 3, 0], "trailing"),
    ],
)
def test_wire_rejects_malformed_input_with_a_clear_error(payload, words):
    with pytest.raises(WireError, match=words):
        decode(payload)


def test_view_rows_round_trip_and_bad_rows():
    view = View(
        7,
        (4, 5),
        6,
        np.array([6, 1, 5, 7, 11]),
        np.array([False, True, False, False, False]),
        frozenset({7}),
        {0: 6, 3: 6, 2: 11},
    )
    back = decode_view(encode_view(view), (4, 5), 7, 0)
    assert back.cell == 6 and back.robots == view.robots and back.tasks == view.tasks
    assert np.array_equal(back.cells, view.cells)
    assert np.array_equal(back.obstacle, view.obstacle)
    with pytest.raises(WireError, match="first cell"):
        decode_view(encode_view(view), (4, 5), 7, 2)
    with pytest.raises(WireError, match="outside"):
        decode_view([[9, 0, 0, 0, 0]], (4, 5), 7, 0)
    with pytest.raises(WireError, match="finite integers"):
        decode_view([[np.nan, 0, 0, 0, 0]], (4, 5), 7, 0)


# ---------------------------------------------------------------- lockstep equality
def fig1_instance() -> Instance:
    cells = [(1, 1), (1, 3), (1, 4), (0, 5), (1, 9), (2, 7), (1, 8), (1, 6), (2, 12)]
    agents = np.array([r * 13 + c for r, c in cells])
    return Instance(Grid(np.ones((3, 13), dtype=bool)), agents, np.array([15, 23]))


LOCKSTEP = [
    ("fig1", None, 0, 2, 2, {}),
    (9, "1:1", 0, 3, 2, {}),
    (9, "1:1", 1, 2, 2, {}),
    (9, "2:1", 2, 4, 3, {}),
    (9, "1:2", 3, 3, 2, {"explore": "waypoint"}),
    (9, "1:1", 4, 5, 2, {"policy": "base"}),
    (9, "7agents", 5, 4, 2, {}),
    (20, "1:1", 3, 4, 2, {}),
    (20, "1:1", 4, 6, 3, {}),
    (20, "1:1", 5, 3, 2, {}),
    (20, "1:2", 6, 5, 2, {"explore": "waypoint"}),
    (20, "2:1", 7, 8, 2, {"policy": "base"}),
]


def lockstep_case(n, ratio, seed, k, psi, extra):
    if n == "fig1":
        inst = fig1_instance()
    elif ratio == "7agents":
        inst = make_instance(n, "1:1", seed, n_agents=7)
    else:
        inst = make_instance(n, ratio, seed)
    return inst, DmarConfig(k=k, psi=psi, seed=seed, max_iterations=300, **extra)


@pytest.mark.parametrize("case", LOCKSTEP, ids=[f"{c[0]}-{c[1]}-s{c[2]}-k{c[3]}" for c in LOCKSTEP])
def test_lockstep_run_equals_run_dmar(case):
    inst, cfg = lockstep_case(*case)
    ref, ref_trace = reference_trace(inst, cfg)
    got, trace = run_distributed(inst, cfg)
    assert ref.completed
    assert trace.clusters == ref_trace.clusters
    assert trace.controls == ref_trace.controls
    for key in ("cost", "exploration_moves", "waits", "ps_steps", "iterations", "clusters"):
        assert getattr(got, key) == getattr(ref, key), key
    assert (got.compute, got.completed, got.cost_at_completion) == (
        ref.compute,
        ref.completed,
        ref.cost_at_completion,
    )
    assert trace.counters["rejected_moves"] == trace.counters["late"] == 0
    assert trace.counters["bad"] == trace.counters["lost"] == 0


def test_gci_is_refused_by_the_agent():
    with pytest.raises(ConfigError, match="gci"):
        DmarAgent(0, DmarConfig(k=2, gci=True), (5, 5))


# ---------------------------------------------------------------- locality
def test_agent_ignores_everything_outside_its_view(monkeypatch):
    """Agent 0's outputs and memory stay the same when messages of robots outside its view
    (valid offers, states, merges addressed to it) and garbage are added at every round."""
    inst = make_instance(20, "1:1", 4)
    cfg = DmarConfig(k=6, psi=2, seed=4, max_iterations=1)
    real = distributed.timed_round
    checked = []

    def wrapped(agent, view, rnd, inbox):
        if agent.id != 0:
            return real(agent, view, rnd, inbox)
        outsiders = [a for a in range(20) if a not in view.robots]
        t = view.ps_step
        lm = LocalMap(np.ones(400, bool), np.ones(400, bool), frozenset({5}), frozenset(), {1})
        noise = [np.array([np.nan, 1.0]), np.zeros(3)]
        for a in outsiders[:3]:
            noise += [
                encode(StateMsg(a, t - 1, 0, Memory(a, sees_task=True, cluster=a, depth=0))),
                encode(StateMsg(a, t, 0, Memory(a, cluster=a, depth=0, message=True))),
                encode(RecruitMsg(a, t, 0, a, 1)),
                encode(JoinMsg(a, t, 0)),
                encode(MergeMsg(a, t, 0, lm)),
                encode(DecideMsg(a, t, max(1, rnd - 1), cand=0, accepted=(0,), joined=(0,))),
            ]
        twin = copy.deepcopy(agent)
        out_a, dt = real(agent, view, rnd, inbox)
        out_b, _ = real(twin, view, rnd, list(inbox) + noise)
        assert out_a.control == out_b.control
        assert [m.tolist() for m in out_a.messages] == [m.tolist() for m in out_b.messages]
        assert encode(StateMsg(0, t, 0, agent.mem)).tolist() == (
            encode(StateMsg(0, t, 0, twin.mem)).tolist()
        )
        checked.append(bool(outsiders))
        return out_a, dt

    monkeypatch.setattr(distributed, "timed_round", wrapped)
    run_distributed(inst, cfg)
    assert len(checked) > 50 and all(checked)


def test_run_unchanged_by_relay_radius_beyond_the_view():
    """A longer relay radius only adds messages from robots outside the view: same run."""
    inst, cfg = lockstep_case(20, "1:1", 3, 4, 2, {})
    a, ta = run_distributed(inst, cfg)
    b, tb = run_distributed(inst, cfg, radius=40.0)
    assert ta.controls == tb.controls and a.cost == b.cost
    assert tb.counters["foreign"] > ta.counters["foreign"]


# ---------------------------------------------------------------- real timing
@pytest.mark.parametrize(
    "n,seed,faults",
    [
        (9, 0, {"loss": 0.2}),
        (9, 1, {"late": 0.3}),
        (9, 2, {"loss": 1.0}),
        (20, 1, {"loss": 0.2, "drop": {0: 50}}),
    ],
)
def test_lost_late_messages_and_a_dropped_robot_still_visit_every_task(n, seed, faults):
    inst = make_instance(n, "1:1", seed)
    cfg = DmarConfig(k=3 if n == 9 else 4, psi=2, seed=seed, max_iterations=300)
    res, trace = run_distributed(inst, cfg, fault_seed=seed, **faults)
    assert res.completed and res.tasks_left == 0 and res.stop_reason == ""
    assert trace.counters["rejected_moves"] == 0
    if "loss" in faults:
        assert trace.counters["lost"] > 0
    if "late" in faults:
        assert trace.counters["late"] > 0


def leader_and_members(inst, cfg):
    _, trace = reference_trace(inst, cfg)
    cl = trace.clusters[0]
    roots = [i for i, (c, p) in enumerate(cl) if c is not None and p is None]
    members = {r: [i for i, (c, _) in enumerate(cl) if c == r and i != r] for r in roots}
    return max(roots, key=lambda r: len(members[r])), members


@pytest.mark.parametrize("when", ["soac", "after_plan"])
def test_a_leader_dropping_out_leaves_its_members_exploring(when):
    """The largest cluster's leader vanishes mid-SOAC or right after planning: its members
    hear nobody above them, leave the cluster, explore, and the tasks still get visited."""
    inst = make_instance(20, "1:1", 5)
    cfg = DmarConfig(k=4, psi=2, seed=5, max_iterations=300)
    leader, members = leader_and_members(inst, cfg)
    assert members[leader]
    sched = DmarAgent(0, cfg, (20, 20)).schedule
    plan_step = next(i for i, f in enumerate(sched) if f.__name__ == "tmar_plan_step")
    at = 5 if when == "soac" else plan_step + 1
    res, trace = run_distributed(inst, cfg, drop={leader: at})
    assert res.completed
    assert all(row[leader] == -1 for row in trace.controls)
    first_em = trace.controls[: cfg.lam_steps]
    moved = [i for i in members[leader] if any(row[i] != 4 for row in first_em)]
    assert moved  # they did not wait for a plan that never came


def test_agent_counts_garbage_and_late_payloads_and_goes_on():
    inst = make_instance(9, "1:1", 0)
    cfg = DmarConfig(k=3, psi=2)
    world = distributed._World(inst, cfg.k)
    agent = DmarAgent(0, cfg, (9, 9))
    view = world.view(0, list(range(9)), 0)
    out = agent.round(view, 0, [np.array([1.0]), np.zeros(10), encode(JoinMsg(1, 0, 0))])
    assert agent.counters["bad"] == 2 and len(out.messages) == 1
    agent.round(world.view(0, list(range(9)), 1), 0, [])
    agent.round(world.view(0, list(range(9)), 2), 0, [encode(StateMsg(1, 0, 0, Memory(1)))])
    assert agent.counters["late"] >= 1


def test_an_agent_that_misses_steps_explores_until_the_next_iteration():
    """A view skipped mid-iteration (the node fell behind the world) must not leave the agent
    running phases on a half-built state (it crashed in EM with no plan): it sits the iteration
    out as an explorer, counted, and runs the protocol again from the next iteration."""
    inst = make_instance(9, "1:1", 0)
    cfg = DmarConfig(k=3, psi=2)
    world = distributed._World(inst, cfg.k)
    agent = DmarAgent(0, cfg, (9, 9))
    n = len(agent.schedule)
    present = list(range(len(inst.agents)))
    for t in range(3):
        agent.round(world.view(0, present, t), 0, [])
    assert agent.counters["skipped_steps"] == 0
    moves = [t for t in range(n) if agent.is_move_step(t)]
    out = agent.round(world.view(0, present, moves[0]), 0, [])  # steps 3 .. moves[0]-1 missed
    assert agent.counters["skipped_steps"] == 1
    assert agent.mem.explore and agent.mem.plan is None and agent.mem.cluster is None
    assert out.control is not None  # an exploration move or WAIT, never a crash
    for t in moves[1:]:
        agent.round(world.view(0, present, t), 0, [])
    late = [t for t in range(moves[-1] + 1, n)]
    for t in late:
        rounds = agent.rounds(t)
        for r in range(rounds):
            agent.round(world.view(0, present, t), r, [])
    agent.round(world.view(0, present, n), 0, [])  # the next iteration starts normally
    assert agent.counters["skipped_steps"] == 1 and not agent._detached


def test_an_agent_started_mid_iteration_waits_for_the_next_one():
    inst = make_instance(9, "1:1", 0)
    cfg = DmarConfig(k=3, psi=2)
    world = distributed._World(inst, cfg.k)
    agent = DmarAgent(2, cfg, (9, 9))
    present = list(range(len(inst.agents)))
    out = agent.round(world.view(2, present, 5), 0, [])
    assert agent.counters["skipped_steps"] == 1 and agent.mem.explore
    assert len(out.messages) == 1  # its (blank) state only: it writes nobody's memory


def test_background_planning_gives_the_same_run():
    """TMAR's rollout in a worker thread (the robot's loop keeps ticking) changes nothing."""
    inst, cfg = lockstep_case(20, "1:1", 4, 6, 3, {})
    ref, ref_trace = reference_trace(inst, cfg)
    got, trace = run_distributed(inst, cfg, background_plan=True)
    assert trace.controls == ref_trace.controls and trace.clusters == ref_trace.clusters
    assert (got.cost, got.compute) == (ref.cost, ref.compute)
    assert len(trace.plan_tick_s) > 0


def test_round_while_planning_in_background_is_refused():
    inst = make_instance(9, "1:1", 0)
    cfg = DmarConfig(k=3, psi=2)
    world = distributed._World(inst, cfg.k)
    agent = DmarAgent(0, cfg, (9, 9), background_plan=True)
    plan_step = next(i for i, f in enumerate(agent.schedule) if f.__name__ == "tmar_plan_step")
    agent._last_t = plan_step - 1  # as if the steps before had run here (none is skipped)
    view = world.view(0, list(range(9)), plan_step)
    out = agent.round(view, 0, [])
    assert out.pending and out.messages == []
    with pytest.raises(RuntimeError, match="pending"):
        agent.round(view, 0, [])
    done = agent.poll(wait=True)
    assert not done.pending and len(done.messages) == 1
    assert agent.poll() is None
