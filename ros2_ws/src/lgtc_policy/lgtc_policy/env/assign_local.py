"""Batched local search for the assignment of eq. (3) (``EnvConfig.assignment='local'``).

All K instances are improved at once with torch: best-improvement over every single move
(agent i to consumer j) and every pair swap (i <-> k), keeping every consumer covered, until no
instance improves. Each move's change of l1 is computed in closed form from the residual
R = de - a^T so (see ``_move_delta`` / ``_swap_delta``), so one iteration is a handful of
(K, N, M) / (K, N, N) tensor ops. The result is a local optimum (2-exchange neighbourhood) of
the exact objective; ``lgtc_policy.env.assign`` gives the proven optimum.
"""

from __future__ import annotations

import math

import torch

_TOL = 1e-9


def greedy_assignment(cost: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Cheapest consumer per agent, then cover every consumer (cheapest re-routing).

    Args:
        cost: (K, N, M) linear cost of eq. (3).
        active: (K, N) bool.

    Returns:
        (K, N) int64 assignment, -1 for inactive agents.
    """
    K, N, M = cost.shape
    big = torch.finfo(cost.dtype).max / 4
    a = cost.argmin(-1)
    a = torch.where(active, a, -1)
    feasible = active.sum(-1) >= M
    for _ in range(M):
        counts = _counts(a, M)
        uncovered = (counts == 0) & feasible[:, None]
        if not bool(uncovered.any()):
            break
        j = uncovered.float().argmax(-1)  # first uncovered consumer per instance
        has = uncovered.any(-1)
        # donors: active agents whose consumer keeps >= 1 agent after they leave
        cnt_own = counts.gather(1, a.clamp_min(0))
        donor = active & (cnt_own >= 2)
        own_cost = cost.gather(2, a.clamp_min(0)[..., None])[..., 0]
        new_cost = cost.gather(2, j[:, None, None].expand(K, N, 1))[..., 0]
        extra = torch.where(donor, new_cost - own_cost, big)
        i = extra.argmin(-1)
        rows = torch.nonzero(has).squeeze(-1)
        a[rows, i[rows]] = j[rows]
    return a


def _onehot(a: torch.Tensor, M: int) -> torch.Tensor:
    """(..., M) bool one-hot of consumer indices ``a`` (all False for -1). Unlike
    ``F.one_hot`` it does not validate the range (two reductions) on every call."""
    return a[..., None] == torch.arange(M, device=a.device)


def _counts(a: torch.Tensor, M: int) -> torch.Tensor:
    return _onehot(a, M).sum(1)


def local_search(
    assign: torch.Tensor,
    supply: torch.Tensor,
    demand: torch.Tensor,
    cost: torch.Tensor,
    active: torch.Tensor,
    max_iters: int = 200,
) -> torch.Tensor:
    """Improve K assignments of eq. (3) by best single moves and pair swaps.

    Args:
        assign: (K, N) int64 start assignment (-1 for inactive agents; a valid covering when
            there are >= M active agents).
        supply: (K, N, r) so (inactive agents' rows are ignored).
        demand: (K, M, r) de.
        cost: (K, N, M) linear cost (``costs.linear_costs``).
        active: (K, N) bool.
        max_iters: iteration cap (each iteration applies one move or swap per instance).

    Returns:
        (K, N) int64 local optimum.

    Kept whole: each iteration's move and swap deltas share the loads, the residuals, the
    ``R . s`` products and the eight per-instance constants, which are compacted together as
    instances stop improving; split, each helper would take and return most of them.
    """
    K, N, M = cost.shape
    dev = assign.device
    a = assign.clone()
    big = torch.finfo(cost.dtype).max / 4
    s = supply * active[..., None]
    s2 = (s * s).sum(-1)  # (K, N)
    feasible = active.sum(-1) >= M
    eye = torch.eye(N, dtype=torch.bool, device=dev)
    ar_n = torch.arange(N, device=dev)
    ar_m = torch.arange(M, device=dev)
    # working set: the instances still improving (compacted as soon as one has stopped: an
    # instance's search does not depend on the others in the batch, and the slicing costs
    # less than carrying stopped instances through another iteration);
    # the quantities that do not depend on the assignment are sliced only when it shrinks
    idx = torch.arange(K, device=dev)

    def constants(rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        si, s2i, acti = s[rows], s2[rows], active[rows]
        # swap terms independent of a: 2 |s_i - s_k|^2 and the active-pair mask (the factors
        # 2 are exact, so the deltas below are the same floats as with them applied in-loop)
        dss = s2i[:, :, None] + s2i[:, None, :] - 2 * si @ si.transpose(1, 2)  # (k, N, N)
        pair = acti[:, :, None] & acti[:, None, :] & ~eye
        infeas = ~feasible[rows, None]
        return si, 2 * s2i, cost[rows], acti, demand[rows], infeas, 2 * dss, pair

    si, s2i2, ci, acti, demi, infeas, dss2, pair = constants(idx)
    for _ in range(max_iters):
        ai = a if idx.numel() == K else a[idx]  # (k, N)
        k = idx.numel()
        ac = ai.clamp_min(0)
        onehot = (_onehot(ac, M) & acti[..., None]).to(s.dtype)
        load = onehot.transpose(1, 2) @ si  # (k, M, r)
        R = demi - load
        counts = onehot.sum(1)
        Rs = R @ si.transpose(1, 2)  # (k, M, N): R_j . s_i
        Rs = Rs.transpose(1, 2)  # (k, N, M)
        Rs_own = Rs.gather(2, ac[..., None])[..., 0]
        c_own = ci.gather(2, ac[..., None])[..., 0]
        # move i: a_i -> j; delta l1 = (2 R_ai.s_i + |s_i|^2) + (-2 R_j.s_i + |s_i|^2)
        dmove = (2 * Rs_own + s2i2)[..., None] - 2 * Rs + ci - c_own[..., None]
        can_leave = acti & ((counts.gather(1, ac) >= 2) | infeas)
        ok = can_leave[..., None] & (ar_m != ac[..., None])
        dmove = torch.where(ok, dmove, big)
        best_move, arg_move = dmove.reshape(k, -1).min(-1)
        # swap i (at j) <-> k (at m): delta l1 = 2 (R_j - R_m).(s_i - s_k) + 2 |s_i - s_k|^2
        # (R_j - R_m).(s_i - s_k) = Rs[i, j] - Rs[k, j] - Rs[i, m] + Rs[k, m]
        Rs_ik = Rs.gather(2, ac[:, None, :].expand(-1, N, -1))  # [i, k] = R_{a_k} . s_i
        c_ik = ci.gather(2, ac[:, None, :].expand(-1, N, -1))  # [i, k] = c[i, a_k]
        diag_R = Rs_own  # R_{a_i} . s_i
        # in place, in the same order as 2 * dot + dss2 + c_ik + c_ik^T - c_own_i - c_own_k
        dswap = diag_R[:, :, None] - Rs_ik.transpose(1, 2)
        dswap.sub_(Rs_ik).add_(diag_R[:, None, :])
        dswap.mul_(2).add_(dss2).add_(c_ik).add_(c_ik.transpose(1, 2))
        dswap.sub_(c_own[:, :, None]).sub_(c_own[:, None, :])
        okp = pair & (ac[:, :, None] != ac[:, None, :])
        dswap.masked_fill_(~okp, big)
        best_swap, arg_swap = dswap.reshape(k, -1).min(-1)
        improve = torch.minimum(best_move, best_swap) < -_TOL  # (k,)
        if not bool(improve.any()):
            break
        use_move = (improve & (best_move <= best_swap))[:, None]
        use_swap = improve[:, None] & ~use_move
        # apply the chosen move or swap per instance (at most one of the two)
        mi, mj = arg_move // M, arg_move % M
        si_, sk_ = arg_swap // N, arg_swap % N
        new = torch.where(use_move & (ar_n == mi[:, None]), mj[:, None], ai)
        new = torch.where(use_swap & (ar_n == si_[:, None]), ai.gather(1, sk_[:, None]), new)
        new = torch.where(use_swap & (ar_n == sk_[:, None]), ai.gather(1, si_[:, None]), new)
        if idx.numel() == K:
            a = new
        else:
            a.index_copy_(0, idx, new)
        keep = torch.nonzero(improve).squeeze(-1)
        if keep.numel() < k:
            idx = idx[keep]
            si, s2i2, ci, acti, demi, infeas, dss2, pair = (
                x[keep] for x in (si, s2i2, ci, acti, demi, infeas, dss2, pair)
            )
    a[~active] = -1
    return a


def batched_objective(
    assign: torch.Tensor,
    supply: torch.Tensor,
    demand: torch.Tensor,
    cost: torch.Tensor,
    active: torch.Tensor,
) -> torch.Tensor:
    """(K,) l1 + l2 of eq. (3) for K assignments (inactive agents excluded)."""
    M = demand.shape[1]
    onehot = (_onehot(assign.clamp_min(0), M) & active[..., None]).to(supply.dtype)
    load = onehot.transpose(1, 2) @ supply
    return ((demand - load) ** 2).sum((1, 2)) + (onehot * cost).sum((1, 2))


def multistart_search(
    start: torch.Tensor,
    supply: torch.Tensor,
    demand: torch.Tensor,
    cost: torch.Tensor,
    active: torch.Tensor,
    restarts: int,
) -> torch.Tensor:
    """Best of ``restarts`` local searches: from ``start`` and from shaken copies of it.

    Restart s moves about 30 % of the agents to other consumers with a pseudo-random pattern
    hashed from (s, agent index, the agent's supply) (re-covered from ``start`` if it empties
    a consumer): it depends on the env's own data only, so an env's result does not depend on
    the batch it is in.
    """
    K, N, M = cost.shape
    R = max(1, int(restarts))
    if R == 1:
        return local_search(start, supply, demand, cost, active)
    dev = cost.device
    seed = (supply.sum(-1) * 1000).long() * 97 + torch.arange(N, device=dev) * 2654435761
    starts = [start]
    for s in range(1, R):
        h = (seed + s * 40503) * 2654435761 % 100003 % 1000  # multiplicative hashing
        move = (h < 300) & active
        a = torch.where(move, (start + 1 + (h % max(M - 1, 1))) % M, start)
        uncovered = (_counts(a, M) == 0).any(-1) & (active.sum(-1) >= M)
        starts.append(torch.where(uncovered[:, None], start, a))

    # a restart equal to ``start`` (often the re-covered fallback: ~23 % of them at a default
    # reset) would repeat restart 0's search and tie with it, and a tie goes to restart 0:
    # search only the others (same result, an instance's search does not depend on the batch)
    a = torch.cat(starts)  # (R K, N), row s K + k: restart s of instance k
    fresh = torch.ones(R, K, dtype=torch.bool, device=dev)
    fresh[1:] = (torch.stack(starts[1:]) != start).any(-1)
    rows = torch.nonzero(fresh.reshape(-1)).squeeze(-1)
    inst = rows % K
    so, de, c, act = supply[inst], demand[inst], cost[inst], active[inst]
    a[rows] = found = local_search(a[rows], so, de, c, act)
    f = torch.full((R * K,), math.inf, dtype=cost.dtype, device=dev)
    f[rows] = batched_objective(found, so, de, c, act)
    return a.view(R, K, N)[f.view(R, K).argmin(0), torch.arange(K, device=dev)]
