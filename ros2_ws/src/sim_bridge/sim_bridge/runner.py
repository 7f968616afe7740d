"""Run a bringup plan here (``swarm up``), the parts without rclpy.

The runs themselves (:func:`run_composed`: every node in one process and one executor;
:func:`run_processes`: one OS process per node) live in the node layer,
:mod:`sim_bridge.ros.runner`; this module keeps what they share and what needs no ROS: the
:class:`RunResult`, the executor choice, the SIGINT/SIGTERM flag and the child-process helpers.
Importing this module never imports rclpy.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sim_bridge.bringup import NodeSpec

EXECUTORS = ("auto", "multi", "single", "events")
#: Node classes checked to work under rclpy's EventsExecutor: they only use timers,
#: subscriptions, publishers and synchronous services (no coroutine callbacks, which that
#: executor does not await). CbfNode ran the demo under it; PolicyNode was checked by reading.
EVENTS_SAFE = {
    "cbf_filter.ros.node:CbfNode",
    "lgtc_policy.ros.node:PolicyNode",
    "sim_bridge.ros.world_node:WorldNode",
    "sim_bridge.ros.relay_node:RelayNode",
    "sim_bridge.ros.services_node:SwarmServicesNode",
    "sim_bridge.ros.passthrough_node:PassthroughNode",
    "sim_bridge.ros.goto_node:GotoNode",
    # radio bridges: DDS tests run them under both composed executors (test_radio_node.py)
    "sim_bridge.ros.crazyflie_node:CrazyflieBridgeNode",
    "sim_bridge.ros.ground_node:GroundBridgeNode",
}


def choose_executor(kind: str, specs: list[NodeSpec]) -> str:
    """``auto``: rclpy's EventsExecutor (C++, several times less overhead per callback) when
    every node is known to work with it, else the MultiThreadedExecutor of the contract."""
    if kind != "auto":
        return kind
    return "events" if all(s.plugin in EVENTS_SAFE for s in specs) else "multi"


@dataclass
class RunResult:
    """What a run measured (world values from its ``/diagnostics``)."""

    wall_s: float = 0.0
    sim_s: float = 0.0
    rtf: float = float("nan")
    tick_p50_ms: float = float("nan")
    tick_p99_ms: float = float("nan")
    cpu_percent: float = float("nan")
    remaining_demand: float = float("nan")
    initial_demand: float = float("nan")
    recorded: int = 0
    exit_code: int = 0
    stop_reason: str = ""
    errors: list[str] = field(default_factory=list)
    #: processes mode: robot nodes that exited while the run went on, ``(fqn, code, robot)``
    node_exits: list[tuple[str, int, str]] = field(default_factory=list)


class StopFlag:
    """SIGINT/SIGTERM -> a flag the spin loop checks (installed only in the main thread)."""

    def __init__(self) -> None:
        self.flag = threading.Event()
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, lambda *_: self.flag.set())

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def stop_reason(
    stop: StopFlag, t0: float, duration: float | None, should_stop: Callable[[], bool] | None
) -> str:
    """Why the spin loop must end now, or ``""`` to go on."""
    if stop.flag.is_set():
        return "signal"
    if duration is not None and time.perf_counter() - t0 >= duration:
        return "duration"
    if should_stop is not None and should_stop():
        return "should_stop"
    return ""


# ----------------------------------------------------------------------------- processes


def die_with_parent() -> None:
    """Child-side: get SIGTERM when the parent dies (Linux), start a new process group."""
    os.setpgid(0, 0)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def proc_cpu_s(pid: int) -> float:
    """utime + stime [s] of a live process and its waited-for children (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def terminate(procs: list[subprocess.Popen], grace_s: float = 5.0) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to each process group still running."""
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            return
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)
        deadline = time.monotonic() + wait
        for p in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
