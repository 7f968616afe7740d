"""Per-robot DMAR agent node (namespace ``/<robot>``): a thin adapter around
:class:`dmar_agent.agent.DmarAgent`.

Inputs (topics of :mod:`sim_bridge.topics`, "Routing missions"): ``/<robot>/view`` (the first
view of each world PS step is latched for all the rounds of that step: robots stand on their
cell centres then), ``/<robot>/comm/in`` (the relay's bundles; rows ``[sender_index, stamp_s,
payload...]``), ``/<robot>/pose``. Outputs: ``/<robot>/comm/out`` (the agent's messages),
``/<robot>/dmar/move`` (one report per PS step, WAIT included), ``/<robot>/cmd_vel_nominal``
at ``rate_hz`` (through the robot's CBF filter), ``/diagnostics`` (``dmar_agent: <robot>``)
and the ``dmar_cluster`` marker on ``/swarm/policy_markers``.

Rounds. Step ``t`` runs ``agent.rounds(t)`` message rounds. A round closes when every robot of
the step's view was heard for it (:meth:`DmarAgent.slot_of`) or ``round_timeout_s`` passed
since it opened (``rounds_timed_out``; the missing peers count in ``peers_missed``; a peer
missed ``silent_after`` rounds in a row is no longer waited for until it is heard again). The
agent then reads what arrived (a peer not heard reads as a blank memory: the protocol's
answer to late and lost messages, see :mod:`dmar_agent.agent`). TMAR planning runs in the
agent's worker thread (``background_plan``), polled by the ``rate_hz`` timer, so the leader's
rollout never stalls the velocity loop.

Moves. After the last round the node reports ``[t, control, row, col]`` on ``dmar/move``
(WAIT and its own cell outside EM movement steps) and tracks the target cell's centre with a
saturated P law (``kp`` [1/s], ``max_speed`` of the robot; zero within ``arrive_m``; drones
also hold their take-off height). Collision avoidance is Algorithm 2's one-round form
(:func:`dmar_agent.collision.must_yield`): a control towards an obstacle or off the grid
becomes WAIT (as in the core's world); with ``yield_occupied`` a control becomes WAIT when its
cell holds another robot of the view, or a robot of the view that goes first stands next to it
(precedence by index, rotated by the PS step); so no two robots head for one cell or swap cells
(this needs ``k >= 2`` to see every contender). Ground robots follow the same rule as drones
(their CBF certifies the axle with plain Ds, so a neighbour next to the target cell does not
hold them off it). A robot not arrived ``stuck_timeout_s`` after its
report re-reports WAIT back to the cell it came from (``backoffs``), and if it does not arrive
there either, WAIT on the nearest free cell of its view (``settles``); a robot that arrived
just waits for the world's next step.

Safety: commands are stamped now and sent only on a pose received within ``pose_timeout_s``
(else nothing, so the filter goes silent and the world holds then lands the robot).

A robot that is down leaves the protocol. It is down when its owner's ``/<robot>/mode``
(world or bridge, :mod:`sim_bridge.topics`) says it left service after having been in it
(``grounded``, ``landing``, ``failed`` or ``emergency`` after one of ``taking_off``,
``hovering``, ``flying``, ``holding``): the one signal that shows a disabled ground robot,
whose pose looks the same. A drone is also down by its altitude, for owners that publish no
mode: one that has been airborne (at or above half its take-off height) and is now below
that, or one that drops more than ``DROP_M`` below the highest point of its take-off (failed,
landed by an event, a watchdog or a service). A robot down sends no message and no
``dmar/move``, takes no view, and commands zero velocity (``down`` on ``/diagnostics``,
status WARN "robot down"), as an agent dropped from the core's run
(``run_distributed(drop=...)``): its peers stop waiting for it after ``silent_after`` rounds
and plan without it, so a downed leader or task holder leaves no task behind. Back in
service (a new take-off, a ground robot enabled again) it rejoins as an agent that missed
steps (explores until the next iteration).

Silent peers. A robot of the view missed ``silent_after`` rounds in a row (its node is dead, or
its robot is down) is out of the protocol and stands still: for the steps it stays silent, its
cell is an obstacle of the view the agent plans on (the leader's rollout routes around it) and
it contends for no cell in the yield rule. Otherwise a downed robot on the way to a task held
the robots behind it off for good: the plan went through its cell and the yield rule turned
every such move into WAIT (``silent_cells`` on ``/diagnostics``: cells so masked).

Parameters: ``robot``, ``config``, ``rate_hz`` (20), ``round_timeout_s`` (0.5),
``silent_after`` (3), ``pose_timeout_s`` (0.5), ``kp`` (4.0), ``arrive_m`` (0.01),
``yield_occupied`` (true), ``stuck_timeout_s`` (8.0), ``background_plan`` (true),
``markers_hz`` (2), ``diagnostics_period_s`` (1): the table :data:`PARAMETERS` (descriptions
and rules, read-only once declared). A bad value fails at start-up with one line naming the
parameter and the fix.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import replace

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from sim_bridge import topics
from sim_bridge.config import ConfigError as SwarmConfigError
from sim_bridge.config import load_config
from sim_bridge.ros import qos
from sim_bridge.ros.markers import cluster_markers
from sim_bridge.ros.params import Param, at_least, declare_and_read, not_empty, positive
from sim_bridge.ros.sim_time import loop_time, wall_clock
from sim_bridge.ros.spin import spin_node
from std_msgs.msg import Float64MultiArray, String
from visualization_msgs.msg import MarkerArray

from dmar_agent.agent import DmarAgent, RoundOutput
from dmar_agent.collision import must_yield
from dmar_agent.errors import ConfigError, DmarError
from dmar_agent.mission.scenario import core_instance
from dmar_agent.wire import KIND_DECIDE, KIND_STATE, WireError, decode_view
from dmar_agent.world import DC, DR, WAIT

_WINDOW = 2000  # samples kept for the p50 / p99 figures
#: a drone that has not yet been airborne is down once it drops this far below the highest
#: point of its take-off [m] (it failed while climbing)
DROP_M = 0.05
#: the node's counters in /diagnostics
COUNTERS = (
    "rounds",
    "rounds_timed_out",
    "peers_missed",
    "bad_views",
    "bad_payloads",
    "yields",
    "blocked_moves",
    "backoffs",
    "settles",
    "moves",
    "stale_pose_ticks",
    "downs",
    "silent_cells",
)


#: The node's parameters (``ros2 param describe`` shows each description and rule).
PARAMETERS = (
    Param(
        "robot",
        "",
        "this robot's name in the swarm config",
        not_empty("pass -p robot:=<name in the config>"),
    ),
    Param(
        "config",
        "",
        "swarm YAML file with a routing section",
        not_empty("pass -p config:=path/to/swarm.yaml"),
    ),
    Param("rate_hz", 20.0, "velocity loop rate [Hz]", positive("e.g. 20")),
    Param(
        "round_timeout_s",
        0.5,
        "a message round closes after this long without every peer [s]",
        positive("e.g. 0.5"),
    ),
    Param(
        "silent_after",
        3,
        "rounds a peer may miss in a row before it is no longer waited for",
        at_least(1, "e.g. 3"),
    ),
    Param("pose_timeout_s", 0.5, "no command on a pose older than this [s]", positive("e.g. 0.5")),
    Param("kp", 4.0, "P gain of the cell-centre tracking [1/s]", positive("e.g. 4")),
    Param(
        "arrive_m",
        0.01,
        "zero velocity within this distance of the target centre [m]",
        positive("e.g. 0.01"),
    ),
    Param(
        "yield_occupied",
        True,
        "wait instead of heading for a held or contested cell (collision.must_yield)",
    ),
    Param(
        "stuck_timeout_s",
        8.0,
        "report WAIT back to the own cell when not arrived after this long [s]",
        positive("e.g. 8"),
    ),
    Param(
        "background_plan",
        True,
        "TMAR's rollout in a worker thread (the velocity loop never stalls)",
    ),
    Param(
        "markers_hz",
        2.0,
        "cluster marker rate [Hz], 0 = off",
        at_least(0.0, "e.g. 2, or 0 for none"),
    ),
    Param("diagnostics_period_s", 1.0, "period of /diagnostics [s]", positive("e.g. 1")),
)


def _param_error(name: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"parameter {name}: {problem} (fix: {fix})")


class DmarNode(Node):
    """One robot's DMAR agent over the comm relay, the world's views and its CBF filter."""

    def __init__(self, node_name: str = "dmar", **kwargs):
        super().__init__(node_name, **kwargs)
        p = declare_and_read(self, PARAMETERS, _param_error)
        self.period = 1.0 / p["rate_hz"]
        self.round_timeout = p["round_timeout_s"]
        self.pose_timeout = p["pose_timeout_s"]
        self.kp, self.arrive_m = p["kp"], p["arrive_m"]
        self.stuck_timeout = p["stuck_timeout_s"]
        self.silent_after = int(p["silent_after"])
        self.yield_occupied = bool(p["yield_occupied"])
        dcfg = self._setup_robot(p["config"], p["robot"], bool(p["background_plan"]))
        self._reset_state()
        self._make_io(p["diagnostics_period_s"], p["markers_hz"])
        self.get_logger().info(
            f"{self.name_}: DMAR agent {self.index}, {self.shape[0]} x {self.shape[1]} cells, "
            f"k={dcfg.k}, psi={dcfg.psi}, {len(self.agent.schedule)} PS steps per iteration, "
            f"{1.0 / self.period:g} Hz"
        )

    def _setup_robot(self, config: str, robot: str, background_plan: bool):
        """This robot's place in the config and its :class:`DmarAgent`; returns the
        DmarConfig."""
        cfg = load_config(config)
        if cfg.routing is None:
            raise ConfigError(f"{config}: no routing section; the DMAR node needs one")
        if robot not in cfg.robot_names:
            raise ConfigError(f"parameter robot={robot!r} is not in {cfg.robot_names}")
        self.name_ = robot
        self.index = cfg.robot_index(robot)
        rob = cfg.robots[self.index]
        self.grid = cfg.routing.grid
        self.shape = (self.grid.rows, self.grid.cols)
        self.tolerance = float(cfg.routing.tolerance)
        self.max_speed = float(rob.max_speed)
        self.height = float(rob.takeoff_height) if rob.kind == "crazyflie" else None
        #: a drone counts as airborne at or above half its take-off height (lgtc_policy's rule)
        self.airborne_z = None if self.height is None else 0.5 * self.height
        self.n_robots = len(cfg.robots)
        _, dcfg = core_instance(cfg)
        self.agent = DmarAgent(self.index, dcfg, self.shape, background_plan)
        names = [getattr(fn, "__name__", "") for fn in self.agent.schedule]
        self._lma0 = names.index("lma_init_step")
        #: (iteration, cluster, parent) after every SOAC phase (-1: none), for reports
        self.clusters: list[tuple[int, int, int]] = []
        return dcfg

    def _reset_state(self) -> None:
        """The step machine (view of the step, open round, messages), motion and counters."""
        self.view = None
        self.next_view = None
        self.step = -1
        self.rnd: int | None = None
        self.round_t0 = 0.0
        self.pending = False
        self.control = WAIT
        self.inbox: list = []
        self.heard: dict[tuple[int, int], set] = {}
        self.misses: dict[int, int] = {}
        self.target: tuple[int, int] | None = None
        self.origin: tuple[int, int] | None = None
        self.move_t0 = 0.0
        self.backed_off = False
        self.pose: np.ndarray | None = None
        self.pose_rx = -math.inf
        self.down = False  # the robot is down: out of the protocol (module docs)
        self.flown = False  # has been airborne since the node started
        self.z_peak = -math.inf  # highest z seen while not yet airborne
        self.down_z = False  # down by its altitude (drones)
        self.mode = topics.ModeWatch()  # down by its owner's /<robot>/mode
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.compute_ms: deque = deque(maxlen=_WINDOW)
        self.periods: deque = deque(maxlen=_WINDOW)
        self.ticks = self.on_time = 0
        self._last_tick: float | None = None

    def _make_io(self, diagnostics_period: float, markers_hz: float) -> None:
        """Subscriptions, publishers and timers (QoS by name, :mod:`sim_bridge.ros.qos`)."""
        self.create_subscription(PoseStamped, topics.POSE, self._on_pose, qos.STATE)
        self.create_subscription(String, topics.MODE, self._on_mode, qos.LATCHED)
        self.create_subscription(Float64MultiArray, topics.VIEW, self._on_view, qos.BACKLOG)
        self.create_subscription(Float64MultiArray, topics.COMM_IN, self._on_comm, qos.BACKLOG)
        self.cmd_pub = self.create_publisher(TwistStamped, topics.CMD_VEL_NOMINAL, qos.STATE)
        self.comm_pub = self.create_publisher(Float64MultiArray, topics.COMM_OUT, qos.BACKLOG)
        self.move_pub = self.create_publisher(Float64MultiArray, topics.DMAR_MOVE, qos.QUEUE)
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, qos.DIAGNOSTICS)
        self.marker_pub = self.create_publisher(MarkerArray, topics.POLICY_MARKERS, qos.MARKERS)
        self.create_timer(self.period, self._tick)
        # status for people: on wall time always (sim_time.wall_clock), never in bursts
        wall = wall_clock(self)
        self.create_timer(diagnostics_period, self._publish_diagnostics, clock=wall)
        if markers_hz > 0:
            self.create_timer(1.0 / markers_hz, self._publish_markers, clock=wall)

    # ------------------------------------------------------------------ inputs

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_pose(self, msg: PoseStamped) -> None:
        q = msg.pose.position
        self.pose = np.array([q.x, q.y, q.z])
        self.pose_rx = self._now()
        self._update_down(float(q.z))

    def _update_down(self, z: float) -> None:
        """Whether the robot is down by its altitude ``z`` [m] (drones; module docs)."""
        if self.airborne_z is None or not math.isfinite(z):
            return
        if z >= self.airborne_z:
            self.down_z, self.flown, self.z_peak = False, True, -math.inf
        else:
            self.down_z = self.flown or self.z_peak - z > DROP_M
            if not self.flown:
                self.z_peak = max(self.z_peak, z)
        self._set_down(f"z {z:.2f} m below {self.airborne_z:.2f} m after flying")

    def _on_mode(self, msg: String) -> None:
        """Whether the robot is down by its owner's mode (every robot kind; module docs)."""
        if not self.mode.update(msg.data):
            self.counts["bad_payloads"] += 1  # not a mode of the contract: ignored
            return
        self._set_down(f"mode {msg.data}")

    def _set_down(self, why: str) -> None:
        down = self.down_z or self.mode.down
        if down and not self.down:
            self.counts["downs"] += 1
            self.get_logger().warning(
                f"{self.name_}: robot down ({why}): out of the DMAR protocol, no messages, "
                "no moves, zero velocity"
            )
        elif self.down and not down:
            self.get_logger().info(f"{self.name_}: back in service ({why}): rejoining the protocol")
        self.down = down

    def _on_view(self, msg: Float64MultiArray) -> None:
        if self.down:
            return  # out of the protocol (module docs)
        step = int(msg.layout.data_offset)
        if step <= max(self.step, -1 if self.next_view is None else self.next_view.ps_step):
            return  # the step's first view is the one used (robots on their centres then)
        if not msg.data:
            return  # own pose unknown to the world: no view
        try:
            rows = np.asarray(msg.data, dtype=np.float64).reshape(-1, len(topics.VIEW_FIELDS))
            view = decode_view(rows, self.shape, step, self.index)
        except (WireError, ValueError):
            self.counts["bad_views"] += 1
            return
        self.next_view = view
        self._timed(self._advance)

    def _on_comm(self, msg: Float64MultiArray) -> None:
        if self.down:
            return  # out of the protocol (module docs)
        data = np.asarray(msg.data, dtype=np.float64)
        dims = msg.layout.dim
        row_len = dims[1].size if len(dims) == 2 and dims[1].size > 0 else data.size
        if row_len <= topics.COMM_HEADER_LEN or data.size % row_len:
            self.counts["bad_payloads"] += 1
            return
        for row in data.reshape(-1, row_len):
            if int(row[0]) == self.index:
                continue
            payload = row[topics.COMM_HEADER_LEN :]
            slot = self.agent.slot_of(payload)
            if slot is None:
                self.counts["bad_payloads"] += 1
                continue
            step, rnd, sender = slot
            # a peer is heard for a round by its one STATE or DECIDE of it, sent last
            if step >= self.step and int(payload[2]) in (KIND_STATE, KIND_DECIDE):
                self.heard.setdefault((step, rnd), set()).add(sender)
            self.inbox.append(payload)
        self._timed(self._advance)

    # ------------------------------------------------------------------ rounds

    def _timed(self, fn) -> None:
        t0 = time.perf_counter()
        fn()
        self.compute_ms.append(1e3 * (time.perf_counter() - t0))

    def _advance(self) -> None:
        """Start the next step when idle; close every round that can close now."""
        if self.down:
            self._sit_out()
            return
        while True:
            if self.pending:
                out = self.agent.poll()
                if out is None:
                    return
                self.pending = False
                self._after_round(out)
                continue
            if self.rnd is None:
                if self.next_view is None:
                    return
                self.view, self.next_view = self._mask_silent(self.next_view), None
                self.step, self.rnd, self.round_t0 = self.view.ps_step, 0, self._now()
                self.control, self.backed_off = WAIT, False
                self.heard = {k: v for k, v in self.heard.items() if k[0] >= self.step}
                if self.step % len(self.agent.schedule) == self._lma0:
                    m = self.agent.mem
                    self.clusters.append(
                        (
                            self.step // len(self.agent.schedule),
                            -1 if m.cluster is None else m.cluster,
                            -1 if m.parent is None else m.parent,
                        )
                    )
            if not self._round_ready():
                return
            self.counts["rounds"] += 1
            out = self.agent.round(self.view, self.rnd, self.inbox)
            self.inbox = []
            if out.pending:
                self.pending = True
                continue
            self._after_round(out)

    def _silent(self) -> set[int]:
        """Peers missed ``silent_after`` rounds in a row (out of the protocol, standing still)."""
        return {a for a, m in self.misses.items() if m >= self.silent_after}

    def _mask_silent(self, view):
        """``view`` with the cells of silent peers as obstacles (module docs), unless a robot
        that is heard (or this one) stands there too."""
        silent = self._silent()
        held = {c for a, c in view.robots.items() if a in silent and a != self.index}
        held -= {c for a, c in view.robots.items() if a not in silent or a == self.index}
        if not held:
            return view
        self.counts["silent_cells"] += len(held)
        mask = np.isin(view.cells, sorted(held))
        return replace(view, obstacle=np.asarray(view.obstacle, dtype=bool) | mask)

    def _sit_out(self) -> None:
        """The robot is down: drop the open step, its views, messages and target; a round
        planning in the background is let finish and its output thrown away."""
        if self.pending and self.agent.poll() is not None:
            self.pending = False
        if not self.pending:
            self.rnd = None
        self.view = self.next_view = None
        self.inbox = []
        self.target = self.origin = None

    def _round_ready(self) -> bool:
        """Every robot in view heard for the open round, or its timeout passed."""
        if self.rnd == 0 and self.step % len(self.agent.schedule) == 0:
            return True  # step 0 of an iteration reads no peer
        heard = self.heard.get((self.step, self.rnd), set())
        need = {
            a
            for a in self.view.robots
            if a != self.index and self.misses.get(a, 0) < self.silent_after
        }
        missing = need - heard
        for a in heard:
            self.misses[a] = 0
        if not missing:
            return True
        if self._now() - self.round_t0 < self.round_timeout:
            return False
        self.counts["rounds_timed_out"] += 1
        self.counts["peers_missed"] += len(missing)
        for a in missing:
            self.misses[a] = self.misses.get(a, 0) + 1
        return True

    def _after_round(self, out: RoundOutput) -> None:
        # STATE goes last: a peer closes the round on hearing it, and the relay keeps one
        # sender's order, so the typed writes of the round have arrived by then
        for payload in sorted(out.messages, key=lambda m: int(m[2]) == KIND_STATE):
            data = [float(self.index), self._now(), *np.asarray(payload, dtype=float).tolist()]
            self.comm_pub.publish(Float64MultiArray(data=data))
        if self.rnd == 0 and out.control is not None:
            self.control = int(out.control)
        self.rnd += 1
        self.round_t0 = self._now()
        if self.rnd == self.agent.rounds(self.step):
            self.rnd = None
            self._report_move()

    def _report_move(self) -> None:
        """``dmar/move`` of the finished step: the EM control, or WAIT (see module docs)."""
        v = self.view
        r, c = divmod(v.cell, self.shape[1])
        u = self.control if self.agent.is_move_step(self.step) else WAIT
        tr, tc = r + DR[u], c + DC[u]
        if u != WAIT:
            tflat = tr * self.shape[1] + tc
            hit = np.flatnonzero(v.cells == tflat)
            if not (0 <= tr < self.shape[0] and 0 <= tc < self.shape[1]) or (
                hit.size and v.obstacle[hit[0]]
            ):
                self.counts["blocked_moves"] += 1
                u, tr, tc = WAIT, r, c
            elif self.yield_occupied and must_yield(
                self.index, (tr, tc), self._contenders(v), self.shape[1], self.step, self.n_robots
            ):
                self.counts["yields"] += 1
                u, tr, tc = WAIT, r, c
            else:
                self.counts["moves"] += 1
        self.origin, self.target, self.move_t0 = (r, c), (tr, tc), self._now()
        self._publish_move(u, tr, tc)

    def _contenders(self, view) -> dict[int, int]:
        """Robots of ``view`` for the yield rule: silent peers claim no cell (their cells are
        obstacles of the view, :meth:`_mask_silent`)."""
        silent = self._silent()
        return {a: c for a, c in view.robots.items() if a not in silent}

    def _publish_move(self, u: int, row: int, col: int) -> None:
        self.move_pub.publish(
            Float64MultiArray(data=[float(self.step), float(u), float(row), float(col)])
        )

    # ------------------------------------------------------------------ tick

    def _tick(self) -> None:
        t0 = time.perf_counter()
        at = loop_time(self, t0)  # periods on the timer's clock: sim time on sim time
        if self._last_tick is not None:
            dt = at - self._last_tick
            self.periods.append(dt)
            self.ticks += 1
            self.on_time += dt <= 1.5 * self.period
        self._last_tick = at
        self._advance()  # background plan done, round timeouts
        now = self._now()
        if (
            self.rnd is None
            and self.target is not None
            and now - self.move_t0 > self.stuck_timeout
            and not self._arrived()
        ):
            self._unstick(now)
        self._command(now)
        self.compute_ms.append(1e3 * (time.perf_counter() - t0))

    def _arrived(self) -> bool:
        """The robot stands within the world's arrival tolerance of its target's centre."""
        if self.pose is None or self.target is None:
            return False
        d = self.grid.centre(self.target) - self.pose[:2]
        return float(np.hypot(*d)) <= self.tolerance

    def _unstick(self, now: float) -> None:
        """Not arrived ``stuck_timeout_s`` after the last report (held short by the CBF, e.g.
        by a robot its view did not show): first go back to the cell it came from
        (``backoffs``); if that does not arrive either, settle on the nearest free cell of its
        view around where it stands (``settles``), so the world's lockstep never waits for a
        cell the robot cannot reach. Each is reported as WAIT on ``dmar/move``."""
        if not self.backed_off and self.target != self.origin:
            self.backed_off = True
            self.counts["backoffs"] += 1
            cell = self.origin
        else:
            cell = self._nearest_free_cell()
            if cell is None or cell == self.target:
                self.move_t0 = now  # nothing better in view: try again later
                return
            self.counts["settles"] += 1
        self.target, self.move_t0 = cell, now
        self._publish_move(WAIT, *cell)

    def _nearest_free_cell(self) -> tuple[int, int] | None:
        """The free, unoccupied cell of the view nearest to the robot, among the cell it
        stands in and the 8 around it (None without a pose or such a cell)."""
        if self.pose is None or self.view is None:
            return None
        rows, cols = self.shape
        r0, c0 = (int(x) for x in self.grid.cell_of(self.pose[None, :2])[0])
        free = {int(c) for c, blocked in zip(self.view.cells, self.view.obstacle) if not blocked}
        taken = {cell for a, cell in self.view.robots.items() if a != self.index}
        best, best_d = None, math.inf
        for r in range(r0 - 1, r0 + 2):
            for c in range(c0 - 1, c0 + 2):
                flat = r * cols + c
                if not (0 <= r < rows and 0 <= c < cols) or flat not in free or flat in taken:
                    continue
                d = float(np.hypot(*(self.grid.centre((r, c)) - self.pose[:2])))
                if d < best_d:
                    best, best_d = (r, c), d
        return best

    def _command(self, now: float) -> None:
        if self.pose is None:
            return
        if now - self.pose_rx > self.pose_timeout:
            self.counts["stale_pose_ticks"] += 1
            return  # no ground to command on: silence, the world holds then lands
        v = np.zeros(3)
        if self.down:
            self._publish_cmd(v)  # hold still: the world lands it, or it is on the ground
            return
        if self.target is not None:
            err = self.grid.centre(self.target) - self.pose[:2]
            dist = float(np.hypot(*err))
            if dist > self.arrive_m:
                v[:2] = self.kp * err
        if self.height is not None:
            v[2] = self.kp * (self.height - self.pose[2])
        speed = float(np.linalg.norm(v))
        if speed > self.max_speed:
            v *= self.max_speed / speed
        self._publish_cmd(v)

    def _publish_cmd(self, v: np.ndarray) -> None:
        cmd = TwistStamped()
        cmd.header.stamp = self.get_clock().now().to_msg()
        cmd.header.frame_id = topics.WORLD_FRAME
        cmd.twist.linear.x, cmd.twist.linear.y, cmd.twist.linear.z = (float(x) for x in v)
        self.cmd_pub.publish(cmd)

    # ------------------------------------------------------------------ outputs

    def diagnostics(self) -> dict[str, str]:
        """The values of this node's ``/diagnostics`` status (also read by tests)."""
        mem = self.agent.mem
        comp = np.asarray(self.compute_ms) if self.compute_ms else np.full(1, np.nan)
        fn = self.agent.phase(max(self.step, 0))
        values = {
            "phase": getattr(fn, "__name__", str(fn)),
            "ps_step": str(self.step),
            "round": "idle" if self.rnd is None else str(self.rnd),
            "cluster": str(-1 if mem.cluster is None else mem.cluster),
            "leader": str(mem.cluster is not None and mem.parent is None).lower(),
            "explore": str(bool(mem.explore)).lower(),
            "down": str(self.down).lower(),
            "mode": self.mode.mode or "none",
            "compute_p50_ms": f"{np.percentile(comp, 50):.3f}",
            "compute_p99_ms": f"{np.percentile(comp, 99):.3f}",
            "ticks": str(self.ticks),
            "ticks_on_time": str(self.on_time),
            "on_time_pct": f"{100.0 * self.on_time / max(self.ticks, 1):.2f}",
            **{k: str(v) for k, v in self.counts.items()},
            **{f"agent_{k}": str(v) for k, v in self.agent.counters.items()},
        }
        return values

    def _publish_diagnostics(self) -> None:
        values = self.diagnostics()
        stale = self.pose is not None and self._now() - self.pose_rx > self.pose_timeout
        if stale:
            level, text = DiagnosticStatus.ERROR, "no fresh pose: not commanding"
        elif self.down:
            level = DiagnosticStatus.WARN
            text = (
                "robot down (landed, disabled or failed): out of the DMAR protocol, zero velocity"
            )
        else:
            level, text = DiagnosticStatus.OK, "running"
        status = DiagnosticStatus(
            level=level,
            name=f"dmar_agent: {self.name_}",
            message=text,
            hardware_id=self.name_,
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def _publish_markers(self) -> None:
        if self.pose is None or self.marker_pub.get_subscription_count() == 0:
            return
        mem = self.agent.mem
        self.marker_pub.publish(
            cluster_markers(
                positions=self.pose[None, :],
                cluster_ids=np.array([-1 if mem.cluster is None else mem.cluster]),
                robot_ids=np.array([self.index]),
                stamp=self.get_clock().now().to_msg(),
            )
        )

    def destroy_node(self) -> None:
        self.agent.close()
        super().destroy_node()


def main(args=None) -> None:
    """``dmar_node --ros-args -r __ns:=/cf1 -p robot:=cf1 -p config:=swarm.yaml``.

    A bad config or parameter prints one line ``dmar_node: <problem>`` and exits with 2.
    """
    spin_node(DmarNode, "dmar_node", args, errors=(DmarError, SwarmConfigError))


if __name__ == "__main__":
    main()
