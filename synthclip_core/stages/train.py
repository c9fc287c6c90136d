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
import posixpath
import time

from ..clip_models import model_config
from ..run import Run
from ..store import RunStore
from ..training import checkpoints, metrics, ray_jobs
from ..training.curves import curves_png
from ..training.fit import TrainingFailed, fit
from ..training.spec import TrainSpec
from .common import StageSummary, finished_summary, input_ref, lineage, require_done
from .shards import SIZES

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
    store, t = run.store, run.config.train
    require_done(run, "shards", SIZES)  # refuses unless the export is complete
    sizes = json.loads(store.read_bytes("shards", SIZES))
    records = store.records("shards", sorted(sizes))
    skipped = damaged_shards(store, records)
    for name, reason in skipped.items():
        log.warning("training skips shard %s (%d samples): %s", store.uri("shards", name), sizes[name], reason)
    names = [o for o in sorted(sizes) if o not in skipped]
    inputs = [input_ref(store, "shards", o, records[o]) for o in names]
    base = lineage(run.fingerprints["train"], inputs, time.time(), 0, arch=t.model, skipped_shards=skipped,
                   skipped_samples=sum(sizes[o] for o in skipped))
    return TrainSpec(ref=run.ref.as_dict(), shards=[(store.uri("shards", o), sizes[o]) for o in names],
                     train=t.model_dump(), seed=run.config.seed, model_cfg=model_config(t.model), lineage=base)


def damaged_shards(store: RunStore, records: dict[str, dict]) -> dict[str, str]:
    """Shards whose file no longer matches its commit record in size (truncated, replaced or gone
    since the export), found from one listing; the rest of the data still trains."""
    try:
        listing = {posixpath.basename(e["name"]): e["size"] for e in store.fs.ls(store.path("shards"), detail=True)}
    except FileNotFoundError:
        listing = {}
    damaged = {}
    for name, record in records.items():
        if name not in listing:
            damaged[name] = "the file is missing"
        elif listing[name] != record["bytes"]:
            damaged[name] = f"{listing[name]} bytes on storage, {record['bytes']} committed (truncated or replaced)"
    return damaged


def train_in_process(run: Run) -> StageSummary:
    """Train (or finish training) in the Ray this process is connected to, then finalise."""
    store, t = run.store, run.config.train
    if (finished := finished_summary(store, "train", SUMMARY)) is not None:
        return finished
    summary = StageSummary("train")
    spec = train_spec(run)
    before = set(checkpoints.committed_epochs(store))
    fit(spec, name=f"synthclip-{run.ref.run_id}")
    epochs = checkpoints.committed_epochs(store)
    if not epochs or epochs[-1] != t.epochs:
        raise TrainingFailed(f"training ended but the store holds checkpoints of epochs {epochs}, expected up to {t.epochs}")
    rows = metrics.history(store)
    base = spec.lineage
    store.commit("train", CURVES, curves_png(rows, f"{t.model} on run {run.ref.run_id}"), base)
    final = checkpoints.epoch_name(epochs[-1])
    outputs = [checkpoints.epoch_name(e) for e in epochs] + metrics.chunks(store) + [CURVES]
    outputs += _export_local_dir(run, checkpoints.load(store, final)["state_dict"], t.model, base)
    store.commit("train", SUMMARY, json.dumps({
        "arch": t.model, "epochs": epochs, "checkpoint": final, "steps": rows[-1]["step"] if rows else 0,
        "final": rows[-1] if rows else {}, "per_epoch": metrics.per_epoch(rows),
        "skipped_shards": base["skipped_shards"], "skipped_samples": base["skipped_samples"],
    }, indent=1).encode(), {**base, "outputs": outputs, "rows": len(epochs)})
    summary.total, summary.computed, summary.skipped = len(epochs), len(set(epochs) - before), len(before)
    summary.notes = {"final": rows[-1] if rows else {}, "skipped_shards": len(base["skipped_shards"]),
                     "skipped_samples": base["skipped_samples"]}
    summary.pictures = [f"train/{CURVES}"]
    return summary


def _export_local_dir(run: Run, state_dict: dict, arch: str, base: dict) -> list[str]:
    """The final weights as an open_clip ``local-dir:`` model (config + weights)."""
    store = run.store
    cfg = {"model_cfg": model_config(arch), "preprocess_cfg": {}}
    store.commit("train", "model/open_clip_config.json", json.dumps(cfg, indent=1).encode(), base)
    store.commit("train", "model/open_clip_pytorch_model.bin", checkpoints.to_bytes(state_dict), base)
    return ["model/open_clip_config.json", "model/open_clip_pytorch_model.bin"]
