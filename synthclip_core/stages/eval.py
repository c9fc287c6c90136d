"""Evaluation of the trained checkpoint: the run's held-out synthetic split, and the external
benchmarks listed in ``eval.datasets``.

On the held-out split (``eval`` and ``holdout`` samples, in runs that render images): zero-shot
over the run's concepts (the label is the concept a caption was written for), image-text
retrieval, the closed loop's rounds (where the run has them), and concept coverage (per concept:
training captions that matched it against zero-shot accuracy on its images). Runs as a Ray task
(on a GPU node of a cluster when ``eval.num_gpus``). Writes ``eval/report.json`` and ``eval/report.md``, and with the held-out split
``eval/coverage.png`` and ``eval/coverage.parquet``. A training job evaluates ``eval.datasets``
only.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..captioning.rewriting import texts_note, texts_trained_on
from ..compute.resources import PoolSpec
from ..curation import closed_loop
from ..curation.balancing import held_out_concepts
from ..evaluation import coverage, predictions
from ..evaluation.config import EvalConfig
from ..evaluation.report import build_report, render_markdown
from ..storage.schemas import table_from_rows, to_parquet_bytes
from ..storage.store import RunRef
from ..storage.tables import read_rows, read_table
from .common import data_parts, read_concepts
from .executor import StageContext
from .stage import Estimating, RunView, Stage, StagePlan, StageSummary

NAME = "eval"
VERSION = 3  # 3: held-out concepts reported apart, coverage rows say which words training saw
REPORT = "report.json"
MARKDOWN = "report.md"
PICTURE = "coverage.png"
COVERAGE = "coverage.parquet"
HELDOUT = "synthetic-heldout"
HELD_OUT_SPLITS = {"eval", "holdout"}
MAX_PROMPTS = 200_000  # zero-shot over a huge concept bank uses one template per concept beyond this


def make(ctx: StageContext) -> StageSummary:
    run, cfg = ctx.run, ctx.config.eval
    held_out_split = run.has("images")
    other = held_out_source(run)
    if not held_out_split and other is None and not cfg.datasets:
        return StageSummary(NAME, notes={"skipped": "eval.datasets is empty: nothing to evaluate"})
    started = time.time()
    trained = run.require("train").notes
    checkpoint, arch = trained["checkpoint"], trained["arch"]
    held = [held_out_call(run, HELDOUT)] if held_out_split else []
    if other is not None:
        held.append(held_out_call(other, f"heldout:{other_id(cfg)}", cfg.held_out_images or None))
    call = (run.ref.as_dict(), cfg.model_dump(), arch, checkpoint, held)
    out = next(ctx.run_tasks(workers(run.config)[0], evaluate_run, [call]))
    ckpt_ref = ctx.input_ref("train", checkpoint)
    rows = out["coverage"]
    extra = {"coverage": {**coverage.summary(rows), "failures": coverage.failures(rows)}} if held_out_split else {}
    report = build_report(_results(out["results"]), checkpoint, ckpt_ref["sha256"], arch, run.fingerprints[NAME],
                          run_id=run.ref.run_id, **extra)

    def commit(output: str, data: bytes) -> None:  # scores on a GPU may differ in the last digits between writers
        ctx.commit(output, data, [ckpt_ref], len(report["results"]), started, deterministic=False)

    title, pictures, notes, outputs = f"Evaluation of {run.kind} `{run.ref.run_id}`", [], [], []
    if held_out_split:
        failed = ", ".join(f"{r['concept']} ({r['train_captions']})" for r in report["coverage"]["failures"][:10])
        notes = [coverage.split_note(report["coverage"]),
                 f"Concept coverage: {len(rows)} concepts with held-out images; concepts never recognised "
                 f"(training captions): {failed or 'none'}."]
        if run.has("topup"):
            notes.append(closed_loop.report_table(run.require("topup").notes))
        if said := predictions.recorded(run.store):  # an early ladder's verdicts: predicted against measured
            measured = {f"{r['task']}/{r['metric']}": r["value"] for r in report["results"] if r["dataset"] == HELDOUT}
            report["predictions"] = predictions.against_measured(said, measured)
            notes.append(predictions.note(report["predictions"]))
        if unsafe := run.require("concepts").notes.get("unsafe"):
            listed = "; ".join(f"{u['concept']} ({u['reason']})" for u in unsafe["examples"][:20])
            notes.append(f"Concept safety: {unsafe['dropped']} concepts dropped as unsafe before captioning "
                         f"(all in concepts/unsafe.parquet){': ' + listed if listed else ''}.")
        if note := texts_note(run):
            report["texts_per_image"] = texts_trained_on(run)
            notes.append(note)
        pictures = [("concept coverage", PICTURE)]
        commit(PICTURE, coverage.coverage_png(rows, f"Concept coverage, run {run.ref.run_id}"))
        commit(COVERAGE, to_parquet_bytes(table_from_rows(rows, "eval_coverage"), "eval_coverage"))
        outputs = [PICTURE, COVERAGE]
    commit(MARKDOWN, render_markdown(report, title, pictures, notes).encode())
    commit(REPORT, json.dumps(report, indent=1).encode())
    summary = StageSummary(NAME, total=1, computed=1, rows=len(report["results"]), reports=[f"{NAME}/{MARKDOWN}"],
                           pictures=[f"{NAME}/{PICTURE}"] if held_out_split else [])
    summary.notes = {f"{r['dataset']}/{r['task']}/{r['metric']}": r["value"] for r in report["results"]}
    summary.outputs = outputs + [MARKDOWN, REPORT]
    return summary


def workers(cfg) -> list[PoolSpec]:
    """One Ray task (on a GPU node of a cluster with ``eval.num_gpus``)."""
    return [PoolSpec(kind="tasks", num_gpus=cfg.eval.num_gpus, label=NAME, fields=("eval.num_gpus",))]


def _results(dicts: list[dict]):
    from ..evaluation.tasks import TaskResult

    return [TaskResult(**d) for d in dicts]


def held_out_source(run: RunView) -> RunView | None:
    """The synthetic run a training job's ``eval.held_out_of`` names, its images rendered."""
    if run.has("images") or not (name := getattr(run.config.eval, "held_out_of", None)):
        return None
    other = run.sibling(name[4:])
    if not run.config.eval.held_out_images:
        other.require("images")
    return other


