"""ROS 2 node: every ``backend: cflib`` robot of the swarm config on its own radio link.

One :class:`~sim_bridge.bridges.crazyflie_link.CrazyflieLink` (own thread) per robot; a
robot whose link fails never holds up the others. Per robot ``/<robot>/``:

* ``link_state`` (std_msgs/String, transient local): ``connecting`` | ``up`` | ``lost``,
  published from the start; ``mode`` (transient local): the link's flight state
  (:class:`~sim_bridge.bridges.crazyflie_link.FlightState`), on every change;
* once the link is **up for the first time** (and never before, so nothing can call a
  drone that is not there): ``cmd_vel`` (geometry_msgs/TwistStamped, world frame,
  subscribed), ``pose`` (PoseStamped from the onboard state estimate, or from the robot's
  ``mocap_topic``, which is also forwarded to the drone as external pose), ``resources``
  (Float64MultiArray; the battery resource = configured amount x state of charge between
  ``critical_v`` and ``battery_full_v``), and the ``takeoff`` / ``land`` /
  ``emergency_stop`` services (std_srvs/Trigger). After a later link loss they stay
  advertised and answer from the link's state (takeoff refuses while not up);
* ``neighbors`` (PoseArray): robots within the sensing radius (:mod:`~sim_bridge.ros.bridge_node`);

and ``/diagnostics`` (1 Hz, one status per robot: link, flight, battery, protocol, and the
command counts ``rejected_commands`` = ``rejected_non_finite`` + ``rejected_too_fast`` +
``rejected_stale`` + ``rejected_future`` + ``rejected_unstamped``, ``clipped_commands``,
``stale_log_packets``).

``cmd_vel`` follows the freshness rule of :mod:`sim_bridge.topics` ("Command freshness"): a
stamp outside ``[now - hold_after_s, now + CMD_CLOCK_SKEW_S]`` on this node's clock, or an
unset one, is rejected on receipt and counted, never executed; the link then rejects
non-finite and too fast commands and clips the rest to ``max_speed``.

Parameters: ``config`` (swarm YAML), ``robot`` / ``robots`` (restrict to these names,
comma-separated), ``rate_hz``, ``max_rate_hz``, ``hold_after_s``, ``land_after_s``,
``link_timeout_s``, ``reconnect_after_s``, ``connect_timeout_s``, ``answer_timeout_s``,
``retry_backoff_s``, ``retry_backoff_max_s``, ``ground_z_m``, ``estimate_wait_s`` (see
:class:`~sim_bridge.bridges.crazyflie_link.LinkParams`), ``log_period_ms``,
``battery_full_v``, ``battery_recharged_v`` (a first reading at least this after a
re-connection clears a latched low battery), ``battery_resource`` (resource type fed by the
battery; default ``battery`` if the config has it, else ``energy``), ``geofence_margin``,
``toc_cache_dir``, ``resources_hz``. Units: ROS side rad/s, wire deg/s (converted in the link).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections import Counter

from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseStamped, TwistStamped
from std_srvs.srv import Trigger

from sim_bridge.bridges.crazyflie_link import (
    BatteryLevel,
    BatteryThresholds,
    CrazyflieLink,
    Estimate,
    LinkParams,
    LinkState,
    RobotLink,
    stop_links,
)
from sim_bridge.config import ConfigError, RobotConfig
from sim_bridge.ros import qos
from sim_bridge.ros.bridge_node import (
    BridgeNodeBase,
    BridgeSetupError,
    bridge_error,
    quaternion_to_yaw,
)
from sim_bridge.ros.params import (
    Param,
    Rule,
    at_least,
    between,
    declare_and_read,
    finite_positive,
    timer_rate,
)
from sim_bridge.ros.spin import spin_node
from sim_bridge.topics import CMD_TIMEOUT_S, CMD_VEL, EMERGENCY_STOP, LAND, TAKEOFF, robot_topic

DEFAULT_TOC_CACHE = os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "swarm", "cflib_toc"
)
EXTPOSE_MIN_INTERVAL_S = 0.01
#: Rejected ``cmd_vel`` messages are reported at most this often per robot [s].
REJECT_WARNING_INTERVAL_S = 1.0


class _CflibToRos(logging.Handler):
    """Route cflib's Python logging (tracebacks included) to the node's debug log; the
    link reports the same failures once, as one line, through its events."""

    def __init__(self, ros_logger) -> None:
        super().__init__(logging.DEBUG)
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        self._ros_logger.debug(f"cflib: {record.getMessage()}")


def _route_cflib_log(ros_logger) -> None:
    """Send cflib's Python logging to ``ros_logger`` (one bridge per process owns it)."""
    cflib_logger = logging.getLogger("cflib")
    for handler in [h for h in cflib_logger.handlers if isinstance(h, _CflibToRos)]:
        cflib_logger.removeHandler(handler)
    cflib_logger.addHandler(_CflibToRos(ros_logger))
    cflib_logger.propagate = False


