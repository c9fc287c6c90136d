"""Caption statistics of a run, streamed over its balanced captions: how long they are, how many
name the concept they were written for, how varied their words are, and how long the tail is."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LONGEST = 64  # words; longer captions count in the last bin
_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class CaptionTally:
    """Whole-run counts over kept captions, added a partition at a time (memory: the histogram)."""

    lengths: np.ndarray = field(default_factory=lambda: np.zeros(LONGEST + 1, np.int64))
    captions: int = 0
    naming: int = 0  # captions that contain the concept they were written for
    by_split: Counter = field(default_factory=Counter)

    def add(self, table: pa.Table) -> None:
        """Add a balanced table's rows (columns caption, concept_id, matched_concept_ids, split)."""
        counts = pc.list_value_length(pc.utf8_split_whitespace(table.column("caption"))).to_numpy(zero_copy_only=False)
        self.lengths += np.bincount(np.minimum(counts, LONGEST), minlength=LONGEST + 1)
        self.captions += table.num_rows
        matched = table.column("matched_concept_ids").combine_chunks()
        parents = pc.list_parent_indices(matched)
        hits = pc.equal(pc.list_flatten(matched), pc.take(table.column("concept_id"), parents)).to_numpy(zero_copy_only=False)
        self.naming += len(np.unique(parents.to_numpy()[hits]))
        for split in pc.value_counts(table.column("split")).to_pylist():
            self.by_split[split["values"]] += split["counts"]

    def summary(self) -> dict:
        n = max(self.captions, 1)
        cumulative = np.cumsum(self.lengths)
        quantile = {q: int(np.searchsorted(cumulative, q * self.captions)) for q in (0.05, 0.5, 0.95)}
        return {"captions": self.captions, "naming_share": self.naming / n,
                "words": {"mean": float(np.dot(np.arange(LONGEST + 1), self.lengths) / n),
                          "p5": quantile[0.05], "median": quantile[0.5], "p95": quantile[0.95]},
                "length_histogram": self.lengths.tolist(), "by_split": dict(sorted(self.by_split.items()))}


def distinct_ngrams(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of ``texts`` (distinct-n, Li et al. 2016): 1 when no
    n-gram repeats, towards 0 when the captions say the same thing."""
    grams = [tuple(w[i:i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def tail(counts_after: np.ndarray, threshold: int) -> dict:
    """MetaCLIP's tail: the concepts kept with fewer than ``threshold`` captions (all of theirs
    kept), their share of the concepts that have any and of the captions."""
    present = counts_after[counts_after > 0]
    below = present[present < threshold]
    return {"concepts": int(len(present)), "tail_concepts": int(len(below)),
            "tail_share_of_concepts": len(below) / max(len(present), 1),
            "tail_share_of_captions": float(below.sum()) / max(float(present.sum()), 1.0),
            "at_threshold": int((present >= threshold).sum())}
