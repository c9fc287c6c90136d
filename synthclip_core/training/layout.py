"""Which samples each data slot reads in an epoch: pure arithmetic on shard sizes.

A data slot is one data-loader worker of one training rank (``slot = rank * loaders + loader``).
Training reads one or more *sources* (the run's shards, real data made by img2dataset, ...),
each with a weight. An epoch has a fixed number of samples (``samples_per_epoch``, or the sum of
the sources' sizes), cut into one equal range per slot, a whole number of batches long; each slot
takes from each source the same quota, the epoch's share of that source's weight (largest
remainders). Each epoch a source's shards are put in a seeded order; a source that gives fewer
samples than it holds is read in ranges spread over it (each sample at most once per epoch), one
that must give more is read round and round (up-sampled). So every rank takes the same number of
steps and there may be fewer shards than slots (several slots then read one shard at different
offsets). A source's ``limit`` keeps a deterministic subset: the first ``limit`` samples of its
shards in an order seeded by the run seed and the source's name, the same every epoch.
With one source of weight one and no caps, what is left over (under one batch per slot) is skipped
for that epoch only: the next epoch's order cuts elsewhere.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Piece:
    """``count`` samples of shard ``shard`` from its ``start``-th sample on; ``lap`` counts how many
    times an up-sampled source was read round before this piece (its crops differ per lap)."""

    shard: int
    start: int
    count: int
    lap: int = 0


@dataclass(frozen=True)
class SourceShards:
    """What the layout needs to know of a source: its shards (indices into the job's shard list)
    with their sizes, its weight and its subset limit."""

    name: str
    shards: tuple[int, ...]
    sizes: tuple[int, ...]
    weight: float = 1.0
    limit: int | None = None


@dataclass(frozen=True)
class EpochLayout:
    slots: tuple[tuple[tuple[Piece, ...], ...], ...]  # slot -> source -> pieces
    batches_per_slot: int
    loaders: int  # loader workers per rank (at least 1: in-process loading counts as one)
    quotas: tuple[int, ...]  # samples each slot takes from each source

    @property
    def steps(self) -> int:
        return self.batches_per_slot * self.loaders

    def rank_slots(self, rank: int) -> tuple[tuple[tuple[Piece, ...], ...], ...]:
        return self.slots[rank * self.loaders:(rank + 1) * self.loaders]

    def samples_per_source(self) -> tuple[int, ...]:
        """Samples each source gives in the whole epoch (all ranks)."""
        return tuple(q * len(self.slots) for q in self.quotas)


def single_source(sizes: list[int]) -> list[SourceShards]:
    return [SourceShards("data", tuple(range(len(sizes))), tuple(sizes))]


def subset(source: SourceShards, seed: int) -> tuple[Piece, ...]:
    """The source's samples in use: all of them, or its deterministic ``limit``-sample subset."""
    pieces = [Piece(shard, 0, size) for shard, size in zip(source.shards, source.sizes)]
    if source.limit is None or source.limit >= sum(source.sizes):
        return tuple(pieces)
    order = random.Random(f"{seed}:subset:{source.name}").sample(pieces, len(pieces))
    kept, left = [], source.limit
    for piece in order:
        if left <= 0:
            break
        kept.append(Piece(piece.shard, 0, min(piece.count, left)))
        left -= kept[-1].count
    return tuple(sorted(kept, key=lambda p: p.shard))


def quotas(total: int, weights: list[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders, ties to the first)."""
    scale = sum(weights)
    exact = [total * w / scale for w in weights]
    shares = [int(e) for e in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def epoch_samples(sources: list[SourceShards], seed: int, samples_per_epoch: int | None = None) -> int:
    return samples_per_epoch or sum(p.count for s in sources for p in subset(s, seed))


def steps_per_epoch(total: int, world: int, loader_workers: int, per_worker: int) -> int:
    loaders = max(1, loader_workers)
    return (total // (world * loaders)) // per_worker * loaders


def epoch_layout(sources: list[SourceShards], world: int, loader_workers: int, per_worker: int, seed: int, epoch: int,
                 samples_per_epoch: int | None = None) -> EpochLayout:
    """The slot ranges of one epoch; the same arguments always give the same layout."""
    loaders = max(1, loader_workers)
    n_slots = world * loaders
    universes = [subset(s, seed) for s in sources]
    total = epoch_samples(sources, seed, samples_per_epoch)
    batches = (total // n_slots) // per_worker
    if batches == 0:
        raise ValueError(
            f"{total} training samples give each of the {n_slots} data slots (workers {world} x loader workers {loaders}) "
            f"fewer than one batch of {per_worker}: lower train.global_batch_size, train.num_workers or train.loader_workers")
    take = batches * per_worker
    shares = quotas(take, [s.weight for s in sources])
    per_source = []
    for source, universe, quota in zip(sources, universes, shares):
        size = sum(p.count for p in universe)
        if quota and not size:
            raise ValueError(f"training source {source.name!r} has no samples")
        salt = f"{seed}:{epoch}" if len(sources) == 1 else f"{seed}:{epoch}:{source.name}"
        ordered = random.Random(salt).sample(universe, len(universe))
        stride = size // n_slots if quota * n_slots <= size else quota  # spread over the source, or round and round
        per_source.append([_cut(ordered, size, slot * stride, quota) for slot in range(n_slots)])
    slots = tuple(tuple(per_source[s][slot] for s in range(len(sources))) for slot in range(n_slots))
    return EpochLayout(slots, batches, loaders, tuple(shares))


def _cut(ordered: list[Piece], size: int, begin: int, count: int) -> tuple[Piece, ...]:
    """The pieces covering positions [begin, begin + count) of the pieces' concatenation, repeated
    end to end as often as needed."""
    pieces: list[Piece] = []
    while count > 0:
        lap, begin = divmod(begin, size)
        end = min(begin + count, size)
        lo = 0
        for piece in ordered:
            hi = lo + piece.count
            if hi > begin and lo < end and piece.count:
                first, last = max(lo, begin), min(hi, end)
                pieces.append(Piece(piece.shard, piece.start + first - lo, last - first, lap))
            lo = hi
        count -= end - begin
        begin = lap * size + end
    return tuple(pieces)


def batches_before(step_in_epoch: int, loader: int, loaders: int) -> int:
    """How many of loader ``loader``'s batches a rank consumed in its first ``step_in_epoch`` steps.

    Batches come from a rank's loaders in strict round robin: step ``j`` is loader ``j % loaders``'s
    batch number ``j // loaders``.
    """
    return len(range(loader, step_in_epoch, loaders))
