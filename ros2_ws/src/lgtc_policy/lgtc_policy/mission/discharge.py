"""Battery-discharge reallocation (LGTC paper Sec. IV-D, Fig. 5): how one run is judged.

The study that flies the runs is :mod:`lgtc_policy.mission.discharge_study` (``lgtc
discharge``). Each run flies a config whose ``discharge`` event empties one robot's battery at
``t`` and whose ``land`` event lands it; :func:`analyse` then reads the sampled trajectory:

* the *victim* is the event's ``robot``; for an event with ``select: alone`` (the robot that
  serves a consumer alone when it fires: every run then leaves a consumer uncovered, as in
  Fig. 5, ``lgtc discharge --victim alone``) it is the robot the world's event record names
  (``/swarm/events``, recorded in the run; the core backend's
  :attr:`~lgtc_policy.mission.scenario.EpisodeScore.fired`); outcome ``nobody alone`` when
  the event found no such robot;
* the victim's *consumer* is the one whose interaction area held it (floor distance
  ``<= R_m``, airborne; the nearest on overlap, the simulator's coverage rule) at the last
  sample before its battery emptied;
* the allocation at the event is *complete* when every consumer's area held an airborne
  robot (Fig. 5 starts from one: "the drones allocate their resources to target locations");
  ``uncovered_at_event`` lists the consumers that held none;
* that consumer is *abandoned* when no other airborne robot was inside its area then;
* *re-cover time*: first sim time after the event at which another airborne robot is inside
  the area **and** every other consumer still holds one (the new allocation covers all M
  consumers with the N - 1 robots left, as eq. 3 requires; a robot that only moves the gap
  to the consumer it left does not count); ``recovered_by`` names the robot inside the
  victim's consumer then and ``recovered_from`` the consumer whose area held it at the event
  (Fig. 5: "a drone of another subteam"; ``null``: it was in no area);
  ``covered_after_pct``: share of the samples after the event in which another airborne robot
  is inside the victim's consumer (a pass-through scores low, a new allocation high);
* a run **succeeds** when the allocation was complete, the victim landed and the abandoned
  consumer was re-covered within ``window`` seconds (40 s: the issue's goal; the paper
  reports the new allocation about 35 s later). A run in which nothing was abandoned does not
  exercise the reallocation and is not a success: ``outcome`` says which case it was
  (``re-covered``, ``not re-covered``, ``not landed``, ``not abandoned``: another robot was
  already inside the victim's consumer, ``incomplete allocation``: some consumer held no
  robot at the event, so there was no allocation to repair, ``victim in no area``: the
  victim was serving no consumer, ``no event``: the run ended first, ``nobody alone``: a
  ``select: alone`` event found no robot serving a consumer alone, or no record of it).

:func:`core_trajectory` flies a config in the batched core env instead of ROS
(:func:`lgtc_policy.mission.scenario.core_rollout` with the ROS chain's CBF filters, the
events of the config at their 20 Hz tick) and adds the simulator's vertical profile, so
:func:`analyse` reads it exactly as a ROS run. :func:`variant` makes the seeded run configs.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from sim_bridge.sim import SimParams

from lgtc_policy.agent import MissionError
from lgtc_policy.mission.scenario import (
    core_rollout,
    expert_rollout,
    greedy_rollout,
    scenario_from_config,
)

__all__ = [
    "CONTROLLERS",
    "VICTIMS",
    "analyse",
    "core_trajectory",
    "event_victim",
    "select_alone",
    "summarise",
    "variant",
]


def variant(mapping: dict, seed: int, jitter: float, checkpoint: str | None) -> dict:
    """The config ``mapping`` for run ``seed``: seed set, start xy jittered by <= ``jitter``."""
    data = json.loads(json.dumps(mapping))
    rng = np.random.default_rng(seed)
    data["seed"] = int(seed)
    for r in data["robots"]:
        dx, dy = rng.uniform(-jitter, jitter, 2)
        r["pose"] = [r["pose"][0] + float(dx), r["pose"][1] + float(dy), *r["pose"][2:]]
    if checkpoint:
        data.setdefault("policy", {})["checkpoint"] = checkpoint
    return data


#: Who a study discharges: the config's named robot, or the robot that serves a consumer
#: alone when the event fires (:func:`select_alone`).
VICTIMS = ("config", "alone")


def select_alone(mapping: dict) -> dict:
    """The config ``mapping`` with each ``discharge`` event, and every ``land`` / ``fail``
    event of the same robot at the same ``t``, turned into ``select: alone`` (the robot that
    serves a consumer alone when it fires; ``sim_bridge.config.Event``): every run then
    leaves a consumer uncovered, as the paper's Fig. 5 ("the task left uncovered")."""
    data = json.loads(json.dumps(mapping))
    events = data.get("events") or []
    picked = set()
    for e in events:
        if isinstance(e, dict) and e.get("type") == "discharge" and "robot" in e:
            picked.add((e.get("t"), e["robot"]))
            del e["robot"]
            e["select"] = "alone"
    for e in events:
        if (
            isinstance(e, dict)
            and e.get("type") in ("land", "fail")
            and (e.get("t"), e.get("robot")) in picked
        ):
            del e["robot"]
            e["select"] = "alone"
    return data


