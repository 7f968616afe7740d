"""The demo's report (no rclpy): metrics of a ROS run, Markdown out, Markdown back in.

:func:`ros_metrics` turns the run's recording sampled at every 20 Hz world publication
(sim time, positions, remaining demand: :func:`sim_bridge.recording.read_run`) into the
mission figures; :func:`node_metrics` reads the policy and CBF nodes' last ``/diagnostics``
(ticks, compute time, fallbacks) and :func:`cluster_log` each policy's cluster over time from
the same recording. :func:`format_report` writes the figures as a Markdown table (``| key |
value | meaning |``) that :func:`parse_report` reads back, so tools and tests consume the
same file a person reads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "KEYS",
    "POLICY_STATUS",
    "cluster_log",
    "format_report",
    "node_metrics",
    "pair_separation",
    "parse_report",
    "ros_metrics",
]

#: Name prefix of a policy node's diagnostic status (``lgtc_policy: <robot>``).
POLICY_STATUS = "lgtc_policy:"

#: Report rows in order: key -> meaning (units in the meaning).
KEYS: dict[str, str] = {
    "config": "swarm config",
    "checkpoint": "policy checkpoint",
    "mode": "bringup mode (composed: all nodes in one process; processes: one per node)",
    "robots": "N robots",
    "consumers": "M consumers",
    "wall_s": "wall time of the run [s]",
    "sim_s": "sim time of the run [s]",
    "rtf": "world real-time factor (1.0 = real time)",
    "demand_satisfied_pct": "1 - remaining / initial demand at the end (world) [%]",
    "time_to_95pct_s": "sim time until 95 % of the demand was met [s] (nan: never)",
    "time_to_satisfy_s": "sim time until all demand was met (<= 0.1 % left) [s] (nan: never)",
    "min_pair_separation_m": "smallest distance between two airborne robots [m]",
    "safety_distance_m": "CBF safety distance Ds [m]",
    "min_separation_margin_m": "min_pair_separation_m - safety_distance_m [m]",
    "pairs_below_safety": "samples x pairs closer than Ds",
    "cbf_fallbacks": "CBF fallbacks (brake to zero) over all filters (nan: not reported)",
    "policy_ticks": "policy ticks over all robots",
    "ticks_on_time_pct": "policy ticks started within 1.5 periods of the previous one [%]",
    "policy_compute_p50_ms": "median compute time of one policy tick [ms]",
    "policy_compute_p99_ms": "p99 compute time of one policy tick (worst robot) [ms]",
    "episode_ticks": "20 Hz ticks compared (sim time 0 .. end)",
    "reward_ros": "eq. (2) accumulated reward / N of the ROS run (env replay of its positions)",
    "reward_core": "same policy, same scenario and seed, in the core env",
    "reward_core_cbf": "same, every action through the ROS chain's per-robot CBF filters (metres)",
    "reward_expert": "centralized expert (eq. 3 MIQP + P control + CBF) on the scenario",
    "reward_ratio_ros_vs_core": "reward_ros / reward_core",
    "reward_ratio_ros_vs_core_cbf": "reward_ros / reward_core_cbf",
    "reward_ratio_ros_vs_expert": "reward_ros / reward_expert",
    "env_demand_satisfied_ros_pct": "demand met in the env's semantics, ROS replay [%]",
    "env_demand_satisfied_core_pct": "demand met in the env's semantics, core rollout [%]",
    "env_demand_satisfied_expert_pct": "demand met in the env's semantics, expert [%]",
    "events": "the world's events as they fired: faults (scripted events, watchdog landings, "
    "refused calls), none on a clean run",
    "notes": "what could not be measured and why",
}


def pair_separation(positions: np.ndarray, airborne: np.ndarray) -> tuple[float, np.ndarray]:
    """Smallest 3-D distance between two airborne robots over all samples, and per sample.

    Args:
        positions: ``(K, N, 3)`` [m]; airborne: ``(K, N)`` bool.

    Returns:
        ``(min over samples, (K,) per-sample minimum)`` (inf where < 2 robots are airborne).
    """
    pos = np.asarray(positions, dtype=float)
    diff = pos[:, :, None, :] - pos[:, None, :, :]
    d = np.sqrt((diff * diff).sum(-1))
    both = airborne[:, :, None] & airborne[:, None, :]
    n = pos.shape[1]
    both &= ~np.eye(n, dtype=bool)[None]
    d = np.where(both, d, np.inf)
    per = d.reshape(len(pos), -1).min(axis=1) if len(pos) else np.zeros(0)
    return (float(per.min()) if per.size else math.inf), per


def ros_metrics(
    cfg, times: np.ndarray, positions: np.ndarray, demands: np.ndarray
) -> dict[str, Any]:
    """Mission figures of a ROS run from the monitor's samples.

    Args:
        cfg: the ``SwarmConfig``; times: ``(K,)`` sim time [s]; positions: ``(K, N, 3)`` [m];
        demands: ``(K, M, r)`` remaining demand (world semantics).
    """
    d0 = float(cfg.demand_matrix().sum())
    left = demands.reshape(len(demands), -1).sum(axis=1) if len(demands) else np.array([d0])
    sat = 1.0 - left / d0 if d0 > 0 else np.ones_like(left)
    z0 = cfg.arena.z[0]
    thresh = np.array(
        [z0 + 0.5 * r.takeoff_height if r.kind == "crazyflie" else -np.inf for r in cfg.robots]
    )
    airborne = positions[..., 2] >= thresh[None, :] if len(positions) else np.zeros((0, 0), bool)
    dmin, per = pair_separation(positions, airborne) if len(positions) else (math.inf, [])
    ds = cfg.safety.distance
    below = 0
    if len(positions):
        diff = positions[:, :, None, :] - positions[:, None, :, :]
        d = np.sqrt((diff * diff).sum(-1))
        both = airborne[:, :, None] & airborne[:, None, :] & ~np.eye(len(cfg.robots), dtype=bool)
        below = int(((d < ds) & both).sum() // 2)

    def first(mask: np.ndarray) -> float:
        idx = np.nonzero(mask)[0]
        return float(times[idx[0]]) if idx.size and len(times) else math.nan

    return {
        "demand_satisfied_pct": 100.0 * float(sat[-1]),
        "time_to_95pct_s": first(sat >= 0.95),
        "time_to_satisfy_s": first(sat >= 0.999),
        "min_pair_separation_m": dmin,
        "safety_distance_m": ds,
        "min_separation_margin_m": dmin - ds,
        "pairs_below_safety": below,
    }


def _last_status(diagnostics, prefix: str) -> dict[str, dict[str, str]]:
    """The last ``{key: value}`` of every status whose name starts with ``prefix``."""
    return {name: values for _, name, values in diagnostics if name.startswith(prefix)}


def node_metrics(diagnostics: list[tuple[float, str, dict[str, str]]]) -> tuple[dict, list[str]]:
    """Policy and CBF figures of a run from its ``/diagnostics`` statuses ``(sim t, name,
    {key: value})``, the last of each node: ``cbf_fallbacks`` (the filters' cumulative
    ``fallbacks_total``), ``policy_ticks``, ``ticks_on_time_pct``, ``policy_compute_p50_ms``
    (median over robots) and ``policy_compute_p99_ms`` (worst robot); and notes on what no
    node reported."""
    notes: list[str] = []
    policy = _last_status(diagnostics, POLICY_STATUS)
    cbf = _last_status(diagnostics, "cbf")
    counts = [int(float(v["fallbacks_total"])) for v in cbf.values() if "fallbacks_total" in v]
    if not counts:
        notes.append("no CBF filter published a `fallbacks_total` diagnostic")
    ticks = sum(int(v.get("ticks", 0)) for v in policy.values())
    on_time = sum(int(v.get("ticks_on_time", 0)) for v in policy.values())
    comp = [
        (float(v.get("compute_p50_ms", "nan")), float(v.get("compute_p99_ms", "nan")))
        for v in policy.values()
    ]
    values = {
        "cbf_fallbacks": sum(counts) if counts else math.nan,
        "policy_ticks": ticks,
        "ticks_on_time_pct": 100.0 * on_time / ticks if ticks else math.nan,
        "policy_compute_p50_ms": float(np.nanmedian([c[0] for c in comp])) if comp else math.nan,
        "policy_compute_p99_ms": float(np.nanmax([c[1] for c in comp])) if comp else math.nan,
    }
    return values, notes


def cluster_log(cfg, diagnostics: list[tuple[float, str, dict[str, str]]]) -> np.ndarray:
    """``(K, 3)`` rows ``(sim t, robot index, cluster)``: every policy status of ``cfg``'s
    robots that carries a ``cluster`` (the attended consumer, -1: none), in order."""
    index = {name: i for i, name in enumerate(cfg.robot_names)}
    rows = []
    for t, name, values in diagnostics:
        robot = name.split(":", 1)[1].strip() if name.startswith(POLICY_STATUS) else None
        if robot in index and "cluster" in values:
            rows.append((t, index[robot], int(values["cluster"])))
    return np.asarray(rows, dtype=float).reshape(-1, 3)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return "nan" if math.isnan(v) else f"{float(v):.4g}"
    return str(v).replace("|", "/").replace("\n", " ")


def format_report(values: dict[str, Any], title: str = "Swarm mission report") -> str:
    """Markdown: a title, one table row per key of :data:`KEYS` present in ``values``."""
    lines = [f"# {title}", "", "| key | value | meaning |", "|---|---|---|"]
    for key, meaning in KEYS.items():
        if key in values:
            lines.append(f"| {key} | {_fmt(values[key])} | {meaning} |")
    return "\n".join(lines) + "\n"


def parse_report(text: str) -> dict[str, Any]:
    """The table of :func:`format_report` back as ``key -> value`` (numbers as float/int)."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[0] not in KEYS:
            continue
        raw = cells[1]
        try:
            out[cells[0]] = int(raw)
        except ValueError:
            try:
                out[cells[0]] = float(raw)
            except ValueError:
                out[cells[0]] = raw
    return out
