"""Text-to-image with diffusers, batched, one seeded generator per image.

Per-image generators make every image a function of its own seed only, so a resumed or
re-batched partition renders the same pixels as an uninterrupted one (same backend and device
type). Attention runs through PyTorch's scaled-dot-product kernels (diffusers' default).
"""

from __future__ import annotations

import io

_SCHEDULERS = {"ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "euler": "EulerDiscreteScheduler"}


class DiffusersRenderer:
    def __init__(self, model: str, revision: str | None = None, scheduler: str = "ddim",
                 device: str = "auto", dtype: str = "auto"):
        import diffusers
        import torch

        self.device = "cuda" if device == "auto" and torch.cuda.is_available() else (
            "cpu" if device == "auto" else device
        )
        torch_dtype = {"auto": torch.float16 if self.device == "cuda" else torch.float32,
                       "float32": torch.float32, "float16": torch.float16,
                       "bfloat16": torch.bfloat16}[dtype]
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(
            model, revision=revision, dtype=torch_dtype, safety_checker=None,
            requires_safety_checker=False,
        )
        scheduler_cls = getattr(diffusers, _SCHEDULERS[scheduler])
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)

    def render(self, prompts: list[str], seeds: list[int], settings: dict) -> list[bytes]:
        import torch

        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        with torch.inference_mode():
            images = self.pipe(
                prompts,
                num_inference_steps=settings["steps"],
                guidance_scale=settings["guidance_scale"],
                eta=settings["eta"],
                height=settings["height"],
                width=settings["width"],
                generator=generators,
            ).images
        return [_encode_jpeg(img, settings["stored_size"], settings["jpeg_quality"]) for img in images]


def _encode_jpeg(image, size: int, quality: int) -> bytes:
    from PIL import Image

    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