class _Areas:
    """Which consumer's interaction area holds each airborne robot of ``cfg`` (floor distance
    ``<= R_m``, above half its take-off height; the nearest on overlap)."""

    def __init__(self, cfg) -> None:
        self.cpos = np.array([c.position for c in cfg.consumers])
        self.rad = np.array([c.radius for c in cfg.consumers])
        self.lift = np.array([cfg.arena.z[0] + 0.5 * r.takeoff_height for r in cfg.robots])

    def __call__(self, pos: np.ndarray) -> np.ndarray:
        """(N,) consumer index per robot at positions ``pos`` (N, 3), or -1."""
        d = np.linalg.norm(pos[:, None, :2] - self.cpos[None], axis=-1)
        inside = (d <= self.rad[None]) & (pos[:, 2] >= self.lift)[:, None]
        return np.where(inside.any(axis=1), np.where(inside, d, np.inf).argmin(axis=1), -1)


def _check_trajectory(cfg, times, positions) -> tuple[np.ndarray, np.ndarray]:
    times = np.asarray(times, dtype=float)
    positions = np.asarray(positions, dtype=float)
    n = len(cfg.robots)
    if positions.ndim != 3 or positions.shape[1:] != (n, 3) or len(times) != len(positions):
        raise MissionError(
            f"trajectory: positions {positions.shape} / times {times.shape}, expected "
            f"(T, {n}, 3) / (T,)"
        )
    return times, positions


def _fail(out: dict, outcome: str, reason: str) -> dict:
    out.update(success=False, outcome=outcome, reason=reason)
    return out


def event_victim(cfg, records: list[dict] | None) -> str | None:
    """The robot the first ``discharge`` event of ``cfg`` acted on: its ``robot``, or for a
    ``select`` event the ``robot`` of the first ``discharge`` record in ``records`` (the
    world's ``/swarm/events`` dicts; ``None`` when there is none or it found no robot)."""
    ev = next((e for e in cfg.events if e.type == "discharge"), None)
    if ev is None:
        raise MissionError(f"{cfg.source}: no discharge event to analyse")
    if ev.select is None:
        return ev.robot
    rec = next((r for r in records or () if r.get("type") == "discharge"), None)
    name = None if rec is None else rec.get("robot")
    return name if isinstance(name, str) and name in cfg.robot_names else None


