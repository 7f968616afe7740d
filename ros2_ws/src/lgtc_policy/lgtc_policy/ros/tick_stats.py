"""Timing of the policy node's control loop (pure: no rclpy, so core tests import it too).

:class:`TickStats`: period and compute time of a periodic control loop, and the share of
ticks on time. A tick is *on time* when it starts no later than ``LATE_FACTOR`` periods after
the previous one (at 20 Hz: within 75 ms), i.e. the loop neither skipped a tick nor ran half a
period late. The first tick is on time by definition. Periods are read on the clock that drives
the loop's timer (``at_s`` of :meth:`TickStats.record`: sim time on sim time), compute times on
a monotonic clock.
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["LATE_FACTOR", "TickStats"]

LATE_FACTOR = 1.5


class TickStats:
    """Timing of a periodic loop of nominal period ``period_s`` [s].

    Percentiles use the last ``window`` ticks; the counts cover the whole run.
    """

    def __init__(self, period_s: float, window: int = 2000):
        self.period_s = float(period_s)
        self.prev: float | None = None
        self.periods: deque[float] = deque(maxlen=window)
        self.computes: deque[float] = deque(maxlen=window)
        self.ticks = 0
        self.on_time = 0
        self.missed = 0

    def record(self, start_s: float, end_s: float, at_s: float | None = None) -> None:
        """One tick that started at ``start_s`` and finished at ``end_s`` (monotonic [s]);
        ``at_s``: its start on the clock of the loop's timer when that is another (sim time)."""
        at = start_s if at_s is None else at_s
        self.ticks += 1
        if self.prev is None:
            self.on_time += 1
        else:
            period = at - self.prev
            self.periods.append(period)
            self.on_time += period <= LATE_FACTOR * self.period_s
            self.missed += max(0, round(period / self.period_s) - 1)
        self.computes.append(end_s - start_s)
        self.prev = at

    def summary(self) -> dict[str, float | int]:
        """``ticks``, ``ticks_on_time``, ``on_time_pct``, ``ticks_missed``, period and compute
        p50/p99 [ms]."""

        def pct(values: deque[float], q: float) -> float:
            return float(np.percentile(np.asarray(values), q) * 1e3) if values else float("nan")

        return {
            "ticks": self.ticks,
            "ticks_on_time": self.on_time,
            "on_time_pct": 100.0 * self.on_time / self.ticks if self.ticks else float("nan"),
            "ticks_missed": self.missed,
            "tick_period_p50_ms": pct(self.periods, 50),
            "tick_period_p99_ms": pct(self.periods, 99),
            "compute_p50_ms": pct(self.computes, 50),
            "compute_p99_ms": pct(self.computes, 99),
        }
