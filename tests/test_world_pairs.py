"""Real pairs of the offline world: webdataset tars a training source reads, each image its concept's own picture."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from synthclip_core.tiny_models.world import cell_colours, nearest_concepts
from synthclip_core.tiny_models.world_pairs import write_world_pairs
from synthclip_core.training.config import DataSource
from synthclip_core.training.data import iter_shard_samples
from synthclip_core.training.sources import tar_source

CONCEPTS = ["red fox", "tabby cat", "goldfish", "school bus"]


def test_world_pairs_are_a_training_source_whose_pictures_show_their_concept(tmp_path):
    assert write_world_pairs(CONCEPTS, 5, str(tmp_path / "world"), per_shard=8) == 20
    source = tar_source(DataSource(name="world", uri=str(tmp_path / "world")))
    assert source.samples == 20 and len(source.shards) == 3
    samples = [s for url, _ in source.shards for s in iter_shard_samples([url], {})]
    images = np.stack([np.asarray(Image.open(io.BytesIO(s["jpg"])).convert("RGB"), np.float32) / 255 for s in samples])
    read_back = nearest_concepts(cell_colours(images), CONCEPTS)
    captions = [s["txt"].decode() if isinstance(s["txt"], bytes) else s["txt"] for s in samples]
    assert all(concept in caption for concept, caption in zip(read_back, captions))
