"""Streaming training batches from webdataset shards on any fsspec root (local or ``s3://``).

Each data-loader worker reads one slot of the epoch's layout (see ``layout.py``): its pieces of
shards through webdataset's tar iterators over fsspec handles, the sources interleaved in
proportion, a seeded shuffle buffer, then batches of decoded, augmented images and tokens.
Augmentation is seeded per sample (run seed, epoch, key, lap), so a sample looks the same whichever
worker reads it and after a resume; a resumed epoch skips the batches already trained on without
decoding them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from itertools import islice
from typing import Callable, Iterator

import fsspec
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_expander

from ..errors import SourceError
from ..ids import unit_draw
from ..storage.decoding import Unreadable, open_image
from ..storage.store import fs_options
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
            if piece.lap:
                sample["__lap__"] = piece.lap
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


log = logging.getLogger("synthclip.train")


def decode(data: bytes, preprocess: Callable, seed: int):
    """The augmented image tensor of encoded image bytes, its random crop drawn from ``seed``."""
    image = open_image(data)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU stream only: torch.manual_seed also queues a CUDA seed with a stack trace
        return preprocess(image)


def other_texts(sample: dict, spec: dict) -> list[str]:
    """The texts a sample's .json lists besides its caption (``texts_field``: a run's rewrites)."""
    if "json" not in sample:
        return []
    try:
        listed = json.loads(sample["json"]).get(spec.get("texts_field", "rewrites")) or []
    except (ValueError, AttributeError) as exc:
        raise Unreadable(f"a .json that is not a JSON object ({exc})") from None
    return [t for t in listed if isinstance(t, str) and t]


def drawn_text(text: str, others: list[str], seed: int, epoch: int, key: str) -> str:
    """One of a sample's texts, drawn from (run seed, epoch, sample key) alone: the same on any
    worker and on a resume, another (most likely) in the next epoch."""
    if not others:
        return text
    texts = [text, *others]
    return texts[int(unit_draw("text", seed, epoch, key) * len(texts))]


class MissingKeys(Unreadable):
    """A sample without its source's image or caption key."""


def caption(text: bytes | str) -> str:
    try:
        return text.decode("utf-8") if isinstance(text, bytes) else text
    except UnicodeDecodeError as exc:
        raise Unreadable(f"a caption that is not UTF-8 ({exc.reason} at byte {exc.start})") from None


# What an unreadable sample raises (decoding an image or a caption, a missing key).
UNREADABLE = (Unreadable,)


def interleaved(streams: list[Iterator[dict]], counts: list[int], seed: str) -> Iterator[tuple[int, dict]]:
    """(source index, sample) from several sources, each next draw picking a source with
    probability proportional to what it has left, so every stretch of the slot holds the sources
    in proportion and all of them end together."""
    rng, left = random.Random(seed), list(counts)
    remaining = sum(left)
    while remaining:
        pick = rng.randrange(remaining)
        for index, n in enumerate(left):
            if pick < n:
                break
            pick -= n
        left[index] -= 1
        remaining -= 1
        yield index, next(streams[index])


