"""A procedural image-text set where the right answer is known: coloured shapes with captions.

Twelve classes (four colours x three shapes), drawn at random places and sizes on a light
background, written as webdataset shards like the export's. Small enough to train a tiny CLIP
on a CPU in seconds, hard enough that only a model that learned colour and shape scores well.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (235, 200, 20)}
SHAPES = ("circle", "square", "triangle")
CLASSES = [f"{c} {s}" for c in COLOURS for s in SHAPES]
TEMPLATES = ("a {} .", "a photo of a {} .", "a {} on a plain background .", "a drawing of a {} .")


def draw(label: str, rng: random.Random, size: int = 64) -> bytes:
    from PIL import Image, ImageDraw

    colour, shape = label.split()
    grey = rng.randint(200, 250)
    image = Image.new("RGB", (size, size), (grey, grey, grey))
    d = ImageDraw.Draw(image)
    r = rng.randint(size // 6, size // 3)
    x, y = rng.randint(r, size - r), rng.randint(r, size - r)
    fill = tuple(max(0, min(255, v + rng.randint(-20, 20))) for v in COLOURS[colour])
    if shape == "circle":
        d.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    elif shape == "square":
        d.rectangle((x - r, y - r, x + r, y + r), fill=fill)
    else:
        d.polygon(((x, y - r), (x - r, y + r), (x + r, y + r)), fill=fill)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def samples(per_class: int, seed: int) -> list[tuple[str, bytes, str, int]]:
    """(key, jpeg, caption, class index), classes interleaved."""
    rng = random.Random(seed)
    rows = []
    for i in range(per_class):
        for label_index, label in enumerate(CLASSES):
            caption = rng.choice(TEMPLATES).format(label)
            rows.append((f"s{seed}-{i:04d}-{label_index:02d}", draw(label, rng), caption, label_index))
    return rows


def write_shards(rows: list[tuple[str, bytes, str, int]], directory: Path, per_shard: int) -> list[tuple[str, int]]:
    """webdataset tars of ``per_shard`` samples; returns (path, samples) per shard."""
    import webdataset as wds

    directory.mkdir(parents=True, exist_ok=True)
    shards = []
    for index, start in enumerate(range(0, len(rows), per_shard)):
        path = directory / f"{index:05d}.tar"
        chunk = rows[start:start + per_shard]
        with wds.TarWriter(str(path)) as sink:
            for key, jpg, caption, _ in chunk:
                sink.write({"__key__": key, "jpg": jpg, "txt": caption})
        shards.append((str(path), len(chunk)))
    return shards
