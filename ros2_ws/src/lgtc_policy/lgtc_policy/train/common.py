"""Scaffolding shared by every trainer: GAE, seeding, CSV/TensorBoard logging, config parsing."""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import inspect
import json
import os
import random
import textwrap
import time
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lgtc_policy.errors import LgtcError

__all__ = [
    "COMPILE_MODES",
    "DEVICES",
    "ConfigError",
    "RunLogger",
    "add_dataclass_args",
    "compile_loss",
    "dataclass_from_args",
    "gae",
    "make_adam",
    "resolve_device",
    "save_last",
    "set_seed",
    "set_threads",
]

DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("off", "on")
COMPILE_BACKEND = "inductor"
"""``torch.compile`` backend of ``--compile on``; the tests set ``"aot_eager"`` (the same graph
capture and autograd split, run by eager kernels: no C++ compiler needed)."""


class ConfigError(LgtcError, ValueError):
    """A training/eval option is invalid; the message names the field and the fix."""


KEPT_DIR = "checkpoints"
"""Folder of a run's kept checkpoints (``keep_checkpoints``)."""


def save_last(run_dir: str | Path, payload: dict, step: int, keep: bool) -> None:
    """Write ``run_dir/last.pt``; with ``keep`` (config ``keep_checkpoints``) also
    ``run_dir/checkpoints/step_<step>.pt``: the same payload without the optimiser and the
    exact-resume state (what ``best.pt`` holds), which ``lgtc eval``, ``lgtc discharge`` and
    the policy node load like any checkpoint."""
    from lgtc_policy.model.checkpoint import save_checkpoint

    run_dir = Path(run_dir)
    save_checkpoint(run_dir / "last.pt", payload)
    if keep:
        kept = {k: (None if k == "optim" else v) for k, v in payload.items()
                if k != "resume_state"}  # fmt: skip
        save_checkpoint(run_dir / KEPT_DIR / f"step_{step:09d}.pt", kept)


# ----------------------------------------------------------------------------- algorithm
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised Advantage Estimation [27], time-major.

    ``delta_t = r_t + gamma * V(s_{t+1}) * (1 - done_t) - V(s_t)``,
    ``A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}``; returns ``(A, A + V)``.

    Args:
        rewards: ``(T, ...)`` reward after action ``t``.
        values: ``(T, ...)`` ``V(s_t)``.
        dones: ``(T, ...)`` (broadcastable) 1 where the episode ended after step ``t``
            (``V(s_{t+1})`` then belongs to the next episode and is not bootstrapped).
        last_value: ``(...)`` ``V(s_T)`` for bootstrapping the unfinished tail.
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(T)):
        nv = last_value if t == T - 1 else values[t + 1]
        nonterm = 1.0 - dones[t].to(rewards.dtype)
        delta = rewards[t] + gamma * nv * nonterm - values[t]
        last = delta + gamma * lam * nonterm * last
        adv[t] = last
    return adv, adv + values


