"""Streaming (image, caption) samples from webdataset shards on any fsspec root.

Shards are read with webdataset's own tar iterators over fsspec file handles (local or s3://).
Rank r of w keeps the samples whose global position is r modulo w and stops at the same count on
every rank, so each sample is seen once per epoch and all ranks take the same number of steps.
"""

from __future__ import annotations

import io
import random
from typing import Iterator

import fsspec
from webdataset.tariterators import group_by_keys, tar_file_expander


def iter_shard_samples(urls: list[str], storage_options: dict | None = None) -> Iterator[dict]:
    """Samples (dicts of ``__key__``, ``jpg``, ``txt``, ...) of the shards, in order."""
    for url in urls:
        with fsspec.open(url, "rb", **(storage_options or {})) as handle:
            yield from group_by_keys(tar_file_expander([{"url": url, "stream": handle}]))


def rank_samples(urls: list[str], total: int, rank: int, world: int, storage_options: dict | None = None) -> Iterator[dict]:
    per_rank = total // world
    taken = 0
    for position, sample in enumerate(iter_shard_samples(urls, storage_options)):
        if taken == per_rank:
            return
        if position % world == rank:
            taken += 1
            yield sample


def shuffled(samples: Iterator[dict], buffer_size: int, seed: int) -> Iterator[dict]:
    """A seeded buffer shuffle: the same seed gives the same order."""
    rng, buffer = random.Random(seed), []
    for sample in samples:
        buffer.append(sample)
        if len(buffer) >= buffer_size:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def batches(samples: Iterator[dict], batch_size: int, preprocess, tokenizer) -> Iterator[tuple]:
    """(images, texts) tensors; the last incomplete batch is dropped to keep ranks in step."""
    import torch
    from PIL import Image

    images, texts = [], []
    for sample in samples:
        images.append(preprocess(Image.open(io.BytesIO(sample["jpg"])).convert("RGB")))
        texts.append(sample["txt"].decode("utf-8") if isinstance(sample["txt"], bytes) else sample["txt"])
        if len(images) == batch_size:
            yield torch.stack(images), tokenizer(texts)
            images, texts = [], []
