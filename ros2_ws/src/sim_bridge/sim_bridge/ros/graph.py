"""Checks of a running swarm from the outside: the live node graph and clean shutdown.

Used by the tests and the fault and shutdown benchmarks: start a bringup plan one process per
node (exactly as ``swarm up --mode processes`` and ``ros2 launch`` start them: the console
script with ``--ros-args -r __node:=... -r __ns:=... --params-file ...``), list the graph from a
probe node, find a child process to kill or freeze (:func:`child_pid`), watch the robots'
poses and the world's events (:class:`SwarmWatch`), interrupt every process with SIGINT and
time its exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from std_msgs.msg import String

from sim_bridge import topics
from sim_bridge.bringup import NodeSpec, executable_path
from sim_bridge.ros.runner import die_with_parent

#: What a node's log must never show on shutdown.
SHUTDOWN_ERRORS = (
    "Segmentation fault",
    "rcl_trigger_guard_condition",
    "Traceback (most recent call last)",
    "cannot use Destroyable",
    "was never retrieved",
)


def node_fqns(node: Node) -> list[str]:
    """Fully qualified names of every node in the graph ``node`` sees (with repeats)."""
    return [f"{ns.rstrip('/')}/{name}" for name, ns in node.get_node_names_and_namespaces()]


def duplicates(fqns: list[str]) -> list[str]:
    """The names that occur more than once."""
    return sorted(name for name, n in Counter(fqns).items() if n > 1)


def wait_for(predicate, timeout: float = 10.0, period: float = 0.02) -> bool:
    """Poll ``predicate()`` every ``period`` s until it is true or ``timeout`` s have passed;
    its value at the deadline (one last look) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())


def wait_for_nodes(node: Node, expected: list[str], timeout_s: float) -> list[str]:
    """Poll the graph until every name of ``expected`` is there (or ``timeout_s``).

    Returns the last graph seen (fully qualified names, repeats kept). Discovery is done by
    the rmw in the background, so no spinning is needed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        seen = node_fqns(node)
        if set(expected) <= set(seen) or time.monotonic() >= deadline:
            return seen
        time.sleep(0.1)


def child_pid(*argv: str) -> int | None:
    """PID of a child of this process whose command line holds every one of ``argv`` as a
    whole argument (e.g. ``"__ns:=/cf2", "__node:=cbf_filter"`` or ``"--group", "2/2"``)."""
    me = str(os.getpid())
    want = [a.encode() for a in argv]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue  # the process ended while being read
        if ppid == me and all(a in args for a in want):
            return int(entry.name)
    return None


class SwarmWatch:
    """A node that records every robot's pose (with the monotonic time it arrived) and the
    world's ``/swarm/events``; add ``.node`` to a run's executor (``on_ready``)."""

    def __init__(self, context, names: list[str], name: str = "swarm_watch") -> None:
        self.node = Node(name, context=context)
        self.lock = threading.Lock()
        self.track: dict[str, list[tuple[float, np.ndarray]]] = {n: [] for n in names}
        self.events: list[dict] = []
        for n in names:
            self.node.create_subscription(
                PoseStamped, topics.robot_topic(n, topics.POSE), lambda m, n=n: self._pose(n, m), 1
            )
        self.node.create_subscription(
            String, topics.EVENTS, lambda m: self.events.append(json.loads(m.data)), 50
        )

    def _pose(self, n: str, m: PoseStamped) -> None:
        p = m.pose.position
        with self.lock:
            self.track[n].append((time.monotonic(), np.array([p.x, p.y, p.z])))

    def last(self, n: str) -> np.ndarray | None:
        """Robot ``n``'s latest position ``[x, y, z]``, or None before its first pose."""
        with self.lock:
            return self.track[n][-1][1].copy() if self.track[n] else None


@dataclass
class NodeProcess:
    """One node started as its own process."""

    spec: NodeSpec
    proc: subprocess.Popen
    log: Path
    exit_s: float | None = None  # time from SIGINT to exit [s]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_processes(specs: list[NodeSpec], workdir: Path) -> list[NodeProcess]:
    """Start each spec's console script as ``swarm up --mode processes`` does."""
    workdir.mkdir(parents=True, exist_ok=True)
    started = []
    for spec in specs:
        stem = spec.fqn.strip("/").replace("/", "__")
        params = workdir / f"{stem}.yaml"
        params.write_text(yaml.safe_dump(spec.params_yaml()))
        log = workdir / f"{stem}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [executable_path(spec), *spec.ros_args(str(params))],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
                preexec_fn=die_with_parent,
            )
        started.append(NodeProcess(spec, proc, log))
    return started


def interrupt(procs: list[NodeProcess], wait_s: float) -> None:
    """SIGINT to every process at once; record each one's exit time, SIGKILL the rest."""
    t0 = time.monotonic()
    for p in procs:
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGINT)
    pending = list(procs)
    while pending and time.monotonic() - t0 < wait_s:
        for p in list(pending):
            if p.proc.poll() is not None:
                p.exit_s = time.monotonic() - t0
                pending.remove(p)
        time.sleep(0.005)
    for p in pending:
        p.proc.kill()
        p.proc.wait()


def busy_loop(n: int = 1) -> list[subprocess.Popen]:
    """``n`` processes that each keep one core busy (a CPU hog), until killed."""
    return [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=die_with_parent)
        for _ in range(n)
    ]
