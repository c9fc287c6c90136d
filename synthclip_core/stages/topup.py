"""Topup: the closed loop. Concepts that balancing left with fewer than ``topup.target`` kept
captions get new ones, from the captions stage's model with new seeds, in rounds.

Round r (1, 2, ...):
1. plan (here): ``round-r/plan.parquet``, the captions asked for, from the kept counts after the
   round before (balancing's ``stats.parquet`` for round 1), by :func:`closed_loop.round_requests`;
   a concept's new captions continue its indices, so their seeds and ids are new.
2. caption (the caption pool, :class:`TopupWork`): ``round-r/captions-j.parquet``, slice j of the
   plan, in the captions schema.
3. keep (here, in plan order): each new caption matched against the whole bank and kept or dropped
   by :func:`closed_loop.verdict` -> ``part-rR-j.parquet`` (the balanced schema, split ``train``:
   the images stage renders them as it renders balanced partitions), then ``round-r/coverage.parquet``
   (kept and asked per concept), whose record holds the round's figures.

The loop ends when every concept that may be topped up reached the target, a round kept nothing
new, the budget is spent, or ``max_rounds`` ran. ``histogram.png`` shows the concepts by kept
captions before and after. Every output is committed and names its round; a resumed run replays
the committed rounds from their outputs and makes only what is missing. The stage is one of a
run's stages only when ``topup.target`` is set (``enabled``), so runs without it keep their
fingerprints.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from pydantic import Field

from ..captioning.prompts import get_template
from ..captioning.writer import caption_settings
from ..config import Section, operational
from ..curation.balancing import ConceptMatcher, held_out_concepts, text_hash
from ..curation.closed_loop import coverage, round_requests, verdict
from ..errors import ConfigError
from ..pictures import gap_histogram
from ..storage.lineage import worker_info
from ..storage.schemas import table_from_rows, to_parquet_bytes
from ..storage.tables import read_table
from .common import CaptionsWork, data_parts, model_pool
from .executor import StageContext
from .stage import Estimating, RunView, Stage, StagePlan, StageSummary, WorkItem, section_settings

NAME = "topup"
VERSION = 1
HISTOGRAM = "histogram.png"
PLAN, COVERAGE = "plan.parquet", "coverage.parquet"


class TopupConfig(Section):
    """Closed-loop captioning: concepts balancing left under a target get new captions, in rounds."""

    target: int = Field(0, ge=0, description="Kept captions every concept should reach (0: off, and the run has no "
                        "topup stage); at most balanced.threshold, which balancing caps every concept at.")
    max_rounds: int = Field(3, ge=1, description="Rounds of new captions at most (the loop also ends when every concept "
                            "reached the target, a round kept nothing new, or the budget is spent).")
    budget: int | None = Field(None, ge=1, description="New captions asked for over all rounds at most (None: no cap); "
                               "the concepts with the fewest kept captions are served first.")
    oversample: float = Field(1.5, ge=1, description="Captions asked per missing one (some come back rejected, duplicate "
                              "or naming another concept).")
    template: str | None = Field("synthclip-focused", description="Prompt template of the new captions (None: the "
                                 "captions stage's); the default asks for the concept word for word.")
    per_partition: int = operational(4096, ge=1, description="New captions per partition (one unit of LLM work); the "
                                     "caption pool of the captions section writes them.")


def in_round(r: int, output: str) -> str:
    return f"round-{r}/{output}"


def kept_part(r: int, j: int) -> str:
    return f"part-r{r}-{j:05d}.parquet"


def enabled(cfg) -> bool:
    return getattr(cfg, "topup", None) is not None and cfg.topup.target > 0


@dataclass
class Loop:
    """What the loop knows between rounds, per concept in bank order."""

    ids: list[str]
    names: list[str]
    kept: np.ndarray  # kept captions naming the concept
    asked: np.ndarray  # captions written for it (its next index)
    held_out: np.ndarray  # never topped up; a new caption naming one is dropped
    probs: np.ndarray  # balancing's keep probabilities
    seen: set[int]  # text hashes of every kept caption
    requested: int = 0  # new captions asked for so far
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {cid: i for i, cid in enumerate(self.ids)}

    def eligible(self) -> np.ndarray:
        return ~self.held_out


def _start(ctx: StageContext) -> Loop:
    """The state balancing left: kept counts and keep probabilities from ``stats.parquet``, the
    text hashes of the balanced captions."""
    store, cfg = ctx.store, ctx.config
    balanced = ctx.run.require("balanced")
    stats = read_table(store, "balanced", "stats.parquet", "balanced_stats")
    ids = stats.column("concept_id").to_pylist()
    held = held_out_concepts(cfg.seed, list(zip(ids, stats.column("concept").to_pylist())), cfg.balanced.holdout_concepts,
                             cfg.balanced.holdout_composed)
    seen: set[int] = set()
    for part in data_parts(balanced.outputs):
        seen.update(text_hash(t) for t in read_table(store, "balanced", part).column("caption").to_pylist())
    return Loop(ids=ids, names=stats.column("concept").to_pylist(),
                kept=stats.column("count_after").to_numpy().astype(np.int64),
                asked=np.full(len(ids), cfg.captions.per_concept, dtype=np.int64),
                held_out=np.array([cid in held for cid in ids], dtype=bool),
                probs=stats.column("keep_probability").to_numpy(), seen=seen)


def make(ctx: StageContext) -> StageSummary:
    cfg = ctx.config.topup
    loop = _start(ctx)
    before = loop.kept.copy()
    matcher: list[ConceptMatcher] = []  # built once, only if a round has captions to keep
    rounds: list[dict] = []
    outputs: list[str] = []
    had = ctx.committed()
    for r in range(1, cfg.max_rounds + 1):
        requests = _plan(ctx, r, loop)
        if requests is None:
            break
        size = cfg.per_partition
        slices = [(j, start) for j, start in enumerate(range(0, requests.num_rows, size))]
        items = ctx.pending([(in_round(r, f"captions-{j:05d}.parquet"), NAME, in_round(r, PLAN),
                              {"offset": start, "length": size, "params": {"round": r}}) for j, start in slices])
        result = ctx.run_partitions(workers(ctx.config)[0], TopupWork, caption_settings(ctx.config, cfg.template), items,
                                    len(slices))
        if not result.ok:
            return result
        figures = _keep(ctx, r, len(slices), loop, matcher)
        rounds.append(figures)
        outputs += [in_round(r, PLAN)] + [in_round(r, f"captions-{j:05d}.parquet") for j, _ in slices] \
            + [kept_part(r, j) for j, _ in slices] + [in_round(r, COVERAGE)]
        if figures["kept"] == 0:
            break
    notes = _notes(ctx, loop, before, rounds)
    if HISTOGRAM not in ctx.committed():
        ctx.commit(HISTOGRAM, gap_histogram(before, loop.kept, cfg.target), rows=len(before))
    outputs.append(HISTOGRAM)
    skipped = len(set(outputs) & had)
    return StageSummary(NAME, total=len(outputs), skipped=skipped, computed=len(outputs) - skipped, rows=notes["kept"],
                        notes=notes, pictures=[f"{NAME}/{HISTOGRAM}"], outputs=outputs)


def _under(loop: Loop, target: int) -> np.ndarray:
    return loop.eligible() & (loop.kept < target)


def _plan(ctx: StageContext, r: int, loop: Loop) -> pa.Table | None:
    """Round r's requests (committed, or read where they are), with the loop's asked counts moved
    on; None when no concept needs or the budget allows another caption."""
    cfg, store = ctx.config.topup, ctx.store
    name = in_round(r, PLAN)
    if name in ctx.committed():
        plan = read_table(store, NAME, name, "topup_requests")
        ask = np.bincount([loop.index[c] for c in plan.column("concept_id").to_pylist()], minlength=len(loop.ids))
    else:
        left = None if cfg.budget is None else cfg.budget - loop.requested
        ask = round_requests(loop.kept, loop.eligible(), cfg.target, cfg.oversample, left)
        if not ask.sum():
            return None
        order = np.flatnonzero(ask)
        rows = [{"concept_id": loop.ids[i], "concept": loop.names[i], "index": int(loop.asked[i] + k)}
                for i in order for k in range(int(ask[i]))]
        plan = table_from_rows(rows, "topup_requests")
        inputs = [ctx.input_ref(NAME, in_round(r - 1, COVERAGE)) if r > 1 else ctx.input_ref("balanced", "stats.parquet")]
        ctx.commit(name, to_parquet_bytes(plan, "topup_requests"), inputs, plan.num_rows, round=r,
                   concepts=int(len(order)), target=cfg.target, oversample=cfg.oversample, budget=cfg.budget)
    loop.asked += ask
    loop.requested += int(ask.sum())
    return plan


def _keep(ctx: StageContext, r: int, n: int, loop: Loop, matcher: list[ConceptMatcher]) -> dict:
    """Keep or drop round r's new captions in plan order (committed partitions are replayed), then
    commit the round's coverage; the round's figures."""
    store, cfg = ctx.store, ctx.config
    committed = ctx.committed()
    verdicts: Counter = Counter()
    covered_before = coverage(loop.kept, cfg.topup.target)
    asked = 0
    for j in range(n):
        source = in_round(r, f"captions-{j:05d}.parquet")
        out = kept_part(r, j)
        if out in committed:
            kept = read_table(store, NAME, out, "balanced")
            for caption, matched in zip(kept.column("caption").to_pylist(), kept.column("matched_concept_ids").to_pylist()):
                loop.seen.add(text_hash(caption))
                loop.kept[[loop.index[c] for c in matched]] += 1
            record = store.record(NAME, out)
            verdicts.update(record["verdicts"])
            asked += record["asked"]
            continue
        if not matcher:
            matcher.append(ConceptMatcher(loop.names, cfg.balanced.case_sensitive))
        started = time.time()
        captions = read_table(store, NAME, source, "captions").select(["caption_id", "concept_id", "caption"])
        rows, part_verdicts = [], Counter()
        for cap_id, cid, caption in zip(*(captions.column(c).to_pylist() for c in ("caption_id", "concept_id", "caption"))):
            digest = text_hash(caption) if caption else 0
            matched = matcher[0].match(caption) if caption else []
            why = verdict(caption, digest, matched, loop.seen, loop.held_out, cfg.seed, cap_id, loop.ids, loop.probs)
            part_verdicts[why] += 1
            if why == "kept":
                loop.seen.add(digest)
                loop.kept[matched] += 1
                rows.append({"caption_id": cap_id, "concept_id": cid, "caption": caption,
                             "matched_concept_ids": [loop.ids[m] for m in matched], "split": "train"})
        ctx.commit(out, to_parquet_bytes(table_from_rows(rows, "balanced"), "balanced"), [ctx.input_ref(NAME, source)],
                   len(rows), started, round=r, asked=captions.num_rows, verdicts=dict(sorted(part_verdicts.items())),
                   worker=worker_info())
        verdicts.update(part_verdicts)
        asked += captions.num_rows
    figures = {"round": r, "asked": asked, "kept": verdicts.get("kept", 0), "dropped": dict(sorted(
        (k, v) for k, v in verdicts.items() if k != "kept")), "before": covered_before,
        "after": coverage(loop.kept, cfg.topup.target),
        "under_target_after": int(_under(loop, cfg.topup.target).sum())}
    name = in_round(r, COVERAGE)
    if name not in committed:
        table = pa.table({"concept_id": loop.ids, "kept": loop.kept, "asked": loop.asked})
        inputs = [ctx.input_ref(NAME, kept_part(r, j)) for j in range(n)]
        ctx.commit(name, to_parquet_bytes(table, "topup_coverage"), inputs, table.num_rows, round=r, summary=figures)
    return figures


def _notes(ctx: StageContext, loop: Loop, before: np.ndarray, rounds: list[dict]) -> dict:
    """What the loop did: per round and in all, and why it stopped."""
    cfg = ctx.config.topup
    asked = sum(f["asked"] for f in rounds)
    start, end = coverage(before, cfg.target), coverage(loop.kept, cfg.target)
    if not _under(loop, cfg.target).any():
        stop = "every concept reached the target"
    elif cfg.budget is not None and loop.requested >= cfg.budget:
        stop = "the budget was spent"
    elif rounds and rounds[-1]["kept"] == 0:
        stop = "a round kept nothing new"
    else:
        stop = f"{cfg.max_rounds} rounds ran"
    gained = end["at_least_target"] - start["at_least_target"]
    return {"target": cfg.target, "rounds": rounds, "stop": stop, "asked": asked,
            "kept": sum(f["kept"] for f in rounds), "before": start, "after": end,
            "held_out_concepts": int(loop.held_out.sum()),
            "concepts_reaching_target_per_1000_captions": round(1000 * gained / asked, 2) if asked else 0.0}


def workers(cfg) -> list:
    """The captions section's pool (its model, actors and GPUs) writes the new captions."""
    return [model_pool(cfg, "captions", label="topup")]


