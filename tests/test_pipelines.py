"""Any diffusers text-to-image pipeline: tiny SDXL and SD3 pipelines (built locally, random weights)
render through the images stage as SD 1.5 does; presets fill what a config leaves unset; the
quality guards catch a broken model of each architecture; the image safety checker's flags are
counted as flags, on a tiny checker that flags every image."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from synthclip_core.errors import ConfigError
from synthclip_core.pipeline import config_from_dict
from synthclip_core.rendering.diffusers_backend import DiffusersRenderer
from synthclip_core.runs.lifecycle import open_run
from synthclip_core.stages.executor import execute
from synthclip_core.stages.images import ImagesConfig
from synthclip_core.storage.store import RunRef
from synthclip_core.tiny_models import build_tiny

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"steps": 2, "guidance_scale": 2.0, "eta": 0.0, "height": 64, "width": 64, "stored_size": 64, "jpeg_quality": 90}
ARCHITECTURES = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline", "sd3": "StableDiffusion3Pipeline"}


def test_presets_fill_what_the_config_leaves_unset():
    sdxl = ImagesConfig.model_validate({"preset": "sdxl"})
    assert (sdxl.model, sdxl.steps, sdxl.guidance_scale, sdxl.height, sdxl.scheduler) == (
        "stabilityai/stable-diffusion-xl-base-1.0", 40, 5.0, 1024, "default")
    mine = ImagesConfig.model_validate({"preset": "flux-schnell", "model": "tiny/sd3", "steps": 2, "height": 64, "width": 64})
    assert (mine.model, mine.steps, mine.guidance_scale, mine.height) == ("tiny/sd3", 2, 0.0, 64)
    with pytest.raises(ValueError, match="unknown preset 'sd9'"):
        ImagesConfig.model_validate({"preset": "sd9"})


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_each_architecture_renders_seeded_images(name):
    renderer = DiffusersRenderer(str(build_tiny(name)), scheduler="default" if name != "sd" else "ddim")
    assert type(renderer.pipe).__name__ == ARCHITECTURES[name]
    two = renderer.render(["a red fox in the snow", "a tabby cat"], [1, 2], SETTINGS)
    one = renderer.render(["a red fox in the snow"], [1], SETTINGS)
    assert [r["problem"] for r in two] == [None, None]
    assert one[0]["jpg"] == two[0]["jpg"] != two[1]["jpg"]  # one image per seed, whatever the batch


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_the_quality_guards_catch_a_broken_model_of_each_architecture(name, tmp_path):
    """A test-only fault: the VAE decoder's last layer zeroed, so every image is one flat colour."""
    from safetensors.torch import load_file, save_file

    broken = tmp_path / name
    shutil.copytree(build_tiny(name), broken)
    weights = broken / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    for key in [k for k in tensors if k.startswith("decoder.conv_out.")]:
        tensors[key] = tensors[key] * 0
    save_file(tensors, weights)
    renderer = DiffusersRenderer(str(broken), scheduler="default" if name != "sd" else "ddim")
    assert [r["problem"] for r in renderer.render(["a red fox"], [1], SETTINGS)] == ["constant"]


def test_a_flagged_image_is_counted_as_flagged_not_as_black():
    """Diffusers blackens a flagged image; the guard must name it for its flag (a review found
    flagged images counted as "black")."""
    checked = DiffusersRenderer(str(build_tiny("sd-checked")), safety_checker=True)
    assert [r["problem"] for r in checked.render(["a red fox", "a cat"], [1, 2], SETTINGS)] == ["nsfw", "nsfw"]
    unchecked = DiffusersRenderer(str(build_tiny("sd-checked")), safety_checker=False)
    assert [r["problem"] for r in unchecked.render(["a red fox"], [1], SETTINGS)] == [None]


def test_a_sampler_that_cannot_drive_a_flow_matching_model_is_refused():
    with pytest.raises(ConfigError, match="images.scheduler 'ddim' cannot sample .* flow-matching"):
        DiffusersRenderer(str(build_tiny("sd3")), scheduler="ddim")
    with pytest.raises(ConfigError, match="images.pipeline 'NotAPipeline'"):
        DiffusersRenderer(str(build_tiny("sd")), pipeline="NotAPipeline")


# -- through the images stage, on Ray ------------------------------------------------------------

def _micro(images: dict | None = None) -> dict:
    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["images"].update(images or {})
    return data


@pytest.fixture(scope="module")
def balanced_micro(engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    run = open_run(config_from_dict(_micro()), RunRef(str(root), "base"))
    for name in ("concepts", "captions", "balanced"):
        execute(run, name)
    return run


@pytest.mark.slow  # a micro run to balancing and three renders on Ray: the renderer tests above are the fast tier
@pytest.mark.parametrize("images, problem", [
    ({"model": "tiny/sdxl", "scheduler": "default"}, None),
    ({"model": "tiny/sd3", "scheduler": "default"}, None),
    ({"model": "tiny/sd-checked", "safety_checker": True}, "nsfw"),
])
def test_the_images_stage_renders_through_any_pipeline(balanced_micro, images, problem):
    fork = open_run(config_from_dict(_micro(images)), balanced_micro.ref, fork=True)
    summary = execute(fork, "images")
    assert summary.ok, summary.failures
    records = [r for o, r in fork.store.records("images").items() if o.startswith("part-")]
    assert records and all(r["model"]["name"] == images["model"] for r in records)
    dropped = sum(sum(r["quality"]["dropped"].values()) for r in records)
    if problem is None:
        assert summary.rows > 0 and dropped == 0
    else:  # every image flagged, re-rendered once, flagged again: dropped and counted, nothing committed broken
        assert summary.rows == 0 and {k for r in records for k in r["quality"]["dropped"]} == {problem}
        assert all(r["quality"]["rerendered"] == r["quality"]["dropped"][problem] for r in records)