_DEFAULTS = LinkParams()


def _time(default: float) -> Rule:
    return finite_positive(f"a duration such as {float(default)!r}", "s")


#: :class:`LinkParams` fields that are node parameters: (meaning, rule). The rules check each
#: value alone (NaN and infinities included); :class:`LinkParams` checks how they relate.
_LINK_FIELDS = {
    "rate_hz": (
        "fixed setpoint streaming rate [Hz] (>= 20)",
        timer_rate("e.g. 20.0 (the firmware expects a steady stream)", low=20.0),
    ),
    "max_rate_hz": (
        "new commands go out at once, but at most this often [Hz]",
        timer_rate("a rate >= rate_hz such as 100.0"),
    ),
    "hold_after_s": ("command age after which zero velocity is streamed [s]", _time(0.3)),
    "land_after_s": ("command age after which the drone lands [s]", _time(2.0)),
    "link_timeout_s": ("no packet from the drone for this long: link lost [s]", _time(1.0)),
    "reconnect_after_s": ("silence after which the connection is re-opened [s]", _time(3.0)),
    "connect_timeout_s": (
        "limit of one connection attempt while the drone answers [s]",
        _time(15.0),
    ),
    "answer_timeout_s": ("an attempt that hears no answer this long is retried [s]", _time(1.0)),
    "retry_backoff_s": (
        "first delay between attempts, doubled up to retry_backoff_max_s [s]",
        _time(0.5),
    ),
    "retry_backoff_max_s": ("longest delay between connection attempts [s]", _time(1.0)),
    "ground_z_m": (
        "an estimate at or below this altitude means on the ground [m]",
        at_least(0.0, "e.g. 0.1", "m"),
    ),
    "estimate_wait_s": ("wait for a fresh estimate after a link loss in the air [s]", _time(0.5)),
    "geofence_margin": (
        "land when the estimate leaves the arena by more than this [m]",
        at_least(0.0, "e.g. 0.3", "m"),
    ),
    "log_period_ms": (
        "state estimate / battery log period [ms] (10..2540)",
        between(10, 2540, "e.g. 50 (the firmware's log periods are 10 ms steps up to 2540)"),
    ),
}
#: Node parameters of the Crazyflie bridge (cross-field checks: :class:`LinkParams`).
PARAMETERS = (
    *(
        Param(name, getattr(_DEFAULTS, name), text, rule)
        for name, (text, rule) in _LINK_FIELDS.items()
    ),
    Param(
        "battery_full_v",
        4.2,
        "battery voltage of a full charge [V]",
        finite_positive("e.g. 4.2 (a 1S LiPo)", "V"),
    ),
    Param(
        "battery_recharged_v",
        3.9,
        "a first reading at least this after a re-connection clears a latched low battery [V]",
        finite_positive("e.g. 3.9 (a rested, depleted 1S LiPo reads 3.6-3.8 V)", "V"),
    ),
    Param("battery_resource", "", "resource fed by the battery ('': battery, else energy)"),
    Param("toc_cache_dir", DEFAULT_TOC_CACHE, "cflib TOC cache directory ('': no cache)"),
    Param("resources_hz", 5.0, "rate of /<robot>/resources [Hz]", timer_rate("e.g. 5.0")),
)


