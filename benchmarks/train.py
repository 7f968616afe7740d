"""Training throughput, FLOP efficiency and per-robot inference latency of the LGTC policy
(issues 5 and 16).

Measured side by side in one run, on this machine, single process:

* ``train_env_steps_per_s``: LGTC-IPPO env steps (team transitions, N = 10, M = 4) per second
  *including* the PPO updates, at Table I's settings (64 envs x 96 steps = rollout 6144,
  4 epochs, minibatch 64, G = F = 64, MLP [256, 256]) and the trainer's defaults (sequence BPTT
  over 10 ticks), on ``--device`` with ``--threads`` (0 = all cores); the first update is a
  warm-up and not counted when there are more;
* ``rollout_s_per_update`` / ``update_s_per_update``: where that time goes (env + forward of
  the rollout vs. the PPO epochs: forward, backward, Adam);
* ``train_flop_per_env_step``: matrix FLOPs of the two networks per env step (rollout forward
  + 4 epochs of forward and backward), counted by ``torch.utils.flop_counter.FlopCounterMode``
  on the real trainer code (run on one thread for the count, so that the value network's
  half, which steps on a second thread with ``--threads >= 2``, is counted too);
  ``train_flop_per_s`` = that x ``train_env_steps_per_s``;
* ``matmul_flop_per_s``: a dense 1024 x 1024 float32 matmul on the same device and threads, in
  the same run (best of ten 0.1 s windows); ``flop_efficiency`` =
  ``train_flop_per_s / matmul_flop_per_s``;
* ``update_matmul_flop_per_s``: the update's own matrix products (the shapes and counts of one
  minibatch, both networks, forward and backward) timed back to back with the trainer's split
  of the threads; ``flop_efficiency_matmul_bound`` = that / ``matmul_flop_per_s``, the
  efficiency of a trainer whose only cost were its matrix products (the ceiling for these
  network sizes); ``matmul_time_fraction`` = ``train_flop_per_s / update_matmul_flop_per_s``,
  the share of the training wall time that its matrix products would take at that speed (the
  rest goes to element-wise operations, gathers, softmax, autograd and Python dispatch, Adam
  and the env);
* ``train_env_steps_per_s_cuda``: the same Table I run on CUDA, when a GPU is present;
* with ``--compile on``: ``train_env_steps_per_s_compiled``, ``update_s_per_update_compiled``
  and ``flop_efficiency_compiled``, the same Table I run with ``PPOConfig.compile = "on"``
  (``torch.compile`` of each network's minibatch forward + loss) after one warm-up update, and
  ``compile_s``, the one-off compile time (that warm-up update's time minus a compiled one's);
* ``ippo_train_env_steps_per_s``: the reduced IPPO network (full run only);
* ``train_cbf_env_steps_per_s``: LGTC-IPPO with every action through the expert's CBF filter
  (``--safety-filter cbf``), and ``cbf_overhead_ratio`` (full run only);
* ``infer_ms_per_robot_median`` / ``_p90``: one decentralized step of one robot
  (``DecentralizedPolicy.step``: numpy, float32) with 4 neighbour messages, N = 10, M = 4,
  G = F = 64, MLP [256, 256]; ``infer_torch_ms_per_robot_median``: the batched torch forward
  of a whole team of 10 divided by 10.

Usage: ``python benchmarks/train.py [--quick] [--json FILE] [--threads 0] [--device auto]
[--compile off]``;
``--quick`` (< 1 min on a free 2-core CPU) runs one Table I update of LGTC-IPPO only;
``--profile`` also prints the aten operators that take the update's time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from lgtc_policy.env import EnvConfig, ResourceEnv
from lgtc_policy.model.decentralized import AgentObs, DecentralizedPolicy
from lgtc_policy.model.features import inputs_from_obs, item_dims
from lgtc_policy.model.lgtc import LGTCNet, NetConfig
from lgtc_policy.train.common import ConfigError, resolve_device, set_seed, set_threads
from lgtc_policy.train.config import PPOConfig
from lgtc_policy.train.ppo import ActorCritic, PPORun


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(algo: str, num_envs: int, rollout: int, device: torch.device, **kw) -> PPORun:
    with tempfile.TemporaryDirectory() as d:
        cfg = PPOConfig(
            algo=algo, num_envs=num_envs, rollout=rollout, run_dir=d, progress=False,
            tensorboard=False, device=device.type, **kw,
        ).validate()  # fmt: skip
    set_seed(cfg.seed)
    ac = ActorCritic(cfg, cfg.env_config().n_resources).to(device)
    return PPORun(cfg, ac, 0, device)


def train_speed(
    algo: str, updates: int, device: torch.device, safety_filter: str = "none", compile="off"
) -> dict[str, float]:
    """Env steps/s of ``updates`` Table I PPO updates (collect + update), the first one a
    warm-up when ``updates > 1``; the seconds of each phase per update, and of the first
    update (``first_s``)."""
    pr = _run(algo, 64, 6144, device, safety_filter=safety_filter, compile=compile)
    times = []
    for _ in range(updates):
        t0 = time.perf_counter()
        ro = pr.collect()
        _sync(device)
        t1 = time.perf_counter()
        pr.update(ro, True)
        _sync(device)
        times.append((t1 - t0, time.perf_counter() - t1))
    first = sum(times[0])
    times = times[1:] if len(times) > 1 else times
    roll = sum(t[0] for t in times) / len(times)
    upd = sum(t[1] for t in times) / len(times)
    sp = {"env_steps_per_s": 6144 / (roll + upd), "rollout_s": roll, "update_s": upd}
    return {**sp, "first_s": first}


class _OneThread:
    """Torch threads set to 1 inside (restored on exit): the trainer then runs the policy and
    the value on the calling thread, where a dispatch mode (FLOP counter, shape recorder)
    sees both; with >= 2 threads the value's half would run on a second thread, unseen."""

    def __enter__(self) -> None:
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.n)


