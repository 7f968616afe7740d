"""Checkpoint files: one ``torch.save`` dict, loaded with ``weights_only=True``.

Layout (``FORMAT = "lgtc_policy.checkpoint/1"``)::

    {
      "format": FORMAT,
      "algo": "lgtc_ippo" | "ippo" | "mamoppo" | "vdn" | "qmix",
      "nets": {name: NetConfig.to_dict()},          # "policy" always present
      "state_dicts": {name: state_dict},            # same keys as "nets" (+ extras, e.g. "log_std")
      "env_config": dict,                           # EnvConfig as a plain dict
      "train_config": dict,                         # the trainer's config dataclass as a dict
      "eval": dict,                                 # evaluation summary at save time
      "progress": dict,                             # env_steps, updates, wall_s (for resume)
      "optim": dict | None,                         # optimiser states (resume only)
    }

Only plain containers, numbers, strings and tensors are stored, so ``weights_only=True``
loading works and a checkpoint cannot execute code. :func:`load_checkpoint` is the one loader
(policy nodes through :func:`lgtc_policy.agent.load_policy`, ``lgtc eval`` / ``export``,
``swarm validate`` through :mod:`lgtc_policy.config_check`): it refuses a file holding
pickled Python objects, and one whose weights are not all finite.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from lgtc_policy.errors import LgtcError
from lgtc_policy.model.features import item_dims
from lgtc_policy.model.lgtc import LGTCNet, NetConfig

__all__ = ["FORMAT", "CheckpointError", "build_net", "load_checkpoint", "save_checkpoint"]

FORMAT = "lgtc_policy.checkpoint/1"
_REQUIRED = ("format", "algo", "nets", "state_dicts", "env_config", "train_config", "eval")


class CheckpointError(LgtcError, RuntimeError):
    """A checkpoint is missing, corrupted, or does not match the expected model/env."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Validate and write ``payload`` atomically (``path.tmp`` then rename)."""
    payload = {"format": FORMAT, **payload}
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"save_checkpoint: payload lacks keys {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, tmp)
        tmp.replace(path)
    finally:  # a failed write (a folder at ``path``, disk full) leaves no partial file
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: file missing, not a torch file / truncated / corrupted, holding
            pickled Python objects (not plain weights), written by something else
            (``format``), missing required keys, or with a non-finite weight. The message is
            one line naming the file and what to do.
    """
    path = Path(path)
    try:
        found = path.is_file()
    except OSError as e:  # a name too long for the file system, ...
        raise CheckpointError(f"checkpoint {str(path)[:200]!r}: {e.strerror or e}") from None
    if not found:
        if path.is_dir():
            raise CheckpointError(
                f"checkpoint {path} is a folder; pass the .pt file in it (e.g. {path}/best.pt)"
            )
        raise CheckpointError(f"checkpoint {path} does not exist; pass an existing .pt file")
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of foreign files before refusing them
            warnings.simplefilter("ignore", UserWarning)
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's text advises weights_only=False (running the file's code): never shown
        how = (
            "make one that stores only tensors, numbers, strings and plain containers with "
            "lgtc_policy.model.checkpoint.save_checkpoint (what `lgtc train` and `lgtc export` "
            "write), e.g. the model's state_dict() instead of the model"
        )
        obj = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if obj:
            raise CheckpointError(
                f"checkpoint {path} is not a plain-weights checkpoint: it holds pickled Python "
                f"objects ({obj[1]}), which are never loaded because unpickling can run code; "
                f"{how}"
            ) from None
        op = re.search(r"Unsupported operand \d+", str(e))
        raise CheckpointError(
            f"checkpoint {path} is corrupted or not a plain-weights checkpoint (the "
            f"weights-only loader refused it{': ' + op[0].lower() if op else ''}); re-download "
            f"it, or {how}"
        ) from None
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means a bad file
        # torch.load raises RuntimeError, EOFError, zipfile errors or even IndexError/KeyError
        # from the weights-only unpickler, depending on the damage.
        raise CheckpointError(_corrupted(path, e)) from e
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        got = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
        raise CheckpointError(
            f"checkpoint {path} has format {got!r}, expected {FORMAT!r}; it was not written by "
            "lgtc_policy (use `lgtc train` to produce one)"
        )
    missing = [k for k in _REQUIRED if k not in ck]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks keys {missing}; it is incomplete")
    _check_layout(path, ck)
    if "policy" not in ck["nets"] or "policy" not in ck["state_dicts"]:
        raise CheckpointError(f"checkpoint {path} has no 'policy' network")
    _check_finite(path, ck["state_dicts"])
    return ck


def _check_layout(path: Path, ck: dict[str, Any]) -> None:
    """The types of the module docstring's layout: ``algo`` a string, ``nets`` a mapping of
    mappings, ``state_dicts`` a mapping of mappings of tensors, the configs and ``eval``
    mappings, every weight a floating-point tensor, and the ``policy`` network's item sizes
    those of ``env_config``'s ``r``."""
    if not isinstance(ck["algo"], str) or not ck["algo"]:
        raise CheckpointError(
            f"checkpoint {path}: 'algo' is {ck['algo']!r}, not an algorithm name; it is damaged"
        )
    for key in ("nets", "state_dicts", "env_config", "train_config", "eval"):
        if not isinstance(ck[key], dict):
            raise CheckpointError(
                f"checkpoint {path}: {key!r} is a {type(ck[key]).__name__}, not a mapping; "
                "it is damaged (re-download or retrain it)"
            )
    for key in ("nets", "state_dicts"):
        for name, value in ck[key].items():
            ok = isinstance(value, dict)
            if ok and key == "state_dicts":
                ok = all(torch.is_tensor(t) for t in value.values())
            if not ok:
                what = "a mapping of tensors" if key == "state_dicts" else "a mapping"
                raise CheckpointError(
                    f"checkpoint {path}: {key}[{name!r}] is not {what}; it is damaged"
                )
            if key == "state_dicts":
                for k, t in value.items():
                    if not t.is_floating_point():
                        raise CheckpointError(
                            f"checkpoint {path}: weight {name}.{k} holds {t.dtype} values, "
                            "not float weights; it is damaged (re-download or retrain it)"
                        )
    r = ck["env_config"].get("n_resources")
    net = ck["nets"].get("policy")
    if isinstance(r, int) and not isinstance(r, bool) and 0 < r <= 64 and net is not None:
        want = item_dims(r)
        got = (net.get("agent_item_dim"), net.get("consumer_item_dim"))
        if got != want:
            raise CheckpointError(
                f"checkpoint {path}: its policy network takes items of {got[0]}/{got[1]} "
                f"features but its env_config's r={r} resource types give {want[0]}/{want[1]}; "
                "the file was edited or mixes two runs (use the checkpoint as trained)"
            )


