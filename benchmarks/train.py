"""Training throughput and per-robot inference latency of the LGTC policy (issue 5).

Measured side by side in one run, on this machine, single process:

* ``train_env_steps_per_s``: LGTC-IPPO env steps (team transitions, N = 10, M = 4) per second
  *including* the PPO updates (Table I: 4 epochs, minibatch 64), from a short training run;
* ``ippo_train_env_steps_per_s``: the same for the reduced IPPO network;
* ``train_cbf_env_steps_per_s``: LGTC-IPPO with every action through the expert's CBF filter
  (``--safety-filter cbf``, how the shipped checkpoint's last stage was trained), and
  ``cbf_overhead_ratio`` = train_env_steps_per_s / train_cbf_env_steps_per_s;
* ``infer_ms_per_robot_median`` / ``_p90``: one decentralized step of one robot
  (``DecentralizedPolicy.step``: numpy, float32) with 4 neighbour messages, N = 10, M = 4,
  G = F = 64, MLP [256, 256];
* ``infer_torch_ms_per_robot_median``: the batched torch forward of a whole team of 10 divided
  by 10 (for comparison).

Usage: ``python benchmarks/train.py [--quick] [--json FILE] [--threads 1]``.
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
from lgtc_policy.train.config import PPOConfig
from lgtc_policy.train.ppo import train_ppo


def train_speed(
    algo: str, steps: int, num_envs: int, rollout: int, threads: int, safety_filter: str = "none"
) -> float:
    with tempfile.TemporaryDirectory() as d:
        cfg = PPOConfig(
            algo=algo,
            safety_filter=safety_filter,
            total_env_steps=steps,
            num_envs=num_envs,
            rollout=rollout,
            eval_every=10**12,
            eval_episodes=1,
            checkpoint_every=10**12,
            run_dir=d,
            progress=False,
            tensorboard=False,
            threads=threads,
        )
        t = time.perf_counter()
        train_ppo(cfg)
        return steps / (time.perf_counter() - t)


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
    ap.add_argument("--quick", action="store_true", help="short run (< 1 min)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.quick:
        steps, envs, rollout, reps = 1536, 16, 768, 300
    else:
        steps, envs, rollout, reps = 12288, 64, 6144, 2000
    res = infer_latency(reps)
    res["train_env_steps_per_s"] = train_speed("lgtc_ippo", steps, envs, rollout, a.threads)
    res["ippo_train_env_steps_per_s"] = train_speed("ippo", steps, envs, rollout, a.threads)
    res["train_cbf_env_steps_per_s"] = train_speed(
        "lgtc_ippo", steps, envs, rollout, a.threads, safety_filter="cbf"
    )
    res["cbf_overhead_ratio"] = res["train_env_steps_per_s"] / res["train_cbf_env_steps_per_s"]
    res["train_agent_steps_per_s"] = res["train_env_steps_per_s"] * EnvConfig().n_agents
    res.update(quick=a.quick, threads=a.threads, num_envs=envs, rollout=rollout)
    print(f"{'metric':40s} value")
    for k, v in res.items():
        print(f"{k:40s} {v:.4g}" if isinstance(v, float) else f"{k:40s} {v}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
