"""Interface contract of the LGTC resource-allocation world (paper Sections II, III-A, IV).

This module fixes what every consumer of the environment may rely on: the configuration
(:class:`EnvConfig`), the observation container (:class:`Obs`), the feature layouts and their
dimensions (:class:`ObsDims`), the ``info`` keys returned by ``step`` and the method signatures
of the batched environment (:class:`BatchedEnvProtocol`, implemented by
``lgtc_policy.env.ResourceEnv``). The per-agent observation is built by the pure function
``lgtc_policy.env.obs.agent_observation`` (one agent or a batch) and the graph by
``lgtc_policy.env.obs.comm_graph``; the ROS policy node uses the same two functions.

It changes only additively; any other change is announced in a commit message starting
with ``SPEC CHANGE``.

Conventions
-----------
* World: the square ``Q = [-1, 1]^2`` in normalised units (paper Sec. IV "We normalized the agent
  positions between [-1, 1]"); time step ``dt = 0.05 s`` (20 Hz).
* Tensors are batch-first torch tensors on the env's device: ``B`` envs, ``N`` agents, ``M``
  consumers, ``r`` resource types. Floats are ``float32``; masks are ``bool``; indices ``int64``.
* Resource *kind* (the paper's kappa): each resource type ``l`` of an env is either
  **persistent** (delivered only while an agent holding it stays inside the consumer's interaction
  area ``R_m``; the agent keeps its supply, the consumer's demand is covered while it stays) or
  **instantaneous** (released on arrival: ``min(so_il, de_ml)`` moves from agent to consumer).
  Kinds are drawn per env at reset (``EnvConfig.resource_kinds``).
* An agent inside several interaction areas delivers to the nearest of them only.
* Inactive agents (discharged / landed, Fig. 5) do not move, deliver, communicate, collide,
  receive reward (0) or take part in the assignment (their assignment is ``-1``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, Literal, Protocol

import torch

from lgtc_policy.errors import LgtcError

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class EnvError(LgtcError):
    """Base class of every error raised by the environment package."""


class EnvConfigError(EnvError, ValueError):
    """An :class:`EnvConfig` field is invalid; the message names the field and the fix."""


class ActionError(EnvError, ValueError):
    """An action tensor has the wrong shape/dtype or contains NaN/inf (see ``nan_actions``)."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

#: Bounds that keep one env batch in bounded time and memory and its float32 arithmetic
#: finite (a finite 1e300 is ``inf`` in float32): at most this many agents / consumers,
MAX_COUNT = 1000
#: resource types (as a checkpoint's item layout allows),
MAX_RESOURCES = 64
#: steps per episode (5000 s at 20 Hz; an evaluation runs every episode to the end),
MAX_EPISODE_LENGTH = 100_000
#: local-search restarts per fresh assignment,
MAX_ASSIGN_RESTARTS = 1000
#: spawn grid cells per side (the reset draws a random key per cell, per env),
MAX_SPAWN_SIDE = 1000
#: and magnitude of every real-valued field (lengths, speeds, quantities, rates, gains).
MAX_REAL = 1e6

ResourceKinds = Literal["mixed", "random", "persistent", "instantaneous"]
AssignmentMode = Literal["exact", "local", "none"]
CollisionForm = Literal["hinge", "paper"]


