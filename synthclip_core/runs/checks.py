"""Checks of what a user can fix, run before any flow starts and reported in one line."""

from __future__ import annotations

import os

from ..compute.resources import ClusterOffer, check
from ..curation.concepts import load_bank
from ..errors import ConfigError
from ..stages import train
from ..stages.stage import Run
from ..storage.store import check_root_writable


def preflight(run: Run) -> None:
    """A synthetic run: its concept bank (read whole), its models, its storage root, its batch
    size; a training job: its root, batch size, sources (readable in the expected layout) and
    starting weights."""
    cfg = run.config
    if run.kind == "run":
        c = cfg.concepts  # the whole bank, read as the stage will (small next to a run): one line if it is bad
        load_bank(c.source, c.column, c.limit, cfg.seed, c.num_shards, c.shard_index)
        check_model_path("captions.model", cfg.captions.model)
        check_model_path("images.model", cfg.images.model)
        if run.has("topup") and cfg.topup.target > cfg.balanced.threshold:
            raise ConfigError(f"topup.target ({cfg.topup.target}) is above balanced.threshold ({cfg.balanced.threshold}): "
                              f"balancing caps every concept at the threshold, so the loop could never reach it")
    check_root_writable(run.ref.root, run.ref.storage_options)
    t = cfg.train
    if t.global_batch_size % t.num_workers:
        raise ConfigError(
            f"train.global_batch_size ({t.global_batch_size}) must be divisible by train.num_workers ({t.num_workers})"
        )
    if run.kind == "job":
        train.check(run)


def check_cluster(run: Run, offer: ClusterOffer | None = None) -> None:
    """Every stage still to do, set against the connected Ray before any of them starts: one that
    no node can ever host stops the run now, not after days of the stages before it."""
    offer = offer or ClusterOffer.of_ray()
    committed = run.store.committed_all()
    for stage in run.stages:
        if run.completion(stage.name, committed.get(stage.name, set())) is None:
            check(stage.name, stage.workers(run.config), offer)


def check_model_path(field: str, model: str) -> None:
    """A model given as a local path must be there (a hub id like ``org/name`` is the hub's to check)."""
    if model.startswith(("/", "./", "../", "~", "file://")):
        path = os.path.expanduser(model.removeprefix("file://"))
        if not os.path.exists(path):
            raise ConfigError(f"{field}: the model path {model!r} does not exist")
