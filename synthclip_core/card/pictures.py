"""The card's pictures: diversity and alignment against concept frequency (the one that tells the
story), the largest near-duplicate groups, and the concepts to look at first."""

from __future__ import annotations

import io
import textwrap

import numpy as np

from ..pictures import figure_png, pyplot


def story(rows: list[dict], title: str) -> bytes:
    """Per sampled concept, against how often captions named it before balancing (log): its image
    diversity (Vendi) and its alignment above the shuffled floor, each with the median per bin, so
    the part of the bank a generator fails stands out."""
    plt = pyplot()
    from matplotlib import ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    if not rows:
        for ax in axes:
            ax.text(0.5, 0.5, "no sampled concepts", ha="center", va="center", transform=ax.transAxes)
        return figure_png(fig)
    frequency = np.maximum(np.array([r["count_before"] for r in rows], float), 1)
    held = np.array([r["held_out"] for r in rows])
    panels = ((np.array([r["image_vendi"] for r in rows]), "image diversity (Vendi score)", "#1f77b4"),
              (np.array([r["alignment"] - r["shuffled"] for r in rows]), "alignment above the floor (CLIP score)",
               "#2ca02c"))
    for ax, (values, label, color) in zip(axes, panels):
        ax.scatter(frequency[~held], values[~held], s=9, alpha=0.5, color=color, label="trained concepts")
        if held.any():
            ax.scatter(frequency[held], values[held], s=22, marker="x", color="#d62728", label="held-out concepts")
        edges = np.unique(np.logspace(0, np.log10(frequency.max() + 1), 9))
        which = np.clip(np.digitize(frequency, edges) - 1, 0, len(edges) - 2)
        centres, medians = [], []
        for b in range(len(edges) - 1):
            if (which == b).sum() >= 3:
                centres.append(np.sqrt(edges[b] * edges[b + 1]))
                medians.append(np.median(values[which == b]))
        if centres:
            ax.plot(centres, medians, color="black", linewidth=2, label="median")
        if "alignment" in label:
            ax.axhline(0, color="#999999", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("captions naming the concept before balancing")
        ax.set_ylabel(label)
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle(f"Where the generator fails the bank: {title}")
    fig.tight_layout()
    return figure_png(fig)


def lowest(rows: list[dict], sample, count: int = 4, per_concept: int = 6) -> bytes:
    """Contact sheets of the concepts with the lowest image diversity and the lowest alignment."""
    from PIL import Image

    plt = pyplot()
    by_diversity = sorted(rows, key=lambda r: (r["image_vendi"], r["concept_id"]))[:count]
    by_alignment = sorted(rows, key=lambda r: (r["alignment"] - r["shuffled"], r["concept_id"]))[:count]
    shown = [(r, f"{r['concept']}: Vendi {r['image_vendi']:.2f}") for r in by_diversity] + \
            [(r, f"{r['concept']}: {r['alignment'] - r['shuffled']:+.1f} over floor") for r in by_alignment]
    concepts = sample.column("concept_id").to_pylist()
    thumbs, captions = sample.column("thumbnail").to_pylist(), sample.column("caption").to_pylist()
    lines = max(len(shown), 1)
    fig, axes = plt.subplots(lines, per_concept, figsize=(per_concept * 1.6, lines * 1.9), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for line, (row, label) in enumerate(shown):
        idx = [i for i, c in enumerate(concepts) if c == row["concept_id"]][:per_concept]
        for column, i in enumerate(idx):
            ax = axes[line, column]
            ax.imshow(Image.open(io.BytesIO(thumbs[i])).convert("RGB"))
            ax.set_title("\n".join(textwrap.wrap(captions[i], 22)[:2]), fontsize=5.5)
        axes[line, 0].text(-0.1, 0.5, "\n".join(textwrap.wrap(label, 16)), fontsize=7, ha="right", va="center",
                           transform=axes[line, 0].transAxes)
    fig.suptitle("Lowest image diversity (top rows) and alignment (bottom rows)", fontsize=9)
    fig.tight_layout()
    return figure_png(fig)


def duplicate_groups(groups: list[dict], per_group: int = 6) -> bytes:
    """The largest near-duplicate groups, a row each: its size and some of its images."""
    from PIL import Image

    plt = pyplot()
    lines = max(len(groups), 1)
    fig, axes = plt.subplots(lines, per_group, figsize=(per_group * 1.6, lines * 1.9), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if not groups:
        axes[0, 0].text(0, 0.5, "no near-duplicates", fontsize=10, transform=axes[0, 0].transAxes)
    for line, group in enumerate(groups):
        for column, image in enumerate(group["images"][:per_group]):
            ax = axes[line, column]
            ax.imshow(Image.open(io.BytesIO(image["jpg"])).convert("RGB"))
            ax.set_title("\n".join(textwrap.wrap(image["caption"], 22)[:2]), fontsize=5.5)
        axes[line, 0].text(-0.1, 0.5, f"{group['size']:,}\nimages", fontsize=7, ha="right", va="center",
                           transform=axes[line, 0].transAxes)
    fig.suptitle("The largest near-duplicate groups", fontsize=9)
    fig.tight_layout()
    return figure_png(fig)
