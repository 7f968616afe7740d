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
  idle core and over 1 s with the cores busy, for nothing that matters to ROS;
* a console script's teardown has a deadline, ``TEARDOWN_DEADLINE_S`` after the spin loop
  ends (:func:`arm_exit_deadline`): Fast DDS 2.14 (the Jazzy wheels) can livelock while it
  deletes the process's participant, the last step of ``destroy_node``. Its
  ``DomainParticipant::set_listener(nullptr)`` waits, with an infinite timeout that libstdc++
  turns into a busy loop, for a discovery callback (another node leaving at the same moment)
  that needs the mutex the loop keeps re-taking; the main thread spins there holding the GIL
  (seen about once in 300 node exits with all nodes interrupted at once and a CPU hog). The
  node's topics, services and graph entry are gone by then; only the participant's goodbye
  is skipped, so peers drop it at its lease timeout instead.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
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
#: A console script's teardown (executor, node, context, atexit) ends the process with its
#: exit status this long after the spin loop stopped, finished or not [s]. Launch waits 5 s
#: after SIGINT before SIGTERM; a clean teardown takes 0.1-0.3 s with a core busy.
TEARDOWN_DEADLINE_S = 1.5


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
        # an exception on its way out (a bug, not a config error) must not end in status 0
        crashing = sys.exc_info()[1] is not None
        disarm = (
            arm_exit_deadline(TEARDOWN_DEADLINE_S, 1 if crashing else code)
            if exit_process
            else None
        )
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
        # `ros2 launch`, ending in a node that hung until SIGKILL). The deadline stays armed
        # over the atexit handlers too.
        _end_process(code)
    if disarm is not None:
        disarm()
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


class _SigevThread(ctypes.Structure):
    _fields_ = [("function", ctypes.c_void_p), ("attribute", ctypes.c_void_p)]


class _SigevUnion(ctypes.Union):
    _fields_ = [("pad", ctypes.c_int * 12), ("tid", ctypes.c_int), ("thread", _SigevThread)]


class _Sigevent(ctypes.Structure):
    """Linux ``struct sigevent`` (64 bytes on LP64)."""

    _fields_ = [
        ("value", ctypes.c_void_p),  # union sigval: the int argument passed to the function
        ("signo", ctypes.c_int),
        ("notify", ctypes.c_int),
        ("un", _SigevUnion),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("interval", _Timespec), ("value", _Timespec)]


_SIGEV_THREAD = 2
_CLOCK_MONOTONIC = 1


def arm_exit_deadline(seconds: float, code: int) -> Callable[[], None] | None:
    """End the process with ``code`` in ``seconds`` unless the returned ``disarm`` runs first.

    A POSIX timer (``timer_create`` with ``SIGEV_THREAD``) whose expiry makes the C library
    start a thread that calls ``_exit(code)``: no Python runs on expiry, so it fires also
    while the main thread is stuck in C++ holding the GIL (the Fast DDS livelock of the
    module docstring), where a Python thread, ``signal.alarm`` or an executor timeout never
    get to run. stdout and stderr are flushed when it is armed; ``_exit`` skips ``atexit``.
    Returns ``None`` (nothing armed) where the C library has no ``timer_create`` (not
    Linux/glibc): teardown is then unbounded, as before.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime, delete = libc.timer_create, libc.timer_settime, libc.timer_delete
        exit_fn = ctypes.cast(libc._exit, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None
    event = _Sigevent(value=int(code) & 0xFF, notify=_SIGEV_THREAD)
    event.un.thread.function = exit_fn
    timer = ctypes.c_void_p()
    if create(_CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
        return None
    whole = max(0.0, seconds)
    when = _Itimerspec(value=_Timespec(int(whole), max(1, int((whole % 1.0) * 1e9))))
    if settime(timer, 0, ctypes.byref(when), None) != 0:
        delete(timer)
        return None
    done = []

    def disarm() -> None:
        if not done:
            done.append(True)
            delete(timer)

    return disarm
