"""Real pairs of the offline world: each concept's own picture (its signature, as the world draws
it, with a little sensor noise) captioned by a scene sentence, as webdataset tars. They play the
part of photographs in the offline world, so ``synthclip ladder --against world=DIR`` can show
where the tiny text-to-image model's renders meet the world's own pictures."""

from __future__ import annotations

import io
import json
import posixpath
import random

import fsspec
import numpy as np

from .world import GRID, SCENES, signature

SIZE = 64  # pixels per side, as the offline run stores its images
NOISE = 0.04  # standard deviation of the per-pixel noise, in [0, 1] units


def world_image(concept: str, rng: np.random.Generator) -> bytes:
    """A JPEG of the concept's signature, upscaled to SIZE pixels, with seeded noise."""
    from PIL import Image

    cells = (signature(concept).transpose(1, 2, 0) + 1) / 2  # (4, 4, 3) in [0, 1]
    pixels = np.kron(cells, np.ones((SIZE // GRID, SIZE // GRID, 1), np.float32))
    pixels = np.clip(pixels + rng.normal(0, NOISE, pixels.shape), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_world_pairs(concepts: list[str], per_concept: int, out: str, seed: int = 0, per_shard: int = 256) -> int:
    """``per_concept`` pairs of every concept, shuffled, as ``out/NNNNN.tar`` with ``sizes.json``; the pairs written."""
    import webdataset as wds

    rng, order = np.random.default_rng(seed), random.Random(seed)
    pairs = [(concept, order.choice(SCENES).format(c=concept)) for concept in concepts for _ in range(per_concept)]
    order.shuffle(pairs)
    fs, base = fsspec.core.url_to_fs(out)
    fs.makedirs(base, exist_ok=True)
    sizes = {}
    for shard, start in enumerate(range(0, len(pairs), per_shard)):
        buffer = io.BytesIO()
        with wds.TarWriter(buffer, mtime=0.0) as writer:
            for index, (concept, caption) in enumerate(pairs[start:start + per_shard]):
                writer.write({"__key__": f"{shard:05d}{index:04d}", "jpg": world_image(concept, rng), "txt": caption,
                              "json": {"concept": concept}})
        name = f"{shard:05d}.tar"
        fs.pipe_file(posixpath.join(base, name), buffer.getvalue())
        sizes[name] = len(pairs[start:start + per_shard])
    fs.pipe_file(posixpath.join(base, "sizes.json"), json.dumps(sizes, indent=1).encode())
    return len(pairs)
