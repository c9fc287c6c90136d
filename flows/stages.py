"""One Prefect flow per stage of the pipeline, named as the stage is. Each takes a run id and its
root, and runs only what is pending.

The flows are made from ``synthclip_core.pipeline.PIPELINE``, so a new stage has its flow (and
its deployment, see ``flows/deploy.py``) without a line here. Each is a module attribute
``<stage>_flow``, which is what a deployment's entrypoint names (``flows/stages.py:captions_flow``).
"""

from __future__ import annotations

from prefect import Flow, flow, tags
from prefect.runtime import flow_run

from synthclip_core.pipeline import PIPELINE
from synthclip_core.runs import lease
from synthclip_core.runs.lifecycle import Run, continue_run, default_root
from synthclip_core.stages import lineage_events
from synthclip_core.stages.stage import Stage
from synthclip_core.storage.store import RunRef
from tasks.failures import StageFailed, fails_cleanly
from tasks.stage_task import publish_headline, run_stage_task

__all__ = ["STAGE_FLOWS", "StageFailed", "run_stages"]


def run_stages(run: Run) -> dict:
    """Every stage of the run, in order, each as its own flow run, holding the run's lease (one
    OpenLineage run around them)."""
    with lease.holding(run.store), lineage_events.run_call(run):
        summaries = {stage.name: STAGE_FLOWS[stage.name](run.ref.run_id, run.ref.root) for stage in run.stages}
    publish_headline(run)  # the flow's last artifact: what the run made and proved
    return summaries


def stage_flow(stage: Stage) -> Flow:
    def run_one(run_id: str, root: str | None = None) -> dict:
        ref = RunRef(root or default_root(), run_id)
        if flow_run.get_parent_flow_run_id() is None:  # on its own (a deployment): checked as `resume` checks
            continue_run(ref)
        # the stage's task, tagged with the run and stage; a failed output fails the task and the flow
        with tags(f"run:{run_id}", f"stage:{stage.name}"):
            return run_stage_task(stage.name, ref.as_dict())

    run_one.__doc__ = stage.description
    run_one.__name__ = run_one.__qualname__ = f"{stage.name}_flow"
    return flow(fails_cleanly(run_one), name=stage.name, flow_run_name="{run_id}: " + stage.name,
                description=stage.description)


STAGE_FLOWS: dict[str, Flow] = {stage.name: stage_flow(stage) for stage in PIPELINE}
globals().update({f"{name}_flow": f for name, f in STAGE_FLOWS.items()})
