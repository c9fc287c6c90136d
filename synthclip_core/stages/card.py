"""Card: the run's dataset card, for people and for the Hugging Face Hub.

Two steps. On the stage's pool, each image partition of the card's sample (whole concept
partitions, ``card/sample.py``) is cut to ``per_concept`` images per concept and embedded by the
scorer: ``card/sample/part-i-j.parquet``. Then, here, whole-run statistics from columns and
commit records already written (caption lengths and naming, the tail, near-duplicates from the
images' perceptual hashes, dropped images, cost) and the sample's per-concept diversity and
alignment make ``card/concepts.parquet``, ``card/stats.json``, the pictures and
``card/README.md``. The card is also placed at the run folder's root as ``README.md``: the run
folder is a dataset repository as it is (docs/card.md).
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pyarrow as pa
from pydantic import Field

from ..card import document, pictures
from ..card.captions import CaptionTally, distinct_ngrams, tail
from ..card.duplicates import near_duplicates, phash
from ..card.facts import facts_of, limitations
from ..card.sample import chosen_partitions, concept_partition, keep_concepts, keep_lowest, measure
from ..compute.resources import PoolSpec
from ..config import Section, operational
from ..errors import ConfigError
from ..planning.prices import PriceTable, load_prices
from ..rendering.scoring import hub_weights
from ..storage.ledger import stage_spend
from ..storage.schemas import table_from_rows, to_parquet_bytes
from ..storage.tables import read_narrow, read_table
from .common import data_parts, model_pool
from .executor import Made, PartitionWork, StageContext
from .stage import Estimating, RunView, Stage, StagePlan, StageSummary, WorkItem

NAME = "card"
VERSION = 1
SAMPLE = "sample"
README, STATS, CONCEPTS = "README.md", "stats.json", "concepts.parquet"
STORY, DUPLICATES, LOWEST = "story.png", "duplicates.png", "lowest.png"
SCORER = "card.scorer"  # its key in the run's model pins
THUMBNAIL = 96  # pixels: the side of a sampled image's copy for contact sheets


class CardConfig(Section):
    """Dataset card: what the run made, measured, written as a Hugging Face dataset card."""

    enabled: bool = Field(True, description="Write the card (a stage after eval).")
    concepts: int = Field(1000, ge=1, description="Concepts sampled for the embedding statistics: whole concept "
                          "partitions in a seeded order until they hold this many (all, if the run has fewer).")
    per_concept: int = Field(32, ge=2, description="Images sampled per concept (all, where a concept has fewer).")
    scorer: str = Field("run", description="The embedding model: 'run' (the run's own trained CLIP), or an open_clip "
                        "model as ARCH:PRETRAINED or local-dir:PATH; cards compare across runs with one fixed scorer.")
    duplicate_bits: int = Field(2, ge=0, le=15, description="Near-duplicates: perceptual hashes at most this many "
                                "of 64 bits apart.")
    pretty_name: str | None = Field(None, description="The card's title (default: from the run's name and models).")
    license: str | None = Field(None, description="The data's license (default: from the models' own cards, else "
                                "'unknown').")
    num_actors: int = operational(1, ge=1, description="Ray actors embedding the sample (each loads the scorer once).")
    num_gpus: float = operational(0, ge=0, description="GPUs per actor (0: CPU).")
    ray_resources: dict[str, float] = operational(default_factory=dict, description="Extra Ray resources per actor.")


def enabled(cfg) -> bool:
    return cfg.card.enabled


def make(ctx: StageContext) -> StageSummary:
    run, cfg = ctx.run, ctx.config.card
    started = time.time()
    counts = read_table(ctx.store, "balanced", "stats.parquet", "balanced_stats")
    too_many(run, cfg, counts)
    chosen = sample_parts(run)
    items = ctx.pending([(f"{SAMPLE}/{part}", "images", part, {}) for part in chosen])
    summary = ctx.run_partitions(workers(run.config)[0], SampleWork, sample_settings(run), items, len(chosen))
    if summary.failures:
        return summary
    samples = [read_table(ctx.store, NAME, f"{SAMPLE}/{part}", "card_sample") for part in chosen]
    sample = keep_concepts(keep_lowest(pa.concat_tables(samples), cfg.per_concept, run.config.seed), cfg.concepts,
                           run.config.seed)
    facts = facts_of(run, counts)
    measures, own, floor = measure(sample, run.config.seed)
    rows = concept_rows(run, measures, counts)
    facts.captions = caption_statistics(ctx, sample, counts)
    facts.images = image_statistics(ctx, sample, rows, (own, floor))
    prices = load_prices()
    facts.cost, facts.quality = cost_and_quality(ctx, prices)
    facts.cost_basis = {"version": prices.version, "currency": prices.currency}
    facts.limitations = limitations(run, facts)
    inputs = [ctx.input_ref(NAME, f"{SAMPLE}/{p}") for p in chosen]

    def commit(output: str, data: bytes, count: int = 1) -> None:  # scores on a GPU may differ in the last digits
        ctx.commit(output, data, inputs, count, started, deterministic=False)

    commit(CONCEPTS, to_parquet_bytes(table_from_rows(rows, "card_concepts"), "card_concepts"), len(rows))
    commit(STORY, pictures.story(rows, f"run {run.ref.run_id}"))
    commit(LOWEST, pictures.lowest(rows, sample))
    groups = facts.images["near_duplicates"].pop("examples", [])
    commit(DUPLICATES, pictures.duplicate_groups(groups))
    commit(STATS, json.dumps(facts.as_dict(), indent=1).encode())
    text = document.render(facts, {"story": f"{NAME}/{STORY}", "duplicates": f"{NAME}/{DUPLICATES}",
                                   "lowest": f"{NAME}/{LOWEST}"})
    commit(README, text.encode())
    place_at_root(ctx, text.encode(), ctx.lineage(inputs, 1, started))
    outputs = [CONCEPTS, STORY, LOWEST, DUPLICATES, STATS, README]
    return StageSummary(NAME, total=summary.total + len(outputs), skipped=summary.skipped,
                        computed=summary.computed + len(outputs), rows=len(rows), notes=facts.headline(),
                        pictures=[f"{NAME}/{STORY}", f"{NAME}/{DUPLICATES}"], reports=[f"run/{README}"],  # links from the root
                        outputs=[f"{SAMPLE}/{p}" for p in chosen] + outputs)


def place_at_root(ctx: StageContext, data: bytes, lineage: dict) -> None:
    """The card as the run folder's ``README.md`` (a dataset repository's card), committed like
    ``run.json``; a card made again replaces the one there."""
    import hashlib

    store = ctx.store
    if README in store.committed("run") and store.record("run", README)["sha256"] != hashlib.sha256(data).hexdigest():
        store.retire("run", README)
    store.commit("run", README, data, lineage, deterministic=False)


def too_many(run: RunView, cfg: CardConfig, counts: pa.Table) -> None:
    """A card section that asks for more than the run has, where a user asked for it (the defaults
    take what there is): one line."""
    present = [c for c in counts.column("count_after").to_pylist() if c]
    asked = {name for name in ("concepts", "per_concept") if getattr(cfg, name) != CardConfig.model_fields[name].default}
    if "concepts" in asked and cfg.concepts > len(present):
        raise ConfigError(f"card.concepts: {cfg.concepts} asked, the run has {len(present)} concepts with kept captions")
    most = max(present, default=0) * run.config.images.images_per_caption
    if "per_concept" in asked and cfg.per_concept > most:
        raise ConfigError(f"card.per_concept: {cfg.per_concept} asked, no concept of the run has more than {most} images")


def check(run: RunView) -> None:
    """Before any work: a scorer that cannot be what it names, and (once balancing is done) a
    sample larger than the run."""
    cfg = run.config.card
    if problem := scorer_problem(cfg.scorer):
        raise ConfigError(f"card.scorer: {problem}")
    if run.completion("balanced") is not None:
        too_many(run, cfg, read_table(run.store, "balanced", "stats.parquet", "balanced_stats"))


def scorer_problem(name: str) -> str | None:
    """What is wrong with a scorer's name, found without loading it (None: it may load)."""
    import os

    import open_clip

    from ..clip_models import register_model_configs
    from ..rendering.scoring import local_weights

    if name == "run" or local_weights(name) is not None:
        return None
    if name.startswith("local-dir:"):
        return f"{name!r}: no open_clip model folder there"
    register_model_configs()
    arch, _, tag = name.partition(":")
    if open_clip.get_model_config(arch) is None:
        return f"{name!r}: unknown open_clip architecture {arch!r} (want 'run', ARCH:PRETRAINED or local-dir:PATH)"
    if tag and not open_clip.get_pretrained_cfg(arch, tag) and not os.path.exists(tag):
        return f"{name!r}: {arch} has no pretrained tag {tag!r} and no file of that name exists"
    return None


