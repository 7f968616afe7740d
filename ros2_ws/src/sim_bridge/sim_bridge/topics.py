"""Topic and service names of the swarm, and the layout of every array-valued message.

This module is the one place that documents the wire contract. It is pure Python (no
rclpy), so cores, nodes, bridges and tests all import names from here.

Frames and units
----------------
* ``world`` frame: x, y on the floor [m], z up [m]; yaw [rad], counter-clockwise.
* Velocities are world-frame linear velocities [m/s] (for drones a 3-D vector; ground
  robots use x, y and the bridge maps them to a unicycle through the near-identity map).

Per-robot topics (namespace ``/<robot>``)
-----------------------------------------
``pose``               geometry_msgs/PoseStamped, frame ``world``. Published by the world
                       (sim) or by the bridge (cflib state estimate / mocap / odometry).
``resources``          std_msgs/Float64MultiArray, one dimension labelled ``resources``,
                       ``data[k]`` = amount of resource type ``k`` the robot still carries,
                       types in the order of ``SwarmConfig.resource_types``.
``neighbors``          geometry_msgs/PoseArray, frame ``world``: poses of the *other*
                       robots within the sensing radius (what onboard sensing or mocap
                       would give). ``header.frame_id`` is ``world``; the robot names are
                       not carried (the CBF needs positions only).
``cmd_vel_nominal``    geometry_msgs/TwistStamped, frame ``world``: the policy's command.
``cmd_vel``            geometry_msgs/TwistStamped, frame ``world``: the CBF-filtered command
                       that the world / bridge executes. Only a *fresh* command moves a
                       robot (see "Command freshness" below); anything else means "hold
                       still", and a robot that was flying on commands lands when none has
                       been fresh for ``LAND_AFTER_S``.
``comm/out``           std_msgs/Float64MultiArray: a message the robot broadcasts to its
                       neighbours (layout below). Only the comm relay subscribes.
``comm/in``            std_msgs/Float64MultiArray: messages delivered by the comm relay
                       from robots within communication radius C at that instant.
``link_state``         std_msgs/String: ``connecting`` | ``up`` | ``lost`` | ``sim``.
``mode``               std_msgs/String, latched (transient local), on every change: what
                       the robot's owner (world for ``sim``, bridge otherwise) is doing
                       with it: ``grounded`` | ``taking_off`` | ``hovering`` | ``flying`` |
                       ``holding`` | ``landing`` | ``failed`` | ``emergency``
                       (:data:`MODES_ACTIVE`, :data:`MODES_STOPPED`). A ground robot is
                       ``grounded`` while its driving is disabled. The one signal that shows
                       a disabled ground robot: its pose looks the same.
``takeoff``, ``land``, ``emergency_stop``  std_srvs/Trigger services, offered by whoever
                       owns the robot (the world for ``sim``, the bridge for ``cflib`` /
                       ``external``). ``/all/…`` services fan out to these.

Command freshness (every consumer of a command: CBF node, world, radio and ground bridges)
-----------------------------------------------------------------------------------------
A command stamped ``stamp`` [s] and received at ``rx`` [s] (both on the consumer's clock) is
*fresh* at time ``now`` only if

    ``now - CMD_TIMEOUT_S <= stamp <= now + CMD_CLOCK_SKEW_S``  and  ``now - rx <= CMD_TIMEOUT_S``

(:func:`command_fresh`). An unstamped (zero) stamp is never fresh; a stamp in the future beyond
the skew is rejected on receipt, counted, and never executed or forwarded. A node acts on
fresh input only and never re-publishes an input it has not freshly received; a forwarded
command keeps the original stamp, so the next consumer still measures the age of the
*policy's* decision. Commands faster than ``CMD_REJECT_FACTOR * max_speed`` or not finite are
garbage (:func:`command_valid`): rejected and counted; finite commands between ``max_speed``
and that bound are clipped to ``max_speed`` and counted as clipped.

Failure ladder of a robot whose commands stop (silent, frozen or crashed policy, dead
filter), the same in the simulator and on the bridges: no fresh command for
``CMD_TIMEOUT_S`` -> hold still (hover / stop); none for ``LAND_AFTER_S`` while it was flying
on commands -> land (drones) or disable (ground robots). A robot that has taken off but
never received a command hovers on its take-off setpoint, as the Crazyflie's high-level
commander does.

Comm message layout (``comm/out`` and ``comm/in``)
--------------------------------------------------
``data = [sender_index, stamp_s, payload...]`` where ``sender_index`` is the robot's index
in ``SwarmConfig.robots`` (as a float), ``stamp_s`` the sender's clock [s] and ``payload``
the application payload (e.g. the LGTC features and cluster state). Every value is finite and
a message holds at most ``COMM_MAX_LEN`` values (the header and a payload of up to 2**16
values: a DMAR message's bound; an LGTC message has 78). The relay drops and counts a message
that breaks this, is shorter than the header, or whose ``sender_index`` is not the publishing
robot's (:func:`sim_bridge.relay.comm_problem`): no robot speaks for another, and nothing
non-finite or oversized reaches the neighbours.

``comm/in`` carries a bundle: the relay delivers one ``Float64MultiArray`` per recipient per
flush, laid out in 2 dimensions, ``layout.dim[0]`` labelled ``messages`` (k rows) and
``layout.dim[1]`` labelled ``message`` (the row length). Each row is one sender's ``comm/out``
array, unchanged, and rows are in send order. Messages of another length than the bundle's
rows travel in a separate bundle. When the relay flushes is its ``deliver`` parameter:
``before_tick`` (just before the recipient's predicted next tick, the default) or
``periodic`` (every ``bundle_period_s``). With ``bundle_period_s = 0`` every copy is its own
1-row publication.

Routing missions (DMAR; a config with a ``routing`` section)
-----------------------------------------------------------
The arena carries a grid of square cells (``routing.cell_size`` [m], ``routing.origin`` = the
world position of cell (0, 0)'s centre; ``row`` grows with y, ``col`` with x; a cell's flat
index is ``row * cols + col``). A robot *is in* the cell whose centre is nearest to its floor
position (off the grid: the nearest edge cell). The sensing radius ``k`` is in cells
(Manhattan, the DMAR paper's k-hop ball; obstacles do not block it). ``k`` is the one source of
truth for both radii in metres: a routing config does not set ``comm_radius`` or
``sensing_radius`` (a different value is rejected); both are derived as
``C = hypot(cell_size * sqrt((k + 1)^2 + 1), max take-off height)``
(:func:`sim_bridge.config.routing_comm_radius`), the largest distance between two robots
standing anywhere in cells ``k`` apart, on the floor or at their take-off height. (Not
``k * cell_size``: that is only the reach between cell centres, and robots off their centres
or at different heights would miss messages from robots their view shows.) So the relay
delivers at least to every robot in the view, and an agent keeps only the messages of robots
its view shows. Obstacle cells are solid for every robot (the simulator's rule:
:func:`sim_bridge.routing.clip_motion`); a task is visited when a flying / driving robot is in
its cell.

``view``               std_msgs/Float64MultiArray, per robot, published by the world (sim) or
                       the bridge (mocap + a known obstacle and task list) with every state
                       publication (``control_hz``) and at once when the world's PS step
                       advances: 2 dimensions ``cells`` (K rows) and ``fields``
                       (``VIEW_FIELDS`` = ``[row, col, obstacle, task, robot]``): every grid cell
                       within Manhattan distance ``k`` of the robot's cell, own cell first, then
                       in ascending flat index; ``obstacle`` and ``task`` (an unvisited task)
                       are 0/1; ``robot`` is the index of a robot in that cell or -1 (a cell with
                       several robots appears once per robot, in ascending robot index, the
                       viewer included in its own cell). Only robots whose pose is known appear
                       (any mode: a landed robot still stands in its cell); a robot whose own
                       pose is unknown gets no view. ``layout.data_offset`` carries the world's
                       PS step (``ps_step``) the view belongs to (0 in ``free`` timing).
``/tasks``             std_msgs/Float64MultiArray: ``tasks`` (T rows) x ``fields``
                       (``TASK_FIELDS`` = ``[row, col, visited, robot, t_visited]``), tasks in
                       the config's order; ``robot`` = index of the first visitor (the lowest
                       index on a tie) or -1, ``t_visited`` [s] sim time or -1.
``/swarm/ps_step``     std_msgs/UInt64MultiArray ``[ps_step, moves_done]`` (one dimension
                       ``ps_step``), published with the views. ``routing.timing: lockstep``
                       (the default): the world is at step ``t``; it advances to ``t + 1`` (at
                       most one step per simulator tick, and only while at least one robot
                       flies / drives or takes off) when every flying / driving robot (a sim
                       drone taking off included) has reported its
                       step-``t`` move on ``dmar/move`` and stands within ``routing.tolerance``
                       [m] (floor distance) of the target cell's centre; then ``moves_done``
                       grows by the number of those robots. ``free``: ``ps_step`` stays 0 and
                       ``moves_done`` counts every reported move whose robot reached its
                       target. A grounded or failed robot does not hold the step up.
``dmar/move``          std_msgs/Float64MultiArray ``[ps_step, control, target_row,
                       target_col]`` per robot (agent -> world; the world serves sim and real
                       robots alike): the robot's EM control for that step (0..4 = N, E, S, W,
                       WAIT, the labels of ``dmar_agent.world``, whose N is ``row - 1``, i.e.
                       towards -y here; the world acts on the target cell only) and the cell it
                       heads for. Rejected and counted (``rejected_moves`` on ``/diagnostics``):
                       values that are not whole numbers, a control outside 0..4, a target off
                       the grid or on an obstacle, and in lockstep a step before the world's or
                       more than 16 ahead (a report ahead of the world waits for its step).
                       Moving the robot is the agent's job (``cmd_vel`` through the CBF).
``comm/out`` payload   of a DMAR agent: ``[DMAR_MSG_VERSION, ps_step, kind, body...]``
                       (:mod:`dmar_agent.wire` documents ``kind`` and ``body``).
``/swarm/markers``     adds the routing layers ``routing_grid``, ``routing_obstacles``,
                       ``routing_tasks``, ``routing_visited``; a DMAR node may publish
                       ``dmar_cluster`` (:func:`sim_bridge.ros.markers.cluster_markers`).

Swarm-wide
----------
``/consumers``         std_msgs/Float64MultiArray, 2 dimensions: ``consumers`` (M rows)
                       and ``fields`` (``CONSUMER_FIXED_FIELDS + R`` columns):
                       ``[x, y, radius, active, remaining_demand_0 .. remaining_demand_{R-1}]``.
``/clock``             rosgraph_msgs/Clock (sim time, rate-limited).
``/swarm/markers``     visualization_msgs/MarkerArray for rviz: the world's layers (``ns``
                       ``robots``, ``names``, ``safety``, ``consumers``, ``demand``,
                       ``comm``; see :mod:`sim_bridge.ros.markers`).
``/swarm/policy_markers``  visualization_msgs/MarkerArray: the policy nodes' layers, each
                       node publishing its own robot's markers (marker ``id`` = robot
                       index, frame ``world``): ``lgtc_cluster`` (SPHERE coloured by the
                       consumer the robot's cluster attends), ``lgtc_nominal`` (ARROW of
                       the policy's nominal velocity) and ``lgtc_filtered`` (ARROW of the
                       CBF-filtered velocity).
``/swarm/events``      std_msgs/String: human-readable scripted events (JSON text).
``/diagnostics``       diagnostic_msgs/DiagnosticArray: the world's status ``sim_bridge: world``
                       (1 Hz; keys ``sim_t``, ``rtf``, ``tick_p50_ms``, ``tick_p99_ms``,
                       ``rejected_commands``, ``modes``).
``/all/takeoff``, ``/all/land``, ``/all/emergency_stop``  std_srvs/Trigger.
"""

