"""What a stage is: everything the pipeline knows of one step, defined once in the stage's module.

A stage has one name: its module, its config section, its Prefect flow and deployment and its
folder in the store are all called that. Flows, deployments, status, fingerprints, plans, checks
and the CLI read the ordered list of stages in :mod:`synthclip_core.pipeline` and nothing else.
What every stage needs done around its work (skip it when complete, commit with lineage, run
partitions on a pool, mark it complete) is the executor's (:mod:`.executor`), not the stage's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from pydantic import BaseModel

from ..compute.resources import PoolSpec
from ..config import ModelSection, fingerprinted, scheme_of
from ..fingerprint import model_identity_of
from ..storage.store import Completion, RunRef, RunStore


@dataclass
class StageSummary:
    """What one call of a stage did; shown in the CLI and as Prefect artifacts. ``outputs`` is
    everything the stage wrote once it is complete (its completion marker lists them)."""

    stage: str
    total: int = 0
    skipped: int = 0  # already committed before this call
    computed: int = 0
    rows: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    pictures: list[str] = field(default_factory=list)  # "stage/output" of PNGs worth showing
    reports: list[str] = field(default_factory=list)  # "stage/output" of markdown reports to attach as they are
    outputs: list[str] = field(default_factory=list, repr=False)
    lineage_unsent: int = 0  # OpenLineage events this call could not send (the backend slow or down)

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self) -> str:
        text = f"{self.stage}: {self.computed} computed, {self.skipped} already committed"
        if self.failures:
            text += f", {len(self.failures)} failed"
        if self.lineage_unsent:
            text += f" ({self.lineage_unsent} lineage events not sent)"
        return text

    def shown(self) -> dict:
        """The summary as plain data for a flow's result (without the list of outputs, which grows with the run)."""
        return {k: v for k, v in self.__dict__.items() if k != "outputs"}


class StageBlocked(RuntimeError):
    """A stage cannot run because its inputs are not all committed."""


class RunView(Protocol):
    """What a stage sees of a run (``synthclip_core.runs.lifecycle.Run`` is one). Stages depend on
    this, so they never import the module that opens runs (which imports them)."""

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
    def sibling(self, run_id: str) -> RunView: ...


@dataclass(frozen=True)
class WorkItem:
    """One output for a pool to make: of which stage, from which committed input (and which slice
    of its rows), under which fingerprint. Plain data: it crosses to actors in other environments."""

    stage: str
    output: str
    fingerprint: str
    version: int
    inputs: tuple[dict, ...] = ()  # committed outputs it reads ({stage, output, sha256}); the first is its rows
    offset: int = 0
    length: int | None = None  # rows [offset, offset + length) of the input; None: all of them
    params: dict = field(default_factory=dict)  # what else the work needs to know (a partition's index, a round)


@dataclass
class StagePlan:
    """A stage's part of ``synthclip plan``: what it will write, ask of Ray, spend and store."""

    stage: str
    outputs: int = 0  # partitions, shards or checkpoints it writes
    rows: int = 0
    pools: list[str] = field(default_factory=list)  # "8 x {GPU: 1, caption_gpu: 1}" per pool
    gpus: float = 0  # GPUs the stage's pools hold at once
    gpu_hours: float = 0.0
    stored_bytes: int = 0
    basis: str = ""  # what the estimate rests on


class Estimating(Protocol):
    """What a stage's estimate sees of the plan in progress (``planning.estimates.PlanContext`` is
    one): the config (sized), the recorded rates, the bank's size and the stages planned before it."""

    cfg: Any
    rates: Any  # planning.sizing.Rates
    bank_size: int

    @property
    def parameters(self) -> int: ...  # the CLIP model's parameters
    def rows(self, stage: str) -> int: ...  # rows an earlier stage will make (0: the run has no such stage)
    def outputs(self, stage: str) -> int: ...
    def train_share(self, concepts: int) -> float: ...  # the share of rendered rows that train


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
    """One step of the pipeline, and everything about it.

    ``make`` makes what is missing of the stage's outputs (the executor calls it only while the
    stage is incomplete, and marks it complete with the outputs the summary lists); ``plan`` lists
    the outputs it will write, where they are known before it runs (for status and the UI).
    ``workers`` says what it asks of Ray for a config (actor pools, Ray tasks, training ranks): a
    stage with none runs where it is called. ``section`` is the model of its config section
    (``cfg.<name>``; None: no settings), ``settings`` what its fingerprint covers (by default its
    section less the fields marked operational), ``models`` the hub models it loads (pinned when a
    run begins, checked by ``synthclip doctor``; by default its section, if that names a model),
    ``named_models`` the hub models a field names by a string (a scorer, a classifier: ``field:
    repository``), pinned when a run begins into its ``model_pins``.
    ``estimate`` is its part of ``synthclip plan``; ``check`` what a user can fix, checked before
    any work. A stage whose ``enabled(cfg)`` is False is not one of that run's stages: it has no
    fingerprint, so the stages after it keep the fingerprints they had before it existed.
    """

    name: str
    version: int  # bump when the code changes what the stage writes
    upstream: tuple[str, ...]  # stages whose outputs it reads (those a run has)
    make: Callable[[Any], StageSummary]  # given the stage's executor.StageContext
    description: str
    section: type[BaseModel] | None = None
    plan: Callable[[RunView], list[str]] | None = None
    workers: Callable[[Any], list[PoolSpec]] = _no_workers
    settings: Callable[[Any], dict] | None = None
    enabled: Callable[[Any], bool] = _always
    estimate: Callable[[Estimating], StagePlan] | None = None
    check: Callable[[RunView], None] | None = None
    models: Callable[[Any], dict[str, ModelSection]] | None = None
    named_models: Callable[[Any], dict[str, str]] = lambda cfg: {}  # noqa: E731

    def __post_init__(self) -> None:
        if self.settings is None:
            object.__setattr__(self, "settings", section_settings(self.name))
        if self.models is None:
            object.__setattr__(self, "models", self._own_model)

    def _own_model(self, cfg) -> dict[str, ModelSection]:
        section = getattr(cfg, self.name, None)
        return {self.name: section} if isinstance(section, ModelSection) else {}

    def uses_ray(self, cfg) -> bool:
        return bool(self.workers(cfg))
