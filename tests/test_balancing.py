"""Balancing against a direct, obviously-correct implementation of MetaCLIP's definition."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from synthclip_core.curation.balancing import ConceptMatcher, expected_counts, first_occurrences, keep_probabilities, prepare_text
from synthclip_core.ids import caption_id, concept_id, unit_draw
from synthclip_core.stages.executor import execute

REPO = Path(__file__).resolve().parents[1]
# Words chosen to collide: substrings of other words, multi-word and overlapping concepts, Unicode.
VOCAB = ["cat", "concatenate", "hot", "dog", "hot dog", "sea", "seashore", "café", "naïve", "日本", "Cat",
         "red fox", "fox", "a", "the", "big", "x-ray", "C++", "e.g."]
MARKS = [",", ".", ";", ":", "?", "!", "`", "\t", "\n", "\r", " ", "  ", "-", "'"]


def naive_text(text: str) -> str:
    """MetaCLIP's caption preparation, written out step by step."""
    text = " " + text + " "
    for mark in [",", ".", ";", ":", "?", "!", "`"]:
        text = text.replace(mark, " " + mark + " ")
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def naive_match(caption: str, concepts: list[str], case_sensitive: bool = True) -> list[int]:
    text = naive_text(caption)
    if not case_sensitive:
        text = text.lower()
    return [i for i, c in enumerate(concepts) if " " + (c if case_sensitive else c.lower()) + " " in text]


captions_st = st.lists(st.one_of(st.sampled_from(VOCAB), st.sampled_from(MARKS)), max_size=12).map("".join)
banks_st = st.lists(st.sampled_from(VOCAB), min_size=1, max_size=12, unique=True)


@settings(max_examples=300, deadline=None)
@given(bank=banks_st, caption=captions_st, case_sensitive=st.booleans())
def test_matching_equals_the_per_concept_loop(bank, caption, case_sensitive):
    assert ConceptMatcher(bank, case_sensitive).match(caption) == naive_match(caption, bank, case_sensitive)


def test_prepare_text_follows_metaclip():
    assert prepare_text("a cat, on\ta mat.") == naive_text("a cat, on\ta mat.") == " a cat ,  on a mat .  "


def test_examples():
    m = ConceptMatcher(["cat", "hot dog", "dog", "Cat"])
    assert m.match("a cat.") == [0] and m.match("a concatenation") == []
    assert m.match("a hot dog; yum") == [1, 2] and m.match("Cat!") == [3]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=30), st.lists(st.booleans(), max_size=30))
def test_first_occurrences(hashes, candidate):
    n = min(len(hashes), len(candidate))
    h, c = np.array(hashes[:n], dtype=np.int64), np.array(candidate[:n], dtype=bool)
    seen, expected = set(), []
    for value, ok in zip(h.tolist(), c.tolist()):
        expected.append(ok and value not in seen)
        if ok:
            seen.add(value)
    assert first_occurrences(h, c).tolist() == expected


def test_keep_probabilities_and_expectation():
    assert keep_probabilities(np.array([0, 3, 10, 40]), 10).tolist() == [1.0, 1.0, 1.0, 0.25]
    probs = np.array([0.5, 1.0, 0.25])
    # captions: [0], [0, 2], [] -> P(kept) 0.5 and 1 - 0.5 * 0.75
    expected = expected_counts(np.array([0, 0, 2]), np.array([1, 2]), probs, 3)
    assert np.allclose(expected, [0.5 + 0.625, 0, 0.625])


def naive_balance(rows: list[dict], concepts: list[str], threshold: int, seed: int):
    ids = [concept_id(c) for c in concepts]
    seen, matched = set(), []
    for row in rows:
        if not row["caption"] or row["caption"] in seen:
            continue
        seen.add(row["caption"])
        hits = naive_match(row["caption"], concepts)
        if hits:
            matched.append((row, hits))
    count = Counter(i for _, hits in matched for i in hits)
    p = {i: 1.0 if n <= threshold else threshold / n for i, n in count.items()}
    kept = [(row, hits) for row, hits in matched
            if any(unit_draw(seed, "balance", row["caption_id"], ids[i]) < p[i] for i in hits)]
    after = Counter(i for _, hits in kept for i in hits)
    return {row["caption_id"] for row, _ in kept}, count, after


