"""Checkpoints in open_clip's format, committed to the run's store.

A checkpoint holds ``epoch``, ``name`` (the architecture), ``state_dict`` (unwrapped) and the
optimiser state, so ``open_clip.create_model_and_transforms(name, pretrained=path)`` loads it and
a resumed job cannot silently change the architecture.
"""

from __future__ import annotations

import io
import re

from ..store import RunStore

_EPOCH = re.compile(r"^checkpoints/epoch_(\d+)\.pt$")


def checkpoint_name(epoch: int) -> str:
    return f"checkpoints/epoch_{epoch}.pt"


def committed_epochs(store: RunStore) -> list[int]:
    found = store.committed("train").get("train", set())
    return sorted(int(m.group(1)) for o in found if (m := _EPOCH.match(o)))


def to_bytes(obj) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def load(store: RunStore, epoch: int) -> dict:
    import torch

    return torch.load(io.BytesIO(store.read_bytes("train", checkpoint_name(epoch))), map_location="cpu", weights_only=True)