@dataclass(frozen=True)
class EnvConfig:
    """Every parameter of the world; validated by :meth:`validate` (raises EnvConfigError).

    Defaults are the paper's training setup (Sec. IV: 10 agents, 4 consumers, each consumer
    demanding 2 resources of different kinds, 20 Hz single integrators, C = 1).
    """

    # ---- sizes ---------------------------------------------------------------------------
    n_agents: int = 10
    """N, agents per env (paper: 10 for training)."""
    n_consumers: int = 4
    """M, consumers (demand locations) per env (paper: 4)."""
    n_resources: int = 2
    """r, number of resource types in the world (paper: 2)."""
    resources_per_consumer: int = 2
    """How many of the r types each consumer demands (a random subset of this size; paper: 2)."""
    max_resources_per_agent: int = 2
    """Each agent carries a random non-empty subset of at most this many of its types."""
    resource_kinds: ResourceKinds = "mixed"
    """Kind (kappa) of each resource type, drawn per env at reset. 'mixed': a random permutation
    of alternating persistent/instantaneous kinds, so both kinds exist whenever r >= 2 (the
    paper's "2 resources of different types"); 'random': each type persistent with prob. 0.5;
    'persistent' / 'instantaneous': all types of that kind."""

    # ---- time and motion -----------------------------------------------------------------
    dt: float = 0.05
    """Integration step [s]; 0.05 s = 20 Hz (paper Sec. IV)."""
    v_max: float = 0.5
    """Speed limit [normalised units / s]; an action of norm 1 moves v_max * dt = 0.025 per
    step, so crossing the arena diagonal (2.83) takes ~5.7 s, a third of an episode."""
    episode_length: int = 300
    """Steps per episode (15 s at 20 Hz); the env reports ``truncated`` after this many."""
    auto_reset: bool = True
    """If True, ``step`` resets done envs and returns their first observation (the observation
    before the reset is in ``info['final_obs']``)."""
    nan_actions: Literal["raise", "zero"] = "raise"
    """What a NaN/inf action does: 'raise' -> ActionError; 'zero' -> replaced by 0 (hover),
    counted in ``info['nan_actions']``. Finite actions are always clipped to [-1, 1] per
    component and then to unit norm (speed <= v_max)."""

    # ---- geometry ------------------------------------------------------------------------
    comm_radius: float = 1.0
    """C, communication radius (paper Sec. IV: C = 1 in the normalised space)."""
    consumer_radius: tuple[float, float] = (0.12, 0.18)
    """Range of the interaction radius R_m, drawn uniformly per consumer at reset."""
    epsilon: float = 0.1
    """Collision threshold epsilon on the pair *distance* (the paper writes the squared distance;
    we use the distance so that epsilon is a length, like R and C); must be < min R_m."""
    agent_spawn_separation: float = 0.15
    """Minimum distance between agents at reset (> epsilon so no episode starts in collision)."""
    consumer_spawn_separation: float = 0.41
    """Minimum distance between consumer centres at reset (>= 2 * max R_m: areas never
    overlap at reset)."""
    spawn_margin: float = 0.1
    """Agents and consumers spawn in [-1 + margin, 1 - margin]^2."""

    # ---- quantities ----------------------------------------------------------------------
    supply_range: tuple[float, float] = (1.0, 5.0)
    """Quantity of each carried resource [units], drawn uniformly per (agent, type). The scale
    matters for eq. 3: l1 is quadratic in quantities while l2 is linear, so with sub-unit
    quantities l2 dominates and the oracle stops matching supplies to demands (the expert
    then satisfies ~94 % of the demand instead of ~98 %)."""
    supply_ratio: float = 1.0
    """sum(supplies) / sum(demands) per type, in (0, 1] (paper assumption Sec. II: total supply
    <= total demand). Demands are generated from a hidden random partition of the agents among
    the consumers (every consumer >= 1 agent), so with ratio 1 a perfect allocation exists."""

    # ---- discharge events and inactive agents (Fig. 5) ------------------------------------
    discharge_rate: float = 0.0
    """Hazard rate [1/s] of a discharge event per active agent holding a persistent resource;
    0 disables random events (use ``ResourceEnv.discharge`` for scripted ones, as in Fig. 5)."""
    discharge_level: float = 0.0
    """Fraction of its persistent supplies an agent keeps after a discharge event."""
    deactivate_on_discharge: bool = True
    """If True a discharged agent lands: it becomes inactive for the rest of the episode."""
    discharge_target: str = "any"
    """Who a random discharge hits. ``any``: every active agent holding a persistent resource,
    independently at ``discharge_rate``. ``alone``: events per *env* at ``discharge_rate``,
    each hitting one agent (uniformly) among those that are the only active agent inside their
    consumer's area and hold a persistent resource (no such agent: no event), so every event
    leaves a consumer uncovered (Fig. 5's case, ``select: alone`` of a swarm config). Not in
    the paper: a training curriculum for the re-cover."""

    # ---- assignment (eq. 3) --------------------------------------------------------------
    assignment: AssignmentMode = "local"
    """How the assignment a of eq. 3 (used by rw_id and given in ``Obs.assignment``) is
    recomputed at reset and whenever supplies, demands or the active set of an env change:
    'exact' -> the exact oracle (lgtc_policy.env.assign) per changed env, a few ms each on CPU
    at the default sizes (capped at 1 s per env: then the best known assignment);
    'local' -> batched torch best-improvement local search (single moves and pair swaps) on
    all changed envs at once, warm-started from the previous assignment (from a greedy one at
    reset): a local optimum of eq. 3, much faster at large B (quality: README);
    'none' -> no assignment (rw_id = 0, ``Obs.assignment`` = -1)."""
    assign_restarts: int = 8
    """'local' mode: local searches per fresh assignment (at reset, or when the old one no
    longer covers every consumer): the greedy start plus shaken copies of it, the best kept
    (an env whose supplies/demands changed improves its warm start with one search). On 200
    default resets, 1 start finds eq. 3's optimum in 45 % of them (mean excess 3.5 %, max
    27 %), 8 starts in 80 % (0.7 %, max 17 %), 16 in 84 % (0.5 %)."""
    assign_demand_floor: float = 0.1
    """l2 of eq. 3 divides by de_ml; demands below this floor count as the floor (a consumer
    that does not demand a type makes carrying that type there costly, not infinite)."""

    # ---- reward gains, eq. (2) -----------------------------------------------------------
    w_global: float = 0.1
    """rw_g = w_global * sum_{m,l} (de_ml(t-1) - de_ml(t)), shared by every active agent. 0.1 per
    unit: an episode's rw_g sums to ~0.1 * total demand (~3-5 with the default quantities)."""
    w_all_served: float = 0.01
    """rw_s = w_all_served per step while every consumer still demanding has >= 1 agent
    releasing to it (global). 0.01 * 300 steps = 3 at most: comparable to rw_g's total."""
    gamma_collision: float = 10.0
    """gamma_ij of rw_ij for pairs within epsilon. With the hinge form the worst per-pair penalty
    is 10 * 0.1^2 = 0.1 per step: a few steps of contact cost as much as a delivery."""
    collision_form: CollisionForm = "hinge"
    """'hinge': rw_ij = -gamma (epsilon^2 - d_ij^2) for d_ij < epsilon (grows as agents close in);
    'paper': rw_ij = -gamma d_ij^2 for d_ij < epsilon, the literal formula of Sec. III-A (whose
    penalty vanishes at contact, i.e. rewards closing in once inside epsilon; kept for
    reproduction)."""
    w_instant: float = 0.1
    """rw_im = w_instant * (instantaneous quantity agent i released this step), per unit like
    w_global."""
    w_completion: float = 1.0
    """rw_rc = w_completion, once, to every agent that released instantaneous resources to a
    consumer, at the step that consumer's instantaneous demands become fully satisfied."""
    w_persistent: float = 0.01
    """rw_is = w_persistent per step while agent i delivers a persistent resource (it is inside
    R_m, holds a persistent type m demands). Same per-step scale as gamma_id."""
    w_progress: float = 1.0
    """Gain on the rw_id progress term ||p_i(t-1) - d_a||^2 - ||p_i(t) - d_a||^2 (the paper's is
    1; kept as a field for ablations)."""
    gamma_id: float = 0.01
    """rw_id = gamma_id per step while p_i(t) is inside R_{a_i} (paper Sec. III-A)."""

    # ---- misc ----------------------------------------------------------------------------
    seed: int = 0
    """Default seed of the env's torch.Generator (``ResourceEnv(..., seed=...)`` overrides)."""
    dtype: Literal["float32", "float64"] = "float32"
    """Float dtype of all state and observation tensors."""

    def validate(self) -> EnvConfig:
        """Check every field; raise :class:`EnvConfigError` naming the field and the fix."""
        self._validate_types()
        self._validate_sizes()
        self._validate_geometry()
        self._validate_spawn()
        self._validate_options()
        self._validate_rewards()
        return self

    def _bad(self, name: str, why: str) -> EnvConfigError:
        """The error for field ``name``: its value and ``why`` (what is wrong and the fix)."""
        return EnvConfigError(f"EnvConfig.{name}={getattr(self, name)!r}: {why}")

    def _validate_types(self) -> None:
        """Every real field a finite number within ``MAX_REAL``, the pairs pairs of them, the
        flags booleans and the seed a NumPy seed (before any comparison of them)."""
        bad = self._bad
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("float", "tuple[float, float]"):
                pair = f.type != "float"
                values = v if pair and isinstance(v, tuple | list) and len(v) == 2 else [v]
                ok = (not pair or values is v) and all(
                    isinstance(x, numbers.Real)
                    and not isinstance(x, bool)
                    and math.isfinite(x)
                    and abs(x) <= MAX_REAL
                    for x in values
                )
                if not ok:
                    what = "a pair (low, high) of finite numbers" if pair else "a finite number"
                    raise bad(f.name, f"must be {what} with magnitude <= {MAX_REAL:g}")
            elif f.type == "bool" and not isinstance(v, bool):
                raise bad(f.name, "must be true or false")
        seed = self.seed
        if (
            isinstance(seed, bool)
            or not isinstance(seed, numbers.Integral)
            or not 0 <= seed < 2**63
        ):
            raise bad("seed", "must be an integer in [0, 2**63 - 1]")

    def _validate_sizes(self) -> None:
        """Counts: agents, consumers, resources, episode length, resources per party."""
        bad = self._bad
        for name, hi in (
            ("n_agents", MAX_COUNT),
            ("n_consumers", MAX_COUNT),
            ("n_resources", MAX_RESOURCES),
            ("episode_length", MAX_EPISODE_LENGTH),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise bad(name, f"must be an integer in [1, {hi}]")
        if self.n_agents < self.n_consumers:
            raise bad(
                "n_agents",
                f"eq. 3 needs every consumer to get >= 1 agent: use N >= M "
                f"(M = {self.n_consumers})",
            )
        for name, hi in (
            ("resources_per_consumer", self.n_resources),
            ("max_resources_per_agent", self.n_resources),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise bad(name, f"must be an integer in [1, n_resources={hi}]")
        if self.resource_kinds not in ("mixed", "random", "persistent", "instantaneous"):
            raise bad("resource_kinds", "use 'mixed', 'random', 'persistent' or 'instantaneous'")

    def _validate_geometry(self) -> None:
        """Step, speed, ranges and radii: positive, finite, in the paper's order."""
        bad = self._bad
        for name in ("dt", "v_max", "comm_radius", "epsilon", "supply_ratio"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise bad(name, "must be a finite number > 0")
        if self.supply_ratio > 1:
            raise bad("supply_ratio", "the paper assumes total supply <= total demand: use <= 1")
        for name in ("consumer_radius", "supply_range"):
            lo_hi = getattr(self, name)
            if (
                len(lo_hi) != 2
                or not all(isinstance(x, int | float) and math.isfinite(x) for x in lo_hi)
                or not 0 < lo_hi[0] <= lo_hi[1]
            ):
                raise bad(name, "must be a pair (low, high) with 0 < low <= high")
        if self.epsilon >= self.consumer_radius[0]:
            raise bad("epsilon", f"the paper needs epsilon < R: use < {self.consumer_radius[0]}")

    def _validate_spawn(self) -> None:
        """Spawn separations and margin, and that the spawn cells fit in the arena."""
        bad = self._bad
        if self.agent_spawn_separation < self.epsilon:
            raise bad("agent_spawn_separation", f"must be >= epsilon={self.epsilon}")
        if self.consumer_spawn_separation < 2 * self.consumer_radius[1]:
            raise bad(
                "consumer_spawn_separation",
                f"must be >= 2 * max R_m = {2 * self.consumer_radius[1]}",
            )
        if not 0 <= self.spawn_margin < 0.5:
            raise bad("spawn_margin", "must be in [0, 0.5)")
        for name, sep, count in (
            ("agent_spawn_separation", self.agent_spawn_separation, self.n_agents),
            ("consumer_spawn_separation", self.consumer_spawn_separation, self.n_consumers),
        ):
            span = 2 - 2 * self.spawn_margin
            if span / sep > MAX_SPAWN_SIDE:
                raise bad(
                    name,
                    f"spawns on a grid of {span / sep:.3g} cells per side (at most "
                    f"{MAX_SPAWN_SIDE}): use a separation >= {span / MAX_SPAWN_SIDE:.3g}",
                )
            cells = int(span // sep) ** 2
            if cells < count:
                raise bad(
                    name,
                    f"only {cells} spawn cells of this size fit in the arena for "
                    f"{count} objects: lower the separation or spawn_margin",
                )

    def _validate_options(self) -> None:
        """Discharge, NaN handling, assignment and collision options."""
        bad = self._bad
        if not math.isfinite(self.discharge_rate) or self.discharge_rate < 0:
            raise bad("discharge_rate", "must be a finite rate >= 0 [1/s]")
        if not 0 <= self.discharge_level <= 1:
            raise bad("discharge_level", "must be a fraction in [0, 1]")
        if self.discharge_target not in ("any", "alone"):
            raise bad("discharge_target", "use 'any' or 'alone'")
        if self.nan_actions not in ("raise", "zero"):
            raise bad("nan_actions", "use 'raise' or 'zero'")
        if self.assignment not in ("exact", "local", "none"):
            raise bad("assignment", "use 'exact', 'local' or 'none'")
        if self.collision_form not in ("hinge", "paper"):
            raise bad("collision_form", "use 'hinge' or 'paper'")
        if (
            isinstance(self.assign_restarts, bool)
            or not isinstance(self.assign_restarts, int)
            or not 1 <= self.assign_restarts <= MAX_ASSIGN_RESTARTS
        ):
            raise bad("assign_restarts", f"must be an integer in [1, {MAX_ASSIGN_RESTARTS}]")
        if not self.assign_demand_floor > 0:
            raise bad("assign_demand_floor", "must be > 0")

    def _validate_rewards(self) -> None:
        """Reward gains (finite, >= 0) and the float dtype."""
        bad = self._bad
        for name in (
            "w_global",
            "w_all_served",
            "gamma_collision",
            "w_instant",
            "w_completion",
            "w_persistent",
            "w_progress",
            "gamma_id",
        ):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise bad(
                    name,
                    "reward gains are finite numbers >= 0 (the paper's signs are built into eq. 2)",
                )
        if self.dtype not in ("float32", "float64"):
            raise bad("dtype", "use 'float32' or 'float64'")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnvConfig:
        """Build from a plain dict (YAML/CLI); unknown keys raise EnvConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise EnvConfigError(
                f"unknown EnvConfig field(s) {unknown}; valid fields: {sorted(known)}"
            )
        kw = dict(d)
        for k in ("consumer_radius", "supply_range"):
            if k in kw and isinstance(kw[k], list | tuple):
                kw[k] = tuple(kw[k])  # anything else is refused by validate, naming k
        return cls(**kw).validate()


# --------------------------------------------------------------------------------------------
# Observation layout (paper Sec. II: z_i = own position p_i, own resources so_i, all consumer
# positions d and demands de_m; plus communication with neighbours within C)
# --------------------------------------------------------------------------------------------

SELF_FIELDS = ("px", "py", "vx", "vy", "so[r]", "persistent[r]")
"""``Obs.self_feat[..., :]``: own position [-1,1]^2, own velocity [units/s] / v_max, remaining
supply per type (so_il), kind flag per type (1 = persistent, 0 = instantaneous). D = 4 + 2r."""

AGENT_RES_FIELDS = ("px", "py", "so", "persistent", "onehot[r]")
"""``Obs.agent_res[..., l, :]``: the inputs of Psi_i(p_i, so_pi, kappa_pi) per own resource l:
own position, so_il, kind flag of l, one-hot of the type index l. D = 4 + r."""

CONSUMER_FIELDS = (
    "rel_x",
    "rel_y",
    "dx",
    "dy",
    "dist",
    "radius",
    "inside",
    "de[r]",
    "persistent[r]",
)
"""``Obs.consumer_feat[..., m, :]``: consumer m seen from agent i: d_m - p_i, absolute d_m,
||d_m - p_i||, R_m, 1 if p_i is inside R_m, remaining demand de_ml per type (persistent types:
requirement minus what agents currently inside cover), kind flag per type. D = 7 + 2r."""

CONSUMER_RES_FIELDS = ("rel_x", "rel_y", "de", "persistent", "onehot[r]")
"""``Obs.consumer_res[..., m, l, :]``: the inputs of phi_1(d_m, de_ml, kappa_ml) of eq. (4):
d_m - p_i, de_ml, kind flag, one-hot of l. D = 4 + r."""


@dataclass(frozen=True)
class ObsDims:
    """Feature sizes of :class:`Obs` for ``r`` resource types (see the *_FIELDS layouts)."""

    n_resources: int

    @property
    def self_dim(self) -> int:
        return 4 + 2 * self.n_resources

    @property
    def agent_res_dim(self) -> int:
        return 4 + self.n_resources

    @property
    def consumer_dim(self) -> int:
        return 7 + 2 * self.n_resources

    @property
    def consumer_res_dim(self) -> int:
        return 4 + self.n_resources

    def flat_dim(self, n_consumers: int) -> int:
        """Length of :meth:`Obs.flat` per agent."""
        r = self.n_resources
        return (
            self.self_dim
            + r * self.agent_res_dim
            + n_consumers * self.consumer_dim
            + n_consumers * r * self.consumer_res_dim
        )


ACTION_DIM = 2
"""Action per agent: desired velocity in [-1, 1]^2, scaled by v_max (norm clipped to 1)."""


@dataclass
class Obs:
    """Batched observations of every agent; all tensors batch-first on the env's device.

    Per-agent parts (z_i, decentralised): self_feat, agent_res, consumer_feat, consumer_res.
    Graph parts (what communication within C gives): adjacency, S, edges().
    Privileged parts (for critics/experts/logging only, NOT policy inputs): pos, vel, active,
    assignment, consumer_pos, demand.
    """

    self_feat: torch.Tensor
    """(B, N, ObsDims.self_dim) see SELF_FIELDS."""
    agent_res: torch.Tensor
    """(B, N, r, ObsDims.agent_res_dim) see AGENT_RES_FIELDS."""
    consumer_feat: torch.Tensor
    """(B, N, M, ObsDims.consumer_dim) see CONSUMER_FIELDS."""
    consumer_res: torch.Tensor
    """(B, N, M, r, ObsDims.consumer_res_dim) see CONSUMER_RES_FIELDS."""
    consumer_mask: torch.Tensor
    """(B, N, M) bool: consumer m still demands something (any de_ml > 0) as seen by agent i."""
    adjacency: torch.Tensor
    """(B, N, N) bool: ||p_i - p_j|| <= C, i != j, both active (the paper's N_i)."""
    S: torch.Tensor
    """(B, N, N) float: left-normalised adjacency D^-1 A (rows sum to 1; all-zero row for an agent
    without neighbours), the graph support S of eqs. (5)-(6) and Remark 1."""
    pos: torch.Tensor
    """(B, N, 2) positions p_i in [-1, 1]^2."""
    vel: torch.Tensor
    """(B, N, 2) velocities applied at the last step [units/s]."""
    active: torch.Tensor
    """(B, N) bool: agent is active (not discharged/landed)."""
    assignment: torch.Tensor
    """(B, N) int64: current assignment a_i of eq. 3 (consumer index), -1 if inactive or
    ``assignment='none'``."""
    consumer_pos: torch.Tensor
    """(B, M, 2) consumer positions d_m."""
    demand: torch.Tensor
    """(B, M, r) remaining demands de_m (same values as in consumer_feat)."""

    def edges(self) -> torch.Tensor:
        """Edge list of the comm graph: (3, E) int64 rows (env b, agent i, neighbour j)."""
        return self.adjacency.nonzero().T.contiguous()

    def flat(self) -> torch.Tensor:
        """(B, N, ObsDims.flat_dim(M)) concatenation of the four per-agent parts (MLP input)."""
        B, N = self.self_feat.shape[:2]
        return torch.cat(
            [
                self.self_feat,
                self.agent_res.reshape(B, N, -1),
                self.consumer_feat.reshape(B, N, -1),
                self.consumer_res.reshape(B, N, -1),
            ],
            dim=-1,
        )

    def index(self, env_ids: torch.Tensor) -> Obs:
        """The observations of a subset of envs (indexing along the batch dimension)."""
        return Obs(**{f.name: getattr(self, f.name)[env_ids] for f in fields(self)})


INFO_KEYS = {
    "reward_terms": "dict name -> (B, N): the seven terms of eq. (2) after gains: 'rw_g', "
    "'rw_s', 'rw_ij' (already summed over j), 'rw_im', 'rw_rc', 'rw_is', 'rw_id'; their sum is "
    "the returned reward",
    "reward_vec": "(B, N, M) per-consumer decomposition of the reward for MAMOPPO (Sec. IV: "
    "one value per demand location): consumer-specific terms go to their consumer (rw_g: "
    "demand reduction at m; rw_im/rw_rc/rw_is: released at m; rw_id: consumer a_i); global "
    "terms (rw_s, rw_ij) are split equally over the M consumers; reward_vec.sum(-1) == reward",
    "terminated": "(B,) bool: every agent inactive",
    "truncated": "(B,) bool: the episode reached episode_length",
    "final_obs": "Obs of all B envs before auto-reset (only present if some env is done and "
    "auto_reset); use it to bootstrap truncated episodes",
    "demand_satisfied": "(B,) float: 1 - sum(de(t)) / sum(de(0)) (before any auto-reset)",
    "collisions": "(B,) int64: number of active pairs closer than epsilon after the step",
    "min_distance": "(B,) float: smallest distance between two active agents after the step",
    "nan_actions": "(B,) int64: agents whose NaN/inf action was replaced by 0 (nan_actions='zero')",
    "episode_return": "(B,) float: team return sum_i sum_t rw_i of the episode so far (before "
    "auto-reset)",
    "episode_step": "(B,) int64: step index within the episode after this step (before auto-reset)",
}
"""Keys of the ``info`` dict returned by ``step`` (values are tensors on the env's device)."""


class BatchedEnvProtocol(Protocol):
    """Signatures of ``lgtc_policy.env.ResourceEnv`` (construct with
    ``ResourceEnv(cfg: EnvConfig, batch_size: int, device='cpu', seed=0)``)."""

    cfg: EnvConfig
    batch_size: int
    device: torch.device
    dims: ObsDims

    def reset(self, env_ids: torch.Tensor | None = None) -> Obs:
        """Reset all envs (``None``) or the given env indices (int64 (K,) or bool (B,)) and
        return the observation of ALL B envs."""

    def step(self, actions: torch.Tensor) -> tuple[Obs, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Advance one dt. ``actions`` (B, N, 2) in [-1, 1] (velocity / v_max; inactive agents'
        actions ignored). Returns (obs, reward (B, N), done (B,) bool, info (INFO_KEYS))."""

    def observe(self) -> Obs:
        """Observation of the current state (no side effects)."""

    def global_state(self) -> torch.Tensor:
        """(B, D_state) flat privileged state (positions, velocities, supplies, kinds, consumer
        positions/radii/demands, active mask) for centralised critics/mixers (QMIX)."""

    def discharge(
        self,
        env_ids: torch.Tensor,
        agent_ids: torch.Tensor,
        level: float = 0.0,
        deactivate: bool = True,
    ) -> None:
        """Scripted discharge event (Fig. 5): agents ``agent_ids[k]`` of envs ``env_ids[k]``
        keep ``level`` of their persistent supplies and land if ``deactivate``."""

    def set_state(self, env_ids: Any, **arrays: Any) -> Obs:
        """Overwrite parts of the state of some envs (pos, supply, persistent, demand,
        consumer_pos, radius, active, assignment; see ``ResourceEnv.set_state``); the episode
        of those envs restarts at t = 0. Returns the observation of all envs."""

    def demand_satisfied(self) -> torch.Tensor:
        """(B,) 1 - sum(de(t)) / sum(de(0))."""
