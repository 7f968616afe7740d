"""LGTC network: shapes and gradients, Theorem 1 (property tests), decentralized == batched."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lgtc_policy.env import EnvConfig, ResourceEnv
from lgtc_policy.model.decentralized import AgentObs, DecentralizedPolicy
from lgtc_policy.model.features import inputs_from_obs, item_dims
from lgtc_policy.model.lgtc import (
    DeepSet,
    LGTCCell,
    LGTCNet,
    NetConfig,
    NetInputs,
    contraction_margin,
    contraction_rate,
)
from lgtc_policy.train.sac import QMixer, SquashedActor

B, N, M, R = 3, 5, 3, 2
DA, DC = item_dims(R)


def _left_normalised(adj: torch.Tensor) -> torch.Tensor:
    deg = adj.sum(-1, keepdim=True)
    return torch.where(deg > 0, adj / deg.clamp(min=1), torch.zeros_like(adj))


def _inputs(seed: int = 0) -> NetInputs:
    g = torch.Generator().manual_seed(seed)
    adj = (torch.rand(B, N, N, generator=g) < 0.5).float() * (1 - torch.eye(N))
    adj = ((adj + adj.transpose(1, 2)) > 0).float()
    return NetInputs(
        agent_items=torch.randn(B, N, R, DA, generator=g),
        prev_agent_items=torch.randn(B, N, R, DA, generator=g),
        consumer_items=torch.randn(B, N, M, R, DC, generator=g),
        consumer_mask=torch.rand(B, N, M, generator=g) < 0.8,
        pos=torch.rand(B, N, 2, generator=g) * 2 - 1,
        S=_left_normalised(adj),
    )


# ----------------------------------------------------------------------------- shapes / grads
KIND_COMM = [("lgtc", "paper"), ("ippo", "paper"), ("lgtc", "relpos"), ("ippo", "relpos")]


@pytest.mark.parametrize("kind,comm", KIND_COMM)
def test_net_shapes_and_gradients_reach_every_parameter(kind: str, comm: str) -> None:
    net = LGTCNet(NetConfig(DA, DC, out_dim=2, kind=kind, comm=comm))
    inp = _inputs()
    x = torch.rand(B, N, net.state_dim) * 2 - 1
    out, x_next, xi = net(inp, x)
    assert out.shape == (B, N, 2)
    assert x_next.shape == (B, N, net.state_dim)
    assert xi.shape == (B, N, M)
    torch.testing.assert_close(xi.sum(-1), torch.ones(B, N))
    # masked consumers get zero attention (unless an agent's mask is empty)
    m = inp.consumer_mask & inp.consumer_mask.any(-1, keepdim=True)
    assert torch.all(xi[~m & inp.consumer_mask.any(-1, keepdim=True).expand_as(m)] == 0)
    # second tick so that the recurrent state (A0/A1/K paths) contributes to the output
    out2, _, _ = net(inp, x_next)
    (out.square().sum() + out2.square().sum() + net.regulariser()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_deepset_is_permutation_invariant_over_resources() -> None:
    ds = DeepSet(DA, 16)
    items = torch.randn(4, R + 3, DA)
    perm = torch.randperm(R + 3)
    torch.testing.assert_close(ds(items), ds(items[:, perm]))
    assert ds(items).shape == (4, 16)


def test_value_and_critic_variants_shapes() -> None:
    inp = _inputs(1)
    v = LGTCNet(NetConfig(agent_item_dim=DA, consumer_item_dim=DC, out_dim=M, kind="ippo"))
    assert v(inp, torch.zeros(B, N, 0))[0].shape == (B, N, M)
    q = LGTCNet(NetConfig(agent_item_dim=DA, consumer_item_dim=DC, out_dim=1, extra_dim=2))
    with pytest.raises(ValueError, match="extra"):
        q(inp, torch.zeros(B, N, 64))
    assert q(inp, torch.zeros(B, N, 64), extra=torch.zeros(B, N, 2))[0].shape == (B, N, 1)
    actor = SquashedActor(
        NetConfig(agent_item_dim=DA, consumer_item_dim=DC, out_dim=4, kind="ippo", squash=True)
    )
    a, lp = actor(inp, torch.Generator().manual_seed(0))
    assert a.shape == (B, N, 2) and lp.shape == (B, N) and a.abs().max() <= 1
    lp.sum().backward()
    mixer = QMixer(N, 7, 32, 32)
    qs = torch.randn(B, N, requires_grad=True)
    state = torch.randn(B, 7)
    out = mixer(qs, state)
    assert out.shape == (B,)
    (g,) = torch.autograd.grad(out.sum(), qs)
    assert torch.all(g >= 0), "QMIX must be monotonic in every agent's Q"


def test_netconfig_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="kind"):
        NetConfig(agent_item_dim=DA, consumer_item_dim=DC, out_dim=2, kind="gru")
    with pytest.raises(ValueError, match="tau_init"):
        NetConfig(agent_item_dim=DA, consumer_item_dim=DC, out_dim=2, tau_init=-1.0)
    cfg = NetConfig(agent_item_dim=DA, consumer_item_dim=DC, out_dim=2, hidden=(32, 16))
    assert NetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        NetConfig.from_dict({**cfg.to_dict(), "typo": 1})


# ----------------------------------------------------------------------------- Theorem 1
def _cell_satisfying_theorem1(seed: int, slack: float, a_scale: float, F: int) -> LGTCCell:
    g = torch.Generator().manual_seed(seed)
    cell = LGTCCell(g=8, f=F, dt=0.05, tau_init=1.0, a_init_std=0.1)
    with torch.no_grad():
        cell.A0.zero_()  # attention (hence f) independent of x: compare two trajectories
        cell.A1.zero_()
        cell.A.copy_(torch.randn(F, F, generator=g) * a_scale)
        cell.tau.copy_(cell.K.abs().sum(1) + slack * torch.rand(F, generator=g))
        cell.B_f_raw.copy_(torch.randn(F, generator=g) * 3)
        cell.W.weight.mul_(5.0)
    return cell


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    slack=st.floats(0.0, 3.0),
    a_scale=st.floats(0.0, 0.5),
    density=st.floats(0.0, 1.0),
)
def test_cell_keeps_state_in_unit_box_and_contracts(seed, slack, a_scale, density) -> None:
    """Theorem 1 (discrete form): tau >= 0, |B_f| <= 1, c >= 0 => x in [-1, 1]; c > 0 => the
    one-tick map is a contraction in the infinity norm with factor max (1+dt k)/(1+dt tau)."""
    F = 6
    cell = _cell_satisfying_theorem1(seed, slack, a_scale, F)
    g = torch.Generator().manual_seed(seed + 1)
    adj = (torch.rand(B, N, N, generator=g) < density).float() * (1 - torch.eye(N))
    S = _left_normalised(((adj + adj.transpose(1, 2)) > 0).float())
    delta = torch.randn(B, N, 8, generator=g)
    phi = torch.randn(B, N, M, 8, generator=g)
    x = torch.rand(B, N, F, generator=g) * 2 - 1
    y = torch.rand(B, N, F, generator=g) * 2 - 1
    rep = cell.theorem1()
    assert rep.ok and rep.margin >= -1e-6 and rep.bf_abs_max <= 1
    with torch.no_grad():
        for _ in range(15):  # 0.75 s of ticks: stays in the box the whole time
            x1, _, f = cell(delta, phi, x, S @ x)
            y1, _, _ = cell(delta, phi, y, S @ y)
            assert x1.abs().max() <= 1 + 1e-5 and y1.abs().max() <= 1 + 1e-5
            assert torch.all(f >= 0)
            k = cell.K.abs().sum(1)
            rho = ((1 + cell.dt * k) / (1 + cell.dt * cell.tau)).max()
            assert (x1 - y1).abs().max() <= rho * (x - y).abs().max() + 1e-6
            x, y = x1, y1


def test_contraction_margin_matches_infinity_lognorm() -> None:
    """c = min_q(tau_q - sum |K_q.|) equals -mu_inf of the Jacobian on a complete graph, f = 0."""
    g = torch.Generator().manual_seed(3)
    F, n = 4, 3
    A = torch.randn(F, F, generator=g) * 0.3
    K = A.T @ A
    tau = torch.rand(F, generator=g) * 2
    S = (torch.ones(n, n) - torch.eye(n)) / (n - 1)
    J = -torch.diag(tau.repeat_interleave(n)) - torch.kron(K, S)  # vec(x) stacks columns q
    off = J.abs().sum(1) - J.diagonal().abs()
    mu = (J.diagonal() + off).max()
    torch.testing.assert_close(contraction_margin(tau, K), -mu)


def test_legacy_margin_regulariser_decreases_with_margin_and_projection_enforces_tau() -> None:
    cell = LGTCCell(8, 8, 0.05, 2.0, 0.02)
    r_good = float(cell.regulariser(form="margin").detach())
    with torch.no_grad():
        cell.tau.fill_(-0.5)
    assert float(cell.regulariser(form="margin").detach()) > r_good
    rep = cell.theorem1()
    assert not rep.ok and rep.tau_min < 0
    cell.project_()
    assert float(cell.tau.detach().min()) >= 0
    x_bad = torch.full((1, 2, 8), 1.5)
    assert not cell.theorem1(x_bad).ok


def test_contraction_rate_is_eq9_lognorm_of_the_kronecker_matrix() -> None:
    """c = mu_inf(diag(tau) + (A^T A (x) S~) + diag(f)) built entry by entry, S~ a
    left-normalised adjacency (zero diagonal, row sums 1), f >= 0 per agent and feature."""
    g = torch.Generator().manual_seed(5)
    F, n = 3, 4
    A = torch.randn(F, F, generator=g) * 0.4
    K = A.T @ A
    tau = torch.rand(F, generator=g) * 2
    f = torch.rand(n, F, generator=g)
    adj = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 1], [0, 0, 1, 0]]).float()
    S = adj / adj.sum(1, keepdim=True)
    # vec(x) stacks the columns q: row q * n + i
    Mx = torch.diag(tau.repeat_interleave(n) + f.T.reshape(-1)) + torch.kron(K, S)
    mu = max(
        float(Mx[r, r]) + sum(abs(float(Mx[r, c])) for c in range(n * F) if c != r)
        for r in range(n * F)
    )
    torch.testing.assert_close(contraction_rate(tau, K, f), torch.tensor(mu))
    # without f: the bound over f = 0
    mu0 = float((tau + K.abs().sum(1)).max())
    torch.testing.assert_close(contraction_rate(tau, K), torch.tensor(mu0))


def test_paper_pi_by_hand_and_it_bounds_the_rate() -> None:
    """Pi = softplus(c) + mean_q softplus(tau_q) (eq. 15) on F = 2, by hand; its gradient
    pushes tau and the coupling down (the margin form rewarded a larger tau without bound)."""
    cell = LGTCCell(g=2, f=2, dt=0.05, tau_init=1.0, a_init_std=0.0)
    with torch.no_grad():
        cell.A.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        cell.tau.copy_(torch.tensor([0.5, 1.5]))
    # K = A^T A = [[1, 2], [2, 5]]; rows of |K| sum to 3 and 7
    f = torch.tensor([[[0.25, 0.0], [0.5, 1.0]]])  # (B=1, N=2, F=2)
    c = max(0.5 + 0.5 + 3.0, 1.5 + 1.0 + 7.0)  # tau_q + max_i f_iq + sum_q' |K_qq'|
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    want = sp(c) + (sp(0.5) + sp(1.5)) / 2
    got = cell.regulariser(f)
    assert abs(float(got.detach()) - want) < 1e-5
    assert abs(float(cell.rate(f).detach()) - c) < 1e-6
    got.backward()
    assert torch.all(cell.tau.grad > 0) and cell.A.grad.abs().sum() > 0
    # the legacy form rewards a larger tau: its gradient on tau is negative
    cell.zero_grad()
    cell.regulariser(form="margin").backward()
    assert torch.all(cell.tau.grad <= 0) and cell.tau.grad.min() < 0
    with pytest.raises(ValueError, match="form"):
        cell.regulariser(form="hinge")


def test_constraint_pi_is_zero_inside_theorem1_and_a_hinge_outside() -> None:
    """form='constraint': relu(-c_margin) + mean_q relu(-tau_q), by hand on F = 2. Inside the
    region (margin >= 0, tau >= 0) it is 0 with no gradient on A or tau; outside, its gradient
    lowers the coupling and raises tau, as much as the violation and no further."""
    cell = LGTCCell(g=2, f=2, dt=0.05, tau_init=1.0, a_init_std=0.0)
    with torch.no_grad():
        cell.A.copy_(torch.tensor([[0.5, 0.0], [0.0, 0.5]]))  # K = diag(0.25, 0.25)
        cell.tau.copy_(torch.tensor([1.0, 2.0]))
    reg = cell.regulariser(form="constraint")
    assert float(reg.detach()) == 0.0
    reg.backward()
    assert float(cell.A.grad.abs().sum()) == 0.0 and float(cell.tau.grad.abs().sum()) == 0.0
    cell.zero_grad()
    with torch.no_grad():
        cell.A.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))  # K = [[1, 2], [2, 5]]
        cell.tau.copy_(torch.tensor([-0.5, 1.5]))
    # margin = min_q (tau_q - sum_q' |K_qq'|) = min(-0.5 - 3, 1.5 - 7) = -5.5
    reg = cell.regulariser(form="constraint")
    assert abs(float(reg.detach()) - (5.5 + 0.5 / 2)) < 1e-6
    reg.backward()
    # only the violating row q = 1 of the margin and the negative tau_0 pull
    assert float(cell.tau.grad[0]) == pytest.approx(-0.5) and float(cell.tau.grad[1]) == -1.0
    assert cell.A.grad.abs().sum() > 0
    with torch.no_grad():
        cell.A -= 0.01 * cell.A.grad
    assert float(cell.K.detach().abs().sum(1)[1]) < 7.0


# ----------------------------------------------------------------------------- sequences (BPTT)
def _seq_inputs(L: int, Bs: int, n: int, seed: int, dtype=torch.float32) -> NetInputs:
    g = torch.Generator().manual_seed(seed)
    S = torch.stack([_left_normalised(torch.ones(n, n) - torch.eye(n))] * (L * Bs))
    return NetInputs(
        agent_items=torch.randn(L, Bs, n, R, DA, generator=g, dtype=dtype),
        prev_agent_items=torch.randn(L, Bs, n, R, DA, generator=g, dtype=dtype),
        consumer_items=torch.randn(L, Bs, n, M, R, DC, generator=g, dtype=dtype),
        consumer_mask=torch.ones(L, Bs, n, M, dtype=torch.bool),
        pos=torch.rand(L, Bs, n, 2, generator=g, dtype=dtype) * 2 - 1,
        S=S.view(L, Bs, n, n).to(dtype),
    )


def _tiny_net(kind: str = "lgtc", dtype=torch.float32, comm: str = "paper") -> LGTCNet:
    torch.manual_seed(1)
    cfg = NetConfig(DA, DC, 2, kind=kind, g=4, f=3, hidden=(5,), a_init_std=0.3, comm=comm)
    net = LGTCNet(cfg).to(dtype)
    with torch.no_grad():
        net.head[-1].weight.mul_(100.0)  # outputs sensitive to the state
    return net


@pytest.mark.parametrize("kind,comm", KIND_COMM)
def test_forward_seq_equals_tick_by_tick_forward_with_resets(kind: str, comm: str) -> None:
    L, Bs, n = 4, 3, 2
    net = _tiny_net(kind, comm=comm)
    inp = _seq_inputs(L, Bs, n, 0)
    x0 = torch.rand(Bs, n, net.state_dim) * 2 - 1
    keep = torch.ones(L, Bs)
    keep[1, 0] = 0.0  # env 0's episode ends after tick 1
    out, x_last, f = net.forward_seq(inp, x0, keep)
    x = x0
    for t in range(L):
        o, x_next, _ = net(
            NetInputs(*(getattr(inp, k)[t] for k in NetInputs.__dataclass_fields__)), x
        )
        torch.testing.assert_close(out[t], o)
        x = x_next * keep[t].view(Bs, 1, 1)
    torch.testing.assert_close(x_last, x)
    assert (f is None) == (kind == "ippo")


def _manual_unroll(net: LGTCNet, inp: NetInputs, x0: torch.Tensor, keep: torch.Tensor):
    """Eq. (6) with the semi-implicit step written out from the paper, tick by tick, agent
    by agent (independent of LGTCCell.forward): returns the sum of the outputs' last tick."""
    cell, L = net.cell, inp.pos.shape[0]
    x = x0
    total = 0.0
    for t in range(L):
        it = NetInputs(*(getattr(inp, k)[t] for k in NetInputs.__dataclass_fields__))
        phi, delta = net.encode(it)
        Sx = it.S @ x
        rows = []
        ys = []
        for b in range(x.shape[0]):
            xb = []
            yb = []
            for i in range(x.shape[1]):
                h = delta[b, i] + x[b, i] @ cell.A0 + Sx[b, i] @ cell.A1 + cell.b_x
                xi = torch.softmax(torch.tanh(h) @ phi[b, i].T, dim=0)
                m = int(xi.argmax())
                f = torch.relu(cell.W.weight @ phi[b, i, m] + cell.W.bias)
                K = cell.A.T @ cell.A
                xdot_num = x[b, i] + cell.dt * (f * torch.tanh(cell.B_f_raw) - Sx[b, i] @ K)
                xn = xdot_num / (1 + cell.dt * (cell.tau + f))
                xb.append(xn)
                yb.append(torch.cat([xn, xi @ phi[b, i], delta[b, i], it.pos[b, i]]))
            rows.append(torch.stack(xb))
            ys.append(torch.stack(yb))
        out = net.head(torch.stack(ys))
        if t == L - 1:
            total = out.sum()
        x = torch.stack(rows) * keep[t].view(-1, 1, 1)
    return total


