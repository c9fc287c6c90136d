"""Checks of what a user can fix, run before any flow starts and reported in one line."""

from __future__ import annotations

from .concepts import check_bank_source
from .config import RunConfig
from .errors import ConfigError
from .store import check_root_writable


def preflight(cfg: RunConfig, root: str, storage_options: dict | None = None) -> None:
    check_bank_source(cfg.concepts.source)
    check_root_writable(root, storage_options)
    t = cfg.train
    if t.global_batch_size % t.num_workers:
        raise ConfigError(
            f"train.global_batch_size ({t.global_batch_size}) must be divisible by train.num_workers ({t.num_workers})"
        )
