"""MetaCLIP-style balancing of the caption set over concepts.

Matching follows MetaCLIP's substring rule: the caption is padded with a space on each side, the
marks ``, . ; : ? ! ``\u0060`` are surrounded by spaces, tab/newline/CR become spaces, and concept ``e``
matches when ``" e "`` occurs. All concepts are searched at once with an Aho-Corasick automaton.
Then ``count[e]`` is the number of captions matching ``e``, ``p[e] = min(1, t / count[e])``, and a
caption is kept when any of its concepts passes its draw. Draws are pure functions of (run seed,
caption id, concept id), so the result is independent of partitioning, workers and order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import ahocorasick

from .ids import unit_draw

MARKS = ",.;:?!`"


def prepare_text(text: str, case_sensitive: bool = True) -> str:
    text = f" {text} "
    for mark in MARKS:
        text = text.replace(mark, f" {mark} ")
    for ws in "\t\n\r":
        text = text.replace(ws, " ")
    return text if case_sensitive else text.lower()


class ConceptMatcher:
    """All concepts of a bank in one automaton; ``match`` returns sorted concept indices."""

    def __init__(self, concepts: list[str], case_sensitive: bool = True):
        self.case_sensitive = case_sensitive
        self.automaton = ahocorasick.Automaton()
        for index, concept in enumerate(concepts):
            key = f" {concept if case_sensitive else concept.lower()} "
            # Two bank entries that fold to the same key (case-insensitive mode) share a match list.
            existing = self.automaton.get(key, None)
            self.automaton.add_word(key, (existing or ()) + (index,))
        self.automaton.make_automaton()

    def match(self, caption: str) -> list[int]:
        found: set[int] = set()
        for _, indices in self.automaton.iter(prepare_text(caption, self.case_sensitive)):
            found.update(indices)
        return sorted(found)


def keep_probabilities(counts: Counter, threshold: int) -> dict[int, float]:
    return {e: 1.0 if n <= threshold else threshold / n for e, n in counts.items()}


def is_kept(seed: int, caption_id: str, matched_ids: list[str], probs: list[float]) -> bool:
    return any(unit_draw(seed, "balance", caption_id, cid) < p for cid, p in zip(matched_ids, probs))


def split_of(seed: int, sample_id: str, eval_fraction: float) -> str:
    return "eval" if unit_draw(seed, "split", sample_id) < eval_fraction else "train"


@dataclass
class BalanceResult:
    rows: list[dict]  # kept captions, in input order
    count_before: Counter  # concept index -> matching captions (after clean-up)
    count_after: Counter
    probabilities: dict[int, float]
    dropped: dict[str, int] = field(default_factory=dict)


def balance_captions(
    captions: list[dict],
    concepts: list[str],
    concept_ids: list[str],
    threshold: int,
    seed: int,
    eval_fraction: float,
    case_sensitive: bool = True,
) -> BalanceResult:
    """Balance caption rows (dicts with caption_id, concept_id, caption), given in input order."""
    matcher = ConceptMatcher(concepts, case_sensitive)
    dropped = {"empty": 0, "duplicate": 0, "no_match": 0, "sampled_out": 0}
    seen: set[str] = set()
    matched: list[tuple[dict, list[int]]] = []
    for row in captions:
        text = row["caption"]
        if not text:
            dropped["empty"] += 1
            continue
        if text in seen:  # SynthCLIP clean-up: exact duplicates, first occurrence wins
            dropped["duplicate"] += 1
            continue
        seen.add(text)
        hits = matcher.match(text)
        if not hits:
            dropped["no_match"] += 1
            continue
        matched.append((row, hits))

    before = Counter(e for _, hits in matched for e in hits)
    probs = keep_probabilities(before, threshold)
    after: Counter = Counter()
    kept = []
    for row, hits in matched:
        ids = [concept_ids[e] for e in hits]
        if not is_kept(seed, row["caption_id"], ids, [probs[e] for e in hits]):
            dropped["sampled_out"] += 1
            continue
        after.update(hits)
        kept.append({
            "caption_id": row["caption_id"],
            "concept_id": row["concept_id"],
            "caption": row["caption"],
            "matched_concept_ids": ids,
            "split": split_of(seed, row["caption_id"], eval_fraction),
        })
    return BalanceResult(kept, before, after, probs, dropped)
