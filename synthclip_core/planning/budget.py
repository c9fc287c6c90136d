"""Budgets: what a run may spend, held against its ledger before a stage starts and by its pools.

A run's budget is its config's ``budget`` until ``synthclip budget`` (or a continuing ``synthclip
run`` whose config names another one) writes ``_budget.json`` beside it: a budget is operational,
so raising it never changes what the run makes, and a resume goes on exactly where the budget
stopped it. A limit is never set below what the run (or the stage) has already spent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..config import Budget, Limits
from ..errors import BudgetExhausted, ConfigError
from ..storage.ledger import Spend, run_spend, total
from ..storage.store import BUDGET

UNITS = {"gpu_hours": "GPU-hours", "cpu_hours": "CPU-hours"}


def budget_of(run) -> Budget:
    """The budget in force: the run's ``_budget.json`` once set, else its config's."""
    try:
        return Budget.model_validate(json.loads(run.store.fs.cat_file(run.store.path(BUDGET))))
    except FileNotFoundError:
        return getattr(run.config, "budget", None) or Budget()


def set_budget(run, budget: Budget) -> Budget:
    """Make ``budget`` the run's, unless a limit it sets anew is below what is already spent (one
    line); a limit it keeps as it was may have been reached (raising one stage's limit while the
    run's is spent is allowed: the run's still stops the run)."""
    before = budget_of(run)
    spends = run_spend(run.store, run.names)
    for stage in budget.stages:
        if stage not in spends:
            raise ConfigError(f"budget.stages.{stage}: {run.kind} {run.ref.run_id} has no stage {stage!r} "
                              f"(it has {', '.join(run.names)})")
    for scope, limits, kept, spent in [("", budget, before, total(spends)),
                                       *((f"stages.{s}.", lim, before.stages.get(s, Limits()), spends[s])
                                         for s, lim in budget.stages.items())]:
        for unit, limit in limits.set().items():
            if limit != kept.set().get(unit) and limit < spent.hours(unit):
                raise ConfigError(f"budget.{scope}{unit} {limit:g} is below what {run.kind} {run.ref.run_id} has already "
                                  f"spent ({spent.hours(unit):.4f} {UNITS[unit]}): set at least that, or leave it unset")
    run.store.fs.pipe_file(run.store.path(BUDGET), budget.model_dump_json(indent=1, exclude_defaults=True).encode())
    return budget


@dataclass(frozen=True)
class Limit:
    field: str  # budget.gpu_hours, budget.stages.images.cpu_hours
    unit: str
    limit: float
    spent: float  # hours spent before the stage call began

    def what(self) -> str:
        return f"{self.spent:.4f} of its {self.limit:g} {UNITS[self.unit]} ({self.field})"


@dataclass(frozen=True)
class Guard:
    """A stage call's budget: the limits that apply to it and what was spent before the call."""

    run_id: str
    stage: str
    limits: tuple[Limit, ...]

    def check_start(self) -> None:
        """A stage does not start once a limit is reached."""
        for limit in self.limits:
            if limit.spent >= limit.limit:
                raise BudgetExhausted(f"budget: run {self.run_id} has spent {limit.what()}; {self.stage} does not start: "
                                      f"{self.raise_it(limit)}")

    def stops(self, gpu_s: float, cpu_s: float) -> tuple[Limit, float] | None:
        """The limit no further partition may pass, and the hours it would reach, when this call's
        pool has held ``gpu_s``/``cpu_s`` (one more partition's worth included); else None."""
        more = {"gpu_hours": gpu_s / 3600, "cpu_hours": cpu_s / 3600}
        for limit in self.limits:
            if limit.spent + more[limit.unit] > limit.limit:
                return limit, limit.spent + more[limit.unit]
        return None

    def stopped(self, why: tuple[Limit, float], left: int, planned: int) -> BudgetExhausted:
        """The one line of a stage its budget stopped, once what was in flight committed."""
        limit, reached = why
        return BudgetExhausted(
            f"budget: run {self.run_id} would pass its {limit.limit:g} {UNITS[limit.unit]} ({limit.field}) with one more "
            f"partition ({reached:.4f} counting it); {self.stage} stopped handing out partitions and let those in flight "
            f"commit: {left} of {planned} still to do; {self.raise_it(limit)}")

    def raise_it(self, limit: Limit) -> str:
        flag = f"--{limit.unit.replace('_', '-')}"
        scope = f" --stage {limit.field.split('.')[2]}" if limit.field.startswith("budget.stages.") else ""
        return f"raise it (synthclip budget {self.run_id} {flag} N{scope}) and resume"


def guard(run, stage: str) -> Guard | None:
    """The budget of ``stage``'s call, or None when the run has no limit that applies to it."""
    budget = budget_of(run)
    own = budget.stages.get(stage, Limits())
    if not budget.set() and not own.set():
        return None
    spends = run_spend(run.store, run.names)
    everything, this = total(spends), spends.get(stage, Spend())
    limits = [Limit(f"budget.{u}", u, v, everything.hours(u)) for u, v in budget.set().items()]
    limits += [Limit(f"budget.stages.{stage}.{u}", u, v, this.hours(u)) for u, v in own.set().items()]
    return Guard(run.ref.run_id, stage, tuple(limits))
