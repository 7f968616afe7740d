"""The MCAP recorder node (node layer): a swarm run to a ROS 2 bag, as raw CDR.

The node subscribes with ``raw=True`` to every topic of
:func:`sim_bridge.recording.swarm_topics`, so the bytes written are the CDR the middleware
delivered (what ``ros2 bag record -s mcap`` stores); the file layout (profile ``ros2``,
``ros2msg`` schemas, ``cdr`` channels with ``offered_qos_profiles``, the ``swarm_config``
metadata record) and the readers are in :mod:`sim_bridge.recording`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import yaml
from mcap.writer import CompressionType, Writer
from rclpy.node import Node

from sim_bridge.config import SwarmConfig
from sim_bridge.recording import QOS_YAML, QOS_YAML_LATCHED, latched_topic, msgdef, swarm_topics
from sim_bridge.ros import qos

__all__ = ["McapRecorder", "make_recorder"]


def _msg_class(type_name: str):
    pkg, _, name = type_name.partition("/msg/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


class McapRecorder(Node):
    """Writes every message of :func:`swarm_topics` of ``cfg`` (``markers``: with
    ``/swarm/markers``; ``diagnostics``: with ``/diagnostics``) to ``path`` as raw CDR;
    :meth:`close` finishes the file."""

    def __init__(
        self,
        path: str | os.PathLike,
        cfg: SwarmConfig,
        markers: bool = False,
        diagnostics: bool = False,
        **kwargs,
    ) -> None:
        super().__init__("mcap_recorder", **kwargs)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._writer = Writer(self._fh, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library="sim_bridge")
        self._writer.add_metadata("swarm_config", {"yaml": yaml.safe_dump(cfg.to_mapping())})
        self.count = 0
        self._closed = False
        schemas: dict[str, int] = {}
        for topic, tname in swarm_topics(cfg, markers, diagnostics).items():
            if tname not in schemas:
                schemas[tname] = self._writer.register_schema(
                    tname, "ros2msg", msgdef(tname).encode()
                )
            latched = latched_topic(topic)  # joined late, it still gets the current mode
            channel = self._writer.register_channel(
                topic,
                "cdr",
                schemas[tname],
                {"offered_qos_profiles": QOS_YAML_LATCHED if latched else QOS_YAML},
            )
            self.create_subscription(
                _msg_class(tname),
                topic,
                lambda data, c=channel: self._write(c, data),
                qos.LATCHED if latched else qos.MONITOR,
                raw=True,
            )

    def _write(self, channel: int, data: bytes) -> None:
        if self._closed:
            return
        now = self.get_clock().now().nanoseconds
        self._writer.add_message(
            channel, log_time=now, data=data, publish_time=now, sequence=self.count
        )
        self.count += 1

    def close(self) -> None:
        """Finish the MCAP file (idempotent)."""
        if not self._closed:
            self._closed = True
            self._writer.finish()
            self._fh.close()


def make_recorder(
    path: str | os.PathLike,
    cfg: SwarmConfig,
    markers: bool = False,
    diagnostics: bool = False,
    **kwargs,
):
    """A :class:`McapRecorder` writing ``cfg``'s swarm topics to ``path`` (``kwargs``: Node
    options such as ``context``)."""
    return McapRecorder(path, cfg, markers, diagnostics, **kwargs)
