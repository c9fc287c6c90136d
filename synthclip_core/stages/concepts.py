"""Concepts: the bank, normalised, identified and (``concepts.safety``) screened for unsafe
concepts, cut into partitions of caption work."""

from __future__ import annotations

import json
import time

from ..config import ConceptsConfig, fingerprinted
from ..curation.concepts import ConceptBank, load_bank
from ..curation.safety import blocklist_sha256, screen
from ..fingerprint import model_identity
from ..runs.pins import scheme_of
from ..storage.schemas import table_from_rows, to_parquet_bytes
from .common import lineage, part_name, read_table
from .stage import Run, Stage, StageSummary

NAME = "concepts"
VERSION = 2
MANIFEST = "manifest.json"  # the bank's counts, for people: how many concepts, how many dropped and why
UNSAFE = "unsafe.parquet"  # the concepts the safety screen dropped, with their reasons (concepts.safety)


def run_concepts(run: Run) -> StageSummary:
    if (finished := run.finished(NAME)) is not None:
        return finished
    store, cfg = run.store, run.config.concepts
    summary = StageSummary(NAME)
    started = time.time()
    bank = load_bank(cfg.source, cfg.column, cfg.limit, run.config.seed, cfg.num_shards, cfg.shard_index)
    committed = store.committed(NAME)
    outputs = []
    unsafe = []
    if cfg.safety.active:
        bank, unsafe = _screened(run, bank, committed, started)
        outputs.append(UNSAFE)
    table = bank.table()
    for index, start in enumerate(range(0, table.num_rows, cfg.per_partition)):
        name = part_name(index)
        outputs.insert(index, name)
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
    if cfg.safety.active:
        summary.notes["unsafe"] = {"dropped": len(unsafe), "examples": unsafe[:50]}
    return run.complete(summary, outputs + [MANIFEST])


def _screened(run: Run, bank: ConceptBank, committed: set[str], started: float) -> tuple[ConceptBank, list[dict]]:
    """The bank less its unsafe concepts, and those (concept, reason), committed as ``unsafe.parquet``
    (read back where it is, so a resumed run does not classify again)."""
    store, safety = run.store, run.config.concepts.safety
    if UNSAFE in committed:
        unsafe = read_table(store, NAME, UNSAFE, "unsafe_concepts").to_pylist()
    else:
        unsafe = [{"concept": bank.concepts[i], "reason": reason} for i, reason in screen(bank.concepts, safety).items()]
        store.commit(NAME, UNSAFE, to_parquet_bytes(table_from_rows(unsafe, "unsafe_concepts"), "unsafe_concepts"),
                     lineage(run.fingerprints[NAME], VERSION, [], started, len(unsafe), blocklist=safety.blocklist,
                             classifier=safety.classifier, threshold=safety.threshold))
    dropped = {row["concept"] for row in unsafe}
    return ConceptBank([c for c in bank.concepts if c not in dropped], {**bank.dropped, "unsafe": len(dropped)}), unsafe


def settings(cfg) -> dict:
    """The section's settings; a blocklist by its terms and a classifier by its identity."""
    out = {**fingerprinted(cfg.concepts, scheme_of(cfg)), "seed": cfg.seed}
    safety = cfg.concepts.safety
    if safety.blocklist:
        out["safety"]["blocklist"] = {"uri": safety.blocklist, "sha256": blocklist_sha256(safety.blocklist)}
    if safety.classifier:
        out["safety"]["classifier"] = model_identity(safety.classifier, None, scheme_of(cfg))
    return out


STAGE = Stage(
    name=NAME,
    version=VERSION,
    section=ConceptsConfig,
    upstream=(),
    run=run_concepts,
    settings=settings,
    description="Load, normalise and partition the concept bank.",
)
