"""Concepts: the bank, normalised and identified, cut into partitions of caption work."""

from __future__ import annotations

import json
import time

from ..concepts import load_bank
from ..run import Run
from ..schemas import to_parquet_bytes
from .common import StageSummary, finished_summary, lineage, part_name

MANIFEST = "manifest.json"


def run_concepts(run: Run) -> StageSummary:
    store, cfg = run.store, run.config.concepts
    if (finished := finished_summary(store, "concepts", MANIFEST)) is not None:
        return finished
    summary = StageSummary("concepts")
    started = time.time()
    bank = load_bank(cfg.source, cfg.column, cfg.limit, run.config.seed, cfg.num_shards, cfg.shard_index)
    table = bank.table()
    committed = store.committed("concepts").get("concepts", set())
    outputs = []
    for index, start in enumerate(range(0, table.num_rows, cfg.per_partition)):
        name = part_name(index)
        outputs.append(name)
        if name in committed:
            summary.skipped += 1
            continue
        part = table.slice(start, cfg.per_partition)
        store.commit("concepts", name, to_parquet_bytes(part, "concepts"),
                     lineage(run.fingerprints["concepts"], [], started, part.num_rows,
                             source=cfg.source))
        summary.computed += 1
    manifest = {"outputs": outputs, "concepts": table.num_rows, "dropped": bank.dropped, "source": cfg.source}
    store.commit("concepts", MANIFEST, json.dumps(manifest, indent=1).encode(),
                 lineage(run.fingerprints["concepts"], [], started, table.num_rows, outputs=outputs,
                         dropped=bank.dropped))
    summary.total, summary.rows, summary.notes = len(outputs), table.num_rows, {"dropped": bank.dropped}
    return summary
