"""Best-of-k rendering: k candidates per image from their own seeds, the one the CLIP scorer ranks
highest kept, every candidate's seed and score in the partition's lineage; k = 1 renders what the
stage rendered before; the scorer an open_clip model by name (tiny/clip offline)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from synthclip_core.errors import ConfigError
from synthclip_core.ids import derive_seed
from synthclip_core.rendering.scoring import ClipScorer
from synthclip_core.stages.images import ImagesConfig
from synthclip_core.storage.store import RunStore
from synthclip_core.storage.tables import read_table

SAMPLER = {"steps": 2, "guidance_scale": 2.0, "eta": 0.0, "height": 64, "width": 64, "stored_size": 64, "jpeg_quality": 90}


def _render(tmp_path: Path, run_id: str, best_of: int | None, model: str) -> tuple[RunStore, dict]:
    """One partition of three captions through the render worker, as an actor runs it (best_of
    None: the settings as the stage made them before best-of-k existed)."""
    from synthclip_core.stages.executor import PartitionMaker
    from synthclip_core.stages.images import RenderWork
    from synthclip_core.stages.stage import WorkItem
    from synthclip_core.storage.schemas import to_parquet_bytes
    from synthclip_core.storage.store import RunRef

    ref = RunRef(str(tmp_path), run_id)
    store = ref.store()
    rows = [{"caption_id": f"c{i}", "concept_id": "x", "caption": caption, "matched_concept_ids": ["x"], "split": "train"}
            for i, caption in enumerate(["a tabby cat on a sofa", "a red fox in the snow", "a goldfish in a bowl"])]
    record = store.commit("balanced", "part-00000.parquet", to_parquet_bytes(pa.Table.from_pylist(rows), "balanced"))
    settings = {"backend": "diffusers", "model": model, "revision": None, "dtype": "float32", "compile": False,
                "safety_checker": False, "scheduler": "ddim", "batch_size": 4, "images_per_caption": 1,
                "pipeline": "auto", "offload": "none", "device_map": None, "best_of": best_of, "scorer": "tiny/clip",
                "scorer_identity": {"name": "tiny/clip"}, "sampler": SAMPLER, "seed": 0,
                "model_identity": {"name": "tiny/sd"}, "model_label": "tiny/sd@x"}
    if best_of is None:
        settings = {k: v for k, v in settings.items() if k not in ("best_of", "scorer", "scorer_identity")}
    item = WorkItem("images", "part-00000-000.parquet", "f", 3, ({"stage": "balanced", "output": "part-00000.parquet",
                                                                  "sha256": record["sha256"]},), offset=0, length=3)
    return store, PartitionMaker(RenderWork, settings, ref.as_dict())(item)


def test_the_best_of_k_candidates_is_kept_and_every_candidate_is_in_lineage(tiny_models, tmp_path):
    store, record = _render(tmp_path, "best", 3, str(tiny_models["sd"]))
    table = read_table(store, "images", "part-00000-000.parquet").to_pylist()  # jpg as bytes, as stages read it
    chosen = record["best_of"]
    assert chosen["k"] == 3 and chosen["scorer"]["name"] == "tiny/clip" and len(chosen["images"]) == 3
    scorer = ClipScorer("tiny/clip")
    for row in table:
        entry = chosen["images"][row["image_id"]]
        first = entry["seeds"][0]
        assert entry["seeds"] == [first, derive_seed(first, "candidate", 1), derive_seed(first, "candidate", 2)]
        assert row["seed"] == entry["seeds"][entry["kept"]] and entry["kept"] == entry["scores"].index(max(entry["scores"]))
        assert scorer([row["jpg"]], [row["caption"]])[0] == pytest.approx(max(entry["scores"]), abs=1e-3)
    assert len({row["seed"] for row in table}) == 3


def test_best_of_one_renders_what_the_stage_rendered_before(tiny_models, tmp_path):
    _, one = _render(tmp_path, "one", 1, str(tiny_models["sd"]))
    _, plain = _render(tmp_path, "plain", None, str(tiny_models["sd"]))
    assert one["sha256"] == plain["sha256"] and "best_of" not in one


def test_best_of_is_off_by_default_and_a_bad_scorer_is_one_clear_error():
    assert ImagesConfig.model_validate({"model": "tiny/sd"}).best_of == 1
    with pytest.raises(ConfigError, match="images.scorer: cannot load 'NoSuchArch:nothing'"):
        ClipScorer("NoSuchArch:nothing")
