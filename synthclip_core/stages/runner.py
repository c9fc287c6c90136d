"""One entry point per stage name, in pipeline order."""

from __future__ import annotations

from typing import Callable

from ..run import Run
from .balance import run_balance
from .caption_coverage import write_coverage
from .common import StageSummary
from .concepts import run_concepts
from .contact_sheet import write_contact_sheet
from .evaluate import run_eval
from .model_stage import run_model_stage
from .shards import run_export
from .train import run_train


def run_captions(run: Run) -> StageSummary:
    summary = run_model_stage(run, "captions")
    if summary.ok:
        summary.notes["coverage"] = write_coverage(run)
    return summary


def run_images(run: Run) -> StageSummary:
    summary = run_model_stage(run, "images")
    if summary.ok:
        summary.pictures = [f"images/{write_contact_sheet(run)}"]
    return summary


STAGE_RUNNERS: dict[str, Callable[[Run], StageSummary]] = {
    "concepts": run_concepts,
    "captions": run_captions,
    "balanced": run_balance,
    "images": run_images,
    "shards": run_export,
    "train": run_train,
    "eval": run_eval,
}
NEEDS_RAY = {"captions", "images", "train", "eval"}


def run_stage(run: Run, stage: str) -> StageSummary:
    return STAGE_RUNNERS[stage](run)
