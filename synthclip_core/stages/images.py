"""Images: a diffusion model renders ``images_per_caption`` images for every balanced caption.

Partition ``images/part-i-j`` is made from slice j of ``balanced/part-i`` (or of a closed-loop
partition, ``topup/part-rK-i``) by a
:class:`RenderWork` in an actor of the render pool. An image's seed comes from (run seed,
caption id, index), its id from (caption id, index, run seed); every image is rendered from its
own generator, so batching and resumption never change pixels. Each run of rows of one split is a
row group of its own and the commit record counts the rows per split (``splits``), so export plans
its shards from records and eval reads held-out rows without a byte of a train row's JPEG. Once
every partition is committed, ``contact_sheet.png`` shows the first images with their captions.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from ..card.duplicates import phash
from ..compute import progress
from ..config import ModelSection, operational, scheme_of, when_set
from ..errors import BackendError
from ..fingerprint import model_identity, model_identity_of, model_label
from ..ids import derive_seed, image_id
from ..pictures import contact_sheet
from ..planning.sizing import on_group
from ..rendering.backends import create_render_backend
from ..rendering.scoring import ClipScorer, hub_weights, local_weights, tag_url
from ..storage.decoding import Unreadable, image_size
from ..storage.schemas import table_from_rows
from ..storage.tables import read_table
from ..tiny_models import resolve_model
from .common import CAPTION_STAGES, caption_records, model_pool
from .executor import Made, PartitionWork, StageContext
from .stage import Estimating, RunView, Stage, StagePlan, StageSummary, WorkItem, section_settings

NAME = "images"
VERSION = 3  # the perceptual hash (schema images/4) is derived from the JPEG: the same data (schemas.DERIVED)
CONTACT_SHEET = "contact_sheet.png"




class ImagesConfig(ModelSection):
    """Text-to-image rendering."""

    backend: str = Field("diffusers", pattern=r"^(diffusers|[\w.]+:\w+)$",
                         description="Render backend: diffusers, or a plug-in class as package.module:ClassName.")
    preset: str | None = operational(None, description="Recommended settings of a model family, filling the fields "
                                     "left unset: sd15, sd2, sdxl, sd3, pixart, flux-schnell, flux-dev (rendering/presets.py).")
    pipeline: str = when_set("auto", description="The diffusers pipeline: 'auto' (the class the model's index names), "
                             "'text2image' (AutoPipelineForText2Image) or a class name (e.g. StableDiffusionXLPipeline).")
    scheduler: Literal["ddim", "pndm", "euler", "dpmsolver", "default"] = Field(
        "ddim", description="Sampler (paper: DDIM); 'default' keeps the model's own (flow matching for SD3 and FLUX).")
    offload: Literal["none", "model", "sequential"] = operational(
        "none", description="CPU offload on a GPU for models larger than its memory: 'model' (whole components, "
        "little slower) or 'sequential' (layer by layer, least memory, slowest).")
    device_map: str | None = operational(None, description="Spread one pipeline's components over the actor's GPUs "
                                         "(diffusers' 'balanced'; set num_gpus to the GPUs each actor holds).")
    steps: int = Field(50, ge=1, description="Denoising steps (paper: 50).")
    guidance_scale: float = Field(2.0, ge=0, description="Classifier-free guidance scale (paper: 2.0).")
    eta: float = Field(0.0, ge=0, description="DDIM eta (paper: 0).")
    height: int = Field(512, ge=8, description="Rendered image height in pixels.")
    width: int = Field(512, ge=8, description="Rendered image width in pixels.")
    stored_size: int = Field(256, ge=8, description="Side of the stored JPEG (resized from the rendered image).")
    jpeg_quality: int = Field(95, ge=1, le=100, description="JPEG quality of stored images.")
    images_per_caption: int = Field(1, ge=1, description="Images rendered per balanced caption.")
    best_of: int = when_set(1, ge=1, description="Render this many candidates per image and keep the one the scorer "
                            "ranks highest (CLIP score); the scores and the other seeds go to the lineage (paper: 1).")
    scorer: str = when_set("ViT-B-32:openai", description="The best-of-k scorer, an open_clip model: ARCH:PRETRAINED "
                           "(a tag or a checkpoint), local-dir:PATH (e.g. a run's train/model), or tiny/clip offline.")
    batch_size: int = operational(8, ge=1, description="Prompts rendered per forward pass.")
    compile: bool = operational(False, description="torch.compile the UNet (worth it on GPUs for long runs).")
    safety_checker: bool = Field(False, description="Run the model's safety checker and drop flagged images (paper: off).")
    captions_per_partition: int = operational(
        256, ge=1, description="Balanced captions per render partition (a slice of one balanced partition).")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        from ..rendering.presets import with_preset

        return with_preset(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _latent_sizes(self) -> "ImagesConfig":
        """Every diffusers text-to-image pipeline downsamples by 8 into its latents: other sizes fail
        in every partition, so they are refused here."""
        bad = [f"{side} {value}" for side, value in (("height", self.height), ("width", self.width)) if value % 8]
        if self.backend == "diffusers" and bad:
            raise ValueError(f"{' and '.join(bad)}: diffusers pipelines render sizes that are multiples of 8")
        return self


def render_parts(run: RunView, records: dict[tuple[str, str], dict]) -> list[tuple[str, str, str, dict]]:
    """Render partitions: slices of ``captions_per_partition`` rows of each caption partition.

    ``images/part-i-j`` holds rows ``[j*R, (j+1)*R)`` of ``balanced/part-i`` (and
    ``images/part-rK-i-j`` of the closed loop's ``topup/part-rK-i``); sizes come from the caption
    partitions' commit ``records`` (by stage and output), so planning reads no data. Each is
    (output, input stage, input, slice).
    """
    size = run.config.images.captions_per_partition
    parts = []
    for (stage, part), record in records.items():
        stem = part[: -len(".parquet")]
        for j, start in enumerate(range(0, record["rows"], size)):
            parts.append((f"{stem}-{j:03d}.parquet", stage, part, {"offset": start, "length": size}))
    return parts


def plan(run: RunView) -> list[str]:
    return [output for output, *_ in render_parts(run, caption_records(run))]


def make(ctx: StageContext) -> StageSummary:
    records = caption_records(ctx.run)
    planned = render_parts(ctx.run, records)
    parts = [output for output, *_ in planned]
    by_stage: dict[str, dict[str, dict]] = {}
    for (stage, part), record in records.items():
        by_stage.setdefault(stage, {})[part] = record
    items = ctx.pending(planned, by_stage)
    summary = ctx.run_partitions(workers(ctx.config)[0], RenderWork, render_settings(ctx.config), items, len(planned))
    if summary.ok:
        summary.rows = ctx.committed_rows(parts)
        write_contact_sheet(ctx, parts)
        summary.pictures = [f"{NAME}/{CONTACT_SHEET}"]
        summary.outputs = parts + [CONTACT_SHEET]
    return summary


def workers(cfg) -> list:
    return [model_pool(cfg, NAME)]


def render_settings(cfg) -> dict:
    """What a render actor needs of a run config (plain data): the model, sampler and guards."""
    r = cfg.images
    identity = model_identity_of(r, scheme_of(cfg))
    return {
        "backend": r.backend, "model": r.model, "revision": r.load_revision, "dtype": r.dtype, "compile": r.compile,
        "safety_checker": r.safety_checker, "scheduler": r.scheduler, "batch_size": r.batch_size,
        "pipeline": r.pipeline, "offload": r.offload, "device_map": r.device_map,
        "best_of": r.best_of, "scorer": r.scorer, "scorer_identity": scorer_identity(cfg),
        "scorer_commit": cfg.model_pins.get(SCORER, {}).get("commit"),
        "images_per_caption": r.images_per_caption,
        "sampler": {"steps": r.steps, "guidance_scale": r.guidance_scale, "eta": r.eta,
                    "height": r.height, "width": r.width, "stored_size": r.stored_size,
                    "jpeg_quality": r.jpeg_quality},
        "seed": cfg.seed, "model_identity": identity,
        "model_label": model_label(r.model, identity),
    }


SCORER = "images.scorer"  # its key in the run's model pins


def scorer_identity(cfg) -> dict:
    """The best-of-k scorer by what it is: local weights by their content; from scheme 3 a hub
    tag by the commit pinned when the run began (a run made before keeps its name alone)."""
    name = cfg.images.scorer
    if scheme_of(cfg) < 3:
        if name.startswith("local-dir:"):
            return model_identity(name.removeprefix("local-dir:"), None, 2)
        return model_identity(name, None, 2) if name.startswith("tiny/") else {"name": name}
    if (path := local_weights(name)) is not None:
        return {"name": name, "content_sha256": model_identity(path, None, 2)["content_sha256"]}
    if (hub := hub_weights(name)) is not None:
        return {"name": name, "hub": hub[0], "commit": cfg.model_pins.get(SCORER, {}).get("commit")}
    return {"name": name, "url": tag_url(name)}


def named_models(cfg) -> dict[str, str]:
    """The hub repository of a best-of-k scorer, to pin when the run begins."""
    hub = hub_weights(cfg.images.scorer) if cfg.images.best_of > 1 else None
    return {SCORER: hub[0]} if hub else {}


def settings(cfg) -> dict:
    """The section's settings; with best-of-k, the scorer by its identity."""
    out = section_settings(NAME)(cfg)
    if cfg.images.best_of > 1:
        out["scorer"] = scorer_identity(cfg)
    return out


def write_contact_sheet(ctx: StageContext, parts: list[str], count: int = 24) -> None:
    """The first ``count`` images of the run (in partition order) in a grid, with their captions."""
    if CONTACT_SHEET in ctx.committed():
        return
    started = time.time()
    rows: list[dict] = []
    for part in parts:
        rows += read_table(ctx.store, NAME, part, columns=["jpg", "caption"]).to_pylist()[: count - len(rows)]
        if len(rows) >= count:
            break
    ctx.commit(CONTACT_SHEET, contact_sheet(rows), rows=len(rows), started=started)


class RenderWork(PartitionWork):
    """In a render actor: the pipeline loaded once; one slice of a caption partition rendered per call.

    An image that fails a quality guard (NaN, black, constant, flagged) is rendered once more
    from a new seed derived from the first; if that fails too, it is dropped and counted.
    """

    reads, writes, group_by = "balanced", NAME, "split"  # a row group per split: eval reads held-out rows only
    deterministic = False  # diffusion on a GPU may differ between two writers

    def setup(self) -> None:
        s = self.settings
        self.backend = create_render_backend(
            s["backend"], model=resolve_model(s["model"]), revision=s["revision"], scheduler=s["scheduler"],
            dtype=s["dtype"], compile=s["compile"], safety_checker=s["safety_checker"], pipeline=s["pipeline"],
            offload=s["offload"], device_map=s["device_map"],
        )
        self.best_of = s.get("best_of", 1)
        self.scorer = ClipScorer(s["scorer"], self.backend.device, s.get("scorer_commit")) if self.best_of > 1 else None

    @property
    def device(self) -> str:
        return self.backend.device

    def process(self, captions: pa.Table, item: WorkItem) -> Made:
        started = time.time()
        s = self.settings
        rows = [{**caption, "index": index, "seed": derive_seed(s["seed"], caption["caption_id"], index),
                 "image_id": image_id(caption["caption_id"], index, s["seed"]), "rerendered": False}
                for caption in captions.to_pylist() for index in range(s["images_per_caption"])]
        chosen = self._render_best(rows) if self.scorer else None
        if chosen is None:
            self._render(rows)
        retry = [] if chosen is not None else [r for r in rows if r["jpg"] is None]  # k candidates are k tries
        for row in retry:
            row.update(seed=derive_seed(row["seed"], "re-render"), rerendered=True)
        self._render(retry)
        dropped = Counter(r["problem"] for r in rows if r["jpg"] is None)
        kept = [r for r in rows if r["jpg"] is not None]
        size, sampler = s["sampler"]["stored_size"], s["sampler"]
        for row in kept:
            row.update(model=s["model_label"], scheduler=s["scheduler"], steps=sampler["steps"],
                       guidance_scale=sampler["guidance_scale"], format="jpeg", width=size, height=size,
                       sha256=hashlib.sha256(row["jpg"]).hexdigest(), phash=phash(row["jpg"]))
        seconds = time.time() - started
        return Made(table_from_rows(kept, NAME), dict(
            splits=dict(sorted(Counter(r["split"] for r in kept).items())),
            model=s["model_identity"], scheduler=s["scheduler"], sampler=sampler,
            seeds={"run_seed": s["seed"], "rule": "derive_seed(run_seed, caption_id, index); "
                   "a re-render uses derive_seed(first seed, 're-render')"},
            quality={"rerendered": len(retry), "dropped": dict(dropped)},
            **({"best_of": {"k": self.best_of, "scorer": s["scorer_identity"], "images": chosen,
                            "rule": "candidate c has seed derive_seed(seed, 'candidate', c) (c = 0: the seed itself); "
                                    "the highest CLIP score is kept"}} if chosen is not None else {}),
            throughput={"images_per_s": round(len(rows) / max(seconds, 1e-9), 3)},
        ))

    def _render(self, rows: list[dict]) -> None:
        batch_size = self.settings["batch_size"]
        for start in range(0, len(rows), batch_size):
            progress.within(start, len(rows))
            batch = rows[start:start + batch_size]
            images = self.backend.render([r["caption"] for r in batch], [r["seed"] for r in batch], self.settings["sampler"])
            if len(images) != len(batch):
                raise BackendError(f"render backend {self.settings['backend']!r} returned {len(images)} images "
                                   f"for {len(batch)} prompts")
            for row, image in zip(batch, images):
                jpg, problem = image.get("jpg"), image.get("problem")
                if jpg is not None and problem is None:
                    problem = self._check(jpg)
                row.update(jpg=None if problem else jpg, problem=problem)

    def _render_best(self, rows: list[dict]) -> dict:
        """Best of k: ``best_of`` candidates per image, each from its own seed, scored against the
        caption; the best passing candidate is the row's image (a row with none is dropped for the
        first candidate's problem). Per image id: the candidates' seeds, scores (None: failed a
        guard) and the index kept."""
        k = self.best_of
        candidates = [{"caption": row["caption"], "seed": row["seed"] if c == 0 else derive_seed(row["seed"], "candidate", c)}
                      for row in rows for c in range(k)]
        self._render(candidates)
        passing = [c for c in candidates if c["jpg"] is not None]
        for candidate, score in zip(passing, self.scorer([c["jpg"] for c in passing], [c["caption"] for c in passing])):
            candidate["score"] = round(score, 4)
        chosen = {}
        for i, row in enumerate(rows):
            group = candidates[i * k:(i + 1) * k]
            scores = [c.get("score") for c in group]
            ranked = [j for j in range(k) if scores[j] is not None]
            best = max(ranked, key=lambda j: (scores[j], -j)) if ranked else None
            if best is None:
                row.update(jpg=None, problem=group[0]["problem"])
            else:
                row.update(jpg=group[best]["jpg"], problem=None, seed=group[best]["seed"])
            chosen[row["image_id"]] = {"seeds": [c["seed"] for c in group], "scores": scores, "kept": best}
        return chosen

    def _check(self, jpg: bytes) -> str | None:
        """A backend's image must be a readable JPEG of the stored size; a wrong size is a bug in
        the backend (every image would be wrong), an unreadable one is dropped and counted."""
        try:
            size, kind = image_size(jpg)
        except Unreadable:
            return "undecodable"
        side = self.settings["sampler"]["stored_size"]
        if kind != "JPEG" or size != (side, side):
            raise BackendError(f"render backend {self.settings['backend']!r} returned a {size[0]}x{size[1]} {kind} "
                               f"image; images.stored_size is {side}, so it must be a {side}x{side} JPEG")
        return None


PUBLISHED_RENDER = {"height": 512, "width": 512, "steps": 50}  # the setting a rates file's images_per_gpu_s is quoted at


def estimate(plan: Estimating) -> StagePlan:
    """``images_per_caption`` images per balanced caption, at the rates' images per GPU-second,
    scaled by steps and pixels from the published 512x512, 50-step figure."""
    img, rates = plan.cfg.images, plan.rates
    balanced, caption_parts = plan.rows("balanced"), plan.outputs("captions")
    render_parts = caption_parts * math.ceil(balanced / caption_parts / img.captions_per_partition)  # slices of each partition
    images = round(balanced * img.images_per_caption * rates.image_keep)
    image_bytes = img.stored_size ** 2 * rates.bytes_per_image_pixel
    cost = (img.steps / PUBLISHED_RENDER["steps"]) * (img.height * img.width) / (PUBLISHED_RENDER["height"] * PUBLISHED_RENDER["width"])
    per_s, group = rates.rate("images_per_gpu_s", img.ray_resources)
    return StagePlan(NAME, render_parts, images, gpu_hours=images * cost / per_s / 3600,
                     stored_bytes=round(images * (image_bytes + rates.bytes_per_caption_row)),
                     basis=f"{per_s:g} images/s per GPU{on_group(group)} at 512x512, 50 steps (x{cost:.2f} here); "
                           f"~{image_bytes / 1024:.0f} KiB per {img.stored_size}px JPEG")


STAGE = Stage(name=NAME, version=VERSION, upstream=CAPTION_STAGES, make=make, section=ImagesConfig, plan=plan,
              workers=workers, settings=settings, estimate=estimate, named_models=named_models,
              description="Render every pending balanced partition on the diffusion actor pool.")
