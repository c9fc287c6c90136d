"""What a run of a config will do, before it does any: counts, partitions, Ray asks, GPU-hours, bytes.

``synthclip plan CONFIG`` prints it. Each stage estimates its own part (``Stage.estimate``, in
its module) from the config (sized by ``target_pairs`` where it has one), the recorded shares kept
per step and throughputs (:mod:`.sizing`), and the estimates of the stages before it; the pools
are what each stage's definition asks of Ray (``Stage.workers``), so the plan and the run can never
disagree about them. Every figure is an estimate that says what it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from ..compute.resources import asks
from ..stages.stage import StagePlan
from .sizing import Rates, load_rates, sized, train_share


@dataclass
class PlanContext:
    """The plan in progress, as each stage's estimate sees it (``stages.stage.Estimating``): the
    config (sized), the rates, the bank's size, and the plans of the stages before it."""

    cfg: object
    rates: Rates
    bank_size: int
    given_parameters: int | None = None
    before: dict[str, StagePlan] = field(default_factory=dict)

    def rows(self, stage: str) -> int:
        """Rows an earlier stage will make (0 where the run has no such stage)."""
        return self.before[stage].rows if stage in self.before else 0

    def outputs(self, stage: str) -> int:
        return self.before[stage].outputs if stage in self.before else 0

    def train_share(self, concepts: int) -> float:
        """The share of rendered rows that train (held-out concepts and the eval split stay out)."""
        return train_share(self.cfg, concepts)

    @cached_property
    def parameters(self) -> int:
        """The CLIP model's parameters (for checkpoint bytes): as given, else counted on the meta device."""
        return self.given_parameters if self.given_parameters is not None else count_parameters(self.cfg.train.model)


@dataclass
class Plan:
    name: str
    target_pairs: int | None
    concepts: int
    per_concept: int
    train_pairs: int
    eval_pairs: int
    stages: list[StagePlan]
    rates: Rates
    notes: list[str] = field(default_factory=list)

    @property
    def gpu_hours(self) -> float:
        return sum(s.gpu_hours for s in self.stages)

    @property
    def stored_bytes(self) -> int:
        return sum(s.stored_bytes for s in self.stages)


def plan_run(cfg, bank_size: int, rates: Rates | None = None, parameters: int | None = None) -> Plan:
    """The plan of a run of ``cfg`` over a bank of ``bank_size`` concepts. ``parameters``: the
    CLIP model's parameter count (for checkpoint bytes; counted on the meta device if not given)."""
    from ..pipeline import stages_for

    rates = rates or load_rates(cfg.rates)
    cfg = sized(cfg, bank_size, rates)
    estimating = PlanContext(cfg, rates, bank_size, parameters)
    for stage in stages_for(cfg):
        plan = stage.estimate(estimating) if stage.estimate else StagePlan(stage.name, basis="no estimate")
        for spec in stage.workers(cfg):
            ask = asks(spec)
            plan.pools.append(f"{spec.count} x {{{', '.join(f'{k}: {v:g}' for k, v in ask.items())}}}"
                              + (f" ({spec.label})" if spec.label and spec.label != stage.name else ""))
            plan.gpus = max(plan.gpus, spec.count * spec.num_gpus)
        if not plan.gpus:
            plan.gpu_hours = 0.0  # a stage on CPUs (a CPU profile): no GPU-hours
        estimating.before[stage.name] = plan
    c = cfg.concepts
    concepts, train_pairs = estimating.rows("concepts"), estimating.rows("shards")
    notes = [f"shares kept per step from rates {rates.name!r} (measured on {rates.measured_on})",
             *(f"{k}: {v}" for k, v in {**rates.throughput.sources, **rates.sources}.items())]
    if cfg.target_pairs and concepts == bank_size and c.limit and c.limit < bank_size:
        notes.append(f"concepts.limit {c.limit} caps the bank")
    return Plan(cfg.name, cfg.target_pairs, concepts, cfg.captions.per_concept, train_pairs,
                estimating.rows("images") - train_pairs, list(estimating.before.values()), rates, notes)


def wall_hours(stage: StagePlan) -> float:
    """Hours the stage takes with all its GPUs busy (0 for a CPU stage)."""
    return stage.gpu_hours / stage.gpus if stage.gpus else 0.0


def count_parameters(arch: str) -> int:
    """The parameters of an open_clip architecture, built on the meta device (no memory, no weights)."""
    import logging

    import open_clip
    import torch

    from ..clip_models import register_model_configs

    register_model_configs()
    quiet, logging.root.level = logging.root.level, logging.ERROR  # not "no pretrained weights loaded": none are wanted
    try:
        with torch.device("meta"):
            model = open_clip.create_model(arch, device="meta")
    finally:
        logging.root.level = quiet
    return sum(p.numel() for p in model.parameters())
