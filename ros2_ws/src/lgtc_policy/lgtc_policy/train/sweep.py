"""``lgtc sweep``: Fig. 3's comparison (methods x seeds, one env-step budget) as one resumable
command.

Every run writes ``<run_dir>/<algo>_s<seed>/`` (the layout ``lgtc figures fig3 --runs`` reads):
``progress.csv`` (the training curve, one row per update), ``last.pt`` every
``--checkpoint-every`` env steps (weights, optimisers, the generators, the env and the recurrent
carry: a resumed run continues exactly as the uninterrupted one), ``best.pt``,
``final_eval.json``. The PPO family's seeds of one method train side by side in one process
(:mod:`lgtc_policy.train.stacked`); SAC runs one seed after the other. ``<run_dir>/sweep.csv``
collects the final evaluations.

``--resume true`` (after an interruption, or on another machine with the folder copied):
finished runs (``final_eval.json`` at the budget) are skipped, interrupted ones continue from
their ``last.pt`` (the budget may grow), missing ones start. Without it an existing run folder
is an error, so nothing is overwritten by accident.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from lgtc_policy.model.checkpoint import load_checkpoint
from lgtc_policy.train.common import ConfigError
from lgtc_policy.train.config import PPO_ALGOS, SAC_ALGOS, PPOConfig, SACConfig, _Common

__all__ = ["FIG3_ALGOS", "run_sweep"]

FIG3_ALGOS = ("lgtc_ippo", "ippo", "mamoppo", "vdn", "qmix")


def _state(d: Path, budget: int) -> str:
    """'done', 'partial' (a last.pt below the budget) or 'new'."""
    last = d / "last.pt"
    if not last.is_file():
        return "new"
    steps = int((load_checkpoint(last).get("progress") or {}).get("env_steps", 0))
    if steps >= budget and (d / "final_eval.json").is_file():
        return "done"
    return "partial"


def run_sweep(
    common: dict,
    algos: list[str],
    seeds: list[int],
    run_dir: str,
    resume: bool,
    family: dict[str, dict] | None = None,
) -> list[dict]:
    """Train every ``algo x seed`` with the shared options ``common`` (fields of the
    trainers' common config, e.g. ``total_env_steps``, ``device``, ``g``) and the per-family
    ones ``family = {"ppo": {...}, "sac": {...}}`` (PPOConfig / SACConfig fields, e.g.
    ``rollout``); returns the rows of ``sweep.csv``."""
    root = Path(run_dir)
    bad = [a for a in algos if a not in (*PPO_ALGOS, *SAC_ALGOS)]
    if bad:
        raise ConfigError(f"--algos {bad}: choose among {FIG3_ALGOS}")
    for algo in algos:
        fam = (family or {}).get("ppo" if algo in PPO_ALGOS else "sac", {})
        _sweep_method(algo, {**common, **fam}, seeds, root, resume)
    return _summarise(root, algos, seeds)


def _sweep_method(algo: str, common: dict, seeds: list[int], root: Path, resume: bool) -> None:
    """Every seed of one method: finished ones skipped, partial ones resumed, new ones started
    (the PPO family's new seeds side by side in one process)."""
    from lgtc_policy.train.ppo import train_ppo
    from lgtc_policy.train.sac import train_sac
    from lgtc_policy.train.stacked import train_ppo_seeds

    cls = PPOConfig if algo in PPO_ALGOS else SACConfig
    train = train_ppo if cls is PPOConfig else train_sac
    try:
        base = dataclasses.replace(cls(algo=algo), **common)
    except TypeError as e:
        raise ConfigError(f"lgtc sweep: an option does not apply to {algo}: {e}") from e

    def cfg_of(seed: int, **kw) -> PPOConfig | SACConfig:
        d = str(root / f"{algo}_s{seed}")
        return dataclasses.replace(base, seed=seed, run_dir=d, **kw).validate()

    states = {s: _state(root / f"{algo}_s{s}", base.total_env_steps) for s in seeds}
    started = [s for s, st in states.items() if st != "new"]
    if started and not resume:
        raise ConfigError(
            f"{root}/{algo}_s{started[0]} exists: pass --resume true to continue the sweep "
            "or a new --run-dir"
        )
    for s in (s for s, st in states.items() if st == "partial"):
        train(cfg_of(s, resume=True))
    new = [s for s, st in states.items() if st == "new"]
    if cls is PPOConfig and len(new) > 1:
        train_ppo_seeds(cfg_of(new[0], seeds=tuple(new)), [root / f"{algo}_s{s}" for s in new])
    else:
        for s in new:
            train(cfg_of(s))


def _summarise(root: Path, algos: list[str], seeds: list[int]) -> list[dict]:
    keys = ("reward_mean", "reward_std", "demand_satisfied_mean", "best_eval_reward")
    rows = []
    for algo in algos:
        for s in seeds:
            f = root / f"{algo}_s{s}" / "final_eval.json"
            ev = json.loads(f.read_text()) if f.is_file() else {}
            rows.append({"algo": algo, "seed": s, **{k: ev.get(k, "") for k in keys}})
    with (root / "sweep.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["algo", "seed", *keys])
        w.writeheader()
        w.writerows(rows)
    return rows


def common_fields() -> tuple[str, ...]:
    """The options a sweep shares between methods (everything but seed, run dir, resume)."""
    skip = ("seed", "run_dir", "resume")
    return tuple(f.name for f in dataclasses.fields(_Common) if f.name not in skip)