def train_flops_per_env_step(algo: str, device: torch.device) -> float:
    """Matrix FLOPs per env step of the trainer's rollout and update (Table I networks,
    minibatch, epochs and BPTT; a 10-tick rollout of 64 envs, counted on the real code)."""
    from torch.utils.flop_counter import FlopCounterMode

    with _OneThread():
        pr = _run(algo, 64, 640, device)
        with FlopCounterMode(display=False) as fc:
            ro = pr.collect()
            pr.update(ro, True)
    return fc.get_total_flops() / 640


def update_matmul_bound(device: torch.device, threads: int, seconds: float = 0.05) -> float:
    """FLOP/s of the update's own matrix products (every ``mm`` / ``addmm`` / ``bmm`` of one
    LGTC-IPPO minibatch, forward and backward, both networks, with their shapes and counts)
    run back to back on contiguous random inputs: what the update would reach if nothing but
    its matrix products took time. With the trainer's split of ``threads``: on the CPU with
    >= 2 threads the two networks step side by side with half of them each, so the products
    are timed with ``threads // 2`` threads and the rate doubled (perfect overlap)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls: dict[tuple, int] = {}

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in ("mm", "addmm", "bmm"):
                key = (name, *(tuple(a.shape) for a in args if isinstance(a, torch.Tensor)))
                calls[key] = calls.get(key, 0) + 1
            return func(*args, **(kwargs or {}))

    with _OneThread():
        pr = _run("lgtc_ippo", 64, 640, device)
        seqs, valid = pr.collect().sequences(pr.cfg.bptt)
        idx = torch.arange(-(-pr.cfg.minibatch // pr.cfg.bptt), device=device)
        with Record():
            pr._policy_step(seqs.take(idx), valid[:, idx], True)
            pr._value_step(seqs.take(idx), valid[:, idx])
    sides = 2 if device.type == "cpu" and threads >= 2 else 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads // sides)
    flops = secs = 0.0
    for (name, *shapes), count in calls.items():
        args = [torch.randn(sh, device=device) for sh in shapes]
        op = {"mm": torch.mm, "addmm": torch.addmm, "bmm": torch.bmm}[name]
        m, k = shapes[-2][-2:]
        flops += count * 2 * m * k * shapes[-1][-1] * (shapes[-1][0] if name == "bmm" else 1)
        op(*args)
        _sync(device)
        reps, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            op(*args)
            reps += 1
        _sync(device)
        secs += count * (time.perf_counter() - t) / reps
    torch.set_num_threads(before)
    return sides * flops / secs


def matmul_flops(device: torch.device, n: int = 1024, seconds: float = 1.0) -> float:
    """Dense float32 ``n x n`` matmul FLOP/s on ``device`` (the machine's own peak): the best
    of ten windows of ``seconds / 10``, so that a moment of another job's load on a shared
    machine does not pass for the peak."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    best = 0.0
    for _ in range(10):
        reps, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds / 10:
            a @ b
            reps += 1
            if device.type == "cuda" and reps % 50:
                continue
            _sync(device)
        _sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def profile_update(device: torch.device) -> str:
    """The aten operators of a Table I update (collect + PPO epochs; 10 ticks of 64 envs,
    the same shapes as the full 96), by self time."""
    from torch.profiler import ProfilerActivity, profile

    pr = _run("lgtc_ippo", 64, 640, device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        pr.update(pr.collect(), True)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=15)


def infer_latency(repeats: int) -> dict[str, float]:
    cfg = EnvConfig()
    env = ResourceEnv(cfg, 1, seed=0)
    obs = env.reset()
    da, dc = item_dims(cfg.n_resources)
    net = LGTCNet(NetConfig(agent_item_dim=da, consumer_item_dim=dc, out_dim=2))
    dec = DecentralizedPolicy(net, cfg.n_resources)
    z = AgentObs.from_batched(obs, 0, 0)
    msgs = np.stack([dec.initial_message(AgentObs.from_batched(obs, 0, j)) for j in range(1, 5)])
    state = dec.initial_state()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        _, _, state = dec.step(z, msgs, state)
        times.append(time.perf_counter() - t)
    inp = inputs_from_obs(obs)
    x = torch.zeros(1, cfg.n_agents, net.state_dim)
    tt = []
    with torch.inference_mode():
        for _ in range(max(repeats // 10, 20)):
            t = time.perf_counter()
            net(inp, x)
            tt.append(time.perf_counter() - t)
    ms = np.array(times[repeats // 10 :]) * 1e3
    return {
        "infer_ms_per_robot_median": float(np.median(ms)),
        "infer_ms_per_robot_p90": float(np.percentile(ms, 90)),
        "infer_torch_ms_per_robot_median": float(np.median(tt) * 1e3 / cfg.n_agents),
        "message_dim": dec.message_dim,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one Table I update (< 1 min)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--profile", action="store_true", help="print the update's top operators")
    ap.add_argument(
        "--compile", default="off", choices=["off", "on"],
        help="also time the update with torch.compile (PPOConfig.compile; minutes to compile)",
    )  # fmt: skip
    a = ap.parse_args()
    threads = set_threads(a.threads)
    try:
        device = resolve_device(a.device)
    except ConfigError as e:
        raise SystemExit(f"benchmarks/train.py: {e}") from None
    updates, reps = (1, 300) if a.quick else (3, 2000)
    res: dict = infer_latency(reps)
    sp = train_speed("lgtc_ippo", updates, device)
    res["train_env_steps_per_s"] = sp["env_steps_per_s"]
    res["rollout_s_per_update"] = sp["rollout_s"]
    res["update_s_per_update"] = sp["update_s"]
    res["train_flop_per_env_step"] = train_flops_per_env_step("lgtc_ippo", device)
    res["train_flop_per_s"] = res["train_flop_per_env_step"] * res["train_env_steps_per_s"]
    res["matmul_flop_per_s"] = matmul_flops(device)
    res["flop_efficiency"] = res["train_flop_per_s"] / res["matmul_flop_per_s"]
    res["update_matmul_flop_per_s"] = update_matmul_bound(device, threads)
    res["flop_efficiency_matmul_bound"] = res["update_matmul_flop_per_s"] / res["matmul_flop_per_s"]
    res["matmul_time_fraction"] = res["train_flop_per_s"] / res["update_matmul_flop_per_s"]
    if a.compile == "on":
        spc = train_speed("lgtc_ippo", updates + 1, device, compile="on")
        res["train_env_steps_per_s_compiled"] = spc["env_steps_per_s"]
        res["update_s_per_update_compiled"] = spc["update_s"]
        res["flop_efficiency_compiled"] = (
            res["train_flop_per_env_step"] * spc["env_steps_per_s"] / res["matmul_flop_per_s"]
        )
        res["compile_s"] = spc["first_s"] - spc["rollout_s"] - spc["update_s"]
    if device.type == "cuda":
        res["train_env_steps_per_s_cuda"] = res["train_env_steps_per_s"]
    elif torch.cuda.is_available():
        res["train_env_steps_per_s_cuda"] = train_speed("lgtc_ippo", updates, torch.device("cuda"))[
            "env_steps_per_s"
        ]
    if not a.quick:
        res["ippo_train_env_steps_per_s"] = train_speed("ippo", updates, device)["env_steps_per_s"]
        cbf = train_speed("lgtc_ippo", updates, device, safety_filter="cbf")["env_steps_per_s"]
        res["train_cbf_env_steps_per_s"] = cbf
        res["cbf_overhead_ratio"] = res["train_env_steps_per_s"] / cbf
    res["train_agent_steps_per_s"] = res["train_env_steps_per_s"] * EnvConfig().n_agents
    res.update(quick=a.quick, threads=threads, device=str(device), num_envs=64, rollout=6144)
    print(f"{'metric':40s} value")
    for k, v in res.items():
        print(f"{k:40s} {v:.4g}" if isinstance(v, float) else f"{k:40s} {v}")
    if a.profile:
        print(profile_update(device))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
