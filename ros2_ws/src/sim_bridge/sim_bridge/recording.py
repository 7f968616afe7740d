"""Record a swarm run to MCAP in the ROS 2 bag format, and read it back (no rclpy here).

This module holds the file format: the recorded topics (:func:`swarm_topics`), their schemas
(:func:`msgdef`: ``pkg/msg/Type`` with encoding ``ros2msg``, the ``.msg`` text with its
dependencies as rosbag2 writes them), the channels' ``offered_qos_profiles`` metadata and the
readers. The recorder node is :func:`sim_bridge.ros.recorder.make_recorder` (node layer); it
writes the CDR the middleware delivered (what ``ros2 bag record -s mcap`` stores), so
``ros2 bag info/play`` and Foxglove read the files. The swarm config is stored as the MCAP
metadata record ``swarm_config`` (``{"yaml": ...}``) so a run renders on its own.

A recording is the one record of a run: :func:`read_run` samples it as the analyses need it
(sim time, robot positions and remaining demand at every world publication, and the
diagnostics), and :func:`write_run` writes the same topics for a run that did not fly over ROS
(a core-env rollout), so one reader serves both.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from mcap.reader import make_reader
from mcap_ros2.reader import read_ros2_messages
from mcap_ros2.writer import Writer as Ros2Writer

from sim_bridge import topics
from sim_bridge.config import SwarmConfig
from sim_bridge.errors import SwarmError

_PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64", "string", "wstring",
}  # fmt: skip
_SEP = "=" * 80

#: rosbag2's QoS description (reliable, volatile, keep last) for channel metadata.
QOS_YAML = (
    "- history: 3\n  depth: 0\n  reliability: 1\n  durability: 2\n"
    "  deadline:\n    sec: 2147483647\n    nsec: 4294967295\n"
    "  lifespan:\n    sec: 2147483647\n    nsec: 4294967295\n  liveliness: 1\n"
    "  liveliness_lease_duration:\n    sec: 2147483647\n    nsec: 4294967295\n"
    "  avoid_ros_namespace_conventions: false"
)
#: The same for the latched topics (``/<robot>/mode``): transient local, so that a replay's
#: publisher matches the transient-local subscribers of the live graph (a volatile one never
#: would).
QOS_YAML_LATCHED = QOS_YAML.replace("durability: 2", "durability: 1")


def latched_topic(topic: str) -> bool:
    """Whether ``topic`` is one of the latched (transient local) topics a run records."""
    return topic.rsplit("/", 1)[-1] == topics.MODE


def _share_dirs() -> list[Path]:
    dirs = [Path(sys.prefix) / "share"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share")
    return dirs


def _msg_file(pkg: str, name: str) -> Path:
    for share in _share_dirs():
        cand = share / pkg / "msg" / f"{name}.msg"
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"message definition {pkg}/msg/{name}.msg not found")


def msgdef(type_name: str) -> str:
    """Full ``ros2msg`` definition of ``pkg/msg/Type`` with its dependencies appended."""
    pkg, _, name = type_name.replace("/msg/", "/").partition("/")
    order: list[tuple[str, str]] = []
    texts: dict[tuple[str, str], str] = {}
    stack = [(pkg, name)]
    while stack:
        key = stack.pop(0)
        if key in texts:
            continue
        text = _msg_file(*key).read_text()
        texts[key] = text
        order.append(key)
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            ftype = line.split()[0]
            if "=" in line[len(ftype) :]:
                continue  # constant
            base = re.sub(r"\[.*\]$", "", ftype)
            base = re.sub(r"<=\d+", "", base)
            if base in _PRIMITIVES:
                continue
            if base == "Header":
                dep = ("std_msgs", "Header")
            elif "/" in base:
                dpkg, _, dname = base.replace("/msg/", "/").partition("/")
                dep = (dpkg, dname)
            else:
                dep = (key[0], base)
            if dep not in texts:
                stack.append(dep)
    parts = [texts[order[0]]]
    for dpkg, dname in order[1:]:
        parts.append(f"{_SEP}\nMSG: {dpkg}/{dname}\n{texts[(dpkg, dname)]}")
    return "\n".join(parts)


def swarm_topics(
    cfg: SwarmConfig, markers: bool = False, diagnostics: bool = False
) -> dict[str, str]:
    """Topic -> type name of what a swarm run records (``markers``: with ``/swarm/markers``;
    ``diagnostics``: with ``/diagnostics``, every node's status, e.g. a policy's cluster)."""
    out = {
        topics.CLOCK: "rosgraph_msgs/msg/Clock",
        topics.CONSUMERS: "std_msgs/msg/Float64MultiArray",
        topics.EVENTS: "std_msgs/msg/String",
    }
    for name in cfg.robot_names:
        out[topics.robot_topic(name, topics.POSE)] = "geometry_msgs/msg/PoseStamped"
        out[topics.robot_topic(name, topics.RESOURCES)] = "std_msgs/msg/Float64MultiArray"
        out[topics.robot_topic(name, topics.CMD_VEL)] = "geometry_msgs/msg/TwistStamped"
        out[topics.robot_topic(name, topics.CMD_VEL_NOMINAL)] = "geometry_msgs/msg/TwistStamped"
        out[topics.robot_topic(name, topics.MODE)] = "std_msgs/msg/String"
    if cfg.routing is not None:  # task state, so a routing run renders visited tasks
        out[topics.TASKS] = "std_msgs/msg/Float64MultiArray"
    if markers:
        out[topics.MARKERS] = "visualization_msgs/msg/MarkerArray"
    if diagnostics:
        out[topics.DIAGNOSTICS] = "diagnostic_msgs/msg/DiagnosticArray"
    return out


# ----------------------------------------------------------------------------- reading


class RecordingError(SwarmError, ValueError):
    """A recording cannot be read: one line naming the file, what is wrong and the fix."""


_RECORD_AGAIN = "record the run again with `swarm up --record FILE.mcap`"


def _check_file(path: str | os.PathLike) -> None:
    """:class:`RecordingError` unless ``path`` is a non-empty regular file."""
    p = Path(path)
    if p.is_dir():
        raise RecordingError(f"{path}: is a folder, not a recording; pass the .mcap file")
    if not p.is_file():
        raise RecordingError(f"{path}: no such file; pass a recording from `swarm up --record`")
    if p.stat().st_size == 0:
        raise RecordingError(f"{path}: empty file, not a recording; {_RECORD_AGAIN}")


def _why(exc: BaseException) -> str:
    """One short line for a reader's exception (its text can be long, multi-line or empty)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def read_config(path: str | os.PathLike) -> dict | None:
    """The ``swarm_config`` mapping stored in a recording, or ``None`` when it has none.

    Raises:
        RecordingError: ``path`` is missing, a folder, empty, not a complete MCAP file
            (truncated, damaged, another format), or its ``swarm_config`` is not a YAML
            mapping (a stored string is never taken for a file path).
    """
    _check_file(path)
    try:
        with open(path, "rb") as fh:
            records = [r for r in make_reader(fh).iter_metadata() if r.name == "swarm_config"]
    except Exception as exc:  # the mcap reader raises many kinds on a damaged file
        raise RecordingError(
            f"{path}: not a readable MCAP recording (truncated, damaged or another format: "
            f"{_why(exc)}); {_RECORD_AGAIN}"
        ) from None
    if not records:
        return None
    text = records[0].metadata.get("yaml")
    if text is None:
        raise RecordingError(
            f"{path}: its swarm_config metadata has no 'yaml' entry; {_RECORD_AGAIN}"
        )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecordingError(
            f"{path}: its stored swarm_config is not valid YAML ({_why(exc)}); {_RECORD_AGAIN}"
        ) from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise RecordingError(
            f"{path}: its stored swarm_config is a {type(data).__name__}, not a mapping; "
            f"{_RECORD_AGAIN}"
        )
    return data


