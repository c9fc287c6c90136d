"""MetaCLIP-style balancing of the caption set over concepts: the definitions, as pure functions.

Matching follows MetaCLIP's substring rule: the caption is padded with a space on each side, the
marks ``, . ; : ? !`` and the backtick are surrounded by spaces, tab/newline/CR become spaces, and
concept ``e`` matches when ``" e "`` occurs. All concepts are searched at once with an
Aho-Corasick automaton. After the SynthCLIP clean-up (exact duplicate captions dropped, the first
by input order kept), ``count[e]`` is the number of captions matching ``e``,
``p[e] = 1 if count[e] <= t else t / count[e]``, and a caption is kept when any of its concepts
passes its draw. Draws are pure functions of (run seed, caption id, concept id), so the result is
independent of partitioning, workers and order.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..ids import unit_draw

MARKS = ",.;:?!`"


def prepare_text(text: str, case_sensitive: bool = True) -> str:
    text = f" {text} "
    for mark in MARKS:
        text = text.replace(mark, f" {mark} ")
    for ws in "\t\n\r":
        text = text.replace(ws, " ")
    return text if case_sensitive else text.lower()


def names_concept(text: str, concept: str, case_sensitive: bool = True) -> bool:
    """Whether ``text`` names ``concept`` as balancing's match finds it (whole words, marks apart):
    the rule for one concept, without the bank's automaton."""
    return f" {concept if case_sensitive else concept.lower()} " in prepare_text(text, case_sensitive)


class ConceptMatcher:
    """All concepts of a bank in one automaton; ``match`` returns sorted concept indices."""

    def __init__(self, concepts: list[str], case_sensitive: bool = True):
        import ahocorasick  # here, so the rules above import where only captions are written (the vLLM environment)

        self.case_sensitive = case_sensitive
        self.automaton = ahocorasick.Automaton()
        for index, concept in enumerate(concepts):
            key = f" {concept if case_sensitive else concept.lower()} "
            # Entries that fold to the same key (case-insensitive mode) share one match list.
            existing = self.automaton.get(key, None)
            self.automaton.add_word(key, (existing or ()) + (index,))
        self.automaton.make_automaton()

    def match(self, caption: str) -> list[int]:
        found: set[int] = set()
        for _, indices in self.automaton.iter(prepare_text(caption, self.case_sensitive)):
            found.update(indices)
        return sorted(found)


def text_hash(text: str) -> int:
    """A signed 64-bit hash of a caption's text, for finding exact duplicates across partitions."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def first_occurrences(hashes: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """True where a candidate row's hash occurs for the first time (array order = input order)."""
    rows = np.flatnonzero(candidates)
    _, first = np.unique(hashes[rows], return_index=True)
    mask = np.zeros(len(hashes), dtype=bool)
    mask[rows[first]] = True
    return mask


def keep_probabilities(counts: np.ndarray, threshold: int) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return np.where(counts <= threshold, 1.0, threshold / np.maximum(counts, 1))


def is_kept(seed: int, caption_id: str, matched_ids: list[str], probs: list[float]) -> bool:
    return any(unit_draw(seed, "balance", caption_id, cid) < p for cid, p in zip(matched_ids, probs))


def expected_counts(matched_flat: np.ndarray, lengths: np.ndarray, probs: np.ndarray, n_concepts: int) -> np.ndarray:
    """Expected captions kept per concept: each caption counts with P(kept) = 1 - prod(1 - p)."""
    if len(lengths) == 0 or len(matched_flat) == 0:
        return np.zeros(n_concepts)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    keep = 1.0 - np.multiply.reduceat(1.0 - probs[matched_flat], starts)
    return np.bincount(matched_flat, weights=np.repeat(keep, lengths), minlength=n_concepts)


def split_of(seed: int, sample_id: str, eval_fraction: float) -> str:
    return "eval" if unit_draw(seed, "split", sample_id) < eval_fraction else "train"


def held_out_concepts(seed: int, concepts: list[tuple[str, str]], count: int, composed: int = 0) -> set[str]:
    """The concepts kept out of training on purpose, from (id, name) pairs: the ``count`` lowest
    seeded draws, then ``composed`` more whose every word is a word of a concept that still trains
    (so the report can ask whether a model composes what it learned). Captions written for them
    or matching them go to the ``holdout`` split, to measure out-of-bank generalisation."""
    order = sorted(concepts, key=lambda c: (unit_draw(seed, "holdout", c[0]), c[0]))
    held = {cid for cid, _ in order[:max(count, 0)]}
    if composed > 0:
        held |= _composed(order[max(count, 0):], held, composed)
    return held


def concept_words(concept: str) -> set[str]:
    """A concept name's words, as the composition test counts them (lower case, letters and digits)."""
    import re

    return set(re.findall(r"[a-z0-9]+", concept.lower()))


def _composed(candidates: list[tuple[str, str]], held: set[str], count: int) -> set[str]:
    """Up to ``count`` of ``candidates`` (in their order) whose words all stay in trained concepts,
    each pick checked against the concepts left to train once it is held out too."""
    words = {cid: concept_words(name) for cid, name in candidates}
    support: dict[str, int] = {}  # word -> trained concepts having it
    for cid, _ in candidates:
        for word in words[cid]:
            support[word] = support.get(word, 0) + 1
    picked: set[str] = set()
    for cid, _ in candidates:
        if len(picked) == count:
            break
        mine = words[cid]
        # every word of it in another trained concept, and no earlier pick left without a word
        if mine and all(support[w] > 1 for w in mine) and all(
                support[w] - (w in mine) > 0 for p in picked for w in words[p]):
            picked.add(cid)
            for word in mine:
                support[word] -= 1
    return picked
