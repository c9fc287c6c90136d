"""Recommended settings of each text-to-image family, from their model cards: ``images.preset``
fills the fields a config leaves unset (what a config sets wins).

The paper's own settings (SD v1.5, DDIM, 50 steps, guidance 2.0) are in ``configs/synthci-30m.yaml``;
these are the defaults each model's authors recommend, for comparing models on their own terms.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "sd15": {"model": "stable-diffusion-v1-5/stable-diffusion-v1-5", "scheduler": "ddim", "steps": 50,
             "guidance_scale": 7.5, "height": 512, "width": 512},
    "sd2": {"model": "stabilityai/stable-diffusion-2-1", "scheduler": "default", "steps": 50, "guidance_scale": 7.5,
            "height": 768, "width": 768},
    "sdxl": {"model": "stabilityai/stable-diffusion-xl-base-1.0", "scheduler": "default", "steps": 40,
             "guidance_scale": 5.0, "height": 1024, "width": 1024},
    "sd3": {"model": "stabilityai/stable-diffusion-3-medium-diffusers", "scheduler": "default", "steps": 28,
            "guidance_scale": 7.0, "height": 1024, "width": 1024},
    "pixart": {"model": "PixArt-alpha/PixArt-XL-2-1024-MS", "scheduler": "default", "steps": 20, "guidance_scale": 4.5,
               "height": 1024, "width": 1024},
    "flux-schnell": {"model": "black-forest-labs/FLUX.1-schnell", "scheduler": "default", "steps": 4,
                     "guidance_scale": 0.0, "height": 1024, "width": 1024},
    "flux-dev": {"model": "black-forest-labs/FLUX.1-dev", "scheduler": "default", "steps": 50, "guidance_scale": 3.5,
                 "height": 1024, "width": 1024},
}


def with_preset(data: dict) -> dict:
    """An images section with its preset's settings where it sets none; an unknown preset is refused."""
    name = data.get("preset")
    if name is None:
        return data
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return {**PRESETS[name], **data}
