"""Checks of what a user can fix, run before any flow starts and reported in one line: each
stage's own (``Stage.check``), the models its config names and the storage root. (What the stages
still to do ask of the Ray cluster is checked when the first of them starts:
``stages/executor.check_cluster``.)"""

from __future__ import annotations

import os

from ..errors import ConfigError
from ..stages.stage import RunView
from ..storage.store import check_root_writable


def preflight(run: RunView) -> None:
    """The storage root first (a stage's check may read what the run has committed), then every
    stage's checks, in order (a run's concept bank read whole, a topup target it can reach, a
    batch that splits over the ranks, a job's sources and starting weights, the card's sample),
    and every model given as a local path."""
    check_root_writable(run.ref.root, run.ref.storage_options)
    for stage in run.stages:
        for name, section in stage.models(run.config).items():
            check_model_path(f"{name}.model", section.model)
        if stage.check is not None:
            stage.check(run)


def check_model_path(field: str, model: str) -> None:
    """A model given as a local path must be there (a hub id like ``org/name`` is the hub's to check)."""
    if model.startswith(("/", "./", "../", "~", "file://")):
        path = os.path.expanduser(model.removeprefix("file://"))
        if not os.path.exists(path):
            raise ConfigError(f"{field}: the model path {model!r} does not exist")
