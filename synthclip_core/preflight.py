"""Checks of what a user can fix, run before any flow starts and reported in one line."""

from __future__ import annotations

import os

from .concepts import check_bank_source
from .config import RunConfig
from .errors import ConfigError
from .store import check_root_writable


def preflight(cfg: RunConfig, root: str, storage_options: dict | None = None) -> None:
    check_bank_source(cfg.concepts.source)
    check_model_path("captions.model", cfg.captions.model)
    check_model_path("render.model", cfg.render.model)
    check_root_writable(root, storage_options)
    t = cfg.train
    if t.global_batch_size % t.num_workers:
        raise ConfigError(
            f"train.global_batch_size ({t.global_batch_size}) must be divisible by train.num_workers ({t.num_workers})"
        )


def check_model_path(field: str, model: str) -> None:
    """A model given as a local path must be there (a hub id like ``org/name`` is the hub's to check)."""
    if model.startswith(("/", "./", "../", "~", "file://")):
        path = os.path.expanduser(model.removeprefix("file://"))
        if not os.path.exists(path):
            raise ConfigError(f"{field}: the model path {model!r} does not exist")
