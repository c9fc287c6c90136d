"""Stage fingerprints: what changes a stage's output, and nothing else.

A fingerprint covers the stage's settings that matter, the model's identity (name and revision,
or a content hash for a local model), the stage's code version and the fingerprint of the stage
it reads (which pins its inputs, since every output is a deterministic function of them). It never
covers the run id, root, paths, worker or batch counts, device or credentials, so the same config
gives the same fingerprints, and the same rows, on any hardware and under any run id.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from .config import RunConfig, TrainConfig
from .tiny_models import resolve_model

# Bump a stage's version when its code changes what it writes.
STAGE_VERSIONS = {
    "concepts": 2, "captions": 3, "balanced": 2, "images": 3, "shards": 2, "train": 2, "eval": 2,
}
STAGES = tuple(STAGE_VERSIONS)


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@lru_cache(maxsize=32)
def _dir_digest(path: str, mtime_key: tuple) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file() and p.name != "BUILT"):
        digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_identity(name: str, revision: str | None) -> dict:
    """Name and revision for hub models; a content hash of the files for local directories."""
    resolved = resolve_model(name)
    if os.path.isdir(resolved):
        files = sorted(Path(resolved).rglob("*"))
        key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.is_file())
        return {"name": name, "content_sha256": _dir_digest(resolved, key)}
    return {"name": name, "revision": revision or "main"}


def model_label(name: str, identity: dict) -> str:
    """``name@revision`` (or ``@`` the first 12 digits of a local model's content hash), for rows."""
    return f"{name}@{identity.get('revision') or identity.get('content_sha256', '')[:12]}"


def train_settings(t: TrainConfig) -> dict:
    """The training settings that change its outputs (the data sources' fsspec options do not).
    Unset data-source and init options are left out, so runs made before they existed keep
    their fingerprints."""
    settings = t.model_dump(exclude={"num_workers", "use_gpu", "cpus_per_worker", "ray_resources", "grad_checkpointing",
                                     "loader_workers", "checkpoint_every_steps", "log_every_steps", "max_failures"})
    for source in settings["sources"]:
        source.pop("storage_options")
    for key, unset in (("sources", []), ("samples_per_epoch", None), ("init_from", None)):
        if settings[key] == unset:
            del settings[key]
    return settings


def stage_fingerprints(cfg: RunConfig) -> dict[str, str]:
    c, b, r, t = cfg.captions, cfg.balance, cfg.render, cfg.train
    parts = {
        "concepts": {**cfg.concepts.model_dump(), "seed": cfg.seed},
        "captions": {
            **c.model_dump(exclude={"num_actors", "num_gpus", "ray_resources", "model", "revision", "batch_size", "python",
                                    "tensor_parallel_size", "engine_options"}),
            "model": model_identity(c.model, c.revision),
        },
        "balanced": b.model_dump(exclude={"num_workers"}),
        "images": {
            **r.model_dump(exclude={"num_actors", "num_gpus", "ray_resources", "batch_size", "model", "revision", "compile",
                                    "captions_per_partition"}),
            "model": model_identity(r.model, r.revision),
        },
        "shards": cfg.export.model_dump(),
        "train": train_settings(t),
        "eval": cfg.eval.model_dump(exclude={"batch_size", "num_gpus"}),
    }
    fingerprints: dict[str, str] = {}
    upstream = ""
    for stage in STAGES:
        upstream = _hash({"stage": stage, "version": STAGE_VERSIONS[stage], "seed": cfg.seed,
                          "settings": parts[stage], "upstream": upstream})
        fingerprints[stage] = upstream
    return fingerprints
