"""Wire format of the DMAR agents: every inter-agent message as a flat float64 array.

A message is the ``comm/out`` payload of the wire contract (``sim_bridge.topics``, section
"Routing missions"): ``[DMAR_MSG_VERSION, ps_step, kind, sender, body...]``. Every value is an
integer stored exactly in a float64 (all below 2**53); ``-1`` stands for "none". The comm layer
puts its own ``[sender_index, stamp_s]`` in front; this module sees only the payload.

Kinds and bodies (``n`` = a count followed by ``n`` items; ``?X`` = a flag 0/1 then ``X`` if 1):

* ``KIND_STATE`` (1), :class:`StateMsg`: ``round, sees_task, cluster, parent, depth, message,
  n children, ?map, ?plan`` -- the fields of the sender's :class:`~dmar_agent.executor.Memory`
  that peers read (Appendix D items 1-5, 8, 9; the private fields stay home).
* ``KIND_JOIN`` (2), :class:`JoinMsg`: ``recipient`` -- Alg. 3 lines 14-16.
* ``KIND_RECRUIT`` (3), :class:`RecruitMsg`: ``recipient, cluster, depth`` -- Alg. 3 lines 22-34.
* ``KIND_MERGE`` (4), :class:`MergeMsg`: ``recipient, map`` -- Alg. 4 line 22.
* ``KIND_DECIDE`` (5), :class:`DecideMsg`: ``round, cand, cluster, depth, n accepted, n joined``
  -- the resolution rounds of a write step (:mod:`dmar_agent.agent`).

``map`` (a :class:`~dmar_agent.executor.LocalMap`): ``n_cells``, the ``known`` and ``free``
bitsets packed 48 bits per float (bit ``j`` of word ``w`` is cell ``48 w + j``), ``n tasks``,
``n`` (agent, cell) pairs, ``n members``: a 20 x 20 map with 20 agents is about 90 floats.
``plan`` (a :class:`~dmar_agent.executor.TeamPlan`): ``leader, n tasks, n_members`` then per
member, ascending ID, ``id, idle, n controls`` (controls 0..4).

Decoding is bounded and total: anything that is not a well-formed message of this version --
wrong type or shape, non-integral or out-of-range value, a count past the end, trailing data,
more than ``MAX_FLOATS`` values -- raises :class:`WireError` (a ``ValueError``), never another
exception. ``decode(encode(m))`` equals ``m`` field by field.

The view (``VIEW_FIELDS`` rows of the contract) is decoded by :func:`decode_view`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sim_bridge.topics import DMAR_MSG_VERSION

from .errors import DmarError
from .executor import LocalMap, Memory, TeamPlan

KIND_STATE, KIND_JOIN, KIND_RECRUIT, KIND_MERGE, KIND_DECIDE = 1, 2, 3, 4, 5
MAX_FLOATS = 1 << 16
"""Largest payload accepted (a 20 x 20 map is ~90 values; a plan ~ members x lambda)."""
MAX_CELLS = 1 << 16
MAX_ID = 1 << 16
MAX_STEP = 1 << 52
BITS = 48
_POW = 2.0 ** np.arange(BITS)


class WireError(DmarError, ValueError):
    """A payload is not a well-formed DMAR message (the message says what is wrong)."""


# ====================================================================== message types
@dataclass(frozen=True)
class StateMsg:
    """Snapshot of the sender's peer-readable memory after ``round`` of step ``ps_step``."""

    sender: int
    ps_step: int
    round: int
    memory: Memory


@dataclass(frozen=True)
class JoinMsg:
    """Join request of ``sender`` to ``recipient`` (Alg. 3 lines 14-16)."""

    sender: int
    ps_step: int
    recipient: int


@dataclass(frozen=True)
class RecruitMsg:
    """Cluster-join request: ``recipient`` is asked to join ``cluster`` at ``depth``."""

    sender: int
    ps_step: int
    recipient: int
    cluster: int
    depth: int


@dataclass(frozen=True)
class MergeMsg:
    """``recipient.M <- recipient.M U map`` (Alg. 4 line 22)."""

    sender: int
    ps_step: int
    recipient: int
    map: LocalMap