def read_messages(path: str | os.PathLike, topic_filter=None) -> Iterator[tuple[str, int, object]]:
    """``(topic, log_time_ns, decoded message)`` of a recording, in log-time order.

    Raises:
        RecordingError: the file is not a readable MCAP recording or a message does not
            decode with its channel's schema.
    """
    _check_file(path)
    items = read_ros2_messages(str(path), topics=topic_filter)
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except Exception as exc:  # damaged file, foreign encoding, bytes that do not decode
            raise RecordingError(
                f"{path}: not a readable MCAP recording (truncated, damaged, or messages not "
                f"as `swarm up --record` writes them: {_why(exc)}); {_RECORD_AGAIN}"
            ) from None
        yield item.channel.topic, item.log_time_ns, item.ros_msg


@dataclass
class RecordedRun:
    """A recording sampled at every world publication (one ``/consumers`` table per tick).

    Attributes:
        times: ``(K,)`` sim time [s] of each sample (the last ``/clock`` before it).
        positions: ``(K, N, 3)`` robot positions [m, world frame] (the last ``/<robot>/pose``;
            a robot not heard yet is at its configured start pose).
        demands: ``(K, M, r)`` remaining demand of each consumer (world semantics; a
            :func:`write_run` without demands holds the initial one).
        diagnostics: ``(sim t, status name, {key: value})`` of every ``/diagnostics`` status
            (empty when the run did not record them).
        events: the ``/swarm/events`` records (the world's JSON dicts: ``t``, ``type``,
            ``robot``, ...), in order; a message that is not a JSON object is skipped.
    """

    times: np.ndarray
    positions: np.ndarray
    demands: np.ndarray
    diagnostics: list[tuple[float, str, dict[str, str]]]
    events: list[dict] = field(default_factory=list)


