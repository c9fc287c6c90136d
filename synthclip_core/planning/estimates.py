"""What a run of a config will do, before it does any: counts, partitions, Ray asks, GPU-hours, bytes.

``synthclip plan CONFIG`` prints it. Counts follow the config (sized by ``target_pairs`` where it
has one) and the recorded shares kept per step (:mod:`.sizing`); the pools are what each stage's
definition asks of Ray (``Stage.workers``), so the plan and the run can never disagree about
them. GPU-hours divide each model stage's work by the rates' throughput per GPU (render time
scaled by steps and pixels from the published 512x512, 50-step figure); bytes multiply rows by
the rates' recorded sizes. Every figure is an estimate that says what it rests on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..compute.resources import asks
from .sizing import Rates, load_rates, sized, train_share

PUBLISHED_RENDER = {"height": 512, "width": 512, "steps": 50}  # the setting images_per_gpu_s is quoted at
SHARD_SAMPLE_OVERHEAD = 1536  # tar headers (3 members x 512 B) per sample, besides its image and text
CHECKPOINT_BYTES_PER_PARAM = 12  # fp32 weights and AdamW's two moments


@dataclass
class StagePlan:
    stage: str
    outputs: int  # partitions, shards or checkpoints it writes
    rows: int
    pools: list[str] = field(default_factory=list)  # "8 x {GPU: 1, caption_gpu: 1}" per pool
    gpus: float = 0  # GPUs the stage's pools hold at once
    gpu_hours: float = 0.0
    stored_bytes: int = 0
    basis: str = ""  # what the estimate rests on


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


def _topup_plan(cfg, concepts: int, captions_per_gpu_s: float) -> StagePlan:
    """The closed loop's captions at most: every concept short of the whole target in every round
    (or the budget); what it keeps depends on what balancing leaves, so images and shards leave it out."""
    if not getattr(cfg, "topup", None) or not cfg.topup.target:
        return StagePlan("topup", 0, 0)
    top = cfg.topup
    asked = concepts * math.ceil(top.target * top.oversample) * top.max_rounds
    asked = min(asked, top.budget) if top.budget else asked
    return StagePlan("topup", math.ceil(asked / top.per_partition), asked, gpu_hours=asked / captions_per_gpu_s / 3600,
                     basis=f"at most (every concept short by the whole target, {top.max_rounds} rounds, or the budget); "
                           f"the loop's images are not in the images estimate")


def plan_run(cfg, bank_size: int, rates: Rates | None = None, parameters: int | None = None) -> Plan:
    """The plan of a run of ``cfg`` over a bank of ``bank_size`` concepts. ``parameters``: the
    CLIP model's parameter count (for checkpoint bytes; counted on the meta device if not given)."""
    from ..pipeline import stages_for

    rates = rates or load_rates(cfg.rates)
    cfg = sized(cfg, bank_size, rates)
    c, cap, bal, img, sh, t = cfg.concepts, cfg.captions, cfg.balanced, cfg.images, cfg.shards, cfg.train
    concepts = min(bank_size, c.limit or bank_size)
    captions = concepts * cap.per_concept
    cleaned = round(captions * rates.caption_keep)
    balanced = round(cleaned * rates.balance_keep)
    images = round(balanced * img.images_per_caption * rates.image_keep)
    train_pairs = round(images * train_share(cfg, concepts))
    caption_parts = math.ceil(concepts / c.per_partition)
    render_parts = caption_parts * math.ceil(balanced / caption_parts / img.captions_per_partition)  # slices of each partition
    image_bytes = img.stored_size ** 2 * rates.bytes_per_image_pixel
    steps = train_pairs // t.global_batch_size
    parameters = parameters if parameters is not None else count_parameters(t.model)
    checkpoints = t.epochs + (1 if t.checkpoint_every_steps else 0)  # step checkpoints are pruned at each epoch end
    tp = rates.throughput
    published = PUBLISHED_RENDER
    render_cost = (img.steps / published["steps"]) * (img.height * img.width) / (published["height"] * published["width"])
    per_stage = {
        "concepts": StagePlan("concepts", caption_parts, concepts, stored_bytes=concepts * 64, basis="~64 B per concept row"),
        "captions": StagePlan("captions", caption_parts, captions, gpu_hours=captions / tp.captions_per_gpu_s / 3600,
                              stored_bytes=round(captions * rates.bytes_per_caption_row),
                              basis=f"{tp.captions_per_gpu_s:g} captions/s per GPU; keeps {rates.caption_keep:.0%}"),
        "balanced": StagePlan("balanced", caption_parts, balanced, stored_bytes=round(balanced * rates.bytes_per_caption_row),
                              basis=f"keeps {rates.balance_keep:.0%} of the cleaned captions (t={bal.threshold})"),
        "topup": _topup_plan(cfg, concepts, tp.captions_per_gpu_s),
        "images": StagePlan("images", render_parts, images, gpu_hours=images * render_cost / tp.images_per_gpu_s / 3600,
                            stored_bytes=round(images * (image_bytes + rates.bytes_per_caption_row)),
                            basis=f"{tp.images_per_gpu_s:g} images/s per GPU at 512x512, 50 steps (x{render_cost:.2f} here); "
                                  f"~{image_bytes / 1024:.0f} KiB per {img.stored_size}px JPEG"),
        "shards": StagePlan("shards", math.ceil(train_pairs / sh.samples_per_shard), train_pairs,
                            stored_bytes=round(train_pairs * (image_bytes + rates.bytes_per_caption_row + SHARD_SAMPLE_OVERHEAD)),
                            basis="each train pair's JPEG, text and json, with tar headers"),
        "train": StagePlan("train", checkpoints, steps * t.epochs,
                           gpu_hours=train_pairs * t.epochs / tp.train_samples_per_gpu_s / 3600 if t.use_gpu else 0.0,
                           stored_bytes=checkpoints * parameters * CHECKPOINT_BYTES_PER_PARAM,
                           basis=f"{steps:,} steps/epoch x {t.epochs}; {tp.train_samples_per_gpu_s:g} samples/s per GPU; "
                                 f"{parameters / 1e6:.0f}M parameters"),
        "eval": StagePlan("eval", 2, images - train_pairs, basis="held-out pairs"),
    }
    stages = []
    for stage in stages_for(cfg):
        plan = per_stage[stage.name]
        for spec in stage.workers(cfg):
            ask = asks(spec)
            plan.pools.append(f"{spec.num_actors} x {{{', '.join(f'{k}: {v:g}' for k, v in ask.items())}}}"
                              + (f" ({spec.label})" if spec.label and spec.label != stage.name else ""))
            plan.gpus = max(plan.gpus, spec.num_actors * spec.num_gpus)
        if not plan.gpus:
            plan.gpu_hours = 0.0  # a stage on CPUs (a CPU profile): no GPU-hours
        stages.append(plan)
    notes = [f"shares kept per step from rates {rates.name!r} (measured on {rates.measured_on})",
             *(f"{k}: {v}" for k, v in {**tp.sources, **rates.sources}.items())]
    if cfg.target_pairs and concepts == bank_size and c.limit and c.limit < bank_size:
        notes.append(f"concepts.limit {c.limit} caps the bank")
    return Plan(cfg.name, cfg.target_pairs, concepts, cap.per_concept, train_pairs, images - train_pairs, stages, rates, notes)


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
