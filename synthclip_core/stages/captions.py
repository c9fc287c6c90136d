"""Captions: an LLM writes ``per_concept`` captions for every concept, one seed each.

Partition ``captions/part-i`` is made from ``concepts/part-i`` by a :class:`CaptionWork` in an
actor of the caption pool. A caption's seed comes from (run seed, concept id, index) and its id
from (concept id, template@version, index, run seed). Every row says which concept, template,
seed, model and backend produced it; rejected answers stay in the partition with their reason,
and the commit record counts them. Once every partition is committed, ``coverage.parquet`` says
per concept how many captions were written, kept, and name their concept.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
from pydantic import Field

from ..captioning.prompts import get_template
from ..captioning.writer import OPERATIONAL_ENGINE_OPTIONS, caption_settings
from ..config import ModelSection, operational, scheme_of
from ..curation.balancing import names_concept
from ..planning.sizing import on_group
from ..storage.schemas import to_parquet_bytes
from ..storage.tables import read_table
from .common import CaptionsWork, data_parts, model_pool, read_concepts
from .executor import StageContext
from .stage import Estimating, RunView, Stage, StagePlan, StageSummary, WorkItem, section_settings

NAME = "captions"
VERSION = 3
COVERAGE = "coverage.parquet"


class CaptionsConfig(ModelSection):
    """Caption generation."""

    backend: str = Field("vllm", pattern=r"^(vllm|transformers|[\w.]+:\w+)$",
                         description="Caption backend: vllm (production), transformers (CPU, fallback), or a plug-in "
                                     "class as package.module:ClassName.")
    template: str = Field("synthclip", description="Prompt template name (see synthclip_core.captioning.prompts).")
    per_concept: int = Field(1, ge=1, description="Captions written per concept, each with its own seed.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature (paper: 0.7).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass (paper: 0.95).")
    presence_penalty: float = Field(1.0, description="OpenAI-style presence penalty on generated tokens (paper: 1.0).")
    frequency_penalty: float = Field(1.0, description="OpenAI-style frequency penalty on generated tokens (paper: 1.0).")
    max_tokens: int = Field(48, ge=1, description="Upper bound on generated tokens per caption.")
    max_words: int = Field(30, ge=1, description="Captions longer than this many words are rejected as overlong (the prompt asks for 15).")
    batch_size: int = operational(32, ge=1, description="Prompts per generate call (transformers); vLLM takes a whole partition at once.")
    tensor_parallel_size: int = operational(1, ge=1, description="vLLM tensor parallelism inside one actor (set num_gpus to match).")
    python: str | None = operational(
        None, description="Interpreter of the caption actors, e.g. the vLLM environment's bin/python (default: this one).")
    engine_options: dict[str, Any] = operational(default_factory=dict, description="Extra keyword arguments for vllm.LLM "
                                                 "(those that change outputs, such as dtype or quantization, are fingerprinted).")

    def sampling(self) -> dict[str, float]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "max_tokens": self.max_tokens,
        }


def plan(run: RunView) -> list[str]:
    """One caption partition per concept partition."""
    return data_parts(run.require("concepts").outputs)


def make(ctx: StageContext) -> StageSummary:
    parts = plan(ctx.run)
    items = ctx.pending([(o, "concepts", o, {}) for o in parts])
    summary = ctx.run_partitions(workers(ctx.config)[0], CaptionWork, caption_settings(ctx.config), items, len(parts))
    if summary.ok:
        summary.rows = ctx.committed_rows(parts)
        summary.notes["coverage"] = write_coverage(ctx, parts)
        summary.outputs = parts + [COVERAGE]
    return summary


def workers(cfg) -> list:
    return [model_pool(cfg, NAME)]


class CaptionWork(CaptionsWork):
    """In a caption actor: ``per_concept`` captions for each concept of one concept partition."""

    reads, columns = "concepts", ("concept_id", "concept")

    def requests(self, rows: pa.Table, item: WorkItem) -> list[tuple[str, str, int]]:
        per_concept = self.settings["per_concept"]
        return [(cid, concept, index) for cid, concept in zip(*(rows.column(c).to_pylist() for c in self.columns))
                for index in range(per_concept)]


def write_coverage(ctx: StageContext, parts: list[str]) -> dict:
    """Per concept: captions written, kept by cleaning, and naming their concept (MetaCLIP
    matching); the summary lists the concepts left with no kept caption, which balancing then
    cannot represent."""
    store = ctx.store
    if COVERAGE in ctx.committed():
        return store.record(NAME, COVERAGE)["summary"]
    started = time.time()
    records = store.records(NAME, parts)
    concepts = read_concepts(store, parts).to_pylist()
    counts = {c["concept_id"]: [0, 0, 0] for c in concepts}
    case_sensitive = ctx.config.balanced.case_sensitive  # in this stage's fingerprint where it is not the default
    for part in parts:
        for row in read_table(store, NAME, part, columns=["concept_id", "concept", "caption"]).to_pylist():
            entry = counts[row["concept_id"]]
            entry[0] += 1
            if row["caption"]:
                entry[1] += 1
                entry[2] += names_concept(row["caption"], row["concept"], case_sensitive)
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
    inputs = [ctx.input_ref(NAME, o, records[o]) for o in parts]
    ctx.commit(COVERAGE, to_parquet_bytes(table, "caption_coverage"), inputs, table.num_rows, started, summary=summary)
    return summary


def settings(cfg) -> dict:
    """The section's settings; from scheme 2 also the prompt template's version and text and the
    engine options that change outputs; and how the coverage table matches a concept in its
    captions (balancing's ``case_sensitive``) where that is not the default."""
    out = section_settings(NAME)(cfg)
    if scheme_of(cfg) >= 2:
        out["template"] = get_template(cfg.captions.template).identity()
        out["engine_options"] = {k: v for k, v in sorted(cfg.captions.engine_options.items())
                                 if k not in OPERATIONAL_ENGINE_OPTIONS}
    if not cfg.balanced.case_sensitive:
        out["coverage_case_sensitive"] = False
    return out


def estimate(plan: Estimating) -> StagePlan:
    """``per_concept`` captions per concept, at the rates' captions per GPU-second."""
    concepts, rates = plan.rows("concepts"), plan.rates
    captions = concepts * plan.cfg.captions.per_concept
    per_s, group = rates.rate("captions_per_gpu_s", plan.cfg.captions.ray_resources)
    return StagePlan(NAME, plan.outputs("concepts"), captions, gpu_hours=captions / per_s / 3600,
                     stored_bytes=round(captions * rates.bytes_per_caption_row),
                     basis=f"{per_s:g} captions/s per GPU{on_group(group)}; keeps {rates.caption_keep:.0%}")


STAGE = Stage(name=NAME, version=VERSION, upstream=("concepts",), make=make, section=CaptionsConfig, plan=plan,
              workers=workers, settings=settings, estimate=estimate,
              description="Caption every pending concept partition on the LLM actor pool.")
