"""The end-to-end flows: every stage of a run, in order, each as a subflow.

``build_dataset`` starts (or continues) a run from a config; ``resume_run`` continues a run from
its stored ``run.json``; ``resume_latest`` continues the newest unfinished run under a root;
``pipeline`` runs the stages of a run a command has already opened and checked (the CLI's). All
recompute only what is missing or failed, and each checks the run once, before any stage.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from synthclip_core.pipeline import load_config
from synthclip_core.runs.lifecycle import continue_run, default_root, load_run, open_run, runs_under
from synthclip_core.storage.store import RunRef
from tasks.failures import fails_cleanly

from .run_tags import tag_flow_run
from .stages import run_stages


def _build_run_name() -> str:
    from prefect.runtime import flow_run

    return flow_run.parameters.get("run_id") or "new run"


def scheduled_run_id(name: str) -> str:
    """``<preset>-<scheduled time>``: a scheduled flow run's own time, so a retry of that flow run
    continues the same run instead of starting another."""
    from prefect.runtime import flow_run

    return f"{name}-{flow_run.scheduled_start_time.in_timezone('UTC').strftime('%Y%m%d-%H%M%S')}"


@flow(name="build-dataset", flow_run_name=_build_run_name)
@fails_cleanly
def build_dataset(config: str = "configs/offline.yaml", run_id: str | None = None, root: str | None = None,
                  fork: bool = False) -> dict:
    """Run the whole SynthCLIP pipeline for a config: concepts to evaluation report.

    With ``fork``, a run id that holds a run of another config is not refused: the new config runs
    as ``<run_id>-fork-<hash>``, starting from copies of the stages it shares with that run.
    """
    cfg = load_config(config)
    ref = RunRef(root or cfg.root, run_id or scheduled_run_id(cfg.name))
    run = open_run(cfg, ref, fork=fork)
    tag_flow_run(run.ref.run_id, run.ref.root)  # what an automatic resume of this flow run resumes
    if run.ref.run_id != ref.run_id:
        get_run_logger().info("running as %s", run.ref.run_id)
    if run.ignored:
        get_run_logger().warning("continuing %s with the settings it began with; not taken from %s: %s",
                                 run.ref.run_id, config, "; ".join(run.ignored))
    return run_stages(run)


@flow(name="resume", flow_run_name="resume {run_id}")
@fails_cleanly
def resume_run(run_id: str, root: str | None = None) -> dict:
    """Continue a run: recompute only outputs that are missing or failed, stage by stage."""
    return run_stages(continue_run(RunRef(root or default_root(), run_id)))


@flow(name="resume-latest", flow_run_name="resume the latest unfinished run")
@fails_cleanly
def resume_latest(root: str | None = None) -> dict:
    """Continue the newest run under ``root`` whose evaluation report is not committed yet and that
    no live writer holds (its lease); runs that cannot be read are listed and skipped."""
    root = root or default_root()
    runs = runs_under(root)
    for run_id, why in sorted(runs.damaged.items()):
        get_run_logger().warning("skipping run %s under %s: it cannot be read (%s)", run_id, root, why)
    for run_id, who in sorted(runs.held.items()):
        get_run_logger().info("leaving run %s alone: %s is writing it", run_id, who)
    if not runs.free:
        return {}
    return resume_run(run_id=runs.free[-1], root=root)


@flow(name="pipeline", flow_run_name="{run_id}")
@fails_cleanly
def pipeline(run_id: str, root: str) -> dict:
    """Every stage of a run or training job that its command has opened and checked already."""
    return run_stages(load_run(RunRef(root, run_id)))
