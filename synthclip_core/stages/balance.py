"""Balancing at scale: match and count in parallel, reduce, sample in parallel, report.

1. match (actors): ``captions/part-i`` -> ``balanced/matches/part-i`` (text hash, matched concepts)
2. reduce (here): exact duplicates across the run (first by partition and row wins), counts per
   concept and keep probabilities -> ``counts.parquet``, ``duplicates.parquet``
3. sample (actors): ``matches/part-i`` -> ``balanced/part-i`` (kept captions, split assigned)
4. report (here): ``histogram.png`` and ``stats.parquet`` (count before, expected and actual count
   after, p per concept), whose commit record names every output and holds the summary.
Every output is committed, so a resumed run redoes only what is missing.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..actors import PoolSpec, run_pool
from ..balancing import expected_counts, first_occurrences, held_out_concepts, keep_probabilities
from ..run import Run
from ..schemas import to_parquet_bytes
from .balance_plots import histogram_png
from .balance_workers import read_duplicates
from .common import StageBlocked, StageSummary, data_parts, finished_summary, input_ref, lineage, read_concepts, read_table, require_done
from .concepts import MANIFEST as CONCEPTS_MANIFEST

STATS = "stats.parquet"
COUNTS = "counts.parquet"
DUPLICATES = "duplicates.parquet"
HISTOGRAM = "histogram.png"


def run_balance(run: Run) -> StageSummary:
    store, cfg = run.store, run.config.balance
    if (finished := finished_summary(store, "balanced", STATS)) is not None:
        return finished
    summary = StageSummary("balanced")
    parts = data_parts(require_done(run, "concepts", CONCEPTS_MANIFEST))
    missing = [o for o in parts if o not in store.committed("captions").get("captions", set())]
    if missing:
        raise StageBlocked(f"{len(missing)} caption partitions are not committed; resume the captions stage first")
    spec = PoolSpec(num_actors=cfg.num_workers, num_cpus=1)
    held_out = held_out_concepts(run.config.seed, read_concepts(store, parts).column("concept_id").to_pylist(),
                                 cfg.holdout_concepts) if cfg.holdout_concepts else set()
    settings = {"concept_parts": parts, "case_sensitive": cfg.case_sensitive, "seed": run.config.seed,
                "eval_fraction": cfg.eval_fraction, "threshold": cfg.threshold, "held_out": sorted(held_out)}

    match_jobs = _jobs(run, [(f"matches/{o}", "captions", o, i) for i, o in enumerate(parts)])
    result = run_pool("balanced", run.ref, settings, match_jobs, spec, processor="balance-match", label="matching")
    summary.failures.update(result.failures)
    if summary.failures:
        return summary
    counters = _reduce(run, parts)

    sample_jobs = _jobs(run, [(o, "balanced", f"matches/{o}", i) for i, o in enumerate(parts)])
    result = run_pool("balanced", run.ref, settings, sample_jobs, spec, processor="balance-sample", label="sampling")
    summary.failures.update(result.failures)
    if summary.failures:
        return summary
    summary.computed = len(match_jobs) + len(sample_jobs)
    summary.notes = _report(run, parts, counters)
    summary.pictures = [f"balanced/{HISTOGRAM}"]
    summary.total, summary.rows = len(parts), summary.notes["kept"]
    return summary


def _jobs(run: Run, plan: list[tuple[str, str, str, int]]) -> list[dict]:
    """Jobs for the outputs not yet committed; each names its input and its partition index."""
    store = run.store
    committed = store.committed("balanced").get("balanced", set())
    return [{"output": out, "partition": index, "fingerprint": run.fingerprints["balanced"],
             "inputs": [input_ref(store, stage, src)]}
            for out, stage, src, index in plan if out not in committed]


def _match_column(run: Run, part: str, columns: list[str]) -> pa.Table:
    return read_table(run.store, "balanced", f"matches/{part}", "balance_matches").select(columns)


def _reduce(run: Run, parts: list[str]) -> dict:
    """Duplicates and counts over the whole run; streams the match partitions twice."""
    store = run.store
    committed = store.committed("balanced").get("balanced", set())
    if COUNTS in committed and DUPLICATES in committed:
        return store.record("balanced", COUNTS)["counters"]
    started = time.time()
    concept_ids = read_concepts(store, parts, ("concept_id",)).column(0)
    tables = [_match_column(run, o, ["empty", "text_hash"]) for o in parts]
    sizes = np.array([t.num_rows for t in tables])
    empty = np.concatenate([t.column("empty").to_numpy(zero_copy_only=False) for t in tables]) if tables else np.zeros(0, bool)
    hashes = np.concatenate([t.column("text_hash").to_numpy() for t in tables]) if tables else np.zeros(0, np.int64)
    first = first_occurrences(hashes, ~empty)
    duplicate = ~empty & ~first
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    dup_rows = np.flatnonzero(duplicate)
    dup_parts = np.searchsorted(offsets, dup_rows, side="right") - 1
    counts = np.zeros(len(concept_ids), dtype=np.int64)
    no_match = 0
    for index, part in enumerate(parts):
        matched = _match_column(run, part, ["matched"]).column("matched")
        mask = pa.array(first[offsets[index]:offsets[index + 1]])
        kept_lists = pc.filter(matched, mask)
        no_match += int(pc.sum(pc.equal(pc.list_value_length(kept_lists), 0)).as_py() or 0)
        flat = pc.list_flatten(kept_lists).to_numpy(zero_copy_only=False)
        counts += np.bincount(flat, minlength=len(concept_ids)) if len(flat) else 0
    probs = keep_probabilities(counts, run.config.balance.threshold)
    counters = {"captions_in": int(len(hashes)), "empty": int(empty.sum()), "duplicates": int(duplicate.sum()),
                "no_match": no_match}
    inputs = [input_ref(store, "balanced", f"matches/{o}") for o in parts]
    base = lineage(run.fingerprints["balanced"], inputs, started, len(concept_ids), counters=counters)
    store.commit("balanced", DUPLICATES, to_parquet_bytes(pa.table({
        "partition": pa.array(dup_parts, pa.int32()), "row": pa.array(dup_rows - offsets[dup_parts], pa.int32())}),
        "balance_duplicates"), {**base, "rows": int(len(dup_rows))})
    store.commit("balanced", COUNTS, to_parquet_bytes(pa.table({
        "concept_id": concept_ids, "count_before": counts, "keep_probability": probs}), "balance_counts"), base)
    return counters


def _report(run: Run, parts: list[str], counters: dict) -> dict:
    """Expected and actual counts after sampling, the histogram, and the manifest (stats)."""
    store = run.store
    started = time.time()
    concepts = read_concepts(store, parts)
    counts = read_table(store, "balanced", COUNTS, "balance_counts")
    before, probs = counts.column("count_before").to_numpy(), counts.column("keep_probability").to_numpy()
    dup_by_part = read_duplicates(store)
    expected = np.zeros(len(before))
    after = np.zeros(len(before), dtype=np.int64)
    kept_ids = []
    for index, part in enumerate(parts):
        table = _match_column(run, part, ["empty", "matched"])
        keep = ~table.column("empty").to_numpy(zero_copy_only=False)
        keep[sorted(dup_by_part.get(index, ()))] = False
        lists = pc.filter(table.column("matched"), pa.array(keep))
        lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
        expected += expected_counts(flat, lengths[lengths > 0], probs, len(before))
        kept_ids.append(pc.list_flatten(read_table(store, "balanced", part).column("matched_concept_ids")))
    if kept_ids:  # one lookup table for all partitions
        positions = pc.index_in(pa.chunked_array(kept_ids, pa.string()), value_set=concepts.column("concept_id"))
        after = np.bincount(positions.to_numpy(), minlength=len(before)).astype(np.int64)
    kept = sum(store.record("balanced", o)["rows"] for o in parts)
    outputs = [f"matches/{o}" for o in parts] + [COUNTS, DUPLICATES] + parts + [HISTOGRAM]
    inputs = [input_ref(store, "balanced", o) for o in parts]
    notes = {**counters, "sampled_out": counters["captions_in"] - counters["empty"] - counters["duplicates"]
             - counters["no_match"] - kept, "kept": kept,
             "concepts": int(len(before)), "concepts_covered_before": int((before > 0).sum()),
             "concepts_covered_after": int((after > 0).sum()), "threshold": run.config.balance.threshold}
    base = lineage(run.fingerprints["balanced"], inputs, started, int(len(before)))
    store.commit("balanced", HISTOGRAM, histogram_png(before, after, run.config.balance.threshold), base)
    store.commit("balanced", STATS, to_parquet_bytes(pa.table({
        "concept_id": concepts.column("concept_id"), "concept": concepts.column("concept"),
        "count_before": before, "expected_after": expected, "count_after": after, "keep_probability": probs,
    }), "balance_stats"), {**base, "outputs": outputs, "summary": notes})
    return notes
