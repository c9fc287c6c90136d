"""Training: Ray Train ranks (DDP) over the run's sources, with checkpoints, metrics and curves committed.

The sources are the run's own shards by default (``train.sources`` may add or replace them: other
runs' shards as ``run:ID``, or any webdataset tars), and ``train.init_from`` names the weights to
start from. With the default local Ray the ranks run inside the run's own Ray and a killed run
resumes from the latest committed checkpoint. When ``RAY_ADDRESS`` names a cluster, training is a
Ray job that outlives the flow (``python -m synthclip_core train --root R --run-id ID``, see
``training/ray_jobs.py``) and the flow follows it. Last come ``curves.png``, an open_clip
``local-dir`` export of the final model in ``model/`` and ``summary.json``.

A training job (a run whose config is a ``JobConfig``) has this stage and ``eval`` only.
"""

from __future__ import annotations

import json
import logging
import time

from ..clip_models import model_config
from ..compute.resources import PoolSpec
from ..errors import ConfigError
from ..ids import check_run_id
from ..planning.sizing import on_group
from ..storage.lineage import input_ref, lineage
from ..storage.store import RunStore
from ..storage.tables import output_index
from ..training import checkpoints, metrics, ray_jobs
from ..training.config import DataSource, TrainConfig
from ..training.curves import curves_png
from ..training.fit import TrainingFailed, fit, preflight, trainer_pool
from ..training.init_weights import resolve_init
from ..training.sources import ResolvedSource, SourceError, checked, tar_source, to_spec_parts
from ..training.spec import TrainSpec
from .executor import StageContext, finished_summary
from .stage import Estimating, RunView, Stage, StagePlan, StageSummary

log = logging.getLogger("synthclip.train")
NAME = "train"
VERSION = 2
SUMMARY = "summary.json"
CURVES = "curves.png"


def make(ctx: StageContext) -> StageSummary:
    run = ctx.run
    if not ray_jobs.submit_as_job():
        return train_in_process(run)
    spec = train_spec(run)
    client = ray_jobs.job_client()
    command = ray_jobs.python_command("-m", "synthclip_core", NAME, "--root", run.ref.root, "--run-id", run.ref.run_id)
    submission_id = ray_jobs.ensure_job(client, run.ref.run_id, run.fingerprints[NAME], command)
    follower = ray_jobs.JobFollower(client, submission_id)
    metrics.follow_metrics(spec, follower.done)
    if follower.status != "SUCCEEDED":
        raise TrainingFailed(follower.failure())
    if (finished := finished_summary(run, NAME)) is None:
        raise TrainingFailed(f"Ray job {submission_id} succeeded but run {run.ref.run_id}'s training is not complete")
    finished.computed, finished.skipped = finished.total, 0
    finished.notes = {**finished.notes, "ray_job": submission_id}
    return finished


def workers(cfg) -> list[PoolSpec]:
    return [trainer_pool(cfg.train)]


def train_in_process(run: RunView) -> StageSummary:
    """Train (or finish training) in the Ray this process is connected to, then finalise (the
    executor has found the stage unfinished)."""
    spec = train_spec(run)
    before = set(checkpoints.committed_epochs(run.store))
    fit(spec, name=f"synthclip-{run.ref.run_id}")
    return _finish(run, spec, before)


def check(run: RunView) -> None:
    """Everything about training that can be known before a flow starts: the batch splits over
    the ranks; a job's sources are readable in the expected layout, its starting weights exist and
    fit the model (a run's own sources are its shards, not there yet)."""
    t = run.config.train
    if t.global_batch_size % t.num_workers:
        raise ConfigError(f"train.global_batch_size ({t.global_batch_size}) must be divisible by train.num_workers "
                          f"({t.num_workers})")
    if run.kind == "job":
        preflight(train_spec(run))


