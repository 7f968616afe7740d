"""Checks of a running swarm from the outside: the live node graph and clean shutdown.

Used by the tests and ``benchmarks/shutdown.py``: start a bringup plan one process per node
(exactly as ``swarm up --mode processes`` and ``ros2 launch`` start them: the console script
with ``--ros-args -r __node:=... -r __ns:=... --params-file ...``), list the graph from a
probe node, interrupt every process with SIGINT and time its exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml
from rclpy.node import Node

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
