"""Simulator core: kinematics, modes, resource release (LGTC Sec. II), events, invariants."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_bridge.config import load_config
from sim_bridge.sim import Mode, Simulator
from sim_bridge.topics import CMD_REJECT_FACTOR, CMD_TIMEOUT_S
from sim_bridge.topics import command_valid as valid_command


def make_cfg(robots=None, consumers=None, events=None, **top):
    data = {
        "fileversion": 1,
        "arena": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "z": [0.0, 2.0]},
        "comm_radius": 2.0,
        "rates": {"control_hz": 20, "sim_hz": 100},
        "robots": robots
        or [
            {"name": "cf1", "kind": "crazyflie", "pose": [0.0, 0.0, 0.0, 0.0]},
            {"name": "g1", "kind": "ground", "pose": [1.0, 0.0, 0.0, 0.0]},
        ],
        "consumers": consumers or [],
        "events": events or [],
    }
    data.update(top)
    return load_config(data)


def fly(sim, steps=200):
    for i in range(sim.n):
        sim.takeoff(i)
    for _ in range(steps):
        sim.step()


def test_takeoff_climbs_to_height_then_flies():
    sim = Simulator(make_cfg())
    assert sim.mode.tolist() == [Mode.GROUNDED, Mode.GROUNDED]
    sim.set_command("cf1", [0.5, 0.0, 0.0])
    sim.step()
    assert sim.pos[0].tolist() == [0.0, 0.0, 0.0]  # grounded drones ignore commands
    ok, _ = sim.takeoff("cf1")
    assert ok and sim.mode[0] == Mode.TAKING_OFF
    for _ in range(99):
        sim.step()
    assert sim.mode[0] == Mode.TAKING_OFF
    sim.step()  # 0.5 m at 0.5 m/s: 100 steps of 10 ms
    assert sim.mode[0] == Mode.FLYING
    assert sim.pos[0, 2] == pytest.approx(0.5)
    assert sim.pos[0, :2].tolist() == [0.0, 0.0]


def test_drone_single_integrator_and_saturation():
    sim = Simulator(make_cfg())
    fly(sim)
    start = sim.pos[0].copy()
    sim.set_command("cf1", [0.3, -0.1, 0.0])
    sim.step()
    np.testing.assert_allclose(sim.pos[0] - start, [0.003, -0.001, 0.0], atol=1e-12)
    sim.set_command("cf1", [2.0, 0.0, 0.0])  # 4x max speed: saturated to 0.5 m/s
    sim.step()
    np.testing.assert_allclose(sim.vel[0], [0.5, 0.0, 0.0], atol=1e-12)


def test_stale_command_holds():
    sim = Simulator(make_cfg())
    fly(sim)
    sim.set_command("cf1", [0.2, 0.0, 0.0])
    steps_fresh = int(round(CMD_TIMEOUT_S / sim.dt))
    for _ in range(steps_fresh):
        sim.step()
        assert sim.vel[0, 0] == pytest.approx(0.2)
    for _ in range(10):
        sim.step()
    assert np.all(sim.vel[0] == 0.0)
    sim.set_command("cf1", [0.2, 0.0, 0.0], age_s=1.0)  # already stale on arrival
    before = sim.pos[0].copy()
    sim.step()
    np.testing.assert_array_equal(sim.pos[0], before)


@pytest.mark.parametrize("bad", [[np.nan, 0, 0], [0, np.inf, 0], [10.0, 0, 0], "x", [1, 2, 3, 4]])
def test_bad_command_rejected_counted_and_holds(bad):
    sim = Simulator(make_cfg())
    fly(sim)
    sim.set_command("cf1", [0.2, 0.0, 0.0])
    assert sim.set_command("cf1", bad) is False
    assert sim.rejected[0] == 1
    before = sim.pos[0].copy()
    sim.step()
    np.testing.assert_array_equal(sim.pos[0], before)


def test_set_commands_vectorised_rejects_per_robot():
    sim = Simulator(make_cfg())
    fly(sim)
    ok = sim.set_commands(np.array([[np.nan, 0, 0], [0.1, 0.0, 0.0]]))
    assert ok.tolist() == [False, True] and sim.rejected.tolist() == [1, 0]
    too_fast = CMD_REJECT_FACTOR * sim.max_speed[1] * 1.01
    assert sim.set_commands(np.array([[0.1, 0, 0], [too_fast, 0, 0]])).tolist() == [True, False]


def test_unicycle_turns_towards_command_and_respects_limits():
    sim = Simulator(make_cfg())
    fly(sim, steps=1)
    g = sim.index("g1")
    assert sim.mode[g] == Mode.FLYING
    for _ in range(300):
        sim.set_command("g1", [0.0, 0.3, 0.0])  # north, robot faces east
        sim.step()
        step = np.linalg.norm(sim.vel[g, :2])
        assert step <= sim.max_speed[g] + 1e-9
    assert sim.yaw[g] == pytest.approx(np.pi / 2, abs=0.05)
    assert sim.pos[g, 1] > 0.5 and sim.pos[g, 2] == 0.0


def test_land_and_emergency_stop():
    sim = Simulator(make_cfg())
    fly(sim)
    sim.land("cf1")
    for _ in range(200):
        sim.step()
    assert sim.mode[0] == Mode.GROUNDED and sim.pos[0, 2] == 0.0
    sim.takeoff("cf1")
    sim.step()
    sim.emergency_stop("cf1")
    assert sim.mode[0] == Mode.FAILED and sim.pos[0, 2] == 0.0
    ok, msg = sim.takeoff("cf1")
    assert not ok and "failed" in msg


def _resource_cfg(depletion):
    robots = [
        {
            "name": f"cf{i}",
            "kind": "crazyflie",
            "pose": [x, -1.0, 0.0, 0.0],
            "resources": {"energy": {"amount": 0.6, "depletion": depletion}},
        }
        for i, x in enumerate([-0.1, 0.1, 1.5])
    ]
    consumers = [{"name": "c1", "position": [0.0, -1.0], "radius": 0.3, "demand": {"energy": 1.0}}]
    return make_cfg(robots, consumers)


def until_flying(sim, robots):
    for i in robots:
        sim.takeoff(i)
    while any(sim.mode[i] != Mode.FLYING for i in robots):
        sim.step()


def test_instantaneous_released_on_arrival_shared_pro_rata():
    sim = Simulator(_resource_cfg("instantaneous"))
    sim.takeoff(0)
    sim.takeoff(1)
    sim.step()
    assert sim.released.sum() == 0.0  # taking off: not present yet
    until_flying(sim, [0, 1])
    # both arrive in the same step: 1.0 demanded of 1.2 offered, 5/6 of each supply (env rule)
    np.testing.assert_allclose(sim.released[:, 0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(sim.supply[:, 0], [0.1, 0.1, 0.6])
    assert sim.demand[0, 0] == 0.0 and sim.delivered[0, 0] == pytest.approx(1.0)
    assert not sim.consumer_active[0]
    assert sim.serving.tolist() == [0, 0, -1]
    for _ in range(50):
        sim.step()
    np.testing.assert_allclose(sim.supply[:, 0], [0.1, 0.1, 0.6])  # nothing more is taken


def test_instantaneous_first_arrival_takes_what_it_can():
    sim = Simulator(_resource_cfg("instantaneous"))
    until_flying(sim, [0])
    assert sim.supply[0, 0] == 0.0 and sim.demand[0, 0] == pytest.approx(0.4)
    until_flying(sim, [1])
    np.testing.assert_allclose(sim.supply[:, 0], [0.0, 0.2, 0.6])
    assert sim.demand[0, 0] == 0.0


def test_persistent_is_coverage_not_consumed():
    """LGTC Sec. II: persistent demand is covered only while robots stay inside R_m."""
    sim = Simulator(_resource_cfg("persistent"))
    sim.takeoff(0)
    sim.step()
    assert sim.demand[0, 0] == 1.0  # taking off: not present
    until_flying(sim, [0])
    assert sim.demand[0, 0] == pytest.approx(0.4) and sim.coverage[0, 0] == pytest.approx(0.6)
    until_flying(sim, [1])
    assert sim.demand[0, 0] == 0.0 and not sim.consumer_active[0]  # max(0, 1.0 - 1.2)
    for _ in range(500):  # hovering for 5 s consumes nothing
        sim.step()
    assert sim.demand[0, 0] == 0.0
    np.testing.assert_array_equal(sim.supply, sim.initial_supply)
    assert sim.released.sum() == 0.0 and sim.delivered.sum() == 0.0
    for _ in range(100):  # cf0 leaves the area: its share of the demand comes back
        sim.set_command(0, [0.5, 0.0, 0.0])
        sim.step()
    assert sim.serving.tolist() == [-1, 0, -1]
    assert sim.demand[0, 0] == pytest.approx(0.4)
    sim.land(1)  # landing (not only landed) robots do not count
    sim.step()
    assert sim.demand[0, 0] == 1.0 and sim.serving[1] == -1
    np.testing.assert_array_equal(sim.supply, sim.initial_supply)


def test_persistent_failed_and_discharged_robots_stop_covering():
    robots = [
        {
            "name": f"r{i}",
            "kind": "ground",
            "pose": [x, 0.0, 0.0, 0.0],
            "resources": {"energy": {"amount": 0.5, "depletion": "persistent"}},
        }
        for i, x in enumerate([-0.15, 0.15])
    ]
    consumers = [{"name": "c1", "position": [0.0, 0.0], "radius": 0.3, "demand": {"energy": 1.5}}]
    events = [{"t": 0.5, "type": "discharge", "robot": "r1", "resource": "energy", "amount": 0.2}]
    sim = Simulator(make_cfg(robots, consumers, events))
    sim.step()
    assert sim.demand[0, 0] == 1.5  # ground robots count once driving is enabled
    sim.takeoff(0)
    sim.takeoff(1)
    sim.step()
    assert sim.demand[0, 0] == pytest.approx(0.5)
    while sim.t < 0.6:
        sim.step()
    assert sim.supply[1, 0] == 0.2 and sim.demand[0, 0] == pytest.approx(0.8)
    sim.emergency_stop(0)
    sim.step()
    assert sim.demand[0, 0] == pytest.approx(1.3) and sim.supply[0, 0] == 0.5


def test_overlapping_areas_target_the_nearest_then_the_lowest_index():
    robots = [
        {
            "name": f"g{i}",
            "kind": "ground",
            "pose": [x, 0.0, 0.0, 0.0],
            "radius": 0.04,
            "resources": {"e": {"amount": 0.25, "depletion": "persistent"}},
        }
        for i, x in enumerate([-0.1, 0.0, 0.125])
    ]
    consumers = [
        {"name": f"c{m}", "position": [x, 0.0], "radius": 0.5, "demand": {"e": 1.0}}
        for m, x in enumerate([-0.25, 0.25])
    ]
    sim = Simulator(make_cfg(robots, consumers))
    for i in range(3):
        sim.takeoff(i)
    sim.step()
    assert sim.serving.tolist() == [0, 0, 1]  # g1 is exactly halfway: the lower index wins
    np.testing.assert_allclose(sim.demand[:, 0], [0.5, 0.75])


def test_events_fire_in_time():
    robots = [
        {
            "name": "a",
            "kind": "crazyflie",
            "pose": [0, 0, 0, 0],
            "resources": {"energy": {"amount": 1.0, "depletion": "persistent"}},
        },
        {"name": "b", "kind": "crazyflie", "pose": [1, 0, 0, 0]},
    ]
    consumers = [{"name": "c1", "position": [1.5, 1.5], "radius": 0.2, "demand": {"energy": 2.0}}]
    events = [
        {"t": 0.0, "type": "takeoff", "robot": "a"},
        {"t": 0.5, "type": "discharge", "robot": "a", "resource": "energy", "amount": 0.0},
        {"t": 0.5, "type": "fail", "robot": "b"},
        {"t": 1.0, "type": "demand", "consumer": "c1", "resource": "energy", "amount": 0.5},
    ]
    sim = Simulator(make_cfg(robots, consumers, events))
    fired = []
    while sim.t < 1.2:
        fired += [(round(e["t"], 6), e["type"]) for e in sim.step()]
    assert fired == [(0.0, "takeoff"), (0.5, "discharge"), (0.5, "fail"), (1.0, "demand")]
    assert sim.supply[0, 0] == 0.0 and sim.mode[1] == Mode.FAILED
    assert sim.demand[0, 0] == 0.5
    np.testing.assert_allclose(sim.supply_adjust[0, 0], -1.0)


def goto(sim, targets, seconds):
    """Saturated P law: robot i flies to floor point targets[i] (None: hold)."""
    for _ in range(int(round(seconds / sim.dt))):
        for i, tgt in enumerate(targets):
            if tgt is not None:
                v = 2.0 * (np.asarray(tgt) - sim.pos[i, :2])
                v *= min(1.0, sim.max_speed[i] / max(float(np.linalg.norm(v)), 1e-9))
                sim.set_command(i, [*v, 0.0])
        sim.step()


def test_discharge_scenario_needs_a_recover():
    """launch/discharge.yaml: cf3 covers c3 alone; after its discharge someone must move."""
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[4] / "launch" / "discharge.yaml")
    assert cfg.resource_types == ("battery", "payload") and cfg.warnings == ()
    sim = Simulator(cfg, dt=0.05)
    c1, c2, c3 = (np.array(c.position) for c in cfg.consumers)
    dx = np.array([0.12, 0.0])
    plan = [c1 - dx, c1 + dx, c3, c2 - dx, c2 + dx]  # the eq. 3 assignment (0, 0, 2, 1, 1)
    fly(sim, steps=0)
    goto(sim, plan, 20.0)
    assert sim.serving.tolist() == [0, 0, 2, 1, 1]
    assert sim.demand.sum() == 0.0 and sim.consumer_active.sum() == 0  # covered, not consumed
    goto(sim, plan, 50.5 - sim.t)  # the discharge and landing of cf3 fire at t = 50 s
    k = cfg.robot_index("cf3")
    assert sim.supply[k, 0] == 0.0 and sim.mode[k] in (Mode.LANDING, Mode.GROUNDED)
    np.testing.assert_allclose(sim.demand[:, 0], [0.0, 0.0, 1.0])  # c3's demand is back
    np.testing.assert_array_equal(np.delete(sim.supply[:, 0], k), 1.0)
    plan[1] = c3  # cf2 re-covers c3; c1 is left with one drone
    goto(sim, plan, 10.0)
    np.testing.assert_allclose(sim.demand[:, 0], [1.0, 0.0, 0.0])
    assert sim.serving.tolist() == [0, 2, -1, 1, 1]


# ----------------------------------------------------------------------------- properties

robot_entry = st.tuples(
    st.sampled_from(["crazyflie", "ground"]),
    st.floats(0.05, 1.0),  # max speed
    st.floats(0.0, 1.0),  # supply a
    st.floats(0.0, 1.0),  # supply b
)


@st.composite
def scenarios(draw):
    entries = draw(st.lists(robot_entry, min_size=1, max_size=6))
    robots = []
    for i, (kind, vmax, sa, sb) in enumerate(entries):
        robots.append(
            {
                "name": f"r{i}",
                "kind": kind,
                "max_speed": vmax,
                "pose": [-1.8 + 0.6 * i, -1.5 + 0.5 * (i % 2), 0.0, 0.3 * i],
                "resources": {
                    "a": {"amount": sa, "depletion": "persistent"},
                    "b": {"amount": sb, "depletion": "instantaneous"},
                },
            }
        )
    consumers = [
        {
            "name": f"c{m}",
            "position": [draw(st.floats(-1.5, 1.5)), draw(st.floats(-1.5, 1.5))],
            "radius": draw(st.floats(0.1, 1.0)),
            "demand": {"a": draw(st.floats(0.0, 2.0)), "b": draw(st.floats(0.0, 2.0))},
        }
        for m in range(draw(st.integers(1, 3)))
    ]
    events = [
        {"t": t, "type": "discharge", "robot": f"r{i % len(robots)}", "resource": k, "amount": a}
        for t, i, k, a in draw(
            st.lists(
                st.tuples(
                    st.floats(0.0, 3.0),
                    st.integers(0, 5),
                    st.sampled_from(["a", "b"]),
                    st.floats(0.0, 1.0),
                ),
                max_size=3,
            )
        )
    ]
    events += [
        {"t": t, "type": "demand", "consumer": "c0", "resource": k, "amount": a}
        for t, k, a in draw(
            st.lists(
                st.tuples(st.floats(0.0, 3.0), st.sampled_from(["a", "b"]), st.floats(0.0, 2.0)),
                max_size=2,
            )
        )
    ]
    cfg = make_cfg(robots, consumers, events)
    steps = draw(st.integers(1, 60))
    cmds = draw(
        st.lists(
            st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3),
            min_size=len(robots),
            max_size=len(robots),
        )
    )
    return cfg, steps, np.array(cmds)


def run(cfg, steps, cmds, seed=0):
    sim = Simulator(cfg, dt=0.05, seed=seed)
    fly(sim, steps=0)
    log = []
    for k in range(steps):
        sim.set_commands(np.roll(cmds, k, axis=1) * (0.9 ** (k % 7)))
        sim.step()
        log.append((sim.pos.copy(), sim.supply.copy(), sim.demand.copy()))
    return sim, log


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_speed_limits_and_arena(sc):
    cfg, steps, cmds = sc
    sim = Simulator(cfg, dt=0.05)
    fly(sim, steps=0)
    for k in range(steps):
        prev, prev_mode = sim.pos.copy(), sim.mode.copy()
        sim.set_commands(np.roll(cmds, k, axis=1))
        sim.step()
        speed = np.linalg.norm(sim.pos - prev, axis=1) / sim.dt
        # commanded motion obeys max_speed; vertical take-off/landing its own fixed speed
        vertical = sim.is_drone & (prev_mode != Mode.FLYING)
        limit = np.where(vertical, sim.params.takeoff_speed, sim.max_speed)
        assert (speed <= limit + 1e-9).all()
        assert (np.linalg.norm(sim.pos[vertical, :2] - prev[vertical, :2], axis=1) == 0).all()
        assert (sim.pos >= sim.arena_low - 1e-12).all() and (
            sim.pos <= sim.arena_high + 1e-12
        ).all()
        assert (sim.pos[~sim.is_drone, 2] == 0.0).all()
        assert (np.abs(sim.yaw) <= np.pi + 1e-12).all()


def coverage_oracle(sim):
    """(M, R) persistent coverage by a per-robot loop (independent of the vectorised step)."""
    cover = np.zeros((sim.m, sim.r))
    for i in range(sim.n):
        if sim.mode[i] != Mode.FLYING:
            continue
        dx = [sim.pos[i, :2] - sim.consumer_pos[m] for m in range(sim.m)]
        d = [float(v[0] * v[0] + v[1] * v[1]) for v in dx]  # squared floor distances
        inside = [m for m in range(sim.m) if d[m] <= sim.consumer_radius[m] ** 2]
        if inside:
            m = min(inside, key=lambda m: (d[m], m))
            cover[m] += np.where(sim.persistent[i], sim.supply[i], 0.0)
    return cover


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_conservation_coverage_and_nonnegative(sc):
    cfg, steps, cmds = sc
    sim = Simulator(cfg, dt=0.05)
    fly(sim, steps=0)
    pers = sim.persistent[0]
    for k in range(steps):
        before = (sim.released.sum(0), sim.delivered.sum(0))
        sim.set_commands(np.roll(cmds, k, axis=1) * (0.9 ** (k % 7)))
        sim.step()
        assert (sim.supply >= 0).all() and (sim.demand >= 0).all()
        # instantaneous: what robots released this step is what consumers received
        np.testing.assert_allclose(
            sim.released.sum(0) - before[0], sim.delivered.sum(0) - before[1], atol=1e-9
        )
        # persistent: remaining demand = max(0, requirement - coverage of present robots)
        cover = coverage_oracle(sim)
        np.testing.assert_allclose(sim.coverage[:, pers], cover[:, pers], atol=1e-12)
        np.testing.assert_allclose(
            sim.demand[:, pers],
            np.maximum(sim.requirement[:, pers] - cover[:, pers], 0.0),
            atol=1e-12,
        )
        np.testing.assert_array_equal(sim.demand[:, ~pers], sim.requirement[:, ~pers])
    # persistent supplies change only through discharge events, nothing is released
    np.testing.assert_allclose(
        sim.supply[:, pers], (sim.initial_supply + sim.supply_adjust)[:, pers], atol=1e-12
    )
    assert (sim.released[:, pers] == 0).all() and (sim.delivered[:, pers] == 0).all()
    np.testing.assert_allclose(
        sim.requirement[:, pers], (sim.initial_demand + sim.demand_adjust)[:, pers], atol=1e-12
    )
    # instantaneous: supply lost = released, demand met = delivered
    np.testing.assert_allclose(
        (sim.supply + sim.released)[:, ~pers],
        (sim.initial_supply + sim.supply_adjust)[:, ~pers],
        atol=1e-9,
    )
    np.testing.assert_allclose(
        (sim.requirement + sim.delivered)[:, ~pers],
        (sim.initial_demand + sim.demand_adjust)[:, ~pers],
        atol=1e-9,
    )


@settings(max_examples=30, deadline=None)
@given(scenarios(), st.integers(0, 2**31))
def test_determinism_by_seed(sc, seed):
    cfg, steps, cmds = sc
    _, log1 = run(cfg, steps, cmds, seed)
    _, log2 = run(copy.deepcopy(cfg), steps, cmds, seed)
    for a, b in zip(log1, log2):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_noise_is_seeded():
    from sim_bridge.sim import SimParams

    cfg = make_cfg()

    def final(seed):
        sim = Simulator(cfg, params=SimParams(velocity_noise_std=0.05), seed=seed)
        fly(sim)
        for _ in range(20):
            sim.set_command(0, [0.1, 0, 0])
            sim.step()
        return sim.pos.copy()

    np.testing.assert_array_equal(final(3), final(3))
    assert not np.array_equal(final(3), final(4))


def test_step_is_vectorised_for_many_robots():
    robots = [
        {"name": f"r{i}", "kind": "crazyflie" if i % 2 else "ground", "pose": [x, y, 0.0, 0.0]}
        for i, (x, y) in enumerate(
            (-1.9 + 0.2 * (k % 19), -1.9 + 0.2 * (k // 19)) for k in range(300)
        )
    ]
    sim = Simulator(make_cfg(robots, [], sensing_radius=0.5))
    fly(sim, steps=0)
    sim.set_commands(np.tile([0.1, 0.1, 0.0], (sim.n, 1)))
    sim.step()
    assert sim.within(0.25).sum() > 0
    assert sim.pos.shape == (300, 3)


def test_valid_command_helper():
    assert valid_command(0.1, 0.2, 0.0, 0.5)
    assert not valid_command(float("nan"), 0.0, 0.0, 0.5)
    assert not valid_command(0.0, float("-inf"), 0.0, 0.5)
    assert not valid_command(3.0, 0.0, 0.0, 0.5)


def test_external_robot_pose_is_set_not_integrated():
    robots = [
        {"name": "cf1", "kind": "crazyflie", "pose": [0.0, 0.0, 0.0, 0.0]},
        {
            "name": "real",
            "kind": "crazyflie",
            "backend": "cflib",
            "uri": "radio://0/80/2M/E7",
            "pose": [1.0, 0.0, 0.0, 0.0],
        },
    ]
    sim = Simulator(make_cfg(robots))
    sim.set_external_pose("real", [1.2, 0.3, 0.5], 0.1, airborne=True)
    sim.set_command("real", [0.5, 0, 0])
    sim.step()
    np.testing.assert_array_equal(sim.pos[1], [1.2, 0.3, 0.5])
    assert sim.mode[1] == Mode.FLYING
    with pytest.raises(ValueError):
        sim.set_external_pose("cf1", [0, 0, 0], 0.0, airborne=False)


# ----------------------------------------------------------------------------- reference env

GRID = [k / 8 for k in range(-7, 8)]  # dyadic: distances and ties are exact in both codes


@st.composite
def release_instances(draw):
    n = draw(st.integers(1, 5))
    m = draw(st.integers(1, n if n < 3 else 3))
    cells = draw(st.lists(st.tuples(*[st.sampled_from(GRID)] * 2), min_size=n, max_size=n,
                          unique=True))  # fmt: skip
    amounts = st.floats(0.0, 1.0)
    supply = [[draw(amounts), draw(amounts)] for _ in range(n)]
    demand = [[draw(amounts), draw(amounts)] for _ in range(m)]
    cpos = [(draw(st.sampled_from(GRID)), draw(st.sampled_from(GRID))) for _ in range(m)]
    radius = [draw(st.sampled_from([0.125, 0.25, 0.375, 0.5])) for _ in range(m)]
    persistent = draw(st.tuples(st.booleans(), st.booleans()))
    return cells, supply, demand, cpos, radius, persistent


@settings(max_examples=40, deadline=None)
@given(release_instances())
def test_release_matches_the_training_env(inst):
    """Same world, one step: supplies, remaining demands and targets equal ResourceEnv's."""
    env_mod = pytest.importorskip("lgtc_policy.env")
    torch = pytest.importorskip("torch")
    cells, supply, demand, cpos, radius, persistent = inst
    kinds = ["persistent" if p else "instantaneous" for p in persistent]
    robots = [
        {
            "name": f"g{i}",
            "kind": "ground",
            "radius": 0.05,
            "pose": [x, y, 0.0, 0.0],
            "resources": {t: {"amount": a, "depletion": k} for t, a, k in zip("ab", so, kinds)},
        }
        for i, ((x, y), so) in enumerate(zip(cells, supply))
    ]
    consumers = [
        {"name": f"c{m}", "position": list(p), "radius": r, "demand": dict(zip("ab", de))}
        for m, (p, r, de) in enumerate(zip(cpos, radius, demand))
    ]
    arena = {"x": [-1.0, 1.0], "y": [-1.0, 1.0], "z": [0.0, 2.0]}
    sim = Simulator(make_cfg(robots, consumers, arena=arena))
    n, m = sim.n, sim.m
    env = env_mod.ResourceEnv(
        env_mod.EnvConfig(
            n_agents=n, n_consumers=m, n_resources=2, resources_per_consumer=1,
            max_resources_per_agent=1, dtype="float64", assignment="none",
        ),
        batch_size=1,
    )  # fmt: skip
    env.set_state(
        0,
        pos=[cells],
        supply=[supply],
        persistent=[list(persistent)],
        demand=[demand],
        consumer_pos=[cpos],
        radius=[radius],
        active=[[True] * n],
    )
    for i in range(n):
        sim.takeoff(i)  # ground robots are present at once
    for _ in range(2):
        sim.step()
        env.step(torch.zeros(1, n, 2, dtype=torch.float64))
        tol = 2e-6  # the env zeroes quantities below 1e-6
        np.testing.assert_allclose(sim.supply, env.supply[0].numpy(), atol=tol)
        np.testing.assert_allclose(sim.demand, env.demand[0].numpy(), atol=tol)
        np.testing.assert_allclose(sim.requirement, env.base[0].numpy(), atol=tol)
        tgt = env._targets()[0].numpy()  # (N,) nearest area holding each agent, M: none
        expect = np.where(tgt < m, tgt, -1)
        assert sim.serving.tolist() == expect.tolist()
