"""The dataset card's statistics, each against a value worked out by hand on a small case."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest

from synthclip_core.card.captions import CaptionTally, distinct_ngrams, tail
from synthclip_core.card.diversity import vendi_score
from synthclip_core.card.duplicates import hamming, near_duplicates, phash
from synthclip_core.card.sample import chosen_partitions, concept_partition, keep_lowest, measure, shuffled_partner


def test_the_vendi_score_counts_distinct_samples():
    rng = np.random.default_rng(0)
    one = rng.normal(size=16)
    assert vendi_score(np.tile(one, (8, 1))) == pytest.approx(1.0)  # k copies of one sample
    assert vendi_score(np.eye(8, 16) * 3.0) == pytest.approx(8.0)  # k orthogonal samples, any length
    assert vendi_score(np.vstack([np.eye(4, 16)] * 2)) == pytest.approx(4.0)  # each of 4 twice
    assert 1.0 < vendi_score(rng.normal(size=(40, 16))) < 16.0  # at most the dimension
    assert vendi_score(np.zeros((0, 16))) == 0.0


def _jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_a_planted_near_duplicate_pair_is_found_among_distinct_images():
    rng = np.random.default_rng(1)
    base = [rng.integers(0, 256, size=(64, 64, 3)) for _ in range(40)]
    smooth = [np.kron(rng.integers(0, 256, size=(8, 8, 3)), np.ones((8, 8, 1))) for _ in range(40)]
    images = [_jpeg(p) for p in smooth]
    images.append(_jpeg(smooth[7], quality=40))  # the plant: image 7 saved again, at another quality
    hashes = np.array([phash(j) for j in images])
    assert hamming(int(hashes[7]), int(hashes[40])) <= 2
    found = near_duplicates(hashes, distance=2)
    assert found.count == 1 and [sorted(m.tolist()) for m in found.members()] == [[7, 40]]
    assert found.surplus == 1 and found.images == 2
    assert near_duplicates(np.array([phash(_jpeg(p)) for p in base]), 2).count == 0  # noise: none


def test_near_duplicates_by_bands_are_the_brute_force_ones():
    rng = np.random.default_rng(2)
    hashes = rng.integers(-2**63, 2**63 - 1, size=300, dtype=np.int64)
    for i in range(0, 60, 3):  # plants 1 to 3 bits apart, and exact copies
        hashes[i + 1] = hashes[i] ^ np.int64(1 << int(rng.integers(0, 63)))
        hashes[i + 2] = hashes[i] if i % 2 else hashes[i] ^ np.int64(0b101 << 20)
    found = near_duplicates(hashes, distance=2)
    brute = {(i, j) for i in range(300) for j in range(i + 1, 300) if hamming(int(hashes[i]), int(hashes[j])) <= 2}
    together = {(i, j) for i in range(300) for j in range(i + 1, 300)
                if found.labels[i] >= 0 and found.labels[i] == found.labels[j]}
    assert brute <= together and found.count == 20


def test_a_planted_misaligned_image_scores_below_the_shuffled_floor():
    rng = np.random.default_rng(3)
    concepts = [f"c{i}" for i in range(6) for _ in range(5)]
    directions = {c: rng.normal(size=32) for c in set(concepts)}
    texts = np.array([directions[c] + 0.3 * rng.normal(size=32) for c in concepts])
    images = np.array([directions[c] + 0.3 * rng.normal(size=32) for c in concepts])
    images[4] = -directions["c0"] + 0.3 * rng.normal(size=32)  # the plant: an image of the opposite of its caption
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    table = pa.table({"concept_id": concepts, "image_embedding": list(unit(images).astype(np.float32)),
                      "text_embedding": list(unit(texts).astype(np.float32))})
    measures, own, floor = measure(table, seed=0)
    assert own[4] < floor.mean() < np.delete(own, 4).min()
    by = {m.concept_id: m for m in measures}
    assert by["c0"].alignment < by["c1"].alignment and all(m.alignment > m.shuffled for m in measures if m.concept_id != "c0")
    partner = shuffled_partner(concepts, 0)
    assert all(concepts[i] != concepts[j] for i, j in enumerate(partner)) and sorted(partner) == list(range(30))


def test_caption_counts_tail_and_distinct_ngrams():
    tally = CaptionTally()
    tally.add(pa.table({"caption": ["a red fox in snow", "a fox", "two dogs play"], "concept_id": ["fox", "fox", "cat"],
                        "matched_concept_ids": [["fox"], ["fox"], ["dog"]], "split": ["train", "eval", "train"]}))
    summary = tally.summary()
    assert summary["captions"] == 3 and summary["naming_share"] == pytest.approx(2 / 3)
    assert summary["words"]["mean"] == pytest.approx((5 + 2 + 3) / 3) and summary["words"]["median"] == 3
    assert summary["by_split"] == {"eval": 1, "train": 2}
    assert distinct_ngrams(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_ngrams(["a b a b"], 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert distinct_ngrams(["x y", "x y"], 2) == pytest.approx(1 / 2)
    found = tail(np.array([0, 1, 2, 6, 6, 9]), threshold=6)
    assert found["concepts"] == 5 and found["tail_concepts"] == 2 and found["tail_share_of_captions"] == pytest.approx(3 / 24)


def test_the_sample_takes_whole_concept_partitions_and_the_lowest_draws():
    partitions = {i: 25 for i in range(8)}
    chosen = chosen_partitions(partitions, 60, seed=0)
    assert len(chosen) == 3 and chosen == sorted(chosen)
    assert chosen_partitions(partitions, 60, seed=0) == chosen and chosen_partitions(partitions, 60, seed=1) != chosen
    assert chosen_partitions(partitions, 10_000, seed=0) == list(range(8))
    assert concept_partition("part-00003-001.parquet") == 3 and concept_partition("part-r1-00003-000.parquet") is None
    rows = pa.table({"image_id": [f"i{k}" for k in range(20)], "concept_id": ["a"] * 12 + ["b"] * 8})
    kept = keep_lowest(rows, 5, seed=0)
    assert kept.num_rows == 10
    whole = keep_lowest(pa.concat_tables([rows.slice(10), rows.slice(0, 10)]), 5, seed=0)  # any order: the same rows
    assert sorted(whole.column("image_id").to_pylist()) == sorted(kept.column("image_id").to_pylist())
