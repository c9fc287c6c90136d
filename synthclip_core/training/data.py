"""Streaming training batches from webdataset shards on any fsspec root (local or ``s3://``).

Each data-loader worker reads one slot of the epoch's layout (see ``layout.py``): its pieces of
shards through webdataset's tar iterators over fsspec handles, a seeded shuffle buffer, then
batches of decoded, augmented images and tokens. Augmentation is seeded per sample (run seed,
epoch, key), so a sample looks the same whichever worker reads it and after a resume; a resumed
epoch skips the batches already trained on without decoding them.
"""

from __future__ import annotations

import hashlib
import io
import random
from itertools import islice
from typing import Callable, Iterator

import fsspec
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_expander

from ..store import fs_options
from .layout import EpochLayout, Piece, batches_before


def iter_shard_samples(urls: list[str], storage_options: dict | None = None) -> Iterator[dict]:
    """Samples (dicts of ``__key__``, ``jpg``, ``txt``, ...) of the shards, in order."""
    for url in urls:
        with fsspec.open(url, "rb", **fs_options(url, storage_options)) as handle:
            yield from group_by_keys(tar_file_expander([{"url": url, "stream": handle}]))


def iter_pieces(urls: list[str], pieces: tuple[Piece, ...], storage_options: dict | None = None) -> Iterator[dict]:
    for piece in pieces:
        got = 0
        for sample in islice(iter_shard_samples([urls[piece.shard]], storage_options), piece.start, piece.start + piece.count):
            got += 1
            yield sample
        if got < piece.count:
            raise RuntimeError(f"shard {urls[piece.shard]} ended after {piece.start + got} samples; the export's sizes.json "
                               f"promised at least {piece.start + piece.count}: the shard is truncated or was replaced")


def shuffled(samples: Iterator[dict], buffer_size: int, seed: int | str) -> Iterator[dict]:
    """A seeded buffer shuffle: the same seed gives the same order."""
    rng, buffer = random.Random(seed), []
    for sample in samples:
        buffer.append(sample)
        if len(buffer) >= buffer_size:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def sample_seed(seed: int, epoch: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{epoch}:{key}".encode()).digest()[:8], "big") >> 1


def decode(sample: dict, preprocess: Callable, seed: int):
    """The augmented image tensor of a sample, its random crop drawn from ``seed``."""
    from PIL import Image

    image = Image.open(io.BytesIO(sample["jpg"])).convert("RGB")
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU stream only: torch.manual_seed also queues a CUDA seed with a stack trace
        return preprocess(image)


def caption(sample: dict) -> str:
    text = sample["txt"]
    return text.decode("utf-8") if isinstance(text, bytes) else text


class RankBatches(IterableDataset):
    """The batches one training rank takes in one epoch, from ``start_step`` on.

    With ``loaders`` data-loader processes, process ``i`` reads slot ``(i + start_step) % loaders``
    so that the DataLoader's round robin (which always starts at process 0) yields the batches in
    the order an uninterrupted epoch would.
    """

    def __init__(self, urls: list[str], layout: EpochLayout, rank: int, epoch: int, start_step: int, per_worker: int,
                 seed: int, shuffle_buffer: int, preprocess: Callable, tokenizer: Callable, storage_options: dict | None):
        self.urls, self.layout, self.rank, self.epoch, self.start_step = urls, layout, rank, epoch, start_step
        self.per_worker, self.seed, self.shuffle_buffer = per_worker, seed, shuffle_buffer
        self.preprocess, self.tokenizer, self.storage_options = preprocess, tokenizer, storage_options

    def __iter__(self) -> Iterator[tuple]:
        info = get_worker_info()
        return self.slot_batches(info.id if info else 0)

    def slot_batches(self, process: int) -> Iterator[tuple]:
        loaders = self.layout.loaders
        role = (process + self.start_step) % loaders
        slot = self.rank * loaders + role
        samples = shuffled(iter_pieces(self.urls, self.layout.rank_slots(self.rank)[role], self.storage_options),
                           self.shuffle_buffer, seed=f"{self.seed}:{self.epoch}:{slot}")
        done = batches_before(self.start_step, role, loaders)
        samples = islice(samples, done * self.per_worker, None)  # already trained on: not decoded
        for _ in range(self.layout.batches_per_slot - done):
            chunk = list(islice(samples, self.per_worker))
            images = torch.stack([decode(s, self.preprocess, sample_seed(self.seed, self.epoch, s["__key__"])) for s in chunk])
            yield images, self.tokenizer([caption(s) for s in chunk])


def epoch_loader(batches: RankBatches, loader_workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over one rank's epoch (in-process when ``loader_workers`` is 0)."""
    return DataLoader(batches, batch_size=None, num_workers=loader_workers, pin_memory=pin_memory,
                      prefetch_factor=2 if loader_workers else None)
