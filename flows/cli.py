"""The ``synthclip`` command: a thin face over the flows.

    synthclip run configs/offline.yaml [--run-id ID] [--root URI]
    synthclip resume RUN_ID [--root URI]
    synthclip status RUN_ID [--root URI]
    synthclip models build-tiny
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Optional

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # the CLI shows rich progress instead
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from synthclip_core import progress as core_progress
from synthclip_core.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="SynthCLIP: CLIP on fully synthetic data.")
models_app = typer.Typer(no_args_is_help=True, help="Local models.")
app.add_typer(models_app, name="models")
console = Console(stderr=True)

RootOption = typer.Option(None, "--root", help="Storage root (any fsspec URI); default: the config's, or $SYNTHCLIP_ROOT, or ./runs.")


def _fail(message: str, code: int) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _handled(debug: bool):
    """User-fixable errors and stage failures as one line; tracebacks only with --debug."""
    from flows.stages import StageFailed
    from synthclip_core.stages.common import StageBlocked

    try:
        yield
    except typer.Exit:
        raise
    except UserError as exc:
        if debug:
            raise
        _fail(str(exc), 2)
    except (StageFailed, StageBlocked) as exc:
        if debug:
            raise
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted; committed outputs are kept, `synthclip resume` continues", 130)
    except Exception as exc:
        if debug:
            raise
        _fail(f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]} (re-run with --debug for the traceback)", 1)


@contextmanager
def _progress_bars():
    bars = Progress(TextColumn("[bold]{task.description:>9}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)
    tasks: dict[str, int] = {}

    def listener(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    core_progress.add_listener(listener)
    try:
        with bars:
            yield
    finally:
        core_progress.remove_listener(listener)


def _print_result(run_id: str, root: str, summaries: dict) -> None:
    from synthclip_core.run import RunRef

    store = RunRef(root, run_id).store()
    for stage, summary in summaries.items():
        console.print(f"  {stage:>9}: {summary['computed']} computed, {summary['skipped']} already committed", soft_wrap=True)
    console.print(f"[green]run[/] {run_id} is complete under {store.uri()}", soft_wrap=True)
    console.print(f"  checkpoint: {store.uri('train', 'model')} (open_clip local-dir; per epoch: "
                  f"{store.uri('train', 'checkpoints')})", soft_wrap=True)
    console.print(f"  report:     {store.uri('eval', 'report.md')}", soft_wrap=True)
    console.print(f"  pictures:   {store.uri('images', 'contact_sheet.png')}, {store.uri('balanced', 'histogram.png')}",
                  soft_wrap=True)


@app.command()
def run(
    config: str = typer.Argument(..., help="A run config, e.g. configs/offline.yaml."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Run id (default: <config name>-<UTC time>)."),
    root: Optional[str] = RootOption,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Run the whole pipeline for CONFIG (continuing RUN_ID if it exists with the same config)."""
    with _handled(debug):
        from synthclip_core.config import load_config
        from synthclip_core.preflight import preflight
        from synthclip_core.run import default_run_id

        cfg = load_config(config)
        run_id = run_id or default_run_id(cfg)
        root = root or cfg.root
        preflight(cfg, root)  # before any flow starts: one line for what the user can fix
        console.print(f"run [bold]{run_id}[/] under {root}")
        from flows.pipeline import build_dataset

        with _progress_bars():
            summaries = build_dataset(config=config, run_id=run_id, root=root)
        _print_result(run_id, root, summaries)


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="The run to continue."),
    root: Optional[str] = RootOption,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Recompute what is missing or failed in RUN_ID, stage by stage."""
    with _handled(debug):
        from synthclip_core.run import RunRef, default_root, load_run

        root = root or default_root()
        load_run(RunRef(root, run_id), verify=True)
        from flows.pipeline import resume_run

        with _progress_bars():
            summaries = resume_run(run_id=run_id, root=root)
        _print_result(run_id, root, summaries)


@app.command()
def status(
    run_id: str = typer.Argument(..., help="The run to describe."),
    root: Optional[str] = RootOption,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Per stage: outputs committed / pending / failed, rows, and lineage."""
    with _handled(debug):
        from synthclip_core.run import RunRef, default_root, load_run
        from synthclip_core.stages.status import run_status

        run = load_run(RunRef(root or default_root(), run_id))
        table = Table(title=f"run {run_id}")
        for column in ("stage", "committed", "pending", "failed", "rows", "fingerprint", "lineage"):
            table.add_column(column, justify="right" if column in {"committed", "pending", "failed", "rows"} else "left")
        statuses = run_status(run)
        for s in statuses:
            pending = "?" if s.pending is None else str(s.pending)
            table.add_row(s.stage, str(s.committed), pending, str(len(s.failed)), str(s.rows),
                          run.fingerprints.get(s.stage, "")[:8], s.lineage)
        Console(width=max(120, Console().width)).print(table)
        for s in statuses:
            for output, error in s.failed.items():
                console.print(f"[red]failed[/] {s.stage}/{output}: {error}", highlight=False)


@models_app.command("build-tiny")
def build_tiny(force: bool = typer.Option(False, "--force", help="Rebuild even if present.")) -> None:
    """Build the tiny offline models (LLM, Stable Diffusion) into $SYNTHCLIP_MODELS_DIR."""
    from synthclip_core.tiny_models import TINY_NAMES
    from synthclip_core.tiny_models import build_tiny as build

    for name in TINY_NAMES:
        path = build(name, force=force, log=lambda m: console.print(f"  {m}"))
        console.print(f"tiny/{name}: {path}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
