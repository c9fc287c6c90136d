"""The Python face: what a notebook or a script needs to make and read runs, without Prefect
and without knowing the store's layout (``synthclip_core`` exports these names).

    import synthclip_core as sc

    run = sc.open_run("configs/offline.yaml", root="runs")   # or sc.load_run(RUN_ID, root="runs")
    sc.run_all(run)                                          # every stage still to do, in this process
    images = sc.read_table(run, "images")                    # a stage's committed rows, one pyarrow table
    dataset = sc.to_dataset(run, "images")                   # ... as a Hugging Face dataset (jpg as images)
    sc.plan("configs/synthci-30m.yaml", bank_size=500_000)   # what a run would cost, before any work
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import read_yaml
from ..errors import RunStateError
from ..pipeline import JobConfig, RunConfig, config_from_dict, job_config_from_dict
from ..planning.estimates import Plan, plan_run
from ..planning.sizing import bank_concepts
from ..stages import lineage_events
from ..stages.common import data_parts
from ..stages.executor import execute
from ..stages.stage import StageSummary
from ..storage.schemas import declared_kind
from ..storage.store import RunRef
from ..storage.tables import read_table as read_output
from . import lease, lifecycle
from .lifecycle import Run, default_root, default_run_id

Config = RunConfig | JobConfig


def load_config(config: str | Path | Config) -> Config:
    """A run's or a training job's config from its YAML (a job's names ``train.sources`` and no
    stage of a synthetic run), or the config itself."""
    if isinstance(config, (RunConfig, JobConfig)):
        return config
    data, source = read_yaml(config)
    job = isinstance(data, dict) and set(data) <= set(JobConfig.model_fields) and bool((data.get("train") or {}).get("sources"))
    return job_config_from_dict(data, source) if job else config_from_dict(data, source)


def open_run(config: str | Path | Config, run_id: str | None = None, root: str | None = None, fork: bool = False) -> Run:
    """A new run of ``config`` (its preset's YAML, or a config), or the run ``run_id`` of the same
    config continued; checked as ``synthclip run`` checks it (one line for what the user can fix)."""
    cfg = load_config(config)
    return lifecycle.open_run(cfg, RunRef(root or cfg.root, run_id or default_run_id(cfg)), fork=fork)


def load_run(run_id: str, root: str | None = None) -> Run:
    """A run or training job as stored under ``root`` (default: ``$SYNTHCLIP_ROOT`` or ``runs``)."""
    return lifecycle.load_run(RunRef(root or default_root(), run_id))


def run_stage(run: Run, stage: str) -> StageSummary:
    """Make what is missing of one stage of ``run``, in this process and the Ray it finds or starts."""
    return execute(run, stage)


def run_all(run: Run) -> dict[str, StageSummary]:
    """Every stage of ``run`` in order, each making only what is missing; a stage with failed
    outputs stops the run there, with one line naming the first (the rest stay committed)."""
    done: dict[str, StageSummary] = {}
    with lease.holding(run.store), lineage_events.run_call(run):
        for stage in run.names:
            summary = done[stage] = execute(run, stage)
            if not summary.ok:
                output, error = next(iter(sorted(summary.failures.items())))
                raise RunStateError(f"{stage}: {len(summary.failures)} output(s) failed, e.g. {output}: {error}; fix "
                                    f"the cause and run it again (what is committed stays)")
    return done


def plan(config: str | Path | Config, bank_size: int | None = None) -> Plan:
    """What a run of ``config`` will do and cost, before any work (``synthclip plan``)."""
    cfg = load_config(config)
    return plan_run(cfg, bank_concepts(cfg) if bank_size is None else bank_size)


def read_table(run: Run, stage: str, output: str | None = None, columns: list[str] | None = None) -> pa.Table:
    """A complete stage's rows as one pyarrow table: its row partitions in order (or one output),
    image columns as bytes."""
    run.stage(stage)  # one line for a stage the run does not have
    if (done := run.completion(stage)) is None:
        raise RunStateError(f"stage {stage!r} of {run.kind} {run.ref.run_id} is not complete; run or resume it first")
    outputs = [output] if output is not None else data_parts(done.outputs)
    if not outputs:
        raise RunStateError(f"stage {stage!r} of {run.kind} {run.ref.run_id} writes no row partitions; name one of its "
                            f"outputs: {', '.join(done.outputs[:10])}")
    with run.store.open(stage, outputs[0]) as handle:
        kind = declared_kind(pq.read_schema(handle))
    if kind is None:
        raise RunStateError(f"{stage}/{outputs[0]} of {run.kind} {run.ref.run_id} is not a table of this platform")
    return pa.concat_tables([read_output(run.store, stage, o, kind, columns) for o in outputs])


def to_dataset(run: Run, stage: str, output: str | None = None, columns: list[str] | None = None) -> Any:
    """:func:`read_table` as a Hugging Face ``datasets.Dataset``; a ``jpg`` column is an ``Image``
    feature, so a notebook shows the pictures."""
    try:
        from datasets import Dataset, Image
    except ImportError:
        raise RunStateError("to_dataset needs the Hugging Face datasets library: pip install datasets") from None
    dataset = Dataset(read_table(run, stage, output, columns))
    return dataset.cast_column("jpg", Image()) if "jpg" in dataset.column_names else dataset
