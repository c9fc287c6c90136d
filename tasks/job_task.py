"""The Prefect task that runs one stage (train or eval) of a training job, with its summary in the UI."""

from __future__ import annotations

from dataclasses import asdict

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from synthclip_core.jobs import evaluate_job, load_job, train_job
from synthclip_core.run import RunRef
from tasks.stage_task import _core_logs_to, _inline_pictures, _png

JOB_STAGES = {"train": train_job, "eval": evaluate_job}


@task(name="job-stage", task_run_name="{stage}", cache_policy=NONE)
def job_stage_task(stage: str, ref: dict) -> dict:
    """Run (or finish) the job's stage; what is committed is not redone."""
    logger = get_run_logger()
    job = load_job(RunRef(**ref))
    with _core_logs_to(logger):
        summary = JOB_STAGES[stage](job)
    logger.info(summary.line())
    notes = "\n".join(f"- **{k}**: `{v}`" for k, v in summary.notes.items())
    for picture in summary.pictures:
        notes += "\n\n" + _png(job.store, *picture.split("/", 1), caption=picture)
    create_markdown_artifact(markdown=f"## {stage} of job {job.ref.run_id}\n\n{summary.line()}\n\n{notes}",
                             description=f"{stage} summary")
    for report in summary.reports:
        create_markdown_artifact(markdown=_inline_pictures(job.store, report), description=f"{stage} report")
    return asdict(summary)
