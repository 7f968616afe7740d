"""Collision avoidance of continuous-space DMAR (the paper's Appendix C, Algorithm 2).

In continuous space two robots cannot share a cell, so the EM phase (Algorithm 5 lines 8-11) is
augmented by Algorithm 2. :func:`resolve_moves` decides one EM step for every agent: given each
agent's current cell and its intent -- the cells its remaining control sequence visits (cluster
members) or its random exploration moves in the order drawn (explorers) -- it returns the cell each
agent heads for and how far along its sequence that takes it.

Rules as implemented (Algorithm 2 step numbers):

1. *Locate waiting agents*: every agent's current cell is held for this step. Nobody may target a
   cell that another agent stands on (the agent "already waiting at l" has precedence, step 3).
   Robots therefore never follow each other into a cell being vacated, each robot only ever
   covers its own cell and its target, and these sets are disjoint across robots: no two robots
   target one cell and no two swap cells along an edge.
2. *Detect collisions*: each member with remaining moves claims the next cell of its sequence
   (a WAIT control claims its own cell, which is always granted).
3. *Define precedence*: among the members claiming one free cell l, an agent for which l is its
   final position (only WAIT controls follow) goes first, then ascending agent ID. The others
   lose the claim.
4. *Backtrack or move ahead*: a loser walks its sequence past l, one control at a time, for a
   safe location that it can reach by one grid move from where it stands (adjacent or its own
   cell; any farther cell would be reached through l or through cells of other robots). A safe
   location is free, held by nobody (step 1), claimed by nobody in step 2, and no protected cell
   (e.g. a task still open) lies among the circumvented cells. If one is found it moves there
   directly and the controls in between are consumed: their cost is counted (the paper's footnote:
   "any move's cost that is circumvented by moving forward in an agent's trajectory is accounted
   for"). Two losers that pick the same cell: the lower ID takes it. Otherwise it backtracks: it
   stays where it is and consumes nothing (an inserted wait, not counted).
5. *Deciding how long to wait*: a loser that backtracked because l is held by an agent that will
   not leave it this EM phase (``stays``: a member whose sequence is done, an explorer that
   stopped) has no chance of a safe location later, so it calls its cell final (``final``; the
   caller drops the rest of its sequence). Any other loser waits and tries again next step.
   The caller ends the EM phase when a whole step leaves every agent where it was (nothing can
   change afterwards): then every remaining sequence is final as well. Each step that is not
   such a stall moves some agent, and the caller bounds EM steps, so the phase always ends.
6. *Move exploring agents*: explorers come last. An explorer takes the first of its drawn moves
   whose cell is free, not held and not claimed by a member (a collision makes it "choose another
   random move"); two explorers picking one cell: the lower ID moves, the other waits. With no
   safe move it waits.

Locality (the paper: "an equivalent decentralized execution scheme exists using message passing
between neighboring agents since all information used is local"): every conflict is over a cell
one hop from the agents involved, so a distributed node needs only agents within 2 cells, in four
message rounds: (1) cells, sequences and whether the agent stays (gives steps 2-3 and the step-4
pick), (2) step-3 losses and step-4 picks (gives a member's target), (3) members' targets (gives an
explorer's pick), (4) explorers' picks (gives an explorer's target). Chained, a member's outcome
depends on the intents of agents within 4 cells and an explorer's on those within
``LOCAL_RADIUS`` = 8 cells: :func:`resolve_moves` on any subset of agents holding all of them gives
the agent the same result as on the whole team (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .world import DC, DR, WAIT

MEMBER_RADIUS = 4
"""Cells (Manhattan) around a member whose intents decide its outcome (module docstring)."""
LOCAL_RADIUS = 8
"""Cells (Manhattan) around any agent whose intents decide its outcome (module docstring)."""


@dataclass(frozen=True)
class Intent:
    """What one agent wants to do this EM step.

    Attributes:
        path: member: cells after each remaining control of its sequence, in order (a WAIT
            repeats the previous cell); empty when its sequence is done (it stays).
        explore: explorer: candidate cells of its random moves in the order drawn; empty when
            it waits (stopped, or its exploration budget is spent). Ignored when ``path`` is set.
        member: True for a cluster member following a control sequence.
    """

    path: tuple[int, ...] = ()
    explore: tuple[int, ...] = ()
    member: bool = False


@dataclass(frozen=True)
class Resolution:
    """Outcome of one EM step (:func:`resolve_moves`).

    Attributes:
        targets: (m,) int64 cell each agent heads for (its own cell when it waits).
        advance: (m,) int64 controls of its sequence a member consumes (0: inserted wait,
            1: the planned control, > 1: it moved ahead, circumventing ``advance - 1``).
        final: (m,) bool, a member that backtracked for good (step 5, scenario 2).
        blocked: (m,) bool, a member that lost a claim this step (steps 3-4).
        moved: (m,) bool, the target differs from the current cell.
    """

    targets: np.ndarray
    advance: np.ndarray
    final: np.ndarray
    blocked: np.ndarray
    moved: np.ndarray


def _adjacent(a: int, b: int, width: int) -> bool:
    ra, ca = divmod(a, width)
    rb, cb = divmod(b, width)
    return abs(ra - rb) + abs(ca - cb) <= 1


def _is_final(path: tuple[int, ...], j: int) -> bool:
    """Only WAIT controls follow position ``j`` of ``path`` (the cell stays the same)."""
    return all(c == path[j] for c in path[j + 1 :])


def resolve_moves(
    cells: Sequence[int],
    intents: Sequence[Intent],
    width: int,
    free: np.ndarray,
    protected: frozenset = frozenset(),
    ids: Sequence[int] | None = None,
) -> Resolution:
    """One EM step of Algorithm 2 for every agent (rules in the module docstring).

    Kept whole: one function on purpose: its blocks are Algorithm 2's steps 1-6 in
    the paper's order, sharing the held / claimed / target sets, and reading them top to bottom
    against the appendix is the check that matters.

    Args:
        cells: (m,) current cell of each agent (distinct).
        intents: (m,) :class:`Intent` of each agent.
        width: grid width (cells are ``row * width + col``).
        free: (n_cells,) bool, cells that can be visited.
        protected: cells that a move ahead may not circumvent (open tasks).
        ids: (m,) agent IDs for the precedence order; default ``0..m-1``.

    Returns:
        The :class:`Resolution`. Pure and deterministic: equal inputs give equal outputs.
    """
    m = len(cells)
    cells = [int(c) for c in cells]
    ids = list(range(m)) if ids is None else [int(x) for x in ids]
    targets = np.array(cells, dtype=np.int64)
    advance = np.zeros(m, dtype=np.int64)
    final = np.zeros(m, dtype=bool)
    blocked = np.zeros(m, dtype=bool)
    holder = {c: i for i, c in enumerate(cells)}  # step 1
    stays = {
        i
        for i, it in enumerate(intents)
        if (it.member and all(c == cells[i] for c in it.path)) or (not it.member and not it.explore)
    }

    # step 2: members claim the next cell of their sequence
    claims: dict[int, list[int]] = {}
    for i in range(m):
        path = intents[i].path
        if not path:
            continue
        if path[0] == cells[i]:  # WAIT control: its own cell, always granted
            advance[i] = 1
            continue
        claims.setdefault(path[0], []).append(i)

    # step 3: precedence at each claimed cell
    losers: list[tuple[int, int | None]] = []  # (agent, holder of the cell it lost, if any)
    for cell, who in claims.items():
        h = holder.get(cell)
        if h is not None:
            losers.extend((i, h) for i in who)
            continue
        order = sorted(who, key=lambda i: (not _is_final(intents[i].path, 0), ids[i]))
        targets[order[0]] = cell
        advance[order[0]] = 1
        losers.extend((i, None) for i in order[1:])

    # step 4: move ahead to a safe cell one grid move away, or backtrack
    taken = set(claims) | set(holder)
    picks: dict[int, list[int]] = {}
    pick_of: dict[int, tuple[int, int]] = {}
    for i, h in losers:
        blocked[i] = True
        path = intents[i].path
        for j in range(1, len(path)):
            if path[j - 1] in protected:
                break
            c = path[j]
            if c == cells[i] or (c not in taken and free[c] and _adjacent(c, cells[i], width)):
                picks.setdefault(c, []).append(i)
                pick_of[i] = (c, j)
                break
        if i not in pick_of and h is not None and h in stays:
            final[i] = True  # step 5, scenario 2: l is held for the rest of the phase
    for c, who in picks.items():
        for n, i in enumerate(sorted(who, key=lambda i: ids[i])):
            if n == 0 or c == cells[i]:
                targets[i] = c
                advance[i] = pick_of[i][1] + 1
    taken |= {int(t) for t in targets}

    # step 6: explorers last, in ascending ID order of their picks
    epicks: dict[int, list[int]] = {}
    for i in range(m):
        if intents[i].path or intents[i].member:
            continue
        for c in intents[i].explore:
            if c != cells[i] and c not in taken and free[c] and _adjacent(c, cells[i], width):
                epicks.setdefault(c, []).append(i)
                break
    for c, who in epicks.items():
        targets[min(who, key=lambda i: ids[i])] = c
    moved = targets != np.array(cells, dtype=np.int64)
    return Resolution(targets, advance, final, blocked, moved)


def sequence_cells(cell: int, controls: Sequence[int], width: int) -> tuple[int, ...]:
    """Cells visited after each control of ``controls`` from ``cell`` (WAIT repeats the cell)."""
    out = []
    r, c = divmod(int(cell), width)
    for u in controls:
        r, c = r + DR[u], c + DC[u]
        out.append(r * width + c)
    return tuple(out)


class SequenceFollower:
    """Members' progress through their control sequences over one EM phase (Algorithm 2 loop).

    Keeps, per agent, its control sequence, how many controls it has consumed and whether it
    called its cell final; builds the members' :class:`Intent` and books a :class:`Resolution`.

    Args:
        controls: agent index -> control sequence (0..4 = N, E, S, W, WAIT) of a cluster member.
        width: grid width.
    """

    def __init__(self, controls: dict[int, Sequence[int]], width: int) -> None:
        self.controls = {int(i): tuple(int(u) for u in s) for i, s in controls.items()}
        self.width = int(width)
        self.done = {i: 0 for i in self.controls}
        self.dropped = {i: 0 for i in self.controls}
        self.cost = 0
        #: moves counted but not flown (circumvented by moving ahead, step 4)
        self.skipped = 0

    def remaining(self, i: int) -> tuple[int, ...]:
        return self.controls[i][self.done[i] :]

    def active(self) -> bool:
        """Some member still has controls to execute."""
        return any(self.remaining(i) for i in self.controls)

    def intent(self, i: int, cell: int) -> Intent:
        return Intent(path=sequence_cells(cell, self.remaining(i), self.width), member=True)

    def book(self, res: Resolution) -> None:
        """Consume the controls of ``res.advance`` (their moves are cost, skipped ones too) and
        drop the rest of the sequences called final (step 5)."""
        for i in self.controls:
            a = int(res.advance[i])
            if a:
                used = self.remaining(i)[:a]
                self.cost += moves_cost(used)
                self.skipped += moves_cost(used) - int(res.moved[i])
                self.done[i] += a
            if res.final[i]:
                self.finalise(i)

    def finalise(self, i: int) -> None:
        """Call the current cell final: the rest of the sequence is dropped (not counted)."""
        self.dropped[i] += moves_cost(self.remaining(i))
        self.done[i] = len(self.controls[i])


def moves_cost(controls: Sequence[int]) -> int:
    """Cost of consumed controls: one per move, WAIT free (the paper's accounting)."""
    return sum(1 for u in controls if u != WAIT)


# ----------------------------------------------------------------------------- the node's rule


def goes_first(other: int, me: int, step: int, n: int) -> bool:
    """Robot ``other`` has precedence over robot ``me`` at PS step ``step`` (``n`` robots):
    ascending index, rotated by the step, so every robot agrees and none is held off for good
    (a fixed order let an idle low index next to a task hold a higher one off it)."""
    return (other - step) % n < (me - step) % n


def must_yield(
    me: int,
    target: tuple[int, int],
    robots: dict[int, int],
    width: int,
    step: int,
    n_robots: int,
) -> bool:
    """The DMAR node's one-round form of Algorithm 2's steps 1-3 (no move ahead): robot ``me``
    waits instead of moving to ``target`` (row, col) when

    * another robot of its view stands on the target (step 1: every robot's cell is held), or
    * a robot of its view that goes first (:func:`goes_first` among ``n_robots``, step 3)
      stands next to the target: it may claim the cell this step too (step 2).

    Ground robots follow the same rule as drones: their CBF certifies the axle with plain Ds
    (:class:`cbf_filter.unicycle.AxleCBF`), so a robot in one of the 8 cells around the target
    does not hold them off it. (A former extra rule, "with a ground robot on either side, wait
    while the other stands in the 8 cells around the target", served the projection-point
    certificate's Ds + 2 l; it had no precedence, so two ground robots could hold each other
    for good, and it needed a view of 3 cells, more than k = 2 gives.)

    ``robots``: index -> flat cell of every robot in the view (``me`` included or not). Every
    robot that can reach ``target`` in one move stands next to it, so with a view of at least
    2 cells each robot sees all its contenders: no two robots head for one cell and no two swap
    cells (tested as a property). Needs no message round beyond the protocol's; the price is
    that a robot yields to a neighbour of its target that does not claim it (a wait), where
    Algorithm 2 with its intent rounds would let it go.
    """
    n = int(n_robots)
    row, col = target
    for a, cell in robots.items():
        if a == me:
            continue
        ar, ac = divmod(int(cell), width)
        d1 = abs(ar - row) + abs(ac - col)
        if d1 == 0:
            return True
        if d1 == 1 and goes_first(a, me, step, n):
            return True
    return False
