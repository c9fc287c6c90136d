"""Evaluate any open_clip checkpoint as a Prefect flow: the report as artifacts in the UI."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from synthclip_core.evaluation.config import EvalDataset
from synthclip_core.evaluation.external import evaluate_checkpoint as evaluate
from synthclip_core.evaluation.report import render_markdown


@task(name="evaluate", task_run_name="{checkpoint}", cache_policy=NONE)
def evaluate_task(checkpoint: str, datasets: list[dict], out: str, arch: str | None, templates: str,
                  batch_size: int, device: str | None) -> dict:
    report = evaluate(checkpoint, [EvalDataset.model_validate(d) for d in datasets], out, arch, templates,
                      batch_size, device)
    create_table_artifact(table=[{k: r[k] for k in ("dataset", "task", "metric", "value", "samples")} for r in report["results"]],
                          key=None, description=f"evaluation of {checkpoint}")
    create_markdown_artifact(markdown=render_markdown(report, f"Evaluation of `{checkpoint}`"), description="evaluation report")
    return report


@flow(name="evaluate-checkpoint", flow_run_name="evaluate {checkpoint}")
def evaluate_checkpoint(checkpoint: str, datasets: list[dict], out: str = "eval-report", arch: str | None = None,
                        templates: str = "openai", batch_size: int = 64, device: str | None = None) -> dict:
    """Zero-shot, retrieval or linear probe of any open_clip checkpoint (path, s3:// or local-dir:)."""
    return evaluate_task(checkpoint, datasets, out, arch, templates, batch_size, device)


@flow(name="export-clip-benchmark", flow_run_name="clip_benchmark sets of {run_id}")
def export_clip_benchmark(run_id: str, out: str, root: str | None = None, per_shard: int = 1000) -> dict:
    """Write a run's evaluation sets (its held-out split, and ``eval.datasets``) in CLIP_benchmark's
    webdataset layout under ``out``; the commands that score a checkpoint on them are attached."""
    from synthclip_core.compute import progress
    from synthclip_core.runs.clip_benchmark_export import clip_benchmark_commands, export_run
    from synthclip_core.runs.lifecycle import RunRef, default_root, load_run

    run = load_run(RunRef(root or default_root(), run_id))
    exported = export_run(run, out, per_shard, advance=progress.report)
    create_table_artifact(table=[{"dataset": name, "task": d["task"], "samples": d["samples"], "skipped": len(d["skipped"]),
                                  "folder": d["folder"]} for name, d in exported.items()],
                          description=f"CLIP_benchmark sets of {run_id}")
    commands = clip_benchmark_commands(exported, run.store.uri("train", "model"))
    create_markdown_artifact(markdown="Score any checkpoint on them:\n\n" + "".join(f"    {c}\n\n" for c in commands),
                             description="clip_benchmark commands")
    return {"datasets": exported, "commands": commands}
