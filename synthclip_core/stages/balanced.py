"""Balancing at scale: match and count in parallel, reduce, sample in parallel, report.

1. match (actors, :class:`MatchWorker`): ``captions/part-i`` -> ``balanced/matches/part-i`` (text
   hash, matched concept indices)
2. reduce (here): exact duplicates across the run (first by partition and row wins), counts per
   concept and keep probabilities -> ``counts.parquet``, ``duplicates.parquet``
3. sample (actors, :class:`SampleWorker`): ``matches/part-i`` -> ``balanced/part-i`` (kept
   captions, split assigned)
4. report (here): ``histogram.png`` and ``stats.parquet`` (count before, expected and actual count
   after, p per concept).
Every output is committed, so a resumed run redoes only what is missing. Memory per actor is the
automaton (or the keep probabilities) plus one partition and its duplicate rows.
"""

from __future__ import annotations

import resource
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..compute.resources import PoolSpec
from ..config import BalancedConfig
from ..curation.balancing import (
    ConceptMatcher,
    expected_counts,
    first_occurrences,
    held_out_concepts,
    is_kept,
    keep_probabilities,
    split_of,
    text_hash,
)
from ..pictures import concept_histogram
from ..storage.schemas import SCHEMAS, read_where, table_from_rows, to_parquet_bytes
from ..storage.store import RunStore
from .common import data_parts, input_ref, lineage, read_concepts, read_table, worker_info
from .partitions import pending_jobs, run_jobs
from .stage import Run, Stage, StageSummary

NAME = "balanced"
VERSION = 2
STATS = "stats.parquet"
COUNTS = "counts.parquet"
DUPLICATES = "duplicates.parquet"
HISTOGRAM = "histogram.png"


def plan_balanced(run: Run) -> list[str]:
    """Every output, known from the caption partitions before any is made."""
    parts = _caption_parts(run)
    return [f"matches/{o}" for o in parts] + [COUNTS, DUPLICATES] + parts + [HISTOGRAM, STATS]


def _caption_parts(run: Run) -> list[str]:
    return data_parts(run.require("captions").outputs)


def run_balanced(run: Run) -> StageSummary:
    if (finished := run.finished(NAME)) is not None:
        return finished
    cfg = run.config.balanced
    summary = StageSummary(NAME)
    parts = _caption_parts(run)
    match_pool, sample_pool = workers(run.config)
    held_out = held_out_concepts(run.config.seed, read_concepts(run.store, parts).column("concept_id").to_pylist(),
                                 cfg.holdout_concepts) if cfg.holdout_concepts else set()
    settings = {"concept_parts": parts, "case_sensitive": cfg.case_sensitive, "seed": run.config.seed,
                "eval_fraction": cfg.eval_fraction, "threshold": cfg.threshold, "held_out": sorted(held_out)}

    match_jobs = _jobs(run, [(f"matches/{o}", "captions", o, i) for i, o in enumerate(parts)])
    result = run_jobs(run, NAME, match_pool, MatchWorker, (settings,), match_jobs, len(parts))
    if not result.ok:
        return result
    counters = _reduce(run, parts)

    sample_jobs = _jobs(run, [(o, NAME, f"matches/{o}", i) for i, o in enumerate(parts)])
    result = run_jobs(run, NAME, sample_pool, SampleWorker, (settings,), sample_jobs, len(parts))
    if not result.ok:
        return result
    summary.computed = len(match_jobs) + len(sample_jobs)
    summary.notes = _report(run, parts, counters)
    summary.pictures = [f"{NAME}/{HISTOGRAM}"]
    summary.total, summary.rows = len(parts), summary.notes["kept"]
    return run.complete(summary, plan_balanced(run))


def workers(cfg) -> list[PoolSpec]:
    """Two passes of CPU actors, one after the other: matching, then sampling."""
    n = cfg.balanced.num_workers
    return [PoolSpec(num_actors=n, num_cpus=1, label=label, section="balanced") for label in ("matching", "sampling")]


def _jobs(run: Run, plan: list[tuple[str, str, str, int]]) -> list[dict]:
    """Jobs for the outputs not yet committed; each names its input and its partition index."""
    return pending_jobs(run, NAME, [(out, stage, src, {"partition": i}) for out, stage, src, i in plan])


def _match_column(store: RunStore, part: str, columns: list[str]) -> pa.Table:
    return read_table(store, NAME, f"matches/{part}", "balance_matches").select(columns)


