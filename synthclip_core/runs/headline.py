"""What a finished run made and what it proved, in a few lines: the end of ``synthclip run`` and
the last artifact of its flow.

Read from the stages' completion records (and the evaluation report for its sample counts), so
it costs a few small reads and says nothing a stage did not commit. A stage the run lacks or has
not finished gives no line.
"""

from __future__ import annotations

import json

from .lifecycle import Run

HELD_OUT = "synthetic-heldout"


def headline(run: Run) -> list[tuple[str, str]]:
    """(what, figures) pairs, in the order a reader asks: what was made, what the CLIP learned,
    what the closed loop and the card say."""
    done = {name: run.completion(name) for name in run.names}
    lines = []
    if made := _made(done):
        lines.append(("pairs", made))
    lines += _evaluation(run, done.get("eval"))
    if (topup := done.get("topup")) is not None:
        lines.append(("closed loop", _closed_loop(topup.notes)))
    if (card := done.get("card")) is not None:
        lines.append(("card", _card(card.notes)))
    return lines


def markdown(run: Run) -> str:
    """The headline as the flow's final artifact."""
    rows = "\n".join(f"| {what} | {figures} |" for what, figures in headline(run))
    return (f"## What {run.kind} {run.ref.run_id} made and proved\n\n| | |\n| --- | --- |\n{rows}\n"
            if rows else f"## {run.kind} {run.ref.run_id}\n\nNo stage with figures to show has finished.\n")


def _made(done: dict) -> str:
    parts = []
    if (captions := done.get("captions")) is not None:
        coverage = captions.notes.get("coverage", {})
        named = coverage.get("naming_their_concept")
        parts.append(f"{captions.rows:,} captions written"
                     + (f" ({named:,} name their concept)" if named is not None else ""))
    if (balanced := done.get("balanced")) is not None:
        parts.append(f"{balanced.rows:,} kept by balancing (t = {balanced.notes.get('threshold', '?')})")
    if (images := done.get("images")) is not None:
        line = f"{images.rows:,} image-caption pairs made"
        if (shards := done.get("shards")) is not None:
            line += f", {shards.rows:,} to train on and {images.rows - shards.rows:,} held out"
        parts.append(line)
    return "; ".join(parts)


def _evaluation(run: Run, evaluation) -> list[tuple[str, str]]:
    if evaluation is None:
        return []
    notes, samples = evaluation.notes, _samples(run)
    lines = []
    datasets = sorted({key.split("/")[0] for key in notes if key.count("/") == 2},
                      key=lambda d: (d != HELD_OUT, d))
    for dataset in datasets:
        label = "held-out" if dataset == HELD_OUT else dataset
        top1 = notes.get(f"{dataset}/zeroshot/top1")
        if top1 is not None:
            chance = notes.get(f"{dataset}/zeroshot/chance_top1")
            versus = f" against chance {chance:.1%} ({top1 / chance:.0f}x)" if chance else ""
            top5 = notes.get(f"{dataset}/zeroshot/top5")
            lines.append((f"{label} zero-shot", f"top-1 {top1:.1%}{versus}" + (f", top-5 {top5:.1%}" if top5 is not None else "")))
        i2t, t2i = notes.get(f"{dataset}/retrieval/image_to_text_R@5"), notes.get(f"{dataset}/retrieval/text_to_image_R@5")
        if i2t is not None and t2i is not None:
            n = samples.get((dataset, "retrieval"))
            chance = f" (chance {min(1.0, 5 / n):.1%} on {n:,} pairs)" if n else ""
            lines.append((f"{label} retrieval", f"R@5 image to text {i2t:.1%}, text to image {t2i:.1%}{chance}"))
    return lines


def _samples(run: Run) -> dict[tuple[str, str], int]:
    """(dataset, task) -> how many samples the report scored (for retrieval's chance)."""
    try:
        report = json.loads(run.store.read_bytes("eval", "report.json"))
    except Exception:  # noqa: BLE001 (a run without the report still has its figures; chance is left out)
        return {}
    return {(r["dataset"], r["task"]): int(r["samples"]) for r in report.get("results", []) if r.get("samples")}


def _closed_loop(notes: dict) -> str:
    target, before, after = notes["target"], notes["before"], notes["after"]
    return (f"concepts with at least {target} kept captions: {before['at_least_target']:,} before, "
            f"{after['at_least_target']:,} after ({notes['asked']:,} captions asked, {notes['kept']:,} kept; "
            f"stopped: {notes['stop']})")


def _card(notes: dict) -> str:
    parts = []
    if notes.get("naming_share") is not None:
        parts.append(f"{notes['naming_share']:.0%} of kept captions name their concept")
    if notes.get("alignment") is not None:
        parts.append(f"alignment {notes['alignment']:.1f} against a shuffled floor of {notes.get('shuffled_floor', 0):.1f}")
    if notes.get("image_vendi") is not None:
        parts.append(f"median {notes['image_vendi']:.2f} distinct images per concept")
    if notes.get("near_duplicate_share") is not None:
        parts.append(f"{notes['near_duplicate_share']:.1%} near-duplicate images")
    return "; ".join(parts) + " (README.md at the run's root)"
