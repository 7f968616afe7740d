"""Crazyflie radio bridge over the loopback fake: setpoint rate per link, cmd-to-wire delay.

For N in (1, 10, 30) Crazyflies: start N loopback fakes (sim_bridge.fake_crazyflie), take
all off, then feed every robot a new command at ``--cmd-hz`` for ``--seconds``. Each
command carries a unique vx, so its first datagram on the wire is found in the fake's
record (real cflib over udp://127.0.0.1; both ends use time.monotonic()). Two paths, side
by side for each N:

* ``node`` (the headline keys): the running ``CrazyflieBridgeNode`` (``--executor``: rclpy's
  EventsExecutor, default, or the MultiThreadedExecutor); a ``TwistStamped`` is published on
  ``/<robot>/cmd_vel`` over DDS; delay = publish call -> datagram on the wire;
* ``core`` (keys ``core_*``): ``CrazyflieLink.set_command`` -> wire, no ROS.

The fakes start on the config's 0.5 m grid (:func:`start_position`), so the bridge's
neighbour lists are those of a spread swarm. Fakes, cflib and the bridge share one Python
process: on a shared machine the p99 follows the load (printed, and in the JSON), so compare
node and core of one run.

Radio outages (:func:`outage_recovery`, also imported by ``benchmarks/faults.py``): one
drone flying on streamed setpoints loses its radio for 1.6 s (short: the same connection
comes back) and for 5 s (long: the connection is re-opened); measured from the fake
answering again until the link is ``up`` and the pending action (the land sent again, or
only a stop for a drone the firmware already put on the floor) reached the fake.

``--figure PNG`` also draws one drone's watchdog timeline on the fake (commands for 2 s,
then none: stream, hold at zero velocity, high-level land).

Prints a table; ``--json FILE`` writes flat keys, among them ``setpoint_hz_per_link_n10``
(median over links), ``cmd_to_wire_p99_ms_n10`` (node) next to ``core_cmd_to_wire_p99_ms_n10``
and their ratio ``cmd_to_wire_p99_node_over_core_n10``, the 1-minute load average at the
start and end (``load1_start``, ``load1_end``: on a shared machine the p99 follows the load,
compare node and core of one run), ``radio_recover_s_short``,
``radio_recover_s_long`` and ``motors_armed_on_ground`` (both outages together; goal 0).
``--quick`` keeps it under a minute; ``--outage-only`` runs only the outages (~30 s).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import struct
import sys
import tempfile
import threading
import time

import numpy as np
from sim_bridge.bridges.crazyflie_link import (
    CrazyflieLink,
    FlightState,
    LinkParams,
    LinkState,
    RobotLink,
    stop_links,
)
from sim_bridge.fake_crazyflie import ON_GROUND_Z, FakeCrazyflie, decode_velocity_setpoint


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def wait_all(pred, items, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(pred(i) for i in items):
            return True
        time.sleep(0.01)
    return False


def delays_and_rates(fakes, sent, t0: float, t1: float) -> tuple[list[float], list[float]]:
    """Per-command delays [s] and per-link setpoint rates [Hz] in the window [t0, t1]."""
    delays, rates = [], []
    for fake, commands in zip(fakes, sent):
        sps = [sp for sp in (decode_velocity_setpoint(r) for r in fake.records()) if sp is not None]
        rates.append(sum(1 for sp in sps if t0 <= sp.t <= t1) / (t1 - t0))
        first_seen: dict[float, float] = {}
        for sp in sps:  # commands sent just before t1 reach the wire just after it
            if sp.t >= t0:
                first_seen.setdefault(sp.vx, sp.t)
        for value, t_cmd in commands:
            t_wire = first_seen.get(value)
            if t_wire is not None and t_wire >= t_cmd:
                delays.append(t_wire - t_cmd)
    return delays, rates


def take_off_all(links: list[CrazyflieLink], timeout_s: float = 20.0) -> None:
    """Take every link off and wait until all hover; says which did not and why."""
    refused = [f"{lk.robot.name}: {msg}" for lk in links for ok, msg in [lk.takeoff()] if not ok]
    if refused:
        raise RuntimeError("takeoff refused: " + "; ".join(refused))
    if not wait_all(lambda lk: lk.status().flight == FlightState.HOVERING, links, timeout_s):
        late = [
            f"{st.name} {st.flight.value} ({st.last_event})"
            for st in (lk.status() for lk in links)
            if st.flight != FlightState.HOVERING
        ]
        raise RuntimeError(f"takeoff did not finish within {timeout_s:.0f} s: " + "; ".join(late))


def feed(send, n: int, cmd_hz: float, seconds: float) -> list[list[tuple[float, float]]]:
    """Call ``send(i, vx)`` for every link at ``cmd_hz``; returns (vx float32, t) per link."""
    sent: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    period = 1.0 / cmd_hz
    seq = 0
    next_t = time.monotonic()
    end = next_t + seconds
    while next_t < end:
        time.sleep(max(0.0, next_t - time.monotonic()))
        for i in range(n):
            vx = f32(0.05 + 1e-4 * (seq % 1000))
            sent[i].append((vx, time.monotonic()))
            send(i, vx)
        seq += 1
        next_t += period
    return sent


def start_position(i: int) -> tuple[float, float, float]:
    """Where fake ``i`` starts [m]: a grid 0.5 m apart, as in the node path's config (each
    drone has a few neighbours within the default 1 m sensing radius, not all N at one point)."""
    return (-20.0 + 0.5 * (i % 80), -20.0 + 0.5 * (i // 80), 0.0)


def run_core(n: int, seconds: float, cmd_hz: float, rate_hz: float, cache: str) -> dict:
    fakes = [FakeCrazyflie(position=start_position(i)) for i in range(n)]
    params = LinkParams(rate_hz=rate_hz, land_after_s=5.0, toc_cache_dir=cache)
    links = [CrazyflieLink(RobotLink(f"cf{i}", f.uri), params) for i, f in enumerate(fakes)]
    t_start = time.monotonic()
    for link in links:
        link.start()
    try:
        if not wait_all(lambda lk: lk.status().link == LinkState.UP, links, 60.0):
            raise RuntimeError("not every fake link came up")
        t_up = time.monotonic() - t_start
        take_off_all(links)
        t0 = time.monotonic() + 0.3  # skip the first commands (hovering -> flying)
        sent = feed(lambda i, vx: links[i].set_command(vx, 0.0, 0.0, 0.0), n, cmd_hz, seconds)
        t1 = time.monotonic()
        time.sleep(0.1)
        sent = [[(v, t) for v, t in s if t >= t0] for s in sent]
        delays, rates = delays_and_rates(fakes, sent, t0, t1)
    finally:
        stop_links(links, land_timeout_s=0.1)
        for f in fakes:
            f.close()
    return summarise(n, delays, rates, t_up, sum(len(s) for s in sent))


def write_config(fakes: list[FakeCrazyflie], starts: list[tuple[float, float, float]]) -> str:
    """A swarm config with one cflib robot per fake at its start position; returns its path."""
    import yaml

    robots = [
        {
            "name": f"cf{i}",
            "kind": "crazyflie",
            "backend": "cflib",
            "uri": f.uri,
            "pose": [*p[:2], 0.0, 0.0],
        }
        for i, (f, p) in enumerate(zip(fakes, starts))
    ]
    config = {
        "fileversion": 1,
        "arena": {"x": [-50.0, 50.0], "y": [-50.0, 50.0], "z": [0.0, 2.0]},
        "comm_radius": 2.0,
        "robots": robots,
        "consumers": [],
    }
    path = os.path.join(tempfile.mkdtemp(prefix="radio_bench_"), "swarm.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(config, fh)
    return path


def make_executor(kind: str, context):
    """rclpy's EventsExecutor (``events``) or MultiThreadedExecutor (``multi``)."""
    if kind == "events":
        from rclpy.experimental.events_executor import EventsExecutor

        return EventsExecutor(context=context)
    from rclpy.executors import MultiThreadedExecutor

    return MultiThreadedExecutor(context=context)


