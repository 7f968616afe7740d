"""The one exception root of sim_bridge.

Every error sim_bridge raises on purpose derives from :class:`SwarmError`, so a caller can
catch "anything sim_bridge refused" with one clause. Each subclass also keeps its builtin
base (``ValueError`` for bad input, ``RuntimeError`` for a state that cannot be reached),
so ``except ValueError`` / ``except RuntimeError`` callers keep working.
"""

from __future__ import annotations


class SwarmError(Exception):
    """Root of every exception sim_bridge raises on purpose; its message says what to fix."""
