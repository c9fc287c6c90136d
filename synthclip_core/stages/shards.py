"""Shards: the training split regrouped into webdataset shards that open_clip's trainer reads.

Each shard ``shards/NNNNN.tar`` holds ``{key}.jpg``, ``{key}.txt`` (the caption) and ``{key}.json``
(the sample's lineage, and in a run with rewrites the caption's rewrites that count, as ``rewrites``)
per sample, keyed as img2dataset does (shard id, then index in the shard);
beside it, as img2dataset writes them, ``NNNNN.parquet`` (per sample: key, caption, status, sizes,
sha256 and the sample's ids) and ``NNNNN_stats.json``, so tools that read img2dataset output read
these shards too; ``manifest.parquet`` (per shard: samples, bytes, sha256) and ``sizes.json``
(webdataset's and open_clip's sample counts) come last. Samples are ordered by image partition and
row, and tar headers carry a fixed mtime, so shards are byte-identical across runs.

The plan comes from the image partitions' commit records (their train rows per partition), so
which rows go into which shard is known before any image is read, a committed shard is skipped
without reading its inputs, and shard groups are written in parallel by Ray tasks
(``shards.num_tasks``), each reading the train row groups of the partitions it needs.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import webdataset as wds
from pydantic import Field

from ..captioning.rewriting import kept_by_caption
from ..compute import progress
from ..compute.resources import PoolSpec
from ..config import Section, operational
from ..storage.lineage import lineage
from ..storage.schemas import table_from_rows, to_parquet_bytes
from ..storage.store import RunRef, RunStore
from ..storage.tables import MANIFEST, read_rows, read_table, write_manifest
from .common import data_parts
from .executor import StageContext
from .stage import Estimating, Stage, StageBlocked, StagePlan, StageSummary

NAME = "shards"
VERSION = 2
SIZES = "sizes.json"
TRAIN = {"train"}
META_COLUMNS = ("image_id", "caption_id", "concept_id", "matched_concept_ids", "index", "seed", "rerendered", "model",
                "scheduler", "steps", "guidance_scale", "width", "height", "sha256")
COLUMNS = ["jpg", "caption", "split", *META_COLUMNS]
REWRITE_COLUMNS = ["caption_id", "k", "rewrite", "reject_reason"]
GROUPS_PER_TASK = 4  # shard groups per task of the stage, so a slow group does not hold up the others


class ShardsConfig(Section):
    """Webdataset export."""

    samples_per_shard: int = Field(10000, ge=1, description="Samples per webdataset tar shard.")
    num_tasks: int = operational(1, ge=1, description="Ray tasks writing groups of shards in parallel (1 CPU each; "
                                 "1: in the flow's own process).")


def shard_name(index: int) -> str:
    return f"{index:05d}.tar"


def stats_name(index: int) -> str:
    return f"{index:05d}_stats.json"


def metadata_name(index: int) -> str:
    return f"{index:05d}.parquet"


def shard_outputs(index: int) -> tuple[str, str, str]:
    """What one shard is made of: the tar, its per-sample Parquet and its stats."""
    return shard_name(index), metadata_name(index), stats_name(index)


@dataclass(frozen=True)
class ShardPlan:
    """One shard: its index and its samples as (image partition, first train row, rows) pieces."""

    index: int
    pieces: tuple[tuple[str, int, int], ...]

    @property
    def samples(self) -> int:
        return sum(n for _, _, n in self.pieces)

    @property
    def partitions(self) -> list[str]:
        """The image partitions its samples come from, each once, in order."""
        return list(dict.fromkeys(p for p, _, _ in self.pieces))


def plan_from_counts(train_rows: list[tuple[str, int]], per_shard: int) -> list[ShardPlan]:
    """Shards of ``per_shard`` samples over the train rows of the partitions, in order; the last
    shard holds the rest."""
    plans, pieces, filled = [], [], 0
    for part, rows in train_rows:
        first = 0
        while first < rows:
            take = min(rows - first, per_shard - filled)
            pieces.append((part, first, take))
            first, filled = first + take, filled + take
            if filled == per_shard:
                plans.append(ShardPlan(len(plans), tuple(pieces)))
                pieces, filled = [], 0
    if pieces:
        plans.append(ShardPlan(len(plans), tuple(pieces)))
    return plans


def train_rows(store: RunStore, part: str, record: dict) -> int:
    """A partition's train rows: counted in its commit record (``splits``), or, for partitions
    committed before records counted them, from its ``split`` column alone."""
    if "splits" in record:
        return int(record["splits"].get("train", 0))
    with store.open("images", part) as handle:
        split = pq.read_table(handle, columns=["split"]).column("split")
    return int(pc.sum(pc.equal(split, "train")).as_py() or 0)


def make(ctx: StageContext) -> StageSummary:
    store, cfg = ctx.store, ctx.config.shards
    image_parts = data_parts(ctx.run.require("images").outputs)
    started = time.time()
    inputs, counts = {}, []
    for part, record in store.iter_records("images", image_parts):  # keeps a reference and a count of each
        inputs[part] = ctx.input_ref("images", part, record)
        counts.append((part, train_rows(store, part, record)))
    if ctx.run.has("rewrites"):  # the texts of each sample besides its caption: the rewrites partitions
        for part, record in store.records("rewrites", data_parts(ctx.run.require("rewrites").outputs)).items():
            inputs[f"rewrites/{part}"] = ctx.input_ref("rewrites", part, record)
    plans = plan_from_counts(counts, cfg.samples_per_shard)
    if not plans:
        raise StageBlocked("no training samples to export (every sample is in the eval split or was dropped)")
    committed = ctx.committed()
    pending = [p for p in plans if not committed.issuperset(shard_outputs(p.index))]
    summary = StageSummary(NAME, total=len(plans), skipped=len(plans) - len(pending), computed=len(pending))
    work = {"ref": ctx.run.ref.as_dict(), "fingerprint": ctx.fingerprint, "per_shard": cfg.samples_per_shard,
            "started": started, "rewrites": ctx.run.has("rewrites")}
    groups = [[(p, [inputs[o] for o in p.partitions] + _rewrite_inputs(inputs, p)) for p in group]
              for group in _groups(pending, cfg.num_tasks * GROUPS_PER_TASK)]
    specs, done = workers(ctx.config), 0
    spec = specs[0] if specs and len(groups) > 1 else None  # one group (or one task asked for): in this process
    for written in ctx.run_tasks(spec, write_group, [(work, group) for group in groups]):
        done += written
        progress.report(NAME, done, len(pending))
    whole = ctx.lineage(list(inputs.values()), sum(p.samples for p in plans), started)
    write_manifest(store, NAME, [shard_name(p.index) for p in plans], whole)
    sizes = {shard_name(p.index): p.samples for p in plans}
    store.commit(NAME, SIZES, json.dumps(sizes, indent=1).encode(), whole)
    summary.rows = sum(sizes.values())
    summary.outputs = [name for p in plans for name in shard_outputs(p.index)] + [MANIFEST, SIZES]
    return summary


def _rewrite_inputs(inputs: dict[str, dict], plan: ShardPlan) -> list[dict]:
    """The rewrites partitions a shard's samples take texts from (none in a run without rewrites)."""
    names = dict.fromkeys(f"rewrites/{rewrites_of(p)}" for p in plan.partitions)
    return [inputs[n] for n in names if n in inputs]


