"""One tick for every policy node of a process: co-located robots computed together.

When several robots' :class:`~lgtc_policy.ros.node.PolicyNode` share a process (``swarm up``
composed, or one group of ``swarm up --groups K``), each joins the process's
:class:`TickBatcher` for its rate instead of owning a timer. The batcher's one timer drives
the due ticks: each node prepares its own tick from its own inputs (pose freshness, activity,
observation; a node with nothing to send is handled by itself exactly as alone), the robots
that step go through one stacked forward per checkpoint
(:func:`lgtc_policy.agent.step_batch`, equal bit for bit to each robot alone), and each node
publishes its own command and message and records its own statistics and diagnostics.
Nothing of one robot reaches another's rows: a robot hears others only through its own
``comm/in`` (the relay keeps the range-C rule).

The batch's tick time for the tick statistics is read on the host's clock, the one that
drives the timer (:func:`sim_bridge.ros.sim_time.loop_time`: sim time when the nodes follow
``/clock``), so a world slower than real time is not read as late ticks.

A node alone in its process gets a batcher of one, and a robot alone in its group its own
:meth:`~lgtc_policy.agent.PolicyAgent.step`: the same tick as before. The batcher's
timer lives on one member node (the first to join; it moves to another member when that one
leaves), so it runs in that node's executor and callback group. Under a multi-threaded
executor a member's subscription callbacks may run while the batch reads its inputs, as they
may between any two callbacks of different nodes; every input is replaced whole (one
assignment), so a tick sees either the previous or the new value.
"""

from __future__ import annotations

import time
from typing import Protocol

from sim_bridge.ros.batching import ProcessBatcher
from sim_bridge.ros.sim_time import loop_time

from lgtc_policy.agent import step_batch

__all__ = ["TickBatcher"]


class _Member(Protocol):
    """What the batcher needs of a policy node (:class:`~lgtc_policy.ros.node.PolicyNode`)."""

    context: object
    policy_key: str

    def prepare_tick(self, start: float, at: float | None = None) -> object | None: ...

    def finish_tick(
        self, result, start: float, end: float, batch: int, at: float | None = None
    ) -> None: ...


class TickBatcher(ProcessBatcher):
    """The policy ticks of one process (one rclpy context) at one period [s]."""

    def __init__(self, period_s: float) -> None:
        super().__init__(period_s)
        self._timer = None
        self.last_batch = 0
        self._prev: float | None = None
        self.missed = 0

    def _unhost(self, node) -> None:
        node.destroy_timer(self._timer)
        self._host = self._timer = None
        self._rehost()

    def _count_missed(self, at: float) -> None:
        """Count the periods the timer skipped before this tick (``at``: its time on the
        timer's clock) and say so once for the batch (each member also counts them in its own
        diagnostics, ``ticks_missed``)."""
        if self._prev is not None:
            now_missed = max(0, round((at - self._prev) / self.period_s) - 1)
            before = self.missed
            self.missed += now_missed
            if not self.solo and self.missed.bit_length() > before.bit_length():
                self._host.get_logger().warning(
                    f"policy tick of {len(self.members)} robots "
                    f"{(at - self._prev) * 1e3:.0f} ms after the previous one (period "
                    f"{self.period_s * 1e3:.0f} ms): {now_missed} tick(s) missed, "
                    f"{self.missed} so far (CPU overloaded?)"
                )
        self._prev = at

    def _rehost(self) -> None:
        if self.members:
            self._host = self.members[0]
            self._timer = self._host.create_timer(self.period_s, self.tick)

    def tick(self) -> None:
        """One due tick of every member: prepare each, one forward per checkpoint, finish each."""
        start = time.perf_counter()
        at = loop_time(self._host, start)  # the timer's clock: sim time on sim time
        self._count_missed(at)
        due: dict[str, list] = {}
        for node in list(self.members):
            work = node.prepare_tick(start, at)
            if work is not None:
                due.setdefault(node.policy_key, []).append((node, work))
        results = []
        for group in due.values():
            nodes = [n for n, _ in group]
            if len(group) == 1:  # one robot: its own step (the batch's reference, bit for bit)
                ((node, (obs, now)),) = group
                out = [node.agent.step(obs, now)]
            else:
                agents = [n.agent for n in nodes]
                out = step_batch(agents, [w[0] for _, w in group], [w[1] for _, w in group])
            results.extend(zip(nodes, out))
        end = time.perf_counter()
        self.last_batch = len(results)
        for node, result in results:
            node.finish_tick(result, start, end, len(results), at)