def run_ros(
    n: int, seconds: float, cmd_hz: float, rate_hz: float, cache: str, executor_kind: str
) -> dict:
    import rclpy
    from geometry_msgs.msg import TwistStamped
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sim_bridge.ros.crazyflie_node import CrazyflieBridgeNode

    starts = [start_position(i) for i in range(n)]
    fakes = [FakeCrazyflie(position=p) for p in starts]
    path = write_config(fakes, starts)
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = make_executor(executor_kind, context)
    client = Node("radio_bench_client", context=context)
    bridge = CrazyflieBridgeNode(
        "crazyflie_bridge",
        context=context,
        parameter_overrides=[
            Parameter("config", value=path),
            Parameter("toc_cache_dir", value=cache),
            Parameter("rate_hz", value=rate_hz),
            Parameter("land_after_s", value=5.0),
        ],
    )
    t_start = time.monotonic()
    executor.add_node(client)
    executor.add_node(bridge)
    stop = threading.Event()

    def spin() -> None:  # spin_once loop, as the bringup's composed runner does
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    pubs = [client.create_publisher(TwistStamped, f"/cf{i}/cmd_vel", 10) for i in range(n)]
    links = list(bridge.links.values())
    try:
        if not wait_all(lambda lk: lk.status().link == LinkState.UP, links, 60.0):
            raise RuntimeError("not every fake link came up")
        t_up = time.monotonic() - t_start
        deadline = time.monotonic() + 10.0
        while any(p.get_subscription_count() == 0 for p in pubs):
            if time.monotonic() > deadline:
                raise RuntimeError("bridge did not subscribe to every cmd_vel")
            time.sleep(0.05)
        take_off_all(links)

        def send(i: int, vx: float) -> None:
            msg = TwistStamped()
            msg.header.stamp = client.get_clock().now().to_msg()
            msg.twist.linear.x = vx
            pubs[i].publish(msg)

        t0 = time.monotonic() + 0.3
        sent = feed(send, n, cmd_hz, seconds)
        t1 = time.monotonic()
        time.sleep(0.1)
        sent = [[(v, t) for v, t in s if t >= t0] for s in sent]
        delays, rates = delays_and_rates(fakes, sent, t0, t1)
    finally:
        stop.set()
        spinner.join(timeout=5.0)
        bridge.destroy_node()
        client.destroy_node()
        executor.shutdown()
        rclpy.shutdown(context=context)
        for f in fakes:
            f.close()
    return summarise(n, delays, rates, t_up, sum(len(s) for s in sent))


