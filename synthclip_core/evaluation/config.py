"""The evaluation library's config: the ``eval`` section of a run or training job, and its benchmarks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..config import Section, operational, when_set
from ..ids import NAME_PATTERN, RUN_ID_RULE, is_run_id


class EvalDataset(Section):
    name: str = Field(..., pattern=NAME_PATTERN, description="The dataset's name in the report and the folder of its "
                      "export (e.g. imagenet-val, coco-5k): letters, digits, '.', '_' and '-'.")
    task: Literal["zeroshot", "retrieval", "linear_probe"] = Field(..., description="What to measure on it.")
    path: str = Field(..., description="Test data: a class-folder tree, Parquet or webdataset tars (docs/evaluation.md).")
    train_path: str | None = Field(None, description="Linear probe training data (default: <path>/train, tested on <path>/test).")
    classes: str | None = Field(None, description="Class names: a file, 'imagenet' (open_clip's names), or the folder names.")
    templates: str | None = Field(None, description="Zero-shot templates for this dataset (default: eval.templates).")


class EvalConfig(Section):
    """Evaluation."""

    templates: str = Field("simple", description="Zero-shot prompt templates: 'openai', 'simple' (open_clip's) or a file.")
    batch_size: int = operational(64, ge=1, description="Evaluation batch size.")
    num_gpus: float = operational(0, ge=0, description="GPUs for the evaluation task (on a cluster; 0 on the CPU).")
    datasets: list[EvalDataset] = Field(default_factory=list, description="External benchmarks evaluated after training.")
    held_out_of: str | None = when_set(
        None, description="A training job's: also evaluate on the held-out split of this synthetic run ('run:RUN_ID', same "
                          "root), as that run's own eval does (how a ladder measures every rung on the same data).")
    held_out_images: list[str] = when_set(
        default_factory=list, description="With held_out_of: read only these image partitions of that run (an early "
                                          "ladder's, measured while the run still renders; default: all of them).")

    @field_validator("held_out_of")
    @classmethod
    def _a_run(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("run:") and is_run_id(value[4:])):
            raise ValueError(f"{value!r}: name a synthetic run as run:RUN_ID, the id {RUN_ID_RULE}")
        return value
