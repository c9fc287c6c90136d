"""``synthclip plan`` and ``synthclip doctor``: what a run will cost, and whether this machine can
run it, before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from flows.console import RootOption, handled


def plan(
    config: str = typer.Argument(..., help="A run config, e.g. configs/synthci-1node.yaml."),
    rates_from: Optional[str] = typer.Option(None, "--rates-from", help="A run whose balancing and rendering are done: "
                                             "size and price by its shares and bytes, not the config's rates."),
    root: Optional[str] = RootOption,
    bank_size: Optional[int] = typer.Option(None, "--bank-size", help="Concepts in the bank, when it cannot be read here."),
    save_rates: Optional[str] = typer.Option(None, "--save-rates", help="Write the rates used (with --rates-from: that run's) "
                                             "to this JSON file, for a config's `rates`."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """What a run of CONFIG will do, before any work: counts, partitions, Ray asks, GPU-hours, bytes."""
    with handled(debug):
        from synthclip_core.errors import ConceptBankError
        from synthclip_core.pipeline import load_config
        from synthclip_core.planning.estimates import plan_run, wall_hours
        from synthclip_core.planning.sizing import bank_concepts, measured_rates
        from synthclip_core.runs.lifecycle import default_root, load_run
        from synthclip_core.storage.store import RunRef

        cfg = load_config(config)
        if bank_size is None:
            try:
                bank_size = bank_concepts(cfg)
            except ConceptBankError as exc:
                raise ConceptBankError(f"{exc}; or plan without it: --bank-size N") from None
        rates = measured_rates(load_run(RunRef(root or default_root(), rates_from))) if rates_from else None
        planned = plan_run(cfg, bank_size, rates)
        if save_rates:
            Path(save_rates).write_text(planned.rates.model_dump_json(indent=2) + "\n")
        wanted = f"target {planned.target_pairs:,} pairs: " if planned.target_pairs else ""
        out = Console(width=max(120, Console().width))
        out.print(f"[bold]{planned.name}[/]: {wanted}{planned.concepts:,} concepts x {planned.per_concept} captions "
                  f"-> {planned.train_pairs:,} training pairs ({planned.eval_pairs:,} held out)", highlight=False)
        table = Table()
        numbers = ("outputs", "rows", "GPU-hours", "hours on its GPUs", "stored")
        for column in ("stage", *numbers[:2], "Ray asks", *numbers[2:], "rests on"):
            table.add_column(column, justify="right" if column in numbers else "left", no_wrap=column != "rests on")
        for s in planned.stages:
            table.add_row(s.stage, f"{s.outputs:,}", f"{s.rows:,}", "\n".join(s.pools) or "(in the flow)",
                          f"{s.gpu_hours:,.1f}" if s.gpus else "-", f"{wall_hours(s):,.1f}" if s.gpus else "-",
                          _bytes(s.stored_bytes), s.basis)
        out.print(table)
        out.print(f"in all: {planned.gpu_hours:,.0f} GPU-hours, {_bytes(planned.stored_bytes)} under the root "
                  f"({'an object store' if '://' in (root or cfg.root) and not (root or cfg.root).startswith('file://') else 'disk'})",
                  highlight=False)
        for note in planned.notes:
            out.print(f"  {note}", highlight=False)


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return ""


def doctor(
    config: Optional[str] = typer.Argument(None, help="A run config to check this machine against (default: the machine alone)."),
    root: Optional[str] = RootOption,
    bank_size: Optional[int] = typer.Option(None, "--bank-size", help="Concepts in the bank, when it cannot be read here."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Whether this machine can run CONFIG: GPUs, CUDA and NCCL, vLLM, hub access, disk, Ray resources."""
    with handled(debug):
        from synthclip_core.pipeline import load_config
        from synthclip_core.planning.doctor import run_checks

        cfg = load_config(config) if config else None
        marks = {"ok": "[green]  ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]   -[/]"}
        checks = run_checks(cfg, root, bank_size)
        out = Console()
        for check in checks:  # one line each, never wrapped: easy to read, grep and paste into an issue
            out.print(f"{marks[check.state]}  [bold]{check.name}[/]: {check.detail}", soft_wrap=True, highlight=False)
        failed = [c.name for c in checks if c.state == "fail"]
        if failed:
            out.print(f"[bold red]{len(failed)} check(s) failed[/]: {', '.join(failed)}", highlight=False)
            raise typer.Exit(1)