def analyse(
    cfg,
    times: np.ndarray,
    positions: np.ndarray,
    window: float = 40.0,
    events: list[dict] | None = None,
) -> dict:
    """Re-cover figures of one run (see the module docstring): ``times (T,)`` [s] and
    ``positions (T, N, 3)`` [m, world frame] of the robots of ``cfg`` (its first ``discharge``
    event is the one analysed); ``events``: the run's event records (``/swarm/events``
    dicts), needed when that event selects its robot (:func:`event_victim`)."""
    ev = next((e for e in cfg.events if e.type == "discharge"), None)
    if ev is None:
        raise MissionError(f"{cfg.source}: no discharge event to analyse")
    times, positions = _check_trajectory(cfg, times, positions)
    out: dict[str, Any] = {"victim": None, "t_event": ev.t}
    before = np.nonzero(times < ev.t)[0]
    if before.size == 0 or times[-1] < ev.t:
        return _fail(out, "no event", "run ended before the event")
    name = event_victim(cfg, events)
    if name is None:
        return _fail(
            out,
            "nobody alone",
            "the event found no robot serving a consumer alone (or left no record)",
        )
    out["victim"] = name
    victim = cfg.robot_index(name)
    others = np.array([i for i in range(len(cfg.robots)) if i != victim])
    area = _Areas(cfg)
    at = area(positions[before[-1]])
    out["landed"] = bool(positions[-1, victim, 2] < cfg.arena.z[0] + 0.1)
    if at[victim] < 0:
        return _fail(
            out,
            "victim in no area",
            "the victim was not serving a consumer at the event: nothing abandoned",
        )
    m = int(at[victim])
    out["consumer"] = cfg.consumers[m].name
    out["abandoned"] = not bool((at[others] == m).any())
    n_cons = len(cfg.consumers)
    empty = np.bincount(at[at >= 0], minlength=n_cons) == 0
    out["uncovered_at_event"] = [cfg.consumers[k].name for k in np.flatnonzero(empty)]
    after = np.nonzero(times >= ev.t)[0]
    where = np.array([area(positions[k])[others] for k in after])  # (K, N - 1)
    held = where == m
    covered = held.any(axis=1)
    out["covered_after_pct"] = float(100.0 * covered.mean()) if covered.size else math.nan
    if empty.any():
        return _fail(
            out,
            "incomplete allocation",
            f"{', '.join(out['uncovered_at_event'])} held no robot at the event: "
            "there was no complete allocation to repair",
        )
    if not out["abandoned"]:
        return _fail(
            out,
            "not abandoned",
            f"another robot was already inside {cfg.consumers[m].name}: nothing to re-cover",
        )
    every = np.array([np.isin(np.arange(n_cons), row).all() for row in where], dtype=bool)
    recover, by, came_from = math.nan, None, None
    if every.any():
        k = int(np.argmax(every))
        recover = float(times[after[k]] - ev.t)
        j = int(others[np.argmax(held[k])])
        by = cfg.robots[j].name
        came_from = cfg.consumers[int(at[j])].name if at[j] >= 0 else None
    out.update(recover_s=recover, recovered_by=by, recovered_from=came_from)
    in_time = math.isfinite(recover) and recover <= window
    out["success"] = bool(out["landed"] and in_time)
    if out["success"]:
        out["outcome"] = "re-covered"
    elif not out["landed"]:
        out.update(outcome="not landed", reason="the victim did not land")
    else:
        out.update(outcome="not re-covered", reason=f"not re-covered in {window:g} s")
    return out


def summarise(results: list[dict], backend: str, checkpoint: str | None, window: float) -> dict:
    """The study's summary: success count (the issue's goal), runs per ``outcome``.

    ``successes_from_subteam`` counts the successes whose re-covering drone was inside another
    consumer's area at the event (``recovered_from`` set): Fig. 5's "a drone of another
    subteam relocates". The others were re-covered by a drone that held no area then (a spare
    or a drone hovering outside every area)."""
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {
        "backend": backend,
        "checkpoint": checkpoint,
        "runs": len(results),
        "successes": sum(bool(r["success"]) for r in results),
        "successes_from_subteam": sum(
            bool(r["success"]) and r.get("recovered_from") is not None for r in results
        ),
        "abandoned": sum(bool(r.get("abandoned")) for r in results),
        "outcomes": outcomes,
        "window_s": window,
        "results": results,
    }


