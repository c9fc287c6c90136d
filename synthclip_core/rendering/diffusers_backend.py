"""Text-to-image with any diffusers pipeline, batched, one seeded generator per image, with quality guards.

Per-image generators make every image a function of its own seed only, so a resumed or re-batched
partition renders the same pixels as an uninterrupted one (same backend and device type).
Attention runs through PyTorch's scaled-dot-product kernels (diffusers' default); the UNet can be
compiled. Images are checked as floats, before encoding: NaN, all-black and constant images are
reported (fp16 overflow and broken weights produce exactly these), as are images the optional
safety checker flags.
"""

from __future__ import annotations

import inspect
import io

from ..errors import ConfigError

_SCHEDULERS = {"ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "euler": "EulerDiscreteScheduler",
               "dpmsolver": "DPMSolverMultistepScheduler"}


class DiffusersRenderer:
    """Any diffusers text-to-image pipeline: the class the model's index names (``pipeline="auto"``),
    ``AutoPipelineForText2Image`` (``"text2image"``) or a class by name; SD 1.x/2.x, SDXL, SD3,
    PixArt and FLUX alike. Arguments a pipeline does not take (``eta`` for flow-matching models)
    are left out of its call."""

    def __init__(self, model: str, revision: str | None = None, scheduler: str = "ddim", device: str = "auto",
                 dtype: str = "auto", compile: bool = False, safety_checker: bool = False, pipeline: str = "auto",
                 offload: str = "none", device_map: str | None = None, **_ignored):
        import diffusers
        import torch

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        torch_dtype = {"auto": torch.float16 if self.device == "cuda" else torch.float32,
                       "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
        index = diffusers.DiffusionPipeline.load_config(model, revision=revision)
        has_checker = (index.get("safety_checker") or [None])[0] is not None
        if safety_checker and not has_checker:
            raise ConfigError(f"images.safety_checker is on but {model} has no safety checker")
        # components the model was saved without (SD3 without T5, SD without its checker) load as None
        extra: dict = {k: None for k, v in index.items() if isinstance(v, list) and v and v[0] is None}
        if not safety_checker and "safety_checker" in index:
            extra.update(safety_checker=None, requires_safety_checker=False)
        if device_map:
            extra["device_map"] = device_map
        pipe = _pipeline_class(diffusers, pipeline, model).from_pretrained(model, revision=revision, dtype=torch_dtype, **extra)
        if scheduler != "default":
            if type(pipe.scheduler).__name__.startswith("FlowMatch"):
                raise ConfigError(f"images.scheduler {scheduler!r} cannot sample {model}, a flow-matching model "
                                  f"({type(pipe).__name__}): use 'default'")
            pipe.scheduler = getattr(diffusers, _SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        if offload != "none" and self.device == "cuda":
            pipe.enable_model_cpu_offload() if offload == "model" else pipe.enable_sequential_cpu_offload()
        elif not device_map:
            pipe = pipe.to(self.device)
        self.pipe = pipe
        self.accepts = set(inspect.signature(pipe.__call__).parameters)
        if compile:
            denoiser = "unet" if hasattr(pipe, "unet") else "transformer"
            setattr(self.pipe, denoiser, torch.compile(getattr(self.pipe, denoiser)))

    def render(self, prompts: list[str], seeds: list[int], settings: dict) -> list[dict]:
        import numpy as np
        import torch

        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        call = {"num_inference_steps": settings["steps"], "guidance_scale": settings["guidance_scale"],
                "height": settings["height"], "width": settings["width"], "generator": generators, "output_type": "np"}
        if "eta" in self.accepts:
            call["eta"] = settings["eta"]
        with torch.inference_mode():
            out = self.pipe(prompts, **call)
        flagged = getattr(out, "nsfw_content_detected", None) or [False] * len(prompts)
        results = []
        for image, nsfw in zip(out.images, flagged, strict=True):
            # a flagged image comes back black: it is named for its flag, not for its pixels
            problem = ("nsfw" if nsfw else None) or image_problem(image)
            jpg = None if problem else _encode_jpeg(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8),
                                                    settings["stored_size"], settings["jpeg_quality"])
            results.append({"jpg": jpg, "problem": problem})
        return results


def image_problem(image) -> str | None:
    """Why a float image in [0, 1] is unusable, or None."""
    import numpy as np

    if not np.isfinite(image).all():
        return "nan"
    if image.max() < 2 / 255:
        return "black"
    if image.max() - image.min() < 2 / 255:
        return "constant"
    return None


def _encode_jpeg(pixels, size: int, quality: int) -> bytes:
    from PIL import Image

    image = Image.fromarray(pixels)
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _pipeline_class(diffusers, name: str, model: str):
    """The pipeline class ``images.pipeline`` names."""
    if name == "auto":
        return diffusers.DiffusionPipeline
    if name == "text2image":
        return diffusers.AutoPipelineForText2Image
    found = getattr(diffusers, name, None)
    if not isinstance(found, type) or not issubclass(found, diffusers.DiffusionPipeline):
        raise ConfigError(f"images.pipeline {name!r} is not a diffusers pipeline class (e.g. StableDiffusionXLPipeline)")
    return found