def watchdog_figure(path: str, cache: str) -> None:
    """Timeline of the host watchdog on one fake: wire setpoints and the modelled height."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fake = FakeCrazyflie()
    link = CrazyflieLink(
        RobotLink("cf1", fake.uri, takeoff_height=0.5),
        LinkParams(land_after_s=2.0, toc_cache_dir=cache),
    )
    heights: list[tuple[float, float, str]] = []
    link.start()
    try:
        if not wait_all(lambda lk: lk.status().link == LinkState.UP, [link], 20.0):
            raise RuntimeError("fake link did not come up")
        t0 = time.monotonic()
        link.takeoff()
        t_cmd_end = None
        while time.monotonic() - t0 < 9.0:
            now = time.monotonic()
            state = link.status().flight
            if state in (FlightState.HOVERING, FlightState.FLYING) and t_cmd_end is None:
                t_cmd_end = now + 2.0
            if t_cmd_end is not None and now < t_cmd_end:
                link.set_command(0.2, 0.0, 0.0, 0.0)
            heights.append((now - t0, fake.position[2], state.value))
            time.sleep(0.02)
        sps = fake.velocity_setpoints(since=t0)
    finally:
        link.close()
        fake.close()
    fig, ax = plt.subplots(figsize=(7.0, 3.0), dpi=100)
    ax.plot([h[0] for h in heights], [h[1] for h in heights], color="k", label="height z [m]")
    ax.plot(
        [sp.t - t0 for sp in sps], [sp.vx for sp in sps], ".", ms=3, label="wire setpoint vx [m/s]"
    )
    colors = {"taking_off": "C2", "flying": "C0", "holding": "C1", "landing": "C3"}
    start = 0
    for i in range(1, len(heights) + 1):
        if i == len(heights) or heights[i][2] != heights[start][2]:
            state = heights[start][2]
            if state in colors:
                ax.axvspan(heights[start][0], heights[i - 1][0], color=colors[state], alpha=0.15)
                ax.text(heights[start][0] + 0.05, 0.62, state, fontsize=8)
            start = i
    if t_cmd_end is not None:
        ax.axvline(t_cmd_end - t0, color="grey", ls="--", lw=1)
        ax.text(t_cmd_end - t0 + 0.05, 0.02, "last cmd_vel", fontsize=8, color="grey")
    ax.set_xlabel("time [s]")
    ax.set_ylim(-0.05, 0.7)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Host watchdog: hold after 0.3 s without cmd_vel, land after 2 s", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


HL_LAND = 8  # high-level commander command id of land (port 8)
#: The two outages of the radio figures: silence [s] while flying on streamed setpoints.
OUTAGES = {"short": 1.6, "long": 5.0}
SETPOINT_STOP = 0  # commander generic type of the stop setpoint (port 7, channel 0)


class _CountRecords(logging.Handler):
    """Counts cflib log records whose message contains ``needle``."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.count += 1


