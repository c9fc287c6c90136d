"""Concept coverage: how often training saw a concept against how well the model knows it.

For each concept: the training captions that matched it, the held-out images written for it and
the zero-shot top-1 on them. Concepts held out of training on purpose (``balanced.holdout_concepts``)
have no training captions at all and measure out-of-bank generalisation; where all of a held-out
concept's words appear in concepts that were trained on ("tiger shark" after "great white shark" and
"tiger"), recognising it means the model composed what it learned.
"""

from __future__ import annotations

import math

from ..curation.balancing import concept_words as words
from ..pictures import figure_png, pyplot


def concept_rows(concepts: list[tuple[str, str]], train_counts: dict[str, int], image_concepts: list[str],
                 correct: list[bool], held_out: set[str]) -> list[dict]:
    """One row per concept that has held-out images: counts, accuracy, whether it was held out, and
    the share of its words that concepts with training captions have."""
    hits: dict[str, list[bool]] = {}
    for concept_id, ok in zip(image_concepts, correct):
        hits.setdefault(concept_id, []).append(ok)
    trained_words = set().union(*(words(name) for cid, name in concepts if train_counts.get(cid, 0)))
    return [{"concept_id": cid, "concept": name, "train_captions": train_counts.get(cid, 0),
             "eval_images": len(hits[cid]), "top1": sum(hits[cid]) / len(hits[cid]), "held_out": cid in held_out,
             "words_trained": len(words(name) & trained_words) / max(len(words(name)), 1)}
            for cid, name in concepts if cid in hits]


def summary(rows: list[dict]) -> dict[str, float]:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    def on_images(chosen: list[dict]) -> dict[str, float]:
        images = sum(r["eval_images"] for r in chosen)
        return {"concepts": len(chosen), "images": images,
                "top1": sum(r["top1"] * r["eval_images"] for r in chosen) / images if images else float("nan")}

    inside = [r for r in rows if not r["held_out"]]
    outside = [r for r in rows if r["held_out"]]
    out = {"in_bank_concept_top1": mean([r["top1"] for r in inside]), "concepts_with_images": len(rows),
           "trained_concepts": on_images(inside)}
    if outside:
        out["out_of_bank_concept_top1"] = mean([r["top1"] for r in outside])
        out["held_out_concepts"] = on_images(outside)
        out["held_out_composed"] = on_images([r for r in outside if r["words_trained"] == 1])
    return out


def split_note(summary: dict) -> str:
    """The held-out split's zero-shot top-1 for trained and held-out concepts apart, as a table."""
    groups = [("concepts trained on, unseen images", "trained_concepts"),
              ("concepts held out of training", "held_out_concepts"),
              ("held out, every word in a trained concept", "held_out_composed")]
    lines = ["| zero-shot on the held-out split | concepts | images | top-1 |", "| --- | --- | --- | --- |"]
    for label, key in groups:
        if key in summary:
            g = summary[key]
            top1 = f"{g['top1']:.4f}" if g["images"] else "-"
            lines.append(f"| {label} | {g['concepts']} | {g['images']} | {top1} |")
    return "\n".join(lines)


def failures(rows: list[dict], limit: int = 20) -> list[dict]:
    """Concepts the model never gets right, the most-seen first."""
    failed = [r for r in rows if r["top1"] == 0]
    return sorted(failed, key=lambda r: (-r["train_captions"], r["concept"]))[:limit]


def coverage_png(rows: list[dict], title: str) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for held, colour, label in ((False, "#1f77b4", "in the training bank"), (True, "#d62728", "held out of the bank")):
        chosen = [r for r in rows if r["held_out"] == held]
        if chosen:
            ax.scatter([math.log10(r["train_captions"] + 1) for r in chosen], [r["top1"] for r in chosen],
                       s=[10 + 4 * r["eval_images"] for r in chosen], alpha=0.6, color=colour, label=label)
    ax.set_xlabel("log10(training captions matching the concept + 1)")
    ax.set_ylabel("zero-shot top-1 on its held-out images")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)
