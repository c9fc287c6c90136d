"""A failed or crashed build resumes itself: ``synthclip deploy`` registers an automation on the
Prefect server that, when a ``build-dataset`` (or ``auto-resume``) flow run ends Failed or Crashed,
runs the ``auto-resume`` deployment for it. That flow finds the platform run the failed flow run
worked on (its ``run:ID`` tag) and resumes it, at most ``max_attempts`` times in a row; then it
gives up, says so, and leaves the run as it is for a person to look at.

The resume runs where the build ran: a new flow run of the deployment that built it (the same
work pool, image, job variables and concurrency limit; a paper-scale build is resumed on the
Kubernetes pool, queued behind the next scheduled build rather than beside it), with the build's
parameters and its run id. It is not started while another flow run holds the run's lease
(``runs/lease.py``). A build that ran without a deployment is resumed in this flow's process.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.deployments import run_deployment

from synthclip_core.runs.lease import describe, live_holder
from synthclip_core.storage.store import RunRef

from .run_tags import ATTEMPT_TAG, ROOT_TAG, RUN_TAG, tag_flow_run, tagged

AUTOMATION = "synthclip: resume failed builds"
DEPLOYMENT = "auto-resume/auto-resume"
WATCHED_FLOWS = ("build-dataset", "auto-resume")  # a failed auto-resume is the next attempt's trigger


@flow(name="auto-resume", flow_run_name="auto-resume after {failed_flow_run}")
def auto_resume(failed_flow_run: str, max_attempts: int = 3) -> dict:
    """Resume the run of a failed build (or of a failed auto-resume: the next attempt)."""
    from prefect.client.orchestration import get_client

    from flows.pipeline import resume_run

    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        failed = client.read_flow_run(failed_flow_run)
    run_id = tagged(failed.tags, RUN_TAG)
    if run_id is None:
        logger.warning("flow run %s failed before its run began: nothing to resume", failed.name)
        return {"resumed": None, "reason": "failed before its run began"}
    attempt = int(tagged(failed.tags, ATTEMPT_TAG) or 0) + 1
    root = tagged(failed.tags, ROOT_TAG)
    if attempt > max_attempts:
        note = (f"Gave up on run `{run_id}` after {max_attempts} automatic resumes; the last failure: "
                f"{failed.state.message if failed.state else 'unknown'}. Fix the cause, then `synthclip resume {run_id} "
                f"--root {root}`.")
        logger.error(note)
        create_markdown_artifact(markdown=note, description=f"auto-resume of {run_id} gave up")
        return {"resumed": None, "run_id": run_id, "reason": f"gave up after {max_attempts} attempts"}
    tag_flow_run(run_id, root, attempt)
    holder = live_holder(RunRef(root, run_id).store(), ended_flow_run=str(failed.id))
    if holder is not None:
        logger.warning("not resuming run %s: %s is writing it", run_id, describe(holder))
        return {"resumed": None, "run_id": run_id, "reason": f"held by {describe(holder)}"}
    logger.info("resuming run %s under %s (automatic attempt %d of %d) after %s failed", run_id, root, attempt,
                max_attempts, failed.name)
    if failed.deployment_id is None:  # built without a deployment: nowhere else to run it
        return {"resumed": run_id, "attempt": attempt, "stages": resume_run(run_id=run_id, root=root)}
    again = run_deployment(failed.deployment_id, parameters={**failed.parameters, "run_id": run_id, "root": root},
                           tags=[RUN_TAG + run_id, ROOT_TAG + root, f"{ATTEMPT_TAG}{attempt}"], timeout=0,
                           as_subflow=False, idempotency_key=f"auto-resume-of-{failed.id}")
    logger.info("resume of run %s queued as flow run %s of the deployment that built it", run_id, again.name)
    return {"resumed": run_id, "attempt": attempt, "flow_run": str(again.id), "deployment": str(failed.deployment_id)}


def ensure_automation(max_attempts: int) -> str:
    """Create or replace the automation that runs ``auto-resume`` for failed builds; returns its name.
    ``max_attempts`` 0 removes it."""
    from prefect.automations import Automation, EventTrigger, Posture, ResourceSpecification, RunDeployment
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        for existing in client.read_automations_by_name(AUTOMATION):
            client.delete_automation(existing.id)
    if max_attempts <= 0:
        return AUTOMATION
    Automation(
        name=AUTOMATION,
        description=f"When a build fails or crashes, resume its run (at most {max_attempts} times in a row).",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match_related=ResourceSpecification({"prefect.resource.role": "flow",
                                                 "prefect.resource.name": list(WATCHED_FLOWS)}),
            posture=Posture.Reactive, threshold=1),
        actions=[RunDeployment(source="selected", deployment_id=deployment.id,
                               parameters={"failed_flow_run": "{{ flow_run.id | string }}", "max_attempts": max_attempts})],
    ).create()
    return AUTOMATION
