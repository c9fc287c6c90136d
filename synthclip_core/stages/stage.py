"""What a stage is: everything the pipeline knows of one step, defined once in the stage's module.

A stage has one name: its module, its config section, its Prefect flow and deployment and its
folder in the store are all called that. Flows, deployments, status, fingerprints and the CLI read
the ordered list of stages in :mod:`synthclip_core.pipeline` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from pydantic import BaseModel

from ..compute.resources import PoolSpec
from ..config import ModelSection, fingerprinted
from ..fingerprint import model_identity_of
from ..runs.pins import scheme_of
from ..storage.store import Completion, RunRef, RunStore


@dataclass
class StageSummary:
    """What one call of a stage did; shown in the CLI and as Prefect artifacts."""

    stage: str
    total: int = 0
    skipped: int = 0  # already committed before this call
    computed: int = 0
    rows: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    pictures: list[str] = field(default_factory=list)  # "stage/output" of PNGs worth showing
    reports: list[str] = field(default_factory=list)  # "stage/output" of markdown reports to attach as they are

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self) -> str:
        text = f"{self.stage}: {self.computed} computed, {self.skipped} already committed"
        if self.failures:
            text += f", {len(self.failures)} failed"
        return text


class StageBlocked(RuntimeError):
    """A stage cannot run because its inputs are not all committed."""


class Run(Protocol):
    """What a stage sees of a run: ``synthclip_core.runs.lifecycle.Run`` is one. Stages depend on this, so
    they never import the module that opens runs (which imports them)."""

    @property
    def ref(self) -> RunRef: ...
    @property
    def config(self) -> Any: ...  # the run's RunConfig, or a training job's JobConfig
    @property
    def fingerprints(self) -> dict[str, str]: ...
    @property
    def kind(self) -> str: ...  # "run" or "job"
    @property
    def stages(self) -> tuple[Stage, ...]: ...
    @property
    def names(self) -> list[str]: ...
    @property
    def store(self) -> RunStore: ...
    def stage(self, name: str) -> Stage: ...
    def has(self, name: str) -> bool: ...
    def completion(self, name: str, committed: set[str] | None = None) -> Completion | None: ...
    def require(self, name: str) -> Completion: ...
    def finished(self, name: str) -> StageSummary | None: ...
    def complete(self, summary: StageSummary, outputs: list[str]) -> StageSummary: ...
    def sibling(self, run_id: str) -> Run: ...


def section_settings(name: str) -> Callable[[Any], dict]:
    """A stage's section less its operational fields; a model by its identity (name and pinned
    commit, or a local model's content hash), not by the strings that name it."""
    def settings(cfg) -> dict:
        section, scheme = getattr(cfg, name, None), scheme_of(cfg)
        if section is None:
            return {}
        if isinstance(section, ModelSection):
            return {**fingerprinted(section, scheme), "model": model_identity_of(section, scheme)}
        return fingerprinted(section, scheme)

    return settings


def _no_workers(cfg) -> list[PoolSpec]:
    return []


def _always(cfg) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    ``run`` does (or finishes) the stage's work on a run and marks the stage complete in the store
    once every output it wrote is committed; outputs already committed are skipped. ``plan`` lists
    the outputs a stage will write, where they are known before it runs (for status and the UI).
    ``workers`` says what the stage asks of Ray for a config (actor pools, training workers, a
    task): a stage with none runs where it is called. ``section`` is the model of its config
    section (``cfg.<name>``; None: the stage has no settings), and ``settings`` what its
    fingerprint covers (by default its section, less the fields marked operational). A stage
    whose ``enabled(cfg)`` is False is not one of that run's stages: it has no fingerprint, so the
    stages after it keep the fingerprints they had before it existed (an optional stage, off by
    default, changes no run made without it).
    """

    name: str
    version: int  # bump when the code changes what the stage writes
    upstream: tuple[str, ...]  # stages whose outputs it reads (those a run has)
    run: Callable[[Run], StageSummary]
    description: str
    section: type[BaseModel] | None = None
    plan: Callable[[Run], list[str]] | None = None
    workers: Callable[[Any], list[PoolSpec]] = _no_workers
    settings: Callable[[Any], dict] | None = None
    enabled: Callable[[Any], bool] = _always

    def __post_init__(self) -> None:
        if self.settings is None:
            object.__setattr__(self, "settings", section_settings(self.name))

    def uses_ray(self, cfg) -> bool:
        return bool(self.workers(cfg))
