"""Which processor runs a model stage's partitions inside an actor."""

from __future__ import annotations

from typing import Callable

from ..store import RunStore

Processor = Callable[[RunStore, dict], dict]


def make_processor(stage: str, settings: dict) -> Processor:
    if stage == "captions":
        from .captions import CaptionProcessor

        return CaptionProcessor(settings)
    if stage == "images":
        from .images import RenderProcessor

        return RenderProcessor(settings)
    raise ValueError(f"stage {stage!r} has no partition processor")
