"""The evaluation tasks on one model: zero-shot classification, retrieval, linear probe.

Each returns a :class:`TaskResult`: the numbers, the sample counts, and the images that could not
be read (counted, skipped and listed, never fatal unless nothing is left).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .datasets import CaptionedImages, DatasetError, LabelledImages
from .features import encode_images, encode_texts, zero_shot_classifier
from .metrics import linear_probe, per_class_accuracy, retrieval_recall, topk_accuracy
from .models import EvalModel


@dataclass
class TaskResult:
    dataset: str
    task: str
    metrics: dict[str, float]
    samples: int
    skipped: list[dict] = field(default_factory=list)  # {"id", "reason"}
    per_class: dict[str, float | None] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    correct: list[bool] = field(default_factory=list)  # per kept sample, for coverage analysis
    kept: list[int] = field(default_factory=list)


def _images(m: EvalModel, images: list, ids: list[str], batch_size: int, name: str):
    feats, kept, skipped = encode_images(m.model, m.preprocess, images, batch_size, m.device)
    if not kept:
        raise DatasetError(f"{name}: none of its {len(images)} images could be read"
                           + (f" (e.g. {ids[skipped[0][0]]}: {skipped[0][1]})" if skipped else ""))
    return feats, kept, [{"id": ids[i], "reason": r} for i, r in skipped]


def zeroshot(m: EvalModel, data: LabelledImages, templates: list, batch_size: int = 64) -> TaskResult:
    import torch

    feats, kept, skipped = _images(m, data.images, data.ids, batch_size, data.name)
    classifier = zero_shot_classifier(m.model, m.tokenizer, data.classnames, templates, batch_size, m.device)
    labels = torch.tensor([data.labels[i] for i in kept])
    logits = feats @ classifier
    metrics = topk_accuracy(logits, labels, ks=(1, 5))
    metrics["chance_top1"] = 1 / len(data.classnames)
    per_class = dict(zip(data.classnames, per_class_accuracy(logits, labels, len(data.classnames))))
    correct = (logits.argmax(dim=1) == labels).tolist()
    return TaskResult(data.name, "zeroshot", metrics, len(kept), skipped, per_class,
                      {"classes": len(data.classnames), "templates": len(templates)}, correct, kept)


def retrieval(m: EvalModel, data: CaptionedImages, batch_size: int = 64) -> TaskResult:
    feats, kept, skipped = _images(m, data.images, data.ids, batch_size, data.name)
    texts, owner = [], []
    for position, index in enumerate(kept):
        texts += data.captions[index]
        owner += [position] * len(data.captions[index])
    text_feats = encode_texts(m.model, m.tokenizer, texts, batch_size, m.device)
    return TaskResult(data.name, "retrieval", retrieval_recall(feats, text_feats, owner), len(kept), skipped,
                      extra={"captions": len(texts)}, kept=kept)


def probe(m: EvalModel, train: LabelledImages, test: LabelledImages, batch_size: int = 64, seed: int = 0) -> TaskResult:
    import numpy as np

    if train.classnames != test.classnames:
        raise DatasetError(f"linear probe: the train split's classes ({len(train.classnames)}) differ from the "
                           f"test split's ({len(test.classnames)})")
    train_x, train_kept, train_skipped = _images(m, train.images, train.ids, batch_size, train.name)
    test_x, test_kept, test_skipped = _images(m, test.images, test.ids, batch_size, test.name)
    out = linear_probe(train_x.numpy(), np.array([train.labels[i] for i in train_kept]),
                       test_x.numpy(), np.array([test.labels[i] for i in test_kept]), seed=seed)
    return TaskResult(test.name, "linear_probe", {"accuracy": out["accuracy"], "val_accuracy": out["val_accuracy"]},
                      len(test_kept), train_skipped + test_skipped,
                      extra={"C": out["C"], "train_samples": out["train_samples"], "classes": len(test.classnames)})
