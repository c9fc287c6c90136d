"""Evaluation of the trained checkpoint: the run's held-out synthetic split, always, and the
external benchmarks listed in ``eval.datasets``.

On the held-out split (``eval`` and ``holdout`` samples): zero-shot over the run's concepts (the
label is the concept a caption was written for), image-text retrieval, and concept coverage (per
concept: training captions that matched it against zero-shot accuracy on its images). Runs as a
Ray task (on a GPU node of a cluster when ``eval.num_gpus``). Writes ``eval/report.json``,
``eval/report.md``, ``eval/coverage.png`` and ``eval/coverage.parquet``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict

import pyarrow as pa
import pyarrow.compute as pc

from ..balancing import held_out_concepts
from ..evaluation import coverage
from ..evaluation.report import build_report, render_markdown
from ..run import Run, RunRef
from ..schemas import table_from_rows, to_parquet_bytes
from .common import StageSummary, data_parts, finished_summary, input_ref, lineage, read_concepts, read_table, require_done
from .concepts import MANIFEST as CONCEPTS_MANIFEST
from .images import render_parts
from .train import SUMMARY as TRAIN_SUMMARY

REPORT = "report.json"
PICTURE = "coverage.png"
HELDOUT = "synthetic-heldout"
MAX_PROMPTS = 200_000  # zero-shot over a huge concept bank uses one template per concept beyond this


def run_eval(run: Run) -> StageSummary:
    import ray

    store, cfg = run.store, run.config.eval
    if (finished := finished_summary(store, "eval", REPORT)) is not None:
        finished.pictures, finished.reports = [f"eval/{PICTURE}"], ["eval/report.md"]
        return finished
    started = time.time()
    require_done(run, "train", TRAIN_SUMMARY)
    train_summary = json.loads(store.read_bytes("train", TRAIN_SUMMARY))
    checkpoint = train_summary["checkpoint"]
    concept_parts = data_parts(require_done(run, "concepts", CONCEPTS_MANIFEST))
    task = ray.remote(num_cpus=1, num_gpus=cfg.num_gpus)(evaluate_run)
    out = ray.get(task.remote(run.ref.as_dict(), run.config.model_dump(), train_summary["arch"], checkpoint, concept_parts,
                              [p["output"] for p in render_parts(run)]))
    ckpt_ref = input_ref(store, "train", checkpoint)
    rows = out["coverage"]
    report = build_report(_results(out["results"]), checkpoint, ckpt_ref["sha256"], train_summary["arch"],
                          run.fingerprints["eval"], run_id=run.ref.run_id,
                          coverage={**coverage.summary(rows), "failures": coverage.failures(rows)})
    failed = ", ".join(f"{r['concept']} ({r['train_captions']})" for r in report["coverage"]["failures"][:10])
    notes = [f"Concept coverage: {len(rows)} concepts with held-out images; concepts never recognised "
             f"(training captions): {failed or 'none'}."]
    base = lineage(run.fingerprints["eval"], [ckpt_ref], started, len(report["results"]))
    store.commit("eval", PICTURE, coverage.coverage_png(rows, f"Concept coverage, run {run.ref.run_id}"), base)
    store.commit("eval", "coverage.parquet", to_parquet_bytes(table_from_rows(rows, "eval_coverage"), "eval_coverage"), base)
    store.commit("eval", "report.md", render_markdown(report, f"Evaluation of run `{run.ref.run_id}`",
                                                      [("concept coverage", PICTURE)], notes).encode(), base)
    store.commit("eval", REPORT, json.dumps(report, indent=1).encode(),
                 {**base, "outputs": [PICTURE, "coverage.parquet", "report.md"]})
    summary = StageSummary("eval", total=1, computed=1, pictures=[f"eval/{PICTURE}"], reports=["eval/report.md"])
    summary.notes = {f"{r['dataset']}/{r['task']}/{r['metric']}": r["value"] for r in report["results"]}
    return summary


def _results(dicts: list[dict]):
    from ..evaluation.tasks import TaskResult

    return [TaskResult(**d) for d in dicts]


def evaluate_run(ref: dict, config: dict, arch: str, checkpoint: str, concept_parts: list[str],
                 image_parts: list[str]) -> dict:
    """Runs in a Ray task: load the checkpoint through open_clip and score the run's held-out data
    and the configured benchmarks."""
    import torch

    from ..config import RunConfig
    from ..evaluation.benchmarks import evaluate_dataset
    from ..evaluation.datasets import CaptionedImages, LabelledImages
    from ..evaluation.models import load_eval_model
    from ..evaluation.tasks import retrieval, zeroshot
    from ..evaluation.templates import load_templates

    torch.set_num_threads(1 if not torch.cuda.is_available() else torch.get_num_threads())
    cfg = RunConfig.model_validate(config)
    store = RunRef(**ref).store()
    model = load_eval_model(store.uri("train", checkpoint), arch=arch)
    concepts = read_concepts(store, concept_parts)
    ids, names = concepts.column("concept_id").to_pylist(), concepts.column("concept").to_pylist()
    index = {cid: i for i, cid in enumerate(ids)}
    tables = [read_table(store, "images", o).select(["image_id", "concept_id", "caption", "split", "jpg"])
              for o in image_parts]
    held = pa.concat_tables([t.filter(pc.is_in(t["split"], pa.array(["eval", "holdout"]))) for t in tables]).to_pylist()
    results, rows = [], []
    if held:
        templates = load_templates(cfg.eval.templates)
        if len(names) * len(templates) > MAX_PROMPTS:
            templates = templates[:1]
        labelled = LabelledImages(HELDOUT, [r["jpg"] for r in held], [index[r["concept_id"]] for r in held], names,
                                  [r["image_id"] for r in held])
        zs = zeroshot(model, labelled, templates, cfg.eval.batch_size)
        zs.per_class = {}  # per concept: in coverage.parquet instead
        results.append(zs)
        captioned = CaptionedImages(HELDOUT, labelled.images, [[r["caption"]] for r in held], labelled.ids)
        results.append(retrieval(model, captioned, cfg.eval.batch_size))
        rows = coverage.concept_rows(list(zip(ids, names)), _train_counts(store, concept_parts),
                                     [held[i]["concept_id"] for i in zs.kept], zs.correct,
                                     held_out_concepts(cfg.seed, ids, cfg.balance.holdout_concepts))
    for ds in cfg.eval.datasets:
        results.append(evaluate_dataset(model, ds, cfg.eval.templates, cfg.eval.batch_size))
    return {"results": [{**asdict(r), "correct": [], "kept": []} for r in results], "coverage": rows}


def _train_counts(store, parts: list[str]) -> dict[str, int]:
    """Training captions that matched each concept (after balancing, train split only)."""
    counts: Counter = Counter()
    for part in parts:
        table = read_table(store, "balanced", part).select(["split", "matched_concept_ids"])
        train = table.filter(pc.equal(table["split"], "train"))
        counts.update(pc.list_flatten(train["matched_concept_ids"]).to_pylist())
    return dict(counts)
