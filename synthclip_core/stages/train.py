"""Training: a Ray Train job over the run's shards, with checkpoints, metrics and curves committed.

With the default local Ray the job runs inside the run's own Ray and a killed run resumes from the
latest committed checkpoint. When ``RAY_ADDRESS`` names a cluster, training is a Ray job that
outlives the flow (see ``training/ray_jobs.py``) and the flow follows it. Last come
``curves.png``, an open_clip ``local-dir`` export of the final model in ``model/`` and
``summary.json`` (the commit that marks the stage done).
"""

from __future__ import annotations

import json
import logging
import time

from ..clip_models import model_config
from ..config import DataSource, TrainConfig
from ..run import Run, RunRef
from ..store import RunStore
from ..training import checkpoints, metrics, ray_jobs
from ..training.curves import curves_png
from ..training.fit import TrainingFailed, fit
from ..training.init_weights import resolve_init
from ..training.sources import ResolvedSource, resolve, to_spec_parts
from ..training.spec import TrainSpec
from .common import StageSummary, finished_summary, lineage

log = logging.getLogger("synthclip.train")
SUMMARY = "summary.json"
CURVES = "curves.png"


def run_train(run: Run) -> StageSummary:
    if (finished := finished_summary(run.store, "train", SUMMARY)) is not None:
        finished.pictures = [f"train/{CURVES}"]
        return finished
    if not ray_jobs.submit_as_job():
        return train_in_process(run)
    spec = train_spec(run)
    client = ray_jobs.job_client()
    submission_id = ray_jobs.ensure_job(client, run.ref.run_id, run.fingerprints["train"],
                                        ray_jobs.entrypoint(run.ref.root, run.ref.run_id))
    follower = ray_jobs.JobFollower(client, submission_id)
    metrics.follow_metrics(spec, follower.done)
    if follower.status != "SUCCEEDED":
        raise TrainingFailed(follower.failure())
    if (finished := finished_summary(run.store, "train", SUMMARY)) is None:
        raise TrainingFailed(f"Ray job {submission_id} succeeded but train/{SUMMARY} is not committed")
    finished.computed, finished.skipped = finished.total, 0
    finished.notes = {"ray_job": submission_id}
    finished.pictures = [f"train/{CURVES}"]
    return finished


def train_spec(run: Run) -> TrainSpec:
    """The run's training job: its configured sources (default: its own shards), resolved and checked."""
    t = run.config.train
    configured = t.sources or [DataSource(name="synthetic", uri="run")]
    resolved = [resolve(s, run.ref.root, run.ref.storage_options, this_run=run) for s in configured]
    init = resolve_init(t.init_from, run.ref.root, run.ref.storage_options, t.model) if t.init_from else None
    return build_spec(run.ref, t, run.config.seed, run.fingerprints["train"], resolved, init)


def build_spec(ref: RunRef, t: TrainConfig, seed: int, fingerprint: str, resolved: list[ResolvedSource],
               init: dict | None) -> TrainSpec:
    """A TrainSpec whose lineage names every source (and the parent weights when fine-tuning)."""
    shards, sources = to_spec_parts(resolved)
    skipped = {k: v for r in resolved for k, v in r.skipped.items()}
    base = lineage(fingerprint, [i for r in resolved for i in r.inputs], time.time(), 0, arch=t.model, skipped_shards=skipped,
                   skipped_samples=sum(r.skipped_samples for r in resolved), sources=[r.describe() for r in resolved],
                   **({"parent": init} if init else {}))
    return TrainSpec(ref=ref.as_dict(), shards=shards, train=t.model_dump(), seed=seed, model_cfg=model_config(t.model),
                     lineage=base, sources=sources, init=init)


def train_in_process(run: Run) -> StageSummary:
    """Train (or finish training) in the Ray this process is connected to, then finalise."""
    if (finished := finished_summary(run.store, "train", SUMMARY)) is not None:
        return finished
    return train_and_finish(train_spec(run), f"{run.config.train.model} on run {run.ref.run_id}")


def train_and_finish(spec: TrainSpec, title: str) -> StageSummary:
    """Fit ``spec`` to its last epoch, then commit the curves, the open_clip export and ``summary.json``."""
    store, t = spec.run_ref.store(), spec.config
    summary = StageSummary("train")
    before = set(checkpoints.committed_epochs(store))
    fit(spec, name=f"synthclip-{spec.run_ref.run_id}")
    epochs = checkpoints.committed_epochs(store)
    if not epochs or epochs[-1] != t.epochs:
        raise TrainingFailed(f"training ended but the store holds checkpoints of epochs {epochs}, expected up to {t.epochs}")
    rows = metrics.history(store)
    base = spec.lineage
    store.commit("train", CURVES, curves_png(rows, title), base)
    final = checkpoints.epoch_name(epochs[-1])
    final_record = store.record("train", final)
    outputs = [checkpoints.epoch_name(e) for e in epochs] + metrics.chunks(store) + [CURVES]
    outputs += _export_local_dir(store, checkpoints.load(store, final)["state_dict"], t.model, base)
    store.commit("train", SUMMARY, json.dumps({
        "arch": t.model, "epochs": epochs, "checkpoint": final, "steps": rows[-1]["step"] if rows else 0,
        "final": rows[-1] if rows else {}, "per_epoch": metrics.per_epoch(rows),
        "skipped_shards": base["skipped_shards"], "skipped_samples": base["skipped_samples"],
        "sources": final_record.get("sources", []), "parent": base.get("parent"),
    }, indent=1).encode(), {**base, "outputs": outputs, "rows": len(epochs)})
    summary.total, summary.computed, summary.skipped = len(epochs), len(set(epochs) - before), len(before)
    summary.notes = {"final": rows[-1] if rows else {}, "skipped_shards": len(base["skipped_shards"]),
                     "skipped_samples": base["skipped_samples"],
                     "samples_seen": {s["name"]: s["samples_seen"] for s in final_record.get("sources", [])}}
    summary.pictures = [f"train/{CURVES}"]
    return summary


def _export_local_dir(store: RunStore, state_dict: dict, arch: str, base: dict) -> list[str]:
    """The final weights as an open_clip ``local-dir:`` model (config + weights)."""
    cfg = {"model_cfg": model_config(arch), "preprocess_cfg": {}}
    store.commit("train", "model/open_clip_config.json", json.dumps(cfg, indent=1).encode(), base)
    store.commit("train", "model/open_clip_pytorch_model.bin", checkpoints.to_bytes(state_dict), base)
    return ["model/open_clip_config.json", "model/open_clip_pytorch_model.bin"]
