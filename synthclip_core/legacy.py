"""Runs, training jobs and configs made before the current layout and names: read here, and
nowhere else.

- Store layout 1 (runs made before stages marked their completion): a whole-run stage was
  complete when its manifest (the file it wrote last) and every output its commit record named
  were committed, and a model stage when every partition of its plan was; a training job kept its
  config in ``job/job.json`` under one fingerprint for both its stages. Such runs stay resumable
  and their status readable; every stage that finishes on them marks its completion as new runs do.
- Old names: config sections named before the stages were (``balance``, ``render``, ``export``),
  and config fields renamed since (``balanced.num_workers``, ``shards.num_workers``), in presets and
  in the ``run.json`` of runs made then.
"""

from __future__ import annotations

import json
from typing import Any

from .config import fingerprinted
from .errors import ConfigError
from .fingerprint import stable_hash
from .stages.stage import RunView, StageBlocked
from .storage.store import Completion, RunStore

LAYOUT = 2  # 2: stages mark their completion (``_complete/``); 1: runs made before
MANIFESTS = {"concepts": "manifest.json", "balanced": "stats.parquet", "shards": "sizes.json",
             "train": "summary.json", "eval": "report.json"}
JOB_FILE = ("job", "job.json")  # (stage folder, output) of a layout-1 training job's config
JOB_STAGES = ("train", "eval")
SECTIONS = {"balance": "balanced", "render": "images", "export": "shards"}  # old section name -> the stage's
FIELDS = {("balanced", "num_workers"): "num_actors", ("shards", "num_workers"): "num_tasks"}  # renamed fields


def current_names(data: Any, source: str) -> Any:
    """A config document (a preset, or a stored run's config) with old section and field names
    replaced by the current ones; both names of one thing is a ConfigError."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for old, new in SECTIONS.items():
        if old in data:
            if new in data:
                raise ConfigError(f"{source}: sections {old!r} and {new!r} are the same section (its old and new name): "
                                  f"keep {new!r}")
            data[new] = data.pop(old)
    for (section, old), new in FIELDS.items():
        values = data.get(section)
        if isinstance(values, dict) and old in values:
            if new in values:
                raise ConfigError(f"{source}: {section}.{old} and {section}.{new} are the same field (its old and new "
                                  f"name): keep {new!r}")
            data[section] = {new if k == old else k: v for k, v in values.items()}
    return data


def run_document(store: RunStore) -> dict | None:
    """A layout-1 training job's ``job/job.json`` in the form of a ``run.json`` (its one fingerprint
    for each of its stages), or None where there is none."""
    folder, name = JOB_FILE
    if name not in store.committed(folder):
        return None
    doc = json.loads(store.read_bytes(folder, name))
    return {"kind": "job", "config": doc["config"], "fingerprints": {s: doc["fingerprint"] for s in JOB_STAGES},
            "layout": 1, "source": f"{folder}/{name}"}


def as_stored(run: RunView, cfg, fingerprints: dict[str, str]) -> dict[str, str]:
    """``fingerprints`` (this code's, for ``cfg``) in the form ``run`` stores them: a layout-1 job
    had one fingerprint for both its stages."""
    if run.kind == "job" and getattr(run, "layout", LAYOUT) < LAYOUT:
        fingerprint = job_fingerprint(cfg, run.stage("train").version)
        return {stage.name: fingerprint for stage in run.stages}
    return fingerprints


def job_fingerprint(cfg, train_version: int) -> str:
    """The one fingerprint a layout-1 training job had for both its stages."""
    return stable_hash({"kind": "job", "version": train_version, "seed": cfg.seed, "train": fingerprinted(cfg.train),
                        "eval": fingerprinted(cfg.eval)})


def completion(run: RunView, stage: str) -> Completion | None:
    """A stage of a layout-1 run complete the old way (None for runs of the current layout)."""
    if getattr(run, "layout", LAYOUT) >= LAYOUT:
        return None
    store = run.store
    committed = store.committed(stage)
    manifest = MANIFESTS.get(stage)
    if manifest is not None:
        if manifest not in committed:
            return None
        record = store.record(stage, manifest)
        outputs = [*record.get("outputs", []), manifest]
        if not set(outputs) <= committed:
            return None
        # later stages read the final checkpoint from the train stage's notes
        notes = json.loads(store.read_bytes(stage, manifest)) if stage == "train" else record.get("summary", {})
        parts = [o for o in outputs if o.startswith("part-")]
        rows = store.committed_rows(stage, parts) if parts else record.get("rows", 0)
        return Completion(outputs, rows, notes)
    if run.stage(stage).plan is None:  # a stage that came after layout 1 (the card): never complete the old way
        return None
    try:
        planned = run.stage(stage).plan(run)
    except StageBlocked:
        return None
    if not set(planned) <= committed:
        return None
    return Completion(planned, store.committed_rows(stage, planned))
