"""One robot's LGTC policy logic, without ROS: what the 20 Hz policy node calls each tick.

The policy node (:mod:`lgtc_policy.ros.node`) only converts messages to arrays and back; this
module does the rest, so it is tested without DDS:

* :class:`ArenaFrame` maps the world frame [m] (``sim_bridge`` config arena) to the env's
  normalised square ``[-1, 1]^2`` (paper Sec. IV, "We normalized the agent positions between
  [-1, 1]") with one isotropic scale, and velocities back to [m/s];
* :meth:`PolicyAgent.observe` builds the robot's observation ``z_i`` (paper Sec. II: own
  position, own resources, every consumer's position and remaining demand) from its pose,
  its ``resources`` array and the ``/consumers`` table, in numpy with the float32 operations
  of the environment's builder :func:`lgtc_policy.env.obs.agent_observation` (equal bit for
  bit, tested), so ROS and the batched env cannot drift;
* :class:`NeighbourTable` keeps the last LGTC message of every neighbour heard through the
  comm relay (layout ``[sender_index, stamp_s, payload...]`` of :mod:`sim_bridge.topics`),
  rejects malformed ones and drops a neighbour silent for longer than the timeout from
  ``S`` (the graph support of eqs. 5-6 is the set of robots heard from);
* :meth:`PolicyAgent.step` runs the decentralized LGTC step
  (:class:`lgtc_policy.model.decentralized.DecentralizedPolicy`: eqs. 4-6, one semi-implicit
  Euler step of the cell per tick) and returns the world-frame velocity command, the message
  to broadcast and the attended consumer (the robot's cluster, ``argmax Xi_i``);
* :func:`step_batch` is the same tick for several robots that share one process and one
  checkpoint: one stacked forward, each robot with its own observation, neighbour table,
  recurrent state and result, equal bit for bit to :meth:`PolicyAgent.step` robot by robot
  (both run :meth:`DecentralizedPolicy.step_many`; tested).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgtc_policy.env.spec import ACTION_DIM, ObsDims
from lgtc_policy.errors import LgtcError
from lgtc_policy.model.checkpoint import CheckpointError, build_net, load_checkpoint
from lgtc_policy.model.decentralized import AgentObs, DecentralizedPolicy

__all__ = [
    "ArenaFrame",
    "MissionError",
    "NeighbourTable",
    "PolicyAgent",
    "RobotSpec",
    "TickResult",
    "load_policy",
    "replace_checkpoint",
    "step_batch",
]

#: Columns of one ``/consumers`` row before the remaining demands (``sim_bridge.topics``).
CONSUMER_FIXED = 4  # x, y, radius, active
#: Comm message header length (``sim_bridge.topics.COMM_HEADER_LEN``): sender_index, stamp_s.
COMM_HEADER = 2
#: Largest magnitude of any value a robot's core takes in: positions [arena half-widths, i.e.
#: normalised units], supplies and demands [resource units] and message payloads. A real
#: swarm is many orders of magnitude inside it; beyond it the float32 forward can overflow
#: (a finite 1e300 is ``inf`` in float32) and command NaN. Checked by :meth:`PolicyAgent.observe`
#: (an error naming the input) and :class:`NeighbourTable` (the message is dropped).
INPUT_LIMIT = 1e6
#: float32 slack on a neighbour's cluster-state bound (``DecentralizedPolicy.state_bound``: 1
#: when the cell meets Theorem 1, TRAINING.md); a message beyond bound + slack is dropped, so
#: a broken neighbour cannot pull this robot's state out of its bound.
STATE_SLACK = 1e-3


class MissionError(LgtcError, ValueError):
    """A checkpoint, swarm config or input does not fit the policy; the message says the fix."""


# --------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArenaFrame:
    """World [m] <-> normalised env frame: ``p_n = (p - centre) / scale``.

    Attributes:
        centre: ``(cx, cy)`` centre of the arena [m].
        scale: metres per normalised unit (half the larger side of the arena), so the arena
            maps into ``[-1, 1]^2`` with lengths, radii and speeds scaled alike.
    """

    centre: tuple[float, float]
    scale: float

    @classmethod
    def from_arena(cls, x: Sequence[float], y: Sequence[float]) -> ArenaFrame:
        """From the arena bounds ``x = (xmin, xmax)``, ``y = (ymin, ymax)`` [m]."""
        hx, hy = (x[1] - x[0]) / 2.0, (y[1] - y[0]) / 2.0
        if not (hx > 0 and hy > 0):
            raise MissionError(f"arena x={tuple(x)} y={tuple(y)} must have a positive size")
        return cls(((x[0] + x[1]) / 2.0, (y[0] + y[1]) / 2.0), float(max(hx, hy)))

    def to_norm(self, p: np.ndarray) -> np.ndarray:
        """``(..., 2)`` world xy [m] -> normalised."""
        return (np.asarray(p, dtype=np.float64)[..., :2] - self.centre) / self.scale

    def to_world(self, p: np.ndarray) -> np.ndarray:
        """``(..., 2)`` normalised -> world xy [m]."""
        return np.asarray(p, dtype=np.float64)[..., :2] * self.scale + self.centre

    def length(self, metres: float | np.ndarray) -> float | np.ndarray:
        """A length or a speed [m, m/s] in normalised units."""
        return metres / self.scale


@dataclass(frozen=True)
class RobotSpec:
    """What one robot's policy needs from the swarm config (read once at start-up).

    Attributes:
        name: robot name; index: its index in ``SwarmConfig.robots`` (comm ``sender_index``).
        n_robots: N; n_consumers: M; resource_types: type names in column order (r).
        persistent: ``(r,)`` 1.0 where the type is persistent (paper's kappa).
        frame: world <-> normalised map. max_speed: the robot's speed limit [m/s]; an action of
            norm 1 commands this speed, so the policy's ``v_max`` is ``max_speed / scale``.
        is_drone: crazyflie (True) or ground robot. airborne_z: a drone below this altitude
            [m] is on the ground (not started yet, or landed): it neither acts nor talks, like
            an inactive agent of the env (spec: inactive agents do not move or communicate).
    """

    name: str
    index: int
    n_robots: int
    n_consumers: int
    resource_types: tuple[str, ...]
    persistent: tuple[float, ...]
    frame: ArenaFrame
    max_speed: float
    is_drone: bool
    airborne_z: float

    @property
    def v_max_norm(self) -> float:
        """The policy's speed limit in normalised units / s."""
        return float(self.frame.length(self.max_speed))

    @classmethod
    def from_config(cls, cfg, robot: str) -> RobotSpec:
        """From a ``sim_bridge`` ``SwarmConfig`` and a robot name (MissionError if absent)."""
        try:
            i = cfg.robot_index(robot)
        except KeyError as exc:
            raise MissionError(f"parameter robot={robot!r}: {exc.args[0]}") from None
        rc = cfg.robots[i]
        kinds = cfg.type_depletion()
        z0 = cfg.arena.z[0]
        return cls(
            name=robot,
            index=i,
            n_robots=len(cfg.robots),
            n_consumers=len(cfg.consumers),
            resource_types=tuple(cfg.resource_types),
            persistent=tuple(float(kinds[t] == "persistent") for t in cfg.resource_types),
            frame=ArenaFrame.from_arena(cfg.arena.x, cfg.arena.y),
            max_speed=float(rc.max_speed),
            is_drone=rc.kind == "crazyflie",
            airborne_z=z0 + 0.5 * rc.takeoff_height if rc.kind == "crazyflie" else -math.inf,
        )


# --------------------------------------------------------------------------------------------
# checkpoint
# --------------------------------------------------------------------------------------------

_NET_CACHE: dict[tuple[str, int, int], tuple[object, int]] = {}


def load_policy(path: str | os.PathLike, n_resources: int) -> DecentralizedPolicy:
    """A fresh :class:`DecentralizedPolicy` (own recurrent bookkeeping) for ``path``.

    The network is loaded once per file (composed mode starts N policy nodes in one process).

    Raises:
        MissionError: file missing, corrupted, not an lgtc_policy checkpoint, or trained for a
            different number of resource types than the swarm config lists.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise MissionError(
            f"policy checkpoint {p} does not exist; set policy.checkpoint in the swarm config "
            "(or the node parameter checkpoint) to a file written by `lgtc train`"
        ) from None
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _NET_CACHE:
        try:
            ck = load_checkpoint(p)
            net = build_net(ck, "policy")
            r_ck = int(dict(ck["env_config"]).get("n_resources", 2))
        except CheckpointError as exc:
            raise MissionError(f"policy checkpoint: {exc}") from None
        _check_policy_sizes(p, net.cfg, r_ck)
        _NET_CACHE.clear()
        _NET_CACHE[key] = (net, r_ck)
    net, r_ck = _NET_CACHE[key]
    if r_ck != n_resources:
        raise MissionError(
            f"policy checkpoint {p} was trained with r={r_ck} resource types but the swarm "
            f"config has r={n_resources}; list {r_ck} types in `resource_types` (a type nobody "
            "carries or demands is allowed) or use a checkpoint trained for r="
            f"{n_resources}"
        )
    return DecentralizedPolicy(net, r_ck)


def _check_policy_sizes(path: Path, cfg, r: int) -> None:
    """The network's item and output sizes are those the observation builder gives for ``r``
    resource types (a value network or a critic saved as ``policy`` is refused here)."""
    dims = ObsDims(r)
    want = (dims.agent_res_dim, dims.consumer_res_dim)
    if (cfg.agent_item_dim, cfg.consumer_item_dim) != want or cfg.out_dim < ACTION_DIM:
        raise MissionError(
            f"policy checkpoint {path}: its policy network takes items of "
            f"{cfg.agent_item_dim}/{cfg.consumer_item_dim} features and gives {cfg.out_dim} "
            f"output(s), but r={r} resource types give {want[0]}/{want[1]} and a policy gives "
            f"{ACTION_DIM} actions; it is not an LGTC policy for this environment (train one "
            "with `lgtc train`)"
        )
    if cfg.extra_dim:
        raise MissionError(
            f"policy checkpoint {path}: its 'policy' network is a critic (extra_dim="
            f"{cfg.extra_dim}); save the actor as 'policy'"
        )


# --------------------------------------------------------------------------------------------
# neighbours
# --------------------------------------------------------------------------------------------


class NeighbourTable:
    """Last LGTC message of each neighbour heard through the relay, with its receipt time.

    Args:
        n_robots: N (valid sender indices are ``0..N-1``).
        own_index: this robot's index (its own echo is rejected).
        payload_dim: LGTC message length (``DecentralizedPolicy.message_dim``).
        timeout_s: a neighbour not heard for longer than this [s] leaves ``S``.
        state_dim: the payload's leading cluster-state part (``DecentralizedPolicy.F``).
        state_bound: largest ``|x|`` an intact sender's state part can hold
            (``DecentralizedPolicy.state_bound``: 1 under Theorem 1, else inf); a message
            beyond it (plus :data:`STATE_SLACK`) is rejected, as is one with any payload value
            beyond :data:`INPUT_LIMIT`.
    """

    def __init__(
        self,
        n_robots: int,
        own_index: int,
        payload_dim: int,
        timeout_s: float,
        state_dim: int = 0,
        state_bound: float = math.inf,
    ):
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise MissionError(f"neighbour_timeout_s={timeout_s!r}: must be a time > 0 s")
        self.n = int(n_robots)
        self.own = int(own_index)
        self.dim = int(payload_dim)
        self.state_dim = int(state_dim)
        self.state_limit = float(state_bound) + STATE_SLACK
        self.timeout_s = float(timeout_s)
        self.payload = np.zeros((self.n, self.dim), np.float32)
        self.stamp = np.full(self.n, -math.inf)  # sender clock [s]
        self.heard = np.full(self.n, -math.inf)  # receipt time on our clock [s]
        self.rejected = 0

    def receive(self, data: Sequence[float], now_s: float, row_len: int | None = None) -> int:
        """Store a ``comm/in`` array: one message, or several back to back (the relay bundles
        one tick's deliveries per recipient). ``row_len`` is the length of one message when the
        array's layout says it (``comm/in`` ``dim[1]``); a bundle whose rows are not this
        policy's message length is rejected whole. Returns how many messages were stored; a
        malformed array, or a message that is our own, from no robot, with a value that is not
        finite or out of bounds (:meth:`valid_rows`), or older than the stored one while that
        one is current, is counted and skipped (a stored message older than the timeout no
        longer blocks: a sender whose clock jumped, or a stamp from the far future, locks
        nobody out for longer than ``timeout_s``)."""
        arr = np.asarray(data, dtype=np.float64)
        size = COMM_HEADER + self.dim
        if (
            arr.ndim != 1
            or arr.size == 0
            or arr.size % size
            or (row_len is not None and row_len != size)
        ):
            self.rejected += 1
            return 0
        rows = arr.reshape(-1, size)
        if len(rows) > 1:
            stored = self._store_rows(rows, now_s)
            if stored is not None:
                return stored
        return sum(self._store(msg, now_s) for msg in rows)

    def _store_rows(self, rows: np.ndarray, now_s: float) -> int | None:
        """:meth:`_store` of every row at once (a relay bundle: one array operation instead
        of a Python step per message), or None when two valid rows share a sender (then the
        rows go one by one: the later one's stamp is checked against the earlier one's)."""
        sender = rows[:, 0]
        with np.errstate(invalid="ignore"):
            ok = self.valid_rows(rows) & (sender == np.trunc(sender))
            ok &= (sender >= 0) & (sender < self.n) & (sender != self.own)
        j = sender[ok].astype(np.int64)
        if len(np.unique(j)) != len(j):
            return None
        fresh = ~((rows[ok, 1] < self.stamp[j]) & (now_s - self.heard[j] <= self.timeout_s))
        j = j[fresh]
        keep = np.flatnonzero(ok)[fresh]
        self.payload[j] = rows[keep, COMM_HEADER:]
        self.stamp[j] = rows[keep, 1]
        self.heard[j] = now_s
        self.rejected += len(rows) - len(j)
        return len(j)

    def valid_rows(self, rows: np.ndarray) -> np.ndarray:
        """``(k,)`` bool: the messages ``rows (k, 2 + payload_dim)`` whose values are all
        finite, whose payload stays within :data:`INPUT_LIMIT` (so its float32 copy is finite
        and the forward cannot overflow) and whose cluster state is within
        ``state_bound`` (+ :data:`STATE_SLACK`)."""
        with np.errstate(invalid="ignore", over="ignore"):
            ok = np.isfinite(rows).all(axis=1)
            payload = np.abs(rows[:, COMM_HEADER:])
            ok &= ~(payload > INPUT_LIMIT).any(axis=1)
            ok &= ~(payload[:, : self.state_dim] > self.state_limit).any(axis=1)
        return ok

    def _store(self, arr: np.ndarray, now_s: float) -> bool:
        if not self.valid_rows(arr[None])[0]:
            self.rejected += 1
            return False
        sender = arr[0]
        j = int(sender)
        current = now_s - self.heard[j] <= self.timeout_s if 0 <= j < self.n else False
        if (
            j != sender
            or not 0 <= j < self.n
            or j == self.own
            or (arr[1] < self.stamp[j] and current)
        ):
            self.rejected += 1
            return False
        self.payload[j] = arr[COMM_HEADER:]
        self.stamp[j] = arr[1]
        self.heard[j] = now_s
        return True

    def current(self, now_s: float) -> np.ndarray:
        """Indices of the neighbours heard within the timeout (the robot's ``N_i``)."""
        return np.nonzero(now_s - self.heard <= self.timeout_s)[0]

    def messages(self, now_s: float) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (k,), payloads (k, payload_dim))`` of the current neighbours."""
        ids = self.current(now_s)
        return ids, self.payload[ids]

    def forget(self) -> None:
        """Drop every neighbour (the robot landed: it leaves the graph)."""
        self.heard[:] = -math.inf


# --------------------------------------------------------------------------------------------
# agent
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickResult:
    """Output of one tick.

    Attributes:
        velocity: ``(3,)`` world-frame command [m/s] (z = 0: the altitude is held).
        message: ``[sender_index, stamp_s, payload...]`` to publish on ``comm/out``, or None
            while the robot is on the ground (inactive robots do not talk).
        cluster: attended consumer ``argmax Xi_i`` (-1 while inactive).
        neighbours: indices of the robots whose messages entered this step.
        action: ``(2,)`` the policy's normalised action (norm <= 1).
        ok: False when the forward was not finite (a checkpoint whose finite weights still
            overflow float32): velocity and action are then zero, ``message`` is None and the
            robot's cluster state restarts from zero; the node publishes nothing for such a
            tick (counted), so the chain holds, then lands, as for a silent policy.
    """

    velocity: np.ndarray
    message: np.ndarray | None
    cluster: int
    neighbours: np.ndarray
    action: np.ndarray
    ok: bool = True


class PolicyAgent:
    """The decentralized LGTC policy of one robot (recurrent state, neighbours, frames)."""

    def __init__(self, policy: DecentralizedPolicy, spec: RobotSpec, neighbour_timeout_s: float):
        if policy.r != len(spec.resource_types):
            raise MissionError(
                f"policy has r={policy.r} resource types, config has {len(spec.resource_types)}"
            )
        self.policy = policy
        self.spec = spec
        self.neighbours = NeighbourTable(
            spec.n_robots,
            spec.index,
            policy.message_dim,
            neighbour_timeout_s,
            policy.F,
            policy.state_bound,
        )
        self.state = policy.initial_state()
        self.persistent = np.asarray(spec.persistent, np.float32)
        self.cluster = -1
        # the columns of z_i that depend on the config only: kind flags and one-hots
        r, M = len(spec.resource_types), spec.n_consumers
        self._agent_res_template = np.zeros((r, 4 + r), np.float32)
        self._agent_res_template[:, 3] = self.persistent
        self._agent_res_template[:, 4:] = np.eye(r, dtype=np.float32)
        self._consumer_res_template = np.repeat(self._agent_res_template[None], M, axis=0)

    def is_active(self, position: Sequence[float]) -> bool:
        """A drone acts only while airborne (above ``spec.airborne_z``); ground robots always."""
        return not self.spec.is_drone or float(position[2]) >= self.spec.airborne_z

    def observe(
        self,
        position: Sequence[float],
        velocity: Sequence[float],
        supply: Sequence[float],
        consumers: np.ndarray,
    ) -> AgentObs:
        """Observation ``z_i`` from world-frame arrays.

        Built in numpy (float32) with the layouts of ``lgtc_policy.env.spec``
        (``AGENT_RES_FIELDS``, ``CONSUMER_RES_FIELDS``), the parts of the env's builder
        :func:`lgtc_policy.env.obs.agent_observation` the decentralized step reads; the same
        float32 operations, so the two agree bit for bit (tested), at a tenth of the cost of
        the torch builder for one robot (no tensor dispatch).

        Args:
            position: own position ``(x, y[, z])`` [m, world].
            velocity: own velocity ``(vx, vy[, vz])`` [m/s, world] (not an input of the
                decentralized step; checked for NaN/inf like the rest).
            supply: ``(r,)`` remaining supplies (``/<robot>/resources``).
            consumers: ``(M, 4 + r)`` rows ``[x, y, radius, active, remaining_demand...]``
                (``/consumers``); an inactive consumer demands nothing.

        Raises:
            MissionError: shapes do not match the config (r, M), or a value is not finite or
                beyond :data:`INPUT_LIMIT` (positions in arena half-widths); the message names
                the input.
        """
        r, M = len(self.spec.resource_types), self.spec.n_consumers
        sup = np.asarray(supply, dtype=np.float64).reshape(-1)
        table = np.asarray(consumers, dtype=np.float64)
        if sup.shape != (r,):
            raise MissionError(f"resources has {sup.size} values, the config lists r={r} types")
        if table.shape != (M, CONSUMER_FIXED + r):
            raise MissionError(
                f"/consumers table has shape {table.shape}, expected ({M}, {CONSUMER_FIXED + r})"
            )
        pos = np.asarray(position, dtype=np.float64)[:2]
        vel = np.asarray(velocity, dtype=np.float64)[:2]
        if not (
            np.isfinite(pos).all()
            and np.isfinite(vel).all()
            and np.isfinite(table).all()
            and np.isfinite(sup).all()
        ):
            raise MissionError("pose, resources or /consumers contain NaN/inf")
        frame = self.spec.frame
        for name, values, fix in (
            ("pose", frame.to_norm(pos), "the pose source (sim or mocap) must send metres"),
            ("/consumers positions", frame.to_norm(table[:, :2]), "fix the consumer table"),
            ("resources", sup, "publish the remaining supplies in the config's units"),
            ("/consumers demands", table[:, CONSUMER_FIXED:], "fix the consumer table"),
        ):
            if (np.abs(values) > INPUT_LIMIT).any():
                raise MissionError(
                    f"{name} {np.asarray(values).reshape(-1)[:4].tolist()} beyond the policy's "
                    f"input range (|value| <= {INPUT_LIMIT:g}, positions in arena half-widths "
                    f"of {frame.scale:g} m): {fix}"
                )
        p = frame.to_norm(pos).astype(np.float32)  # (2,)
        demand = np.maximum(table[:, CONSUMER_FIXED:] * (table[:, 3:4] > 0), 0.0).astype(
            np.float32
        )  # (M, r)
        agent_res = self._agent_res_template.copy()  # (r, 4 + r) AGENT_RES_FIELDS
        agent_res[:, 0:2] = p
        agent_res[:, 2] = np.maximum(sup, 0.0).astype(np.float32)
        consumer_res = self._consumer_res_template.copy()  # (M, r, 4 + r) CONSUMER_RES_FIELDS
        consumer_res[:, :, 0:2] = (frame.to_norm(table[:, :2]).astype(np.float32) - p)[:, None]
        consumer_res[:, :, 2] = demand
        return AgentObs(
            agent_res=agent_res,
            consumer_res=consumer_res,
            consumer_mask=(demand > 0).any(axis=-1),
            pos=p,
        )

    def step(self, obs: AgentObs, now_s: float, stamp_s: float | None = None) -> TickResult:
        """One tick: neighbours' messages in, action and own message out.

        Args:
            obs: this tick's observation (:meth:`observe`).
            now_s: receipt clock [s] used for the neighbour timeout.
            stamp_s: the sender stamp written into the message (default ``now_s``).
        """
        ids, msgs = self.neighbours.messages(now_s)
        action, payload, self.state = self.policy.step(obs, msgs, self.state)
        if not self.policy.last_finite[0]:
            return self._nonfinite(ids)
        self.cluster = int(np.argmax(self.policy.last_attention))
        v = np.zeros(3)
        v[:2] = action.astype(np.float64) * self.spec.max_speed
        msg = np.concatenate(
            [[float(self.spec.index), now_s if stamp_s is None else stamp_s], payload]
        )
        return TickResult(v, msg, self.cluster, ids, action)

    def _nonfinite(self, ids: np.ndarray) -> TickResult:
        """The tick whose forward was not finite: no command, no message, a fresh state."""
        self.state = self.policy.initial_state()
        self.cluster = -1
        return TickResult(np.zeros(3), None, -1, ids, np.zeros(2, np.float32), ok=False)

    def idle(self) -> TickResult:
        """The tick of a robot on the ground: hold still, stay silent, leave every cluster."""
        self.neighbours.forget()
        self.state = self.policy.initial_state()
        self.cluster = -1
        return TickResult(np.zeros(3), None, -1, np.zeros(0, np.int64), np.zeros(2, np.float32))


# --------------------------------------------------------------------------------------------
# several co-located robots in one forward
# --------------------------------------------------------------------------------------------


def step_batch(
    agents: Sequence[PolicyAgent],
    obs: Sequence[AgentObs],
    now_s: float | Sequence[float],
    stamp_s: float | Sequence[float] | None = None,
) -> list[TickResult]:
    """:meth:`PolicyAgent.step` of several robots in one stacked forward.

    The agents must run the same checkpoint (the weights of ``agents[0].policy`` are used;
    a mismatch in sizes is refused); each keeps its own neighbour table, recurrent state and
    cluster, and nothing of one robot enters another's rows. Results equal the one-robot
    step bit for bit (tested).

    Args:
        agents: the robots due this tick; obs: their observations (:meth:`PolicyAgent.observe`).
        now_s: receipt clock [s] per robot (or one for all), for the neighbour timeout.
        stamp_s: stamp written into each message (default ``now_s``).
    """
    if len(agents) != len(obs):
        raise ValueError(f"{len(agents)} agents but {len(obs)} observations")
    if not agents:
        return []
    B = len(agents)
    now = np.broadcast_to(np.asarray(now_s, np.float64), (B,))
    stamp = now if stamp_s is None else np.broadcast_to(np.asarray(stamp_s, np.float64), (B,))
    policy = agents[0].policy
    for a in agents[1:]:
        if (a.policy.message_dim, a.policy.F, a.policy.r) != (
            policy.message_dim,
            policy.F,
            policy.r,
        ):
            raise MissionError(f"robot {a.spec.name} runs another policy than the batch's")
    heard = [a.neighbours.messages(float(t)) for a, t in zip(agents, now)]
    msgs = [np.asarray(m, np.float32).reshape(-1, policy.message_dim) for _, m in heard]
    states = np.stack([a.state for a in agents]) if policy.F else np.zeros((B, 0), np.float32)
    actions, payloads, new_states, xi = policy.step_many(obs, msgs, states)
    finite = policy.last_finite
    out = []
    for b, a in enumerate(agents):
        if not finite[b]:
            out.append(a._nonfinite(heard[b][0]))
            continue
        a.state = new_states[b].copy()
        a.policy.last_attention = xi[b].copy()
        a.cluster = int(np.argmax(xi[b]))
        v = np.zeros(3)
        v[:2] = actions[b].astype(np.float64) * a.spec.max_speed
        msg = np.concatenate([[float(a.spec.index), float(stamp[b])], payloads[b]])
        out.append(TickResult(v, msg, a.cluster, heard[b][0], actions[b].copy()))
    return out


def replace_checkpoint(cfg, checkpoint: str):
    """``cfg`` whose ``policy.checkpoint`` is ``checkpoint`` (path or ``pkg:rel``)."""
    return dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, checkpoint=checkpoint))
