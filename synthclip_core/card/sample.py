"""The card's bounded, deterministic sample and what is measured on it.

A run's image partitions follow its concept partitions (``images/part-i-j`` holds captions of
``concepts/part-i``), so whole concept partitions are taken, in an order fixed by the seed, until
they hold the concepts asked for: the sample reads those partitions' images and no others, and
its cost follows the sample, not the run. Within them each concept keeps the ``per_concept``
images with the lowest draw, and the concepts with the lowest draws are kept up to the count asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..ids import derive_seed
from .diversity import vendi_score

_PART = re.compile(r"^part-(\d+)-\d+\.parquet$")


def concept_partition(image_part: str) -> int | None:
    """The concept partition ``i`` of ``images/part-i-j`` (None for the closed loop's partitions)."""
    found = _PART.match(image_part)
    return int(found.group(1)) if found else None


def chosen_partitions(concepts_per_partition: dict[int, int], wanted: int, seed: int) -> list[int]:
    """Concept partitions, in the seed's order, until they hold ``wanted`` concepts (all, if fewer)."""
    order = sorted(concepts_per_partition, key=lambda i: derive_seed(seed, "card-partition", i))
    chosen, held = [], 0
    for index in order:
        if held >= wanted:
            break
        chosen.append(index)
        held += concepts_per_partition[index]
    return sorted(chosen)


def draw(seed: int, key: str) -> int:
    """The sample's order of an image or a concept: a seeded hash, so any reader picks the same."""
    return derive_seed(seed, "card", key)


def keep_lowest(table: pa.Table, per_concept: int, seed: int, key: str = "image_id") -> pa.Table:
    """Per concept, the ``per_concept`` rows with the lowest draw of ``key`` (in that order)."""
    if table.num_rows == 0:
        return table
    draws = np.array([draw(seed, k) for k in table.column(key).to_pylist()], dtype=np.float64)
    concepts = table.column("concept_id").to_pylist()
    order = np.lexsort((draws, np.array(concepts, dtype=object).astype(str)))
    kept, seen, last = [], 0, None
    for i in order:
        seen = seen + 1 if concepts[i] == last else 1
        last = concepts[i]
        if seen <= per_concept:
            kept.append(int(i))
    return table.take(pa.array(kept, pa.int64()))


def keep_concepts(table: pa.Table, concepts: int, seed: int) -> pa.Table:
    """The rows of the ``concepts`` concepts with the lowest draws."""
    ids = sorted(set(table.column("concept_id").to_pylist()), key=lambda c: draw(seed, c))[:concepts]
    import pyarrow.compute as pc

    return table.filter(pc.is_in(table.column("concept_id"), value_set=pa.array(ids, pa.string())))


@dataclass
class ConceptMeasure:
    concept_id: str
    images: int
    image_vendi: float
    caption_vendi: float
    alignment: float  # mean CLIP score (100 x cosine) of each image with its own caption
    shuffled: float  # mean CLIP score of each image with a caption of another concept: the floor


def shuffled_partner(concepts: list[str], seed: int) -> np.ndarray:
    """For each row, a row of another concept, whose caption is the row's floor: rows grouped by
    concept in a seeded order, each paired with the row as many places on as the largest group
    has rows, so no row meets its own concept while no concept has more than half the rows."""
    n = len(concepts)
    rng = np.random.default_rng(derive_seed(seed, "card-shuffle"))
    rank = {c: r for r, c in enumerate(rng.permutation(sorted(set(concepts))))}
    order = np.lexsort((rng.random(n), np.array([rank[c] for c in concepts])))
    largest = max(np.bincount(list(rank[c] for c in concepts)), default=0)
    partner = np.empty(n, np.int64)
    partner[order] = np.roll(order, -int(largest)) if n else order
    return partner


def measure(table: pa.Table, seed: int) -> tuple[list[ConceptMeasure], np.ndarray, np.ndarray]:
    """Per concept of a sample (columns concept_id, image_embedding, text_embedding): Vendi of its
    images and of its captions, and alignment against the shuffled floor; also each row's own
    and shuffled score."""
    concepts = table.column("concept_id").to_pylist()
    images = np.array(table.column("image_embedding").to_pylist(), np.float32).reshape(len(concepts), -1)
    texts = np.array(table.column("text_embedding").to_pylist(), np.float32).reshape(len(concepts), -1)
    own = 100 * (images * texts).sum(1)
    partner = shuffled_partner(concepts, seed)
    floor = 100 * (images * texts[partner]).sum(1)
    rows: dict[str, list[int]] = {}
    for i, concept in enumerate(concepts):
        rows.setdefault(concept, []).append(i)
    found = [ConceptMeasure(c, len(idx), vendi_score(images[idx]), vendi_score(texts[idx]),
                            float(own[idx].mean()), float(floor[idx].mean())) for c, idx in sorted(rows.items())]
    return found, own, floor
