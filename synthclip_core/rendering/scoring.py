"""CLIP score of rendered images against their captions, for best-of-k rendering.

The scorer is an open_clip model by name: ``ARCH:PRETRAINED`` (an open_clip tag such as
``ViT-B-32:openai``, or a checkpoint path), ``local-dir:PATH`` (an open_clip model folder, such as a
run's ``train/model``: the CLIP a first pass trained can choose the images of the next), or
``tiny/clip`` offline. The score is 100 times the cosine of the image and text embeddings, as
CLIPScore defines it, computed on the stored JPEG (what training will see).
"""

from __future__ import annotations

import io
import os

from ..errors import ConfigError

BATCH = 64


class ClipScorer:
    def __init__(self, name: str, device: str = "cpu"):
        import open_clip

        from ..clip_models import register_model_configs
        from ..tiny_models import resolve_model

        register_model_configs()
        spec = resolve_model(name)
        if os.path.isdir(spec):
            spec = f"local-dir:{spec}"
        try:
            if spec.startswith("local-dir:"):
                model, _, self.preprocess = open_clip.create_model_and_transforms(spec, device=device)
                self.tokenizer = open_clip.get_tokenizer(spec)
            else:
                arch, _, pretrained = spec.partition(":")
                model, _, self.preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained or None,
                                                                                  device=device)
                self.tokenizer = open_clip.get_tokenizer(arch)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ConfigError(f"images.scorer: cannot load {name!r} as an open_clip model "
                              f"({' '.join(str(exc).split())[:200]})") from None
        self.model, self.device = model.eval(), device

    def __call__(self, jpgs: list[bytes], texts: list[str]) -> list[float]:
        import torch
        from PIL import Image

        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(jpgs), BATCH):
                images = torch.stack([self.preprocess(Image.open(io.BytesIO(j)).convert("RGB"))
                                      for j in jpgs[start:start + BATCH]]).to(self.device)
                text = self.tokenizer(texts[start:start + BATCH]).to(self.device)
                a = self.model.encode_image(images, normalize=True)
                b = self.model.encode_text(text, normalize=True)
                scores += (100 * (a * b).sum(-1)).float().cpu().tolist()
        return scores
