"""Balancing at scale: match and count in parallel, reduce, sample in parallel, report.

1. match (actors, :class:`MatchWork`): ``captions/part-i`` -> ``balanced/matches/part-i`` (text
   hash, matched concept indices)
2. reduce (here): exact duplicates across the run (first by partition and row wins), counts per
   concept and keep probabilities -> ``counts.parquet``, ``duplicates.parquet``
3. sample (actors, :class:`SampleWork`): ``matches/part-i`` -> ``balanced/part-i`` (kept
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
from pydantic import Field

from ..compute.resources import PoolSpec
from ..config import Section, operational, when_set
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
from ..storage.tables import read_table
from .common import data_parts, read_concepts
from .executor import Made, PartitionWork, StageContext
from .stage import Estimating, RunView, Stage, StagePlan, StageSummary, WorkItem

NAME = "balanced"
VERSION = 2
STATS = "stats.parquet"
COUNTS = "counts.parquet"
DUPLICATES = "duplicates.parquet"
HISTOGRAM = "histogram.png"


class BalancedConfig(Section):
    """MetaCLIP-style balancing."""

    threshold: int = Field(..., ge=1, description="MetaCLIP's t: the cap on captions kept per concept.")
    case_sensitive: bool = Field(True, description="Match concepts case-sensitively, as MetaCLIP does.")
    num_actors: int = operational(2, ge=1, description="Ray actors matching, then sampling, caption partitions in parallel "
                                  "(1 CPU each).")
    eval_fraction: float = Field(0.05, ge=0, lt=1, description="Share of samples held out for evaluation (by hash of the sample id).")
    holdout_concepts: int = Field(0, ge=0, description="Concepts kept out of training on purpose (split 'holdout': "
                                  "captions written for or matching them); evaluation measures out-of-bank accuracy on them.")
    holdout_composed: int = when_set(0, ge=0, description="More concepts kept out of training, each made only of words of "
                                     "concepts that train (seeded draws): the report's composition row measures them.")

    @property
    def held_out_count(self) -> int:
        return self.holdout_concepts + self.holdout_composed


def plan(run: RunView) -> list[str]:
    """Every output, known from the caption partitions before any is made."""
    parts = _caption_parts(run)
    return [f"matches/{o}" for o in parts] + [COUNTS, DUPLICATES] + parts + [HISTOGRAM, STATS]


def _caption_parts(run: RunView) -> list[str]:
    return data_parts(run.require("captions").outputs)


def make(ctx: StageContext) -> StageSummary:
    cfg, seed = ctx.config.balanced, ctx.config.seed
    parts = _caption_parts(ctx.run)
    match_pool, sample_pool = workers(ctx.config)
    concepts = read_concepts(ctx.store, parts)
    held_out = held_out_concepts(seed, list(zip(concepts.column("concept_id").to_pylist(), concepts.column("concept").to_pylist())),
                                 cfg.holdout_concepts, cfg.holdout_composed)
    settings = {"concept_parts": parts, "case_sensitive": cfg.case_sensitive, "seed": seed,
                "eval_fraction": cfg.eval_fraction, "threshold": cfg.threshold, "held_out": sorted(held_out)}

    matching = ctx.pending([(f"matches/{o}", "captions", o, {"params": {"partition": i}}) for i, o in enumerate(parts)])
    result = ctx.run_partitions(match_pool, MatchWork, settings, matching, len(parts))
    if not result.ok:
        return result
    counters = _reduce(ctx, parts)

    sampling = ctx.pending([(o, NAME, f"matches/{o}", {"params": {"partition": i}}) for i, o in enumerate(parts)])
    result = ctx.run_partitions(sample_pool, SampleWork, settings, sampling, len(parts))
    if not result.ok:
        return result
    notes = _report(ctx, parts, counters)
    return StageSummary(NAME, total=len(parts), computed=len(matching) + len(sampling), rows=notes["kept"], notes=notes,
                        pictures=[f"{NAME}/{HISTOGRAM}"], outputs=plan(ctx.run))


def workers(cfg) -> list[PoolSpec]:
    """Two pools of CPU actors, one after the other: matching, then sampling."""
    return [PoolSpec(count=cfg.balanced.num_actors, label=label, fields=("balanced.num_actors",))
            for label in ("matching", "sampling")]


def _match_column(store: RunStore, part: str, columns: list[str]) -> pa.Table:
    return read_table(store, NAME, f"matches/{part}", "balanced_matches", columns)


def _reduce(ctx: StageContext, parts: list[str]) -> dict:
    """Duplicates and counts over the whole run; streams the match partitions twice."""
    store = ctx.store
    committed = ctx.committed()
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
    probs = keep_probabilities(counts, ctx.config.balanced.threshold)
    counters = {"captions_in": int(len(hashes)), "empty": int(empty.sum()), "duplicates": int(duplicate.sum()),
                "no_match": no_match}
    inputs = [ctx.input_ref(NAME, f"matches/{o}") for o in parts]
    ctx.commit(DUPLICATES, to_parquet_bytes(pa.table({  # a row group per partition: each reads its own
        "partition": pa.array(dup_parts, pa.int32()), "row": pa.array(dup_rows - offsets[dup_parts], pa.int32())}),
        "balanced_duplicates", group_by="partition"), inputs, int(len(dup_rows)), started, counters=counters)
    ctx.commit(COUNTS, to_parquet_bytes(pa.table({
        "concept_id": concept_ids, "count_before": counts, "keep_probability": probs}), "balanced_counts"),
        inputs, len(concept_ids), started, counters=counters)
    return counters


def _report(ctx: StageContext, parts: list[str], counters: dict) -> dict:
    """Expected and actual counts after sampling, the histogram, and the stats table."""
    store = ctx.store
    started = time.time()
    concepts = read_concepts(store, parts)
    counts = read_table(store, NAME, COUNTS, "balanced_counts")
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
    kept = ctx.committed_rows(parts)
    inputs = [ctx.input_ref(NAME, o) for o in parts]
    threshold = ctx.config.balanced.threshold
    notes = {**counters, "sampled_out": counters["captions_in"] - counters["empty"] - counters["duplicates"]
             - counters["no_match"] - kept, "kept": kept,
             "concepts": int(len(before)), "concepts_covered_before": int((before > 0).sum()),
             "concepts_covered_after": int((after > 0).sum()), "threshold": threshold}
    ctx.commit(HISTOGRAM, concept_histogram(before, after, threshold), inputs, int(len(before)), started)
    ctx.commit(STATS, to_parquet_bytes(pa.table({
        "concept_id": concepts.column("concept_id"), "concept": concepts.column("concept"),
        "count_before": before, "expected_after": expected, "count_after": after, "keep_probability": probs,
    }), "balanced_stats"), inputs, int(len(before)), started, summary=notes)
    return notes


def read_duplicates(store: RunStore, partition: int) -> set[int]:
    """The rows of caption partition ``partition`` dropped as exact duplicates, read from its row
    group of ``duplicates.parquet`` alone."""
    with store.open(NAME, DUPLICATES) as handle:
        table = read_where(handle, "balanced_duplicates", "partition", {partition}, ["row"], where=f"{NAME}/{DUPLICATES}")
    return set(table.column("row").to_pylist())


class MatchWork(PartitionWork):
    """Pass 1, in a CPU actor: caption partition i -> each caption's text hash and matched concepts."""

    reads, columns, writes = "captions", ("caption_id", "concept_id", "caption"), "balanced_matches"

    def setup(self) -> None:
        concepts = read_concepts(self.store, self.settings["concept_parts"], ("concept",)).column(0).to_pylist()
        rss_before, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time()
        self.matcher = ConceptMatcher(concepts, self.settings["case_sensitive"])
        self.build = {"concepts": len(concepts), "build_s": round(time.time() - started, 3),
                      "max_rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024, 1)}

    def process(self, rows: pa.Table, item: WorkItem) -> Made:
        started = time.time()
        texts = rows.column("caption").to_pylist()
        table = pa.table({
            "caption_id": rows.column("caption_id"), "concept_id": rows.column("concept_id"),
            "caption": rows.column("caption"), "empty": [not t for t in texts],
            "text_hash": [text_hash(t) if t else 0 for t in texts],
            "matched": [self.matcher.match(t) if t else [] for t in texts],
        }, schema=SCHEMAS[self.writes][1])
        seconds = max(time.time() - started, 1e-9)
        return Made(table, {"automaton": self.build, "throughput": {"captions_per_s": round(len(texts) / seconds, 1)}})


class SampleWork(PartitionWork):
    """Pass 2, in a CPU actor: matches i, the global keep probabilities and the duplicate rows ->
    ``balanced/part-i`` (the kept captions, each with its split)."""

    reads, writes = "balanced_matches", "balanced"

    def setup(self) -> None:
        counts = read_table(self.store, NAME, COUNTS, "balanced_counts")
        self.probs, self.concept_ids = counts.column("keep_probability").to_numpy(), counts.column("concept_id").to_pylist()

    def process(self, rows: pa.Table, item: WorkItem) -> Made:
        seed, eval_fraction = self.settings["seed"], self.settings["eval_fraction"]
        held_out = set(self.settings.get("held_out", ()))
        dups = read_duplicates(self.store, item.params["partition"])  # this partition's only: no run-wide sets
        columns = [rows.column(c).to_pylist() for c in ("caption_id", "concept_id", "caption", "empty", "matched")]
        kept = []
        for row_index, (cap_id, source, caption, empty, matched) in enumerate(zip(*columns)):
            if empty or not matched or row_index in dups:
                continue
            ids = [self.concept_ids[e] for e in matched]
            if is_kept(seed, cap_id, ids, [self.probs[e] for e in matched]):
                split = "holdout" if held_out and (source in held_out or held_out.intersection(ids)) \
                    else split_of(seed, cap_id, eval_fraction)
                kept.append({"caption_id": cap_id, "concept_id": source, "caption": caption,
                             "matched_concept_ids": ids, "split": split})
        return Made(table_from_rows(kept, self.writes), {"threshold": self.settings["threshold"], "seed": seed})


def estimate(plan: Estimating) -> StagePlan:
    """The captions the clean-up and balancing keep, by the rates' shares."""
    rates = plan.rates
    balanced = round(round(plan.rows("captions") * rates.caption_keep) * rates.balance_keep)
    return StagePlan(NAME, plan.outputs("captions"), balanced, stored_bytes=round(balanced * rates.bytes_per_caption_row),
                     basis=f"keeps {rates.balance_keep:.0%} of the cleaned captions (t={plan.cfg.balanced.threshold})")


STAGE = Stage(name=NAME, version=VERSION, upstream=("captions",), make=make, section=BalancedConfig, plan=plan,
              workers=workers, estimate=estimate,
              description="Balance the captions over concepts (MetaCLIP curation) and fix the held-out split.")