def _groups(plans: list[ShardPlan], count: int) -> list[list[ShardPlan]]:
    """``plans`` in at most ``count`` contiguous groups of nearly equal size."""
    count = max(1, min(count, len(plans)))
    size, extra = divmod(len(plans), count)
    groups, start = [], 0
    for i in range(count):
        stop = start + size + (i < extra)
        groups.append(plans[start:stop])
        start = stop
    return [g for g in groups if g]


def write_group(work: dict, group: list[tuple[ShardPlan, list[dict]]]) -> int:
    """Write and commit each shard of a group (with its stats), reading each image partition's
    train rows once; returns the shards written."""
    store, per_shard = RunRef(**work["ref"]).store(), work["per_shard"]
    cached: tuple[str, pa.Table] | None = None
    texts: tuple[str, dict[str, list[str]]] | None = None
    for plan, inputs in group:
        rows: list[dict] = []
        for part, first, count in plan.pieces:
            if cached is None or cached[0] != part:
                cached = (part, read_rows(store, "images", part, "split", TRAIN, COLUMNS))
            piece = cached[1].slice(first, count).to_pylist()
            if work["rewrites"]:
                if texts is None or texts[0] != rewrites_of(part):
                    table = read_table(store, "rewrites", rewrites_of(part), "rewrites", REWRITE_COLUMNS)
                    texts = (rewrites_of(part), kept_by_caption(table))
                for row in piece:
                    row["rewrites"] = texts[1].get(row["caption_id"], [])
            rows += piece
        # a shard's record names the partitions its samples come from, not all of them
        base = lineage(work["fingerprint"], VERSION, inputs, work["started"], len(rows))
        store.commit(NAME, shard_name(plan.index), tar_bytes(plan.index, rows, per_shard), base)
        store.commit(NAME, metadata_name(plan.index), _metadata_bytes(plan.index, rows, per_shard), base)
        stats = {"count": len(rows), "successes": len(rows), "failed_to_render": 0,
                 "first_key": sample_key(plan.index, 0, per_shard), "last_key": sample_key(plan.index, len(rows) - 1, per_shard)}
        store.commit(NAME, stats_name(plan.index), json.dumps(stats, indent=1).encode(), base)
    return len(group)


