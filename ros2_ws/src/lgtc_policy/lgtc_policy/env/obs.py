"""Pure observation builders shared by the batched env and the ROS policy node.

``agent_observation`` builds z_i (paper Sec. II: own position, own resources, every consumer's
position and demand) for any leading batch shape: ``()`` for one robot in the policy node,
``(B, N)`` inside :class:`lgtc_policy.env.ResourceEnv`. Both call this one function, so the two
can never drift apart. ``comm_graph`` builds the neighbour sets N_i (within C) and the
left-normalised adjacency S of eqs. (5)-(6).
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def _t(x: ArrayLike | float, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if like is None else x.to(dtype=like.dtype, device=like.device)
    if like is None:
        return torch.as_tensor(np.asarray(x), dtype=torch.float32)
    return torch.as_tensor(np.asarray(x), dtype=like.dtype, device=like.device)


def consumer_geometry(
    pos: torch.Tensor, consumer_pos: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Agent-to-consumer geometry of (..., N, 2) agents and (..., M, 2) consumers.

    Returns ``rel_c`` (2, ..., N, M), the offsets d_m - p_i per coordinate, and ``d2``
    (..., N, M) = dx^2 + dy^2. Per coordinate on contiguous (..., N, M) planes: broadcasting
    over the size-2 coordinate dim (or over strided views of it) is several times slower on
    CPU. ``agent_observation`` accepts them precomputed (the env also needs them for delivery).
    """
    cpos_c = consumer_pos.movedim(-1, 0).contiguous()  # (2, ..., M)
    pos_c = pos.movedim(-1, 0).contiguous()  # (2, ..., N)
    rel_c = cpos_c.unsqueeze(-2) - pos_c.unsqueeze(-1)  # (2, ..., N, M)
    d2 = rel_c[0] * rel_c[0]
    d2 += rel_c[1] * rel_c[1]
    return rel_c, d2


