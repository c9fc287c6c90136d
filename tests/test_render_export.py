"""Rendering guards and the export contract: shards open_clip's own trainer trains on unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from synthclip_core.errors import ConfigError
from synthclip_core.renderers import create_render_backend
from synthclip_core.store import RunStore

SETTINGS = {"steps": 2, "guidance_scale": 2.0, "eta": 0.0, "height": 64, "width": 64, "stored_size": 32, "jpeg_quality": 90}


def _broken_sd(source: Path, target: Path, how: str) -> Path:
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(source, safety_checker=None, requires_safety_checker=False)
    with torch.no_grad():
        if how == "constant":  # the decoder's last layer outputs zeros: a flat grey image
            pipe.vae.decoder.conv_out.weight.zero_()
            pipe.vae.decoder.conv_out.bias.zero_()
        else:  # a NaN weight poisons every latent
            pipe.unet.conv_in.weight[0, 0, 0, 0] = float("nan")
    pipe.save_pretrained(target)
    return target


@pytest.mark.parametrize("how", ["constant", "nan"])
def test_quality_guards_rerender_then_drop(tiny_models, tmp_path, how):
    from synthclip_core.stages.images import RenderProcessor

    model = _broken_sd(tiny_models["sd"], tmp_path / "broken", how)
    assert [r["problem"] for r in create_render_backend("diffusers", model=str(model)).render(["a cat"], [1], SETTINGS)] == [how]
    store = RunStore(str(tmp_path / "root"), "guards")
    rows = [{"caption_id": f"c{i}", "concept_id": "x", "caption": "a cat", "matched_concept_ids": ["x"], "split": "train"}
            for i in range(3)]
    from synthclip_core.schemas import to_parquet_bytes

    record = store.commit("balanced", "part-00000.parquet", to_parquet_bytes(pa.Table.from_pylist(rows), "balanced"))
    settings = {"backend": "diffusers", "model": str(model), "revision": None, "dtype": "float32", "compile": False,
                "safety_checker": False, "scheduler": "ddim", "batch_size": 2, "images_per_caption": 1,
                "sampler": SETTINGS, "seed": 0, "model_identity": {"name": "broken"}, "model_label": "broken@x"}
    job = {"output": "part-00000-000.parquet", "offset": 0, "length": 3, "fingerprint": "f",
           "inputs": [{"stage": "balanced", "output": "part-00000.parquet", "sha256": record["sha256"]}]}
    result = RenderProcessor(settings)(store, job)
    assert result["rows"] == 0 and result["quality"] == {"rerendered": 3, "dropped": {how: 3}}


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
    sizes = json.loads(run.store.read_bytes("shards", "sizes.json"))
    last = len(sizes) - 1
    command = [
        sys.executable, "-m", "open_clip_train.main", "--dataset-type", "webdataset",
        "--train-data", run.store.uri("shards") + f"/{{00000..{last:05d}}}.tar",
        "--train-num-samples", str(sum(sizes.values())), "--model", "local-dir:" + run.store.uri("train", "model"),
        "--device", "cpu", "--epochs", "1", "--batch-size", "16", "--workers", "0", "--precision", "fp32",
        "--lr", "1e-4", "--warmup", "1", "--logs", str(tmp_path), "--name", "oc", "--save-frequency", "1",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "oc" / "checkpoints" / "epoch_1.pt").exists()


def test_shards_re_export_identically_from_parquet(offline_run):
    from synthclip_core.stages.shards import run_export

    run, _ = offline_run
    store = run.store
    before = store.records("shards")
    for output in before:
        store.fs.rm_file(store.path("_commits", "shards", output + ".json"))
    summary = run_export(run)
    assert summary.computed == len([o for o in before if o.endswith(".tar")])
    assert {o: r["sha256"] for o, r in store.records("shards").items()} == {o: r["sha256"] for o, r in before.items()}
