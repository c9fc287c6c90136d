"""A contact sheet of a run's rendered images with their captions (PNG), for people to look at."""

from __future__ import annotations

import io
import textwrap
import time

from ..run import Run
from .common import lineage, read_table
from .images import render_parts

CONTACT_SHEET = "contact_sheet.png"


def write_contact_sheet(run: Run, count: int = 24, columns: int = 6) -> str:
    """The first ``count`` images of the run (in partition order) in a grid; returns its output name."""
    store = run.store
    if CONTACT_SHEET in store.committed("images").get("images", set()):
        return CONTACT_SHEET
    started = time.time()
    rows: list[dict] = []
    for part in render_parts(run):
        rows += read_table(store, "images", part["output"]).select(["jpg", "caption"]).to_pylist()[: count - len(rows)]
        if len(rows) >= count:
            break
    store.commit("images", CONTACT_SHEET, _grid_png(rows, columns), lineage(run.fingerprints["images"], [], started, len(rows)))
    return CONTACT_SHEET


def _grid_png(rows: list[dict], columns: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    grid_rows = max(1, -(-len(rows) // columns))
    fig, axes = plt.subplots(grid_rows, columns, figsize=(columns * 2.2, grid_rows * 2.7), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows):
        ax.imshow(Image.open(io.BytesIO(row["jpg"])).convert("RGB"))
        ax.set_title("\n".join(textwrap.wrap(row["caption"], 28)[:4]), fontsize=6.5)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
