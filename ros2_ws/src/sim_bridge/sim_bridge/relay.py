"""Neighbour-range radio (no rclpy): the only path between robots' policy nodes.

LGTC-IPPO paper, Sec. II: robot ``i`` may talk to ``N_i = {j != i : ||p_i - p_j|| <= C}``.
:class:`CommRelay` takes a robot's outgoing message, picks the recipients within ``C`` of the
sender *at send time*, optionally drops each copy with probability ``drop_prob`` and delays
it by ``latency_s``, and hands out the copies once they are due, re-checking the range with
the positions at delivery time, so a message never reaches a robot farther than ``C`` at the
moment it arrives. Random draws come from a seeded generator (deterministic replay).

:meth:`CommRelay.due` hands out one ``(recipient, data)`` pair per copy;
:meth:`CommRelay.due_bundles` hands out the same copies grouped per recipient (send order
kept), so a node can deliver one tick's messages to each robot in one publication (N per tick
instead of N (N - 1): the relay's cost at N = 30 with a near-complete comm graph).
:meth:`CommRelay.collect` / :meth:`CommRelay.take` split that in two, so each recipient can be
flushed at its own moment (e.g. just before its next tick): due copies wait in the
recipient's inbox and the range is checked when they are taken.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sim_bridge.topics import COMM_HEADER_LEN, COMM_MAX_LEN

#: Longest delivery delay [s]. Every copy waits in the relay's queue for ``latency_s``, so the
#: queue holds about ``latency_s`` times the swarm's message rate: a larger delay (``--latency
#: 1e300``) only grows it without bound, and a message that old is useless to a 20 Hz policy.
MAX_LATENCY_S = 10.0


def comm_problem(sender: int, values: np.ndarray) -> str | None:
    """Why robot ``sender``'s ``comm/out`` message ``values`` (a 1-D ``float64`` array) must
    not be relayed, or ``None`` when it may (the wire contract, :mod:`sim_bridge.topics`):
    shorter than the header ``[sender_index, stamp_s]``, longer than ``COMM_MAX_LEN`` values,
    a ``sender_index`` that is not ``sender`` (no robot speaks for another), or a value that
    is not finite (the relay never hands NaN/inf on to the neighbours)."""
    size = len(values)
    if size < COMM_HEADER_LEN:
        return f"{size} value(s), shorter than the header [sender_index, stamp_s]"
    if size > COMM_MAX_LEN:
        return f"{size} values, more than COMM_MAX_LEN = {COMM_MAX_LEN}"
    if values[0] != float(sender):
        return f"sender_index {float(values[0])!r} is not the publisher's index {sender}"
    if not np.isfinite(values).all():
        return "a value that is not finite (NaN/inf)"
    return None


def pack_bundle(messages: Sequence[Sequence[float]]) -> list[tuple[int, array]]:
    """One recipient's due messages as few flat arrays: ``[(row_len, data), ...]``.

    Consecutive messages of equal length go back to back into one array (``data`` has
    ``k * row_len`` doubles, rows in the order given); a message of another length starts a new
    array, so a recipient can always split a bundle into whole messages by ``row_len`` (carried
    in the ``comm/in`` layout), a malformed message never shifts the rows of well-formed ones,
    and the bundles, read in the order returned, keep the send order (a DMAR agent's typed
    writes arrive before the state it sends after them).
    """
    out: list[tuple[int, array]] = []
    for msg in messages:
        row = msg if isinstance(msg, array) and msg.typecode == "d" else array("d", msg)
        if out and out[-1][0] == len(row):
            out[-1][1].extend(row)
        else:
            out.append((len(row), array("d", row)))
    return out


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    sender: int = field(compare=False)
    recipients: np.ndarray = field(compare=False)
    data: object = field(compare=False)


@dataclass
class RelayStats:
    """Counters since start: messages in, copies delivered, dropped (random), out of range."""

    received: int = 0
    delivered: int = 0
    dropped: int = 0
    out_of_range: int = 0


class CommRelay:
    """Range-limited message relay for ``n`` robots.

    Args:
        n: number of robots (indices ``0..n-1``).
        comm_radius: ``C`` [m], 3-D distance between robot centres.
        latency_s: delivery delay [s] (0 = deliver on the next :meth:`due` call), at most
            :data:`MAX_LATENCY_S`.
        drop_prob: probability that one copy is lost, in ``[0, 1)``.
        seed: seed of the drop generator.
    """

    def __init__(
        self,
        n: int,
        comm_radius: float,
        latency_s: float = 0.0,
        drop_prob: float = 0.0,
        seed: int = 0,
    ):
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if not (np.isfinite(comm_radius) and comm_radius > 0):
            raise ValueError(f"comm_radius must be > 0 m, got {comm_radius!r}")
        if not 0.0 <= latency_s <= MAX_LATENCY_S:
            raise ValueError(f"latency_s must be in [0, {MAX_LATENCY_S:g}] s, got {latency_s!r}")
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob!r}")
        self.n = n
        self.comm_radius = float(comm_radius)
        self.latency_s = float(latency_s)
        self.drop_prob = float(drop_prob)
        self.rng = np.random.default_rng(seed)
        self.stats = RelayStats()
        self._queue: list[_Pending] = []
        self._seq = 0
        # copies already due, held per recipient until it is flushed: (sender, data), send order
        self._inbox: list[list[tuple[int, object]]] = [[] for _ in range(n)]

    def in_range(self, positions: np.ndarray, sender: int) -> np.ndarray:
        """``(n,)`` bool: robots other than ``sender`` within ``C`` of it (``positions`` (n, 3))."""
        d = np.linalg.norm(positions - positions[sender], axis=1)
        mask = d <= self.comm_radius
        mask[sender] = False
        return mask

    def submit(
        self,
        sender: int,
        data: object,
        now: float,
        positions: np.ndarray,
        known: np.ndarray | None = None,
    ) -> int:
        """Queue ``data`` from robot ``sender`` at time ``now`` [s].

        ``positions`` ``(n, 3)`` [m] are the robots' positions now; ``known`` ``(n,)`` bool
        marks robots whose position is known (others receive nothing). Returns the number
        of copies queued.
        """
        if not 0 <= sender < self.n:
            raise IndexError(f"sender {sender} out of range 0..{self.n - 1}")
        self.stats.received += 1
        mask = self.in_range(positions, sender)
        if known is not None:
            mask &= known
            if not known[sender]:
                mask[:] = False
        recipients = np.nonzero(mask)[0]
        if self.drop_prob > 0.0 and recipients.size:
            keep = self.rng.random(recipients.size) >= self.drop_prob
            self.stats.dropped += int((~keep).sum())
            recipients = recipients[keep]
        if recipients.size:
            heapq.heappush(
                self._queue,
                _Pending(now + self.latency_s, self._seq, sender, recipients, data),
            )
            self._seq += 1
        return int(recipients.size)

    def _pop_due(self, now: float, positions: np.ndarray):
        """Yield ``(recipients, data)`` of every message due at ``now``, in send order, its
        recipients reduced to those still within ``C`` of the sender (range re-checked)."""
        while self._queue and self._queue[0].due <= now + 1e-12:
            item = heapq.heappop(self._queue)
            d = np.linalg.norm(positions[item.recipients] - positions[item.sender], axis=1)
            ok = d <= self.comm_radius
            self.stats.out_of_range += int((~ok).sum())
            recipients = item.recipients[ok]
            self.stats.delivered += int(recipients.size)
            yield recipients, item.data

    def due(self, now: float, positions: np.ndarray) -> list[tuple[int, object]]:
        """Copies due at ``now`` [s] as ``(recipient, data)``, in send order; copies whose
        recipient moved beyond ``C`` of the sender meanwhile are discarded."""
        return [
            (int(j), data) for recipients, data in self._pop_due(now, positions) for j in recipients
        ]

    def due_bundles(self, now: float, positions: np.ndarray) -> dict[int, list[object]]:
        """The copies of :meth:`due` grouped per recipient: ``{recipient: [data, ...]}``, each
        list in send order (same range rule, same counters); :meth:`collect`, then
        :meth:`take` for every recipient."""
        self.collect(now)
        out: dict[int, list[object]] = {}
        for j in range(self.n):
            if self._inbox[j]:
                got = self.take(j, positions)
                if got:
                    out[j] = got
        return out

    def collect(self, now: float) -> None:
        """Move the copies due at ``now`` [s] into their recipients' inboxes (send order), to be
        handed out by :meth:`take`; the range is checked when they are taken."""
        while self._queue and self._queue[0].due <= now + 1e-12:
            item = heapq.heappop(self._queue)
            for j in item.recipients.tolist():
                self._inbox[j].append((item.sender, item.data))

    def held(self, recipient: int) -> int:
        """Copies waiting in ``recipient``'s inbox (collected, not taken yet)."""
        return len(self._inbox[recipient])

    def take(self, recipient: int, positions: np.ndarray) -> list[object]:
        """Empty ``recipient``'s inbox: the data of the copies whose sender is still within
        ``C`` of it at ``positions`` (n, 3) now, in send order; the others are discarded."""
        box = self._inbox[recipient]
        if not box:
            return []
        self._inbox[recipient] = []
        senders = np.fromiter((s for s, _ in box), np.int64, len(box))
        d = np.linalg.norm(positions[senders] - positions[recipient], axis=1)
        ok = (d <= self.comm_radius).tolist()
        out = [data for (_, data), keep in zip(box, ok) if keep]
        self.stats.out_of_range += len(box) - len(out)
        self.stats.delivered += len(out)
        return out

    @property
    def pending(self) -> int:
        """Number of queued messages (each with one or more recipients), not yet collected."""
        return len(self._queue)
