"""Stages whose outputs are row partitions made one per job on an actor pool (captions, images,
balancing's two passes): the pending jobs of a plan, and the pool run that makes them."""

from __future__ import annotations

import os

from ..compute.pool import run_pool
from ..compute.resources import PoolSpec
from .common import input_ref
from .stage import Run, StageSummary


def model_pool(cfg, name: str, label: str = "") -> PoolSpec:
    """The actor pool of a model stage's config section: actors, GPUs, node-group resources, and
    the interpreter its actors run under (a backend's own environment)."""
    section = getattr(cfg, name)
    python = getattr(section, "python", None)
    runtime_env = {"py_executable": os.path.abspath(os.path.expanduser(python))} if python else {}
    return PoolSpec(num_actors=section.num_actors, num_gpus=section.num_gpus, runtime_env=runtime_env,
                    resources=dict(section.ray_resources), label=label, section=name)


def mirrored_jobs(run: Run, stage: str, source: str, outputs: list[str]) -> list[dict]:
    """Jobs for the outputs of ``stage`` not yet committed, output i made from ``source``'s output i."""
    return pending_jobs(run, stage, [(o, source, o, {}) for o in outputs])


def pending_jobs(run: Run, stage: str, plan: list[tuple[str, str, str, dict]],
                 records: dict[str, dict[str, dict]] | None = None) -> list[dict]:
    """One job per planned output not yet committed: (output, input stage, input output, job
    settings) becomes what to make, from which committed input, under which fingerprint.
    ``records`` are input commit records the caller already read (by stage, then output)."""
    committed = run.store.committed(stage)
    pending = [p for p in plan if p[0] not in committed]
    inputs: dict[str, list[str]] = {}
    for _, source, name, _ in pending:
        inputs.setdefault(source, []).append(name)
    records = {source: (records or {}).get(source) or run.store.records(source, names) for source, names in inputs.items()}
    return [{"output": output, "inputs": [input_ref(run.store, source, name, records[source][name])],
             "fingerprint": run.fingerprints[stage], "version": run.stage(stage).version, **extra}
            for output, source, name, extra in pending]


def run_jobs(run: Run, stage: str, spec: PoolSpec, work: type, args: tuple, jobs: list[dict], total: int) -> StageSummary:
    """Make the pending outputs on a pool of actors holding ``work(*args)``; failures are recorded."""
    summary = StageSummary(stage, total=total, skipped=total - len(jobs))
    if not jobs:
        return summary
    result = run_pool(stage, run.ref, spec, work, args, jobs)
    summary.computed = len(result.records)
    summary.failures = result.failures
    summary.notes = {"actor_restarts": result.actor_restarts}
    return summary


def committed_rows(run: Run, stage: str, outputs: list[str]) -> int:
    """Rows of committed outputs, from their commit records."""
    return sum(r.get("rows", 0) for r in run.store.records(stage, outputs).values())
