"""The Prefect task that runs one stage (train or eval) of a training job, with its summary in the UI."""

from __future__ import annotations

from dataclasses import asdict

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from synthclip_core.jobs import evaluate_job, load_job, train_job
from synthclip_core.run import RunRef
from tasks.stage_task import _core_logs_to, publish_summary

JOB_STAGES = {"train": train_job, "eval": evaluate_job}


@task(name="job-stage", task_run_name="{stage}", cache_policy=NONE)
def job_stage_task(stage: str, ref: dict) -> dict:
    """Run (or finish) the job's stage; what is committed is not redone."""
    logger = get_run_logger()
    job = load_job(RunRef(**ref))
    with _core_logs_to(logger):
        summary = JOB_STAGES[stage](job)
    logger.info(summary.line())
    publish_summary(job.store, summary, f"job {stage}", f"{stage} of job {job.ref.run_id}")  # "job eval report", apart from runs'
    return asdict(summary)
