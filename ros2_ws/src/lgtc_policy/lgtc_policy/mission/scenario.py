"""A swarm mission seen by the core environment (no rclpy): the yardstick of the ROS run.

The ROS demo flies a swarm config (``launch/demo.yaml``) through the world, the CBF filters
and the policy nodes. To say whether it behaves like the batched simulator the policy was
trained in, this module puts the *same scenario* into :class:`lgtc_policy.env.ResourceEnv`
(B = 1): the config's start positions, supplies, resource kinds, consumer positions, radii
and demands, mapped to the normalised frame by :class:`lgtc_policy.agent.ArenaFrame`, with the
policy's speed limit ``v_max = max_speed / scale`` and ``C = comm_radius / scale``. Then:

* :func:`core_rollout` runs the policy in the env (deterministic mean action, eqs. 4-6), alone
  (the paper's setting) or with every action through the ROS chain's safety filters (one
  decentralized CBF per robot, in metres, :class:`RosChainFilter`; collisions are avoided on
  both sides);
* :func:`expert_rollout` runs the centralized expert (eq. 3 assignment + P control + CBF,
  ``lgtc_policy.env.expert``);
* :func:`score_trajectory` replays the ROS run's 20 Hz positions through the env (each tick's
  action is the displacement the ROS robot made, in units of ``v_max * dt``), so the ROS run
  is scored by the env's own reward of eq. (2), term for term.

All three return a :class:`EpisodeScore` whose ``reward`` is the paper's accumulated reward
(team return / N, as :mod:`lgtc_policy.evaluate`). Time is aligned at sim time 0: the ROS
drones first take off (``hold_ticks`` ticks without horizontal motion), so the env rollouts
hold still for the same ticks before the policy starts.

Scripted events map onto the env: ``discharge`` -> ``ResourceEnv.discharge`` (keeps
``amount / supply`` of the persistent supplies), ``land`` / ``fail`` -> the agent becomes
inactive. An event with ``select: alone`` takes, when it fires, the agent that
:func:`sim_bridge.sim.robot_serving_alone` picks from the env's state (:func:`env_serving`:
the consumer area each active agent is inside, as the simulator's ``serving``), or does
nothing when no agent serves a consumer alone; :attr:`EpisodeScore.fired` lists what each
event did. ``demand`` and ``takeoff`` events have no env counterpart and are rejected.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from cbf_filter import DecentralizedCBF
from cbf_filter.params import from_config
from cbf_filter.unicycle import projection_point_params
from sim_bridge.sim import SimParams, robot_serving_alone

from lgtc_policy.agent import ArenaFrame, MissionError
from lgtc_policy.env import EnvConfig, ResourceEnv
from lgtc_policy.greedy import greedy_action
from lgtc_policy.model.features import inputs_from_obs

__all__ = [
    "EpisodeScore",
    "FilterSpec",
    "RosChainFilter",
    "Scenario",
    "core_rollout",
    "env_serving",
    "expert_rollout",
    "filter_spec",
    "greedy_rollout",
    "make_env",
    "resample",
    "scenario_from_config",
    "score_trajectory",
]


@dataclass(frozen=True)
class Scenario:
    """One swarm config in the env's normalised frame.

    Attributes:
        frame: world <-> normalised map.
        pos: ``(N, 2)`` start positions [normalised].
        supply: ``(N, r)`` supplies; persistent: ``(r,)`` bool kind per type.
        consumer_pos: ``(M, 2)`` [normalised]; radius: ``(M,)`` [normalised];
        demand: ``(M, r)``.
        v_max: policy speed limit [normalised units / s]; comm_radius: C [normalised];
        epsilon: collision threshold = the CBF safety distance [normalised].
        events: ``(tick, kind, agent, level)`` sorted by tick; kind ``discharge`` (keep
            ``level`` of persistent supplies) or ``deactivate``; ``agent = -1``: picked when
            it fires (``select: alone``), and a ``discharge``'s ``level`` is then a tuple of
            one level per agent.
        hold_ticks: ticks before the drones are airborne (take-off at 0.5 m/s).
        safety: the ROS chain's per-robot CBF filters (:class:`FilterSpec`), used by
            ``core_rollout(cbf=True)``; ``None``: no filter known (``cbf=True`` then raises).
    """

    frame: ArenaFrame
    pos: np.ndarray
    supply: np.ndarray
    persistent: np.ndarray
    consumer_pos: np.ndarray
    radius: np.ndarray
    demand: np.ndarray
    v_max: float
    comm_radius: float
    epsilon: float
    events: tuple[tuple[int, str, int, float | tuple[float, ...]], ...]
    hold_ticks: int
    safety: FilterSpec | None = None


#: Vertical take-off speed of the simulator [m/s] (``sim_bridge.sim.SimParams``).
TAKEOFF_SPEED = 0.5

#: Projection-point distance ``l`` [m] of a ground robot's filter (the node's default).
PROJECTION_DISTANCE = 0.1


@dataclass(frozen=True)
class FilterSpec:
    """What every robot's ``cbf_filter`` node runs, in metres (``cbf_filter.ros.node``).

    Attributes:
        params: per robot, the node's :class:`cbf_filter.CBFParams` built by
            :func:`cbf_filter.params.from_config` from the swarm config (safety distance,
            gamma, class-K function, sensing radius, the robot's ``max_speed``, arena walls,
            ``1 / control_hz``); a ground robot's are its unicycle node's projection-point
            parameters (``Ds + 2 l``).
        dims: per robot, 3 (``si3``: a Crazyflie at its flight height) or 2 (a ground robot:
            the env has no heading, so its projection point is taken at its centre).
        height: ``(N,)`` flight height [m] (``takeoff_height``; ground robots: the floor).
        floor: the arena's lowest z [m] (where landed and failed drones rest).
        descent: ``(N,)`` vertical speed [m/s] from the tick a robot is deactivated (``land``:
            the simulator's landing speed; ``fail``: inf, it drops at once; 0: never
            deactivated by an event).
        sensing_radius: the world's neighbour radius [m] (``/<robot>/neighbors``, 3-D).
    """

    params: tuple
    dims: tuple[int, ...]
    height: np.ndarray
    floor: float
    descent: np.ndarray
    sensing_radius: float


def filter_spec(cfg) -> FilterSpec:
    """The :class:`FilterSpec` of swarm config ``cfg`` (model ``auto`` of the node: ``si3``
    for a crazyflie, ``unicycle`` for a ground robot, default projection distance)."""
    sim = SimParams()
    params, dims, height = [], [], []
    floor = float(cfg.arena.z[0])
    for rc in cfg.robots:
        drone = rc.kind == "crazyflie"
        p = from_config(cfg, rc, 3 if drone else 2)
        params.append(p if drone else projection_point_params(p, PROJECTION_DISTANCE))
        dims.append(3 if drone else 2)
        height.append(floor + rc.takeoff_height if drone else floor)
    descent = np.zeros(len(cfg.robots))
    for ev in cfg.events:
        if ev.type in ("land", "fail"):
            speed = sim.landing_speed if ev.type == "land" else math.inf
            if ev.select is None:
                descent[cfg.robot_index(ev.robot)] = speed
            else:  # any robot may be the one picked; no other event deactivates one
                descent[descent == 0] = speed
    return FilterSpec(
        params=tuple(params),
        dims=tuple(dims),
        height=np.array(height),
        floor=floor,
        descent=descent,
        sensing_radius=float(cfg.sensing_radius),
    )


def scenario_from_config(cfg, control_hz: float = 20.0) -> Scenario:
    """The scenario of a ``sim_bridge`` ``SwarmConfig`` (raises MissionError if unsupported)."""
    frame = ArenaFrame.from_arena(cfg.arena.x, cfg.arena.y)
    if not cfg.consumers:
        raise MissionError("the swarm config has no consumers: nothing to allocate")
    dt = 1.0 / control_hz
    supply = cfg.supply_matrix()
    kinds = cfg.type_depletion()
    events = []
    for ev in cfg.events:
        tick = int(math.ceil(ev.t / dt - 1e-9))
        i = -1 if ev.select is not None else None
        if ev.type == "discharge":
            k = cfg.resource_index(ev.resource)
            if kinds[ev.resource] != "persistent":
                raise MissionError(
                    f"event at t={ev.t}: the env discharges persistent resources only "
                    f"({ev.resource} is instantaneous)"
                )
            have = supply[:, k]
            levels = tuple(min(1.0, ev.amount / h) if h > 0 else 0.0 for h in have)
            if i is None:
                i = cfg.robot_index(ev.robot)
                events.append((tick, "discharge", i, float(levels[i])))
            else:
                events.append((tick, "discharge", i, levels))
        elif ev.type in ("land", "fail"):
            i = cfg.robot_index(ev.robot) if i is None else i
            events.append((tick, "deactivate", i, 1.0))
        else:
            raise MissionError(
                f"event {ev.type!r} at t={ev.t} has no counterpart in the core env; the "
                "comparison supports discharge, land and fail events"
            )
    drones = [r for r in cfg.robots if r.kind == "crazyflie"]
    lift = max((r.takeoff_height for r in drones), default=0.0)
    return Scenario(
        frame=frame,
        pos=frame.to_norm(np.array([r.pose[:2] for r in cfg.robots])),
        supply=supply,
        persistent=np.array([kinds[t] == "persistent" for t in cfg.resource_types]),
        consumer_pos=frame.to_norm(np.array([c.position for c in cfg.consumers])),
        radius=np.array([c.radius for c in cfg.consumers]) / frame.scale,
        demand=cfg.demand_matrix(),
        v_max=min(r.max_speed for r in cfg.robots) / frame.scale,
        comm_radius=cfg.comm_radius / frame.scale,
        epsilon=cfg.safety.distance / frame.scale,
        events=tuple(sorted(events, key=lambda e: e[0])),
        hold_ticks=int(math.ceil(lift / TAKEOFF_SPEED / dt)) + 1,
        safety=filter_spec(cfg),
    )


def make_env(sc: Scenario, env_config: dict[str, Any], steps: int, seed: int = 0):
    """A B = 1 :class:`ResourceEnv` holding scenario ``sc``, reward gains from ``env_config``
    (the checkpoint's), ``episode_length = steps``."""
    N, r = sc.supply.shape
    M = sc.demand.shape[0]
    known = {f.name for f in dataclasses.fields(EnvConfig)}
    base = {k: v for k, v in dict(env_config).items() if k in known}
    rmin, rmax = float(sc.radius.min()), float(sc.radius.max())
    base.update(
        n_agents=N,
        n_consumers=M,
        n_resources=r,
        resources_per_consumer=min(int(base.get("resources_per_consumer", 1)), r),
        max_resources_per_agent=min(int(base.get("max_resources_per_agent", 1)), r),
        v_max=float(sc.v_max),
        comm_radius=float(sc.comm_radius),
        consumer_radius=(rmin, rmax),
        epsilon=min(float(sc.epsilon), 0.99 * rmin),
        agent_spawn_separation=max(float(sc.epsilon), 0.01),
        consumer_spawn_separation=2 * rmax,
        spawn_margin=0.0,
        episode_length=int(steps),
        auto_reset=False,
        discharge_rate=0.0,
        nan_actions="zero",
        seed=int(seed),
    )
    try:
        cfg = EnvConfig.from_dict(base)
    except ValueError as exc:
        raise MissionError(f"the scenario does not fit the core env: {exc}") from None
    env = ResourceEnv(cfg, 1, device="cpu", seed=seed)
    _load_scenario(env, sc)
    return env


def _load_scenario(env, sc: Scenario) -> None:
    """Put ``sc`` into ``env`` (B = 1) through the env's public
    :meth:`ResourceEnv.load_scenario` (every world field given; episode at t = 0, every agent
    active, remaining demand net of the persistent coverage at the start positions, assignment
    of eq. 3 recomputed)."""
    try:
        env.load_scenario(
            0,
            pos=sc.pos,
            supply=sc.supply,
            persistent=sc.persistent,
            consumer_pos=sc.consumer_pos,
            radius=sc.radius,
            demand=sc.demand,
        )
    except ValueError as exc:
        raise MissionError(f"the scenario does not fit the core env: {exc}") from None


@dataclass
class EpisodeScore:
    """Outcome of one episode of the scenario.

    Attributes:
        reward: accumulated reward of eq. (2), team return / N (``lgtc_policy.evaluate``).
        demand_satisfied: ``1 - sum de(T) / sum de(0)`` in the env's semantics.
        collisions: pair-steps closer than epsilon; min_distance: smallest pair distance of
            active agents [normalised].
        pos: ``(T + 1, N, 2)`` normalised positions; attended: ``(T, N)`` cluster per tick
            (-1 where unknown).
        reward_terms: the seven terms of eq. (2) summed over the episode, / N.
        fired: ``(tick, kind, agent)`` of each scenario event as it acted (``agent = -1``: a
            ``select`` event that found no agent and did nothing).
    """

    reward: float
    demand_satisfied: float
    collisions: int
    min_distance: float
    pos: np.ndarray
    attended: np.ndarray
    reward_terms: dict[str, float]
    fired: tuple[tuple[int, str, int], ...] = ()


class _Tracker:
    """Accumulates one env's per-step info into an :class:`EpisodeScore`."""

    def __init__(self, env) -> None:
        self.env = env
        self.pos = [env.pos[0].double().numpy().copy()]
        self.att: list[np.ndarray] = []
        self.terms: dict[str, float] = {}
        self.coll = 0
        self.dmin = math.inf
        self.info: dict = {}
        self.fired: list[tuple[int, str, int]] = []

    def add(self, info: dict, attended: np.ndarray | None = None) -> None:
        self.info = info
        self.pos.append(self.env.pos[0].double().numpy().copy())
        n = self.env.pos.shape[1]
        self.att.append(np.full(n, -1) if attended is None else np.asarray(attended))
        for k, v in info["reward_terms"].items():
            self.terms[k] = self.terms.get(k, 0.0) + float(v[0].sum())
        self.coll += int(info["collisions"][0])
        self.dmin = min(self.dmin, float(info["min_distance"][0]))

    def score(self) -> EpisodeScore:
        n = self.env.cfg.n_agents
        ret = float(self.env.ep_return[0])
        return EpisodeScore(
            reward=ret / n,
            demand_satisfied=float(self.env.demand_satisfied()[0]),
            collisions=self.coll,
            min_distance=self.dmin,
            pos=np.stack(self.pos),
            attended=np.stack(self.att) if self.att else np.zeros((0, n), np.int64),
            reward_terms={k: v / n for k, v in self.terms.items()},
            fired=tuple(self.fired),
        )


def env_serving(env) -> np.ndarray:
    """``(N,)`` consumer whose area each active agent of env 0 is inside (the nearest on
    overlap), or -1: the simulator's ``serving`` in the env (``ResourceEnv.serving``)."""
    return env.serving()[0].cpu().numpy()


def _apply_events(env, sc: Scenario, tick: int, fired: list | None = None) -> None:
    """The scenario's events of ``tick`` (a ``select`` one picks its agent on the state before
    this tick's events, as the simulator does); each appended to ``fired``."""
    serving = None
    for t, kind, i, level in sc.events:
        if t != tick:
            continue
        if i < 0:
            serving = env_serving(env) if serving is None else serving
            pick = robot_serving_alone(serving)
            i = -1 if pick is None else pick
            if i >= 0 and kind == "discharge":
                level = level[i]
        if fired is not None:
            fired.append((tick, kind, i))
        if i < 0:
            continue
        if kind == "discharge":
            env.discharge(torch.tensor([0]), torch.tensor([i]), level=level, deactivate=False)
        else:
            env.discharge(torch.tensor([0]), torch.tensor([i]), level=1.0, deactivate=True)


class RosChainFilter:
    """The ROS chain's safety filters inside the env: every robot's ``cbf_filter`` node.

    Each tick, in metres and m/s (``sc.frame``): robot ``i``'s node filters its nominal
    command ``a_i * v_max * scale`` (the env's speed) with its own
    :class:`cbf_filter.DecentralizedCBF` (Wang-Ames-Egerstedt 2017, Sec. IV-B: each robot
    takes half of every pair constraint ``-grad h_ij . (u_i - u_j) <= alpha(h_ij)``), its
    node's :class:`cbf_filter.CBFParams` (``sc.safety``), and the robots the world reports on
    ``/<robot>/neighbors``: those within the sensing radius in 3-D, landed and failed drones
    included at their height (they descend at the simulator's speed after their event and
    rest on the floor). The safe velocity goes back to the env as ``u / (v_max * scale)``.
    When every robot runs the same filter, the swarm form ``DecentralizedCBF.filter`` does
    all the nodes' QPs in one call (the same QPs); otherwise robot by robot with
    ``filter_robot``.

    Attributes:
        fallbacks: robot-ticks where a filter found no safe command (it brakes, like the
            node's zero command).
    """

    def __init__(self, env, sc: Scenario) -> None:
        if sc.safety is None:
            raise MissionError(
                "the scenario carries no CBF filter spec: build it with scenario_from_config"
            )
        self.env, self.sc, self.spec = env, sc, sc.safety
        self.speed = float(sc.v_max * sc.frame.scale)  # [m/s] of a unit action
        keys = list(zip(self.spec.dims, self.spec.params, strict=True))
        made: list[tuple] = []  # (key, filter): robots with equal parameters share one
        self.cbfs = []
        for key in keys:
            cbf = next((f for k, f in made if k == key), None)
            if cbf is None:
                cbf = DecentralizedCBF(*key)
                made.append((key, cbf))
            self.cbfs.append(cbf)
        self.swarm = self.cbfs[0] if len(made) == 1 else None
        self.off_tick = np.full(len(keys), -1)  # tick each robot was first seen inactive
        self.fallbacks = 0

    def positions(self) -> np.ndarray:
        """``(N, 3)`` robot centres [m, world frame] the filters see now."""
        env, spec = self.env, self.spec
        tick = int(env.t[0])
        active = env.active[0].cpu().numpy()
        self.off_tick[~active & (self.off_tick < 0)] = tick
        self.off_tick[active] = -1
        z = spec.height.copy()
        down = self.off_tick >= 0
        rate = spec.descent[down]
        elapsed = (tick - self.off_tick[down]) * env.cfg.dt
        fall = np.where(np.isinf(rate), math.inf, rate * elapsed)  # fail: on the floor at once
        z[down] = np.maximum(spec.floor, z[down] - fall)
        xy = self.sc.frame.to_world(env.pos[0].double().cpu().numpy())
        return np.column_stack([xy, z])

    def velocities(self, pos: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``(N, 2)`` safe planar velocities [m/s] for nominal ``u`` ``(N, 2)`` [m/s] at
        ``pos`` ``(N, 3)`` [m] (the nominal vertical speed is 0, as the policy node's)."""
        n = len(pos)
        if self.swarm is not None:
            d = self.swarm.d
            u_nom = np.zeros((n, d))
            u_nom[:, :2] = u
            res = self.swarm.filter(pos[:, :d], u_nom)
            self.fallbacks += int(res.fallback.sum())
            return res.u[:, :2]
        out = np.zeros((n, 2))
        diff = pos[:, None, :] - pos[None, :, :]
        near = np.sqrt((diff * diff).sum(-1)) <= self.spec.sensing_radius
        np.fill_diagonal(near, False)
        for i, cbf in enumerate(self.cbfs):
            d = cbf.d
            u_nom = np.zeros(d)
            u_nom[:2] = u[i]
            res = cbf.filter_robot(pos[i, :d], u_nom, pos[near[i], :d])
            self.fallbacks += int(not res.found)
            out[i] = res.u[:2]
        return out

    def __call__(self, action: torch.Tensor) -> torch.Tensor:
        """Safe unit actions ``(1, N, 2)`` for ``action`` ``(1, N, 2)``, first treated as
        :meth:`ResourceEnv.step` treats it (non-finite -> 0, components clipped to [-1, 1],
        norm to <= 1)."""
        a = action.detach().to(torch.float64)
        a = torch.where(torch.isfinite(a).all(-1, keepdim=True), a, 0.0).clamp(-1.0, 1.0)
        a = a / torch.linalg.vector_norm(a, dim=-1, keepdim=True).clamp(min=1.0)
        u = self.velocities(self.positions(), a[0].cpu().numpy() * self.speed)
        return torch.as_tensor(u[None] / self.speed, dtype=action.dtype)


@torch.inference_mode()
def core_rollout(
    net, sc: Scenario, env_config: dict, steps: int, seed: int = 0, cbf: bool = False
) -> EpisodeScore:
    """The policy ``net`` (an ``LGTCNet``) on the scenario in the core env for ``steps`` ticks;
    with ``cbf`` every action first passes the ROS chain's per-robot CBF filters
    (:class:`RosChainFilter`), like the commands of the ROS chain."""
    env = make_env(sc, env_config, steps, seed)
    safety = RosChainFilter(env, sc) if cbf else None
    tr = _Tracker(env)
    zero = torch.zeros(1, env.cfg.n_agents, 2)
    x = torch.zeros(1, env.cfg.n_agents, net.state_dim)
    obs = env.observe()
    prev = None
    for t in range(steps):
        _apply_events(env, sc, t, tr.fired)
        obs = env.observe()
        if t < sc.hold_ticks:
            obs, _, _, info = env.step(zero)
            tr.add(info)
            continue
        out, x_new, xi = net(inputs_from_obs(obs, prev), x)
        prev = obs.agent_res.clone()
        act = net.action(out).clamp(-1.0, 1.0)
        obs, _, _, info = env.step(act if safety is None else safety(act))
        # an inactive robot restarts from x = 0 if it flies again (the ROS node resets it)
        x = x_new * obs.active[..., None]
        tr.add(info, xi.argmax(-1)[0].numpy())
    return tr.score()


@torch.inference_mode()
def expert_rollout(sc: Scenario, env_config: dict, steps: int, seed: int = 0) -> EpisodeScore:
    """The centralized expert on the scenario (raises MissionError if it is not installed)."""
    try:  # the MIQP solver stack: seconds to import, and optional
        from lgtc_policy.env.expert import CentralizedExpert
    except ImportError as exc:
        raise MissionError(f"the centralized expert is not available ({exc})") from None
    env = make_env(sc, env_config, steps, seed)
    expert = CentralizedExpert(env)
    tr = _Tracker(env)
    zero = torch.zeros(1, env.cfg.n_agents, 2)
    for t in range(steps):
        _apply_events(env, sc, t, tr.fired)
        act = zero if t < sc.hold_ticks else expert.act()
        _, _, _, info = env.step(act)
        tr.add(info, expert.assignment[0].copy())  # the expert's own eq. 3 assignment
    return tr.score()


@torch.inference_mode()
def greedy_rollout(
    sc: Scenario, env_config: dict, steps: int, seed: int = 0, cbf: bool = True
) -> EpisodeScore:
    """The decentralized greedy rule (:mod:`lgtc_policy.greedy`, the BC teacher; not in the
    paper) on the scenario, each action through the ROS chain's CBF filters like
    ``core_rollout(cbf=True)``: a yardstick that needs no checkpoint."""
    env = make_env(sc, env_config, steps, seed)
    safety = RosChainFilter(env, sc) if cbf else None
    tr = _Tracker(env)
    zero = torch.zeros(1, env.cfg.n_agents, 2)
    for t in range(steps):
        _apply_events(env, sc, t, tr.fired)
        act = zero if t < sc.hold_ticks else greedy_action(env)
        if safety is not None and t >= sc.hold_ticks:
            act = safety(act)
        _, _, _, info = env.step(act)
        tr.add(info)
    return tr.score()


@torch.inference_mode()
def score_trajectory(
    sc: Scenario, env_config: dict, pos_world: np.ndarray, seed: int = 0
) -> EpisodeScore:
    """Score a ROS run with the env's reward: replay its ``(T + 1, N, 2)`` world positions
    [m], sampled every 20 Hz tick from sim time 0, through the env (actions are the
    displacements divided by ``v_max * dt``; the env clips them to the unit disc)."""
    traj = np.asarray(pos_world, dtype=np.float64)
    if traj.ndim != 3 or traj.shape[1:] != (sc.pos.shape[0], 2) or traj.shape[0] < 2:
        raise MissionError(
            f"trajectory has shape {traj.shape}, expected (T + 1 >= 2, {sc.pos.shape[0]}, 2)"
        )
    steps = traj.shape[0] - 1
    env = make_env(sc, env_config, steps, seed)
    norm = sc.frame.to_norm(traj)
    env.pos[0] = torch.as_tensor(norm[0], dtype=env.dtype)
    tr = _Tracker(env)
    tr.pos[0] = norm[0]
    step_len = env.cfg.v_max * env.cfg.dt
    for t in range(steps):
        _apply_events(env, sc, t, tr.fired)
        a = (norm[t + 1] - env.pos[0].double().numpy()) / step_len
        _, _, _, info = env.step(torch.as_tensor(a[None], dtype=env.dtype))
        tr.add(info)
    return tr.score()


def resample(times: np.ndarray, values: np.ndarray, dt: float, t_end: float) -> np.ndarray:
    """Zero-order hold of samples ``values[k]`` taken at ``times[k]`` onto ``0, dt, ... t_end``
    (before the first sample: the first value)."""
    times = np.asarray(times, dtype=float)
    grid = np.arange(0.0, t_end + 1e-9, dt)
    idx = np.clip(np.searchsorted(times, grid + 1e-9, side="right") - 1, 0, len(times) - 1)
    return np.asarray(values)[idx]
