"""The evaluation tasks on one model: zero-shot classification, retrieval, linear probe.

Each returns a :class:`TaskResult`: the numbers, the sample counts, and the images that could not
be read (counted, skipped and listed, never fatal unless nothing is left).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import mistakes
from .datasets import CaptionedImages, DatasetError, LabelledImages
from .features import encode_images, encode_texts, top_classes
from .metrics import linear_probe, per_class_accuracy, retrieval_recall, topk_hits
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
    feats, kept, skipped = _images(m, data.images, data.ids, batch_size, data.name)
    return zeroshot_on(m, data.name, feats, kept, [data.labels[i] for i in kept], data.classnames, templates,
                       batch_size, skipped)


def zeroshot_on(m: EvalModel, name: str, feats, kept: list[int], labels: list[int], classnames: list[str],
                templates: list, batch_size: int = 64, skipped: list[dict] = ()) -> TaskResult:
    """Zero-shot on image features already encoded (``kept``: the samples they belong to, ``labels``
    theirs), over any number of classes in bounded memory."""
    import torch

    top = top_classes(m.model, m.tokenizer, feats, classnames, templates, batch_size, k=5, device=m.device)
    labels = torch.tensor(labels)
    metrics = topk_hits(top, labels, ks=(1, 5))
    metrics["chance_top1"] = 1 / len(classnames)
    per_class = dict(zip(classnames, per_class_accuracy(top[:, 0], labels, len(classnames))))
    correct = (top[:, 0] == labels).tolist()
    truth, guesses = labels.tolist(), top[:, 0].tolist()
    return TaskResult(name, "zeroshot", metrics, len(kept), list(skipped), per_class,
                      {"classes": len(classnames), "templates": len(templates),
                       "class_counts": mistakes.class_counts(truth, guesses, classnames),
                       "confusions": mistakes.confusions(truth, guesses, classnames)}, correct, kept)


def retrieval(m: EvalModel, data: CaptionedImages, batch_size: int = 64) -> TaskResult:
    feats, kept, skipped = _images(m, data.images, data.ids, batch_size, data.name)
    return retrieval_on(m, data.name, feats, kept, [data.captions[i] for i in kept], batch_size, skipped)


def retrieval_on(m: EvalModel, name: str, feats, kept: list[int], captions: list[list[str]], batch_size: int = 64,
                 skipped: list[dict] = ()) -> TaskResult:
    """Retrieval on image features already encoded, ``captions[i]`` those of the image of ``feats[i]``."""
    texts, owner = [], []
    for position, own in enumerate(captions):
        texts += own
        owner += [position] * len(own)
    text_feats = encode_texts(m.model, m.tokenizer, texts, batch_size, m.device)
    return TaskResult(name, "retrieval", retrieval_recall(feats, text_feats, owner), len(kept), list(skipped),
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
