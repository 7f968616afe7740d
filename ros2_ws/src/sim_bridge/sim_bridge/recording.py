"""Record a swarm run to MCAP in the ROS 2 bag format, and read it back (no rclpy here).

This module holds the file format: the recorded topics (:func:`swarm_topics`), their schemas
(:func:`msgdef`: ``pkg/msg/Type`` with encoding ``ros2msg``, the ``.msg`` text with its
dependencies as rosbag2 writes them), the channels' ``offered_qos_profiles`` metadata and the
readers. The recorder node is :func:`sim_bridge.ros.recorder.make_recorder` (node layer); it
writes the CDR the middleware delivered (what ``ros2 bag record -s mcap`` stores), so
``ros2 bag info/play`` and Foxglove read the files. The swarm config is stored as the MCAP
metadata record ``swarm_config`` (``{"yaml": ...}``) so a run renders on its own.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from sim_bridge import topics
from sim_bridge.config import SwarmConfig

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


def swarm_topics(cfg: SwarmConfig, markers: bool = False) -> dict[str, str]:
    """Topic -> type name of what a swarm run records."""
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
    if cfg.routing is not None:  # task state, so a routing run renders visited tasks
        out[topics.TASKS] = "std_msgs/msg/Float64MultiArray"
    if markers:
        out[topics.MARKERS] = "visualization_msgs/msg/MarkerArray"
    return out


# ----------------------------------------------------------------------------- reading


def read_config(path: str | os.PathLike) -> dict | None:
    """The ``swarm_config`` mapping stored in a recording, or ``None``."""
    from mcap.reader import make_reader

    with open(path, "rb") as fh:
        for record in make_reader(fh).iter_metadata():
            if record.name == "swarm_config":
                return yaml.safe_load(record.metadata["yaml"])
    return None


def read_messages(path: str | os.PathLike, topic_filter=None) -> Iterator[tuple[str, int, object]]:
    """``(topic, log_time_ns, decoded message)`` of a recording, in log-time order."""
    from mcap_ros2.reader import read_ros2_messages

    for item in read_ros2_messages(str(path), topics=topic_filter):
        yield item.channel.topic, item.log_time_ns, item.ros_msg