def agent_observation(
    pos: ArrayLike,
    vel: ArrayLike,
    supply: ArrayLike,
    persistent: ArrayLike,
    consumer_pos: ArrayLike,
    consumer_radius: ArrayLike,
    demand: ArrayLike,
    v_max: float,
    geometry: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Observation z_i of one agent (or of a batch of agents, leading dims ``...``).

    Args:
        pos: (..., 2) own position p_i in [-1, 1]^2 (normalised world frame).
        vel: (..., 2) own velocity [normalised units / s].
        supply: (..., r) own remaining supplies so_i.
        persistent: (..., r) kind flag per type (1/True = persistent, 0/False = instantaneous).
        consumer_pos: (..., M, 2) consumer positions d_m.
        consumer_radius: (..., M) interaction radii R_m.
        demand: (..., M, r) remaining demands de_m.
        v_max: speed limit used to normalise the velocity.
        geometry: optional ``(rel_c, dist, inside)`` of these agents and consumers: rel_c
            (2, lead, M) from :func:`consumer_geometry`, dist (lead, M) its ``d2.sqrt()`` and
            inside (lead, M) ``dist <= consumer_radius``, bool or 0/1 (the env passes what it
            computed for delivery); computed here when omitted.

    Returns:
        dict with ``self_feat`` (..., 4+2r), ``agent_res`` (..., r, 4+r), ``consumer_feat``
        (..., M, 7+2r), ``consumer_res`` (..., M, r, 4+r) and ``consumer_mask`` (..., M) bool,
        laid out as ``spec.SELF_FIELDS`` etc. Leading dims of the inputs broadcast.
    """
    pos = _t(pos)
    vel, supply, kind = (_t(x, pos) for x in (vel, supply, persistent))
    cpos, crad, dem = (_t(x, pos) for x in (consumer_pos, consumer_radius, demand))
    r = supply.shape[-1]
    M = cpos.shape[-2]
    # "world" quantities may carry fewer leading dims (e.g. (B, 1) for (B, N) agents)
    wlead = torch.broadcast_shapes(
        kind.shape[:-1], cpos.shape[:-2], crad.shape[:-1], dem.shape[:-2]
    )
    alead = torch.broadcast_shapes(pos.shape[:-1], vel.shape[:-1], supply.shape[:-1])
    lead = torch.broadcast_shapes(alead, wlead)
    kind = kind.expand(*wlead, r)
    cpos = cpos.expand(*wlead, M, 2)
    crad = crad.expand(*wlead, M)
    dem = dem.expand(*wlead, M, r)
    pos, vel, supply = pos.expand(*alead, 2), vel.expand(*alead, 2), supply.expand(*alead, r)

    # Each output is one preallocated tensor written in place: the columns that depend only on
    # the world (consumer positions, radii, demands, kinds, one-hots) are laid out once per
    # world (wlead, tiny) and broadcast-copied over the agents, then the per-agent columns are
    # written into their slices. Only elementwise IEEE ops (sub, mul, add, sqrt, <=) touch the
    # values, so the result is bit-identical for one robot and for any batch.
    consumer_feat, rel = _consumer_features(
        pos, cpos, crad, dem, kind, alead, wlead, lead, geometry
    )
    return {
        "self_feat": _self_features(pos, vel, supply, kind, v_max, lead),
        "agent_res": _agent_resources(pos, supply, kind, wlead, lead),
        "consumer_feat": consumer_feat,
        "consumer_res": _consumer_resources(rel, dem, kind, wlead, lead),
        "consumer_mask": (dem > 0).any(dim=-1).expand(*lead, M),
    }


def _self_features(
    pos: torch.Tensor,
    vel: torch.Tensor,
    supply: torch.Tensor,
    kind: torch.Tensor,
    v_max: float,
    lead: torch.Size,
) -> torch.Tensor:
    """``self_feat`` (lead, 4+2r), laid out as SELF_FIELDS."""
    r = supply.shape[-1]
    self_feat = torch.empty(*lead, 4 + 2 * r, dtype=pos.dtype, device=pos.device)
    self_feat[..., 0:2] = pos
    self_feat[..., 2:4] = vel / v_max
    self_feat[..., 4 : 4 + r] = supply
    self_feat[..., 4 + r :] = kind
    return self_feat


def _agent_resources(
    pos: torch.Tensor,
    supply: torch.Tensor,
    kind: torch.Tensor,
    wlead: torch.Size,
    lead: torch.Size,
) -> torch.Tensor:
    """``agent_res`` (lead, r, 4+r), laid out as AGENT_RES_FIELDS."""
    r = supply.shape[-1]
    F = 4 + r
    dt = {"dtype": pos.dtype, "device": pos.device}
    agent_world = torch.zeros(*wlead, r, F, **dt)  # (wlead, r, F) AGENT_RES_FIELDS
    agent_world[..., 3] = kind
    agent_world[..., 4:].diagonal(dim1=-2, dim2=-1).fill_(1.0)  # one-hot(l)
    agent_res = torch.empty(*lead, r, F, **dt)
    agent_res.copy_(agent_world.expand(*lead, r, F))
    for l in range(r):  # one strided copy per type beats one broadcast over the size-r dim
        agent_res[..., l, 0:2] = pos
    agent_res[..., 2] = supply
    return agent_res


def _consumer_features(
    pos: torch.Tensor,
    cpos: torch.Tensor,
    crad: torch.Tensor,
    dem: torch.Tensor,
    kind: torch.Tensor,
    alead: torch.Size,
    wlead: torch.Size,
    lead: torch.Size,
    geometry: tuple[torch.Tensor, ...] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``consumer_feat`` (lead, M, 7+2r), laid out as CONSUMER_FIELDS, and the (lead, M, 2)
    offsets d_m - p_i (a view) that ``consumer_res`` reuses."""
    r = dem.shape[-1]
    M = cpos.shape[-2]
    C = 7 + 2 * r
    dt = {"dtype": pos.dtype, "device": pos.device}
    consumer_world = torch.zeros(*wlead, M, C, **dt)  # (wlead, M, C) CONSUMER_FIELDS
    consumer_world[..., 2:4] = cpos
    consumer_world[..., 5] = crad
    consumer_world[..., 7 : 7 + r] = dem
    consumer_world[..., 7 + r :] = kind.unsqueeze(-2)
    consumer_feat = torch.empty(*lead, M, C, **dt)
    consumer_feat.copy_(consumer_world.expand(*lead, M, C))
    # d_m - p_i per coordinate, (2, lead, M) (see consumer_geometry)
    pad = (1,) * (len(lead) - len(wlead))
    if geometry is None:
        rel_c, dist = consumer_geometry(
            pos.reshape((1,) * (len(lead) - len(alead)) + pos.shape).unsqueeze(-2),
            cpos.reshape(*pad, *wlead, M, 2),
        )
        rel_c, dist = rel_c.squeeze(-2), dist.squeeze(-2).sqrt_()  # (2, lead, M), (lead, M)
        inside = None
    else:
        rel_c, dist, inside = geometry
    rel = rel_c.movedim(0, -1)  # (lead, M, 2) view
    consumer_feat[..., 0:2] = rel
    consumer_feat[..., 4] = dist
    if inside is None:
        torch.le(dist, crad.reshape(*pad, *wlead, M), out=consumer_feat[..., 6])
    else:
        consumer_feat[..., 6] = inside
    return consumer_feat, rel


def _consumer_resources(
    rel: torch.Tensor,
    dem: torch.Tensor,
    kind: torch.Tensor,
    wlead: torch.Size,
    lead: torch.Size,
) -> torch.Tensor:
    """``consumer_res`` (lead, M, r, 4+r), laid out as CONSUMER_RES_FIELDS."""
    M, r = dem.shape[-2:]
    F = 4 + r
    dt = {"dtype": dem.dtype, "device": dem.device}
    res_world = torch.zeros(*wlead, M, r, F, **dt)  # (wlead, M, r, F) CONSUMER_RES_FIELDS
    res_world[..., 2] = dem
    res_world[..., 3] = kind.unsqueeze(-2)
    res_world[..., 4:].diagonal(dim1=-2, dim2=-1).fill_(1.0)  # one-hot(l)
    consumer_res = torch.empty(*lead, M, r, F, **dt)
    consumer_res.copy_(res_world.expand(*lead, M, r, F))
    for l in range(r):
        consumer_res[..., l, 0:2] = rel
    return consumer_res


def pairwise_d2(pos: torch.Tensor) -> torch.Tensor:
    """(..., N, N) squared pairwise distances dx^2 + dy^2 of positions (..., N, 2).

    Per coordinate on (..., N, N) tensors: the same values as ``(diff * diff).sum(-1)`` over a
    (..., N, N, 2) difference, without broadcasting or reducing over a size-2 last dimension
    (several times slower on CPU).
    """
    x, y = pos[..., 0].contiguous(), pos[..., 1].contiguous()  # (..., N)
    dx = x.unsqueeze(-1) - x.unsqueeze(-2)
    dy = y.unsqueeze(-1) - y.unsqueeze(-2)
    d2 = dx * dx
    d2 += dy * dy
    return d2


def comm_graph(
    pos: ArrayLike,
    active: ArrayLike,
    comm_radius: float,
    d2: torch.Tensor | None = None,
    pair: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbour sets N_i = {j != i : ||p_i - p_j|| <= C} among active agents (paper Sec. II).

    Args:
        pos: (..., N, 2) positions.
        active: (..., N) bool mask of active agents.
        comm_radius: C.
        d2: optional (..., N, N) squared pairwise distances of ``pos`` already computed.
        pair: optional (..., N, N) bool mask of the pairs i != j with both agents active,
            already computed (:func:`active_pairs`).

    Returns:
        ``adjacency`` (..., N, N) bool and ``S`` (..., N, N) float, the left-normalised
        adjacency D^-1 A (Remark 1): rows sum to 1, or are all zero for an isolated agent.
    """
    pos = _t(pos)
    if d2 is None:
        d2 = pairwise_d2(pos)
    if pair is None:
        pair = active_pairs(torch.as_tensor(active, device=pos.device).bool())
    adj = d2 <= comm_radius * comm_radius
    adj &= pair
    return adj, left_normalise(adj, pos.dtype)


def left_normalise(adj: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """S = D^-1 A of a (..., N, N) bool adjacency (Remark 1): rows sum to 1 or are all zero."""
    a = adj.to(dtype)
    deg = a.sum(-1, keepdim=True)
    return a / deg.clamp_min(1.0)


def active_pairs(active: torch.Tensor) -> torch.Tensor:
    """(..., N, N) bool: i != j and both agents active, for an (..., N) bool ``active``."""
    N = active.shape[-1]
    a = active.to(torch.uint8)  # a uint8 product broadcasts faster than a bool &
    pair = (a.unsqueeze(-1) * a.unsqueeze(-2)).bool()
    pair &= ~torch.eye(N, dtype=torch.bool, device=active.device)
    return pair
