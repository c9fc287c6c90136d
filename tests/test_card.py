"""The dataset card of a run: what the Hub and ``datasets`` read of it, and bad card input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_the_offline_run_has_a_card_that_the_hub_and_datasets_read(offline_run, tmp_path):
    import datasets
    from huggingface_hub import DatasetCard

    run, summaries = offline_run
    folder = Path(run.ref.root) / run.ref.run_id
    card = DatasetCard.load(folder / "README.md")  # at the run folder's root: the repository's card
    meta = card.data.to_dict()
    assert meta["license"] == "unknown" and meta["size_categories"] == ["n<1K"]
    assert {c["config_name"] for c in meta["configs"]} == {"default", "shards"}
    assert "text-to-image" in meta["task_categories"] and meta["pretty_name"].startswith("SynthCLIP offline")
    assert (folder / "card" / "README.md").read_bytes() == (folder / "README.md").read_bytes()
    for section in ("## How it was made", "## Captions", "## Images", "## Lineage", "## Cost", "## Known limitations",
                    "## Citation", "card/story.png"):
        assert section in card.text, section
    assert "price table `list-2026-12`" in card.text and "| images |" in card.text.split("## Cost")[1]

    loaded = datasets.load_dataset(str(folder), "default", split="train", cache_dir=str(tmp_path / "hf"))
    assert isinstance(loaded.features["jpg"], datasets.Image)
    images = [p for p in (folder / "images").glob("part-*.parquet")]
    assert loaded.num_rows == sum(pq.ParquetFile(p).metadata.num_rows for p in images) == run.require("images").rows
    assert loaded[0]["jpg"].size == (loaded[0]["width"], loaded[0]["height"])

    stats = json.loads(run.store.read_bytes("card", "stats.json"))
    assert stats["counts"]["images"] == loaded.num_rows
    assert 0 < stats["images"]["sampled"] <= loaded.num_rows and stats["images"]["near_duplicates"]["hashed_here"] == 0
    assert stats["images"]["alignment"] > stats["images"]["shuffled_floor"]  # the run's CLIP learned its pairs
    assert stats["captions"]["naming_share"] > 0.9 and stats["captions"]["kept"] == run.require("balanced").notes["kept"]
    print("card:", json.dumps(summaries["card"]["notes"], indent=1))


def test_bad_card_input_is_one_line_and_leaves_the_run_as_it_was(offline_run, tmp_path):
    from commands import one_line_error, synthclip

    run, _ = offline_run
    root = tmp_path / "root"
    shutil.copytree(Path(run.ref.root) / run.ref.run_id, root / run.ref.run_id)
    base = yaml.safe_load((REPO / "configs" / "offline.yaml").read_text())

    def forked(card: dict) -> tuple:
        config = tmp_path / f"card-{len(card)}-{next(iter(card))}.yaml"
        config.write_text(yaml.safe_dump({**base, "card": card}))
        return synthclip("run", str(config), "--run-id", run.ref.run_id, "--root", str(root), "--fork")

    one_line_error(forked({"concepts": 5000}), "card.concepts: 5000 asked", "concepts with kept captions")
    one_line_error(forked({"per_concept": 500}), "card.per_concept: 500 asked", "images")
    one_line_error(forked({"scorer": "NoSuchArch:nothing"}), "card.scorer", "unknown open_clip architecture")
    one_line_error(forked({"scorer": "ViT-B-32:openai"}), "card.scorer", "cannot resolve")  # no hub here: cannot load
    checked = synthclip("verify", run.ref.run_id, "--root", str(root))
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    assert sorted(p.name for p in root.iterdir()) == [run.ref.run_id]  # refused before a fork was made
