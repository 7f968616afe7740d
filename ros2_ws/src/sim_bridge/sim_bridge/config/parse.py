"""From a path, YAML text or a mapping to plain data, bounded in time and memory: the file
size is checked before parsing and the nesting depth before building any data."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sim_bridge.config.checks import describe
from sim_bridge.config.limits import MAX_CONSUMERS, MAX_FILE_BYTES, MAX_NESTING, MAX_ROBOTS
from sim_bridge.config.problems import Problem


def read_source(source: Any) -> tuple[Any, str | None, list[Problem]]:
    """Turn a path / text / mapping into plain data. Returns (data, source_name, problems)."""
    if isinstance(source, Mapping):
        return source, None, []
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        try:
            with open(path, "rb") as fh:
                # read one byte past the limit: st_size is 0 for pipes and /proc files
                raw = fh.read(MAX_FILE_BYTES + 1)
            if len(raw) > MAX_FILE_BYTES:
                size = os.stat(path).st_size
                return None, path, [_file_too_large(path, max(size, len(raw)))]
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return (
                None,
                path,
                [Problem("<file>", f"cannot read {path}: {reason}", "check the path")],
            )
        data, problems = parse_yaml(text)
        return data, str(Path(path).resolve()), problems
    return (
        None,
        None,
        [
            Problem(
                "<root>", f"expected a file path or a mapping, got {describe(source)}", "pass one"
            )
        ],
    )


def _file_too_large(path: str, size: int) -> Problem:
    """The one problem of a file over :data:`MAX_FILE_BYTES`."""
    return Problem(
        "<file>",
        f"{path} is {size / 2**20:.1f} MiB, more than the limit of "
        f"{MAX_FILE_BYTES / 2**20:g} MiB for a swarm file",
        f"a swarm file holds at most {MAX_ROBOTS} robots and {MAX_CONSUMERS} consumers "
        "(about 0.3 MiB written out in full); remove robots or consumers, or split the mission",
    )


#: libyaml's safe loader when PyYAML has it (four times faster than PyYAML's own): plain
#: Python data only, and an alias is one shared object, not a copy, so an alias bomb ("billion
#: laughs") costs no memory (the checks never expand it). Its composer recurses in C and
#: overflows the stack on deep nesting (``"- " * 200000`` kills the process), so the event
#: stream, which both parsers produce without recursion, is checked for depth first.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str) -> tuple[Any, list[Problem]]:
    """Parse YAML text safely; a syntax error becomes one :class:`Problem` with its line.

    Text longer than :data:`MAX_FILE_BYTES` is refused before parsing, and text nested deeper
    than :data:`MAX_NESTING` before building any data.
    """
    size = len(text) if len(text) > MAX_FILE_BYTES else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        return None, [_file_too_large("the YAML text", size)]
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_SAFE_LOADER):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    return None, [
                        Problem(
                            "<yaml>",
                            f"lists and mappings nest deeper than {MAX_NESTING} levels "
                            f"(line {line})",
                            "flatten the file: a swarm file nests about 6 levels",
                        )
                    ]
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_SAFE_LOADER), []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [Problem("<yaml>", f"YAML syntax error at {where}: {reason}", "fix the YAML")]
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        return None, [Problem("<yaml>", f"unreadable YAML: {exc}", "fix the YAML")]
