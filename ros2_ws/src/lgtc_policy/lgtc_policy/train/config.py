"""Typed training configurations (one dataclass per trainer family), parsed from the CLI.

Every default below is Table I of the paper unless its docstring says otherwise; the reasons
for the values the paper does not give are written next to them. The whole config is saved with
every run (``config.json``) and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lgtc_policy.env.spec import EnvConfig
from lgtc_policy.model.lgtc import COMM_FORMS, PI_FORMS
from lgtc_policy.train.common import COMPILE_MODES, DEVICES, ConfigError, _field_type

__all__ = [
    "MAX_SEED",
    "PPO_ALGOS",
    "SAC_ALGOS",
    "PPOConfig",
    "SACConfig",
    "check_field_types",
    "env_config_of",
    "parse_env_overrides",
]

PPO_ALGOS = ("lgtc_ippo", "ippo", "mamoppo")
SAC_ALGOS = ("vdn", "qmix")
#: Seeds are NumPy's and torch's (unsigned 64-bit) kept in a signed int64, as ``lgtc eval``'s.
MAX_SEED = 2**63 - 1
#: ``--threads`` above this is a typo (``lgtc eval`` takes 1..256 too).
MAX_THREADS = 256
#: Widest layer (``--g``, ``--f``, each ``--hidden`` / ``--mix-hidden``): 32 x Table I's 256;
#: a square layer of it is 256 MiB of float32 (wider ones were multi-TB allocations).
MAX_WIDTH = 8192
#: Episodes of one evaluation (``--eval-episodes``; ``lgtc eval --episodes``' limit).
MAX_EVAL_EPISODES = 10_000
#: Team transitions of one PPO rollout / the SAC replay (``--rollout``, ``--buffer``): 160 x
#: Table I's 6144 (its buffers are gigabytes at N = 10; 10^11 hung in the allocator).
MAX_TRANSITIONS = 1_000_000
_WANT = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


def flag(name: str) -> str:
    """The command-line option of config field ``name`` (``--total-env-steps``)."""
    return "--" + name.replace("_", "-")


def _fits(tp: type, value) -> bool:
    """``value`` is of the field type ``tp`` (ints for floats too; bools only for bools;
    floats finite)."""
    if tp is bool or isinstance(value, bool):
        return tp is bool and isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, tp)


def check_field_types(
    cls: type, values: Mapping[str, object], label: Callable[[str], str] = flag
) -> None:
    """Each of ``values`` has its ``cls`` field's type (an integer, a finite number, true or
    false, a string, a list of integers); raises :class:`ConfigError` naming the first that
    has not (``label(field)``, by default the option ``--field-name``) and what it must be.

    The CLI's options are typed by argparse, but NaN and infinities pass ``float()``, and a
    JSON value (``lgtc sweep --ppo-options``, ``config.json``) may be anything.
    """
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        tp, is_tuple = _field_type(hints[name])
        if is_tuple:
            ok = isinstance(value, tuple | list) and all(_fits(tp, v) for v in value)
            want = f"a list of {_WANT.get(tp, tp.__name__).split()[-1]}s"
        else:
            ok, want = _fits(tp, value), _WANT.get(tp, tp.__name__)
        if not ok:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise ConfigError(f"{label(name)}: must be {want}, got {shown}")


def parse_env_overrides(text: str, flag: str = "--env-overrides") -> dict:
    """The ``EnvConfig`` fields a ``--env-overrides`` JSON object sets (``{}`` for ""); one
    :class:`ConfigError` line naming ``flag`` for text that is not a flat JSON object (the
    fields themselves are checked by ``EnvConfig``)."""
    try:
        extra = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"{flag} is not valid JSON ({e})") from e
    except RecursionError:
        raise ConfigError(f"{flag} is nested too deep; give a flat JSON object") from None
    if not isinstance(extra, dict):
        raise ConfigError(f"{flag} must be a JSON object of EnvConfig fields")
    return extra


@dataclass(frozen=True)
class _Common:
    """Fields shared by every trainer (env size, budget, logging)."""

    seed: int = 0
    """Seed of torch/numpy/python and of the training env (eval env uses seed + 10_000)."""
    total_env_steps: int = 1_000_000
    """Training budget in team transitions (one env step of one env = one transition)."""
    num_envs: int = 64
    """Parallel envs of the batched simulator (CPU: 64 keeps the per-step overhead small)."""
    n_agents: int = 10
    """N (paper Sec. IV trains with 10)."""
    n_consumers: int = 4
    """M (paper: 4)."""
    n_resources: int = 2
    """r (paper: 2 resource types)."""
    resources_per_consumer: int = 2
    """Resource types demanded by each consumer (paper: 2)."""
    episode_length: int = 300
    """Steps per episode (15 s at 20 Hz)."""
    env_overrides: str = ""
    """JSON object of further EnvConfig fields, e.g. '{"supply_range": [0.2, 1.0]}' (pins env
    defaults so a run stays reproducible if they change)."""
    g: int = 64
    """G, consumer/agent feature size (Table I: 64)."""
    f: int = 64
    """F, LGTC state size (Table I: 64)."""
    hidden: tuple[int, ...] = (256, 256)
    """Final MLP (Table I: [256, 256])."""
    comm: str = "paper"
    """'paper' = the paper's observation (neighbours only through the messages' S x and S Psi');
    'relpos' (NOT in the paper, report it separately) = every network also sums a learned
    encoding of each neighbour's position relative to the robot (same message layout)."""
    lr: float = 2e-4
    """Adam learning rate (Table I: 2e-4)."""
    gamma: float = 0.99
    """Discount (Table I: 0.99)."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip (Table I: 0.5)."""
    eval_every: int = 200_000
    """Evaluate (deterministic policy) every this many env steps; the best one is kept."""
    eval_episodes: int = 32
    """Episodes per evaluation (one batched env of this size)."""
    run_dir: str = "runs/lgtc"
    """Output folder: progress.csv, tb/, config.json, last.pt, best.pt."""
    threads: int = 0
    """torch threads; 0 = every core this process may use. PPO family: with >= 2 on the CPU the
    policy and the value step side by side, half of the threads each (same results as 1)."""
    device: str = "auto"
    """auto | cpu | cuda: where the env, the networks, the buffers and the random generators
    live (auto = cuda when available). Checkpoints are written with CPU tensors either way."""
    tensorboard: bool = True
    """Also write TensorBoard scalars under run_dir/tb."""
    progress: bool = True
    """Show a tqdm progress bar."""
    resume: bool = False
    """Continue from run_dir/last.pt (same config required except the budget)."""
    checkpoint_every: int = 100_000
    """Write run_dir/last.pt every this many env steps."""
    keep_checkpoints: bool = False
    """Also keep every checkpoint as run_dir/checkpoints/step_<env steps>.pt (the policy, its
    config and the latest evaluation; no optimiser or resume state), to screen or evaluate a
    run's intermediate policies; by default only last.pt and best.pt."""

    def env_config(self) -> EnvConfig:
        """The training env (defaults of ``EnvConfig`` = paper Sec. IV, sizes from here)."""
        extra = parse_env_overrides(self.env_overrides)
        own = ("n_agents", "n_consumers", "n_resources", "resources_per_consumer")
        own += ("episode_length", "seed")
        for key in own:
            if key in extra:
                flag = "--" + key.replace("_", "-")
                raise ConfigError(
                    f"--env-overrides sets {key!r}, which the trainer sizes its networks and "
                    f"buffers from: pass {flag} {extra[key]} instead"
                )
        d = {
            "n_agents": self.n_agents,
            "n_consumers": self.n_consumers,
            "n_resources": self.n_resources,
            "resources_per_consumer": self.resources_per_consumer,
            "max_resources_per_agent": min(2, self.n_resources),
            "episode_length": self.episode_length,
            "seed": self.seed,
        }
        return EnvConfig.from_dict({**d, **extra})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    def _check_common(self) -> None:
        check_field_types(
            type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        )
        for name in ("total_env_steps", "num_envs", "eval_episodes", "eval_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0")
        run_dir = Path(self.run_dir)
        above = next((p for p in (run_dir, *run_dir.parents) if p.exists()), None)
        if above is not None and not above.is_dir():  # the logger's mkdir: a raw Errno line
            raise ConfigError(f"--run-dir {self.run_dir}: {above} is a file; give a folder")
        if self.comm not in COMM_FORMS:
            raise ConfigError(f"--comm {self.comm!r}: choose one of {COMM_FORMS}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed {self.seed}: must be an integer from 0 to {MAX_SEED}")
        for name in ("g", "f", "hidden", "mix_hidden"):  # mix_hidden: SAC only
            sizes = getattr(self, name, ())
            for size in sizes if isinstance(sizes, tuple | list) else (sizes,):
                if not 1 <= size <= MAX_WIDTH:
                    raise ConfigError(
                        f"{flag(name)} {size}: each layer size must be an integer from 1 to "
                        f"{MAX_WIDTH} (Table I: 64 for --g/--f, 256 256 for --hidden)"
                    )
        if self.eval_episodes > MAX_EVAL_EPISODES:
            raise ConfigError(
                f"--eval-episodes {self.eval_episodes}: must be 1 to {MAX_EVAL_EPISODES} "
                "(one batched env; the paper uses 32)"
            )
        if not 0 <= self.threads <= MAX_THREADS:
            raise ConfigError(f"--threads {self.threads}: must be 0 (every core) to {MAX_THREADS}")
        if self.device not in DEVICES:
            raise ConfigError(f"--device {self.device!r}: choose one of {DEVICES}")
        if not 0.0 < self.gamma < 1.0:
            raise ConfigError("--gamma must be in (0, 1)")
        if self.lr <= 0:
            raise ConfigError("--lr must be > 0")


