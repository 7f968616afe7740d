"""Liquid-Graph Time-Constant (LGTC) network of Section III-B, batched over (batch, agents).

Notation follows the paper (eqs. 4-6, 15):

* ``Phi`` (eq. 4): DeepSets encoder of one consumer ``m``,
  ``Phi_m = phi_2(sum_l phi_1(d_m, de_ml, kappa_ml))``, computed by each agent from its own
  observation -> ``(B, N, M, G)`` (the env gives ``d_m`` in the agent's frame, ``d_m - p_i``,
  see ``lgtc_policy.env.spec.CONSUMER_RES_FIELDS``; Remark 2 covers the resulting small
  within-cluster differences of ``f``).
* ``Psi``: the same DeepSets form for an agent's own resources, ``Psi_i(p_i, so_i, kappa_i)``
  -> ``(B, N, G)``.
* ``Delta`` (eq. 5): ``Delta = Psi B_0 + S Psi' B_1 + sum_m Phi_m + b_u`` (1-hop graph filter).
  With ``NetConfig.comm = "relpos"`` (not in the paper, an explicit variant) ``Delta`` also gets
  ``Rho_i = sum_{j in N_i} rho(p_j(t-1) - p_i(t), ||p_j(t-1) - p_i(t)||)`` (see
  :meth:`LGTCNet.neighbour_term`): the neighbours' positions relative to the robot, from the
  positions their messages already carry.
* LGTC cell (eq. 6), with ``A`` replaced by ``A^T A`` (Remark 1)::

      Xi   = softmax(tanh(Delta + x A_0 + S x A_1 + b_x) Phi^T)           (B, N, M)
             (consumers with no remaining demand are masked out of the softmax)
      f    = ReLU(W Phi_{argmax_m Xi_m} + b)                               (B, N, F)
      xdot = -(tau + f) * x - S x A^T A + f * B_f
      y    = [x, Xi Phi, Delta, p]  ->  MLP [256, 256]

Integration scheme (one step per 20 Hz control tick, ``dt = 0.05 s``): the fused
semi-implicit (implicit in the leak, explicit in the coupling) Euler step of LTC/CfC
networks::

      x(t+dt) = (x + dt * (f * B_f - S x A^T A)) / (1 + dt * (tau + f))

It is unconditionally stable in the leak term (any ``dt``), and with ``tau >= 0``,
``|B_f| <= 1`` and the contraction margin ``c >= 0`` (see :func:`contraction_margin`) it keeps
every state in ``[-1, 1]`` and is a contraction in the infinity norm with factor
``(1 + dt*k) / (1 + dt*(tau + f)) < 1`` (``k`` the coupling row sum), the discrete counterpart of
Theorem 1. Explicit Euler would need ``dt * (tau + f) < 1`` to keep the same bound.

Neighbour information and messages: at tick ``t`` agent ``i`` uses ``S x(t)`` (its
neighbours' current cluster states, computed at the previous tick and sent then) and
``S Psi(items(t-1))`` (the neighbours' own resource items of the previous tick, encoded by
``i`` with the shared ``Psi``). This is what one message exchange per 20 Hz tick delivers, so
the batched forward here and the one-robot :mod:`lgtc_policy.model.decentralized` step are
the same function (tested to 1e-5).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F_nn
from torch import nn

from lgtc_policy.errors import LgtcError

__all__ = [
    "ContractionError",
    "LGTCCell",
    "LGTCNet",
    "NetConfig",
    "NetInputs",
    "Theorem1Report",
    "COMM_FORMS",
    "PI_FORMS",
    "contraction_margin",
    "contraction_rate",
    "mlp",
]


PI_FORMS = ("paper", "margin", "constraint")
"""Forms of the regulariser Pi (eq. 15): ``paper`` = ``softplus(c) + mean_q softplus(tau_q)``
with ``c`` the rate of eq. (9) (:func:`contraction_rate`); ``margin`` = the previous trainer's
``softplus(-c_margin) + mean_q softplus(-tau_q)`` (:func:`contraction_margin`); ``constraint``
= ``relu(-c_margin) + mean_q relu(-tau_q)``, zero while the cell keeps its contraction margin
(not in the paper: a penalty on leaving Theorem 1's region only, so it never pulls on ``A``
inside it)."""


COMM_FORMS = ("paper", "relpos")
"""What a robot makes of its neighbours' messages: ``paper`` = the paper's observation (own
position, own resources, every consumer; neighbours only through ``S x`` and ``S Psi'`` of
eq. 5); ``relpos`` (not in the paper, reported separately) = also the sum over neighbours of a
learned encoding ``rho`` of each neighbour's position relative to the robot
(:meth:`LGTCNet.neighbour_term`). The message layout is the same: it already carries the sender's
position."""


class ContractionError(LgtcError, RuntimeError):
    """Raised (strict mode) when Theorem 1's conditions or the state bound are violated."""


