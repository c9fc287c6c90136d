"""Shards: the training split regrouped into webdataset shards that open_clip's trainer reads.

Each shard ``shards/NNNNN.tar`` holds ``{key}.jpg``, ``{key}.txt`` (the caption) and ``{key}.json``
(the sample's lineage) per sample, keyed as img2dataset does (shard id, then index in the shard),
then ``NNNNN_stats.json``; ``sizes.json`` (webdataset's and open_clip's sample counts) comes last.
Samples are ordered by image partition and row, and tar headers carry a fixed mtime, so shards are
byte-identical across runs.
"""

from __future__ import annotations

import io
import json
import time

import pyarrow.compute as pc
import webdataset as wds

from ..config import ShardsConfig
from .common import data_parts, input_ref, lineage, read_table
from .stage import Run, Stage, StageBlocked, StageSummary

NAME = "shards"
VERSION = 2
SIZES = "sizes.json"
META_COLUMNS = ("image_id", "caption_id", "concept_id", "matched_concept_ids", "index", "seed", "rerendered", "model",
                "scheduler", "steps", "guidance_scale", "width", "height", "sha256")


def shard_name(index: int) -> str:
    return f"{index:05d}.tar"


def run_shards(run: Run) -> StageSummary:
    if (finished := run.finished(NAME)) is not None:
        return finished
    store, per_shard = run.store, run.config.shards.samples_per_shard
    summary = StageSummary(NAME)
    image_parts = data_parts(run.require("images").outputs)
    started = time.time()
    records = store.records("images", image_parts)
    inputs = {o: input_ref(store, "images", o, records[o]) for o in image_parts}
    committed = store.committed(NAME)
    sizes: dict[str, int] = {}
    outputs: list[str] = []
    buffer: list[dict] = []
    sources: dict[str, None] = {}  # the image partitions of the buffered samples, in order

    def flush() -> None:
        name = shard_name(len(sizes))
        sizes[name] = len(buffer)
        stats_name = name.replace(".tar", "_stats.json")
        outputs.extend([name, stats_name])
        if name in committed and stats_name in committed:
            summary.skipped += 1
        else:  # a shard's record names the partitions its samples come from, not all of them
            base = lineage(run.fingerprints[NAME], VERSION, [inputs[p] for p in sources], started, len(buffer))
            shard = len(sizes) - 1
            store.commit(NAME, name, _tar_bytes(shard, buffer, per_shard), base)
            stats = {"count": len(buffer), "successes": len(buffer), "failed_to_render": 0,
                     "first_key": sample_key(shard, 0, per_shard), "last_key": sample_key(shard, len(buffer) - 1, per_shard)}
            store.commit(NAME, stats_name, json.dumps(stats, indent=1).encode(), base)
            summary.computed += 1
        buffer.clear()
        sources.clear()

    for part in image_parts:
        table = read_table(store, "images", part)
        for row in table.filter(pc.equal(table["split"], "train")).to_pylist():
            buffer.append(row)
            sources[part] = None
            if len(buffer) == per_shard:
                flush()
    if buffer:
        flush()
    if not sizes:
        raise StageBlocked("no training samples to export (every sample is in the eval split or was dropped)")
    store.commit(NAME, SIZES, json.dumps(sizes, indent=1).encode(), lineage(
        run.fingerprints[NAME], VERSION, list(inputs.values()), started, sum(sizes.values())))
    summary.total, summary.rows = len(sizes), sum(sizes.values())
    return run.complete(summary, outputs + [SIZES])


def sample_key(shard: int, index: int, per_shard: int) -> str:
    """img2dataset's key: the shard id (5 digits) then the index in the shard."""
    return f"{shard:05d}{index:0{len(str(max(per_shard - 1, 1)))}d}"


def _tar_bytes(shard: int, rows: list[dict], per_shard: int) -> bytes:
    handle = io.BytesIO()
    with wds.TarWriter(handle, mtime=0.0) as writer:
        for index, row in enumerate(rows):
            key = sample_key(shard, index, per_shard)
            writer.write({
                "__key__": key,
                "jpg": row["jpg"],
                "txt": row["caption"],
                "json": {"key": key, "caption": row["caption"], "split": row["split"],
                         **{k: row[k] for k in META_COLUMNS}},
            })
    return handle.getvalue()


STAGE = Stage(
    name=NAME,
    version=VERSION,
    section=ShardsConfig,
    upstream=("images",),
    run=run_shards,
    description="Write the training split as webdataset shards.",
)
