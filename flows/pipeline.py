"""The end-to-end flow: every stage of a run, in order, each as a subflow.

``build_dataset`` starts (or continues) a run from a config; ``resume_run`` continues a run from
its stored ``run.json``. Both recompute only what is missing or failed.
"""

from __future__ import annotations

from prefect import flow

from synthclip_core.config import load_config
from synthclip_core.fingerprint import STAGES
from synthclip_core.preflight import preflight
from synthclip_core.run import (
    RunRef,
    create_or_open,
    default_root,
    default_run_id,
    load_run,
)

from .stages import STAGE_FLOWS


def run_all_stages(ref: RunRef) -> dict:
    return {stage: STAGE_FLOWS[stage](ref.run_id, ref.root) for stage in STAGES}


def _build_run_name() -> str:
    from prefect.runtime import flow_run

    return flow_run.parameters.get("run_id") or "new run"


@flow(name="build-dataset", flow_run_name=_build_run_name)
def build_dataset(config: str = "configs/offline.yaml", run_id: str | None = None, root: str | None = None) -> dict:
    """Run the whole SynthCLIP pipeline for a config: concepts to evaluation report."""
    cfg = load_config(config)
    ref = RunRef(root or cfg.root, run_id or default_run_id(cfg))
    preflight(cfg, ref.root)
    create_or_open(cfg, ref)
    return run_all_stages(ref)


@flow(name="resume", flow_run_name="resume {run_id}")
def resume_run(run_id: str, root: str | None = None) -> dict:
    """Continue a run: recompute only outputs that are missing or failed, stage by stage."""
    run = load_run(RunRef(root or default_root(), run_id), verify=True)
    return run_all_stages(run.ref)
