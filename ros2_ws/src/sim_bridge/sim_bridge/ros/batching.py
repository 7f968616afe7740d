"""What co-located nodes' batchers share (node layer): one batcher per process and period.

The policy nodes' :class:`lgtc_policy.ros.batcher.TickBatcher` and the CBF nodes'
:class:`cbf_filter.ros.batcher.FilterBatcher` both gather the nodes of one process (one rclpy
context) that run at one period, so that their due work runs as one batched call. This base
keeps the bookkeeping: one instance per ``(context, period)`` and subclass, made on the first
:meth:`ProcessBatcher.join`; its timers live on one member (the host, in that node's executor
and callback group) and move to another member when the host leaves (:meth:`leave`).
"""

from __future__ import annotations


class ProcessBatcher:
    """Members of one process at one period [s]; subclasses own the timers.

    A subclass makes its timers on ``self._host`` in :meth:`_rehost` (called when there is no
    host and a member exists), drops them in :meth:`_unhost`, and forgets a leaving member's
    pending work in :meth:`_forget`.
    """

    _registry: dict[tuple[int, float], ProcessBatcher]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls._registry = {}  # one registry per kind of batcher

    def __init__(self, period_s: float) -> None:
        self.period_s = float(period_s)
        self.members: list = []
        self._host = None

    @classmethod
    def join(cls, node, period_s: float):
        """Add ``node`` to its process's batcher for ``period_s`` (made on first use)."""
        key = (id(node.context), float(period_s))
        batcher = cls._registry.get(key)
        if batcher is not None and not all(m.context is node.context for m in batcher.members):
            batcher = None  # a context gone without destroying its nodes left this one behind
        if batcher is None:
            batcher = cls._registry[key] = cls(period_s)
        batcher.members.append(node)
        if batcher._host is None:
            batcher._rehost()
        return batcher

    def leave(self, node) -> None:
        """Remove ``node`` (it is being destroyed); the timers move to another member."""
        if node in self.members:
            self.members.remove(node)
        self._forget(node)
        if node is self._host:
            self._unhost(node)
        if not self.members:
            for key, value in list(self._registry.items()):
                if value is self:
                    del self._registry[key]

    @property
    def solo(self) -> bool:
        """One member: it works as a node with its own timer would."""
        return len(self.members) <= 1

    def _forget(self, node) -> None:
        """Drop ``node``'s pending work (nothing by default)."""

    def _unhost(self, node) -> None:
        """``node``, the host, leaves: destroy its timers, clear ``_host``, :meth:`_rehost`."""
        raise NotImplementedError

    def _rehost(self) -> None:
        """Make the timers on ``self.members[0]`` (if any) and set ``_host``."""
        raise NotImplementedError
