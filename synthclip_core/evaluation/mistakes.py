"""What each model gets wrong on a zero-shot task: per class, how many it got right of how many;
its most frequent confusions; between two models, the classes whose accuracy differs most; and
what two confused classes share (their words). Pure: counts in, plain data out."""

from __future__ import annotations

from collections import Counter

from ..curation.balancing import concept_words
from ..pictures import figure_png, pyplot

CONFUSIONS_KEPT = 50  # per model and task, in its report


def class_counts(labels: list[int], predicted: list[int], classnames: list[str]) -> dict[str, list[int]]:
    """Per class with samples: [right, samples]."""
    counts: dict[str, list[int]] = {}
    for label, guess in zip(labels, predicted):
        entry = counts.setdefault(classnames[label], [0, 0])
        entry[0] += int(label == guess)
        entry[1] += 1
    return counts


def confusions(labels: list[int], predicted: list[int], classnames: list[str], limit: int = CONFUSIONS_KEPT) -> list[dict]:
    """The most frequent (true class -> predicted class) mistakes, with counts and what the two share."""
    found = Counter((label, guess) for label, guess in zip(labels, predicted) if label != guess)
    return [{"true": classnames[t], "predicted": classnames[p], "count": n, "shared": shared(classnames[t], classnames[p])}
            for (t, p), n in sorted(found.items(), key=lambda item: (-item[1], item[0]))[:limit]]


def shared(first: str, second: str) -> str:
    """What two class names have in common: their shared words, or '-'."""
    return " ".join(sorted(concept_words(first) & concept_words(second))) or "-"


def differences(a: dict[str, list[int]], b: dict[str, list[int]], limit: int = 10) -> list[dict]:
    """The classes both models were measured on whose accuracy differs most (b minus a), with the
    counts behind each number; ties go to the class with more samples."""
    rows = []
    for name in sorted(set(a) & set(b)):
        (ra, na), (rb, nb) = a[name], b[name]
        rows.append({"class": name, "a": f"{ra}/{na}", "b": f"{rb}/{nb}", "difference": rb / nb - ra / na, "samples": na})
    rows.sort(key=lambda r: (-abs(r["difference"]), -r["samples"], r["class"]))
    return rows[:limit]


def zeroshot_details(report: dict) -> dict[str, dict]:
    """A report's zero-shot details by dataset, where they carry per-class counts."""
    return {d["dataset"]: d for d in report.get("details", []) if d.get("task") == "zeroshot" and "class_counts" in d}


def mistakes(models: dict[str, dict]) -> dict:
    """For models' reports (label -> report.json): per dataset, each model's confusions and, for
    each pair, the classes whose accuracy differs most."""
    details = {label: zeroshot_details(report) for label, report in models.items()}
    datasets = sorted(set().union(*(set(d) for d in details.values()))) if details else []
    out = {}
    labels = list(models)
    for dataset in datasets:
        have = [label for label in labels if dataset in details[label]]
        out[dataset] = {
            "confusions": {label: details[label][dataset].get("confusions", [])[:10] for label in have},
            "pairs": [{"a": a, "b": b, "classes": differences(details[a][dataset]["class_counts"],
                                                               details[b][dataset]["class_counts"])}
                      for i, a in enumerate(have) for b in have[i + 1:]],
        }
    return out


def render(found: dict) -> str:
    """The mistakes in markdown: a table of differing classes per pair, then each model's confusions."""
    lines = []
    for dataset, entry in found.items():
        lines += ["", f"## What each model gets wrong on {dataset}", ""]
        for pair in entry["pairs"]:
            lines += [f"Classes whose top-1 differs most, `{pair['a']}` against `{pair['b']}` (right/samples):", "",
                      f"| class | {pair['a']} | {pair['b']} | difference |", "| --- | --- | --- | --- |"]
            lines += [f"| {r['class']} | {r['a']} | {r['b']} | {r['difference']:+.2f} |" for r in pair["classes"]]
            lines.append("")
        for label, rows in entry["confusions"].items():
            if rows:
                said = "; ".join(f"{r['true']} -> {r['predicted']} ({r['count']}; shared: {r['shared']})" for r in rows)
                lines.append(f"- `{label}`, most frequent confusions: {said}")
    return "\n".join(lines) + "\n" if lines else ""


def mistakes_png(found: dict, dataset: str) -> bytes:
    """Per model, its most frequent confusions on ``dataset`` as bars (one panel per model)."""
    plt = pyplot()
    entry = found[dataset]["confusions"]
    panels = [(label, rows[:8]) for label, rows in entry.items() if rows] or [("no mistakes", [])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), dpi=110, squeeze=False)
    for ax, (label, rows) in zip(axes[0], panels):
        names = [f"{r['true']} -> {r['predicted']}" for r in rows][::-1]
        ax.barh(range(len(rows)), [r["count"] for r in rows][::-1], color="#d62728")
        ax.set_yticks(range(len(rows)), [n[:38] for n in names], fontsize=7)
        ax.set_xlabel("images")
        ax.set_title(label, fontsize=9)
    fig.suptitle(f"Most frequent confusions on {dataset}", fontsize=10)
    fig.tight_layout()
    return figure_png(fig)
