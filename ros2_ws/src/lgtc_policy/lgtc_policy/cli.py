"""``lgtc`` command line: train, evaluate, fly and study the LGTC mission.

Subcommands: ``train``, ``eval``, ``export``, ``figures``, ``demo``, ``discharge``.

Examples::

    lgtc train --algo lgtc_ippo --total-env-steps 3000000 --run-dir runs/lgtc_ippo_s0
    lgtc eval --checkpoint lgtc_policy:checkpoints/lgtc_ippo_n10_m4.pt --json eval.json
    lgtc sweep --seeds 1 2 3 --total-env-steps 1000000 --run-dir runs/sweep --resume true
    lgtc export --checkpoint runs/lgtc_ippo_s0/best.pt --out lgtc_policy/checkpoints/x.pt
    lgtc figures fig3 --runs runs/sweep --out docs/img
    lgtc demo --config launch/demo.yaml --out runs/demo          # make demo
    lgtc discharge --config launch/discharge.yaml --runs 10      # Fig. 5 study over ROS 2

Errors in options, configs or checkpoints print one line naming the problem and exit 2.
``demo`` and ``discharge`` are :mod:`lgtc_policy.mission.demo` and
:mod:`lgtc_policy.mission.discharge_study` (their options are documented there).
``eval --json`` writes ``reward_mean``, ``reward_std``, ``expert_reward_mean``,
``ratio_to_expert``, ``greedy_reward_mean``, ``demand_satisfied_mean``,
``collisions_per_episode``, ``episodes``, ``seed``, ``cluster_spread_ratio`` (Definition III.1,
:mod:`lgtc_policy.model.clusters`; null for a network without a cluster state) and
``reward_cluster_ratio`` (the same ratio on each agent's reward, Fig. 2), and the policy cell's
``tau_min``, ``coupling`` and ``contraction_c`` (null without a cell).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
from sim_bridge.cli import ArgumentParser, bounded_int
from sim_bridge.config import resolve_package_path

from lgtc_policy.errors import LgtcError
from lgtc_policy.evaluate import evaluate_checkpoint
from lgtc_policy.mission import demo, discharge_study, figures
from lgtc_policy.model.checkpoint import (
    load_checkpoint,
    save_checkpoint,
)
from lgtc_policy.train.common import ConfigError, write_json
from lgtc_policy.train.config import parse_env_overrides

__all__ = ["main", "resolve_checkpoint"]

SHIPPED = "lgtc_policy:checkpoints/lgtc_ippo_n10_m4.pt"
#: Episodes of one batched evaluation (``--episodes``, ``--trials``): far above the paper's 32
#: and the memory of one env batch stays under a GiB.
MAX_EPISODES = 10_000
#: Seeds are NumPy's (unsigned 64-bit) kept in a signed int64, as a swarm file's ``seed``.
SEED = bounded_int(0, 2**63 - 1)
EPISODES = bounded_int(1, MAX_EPISODES)


def resolve_checkpoint(path: str) -> Path:
    """``pkg:relative`` (package-relative, e.g. ``lgtc_policy:checkpoints/x.pt``) or a path.

    A package path resolves strictly inside the package, as a swarm config's
    ``policy.checkpoint`` does (``FileNotFoundError`` otherwise, one line).
    """
    if ":" in path and not Path(path).exists():
        found = resolve_package_path(path, "--checkpoint")
        if found is not None:
            return found
    return Path(path)


def _file_stem(text: str) -> str:
    """``--stem``: a plain file name without folder or suffix (it goes under ``--out``)."""
    ok = text and len(text) <= 100 and text not in (".", "..") and "/" not in text
    if not ok or "\\" in text or "\0" in text or text.startswith("-"):
        raise argparse.ArgumentTypeError(
            f"{text[:100]!r} is not a file name: give a name such as lgtc_relpos_training "
            "(no folder, at most 100 characters; the figure goes under --out)"
        )
    return text


def _title(text: str) -> str:
    """``--title``: one line of at most 200 characters (it is drawn above the figure)."""
    if len(text) > 200 or "\n" in text or "\0" in text:
        raise argparse.ArgumentTypeError(
            f"{len(text)} characters{' with a line break' if chr(10) in text else ''}: give "
            "one line of at most 200 characters"
        )
    return text


def _train(ns: argparse.Namespace) -> int:
    from lgtc_policy.train.bc import BC_ALGOS, BCConfig
    from lgtc_policy.train.common import ConfigError, dataclass_from_args
    from lgtc_policy.train.config import PPO_ALGOS, PPOConfig, SACConfig

    cls = PPOConfig if ns.algo in PPO_ALGOS else BCConfig if ns.algo in BC_ALGOS else SACConfig
    own = {f.name for f in dataclasses.fields(cls)}
    foreign = sorted(
        k
        for c in (PPOConfig, SACConfig, BCConfig)
        for f in dataclasses.fields(c)
        if (k := f.name) not in own and getattr(ns, k, None) is not None
    )
    if foreign:
        opts = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise ConfigError(f"{opts} do(es) not apply to --algo {ns.algo}; remove them")
    if ns.algo in PPO_ALGOS:
        from lgtc_policy.train.ppo import train_ppo

        cfg = dataclass_from_args(PPOConfig, ns, PPOConfig(algo=ns.algo)).validate()
        if cfg.seeds:  # several seeds in one process, run_dir/s<seed>/ each
            from lgtc_policy.train.stacked import train_ppo_seeds

            runs = dict(zip(map(str, cfg.seeds), train_ppo_seeds(cfg)))
            print(json.dumps({"run_dir": cfg.run_dir, "seeds": runs}, indent=2))
            return 0
        summary = train_ppo(cfg)
    elif ns.algo in BC_ALGOS:
        from lgtc_policy.train.bc import train_bc

        cfg = dataclass_from_args(BCConfig, ns, BCConfig(algo=ns.algo)).validate()
        summary = train_bc(cfg)
    else:
        from lgtc_policy.train.sac import train_sac

        cfg = dataclass_from_args(SACConfig, ns, SACConfig(algo=ns.algo)).validate()
        summary = train_sac(cfg)
    print(json.dumps({"run_dir": cfg.run_dir, **summary}, indent=2))
    return 0


def _sweep_arguments(sw: argparse.ArgumentParser) -> None:
    from lgtc_policy.train.common import _parse_bool, add_dataclass_args
    from lgtc_policy.train.config import _Common
    from lgtc_policy.train.sweep import FIG3_ALGOS, common_fields

    sw.add_argument("--algos", nargs="+", default=list(FIG3_ALGOS), help="methods to train")
    sw.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds per method")
    sw.add_argument("--run-dir", default="runs/sweep", help="one <algo>_s<seed>/ per run")
    sw.add_argument(
        "--resume", type=_parse_bool, default=False, help="continue / skip existing runs"
    )
    for fam, cls in (("ppo", "PPOConfig"), ("sac", "SACConfig")):
        sw.add_argument(
            f"--{fam}-options",
            default="",
            help=f"JSON object of {cls} fields for the {fam.upper()} methods only, e.g. "
            + ("'{\"rollout\": 3072}'" if fam == "ppo" else "'{\"num_envs\": 64}'"),
        )
    shared = argparse.ArgumentParser(add_help=False)
    add_dataclass_args(shared, _Common)
    grp = sw.add_argument_group("shared by every method (default: each trainer's own)")
    for act in shared._actions:
        if act.dest in common_fields():
            grp._add_action(act)


def _sweep(ns: argparse.Namespace) -> int:
    from lgtc_policy.train.sweep import common_fields, run_sweep

    common = {k: getattr(ns, k) for k in common_fields() if getattr(ns, k, None) is not None}
    common = {k: tuple(v) if isinstance(v, list) else v for k, v in common.items()}
    family = {}
    for fam in ("ppo", "sac"):
        text = getattr(ns, f"{fam}_options")
        try:
            family[fam] = json.loads(text) if text else {}
        except json.JSONDecodeError as e:
            raise ConfigError(f"--{fam}-options is not valid JSON ({e})") from e
        except RecursionError:
            raise ConfigError(
                f"--{fam}-options is nested too deep; give a flat JSON object"
            ) from None
        if not isinstance(family[fam], dict):
            raise ConfigError(f"--{fam}-options must be a JSON object of config fields")
        family[fam] = {k: tuple(v) if isinstance(v, list) else v for k, v in family[fam].items()}
    if len(set(ns.seeds)) != len(ns.seeds):
        raise ConfigError(f"--seeds {ns.seeds}: each seed once")
    rows = run_sweep(common, ns.algos, ns.seeds, ns.run_dir, ns.resume, family)
    print(json.dumps({"run_dir": ns.run_dir, "runs": rows}, indent=2))
    return 0


def _check_out_file(flag: str, path: str) -> None:
    """``ConfigError`` (one line naming ``flag``) unless ``path`` can be written as a file:
    checked before minutes of evaluation, so a bad output path never costs the run."""
    from sim_bridge.paths import output_file_problem

    problem = output_file_problem(path)
    if problem is not None:
        raise ConfigError(f"{flag} {path}: {problem}")


def _eval(ns: argparse.Namespace) -> int:
    torch.set_num_threads(ns.threads)
    if ns.json:
        _check_out_file("--json", ns.json)

    overrides = parse_env_overrides(ns.env_overrides)
    for key in ("n_resources", "resources_per_consumer", "max_resources_per_agent"):
        if key in overrides:
            raise ConfigError(
                f"--env-overrides sets {key!r}: the network's item layout is the checkpoint's; "
                "evaluate with its value (leave it out)"
            )
    if ns.n_agents:
        overrides["n_agents"] = ns.n_agents
    if ns.n_consumers:
        overrides["n_consumers"] = ns.n_consumers
    out = evaluate_checkpoint(
        str(resolve_checkpoint(ns.checkpoint)),
        episodes=ns.episodes,
        seed=ns.seed,
        env_overrides=overrides,
        with_expert=not ns.no_expert,
        safety_filter=ns.safety_filter,
    )
    out["env_overrides"] = json.dumps(overrides, sort_keys=True)  # over the checkpoint's env
    from lgtc_policy.model.clusters import checkpoint_clusters

    out.update(
        checkpoint_clusters(
            str(resolve_checkpoint(ns.checkpoint)),
            ns.episodes,
            ns.seed,
            overrides,
            out["safety_filter"],
        )  # Definition III.1 clusters of x (issue 16)
    )
    if "reward_mean_filter_none" in out:
        other = "none" if out["safety_filter"] == "cbf" else "cbf"
        print(
            f"policy alone: reward {out['reward_mean_filter_none']:.3f}, through the CBF: "
            f"{out['reward_mean_filter_cbf']:.3f} (headline below: "
            f"safety filter '{out['safety_filter']}'; '{other}' is the other row)"
        )
    variant = " +relpos (neighbours' relative positions, not the paper's observation)"
    print(
        f"{out['algo']}{variant if out.get('comm') == 'relpos' else ''} "
        f"[{out['safety_filter']}]: reward {out['reward_mean']:.3f} "
        f"+- {out['reward_std']:.3f} "
        f"demand satisfied {out['demand_satisfied_mean']:.3f}"
        + (
            f" | expert {out['expert_reward_mean']:.3f}  ratio {out['ratio_to_expert']:.3f}"
            f" | greedy rule {out['greedy_reward_mean']:.3f}"
            if "expert_reward_mean" in out
            else ""
        )
    )
    cs = out["cluster_spread_ratio"]
    print(
        "clusters (within / between, Definition III.1): state x "
        + ("-" if cs is None else f"{cs:.3f}")
        + (
            ""
            if cs is None
            else f" (by attended consumer {out['cluster_spread_ratio_attended']:.3f})"
        )
        + f" | input Delta {out['cluster_spread_ratio_delta']:.3f}"
        + f" | reward (Fig. 2) {out['reward_cluster_ratio']:.3f}"
        + (
            ""
            if out["coupling"] is None
            else f" | cell: tau_min {out['tau_min']:.3g}, coupling {out['coupling']:.3g}, "
            f"margin {out['contraction_c']:.3g}"
        )
    )
    if ns.json:
        write_json(ns.json, out)
    return 0


def _export(ns: argparse.Namespace) -> int:
    """Copy a training checkpoint without optimiser state, with a fresh full evaluation."""
    src = resolve_checkpoint(ns.checkpoint)
    ck = load_checkpoint(src)
    _check_out_file("--out", ns.out)
    ev = evaluate_checkpoint(
        str(src), episodes=ns.episodes, seed=ns.seed, with_expert=not ns.no_expert
    )
    ev.pop("checkpoint", None)
    ck.pop("format", None)
    ck.update(eval=ev, optim=None)
    save_checkpoint(ns.out, ck)
    print(
        f"{ns.out}: " + ", ".join(f"{k} {ev[k]:.3f}" for k in ev if k.endswith(("mean", "expert")))
    )
    return 0


def _figures(ns: argparse.Namespace) -> int:
    if ns.which in ("fig3", "all"):
        figures.check_fig3_source(ns.runs)  # before minutes of rollouts; never an empty plot
    out = Path(ns.out)
    try:  # before minutes of rollouts
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {ns.out}: cannot make this folder ({e.strerror or e})") from None
    if ns.which == "cell":
        print(figures.cell_curves(ns.runs, out / "lgtc_cell_training.png"))
        return 0
    ck = str(resolve_checkpoint(ns.checkpoint))
    made = []
    if ns.which in ("fig2", "all"):
        made.append(figures.fig2(ck, out / "lgtc_fig2_reward_clusters.png", seed=ns.seed))
    if ns.which in ("fig3", "all"):
        made.append(figures.fig3(ns.runs, out / f"{ns.stem}.png", key=ns.key, title=ns.title))
    if ns.which in ("fig4", "all"):
        made.append(
            figures.fig4(
                ck,
                out / "lgtc_fig4_scaling.png",
                trials=ns.trials,
                seed=ns.seed,
                expert_cache=ns.expert_cache or None,
                agents=tuple(ns.agents),
                consumers=tuple(ns.consumers),
            )
        )
    if ns.which in ("fig56", "all"):
        made += figures.fig56(ck, out, seed=ns.seed)
    if ns.which == "env":
        from lgtc_policy.env import render  # lazy: matplotlib and imageio

        render.main(["--out", str(out), "--seed", str(ns.seed)])
    if ns.which == "curve":
        expert = None
        if Path(ck).is_file():
            expert = load_checkpoint(ck)["eval"].get("expert_reward_mean")
        made.append(figures.train_curve(ns.csv, out / "lgtc_train_curve.png", expert))
    for p in made:
        print(p)
    return 0


def _expert(ns) -> int:
    """``lgtc expert``: the expert's figures (:func:`lgtc_policy.env.expert.evaluate`)."""
    from lgtc_policy.env.expert import evaluate  # lazy: the MIQP solver stack is slow to import

    for k, v in evaluate(ns.envs, ns.seed).items():
        print(f"{k:20s} {v:.4f}" if isinstance(v, float) else f"{k:20s} {v}")
    return 0