def test_sequence_backprop_matches_manual_unroll_and_gradcheck() -> None:
    """2 agents, 3 ticks, float64: the gradient of the last tick's output w.r.t. tau, A, B_f
    and the initial state flows through all three ticks and equals a hand-unrolled eq. (6);
    torch.autograd.gradcheck confirms it against finite differences."""
    L, Bs, n = 3, 1, 2
    net = _tiny_net("lgtc", torch.float64)
    inp = _seq_inputs(L, Bs, n, 7, torch.float64)
    x0 = (torch.rand(Bs, n, 3, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    keep = torch.ones(L, Bs, dtype=torch.float64)
    params = [net.cell.tau, net.cell.A, net.cell.B_f_raw]
    out, _, _ = net.forward_seq(inp, x0, keep)
    g_seq = torch.autograd.grad(out[-1].sum(), [*params, x0])
    g_man = torch.autograd.grad(_manual_unroll(net, inp, x0, keep), [*params, x0])
    for a, b in zip(g_seq, g_man):
        torch.testing.assert_close(a, b)
    assert g_seq[-1].abs().sum() > 0  # the loss at tick 3 reaches the state of tick 1
    # one-step truncation (the previous trainer) would see no gradient from tick 3 to x0
    from torch.func import functional_call

    class Seq(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.forward_seq(inp, x, keep)[0][-1]

    seq = Seq()

    def last_out(tau, A, Bf, x):
        p = {"net.cell.tau": tau, "net.cell.A": A, "net.cell.B_f_raw": Bf}
        return functional_call(seq, p, (x,))

    args = tuple(p.detach().clone().requires_grad_(True) for p in [*params, x0])
    assert torch.autograd.gradcheck(last_out, args, eps=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------- relpos variant
def test_relpos_neighbour_term_by_hand() -> None:
    """Rho_i = sum over S_ij > 0 of rho([p_j(t-1) - p_i(t), distance]), rho applied directly."""
    net = LGTCNet(NetConfig(DA, DC, out_dim=2, comm="relpos", g=8))
    inp = _inputs(3)
    got = net.neighbour_term(inp)
    nb = inp.prev_agent_items[..., 0, :2]
    want = torch.zeros_like(got)
    for b in range(B):
        for i in range(N):
            for j in range(N):
                if inp.S[b, i, j] > 0:
                    d = nb[b, j] - inp.pos[b, i]
                    want[b, i] += net.rho(torch.cat([d, d.norm().reshape(1)]))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    isolated = inp.S.sum(-1) == 0
    assert torch.all(got[isolated] == 0)
    # the paper's network has no such term and no rho parameters
    assert not hasattr(LGTCNet(NetConfig(DA, DC, out_dim=2)), "rho")


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 2**16),
    shift=st.tuples(st.floats(-3, 3), st.floats(-3, 3)),
)
def test_relpos_term_is_translation_invariant_and_permutation_equivariant(seed, shift) -> None:
    net = LGTCNet(NetConfig(DA, DC, out_dim=2, comm="relpos", g=8))
    inp = _inputs(seed)
    base = net.neighbour_term(inp)
    moved = NetInputs(**{k: getattr(inp, k) for k in NetInputs.__dataclass_fields__})
    s = torch.tensor(shift)
    moved.pos = inp.pos + s
    moved.prev_agent_items = inp.prev_agent_items.clone()
    moved.prev_agent_items[..., :2] += s
    torch.testing.assert_close(net.neighbour_term(moved), base, atol=1e-4, rtol=1e-4)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed))
    permuted = NetInputs(
        agent_items=inp.agent_items[:, perm],
        prev_agent_items=inp.prev_agent_items[:, perm],
        consumer_items=inp.consumer_items[:, perm],
        consumer_mask=inp.consumer_mask[:, perm],
        pos=inp.pos[:, perm],
        S=inp.S[:, perm][:, :, perm],
    )
    torch.testing.assert_close(net.neighbour_term(permuted), base[:, perm], atol=1e-5, rtol=1e-5)


