"""Messages of a routing mission (``topics`` "Routing missions"): arrays in, messages out.

Shared by the world node and the real-robot bridges so both publish the same layout; the
arrays come from :mod:`sim_bridge.routing` (pure).
"""

from __future__ import annotations

import numpy as np
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, UInt64MultiArray

from sim_bridge.topics import TASK_FIELDS, VIEW_FIELDS


def table_msg(table: np.ndarray, rows_label: str, fields: tuple[str, ...]) -> Float64MultiArray:
    """``(K, F)`` table as a 2-D ``Float64MultiArray`` (``rows_label`` x ``fields``)."""
    n_fields = len(fields)
    table = np.asarray(table, dtype=float).reshape(-1, n_fields)
    msg = Float64MultiArray()
    msg.layout.dim = [
        MultiArrayDimension(label=rows_label, size=len(table), stride=len(table) * n_fields),
        MultiArrayDimension(label="fields", size=n_fields, stride=n_fields),
    ]
    msg.data = table.reshape(-1).tolist()
    return msg


def view_msg(table: np.ndarray, ps_step: int) -> Float64MultiArray:
    """``/<robot>/view``: ``cells`` x ``VIEW_FIELDS``, ``layout.data_offset`` = ``ps_step``."""
    msg = table_msg(table, "cells", VIEW_FIELDS)
    msg.layout.data_offset = int(ps_step)
    return msg


def tasks_msg(table: np.ndarray) -> Float64MultiArray:
    """``/tasks``: ``tasks`` x ``TASK_FIELDS``."""
    return table_msg(table, "tasks", TASK_FIELDS)


def ps_step_msg(ps_step: int, moves_done: int) -> UInt64MultiArray:
    """``/swarm/ps_step``: ``[ps_step, moves_done]``."""
    msg = UInt64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label="ps_step", size=2, stride=2)]
    msg.data = [int(ps_step), int(moves_done)]
    return msg
