"""Rewrites: ``per_caption`` new wordings of every kept train caption, for training to draw from.

An image costs tens of captions of GPU time, yet the recipe gives each one caption; LaCLIP's
rewrites give it several for text-side compute only. Off unless ``rewrites.per_caption`` is set
(a run without it has no such stage, and its other stages keep their fingerprints).

Partition ``rewrites/part-i`` mirrors the kept captions of ``balanced/part-i`` (and
``rewrites/part-rK-i`` the closed loop's ``topup/part-rK-i``): the rewrites of its train rows, in
row order, ``k`` of each (held-out and eval captions are never trained on, so never rewritten).
Rewrite ``k`` of caption ``c`` has seed ``derive_seed(run seed, c, k)`` and id ``hash(c,
template@version, k, run seed)``. The captions section's pool writes them (its model, backend and
actors), or a model of the section's own on a pool of its own. A rewrite that cleaning rejects,
that no longer names its caption's concept, or that repeats its caption or an earlier rewrite
keeps its row with the reason (``captioning/rewriting.py``). The images stage does not wait for
this one: images come from the original caption; the shards carry both.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
from pydantic import Field

from ..captioning.prompts import rewrite_template
from ..captioning.rewriting import texts_per_image, vet
from ..captioning.writer import OPERATIONAL_ENGINE_OPTIONS, caption_settings
from ..config import ModelSection, model_reference, operational, scheme_of
from ..fingerprint import model_identity_of
from ..planning.sizing import on_group
from ..storage.schemas import table_from_rows
from .common import CAPTION_STAGES, CaptionsWork, caption_records, data_parts, model_pool, read_concepts
from .executor import Made, StageContext
from .stage import Estimating, RunView, Stage, StagePlan, StageSummary, WorkItem

NAME = "rewrites"
VERSION = 1


class RewritesConfig(ModelSection):
    """Caption rewrites (LaCLIP): new wordings of every kept train caption, drawn at training time."""

    per_caption: int = Field(0, ge=0, description="Rewrites of every kept train caption (0: off, and the run has no "
                             "rewrites stage); train.texts: any draws one of an image's texts per epoch.")
    template: str = Field("synthclip-rewrite", description="Prompt template of the rewrites; it names the caption as "
                          "{caption} and the concept as {concept}.")
    model: str | None = model_reference(None, description="The rewriting LLM (None: the captions section's model, "
                                        "backend and pool write them).")
    backend: str | None = Field(None, pattern=r"^(vllm|transformers|[\w.]+:\w+)$",
                                description="Backend of this section's own model (None: the captions section's).")
    python: str | None = operational(None, description="Interpreter of this section's own actors (None: the captions "
                                     "section's).")


def enabled(cfg) -> bool:
    return getattr(cfg, "rewrites", None) is not None and cfg.rewrites.per_caption > 0


def writer_section(cfg) -> Any:
    """The captions section as the rewrites use it: its own, or with this section's model in it
    (sampling, cleaning and batching stay the captions section's)."""
    rw = cfg.rewrites
    if rw.model is None:
        return cfg.captions
    update = {k: getattr(rw, k) for k in ("model", "revision", "commit", "dtype", "num_actors", "num_gpus", "ray_resources")}
    update.update({k: getattr(rw, k) for k in ("backend", "python") if getattr(rw, k) is not None})
    return cfg.captions.model_copy(update=update)


def sources(run: RunView) -> list[tuple[str, str]]:
    """(stage, partition) of every kept-caption partition, in order: what the rewrites mirror."""
    return list(caption_records(run))


def plan(run: RunView) -> list[str]:
    return [part for _, part in sources(run)]


def make(ctx: StageContext) -> StageSummary:
    items = ctx.pending([(part, stage, part, {}) for stage, part in sources(ctx.run)])
    parts = plan(ctx.run)
    settings = {**caption_settings(ctx.config, ctx.config.rewrites.template, writer_section(ctx.config)),
                "per_caption": ctx.config.rewrites.per_caption, "case_sensitive": ctx.config.balanced.case_sensitive,
                "concepts": data_parts(ctx.run.require("concepts").outputs)}
    summary = ctx.run_partitions(workers(ctx.config)[0], RewriteWork, settings, items, len(parts))
    if summary.ok:
        summary.rows = ctx.committed_rows(parts)
        summary.notes.update(tally(ctx, parts))
        summary.outputs = parts
    return summary


def tally(ctx: StageContext, parts: list[str]) -> dict:
    """What the rewrites came to, from the commit records: written, counting, dropped by reason."""
    written, kept, captions, dropped = 0, 0, 0, Counter()
    for record in ctx.store.records(NAME, parts).values():
        written += record["rows"]
        captions += record.get("captions", 0)
        cleaning, vetting = record.get("cleaning", {}), record.get("vetting", {})
        kept += cleaning.get("kept", 0) - sum(vetting.values())
        dropped.update(cleaning.get("rejected", {}))
        dropped.update(vetting)
    return {"rewrites_written": written, "rewrites_kept": kept, "rewrites_dropped": dict(dropped),
            "captions_rewritten": captions, "texts_per_image": round(texts_per_image(kept, captions), 3)}


def workers(cfg) -> list:
    """The captions section's pool, or this section's own where it names a model."""
    return [model_pool(cfg, NAME if cfg.rewrites.model else "captions", label=NAME)]


class RewriteWork(CaptionsWork):
    """In a caption actor: ``per_caption`` rewrites of each train caption of one kept-caption partition."""

    reads, columns, writes = "balanced", ("caption_id", "concept_id", "caption", "split"), "rewrites"

    def setup(self) -> None:
        super().setup()
        concepts = read_concepts(self.store, self.settings["concepts"])
        self.concepts = dict(zip(concepts.column("concept_id").to_pylist(), concepts.column("concept").to_pylist()))

    def process(self, rows: pa.Table, item: WorkItem) -> Made:
        train = [r for r in rows.to_pylist() if r["split"] == "train"]
        requests = [(r["caption_id"], r["concept_id"], self.concepts[r["concept_id"]], r["caption"], k)
                    for r in train for k in range(self.settings["per_caption"])]
        made, lineage = self.writer.rewrite(requests)
        dropped = vet(made, {r["caption_id"]: r["caption"] for r in train}, self.settings["case_sensitive"])
        return Made(table_from_rows(made, "rewrites"), {**lineage, "captions": len(train), "vetting": dict(dropped)})


def settings(cfg) -> dict:
    """How many, by which template (name@version and text), by which model (its identity) with which
    backend, sampling and cleaning, and how a concept is matched: what changes the rewrites."""
    section, scheme = writer_section(cfg), scheme_of(cfg)
    return {
        "per_caption": cfg.rewrites.per_caption, "template": rewrite_template(cfg.rewrites.template).identity(),
        "model": model_identity_of(section, scheme), "backend": section.backend, "dtype": section.dtype,
        "sampling": section.sampling(), "max_words": section.max_words,
        "engine_options": {k: v for k, v in sorted(section.engine_options.items()) if k not in OPERATIONAL_ENGINE_OPTIONS},
        "case_sensitive": cfg.balanced.case_sensitive,
    }


def models(cfg) -> dict[str, ModelSection]:
    """This section's own model, where it names one (the captions section's is pinned there)."""
    return {NAME: cfg.rewrites} if enabled(cfg) and cfg.rewrites.model else {}


def check(run: RunView) -> None:
    """A template that cannot say which caption to rewrite: one line, before any work."""
    rewrite_template(run.config.rewrites.template)


def estimate(plan: Estimating) -> StagePlan:
    """``per_caption`` rewrites of every kept train caption, at the rates' captions per GPU-second."""
    cfg, rates = plan.cfg, plan.rates
    train = round(plan.rows("balanced") * plan.train_share(plan.rows("concepts")))
    rewrites = train * cfg.rewrites.per_caption
    per_s, group = rates.rate("captions_per_gpu_s", cfg.rewrites.ray_resources)
    return StagePlan(NAME, plan.outputs("captions"), rewrites, gpu_hours=rewrites / per_s / 3600,
                     stored_bytes=round(rewrites * rates.bytes_per_caption_row),
                     basis=f"{cfg.rewrites.per_caption} per kept train caption at {per_s:g} captions/s per GPU{on_group(group)}")


STAGE = Stage(name=NAME, version=VERSION, upstream=("concepts", *CAPTION_STAGES), make=make, section=RewritesConfig, plan=plan,
              workers=workers, settings=settings, enabled=enabled, estimate=estimate, check=check, models=models,
              description="Rewrite every kept train caption per_caption times on the caption pool (LaCLIP).")
