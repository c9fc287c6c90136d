"""An early ladder's pairs: the train rows of the image partitions a run has committed so far,
written as webdataset tars under the ladder (``snapshot/``), so its rungs train while the run
still renders. Each tar's record names the image partitions it was cut from."""

from __future__ import annotations

import json
import time

import pyarrow.compute as pc

from ..errors import ConfigError
from ..runs.lifecycle import Run
from ..stages.common import data_parts
from ..stages.shards import COLUMNS, TRAIN, plan_from_counts, shard_name, tar_bytes, train_rows
from ..storage.lineage import input_ref, lineage
from ..storage.store import RunStore
from ..storage.tables import read_rows, read_table

SNAPSHOT = "snapshot"
SIZES = "sizes.json"
PER_SHARD = 10_000
VERSION = 1


def committed_images(run: Run) -> list[tuple[str, int]]:
    """The run's image partitions committed so far, each with its train rows, in partition order."""
    store = run.store
    parts = sorted(o for o in store.committed("images") if o.startswith("part-"))
    counts = [(part, train_rows(store, part, record)) for part, record in store.iter_records("images", parts)]
    if not any(n for _, n in counts):
        raise ConfigError(f"run {run.ref.run_id} has no exported shards yet and no committed images with training pairs: "
                          f"a ladder needs at least one rendered image partition")
    return counts


def write_snapshot(run: Run, store: RunStore, counts: list[tuple[str, int]], per_shard: int = PER_SHARD) -> str:
    """The train rows of ``counts``' partitions as tars in ``store``'s ``snapshot/`` (with webdataset's
    ``sizes.json``), committed once: a snapshot already written is kept. Returns its folder's URI."""
    if SIZES in store.committed(SNAPSHOT):
        return store.uri(SNAPSHOT)
    started, sizes = time.time(), {}
    records = dict(run.store.iter_records("images", [p for p, _ in counts]))
    for plan in plan_from_counts([c for c in counts if c[1]], per_shard):
        rows = [row for part, first, count in plan.pieces
                for row in read_rows(run.store, "images", part, "split", TRAIN, COLUMNS).slice(first, count).to_pylist()]
        inputs = [{**input_ref(run.store, "images", part, records[part]), "run_id": run.ref.run_id} for part in plan.partitions]
        store.commit(SNAPSHOT, shard_name(plan.index), tar_bytes(plan.index, rows, per_shard),
                     lineage("snapshot", VERSION, inputs, started, len(rows)))
        sizes[shard_name(plan.index)] = len(rows)
    store.commit(SNAPSHOT, SIZES, json.dumps(sizes, indent=1).encode(), lineage("snapshot", VERSION, [], started, 0))
    return store.uri(SNAPSHOT)


def final_pairs(run: Run) -> int:
    """The training pairs the finished run will hold: its balanced (and top-up) train captions,
    each rendered ``images.images_per_caption`` times (images a safety checker drops are not foreseen)."""
    captions = 0
    for stage in ("balanced", "topup"):
        if run.has(stage) and (done := run.completion(stage)) is not None:
            for part in data_parts(done.outputs):
                split = read_table(run.store, stage, part, "balanced").column("split")
                captions += int(pc.sum(pc.equal(split, "train")).as_py() or 0)
    return captions * run.config.images.images_per_caption
