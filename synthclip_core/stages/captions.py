"""Captions: an LLM writes ``per_concept`` captions for every concept, one seed each.

Partition ``captions/part-i`` is made from ``concepts/part-i`` by a :class:`CaptionWorker` in an
actor of the caption pool. A caption's seed comes from (run seed, concept id, index) and its id
from (concept id, template@version, index, run seed). Every row says which concept, template,
seed, model and backend produced it; rejected answers stay in the partition with their reason,
and the commit record counts them. Once every partition is committed, ``coverage.parquet`` says
per concept how many captions were written, kept, and name their concept.
"""

from __future__ import annotations

import time

import pyarrow as pa

from ..captioning.prompts import get_template
from ..captioning.writer import CaptionWriter, caption_settings
from ..config import CaptionsConfig
from ..curation.balancing import prepare_text
from ..runs.pins import scheme_of
from ..storage.schemas import to_parquet_bytes
from ..storage.store import RunStore
from .common import data_parts, input_ref, lineage, read_concepts, read_table, worker_info
from .partitions import committed_rows, mirrored_jobs, model_pool, run_jobs
from .stage import Run, Stage, StageSummary, section_settings

NAME = "captions"
VERSION = 3
COVERAGE = "coverage.parquet"


def plan_captions(run: Run) -> list[str]:
    """One caption partition per concept partition."""
    return data_parts(run.require("concepts").outputs)


def run_captions(run: Run) -> StageSummary:
    if (finished := run.finished(NAME)) is not None:
        return finished
    parts = plan_captions(run)
    jobs = mirrored_jobs(run, NAME, "concepts", parts)
    summary = run_jobs(run, NAME, workers(run.config)[0], CaptionWorker, (worker_settings(run),), jobs, len(parts))
    if not summary.ok:
        return summary
    summary.rows = committed_rows(run, NAME, parts)
    summary.notes["coverage"] = write_coverage(run, parts)
    return run.complete(summary, parts + [COVERAGE])


def workers(cfg) -> list:
    return [model_pool(cfg, "captions")]


def worker_settings(run: Run) -> dict:
    return caption_settings(run.config)


class CaptionWorker(CaptionWriter):
    """Runs inside a caption actor: loads the backend once, captions one concept partition per call."""

    def __call__(self, store: RunStore, job: dict) -> dict:
        started = time.time()
        concepts = read_table(store, "concepts", job["inputs"][0]["output"]).to_pylist()
        rows, made = self.write([(c["concept_id"], c["concept"], index)
                                 for c in concepts for index in range(self.settings["per_concept"])])
        return store.commit(NAME, job["output"], to_parquet_bytes(pa.Table.from_pylist(rows), NAME), lineage(
            job["fingerprint"], job["version"], job["inputs"], started, len(rows), **made,
            worker=worker_info(self.backend.device),
        ), deterministic=False)  # LLM sampling on a GPU may differ between two writers


def write_coverage(run: Run, parts: list[str]) -> dict:
    """Per concept: captions written, kept by cleaning, and naming their concept (MetaCLIP
    matching); the summary lists the concepts left with no kept caption, which balancing then
    cannot represent."""
    store = run.store
    if COVERAGE in store.committed(NAME):
        return store.record(NAME, COVERAGE)["summary"]
    started = time.time()
    records = store.records(NAME, parts)
    concepts = read_concepts(store, parts).to_pylist()
    counts = {c["concept_id"]: [0, 0, 0] for c in concepts}
    case_sensitive = run.config.balanced.case_sensitive
    for part in parts:
        for row in read_table(store, NAME, part).select(["concept_id", "concept", "caption"]).to_pylist():
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
    inputs = [input_ref(store, NAME, o, records[o]) for o in parts]
    store.commit(NAME, COVERAGE, to_parquet_bytes(table, "caption_coverage"),
                 lineage(run.fingerprints[NAME], VERSION, inputs, started, table.num_rows, summary=summary))
    return summary


# vLLM engine options that change how fast captions come, not which (the rest, such as dtype,
# quantization or max_model_len, are fingerprinted from scheme 2).
OPERATIONAL_ENGINE_OPTIONS = frozenset({
    "gpu_memory_utilization", "enforce_eager", "swap_space", "cpu_offload_gb", "max_num_seqs",
    "max_num_batched_tokens", "disable_log_stats", "distributed_executor_backend", "enable_prefix_caching",
})


def settings(cfg) -> dict:
    """The section's settings; from scheme 2 also the prompt template's version and text and the
    engine options that change outputs."""
    out = section_settings(NAME)(cfg)
    if scheme_of(cfg) >= 2:
        out["template"] = get_template(cfg.captions.template).identity()
        out["engine_options"] = {k: v for k, v in sorted(cfg.captions.engine_options.items())
                                 if k not in OPERATIONAL_ENGINE_OPTIONS}
    return out


STAGE = Stage(
    name=NAME,
    version=VERSION,
    section=CaptionsConfig,
    upstream=("concepts",),
    run=run_captions,
    plan=plan_captions,
    workers=workers,
    settings=settings,
    description="Caption every pending concept partition on the LLM actor pool.",
)