def _add_mission_commands(sub) -> None:
    """``figures``, ``demo`` and ``discharge``: the paper's figures and the mission over ROS 2."""
    fg = sub.add_parser("figures", help="regenerate the paper's Figs. 2-6")
    fg.add_argument(
        "which", choices=["fig2", "fig3", "fig4", "fig56", "cell", "curve", "env", "all"]
    )
    fg.add_argument(
        "--runs",
        default="runs/sweep",
        help="fig3: folder of <algo>_s<seed> runs; cell: folder of lgtc_ippo runs",
    )
    fg.add_argument(
        "--key",
        choices=figures.FIG3_KEYS,
        default="episode_reward",
        help="fig3: the training episodes' reward or the deterministic evaluation's",
    )
    fg.add_argument(
        "--stem",
        type=_file_stem,
        default="lgtc_fig3_training",
        help="fig3: name of the PNG and CSV written under --out (without suffix)",
    )
    fg.add_argument(
        "--title",
        type=_title,
        default="",
        help="fig3: figure title, at most 200 characters (default: the paper's Fig. 3)",
    )
    fg.add_argument("--checkpoint", default=SHIPPED, help="fig2/fig4/fig56: LGTC-IPPO checkpoint")
    fg.add_argument(
        "--csv", default="", help="curve: a progress.csv (expert line from --checkpoint's eval)"
    )
    fg.add_argument("--trials", type=EPISODES, default=10, help="fig4: episodes per point")
    fg.add_argument("--expert-cache", default="", help="fig4: CSV caching the expert's rows")
    fg.add_argument(
        "--agents", type=int, nargs="+", default=[5, 10, 20, 30, 40, 50], help="fig4: N values"
    )
    fg.add_argument(
        "--consumers", type=int, nargs="+", default=[2, 4, 6, 8, 10], help="fig4: M values"
    )
    fg.add_argument("--seed", type=SEED, default=0, help="evaluation seed")
    fg.add_argument("--out", default="docs/img", help="output folder")
    fg.set_defaults(fn=_figures)

    xp = sub.add_parser("expert", help="the centralized MIQP expert on N random environments")
    xp.add_argument("--envs", type=EPISODES, default=16, help="environments")
    xp.add_argument("--seed", type=SEED, default=123, help="seed of the environments")
    xp.set_defaults(fn=_expert)

    dm = sub.add_parser("demo", help="fly the LGTC policy over ROS 2 and write its report")
    demo.add_arguments(dm)
    dm.set_defaults(fn=demo.run_cli)
    dc = sub.add_parser(
        "discharge", help="battery-discharge study (Fig. 5) over ROS 2 or in the core env"
    )
    discharge_study.add_arguments(dc)
    dc.set_defaults(fn=discharge_study.run_cli)