def sample_parts(run: RunView) -> list[str]:
    """The image partitions of the card's sample: those of the chosen concept partitions."""
    concepts = {int(o[len("part-"):-len(".parquet")]): r["rows"]
                for o, r in run.store.records("concepts", data_parts(run.require("concepts").outputs)).items()}
    chosen = set(chosen_partitions(concepts, run.config.card.concepts, run.config.seed))
    return [p for p in data_parts(run.require("images").outputs) if concept_partition(p) in chosen]


def sample_settings(run: RunView) -> dict:
    cfg = run.config.card
    settings = {"seed": run.config.seed, "per_concept": cfg.per_concept, "scorer": cfg.scorer,
                "commit": run.config.model_pins.get(SCORER, {}).get("commit")}
    if cfg.scorer == "run":
        trained = run.require("train").notes
        settings |= {"checkpoint": run.store.uri("train", trained["checkpoint"]), "arch": trained["arch"]}
    return settings


class SampleWork(PartitionWork):
    """In a card actor: the scorer loaded once; one image partition's sample embedded per call."""

    reads, writes = "images", "card_sample"
    columns = ("image_id", "concept_id", "caption", "split", "jpg")

    def setup(self) -> None:
        from ..evaluation.features import pick_device
        from ..rendering.scoring import ClipScorer

        s = self.settings
        device = pick_device()
        if s["scorer"] == "run":
            from ..evaluation.models import load_eval_model

            model = load_eval_model(s["checkpoint"], arch=s["arch"], device=device)
            self.scorer = ClipScorer.of(model.model, model.preprocess, model.tokenizer, model.device)
        else:
            self.scorer = ClipScorer(s["scorer"], device, s.get("commit"), field=SCORER)

    @property
    def device(self) -> str:
        return self.scorer.device

    def process(self, rows: pa.Table, item: WorkItem) -> Made:
        kept = keep_lowest(rows, self.settings["per_concept"], self.settings["seed"])
        jpgs = kept.column("jpg").to_pylist()
        images, texts = self.scorer.embed(jpgs, kept.column("caption").to_pylist())
        table = kept.select(["image_id", "concept_id", "split", "caption"]).append_column(
            "image_embedding", pa.array(list(images), pa.list_(pa.float32()))).append_column(
            "text_embedding", pa.array(list(texts), pa.list_(pa.float32()))).append_column(
            "thumbnail", pa.array([thumbnail(j) for j in jpgs], pa.binary()))
        return Made(table, {"sampled": table.num_rows, "of": rows.num_rows, "scorer": self.settings["scorer"]})