def train_spec(run: RunView) -> TrainSpec:
    """The run's training: its sources (default: its own shards) resolved and checked, and the
    weights to start from; the lineage names every source and the parent weights."""
    t = run.config.train
    configured = t.sources or [DataSource(name="synthetic", uri="run")]
    resolved = [_run_source(run, s) if s.uri == "run" or s.uri.startswith("run:") else tar_source(s) for s in configured]
    init = _init_weights(run) if t.init_from else None
    shards, sources = to_spec_parts(resolved)
    skipped = {k: v for r in resolved for k, v in r.skipped.items()}
    base = lineage(run.fingerprints[NAME], VERSION, [i for r in resolved for i in r.inputs], time.time(), 0, arch=t.model, texts=t.texts,
                   skipped_shards=skipped, skipped_samples=sum(r.skipped_samples for r in resolved),
                   sources=[r.describe() for r in resolved], **({"parent": init} if init else {}))
    return TrainSpec(ref=run.ref.as_dict(), shards=shards, train=t.model_dump(), seed=run.config.seed,
                     model_cfg=model_config(t.model), lineage=base, sources=sources, init=init)


def _run_source(run: RunView, source: DataSource) -> ResolvedSource:
    """A run's exported shards (this run's for ``run``, another under the same root for
    ``run:ID``), counted from the export's manifest; shards damaged since are left out."""
    own = source.uri == "run"
    if own and run.kind != "run":
        raise SourceError(f"training source {source.name!r}: 'run' means a run's own shards; name the run: run:RUN_ID")
    try:
        other = run if own else run.sibling(source.uri[4:])
        done = other.require("shards")
    except Exception as exc:
        if own:  # this run's export not complete: StageBlocked, as for any stage
            raise
        raise SourceError(f"training source {source.name!r} ({source.uri}): {exc}") from None
    store = other.store
    records = output_index(store, "shards", done.outputs, ".tar")  # one read, one listing below: never every record
    tars = list(records)
    damaged = store.size_mismatches("shards", records)
    for name, reason in damaged.items():
        log.warning("training skips shard %s (%d samples): %s", store.uri("shards", name), records[name]["rows"], reason)
    names = [o for o in tars if o not in damaged]
    return checked(ResolvedSource(
        source.name, f"run:{other.ref.run_id}" if own else source.uri, source.weight, source.limit, "jpg", "txt",
        dict(run.ref.storage_options), [(store.uri("shards", o), records[o]["rows"]) for o in names],
        inputs=[{**input_ref(store, "shards", o, records[o]), **({} if own else {"run_id": other.ref.run_id})} for o in names],
        skipped={(name if own else f"{source.name}/{name}"): reason for name, reason in damaged.items()},
        skipped_samples=sum(records[o]["rows"] for o in damaged)))


def _init_weights(run: RunView) -> dict:
    """The weights ``train.init_from`` names, read once and checked against the architecture."""
    t, options = run.config.train, run.ref.storage_options
    if not t.init_from.startswith("run:"):
        return resolve_init(t.init_from, options, t.model)
    parent = check_run_id(t.init_from[4:])
    try:
        other = run.sibling(parent)
        checkpoint = other.require(NAME).notes["checkpoint"]
    except Exception:
        raise SourceError(f"train.init_from {t.init_from}: run {parent!r} under {run.ref.root} has no finished "
                          f"training; finish it first") from None
    return resolve_init(other.store.uri(NAME, checkpoint), options, t.model, run_id=parent, checkpoint=f"{NAME}/{checkpoint}")


def _title(run: RunView) -> str:
    t = run.config.train
    if run.kind == "run":
        return f"{t.model} on run {run.ref.run_id}"
    start = f" from {t.init_from}" if t.init_from else ""
    return f"{t.model} on {' + '.join(s.name for s in t.sources)}{start} (job {run.ref.run_id})"


