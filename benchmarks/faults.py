"""Fault injection benchmark: every failure of a robot's chain ends in hold, then land.

One scripted run of the LGTC swarm in ``swarm up --mode processes`` (world, relay, services,
one CBF filter and one policy process per robot, the shipped checkpoint, ``launch/demo.yaml``'s
arena and consumers with its first ``--robots`` robots), on loopback. Once every commanded
robot is flying on its commands, the faults of issue #15 hit one robot each, at the same
instant ``t_f``:

========================  =====================================================================
``future_stamp``          cf1 (commanded by this script): one ``cmd_vel_nominal`` stamped now +
                          3600 s with ``linear.y = 0.3``, then nothing
``silence``               cf2 (commanded by this script): its commands stop
``sigstop_policy``        cf3's policy process is frozen (SIGSTOP)
``sigkill_policy``        cf4's policy process is killed (SIGKILL)
``sigkill_filter``        cf5's CBF filter process is killed (SIGKILL)
``sigstop_filter``        cf6's CBF filter process is frozen (SIGSTOP)
``nan_checkpoint``        cf7's policy is started with a checkpoint holding a NaN weight (its
                          fault time is when that process exits)
========================  =====================================================================

The remaining robots fly on. Measured from the robots' ``/<robot>/pose`` (stamps of the world's
clock) and the world's ``/swarm/events``:

* ``unsafe_motion_m``: floor distance flown by the faulted robots after ``t_f +
  CMD_TIMEOUT_S`` (their last fresh command's timeout; one pose period of slack), summed over
  the faults (per fault: ``unsafe_motion_m_<fault>``);
* ``landed_after_fault_pct``: faulted robots on the floor within ``LAND_AFTER_S + 5`` s of
  their fault (``land_s_<fault>``: fault to touchdown [s]);
* ``others_unaffected_pct``: unfaulted robots still airborne, never landed by a watchdog, and
  still commanded in the run's last second;

then, from the radio benchmark (:func:`radio.outage_recovery`, the bridge against the
loopback fake Crazyflie): ``radio_recover_s_short`` (1.6 s outage while flying),
``radio_recover_s_long`` (5 s outage), ``motors_armed_on_ground``; and from the validation
benchmark (:func:`validate.run_validate`): ``validate_s_30k_robots`` and its peak memory.

Prints a table; ``--json FILE`` writes the flat keys. ``--quick`` (< 1 min on a free machine)
runs the same fault run without the radio's long outage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 200)))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "launch" / "demo.yaml"
sys.path.insert(0, str(Path(__file__).resolve().parent))

FAULTS = {
    "future_stamp": "cf1",
    "silence": "cf2",
    "sigstop_policy": "cf3",
    "sigkill_policy": "cf4",
    "sigkill_filter": "cf5",
    "sigstop_filter": "cf6",
    "nan_checkpoint": "cf7",
}
SCRIPTED = ("future_stamp", "silence")  # robots this script commands (no policy node)
GROUND_Z = 0.02  # [m] a drone lower than this is on the floor


def fault_config(dst: Path, n_robots: int) -> Path:
    """``launch/demo.yaml`` with its first ``n_robots`` robots and an absolute checkpoint."""
    from sim_bridge.config import load_config

    data = yaml.safe_load(DEMO.read_text())
    if n_robots > len(data["robots"]):
        raise SystemExit(f"--robots {n_robots}: demo.yaml has {len(data['robots'])} robots")
    data["robots"] = data["robots"][:n_robots]
    data["policy"]["checkpoint"] = str(load_config(DEMO).resolve_checkpoint())
    dst.write_text(yaml.safe_dump(data, sort_keys=False))
    return dst


def nan_checkpoint(src: str, dst: Path) -> Path:
    """A copy of checkpoint ``src`` with one NaN weight in its policy network."""
    import torch

    ck = torch.load(src, map_location="cpu", weights_only=True)
    sd = ck["state_dicts"]["policy"]
    name = next(k for k, v in sd.items() if torch.is_floating_point(v) and v.numel() > 1)
    sd[name] = sd[name].clone()
    sd[name].view(-1)[0] = float("nan")
    torch.save(ck, dst)
    return dst


class FaultScript:
    """Observer and fault injector living in the runner's process (added by ``on_ready``)."""

    def __init__(self, context, names: list[str], faults: dict[str, str], settle_s: float):
        from geometry_msgs.msg import PoseStamped, TwistStamped
        from rclpy.node import Node
        from sim_bridge import topics
        from std_msgs.msg import String

        self.topics = topics
        self.TwistStamped = TwistStamped
        self.node = Node("fault_script", context=context)
        self.names = names
        self.faults = faults
        self.settle_s = settle_s
        self.lock = threading.Lock()
        self.track: dict[str, list[tuple[float, np.ndarray]]] = {n: [] for n in names}
        self.cmd_t: dict[str, list[float]] = {n: [] for n in names}
        self.events: list[dict] = []
        self.t_f: float | None = None
        self.stopped: list[int] = []
        self.scripted = {faults[f] for f in SCRIPTED if f in faults}
        self.nominal = {
            n: self.node.create_publisher(
                TwistStamped, topics.robot_topic(n, topics.CMD_VEL_NOMINAL), 1
            )
            for n in self.scripted
        }
        for n in names:
            self.node.create_subscription(
                PoseStamped, topics.robot_topic(n, topics.POSE), lambda m, n=n: self._pose(n, m), 5
            )
            self.node.create_subscription(
                TwistStamped,
                topics.robot_topic(n, topics.CMD_VEL),
                lambda m, n=n: self.cmd_t[n].append(time.time()),
                5,
            )
        self.node.create_subscription(
            String, topics.EVENTS, lambda m: self.events.append(json.loads(m.data)), 50
        )
        self.node.create_timer(0.05, self._command)
        self.ready_since: float | None = None
        self.nan_pid: int | None = None
        self.t_nan: float | None = None

    def _pose(self, n, m):
        p, st = m.pose.position, m.header.stamp
        with self.lock:
            self.track[n].append((st.sec + 1e-9 * st.nanosec, np.array([p.x, p.y, p.z])))

    def _stamp(self, msg, t: float) -> None:
        msg.header.stamp.sec = int(t)
        msg.header.stamp.nanosec = int((t - int(t)) * 1e9)

    def _command(self) -> None:
        """20 Hz north at 0.2 m/s for the scripted robots, until the fault."""
        if self.t_f is not None:
            return
        for pub in self.nominal.values():
            msg = self.TwistStamped()
            msg.header.frame_id = self.topics.WORLD_FRAME
            self._stamp(msg, time.time())
            msg.twist.linear.y = 0.2
            pub.publish(msg)

    def _commanded(self, n: str, within: float) -> bool:
        return bool(self.cmd_t[n]) and time.time() - self.cmd_t[n][-1] < within

    def _watch_nan_node(self, now: float) -> None:
        """The NaN-checkpoint robot's fault time is when its policy process exits."""
        n = self.faults.get("nan_checkpoint")
        if n is None or self.t_nan is not None:
            return
        if self.nan_pid is None:
            from sim_bridge.ros.graph import child_pid

            self.nan_pid = child_pid(f"__ns:=/{n}", "__node:=policy")
            if self.nan_pid is None:
                self.t_nan = now  # already gone (reaped by the runner)
            return
        try:
            os.kill(self.nan_pid, 0)
            with open(f"/proc/{self.nan_pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    self.t_nan = now
        except (ProcessLookupError, FileNotFoundError):
            self.t_nan = now

    def step(self) -> bool:
        """Called by the runner after every spin; True ends the run."""
        now = time.time()
        self._watch_nan_node(now)
        if self.t_f is None:
            live = [n for n in self.names if n != self.faults.get("nan_checkpoint")]
            if all(self._commanded(n, 0.2) for n in live):
                self.ready_since = self.ready_since or now
            else:
                self.ready_since = None
            if self.ready_since is not None and now - self.ready_since >= self.settle_s:
                self._inject()
            return False
        done = all(self._landed_at(self.faults[f]) is not None for f in self.faults)
        limit = self.topics.LAND_AFTER_S + 5.0 + 2.0
        if done and now - self.t_f > 3.0 or now - self.t_f > limit:
            for pid in self.stopped:  # let the runner's SIGINT reach them
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            return True
        return False

    def _inject(self) -> None:
        self.t_f = time.time()
        f = self.faults
        if "future_stamp" in f:
            msg = self.TwistStamped()
            msg.header.frame_id = self.topics.WORLD_FRAME
            self._stamp(msg, self.t_f + 3600.0)
            msg.twist.linear.y = 0.3
            self.nominal[f["future_stamp"]].publish(msg)
        for fault, sig, node in (
            ("sigstop_policy", signal.SIGSTOP, "policy"),
            ("sigkill_policy", signal.SIGKILL, "policy"),
            ("sigkill_filter", signal.SIGKILL, "cbf_filter"),
            ("sigstop_filter", signal.SIGSTOP, "cbf_filter"),
        ):
            if fault in f:
                from sim_bridge.ros.graph import child_pid

                pid = child_pid(f"__ns:=/{f[fault]}", f"__node:={node}")
                if pid is None:
                    raise SystemExit(f"faults: {node} process of {f[fault]} not found")
                os.kill(pid, sig)
                if sig == signal.SIGSTOP:
                    self.stopped.append(pid)

    def _landed_at(self, n: str) -> float | None:
        with self.lock:
            track = list(self.track[n])
        airborne = False
        for t, p in track:
            airborne |= p[2] > 0.3
            if airborne and p[2] < GROUND_Z:
                return t
        return None

    def results(self, t0: float) -> dict:
        topics = self.topics
        out: dict = {}
        unsafe, landed = 0.0, 0
        for fault, n in self.faults.items():
            t_fault = self.t_f
            if fault == "nan_checkpoint":
                t_fault = self.t_nan if self.t_nan is not None else t0
            with self.lock:
                track = [(t, p) for t, p in self.track[n] if t > t_fault + topics.CMD_TIMEOUT_S]
            pts = np.array([p[:2] for t, p in track[1:]]) if len(track) > 2 else np.zeros((0, 2))
            # the first sample after the timeout may still carry the last fresh step: slack
            moved = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum()) if len(pts) else 0.0
            out[f"unsafe_motion_m_{fault}"] = moved
            unsafe += moved
            t_land = self._landed_at(n)
            dt = (t_land - t_fault) if t_land is not None else math.inf
            out[f"land_s_{fault}"] = dt
            landed += dt <= topics.LAND_AFTER_S + 5.0
        out["unsafe_motion_m"] = unsafe
        out["landed_after_fault_pct"] = 100.0 * landed / len(self.faults)
        others = [n for n in self.names if n not in self.faults.values()]
        watchdog = {e.get("robot") for e in self.events if e.get("type") == "watchdog_land"}
        ok = 0
        for n in others:
            with self.lock:
                z = self.track[n][-1][1][2] if self.track[n] else 0.0
            ok += z > 0.3 and n not in watchdog and self._commanded(n, 1.0)
        out["others_unaffected_pct"] = 100.0 * ok / len(others) if others else math.nan
        out["n_faults"] = len(self.faults)
        out["n_unaffected"] = len(others)
        return out


