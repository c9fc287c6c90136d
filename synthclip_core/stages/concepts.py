"""Concepts: the bank, normalised, identified and (``concepts.safety``) screened for unsafe
concepts, cut into partitions of caption work."""

from __future__ import annotations

import json
import math
import os
import time

from pydantic import Field, model_validator

from ..config import Section, fingerprinted, operational, scheme_of, when_set
from ..curation.concepts import ConceptBank, load_bank
from ..curation.safety import blocklist_sha256, screen
from ..fingerprint import model_identity
from ..storage.schemas import table_from_rows, to_parquet_bytes
from ..storage.tables import read_table
from ..tiny_models import resolve_model
from .common import part_name
from .executor import StageContext
from .stage import Estimating, RunView, Stage, StagePlan, StageSummary

NAME = "concepts"
VERSION = 2
MANIFEST = "manifest.json"  # the bank's counts, for people: how many concepts, how many dropped and why
UNSAFE = "unsafe.parquet"  # the concepts the safety screen dropped, with their reasons (concepts.safety)


class ConceptSafety(Section):
    """Concepts dropped before captioning as unsafe: a blocklist, a text classifier, or both."""

    blocklist: str | None = Field(None, description="An fsspec URI of a text file of blocked terms, one per line ('#' "
                                  "starts a comment); a concept holding one as whole words (any case) is dropped.")
    classifier: str | None = Field(None, description="A transformers text-classification model (hub name, local path, "
                                   "or tiny/safety offline) scoring every concept.")
    unsafe_labels: list[str] = Field(default_factory=lambda: ["unsafe"], description="The classifier's labels that mean "
                                     "unsafe (e.g. toxic, nsfw).")
    threshold: float = Field(0.5, gt=0, le=1, description="A concept is dropped when an unsafe label scores at least this.")
    batch_size: int = operational(256, ge=1, description="Concepts per classifier batch.")

    @property
    def active(self) -> bool:
        return bool(self.blocklist or self.classifier)


class ConceptsConfig(Section):
    """Concept bank."""

    source: str = Field(
        "builtin:imagenet-1k",
        description="Concept bank: 'builtin:imagenet-1k' or an fsspec URI of a .txt/.json/.csv/.parquet file.",
    )
    column: str | None = Field(None, description="Column holding the concepts in a CSV or Parquet bank.")
    limit: int | None = Field(None, ge=1, description="Keep a deterministic sample of this many concepts (None: all).")
    per_partition: int = Field(1000, ge=1, description="Concepts per partition; one partition is one unit of caption work.")
    num_shards: int = Field(1, ge=1, description="Split the bank into this many shards by position (for runs over part of a bank).")
    shard_index: int = Field(0, ge=0, description="Which shard of the bank this run takes (0-based, < num_shards).")
    sha256: str | None = when_set(None, description="The sha256 of the concepts the run takes, one per line; pinned when a "
                                  "run begins (set it to insist on one version of the bank).")
    safety: ConceptSafety = when_set(default_factory=ConceptSafety, description="Drop unsafe concepts before captioning "
                                     "(the paper found 3.15% of MetaCLIP's bank unsafe); dropped ones are listed in the report.")

    @model_validator(mode="after")
    def _shard_in_range(self) -> "ConceptsConfig":
        if self.shard_index >= self.num_shards:
            raise ValueError(f"shard_index {self.shard_index} must be below num_shards {self.num_shards}")
        return self


