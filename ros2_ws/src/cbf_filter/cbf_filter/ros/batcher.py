"""One filter call for every CBF node of a process: co-located robots filtered together.

When several robots' :class:`~cbf_filter.ros.node.CbfNode` share a process (``swarm up``
composed, or one group of ``swarm up --groups K``), each joins the process's
:class:`FilterBatcher` for its control period (the design of
:mod:`lgtc_policy.ros.batcher`). A node's filter call falls due when a nominal command
arrives, or on the batcher's re-filter check when the node has published nothing for a
control period; the due calls run together: each node prepares its own call from its own
inputs (freshness, hold and silence rules, validity: a node with nothing to filter is
handled by itself exactly as alone), the robots with equal filter parameters go through one
:func:`cbf_filter.decentralized.filter_batch` (equal bit for bit to each robot's own
``filter_robot``; ground robots' :class:`~cbf_filter.unicycle.AxleCBF` filters, a closed form
of a few microseconds, through :func:`~cbf_filter.unicycle.filter_batch_axle`, which makes
each robot's own call), and each node publishes its own command and records its own statistics
and diagnostics. Nothing of one robot reaches another's QP: each robot's rows come from its
own pose and its own ``neighbors`` message, as alone.

When the due calls run:

* **a new nominal**: the node is marked due and a one-shot timer (period 0) of the batcher is
  started; it fires once the executor has handled the callbacks already queued, i.e. after
  the other nominals that the co-located policy nodes published in the same tick (their
  batch publishes them back to back). One batch per policy tick instead of one call per robot.
* **re-filter** (neighbours move between policy ticks): every half period the batcher checks
  each node; one that has not stepped for ``REFILTER_AFTER`` x its period is stepped again
  with its stored nominal (while that is fresh). A command is therefore never held for more
  than 1.5 periods (plus executor delay) while the nominal stays fresh; a node's own timer at
  the period with a 0.9-period threshold, as before, allowed 1.9. A nominal arriving on time
  (within the period) makes the re-filter unnecessary, and none runs.

On sim time (``use_sim_time``: the nodes' clocks follow ``/clock``) the re-filter check runs
on sim time, on the host's clock, and reads the steps on that clock
(:func:`sim_bridge.ros.sim_time.loop_time`): neighbours move only when the world steps, however
slowly it runs. Sim time advances in the world's steps, and a node's next nominal comes at the
step one period after its last one, the step at which the check then finds it one whole period
old; so on sim time the check re-filters a node after ``REFILTER_AFTER_SIM`` periods, i.e. only
when its nominal is late. The one-shot is no matter of time ("after the queued callbacks"): it
runs on a steady clock.

A node alone in its batcher filters a new nominal at once (no deferral), as a node with its
own timer does. The batcher's timers live on one member node (the first to join; they move
to another member when that one leaves), so they run in that node's executor and callback
group (mutually exclusive by default: the check and the one-shot never overlap; only the
one-shot cancels itself, from its own callback, since a multi-threaded executor may already
hold a timer as ready). Under a multi-threaded executor a member's subscription callbacks
may run while the
batch reads its inputs, as between any two callbacks of different nodes; every input is
replaced whole (one assignment), so a call sees either the previous or the new value, and
the due set is guarded by a lock.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from rclpy.executors import MultiThreadedExecutor
from sim_bridge.ros.batching import ProcessBatcher
from sim_bridge.ros.sim_time import loop_time, on_sim_time, wall_clock

from cbf_filter.decentralized import filter_batch
from cbf_filter.unicycle import AxleCBF, filter_batch_axle

__all__ = ["REFILTER_AFTER", "REFILTER_AFTER_SIM", "FilterBatcher"]

#: A node that has not stepped for this many periods is re-filtered (checked every half
#: period). Slightly below 1 so that the check, itself a timer with jitter, does not miss it.
REFILTER_AFTER = 0.98
#: The same on sim time, where the check finds every node one period old at the step its next
#: nominal is due (module docstring): re-filter only a node whose nominal is late.
REFILTER_AFTER_SIM = 1.5


class _Member(Protocol):
    """What the batcher needs of a filter node (:class:`~cbf_filter.ros.node.CbfNode`)."""

    context: object
    last_step: float

    def prepare_filter(self, at: float | None = None) -> object | None: ...

    def finish_filter(self, work, result, batch: int) -> None: ...


class FilterBatcher(ProcessBatcher):
    """The CBF filter calls of one process (one rclpy context) at one control period [s]."""

    def __init__(self, period_s: float) -> None:
        super().__init__(period_s)
        self._check = None  # re-filter check, every half period
        self._soon = None  # one-shot: the due calls, after the queued callbacks
        self._due: dict = {}  # node -> None, in request order
        self._armed = False
        self._lock = threading.Lock()
        self.last_batch = 0  # robots filtered in the last batch
        self.batches = 0
        self.calls = 0

    def _forget(self, node) -> None:
        with self._lock:
            self._due.pop(node, None)

    def _unhost(self, node) -> None:
        node.destroy_timer(self._check)
        node.destroy_timer(self._soon)
        self._host = self._check = self._soon = None
        with self._lock:
            armed, self._armed = self._armed, False
        self._rehost()
        if armed and self._soon is not None:
            self._arm()

    def _rehost(self) -> None:
        if self.members:
            host = self._host = self.members[0]
            self._check = host.create_timer(0.5 * self.period_s, self._on_check)
            self._soon = host.create_timer(
                0.0, self._on_soon, autostart=False, clock=wall_clock(host)
            )

    # ---------------------------------------------------------------------- due calls
    def request(self, node) -> None:
        """``node`` has a new nominal (or a rejected one) to act on: filter it soon."""
        if self.solo:
            self.run([node])
            return
        with self._lock:
            self._due[node] = None
            arm = not self._armed
            self._armed = True
        if arm:
            self._arm()

    def _arm(self) -> None:
        self._soon.reset()
        executor = self._host.executor
        if isinstance(executor, MultiThreadedExecutor):
            # Its wait may have started before the reset: wake it to see the timer.
            executor.wake()

    def _take_due(self) -> list:
        with self._lock:
            due = list(self._due)
            self._due.clear()
            self._armed = False
        return due

    def _on_soon(self) -> None:
        self._soon.cancel()
        self.run(self._take_due())

    def _on_check(self) -> None:
        """The re-filter check: nodes that have not stepped for ``REFILTER_AFTER`` periods,
        with the due nominals (if any wait) in the same batch."""
        now = self._loop_now()
        after = REFILTER_AFTER_SIM if on_sim_time(self._host) else REFILTER_AFTER
        limit = after * self.period_s
        stale = [m for m in self.members if now - m.last_step >= limit]
        due = self._take_due()  # the armed one-shot then finds nothing left: harmless
        if due:
            seen = set(due)
            due.extend(m for m in stale if m not in seen)
        else:
            due = stale
        if due:
            self.run(due)

    def _loop_now(self) -> float:
        """Now on the check timer's clock [s]: monotonic, or the host's sim time."""
        return loop_time(self._host, time.monotonic())

    def run(self, nodes: list) -> None:
        """Prepare each node's call, one :func:`filter_batch` per parameter set, finish each."""
        groups: dict[tuple, list] = {}
        at = self._loop_now() if on_sim_time(self._host) else None  # None: each node's own
        for node in nodes:
            work = node.prepare_filter(at)
            if work is not None:
                groups.setdefault(work.key, []).append((node, work))
        count = 0
        for group in groups.values():
            if len(group) == 1:  # one robot: its own call (the batch's reference)
                ((node, w),) = group
                results = [node.cbf.filter_robot(w.point, w.u_hat, w.neighbors, w.share)]
            else:
                batch = filter_batch_axle if isinstance(group[0][0].cbf, AxleCBF) else filter_batch
                results = batch(
                    [n.cbf for n, _ in group],
                    [w.point for _, w in group],
                    [w.u_hat for _, w in group],
                    [w.neighbors for _, w in group],
                    [w.share for _, w in group],
                )
            for (node, w), result in zip(group, results):
                node.finish_filter(w, result, len(group))
            count += len(group)
        if count:
            self.last_batch = count
            self.batches += 1
            self.calls += count