def fault_run(n_robots: int, settle_s: float = 2.0) -> dict:
    """The scripted fault run; returns the flat keys of the module docstring."""
    from sim_bridge.bringup import plan
    from sim_bridge.config import load_config
    from sim_bridge.ros.runner import run_processes

    with tempfile.TemporaryDirectory(prefix="bench_faults_") as tmp:
        tmp = Path(tmp)
        path = fault_config(tmp / "faults.yaml", n_robots)
        cfg = load_config(path)
        faults = {f: n for f, n in FAULTS.items() if n in cfg.robot_names}
        specs = plan(cfg, path, autostart=True)
        scripted = {faults[f] for f in SCRIPTED if f in faults}
        specs = [
            s for s in specs if not (s.name == "policy" and s.namespace.strip("/") in scripted)
        ]
        if "nan_checkpoint" in faults:
            bad = nan_checkpoint(str(cfg.resolve_checkpoint()), tmp / "nan.pt")
            for s in specs:
                if s.name == "policy" and s.namespace.strip("/") == faults["nan_checkpoint"]:
                    s.parameters["checkpoint"] = str(bad)
        holder: dict = {}

        def on_ready(context, ex):
            holder["s"] = FaultScript(context, cfg.robot_names, faults, settle_s)
            ex.add_node(holder["s"].node)

        t0 = time.time()
        res = run_processes(
            specs,
            cfg,
            duration=180.0,
            status_every=0,
            out=open(os.devnull, "w"),  # noqa: SIM115 (closed with the process)
            log_dir=str(tmp / "logs"),
            on_ready=on_ready,
            should_stop=lambda: holder["s"].step() if "s" in holder else False,
        )
        script = holder["s"]
        if script.t_f is None:
            raise SystemExit(f"faults: the swarm never flew on its commands ({res.stop_reason})")
        out = script.results(t0)
        out["run_wall_s"] = res.wall_s
        out["node_exits"] = len(res.node_exits)
        out["run_stop_reason"] = res.stop_reason
    return out


