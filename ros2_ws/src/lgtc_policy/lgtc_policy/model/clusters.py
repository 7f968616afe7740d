"""State clusters of Definition III.1, measured: how tightly the agents serving one consumer
share a cluster state ``x``, against how far apart the clusters' states are.

Definition III.1 groups agents ``i, j`` into cluster ``C_m`` when their state trajectories are
equal, ``x_i = x_j``. Trained LGTC states are never exactly equal, so the measure here is a
ratio, over an episode:

* clusters at tick ``t``: the agents serving the same consumer (the env's eq. 3 assignment
  ``a_i = m``, active agents only; an agent with no assignment is in no cluster);
* within-cluster spread of ``C_m`` at ``t``: the mean Euclidean distance of its members' ``x_i``
  to their centroid ``x̄_m`` (clusters of >= 2 agents);
* between-cluster distance at ``t``: the mean distance between the centroids of every pair of
  non-empty clusters (ticks with >= 2 clusters);
* ``cluster_spread_ratio`` = (mean of the within-cluster spreads over every cluster and tick) /
  (mean of the between-cluster distances over every pair and tick). 0 is Definition III.1
  exactly; 1 means the sub-teams are as far apart inside as from each other.
* ``cluster_spread_ratio_attended``: the same with the sub-teams of Theorem 2's proof, the
  agents whose attention selects the same consumer (``argmax Xi``, so the same dynamics
  ``f_m``), whether or not the expert's assignment agrees.

The reward clusters of Fig. 2 ("the agents' rewards cluster as the agents spatially cluster")
are measured the same way on each agent's reward of eq. (2) at each tick, a 1-D feature:
``reward_cluster_ratio`` (any network, the reduced IPPO one included).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from lgtc_policy.model.lgtc import LGTCNet

__all__ = [
    "cell_summary",
    "checkpoint_clusters",
    "cluster_spread",
    "cluster_spread_ratio",
    "episode_clusters",
]


def cluster_spread(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sums behind :func:`cluster_spread_ratio`, for any leading shape (ticks, envs).

    Args:
        x: ``(..., N, F)`` states.
        labels: ``(..., N)`` int cluster of each agent (``0 .. M-1``), ``-1`` = in none.

    Returns:
        ``[sum of within-cluster spreads, number of clusters with >= 2 members, sum of
        between-centroid distances, number of centroid pairs]`` (float64, on ``x``'s device).
    """
    x = x.double()
    M = int(labels.max().item()) + 1 if labels.numel() else 0
    if M == 0:
        return torch.zeros(4, dtype=torch.float64, device=x.device)
    onehot = (labels[..., None] == torch.arange(M, device=x.device)).double()  # (..., N, M)
    count = onehot.sum(-2)  # (..., M)
    centroid = (onehot.transpose(-1, -2) @ x) / count.clamp(min=1)[..., None]  # (..., M, F)
    member_c = onehot @ centroid  # (..., N, F): own centroid (0 for no cluster)
    dist = (x - member_c).norm(dim=-1)  # (..., N)
    spread = (onehot * dist[..., None]).sum(-2) / count.clamp(min=1)  # (..., M)
    multi = count >= 2
    pair = torch.cdist(centroid, centroid)  # (..., M, M)
    both = (count > 0)[..., :, None] & (count > 0)[..., None, :]
    upper = torch.ones(M, M, dtype=torch.bool, device=x.device).triu(1)
    pairs = both & upper
    return torch.stack(
        [
            (spread * multi).sum(),
            multi.sum().double(),
            (pair * pairs).sum(),
            pairs.sum().double(),
        ]
    )


