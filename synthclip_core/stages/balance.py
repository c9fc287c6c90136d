"""Balancing: one whole-run pass over the committed captions (MetaCLIP curation).

Reads every caption partition in partition and row order (so duplicate resolution is
deterministic), balances, assigns the held-out split, and writes the kept captions regrouped into
partitions of ``per_partition`` rows, then ``stats.parquet`` (per-concept counts before and after),
whose commit record names all outputs.
"""

from __future__ import annotations

import time

import pyarrow as pa

from ..balancing import balance_captions
from ..run import Run
from ..schemas import to_parquet_bytes
from .captions import plan_captions
from .common import (
    StageBlocked,
    StageSummary,
    finished_summary,
    input_ref,
    lineage,
    part_name,
    read_table,
    require_done,
)
from .concepts import MANIFEST as CONCEPTS_MANIFEST

STATS = "stats.parquet"


def run_balance(run: Run) -> StageSummary:
    store, cfg = run.store, run.config.balance
    if (finished := finished_summary(store, "balanced", STATS)) is not None:
        return finished
    summary = StageSummary("balanced")
    pending, _ = plan_captions(run)
    if pending:
        raise StageBlocked(f"{len(pending)} caption partitions are not committed; resume the captions stage first")
    started = time.time()
    concept_parts = [o for o in require_done(run, "concepts", CONCEPTS_MANIFEST) if o.endswith(".parquet")]
    concepts = pa.concat_tables([read_table(store, "concepts", o) for o in concept_parts])
    caption_parts = concept_parts  # caption partition i is made from concept partition i
    caption_records = store.records("captions", caption_parts)
    inputs = [input_ref(store, "captions", o, caption_records[o]) for o in caption_parts]
    captions = [row for o in caption_parts
                for row in read_table(store, "captions", o).select(["caption_id", "concept_id", "caption"]).to_pylist()]
    names, ids = concepts.column("concept").to_pylist(), concepts.column("concept_id").to_pylist()
    result = balance_captions(captions, names, ids, cfg.threshold, run.config.seed,
                              cfg.eval_fraction, cfg.case_sensitive)
    committed = store.committed("balanced").get("balanced", set())
    outputs = []
    for index, start in enumerate(range(0, len(result.rows), cfg.per_partition)):
        name = part_name(index)
        outputs.append(name)
        if name in committed:
            summary.skipped += 1
            continue
        rows = result.rows[start:start + cfg.per_partition]
        store.commit("balanced", name, to_parquet_bytes(pa.Table.from_pylist(rows), "balanced"),
                     lineage(run.fingerprints["balanced"], inputs, started, len(rows),
                             threshold=cfg.threshold, seed=run.config.seed))
        summary.computed += 1
    stats = pa.table({
        "concept_id": ids,
        "concept": names,
        "count_before": [result.count_before.get(i, 0) for i in range(len(ids))],
        "count_after": [result.count_after.get(i, 0) for i in range(len(ids))],
        "keep_probability": [result.probabilities.get(i, 1.0) for i in range(len(ids))],
    })
    kept = len(result.rows)
    store.commit("balanced", STATS, to_parquet_bytes(stats, "balance_stats"), lineage(
        run.fingerprints["balanced"], inputs, started, stats.num_rows, outputs=outputs,
        captions_in=len(captions), captions_kept=kept, dropped=result.dropped,
        eval_rows=sum(1 for r in result.rows if r["split"] == "eval"),
    ))
    summary.total, summary.rows = len(outputs), kept
    summary.notes = {"captions_in": len(captions), "kept": kept, "dropped": result.dropped}
    return summary