def test_netconfig_comm_is_checked_and_old_configs_load_as_paper() -> None:
    with pytest.raises(ValueError, match="NetConfig.comm"):
        NetConfig(DA, DC, out_dim=2, comm="gossip")
    d = NetConfig(DA, DC, out_dim=2).to_dict()
    del d["comm"]  # a checkpoint written before the field existed
    assert NetConfig.from_dict(d).comm == "paper"
    assert NetConfig.from_dict(NetConfig(DA, DC, 2, comm="relpos").to_dict()).comm == "relpos"


# ----------------------------------------------------------------------------- decentralized
@pytest.mark.parametrize("kind,comm", KIND_COMM)
def test_decentralized_step_equals_batched_forward(kind: str, comm: str) -> None:
    torch.manual_seed(0)
    cfg = EnvConfig(n_agents=6, n_consumers=3, episode_length=50, comm_radius=1.0)
    env = ResourceEnv(cfg, 2, seed=4)
    net = LGTCNet(NetConfig(DA, DC, out_dim=2, kind=kind, comm=comm))
    with torch.no_grad():  # larger outputs so the clipping paths are exercised too
        net.head[-1].weight.mul_(300.0)
        if comm == "relpos":  # and a neighbour term that moves the outputs
            net.rho[-1].weight.mul_(30.0)
    dec = DecentralizedPolicy(net, cfg.n_resources)
    obs = env.reset()
    Bn, Nn = 2, cfg.n_agents
    x = torch.zeros(Bn, Nn, net.state_dim)
    prev = obs.agent_res.clone()
    states = [[dec.initial_state() for _ in range(Nn)] for _ in range(Bn)]
    inbox = [
        [dec.initial_message(AgentObs.from_batched(obs, b, i)) for i in range(Nn)]
        for b in range(Bn)
    ]
    saw_neighbours = False
    for _ in range(25):
        with torch.no_grad():
            out, x_new, _ = net(inputs_from_obs(obs, prev), x)
        a_b = net.action(out)
        a_b = a_b / a_b.norm(dim=-1, keepdim=True).clamp(min=1.0)
        outbox = [[None] * Nn for _ in range(Bn)]
        for b in range(Bn):
            for i in range(Nn):
                nbrs = obs.adjacency[b, i].nonzero().flatten().tolist()
                saw_neighbours |= bool(nbrs)
                msgs = np.stack([inbox[b][j] for j in nbrs]) if nbrs else np.zeros((0, 1))
                a, msg, s = dec.step(AgentObs.from_batched(obs, b, i), msgs, states[b][i])
                np.testing.assert_allclose(a, a_b[b, i].numpy(), atol=1e-5, rtol=0)
                np.testing.assert_allclose(s, x_new[b, i].numpy(), atol=1e-5, rtol=0)
                assert msg.shape == (dec.message_dim,)
                states[b][i], outbox[b][i] = s, msg
        inbox = outbox
        prev, x = obs.agent_res.clone(), x_new
        obs, _, _, _ = env.step(a_b)
    assert saw_neighbours
    assert dec.message_dim == net.state_dim + R * DA