#: Who flies the core backend: the checkpoint's LGTC policy (eqs. 4-6, deterministic mean
#: action, through the centralized CBF), the centralized expert of eq. 3 (its own CBF), or
#: the decentralized greedy rule (through the CBF). The last two need no checkpoint.
CONTROLLERS = ("policy", "expert", "greedy")


def core_trajectory(
    cfg,
    net,
    env_config: dict,
    duration: float,
    seed: int = 0,
    controller: str = "policy",
    cbf: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """``controller`` (:data:`CONTROLLERS`; ``net`` is the policy's ``LGTCNet``, unused by
    the others) on swarm config ``cfg`` in the core env, sampled like the ROS monitor:
    ``(times (T + 1,) [s], positions (T + 1, N, 3) [m, world frame], clusters (K, 3) rows
    (t, robot, cluster), events)``, ``T = ceil(duration * control_hz)``; ``events`` are the
    records of what each scripted event did (``t``, ``type``: ``discharge`` or ``deactivate``
    (a ``land`` or ``fail``), ``robot``: the world's ``/swarm/events`` fields; ``robot`` is
    ``None`` for a ``select`` event that found no robot); the cluster is the policy's
    argmax attention, for the expert what
    :func:`~lgtc_policy.mission.scenario.expert_rollout` records
    (the env's eq. 3 ``ResourceEnv.assignment``, not the expert's own), none for greedy.
    ``cbf=False`` flies the policy or the greedy rule without the centralized CBF (the
    paper's training setting); the expert always uses its own.

    ``positions[k]`` is the state at ``k / control_hz`` s; an event at ``t`` acts at the first
    tick ``>= t`` (:func:`lgtc_policy.mission.scenario.scenario_from_config`). Heights follow the
    simulator: drones climb to ``takeoff_height`` at ``SimParams.takeoff_speed`` from t = 0
    (the env holds them still meanwhile) and descend at ``SimParams.landing_speed`` from the
    tick a ``land`` / ``fail`` event deactivates them; ground robots stay at the floor.
    """
    hz = cfg.rates.control_hz
    sc = scenario_from_config(cfg, hz)
    steps = int(math.ceil(duration * hz - 1e-9))
    if steps < 1:
        raise MissionError(f"duration {duration} s: must be at least one control tick")
    if controller == "policy":
        score = core_rollout(net, sc, env_config, steps, seed=seed, cbf=cbf)
    elif controller == "expert":
        score = expert_rollout(sc, env_config, steps, seed=seed)
    elif controller == "greedy":
        score = greedy_rollout(sc, env_config, steps, seed=seed, cbf=cbf)
    else:
        raise MissionError(f"controller {controller!r}: use one of {', '.join(CONTROLLERS)}")
    times = np.arange(steps + 1) / hz
    xy = sc.frame.to_world(score.pos)
    sim = SimParams()
    z0 = cfg.arena.z[0]
    z = np.full((steps + 1, len(cfg.robots)), z0)
    att = score.attended.copy()  # (T, N): cluster chosen at tick t, from tick hold_ticks on
    records = [
        {"t": tick / hz, "type": kind, "robot": cfg.robots[j].name if j >= 0 else None}
        for tick, kind, j in score.fired
    ]
    for i, r in enumerate(cfg.robots):
        drone = r.kind == "crazyflie"
        if drone:
            z[:, i] = z0 + np.minimum(sim.takeoff_speed * times, r.takeoff_height)
        off = [tick for tick, kind, j in score.fired if kind == "deactivate" and j == i]
        if off and min(off) <= steps:
            k = min(off)
            att[k:, i] = -1  # an inactive robot attends nothing (the policy node's -1)
            if drone:
                drop = sim.landing_speed * (times[k:] - times[k])
                z[k:, i] = np.maximum(z[k, i] - drop, z0)
    tt, ii = np.nonzero(att >= 0)
    clusters = np.stack([times[tt], ii, att[tt, ii]], axis=1).astype(float).reshape(-1, 3)
    return times, np.concatenate([xy, z[..., None]], axis=-1), clusters, records