class CrazyflieBridgeNode(BridgeNodeBase):
    """Radio bridge for all cflib robots of the config (see the module docstring)."""

    def __init__(self, node_name: str = "crazyflie_bridge", **kwargs) -> None:
        super().__init__(node_name, "cflib", **kwargs)
        _route_cflib_log(self.get_logger())
        values = declare_and_read(self, PARAMETERS, bridge_error)
        try:
            self.params = LinkParams(
                **{name: values[name] for name in _LINK_FIELDS},
                toc_cache_dir=values["toc_cache_dir"] or None,
            )
        except ValueError as exc:
            raise BridgeSetupError(str(exc)) from exc
        if self.params.hold_after_s != CMD_TIMEOUT_S:
            self.get_logger().info(f"hold_after_s={self.params.hold_after_s} (contract 0.3 s)")
        self.battery_resource = values["battery_resource"] or next(
            (k for k in ("battery", "energy") if k in self.config.resource_types), ""
        )
        self.links: dict[str, CrazyflieLink] = {}
        self._advertised: set[str] = set()
        self._last_extpose: dict[str, float] = {}
        self._last_reject_warning: dict[str, float] = {}
        #: Commands rejected on receipt by their stamp, per robot (reason -> count).
        self.stamp_rejects: dict[str, Counter] = {r.name: Counter() for r in self.robots}
        for robot in self.robots:
            self.links[robot.name] = self._make_link(
                robot, values["battery_full_v"], values["battery_recharged_v"]
            )
            self.publish_link_state(robot.name, LinkState.CONNECTING.value)
        for link in self.links.values():
            link.start()
        self.create_timer(0.05, self._poll_links)
        self.create_timer(1.0 / values["resources_hz"], self._publish_all_resources)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f"serving {len(self.links)} Crazyflie(s): "
            + ", ".join(f"{r.name}={r.uri}" for r in self.robots)
        )

    def _make_link(self, robot: RobotConfig, full_v: float, recharged_v: float) -> CrazyflieLink:
        """The radio link of one robot (not started), with its battery thresholds."""
        battery = None
        if robot.battery is not None:
            try:
                battery = BatteryThresholds(
                    robot.battery.warning_v, robot.battery.critical_v, full_v, recharged_v
                )
            except ValueError as exc:
                raise BridgeSetupError(f"robot {robot.name}: {exc}") from exc
        arena = self.config.arena
        return CrazyflieLink(
            RobotLink(
                name=robot.name,
                uri=robot.uri,
                takeoff_height=robot.takeoff_height,
                max_speed=robot.max_speed,
                max_yaw_rate=robot.max_yaw_rate,
                battery=battery,
                arena=(arena.x, arena.y, arena.z),
            ),
            self.params,
            on_estimate=lambda est, r=robot: self._on_estimate(r, est),
            on_event=lambda kind, msg, name=robot.name: self._on_event(name, kind, msg),
        )

    # ------------------------------------------------------------------ callbacks
    def _on_event(self, name: str, kind: str, message: str) -> None:
        log = self.get_logger()
        automatic_land = message.startswith("landing (") and "land requested" not in message
        if kind in ("battery", "refused") or message.startswith("link lost") or automatic_land:
            log.warning(f"{name}: {message}")
        else:
            log.info(f"{name}: {message}")

    def _on_estimate(self, robot: RobotConfig, est: Estimate) -> None:
        if robot.mocap_topic is None:
            self.publish_pose(robot.name, est.x, est.y, est.z, est.yaw)

    def _on_mocap(self, robot: RobotConfig, msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        values = (p.x, p.y, p.z, o.x, o.y, o.z, o.w)
        if not all(math.isfinite(v) for v in values):
            return
        self.publish_pose(robot.name, p.x, p.y, p.z, quaternion_to_yaw(o.x, o.y, o.z, o.w))
        now = time.monotonic()
        if now - self._last_extpose.get(robot.name, -math.inf) >= EXTPOSE_MIN_INTERVAL_S:
            self._last_extpose[robot.name] = now
            self.links[robot.name].send_external_pose(values)

    def _on_cmd(self, name: str, msg: TwistStamped) -> None:
        """The freshness check and a store in the link (which wakes its thread); no more."""
        link = self.links[name]
        verdict, age = self.command_stamp_verdict(msg.header.stamp, link.params.hold_after_s)
        if verdict is not None:
            self.stamp_rejects[name][verdict] += 1
            self._warn_rejected(
                name,
                f"{name}: cmd_vel {verdict.removeprefix('rejected_')} (stamp age {age:.3f} s): "
                "rejected, never sent to the drone",
            )
            return
        lin, ang = msg.twist.linear, msg.twist.angular
        if not link.set_command(lin.x, lin.y, lin.z, ang.z, stamp=time.monotonic() - age):
            self._warn_rejected(
                name, f"{name}: non-finite or too fast cmd_vel rejected (never sent to the drone)"
            )

    def _warn_rejected(self, name: str, message: str) -> None:
        """At most one warning a second per robot, throttled before the logger is called:
        rclpy's own ``throttle_duration_sec`` looks up the caller's source file first (about
        3 ms a call here), which a burst of rejected commands must not pay per message."""
        now = time.monotonic()
        if now - self._last_reject_warning.get(name, -math.inf) >= REJECT_WARNING_INTERVAL_S:
            self._last_reject_warning[name] = now
            self.get_logger().warning(message)

    def _service(self, name: str, action: str):
        link = self.links[name]
        call = {TAKEOFF: link.takeoff, LAND: link.land, EMERGENCY_STOP: link.emergency_stop}[action]

        def handle(_request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            response.success, response.message = call()
            return response

        return handle

    # ------------------------------------------------------------------ timers
    def _poll_links(self) -> None:
        for robot in self.robots:
            link = self.links[robot.name]
            state = link.link_state  # no full status snapshot at 20 Hz x N
            self.publish_link_state(robot.name, state.value)
            self.publish_mode(robot.name, link.flight_state.value)
            if state == LinkState.UP and robot.name not in self._advertised:
                self._advertise(robot)

    def _advertise(self, robot: RobotConfig) -> None:
        name = robot.name
        self._advertised.add(name)
        self.advertise_telemetry(name)
        self.create_subscription(
            TwistStamped,
            robot_topic(name, CMD_VEL),
            functools.partial(self._on_cmd, name),
            qos.QUEUE,
        )
        if robot.mocap_topic is not None:
            self.create_subscription(
                PoseStamped, robot.mocap_topic, lambda m: self._on_mocap(robot, m), qos.QUEUE
            )
        for action in (TAKEOFF, LAND, EMERGENCY_STOP):
            self.create_service(Trigger, robot_topic(name, action), self._service(name, action))
        self.get_logger().info(f"{name}: link up, services and topics advertised")

    def _publish_all_resources(self) -> None:
        for robot in self.robots:
            if robot.name not in self._advertised:
                continue
            soc = self.links[robot.name].status().state_of_charge
            overrides = {}
            if soc is not None and self.battery_resource:
                spec = robot.resources.get(self.battery_resource)
                overrides[self.battery_resource] = (spec.amount if spec else 1.0) * soc
            self.publish_resources(robot, overrides)

    def _publish_diagnostics(self) -> None:
        entries = []
        for robot in self.robots:
            st = self.links[robot.name].status()
            level = DiagnosticStatus.OK
            if st.battery_level == BatteryLevel.WARNING or st.link == LinkState.CONNECTING:
                level = DiagnosticStatus.WARN
            if st.battery_level == BatteryLevel.CRITICAL or st.link == LinkState.LOST:
                level = DiagnosticStatus.ERROR
            values = {
                "uri": robot.uri,
                "link": st.link.value,
                "flight": st.flight.value,
                "protocol_version": st.protocol_version,
                "battery_v": "" if st.battery_v is None else f"{st.battery_v:.3f}",
                "battery_level": st.battery_level.value,
                "setpoints_sent": st.setpoints_sent,
                "connects": st.connects,
                **self._command_counts(robot.name, st),
                "stale_log_packets": st.stale_log_packets,
            }
            entries.append((robot.name, level, st.last_event or st.link.value, values))
        self.publish_diagnostics(entries)

    def _command_counts(self, name: str, st) -> dict[str, int]:
        """Rejected and clipped commands of one robot: at receipt (stamp) and in the link."""
        c, stamp = st.commands, self.stamp_rejects[name]
        counts = {
            "rejected_non_finite": c.rejected_non_finite,
            "rejected_too_fast": c.rejected_too_fast,
            "rejected_stale": c.rejected_stale + stamp["rejected_stale"],
            "rejected_future": c.rejected_future + stamp["rejected_future"],
            "rejected_unstamped": stamp["rejected_unstamped"],
        }
        return {"rejected_commands": sum(counts.values()), **counts, "clipped_commands": c.clipped}

    def destroy_node(self) -> None:
        stop_links(list(self.links.values()))
        super().destroy_node()


def main(args=None) -> None:
    """``crazyflie_bridge --ros-args -p config:=swarm.yaml``; exit status 2 on a setup error."""
    spin_node(CrazyflieBridgeNode, "crazyflie_bridge", args, errors=(BridgeSetupError, ConfigError))


if __name__ == "__main__":
    main()
