"""CLIP score of rendered images against their captions, for best-of-k rendering.

The scorer is an open_clip model by name: ``ARCH:PRETRAINED`` (an open_clip tag such as
``ViT-B-32:openai``, or a checkpoint path), ``local-dir:PATH`` (an open_clip model folder, such as a
run's ``train/model``: the CLIP a first pass trained can choose the images of the next), or
``tiny/clip`` offline. The score is 100 times the cosine of the image and text embeddings, as
CLIPScore defines it, computed on the stored JPEG (what training will see).

A scorer chooses which images a run keeps, so a run identifies it by what it is, not its name:
local weights (:func:`local_weights`) by their content, a tag whose weights open_clip takes from
the hub (:func:`hub_weights`) by the commit pinned when the run began, loaded at that commit.
"""

from __future__ import annotations

import io
import os

from ..errors import ConfigError

BATCH = 64


def local_weights(name: str) -> str | None:
    """The local folder or file a scorer's weights are (``tiny/clip``, ``local-dir:PATH``, a bare
    folder, ``ARCH:PATH``), or None for a tag."""
    from ..tiny_models import resolve_model

    spec = resolve_model(name.removeprefix("local-dir:"))
    if os.path.isdir(spec):
        return spec
    path = name.partition(":")[2]
    return path if path and os.path.exists(path) else None


def hub_weights(name: str) -> tuple[str, str | None] | None:
    """(hub repository, file) of an ``ARCH:TAG`` scorer whose weights open_clip takes from the hub."""
    if local_weights(name) is not None or ":" not in name or name.startswith("local-dir:"):
        return None
    import open_clip

    arch, _, tag = name.partition(":")
    hub = (open_clip.get_pretrained_cfg(arch, tag) or {}).get("hf_hub")
    if not hub:
        return None
    repo, _, filename = hub.rpartition("/") if hub.count("/") >= 2 else (hub.rstrip("/"), "", "")
    return repo.rstrip("/"), filename or None  # 'org/name/' names the repository's default weights file


def tag_url(name: str) -> str | None:
    """The download URL open_clip has for an ``ARCH:TAG`` (OpenAI's name the weights' sha256)."""
    import open_clip

    arch, _, tag = name.partition(":")
    return (open_clip.get_pretrained_cfg(arch, tag) or {}).get("url") or None


class ClipScorer:
    def __init__(self, name: str, device: str = "cpu", commit: str | None = None, field: str = "images.scorer"):
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
                if commit and (hub := hub_weights(name)) is not None:  # the weights at the commit the run pinned
                    from open_clip.pretrained import download_pretrained_from_hf

                    pretrained = download_pretrained_from_hf(hub[0], filename=hub[1], revision=commit)
                model, _, self.preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained or None,
                                                                                  device=device)
                self.tokenizer = open_clip.get_tokenizer(arch)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ConfigError(f"{field}: cannot load {name!r} as an open_clip model "
                              f"({' '.join(str(exc).split())[:200]})") from None
        self.model, self.device = model.eval(), device

    @classmethod
    def of(cls, model, preprocess, tokenizer, device: str) -> "ClipScorer":
        """A scorer of an open_clip model already loaded (a run's own checkpoint)."""
        scorer = cls.__new__(cls)
        scorer.model, scorer.preprocess, scorer.tokenizer, scorer.device = model.eval(), preprocess, tokenizer, device
        return scorer

    def __call__(self, jpgs: list[bytes], texts: list[str]) -> list[float]:
        images, text = self.embed(jpgs, texts)
        return (100 * (images * text).sum(-1)).tolist()

    def embed(self, jpgs: list[bytes], texts: list[str]):
        """Unit embeddings of the images and of the texts (numpy float32, a row each)."""
        import numpy as np
        import torch
        from PIL import Image

        images, text = [], []
        with torch.inference_mode():
            for start in range(0, max(len(jpgs), len(texts)), BATCH):
                if batch := jpgs[start:start + BATCH]:
                    pixels = torch.stack([self.preprocess(Image.open(io.BytesIO(j)).convert("RGB")) for j in batch])
                    images.append(self.model.encode_image(pixels.to(self.device), normalize=True).float().cpu().numpy())
                if batch := texts[start:start + BATCH]:
                    tokens = self.tokenizer(batch).to(self.device)
                    text.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        width = self.model.text_projection.shape[-1] if hasattr(self.model, "text_projection") else 0
        empty = np.zeros((0, width), np.float32)
        return (np.concatenate(images) if images else empty), (np.concatenate(text) if text else empty)
