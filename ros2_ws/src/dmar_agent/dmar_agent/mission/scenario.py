"""The DMAR core instance of a routing swarm config (core: no rclpy).

Both sides of the lockstep-equality check run this instance: the ROS run (the world of
``sim_bridge`` on the config) and :func:`dmar_agent.distributed.run_distributed` /
:func:`dmar_agent.protocols.run_dmar`.
"""

from __future__ import annotations

import numpy as np
from sim_bridge.config import SwarmConfig

from dmar_agent.errors import ConfigError
from dmar_agent.protocols import DmarConfig
from dmar_agent.world import Grid, Instance


def core_instance(cfg: SwarmConfig, **overrides) -> tuple[Instance, DmarConfig]:
    """(Instance, DmarConfig) of ``cfg``'s routing section.

    Grid: ``rows x cols``, free where not an obstacle (the config's row = the core's row, so
    the core's N, ``row - 1``, is -y in the world). Agent ``i`` starts in the cell robot ``i``
    stands in (nearest centre of its configured pose); tasks in config order; ``k``, ``psi``
    and ``seed`` (the config's top-level seed) from the config; ``overrides`` go to
    :class:`~dmar_agent.protocols.DmarConfig` (e.g. ``max_iterations``).

    Raises:
        ConfigError: the config has no ``routing`` section.
    """
    rc = cfg.routing
    if rc is None:
        raise ConfigError(f"{cfg.source}: no routing section; a DMAR run needs one")
    grid = Grid(~rc.obstacles)
    cols = rc.grid.cols
    xy = np.array([r.pose[:2] for r in cfg.robots], dtype=float)
    rcs = rc.grid.cell_of(xy)
    agents = rcs[:, 0] * cols + rcs[:, 1]
    tasks = rc.task_cells[:, 0] * cols + rc.task_cells[:, 1]
    params = {"k": int(rc.k), "psi": int(rc.psi), "seed": int(cfg.seed), **overrides}
    return Instance(grid, agents.astype(np.int64), tasks.astype(np.int64)), DmarConfig(**params)
