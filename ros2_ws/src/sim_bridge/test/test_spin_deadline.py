"""A console node's teardown ends the process by its deadline, also stuck in C with the GIL held.

Fast DDS 2.14 can livelock in the participant deletion at the end of ``destroy_node`` (the main
thread spins in C++ holding the GIL; ``sim_bridge.ros.spin`` module docstring). It is rare
and timing-bound, so these tests stand in for it with a C call that holds the GIL
(``ctypes.PyDLL`` does not release it): no Python thread, ``signal.alarm`` handler or rclpy
timeout can run then, only the C-level timer of :func:`sim_bridge.ros.spin.arm_exit_deadline`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
from sim_bridge.ros.spin import TEARDOWN_DEADLINE_S

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="timer_create with SIGEV_THREAD is Linux-only"
)

#: ``libc.sleep(30)`` through PyDLL: a C call that keeps the GIL for 30 s.
HOLD_GIL = "import ctypes; ctypes.PyDLL(None).sleep(30)"


def run_script(body: str, timeout: float = 20.0) -> tuple[int, float, str]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, time.monotonic() - t0, proc.stdout + proc.stderr


def test_the_deadline_ends_a_process_stuck_in_c_holding_the_gil_with_the_given_status():
    code, took, out = run_script(
        f"""
        from sim_bridge.ros.spin import arm_exit_deadline
        assert arm_exit_deadline(0.3, 7) is not None
        print("armed", flush=True)
        {HOLD_GIL}
        print("never printed", flush=True)
        """
    )
    assert code == 7, out
    assert "armed" in out and "never printed" not in out
    assert took < 10.0  # 0.3 s after arming, not the 30 s of the stuck call


def test_a_disarmed_deadline_never_fires():
    code, took, out = run_script(
        """
        import sys, time
        from sim_bridge.ros.spin import arm_exit_deadline
        disarm = arm_exit_deadline(0.2, 7)
        disarm()
        disarm()  # twice: harmless
        time.sleep(0.8)
        print("still here", flush=True)
        sys.exit(3)
        """
    )
    assert (code, "still here" in out) == (3, True), out
    assert took >= 0.8


def test_arming_flushes_what_python_buffered(tmp_path):
    """``_exit`` drops Python's buffers: what was printed before arming must still be there."""
    log = tmp_path / "out.txt"
    script = f"""
        import sys
        sys.stdout = open({str(log)!r}, "w", buffering=1 << 16)
        print("said before the teardown")
        from sim_bridge.ros.spin import arm_exit_deadline
        arm_exit_deadline(0.2, 0)
        {HOLD_GIL}
        """
    code, _, out = run_script(script)
    assert code == 0, out
    assert log.read_text() == "said before the teardown\n"


@pytest.mark.ros
def test_a_node_whose_teardown_hangs_in_c_exits_0_by_the_deadline_after_sigint(tmp_path):
    """The whole console path: ``run_node`` as ``main`` runs it, SIGINT while spinning, a
    ``destroy_node`` that never returns (holding the GIL): exit status 0 within the deadline."""
    script = tmp_path / "stuck_node.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from rclpy.node import Node
            from sim_bridge.ros.spin import run_node

            class Stuck(Node):
                def __init__(self):
                    super().__init__("stuck_teardown")
                    self.create_timer(0.05, lambda: None)
                    print("up", flush=True)

                def destroy_node(self):
                    print("destroying", flush=True)
                    {HOLD_GIL}

            sys.exit(run_node(Stuck, "stuck_node"))
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "up"
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=15.0)
        took = time.monotonic() - t0
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, out
    assert "destroying" in out and "Traceback" not in out, out
    # the spin loop sees the flag within POLL_S, then the deadline runs
    assert took < TEARDOWN_DEADLINE_S + 2.0, took


@pytest.mark.ros
def test_in_process_callers_get_no_deadline():
    """``exit_process=False`` (tests, in-process runners) must never ``_exit`` the caller."""
    code, took, out = run_script(
        f"""
        import sys, time
        from sim_bridge.config import ConfigError
        from sim_bridge.ros.spin import run_node

        def bad():
            raise ConfigError(["robots: bad"])

        assert run_node(bad, "t", ["t"], exit_process=False) == 2
        time.sleep({TEARDOWN_DEADLINE_S} + 0.5)
        print("still here", flush=True)
        sys.exit(5)
        """
    )
    assert (code, "still here" in out, "robots: bad" in out) == (5, True, True), out
    assert took > TEARDOWN_DEADLINE_S
