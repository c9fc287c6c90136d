"""Normalised image and text features, batched, with progress; unreadable images are skipped."""

from __future__ import annotations

from typing import Callable

from ..compute import progress
from ..storage.decoding import open_image


def pick_device(device: str | None = None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def encode_images(model, preprocess: Callable, images: list[bytes | str], batch_size: int, device: str = "cpu",
                  stage: str = "eval") -> tuple:
    """(features, kept indices, skipped) where skipped lists (index, reason) of unreadable images.

    An image is its encoded bytes or a path / fsspec URI, read when its batch is built.
    """
    import torch

    feats, kept, skipped, batch, batch_index = [], [], [], [], []

    def flush() -> None:
        with torch.inference_mode():
            out = model.encode_image(torch.stack(batch).to(device))
        feats.append(torch.nn.functional.normalize(out.float(), dim=-1).cpu())
        kept.extend(batch_index)
        batch.clear()
        batch_index.clear()

    for index, data in enumerate(images):
        try:
            raw = read_image(data) if isinstance(data, str) else data
            batch.append(preprocess(open_image(raw)))
            batch_index.append(index)
        except Exception as exc:  # a broken file is counted and reported, not fatal
            skipped.append((index, f"{type(exc).__name__}: {exc}"[:200]))
        if len(batch) == batch_size:
            flush()
            progress.report(stage, index + 1, len(images))
    if batch:
        flush()
    progress.report(stage, len(images), len(images))
    return (torch.cat(feats) if feats else torch.empty(0, 0)), kept, skipped


def read_image(uri: str) -> bytes:
    """An image's bytes from a path or any fsspec URI."""
    import fsspec

    with fsspec.open(uri, "rb") as handle:
        return handle.read()


def encode_texts(model, tokenizer: Callable, texts: list[str], batch_size: int, device: str = "cpu"):
    import torch

    feats = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            tokens = tokenizer(texts[start:start + batch_size]).to(device)
            feats.append(torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1).cpu())
    return torch.cat(feats)


def zero_shot_classifier(model, tokenizer: Callable, classnames: list[str], templates: list, batch_size: int,
                         device: str = "cpu"):
    """One normalised text embedding per class (the mean over the prompt templates), as columns:
    open_clip's own classifier, about ``batch_size`` prompts per forward pass."""
    from open_clip import build_zero_shot_classifier

    per_batch = max(1, batch_size // len(templates))
    return build_zero_shot_classifier(model, tokenizer, classnames, templates, per_batch, device).float().cpu()


CLASS_CHUNK = 4096  # classes whose text embeddings exist at once in chunked zero-shot
IMAGE_BLOCK = 4096  # images scored at once against a chunk


def top_classes(model, tokenizer: Callable, feats, classnames: list[str], templates: list, batch_size: int,
                k: int = 5, device: str = "cpu"):
    """Per image, the indices of its ``k`` best-scoring classes, best first: classifier columns
    are made ``CLASS_CHUNK`` classes at a time and scored in blocks, so neither the whole
    classifier nor the images x classes logits exist at once (a 500k-concept bank in bounded memory)."""
    import torch

    k = min(k, len(classnames))
    best_scores = torch.full((feats.shape[0], k), float("-inf"))
    best = torch.zeros((feats.shape[0], k), dtype=torch.long)
    for first in range(0, len(classnames), CLASS_CHUNK):
        classifier = zero_shot_classifier(model, tokenizer, classnames[first:first + CLASS_CHUNK], templates,
                                          batch_size, device)
        for start in range(0, feats.shape[0], IMAGE_BLOCK):
            block = slice(start, start + IMAGE_BLOCK)
            logits = feats[block] @ classifier
            scores, index = logits.topk(min(k, logits.shape[1]), dim=1)
            merged_scores = torch.cat([best_scores[block], scores], dim=1)
            merged = torch.cat([best[block], index + first], dim=1)
            order = merged_scores.topk(k, dim=1).indices
            best_scores[block], best[block] = merged_scores.gather(1, order), merged.gather(1, order)
    return best