def radio_part(quick: bool) -> dict:
    from radio import outage_recovery

    out = {}
    short = outage_recovery(1.6)
    out["radio_recover_s_short"] = short["recover_s"]
    armed = short["motors_armed_on_ground"]
    if not quick:
        long = outage_recovery(5.0)
        out["radio_recover_s_long"] = long["recover_s"]
        armed += long["motors_armed_on_ground"]
    out["motors_armed_on_ground"] = armed
    return out


def validate_part() -> dict:
    """``swarm validate`` of a 30 000-robot config (a subprocess: wall time, peak memory)."""
    from validate import big_config_yaml, run_validate

    with tempfile.TemporaryDirectory(prefix="bench_faults_validate_") as tmp:
        path = Path(tmp) / "robots30k.yaml"
        path.write_text(big_config_yaml(30_000, 4))
        wall, _cpu, peak_mib, code, _err = run_validate(path)
    return {
        "validate_s_30k_robots": wall,
        "validate_peak_mib_30k_robots": peak_mib,
        "validate_exit_30k_robots": code,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="< 1 min: no long radio outage")
    ap.add_argument("--robots", type=int, default=9, help="robots of demo.yaml (>= 8)")
    ap.add_argument("--json", help="write the flat JSON summary here")
    args = ap.parse_args(argv)
    if args.robots < len(FAULTS) + 1:
        print(f"faults: --robots must be >= {len(FAULTS) + 1}", file=sys.stderr)
        return 2
    out = {"load_avg_1min_start": os.getloadavg()[0]}
    # validation first: a child's peak RSS includes what it inherited from this process at
    # fork, so it is measured before rclpy, torch and cflib are loaded here
    out.update(validate_part())
    out.update(fault_run(args.robots))
    out.update(radio_part(args.quick))
    out["load_avg_1min_end"] = os.getloadavg()[0]

    print(f"{'fault':16s} {'robot':>5s} {'unsafe m':>9s} {'to ground s':>11s}")
    for fault, n in FAULTS.items():
        print(
            f"{fault:16s} {n:>5s} {out[f'unsafe_motion_m_{fault}']:9.3f} "
            f"{out[f'land_s_{fault}']:11.2f}"
        )
    for key in (
        "unsafe_motion_m",
        "landed_after_fault_pct",
        "others_unaffected_pct",
        "radio_recover_s_short",
        "radio_recover_s_long",
        "motors_armed_on_ground",
        "validate_s_30k_robots",
    ):
        if key in out:
            print(f"{key:28s} {out[key]}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
