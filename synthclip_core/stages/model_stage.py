"""Running a model stage (captions, images): plan pending partitions, stream them through a pool."""

from __future__ import annotations

import os

from ..actors import PoolSpec, run_pool
from ..run import Run
from .captions import caption_settings, plan_captions
from .common import StageSummary
from .images import plan_images, render_settings

_STAGES = {
    "captions": (plan_captions, caption_settings, "captions"),
    "images": (plan_images, render_settings, "render"),
}


def run_model_stage(run: Run, stage: str, max_retries: int = 2) -> StageSummary:
    plan, settings_of, section = _STAGES[stage]
    jobs, total = plan(run)
    cfg = getattr(run.config, section)
    summary = StageSummary(stage, total=total, skipped=total - len(jobs))
    if not jobs:
        return summary
    python = getattr(cfg, "python", None)
    runtime_env = {"py_executable": os.path.abspath(os.path.expanduser(python))} if python else {}
    spec = PoolSpec(num_actors=cfg.num_actors, num_gpus=cfg.num_gpus, max_retries=max_retries, runtime_env=runtime_env,
                    resources=cfg.ray_resources)
    result = run_pool(stage, run.ref, settings_of(run), jobs, spec)
    summary.computed = len(result.records)
    summary.rows = sum(r.get("rows", 0) for r in result.records.values())
    summary.failures = result.failures
    summary.notes = {"actor_restarts": result.actor_restarts}
    return summary
