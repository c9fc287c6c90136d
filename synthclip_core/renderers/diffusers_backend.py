"""Text-to-image with diffusers, batched, one seeded generator per image, with quality guards.

Per-image generators make every image a function of its own seed only, so a resumed or re-batched
partition renders the same pixels as an uninterrupted one (same backend and device type).
Attention runs through PyTorch's scaled-dot-product kernels (diffusers' default); the UNet can be
compiled. Images are checked as floats, before encoding: NaN, all-black and constant images are
reported (fp16 overflow and broken weights produce exactly these), as are images the optional
safety checker flags.
"""

from __future__ import annotations

import io

from ..errors import ConfigError

_SCHEDULERS = {"ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "euler": "EulerDiscreteScheduler"}


class DiffusersRenderer:
    def __init__(self, model: str, revision: str | None = None, scheduler: str = "ddim", device: str = "auto",
                 dtype: str = "auto", compile: bool = False, safety_checker: bool = False, **_ignored):
        import diffusers
        import torch

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        torch_dtype = {"auto": torch.float16 if self.device == "cuda" else torch.float32,
                       "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
        extra = {} if safety_checker else {"safety_checker": None, "requires_safety_checker": False}
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(model, revision=revision, dtype=torch_dtype, **extra)
        if safety_checker and pipe.safety_checker is None:
            raise ConfigError(f"render.safety_checker is on but {model} has no safety checker")
        pipe.scheduler = getattr(diffusers, _SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        if compile:
            self.pipe.unet = torch.compile(self.pipe.unet)

    def render(self, prompts: list[str], seeds: list[int], settings: dict) -> list[dict]:
        import numpy as np
        import torch

        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        with torch.inference_mode():
            out = self.pipe(
                prompts, num_inference_steps=settings["steps"], guidance_scale=settings["guidance_scale"],
                eta=settings["eta"], height=settings["height"], width=settings["width"], generator=generators,
                output_type="np",
            )
        flagged = out.nsfw_content_detected or [False] * len(prompts)
        results = []
        for image, nsfw in zip(out.images, flagged, strict=True):
            problem = image_problem(image) or ("nsfw" if nsfw else None)
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