def _reduce(run: Run, parts: list[str]) -> dict:
    """Duplicates and counts over the whole run; streams the match partitions twice."""
    store = run.store
    committed = store.committed(NAME)
    if COUNTS in committed and DUPLICATES in committed:
        return store.record(NAME, COUNTS)["counters"]
    started = time.time()
    concept_ids = read_concepts(store, parts, ("concept_id",)).column(0)
    tables = [_match_column(store, o, ["empty", "text_hash"]) for o in parts]
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
        matched = _match_column(store, part, ["matched"]).column("matched")
        mask = pa.array(first[offsets[index]:offsets[index + 1]])
        kept_lists = pc.filter(matched, mask)
        no_match += int(pc.sum(pc.equal(pc.list_value_length(kept_lists), 0)).as_py() or 0)
        flat = pc.list_flatten(kept_lists).to_numpy(zero_copy_only=False)
        counts += np.bincount(flat, minlength=len(concept_ids)) if len(flat) else 0
    probs = keep_probabilities(counts, run.config.balanced.threshold)
    counters = {"captions_in": int(len(hashes)), "empty": int(empty.sum()), "duplicates": int(duplicate.sum()),
                "no_match": no_match}
    inputs = [input_ref(store, NAME, f"matches/{o}") for o in parts]
    base = lineage(run.fingerprints[NAME], VERSION, inputs, started, len(concept_ids), counters=counters)
    store.commit(NAME, DUPLICATES, to_parquet_bytes(pa.table({  # a row group per partition: each reads its own
        "partition": pa.array(dup_parts, pa.int32()), "row": pa.array(dup_rows - offsets[dup_parts], pa.int32())}),
        "balance_duplicates", group_by="partition"), {**base, "rows": int(len(dup_rows))})
    store.commit(NAME, COUNTS, to_parquet_bytes(pa.table({
        "concept_id": concept_ids, "count_before": counts, "keep_probability": probs}), "balance_counts"), base)
    return counters


def _report(run: Run, parts: list[str], counters: dict) -> dict:
    """Expected and actual counts after sampling, the histogram, and the stats table."""
    store = run.store
    started = time.time()
    concepts = read_concepts(store, parts)
    counts = read_table(store, NAME, COUNTS, "balance_counts")
    before, probs = counts.column("count_before").to_numpy(), counts.column("keep_probability").to_numpy()
    expected = np.zeros(len(before))
    after = np.zeros(len(before), dtype=np.int64)
    kept_ids = []
    for index, part in enumerate(parts):
        table = _match_column(store, part, ["empty", "matched"])
        keep = ~table.column("empty").to_numpy(zero_copy_only=False)
        keep[sorted(read_duplicates(store, index))] = False
        lists = pc.filter(table.column("matched"), pa.array(keep))
        lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
        expected += expected_counts(flat, lengths[lengths > 0], probs, len(before))
        kept_ids.append(pc.list_flatten(read_table(store, NAME, part).column("matched_concept_ids")))
    if kept_ids:  # one lookup table for all partitions
        positions = pc.index_in(pa.chunked_array(kept_ids, pa.string()), value_set=concepts.column("concept_id"))
        after = np.bincount(positions.to_numpy(), minlength=len(before)).astype(np.int64)
    kept = sum(r["rows"] for r in store.records(NAME, parts).values())
    inputs = [input_ref(store, NAME, o) for o in parts]
    threshold = run.config.balanced.threshold
    notes = {**counters, "sampled_out": counters["captions_in"] - counters["empty"] - counters["duplicates"]
             - counters["no_match"] - kept, "kept": kept,
             "concepts": int(len(before)), "concepts_covered_before": int((before > 0).sum()),
             "concepts_covered_after": int((after > 0).sum()), "threshold": threshold}
    base = lineage(run.fingerprints[NAME], VERSION, inputs, started, int(len(before)))
    store.commit(NAME, HISTOGRAM, concept_histogram(before, after, threshold), base)
    store.commit(NAME, STATS, to_parquet_bytes(pa.table({
        "concept_id": concepts.column("concept_id"), "concept": concepts.column("concept"),
        "count_before": before, "expected_after": expected, "count_after": after, "keep_probability": probs,
    }), "balance_stats"), {**base, "summary": notes})
    return notes