def cluster_spread_ratio(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean within-cluster spread / mean between-cluster distance (module docstring);
    ``nan`` when no cluster has two members or no tick has two clusters."""
    w, nw, b, nb = cluster_spread(x, labels).tolist()
    if nw == 0 or nb == 0 or b == 0:
        return math.nan
    return (w / nw) / (b / nb)


@torch.no_grad()
def episode_clusters(
    net: LGTCNet, env_cfg, episodes: int, seed: int, safety_filter: str = "none"
) -> dict:
    """Run ``net`` deterministically (as :func:`lgtc_policy.evaluate.rollout_policy`) on
    ``episodes`` seeded episodes and measure the clusters of its state ``x`` and, for any
    network, of its input ``Delta`` (eq. 5, the feature the reduced IPPO network has too).

    Returns ``cluster_spread_ratio`` (``x``; None for the reduced network, which has no
    state), ``cluster_within``, ``cluster_between`` (the two means),
    ``cluster_spread_ratio_attended`` (``x`` again, the clusters being the agents that attend
    the same consumer, ``argmax Xi``: the sub-teams of Theorem 2, which select the same
    dynamics ``f_m``; None without a state),
    ``cluster_spread_ratio_delta`` and ``reward_cluster_ratio`` (Fig. 2: each agent's reward
    of eq. 2 at each tick, clustered by the assignment it acted under).
    """
    from lgtc_policy.env import ResourceEnv
    from lgtc_policy.evaluate import policy_ticks

    cfg = dataclasses.replace(env_cfg, auto_reset=False, seed=seed)
    env = ResourceEnv(cfg, episodes, device="cpu", seed=seed)
    acc_x = torch.zeros(4, dtype=torch.float64)
    acc_d = torch.zeros(4, dtype=torch.float64)
    acc_r = torch.zeros(4, dtype=torch.float64)
    acc_a = torch.zeros(4, dtype=torch.float64)
    for tick in policy_ticks(net, env, cfg.episode_length, safety_filter):
        if net.state_dim:
            acc_x += cluster_spread(tick.x, tick.labels)
            attended = torch.where(tick.active, tick.xi.argmax(-1), -1)
            acc_a += cluster_spread(tick.x, attended)
        acc_d += cluster_spread(net.encode(tick.inp)[1], tick.labels)
        acc_r += cluster_spread(tick.reward[..., None], tick.labels)

    def ratio(acc: torch.Tensor) -> tuple[float, float, float]:
        w, nw, b, nb = acc.tolist()
        within = w / nw if nw else math.nan
        between = b / nb if nb else math.nan
        return within / between if between else math.nan, within, between

    r_x, within, between = ratio(acc_x)
    return {
        "cluster_spread_ratio": r_x if net.state_dim else None,
        "cluster_within": within if net.state_dim else None,
        "cluster_between": between if net.state_dim else None,
        "cluster_spread_ratio_attended": ratio(acc_a)[0] if net.state_dim else None,
        "cluster_spread_ratio_delta": ratio(acc_d)[0],
        "reward_cluster_ratio": ratio(acc_r)[0],
    }


def checkpoint_clusters(
    path: str, episodes: int, seed: int, env_overrides: dict | None, safety_filter: str
) -> dict:
    """:func:`episode_clusters` of a checkpoint's policy on its env and its
    :func:`cell_summary` (``lgtc eval --json``)."""
    from lgtc_policy.env import EnvConfig
    from lgtc_policy.model.checkpoint import build_net, load_checkpoint

    ck = load_checkpoint(path)
    env_cfg = EnvConfig.from_dict({**dict(ck["env_config"]), **(env_overrides or {})})
    net = build_net(ck, "policy")
    out = episode_clusters(net, env_cfg, episodes, seed, safety_filter)
    return {**out, **cell_summary(net)}


@torch.no_grad()
def cell_summary(net: LGTCNet) -> dict:
    """The policy cell's consensus terms, the columns ``lgtc train`` logs: ``tau_min``,
    ``coupling`` (largest row sum of ``|A^T A|``) and ``contraction_c`` (Theorem 1 margin
    ``min_q tau_q - sum_q' |(A^T A)_qq'|``); None for the reduced network (no cell)."""
    if not net.state_dim:
        return {"tau_min": None, "coupling": None, "contraction_c": None}
    cell = net.cell
    return {
        "tau_min": float(cell.tau.min()),
        "coupling": float(cell.K.abs().sum(1).max()),
        "contraction_c": float(cell.margin()),
    }
