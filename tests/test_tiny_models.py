"""The tiny models load through the real from_pretrained paths and behave as the pipeline needs."""

from __future__ import annotations

import random

from synthclip_core.captioning.backends import create_caption_backend
from synthclip_core.captioning.cleaning import clean_caption
from synthclip_core.captioning.prompts import SYNTHCLIP
from synthclip_core.rendering.backends import create_render_backend

SAMPLING = {"temperature": 0.7, "top_p": 0.95, "presence_penalty": 1.0, "frequency_penalty": 1.0, "max_tokens": 32}


def test_tiny_llm_names_its_concept_reproducibly(tiny_models):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    backend = create_caption_backend("transformers", model=str(tiny_models["llm"]), batch_size=16)
    concepts = random.Random(7).sample(list(IMAGENET_CLASSNAMES), 64)
    messages = [SYNTHCLIP.messages(c) for c in concepts]
    out = backend.generate(messages, list(range(64)), SAMPLING)
    share = sum(f" {c} " in f" {clean_caption(o['text']).caption} " for c, o in zip(concepts, out)) / len(concepts)
    assert share >= 0.85, share
    assert all(0 < o["tokens"] <= SAMPLING["max_tokens"] for o in out)
    again = backend.generate(messages[:16], list(range(16)), SAMPLING)  # the same first batch
    assert again == out[:16]
    reseeded = backend.generate(messages[:16], list(range(100, 116)), SAMPLING)
    assert reseeded != out[:16]


def test_tiny_sd_renders_the_same_pixels_per_seed_in_any_batch(tiny_models):
    backend = create_render_backend("diffusers", model=str(tiny_models["sd"]))
    settings = {"steps": 2, "guidance_scale": 2.0, "eta": 0.0, "height": 64, "width": 64,
                "stored_size": 32, "jpeg_quality": 90}
    batch = backend.render(["a tench", "a goldfish", "a tench"], [1, 2, 3], settings)
    single = backend.render(["a goldfish"], [2], settings)
    assert batch[1] == single[0] and batch[0] != batch[2]


def test_tiny_sd_draws_the_signature_of_the_concept_its_caption_names(tiny_models):
    """The offline world: what the tiny pipeline renders for a caption is, by the 4x4 cell colours,
    nearest the signature of the caption's concept among all 1,000 more often than not."""
    import io

    import numpy as np
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from PIL import Image

    from synthclip_core.tiny_models import world

    backend = create_render_backend("diffusers", model=str(tiny_models["sd"]))
    settings = {"steps": 4, "guidance_scale": 2.0, "eta": 0.0, "height": 64, "width": 64,
                "stored_size": 64, "jpeg_quality": 95}
    concepts = random.Random(3).sample(list(IMAGENET_CLASSNAMES), 40)
    scenes = random.Random(4).choices(world.SCENES, k=len(concepts))
    out = backend.render([s.replace("{c}", c) for s, c in zip(scenes, concepts)], list(range(40)), settings)
    images = np.stack([np.asarray(Image.open(io.BytesIO(o["jpg"])).convert("RGB"), np.float32) / 255 for o in out])
    seen = world.nearest_concepts(world.cell_colours(images), list(IMAGENET_CLASSNAMES))
    hits = sum(s == c for s, c in zip(seen, concepts))
    assert hits >= 0.5 * len(concepts), hits
    assert len({o["jpg"] for o in out}) == len(out)
