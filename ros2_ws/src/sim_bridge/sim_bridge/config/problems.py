"""What validation reports: :class:`Problem` (key path, what is wrong, how to fix it) and
:class:`ConfigError`, which carries every problem of a file at once."""

from __future__ import annotations

from dataclasses import dataclass

from sim_bridge.errors import SwarmError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a swarm file.

    Attributes:
        path: key path inside the file, e.g. ``robots[3].radius``.
        message: what is wrong.
        fix: what to change.
    """

    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (fix: {self.fix})"


class ConfigError(SwarmError, ValueError):
    """A swarm file is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        head = f"invalid swarm config {source}" if source else "invalid swarm config"
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{head} ({len(self.problems)} problem(s)):\n{lines}")
