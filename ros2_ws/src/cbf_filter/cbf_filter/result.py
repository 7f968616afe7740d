"""Result object and running statistics of the safety filter."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from cbf_filter.errors import CBFInfeasibleError, CBFInvalidInputError, CBFSolveError


class CBFStatus(enum.Enum):
    """Outcome of one filter call. Everything except the first two means *fallback*."""

    NOMINAL_SAFE = "nominal_safe"  # u_hat already satisfies every constraint: u = u_hat
    SOLVED = "solved"  # QP solved, u is its (verified) minimiser
    INFEASIBLE = "infeasible"  # no admissible command (state already unsafe / jammed)
    INVALID_INPUT = "invalid_input"  # NaN / inf in positions or nominal command
    DEGENERATE = "degenerate"  # coincident robots: the barrier gradient vanishes
    SOLVER_ERROR = "solver_error"  # solver failed / hit its iteration limit / bad answer

    @property
    def ok(self) -> bool:
        """True when the command is certified (no fallback)."""
        return self in (CBFStatus.NOMINAL_SAFE, CBFStatus.SOLVED)


# Severity order used when several robots of one batched call disagree.
_SEVERITY = {
    CBFStatus.NOMINAL_SAFE: 0,
    CBFStatus.SOLVED: 1,
    CBFStatus.INFEASIBLE: 2,
    CBFStatus.SOLVER_ERROR: 3,
    CBFStatus.DEGENERATE: 4,
    CBFStatus.INVALID_INPUT: 5,
}


def worst_status(statuses) -> CBFStatus:
    """The most severe status of an iterable (``NOMINAL_SAFE`` for an empty one)."""
    worst = CBFStatus.NOMINAL_SAFE
    for s in statuses:
        if _SEVERITY[s] > _SEVERITY[worst]:
            worst = s
    return worst


def _empty_pairs() -> np.ndarray:
    return np.zeros((0, 2), dtype=np.int64)


@dataclass(frozen=True)
class CBFResult:
    """What one call of ``filter()`` produced.

    Attributes:
        u: filtered command [m/s, world frame], shape ``(N, d)`` (``(d,)`` for
            ``DecentralizedCBF.filter_robot``; ``(N, 2)`` = (v [m/s], omega [rad/s]) for
            ``UnicycleCBF``). Always finite; zero for robots that fell back.
        found: True when no robot fell back (every command is a certified QP minimiser).
        status: overall status (the most severe one over robots).
        fallback: ``(N,)`` bool, robots whose command was replaced by zero velocity.
        active_pairs: ``(K, 2)`` robot index pairs ``i < j`` whose barrier constraint is
            active (for ``filter_robot``: ``[0, neighbour_index]``).
        active_boundary: ``(M, 2)`` rows ``[robot, face]`` with ``face = 2 * axis + side``
            (side 0 = lower wall, 1 = upper wall) whose boundary barrier is active.
        active_speed: ``(S,)`` robots whose speed limit is active.
        n_pairs: pair constraints in the QP(s) (pairs inside the sensing radius).
        min_distance: smallest centre distance over the considered pairs [m] (inf if none).
        solve_time_s: wall-clock time of the whole call, building included [s].
        iterations: solver iterations (summed over robots for batched decentralized calls).
        message: human-readable reason when ``found`` is False, else ``""``.
        u_projection: for unicycles, the filtered projection-point velocity ``(N, 2)``.
    """

    u: np.ndarray
    found: bool
    status: CBFStatus
    fallback: np.ndarray
    active_pairs: np.ndarray = field(default_factory=_empty_pairs)
    active_boundary: np.ndarray = field(default_factory=_empty_pairs)
    active_speed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    n_pairs: int = 0
    min_distance: float = float("inf")
    solve_time_s: float = 0.0
    iterations: int = 0
    message: str = ""
    u_projection: np.ndarray | None = None

    @property
    def n_active(self) -> int:
        """Number of active constraints (pairs + walls + speed limits)."""
        return len(self.active_pairs) + len(self.active_boundary) + len(self.active_speed)

    def raise_for_status(self) -> CBFResult:
        """Return ``self`` when certified, else raise the matching :class:`CBFSolveError`."""
        if self.found:
            return self
        if self.status is CBFStatus.INFEASIBLE:
            raise CBFInfeasibleError(self.message, self)
        if self.status in (CBFStatus.INVALID_INPUT, CBFStatus.DEGENERATE):
            raise CBFInvalidInputError(self.message, self)
        raise CBFSolveError(self.message, self)


@dataclass
class FilterStats:
    """Running counters of a filter object (reported by the node's diagnostics)."""

    calls: int = 0
    fallback_calls: int = 0  # calls where at least one robot braked
    fallback_robots: int = 0  # robot-commands replaced by zero
    setups: int = 0  # OSQP setups (new sparsity patterns)
    active_set_solves: int = 0  # QPs handed to the exact active-set solver (centralized)
    osqp_solves: int = 0  # QPs solved by OSQP (centralized: when the active set could not)
    repairs: int = 0  # solver answers shrunk onto the feasible set (round-off)
    status_counts: Counter = field(default_factory=Counter)

    def record(self, result: CBFResult) -> None:
        """Count one result."""
        self.calls += 1
        self.status_counts[result.status.value] += 1
        n_fb = int(np.count_nonzero(result.fallback))
        if n_fb:
            self.fallback_calls += 1
            self.fallback_robots += n_fb

    def as_dict(self) -> dict:
        """Flat dict for logs / diagnostics."""
        out = {
            "calls": self.calls,
            "fallback_calls": self.fallback_calls,
            "fallback_robots": self.fallback_robots,
            "setups": self.setups,
            "active_set_solves": self.active_set_solves,
            "osqp_solves": self.osqp_solves,
            "repairs": self.repairs,
        }
        out.update({f"status_{k}": v for k, v in sorted(self.status_counts.items())})
        return out
