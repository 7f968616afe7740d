"""Swarm file validation: wall time and peak memory of ``swarm validate`` on large files.

    .venv/bin/python benchmarks/validate.py [--quick] [--json FILE]

Each case writes a generated swarm file (:func:`big_config_yaml`) to a temporary folder and
runs ``swarm validate FILE`` (``python -m sim_bridge.cli``) in a fresh process: wall time from
start to exit (interpreter start-up included), its CPU time (user + system, which a shared
machine distorts less) and its peak resident memory (``ru_maxrss`` from ``os.wait4``); the
median of ``--repeats`` runs.

* ``30k_robots``: 31 000 robots, 4 consumers (3.8 MiB): refused by the file-size limit
  before parsing (``sim_bridge.config.MAX_FILE_BYTES``).
* ``20k_consumers``: 10 robots, 20 000 consumers (1.5 MiB): the same limit.
* ``1500_robots_compact``: 1 500 robots written short through ``robot_types`` (70 KiB):
  parsed, then refused by the robot count limit (``MAX_ROBOTS``).
* ``20k_robots_compact``: 20 000 robots written short (0.95 MiB, just under the size limit):
  the slowest refusal, as the whole file is parsed before the count limit applies.
* ``at_limits``: 1 000 robots and 1 000 consumers, the largest file that is accepted.
* ``30k_robots_unlimited``: the 31 000-robot file with the limits raised in the child
  process, to show what the checks themselves cost (grid hash for the overlaps, no ``N x N``
  array); not in ``--quick``.

The JSON is flat: ``validate_s_<case>`` (wall), ``validate_cpu_s_<case>``,
``validate_peak_mib_<case>``, ``validate_rc_<case>`` (the exit status: 0 valid, 1 refused),
plus ``quick`` and ``python``.

:func:`big_config_yaml` is the generator the tests and fault benchmarks share::

    sys.path.insert(0, "benchmarks"); from validate import big_config_yaml
    Path("/tmp/big.yaml").write_text(big_config_yaml(31_000, 4))
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

#: Child program for ``*_unlimited`` cases: ``swarm validate`` with every limit raised.
_UNLIMITED = """
import sys
import sim_bridge.config as c
c.MAX_FILE_BYTES = 1 << 34
c.MAX_ROBOTS = c.MAX_CONSUMERS = c.MAX_EVENTS = 10**9
from sim_bridge.cli import main
sys.exit(main(["validate", sys.argv[1]]))
"""


def big_config_yaml(n_robots: int, n_consumers: int, *, compact: bool = False) -> str:
    """A valid swarm file (YAML text) with ``n_robots`` Crazyflies and ``n_consumers`` consumers.

    Robots (radius 0.05 m) and consumers (radius 0.1 m) sit on two square grids of 0.3 m
    pitch in an arena sized to fit, so nothing overlaps; each robot carries 0.1 of one
    persistent resource and the demand covers the supply, so there is no warning. Each robot
    is one flow-style line with its own resources (about 120 bytes, as in launch/demo.yaml),
    or, with ``compact``, a ``robot_types`` reference (about 45 bytes).

    Args:
        n_robots: robots (>= 1). n_consumers: consumers (>= 0).
        compact: write robots as ``{name, type, pose}`` only.
    """
    side = max(1, math.ceil(math.sqrt(max(n_robots, n_consumers, 1))))
    width = 1.0 + 0.3 * side
    demand = max(1.0, 0.1 * n_robots / max(n_consumers, 1))
    lines = [
        "fileversion: 1",
        f"arena: {{x: [0.0, {width:.1f}], y: [0.0, {width:.1f}], z: [0.0, 2.0]}}",
        "resource_types: [energy]",
        "comm_radius: 2.0",
        "robot_types:",
        "  cf: {kind: crazyflie, radius: 0.05, "
        "resources: {energy: {amount: 0.1, depletion: persistent}}}",
        "robots:",
    ]
    for i in range(n_robots):
        x, y = 0.5 + (i % side) * 0.3, 0.5 + (i // side) * 0.3
        if compact:
            lines.append(f"  - {{name: cf{i}, type: cf, pose: [{x:.2f}, {y:.2f}]}}")
        else:
            lines.append(
                f"  - {{name: cf{i}, kind: crazyflie, radius: 0.05, "
                f"pose: [{x:.2f}, {y:.2f}, 0.0, 0.0], "
                "resources: {energy: {amount: 0.1, depletion: persistent}}}"
            )
    lines.append("consumers:" if n_consumers else "consumers: []")
    for m in range(n_consumers):
        x, y = 0.35 + (m % side) * 0.3, 0.35 + (m // side) * 0.3
        lines.append(
            f"  - {{name: c{m}, position: [{x:.2f}, {y:.2f}], radius: 0.1, "
            f"demand: {{energy: {demand:.3f}}}}}"
        )
    return "\n".join(lines) + "\n"


def run_validate(path: Path, unlimited: bool = False) -> tuple[float, float, float, int, str]:
    """``(wall_s, cpu_s, peak_mib, exit_status, stderr)`` of one ``swarm validate`` process."""
    if unlimited:
        cmd = [sys.executable, "-c", _UNLIMITED, str(path)]
    else:
        cmd = [sys.executable, "-m", "sim_bridge.cli", "validate", str(path)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024.0, proc.returncode, err


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one run per case, no unlimited case")
    ap.add_argument("--repeats", type=int, default=0, help="runs per case (default 3, quick 1)")
    ap.add_argument("--json", help="write the flat JSON summary here")
    args = ap.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    cases = [
        ("30k_robots", 31_000, 4, False, False),
        ("20k_consumers", 10, 20_000, False, False),
        ("1500_robots_compact", 1_500, 4, True, False),
        ("20k_robots_compact", 20_000, 4, True, False),
        ("at_limits", 1_000, 1_000, False, False),
    ]
    if not args.quick:
        cases.append(("30k_robots_unlimited", 31_000, 4, False, True))
    out: dict[str, object] = {"quick": bool(args.quick), "python": platform.python_version()}
    print(
        f"{'case':<24}{'file MiB':>10}{'exit':>6}{'wall s':>9}{'cpu s':>8}{'peak MiB':>10}"
        "  first line"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, n_robots, n_consumers, compact, unlimited in cases:
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(big_config_yaml(n_robots, n_consumers, compact=compact))
            runs = [run_validate(path, unlimited) for _ in range(repeats)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            peak = max(r[2] for r in runs)
            rc, err = runs[-1][3], runs[-1][4]
            first = (err.splitlines() or ["ok"])[0]
            out[f"validate_s_{name}"] = round(wall, 3)
            out[f"validate_cpu_s_{name}"] = round(cpu, 3)
            out[f"validate_peak_mib_{name}"] = round(peak, 1)
            out[f"validate_rc_{name}"] = rc
            size = path.stat().st_size / 2**20
            print(
                f"{name:<24}{size:>10.2f}{rc:>6}{wall:>9.2f}{cpu:>8.2f}{peak:>10.0f}  {first[:80]}"
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1, sort_keys=True))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
