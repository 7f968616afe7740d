"""Fixtures shared by the lgtc_policy tests: small LGTC checkpoints on disk."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from lgtc_policy.env import EnvConfig
from lgtc_policy.model.checkpoint import save_checkpoint
from lgtc_policy.model.lgtc import LGTCNet, NetConfig


def _write(path, head_bias=None):
    """A random-weight LGTC policy for r = 2 (seed 0, layout of ``model.checkpoint``); with
    ``head_bias`` its last layer is zero but for that bias, a constant action."""
    torch.manual_seed(0)
    cfg = NetConfig(agent_item_dim=6, consumer_item_dim=6, out_dim=2)
    net = LGTCNet(cfg)
    if head_bias is not None:
        with torch.no_grad():
            net.head[-1].weight.zero_()
            net.head[-1].bias.copy_(torch.tensor(head_bias))
    save_checkpoint(
        path,
        {
            "algo": "lgtc_ippo",
            "nets": {"policy": cfg.to_dict()},
            "state_dicts": {"policy": net.state_dict()},
            "env_config": dataclasses.asdict(EnvConfig()),
            "train_config": {},
            "eval": {},
        },
    )
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random-weight LGTC policy checkpoint for r = 2."""
    return _write(tmp_path_factory.mktemp("ck") / "policy.pt")


@pytest.fixture(scope="module")
def north_checkpoint(tmp_path_factory):
    """A policy whose action is always (0, 0.6): every robot flies north at 0.3 m/s."""
    return _write(tmp_path_factory.mktemp("ck") / "north.pt", head_bias=[0.0, 0.6])
