"""`synthclip compare` of runs that differ only in the text-to-image model (or the closed loop): every
model evaluated on the same held-out splits, one table that says what each run changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from synthclip_core.evaluation.compare import comparison, config_differences, render_comparison
from synthclip_core.pipeline import config_from_dict

REPO = Path(__file__).resolve().parents[1]


def _micro(**images) -> dict:
    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["images"].update(images)
    return data


def test_the_table_says_what_each_run_changed():
    first = config_from_dict(_micro())
    other = config_from_dict({**_micro(model="tiny/sdxl", scheduler="default"), "name": "other", "root": "elsewhere"})
    assert config_differences(first, first) == "-"
    assert config_differences(first, other) == "images.model: 'tiny/sdxl'; images.scheduler: 'default'"
    entries = {"a": ("ckpt-a", {"trained_on": "x", "started_from": "y", "differs": "-"}),
               "b": ("ckpt-b", {"trained_on": "x", "started_from": "y", "differs": "images.model: 'tiny/sdxl'"})}
    reports = {label: {"checkpoint_sha256": "0" * 64, "results": [
        {"dataset": "heldout:a", "task": "zeroshot", "metric": "top1", "value": v}]} for label, v in (("a", 0.5), ("b", 0.25))}
    markdown = render_comparison(comparison(entries, reports))
    assert "| model | differs from the first |" in markdown and "| b | images.model: 'tiny/sdxl' |" in markdown


def test_a_run_and_a_training_job_are_compared_on_what_they_share(tmp_path):
    """A synthetic run beside a training job (fine-tuned or mixed): the table names the kinds and
    what their shared sections set otherwise, and never fails on a field only one of them has."""
    from synthclip_core.pipeline import job_config_from_dict

    run = config_from_dict(_micro())
    job = job_config_from_dict({"name": "real-only", "train": {**yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())["train"],
                                                          "sources": [{"name": "real", "uri": str(tmp_path)}]}})
    found = config_differences(run, job)
    assert found.startswith("a training job") and "train.sources" in found
    assert config_differences(job, run).startswith("a synthetic run")
    assert config_differences(job, job) == "-"


@pytest.mark.slow  # forks of a micro run (one through training), and a comparison (three CLI commands)
def test_runs_of_two_text_to_image_models_side_by_side(micro_reference, tmp_path):
    from commands import synthclip

    store, _ = micro_reference
    root = tmp_path / "root"
    shutil.copytree(Path(store.root) / "reference", root / "reference")
    forks = {}
    for label, images in (("sd", {}), ("sdxl", {"model": "tiny/sdxl", "scheduler": "default"})):
        config = tmp_path / f"micro-{label}.yaml"  # with its dataset card (micro.yaml has none)
        config.write_text(yaml.safe_dump({**_micro(**images), "card": {"enabled": True}}))
        before = {p.name for p in root.iterdir()}
        forked = synthclip("run", str(config), "--run-id", "reference", "--root", str(root), "--fork", timeout=900)
        assert forked.returncode == 0, forked.stderr[-2000:]
        (forks[label],) = {p.name for p in root.iterdir()} - before
    out = tmp_path / "comparison"
    result = synthclip("compare", f"sd=run:{forks['sd']}", f"sdxl=run:{forks['sdxl']}", "--held-out-of", forks["sd"],
                       "--held-out-of", forks["sdxl"], "--root", str(root), "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    table = json.loads((out / "comparison.json").read_text())
    rows = {r["model"]: r for r in table["rows"]}
    assert rows["sd"]["differs"] == "-" and rows["sdxl"]["differs"] == "images.model: 'tiny/sdxl'; images.scheduler: 'default'"
    for run_id in forks.values():
        assert f"heldout:{run_id} zeroshot top1" in table["columns"]
        assert all(f"heldout:{run_id} zeroshot top1" in r for r in rows.values())
    # their data side by side, from their dataset cards (each measured with its own run's CLIP)
    assert set(table["cards"]) == {"sd", "sdxl"}
    assert all(card["image_vendi"] >= 1 and card["scorer"] for card in table["cards"].values())
    markdown = (out / "comparison.md").read_text()
    assert "## Their data, from the dataset cards" in markdown and "different scorers" in markdown
    print(markdown)