def _corrupted(path: Path, e: BaseException) -> str:
    first = (str(e).splitlines() or [""])[0]
    if "weights_only" in first:  # torch's advice to load unsafely is never passed on
        first = ""
    return (
        f"checkpoint {path} is corrupted or not a torch checkpoint ({type(e).__name__}: "
        f"{first[:200]}); re-download or retrain it"
    )


def _check_finite(path: Path, state_dicts: Any) -> None:
    """Refuse a checkpoint with a NaN or infinite weight (a diverged run or a damaged file):
    its robots would publish NaN commands."""
    if not isinstance(state_dicts, dict):
        raise CheckpointError(f"checkpoint {path}: 'state_dicts' is not a mapping; it is damaged")
    for net, sd in state_dicts.items():
        items = sd.items() if isinstance(sd, dict) else [("", sd)]
        for key, value in items:
            if torch.is_tensor(value) and value.is_floating_point():
                bad = int((~torch.isfinite(value)).sum())
                if bad:
                    where = f"{net}.{key}" if key else str(net)
                    raise CheckpointError(
                        f"checkpoint {path}: weight {where} has {bad} non-finite value(s) (NaN "
                        "or inf); the training diverged or the file is damaged; use an earlier "
                        "checkpoint of the run or retrain"
                    )


def build_net(ck: dict[str, Any], name: str = "policy") -> LGTCNet:
    """Instantiate network ``name`` of a loaded checkpoint and load its weights (strict).

    Raises:
        CheckpointError: the config is invalid or the weights do not fit it (names the keys).
    """
    try:
        cfg = NetConfig.from_dict(dict(ck["nets"][name]))
        # shapes first, on the meta device (no memory): a config naming huge or negative
        # sizes is refused here, never allocated; the weights then bound the real build
        with torch.device("meta"):
            own = LGTCNet(cfg).state_dict()
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as e:
        first = (str(e).splitlines() or [""])[0][:200]
        raise CheckpointError(f"checkpoint network {name!r}: invalid config ({first})") from e
    sd = ck["state_dicts"][name]
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad_shape = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or bad_shape:
        raise CheckpointError(
            f"checkpoint network {name!r} does not match its config: missing={missing[:5]} "
            f"unexpected={unexpected[:5]} shape_mismatch={bad_shape[:5]}; the file was edited or "
            "written by an incompatible version"
        )
    net = LGTCNet(cfg)
    net.load_state_dict(sd)
    net.eval()
    return net
