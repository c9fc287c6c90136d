"""A ladder's study for people: a plot per metric against pairs (log scale) with each source's
fitted curve and interval, and a report with a table per metric, the fit and the crossover."""

from __future__ import annotations

import re

import numpy as np

from ..pictures import figure_png, pyplot
from . import scaling

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def picture_name(metric: str) -> str:
    """A metric's plot file: ``heldout:r/zeroshot/top1`` -> ``heldout-r-zeroshot-top1.png``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", metric).strip("-") + ".png"


def curve_of(entry: dict) -> scaling.Curve | None:
    if "form" not in entry:
        return None
    return scaling.Curve(entry["form"], entry["params"], entry["loo_rmse"], entry["residual_sd"],
                         tuple(tuple(p) for p in entry["points"]), entry["alternatives"], entry.get("noise_sd", 0.0))


def ladder_png(metric: str, entry: dict, full_pairs: int) -> bytes:
    """Points of every source, each curve with its interval from a little below the smallest rung
    to past the full run, and the full run's size marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=110)
    every = [p for points in entry["points"].values() for p, _ in points] + [full_pairs]
    xs = np.geomspace(min(every) / 1.5, max(every) * 2, 120)
    for colour, (source, points) in zip(COLOURS, entry["points"].items()):
        if points:
            ax.scatter([p for p, _ in points], [v for _, v in points], color=colour, zorder=3, label=f"{source} (rungs)")
        curve = curve_of(entry["curves"].get(source, {}))
        if curve is not None:
            ax.plot(xs, [curve.value_at(x) for x in xs], color=colour, linewidth=1.5, label=f"{source}: {curve.form}")
            bands = np.array([curve.interval_at(x) for x in xs[::6]])
            ax.fill_between(xs[::6], bands[:, 0], bands[:, 1], color=colour, alpha=0.15, linewidth=0)
    ax.axvline(full_pairs, color="#555555", linestyle=":", linewidth=1, label="the (finished) run's pairs")
    ax.set_xscale("log")
    ax.set_xlabel("training pairs")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against pairs ({int(scaling.LEVEL * 100)}% intervals)", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def render_report(ladder_id: str, spec, sources: list[str], fit: dict) -> str:
    """The study in markdown: what was trained, the verdict, a table per metric, the crossovers."""
    lines = [f"# Scaling ladder `{ladder_id}`", "",
             f"Run `{spec.run_id}`: {spec.pairs} training pairs; rungs at {', '.join(f'{f:g}' for f in spec.fractions)} "
             f"of them, one recipe ({spec.train['model']}, {spec.train['epochs']} epochs at every size), each model "
             f"evaluated on the run's held-out split and its eval datasets. Sources: {', '.join(sources)}.", ""]
    for v in fit.get("verdicts", []):
        if "error" in v:
            lines.append(f"- {v['metric']}: no verdict ({v['error']})")
            continue
        lo, hi = v["interval"]
        said = f"- **{v['metric']}** at {v['pairs']} pairs: predicted {v['predicted']:.4f} ({lo:.4f} to {hi:.4f}), {v['formula']}"
        if "measured" in v:
            said += f"; measured {v['measured']:.4f} (error {v['measured'] - v['predicted']:+.4f})"
        if v.get("target") is not None:
            needed = v.get("pairs_for_target")
            said += f"; {v['target']:g} needs " + (f"about {needed:.3g} pairs" if needed else "more than the curve reaches")
        lines.append(said)
    if test := fit.get("back_test"):
        lo, hi = test["interval"]
        lines.append(f"- The largest rung ({test['pairs']} pairs) predicted from the smaller ones: {test['predicted']:.4f} "
                     f"({lo:.4f} to {hi:.4f}); measured {test['measured']:.4f}, error {test['error']:+.4f}")
    for metric, entry in fit["metrics"].items():
        lines += ["", f"## {metric}", "", f"![{metric}]({picture_name(metric)})", "",
                  "| pairs | " + " | ".join(sources) + " |", "| --- |" + " --- |" * len(sources)]
        sizes = sorted({p for points in entry["points"].values() for p, _ in points})
        for size in sizes:
            cells = [next((f"{v:.4f}" for p, v in entry["points"][s] if p == size), "") for s in sources]
            lines.append(f"| {size} | " + " | ".join(cells) + " |")
        lines.append("")
        for source in sources:
            curve = entry["curves"].get(source, {})
            if "form" in curve:
                alternatives = ", ".join(f"{k} {v:.4f}" for k, v in curve["alternatives"].items())
                lines.append(f"- {source}: {curve['formula']} (leave-one-out error: {alternatives})")
            else:
                lines.append(f"- {source}: no curve ({curve.get('error', 'no points')})")
        for name, rows in (entry.get("crossover") or {}).items():
            for row in rows:
                lines.append(f"- {name} at {row['pairs']} pairs ({row['value']:.4f}) is matched by synthetic pairs: "
                             f"{row['said']}")
    lines += ["", "Rungs, their checkpoints and evaluation reports: `points.json`; every curve: `fit.json`."]
    return "\n".join(lines) + "\n"