class RankBatches(IterableDataset):
    """The batches one training rank takes in one epoch, from ``start_step`` on: (images, tokens,
    samples per source).

    With ``loaders`` data-loader processes, process ``i`` reads slot ``(i + start_step) % loaders``
    so that the DataLoader's round robin (which always starts at process 0) yields the batches in
    the order an uninterrupted epoch would. ``sources`` gives each source's ``image_key``,
    ``text_key`` and ``storage_options``, in the layout's source order.
    """

    def __init__(self, urls: list[str], layout: EpochLayout, rank: int, epoch: int, start_step: int, per_worker: int,
                 seed: int, shuffle_buffer: int, preprocess: Callable, tokenizer: Callable, sources: list[dict],
                 texts: str = "original"):
        self.urls, self.layout, self.rank, self.epoch, self.start_step = urls, layout, rank, epoch, start_step
        self.per_worker, self.seed, self.shuffle_buffer = per_worker, seed, shuffle_buffer
        self.preprocess, self.tokenizer, self.sources, self.texts = preprocess, tokenizer, sources, texts
        self.unreadable = 0

    def __iter__(self) -> Iterator[tuple]:
        info = get_worker_info()
        return self.slot_batches(info.id if info else 0)

    def slot_samples(self, role: int, slot: int) -> Iterator[tuple[int, dict]]:
        pieces = self.layout.rank_slots(self.rank)[role]
        streams = [iter_pieces(self.urls, p, s.get("storage_options")) for p, s in zip(pieces, self.sources)]
        if len(streams) == 1:
            return ((0, sample) for sample in streams[0])
        return interleaved(streams, [sum(p.count for p in ps) for ps in pieces], f"{self.seed}:{self.epoch}:{slot}:mix")

    def slot_batches(self, process: int) -> Iterator[tuple]:
        loaders = self.layout.loaders
        role = (process + self.start_step) % loaders
        slot = self.rank * loaders + role
        samples = shuffled(self.slot_samples(role, slot), self.shuffle_buffer, seed=f"{self.seed}:{self.epoch}:{slot}")
        done = batches_before(self.start_step, role, loaders)
        samples = islice(samples, done * self.per_worker, None)  # already trained on: not decoded
        for _ in range(self.layout.batches_per_slot - done):
            yield self.batch(list(islice(samples, self.per_worker)))

    def batch(self, chunk: list[tuple[int, dict]]) -> tuple:
        """(images, tokens, samples per source, unreadable samples per source) of one batch.

        A sample whose image does not decode, whose caption is not UTF-8 or that lacks its
        source's keys is left out and counted; the batch is filled up with the readable samples of
        the same batch (so every rank takes the same steps, and a resume the same batches), and
        the training loop stops once a source's share of unreadable samples is too high.
        """
        readable, bad = [], [0] * len(self.sources)
        for source, sample in chunk:
            try:
                key, image, text = self.fields(source, sample)
                if self.texts == "any":
                    text = drawn_text(caption(text), other_texts(sample, self.sources[source]), self.seed, self.epoch, key)
                readable.append((source, decode(image, self.preprocess, sample_seed(self.seed, self.epoch, key)),
                                 caption(text)))
            except UNREADABLE as exc:
                bad[source] += 1
                self.unreadable += 1
                if self.unreadable <= 3:  # the first few of each loader process, by name; the loop counts them all
                    log.warning("training source %r: sample %s in %s left out: %s", self.sources[source].get("name"),
                                sample.get("__key__"), sample.get("__url__"), " ".join(str(exc).split())[:200])
        if not readable:
            raise SourceError(f"training sources {sorted({self.sources[i].get('name') for i, _ in chunk})}: every sample of "
                              f"a batch of {len(chunk)} is unreadable (see the warnings above)")
        filled = readable + [readable[i % len(readable)] for i in range(len(chunk) - len(readable))]
        counts = torch.bincount(torch.tensor([i for i, _, _ in filled]), minlength=len(self.sources))
        return (torch.stack([image for _, image, _ in filled]), self.tokenizer([text for _, _, text in filled]), counts,
                torch.tensor(bad))

    def fields(self, source: int, sample: dict) -> tuple[str, bytes, bytes]:
        """Seed key, image bytes and caption of a sample, by its source's keys."""
        spec = self.sources[source]
        image_key, text_key = spec.get("image_key", "jpg"), spec.get("text_key", "txt")
        if image_key not in sample or text_key not in sample:
            raise MissingKeys(f"training source {spec.get('name')!r}: sample {sample.get('__key__')} in "
                              f"{sample.get('__url__')} has {sorted(k for k in sample if not k.startswith('__'))}, "
                              f"not .{image_key} and .{text_key}")
        lap = sample.get("__lap__")  # a repeat of an up-sampled source: its own crop
        return sample["__key__"] + (f"#{lap}" if lap else ""), sample[image_key], sample[text_key]

def epoch_loader(batches: RankBatches, loader_workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over one rank's epoch (in-process when ``loader_workers`` is 0)."""
    return DataLoader(batches, batch_size=None, num_workers=loader_workers, pin_memory=pin_memory,
                      prefetch_factor=2 if loader_workers else None)
