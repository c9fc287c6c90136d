"""The pipeline: the stages in order. Flows, deployments, status, fingerprints and the CLI read
this list and nothing else, so adding a stage is one module under ``stages/`` and one line here.

A run has the stages its config has sections for: a synthetic run all of them, a training job
(``JobConfig``) ``train`` and ``eval``.
"""

from __future__ import annotations

from .fingerprint import chain
from .stages import balanced, captions, concepts, eval, images, shards, train
from .stages.stage import Stage

PIPELINE: tuple[Stage, ...] = (
    concepts.STAGE,
    captions.STAGE,
    balanced.STAGE,
    images.STAGE,
    shards.STAGE,
    train.STAGE,
    eval.STAGE,
)
STAGES = {stage.name: stage for stage in PIPELINE}


def stages_for(cfg) -> tuple[Stage, ...]:
    """The stages a config has sections for, in pipeline order."""
    return tuple(stage for stage in PIPELINE if stage.name in type(cfg).model_fields)


def fingerprints(cfg) -> dict[str, str]:
    """Each stage's fingerprint for ``cfg``: its settings, model, version and the stage before."""
    return chain(stages_for(cfg), cfg, cfg.seed)


def versions() -> dict[str, int]:
    return {stage.name: stage.version for stage in PIPELINE}