from __future__ import annotations

import math

WORLD_FRAME = "world"
#: A command older than this [s] (by stamp or by receipt) is stale: hold still.
CMD_TIMEOUT_S = 0.3
#: How far in the future [s] a command's stamp may lie (clock skew between hosts).
CMD_CLOCK_SKEW_S = 0.05
#: No fresh command for this long [s] while flying on commands: land.
LAND_AFTER_S = 2.0
#: A command faster than this multiple of the robot's max speed is garbage, not saturated.
CMD_REJECT_FACTOR = 5.0

POSE = "pose"
RESOURCES = "resources"
NEIGHBORS = "neighbors"
CMD_VEL_NOMINAL = "cmd_vel_nominal"
CMD_VEL = "cmd_vel"
COMM_OUT = "comm/out"
COMM_IN = "comm/in"
LINK_STATE = "link_state"
MODE = "mode"
#: ``mode`` values of a robot in service (a drone in the air, a ground robot enabled).
MODES_ACTIVE = ("taking_off", "hovering", "flying", "holding")
#: ``mode`` values of a robot out of service: landed or disabled, landing, failed, stopped.
MODES_STOPPED = ("grounded", "landing", "failed", "emergency")
TAKEOFF = "takeoff"
LAND = "land"
EMERGENCY_STOP = "emergency_stop"

