"""The pipeline: the stages in order, and the configs they make up. Flows, deployments, status,
fingerprints, plans, checks and the CLI read this list and nothing else, so adding a stage is one
module under ``stages/`` and one line here (docs/architecture.md, "Adding a stage").

A synthetic run has every stage, each configured by its section of :data:`RunConfig` (named as
the stage is); a training job (:class:`JobConfig`) has ``train`` and ``eval`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, create_model, model_validator

from . import legacy
from .config import RunSettings, Section, read_yaml, validate
from .evaluation.config import EvalConfig
from .fingerprint import stable_hash
from .ids import NAME_PATTERN
from .stages import balanced, captions, card, concepts, eval, images, rewrites, shards, topup, train
from .stages.stage import Stage
from .training.config import TrainConfig

PIPELINE: tuple[Stage, ...] = (
    concepts.STAGE,
    captions.STAGE,
    balanced.STAGE,
    topup.STAGE,
    images.STAGE,
    rewrites.STAGE,
    shards.STAGE,
    train.STAGE,
    eval.STAGE,
    card.STAGE,
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


class JobConfig(Section):
    """A training job outside a synthetic run: fine-tuning, or training on mixed or real sources."""

    stages: ClassVar[tuple[str, ...]] = ("train", "eval")  # a job has these stages of the pipeline only

    name: str = Field(..., pattern=NAME_PATTERN, description="Preset name; the default job id starts with it.")
    seed: int = Field(0, ge=0, description="Seeds the data order, crops and (without init_from) the initial weights.")
    root: str = Field("runs", description="Storage root (any fsspec URI); the job lives in ROOT/JOB_ID beside the runs.")
    fingerprint_scheme: int | None = Field(None, description="How this job's fingerprints are computed; pinned when it "
                                           "begins (runs/pins.py).")
    train: TrainConfig = Field(..., description="Training; train.sources must name at least one source.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Benchmarks evaluated on the final checkpoint.")

    @model_validator(mode="after")
    def _has_sources(self) -> "JobConfig":
        if not self.train.sources:
            raise ValueError("train.sources: a training job needs at least one source")
        if any(s.uri == "run" for s in self.train.sources):
            raise ValueError("train.sources: 'run' means a run's own shards; in a job name the run: run:RUN_ID")
        return self


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML preset; any problem is a ConfigError naming the file and field."""
    return config_from_dict(*read_yaml(path))


def config_from_dict(data: Any, source: str = "<config>") -> RunConfig:
    return validate(RunConfig, legacy.current_names(data, source), source)


def load_job_config(path: str | Path) -> JobConfig:
    """Read and validate a training job's YAML (see configs/finetune-*.yaml)."""
    return job_config_from_dict(*read_yaml(path))


def job_config_from_dict(data: Any, source: str = "<config>") -> JobConfig:
    return validate(JobConfig, legacy.current_names(data, source), source)


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
