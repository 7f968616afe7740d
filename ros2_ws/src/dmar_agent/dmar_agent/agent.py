"""One robot's DMAR agent: Algorithm 1 as a phase machine over PS steps, fed by messages only.

:class:`DmarAgent` runs the phase functions of :mod:`dmar_agent.protocols` unchanged, through
:class:`MessageAPI`, an :class:`~dmar_agent.executor.AgentAPI` look-alike whose reads come from
the robot's :class:`~dmar_agent.wire.View` and from the messages of robots that view shows.

Schedule. PS step ``t`` runs step ``t mod iteration_steps`` of the iteration (Algorithm 1: SOAC
Alg. 3, LMA Alg. 4, TMAR Alg. 5 lines 1-7, EM lines 8-11; the lists of
``protocols.soac_steps`` / ``lma_steps`` / ``tmar_steps``) and iteration ``t // iteration_steps
+ 1`` (which seeds the exploration stream exactly as the executor does). Step 0 of an iteration
re-initialises the memory (Alg. 5 line 11) and reads no peer.

Rounds. A step whose function may write other agents' memories (SOAC join and propagate steps,
LMA up steps) takes ``WRITE_ROUNDS`` = 5 message rounds, so that the executor's end-of-step
resolution (lowest sender wins, capacities, joins after recruits, merges last) happens exactly:

0. run the phase function; send ``STATE`` (own writes applied) and the typed writes;
1. a recruit target names the lowest recruiter whose offer passes its checks (``DECIDE.cand``);
2. a recruiter confirms candidates in ascending ID while it has free child pointers;
3. a join parent, its recruit outcome now known, accepts joiners in ascending ID;
4. joiners learn the outcome, map merges are applied; send the final ``STATE``.

Every other step takes one round: the ``STATE`` sent after running the function is final. Peers
read at step ``t`` are the final ``STATE`` s of step ``t - 1``. The rounds rely on two invariants
of the protocol (checked in tests through lockstep equality): nobody both recruits and is
recruited in one step, and joiners are neither recruited nor join parents in that step.

Real timing (late or lost messages, robots that drop out). The core has no clock; whoever drives
it (the node, :mod:`dmar_agent.distributed`) closes a round when every robot in view was heard or
a timeout passed, and hands over what arrived. Then:

* a message is used only in the round it belongs to; late ones are dropped (``late``), early ones
  are kept for their round (at most ``MAX_BUFFER``); undecodable ones are counted (``bad``);
* a robot in view that was not heard reads as a blank memory (no task seen, no cluster), so an
  agent that hears nobody acts alone: it leads a one-robot cluster if it sees a task, else it
  explores in EM;
* an agent that misses a step (no view for it: started mid-iteration, or its node fell behind the
  world) has lost the iteration's protocol state: it sits the rest of the iteration out as a
  blank explorer and rejoins at the next iteration (``skipped_steps``);
* a member whose parent is silent or gone leaves the cluster at its next tree upkeep
  (``_maintain``) and explores; a parent forgets silent children; a leader plans only for the
  members whose maps reached it (LMA), the others find no sequence in the plan and explore;
* an offer or a join counts only when confirmed by the other side's ``DECIDE``: a lost
  confirmation means "not joined" on the side that missed it, and the other side's next tree
  upkeep repairs the pointers;
* re-election is Algorithm 1 itself: every iteration starts from blank memories.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from .errors import ConfigError, LocalityError
from .executor import LocalMap, Memory, StepOps
from .protocols import (
    AgentParams,
    DmarConfig,
    elect_step,
    em_init_step,
    lma_down_step,
    lma_init_step,
    lma_steps,
    make_em_move_step,
    sense_step,
    settle_step,
    soac_steps,
    tmar_bcast_step,
    tmar_steps,
)
from .wire import (
    DecideMsg,
    JoinMsg,
    MergeMsg,
    RecruitMsg,
    StateMsg,
    View,
    WireError,
    decode,
    encode,
)

WRITE_ROUNDS = 5
MAX_BUFFER = 4096
_PLAIN = {sense_step, elect_step, settle_step, lma_init_step, lma_down_step, tmar_bcast_step}
_PLAIN.add(em_init_step)
_PLAIN_NAMES = {"tmar_plan_step", "em_move_step"}


def iteration_schedule(cfg: DmarConfig, shape: tuple) -> list:
    """Phase functions of one DMAR iteration, in PS-step order (Algorithm 1)."""
    if cfg.gci:
        raise ConfigError(
            "gci=True needs a swarm-wide EM length (the longest plan), which no agent knows; "
            "the distributed agent runs DMAR and BP only"
        )
    steps = soac_steps(cfg) + lma_steps(cfg) + tmar_steps(cfg, shape) + [em_init_step]
    steps += [make_em_move_step(t, cfg.lam_steps) for t in range(cfg.lam_steps)]
    return steps


def step_rounds(fn) -> int:
    """Message rounds of a PS step running ``fn`` (1, or ``WRITE_ROUNDS`` if it may write peers)."""
    return 1 if fn in _PLAIN or getattr(fn, "__name__", "") in _PLAIN_NAMES else WRITE_ROUNDS


@dataclass
class RoundOutput:
    """What one round of an agent produces.

    Attributes:
        messages: payloads to broadcast (``comm/out``), each a flat float64 array.
        control: the EM control (0..4) for this PS step, in round 0 of EM movement steps; None
            elsewhere (the robot stays).
        pending: True when the round runs in the background (TMAR planning with
            ``background_plan``): no messages yet; :meth:`DmarAgent.poll` gives the output.
    """

    messages: list
    control: int | None = None
    pending: bool = False


class MessageAPI:
    """:class:`~dmar_agent.executor.AgentAPI` of one robot, backed by its view and messages."""

    __slots__ = ("_ag", "_view", "_peers", "_ops", "_map")

    def __init__(self, agent: DmarAgent, view: View, peers: dict, ops: StepOps) -> None:
        self._ag = agent
        self._view = view
        self._peers = peers
        self._ops = ops
        self._map = None

    @property
    def me(self) -> Memory:
        return self._ag.mem

    @property
    def cell(self) -> int:
        return self._view.cell

    @property
    def rng(self) -> np.random.Generator:
        return self._ag.rng()

    @property
    def params(self):
        return self._ag.params

    def agents_in_view(self) -> list[int]:
        return sorted(a for a in self._view.robots if a != self._ag.id)

    def peer(self, agent_id: int) -> Memory:
        """Memory of step t - 1 from the peer's final ``STATE``; a blank one if it was not heard
        or is not in view (a silent or vanished robot carries no information)."""
        if agent_id == self._ag.id:
            return self._ag.mem
        got = self._peers.get(agent_id)
        return got if got is not None else Memory(agent_id)

    def tasks_in_view(self) -> frozenset:
        return self._view.tasks

    def view_map(self) -> LocalMap:
        if self._map is None:
            v = self._view
            known = np.zeros(v.shape[0] * v.shape[1], dtype=bool)
            known[v.cells] = True
            free = known.copy()
            free[v.cells[v.obstacle]] = False
            agents = frozenset(v.robots.items())
            self._map = LocalMap(known, free, v.tasks, agents, frozenset((self._ag.id,)))
        return self._map

    def free_moves(self) -> list[tuple[int, int]]:
        v = self._view
        h, w = v.shape
        r, c = divmod(v.cell, w)
        blocked = set(v.cells[v.obstacle].tolist())
        out = []
        for d, (dr, dc) in enumerate(((-1, 0), (0, 1), (1, 0), (0, -1))):
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and rr * w + cc not in blocked:
                out.append((d, rr * w + cc))
        return out

    def record(self, key: str, value: float) -> None:
        st = self._ag.stats
        st[key] = st.get(key, 0) + value

    def cell_free(self, cell: int) -> bool:
        v = self._view
        hit = np.flatnonzero(v.cells == cell)
        if hit.size == 0:
            raise LocalityError(f"agent {self._ag.id} looked at cell {cell} outside its view")
        return not bool(v.obstacle[hit[0]])

    def set(self, **fields) -> None:
        self._ops.own.update(fields)

    def _check(self, target: int) -> None:
        if target == self._ag.id or target not in self._view.robots:
            raise LocalityError(f"agent {self._ag.id} wrote agent {target} outside its view")

    def join(self, parent: int) -> None:
        self._check(parent)
        self._ops.joins.append(parent)

    def recruit(self, target: int, cluster: int, depth: int) -> None:
        self._check(target)
        self._ops.recruits.append((target, cluster, depth))

    def merge_map(self, target: int, local_map: LocalMap) -> None:
        self._check(target)
        self._ops.merges.append((target, local_map))

    def move(self, control: int) -> None:
        self._ops.move = int(control)


class DmarAgent:
    """One robot's DMAR agent (see the module docstring for rounds and real timing).

    Args:
        agent_id: the robot's index (its DMAR ID).
        cfg: protocol constants, the same for every robot (``gci`` must be False).
        shape: (height, width) of the routing grid [cells].
        background_plan: run TMAR's planning step (Alg. 5 lines 1-3, the rollout) in a worker
            thread: that round returns ``pending`` at once and :meth:`poll` hands over its
            output, the same as the synchronous one, so the caller's control loop never waits
            for the rollout (the step's other rounds and every other step stay synchronous).

    Attributes:
        mem: own memory (Appendix D) after the last completed PS step.
        stats: run measures (``plan_wall_s``, ``compute``), never read by the protocol.
        counters: ``bad`` (undecodable payloads), ``late`` (past their round), ``foreign`` (from
            robots not in view), ``overflow`` (buffer full).
    """

    def __init__(
        self, agent_id: int, cfg: DmarConfig, shape: tuple, background_plan: bool = False
    ) -> None:
        self.id = int(agent_id)
        self.background_plan = bool(background_plan)
        self._pool: ThreadPoolExecutor | None = None
        self._future = None
        self.cfg = cfg
        self.shape = (int(shape[0]), int(shape[1]))
        self.params = AgentParams(
            cfg.k, cfg.psi, cfg.max_children, cfg.max_depth, cfg.explore, self.shape[0]
        )
        self.schedule = iteration_schedule(cfg, self.shape)
        self.rounds_of = [step_rounds(fn) for fn in self.schedule]
        self.mem = Memory(self.id)
        self.iteration = 0
        self._rng: np.random.Generator | None = None
        self.stats: dict[str, float] = {}
        self.counters = {"bad": 0, "late": 0, "foreign": 0, "overflow": 0, "skipped_steps": 0}
        self._last_t: int | None = None  # the last step whose round 0 ran here
        self._detached = False  # a step of this iteration was missed: sit it out, explore
        self._buffer: list = []
        self._w: dict = {}

    # ------------------------------------------------------------------ schedule
    def phase(self, ps_step: int):
        """Phase function run at world step ``ps_step``."""
        return self.schedule[ps_step % len(self.schedule)]

    def rounds(self, ps_step: int) -> int:
        """Message rounds of world step ``ps_step``."""
        return self.rounds_of[ps_step % len(self.schedule)]

    def is_move_step(self, ps_step: int) -> bool:
        return getattr(self.phase(ps_step), "__name__", "") == "em_move_step"

    def rng(self) -> np.random.Generator:
        """The executor's per-agent stream: seeded by (run seed, iteration, ID)."""
        if self._rng is None:
            self._rng = np.random.default_rng([self.cfg.seed, self.iteration, self.id, 271828])
        return self._rng

    # ------------------------------------------------------------------ inbox
    def _key(self, msg) -> tuple[int, int]:
        """(step, round) in which a message is consumed."""
        if isinstance(msg, StateMsg) and msg.round == self.rounds(msg.ps_step) - 1:
            return msg.ps_step + 1, 0
        if isinstance(msg, DecideMsg):
            return msg.ps_step, msg.round + 1
        return msg.ps_step, 1

    def slot_of(self, payload) -> tuple[int, int, int] | None:
        """(step, round, sender) in which a received payload is consumed, or None when it does
        not decode; lets a driver close a round once every robot in view was heard for it."""
        try:
            msg = decode(payload)
        except WireError:
            return None
        return (*self._key(msg), msg.sender)

    def _collect(self, view: View, rnd: int, inbox) -> list:
        now = (view.ps_step, rnd)
        msgs = []
        for raw in inbox:
            try:
                msgs.append(decode(raw))
            except WireError:
                self.counters["bad"] += 1
        keep, out = [], []
        for m in self._buffer + msgs:
            key = self._key(m)
            if key < now:
                self.counters["late"] += 1
            elif key > now:
                keep.append(m)
            elif m.sender == self.id or m.sender not in view.robots:
                self.counters["foreign"] += 1
            else:
                out.append(m)
        if len(keep) > MAX_BUFFER:
            self.counters["overflow"] += len(keep) - MAX_BUFFER
            keep = keep[-MAX_BUFFER:]
        self._buffer = keep
        return out

    # ------------------------------------------------------------------ rounds
    def round(self, view: View, rnd: int, inbox=()) -> RoundOutput:
        """Run round ``rnd`` of world step ``view.ps_step`` with the payloads received.

        Args:
            view: this robot's view at the step (the same for every round of the step).
            rnd: 0 .. ``rounds(view.ps_step) - 1``.
            inbox: payloads (``comm/in`` rows, comm header stripped) received since the last
                round, from any robot; the agent keeps those of robots in ``view``.
        """
        if self._future is not None:
            raise RuntimeError(f"agent {self.id}: round called while the last one is pending")
        msgs = self._collect(view, rnd, inbox)
        if rnd == 0:
            return self._run_phase(view, msgs)
        if not self._w:  # round 0 of this step never ran here (started mid-step): stay silent
            return RoundOutput([])
        return (self._cand, self._accept, self._joins, self._final)[rnd - 1](view, msgs)

    def _run_phase(self, view: View, msgs: list) -> RoundOutput:
        """Round 0: the phase function of the step, reading peers' final states of t - 1."""
        t = view.ps_step
        idx = t % len(self.schedule)
        if idx == 0:
            self.iteration = t // len(self.schedule) + 1
            self.mem = Memory(self.id)
            self._rng = None
            self._detached = False
            peers = {}
        else:
            peers = {m.sender: m.memory for m in msgs if isinstance(m, StateMsg)}
            if self._last_t is None or t != self._last_t + 1:
                self._detach(t)
        self._last_t = t
        fn = self.schedule[idx]
        if self._detached and getattr(fn, "__name__", "") != "em_move_step":
            self._w = None  # no peer writes this step: its later rounds stay silent
            return RoundOutput([encode(StateMsg(self.id, t, 0, self.mem))])
        if self.background_plan and getattr(fn, "__name__", "") == "tmar_plan_step":
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"dmar_plan_{self.id}")
            self._future = self._pool.submit(self._phase_body, view, fn, peers)
            return RoundOutput([], pending=True)
        return self._phase_body(view, fn, peers)

    def _detach(self, t: int) -> None:
        """Step ``t`` follows a step this agent did not run (a view it never got: started
        mid-iteration, or its node fell behind the world): the protocol's state of this
        iteration is lost here. The agent sits the iteration out as a blank explorer (its
        state reads as "no cluster" to its peers, it writes nobody's memory, it random-walks in
        EM) and joins again at the next iteration's first step. Counted in ``skipped_steps``."""
        self.counters["skipped_steps"] += 1
        self._detached = True
        self.iteration = t // len(self.schedule) + 1
        self._rng = None
        self.mem = replace(Memory(self.id), explore=True)

    def poll(self, wait: bool = False) -> RoundOutput | None:
        """Output of a round running in the background once it is done (None before)."""
        fut = self._future
        if fut is None or not (wait or fut.done()):
            return None
        self._future = None
        return fut.result()

    def close(self) -> None:
        """Stop the planning worker (a plan in progress is abandoned)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _phase_body(self, view: View, fn, peers: dict) -> RoundOutput:
        t = view.ps_step
        idx = t % len(self.schedule)
        ops = StepOps()
        fn(MessageAPI(self, view, peers, ops))
        post = replace(self.mem, **ops.own) if ops.own else self.mem
        control = ops.move if self.is_move_step(t) else None
        if self.rounds_of[idx] == 1:
            if ops.joins or ops.recruits or ops.merges:
                raise LocalityError(f"phase {fn.__name__} wrote peers in a one-round step")
            self.mem = post
            return RoundOutput([encode(StateMsg(self.id, t, 0, post))], control)
        self._w = {"ops": ops, "prev": self.mem, "post": post, "after": post, "cand": None}
        out = [encode(StateMsg(self.id, t, 0, post))]
        out += [encode(JoinMsg(self.id, t, p)) for p in ops.joins]
        out += [encode(RecruitMsg(self.id, t, a, c, d)) for a, c, d in ops.recruits]
        out += [encode(MergeMsg(self.id, t, a, lm)) for a, lm in ops.merges]
        return RoundOutput(out, control)

    def _cand(self, view: View, msgs: list) -> RoundOutput:
        """Round 1: as a recruit target, name the lowest recruiter whose offer passes."""
        w = self._w
        w["posts"] = {m.sender: m.memory for m in msgs if isinstance(m, StateMsg)}
        mine = [m for m in msgs if getattr(m, "recipient", None) == self.id]
        w["asks"] = sorted({m.sender for m in mine if isinstance(m, JoinMsg)})
        w["merges"] = sorted((m for m in mine if isinstance(m, MergeMsg)), key=lambda m: m.sender)
        offers = [m for m in mine if isinstance(m, RecruitMsg)]
        cand = -1
        if offers and not w["ops"].recruits:
            best = min(offers, key=lambda m: m.sender)
            sm = w["posts"].get(best.sender)
            if (
                not w["post"].message
                and best.depth <= self.cfg.max_depth
                and sm is not None
                and sm.cluster == best.cluster
            ):
                w["cand"] = best
                cand = best.sender
        return RoundOutput([encode(DecideMsg(self.id, view.ps_step, 1, cand=cand))])

    def _accept(self, view: View, msgs: list) -> RoundOutput:
        """Round 2: as a recruiter, confirm candidates in ascending ID while pointers are free."""
        w = self._w
        named = {m.sender for m in msgs if isinstance(m, DecideMsg) and m.cand == self.id}
        taken: list[int] = []
        post = w["post"]
        for target in sorted({a for a, _, _ in w["ops"].recruits}):
            if target in named and len(post.children) + len(taken) < self.cfg.max_children:
                taken.append(target)
        if taken:
            w["after"] = replace(post, children=tuple(post.children) + tuple(taken))
        return RoundOutput([encode(DecideMsg(self.id, view.ps_step, 2, accepted=tuple(taken)))])

    def _joins(self, view: View, msgs: list) -> RoundOutput:
        """Round 3: apply a confirmed recruit, then accept joiners (lowest IDs first)."""
        w = self._w
        best = w["cand"]
        conf = {m.sender: m.accepted for m in msgs if isinstance(m, DecideMsg)}
        pm = w["after"]
        if best is not None and self.id in conf.get(best.sender, ()):
            prev = w["prev"]
            old = [x for x in (prev.parent, *prev.children) if x is not None]
            pm = replace(
                pm,
                cluster=best.cluster,
                parent=best.sender,
                children=(),
                depth=best.depth,
                message=True,
                pending=tuple(x for x in old if x != best.sender),
            )
        joined = []
        for child in w["asks"]:
            cm = w["posts"].get(child)
            if (
                pm.cluster is None
                or cm is None
                or cm.cluster is not None
                or pm.depth + 1 > self.cfg.max_depth
                or len(pm.children) >= self.cfg.max_children
            ):
                continue
            pm = replace(pm, children=tuple(pm.children) + (child,))
            joined.append(child)
        w["after"] = pm
        cl = -1 if pm.cluster is None else pm.cluster
        msg = DecideMsg(self.id, view.ps_step, 3, cluster=cl, depth=pm.depth, joined=tuple(joined))
        return RoundOutput([encode(msg)])

    def _final(self, view: View, msgs: list) -> RoundOutput:
        """Round 4: a confirmed join, then the map merges (Alg. 4 line 22); final ``STATE``."""
        w = self._w
        mem = w["after"]
        dec = {m.sender: m for m in msgs if isinstance(m, DecideMsg)}
        for parent in w["ops"].joins[:1]:
            d = dec.get(parent)
            if d is not None and self.id in d.joined and d.cluster >= 0:
                mem = replace(mem, cluster=d.cluster, parent=parent, depth=d.depth + 1)
        for m in w["merges"]:
            mem = replace(mem, map=m.map if mem.map is None else mem.map.union(m.map))
        self.mem = mem
        self._w = {}
        return RoundOutput([encode(StateMsg(self.id, view.ps_step, WRITE_ROUNDS - 1, mem))])


def timed_round(agent: DmarAgent, view: View, rnd: int, inbox) -> tuple[RoundOutput, float]:
    """``agent.round`` and the longest time [s] the caller was blocked by one call (the tick
    compute of the benchmark). A pending round is polled every millisecond, as a control loop
    would between its ticks; the waits between polls are not compute of the loop."""
    t0 = time.perf_counter()
    out = agent.round(view, rnd, inbox)
    longest = time.perf_counter() - t0
    while out.pending:
        time.sleep(0.001)
        t0 = time.perf_counter()
        got = agent.poll()
        longest = max(longest, time.perf_counter() - t0)
        if got is not None:
            out = got
    return out, longest