def build_parser() -> argparse.ArgumentParser:
    from lgtc_policy.train.bc import BC_ALGOS, BCConfig
    from lgtc_policy.train.common import add_dataclass_args
    from lgtc_policy.train.config import PPO_ALGOS, SAC_ALGOS, PPOConfig, SACConfig

    p = ArgumentParser(prog="lgtc", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train LGTC-IPPO or a baseline")
    tr.add_argument("--algo", required=True, choices=[*PPO_ALGOS, *SAC_ALGOS, *BC_ALGOS])
    seen: set[str] = set()
    for cls in (PPOConfig, SACConfig, BCConfig):
        grp = tr.add_argument_group(f"{cls.__name__} ({cls.__doc__.splitlines()[0]})")
        sub_p = argparse.ArgumentParser(add_help=False)
        add_dataclass_args(sub_p, cls)
        for act in sub_p._actions:
            if act.dest in seen or act.dest == "algo":
                continue
            seen.add(act.dest)
            grp._add_action(act)
    tr.set_defaults(fn=_train)

    sw = sub.add_parser("sweep", help="Fig. 3's sweep: methods x seeds, resumable")
    _sweep_arguments(sw)
    sw.set_defaults(fn=_sweep)

    ev = sub.add_parser("eval", help="evaluate a checkpoint against the centralized expert")
    ev.add_argument("--checkpoint", default=SHIPPED, help=f"file or pkg path (default {SHIPPED})")
    ev.add_argument("--episodes", type=EPISODES, default=32, help="episodes (one batched env)")
    ev.add_argument("--seed", type=SEED, default=12345, help="evaluation seed")
    ev.add_argument("--n-agents", type=int, default=0, help="override N (0: checkpoint's)")
    ev.add_argument("--n-consumers", type=int, default=0, help="override M (0: checkpoint's)")
    ev.add_argument(
        "--env-overrides",
        default="",
        help="JSON object of EnvConfig fields over the checkpoint's env, e.g. "
        '\'{"discharge_rate": 0, "episode_length": 300}\' (an env other than the one it was '
        "trained in); the item layout (n_resources ...) stays the checkpoint's",
    )
    ev.add_argument("--no-expert", action="store_true", help="skip the expert baseline")
    ev.add_argument("--json", help="write the evaluation summary here")
    ev.add_argument(
        "--safety-filter",
        choices=["auto", "none", "cbf"],
        default="auto",
        help="headline mode: 'none' = the policy's action executed as is, 'cbf' = every action "
        "through the expert's centralized CBF filter first (commands are filtered on the "
        "robots too), 'auto' = as the checkpoint was trained (default); both modes are "
        "always reported",
    )
    ev.add_argument(
        "--threads",
        type=bounded_int(1, 256),
        default=1,
        help="torch threads (1: fastest on a shared machine)",
    )
    ev.set_defaults(fn=_eval)

    ex = sub.add_parser("export", help="strip optimiser state and store a full evaluation")
    ex.add_argument("--checkpoint", required=True, help="training checkpoint (best.pt)")
    ex.add_argument("--out", required=True, help="output .pt")
    ex.add_argument("--episodes", type=EPISODES, default=32, help="evaluation episodes")
    ex.add_argument("--seed", type=SEED, default=12345, help="evaluation seed")
    ex.add_argument("--no-expert", action="store_true", help="skip the expert baseline")
    ex.set_defaults(fn=_export)

    _add_mission_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lgtc`` console script."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return int(ns.fn(ns))
    except (LgtcError, OSError, ValueError) as e:
        # LgtcError: every error of the package (config, checkpoint, env, mission); OSError: a
        # file or folder named on the command line (missing, a folder, unwritable, too long)
        print(f"lgtc {ns.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lgtc {ns.cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