def read_run(path: str | os.PathLike, cfg: SwarmConfig) -> RecordedRun:
    """Sample the recording ``path`` of a run of ``cfg`` (see :class:`RecordedRun`); a
    ``/consumers`` table of another size (not this swarm's) is skipped."""
    n, m, r = len(cfg.robots), len(cfg.consumers), len(cfg.resource_types)
    fixed = len(topics.CONSUMER_FIXED_FIELDS)
    pose_topic = {
        topics.robot_topic(name, topics.POSE): i for i, name in enumerate(cfg.robot_names)
    }
    pos = np.array([rc.pose[:3] for rc in cfg.robots], dtype=float).reshape(n, 3)
    sim_t = 0.0
    times: list[float] = []
    positions: list[np.ndarray] = []
    demands: list[np.ndarray] = []
    diags: list[tuple[float, str, dict[str, str]]] = []
    events: list[dict] = []
    wanted = [topics.CLOCK, topics.CONSUMERS, topics.DIAGNOSTICS, topics.EVENTS, *pose_topic]

    def _sample(topic: str, msg) -> None:
        nonlocal sim_t
        if topic == topics.CLOCK:
            sim_t = msg.clock.sec + msg.clock.nanosec * 1e-9
        elif topic in pose_topic:
            p = msg.pose.position
            pos[pose_topic[topic]] = (p.x, p.y, p.z)
        elif topic == topics.CONSUMERS:
            data = np.asarray(msg.data, dtype=float)
            if data.size != m * (fixed + r):
                return
            times.append(sim_t)
            positions.append(pos.copy())
            demands.append(data.reshape(m, fixed + r)[:, fixed:])
        elif topic == topics.EVENTS:
            try:
                record = json.loads(msg.data)
            except ValueError:
                return
            if isinstance(record, dict):
                events.append(record)
        else:
            for st in msg.status:
                diags.append((sim_t, st.name, {kv.key: kv.value for kv in st.values}))

    for topic, _, msg in read_messages(path, wanted):
        try:
            _sample(topic, msg)
        except (AttributeError, TypeError, ValueError) as exc:  # another type on a known topic
            raise RecordingError(
                f"{path}: a message on {topic} is not what `swarm up --record` writes there "
                f"({_why(exc)}); {_RECORD_AGAIN}"
            ) from None
    if not times:
        return RecordedRun(np.zeros(0), np.zeros((0, n, 3)), np.zeros((0, m, r)), diags, events)
    return RecordedRun(np.asarray(times), np.stack(positions), np.stack(demands), diags, events)


def _stamp(t: float) -> dict:
    sec = math.floor(t)
    return {"sec": int(sec), "nanosec": int(round((t - sec) * 1e9)) % 1_000_000_000}


def _pose(stamp: dict, xyz) -> dict:
    """A PoseStamped (world frame, identity orientation) as the writer takes it."""
    x, y, z = (float(v) for v in xyz)
    return {
        "header": {"stamp": stamp, "frame_id": topics.WORLD_FRAME},
        "pose": {
            "position": {"x": x, "y": y, "z": z},
            "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0},
        },
    }