def other_id(cfg: EvalConfig) -> str:
    return (cfg.held_out_of or "")[4:]


def held_out_call(source: RunView, name: str, images: list[str] | None = None) -> dict:
    """What the evaluation task needs to read ``source``'s held-out split (of ``images`` only, where
    given), reported as ``name`` (with concept coverage only for a run's own split: it sets
    accuracy against its training captions)."""
    parts = held_out_parts(source, images)
    return {"ref": source.ref.as_dict(), "parts": parts, "seed": source.config.seed,
            "holdout": [source.config.balanced.holdout_concepts, source.config.balanced.holdout_composed], "name": name,
            "coverage": name == HELDOUT}


def evaluate_run(ref: dict, eval_config: dict, arch: str, checkpoint: str, held: list[dict]) -> dict:
    """Runs in a Ray task: load the checkpoint through open_clip and score each held-out split in
    ``held`` (the run's own, or the run a training job names) and the benchmarks."""
    import torch

    from ..evaluation.benchmarks import evaluate_dataset
    from ..evaluation.models import load_eval_model

    torch.set_num_threads(1 if not torch.cuda.is_available() else torch.get_num_threads())
    cfg = EvalConfig.model_validate(eval_config)
    model = load_eval_model(RunRef(**ref).store().uri("train", checkpoint), arch=arch)
    results, rows = [], []
    for split in held:
        found, coverage_rows = _held_out(model, RunRef(**split["ref"]).store(), cfg, split["seed"], split["holdout"],
                                         split["parts"])
        for result in found:
            result.dataset = split["name"]
        results += found
        rows += coverage_rows if split["coverage"] else []
    for ds in cfg.datasets:
        results.append(evaluate_dataset(model, ds, cfg.templates, cfg.batch_size))
    return {"results": [{**asdict(r), "correct": [], "kept": []} for r in results], "coverage": rows}


