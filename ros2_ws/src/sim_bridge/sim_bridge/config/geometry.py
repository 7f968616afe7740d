"""Overlaps at start: robots' bodies (errors) and consumers' interaction areas (warnings),
found with a grid hash (:func:`overlapping_pairs`), never an ``N x N`` array."""

from __future__ import annotations

import itertools
import math

import numpy as np

from sim_bridge.config.checks import Checker
from sim_bridge.config.limits import MAX_OVERLAPS_LISTED
from sim_bridge.config.schema import ConsumerConfig, RobotConfig

#: Distances compared at a time (memory O(_BLOCK^2)).
_BLOCK = 512


def overlapping_pairs(
    points: np.ndarray, radii: np.ndarray, max_pairs: int | None = None
) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, of bodies that overlap: ``|p_i - p_j|^2 < (r_i + r_j)^2``.

    A uniform grid hash: cells of side a little over ``2 * max(radii)``, so two overlapping
    bodies lie in the same or in adjacent cells, and only those candidates are compared,
    ``_BLOCK x _BLOCK`` distances at a time. Time O(N + candidates) (O(N) for bodies spread
    as a swarm's start poses are), memory O(N + _BLOCK^2): never an ``N x N`` array.

    Args:
        points: ``(N, d)`` centres [m] (finite).
        radii: ``(N,)`` body radii [m], > 0.
        max_pairs: stop once this many pairs are found (``None``: find them all).

    Returns:
        ``(K, 2)`` int64 array of ``(i, j)``, sorted.
    """
    pts = np.asarray(points, dtype=float)
    rad = np.asarray(radii, dtype=float)
    n, dim = pts.shape
    if n < 2:
        return np.empty((0, 2), np.int64)
    low = pts.min(axis=0)
    span = float((pts.max(axis=0) - low).max())
    # 1 % over the largest reach keeps a pair that overlaps within one cell of each other
    # despite rounding; at most 2**40 cells a side keeps cell indices exact in a float.
    side = max(2.0 * float(rad.max()) * 1.01, span / 2.0**40)
    if not side > 0.0:  # all radii 0 and one point: nothing can overlap
        side = 1.0
    keys = np.floor((pts - low) / side) if math.isfinite(side) else np.zeros_like(pts)
    cells: dict[tuple[float, ...], list[int]] = {}
    for i, key in enumerate(map(tuple, keys.tolist())):
        cells.setdefault(key, []).append(i)
    # half of the neighbour offsets, so each pair of adjacent cells is visited once
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=dim) if o > (0,) * dim]
    found: list[np.ndarray] = []
    total = 0
    for key, members in cells.items():
        own = np.asarray(members, np.int64)
        blocks = [(own, own)]
        for off in offsets:
            other = cells.get(tuple(k + d for k, d in zip(key, off)))
            if other is not None:
                blocks.append((own, np.asarray(other, np.int64)))
        for a_all, b_all in blocks:
            same = a_all is b_all
            for s in range(0, len(a_all), _BLOCK):
                a = a_all[s : s + _BLOCK]
                for t in range(s if same else 0, len(b_all), _BLOCK):
                    b = b_all[t : t + _BLOCK]
                    d2 = np.zeros((len(a), len(b)))
                    for k in range(dim):
                        d2 += (pts[a, k][:, None] - pts[b, k][None, :]) ** 2
                    with np.errstate(over="ignore"):  # radii near 1e308: inf, still a hit
                        hit = d2 < (rad[a][:, None] + rad[b][None, :]) ** 2
                    if same:
                        hit &= a[:, None] < b[None, :]
                    ii, jj = np.nonzero(hit)
                    if len(ii):
                        pa, pb = a[ii], b[jj]
                        found.append(np.stack([np.minimum(pa, pb), np.maximum(pa, pb)], axis=1))
                        total += len(ii)
                        if max_pairs is not None and total >= max_pairs:
                            return _sorted_pairs(found)[:max_pairs]
    return _sorted_pairs(found)


def _sorted_pairs(found: list[np.ndarray]) -> np.ndarray:
    """The found pair blocks as one ``(K, 2)`` array, sorted by ``(i, j)``."""
    if not found:
        return np.empty((0, 2), np.int64)
    pairs = np.concatenate(found)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def _listed_overlaps(points: np.ndarray, radii: np.ndarray) -> tuple[list[list[int]], bool]:
    """The first :data:`MAX_OVERLAPS_LISTED` overlapping pairs, and whether there are more."""
    if len(points) < 2:
        return [], False
    pairs = overlapping_pairs(points, radii, max_pairs=MAX_OVERLAPS_LISTED + 1)
    return pairs[:MAX_OVERLAPS_LISTED].tolist(), len(pairs) > MAX_OVERLAPS_LISTED


def check_robot_geometry(c: Checker, robots: list[RobotConfig]) -> None:
    """Report robots whose bodies overlap at their start poses (the first pairs listed)."""
    pos = np.array([r.pose[:3] for r in robots])
    rad = np.array([r.radius for r in robots])
    listed, more = _listed_overlaps(pos, rad)
    for i, j in listed:
        c.err(
            f"{c.robot_paths[robots[j].name]}.pose",
            f"{robots[j].name!r} overlaps {robots[i].name!r} at start "
            f"(centres {float(np.linalg.norm(pos[i] - pos[j])):.3f} m apart, "
            f"radii {rad[i]} + {rad[j]} m)",
            "move one of them",
        )
    if more:
        c.err(
            "robots",
            f"more than {MAX_OVERLAPS_LISTED} pairs of robots overlap at start; the first "
            f"{MAX_OVERLAPS_LISTED} are listed",
            "spread the start poses out",
        )


def check_consumer_geometry(c: Checker, consumers: list[ConsumerConfig]) -> None:
    """Warn about consumers whose interaction areas overlap."""
    listed, more = _listed_overlaps(
        np.array([m.position for m in consumers]), np.array([m.radius for m in consumers])
    )
    for a, b in listed:
        c.warn(
            f"consumers[{b}].position",
            f"interaction area overlaps consumer {consumers[a].name!r}; a robot inside both "
            "serves the nearer one",
            "move them apart if that is not intended",
        )
    if more:
        c.warn(
            "consumers",
            f"more than {MAX_OVERLAPS_LISTED} pairs of consumer areas overlap; the first "
            f"{MAX_OVERLAPS_LISTED} are listed",
            "move them apart if that is not intended",
        )