def set_seed(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Seed python, numpy and torch; returns a torch generator on ``device`` for the run
    (on the CPU the same stream as before the device option existed)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


# ----------------------------------------------------------------------------- hardware
def resolve_device(name: str) -> torch.device:
    """``--device``: ``auto`` = CUDA when available, else the CPU; ``cuda`` requires it."""
    if name not in DEVICES:
        raise ConfigError(f"--device {name!r}: choose one of {DEVICES}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device cuda: torch {torch.__version__} sees no CUDA device here; use "
            "--device auto (falls back to the CPU) or --device cpu"
        )
    return torch.device(name)


def set_threads(threads: int) -> int:
    """``torch.set_num_threads``; 0 = every core this process may run on (its CPU affinity,
    which a container or ``taskset`` may restrict below ``os.cpu_count()``). Returns the
    count set. The PPO trainers split it: with >= 2 threads on the CPU the policy and the
    value network step side by side with half of them each (``train/ppo.py``)."""
    if threads > 0:
        n = threads
    elif hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0)) or 1
    else:
        n = os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def compile_loss(fn, mode: str):
    """``fn`` itself (``--compile off``) or ``torch.compile(fn)`` with static shapes
    (``--compile on``): the graph of a minibatch's forward and loss is captured once, and its
    backward is the compiled one when ``loss.backward()`` runs. Callers pass full-size
    minibatches only (a ragged last one runs ``fn`` eagerly), so each function compiles once."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"--compile {mode!r}: choose one of {COMPILE_MODES}")
    if mode == "off":
        return fn
    return torch.compile(fn, backend=COMPILE_BACKEND, dynamic=False)


def make_adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch build has one for the parameters' device
    (CPU and CUDA in torch >= 2.4), else the multi-tensor (foreach) one."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


# ----------------------------------------------------------------------------- logging
class RunLogger:
    """Writes scalars to ``<run_dir>/progress.csv`` and TensorBoard (``<run_dir>/tb``)."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, append: bool = False):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.dir / "progress.csv"
        self._fields: list[str] | None = None
        if append and self.csv_path.exists():
            with self.csv_path.open() as fh:
                header = fh.readline().strip()
            self._fields = header.split(",") if header else None
        elif self.csv_path.exists():
            self.csv_path.unlink()
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.dir / "tb"))
        self.t0 = time.time()

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Append one CSV row (``env_steps`` + ``wall_s`` + scalars) and the TB scalars.

        A key that appears for the first time (e.g. ``eval_reward`` at the first evaluation)
        extends the header; earlier rows get an empty cell for it.
        """
        row = {"env_steps": int(step), "wall_s": round(time.time() - self.t0, 3)}
        row.update({k: float(v) for k, v in scalars.items()})
        new_keys = [k for k in row if k not in (self._fields or [])]
        if self._fields is None or new_keys:
            old_rows: list[dict] = []
            if self._fields is not None and self.csv_path.exists():
                with self.csv_path.open(newline="") as fh:
                    old_rows = list(csv.DictReader(fh))
            self._fields = [*(self._fields or []), *new_keys]
            with self.csv_path.open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=self._fields)
                w.writeheader()
                w.writerows(old_rows)
        with self.csv_path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self._fields).writerow(row)
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, float(v), int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (atomic replace; a failed write leaves no ``.tmp``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- CLI parsing
def _field_type(tp: Any) -> tuple[type, bool]:
    """Map a dataclass annotation to ``(scalar type, is_tuple)``."""
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return (args[0] if args else str), True
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _field_type(args[0])
    return tp, False


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--field-name`` option per dataclass field (help = the field's doc line)."""
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    for f in dataclasses.fields(cls):
        tp, is_tuple = _field_type(hints[f.name])
        conv = _parse_bool if tp is bool else tp
        kw: dict[str, Any] = {"dest": f.name, "default": None}
        kw["help"] = docs.get(f.name, "").replace("%", "%%") + f" (default: {f.default})"
        if is_tuple:
            kw["nargs"] = "+"
        kw["type"] = conv
        parser.add_argument("--" + f.name.replace("_", "-"), **kw)


def dataclass_from_args(cls: type, ns: argparse.Namespace, base: Any | None = None) -> Any:
    """Build ``cls`` from parsed args, keeping ``base``'s (or the defaults') unset fields."""
    base = base if base is not None else cls()
    updates = {}
    for f in dataclasses.fields(cls):
        v = getattr(ns, f.name, None)
        if v is not None:
            updates[f.name] = tuple(v) if isinstance(v, list) else v
    return dataclasses.replace(base, **updates)


def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field) of ``cls`` and its bases."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for a, b in zip(body, body[1:]):
            if (
                isinstance(a, ast.AnnAssign)
                and isinstance(a.target, ast.Name)
                and isinstance(b, ast.Expr)
                and isinstance(b.value, ast.Constant)
                and isinstance(b.value.value, str)
            ):
                out[a.target.id] = " ".join(b.value.value.split())
    return out


def config_from_dict(cls: type, d: dict) -> Any:
    """Rebuild a (frozen) config dataclass from a dict; unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    extra = set(d) - names
    if extra:
        raise ConfigError(f"{cls.__name__}: unknown keys {sorted(extra)}")
    hints = typing.get_type_hints(cls)
    kw = {}
    for k, v in d.items():
        _, is_tuple = _field_type(hints[k])
        kw[k] = tuple(v) if is_tuple and isinstance(v, list) else v
    return cls(**kw)