def _held_out(model, store, cfg, seed: int, holdout: tuple[int, int], parts: dict[str, list[str]]) -> tuple[list, list[dict]]:
    """Zero-shot over the run's concepts and retrieval on the held-out split, and concept coverage.

    Partition by partition, only the held-out rows' row groups are read and their images encoded
    at once, so what stays in memory is their features, never the JPEGs of the run."""
    import torch

    from ..evaluation.datasets import DatasetError
    from ..evaluation.features import encode_images
    from ..evaluation.tasks import retrieval_on, zeroshot_on

    concepts = read_concepts(store, parts["concepts"])
    ids, names = concepts.column("concept_id").to_pylist(), concepts.column("concept").to_pylist()
    index = {cid: i for i, cid in enumerate(ids)}
    feats, kept, skipped, concept_of, captions, seen = [], [], [], [], [], 0
    for rows in held_out_rows(store, parts["images"]):
        part_feats, part_kept, part_skipped = encode_images(model.model, model.preprocess, rows.column("jpg").to_pylist(),
                                                            cfg.batch_size, model.device)
        image_ids = rows.column("image_id").to_pylist()
        skipped += [{"id": image_ids[i], "reason": reason} for i, reason in part_skipped]
        if part_kept:
            feats.append(part_feats)
            row_concepts, row_captions = rows.column("concept_id").to_pylist(), rows.column("caption").to_pylist()
            kept += [seen + i for i in part_kept]
            concept_of += [row_concepts[i] for i in part_kept]
            captions += [[row_captions[i]] for i in part_kept]
        seen += rows.num_rows
    if not seen:
        return [], []
    if not kept:
        raise DatasetError(f"{HELDOUT}: none of its {seen} images could be read (e.g. {skipped[0]['id']}: "
                           f"{skipped[0]['reason']})")
    feats = torch.cat(feats)
    templates = held_out_templates(cfg, len(names))
    zs = zeroshot_on(model, HELDOUT, feats, kept, [index[c] for c in concept_of], names, templates, cfg.batch_size, skipped)
    zs.per_class = {}  # per concept: in coverage.parquet instead
    rows = coverage.concept_rows(list(zip(ids, names)), _train_counts(store, parts), concept_of, zs.correct,
                                 held_out_concepts(seed, list(zip(ids, names)), *holdout))
    return [zs, retrieval_on(model, HELDOUT, feats, kept, captions, cfg.batch_size, skipped)], rows


def held_out_templates(cfg: EvalConfig, classes: int) -> list:
    """The zero-shot templates over the run's concepts: one only where all of them would make more
    than ``MAX_PROMPTS`` prompts."""
    from ..evaluation.templates import load_templates

    templates = load_templates(cfg.templates)
    return templates[:1] if classes * len(templates) > MAX_PROMPTS else templates


def held_out_rows(store, image_parts: list[str]) -> Iterator[pa.Table]:
    """The held-out split of these image partitions, partition by partition (image_id, concept_id,
    caption, jpg), reading only the row groups that hold it."""
    for part in image_parts:
        rows = read_rows(store, "images", part, "split", HELD_OUT_SPLITS, ["image_id", "concept_id", "caption", "jpg"])
        if rows.num_rows:
            yield rows


def held_out_parts(run: RunView, images: list[str] | None = None) -> dict[str, list[str]]:
    """The partitions of the stages a run's held-out split is read from (its concepts, captions,
    images: all of them, or the image partitions named)."""
    parts = {stage: data_parts(run.require(stage).outputs) for stage in ("concepts", "balanced", "topup")
             if run.has(stage)}
    parts["images"] = list(images) if images is not None else data_parts(run.require("images").outputs)
    return parts


def held_out_results(model, run: RunView, name: str) -> list:
    """Zero-shot and retrieval of an evaluation model (``evaluation.models.EvalModel``) on ``run``'s
    held-out split, as its own eval stage measures them, under the dataset name ``name``: how
    ``synthclip compare`` puts runs of several text-to-image models or settings on the same data."""
    parts = held_out_parts(run)
    b = run.config.balanced
    results, _ = _held_out(model, run.store, run.config.eval, run.config.seed, (b.holdout_concepts, b.holdout_composed), parts)
    for result in results:
        result.dataset = name
    return results


def _train_counts(store, parts: dict[str, list[str]]) -> dict[str, int]:
    """Training captions that matched each concept (after balancing and the closed loop, train split only)."""
    counts: Counter = Counter()
    for stage, part in [(s, p) for s in ("balanced", "topup") for p in parts.get(s, [])]:
        table = read_table(store, stage, part, "balanced").select(["split", "matched_concept_ids"])
        train = table.filter(pc.equal(table["split"], "train"))
        counts.update(pc.list_flatten(train["matched_concept_ids"]).to_pylist())
    return dict(counts)


def estimate(plan: Estimating) -> StagePlan:
    """The held-out pairs: the images that do not train."""
    return StagePlan(NAME, 2, plan.rows("images") - plan.rows("shards"), basis="held-out pairs")


STAGE = Stage(name=NAME, version=VERSION, upstream=("concepts", "balanced", "topup", "images", "train"), make=make,
              section=EvalConfig, workers=workers, estimate=estimate,
              description="Evaluate the final checkpoint on the held-out synthetic split and the configured benchmarks.")