def _caption_rows(concept_rows: list[dict], texts: list[str], start: int) -> list[dict]:
    return [{"caption_id": caption_id("x", "t", start + i, 0), "concept_id": c["concept_id"], "concept": c["concept"],
             "template": "t@v1", "index": 0, "seed": 0, "model": "m", "backend": "b", "raw": t, "tokens": 1,
             "caption": t, "reject_reason": None if t else "empty", "fixes": []}
            for i, (c, t) in enumerate(zip(concept_rows, texts))]


@pytest.mark.parametrize("trial", range(2))
def test_the_stage_equals_the_direct_implementation(engine, tmp_path, trial):
    """Random captions through the real stage (Ray actors, store, reduce) vs the direct version."""
    from synthclip_core.pipeline import config_from_dict
    from synthclip_core.runs.lifecycle import open_run
    from synthclip_core.stages.executor import complete
    from synthclip_core.stages.stage import StageSummary
    from synthclip_core.storage.schemas import to_parquet_bytes
    from synthclip_core.storage.store import RunRef
    from synthclip_core.storage.tables import read_table

    rng = random.Random(trial)
    concepts = rng.sample(VOCAB, 12)
    (tmp_path / "bank.txt").write_text("\n".join(concepts))
    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["concepts"] = {"source": str(tmp_path / "bank.txt"), "per_partition": 4}
    data["balanced"] = {"threshold": 3, "eval_fraction": 0.25, "num_actors": 2}
    run = open_run(config_from_dict(data), RunRef(str(tmp_path), f"balance-{trial}"))
    execute(run, "concepts")
    all_rows, parts = [], sorted(run.store.committed("concepts") - {"manifest.json"})
    for index, part in enumerate(parts):
        concept_rows = read_table(run.store, "concepts", part).to_pylist() * 40
        texts = [" ".join(rng.choice(VOCAB + MARKS + [""]) for _ in range(rng.randint(0, 5))) for _ in concept_rows]
        rows = _caption_rows(concept_rows, texts, index * 1000)
        all_rows += rows
        run.store.commit("captions", part, to_parquet_bytes(pa.Table.from_pylist(rows), "captions"))
    complete(run, StageSummary("captions", outputs=parts))  # the captions stage's inputs to balancing, written here
    summary = execute(run, "balanced")
    kept_ids, before, after = naive_balance(all_rows, concepts, 3, run.config.seed)
    parts = [o for o in run.store.committed("balanced") if o.startswith("part-")]
    balanced = pa.concat_tables([read_table(run.store, "balanced", o) for o in parts])
    assert set(balanced.column("caption_id").to_pylist()) == kept_ids and balanced.num_rows == len(kept_ids)
    stats = read_table(run.store, "balanced", "stats.parquet", "balanced_stats").to_pylist()
    assert [s["count_before"] for s in stats] == [before.get(i, 0) for i in range(len(concepts))]
    assert [s["count_after"] for s in stats] == [after.get(i, 0) for i in range(len(concepts))]
    assert summary.notes["kept"] == len(kept_ids)
    assert summary.notes["duplicates"] > 0 and summary.notes["no_match"] > 0 and summary.notes["sampled_out"] > 0
    assert run.store.read_bytes("balanced", "histogram.png")[:8] == b"\x89PNG\r\n\x1a\n"


def test_composed_held_out_concepts_are_made_only_of_words_that_still_train():
    from synthclip_core.curation.balancing import concept_words, held_out_concepts

    names = ["red fox", "arctic fox", "red wolf", "grey wolf", "arctic wolf", "tabby cat", "newt", "grey fox"]
    concepts = [(f"c{i}", n) for i, n in enumerate(names)]
    base = held_out_concepts(0, concepts, 1)
    held = held_out_concepts(0, concepts, 1, 3)
    assert base < held and len(held - base) == 3 and held_out_concepts(0, concepts, 1, 0) == base
    trained_words = set().union(*(concept_words(n) for c, n in concepts if c not in held))
    assert all(concept_words(n) <= trained_words for c, n in concepts if c in held - base)
    assert not {c for c, n in concepts if n in ("tabby cat", "newt")} & (held - base)  # words no other concept has
