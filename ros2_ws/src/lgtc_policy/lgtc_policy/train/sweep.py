"""``lgtc sweep``: Fig. 3's comparison (methods x seeds, one env-step budget) as one resumable
command.

Every run writes ``<run_dir>/<algo>_s<seed>/`` (the layout ``lgtc figures fig3 --runs`` reads):
``progress.csv`` (the training curve, one row per update), ``last.pt`` every
``--checkpoint-every`` env steps (weights, optimisers, the generators, the env and the recurrent
carry: a resumed run continues exactly as the uninterrupted one), ``best.pt``,
``final_eval.json``. The PPO family's seeds of one method train side by side in one process
(:mod:`lgtc_policy.train.stacked`); SAC runs one seed after the other. ``<run_dir>/sweep.csv``
collects the final evaluations.

Every run's config is checked before the first one trains: ``--ppo-options`` /
``--sac-options`` keys must be fields of the family's config that the sweep does not set
itself (``algo``, ``seed``, ``seeds``, ``run_dir``, ``resume``), values pass the train
config's field rules (:func:`lgtc_policy.train.config.check_field_types`, then ``validate``);
an error names the key.

``--resume true`` (after an interruption, or on another machine with the folder copied):
finished runs (``final_eval.json`` at the budget) are skipped, interrupted ones continue from
their ``last.pt`` (the budget may grow), missing ones start. Without it an existing run folder
is an error, so nothing is overwritten by accident.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

from lgtc_policy.model.checkpoint import load_checkpoint
from lgtc_policy.train.common import ConfigError
from lgtc_policy.train.config import (
    PPO_ALGOS,
    SAC_ALGOS,
    PPOConfig,
    SACConfig,
    _Common,
    check_field_types,
    flag,
)

__all__ = ["FIG3_ALGOS", "run_sweep"]

FIG3_ALGOS = ("lgtc_ippo", "ippo", "mamoppo", "vdn", "qmix")
#: Fields the sweep sets itself, per run (the option that sets each).
SWEEP_SET = {"algo": "--algos", "seed": "--seeds", "seeds": "--seeds", "run_dir": "--run-dir",
             "resume": "--resume"}  # fmt: skip


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
    family = family or {}
    for fam, opts in family.items():
        check_family_options(fam, opts)
    for algo in algos:  # every run's config checked before the first one trains
        fam = "ppo" if algo in PPO_ALGOS else "sac"
        for s in seeds:
            _config(algo, common, fam, family.get(fam, {}), s, root)
    for algo in algos:
        fam = family.get("ppo" if algo in PPO_ALGOS else "sac", {})
        _sweep_method(algo, {**common, **fam}, seeds, root, resume)
    return _summarise(root, algos, seeds)


def check_family_options(fam: str, opts: dict) -> None:
    """``--ppo-options`` / ``--sac-options``: every key a field of the family's config that the
    sweep does not set itself, every value of the field's type (:func:`check_field_types`);
    raises :class:`ConfigError` naming the key and the fix."""
    cls = PPOConfig if fam == "ppo" else SACConfig
    names = {f.name for f in dataclasses.fields(cls)}
    for key in opts:
        if key in SWEEP_SET:
            raise ConfigError(
                f"--{fam}-options {key!r}: the sweep sets it for each run; use "
                f"{SWEEP_SET[key]} instead"
            )
        if key not in names:
            raise ConfigError(
                f"--{fam}-options {key!r}: not a {cls.__name__} field; the fields are the "
                f"options of `lgtc train --algo {cls().algo}` (see --help), in snake_case"
            )
    check_field_types(cls, opts, label=lambda key: f"--{fam}-options {key!r}")


def _config(
    algo: str, common: dict, fam: str, opts: dict, seed: int, root: Path
) -> PPOConfig | SACConfig:
    """The validated config of one run (``common`` then the family's ``opts``); an error
    names the ``--<fam>-options`` keys among the options it names."""
    cls = PPOConfig if algo in PPO_ALGOS else SACConfig
    try:
        return dataclasses.replace(
            cls(algo=algo), **{**common, **opts}, seed=seed, run_dir=str(root / f"{algo}_s{seed}")
        ).validate()
    except ConfigError as e:
        keys = [k for k in opts if re.search(re.escape(flag(k)) + r"(?![\w-])", str(e))]
        where = f" (set by --{fam}-options {', '.join(map(repr, keys))})" if keys else ""
        raise ConfigError(f"{algo}: {e}{where}") from None


def _sweep_method(algo: str, common: dict, seeds: list[int], root: Path, resume: bool) -> None:
    """Every seed of one method: finished ones skipped, partial ones resumed, new ones started
    (the PPO family's new seeds side by side in one process)."""
    from lgtc_policy.train.ppo import train_ppo
    from lgtc_policy.train.sac import train_sac
    from lgtc_policy.train.stacked import train_ppo_seeds

    cls = PPOConfig if algo in PPO_ALGOS else SACConfig
    train = train_ppo if cls is PPOConfig else train_sac
    base = dataclasses.replace(cls(algo=algo), **common)  # fields checked by run_sweep

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
