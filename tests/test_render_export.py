"""Rendering guards and the export contract: shards open_clip's own trainer trains on unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from commands import open_clip_train

from synthclip_core.errors import ConfigError
from synthclip_core.rendering.backends import create_render_backend
from synthclip_core.storage.store import RunStore

SETTINGS = {"steps": 2, "guidance_scale": 2.0, "eta": 0.0, "height": 64, "width": 64, "stored_size": 32, "jpeg_quality": 90}


def _broken_sd(source: Path, target: Path, how: str) -> Path:
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(source, safety_checker=None, requires_safety_checker=False)
    with torch.no_grad():
        if how in ("constant", "black"):  # the decoder's last layer outputs 0 (flat grey) or -1 (black)
            pipe.vae.decoder.conv_out.weight.zero_()
            pipe.vae.decoder.conv_out.bias.fill_(0.0 if how == "constant" else -1.0)
        else:  # a NaN weight poisons every latent
            pipe.unet.conv_in.weight[0, 0, 0, 0] = float("nan")
    pipe.save_pretrained(target)
    return target


@pytest.mark.parametrize("how", ["constant", "black", "nan"])
def test_quality_guards_rerender_then_drop(tiny_models, tmp_path, how):
    model = _broken_sd(tiny_models["sd"], tmp_path / "broken", how)
    assert [r["problem"] for r in create_render_backend("diffusers", model=str(model)).render(["a cat"], [1], SETTINGS)] == [how]
    result = _render_partition(tmp_path, {"backend": "diffusers", "model": str(model)})
    assert result["rows"] == 0 and result["quality"] == {"rerendered": 3, "dropped": {how: 3}}


def _render_partition(tmp_path: Path, settings: dict) -> dict:
    """One partition of three captions through the render processor, as an actor runs it."""
    from synthclip_core.stages.executor import PartitionMaker
    from synthclip_core.stages.images import RenderWork
    from synthclip_core.stages.stage import WorkItem
    from synthclip_core.storage.schemas import to_parquet_bytes
    from synthclip_core.storage.store import RunRef

    ref = RunRef(str(tmp_path / "root"), "guards")
    store = ref.store()
    rows = [{"caption_id": f"c{i}", "concept_id": "x", "caption": "a cat", "matched_concept_ids": ["x"], "split": "train"}
            for i in range(3)]
    record = store.commit("balanced", "part-00000.parquet", to_parquet_bytes(pa.Table.from_pylist(rows), "balanced"))
    settings = {"backend": "diffusers", "model": "unused", "revision": None, "dtype": "float32", "compile": False,
                "safety_checker": False, "scheduler": "ddim", "batch_size": 2, "images_per_caption": 1,
                "pipeline": "auto", "offload": "none", "device_map": None,
                "sampler": SETTINGS, "seed": 0, "model_identity": {"name": "broken"}, "model_label": "broken@x", **settings}
    item = WorkItem("images", "part-00000-000.parquet", "f", 3, ({"stage": "balanced", "output": "part-00000.parquet",
                                                                  "sha256": record["sha256"]},), offset=0, length=3)
    return PartitionMaker(RenderWork, settings, ref.as_dict())(item)


def test_a_plugin_backend_s_unreadable_images_are_dropped_and_counted(tmp_path):
    result = _render_partition(tmp_path, {"backend": "custom_renderers:SomeUnreadable"})
    assert result["rows"] + result["quality"]["dropped"]["undecodable"] == 3 and result["rows"] >= 1


@pytest.mark.parametrize("plugin,message", [
    ("WrongSize", "returned a 48x40 JPEG image; images.stored_size is 32, so it must be a 32x32 JPEG"),
    ("TooFew", "returned 1 images for 2 prompts"),
])
def test_a_plugin_backend_that_breaks_the_contract_is_one_clear_error(tmp_path, plugin, message):
    from synthclip_core.errors import BackendError

    with pytest.raises(BackendError, match=message):
        _render_partition(tmp_path, {"backend": f"custom_renderers:{plugin}"})
    assert not RunStore(str(tmp_path / "root"), "guards").committed("images")


def test_an_unknown_plugin_is_a_config_error():
    with pytest.raises(ConfigError, match="images.backend 'no_such_module:X': cannot import it"):
        create_render_backend("no_such_module:X")


def test_good_images_pass_the_guards(tiny_models):
    out = create_render_backend("diffusers", model=str(tiny_models["sd"])).render(["a cat", "a dog"], [1, 2], SETTINGS)
    assert all(r["problem"] is None and r["jpg"][:2] == b"\xff\xd8" for r in out)


def test_safety_checker_needs_a_model_that_has_one(tiny_models):
    with pytest.raises(ConfigError, match="has no safety checker"):
        create_render_backend("diffusers", model=str(tiny_models["sd"]), safety_checker=True)


def test_contact_sheet_is_saved_with_the_run(offline_run):
    run, summaries = offline_run
    assert run.store.read_bytes("images", "contact_sheet.png")[:4] == b"\x89PNG"
    assert summaries["images"]["pictures"] == ["images/contact_sheet.png"]


def test_open_clip_trainer_trains_on_the_shards_unchanged(offline_run, tmp_path):
    run, _ = offline_run
    open_clip_train(run.store, tmp_path)


def test_shards_re_export_identically_from_parquet(offline_run):
    from synthclip_core.stages.executor import StageContext
    from synthclip_core.stages.shards import make

    run, _ = offline_run
    store = run.store
    before = store.records("shards")
    for output in before:
        store.fs.rm_file(store.path("_commits", "shards", output + ".json"))
    summary = make(StageContext(run, run.stage("shards")))  # the work alone: the stage stays marked complete
    assert summary.computed == len([o for o in before if o.endswith(".tar")])
    assert {o: r["sha256"] for o, r in store.records("shards").items()} == {o: r["sha256"] for o, r in before.items()}


def test_a_shard_record_names_the_image_partitions_of_its_samples_only(offline_run):
    import io
    import tarfile

    from synthclip_core.storage.tables import read_table

    run, _ = offline_run
    store = run.store
    part_of = {}
    for part in sorted(o for o in store.committed("images") if o.startswith("part-")):
        for image_id in read_table(store, "images", part).column("image_id").to_pylist():
            part_of[image_id] = part
    for name, record in store.records("shards").items():
        if not name.endswith(".tar"):
            continue
        with tarfile.open(fileobj=io.BytesIO(store.read_bytes("shards", name))) as tar:
            ids = [json.loads(tar.extractfile(m).read())["image_id"] for m in tar.getmembers() if m.name.endswith(".json")]
        assert [i["output"] for i in record["inputs"]] == list(dict.fromkeys(part_of[i] for i in ids)), name


def _copy_run(store: RunStore, root: Path):
    """A finished run copied under ``root``, to spoil without touching the shared one."""
    import shutil

    from synthclip_core.runs.lifecycle import RunRef, load_run

    shutil.copytree(store.path(), root / store.run_id)
    return load_run(RunRef(str(root), store.run_id))


def _unfinish(store: RunStore, stage: str, outputs: list[str]) -> None:
    """Take back a stage's completion and the commits of ``outputs`` (as a run stopped before them)."""
    store.fs.rm_file(store.path("_complete", stage + ".json"))
    for output in outputs:
        store.fs.rm_file(store.path("_commits", stage, output + ".json"))


