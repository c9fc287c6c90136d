"""Models side by side on the same benchmarks: the paper's Tables 1, 2 and 7, for your own data.

Each entry is a label and a model: ``run:ID`` (the final checkpoint of a run or a training job under
the root; the flow resolves it), a checkpoint file or URI, or ``local-dir:PATH``. Every model is
evaluated on the same datasets, so the table compares like with like; each row also says what the
model was trained on (sources and samples seen) and what it started from, read from its training
summary.
"""

from __future__ import annotations

from .mistakes import mistakes
from .mistakes import render as render_mistakes

NO_PROVENANCE = {"trained_on": "", "started_from": ""}  # a checkpoint from elsewhere
# What any two runs differ in without being different experiments: names, roots, pinned inputs.
_NOT_A_DIFFERENCE = ("name", "root", "fingerprint_scheme", "concepts.sha256", "captions.commit", "images.commit")


def config_differences(first, other) -> str:
    """What ``other``'s config sets otherwise than ``first``'s (``section.field: value``), or ``-``.
    A synthetic run beside a training job is compared on the sections both have, after its kind."""
    from ..config import differences

    found = [d for d in differences(first, other) if not d.startswith(_NOT_A_DIFFERENCE)]
    said = [f"{d.split(':', 1)[0]}: {d.rsplit(' -> ', 1)[-1]}" for d in found]
    if type(first) is not type(other):
        said.insert(0, _KIND.get(type(other).__name__, type(other).__name__))
    return "; ".join(said) or "-"


_KIND = {"JobConfig": "a training job", "RunConfig": "a synthetic run"}


def provenance(training_summary: dict) -> dict:
    """What a run's model was trained on and started from, from its training summary."""
    sources = training_summary.get("sources") or []
    trained_on = ", ".join(f"{s['name']} x{s['weight']:g} ({s['samples_seen']} seen)" for s in sources) or "the run's shards"
    parent = training_summary.get("parent") or {}
    started = f"run:{parent['run_id']}" if parent.get("run_id") else parent.get("uri", "random init")
    return {"trained_on": trained_on, "started_from": started}


# What a run's dataset card says of its data, side by side with its model's accuracy.
CARD_COLUMNS = {"alignment": "alignment", "shuffled_floor": "floor", "image_vendi": "image Vendi",
                "caption_vendi": "caption Vendi", "near_duplicate_share": "near-duplicates",
                "naming_share": "naming its concept", "tail_share": "tail concepts", "distinct_2": "distinct bigrams"}


def comparison(entries: dict[str, tuple[str, dict]], reports: dict[str, dict], cards: dict[str, dict] | None = None) -> dict:
    """One row per model, one column per dataset/task/metric; ``cards`` are the dataset cards'
    headline figures of the runs among them (``card`` stage notes)."""
    columns: list[str] = []
    rows = []
    for label, (checkpoint, provenance) in entries.items():
        row = {"model": label, **provenance, "checkpoint": checkpoint, "sha256": reports[label]["checkpoint_sha256"]}
        for r in reports[label]["results"]:
            column = f"{r['dataset']} {r['task']} {r['metric']}"
            if column not in columns:
                columns.append(column)
            row[column] = r["value"]
        rows.append(row)
    return {"columns": columns, "rows": rows, "reports": reports, "mistakes": mistakes(reports), "cards": cards or {}}


def render_comparison(table: dict, title: str = "Models side by side") -> str:
    runs = any("differs" in row for row in table["rows"])
    head = ["model", *(["differs from the first"] if runs else []), "started from", "trained on", *table["columns"]]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in table["rows"]:
        values = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else "" for c in table["columns"]]
        differs = [row.get("differs", "")] if runs else []
        lines.append("| " + " | ".join([row["model"], *differs, row["started_from"] or "", row["trained_on"] or "", *values]) + " |")
    lines += ["", "Every model evaluated on the same data; checkpoints and their sha256 in `comparison.json`."]
    lines += render_cards(table.get("cards") or {})
    for dataset in table.get("mistakes", {}):
        lines += ["", f"![confusions on {dataset}]({mistakes_picture(dataset)})"]
    return "\n".join(lines) + "\n" + render_mistakes(table.get("mistakes", {}))


def render_cards(cards: dict[str, dict]) -> list[str]:
    """The runs' data side by side, from their dataset cards (docs/card.md); said when their
    scorers differ, since alignment and diversity are then measured with other yardsticks."""
    if not cards:
        return []
    head = ["model", "scorer", *CARD_COLUMNS.values()]
    lines = ["", "## Their data, from the dataset cards", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, card in cards.items():
        values = [_card_value(key, card.get(key)) for key in CARD_COLUMNS]
        lines.append("| " + " | ".join([label, str(card.get("scorer", "")), *values]) + " |")
    if len({card.get("scorer") for card in cards.values()}) > 1:
        lines += ["", "The cards were measured with different scorers: set one `card.scorer` to compare alignment "
                      "and diversity across runs."]
    return lines


def _card_value(key: str, value) -> str:
    if not isinstance(value, (int, float)):
        return ""
    return f"{value:.1%}" if key.endswith("share") else f"{value:.3f}" if key == "distinct_2" else f"{value:.2f}"


def mistakes_picture(dataset: str) -> str:
    """The file of a dataset's confusions picture beside the comparison."""
    import re

    return "mistakes-" + re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-") + ".png"