CONSUMERS = "/consumers"
CLOCK = "/clock"
MARKERS = "/swarm/markers"
POLICY_MARKERS = "/swarm/policy_markers"
EVENTS = "/swarm/events"
DIAGNOSTICS = "/diagnostics"
ALL_TAKEOFF = "/all/takeoff"
ALL_LAND = "/all/land"
ALL_EMERGENCY_STOP = "/all/emergency_stop"

CONSUMER_FIXED_FIELDS = ("x", "y", "radius", "active")
COMM_HEADER_LEN = 2  # sender_index, stamp_s
#: Longest comm message [values]: the header and a payload of at most 2**16 values.
COMM_MAX_LEN = COMM_HEADER_LEN + (1 << 16)

# Routing missions (DMAR)
VIEW = "view"
TASKS = "/tasks"
PS_STEP = "/swarm/ps_step"
DMAR_MOVE = "dmar/move"
VIEW_FIELDS = ("row", "col", "obstacle", "task", "robot")
TASK_FIELDS = ("row", "col", "visited", "robot", "t_visited")
DMAR_MSG_VERSION = 1


class ModeWatch:
    """Whether a robot is out of service, from its owner's ``/<robot>/mode`` messages.

    Out of service: a mode of :data:`MODES_STOPPED` after one of :data:`MODES_ACTIVE` (a robot
    not yet taken off or enabled is waiting, not down); back in service on the next active
    mode. The rule the DMAR and LGTC policy nodes share.
    """

    def __init__(self) -> None:
        self.mode = ""  # the latest valid mode ("" none yet)
        self.seen_active = False
        self.down = False

    def update(self, mode: str) -> bool:
        """Take one message; False (and nothing changed) if ``mode`` is not of the contract."""
        if mode in MODES_ACTIVE:
            self.seen_active, self.down = True, False
        elif mode in MODES_STOPPED:
            self.down = self.seen_active
        else:
            return False
        self.mode = mode
        return True


