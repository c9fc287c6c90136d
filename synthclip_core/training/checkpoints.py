"""Checkpoints in open_clip's format, committed to the run's store.

``checkpoints/epoch_N.pt`` at each epoch end and ``checkpoints/step_N.pt`` every N steps hold
``epoch``, ``step``, ``name`` (the architecture), ``model_cfg``, ``state_dict`` (unwrapped), the
optimiser and gradient-scaler states, so ``open_clip.create_model_and_transforms(name,
pretrained=path)`` loads them. Their commit records carry ``step``, ``model_cfg`` and the data
``layout``, so the latest usable checkpoint is found without loading any. Loading is
``weights_only=True``: nothing from storage is unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re

from ..errors import UserError
from ..storage.store import RunStore

log = logging.getLogger("synthclip.train")
_NAME = re.compile(r"^checkpoints/(epoch|step)_(\d+)\.pt$")


class CheckpointMismatch(UserError, ValueError):
    """A committed checkpoint was made for another model than the one configured."""


def epoch_name(epoch: int) -> str:
    return f"checkpoints/epoch_{epoch}.pt"


def step_name(step: int) -> str:
    return f"checkpoints/step_{step}.pt"


def committed(store: RunStore) -> dict[str, dict]:
    """Commit records of the committed checkpoints, by output name."""
    names = sorted(o for o in store.committed("train") if _NAME.match(o))
    return store.records("train", names)


def committed_epochs(store: RunStore) -> list[int]:
    return sorted(int(m.group(2)) for o in committed(store) if (m := _NAME.match(o)) and m.group(1) == "epoch")


def layout_key(world_size: int, loader_workers: int, per_worker_batch: int, data: str | None = None) -> dict:
    """What a mid-epoch checkpoint's data position is counted in (the ranks, loader workers and
    batch, and the data: ``TrainSpec.data_identity``); resuming it needs the same."""
    key = {"world_size": world_size, "loader_workers": loader_workers, "per_worker_batch": per_worker_batch}
    return {**key, "data": data} if data else key


def other_layout(store: RunStore, model_cfg: dict, layout: dict) -> list[tuple[str, dict]]:
    """Mid-epoch checkpoints further than every usable one but made on another layout: (name,
    that layout), furthest first; a resume says it passes over them."""
    usable = _usable(store, model_cfg, layout)
    reach = usable[0][0] if usable else -1
    passed = [(r["step"], n, r.get("layout", {})) for n, r in committed(store).items()
              if n.startswith("checkpoints/step_") and r.get("layout") != layout and r["step"] > reach]
    return [(n, other) for _, n, other in sorted(passed, reverse=True)]


def latest(store: RunStore, model_cfg: dict, layout: dict) -> tuple[str, dict] | None:
    """The checkpoint to resume from: the furthest one whose data position this training can continue.

    Epoch-end checkpoints always qualify; a mid-epoch one only under the same data layout (workers,
    loader workers, batch), since its position counts batches of that layout.
    """
    usable = _usable(store, model_cfg, layout)
    return (usable[0][2], usable[0][3]) if usable else None


def set_aside_damaged(store: RunStore, model_cfg: dict, layout: dict) -> list[str]:
    """Before a job starts (the driver): the furthest usable checkpoints whose bytes are not their
    committed ones are moved to ``_damaged/`` (their records retired, with a warning), down to the
    first good one, so training goes on from there and commits those epochs again, instead of
    failing every resume the same way. Returns what was set aside."""
    aside = []
    for *_, name, record in _usable(store, model_cfg, layout):
        data = _read_or_empty(store, name)
        if hashlib.sha256(data).hexdigest() == record["sha256"]:
            break
        reason = f"{len(data)} bytes with sha256 {hashlib.sha256(data).hexdigest()[:12]}, committed {record['bytes']} bytes"
        where = store.quarantine("train", name, f"damaged checkpoint: {reason}")
        log.warning("train/%s is damaged (%s): moved to %s, training goes on from the checkpoint before it", name, reason, where)
        aside.append(name)
    return aside


def resume_point(store: RunStore, model_cfg: dict, layout: dict) -> tuple[str, dict, dict] | None:
    """(name, record, state) of the furthest usable checkpoint whose bytes are the committed ones
    (read once: the sha256 is checked on the bytes that are loaded)."""
    for *_, name, record in _usable(store, model_cfg, layout):
        data = _read_or_empty(store, name)
        if hashlib.sha256(data).hexdigest() == record["sha256"]:
            return name, record, torch_load(data)
    return None


def _read_or_empty(store: RunStore, name: str) -> bytes:
    try:
        return store.read_bytes("train", name)
    except FileNotFoundError:
        return b""


def _usable(store: RunStore, model_cfg: dict, layout: dict) -> list[tuple]:
    """Checkpoints this training can continue from, the furthest first."""
    usable = []
    for name, record in committed(store).items():
        if record.get("model_cfg") != model_cfg:
            raise CheckpointMismatch(
                f"train/{name} in run {store.run_id} was trained with model config {record.get('model_cfg')}, "
                f"not the configured {model_cfg}: use another run id")
        if name.startswith("checkpoints/epoch_") or record.get("layout") == layout:
            usable.append((record["step"], name.startswith("checkpoints/epoch_"), name, record))
    return sorted(usable, reverse=True)


def prune_steps(store: RunStore, upto: int) -> None:
    """Retire mid-epoch checkpoints an epoch-end checkpoint at step ``upto`` supersedes."""
    for name, record in committed(store).items():
        if name.startswith("checkpoints/step_") and record["step"] <= upto:
            store.retire("train", name)


def to_bytes(obj) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def load(store: RunStore, name: str) -> dict:
    return torch_load(store.read_bytes("train", name))


def torch_load(data: bytes) -> dict:
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
