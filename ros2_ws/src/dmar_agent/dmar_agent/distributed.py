"""Message-level DMAR simulator: N :class:`~dmar_agent.agent.DmarAgent` s, a grid world, a relay.

The world holds positions and unvisited tasks, builds each robot's view in the contract's row
layout (``wire.encode_view`` -> ``wire.decode_view``), runs the rounds of every PS step in
lockstep, and moves the robots in EM steps. The relay delivers each payload only to robots whose
cell centres lie within Euclidean ``radius`` cells of the sender's (default ``k``, so every
robot of the Manhattan view is reached); it can lose payloads, delay them by a round, and drop
robots out for good (faults are drawn from their own seeded stream).

Without faults a run equals :func:`~dmar_agent.protocols.run_dmar` exactly (same clusters,
controls and cost; :func:`reference_trace` records those of ``run_dmar``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from unittest import mock

import numpy as np

from . import protocols
from .agent import DmarAgent, timed_round
from .executor import Executor
from .protocols import DmarConfig, RunResult, lma_init_step
from .wire import View, decode_view, encode_view
from .world import DC, DR, WAIT, Instance, diamond_offsets, grid_diameter

_CONTROL = {(DR[u], DC[u]): u for u in range(5)}


@dataclass
class Trace:
    """Per-step record of a run.

    Attributes:
        controls: one tuple per EM movement step, the control of every agent (-1: dropped out).
        clusters: one tuple per iteration, (cluster, parent) of every agent at the end of SOAC.
        tick_s: wall time [s] of every agent round (``DmarAgent.round``), all agents; with
            background planning the longest single blocking call of the round.
        plan_tick_s: the same for the rounds that ran TMAR's planning step.
        counters: relay and agent counters (lost, delayed, bad, late, foreign, rejected moves).
    """

    controls: list = field(default_factory=list)
    clusters: list = field(default_factory=list)
    tick_s: list = field(default_factory=list)
    plan_tick_s: list = field(default_factory=list)
    counters: dict = field(default_factory=dict)


class _World:
    """Grid, positions, unvisited tasks and the views of the contract."""

    def __init__(self, inst: Instance, k: int) -> None:
        self.grid = inst.grid
        self.h, self.w = inst.grid.height, inst.grid.width
        self.free = inst.grid.free_flat()
        self.k = min(int(k), grid_diameter(inst.grid))
        self.pos = np.array(inst.agents, dtype=np.int64)
        self.alive = {int(c) for c in inst.tasks.tolist()}
        self.dr, self.dc = diamond_offsets(self.k)
        for c in self.pos.tolist():
            self.alive.discard(c)

    def view(self, i: int, active: list[int], ps_step: int) -> View:
        r, c = divmod(int(self.pos[i]), self.w)
        rr, cc = r + self.dr, c + self.dc
        ok = (rr >= 0) & (rr < self.h) & (cc >= 0) & (cc < self.w)
        cells = np.sort(rr[ok] * self.w + cc[ok])
        cells = np.concatenate(([r * self.w + c], cells[cells != r * self.w + c]))
        pr, pc = np.divmod(self.pos[active], self.w)
        near = np.abs(pr - r) + np.abs(pc - c) <= self.k
        robots = {a: int(self.pos[a]) for a, n in zip(active, near.tolist()) if n}
        v = View(
            ps_step,
            (self.h, self.w),
            int(cells[0]),
            cells,
            ~self.free[cells],
            frozenset(x for x in cells.tolist() if x in self.alive),
            robots,
        )
        return decode_view(encode_view(v), (self.h, self.w), ps_step, i)

    def move(self, i: int, u: int) -> bool:
        """Apply control ``u`` of robot ``i``; False (and no move) if the target is blocked."""
        r, c = divmod(int(self.pos[i]), self.w)
        rr, cc = r + DR[u], c + DC[u]
        if not (0 <= rr < self.h and 0 <= cc < self.w) or not self.free[rr * self.w + cc]:
            return False
        self.pos[i] = rr * self.w + cc
        return True


class _Relay:
    """Comm relay: each payload to every other active robot within ``radius`` cells (Euclidean),
    each delivery lost with probability ``loss`` or one round late with probability ``late``."""

    def __init__(self, radius: float, loss: float, late: float, seed: int, counters: dict) -> None:
        self.radius, self.loss, self.late = radius, loss, late
        self.rng = np.random.default_rng([int(seed), 5150])
        self.counters = counters
        self.inbox: dict = {}
        self.delayed: dict = {}

    def exchange(self, world: _World, active: list[int], outs: dict) -> None:
        now: dict = {i: [] for i in active}
        nxt: dict = {i: [] for i in active}
        r, c = np.divmod(world.pos, world.w)
        rad2 = self.radius * self.radius
        for s in active:
            for j in active:
                if j == s or (r[j] - r[s]) ** 2 + (c[j] - c[s]) ** 2 > rad2:
                    continue
                for msg in outs[s].messages:
                    if self.loss and self.rng.random() < self.loss:
                        self.counters["lost"] += 1
                    elif self.late and self.rng.random() < self.late:
                        self.counters["delayed"] += 1
                        nxt[j].append(msg)
                    else:
                        now[j].append(msg)
        self.inbox = {i: now[i] + self.delayed.get(i, []) for i in active}
        self.delayed = nxt


def _step_rounds(world, agents, views, active, ps, relay, trace) -> dict:
    """Every round of PS step ``ps`` for the active robots; returns their EM controls."""
    lead = agents[active[0]] if active else agents[0]
    planning = getattr(lead.phase(ps), "__name__", "") == "tmar_plan_step"
    moving = lead.is_move_step(ps)
    controls = {}
    for rnd in range(lead.rounds(ps)):
        outs = {}
        for i in active:
            out, dt = timed_round(agents[i], views[i], rnd, relay.inbox.get(i, []))
            outs[i] = out
            trace.tick_s.append(dt)
            if planning:
                trace.plan_tick_s.append(dt)
            if rnd == 0 and moving:
                controls[i] = WAIT if out.control is None else out.control
        relay.exchange(world, active, outs)
    return controls


def _apply_moves(world, agents, active, controls, tally, trace) -> None:
    """EM movement (Alg. 5 line 10): move, count cost, complete the tasks visited."""
    row = [-1] * len(agents)
    for i in active:
        u = controls[i]
        if u != WAIT and not world.move(i, u):
            trace.counters["rejected_moves"] += 1
            u = WAIT
        row[i] = u
        if u == WAIT:
            tally["waits"] += 1
            continue
        tally["cost"] += 1
        tally["explore"] += int(agents[i].mem.explore)
        world.alive.discard(int(world.pos[i]))
    trace.controls.append(tuple(row))
    if tally["at_completion"] is None and not world.alive:
        tally["at_completion"] = tally["cost"]


def run_distributed(
    inst: Instance,
    cfg: DmarConfig,
    *,
    radius: float | None = None,
    loss: float = 0.0,
    late: float = 0.0,
    drop: dict | None = None,
    fault_seed: int = 0,
    background_plan: bool = False,
) -> tuple[RunResult, Trace]:
    """Run one DmarAgent per robot in lockstep until every task is visited or
    ``cfg.max_iterations`` iterations ran (``stop_reason`` "max_iterations").

    Args:
        inst: the instance (the world's truth; agents see only their views).
        cfg: protocol constants (``gci`` must be False).
        radius: relay radius [cells]; None -> ``cfg.k``.
        loss: probability that one delivery of one payload is lost.
        late: probability that a delivery arrives one round late (the agent drops it as late).
        drop: robot ID -> PS step from which the robot is gone (no view, messages or moves).
        fault_seed: seed of the fault stream.
        background_plan: agents plan in a worker thread (``DmarAgent(background_plan=True)``).

    Returns:
        (RunResult, Trace); ``waits`` counts robots still present.
    """
    t_start = time.perf_counter()
    world = _World(inst, cfg.k)
    m = len(world.pos)
    agents = [DmarAgent(i, cfg, (world.h, world.w), background_plan) for i in range(m)]
    n_steps = len(agents[0].schedule)
    soac_len = agents[0].schedule.index(lma_init_step)
    drop = drop or {}
    trace = Trace(counters={"lost": 0, "delayed": 0, "rejected_moves": 0})
    relay = _Relay(
        float(cfg.k if radius is None else radius), loss, late, fault_seed, trace.counters
    )
    tally = {"cost": 0, "explore": 0, "waits": 0, "clusters": 0, "at_completion": None}
    ps = iterations = 0
    stop_reason = ""
    while world.alive:
        if iterations >= cfg.max_iterations:
            stop_reason = "max_iterations"
            break
        iterations += 1
        for idx in range(n_steps):
            active = [i for i in range(m) if drop.get(i, ps + 1) > ps]
            views = {i: world.view(i, active, ps) for i in active}
            if idx == soac_len:
                trace.clusters.append(tuple((a.mem.cluster, a.mem.parent) for a in agents))
                mems = [agents[i].mem for i in active]
                tally["clusters"] += sum(x.cluster is not None and x.parent is None for x in mems)
            controls = _step_rounds(world, agents, views, active, ps, relay, trace)
            if agents[0].is_move_step(ps):
                _apply_moves(world, agents, active, controls, tally, trace)
            ps += 1
    st: dict = {}
    for a in agents:
        for src, dst in ((a.counters, trace.counters), (a.stats, st)):
            for key, val in src.items():
                dst[key] = dst.get(key, 0) + val
    res = RunResult(
        cost=tally["cost"],
        exploration_moves=tally["explore"],
        waits=tally["waits"],
        ps_steps=ps,
        iterations=iterations,
        clusters=tally["clusters"],
        plan_wall_s=float(st.get("plan_wall_s", 0.0)),
        wall_s=time.perf_counter() - t_start,
        compute=int(st.get("compute", 0)),
        tasks_left=len(world.alive),
        completed=not world.alive,
        stop_reason=stop_reason,
        cost_at_completion=tally["cost"]
        if tally["at_completion"] is None
        else tally["at_completion"],
    )
    return res, trace


class _RecordingExecutor(Executor):
    """Executor that records the controls of every movement step and the clusters after SOAC."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.trace = Trace()

    def step(self, fn, moving: bool = False) -> list[int]:
        if fn is lma_init_step:
            self.trace.clusters.append(tuple((mm.cluster, mm.parent) for mm in self.mem))
        before = self.pos.copy()
        visited = super().step(fn, moving)
        if moving:
            d = np.divmod(self.pos, self.width)
            b = np.divmod(before, self.width)
            row = [
                _CONTROL[(int(d[0][i] - b[0][i]), int(d[1][i] - b[1][i]))] for i in range(self.m)
            ]
            self.trace.controls.append(tuple(row))
        return visited


def reference_trace(inst: Instance, cfg: DmarConfig) -> tuple[RunResult, Trace]:
    """``run_dmar`` itself, with its executor swapped for a recording one (controls per EM step
    and clusters per iteration), for the lockstep-equality checks."""
    made: list = []
    orig = protocols.make_executor

    def make(inst_, cfg_):
        ex = orig(inst_, cfg_)
        rec = _RecordingExecutor.__new__(_RecordingExecutor)
        rec.__dict__.update(ex.__dict__)
        rec.trace = Trace()
        made.append(rec)
        return rec

    with mock.patch.object(protocols, "make_executor", make):
        res = protocols.run_dmar(inst, cfg)
    return res, made[0].trace
