"""The weights a fine-tuning job starts from (``train.init_from``), found and checked up front.

Accepted: a checkpoint file on any fsspec root (this platform's ``checkpoints/epoch_N.pt``, or any
open_clip checkpoint: a state dict, or a dict holding ``state_dict``, DDP's ``module.`` prefixes
allowed), or ``local-dir:PATH`` (an open_clip model folder, as the train stage exports); the train
stage turns ``run:RUN_ID`` into that run's final checkpoint. The driver resolves the weights to
one URI and its sha256, and checks them against the configured architecture before any worker
starts; the workers load exactly those bytes (refusing them if they changed) and the lineage of
every checkpoint names them as the parent.
"""

from __future__ import annotations

import hashlib
import io
import posixpath

import fsspec

from ..storage.store import fs_options
from .checkpoints import CheckpointMismatch
from .sources import SourceError

LOCAL_DIR_WEIGHTS = ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")


def resolve_init(init_from: str, storage_options: dict, arch: str, **extra) -> dict:
    """``{"uri", "sha256", "bytes", **extra}`` of the weights, read once and checked against the
    ``arch`` model (else CheckpointMismatch)."""
    from ..clip_models import create_model

    options = storage_options
    if init_from.startswith("local-dir:"):
        folder = init_from[len("local-dir:"):]
        fs, path = fsspec.core.url_to_fs(folder, **fs_options(folder, options))
        found = [name for name in LOCAL_DIR_WEIGHTS if fs.exists(posixpath.join(path, name))]
        if not found:
            raise SourceError(f"train.init_from {init_from}: no {' or '.join(LOCAL_DIR_WEIGHTS)} in {folder}")
        uri = folder.rstrip("/") + "/" + found[0]
    else:
        uri = init_from
        if "://" not in uri and not uri.startswith("/"):
            import os

            uri = os.path.abspath(uri)  # workers run in other directories
    data = read_bytes(uri, options, init_from)
    check_compatible(state_dict_of(data, uri), create_model(arch)[0], arch, uri)
    return {"uri": uri, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), **extra}


def read_bytes(uri: str, storage_options: dict, what: str) -> bytes:
    try:
        with fsspec.open(uri, "rb", **fs_options(uri, storage_options)) as handle:
            return handle.read()
    except FileNotFoundError:
        raise SourceError(f"train.init_from {what}: no file at {uri}") from None


def state_dict_of(data: bytes, uri: str) -> dict:
    """The model weights in a checkpoint's bytes (tensors only: nothing else is unpickled)."""
    import torch

    if uri.endswith(".safetensors"):
        from safetensors.torch import load

        state = load(data)
    else:
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise SourceError(f"train.init_from: {uri} is not a torch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SourceError(f"train.init_from: {uri} holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_init(init: dict, storage_options: dict) -> dict:
    """The state dict of resolved weights; refused if the bytes changed since they were resolved."""
    data = read_bytes(init["uri"], storage_options, init["uri"])
    if hashlib.sha256(data).hexdigest() != init["sha256"]:
        raise CheckpointMismatch(f"train.init_from: {init['uri']} changed since the job resolved it (sha256 "
                                 f"{init['sha256'][:12]}...); start the job again")
    return state_dict_of(data, init["uri"])


def check_compatible(state: dict, model, arch: str, uri: str) -> None:
    """Refuse weights of another architecture, naming what differs."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} of another shape (e.g. {k}: {list(state[k].shape)}, "
                         f"{arch} has {list(own[k].shape)})")
        raise CheckpointMismatch(f"train.init_from: {uri} holds weights of another architecture than {arch}: "
                                 + "; ".join(parts))
