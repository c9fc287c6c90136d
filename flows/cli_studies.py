"""The ``synthclip ladder`` commands: climb a scaling ladder on a run, or fit a curve to any table
of (pairs, value) points; ``flows.cli`` registers them."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from flows.console import RootOption, console, handled, progress_bars


class _RunByDefault(TyperGroup):
    """``synthclip ladder RUN_ID ...`` means ``synthclip ladder run RUN_ID ...``."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


ladder_app = typer.Typer(cls=_RunByDefault, no_args_is_help=True, help="Scaling ladders: how a metric grows with pairs.")


def _against(values: list[str]) -> dict[str, str]:
    from synthclip_core.errors import ConfigError

    pairs = [v.split("=", 1) for v in values]
    if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        raise ConfigError(f"--against: expected NAME=SOURCE, got {' '.join(values)}")
    return dict(pairs)


def _fractions(value: str) -> tuple[float, ...]:
    from synthclip_core.errors import ConfigError

    try:
        return tuple(float(f) for f in value.split(",") if f.strip())
    except ValueError:
        raise ConfigError(f"--fractions {value}: expected numbers separated by commas, e.g. 0.125,0.25,0.5,1") from None


@ladder_app.command("run")
def climb(
    run_id: str = typer.Argument(..., help="The synthetic run whose pairs the ladder climbs."),
    root: Optional[str] = RootOption,
    fractions: str = typer.Option("0.125,0.25,0.5,1", "--fractions", help="Shares of the run's training pairs, one rung each."),
    job: Optional[str] = typer.Option(None, "--job", help="A training job preset whose train section is the recipe "
                                      "(default: the run's own)."),
    against: list[str] = typer.Option([], "--against", help="NAME=SOURCE: the same ladder on another training source "
                                      "(webdataset tars, or run:ID), at the same sizes (repeatable)."),
    ladder_id: Optional[str] = typer.Option(None, "--ladder-id", help="The ladder's id (default: from the run and the "
                                            "options, so the same command continues it)."),
    target: Optional[float] = typer.Option(None, "--target", help="A value of the headline metric: the pairs it needs."),
    parallel: Optional[int] = typer.Option(None, "--parallel", min=1, help="Rungs trained at once (default: as many as "
                                           "the Ray cluster hosts)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Train one recipe on nested subsets of RUN_ID's pairs, evaluate each model on the same data, and fit the curve."""
    with handled(debug):
        from synthclip_core.runs.lifecycle import default_root
        from synthclip_core.studies.ladder import open_ladder

        root = root or default_root()
        chosen, others = _fractions(fractions), _against(against)
        ladder = open_ladder(run_id, root, chosen, job, others, ladder_id)  # one line for what the user can fix
        console.print(f"ladder [bold]{ladder.ladder_id}[/]: {len(ladder.rungs)} rungs, {len(ladder.pending())} to train",
                      soft_wrap=True)
        from flows.ladder import ladder_flow

        with progress_bars():
            result = ladder_flow(run_id=run_id, root=root, fractions=list(chosen), job=job, against=others,
                                 ladder_id=ladder.ladder_id, target=target, parallel=parallel)
        _print_study(ladder, result)


def _print_study(ladder, result: dict) -> None:
    points = [ladder.point(r) for r in ladder.rungs]
    metrics = sorted({m for p in points for m in p["metrics"]})[:6]
    view = Table(title=f"ladder {ladder.ladder_id}")
    for column in ("source", "pairs", *metrics):
        view.add_column(column)
    for p in points:
        view.add_row(p["source"], str(p["pairs"]), *[f"{p['metrics'].get(m, float('nan')):.4f}" for m in metrics])
    Console(width=max(140, Console().width)).print(view)
    for v in result["verdicts"]:
        if "error" not in v:
            lo, hi = v["interval"]
            console.print(f"{v['metric']} at {v['pairs']} pairs: {v['predicted']:.4f} ({lo:.4f} to {hi:.4f}), {v['formula']}",
                          soft_wrap=True)
    if test := result["back_test"]:
        console.print(f"the largest rung from the smaller ones: predicted {test['predicted']:.4f}, measured "
                      f"{test['measured']:.4f} (error {test['error']:+.4f})", soft_wrap=True)
    console.print(f"study: {result['report']}", soft_wrap=True)


@ladder_app.command("status")
def status(
    ladder_id: str = typer.Argument(..., help="The ladder (its id is printed when it starts)."),
    root: Optional[str] = RootOption,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Each rung's state, and where the study is once it is written."""
    with handled(debug):
        from synthclip_core.runs.lifecycle import default_root
        from synthclip_core.studies.ladder import REPORT, STUDY, load_ladder

        ladder = load_ladder(ladder_id, root or default_root())
        view = Table(title=f"ladder {ladder.ladder_id} on run {ladder.spec.run_id}")
        for column in ("source", "pairs", "state", "job"):
            view.add_column(column)
        for row in ladder.status():
            view.add_row(row["source"], str(row["pairs"]), row["state"], row["job_id"])
        Console(width=max(140, Console().width)).print(view)
        written = ladder.committed_study() is not None
        console.print(f"study: {ladder.store.uri(STUDY, REPORT) if written else 'not written yet'}", soft_wrap=True)


@ladder_app.command("fit")
def fit_points(
    points: str = typer.Argument(..., help="A CSV with the columns pairs,value (any fsspec URI)."),
    predict: list[float] = typer.Option([], "--predict", help="Pairs at which to predict the value (repeatable)."),
    target: Optional[float] = typer.Option(None, "--target", help="A value: the pairs the curve needs to reach it."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Fit how a value grows with pairs to any table of points (yours, or published ones)."""
    with handled(debug):
        import fsspec

        from synthclip_core.errors import ConfigError
        from synthclip_core.studies.scaling import fit_curve, read_points

        try:
            with fsspec.open(points, "rt") as handle:
                text = handle.read()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{points}: cannot be read ({type(exc).__name__}: {exc})") from None
        curve = fit_curve(read_points(text, points))
        errors = ", ".join(f"{form} {error:.4g}" for form, error in curve.alternatives.items())
        print(f"curve: {curve.describe()} ({curve.form}; leave-one-out error {errors})")
        for pairs in predict:
            lo, hi = curve.interval_at(pairs)
            print(f"at {pairs:g} pairs: {curve.value_at(pairs):.4g} ({lo:.4g} to {hi:.4g})")
        if target is not None:
            needed = curve.pairs_for(target)
            print(f"{target:g} needs " + (f"about {needed:.4g} pairs" if needed else "more than the curve ever reaches"))
