"""Which samples each data slot reads in an epoch: pure arithmetic on shard sizes.

A data slot is one data-loader worker of one training rank (``slot = rank * loaders + loader``).
Each epoch the shards are put in a seeded order and their concatenation is cut into one range per
slot, all of the same length (a whole number of batches). So every rank takes the same number of
steps, each sample is read by at most one slot per epoch, and there may be fewer shards than slots
(several slots then read one shard at different offsets). What is left over (under one batch per
slot) is skipped for that epoch only: the next epoch's order cuts elsewhere.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Piece:
    """``count`` samples of shard ``shard`` from its ``start``-th sample on."""

    shard: int
    start: int
    count: int


@dataclass(frozen=True)
class EpochLayout:
    slots: tuple[tuple[Piece, ...], ...]
    batches_per_slot: int
    loaders: int  # loader workers per rank (at least 1: in-process loading counts as one)

    @property
    def steps(self) -> int:
        return self.batches_per_slot * self.loaders

    def rank_slots(self, rank: int) -> tuple[tuple[Piece, ...], ...]:
        return self.slots[rank * self.loaders:(rank + 1) * self.loaders]


def steps_per_epoch(total: int, world: int, loader_workers: int, per_worker: int) -> int:
    loaders = max(1, loader_workers)
    return (total // (world * loaders)) // per_worker * loaders


def epoch_layout(sizes: list[int], world: int, loader_workers: int, per_worker: int, seed: int, epoch: int) -> EpochLayout:
    """The slot ranges of one epoch; the same arguments always give the same layout."""
    loaders = max(1, loader_workers)
    n_slots = world * loaders
    total = sum(sizes)
    batches = (total // n_slots) // per_worker
    if batches == 0:
        raise ValueError(
            f"{total} training samples give each of the {n_slots} data slots (workers {world} x loader workers {loaders}) "
            f"fewer than one batch of {per_worker}: lower train.global_batch_size, train.num_workers or train.loader_workers")
    order = random.Random(f"{seed}:{epoch}").sample(range(len(sizes)), len(sizes))
    starts = [0]
    for index in order:
        starts.append(starts[-1] + sizes[index])
    stride, take = total // n_slots, batches * per_worker
    slots = tuple(_cut(order, sizes, starts, slot * stride, take) for slot in range(n_slots))
    return EpochLayout(slots, batches, loaders)


def _cut(order: list[int], sizes: list[int], starts: list[int], begin: int, count: int) -> tuple[Piece, ...]:
    """The pieces of shards covering positions [begin, begin + count) of the ordered concatenation."""
    pieces, end = [], begin + count
    for position, index in enumerate(order):
        lo, hi = starts[position], starts[position + 1]
        if hi <= begin or lo >= end or sizes[index] == 0:
            continue
        first, last = max(lo, begin), min(hi, end)
        pieces.append(Piece(index, first - lo, last - first))
    return tuple(pieces)


def batches_before(step_in_epoch: int, loader: int, loaders: int) -> int:
    """How many of loader ``loader``'s batches a rank consumed in its first ``step_in_epoch`` steps.

    Batches come from a rank's loaders in strict round robin: step ``j`` is loader ``j % loaders``'s
    batch number ``j // loaders``.
    """
    return len(range(loader, step_in_epoch, loaders))
