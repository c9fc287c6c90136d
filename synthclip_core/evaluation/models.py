"""Any open_clip checkpoint, ready to evaluate: ours, open_clip's trainer's, or a ``local-dir:``.

A checkpoint file is named with its architecture (``--arch``), unless it names its own (this
platform's checkpoints hold ``name``). Weights load with ``weights_only=True``; weights that do
not fit the architecture are a one-line error that says which tensor does not fit.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..clip_models import register_model_configs
from ..errors import UserError
from .features import pick_device


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be evaluated as given."""


@dataclass
class EvalModel:
    model: object
    preprocess: object
    tokenizer: object
    arch: str
    checkpoint: str
    sha256: str
    device: str


def load_eval_model(checkpoint: str, arch: str | None = None, device: str | None = None) -> EvalModel:
    import open_clip

    register_model_configs()
    device = pick_device(device)
    if checkpoint.startswith("local-dir:"):
        folder = checkpoint[len("local-dir:"):]
        cfg_path = os.path.join(folder, "open_clip_config.json")
        if not os.path.isfile(cfg_path):
            raise CheckpointError(f"{checkpoint}: no open_clip_config.json in {folder}")
        model, _, preprocess = open_clip.create_model_and_transforms(checkpoint, device=device)
        weights = next((os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.startswith("open_clip_") and
                        f.endswith((".bin", ".safetensors", ".pt"))), cfg_path)
        name = arch or json.loads(open(cfg_path).read()).get("model_cfg", {}).get("name", "local-dir")
        model.eval()
        return EvalModel(model, preprocess, open_clip.get_tokenizer(checkpoint), name, checkpoint, _sha256(weights), device)
    fs, path = fsspec.core.url_to_fs(checkpoint)
    if not fs.exists(path):
        raise CheckpointError(f"checkpoint not found: {checkpoint}")
    with _local_file(fs, path) as local:
        own = _own_name(local, checkpoint)
        if arch and own and arch != own:
            raise CheckpointError(f"{checkpoint} is a {own} checkpoint, not {arch}")
        arch = arch or own
        if not arch:
            raise CheckpointError(f"{checkpoint} does not name its architecture: pass --arch (e.g. ViT-B-16)")
        if open_clip.get_model_config(arch) is None:
            raise CheckpointError(f"unknown open_clip architecture {arch!r}")
        model, _, preprocess = open_clip.create_model_and_transforms(arch, device=device)
        try:
            open_clip.load_checkpoint(model, local, device=device)
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"{checkpoint} does not fit architecture {arch}: {_first_problem(exc)}") from None
        digest = _sha256(local)
    model.eval()
    return EvalModel(model, preprocess, open_clip.get_tokenizer(arch), arch, checkpoint, digest, device)


@contextmanager
def _local_file(fs, path: str) -> Iterator[str]:
    """The checkpoint as a local path open_clip can load: itself, or a download of a remote one."""
    if isinstance(fs, LocalFileSystem):
        yield path
        return
    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, os.path.basename(path) or "checkpoint.pt")
        fs.get_file(path, local)
        yield local


def _own_name(path: str, shown: str) -> str | None:
    import torch

    if path.endswith(".safetensors"):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {shown}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    return state.get("name") if isinstance(state, dict) and isinstance(state.get("name"), str) else None


def _first_problem(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in lines:
        if "size mismatch" in line or "Missing key" in line or "Unexpected key" in line:
            return line[:300]
    return (lines[0] if lines else repr(exc))[:300]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
