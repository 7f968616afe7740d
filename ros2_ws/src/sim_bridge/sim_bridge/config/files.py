"""Files a swarm file names: ``package:relative/path`` resolution and the checkpoint check."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from sim_bridge.config.limits import NAME_RE
from sim_bridge.config.problems import Problem

if TYPE_CHECKING:
    from sim_bridge.config.swarm import SwarmConfig


def is_file(path: Path) -> bool:
    """``path.is_file()``, False where the file system refuses the name."""
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system, ...
        return False


def resolve_package_path(text: str, what: str = "path") -> Path | None:
    """The file that ``"package:relative/path"`` names inside an importable Python package.

    Returns ``None`` when ``text`` is not a package path (no ``package:`` prefix, or a
    one-letter prefix, i.e. a Windows drive). The relative part must stay inside the package:
    no absolute path, no ``..``, and no symbolic link that leads out of it.

    Args:
        text: e.g. ``"lgtc_policy:checkpoints/lgtc_ippo_n10_m4.pt"``.
        what: what ``text`` is, for the message (e.g. ``"policy.checkpoint"``).

    Raises:
        FileNotFoundError: one line naming ``text``, why, and the fix: the package is not
            importable, the path leaves the package, or the file does not exist.
    """
    pkg, sep, rel = text.partition(":")
    if not sep or len(pkg) < 2 or not NAME_RE.fullmatch(pkg):
        return None
    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{what} {text!r}: package {pkg!r} is not importable")
    relp = Path(rel)
    if not rel or relp.is_absolute() or ".." in relp.parts or rel.startswith(("/", "\\")):
        raise FileNotFoundError(
            f"{what} {text!r} leaves package {pkg!r}: write a path inside it "
            f"(e.g. {pkg}:checkpoints/x.pt) or a plain file path"
        )
    tried = []
    for loc in spec.submodule_search_locations:
        root = Path(loc).resolve()
        cand = root / relp
        tried.append(str(cand))
        if not is_file(cand):
            continue
        real = cand.resolve()
        if not real.is_relative_to(root):
            raise FileNotFoundError(
                f"{what} {text!r} is a link out of package {pkg!r} (to {real}); "
                "name the file by its plain path instead"
            )
        return real
    raise FileNotFoundError(f"{what} {text!r} not found; tried {tried}")


def check_files(cfg: SwarmConfig) -> list[Problem]:
    """Problems with the files ``cfg`` names: ``policy.checkpoint`` must resolve to a file.

    Not part of :func:`~sim_bridge.config.load_config`, since a node may replace the
    checkpoint (its parameter) and ``swarm up --no-policy`` needs none; ``swarm validate``
    runs it, then the validators of the installed mission packages, which check what the
    file holds.
    """
    try:
        cfg.resolve_checkpoint()
    except FileNotFoundError as exc:
        return [
            Problem(
                "policy.checkpoint",
                str(exc),
                "name an existing file: a path relative to the swarm file, or "
                "package:relative/path inside an installed package",
            )
        ]
    return []
