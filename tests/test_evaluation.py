"""Evaluation where the right answer is known, on small generated datasets.

An oracle model (perfect by construction: it reads an image's colour and a caption's colour word)
must score 100% zero-shot, R@1 = 1 and a perfect probe; shuffled labels must score chance; the
metrics on a real (tiny, random) CLIP must equal a direct numpy computation on the same features.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from synthclip_core.clip_models import create_model
from synthclip_core.evaluation.datasets import DatasetError, load_captioned, load_labelled
from synthclip_core.evaluation.features import encode_images, encode_texts, zero_shot_classifier
from synthclip_core.evaluation.metrics import retrieval_recall, topk_accuracy
from synthclip_core.evaluation.models import CheckpointError, EvalModel, load_eval_model
from synthclip_core.evaluation.tasks import probe, retrieval, zeroshot

REPO = Path(__file__).resolve().parents[1]
NAMES = ["red", "green", "blue", "yellow", "cyan", "magenta", "black", "white", "orange", "purple"]
PALETTE = [(230, 20, 20), (20, 200, 20), (20, 20, 230), (240, 230, 20), (20, 220, 230), (220, 20, 220),
           (10, 10, 10), (245, 245, 245), (250, 140, 10), (120, 20, 160)]


class Oracle(torch.nn.Module):
    """Perfect by construction: an image's features are its palette colour, a text's its colour word."""

    palette = torch.tensor(PALETTE, dtype=torch.float32)

    def encode_image(self, x, normalize: bool = False):  # open_clip's model interface
        mean = x.mean(dim=(2, 3)) * 255
        nearest = ((mean[:, None, :] - self.palette[None]) ** 2).sum(-1).argmin(dim=1)
        return torch.nn.functional.one_hot(nearest, len(NAMES)).float()

    def encode_text(self, tokens, normalize: bool = False):
        return torch.nn.functional.one_hot(tokens, len(NAMES)).float()


def oracle() -> EvalModel:
    from torchvision.transforms import ToTensor

    def tokenizer(texts):
        return torch.tensor([next(i for i, n in enumerate(NAMES) if f" {n}" in f" {t}") for t in texts])

    return EvalModel(Oracle(), ToTensor(), tokenizer, "oracle", "oracle", "0" * 64, "cpu")


def jpeg(colour, size: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="JPEG", quality=95)
    return out.getvalue()


def class_folders(root: Path, per_class: int) -> Path:
    for name, colour in zip(NAMES, PALETTE):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / name / f"{i:03d}.jpg").write_bytes(jpeg(colour))
    return root


def test_oracle_scores_perfectly_in_every_layout(tmp_path):
    folder = class_folders(tmp_path / "folder", 3)
    rows = [{"image": jpeg(c), "label": n} for n, c in zip(NAMES, PALETTE) for _ in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "set.parquet")
    import webdataset as wds

    with wds.TarWriter(str(tmp_path / "set.tar")) as sink:
        for i, (n, c) in enumerate(zip(NAMES, PALETTE)):
            sink.write({"__key__": f"{i:04d}", "jpg": jpeg(c), "cls": str(i).encode()})
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(NAMES))
    for data in (load_labelled(str(folder)), load_labelled(str(tmp_path / "set.parquet")),
                 load_labelled(str(tmp_path / "set.tar"), classes=str(classes))):
        result = zeroshot(oracle(), data, ["a photo of a {}."], batch_size=7)
        assert result.metrics["top1"] == 1.0 and result.metrics["top5"] == 1.0, data.name
        assert set(result.per_class.values()) == {1.0}


def test_oracle_retrieval_has_recall_one_with_several_captions_per_image(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    with open(folder / "captions.jsonl", "w") as index:
        for name, colour in zip(NAMES, PALETTE):
            (folder / f"{name}.jpg").write_bytes(jpeg(colour))
            index.write(json.dumps({"image": f"{name}.jpg", "captions": [f"a {name} square", f"plain {name} colour"]}) + "\n")
    result = retrieval(oracle(), load_captioned(str(folder)), batch_size=4)
    assert result.metrics["image_to_text_R@1"] == result.metrics["text_to_image_R@1"] == 1.0
    assert result.extra["captions"] == 20


def test_shuffled_labels_score_chance_and_a_perfect_probe(tmp_path):
    data = load_labelled(str(class_folders(tmp_path / "folder", 40)))  # 400 images, 10 classes
    assert zeroshot(oracle(), data, ["{}"], 64).metrics["top1"] == 1.0
    random.Random(0).shuffle(data.labels)
    shuffled = zeroshot(oracle(), data, ["{}"], 64).metrics["top1"]
    assert abs(shuffled - 0.1) < 0.05, shuffled  # chance is 1/10
    train = load_labelled(str(class_folders(tmp_path / "train", 8)))
    test = load_labelled(str(class_folders(tmp_path / "test", 4)))
    assert probe(oracle(), train, test, 64).metrics["accuracy"] == 1.0


def test_metrics_equal_a_direct_numpy_computation(tmp_path):
    """A real open_clip model (tiny, random weights) on 60 images of 10 classes."""
    import shapes

    torch.manual_seed(0)
    model, _, preprocess, tokenizer = create_model("SynthCLIP-Tiny")
    model.eval()
    rows = shapes.samples(5, seed=7)
    feats, kept, skipped = encode_images(model, preprocess, [r[1] for r in rows], batch_size=16)
    assert kept == list(range(len(rows))) and not skipped
    classifier = zero_shot_classifier(model, tokenizer, shapes.CLASSES, ["a {}.", "a photo of a {}."], 16)
    labels = np.array([r[3] for r in rows])
    logits = (feats @ classifier).numpy()
    ours = topk_accuracy(torch.from_numpy(logits), torch.from_numpy(labels), ks=(1, 5))
    assert ours["top1"] == pytest.approx(float((logits.argmax(1) == labels).mean()))
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert ours["top5"] == pytest.approx(float((top5 == labels[:, None]).any(1).mean()))
    # distinct captions: identical ones tie, and torch and numpy break ties differently
    texts = encode_texts(model, tokenizer, [f"{r[2]} number {i}" for i, r in enumerate(rows)], 16).numpy()
    sims = feats.numpy() @ texts.T
    recall = retrieval_recall(feats, torch.from_numpy(texts), list(range(len(rows))))
    for k in (1, 5, 10):
        i2t = np.mean([i in np.argsort(-sims[i])[:k] for i in range(len(rows))])
        t2i = np.mean([j in np.argsort(-sims[:, j])[:k] for j in range(len(rows))])
        assert recall[f"image_to_text_R@{k}"] == pytest.approx(i2t) and recall[f"text_to_image_R@{k}"] == pytest.approx(t2i)


def test_unreadable_images_are_counted_skipped_and_listed(tmp_path):
    folder = class_folders(tmp_path / "folder", 2)
    (folder / "red" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (folder / "blue" / "truncated.jpg").write_bytes(jpeg((20, 20, 230))[:40])
    result = zeroshot(oracle(), load_labelled(str(folder)), ["{}"], 8)
    assert result.samples == 20 and result.metrics["top1"] == 1.0
    assert sorted(s["id"] for s in result.skipped) == ["blue/truncated.jpg", "red/broken.jpg"]


def test_bad_datasets_are_clear_errors(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(jpeg((1, 2, 3)))
    with pytest.raises(DatasetError, match="no class folders"):
        load_labelled(str(tmp_path / "flat"))
    with pytest.raises(DatasetError, match="not found"):
        load_labelled(str(tmp_path / "absent"))
    with pytest.raises(DatasetError, match="captions.jsonl"):
        load_captioned(str(tmp_path / "flat"))
    folder = class_folders(tmp_path / "folder", 1)
    with pytest.raises(DatasetError, match="10 classes but only 2 class names"):
        load_labelled(str(folder), classes=str(_write(tmp_path / "two.txt", "a\nb\n")))
    for name in NAMES:
        for f in (folder / name).iterdir():
            f.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="none of its 10 images could be read"):
        zeroshot(oracle(), load_labelled(str(folder)), ["{}"], 8)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    import open_clip

    model, _, _, _ = create_model("SynthCLIP-Tiny")
    ours = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "name": "SynthCLIP-Tiny", "state_dict": model.state_dict()}, ours)
    assert load_eval_model(str(ours)).arch == "SynthCLIP-Tiny"  # it names its own architecture
    with pytest.raises(CheckpointError, match="is a SynthCLIP-Tiny checkpoint, not ViT-B-32"):
        load_eval_model(str(ours), arch="ViT-B-32")
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    with pytest.raises(CheckpointError, match="does not name its architecture"):
        load_eval_model(str(bare))
    wider = json.loads((REPO / "synthclip_core" / "model_configs" / "SynthCLIP-Tiny.json").read_text())
    wider["embed_dim"] = 32
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "Test-Tiny-32.json").write_text(json.dumps(wider))
    open_clip.add_model_config(tmp_path / "cfgs")
    with pytest.raises(CheckpointError, match="does not fit architecture Test-Tiny-32: .*size mismatch"):
        load_eval_model(str(bare), arch="Test-Tiny-32")


def test_cli_evaluates_any_checkpoint_and_fails_in_one_line(tmp_path):
    model, _, _, _ = create_model("SynthCLIP-Tiny")
    ckpt = tmp_path / "model.pt"
    torch.save({"name": "SynthCLIP-Tiny", "state_dict": model.state_dict()}, ckpt)
    folder = class_folders(tmp_path / "colours", 2)
    env = {**os.environ, "COLUMNS": "200"}
    cli = [sys.executable, "-m", "flows.cli", "eval", str(ckpt)]
    result = subprocess.run(cli + ["--task", "zeroshot", "--data", str(folder), "--templates", "simple",
                                   "--out", str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {r["metric"] for r in report["results"]} == {"top1", "top5", "chance_top1"}
    assert all(r["dataset"] == "colours" and r["checkpoint_sha256"] == report["checkpoint_sha256"]
               and r["config_hash"] == report["config_hash"] for r in report["results"])
    assert "| colours | zeroshot | top1 |" in (tmp_path / "out" / "report.md").read_text()
    bad = subprocess.run(cli + ["--task", "zeroshot", "--data", str(tmp_path / "colours" / "red")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert bad.returncode != 0 and len(lines) == 1 and "no class folders" in lines[0], bad.stderr


def test_run_evaluates_heldout_coverage_and_configured_benchmarks(engine, tmp_path):
    """A micro run with two concepts held out of training and three external benchmarks."""
    import yaml

    from synthclip_core.pipeline import config_from_dict
    from synthclip_core.runs.lifecycle import open_run
    from synthclip_core.stages.executor import execute
    from synthclip_core.storage.store import RunRef

    colours = class_folders(tmp_path / "colours", 2)
    class_folders(tmp_path / "probe" / "train", 3)
    class_folders(tmp_path / "probe" / "test", 1)
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    (pairs / "captions.jsonl").write_text("".join(
        json.dumps({"image": f"{n}.jpg", "caption": f"a {n} square"}) + "\n" for n in NAMES))
    for name, colour in zip(NAMES, PALETTE):
        (pairs / f"{name}.jpg").write_bytes(jpeg(colour))
    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["balanced"]["holdout_concepts"] = 2
    data["eval"]["datasets"] = [
        {"name": "colours", "task": "zeroshot", "path": str(colours)},
        {"name": "pairs", "task": "retrieval", "path": str(pairs)},
        {"name": "probe", "task": "linear_probe", "path": str(tmp_path / "probe")},
    ]
    run = open_run(config_from_dict(data), RunRef(str(tmp_path / "runs"), "evaluated"))
    for stage in run.stages:
        summary = execute(run, stage.name)
        assert summary.ok, stage
        if stage.name == "eval":
            assert summary.pictures == ["eval/coverage.png"]
    report = json.loads(run.store.read_bytes("eval", "report.json"))
    tasks = {(r["dataset"], r["task"]) for r in report["results"]}
    assert tasks == {("synthetic-heldout", "zeroshot"), ("synthetic-heldout", "retrieval"), ("colours", "zeroshot"),
                     ("pairs", "retrieval"), ("probe", "linear_probe")}
    assert report["coverage"]["concepts_with_images"] > 0 and "out_of_bank_concept_top1" in report["coverage"]
    from synthclip_core.storage.tables import read_table

    coverage = read_table(run.store, "eval", "coverage.parquet", "eval_coverage").to_pylist()
    held = [r for r in coverage if r["held_out"]]
    assert held and all(r["train_captions"] == 0 for r in held)  # never in a training caption
    markdown = run.store.read_bytes("eval", "report.md").decode()
    assert "![concept coverage](coverage.png)" in markdown and "| probe | linear_probe | accuracy |" in markdown


def test_eval_reads_no_train_rows_image_bytes(micro_reference, tmp_path):
    """The held-out split is read by row group: spoiling the JPEG bytes of every train row leaves
    the report as it was."""
    import shutil

    import pyarrow.parquet as pq

    from synthclip_core.runs.lifecycle import RunRef, load_run
    from synthclip_core.stages.eval import REPORT
    from synthclip_core.stages.executor import execute

    reference = micro_reference[0]
    shutil.copytree(reference.path(), tmp_path / reference.run_id)
    run = load_run(RunRef(str(tmp_path), reference.run_id))
    store = run.store
    expected = json.loads(store.read_bytes("eval", REPORT))["results"]
    store.fs.rm_file(store.path("_complete", "eval.json"))
    for output in store.committed("eval"):
        store.fs.rm_file(store.path("_commits", "eval", output + ".json"))
    spoiled = 0
    for part in sorted(o for o in store.committed("images") if o.startswith("part-")):
        path = store.data_path("images", part)
        meta = pq.ParquetFile(path).metadata
        paths = [meta.schema.column(i).path for i in range(meta.num_columns)]
        jpg, split = paths.index("jpg.bytes"), paths.index("split")  # the image bytes, in their Image struct
        with open(path, "r+b") as handle:  # a test-only fault: a train row group's JPEG chunk is garbage
            for group in range(meta.num_row_groups):
                if meta.row_group(group).column(split).statistics.max == "train":
                    chunk = meta.row_group(group).column(jpg)
                    start = chunk.dictionary_page_offset or chunk.data_page_offset
                    handle.seek(start)
                    handle.write(b"\xff" * chunk.total_compressed_size)
                    spoiled += 1
    assert spoiled >= 3 and expected  # the micro run's train row groups, and a report on held-out rows
    execute(run, "eval")
    assert json.loads(store.read_bytes("eval", REPORT))["results"] == expected


def test_coverage_reports_held_out_concepts_apart_and_which_compose_trained_words():
    from synthclip_core.evaluation import coverage

    concepts = [("a", "great white shark"), ("b", "tiger"), ("c", "tiger shark"), ("d", "goldfish"), ("e", "rooster")]
    rows = coverage.concept_rows(concepts, {"a": 4, "b": 3, "e": 2}, ["a", "a", "b", "c", "c", "d"],
                                 [True, True, False, True, False, False], held_out={"c", "d"})
    by = {r["concept"]: r for r in rows}
    assert by["tiger shark"]["words_trained"] == 1 and by["goldfish"]["words_trained"] == 0
    summary = coverage.summary(rows)
    assert summary["trained_concepts"] == {"concepts": 2, "images": 3, "top1": 2 / 3}
    assert summary["held_out_concepts"] == {"concepts": 2, "images": 3, "top1": 1 / 3}
    assert summary["held_out_composed"] == {"concepts": 1, "images": 2, "top1": 0.5}
    note = coverage.split_note(summary)
    assert "| concepts held out of training | 2 | 3 | 0.3333 |" in note
