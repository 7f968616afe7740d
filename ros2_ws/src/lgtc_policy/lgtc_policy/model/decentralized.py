"""One-robot execution of a trained policy: ``step(obs, messages, state) -> (action, msg, state)``.

This is the function the 20 Hz ROS policy node calls, one robot at a time. It is a numpy
re-implementation of :class:`lgtc_policy.model.lgtc.LGTCNet` (float32, no autograd, no torch
dispatch), equal to the batched forward to 1e-5 under synchronous messages (tested).

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
    """ReLU MLP from an ``nn.Sequential`` of Linear/ReLU layers."""

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


class DecentralizedPolicy:
    """Per-robot executor of a policy :class:`LGTCNet` (weights copied at construction)."""

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
        self.last_attention = np.zeros(0, np.float32)
        """``Xi_i`` of the last :meth:`step` (``(M,)``); its argmax is the robot's cluster."""

    def initial_message(self, obs: AgentObs) -> np.ndarray:
        """The message a robot sends before its first tick: zero state and its items."""
        return np.concatenate([self.initial_state(), obs.agent_res.reshape(-1)]).astype(np.float32)

    def initial_state(self) -> np.ndarray:
        """Zero cluster state ``x_i(0)`` (inside ``[-1, 1]^F``, Theorem 1)."""
        return np.zeros(self.F, np.float32)

    def _deepset(self, items: np.ndarray, p1: _NpMLP, p2: _NpMLP) -> np.ndarray:
        return p2(np.maximum(p1(items).sum(axis=-2), 0.0))

    def step(
        self, obs: AgentObs, messages: np.ndarray | list, state: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One 20 Hz tick of robot ``i``.

        Args:
            obs: own observation at ``t``.
            messages: ``(k, message_dim)`` messages received from the ``k`` current neighbours
                (sent at ``t-1``); ``k = 0`` allowed.
            state: own ``x_i(t)`` (``(F,)``).

        Returns:
            ``(action (2,), message (message_dim,), new_state (F,))``.
        """
        msgs = np.asarray(messages, np.float32).reshape(-1, self.message_dim)
        phi = self._deepset(obs.consumer_res, self.phi1, self.phi2)  # (M, G)
        psi = self._deepset(obs.agent_res[None], self.psi1, self.psi2)[0]  # (G,)
        delta = psi @ self.B0w + self.B0b + phi.sum(axis=0)
        k = msgs.shape[0]
        if k:
            items = msgs[:, self.F :].reshape(k, self.r, self.item_dim)
            delta = delta + self._deepset(items, self.psi1, self.psi2).mean(axis=0) @ self.B1w
            if self.rho is not None:  # sum_j rho(p_j(t-1) - p_i(t), distance)
                e = relative_features(items[:, 0, :2], np.asarray(obs.pos, np.float32))
                delta = delta + self.rho(e).sum(axis=0)
        mask = np.asarray(obs.consumer_mask, bool)
        if not mask.any():
            mask = np.ones_like(mask)
        if self.cfg.kind == "lgtc":
            x = np.asarray(state, np.float32)
            sx = msgs[:, : self.F].mean(axis=0) if k else np.zeros(self.F, np.float32)
            xi = self._softmax(np.tanh(delta + x @ self.A0 + sx @ self.A1 + self.bx), phi, mask)
            f = np.maximum(phi[int(np.argmax(xi))] @ self.Ww + self.Wb, 0.0)
            x_new = (x + self.dt * (f * self.Bf - sx @ self.K)) / (1.0 + self.dt * (self.tau + f))
            x_new = x_new.astype(np.float32)
            y = np.concatenate([x_new, xi @ phi, delta, obs.pos])
        else:
            x_new = np.zeros(0, np.float32)
            xi = self._softmax(np.tanh(delta + self.bx), phi, mask)
            m = int(np.argmax(xi))
            y = np.concatenate([xi[m] * phi[m], delta, obs.pos])
        self.last_attention = xi
        mean = self.head(y.astype(np.float32))[:2]
        action = np.tanh(mean) if self.cfg.squash else np.clip(mean, -1.0, 1.0)
        n = float(np.hypot(action[0], action[1]))
        if n > 1.0:
            action = action / n
        msg = np.concatenate([x_new, np.asarray(obs.agent_res, np.float32).reshape(-1)])
        return action.astype(np.float32), msg, x_new

    @staticmethod
    def _softmax(h: np.ndarray, phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
        logits = np.where(mask, phi @ h, -np.inf)
        e = np.exp(logits - logits.max())
        return (e / e.sum()).astype(np.float32)
