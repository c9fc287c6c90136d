"""The executor: what every stage needs done around its work, done once, here.

A stage says what it is (its module's ``STAGE``) and does its own work; the executor keeps the
books, as datatrove's executor and NeMo Curator's adapter do for their steps:

- :func:`execute` returns a complete stage's summary without calling it; otherwise it joins or
  starts Ray where the stage uses it (every stage still to do set against the cluster first),
  calls the stage's ``make`` with a :class:`StageContext` and, once every output the summary lists
  is committed, marks the stage complete (its last write); OpenLineage events describe the call
  where OpenLineage is configured;
- :class:`StageContext` commits a whole-run output with the stage's lineage, plans the work items
  still pending, and runs them on the stage's actor pool or as its Ray tasks;
- in each actor of a pool, :class:`PartitionMaker` reads the rows an item names, hands them to the
  stage's :class:`PartitionWork` (set up once per actor), times the work, writes the lineage and
  commits the output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import pyarrow as pa

from ..compute.pool import run_pool
from ..compute.ray_runtime import ensure_ray
from ..compute.resources import ClusterOffer, PoolSpec, check
from ..compute.tasks import map_tasks
from ..errors import StorageError
from ..planning import budget
from ..planning.budget import Guard
from ..storage.ledger import add_spend, held
from ..storage.lineage import accelerator_type, code_version, input_ref, lineage, worker_info
from ..storage.schemas import to_parquet_bytes
from ..storage.store import Completion, RunStore
from ..storage.tables import read_table
from . import code_settings, lineage_events
from .stage import RunView, Stage, StageSummary, WorkItem


def execute(run: RunView, name: str) -> StageSummary:
    """Make what is missing of stage ``name`` of ``run``, and mark it complete once it all is; a
    stage already complete is not called (everything counts as skipped). The one way a stage is
    executed: by the Prefect stage task, ``python -m synthclip_core STAGE`` and ``run_stage``."""
    stage = run.stage(name)
    with lineage_events.stage_call(run, name) as call:
        if (finished := finished_summary(run, name)) is not None:
            call.summary = finished
            return finished
        code_settings.check(run.config, name)
        limits = budget.guard(run, name)
        if limits is not None:
            limits.check_start()
        if stage.uses_ray(run.config):
            ensure_ray()
            check_cluster(run)
        started = time.time()
        try:
            summary = call.summary = stage.make(StageContext(run, stage, limits))
        except StorageError:
            raise  # the store refuses writes: it cannot take the call's spend record either
        except BaseException:
            add_spend(run.store, name, "driver", held(time.time() - started))  # spent whether it succeeded or not
            raise
        add_spend(run.store, name, "driver", held(time.time() - started))
        return complete(run, summary) if summary.ok else summary


def check_cluster(run: RunView, offer: ClusterOffer | None = None) -> None:
    """Every stage still to do, set against the connected Ray before any of them starts: one that
    no node can ever host stops the run now, not after days of the stages before it."""
    offer = offer or ClusterOffer.of_ray()
    committed = run.store.committed_all()
    for stage in run.stages:
        if run.completion(stage.name, committed.get(stage.name, set())) is None:
            check(stage.name, stage.workers(run.config), offer)


def complete(run: RunView, summary: StageSummary) -> StageSummary:
    """Mark the stage of ``summary`` complete with everything it lists as written: its last write
    (created only if no marker exists, so a racing writer's marker wins)."""
    stage = run.stage(summary.stage)
    done = Completion(summary.outputs, summary.rows, summary.notes, summary.pictures, summary.reports)
    run.store.mark_complete(stage.name, done, {"fingerprint": run.fingerprints[stage.name],
                                               "code_version": code_version(stage.version)})
    return summary


def finished_summary(run: RunView, name: str) -> StageSummary | None:
    """The summary of a stage that is complete (everything skipped), else None."""
    if (done := run.completion(name)) is None:
        return None
    n = len(done.outputs)
    return StageSummary(name, total=n, skipped=n, rows=done.rows, notes=done.notes, pictures=list(done.pictures),
                        reports=list(done.reports), outputs=list(done.outputs))


@dataclass
class StageContext:
    """What a stage's ``make`` works with: the run, and the stage's books kept for it."""

    run: RunView
    stage: Stage
    budget: Guard | None = None  # the limits this call may not pass, and what was spent before it

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def store(self) -> RunStore:
        return self.run.store

    @property
    def config(self) -> Any:
        return self.run.config

    @property
    def fingerprint(self) -> str:
        return self.run.fingerprints[self.stage.name]

    def committed(self) -> set[str]:
        """The stage's committed outputs now (one listing)."""
        return self.store.committed(self.name)

    def lineage(self, inputs: list[dict] = (), rows: int = 0, started: float | None = None, **extra) -> dict:  # type: ignore[assignment]
        """A commit record's lineage for an output of this stage."""
        return lineage(self.fingerprint, self.stage.version, list(inputs), time.time() if started is None else started,
                       rows, **extra)

    def commit(self, output: str, data: bytes, inputs: list[dict] = (), rows: int = 0,  # type: ignore[assignment]
               started: float | None = None, deterministic: bool = True, **extra) -> dict:
        """Commit one output of this stage (a whole-run step's) with the stage's lineage."""
        return self.store.commit(self.name, output, data, self.lineage(inputs, rows, started, **extra), deterministic)

    def input_ref(self, stage: str, output: str, record: dict | None = None) -> dict:
        return input_ref(self.store, stage, output, record)

    def committed_rows(self, outputs: list[str]) -> int:
        """Rows of committed outputs of this stage, from their commit records."""
        return self.store.committed_rows(self.name, outputs)

    def pending(self, plan: list[tuple[str, str, str, dict]], records: dict[str, dict[str, dict]] | None = None
                ) -> list[WorkItem]:
        """A work item per planned output not yet committed. Each plan entry is (output, input stage,
        input, what else: ``offset``/``length`` of a slice, ``params``); ``records`` are input commit
        records the caller has read already (by stage, then output)."""
        committed = self.committed()
        todo = [p for p in plan if p[0] not in committed]
        wanted: dict[str, list[str]] = {}
        for _, source, name, _ in todo:
            wanted.setdefault(source, []).append(name)
        records = {s: (records or {}).get(s) or self.store.records(s, names) for s, names in wanted.items()}
        return [WorkItem(self.name, output, self.fingerprint, self.stage.version,
                         (input_ref(self.store, source, name, records[source][name]),), **extra)
                for output, source, name, extra in todo]

    def run_partitions(self, spec: PoolSpec, work: type[PartitionWork], settings: dict, items: list[WorkItem],
                       total: int) -> StageSummary:
        """Make ``items`` on the pool ``spec`` of actors holding ``work(settings)``; outputs that
        keep failing are recorded in the store's failures and named in the summary."""
        summary = StageSummary(self.name, total=total, skipped=total - len(items))
        if not items:
            return summary
        holds = {"cpus": spec.num_cpus, "gpus": spec.num_gpus}
        result = run_pool(self.name, self.run.ref, spec, PartitionMaker, (work, settings, self.run.ref.as_dict(), holds), items,
                          budget=self.budget.stops if self.budget is not None else None)
        if result.stopped is not None:  # what was in flight is committed; the rest waits for a larger budget
            raise self.budget.stopped(result.stopped, result.not_started, total)
        summary.computed, summary.failures = len(result.records), result.failures
        summary.notes = {"actor_restarts": result.actor_restarts}
        if result.lost_with_nodes or result.moved_off_draining:  # pre-emption: no partition's try was used
            summary.notes |= {"lost_with_nodes": result.lost_with_nodes, "moved_off_draining": result.moved_off_draining}
        return summary

    def run_tasks(self, spec: PoolSpec | None, fn: Callable[..., Any], calls: list[tuple]) -> Iterator[Any]:
        """``fn(*call)`` per call as the stage's Ray tasks (``spec``), or here when it asks none
        (then the stage call's own time is its cost); each task's time is a spend record."""
        if spec is None:
            yield from map_tasks(self.name, spec, fn, calls)
            return
        for out, seconds, accelerator in map_tasks(self.name, spec, timed_call, [(fn, *call) for call in calls]):
            add_spend(self.store, self.name, "task", held(seconds, spec.num_cpus, spec.num_gpus, accelerator))
            yield out


def timed_call(fn: Callable[..., Any], *args) -> tuple[Any, float, str | None]:
    """``fn(*args)`` in a Ray task, with the seconds it took and the GPU type it ran on."""
    started = time.time()
    out = fn(*args)
    import ray

    gpus = ray.get_gpu_ids() if ray.is_initialized() else []
    return out, time.time() - started, accelerator_type() if gpus else None


@dataclass
class Made:
    """What a work class made of one partition: its rows, and what its record should add (the
    model, sampling, counters)."""

    table: pa.Table
    lineage: dict = field(default_factory=dict)


class PartitionWork:
    """A stage's work on one partition, held by an actor of the stage's pool.

    A subclass says what it reads and writes and fills in two methods: ``setup`` (once per actor:
    load the model) and ``process`` (one partition's input rows into its output table). Reading,
    timing, lineage and the commit are the executor's (:class:`PartitionMaker`).
    """

    reads: ClassVar[str | None] = None  # schema of the rows it reads (the item's first input); None: no rows
    columns: ClassVar[tuple[str, ...] | None] = None  # the input columns it needs (None: all of them)
    writes: ClassVar[str]  # schema of the table it makes
    group_by: ClassVar[str | None] = None  # one row group per run of this column's values (readers skip others)
    deterministic: ClassVar[bool] = True  # False: two writers may make other bytes (sampling on a GPU)

    def __init__(self, settings: dict, store: RunStore):
        self.settings, self.store = settings, store
        self.setup()

    @property
    def device(self) -> str:
        return "cpu"

    def setup(self) -> None:
        """Load what every partition needs (the model): once per actor."""

    def process(self, rows: pa.Table | None, item: WorkItem) -> Made:
        raise NotImplementedError


class PartitionMaker:
    """What an actor of a stage's pool holds: one :class:`PartitionWork`, and the books around
    each item it makes, its cost among them: each record says what the actor held since its
    previous item ended (the first: since the actor started, model load included); an attempt
    that fails leaves a spend record of the same."""

    def __init__(self, work: type[PartitionWork], settings: dict, ref: dict, holds: dict | None = None):
        from ..storage.store import RunRef

        self.since = time.time()
        self.holds = holds or {"cpus": 1, "gpus": 0}
        self.store = RunRef(**ref).store()
        self.work = work(settings, self.store)
        self.accelerator = accelerator_type() if self.holds.get("gpus") else None

    def held(self) -> dict:
        """What this actor held since its last item, and the clock restarted for the next."""
        now, since = time.time(), self.since
        self.since = now
        return held(now - since, self.holds.get("cpus", 1), self.holds.get("gpus", 0), self.accelerator)

    def __call__(self, item: WorkItem) -> dict:
        started = time.time()
        try:
            made = self.work.process(self.rows(item), item)
        except StorageError:
            raise  # the store refuses: no spend record could be written either
        except Exception:
            self.spent_on_failure(item)
            raise
        extra = {"slice": [item.offset, item.length]} if item.length is not None else {}
        record = lineage(item.fingerprint, item.version, list(item.inputs), started, made.table.num_rows, **extra,
                         **item.params, **made.lineage, worker=worker_info(self.work.device), held=self.held())
        data = to_parquet_bytes(made.table, self.work.writes, group_by=self.work.group_by)
        return self.store.commit(item.stage, item.output, data, record, deterministic=self.work.deterministic)

    def spent_on_failure(self, item: WorkItem) -> None:
        """A failed attempt is spent: its spend record (a write that fails is logged: the
        partition's own error is what the pool must see)."""
        add_spend(self.store, item.stage, "failed", self.held(), output=item.output)

    def rows(self, item: WorkItem) -> pa.Table | None:
        """The rows the item names: its first input (a slice of it), the columns the work needs."""
        work = self.work
        if work.reads is None:
            return None
        source = item.inputs[0]
        columns = list(work.columns) if work.columns is not None else None
        table = read_table(self.store, source["stage"], source["output"], work.reads, columns)
        return table if item.length is None else table.slice(item.offset, item.length)
