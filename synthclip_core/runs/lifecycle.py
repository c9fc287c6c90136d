"""A run: its id and root, its config, its stages and their fingerprints (``run.json``); creating,
continuing, forking, loading and finding runs.

A synthetic run has every stage of the pipeline; a training job (fine-tuning, or training on real
or mixed sources) is a run whose config is a ``JobConfig`` and has only ``train`` and ``eval``.
Both live under ``ROOT/RUN_ID`` with the same store layout and are opened the same way; a run id
holds one or the other, never both. Any run with finished training is ``run:ID`` to later runs:
as weights to start from (``train.init_from``) or, for synthetic runs, as a data source.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import time
from dataclasses import dataclass, replace
from functools import cached_property

import fsspec

from .. import legacy
from ..config import Budget, differences
from ..curation.concepts import reading_banks_once
from ..errors import RunStateError
from ..ids import is_run_id
from ..pipeline import JobConfig, RunConfig, config_from_dict, fingerprints, job_config_from_dict, stages_for, versions
from ..planning import budget
from ..stages import code_settings
from ..stages.stage import Stage, StageBlocked
from ..storage.lineage import code_version
from ..storage.store import COMMITS, Completion, RunRef, RunStore, check_root_writable
from . import lease, pins
from .checks import preflight

DEFAULT_ROOT_ENV = "SYNTHCLIP_ROOT"
RUN_FILE = "run.json"
LAYOUT = legacy.LAYOUT


def default_root() -> str:
    return os.environ.get(DEFAULT_ROOT_ENV, "runs")


def default_run_id(cfg: RunConfig | JobConfig) -> str:
    return f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


@dataclass(frozen=True)
class Run:
    """A run or training job as stored: where it lives, its config, its stages and their fingerprints."""

    ref: RunRef
    config: RunConfig | JobConfig
    fingerprints: dict[str, str]
    stages: tuple[Stage, ...]
    kind: str = "run"  # "run" (synthetic) or "job" (training job)
    layout: int = LAYOUT
    ignored: tuple[str, ...] = ()  # settings of the command's config that the stored run it continues does not take

    @cached_property
    def store(self) -> RunStore:
        return self.ref.store()

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise RunStateError(f"{self.kind} {self.ref.run_id} has no stage {name!r} (it has {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def has(self, name: str) -> bool:
        return name in self.names

    def completion(self, name: str, committed: set[str] | None = None) -> Completion | None:
        """What a finished stage wrote, or None while it is not finished (``committed``: the
        stage's commits, where the caller has listed them already)."""
        done = self.store.completion(name, committed)
        return done if done is not None else legacy.completion(self, name)

    def require(self, name: str) -> Completion:
        """The completion of a stage another stage reads, or StageBlocked."""
        if (done := self.completion(name)) is None:
            raise StageBlocked(f"stage {name!r} of {self.kind} {self.ref.run_id} is not complete; run or resume it first")
        return done

    def sibling(self, run_id: str) -> Run:
        """Another run or job under the same root (``run:ID`` in a config)."""
        return load_run(RunRef(self.ref.root, run_id, self.ref.storage_options))


def new_run(cfg: RunConfig | JobConfig, ref: RunRef) -> Run:
    """A run of ``cfg`` at ``ref``, in memory: its stages and fingerprints, nothing written yet."""
    return Run(ref, cfg, fingerprints(cfg), stages_for(cfg), _kind(cfg))


def open_run(cfg: RunConfig | JobConfig, ref: RunRef, fork: bool = False) -> Run:
    """Everything a command checks before any work, once: the config's inputs pinned (as the run at
    ``ref`` pinned them, where it continues or forks that run), what the user can fix (preflight),
    then the run itself: created, or continued when ``ref`` holds one of the same config. With
    ``fork``, a run of another config at ``ref`` is not refused: this one runs as
    ``<run_id>-fork-<hash>``, starting from copies of the stages the two share."""
    code_settings.allow(cfg)  # a person gave this config: the code it names may run in this process
    existing = _stored(ref)
    like = existing.config if existing is not None and existing.kind == _kind(cfg) else None
    with reading_banks_once():  # pinning, sizing and checking read one bank: from its file once
        run = new_run(pins.pin(cfg, like), ref)
        preflight(run)
        if like is not None:
            pins.check(existing)
    return fork_run(run, existing) if fork else create_or_open(run, existing)


def continue_run(ref: RunRef) -> Run:
    """The checks before continuing a stored run, for every way of continuing one (``synthclip
    resume``, the resume flows, a stage's flow run on its own): its code and pinned inputs are
    still the ones its fingerprints name, what it still has to run chooses no code this machine
    does not allow (``stages/code_settings.py``), and its root takes writes."""
    run = load_run(ref, verify=True)
    # What it would still run that chooses code: allowed here, or one line now (the store is
    # read only where some setting is not allowed, so a resume that cannot write fails fast).
    if refused := [stage.name for stage in run.stages if code_settings.unallowed(run.config, stage.name)]:
        committed = run.store.committed_all()
        for name in refused:
            if run.completion(name, committed.get(name, set())) is None:
                code_settings.check(run.config, name)
    check_root_writable(run.ref.root, run.ref.storage_options)
    return run


def _kind(cfg: RunConfig | JobConfig) -> str:
    return "job" if isinstance(cfg, JobConfig) else "run"


_UNREAD = object()


def create_or_open(run: Run, existing: Run | None = _UNREAD) -> Run:  # type: ignore[assignment]
    """Write ``run.json`` for a new run; continue the stored run (``existing``, read here unless
    given) when it has the same fingerprints; refuse (naming the changed stages) one made with
    another config or code, or of another kind."""
    ref = run.ref
    if existing is _UNREAD:
        existing = _stored(ref)
    if existing is not None:
        if existing.kind != run.kind:
            raise RunStateError(f"{ref.run_id} under {ref.root} is a {_kinds[existing.kind]}, not a {_kinds[run.kind]}: "
                                f"choose another id")
        if not _same_config(existing, run):
            changed = [s for s in run.fingerprints if existing.fingerprints.get(s) != run.fingerprints[s]]
            raise RunStateError(
                f"{existing.kind} {ref.run_id} under {ref.root} was made with another config or code (stages changed: "
                f"{', '.join(changed) or 'all'}); start a new one (--run-id NEW), or --fork to reuse its unchanged stages")
        taken = take_budget(existing, run.config)
        return replace(existing, ignored=tuple(d for d in differences(existing.config, run.config)
                                               if not (taken and d.startswith("budget"))))
    doc = {"kind": run.kind, "run_id": ref.run_id, "config": run.config.model_dump(mode="json"),
           "fingerprints": run.fingerprints, "layout": LAYOUT, "code_version": {**code_version(), "stages": versions()},
           "created_at": time.time()}
    data = json.dumps(doc, indent=1, sort_keys=True).encode()
    if run.store.commit("run", RUN_FILE, data, deterministic=False)["sha256"] != hashlib.sha256(data).hexdigest():
        existing = _stored(ref)  # another command created this run at the same moment: the first one wins
        if existing.kind != run.kind or not _same_config(existing, run):
            raise RunStateError(f"{ref.run_id} under {ref.root} was just created by another command with another "
                                f"config; start a new one (--run-id NEW)")
        return existing
    return run


_kinds = {"run": "synthetic run", "job": "training job"}


def take_budget(existing: Run, cfg: RunConfig | JobConfig) -> bool:
    """A continuing command's config whose budget was edited (it differs from the one the run began
    with) makes it the run's (refused below what is spent): how a budget is raised before a resume.
    A config left as it was, or with no budget, keeps the budget in force (one raised by
    ``synthclip budget`` stays)."""
    wanted = getattr(cfg, "budget", None)
    began = getattr(existing.config, "budget", None) or Budget()
    if wanted is None or wanted in (began, Budget(), budget.budget_of(existing)):
        return False
    budget.set_budget(existing, wanted)
    return True


def fork_run(run: Run, existing: Run | None = _UNREAD) -> Run:  # type: ignore[assignment]
    """Where to run a config when ``run.ref`` may hold a run of another one: there, if it is free
    or has this config; else a new run ``<id>-fork-<hash>`` that starts with copies of the
    committed outputs of every stage whose fingerprint is unchanged (fingerprints chain, so those
    are the leading stages), each record naming the run it came from."""
    if existing is _UNREAD:
        existing = _stored(run.ref)
    if existing is None or existing.kind != run.kind or _same_config(existing, run):
        return create_or_open(run)  # a free id, this config's run, or one of another kind (refused)
    digest = hashlib.sha256(json.dumps(run.fingerprints, sort_keys=True).encode()).hexdigest()[:8]
    fork = create_or_open(Run(RunRef(run.ref.root, f"{run.ref.run_id}-fork-{digest}", run.ref.storage_options), run.config,
                              run.fingerprints, run.stages, run.kind))
    source = existing.store
    for stage in fork.stages:
        if existing.fingerprints.get(stage.name) != fork.fingerprints[stage.name]:
            break
        for output, record in source.records(stage.name).items():
            lineage = {k: v for k, v in record.items() if k not in _OWN_FIELDS}
            fork.store.commit(stage.name, output, source.read_bytes(stage.name, output), {**lineage, "forked_from": run.ref.run_id})
        if (done := existing.completion(stage.name)) is not None:
            fork.store.mark_complete(stage.name, done, {"fingerprint": fork.fingerprints[stage.name], "forked_from": run.ref.run_id})
    return fork


_OWN_FIELDS = {"stage", "output", "path", "sha256", "bytes", "committed_at", "adopted"}


def load_run(ref: RunRef, verify: bool = False) -> Run:
    """Open a run or job from what it stored; with ``verify``, refuse if the code changed its fingerprints."""
    run = _stored(ref)
    if run is None:
        raise RunStateError(f"no run {ref.run_id!r} under {ref.root} (a run stopped before it started has nothing to "
                            f"resume: run 'synthclip run CONFIG --run-id {ref.run_id}' again)")
    if verify:
        pins.check(run)
        current = legacy.as_stored(run, run.config, fingerprints(run.config))
        changed = [s for s in current if current[s] != run.fingerprints.get(s)]
        if changed:
            raise RunStateError(
                f"{run.kind} {ref.run_id}: the code or models changed since it started (stages: "
                f"{', '.join(changed)}); resuming would mix outputs, start a new one instead")
    return run


def _stored(ref: RunRef) -> Run | None:
    """The run at ``ref`` as stored (``run.json``, or what the layout-1 job there stored), or None."""
    store = ref.store()
    if RUN_FILE in store.committed("run"):
        data, record = store.read_bytes("run", RUN_FILE), store.record("run", RUN_FILE)
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise RunStateError(f"run {ref.run_id}: {store.uri(RUN_FILE)} is damaged (its sha256 is not its commit "
                                f"record's); restore it from a copy")
        doc, source = json.loads(data), RUN_FILE
    elif (doc := legacy.run_document(store)) is not None:
        source = doc["source"]
    else:
        return None
    kind = doc.get("kind", "run")
    parse = job_config_from_dict if kind == "job" else config_from_dict
    cfg = parse(doc["config"], source=f"{ref.run_id}/{source}")
    return Run(ref, cfg, doc["fingerprints"], stages_for(cfg), kind, doc.get("layout", 1))


def _same_config(existing: Run, run: Run) -> bool:
    """Whether the stored run was made with ``run``'s config and this code."""
    return legacy.as_stored(existing, run.config, run.fingerprints) == existing.fingerprints


@dataclass(frozen=True)
class RunsUnder:
    """What a root holds: synthetic runs still to finish (oldest first), and runs whose
    ``run.json`` cannot be read (id: why), which nothing resumes until they are restored."""

    unfinished: list[str]
    damaged: dict[str, str]
    held: dict[str, str]  # unfinished runs whose lease is live (``lease``): id -> who holds it

    @property
    def free(self) -> list[str]:
        """Unfinished runs no live writer holds, oldest first: what automation may resume."""
        return [run_id for run_id in self.unfinished if run_id not in self.held]


def runs_under(root: str) -> RunsUnder:
    """The runs under ``root``, unfinished ones oldest first: by when the storage says ``run.json``
    was committed (its record's modification time: the object store's clock on S3, the file
    system's locally), not by the time the writer put in the record, so a writer whose clock is
    off cannot reorder runs. One damaged run never hides the others."""
    fs, base = fsspec.core.url_to_fs(root)
    if not fs.exists(base):
        return RunsUnder([], {}, {})
    found, damaged, held = [], {}, {}
    for entry in fs.ls(base, detail=False):
        name = posixpath.basename(entry.rstrip("/"))
        if not is_run_id(name):  # not a run's folder
            continue
        ref = RunRef(root, name)
        try:
            run = _stored(ref)
            if run is None or run.kind != "run" or run.completion(run.stages[-1].name) is not None:
                continue
            found.append((run.store.fs.modified(run.store.path(COMMITS, "run", RUN_FILE + ".json")), ref.run_id))
            if (holder := lease.live_holder(run.store)) is not None:
                held[name] = lease.describe(holder)
        except Exception as exc:  # noqa: BLE001 (a run this code cannot read is listed, never a stop for the rest)
            damaged[name] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    return RunsUnder([run_id for _, run_id in sorted(found)], damaged, held)


def unfinished_runs(root: str) -> list[str]:
    """Synthetic run ids under ``root`` whose last stage is not complete, oldest first (see :func:`runs_under`)."""
    return runs_under(root).unfinished
