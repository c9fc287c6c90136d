"""open_clip models by name, including this package's own architectures (``model_configs/``).

``SynthCLIP-Tiny`` is the offline profile's model; any open_clip architecture (``ViT-B-16``, ...)
works the same way. Checkpoints written by training reload with
``open_clip.create_model_and_transforms(name, pretrained=path)`` once the configs are registered.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

CONFIG_DIR = Path(__file__).with_name("model_configs")


@lru_cache(maxsize=1)
def register_model_configs() -> None:
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)


def model_config(name: str) -> dict:
    import open_clip

    register_model_configs()
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ValueError(f"unknown open_clip architecture {name!r}")
    return cfg


def create_model(name: str, pretrained: str | None = None, device: str = "cpu", precision: str = "fp32"):
    """(model, train transform, eval transform, tokenizer); the model returns dicts."""
    import open_clip

    register_model_configs()
    model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
        name, pretrained=pretrained, device=device, precision=precision, output_dict=True,
    )
    return model, preprocess_train, preprocess_val, open_clip.get_tokenizer(name)
