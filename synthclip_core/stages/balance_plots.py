"""The picture of balancing: how many concepts have how many captions, before and after."""

from __future__ import annotations

import io

import numpy as np


def histogram_png(before: np.ndarray, after: np.ndarray, threshold: int) -> bytes:
    """A log-log histogram of captions per concept (concepts with at least one caption)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
