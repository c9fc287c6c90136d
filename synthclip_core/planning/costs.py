"""What a run cost: the ledger per stage, per 1,000 kept pairs, against the plan, in money.

Money is GPU-hours by accelerator type and CPU-hours at a price table (:mod:`.prices`); a figure
is only as good as its table, so every report names the table's version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..storage.ledger import Spend, run_spend, total
from .prices import PriceTable, load_prices


@dataclass
class StageCost:
    stage: str
    spend: Spend
    planned_gpu_hours: float | None  # None: the plan has no estimate for this stage
    money: float


@dataclass
class RunCost:
    run_id: str
    stages: list[StageCost]
    kept_pairs: int  # the training pairs the run made (its shards' samples, else its images)
    prices: PriceTable
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> Spend:
        return total({s.stage: s.spend for s in self.stages})

    @property
    def money(self) -> float:
        return sum(s.money for s in self.stages)

    def per_thousand(self, value: float) -> float:
        return value * 1000 / self.kept_pairs if self.kept_pairs else 0.0

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "kept_pairs": self.kept_pairs, "prices": self.prices.version,
                "currency": self.prices.currency, "money": round(self.money, 8),
                "stages": {s.stage: {**s.spend.as_dict(), "planned_gpu_hours": s.planned_gpu_hours, "money": round(s.money, 8)}
                           for s in self.stages}, "notes": self.notes}


def run_cost(run, prices: PriceTable | None = None, planned: dict[str, float] | None = None) -> RunCost:
    """The ledger of ``run`` per stage, priced; ``planned``: GPU-hours per stage from the plan."""
    prices = prices or load_prices()
    spends = run_spend(run.store, run.names)
    stages = [StageCost(name, spend, (planned or {}).get(name), prices.money(spend)) for name, spend in spends.items()]
    notes = []
    if not any(s.spend.gpu_s for s in stages) and not any(s.planned_gpu_hours for s in stages):
        notes.append("this run held no GPU, and the plan prices GPU work only: `synthclip plan CONFIG --rates-from "
                     f"{run.ref.run_id}` plans at this run's measured throughputs")
    if any(s.spend.gpu_s.get("unknown") for s in stages):
        notes.append("some GPU work ran where its type could not be read: priced at the table's default")
    return RunCost(run.ref.run_id, stages, kept_pairs(run), prices, notes)


def kept_pairs(run) -> int:
    """The pairs a run made to train on: its export's samples, else its rendered images so far."""
    for stage in ("shards", "images"):
        if run.has(stage):
            done = run.completion(stage)
            if done is not None:
                return done.rows
    if run.has("images"):
        return sum(r.get("rows", 0) for o, r in run.store.records("images").items() if o.startswith("part-"))
    return 0


def planned_gpu_hours(run) -> dict[str, float]:
    """``synthclip plan``'s GPU-hours per stage for the run's own config and counts."""
    from .estimates import plan_run

    concepts = run.completion("concepts") if run.has("concepts") else None
    bank = concepts.rows if concepts is not None else None
    if bank is None:
        from .sizing import bank_concepts

        bank = bank_concepts(run.config)
    return {s.stage: s.gpu_hours for s in plan_run(run.config, bank).stages}


def columns(cost: RunCost) -> tuple[str, ...]:
    return ("stage", "GPU-hours", "by type", "CPU-hours", "GPU-h / 1k pairs", "CPU-h / 1k pairs", "planned GPU-hours",
            "failed or lost", cost.prices.currency)


def rows(cost: RunCost) -> list[tuple[str, ...]]:
    """The cost table's cells, a row per stage and ``all`` last: what the CLI and markdown both show."""
    def row(name: str, spend: Spend, planned: float | None, money: float) -> tuple[str, ...]:
        types = ", ".join(f"{t} {v / 3600:.3f}" for t, v in sorted(spend.gpu_s.items())) or "-"
        return (name, f"{spend.gpu_hours:.3f}", types, f"{spend.cpu_hours:.4f}", f"{cost.per_thousand(spend.gpu_hours):.4f}",
                f"{cost.per_thousand(spend.cpu_hours):.4f}", "-" if planned is None else f"{planned:.3f}",
                f"{spend.wasted_share:.1%}", f"{money:,.4f}")

    out = [row(s.stage, s.spend, s.planned_gpu_hours, s.money) for s in cost.stages]
    return out + [row("all", cost.total, sum(s.planned_gpu_hours or 0 for s in cost.stages), cost.money)]


def summary(cost: RunCost) -> str:
    return f"{cost.kept_pairs:,} kept pairs; {cost.total.records:,} ledger records; prices: table {cost.prices.version} " \
           f"({cost.prices.currency})"


def markdown(cost: RunCost) -> str:
    """The cost table as markdown: the Prefect artifact's and the card's."""
    head = columns(cost)
    lines = ["| " + " | ".join(head) + " |", "| --- " * len(head) + "|"]
    lines += ["| " + " | ".join(f"**{c}**" if r[0] == "all" and c else c for c in r) + " |" for r in rows(cost)]
    return "\n".join(lines + ["", summary(cost), *[f"- {n}" for n in cost.notes]]) + "\n"
