"""Input checks and result helpers shared by the centralized and decentralized filters."""

from __future__ import annotations

import numpy as np

from cbf_filter.errors import CBFInputError
from cbf_filter.result import CBFResult, CBFStatus

# A pair closer than this [m] has no usable barrier gradient (coincident robots).
COINCIDENT_DISTANCE = 1e-9
# Positions [m] and velocities [m/s] beyond this are not physical: treated like NaN (also
# keeps h = ||e||^2 - Ds^2 and the cubic class-K function far from float overflow).
MAX_ABS = 1e6


def valid_rows(a: np.ndarray) -> np.ndarray:
    """``(N,)`` True where every entry of row ``a[i]`` is finite and ``|a| <= MAX_ABS``."""
    return np.all(np.abs(a) <= MAX_ABS, axis=-1)


def as_array(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float array of ``shape``; raise :class:`CBFInputError` otherwise."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise CBFInputError(f"{name}: expected a numeric array of shape {shape}") from None
    if arr.shape != shape:
        raise CBFInputError(f"{name}: expected shape {shape}, got {arr.shape}")
    return arr


def fallback_result(
    n: int,
    d: int,
    status: CBFStatus,
    message: str,
    t_start: float,
    now: float,
    n_pairs: int = 0,
    min_distance: float = float("inf"),
    single: bool = False,
) -> CBFResult:
    """Every robot brakes to zero velocity (the defined fallback)."""
    return CBFResult(
        u=np.zeros(d) if single else np.zeros((n, d)),
        found=False,
        status=status,
        fallback=np.ones(n, dtype=bool),
        n_pairs=n_pairs,
        min_distance=min_distance,
        solve_time_s=now - t_start,
        message=message,
    )