def test_export_resumed_with_every_shard_committed_reads_no_image_partition(micro_reference, tmp_path):
    from synthclip_core.stages.executor import execute
    from synthclip_core.stages.shards import MANIFEST, SIZES

    run = _copy_run(micro_reference[0], tmp_path)
    store = run.store
    before = {o: r["sha256"] for o, r in store.records("shards").items()}
    _unfinish(store, "shards", [MANIFEST, SIZES])  # stopped after its last shard
    for part in store.committed("images"):  # a test-only fault: any read of an image partition fails
        if part.startswith("part-"):
            path = store.data_path("images", part)
            store.fs.pipe_file(path, b"\0" * store.fs.size(path))
    summary = execute(run, "shards")
    assert (summary.computed, summary.skipped) == (0, summary.total) and summary.total == 2
    assert {o: r["sha256"] for o, r in store.records("shards").items()} == before


def test_shards_written_by_two_ray_tasks_are_the_same_bytes(offline_run, tmp_path):
    """``shards.num_tasks: 2`` writes shard groups as Ray tasks: the same tars, stats, manifest and sizes."""
    from synthclip_core.runs.lifecycle import Run
    from synthclip_core.stages.executor import execute

    copied = _copy_run(offline_run[0].store, tmp_path)
    before = {o: r["sha256"] for o, r in copied.store.records("shards").items()}
    _unfinish(copied.store, "shards", sorted(before))
    cfg = copied.config.model_copy(update={"shards": copied.config.shards.model_copy(update={"num_tasks": 2})})
    summary = execute(Run(copied.ref, cfg, copied.fingerprints, copied.stages, copied.kind, copied.layout), "shards")
    assert summary.computed == summary.total == len([o for o in before if o.endswith(".tar")]) >= 2
    assert {o: r["sha256"] for o, r in copied.store.records("shards").items()} == before
