"""What every ``synthclip`` command shares: the error console, the --root option, progress bars,
and the rule that a user-fixable error is one line and a non-zero exit, never a traceback (unless
--debug)."""

from __future__ import annotations

from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from synthclip_core.compute import progress as core_progress
from synthclip_core.errors import UserError

console = Console(stderr=True)

RootOption = typer.Option(None, "--root", help="Storage root (any fsspec URI); default: the config's, or $SYNTHCLIP_ROOT, or ./runs.")


def fail(message: str, code: int) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def handled(debug: bool):
    """User-fixable errors and stage failures as one line; tracebacks only with --debug."""
    from flows.stages import StageFailed
    from synthclip_core.stages.stage import StageBlocked

    try:
        yield
    except typer.Exit:
        raise
    except UserError as exc:
        if debug:
            raise
        fail(str(exc), 2)
    except (StageFailed, StageBlocked) as exc:
        if debug:
            raise
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted; committed outputs are kept, `synthclip resume` continues", 130)
    except Exception as exc:
        if debug:
            raise
        fail(f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]} (re-run with --debug for the traceback)", 1)


@contextmanager
def progress_bars():
    """Rich bars for the core's progress events while a command runs."""
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