def _delivered_action(fake: FakeCrazyflie, t_back: float) -> tuple[float, str] | None:
    """The first land or stop setpoint the fake heard (answering) at ``t >= t_back``."""
    for r in fake.records():
        if r.t < t_back or r.silent or not r.data:
            continue
        if r.port == 8 and r.data[0] == HL_LAND:
            return r.t, "land"
        if r.port == 7 and r.channel == 0 and r.data[0] == SETPOINT_STOP:
            return r.t, "stop_motors"
    return None


def _wait_recovery(
    fake: FakeCrazyflie, link_up_times: list[float], t_back: float, timeout_s: float
) -> tuple[tuple[float, str] | None, float | None]:
    """Wait until the link is up again and a land or stop reached the fake (at most
    ``timeout_s`` after ``t_back``); returns the action (time, kind) and the link-up time."""
    deadline = t_back + timeout_s
    action = None
    while time.monotonic() < deadline:
        action = _delivered_action(fake, t_back)
        if action is not None and any(t >= t_back for t in link_up_times):
            break
        time.sleep(0.01)
    return action, next((t for t in link_up_times if t >= t_back), None)


def outage_recovery(
    silence_s: float,
    *,
    takeoff_height: float = 0.5,
    params: LinkParams | None = None,
    cache_dir: str | None = None,
    timeout_s: float = 30.0,
) -> dict:
    """One drone flying on streamed setpoints loses its radio for ``silence_s`` seconds.

    Runs on the loopback fake (real cflib over ``udp://127.0.0.1``): take off to
    ``takeoff_height``, stream zero-velocity commands at 20 Hz (as the CBF does) for 1 s and
    on through the outage, make the fake silent for ``silence_s`` (it receives and records,
    answers nothing and ignores commands), let it answer again, then wait until the link is
    ``up`` and the pending action reached the fake: the land re-sent (drone in the air) or
    the stop setpoint (drone already on the ground), and for the drone to end on the ground.

    Args:
        silence_s: length of the outage [s].
        takeoff_height: [m].
        params: link parameters (default :class:`LinkParams` with a temporary TOC cache).
        cache_dir: cflib TOC cache directory when ``params`` is None.
        timeout_s: give up waiting for the recovery after this long [s].

    Returns:
        A flat dict. ``recover_s``: seconds from the fake answering again until the link
        is ``up`` and the pending action was received by the fake (None if that did not
        happen within ``timeout_s``); ``link_up_s``: until the link is ``up``;
        ``action``: ``land`` | ``stop_motors`` | None; ``motors_armed_on_ground``: motors
        switched on or armed while the fake sat on the floor with its motors off, counted
        from the start of the outage; ``cut_in_air_after_back``: motor cuts above the floor
        after the fake answered again (the firmware timeout, a stop in the air);
        ``landed``: the fake ended on the floor with its motors off;
        ``z_at_back``: altitude when the fake answered again [m]; ``connects``: connections
        made; ``stale_log_packets``: log data of an old connection's block dropped by the
        transport; ``cflib_no_log_entry``: cflib's "Error no LogEntry to handle" records.

    Kept whole: the scenario reads as one timeline (fly, silence, answer again, wait,
    measure) inside the one ``try`` whose ``finally`` stops the commander, the link and the
    fake; the waiting is in :func:`_wait_recovery`.
    """
    import cflib  # noqa: F401  (its loggers exist before the counter is attached)

    cache = cache_dir or tempfile.mkdtemp(prefix="radio_toc_")
    params = params or LinkParams(toc_cache_dir=cache)
    log_counter = _CountRecords("no LogEntry to handle")
    cflib_log = logging.getLogger("cflib.crazyflie.log")
    cflib_log.addHandler(log_counter)
    fake = FakeCrazyflie()
    link_up_times: list[float] = []

    def on_event(kind: str, message: str) -> None:
        if kind == "link" and message.startswith("link up"):
            link_up_times.append(time.monotonic())

    link = CrazyflieLink(
        RobotLink("cf_outage", fake.uri, takeoff_height=takeoff_height),
        params,
        on_event=on_event,
    )
    stop_cmds = threading.Event()

    def commander() -> None:
        while not stop_cmds.wait(0.05):
            link.set_command(0.0, 0.0, 0.0, 0.0)

    cmd_thread = threading.Thread(target=commander, daemon=True)
    link.start()
    try:
        if not wait_all(lambda lk: lk.status().link == LinkState.UP, [link], 20.0):
            raise RuntimeError("fake link did not come up")
        take_off_all([link], 10.0)
        cmd_thread.start()
        time.sleep(1.0)
        t_silent = time.monotonic()
        fake.set_responding(False)
        time.sleep(silence_s)
        z_back = fake.position[2]
        fake.set_responding(True)
        t_back = time.monotonic()
        action, t_up = _wait_recovery(fake, link_up_times, t_back, timeout_s)
        recover = None
        if action is not None and t_up is not None:
            recover = max(t_up, action[0]) - t_back
        wait_all(
            lambda lk: lk.status().flight == FlightState.GROUNDED and not fake.motors_on,
            [link],
            8.0,
        )
        status = link.status()
        cut_in_air = [
            e for e in fake.motor_events(since=t_back) if e.kind == "off" and e.z > ON_GROUND_Z
        ]
        return {
            "silence_s": silence_s,
            "recover_s": recover,
            "link_up_s": None if t_up is None else t_up - t_back,
            "action": None if action is None else action[1],
            "motors_armed_on_ground": fake.armed_on_ground(since=t_silent),
            "cut_in_air_after_back": len(cut_in_air),
            "landed": status.flight == FlightState.GROUNDED
            and not fake.motors_on
            and fake.position[2] <= ON_GROUND_Z,
            "z_at_back": z_back,
            "connects": status.connects,
            "stale_log_packets": getattr(status, "stale_log_packets", 0),
            "cflib_no_log_entry": log_counter.count,
        }
    finally:
        stop_cmds.set()
        if cmd_thread.is_alive():
            cmd_thread.join(timeout=1.0)
        link.close()
        fake.close()
        cflib_log.removeHandler(log_counter)


