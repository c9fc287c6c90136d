"""The scaling ladder as a Prefect flow: the rungs' training jobs on the Ray cluster, as many at
once as it can host, each resumable; then the study, with the report and its plots as artifacts.
``synthclip ladder RUN_ID`` runs it, and so does its deployment (from the UI, after a build)."""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NONE

from synthclip_core.compute.ray_runtime import ensure_ray
from synthclip_core.runs.api import run_all
from synthclip_core.runs.lifecycle import default_root
from synthclip_core.studies.ladder import DEFAULT_FRACTIONS, REPORT, STUDY, Ladder, Rung, open_ladder, rungs_at_once
from tasks.failures import fails_cleanly
from tasks.stage_task import inline_pictures


@task(name="ladder-rung", task_run_name="{rung.job_id}", cache_policy=NONE)
def train_rung(ladder: Ladder, rung: Rung) -> dict:
    """One rung: its training job created or continued, trained and evaluated (what is committed stays)."""
    run_all(ladder.job(rung))
    return ladder.point(rung)


@flow(name="ladder", flow_run_name="ladder {run_id}")
@fails_cleanly
def ladder_flow(run_id: str, root: str | None = None, fractions: list[float] | None = None, job: str | None = None,
                against: dict[str, str] | None = None, ladder_id: str | None = None, target: float | None = None,
                parallel: int | None = None) -> dict:
    """Train one recipe on nested subsets of RUN_ID's pairs (and of each source set against it),
    evaluate every model on the same data, and fit how each metric grows with pairs."""
    ladder = open_ladder(run_id, root or default_root(), tuple(fractions or DEFAULT_FRACTIONS), job, against, ladder_id)
    # Ray joined or started here, in the flow's thread: a local Ray's processes die with the thread
    # that starts them (Linux's parent-death signal is per thread), so never in a rung's thread
    ensure_ray()
    pending = ladder.pending()
    done, total = len(ladder.rungs) - len(pending), len(ladder.rungs)
    progress = create_progress_artifact(progress=100.0 * done / total, description=f"{ladder.ladder_id}: rungs finished")
    at_once = parallel or rungs_at_once(ladder)
    with ThreadPoolExecutor(max_workers=max(1, min(at_once, len(pending) or 1))) as pool:
        for future in [pool.submit(contextvars.copy_context().run, train_rung, ladder, rung) for rung in pending]:
            future.result()
            done += 1
            update_progress_artifact(progress, progress=100.0 * done / total)
    fit = ladder.write_study(target)
    points = [ladder.point(r) for r in ladder.rungs]
    create_table_artifact(table=[{"source": p["source"], "pairs": p["pairs"], "job": p["job_id"], **p["metrics"]}
                                 for p in points], description=f"{ladder.ladder_id}: rungs")
    create_markdown_artifact(markdown=inline_pictures(ladder.store, f"{STUDY}/{REPORT}"), description="ladder study")
    return {"ladder_id": ladder.ladder_id, "root": ladder.root, "trained": len(pending), "rungs": total,
            "verdicts": fit["verdicts"], "back_test": fit["back_test"], "report": ladder.store.uri(STUDY, REPORT)}
