"""Evaluate any open_clip checkpoint on datasets outside a run, and write the report to a folder.

The CLI's ``synthclip eval`` and the ``evaluate-checkpoint`` flow call this; the run's own ``eval``
stage uses the same tasks and report format.
"""

from __future__ import annotations

import json
import posixpath
from typing import Callable

import fsspec

from .benchmarks import evaluate_dataset
from .config import EvalDataset
from .models import EvalModel, load_eval_model
from .report import build_report, config_hash, render_markdown
from .tasks import TaskResult


def evaluation_report(checkpoint: str, datasets: list[EvalDataset], arch: str | None = None, templates: str = "openai",
                      batch_size: int = 64, device: str | None = None,
                      more: Callable[[EvalModel], list[TaskResult]] | None = None) -> dict:
    """Every dataset on one checkpoint, and what ``more`` measures on the loaded model, as a report
    (see ``report.build_report``)."""
    model = load_eval_model(checkpoint, arch=arch, device=device)
    results = [evaluate_dataset(model, ds, templates, batch_size) for ds in datasets] + (more(model) if more else [])
    settings = {"datasets": [ds.model_dump() for ds in datasets], "templates": templates, "arch": model.arch}
    return build_report(results, checkpoint, model.sha256, model.arch, config_hash(settings), settings=settings)


def evaluate_checkpoint(checkpoint: str, datasets: list[EvalDataset], out: str, arch: str | None = None,
                        templates: str = "openai", batch_size: int = 64, device: str | None = None) -> dict:
    """Every dataset on one checkpoint; ``out/report.json`` and ``out/report.md`` (any fsspec URI)."""
    report = evaluation_report(checkpoint, datasets, arch, templates, batch_size, device)
    fs, base = fsspec.core.url_to_fs(out)
    fs.makedirs(base, exist_ok=True)
    fs.pipe_file(posixpath.join(base, "report.json"), json.dumps(report, indent=1).encode())
    fs.pipe_file(posixpath.join(base, "report.md"), render_markdown(report, f"Evaluation of `{checkpoint}`").encode())
    return report
