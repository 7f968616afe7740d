"""The exception root of lgtc_policy.

Every error this package raises on bad input or a failed step derives from
:class:`LgtcError` (and keeps its built-in base, ``ValueError`` or ``RuntimeError``), so a
caller can catch the package's errors in one clause:

* ``env.spec.EnvError`` (``EnvConfigError``, ``ActionError``, ``env.assign.AssignmentError``):
  the batched environment;
* ``model.checkpoint.CheckpointError``: a checkpoint that cannot be loaded or does not fit;
* ``model.lgtc.ContractionError``: the LGTC cell left its contraction bound;
* ``train.common.ConfigError``: a bad training configuration;
* ``agent.MissionError``: a swarm config the per-robot policy cannot run.
"""

from __future__ import annotations


class LgtcError(Exception):
    """Root of the errors of lgtc_policy."""
