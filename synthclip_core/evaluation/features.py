"""Normalised image and text features, batched, with progress; unreadable images are skipped."""

from __future__ import annotations

import io
from typing import Callable

from .. import progress


def pick_device(device: str | None = None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def encode_images(model, preprocess: Callable, images: list[bytes | str], batch_size: int, device: str = "cpu",
                  stage: str = "eval") -> tuple:
    """(features, kept indices, skipped) where skipped lists (index, reason) of unreadable images.

    An image is its encoded bytes or a path / fsspec URI, read when its batch is built.
    """
    import torch
    from PIL import Image

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
            raw = _read(data) if isinstance(data, str) else data
            batch.append(preprocess(Image.open(io.BytesIO(raw)).convert("RGB")))
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


def _read(uri: str) -> bytes:
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