@dataclass(frozen=True)
class PPOConfig(_Common):
    """LGTC-IPPO / IPPO / MAMOPPO (independent PPO, shared parameters, Sec. III-C, Table I).

    Attributes:
        algo: lgtc_ippo (eq. 6 + Pi), ippo (reduced y, no consensus, no Pi) or mamoppo
            (reduced y, vector value per consumer, linear scalarisation).
    """

    algo: str = "lgtc_ippo"
    """lgtc_ippo | ippo | mamoppo."""
    rollout: int = 6144
    """Team transitions per PPO update (Table I: 6144) = num_envs x rollout steps."""
    minibatch: int = 64
    """Minibatch size in team transitions (Table I: 64; each holds N agent samples)."""
    epochs: int = 4
    """PPO epochs per rollout (Table I: 4)."""
    gae_lambda: float = 0.95
    """GAE lambda (Table I: 0.95)."""
    clip: float = 0.2
    """PPO clip epsilon of eq. (12) (Table I: 0.2)."""
    alpha: float = 0.01
    """Weight of the contraction regulariser Pi in eq. (14) (not in Table I)."""
    pi_form: str = "paper"
    """Pi of eq. (15): 'paper' = softplus(c) + mean softplus(tau) with c the rate of eq. (9)
    under Remark 1's A^T A (bounds the rate); 'margin' = the previous trainer's
    softplus(-c_margin) + mean softplus(-tau), which rewards a larger rate without bound;
    'constraint' (not in the paper) = relu(-c_margin) + mean relu(-tau): zero while the cell
    keeps its contraction margin, so it never pulls on the coupling inside that region."""
    agent_loss: str = "sum"
    """How eq. (14) combines the agents: 'sum' (the paper: sum over agents of J_i, averaged
    over team transitions) or 'mean' (the previous trainer: averaged over agents too, which
    weighs alpha Pi N times more)."""
    bptt: int = 10
    """Ticks of backpropagation through the LGTC cell: the rollout stores the cluster states,
    minibatches are sequences of this many ticks started from the stored state (>= 10: the
    cell settles in ~10 ticks); 1 = the previous one-step truncated backprop. Minibatches hold
    ceil(minibatch / bptt) sequences. Ignored by ippo/mamoppo (no state)."""
    ent_coef: float = 0.0
    """Entropy bonus (Table I: '-' for the PPO family, i.e. none)."""
    log_std_init: float = -0.5
    """Initial log std of the Gaussian policy (std 0.6 of the unit action range)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before GAE (1: eq. (2)'s scale is already O(1))."""
    init_checkpoint: str = ""
    """Start the policy, its log std and (when present and trained) the value from this
    checkpoint's weights, e.g. a ``bc_lgtc`` warm start (not in the paper, which starts from
    random weights). The networks must have the same sizes; the run is a new run (step 0)."""
    bc_coef: float = 0.0
    """Weight of an auxiliary imitation term ``||mu - u_teacher||^2`` in the policy loss, toward
    the ``bc_teacher``'s action (default: the decentralized greedy rule) on the visited states
    (not in the paper: a DAPG-style anchor that keeps a warm-started policy's coverage while PPO
    learns to keep its distance). 0 = the paper's loss."""
    bc_teacher: str = "greedy"
    """Whose action the ``bc_coef`` term pulls toward: 'greedy' (the decentralized greedy rule,
    :mod:`lgtc_policy.greedy`) or 'expert' (the centralized expert's command before its CBF,
    :meth:`lgtc_policy.env.expert.CentralizedExpert.nominal`: the eq. 3 assignment recomputed
    when supplies, demands or the active set change, so after a discharge the anchor points
    another agent at the abandoned consumer, which the greedy rule never does)."""
    value_warmup: int = 0
    """PPO updates at the start during which only the value is trained and the policy is frozen
    (with ``init_checkpoint``: a random critic's advantages would otherwise undo the warm start
    in the first updates). 0 = train both from the first update (the paper's setting)."""
    safety_filter: str = "none"
    """'none' (the paper's training: the env executes the policy's action) or 'cbf': every
    action passes the centralized CBF filter (:class:`lgtc_policy.env.safety.SafetyFilter`,
    the expert's filter) before the env executes it (on the robots the cbf_filter nodes filter
    every command too), so the filter is part of
    the environment's dynamics (a safety layer, not in the paper; the PPO action and its
    log-probability are the policy's unfiltered sample). Also used for the run's evaluations
    and recorded in the checkpoint, so ``lgtc eval`` evaluates the policy as it was trained."""

    compile: str = "off"
    """off | on: torch.compile of each network's minibatch forward + loss (and so its backward)
    in the PPO update, compiled once per run (minutes on a CPU); the same results up to float
    rounding. See TRAINING.md for where it pays."""
    seeds: tuple[int, ...] = ()
    """Train these seeds together in one process (overrides --seed): per-seed envs and
    rollouts, the updates batched over the seeds (lgtc_policy.train.stacked); each seed
    writes run_dir/s<seed>/ in the single-seed format. Empty = one run of --seed."""

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["seeds"] = list(self.seeds)
        return d

    def rollout_steps(self) -> int:
        return max(1, self.rollout // self.num_envs)

    def validate(self) -> PPOConfig:
        self._check_common()
        if self.algo not in PPO_ALGOS:
            raise ConfigError(f"--algo {self.algo!r} is not a PPO algorithm {PPO_ALGOS}")
        if self.minibatch <= 0 or self.epochs <= 0 or self.rollout < self.num_envs:
            raise ConfigError("--minibatch/--epochs must be > 0 and --rollout >= --num-envs")
        if self.rollout > MAX_TRANSITIONS:
            raise ConfigError(
                f"--rollout {self.rollout}: must be at most {MAX_TRANSITIONS} team transitions "
                "(Table I: 6144)"
            )
        per_update = self.rollout_steps() * self.num_envs
        if self.total_env_steps < per_update:  # the first update would run past the budget
            raise ConfigError(
                f"--total-env-steps {self.total_env_steps} is below one PPO update "
                f"({self.rollout_steps()} steps x {self.num_envs} envs = {per_update} team "
                f"transitions, --rollout {self.rollout}): pass --total-env-steps >= "
                f"{per_update} or a smaller --rollout / --num-envs"
            )
        bad_seed = next((s for s in self.seeds if not 0 <= s <= MAX_SEED), None)
        if bad_seed is not None:
            raise ConfigError(f"--seeds {bad_seed}: each must be an integer from 0 to {MAX_SEED}")
        if not 0.0 <= self.gae_lambda <= 1.0 or self.clip <= 0:
            raise ConfigError("--gae-lambda must be in [0, 1] and --clip > 0")
        if self.bc_coef < 0:
            raise ConfigError("--bc-coef must be >= 0 (0 turns the imitation term off)")
        if self.bptt < 1:
            raise ConfigError("--bptt must be >= 1 tick (1 = one-step truncated backprop)")
        if self.pi_form not in PI_FORMS:
            raise ConfigError(f"--pi-form {self.pi_form!r}: choose one of {PI_FORMS}")
        if self.agent_loss not in ("sum", "mean"):
            raise ConfigError(
                f"--agent-loss {self.agent_loss!r}: use 'sum' (eq. 14) or 'mean' (averaged)"
            )
        if self.bc_teacher not in ("greedy", "expert"):
            raise ConfigError(
                f"--bc-teacher {self.bc_teacher!r}: use 'greedy' (the decentralized greedy "
                "rule) or 'expert' (the centralized eq. 3 expert's nominal command)"
            )
        if self.compile not in COMPILE_MODES:
            raise ConfigError(
                f"--compile {self.compile!r}: use 'off' (eager PyTorch) or 'on' (torch.compile "
                "of the update's forward + loss)"
            )
        if self.safety_filter not in ("none", "cbf"):
            raise ConfigError(
                f"--safety-filter {self.safety_filter!r}: use 'none' (the env executes the "
                "policy's action) or 'cbf' (every action through the CBF filter first)"
            )
        if self.seeds and (self.resume or self.init_checkpoint):
            raise ConfigError(
                "--seeds trains new runs side by side: --resume / --init-checkpoint work per "
                "seed; pass --seed <s> --run-dir <run_dir>/s<s> instead"
            )
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds {list(self.seeds)}: each seed once")
        if self.value_warmup < 0:
            raise ConfigError("--value-warmup must be >= 0 (PPO updates with a frozen policy)")
        if self.init_checkpoint and self.resume:
            raise ConfigError(
                "--init-checkpoint starts a new run; with --resume true the run continues from "
                "run_dir/last.pt instead: pass only one of them"
            )
        return self


@dataclass(frozen=True)
class SACConfig(_Common):
    """VDN-SAC / QMIX-SAC for continuous actions (Sec. IV, Table I right column).

    Attributes:
        algo: vdn (sum mixer) or qmix (monotonic hypernetwork mixer).
    """

    algo: str = "vdn"
    """vdn | qmix."""
    num_envs: int = 16
    """Parallel envs (16: each vector step adds 16 team transitions to the replay)."""
    buffer: int = 20000
    """Replay buffer size in team transitions (Table I: 20000)."""
    batch: int = 256
    """Minibatch of team transitions (Table I: 256)."""
    updates_per_step: int = 1
    """Gradient steps per vector-env step (Table I 'epochs': 1)."""
    learning_starts: int = 2000
    """Random-action transitions collected before learning (not in Table I)."""
    entropy_coef: float = 0.01
    """SAC temperature alpha, fixed (Table I: 0.01)."""
    polyak: float = 0.005
    """Target-network averaging (Table I: 0.005)."""
    mix_hidden: tuple[int, ...] = (32, 32)
    """QMIX mixing embedding and hypernetwork width (Table I MIX: [32, 32])."""

    def validate(self) -> SACConfig:
        self._check_common()
        if self.algo not in SAC_ALGOS:
            raise ConfigError(f"--algo {self.algo!r} is not a SAC algorithm {SAC_ALGOS}")
        if self.batch <= 0 or self.buffer < self.batch or not 0 < self.polyak <= 1:
            raise ConfigError("need --batch > 0, --buffer >= --batch, --polyak in (0, 1]")
        if self.buffer > MAX_TRANSITIONS:
            raise ConfigError(
                f"--buffer {self.buffer}: must be at most {MAX_TRANSITIONS} team transitions "
                "(Table I: 20000)"
            )
        if self.learning_starts < 0 or self.updates_per_step < 1 or self.entropy_coef < 0:
            raise ConfigError(
                "need --learning-starts >= 0 (random-action transitions), --updates-per-step "
                ">= 1 (gradient steps per env step) and --entropy-coef >= 0"
            )
        return self

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["mix_hidden"] = list(self.mix_hidden)
        return d


def env_config_of(d: dict) -> EnvConfig:
    """EnvConfig from a checkpoint's plain dict."""
    return EnvConfig.from_dict(d)