def thumbnail(jpg: bytes) -> bytes:
    from PIL import Image

    image = Image.open(io.BytesIO(jpg)).convert("RGB")
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def concept_rows(run: RunView, measures: list, counts: pa.Table) -> list[dict]:
    """Per sampled concept (``card.sample.measure``'s): its frequency, its diversity and its alignment."""
    from ..curation.balancing import held_out_concepts

    stats = {r["concept_id"]: r for r in counts.to_pylist()}
    b = run.config.balanced
    held = held_out_concepts(run.config.seed, [(r["concept_id"], r["concept"]) for r in stats.values()],
                             b.holdout_concepts, b.holdout_composed)
    return [{"concept_id": m.concept_id, "concept": stats.get(m.concept_id, {}).get("concept", m.concept_id),
             "count_before": stats.get(m.concept_id, {}).get("count_before", 0),
             "count_after": stats.get(m.concept_id, {}).get("count_after", 0), "images": m.images,
             "image_vendi": m.image_vendi, "caption_vendi": m.caption_vendi, "alignment": m.alignment,
             "shuffled": m.shuffled, "held_out": m.concept_id in held} for m in measures]


def caption_statistics(ctx: StageContext, sample: pa.Table, counts: pa.Table) -> dict:
    """Whole-run counts over the kept captions (streamed a partition at a time), the tail, and the
    sample's distinct n-grams."""
    run, tally = ctx.run, CaptionTally()
    for stage in ("balanced", "topup"):
        if run.has(stage):
            for part in data_parts(run.require(stage).outputs):
                tally.add(read_table(ctx.store, stage, part, "balanced",
                                     ["caption", "concept_id", "matched_concept_ids", "split"]))
    done = run.require("balanced").notes
    texts = sample.column("caption").to_pylist()
    return {**tally.summary(), "distinct_1": distinct_ngrams(texts, 1), "distinct_2": distinct_ngrams(texts, 2),
            "written": done.get("captions_in"), "rejected_by_cleaning": done.get("empty"),
            "duplicates_removed": done.get("duplicates"), "naming_no_concept": done.get("no_match"),
            "kept": done.get("kept"), "threshold": run.config.balanced.threshold,
            "tail": tail(np.array(counts.column("count_after").to_pylist(), np.int64), run.config.balanced.threshold)}


