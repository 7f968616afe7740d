"""``swarm validate``'s check of the learned policy a swarm config names.

sim_bridge, the world contract, imports no mission package: it finds
:func:`check_swarm_config` through the entry point group ``swarm.validators`` (declared in
this package's ``setup.py``) and calls it with the loaded config. The checkpoint is loaded
exactly as every policy node loads it (:func:`lgtc_policy.agent.load_policy`): plain weights
only (``torch.load(weights_only=True)``), every weight finite, a policy network whose input
and output sizes fit the config's resource types.
"""

from __future__ import annotations

from sim_bridge.config import Problem, SwarmConfig

__all__ = ["check_swarm_config"]

_FIX = (
    "point policy.checkpoint at a checkpoint written by `lgtc train` or `lgtc export` "
    "(e.g. lgtc_policy:checkpoints/lgtc_ippo_n10_m4.pt), or set it to null"
)


def check_swarm_config(cfg: SwarmConfig) -> list[Problem]:
    """Problems with the policy checkpoint of ``cfg`` (none when it names no checkpoint)."""
    if cfg.policy.checkpoint is None:
        return []
    from lgtc_policy.agent import MissionError, load_policy  # torch: only with a policy

    try:
        path = cfg.resolve_checkpoint()
    except FileNotFoundError as exc:
        return [Problem("policy.checkpoint", str(exc), _FIX)]
    problems = []
    try:
        load_policy(path, len(cfg.resource_types))
    except MissionError as exc:
        problems.append(
            Problem("policy.checkpoint", str(exc).removeprefix("policy checkpoint: "), _FIX)
        )
    if not cfg.consumers:
        problems.append(
            Problem(
                "consumers",
                "the learned policy attends to consumers, and the file lists none",
                "add a consumer, or set policy.checkpoint to null",
            )
        )
    return problems