def _finish(run: RunView, spec: TrainSpec, before: set[int]) -> StageSummary:
    """The curves, the open_clip export and ``summary.json``, once the last epoch is committed."""
    store, t = run.store, spec.config
    epochs = checkpoints.committed_epochs(store)
    if not epochs or epochs[-1] != t.epochs:
        raise TrainingFailed(f"training ended but the store holds checkpoints of epochs {epochs}, expected up to {t.epochs}")
    rows = metrics.history(store)
    base = spec.lineage
    store.commit(NAME, CURVES, curves_png(rows, _title(run)), base, deterministic=False)  # timings, as in the metrics
    final = checkpoints.epoch_name(epochs[-1])
    final_record = store.record(NAME, final)
    outputs = [checkpoints.epoch_name(e) for e in epochs] + metrics.chunks(store) + [CURVES]
    outputs += _export_local_dir(store, checkpoints.load(store, final)["state_dict"], t.model, base)
    store.commit(NAME, SUMMARY, json.dumps({
        "arch": t.model, "epochs": epochs, "checkpoint": final, "steps": rows[-1]["step"] if rows else 0,
        "final": rows[-1] if rows else {}, "per_epoch": metrics.per_epoch(rows),
        "skipped_shards": base["skipped_shards"], "skipped_samples": base["skipped_samples"],
        "sources": final_record.get("sources", []), "parent": base.get("parent"),
    }, indent=1).encode(), {**base, "rows": len(epochs)}, deterministic=False)
    summary = StageSummary(NAME, total=len(epochs), computed=len(set(epochs) - before), skipped=len(before),
                           rows=final_record.get("rows", 0))  # samples trained on
    summary.notes = {"checkpoint": final, "arch": t.model, "final": rows[-1] if rows else {},
                     "skipped_shards": len(base["skipped_shards"]), "skipped_samples": base["skipped_samples"],
                     "samples_seen": {s["name"]: s["samples_seen"] for s in final_record.get("sources", [])}}
    summary.pictures = [f"{NAME}/{CURVES}"]
    summary.outputs = outputs + [SUMMARY]
    return summary


def _export_local_dir(store: RunStore, state_dict: dict, arch: str, base: dict) -> list[str]:
    """The final weights as an open_clip ``local-dir:`` model (config + weights)."""
    cfg = {"model_cfg": model_config(arch), "preprocess_cfg": {}}
    store.commit(NAME, "model/open_clip_config.json", json.dumps(cfg, indent=1).encode(), base)
    store.commit(NAME, "model/open_clip_pytorch_model.bin", checkpoints.to_bytes(state_dict), base, deterministic=False)
    return ["model/open_clip_config.json", "model/open_clip_pytorch_model.bin"]


def training_summary(run: RunView) -> dict:
    """``summary.json`` of a run's finished training: final checkpoint, sources seen, parent weights."""
    run.require(NAME)
    return json.loads(run.store.read_bytes(NAME, SUMMARY))


CHECKPOINT_BYTES_PER_PARAM = 12  # fp32 weights and AdamW's two moments


def estimate(plan: Estimating) -> StagePlan:
    """``epochs`` over the exported pairs, at the rates' samples per GPU-second; a checkpoint per epoch."""
    t = plan.cfg.train
    pairs, (per_s, group) = plan.rows("shards"), plan.rates.rate("train_samples_per_gpu_s", t.ray_resources)
    steps = pairs // t.global_batch_size
    saved = t.epochs + (1 if t.checkpoint_every_steps else 0)  # step checkpoints are pruned at each epoch end
    return StagePlan(NAME, saved, steps * t.epochs, gpu_hours=pairs * t.epochs / per_s / 3600 if t.use_gpu else 0.0,
                     stored_bytes=saved * plan.parameters * CHECKPOINT_BYTES_PER_PARAM,
                     basis=f"{steps:,} steps/epoch x {t.epochs}; {per_s:g} samples/s per GPU{on_group(group)}; "
                           f"{plan.parameters / 1e6:.0f}M parameters")


STAGE = Stage(name=NAME, version=VERSION, upstream=("shards",), make=make, section=TrainConfig, workers=workers, check=check,
              estimate=estimate, description="Train CLIP on the shards with Ray Train, resuming from the latest checkpoint.")
