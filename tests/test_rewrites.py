"""The rewrites stage on a real micro run (the tiny LLM rewrites its own captions): partitions that
mirror the kept captions, rewrites that name their concept and say something new, shards that
carry every text, training that draws one per epoch and the same on a resume, and bad settings
refused before any work."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from commands import open_clip_train

from synthclip_core.captioning.rewriting import kept_by_caption, texts_note
from synthclip_core.curation.balancing import names_concept
from synthclip_core.errors import ConfigError
from synthclip_core.pipeline import config_from_dict
from synthclip_core.runs.lifecycle import load_run, open_run
from synthclip_core.stages.executor import execute
from synthclip_core.storage.store import RunRef
from synthclip_core.storage.tables import read_table

REPO = Path(__file__).resolve().parents[1]
PER_CAPTION = 3


def read_kept(store, part: str) -> dict[str, list[str]]:
    return kept_by_caption(read_table(store, "rewrites", part))


def micro(**rewrites) -> dict:
    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["rewrites"] = {"per_caption": PER_CAPTION, **rewrites}
    data["train"]["texts"] = "any"
    data["card"]["enabled"] = True  # the card says how many texts an image trained on
    return data


@pytest.fixture(scope="module")
def rewritten(engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("rewrites")
    run = open_run(config_from_dict(micro()), RunRef(str(root), "rewritten"))
    summaries = {stage.name: execute(run, stage.name) for stage in run.stages if stage.name not in ("eval", "card")}
    return load_run(run.ref), summaries


def test_rewrites_mirror_the_kept_captions_and_count_what_they_drop(rewritten):
    run, summaries = rewritten
    store = run.store
    balanced = [o for o in run.require("balanced").outputs if o.startswith("part-")]
    assert run.require("rewrites").outputs == balanced  # one partition per kept-caption partition
    notes = summaries["rewrites"].notes
    train = 0
    for part in balanced:
        captions = read_table(store, "balanced", part).to_pylist()
        train_rows = [c for c in captions if c["split"] == "train"]
        train += len(train_rows)
        rows = read_table(store, "rewrites", part).to_pylist()
        assert [(r["caption_id"], r["k"]) for r in rows] == [(c["caption_id"], k) for c in train_rows for k in range(PER_CAPTION)]
        original = {c["caption_id"]: c["caption"] for c in train_rows}
        for caption_id, texts in read_kept(store, part).items():
            concept = next(r["concept"] for r in rows if r["caption_id"] == caption_id)
            assert all(names_concept(t, concept) for t in texts)
            assert len(set(texts) | {original[caption_id]}) == len(texts) + 1  # none repeats another or the caption
    assert notes["rewrites_written"] == train * PER_CAPTION and notes["captions_rewritten"] == train
    assert notes["rewrites_kept"] + sum(notes["rewrites_dropped"].values()) == notes["rewrites_written"]
    assert notes["rewrites_kept"] > train  # the tiny LLM learned the template: most rewrites count
    assert 2.0 < notes["texts_per_image"] <= 1 + PER_CAPTION
    record = store.record("rewrites", balanced[0])
    assert record["seeds"]["rule"] == "derive_seed(run_seed, caption_id, k)" and record["template"] == "synthclip-rewrite@v1"


def test_shards_carry_the_caption_as_txt_and_its_rewrites_in_json_and_parquet(rewritten):
    import webdataset as wds

    run, _ = rewritten
    store = run.store
    kept = {}
    for part in run.require("rewrites").outputs:
        kept.update(read_kept(store, part))
    shards = sorted(o for o in run.require("shards").outputs if o.endswith(".tar"))
    seen = 0
    for shard in shards:
        samples = list(wds.WebDataset(store.uri("shards", shard), shardshuffle=False))
        table = pq.read_table(io.BytesIO(store.read_bytes("shards", shard.replace(".tar", ".parquet"))))
        for sample, row in zip(samples, table.to_pylist(), strict=True):
            meta = json.loads(sample["json"])
            assert sample["txt"].decode() == meta["caption"] == row["caption"]  # open_clip reads the caption
            assert meta["rewrites"] == row["rewrites"] == kept.get(meta["caption_id"], [])
            seen += bool(meta["rewrites"])
    assert seen > 0
    record = store.record("shards", shards[0])
    assert any(i["stage"] == "rewrites" for i in record["inputs"])  # a shard's lineage names where its texts come from


def test_training_draws_a_text_per_sample_per_epoch_and_a_resume_draws_the_same(rewritten):
    from synthclip_core.stages.train import train_spec
    from synthclip_core.training.data import RankBatches, epoch_loader
    from synthclip_core.training.layout import epoch_layout

    run, _ = rewritten
    spec = train_spec(run)
    assert spec.lineage["texts"] == "any" and run.store.record("train", "summary.json")

    def epoch(e: int, start: int = 0) -> list[list[str]]:
        layout = epoch_layout(spec.layout_sources(), 1, 0, 4, spec.seed, e, None)
        batches = RankBatches([u for u, _ in spec.shards], layout, 0, e, start, 4, spec.seed, 16,
                              lambda image: __import__("torch").zeros(1), lambda texts: list(texts),
                              spec.source_specs(), "any")
        return [texts for _, texts, _, _ in epoch_loader(batches, 0)]

    first, again, resumed, second = epoch(0), epoch(0), epoch(0, start=2), epoch(1)
    assert first == again and resumed == first[2:]
    texts = {t for batch in first for t in batch}
    captions = {c for part in run.require("balanced").outputs if part.startswith("part-")
                for c in read_table(run.store, "balanced", part).column("caption").to_pylist()}
    assert texts - captions, "some sample trained on a rewrite"
    assert sorted(t for b in first for t in b) != sorted(t for b in second for t in b)  # another draw next epoch
    assert "Texts per training image" in texts_note(run)


def test_the_report_and_the_card_say_how_many_texts_an_image_trained_on(rewritten):
    run, summaries = rewritten
    for stage in ("eval", "card"):
        assert execute(run, stage).ok
    per_image = summaries["rewrites"].notes["texts_per_image"]
    report = json.loads(run.store.read_bytes("eval", "report.json"))
    assert report["texts_per_image"] == pytest.approx(per_image, abs=0.01)
    assert "Texts per training image" in run.store.read_bytes("eval", "report.md").decode()
    card = run.store.read_bytes("card", "README.md").decode()
    assert f"trained on {per_image:.2f} texts per image" in card


def test_open_clip_trainer_reads_the_shards_of_a_run_with_rewrites(rewritten, tmp_path):
    """open_clip's webdataset reader takes ``txt`` and ignores the json's ``rewrites``: the shards stay its input."""
    run, _ = rewritten
    open_clip_train(run.store, tmp_path)


def test_a_run_without_rewrites_has_no_such_stage_and_bad_settings_are_one_line(tmp_path, engine):
    plain = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    run = open_run(config_from_dict(plain), RunRef(str(tmp_path), "plain"))
    assert "rewrites" not in run.names and "rewrites" not in run.fingerprints
    with pytest.raises(ConfigError, match=r"rewrites.per_caption"):
        config_from_dict(micro(per_caption=-1))
    with pytest.raises(ConfigError, match=r"rewrites.template: template 'synthclip' has no '\{caption\}' placeholder"):
        open_run(config_from_dict(micro(template="synthclip")), RunRef(str(tmp_path), "bad-template"))
    with pytest.raises(ConfigError, match=r"rewrites.model: the model path '/nowhere/llm' does not exist"):
        open_run(config_from_dict(micro(model="/nowhere/llm")), RunRef(str(tmp_path), "bad-model"))
    assert not (tmp_path / "bad-template").exists() and not (tmp_path / "bad-model").exists()
