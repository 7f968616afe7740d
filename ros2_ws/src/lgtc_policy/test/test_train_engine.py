"""Trainer engine: device options, the same first update as the trainers before the device and
consensus rework (fixture), sequence minibatches, old checkpoints' resume semantics."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from lgtc_policy.model.checkpoint import load_checkpoint, save_checkpoint
from lgtc_policy.model.lgtc import NetInputs
from lgtc_policy.train.bc import BCConfig, train_bc
from lgtc_policy.train.common import ConfigError, make_adam, resolve_device, set_threads
from lgtc_policy.train.config import PPOConfig, SACConfig
from lgtc_policy.train.ppo import LEGACY_PPO, Rollout, train_ppo
from lgtc_policy.train.sac import train_sac

FIXTURE = Path(__file__).parent / "data" / "train_first_update_v0.pt"
"""Flattened parameters after the first update(s) of every trainer on the tiny configs below,
recorded with the trainers of commit c0242f6 (CPU, one thread, before ``--device``, sequence
BPTT, eq. 14 sums and eq. 15's paper form existed): ``{algo: {"names": [...], "flat": ...}}``."""

TINY = dict(
    num_envs=4,
    n_agents=3,
    n_consumers=2,
    episode_length=6,
    eval_episodes=1,
    g=4,
    f=4,
    hidden=(8,),
    progress=False,
    tensorboard=False,
    threads=1,
    seed=3,
    eval_every=10**9,
    checkpoint_every=10**9,
)


def _flat(state_dicts: dict, names: list[str]) -> torch.Tensor:
    parts = [n.split("/", 1) for n in names]
    return torch.cat([state_dicts[a][b].float().flatten() for a, b in parts])


def _run(algo: str, device: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        if algo in ("lgtc_ippo", "ippo", "mamoppo"):
            cfg = PPOConfig(
                algo=algo, rollout=32, minibatch=8, epochs=2, total_env_steps=32, run_dir=d,
                device=device, **TINY, **LEGACY_PPO,
            )  # fmt: skip
            train_ppo(cfg)
        elif algo in ("vdn", "qmix"):
            cfg = SACConfig(
                algo=algo, batch=8, buffer=64, learning_starts=16, mix_hidden=(4, 4),
                total_env_steps=24, run_dir=d, device=device, **TINY,
            )  # fmt: skip
            train_sac(cfg)
        else:
            cfg = BCConfig(
                window=3, updates=2, batch_windows=2, total_env_steps=12, run_dir=d,
                pi_form="margin", device=device, **TINY,
            )  # fmt: skip
            train_bc(cfg)
        return load_checkpoint(Path(d) / "last.pt")["state_dicts"]


@pytest.mark.parametrize("algo", ["lgtc_ippo", "ippo", "mamoppo", "vdn", "qmix", "bc_lgtc"])
@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_same_seed_same_first_update_as_before_the_device_path(algo: str, device: str) -> None:
    """Through the device code path (env, networks, buffers, generator on ``device``, tensor
    statistics, fused Adam) with the previous trainer's recurrence and losses
    (:data:`LEGACY_PPO`), the first update equals the recorded one (fused Adam and the
    sync-free advantage normalisation change the float rounding only: <= 1e-6)."""
    if device == "auto" and torch.cuda.is_available():
        pytest.skip("auto is CUDA here: other kernels, other rounding")
    ref = torch.load(FIXTURE, weights_only=True)[algo]
    got = _flat(_run(algo, device), ref["names"])
    torch.testing.assert_close(got, ref["flat"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("algo", ["lgtc_ippo", "mamoppo"])
def test_two_threads_step_the_networks_side_by_side_bit_for_bit(tmp_path, algo: str) -> None:
    """With --threads 2 the value network's step runs on a second thread beside the
    policy's (one thread each): weights, Adam moments and the logged losses equal the
    --threads 1 run's exactly (paper recipe: BPTT 10, sums, paper Pi)."""
    import csv

    before = torch.get_num_threads()
    runs = {}
    try:
        for threads in (1, 2):
            d = tmp_path / f"t{threads}"
            cfg = PPOConfig(
                algo=algo, rollout=32, minibatch=8, epochs=2, total_env_steps=64,
                run_dir=str(d), **{**TINY, "threads": threads},
            )  # fmt: skip
            train_ppo(cfg)
            assert torch.get_num_threads() == threads  # restored after each update
            rows = list(csv.DictReader((d / "progress.csv").open()))
            runs[threads] = (load_checkpoint(d / "last.pt"), rows)
    finally:
        torch.set_num_threads(before)
    (a, rows_a), (b, rows_b) = runs[1], runs[2]
    for net, sd in a["state_dicts"].items():
        for k, v in sd.items():
            assert torch.equal(v, b["state_dicts"][net][k]), (net, k)
    for opt in ("pi", "v"):
        for k, st in a["optim"][opt]["state"].items():
            assert torch.equal(st["exp_avg_sq"], b["optim"][opt]["state"][k]["exp_avg_sq"])
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for k in ("loss_pi", "loss_v", "clipfrac", "approx_kl", "pi_reg", "episode_reward"):
            assert ra[k] == rb[k], k


def test_device_option_and_threads() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda.*--device auto"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="--device"):
        PPOConfig(device="tpu").validate()
    with pytest.raises(ConfigError, match="--bptt"):
        PPOConfig(bptt=0).validate()
    with pytest.raises(ConfigError, match="--pi-form"):
        PPOConfig(pi_form="hinge").validate()
    with pytest.raises(ConfigError, match="--comm 'gossip': choose one of"):
        PPOConfig(comm="gossip").validate()
    with pytest.raises(ConfigError, match="--agent-loss"):
        PPOConfig(agent_loss="max").validate()
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_threads(0) >= 1
    finally:
        torch.set_num_threads(before)
    p = torch.nn.Parameter(torch.zeros(2))
    opt = make_adam([p], 1e-3)
    assert opt.defaults.get("fused") or opt.defaults.get("foreach")


def test_rollout_sequences_layout() -> None:
    """T = 5 ticks, B = 2 envs, L = 2: 3 sequences per env (the last padded), sequence
    ``c * B + b``, first-tick states, and the mask of real ticks."""
    T, B, N = 5, 2, 1

    def tb(*shape):
        return (
            torch.arange(T * B, dtype=torch.float32)
            .view(T, B, *([1] * len(shape)))
            .expand(T, B, *shape)
        )

    inp = NetInputs(*(tb(N, 1) for _ in NetInputs.__dataclass_fields__))
    x = tb(N, 1)
    ro = Rollout(inp, x, x, tb(N, 2), tb(N), tb(N), tb(N), tb(N), tb(), None)
    seqs, valid = ro.sequences(2)
    assert seqs.act.shape == (2, 6, N, 2) and valid.shape == (2, 6)
    # tick t of env b holds t * B + b; sequence c * B + b starts at tick 2c
    starts = seqs.xp[:, 0, 0].tolist()
    assert starts == [0.0, 1.0, 4.0, 5.0, 8.0, 9.0]
    assert seqs.keep[:, 3].tolist() == [5.0, 7.0]  # env 1, ticks 2, 3
    assert valid[:, 4:].tolist() == [[1.0, 1.0], [0.0, 0.0]]  # tick 5 is padding
    assert valid[:, :4].sum() == 8
    flat, v1 = ro.sequences(1)
    assert flat.act[0, :, 0, 0].tolist() == list(map(float, range(T * B)))
    assert v1.all()


def test_resume_of_a_version1_checkpoint_keeps_its_recurrence(tmp_path) -> None:
    """A last.pt written before trainer_version 2 resumes only with the previous semantics
    (``--bptt 1 --agent-loss mean --pi-form margin``); the message names the fields."""
    cfg = PPOConfig(
        algo="lgtc_ippo", rollout=16, minibatch=8, epochs=1, total_env_steps=16,
        run_dir=str(tmp_path), **TINY, **LEGACY_PPO,
    )  # fmt: skip
    train_ppo(cfg)
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["trainer_version"] == 2
    ck.pop("trainer_version")
    ck.pop("format")
    for k in LEGACY_PPO:
        ck["train_config"].pop(k)
    save_checkpoint(tmp_path / "last.pt", ck)
    more = {**cfg.__dict__, "resume": True, "total_env_steps": 32}
    with pytest.raises(ConfigError, match="bptt"):
        train_ppo(PPOConfig(**{**more, "bptt": 10, "pi_form": "paper", "agent_loss": "sum"}))
    train_ppo(PPOConfig(**more))
    assert load_checkpoint(tmp_path / "last.pt")["progress"]["env_steps"] == 32


def test_paper_recipe_trains_through_sequences(tmp_path) -> None:
    """Default recipe (bptt 10, sums, paper Pi) on a tiny budget: finite losses, Pi > 0."""
    import csv

    cfg = PPOConfig(
        algo="lgtc_ippo", rollout=48, minibatch=16, epochs=1, total_env_steps=48,
        run_dir=str(tmp_path), **TINY,
    )  # fmt: skip
    assert cfg.bptt == 10 and cfg.pi_form == "paper" and cfg.agent_loss == "sum"
    train_ppo(cfg)
    row = next(csv.DictReader((tmp_path / "progress.csv").open()))
    assert float(row["pi_reg"]) > 0 and abs(float(row["loss_pi"])) < 1e6
