"""The offline profile end to end (one shared run), read by many small checks."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from synthclip_core.pipeline import STAGES
from synthclip_core.runs.status import run_status
from synthclip_core.storage.tables import read_table


def _table(run, stage):
    store = run.store
    outputs = sorted(o for o in store.committed(stage) if o.startswith("part-"))
    return pa.concat_tables([read_table(store, stage, o) for o in outputs])


def test_every_stage_is_complete(offline_run):
    run, summaries = offline_run
    # the closed loop and the rewrites are off by default
    assert list(summaries) == run.names == [s for s in STAGES if s not in ("topup", "rewrites")]
    statuses = {s.stage: s for s in run_status(run)}
    for stage in run.names:
        assert statuses[stage].complete and not statuses[stage].failed, stage
    # each stage's outputs under its own name, and its completion marked last, for every stage alike
    assert set(run.store.committed_all()) == {"run", *run.names}
    for stage in run.names:
        marker = run.store.completion_marker(stage)
        assert marker["fingerprint"] == run.fingerprints[stage] and marker["code_version"]["stage"] == STAGES[stage].version
        records = run.store.records(stage, marker["outputs"])
        assert all(r["committed_at"] <= marker["completed_at"] for r in records.values()), stage


def test_status_lists_the_run_once(offline_run, monkeypatch):
    """Status costs one listing of the commits and one of the failures, whatever the stage count."""
    run, _ = offline_run
    listed = []
    listing = type(run.store)._listing
    monkeypatch.setattr(run.store, "_listing", lambda kind, stage: listed.append((kind, stage)) or listing(run.store, kind, stage))
    run_status(run)
    assert sorted(listed, key=str) == [("_commits", None), ("_failures", None)], listed


def test_captions_mostly_name_their_concept(offline_run):
    run, _ = offline_run
    captions = _table(run, "captions").to_pylist()
    assert len(captions) == run.config.concepts.limit * run.config.captions.per_concept
    share = sum(f" {r['concept']} " in f" {r['caption']} " for r in captions) / len(captions)
    assert share >= 0.8, share


def test_balancing_caps_concepts_and_records_stats(offline_run):
    run, _ = offline_run
    stats = read_table(run.store, "balanced", "stats.parquet", "balanced_stats").to_pylist()
    assert all(s["count_after"] <= s["count_before"] for s in stats)
    assert sum(s["count_before"] > run.config.balanced.threshold for s in stats) > 0
    balanced = _table(run, "balanced")
    summary = run.store.record("balanced", "stats.parquet")["summary"]
    assert summary["kept"] == balanced.num_rows < summary["captions_in"]
    assert summary["duplicates"] > 0 and summary["concepts_covered_after"] <= summary["concepts_covered_before"]
    assert run.store.read_bytes("balanced", "histogram.png")[:4] == b"\x89PNG"
    assert set(balanced.column("split").to_pylist()) == {"train", "eval", "holdout"}
    held = [r for r in balanced.to_pylist() if r["split"] == "holdout"]
    assert len({r["concept_id"] for r in held}) <= run.config.balanced.held_out_count  # as the preset holds out


def test_images_are_jpegs_with_lineage(offline_run):
    run, _ = offline_run
    images = _table(run, "images")
    assert images.num_rows == _table(run, "balanced").num_rows
    row = images.slice(0, 1).to_pylist()[0]
    img = Image.open(io.BytesIO(row["jpg"]))
    assert img.format == "JPEG" and img.size == (64, 64)
    assert hashlib.sha256(row["jpg"]).hexdigest() == row["sha256"]
    record = run.store.record("images", "part-00000-000.parquet")
    assert record["model"]["name"] == "tiny/sd" and "content_sha256" in record["model"]
    assert record["sampler"]["steps"] == 4 and record["inputs"][0]["stage"] == "balanced"
    assert record["throughput"]["images_per_s"] > 0 and record["worker"]["device"] == "cpu"


def test_shards_hold_the_training_split_only(offline_run):
    run, _ = offline_run
    images = _table(run, "images")
    eval_ids = set(images.filter(pc.is_in(images["split"], pa.array(["eval", "holdout"]))).column("image_id").to_pylist())
    train_ids = set(images.column("image_id").to_pylist()) - eval_ids
    sizes = json.loads(run.store.read_bytes("shards", "sizes.json"))
    image_ids = []
    for shard, name in enumerate(sizes):
        with tarfile.open(fileobj=io.BytesIO(run.store.read_bytes("shards", name))) as tar:
            names = tar.getnames()
            metas = [json.load(tar.extractfile(n)) for n in names if n.endswith(".json")]
        assert sizes[name] * 3 == len(names)
        assert names[:3] == [f"{shard:05d}000.jpg", f"{shard:05d}000.json", f"{shard:05d}000.txt"] or \
            sorted(names[:3]) == sorted([f"{shard:05d}000.jpg", f"{shard:05d}000.json", f"{shard:05d}000.txt"])
        assert all(m["split"] == "train" and m["model"].startswith("tiny/sd@") for m in metas)
        image_ids += [m["image_id"] for m in metas]
        stats = json.loads(run.store.read_bytes("shards", name.replace(".tar", "_stats.json")))
        assert stats["count"] == sizes[name] and stats["first_key"] == f"{shard:05d}000"
    assert set(image_ids) == train_ids and len(image_ids) == len(train_ids)
    assert not eval_ids & set(image_ids)


def test_webdataset_reads_the_shards(offline_run):
    import webdataset as wds

    run, _ = offline_run
    urls = [run.store.uri("shards", name) for name in json.loads(run.store.read_bytes("shards", "sizes.json"))]
    sample = next(iter(wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("jpg", "txt")))
    assert sample[0].size == (64, 64) and isinstance(sample[1], str)


def test_checkpoint_loads_with_open_clip(offline_run, tmp_path):
    import open_clip

    from synthclip_core.clip_models import register_model_configs

    run, _ = offline_run
    path = tmp_path / "epoch.pt"
    path.write_bytes(run.store.read_bytes("train", "checkpoints/epoch_5.pt"))
    register_model_configs()
    model, _, _ = open_clip.create_model_and_transforms("SynthCLIP-Tiny", pretrained=str(path))
    assert model.visual.image_size == (64, 64)
    model2, _, _ = open_clip.create_model_and_transforms("local-dir:" + run.store.uri("train", "model"))
    assert sum(p.numel() for p in model2.parameters()) == sum(p.numel() for p in model.parameters())
    from synthclip_core.training.metrics import history

    rows = history(run.store)
    steps = json.loads(run.store.read_bytes("train", "summary.json"))["steps"]
    assert [r["step"] for r in rows] == list(range(1, steps + 1)) and steps % 5 == 0
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_report_has_every_number_with_its_context(offline_run):
    run, _ = offline_run
    report = json.loads(run.store.read_bytes("eval", "report.json"))
    metrics = {(r["task"], r["metric"]) for r in report["results"]}
    assert {("zeroshot", "top1"), ("zeroshot", "top5"), ("retrieval", "image_to_text_R@1")} <= metrics
    assert all(r["dataset"] == "synthetic-heldout" and r["checkpoint"] for r in report["results"])
    assert report["config_hash"] == run.fingerprints["eval"] and len(report["checkpoint_sha256"]) == 64
    assert "| synthetic-heldout | zeroshot | top1 |" in run.store.read_bytes("eval", "report.md").decode()
    coverage = report["coverage"]
    assert 0 <= coverage["in_bank_concept_top1"] <= 1 and coverage["concepts_with_images"] > 0
    assert "out_of_bank_concept_top1" in coverage  # the preset holds 5 concepts out of training
    assert run.store.read_bytes("eval", "coverage.png")[:4] == b"\x89PNG"


def test_commit_records_match_their_files(offline_run):
    run, _ = offline_run
    store = run.store
    for stage, outputs in store.committed_all().items():
        for output, record in store.records(stage, sorted(outputs)).items():
            assert hashlib.sha256(store.read_bytes(stage, output)).hexdigest() == record["sha256"], (stage, output)
    assert not store.temporaries()
    doc = json.loads(store.read_bytes("run", "run.json"))
    assert doc["fingerprints"] == run.fingerprints and doc["config"]["name"] == "offline"
    assert "synthclip" in doc["code_version"]


def test_rerun_skips_everything(offline_run):
    from flows.pipeline import resume_run

    run, _ = offline_run
    summaries = resume_run(run_id=run.ref.run_id, root=run.ref.root)
    assert all(s["computed"] == 0 for s in summaries.values())


def test_deleted_commit_record_recomputes_exactly_that_partition(offline_run):
    from flows.pipeline import resume_run

    run, _ = offline_run
    store = run.store
    before = {s: store.records(s) for s in ("captions", "images")}
    store.fs.rm_file(store.path("_commits", "captions", "part-00002.parquet.json"))
    store.fs.rm_file(store.path("_commits", "images", "part-00001-001.parquet.json"))
    summaries = resume_run(run_id=run.ref.run_id, root=run.ref.root)
    assert summaries["captions"]["computed"] == 1 and summaries["images"]["computed"] == 1
    assert all(s["computed"] == 0 for k, s in summaries.items() if k not in {"captions", "images"})
    after = {s: store.records(s) for s in ("captions", "images")}
    for stage, output in (("captions", "part-00002.parquet"), ("images", "part-00001-001.parquet")):
        assert after[stage][output]["sha256"] == before[stage][output]["sha256"]
        assert after[stage][output]["committed_at"] > before[stage][output]["committed_at"]
        untouched = {o for o in before[stage] if o != output}
        assert all(after[stage][o] == before[stage][o] for o in untouched)


def test_the_flow_run_shows_reports_and_pictures(offline_run):
    """The UI's artifacts: a summary per stage, the evaluation report with its picture inline."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    by_description = {a.description: a for a in artifacts if a.type == "markdown"}
    report = by_description["eval report"].data
    assert "| synthetic-heldout | zeroshot | top1 |" in report and "](data:image/png;base64," in report
    assert "](data:image/png;base64," in by_description["train summary"].data  # the training curves
    assert any(a.type == "progress" for a in artifacts)
    costs = [a for a in artifacts if a.description == "cost of run offline-shared so far"]  # a version after each stage
    spent = max(costs, key=lambda a: a.created).data
    assert len(costs) >= len(offline_run[0].names)
    assert "| card |" in spent and "list-2026-12" in spent and "planned GPU-hours" in spent
    headline = max((a for a in artifacts if a.key == "offline-shared-headline"), key=lambda a: a.created)
    assert headline.created >= max(a.created for a in costs)  # the flow's last artifact
    assert "| held-out zero-shot | top-1 " in headline.data and "against chance 1.0%" in headline.data
    assert "| held-out retrieval | R@5 image to text " in headline.data and "| card | " in headline.data


