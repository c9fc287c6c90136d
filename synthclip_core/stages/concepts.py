"""Concepts: the bank, normalised and identified, cut into partitions of caption work."""

from __future__ import annotations

import json
import time

from ..concepts import load_bank
from ..config import ConceptsConfig, fingerprinted
from ..pins import scheme_of
from ..schemas import to_parquet_bytes
from .common import lineage, part_name
from .stage import Run, Stage, StageSummary

NAME = "concepts"
VERSION = 2
MANIFEST = "manifest.json"  # the bank's counts, for people: how many concepts, how many dropped and why


def run_concepts(run: Run) -> StageSummary:
    if (finished := run.finished(NAME)) is not None:
        return finished
    store, cfg = run.store, run.config.concepts
    summary = StageSummary(NAME)
    started = time.time()
    bank = load_bank(cfg.source, cfg.column, cfg.limit, run.config.seed, cfg.num_shards, cfg.shard_index)
    table = bank.table()
    committed = store.committed(NAME)
    outputs = []
    for index, start in enumerate(range(0, table.num_rows, cfg.per_partition)):
        name = part_name(index)
        outputs.append(name)
        if name in committed:
            summary.skipped += 1
            continue
        part = table.slice(start, cfg.per_partition)
        store.commit(NAME, name, to_parquet_bytes(part, NAME),
                     lineage(run.fingerprints[NAME], VERSION, [], started, part.num_rows, source=cfg.source))
        summary.computed += 1
    manifest = {"outputs": outputs, "concepts": table.num_rows, "dropped": bank.dropped, "source": cfg.source}
    store.commit(NAME, MANIFEST, json.dumps(manifest, indent=1).encode(),
                 lineage(run.fingerprints[NAME], VERSION, [], started, table.num_rows, dropped=bank.dropped))
    summary.total, summary.rows, summary.notes = len(outputs), table.num_rows, {"dropped": bank.dropped}
    return run.complete(summary, outputs + [MANIFEST])


def settings(cfg) -> dict:
    return {**fingerprinted(cfg.concepts, scheme_of(cfg)), "seed": cfg.seed}


STAGE = Stage(
    name=NAME,
    version=VERSION,
    section=ConceptsConfig,
    upstream=(),
    run=run_concepts,
    settings=settings,
    description="Load, normalise and partition the concept bank.",
)
