"""Routing swarm configs made on the fly (tests and benchmarks), core (writes YAML, no rclpy).

* :func:`routing_config`: a square arena, a grid of 20 cm cells centred in it, robots on every
  other cell of the bottom rows, random connected obstacles and random tasks drawn from the seed.
* :func:`instance_config`: the swarm file of one core :class:`~dmar_agent.world.Instance`
  (obstacles, tasks and start cells as the instance has them), so a core run and a ROS run
  can be compared on the same environment (Fig. 2(i)'s ROS subset).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

from dmar_agent.world import Instance


def routing_config(
    path: str | os.PathLike,
    *,
    seed: int,
    rows: int = 5,
    cols: int = 5,
    robots: int = 3,
    tasks: int = 3,
    k: int = 2,
    psi: int = 1,
    ground: int = 0,
    obstacle_fraction: float = 0.1,
    cell: float = 0.2,
) -> Path:
    """Write a routing swarm file to ``path`` and return it.

    Args:
        seed: the config's seed (draws obstacles and tasks).
        rows, cols: grid size [cells]; the arena is the grid plus one cell on every side (two
            with ground robots).
        robots: robots, placed on every other cell of rows 0, 2, 4, ... (ascending index).
        tasks: random tasks.
        k, psi: DMAR's sensing radius [cells] and size parameter.
        ground: the last ``ground`` robots are ground robots, the others Crazyflies.
        obstacle_fraction: share of obstacle cells (the paper's random connected map).
        cell: cell size [m].
    """
    slots = [(r, c) for r in range(0, rows, 2) for c in range(0, cols, 2)]
    if robots > len(slots):
        raise ValueError(f"{robots} robots do not fit on every other cell of {rows} x {cols}")
    ox, oy = -(cols - 1) * cell / 2.0, -(rows - 1) * cell / 2.0
    team = []
    for i, (r, c) in enumerate(slots[:robots]):
        kind = "rover" if i >= robots - ground else "cf"
        name = f"gr{i + 1}" if kind == "rover" else f"cf{i + 1}"
        team.append({"name": name, "type": kind, "pose": [ox + c * cell, oy + r * cell, 0.0, 0.0]})
    doc = _swarm_doc(seed, team, rows, cols, cell, margin=2 if ground else 1)
    if ground:  # launch/dmar_mixed.yaml's gain: a ground robot cannot sidestep a neighbour
        doc["safety"]["gamma"] = 1000.0
    doc["routing"].update(
        random_obstacles={"fraction": obstacle_fraction},
        tasks={"random": {"count": tasks}},
        k=k,
        psi=psi,
    )
    out = Path(path)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def instance_config(
    path: str | os.PathLike, inst: Instance, *, k: int, psi: int, seed: int, cell: float = 0.2
) -> Path:
    """Write the swarm file of ``inst`` (all Crazyflies) to ``path`` and return it.

    Core row ``r`` is config row ``r`` (y grows with the row), so
    :func:`dmar_agent.mission.scenario.core_instance` of the file gives ``inst`` back: the same
    grid, agent ``i`` on robot ``i``'s cell, the tasks in the same order; ``seed`` becomes the
    config's seed, i.e. the DMAR seed of the ROS run.
    """
    rows, cols = inst.grid.height, inst.grid.width
    ox, oy = -(cols - 1) * cell / 2.0, -(rows - 1) * cell / 2.0
    team = []
    for i, flat in enumerate(np.asarray(inst.agents).tolist()):
        r, c = divmod(int(flat), cols)
        team.append(
            {"name": f"cf{i + 1}", "type": "cf", "pose": [ox + c * cell, oy + r * cell, 0.0, 0.0]}
        )
    blocked = np.argwhere(~inst.grid.free).tolist()
    doc = _swarm_doc(seed, team, rows, cols, cell, margin=1)
    doc["routing"].update(
        obstacles=[[int(r), int(c)] for r, c in blocked],
        tasks=[list(divmod(int(t), cols)) for t in np.asarray(inst.tasks).tolist()],
        k=int(k),
        psi=int(psi),
    )
    out = Path(path)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _swarm_doc(seed: int, team: list, rows: int, cols: int, cell: float, margin: int) -> dict:
    """The common part of a routing swarm file: arena, rates, safety, robot types, grid."""
    ox, oy = -(cols - 1) * cell / 2.0, -(rows - 1) * cell / 2.0
    # two cells of room around the grid with ground robots (their projection point, 0.1 m ahead
    # of the axle, stays inside the arena; the CBF keeps the axle Ds/2 off the walls), drones one
    half_x, half_y = (cols - 1 + 2 * margin) * cell / 2.0, (rows - 1 + 2 * margin) * cell / 2.0
    doc = {
        "fileversion": 1,
        "seed": int(seed),
        "arena": {"x": [-half_x, half_x], "y": [-half_y, half_y], "z": [0.0, 1.0]},
        "rates": {"control_hz": 20, "sim_hz": 100, "clock_hz": 50, "markers_hz": 5},
        "safety": {"distance": 0.12, "gamma": 100.0, "class_k": "cubic"},
        "robot_types": {
            "cf": {
                "kind": "crazyflie",
                "backend": "sim",
                "radius": 0.05,
                "max_speed": 0.3,
                "takeoff_height": 0.4,
            },
            "rover": {
                "kind": "ground",
                "backend": "sim",
                "radius": 0.05,
                "max_speed": 0.3,
                "max_yaw_rate": 3.0,
            },
        },
        "robots": team,
        "routing": {
            "cell_size": cell,
            "origin": [ox, oy],
            "rows": rows,
            "cols": cols,
            "timing": "lockstep",
            "tolerance": 0.05,
        },
    }
    return doc
