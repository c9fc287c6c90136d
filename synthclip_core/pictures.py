"""Pictures people would rather look at than read: matplotlib figures as PNG bytes to commit."""

from __future__ import annotations

import io
from typing import Any


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display on workers and servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    return buffer.getvalue()


def concept_histogram(before, after, threshold: int) -> bytes:
    """Balancing's picture: a log-log histogram of captions per concept (concepts with at least
    one caption), before and after, with the cap ``t``."""
    import numpy as np

    plt = pyplot()
    top = max(int(before.max(initial=1)), 1)
    bins = np.unique(np.logspace(0, np.log10(top + 1), num=40).astype(int))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for values, label, color in ((before, "before balancing", "#999999"), (after, "after balancing", "#1f77b4")):
        present = values[values > 0]
        if len(present):
            ax.hist(present, bins=bins, histtype="step", linewidth=2, label=label, color=color)
    ax.axvline(threshold, color="#d62728", linestyle="--", linewidth=1, label=f"t = {threshold}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("captions matching the concept")
    ax.set_ylabel("concepts")
    ax.set_title("Concept frequency before and after balancing")
    ax.legend(frameon=False)
    fig.tight_layout()
    return figure_png(fig)


def contact_sheet(rows: list[dict], columns: int = 6) -> bytes:
    """Rendered images (``jpg``) in a grid, each under its caption."""
    import textwrap

    from PIL import Image

    plt = pyplot()
    grid_rows = max(1, -(-len(rows) // columns))
    fig, axes = plt.subplots(grid_rows, columns, figsize=(columns * 2.2, grid_rows * 2.7), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows):
        ax.imshow(Image.open(io.BytesIO(row["jpg"])).convert("RGB"))
        ax.set_title("\n".join(textwrap.wrap(row["caption"], 28)[:4]), fontsize=6.5)
    fig.tight_layout()
    return figure_png(fig)


def gap_histogram(before, after, target: int) -> bytes:
    """The closed loop's picture: concepts by kept captions, 0 to ``target`` (the last bar: at
    least ``target``), before and after the loop; concepts with none show, as a log plot cannot."""
    import numpy as np

    plt = pyplot()
    edges = np.arange(target + 1)
    count = lambda values: np.bincount(np.minimum(values, target), minlength=target + 1)  # noqa: E731
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    width = 0.4
    ax.bar(edges - width / 2, count(before), width, label="after balancing", color="#999999")
    ax.bar(edges + width / 2, count(after), width, label="after the closed loop", color="#1f77b4")
    ax.set_xticks(edges, [str(k) for k in edges[:-1]] + [f">= {target}"])
    ax.set_xlabel("kept captions naming the concept")
    ax.set_ylabel("concepts")
    ax.set_title("Concepts under the target, before and after the closed loop")
    ax.legend(frameon=False)
    fig.tight_layout()
    return figure_png(fig)