@dataclass(frozen=True)
class DecideMsg:
    """Outcome of one resolution round of a write step (see :mod:`dmar_agent.agent`).

    Attributes:
        cand: round 1: the recruiter whose offer the sender would take, or -1.
        cluster, depth: round 3: the sender's cluster (-1: none) and depth after recruits.
        accepted: round 2: targets whose offers the sender (a recruiter) confirms.
        joined: round 3: agents the sender accepted as children (joins).
    """

    sender: int
    ps_step: int
    round: int
    cand: int = -1
    cluster: int = -1
    depth: int = -1
    accepted: tuple = ()
    joined: tuple = ()


Message = StateMsg | JoinMsg | RecruitMsg | MergeMsg | DecideMsg


# ====================================================================== encoding
def _opt(x: int | None) -> int:
    return -1 if x is None else int(x)


def _seq(out: list, items) -> None:
    items = list(items)
    out.append(len(items))
    out.extend(int(x) for x in items)


def _bits(out: list, mask: np.ndarray) -> None:
    n = mask.size
    pad = np.zeros(-(-n // BITS) * BITS, dtype=np.float64)
    pad[:n] = mask
    out.extend((pad.reshape(-1, BITS) @ _POW).tolist())


def _map(out: list, lm: LocalMap) -> None:
    out.append(lm.known.size)
    _bits(out, lm.known)
    _bits(out, lm.free)
    _seq(out, sorted(lm.tasks))
    pairs = sorted(lm.agents)
    out.append(len(pairs))
    for a, c in pairs:
        out.extend((a, c))
    _seq(out, sorted(lm.members))


def _plan(out: list, plan: TeamPlan) -> None:
    out.append(plan.leader)
    _seq(out, sorted(plan.tasks))
    out.append(len(plan.controls))
    for a in sorted(plan.controls):
        out.extend((a, int(a in plan.idle)))
        _seq(out, plan.controls[a])


def encode(msg: Message) -> np.ndarray:
    """Payload ``[DMAR_MSG_VERSION, ps_step, kind, sender, body...]`` of one message."""
    out: list = [DMAR_MSG_VERSION, msg.ps_step, 0, msg.sender]
    if isinstance(msg, StateMsg):
        m = msg.memory
        out[2] = KIND_STATE
        out += [msg.round, int(m.sees_task), _opt(m.cluster), _opt(m.parent), m.depth]
        out.append(int(m.message))
        _seq(out, m.children)
        out.append(int(m.map is not None))
        if m.map is not None:
            _map(out, m.map)
        out.append(int(m.plan is not None))
        if m.plan is not None:
            _plan(out, m.plan)
    elif isinstance(msg, JoinMsg):
        out[2] = KIND_JOIN
        out.append(msg.recipient)
    elif isinstance(msg, RecruitMsg):
        out[2] = KIND_RECRUIT
        out += [msg.recipient, msg.cluster, msg.depth]
    elif isinstance(msg, MergeMsg):
        out[2] = KIND_MERGE
        out.append(msg.recipient)
        _map(out, msg.map)
    elif isinstance(msg, DecideMsg):
        out[2] = KIND_DECIDE
        out += [msg.round, msg.cand, msg.cluster, msg.depth]
        _seq(out, msg.accepted)
        _seq(out, msg.joined)
    else:
        raise TypeError(f"not a DMAR message: {type(msg).__name__}")
    if len(out) > MAX_FLOATS:
        raise WireError(f"message of {len(out)} values exceeds MAX_FLOATS={MAX_FLOATS}")
    return np.asarray(out, dtype=np.float64)


# ====================================================================== decoding
def _increasing(xs, what: str) -> None:
    if any(a >= b for a, b in zip(xs, xs[1:])):
        raise WireError(f"{what} values must be strictly increasing (a set, sorted), got {xs}")


class _Reader:
    """Cursor over a payload; every read checks type, range and the end of the data."""

    def __init__(self, data: np.ndarray) -> None:
        self.d = data
        self.i = 0

    def int(self, lo: int, hi: int, what: str) -> int:
        if self.i >= self.d.size:
            raise WireError(f"payload ends before {what} (at value {self.i})")
        x = float(self.d[self.i])
        self.i += 1
        if not (lo <= x <= hi) or x != int(x):
            raise WireError(
                f"{what}={x!r} at value {self.i - 1} must be an integer in [{lo}, {hi}]"
            )
        return int(x)

    def opt(self, hi: int, what: str) -> int | None:
        x = self.int(-1, hi, what)
        return None if x < 0 else x

    def flag(self, what: str) -> bool:
        return bool(self.int(0, 1, what))

    def ints(self, lo: int, hi: int, what: str) -> tuple:
        n = self.int(0, self.d.size - self.i - 1, f"count of {what}")
        return tuple(self.int(lo, hi, what) for _ in range(n))

    def int_set(self, lo: int, hi: int, what: str) -> tuple:
        """A set as :func:`encode` writes it: strictly increasing (one payload per set)."""
        xs = self.ints(lo, hi, what)
        _increasing(xs, what)
        return xs

    def bits(self, n: int, what: str) -> np.ndarray:
        words = -(-n // BITS)
        if self.i + words > self.d.size:
            raise WireError(f"payload ends inside the {what} bitset")
        w = self.d[self.i : self.i + words]
        self.i += words
        if not np.all((w >= 0) & (w < 2.0**BITS) & (w == np.floor(w))):
            raise WireError(f"{what} bitset words must be integers in [0, 2^{BITS})")
        bits = (w.astype(np.uint64)[:, None] >> np.arange(BITS, dtype=np.uint64)) & np.uint64(1)
        flat = bits.reshape(-1).astype(bool)
        if flat[n:].any():
            raise WireError(f"{what} bitset has bits set past cell {n - 1}")
        return flat[:n]

    def map(self) -> LocalMap:
        n = self.int(1, MAX_CELLS, "n_cells")
        known = self.bits(n, "known")
        free = self.bits(n, "free")
        tasks = self.int_set(0, n - 1, "task cell")
        npairs = self.int(0, (self.d.size - self.i) // 2, "count of agents")
        agents = [
            (self.int(0, MAX_ID, "agent id"), self.int(0, n - 1, "agent cell"))
            for _ in range(npairs)
        ]
        _increasing(agents, "agent (id, cell)")
        members = self.int_set(0, MAX_ID, "member id")
        return LocalMap(known, free, frozenset(tasks), frozenset(agents), frozenset(members))

    def plan(self) -> TeamPlan:
        leader = self.int(0, MAX_ID, "plan leader")
        tasks = self.int_set(0, MAX_CELLS - 1, "plan task cell")
        n = self.int(0, self.d.size - self.i, "count of plan members")
        controls, idle = {}, set()
        for _ in range(n):
            a = self.int(0, MAX_ID, "plan member id")
            if self.flag("idle flag"):
                idle.add(a)
            controls[a] = self.ints(0, 4, "control")
        if len(controls) != n:
            raise WireError("plan lists a member twice")
        _increasing(list(controls), "plan member id")
        return TeamPlan(controls, frozenset(idle), frozenset(tasks), leader)


def _as_payload(payload) -> np.ndarray:
    try:
        d = np.asarray(payload, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"payload is not an array of numbers ({exc})") from None
    if d.ndim != 1:
        raise WireError(f"payload must be 1-D, got shape {d.shape}")
    if d.size > MAX_FLOATS:
        raise WireError(f"payload of {d.size} values exceeds MAX_FLOATS={MAX_FLOATS}")
    if d.size < 4:
        raise WireError(f"payload of {d.size} values is shorter than the 4-value header")
    if d[0] != DMAR_MSG_VERSION:
        raise WireError(f"message version {d[0]!r}, this agent speaks {DMAR_MSG_VERSION}")
    return d


def decode(payload) -> Message:
    """Inverse of :func:`encode`; raises :class:`WireError` on anything malformed."""
    r = _Reader(_as_payload(payload))
    r.i = 1
    step = r.int(0, MAX_STEP, "ps_step")
    kind = r.int(KIND_STATE, KIND_DECIDE, "kind")
    sender = r.int(0, MAX_ID, "sender")
    if kind == KIND_STATE:
        rnd = r.int(0, 15, "round")
        sees, cluster, parent = (
            r.flag("sees_task"),
            r.opt(MAX_ID, "cluster"),
            r.opt(MAX_ID, "parent"),
        )
        depth = r.int(-1, MAX_ID, "depth")
        message = r.flag("message")
        children = r.ints(0, MAX_ID, "child id")
        lm = r.map() if r.flag("map flag") else None
        plan = r.plan() if r.flag("plan flag") else None
        mem = Memory(sender, sees, cluster, parent, children, depth, message, map=lm, plan=plan)
        msg: Message = StateMsg(sender, step, rnd, mem)
    elif kind == KIND_JOIN:
        msg = JoinMsg(sender, step, r.int(0, MAX_ID, "recipient"))
    elif kind == KIND_RECRUIT:
        to, cl = r.int(0, MAX_ID, "recipient"), r.int(0, MAX_ID, "cluster")
        msg = RecruitMsg(sender, step, to, cl, r.int(0, MAX_ID, "depth"))
    elif kind == KIND_MERGE:
        msg = MergeMsg(sender, step, r.int(0, MAX_ID, "recipient"), r.map())
    else:
        rnd, cand = r.int(0, 15, "round"), r.int(-1, MAX_ID, "cand")
        cl, depth = r.int(-1, MAX_ID, "cluster"), r.int(-1, MAX_ID, "depth")
        acc = r.ints(0, MAX_ID, "accepted id")
        msg = DecideMsg(sender, step, rnd, cand, cl, depth, acc, r.ints(0, MAX_ID, "joined id"))
    if r.i != r.d.size:
        raise WireError(f"{r.d.size - r.i} trailing values after a kind-{kind} message")
    return msg


# ====================================================================== views
@dataclass(frozen=True)
class View:
    """One robot's view nu_t(a) at world PS step ``ps_step`` (contract ``view`` topic).

    Attributes:
        ps_step: world PS step the view belongs to.
        shape: (height, width) of the grid [cells].
        cell: own cell (flat index ``row * width + col``).
        cells: (K,) int cells within Manhattan distance k, own cell first, then ascending.
        obstacle: (K,) bool, obstacle flag of each cell of ``cells``.
        tasks: cells of unvisited tasks in view.
        robots: robot ID -> cell of every robot in view, self included.
    """

    ps_step: int
    shape: tuple
    cell: int
    cells: np.ndarray
    obstacle: np.ndarray
    tasks: frozenset
    robots: dict


def encode_view(view: View) -> np.ndarray:
    """(K', 5) rows ``[row, col, obstacle, task, robot]`` of the contract (one per robot)."""
    width = view.shape[1]
    by_cell: dict[int, list[int]] = {}
    for a in sorted(view.robots):
        by_cell.setdefault(view.robots[a], []).append(a)
    rows = []
    for c, ob in zip(view.cells.tolist(), view.obstacle.tolist()):
        r, col = divmod(c, width)
        for a in by_cell.get(c, [-1]):
            rows.append((r, col, float(ob), float(c in view.tasks), a))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def decode_view(rows, shape: tuple, ps_step: int, me: int) -> View:
    """Parse the contract's view rows; raises :class:`WireError` when malformed.

    Args:
        rows: (K', 5) array of ``VIEW_FIELDS`` rows.
        shape: (height, width) of the routing grid [cells].
        ps_step: the world step carried in ``layout.data_offset``.
        me: this robot's index; it must stand in the first row's cell.
    """
    try:
        d = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"view is not an array of numbers ({exc})") from None
    h, w = int(shape[0]), int(shape[1])
    if d.ndim != 2 or d.shape[1] != 5 or not 0 < d.shape[0] <= MAX_FLOATS or h * w > MAX_CELLS:
        raise WireError(f"view must be (K, 5) with 0 < K <= {MAX_FLOATS}, got {d.shape}")
    if not np.isfinite(d).all() or (d != np.floor(d)).any():
        raise WireError("view values must be finite integers")
    rr, cc, ob, tk, rb = (d[:, j].astype(np.int64) for j in range(5))
    if (rr < 0).any() or (rr >= h).any() or (cc < 0).any() or (cc >= w).any():
        raise WireError(f"view cell outside the {h} x {w} grid")
    if ((ob != 0) & (ob != 1)).any() or ((tk != 0) & (tk != 1)).any() or (rb < -1).any():
        raise WireError("view obstacle/task must be 0/1 and robot >= -1")
    flat = rr * w + cc
    cells, first = np.unique(flat, return_index=True)
    order = np.argsort(first, kind="stable")
    cells, first = cells[order], first[order]
    robots = {int(a): int(c) for a, c in zip(rb.tolist(), flat.tolist()) if a >= 0}
    if robots.get(me) != int(flat[0]):
        raise WireError(f"robot {me} is not in the view's first cell")
    return View(
        ps_step=int(ps_step),
        shape=(h, w),
        cell=int(flat[0]),
        cells=cells,
        obstacle=ob[first].astype(bool),
        tasks=frozenset(flat[tk == 1].tolist()),
        robots=robots,
    )
