"""Executing one stage of a run: the one function behind the Prefect stage task (so every stage
flow and the end-to-end flows), ``python -m synthclip_core STAGE`` and the Python face."""

from __future__ import annotations

from ..compute.ray_runtime import ensure_ray
from ..stages.executor import execute
from ..stages.stage import StageSummary
from ..storage.store import RunRef
from . import lineage_events
from .checks import check_cluster
from .lifecycle import Run, load_run


def execute_stage(run: Run | RunRef, name: str) -> StageSummary:
    """Make what is missing of stage ``name`` of a run (opened, or loaded from its ref): on the
    Ray this process finds or starts, once the cluster can host every stage still to do; with an
    OpenLineage event for the call and each output it commits, where OpenLineage is configured."""
    run = run if isinstance(run, Run) else load_run(run)
    if run.stage(name).uses_ray(run.config):
        ensure_ray()
        check_cluster(run)
    with lineage_events.stage_call(run, name) as call:
        call.summary = execute(run, name)
    return call.summary