def make(ctx: StageContext) -> StageSummary:
    cfg = ctx.config.concepts
    summary = StageSummary(NAME)
    started = time.time()
    bank = load_bank(cfg.source, cfg.column, cfg.limit, ctx.config.seed, cfg.num_shards, cfg.shard_index)
    committed = ctx.committed()
    unsafe = []
    if cfg.safety.active:
        bank, unsafe = _screened(ctx, bank, committed, started)
    table = bank.table()
    parts = []
    for index, start in enumerate(range(0, table.num_rows, cfg.per_partition)):
        parts.append(name := part_name(index))
        if name in committed:
            summary.skipped += 1
            continue
        part = table.slice(start, cfg.per_partition)
        ctx.commit(name, to_parquet_bytes(part, NAME), rows=part.num_rows, started=started, source=cfg.source)
        summary.computed += 1
    manifest = {"outputs": parts + ([UNSAFE] if cfg.safety.active else []), "concepts": table.num_rows,
                "dropped": bank.dropped, "source": cfg.source}
    ctx.commit(MANIFEST, json.dumps(manifest, indent=1).encode(), rows=table.num_rows, started=started, dropped=bank.dropped)
    summary.total, summary.rows, summary.notes = len(manifest["outputs"]), table.num_rows, {"dropped": bank.dropped}
    if cfg.safety.active:
        summary.notes["unsafe"] = {"dropped": len(unsafe), "examples": unsafe[:50]}
    summary.outputs = manifest["outputs"] + [MANIFEST]
    return summary


def _screened(ctx: StageContext, bank: ConceptBank, committed: set[str], started: float) -> tuple[ConceptBank, list[dict]]:
    """The bank less its unsafe concepts, and those (concept, reason), committed as ``unsafe.parquet``
    (read back where it is, so a resumed run does not classify again)."""
    safety = ctx.config.concepts.safety
    if UNSAFE in committed:
        unsafe = read_table(ctx.store, NAME, UNSAFE, "unsafe_concepts").to_pylist()
    else:
        commit = ctx.config.model_pins.get(CLASSIFIER, {}).get("commit")
        unsafe = [{"concept": bank.concepts[i], "reason": reason} for i, reason in screen(bank.concepts, safety, commit).items()]
        ctx.commit(UNSAFE, to_parquet_bytes(table_from_rows(unsafe, "unsafe_concepts"), "unsafe_concepts"), rows=len(unsafe),
                   started=started, blocklist=safety.blocklist, classifier=safety.classifier, threshold=safety.threshold)
    dropped = {row["concept"] for row in unsafe}
    return ConceptBank([c for c in bank.concepts if c not in dropped], {**bank.dropped, "unsafe": len(dropped)}), unsafe


def settings(cfg) -> dict:
    """The section's settings; a blocklist by its terms and a classifier by its identity."""
    out = {**fingerprinted(cfg.concepts, scheme_of(cfg)), "seed": cfg.seed}
    safety = cfg.concepts.safety
    if safety.blocklist:
        out["safety"]["blocklist"] = {"uri": safety.blocklist, "sha256": blocklist_sha256(safety.blocklist)}
    if safety.classifier:
        commit = cfg.model_pins.get(CLASSIFIER, {}).get("commit") if scheme_of(cfg) >= 3 else None
        out["safety"]["classifier"] = model_identity(safety.classifier, commit, scheme_of(cfg))
    return out


CLASSIFIER = "concepts.safety.classifier"  # its key in the run's model pins


def named_models(cfg) -> dict[str, str]:
    """A hub safety classifier, to pin when the run begins (a local one is identified by content)."""
    name = cfg.concepts.safety.classifier
    return {CLASSIFIER: name} if name and not os.path.exists(resolve_model(name)) else {}


def check(run: RunView) -> None:
    """The whole bank, read as the stage will (small next to a run): one line if it is bad."""
    c, seed = run.config.concepts, run.config.seed
    load_bank(c.source, c.column, c.limit, seed, c.num_shards, c.shard_index)


def estimate(plan: Estimating) -> StagePlan:
    """The concepts the bank gives (up to ``limit``), in partitions of caption work."""
    c = plan.cfg.concepts
    concepts = min(plan.bank_size, c.limit or plan.bank_size)
    return StagePlan(NAME, math.ceil(concepts / c.per_partition), concepts, stored_bytes=concepts * 64,
                     basis="~64 B per concept row")


STAGE = Stage(name=NAME, version=VERSION, upstream=(), make=make, section=ConceptsConfig, settings=settings, check=check,
              named_models=named_models,
              estimate=estimate, description="Load, normalise and partition the concept bank.")
