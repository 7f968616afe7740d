"""The one console-entry body shared by the nodes' ``main`` (node layer: uses rclpy).

Shutdown is orderly and fast, also on a loaded machine:

* SIGINT and SIGTERM only set a flag (handled once; a second signal, e.g. launch's SIGTERM
  5 s after its SIGINT, changes nothing). rclpy's own handlers are not installed: they shut
  the context down from their own thread while the executor, timers or a node's worker
  thread may still use it (the source of ``rcl_trigger_guard_condition() failed`` and of
  crashes in the teardown);
* the spin loop sees the flag within ``POLL_S``, stops the executor, destroys the node
  (which stops its own threads), then shuts the context down;
* when ``main`` owns the process (a console script: ``args`` is ``None``), the process
  ends right there, after the ``atexit`` handlers and a flush of stdout/stderr, without the
  interpreter's module teardown: with torch loaded that teardown alone takes 0.4 s on an
  idle core and over 1 s with the cores busy, for nothing that matters to ROS.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Callable

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from sim_bridge.config import ConfigError
from sim_bridge.errors import SwarmError
from sim_bridge.ros.runner import StopFlag, freeze_heap

#: Longest wait of the spin loop before it looks at the signal flag [s].
POLL_S = 0.1


class _RosArgsError(SwarmError, ValueError):
    """rclpy refused the command line's ``--ros-args``; the message is one line."""


def run_node(
    factory: Callable[[], Node],
    prog: str,
    args: list[str] | None = None,
    errors: tuple[type[Exception], ...] = (ConfigError,),
    exit_process: bool | None = None,
) -> int:
    """Init rclpy, build the node, spin until SIGINT/SIGTERM or shutdown, clean up.

    Returns the exit status: 0, or 2 when building the node raised one of ``errors`` (a bad
    swarm config, bad parameters), after printing one line ``<prog>: <problem>`` to stderr so
    a launch file or ``swarm up --mode processes`` shows the problem instead of a traceback.

    ``exit_process`` (default: ``args is None``, i.e. called as a console script) ends the
    process with that status once ROS is shut down (see the module docstring).
    """
    if exit_process is None:
        exit_process = args is None
    stop = StopFlag()
    code = 0
    node = executor = None
    try:
        try:
            rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        except RCLError as exc:  # bad --ros-args (a -p without :=, an unreadable params file)
            reason = str(exc).removeprefix("failed to initialize rcl: ").split(", at /")[0]
            raise _RosArgsError(f"--ros-args: {reason} (fix: see `ros2 run --help`)") from None
        node = factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        freeze_heap()  # a full GC pass would stall the node's ticks (runner.freeze_heap)
        while not stop.flag.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=POLL_S)
    except (*errors, _RosArgsError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # a signal before the flag was installed, or rclpy shut down by the owner
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if not exit_process:
            stop.restore()
    if exit_process:
        # The flag handlers stay installed to the end: a second SIGINT (Ctrl-C reaches every
        # process of the terminal's group, and launch forwards its own) must not raise
        # KeyboardInterrupt inside an atexit handler (seen with torch's finalizers under
        # `ros2 launch`, ending in a node that hung until SIGKILL).
        _end_process(code)
    return code


def spin_node(
    factory: Callable[[], Node],
    prog: str,
    args: list[str] | None = None,
    errors: tuple[type[Exception], ...] = (ConfigError,),
) -> None:
    """:func:`run_node` for a ``main`` that returns nothing: exit status 2 as ``SystemExit``."""
    code = run_node(factory, prog, args, errors)
    if code:
        raise SystemExit(code)


def _end_process(code: int) -> None:
    """Run the ``atexit`` handlers, flush, and end the process without module teardown."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # a closed stream or a broken pipe: nothing left to say
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
