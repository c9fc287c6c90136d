"""Concept coverage of the captions: per concept, captions written, kept, and naming the concept.

Written once all caption partitions are committed (``captions/coverage.parquet``); its commit
record lists the concepts left with no kept caption, which balancing can then not represent.
"""

from __future__ import annotations

import time

import pyarrow as pa

from ..balancing import prepare_text
from ..run import Run
from ..schemas import to_parquet_bytes
from .common import input_ref, lineage, read_concepts, read_table, require_done
from .concepts import MANIFEST as CONCEPTS_MANIFEST

COVERAGE = "coverage.parquet"


def write_coverage(run: Run) -> dict:
    store = run.store
    if COVERAGE in store.committed("captions").get("captions", set()):
        return store.record("captions", COVERAGE)["summary"]
    started = time.time()
    parts = [o for o in require_done(run, "concepts", CONCEPTS_MANIFEST) if o.endswith(".parquet")]
    records = store.records("captions", parts)
    concepts = read_concepts(store, parts).to_pylist()
    counts = {c["concept_id"]: [0, 0, 0] for c in concepts}
    case_sensitive = run.config.balance.case_sensitive
    for part in parts:
        for row in read_table(store, "captions", part).select(["concept_id", "concept", "caption"]).to_pylist():
            entry = counts[row["concept_id"]]
            entry[0] += 1
            if row["caption"]:
                entry[1] += 1
                needle = f" {row['concept'] if case_sensitive else row['concept'].lower()} "
                entry[2] += needle in prepare_text(row["caption"], case_sensitive)
    table = pa.table({
        "concept_id": [c["concept_id"] for c in concepts],
        "concept": [c["concept"] for c in concepts],
        "written": [counts[c["concept_id"]][0] for c in concepts],
        "kept": [counts[c["concept_id"]][1] for c in concepts],
        "naming": [counts[c["concept_id"]][2] for c in concepts],
    })
    zero = [c["concept"] for c in concepts if counts[c["concept_id"]][1] == 0]
    written = sum(v[0] for v in counts.values())
    summary = {
        "concepts": len(concepts), "captions": written,
        "kept": sum(v[1] for v in counts.values()),
        "naming_their_concept": sum(v[2] for v in counts.values()),
        "concepts_without_kept_captions": len(zero), "examples_without_kept_captions": zero[:50],
    }
    inputs = [input_ref(store, "captions", o, records[o]) for o in parts]
    store.commit("captions", COVERAGE, to_parquet_bytes(table, "caption_coverage"),
                 lineage(run.fingerprints["captions"], inputs, started, table.num_rows, summary=summary))
    return summary