@dataclass(frozen=True)
class NetConfig:
    """Architecture of one LGTC / reduced-IPPO network (policy or value).

    Attributes:
        agent_item_dim: features of one (agent, resource) item fed to ``Psi``.
        consumer_item_dim: features of one (consumer, resource) item fed to ``Phi``.
        out_dim: outputs of the final MLP (2 action means, 1 value, or M values).
        kind: ``"lgtc"`` (eq. 6, with consensus state) or ``"ippo"`` (the paper's reduced
            ``y = [(Xi o Phi)_argmax, Delta, p]``, attention from the current input only).
        g: consumer/agent feature size ``G`` (Table I: 64).
        f: cluster-state size ``F`` (Table I: 64). The paper adds ``x A_0`` to ``Delta``, so
            ``A_0`` maps ``F -> G``; ``F`` and ``G`` may differ.
        hidden: final MLP widths (Table I: [256, 256]).
        dt: integration step [s] = one 20 Hz control tick.
        tau_init: initial leak ``tau`` (>= 0, Theorem 1); 2.0 gives a 0.5 s time constant,
            i.e. clusters settle in ~10 ticks, while keeping the margin ``c`` clearly > 0.
        a_init_std: std of the coupling matrix ``A`` at init (``A^T A`` row sums ~ 0.2 << tau).
        pos_dim: size of ``p`` appended to ``y`` (2, planar positions).
        extra_dim: per-agent input appended to ``y`` (the action ``a_i`` of the SAC critics
            ``Q(z_i, a_i)``; 0 for policies and values).
        squash: the deterministic action is ``tanh`` of the mean output (SAC actors) instead of
            the mean itself (PPO policies; the env clips to the unit disc either way).
        comm: ``"paper"`` or ``"relpos"`` (:data:`COMM_FORMS`): whether ``Delta`` also gets the
            neighbours' relative positions (not in the paper).
    """

    agent_item_dim: int
    consumer_item_dim: int
    out_dim: int
    kind: str = "lgtc"
    g: int = 64
    f: int = 64
    hidden: tuple[int, ...] = (256, 256)
    dt: float = 0.05
    tau_init: float = 2.0
    a_init_std: float = 0.02
    pos_dim: int = 2
    extra_dim: int = 0
    squash: bool = False
    comm: str = "paper"

    def __post_init__(self) -> None:
        if self.kind not in ("lgtc", "ippo"):
            raise ValueError(f"NetConfig.kind must be 'lgtc' or 'ippo', got {self.kind!r}")
        if self.comm not in COMM_FORMS:
            raise ValueError(f"NetConfig.comm must be one of {COMM_FORMS}, got {self.comm!r}")
        for name in ("agent_item_dim", "consumer_item_dim", "out_dim", "g", "f", "pos_dim"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"NetConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.extra_dim < 0:
            raise ValueError(f"NetConfig.extra_dim must be >= 0, got {self.extra_dim}")
        if not self.dt > 0:
            raise ValueError(f"NetConfig.dt must be > 0 s, got {self.dt}")
        if self.tau_init < 0:
            raise ValueError(f"NetConfig.tau_init must be >= 0 (Theorem 1), got {self.tau_init}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    def to_dict(self) -> dict:
        """Plain-python dict (checkpoint friendly)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown NetConfig keys {sorted(extra)}")
        return cls(**{**d, "hidden": tuple(d.get("hidden", (256, 256)))})


@dataclass
class NetInputs:
    """Per-tick inputs of a batched team forward (all tensors batch-first).

    Attributes:
        agent_items: ``(B, N, r, da)`` own resource items of every agent (position included).
        prev_agent_items: ``(B, N, r, da)`` the same one tick earlier (what neighbours sent).
        consumer_items: ``(B, N, M, r, dc)`` consumer resource items as seen by each agent
            (every agent observes every consumer, Section II).
        consumer_mask: ``(B, N, M)`` bool, consumer still demanding (attention mask).
        pos: ``(B, N, 2)`` agent positions [normalised arena units, in [-1, 1]].
        S: ``(B, N, N)`` left-normalised adjacency of the communication graph (row i averages
            over i's neighbours; zero row when isolated).
    """

    agent_items: torch.Tensor
    prev_agent_items: torch.Tensor
    consumer_items: torch.Tensor
    consumer_mask: torch.Tensor
    pos: torch.Tensor
    S: torch.Tensor

    def index(self, idx: torch.Tensor) -> NetInputs:
        """Select batch rows ``idx`` of every field."""
        return NetInputs(*(getattr(self, k)[idx] for k in self.__dataclass_fields__))


REL_DIM = 3
"""Features of one neighbour in the ``relpos`` term: ``[dx, dy, ||(dx, dy)||]``."""


def relative_positions(nb_pos: torch.Tensor, own_pos: torch.Tensor) -> torch.Tensor:
    """``(..., N, 2), (..., N, 2) -> (..., N, N, 3)``: row ``[i, j]`` is
    ``[nb_pos_j - own_pos_i, ||nb_pos_j - own_pos_i||]``."""
    d = nb_pos.unsqueeze(-3) - own_pos.unsqueeze(-2)
    return torch.cat([d, torch.linalg.vector_norm(d, dim=-1, keepdim=True)], dim=-1)


def mlp(sizes: list[int], out_gain: float = 1.0) -> nn.Sequential:
    """ReLU MLP ``sizes[0] -> ... -> sizes[-1]`` (no activation after the last layer)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        nn.init.orthogonal_(lin.weight, gain=out_gain if last else math.sqrt(2.0))
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if not last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DeepSet(nn.Module):
    """``phi_2(sum_l phi_1(item_l))`` (eq. 4) over the resource axis ``-2``."""

    def __init__(self, item_dim: int, g: int) -> None:
        super().__init__()
        self.phi1 = mlp([item_dim, g, g])
        self.phi2 = mlp([g, g])

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """``(..., r, d) -> (..., G)``."""
        return self.phi2(torch.relu(self.phi1(items).sum(dim=-2)))

    def forward_sum_first(self, items: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with the item sum moved before ``phi_1``'s last layer, which is
        linear: ``sum_l (W h_l + b) = W sum_l h_l + r b``. Equal to :meth:`forward` up to
        float rounding, with half of that layer's FLOPs and no ``(..., r, G)`` output (the
        training path, :meth:`LGTCNet.forward_seq`)."""
        *hidden, last = self.phi1
        h = items
        for layer in hidden:
            h = layer(h)
        s = F_nn.linear(h.sum(dim=-2), last.weight, last.bias * items.shape[-2])
        return self.phi2(torch.relu(s))


def attention(h: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``softmax(tanh(h) Phi^T)`` over consumers, ``(B, N, G) x (B, N, M, G) -> (B, N, M)``.

    Consumers outside ``mask`` get zero weight; an agent whose mask is empty attends to all.
    """
    logits = torch.einsum("bng,bnmg->bnm", torch.tanh(h), phi)
    if mask is not None:
        m = mask | ~mask.any(dim=-1, keepdim=True)
        logits = logits.masked_fill(~m, float("-inf"))
    return torch.softmax(logits, dim=-1)


def select(phi: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``phi[b, n, idx[b, n]]``: ``(B, N, M, G), (B, N) -> (B, N, G)``."""
    g = phi.shape[-1]
    return torch.gather(phi, 2, idx[..., None, None].expand(-1, -1, 1, g)).squeeze(2)


@dataclass(frozen=True)
class Theorem1Report:
    """Run-time check of Theorem 1 (eq. 8) for one cell.

    Attributes:
        tau_min: smallest leak; must be >= 0.
        bf_abs_max: largest ``|B_f|``; must be <= 1 (Assumption 1; by construction, tanh).
        margin: contraction margin ``c`` (see :func:`contraction_margin`); >= 0 keeps the
            state in [-1, 1] and > 0 makes the cell contracting for every graph.
        state_abs_max: largest ``|x|`` seen in the checked state (nan if none given).
        ok: all conditions hold (within ``tol``).
    """

    tau_min: float
    bf_abs_max: float
    margin: float
    state_abs_max: float
    ok: bool


def contraction_margin(tau: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Worst-case contraction rate ``c`` of the cell (eq. 9, infinity log-norm), differentiable.

    The Jacobian of ``xdot`` w.r.t. ``vec(x)`` (``f`` piecewise constant) is
    ``J = -diag(vec(tau + f)) - (K (x) S)`` with ``K = A^T A``. For a left-normalised adjacency
    (``S_ii = 0``, row sums ``s_i <= 1``) the infinity log-norm is
    ``mu_inf(J) = max_{i,q} [-(tau_q + f_iq) + s_i sum_q' |K_qq'|]``. Taking the worst case over
    graphs (``s_i = 1``) and inputs (``f >= 0``) gives the rate used here:

        ``c = min_q (tau_q - sum_q' |K_qq'|)  <=  -mu_inf(J)``.

    ``c > 0`` => contraction at rate >= c for any graph satisfying Assumption 2 (row sums <= 1);
    ``c >= 0`` with ``|B_f| <= 1`` => ``[-1, 1]`` is forward invariant for the discrete step.
    """
    return (tau - K.abs().sum(dim=1)).min()


def contraction_rate(
    tau: torch.Tensor, K: torch.Tensor, f: torch.Tensor | None = None, s_norm: float = 1.0
) -> torch.Tensor:
    """Contraction rate ``c`` of eq. (9) with Remark 1's ``K = A^T A``, differentiable.

    ``c = mu_inf(diag(tau) + (K (x) S~) + diag(f))`` with
    ``mu_inf(X) = max_i (x_ii + sum_{j != i} |x_ij|)`` over the ``N F`` rows ``(i, q)``.
    ``S~`` is the bounding support of Assumption 2: zero diagonal (left-normalised
    adjacency, Remark 1) and row sums ``||S~||_inf = s_norm`` (1 for any graph with a
    neighbour), so the diagonal of ``K (x) S~`` is 0 and row ``(i, q)`` sums to
    ``tau_q + f_iq + s_norm * sum_q' |K_qq'|``:

        ``c = max_{i,q} (tau_q + f_iq + s_norm * sum_q' |K_qq'|)``.

    Args:
        tau: ``(F,)`` leak.
        K: ``(F, F)`` coupling ``A^T A``.
        f: ``(..., F)`` values of ``f`` (any leading shape: agents, batch, ticks) or None
            (``f = 0``).
    """
    row = tau + s_norm * K.abs().sum(dim=1)
    if f is not None and f.numel():
        row = row + f.reshape(-1, f.shape[-1]).amax(dim=0)
    return row.max()


class LGTCCell(nn.Module):
    """The LGTC cell of eq. (6) with the fused semi-implicit Euler step (module docstring)."""

    def __init__(self, g: int, f: int, dt: float, tau_init: float, a_init_std: float) -> None:
        super().__init__()
        self.dt = float(dt)
        self.A0 = nn.Parameter(torch.randn(f, g) / math.sqrt(f))
        self.A1 = nn.Parameter(torch.randn(f, g) / math.sqrt(f))
        self.b_x = nn.Parameter(torch.zeros(g))
        self.W = nn.Linear(g, f)
        self.A = nn.Parameter(torch.randn(f, f) * a_init_std)
        self.tau = nn.Parameter(torch.full((f,), float(tau_init)))
        # B_f = tanh(B_f_raw) in [-1, 1]: Assumption 1 holds by construction.
        self.B_f_raw = nn.Parameter(torch.empty(f).uniform_(-1.0, 1.0))

    @property
    def K(self) -> torch.Tensor:
        """Symmetric PSD coupling ``A^T A`` (Remark 1)."""
        return self.A.t() @ self.A

    @property
    def B_f(self) -> torch.Tensor:
        """``B_f`` in ``[-1, 1]`` (Assumption 1)."""
        return torch.tanh(self.B_f_raw)

    def forward(
        self,
        delta: torch.Tensor,
        phi: torch.Tensor,
        x: torch.Tensor,
        Sx: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One 20 Hz tick.

        Args:
            delta: ``(B, N, G)`` input of eq. (5).
            phi: ``(B, N, M, G)`` consumer features.
            x: ``(B, N, F)`` cluster states at ``t``.
            Sx: ``(B, N, F)`` ``S x`` (neighbour average of the states at ``t``).
            mask: ``(B, N, M)`` bool consumers allowed in the attention (None: all).

        Returns:
            ``(x_next (B, N, F), Xi (B, N, M), f (B, N, F))``.
        """
        xi = attention(delta + x @ self.A0 + Sx @ self.A1 + self.b_x, phi, mask)
        f = torch.relu(self.W(select(phi, xi.argmax(dim=-1))))
        num = x + self.dt * (f * self.B_f - Sx @ self.K)
        x_next = num / (1.0 + self.dt * (self.tau + f))
        return x_next, xi, f

    def forward_seq(
        self,
        delta: torch.Tensor,
        phi: torch.Tensor,
        x0: torch.Tensor,
        S: torch.Tensor,
        mask: torch.Tensor | None,
        keep: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``L`` ticks of :meth:`forward` (gradients through every tick), the arithmetic
        rearranged for fewer, larger operations; equal to the tick-by-tick loop up to float
        rounding (tested). Done once for all ticks: ``A^T A``, ``B_f``, the mask,
        ``ReLU(W Phi_m + b)`` for every consumer ``m`` (``f`` then gathers the row of the
        argmax, the same numbers as ``W`` applied to the gathered ``Phi``); per tick one
        matmul ``[x, S x] [[A_0, 0], [A_1, -dt A^T A]]`` gives the attention input and the
        coupling together, and the semi-implicit step is
        ``x' = (x - dt S x A^T A + f (dt B_f)) / ((1 + dt tau) + dt f)``.

        Args:
            delta: ``(L, B, N, G)``; phi: ``(L, B, N, M, G)``; x0: ``(B, N, F)``;
            S: ``(L, B, N, N)``; mask: ``(L, B, N, M)`` bool or None;
            keep: ``(L, B)`` 0 where the state is reset after tick ``t``, or None.

        Returns:
            ``(x_next (L, B, N, F) before the resets, Xi (L, B, N, M), f (L, B, N, F),
            x after the last tick with its reset)``.
        """
        dt, g = self.dt, delta.shape[-1]
        K = self.K
        top = torch.cat([self.A0, torch.zeros_like(K)], dim=1)
        w_cat = torch.cat([top, torch.cat([self.A1, K * -dt], dim=1)], dim=0)
        bf_dt = self.B_f * dt
        den0 = self.tau * dt + 1.0
        h_in = delta + self.b_x
        f_all = torch.relu(self.W(phi))  # (L, B, N, M, F)
        blocked = None
        if mask is not None:
            blocked = ~(mask | ~mask.any(dim=-1, keepdim=True))
        idx_shape = (*phi.shape[1:3], 1, f_all.shape[-1])
        # unbind once: indexing [t] would backpropagate a full-size zero tensor per tick
        L = delta.shape[0]
        phi_t, f_t, h_t, S_t = phi.unbind(0), f_all.unbind(0), h_in.unbind(0), S.unbind(0)
        blocked_t = [None] * L if blocked is None else blocked.unbind(0)
        keep_t = [None] * L if keep is None else keep[:, :, None, None].unbind(0)
        x, xs, xis, fs = x0, [], [], []
        for t in range(L):
            z = torch.cat([x, S_t[t] @ x], dim=-1) @ w_cat
            h = torch.tanh(h_t[t] + z[..., :g])
            logits = (phi_t[t] * h.unsqueeze(-2)).sum(dim=-1)
            if blocked_t[t] is not None:
                logits = logits.masked_fill(blocked_t[t], float("-inf"))
            xi = torch.softmax(logits, dim=-1)
            sel = xi.argmax(dim=-1)[..., None, None].expand(idx_shape)
            f = torch.gather(f_t[t], -2, sel).squeeze(-2)
            x_next = torch.addcmul(x + z[..., g:], f, bf_dt) / torch.add(den0, f, alpha=dt)
            xs.append(x_next)
            xis.append(xi)
            fs.append(f)
            x = x_next if keep_t[t] is None else x_next * keep_t[t]
        return torch.stack(xs), torch.stack(xis), torch.stack(fs), x

    def margin(self) -> torch.Tensor:
        """Differentiable contraction margin ``c`` (:func:`contraction_margin`)."""
        return contraction_margin(self.tau, self.K)

    def rate(self, f: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable contraction rate ``c`` of eq. (9) (:func:`contraction_rate`)."""
        return contraction_rate(self.tau, self.K, f)

    def regulariser(self, f: torch.Tensor | None = None, form: str = "paper") -> torch.Tensor:
        """``Pi`` of eq. (15), a scalar.

        ``form='paper'``: ``Pi = softplus(c) + mean_q softplus(tau_q)`` with ``c`` the rate of
        eq. (9) under Remark 1's ``A^T A`` (:func:`contraction_rate`, ``f`` the batch's
        ``f >= 0`` values, any leading shape, or None for ``f = 0``). Both terms grow with
        ``tau`` and with the coupling, so Pi bounds the rate instead of rewarding it (the
        conditions of eq. 8 hold by construction: ``tau >= 0`` by :meth:`project_`,
        ``mu_inf(A^T A (x) S) >= 0`` by Remark 1). The paper does not say how the vector
        ``softplus(tau)`` is reduced to a scalar: the mean over ``q`` keeps its weight
        independent of ``F``.

        ``form='margin'``: the previous trainer's ``softplus(-c_margin) + mean_q
        softplus(-tau_q)`` (:func:`contraction_margin`), which decreases without bound as
        ``tau`` grows; kept to reproduce runs made with it.

        ``form='constraint'`` (not in the paper): ``relu(-c_margin) + mean_q relu(-tau_q)``,
        a penalty on leaving the region where the discrete cell provably contracts and keeps
        ``|x| <= 1`` (``c_margin >= 0``, ``tau >= 0``) and zero inside it. Both paper terms
        grow with ``tau`` and with ``A^T A`` everywhere, so under ``form='paper'`` alpha Pi
        drives the leak and the coupling to 0 (TRAINING.md, "The learned cell's coupling");
        this form lets the policy and value losses alone set them inside the region.
        """
        if form == "margin":
            return F_nn.softplus(-self.margin()) + F_nn.softplus(-self.tau).mean()
        if form == "constraint":
            return F_nn.relu(-self.margin()) + F_nn.relu(-self.tau).mean()
        if form != "paper":
            raise ValueError(f"Pi form must be one of {PI_FORMS}, got {form!r}")
        return F_nn.softplus(self.rate(f)) + F_nn.softplus(self.tau).mean()

    @torch.no_grad()
    def project_(self) -> None:
        """Projection after an optimiser step: ``tau >= 0`` exactly (Theorem 1, eq. 8)."""
        self.tau.clamp_(min=0.0)

    @torch.no_grad()
    def theorem1(self, x: torch.Tensor | None = None, tol: float = 1e-6) -> Theorem1Report:
        """Check Theorem 1's conditions (and the state bound when ``x`` is given)."""
        tau_min = float(self.tau.min())
        bf = float(self.B_f.abs().max())
        c = float(self.margin())
        xmax = float(x.abs().max()) if x is not None and x.numel() else float("nan")
        ok = tau_min >= -tol and bf <= 1.0 + tol and c >= -tol
        if x is not None and x.numel():
            ok = ok and xmax <= 1.0 + tol
        return Theorem1Report(tau_min, bf, c, xmax, ok)


class LGTCNet(nn.Module):
    """Shared-parameter team network; ``kind='lgtc'`` (eq. 6) or ``'ippo'`` (reduced ``y``).

    ``forward`` returns ``(out (B, N, out_dim), x_next (B, N, F), Xi (B, N, M))``; for
    ``kind='ippo'`` ``x_next`` is ``x`` unchanged (an empty ``(B, N, 0)`` state works too).
    """

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        g = cfg.g
        self.phi = DeepSet(cfg.consumer_item_dim, g)
        self.psi = DeepSet(cfg.agent_item_dim, g)
        self.B0 = nn.Linear(g, g, bias=True)  # bias = b_u of eq. (5)
        self.B1 = nn.Linear(g, g, bias=False)
        if cfg.comm == "relpos":
            # small output gain: the term starts near 0 and does not saturate tanh(Delta + ...)
            self.rho = mlp([REL_DIM, g, g], out_gain=0.1)
        if cfg.kind == "lgtc":
            self.cell = LGTCCell(g, cfg.f, cfg.dt, cfg.tau_init, cfg.a_init_std)
            y_dim = cfg.f + 2 * g + cfg.pos_dim
        else:
            self.b_x = nn.Parameter(torch.zeros(g))
            y_dim = 2 * g + cfg.pos_dim
        y_dim += cfg.extra_dim
        self.head = mlp([y_dim, *cfg.hidden, cfg.out_dim], out_gain=0.01)

    @property
    def state_dim(self) -> int:
        """Per-agent recurrent state size (``F`` for LGTC, 0 for the reduced network)."""
        return self.cfg.f if self.cfg.kind == "lgtc" else 0

    def encode(self, inp: NetInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Phi (B, N, M, G), Delta (B, N, G))`` of eqs. (4)-(5)."""
        phi = self.phi(inp.consumer_items)
        psi = self.psi(inp.agent_items)
        psi_prev = self.psi(inp.prev_agent_items)
        delta = self.B0(psi) + self.B1(inp.S @ psi_prev) + phi.sum(dim=2)
        if self.cfg.comm == "relpos":
            delta = delta + self.neighbour_term(inp)
        return phi, delta

    def neighbour_term(self, inp: NetInputs) -> torch.Tensor:
        """``Rho_i = sum_{j: S_ij > 0} rho(e_ij)``, ``(B, N, G)`` (``comm = "relpos"``, not in
        the paper): ``e_ij = [p_j(t-1) - p_i(t), ||p_j(t-1) - p_i(t)||]`` with ``p_j(t-1)`` the
        position in neighbour ``j``'s message (``prev_agent_items[..., 0, :2]``) and ``p_i(t)``
        the robot's own. A sum, not a mean, so that one close neighbour is not diluted by far
        ones; zero for an isolated robot. Invariant to translating every position and to
        permuting the neighbours. ``rho``'s last layer is linear, so it is applied once to the
        summed hidden layer (with its bias times the neighbour count)."""
        rel = relative_positions(inp.prev_agent_items[..., 0, :2], inp.pos)  # (B, N, N, 3)
        *hidden, last = self.rho
        h = rel
        for layer in hidden:
            h = layer(h)
        adj = (inp.S > 0).to(h.dtype)
        summed = torch.einsum("...ij,...ijg->...ig", adj, h)
        return F_nn.linear(summed, last.weight) + adj.sum(-1, keepdim=True) * last.bias

    def forward(
        self, inp: NetInputs, x: torch.Tensor, extra: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One tick: ``x`` is ``(B, N, state_dim)``; ``extra`` ``(B, N, extra_dim)`` or None."""
        phi, delta = self.encode(inp)
        if self.cfg.kind == "lgtc":
            x_next, xi, _ = self.cell(delta, phi, x, inp.S @ x, inp.consumer_mask)
            y = torch.cat([x_next, torch.einsum("bnm,bnmg->bng", xi, phi), delta, inp.pos], -1)
        else:
            y, xi = self._reduced_y(phi, delta, inp)
            x_next = x
        if self.cfg.extra_dim:
            if extra is None:
                raise ValueError("this network needs `extra` (B, N, extra_dim), e.g. the action")
            y = torch.cat([y, extra], dim=-1)
        return self.head(y), x_next, xi

    def _reduced_y(
        self, phi: torch.Tensor, delta: torch.Tensor, inp: NetInputs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``y = [(Xi o Phi)_argmax, Delta, p]`` of the reduced network, and ``Xi``."""
        xi = attention(delta + self.b_x, phi, inp.consumer_mask)
        w, sel = xi.max(dim=-1)
        return torch.cat([w.unsqueeze(-1) * select(phi, sel), delta, inp.pos], dim=-1), xi

    def _reduced_head(self, phi: torch.Tensor, delta: torch.Tensor, inp: NetInputs):
        if self.cfg.extra_dim:
            raise ValueError("forward_seq has no `extra` input; use forward per tick")
        return self.head(self._reduced_y(phi, delta, inp)[0])

    def forward_seq(
        self, inp: NetInputs, x0: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``L`` ticks with backpropagation through the cell (truncated BPTT over ``L``).

        Args:
            inp: every field time-major, ``(L, B, ...)``.
            x0: ``(B, N, state_dim)`` the state at the first tick (stored in the rollout).
            keep: ``(L, B)`` 0 where the episode ended after tick ``t`` (the state entering
                tick ``t + 1`` is reset to 0, as in the rollout), 1 elsewhere; None: all 1.

        Returns:
            ``(out (L, B, N, out_dim), x after the last tick (reset applied),
            f (L, B, N, F) or None for the reduced network)``. The same function as ``L``
            calls of :meth:`forward`, equal up to float rounding (tested): the encoders
            (:meth:`encode_sum_first`) and the head run once over all ticks and only the cell
            loops over time (:meth:`LGTCCell.forward_seq`).
        """
        L, Bs, N = inp.pos.shape[:3]
        flat = NetInputs(*(getattr(inp, k).flatten(0, 1) for k in NetInputs.__dataclass_fields__))
        phi, delta = self.encode_sum_first(flat)
        if self.cfg.kind != "lgtc":
            out = self._reduced_head(phi, delta, flat)
            return out.view(L, Bs, *out.shape[1:]), x0, None
        phi = phi.view(L, Bs, *phi.shape[1:])
        delta = delta.view(L, Bs, *delta.shape[1:])
        xs, xi, f, x = self.cell.forward_seq(delta, phi, x0, inp.S, inp.consumer_mask, keep)
        ctx = (xi.unsqueeze(-1) * phi).sum(dim=-2)
        return self.head(torch.cat([xs, ctx, delta, inp.pos], -1)), x, f

    def encode_sum_first(self, inp: NetInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`encode` of the training path: the DeepSets with
        :meth:`DeepSet.forward_sum_first` and ``Psi`` of both item sets in one call. Equal
        to :meth:`encode` up to float rounding."""
        phi = self.phi.forward_sum_first(inp.consumer_items)
        psi2 = self.psi.forward_sum_first(torch.stack([inp.agent_items, inp.prev_agent_items]))
        delta = self.B0(psi2[0]) + self.B1(inp.S @ psi2[1]) + phi.sum(dim=2)
        if self.cfg.comm == "relpos":
            delta = delta + self.neighbour_term(inp)
        return phi, delta

    def action(self, out: torch.Tensor) -> torch.Tensor:
        """Deterministic action in ``[-1, 1]^2`` from the head output ``(..., out_dim)``."""
        mean = out[..., :2]
        return torch.tanh(mean) if self.cfg.squash else mean.clamp(-1.0, 1.0)

    def regulariser(self, f: torch.Tensor | None = None, form: str = "paper") -> torch.Tensor:
        """``Pi`` of eq. (15) (zero for the reduced network, which has no cell); see
        :meth:`LGTCCell.regulariser` for ``f`` and ``form``."""
        if self.cfg.kind == "lgtc":
            return self.cell.regulariser(f, form)
        return torch.zeros((), device=self.head[0].weight.device)

    def project_(self) -> None:
        """Keep Theorem 1's hard constraint after each optimiser step."""
        if self.cfg.kind == "lgtc":
            self.cell.project_()
