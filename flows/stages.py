"""One Prefect flow per stage. Each takes a run id and its root, and runs only what is pending."""

from __future__ import annotations

from prefect import flow, tags

from synthclip_core.ray_runtime import ensure_ray
from synthclip_core.run import RunRef, default_root
from synthclip_core.stages.runner import NEEDS_RAY
from tasks.stage_task import StageFailed, run_stage_task

__all__ = ["STAGE_FLOWS", "StageFailed"]


def run_stage(stage: str, run_id: str, root: str | None) -> dict:
    """The stage's task, tagged with the run and stage; a failed output fails the task and the flow."""
    ref = RunRef(root or default_root(), run_id)
    if stage in NEEDS_RAY:
        ensure_ray()
    with tags(f"run:{run_id}", f"stage:{stage}"):
        return run_stage_task(stage, ref.as_dict())


@flow(name="concepts", flow_run_name="{run_id}: concepts")
def concepts_flow(run_id: str, root: str | None = None) -> dict:
    """Load, normalise and partition the concept bank."""
    return run_stage("concepts", run_id, root)


@flow(name="captions", flow_run_name="{run_id}: captions")
def captions_flow(run_id: str, root: str | None = None) -> dict:
    """Caption every pending concept partition on the LLM actor pool."""
    return run_stage("captions", run_id, root)


@flow(name="balance", flow_run_name="{run_id}: balance")
def balance_flow(run_id: str, root: str | None = None) -> dict:
    """Balance the captions over concepts (MetaCLIP curation) and fix the held-out split."""
    return run_stage("balanced", run_id, root)


@flow(name="render", flow_run_name="{run_id}: render")
def render_flow(run_id: str, root: str | None = None) -> dict:
    """Render every pending balanced partition on the diffusion actor pool."""
    return run_stage("images", run_id, root)


@flow(name="export", flow_run_name="{run_id}: export")
def export_flow(run_id: str, root: str | None = None) -> dict:
    """Write the training split as webdataset shards."""
    return run_stage("shards", run_id, root)


@flow(name="train", flow_run_name="{run_id}: train")
def train_flow(run_id: str, root: str | None = None) -> dict:
    """Train CLIP on the shards with Ray Train, resuming from the latest checkpoint."""
    return run_stage("train", run_id, root)


@flow(name="evaluate", flow_run_name="{run_id}: evaluate")
def evaluate_flow(run_id: str, root: str | None = None) -> dict:
    """Evaluate the final checkpoint on the held-out synthetic split."""
    return run_stage("eval", run_id, root)


STAGE_FLOWS = {
    "concepts": concepts_flow, "captions": captions_flow, "balanced": balance_flow,
    "images": render_flow, "shards": export_flow, "train": train_flow, "eval": evaluate_flow,
}
