"""The picture of training: loss, learning rate, logit scale and throughput against the step."""

from __future__ import annotations

from ..pictures import figure_png, pyplot


def curves_png(rows: list[dict], title: str) -> bytes:
    plt = pyplot()

    steps = [r["step"] for r in rows]
    panels = (("loss", "contrastive loss"), ("lr", "learning rate"), ("logit_scale", "logit scale (exp)"),
              ("samples_per_s_per_worker", "samples/s per worker"))
    fig, axes = plt.subplots(2, 2, figsize=(9, 5.5), dpi=110, sharex=True)
    for ax, (key, label) in zip(axes.flat, panels):
        ax.plot(steps, [r[key] for r in rows], color="#1f77b4", linewidth=1.2)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    epoch_ends = [r["step"] for r, nxt in zip(rows, rows[1:]) if nxt["epoch"] != r["epoch"]]
    for ax in axes.flat:
        for step in epoch_ends:
            ax.axvline(step, color="#bbbbbb", linewidth=0.8, linestyle=":")
    for ax in axes[1]:
        ax.set_xlabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)
