"""What a run cost: the ledger per stage, per 1,000 kept pairs, against the plan, in money.

Money is GPU-hours by accelerator type and CPU-hours at a *price table*: a versioned JSON file of
prices per GPU-hour (by type) and per CPU-hour. The built-in table is a list-price snapshot named
by its version; a user's own file (their contract, their spot prices) replaces it. A figure is only
as good as its table, so every report names the table's version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources as package_files
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError
from ..storage.ledger import Spend, run_spend, total

BUILTIN_PRICES = "list-2026-12"


class PriceTable(BaseModel):
    """Prices per GPU-hour by accelerator type (``default`` for a type not listed) and per CPU-hour."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(..., min_length=1, description="Which table this is: every cost report names it.")
    currency: str = "USD"
    gpu_hour: dict[str, float] = Field(default_factory=dict)
    cpu_hour: float = Field(0.0, ge=0)
    sources: dict[str, str] = Field(default_factory=dict)

    @field_validator("gpu_hour")
    @classmethod
    def _not_negative(cls, prices: dict[str, float]) -> dict[str, float]:
        if bad := [f"{name} ({price:g})" for name, price in prices.items() if price < 0]:
            raise ValueError(f"a price cannot be negative: {', '.join(bad)}")
        return prices

    def per_gpu_hour(self, accelerator: str) -> float:
        """The price of one hour of ``accelerator``: the listed type its name contains (the longest
        such, so "NVIDIA H100 80GB HBM3" is an H100), else ``default``."""
        name = accelerator.lower()
        named = sorted((k for k in self.gpu_hour if k != "default" and k.lower() in name), key=len, reverse=True)
        if named:
            return self.gpu_hour[named[0]]
        if "default" in self.gpu_hour:
            return self.gpu_hour["default"]
        raise ConfigError(f"prices {self.version!r}: no price for the accelerator {accelerator!r} and no 'default'; "
                          f"add one under gpu_hour")

    def money(self, spend: Spend) -> float:
        return sum(self.per_gpu_hour(t) * s / 3600 for t, s in spend.gpu_s.items()) + self.cpu_hour * spend.cpu_hours


def load_prices(name: str | None = None) -> PriceTable:
    """The built-in price table (``name`` None or its version), or a JSON file; one line for a file
    that is not one (no version, a negative price, a field it does not know)."""
    if name in (None, BUILTIN_PRICES):
        where = BUILTIN_PRICES
        text = package_files.files("synthclip_core.planning").joinpath("prices", f"{BUILTIN_PRICES}.json").read_text()
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"prices: {name!r} is neither the built-in table ({BUILTIN_PRICES}) nor a file")
        text, where = path.read_text(), str(path)
    try:
        return PriceTable.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"prices {where}: not JSON ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'the table'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise ConfigError(f"prices {where}: {problems}") from None


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


def markdown(cost: RunCost) -> str:
    """The cost table as markdown: the Prefect artifact's and the card's."""
    c = cost.prices.currency
    lines = [f"| stage | GPU-hours | by type | CPU-hours | per 1,000 kept pairs (GPU-h / CPU-h) | planned GPU-hours | "
             f"failed or lost | {c} |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in cost.stages:
        types = ", ".join(f"{t} {v / 3600:.3f}" for t, v in sorted(s.spend.gpu_s.items())) or "-"
        planned = "-" if s.planned_gpu_hours is None else f"{s.planned_gpu_hours:.3f}"
        lines.append(f"| {s.stage} | {s.spend.gpu_hours:.3f} | {types} | {s.spend.cpu_hours:.4f} | "
                     f"{cost.per_thousand(s.spend.gpu_hours):.4f} / {cost.per_thousand(s.spend.cpu_hours):.4f} | {planned} | "
                     f"{s.spend.wasted_share:.1%} | {s.money:,.4f} |")
    t = cost.total
    planned_total = sum(s.planned_gpu_hours or 0 for s in cost.stages)
    lines.append(f"| **all** | **{t.gpu_hours:.3f}** | | **{t.cpu_hours:.4f}** | {cost.per_thousand(t.gpu_hours):.4f} / "
                 f"{cost.per_thousand(t.cpu_hours):.4f} | {planned_total:.3f} | {t.wasted_share:.1%} | **{cost.money:,.4f}** |")
    lines += ["", f"{cost.kept_pairs:,} kept pairs; prices: table `{cost.prices.version}` ({c}); "
                  f"{t.records:,} ledger records.", *[f"- {n}" for n in cost.notes]]
    return "\n".join(lines) + "\n"