def image_statistics(ctx: StageContext, sample: pa.Table, rows: list[dict], scores: tuple) -> dict:
    """Alignment and diversity on the sample (``scores``: each image's own and shuffled score);
    near-duplicates over the whole run from each image's perceptual hash (one narrow column per
    partition, never the images)."""
    own, floor = scores
    floor_mean = float(floor.mean()) if len(floor) else 0.0
    vendi = np.array([r["image_vendi"] for r in rows]) if rows else np.zeros(1)
    return {"sampled": sample.num_rows, "sampled_concepts": len(rows),
            "alignment": float(own.mean()) if len(own) else 0.0, "shuffled_floor": floor_mean,
            "below_floor": float((own < floor_mean).mean()) if len(own) else 0.0,
            "image_vendi_median": float(np.median(vendi)), "caption_vendi_median":
                float(np.median([r["caption_vendi"] for r in rows])) if rows else 0.0,
            "per_concept": ctx.config.card.per_concept,
            "near_duplicates": duplicates(ctx)}


def duplicates(ctx: StageContext, examples: int = 6) -> dict:
    """Near-duplicate groups over every image of the run, with the largest groups' images. Each
    partition's perceptual hashes are one narrow column; a partition rendered before images had
    them (a run that began earlier) has its images read once to hash them here."""
    store, parts = ctx.store, data_parts(ctx.run.require("images").outputs)
    hashes, where, hashed_here = [], [], 0
    for index, part in enumerate(parts):
        table = read_narrow(store, "images", part, ["phash"])
        if table is None:
            jpgs = read_table(store, "images", part, columns=["jpg"]).column("jpg").to_pylist()
            table, hashed_here = pa.table({"phash": pa.array([phash(j) for j in jpgs], pa.int64())}), hashed_here + 1
        hashes.append(table.column("phash").to_numpy())
        where.append(np.stack([np.full(table.num_rows, index, np.int32), np.arange(table.num_rows, dtype=np.int32)]))
    if not hashes:
        return {"images": 0, "groups": 0, "in_groups": 0, "surplus": 0, "share": 0.0, "hashed_here": 0}
    found = near_duplicates(np.concatenate(hashes), ctx.config.card.duplicate_bits)
    where_all = np.concatenate(where, axis=1)
    shown = []
    for members in found.members(examples):
        located = where_all[:, members[:6]]
        images = []
        for part_index in sorted(set(located[0].tolist())):
            table = read_table(store, "images", parts[part_index], columns=["jpg", "caption"])
            images += [table.slice(int(r), 1).to_pylist()[0] for r in located[1][located[0] == part_index]]
        shown.append({"size": len(members), "images": images})
    total = len(found.labels)
    return {"images": total, "groups": found.count, "in_groups": found.images, "surplus": found.surplus,
            "share": found.surplus / max(total, 1), "bits": ctx.config.card.duplicate_bits,
            "hashed_here": hashed_here, "examples": shown}


def cost_and_quality(ctx: StageContext, prices: PriceTable) -> tuple[dict, dict]:
    """Per stage: what the ledger says it spent (hours, the share failed or lost, money at the
    built-in price table) and bytes stored, from its records; and the images each quality guard dropped."""
    cost, dropped, rerendered = {}, {}, 0
    for stage in ctx.run.stages:
        if stage.name == NAME or not ctx.run.has(stage.name):
            continue
        records = ctx.store.records(stage.name)
        spend = stage_spend(ctx.store, stage.name, records)
        stored = 0
        for record in records.values():
            stored += record.get("bytes", 0)
            if stage.name == "images":
                quality = record.get("quality") or {}
                rerendered += quality.get("rerendered", 0)
                for problem, n in (quality.get("dropped") or {}).items():
                    dropped[problem] = dropped.get(problem, 0) + n
        cost[stage.name] = {"gpu_hours": round(spend.gpu_hours, 4), "cpu_hours": round(spend.cpu_hours, 4),
                            "wasted_share": spend.wasted_share, "money": prices.money(spend), "bytes": stored}
    return cost, {"dropped": dict(sorted(dropped.items())), "rerendered": rerendered}


def workers(cfg) -> list[PoolSpec]:
    return [model_pool(cfg, NAME, label=NAME)]


def named_models(cfg) -> dict[str, str]:
    """The hub repository of a scorer named by an open_clip tag, to pin when the run begins."""
    hub = hub_weights(cfg.card.scorer) if cfg.card.enabled and cfg.card.scorer != "run" else None
    return {SCORER: hub[0]} if hub else {}


def estimate(plan: Estimating) -> StagePlan:
    """The sample: at most ``concepts`` x ``per_concept`` images embedded once each."""
    c = plan.cfg.card
    return StagePlan(NAME, 6, min(c.concepts * c.per_concept, plan.rows("images")), basis="the card's sample")


STAGE = Stage(name=NAME, version=VERSION, upstream=("balanced", "topup", "images", "train", "eval"), make=make,
              section=CardConfig, workers=workers, enabled=enabled, estimate=estimate, named_models=named_models, check=check,
              models=lambda cfg: {},
              description="Write the run's dataset card: diversity, alignment, duplicates, the tail, lineage and cost.")