class TopupWork(CaptionsWork):
    """In a caption actor: the captions one slice of a round's plan asks for."""

    reads, columns = "topup_requests", ("concept_id", "concept", "index")

    def requests(self, rows: pa.Table, item: WorkItem) -> list[tuple[str, str, int]]:
        return list(zip(*(rows.column(c).to_pylist() for c in self.columns)))


def settings(cfg) -> dict:
    """The section's settings and the prompt template's version and text."""
    out = section_settings(NAME)(cfg)
    out["template"] = get_template(cfg.topup.template or cfg.captions.template).identity()
    return out


def check(run: RunView) -> None:
    """A target above balancing's threshold could never be reached: balancing caps every concept there."""
    cfg = run.config
    if cfg.topup.target > cfg.balanced.threshold:
        raise ConfigError(f"topup.target ({cfg.topup.target}) is above balanced.threshold ({cfg.balanced.threshold}): "
                          f"balancing caps every concept at the threshold, so the loop could never reach it")


def estimate(plan: Estimating) -> StagePlan:
    """The closed loop's captions at most: every concept short of the whole target in every round
    (or the budget); what it keeps depends on what balancing leaves, so images and shards leave it out."""
    top = plan.cfg.topup
    asked = plan.rows("concepts") * math.ceil(top.target * top.oversample) * top.max_rounds
    asked = min(asked, top.budget) if top.budget else asked
    return StagePlan(NAME, math.ceil(asked / top.per_partition), asked,
                     gpu_hours=asked / plan.rates.rate("captions_per_gpu_s", plan.cfg.captions.ray_resources)[0] / 3600,
                     basis=f"at most (every concept short by the whole target, {top.max_rounds} rounds, or the budget); "
                           f"the loop's images are not in the images estimate")


STAGE = Stage(name=NAME, version=VERSION, upstream=("balanced",), make=make, section=TopupConfig, workers=workers,
              settings=settings, enabled=enabled, check=check, estimate=estimate,
              description="Top up the concepts balancing left under the target with new captions, in rounds (the closed loop).")
