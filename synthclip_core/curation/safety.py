"""Concepts screened before captioning: a blocklist of terms, a text classifier, or both.

The paper found 3.15% of MetaCLIP's concepts unsafe; an unsafe concept left in the bank is written
about, rendered and trained on. A concept is dropped when it holds a blocked term as whole words
(MetaCLIP's substring rule, any case: "gun" blocks "gun dog", not "gunwale"), or when the
classifier scores one of its unsafe labels at least ``threshold``. Each dropped concept keeps its
reason, for the run's report.
"""

from __future__ import annotations

import hashlib

import fsspec

from ..errors import ConfigError
from .balancing import ConceptMatcher


def read_blocklist(uri: str) -> list[str]:
    """The blocked terms of a text file, one per line, ``#`` starting a comment."""
    try:
        with fsspec.open(uri, "rt", encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except FileNotFoundError:
        raise ConfigError(f"concepts.safety.blocklist: no file {uri}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"concepts.safety.blocklist: {uri} cannot be read ({exc})") from None
    terms = [" ".join(line.split("#", 1)[0].split()) for line in lines]
    terms = list(dict.fromkeys(t for t in terms if t))
    if not terms:
        raise ConfigError(f"concepts.safety.blocklist: {uri} holds no terms")
    return terms


def blocklist_sha256(uri: str) -> str:
    """What the fingerprint covers of a blocklist: its terms, not its file's name."""
    return hashlib.sha256("\n".join(read_blocklist(uri)).encode()).hexdigest()


def screen(concepts: list[str], safety, commit: str | None = None) -> dict[int, str]:
    """The unsafe concepts among ``concepts`` (``config.ConceptSafety``): index -> reason; a hub
    classifier is loaded at ``commit``, the one its run pinned."""
    unsafe: dict[int, str] = {}
    if safety.blocklist:
        terms = read_blocklist(safety.blocklist)
        matcher = ConceptMatcher(terms, case_sensitive=False)
        for index, concept in enumerate(concepts):
            if found := matcher.match(concept):
                unsafe[index] = "blocklist: " + ", ".join(terms[i] for i in found)
    if safety.classifier:
        rest = [i for i in range(len(concepts)) if i not in unsafe]
        for i, reason in zip(rest, classify([concepts[i] for i in rest], safety, commit)):
            if reason:
                unsafe[i] = reason
    return dict(sorted(unsafe.items()))


def classify(texts: list[str], safety, commit: str | None = None) -> list[str | None]:
    """Per text, ``classifier: LABEL SCORE`` where an unsafe label scores at least the threshold."""
    from transformers import pipeline

    from ..tiny_models import resolve_model

    try:
        classifier = pipeline("text-classification", model=resolve_model(safety.classifier), revision=commit, top_k=None,
                              device="cpu")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"concepts.safety.classifier: cannot load {safety.classifier!r} as a text classifier "
                          f"({' '.join(str(exc).split())[:200]})") from None
    wanted = set(safety.unsafe_labels)
    known = set(classifier.model.config.id2label.values())
    if not wanted & known:
        raise ConfigError(f"concepts.safety.unsafe_labels {sorted(wanted)}: the classifier {safety.classifier} has "
                          f"labels {sorted(known)}")
    out: list[str | None] = []
    for start in range(0, len(texts), safety.batch_size):
        for scores in classifier(texts[start:start + safety.batch_size], batch_size=safety.batch_size):
            hits = [s for s in scores if s["label"] in wanted and s["score"] >= safety.threshold]
            best = max(hits, key=lambda s: s["score"]) if hits else None
            out.append(f"classifier: {best['label']} {best['score']:.3f}" if best else None)
    return out
