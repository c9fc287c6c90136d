"""Evaluation of the trained checkpoint on the run's held-out synthetic split.

Zero-shot classification over the run's concepts (label: the concept a caption was written for)
and image-text retrieval on the held-out pairs. Runs as a Ray task, so on a cluster it lands on a
GPU node. Writes ``eval/report.json`` (every number with dataset, task, metric, checkpoint and
config hash) and ``eval/report.md``.
"""

from __future__ import annotations

import json
import tempfile
import time

import pyarrow as pa
import pyarrow.compute as pc

from ..run import Run, RunRef
from .common import StageSummary, data_parts, finished_summary, input_ref, lineage, read_concepts, read_table, require_done
from .concepts import MANIFEST as CONCEPTS_MANIFEST
from .images import render_parts
from .train import SUMMARY as TRAIN_SUMMARY

REPORT = "report.json"


def run_eval(run: Run) -> StageSummary:
    import ray

    store = run.store
    if (finished := finished_summary(store, "eval", REPORT)) is not None:
        return finished
    summary = StageSummary("eval")
    started = time.time()
    require_done(run, "train", TRAIN_SUMMARY)
    train_summary = json.loads(store.read_bytes("train", TRAIN_SUMMARY))
    checkpoint = train_summary["checkpoint"]
    task = ray.remote(num_cpus=1, num_gpus=0)(evaluate_heldout)
    concept_parts = data_parts(require_done(run, "concepts", CONCEPTS_MANIFEST))
    image_parts = [p["output"] for p in render_parts(run)]
    results = ray.get(task.remote(run.ref.as_dict(), train_summary["arch"], checkpoint, concept_parts, image_parts,
                                  run.config.eval.templates, run.config.eval.batch_size))
    ckpt_ref = input_ref(store, "train", checkpoint)
    report = {
        "run_id": run.ref.run_id, "checkpoint": checkpoint, "checkpoint_sha256": ckpt_ref["sha256"],
        "arch": train_summary["arch"], "config_hash": run.fingerprints["eval"], "results": results,
    }
    base = lineage(run.fingerprints["eval"], [ckpt_ref], started, len(results))
    store.commit("eval", "report.md", render_markdown(report).encode(), base)
    store.commit("eval", REPORT, json.dumps(report, indent=1).encode(), {**base, "outputs": ["report.md"]})
    summary.total = summary.computed = 1
    summary.notes = {r["metric"]: r["value"] for r in results}
    return summary


def evaluate_heldout(ref: dict, arch: str, checkpoint: str, concept_parts: list[str], image_parts: list[str],
                     templates: str, batch_size: int) -> list[dict]:
    """Runs in a Ray task: load the checkpoint through open_clip and score the held-out split."""
    import torch
    from open_clip.zero_shot_metadata import (
        OPENAI_IMAGENET_TEMPLATES,
        SIMPLE_IMAGENET_TEMPLATES,
    )

    from ..clip_models import create_model
    from ..evaluation import (
        encode_images,
        encode_texts,
        retrieval_recall,
        topk_accuracy,
        zero_shot_classifier,
    )

    torch.set_num_threads(1)
    store = RunRef(**ref).store()
    with tempfile.NamedTemporaryFile(suffix=".pt") as handle:
        handle.write(store.read_bytes("train", checkpoint))
        handle.flush()
        model, _, preprocess, tokenizer = create_model(arch, pretrained=handle.name)
    model.eval()
    concepts = read_concepts(store, concept_parts)
    tables = [read_table(store, "images", o) for o in image_parts]
    heldout = pa.concat_tables([t.filter(pc.equal(t["split"], "eval")) for t in tables]).to_pylist()
    dataset = "synthetic-heldout"
    if not heldout:
        return [{"dataset": dataset, "task": "none", "metric": "samples", "value": 0, "checkpoint": checkpoint}]
    ids = concepts.column("concept_id").to_pylist()
    index = {cid: i for i, cid in enumerate(ids)}
    names = concepts.column("concept").to_pylist()
    chosen = SIMPLE_IMAGENET_TEMPLATES if templates == "simple" else OPENAI_IMAGENET_TEMPLATES
    image_feats = encode_images(model, preprocess, [r["jpg"] for r in heldout], batch_size)
    classifier = zero_shot_classifier(model, tokenizer, names, chosen, batch_size)
    labels = torch.tensor([index[r["concept_id"]] for r in heldout])
    metrics = topk_accuracy(image_feats @ classifier, labels, ks=(1, 5))
    results = [_row(dataset, "zeroshot", k, v, checkpoint, n=len(heldout), classes=len(names)) for k, v in metrics.items()]
    results.append(_row(dataset, "zeroshot", "chance_top1", 1 / len(names), checkpoint))
    text_feats = encode_texts(model, tokenizer, [r["caption"] for r in heldout], batch_size)
    recall = retrieval_recall(image_feats, text_feats, list(range(len(heldout))))
    results += [_row(dataset, "retrieval", k, v, checkpoint, n=len(heldout)) for k, v in recall.items()]
    return results


def _row(dataset: str, task: str, metric: str, value: float, checkpoint: str, **extra) -> dict:
    return {"dataset": dataset, "task": task, "metric": metric, "value": round(float(value), 5),
            "checkpoint": checkpoint, **extra}


def render_markdown(report: dict) -> str:
    lines = [f"# Evaluation of run `{report['run_id']}`", "",
             f"Checkpoint `{report['checkpoint']}` ({report['arch']}, sha256 `{report['checkpoint_sha256'][:12]}`), "
             f"config hash `{report['config_hash']}`.", "",
             "| dataset | task | metric | value |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['dataset']} | {r['task']} | {r['metric']} | {r['value']:.4f} |" for r in report["results"]]
    return "\n".join(lines) + "\n"
