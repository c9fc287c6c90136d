"""Stage fingerprints: what changes a stage's output, and nothing else (the chain over the
stages is ``pipeline.fingerprints``; this module hashes and identifies models).

A fingerprint covers the stage's settings that matter (the config fields not marked operational),
the model's identity (name and pinned commit, or a content hash for a local model), the stage's code
version and the fingerprint of the stage before it (which pins its inputs, since every output is a
deterministic function of them). It never covers the run id, root, paths, worker or batch counts,
device or credentials, so the same config gives the same fingerprints, and the same rows, on any
hardware and under any run id.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from .tiny_models import resolve_model


def stable_hash(obj: object) -> str:
    """16 hex digits of the sha256 of ``obj`` as canonical JSON."""
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


def model_identity(name: str, revision: str | None, scheme: int = 1) -> dict:
    """Name and revision for hub models (the pinned commit, where the run pinned one); a content
    hash of the files for a local directory, and (from scheme 2) for a local single file."""
    resolved = resolve_model(name)
    if os.path.isdir(resolved):
        files = sorted(Path(resolved).rglob("*"))
        key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.is_file())
        return {"name": name, "content_sha256": _dir_digest(resolved, key)}
    if scheme >= 2 and os.path.isfile(resolved):
        stat = os.stat(resolved)
        return {"name": name, "content_sha256": _file_digest(resolved, (stat.st_mtime_ns, stat.st_size))}
    return {"name": name, "revision": revision or "main"}


def model_identity_of(section, scheme: int = 1) -> dict:
    """The identity of a model section's model (``config.ModelSection``), as the actors load it."""
    return model_identity(section.model, section.load_revision, scheme)


@lru_cache(maxsize=32)
def _file_digest(path: str, mtime_key: tuple) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_label(name: str, identity: dict) -> str:
    """``name@revision`` (or ``@`` the first 12 digits of a local model's content hash), for rows."""
    return f"{name}@{identity.get('revision') or identity.get('content_sha256', '')[:12]}"