def summarise(n: int, delays, rates, t_up: float, n_cmds: int) -> dict:
    d = np.asarray(delays) * 1e3
    return {
        "n": n,
        "setpoint_hz_median": statistics.median(rates),
        "setpoint_hz_min": min(rates),
        "p50_ms": float(np.percentile(d, 50)) if d.size else float("nan"),
        "p99_ms": float(np.percentile(d, 99)) if d.size else float("nan"),
        "matched": int(d.size),
        "commands": n_cmds,
        "connect_all_s": t_up,
    }


def latency_keys(rows: list[tuple[str, dict]], core_only: bool) -> dict[str, float]:
    """Print one table row per (path, N) and return their flat JSON keys."""
    out: dict[str, float] = {}
    for path, r in rows:
        print(
            f"{path:5} {r['n']:>3} {r['setpoint_hz_median']:>12.1f} {r['setpoint_hz_min']:>9.1f} "
            f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['matched']:>4}/{r['commands']:<4} "
            f"{r['connect_all_s']:>10.2f}"
        )
        prefixes = ["core_"] if path == "core" else [""]
        if path == "core" and core_only:
            prefixes.append("")  # no node path measured: the headline keys are the core's
        for prefix in prefixes:
            tag = f"n{r['n']}"
            out[f"{prefix}setpoint_hz_per_link_{tag}"] = r["setpoint_hz_median"]
            out[f"{prefix}setpoint_hz_min_link_{tag}"] = r["setpoint_hz_min"]
            out[f"{prefix}cmd_to_wire_p50_ms_{tag}"] = r["p50_ms"]
            out[f"{prefix}cmd_to_wire_p99_ms_{tag}"] = r["p99_ms"]
            out[f"{prefix}cmd_matched_frac_{tag}"] = r["matched"] / max(r["commands"], 1)
            out[f"{prefix}connect_all_s_{tag}"] = r["connect_all_s"]
    core_p99 = {r["n"]: r["p99_ms"] for path, r in rows if path == "core"}
    for path, r in rows:
        if path == "node" and core_p99.get(r["n"], 0.0) > 0.0:
            out[f"cmd_to_wire_p99_node_over_core_n{r['n']}"] = r["p99_ms"] / core_p99[r["n"]]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 30])
    ap.add_argument("--seconds", type=float, default=8.0, help="measurement window per size")
    ap.add_argument("--cmd-hz", type=float, default=20.0, help="new cmd_vel per link [Hz]")
    ap.add_argument("--rate-hz", type=float, default=20.0, help="bridge stream rate [Hz]")
    ap.add_argument("--core-only", action="store_true", help="skip the ROS node path")
    ap.add_argument(
        "--executor",
        choices=["events", "multi"],
        default="events",
        help="executor of the node path (the composed bringup's choices)",
    )
    ap.add_argument("--quick", action="store_true", help="short windows (< 1 min)")
    ap.add_argument("--outage-only", action="store_true", help="only the two radio outages")
    ap.add_argument("--json", help="write the flat results here")
    ap.add_argument("--figure", help="also draw the watchdog timeline PNG here")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 2.0)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    # Domain ids up to 101 keep DDS's ports below Linux's ephemeral range (the fakes' ports).
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    cache = tempfile.mkdtemp(prefix="radio_toc_")
    load_start = os.getloadavg()[0]
    rows = []
    for n in [] if args.outage_only else args.sizes:
        rows.append(("core", run_core(n, args.seconds, args.cmd_hz, args.rate_hz, cache)))
        if not args.core_only:
            rows.append(
                (
                    "node",
                    run_ros(n, args.seconds, args.cmd_hz, args.rate_hz, cache, args.executor),
                )
            )

    load_end = os.getloadavg()[0]
    print(
        f"radio bridge over loopback fake, stream {args.rate_hz:g} Hz, commands "
        f"{args.cmd_hz:g} Hz/link, {args.seconds:g} s window, node path on the "
        f"{args.executor} executor, {os.cpu_count()} CPUs, 1-min load average "
        f"{load_start:.1f} -> {load_end:.1f}"
    )
    if rows:
        head = f"{'path':5} {'N':>3} {'sp/s median':>12} {'sp/s min':>9} {'p50 ms':>8}"
        print(head + f" {'p99 ms':>8} {'matched':>9} {'connect s':>10}")
    out: dict[str, float | int | str] = {
        "rate_hz": args.rate_hz,
        "cmd_hz": args.cmd_hz,
        "seconds": args.seconds,
        "cpus": os.cpu_count() or 0,
        "executor": args.executor,
        "python": platform.python_version(),
        "load1_start": load_start,
        "load1_end": load_end,
    }
    out.update(latency_keys(rows, args.core_only))
    outages = {name: outage_recovery(s, cache_dir=cache) for name, s in OUTAGES.items()}
    print(f"{'outage':6} {'silence s':>9} {'recover s':>9} {'link up s':>9} {'action':>11}", end="")
    print(f" {'armed on ground':>15} {'cut in air after':>16} {'landed':>6}")
    for name, r in outages.items():
        recover = "never" if r["recover_s"] is None else f"{r['recover_s']:.3f}"
        link_up = "never" if r["link_up_s"] is None else f"{r['link_up_s']:.3f}"
        print(
            f"{name:6} {r['silence_s']:>9.1f} {recover:>9} {link_up:>9} {str(r['action']):>11} "
            f"{r['motors_armed_on_ground']:>15} {r['cut_in_air_after_back']:>16} "
            f"{str(r['landed']):>6}"
        )
        out[f"radio_recover_s_{name}"] = r["recover_s"]
        out[f"radio_link_up_s_{name}"] = r["link_up_s"]
        out[f"radio_cut_in_air_after_back_{name}"] = r["cut_in_air_after_back"]
    out["motors_armed_on_ground"] = sum(r["motors_armed_on_ground"] for r in outages.values())
    if args.figure:
        watchdog_figure(args.figure, cache)
        print(f"figure: {args.figure}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