def test_the_command_ends_with_what_the_run_made_and_proved(offline_run, tmp_path):
    """Under the paths, the figures a user would otherwise open the report for (read from the
    run's records, so they are the report's own numbers)."""
    import shutil

    from commands import synthclip

    run, _ = offline_run
    shutil.copytree(run.store.base, tmp_path / run.ref.run_id)
    result = synthclip("resume", run.ref.run_id, "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    shown = result.stderr[result.stderr.index("what it made and proved"):]
    notes = run.require("eval").notes
    assert f"held-out zero-shot:  top-1 {notes['synthetic-heldout/zeroshot/top1']:.1%} against chance 1.0%" in shown
    assert f"R@5 image to text {notes['synthetic-heldout/retrieval/image_to_text_R@5']:.1%}" in shown
    pairs = f"{run.require('images').rows:,} image-caption pairs made, {run.require('shards').rows:,} to train on"
    assert pairs in shown and "card:" in shown and "near-duplicate images" in shown


def test_training_said_how_far_it_was_at_its_last_step(offline_run):
    """Progress at each logged step comes from rank 0's heartbeat, which is never an output."""
    run, summaries = offline_run
    live = run.store.live("train")
    steps = json.loads(run.store.read_bytes("train", "summary.json"))["steps"]
    assert live["step"] == live["total"] == steps and "loss" in live
    assert "_live" not in run.store.committed_all()
