"""The pipeline: the stages in order, and the run config they make up. Flows, deployments,
status, fingerprints and the CLI read this list and nothing else, so adding a stage is one module
under ``stages/`` and one line here (docs/architecture.md, "Adding a stage").

A synthetic run has every stage, each configured by its section of :data:`RunConfig` (named as
the stage is); a training job (``JobConfig``) has ``train`` and ``eval`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, create_model

from .config import RunSettings, read_yaml, validate
from .fingerprint import stable_hash
from .stages import balanced, captions, concepts, eval, images, shards, topup, train
from .stages.stage import Stage

PIPELINE: tuple[Stage, ...] = (
    concepts.STAGE,
    captions.STAGE,
    balanced.STAGE,
    topup.STAGE,
    images.STAGE,
    shards.STAGE,
    train.STAGE,
    eval.STAGE,
)
STAGES = {stage.name: stage for stage in PIPELINE}


def _section_field(stage: Stage) -> tuple[type, Any]:
    """A stage's config section: required unless every field of it has a default."""
    model = stage.section
    description = (model.__doc__ or stage.description).strip().splitlines()[0]
    if any(f.is_required() for f in model.model_fields.values()):
        return model, Field(..., description=description)
    return model, Field(default_factory=model, description=description)


RunConfig = create_model(
    "RunConfig", __base__=RunSettings, __module__=__name__,
    **{stage.name: _section_field(stage) for stage in PIPELINE if stage.section is not None},
)
RunConfig.__doc__ = "A synthetic run: its name, seed and root, and one section per stage, named as the stage is."


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML preset; any problem is a ConfigError naming the file and field."""
    return config_from_dict(*read_yaml(path))


def config_from_dict(data: Any, source: str = "<config>") -> RunConfig:
    return validate(RunConfig, data, source)


def stages_for(cfg) -> tuple[Stage, ...]:
    """The stages of a run of ``cfg``, in pipeline order: all of them, or the ones its kind names,
    less the optional ones its config leaves off."""
    names = getattr(type(cfg), "stages", None)
    return tuple(stage for stage in PIPELINE if (names is None or stage.name in names) and stage.enabled(cfg))


def fingerprints(cfg) -> dict[str, str]:
    """Each stage's fingerprint for ``cfg``, in order: its name, version, settings (model
    included) and the fingerprint of the stage before, which pins its inputs."""
    out: dict[str, str] = {}
    upstream = ""
    for stage in stages_for(cfg):
        upstream = stable_hash({"stage": stage.name, "version": stage.version, "seed": cfg.seed,
                                "settings": stage.settings(cfg), "upstream": upstream})
        out[stage.name] = upstream
    return out


def versions() -> dict[str, int]:
    return {stage.name: stage.version for stage in PIPELINE}
