"""Where a command may write an output file (no rclpy): checked before the work that makes
it, so a bad ``--out`` costs one line instead of a run (``swarm render``, ``lgtc eval
--json``, ``lgtc export``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["output_file_problem"]


def output_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be written as a file, as the end of a one-line message (``"is a
    folder; ..."``), or ``None`` when it can: not a folder (nor a name ending in ``/``), its
    nearest existing ancestor a folder this process can create a file in (tried with a probe
    file, removed at once: ``os.access`` says yes to root on a read-only mount), and an
    existing file writable. Missing folders below that ancestor are the caller's to make."""
    text = os.fspath(path)
    out = Path(text)
    if out.is_dir() or not out.name or text.endswith(("/", os.sep)):
        return "is a folder; give a file name in it"
    for parent in (out.parent, *out.parent.parents):
        if not parent.exists():
            continue
        if not parent.is_dir():
            return f"{parent} is a file, not a folder"
        probe = parent / f".{out.name}.{os.getpid()}.probe"
        try:
            probe.open("x").close()
            probe.unlink()
        except OSError as exc:
            return f"cannot write in {parent} ({exc.strerror or exc}); give a writable folder"
        break
    if out.exists() and not os.access(out, os.W_OK):
        return "the file is not writable"
    return None
