"""Runs and training jobs made before stages marked their completion (store layout 1).

Then a whole-run stage was complete when its manifest (the file it wrote last) and every output
its commit record named were committed, and a model stage when every partition of its plan was.
Their ``run.json`` named the config sections by their old names (``config.LEGACY_SECTIONS``), and a
training job kept its config in ``job/job.json`` under one fingerprint. Reading them here keeps such
runs resumable and their status readable; every stage that finishes on them marks its completion
as new runs do.
"""

from __future__ import annotations

import json

from .config import fingerprinted
from .fingerprint import stable_hash
from .stages.partitions import committed_rows
from .stages.stage import Run, StageBlocked
from .storage.store import Completion

MANIFESTS = {"concepts": "manifest.json", "balanced": "stats.parquet", "shards": "sizes.json",
             "train": "summary.json", "eval": "report.json"}
JOB_FILE = ("job", "job.json")  # (stage folder, output) of a training job's config


def completion(run: Run, stage: str) -> Completion | None:
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
        rows = committed_rows(run, stage, parts) if parts else record.get("rows", 0)
        return Completion(outputs, rows, notes)
    try:
        planned = run.stage(stage).plan(run)
    except StageBlocked:
        return None
    if not set(planned) <= committed:
        return None
    return Completion(planned, committed_rows(run, stage, planned))


def job_fingerprint(cfg, train_version: int) -> str:
    """The one fingerprint a layout-1 training job had for both its stages."""
    return stable_hash({"kind": "job", "version": train_version, "seed": cfg.seed, "train": fingerprinted(cfg.train),
                        "eval": fingerprinted(cfg.eval)})
