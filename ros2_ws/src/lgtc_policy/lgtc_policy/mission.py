"""A swarm mission seen by the core environment (no rclpy): the yardstick of the ROS run.

The ROS demo flies a swarm config (``launch/demo.yaml``) through the world, the CBF filters
and the policy nodes. To say whether it behaves like the batched simulator the policy was
trained in, this module puts the *same scenario* into :class:`lgtc_policy.env.ResourceEnv`
(B = 1): the config's start positions, supplies, resource kinds, consumer positions, radii
and demands, mapped to the normalised frame by :class:`lgtc_policy.agent.ArenaFrame`, with the
policy's speed limit ``v_max = max_speed / scale`` and ``C = comm_radius / scale``. Then:

* :func:`core_rollout` runs the policy in the env (deterministic mean action, eqs. 4-6), alone
  (the paper's setting) or with every action through the centralized CBF (the ROS chain's
  safety filter, so collisions are avoided on both sides);
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
inactive. ``demand`` and ``takeoff`` events have no env counterpart and are rejected.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lgtc_policy.agent import ArenaFrame, MissionError

__all__ = [
    "EpisodeScore",
    "Scenario",
    "core_rollout",
    "expert_rollout",
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
            ``level`` of persistent supplies) or ``deactivate``.
        hold_ticks: ticks before the drones are airborne (take-off at 0.5 m/s).
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
    events: tuple[tuple[int, str, int, float], ...]
    hold_ticks: int


#: Vertical take-off speed of the simulator [m/s] (``sim_bridge.sim.SimParams``).
TAKEOFF_SPEED = 0.5


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
        if ev.type == "discharge":
            i, k = cfg.robot_index(ev.robot), cfg.resource_index(ev.resource)
            if kinds[ev.resource] != "persistent":
                raise MissionError(
                    f"event at t={ev.t}: the env discharges persistent resources only "
                    f"({ev.resource} is instantaneous)"
                )
            have = supply[i, k]
            level = min(1.0, ev.amount / have) if have > 0 else 0.0
            events.append((tick, "discharge", i, float(level)))
        elif ev.type in ("land", "fail"):
            events.append((tick, "deactivate", cfg.robot_index(ev.robot), 1.0))
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
        events=tuple(sorted(events)),
        hold_ticks=int(math.ceil(lift / TAKEOFF_SPEED / dt)) + 1,
    )


def make_env(sc: Scenario, env_config: dict[str, Any], steps: int, seed: int = 0):
    """A B = 1 :class:`ResourceEnv` holding scenario ``sc``, reward gains from ``env_config``
    (the checkpoint's), ``episode_length = steps``."""
    from lgtc_policy.env import EnvConfig, ResourceEnv

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
    """

    reward: float
    demand_satisfied: float
    collisions: int
    min_distance: float
    pos: np.ndarray
    attended: np.ndarray
    reward_terms: dict[str, float]


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
        )


def _apply_events(env, sc: Scenario, tick: int) -> None:
    for t, kind, i, level in sc.events:
        if t != tick:
            continue
        if kind == "discharge":
            env.discharge(torch.tensor([0]), torch.tensor([i]), level=level, deactivate=False)
        else:
            env.discharge(torch.tensor([0]), torch.tensor([i]), level=1.0, deactivate=True)


def _env_cbf(env, sc: Scenario):
    """The ROS chain's safety filter inside the env: the centralized form of the cbf_filter
    core at the scenario's safety distance (the normalised ``Ds``), speed limit and arena, with
    the cbf_filter defaults for the gain (what the cbf_filter nodes run)."""
    from cbf_filter import CBFParams

    from lgtc_policy.env.safety import SafetyFilter

    params = CBFParams(
        safety_distance=float(sc.epsilon),
        max_speed=env.cfg.v_max,
        arena=((-1.0, 1.0), (-1.0, 1.0)),
        boundary_margin=0.0,
        sample_time=env.cfg.dt,
        sensing_radius=None,
    )
    safety = SafetyFilter(env, params=params)
    return safety.filter


@torch.inference_mode()
def core_rollout(
    net, sc: Scenario, env_config: dict, steps: int, seed: int = 0, cbf: bool = False
) -> EpisodeScore:
    """The policy ``net`` (an ``LGTCNet``) on the scenario in the core env for ``steps`` ticks;
    with ``cbf`` every action first passes the centralized CBF (:func:`_env_cbf`), like the
    commands of the ROS chain."""
    from lgtc_policy.model.features import inputs_from_obs

    env = make_env(sc, env_config, steps, seed)
    safety = _env_cbf(env, sc) if cbf else None
    tr = _Tracker(env)
    zero = torch.zeros(1, env.cfg.n_agents, 2)
    x = torch.zeros(1, env.cfg.n_agents, net.state_dim)
    obs = env.observe()
    prev = None
    for t in range(steps):
        _apply_events(env, sc, t)
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
    try:
        from lgtc_policy.env.expert import CentralizedExpert
    except ImportError as exc:
        raise MissionError(f"the centralized expert is not available ({exc})") from None
    env = make_env(sc, env_config, steps, seed)
    expert = CentralizedExpert(env)
    tr = _Tracker(env)
    zero = torch.zeros(1, env.cfg.n_agents, 2)
    for t in range(steps):
        _apply_events(env, sc, t)
        act = zero if t < sc.hold_ticks else expert.act()
        _, _, _, info = env.step(act)
        tr.add(info, expert.assignment[0].copy())  # the expert's own eq. 3 assignment
    return tr.score()


@torch.inference_mode()
def greedy_rollout(
    sc: Scenario, env_config: dict, steps: int, seed: int = 0, cbf: bool = True
) -> EpisodeScore:
    """The decentralized greedy rule (:mod:`lgtc_policy.greedy`, the BC teacher; not in the
    paper) on the scenario, each action through the centralized CBF like
    ``core_rollout(cbf=True)``: a yardstick that needs no checkpoint."""
    from lgtc_policy.greedy import greedy_action

    env = make_env(sc, env_config, steps, seed)
    safety = _env_cbf(env, sc) if cbf else None
    tr = _Tracker(env)
    zero = torch.zeros(1, env.cfg.n_agents, 2)
    for t in range(steps):
        _apply_events(env, sc, t)
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
        _apply_events(env, sc, t)
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
