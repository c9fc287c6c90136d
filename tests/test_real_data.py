"""Real data: mixed sources sampled by weight, fine-tuning from given weights, models side by side.

The "real" data is procedural (``shapes.py``: coloured shapes with captions) written as webdataset
tars in the test, as img2dataset would write CC3M; the synthetic side is the offline profile's run.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import shapes
import torch
import webdataset as wds
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from synthclip_core.clip_models import create_model, model_config
from synthclip_core.errors import ConfigError
from synthclip_core.pipeline import job_config_from_dict
from synthclip_core.runs.checks import preflight
from synthclip_core.runs.lifecycle import load_run, new_run
from synthclip_core.stages.train import train_spec
from synthclip_core.storage.store import RunRef
from synthclip_core.training import checkpoints, metrics
from synthclip_core.training.checkpoints import CheckpointMismatch
from synthclip_core.training.config import DataSource
from synthclip_core.training.data import RankBatches, epoch_loader
from synthclip_core.training.layout import SourceShards, epoch_layout, subset
from synthclip_core.training.sources import SourceError, tar_source

TINY = "SynthCLIP-Tiny"


def job_dict(root: Path, sources: list[dict], **train) -> dict:
    return {"name": "job", "root": str(root),
            "train": {"model": TINY, "epochs": 1, "global_batch_size": 16, "lr": 1e-3, "weight_decay": 0.1,
                      "warmup_epochs": 0, "loader_workers": 0, "sources": sources, **train}}


# -- the mixed layout (pure) --------------------------------------------------------------------

source_sizes = st.lists(st.integers(0, 30), min_size=1, max_size=5)


@settings(max_examples=80, deadline=None)
@given(sizes=st.lists(source_sizes, min_size=1, max_size=3), weights=st.lists(st.integers(0, 5), min_size=3, max_size=3),
       limits=st.lists(st.one_of(st.none(), st.integers(1, 60)), min_size=3, max_size=3), world=st.integers(1, 3),
       loaders=st.integers(0, 2), batch=st.integers(1, 6), cap=st.one_of(st.none(), st.integers(1, 200)), epoch=st.integers(0, 2))
def test_mixed_layout_takes_each_source_by_weight(sizes, weights, limits, world, loaders, batch, cap, epoch):
    weights = weights[:len(sizes)]
    if sum(weights) == 0:
        weights[0] = 1
    first, sources = 0, []
    for i, s in enumerate(sizes):
        sources.append(SourceShards(f"s{i}", tuple(range(first, first + len(s))), tuple(s), float(weights[i]), limits[i]))
        first += len(s)
    try:
        layout = epoch_layout(sources, world, loaders, batch, seed=1, epoch=epoch, samples_per_epoch=cap)
    except ValueError as exc:
        assert "fewer than one batch" in str(exc) or "has no samples" in str(exc)
        return
    take = layout.batches_per_slot * batch
    assert sum(layout.quotas) == take
    for q, w in zip(layout.quotas, weights):
        assert abs(q - take * w / sum(weights)) < 1  # the weight's share, to one sample per slot
    for index, source in enumerate(sources):
        universe = {(p.shard, p.start + i) for p in subset(source, 1) for i in range(p.count)}
        read = Counter((p.shard, p.start + i) for slot in layout.slots for p in slot[index] for i in range(p.count))
        assert all(sum(p.count for p in slot[index]) == layout.quotas[index] for slot in layout.slots)
        assert set(read) <= universe
        if read:  # spread evenly: a sample is read k or k + 1 times (k = 0 unless the source is up-sampled)
            least = min(read[u] for u in universe)
            assert max(read.values()) - least <= 1


def test_subset_is_deterministic_and_the_same_every_epoch():
    source = SourceShards("cc12m", (0, 1, 2, 3), (10, 10, 10, 10), 1.0, limit=25)
    kept = subset(source, seed=0)
    assert sum(p.count for p in kept) == 25 and kept == subset(source, seed=0)
    universe = {(p.shard, p.start + i) for p in kept for i in range(p.count)}
    for epoch in range(3):
        layout = epoch_layout([source], 1, 0, 5, seed=0, epoch=epoch)
        assert {(p.shard, p.start + i) for slot in layout.slots for p in slot[0] for i in range(p.count)} <= universe


def test_an_up_sampled_source_is_read_round_with_a_lap_number():
    """25 samples an epoch from a 10-sample source: read 2.5 times, each repeat a new lap (its own crops)."""
    layout = epoch_layout([SourceShards("small", (0,), (10,), 1.0)], 1, 0, 5, seed=0, epoch=0, samples_per_epoch=25)
    assert [(p.start, p.count, p.lap) for p in layout.slots[0][0]] == [(0, 10, 0), (0, 10, 1), (0, 5, 2)]


def write_pairs(directory: Path, rows: list, image_key: str = "jpg", text_key: str = "txt", per_shard: int = 24) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for index, start in enumerate(range(0, len(rows), per_shard)):
        with wds.TarWriter(str(directory / f"{index:05d}.tar")) as sink:
            for key, jpg, caption, _ in rows[start:start + per_shard]:
                sink.write({"__key__": key, image_key: jpg, text_key: caption})
    return directory


def test_batches_hold_the_sources_in_proportion_over_an_epoch(tmp_path):
    """Source a (48 samples) and b (24, other keys) at weights 1:3 over 64 samples an epoch: the
    counts per source are exactly 16 and 48 (b read twice over), and every batch holds both."""
    a = write_pairs(tmp_path / "a", shapes.samples(4, seed=1))
    b = write_pairs(tmp_path / "b", shapes.samples(2, seed=2), image_key="png", text_key="caption")
    resolved = [tar_source(DataSource(name="a", uri=str(a), weight=1)),
                tar_source(DataSource(name="b", uri=str(b), weight=3, image_key="png", text_key="caption"))]
    from synthclip_core.training.sources import to_spec_parts

    shards, specs = to_spec_parts(resolved)
    layout_sources = [SourceShards(s["name"], tuple(s["shards"]), tuple(shards[i][1] for i in s["shards"]), s["weight"], None)
                      for s in specs]
    layout = epoch_layout(layout_sources, 1, 0, 8, seed=0, epoch=0, samples_per_epoch=64)
    _, preprocess, _, tokenizer = create_model(TINY)
    batches = RankBatches([u for u, _ in shards], layout, 0, 0, 0, 8, 0, 16, preprocess, tokenizer, specs)
    counts = torch.stack([c for _, _, c, _ in epoch_loader(batches, 0)])
    assert counts.sum(0).tolist() == [16, 48]
    assert (counts[:, 0] > 0).float().mean() >= 0.75 and (counts[:, 1] > 0).all()  # mixed inside batches, not in runs


def test_a_source_on_the_object_store_is_listed_counted_and_read(bucket, tmp_path):
    """img2dataset-style tars on S3 (moto on 127.0.0.1): counts from NNNNN_stats.json, a brace
    pattern, and batches read through fsspec."""
    import s3fs

    local = write_pairs(tmp_path / "cc", shapes.samples(3, seed=5), per_shard=12)  # 36 pairs in 3 shards
    fs = s3fs.S3FileSystem()
    for index in range(3):
        fs.put_file(str(local / f"{index:05d}.tar"), f"{bucket}/cc/{index:05d}.tar")
        fs.pipe_file(f"{bucket}/cc/{index:05d}_stats.json", json.dumps({"successes": 12, "failed_to_download": 3}).encode())
    source = tar_source(DataSource(name="cc", uri=f"s3://{bucket}/cc/{{00000..00002}}.tar", limit=30))
    assert [n for _, n in source.shards] == [12, 12, 12] and source.shards[0][0].startswith(f"s3://{bucket}/cc/")
    from synthclip_core.training.sources import to_spec_parts

    shards, specs = to_spec_parts([source])
    layout = epoch_layout([SourceShards("cc", (0, 1, 2), (12, 12, 12), 1.0, 30)], 1, 0, 10, seed=0, epoch=0)
    _, preprocess, _, tokenizer = create_model(TINY)
    counts = [c for _, _, c, _ in epoch_loader(RankBatches([u for u, _ in shards], layout, 0, 0, 0, 10, 0, 8, preprocess,
                                                        tokenizer, specs), 0)]
    assert sum(int(c.sum()) for c in counts) == 30  # the deterministic 30-sample subset, once


# -- bad input: one clear message before any training ------------------------------------------

def test_weights_that_do_not_sum_to_a_positive_number_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="do not sum to a positive number"):
        job_config_from_dict(job_dict(tmp_path, [{"name": "a", "uri": "x", "weight": 0}, {"name": "b", "uri": "y", "weight": 0}]))
    with pytest.raises(ConfigError, match="names must be unique"):
        job_config_from_dict(job_dict(tmp_path, [{"name": "a", "uri": "x"}, {"name": "a", "uri": "y"}]))
    with pytest.raises(ConfigError, match="at least one source"):
        job_config_from_dict(job_dict(tmp_path, []))


def test_unreadable_sources_are_named_before_training(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with wds.TarWriter(str(empty / "00000.tar")):
        pass
    other = write_pairs(tmp_path / "other", shapes.samples(1, seed=3), image_key="png", text_key="json")
    (tmp_path / "none").mkdir()
    cases = [(str(tmp_path / "none"), "no .tar files at"), (str(empty), "no readable samples"),
             (str(other), "shards of another layout: .* holds samples with \\['json', 'png'\\], not .jpg and .txt"),
             ("run:nope", "no run 'nope'")]
    for uri, message in cases:
        cfg = job_config_from_dict(job_dict(tmp_path, [{"name": "real", "uri": uri}]))
        with pytest.raises(SourceError, match=message):
            preflight(new_run(cfg, RunRef(str(tmp_path), "job")))
        assert not (tmp_path / "job").exists()  # nothing written


def test_weights_of_another_architecture_are_refused(tmp_path):
    import open_clip

    real = write_pairs(tmp_path / "real", shapes.samples(2, seed=4))
    cfg = model_config(TINY)
    other = open_clip.CLIP(cfg["embed_dim"] * 2, cfg["vision_cfg"], cfg["text_cfg"])  # another embedding width
    torch.save({"state_dict": other.state_dict()}, tmp_path / "other.pt")
    job = job_config_from_dict(job_dict(tmp_path, [{"name": "real", "uri": str(real)}], init_from=str(tmp_path / "other.pt")))
    with pytest.raises(CheckpointMismatch, match="another architecture than SynthCLIP-Tiny: .*of another shape"):
        preflight(new_run(job, RunRef(str(tmp_path), "job")))
    job = job_config_from_dict(job_dict(tmp_path, [{"name": "real", "uri": str(real)}], init_from=str(tmp_path / "missing.pt")))
    with pytest.raises(SourceError, match="no file at"):
        preflight(new_run(job, RunRef(str(tmp_path), "job")))


# -- the workflows end to end -------------------------------------------------------------------

@pytest.fixture(scope="module")
def workflows(offline_run, tmp_path_factory):
    """The offline run (synthetic only) and three jobs on a small real set: real only, synthetic
    then real (fine-tuned from the run), mixed; then all four side by side."""
    from flows.jobs import compare_models, finetune, train_job_flow

    run, _ = offline_run
    root = tmp_path_factory.mktemp("real-root")
    shutil.copytree(Path(run.ref.root) / run.ref.run_id, root / "synthetic")
    real = write_pairs(root / "data" / "real", shapes.samples(8, seed=11), per_shard=32)  # 96 pairs
    test = write_pairs(root / "data" / "real-test", shapes.samples(2, seed=12))  # 24 pairs
    datasets = [{"name": "real-test", "task": "retrieval", "path": str(test)}]

    def config(name: str, sources: list[dict], **train) -> str:
        data = job_dict(root, sources, **train)
        data["name"], data["eval"] = name, {"templates": "simple", "datasets": datasets}
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    real_source = {"name": "real", "uri": str(real)}
    train_job_flow(config=config("real-only", [real_source], epochs=2), job_id="real-only", root=str(root))
    finetune(checkpoint="run:synthetic", config=config("finetune", [real_source]), job_id="finetuned", root=str(root))
    train_job_flow(config=config("mixed", [{"name": "synthetic", "uri": "run:synthetic", "weight": 1}, real_source],
                                 samples_per_epoch=128), job_id="mixed", root=str(root))
    models = {"synthetic only": "run:synthetic", "real only": "run:real-only", "synthetic then real": "run:finetuned",
              "mixed": "run:mixed"}
    table = compare_models(models=models, datasets=datasets, root=str(root), out=str(root / "comparison"))
    return root, table


def test_fine_tuning_starts_from_the_given_weights(workflows):
    """The first logged loss is the pre-trained model's loss on the first batch, and the lineage
    names the parent checkpoint."""
    from open_clip.loss import ClipLoss

    root, _ = workflows
    ref = RunRef(str(root), "finetuned")
    store, parent = ref.store(), RunRef(str(root), "synthetic").store()
    parent_ckpt = json.loads(parent.read_bytes("train", "summary.json"))["checkpoint"]
    record = store.record("train", checkpoints.epoch_name(1))
    assert record["parent"]["run_id"] == "synthetic" and record["parent"]["sha256"] == parent.record("train", parent_ckpt)["sha256"]

    spec = train_spec(load_run(ref))
    model, preprocess, _, tokenizer = create_model(TINY)
    model.load_state_dict(checkpoints.load(parent, parent_ckpt)["state_dict"])
    model.train()
    layout = epoch_layout(spec.layout_sources(), 1, 0, 16, spec.seed, 0, None)
    images, texts, _, _ = next(iter(epoch_loader(RankBatches([u for u, _ in spec.shards], layout, 0, 0, 0, 16, spec.seed,
                                                           spec.config.shuffle_buffer, preprocess, tokenizer,
                                                           spec.source_specs()), 0)))
    with torch.no_grad():
        out = model(images, texts)
        expected = ClipLoss()(out["image_features"], out["text_features"], out["logit_scale"]).item()
    first = metrics.history(store)[0]
    assert first["step"] == 1 and first["loss"] == pytest.approx(expected, abs=1e-5)

    # the same weights through open_clip's local-dir export of the parent
    from synthclip_core.training.init_weights import load_init, resolve_init

    exported = resolve_init(f"local-dir:{root}/synthetic/train/model", {}, TINY)
    weights = load_init(exported, {})
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_mixed_training_names_every_source_and_its_samples(workflows):
    root, _ = workflows
    store = RunRef(str(root), "mixed").store()
    record = store.record("train", checkpoints.epoch_name(1))
    seen = {s["name"]: s for s in record["sources"]}
    assert seen["synthetic"]["uri"] == "run:synthetic" and seen["real"]["weight"] == 1.0
    assert seen["synthetic"]["samples_seen"] == seen["real"]["samples_seen"] == 64  # 128 per epoch, half each
    assert {i.get("run_id") for i in record["inputs"]} == {"synthetic"}  # the run's shards, by commit
    summary = json.loads(store.read_bytes("train", "summary.json"))
    assert [s["name"] for s in summary["sources"]] == ["synthetic", "real"]


def test_the_four_variants_side_by_side(workflows):
    root, table = workflows
    labels = [r["model"] for r in table["rows"]]
    assert labels == ["synthetic only", "real only", "synthetic then real", "mixed"]
    column = "real-test retrieval image_to_text_R@1"
    assert column in table["columns"] and all(isinstance(r.get(column), float) for r in table["rows"])
    rows = {r["model"]: r for r in table["rows"]}
    assert rows["synthetic then real"]["started_from"] == "run:synthetic"
    assert rows["real only"]["started_from"] == "random init"
    markdown = (root / "comparison" / "comparison.md").read_text()
    assert rows["synthetic only"]["differs"] == "-" and rows["mixed"]["differs"].startswith("a training job; train.")
    assert markdown.split("## Their data")[0].count("\n| ") == 6 and "| run:synthetic | real x1 (96 seen) |" in markdown
    assert "| synthetic then real | a training job; train." in markdown
    for job in ("real-only", "finetuned", "mixed"):  # the evaluation step after each job
        report = json.loads(RunRef(str(root), job).store().read_bytes("eval", "report.json"))
        assert report["results"][0]["dataset"] == "real-test"


def test_cli_refuses_a_bad_source_in_one_line(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(job_dict(tmp_path, [{"name": "real", "uri": str(tmp_path / "nowhere")}])))
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "flows.cli", "train", str(config), "--root", str(tmp_path)], cwd=repo,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "training source 'real': no .tar files at" in out.stderr and "Traceback" not in out.stderr
