"""Which processor runs a stage's partitions inside an actor, by name."""

from __future__ import annotations

from typing import Callable

from ..store import RunStore

Processor = Callable[[RunStore, dict], dict]


def make_processor(name: str, settings: dict) -> Processor:
    if name == "captions":
        from .captions import CaptionProcessor

        return CaptionProcessor(settings)
    if name == "images":
        from .images import RenderProcessor

        return RenderProcessor(settings)
    if name in {"balance-match", "balance-sample"}:
        from .balance_workers import MatchProcessor, SampleProcessor

        return (MatchProcessor if name == "balance-match" else SampleProcessor)(settings)
    raise ValueError(f"no partition processor named {name!r}")