def stamp_ok(
    stamp_s: float,
    now_s: float,
    timeout_s: float = CMD_TIMEOUT_S,
    skew_s: float = CMD_CLOCK_SKEW_S,
) -> bool:
    """The stamp half of the freshness rule: ``now - timeout <= stamp <= now + skew``.

    A zero (unset) or non-finite stamp is never fresh.
    """
    if stamp_s == 0.0 or not math.isfinite(stamp_s) or not math.isfinite(now_s):
        return False
    return now_s - timeout_s <= stamp_s <= now_s + skew_s


def command_fresh(
    stamp_s: float,
    rx_s: float,
    now_s: float,
    timeout_s: float = CMD_TIMEOUT_S,
    skew_s: float = CMD_CLOCK_SKEW_S,
) -> bool:
    """Freshness rule of the wire contract (module docstring, "Command freshness").

    Args:
        stamp_s: the command's ``header.stamp`` [s] on the consumer's clock.
        rx_s: when the consumer received it [s], same clock.
        now_s: the consumer's clock now [s].
        timeout_s: ``CMD_TIMEOUT_S`` unless the node is configured otherwise.
        skew_s: largest accepted future stamp [s].
    """
    return stamp_ok(stamp_s, now_s, timeout_s, skew_s) and now_s - rx_s <= timeout_s


def command_valid(vx: float, vy: float, vz: float, max_speed: float) -> bool:
    """True for a finite velocity [m/s] not faster than ``CMD_REJECT_FACTOR * max_speed``."""
    speed_sq = vx * vx + vy * vy + vz * vz
    limit = CMD_REJECT_FACTOR * max_speed
    # NaN != NaN; an infinite (or overflowing) speed is garbage whatever the limit
    return speed_sq == speed_sq and speed_sq != math.inf and speed_sq <= limit * limit


def robot_topic(robot: str, name: str) -> str:
    """Absolute name of a per-robot topic or service, e.g. ``/cf1/cmd_vel``."""
    if not robot or "/" in robot:
        raise ValueError(f"robot name {robot!r} must be a non-empty name without '/'")
    return f"/{robot}/{name}"