def rewrites_of(image_part: str) -> str:
    """The rewrites partition of an image partition: ``part-i-j`` (slice j of kept-caption partition
    ``part-i``) has its captions' rewrites in ``rewrites/part-i``."""
    return image_part[: image_part.rindex("-")] + ".parquet"


def sample_key(shard: int, index: int, per_shard: int) -> str:
    """img2dataset's key: the shard id (5 digits) then the index in the shard."""
    return f"{shard:05d}{index:0{len(str(max(per_shard - 1, 1)))}d}"


def tar_bytes(shard: int, rows: list[dict], per_shard: int) -> bytes:
    handle = io.BytesIO()
    with wds.TarWriter(handle, mtime=0.0) as writer:
        for index, row in enumerate(rows):
            key = sample_key(shard, index, per_shard)
            writer.write({
                "__key__": key,
                "jpg": row["jpg"],
                "txt": row["caption"],
                "json": {"key": key, "caption": row["caption"], "split": row["split"],
                         **{k: row[k] for k in META_COLUMNS}, **({"rewrites": row["rewrites"]} if "rewrites" in row else {})},
            })
    return handle.getvalue()


def _metadata_bytes(shard: int, rows: list[dict], per_shard: int) -> bytes:
    """The shard's per-sample Parquet in img2dataset's layout, in the tar's order (with each sample's
    rewrites in a run that has them)."""
    kind = "shard_metadata_texts" if rows and "rewrites" in rows[0] else "shard_metadata"
    table = table_from_rows([{
        "url": None, "caption": row["caption"], "image_id": row["image_id"], "caption_id": row["caption_id"],
        "concept_id": row["concept_id"], "seed": row["seed"], "model": row["model"],
        "key": sample_key(shard, index, per_shard), "status": "success", "error_message": None,
        "width": row["width"], "height": row["height"], "original_width": row["width"], "original_height": row["height"],
        "sha256": row["sha256"], "rewrites": row.get("rewrites"),
    } for index, row in enumerate(rows)], kind)
    return to_parquet_bytes(table, kind)


def workers(cfg) -> list[PoolSpec]:
    """Ray tasks of 1 CPU writing shard groups, where ``shards.num_tasks`` asks for more than one."""
    n = cfg.shards.num_tasks
    return [PoolSpec(count=n, kind="tasks", label=NAME, fields=("shards.num_tasks",))] if n > 1 else []


SHARD_SAMPLE_OVERHEAD = 1536  # tar headers (3 members x 512 B) per sample, besides its image and text


def estimate(plan: Estimating) -> StagePlan:
    """The images that train (the held-out split stays out), in shards of ``samples_per_shard``."""
    cfg, rates = plan.cfg, plan.rates
    train_pairs = round(plan.rows("images") * plan.train_share(plan.rows("concepts")))
    image_bytes = cfg.images.stored_size ** 2 * rates.bytes_per_image_pixel
    return StagePlan(NAME, math.ceil(train_pairs / cfg.shards.samples_per_shard), train_pairs,
                     stored_bytes=round(train_pairs * (image_bytes + rates.bytes_per_caption_row + SHARD_SAMPLE_OVERHEAD)),
                     basis="each train pair's JPEG, text and json, with tar headers")


STAGE = Stage(name=NAME, version=VERSION, upstream=("images", "rewrites"), make=make, section=ShardsConfig, workers=workers,
              estimate=estimate, description="Write the training split as webdataset shards.")
