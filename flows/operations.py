"""``synthclip cost`` and ``synthclip budget``: what a long run has spent, and how far it may go."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from flows.console import RootOption, console, handled


def cost(
    run_id: str = typer.Argument(..., help="The run to account for."),
    root: Optional[str] = RootOption,
    prices: Optional[str] = typer.Option(None, "--prices", help="A price table (JSON with version, gpu_hour by type, "
                                         "cpu_hour); default: the built-in list prices."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Per stage: GPU-hours (by type) and CPU-hours spent, per 1,000 kept pairs, against the plan, and money."""
    with handled(debug):
        from synthclip_core.planning.costs import columns, planned_gpu_hours, rows, run_cost, summary
        from synthclip_core.planning.prices import load_prices
        from synthclip_core.runs.lifecycle import default_root, load_run
        from synthclip_core.storage.store import RunRef

        table_of_prices = load_prices(prices)  # a bad table is one line before any reading
        run = load_run(RunRef(root or default_root(), run_id))
        spent = run_cost(run, table_of_prices, planned_gpu_hours(run) if run.kind == "run" else {})
        if as_json:
            print(json.dumps(spent.as_dict(), indent=1))
            return
        out = Console(width=max(140, Console().width))
        table = Table(title=f"{run.kind} {run_id}: spent so far")
        for column in columns(spent):
            table.add_column(column, justify="left" if column in ("stage", "by type") else "right")
        for row in rows(spent):
            table.add_row(*row, style="bold" if row[0] == "all" else None)
        out.print(table)
        out.print(summary(spent), highlight=False)
        for note in spent.notes:
            out.print(f"  {note}", highlight=False)


def budget(
    run_id: str = typer.Argument(..., help="The run whose budget to show or set."),
    gpu_hours: Optional[float] = typer.Option(None, "--gpu-hours", help="GPU-hours it may spend (all types together)."),
    cpu_hours: Optional[float] = typer.Option(None, "--cpu-hours", help="CPU-hours it may spend."),
    stage: Optional[str] = typer.Option(None, "--stage", help="Set the limits of this stage instead of the run's."),
    root: Optional[str] = RootOption,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Show RUN_ID's budget against what it has spent, or set it (never below what is spent); then resume."""
    with handled(debug):
        from pydantic import ValidationError

        from synthclip_core.config import Budget
        from synthclip_core.errors import ConfigError
        from synthclip_core.planning.budget import UNITS, budget_of, set_budget
        from synthclip_core.runs.lifecycle import default_root, load_run
        from synthclip_core.storage.ledger import run_spend, total
        from synthclip_core.storage.store import RunRef

        run = load_run(RunRef(root or default_root(), run_id))
        current = budget_of(run)
        if gpu_hours is not None or cpu_hours is not None:
            given = {k: v for k, v in (("gpu_hours", gpu_hours), ("cpu_hours", cpu_hours)) if v is not None}
            data = current.model_dump()
            if stage is None:
                data.update(given)
            else:
                data["stages"][stage] = {**data["stages"].get(stage, {}), **given}
            try:
                current = Budget.model_validate(data)
            except ValidationError as exc:
                e = exc.errors()[0]
                raise ConfigError(f"budget.{'.'.join(str(p) for p in e['loc'])}: {e['msg'].lower()} (got {e.get('input')!r})") from None
            set_budget(run, current)
        spends = run_spend(run.store, run.names)
        rows = [("run", current.set(), total(spends))] + [(f"stage {s}", lim.set(), spends.get(s)) for s, lim in current.stages.items()]
        if not any(limits for _, limits, _ in rows):
            console.print(f"run {run_id} has no budget; spent so far: {total(spends).gpu_hours:.4f} GPU-hours, "
                          f"{total(spends).cpu_hours:.4f} CPU-hours", highlight=False)
        for scope, limits, spent in rows:
            for unit, limit in limits.items():
                console.print(f"{scope}: {spent.hours(unit):.4f} of {limit:g} {UNITS[unit]} spent "
                              f"({spent.hours(unit) / limit:.0%})", highlight=False)
