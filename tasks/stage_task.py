"""The Prefect task that runs one stage of one run, with progress and a summary in the UI.

Skipping finished work is the store's job (commit records), so tasks carry no Prefect result
cache: a re-run task asks the store what is pending.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from contextlib import contextmanager

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NONE

from synthclip_core.compute import progress
from synthclip_core.runs.lifecycle import load_run
from synthclip_core.runs.status import partition_table
from synthclip_core.stages.executor import execute
from synthclip_core.storage.store import RunRef
from tasks.failures import StageFailed, fails_cleanly


@contextmanager
def _prefect_progress(stage: str, min_interval: float = 2.0):
    artifact_id = create_progress_artifact(progress=0.0, description=f"{stage}: partitions done")
    last = [0.0]

    def listener(name: str, done: int, total: int) -> None:
        now = time.time()
        if name == stage and total and (now - last[0] >= min_interval or done == total):
            last[0] = now
            update_progress_artifact(artifact_id, progress=100.0 * done / total)

    progress.add_listener(listener)
    try:
        yield
    finally:
        progress.remove_listener(listener)


class _ToRunLogger(logging.Handler):
    """Forwards the core's ``synthclip`` log records (a followed Ray job's lines, training
    metrics) to the task run's logger, so they show in the UI and the CLI."""

    def __init__(self, run_logger):
        super().__init__(logging.INFO)
        self.run_logger = run_logger

    def emit(self, record: logging.LogRecord) -> None:
        self.run_logger.log(record.levelno, record.getMessage())


@contextmanager
def _core_logs_to(run_logger):
    core = logging.getLogger("synthclip")
    handler, level = _ToRunLogger(run_logger), core.level
    core.addHandler(handler)
    core.setLevel(logging.INFO)
    try:
        yield
    finally:
        core.removeHandler(handler)
        core.setLevel(level)


@task(name="run-stage", task_run_name="{stage}", cache_policy=NONE)
@fails_cleanly
def run_stage_task(stage: str, ref: dict) -> dict:
    """Run (or finish) one stage of a run or training job; outputs already committed are skipped."""
    logger = get_run_logger()
    run = load_run(RunRef(**ref))
    with _prefect_progress(stage), _core_logs_to(logger):
        summary = execute(run, stage)
    logger.info(summary.line())
    # a job's artifacts read "job train summary", "job eval report", so they never mix with a run's
    kind = "" if run.kind == "run" else f"{run.kind} "
    publish_summary(run.store, summary, f"{kind}{stage}", f"{stage} of {run.kind} {run.ref.run_id}" if kind else None)
    create_table_artifact(table=partition_table(run, stage), key=_key(f"{run.ref.run_id}-{stage}-partitions"),
                          description=f"{stage} partitions of {run.kind} {run.ref.run_id}: committed, pending, failed")
    publish_cost(run, logger)
    if summary.failures:  # the task run shows Failed, with the first error in its state message
        first = next(iter(sorted(summary.failures.items())))
        raise StageFailed(
            f"{stage}: {len(summary.failures)} output(s) failed, e.g. {first[0]}: {first[1]}; "
            f"fix the cause and run `synthclip resume {run.ref.run_id} --root {run.ref.root}`")
    return summary.shown()


def publish_summary(store, summary, label: str, heading: str | None = None) -> None:
    """A stage summary as UI artifacts: its line, notes, pictures (inline, so the UI shows them
    without access to the store), failed outputs, then each markdown report it wrote."""
    rows = "\n".join(f"| `{o}` | {e[:200]} |" for o, e in sorted(summary.failures.items()))
    notes = "\n".join(f"- **{k}**: `{json.dumps(v, default=str)[:1000]}`" for k, v in summary.notes.items())
    for picture in summary.pictures:
        notes += "\n\n" + _png(store, *picture.split("/", 1), caption=picture)
    create_markdown_artifact(
        markdown=f"## {heading or label}\n\n{summary.line()}, {summary.rows} rows\n\n{notes}\n\n"
        + (f"| failed output | error |\n| --- | --- |\n{rows}\n" if rows else ""),
        description=f"{label} summary",
    )
    for report in summary.reports:
        create_markdown_artifact(markdown=inline_pictures(store, report), description=f"{label} report")


def publish_cost(run, logger) -> None:
    """What the run has spent so far, per stage and against the plan (the ledger): one artifact
    whose versions stack up stage by stage. Bookkeeping only: a failure here is a warning."""
    from synthclip_core.planning.costs import markdown, planned_gpu_hours, run_cost

    try:
        try:
            planned = planned_gpu_hours(run) if run.kind == "run" else {}
        except Exception as exc:  # noqa: BLE001 (a plan that cannot be made leaves the column empty)
            logger.warning("cost: no plan to compare with: %s", exc)
            planned = {}
        create_markdown_artifact(markdown=f"## What {run.kind} {run.ref.run_id} has spent\n\n" + markdown(run_cost(run, planned=planned)),
                                 key=_key(f"{run.ref.run_id}-cost"), description=f"cost of {run.kind} {run.ref.run_id} so far")
    except Exception as exc:  # noqa: BLE001
        logger.warning("cost: could not publish the ledger: %s", exc)


def publish_headline(run) -> None:
    """What the finished run made and proved (the figures ``synthclip run`` ends with), as the
    flow's final artifact. Bookkeeping only: a failure here is a warning."""
    from synthclip_core.runs.headline import markdown

    try:
        create_markdown_artifact(markdown=markdown(run), key=_key(f"{run.ref.run_id}-headline"),
                                 description=f"what {run.kind} {run.ref.run_id} made and proved")
    except Exception as exc:  # noqa: BLE001
        get_run_logger().warning("headline: could not publish it: %s", exc)


def _key(text: str) -> str:
    """An artifact key (lowercase letters, digits, dashes): versions of it stack up in the UI."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:200]


def inline_pictures(store, report: str) -> str:
    """A stored markdown report with its relative PNG links replaced by the images themselves."""
    stage, output = report.split("/", 1)
    folder = output.rsplit("/", 1)[0] + "/" if "/" in output else ""

    def inline(match: re.Match) -> str:
        return _png(store, stage, folder + match.group(2), caption=match.group(1))

    return re.sub(r"!\[([^\]]*)\]\(([^):]+\.png)\)", inline, store.read_bytes(stage, output).decode())


def _png(store, stage: str, output: str, caption: str) -> str:
    """Markdown for a stored PNG, inline (a data URI), so the UI shows it without the store."""
    data = base64.b64encode(store.read_bytes(stage, output)).decode()
    return f"![{caption}](data:image/png;base64,{data})"