def read_duplicates(store: RunStore, partition: int) -> set[int]:
    """The rows of caption partition ``partition`` dropped as exact duplicates, read from its row
    group of ``duplicates.parquet`` alone."""
    with store.open(NAME, DUPLICATES) as handle:
        table = read_where(handle, "balance_duplicates", "partition", {partition}, ["row"], where=f"{NAME}/{DUPLICATES}")
    return set(table.column("row").to_pylist())


class MatchWorker:
    """Pass 1, in a CPU actor: caption partition i -> each caption's text hash and matched concepts."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.matcher: ConceptMatcher | None = None
        self.build = {}

    def _matcher(self, store: RunStore) -> ConceptMatcher:
        if self.matcher is None:
            concepts = read_concepts(store, self.settings["concept_parts"], ("concept",)).column(0).to_pylist()
            rss_before, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time()
            self.matcher = ConceptMatcher(concepts, self.settings["case_sensitive"])
            self.build = {"concepts": len(concepts), "build_s": round(time.time() - started, 3),
                          "max_rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024, 1)}
        return self.matcher

    def __call__(self, store: RunStore, job: dict) -> dict:
        matcher = self._matcher(store)
        started = time.time()
        captions = read_table(store, "captions", job["inputs"][0]["output"]).select(["caption_id", "concept_id", "caption"])
        texts = captions.column("caption").to_pylist()
        table = pa.table({
            "caption_id": captions.column("caption_id"), "concept_id": captions.column("concept_id"),
            "caption": captions.column("caption"), "empty": [not t for t in texts],
            "text_hash": [text_hash(t) if t else 0 for t in texts],
            "matched": [matcher.match(t) if t else [] for t in texts],
        }, schema=SCHEMAS["balance_matches"][1])
        seconds = max(time.time() - started, 1e-9)
        return store.commit(NAME, job["output"], to_parquet_bytes(table, "balance_matches"),
                            lineage(job["fingerprint"], job["version"], job["inputs"], started, len(texts), automaton=self.build,
                                    throughput={"captions_per_s": round(len(texts) / seconds, 1)}, worker=worker_info()))


class SampleWorker:
    """Pass 2, in a CPU actor: matches i, the global keep probabilities and the duplicate rows ->
    ``balanced/part-i`` (the kept captions, each with its split)."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.cache: dict = {}

    def _shared(self, store: RunStore) -> tuple[np.ndarray, list[str]]:
        if not self.cache:
            counts = read_table(store, NAME, COUNTS, "balance_counts")
            self.cache = {"p": counts.column("keep_probability").to_numpy(), "ids": counts.column("concept_id").to_pylist()}
        return self.cache["p"], self.cache["ids"]

    def __call__(self, store: RunStore, job: dict) -> dict:
        probs, concept_ids = self._shared(store)
        started = time.time()
        seed, eval_fraction = self.settings["seed"], self.settings["eval_fraction"]
        held_out = set(self.settings.get("held_out", ()))
        dups = read_duplicates(store, job["partition"])  # this partition's only: no run-wide sets
        matches = read_table(store, NAME, job["inputs"][0]["output"], "balance_matches")
        columns = [matches.column(c).to_pylist() for c in ("caption_id", "concept_id", "caption", "empty", "matched")]
        kept = []
        for row_index, (cap_id, source, caption, empty, matched) in enumerate(zip(*columns)):
            if empty or not matched or row_index in dups:
                continue
            ids = [concept_ids[e] for e in matched]
            if is_kept(seed, cap_id, ids, [probs[e] for e in matched]):
                split = "holdout" if held_out and (source in held_out or held_out.intersection(ids)) \
                    else split_of(seed, cap_id, eval_fraction)
                kept.append({"caption_id": cap_id, "concept_id": source, "caption": caption,
                             "matched_concept_ids": ids, "split": split})
        return store.commit(NAME, job["output"], to_parquet_bytes(table_from_rows(kept, "balanced"), "balanced"),
                            lineage(job["fingerprint"], job["version"], job["inputs"], started, len(kept),
                                    threshold=self.settings["threshold"], seed=seed, worker=worker_info()))


STAGE = Stage(
    name=NAME,
    version=VERSION,
    section=BalancedConfig,
    upstream=("captions",),
    run=run_balanced,
    plan=plan_balanced,
    workers=workers,
    description="Balance the captions over concepts (MetaCLIP curation) and fix the held-out split.",
)
