"""Vectorised kinematic simulator of a heterogeneous swarm (no rclpy).

Robots (``N``, index order of ``SwarmConfig.robots``):

* ``crazyflie``: 3-D single integrator ``p' = v`` with ``|v| <= max_speed`` and a flight
  mode machine ``grounded -> taking_off -> flying -> landing -> grounded``; ``failed`` is
  terminal (motors off: the drone drops to the floor). Commands move a drone only while
  ``flying``; take-off and landing are vertical at ``SimParams.takeoff_speed``.
* ``ground``: unicycle ``x' = v cos(th), y' = v sin(th), th' = w`` with ``|v| <= max_speed``
  and ``|w| <= max_yaw_rate``. The world-frame velocity command ``u`` is mapped through the
  near-identity (projection-point) diffeomorphism at distance ``l`` ahead of the axle:
  ``v = [cos th, sin th] . u``, ``w = [-sin th, cos th] . u / l``. A ground robot is
  ``grounded`` (disabled) until ``takeoff`` enables it (mode ``flying`` = driving) and
  ``land`` disables it again.

Resources (LGTC-IPPO paper, Sec. II, as ``lgtc_policy.env.ResourceEnv`` implements them):
robot ``i`` holds supplies ``so_i`` (``supply``, ``(N, R)``) and consumer ``m`` a requirement
per type (``requirement``, ``(M, R)``). A robot is *present* while it is ``flying`` (a drone
in the air, not taking off, landing, grounded or failed; a ground robot with driving
enabled); a present robot inside interaction radii ``R_m`` (floor distance) targets the
nearest such consumer only (the lowest index on a tie), exactly as the training env's
``_targets``. Per step, after motion:

* persistent type (coverage, "agents remain within the release area indefinitely to sustain
  delivery"): supplies are never consumed; consumer ``m``'s remaining demand is
  ``de_ml = max(0, requirement_ml - sum of so_il over the present robots targeting m)``, so it
  comes back as soon as a robot leaves, lands or fails;
* instantaneous type: the present robots targeting ``m`` hand over what ``m`` still misses,
  ``min(sum_i so_il, requirement_ml)``, shared in proportion to their supplies (the env's
  rule); it leaves their supplies and the requirement for good: ``de_ml = requirement_ml``.

Demand (``demand``, what ``/consumers`` publishes) is never negative, and for instantaneous
types every unit released is a unit delivered: ``released.sum(0) == delivered.sum(0)`` per
step (conservation). Persistent supplies change only through ``discharge`` events.

Scripted events (``discharge``, ``fail``, ``demand``, ``takeoff``, ``land``) fire at the
first step whose start time is ``>= t``; one with ``select: alone`` takes the robot
:func:`robot_serving_alone` picks from ``serving`` as the last step left it. The simulator is
deterministic: the only random draw (optional velocity noise) comes from
``numpy.random.default_rng(seed)``.

Routing missions (a config with a ``routing`` section, :mod:`sim_bridge.routing`): obstacle
cells are solid for every robot at any height: each step's floor displacement goes through
:func:`sim_bridge.routing.clip_motion` (one axis at a time, x then y; the robot stops just
before the first obstacle cell it would enter; clipped steps are counted in ``blocked``). A
task is visited at the end of the first step in which a present robot (flying / driving)
*is in* its cell (nearest centre); ``task_visited``, ``task_visited_by`` (the lowest such robot
index) and ``task_t_visited`` [s] keep it. :meth:`Simulator.view` is the robot's view of the
wire contract, :meth:`Simulator.robot_cells` and :meth:`Simulator.at_centre` what the lockstep
(``routing.Lockstep``) needs.

Commands are world-frame velocities [m/s] with an age; a command older than
``CMD_TIMEOUT_S`` [s] of sim time means hold still. Non-finite commands and commands
faster than ``CMD_REJECT_FACTOR * max_speed`` are rejected, counted, and the robot holds
(garbage is no command: it does not postpone the watchdog below). A valid command already
older than ``CMD_TIMEOUT_S`` when it is set is ignored. A robot that has flown (driven) on a
fresh command since its take-off and then receives none for ``SimParams.land_after_s`` [s] of
sim time lands (a ground robot is disabled), exactly as the radio and ground bridges'
watchdogs do on hardware (the failure ladder of :mod:`sim_bridge.topics`); the step reports it
as a ``watchdog_land`` event. A robot that never
received a command after take-off hovers, as the Crazyflie's high-level commander does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np

from sim_bridge.config import Event, SwarmConfig
from sim_bridge.routing import clip_motion, open_task_grid, task_table, view_table
from sim_bridge.topics import CMD_REJECT_FACTOR, CMD_TIMEOUT_S, LAND_AFTER_S


def robot_serving_alone(serving: np.ndarray) -> int | None:
    """The robot that serves a consumer alone: the lowest index ``i`` with ``serving[i] =
    m >= 0`` and no other ``j`` with ``serving[j] = m`` (``serving``: ``(N,)`` consumer each
    robot is inside, nearest on overlap, or -1, as :attr:`Simulator.serving`); ``None`` when
    every served consumer holds two or more robots, or none is served. An event with
    ``select: alone`` (``sim_bridge.config.Event``) acts on it."""
    serving = np.asarray(serving, dtype=np.int64).reshape(-1)
    inside = serving >= 0
    if not inside.any():
        return None
    count = np.bincount(serving[inside])
    alone = np.flatnonzero(inside & (count[np.where(inside, serving, 0)] == 1))
    return int(alone[0]) if alone.size else None


#: event types that :func:`describe_events` leaves out when they succeeded (routine calls)
ROUTINE_EVENTS = ("takeoff",)


def describe_events(events: list[dict], dropped: int = 0, limit: int = 20) -> list[str]:
    """The world's event records (:attr:`Simulator.event_log`, ``/swarm/events``) for people:
    one ``12.3 s fail cf3`` line per event that is not a routine, successful take-off (a
    watchdog landing says how long the robot was without a command, a skipped event why, a
    refused service call its message); at most ``limit`` lines, then a count of the rest
    (with ``dropped`` records a reader did not keep). Used by ``swarm up``'s summary and the
    mission reports."""
    shown = [e for e in events if e.get("type") not in ROUTINE_EVENTS or e.get("ok") is False]
    lines = []
    for e in shown[:limit]:
        t = e.get("t")
        head = f"{t:.1f} s" if isinstance(t, int | float) and np.isfinite(t) else "? s"
        text = f"{head} {e.get('type')} {e.get('robot') or ''}".rstrip()
        if "silence_s" in e:
            text += f" (no command for {e['silence_s']} s)"
        elif e.get("skipped"):
            text += f" (skipped: {e['skipped']})"
        elif e.get("ok") is False:
            text += f" (refused: {e.get('message', '')})"
        lines.append(text[:200])
    more = len(shown) - len(lines) + dropped
    if more > 0:
        lines.append(f"... and {more} more")
    return lines


class Mode(IntEnum):
    """Flight / drive mode of a robot."""

    GROUNDED = 0
    TAKING_OFF = 1
    FLYING = 2
    LANDING = 3
    FAILED = 4


MODE_NAMES = tuple(m.name.lower() for m in Mode)
_GROUNDED, _TAKING_OFF, _FLYING, _LANDING, _FAILED = (int(m) for m in Mode)


@dataclass(frozen=True)
class SimParams:
    """Simulator constants.

    Attributes:
        takeoff_speed: vertical speed of take-off [m/s].
        landing_speed: vertical speed of landing [m/s].
        projection_distance: ``l`` of the unicycle's near-identity map [m].
        min_flight_z: lowest altitude above the floor a flying drone is held at [m].
        velocity_noise_std: std of Gaussian noise added to executed velocities [m/s].
        land_after_s: sim time [s] without a fresh command after which a robot that was
            flying on commands lands (``topics.LAND_AFTER_S``, as the bridges).
    """

    takeoff_speed: float = 0.5
    landing_speed: float = 0.4
    projection_distance: float = 0.1
    min_flight_z: float = 0.05
    velocity_noise_std: float = 0.0
    land_after_s: float = LAND_AFTER_S


class Simulator:
    """``N`` robots, ``M`` consumers, ``R`` resource types, stepped at ``dt`` [s].

    State arrays (public, read them; change them only through the methods):
        pos: ``(N, 3)`` position [m], world frame.
        yaw: ``(N,)`` heading [rad].
        vel: ``(N, 3)`` velocity executed in the last step [m/s], world frame.
        mode: ``(N,)`` :class:`Mode` values (int8).
        supply: ``(N, R)`` supplies ``so`` (instantaneous: what is left; persistent: constant
            except for ``discharge`` events).
        requirement: ``(M, R)`` instantaneous: what is still missing; persistent: the
            constant requirement (changed by ``demand`` events only).
        coverage: ``(M, R)`` persistent supply of the present robots targeting each consumer
            (0 for instantaneous types).
        demand: ``(M, R)`` remaining demands ``de`` (never negative): ``requirement`` minus
            ``coverage``, clamped at 0.
        released: ``(N, R)`` cumulative instantaneous amount each robot released.
        delivered: ``(M, R)`` cumulative instantaneous amount each consumer received.
        serving: ``(N,)`` consumer each robot targets (present, inside ``R_m``), or -1.
        rejected: ``(N,)`` number of rejected commands per robot.
        t: sim time [s]; steps: number of steps taken.
    """

    def __init__(
        self,
        cfg: SwarmConfig,
        dt: float | None = None,
        params: SimParams | None = None,
        seed: int | None = None,
    ):
        self.cfg = cfg
        self.params = params or SimParams()
        self.dt = float(dt) if dt is not None else 1.0 / cfg.rates.sim_hz
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
        self.rng = np.random.default_rng(cfg.seed if seed is None else seed)
        robots = cfg.robots
        self.n = len(robots)
        self.m = len(cfg.consumers)
        self.r = len(cfg.resource_types)
        self.names = cfg.robot_names
        self.is_drone = np.array([r.kind == "crazyflie" for r in robots], dtype=bool)
        self.radius = np.array([r.radius for r in robots], dtype=float)
        self.max_speed = np.array([r.max_speed for r in robots], dtype=float)
        self.max_yaw_rate = np.array([r.max_yaw_rate for r in robots], dtype=float)
        self.takeoff_height = np.array([r.takeoff_height for r in robots], dtype=float)
        self.arena_low = cfg.arena.low
        self.arena_high = cfg.arena.high
        self.consumer_pos = np.array([c.position for c in cfg.consumers], dtype=float).reshape(
            self.m, 2
        )
        self.consumer_radius = np.array([c.radius for c in cfg.consumers], dtype=float)
        self._consumer_r2 = self.consumer_radius[None, :] ** 2
        #: robots not simulated here (backend cflib / external): poses come from outside
        self.external = np.array([r.backend != "sim" for r in robots], dtype=bool)
        self._internal = ~self.external
        self._drone_internal = self.is_drone & self._internal
        self._has_ground = bool((~self.is_drone).any())
        self._has_external = bool(self.external.any())
        self._target_z = self.arena_low[2] + self.takeoff_height
        self._low = np.tile(self.arena_low, (self.n, 1))
        self._flight_floor = self.arena_low[2] + self.params.min_flight_z
        self.persistent = cfg.depletion_matrix()
        kinds = cfg.type_depletion()
        self._persistent_type = np.array(
            [kinds[t] == "persistent" for t in cfg.resource_types], dtype=bool
        ).reshape(self.r)
        #: routing mission or None: grid, (rows, cols) obstacles, (T, 2) task cells
        self.routing = cfg.routing
        if self.routing is not None:
            self.grid = self.routing.grid
            self.obstacles = self.routing.obstacles
            self.task_cells = self.routing.task_cells
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Back to the configured initial state (poses, supplies, demands, events)."""
        cfg = self.cfg
        self.pos = np.array([r.pose[:3] for r in cfg.robots], dtype=float).reshape(self.n, 3)
        self.yaw = np.array([r.pose[3] for r in cfg.robots], dtype=float)
        self.vel = np.zeros((self.n, 3))
        self.mode = np.full(self.n, Mode.GROUNDED, dtype=np.int8)
        self.supply = cfg.supply_matrix()
        self.requirement = cfg.demand_matrix()
        self.coverage = np.zeros((self.m, self.r))
        self.demand = self.requirement.copy()
        self.initial_supply = self.supply.copy()
        self.initial_demand = self.requirement.copy()
        self.released = np.zeros((self.n, self.r))
        self.delivered = np.zeros((self.m, self.r))
        self.supply_adjust = np.zeros((self.n, self.r))
        self.demand_adjust = np.zeros((self.m, self.r))
        self.serving = np.full(self.n, -1, dtype=np.int64)
        self.cmd = np.zeros((self.n, 3))
        self.cmd_time = np.full(self.n, -np.inf)
        self.rejected = np.zeros(self.n, dtype=np.int64)
        self.commanded = np.zeros(self.n, dtype=bool)
        self.watchdog_landings = np.zeros(self.n, dtype=np.int64)
        self.t = 0.0
        self.steps = 0
        self._events = list(cfg.events)
        self._next_event = 0
        self.event_log: list[dict] = []
        n_tasks = len(cfg.routing.tasks) if cfg.routing is not None else 0
        self.task_visited = np.zeros(n_tasks, dtype=bool)
        self.task_visited_by = np.full(n_tasks, -1, dtype=np.int64)
        self.task_t_visited = np.full(n_tasks, -1.0)
        self.blocked = np.zeros(self.n, dtype=np.int64)

    @property
    def consumer_active(self) -> np.ndarray:
        """``(M,)`` True while a consumer still demands something."""
        return (self.demand > 0.0).any(axis=1) if self.r else np.zeros(self.m, dtype=bool)

    def index(self, robot: int | str) -> int:
        """Robot index from an index or a name."""
        if isinstance(robot, str):
            return self.cfg.robot_index(robot)
        if not 0 <= int(robot) < self.n:
            raise IndexError(f"robot index {robot} out of range 0..{self.n - 1}")
        return int(robot)

    # ------------------------------------------------------------------ commands

    def set_command(self, robot: int | str, velocity, age_s: float = 0.0) -> bool:
        """Set one robot's world-frame velocity command [m/s] (2 or 3 components).

        ``age_s`` is how old the command already is [s]. Returns False (and counts it in
        :attr:`rejected`; the robot holds still) for a non-finite or out-of-range command.
        A valid command already older than ``CMD_TIMEOUT_S`` is not fresh: it is ignored (the
        previous command stays; its time may only move earlier, so it neither moves the robot
        nor postpones the watchdog's landing) and False is returned.
        """
        i = self.index(robot)
        v = np.zeros(3)
        try:
            arr = np.asarray(velocity, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            arr = np.array([np.nan])
        ok = arr.size in (2, 3) and bool(np.isfinite(arr).all()) and np.isfinite(age_s)
        if ok:
            v[: arr.size] = arr
            ok = float(np.linalg.norm(v)) <= CMD_REJECT_FACTOR * self.max_speed[i]
        if not ok:  # hold at once; the deadline of the last good command is not extended
            self.rejected[i] += 1
            self.cmd[i] = 0.0
            return False
        if age_s > CMD_TIMEOUT_S:  # never postpones the watchdog (see set_commands)
            self.cmd_time[i] = min(self.cmd_time[i], self.t - float(age_s))
            return False
        self.cmd[i] = v
        self.cmd_time[i] = self.t - float(age_s)
        return True

    def set_commands(
        self,
        velocities: np.ndarray,
        ages_s: np.ndarray | None = None,
        *,
        clock_ages: bool = False,
    ) -> np.ndarray:
        """Set all ``N`` commands at once: ``velocities`` ``(N, 3)`` [m/s], ``ages_s`` ``(N,)``.

        Returns the ``(N,)`` bool mask of accepted commands (rejected ones hold still; valid
        ones older than ``CMD_TIMEOUT_S`` are ignored, as in :meth:`set_command`).

        ``clock_ages=True`` says the caller re-sends its stored commands every step with their
        ages on its own clock (the world node: wall or ROS time); the watchdog then follows
        that clock, ``silence = age``, also while sim time catches up with it or falls behind.
        Otherwise a stale command can only bring the landing earlier, never postpone it.
        """
        v = np.asarray(velocities, dtype=float).reshape(self.n, 3)
        ages = np.zeros(self.n) if ages_s is None else np.asarray(ages_s, dtype=float)
        finite = np.isfinite(v).all(axis=1) & np.isfinite(ages)
        speed = np.linalg.norm(np.where(finite[:, None], v, 0.0), axis=1)
        ok = finite & (speed <= CMD_REJECT_FACTOR * self.max_speed)
        self.rejected += ~ok
        keep = ok & (ages > CMD_TIMEOUT_S)  # valid but stale: the previous command stays
        self.cmd = np.where(keep[:, None], self.cmd, np.where(ok[:, None], v, 0.0))
        when = self.t - np.where(finite, ages, 0.0)
        # garbage holds at once without extending the last good command's deadline; a stale
        # command may make it earlier (its age says so), never later
        stale_time = when if clock_ages else np.minimum(self.cmd_time, when)
        self.cmd_time = np.where(ok & ~keep, when, np.where(keep, stale_time, self.cmd_time))
        return ok & ~keep

    def set_external_pose(self, robot: int | str, position, yaw: float, airborne: bool) -> None:
        """Pose of a robot this simulator does not move (real robot): ``position`` (3,) [m],
        ``yaw`` [rad]; ``airborne`` puts it in mode ``flying`` (it can release resources)."""
        i = self.index(robot)
        if not self.external[i]:
            raise ValueError(f"{self.names[i]} is simulated; command it instead")
        self.pos[i] = np.asarray(position, dtype=float).reshape(3)
        self.yaw[i] = float(yaw)
        if self.mode[i] != Mode.FAILED:
            self.mode[i] = Mode.FLYING if airborne else Mode.GROUNDED

    def fresh(self) -> np.ndarray:
        """``(N,)`` True where the command is younger than ``CMD_TIMEOUT_S``."""
        return (self.t - self.cmd_time) <= CMD_TIMEOUT_S

    # ------------------------------------------------------------------ modes

    def takeoff(self, robot: int | str) -> tuple[bool, str]:
        """Start a take-off (drone) or enable driving (ground robot)."""
        i = self.index(robot)
        mode = Mode(self.mode[i])
        if mode == Mode.FAILED:
            return False, f"{self.names[i]} has failed"
        if mode in (Mode.FLYING, Mode.TAKING_OFF):
            return True, f"{self.names[i]} already {mode.name.lower()}"
        self.mode[i] = Mode.TAKING_OFF if self.is_drone[i] else Mode.FLYING
        self.cmd_time[i] = -np.inf
        self.commanded[i] = False
        return True, f"{self.names[i]} taking off" if self.is_drone[i] else "driving enabled"

    def land(self, robot: int | str) -> tuple[bool, str]:
        """Start a landing (drone) or disable driving (ground robot)."""
        i = self.index(robot)
        mode = Mode(self.mode[i])
        if mode == Mode.FAILED:
            return False, f"{self.names[i]} has failed"
        if mode in (Mode.GROUNDED, Mode.LANDING):
            return True, f"{self.names[i]} already {mode.name.lower()}"
        self.mode[i] = Mode.LANDING if self.is_drone[i] else Mode.GROUNDED
        self.commanded[i] = False
        return True, f"{self.names[i]} landing" if self.is_drone[i] else "driving disabled"

    def emergency_stop(self, robot: int | str) -> tuple[bool, str]:
        """Cut the motors: the robot stops for good (mode ``failed``)."""
        i = self.index(robot)
        self._fail(i)
        return True, f"{self.names[i]} stopped"

    def _fail(self, i: int) -> None:
        self.mode[i] = Mode.FAILED
        self.vel[i] = 0.0
        if self.is_drone[i]:
            self.pos[i, 2] = self.arena_low[2]

    # ------------------------------------------------------------------ events

    def _fire_events(self) -> list[dict]:
        fired = []
        while self._next_event < len(self._events) and self._events[self._next_event].t <= (
            self.t + 1e-9
        ):
            ev = self._events[self._next_event]
            self._next_event += 1
            fired.append(self._apply_event(ev))
        return fired

    def _apply_event(self, ev: Event) -> dict:
        record = {"t": self.t, "type": ev.type}
        robot = ev.robot
        if ev.select is not None:  # "alone": picked now, from the last step's serving
            pick = robot_serving_alone(self.serving)
            record["select"] = ev.select
            if pick is None:
                record.update(robot=None, skipped="no robot serves a consumer alone")
                self.event_log.append(record)
                return record
            robot = self.cfg.robots[pick].name
            ev = replace(ev, robot=robot, select=None)
        if ev.type == "discharge":
            i, k = self.index(ev.robot), self.cfg.resource_index(ev.resource)
            self.supply_adjust[i, k] += ev.amount - self.supply[i, k]
            self.supply[i, k] = ev.amount
            record.update(robot=ev.robot, resource=ev.resource, amount=ev.amount)
        elif ev.type == "demand":
            m, k = self.cfg.consumer_index(ev.consumer), self.cfg.resource_index(ev.resource)
            self.demand_adjust[m, k] += ev.amount - self.requirement[m, k]
            self.requirement[m, k] = ev.amount
            record.update(consumer=ev.consumer, resource=ev.resource, amount=ev.amount)
        elif ev.type == "fail":
            self._fail(self.index(ev.robot))
            record.update(robot=ev.robot)
        else:
            ok, msg = (self.takeoff if ev.type == "takeoff" else self.land)(ev.robot)
            record.update(robot=ev.robot, ok=ok, message=msg)
        self.event_log.append(record)
        return record

    # ------------------------------------------------------------------ step

    def step(self) -> list[dict]:
        """Advance one step of ``dt``: events, motion, resource release. Returns the events
        that fired (dicts with ``t``, ``type`` and the event's fields)."""
        fired = self._fire_events() if self._next_event < len(self._events) else []
        dt = self.dt
        mode = self.mode
        internal = self._internal
        moving = (mode == _FLYING) & internal
        silence = self.t - self.cmd_time
        active = moving & (silence <= CMD_TIMEOUT_S)
        self.commanded |= active
        # Failure ladder (topics): flown on commands, then none for land_after_s -> land.
        quiet = moving & self.commanded & (silence > self.params.land_after_s)
        if quiet.any():
            fired = fired + self._watchdog_land(np.flatnonzero(quiet), silence)
            moving = (mode == _FLYING) & internal
        cmd = self.cmd * active[:, None]
        if self.params.velocity_noise_std > 0.0:
            cmd += moving[:, None] * self.rng.normal(
                0.0, self.params.velocity_noise_std, (self.n, 3)
            )

        # drones: saturated 3-D single integrator (ball of radius max_speed)
        speed = np.sqrt(np.einsum("ij,ij->i", cmd, cmd))
        scale = np.minimum(1.0, self.max_speed / np.maximum(speed, 1e-12)) * self.is_drone
        vel = cmd * scale[:, None]

        # drones: vertical take-off / landing
        up = (mode == _TAKING_OFF) & self._drone_internal
        down = (mode == _LANDING) & self._drone_internal
        vertical = up.any() or down.any()
        if vertical:
            vel[up, 2] = np.minimum(
                self.params.takeoff_speed, (self._target_z[up] - self.pos[up, 2]) / dt
            )
            vel[down, 2] = -np.minimum(
                self.params.landing_speed, (self.pos[down, 2] - self.arena_low[2]) / dt
            )

        # ground robots: unicycle through the near-identity map
        if self._has_ground:
            ground = moving & ~self.is_drone
            if ground.any():
                th = self.yaw[ground]
                c, s = np.cos(th), np.sin(th)
                u = cmd[ground, :2]
                vmax, wmax = self.max_speed[ground], self.max_yaw_rate[ground]
                v = np.clip(c * u[:, 0] + s * u[:, 1], -vmax, vmax)
                w = (-s * u[:, 0] + c * u[:, 1]) / self.params.projection_distance
                w = np.clip(w, -wmax, wmax)
                vel[ground, 0] = v * c
                vel[ground, 1] = v * s
                self.yaw[ground] = np.mod(th + w * dt + np.pi, 2 * np.pi) - np.pi

        new = self.pos + vel * dt
        self._low[:, 2] = np.where(moving & self.is_drone, self._flight_floor, self.arena_low[2])
        np.clip(new, self._low, self.arena_high, out=new)
        if self._has_external:
            new[self.external] = self.pos[self.external]
        if self.routing is not None:  # obstacle cells are solid (module docstring)
            free_xy = clip_motion(self.grid, self.obstacles, self.pos[:, :2], new[:, :2])
            self.blocked += (free_xy != new[:, :2]).any(axis=1)
            new[:, :2] = free_xy
        self.vel = (new - self.pos) / dt
        self.pos = new

        if vertical:
            mode[up & (new[:, 2] >= self._target_z - 1e-9)] = _FLYING
            mode[down & (new[:, 2] <= self.arena_low[2] + 1e-9)] = _GROUNDED

        self._release()
        self.t = (self.steps + 1) * dt
        self.steps += 1
        if self.routing is not None and not self.task_visited.all():
            self._visit_tasks()
        return fired

    def _visit_tasks(self) -> None:
        """Mark the open tasks whose cell holds a present robot (lowest index first)."""
        present = np.flatnonzero(self.mode == _FLYING)
        if present.size == 0:
            return
        cols = self.grid.cols
        cells = self.grid.cell_of(self.pos[present, :2])
        rflat = cells[:, 0] * cols + cells[:, 1]  # ascending robot index within equal cells
        order = np.argsort(rflat, kind="stable")
        rflat, robots = rflat[order], present[order]
        open_idx = np.flatnonzero(~self.task_visited)
        tflat = self.task_cells[open_idx, 0] * cols + self.task_cells[open_idx, 1]
        at = np.searchsorted(rflat, tflat)
        hit = (at < rflat.size) & (rflat[np.minimum(at, rflat.size - 1)] == tflat)
        done = open_idx[hit]
        self.task_visited[done] = True
        self.task_visited_by[done] = robots[at[hit]]
        self.task_t_visited[done] = self.t

    def _watchdog_land(self, rows: np.ndarray, silence: np.ndarray) -> list[dict]:
        records = []
        for i in rows.tolist():
            self.land(i)
            self.watchdog_landings[i] += 1
            record = {
                "t": self.t,
                "type": "watchdog_land",
                "robot": self.names[i],
                "silence_s": round(float(silence[i]), 3),
            }
            self.event_log.append(record)
            records.append(record)
        return records

    def _release(self) -> None:
        """Resource release at consumers, LGTC paper Sec. II (see the module docstring)."""
        self.serving[:] = -1
        self.coverage[:] = 0.0
        if self.m == 0 or self.r == 0:
            self.demand = self.requirement.copy()
            return
        diff = self.pos[:, None, :2] - self.consumer_pos[None, :, :]
        d2 = np.einsum("nmk,nmk->nm", diff, diff)  # (N, M) squared floor distances
        inside = (d2 <= self._consumer_r2) & (self.mode == _FLYING)[:, None]
        rows = np.flatnonzero(inside.any(axis=1))  # (K,) present robots inside some R_m
        if rows.size:
            target = np.argmin(np.where(inside[rows], d2[rows], np.inf), axis=1)  # nearest
            self.serving[rows] = target
            pers = self._persistent_type  # (R,)
            supply = self.supply[rows]  # (K, R)
            offer = np.zeros((rows.size, self.m, self.r))  # (K, M, R) by consumer targeted
            offer[np.arange(rows.size), target] = supply
            total = offer.sum(axis=0)  # (M, R)
            self.coverage[:, pers] = total[:, pers]
            inst = ~pers
            if inst.any():
                # instantaneous: m takes min(offered, missing), shared pro rata (env rule)
                req = self.requirement[:, inst]
                moved = np.minimum(total[:, inst], req)  # (M, I)
                frac = np.divide(moved, total[:, inst], out=np.zeros_like(moved), where=moved > 0)
                give = offer[:, :, inst] * frac[None]  # (K, M, I)
                per_robot = give.sum(axis=1)  # (K, I)
                self.supply[np.ix_(rows, np.flatnonzero(inst))] = np.maximum(
                    supply[:, inst] - per_robot, 0.0
                )
                self.requirement[:, inst] = req - moved
                self.released[np.ix_(rows, np.flatnonzero(inst))] += per_robot
                self.delivered[:, inst] += moved
        self.demand = np.maximum(self.requirement - self.coverage, 0.0)

    # ------------------------------------------------------------------ queries

    def distances(self) -> np.ndarray:
        """``(N, N)`` pairwise 3-D distances between robot centres [m]."""
        diff = self.pos[:, None, :] - self.pos[None, :, :]
        return np.sqrt((diff * diff).sum(-1))

    def within(self, radius: float) -> np.ndarray:
        """``(N, N)`` bool, ``[i, j]`` True when ``j != i`` is within ``radius`` [m] of ``i``."""
        near = self.distances() <= radius
        np.fill_diagonal(near, False)
        return near

    def robot_cells(self) -> np.ndarray:
        """``(N, 2)`` int64 ``[row, col]`` of the cell each robot is in (routing missions)."""
        return self.grid.cell_of(self.pos[:, :2])

    def at_centre(self, tolerance: float) -> np.ndarray:
        """``(N,)`` bool: the robot's floor position is within ``tolerance`` [m] of the centre
        of the cell it is in (routing missions; a robot that has finished a move)."""
        d = self.pos[:, :2] - self.grid.centre(self.robot_cells())
        return np.einsum("ij,ij->i", d, d) <= tolerance * tolerance

    def view(self, robot: int | str, known: np.ndarray | None = None) -> np.ndarray:
        """Robot ``robot``'s view (``(K, 5)``, :func:`sim_bridge.routing.view_table`, the
        contract's rows); ``known`` ``(N,)`` bool leaves robots with unknown poses out."""
        cells = self.robot_cells()
        if known is not None:
            cells[~np.asarray(known, dtype=bool)] = -1
        open_tasks = open_task_grid(self.grid, self.task_cells, self.task_visited)
        return view_table(
            self.grid, self.routing.k, self.obstacles, open_tasks, cells, self.index(robot)
        )

    def tasks(self) -> np.ndarray:
        """``(T, 5)`` ``/tasks`` rows ``[row, col, visited, robot, t_visited]``."""
        return task_table(
            self.task_cells, self.task_visited, self.task_visited_by, self.task_t_visited
        )

    def mode_names(self) -> list[str]:
        """Mode of every robot as text (``grounded``, ``flying``...)."""
        return [MODE_NAMES[k] for k in self.mode]
