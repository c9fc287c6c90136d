"""The end-to-end flow: every stage of a run, in order, each as a subflow.

``build_dataset`` starts (or continues) a run from a config; ``resume_run`` continues a run from
its stored ``run.json``; ``resume_latest`` continues the newest unfinished run under a root. All
recompute only what is missing or failed.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from synthclip_core.config import load_config
from synthclip_core.fingerprint import STAGES
from synthclip_core.preflight import preflight
from synthclip_core.run import (
    RunRef,
    create_or_open,
    default_root,
    fork_run,
    load_run,
    unfinished_runs,
)
from synthclip_core.store import check_root_writable

from .stages import STAGE_FLOWS


def run_all_stages(ref: RunRef) -> dict:
    return {stage: STAGE_FLOWS[stage](ref.run_id, ref.root) for stage in STAGES}


def _build_run_name() -> str:
    from prefect.runtime import flow_run

    return flow_run.parameters.get("run_id") or "new run"


def scheduled_run_id(name: str) -> str:
    """``<preset>-<scheduled time>``: a scheduled flow run's own time, so a retry of that flow run
    continues the same run instead of starting another."""
    from prefect.runtime import flow_run

    return f"{name}-{flow_run.scheduled_start_time.in_timezone('UTC').strftime('%Y%m%d-%H%M%S')}"


@flow(name="build-dataset", flow_run_name=_build_run_name)
def build_dataset(config: str = "configs/offline.yaml", run_id: str | None = None, root: str | None = None,
                  fork: bool = False) -> dict:
    """Run the whole SynthCLIP pipeline for a config: concepts to evaluation report.

    With ``fork``, a run id that holds a run of another config is not refused: the new config runs
    as ``<run_id>-fork-<hash>``, starting from copies of the stages it shares with that run.
    """
    cfg = load_config(config)
    ref = RunRef(root or cfg.root, run_id or scheduled_run_id(cfg.name))
    preflight(cfg, ref.root)
    if fork:
        ref = fork_run(cfg, ref)
        get_run_logger().info("running as %s", ref.run_id)
    create_or_open(cfg, ref)
    return run_all_stages(ref)


@flow(name="resume", flow_run_name="resume {run_id}")
def resume_run(run_id: str, root: str | None = None) -> dict:
    """Continue a run: recompute only outputs that are missing or failed, stage by stage."""
    run = load_run(RunRef(root or default_root(), run_id), verify=True)
    check_root_writable(run.ref.root)
    return run_all_stages(run.ref)


@flow(name="resume-latest", flow_run_name="resume the latest unfinished run")
def resume_latest(root: str | None = None) -> dict:
    """Continue the newest run under ``root`` whose evaluation report is not committed yet."""
    root = root or default_root()
    pending = unfinished_runs(root)
    if not pending:
        return {}
    return resume_run(run_id=pending[-1], root=root)
