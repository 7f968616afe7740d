"""One-robot execution of a trained policy: ``step(obs, messages, state) -> (action, msg, state)``.

This is the function the 20 Hz ROS policy node calls, one robot at a time
(:meth:`DecentralizedPolicy.step`), or for the robots that share one process in one stacked
call (:meth:`DecentralizedPolicy.step_many`, the same code). It is a numpy re-implementation of
:class:`lgtc_policy.model.lgtc.LGTCNet` (float32, no autograd, no torch dispatch), equal to the
batched forward to 1e-5 under synchronous messages (tested).

Message layout (a flat float vector, sent once per tick to the neighbours within C)::

    msg = [ x_i(t+1)  (F floats, LGTC cluster state; absent for the reduced IPPO network),
            agent_res_i(t) flattened row-major (r * (4 + r) floats: for each resource type l,
                [p_x, p_y, so_il, persistent_l, onehot(l)]) ]

``message_dim = F + r * (4 + r)`` (76 for F = 64, r = 2). At tick ``t`` robot ``i`` uses the
messages its neighbours sent at tick ``t-1``: ``S x(t)`` is the mean of their ``x`` parts and
``S Psi(t-1)`` the mean of ``Psi`` of their item parts (``S`` is the left-normalised adjacency,
so ``S_ij = 1 / |N_i|``). No message -> isolated robot (zero row of ``S``). A ``comm =
"relpos"`` network (not in the paper) also sums ``rho`` over the senders' positions (the
``p_x, p_y`` of their first item) relative to its own; the layout is the same.

Robot state: ``x_i`` (``F`` floats, start at zeros). Action: the Gaussian mean (``tanh`` of it
for SAC actors), clipped like the env does (components to [-1, 1], then norm <= 1); multiply by
``v_max`` for a velocity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lgtc_policy.model.lgtc import LGTCNet

__all__ = ["AgentObs", "DecentralizedPolicy"]


@dataclass
class AgentObs:
    """The observation ``z_i`` of one robot (numpy float32), layouts of ``env.spec``.

    Attributes:
        agent_res: ``(r, 4 + r)`` own items ``[p_x, p_y, so_l, persistent_l, onehot(l)]``.
        consumer_res: ``(M, r, 4 + r)`` items ``[d_mx - p_x, d_my - p_y, de_ml, persistent_l,
            onehot(l)]``.
        consumer_mask: ``(M,)`` bool, consumer still demands something.
        pos: ``(2,)`` own position in the normalised arena ``[-1, 1]^2``.
    """

    agent_res: np.ndarray
    consumer_res: np.ndarray
    consumer_mask: np.ndarray
    pos: np.ndarray

    @classmethod
    def from_observation(cls, z: dict) -> AgentObs:
        """From the dict of ``lgtc_policy.env.obs.agent_observation`` for one robot."""

        def g(k: str) -> np.ndarray:
            v = z[k]
            return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)

        return cls(
            agent_res=g("agent_res").astype(np.float32),
            consumer_res=g("consumer_res").astype(np.float32),
            consumer_mask=g("consumer_mask").astype(bool),
            pos=g("self_feat")[:2].astype(np.float32),
        )

    @classmethod
    def from_batched(cls, obs, b: int, i: int) -> AgentObs:
        """Agent ``i`` of env ``b`` of a batched ``lgtc_policy.env.spec.Obs``."""

        def g(t: torch.Tensor) -> np.ndarray:
            return t[b, i].detach().cpu().numpy()

        return cls(
            agent_res=g(obs.agent_res).astype(np.float32),
            consumer_res=g(obs.consumer_res).astype(np.float32),
            consumer_mask=g(obs.consumer_mask).astype(bool),
            pos=g(obs.self_feat)[:2].astype(np.float32),
        )


def relative_features(nb_pos: np.ndarray, own_pos: np.ndarray) -> np.ndarray:
    """``relpos`` features ``[dx, dy, ||(dx, dy)||]`` (float32) of senders at ``nb_pos
    (..., k, 2)`` seen from ``own_pos`` (broadcast against ``nb_pos``, e.g. ``(..., 1, 2)``):
    the numpy counterpart of :func:`lgtc_policy.model.lgtc.relative_positions`."""
    d = nb_pos - own_pos
    return np.concatenate([d, np.sqrt((d * d).sum(-1, keepdims=True))], axis=-1)


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


class _NpMLP:
    """ReLU MLP from an ``nn.Sequential`` of Linear/ReLU layers, on stacked inputs."""

    def __init__(self, seq: torch.nn.Sequential) -> None:
        lins = [m for m in seq if isinstance(m, torch.nn.Linear)]
        self.w = [_np(m.weight.t()) for m in lins]
        self.b = [_np(m.bias) for m in lins]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = len(self.w)
        for k in range(n):
            x = x @ self.w[k] + self.b[k]
            if k < n - 1:
                np.maximum(x, 0.0, out=x)
        return x


def _deepset(items: np.ndarray, p1: _NpMLP, p2: _NpMLP) -> np.ndarray:
    """DeepSets ``p2(relu(sum_items p1(item)))`` over axis -2 of ``items (..., n, d)``."""
    return p2(np.maximum(p1(items).sum(axis=-2), 0.0))


class DecentralizedPolicy:
    """Per-robot executor of a policy :class:`LGTCNet` (weights copied at construction).

    There is one forward, :meth:`step_many`, for ``B`` robots that each bring their own
    observation, messages and state; :meth:`step` is it with ``B = 1``. A robot's result does
    not depend on the others in the stack, bit for bit (tested): every matrix product keeps
    the robot's own trailing shape (its ``(r, 4 + r)`` items, its ``(M, G)`` table, a row
    ``(1, n)``), numpy's ``matmul`` (``@``) runs one BLAS call per trailing matrix of a stack, and
    reductions run along the same axis in the same order. Neighbour messages differ in count
    ``k`` per robot, so they are stacked per distinct ``k`` (a handful of groups).
    """

    def __init__(self, net: LGTCNet, n_resources: int) -> None:
        cfg = net.cfg
        if cfg.out_dim < 2:
            raise ValueError("DecentralizedPolicy needs a policy network (out_dim >= 2)")
        self.cfg = cfg
        self.r = int(n_resources)
        self.item_dim = cfg.agent_item_dim
        self.F = net.state_dim
        self.message_dim = self.F + self.r * self.item_dim
        self.phi1, self.phi2 = _NpMLP(net.phi.phi1), _NpMLP(net.phi.phi2)
        self.psi1, self.psi2 = _NpMLP(net.psi.phi1), _NpMLP(net.psi.phi2)
        self.B0w, self.B0b = _np(net.B0.weight.t()), _np(net.B0.bias)
        self.B1w = _np(net.B1.weight.t())
        self.head = _NpMLP(net.head)
        self.rho = _NpMLP(net.rho) if cfg.comm == "relpos" else None
        if cfg.kind == "lgtc":
            c = net.cell
            self.A0, self.A1, self.bx = _np(c.A0), _np(c.A1), _np(c.b_x)
            self.Ww, self.Wb = _np(c.W.weight.t()), _np(c.W.bias)
            self.K, self.tau, self.Bf = _np(c.K), _np(c.tau), _np(c.B_f)
            self.dt = np.float32(c.dt)
        else:
            self.bx = _np(net.b_x)
        self.state_bound = math.inf
        """Largest ``|x|`` a robot running this policy can send: 1 when the cell meets
        Theorem 1 (``tau >= 0``, ``|B_f| <= 1``, margin ``c >= 0``: the semi-implicit step
        keeps ``x`` in ``[-1, 1]``, TRAINING.md), else unbounded. A neighbour message beyond it
        is not from an intact robot (``agent.NeighbourTable`` drops it)."""
        if cfg.kind == "lgtc" and net.cell.theorem1().ok:
            self.state_bound = 1.0
        self.last_attention = np.zeros(0, np.float32)
        """``Xi_i`` of the last :meth:`step` (``(M,)``); its argmax is the robot's cluster."""
        self.last_finite = np.ones(0, bool)
        """``(B,)`` of the last :meth:`step_many` (:meth:`step`: ``B = 1``): False for a robot
        whose forward overflowed; its action, message state and new state are then zero."""

    def initial_message(self, obs: AgentObs) -> np.ndarray:
        """The message a robot sends before its first tick: zero state and its items."""
        return np.concatenate([self.initial_state(), obs.agent_res.reshape(-1)]).astype(np.float32)

    def initial_state(self) -> np.ndarray:
        """Zero cluster state ``x_i(0)`` (inside ``[-1, 1]^F``, Theorem 1)."""
        return np.zeros(self.F, np.float32)

    def step(
        self, obs: AgentObs, messages: np.ndarray | list, state: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One 20 Hz tick of robot ``i`` (:meth:`step_many` with one robot).

        Args:
            obs: own observation at ``t``.
            messages: ``(k, message_dim)`` messages received from the ``k`` current neighbours
                (sent at ``t-1``); ``k = 0`` allowed.
            state: own ``x_i(t)`` (``(F,)``).

        Returns:
            ``(action (2,), message (message_dim,), new_state (F,))``; the attention ``Xi_i``
            is left in :attr:`last_attention`.
        """
        msgs = np.asarray(messages, np.float32).reshape(-1, self.message_dim)
        x = np.asarray(state, np.float32).reshape(1, self.F)
        action, msg, x_new, xi = self.step_many([obs], [msgs], x)
        self.last_attention = xi[0]
        return action[0], msg[0], x_new[0]

    def messages(
        self, msgs: list[np.ndarray], pos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(S Psi(t-1) B_1 (B, G), S x (B, F), heard (B,), Rho (B, G))`` of each robot's
        ``(k_b, message_dim)`` messages (zeros and False for ``k_b = 0``: isolated robot).
        ``S`` is the mean over the senders (eq. 5's left-normalised adjacency); ``Rho`` is the
        ``comm = "relpos"`` sum over the senders of ``rho([p_j(t-1) - p_i(t), ||.||])`` with
        ``p_i(t) = pos (B, 2)`` (zeros for the paper's networks)."""
        B = len(msgs)
        d_msg = np.zeros((B, self.B1w.shape[1]), np.float32)
        rho = np.zeros_like(d_msg)
        sx = np.zeros((B, self.F), np.float32)
        has = np.zeros(B, bool)
        ks = [m.shape[0] for m in msgs]
        for k in sorted(set(ks) - {0}):
            rows = np.array([b for b, kb in enumerate(ks) if kb == k])
            stack = np.stack([msgs[b] for b in rows])  # (Bk, k, message_dim)
            items = stack[:, :, self.F :].reshape(len(rows), k, self.r, self.item_dim)
            psi = _deepset(items, self.psi1, self.psi2).mean(axis=1)  # (Bk, G)
            d_msg[rows] = (psi[:, None] @ self.B1w)[:, 0]
            sx[rows] = stack[:, :, : self.F].mean(axis=1)
            has[rows] = True
            if self.rho is not None:  # the sender's position: p_x, p_y of its first item
                e = relative_features(items[:, :, 0, :2], pos[rows][:, None])  # (Bk, k, 3)
                rho[rows] = self.rho(e).sum(axis=1)
        return d_msg, sx, has, rho

    def step_many(
        self, obs: Sequence[AgentObs], msgs: list[np.ndarray], states: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One tick of ``B`` robots: eqs. (4)-(6) (reduced network: Sec. IV's IPPO) and the head.

        Args:
            obs: each robot's observation; msgs: each robot's ``(k_b, message_dim)`` messages;
            states: ``(B, F)`` their ``x_i(t)``.

        Returns:
            ``(actions (B, 2), messages (B, message_dim), new states (B, F), Xi (B, M))``.
        """
        B = len(obs)
        consumer_res = np.stack([o.consumer_res for o in obs]).astype(np.float32)
        agent_res = np.stack([o.agent_res for o in obs]).astype(np.float32)  # (B, r, 4 + r)
        pos = np.stack([o.pos for o in obs]).astype(np.float32)
        mask = np.stack([np.asarray(o.consumer_mask, bool) for o in obs])  # (B, M)
        mask[~mask.any(axis=1)] = True
        phi = _deepset(consumer_res, self.phi1, self.phi2)  # (B, M, G) eq. (4)
        psi = _deepset(agent_res[:, None], self.psi1, self.psi2)  # (B, 1, G)
        delta = (psi @ self.B0w)[:, 0] + self.B0b + phi.sum(axis=1)  # eq. (5)
        d_msg, sx, has, rho = self.messages(msgs, pos)
        delta = np.where(has[:, None], delta + d_msg + rho, delta)
        if self.cfg.kind == "lgtc":
            x = np.asarray(states, np.float32)
            h = (x[:, None] @ self.A0)[:, 0] + (sx[:, None] @ self.A1)[:, 0]
            xi = self._softmax(np.tanh(delta + h + self.bx), phi, mask)
            att = phi[np.arange(B), np.argmax(xi, axis=1)]  # (B, G)
            f = np.maximum((att[:, None] @ self.Ww)[:, 0] + self.Wb, 0.0)
            sxk = (sx[:, None] @ self.K)[:, 0]
            # eq. (6), one semi-implicit Euler step
            x_new = (x + self.dt * (f * self.Bf - sxk)) / (1.0 + self.dt * (self.tau + f))
            x_new = x_new.astype(np.float32)
            y = np.concatenate([x_new, (xi[:, None] @ phi)[:, 0], delta, pos], axis=1)
        else:
            x_new = np.zeros((B, 0), np.float32)
            xi = self._softmax(np.tanh(delta + self.bx), phi, mask)
            m = np.argmax(xi, axis=1)
            rows = np.arange(B)
            y = np.concatenate([xi[rows, m, None] * phi[rows, m], delta, pos], axis=1)
        mean = self.head(y.astype(np.float32)[:, None])[:, 0, :2]
        action = np.tanh(mean) if self.cfg.squash else np.clip(mean, -1.0, 1.0)
        n = np.hypot(action[:, 0], action[:, 1])[:, None]
        action = np.where(n > 1.0, action / np.where(n > 1.0, n, 1.0), action)
        # never a non-finite action, message or state (huge but finite weights or inputs can
        # overflow float32): such a robot gets zeros, is flagged, and restarts from x = 0
        finite = np.isfinite(action).all(1) & np.isfinite(x_new).all(1) & np.isfinite(xi).all(1)
        finite &= np.isfinite(agent_res).reshape(B, -1).all(1)  # the message's item part
        if not finite.all():
            action[~finite] = 0.0
            x_new[~finite] = 0.0
            xi[~finite] = 0.0
        self.last_finite = finite
        out = np.concatenate([x_new, agent_res.reshape(B, -1)], axis=1)
        return action.astype(np.float32), out, x_new, xi

    @staticmethod
    def _softmax(h: np.ndarray, phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
        logits = np.where(mask, (phi @ h[:, :, None])[:, :, 0], -np.inf)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
