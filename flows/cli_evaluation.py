"""The ``synthclip`` commands that evaluate and hand evaluation data on: ``eval`` (any open_clip
checkpoint), ``compare`` (models side by side) and ``export clip-benchmark``; ``flows.cli`` registers them."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from flows.console import RootOption, console, handled, progress_bars


def eval_checkpoint(
    checkpoint: str = typer.Argument(..., help="An open_clip checkpoint: a file (local or s3://) or local-dir:DIR."),
    task: str = typer.Option(..., "--task", help="zeroshot, retrieval or linear_probe."),
    data: str = typer.Option(..., "--data", help="The test data (class folders, Parquet or webdataset tars)."),
    name: Optional[str] = typer.Option(None, "--name", help="The dataset's name in the report (default: the folder name)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="open_clip architecture, if the checkpoint does not name it."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Class names: a file, or 'imagenet'; default the folder names."),
    templates: str = typer.Option("openai", "--templates", help="openai, simple, or a file of {} templates."),
    train_data: Optional[str] = typer.Option(None, "--train-data", help="Linear probe training data (default DATA/train)."),
    out: str = typer.Option("eval-report", "--out", help="Where report.json and report.md go (any fsspec URI)."),
    batch_size: int = typer.Option(64, "--batch-size"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda or cpu (default: cuda when present)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Evaluate any open_clip checkpoint: zero-shot, retrieval or a linear probe."""
    with handled(debug):
        import posixpath

        from synthclip_core.errors import ConfigError
        from synthclip_core.evaluation.config import EvalDataset

        try:
            dataset = EvalDataset(name=name or posixpath.basename(data.rstrip("/")) or data, task=task, path=data,
                                  train_path=train_data, classes=classes)
        except ValueError as exc:
            raise ConfigError(f"--task {task}: must be zeroshot, retrieval or linear_probe") from exc
        from synthclip_core.evaluation.benchmarks import check_dataset
        from synthclip_core.evaluation.templates import load_templates

        check_dataset(dataset)  # before any flow starts: one line for what the user can fix
        load_templates(templates)
        if not checkpoint.startswith("local-dir:"):
            import fsspec

            fs, path = fsspec.core.url_to_fs(checkpoint)
            if not fs.exists(path):
                raise ConfigError(f"checkpoint not found: {checkpoint}")
        from flows.evaluate import evaluate_checkpoint

        with progress_bars():
            report = evaluate_checkpoint(checkpoint=checkpoint, datasets=[dataset.model_dump()], out=out, arch=arch,
                                         templates=templates, batch_size=batch_size, device=device)
        table = Table(title=f"{report['arch']} {checkpoint}")
        for column in ("dataset", "task", "metric", "value", "samples"):
            table.add_column(column)
        for r in report["results"]:
            table.add_row(r["dataset"], r["task"], r["metric"], f"{r['value']:.4f}", str(r["samples"]))
        Console(width=max(120, Console().width)).print(table)
        skipped = sum(len(d["skipped"]) for d in report["details"])
        if skipped:
            console.print(f"[yellow]{skipped} unreadable image(s) skipped[/] (listed in {out}/report.md)")
        console.print(f"report: {out}/report.json, {out}/report.md", soft_wrap=True)


def compare(
    models: list[str] = typer.Argument(..., help="LABEL=MODEL, MODEL being run:ID (a run or job), a checkpoint, or local-dir:DIR."),
    datasets: Optional[str] = typer.Option(None, "--datasets",
                                           help="A YAML list of eval datasets (name, task, path, ...), as eval.datasets."),
    held_out_of: list[str] = typer.Option([], "--held-out-of", help="A run whose held-out synthetic split every model is "
                                          "evaluated on (repeatable): runs of other text-to-image models or settings, "
                                          "measured on the same data."),
    root: Optional[str] = RootOption,
    out: str = typer.Option("comparison", "--out", help="Where comparison.md and comparison.json go (any fsspec URI)."),
    templates: str = typer.Option("simple", "--templates", help="openai, simple, or a file of {} templates."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Evaluate several models on the same datasets (and runs' held-out splits) and print one side-by-side table."""
    with handled(debug):
        import yaml

        from flows.jobs import resolve_model
        from synthclip_core.errors import ConfigError
        from synthclip_core.evaluation.benchmarks import check_dataset
        from synthclip_core.evaluation.config import EvalDataset
        from synthclip_core.runs.lifecycle import default_root

        pairs = [m.split("=", 1) for m in models]
        if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
            raise ConfigError(f"models: expected LABEL=MODEL, got {' '.join(models)}")
        if not datasets and not held_out_of:
            raise ConfigError("compare: name what to evaluate on: --datasets FILE, --held-out-of RUN, or both")
        specs = []
        if datasets:
            try:
                specs = [EvalDataset.model_validate(d) for d in yaml.safe_load(open(datasets))]
            except (OSError, TypeError, ValueError, yaml.YAMLError) as exc:
                raise ConfigError(f"--datasets {datasets}: {' '.join(str(exc).split())[:300]}") from None
        for spec in specs:
            check_dataset(spec)
        root = root or default_root()
        for _, ref in pairs:
            resolve_model(ref, root)
        from flows.jobs import compare_models, held_out_run

        for run_id in held_out_of:
            held_out_run(run_id, root)
        with progress_bars():
            table = compare_models(models=dict(pairs), datasets=[d.model_dump() for d in specs], root=root, out=out,
                                   templates=templates, held_out_of=list(held_out_of))
        runs = any("differs" in row for row in table["rows"])
        view = Table(title="models side by side")
        for column in ("model", *(["differs from the first"] if runs else []), "started from", "trained on", *table["columns"]):
            view.add_column(column)
        for row in table["rows"]:
            view.add_row(row["model"], *([row.get("differs", "")] if runs else []), row["started_from"], row["trained_on"],
                         *[f"{row[c]:.4f}" if c in row else "" for c in table["columns"]])
        Console(width=max(160, Console().width)).print(view)
        console.print(f"comparison: {out}/comparison.md, {out}/comparison.json", soft_wrap=True)


def export_clip_benchmark(
    run_id: str = typer.Argument(..., help="The run whose evaluation sets to export."),
    out: str = typer.Option(..., "--out", help="Where the sets go, one folder each (any fsspec URI)."),
    root: Optional[str] = RootOption,
    per_shard: int = typer.Option(1000, "--per-shard", min=1, help="Samples per tar."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """The run's held-out split (zero-shot over its concepts, and retrieval) and its eval.datasets in
    CLIP_benchmark's webdataset layout, with the `clip_benchmark eval` command for each."""
    with handled(debug):
        from flows.evaluate import export_clip_benchmark as export
        from synthclip_core.runs.lifecycle import RunRef, default_root, load_run

        root = root or default_root()
        load_run(RunRef(root, run_id))  # a missing or unreadable run is one line, before any flow starts
        with progress_bars():
            result = export(run_id=run_id, out=out, root=root, per_shard=per_shard)
        for name, d in result["datasets"].items():
            skipped = f", {len(d['skipped'])} unreadable skipped" if d["skipped"] else ""
            console.print(f"  {name}: {d['samples']} samples ({d['task']}{skipped}) in {d['folder']}", soft_wrap=True)
        console.print("score a checkpoint on them (the run's own model shown):", soft_wrap=True)
        for command in result["commands"]:
            console.print(f"  {command}", soft_wrap=True, highlight=False, markup=False)
