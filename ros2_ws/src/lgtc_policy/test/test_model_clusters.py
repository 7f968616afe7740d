"""Cluster metric of Definition III.1 on hand-made trajectories and on the shipped policy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lgtc_policy.model.clusters import checkpoint_clusters, cluster_spread, cluster_spread_ratio


def test_two_clusters_by_hand() -> None:
    """Tick 0: {0, 1} at (0,0), (2,0) and {2, 3} at (10,0), (10,2): spreads 1 and 1,
    centroids (1,0), (10,1) at sqrt(82). Tick 1: agent 3 in no cluster, agent 2 alone:
    spread of {0, 1} at (0,0), (0,4) is 2; centroids (0,2), (3,6) at 5."""
    x = torch.tensor(
        [
            [[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 2.0]],
            [[0.0, 0.0], [0.0, 4.0], [3.0, 6.0], [50.0, 50.0]],
        ]
    )
    labels = torch.tensor([[0, 0, 1, 1], [0, 0, 1, -1]])
    w, nw, b, nb = cluster_spread(x, labels).tolist()
    assert (nw, nb) == (3.0, 2.0)
    assert math.isclose(w, 1 + 1 + 2) and math.isclose(b, math.sqrt(82) + 5)
    want = ((1 + 1 + 2) / 3) / ((math.sqrt(82) + 5) / 2)
    assert math.isclose(cluster_spread_ratio(x, labels), want, rel_tol=1e-12)


def test_definition_iii1_exactly_is_zero_and_degenerate_cases_are_nan() -> None:
    x = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [-1.0, 0.5], [-1.0, 0.5], [-1.0, 0.5]]])
    assert cluster_spread_ratio(x, torch.tensor([[0, 0, 2, 2, 2]])) == 0.0
    assert math.isnan(cluster_spread_ratio(x, torch.tensor([[0, 0, 0, 0, 0]])))  # one cluster
    assert math.isnan(cluster_spread_ratio(x, torch.tensor([[0, 1, 2, 3, -1]])))  # singletons
    assert math.isnan(cluster_spread_ratio(x, torch.full((1, 5), -1)))
    # mixing agents across sub-teams raises the ratio
    assert cluster_spread_ratio(x, torch.tensor([[0, 2, 0, 2, 2]])) > 0.3


def test_shipped_policy_reports_its_clusters() -> None:
    import lgtc_policy

    path = Path(lgtc_policy.__file__).parent / "checkpoints" / "lgtc_ippo_n10_m4.pt"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 episodes: one thread is fastest on a loaded machine
    try:
        out = checkpoint_clusters(str(path), 2, 0, None, "none")
    finally:
        torch.set_num_threads(before)
    assert set(out) == {
        "cluster_spread_ratio",
        "cluster_within",
        "cluster_between",
        "cluster_spread_ratio_attended",
        "cluster_spread_ratio_delta",
        "reward_cluster_ratio",
        "tau_min",
        "coupling",
        "contraction_c",
    }
    assert 0 <= out["cluster_spread_ratio"] < 10 and out["cluster_between"] > 0
    assert 0 <= out["reward_cluster_ratio"] < 10 and 0 <= out["cluster_spread_ratio_attended"] < 10
    # the shipped cell (TRAINING.md, "The learned cell's coupling"): tau 3.86, coupling 4e-4
    assert out["tau_min"] == pytest.approx(3.857, abs=1e-3)
    assert out["coupling"] == pytest.approx(3.94e-4, rel=1e-2)
    assert out["contraction_c"] == pytest.approx(out["tau_min"] - out["coupling"], abs=1e-3)
