"""``--compile on``: torch.compile of the PPO update's minibatch losses (single-seed and the
seeds stacked) gives the eager update's numbers, and bad values are refused in one line.

The graphs are compiled with the ``aot_eager`` backend (:data:`common.COMPILE_BACKEND`): the
same capture by dynamo and the same forward/backward split by AOTAutograd as ``inductor``,
run by eager kernels, so no C++ compiler is needed and the test stays fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lgtc_policy.cli import main as lgtc_main
from lgtc_policy.model.checkpoint import load_checkpoint
from lgtc_policy.train import common
from lgtc_policy.train.common import ConfigError
from lgtc_policy.train.config import PPOConfig
from lgtc_policy.train.ppo import train_ppo
from lgtc_policy.train.stacked import train_ppo_seeds
from torch._dynamo.utils import counters

# 4 envs x 8 ticks; sequences of 4 ticks (8 of them), minibatches of 3 sequences: two full
# ones (compiled) and a ragged one of 2 (eager) per epoch
TINY = dict(
    num_envs=4, n_agents=3, n_consumers=2, episode_length=6, eval_episodes=1, g=4, f=4,
    hidden=(8,), progress=False, tensorboard=False, seed=3, eval_every=10**9,
    checkpoint_every=10**9, rollout=32, minibatch=12, bptt=4, epochs=2, total_env_steps=64,
)  # fmt: skip

# Float rounding only: the captured graph runs the same aten kernels (with torch 2.13 and
# aot_eager the weights come out bit for bit equal), but AOTAutograd may decompose an operator
# or sum gradient terms in another order (~1e-7 relative per step), and Adam divides each
# gradient by its own running RMS, so such a difference in a near-zero gradient can move a
# weight by a few 1e-7 over the 8 steps of two updates. 1e-5 stays far below the lr-sized
# (3e-4) steps by which a wrong graph would move the weights.
ATOL = 1e-5


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setattr(common, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _captured(graphs: int) -> None:
    """The compiled path ran: ``graphs`` whole graphs captured, none broken."""
    assert counters["stats"]["unique_graphs"] == graphs
    assert not counters["graph_break"], dict(counters["graph_break"])


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    sd = load_checkpoint(run_dir / "last.pt")["state_dicts"]
    return {f"{net}.{k}": v for net, d in sd.items() for k, v in d.items()}


def _assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=ATOL, msg=k)


@pytest.mark.parametrize("algo, threads", [("lgtc_ippo", 2), ("mamoppo", 1)])
def test_compiled_update_equals_eager(tmp_path, aot_eager, algo: str, threads: int) -> None:
    """Two updates of one seed (with --threads 2 the value's graph is compiled and run on the
    second thread): weights after them equal the eager run's up to float rounding."""
    before = torch.get_num_threads()
    try:
        runs = {}
        for mode in ("off", "on"):
            cfg = PPOConfig(algo=algo, compile=mode, threads=threads, run_dir=str(tmp_path / mode),
                            **TINY)  # fmt: skip
            train_ppo(cfg)
            runs[mode] = _weights(tmp_path / mode)
    finally:
        torch.set_num_threads(before)
    _captured(2)  # the policy's loss and the value's, each compiled once
    _assert_close(runs["off"], runs["on"])


def test_compiled_stacked_update_equals_eager(tmp_path, aot_eager) -> None:
    """Two seeds stacked (vmap over functional_call), compiled: each seed's weights equal the
    eager stacked run's up to float rounding."""
    runs = {}
    for mode in ("off", "on"):
        cfg = PPOConfig(algo="lgtc_ippo", compile=mode, seeds=(3, 4), threads=1,
                        run_dir=str(tmp_path / mode), **TINY)  # fmt: skip
        train_ppo_seeds(cfg)
        runs[mode] = [_weights(tmp_path / mode / f"s{s}") for s in (3, 4)]
    _captured(1)  # both networks' losses of both seeds in one graph
    for a, b in zip(runs["off"], runs["on"], strict=True):
        _assert_close(a, b)


def test_bad_compile_value_is_one_line(tmp_path, capsys) -> None:
    with pytest.raises(ConfigError, match="--compile 'fast'"):
        PPOConfig(compile="fast").validate()
    argv = ["train", "--algo", "lgtc_ippo", "--compile", "fast", "--run-dir", str(tmp_path)]
    assert lgtc_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--compile 'fast'" in err[0] and "'on'" in err[0]
    assert lgtc_main(["train", "--algo", "vdn", "--compile", "on", "--run-dir", str(tmp_path)]) == 2
    assert "--compile" in capsys.readouterr().err