def _diagnostic(stamp: dict, name: str, values: dict[str, str]) -> dict:
    """A DiagnosticArray with one OK status ``name`` holding ``values``."""
    status = {
        "level": 0,
        "name": name,
        "message": "",
        "hardware_id": "",
        "values": [{"key": str(k), "value": str(v)} for k, v in values.items()],
    }
    return {"header": {"stamp": stamp, "frame_id": ""}, "status": [status]}


_WRITTEN = (
    "rosgraph_msgs/msg/Clock",
    "geometry_msgs/msg/PoseStamped",
    "std_msgs/msg/Float64MultiArray",
    "diagnostic_msgs/msg/DiagnosticArray",
    "std_msgs/msg/String",
)


def write_run(
    path: str | os.PathLike,
    cfg: SwarmConfig,
    times: np.ndarray,
    positions: np.ndarray,
    demands: np.ndarray | None = None,
    diagnostics: Iterable[tuple[float, str, dict[str, str]]] = (),
    events: Iterable[dict] = (),
) -> Path:
    """Write a run that did not fly over ROS (e.g. a core-env rollout) as a recording
    :func:`read_run` reads like a ROS one: per sample ``k`` the ``/clock`` at ``times[k]`` [s],
    every robot's ``/<robot>/pose`` at ``positions[k]`` ``(K, N, 3)`` [m] and the
    ``/consumers`` table with ``demands[k]`` ``(K, M, r)`` (``None``: the initial demand
    throughout, for a writer that does not track it); then each ``(sim t, status name, {key:
    value})`` of ``diagnostics`` on ``/diagnostics`` and each record of ``events`` (a dict with
    its sim time ``t``, as the world's) as JSON on ``/swarm/events``, at its time. Log times are
    the sim times
    [ns], the messages of one sample 1 ns apart in that order. No rclpy needed (CDR from the
    message definitions)."""
    times = np.asarray(times, dtype=float)
    positions = np.asarray(positions, dtype=float)
    m, r = len(cfg.consumers), len(cfg.resource_types)
    if demands is None:
        demands = np.broadcast_to(cfg.demand_matrix().reshape(m, r), (len(times), m, r))
    table = np.array([[*c.position, c.radius, 1.0] for c in cfg.consumers], dtype=float)
    table = table.reshape(m, len(topics.CONSUMER_FIXED_FIELDS))
    diags = sorted(diagnostics, key=lambda d: d[0])
    records = sorted(events, key=lambda e: float(e["t"]))
    pose_topics = [topics.robot_topic(name, topics.POSE) for name in cfg.robot_names]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        writer = Ros2Writer(fh)
        writer.add_metadata("swarm_config", {"yaml": yaml.safe_dump(cfg.to_mapping())})
        clock, pose, array, diag, text = (writer.register_msgdef(n, msgdef(n)) for n in _WRITTEN)
        d = e = 0
        for k, t in enumerate(times):
            log = int(round(t * 1e9))
            stamp = _stamp(float(t))
            writer.write_message(topics.CLOCK, clock, {"clock": stamp}, log_time=log)
            for i, topic in enumerate(pose_topics):
                writer.write_message(
                    topic, pose, _pose(stamp, positions[k, i]), log_time=log + 1 + i
                )
            data = np.concatenate([table, np.asarray(demands[k], dtype=float)], axis=1)
            log += 1 + len(pose_topics)
            msg = {"layout": {"dim": [], "data_offset": 0}, "data": data.ravel().tolist()}
            writer.write_message(topics.CONSUMERS, array, msg, log_time=log)
            end = times[k + 1] if k + 1 < len(times) else math.inf
            while d < len(diags) and diags[d][0] < end:
                log += 1
                writer.write_message(
                    topics.DIAGNOSTICS, diag, _diagnostic(stamp, *diags[d][1:]), log_time=log
                )
                d += 1
            while e < len(records) and float(records[e]["t"]) < end:
                log += 1
                body = {"data": json.dumps(records[e])}
                writer.write_message(topics.EVENTS, text, body, log_time=log)
                e += 1
        writer.finish()
    return path
