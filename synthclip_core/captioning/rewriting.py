"""Rewrites of a kept caption, and the rule that decides which count.

LaCLIP's recipe: an LLM rewrites every caption a few times and training draws one of an image's
texts at each epoch. A rewrite counts only where it still names its caption's concept, as
balancing's match finds it (otherwise it would teach the image a text balancing never counted for
that concept), and where it says something its caption and its earlier rewrites did not (exact
text, as balancing finds duplicates). Dropped rewrites keep their row, with the reason.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from ..curation.balancing import names_concept

NOT_NAMING = "not_naming"  # the concept is no longer in the text
DUPLICATE = "duplicate"  # the caption's own text, or an earlier rewrite's
VETTING_REASONS = (NOT_NAMING, DUPLICATE)


def vet(rows: list[dict], captions: dict[str, str], case_sensitive: bool = True) -> Counter:
    """Drop (in place) the cleaned rewrites that do not count: rows in ``k`` order per caption,
    ``captions`` the original text by caption id. Returns the rows dropped by reason."""
    seen: dict[str, set[str]] = {}
    dropped: Counter = Counter()
    for row in rows:
        if row["reject_reason"]:
            continue
        texts = seen.setdefault(row["caption_id"], {captions[row["caption_id"]]})
        if not names_concept(row["rewrite"], row["concept"], case_sensitive):
            reason = NOT_NAMING
        elif row["rewrite"] in texts:
            reason = DUPLICATE
        else:
            texts.add(row["rewrite"])
            continue
        row.update(rewrite="", reject_reason=reason)
        dropped[reason] += 1
    return dropped


def kept_by_caption(table: pa.Table) -> dict[str, list[str]]:
    """The rewrites that count, by caption id, in ``k`` order (a rewrites partition's rows)."""
    out: dict[str, list[str]] = {}
    columns = table.select(["caption_id", "k", "rewrite", "reject_reason"]).to_pydict()
    for cap, _, text, reason in sorted(zip(*columns.values()), key=lambda r: (r[0], r[1])):
        if not reason:
            out.setdefault(cap, []).append(text)
    return out


def texts_per_image(kept: int, captions: int) -> float:
    """Texts an image trains on, on average: its caption and the rewrites of it that count."""
    return 1 + kept / captions if captions else 1.0


def texts_trained_on(run) -> float:
    """Texts an image trained on, on average: its caption alone, or with ``train.texts: any`` its
    caption and the rewrites that count."""
    if getattr(run.config.train, "texts", "original") != "any" or not run.has("rewrites"):
        return 1.0
    return float(run.require("rewrites").notes.get("texts_per_image", 1.0))


def texts_note(run) -> str | None:
    """A report's line on the texts trained on, where a run has rewrites or draws among texts."""
    if not run.has("rewrites") and getattr(run.config.train, "texts", "original") == "original":
        return None
    if run.config.train.texts == "original":
        return ("Texts per training image: 1 (its caption; the run's rewrites are in the shards, unused: "
                "train.texts is original).")
    if not run.has("rewrites"):
        return "Texts per training image: one drawn per epoch from each sample's listed texts (train.texts: any)."
    return (f"Texts per training image: {texts_trained_on(run):.2f} on average (its caption and its rewrites that "
            f"count, one drawn per epoch: train.texts: any).")
