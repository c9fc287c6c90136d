"""One evaluation dataset (an ``EvalDataset`` from the config or the CLI) on one model."""

from __future__ import annotations

import posixpath

from .config import EvalDataset
from .datasets import check, load_captioned, load_labelled
from .models import EvalModel
from .tasks import TaskResult, probe, retrieval, zeroshot
from .templates import load_templates


def check_dataset(ds: EvalDataset) -> None:
    """Fail fast on data that cannot be used, before a model is loaded or a flow starts."""
    if ds.task == "linear_probe":
        check(ds.train_path or posixpath.join(ds.path, "train"), ds.task, ds.classes)
        check(posixpath.join(ds.path, "test") if ds.train_path is None else ds.path, ds.task, ds.classes)
    else:
        check(ds.path, ds.task, ds.classes)
    if ds.templates:
        load_templates(ds.templates)


def evaluate_dataset(m: EvalModel, ds: EvalDataset, templates: str, batch_size: int) -> TaskResult:
    if ds.task == "zeroshot":
        data = load_labelled(ds.path, ds.classes)
        data.name = ds.name
        return zeroshot(m, data, load_templates(ds.templates or templates), batch_size)
    if ds.task == "retrieval":
        data = load_captioned(ds.path)
        data.name = ds.name
        return retrieval(m, data, batch_size)
    train = load_labelled(ds.train_path or posixpath.join(ds.path, "train"), ds.classes)
    test = load_labelled(posixpath.join(ds.path, "test") if ds.train_path is None else ds.path, ds.classes)
    test.name = ds.name
    return probe(m, train, test, batch_size)
